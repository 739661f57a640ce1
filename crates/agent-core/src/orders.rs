//! `order_process` (agent-behaviour §3.1): take `pending-provider` and `executing` orders of an
//! offering and apply them to the site.
//!
//! Rules that matter to users:
//! - an order is never erred before provisioning started (erring a pending Create terminates the
//!   resource in Waldur);
//! - transient failures (5xx/429/transport on Waldur, `is_transient()` on the backend) leave the
//!   order as it is for a later cycle;
//! - `set_state_done` only after re-reading the order state, and only when still executing;
//! - Create is idempotent: a resource whose backend id exists on the site is done without
//!   re-creating; a backend id that the site lacks is re-created with the same id.
//!
//! Cost: a Create order costs at most 6 requests of its own (approve, GET resource, GET team,
//! set_backend_id, GET order state, set_state_done), plus `set_limits` / metadata / endpoints
//! only when the backend reports something Waldur does not already have. Orders of a cycle run
//! concurrently (bounded by `order_concurrency`); orders of the same resource run in sequence.
//! All Create orders that reach the site in one cycle go to the backend in one
//! `create_resources` call.
//!
//! Differences from upstream, on purpose:
//! - a Restore order for a resource the site still has (soft-deleted: limits zeroed) puts the
//!   resource's Waldur limits back instead of only marking the order done;
//! - an event-driven order is tried once: a transient failure goes back to the broker after a
//!   backoff (see the binary's event consumer), so it never holds up other events; polling
//!   leaves it to the next cycle.
//!
//! Not implemented, because no backend of ours supports them:
//! - async target orders (§3.1.3: `supports_async_orders`, `check_pending_order`, an order's
//!   `backend_id` used as a pending id): every backend here finishes an order within the call, so
//!   an order's `backend_id` is never read — which also avoids the upstream bug where externally
//!   set order backend ids made creates skip;
//! - resource API keys (§3.1.8: provisioning and rotation, `marketplace-resource-api-keys`).
//!   The Waldur client has the list/report calls, should a backend ever need them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use backend_api::{
    BackendError, BackendResourceInfo, CreateRequest, Limits, OrderBackend, PendingOrderDecision,
    ResourceView, SiteCheck, UserContext, UserGrant,
};
use futures::StreamExt;
use waldur_client::{
    EndpointItem, OfferingUserState, Order, OrderState, OrderType, ProviderResource,
    ResourceFilter, ResourceState, truthy,
};

use crate::context::OfferingContext;
use crate::convert::{limits_from_amounts, order_view, resource_view, user_grant};
use crate::error::{CoreError, CoreResult, CycleReport};
use crate::usernames;

/// What happened to one order.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderOutcome {
    /// Applied and marked done.
    Done,
    /// Applied, but Waldur no longer had it executing, so `set_state_done` was not called.
    AppliedNotDone(String),
    Rejected,
    /// The backend asked to keep it pending; re-evaluated next cycle.
    KeptPending,
    /// Nothing to do (terminal or non-actionable state, unknown type).
    Skipped(String),
    /// Transient failure; left untouched for a later cycle.
    Retry(String),
    /// Permanent failure after provisioning started; the order was set erred.
    Erred(String),
    /// Permanent failure before provisioning started; the order stays pending (never erred).
    Failed(String),
}

impl OrderOutcome {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            OrderOutcome::Retry(_) | OrderOutcome::Erred(_) | OrderOutcome::Failed(_)
        )
    }
}

/// Full polling cycle for one offering.
pub async fn order_process(ctx: &OfferingContext) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut report = CycleReport::new(ctx.name());
    let Some(backend) = ctx.backends.orders.clone() else {
        tracing::info!(offering = %ctx.name(), "no order_processing_backend; skipping");
        return report;
    };
    if backend.capabilities().supports_cycle_preflight {
        if let Err(e) = backend.ping().await {
            if e.is_transient() {
                tracing::warn!(offering = %ctx.name(), error = %e, "backend not ready; orders left for the next cycle");
                report.retry("preflight", e);
            } else {
                // Wrong credentials or settings: nothing will work until someone fixes them.
                tracing::error!(offering = %ctx.name(), error = %e, "backend unusable; orders left untouched");
                report.fail("preflight", e);
            }
            return report;
        }
    }
    let orders = match ctx
        .client
        .list_orders(
            &ctx.offering_uuid,
            &[OrderState::PendingProvider, OrderState::Executing],
            None,
        )
        .await
    {
        Ok(orders) => orders,
        Err(e) => {
            report.fail("list orders", e);
            return report;
        }
    };
    if orders.is_empty() {
        tracing::debug!(offering = %ctx.name(), "no orders");
        return report;
    }
    for (uuid, outcome) in process_in_passes(ctx, &backend, orders).await {
        tally(&mut report, &uuid, &outcome);
    }
    report
}

/// [`process_orders`] over passes of at most [`crate::ITEMS_PER_PASS`] orders, one after another.
async fn process_in_passes(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    orders: Vec<Order>,
) -> Vec<(String, OrderOutcome)> {
    let mut results = Vec::new();
    for pass in split_into_passes(orders, crate::ITEMS_PER_PASS) {
        results.extend(process_orders(ctx, backend, pass).await);
    }
    results
}

/// Orders grouped by their resource (in first-seen order; orders without one alone), each
/// group in its orders' order.
fn group_by_resource(orders: Vec<Order>) -> Vec<Vec<Order>> {
    let mut groups: Vec<Vec<Order>> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for order in orders {
        match order.target_resource_uuid().map(str::to_owned) {
            Some(resource) => match index.get(&resource) {
                Some(&i) => groups[i].push(order),
                None => {
                    index.insert(resource, groups.len());
                    groups.push(vec![order]);
                }
            },
            None => groups.push(vec![order]),
        }
    }
    groups
}

/// Passes of at most `max` orders (a resource with more gets a pass of its own); all orders of
/// one resource go in the same pass, in their order.
fn split_into_passes(orders: Vec<Order>, max: usize) -> Vec<Vec<Order>> {
    let groups = group_by_resource(orders);
    let mut passes: Vec<Vec<Order>> = Vec::new();
    let mut pass: Vec<Order> = Vec::new();
    for group in groups {
        if !pass.is_empty() && pass.len() + group.len() > max {
            passes.push(std::mem::take(&mut pass));
        }
        pass.extend(group);
    }
    if !pass.is_empty() {
        passes.push(pass);
    }
    passes
}

/// Event entry point: process one order by UUID (same code as polling), once. A transient
/// failure is reported as such: the event consumer hands the event back to the broker after a
/// backoff, so one failing order never holds up the offering's other events.
pub async fn process_order_by_uuid(ctx: &OfferingContext, order_uuid: &str) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut report = CycleReport::new(ctx.name());
    let Some(backend) = ctx.backends.orders.clone() else {
        return report;
    };
    let outcome = match ctx.client.get_order(order_uuid, &[]).await {
        Ok(order) => process_single(ctx, &backend, order).await,
        Err(e) if e.is_transient() => OrderOutcome::Retry(e.to_string()),
        Err(e) => {
            report.fail(&format!("order {order_uuid}"), e);
            return report;
        }
    };
    tally(&mut report, order_uuid, &outcome);
    report
}

/// Process a list of orders the way a polling cycle does (used by the stuck-order sweep).
pub(crate) async fn process_order_list(ctx: &OfferingContext, orders: Vec<Order>) -> CycleReport {
    let mut report = CycleReport::new(ctx.name());
    let Some(backend) = ctx.backends.orders.clone() else {
        return report;
    };
    for (uuid, outcome) in process_in_passes(ctx, &backend, orders).await {
        tally(&mut report, &uuid, &outcome);
    }
    report
}

fn tally(report: &mut CycleReport, uuid: &str, outcome: &OrderOutcome) {
    match outcome {
        OrderOutcome::Retry(e) => report.retry(&format!("order {uuid}"), e),
        OrderOutcome::Erred(e) | OrderOutcome::Failed(e) => {
            report.fail(&format!("order {uuid}"), e)
        }
        _ => report.ok(),
    }
}

enum Stage {
    Finished(OrderOutcome),
    NeedsCreate(Box<PendingCreate>),
    NeedsDelete(Box<PendingDelete>),
}

/// A Terminate order whose resource is on the site.
struct PendingDelete {
    order: Order,
    view: ResourceView,
}

/// A Create/Restore order ready for the site.
struct PendingCreate {
    order: Order,
    view: ResourceView,
    request: CreateRequest,
    ids: BackendIdPlan,
    /// The resource already had this backend id (restore with the same id). Otherwise
    /// `request.backend_id` stays empty until [`reserve_ids`] picks a free one.
    reused_id: bool,
    /// The backend id Waldur holds for the resource (recorded before the site create, so a
    /// failure after the create never leaves an account Waldur does not know about).
    recorded_id: Option<String>,
}

/// Process a batch of orders: groups per resource, first orders concurrently with Creates
/// batched, then the remaining orders of each group in sequence.
async fn process_orders(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    orders: Vec<Order>,
) -> Vec<(String, OrderOutcome)> {
    let groups = group_by_resource(orders);
    let concurrency = ctx.settings.order_concurrency.max(1);
    let mut results = Vec::new();
    let mut rest: Vec<Vec<Order>> = Vec::new();
    let mut firsts = Vec::new();
    // Held until every order of the pass is settled: an event handler or another pass that
    // reaches one of these resources meanwhile leaves it to this pass.
    let mut claims = Vec::new();
    for mut group in groups {
        if let Some(resource) = group[0].target_resource_uuid() {
            match ctx.try_claim_resource(resource) {
                Some(claim) => claims.push(claim),
                None => {
                    tracing::debug!(
                        resource,
                        "orders of this resource are being applied elsewhere"
                    );
                    for order in group {
                        let why = "another task is applying this resource's orders".to_owned();
                        results.push((order.uuid, OrderOutcome::Skipped(why)));
                    }
                    continue;
                }
            }
        }
        let first = group.remove(0);
        firsts.push(first);
        rest.push(group);
    }

    // Phase 1: decide, approve and prepare the first order of every group.
    let staged: Vec<(String, Stage)> = futures::stream::iter(firsts)
        .map(|order| async move {
            if ctx.is_cancelled() {
                let skipped = Stage::Finished(OrderOutcome::Skipped("shutting down".into()));
                return (order.uuid.clone(), skipped);
            }
            (order.uuid.clone(), prepare(ctx, backend, order).await)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    for (uuid, stage) in staged {
        match stage {
            Stage::Finished(outcome) => results.push((uuid, outcome)),
            Stage::NeedsCreate(pending) => creates.push(*pending),
            Stage::NeedsDelete(pending) => deletes.push(*pending),
        }
    }

    if ctx.is_cancelled() {
        // Approved orders stay executing; the next run applies them (their ids, if reserved,
        // are recorded in Waldur already).
        for p in creates {
            results.push((p.order.uuid, OrderOutcome::Skipped("shutting down".into())));
        }
        for d in deletes {
            results.push((d.order.uuid, OrderOutcome::Skipped("shutting down".into())));
        }
        drop(claims);
        return results;
    }
    // Phase 2: every Create of the cycle: unique backend ids reserved (free on the site and in
    // Waldur, recorded in Waldur), then one batched call to the site, then the results recorded.
    results.extend(run_creates(ctx, backend, creates).await);
    // Phase 3: every Terminate of the cycle in one batched call, each confirmed by the site.
    results.extend(run_deletes(ctx, backend, deletes).await);

    // Phase 4: later orders of the same resource, in sequence per resource.
    let later: Vec<Vec<(String, OrderOutcome)>> = futures::stream::iter(rest)
        .map(|group| async move {
            let mut out = Vec::new();
            for order in group {
                let uuid = order.uuid.clone();
                let outcome = if ctx.is_cancelled() {
                    OrderOutcome::Skipped("shutting down".into())
                } else {
                    apply(ctx, backend, order).await
                };
                out.push((uuid, outcome));
            }
            out
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.extend(later.into_iter().flatten());
    drop(claims);
    results
}

/// One order start to finish, for an event: waits until no other task applies orders to its
/// resource, then re-reads the order (it may be done by then).
async fn process_single(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    order: Order,
) -> OrderOutcome {
    let Some(resource) = order.target_resource_uuid().map(str::to_owned) else {
        return apply(ctx, backend, order).await;
    };
    // Held until the order is settled.
    let _claim;
    let order = match ctx.try_claim_resource(&resource) {
        Some(claim) => {
            _claim = claim;
            order
        }
        None => {
            // Another task had it: wait, then act on the order as it is now.
            _claim = ctx.claim_resource(&resource).await;
            match ctx.client.get_order(&order.uuid, &[]).await {
                Ok(fresh) => fresh,
                Err(e) => return handle_error(ctx, &order, e.into(), false).await,
            }
        }
    };
    apply(ctx, backend, order).await
}

/// One order start to finish; the caller holds its resource.
async fn apply(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    order: Order,
) -> OrderOutcome {
    let uuid = order.uuid.clone();
    let mut outcomes = match prepare(ctx, backend, order).await {
        Stage::Finished(outcome) => return outcome,
        Stage::NeedsCreate(pending) => run_creates(ctx, backend, vec![*pending]).await,
        Stage::NeedsDelete(pending) => run_deletes(ctx, backend, vec![*pending]).await,
    };
    outcomes
        .pop()
        .map(|(_, outcome)| outcome)
        .unwrap_or_else(|| OrderOutcome::Retry(format!("order {uuid} was not processed")))
}

async fn prepare(ctx: &OfferingContext, backend: &Arc<dyn OrderBackend>, order: Order) -> Stage {
    let mut started = false;
    match prepare_inner(ctx, backend, &order, &mut started).await {
        Ok(stage) => stage,
        Err(e) => Stage::Finished(handle_error(ctx, &order, e, started).await),
    }
}

async fn prepare_inner(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    order: &Order,
    started: &mut bool,
) -> CoreResult<Stage> {
    match &order.state {
        OrderState::Executing => {}
        OrderState::PendingProvider => {
            if let Some(reason) = refused_pending_limits(backend.as_ref(), order) {
                let reason = ctx.settings.redactor.scrub(&reason);
                ctx.client
                    .reject_order_by_provider(&order.uuid, Some(&reason))
                    .await?;
                tracing::warn!(order = %order.uuid, reason = %reason, "order rejected: limits refused");
                return Ok(Stage::Finished(OrderOutcome::Rejected));
            }
            match backend.evaluate_pending_order(&order_view(order)).await? {
                PendingOrderDecision::Accept => {
                    // The approve answer is enough: the order is executing now, no re-GET.
                    ctx.client.approve_order_by_provider(&order.uuid).await?;
                    tracing::info!(order = %order.uuid, "order approved");
                }
                PendingOrderDecision::Reject => {
                    ctx.client
                        .reject_order_by_provider(&order.uuid, None)
                        .await?;
                    tracing::info!(order = %order.uuid, "order rejected");
                    return Ok(Stage::Finished(OrderOutcome::Rejected));
                }
                PendingOrderDecision::KeepPending => {
                    tracing::info!(order = %order.uuid, "order kept pending");
                    return Ok(Stage::Finished(OrderOutcome::KeptPending));
                }
            }
        }
        other => {
            return Ok(Stage::Finished(OrderOutcome::Skipped(format!(
                "order is {other}"
            ))));
        }
    }
    *started = true;
    match order.order_type {
        OrderType::Create | OrderType::Restore => prepare_create(ctx, backend, order).await,
        OrderType::Update => {
            if let Some(outcome) = not_executing_now(ctx, order).await? {
                return Ok(Stage::Finished(outcome));
            }
            update(ctx, backend, order).await?;
            crate::legacy::allocation_ok(ctx, resource_uuid(order)?).await;
            Ok(Stage::Finished(finalize(ctx, order).await?))
        }
        OrderType::Terminate => {
            if let Some(outcome) = not_executing_now(ctx, order).await? {
                return Ok(Stage::Finished(outcome));
            }
            let resource = crate::legacy::with_order_slugs(
                ctx.client.get_resource(resource_uuid(order)?, &[]).await?,
                order,
            );
            let view = resource_view(&resource);
            if view.backend_id.is_empty() {
                tracing::info!(order = %order.uuid, "resource has no backend id; nothing to delete");
                return Ok(Stage::Finished(finalize(ctx, order).await?));
            }
            Ok(Stage::NeedsDelete(Box::new(PendingDelete {
                order: order.clone(),
                view,
            })))
        }
        OrderType::Unknown(ref t) => Ok(Stage::Finished(OrderOutcome::Skipped(format!(
            "unknown order type '{t}'"
        )))),
    }
}

/// A pending Create/Update whose limits the site cannot take: the reason to reject it with
/// (see [`crate::limits`]).
fn refused_pending_limits(backend: &dyn OrderBackend, order: &Order) -> Option<String> {
    if !matches!(order.order_type, OrderType::Create | OrderType::Update) {
        return None;
    }
    let view = order_view(order);
    let resource = ResourceView {
        limits: view.limits.clone(),
        attributes: view.attributes.clone(),
        ..ResourceView::default()
    };
    crate::limits::check_order_limits(backend, &resource, &view.limits, &[])
        .err()
        .map(|e| e.to_string())
}

async fn handle_error(
    ctx: &OfferingContext,
    order: &Order,
    error: CoreError,
    provisioning_started: bool,
) -> OrderOutcome {
    let message = error.to_string();
    if error.is_transient() {
        tracing::warn!(order = %order.uuid, error = %message, "transient failure; keeping order state for a later cycle");
        return OrderOutcome::Retry(message);
    }
    if !provisioning_started {
        tracing::error!(order = %order.uuid, error = %message, "order failed before provisioning; left pending");
        return OrderOutcome::Failed(message);
    }
    let (waldur_message, traceback) = ctx.error_details(&error);
    if let Err(e) = ctx
        .client
        .set_order_erred(&order.uuid, &waldur_message, &traceback)
        .await
    {
        tracing::error!(order = %order.uuid, error = %e, "could not set order erred");
    }
    tracing::error!(order = %order.uuid, error = %message, "order erred");
    OrderOutcome::Erred(message)
}

/// Re-read an Update or Terminate order before the site is changed: Waldur may have erred or
/// canceled it meanwhile — a Mastermind from 2024 errs an Update itself right after approving it
/// when its SLURM allocation is not OK. `Some` (nothing applied) when it is no longer executing.
async fn not_executing_now(
    ctx: &OfferingContext,
    order: &Order,
) -> CoreResult<Option<OrderOutcome>> {
    let fresh = ctx
        .client
        .get_order(&order.uuid, &["uuid", "state", "error_message"])
        .await?;
    if fresh.state == OrderState::Executing {
        return Ok(None);
    }
    tracing::warn!(order = %order.uuid, kind = %order.order_type, state = %fresh.state, error = %fresh.error_message, "order no longer executing in Waldur; the site is left as it is");
    Ok(Some(OrderOutcome::Skipped(format!(
        "order is {} in Waldur",
        fresh.state
    ))))
}

/// Re-read the state; `set_state_done` only when Waldur still has the order executing.
async fn finalize(ctx: &OfferingContext, order: &Order) -> CoreResult<OrderOutcome> {
    let refreshed = ctx
        .client
        .get_order(&order.uuid, &["uuid", "state"])
        .await?;
    if refreshed.state == OrderState::Executing {
        ctx.client.set_order_done(&order.uuid).await?;
        tracing::info!(order = %order.uuid, kind = %order.order_type, "order done");
        Ok(OrderOutcome::Done)
    } else {
        tracing::warn!(order = %order.uuid, state = %refreshed.state, "order no longer executing; not marking done");
        Ok(OrderOutcome::AppliedNotDone(format!(
            "order is {}",
            refreshed.state
        )))
    }
}

fn resource_uuid(order: &Order) -> CoreResult<&str> {
    order
        .target_resource_uuid()
        .ok_or_else(|| CoreError::invalid(format!("order {} has no resource", order.uuid)))
}

async fn plan_quotas(ctx: &OfferingContext, plan_uuid: Option<&str>) -> Limits {
    let Some(plan) = plan_uuid else {
        return Limits::new();
    };
    match ctx.client.get_plan(plan).await {
        Ok(plan) => limits_from_amounts(&plan.quotas)
            .into_iter()
            .filter(|(_, v)| *v != 0.0)
            .collect(),
        Err(e) => {
            tracing::warn!(plan = %plan, error = %e, "cannot read plan quotas");
            Limits::new()
        }
    }
}

async fn update(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    order: &Order,
) -> CoreResult<()> {
    let resource = ctx.client.get_resource(resource_uuid(order)?, &[]).await?;
    let view = resource_view(&resource);
    let mut new_limits = limits_from_amounts(&order.limits);
    if new_limits.is_empty() {
        new_limits = plan_quotas(ctx, order.plan_uuid.as_deref()).await;
    }
    if new_limits.is_empty() {
        tracing::warn!(order = %order.uuid, "update order without limits; nothing to apply");
        return Ok(());
    }
    // Refused limits err the order; the site keeps the limits it has.
    crate::limits::check_order_limits(
        backend.as_ref(),
        &view,
        &new_limits,
        &resource.offering_components,
    )?;
    if new_limits == view.limits {
        tracing::info!(order = %order.uuid, "limits unchanged");
        return Ok(());
    }
    backend.set_limits(&view, &new_limits).await?;
    Ok(())
}

/// How backend ids are chosen: `allocation_prefix + slug`, with retries on collisions.
#[derive(Clone, Debug)]
struct BackendIdPlan {
    /// The slug the first attempt uses (project slug or resource slug).
    base: String,
    /// `account_name_generation_policy: project_slug`.
    uses_project_slug: bool,
    check_uniqueness: bool,
    check_all_offerings: bool,
    max_attempts: u32,
    /// Candidates produced so far.
    attempt: u32,
    /// Candidates passed over because the cycle already knew them taken (another resource's id
    /// in Waldur, one given to another order of the cycle): they cost no check, so they do not
    /// count against `max_attempts`; sixty resources of one project still get sixty ids.
    skipped: u32,
}

impl BackendIdPlan {
    fn new(ctx: &OfferingContext, resource: &ProviderResource) -> Self {
        let use_project_slug = resource
            .offering_plugin_options
            .get("account_name_generation_policy")
            .and_then(|v| v.as_str())
            == Some("project_slug");
        let settings = &ctx.config.backend_settings;
        let check_uniqueness = truthy(settings.get("check_backend_id_uniqueness"));
        let max_retries = settings
            .get("backend_id_max_retries")
            .and_then(|v| v.as_u64())
            .map(|n| n.clamp(1, 1000) as u32)
            .unwrap_or(50);
        BackendIdPlan {
            uses_project_slug: use_project_slug,
            base: if use_project_slug {
                resource.project_slug.clone()
            } else {
                resource.slug.clone()
            },
            check_uniqueness,
            check_all_offerings: truthy(settings.get("check_all_offerings")),
            // Collisions are possible with project slugs (one project, many resources) and when
            // Waldur checks uniqueness; retries rename with a numeric suffix.
            max_attempts: if use_project_slug || check_uniqueness {
                max_retries
            } else {
                1
            },
            attempt: 0,
            skipped: 0,
        }
    }

    fn candidate_slug(&self) -> String {
        if self.attempt == 0 {
            self.base.clone()
        } else {
            // Suffix from the chosen policy's slug (upstream always used the project slug).
            format!("{}-{}", self.base, self.attempt - 1)
        }
    }

    fn exhausted(&self) -> bool {
        self.attempt.saturating_sub(self.skipped) >= self.max_attempts
    }
}

/// The plan's next candidate that the cycle does not already know taken (and that Waldur's
/// uniqueness check accepts, when configured). Fails when the plan runs out of candidates.
async fn next_free_id(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    plan: &mut BackendIdPlan,
    ledger: &IdLedger,
    resource_uuid: &str,
) -> CoreResult<String> {
    while !plan.exhausted() {
        let id = backend.backend_id_for(&plan.candidate_slug())?;
        plan.attempt += 1;
        if !ledger.is_free_for(&id, resource_uuid) {
            plan.skipped += 1;
            continue;
        }
        if !plan.check_uniqueness {
            return Ok(id);
        }
        match crate::features::optional(
            ctx,
            crate::features::endpoint::CHECK_UNIQUE_BACKEND_ID,
            "check_backend_id_uniqueness has no effect; the site and the offering's own ids are still checked",
            crate::features::Absence::Warn,
            ctx.client
                .check_unique_backend_id(&ctx.offering_uuid, &id, plan.check_all_offerings),
        )
        .await
        {
            Ok(Some(check)) if !check.is_unique => {
                tracing::info!(backend_id = %id, "backend id taken in Waldur; trying another");
                continue;
            }
            Ok(_) => return Ok(id),
            Err(e) => {
                // Upstream treats an unavailable check as "unique"; the site and the offering's
                // own ids are still checked.
                tracing::warn!(backend_id = %id, error = %e, "uniqueness check failed; assuming unique");
                return Ok(id);
            }
        }
    }
    Err(CoreError::Backend(BackendError::permanent(format!(
        "Unable to create resource: no free backend id after {} attempts",
        plan.max_attempts
    ))))
}

/// Team members whose offering users are OK with a username, and the offering users' data.
async fn user_grants(
    ctx: &OfferingContext,
    resource: &ProviderResource,
) -> CoreResult<Vec<UserGrant>> {
    let project = resource.project_uuid.clone().unwrap_or_default();
    let attempts = ctx
        .backends
        .orders
        .as_ref()
        .map(|b| b.capabilities().team_fetch_attempts.max(1))
        .unwrap_or(1);
    let mut team = ctx.team(&resource.uuid, &project).await?;
    for _ in 1..attempts {
        if !team.is_empty() {
            break;
        }
        // Waldur may not have committed the team when the create event arrives.
        tokio::time::sleep(Duration::from_secs(3)).await;
        team = ctx.team(&resource.uuid, &project).await?;
    }
    if team.is_empty() {
        return Ok(Vec::new());
    }
    let mut offering_users = ctx.offering_users().await?;
    let team_uuids: Vec<&str> = team.iter().map(|m| m.uuid.as_str()).collect();
    let needs_username: Vec<_> = offering_users
        .iter()
        .filter(|u| team_uuids.contains(&u.user_uuid.as_str()))
        .filter(|u| {
            matches!(
                u.state,
                OfferingUserState::Requested
                    | OfferingUserState::Creating
                    | OfferingUserState::ErrorCreating
                    | OfferingUserState::PendingAccountLinking
                    | OfferingUserState::PendingAdditionalValidation
            )
        })
        .cloned()
        .collect();
    if !needs_username.is_empty() && usernames::update_offering_users(ctx, &needs_username).await? {
        ctx.invalidate_offering_users().await;
        offering_users = ctx.offering_users().await?;
    }
    let mut grants = Vec::new();
    for member in team.iter() {
        let ou = offering_users.iter().find(|u| u.user_uuid == member.uuid);
        // The same rule as membership sync, so a Create never grants what the next membership
        // cycle takes away (or the other way round).
        if let Some(username) = crate::members::site_username(member, ou) {
            grants.push(user_grant(member, ou, &username, ctx.grant_attributes(ou)));
        }
    }
    Ok(grants)
}

async fn prepare_create(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    order: &Order,
) -> CoreResult<Stage> {
    // A Mastermind from 2024 sends resources without project and customer slugs: the order's.
    let resource = crate::legacy::with_order_slugs(
        ctx.client.get_resource(resource_uuid(order)?, &[]).await?,
        order,
    );
    let view = resource_view(&resource);
    // Before any site call: refused limits err the order with nothing created.
    crate::limits::check_order_limits(
        backend.as_ref(),
        &view,
        &view.limits,
        &resource.offering_components,
    )?;
    let mut ids = BackendIdPlan::new(ctx, &resource);
    if view.backend_id.is_empty() && ids.base.trim().is_empty() {
        // Validated before anything is reserved or recorded: an empty slug would give every
        // such order the bare prefix as its id.
        return Err(CoreError::invalid(format!(
            "cannot name the site account: neither the resource nor order {} has a {} slug",
            order.uuid,
            if ids.uses_project_slug {
                "project"
            } else {
                "resource"
            }
        )));
    }
    let (backend_id, reused_id) = if view.backend_id.is_empty() {
        // Picked by `reserve_ids`, together with every other Create of the cycle.
        (String::new(), false)
    } else if let Some(existing) = backend.pull_resource(&view).await? {
        // Already on the site: done without re-creating (post-create hooks are not idempotent).
        tracing::info!(order = %order.uuid, backend_id = %view.backend_id, "resource already exists on the site");
        if order.order_type == OrderType::Restore
            && !view.limits.is_empty()
            && existing.limits != view.limits
        {
            // A soft-deleted resource keeps its account with zeroed limits: restoring it means
            // giving the limits back.
            tracing::info!(order = %order.uuid, backend_id = %view.backend_id, "restoring the resource's limits on the site");
            backend.set_limits(&view, &view.limits).await?;
        }
        crate::legacy::allocation_ok(ctx, &view.uuid).await;
        let outcome = finalize(ctx, order).await?;
        add_users_after_create(ctx, backend, &resource, &view).await;
        return Ok(Stage::Finished(outcome));
    } else {
        // Known id the site lacks: re-create with the same id (restore).
        ids.max_attempts = 0;
        (view.backend_id.clone(), true)
    };
    let users = match user_grants(ctx, &resource).await {
        Ok(users) => users,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            tracing::warn!(order = %order.uuid, error = %e, "cannot read the team; creating without users");
            Vec::new()
        }
    };
    let plan_quotas = if view.limits.is_empty() {
        plan_quotas(ctx, view.plan_uuid.as_deref()).await
    } else {
        Limits::new()
    };
    let ssh_keys = if users.is_empty() {
        Default::default()
    } else {
        (*ctx.ssh_keys().await).clone()
    };
    let view_backend_id = view.backend_id.clone();
    let request = CreateRequest {
        resource: view.clone(),
        backend_id,
        context: UserContext {
            users,
            plan_quotas,
            ssh_keys,
        },
    };
    Ok(Stage::NeedsCreate(Box::new(PendingCreate {
        order: order.clone(),
        view,
        request,
        ids,
        reused_id,
        recorded_id: reused_id.then(|| view_backend_id.clone()),
    })))
}

/// Backend ids a cycle may not give to a new resource. One site object per resource: an id is
/// given only when no other live resource of the offering holds it in Waldur, the site does not
/// have it, and no other order of the cycle took it.
#[derive(Default)]
struct IdLedger {
    /// Lower-case id → uuid of the live resource of the offering that holds it in Waldur;
    /// read once per cycle, when the first new id is needed.
    in_waldur: Option<BTreeMap<String, String>>,
    /// Lower-case ids the site has.
    on_site: BTreeSet<String>,
    /// Lower-case id → uuid of the resource this cycle gave it to.
    claimed: BTreeMap<String, String>,
}

impl IdLedger {
    fn is_free_for(&self, id: &str, resource_uuid: &str) -> bool {
        let key = id.to_lowercase();
        let held_by_other = |holder: Option<&String>| holder.is_some_and(|h| h != resource_uuid);
        !self.on_site.contains(&key)
            && !held_by_other(self.claimed.get(&key))
            && !held_by_other(self.in_waldur.as_ref().and_then(|ids| ids.get(&key)))
    }

    fn claim(&mut self, id: &str, resource_uuid: &str) {
        self.claimed
            .insert(id.to_lowercase(), resource_uuid.to_owned());
    }

    /// The site has `id`: nobody in this cycle may take it.
    fn taken_on_site(&mut self, id: &str) {
        let key = id.to_lowercase();
        self.claimed.remove(&key);
        self.on_site.insert(key);
    }
}

/// Backend ids recorded for the offering's live (not terminated) resources.
async fn waldur_backend_ids(ctx: &OfferingContext) -> CoreResult<BTreeMap<String, String>> {
    let resources = ctx
        .client
        .list_resources(&ResourceFilter {
            offering_uuid: Some(ctx.offering_uuid.clone()),
            fields: vec!["uuid", "backend_id", "state"],
            ..ResourceFilter::default()
        })
        .await?;
    Ok(resources
        .into_iter()
        .filter(|r| r.state != ResourceState::Terminated && !r.backend_id.trim().is_empty())
        .map(|r| (r.backend_id.trim().to_lowercase(), r.uuid))
        .collect())
}

/// Give every new Create a backend id that is free everywhere, then record it in Waldur before
/// the site create (a failure after the create then never leaves an account Waldur does not
/// know about). All candidates of a round go to the site in one `check_ids` call; taken ones
/// move on to their next candidate. Each round uses up a candidate of every order still
/// looking, so the plans' limits bound the loop, and nothing is recorded while it collides.
async fn reserve_ids(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    creates: Vec<PendingCreate>,
    ledger: &mut IdLedger,
) -> Reservation {
    let mut failed = Vec::new();
    let mut last_check = None;
    let (mut reserved, mut todo): (Vec<PendingCreate>, Vec<PendingCreate>) =
        creates.into_iter().partition(|p| p.reused_id);
    for p in &reserved {
        ledger.claim(&p.request.backend_id, &p.view.uuid);
    }
    if !todo.is_empty() && ledger.in_waldur.is_none() {
        match waldur_backend_ids(ctx).await {
            Ok(ids) => ledger.in_waldur = Some(ids),
            Err(e) => {
                // Nothing reserved, nothing on the site: the orders wait for the next cycle.
                let message = format!("cannot list the offering's backend ids: {e}");
                for p in todo.drain(..) {
                    let error = BackendError::transient(message.clone());
                    let outcome = handle_error(ctx, &p.order, error.into(), true).await;
                    failed.push((p.order.uuid.clone(), outcome));
                }
            }
        }
    }
    while !todo.is_empty() {
        let mut asking = Vec::new();
        for mut p in todo.drain(..) {
            match next_free_id(ctx, backend, &mut p.ids, ledger, &p.view.uuid).await {
                Ok(id) => {
                    ledger.claim(&id, &p.view.uuid);
                    p.request.backend_id = id;
                    asking.push(p);
                }
                Err(e) => {
                    let outcome = handle_error(ctx, &p.order, e, true).await;
                    failed.push((p.order.uuid.clone(), outcome));
                }
            }
        }
        if asking.is_empty() {
            break;
        }
        let requests: Vec<CreateRequest> = asking.iter().map(|p| p.request.clone()).collect();
        let existing = match backend.check_ids(&requests).await {
            Ok(check) => {
                let existing = check.existing.clone();
                last_check = Some(check);
                existing
            }
            Err(e) if e.is_transient() => {
                let message = e.to_string();
                for p in asking.drain(..) {
                    let error = BackendError::transient(message.clone());
                    let outcome = handle_error(ctx, &p.order, error.into(), true).await;
                    failed.push((p.order.uuid.clone(), outcome));
                }
                break;
            }
            Err(e) => {
                // One odd request can break a shared read: ask for each alone before erring
                // anyone, so only the order at fault fails.
                tracing::warn!(error = %e, "shared existence check failed; checking each order alone");
                let mut existing = BTreeSet::new();
                let mut answered = Vec::new();
                for p in asking.drain(..) {
                    match backend.check_ids(std::slice::from_ref(&p.request)).await {
                        Ok(check) => {
                            existing.extend(check.existing);
                            answered.push(p);
                        }
                        Err(e) => {
                            let outcome = handle_error(ctx, &p.order, e.into(), true).await;
                            failed.push((p.order.uuid.clone(), outcome));
                        }
                    }
                }
                asking = answered;
                existing
            }
        };
        for mut p in asking {
            if existing.contains(&p.request.backend_id) {
                tracing::info!(backend_id = %p.request.backend_id, "backend id taken on the site; trying the next one");
                ledger.taken_on_site(&p.request.backend_id);
                p.request.backend_id.clear();
                todo.push(p);
            } else {
                reserved.push(p);
            }
        }
    }
    let concurrency = ctx.settings.order_concurrency.max(1);
    let recorded: Vec<Result<PendingCreate, (String, OrderOutcome)>> =
        futures::stream::iter(reserved)
            .map(|mut p| async move {
                if p.recorded_id.as_deref() == Some(p.request.backend_id.as_str()) {
                    return Ok(p);
                }
                match ctx
                    .client
                    .set_resource_backend_id(&p.view.uuid, &p.request.backend_id)
                    .await
                {
                    Ok(()) => {
                        p.recorded_id = Some(p.request.backend_id.clone());
                        Ok(p)
                    }
                    Err(e) => {
                        let outcome = handle_error(ctx, &p.order, e.into(), true).await;
                        Err((p.order.uuid.clone(), outcome))
                    }
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut ready = Vec::new();
    for r in recorded {
        match r {
            Ok(p) => ready.push(p),
            Err(f) => failed.push(f),
        }
    }
    Reservation {
        ready,
        failed,
        check: last_check,
    }
}

/// What [`reserve_ids`] leaves: the creates with their ids recorded in Waldur, the orders that
/// failed on the way, and the site check of the last round (the create may reuse its reads).
struct Reservation {
    ready: Vec<PendingCreate>,
    failed: Vec<(String, OrderOutcome)>,
    check: Option<SiteCheck>,
}

/// Creates, start to finish: reserve ids, one batched site call, record the results. An id the
/// site turns out to have after all (`Duplicate`) is marked taken and its order goes round
/// again with its next candidate; it is never shared.
async fn run_creates(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    creates: Vec<PendingCreate>,
) -> Vec<(String, OrderOutcome)> {
    let concurrency = ctx.settings.order_concurrency.max(1);
    let mut results = Vec::new();
    let mut ledger = IdLedger::default();
    let mut todo = creates;
    while !todo.is_empty() {
        let Reservation {
            ready,
            failed,
            check,
        } = reserve_ids(ctx, backend, std::mem::take(&mut todo), &mut ledger).await;
        results.extend(failed);
        if ready.is_empty() {
            break;
        }
        let requests = ready.iter().map(|p| p.request.clone()).collect();
        let created = match check {
            Some(check) => backend.create_checked(requests, check).await,
            None => backend.create_resources(requests).await,
        };
        let mut created = created.into_iter();
        let mut paired = Vec::new();
        for mut pending in ready {
            let result = created.next().unwrap_or_else(|| {
                Err(BackendError::permanent(
                    "backend returned fewer results than requests",
                ))
            });
            match result {
                Err(BackendError::Duplicate { backend_id }) => {
                    tracing::info!(backend_id = %backend_id, order = %pending.order.uuid, "backend id exists on the site; trying the next one");
                    ledger.taken_on_site(&backend_id);
                    ledger.taken_on_site(&pending.request.backend_id);
                    pending.request.backend_id.clear();
                    pending.reused_id = false;
                    todo.push(pending);
                }
                other => paired.push((pending, other)),
            }
        }
        let completed: Vec<(String, OrderOutcome)> = futures::stream::iter(paired)
            .map(|(pending, result)| async move {
                let uuid = pending.order.uuid.clone();
                (uuid, complete_create(ctx, backend, pending, result).await)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        results.extend(completed);
    }
    results
}

/// Terminates: one batched removal; an order is done only when the backend confirmed its
/// resource gone from the site.
async fn run_deletes(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    deletes: Vec<PendingDelete>,
) -> Vec<(String, OrderOutcome)> {
    if deletes.is_empty() {
        return Vec::new();
    }
    let views: Vec<ResourceView> = deletes.iter().map(|d| d.view.clone()).collect();
    let mut removed = backend.delete_resources(&views).await.into_iter();
    let paired: Vec<(PendingDelete, Result<(), BackendError>)> = deletes
        .into_iter()
        .map(|d| {
            let result = removed.next().unwrap_or_else(|| {
                Err(BackendError::permanent(
                    "backend returned fewer results than requests",
                ))
            });
            (d, result)
        })
        .collect();
    let concurrency = ctx.settings.order_concurrency.max(1);
    futures::stream::iter(paired)
        .map(|(pending, result)| async move {
            let uuid = pending.order.uuid.clone();
            let outcome = match result {
                Ok(()) => match finalize(ctx, &pending.order).await {
                    Ok(outcome) => outcome,
                    Err(e) => handle_error(ctx, &pending.order, e, true).await,
                },
                Err(e) => handle_error(ctx, &pending.order, e.into(), true).await,
            };
            (uuid, outcome)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn complete_create(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    pending: PendingCreate,
    result: Result<BackendResourceInfo, BackendError>,
) -> OrderOutcome {
    match record_create(ctx, &pending, result).await {
        Ok(outcome) => {
            if outcome == OrderOutcome::Done {
                let mut view = pending.view.clone();
                view.backend_id = pending.request.backend_id.clone();
                if !pending.request.context.users.is_empty() {
                    if let Err(e) = backend
                        .add_users_after_create(&view, &pending.request.context.users)
                        .await
                    {
                        // The order is done in Waldur; membership sync will add them later.
                        tracing::warn!(order = %pending.order.uuid, error = %e, "adding users after create failed");
                    }
                }
                grant_project_accounts(ctx, backend, &view).await;
            }
            outcome
        }
        Err(e) => handle_error(ctx, &pending.order, e, true).await,
    }
}

async fn record_create(
    ctx: &OfferingContext,
    pending: &PendingCreate,
    result: Result<BackendResourceInfo, BackendError>,
) -> CoreResult<OrderOutcome> {
    let info = result?;
    let backend_id = if info.backend_id.trim().is_empty() {
        pending.request.backend_id.clone()
    } else {
        info.backend_id.clone()
    };
    let resource_uuid = &pending.view.uuid;
    if pending.recorded_id.as_deref() != Some(backend_id.as_str()) {
        ctx.client
            .set_resource_backend_id(resource_uuid, &backend_id)
            .await?;
    }
    if !info.limits.is_empty() && info.limits != pending.view.limits {
        crate::features::optional(
            ctx,
            crate::features::endpoint::SET_LIMITS,
            "limits read back from the site are not recorded in Waldur (Waldur keeps the ordered ones)",
            crate::features::Absence::Warn,
            ctx.client.set_resource_limits(resource_uuid, &info.limits),
        )
        .await?;
    }
    if !info.backend_metadata.is_empty() && info.backend_metadata != pending.view.backend_metadata {
        if let Err(e) = ctx
            .client
            .set_resource_backend_metadata(resource_uuid, &info.backend_metadata)
            .await
        {
            tracing::warn!(resource = %resource_uuid, error = %e, "cannot set backend metadata");
        }
    }
    if !info.endpoints.is_empty() {
        let endpoints: Vec<EndpointItem> = info
            .endpoints
            .iter()
            .map(|e| EndpointItem {
                name: e.name.clone(),
                url: e.url.clone(),
            })
            .collect();
        if let Err(e) = crate::features::optional(
            ctx,
            crate::features::endpoint::SET_ENDPOINTS,
            "resource endpoints are not shown in Waldur",
            crate::features::Absence::Info,
            ctx.client.set_resource_endpoints(resource_uuid, &endpoints),
        )
        .await
        {
            tracing::warn!(resource = %resource_uuid, error = %e, "cannot set endpoints");
        }
    }
    crate::legacy::allocation_ok(ctx, resource_uuid).await;
    finalize(ctx, &pending.order).await
}

/// Idempotent-create path: make sure the team has access (failures only logged).
async fn add_users_after_create(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    resource: &ProviderResource,
    view: &ResourceView,
) {
    match user_grants(ctx, resource).await {
        Ok(users) if !users.is_empty() => {
            if let Err(e) = backend.add_users_after_create(view, &users).await {
                tracing::warn!(resource = %resource.uuid, error = %e, "adding users failed");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(resource = %resource.uuid, error = %e, "cannot read the team"),
    }
    grant_project_accounts(ctx, backend, view).await;
}

/// After a create: give the project's service and course accounts access (§3.3.5). Best-effort:
/// failures are logged, the order stays done, membership sync catches up.
async fn grant_project_accounts(
    ctx: &OfferingContext,
    backend: &Arc<dyn OrderBackend>,
    view: &ResourceView,
) {
    if view.restrict_member_access || view.project_uuid.is_empty() {
        return;
    }
    let accounts = ctx.accounts().await;
    let grants: Vec<UserGrant> = accounts
        .usernames(&view.project_uuid, "OK")
        .into_iter()
        .map(|username| UserGrant {
            username,
            ..UserGrant::default()
        })
        .collect();
    if grants.is_empty() {
        return;
    }
    if let Err(e) = backend.add_users_after_create(view, &grants).await {
        tracing::warn!(resource = %view.uuid, error = %e, "adding service/course accounts failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: usize, resource: &str) -> Order {
        Order {
            uuid: format!("o{n}"),
            marketplace_resource_uuid: Some(resource.to_owned()),
            ..Order::default()
        }
    }

    #[test]
    fn passes_are_bounded_and_keep_a_resources_orders_together_in_order() {
        // 600 orders, one per resource, and resource "x" with orders at 10, 300 and 590.
        let orders: Vec<Order> = (0..600)
            .map(|n| {
                let r = if [10, 300, 590].contains(&n) {
                    "x".to_owned()
                } else {
                    format!("r{n}")
                };
                order(n, &r)
            })
            .collect();
        let passes = split_into_passes(orders, 250);
        assert!(
            passes.iter().all(|p| p.len() <= 250),
            "{:?}",
            passes.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(passes.iter().map(Vec::len).sum::<usize>(), 600);
        let x: Vec<(usize, String)> = passes
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.iter()
                    .filter(|o| o.target_resource_uuid() == Some("x"))
                    .map(move |o| (i, o.uuid.clone()))
            })
            .collect();
        assert_eq!(
            x,
            [(0, "o10".into()), (0, "o300".into()), (0, "o590".into())]
        );
        // A resource with more orders than a pass holds gets them all in one pass.
        let many: Vec<Order> = (0..5).map(|n| order(n, "y")).collect();
        assert_eq!(split_into_passes(many, 2).len(), 1);
    }
}
