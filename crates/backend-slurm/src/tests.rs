//! Command construction and behaviour against a recording fake runner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use backend_api::testkit::RecordingRunner;

use crate::double::SlurmDouble;

use async_trait::async_trait;
use indexmap::IndexMap;
use jiff::tz::TimeZone;

use agent_config::{AccountingType, BackendComponent};
use backend_api::command::{CommandLine, CommandOutput, CommandRunner};
use backend_api::{
    BackendError, BackendResourceInfo, BackendResult, BillingPeriod, CreateRequest,
    MembershipBackend, MembershipChange, OrderBackend, ResourceView, UsageBackend, UserContext,
    UserGrant,
};

use crate::{SlurmBackend, SlurmSettings};

/// The testkit's recording runner answering from the stateful SLURM double
/// ([`crate::double::SlurmDouble`]) after the test's own responders.
struct FakeRunner {
    runner: RecordingRunner,
    db: Arc<SlurmDouble>,
}

impl Default for FakeRunner {
    fn default() -> Self {
        let db = Arc::new(SlurmDouble::new());
        FakeRunner {
            runner: RecordingRunner::new()
                .with_site(db.clone())
                .with_transient_rule(crate::sacctmgr::is_transient_output),
            db,
        }
    }
}

impl FakeRunner {
    /// Put an account into the in-memory database.
    fn seed(&self, name: &str, parent: &str) {
        self.db.seed(name, parent);
    }

    fn respond(&self, f: impl Fn(&str) -> Option<Result<String, String>> + Send + Sync + 'static) {
        self.runner.respond(f);
    }

    /// Command lines without the program path and the fixed sacctmgr flags.
    fn lines(&self) -> Vec<String> {
        self.runner
            .lines_without(&["--parsable2", "--noheader", "--immediate"])
    }
}

#[async_trait]
impl CommandRunner for FakeRunner {
    async fn run(&self, command: &CommandLine) -> Result<CommandOutput, BackendError> {
        self.runner.run(command).await
    }
    fn calls(&self) -> u64 {
        self.runner.calls()
    }
}

fn component(factor: f64) -> BackendComponent {
    BackendComponent {
        measured_unit: "k-Hours".into(),
        unit_factor: factor,
        unit_factor_reporting: None,
        accounting_type: AccountingType::Limit,
        label: "CPU".into(),
        limit: None,
        extra: Default::default(),
    }
}

fn components() -> IndexMap<String, BackendComponent> {
    let mut c = IndexMap::new();
    c.insert("cpu".to_owned(), component(60_000.0));
    c.insert("mem".to_owned(), component(61_440.0));
    c
}

fn settings() -> SlurmSettings {
    SlurmSettings {
        default_account: Some("root".into()),
        customer_prefix: "c_".into(),
        project_prefix: "p_".into(),
        allocation_prefix: "a_".into(),
        cluster_name: Some("waldur".into()),
        qos_paused: Some("paused".into()),
        enable_user_homedir_account_creation: false,
        // The per-command path; the load path has its own tests below.
        batch_load: false,
        ..SlurmSettings::default()
    }
}

fn backend_with(settings: SlurmSettings) -> (SlurmBackend, Arc<FakeRunner>) {
    let runner = Arc::new(FakeRunner::default());
    runner.respond(|line| {
        line.contains(" list tres")
            .then(|| Ok("cpu||1\nmem||2\nnode||4\ngres|gpu|1001\n".to_owned()))
    });
    let backend = SlurmBackend::new(settings, components(), runner.clone())
        .expect("backend")
        .with_local_timezone(TimeZone::UTC);
    (backend, runner)
}

fn resource(slug: &str, project: &str, customer: &str) -> ResourceView {
    ResourceView {
        uuid: format!("uuid-{slug}"),
        name: format!("Res {slug}"),
        slug: slug.into(),
        project_slug: project.into(),
        project_name: format!("Project {project}"),
        customer_slug: customer.into(),
        customer_name: format!("Customer {customer}"),
        limits: [("cpu".to_owned(), 10.0), ("mem".to_owned(), 2.0)].into(),
        ..Default::default()
    }
}

fn request(r: ResourceView, users: &[&str]) -> CreateRequest {
    CreateRequest {
        backend_id: format!("a_{}", r.slug),
        resource: r,
        context: UserContext {
            users: users
                .iter()
                .map(|u| UserGrant {
                    username: (*u).to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn create_on_an_empty_site_issues_the_expected_commands() {
    let (backend, runner) = backend_with(settings());
    let info = backend
        .create_resource(request(resource("r1", "proj", "cust"), &["alice", "bob"]))
        .await
        .expect("create");
    assert_eq!(info.backend_id, "a_r1");
    assert_eq!(info.parent_id, "p_proj");
    assert_eq!(info.users, vec!["alice", "bob"]);
    assert_eq!(
        info.limits,
        [("cpu".to_owned(), 10.0), ("mem".to_owned(), 2.0)].into()
    );
    assert_eq!(
        runner.lines(),
        vec![
            "sacctmgr list tres",
            "sacctmgr show assoc format=Account,ParentName,User where accounts=a_r1,c_cust,p_proj cluster=waldur",
            "sacctmgr add account c_cust parent=root description=Customer cust organization=c_cust cluster=waldur",
            "sacctmgr add account p_proj parent=c_cust description=Project proj organization=p_proj cluster=waldur",
            "sacctmgr add account a_r1 parent=p_proj description=Res r1 organization=p_proj GrpTRESMins=cpu=600000,mem=122880 cluster=waldur",
            "sacctmgr show assoc format=Account,ParentName,User,GrpTRESMins,QOS,GrpSubmitJobs,MaxTRESMins where accounts=a_r1 cluster=waldur",
            "sacctmgr add user alice,bob account=a_r1 DefaultAccount=root Share=parent cluster=waldur",
        ]
    );
    // The core's follow-up costs nothing: the associations were just made.
    let added = backend
        .add_users_after_create(
            &ResourceView {
                backend_id: "a_r1".into(),
                ..Default::default()
            },
            &[
                UserGrant {
                    username: "alice".into(),
                    ..Default::default()
                },
                UserGrant {
                    username: "bob".into(),
                    ..Default::default()
                },
            ],
        )
        .await
        .expect("add after create");
    assert_eq!(added, vec!["alice", "bob"]);
    assert_eq!(runner.lines().len(), 7);
}

#[tokio::test]
async fn existing_allocation_is_a_duplicate_and_nothing_is_added() {
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        line.contains("show assoc")
            .then(|| Ok("a_r1|p_proj|||normal||\np_proj|c_cust|||normal||\n".to_owned()))
    });
    let err = backend
        .create_resource(request(resource("r1", "proj", "cust"), &[]))
        .await
        .expect_err("duplicate");
    assert!(matches!(err, BackendError::Duplicate { ref backend_id } if backend_id == "a_r1"));
    assert!(runner.lines().iter().all(|l| !l.contains(" add ")));
}

#[tokio::test]
async fn hostile_names_are_refused_before_any_command() {
    for (req, what) in [
        (
            CreateRequest {
                backend_id: "x,parent=root".into(),
                ..request(resource("r", "p", "c"), &[])
            },
            "backend id",
        ),
        (request(resource("r", "a b", "c"), &[]), "project slug"),
        (request(resource("r", "p", "x'y"), &[]), "customer slug"),
    ] {
        let (backend, runner) = backend_with(settings());
        let err = backend.create_resource(req).await.expect_err(what);
        assert!(!err.is_transient(), "{what}: {err}");
        assert_eq!(runner.lines().len(), 0, "{what}: no command may run");
    }
    let (backend, runner) = backend_with(settings());
    let r = ResourceView {
        backend_id: "a_ok".into(),
        ..Default::default()
    };
    for bad in ["-i", "x,parent=root", "a b"] {
        let err = backend
            .add_users(
                &r,
                &[UserGrant {
                    username: bad.into(),
                    ..Default::default()
                }],
            )
            .await
            .expect_err(bad);
        assert!(matches!(err, BackendError::InvalidName { .. }), "{err}");
        backend
            .remove_users(&r, &[bad.to_owned()])
            .await
            .expect_err(bad);
    }
    let bad_resource = ResourceView {
        backend_id: "a b".into(),
        ..Default::default()
    };
    backend.pause(&bad_resource).await.expect_err("pause");
    backend
        .usage_report(
            &["x,y".to_owned()],
            &BillingPeriod::new(2024, 1, TimeZone::UTC),
        )
        .await
        .expect_err("usage");
    assert_eq!(runner.lines().len(), 0);
}

#[tokio::test]
async fn batch_of_100_creates_with_5_users_is_cheap() {
    let (backend, runner) = backend_with(settings());
    let users = ["u1", "u2", "u3", "u4", "u5"];
    // 100 orders in 10 projects of 2 customers; each project's team is the same for its resources.
    let requests: Vec<CreateRequest> = (0..100)
        .map(|i| {
            request(
                resource(
                    &format!("r{i}"),
                    &format!("proj{}", i % 10),
                    &format!("cust{}", i % 2),
                ),
                &users,
            )
        })
        .collect();
    let results = backend.create_resources(requests).await;
    assert!(results.iter().all(Result::is_ok));
    let calls = runner.lines().len();
    // list tres + show assoc + 2 customers + 10 projects + 100 allocations + one read-back of
    // the allocations + one `add user` (same team and options everywhere, so all 500
    // associations are one call).
    assert_eq!(calls, 1 + 1 + 2 + 10 + 100 + 1 + 1, "{:#?}", runner.lines());
    assert!(calls as f64 / 100.0 <= 3.0);
    println!("batch create: {calls} SLURM calls for 100 orders with 5 users each");
}

#[tokio::test]
async fn identical_allocations_share_one_add_account_call() {
    let (backend, runner) = backend_with(settings());
    let mut reqs = Vec::new();
    for i in 0..3 {
        let mut r = resource(&format!("r{i}"), "proj", "cust");
        r.name = "standard".into();
        reqs.push(request(r, &["alice"]));
    }
    let results = backend.create_resources(reqs).await;
    assert!(results.iter().all(Result::is_ok));
    let lines = runner.lines();
    assert!(
        lines.contains(&"sacctmgr add account a_r0,a_r1,a_r2 parent=p_proj description=standard organization=p_proj GrpTRESMins=cpu=600000,mem=122880 cluster=waldur".to_owned()),
        "{lines:#?}"
    );
    assert!(lines.contains(
        &"sacctmgr add user alice account=a_r0,a_r1,a_r2 DefaultAccount=root Share=parent cluster=waldur"
            .to_owned()
    ));
}

#[tokio::test]
async fn a_failing_item_in_a_batch_fails_only_its_order() {
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        (line.contains("add account") && line.contains("a_r1"))
            .then(|| Err("sacctmgr: error: something about a_r1".to_owned()))
    });
    let mut reqs = Vec::new();
    for i in 0..3 {
        let mut r = resource(&format!("r{i}"), "proj", "cust");
        r.name = "same".into();
        reqs.push(request(r, &[]));
    }
    let results = backend.create_resources(reqs).await;
    assert!(results[0].is_ok());
    assert!(results[1].is_err());
    assert!(results[2].is_ok());
    let lines = runner.lines();
    let single_adds: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.split(' ')
                .nth(3)
                .is_some_and(|names| names.starts_with("a_r") && !names.contains(','))
        })
        .collect();
    assert_eq!(
        single_adds.len(),
        3,
        "fallback retries each item: {lines:#?}"
    );
}

#[tokio::test]
async fn failing_customer_fails_its_descendants_only() {
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        line.contains("add account c_bad")
            .then(|| Err("Unable to connect to database: try again".to_owned()))
    });
    let results = backend
        .create_resources(vec![
            request(resource("r1", "p1", "bad"), &[]),
            request(resource("r2", "p2", "good"), &[]),
        ])
        .await;
    let err = results[0].as_ref().expect_err("bad customer");
    assert!(err.to_string().contains("c_bad"), "{err}");
    assert!(results[1].is_ok());
    assert!(
        runner
            .lines()
            .iter()
            .all(|l| !l.contains("add account p_p1"))
    );
}

#[tokio::test]
async fn limits_round_trip_and_nothing_modified_is_success() {
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        line.contains("modify account")
            .then(|| Err(" Nothing modified".to_owned()))
    });
    runner.respond(|line| {
        line.contains("show assoc").then(|| {
            Ok(
                "a_r1|p_proj||cpu=600000,mem=122880M|normal||\na_r1||alice||normal||cpu=60000\n"
                    .to_owned(),
            )
        })
    });
    let r = ResourceView {
        backend_id: "a_r1".into(),
        ..Default::default()
    };
    backend
        .set_limits(
            &r,
            &[("cpu".to_owned(), 10.0), ("mem".to_owned(), 2.0)].into(),
        )
        .await
        .expect("nothing modified is fine");
    assert!(runner.lines().contains(
        &"sacctmgr modify account where name=a_r1 cluster=waldur set GrpTRESMins=cpu=600000,mem=122880".to_owned()
    ));
    for _ in 0..3 {
        let info = OrderBackend::pull_resource(&backend, &r)
            .await
            .expect("pull")
            .expect("exists");
        assert_eq!(
            info.limits,
            [("cpu".to_owned(), 10.0), ("mem".to_owned(), 2.0)].into()
        );
        assert_eq!(info.users, vec!["alice"]);
        assert_eq!(info.parent_id, "p_proj");
    }
    let per_user = backend.user_limits(&r).await.expect("user limits");
    assert_eq!(per_user["alice"], [("cpu".to_owned(), 1.0)].into());
}

#[tokio::test]
async fn per_user_limits_write_every_offering_tres() {
    let (backend, runner) = backend_with(settings());
    let r = ResourceView {
        backend_id: "a_r1".into(),
        ..Default::default()
    };
    backend
        .set_user_limits(&r, "alice", &[("cpu".to_owned(), 2.0)].into())
        .await
        .expect("set");
    assert!(runner.lines().contains(
        &"sacctmgr modify user where name=alice and account=a_r1 cluster=waldur set MaxTRESMins=cpu=120000,mem=-1".to_owned()
    ), "{:#?}", runner.lines());
}

#[tokio::test]
async fn restore_reads_first_and_writes_only_when_needed() {
    let (backend, runner) = backend_with(settings());
    runner.seed("a_r1", "p_proj");
    let r = ResourceView {
        backend_id: "a_r1".into(),
        ..Default::default()
    };
    assert!(!backend.restore(&r).await.expect("restore: not paused"));
    assert!(backend.pause(&r).await.expect("pause"));
    assert!(!backend.pause(&r).await.expect("pause again"));
    assert!(backend.restore(&r).await.expect("restore"));
    assert_eq!(
        runner.lines(),
        vec![
            // The first call reads; later ones work from the tree as read back.
            "sacctmgr show assoc format=Account,ParentName,User,GrpTRESMins,QOS,GrpSubmitJobs,MaxTRESMins where accounts=a_r1 cluster=waldur",
            "sacctmgr modify account where name=a_r1 cluster=waldur set qos=paused",
            "sacctmgr show assoc format=Account,ParentName,User,GrpTRESMins,QOS,GrpSubmitJobs,MaxTRESMins where accounts=a_r1 cluster=waldur",
            "sacctmgr modify account where name=a_r1 cluster=waldur set qos=normal",
            "sacctmgr show assoc format=Account,ParentName,User,GrpTRESMins,QOS,GrpSubmitJobs,MaxTRESMins where accounts=a_r1 cluster=waldur",
        ]
    );
}

#[tokio::test]
async fn pause_without_qos_setting_is_a_config_error_and_enforced_mode_uses_submit_jobs() {
    let mut s = settings();
    s.qos_paused = None;
    let (backend, runner) = backend_with(s);
    let r = ResourceView {
        backend_id: "a_r1".into(),
        ..Default::default()
    };
    let err = backend.pause(&r).await.expect_err("no qos_paused");
    assert!(err.to_string().contains("qos_paused"), "{err}");
    assert_eq!(runner.lines().len(), 0);

    let mut s = settings();
    s.qos_paused = None;
    s.qos_enforcement_enabled = true;
    s.enforce_offering_qos = Some(true);
    let (backend, runner) = backend_with(s);
    runner.seed("a_r1", "p_proj");
    assert!(!backend.restore(&r).await.expect("restore: not paused"));
    assert!(backend.pause(&r).await.expect("pause"));
    assert!(backend.restore(&r).await.expect("restore"));
    let writes: Vec<String> = runner
        .lines()
        .into_iter()
        .filter(|l| l.contains(" modify "))
        .collect();
    assert_eq!(
        writes,
        vec![
            "sacctmgr modify account where name=a_r1 cluster=waldur set GrpSubmitJobs=0",
            "sacctmgr modify account where name=a_r1 cluster=waldur set GrpSubmitJobs=-1",
        ]
    );
}

#[tokio::test]
async fn add_users_adds_only_missing_in_one_call() {
    let mut s = settings();
    s.default_account_policy = crate::DefaultAccountPolicy::Individual;
    s.default_partition = Some("debug".into());
    let (backend, runner) = backend_with(s);
    runner.seed("a_r1", "p_proj");
    let r = ResourceView {
        backend_id: "a_r1".into(),
        ..Default::default()
    };
    let grants: Vec<UserGrant> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| UserGrant {
            username: (*u).into(),
            ..Default::default()
        })
        .collect();
    backend
        .add_users(&r, &grants[..1])
        .await
        .expect("add alice");
    runner.runner.clear();
    let added = backend.add_users(&r, &grants).await.expect("add");
    assert_eq!(added, vec!["alice", "bob", "carol"]);
    assert_eq!(
        runner.lines(),
        vec![
            "sacctmgr add user bob,carol account=a_r1 DefaultAccount=a_r1 Partition=debug cluster=waldur",
            "sacctmgr show assoc format=Account,ParentName,User,GrpTRESMins,QOS,GrpSubmitJobs,MaxTRESMins where accounts=a_r1 cluster=waldur",
        ]
    );
}

#[tokio::test]
async fn delete_removes_account_and_empty_project() {
    let (backend, runner) = backend_with(settings());
    runner.seed("p_proj", "c_cust");
    runner.seed("a_r1", "p_proj");
    let mut r = resource("r1", "proj", "cust");
    r.backend_id = "a_r1".into();
    backend.delete_resource(&r).await.expect("delete");
    let show = "sacctmgr show assoc format=Account,ParentName,User,GrpTRESMins,QOS,GrpSubmitJobs,MaxTRESMins where";
    assert_eq!(
        runner.lines(),
        vec![
            "sacctmgr remove account where name=a_r1 cluster=waldur".to_owned(),
            format!("{show} accounts=a_r1 cluster=waldur"),
            "sacctmgr show assoc format=Account,ParentName,User where parent=p_proj cluster=waldur"
                .to_owned(),
            "sacctmgr remove account where name=p_proj cluster=waldur".to_owned(),
            format!("{show} accounts=p_proj cluster=waldur"),
        ]
    );
    // Already gone: "Nothing deleted" is success; the read-back confirms it.
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        line.contains("remove")
            .then(|| Err(" Nothing deleted".to_owned()))
    });
    backend.delete_resource(&r).await.expect("delete again");
    assert_eq!(
        runner.lines()[1],
        format!("{show} accounts=a_r1 cluster=waldur")
    );

    // SLURM answers the removal but still lists the account (slurmdbd rolled it back): the
    // delete fails, retryably, instead of being reported done.
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        line.contains("remove account")
            .then(|| Ok(" Deleting accounts...".to_owned()))
    });
    runner.seed("a_r1", "p_proj");
    let err = backend
        .delete_resource(&r)
        .await
        .expect_err("not confirmed");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("still lists account 'a_r1'"),
        "{err}"
    );
    assert!(
        runner.lines().iter().all(|l| !l.contains("name=p_proj")),
        "the project keeps its allocation: {:#?}",
        runner.lines()
    );
}

#[tokio::test]
async fn usage_is_one_sacct_call_converted_by_unit_factor() {
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        line.contains("sacct ").then(|| {
            Ok("a_r1|billing=2,cpu=2,node=1|600|alice\n\
                a_r1|cpu=4,mem=1024M|300|bob\n\
                a_r2|cpu=1|60|alice\n"
                .to_owned())
        })
    });
    let ids = vec!["a_r1".to_owned(), "a_r2".to_owned(), "a_r3".to_owned()];
    let reports = backend
        .usage_report(&ids, &BillingPeriod::new(2024, 5, TimeZone::UTC))
        .await
        .expect("usage");
    assert_eq!(
        runner.lines(),
        vec![
            "sacct --cluster=waldur --noconvert --truncate --allocations --allusers --starttime=2024-05-01T00:00:00 --endtime=2024-05-31T23:59:59 --accounts=a_r1,a_r2,a_r3 --format=Account,AllocTRES,ElapsedRaw,User"
        ]
    );
    let r1 = &reports["a_r1"];
    // cpu minutes: 2×10 + 4×5 = 40 → / 60000
    assert!((r1.total["cpu"] - 40.0 / 60_000.0).abs() < 1e-12);
    assert!((r1.total["mem"] - 1024.0 * 5.0 / 61_440.0).abs() < 1e-12);
    assert!((r1.per_user["alice"]["cpu"] - 20.0 / 60_000.0).abs() < 1e-12);
    assert_eq!(reports["a_r3"].total["cpu"], 0.0);
    let _: BTreeMap<String, _> = reports;
}

#[tokio::test]
async fn sync_resource_projects_moves_a_project_to_its_new_customer() {
    let (backend, runner) = backend_with(settings());
    runner.respond(|line| {
        line.contains("show assoc").then(|| {
            Ok(
                "p_proj|c_old|||normal||\na_r1|p_proj|||normal||\nc_new|root|||normal||\n"
                    .to_owned(),
            )
        })
    });
    let mut r = resource("r1", "proj", "new");
    r.backend_id = "a_r1".into();
    let moved = backend.sync_resource_projects(&[r]).await.expect("sync");
    assert_eq!(moved, 1);
    assert_eq!(
        runner.lines().last().map(String::as_str),
        Some("sacctmgr modify account where name=p_proj cluster=waldur set parent=c_new")
    );
}

#[tokio::test]
async fn cluster_mismatch_is_reported() {
    let (backend, _runner) = backend_with(settings());
    assert!(backend.check_cluster_matches_offering("waldur").ok);
    let check = backend.check_cluster_matches_offering("other");
    assert!(!check.ok);
    assert!(check.detail.contains("other") && check.detail.contains("waldur"));
}

#[test]
fn build_reads_settings_and_components_from_the_offering() {
    let offering: agent_config::OfferingConfig = serde_json::from_value(serde_json::json!({
        "name": "hpc",
        "waldur_api_url": "http://localhost/api/",
        "waldur_api_token": "t",
        "waldur_offering_uuid": "0123456789abcdef0123456789abcdef",
        "backend_type": "slurm",
        "backend_settings": {"default_account": "root", "allocation_prefix": "hpc_"},
        "backend_components": {"cpu": {"measured_unit": "k-Hours", "unit_factor": 60000,
                                        "accounting_type": "limit", "label": "CPU"}}
    }))
    .expect("offering");
    let handles = crate::build(&backend_api::BuildContext::new(&offering)).expect("build");
    assert_eq!(handles.kind, "slurm");
    let orders = handles.orders.expect("orders");
    assert_eq!(orders.backend_id_for("Res-1").expect("id"), "hpc_res-1");
    assert!(handles.usernames.is_none());

    let mut bad = offering.clone();
    bad.backend_settings
        .insert("execution_mode".into(), serde_json::json!("rest"));
    let err = crate::build(&backend_api::BuildContext::new(&bad))
        .err()
        .expect("rest refused");
    assert!(matches!(err, BackendError::Config(_)));
}

/// A site where `root` exists and `show assoc` answers from a shared table, so `load` can add to it.
fn load_site() -> (SlurmBackend, Arc<FakeRunner>, Arc<Mutex<Vec<String>>>) {
    load_site_reporting(String::new())
}

/// [`load_site`] whose `sacctmgr load` answers `report` (what sacctmgr -P prints).
fn load_site_reporting(report: String) -> (SlurmBackend, Arc<FakeRunner>, Arc<Mutex<Vec<String>>>) {
    let (backend, runner) = backend_with(SlurmSettings {
        batch_load: true,
        ..settings()
    });
    let loaded_files: Arc<Mutex<Vec<String>>> = Arc::default();
    let files = loaded_files.clone();
    runner.respond(move |line| {
        let path = line.split(" file=").nth(1)?.split(' ').next()?;
        let text = std::fs::read_to_string(path).expect("load file readable during the call");
        files.lock().expect("files lock").push(text);
        Some(Ok(report.clone()))
    });
    runner.respond(|line| {
        line.contains(" list user ")
            .then(|| Ok("alice|other\n".to_owned()))
    });
    (backend, runner, loaded_files)
}

/// `show assoc` answers `first` the first time (the existence check) and `then` afterwards
/// (the read-back).
fn answer_shows(runner: &FakeRunner, first: String, then: String) {
    let shows = Mutex::new(0);
    runner.respond(move |line| {
        if !line.contains("show assoc") {
            return None;
        }
        let mut n = shows.lock().expect("count lock");
        *n += 1;
        Some(Ok(if *n == 1 { first.clone() } else { then.clone() }))
    });
}

#[tokio::test]
async fn batch_create_uses_one_load_and_existing_users_keep_their_default() {
    let (backend, runner, files) = load_site();
    answer_shows(
        &runner,
        "root||||normal||\n".to_owned(),
        // The read-back: everything but bob's association on a_r2.
        "c_cust|root||||\np_proj|c_cust||||\n\
             a_r0|p_proj||cpu=600000|||\na_r0||alice||||\na_r0||bob||||\n\
             a_r1|p_proj||cpu=600000|||\na_r1||alice||||\na_r1||bob||||\n\
             a_r2|p_proj||cpu=600000|||\na_r2||alice||||\n"
            .to_owned(),
    );
    let requests: Vec<CreateRequest> = (0..3)
        .map(|i| {
            request(
                resource(&format!("r{i}"), "proj", "cust"),
                &["alice", "bob"],
            )
        })
        .collect();
    let results = backend.create_resources(requests).await;
    let users: Vec<Vec<String>> = results
        .iter()
        .map(|r| r.as_ref().expect("created").users.clone())
        .collect();
    assert_eq!(users, vec![vec!["alice", "bob"]; 3]);
    let lines = runner.lines();
    let path = files.lock().expect("files").len();
    assert_eq!(path, 1, "exactly one load");
    let load_line = lines
        .iter()
        .find(|l| l.contains(" load "))
        .expect("a load call");
    let file = load_line
        .split(" file=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("file argument");
    assert!(
        !std::path::Path::new(file).exists(),
        "the load file is removed afterwards"
    );
    assert_eq!(
        lines
            .iter()
            .map(|l| l.replace(file, "F"))
            .collect::<Vec<_>>(),
        vec![
            "sacctmgr list tres",
            "sacctmgr show assoc format=Account,ParentName,User where accounts=a_r0,a_r1,a_r2,c_cust,p_proj,root cluster=waldur",
            "sacctmgr list user where name=alice,bob format=User,DefaultAccount",
            "sacctmgr -i -P load file=F cluster=waldur",
            // The load reported nothing it added: everything is read back.
            "sacctmgr show assoc format=Account,ParentName,User where accounts=c_cust,p_proj,a_r0,a_r1,a_r2 cluster=waldur",
            // Only what the read-back did not show goes the per-command way.
            "sacctmgr add user bob account=a_r2 DefaultAccount=root Share=parent cluster=waldur",
        ]
    );
    let text = files.lock().expect("files")[0].clone();
    assert_eq!(
        text,
        "Cluster - 'waldur'\n\
         Parent - 'root'\n\
         Account - 'c_cust':Description='Customer cust':Organization='c_cust'\n\
         Parent - 'c_cust'\n\
         Account - 'p_proj':Description='Project proj':Organization='p_proj'\n\
         Parent - 'p_proj'\n\
         Account - 'a_r0':Description='Res r0':Organization='p_proj':GrpTRESMins=cpu=600000,mem=122880\n\
         Account - 'a_r1':Description='Res r1':Organization='p_proj':GrpTRESMins=cpu=600000,mem=122880\n\
         Account - 'a_r2':Description='Res r2':Organization='p_proj':GrpTRESMins=cpu=600000,mem=122880\n\
         Parent - 'root'\n\
         User - 'bob':DefaultAccount='root':Fairshare=parent\n\
         Parent - 'a_r0'\n\
         User - 'alice':DefaultAccount='other':Fairshare=parent\n\
         User - 'bob':DefaultAccount='root':Fairshare=parent\n\
         Parent - 'a_r1'\n\
         User - 'alice':DefaultAccount='other':Fairshare=parent\n\
         User - 'bob':DefaultAccount='root':Fairshare=parent\n\
         Parent - 'a_r2'\n\
         User - 'alice':DefaultAccount='other':Fairshare=parent\n\
         User - 'bob':DefaultAccount='root':Fairshare=parent\n"
    );
}

/// What [`lone_order_in_a_new_project`] left behind.
struct LoneOrder {
    runner: Arc<FakeRunner>,
    files: Arc<Mutex<Vec<String>>>,
    /// Backend ids `check_ids` found taken.
    existing: BTreeSet<String>,
    result: Option<BackendResult<BackendResourceInfo>>,
}

/// One order as event mode runs it: `r1` for alice in the new project `proj` of the existing
/// customer `cust`, through `check_ids` (whose reads the create consumes) and
/// `create_checked`. The load answers `report`; a read-back after it answers `read_back`.
async fn lone_order_in_a_new_project(report: &str, read_back: &str) -> LoneOrder {
    let (backend, runner, files) = load_site_reporting(report.to_owned());
    answer_shows(
        &runner,
        "root||||normal||\nc_cust|root||||\n".to_owned(),
        read_back.to_owned(),
    );
    let req = request(resource("r1", "proj", "cust"), &["alice"]);
    let check = backend
        .check_ids(std::slice::from_ref(&req))
        .await
        .expect("existence check");
    let existing = check.existing.clone();
    let result = backend.create_checked(vec![req], check).await.pop();
    LoneOrder {
        runner,
        files,
        existing,
        result,
    }
}

#[tokio::test]
async fn a_lone_order_with_a_new_project_is_created_by_one_load_after_one_read_round() {
    // Event mode: one order at a time. `check_ids` reads the tree and the users' defaults
    // together; the create is then one load, confirmed by the report the load prints (2 writes
    // of the per-command path, add account project + add account allocation + add user,
    // become 1, and no read-back).
    let order = lone_order_in_a_new_project(
        "For cluster waldur\nAccount Associations\nAccount|ParentName|Share\n\
         p_proj|c_cust|\na_r1|p_proj|\n----\n\nUser Associations\nUser|Account|Share\n\
         alice|a_r1|\n----\n",
        "must not be read back\n",
    )
    .await;
    let (runner, files) = (order.runner, order.files);
    assert!(order.existing.is_empty());
    let info = order.result.expect("one result").expect("created");
    assert_eq!(info.users, vec!["alice"]);
    assert_eq!(info.parent_id, "p_proj");
    assert_eq!(files.lock().expect("files").len(), 1, "one load");
    let mut lines = runner.lines();
    // The reads of `check_ids` (tree, users' defaults, the cluster's TRES) run
    // concurrently: their order is not fixed.
    lines[..3].sort();
    let commands: Vec<String> = lines
        .iter()
        .map(|l| l.split(" where").next().unwrap_or(l).to_owned())
        .map(|l| l.split(" file=").next().unwrap_or(&l).to_owned())
        .collect();
    assert_eq!(
        commands,
        vec![
            "sacctmgr list tres",
            "sacctmgr list user",
            "sacctmgr show assoc format=Account,ParentName,User",
            "sacctmgr -i -P load",
        ],
        "{lines:#?}"
    );
    assert!(
        files.lock().expect("files")[0]
            .contains("Parent - 'a_r1'\nUser - 'alice':DefaultAccount='other'"),
        "alice keeps the default account SLURM reported"
    );
}

#[tokio::test]
async fn a_load_that_reports_less_than_its_file_is_read_back_and_a_moved_account_is_not_ours() {
    // The load reports the project and the allocation's move ("Changed Parent"): the
    // allocation existed, created between the check and the load by a writer outside the
    // lock. It is someone else's, whatever the read-back says; the project is confirmed by
    // the report, so only the allocation is read back.
    let order = lone_order_in_a_new_project(
        "For cluster waldur\n Changed Parent                for Account a_r1   other -> p_proj\n\
         Account Associations\nAccount|ParentName|Share\np_proj|c_cust|\n----\n\n\
         User Associations\nUser|Account|Share\nalice|a_r1|\n----\n",
        "a_r1|p_proj||||\na_r1||alice||||\na_r1||eve||||\n",
    )
    .await;
    let (runner, result) = (order.runner, order.result);
    assert!(
        matches!(result, Some(Err(BackendError::Duplicate { ref backend_id })) if backend_id == "a_r1"),
        "{result:?}"
    );
    let reads: Vec<String> = runner
        .lines()
        .into_iter()
        .skip_while(|l| !l.contains(" load "))
        .filter(|l| l.contains("show assoc"))
        .collect();
    assert_eq!(
        reads,
        vec![
            "sacctmgr show assoc format=Account,ParentName,User where accounts=a_r1 cluster=waldur"
        ]
    );
}

#[tokio::test]
async fn load_is_skipped_when_the_tree_top_is_missing_or_it_would_not_save_calls() {
    // `root` not reported: the cluster or the top account is missing, so no load.
    let (backend, runner, files) = load_site();
    let requests: Vec<CreateRequest> = (0..5)
        .map(|i| request(resource(&format!("r{i}"), "proj", "cust"), &["bob"]))
        .collect();
    assert!(
        backend
            .create_resources(requests)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert!(files.lock().expect("files").is_empty());
    assert!(
        runner
            .lines()
            .iter()
            .any(|l| l.contains("add account c_cust"))
    );

    // One new allocation under an existing project: add account + add user beat a load.
    let (backend, runner, files) = load_site();
    runner.seed("root", "");
    runner.seed("c_cust", "root");
    runner.seed("p_proj", "c_cust");
    let result = backend
        .create_resource(request(resource("r9", "proj", "cust"), &["bob"]))
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert!(files.lock().expect("files").is_empty());
    // list tres, show assoc, add account, its read-back, add user.
    assert_eq!(runner.lines().len(), 5, "{:#?}", runner.lines());
}

#[tokio::test]
async fn failed_load_falls_back_to_per_command_for_everything_missing() {
    let (backend, runner) = backend_with(SlurmSettings {
        batch_load: true,
        ..settings()
    });
    runner.respond(|line| {
        line.contains(" load ")
            .then(|| Err("sacctmgr: fatal: There is a problem".to_owned()))
    });
    runner.seed("root", "");
    let requests: Vec<CreateRequest> = (0..3)
        .map(|i| request(resource(&format!("r{i}"), "proj", "cust"), &["bob"]))
        .collect();
    let results = backend.create_resources(requests).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let lines = runner.lines();
    assert!(lines.iter().any(|l| l.contains(" load ")));
    for wanted in [
        "sacctmgr add account c_cust parent=root",
        "sacctmgr add account p_proj parent=c_cust",
        "sacctmgr add account a_r0 parent=p_proj",
        "sacctmgr add account a_r2 parent=p_proj",
        "sacctmgr add user bob account=a_r0,a_r1,a_r2",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(wanted)),
            "{wanted}: {lines:#?}"
        );
    }
}

/// The existence check answers "nothing there" once; later reads see the real database (an
/// account created behind the agent's back between its check and its create).
fn hide_first_show(runner: &FakeRunner) {
    let hidden = Mutex::new(false);
    runner.respond(move |line| {
        let mut done = hidden.lock().expect("hidden lock");
        (line.contains("show assoc") && !*done).then(|| {
            *done = true;
            Ok(String::new())
        })
    });
}

#[tokio::test]
async fn nothing_new_added_for_an_allocation_is_a_duplicate_never_a_success() {
    let (backend, runner) = backend_with(settings());
    runner.seed("c_cust", "root");
    runner.seed("p_proj", "c_cust");
    runner.seed("a_r1", "p_proj");
    hide_first_show(&runner);
    let err = backend
        .create_resource(request(resource("r1", "proj", "cust"), &["alice"]))
        .await
        .expect_err("someone else's account");
    assert!(
        matches!(err, BackendError::Duplicate { ref backend_id } if backend_id == "a_r1"),
        "{err}"
    );
    assert!(
        runner.lines().iter().all(|l| !l.contains("add user")),
        "no user is added to an account that is not ours: {:#?}",
        runner.lines()
    );
}

#[tokio::test]
async fn an_allocation_found_elsewhere_in_the_tree_after_a_group_add_is_a_duplicate() {
    let (backend, runner) = backend_with(settings());
    runner.seed("c_cust", "root");
    runner.seed("p_proj", "c_cust");
    runner.seed("a_r1", "p_elsewhere");
    hide_first_show(&runner);
    let mut reqs = Vec::new();
    for i in 0..2 {
        let mut r = resource(&format!("r{i}"), "proj", "cust");
        r.name = "same".into();
        reqs.push(request(r, &[]));
    }
    let results = backend.create_resources(reqs).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(results[1], Err(BackendError::Duplicate { ref backend_id }) if backend_id == "a_r1"),
        "{:?}",
        results[1]
    );
}

#[tokio::test]
async fn a_limit_change_slurm_does_not_show_is_not_reported_done() {
    let (backend, runner) = backend_with(settings());
    runner.seed("a_r1", "p_proj");
    // sacctmgr exits 0 but the database keeps the old value.
    runner.respond(|line| line.contains("modify account").then(|| Ok(String::new())));
    let r = ResourceView {
        backend_id: "a_r1".into(),
        ..Default::default()
    };
    let err = backend
        .set_limits(&r, &[("cpu".to_owned(), 10.0)].into())
        .await
        .expect_err("not confirmed");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("cpu=600000"), "{err}");

    // A real change is confirmed by the read-back.
    let (backend, runner) = backend_with(settings());
    runner.seed("a_r1", "p_proj");
    backend
        .set_limits(&r, &[("cpu".to_owned(), 10.0)].into())
        .await
        .expect("confirmed");
    assert!(
        runner
            .lines()
            .last()
            .expect("read-back")
            .contains("show assoc")
    );
}

#[tokio::test]
async fn a_batch_of_removals_is_one_remove_one_read_back_and_one_project_removal() {
    let (backend, runner) = backend_with(settings());
    runner.seed("c_cust", "root");
    runner.seed("p_proj", "c_cust");
    let mut views = Vec::new();
    for i in 0..16 {
        runner.seed(&format!("a_r{i}"), "p_proj");
        let mut r = resource(&format!("r{i}"), "proj", "cust");
        r.backend_id = format!("a_r{i}");
        views.push(r);
    }
    let results = backend.delete_resources(&views).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let lines = runner.lines();
    let removes: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("remove account"))
        .collect();
    assert_eq!(
        removes.len(),
        2,
        "allocations at once, then the project: {lines:#?}"
    );
    assert!(removes[1].contains("name=p_proj"));
    assert!(runner.db.account_names().iter().all(|k| k == "c_cust"));
    assert_eq!(lines.len(), 5, "{lines:#?}");
}

// ---- limits are checked, never saturated (issue #21) ------------------------------------------

/// cpu k-Hours, mem gb-Hours and gpu-Hours as the demo offering has them.
fn backend_with_gpu(settings: SlurmSettings) -> (SlurmBackend, Arc<FakeRunner>) {
    let runner = Arc::new(FakeRunner::default());
    runner.respond(|line| {
        line.contains(" list tres")
            .then(|| Ok("cpu||1\nmem||2\nnode||4\ngres|gpu|1001\n".to_owned()))
    });
    let mut c = components();
    c.insert("gres/gpu".to_owned(), component(60.0));
    let backend = SlurmBackend::new(settings, c, runner.clone())
        .expect("backend")
        .with_local_timezone(TimeZone::UTC);
    (backend, runner)
}

/// Lines that would change the site (anything but listing and showing).
fn writes(runner: &FakeRunner) -> Vec<String> {
    runner
        .lines()
        .into_iter()
        .filter(|l| !l.contains(" list ") && !l.contains(" show "))
        .collect()
}

fn hostile_values() -> Vec<f64> {
    let huge: f64 = serde_json::from_str("99999999999999999999").expect("json number");
    vec![
        1e30,
        huge,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        0.001,
    ]
}

#[tokio::test]
async fn create_with_an_unrepresentable_limit_writes_nothing() {
    for bad in hostile_values() {
        let (backend, runner) = backend_with_gpu(settings());
        let mut r = resource("r1", "proj", "cust");
        r.limits.insert("gres/gpu".to_owned(), bad);
        let err = backend
            .create_resource(request(r, &["alice"]))
            .await
            .expect_err("refused");
        match &err {
            BackendError::Limit(e) => assert_eq!(e.component, "gres/gpu", "{err}"),
            other => panic!("gres/gpu={bad}: expected a limit error, got {other:?}"),
        }
        assert!(!err.is_transient());
        assert_eq!(
            writes(&runner),
            Vec::<String>::new(),
            "gres/gpu={bad}: no sacctmgr write"
        );
        assert!(
            !runner
                .lines()
                .iter()
                .any(|l| l.contains("9223372036854775807")),
            "never the saturated i64::MAX"
        );
    }
}

#[tokio::test]
async fn a_bad_limit_fails_only_its_own_create_in_a_batch() {
    let (backend, runner) = backend_with_gpu(settings());
    let mut bad = resource("r1", "proj", "cust");
    bad.limits.insert("gres/gpu".to_owned(), 1e30);
    let mut good = resource("r2", "proj", "cust");
    good.limits.insert("gres/gpu".to_owned(), 0.5);
    let results = backend
        .create_resources(vec![request(bad, &[]), request(good, &[])])
        .await;
    assert!(
        matches!(results[0], Err(BackendError::Limit(_))),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
    let lines = writes(&runner);
    assert!(
        lines.iter().all(|l| !l.contains("a_r1")),
        "nothing written for the refused order: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("add account a_r2")
            && l.contains("GrpTRESMins=cpu=600000,gres/gpu=30,mem=122880")),
        "the other order is created, its 0.5 gpu-Hours as exactly 30 minutes: {lines:#?}"
    );
}

#[tokio::test]
async fn set_limits_with_an_unrepresentable_limit_writes_nothing() {
    for bad in hostile_values() {
        let (backend, runner) = backend_with_gpu(settings());
        let r = ResourceView {
            backend_id: "a_r1".into(),
            ..Default::default()
        };
        let limits = [("cpu".to_owned(), 10.0), ("gres/gpu".to_owned(), bad)].into();
        assert!(
            matches!(
                backend.check_limits(&r, &limits),
                Err(BackendError::Limit(_))
            ),
            "check_limits refuses gres/gpu={bad}"
        );
        let err = backend.set_limits(&r, &limits).await.expect_err("refused");
        assert!(matches!(err, BackendError::Limit(_)), "{err:?}");
        assert_eq!(writes(&runner), Vec::<String>::new(), "gres/gpu={bad}");
    }
}

#[tokio::test]
async fn a_fraction_of_a_gpu_hour_is_written_exactly_and_reads_back_unchanged() {
    let (backend, runner) = backend_with_gpu(settings());
    runner.respond(|line| {
        line.contains("show assoc")
            .then(|| Ok("a_r1|p_proj||cpu=600000,gres/gpu=30,mem=122880M|normal||\n".to_owned()))
    });
    let r = ResourceView {
        backend_id: "a_r1".into(),
        ..Default::default()
    };
    let limits = [
        ("cpu".to_owned(), 10.0),
        ("gres/gpu".to_owned(), 0.5),
        ("mem".to_owned(), 2.0),
    ]
    .into();
    backend.check_limits(&r, &limits).expect("representable");
    backend.set_limits(&r, &limits).await.expect("set");
    assert_eq!(
        writes(&runner),
        vec![
            "sacctmgr modify account where name=a_r1 cluster=waldur set GrpTRESMins=cpu=600000,gres/gpu=30,mem=122880"
        ]
    );
    let info = OrderBackend::pull_resource(&backend, &r)
        .await
        .expect("pull")
        .expect("exists");
    assert_eq!(info.limits, limits, "0.5 reads back as 0.5, not 1 or 0");
}

#[tokio::test]
async fn per_user_limits_out_of_range_write_nothing() {
    for bad in hostile_values() {
        let (backend, runner) = backend_with_gpu(settings());
        let r = ResourceView {
            backend_id: "a_r1".into(),
            ..Default::default()
        };
        let err = backend
            .set_user_limits(&r, "alice", &[("gres/gpu".to_owned(), bad)].into())
            .await
            .expect_err("refused");
        assert!(matches!(err, BackendError::Limit(_)), "{err:?}");
        assert_eq!(writes(&runner), Vec::<String>::new(), "gres/gpu={bad}");
    }
}

#[tokio::test]
async fn prepaid_months_are_checked_after_multiplying() {
    let mut c = components();
    let mut prepaid = component(60.0);
    prepaid.accounting_type = AccountingType::One;
    c.insert("gres/gpu".to_owned(), prepaid);
    let runner = Arc::new(FakeRunner::default());
    let backend = SlurmBackend::new(settings(), c, runner.clone())
        .expect("backend")
        .with_local_timezone(TimeZone::UTC);
    let mut r = ResourceView {
        backend_id: "a_r1".into(),
        end_date: Some("2025-04-01".into()),
        ..Default::default()
    };
    r.attributes
        .insert("created".into(), serde_json::json!("2025-01-01T00:00:00Z"));
    // 3 months × 60 minutes: a bit under the maximum per month is over it in total.
    let per_month = (crate::tres::MAX_TRES_MINUTES / 60 / 2) as f64;
    let err = backend
        .check_limits(&r, &[("gres/gpu".to_owned(), per_month)].into())
        .expect_err("× 3 months exceeds the maximum");
    assert!(err.to_string().contains("gres/gpu="), "{err}");
    backend
        .check_limits(&r, &[("gres/gpu".to_owned(), 0.5)].into())
        .expect("0.5 × 60 × 3 = 90 minutes");
    assert_eq!(writes(&runner), Vec::<String>::new());
}

#[tokio::test]
async fn one_hostile_slug_fails_only_its_own_create_and_names_the_character() {
    let (backend, runner) = backend_with(settings());
    let requests = vec![
        request(resource("r1", "proj", "cust"), &["alice"]),
        // U+202E RIGHT-TO-LEFT OVERRIDE in a project slug: invisible, not a control character.
        request(resource("r2", "evil\u{202e}gnp", "cust"), &["alice"]),
        request(resource("r3", "proj#x", "cust"), &[]),
        request(resource("r4", "proj", "cust"), &[]),
    ];
    let results = backend.create_resources(requests).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(results[3].is_ok(), "{:?}", results[3]);
    let rtl = results[1].as_ref().expect_err("U+202E refused").to_string();
    assert!(rtl.contains("U+202E"), "{rtl}");
    let hash = results[2].as_ref().expect_err("'#' refused").to_string();
    assert!(hash.contains("U+0023"), "{hash}");
    assert!(
        runner
            .lines()
            .iter()
            .all(|l| !l.contains('\u{202e}') && !l.contains("proj#x")),
        "a refused name never reaches sacctmgr: {:#?}",
        runner.lines()
    );
}

// ---------------------------------------------------------------- conformance against the double

fn grant(name: &str) -> UserGrant {
    UserGrant {
        username: name.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn conformance_lifecycle_against_the_slurm_double() {
    let (backend, runner) = backend_with(settings());
    runner.seed("root", "");
    let fixture = backend_api::testkit::conformance::Fixture {
        resource: resource("life", "proj", "cust"),
        initial_limits: [("cpu".to_owned(), 7.0), ("mem".to_owned(), 3.0)].into(),
        updated_limits: [("cpu".to_owned(), 11.0), ("mem".to_owned(), 5.0)].into(),
        users: vec![grant("alice"), grant("bob")],
    };
    backend_api::testkit::conformance::order_and_membership_lifecycle(&backend, fixture).await;
    // The empty project went with its last allocation; the customer stays.
    assert!(runner.db.account("p_proj").is_none());
    assert!(runner.db.account("c_cust").is_some());
}

#[tokio::test]
async fn extended_conformance_against_the_slurm_double() {
    use backend_api::testkit::conformance;
    let (backend, runner) = backend_with(settings());
    runner.seed("root", "");
    let limits: backend_api::Limits = [("cpu".to_owned(), 7.0), ("mem".to_owned(), 3.0)].into();
    conformance::batch_partial_failure_and_order(
        &backend,
        conformance::BatchFixture {
            first: resource("b1", "proj", "cust"),
            second: resource("b2", "proj", "cust"),
            third: resource("b3", "proj2", "cust"),
            limits: limits.clone(),
        },
    )
    .await;
    let fixture = || conformance::Fixture {
        resource: resource("idem", "proj", "cust"),
        initial_limits: limits.clone(),
        updated_limits: [("cpu".to_owned(), 11.0), ("mem".to_owned(), 5.0)].into(),
        users: vec![grant("alice"), grant("bob")],
    };
    // 0.0005 k-Hours = 30 CPU-minutes and 0.25 GB-hours = 15360 MB-minutes: exact in TRES-minutes.
    conformance::idempotent_writes_and_unit_round_trip(
        &backend,
        fixture(),
        &[[("cpu".to_owned(), 0.0005), ("mem".to_owned(), 0.25)].into()],
    )
    .await;

    // Usage: 2 CPUs and 1 GiB for an hour = 120 CPU-minutes (0.002 k-Hours) and 61440
    // MB-minutes (1 GB-hour).
    runner
        .db
        .add_job("a_used", "alice", "cpu=2,mem=1024M", 3600);
    let report = backend_api::UsageReport {
        total: [("cpu".to_owned(), 0.002), ("mem".to_owned(), 1.0)].into(),
        per_user: [(
            "alice".to_owned(),
            [("cpu".to_owned(), 0.002), ("mem".to_owned(), 1.0)].into(),
        )]
        .into(),
    };
    conformance::usage_round_trip(
        &backend,
        &["a_used".to_owned()],
        &BillingPeriod::new(2025, 3, TimeZone::UTC),
        &[("a_used".to_owned(), report)].into(),
    )
    .await;

    runner.runner.set_down(Some(
        "sacctmgr: error: slurmdbd is down: Connection refused",
    ));
    conformance::site_down_is_transient(&backend, &fixture(), &[]).await;
}

#[tokio::test]
async fn an_allocation_our_load_made_but_slurm_showed_late_is_ours_not_a_duplicate() {
    let (backend, runner) = backend_with(SlurmSettings {
        batch_load: true,
        ..settings()
    });
    runner.seed("root", "");
    // The load creates the tree, as `sacctmgr load` does ...
    let db = runner.db.clone();
    runner.respond(move |line| {
        line.contains(" load ").then(|| {
            db.seed("c_cust", "root");
            db.seed("p_proj", "c_cust");
            db.seed("a_r0", "p_proj");
            db.seed("a_r1", "p_proj");
            Ok(String::new())
        })
    });
    // ... but its read-back (the second `show assoc`) does not show it yet.
    let shows = Mutex::new(0);
    runner.respond(move |line| {
        if !line.contains("show assoc") {
            return None;
        }
        let mut n = shows.lock().expect("count lock");
        *n += 1;
        (*n == 2).then(|| Ok(String::new()))
    });
    let mut reqs = Vec::new();
    for i in 0..2 {
        let mut r = resource(&format!("r{i}"), "proj", "cust");
        r.name = "same".into();
        reqs.push(request(r, &[]));
    }
    let results = backend.create_resources(reqs).await;
    assert!(
        results.iter().all(Result::is_ok),
        "the accounts the load made are the orders' own: {results:?}\n{:#?}",
        runner.lines()
    );
    assert!(runner.lines().iter().any(|l| l.contains(" load ")));
}

/// A site with `root` and `n` allocations, each in its own project, for membership rounds.
fn membership_site(n: usize, chunk: usize) -> (SlurmBackend, Arc<FakeRunner>, Vec<ResourceView>) {
    let (backend, runner) = backend_with(SlurmSettings {
        batch_load: true,
        write_chunk_size: chunk,
        load_chunk_rows: chunk,
        ..settings()
    });
    runner.seed("root", "");
    let mut views = Vec::new();
    for i in 0..n {
        let mut r = resource(&format!("r{i}"), &format!("proj{i}"), "cust");
        r.backend_id = format!("a_r{i}");
        runner.seed("c_cust", "root");
        runner.seed(&format!("p_proj{i}"), "c_cust");
        runner.seed(&r.backend_id, &format!("p_proj{i}"));
        views.push(r);
    }
    (backend, runner, views)
}

/// What membership sync asks of the backend in one cycle: the read, the project check, one
/// round of changes, then metadata and per-user limits per resource. Returns the SLURM calls.
async fn membership_cycle(
    backend: &SlurmBackend,
    runner: &FakeRunner,
    views: &[ResourceView],
    users_of: impl Fn(usize) -> Vec<UserGrant>,
) -> usize {
    let before = runner.lines().len();
    let infos = backend.pull_resources(views).await.expect("pull");
    backend.sync_projects(views).await.expect("projects");
    let changes: Vec<MembershipChange> = views
        .iter()
        .enumerate()
        .map(|(i, view)| MembershipChange {
            resource: view.clone(),
            add: users_of(i)
                .into_iter()
                .filter(|g| !infos[&view.backend_id].users.contains(&g.username))
                .collect(),
            remove: Vec::new(),
            apply_status: true,
        })
        .collect();
    for outcome in backend.apply_membership(&changes).await {
        outcome.expect("applied");
    }
    for view in views {
        backend.resource_metadata(view).await.expect("metadata");
        backend.user_limits(view).await.expect("user limits");
    }
    runner.lines().len() - before
}

fn five_users(i: usize) -> Vec<UserGrant> {
    (0..5).map(|u| grant(&format!("u{i}x{u}"))).collect()
}

#[tokio::test]
async fn a_membership_cycle_costs_the_same_slurm_calls_for_5_and_50_resources() {
    let mut first_cycles = Vec::new();
    for n in [5, 50] {
        // Chunks large enough for every association of the cycle (the chunked case is below).
        let (backend, runner, views) = membership_site(n, 1000);
        let calls = membership_cycle(&backend, &runner, &views, five_users).await;
        // show assoc, list user, ONE load, show assoc (read-back).
        assert_eq!(calls, 4, "N={n}: {:#?}", runner.lines());
        assert_eq!(runner.db.loads(), 1);
        for (i, view) in views.iter().enumerate() {
            let users: Vec<String> = runner
                .db
                .account(&view.backend_id)
                .expect("account")
                .users
                .into_keys()
                .collect();
            let wanted: Vec<String> = five_users(i).into_iter().map(|g| g.username).collect();
            assert_eq!(users, wanted, "N={n}");
        }
        first_cycles.push(calls);
        // Nothing changed: one read and nothing else.
        let steady = membership_cycle(&backend, &runner, &views, five_users).await;
        assert_eq!(steady, 1, "N={n}: {:#?}", runner.lines());
    }
    assert_eq!(first_cycles[0], first_cycles[1]);
}

#[tokio::test]
async fn membership_writes_are_chunked_and_grouped_and_a_failed_group_fails_nobody_else() {
    // 90 resources with 5 users new to SLURM each: 450 associations, and 450 more with the
    // default account (policy `common`); chunk 200: five loads.
    let (backend, runner, views) = membership_site(90, 200);
    let calls = membership_cycle(&backend, &runner, &views, five_users).await;
    assert_eq!(runner.db.loads(), 5);
    assert_eq!(calls, 1 + 1 + 5 + 1, "{:#?}", runner.lines());
    for (i, view) in views.iter().enumerate() {
        let users = runner.db.account(&view.backend_id).expect("account").users;
        assert_eq!(users.len(), 5, "resource {i}: {users:?}");
    }

    // Removing the same user from every resource is one `remove user` per chunk; when that
    // fails, each resource is retried alone, and only the one SLURM refuses fails.
    runner.runner.clear();
    runner.respond(|line| {
        (line.contains(" remove user ") && (line.contains(',') || line.contains("account=a_r7 ")))
            .then(|| Err("sacctmgr: error: Problem talking to the database".to_owned()))
    });
    let changes: Vec<MembershipChange> = views[..10]
        .iter()
        .enumerate()
        .map(|(i, view)| MembershipChange {
            resource: view.clone(),
            remove: vec![format!("u{i}x0")],
            ..MembershipChange::default()
        })
        .collect();
    let outcomes = backend.apply_membership(&changes).await;
    let failed: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![7], "{outcomes:?}");
    assert!(
        outcomes[7]
            .as_ref()
            .err()
            .is_some_and(BackendError::is_transient),
        "{outcomes:?}"
    );
    for (i, view) in views[..10].iter().enumerate() {
        let users = runner.db.account(&view.backend_id).expect("account").users;
        assert_eq!(
            users.contains_key(&format!("u{i}x0")),
            i == 7,
            "resource {i}"
        );
    }
}

/// `load_chunk_rows` bounds the rows of every load file (each row is an insert into
/// slurmdbd's association tree), whatever the number of allocations they belong to.
#[tokio::test]
async fn a_thousand_creates_load_in_files_of_at_most_load_chunk_rows() {
    let (backend, runner) = backend_with(SlurmSettings {
        batch_load: true,
        load_chunk_rows: 200,
        ..settings()
    });
    runner.seed("root", "");
    let files = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = files.clone();
    runner.respond(move |line| {
        if let Some(path) = line
            .split(" file=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
        {
            let text = std::fs::read_to_string(path).expect("load file readable during the call");
            seen.lock().expect("files").push(text);
        }
        // The double applies the load.
        None
    });
    runner.respond(|line| line.contains(" list user ").then(|| Ok(String::new())));
    let requests: Vec<CreateRequest> = (0..1000)
        .map(|i| {
            request(
                resource(&format!("r{i}"), &format!("proj{i}"), "cust"),
                &["alice"],
            )
        })
        .collect();
    let results = backend.create_resources(requests).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    assert_eq!(runner.db.account_names().len(), 1 + 1 + 1000 + 1000);
    let files = files.lock().expect("files");
    let rows: Vec<usize> = files
        .iter()
        .map(|f| {
            f.lines()
                .filter(|l| l.starts_with("Account -") || l.starts_with("User -"))
                .count()
        })
        .collect();
    assert!(rows.iter().all(|r| *r <= 200), "{rows:?}");
    // 3 rows an allocation (project, allocation, alice): at least 15 files, not many more.
    assert!((15..=20).contains(&files.len()), "{rows:?}");
    assert_eq!(runner.db.loads(), files.len());
    let lines = runner.lines();
    assert!(
        !lines.iter().any(|l| l.contains(" add ")),
        "everything went into the loads: {lines:#?}"
    );
}

/// A load that took long makes the next one smaller (what fits in `write_chunk_seconds` at
/// the cost per row just seen); a quick one lets the chunk grow back to `load_chunk_rows`.
#[tokio::test]
async fn a_slow_load_makes_the_next_loads_smaller() {
    let (backend, runner) = backend_with(SlurmSettings {
        batch_load: true,
        load_chunk_rows: 1000,
        write_chunk_seconds: 1,
        ..settings()
    });
    runner.seed("root", "");
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let first = slow.clone();
    runner.respond(move |line| {
        if line.contains(" list user ") {
            return Some(Ok(String::new()));
        }
        if line.contains(" load ") && first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            // ~120 rows in 4 s (3 s after the fixed cost): ~40 fit in a second, ~20
            // allocations of 2 rows.
            std::thread::sleep(std::time::Duration::from_secs(4));
        }
        None
    });
    let batch = |from: usize| -> Vec<CreateRequest> {
        (from..from + 40)
            .map(|i| {
                request(
                    resource(&format!("r{i}"), &format!("proj{i}"), "cust"),
                    &["alice"],
                )
            })
            .collect()
    };
    let results = backend.create_resources(batch(0)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(runner.db.loads(), 1, "40 creates fit the cap: one load");
    let results = backend.create_resources(batch(40)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The slow first load sized the next at ~20 allocations; that one was quick, so the rest
    // went in one.
    assert_eq!(runner.db.loads(), 3);
    assert_eq!(runner.db.account_names().len(), 1 + 1 + 80 + 80);
}

#[test]
fn a_slow_sacctmgr_round_trip_is_explained_and_a_fast_one_is_not() {
    use crate::backend::round_trip_note;
    let fast = round_trip_note(std::time::Duration::from_millis(7));
    assert_eq!(fast, "7 ms for a one-row read");
    let slow = round_trip_note(std::time::Duration::from_millis(180));
    assert!(slow.starts_with("180 ms for a one-row read"), "{slow}");
    assert!(slow.contains("quickack 1"), "{slow}");
    assert!(slow.contains("docs/backends/slurm.md"), "{slow}");
}
