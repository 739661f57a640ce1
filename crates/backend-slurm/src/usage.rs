//! Usage from `sacct`: rows `Account|AllocTRES|ElapsedRaw|User` → TRES × minutes per account and user.

use std::collections::{BTreeMap, BTreeSet};

use backend_api::BillingPeriod;
use backend_api::command::parsable;
use jiff::tz::TimeZone;

use crate::tres::{parse_elapsed_minutes, parse_tres_list, suffix_multiplier};

/// TRES → site-unit usage (TRES-minutes; `mem` in MB-minutes).
pub type TresUsage = BTreeMap<String, f64>;

/// Per account (lower-case): total and per user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountUsage {
    pub total: TresUsage,
    pub per_user: BTreeMap<String, TresUsage>,
}

/// Sum sacct rows for the wanted TRES. `ElapsedRaw` is seconds; an `Elapsed`-style value
/// (`[D-]HH:MM:SS`) is accepted too. Rows that do not parse are skipped with a warning.
pub fn aggregate(output: &str, wanted: &BTreeSet<String>) -> BTreeMap<String, AccountUsage> {
    let mut result: BTreeMap<String, AccountUsage> = BTreeMap::new();
    for row in parsable::rows(output) {
        let line = row.line;
        if row.len() < 4 {
            tracing::warn!(line, "skipping sacct row with too few fields");
            continue;
        }
        let (tres, elapsed, user) = (row.get(1), row.get(2), row.get(3));
        let account = row.get(0).to_lowercase();
        if account.is_empty() {
            continue;
        }
        let minutes = match elapsed.trim().parse::<f64>() {
            Ok(seconds) => seconds / 60.0,
            Err(_) => match parse_elapsed_minutes(elapsed) {
                Some(m) => m,
                None => {
                    tracing::warn!(line, "skipping sacct row with unreadable elapsed time");
                    continue;
                }
            },
        };
        let entry = result.entry(account).or_default();
        let user_entry = entry.per_user.entry(user.to_owned()).or_default();
        for (key, number, suffix) in parse_tres_list(tres) {
            if !wanted.contains(&key) {
                continue;
            }
            let amount = if key == "mem" {
                // Bytes × minutes → MB-minutes.
                number as f64 * suffix_multiplier(suffix) as f64 / f64::from(1u32 << 20)
            } else {
                number as f64 * suffix_multiplier(suffix) as f64
            } * minutes;
            *entry.total.entry(key.clone()).or_default() += amount;
            *user_entry.entry(key).or_default() += amount;
        }
    }
    for usage in result.values_mut() {
        usage.per_user.retain(|user, _| !user.is_empty());
    }
    result
}

/// The sacct window of a billing period: first second to last second of the month, written as
/// local wall-clock time of the machine running sacct (`sacct` reads times in its own timezone).
pub fn sacct_window(period: &BillingPeriod, local: &TimeZone) -> (String, String) {
    let start = period.start().with_time_zone(local.clone());
    let end = period
        .end()
        .with_time_zone(local.clone())
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap_or_else(|_| period.end());
    let fmt = "%Y-%m-%dT%H:%M:%S";
    (
        start.strftime(fmt).to_string(),
        end.strftime(fmt).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn aggregates_real_sacct_rows() {
        // Captured here (sacct 22.05.8) plus a memory row as printed with --noconvert.
        let out = "za1|billing=2,cpu=2,node=1|0|zcapt\n\
                   za1|billing=1,cpu=1,node=1|60|zcapt\n\
                   za1|billing=2,cpu=2,mem=1024M,node=1|120|bob\n\
                   ZB|cpu=4|1-00:00:00|carol\n";
        let usage = aggregate(out, &wanted(&["cpu", "mem"]));
        let za1 = &usage["za1"];
        assert_eq!(za1.total["cpu"], 1.0 + 4.0);
        assert_eq!(za1.total["mem"], 1024.0 * 2.0);
        assert_eq!(za1.per_user["zcapt"]["cpu"], 1.0);
        assert_eq!(za1.per_user["bob"]["cpu"], 4.0);
        assert!(!za1.total.contains_key("billing"));
        assert_eq!(usage["zb"].total["cpu"], 4.0 * 1440.0);
    }

    #[test]
    fn garbage_rows_are_skipped_not_fatal() {
        let usage = aggregate(
            "x|cpu=1|notatime|u\n|cpu=1|60|u\nshort|row\n",
            &wanted(&["cpu"]),
        );
        assert!(usage.is_empty());
    }

    #[test]
    fn window_is_the_month_in_the_offering_timezone_seen_from_local_time() {
        let tz = TimeZone::get("Europe/Tallinn").expect("tz");
        let period = BillingPeriod::new(2024, 2, tz.clone());
        let (start, end) = sacct_window(&period, &tz);
        assert_eq!(start, "2024-02-01T00:00:00");
        assert_eq!(end, "2024-02-29T23:59:59");
        let (start_utc, end_utc) = sacct_window(&period, &TimeZone::UTC);
        assert_eq!(start_utc, "2024-01-31T22:00:00");
        assert_eq!(end_utc, "2024-02-29T21:59:59");
    }
}
