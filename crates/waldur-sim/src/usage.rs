//! Usage reporting (§4): `set_usage` upserts one row per (resource, component, billing month),
//! per-user usages, the usage lists and per-user usage limits.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{AppState, Body, Ctx, Kind, f, path_uuid};
use crate::error::{ApiError, ApiResult};
use crate::model::{ComponentUsage, ComponentUserUsage};
use crate::store::{Store, new_uuid, now};

pub struct UsageItem {
    pub type_: String,
    pub cents: i64,
    pub description: String,
    pub missing_usage_policy: String,
    pub recurring: bool,
}

/// Parses a decimal amount (string or number) into hundredths; more than two decimals is the
/// DecimalField error Mastermind gives.
pub fn parse_amount(v: &Value) -> Result<i64, String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err("A valid number is required.".into()),
    };
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, s.clone()),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i.to_string(), f.trim_end_matches('0').to_string()),
        None => (digits.clone(), String::new()),
    };
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        // Scientific notation and the like: accept when it parses as a float.
        return s
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(|x| (x * 100.0).round() as i64)
            .ok_or_else(|| "A valid number is required.".to_string());
    }
    if frac.len() > 2 {
        return Err("Ensure that there are no more than 2 decimal places.".into());
    }
    let int_v: i64 = if int.is_empty() {
        0
    } else {
        int.parse()
            .map_err(|_| "A valid number is required.".to_string())?
    };
    let frac_v: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    let cents = int_v
        .checked_mul(100)
        .and_then(|x| x.checked_add(frac_v))
        .ok_or_else(|| "Ensure that there are no more than 18 digits in total.".to_string())?;
    Ok(if neg { -cents } else { cents })
}

fn month_start(t: &Timestamp) -> jiff::civil::Date {
    let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
    jiff::civil::Date::new(d.year(), d.month(), 1).unwrap_or(d)
}

impl Store {
    pub fn set_usage(
        &mut self,
        user: Uuid,
        resource: Uuid,
        date: Option<Timestamp>,
        items: Vec<UsageItem>,
    ) -> ApiResult<()> {
        let r = self
            .resources
            .get(&resource)
            .filter(|r| self.can_see_resource(&user, r))
            .ok_or_else(|| ApiError::field("resource", "Invalid resource."))?
            .clone();
        if !self.can_manage_offering(&user, &r.offering) {
            return Err(ApiError::forbidden());
        }
        if !matches!(r.state.as_str(), "OK" | "Updating" | "Terminating") {
            return Err(ApiError::field(
                "resource",
                "Resource is not in valid state.",
            ));
        }
        let off = self
            .offerings
            .get(&r.offering)
            .ok_or_else(ApiError::not_found)?;
        let invalid: Vec<String> = items
            .iter()
            .filter(|i| {
                !off.components.iter().any(|c| {
                    c.type_ == i.type_ && matches!(c.billing_type.as_str(), "usage" | "limit")
                })
            })
            .map(|i| i.type_.clone())
            .collect();
        if !invalid.is_empty() {
            return Err(ApiError::bare(format!(
                "These components are invalid: {}.",
                invalid.join(", ")
            )));
        }
        let ts = now();
        let date = date.unwrap_or(ts);
        let period = month_start(&date);
        let current = month_start(&ts);
        if period > current {
            return Err(ApiError::field(
                "date",
                "Usage can not be reported for a future billing period.",
            ));
        }
        if period < current && !self.allow_usage_backfill {
            return Err(ApiError::field(
                "date",
                "Usage reporting for backfilling past billing periods is not allowed.",
            ));
        }
        let plan_period = self
            .plan_periods
            .values()
            .find(|p| p.resource == resource && p.start <= date && p.end.is_none_or(|e| e >= date))
            .map(|p| p.uuid);
        for item in items {
            let existing = self.component_usages.values_mut().find(|c| {
                c.resource == resource
                    && c.component_type == item.type_
                    && c.billing_period == period
            });
            match existing {
                Some(c) => {
                    c.usage_cents = item.cents;
                    c.date = date;
                    c.description = item.description;
                    c.missing_usage_policy = item.missing_usage_policy;
                    c.recurring = item.recurring;
                    c.modified_by = Some(user);
                }
                None => {
                    let cu = ComponentUsage {
                        uuid: new_uuid(),
                        resource,
                        component_type: item.type_.clone(),
                        usage_cents: item.cents,
                        date,
                        billing_period: period,
                        description: item.description,
                        missing_usage_policy: item.missing_usage_policy,
                        recurring: item.recurring,
                        plan_period,
                        modified_by: Some(user),
                        created: ts,
                    };
                    self.component_usages.insert(cu.uuid, cu);
                }
            }
            if period == current
                && let Some(r) = self.resources.get_mut(&resource)
            {
                r.current_usages
                    .insert(item.type_, json!(crate::render::amount(item.cents)));
            }
        }
        Ok(())
    }

    pub fn set_user_usages(
        &mut self,
        user: Uuid,
        component_usage: Uuid,
        items: Vec<(String, i64, Option<String>, Option<Timestamp>)>,
    ) -> ApiResult<()> {
        let cu = self
            .component_usages
            .get(&component_usage)
            .ok_or_else(ApiError::not_found)?;
        let r = self
            .resources
            .get(&cu.resource)
            .ok_or_else(ApiError::not_found)?;
        if !self.can_see_resource(&user, r) {
            return Err(ApiError::not_found());
        }
        if !self.can_manage_offering(&user, &r.offering) {
            return Err(ApiError::forbidden());
        }
        let ts = now();
        for (username, cents, user_url, date) in items {
            let date = date.unwrap_or(ts);
            match self
                .user_usages
                .values_mut()
                .find(|u| u.component_usage == component_usage && u.username == username)
            {
                Some(u) => {
                    u.usage_cents = cents;
                    u.user = user_url.or(u.user.take());
                    u.date = date;
                    u.modified = ts;
                }
                None => {
                    let uu = ComponentUserUsage {
                        uuid: new_uuid(),
                        component_usage,
                        username,
                        user: user_url,
                        usage_cents: cents,
                        date,
                        created: ts,
                        modified: ts,
                    };
                    self.user_usages.insert(uu.uuid, uu);
                }
            }
        }
        Ok(())
    }
}

fn parse_date(v: Option<&Value>) -> ApiResult<Option<Timestamp>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if let Ok(t) = s.parse::<Timestamp>() {
                return Ok(Some(t));
            }
            if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
                return dt
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .map(|z| Some(z.timestamp()))
                    .map_err(|_| ApiError::field("date", "Invalid date."));
            }
            s.parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| Some(z.timestamp()))
                .ok_or_else(|| ApiError::field("date", "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."))
        }
        Some(_) => Err(ApiError::field("date", "Datetime has wrong format.")),
    }
}

async fn set_usage(ctx: Ctx, body: Body) -> ApiResult<Response> {
    let resource = match (body.uuid_ref("resource")?, body.uuid_ref("plan_period")?) {
        (Some(r), _) => r,
        (None, Some(pp)) => {
            let store = ctx.store();
            let p = store
                .plan_periods
                .get(&pp)
                .ok_or_else(|| ApiError::field("plan_period", "Invalid plan period."))?;
            if p.end.is_some_and(|e| month_start(&e) < month_start(&now())) {
                return Err(ApiError::field("plan_period", "Billing period is closed."));
            }
            p.resource
        }
        (None, None) => {
            return Err(ApiError::bare(
                "Either plan_period or resource should be provided.",
            ));
        }
    };
    // A 2024 server has no `date` here: every submission lands in the current month.
    let date = if ctx.state.api_profile.is_2024() {
        None
    } else {
        parse_date(body.get("date"))?
    };
    let Some(Value::Array(raw)) = body.get("usages") else {
        return Err(ApiError::required("usages"));
    };
    let mut items = vec![];
    for (i, u) in raw.iter().enumerate() {
        let type_ = u.get("type").and_then(Value::as_str).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                json!({"usages": [{"type": ["This field is required."]}]}),
            )
        })?;
        let amount = u.get("amount").ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                json!({"usages": [{"amount": ["This field is required."]}]}),
            )
        })?;
        let cents = parse_amount(amount).map_err(|m| {
            let mut errs = vec![json!({}); raw.len()];
            errs[i] = json!({"amount": [m]});
            ApiError::new(StatusCode::BAD_REQUEST, json!({"usages": errs}))
        })?;
        let recurring = u.get("recurring").and_then(Value::as_bool).unwrap_or(false);
        let policy = u
            .get("missing_usage_policy")
            .and_then(Value::as_str)
            .unwrap_or(if recurring { "reuse" } else { "none" })
            .to_string();
        items.push(UsageItem {
            type_: type_.to_string(),
            cents,
            description: u
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            missing_usage_policy: policy,
            recurring,
        });
    }
    let user = ctx.user;
    ctx.mutate(|s| s.set_usage(user, resource, date, items))?;
    Ok(StatusCode::CREATED.into_response())
}

fn user_usage_item(v: &Value) -> ApiResult<(String, i64, Option<String>, Option<Timestamp>)> {
    let username = v
        .get("username")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::required("username"))?;
    let cents = match v.get("usage") {
        Some(x) => parse_amount(x).map_err(|m| ApiError::field("usage", m))?,
        None => 0,
    };
    let user = v.get("user").and_then(Value::as_str).map(str::to_string);
    Ok((
        username.to_string(),
        cents,
        user,
        parse_date(v.get("date"))?,
    ))
}

async fn set_user_usage(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let item = user_usage_item(&body.0)?;
    let user = ctx.user;
    ctx.mutate(|s| s.set_user_usages(user, id, vec![item]))?;
    Ok(StatusCode::CREATED.into_response())
}

async fn set_user_usages(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let Some(Value::Array(raw)) = body.get("usages") else {
        return Err(ApiError::required("usages"));
    };
    // Validate everything first: the bulk call is atomic.
    let items = raw
        .iter()
        .map(user_usage_item)
        .collect::<ApiResult<Vec<_>>>()?;
    let user = ctx.user;
    ctx.mutate(|s| s.set_user_usages(user, id, items))?;
    Ok(StatusCode::CREATED.into_response())
}

async fn list_usages(ctx: Ctx) -> ApiResult<Response> {
    let items: Vec<Value> = {
        let store = ctx.store();
        store
            .component_usages
            .values()
            .filter(|c| {
                store
                    .resources
                    .get(&c.resource)
                    .is_some_and(|r| store.can_see_resource(&ctx.user, r))
            })
            .map(|c| store.render_component_usage(c))
            .collect()
    };
    let items = filter_period(items, &ctx, "billing_period")?;
    ctx.list(
        items,
        &[
            f("resource_uuid", "resource_uuid", Kind::Uuid),
            f("resource", "resource_uuid", Kind::Uuid),
            f("offering_uuid", "offering_uuid", Kind::Uuid),
            f("project_uuid", "project_uuid", Kind::Uuid),
            f("customer_uuid", "customer_uuid", Kind::Uuid),
            f("type", "type", Kind::Exact),
            f("billing_period", "billing_period", Kind::Exact),
            f("date_after", "date", Kind::After),
            f("date_before", "date", Kind::Before),
        ],
    )
}

/// `billing_period_year` / `billing_period_month` filters on a `YYYY-MM-DD` field.
fn filter_period(items: Vec<Value>, ctx: &Ctx, field: &str) -> ApiResult<Vec<Value>> {
    let year = ctx.params.get("billing_period_year").map(str::to_string);
    let month = ctx
        .params
        .get("billing_period_month")
        .and_then(|m| m.parse::<u32>().ok());
    Ok(items
        .into_iter()
        .filter(|v| {
            let bp = v.get(field).and_then(Value::as_str).unwrap_or("");
            year.as_ref().is_none_or(|y| bp.starts_with(y.as_str()))
                && month.is_none_or(|m| bp.get(5..7).and_then(|x| x.parse::<u32>().ok()) == Some(m))
        })
        .collect())
}

async fn get_usage(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_uuid(&id)?;
    let v = {
        let store = ctx.store();
        let c = store
            .component_usages
            .get(&id)
            .ok_or_else(ApiError::not_found)?;
        store.visible_resource(&ctx.user, &c.resource)?;
        store.render_component_usage(c)
    };
    Ok(ctx.object(v))
}

async fn list_user_usages(ctx: Ctx) -> ApiResult<Response> {
    let items: Vec<Value> = {
        let store = ctx.store();
        store
            .user_usages
            .values()
            .filter(|u| {
                store
                    .component_usages
                    .get(&u.component_usage)
                    .and_then(|c| store.resources.get(&c.resource))
                    .is_some_and(|r| store.can_see_resource(&ctx.user, r))
            })
            .map(|u| store.render_user_usage(u))
            .collect()
    };
    let items = filter_period(items, &ctx, "billing_period")?;
    ctx.list(
        items,
        &[
            f("resource_uuid", "resource_uuid", Kind::Uuid),
            f("resource", "resource_uuid", Kind::Uuid),
            f("offering_uuid", "offering_uuid", Kind::Uuid),
            f("project_uuid", "project_uuid", Kind::Uuid),
            f("customer_uuid", "customer_uuid", Kind::Uuid),
            f("type", "component_type", Kind::Exact),
            f("username", "username", Kind::Exact),
            f(
                "component_usage__billing_period",
                "billing_period",
                Kind::Exact,
            ),
            f("date_after", "date", Kind::After),
            f("date_before", "date", Kind::Before),
        ],
    )
}

async fn list_user_limits(ctx: Ctx) -> ApiResult<Response> {
    let items: Vec<Value> = {
        let store = ctx.store();
        store
            .user_usage_limits
            .values()
            .filter_map(|l| {
                let r = store.resources.get(&l.resource)?;
                if !store.can_see_resource(&ctx.user, r) {
                    return None;
                }
                let comp = store.offerings.get(&r.offering)?.components.iter().find(|c| c.type_ == l.component_type)?;
                Some(json!({
                    "url": store.url("component-user-usage-limits", &l.uuid),
                    "uuid": l.uuid.simple().to_string(),
                    "resource": store.url("marketplace-resources", &l.resource),
                    "resource_uuid": l.resource.simple().to_string(),
                    "offering_uuid": r.offering.simple().to_string(),
                    "component": comp.uuid.simple().to_string(),
                    "component_type": l.component_type,
                    "user": store.url("users", &l.user),
                    "username": store.users.get(&l.user).map(|u| u.username.clone()).unwrap_or_default(),
                    "limit": l.limit,
                }))
            })
            .collect()
    };
    ctx.list(
        items,
        &[
            f("resource_uuid", "resource_uuid", Kind::Uuid),
            f("resource", "resource_uuid", Kind::Uuid),
            f("offering_uuid", "offering_uuid", Kind::Uuid),
            f("component_type", "component_type", Kind::Exact),
            f("username", "username", Kind::Exact),
        ],
    )
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/marketplace-component-usages/",
            get(list_usages).head(list_usages),
        )
        .route(
            "/api/marketplace-component-usages/set_usage/",
            post(set_usage),
        )
        .route("/api/marketplace-component-usages/{uuid}/", get(get_usage))
        .route(
            "/api/marketplace-component-usages/{uuid}/set_user_usage/",
            post(set_user_usage),
        )
        .route(
            "/api/marketplace-component-usages/{uuid}/set_user_usages/",
            post(set_user_usages),
        )
        .route(
            "/api/marketplace-component-user-usages/",
            get(list_user_usages).head(list_user_usages),
        )
        .route("/api/component-user-usage-limits/", get(list_user_limits))
}

#[cfg(test)]
mod tests {
    use super::parse_amount;
    use serde_json::json;

    #[test]
    fn amounts_are_hundredths_with_at_most_two_decimals() {
        assert_eq!(parse_amount(&json!("12.34")), Ok(1234));
        assert_eq!(
            parse_amount(&json!("12.340000")),
            Ok(1234),
            "trailing zeros are fine"
        );
        assert_eq!(parse_amount(&json!(7)), Ok(700));
        assert_eq!(parse_amount(&json!(0.5)), Ok(50));
        assert_eq!(parse_amount(&json!("-1.5")), Ok(-150));
        assert!(parse_amount(&json!("1.234")).is_err());
        assert!(parse_amount(&json!("abc")).is_err());
        assert!(parse_amount(&json!(null)).is_err());
    }
}
