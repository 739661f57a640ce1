//! report scenarios: multi-period, idempotency, anomaly detection, per-user usage, backfill.

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

#[tokio::test]
async fn decreasing_usage_is_refused_unless_the_backend_allows_it() {
    let mut h = harness().await;
    h.ctx.settings.reporting_periods = 1;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    let (_, current) = periods();
    h.backend
        .set_usage("a1", current.year, current.month, usage(10.0));
    agent_core::report(&h.ctx).await;
    h.backend
        .set_usage("a1", current.year, current.month, usage(3.0));
    let report = agent_core::report(&h.ctx).await;
    assert_eq!(report.failed, 1, "{report:?}");
    let bodies = h.waldur.bodies("set_usage");
    assert_eq!(bodies.len(), 1, "the lower value was not sent");
}

#[tokio::test]
async fn per_user_usage_goes_to_set_user_usages() {
    let mut h = harness().await;
    h.ctx.settings.reporting_periods = 1;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    h.waldur.add_member(101, 200, "alice", Some("alice"), "OK");
    let (_, current) = periods();
    let mut report = usage(10.0);
    report
        .per_user
        .insert("alice".into(), BTreeMap::from([("cpu".to_owned(), 4.0)]));
    h.backend
        .set_usage("a1", current.year, current.month, report);
    let cycle = agent_core::report(&h.ctx).await;
    assert_eq!(cycle.failed, 0, "{cycle:?}");
    let user_usages = h.waldur.lock().user_usages.clone();
    assert_eq!(user_usages.len(), 1);
    assert_eq!(user_usages[0]["usages"][0]["username"], "alice");
    assert_eq!(user_usages[0]["usages"][0]["usage"], "4.00");
    assert!(
        user_usages[0]["usages"][0]["user"]
            .as_str()
            .is_some_and(|u| u.contains("offering-users"))
    );
}

#[tokio::test]
async fn past_period_backfill_rejection_does_not_block_the_current_month() {
    let h = harness().await;
    h.waldur.add_resource(101, "a1", "a1", "OK");
    let (past, current) = periods();
    h.backend.set_usage("a1", past.year, past.month, usage(5.0));
    h.backend
        .set_usage("a1", current.year, current.month, usage(6.0));
    h.waldur
        .fail("POST /api/marketplace-component-usages/set_usage/", &[400]);
    let report = agent_core::report(&h.ctx).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let bodies = h.waldur.bodies("set_usage");
    assert_eq!(bodies.len(), 2, "past attempted (rejected), current sent");
    assert_eq!(bodies[1]["usages"][0]["amount"], "6.00");
}
