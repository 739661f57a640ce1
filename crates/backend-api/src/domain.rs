//! Domain types a backend sees. They are not Waldur's wire DTOs: the core converts explicitly, so a
//! change in Mastermind's JSON never reaches backend code.

use std::collections::BTreeMap;

use jiff::Zoned;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Component key → amount in **Waldur units** (what the user ordered). `f64` because Waldur's
/// amounts are JSON numbers that may be fractional; converted to a site's integers only through
/// [`crate::units::site_amount`], which checks them (see [`crate::units`]: limits are checked,
/// never saturated).
pub type Limits = BTreeMap<String, f64>;
/// Component key → usage in **Waldur units**.
pub type Amounts = BTreeMap<String, f64>;

/// A Waldur marketplace resource as a backend needs to know it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceView {
    /// Waldur resource UUID (32 hex).
    pub uuid: String,
    pub name: String,
    pub slug: String,
    /// Id of the resource on the site; empty until the agent created it.
    pub backend_id: String,
    /// Waldur resource state (`Creating`, `OK`, `Erred`, ...).
    pub state: String,
    pub offering_uuid: String,
    pub plan_uuid: Option<String>,
    pub project_uuid: String,
    pub project_slug: String,
    pub project_name: String,
    pub project_description: String,
    pub customer_uuid: String,
    pub customer_slug: String,
    pub customer_name: String,
    pub limits: Limits,
    pub paused: bool,
    pub downscaled: bool,
    pub restrict_member_access: bool,
    pub attributes: Map<String, Value>,
    pub offering_plugin_options: Map<String, Value>,
    pub backend_metadata: Map<String, Value>,
    pub end_date: Option<String>,
}

/// An order as a backend needs it to decide on a `pending-provider` order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub uuid: String,
    /// `Create`, `Update`, `Terminate`, `Restore`.
    pub kind: String,
    pub resource_name: String,
    pub project_uuid: String,
    pub customer_uuid: String,
    pub limits: Limits,
    pub attributes: Map<String, Value>,
    pub created_by_username: Option<String>,
}

/// What the site knows about one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendResourceInfo {
    pub backend_id: String,
    /// Parent on the site (SLURM: the project account; Keystone: the domain).
    pub parent_id: String,
    /// Site usernames with access.
    pub users: Vec<String>,
    /// Limits read back from the site, converted to Waldur units.
    pub limits: Limits,
    /// Metadata worth showing in Waldur (`set_backend_metadata`).
    pub backend_metadata: Map<String, Value>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
}

/// Usage of one resource over one billing period, in Waldur units.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Whole-resource usage (upstream's `TOTAL_ACCOUNT_USAGE`).
    pub total: Amounts,
    /// Site username → usage of that user.
    pub per_user: BTreeMap<String, Amounts>,
}

/// A billing month, in the configured timezone.
#[derive(Clone, Debug, PartialEq)]
pub struct BillingPeriod {
    pub year: i16,
    pub month: i8,
    pub timezone: TimeZone,
}

impl BillingPeriod {
    pub fn new(year: i16, month: i8, timezone: TimeZone) -> Self {
        BillingPeriod {
            year,
            month,
            timezone,
        }
    }

    /// The period containing `now`, in `now`'s timezone.
    pub fn containing(now: &Zoned) -> Self {
        BillingPeriod::new(now.year(), now.month(), now.time_zone().clone())
    }

    /// First day of the month (Waldur's `billing_period`).
    pub fn first_day(&self) -> Date {
        Date::new(self.year, self.month, 1).unwrap_or_default()
    }

    /// Start of the month, 00:00 in the period's timezone.
    pub fn start(&self) -> Zoned {
        self.first_day()
            .to_zoned(self.timezone.clone())
            .unwrap_or_else(|_| Zoned::now())
    }

    /// Start of the next month (exclusive end of this period).
    pub fn end(&self) -> Zoned {
        self.next().start()
    }

    pub fn next(&self) -> BillingPeriod {
        let (y, m) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        BillingPeriod::new(y, m, self.timezone.clone())
    }

    pub fn previous(&self) -> BillingPeriod {
        let (y, m) = if self.month == 1 {
            (self.year - 1, 12)
        } else {
            (self.year, self.month - 1)
        };
        BillingPeriod::new(y, m, self.timezone.clone())
    }
}

/// A member of the resource's project team, with what the site needs to create their access.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserGrant {
    /// Site username (the offering user's username).
    pub username: String,
    /// Waldur username / CUID.
    pub waldur_username: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    /// Exposed user attributes (`user-attribute-config`): one map per user, shared by all of
    /// that user's grants in a cycle (thousands of grants held copies of a few maps).
    pub attributes: std::sync::Arc<Map<String, Value>>,
}

/// One resource's share of a membership round ([`crate::MembershipBackend::apply_membership`]):
/// what the core computed from one read of the site.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipChange {
    pub resource: ResourceView,
    /// Users to give access.
    pub add: Vec<UserGrant>,
    /// Usernames to take access from.
    pub remove: Vec<String>,
    /// Also bring the site in line with `resource.paused` / `resource.downscaled` (pause,
    /// downscale, or restore when neither is set).
    pub apply_status: bool,
}

/// What the core knows about a resource's people when creating it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserContext {
    /// Team members whose offering users have a username.
    pub users: Vec<UserGrant>,
    /// Plan quotas (component → amount) for plans with fixed components.
    pub plan_quotas: Limits,
    /// Service-provider SSH keys: key uuid → public key.
    pub ssh_keys: BTreeMap<String, String>,
}

/// Everything needed to create one resource on the site.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateRequest {
    pub resource: ResourceView,
    /// The id chosen by the core (prefix + slug, uniqueness checked).
    pub backend_id: String,
    pub context: UserContext,
}

/// A backend's answer to a `pending-provider` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingOrderDecision {
    Accept,
    Reject,
    KeepPending,
}

/// An offering user as a username backend sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferingUserView {
    pub uuid: String,
    pub user_uuid: String,
    /// Current site username, if any.
    pub username: Option<String>,
    /// Waldur username.
    pub user_username: String,
    pub user_email: Option<String>,
    pub user_full_name: Option<String>,
    /// Waldur state label (`Requested`, `Creating`, `OK`, ...).
    pub state: String,
}

/// What a backend supports beyond the required methods.
#[derive(Clone, Debug, PartialEq)]
pub struct Capabilities {
    /// Usage may go down between two reports (disables anomaly detection).
    pub supports_decreasing_usage: bool,
    /// Resource states membership sync handles.
    pub handled_resource_states: Vec<String>,
    /// How often the team is fetched while empty when creating (race with Waldur's commit).
    pub team_fetch_attempts: u32,
    /// Whether the backend can create Unix home directories.
    pub supports_user_homedirs: bool,
    /// Whether the order cycle should ping the backend first and skip when it is down.
    pub supports_cycle_preflight: bool,
    /// Whether the backend reads `UserGrant::attributes` (names, e-mail, profile). When no
    /// backend of an offering does, the agent does not build them (a map per offering user).
    pub uses_user_attributes: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            supports_decreasing_usage: false,
            handled_resource_states: vec!["OK".to_owned(), "Erred".to_owned()],
            team_fetch_attempts: 1,
            supports_user_homedirs: false,
            supports_cycle_preflight: false,
            uses_user_attributes: true,
        }
    }
}

/// The result of `diagnostics`: named checks, each passed or failed with detail.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub backend: String,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Diagnostics {
    pub fn new(backend: impl Into<String>) -> Self {
        Diagnostics {
            backend: backend.into(),
            checks: Vec::new(),
        }
    }
    pub fn check(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// What a backend found when it checked a batch's backend ids ([`crate::OrderBackend::check_ids`]):
/// the ids the site has, and whatever else it read in the same round that the create may reuse.
/// A value the create consumes ([`crate::OrderBackend::create_checked`]), never a cache.
pub struct SiteCheck {
    pub existing: std::collections::BTreeSet<String>,
    /// Backend-specific reads (for SLURM: the account states and users' defaults).
    pub reads: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for SiteCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCheck")
            .field("existing", &self.existing)
            .field("reads", &self.reads.is_some())
            .finish()
    }
}
