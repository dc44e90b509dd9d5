//! The OTLP/HTTP (protobuf) span exporter. The SDK's batch processor exports from its own plain
//! thread, where the async reqwest client has no Tokio reactor; requests therefore run on a
//! small dedicated runtime thread owned here. Export never depends on the application's runtime,
//! so flushing from a guard dropped inside a single-threaded runtime cannot deadlock.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::TelemetryError;
use crate::exchange::http::install_crypto_provider;

const TRACES_PATH: &str = "/v1/traces";
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A collector answers an export with a tiny (often empty) body; more is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL; the traces path is appended unless present.
/// Errors never echo the value: it may carry credentials (`https://user:token@collector`).
pub(super) fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let bad = |message: String| TelemetryError::Config {
        key: "otlp_endpoint",
        message,
    };
    let endpoint = endpoint.trim();
    let parsed = url::Url::parse(endpoint).map_err(|e| bad(format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad("expected an http:// or https:// URL with a host".into()));
    }
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        Ok(base.to_owned())
    } else {
        Ok(format!("{base}{TRACES_PATH}"))
    }
}

/// A current-thread Tokio runtime on its own OS thread, stopped and joined on drop.
#[derive(Debug)]
pub(super) struct ExportRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExportRuntime {
    pub(super) fn start() -> Result<Self, TelemetryError> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                // Built and dropped on this thread, never inside the caller's async context.
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Returns when the sender fires or is dropped.
                rt.block_on(async move {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| {
                TelemetryError::Exporter(format!("cannot spawn the export thread: {e}"))
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| TelemetryError::Exporter("the export thread exited at start".into()))?
            .map_err(|e| {
                TelemetryError::Exporter(format!("cannot build the export runtime: {e}"))
            })?;
        Ok(Self {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// reqwest, driven by the export runtime whatever thread awaits it.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = task.await??;
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The span exporter for `endpoint` (already resolved by [`traces_url`]).
pub(super) fn span_exporter(
    endpoint: String,
    runtime: &ExportRuntime,
) -> Result<SpanExporter, TelemetryError> {
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("tradefleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TelemetryError::Exporter(format!("cannot build the HTTP client: {e}")))?;
    SpanExporter::builder()
        .with_http()
        .with_http_client(RuntimeClient {
            client,
            runtime: runtime.handle.clone(),
        })
        .with_endpoint(endpoint)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gets_the_traces_path_once() {
        for (input, want) in [
            ("http://otel:4318", "http://otel:4318/v1/traces"),
            ("http://otel:4318/", "http://otel:4318/v1/traces"),
            (
                " https://c.example/otlp ",
                "https://c.example/otlp/v1/traces",
            ),
            ("http://otel:4318/v1/traces", "http://otel:4318/v1/traces"),
        ] {
            assert_eq!(traces_url(input).unwrap(), want, "{input}");
        }
        for bad in [
            "",
            "otel:4318",
            "ftp://otel/",
            "not a url",
            "ftp://user:s3cret@otel/",
            "http://user:s3cret@[::1",
        ] {
            let err = traces_url(bad).unwrap_err().to_string();
            assert!(err.contains("telemetry.otlp_endpoint"), "{bad}: {err}");
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
    }
}
