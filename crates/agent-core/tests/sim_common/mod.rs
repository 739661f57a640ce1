//! Scenario tests against the in-process Waldur simulator (`waldur_sim::SimServer`): a demo
//! Mastermind with real state machines, the consumer acting through the HTTP API, and the site
//! played by `MemoryBackend` (or a thin double of ours around it).
//!
//! Waldur-side outcomes are read from the simulator's state and request counters, site-side
//! outcomes from the `MemoryBackend`. States the API cannot reach (an order canceled while it
//! executes, a resource erred, a closed past month) are set with `SimServer::mutate`.

#![allow(dead_code)]

use std::sync::Arc;

use agent_config::OfferingConfig;
use agent_core::{CoreSettings, CycleReport, OfferingContext, order_process};
use backend_api::testkit::MemoryBackend;
use backend_api::{
    BaseUsernameBackend, MembershipBackend, OfferingBackends, OrderBackend, UsernameBackend,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;
use waldur_client::{Auth, ClientOptions, Secret, WaldurClient};
use waldur_sim::consumer::ConsumerClient;
use waldur_sim::{ApiProfile, FaultConfig, SimOptions, SimServer};

pub const ORDERS: &str = "/api/marketplace-orders/";
pub const APPROVE: &str = "/api/marketplace-orders/{uuid}/approve_by_provider/";
pub const ORDER: &str = "/api/marketplace-orders/{uuid}/";
pub const SET_DONE: &str = "/api/marketplace-orders/{uuid}/set_state_done/";
pub const SET_ERRED: &str = "/api/marketplace-orders/{uuid}/set_state_erred/";
pub const SET_BACKEND_ID: &str = "/api/marketplace-provider-resources/{uuid}/set_backend_id/";
pub const SET_LIMITS: &str = "/api/marketplace-provider-resources/{uuid}/set_limits/";
pub const SET_USAGE: &str = "/api/marketplace-component-usages/set_usage/";
pub const SET_USER_USAGES: &str = "/api/marketplace-component-usages/{uuid}/set_user_usages/";

/// How to build a world; `Default` is the demo offering with `waldur_username` policy and the
/// plain `MemoryBackend` in every role.
pub struct Setup {
    /// `username_generation_policy` of the demo offering.
    pub username_policy: &'static str,
    pub settings: CoreSettings,
    pub site: MemoryBackend,
    /// Replaces the order role (e.g. a double that reacts while an order runs).
    pub orders: Option<Arc<dyn OrderBackend>>,
    /// Replaces the membership role (e.g. the SLURM backend on its double).
    pub membership: Option<Arc<dyn MembershipBackend>>,
    /// Replaces the username role (default: upstream's `base`, which never generates).
    pub usernames: Option<Arc<dyn UsernameBackend>>,
    /// Which Mastermind the simulator answers as.
    pub api_profile: ApiProfile,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            username_policy: "waldur_username",
            settings: fast_settings(),
            site: MemoryBackend::new(),
            orders: None,
            membership: None,
            usernames: None,
            api_profile: ApiProfile::Current,
        }
    }
}

/// Default settings with short event-order retries, so event tests stay quick.
pub fn fast_settings() -> CoreSettings {
    CoreSettings {
        ..CoreSettings::default()
    }
}

pub struct World {
    /// Shared so site doubles can change Waldur state while an order runs.
    pub sim: Arc<SimServer>,
    pub site: MemoryBackend,
    pub ctx: OfferingContext,
    /// Owner of the consumer customer: places orders, manages the project team.
    pub consumer: ConsumerClient,
    /// Owner of the provider customer (the agent's own token), for provider-side API calls.
    pub provider: ConsumerClient,
}

pub async fn world() -> World {
    World::start(Setup::default()).await
}

pub fn limits(pairs: &[(&str, i64)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

pub fn uuid(hex: &str) -> Uuid {
    Uuid::parse_str(hex).expect("simulator UUIDs are hex")
}

/// A fault rule failing every matching request with `status`.
pub fn failing(route: &str, method: Option<&str>, status: u16) -> FaultConfig {
    serde_json::from_value(json!({
        "seed": 1,
        "rules": [{"route": route, "method": method, "error_rate": 1.0, "error_status": status}]
    }))
    .expect("fault config")
}

/// A fault rule dropping the connection of every matching request.
pub fn dropping(route: &str, method: Option<&str>) -> FaultConfig {
    serde_json::from_value(json!({
        "seed": 1,
        "rules": [{"route": route, "method": method, "drop_rate": 1.0}]
    }))
    .expect("fault config")
}

pub fn assert_clean(cycle: &CycleReport) {
    assert!(
        !cycle.has_failures(),
        "unexpected failures: {:?}",
        cycle.errors
    );
}

impl World {
    pub async fn start(setup: Setup) -> World {
        let sim = SimServer::start(SimOptions {
            demo: true,
            demo_username_policy: setup.username_policy.to_owned(),
            api_profile: setup.api_profile,
            ..SimOptions::default()
        })
        .await
        .expect("simulator starts");
        let sim = Arc::new(sim);
        let demo = sim.demo().clone();
        let site = setup.site;
        let handles = site.handles();
        let backends = OfferingBackends {
            orders: Some(setup.orders.unwrap_or_else(|| {
                handles
                    .orders
                    .clone()
                    .expect("memory backend processes orders")
            })),
            membership: setup.membership.or_else(|| handles.membership.clone()),
            usage: handles.usage.clone(),
            usernames: setup
                .usernames
                .unwrap_or_else(|| Arc::new(BaseUsernameBackend)),
            health: vec![handles.health.clone()],
        };
        let config: OfferingConfig = serde_json::from_value(json!({
            "name": "sim offering",
            "waldur_api_url": demo.api_url,
            "waldur_api_token": demo.provider_token,
            "waldur_offering_uuid": demo.offering_uuid,
            "backend_type": "memory",
            "backend_components": {
                "cpu": {"measured_unit": "k-Hours", "unit_factor": 60000, "accounting_type": "usage", "label": "CPU"},
                "mem": {"measured_unit": "gb-Hours", "unit_factor": 61440, "accounting_type": "usage", "label": "RAM"}
            }
        }))
        .expect("offering config");
        let client = WaldurClient::new(ClientOptions::new(
            config.waldur_api_url.clone(),
            Auth::Token(Secret::new(demo.provider_token.clone())),
        ))
        .expect("client");
        let ctx = OfferingContext::new(config, client, backends, setup.settings);
        let consumer = ConsumerClient::new(&demo.api_url, &demo.consumer_token);
        let provider = ConsumerClient::new(&demo.api_url, &demo.provider_token);
        World {
            sim,
            site,
            ctx,
            consumer,
            provider,
        }
    }

    pub fn clear_faults(&self) {
        self.sim.set_faults(FaultConfig::default());
    }

    /// Count of `METHOD route-template` requests since the last `reset_stats`.
    pub fn count(&self, method: &str, route: &str) -> u64 {
        self.sim.stats().count(method, route)
    }

    // ---- orders ------------------------------------------------------------------------

    pub async fn create_order(&self, name: &str, cpu: i64) -> String {
        let demo = self.sim.demo();
        self.consumer
            .create_order(
                &demo.offering_uuid,
                &demo.project_uuid,
                Some(&demo.plan_uuid),
                limits(&[("cpu", cpu), ("mem", 2)]),
                name,
            )
            .await
            .expect("consumer places a Create order")
    }

    pub async fn order(&self, uuid: &str) -> Value {
        self.consumer.order(uuid).await.expect("order readable")
    }

    /// Read from the simulator's store, so it costs no request and is immune to faults.
    pub async fn order_state(&self, order: &str) -> String {
        self.sim
            .state()
            .orders
            .get(&uuid(order))
            .map(|o| o.state.clone())
            .unwrap_or_default()
    }

    pub fn order_error(&self, order: &str) -> String {
        self.sim
            .state()
            .orders
            .get(&uuid(order))
            .map(|o| o.error_message.clone())
            .unwrap_or_default()
    }

    pub async fn resource_uuid_of(&self, order: &str) -> String {
        self.sim
            .state()
            .orders
            .get(&uuid(order))
            .map(|o| o.resource.simple().to_string())
            .expect("order names its resource")
    }

    pub async fn resource(&self, resource_uuid: &str) -> Value {
        self.consumer
            .resource(resource_uuid)
            .await
            .expect("resource readable")
    }

    pub async fn resource_of(&self, order: &str) -> Value {
        let uuid = self.resource_uuid_of(order).await;
        self.resource(&uuid).await
    }

    /// A Create order taken through a clean order cycle: (resource uuid, backend id).
    pub async fn provisioned(&self, name: &str, cpu: i64) -> (String, String) {
        let order = self.create_order(name, cpu).await;
        assert_clean(&order_process(&self.ctx).await);
        assert_eq!(self.order_state(&order).await, "done");
        let resource = self.resource_of(&order).await;
        let backend_id = resource["backend_id"]
            .as_str()
            .expect("backend id set")
            .to_owned();
        assert!(!backend_id.is_empty(), "backend id set: {resource}");
        (
            resource["uuid"].as_str().expect("uuid").to_owned(),
            backend_id,
        )
    }

    /// Puts an order into a state directly (for states the API cannot reach from here).
    pub fn set_order_state(&self, order: &str, state: &str) {
        let id = uuid(order);
        self.sim
            .mutate(|s| {
                let o = s.orders.get_mut(&id).expect("order exists");
                o.state = state.to_owned();
                Ok(())
            })
            .expect("mutation");
    }

    pub fn set_resource_state(&self, resource: &str, state: &str) {
        let id = uuid(resource);
        self.sim
            .mutate(|s| {
                s.set_resource_state(&id, state);
                Ok(())
            })
            .expect("mutation");
    }

    pub fn set_resource_backend_id(&self, resource: &str, backend_id: &str) {
        let id = uuid(resource);
        self.sim
            .mutate(|s| {
                s.resources.get_mut(&id).expect("resource").backend_id = backend_id.to_owned();
                Ok(())
            })
            .expect("mutation");
    }

    pub fn waldur_resource_state(&self, resource: &str) -> String {
        self.sim
            .state()
            .resources
            .get(&uuid(resource))
            .map(|r| r.state.clone())
            .unwrap_or_default()
    }

    pub fn waldur_limits(&self, resource: &str) -> Map<String, Value> {
        self.sim
            .state()
            .resources
            .get(&uuid(resource))
            .map(|r| r.limits.clone())
            .unwrap_or_default()
    }

    // ---- people ------------------------------------------------------------------------

    pub fn user_uuid(&self, username: &str) -> String {
        self.sim
            .state()
            .users
            .values()
            .find(|u| u.username == username)
            .map(|u| u.uuid.simple().to_string())
            .expect("user exists")
    }

    pub fn staff_uuid(&self) -> Uuid {
        uuid(&self.user_uuid("staff"))
    }

    pub async fn add_member(&self, username: &str) {
        let demo = self.sim.demo();
        self.consumer
            .add_user_to_project(
                &demo.project_uuid,
                &self.user_uuid(username),
                "PROJECT.MEMBER",
            )
            .await
            .expect("add user to project");
    }

    pub async fn remove_member(&self, username: &str) {
        let demo = self.sim.demo();
        self.consumer
            .remove_user_from_project(
                &demo.project_uuid,
                &self.user_uuid(username),
                "PROJECT.MEMBER",
            )
            .await
            .expect("remove user from project");
    }

    /// (offering user uuid, state, username) of a Waldur user in the demo offering.
    pub fn offering_user(&self, username: &str) -> Option<(String, String, Option<String>)> {
        let user = uuid(&self.user_uuid(username));
        let offering = uuid(&self.sim.demo().offering_uuid);
        self.sim
            .state()
            .offering_users
            .values()
            .find(|ou| ou.user == user && ou.offering == offering)
            .map(|ou| {
                (
                    ou.uuid.simple().to_string(),
                    ou.state.clone(),
                    ou.username.clone(),
                )
            })
    }

    pub fn site_users(&self, backend_id: &str) -> Vec<String> {
        self.site
            .resource(backend_id)
            .expect("site resource exists")
            .users
            .into_iter()
            .collect()
    }

    /// Payloads of the events the simulator recorded for `object_type`, oldest first.
    pub fn event_payloads(&self, object_type: &str) -> Vec<Value> {
        self.sim
            .events()
            .into_iter()
            .filter(|e| e.event.object_type == object_type)
            .map(|e| e.event.payload)
            .collect()
    }
}

/// A site double of ours: the `MemoryBackend` with a hook that runs inside `create_resource`
/// and `set_limits`, i.e. while the order is executing (to change Waldur meanwhile).
#[derive(Clone)]
pub struct HookedSite {
    pub inner: MemoryBackend,
    hook: Arc<std::sync::Mutex<Option<Hook>>>,
}

type Hook = Box<dyn Fn() + Send + Sync>;

impl HookedSite {
    pub fn new(inner: MemoryBackend) -> Self {
        HookedSite {
            inner,
            hook: Arc::default(),
        }
    }

    pub fn set_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.hook.lock().expect("hook slot") = Some(Box::new(hook));
    }

    fn run_hook(&self) {
        if let Some(hook) = self.hook.lock().expect("hook slot").as_ref() {
            hook();
        }
    }
}

#[async_trait::async_trait]
impl backend_api::BackendHealth for HookedSite {
    fn kind(&self) -> &'static str {
        "hooked-memory"
    }
    async fn ping(&self) -> backend_api::BackendResult<()> {
        self.inner.ping().await
    }
    async fn diagnostics(&self) -> backend_api::Diagnostics {
        self.inner.diagnostics().await
    }
}

#[async_trait::async_trait]
impl OrderBackend for HookedSite {
    fn backend_id_for(&self, base_slug: &str) -> backend_api::BackendResult<String> {
        self.inner.backend_id_for(base_slug)
    }
    async fn pull_resource(
        &self,
        resource: &backend_api::ResourceView,
    ) -> backend_api::BackendResult<Option<backend_api::BackendResourceInfo>> {
        self.inner.pull_resource(resource).await
    }
    async fn create_resource(
        &self,
        request: backend_api::CreateRequest,
    ) -> backend_api::BackendResult<backend_api::BackendResourceInfo> {
        self.run_hook();
        self.inner.create_resource(request).await
    }
    async fn set_limits(
        &self,
        resource: &backend_api::ResourceView,
        limits: &backend_api::Limits,
    ) -> backend_api::BackendResult<()> {
        self.run_hook();
        self.inner.set_limits(resource, limits).await
    }
    async fn delete_resource(
        &self,
        resource: &backend_api::ResourceView,
    ) -> backend_api::BackendResult<()> {
        self.inner.delete_resource(resource).await
    }
    async fn add_users_after_create(
        &self,
        resource: &backend_api::ResourceView,
        users: &[backend_api::UserGrant],
    ) -> backend_api::BackendResult<Vec<String>> {
        self.inner.add_users_after_create(resource, users).await
    }
}
