//! One trace from enqueue to order placement: the `scheduler` and a `worker` export spans over
//! OTLP/HTTP (protobuf) to a receiver in this test; the job carries the trace context, so the
//! scheduler's enqueue, the worker's lock, cycle, exchange requests (order placement included)
//! and the SQL record all share one trace id, parent to child.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tradefleet::store::{RunFilter, RunStatus};
use tradefleet_tests::fleet::{
    paper_subscriptions, spawn_scheduler, spawn_worker, trading_configs,
};
use tradefleet_tests::{TestDb, TestRedis};

const PATIENCE: Duration = Duration::from_secs(45);

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

/// Reads HTTP/1.1 requests off one connection (keep-alive), decodes each body as an OTLP trace
/// export and answers 200 with an empty protobuf response.
async fn serve_connection(mut stream: TcpStream, spans: Spans) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        assert!(head.starts_with("post /v1/traces "), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .expect("exporter sends a content-length")
            .trim()
            .parse()
            .unwrap();
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let mut decoded = Vec::new();
        for rs in request.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attributes = s
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            let v = match kv.value.as_ref()?.value.as_ref()? {
                                AnyValue::StringValue(s) => s.clone(),
                                AnyValue::IntValue(i) => i.to_string(),
                                AnyValue::BoolValue(b) => b.to_string(),
                                _ => return None,
                            };
                            Some((kv.key.clone(), v))
                        })
                        .collect();
                    decoded.push(Span {
                        service: service.clone(),
                        name: s.name,
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent: s.parent_span_id,
                        attributes,
                    });
                }
            }
        }
        spans.lock().unwrap().extend(decoded);
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn receiver() -> (u16, Spans) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let spans: Spans = Arc::default();
    let s = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, s.clone()));
        }
    });
    (port, spans)
}

fn terminate(p: &mut tradefleet_tests::fleet::Proc) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(p: &mut tradefleet_tests::fleet::Proc, deadline: Instant) {
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            assert!(status.success(), "{} exited with {status}", p.name);
            return;
        }
        assert!(Instant::now() < deadline, "{} ignored SIGTERM", p.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_enqueue_to_order_placement() {
    let (port, spans) = receiver().await;
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let [buy, sell] = trading_configs();
    let subs = paper_subscriptions(db.store(), &[buy, sell], 300)
        .await
        .unwrap();
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
    ];
    let mut scheduler = spawn_scheduler(&db, &redis, &env).unwrap();
    let mut worker = spawn_worker(&db, &redis, &env).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let runs = db.store().list_runs(&RunFilter::default()).await.unwrap();
        if runs
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            == subs.len()
        {
            break;
        }
        scheduler.check_alive().unwrap();
        worker.check_alive().unwrap();
        assert!(
            Instant::now() < deadline,
            "cycles did not succeed: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both flush their last spans on a clean exit.
    terminate(&mut worker);
    terminate(&mut scheduler);
    wait_exit(&mut worker, deadline).await;
    wait_exit(&mut scheduler, deadline).await;

    let spans = spans.lock().unwrap().clone();
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    // The cycle that placed an order, and its whole trace.
    let placing = spans
        .iter()
        .find(|s| {
            s.name == "exchange.request"
                && s.attributes.get("endpoint").map(String::as_str) == Some("place_order")
        })
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| &s.name).collect();
            panic!("no order placement span among {names:?}")
        });
    assert_eq!(placing.service, "tradefleet-worker");
    assert_eq!(placing.attributes["venue"], "paper");
    assert_eq!(placing.attributes["outcome"], "ok");
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == placing.trace_id)
        .collect();
    let names: Vec<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "scheduler.tick",
        "queue.enqueue",
        "trading_cycle",
        "lock.acquire",
        "cycle.run",
        "cycle.reconcile",
        "cycle.crawl",
        "cycle.analyze",
        "cycle.signal",
        "cycle.size",
        "cycle.execute",
        "exchange.request",
        "db.record",
    ] {
        assert!(
            names.contains(&want),
            "{want} missing from the trace: {names:?}"
        );
    }
    // Parent to child: order placement <- execute <- cycle.run <- trading_cycle <- enqueue <- tick.
    let mut chain = Vec::new();
    let mut at: &Span = placing;
    loop {
        chain.push((at.service.as_str(), at.name.as_str()));
        if at.parent.is_empty() {
            break;
        }
        at = by_id
            .get(at.parent.as_slice())
            .copied()
            .unwrap_or_else(|| panic!("parent of {} was not exported", at.name));
    }
    assert_eq!(
        chain,
        [
            ("tradefleet-worker", "exchange.request"),
            ("tradefleet-worker", "cycle.execute"),
            ("tradefleet-worker", "cycle.run"),
            ("tradefleet-worker", "trading_cycle"),
            ("tradefleet-scheduler", "queue.enqueue"),
            ("tradefleet-scheduler", "scheduler.tick"),
        ]
    );
    // Ids never become span names or leak credentials; the cycle span carries its subscription.
    let cycle = trace.iter().find(|s| s.name == "trading_cycle").unwrap();
    assert!(
        subs.iter()
            .any(|id| cycle.attributes["subscription_id"] == id.to_string())
    );

    redis.close().await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_cycle_continues_the_trace_of_fleetctl() {
    let (port, spans) = receiver().await;
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let [buy, _] = trading_configs();
    let subs = paper_subscriptions(db.store(), &[buy], 300).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
    ];
    let mut worker = spawn_worker(&db, &redis, &env).unwrap();
    let out = std::process::Command::new(tradefleet_tests::workspace_bin("fleetctl").unwrap())
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", redis.url())
        .env("TRADEFLEET__REDIS__KEY_PREFIX", redis.prefix())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .args(["--json", "cycle", "run", "--subscription"])
        .arg(subs[0].to_string())
        .args(["--wait", "--timeout", "40s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["status"], "succeeded", "{body}");
    let deadline = Instant::now() + PATIENCE;
    terminate(&mut worker);
    wait_exit(&mut worker, deadline).await;

    let spans = spans.lock().unwrap().clone();
    let command = spans
        .iter()
        .find(|s| s.name == "fleetctl.cycle_run")
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| (&s.service, &s.name)).collect();
            panic!(
                "fleetctl exported no span: {names:?}\nfleetctl stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(command.service, "tradefleet-fleetctl");
    assert!(command.parent.is_empty(), "the command starts the trace");
    // The worker's cycle is the command's child, in the command's trace.
    let cycle = spans
        .iter()
        .find(|s| s.name == "trading_cycle")
        .expect("the worker exported its cycle");
    assert_eq!(cycle.service, "tradefleet-worker");
    assert_eq!(cycle.trace_id, command.trace_id);
    assert_eq!(cycle.parent, command.span_id);
    assert_eq!(
        cycle.attributes["subscription_id"],
        subs[0].to_string(),
        "{cycle:?}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == command.trace_id && s.name == "db.record"),
        "the record is in the same trace"
    );

    redis.close().await.unwrap();
    db.close().await;
}
