//! JSON-lines logging with upstream's field names, and secret redaction on the way out.
//!
//! Each event is one JSON object: `timestamp` (UTC ISO-8601), `level` (lower-case, structlog
//! style: `debug`, `info`, `warning`, `error`), `logger` (the tracing target), `event` (the
//! message), then the event's fields and the fields of the spans it is in.
//!
//! Redaction is a writer wrapper ([`RedactingMakeWriter`]): every configured secret value is
//! replaced by `***` in the finished line, so it also covers messages and fields from other crates
//! (an error string that quotes a URL with a token, a backend echoing a password).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

pub use agent_config::Redactor;

/// A `MakeWriter` whose writers buffer one event and write it scrubbed when dropped.
#[derive(Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: Redactor,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M, redactor: Redactor) -> Self {
        RedactingMakeWriter { inner, redactor }
    }
}

pub struct RedactingWriter<W: Write> {
    buf: Vec<u8>,
    inner: W,
    redactor: Redactor,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let text = String::from_utf8_lossy(&self.buf);
            let clean = self.redactor.scrub(&text);
            self.inner.write_all(clean.as_bytes())?;
            self.buf.clear();
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write.
        let _ = self.flush();
    }
}

impl<'a, M> MakeWriter<'a> for RedactingMakeWriter<M>
where
    M: MakeWriter<'a>,
{
    type Writer = RedactingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            buf: Vec::with_capacity(256),
            inner: self.inner.make_writer(),
            redactor: self.redactor.clone(),
        }
    }
}

/// A `MakeWriter` into a shared buffer (tests, and capturing output to scrub).
#[derive(Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn contents(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

pub struct SharedBufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBufferWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut b) => {
                b.extend_from_slice(data);
                Ok(data.len())
            }
            Err(_) => Err(io::Error::other("log buffer poisoned")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for SharedBuffer {
    type Writer = SharedBufferWriter;
    fn make_writer(&'a self) -> Self::Writer {
        SharedBufferWriter(self.0.clone())
    }
}

/// structlog's level names.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warning",
        Level::ERROR => "error",
    }
}

/// The tracing filter directive for a config `log_level` (DEBUG/INFO/WARNING/ERROR/CRITICAL).
/// HTTP client internals stay at `warn` whatever the level: their debug lines carry URLs.
pub fn filter_directive(log_level: &str) -> String {
    let level = match log_level.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        "TRACE" => "trace",
        _ => "info",
    };
    format!("{level},hyper=warn,hyper_util=warn,reqwest=warn,rustls=warn,h2=warn")
}

/// One JSON object per event, upstream's keys.
pub struct JsonLines;

struct FieldCollector<'a> {
    fields: &'a mut Map<String, Value>,
    message: &'a mut Option<String>,
}

impl Visit for FieldCollector<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // Include the cause chain: the useful part of an error is often underneath.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(text, ": {s}");
            source = s.source();
        }
        self.put(field, Value::from(text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl FieldCollector<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            *self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

/// Span fields are stored pre-rendered as JSON by [`JsonFields`].
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut map = Map::new();
        let mut message = None;
        fields.record(&mut FieldCollector {
            fields: &mut map,
            message: &mut message,
        });
        if let Some(m) = message {
            map.insert("message".to_owned(), Value::from(m));
        }
        write!(writer, "{}", Value::Object(map))
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".to_owned(),
            Value::from(
                jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string(),
            ),
        );
        line.insert("level".to_owned(), Value::from(level_name(meta.level())));
        line.insert("logger".to_owned(), Value::from(meta.target()));
        line.insert("event".to_owned(), Value::from(""));

        // Outer spans first, so the event's own fields win on a name clash.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
                {
                    for (k, v) in map {
                        line.insert(k, v);
                    }
                }
            }
        }
        let mut fields = Map::new();
        let mut message = None;
        event.record(&mut FieldCollector {
            fields: &mut fields,
            message: &mut message,
        });
        line.insert("event".to_owned(), Value::from(message.unwrap_or_default()));
        for (k, v) in fields {
            let key = match k.as_str() {
                // Keep upstream's reserved keys for what they mean.
                "timestamp" | "level" | "logger" | "event" => format!("field_{k}"),
                _ => k,
            };
            line.insert(key, v);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Install the global subscriber: JSON lines on stdout, filtered at `log_level`, redacted; with
/// `sentry`, error events (and warnings as breadcrumbs) also go to Sentry.
pub fn init(log_level: &str, redactor: Redactor, sentry: bool) -> anyhow::Result<()> {
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    let filter = tracing_subscriber::EnvFilter::try_new(filter_directive(log_level))?;
    let json = tracing_subscriber::fmt::layer()
        .event_format(JsonLines)
        .fmt_fields(JsonFields)
        .with_writer(RedactingMakeWriter::new(io::stdout, redactor));
    let breadcrumbs = sentry.then(|| {
        BreadcrumbLayer::new().with_filter(filter_fn(|m| {
            matches!(*m.level(), Level::WARN | Level::INFO)
        }))
    });
    let errors = sentry.then(|| ErrorLayer::new().with_filter(LevelFilter::ERROR));
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(breadcrumbs)
        .with(errors);
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(())
}

/// Start the Sentry client for `dsn`: environment from `SENTRY_ENVIRONMENT`, no PII, and every
/// event scrubbed by `redactor` before it leaves. `None` (with a reason) when the DSN is unusable.
pub fn init_sentry(
    dsn: &str,
    release: &str,
    redactor: Redactor,
) -> Result<sentry::ClientInitGuard, String> {
    let dsn: sentry::types::Dsn = dsn
        .parse()
        .map_err(|e| format!("sentry_dsn is not a valid DSN: {e}"))?;
    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = Some(release.to_owned().into());
    options.environment = std::env::var("SENTRY_ENVIRONMENT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .map(Into::into);
    options.send_default_pii = false;
    options.before_send = Some(std::sync::Arc::new(move |event| {
        scrub_event(&redactor, event)
    }));
    Ok(sentry::init(options))
}

/// The event with every secret replaced; dropped if it cannot be re-read after scrubbing.
fn scrub_event(
    redactor: &Redactor,
    event: sentry::protocol::Event<'static>,
) -> Option<sentry::protocol::Event<'static>> {
    let text = serde_json::to_string(&event).ok()?;
    serde_json::from_str(&redactor.scrub(&text)).ok()
}

/// The subscriber [`init`] builds (without Sentry), over any writer (tests capture into a
/// [`SharedBuffer`]).
pub fn build_subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    let layer = tracing_subscriber::fmt::layer()
        .event_format(JsonLines)
        .fmt_fields(JsonFields)
        .with_writer(writer);
    tracing_subscriber::registry().with(filter).with(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(redactor: Redactor, f: impl FnOnce()) -> String {
        let buf = SharedBuffer::default();
        let filter = tracing_subscriber::EnvFilter::new("debug");
        let subscriber = build_subscriber(filter, RedactingMakeWriter::new(buf.clone(), redactor));
        tracing::subscriber::with_default(subscriber, f);
        buf.contents()
    }

    #[test]
    fn lines_have_upstream_keys() {
        let out = capture(Redactor::default(), || {
            let span = tracing::info_span!("offering", offering = "HPC");
            let _g = span.enter();
            tracing::warn!(order_uuid = "abc", count = 3, "Order failed");
        });
        let line: Value = serde_json::from_str(out.trim()).expect("one JSON line");
        assert_eq!(line["event"], "Order failed");
        assert_eq!(line["level"], "warning");
        assert_eq!(line["logger"], module_path!());
        assert_eq!(line["order_uuid"], "abc");
        assert_eq!(line["count"], 3);
        assert_eq!(line["offering"], "HPC");
        let ts = line["timestamp"].as_str().expect("timestamp string");
        assert!(
            ts.ends_with('Z') && ts.parse::<jiff::Timestamp>().is_ok(),
            "{ts}"
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_messages_fields_and_spans() {
        let redactor = Redactor::new(["s3cr3t-token", "pa\"ss"]);
        let out = capture(redactor, || {
            let span = tracing::info_span!("req", header = "Token s3cr3t-token");
            let _g = span.enter();
            tracing::error!(password = "pa\"ss", "login with s3cr3t-token failed");
            tracing::info!(target: "some_other_crate", "url https://x/?token=s3cr3t-token");
        });
        assert!(!out.contains("s3cr3t-token"), "{out}");
        assert!(
            !out.contains("pa\\\"ss") && !out.contains("pa\"ss"),
            "{out}"
        );
        // message, span field and event field of the first line; message and span field of the second.
        assert_eq!(out.matches("***").count(), 5, "{out}");
        for line in out.lines() {
            serde_json::from_str::<Value>(line).expect("still valid JSON after redaction");
        }
    }

    #[test]
    fn sentry_events_are_scrubbed() {
        let redactor = Redactor::new(["hunter2-token"]);
        let event = sentry::protocol::Event {
            message: Some("auth with hunter2-token failed".to_owned()),
            ..Default::default()
        };
        let clean = scrub_event(&redactor, event).expect("event kept");
        assert_eq!(clean.message.as_deref(), Some("auth with *** failed"));
    }

    #[test]
    fn filter_levels() {
        assert!(filter_directive("warning").starts_with("warn,"));
        assert!(filter_directive("CRITICAL").starts_with("error,"));
        assert!(filter_directive("DEBUG").starts_with("debug,"));
    }
}
