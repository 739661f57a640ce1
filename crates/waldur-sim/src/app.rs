//! Shared server state, request context (authentication, query, absolute URL) and the generic
//! list machinery (filters, ordering, pagination) used by every domain module.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uuid::Uuid;

use crate::broker::{PublishStats, RabbitAdmin};
use crate::error::{ApiError, ApiResult};
use crate::events::EventHub;
use crate::faults::FaultState;
use crate::pagination::{paginate, select_fields};
use crate::query::{Params, parse_uuid_ref};
use crate::stats::StatsState;
use crate::store::Store;

pub struct Shared {
    pub store: Mutex<Store>,
    pub stats: StatsState,
    pub faults: FaultState,
    pub events: EventHub,
    pub base_url: String,
    /// RabbitMQ management API, when configured: subscriptions and queues are provisioned there.
    pub rabbit: Option<RabbitAdmin>,
    pub publish_stats: PublishStats,
    /// Which Mastermind the simulator answers as.
    pub api_profile: crate::profile::ApiProfile,
}

pub type AppState = Arc<Shared>;

impl Shared {
    /// Locks the store; a poisoned lock (a panicking handler) still yields the data.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a mutation and publishes the events it queued once the lock is released.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut Store) -> ApiResult<T>) -> ApiResult<T> {
        let (result, events) = {
            let mut store = self.lock();
            let result = f(&mut store);
            let events = std::mem::take(&mut store.outbox);
            (result, events)
        };
        if !events.is_empty() {
            let routed = {
                let store = self.lock();
                self.events.route(&store, &events)
            };
            self.events.publish(routed);
        }
        result
    }
}

/// The authenticated caller and the parsed request target.
pub struct Ctx {
    pub state: AppState,
    pub user: Uuid,
    pub params: Params,
    pub url: url::Url,
    pub method: Method,
    pub user_agent: String,
}

fn token_from(parts: &Parts, params: &Params) -> Result<Option<String>, ApiError> {
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let raw = h
            .to_str()
            .map_err(|_| ApiError::unauthorized("Invalid token header."))?;
        let mut it = raw.splitn(2, ' ');
        let keyword = it.next().unwrap_or("");
        if keyword.eq_ignore_ascii_case("token") || keyword.eq_ignore_ascii_case("bearer") {
            let key = it.next().unwrap_or("").trim();
            if key.is_empty() {
                return Err(ApiError::unauthorized(
                    "Invalid token. No credentials provided.",
                ));
            }
            if key.contains(' ') {
                return Err(ApiError::unauthorized(
                    "Invalid token. Token string should not contain spaces.",
                ));
            }
            return Ok(Some(key.to_string()));
        }
    }
    Ok(params.get("x-auth-token").map(str::to_string))
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params = Params::parse(parts.uri.query());
        let token = token_from(parts, &params)?.ok_or_else(|| {
            ApiError::unauthorized("Authentication credentials were not provided.")
        })?;
        let user = {
            let store = state.lock();
            let u = store
                .user_by_token(&token)
                .ok_or_else(|| ApiError::unauthorized("Invalid token."))?;
            if !u.is_active {
                return Err(ApiError::unauthorized("User inactive or deleted."));
            }
            u.uuid
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let base = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("http://{h}"))
            .unwrap_or_else(|| state.base_url.clone());
        let url = url::Url::parse(&format!("{base}{path_and_query}"))
            .or_else(|_| url::Url::parse(&format!("{}{path_and_query}", state.base_url)))
            .map_err(|_| ApiError::detail(StatusCode::BAD_REQUEST, "Malformed request URL."))?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok(Ctx {
            state: state.clone(),
            user,
            params,
            url,
            method: parts.method.clone(),
            user_agent,
        })
    }
}

impl Ctx {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.state.lock()
    }

    pub fn mutate<T>(&self, f: impl FnOnce(&mut Store) -> ApiResult<T>) -> ApiResult<T> {
        self.state.mutate(f)
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// `User-Agent` sniffing (§1.6): marks the offering's integration status for the agent type.
    pub fn sniff_agent(&self, agent_type: &str) {
        if !self.user_agent.contains("waldur-site-agent") {
            return;
        }
        let Some(offering) = self.params.get("offering_uuid").and_then(parse_uuid_ref) else {
            return;
        };
        let mut store = self.store();
        if store.can_manage_offering(&self.user, &offering)
            && let Some(o) = store.offerings.get_mut(&offering)
        {
            o.integration_status
                .insert(agent_type.to_string(), crate::store::now());
        }
    }

    /// Renders a single object with `field=` selection applied.
    pub fn object(&self, value: Value) -> Response {
        axum::Json(select_fields(value, &self.params)).into_response()
    }

    /// Filters, orders and pages a rendered list.
    pub fn list(&self, items: Vec<Value>, filters: &[Filter]) -> ApiResult<Response> {
        let mut items = apply_filters(items, &self.params, filters)?;
        apply_ordering(&mut items, &self.params);
        paginate(items, &self.params, &self.url, self.is_head())
    }
}

/// JSON request body; an empty body is `{}`, malformed JSON a DRF-style 400.
pub struct Body(pub Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::detail(StatusCode::BAD_REQUEST, e.to_string()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Value::Object(Default::default())));
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            ApiError::detail(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}"))
        })
    }
}

impl Body {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    pub fn obj(&self, key: &str) -> ApiResult<serde_json::Map<String, Value>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Default::default()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(ApiError::field(key, "Expected a dictionary of items.")),
        }
    }
    pub fn required_str(&self, key: &str) -> ApiResult<&str> {
        match self.0.get(key) {
            None | Some(Value::Null) => Err(ApiError::required(key)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError::field(key, "Not a valid string.")),
        }
    }
    pub fn uuid_ref(&self, key: &str) -> ApiResult<Option<Uuid>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_uuid_ref(s)
                .map(Some)
                .ok_or_else(|| ApiError::field(key, "Invalid hyperlink - No URL match.")),
            Some(_) => Err(ApiError::field(key, "Incorrect type.")),
        }
    }
}

/// Path segment UUID: dashed or hex; anything else cannot match an object (404).
pub fn path_uuid(raw: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(raw).map_err(|_| ApiError::not_found())
}

#[derive(Clone, Copy)]
pub enum Kind {
    /// UUID compared with a hex field; accepts URLs and dashed forms.
    Uuid,
    /// Several UUIDs (repeated or comma-separated).
    UuidMulti,
    /// Exact string match.
    Exact,
    /// Case-insensitive substring.
    Contains,
    /// Several choices; values outside `choices` give django-filter's 400.
    Choice(&'static [&'static str]),
    Bool,
    /// Timestamp field after / before the parameter.
    After,
    Before,
}

#[derive(Clone, Copy)]
pub struct Filter {
    pub param: &'static str,
    pub field: &'static str,
    pub kind: Kind,
}

pub const fn f(param: &'static str, field: &'static str, kind: Kind) -> Filter {
    Filter { param, field, kind }
}

fn field_str(v: &Value, field: &str) -> String {
    match v.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp());
    }
    s.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
}

pub fn apply_filters(
    items: Vec<Value>,
    params: &Params,
    filters: &[Filter],
) -> ApiResult<Vec<Value>> {
    let mut items = items;
    for flt in filters {
        let values = params.all(flt.param);
        if values.is_empty() {
            continue;
        }
        match flt.kind {
            Kind::Uuid | Kind::UuidMulti => {
                let wanted: Vec<String> = values
                    .iter()
                    .map(|v| {
                        parse_uuid_ref(v)
                            .map(|u| u.simple().to_string())
                            .ok_or_else(|| ApiError::field(flt.param, "Enter a valid UUID."))
                    })
                    .collect::<ApiResult<_>>()?;
                items.retain(|it| wanted.contains(&field_str(it, flt.field)));
            }
            Kind::Exact => {
                let want = params.get(flt.param).unwrap_or_default().to_string();
                items.retain(|it| field_str(it, flt.field) == want);
            }
            Kind::Contains => {
                let want = params.get(flt.param).unwrap_or_default().to_lowercase();
                items.retain(|it| field_str(it, flt.field).to_lowercase().contains(&want));
            }
            Kind::Choice(choices) => {
                for v in &values {
                    if !choices.contains(&v.as_str()) {
                        return Err(ApiError::field(
                            flt.param,
                            format!(
                                "Select a valid choice. {v} is not one of the available choices."
                            ),
                        ));
                    }
                }
                items.retain(|it| values.contains(&field_str(it, flt.field)));
            }
            Kind::Bool => {
                let want = params.bool(flt.param).unwrap_or(false);
                items.retain(|it| it.get(flt.field).and_then(Value::as_bool) == Some(want));
            }
            Kind::After | Kind::Before => {
                let Some(limit) = params.get(flt.param).and_then(parse_time) else {
                    return Err(ApiError::field(flt.param, "Enter a valid date/time."));
                };
                items.retain(|it| {
                    parse_time(&field_str(it, flt.field)).is_some_and(|t| match flt.kind {
                        Kind::After => t >= limit,
                        _ => t < limit,
                    })
                });
            }
        }
    }
    Ok(items)
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        _ => field_plain(a).cmp(&field_plain(b)),
    }
}

fn field_plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `o=field` / `o=-field` ordering on rendered values (stable, several keys allowed).
pub fn apply_ordering(items: &mut [Value], params: &Params) {
    let keys = params.all("o");
    if keys.is_empty() {
        return;
    }
    items.sort_by(|a, b| {
        for k in &keys {
            let (desc, name) = match k.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, k.as_str()),
            };
            let ord = cmp_values(
                a.get(name).unwrap_or(&Value::Null),
                b.get(name).unwrap_or(&Value::Null),
            );
            let ord = if desc { ord.reverse() } else { ord };
            if ord != std::cmp::Ordering::Equal {
                return ord;
            }
        }
        std::cmp::Ordering::Equal
    });
}

/// `200` with an empty body, as most agent actions answer.
pub fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}

pub fn status_ok(msg: &str) -> Response {
    axum::Json(serde_json::json!({ "status": msg })).into_response()
}

pub fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}
