//! A Mastermind from 2024 (`waldur-sim --api-profile 2024`), on which the Python agent 1.0.x
//! gives up: no agent identities, no `refresh_last_sync` / `set_limits` / `set_as_ok`, offering
//! users without states, `set_usage` that always writes the current month, `set_user_usage`
//! only, resources without slugs, and a SLURM allocation behind each resource that must be set
//! OK or the server errs the next Update itself. The agent works through a whole lifecycle
//! there: nothing is ever erred, usage lands in the right month, each missing endpoint is
//! logged once.

mod sim_common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use agent_core::report::reporting_periods;
use agent_core::{CoreSettings, membership_sync, order_process, report};
use backend_api::{BillingPeriod, UsageReport};
use sim_common::*;
use waldur_sim::ApiProfile;

const SET_AS_ERRED: &str = "/api/marketplace-provider-resources/{uuid}/set_as_erred/";
const SET_USER_USAGE: &str = "/api/marketplace-component-usages/{uuid}/set_user_usage/";
const ALLOCATION_STATE: &str = "/api/marketplace-slurm-remote/{uuid}/set_state/";

/// Log lines of the test, captured (the runtime is current-thread: every task logs here).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

fn months(count: u32) -> Vec<BillingPeriod> {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    reporting_periods(&now, count)
}

fn legacy_world() -> Setup {
    Setup {
        api_profile: ApiProfile::Mastermind2024,
        settings: CoreSettings {
            reporting_periods: 2,
            ..fast_settings()
        },
        ..Setup::default()
    }
}

impl World {
    fn allocation_state(&self, resource: &str) -> Option<String> {
        self.sim.state().allocations.get(&uuid(resource)).cloned()
    }

    /// (billing period, component, cents) of every usage record Waldur has.
    fn usage_records(&self) -> Vec<(String, String, i64)> {
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

    fn user_usage_records(&self) -> Vec<(String, i64)> {
        self.sim
            .state()
            .user_usages
            .values()
            .map(|u| (u.username.clone(), u.usage_cents))
            .collect()
    }
}

/// Create, Update, membership sync twice, report, Terminate against a 2024 server.
#[tokio::test]
async fn a_whole_lifecycle_on_a_2024_server_errs_nothing_and_bills_the_right_month() {
    let (logs, _guard) = Logs::capture();
    let w = World::start(legacy_world()).await;
    w.add_member("alice").await;

    // Create: slugs come from the order (the resource has none), the team gets access at once,
    // the SLURM allocation is set OK.
    let create = w.create_order("alloc-2024", 3).await;
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&create).await, "done");
    let resource = w.resource_uuid_of(&create).await;
    let backend_id = w.resource(&resource).await["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();
    assert_eq!(
        backend_id, "demo-project",
        "named after the order's project slug"
    );
    assert_eq!(
        w.site_users(&backend_id),
        vec!["alice".to_owned(), "consumer-owner".to_owned()],
        "Create grants what membership sync would"
    );
    assert_eq!(w.allocation_state(&resource).as_deref(), Some("OK"));

    // Update: approved, applied, done; the allocation is OK again for the next one.
    let update = w
        .consumer
        .update_limits(&resource, limits(&[("cpu", 7), ("mem", 2)]))
        .await
        .expect("update order");
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(
        w.order_state(&update).await,
        "done",
        "{}",
        w.order_error(&update)
    );
    assert_eq!(
        w.site
            .resource(&backend_id)
            .expect("site")
            .limits
            .get("cpu"),
        Some(&7.0)
    );
    assert_eq!(w.allocation_state(&resource).as_deref(), Some("OK"));
    let second = w
        .consumer
        .update_limits(&resource, limits(&[("cpu", 8), ("mem", 2)]))
        .await
        .expect("second update order");
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(
        w.order_state(&second).await,
        "done",
        "{}",
        w.order_error(&second)
    );

    // Membership twice, with the site's limits changed meanwhile (Waldur has no set_limits):
    // no resource erred, nothing logged twice.
    let mut on_site = w.site.resource(&backend_id).expect("site");
    on_site.limits.insert("cpu".into(), 9.0);
    w.site.insert_resource(&backend_id, on_site);
    // Last synced long ago, so the agent wants to refresh it (and finds no endpoint for that).
    w.sim
        .mutate(|s| {
            for r in s.resources.values_mut() {
                r.last_sync = "2024-01-01T00:00:00Z".parse().expect("timestamp");
            }
            Ok(())
        })
        .expect("mutation");
    assert_clean(&membership_sync(&w.ctx).await);
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.waldur_resource_state(&resource), "OK");
    assert_eq!(w.count("POST", SET_AS_ERRED), 0);

    // Report two months: only the current one is sent (that server would write the past month's
    // usage into this one); per-user usage goes one user at a time.
    let m = months(2);
    w.site.set_usage(
        &backend_id,
        m[0].year,
        m[0].month,
        UsageReport {
            total: BTreeMap::from([("cpu".to_owned(), 99.0)]),
            per_user: BTreeMap::new(),
        },
    );
    w.site.set_usage(
        &backend_id,
        m[1].year,
        m[1].month,
        UsageReport {
            total: BTreeMap::from([("cpu".to_owned(), 4.0)]),
            per_user: BTreeMap::from([(
                "alice".to_owned(),
                BTreeMap::from([("cpu".to_owned(), 1.5)]),
            )]),
        },
    );
    assert_clean(&report(&w.ctx).await);
    let this_month = m[1].first_day().to_string();
    assert_eq!(
        w.usage_records(),
        vec![(this_month, "cpu".to_owned(), 400)],
        "the current month only, with the current month's usage"
    );
    assert_eq!(w.user_usage_records(), vec![("alice".to_owned(), 150)]);
    assert_eq!(w.count("POST", SET_USER_USAGE), 1);
    // Again: nothing changed, nothing sent, the fallback is remembered.
    w.sim.reset_stats();
    assert_clean(&report(&w.ctx).await);
    assert_eq!(w.count("POST", SET_USAGE), 0);
    assert_eq!(w.count("POST", SET_USER_USAGES), 0);

    // Terminate.
    let terminate = w.consumer.terminate(&resource).await.expect("terminate");
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&terminate).await, "done");
    assert!(w.site.resource(&backend_id).is_none());

    // Never erred: no order, no resource.
    let erred_orders = w
        .sim
        .state()
        .orders
        .values()
        .filter(|o| o.state == "erred")
        .count();
    assert_eq!(erred_orders, 0);
    assert_eq!(w.count("POST", SET_ERRED), 0);

    // Each missing endpoint is logged once for the offering.
    let missing = w.ctx.features.missing_endpoints();
    for endpoint in [
        "marketplace-provider-resources/{uuid}/refresh_last_sync/",
        "marketplace-provider-resources/{uuid}/set_limits/",
        "marketplace-component-usages/{uuid}/set_user_usages/",
        "marketplace-component-usages/set_usage/ billing period (date)",
        "marketplace-offering-users/ state",
    ] {
        assert!(
            missing.contains(&endpoint),
            "{endpoint} not noted: {missing:?}"
        );
        assert_eq!(
            logs.count(&format!("Waldur has no {endpoint}")),
            1,
            "{endpoint} logged once:\n{}",
            logs.text()
        );
    }
}

/// Without the allocation set OK, that server errs the next Update order itself at approval:
/// the agent re-reads the order before touching the site and leaves the site alone.
#[tokio::test]
async fn an_update_the_server_erred_at_approval_does_not_reach_the_site() {
    let w = World::start(legacy_world()).await;
    let (resource, backend_id) = w.provisioned("alloc-stale-allocation", 3).await;
    // As if an older agent had left it.
    let id = uuid(&resource);
    w.sim
        .mutate(|s| {
            s.allocations.insert(id, "Creation Scheduled".into());
            Ok(())
        })
        .expect("allocation");
    let update = w
        .consumer
        .update_limits(&resource, limits(&[("cpu", 9), ("mem", 2)]))
        .await
        .expect("update order");
    let before = w.site.count_calls("set_limits");
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&update).await, "erred");
    assert!(w.order_error(&update).contains("schedule_updating"));
    assert_eq!(
        w.site.count_calls("set_limits"),
        before,
        "the site is untouched"
    );
    assert_eq!(
        w.site
            .resource(&backend_id)
            .expect("site")
            .limits
            .get("cpu"),
        Some(&3.0)
    );
    assert_eq!(
        w.count("POST", SET_ERRED),
        0,
        "erred by the server, not by us"
    );
}

/// On a current Mastermind the allocation endpoint is gone: tried once, never again this hour.
#[tokio::test]
async fn the_allocation_endpoint_is_tried_once_on_a_current_server() {
    let w = world().await;
    w.provisioned("alloc-a", 1).await;
    w.provisioned("alloc-b", 2).await;
    assert_eq!(w.count("POST", ALLOCATION_STATE), 1);
}
