//! membership_sync against the simulator with the SLURM backend on its stateful sacctmgr double
//! (`backend_slurm::double`): the call pattern of a cycle, counted through the recording runner.
//! Resources are created by `MemoryBackend` orders and seeded into the double with their ids.

mod sim_common;

use std::sync::Arc;

use agent_config::{AccountingType, BackendComponent};
use agent_core::membership_sync;
use backend_api::command::CommandRunner;
use backend_api::testkit::RecordingRunner;
use backend_slurm::double::SlurmDouble;
use backend_slurm::{SlurmBackend, SlurmSettings};
use indexmap::IndexMap;
use sim_common::*;

struct SlurmWorld {
    w: World,
    runner: Arc<RecordingRunner>,
    db: Arc<SlurmDouble>,
    backend_ids: Vec<String>,
}

fn components() -> IndexMap<String, BackendComponent> {
    let component = |factor: f64| BackendComponent {
        measured_unit: "k-Hours".into(),
        unit_factor: factor,
        unit_factor_reporting: None,
        accounting_type: AccountingType::Usage,
        label: "CPU".into(),
        limit: None,
        extra: Default::default(),
    };
    IndexMap::from([
        ("cpu".to_owned(), component(60_000.0)),
        ("mem".to_owned(), component(61_440.0)),
    ])
}

/// `n` resources of the demo project on the SLURM double (flat tree under `root`).
async fn slurm_world(n: usize) -> SlurmWorld {
    let db = Arc::new(SlurmDouble::new());
    let runner = Arc::new(
        RecordingRunner::new()
            .with_site(db.clone())
            .with_transient_rule(backend_slurm::sacctmgr::is_transient_output),
    );
    let settings = SlurmSettings {
        default_account: Some("root".into()),
        parent_account: Some("root".into()),
        cluster_name: Some("waldur".into()),
        enable_user_homedir_account_creation: false,
        ..SlurmSettings::default()
    };
    let slurm = SlurmBackend::new(settings, components(), runner.clone()).expect("backend");
    let w = World::start(Setup {
        membership: Some(Arc::new(slurm)),
        ..Setup::default()
    })
    .await;
    db.seed("root", "");
    let mut orders = Vec::new();
    for i in 0..n {
        orders.push(w.create_order(&format!("alloc-{i}"), 2).await);
    }
    assert_clean(&agent_core::order_process(&w.ctx).await);
    let mut backend_ids = Vec::new();
    for order in &orders {
        let resource = w.resource_of(order).await;
        let id = resource["backend_id"]
            .as_str()
            .expect("backend id")
            .to_lowercase();
        db.seed(&id, "root");
        backend_ids.push(id);
    }
    for member in ["alice", "bob", "carol"] {
        w.add_member(member).await;
    }
    SlurmWorld {
        w,
        runner,
        db,
        backend_ids,
    }
}

/// SLURM calls and Waldur writes (POSTs) of one membership cycle.
async fn cycle(sw: &SlurmWorld) -> (u64, Vec<String>) {
    let calls = sw.runner.calls();
    sw.w.sim.reset_stats();
    assert_clean(&membership_sync(&sw.w.ctx).await);
    let writes =
        sw.w.sim
            .stats()
            .routes
            .iter()
            .filter(|(route, stats)| route.starts_with("POST") && stats.count > 0)
            .map(|(route, stats)| format!("{route}: {}", stats.count))
            .collect();
    (sw.runner.calls() - calls, writes)
}

/// Every allocation of `sw` has exactly the demo team's associations.
fn assert_every_allocation_has_the_team(sw: &SlurmWorld, context: &str) {
    for id in &sw.backend_ids {
        let users: Vec<String> = sw
            .db
            .account(id)
            .expect("account")
            .users
            .into_keys()
            .collect();
        assert_eq!(
            users,
            ["alice", "bob", "carol", "consumer-owner"],
            "{context}: {id}"
        );
    }
}

#[tokio::test]
async fn a_membership_cycle_makes_as_many_slurm_calls_for_50_resources_as_for_5() {
    let mut first = Vec::new();
    for n in [5, 50] {
        let sw = slurm_world(n).await;
        let (calls, _) = cycle(&sw).await;
        // One read, one grouped `add user` (the same team everywhere), one read-back.
        assert_eq!(calls, 3, "N={n}: {:#?}", sw.runner.commands());
        assert_every_allocation_has_the_team(&sw, &format!("N={n}"));
        first.push(calls);

        // Nothing changed: one read of the site, nothing written to SLURM or Waldur.
        let (calls, writes) = cycle(&sw).await;
        assert!(calls <= 2, "N={n}: {calls} SLURM calls in a steady cycle");
        assert!(
            writes.is_empty(),
            "N={n}: Waldur writes in a steady cycle: {writes:?}"
        );
    }
    assert_eq!(first[0], first[1]);
}

#[tokio::test]
async fn beyond_a_pass_of_250_resources_a_cycle_writes_once_more_and_misses_no_one() {
    let sw = slurm_world(300).await;
    let (calls, _) = cycle(&sw).await;
    // One read of the site, then per pass (250 + 50 resources) one grouped `add user` and one
    // read-back: what a pass holds stays bounded, the calls grow by two per pass.
    assert_eq!(calls, 5, "{:#?}", sw.runner.commands());
    assert_every_allocation_has_the_team(&sw, "300 resources");
    let (calls, writes) = cycle(&sw).await;
    assert!(calls <= 2, "{calls} SLURM calls in a steady cycle");
    assert!(
        writes.is_empty(),
        "Waldur writes in a steady cycle: {writes:?}"
    );
}
