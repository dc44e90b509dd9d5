//! Figures for the apalis worker on our Redis Streams backend against the local Redis
//! (127.0.0.1:6379 or `TEST_REDIS_URL`): idle-pickup latency (push -> handler start, 200
//! samples, p50/p99/max) and drain throughput (20,000 no-op jobs, 1 worker, concurrency 64,
//! until every job is acked; concurrency declared to the backend, then learned by it).
//! A plain binary (`harness = false`): `cargo bench -p tradefleet --bench queue`. Skips with a
//! message when Redis is unreachable; deletes its keys.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use tokio::sync::{Notify, mpsc, oneshot};
use tradefleet::queue::{
    Envelope, QueueSettings, RetryPolicy, StreamBackend, StreamQueue, TradingCycle, Trigger,
};

const PICKUP_SAMPLES: usize = 200;
const DRAIN_JOBS: usize = 20_000;
const DRAIN_CONCURRENCY: usize = 64;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn envelope(sub: usize) -> Envelope {
    let job = TradingCycle {
        subscription_id: i64::try_from(sub).unwrap(),
        slot: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        trigger: Trigger::Scheduled,
        trace_context: BTreeMap::new(),
    };
    Envelope {
        id: job.job_id(),
        attempt: 1,
        payload: job.to_payload(),
    }
}

async fn wipe(prefix: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

async fn connect(prefix: &str) -> Option<StreamQueue> {
    let url = redis_url();
    let connecting = StreamQueue::connect(&url, prefix, "bench", QueueSettings::default());
    match tokio::time::timeout(Duration::from_secs(3), connecting).await {
        Ok(Ok(q)) => Some(q),
        Ok(Err(e)) => {
            eprintln!("skipping queue benchmark: cannot reach Redis: {e}");
            None
        }
        Err(_) => {
            eprintln!("skipping queue benchmark: no answer from Redis within 3 s");
            None
        }
    }
}

/// Run `monitor` until the returned sender fires; the handle resolves after a graceful stop.
fn start(
    monitor: Monitor,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), MonitorError>>,
) {
    let (stop, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(monitor.run_with_signal(async move {
        let _ = rx.await;
        Ok(())
    }));
    (stop, handle)
}

async fn signal_start(
    _job: TradingCycle,
    started: Data<mpsc::UnboundedSender<Instant>>,
) -> Result<(), BoxDynError> {
    let _ = started.send(Instant::now());
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn idle_pickup() {
    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let Some(queue) = connect(&prefix).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let q = queue.clone();
    let (stop, handle) = start(Monitor::new().register(move |_| {
        WorkerBuilder::new("bench-idle")
            .backend(StreamBackend::<TradingCycle>::new(
                q.clone(),
                "bench-idle",
                RetryPolicy::default(),
            ))
            .data(tx.clone())
            .concurrency(4)
            .build(signal_start)
    }));
    // Warm up: the worker connects and settles into its blocking read.
    queue.enqueue(&envelope(usize::MAX >> 1)).await.unwrap();
    rx.recv().await.unwrap();
    let mut samples = Vec::with_capacity(PICKUP_SAMPLES);
    for i in 0..PICKUP_SAMPLES {
        // Let the worker finish the previous job and block on its read again.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let pushed = Instant::now();
        queue.enqueue(&envelope(i)).await.unwrap();
        let started = rx.recv().await.unwrap();
        samples.push(started.saturating_duration_since(pushed));
    }
    samples.sort();
    println!(
        "idle pickup (push -> handler start), {} samples: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
    wipe(&prefix).await;
}

#[derive(Default)]
struct Counter {
    done: AtomicUsize,
    all: Notify,
}

async fn count(_job: TradingCycle, counter: Data<Arc<Counter>>) -> Result<(), BoxDynError> {
    if counter.done.fetch_add(1, Ordering::Relaxed) + 1 == DRAIN_JOBS {
        counter.all.notify_one();
    }
    Ok(())
}

/// `declared`: the backend is told the concurrency (`with_concurrency`); otherwise it learns it.
async fn drain(declared: bool) {
    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let Some(queue) = connect(&prefix).await else {
        return;
    };
    let jobs: Vec<Envelope> = (0..DRAIN_JOBS).map(envelope).collect();
    let filled = Instant::now();
    assert_eq!(queue.enqueue_many(&jobs).await.unwrap(), DRAIN_JOBS);
    println!(
        "enqueue_many of {DRAIN_JOBS} jobs: {:?} ({:.0} jobs/s)",
        filled.elapsed(),
        DRAIN_JOBS as f64 / filled.elapsed().as_secs_f64()
    );
    let counter = Arc::new(Counter::default());
    let q = queue.clone();
    let c = Arc::clone(&counter);
    let began = Instant::now();
    let (stop, handle) = start(Monitor::new().register(move |_| {
        WorkerBuilder::new("bench-drain")
            .backend({
                let backend = StreamBackend::<TradingCycle>::new(
                    q.clone(),
                    "bench-drain",
                    RetryPolicy::default(),
                );
                if declared {
                    backend.with_concurrency(DRAIN_CONCURRENCY)
                } else {
                    backend
                }
            })
            .data(Arc::clone(&c))
            .concurrency(DRAIN_CONCURRENCY)
            .build(count)
    }));
    counter.all.notified().await;
    let handled = began.elapsed();
    loop {
        let d = queue.depth().await.unwrap();
        if d.waiting == 0 && d.in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked = began.elapsed();
    println!(
        "drain of {DRAIN_JOBS} no-op jobs, 1 worker, concurrency {DRAIN_CONCURRENCY} ({}): \
         all handled in {handled:?}, all acked in {acked:?} ({:.0} jobs/s)",
        if declared {
            "declared to the backend"
        } else {
            "learned by the backend"
        },
        DRAIN_JOBS as f64 / acked.as_secs_f64()
    );
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
    wipe(&prefix).await;
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no options.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        idle_pickup().await;
        drain(true).await;
        drain(false).await;
    });
}
