//! The backend against the MAM double of `site-sim` (in memory, behind a `RecordingRunner`).

use std::sync::{Arc, Mutex};

use backend_api::command::CommandLine;
use backend_api::testkit::{Answer, RecordingRunner, SiteDouble, conformance};
use backend_api::{
    BillingPeriod, CreateRequest, Limits, MembershipBackend, OrderBackend, ResourceView,
    UsageBackend, UsageReport, UserContext, UserGrant,
};
use site_sim::moab::{MoabState, execute};

use super::*;

/// The `site-sim` MAM double as a [`SiteDouble`].
#[derive(Default)]
struct MamDouble {
    state: Mutex<MoabState>,
}

impl MamDouble {
    fn run(&self, line: &[&str]) -> site_sim::moab::Outcome {
        let args: Vec<String> = line[1..].iter().map(|s| (*s).to_owned()).collect();
        let mut state = self.state.lock().expect("state");
        execute(&mut state, line[0], &args, &site_sim::moab::now_local())
    }
}

impl SiteDouble for MamDouble {
    fn answer(&self, command: &CommandLine) -> Option<Answer> {
        let program = command.program.file_name()?.to_string_lossy().into_owned();
        let mut state = self.state.lock().expect("state");
        let out = execute(
            &mut state,
            &program,
            &command.args,
            &site_sim::moab::now_local(),
        );
        Some(if out.code == 0 {
            Ok(out.stdout)
        } else {
            Err(out.stderr)
        })
    }
}

fn setup(allocation_prefix: &str) -> (Arc<MoabBackend>, Arc<RecordingRunner>, Arc<MamDouble>) {
    let site = Arc::new(MamDouble::default());
    let runner = Arc::new(
        RecordingRunner::new()
            .with_site(site.clone())
            .with_transient_rule(is_transient_output),
    );
    let settings = MoabSettings {
        project_prefix: "p_".into(),
        allocation_prefix: allocation_prefix.into(),
        ..Default::default()
    };
    let backend = Arc::new(MoabBackend::new(settings, runner.clone()));
    (backend, runner, site)
}

fn resource(slug: &str) -> ResourceView {
    ResourceView {
        uuid: format!("uuid-{slug}"),
        name: format!("Resource {slug}"),
        slug: slug.into(),
        project_slug: "proj".into(),
        project_name: "Project One".into(),
        customer_slug: "cust".into(),
        customer_name: "Customer".into(),
        ..Default::default()
    }
}

fn deposit(v: f64) -> Limits {
    [(DEPOSIT.to_owned(), v)].into()
}

fn grant(name: &str) -> UserGrant {
    UserGrant {
        username: name.into(),
        ..Default::default()
    }
}

fn fixture(slug: &str) -> conformance::Fixture {
    conformance::Fixture {
        resource: resource(slug),
        initial_limits: deposit(100.0),
        updated_limits: deposit(250.0),
        users: vec![grant("alice"), grant("bob")],
    }
}

fn request(backend: &MoabBackend, r: &ResourceView, limits: Limits) -> CreateRequest {
    let mut resource = r.clone();
    resource.limits = limits;
    let backend_id = backend.backend_id_for(&r.slug).expect("id");
    resource.backend_id = backend_id.clone();
    CreateRequest {
        resource,
        backend_id,
        context: UserContext::default(),
    }
}

#[tokio::test]
async fn conformance_lifecycle() {
    let (backend, _, _) = setup("a_");
    conformance::order_and_membership_lifecycle(backend.as_ref(), fixture("life")).await;
}

#[tokio::test]
async fn conformance_batch() {
    let (backend, _, _) = setup("a_");
    conformance::batch_partial_failure_and_order(
        backend.as_ref(),
        conformance::BatchFixture {
            first: resource("b1"),
            second: resource("b2"),
            third: resource("b3"),
            limits: deposit(10.0),
        },
    )
    .await;
}

#[tokio::test]
async fn conformance_idempotent_writes() {
    let (backend, _, _) = setup("a_");
    conformance::idempotent_writes_and_unit_round_trip(
        backend.as_ref(),
        fixture("idem"),
        &[deposit(0.0), deposit(7.0), deposit(3.0)],
    )
    .await;
}

#[tokio::test]
async fn conformance_usage_round_trip() {
    let (backend, _, site) = setup("a_");
    let req = request(&backend, &resource("use"), deposit(100.0));
    backend.create_resource(req.clone()).await.expect("create");
    backend
        .add_users(&req.resource, &[grant("alice"), grant("bob")])
        .await
        .expect("users");
    for (user, amount) in [("alice", "2.5"), ("bob", "4"), ("alice", "1.25")] {
        let out = site.run(&["mam-charge", "-a", "a_use", "-u", user, "-z", amount]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    // A record of last month is not this month's usage.
    let old = site.run(&[
        "mam-charge",
        "-a",
        "a_use",
        "-u",
        "bob",
        "-z",
        "1000",
        "-t",
        "2001-01-15 10:00:00",
    ]);
    assert_eq!(old.code, 0);
    let period = BillingPeriod::containing(&jiff::Zoned::now());
    let expected: BTreeMap<String, UsageReport> = [(
        "a_use".to_owned(),
        UsageReport {
            total: deposit(7.75),
            per_user: [
                ("alice".to_owned(), deposit(3.75)),
                ("bob".to_owned(), deposit(4.0)),
            ]
            .into(),
        },
    )]
    .into();
    conformance::usage_round_trip(backend.as_ref(), &["a_use".to_owned()], &period, &expected)
        .await;
}

#[tokio::test]
async fn conformance_site_down() {
    let (backend, runner, _) = setup("a_");
    runner.set_down(Some(
        "Failed sending message: (Connection refused) to the server",
    ));
    conformance::site_down_is_transient(backend.as_ref(), &fixture("down"), &[]).await;
}

#[tokio::test]
async fn hostile_names_are_refused_before_any_command() {
    let (backend, runner, _) = setup("");
    let mut good = resource("ok");
    good.backend_id = "ok".into();
    for bad in ["-x", "a,b", "a=b", "a\nb", "a b"] {
        assert!(backend.backend_id_for(bad).is_err(), "{bad:?} accepted");
        let mut r = resource("ok");
        r.backend_id = bad.to_owned();
        let results = backend
            .create_resources(vec![CreateRequest {
                resource: r.clone(),
                backend_id: bad.to_owned(),
                context: UserContext::default(),
            }])
            .await;
        assert!(results[0].is_err(), "{bad:?} created");
        assert!(backend.add_users(&r, &[grant("u1")]).await.is_err());
        assert!(backend.set_limits(&r, &deposit(1.0)).await.is_err());
        assert!(backend.delete_resource(&r).await.is_err());
        assert!(backend.add_users(&good, &[grant(bad)]).await.is_err());
        let removed = backend.remove_users(&good, &[bad.to_owned()]).await;
        assert!(removed.is_err());
    }
    // Project slugs: the prefix makes `p_-x` a safe name; the others are refused.
    for bad in ["a,b", "a=b", "a\nb", "a b"] {
        let mut hostile_project = resource("ok2");
        hostile_project.project_slug = bad.to_owned();
        let results = backend
            .create_resources(vec![request(&backend, &hostile_project, deposit(1.0))])
            .await;
        assert!(results[0].is_err(), "project {bad:?} accepted");
    }
    assert_eq!(runner.calls(), 0, "{:?}", runner.lines_without(&[]));
}

#[tokio::test]
async fn description_with_spaces_and_quotes_is_one_argument() {
    let (backend, runner, site) = setup("a_");
    let mut r = resource("desc");
    r.name = "My \"big\" project | x\nend".into();
    backend
        .create_resource(request(&backend, &r, deposit(5.0)))
        .await
        .expect("create");
    let create = runner
        .commands()
        .into_iter()
        .find(|c| c.program.ends_with("mam-create-account") && c.args.contains(&"a_desc".into()))
        .expect("create command");
    assert_eq!(
        create.args,
        vec![
            "-a",
            "a_desc",
            "-d",
            "My \"big\" project  x end",
            "-o",
            "p_proj"
        ]
    );
    let out = site.run(&[
        "mam-list-accounts",
        "--raw",
        "--quiet",
        "--show",
        "Name,Description",
        "-a",
        "a_desc",
    ]);
    assert_eq!(out.stdout, "a_desc|My \"big\" project  x end\n");
}

#[tokio::test]
async fn create_makes_project_account_fund_and_deposit_then_terminate_removes_all() {
    let (backend, runner, site) = setup("a_");
    let req = request(&backend, &resource("one"), deposit(42.0));
    let info = backend.create_resource(req.clone()).await.expect("create");
    assert_eq!(info.parent_id, "p_proj");
    assert_eq!(info.limits, deposit(42.0));
    let lines = runner.lines_without(&["--raw", "--quiet"]);
    assert_eq!(
        lines,
        vec![
            "mam-list-accounts --show Name,Description,Organization,Active,Users",
            "mam-create-account -a p_proj -d Project One -o p_proj",
            "mam-create-account -a a_one -d Resource one -o p_proj",
            "mam-create-fund -a a_one",
            "mam-list-funds --show Id,Constraints,Allocated",
            "mam-deposit -a a_one -z 42 -f 1",
            "mam-list-accounts --show Name,Description,Organization,Active,Users",
            "mam-list-funds --show Id,Constraints,Allocated",
        ]
    );
    // Update: the fund holds the new deposit, not the sum of both.
    backend
        .set_limits(&req.resource, &deposit(50.0))
        .await
        .expect("update");
    let out = site.run(&[
        "mam-list-funds",
        "--raw",
        "--quiet",
        "-a",
        "a_one",
        "--show",
        "Allocated",
    ]);
    assert_eq!(out.stdout, "50\n");
    runner.clear();
    backend
        .delete_resource(&req.resource)
        .await
        .expect("delete");
    let lines = runner.lines_without(&["--raw", "--quiet"]);
    let fund_lookup = lines
        .iter()
        .position(|l| l.starts_with("mam-list-funds"))
        .expect("fund lookup");
    let account_delete = lines
        .iter()
        .position(|l| l.starts_with("mam-delete-account -a a_one"))
        .expect("account delete");
    assert!(
        fund_lookup < account_delete,
        "the fund is looked up before its account is deleted: {lines:?}"
    );
    assert!(lines.contains(&"mam-delete-fund -f 1".to_owned()));
    assert!(lines.contains(&"mam-delete-account -a p_proj".to_owned()));
    let state = site.state.lock().expect("state").clone();
    assert!(state.accounts.is_empty(), "{:?}", state.accounts);
    assert!(state.funds.is_empty(), "{:?}", state.funds);
}

#[tokio::test]
async fn a_batch_shares_reads_and_the_project_account() {
    let (backend, runner, _) = setup("a_");
    let requests: Vec<CreateRequest> = (0..10)
        .map(|i| request(&backend, &resource(&format!("r{i}")), deposit(1.0)))
        .collect();
    let results = backend.create_resources(requests).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // 1 list + 1 project + 10 × (account, fund, deposit) + 1 fund list + 2 read-back.
    assert_eq!(runner.calls(), 1 + 1 + 30 + 1 + 2);
    runner.clear();
    let views: Vec<ResourceView> = (0..10)
        .map(|i| {
            let mut r = resource(&format!("r{i}"));
            r.backend_id = format!("a_r{i}");
            r
        })
        .collect();
    let pulled = backend.pull_resources(&views).await.expect("pull");
    assert_eq!(pulled.len(), 10);
    assert_eq!(runner.calls(), 2);
    runner.clear();
    let period = BillingPeriod::containing(&jiff::Zoned::now());
    let ids: Vec<String> = views.iter().map(|v| v.backend_id.clone()).collect();
    backend.usage_report(&ids, &period).await.expect("usage");
    assert_eq!(runner.calls(), 1);
}

#[tokio::test]
async fn only_the_deposit_component_and_whole_credits() {
    let (backend, runner, _) = setup("a_");
    let r = resource("x");
    assert!(backend.check_limits(&r, &deposit(10.0)).is_ok());
    assert!(backend.check_limits(&r, &deposit(1.5)).is_err());
    let mut other = deposit(1.0);
    other.insert("cpu".into(), 1.0);
    assert!(backend.check_limits(&r, &other).is_err());
    assert_eq!(runner.calls(), 0);
}

#[test]
fn spec_checks_components_and_settings() {
    let offering = |components: serde_json::Value| -> agent_config::OfferingConfig {
        serde_json::from_value(
            serde_json::json!({"name": "o", "waldur_api_url": "http://w/api/",
            "waldur_offering_uuid": "u", "backend_type": "moab",
            "backend_components": components}),
        )
        .expect("offering")
    };
    let unit = serde_json::json!({"measured_unit": "credits", "unit_factor": 1,
        "accounting_type": "limit", "label": "Deposit"});
    assert!(
        !check(&offering(serde_json::json!({}))).is_empty(),
        "deposit is required"
    );
    let ok = offering(serde_json::json!({"deposit": unit}));
    assert!(check(&ok).is_empty(), "{:?}", check(&ok));
    let extra = offering(serde_json::json!({"deposit": unit, "cpu": unit}));
    assert_eq!(check(&extra).len(), 1);
}

#[tokio::test]
async fn check_ids_read_is_reused_by_the_create() {
    let (backend, runner, _) = setup("a_");
    let first = request(&backend, &resource("c1"), deposit(1.0));
    backend
        .create_resource(first.clone())
        .await
        .expect("create");
    runner.clear();
    let requests = vec![
        first.clone(),
        request(&backend, &resource("c2"), deposit(2.0)),
    ];
    let check = backend.check_ids(&requests).await.expect("check");
    assert_eq!(
        check.existing.iter().cloned().collect::<Vec<_>>(),
        vec!["a_c1".to_owned()]
    );
    let results = backend
        .create_checked(vec![requests[1].clone()], check)
        .await;
    assert!(results[0].is_ok(), "{results:?}");
    let lists = runner
        .lines_without(&[])
        .iter()
        .filter(|l| l.starts_with("mam-list-accounts"))
        .count();
    // The check's read and the read-back: the create does not list again.
    assert_eq!(lists, 2, "{:?}", runner.lines_without(&[]));
}
