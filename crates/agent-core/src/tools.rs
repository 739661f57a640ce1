//! The helper tools' logic (agent-behaviour §1, §4.7), as library functions the binary's
//! subcommands call: `load-components`, `diagnostics`, `sync-offering-users` and the readiness
//! half of `healthz`. Each works on one offering; the binary loops over the configured ones.

use agent_config::{AccountingType, BackendComponent, WALDUR_COMPONENT_FIELDS};
use backend_api::Diagnostics;
use serde::Serialize;
use serde_json::{Map, Value, json};
use waldur_client::{OfferingComponent, OfferingUserFilter, OrderState};

use crate::context::OfferingContext;
use crate::error::{CoreError, CoreResult};
use crate::usernames::{self, UsernameRun};

// ------------------------------------------------------------------ load_components

/// Values Waldur accepts for `limit_period`.
pub const LIMIT_PERIODS: &[&str] = &["annual", "month", "quarterly", "total"];

/// What `load_components` did, per component type.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadComponentsReport {
    pub offering: String,
    /// Component types created in Waldur.
    pub created: Vec<String>,
    /// Component types that existed and were updated.
    pub updated: Vec<String>,
    /// `(component type, error)` for components Waldur did not take (or the config got wrong).
    pub errors: Vec<(String, String)>,
    /// Component types Waldur has that the configuration does not mention (left alone).
    pub only_in_waldur: Vec<String>,
}

impl LoadComponentsReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Create or update the offering's components in Waldur from `backend_components`. A component
/// failing does not stop the others; the error is only for not being able to read the offering.
pub async fn load_components(ctx: &OfferingContext) -> CoreResult<LoadComponentsReport> {
    let offering = ctx
        .client
        .get_offering(&ctx.offering_uuid, &["uuid", "components"])
        .await?;
    let mut report = LoadComponentsReport {
        offering: ctx.name().to_owned(),
        ..LoadComponentsReport::default()
    };
    for (key, component) in &ctx.config.backend_components {
        let existing = offering
            .components
            .iter()
            .find(|c| c.component_type == *key);
        let body = match component_request(key, component, existing) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(offering = %ctx.name(), component = %key, error = %e, "component not uploaded");
                report.errors.push((key.clone(), e));
                continue;
            }
        };
        let result = match existing {
            Some(_) => {
                ctx.client
                    .update_offering_component(&ctx.offering_uuid, &body)
                    .await
            }
            None => {
                ctx.client
                    .create_offering_component(&ctx.offering_uuid, &body)
                    .await
            }
        };
        match (result, existing.is_some()) {
            (Ok(()), true) => {
                tracing::info!(offering = %ctx.name(), component = %key, "component updated");
                report.updated.push(key.clone());
            }
            (Ok(()), false) => {
                tracing::info!(offering = %ctx.name(), component = %key, "component created");
                report.created.push(key.clone());
            }
            (Err(e), _) => {
                tracing::error!(offering = %ctx.name(), component = %key, error = %e, "component not uploaded");
                report.errors.push((key.clone(), e.to_string()));
            }
        }
    }
    report.only_in_waldur = offering
        .components
        .iter()
        .map(|c| c.component_type.clone())
        .filter(|t| !ctx.config.backend_components.contains_key(t))
        .collect();
    Ok(report)
}

/// The `create_offering_component` / `update_offering_component` body for one component.
pub fn component_request(
    key: &str,
    component: &BackendComponent,
    existing: Option<&OfferingComponent>,
) -> Result<Value, String> {
    let mut body = Map::new();
    if let Some(existing) = existing {
        body.insert("uuid".into(), json!(existing.uuid));
    }
    body.insert(
        "billing_type".into(),
        json!(component.accounting_type.billing_type()),
    );
    body.insert("type".into(), json!(key));
    body.insert("name".into(), json!(component.label));
    body.insert("measured_unit".into(), json!(component.measured_unit));
    if let Some(limit) = component.limit {
        body.insert("limit_amount".into(), whole_number(limit, "limit")?);
    }
    // Passed through only when set (non-null).
    for field in WALDUR_COMPONENT_FIELDS {
        match component.extra.get(*field) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let value = n
                    .as_f64()
                    .ok_or_else(|| format!("{field} is not a number"))?;
                body.insert((*field).into(), whole_number(value, field)?);
            }
            Some(value) => {
                body.insert((*field).into(), value.clone());
            }
        }
    }
    match body.get("limit_period") {
        Some(Value::String(period)) if LIMIT_PERIODS.contains(&period.as_str()) => {}
        Some(other) => {
            return Err(format!(
                "limit_period {other} is not one of {}",
                LIMIT_PERIODS.join(", ")
            ));
        }
        None => {
            // Keep what Waldur has rather than resetting it.
            if let Some(period) = existing.and_then(|c| c.limit_period.as_deref()) {
                body.insert("limit_period".into(), json!(period));
            }
        }
    }
    if component.accounting_type == AccountingType::One && !body.contains_key("is_prepaid") {
        body.insert("is_prepaid".into(), Value::Bool(true));
    }
    Ok(Value::Object(body))
}

/// Waldur stores these amounts as integers: send `10`, not `10.0`; refuse fractions.
fn whole_number(value: f64, field: &str) -> Result<Value, String> {
    if !value.is_finite() || value.fract() != 0.0 || value.abs() > i64::MAX as f64 {
        return Err(format!("{field} must be a whole number, got {value}"));
    }
    Ok(json!(value as i64))
}

// ------------------------------------------------------------------ diagnostics

/// One named check of the diagnostics report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiagnosticCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The account the agent's token belongs to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserSummary {
    pub username: String,
    pub full_name: String,
    pub is_staff: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentSummary {
    #[serde(rename = "type")]
    pub component_type: String,
    pub name: String,
    pub billing_type: String,
    pub measured_unit: String,
}

/// The offering as Waldur has it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfferingSummary {
    pub name: String,
    pub state: String,
    pub customer_name: String,
    pub backend_id: String,
    pub components: Vec<ComponentSummary>,
}

/// An order waiting for the agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrderSummary {
    pub project_name: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub state: String,
}

/// What `diagnostics` prints for one offering. Holds no secret: tokens are never read into it,
/// and every text that came from elsewhere is scrubbed of the offering's secrets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiagnosticsReport {
    pub offering_name: String,
    pub offering_uuid: String,
    pub waldur_api_url: String,
    pub backend_type: String,
    pub user: Option<UserSummary>,
    pub waldur_offering: Option<OfferingSummary>,
    /// Orders in `pending-provider` or `executing`; `None` when they could not be listed.
    pub pending_orders: Option<Vec<OrderSummary>>,
    pub backends: Vec<Diagnostics>,
    pub checks: Vec<DiagnosticCheck>,
    /// All checks passed and every backend is healthy (the tool's exit code).
    pub ok: bool,
}

/// Check everything an operator needs before running the agent: Waldur reachable with this
/// token, the offering visible, orders waiting, each backend's own checks, and (SLURM) that
/// `backend_settings.cluster_name` names the cluster the offering's `backend_id` says.
pub async fn diagnostics(ctx: &OfferingContext) -> DiagnosticsReport {
    let mut checks = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push(DiagnosticCheck {
            name: name.to_owned(),
            ok,
            detail,
        })
    };

    let user = match ctx.client.current_user().await {
        Ok(me) => {
            check(
                "waldur_api",
                true,
                format!("authenticated as '{}'", me.username),
            );
            Some(UserSummary {
                username: me.username,
                full_name: me.full_name,
                is_staff: me.is_staff,
            })
        }
        Err(e) => {
            check("waldur_api", false, e.to_string());
            None
        }
    };

    let waldur_offering = match ctx
        .client
        .get_offering(
            &ctx.offering_uuid,
            &[
                "uuid",
                "name",
                "customer_name",
                "state",
                "components",
                "backend_id",
            ],
        )
        .await
    {
        Ok(o) => {
            check(
                "offering",
                true,
                format!(
                    "'{}' is {}",
                    o.name,
                    display_or(&o.state, "in an unknown state")
                ),
            );
            Some(OfferingSummary {
                name: o.name,
                state: o.state,
                customer_name: o.customer_name,
                backend_id: o.backend_id,
                components: o
                    .components
                    .into_iter()
                    .map(|c| ComponentSummary {
                        component_type: c.component_type,
                        name: c.name,
                        billing_type: c.billing_type,
                        measured_unit: c.measured_unit,
                    })
                    .collect(),
            })
        }
        Err(e) => {
            check("offering", false, e.to_string());
            None
        }
    };

    let pending_orders = match ctx
        .client
        .list_orders_fields(
            &ctx.offering_uuid,
            &[OrderState::PendingProvider, OrderState::Executing],
            &["project_name", "type", "state"],
        )
        .await
    {
        Ok(orders) => {
            check(
                "orders",
                true,
                format!("{} order(s) waiting for the agent", orders.len()),
            );
            Some(
                orders
                    .into_iter()
                    .map(|o| OrderSummary {
                        project_name: o.project_name,
                        order_type: o.order_type.to_string(),
                        state: o.state.to_string(),
                    })
                    .collect(),
            )
        }
        Err(e) => {
            check("orders", false, e.to_string());
            None
        }
    };

    if let (Some(cluster), Some(offering)) =
        (ctx.config.setting_str("cluster_name"), &waldur_offering)
    {
        let backend_id = offering.backend_id.trim();
        if backend_id.is_empty() {
            check(
                "cluster_name",
                true,
                format!("cluster '{cluster}'; the offering has no backend_id to compare with"),
            );
        } else if backend_id == cluster {
            check(
                "cluster_name",
                true,
                format!("cluster '{cluster}' matches the offering's backend_id"),
            );
        } else {
            check(
                "cluster_name",
                false,
                format!(
                    "backend_settings.cluster_name is '{cluster}' but the offering's backend_id is '{backend_id}': the agent would manage the wrong cluster"
                ),
            );
        }
    }

    let mut backends = Vec::new();
    for backend in &ctx.backends.health {
        backends.push(backend.diagnostics().await);
    }

    let ok = checks.iter().all(|c| c.ok) && backends.iter().all(Diagnostics::ok);
    let mut report = DiagnosticsReport {
        offering_name: ctx.name().to_owned(),
        offering_uuid: ctx.offering_uuid.clone(),
        waldur_api_url: waldur_client::mask_url_password(&ctx.config.waldur_api_url),
        backend_type: ctx.config.backend_type.clone(),
        user,
        waldur_offering,
        pending_orders,
        backends,
        checks,
        ok,
    };
    report.scrub(&offering_secrets(ctx));
    report
}

fn display_or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.trim().is_empty() {
        fallback
    } else {
        value
    }
}

/// Secret values of an offering: API token, OIDC secret, and backend settings whose key says
/// it is one (the configuration's one rule, [`agent_config::is_secret_key`]: `keycloak_url` or
/// `keycloak_username` are not secrets, `keycloak_password` is).
fn offering_secrets(ctx: &OfferingContext) -> Vec<String> {
    let config = &ctx.config;
    let mut secrets = vec![config.waldur_api_token.expose().to_owned()];
    if let Some(s) = &config.oidc_client_secret {
        secrets.push(s.expose().to_owned());
    }
    collect_secret_settings(&config.backend_settings, &mut secrets);
    secrets.retain(|s| s.trim().len() >= 4);
    secrets
}

fn collect_secret_settings(settings: &Map<String, Value>, out: &mut Vec<String>) {
    for (key, value) in settings {
        match value {
            Value::String(s) if agent_config::is_secret_key(key) => out.push(s.clone()),
            Value::Object(inner) => collect_secret_settings(inner, out),
            _ => {}
        }
    }
}

fn scrub_text(text: &mut String, secrets: &[String]) {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            *text = text.replace(secret.as_str(), "***");
        }
    }
}

impl DiagnosticsReport {
    /// Replace any occurrence of `secrets` in the report's texts by `***`.
    pub fn scrub(&mut self, secrets: &[String]) {
        for check in &mut self.checks {
            scrub_text(&mut check.detail, secrets);
        }
        for backend in &mut self.backends {
            for check in &mut backend.checks {
                scrub_text(&mut check.detail, secrets);
                scrub_text(&mut check.name, secrets);
            }
        }
        scrub_text(&mut self.waldur_api_url, secrets);
        if let Some(user) = &mut self.user {
            scrub_text(&mut user.full_name, secrets);
        }
    }
}

// ------------------------------------------------------------------ offering users, readiness

/// One pass of the username state machine over every unrestricted offering user of the
/// offering (`sync_offering_users`). `generation_enabled` is false when the offering's policy
/// leaves usernames to Waldur (nothing is changed then).
pub async fn sync_offering_users(ctx: &OfferingContext) -> CoreResult<UsernameRun> {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let filter = OfferingUserFilter {
        offering_uuid: Some(ctx.offering_uuid.clone()),
        is_restricted: Some(false),
        ..OfferingUserFilter::default()
    };
    let users = ctx.client.list_offering_users(&filter).await?;
    usernames::run_state_machine(ctx, &users).await
}

/// Readiness for `healthz`: Waldur answers `users/me` with this offering's credentials.
pub async fn readiness(ctx: &OfferingContext) -> CoreResult<()> {
    ctx.client
        .current_user_fields(&["uuid"])
        .await
        .map(|_| ())
        .map_err(CoreError::from)
}

/// Readiness over all offerings: ready as soon as one answers (upstream's rule); otherwise the
/// failures, one line per offering.
pub async fn readiness_any(contexts: &[OfferingContext]) -> Result<(), Vec<String>> {
    let mut failures = Vec::new();
    for ctx in contexts {
        match readiness(ctx).await {
            Ok(()) => return Ok(()),
            Err(e) => failures.push(format!("{}: {e}", ctx.name())),
        }
    }
    if failures.is_empty() {
        failures.push("no offerings configured".to_owned());
    }
    Err(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(value: Value) -> BackendComponent {
        serde_json::from_value(value).expect("component")
    }

    #[test]
    fn new_component_carries_only_set_fields() {
        let c = component(json!({
            "measured_unit": "Hours", "accounting_type": "usage", "label": "CPU",
            "limit": 10.0, "description": null, "article_code": "A1", "target_components": {}
        }));
        let body = component_request("cpu", &c, None).expect("body");
        assert_eq!(
            body,
            json!({"billing_type": "usage", "type": "cpu", "name": "CPU",
                   "measured_unit": "Hours", "limit_amount": 10, "article_code": "A1"})
        );
    }

    #[test]
    fn one_time_components_are_prepaid_unless_configured() {
        let c = component(json!({"measured_unit": "x", "accounting_type": "one", "label": "L"}));
        let body = component_request("lic", &c, None).expect("body");
        assert_eq!(body["is_prepaid"], json!(true));
        let c = component(
            json!({"measured_unit": "x", "accounting_type": "one", "label": "L",
                                 "is_prepaid": false}),
        );
        let body = component_request("lic", &c, None).expect("body");
        assert_eq!(body["is_prepaid"], json!(false));
    }

    #[test]
    fn update_keeps_waldur_limit_period_and_refuses_bad_values() {
        let existing = OfferingComponent {
            uuid: "0123".into(),
            component_type: "cpu".into(),
            limit_period: Some("annual".into()),
            ..OfferingComponent::default()
        };
        let c =
            component(json!({"measured_unit": "h", "accounting_type": "limit", "label": "CPU"}));
        let body = component_request("cpu", &c, Some(&existing)).expect("body");
        assert_eq!(body["uuid"], json!("0123"));
        assert_eq!(body["limit_period"], json!("annual"));
        let c = component(json!({"measured_unit": "h", "accounting_type": "limit",
                                 "label": "CPU", "limit_period": "month"}));
        let body = component_request("cpu", &c, Some(&existing)).expect("body");
        assert_eq!(body["limit_period"], json!("month"));
        let c = component(json!({"measured_unit": "h", "accounting_type": "limit",
                                 "label": "CPU", "limit_period": "weekly"}));
        assert!(component_request("cpu", &c, None).is_err());
        let c = component(json!({"measured_unit": "h", "accounting_type": "limit",
                                 "label": "CPU", "limit": 1.5}));
        assert!(component_request("cpu", &c, None).is_err());
    }
}
