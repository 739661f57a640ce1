//! The tick loop: wake every tick (60 s), rewrite the heartbeat file, run each mode whose period
//! has elapsed (the first cycle immediately). On shutdown the cycle in hand is asked to stop after
//! its current item (it gets the `CancellationToken`) and the loop exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::cli::Mode;
use crate::metrics::Metrics;

/// What one cycle of a mode achieved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleOutcome {
    /// Items (orders, resources, memberships, ...) handled successfully.
    pub processed: u64,
    /// Items that failed (each already logged by the runner).
    pub failed: u64,
    /// Offerings fully processed this cycle.
    pub offerings_ok: Vec<String>,
    /// Offerings that could not be (fully) processed, with the reason.
    pub offerings_failed: Vec<(String, String)>,
}

impl CycleOutcome {
    /// Every offering was processed (what `--once` turns into exit code 0).
    pub fn all_offerings_ok(&self) -> bool {
        self.offerings_failed.is_empty()
    }
}

/// One mode's cycle. Implementations stop early (between items) when `cancel` fires.
#[async_trait]
pub trait ModeRunner: Send + Sync {
    fn mode(&self) -> Mode;
    async fn run_cycle(&self, cancel: &CancellationToken) -> CycleOutcome;
}

struct Entry {
    runner: Arc<dyn ModeRunner>,
    period: Duration,
    next_due: Instant,
}

/// Whether the agent is alive enough to touch its heartbeat (event mode's watchdog).
pub type LivenessGate = Arc<dyn Fn() -> bool + Send + Sync>;

pub struct Scheduler {
    tick: Duration,
    heartbeat: PathBuf,
    entries: Vec<Entry>,
    metrics: Metrics,
    liveness: Option<LivenessGate>,
}

impl Scheduler {
    pub fn new(tick: Duration, heartbeat: PathBuf, metrics: Metrics) -> Self {
        Scheduler {
            tick,
            heartbeat,
            entries: Vec::new(),
            metrics,
            liveness: None,
        }
    }

    /// Touch the heartbeat only while `gate` says the agent is alive (upstream 1.0.8: event
    /// mode withholds it once events have been down too long, so the probe restarts the agent).
    pub fn set_liveness_gate(&mut self, gate: LivenessGate) {
        self.liveness = Some(gate);
    }

    /// Add a mode whose first cycle is one `period` away (not at once).
    pub fn add_after_first_period(&mut self, runner: Arc<dyn ModeRunner>, period: Duration) {
        self.entries.push(Entry {
            runner,
            period,
            next_due: Instant::now() + period,
        });
    }

    /// The metrics this scheduler records into (shared with the event listeners).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Add a mode, run first at once, then every `period`.
    pub fn add(&mut self, runner: Arc<dyn ModeRunner>, period: Duration) {
        self.entries.push(Entry {
            runner,
            period,
            next_due: Instant::now(),
        });
    }

    /// One cycle of every mode, in order; whether every offering of every mode was processed.
    pub async fn run_once(&self, cancel: &CancellationToken) -> bool {
        let mut ok = true;
        for e in &self.entries {
            if cancel.is_cancelled() {
                return false;
            }
            self.beat();
            let outcome = self.run_one(e.runner.as_ref(), cancel).await;
            ok &= outcome.all_offerings_ok();
        }
        self.beat();
        ok
    }

    /// Run until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            self.beat();
            let mut i = 0;
            while i < self.entries.len() {
                if cancel.is_cancelled() {
                    return;
                }
                if Instant::now() >= self.entries[i].next_due {
                    let started = Instant::now();
                    let runner = self.entries[i].runner.clone();
                    self.run_one(runner.as_ref(), &cancel).await;
                    // Period counted from the cycle start, as upstream.
                    self.entries[i].next_due = started + self.entries[i].period;
                    self.beat();
                }
                i += 1;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.tick) => {}
            }
        }
    }

    async fn run_one(&self, runner: &dyn ModeRunner, cancel: &CancellationToken) -> CycleOutcome {
        let mode = runner.mode();
        tracing::info!(mode = mode.as_str(), "Running {} cycle", mode.as_str());
        let started = Instant::now();
        let outcome = runner.run_cycle(cancel).await;
        let elapsed = started.elapsed();
        self.metrics.record_cycle(mode, elapsed, &outcome);
        for (offering, reason) in &outcome.offerings_failed {
            tracing::warn!(
                mode = mode.as_str(),
                offering = offering.as_str(),
                reason = reason.as_str(),
                "Offering not processed"
            );
        }
        tracing::info!(
            mode = mode.as_str(),
            processed = outcome.processed,
            failed = outcome.failed,
            duration_seconds = elapsed.as_secs_f64(),
            "Cycle finished"
        );
        outcome
    }

    fn beat(&self) {
        if let Some(gate) = &self.liveness
            && !gate()
        {
            return;
        }
        if let Err(e) = write_heartbeat(&self.heartbeat) {
            tracing::warn!(path = %self.heartbeat.display(), error = %e, "Cannot write heartbeat file");
        }
        self.metrics.beat();
    }
}

/// Rewrite the heartbeat file with the current epoch time (float seconds), like upstream.
pub fn write_heartbeat(path: &std::path::Path) -> std::io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    std::fs::write(path, format!("{now:.6}"))
}

/// How long a shutdown may wait for the items in hand:
/// `WALDUR_SITE_AGENT_SHUTDOWN_TIMEOUT_SECONDS` (default 10, within systemd's and Kubernetes'
/// default grace periods).
pub fn shutdown_timeout() -> Duration {
    std::env::var("WALDUR_SITE_AGENT_SHUTDOWN_TIMEOUT_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}

/// Cancel `token` on SIGTERM or SIGINT: processors finish the item in hand and start no new one.
/// If that takes longer than `grace`, or a second signal comes, the process exits at once; what
/// was cut short is safe to redo (backend ids are recorded in Waldur before the site create, and
/// every step is idempotent), and the next start completes it.
pub fn cancel_on_signals(token: CancellationToken, grace: Duration) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "Shutdown requested: finishing the items in hand"
        );
        token.cancel();
        tokio::select! {
            _ = wait_for_signal() => tracing::warn!("Second signal: exiting now"),
            _ = tokio::time::sleep(grace) => tracing::warn!("Items still in hand after the shutdown grace period: exiting now; the next start completes them"),
        }
        std::process::exit(143);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        mode: Mode,
        runs: Arc<AtomicUsize>,
        fail: bool,
    }

    #[async_trait]
    impl ModeRunner for Counting {
        fn mode(&self) -> Mode {
            self.mode
        }
        async fn run_cycle(&self, _cancel: &CancellationToken) -> CycleOutcome {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let mut o = CycleOutcome {
                processed: 2,
                offerings_ok: vec!["a".into()],
                ..CycleOutcome::default()
            };
            if self.fail {
                o.offerings_failed.push(("b".into(), "down".into()));
            }
            o
        }
    }

    fn counting(mode: Mode, fail: bool) -> (Arc<dyn ModeRunner>, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        (
            Arc::new(Counting {
                mode,
                runs: runs.clone(),
                fail,
            }),
            runs,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn modes_run_first_at_once_then_per_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hb = dir.path().join("hb");
        let mut s = Scheduler::new(Duration::from_secs(60), hb.clone(), Metrics::new());
        let (orders, order_runs) = counting(Mode::OrderProcess, false);
        let (report, report_runs) = counting(Mode::Report, false);
        s.add(orders, Duration::from_secs(5 * 60));
        s.add(report, Duration::from_secs(30 * 60));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(s.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(order_runs.load(Ordering::SeqCst), 1);
        assert_eq!(report_runs.load(Ordering::SeqCst), 1);
        // 31 minutes: order_process at 0,5,...,30 (7 runs), report at 0 and 30 (2 runs).
        tokio::time::sleep(Duration::from_secs(31 * 60)).await;
        assert_eq!(order_runs.load(Ordering::SeqCst), 7);
        assert_eq!(report_runs.load(Ordering::SeqCst), 2);
        cancel.cancel();
        task.await.expect("scheduler task ends on cancel");
        let beat: f64 = std::fs::read_to_string(&hb)
            .expect("heartbeat written")
            .parse()
            .expect("epoch float");
        assert!(beat > 1.6e9, "{beat}");
    }

    #[tokio::test]
    async fn run_once_reports_failed_offerings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new();
        let mut s = Scheduler::new(
            Duration::from_secs(60),
            dir.path().join("hb"),
            metrics.clone(),
        );
        let (good, _) = counting(Mode::OrderProcess, false);
        s.add(good, Duration::from_secs(60));
        assert!(s.run_once(&CancellationToken::new()).await);
        let (bad, _) = counting(Mode::Report, true);
        s.add(bad, Duration::from_secs(60));
        assert!(!s.run_once(&CancellationToken::new()).await);
        let text = metrics.encode();
        assert!(
            text.contains("waldur_agent_cycles_total{mode=\"order_process\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("waldur_agent_items_processed_total{mode=\"report\"} 2"),
            "{text}"
        );
    }
}
