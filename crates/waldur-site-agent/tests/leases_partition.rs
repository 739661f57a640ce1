//! The safety rule of leader election when a holder is cut off (not killed): replica A holds
//! the Lease, then its token stops working (its renewals fail with 401). A's work token must
//! fire before replica B can take the Lease, and B must take it once it expired.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_kit::{
    AuthScheme, FileToken, HttpSettings, RetryPolicy, Secret, StaticToken, TokenSource,
};
use site_sim::{KubeOptions, KubeServer};
use tokio_util::sync::CancellationToken;
use waldur_site_agent::cli::Mode;
use waldur_site_agent::leases::{LeaseKey, LeaseManager, LeaseSettings};

fn settings(server: &KubeServer) -> HttpSettings {
    let mut s = HttpSettings::new(
        "lease test",
        "kubernetes",
        server.url().parse().expect("url"),
    );
    s.timeout = Duration::from_secs(1);
    s.retry = RetryPolicy {
        max_retries: 0,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
        jitter: false,
    };
    s
}

fn manager(server: &KubeServer, token: Arc<dyn TokenSource>, identity: &str) -> LeaseManager {
    let kube = kube_kit::Kube::new(&settings(server), token, "default").expect("client");
    LeaseManager::new(
        kube,
        LeaseSettings {
            namespace: "default".into(),
            identity: identity.into(),
            duration: Duration::from_secs(4),
            renew: Duration::from_secs(1),
        },
        vec![LeaseKey::new(
            Mode::OrderProcess,
            "0123456789abcdef0123456789abcdef",
        )],
        CancellationToken::new(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_holder_stops_before_another_replica_takes_over() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = KubeServer::start(KubeOptions::default())
        .await
        .expect("double");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, server.token()).expect("token");
    let uuid = "0123456789abcdef0123456789abcdef";

    let a = manager(
        &server,
        Arc::new(FileToken::new("a", &token_file, AuthScheme::Bearer)),
        "replica-a",
    );
    let gate_a = a.gate();
    let stop = CancellationToken::new();
    let task_a = tokio::spawn(a.run(stop.clone(), Duration::from_secs(1)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let work_a = loop {
        if let Some(w) = gate_a.begin(Mode::OrderProcess, uuid) {
            break w;
        }
        assert!(Instant::now() < deadline, "A never took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // B competes from now on; A holds, so B gets nothing.
    let b = manager(
        &server,
        Arc::new(StaticToken::bearer(Secret::new(server.token()))),
        "replica-b",
    );
    let gate_b = b.gate();
    let task_b = tokio::spawn(b.run(stop.clone(), Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        gate_b.begin(Mode::OrderProcess, uuid).is_none(),
        "B took a held lease"
    );
    assert!(
        gate_a.begin(Mode::OrderProcess, uuid).is_some(),
        "A lost a lease it renews"
    );

    // A is cut off: its token is refused from now on.
    std::fs::write(&token_file, "revoked").expect("token");
    let cut = Instant::now();
    let a_token = work_a.token();
    drop(work_a);
    let a_stopped = tokio::time::timeout(Duration::from_secs(10), a_token.cancelled())
        .await
        .map(|()| Instant::now())
        .expect("A stops its work when it cannot renew");
    let b_started = loop {
        if gate_b.begin(Mode::OrderProcess, uuid).is_some() {
            break Instant::now();
        }
        assert!(cut.elapsed() < Duration::from_secs(15), "B never took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "A stopped {:?} after the cut, B took over {:?} after the cut",
        a_stopped - cut,
        b_started - cut
    );
    assert!(a_stopped < b_started, "B started before A stopped");
    assert!(
        b_started - a_stopped >= Duration::from_millis(1500),
        "less than the safety margin between A stopping and B starting"
    );
    assert!(gate_a.begin(Mode::OrderProcess, uuid).is_none());
    stop.cancel();
    let _ = task_a.await;
    let _ = task_b.await;
}
