//! Telemetry: metric families and bounded label cardinality, W3C trace propagation from an
//! enqueuer's span to a worker's span exported over OTLP/HTTP to a local receiver, and the
//! `/metrics`, `/healthz`, `/readyz` server. Loopback only.
//!
//! Only `trace_context_crosses_the_queue_and_reaches_the_collector` installs the global
//! subscriber; no other test in this file may call `init` successfully.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tradefleet::bot::order_ids::OrderRole;
use tradefleet::bot::risk::Breaker;
use tradefleet::config::{LogFormat, TelemetryConfig};
use tradefleet::exchange::ExchangeError;
use tradefleet::queue::job::Trigger;
use tradefleet::telemetry::{
    CycleStage, JobEvent, LockEvent, Metrics, OrderOutcome, QueueState, TelemetryError, init,
    inject_current, serve, set_parent_from,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// ---------------------------------------------------------------- metrics

/// Every family with its Prometheus type.
const FAMILIES: &[(&str, &str)] = &[
    ("tradefleet_jobs_enqueued_total", "counter"),
    ("tradefleet_jobs_started_total", "counter"),
    ("tradefleet_jobs_succeeded_total", "counter"),
    ("tradefleet_jobs_failed_total", "counter"),
    ("tradefleet_jobs_retried_total", "counter"),
    ("tradefleet_jobs_dead_lettered_total", "counter"),
    ("tradefleet_cycle_duration_seconds", "histogram"),
    ("tradefleet_schedule_lateness_seconds", "histogram"),
    ("tradefleet_queue_depth", "gauge"),
    ("tradefleet_lock_acquired_total", "counter"),
    ("tradefleet_lock_contended_total", "counter"),
    ("tradefleet_lock_lost_total", "counter"),
    ("tradefleet_scheduler_leader", "gauge"),
    ("tradefleet_scheduler_due_backlog", "gauge"),
    ("tradefleet_scheduler_skipped_slots_total", "counter"),
    ("tradefleet_exchange_requests_total", "counter"),
    ("tradefleet_exchange_request_duration_seconds", "histogram"),
    ("tradefleet_exchange_rate_limit_headroom_ratio", "gauge"),
    ("tradefleet_orders_total", "counter"),
    ("tradefleet_circuit_breaker_trips_total", "counter"),
    ("tradefleet_positions_without_stop_loss", "gauge"),
];

#[cfg(target_os = "linux")]
const PROCESS_FAMILIES: &[(&str, &str)] = &[
    ("process_resident_memory_bytes", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
];

fn slot() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn rate_limited() -> ExchangeError {
    ExchangeError::RateLimited {
        venue: "binance",
        retry_after: None,
        message: "apiKey=SECRETKEY123 over the limit".into(),
    }
}

/// Use every helper once.
fn record_everything(m: &Metrics) {
    for event in [
        JobEvent::Enqueued,
        JobEvent::Started,
        JobEvent::Succeeded,
        JobEvent::Failed,
        JobEvent::Retried,
        JobEvent::DeadLettered,
    ] {
        m.job(event, Trigger::Scheduled);
    }
    m.cycle_stage("paper", CycleStage::Total, Duration::from_millis(12));
    m.schedule_lateness(slot(), slot() + chrono::Duration::milliseconds(300));
    for state in [
        QueueState::Waiting,
        QueueState::InFlight,
        QueueState::Delayed,
        QueueState::Dead,
    ] {
        m.queue_depth(state, 3);
    }
    m.lock(LockEvent::Acquired);
    m.lock(LockEvent::Contended);
    m.lock(LockEvent::Lost);
    m.scheduler_leader(true);
    m.scheduler_due_backlog(42);
    m.scheduler_skipped_slots(2);
    m.exchange_request("binance", "place_order", Ok(()), Duration::from_millis(80));
    m.exchange_request(
        "binance",
        "place_order",
        Err(&rate_limited()),
        Duration::from_millis(5),
    );
    m.rate_limit_headroom("binance", 0.75);
    m.order("binance", OrderRole::Entry, OrderOutcome::Placed);
    m.order(
        "binance",
        OrderRole::StopLoss,
        OrderOutcome::Failed(&rate_limited()),
    );
    m.breaker_tripped(Breaker::DailyLoss);
    m.positions_without_stop_loss(0);
}

fn series_count(m: &Metrics) -> usize {
    m.registry()
        .gather()
        .iter()
        .map(|family| family.get_metric().len())
        .sum()
}

#[test]
fn every_family_renders_with_help_and_type() {
    let m = Metrics::new().unwrap();
    record_everything(&m);
    let text = m.render().unwrap();
    let mut families = FAMILIES.to_vec();
    #[cfg(target_os = "linux")]
    families.extend_from_slice(PROCESS_FAMILIES);
    for (name, kind) in families {
        assert!(text.contains(&format!("# HELP {name} ")), "HELP of {name}");
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "TYPE of {name}"
        );
    }
    assert!(text.contains(
        "tradefleet_exchange_requests_total{endpoint=\"place_order\",outcome=\"rate_limited\",venue=\"binance\"} 1"
    ));
    assert!(text.contains(
        "tradefleet_orders_total{outcome=\"rate_limited\",role=\"stop_loss\",venue=\"binance\"} 1"
    ));
    assert!(text.contains("tradefleet_queue_depth{state=\"in_flight\"} 3"));
    assert!(text.contains("tradefleet_scheduler_leader 1"));
    assert!(text.contains("tradefleet_exchange_rate_limit_headroom_ratio{venue=\"binance\"} 0.75"));
    // Error messages (which may echo request parameters) never reach the exposition.
    assert!(!text.contains("SECRETKEY123"));
}

#[test]
fn a_fresh_registry_already_exposes_counters_of_small_enums() {
    let text = Metrics::new().unwrap().render().unwrap();
    assert!(text.contains("tradefleet_jobs_dead_lettered_total{trigger=\"manual\"} 0"));
    assert!(text.contains("tradefleet_circuit_breaker_trips_total{breaker=\"max_drawdown\"} 0"));
    assert!(text.contains("tradefleet_lock_lost_total 0"));
    assert!(text.contains("tradefleet_positions_without_stop_loss 0"));
    #[cfg(target_os = "linux")]
    {
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap();
        assert!(rss.parse::<f64>().unwrap() > 0.0, "{rss}");
        let fds = text
            .lines()
            .find_map(|l| l.strip_prefix("process_open_fds "))
            .unwrap();
        assert!(fds.parse::<f64>().unwrap() >= 3.0, "{fds}");
    }
}

#[test]
fn venue_names_outside_the_registry_collapse_to_other() {
    let m = Metrics::new().unwrap();
    m.exchange_request("sub-4711", "get_ticker", Ok(()), Duration::from_millis(1));
    m.order("Sub-4712", OrderRole::Close, OrderOutcome::AlreadyPlaced);
    let text = m.render().unwrap();
    assert!(!text.contains("4711") && !text.contains("4712"));
    assert!(text.contains(
        "tradefleet_orders_total{outcome=\"already_placed\",role=\"close\",venue=\"other\"} 1"
    ));
}

#[test]
fn ten_thousand_subscriptions_do_not_add_series() {
    let m = Metrics::new().unwrap();
    let roles = [
        OrderRole::Entry,
        OrderRole::StopLoss,
        OrderRole::TakeProfit,
        OrderRole::Close,
    ];
    let record = |subscription_id: i64| {
        let span = tracing::info_span!("cycle", subscription_id, exchange = "paper");
        let _entered = span.enter();
        let i = usize::try_from(subscription_id).unwrap();
        let stage = CycleStage::ALL[i % CycleStage::ALL.len()];
        m.job(JobEvent::Started, Trigger::Scheduled);
        m.cycle_stage(
            "paper",
            stage,
            Duration::from_micros(subscription_id as u64),
        );
        m.schedule_lateness(
            slot(),
            slot() + chrono::Duration::milliseconds(subscription_id),
        );
        m.order("paper", roles[i % roles.len()], OrderOutcome::Placed);
        m.exchange_request("paper", "place_order", Ok(()), Duration::from_millis(1));
        // A caller passing an id where a venue belongs still cannot add a series.
        m.exchange_request(
            &format!("sub-{subscription_id}"),
            "get_ticker",
            Ok(()),
            Duration::from_millis(1),
        );
        m.lock(LockEvent::Acquired);
    };
    // Warm-up: every label combination the loop below can produce.
    for id in 0..28 {
        record(id);
    }
    let before = series_count(&m);
    for id in 1_000..11_000 {
        record(id);
    }
    assert_eq!(series_count(&m), before);
    let text = m.render().unwrap();
    assert!(text.contains("tradefleet_schedule_lateness_seconds_count 10028"));
    assert!(text.contains("tradefleet_lock_acquired_total 10028"));
    assert!(!text.contains("sub-"));
}

// ---------------------------------------------------------------- tracing

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `00-<32 hex>-<16 hex>-<2 hex>`; returns the trace id and parent span id.
fn parse_traceparent(carrier: &BTreeMap<String, String>) -> (String, String) {
    let tp = carrier.get("traceparent").expect("a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert!(
        is_lower_hex(parts[1], 32) && parts[1] != "0".repeat(32),
        "{tp}"
    );
    assert!(
        is_lower_hex(parts[2], 16) && parts[2] != "0".repeat(16),
        "{tp}"
    );
    assert!(is_lower_hex(parts[3], 2), "{tp}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[test]
fn init_rejects_bad_settings_before_touching_the_process() {
    let bad_filter = TelemetryConfig {
        log_level: "info,[[[".into(),
        ..TelemetryConfig::default()
    };
    let err = init("t", &bad_filter).unwrap_err();
    assert!(
        matches!(
            err,
            TelemetryError::Config {
                key: "log_level",
                ..
            }
        ),
        "{err}"
    );
    let bad_endpoint = TelemetryConfig {
        otlp_endpoint: Some("collector:4318".into()),
        ..TelemetryConfig::default()
    };
    let err = init("t", &bad_endpoint).unwrap_err();
    assert!(
        matches!(
            err,
            TelemetryError::Config {
                key: "otlp_endpoint",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_crosses_the_queue_and_reaches_the_collector() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let cfg = TelemetryConfig {
        log_level: "info".into(),
        log_format: LogFormat::Json,
        otlp_endpoint: Some(collector.uri()),
        service_name: Some("telemetry-test".into()),
    };
    let guard = init("tradefleet-test", &cfg).unwrap();
    assert!(guard.exporting());
    assert!(matches!(
        init("again", &TelemetryConfig::default()),
        Err(TelemetryError::AlreadyInitialized)
    ));

    // No span in scope: nothing to propagate.
    assert!(inject_current().is_empty());

    // Scheduler side: the enqueue span's context goes into the job payload.
    let carrier = {
        let enqueue = tracing::info_span!("enqueue", batch = 1_u64);
        let _entered = enqueue.enter();
        inject_current()
    };
    let (trace_id, enqueue_span_id) = parse_traceparent(&carrier);

    // Worker side: the cycle span continues that trace.
    let cycle = tracing::info_span!("cycle", subscription_id = 7_i64);
    assert!(set_parent_from(&carrier, &cycle));
    let (inner_trace, cycle_span_id) = cycle.in_scope(|| parse_traceparent(&inject_current()));
    assert_eq!(inner_trace, trace_id);
    assert_ne!(cycle_span_id, enqueue_span_id);
    drop(cycle);

    // Payloads from outside: malformed or missing context is ignored, never a panic.
    for bad in [
        BTreeMap::new(),
        BTreeMap::from([("traceparent".to_owned(), "00-zz-yy-01".to_owned())]),
        BTreeMap::from([(
            "traceparent".to_owned(),
            format!("00-{}-{}-01", "0".repeat(32), "1".repeat(16)),
        )]),
    ] {
        let span = tracing::info_span!("cycle_without_parent");
        assert!(!set_parent_from(&bad, &span), "{bad:?}");
    }

    let guard = tokio::task::spawn_blocking(move || {
        guard.flush().unwrap();
        guard
    })
    .await
    .unwrap();

    let requests = collector.received_requests().await.unwrap();
    assert!(!requests.is_empty());
    let mut spans = Vec::new();
    let mut services = Vec::new();
    for request in &requests {
        assert_eq!(
            request.headers.get("content-type").unwrap(),
            "application/x-protobuf"
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        for resource_spans in export.resource_spans {
            if let Some(resource) = &resource_spans.resource {
                for attr in &resource.attributes {
                    if attr.key == "service.name"
                        && let Some(AnyValue::StringValue(s)) =
                            attr.value.as_ref().and_then(|v| v.value.clone())
                    {
                        services.push(s);
                    }
                }
            }
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("span {name} not exported"))
    };
    let enqueue = find("enqueue");
    let cycle = find("cycle");
    assert_eq!(spans.iter().filter(|s| s.name == "cycle").count(), 1);
    assert!(find("cycle_without_parent").parent_span_id.is_empty());
    assert_eq!(enqueue.trace_id.len(), 16);
    assert_eq!(hex::encode(&enqueue.trace_id), trace_id);
    assert_eq!(cycle.trace_id, enqueue.trace_id);
    assert_eq!(hex::encode(&enqueue.span_id), enqueue_span_id);
    assert_eq!(hex::encode(&cycle.span_id), cycle_span_id);
    assert_eq!(cycle.parent_span_id, enqueue.span_id);
    assert!(
        services.iter().all(|s| s == "telemetry-test"),
        "{services:?}"
    );
    assert!(!services.is_empty());

    assert_eq!(
        carrier.keys().collect::<Vec<_>>(),
        ["traceparent"],
        "no empty tracestate"
    );

    // Dropping the guard exports what is still buffered.
    drop(tracing::info_span!("last_before_exit").entered());
    let before = collector.received_requests().await.unwrap().len();
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
    let requests = collector.received_requests().await.unwrap();
    let exported_on_drop: Vec<String> = requests[before..]
        .iter()
        .flat_map(|r| {
            ExportTraceServiceRequest::decode(r.body.as_slice())
                .unwrap()
                .resource_spans
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .map(|s| s.name)
        .collect();
    assert_eq!(exported_on_drop, ["last_before_exit"]);
}

// ---------------------------------------------------------------- server

/// One HTTP/1.1 request on a fresh loopback connection; returns the status and the raw response.
async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, response)
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn health_server_answers_and_stops() {
    let metrics = Arc::new(Metrics::new().unwrap());
    metrics.lock(LockEvent::Contended);
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let readiness = move || -> BoxFuture<'static, Result<(), String>> {
        let ok = flag.load(Ordering::SeqCst);
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err("schema: migrations pending".to_owned())
            }
        })
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        readiness,
        async move {
            let _ = stop_rx.await;
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let (status, response) = get(addr, "GET", "/healthz").await;
    assert_eq!((status, body(&response)), (200, "ok\n"));

    let (status, response) = get(addr, "GET", "/readyz").await;
    assert_eq!(status, 503);
    assert!(body(&response).contains("migrations pending"), "{response}");
    ready.store(true, Ordering::SeqCst);
    let (status, _) = get(addr, "GET", "/readyz").await;
    assert_eq!(status, 200);

    let (status, response) = get(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    assert!(body(&response).contains("tradefleet_lock_contended_total 1\n"));

    assert_eq!(get(addr, "GET", "/nope").await.0, 404);
    assert_eq!(get(addr, "POST", "/metrics").await.0, 405);

    // The port is taken: a second server reports which address failed.
    let err = serve(
        addr,
        metrics,
        || -> BoxFuture<'static, Result<(), String>> { Box::pin(async { Ok(()) }) },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TelemetryError::Bind { .. }), "{err}");

    // An idle keep-alive connection (as Prometheus keeps) does not hold shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 512];
    while !seen.ends_with(b"\r\n\r\nok\n") {
        let n = idle.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }

    stop_tx.send(()).unwrap();
    server.stopped().await;
    // The idle connection was closed and the port no longer accepts.
    assert_eq!(idle.read(&mut buf).await.unwrap(), 0);
    assert!(TcpStream::connect(addr).await.is_err());
}
