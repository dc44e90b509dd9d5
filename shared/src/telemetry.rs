//! Logging, tracing spans, Prometheus registry and optional OTLP export.
