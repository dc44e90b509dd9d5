//! W3C trace context (`traceparent`, `tracestate`) carried in a job payload, so the worker's cycle
//! span continues the trace of whoever enqueued the job.

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Longest value accepted from a payload; a `traceparent` is 55 bytes, `tracestate` at most 512
/// list members of bounded size by the spec, so anything larger is not trace context.
const MAX_VALUE_LEN: usize = 8 * 1024;

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` carries nothing; keep payloads small.
        if !value.is_empty() {
            self.0.insert(key.to_owned(), value);
        }
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| v.len() <= MAX_VALUE_LEN)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The trace context of the current span, for a job payload's `trace_context`. Empty when there
/// is no current span or no OpenTelemetry layer is installed (see [`super::init`]).
pub fn inject_current() -> BTreeMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut map = BTreeMap::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut MapInjector(&mut map));
    }
    map
}

/// Make `span` a child of the trace context in `carrier`. Call it right after creating the span,
/// before it is entered. Returns `false` (and changes nothing) when the carrier holds no valid
/// context, e.g. a job enqueued without tracing or with a malformed `traceparent`.
pub fn set_parent_from(carrier: &BTreeMap<String, String>, span: &tracing::Span) -> bool {
    let parent = TraceContextPropagator::new().extract(&MapExtractor(carrier));
    if !parent.span().span_context().is_valid() {
        return false;
    }
    match span.set_parent(parent) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "trace context from the job payload not applied");
            false
        }
    }
}
