//! Simulator administration under `/__sim/` (staff token required): request statistics and log,
//! fault configuration, the event log, and scenario helpers (resource flags).

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::{AppState, Body, Ctx, ok_empty, path_uuid};
use crate::error::{ApiError, ApiResult};
use crate::faults::FaultConfig;
use crate::resources::ResourceFlag;

fn staff(ctx: &Ctx) -> ApiResult<()> {
    if ctx.store().is_staff(&ctx.user) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

async fn stats(ctx: Ctx) -> ApiResult<Response> {
    staff(&ctx)?;
    let limit = ctx
        .params
        .get("log")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let snap = ctx.state.stats.snapshot();
    Ok(axum::Json(json!({
        "total": snap.total,
        "routes": snap.routes,
        "by_client": snap.by_client,
        "log": ctx.state.stats.log(limit),
        "publishing": ctx.state.publish_stats.snapshot(),
    }))
    .into_response())
}

async fn reset_stats(ctx: Ctx) -> ApiResult<Response> {
    staff(&ctx)?;
    ctx.state.stats.reset();
    Ok(ok_empty())
}

async fn get_faults(ctx: Ctx) -> ApiResult<Response> {
    staff(&ctx)?;
    Ok(axum::Json(ctx.state.faults.get()).into_response())
}

async fn set_faults(ctx: Ctx, body: Body) -> ApiResult<Response> {
    staff(&ctx)?;
    let config: FaultConfig =
        serde_json::from_value(body.0).map_err(|e| ApiError::field("rules", e.to_string()))?;
    for r in &config.rules {
        if ![500, 502, 503, 429].contains(&r.error_status) {
            return Err(ApiError::field(
                "error_status",
                "Use one of 500, 502, 503, 429.",
            ));
        }
        if [r.error_rate, r.drop_rate, r.drop_after_rate]
            .iter()
            .any(|p| !(0.0..=1.0).contains(p))
        {
            return Err(ApiError::field(
                "error_rate",
                "Rates are probabilities between 0 and 1.",
            ));
        }
    }
    ctx.state.faults.set(config.clone());
    Ok(axum::Json(config).into_response())
}

async fn events(ctx: Ctx) -> ApiResult<Response> {
    staff(&ctx)?;
    Ok(axum::Json(ctx.state.events.log()).into_response())
}

async fn clear_events(ctx: Ctx) -> ApiResult<Response> {
    staff(&ctx)?;
    ctx.state.events.clear();
    Ok(ok_empty())
}

async fn resource_flags(ctx: Ctx, Path(id): Path<String>, body: Body) -> ApiResult<Response> {
    staff(&ctx)?;
    let id = path_uuid(&id)?;
    let user = ctx.user;
    ctx.mutate(|s| {
        for (key, flag) in [
            ("paused", ResourceFlag::Paused),
            ("downscaled", ResourceFlag::Downscaled),
            ("restrict_member_access", ResourceFlag::RestrictMemberAccess),
        ] {
            if let Some(v) = body.get(key).and_then(Value::as_bool) {
                s.set_resource_flag(user, id, flag, v)?;
            }
        }
        Ok(())
    })?;
    let store = ctx.store();
    let r = store.resources.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(store.render_resource(r)).into_response())
}

async fn summary(ctx: Ctx) -> ApiResult<Response> {
    staff(&ctx)?;
    let s = ctx.store();
    Ok(axum::Json(json!({
        "users": s.users.len(),
        "projects": s.projects.len(),
        "offerings": s.offerings.len(),
        "orders": s.orders.len(),
        "resources": s.resources.len(),
        "offering_users": s.offering_users.len(),
        "component_usages": s.component_usages.len(),
        "identities": s.identities.len(),
    }))
    .into_response())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/__sim/stats", get(stats))
        .route("/__sim/reset-stats", post(reset_stats))
        .route("/__sim/faults", get(get_faults).post(set_faults))
        .route("/__sim/events", get(events).delete(clear_events))
        .route("/__sim/state", get(summary))
        .route("/__sim/resources/{uuid}/flags", post(resource_flags))
}
