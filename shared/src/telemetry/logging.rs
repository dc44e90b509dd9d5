//! Process-wide `tracing` setup: env-filter, text or JSON lines on stdout (JSON carries the
//! current trace and span id), and the OpenTelemetry layer with OTLP export when configured.
//!
//! The OpenTelemetry layer is installed even when export is off, so trace ids still appear in
//! logs and still travel through job payloads: a cycle's log lines can be joined to the enqueue
//! that caused it without a collector.

use std::io::IsTerminal;

use chrono::{SecondsFormat, Utc};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use super::TelemetryError;
use super::otlp::{ExportRuntime, span_exporter, traces_url};
use crate::config::{LogFormat, TelemetryConfig};

/// Instrumentation scope name of every span the fleet creates.
const TRACER_NAME: &str = "tradefleet";

/// Keeps trace export alive; dropping it flushes buffered spans and shuts the exporter down.
#[must_use = "dropping the guard shuts trace export down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    /// Present when OTLP export is on. Declared after `provider`, which is shut down first in
    /// `drop`; the runtime that sends the last batch stops after it.
    runtime: Option<ExportRuntime>,
}

impl TelemetryGuard {
    /// Export every finished span now (blocks until the collector answered or timed out).
    pub fn flush(&self) -> Result<(), TelemetryError> {
        if self.runtime.is_none() {
            return Ok(());
        }
        self.provider
            .force_flush()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))
    }

    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.runtime.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown()
            && self.runtime.is_some()
        {
            tracing::warn!(error = %e, "trace exporter shutdown failed");
        }
        // `runtime` drops after this, stopping and joining the export thread.
    }
}

/// Set up logging and tracing for the whole process. Call once, early, from `main`.
///
/// `service` names the process (`tradefleet-worker`) unless `cfg.service_name` overrides it.
/// Export is on when `cfg.otlp_endpoint` is set (a base URL such as `http://otel:4318`).
pub fn init(service: &str, cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    init_with_writer(
        service,
        cfg,
        std::io::stdout,
        std::io::stdout().is_terminal(),
    )
}

/// [`init`] with log lines written to `writer` (a CLI whose stdout is its output logs to stderr).
pub fn init_with_writer<W>(
    service: &str,
    cfg: &TelemetryConfig,
    writer: W,
    ansi: bool,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = parse_filter(&cfg.log_level)?;
    let service = cfg
        .service_name
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(service);
    let guard = tracer_provider(service, cfg.otlp_endpoint.as_deref())?;
    let subscriber = build_subscriber(filter, cfg.log_format, ansi, writer, &guard.provider);
    // On error `guard` drops here and stops the exporter it started.
    subscriber
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialized)?;
    Ok(guard)
}

fn parse_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| TelemetryError::Config {
            key: "log_level",
            message: format!("{directives:?}: {e}"),
        })
}

fn tracer_provider(
    service: &str,
    endpoint: Option<&str>,
) -> Result<TelemetryGuard, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        None => Ok(TelemetryGuard {
            provider: builder.build(),
            runtime: None,
        }),
        Some(endpoint) => {
            let url = traces_url(endpoint)?;
            let runtime = ExportRuntime::start()?;
            let exporter = span_exporter(url, &runtime)?;
            Ok(TelemetryGuard {
                provider: builder.with_batch_exporter(exporter).build(),
                runtime: Some(runtime),
            })
        }
    }
}

/// The layered subscriber; `writer` is stdout in production and a buffer in tests.
fn build_subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    writer: W,
    provider: &SdkTracerProvider,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(writer),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLine)
                    .with_writer(writer),
            ),
        ),
    };
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
}

/// One JSON object per event: timestamp, level, target, message, fields, the span stack with
/// its fields, and `trace_id`/`span_id` of the active OpenTelemetry span.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
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
            "timestamp".into(),
            Utc::now()
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());

        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        if let Some(message) = fields.remove("message") {
            line.insert("message".into(), message);
        }
        line.insert("fields".into(), Value::Object(fields));

        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let mut obj = Map::new();
                    obj.insert("name".into(), span.name().into());
                    if let Some(formatted) = span.extensions().get::<FormattedFields<N>>()
                        && let Ok(Value::Object(span_fields)) =
                            serde_json::from_str::<Value>(formatted)
                    {
                        obj.extend(span_fields);
                    }
                    Value::Object(obj)
                })
                .collect();
            if let Some(current) = spans.last() {
                line.insert("span".into(), current.clone());
            }
            line.insert("spans".into(), Value::Array(spans));
        }

        let cx = opentelemetry::Context::current();
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        if sc.is_valid() {
            line.insert("trace_id".into(), sc.trace_id().to_string().into());
            line.insert("span_id".into(), sc.span_id().to_string().into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string().into(), Value::Number);
        self.0.insert(field.name().into(), v);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(buf: &Buf) -> Vec<Value> {
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn json_lines_carry_the_active_trace_and_span_ids() {
        let buf = Buf::default();
        let writer = buf.clone();
        let provider = SdkTracerProvider::builder().build();
        let sub = build_subscriber(
            parse_filter("info").unwrap(),
            LogFormat::Json,
            false,
            move || writer.clone(),
            &provider,
        );
        let (trace_id, span_id) = tracing::subscriber::with_default(sub, || {
            tracing::info!("outside");
            let span = tracing::info_span!("cycle", subscription_id = 7_i64, exchange = "paper");
            span.in_scope(|| {
                tracing::info!(stage = "crawl", n = 3_u64, "inside");
                tracing::debug!("filtered out");
                let sc = tracing::Span::current()
                    .context()
                    .span()
                    .span_context()
                    .clone();
                (sc.trace_id().to_string(), sc.span_id().to_string())
            })
        });
        let lines = lines(&buf);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["message"], "outside");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);

        let inside = &lines[1];
        assert_eq!(inside["message"], "inside");
        assert_eq!(inside["level"], "INFO");
        assert_eq!(inside["fields"]["stage"], "crawl");
        assert_eq!(inside["fields"]["n"], 3);
        assert_eq!(inside["span"]["name"], "cycle");
        assert_eq!(inside["span"]["subscription_id"], 7);
        assert_eq!(inside["spans"][0]["exchange"], "paper");
        assert_eq!(inside["trace_id"], trace_id.as_str());
        assert_eq!(inside["span_id"], span_id.as_str());
        assert_eq!(trace_id.len(), 32);
        assert_eq!(span_id.len(), 16);
        assert_ne!(trace_id, "0".repeat(32));
    }

    /// The guard is dropped on the only thread of a current-thread runtime: the final export
    /// must not need that runtime (it runs on the exporter's own thread).
    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_guard_inside_a_single_threaded_runtime_exports() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let collector = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/traces"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&collector)
            .await;
        let guard = tracer_provider("unit", Some(&format!("{}/", collector.uri()))).unwrap();
        let sub = build_subscriber(
            parse_filter("info").unwrap(),
            LogFormat::Text,
            false,
            std::io::sink,
            &guard.provider,
        );
        tracing::subscriber::with_default(sub, || {
            drop(tracing::info_span!("in_current_thread_runtime").entered());
        });
        drop(guard);
        let requests = collector.received_requests().await.unwrap();
        assert_eq!(requests.len(), 1);
        let body = String::from_utf8_lossy(&requests[0].body);
        assert!(body.contains("in_current_thread_runtime"));
        assert!(body.contains("unit"));
    }

    #[test]
    fn bad_filter_names_the_key() {
        let err = parse_filter("info,[[[").unwrap_err().to_string();
        assert!(err.contains("telemetry.log_level"), "{err}");
    }
}
