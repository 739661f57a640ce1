//! `report` (agent-behaviour §3.2): usage of every resource of the offering for the configured
//! billing months, oldest first, in Waldur units (unit conversion is the backend's job).
//!
//! - one `usage_report` call per billing month for all resources (batch), and one listing of
//!   the usage records Waldur has for the whole offering and month; resources are then
//!   submitted concurrently (bounded by `order_concurrency`);
//! - amounts rounded to two decimals; unchanged usage is not re-sent;
//! - usage may only go down when the backend says so (anomaly check excludes records that are
//!   parents of per-user usage);
//! - if the month changes while usage is pulled, the current month is skipped this cycle;
//! - a past month rejected with "backfilling past billing periods" is expected (info log);
//! - zero usage is not reported for a month that ended before the resource was created;
//! - the cycle's cost is the changes: usage Waldur confirmed is remembered per resource and month
//!   (a fingerprint in the long-lived `Offering`), and a month in which no resource's usage
//!   changed since is neither listed nor sent. A restart lists everything once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_api::{BillingPeriod, UsageBackend, UsageReport};
use futures::stream::{self, StreamExt};
use jiff::Zoned;
use waldur_client::{
    ComponentUsage, ListingFingerprint, ProviderResource, ResourceFilter, ResourceState, UsageItem,
    UserUsageItem, format_amount, round2, uuid_from_url,
};

use crate::context::OfferingContext;
use crate::error::{CoreError, CoreResult, CycleReport};

/// Fields the report cycle reads from each resource.
pub const REPORT_RESOURCE_FIELDS: &[&str] = &[
    "uuid",
    "backend_id",
    "name",
    "slug",
    "state",
    "project_uuid",
    "project_slug",
    "customer_slug",
    "limits",
    "backend_metadata",
    "attributes",
    "offering_plugin_options",
    "offering_backend_id",
    "created",
];

/// A stable fingerprint of what would be sent for one resource and month (rounded totals of the
/// offering's components and rounded per-user usage).
fn usage_fingerprint(report: &UsageReport, known_components: &BTreeSet<String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (component, amount) in report
        .total
        .iter()
        .filter(|(c, _)| known_components.contains(*c))
    {
        component.hash(&mut hasher);
        round2(*amount).to_bits().hash(&mut hasher);
    }
    for (user, amounts) in &report.per_user {
        user.hash(&mut hasher);
        for (component, amount) in amounts {
            component.hash(&mut hasher);
            round2(*amount).to_bits().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Nothing used at all.
fn is_zero(report: &UsageReport) -> bool {
    report.total.values().all(|v| round2(*v) == 0.0)
        && report
            .per_user
            .values()
            .all(|u| u.values().all(|v| round2(*v) == 0.0))
}

/// Whether the resource existed before `period` ended (unknown creation date: assume so).
fn existed_in(resource: &waldur_client::ProviderResource, period: &BillingPeriod) -> bool {
    let Some(created) = resource.created.as_deref() else {
        return true;
    };
    match created.parse::<jiff::Timestamp>() {
        Ok(created) => created < period.end().timestamp(),
        Err(_) => true,
    }
}

const BACKFILL_MARKER: &str = "backfilling past billing periods";

/// Waldur closed the past month: expected, and final.
fn is_backfill_refusal(e: &CoreError) -> bool {
    matches!(e, CoreError::Waldur(w) if w.status == Some(400) && w.body_contains(BACKFILL_MARKER))
}

/// The billing months to report: `count` months ending with the one containing `now`,
/// oldest first.
pub fn reporting_periods(now: &Zoned, count: u32) -> Vec<BillingPeriod> {
    let mut periods = vec![BillingPeriod::containing(now)];
    for _ in 1..count.max(1) {
        let previous = periods[0].previous();
        periods.insert(0, previous);
    }
    periods
}

/// `YYYY-MM-01T00:00:00±hh:mm` in the period's timezone (upstream reports the 1st of the month
/// for every period, the current one included).
pub fn report_date(period: &BillingPeriod) -> String {
    period.start().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// Whether the amounts to send equal what Waldur already has (same set of component types,
/// each within 1e-6 absolute / 1e-9 relative; duplicates or unparsable values → not equal).
pub fn usage_matches_existing(new: &BTreeMap<String, f64>, existing: &[ComponentUsage]) -> bool {
    let mut seen: BTreeMap<&str, f64> = BTreeMap::new();
    for record in existing {
        let Some(value) = record.usage else {
            return false;
        };
        if seen.insert(record.component_type.as_str(), value).is_some() {
            return false;
        }
    }
    if seen.len() != new.len() {
        return false;
    }
    new.iter().all(|(k, v)| {
        seen.get(k.as_str())
            .is_some_and(|old| same_amount(*old, *v))
    })
}

/// Equal within 1e-6 absolute / 1e-9 relative: what Waldur stores back as the amount we sent.
fn same_amount(old: f64, new: f64) -> bool {
    let diff = (old - new).abs();
    diff <= 1e-6 || diff <= 1e-9 * old.abs().max(new.abs())
}

/// One report cycle for the offering.
pub async fn report(ctx: &OfferingContext) -> CycleReport {
    let this_run = ctx.new_run();
    let ctx = &this_run;
    let mut cycle = CycleReport::new(ctx.name());
    let Some(backend) = ctx.backends.usage.clone() else {
        tracing::info!(offering = %ctx.name(), "no reporting_backend; skipping");
        return cycle;
    };
    if let Err(e) = run(ctx, backend.as_ref(), &mut cycle).await {
        cycle.fail("report", e);
    }
    cycle
}

async fn run(
    ctx: &OfferingContext,
    backend: &dyn UsageBackend,
    cycle: &mut CycleReport,
) -> CoreResult<()> {
    let offering = ctx.offering().await?;
    let known_components: BTreeSet<String> = offering
        .components
        .iter()
        .map(|c| c.component_type.clone())
        .collect();
    let filter = ResourceFilter {
        offering_uuid: Some(ctx.offering_uuid.clone()),
        states: vec![ResourceState::Ok, ResourceState::Erred],
        fields: REPORT_RESOURCE_FIELDS.to_vec(),
        ..ResourceFilter::default()
    };
    let resources = reportable_resources(ctx, &filter).await?;
    if resources.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = resources
        .iter()
        .map(|r| r.backend_id.trim().to_owned())
        .collect();
    let decreasing_ok = backend.capabilities().supports_decreasing_usage;

    let now = Zoned::now().with_time_zone(ctx.settings.timezone.clone());
    let periods =
        periods_the_server_takes(ctx, reporting_periods(&now, ctx.settings.reporting_periods))
            .await;
    // Resources whose current month failed or was anomalous: remembered for the tally.
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for period in &periods {
        let is_current = period == periods.last().unwrap_or(period);
        let before = Zoned::now().with_time_zone(ctx.settings.timezone.clone());
        let usage = match backend.usage_report(&ids, period).await {
            Ok(usage) => usage,
            Err(e) if !is_current => {
                tracing::warn!(offering = %ctx.name(), period = %period.first_day(), error = %e, "no usage for past period");
                continue;
            }
            Err(e) => return Err(CoreError::Backend(e)),
        };
        let after = Zoned::now().with_time_zone(ctx.settings.timezone.clone());
        if is_current && (before.year(), before.month()) != (after.year(), after.month()) {
            tracing::warn!(offering = %ctx.name(), "billing month changed while pulling usage; skipping current month this cycle");
            continue;
        }
        let billing_period = period.first_day().to_string();
        // Only resources that existed in the month and whose usage changed since Waldur last
        // confirmed it are read and sent.
        let changed: Vec<(&waldur_client::ProviderResource, &UsageReport, u64)> = {
            let reported = ctx.reported.lock().unwrap_or_else(|p| p.into_inner());
            resources
                .iter()
                .filter_map(|r| usage.get(r.backend_id.trim()).map(|report| (r, report)))
                .filter(|(r, report)| existed_in(r, period) || !is_zero(report))
                .map(|(r, report)| (r, report, usage_fingerprint(report, &known_components)))
                .filter(|(r, _, print)| {
                    reported.get(&(r.uuid.clone(), billing_period.clone())) != Some(print)
                })
                .collect()
        };
        if changed.is_empty() {
            tracing::debug!(offering = %ctx.name(), period = %billing_period, "no usage changed since the last report");
            continue;
        }
        // What Waldur already has for the month, for all resources in one listing.
        let mut recorded: BTreeMap<String, Vec<ComponentUsage>> = BTreeMap::new();
        match ctx
            .client
            .list_offering_component_usages(&ctx.offering_uuid, &billing_period)
            .await
        {
            Ok(records) => {
                for record in records {
                    if let Some(resource) = record.resource_uuid.clone() {
                        recorded.entry(resource).or_default().push(record);
                    }
                }
            }
            Err(e) if !is_current => {
                tracing::warn!(offering = %ctx.name(), period = %billing_period, error = %e, "cannot read past-period usage records; skipped");
                continue;
            }
            Err(e) => return Err(CoreError::Waldur(e)),
        }
        let has_per_user = changed
            .iter()
            .any(|(_, report, _)| !report.per_user.is_empty());
        let user_recorded = if has_per_user {
            recorded_user_usages(ctx, &billing_period).await
        } else {
            UserUsageIndex::new()
        };
        let user_recorded = &user_recorded;
        let concurrency = ctx.settings.order_concurrency.max(1);
        let known_components = &known_components;
        // Futures built eagerly (not by a closure over the stream) so the cycle stays `Send`.
        let billing_period = &billing_period;
        let submissions: Vec<_> = changed
            .iter()
            .map(|&(resource, report, print)| {
                let existing = recorded.remove(&resource.uuid).unwrap_or_default();
                async move {
                    if ctx.is_cancelled() {
                        // Left for the next cycle, which sends whatever Waldur lacks.
                        return (resource.uuid.as_str(), Ok(()));
                    }
                    let result = submit(
                        ctx,
                        &resource.uuid,
                        report,
                        period,
                        known_components,
                        decreasing_ok,
                        existing,
                        user_recorded,
                    )
                    .await;
                    // Done for this fingerprint: accepted, or a past month Waldur closed.
                    if result.is_ok() || result.as_ref().is_err_and(is_backfill_refusal) {
                        ctx.reported
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert((resource.uuid.clone(), billing_period.clone()), print);
                    }
                    (resource.uuid.as_str(), result)
                }
            })
            .collect();
        let outcomes: Vec<(&str, CoreResult<()>)> = stream::iter(submissions)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (resource_uuid, result) in outcomes {
            match result {
                Ok(()) => {}
                Err(e) if !is_current => {
                    if is_backfill_refusal(&e) {
                        tracing::info!(resource = %resource_uuid, period = %period.first_day(), "past period closed for backfilling; skipped");
                    } else {
                        tracing::warn!(resource = %resource_uuid, period = %period.first_day(), error = %e, "past-period usage not accepted");
                    }
                }
                Err(e) => {
                    tracing::warn!(resource = %resource_uuid, period = %period.first_day(), error = %e, "usage not reported");
                    // The resource may have changed in Waldur (terminated, another backend id):
                    // the next cycle lists afresh.
                    forget_listing(ctx);
                    failed.insert(resource_uuid.to_owned(), e.to_string());
                }
            }
        }
    }
    for resource in resources.iter() {
        match failed.get(&resource.uuid) {
            Some(e) => cycle.fail(&format!("resource {}", resource.uuid), e),
            None => cycle.ok(),
        }
    }
    Ok(())
}

/// How long a report cycle reuses the offering's resource listing while its fingerprint holds.
/// The fingerprint (count and newest resource) sees resources created, terminated or moved
/// between listed states; after this it lists afresh anyway, for what it cannot see (one
/// resource leaving the listing while an older one enters it, a `backend_id` changed in place).
pub const RELIST_RESOURCES_AFTER: Duration = Duration::from_secs(3600);

/// The report cycle's resources as last listed, with the fingerprint Waldur gave just before.
pub(crate) struct ListedResources {
    fingerprint: ListingFingerprint,
    at: Instant,
    resources: Arc<Vec<ProviderResource>>,
}

/// The offering's resources to report on (those with a backend id): the last listing when
/// Waldur's fingerprint of it is unchanged and it is younger than [`RELIST_RESOURCES_AFTER`],
/// else a fresh listing. A second cycle with nothing new then costs one request here, not one
/// per 300 resources. Without a fingerprint (an older server, an error) it always lists.
async fn reportable_resources(
    ctx: &OfferingContext,
    filter: &ResourceFilter,
) -> CoreResult<Arc<Vec<ProviderResource>>> {
    let fingerprint = match ctx.client.resources_fingerprint(filter).await {
        Ok(f) if f.count.is_some() => Some(f),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(offering = %ctx.name(), error = %e, "no resource fingerprint; listing");
            None
        }
    };
    if let Some(fingerprint) = &fingerprint {
        let listing = ctx.report_listing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = listing.as_ref()
            && last.fingerprint == *fingerprint
            && last.at.elapsed() < RELIST_RESOURCES_AFTER
        {
            return Ok(last.resources.clone());
        }
    }
    let resources: Arc<Vec<ProviderResource>> = Arc::new(
        ctx.client
            .list_resources(filter)
            .await?
            .into_iter()
            .filter(|r| !r.backend_id.trim().is_empty())
            .collect(),
    );
    *ctx.report_listing.lock().unwrap_or_else(|p| p.into_inner()) =
        fingerprint.map(|fingerprint| ListedResources {
            fingerprint,
            at: Instant::now(),
            resources: resources.clone(),
        });
    Ok(resources)
}

fn forget_listing(ctx: &OfferingContext) {
    *ctx.report_listing.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// The months to report that this server can take: past months only where `set_usage` takes a
/// billing period. A Mastermind from 2024 writes every `set_usage` into the current month, so
/// a past month sent there would overwrite this month's usage (see
/// [`crate::features::takes_billing_period`]).
async fn periods_the_server_takes(
    ctx: &OfferingContext,
    mut periods: Vec<BillingPeriod>,
) -> Vec<BillingPeriod> {
    if periods.len() <= 1 {
        return periods;
    }
    match crate::features::takes_billing_period(ctx).await {
        Some(true) => periods,
        known => {
            if known == Some(false) {
                crate::features::note_missing(
                    ctx,
                    crate::features::endpoint::SET_USAGE_BILLING_PERIOD,
                    "only the current month is reported (this Waldur writes every set_usage into the current month, whatever its date)",
                    crate::features::Absence::Warn,
                );
            }
            periods.split_off(periods.len() - 1)
        }
    }
}

/// Per-user usage of one component record: in one `set_user_usages` call, or one
/// `set_user_usage` per user where the server has only that (Mastermind 2024).
async fn send_user_usages(
    ctx: &OfferingContext,
    component_usage: &str,
    items: &[UserUsageItem],
) -> CoreResult<()> {
    use crate::features::{Absence, endpoint, note_missing};
    if !ctx.features.is_missing(endpoint::SET_USER_USAGES) {
        match ctx.client.set_user_usages(component_usage, items).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_missing_route() => note_missing(
                ctx,
                endpoint::SET_USER_USAGES,
                "per-user usage is sent one user at a time (set_user_usage)",
                Absence::Info,
            ),
            Err(e) => return Err(e.into()),
        }
    }
    for item in items {
        ctx.client.set_user_usage(component_usage, item).await?;
    }
    Ok(())
}

/// Per-user usage Waldur has for a month: component-usage uuid → username → (amount, whether
/// a user link is stored).
type UserUsageIndex = BTreeMap<String, BTreeMap<String, (Option<f64>, bool)>>;

/// What [`UserUsageIndex`] says for the month; empty (so everything is sent) when unreadable.
async fn recorded_user_usages(ctx: &OfferingContext, billing_period: &str) -> UserUsageIndex {
    let rows = match ctx
        .client
        .list_offering_component_user_usages(&ctx.offering_uuid, billing_period)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(offering = %ctx.name(), period = %billing_period, error = %e, "cannot read per-user usage; sending all of it");
            return UserUsageIndex::new();
        }
    };
    let mut index = UserUsageIndex::new();
    for row in rows {
        if let Some(record) = uuid_from_url(&row.component_usage) {
            let linked = row.user.as_deref().is_some_and(|u| !u.is_empty());
            index
                .entry(record)
                .or_default()
                .insert(row.username, (row.usage, linked));
        }
    }
    index
}

/// Submit one resource's usage for one period (total, then per user). `existing` and
/// `user_recorded` are what Waldur has for the period; per-user usage it already has (same
/// amount, user link stored when we know one) is not sent again.
#[allow(clippy::too_many_arguments)]
async fn submit(
    ctx: &OfferingContext,
    resource_uuid: &str,
    report: &UsageReport,
    period: &BillingPeriod,
    known_components: &BTreeSet<String>,
    decreasing_ok: bool,
    mut existing: Vec<ComponentUsage>,
    user_recorded: &UserUsageIndex,
) -> CoreResult<()> {
    let billing_period = period.first_day().to_string();
    let date = report_date(period);
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for (component, amount) in &report.total {
        if known_components.contains(component) {
            totals.insert(component.clone(), round2(*amount));
        } else {
            tracing::warn!(resource = %resource_uuid, component = %component, "component not in the offering; not reported");
        }
    }
    // Components left out because their usage would go down (`omit_anomalous_usage_components`).
    let mut omitted: BTreeSet<String> = BTreeSet::new();
    if !usage_matches_existing(&totals, &existing) {
        if !decreasing_ok {
            let anomalies =
                anomalous_components(ctx, resource_uuid, &billing_period, &totals, &existing)
                    .await?;
            if let Some((_, first)) = anomalies.first() {
                if !ctx.config.omit_anomalous_usage_components {
                    return Err(CoreError::invalid(first.clone()));
                }
                for (component, reason) in &anomalies {
                    tracing::warn!(resource = %resource_uuid, period = %billing_period, component = %component, reason = %reason, "usage of this component not reported (omit_anomalous_usage_components); the others are");
                    totals.remove(component);
                    omitted.insert(component.clone());
                }
                if totals.is_empty() {
                    return Err(CoreError::invalid(first.clone()));
                }
            }
        }
        // What is left after omitting may be what Waldur has already.
        let remaining_recorded = !omitted.is_empty()
            && totals.iter().all(|(k, v)| {
                let same: Vec<_> = existing.iter().filter(|r| &r.component_type == k).collect();
                same.len() == 1 && same[0].usage.is_some_and(|old| same_amount(old, *v))
            });
        let items: Vec<UsageItem> = totals
            .iter()
            .map(|(k, v)| UsageItem {
                component_type: k.clone(),
                amount: format_amount(*v),
            })
            .collect();
        if !items.is_empty() && !remaining_recorded {
            ctx.client.set_usage(resource_uuid, &date, &items).await?;
            tracing::info!(resource = %resource_uuid, period = %billing_period, "usage reported");
            // set_usage updates a component's record in place (same uuid); only a component
            // reported for the first time this month has a record we have not seen.
            let all_recorded = totals
                .keys()
                .all(|k| existing.iter().any(|r| &r.component_type == k));
            if !all_recorded {
                existing = Vec::new();
            }
        }
    } else {
        tracing::debug!(resource = %resource_uuid, period = %billing_period, "usage unchanged; not re-sent");
    }
    if report.per_user.is_empty() {
        return Ok(());
    }
    if existing.is_empty() {
        existing = ctx
            .client
            .list_component_usages(resource_uuid, &billing_period)
            .await?;
    }
    let offering_users = ctx.offering_users().await?;
    let user_url = |username: &str| {
        offering_users
            .iter()
            .find(|u| u.username() == Some(username))
            .map(|u| u.url.clone())
            .filter(|u| !u.is_empty())
    };
    for record in existing
        .iter()
        .filter(|r| !omitted.contains(&r.component_type))
    {
        let stored = user_recorded.get(&record.uuid);
        let items: Vec<UserUsageItem> = report
            .per_user
            .iter()
            .filter_map(|(username, amounts)| {
                let amount = *amounts.get(&record.component_type)?;
                let user = user_url(username);
                let unchanged =
                    stored
                        .and_then(|s| s.get(username))
                        .is_some_and(|(old, linked)| {
                            old.is_some_and(|old| same_amount(old, round2(amount)))
                                && (*linked || user.is_none())
                        });
                (!unchanged).then(|| UserUsageItem {
                    username: username.clone(),
                    usage: format_amount(amount),
                    date: date.clone(),
                    user,
                })
            })
            .collect();
        if !items.is_empty() {
            send_user_usages(ctx, &record.uuid, &items).await?;
        }
    }
    Ok(())
}

/// Components whose reported usage would go down, with the reason (a backend glitch would
/// otherwise erase billing). Records that are parents of per-user usage are not aggregates and
/// are left out of the check.
async fn anomalous_components(
    ctx: &OfferingContext,
    resource_uuid: &str,
    billing_period: &str,
    totals: &BTreeMap<String, f64>,
    existing: &[ComponentUsage],
) -> CoreResult<Vec<(String, String)>> {
    let mut anomalies = Vec::new();
    let suspicious = totals.iter().any(|(k, v)| {
        let same: Vec<_> = existing.iter().filter(|r| &r.component_type == k).collect();
        same.len() > 1 || same.iter().any(|r| r.usage.is_some_and(|old| *v < old))
    });
    if !suspicious {
        return Ok(anomalies);
    }
    let parents: BTreeSet<String> = ctx
        .client
        .list_component_user_usages(resource_uuid, billing_period)
        .await?
        .iter()
        .filter_map(|u| uuid_from_url(&u.component_usage))
        .collect();
    for (component, value) in totals {
        let aggregates: Vec<_> = existing
            .iter()
            .filter(|r| &r.component_type == component && !parents.contains(&r.uuid))
            .collect();
        if aggregates.len() > 1 {
            anomalies.push((
                component.clone(),
                format!(
                    "usage anomaly: {} aggregate records for component '{component}'",
                    aggregates.len()
                ),
            ));
            continue;
        }
        if let Some(old) = aggregates.first().and_then(|r| r.usage) {
            if *value < old {
                anomalies.push((
                    component.clone(),
                    format!(
                        "usage anomaly: '{component}' would decrease from {old} to {value}; not reported"
                    ),
                ));
            }
        }
    }
    Ok(anomalies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn usage(t: &str, v: Option<f64>) -> ComponentUsage {
        ComponentUsage {
            component_type: t.into(),
            usage: v,
            ..ComponentUsage::default()
        }
    }

    #[test]
    fn periods_are_oldest_first_and_wrap_the_year() {
        let now = jiff::civil::date(2026, 1, 15)
            .at(12, 0, 0, 0)
            .to_zoned(TimeZone::UTC)
            .expect("zoned");
        let periods = reporting_periods(&now, 3);
        let months: Vec<(i16, i8)> = periods.iter().map(|p| (p.year, p.month)).collect();
        assert_eq!(months, vec![(2025, 11), (2025, 12), (2026, 1)]);
        assert_eq!(reporting_periods(&now, 1).len(), 1);
        assert_eq!(report_date(&periods[2]), "2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn idempotency_comparison() {
        let new: BTreeMap<String, f64> = [("cpu".to_owned(), 10.0)].into();
        assert!(usage_matches_existing(
            &new,
            &[usage("cpu", Some(10.0000001))]
        ));
        assert!(!usage_matches_existing(&new, &[usage("cpu", Some(10.01))]));
        assert!(!usage_matches_existing(&new, &[usage("cpu", None)]));
        assert!(!usage_matches_existing(
            &new,
            &[usage("cpu", Some(10.0)), usage("cpu", Some(10.0))]
        ));
        assert!(!usage_matches_existing(&new, &[]));
        assert!(usage_matches_existing(&BTreeMap::new(), &[]));
        assert!(!usage_matches_existing(
            &new,
            &[usage("cpu", Some(10.0)), usage("mem", Some(1.0))]
        ));
    }
}
