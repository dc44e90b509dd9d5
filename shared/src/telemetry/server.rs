//! The operations endpoint of each binary: `GET /metrics` (Prometheus text), `GET /healthz`
//! (the process is up) and `GET /readyz` (the binary's own check: database, Redis, schema).
//! Plain hyper on a Tokio listener; it stops accepting when `shutdown` resolves and lets open
//! requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::TelemetryError;
use super::metrics::Metrics;

type Readiness = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A check that hangs (a dead database socket) answers 503 after this long.
const READINESS_TIMEOUT: Duration = Duration::from_secs(5);
/// Slow or idle clients cannot hold a connection open for longer than this before sending a
/// request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REASON_CHARS: usize = 1024;
const TEXT: &str = "text/plain; charset=utf-8";

struct State {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// A running health/metrics server.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Wait until the server has stopped after `shutdown` resolved and open requests finished.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "health server task ended abnormally");
        }
    }
}

/// Bind `addr` (port 0 picks a free port) and serve until `shutdown` resolves; returns once
/// listening.
///
/// `readiness` answers `Ok(())` when the process can do its work, else the reason. The reason is
/// the 503 body, readable by anyone who can reach the port, so it must not hold secrets (no
/// connection URLs). A check that takes longer than 5 s counts as not ready.
pub async fn serve<R, F>(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: R,
    shutdown: F,
) -> Result<HealthServer, TelemetryError>
where
    R: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let state = Arc::new(State {
        metrics,
        readiness: Arc::new(readiness),
    });
    let task = tokio::spawn(accept_loop(listener, state, shutdown));
    tracing::info!(addr = %bound, "health and metrics server listening");
    Ok(HealthServer { addr: bound, task })
}

async fn accept_loop<F>(listener: TcpListener, state: Arc<State>, shutdown: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, state.clone(), stop_rx.clone()));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "health server accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    tracing::info!("health and metrics server stopped");
}

async fn connection(stream: TcpStream, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, &req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "health server connection error");
            }
        }
        // The `watch::Ref` is dropped inside, so it is never held across an await.
        () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    response
}

async fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => match state.metrics.render() {
            Ok(body) => {
                let mut response = text(StatusCode::OK, body);
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(prometheus::TEXT_FORMAT),
                );
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot render metrics");
                text(StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n")
            }
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => match tokio::time::timeout(READINESS_TIMEOUT, (state.readiness)()).await {
            Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
            Ok(Err(reason)) => {
                let mut body: String = reason.chars().take(MAX_REASON_CHARS).collect();
                body.push('\n');
                text(StatusCode::SERVICE_UNAVAILABLE, body)
            }
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "readiness check timed out\n",
            ),
        },
    }
}
