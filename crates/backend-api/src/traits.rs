//! Backend capabilities, one trait each, mirroring upstream's four role slots
//! (`order_processing_backend`, `membership_sync_backend`, `reporting_backend`,
//! `username_management_backend`) plus health.
//!
//! Contract for every implementation:
//! - Waldur units in, site units out: limits arrive in Waldur units and the backend applies
//!   `unit_factor` (use [`crate::units`]); usage and limits read back are returned in Waldur units.
//! - Backends never call Waldur; the core does.
//! - Every operation is idempotent: creating what exists, deleting what is gone, adding a user who
//!   has access, restoring what is not paused, all succeed without changing anything.
//! - Errors say whether a retry can help ([`BackendError::is_transient`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::domain::*;
use crate::error::{BackendError, BackendResult};

/// Reachability and self-description, shared by every backend.
#[async_trait]
pub trait BackendHealth: Send + Sync {
    /// Short backend name for logs (`slurm`, `openstack`, ...).
    fn kind(&self) -> &'static str;

    /// Cheap reachability check.
    async fn ping(&self) -> BackendResult<()>;

    /// Named checks for the `diagnostics` command. Must not contain secrets.
    async fn diagnostics(&self) -> Diagnostics;

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// Applies orders: create, change limits, terminate.
#[async_trait]
pub trait OrderBackend: BackendHealth {
    /// The site id for a new resource from its base slug (e.g. `allocation_prefix + slug`, lower-case).
    /// Must reject names the site cannot take safely.
    fn backend_id_for(&self, base_slug: &str) -> BackendResult<String>;

    /// Decide on a `pending-provider` order. Default: accept.
    async fn evaluate_pending_order(
        &self,
        _order: &OrderView,
    ) -> BackendResult<PendingOrderDecision> {
        Ok(PendingOrderDecision::Accept)
    }

    /// Read one resource from the site; `Ok(None)` when the site does not have it.
    async fn pull_resource(
        &self,
        resource: &ResourceView,
    ) -> BackendResult<Option<BackendResourceInfo>>;

    /// Which of the requests' backend ids already exist on the site. The core asks before it
    /// records a new id in Waldur, so that a resource never points at someone else's site object.
    /// The whole requests are given so a backend can also read what the create will need
    /// (parents) in the same round and hand it over in [`SiteCheck::reads`], for
    /// [`OrderBackend::create_checked`]. Default: one `pull_resource` per request.
    async fn check_ids(&self, requests: &[CreateRequest]) -> BackendResult<SiteCheck> {
        let mut existing = std::collections::BTreeSet::new();
        for request in requests {
            let probe = ResourceView {
                backend_id: request.backend_id.clone(),
                ..request.resource.clone()
            };
            if self.pull_resource(&probe).await?.is_some() {
                existing.insert(request.backend_id.clone());
            }
        }
        Ok(SiteCheck {
            existing,
            reads: None,
        })
    }

    /// Create a resource with `request.backend_id` and its limits. Fails with
    /// [`BackendError::Duplicate`] when that id is taken by something else.
    async fn create_resource(&self, request: CreateRequest) -> BackendResult<BackendResourceInfo>;

    /// Create several resources at once; results come back in request order. Backends that can
    /// batch site calls override this; a failure must only affect the requests it concerns.
    async fn create_resources(
        &self,
        requests: Vec<CreateRequest>,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            results.push(self.create_resource(request).await);
        }
        results
    }

    /// Whether `limits` (Waldur units) can be written for `resource` on this site, without
    /// calling the site: every amount goes through the backend's own conversion
    /// ([`crate::units::site_amount`] with its factors and site maximum). The core calls it
    /// before any site call of a Create or Update order; `create_resource(s)`, `set_limits` and
    /// `set_user_limits` must refuse the same limits again before writing anything.
    /// Default: finite, not negative and at most [`crate::units::MAX_EXACT_INTEGER`] (factor 1,
    /// fractions allowed: for backends that store Waldur amounts as they are).
    fn check_limits(&self, _resource: &ResourceView, limits: &Limits) -> BackendResult<()> {
        check_plain_limits(limits)
    }

    /// [`OrderBackend::create_resources`] after a [`OrderBackend::check_ids`] of the same
    /// requests: a backend may use what the check read instead of reading it again (it must
    /// verify that the reads cover the requests). Default: the check is not needed.
    async fn create_checked(
        &self,
        requests: Vec<CreateRequest>,
        _check: SiteCheck,
    ) -> Vec<BackendResult<BackendResourceInfo>> {
        self.create_resources(requests).await
    }

    /// Set the resource's limits (Waldur units in).
    async fn set_limits(&self, resource: &ResourceView, limits: &Limits) -> BackendResult<()>;

    /// Remove the resource from the site. Succeeds when it is already gone.
    async fn delete_resource(&self, resource: &ResourceView) -> BackendResult<()>;

    /// Remove several resources; results come back in input order. Backends that can batch
    /// site calls override this. A removal is reported done only once the site no longer shows
    /// the resource; a failure must only affect the resources it concerns.
    async fn delete_resources(&self, resources: &[ResourceView]) -> Vec<BackendResult<()>> {
        let mut results = Vec::with_capacity(resources.len());
        for resource in resources {
            results.push(self.delete_resource(resource).await);
        }
        results
    }

    /// Give team members access right after creation (same semantics as
    /// [`MembershipBackend::add_users`]); default: nothing.
    async fn add_users_after_create(
        &self,
        _resource: &ResourceView,
        _users: &[UserGrant],
    ) -> BackendResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Keeps members, status flags and limits of existing resources in step.
#[async_trait]
pub trait MembershipBackend: BackendHealth {
    /// Read many resources at once: backend id → info. Resources the site lacks are omitted.
    async fn pull_resources(
        &self,
        resources: &[ResourceView],
    ) -> BackendResult<BTreeMap<String, BackendResourceInfo>>;

    /// Grant access; returns the usernames that now have access (already present ones included).
    async fn add_users(
        &self,
        resource: &ResourceView,
        users: &[UserGrant],
    ) -> BackendResult<Vec<String>>;

    /// Revoke access; returns the usernames that no longer have access (absent ones included).
    async fn remove_users(
        &self,
        resource: &ResourceView,
        usernames: &[String],
    ) -> BackendResult<Vec<String>>;

    /// Stop new work (e.g. paused QoS). Returns whether anything changed.
    async fn pause(&self, resource: &ResourceView) -> BackendResult<bool>;

    /// Reduce to the downscaled service level. Returns whether anything changed.
    async fn downscale(&self, resource: &ResourceView) -> BackendResult<bool>;

    /// Back to normal. Called every cycle for normal resources: must be cheap and idempotent.
    async fn restore(&self, resource: &ResourceView) -> BackendResult<bool>;

    /// Apply the membership changes of many resources in one round: additions, removals and
    /// status flags. Results come back in input order; `Ok` holds the usernames of `add` that
    /// have access now. A failure must only affect the resources it concerns. Backends that can
    /// batch site calls override this; the default applies each change in turn (add, remove,
    /// then pause / downscale / restore).
    async fn apply_membership(
        &self,
        changes: &[MembershipChange],
    ) -> Vec<BackendResult<Vec<String>>> {
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let view = &change.resource;
            let outcome = async {
                let added = if change.add.is_empty() {
                    Vec::new()
                } else {
                    self.add_users(view, &change.add).await?
                };
                if !change.remove.is_empty() {
                    self.remove_users(view, &change.remove).await?;
                }
                if change.apply_status {
                    if view.paused {
                        self.pause(view).await?;
                    } else if view.downscaled {
                        self.downscale(view).await?;
                    } else {
                        self.restore(view).await?;
                    }
                }
                Ok(added)
            }
            .await;
            results.push(outcome);
        }
        results
    }

    /// Metadata to publish in Waldur (`set_backend_metadata`).
    async fn resource_metadata(
        &self,
        _resource: &ResourceView,
    ) -> BackendResult<Map<String, Value>> {
        Ok(Map::new())
    }

    /// Put resources back where their Waldur project and customer say they belong (Waldur emits no
    /// event when a project moves to another customer). Returns how many site objects moved.
    async fn sync_projects(&self, _resources: &[ResourceView]) -> BackendResult<usize> {
        Ok(0)
    }

    /// Per-user limits on the site (username → Waldur-unit limits). Default: the site has no
    /// per-user limits ([`BackendError::Unsupported`]); the core then leaves Waldur's alone.
    async fn user_limits(
        &self,
        _resource: &ResourceView,
    ) -> BackendResult<BTreeMap<String, Limits>> {
        Err(unsupported(self.kind(), "per-user limits"))
    }

    /// Set (or, with an empty map, clear) one user's limits (Waldur units in). Default:
    /// [`BackendError::Unsupported`], never a silent success.
    async fn set_user_limits(
        &self,
        _resource: &ResourceView,
        _username: &str,
        _limits: &Limits,
    ) -> BackendResult<()> {
        Err(unsupported(self.kind(), "per-user limits"))
    }
}

/// Reports usage for billing.
#[async_trait]
pub trait UsageBackend: BackendHealth {
    /// Usage of the given resources (by backend id) over `period`, in Waldur units.
    /// Resources with no usage may be omitted or reported with zeros.
    async fn usage_report(
        &self,
        backend_ids: &[String],
        period: &BillingPeriod,
    ) -> BackendResult<BTreeMap<String, UsageReport>>;
}

/// Generates site usernames for offering users (`username_generation_policy: service_provider`).
#[async_trait]
pub trait UsernameBackend: Send + Sync {
    fn kind(&self) -> &'static str;

    /// The existing site username for this user, if the site already has one.
    async fn get_username(&self, user: &OfferingUserView) -> BackendResult<Option<String>>;

    /// Make a new username. May fail with [`BackendError::AccountLinkingRequired`] or
    /// [`BackendError::AdditionalValidationRequired`].
    async fn generate_username(&self, user: &OfferingUserView) -> BackendResult<String>;

    /// `get_username`, else `generate_username`.
    async fn get_or_create_username(
        &self,
        user: &OfferingUserView,
    ) -> BackendResult<Option<String>> {
        if let Some(existing) = self.get_username(user).await? {
            return Ok(Some(existing));
        }
        let generated = self.generate_username(user).await?;
        Ok(Some(generated).filter(|u| !u.trim().is_empty()))
    }
}

/// Upstream's `base` username backend: never generates (Waldur or an operator sets usernames).
pub struct BaseUsernameBackend;

#[async_trait]
impl UsernameBackend for BaseUsernameBackend {
    fn kind(&self) -> &'static str {
        "base"
    }
    async fn get_username(&self, _user: &OfferingUserView) -> BackendResult<Option<String>> {
        Ok(None)
    }
    async fn generate_username(&self, _user: &OfferingUserView) -> BackendResult<String> {
        Ok(String::new())
    }
}

/// The default [`OrderBackend::check_limits`]: finite, not negative, at most
/// [`crate::units::MAX_EXACT_INTEGER`]; fractions allowed.
pub fn check_plain_limits(limits: &Limits) -> BackendResult<()> {
    for (key, value) in limits {
        crate::units::check_plain_limit(key, *value, crate::units::MAX_EXACT_INTEGER)?;
    }
    Ok(())
}

/// Convenience: an `Unsupported` error for a backend that lacks an operation.
pub fn unsupported(backend: &'static str, operation: &'static str) -> BackendError {
    BackendError::Unsupported { backend, operation }
}
