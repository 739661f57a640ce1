//! Behaviour upstream added in 1.0.7 / 1.0.8, against the simulator: offering users Waldur
//! wants gone are torn down every membership cycle (`set_deleting` → site access removed →
//! `set_deleted`, or `set_error_deleting`), `preserve_unmanaged_backend_users`, and
//! `omit_anomalous_usage_components`.

mod sim_common;

use std::collections::BTreeMap;

use agent_core::report::reporting_periods;
use agent_core::{CoreSettings, membership_sync, report};
use backend_api::UsageReport;
use backend_api::testkit::Fault;
use serde_json::json;
use sim_common::*;

impl World {
    fn add_site_user(&self, backend_id: &str, username: &str) {
        let mut r = self.site.resource(backend_id).expect("site resource");
        r.users.insert(username.to_owned());
        self.site.insert_resource(backend_id, r);
    }

    /// Waldur asks the provider to delete a user's account (as an offering manager can).
    async fn request_deletion(&self, username: &str) -> String {
        let (ou, _, _) = self.offering_user(username).expect("offering user");
        self.provider
            .post(
                &format!("marketplace-offering-users/{ou}/request_deletion/"),
                json!({}),
            )
            .await
            .expect("request_deletion");
        ou
    }

    fn ou_state(&self, username: &str) -> String {
        self.offering_user(username).expect("offering user").1
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A user in Requested deletion loses site access and is acknowledged Deleted in the same
/// membership cycle; a steady state afterwards costs nothing.
#[tokio::test]
async fn departed_offering_users_are_torn_down_and_acknowledged() {
    let w = world().await;
    w.add_member("alice").await;
    let (_, backend_id) = w.provisioned("alloc-departure", 2).await;
    assert!(w.site_users(&backend_id).contains(&"alice".to_owned()));

    w.request_deletion("alice").await;
    assert_eq!(w.ou_state("alice"), "Requested deletion");
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.site_users(&backend_id), names(&["consumer-owner"]));
    assert_eq!(w.ou_state("alice"), "Deleted");

    w.sim.reset_stats();
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(
        w.count("POST", "/api/marketplace-offering-users/{uuid}/{action}/"),
        0,
        "nothing left to acknowledge"
    );
}

/// When the site removal fails, the user is marked Error deleting (never Deleted while the
/// site still has it) and the next cycle finishes the job.
#[tokio::test]
async fn a_failed_teardown_is_error_deleting_and_retried() {
    let w = world().await;
    w.add_member("alice").await;
    let (_, backend_id) = w.provisioned("alloc-departure-fails", 2).await;
    // Not on the team any more, so only the deletion sweep touches her.
    w.remove_member("alice").await;
    w.request_deletion("alice").await;
    // The team diff's removal and the sweep's both fail this cycle.
    w.site.fail_next("remove_users", Fault::Permanent, 2);
    let cycle = membership_sync(&w.ctx).await;
    assert!(cycle.has_failures());
    assert_eq!(w.ou_state("alice"), "Error deleting");
    assert!(w.site_users(&backend_id).contains(&"alice".to_owned()));

    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.ou_state("alice"), "Deleted");
    assert!(!w.site_users(&backend_id).contains(&"alice".to_owned()));
}

/// `preserve_unmanaged_backend_users`: site users Waldur never knew stay; people Waldur knows
/// who left the team still lose access.
#[tokio::test]
async fn unmanaged_site_users_are_preserved_when_asked() {
    let mut w = world().await;
    w.ctx.config.preserve_unmanaged_backend_users = true;
    w.add_member("alice").await;
    let (_, backend_id) = w.provisioned("alloc-preserve", 2).await;
    w.add_site_user(&backend_id, "local-admin");
    w.remove_member("alice").await;
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(
        w.site_users(&backend_id),
        names(&["consumer-owner", "local-admin"])
    );
}

/// `omit_anomalous_usage_components`: a component whose usage would go down is left out and
/// the others are reported; without it the whole submission is held back.
#[tokio::test]
async fn only_the_decreasing_component_is_omitted_when_asked() {
    for omit in [false, true] {
        let mut w = World::start(Setup {
            settings: CoreSettings {
                reporting_periods: 1,
                ..fast_settings()
            },
            ..Setup::default()
        })
        .await;
        w.ctx.config.omit_anomalous_usage_components = omit;
        let (_, backend_id) = w.provisioned("alloc-anomaly", 2).await;
        let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
        let month = reporting_periods(&now, 1).remove(0);
        let usage = |cpu: f64, mem: f64| UsageReport {
            total: BTreeMap::from([("cpu".to_owned(), cpu), ("mem".to_owned(), mem)]),
            per_user: BTreeMap::new(),
        };
        w.site
            .set_usage(&backend_id, month.year, month.month, usage(10.0, 5.0));
        assert_clean(&report(&w.ctx).await);
        // cpu goes down (a site glitch), mem goes up.
        w.site
            .set_usage(&backend_id, month.year, month.month, usage(3.0, 8.0));
        let cycle = report(&w.ctx).await;
        let recorded: BTreeMap<String, i64> = w
            .sim
            .state()
            .component_usages
            .values()
            .map(|u| (u.component_type.clone(), u.usage_cents))
            .collect();
        assert_eq!(recorded["cpu"], 1000, "omit={omit}: cpu never lowered");
        if omit {
            assert_clean(&cycle);
            assert_eq!(recorded["mem"], 800, "the other component is reported");
        } else {
            assert!(cycle.has_failures());
            assert_eq!(recorded["mem"], 500, "the whole submission held back");
        }
    }
}

/// Event mode's status pass (upstream 1.0.8): a resource paused in Waldur whose `resource`
/// message was lost is paused on the site by the next pass; unpaused, it is restored.
#[tokio::test]
async fn the_status_pass_reapplies_paused_and_restored() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-status", 2).await;
    let staff = w.staff_uuid();
    let id = uuid(&resource);
    let flag = |value: bool| {
        w.sim
            .mutate(|s| {
                s.set_resource_flag(
                    staff,
                    id,
                    waldur_sim::resources::ResourceFlag::Paused,
                    value,
                )
            })
            .expect("flag");
    };
    flag(true);
    assert!(!w.site.resource(&backend_id).expect("site").paused);
    assert_clean(&agent_core::membership::reconcile_resource_statuses(&w.ctx).await);
    assert!(w.site.resource(&backend_id).expect("site").paused);
    flag(false);
    assert_clean(&agent_core::membership::reconcile_resource_statuses(&w.ctx).await);
    assert!(!w.site.resource(&backend_id).expect("site").paused);
    assert_eq!(w.waldur_resource_state(&resource), "OK");
}
