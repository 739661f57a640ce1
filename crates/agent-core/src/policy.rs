//! The one error policy of the processors, as kube-rs controllers have `reconcile` +
//! `error_policy`: every run (a polling pass over an offering, one event, a sweep) reports what
//! it did as a [`CycleReport`]; [`next_step`] turns that into what happens next. Polling, events
//! and sweeps all ask it, so an item is retried the same way whatever brought it in.
//!
//! - everything handled, or a failure that a retry cannot fix (erred, rejected, bad payload):
//!   [`Next::Done`] — for an event, acknowledge it; the periodic sweep still re-reads the object;
//! - a transient failure (Waldur 5xx/429/transport, a site that is down or did not confirm a
//!   write) in a polling pass or sweep: [`Next::NextPass`] — the item stays as it is in Waldur and
//!   the next pass picks it up;
//! - a transient failure of an event: [`Next::RetryAfter`] — hand it back to the broker after a
//!   backoff that grows with the failures of the same object, never retried in place while other
//!   events wait.

use std::time::Duration;

use crate::error::CycleReport;

/// What brought the work in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A polling cycle or a reconciliation / sweep pass: another pass follows on its own.
    Pass,
    /// An event: only a redelivery (or the next sweep) brings it back.
    Event,
}

/// What happens to the work after a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Leave it; the next pass sees it again.
    NextPass,
    /// Try again after this delay (events: redelivery by the broker).
    RetryAfter(Duration),
}

/// Shortest and longest wait before an event is tried again.
pub const RETRY_BASE: Duration = Duration::from_secs(2);
pub const RETRY_CAP: Duration = Duration::from_secs(60);

/// The policy. `failures` counts the earlier consecutive transient failures of the same object.
pub fn next_step(report: &CycleReport, trigger: Trigger, failures: u32) -> Next {
    if !report.has_failures() || !report.transient_only() {
        return Next::Done;
    }
    match trigger {
        Trigger::Pass => Next::NextPass,
        Trigger::Event => Next::RetryAfter(retry_delay(failures + 1)),
    }
}

/// 2 s, 4 s, 8 s, ... up to 60 s for the `n`-th consecutive failure (n ≥ 1).
pub fn retry_delay(n: u32) -> Duration {
    RETRY_BASE
        .checked_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
        .unwrap_or(RETRY_CAP)
        .min(RETRY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_api::BackendError;

    fn report(transient: bool) -> CycleReport {
        let mut r = CycleReport::new("o");
        if transient {
            r.retry("order x", BackendError::transient("site down"));
        } else {
            r.fail("order x", BackendError::permanent("bad name"));
        }
        r
    }

    #[test]
    fn only_transient_failures_come_back() {
        let mut ok = CycleReport::new("o");
        ok.ok();
        assert_eq!(next_step(&ok, Trigger::Event, 3), Next::Done);
        assert_eq!(next_step(&report(false), Trigger::Event, 0), Next::Done);
        assert_eq!(next_step(&report(false), Trigger::Pass, 0), Next::Done);
        assert_eq!(next_step(&report(true), Trigger::Pass, 0), Next::NextPass);
        assert_eq!(
            next_step(&report(true), Trigger::Event, 0),
            Next::RetryAfter(Duration::from_secs(2))
        );
    }

    #[test]
    fn event_retries_back_off_up_to_a_minute() {
        let secs: Vec<u64> = (1..=7).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_CAP);
        assert_eq!(retry_delay(0), RETRY_BASE);
    }
}
