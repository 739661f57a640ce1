//! Event-mode liveness, as upstream 1.0.8 defines it: the scheduler stops touching the
//! heartbeat file once an event connection has been down for longer than
//! `WALDUR_SITE_AGENT_STOMP_UNHEALTHY_AFTER_MINUTES` (15), or a handler has been running for
//! longer than `WALDUR_SITE_AGENT_STOMP_HANDLER_STUCK_AFTER_MINUTES` (30) — which counts as its
//! queue being down from that moment, so liveness goes after 30 + 15 minutes. The liveness
//! probe (`healthz --liveness-only`) then restarts the agent.
//!
//! A connection counts as recovered after two consecutive checks connected, so a queue the
//! broker closes right after CONNECTED is not reported healthy on every tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_events::ConnectionStatus;
use tokio::sync::watch;

pub const UNHEALTHY_AFTER_ENV: &str = "WALDUR_SITE_AGENT_STOMP_UNHEALTHY_AFTER_MINUTES";
pub const HANDLER_STUCK_AFTER_ENV: &str = "WALDUR_SITE_AGENT_STOMP_HANDLER_STUCK_AFTER_MINUTES";
const STABLE_CHECKS: u32 = 2;

/// Minutes from `name` (a float, as upstream), or `default` when unset or not a non-negative
/// number (with a warning).
pub fn minutes_from_env(name: &str, default: f64) -> Duration {
    let minutes = match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => match raw.trim().parse::<f64>() {
            Ok(m) if m.is_finite() && m >= 0.0 => m,
            _ => {
                tracing::warn!(variable = name, value = %raw, default, "not a number of minutes; using the default");
                default
            }
        },
        _ => default,
    };
    Duration::from_secs_f64(minutes * 60.0)
}

/// When each running event handler started.
#[derive(Debug, Default)]
pub struct HandlerClock {
    next: AtomicU64,
    running: Mutex<HashMap<u64, Instant>>,
}

/// A running handler; dropping it ends it.
pub struct Running {
    clock: Arc<HandlerClock>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.clock
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl HandlerClock {
    pub fn start(self: &Arc<Self>) -> Running {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
        Running {
            clock: self.clone(),
            id,
        }
    }

    /// When the longest-running handler started.
    pub fn oldest(&self) -> Option<Instant> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .min()
            .copied()
    }
}

#[derive(Default)]
struct Source {
    down_since: Option<Instant>,
    connected_checks: u32,
}

/// Decides whether event mode is alive.
pub struct Watchdog {
    sources: Vec<(String, watch::Receiver<ConnectionStatus>)>,
    state: Mutex<(Vec<Source>, bool)>,
    handlers: Arc<HandlerClock>,
    unhealthy_after: Duration,
    stuck_after: Duration,
}

impl Watchdog {
    pub fn new(
        sources: Vec<(String, watch::Receiver<ConnectionStatus>)>,
        handlers: Arc<HandlerClock>,
        unhealthy_after: Duration,
        stuck_after: Duration,
    ) -> Self {
        let now = Instant::now();
        let state = sources
            .iter()
            .map(|_| Source {
                // Not connected yet counts from the start.
                down_since: Some(now),
                connected_checks: 0,
            })
            .collect();
        Watchdog {
            sources,
            state: Mutex::new((state, false)),
            handlers,
            unhealthy_after,
            stuck_after,
        }
    }

    /// With the thresholds from the environment.
    pub fn from_env(
        sources: Vec<(String, watch::Receiver<ConnectionStatus>)>,
        handlers: Arc<HandlerClock>,
    ) -> Self {
        Self::new(
            sources,
            handlers,
            minutes_from_env(UNHEALTHY_AFTER_ENV, 15.0),
            minutes_from_env(HANDLER_STUCK_AFTER_ENV, 30.0),
        )
    }

    /// Whether the agent is alive at `now` (false: withhold the heartbeat). Logs the verdict
    /// when it changes.
    pub fn check(&self, now: Instant) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (states, was_unhealthy) = &mut *guard;
        let mut oldest: Option<(Instant, String)> = None;
        let mut consider = |since: Instant, what: String| {
            if oldest.as_ref().is_none_or(|(o, _)| since < *o) {
                oldest = Some((since, what));
            }
        };
        for ((name, rx), state) in self.sources.iter().zip(states.iter_mut()) {
            let status = rx.borrow().clone();
            match status {
                ConnectionStatus::Connected => {
                    state.connected_checks += 1;
                    if state.connected_checks >= STABLE_CHECKS {
                        state.down_since = None;
                    }
                }
                // A source that was stopped (shutdown) is not an outage.
                ConnectionStatus::Stopped => {
                    state.down_since = None;
                    state.connected_checks = 0;
                }
                _ => {
                    state.connected_checks = 0;
                    state.down_since.get_or_insert(now);
                }
            }
            if let Some(since) = state.down_since {
                consider(since, format!("event connection of offering '{name}'"));
            }
        }
        if let Some(started) = self.handlers.oldest() {
            if now.saturating_duration_since(started) >= self.stuck_after {
                consider(started + self.stuck_after, "an event handler".to_owned());
            }
        }
        let unhealthy = oldest.as_ref().is_some_and(|(since, _)| {
            now.saturating_duration_since(*since) >= self.unhealthy_after
        });
        if unhealthy && !*was_unhealthy {
            if let Some((since, what)) = &oldest {
                tracing::error!(
                    down_seconds = now.saturating_duration_since(*since).as_secs(),
                    threshold_seconds = self.unhealthy_after.as_secs(),
                    "{what} has been down too long; withholding the liveness heartbeat so the agent is restarted"
                );
            }
        } else if !unhealthy && *was_unhealthy {
            tracing::info!("event processing recovered; liveness heartbeat resumed");
        }
        *was_unhealthy = unhealthy;
        !unhealthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn an_outage_longer_than_the_threshold_withholds_liveness() {
        let (tx, rx) = watch::channel(ConnectionStatus::Connecting);
        let dog = Watchdog::new(vec![("o".into(), rx)], Arc::default(), 15 * MIN, 30 * MIN);
        let t0 = Instant::now();
        assert!(dog.check(t0 + 14 * MIN), "not yet");
        assert!(!dog.check(t0 + 16 * MIN), "never connected for 16 minutes");
        tx.send_replace(ConnectionStatus::Connected);
        assert!(
            !dog.check(t0 + 17 * MIN),
            "one connected check is not stable yet"
        );
        assert!(dog.check(t0 + 18 * MIN), "stable again");
        tx.send_replace(ConnectionStatus::Reconnecting {
            attempt: 1,
            last_error: "x".into(),
        });
        assert!(dog.check(t0 + 20 * MIN));
        assert!(dog.check(t0 + 34 * MIN));
        assert!(!dog.check(t0 + 36 * MIN), "down 16 minutes");
    }

    #[test]
    fn a_stuck_handler_counts_as_an_outage_from_the_stuck_threshold_on() {
        let (_tx, rx) = watch::channel(ConnectionStatus::Connected);
        let clock = Arc::new(HandlerClock::default());
        let dog = Watchdog::new(vec![("o".into(), rx)], clock.clone(), 15 * MIN, 30 * MIN);
        let t0 = Instant::now();
        assert!(dog.check(t0));
        assert!(dog.check(t0 + MIN));
        let running = clock.start();
        assert!(dog.check(t0 + 40 * MIN), "stuck for 10 minutes past 30");
        assert!(!dog.check(t0 + 46 * MIN), "30 + 15 minutes");
        drop(running);
        assert!(dog.check(t0 + 47 * MIN), "the handler finished");
    }

    #[test]
    fn minutes_parse_as_floats() {
        assert_eq!(
            minutes_from_env("WALDUR_SITE_AGENT_TEST_UNSET_VARIABLE", 1.5),
            Duration::from_secs(90)
        );
    }
}
