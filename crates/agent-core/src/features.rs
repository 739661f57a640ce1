//! What the Waldur server behind an offering offers. A Mastermind from 2024 lacks agent
//! identities, per-user limits and several provider actions (`refresh_last_sync`, `set_limits`,
//! `set_as_ok`, …), and answers them with Django's HTML 404 page. The agent does without them:
//! a missing endpoint is logged once per offering and not called again for an hour, and never
//! makes an order or a resource erred.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use waldur_client::WaldurError;

use crate::context::{Offering, OfferingContext};

/// Endpoints the agent can do without, as they are named in logs.
pub mod endpoint {
    pub const REFRESH_LAST_SYNC: &str = "marketplace-provider-resources/{uuid}/refresh_last_sync/";
    pub const SET_LIMITS: &str = "marketplace-provider-resources/{uuid}/set_limits/";
    pub const SET_AS_OK: &str = "marketplace-provider-resources/{uuid}/set_as_ok/";
    pub const SET_ENDPOINTS: &str = "marketplace-provider-resources/{uuid}/set_endpoints/";
    pub const SET_MEMBERSHIP_SYNC_STATUSES: &str =
        "marketplace-provider-resources/{uuid}/set_membership_sync_statuses/";
    pub const USER_USAGE_LIMITS: &str = "component-user-usage-limits/";
    pub const SET_USER_USAGES: &str = "marketplace-component-usages/{uuid}/set_user_usages/";
    pub const CHECK_UNIQUE_BACKEND_ID: &str =
        "marketplace-provider-offerings/{uuid}/check_unique_backend_id/";
    pub const SLURM_ALLOCATION_STATE: &str = "marketplace-slurm-remote/{uuid}/set_state/";
    pub const AGENT_IDENTITIES: &str = "marketplace-site-agent-identities/";
    pub const OFFERING_USER_STATES: &str = "marketplace-offering-users/ state";
    pub const SET_USAGE_BILLING_PERIOD: &str =
        "marketplace-component-usages/set_usage/ billing period (date)";
}

/// How long an endpoint found missing is left alone before it is tried again (a Mastermind
/// upgraded under a running agent gets its features back within the hour).
const REPROBE_AFTER: Duration = Duration::from_secs(3600);

// 0: not known yet (the atomic's default).
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

/// What was learnt about the server of one offering, shared by all its runs.
#[derive(Debug, Default)]
pub struct ServerFeatures {
    /// Endpoint → when it was last found missing.
    missing: Mutex<HashMap<&'static str, Instant>>,
    /// Endpoints whose absence has been logged (once per offering).
    reported: Mutex<HashSet<&'static str>>,
    /// Endpoints that answered at least once.
    present: Mutex<HashSet<&'static str>>,
    /// Held while an endpoint of unknown presence is tried for the first time, so that
    /// concurrent orders do not all try (and all meet the same 404).
    probing: tokio::sync::Mutex<()>,
    /// Whether the server has agent identities (the mark of a Mastermind from 2025 on).
    agent_identities: AtomicU8,
}

impl ServerFeatures {
    /// `endpoint` was found missing within the last hour: skip it.
    pub fn is_missing(&self, endpoint: &'static str) -> bool {
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint)
            .is_some_and(|at| at.elapsed() < REPROBE_AFTER)
    }

    fn is_present(&self, endpoint: &'static str) -> bool {
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(endpoint)
    }

    fn mark_present(&self, endpoint: &'static str) {
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(endpoint);
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint);
    }

    /// Record `endpoint` missing; true the first time for this offering (the caller logs it).
    pub fn mark_missing(&self, endpoint: &'static str) -> bool {
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint, Instant::now());
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint)
    }

    /// Endpoints found missing so far, sorted.
    pub fn missing_endpoints(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        out.sort_unstable();
        out
    }

    pub fn set_agent_identities(&self, present: bool) {
        self.agent_identities
            .store(if present { PRESENT } else { ABSENT }, Ordering::Relaxed);
    }

    /// Whether the server has agent identities, when known.
    pub fn agent_identities(&self) -> Option<bool> {
        match self.agent_identities.load(Ordering::Relaxed) {
            PRESENT => Some(true),
            ABSENT => Some(false),
            _ => None,
        }
    }
}

/// How loudly a missing endpoint is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absence {
    /// Something users would want to know (a limit not recorded in Waldur).
    Warn,
    /// A degraded feature.
    Info,
    /// Expected on current servers (the 2024 SLURM allocation endpoints).
    Debug,
}

/// Log, once per offering, that the server lacks `endpoint` and what goes without it.
pub fn note_missing(offering: &Offering, endpoint: &'static str, without: &str, level: Absence) {
    if !offering.features.mark_missing(endpoint) {
        return;
    }
    let name = offering.name();
    match level {
        Absence::Warn => {
            tracing::warn!(offering = %name, endpoint, "Waldur has no {endpoint} (an older Mastermind): {without}")
        }
        Absence::Info => {
            tracing::info!(offering = %name, endpoint, "Waldur has no {endpoint} (an older Mastermind): {without}")
        }
        Absence::Debug => {
            tracing::debug!(offering = %name, endpoint, "Waldur has no {endpoint}: {without}")
        }
    }
}

/// Call an endpoint the agent can do without: `Ok(Some(_))` when it answered; `Ok(None)` when
/// the server lacks it (logged once per offering, not called again for an hour) or answered a
/// plain 404 for this object (nothing to do for it); `Err` for any other failure.
pub async fn optional<T, F>(
    offering: &Offering,
    endpoint: &'static str,
    without: &str,
    level: Absence,
    call: F,
) -> Result<Option<T>, WaldurError>
where
    F: Future<Output = Result<T, WaldurError>>,
{
    let features = &offering.features;
    if features.is_missing(endpoint) {
        return Ok(None);
    }
    // The first use of an endpoint is tried by one task at a time; the others learn from it.
    let _probe = if features.is_present(endpoint) {
        None
    } else {
        let guard = features.probing.lock().await;
        if features.is_missing(endpoint) {
            return Ok(None);
        }
        Some(guard)
    };
    match call.await {
        Ok(value) => {
            features.mark_present(endpoint);
            Ok(Some(value))
        }
        Err(e) if e.is_missing_route() => {
            note_missing(offering, endpoint, without, level);
            Ok(None)
        }
        Err(e) if e.is_not_found() => {
            tracing::debug!(offering = %offering.name(), endpoint, error = %e, "not found; skipped");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether `set_usage` takes a billing period here. A Mastermind from 2024 ignores the `date`
/// and writes the current month, so a past month sent there would overwrite this month's
/// usage; it also has no agent identities, which is how it is told apart (one listing, once per
/// offering, unless registration already found out). `None`: not known (the listing failed).
pub async fn takes_billing_period(ctx: &OfferingContext) -> Option<bool> {
    if let Some(known) = ctx.features.agent_identities() {
        return Some(known);
    }
    let name = crate::identity::identity_name(ctx);
    match ctx
        .client
        .list_agent_identities(&ctx.offering_uuid, &name)
        .await
    {
        Ok(_) => {
            ctx.features.set_agent_identities(true);
            Some(true)
        }
        Err(e) if e.is_not_found() => {
            ctx.features.set_agent_identities(false);
            Some(false)
        }
        Err(e) => {
            tracing::warn!(offering = %ctx.name(), error = %e, "cannot tell whether Waldur takes usage for past months; reporting the current month only this cycle");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_endpoints_are_reported_once_and_skipped() {
        let f = ServerFeatures::default();
        assert!(!f.is_missing(endpoint::SET_LIMITS));
        assert!(f.mark_missing(endpoint::SET_LIMITS));
        assert!(!f.mark_missing(endpoint::SET_LIMITS), "reported once");
        assert!(f.is_missing(endpoint::SET_LIMITS));
        assert_eq!(f.missing_endpoints(), vec![endpoint::SET_LIMITS]);
        assert_eq!(f.agent_identities(), None);
        f.set_agent_identities(false);
        assert_eq!(f.agent_identities(), Some(false));
    }
}
