//! Reconnect delays: `min(1 s · 2ⁿ, 120 s)` plus up to 25 % jitter (the Python agent's formula).

use std::time::Duration;

pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_CAP: Duration = Duration::from_secs(120);
pub const MAX_JITTER_FRACTION: f64 = 0.25;

/// Delay before reconnect attempt `attempt` (0-based) for a jitter draw `jitter01` in `[0, 1]`.
/// Pure so it can be tested; [`jittered_backoff`] draws the jitter.
pub fn backoff_delay(attempt: u32, jitter01: f64) -> Duration {
    let exponential = BACKOFF_BASE
        .checked_mul(2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_CAP);
    let capped = exponential.min(BACKOFF_CAP);
    let jitter = jitter01.clamp(0.0, 1.0) * MAX_JITTER_FRACTION;
    capped + capped.mul_f64(jitter)
}

/// [`backoff_delay`] with a random jitter.
pub fn jittered_backoff(attempt: u32) -> Duration {
    backoff_delay(attempt, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_and_caps_at_120() {
        let secs: Vec<u64> = (0..10).map(|n| backoff_delay(n, 0.0).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 120, 120, 120]);
        assert_eq!(backoff_delay(u32::MAX, 0.0), BACKOFF_CAP);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        assert_eq!(backoff_delay(2, 1.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(10, 1.0), Duration::from_secs(150));
        assert_eq!(backoff_delay(0, 0.5), Duration::from_millis(1125));
        // Out-of-range draws are clamped rather than producing odd delays.
        assert_eq!(backoff_delay(0, 7.0), Duration::from_millis(1250));
        assert_eq!(backoff_delay(0, -1.0), Duration::from_secs(1));
        for attempt in 0..12 {
            let d = jittered_backoff(attempt);
            let base = backoff_delay(attempt, 0.0);
            assert!(d >= base && d <= base.mul_f64(1.25), "{attempt}: {d:?}");
        }
    }
}
