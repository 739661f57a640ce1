//! Per-route request counters and a bounded request log (what `bench/` reads), shared by every
//! double and by `waldur-sim`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use indexmap::IndexMap;
use serde::Serialize;

const LOG_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteStats {
    pub count: u64,
    /// Responses with status >= 400 (injected faults included).
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestLogEntry {
    pub timestamp: String,
    pub method: String,
    pub path: String,
    pub route: String,
    pub status: u16,
    pub duration_ms: f64,
    pub user_agent: String,
    pub fault: Option<String>,
}

/// Snapshot of the counters: keys are `"METHOD /route/template"`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestStats {
    pub total: u64,
    pub routes: IndexMap<String, RouteStats>,
    /// Requests per client, by the product token of the `User-Agent` (`waldur-site-agent-report`,
    /// `python-requests`, ...; `""` when none was sent), so a benchmark counts only the agent's
    /// own requests, not its own polling.
    pub by_client: IndexMap<String, u64>,
}

impl RequestStats {
    /// Calls of one route, e.g. `count("POST", "/apis/project.openshift.io/v1/projectrequests")`.
    pub fn count(&self, method: &str, route: &str) -> u64 {
        self.routes
            .get(&format!("{method} {route}"))
            .map(|r| r.count)
            .unwrap_or(0)
    }
}

#[derive(Default)]
pub struct StatsState {
    inner: Mutex<(RequestStats, VecDeque<RequestLogEntry>)>,
}

impl StatsState {
    pub fn record(&self, entry: RequestLogEntry) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{} {}", entry.method, entry.route);
        g.0.total += 1;
        let client = entry
            .user_agent
            .split(['/', ' '])
            .next()
            .unwrap_or("")
            .to_owned();
        *g.0.by_client.entry(client).or_default() += 1;
        let r = g.0.routes.entry(key).or_default();
        r.count += 1;
        if entry.status >= 400 {
            r.errors += 1;
        }
        *r.statuses.entry(entry.status).or_default() += 1;
        if g.1.len() >= LOG_CAPACITY {
            g.1.pop_front();
        }
        g.1.push_back(entry);
    }

    pub fn snapshot(&self) -> RequestStats {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The last `limit` requests, oldest first.
    pub fn log(&self, limit: usize) -> Vec<RequestLogEntry> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let skip = g.1.len().saturating_sub(limit);
        g.1.iter().skip(skip).cloned().collect()
    }

    pub fn reset(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *g = Default::default();
    }
}
