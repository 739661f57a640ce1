//! report against the simulator (agent-behaviour §3.2, §8 `test_set_usage_idempotency`,
//! `test_multi_period_reporting`, §9 lessons 6–8): the site's usage goes through Mastermind's
//! `set_usage` upsert per (resource, component, month); assertions read the stored records.

mod sim_common;

use std::collections::BTreeMap;

use agent_core::report::reporting_periods;
use agent_core::{CoreSettings, order_process, report};
use backend_api::testkit::MemoryBackend;
use backend_api::{BillingPeriod, UsageReport};
use sim_common::*;

fn periods(count: u32) -> Vec<BillingPeriod> {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    reporting_periods(&now, count)
}

fn totals(pairs: &[(&str, f64)]) -> UsageReport {
    UsageReport {
        total: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        per_user: BTreeMap::new(),
    }
}

impl World {
    fn site_usage(&self, backend_id: &str, period: &BillingPeriod, report: UsageReport) {
        self.site
            .set_usage(backend_id, period.year, period.month, report);
    }

    /// (billing period, component, cents) of every stored record, in the order Waldur got them.
    fn recorded(&self) -> Vec<(String, String, i64)> {
        self.sim
            .state()
            .component_usages
            .values()
            .map(|u| {
                (
                    u.billing_period.to_string(),
                    u.component_type.clone(),
                    u.usage_cents,
                )
            })
            .collect()
    }

    fn cents(&self, period: &BillingPeriod, component: &str) -> Option<i64> {
        let day = period.first_day().to_string();
        self.recorded()
            .into_iter()
            .find(|(p, c, _)| *p == day && c == component)
            .map(|(_, _, cents)| cents)
    }
}

fn with_periods(n: u32) -> Setup {
    Setup {
        settings: CoreSettings {
            reporting_periods: n,
            ..fast_settings()
        },
        ..Setup::default()
    }
}

/// Amounts are rounded to 2 decimals; unchanged usage and sub-cent differences are not
/// re-sent; a real change is.
#[tokio::test]
async fn usage_is_rounded_and_only_resent_when_it_changes_by_a_cent() {
    let w = World::start(with_periods(1)).await;
    let (_, backend_id) = w.provisioned("alloc-usage", 3).await;
    let current = periods(1).remove(0);
    w.site_usage(
        &backend_id,
        &current,
        totals(&[("cpu", 1.234), ("mem", 0.5)]),
    );
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 1);
    assert_eq!(w.cents(&current, "cpu"), Some(123), "{:?}", w.recorded());
    assert_eq!(w.cents(&current, "mem"), Some(50));

    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 1, "unchanged: not re-sent");

    w.site_usage(
        &backend_id,
        &current,
        totals(&[("cpu", 1.2349), ("mem", 0.501)]),
    );
    assert_clean(&report(&w.ctx).await);
    assert_eq!(
        w.count("POST", SET_USAGE),
        1,
        "sub-cent differences: not re-sent"
    );

    w.site_usage(
        &backend_id,
        &current,
        totals(&[("cpu", 1.236), ("mem", 0.5)]),
    );
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 2, "a cent more is sent");
    assert_eq!(w.cents(&current, "cpu"), Some(124));
}

/// `reporting_periods: 1`: only the current month is read from the site and posted.
#[tokio::test]
async fn a_single_reporting_period_reads_and_posts_only_the_current_month() {
    let w = World::start(with_periods(1)).await;
    let (_, backend_id) = w.provisioned("alloc-one-period", 3).await;
    let two = periods(2);
    w.site_usage(&backend_id, &two[0], totals(&[("cpu", 7.0)]));
    w.site_usage(&backend_id, &two[1], totals(&[("cpu", 2.0)]));
    assert_clean(&report(&w.ctx).await);
    let month = |p: &BillingPeriod| format!("usage:{:04}-{:02}", p.year, p.month);
    let usage_calls: Vec<String> = w
        .site
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("usage:"))
        .collect();
    assert_eq!(usage_calls, vec![month(&two[1])], "no historical call");
    assert_eq!(w.cents(&two[1], "cpu"), Some(200));
    assert_eq!(w.cents(&two[0], "cpu"), None, "past month not posted");
}

/// `reporting_periods: 3`: the two past months and the current one, oldest first; a past
/// month Waldur already has with the same amounts is not re-sent; an empty month is skipped.
#[tokio::test]
async fn three_reporting_periods_post_oldest_first_and_skip_what_waldur_has() {
    let w = World::start(with_periods(3)).await;
    let (resource, backend_id) = w.provisioned("alloc-three", 3).await;
    let months = periods(3);
    w.site_usage(&backend_id, &months[0], totals(&[("cpu", 11.0)]));
    w.site_usage(&backend_id, &months[1], totals(&[("cpu", 22.0)]));
    w.site_usage(&backend_id, &months[2], totals(&[("cpu", 3.0)]));
    assert_clean(&report(&w.ctx).await);
    let days: Vec<String> = w.recorded().into_iter().map(|(p, _, _)| p).collect();
    let expected: Vec<String> = months.iter().map(|p| p.first_day().to_string()).collect();
    assert_eq!(days, expected, "one record per month, oldest first");
    assert_eq!(w.cents(&months[0], "cpu"), Some(1100));
    assert_eq!(w.cents(&months[1], "cpu"), Some(2200));
    assert_eq!(w.cents(&months[2], "cpu"), Some(300));

    // A correction of the middle month only is re-sent; nothing else.
    w.sim.reset_stats();
    w.site_usage(&backend_id, &months[1], totals(&[("cpu", 23.5)]));
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 1);
    assert_eq!(w.cents(&months[1], "cpu"), Some(2350));

    // A month the site has no data for is skipped, not zeroed.
    let other = w.provisioned("alloc-three-b", 1).await;
    w.site_usage(&other.1, &months[2], totals(&[("cpu", 1.0)]));
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(
        w.count("POST", SET_USAGE),
        1,
        "only the new resource's month"
    );
    let stored_for = |r: &str| {
        w.sim
            .state()
            .component_usages
            .values()
            .filter(|u| u.resource == uuid(r))
            .count()
    };
    assert_eq!(stored_for(&other.0), 1);
    assert_eq!(stored_for(&resource), 3);
}

/// A past-month record Waldur already holds (put there directly, as an earlier agent run or
/// an operator would have) is compared like any other: equal → not re-sent.
#[tokio::test]
async fn a_past_month_already_in_waldur_is_not_resent() {
    let w = World::start(with_periods(2)).await;
    let (resource, backend_id) = w.provisioned("alloc-past", 3).await;
    let months = periods(2);
    let past = months[0].clone();
    let rid = uuid(&resource);
    w.sim
        .mutate(|s| {
            let date = past.start().timestamp();
            let first = past.first_day();
            let row = waldur_sim::model::ComponentUsage {
                uuid: uuid::Uuid::new_v4(),
                resource: rid,
                component_type: "cpu".into(),
                usage_cents: 4200,
                date,
                billing_period: first,
                description: String::new(),
                missing_usage_policy: String::new(),
                recurring: false,
                plan_period: None,
                modified_by: None,
                created: date,
            };
            s.component_usages.insert(row.uuid, row);
            Ok(())
        })
        .expect("past usage row");
    w.site_usage(&backend_id, &months[0], totals(&[("cpu", 42.0)]));
    w.site_usage(&backend_id, &months[1], totals(&[("cpu", 1.0)]));
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 1, "only the current month");
    assert_eq!(w.cents(&months[1], "cpu"), Some(100));
}

/// Waldur refusing past months ("backfilling past billing periods is not allowed", a 400)
/// is expected: the current month is still reported and the cycle has no failure.
#[tokio::test]
async fn past_period_backfill_refusal_does_not_block_the_current_month() {
    let w = World::start(with_periods(2)).await;
    let (_, backend_id) = w.provisioned("alloc-backfill", 3).await;
    w.sim.state().allow_usage_backfill = false;
    let months = periods(2);
    w.site_usage(&backend_id, &months[0], totals(&[("cpu", 9.0)]));
    w.site_usage(&backend_id, &months[1], totals(&[("cpu", 4.0)]));
    w.sim.reset_stats();
    let cycle = report(&w.ctx).await;
    assert_clean(&cycle);
    assert_eq!(w.count("POST", SET_USAGE), 2, "both tried");
    assert_eq!(w.cents(&months[0], "cpu"), None, "past month refused");
    assert_eq!(w.cents(&months[1], "cpu"), Some(400));
}

/// Without `supports_decreasing_usage`, lower usage than Waldur has is refused (a site glitch
/// must not erase billing); a backend that allows decreases gets them through.
#[tokio::test]
async fn decreasing_usage_is_refused_unless_the_backend_allows_it() {
    for allowed in [false, true] {
        let mut site = MemoryBackend::new();
        site.decreasing_usage = allowed;
        let w = World::start(Setup {
            site,
            ..with_periods(1)
        })
        .await;
        let (_, backend_id) = w.provisioned("alloc-decrease", 3).await;
        let current = periods(1).remove(0);
        w.site_usage(&backend_id, &current, totals(&[("cpu", 5.0)]));
        assert_clean(&report(&w.ctx).await);
        w.site_usage(&backend_id, &current, totals(&[("cpu", 3.0)]));
        let cycle = report(&w.ctx).await;
        if allowed {
            assert_clean(&cycle);
            assert_eq!(w.cents(&current, "cpu"), Some(300));
        } else {
            assert!(cycle.has_failures(), "the anomaly is reported");
            assert!(
                cycle.errors.iter().any(|e| e.contains("anomaly")),
                "{:?}",
                cycle.errors
            );
            assert_eq!(w.cents(&current, "cpu"), Some(500), "Waldur keeps 5");
        }
    }
}

/// Per-user usage goes to `set_user_usages` of the month's component record, linked to the
/// offering user when the username is known to Waldur.
#[tokio::test]
async fn per_user_usage_is_posted_under_the_component_records() {
    let w = World::start(with_periods(1)).await;
    let (_, backend_id) = w.provisioned("alloc-per-user", 3).await;
    w.add_member("alice").await;
    let current = periods(1).remove(0);
    w.site_usage(
        &backend_id,
        &current,
        UsageReport {
            total: [("cpu".to_owned(), 2.0), ("mem".to_owned(), 1.0)].into(),
            per_user: [
                ("alice".to_owned(), [("cpu".to_owned(), 1.5)].into()),
                (
                    "ghost".to_owned(),
                    [("cpu".to_owned(), 0.5), ("mem".to_owned(), 1.0)].into(),
                ),
            ]
            .into(),
        },
    );
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(
        w.count("POST", SET_USER_USAGES),
        2,
        "one call per component"
    );
    let store = w.sim.state();
    let mut rows: Vec<(String, String, i64, bool)> = store
        .user_usages
        .values()
        .map(|u| {
            let component = store
                .component_usages
                .get(&u.component_usage)
                .map(|c| c.component_type.clone())
                .unwrap_or_default();
            (
                u.username.clone(),
                component,
                u.usage_cents,
                u.user.is_some(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("alice".into(), "cpu".into(), 150, true),
            ("ghost".into(), "cpu".into(), 50, false),
            ("ghost".into(), "mem".into(), 100, false),
        ]
    );
}

/// Components the offering does not have are dropped (Waldur would refuse the whole call).
#[tokio::test]
async fn unknown_components_are_dropped_not_fatal() {
    let w = World::start(with_periods(1)).await;
    let (_, backend_id) = w.provisioned("alloc-unknown", 3).await;
    let current = periods(1).remove(0);
    w.site_usage(
        &backend_id,
        &current,
        totals(&[("cpu", 1.0), ("fpga", 3.0)]),
    );
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.cents(&current, "cpu"), Some(100));
    assert!(w.recorded().iter().all(|(_, c, _)| c != "fpga"));
}

/// A 503 on `set_usage` fails the resource for this cycle only; the next cycle reports it.
#[tokio::test]
async fn transient_set_usage_failure_is_reported_next_cycle() {
    let w = World::start(with_periods(1)).await;
    let (_, backend_id) = w.provisioned("alloc-503", 3).await;
    let current = periods(1).remove(0);
    w.site_usage(&backend_id, &current, totals(&[("cpu", 6.0)]));
    w.sim.set_faults(failing(SET_USAGE, None, 503));
    let cycle = report(&w.ctx).await;
    assert!(cycle.has_failures());
    assert_eq!(w.cents(&current, "cpu"), None);
    w.clear_faults();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.cents(&current, "cpu"), Some(600));
}

/// The records Waldur already has are read once per month for the whole offering, not once per
/// resource; a component updated in place keeps its record, so per-user usage goes under it
/// without reading again.
#[tokio::test]
async fn usage_records_are_read_once_per_month_for_the_whole_offering() {
    let w = World::start(with_periods(2)).await;
    let [past, current]: [BillingPeriod; 2] = periods(2).try_into().expect("two periods");
    let mut backend_ids = Vec::new();
    for i in 0..4 {
        let (_, backend_id) = w.provisioned(&format!("alloc-many-{i}"), 3).await;
        backend_ids.push(backend_id);
    }
    let per_user = |cpu: f64| UsageReport {
        total: [("cpu".to_owned(), cpu)].into(),
        per_user: [("alice".to_owned(), [("cpu".to_owned(), cpu)].into())].into(),
    };
    for id in &backend_ids {
        w.site_usage(id, &past, totals(&[("cpu", 1.0)]));
        w.site_usage(id, &current, per_user(2.0));
    }
    assert_clean(&report(&w.ctx).await);

    // Next cycle: the current month grew everywhere.
    for id in &backend_ids {
        w.site_usage(id, &current, per_user(3.0));
    }
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(
        w.count("GET", "/api/marketplace-component-usages/"),
        1,
        "one listing for the changed month, whatever the number of resources; none for the \
         month that did not change"
    );
    assert_eq!(w.count("POST", SET_USAGE), 4, "only the changed month");
    assert_eq!(w.count("POST", SET_USER_USAGES), 4);
    let alice: Vec<i64> = w
        .sim
        .state()
        .user_usages
        .values()
        .filter(|u| u.username == "alice")
        .map(|u| u.usage_cents)
        .collect();
    assert_eq!(
        alice,
        vec![300; 4],
        "per-user usage updated under the same records"
    );
    assert_eq!(w.cents(&current, "cpu"), Some(300));
}

/// Per-user usage Waldur already has is not sent again; a user whose amount changed is, under
/// that component's record only.
#[tokio::test]
async fn unchanged_per_user_usage_is_not_resent() {
    let w = World::start(with_periods(1)).await;
    let (_, backend_id) = w.provisioned("alloc-per-user-diff", 3).await;
    w.add_member("alice").await;
    let current = periods(1).remove(0);
    let site = |ghost_cpu: f64| UsageReport {
        total: [("cpu".to_owned(), 1.5 + ghost_cpu), ("mem".to_owned(), 1.0)].into(),
        per_user: [
            ("alice".to_owned(), [("cpu".to_owned(), 1.5)].into()),
            (
                "ghost".to_owned(),
                [("cpu".to_owned(), ghost_cpu), ("mem".to_owned(), 1.0)].into(),
            ),
        ]
        .into(),
    };
    w.site_usage(&backend_id, &current, site(0.5));
    assert_clean(&report(&w.ctx).await);

    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 0);
    assert_eq!(w.count("POST", SET_USER_USAGES), 0, "nothing changed");

    w.site_usage(&backend_id, &current, site(0.7));
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 1);
    assert_eq!(w.count("POST", SET_USER_USAGES), 1, "only the cpu record");
    let ghost_cpu: Vec<i64> = {
        let store = w.sim.state();
        store
            .user_usages
            .values()
            .filter(|u| {
                u.username == "ghost"
                    && store
                        .component_usages
                        .get(&u.component_usage)
                        .is_some_and(|c| c.component_type == "cpu")
            })
            .map(|u| u.usage_cents)
            .collect()
    };
    assert_eq!(ghost_cpu, vec![70]);
}

/// A clean report cycle whose requests alone are in the simulator's counters afterwards.
async fn counted_report_cycle(w: &World) {
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
}

/// Resources provisioned through one order cycle: (uuid, backend id) each.
async fn provision_many(w: &World, prefix: &str, n: usize) -> Vec<(String, String)> {
    for i in 0..n {
        w.create_order(&format!("{prefix}-{i}"), 3).await;
    }
    assert_clean(&order_process(&w.ctx).await);
    w.sim
        .state()
        .resources
        .values()
        .filter(|r| r.name.starts_with(prefix) && !r.backend_id.is_empty())
        .map(|r| (r.uuid.simple().to_string(), r.backend_id.clone()))
        .collect()
}

/// A cycle with nothing new costs the same requests whatever the number of resources: the
/// offering and the listing's fingerprint (one item), no resource pages, no usage listing,
/// nothing sent. 310 resources are two pages of listing in the first cycle, none after.
#[tokio::test]
async fn a_report_cycle_with_nothing_new_costs_the_same_whatever_the_resources() {
    let mut totals_seen = Vec::new();
    for n in [2, 310] {
        let w = World::start(with_periods(2)).await;
        let [past, current]: [BillingPeriod; 2] = periods(2).try_into().expect("two periods");
        let resources = provision_many(&w, "alloc-steady", n).await;
        assert_eq!(resources.len(), n);
        for (_, backend_id) in &resources {
            w.site_usage(backend_id, &past, totals(&[("cpu", 1.0)]));
            w.site_usage(backend_id, &current, totals(&[("cpu", 2.0)]));
        }
        assert_clean(&report(&w.ctx).await);
        counted_report_cycle(&w).await;
        let stats = w.sim.stats();
        assert_eq!(
            w.count("GET", "/api/marketplace-component-usages/"),
            0,
            "{n} resources"
        );
        assert_eq!(w.count("POST", SET_USAGE), 0, "{n} resources");
        assert_eq!(
            w.count("GET", "/api/marketplace-provider-resources/"),
            1,
            "{n} resources: only the fingerprint"
        );
        totals_seen.push(stats.total);
    }
    assert_eq!(totals_seen[0], totals_seen[1], "{totals_seen:?}");
    assert!(totals_seen[0] <= 3, "{totals_seen:?}");
}

/// The reused listing is not trusted past what changed: a resource created since (the count
/// and the newest change) is listed and reported in the next cycle, and so is one that came
/// back to OK from a state the report does not list.
#[tokio::test]
async fn a_resource_new_since_the_last_listing_is_reported_next_cycle() {
    let w = World::start(with_periods(1)).await;
    let [current]: [BillingPeriod; 1] = periods(1).try_into().expect("one period");
    let first = provision_many(&w, "alloc-first", 3).await;
    for (_, backend_id) in &first {
        w.site_usage(backend_id, &current, totals(&[("cpu", 1.0)]));
    }
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 3);

    // One more resource; its usage must reach Waldur in the very next cycle.
    let (_, later_id) = w.provisioned("alloc-later", 3).await;
    w.site_usage(&later_id, &current, totals(&[("cpu", 4.0)]));
    counted_report_cycle(&w).await;
    assert_eq!(
        w.count("POST", SET_USAGE),
        1,
        "only the new resource is sent"
    );
    assert!(w.cents(&current, "cpu").is_some());

    // A listed resource leaves the listing (Terminating) and comes back (OK) with new usage:
    // the count moved in between, so the cycle in between and the one after both list.
    let (uuid, backend_id) = first[0].clone();
    w.set_resource_state(&uuid, "Terminating");
    counted_report_cycle(&w).await;
    assert_eq!(w.count("GET", "/api/marketplace-provider-resources/"), 2);
    w.set_resource_state(&uuid, "OK");
    w.site_usage(&backend_id, &current, totals(&[("cpu", 9.0)]));
    counted_report_cycle(&w).await;
    assert_eq!(
        w.count("POST", SET_USAGE),
        1,
        "the returning resource is sent"
    );
}

/// No zeros for a month that ended before the resource was created.
#[tokio::test]
async fn no_zero_usage_for_a_month_before_the_resource_existed() {
    let w = World::start(with_periods(2)).await;
    let [past, current]: [BillingPeriod; 2] = periods(2).try_into().expect("two periods");
    let (_, backend_id) = w.provisioned("alloc-new", 3).await;
    w.site_usage(&backend_id, &past, totals(&[("cpu", 0.0)]));
    w.site_usage(&backend_id, &current, totals(&[("cpu", 2.0)]));
    assert_clean(&report(&w.ctx).await);
    assert_eq!(
        w.cents(&past, "cpu"),
        None,
        "created this month: no zero for the last one"
    );
    assert_eq!(w.cents(&current, "cpu"), Some(200));
}
