//! Prometheus metrics and the `/healthz` + `/metrics` HTTP server (only when `metrics_listen` is
//! set).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::cli::Mode;
use crate::scheduler::CycleOutcome;

type Labels = Vec<(String, String)>;

fn mode_labels(mode: Mode) -> Labels {
    vec![("mode".to_owned(), mode.as_str().to_owned())]
}

/// Shared handle to every metric; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    cycles: Family<Labels, Counter>,
    cycle_duration: Family<Labels, Histogram>,
    items_processed: Family<Labels, Counter>,
    items_failed: Family<Labels, Counter>,
    offerings_failed: Family<Labels, Counter>,
    last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    event_connections_up: Family<Labels, Gauge>,
    /// HTTP requests each REST backend sent (from the kit's counters, read at scrape time).
    backend_requests: Family<Labels, Gauge>,
    /// Epoch seconds of the last scheduler tick, for `/healthz`.
    last_beat: AtomicU64,
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let cycles = Family::<Labels, Counter>::default();
        let cycle_duration = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.05, 2.0, 16))) as fn() -> Histogram,
        );
        let items_processed = Family::<Labels, Counter>::default();
        let items_failed = Family::<Labels, Counter>::default();
        let offerings_failed = Family::<Labels, Counter>::default();
        let last_success = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let event_connections_up = Family::<Labels, Gauge>::default();
        registry.register(
            "waldur_agent_cycles",
            "Cycles run, per mode",
            cycles.clone(),
        );
        registry.register(
            "waldur_agent_cycle_duration_seconds",
            "Duration of one cycle, per mode",
            cycle_duration.clone(),
        );
        registry.register(
            "waldur_agent_items_processed",
            "Items (orders, resources, memberships) handled successfully, per mode",
            items_processed.clone(),
        );
        registry.register(
            "waldur_agent_items_failed",
            "Items that failed, per mode",
            items_failed.clone(),
        );
        registry.register(
            "waldur_agent_offerings_failed",
            "Offerings that could not be processed in a cycle, per mode",
            offerings_failed.clone(),
        );
        registry.register(
            "waldur_agent_last_successful_cycle_timestamp_seconds",
            "Unix time of the last cycle in which every offering was processed, per mode",
            last_success.clone(),
        );
        registry.register(
            "waldur_agent_event_connections_up",
            "Event-bus connections currently up, per transport (stomp, mqtt)",
            event_connections_up.clone(),
        );
        let backend_requests = Family::<Labels, Gauge>::default();
        registry.register(
            "waldur_agent_backend_http_requests",
            "HTTP requests sent to the site by REST backends (Keystone, ...), per backend client",
            backend_requests.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                cycles,
                cycle_duration,
                items_processed,
                items_failed,
                offerings_failed,
                last_success,
                event_connections_up,
                backend_requests,
                last_beat: AtomicU64::new(now_epoch().to_bits()),
            }),
        }
    }

    pub fn record_cycle(&self, mode: Mode, duration: Duration, outcome: &CycleOutcome) {
        let labels = mode_labels(mode);
        let i = &self.inner;
        i.cycles.get_or_create(&labels).inc();
        i.cycle_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        i.items_processed
            .get_or_create(&labels)
            .inc_by(outcome.processed);
        i.items_failed.get_or_create(&labels).inc_by(outcome.failed);
        i.offerings_failed
            .get_or_create(&labels)
            .inc_by(outcome.offerings_failed.len() as u64);
        if outcome.all_offerings_ok() {
            i.last_success.get_or_create(&labels).set(now_epoch());
        }
    }

    /// For the event transports: how many connections of `transport` are up now.
    pub fn set_event_connections(&self, transport: &str, up: i64) {
        self.inner
            .event_connections_up
            .get_or_create(&vec![("transport".to_owned(), transport.to_owned())])
            .set(up);
    }

    /// The scheduler is alive.
    pub fn beat(&self) {
        self.inner
            .last_beat
            .store(now_epoch().to_bits(), Ordering::Relaxed);
    }

    pub fn seconds_since_beat(&self) -> f64 {
        now_epoch() - f64::from_bits(self.inner.last_beat.load(Ordering::Relaxed))
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        for (client, count) in backend_api::backend_request_counts() {
            self.inner
                .backend_requests
                .get_or_create(&vec![("client".to_owned(), client)])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Metrics,
    max_age: f64,
}

/// The router: `/metrics` and `/healthz` (200 while the tick loop beat within `max_age`).
pub fn router(metrics: Metrics, max_age: Duration) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(ServerState {
            metrics,
            max_age: max_age.as_secs_f64(),
        })
}

async fn metrics_handler(State(s): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn healthz_handler(State(s): State<ServerState>) -> impl IntoResponse {
    let age = s.metrics.seconds_since_beat();
    if age <= s.max_age {
        (StatusCode::OK, format!("ok: last tick {age:.0}s ago\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stale: last tick {age:.0}s ago (max {:.0}s)\n", s.max_age),
        )
    }
}

/// Bind `listen` and serve until `cancel` fires.
pub async fn serve(
    listen: &str,
    metrics: Metrics,
    max_age: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (metrics_listen): {e}"))?;
    tracing::info!(address = listen, "Serving /metrics and /healthz");
    let app = router(metrics, max_age);
    Ok(tokio::spawn(async move {
        let shutdown = async move { cancel.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "Metrics server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backend_requests_reach_the_metrics() {
        use wiremock::matchers::method;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
            .mount(&server)
            .await;
        let mut settings = http_kit::HttpSettings::new(
            "offering 'metrics'",
            "metrics-test",
            url::Url::parse(&server.uri()).expect("url"),
        );
        settings.counter = Some("metrics-test-site".into());
        let client = http_kit::RestClient::new(&settings).expect("client");
        for _ in 0..3 {
            client
                .send(http_kit::Request::get("/ping"))
                .await
                .expect("200");
        }
        let text = Metrics::new().encode();
        assert!(
            text.contains("waldur_agent_backend_http_requests{client=\"metrics-test-site\"} 3"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn serves_metrics_and_healthz() {
        let metrics = Metrics::new();
        metrics.record_cycle(
            Mode::Report,
            Duration::from_millis(120),
            &CycleOutcome {
                processed: 3,
                failed: 1,
                ..CycleOutcome::default()
            },
        );
        metrics.set_event_connections("stomp", 2);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let cancel = CancellationToken::new();
        let handle = serve(
            &addr.to_string(),
            metrics.clone(),
            Duration::from_secs(300),
            cancel.clone(),
        )
        .await
        .expect("serve");

        let body = http_get(addr, "/metrics").await;
        assert!(
            body.contains("waldur_agent_cycles_total{mode=\"report\"} 1"),
            "{body}"
        );
        assert!(body.contains("waldur_agent_items_failed_total{mode=\"report\"} 1"));
        assert!(body.contains("waldur_agent_items_processed_total{mode=\"report\"} 3"));
        assert!(body.contains("waldur_agent_cycle_duration_seconds_count{mode=\"report\"} 1"));
        assert!(
            body.contains("waldur_agent_last_successful_cycle_timestamp_seconds{mode=\"report\"}")
        );
        assert!(body.contains("waldur_agent_event_connections_up{transport=\"stomp\"} 2"));
        let health = http_get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        cancel.cancel();
        handle.await.expect("server stops");
    }

    #[tokio::test]
    async fn healthz_turns_503_when_stale() {
        let metrics = Metrics::new();
        metrics
            .inner
            .last_beat
            .store((now_epoch() - 1000.0).to_bits(), Ordering::Relaxed);
        let resp = healthz_handler(State(ServerState {
            metrics,
            max_age: 300.0,
        }))
        .await
        .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }
}
