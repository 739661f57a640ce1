//! report against the wiremock fake: kept because it pins the wire format of `set_usage`
//! (2-decimal amount strings, the report date of past periods) which the simulator stores
//! only as parsed cents. The report scenarios themselves run against the simulator in
//! `sim_report.rs`.

mod common;

use std::collections::BTreeMap;

use backend_api::{BillingPeriod, UsageReport};
use common::*;
use jiff::Zoned;
use jiff::tz::TimeZone;

fn usage(cpu: f64) -> UsageReport {
    UsageReport {
        total: BTreeMap::from([("cpu".to_owned(), cpu), ("gpu-unknown".to_owned(), 1.0)]),
        per_user: BTreeMap::new(),
    }
}

fn periods() -> (BillingPeriod, BillingPeriod) {
    let current = BillingPeriod::containing(&Zoned::now().with_time_zone(TimeZone::UTC));
    (current.previous(), current)
}

#[tokio::test]
async fn two_periods_are_reported_oldest_first_and_unchanged_usage_is_not_resent() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    let (past, current) = periods();
    h.backend.set_usage("a1", past.year, past.month, usage(5.0));
    h.backend
        .set_usage("a1", current.year, current.month, usage(12.345));
    let report = agent_core::report(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let bodies = h.waldur.bodies("set_usage");
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[0]["date"].as_str().map(|d| d[..10].to_owned()),
        Some(past.first_day().to_string())
    );
    assert_eq!(bodies[1]["usages"][0]["amount"], "12.35");
    // Components unknown to the offering are not sent.
    assert_eq!(bodies[1]["usages"].as_array().map(Vec::len), Some(1));
    // Second cycle: nothing changed, nothing sent.
    agent_core::report(&h.ctx).await;
    assert_eq!(h.waldur.bodies("set_usage").len(), 2);
    // One batched backend call per period per cycle.
    assert_eq!(h.backend.count_calls("usage"), 4);
}
