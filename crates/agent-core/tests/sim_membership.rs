//! membership_sync and the username state machine against the simulator (agent-behaviour §3.3,
//! §6, §8 `test_offering_users`, `test_creating_offering_user_reconciliation`, §9 lessons
//! 9, 10, 13, 17): the consumer manages the project team through the API, Mastermind creates
//! offering users by its own rules, the site is `MemoryBackend`.

mod sim_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use agent_core::events::{HandlerOutcome, handle_event};
use agent_core::membership_sync;
use backend_api::testkit::{Fault, MemoryBackend};
use backend_api::{BackendError, BackendResult, OfferingUserView, UsernameBackend};
use serde_json::{Value, json};
use sim_common::*;
use waldur_sim::FaultConfig;
use waldur_sim::resources::ResourceFlag;

impl World {
    fn set_flag(&self, resource: &str, flag: ResourceFlag, value: bool) {
        let staff = self.staff_uuid();
        let id = uuid(resource);
        self.sim
            .mutate(|s| s.set_resource_flag(staff, id, flag, value))
            .expect("flag");
    }

    fn add_site_user(&self, backend_id: &str, username: &str) {
        let mut r = self.site.resource(backend_id).expect("site resource");
        r.users.insert(username.to_owned());
        self.site.insert_resource(backend_id, r);
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// New team members get access, people who left the project lose it, and site users Waldur
/// never heard of are removed too (stale = site users − team, not only known offering users).
#[tokio::test]
async fn team_diff_adds_members_and_removes_leavers_and_strangers() {
    let w = world().await;
    let (_, backend_id) = w.provisioned("alloc-team", 3).await;
    w.add_member("alice").await;
    w.add_member("bob").await;
    w.add_site_user(&backend_id, "ghost");
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(
        w.site_users(&backend_id),
        names(&["alice", "bob", "consumer-owner"])
    );

    // alice leaves the only project she had: her offering user still exists in Waldur, but
    // she must lose access.
    w.remove_member("alice").await;
    assert!(w.offering_user("alice").is_some());
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.site_users(&backend_id), names(&["bob", "consumer-owner"]));

    // A steady state costs no site changes.
    let before = w.site.calls().len();
    assert_clean(&membership_sync(&w.ctx).await);
    let changes: Vec<String> = w.site.calls()[before..]
        .iter()
        .filter(|c| c.starts_with("add_users") || c.starts_with("remove_users"))
        .cloned()
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
}

/// Grants carry the offering user's profile attributes for backends that read them; a backend
/// that says it does not (SLURM) gets one shared empty map, so a cycle over thousands of users
/// builds none.
#[tokio::test]
async fn grant_attributes_are_built_only_for_backends_that_read_them() {
    for ignores in [false, true] {
        let mut site = MemoryBackend::new();
        site.ignores_user_attributes = ignores;
        let w = World::start(Setup {
            site,
            ..Setup::default()
        })
        .await;
        w.provisioned("alloc-attrs", 3).await;
        w.add_member("alice").await;
        assert_clean(&membership_sync(&w.ctx).await);
        let keys = w.site.grant_attribute_keys("alice").expect("alice granted");
        if ignores {
            assert!(keys.is_empty(), "{keys:?}");
        } else {
            assert!(keys.iter().any(|k| k.contains("email")), "{keys:?}");
        }
    }
}

/// `restrict_member_access`: everyone's access is removed and nobody is added; lifting it
/// gives access back.
#[tokio::test]
async fn restrict_member_access_removes_everyone_until_lifted() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-restricted", 3).await;
    w.add_member("alice").await;
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.site_users(&backend_id).len(), 2);

    w.set_flag(&resource, ResourceFlag::RestrictMemberAccess, true);
    w.add_member("bob").await;
    assert_clean(&membership_sync(&w.ctx).await);
    assert!(w.site_users(&backend_id).is_empty());

    w.set_flag(&resource, ResourceFlag::RestrictMemberAccess, false);
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(
        w.site_users(&backend_id),
        names(&["alice", "bob", "consumer-owner"])
    );
}

/// paused → pause, downscaled → downscale, neither → restore (every cycle, cheap).
#[tokio::test]
async fn pause_downscale_and_restore_follow_the_waldur_flags() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-flags", 3).await;
    w.set_flag(&resource, ResourceFlag::Paused, true);
    assert_clean(&membership_sync(&w.ctx).await);
    assert!(w.site.resource(&backend_id).expect("site").paused);

    w.set_flag(&resource, ResourceFlag::Paused, false);
    w.set_flag(&resource, ResourceFlag::Downscaled, true);
    assert_clean(&membership_sync(&w.ctx).await);
    let site = w.site.resource(&backend_id).expect("site");
    assert!(site.downscaled);

    w.set_flag(&resource, ResourceFlag::Downscaled, false);
    assert_clean(&membership_sync(&w.ctx).await);
    let site = w.site.resource(&backend_id).expect("site");
    assert!(!site.paused && !site.downscaled, "restored: {site:?}");
    assert!(w.site.count_calls("restore") >= 1);
}

/// The site's limits go back to Waldur only when they differ (no echo loop).
#[tokio::test]
async fn site_limits_go_back_to_waldur_only_when_different() {
    let w = world().await;
    let (resource, backend_id) = w.provisioned("alloc-limits", 3).await;
    w.sim.reset_stats();
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(
        w.count("POST", SET_LIMITS),
        0,
        "equal limits are not echoed"
    );

    let mut site = w.site.resource(&backend_id).expect("site");
    site.limits.insert("cpu".into(), 7.0);
    w.site.insert_resource(&backend_id, site);
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.count("POST", SET_LIMITS), 1);
    assert_eq!(w.waldur_limits(&resource).get("cpu"), Some(&json!(7)));

    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.count("POST", SET_LIMITS), 1, "converged: not sent again");
}

/// An erred resource that syncs cleanly is set back to OK; one that fails is set erred and
/// the others go on.
#[tokio::test]
async fn erred_resources_heal_and_a_failing_one_is_set_erred_alone() {
    let w = world().await;
    let (first, first_id) = w.provisioned("alloc-a", 3).await;
    let (second, second_id) = w.provisioned("alloc-b", 3).await;
    w.set_resource_state(&first, "Erred");
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.waldur_resource_state(&first), "OK");

    w.add_member("alice").await;
    w.site.fail_next("add_users", Fault::Permanent, 1);
    let cycle = membership_sync(&w.ctx).await;
    assert_eq!(cycle.failed, 1, "{:?}", cycle.errors);
    let states = [
        w.waldur_resource_state(&first),
        w.waldur_resource_state(&second),
    ];
    assert!(
        states.contains(&"Erred".to_owned()) && states.contains(&"OK".to_owned()),
        "{states:?}"
    );
    let with_alice = [&first_id, &second_id]
        .iter()
        .filter(|id| w.site_users(id).contains(&"alice".to_owned()))
        .count();
    assert_eq!(with_alice, 1, "the other resource was still synced");

    // A transient site failure does not err anything.
    w.site.fail_next("add_users", Fault::Transient, 1);
    let cycle = membership_sync(&w.ctx).await;
    assert!(cycle.has_failures(), "{:?}", cycle.errors);
    assert!(
        [&first, &second]
            .iter()
            .any(|r| w.waldur_resource_state(r) == "Erred"),
        "state from before is not touched by a transient failure"
    );
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.waldur_resource_state(&first), "OK");
    assert_eq!(w.waldur_resource_state(&second), "OK");
}

fn sp_setup(site: MemoryBackend, usernames: Option<Arc<dyn UsernameBackend>>) -> Setup {
    let usernames = usernames.unwrap_or_else(|| Arc::new(site.clone()));
    Setup {
        username_policy: "service_provider",
        site,
        usernames: Some(usernames),
        ..Setup::default()
    }
}

/// `service_provider` policy: Mastermind leaves new offering users Requested; the agent moves
/// them Requested → Creating → OK with the backend's username, and gives access the same cycle.
#[tokio::test]
async fn service_provider_usernames_go_requested_creating_ok_and_get_access() {
    let site = MemoryBackend::new();
    site.set_generated_username("alice", "alice_hpc");
    let w = World::start(sp_setup(site, None)).await;
    let (_, backend_id) = w.provisioned("alloc-sp", 3).await;
    w.add_member("alice").await;
    let (ou, state, username) = w.offering_user("alice").expect("offering user created");
    assert_eq!((state.as_str(), username), ("Requested", None));

    w.sim.reset_stats();
    assert_clean(&membership_sync(&w.ctx).await);
    let (_, state, username) = w.offering_user("alice").expect("offering user");
    assert_eq!(state, "OK");
    assert_eq!(username.as_deref(), Some("alice_hpc"));
    assert!(w.site_users(&backend_id).contains(&"alice_hpc".to_owned()));
    // Begin creating first, then the username (Waldur moves Creating → OK on it).
    let log: Vec<String> = w
        .sim
        .request_log(500)
        .into_iter()
        .filter(|e| e.path.contains(&ou))
        .map(|e| format!("{} {}", e.method, e.route))
        .collect();
    assert_eq!(
        log,
        vec![
            "POST /api/marketplace-offering-users/{uuid}/{action}/",
            "PATCH /api/marketplace-offering-users/{uuid}/"
        ]
    );
}

/// What the scripted username backend answers next for a Waldur username.
#[derive(Clone)]
enum Answer {
    Name(&'static str),
    Linking,
    Validation,
    Broken,
    Unreachable,
}

/// A username backend of ours whose answers the test scripts per user.
#[derive(Default)]
struct ScriptedUsernames {
    answers: Mutex<BTreeMap<String, Answer>>,
}

impl ScriptedUsernames {
    fn set(&self, user: &str, answer: Answer) {
        self.answers
            .lock()
            .expect("answers")
            .insert(user.to_owned(), answer);
    }
}

#[async_trait::async_trait]
impl UsernameBackend for ScriptedUsernames {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    async fn get_username(&self, _user: &OfferingUserView) -> BackendResult<Option<String>> {
        Ok(None)
    }
    async fn generate_username(&self, user: &OfferingUserView) -> BackendResult<String> {
        let answer = self
            .answers
            .lock()
            .expect("answers")
            .get(&user.user_username)
            .cloned();
        match answer {
            Some(Answer::Name(n)) => Ok(n.to_owned()),
            Some(Answer::Linking) => Err(BackendError::AccountLinkingRequired {
                message: "link your university account".into(),
                comment_url: Some("https://idp.example/link".into()),
            }),
            Some(Answer::Validation) => Err(BackendError::AdditionalValidationRequired {
                message: "send a copy of your contract".into(),
                comment_url: None,
            }),
            Some(Answer::Broken) => Err(BackendError::permanent("directory refused the name")),
            Some(Answer::Unreachable) => Err(BackendError::transient("directory unreachable")),
            None => Ok(String::new()),
        }
    }
}

/// Linking and validation requirements park users in the pending states with the backend's
/// comment; a hard failure gives Error creating; a network failure leaves Creating; once the
/// backend has names, every one of them ends OK with access.
#[tokio::test]
async fn username_state_machine_handles_linking_validation_and_errors() {
    let usernames = Arc::new(ScriptedUsernames::default());
    usernames.set("alice", Answer::Linking);
    usernames.set("bob", Answer::Validation);
    usernames.set("carol", Answer::Broken);
    usernames.set("consumer-owner", Answer::Unreachable);
    let w = World::start(sp_setup(MemoryBackend::new(), Some(usernames.clone()))).await;
    let (_, backend_id) = w.provisioned("alloc-sm", 3).await;
    for u in ["alice", "bob", "carol"] {
        w.add_member(u).await;
    }
    membership_sync(&w.ctx).await;
    let state = |u: &str| w.offering_user(u).expect("offering user").1;
    assert_eq!(state("alice"), "Pending account linking");
    assert_eq!(state("bob"), "Pending additional validation");
    assert_eq!(state("carol"), "Error creating");
    assert_eq!(state("consumer-owner"), "Creating");
    {
        let store = w.sim.state();
        let alice = store
            .offering_users
            .values()
            .find(|o| o.state == "Pending account linking")
            .expect("alice pending");
        assert_eq!(
            alice.service_provider_comment,
            "link your university account"
        );
        assert_eq!(
            alice.service_provider_comment_url,
            "https://idp.example/link"
        );
    }
    assert!(
        w.site_users(&backend_id).is_empty(),
        "nobody has a username yet"
    );

    // Cross transition between the pending states.
    usernames.set("alice", Answer::Validation);
    membership_sync(&w.ctx).await;
    assert_eq!(state("alice"), "Pending additional validation");

    usernames.set("alice", Answer::Name("alice01"));
    usernames.set("bob", Answer::Name("bob01"));
    usernames.set("carol", Answer::Name("carol01"));
    usernames.set("consumer-owner", Answer::Name("owner01"));
    assert_clean(&membership_sync(&w.ctx).await);
    for u in ["alice", "bob", "carol", "consumer-owner"] {
        assert_eq!(state(u), "OK", "{u}");
    }
    assert_eq!(
        w.site_users(&backend_id),
        names(&["alice01", "bob01", "carol01", "owner01"])
    );
}

/// `service_provider` policy without `service_provider_can_create_offering_user`: the agent
/// does not touch usernames (and says so in the log).
#[tokio::test]
async fn usernames_are_not_generated_without_the_provider_permission() {
    let site = MemoryBackend::new();
    let w = World::start(sp_setup(site, None)).await;
    let (_, _) = w.provisioned("alloc-noperm", 3).await;
    let offering = uuid(&w.sim.demo().offering_uuid);
    w.sim
        .mutate(|s| {
            s.offerings
                .get_mut(&offering)
                .expect("offering")
                .plugin_options
                .insert(
                    "service_provider_can_create_offering_user".into(),
                    json!(false),
                );
            Ok(())
        })
        .expect("plugin option");
    let generated_before = w.site.count_calls("generate_username");
    w.add_member("alice").await;
    membership_sync(&w.ctx).await;
    assert_eq!(w.offering_user("alice").expect("ou").1, "Requested");
    assert_eq!(
        w.site.count_calls("generate_username"),
        generated_before,
        "no username generated after the permission was withdrawn"
    );
}

/// The race of §9.13: a user joins before having a username (no access possible), then the
/// username is set in Waldur; the `username_set` event Mastermind sends gives access at once,
/// and polling would too.
#[tokio::test]
async fn a_member_without_username_gets_access_once_the_username_is_set() {
    let w = World::start(sp_setup(
        MemoryBackend::new(),
        Some(Arc::new(ScriptedUsernames::default())),
    ))
    .await;
    let (_, backend_id) = w.provisioned("alloc-race", 3).await;
    w.add_member("alice").await;
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(w.offering_user("alice").expect("ou").1, "Creating");
    assert!(!w.site_users(&backend_id).contains(&"alice-site".to_owned()));

    // An operator (or another tool) sets the username in Waldur.
    let (ou, _, _) = w.offering_user("alice").expect("ou");
    let staff = w.staff_uuid();
    let ou_id = uuid(&ou);
    w.sim
        .mutate(|s| s.set_offering_username(staff, ou_id, Some("alice-site".into())))
        .expect("username set");
    let event: Value = w
        .event_payloads("offering_user")
        .into_iter()
        .rev()
        .find(|p| p["action"] == "username_set" && p["offering_user_uuid"] == ou.as_str())
        .expect("Mastermind announces the username");
    let outcome = handle_event(&w.ctx, Some("offering_user"), &event).await;
    assert_eq!(outcome, HandlerOutcome::Handled);
    assert!(w.site_users(&backend_id).contains(&"alice-site".to_owned()));

    // Polling agrees and changes nothing more.
    assert_clean(&membership_sync(&w.ctx).await);
    assert!(w.site_users(&backend_id).contains(&"alice-site".to_owned()));
}

/// Service and course accounts of the project get access and lose it when closed; they are
/// not treated as stale team members.
#[tokio::test]
async fn service_and_course_accounts_follow_their_state() {
    let w = world().await;
    let (_, backend_id) = w.provisioned("alloc-svc", 3).await;
    let project = uuid(&w.sim.demo().project_uuid);
    let svc = w
        .sim
        .mutate(|s| {
            s.add_project_account(
                waldur_sim::accounts::AccountKind::Service,
                project,
                "svc-backup",
                "",
                "",
                None,
            )
        })
        .expect("service account");
    assert_clean(&membership_sync(&w.ctx).await);
    assert!(w.site_users(&backend_id).contains(&"svc-backup".to_owned()));
    assert_clean(&membership_sync(&w.ctx).await);
    assert_eq!(
        w.site.count_calls("remove_users"),
        0,
        "an active account is not stale"
    );

    w.sim
        .mutate(|s| s.close_project_account(&svc))
        .expect("close");
    assert_clean(&membership_sync(&w.ctx).await);
    assert!(!w.site_users(&backend_id).contains(&"svc-backup".to_owned()));
}

/// An older Mastermind without the account listings (404) or with them failing (503): the
/// resource is never erred because of them, and the team is still synced.
#[tokio::test]
async fn account_listing_errors_and_old_mastermind_never_err_the_resource() {
    for status in [404, 503] {
        let w = world().await;
        let (resource, backend_id) = w.provisioned("alloc-old", 3).await;
        w.add_member("alice").await;
        let faults: FaultConfig = serde_json::from_value(json!({
            "seed": 1,
            "rules": [
                {"route": "/api/marketplace-provider-offerings/{uuid}/list_project_service_accounts/", "error_rate": 1.0, "error_status": status},
                {"route": "/api/marketplace-provider-offerings/{uuid}/list_course_accounts/", "error_rate": 1.0, "error_status": status}
            ]
        }))
        .expect("faults");
        w.sim.set_faults(faults);
        assert_clean(&membership_sync(&w.ctx).await);
        assert_eq!(w.waldur_resource_state(&resource), "OK", "{status}");
        assert!(
            w.site_users(&backend_id).contains(&"alice".to_owned()),
            "{status}"
        );
    }
}

/// A membership cycle with nothing changed writes nothing to Waldur, even when Waldur keeps
/// metadata keys of its own next to the backend's.
#[tokio::test]
async fn a_steady_state_membership_cycle_makes_no_waldur_writes() {
    let w = world().await;
    let (resource, _) = w.provisioned("alloc-steady", 2).await;
    w.add_member("alice").await;
    assert_clean(&membership_sync(&w.ctx).await);
    // Waldur's copy carries a key the backend never sends.
    let id = uuid(&resource);
    w.sim
        .mutate(|s| {
            let r = s.resources.get_mut(&id).expect("resource");
            r.backend_metadata
                .insert("waldur_default".into(), serde_json::json!(true));
            Ok(())
        })
        .expect("mutation");
    assert_clean(&membership_sync(&w.ctx).await);
    w.sim.reset_stats();
    assert_clean(&membership_sync(&w.ctx).await);
    let writes: Vec<String> = w
        .sim
        .stats()
        .routes
        .iter()
        .filter(|(route, stats)| route.starts_with("POST") && stats.count > 0)
        .map(|(route, stats)| format!("{route}: {}", stats.count))
        .collect();
    assert!(
        writes.is_empty(),
        "writes in a steady-state cycle: {writes:?}"
    );
}

/// Per-user limits of every resource come from one listing of the offering's limits per cycle
/// (not one per resource), and each resource gets its own users' limits.
#[tokio::test]
async fn per_user_limits_of_many_resources_are_one_listing_per_cycle() {
    let w = world().await;
    let mut resources = Vec::new();
    for (i, name) in ["alloc-ul-a", "alloc-ul-b", "alloc-ul-c"]
        .iter()
        .enumerate()
    {
        let (resource, backend_id) = w.provisioned(name, 3).await;
        resources.push((resource, backend_id, 2.0 + i as f64));
    }
    w.add_member("alice").await;
    assert_clean(&membership_sync(&w.ctx).await);
    // The site has per-user limits (MemoryBackend answers user_limits for known resources).
    let alice = uuid(&w.user_uuid("alice"));
    w.sim
        .mutate(|s| {
            for (resource, _, cpu) in &resources {
                let limit = waldur_sim::model::UserUsageLimit {
                    uuid: uuid::Uuid::new_v4(),
                    resource: uuid(resource),
                    component_type: "cpu".into(),
                    user: alice,
                    limit: cpu.to_string(),
                };
                s.user_usage_limits.insert(limit.uuid, limit);
            }
            Ok(())
        })
        .expect("user limits");
    w.sim.reset_stats();
    assert_clean(&membership_sync(&w.ctx).await);
    for (_, backend_id, cpu) in &resources {
        let site = w.site.resource(backend_id).expect("site");
        assert_eq!(
            site.user_limits.get("alice").and_then(|l| l.get("cpu")),
            Some(cpu),
            "{backend_id}"
        );
    }
    let listings: u64 = w
        .sim
        .stats()
        .routes
        .iter()
        .filter(|(route, _)| {
            route.starts_with("GET") && route.contains("component-user-usage-limits")
        })
        .map(|(_, s)| s.count)
        .sum();
    assert_eq!(
        listings,
        1,
        "{:?}",
        w.sim.stats().routes.keys().collect::<Vec<_>>()
    );
}
