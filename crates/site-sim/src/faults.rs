//! Fault injection shared by every double: per-route error rates, added latency and dropped
//! connections, drawn from a seeded RNG so that a run can be replayed (same seed, same requests,
//! same faults). `waldur-sim` uses it too.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultConfig {
    /// Seed of the RNG deciding which requests fail.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// Route template (`/api/v1/namespaces/{namespace}/resourcequotas/{name}`), a prefix
    /// ending in `*`, or `*`.
    #[serde(default = "any")]
    pub route: String,
    /// HTTP method, or any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Probability (0..=1) of answering with `error_status` instead of running the handler.
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_status")]
    pub error_status: u16,
    /// Extra latency added to every matching request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Probability of closing the connection without a complete response, before the request
    /// reaches the double (nothing happened).
    #[serde(default)]
    pub drop_rate: f64,
    /// Probability of running the request and then closing the connection without its response
    /// (the change happened, the client never hears of it: what a retried create must survive).
    #[serde(default)]
    pub drop_after_rate: f64,
}

fn any() -> String {
    "*".into()
}
fn default_status() -> u16 {
    503
}

/// The statuses a rule may inject.
pub const FAULT_STATUSES: [u16; 5] = [500, 502, 503, 504, 429];

impl FaultConfig {
    /// Refuses rules a double cannot honour (unknown status, rates outside 0..=1).
    pub fn check(&self) -> Result<(), String> {
        for r in &self.rules {
            if !FAULT_STATUSES.contains(&r.error_status) {
                return Err(format!(
                    "error_status {} is not one of {FAULT_STATUSES:?}",
                    r.error_status
                ));
            }
            if [r.error_rate, r.drop_rate, r.drop_after_rate]
                .iter()
                .any(|p| !(0.0..=1.0).contains(p))
            {
                return Err(
                    "error_rate, drop_rate and drop_after_rate are probabilities between 0 and 1"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

impl FaultRule {
    pub fn matches(&self, method: &str, route: &str) -> bool {
        let route_ok = self.route == "*"
            || self.route == route
            || self
                .route
                .strip_suffix('*')
                .is_some_and(|p| route.starts_with(p));
        route_ok
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FaultDecision {
    pub latency_ms: u64,
    pub error_status: Option<u16>,
    pub drop: bool,
    /// Run the request, then drop the connection instead of answering.
    pub drop_after: bool,
}

pub struct FaultState {
    inner: Mutex<(FaultConfig, StdRng)>,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            inner: Mutex::new((FaultConfig::default(), StdRng::seed_from_u64(0))),
        }
    }
}

impl FaultState {
    pub fn set(&self, config: FaultConfig) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 = StdRng::seed_from_u64(config.seed);
        g.0 = config;
    }

    pub fn get(&self) -> FaultConfig {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    pub fn decide(&self, method: &str, route: &str) -> FaultDecision {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (config, rng) = &mut *g;
        let mut d = FaultDecision::default();
        for rule in config.rules.iter().filter(|r| r.matches(method, route)) {
            d.latency_ms += rule.latency_ms;
            if rule.drop_rate > 0.0 && rng.random::<f64>() < rule.drop_rate {
                d.drop = true;
            }
            if rule.drop_after_rate > 0.0 && rng.random::<f64>() < rule.drop_after_rate {
                d.drop_after = true;
            }
            if d.error_status.is_none()
                && rule.error_rate > 0.0
                && rng.random::<f64>() < rule.error_rate
            {
                d.error_status = Some(rule.error_status);
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(route: &str, rate: f64) -> FaultRule {
        FaultRule {
            route: route.into(),
            method: None,
            error_rate: rate,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
            drop_after_rate: 0.0,
        }
    }

    #[test]
    fn same_seed_same_faults_and_prefix_rules() {
        let run = |seed| {
            let s = FaultState::default();
            s.set(FaultConfig {
                seed,
                rules: vec![rule("/api/v1/*", 0.5)],
            });
            (0..64)
                .map(|_| s.decide("GET", "/api/v1/namespaces").error_status.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let s = FaultState::default();
        s.set(FaultConfig {
            seed: 1,
            rules: vec![rule("/apis/*", 1.0)],
        });
        assert_eq!(
            s.decide("GET", "/api/v1/namespaces"),
            FaultDecision::default()
        );
        assert_eq!(s.decide("PUT", "/apis/x").error_status, Some(503));
    }

    #[test]
    fn check_refuses_unknown_status_and_bad_rates() {
        let mut c = FaultConfig {
            seed: 0,
            rules: vec![rule("*", 0.5)],
        };
        assert!(c.check().is_ok());
        c.rules[0].error_status = 404;
        assert!(c.check().is_err());
        c.rules[0].error_status = 500;
        c.rules[0].error_rate = 1.5;
        assert!(c.check().is_err());
    }
}
