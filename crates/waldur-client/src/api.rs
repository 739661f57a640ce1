//! One method per Mastermind endpoint the agent calls. Paths follow `waldur-api.md` appendix A.
//! UUID arguments accept dashed or hex form; they are normalised before use.

use serde_json::{Map, Value, json};

use crate::client::{Params, WaldurClient};
use crate::error::WaldurError;
use crate::ids::{WaldurUuid, normalize_uuid};
use crate::models::*;

type Result<T> = std::result::Result<T, WaldurError>;

/// A UUID for a query parameter or a JSON body (encoded there, so never a path change).
fn id(uuid: &str) -> String {
    normalize_uuid(uuid)
}

/// A UUID for a request path: 32 hex digits (dashed or not), or a permanent error and no request.
/// Ids come from API responses and events; `../../x` in a path would reach another endpoint with
/// the agent's credentials.
fn path_id(what: &str, uuid: &str) -> Result<String> {
    WaldurUuid::parse(uuid)
        .map(|u| u.as_str().to_owned())
        .map_err(|_| WaldurError::invalid_id(what, uuid))
}

/// Filters for the provider-resources list.
#[derive(Clone, Debug, Default)]
pub struct ResourceFilter {
    pub offering_uuid: Option<String>,
    pub states: Vec<ResourceState>,
    pub project_uuid: Option<String>,
    pub backend_id: Option<String>,
    /// Sparse field selection; empty = all fields.
    pub fields: Vec<&'static str>,
}

impl ResourceFilter {
    /// The query that selects the resources (field selection aside).
    fn params(&self) -> Params {
        Params::new()
            .add_opt("offering_uuid", self.offering_uuid.as_deref().map(id))
            .add_all("state", self.states.iter().map(ResourceState::as_str))
            .add_opt("project_uuid", self.project_uuid.as_deref().map(id))
            .add_opt("backend_id", self.backend_id.as_deref())
    }
}

/// See [`WaldurClient::resources_fingerprint`]. Equal fingerprints with a `count` mean the
/// same set of resources as far as one request can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingFingerprint {
    /// `X-Result-Count`; `None` when the server sends none (then nothing can be compared).
    pub count: Option<usize>,
    /// (uuid, created) of the newest matching resource.
    pub newest: Option<(String, String)>,
}

/// Filters for the offering-users list.
#[derive(Clone, Debug, Default)]
pub struct OfferingUserFilter {
    pub offering_uuid: Option<String>,
    pub user_uuid: Option<String>,
    pub states: Vec<OfferingUserState>,
    /// `Some(false)` = only unrestricted users (what the agent always asks for).
    pub is_restricted: Option<bool>,
    pub fields: Vec<String>,
}

impl WaldurClient {
    // ---------------------------------------------------------------- orders

    /// Orders of an offering in the given states, all pages.
    pub async fn list_orders(
        &self,
        offering_uuid: &str,
        states: &[OrderState],
        modified_before: Option<&str>,
    ) -> Result<Vec<Order>> {
        let params = Params::new()
            .add("offering_uuid", id(offering_uuid))
            .add_all("state", states.iter().map(OrderState::as_str))
            .add_opt("modified_before", modified_before);
        self.list_all("/api/marketplace-orders/", &params).await
    }

    /// Orders of an offering in the given states with a sparse field selection, all pages
    /// (diagnostics lists only `project_name`, `type`, `state`).
    pub async fn list_orders_fields(
        &self,
        offering_uuid: &str,
        states: &[OrderState],
        fields: &[&str],
    ) -> Result<Vec<Order>> {
        let params = Params::new()
            .add("offering_uuid", id(offering_uuid))
            .add_all("state", states.iter().map(OrderState::as_str))
            .fields(fields);
        self.list_all("/api/marketplace-orders/", &params).await
    }

    /// One order; `fields` empty = full `OrderDetails`.
    pub async fn get_order(&self, order_uuid: &str, fields: &[&str]) -> Result<Order> {
        let path = format!("/api/marketplace-orders/{}/", path_id("order", order_uuid)?);
        self.get_json(&path, &Params::new().fields(fields)).await
    }

    pub async fn approve_order_by_provider(&self, order_uuid: &str) -> Result<()> {
        let path = format!(
            "/api/marketplace-orders/{}/approve_by_provider/",
            path_id("order", order_uuid)?
        );
        self.post_action(&path, Some(&json!({}))).await
    }

    pub async fn reject_order_by_provider(
        &self,
        order_uuid: &str,
        comment: Option<&str>,
    ) -> Result<()> {
        let path = format!(
            "/api/marketplace-orders/{}/reject_by_provider/",
            path_id("order", order_uuid)?
        );
        let body = match comment {
            Some(c) => json!({ "provider_rejection_comment": c }),
            None => json!({}),
        };
        self.post_action(&path, Some(&body)).await
    }

    pub async fn set_order_executing(&self, order_uuid: &str) -> Result<()> {
        let path = format!(
            "/api/marketplace-orders/{}/set_state_executing/",
            path_id("order", order_uuid)?
        );
        self.post_action::<Value>(&path, None).await
    }

    pub async fn set_order_done(&self, order_uuid: &str) -> Result<()> {
        let path = format!(
            "/api/marketplace-orders/{}/set_state_done/",
            path_id("order", order_uuid)?
        );
        self.post_action::<Value>(&path, None).await
    }

    pub async fn set_order_erred(
        &self,
        order_uuid: &str,
        error_message: &str,
        error_traceback: &str,
    ) -> Result<()> {
        let path = format!(
            "/api/marketplace-orders/{}/set_state_erred/",
            path_id("order", order_uuid)?
        );
        let body = json!({ "error_message": error_message, "error_traceback": error_traceback });
        self.post_action(&path, Some(&body)).await
    }

    pub async fn set_order_backend_id(&self, order_uuid: &str, backend_id: &str) -> Result<()> {
        let path = format!(
            "/api/marketplace-orders/{}/set_backend_id/",
            path_id("order", order_uuid)?
        );
        self.post_action(&path, Some(&json!({ "backend_id": backend_id })))
            .await
    }

    // ------------------------------------------------------ provider resources

    pub async fn list_resources(&self, filter: &ResourceFilter) -> Result<Vec<ProviderResource>> {
        let params = filter.params().fields(&filter.fields);
        self.list_all("/api/marketplace-provider-resources/", &params)
            .await
    }

    /// What identifies the listing `filter` selects, in one request of one item: how many
    /// resources match and the newest one (`o=-created`). It changes when a resource enters the
    /// listing (created, or moved into a listed state) or leaves it; it does not see a resource
    /// changed in place.
    pub async fn resources_fingerprint(
        &self,
        filter: &ResourceFilter,
    ) -> Result<ListingFingerprint> {
        let params = filter
            .params()
            .add("o", "-created")
            .add("page_size", "1")
            .fields(&["uuid", "created"]);
        let (newest, count): (Vec<Map<String, Value>>, _) = self
            .first_page_and_count("/api/marketplace-provider-resources/", &params)
            .await?;
        let text = |item: &Map<String, Value>, key: &str| {
            item.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(ListingFingerprint {
            count,
            newest: newest
                .first()
                .map(|item| (text(item, "uuid"), text(item, "created"))),
        })
    }

    pub async fn get_resource(
        &self,
        resource_uuid: &str,
        fields: &[&str],
    ) -> Result<ProviderResource> {
        let path = format!(
            "/api/marketplace-provider-resources/{}/",
            path_id("resource", resource_uuid)?
        );
        self.get_json(&path, &Params::new().fields(fields)).await
    }

    /// The project team of a resource. Not paginated by Mastermind: one plain list.
    pub async fn resource_team(
        &self,
        resource_uuid: &str,
        consented_only: bool,
    ) -> Result<Vec<ProjectUser>> {
        let path = format!(
            "/api/marketplace-provider-resources/{}/team/",
            path_id("resource", resource_uuid)?
        );
        let params = if consented_only {
            Params::new().add("has_consent", "true")
        } else {
            Params::new()
        };
        self.list_page(&path, &params).await
    }

    fn resource_action(resource_uuid: &str, action: &str) -> Result<String> {
        Ok(format!(
            "/api/marketplace-provider-resources/{}/{action}/",
            path_id("resource", resource_uuid)?
        ))
    }

    pub async fn set_resource_backend_id(
        &self,
        resource_uuid: &str,
        backend_id: &str,
    ) -> Result<()> {
        let path = Self::resource_action(resource_uuid, "set_backend_id")?;
        self.post_action(&path, Some(&json!({ "backend_id": backend_id })))
            .await
    }

    /// Whole amounts are sent as JSON integers (the way Waldur stores them), fractions as
    /// decimals.
    pub async fn set_resource_limits(&self, resource_uuid: &str, limits: &Amounts) -> Result<()> {
        let path = Self::resource_action(resource_uuid, "set_limits")?;
        let limits: Map<String, Value> = limits
            .iter()
            .map(|(k, v)| (k.clone(), amount::to_json(*v)))
            .collect();
        self.post_action(&path, Some(&json!({ "limits": limits })))
            .await
    }

    pub async fn set_resource_backend_metadata(
        &self,
        resource_uuid: &str,
        metadata: &Map<String, Value>,
    ) -> Result<()> {
        let path = Self::resource_action(resource_uuid, "set_backend_metadata")?;
        self.post_action(&path, Some(&json!({ "backend_metadata": metadata })))
            .await
    }

    pub async fn set_resource_endpoints(
        &self,
        resource_uuid: &str,
        endpoints: &[EndpointItem],
    ) -> Result<()> {
        let path = Self::resource_action(resource_uuid, "set_endpoints")?;
        self.post_action(&path, Some(&json!({ "endpoints": endpoints })))
            .await
    }

    pub async fn refresh_resource_last_sync(&self, resource_uuid: &str) -> Result<()> {
        let path = Self::resource_action(resource_uuid, "refresh_last_sync")?;
        self.post_action::<Value>(&path, None).await
    }

    pub async fn set_resource_ok(&self, resource_uuid: &str) -> Result<()> {
        let path = Self::resource_action(resource_uuid, "set_as_ok")?;
        self.post_action::<Value>(&path, None).await
    }

    pub async fn set_resource_erred(
        &self,
        resource_uuid: &str,
        error_message: &str,
        error_traceback: &str,
    ) -> Result<()> {
        let path = Self::resource_action(resource_uuid, "set_as_erred")?;
        let body = json!({ "error_message": error_message, "error_traceback": error_traceback });
        self.post_action(&path, Some(&body)).await
    }

    /// Full replace of a resource's membership sync statuses. A 409 (offering without
    /// `enable_membership_sync_status`) comes back as a conflict error.
    pub async fn set_membership_sync_statuses(
        &self,
        resource_uuid: &str,
        statuses: &[Value],
    ) -> Result<MembershipSyncResult> {
        let path = Self::resource_action(resource_uuid, "set_membership_sync_statuses")?;
        self.post_json(&path, Some(&json!({ "statuses": statuses })))
            .await
    }

    // ------------------------------------------------------------- offerings

    pub async fn get_offering(
        &self,
        offering_uuid: &str,
        fields: &[&str],
    ) -> Result<ProviderOffering> {
        let path = format!(
            "/api/marketplace-provider-offerings/{}/",
            path_id("offering", offering_uuid)?
        );
        self.get_json(&path, &Params::new().fields(fields)).await
    }

    pub async fn check_unique_backend_id(
        &self,
        offering_uuid: &str,
        backend_id: &str,
        check_all_offerings: bool,
    ) -> Result<BackendIdCheck> {
        let path = format!(
            "/api/marketplace-provider-offerings/{}/check_unique_backend_id/",
            path_id("offering", offering_uuid)?
        );
        let body = json!({ "backend_id": backend_id, "check_all_offerings": check_all_offerings });
        self.post_json(&path, Some(&body)).await
    }

    /// `body` is an `OfferingComponentRequest` (`billing_type`, `type`, `name` required).
    pub async fn create_offering_component(&self, offering_uuid: &str, body: &Value) -> Result<()> {
        let path = format!(
            "/api/marketplace-provider-offerings/{}/create_offering_component/",
            path_id("offering", offering_uuid)?
        );
        self.post_action(&path, Some(body)).await
    }

    /// `body` must carry the component `uuid`.
    pub async fn update_offering_component(&self, offering_uuid: &str, body: &Value) -> Result<()> {
        let path = format!(
            "/api/marketplace-provider-offerings/{}/update_offering_component/",
            path_id("offering", offering_uuid)?
        );
        self.post_action(&path, Some(body)).await
    }

    pub async fn user_attribute_config(&self, offering_uuid: &str) -> Result<UserAttributeConfig> {
        let path = format!(
            "/api/marketplace-provider-offerings/{}/user-attribute-config/",
            path_id("offering", offering_uuid)?
        );
        self.get_json(&path, &Params::new()).await
    }

    pub async fn list_project_service_accounts(
        &self,
        offering_uuid: &str,
    ) -> Result<Vec<OfferingAccount>> {
        let path = format!(
            "/api/marketplace-provider-offerings/{}/list_project_service_accounts/",
            path_id("offering", offering_uuid)?
        );
        self.list_all(&path, &Params::new()).await
    }

    pub async fn list_course_accounts(&self, offering_uuid: &str) -> Result<Vec<OfferingAccount>> {
        let path = format!(
            "/api/marketplace-provider-offerings/{}/list_course_accounts/",
            path_id("offering", offering_uuid)?
        );
        self.list_all(&path, &Params::new()).await
    }

    pub async fn get_plan(&self, plan_uuid: &str) -> Result<Plan> {
        let path = format!("/api/marketplace-plans/{}/", path_id("plan", plan_uuid)?);
        self.get_json(&path, &Params::new()).await
    }

    // ------------------------------------------------------ service providers

    pub async fn list_service_providers(
        &self,
        customer_uuid: &str,
    ) -> Result<Vec<ServiceProvider>> {
        let params = Params::new()
            .add("customer_uuid", id(customer_uuid))
            .fields(&["uuid", "url", "name", "customer_uuid"]);
        self.list_page("/api/marketplace-service-providers/", &params)
            .await
    }

    /// SSH keys of users in the provider's projects (first page, as upstream).
    pub async fn service_provider_keys(&self, service_provider_uuid: &str) -> Result<Vec<SshKey>> {
        let path = format!(
            "/api/marketplace-service-providers/{}/keys/",
            path_id("service provider", service_provider_uuid)?
        );
        self.list_page(&path, &Params::new()).await
    }

    /// Projects of a service provider matching `query` (the agent searches by project uuid).
    pub async fn service_provider_projects(
        &self,
        service_provider_uuid: &str,
        query: &str,
        fields: &[&str],
    ) -> Result<Vec<Project>> {
        let path = format!(
            "/api/marketplace-service-providers/{}/projects/",
            path_id("service provider", service_provider_uuid)?
        );
        let params = Params::new().add("query", query).fields(fields);
        self.list_page(&path, &params).await
    }

    // ------------------------------------------------------------ users, misc

    pub async fn current_user(&self) -> Result<CurrentUser> {
        self.get_json("/api/users/me/", &Params::new()).await
    }

    /// `users/me` with a sparse field selection (the readiness probe asks only for `uuid`).
    pub async fn current_user_fields(&self, fields: &[&str]) -> Result<CurrentUser> {
        self.get_json("/api/users/me/", &Params::new().fields(fields))
            .await
    }

    pub async fn version(&self) -> Result<VersionInfo> {
        self.get_json("/api/version/", &Params::new()).await
    }

    // --------------------------------------------------------- offering users

    pub async fn list_offering_users(
        &self,
        filter: &OfferingUserFilter,
    ) -> Result<Vec<OfferingUser>> {
        let params = Params::new()
            .add_opt("offering_uuid", filter.offering_uuid.as_deref().map(id))
            .add_opt("user_uuid", filter.user_uuid.as_deref().map(id))
            .add_all("state", filter.states.iter().map(OfferingUserState::as_str))
            .add_opt("is_restricted", filter.is_restricted)
            .add_all("field", filter.fields.iter());
        self.list_all("/api/marketplace-offering-users/", &params)
            .await
    }

    pub async fn get_offering_user(&self, offering_user_uuid: &str) -> Result<OfferingUser> {
        let path = format!(
            "/api/marketplace-offering-users/{}/",
            path_id("offering user", offering_user_uuid)?
        );
        self.get_json(&path, &Params::new()).await
    }

    /// Set the site username; Mastermind moves Creating/Error creating/Pending… users to OK.
    pub async fn set_offering_user_username(
        &self,
        offering_user_uuid: &str,
        username: &str,
    ) -> Result<OfferingUser> {
        let path = format!(
            "/api/marketplace-offering-users/{}/",
            path_id("offering user", offering_user_uuid)?
        );
        let raw = self
            .send_body(
                reqwest::Method::PATCH,
                &path,
                Some(&json!({ "username": username })),
            )
            .await?;
        crate::client::decode(&raw)
    }

    fn offering_user_action(offering_user_uuid: &str, action: &str) -> Result<String> {
        Ok(format!(
            "/api/marketplace-offering-users/{}/{action}/",
            path_id("offering user", offering_user_uuid)?
        ))
    }

    pub async fn offering_user_begin_creating(&self, offering_user_uuid: &str) -> Result<()> {
        let path = Self::offering_user_action(offering_user_uuid, "begin_creating")?;
        self.post_action::<Value>(&path, None).await
    }

    pub async fn offering_user_set_validation_complete(
        &self,
        offering_user_uuid: &str,
    ) -> Result<()> {
        let path = Self::offering_user_action(offering_user_uuid, "set_validation_complete")?;
        self.post_action::<Value>(&path, None).await
    }

    pub async fn offering_user_set_error_creating(&self, offering_user_uuid: &str) -> Result<()> {
        let path = Self::offering_user_action(offering_user_uuid, "set_error_creating")?;
        self.post_action::<Value>(&path, None).await
    }

    pub async fn offering_user_set_pending_account_linking(
        &self,
        offering_user_uuid: &str,
        comment: &str,
        comment_url: Option<&str>,
    ) -> Result<()> {
        let path = Self::offering_user_action(offering_user_uuid, "set_pending_account_linking")?;
        self.post_action(&path, Some(&comment_body(comment, comment_url)))
            .await
    }

    pub async fn offering_user_set_pending_additional_validation(
        &self,
        offering_user_uuid: &str,
        comment: &str,
        comment_url: Option<&str>,
    ) -> Result<()> {
        let path =
            Self::offering_user_action(offering_user_uuid, "set_pending_additional_validation")?;
        self.post_action(&path, Some(&comment_body(comment, comment_url)))
            .await
    }

    /// Mastermind 1.0.8-era deletion handshake: claim a departed user (Requested deletion or
    /// Error deleting → Deleting; a 409 means the user was restored meanwhile).
    pub async fn offering_user_set_deleting(&self, offering_user_uuid: &str) -> Result<()> {
        let path = Self::offering_user_action(offering_user_uuid, "set_deleting")?;
        self.post_action::<Value>(&path, None).await
    }

    /// Deleting → Deleted, once the site access is gone.
    pub async fn offering_user_set_deleted(&self, offering_user_uuid: &str) -> Result<()> {
        let path = Self::offering_user_action(offering_user_uuid, "set_deleted")?;
        self.post_action::<Value>(&path, None).await
    }

    /// Requested deletion / Deleting → Error deleting, when the site access could not be removed.
    pub async fn offering_user_set_error_deleting(&self, offering_user_uuid: &str) -> Result<()> {
        let path = Self::offering_user_action(offering_user_uuid, "set_error_deleting")?;
        self.post_action::<Value>(&path, None).await
    }

    // ---------------------------------------------------------------- usage

    /// A resource's usage records for one billing month.
    pub async fn list_component_usages(
        &self,
        resource_uuid: &str,
        billing_period: &str,
    ) -> Result<Vec<ComponentUsage>> {
        self.component_usages("resource_uuid", resource_uuid, billing_period)
            .await
    }

    /// Every usage record of the offering's resources for one billing month: the report cycle
    /// reads them once instead of once per resource.
    pub async fn list_offering_component_usages(
        &self,
        offering_uuid: &str,
        billing_period: &str,
    ) -> Result<Vec<ComponentUsage>> {
        self.component_usages("offering_uuid", offering_uuid, billing_period)
            .await
    }

    async fn component_usages(
        &self,
        owner_filter: &str,
        owner_uuid: &str,
        billing_period: &str,
    ) -> Result<Vec<ComponentUsage>> {
        let params = Params::new()
            .add(owner_filter, id(owner_uuid))
            .add("billing_period", billing_period)
            .fields(&["uuid", "type", "usage", "resource_uuid"]);
        self.list_all("/api/marketplace-component-usages/", &params)
            .await
    }

    /// Report a resource's usage for the billing month containing `date` (201, empty body).
    pub async fn set_usage(
        &self,
        resource_uuid: &str,
        date: &str,
        usages: &[UsageItem],
    ) -> Result<()> {
        let body = json!({ "resource": id(resource_uuid), "date": date, "usages": usages });
        self.post_action("/api/marketplace-component-usages/set_usage/", Some(&body))
            .await
    }

    pub async fn set_user_usages(
        &self,
        component_usage_uuid: &str,
        usages: &[UserUsageItem],
    ) -> Result<()> {
        let path = format!(
            "/api/marketplace-component-usages/{}/set_user_usages/",
            path_id("component usage", component_usage_uuid)?
        );
        self.post_action(&path, Some(&json!({ "usages": usages })))
            .await
    }

    /// One user's usage: what a Mastermind without `set_user_usages` (2024) has. The 2024
    /// serializer takes `usage`, `username` and `user`, and no date (the record's month counts).
    pub async fn set_user_usage(
        &self,
        component_usage_uuid: &str,
        usage: &UserUsageItem,
    ) -> Result<()> {
        let path = format!(
            "/api/marketplace-component-usages/{}/set_user_usage/",
            path_id("component usage", component_usage_uuid)?
        );
        self.post_action(&path, Some(usage)).await
    }

    /// Every per-user usage of the offering's resources for one billing month (to send only
    /// what changed).
    pub async fn list_offering_component_user_usages(
        &self,
        offering_uuid: &str,
        billing_period: &str,
    ) -> Result<Vec<ComponentUserUsage>> {
        self.component_user_usages("offering_uuid", offering_uuid, billing_period)
            .await
    }

    /// A resource's per-user usage for one billing month.
    pub async fn list_component_user_usages(
        &self,
        resource_uuid: &str,
        billing_period: &str,
    ) -> Result<Vec<ComponentUserUsage>> {
        self.component_user_usages("resource_uuid", resource_uuid, billing_period)
            .await
    }

    async fn component_user_usages(
        &self,
        owner_filter: &str,
        owner_uuid: &str,
        billing_period: &str,
    ) -> Result<Vec<ComponentUserUsage>> {
        let params = Params::new()
            .add(owner_filter, id(owner_uuid))
            .add("component_usage__billing_period", billing_period)
            .fields(&["component_usage", "username", "usage", "user"]);
        self.list_all("/api/marketplace-component-user-usages/", &params)
            .await
    }

    pub async fn list_component_user_usage_limits(
        &self,
        resource_uuid: &str,
    ) -> Result<Vec<ComponentUserUsageLimit>> {
        let params = Params::new().add("resource_uuid", id(resource_uuid));
        self.list_all("/api/component-user-usage-limits/", &params)
            .await
    }

    /// Every per-user limit of the offering's resources in one paged listing (a server that
    /// ignores the filter sends more; callers group by [`ComponentUserUsageLimit::resource_uuid`]).
    pub async fn list_offering_user_usage_limits(
        &self,
        offering_uuid: &str,
    ) -> Result<Vec<ComponentUserUsageLimit>> {
        let params = Params::new().add("offering_uuid", id(offering_uuid));
        self.list_all("/api/component-user-usage-limits/", &params)
            .await
    }

    /// The state of the SLURM allocation a Mastermind from 2024 keeps behind a Marketplace.Slurm
    /// resource (`marketplace-slurm-remote/{resource}/set_state/`; gone from later servers).
    pub async fn set_slurm_allocation_state(&self, resource_uuid: &str, state: &str) -> Result<()> {
        let path = format!(
            "/api/marketplace-slurm-remote/{}/set_state/",
            path_id("resource", resource_uuid)?
        );
        self.post_action(&path, Some(&json!({ "state": state })))
            .await
    }

    // ------------------------------------------- agent identity and services
    // An older Mastermind answers 404 to all of these: callers check `is_not_found()`.

    pub async fn list_agent_identities(
        &self,
        offering_uuid: &str,
        name: &str,
    ) -> Result<Vec<AgentIdentity>> {
        let params = Params::new()
            .add("offering_uuid", id(offering_uuid))
            .add("name", name);
        self.list_page("/api/marketplace-site-agent-identities/", &params)
            .await
    }

    pub async fn create_agent_identity(
        &self,
        request: &AgentIdentityRequest,
    ) -> Result<AgentIdentity> {
        self.post_json("/api/marketplace-site-agent-identities/", Some(request))
            .await
    }

    pub async fn update_agent_identity(
        &self,
        identity_uuid: &str,
        request: &AgentIdentityRequest,
    ) -> Result<AgentIdentity> {
        let path = format!(
            "/api/marketplace-site-agent-identities/{}/",
            path_id("identity", identity_uuid)?
        );
        let raw = self
            .send_body(reqwest::Method::PUT, &path, Some(request))
            .await?;
        crate::client::decode(&raw)
    }

    /// Upsert by name: update the identity named `request.name` or create it.
    pub async fn register_agent_identity(
        &self,
        request: &AgentIdentityRequest,
    ) -> Result<AgentIdentity> {
        let existing = self
            .list_agent_identities(&request.offering, &request.name)
            .await?;
        match existing.into_iter().find(|i| i.name == request.name) {
            Some(identity) => self.update_agent_identity(&identity.uuid, request).await,
            None => self.create_agent_identity(request).await,
        }
    }

    pub async fn register_agent_service(
        &self,
        identity_uuid: &str,
        name: &str,
        mode: &str,
    ) -> Result<AgentService> {
        let path = format!(
            "/api/marketplace-site-agent-identities/{}/register_service/",
            path_id("identity", identity_uuid)?
        );
        self.post_json(&path, Some(&json!({ "name": name, "mode": mode })))
            .await
    }

    /// Also the heartbeat: Mastermind sets `last_run` on every call.
    pub async fn register_agent_processor(
        &self,
        service_uuid: &str,
        name: &str,
        backend_type: &str,
        backend_version: &str,
    ) -> Result<AgentProcessor> {
        let path = format!(
            "/api/marketplace-site-agent-services/{}/register_processor/",
            path_id("service", service_uuid)?
        );
        let body = json!({ "name": name, "backend_type": backend_type, "backend_version": backend_version });
        self.post_json(&path, Some(&body)).await
    }

    pub async fn set_agent_service_statistics(
        &self,
        service_uuid: &str,
        statistics: &Value,
    ) -> Result<()> {
        let path = format!(
            "/api/marketplace-site-agent-services/{}/set_statistics/",
            path_id("service", service_uuid)?
        );
        self.post_action(&path, Some(&json!({ "statistics": statistics })))
            .await
    }

    pub async fn register_event_subscription(
        &self,
        identity_uuid: &str,
        object_type: &str,
        description: &str,
    ) -> Result<EventSubscription> {
        let path = format!(
            "/api/marketplace-site-agent-identities/{}/register_event_subscription/",
            path_id("identity", identity_uuid)?
        );
        let body = json!({ "observable_object_type": object_type, "description": description });
        self.post_json(&path, Some(&body)).await
    }

    pub async fn create_event_subscription_queue(
        &self,
        subscription_uuid: &str,
        offering_uuid: &str,
        object_type: &str,
    ) -> Result<EventSubscriptionQueue> {
        let path = format!(
            "/api/event-subscriptions/{}/create_queue/",
            path_id("subscription", subscription_uuid)?
        );
        let body = json!({ "offering_uuid": id(offering_uuid), "object_type": object_type });
        self.post_json(&path, Some(&body)).await
    }

    /// Unified agent queue (newer Mastermind). `None` keeps the server's current type filter.
    pub async fn register_agent_queue(
        &self,
        identity_uuid: &str,
        object_types: Option<&[String]>,
    ) -> Result<AgentQueue> {
        let path = format!(
            "/api/marketplace-site-agent-identities/{}/register_queue/",
            path_id("identity", identity_uuid)?
        );
        let body = match object_types {
            Some(types) => json!({ "object_types": types }),
            None => json!({}),
        };
        self.post_json(&path, Some(&body)).await
    }

    pub async fn delete_event_subscription(&self, subscription_uuid: &str) -> Result<()> {
        let path = format!(
            "/api/event-subscriptions/{}/",
            path_id("subscription", subscription_uuid)?
        );
        self.send_body::<Value>(reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    // ------------------------------------------------------- resource API keys

    pub async fn list_resource_api_keys(&self, resource_uuid: &str) -> Result<Vec<ResourceApiKey>> {
        let params = Params::new().add("resource_uuid", id(resource_uuid));
        self.list_all("/api/marketplace-resource-api-keys/", &params)
            .await
    }

    pub async fn report_resource_api_key_created(
        &self,
        resource_uuid: &str,
        client_id: &str,
        api_key: &crate::client::Secret,
    ) -> Result<()> {
        let body = json!({ "resource": id(resource_uuid), "client_id": client_id, "api_key": api_key.expose() });
        self.post_action(
            "/api/marketplace-resource-api-keys/report_created/",
            Some(&body),
        )
        .await
    }
}

fn comment_body(comment: &str, comment_url: Option<&str>) -> Value {
    let mut body = json!({ "comment": comment });
    if let Some(url) = comment_url {
        body["comment_url"] = Value::String(url.to_owned());
    }
    body
}
