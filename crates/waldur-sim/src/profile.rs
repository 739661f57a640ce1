//! API profiles: which Mastermind the simulator pretends to be.
//!
//! `Current` is the Mastermind of `shared/spec/waldur-api.md`. `Mastermind2024` is a server of
//! late 2024 (the Oct 2024 code: `waldur-mastermind` 1ea6cb8), on which the Python agent 1.0.x
//! gives up:
//!
//! - no site-agent identities, services, processors or logs, no event subscriptions or queues,
//!   no SLURM periodic usage policies, backend resources or requests, per-user usage limits or
//!   resource API keys: Django's HTML 404 page;
//! - provider resources without `refresh_last_sync`, `set_endpoints`, `set_limits`, `set_as_ok`,
//!   `set_membership_sync_statuses`, `set_downscaled`, `set_paused`,
//!   `set_restrict_member_access`, `update_options(_direct)`, `set_effective_id`, `set_end_date`,
//!   `list_users`, `sync_user_roles`; orders without `set_backend_id`; offerings without
//!   `check_unique_backend_id`, `user-attribute-config`, `list_course_accounts`,
//!   `list_project_service_accounts`;
//! - offering users without `state` (and without its filter and actions: only
//!   `update_restricted`), team members without `offering_user_state`;
//! - component usages with `set_user_usage` only (no `set_user_usages`), and `set_usage` that
//!   ignores `date`: it always writes the current month;
//! - provider resources without `project_slug` / `customer_slug` (orders have them);
//! - `set_state_erred` on a done order: 500 with Django's HTML error page;
//! - a SLURM allocation behind every Marketplace.Slurm resource
//!   (`marketplace-slurm-remote/{resource}/set_state/`): created in "Creation Scheduled" when a
//!   Create order starts executing; an Update order moves it to "Update Scheduled" when it starts
//!   executing, which only "OK" and "Erred" allow — otherwise the server errs the order itself
//!   ("Can't switch from state '5' using method 'schedule_updating'").

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Which Mastermind the simulator answers as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiProfile {
    #[default]
    Current,
    Mastermind2024,
}

impl std::str::FromStr for ApiProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "current" | "" => Ok(ApiProfile::Current),
            "2024" | "mastermind-2024" => Ok(ApiProfile::Mastermind2024),
            other => Err(format!(
                "unknown API profile '{other}' (use 'current' or '2024')"
            )),
        }
    }
}

impl std::fmt::Display for ApiProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiProfile::Current => "current",
            ApiProfile::Mastermind2024 => "2024",
        })
    }
}

/// Whole endpoint families a 2024 server does not have.
const MISSING_2024_PREFIXES: &[&str] = &[
    "/api/marketplace-site-agent-identities/",
    "/api/marketplace-site-agent-services/",
    "/api/marketplace-site-agent-processors/",
    "/api/marketplace-site-agent-logs/",
    "/api/event-subscriptions/",
    "/api/event-subscription-queues/",
    "/api/marketplace-slurm-periodic-usage-policies/",
    "/api/backend-resources/",
    "/api/backend-resource-requests/",
    "/api/component-user-usage-limits/",
    "/api/marketplace-resource-api-keys/",
];

/// Provider-resource actions a 2024 server does not have.
const MISSING_2024_RESOURCE_ACTIONS: &[&str] = &[
    "refresh_last_sync",
    "set_endpoints",
    "set_limits",
    "set_as_ok",
    "set_membership_sync_statuses",
    "set_downscaled",
    "set_paused",
    "set_restrict_member_access",
    "update_options",
    "update_options_direct",
    "set_effective_id",
    "set_end_date",
    "list_users",
    "sync_user_roles",
];

const MISSING_2024_OFFERING_ACTIONS: &[&str] = &[
    "check_unique_backend_id",
    "user-attribute-config",
    "user_attribute_config",
    "list_course_accounts",
    "list_project_service_accounts",
];

/// Offering-user actions a 2024 server has (it has no offering-user states).
const OFFERING_USER_ACTIONS_2024: &[&str] = &["update_restricted"];

impl ApiProfile {
    pub fn is_2024(self) -> bool {
        self == ApiProfile::Mastermind2024
    }

    /// Whether this server has the endpoint `path` (matched by the route template `route`).
    pub fn serves(self, method: &Method, route: &str, path: &str) -> bool {
        let _ = method;
        match self {
            // The SLURM allocation endpoints were gone before the agent identities came.
            ApiProfile::Current => !route.starts_with("/api/marketplace-slurm-remote/"),
            ApiProfile::Mastermind2024 => serves_2024(route, path),
        }
    }
}

fn last_segment(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

fn serves_2024(route: &str, path: &str) -> bool {
    if MISSING_2024_PREFIXES.iter().any(|p| route.starts_with(p)) {
        return false;
    }
    let action = last_segment(path);
    if route.starts_with("/api/marketplace-provider-resources/{uuid}/") {
        return !MISSING_2024_RESOURCE_ACTIONS.contains(&action);
    }
    if route.starts_with("/api/marketplace-provider-offerings/{uuid}/") {
        return !MISSING_2024_OFFERING_ACTIONS.contains(&action);
    }
    if route == "/api/marketplace-orders/{uuid}/set_backend_id/" {
        return false;
    }
    if route == "/api/marketplace-offering-users/{uuid}/{action}/" {
        return OFFERING_USER_ACTIONS_2024.contains(&action);
    }
    if route == "/api/marketplace-component-usages/{uuid}/set_user_usages/" {
        return false;
    }
    true
}

/// Django's page for a URL no route matches (`DEBUG = False`): HTML, not DRF's JSON.
pub fn django_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n",
    )
        .into_response()
}

/// Django's page for an unhandled exception (`DEBUG = False`).
pub fn django_server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error (500)</title>\n</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2024_server_lacks_what_came_later() {
        let p = ApiProfile::Mastermind2024;
        let post = Method::POST;
        let r = "/api/marketplace-provider-resources/{uuid}/";
        assert!(!p.serves(
            &post,
            &format!("{r}refresh_last_sync/"),
            "/api/marketplace-provider-resources/ab/refresh_last_sync/"
        ));
        assert!(p.serves(
            &post,
            &format!("{r}set_backend_id/"),
            "/api/marketplace-provider-resources/ab/set_backend_id/"
        ));
        assert!(!p.serves(
            &Method::GET,
            "/api/marketplace-site-agent-identities/",
            "/api/marketplace-site-agent-identities/"
        ));
        assert!(!p.serves(
            &post,
            "/api/marketplace-offering-users/{uuid}/{action}/",
            "/api/marketplace-offering-users/ab/begin_creating/"
        ));
        assert!(p.serves(
            &post,
            "/api/marketplace-offering-users/{uuid}/{action}/",
            "/api/marketplace-offering-users/ab/update_restricted/"
        ));
        assert!(p.serves(
            &post,
            "/api/marketplace-slurm-remote/{uuid}/set_state/",
            "/api/marketplace-slurm-remote/ab/set_state/"
        ));
        assert!(!ApiProfile::Current.serves(
            &post,
            "/api/marketplace-slurm-remote/{uuid}/set_state/",
            "/api/marketplace-slurm-remote/ab/set_state/"
        ));
        assert_eq!("2024".parse::<ApiProfile>(), Ok(p));
        assert!("2023".parse::<ApiProfile>().is_err());
    }
}
