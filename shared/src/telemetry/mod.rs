//! One telemetry module for the scheduler and worker binaries: `tracing` logs and spans with
//! optional OTLP export, W3C trace-context propagation through job payloads, a Prometheus
//! registry with typed recording helpers, and the `/metrics`, `/healthz`, `/readyz` server.
//!
//! Label cardinality is bounded by construction: every metric label comes from a small enum, the
//! venue registry or a `&'static str` chosen at the call site. Subscription, principal and order
//! ids never become labels (they belong on spans and in logs).

mod logging;
mod metrics;
mod otlp;
mod process;
mod propagation;
mod sampler;
mod server;

use std::net::SocketAddr;

pub use logging::{TelemetryGuard, init, init_with_writer};
pub use metrics::{
    CycleStage, JobEvent, LockEvent, Metrics, OrderOutcome, QueueState, RequestOutcome,
};
pub use propagation::{inject_current, set_parent_from};
pub use sampler::{SAMPLE_EVERY, Sampler, positions_without_stop_loss};
pub use server::{HealthServer, serve};

/// Why telemetry could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A `telemetry.*` setting that cannot be used; names the key.
    #[error("invalid configuration: telemetry.{key}: {message}")]
    Config { key: &'static str, message: String },
    /// The global `tracing` subscriber was already set (by an earlier `init` or a test harness).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
    /// The OTLP exporter or its background thread could not be built.
    #[error("cannot start the OTLP trace exporter: {0}")]
    Exporter(String),
    /// A metric could not be registered or encoded.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The health/metrics listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
