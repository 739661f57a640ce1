//! The one retry policy: exponential backoff with jitter, a bounded number of retries.

use std::time::Duration;

/// How often and how long to wait before sending a failed request again. Which requests may be
/// retried is decided by [`crate::RestClient`]: idempotent ones, after a transient error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// Delay before the first retry; doubles per retry.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// Wait a random time between half the delay and the delay, so that agents restarted
    /// together do not retry in step.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Run `op` until it succeeds, fails with an error `retryable` refuses, or the retries are
    /// used up, sleeping [`RetryPolicy::delay`] between attempts. The one retry loop for
    /// callers that are not HTTP requests (e.g. a CLI answer that says "not visible yet").
    pub async fn run<T, E, F, Fut>(&self, mut op: F, retryable: impl Fn(&E) -> bool) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if attempt < self.max_retries && retryable(&e) => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = (self.base_delay * (1u32 << attempt.min(16))).min(self.max_delay);
        if !self.jitter || full.is_zero() {
            return full;
        }
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_retries_only_what_is_retryable_and_stops_at_the_limit() {
        let policy = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            jitter: true,
        };
        let mut calls = 0;
        let out: Result<(), &str> = policy
            .run(
                || {
                    calls += 1;
                    async { Err("busy") }
                },
                |e| *e == "busy",
            )
            .await;
        assert_eq!((out, calls), (Err("busy"), 3));
        let mut calls = 0;
        let out: Result<(), &str> = policy
            .run(
                || {
                    calls += 1;
                    async { Err("broken") }
                },
                |e| *e == "busy",
            )
            .await;
        assert_eq!((out, calls), (Err("broken"), 1));
    }

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_below_them() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            jitter: false,
        };
        let delays: Vec<u128> = (0..4).map(|a| policy.delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 350, 350]);
        let jittered = RetryPolicy {
            jitter: true,
            ..policy
        };
        for attempt in 0..4 {
            let d = jittered.delay(attempt);
            assert!(d <= policy.delay(attempt) && d >= policy.delay(attempt) / 2);
        }
    }
}
