//! Processors fed hostile API data (wiremock fake, `common`): an id that is not a UUID fails its
//! own item with a clear error, never becomes a request, and never stops the other items.

mod common;

use common::*;
use serde_json::json;

const HOSTILE: &str = "../../../__sim/reset-stats";

#[tokio::test]
async fn a_hostile_order_uuid_makes_no_request_outside_the_api_and_fails_alone() {
    let h = harness().await;
    h.waldur.lock().orders.insert(
        HOSTILE.to_owned(),
        json!({"uuid": HOSTILE, "type": "Create", "state": "pending-provider",
               "marketplace_resource_uuid": uuid(101), "resource_uuid": uuid(101),
               "limits": {"cpu": 10}, "project_slug": "proj", "offering_uuid": OFFERING}),
    );
    h.waldur.add_order(2, "Create", "executing", 102);
    h.waldur.add_resource(102, "alloc2", "", "Creating");

    let report = agent_core::order_process(&h.ctx).await;

    let hostile_errors: Vec<&String> = report
        .errors
        .iter()
        .filter(|e| e.contains(HOSTILE))
        .collect();
    assert_eq!(hostile_errors.len(), 1, "{:?}", report.errors);
    assert!(
        hostile_errors[0].contains("not a UUID")
            && hostile_errors[0].contains("no request was made"),
        "{}",
        hostile_errors[0]
    );
    assert!(!hostile_errors[0].contains(TOKEN));
    assert_eq!(report.transient, 0, "a hostile id is not worth retrying");
    // The ordinary order went on.
    assert_eq!(h.waldur.lock().orders[&uuid(2)]["state"], "done");

    let requests = h.server.received_requests().await.expect("recorded");
    for r in &requests {
        let p = r.url.path();
        assert!(
            p.starts_with("/api/") && !p.contains("__sim") && !p.contains(".."),
            "request outside the API paths: {} {p}",
            r.method
        );
    }
    // Nothing was sent about the hostile order: its id never reached a path.
    let log = h.waldur.lock().log.clone();
    assert!(
        log.iter()
            .all(|l| !l.contains("reset-stats") && !l.contains("approve_by_provider")),
        "{log:#?}"
    );
}
