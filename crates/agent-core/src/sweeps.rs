//! Event-mode reconciliation sweeps (agent-behaviour §3.4.5): events are fire-and-forget, so
//! what a lost message left behind is picked up periodically (default every 60 minutes).
//! Each sweep covers one offering and returns a [`CycleReport`]; the caller isolates offerings.
//!
//! The event mode's reconciliation pass (the binary's `reconcile`) runs these plus a full order
//! and membership pass; the membership pass also moves projects whose customer changed
//! (`MembershipBackend::sync_projects`: Waldur sends no event for that).
//!
//! Not here, on purpose: the username-reconciliation sweep (`sync_offering_user_usernames` is a
//! federation hook no backend of ours has) and the API-key sweep (no backend supports resource
//! API keys).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use waldur_client::{OfferingUserFilter, OfferingUserState, OrderState};

use crate::context::OfferingContext;
use crate::error::CycleReport;
use crate::usernames;

/// Orders untouched for this long are considered stuck (upstream: 30 minutes).
pub const STUCK_ORDER_AGE: Duration = Duration::from_secs(30 * 60);

/// The offering-user states a lost event can leave a user in.
pub const STUCK_OFFERING_USER_STATES: &[OfferingUserState] = &[
    OfferingUserState::Requested,
    OfferingUserState::Creating,
    OfferingUserState::ErrorCreating,
    OfferingUserState::PendingAccountLinking,
    OfferingUserState::PendingAdditionalValidation,
];

/// `modified_before` value for "older than `age`": UTC, whole seconds, `+00:00` offset (the
/// form Mastermind's date filters parse).
pub fn modified_before(now: Timestamp, age: Duration) -> String {
    let age = SignedDuration::try_from(age).unwrap_or(SignedDuration::MAX);
    let cutoff = now.checked_sub(age).unwrap_or(Timestamp::MIN);
    cutoff.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Orders of the offering still `pending-provider` or `executing` and not modified for
/// `older_than`: processed exactly as a polling cycle would. No order backend → nothing.
pub async fn stuck_orders(ctx: &OfferingContext, older_than: Duration) -> CycleReport {
    let mut report = CycleReport::new(ctx.name());
    if ctx.backends.orders.is_none() {
        return report;
    }
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let before = modified_before(Timestamp::now(), older_than);
    let orders = match ctx
        .client
        .list_orders(
            &ctx.offering_uuid,
            &[OrderState::PendingProvider, OrderState::Executing],
            Some(&before),
        )
        .await
    {
        Ok(orders) => orders,
        Err(e) => {
            report.fail("list stuck orders", e);
            return report;
        }
    };
    if orders.is_empty() {
        return report;
    }
    tracing::info!(offering = %ctx.name(), count = orders.len(), "processing stuck orders");
    crate::orders::process_order_list(ctx, orders).await
}

/// Offering users stuck before OK (Requested, Creating, Error creating, Pending …) go through
/// the username state machine again. Only for offerings with a membership backend.
pub async fn stuck_offering_users(ctx: &OfferingContext) -> CycleReport {
    let mut report = CycleReport::new(ctx.name());
    if ctx.backends.membership.is_none() {
        return report;
    }
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let filter = OfferingUserFilter {
        offering_uuid: Some(ctx.offering_uuid.clone()),
        states: STUCK_OFFERING_USER_STATES.to_vec(),
        is_restricted: Some(false),
        ..OfferingUserFilter::default()
    };
    let users = match ctx.client.list_offering_users(&filter).await {
        Ok(users) => users,
        Err(e) => {
            report.fail("list offering users", e);
            return report;
        }
    };
    match usernames::run_state_machine(ctx, &users).await {
        Ok(run) => run_into_report(&mut report, &run),
        Err(e) => report.fail("username state machine", e),
    }
    report
}

pub(crate) fn run_into_report(report: &mut CycleReport, run: &usernames::UsernameRun) {
    report.processed += run.considered.saturating_sub(run.errors.len());
    for (user, error) in &run.errors {
        report.fail(&format!("offering user {user}"), error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_before_is_utc_whole_seconds() {
        let now: Timestamp = "2026-03-01T00:10:30.123456Z".parse().expect("timestamp");
        assert_eq!(
            modified_before(now, Duration::from_secs(30 * 60)),
            "2026-02-28T23:40:30+00:00"
        );
    }
}
