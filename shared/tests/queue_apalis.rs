//! apalis 1.0 workers on our Redis Streams backend, against a real Redis: exactly-once handling
//! with acks, instant pickup by an idle worker, retries with rising attempts, permanent errors,
//! malformed payloads, panics, two workers sharing a queue, graceful shutdown, orphan recovery
//! and poison detection. Each test uses its own key prefix and deletes its keys.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tradefleet::queue::{
    DeadLetter, DeadLetterHook, DeadLetterReason, Envelope, JobInfo, Permanent, QueueDepth,
    QueueSettings, RetryPolicy, StreamBackend, StreamQueue, TradingCycle, Trigger,
};

/// Upper bound of every wait: far above what any step needs, so only a real failure trips it.
const PATIENCE: Duration = Duration::from_secs(30);

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A queue under a key prefix of its own; `wipe` deletes its keys.
struct TestQueue {
    queue: StreamQueue,
    prefix: String,
}

impl TestQueue {
    async fn new(settings: QueueSettings) -> Self {
        let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
        let queue = StreamQueue::connect(&redis_url(), &prefix, "jobs", settings)
            .await
            .expect("Redis must be reachable on TEST_REDIS_URL or 127.0.0.1:6379");
        Self { queue, prefix }
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(redis_url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// The `error` fields of the Redis dead-letter stream.
    async fn dead_errors(&self) -> Vec<String> {
        let mut c = self.conn().await;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{}:queue:jobs:dead", self.prefix))
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap();
        reply
            .ids
            .iter()
            .map(|e| e.get::<String>("error").unwrap())
            .collect()
    }

    async fn wipe(&self) {
        let mut c = self.conn().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
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
}

fn settings() -> QueueSettings {
    QueueSettings {
        block_ms: 200,
        orphan_idle_ms: 500,
        ..QueueSettings::default()
    }
}

fn quick_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
    }
}

fn cycle(sub: i64) -> TradingCycle {
    TradingCycle {
        subscription_id: sub,
        slot: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        trigger: Trigger::Scheduled,
        trace_context: BTreeMap::new(),
    }
}

fn envelope(sub: i64) -> Envelope {
    let job = cycle(sub);
    Envelope {
        id: job.job_id(),
        attempt: 1,
        payload: job.to_payload(),
    }
}

/// One handler run, as the handler saw it.
#[derive(Debug, Clone)]
struct Run {
    sub: i64,
    attempt: u32,
    apalis_attempt: usize,
    deliveries: u32,
    worker: String,
}

/// What handlers report to the test.
struct Probe {
    runs: Mutex<Vec<Run>>,
    started: Mutex<Option<oneshot::Sender<Instant>>>,
    finished: Mutex<Vec<i64>>,
    /// `gated` handlers wait for a permit here.
    gate: Semaphore,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            runs: Mutex::default(),
            started: Mutex::default(),
            finished: Mutex::default(),
            gate: Semaphore::new(0),
        }
    }
}

impl Probe {
    fn record(
        &self,
        job: &TradingCycle,
        info: &JobInfo,
        attempt: &Attempt,
        worker: &WorkerContext,
    ) {
        self.runs.lock().unwrap().push(Run {
            sub: job.subscription_id,
            attempt: info.attempt,
            apalis_attempt: attempt.current(),
            deliveries: info.deliveries,
            worker: worker.name().to_owned(),
        });
        if let Some(tx) = self.started.lock().unwrap().take() {
            let _ = tx.send(Instant::now());
        }
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

/// Collects dead letters, as the worker binary's SQL hook would write them.
#[derive(Default)]
struct Recorder {
    letters: Mutex<Vec<DeadLetter>>,
}

#[async_trait::async_trait]
impl DeadLetterHook for Recorder {
    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), BoxDynError> {
        self.letters.lock().unwrap().push(letter.clone());
        Ok(())
    }
}

impl Recorder {
    fn letters(&self) -> Vec<DeadLetter> {
        self.letters.lock().unwrap().clone()
    }
}

async fn succeed(
    job: TradingCycle,
    info: JobInfo,
    attempt: Attempt,
    worker: WorkerContext,
    probe: Data<Arc<Probe>>,
) -> Result<(), BoxDynError> {
    probe.record(&job, &info, &attempt, &worker);
    // Yield a little so that jobs overlap and several workers get a share.
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

async fn always_fail(
    job: TradingCycle,
    info: JobInfo,
    attempt: Attempt,
    worker: WorkerContext,
    probe: Data<Arc<Probe>>,
) -> Result<(), BoxDynError> {
    probe.record(&job, &info, &attempt, &worker);
    Err(format!("exchange said no (attempt {})", info.attempt).into())
}

async fn reject(
    job: TradingCycle,
    info: JobInfo,
    attempt: Attempt,
    worker: WorkerContext,
    probe: Data<Arc<Probe>>,
) -> Result<(), BoxDynError> {
    probe.record(&job, &info, &attempt, &worker);
    Err(Permanent::new(format!("subscription {} was deleted", job.subscription_id)).into())
}

async fn panic_once(
    job: TradingCycle,
    info: JobInfo,
    attempt: Attempt,
    worker: WorkerContext,
    probe: Data<Arc<Probe>>,
) -> Result<(), BoxDynError> {
    probe.record(&job, &info, &attempt, &worker);
    if info.attempt == 1 {
        panic!("bug on the first attempt of {}", info.job_id);
    }
    Ok(())
}

async fn slow(
    job: TradingCycle,
    info: JobInfo,
    attempt: Attempt,
    worker: WorkerContext,
    probe: Data<Arc<Probe>>,
) -> Result<(), BoxDynError> {
    probe.record(&job, &info, &attempt, &worker);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    probe.finished.lock().unwrap().push(job.subscription_id);
    Ok(())
}

async fn gated(
    job: TradingCycle,
    info: JobInfo,
    attempt: Attempt,
    worker: WorkerContext,
    probe: Data<Arc<Probe>>,
) -> Result<(), BoxDynError> {
    probe.record(&job, &info, &attempt, &worker);
    probe.gate.acquire().await?.forget();
    Ok(())
}

async fn stop_worker(
    job: TradingCycle,
    info: JobInfo,
    attempt: Attempt,
    worker: WorkerContext,
    probe: Data<Arc<Probe>>,
) -> Result<(), BoxDynError> {
    probe.record(&job, &info, &attempt, &worker);
    worker.stop()?;
    Ok(())
}

/// A monitor running in the background until `stop`.
struct Running {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), MonitorError>>,
}

impl Running {
    fn start(monitor: Monitor) -> Self {
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(monitor.run_with_signal(async move {
            let _ = rx.await;
            Ok(())
        }));
        Self { stop, handle }
    }

    /// Signal a graceful shutdown and wait for the monitor to return.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.handle)
            .await
            .expect("graceful shutdown finished")
            .unwrap()
            .unwrap();
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_depth<F, Fut>(what: &str, mut depth: F, want: impl Fn(&QueueDepth) -> bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = QueueDepth>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let d = depth().await;
        if want(&d) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn empty(d: &QueueDepth) -> bool {
    (d.waiting, d.in_flight, d.delayed) == (0, 0, 0)
}

/// A worker named `name` (also its consumer name) with the usual layers.
macro_rules! worker {
    ($t:expr, $name:expr, $policy:expr, $probe:expr, $hook:expr, $concurrency:expr, $handler:expr) => {{
        let queue = $t.queue.clone();
        let probe = Arc::clone(&$probe);
        let hook = Arc::clone(&$hook);
        let policy = $policy;
        let name: String = $name.into();
        move |_restarts: usize| {
            WorkerBuilder::new(name.clone())
                .backend(
                    StreamBackend::<TradingCycle>::new(queue.clone(), name.clone(), policy)
                        .with_dead_letter_hook(hook.clone()),
                )
                .data(Arc::clone(&probe))
                .concurrency($concurrency)
                .catch_panic()
                .build($handler)
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_runs_once_and_is_acked() {
    let t = TestQueue::new(settings()).await;
    let jobs: Vec<Envelope> = (0..300).map(envelope).collect();
    assert_eq!(t.queue.enqueue_many(&jobs).await.unwrap(), 300);
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "w1",
        quick_policy(3),
        probe,
        hook,
        16,
        succeed
    )));
    wait_for_depth(
        "the queue to drain",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    running.stop().await;

    let runs = probe.runs();
    assert_eq!(runs.len(), 300, "each job ran exactly once");
    let subs: HashSet<i64> = runs.iter().map(|r| r.sub).collect();
    assert_eq!(subs, (0..300).collect());
    assert!(
        runs.iter()
            .all(|r| r.attempt == 1 && r.apalis_attempt == 1 && r.deliveries == 1)
    );
    let d = t.queue.depth().await.unwrap();
    // Acked entries are deleted: nothing is left behind in Redis (bounded memory).
    assert_eq!((d.waiting, d.in_flight, d.delayed, d.dead), (0, 0, 0, 0));
    assert!(hook.letters().is_empty());
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_a_job_pushed_later() {
    // Reads block for 10 s: only a read woken by the push can deliver within the 5 s bound.
    let t = TestQueue::new(QueueSettings {
        block_ms: 10_000,
        ..settings()
    })
    .await;
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let (tx, rx) = oneshot::channel();
    *probe.started.lock().unwrap() = Some(tx);
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "idle",
        quick_policy(3),
        probe,
        hook,
        4,
        succeed
    )));
    // Let the worker start and settle into its blocking read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushed = Instant::now();
    t.queue.enqueue(&envelope(7)).await.unwrap();
    let started = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the idle worker picked the job up within 5 s")
        .unwrap();
    println!("idle pickup took {:?}", started - pushed);
    assert_eq!(probe.runs()[0].sub, 7);
    wait_for_depth(
        "the ack",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    // A graceful stop would wait for the 10 s read in progress; this test is about pickup.
    running.handle.abort();
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_rising_attempts_then_dead_lettered() {
    let t = TestQueue::new(settings()).await;
    t.queue.enqueue(&envelope(1)).await.unwrap();
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "w1",
        quick_policy(3),
        probe,
        hook,
        4,
        always_fail
    )));
    wait_until("the dead letter", || !hook.letters().is_empty()).await;
    wait_for_depth(
        "the dead stream",
        || async { t.queue.depth().await.unwrap() },
        |d| d.dead == 1,
    )
    .await;
    running.stop().await;

    let attempts: Vec<(u32, usize)> = probe
        .runs()
        .iter()
        .map(|r| (r.attempt, r.apalis_attempt))
        .collect();
    assert_eq!(attempts, vec![(1, 1), (2, 2), (3, 3)]);
    let letters = hook.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, DeadLetterReason::Exhausted);
    assert_eq!(letters[0].attempt, 3);
    assert_eq!(letters[0].job_id, cycle(1).job_id());
    assert_eq!(
        letters[0].error,
        "attempt 3 of 3 failed: exchange said no (attempt 3)"
    );
    assert_eq!(t.dead_errors().await, vec![letters[0].error.clone()]);
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight, d.delayed, d.dead), (0, 0, 0, 1));
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_is_dead_lettered_after_one_attempt() {
    let t = TestQueue::new(settings()).await;
    t.queue.enqueue(&envelope(2)).await.unwrap();
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "w1",
        quick_policy(5),
        probe,
        hook,
        4,
        reject
    )));
    wait_until("the dead letter", || !hook.letters().is_empty()).await;
    wait_for_depth(
        "the dead stream",
        || async { t.queue.depth().await.unwrap() },
        |d| d.dead == 1,
    )
    .await;
    running.stop().await;

    assert_eq!(probe.count(), 1, "no retry of a permanent error");
    let letters = hook.letters();
    assert_eq!(letters[0].reason, DeadLetterReason::Permanent);
    assert_eq!(
        letters[0].error,
        "permanent failure on attempt 1: subscription 2 was deleted"
    );
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight, d.delayed, d.dead), (0, 0, 0, 1));
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_is_dead_lettered_and_the_next_job_runs() {
    let t = TestQueue::new(settings()).await;
    let garbage = Envelope {
        id: "cycle:garbage".into(),
        attempt: 1,
        payload: "{\"subscription_id\": \"not a number\"".into(),
    };
    t.queue.enqueue(&garbage).await.unwrap();
    t.queue.enqueue(&envelope(3)).await.unwrap();
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "w1",
        quick_policy(3),
        probe,
        hook,
        4,
        succeed
    )));
    wait_until("the valid job", || probe.count() == 1).await;
    wait_for_depth(
        "the queue to drain",
        || async { t.queue.depth().await.unwrap() },
        |d| empty(d) && d.dead == 1,
    )
    .await;
    running.stop().await;

    assert_eq!(
        probe.runs()[0].sub,
        3,
        "only the valid job reached the handler"
    );
    let letters = hook.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, DeadLetterReason::Malformed);
    assert_eq!(letters[0].job_id, "cycle:garbage");
    assert_eq!(letters[0].payload, garbage.payload, "kept verbatim");
    assert!(
        letters[0].error.starts_with("malformed job payload: "),
        "{}",
        letters[0].error
    );
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_caught_and_retried() {
    let t = TestQueue::new(settings()).await;
    t.queue.enqueue(&envelope(4)).await.unwrap();
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "w1",
        quick_policy(3),
        probe,
        hook,
        4,
        panic_once
    )));
    wait_until("the second attempt", || probe.count() == 2).await;
    wait_for_depth(
        "the ack",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    // The worker survived the panic: it still runs new jobs.
    t.queue.enqueue(&envelope(5)).await.unwrap();
    wait_until("a job after the panic", || probe.count() == 3).await;
    running.stop().await;

    let runs: Vec<(i64, u32)> = probe.runs().iter().map(|r| (r.sub, r.attempt)).collect();
    assert_eq!(runs, vec![(4, 1), (4, 2), (5, 1)]);
    assert!(hook.letters().is_empty());
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_catch_panic_the_backend_still_retries_a_panic() {
    let t = TestQueue::new(settings()).await;
    t.queue.enqueue(&envelope(6)).await.unwrap();
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let queue = t.queue.clone();
    let (p, h) = (Arc::clone(&probe), Arc::clone(&hook));
    let running = Running::start(Monitor::new().register(move |_| {
        WorkerBuilder::new("bare")
            .backend(
                StreamBackend::<TradingCycle>::new(queue.clone(), "bare", quick_policy(3))
                    .with_dead_letter_hook(h.clone()),
            )
            .data(Arc::clone(&p))
            .concurrency(2)
            .build(panic_once)
    }));
    wait_until("the second attempt", || probe.count() == 2).await;
    wait_for_depth(
        "the ack",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    running.stop().await;
    assert_eq!(probe.runs()[1].attempt, 2);
    assert!(hook.letters().is_empty());
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_jobs_without_duplicates() {
    let t = TestQueue::new(settings()).await;
    let jobs: Vec<Envelope> = (0..2_000).map(envelope).collect();
    assert_eq!(t.queue.enqueue_many(&jobs).await.unwrap(), 2_000);
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(
        Monitor::new()
            .register(worker!(t, "w1", quick_policy(3), probe, hook, 32, succeed))
            .register(worker!(t, "w2", quick_policy(3), probe, hook, 32, succeed)),
    );
    wait_for_depth(
        "the queue to drain",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    running.stop().await;

    let runs = probe.runs();
    let unique: HashSet<i64> = runs.iter().map(|r| r.sub).collect();
    assert_eq!(unique.len(), 2_000, "every job ran");
    assert_eq!(runs.len(), 2_000, "no job ran twice");
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for r in &runs {
        *per_worker.entry(r.worker.clone()).or_default() += 1;
    }
    println!("split between workers: {per_worker:?}");
    assert_eq!(
        per_worker.len(),
        2,
        "both workers took jobs: {per_worker:?}"
    );
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_waits_for_the_running_job_and_acks_it() {
    let t = TestQueue::new(settings()).await;
    t.queue.enqueue(&envelope(8)).await.unwrap();
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let (tx, rx) = oneshot::channel();
    *probe.started.lock().unwrap() = Some(tx);
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "w1",
        quick_policy(3),
        probe,
        hook,
        4,
        slow
    )));
    tokio::time::timeout(PATIENCE, rx).await.unwrap().unwrap();
    // Shut down while the 1.5 s job runs: the monitor returns only after it finished and was acked.
    assert!(probe.finished.lock().unwrap().is_empty());
    running.stop().await;
    assert_eq!(*probe.finished.lock().unwrap(), vec![8]);
    assert_eq!(probe.count(), 1);
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight, d.delayed, d.dead), (0, 0, 0, 0));
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_consumer_died_runs_again_after_the_orphan_window() {
    let t = TestQueue::new(settings()).await;
    t.queue.enqueue(&envelope(9)).await.unwrap();
    {
        // A consumer takes the job and dies without an ack.
        let mut dead = t.queue.consumer("dead").await.unwrap();
        assert_eq!(dead.fetch(1).await.unwrap().len(), 1);
    }
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "rescuer",
        quick_policy(3),
        probe,
        hook,
        4,
        succeed
    )));
    wait_until("the orphan to run", || probe.count() == 1).await;
    wait_for_depth(
        "the ack",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    running.stop().await;

    let run = &probe.runs()[0];
    assert_eq!((run.sub, run.attempt, run.deliveries), (9, 1, 2));
    assert!(hook.letters().is_empty());
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_killing_its_workers_is_dead_lettered() {
    let t = TestQueue::new(QueueSettings {
        max_deliveries: 1,
        ..settings()
    })
    .await;
    t.queue.enqueue(&envelope(10)).await.unwrap();
    {
        let mut dead = t.queue.consumer("dead").await.unwrap();
        assert_eq!(dead.fetch(1).await.unwrap().len(), 1);
    }
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "rescuer",
        quick_policy(3),
        probe,
        hook,
        4,
        succeed
    )));
    wait_until("the poison dead letter", || !hook.letters().is_empty()).await;
    wait_for_depth(
        "the dead stream",
        || async { t.queue.depth().await.unwrap() },
        |d| empty(d) && d.dead == 1,
    )
    .await;
    running.stop().await;

    assert_eq!(probe.count(), 0, "a poisoned job is not run again");
    let letters = hook.letters();
    assert_eq!(letters[0].reason, DeadLetterReason::Poisoned);
    assert_eq!(
        letters[0].error,
        "delivered 2 times without an ack (it killed its workers)"
    );
    assert_eq!(t.dead_errors().await, vec![letters[0].error.clone()]);
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_is_not_taken_for_an_orphan_while_it_runs() {
    // The job runs 1.5 s, three orphan windows; a second idle worker keeps looking for orphans.
    let t = TestQueue::new(settings()).await;
    t.queue.enqueue(&envelope(11)).await.unwrap();
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(
        Monitor::new()
            .register(worker!(t, "a", quick_policy(3), probe, hook, 2, slow))
            .register(worker!(t, "b", quick_policy(3), probe, hook, 2, slow)),
    );
    wait_until("the job to finish", || {
        !probe.finished.lock().unwrap().is_empty()
    })
    .await;
    wait_for_depth(
        "the ack",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    running.stop().await;

    let runs = probe.runs();
    assert_eq!(runs.len(), 1, "stolen while running: {runs:?}");
    assert_eq!(runs[0].deliveries, 1);
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_entries_go_back_unchanged() {
    let t = TestQueue::new(settings()).await;
    t.queue
        .enqueue(&Envelope {
            attempt: 2,
            ..envelope(12)
        })
        .await
        .unwrap();
    let mut c = t.queue.consumer("leaving").await.unwrap();
    let got = c.fetch(1).await.unwrap().pop().unwrap();
    assert!(t.queue.release(&got).await.unwrap());
    assert!(
        !t.queue.release(&got).await.unwrap(),
        "a second release of the same entry does nothing"
    );
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight), (1, 0));
    let again = c.fetch(1).await.unwrap().pop().unwrap();
    assert_ne!(again.entry_id, got.entry_id);
    assert_eq!(again.envelope, got.envelope, "same id, attempt and payload");
    assert_eq!(again.deliveries, 1);
    t.queue.ack(&again).await.unwrap();
    t.wipe().await;
}

/// A worker with `concurrency` 3 whose jobs wait at a gate: it must hold exactly the 3 entries
/// it runs, leaving the rest in the stream for other workers (no prefetch a crash would strand).
async fn holds_only_what_it_runs(declared: Option<usize>) {
    let t = TestQueue::new(settings()).await;
    let jobs: Vec<Envelope> = (0..10).map(envelope).collect();
    t.queue.enqueue_many(&jobs).await.unwrap();
    let probe = Arc::new(Probe::default());
    let queue = t.queue.clone();
    let p = Arc::clone(&probe);
    let running = Running::start(Monitor::new().register(move |_| {
        let backend = StreamBackend::<TradingCycle>::new(queue.clone(), "w1", quick_policy(3));
        let backend = match declared {
            Some(n) => backend.with_concurrency(n),
            None => backend,
        };
        WorkerBuilder::new("w1")
            .backend(backend)
            .data(Arc::clone(&p))
            .concurrency(3)
            .build(gated)
    }));
    wait_until("three running jobs", || probe.count() == 3).await;
    // Give the fetcher several read cycles in which it could over-fetch.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(probe.count(), 3);
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.in_flight, d.waiting), (3, 7), "{d:?}");
    probe.gate.add_permits(10);
    wait_for_depth(
        "the queue to drain",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    running.stop().await;
    assert_eq!(probe.count(), 10);
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holds_only_the_entries_it_runs() {
    holds_only_what_it_runs(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_declared_concurrency_holds_only_the_entries_it_runs() {
    holds_only_what_it_runs(Some(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_running_when_the_queue_keys_vanish() {
    // What a Redis restart without persistence does: the stream and its group disappear under a
    // worker blocked in a read. The worker must recover on its own and run later jobs.
    let t = TestQueue::new(settings()).await;
    let (probe, hook) = (Arc::new(Probe::default()), Arc::new(Recorder::default()));
    let running = Running::start(Monitor::new().register(worker!(
        t,
        "w1",
        quick_policy(3),
        probe,
        hook,
        4,
        succeed
    )));
    t.queue.enqueue(&envelope(13)).await.unwrap();
    wait_until("the first job", || probe.count() == 1).await;
    wait_for_depth(
        "the ack",
        || async { t.queue.depth().await.unwrap() },
        empty,
    )
    .await;
    t.wipe().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(t.queue.enqueue(&envelope(14)).await.unwrap());
    wait_until("a job after the keys vanished", || probe.count() == 2).await;
    running.stop().await;
    assert_eq!(probe.runs()[1].sub, 14);
    t.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_fetched_but_not_started_are_given_back_at_shutdown() {
    // Declaring more concurrency (5) than the worker has (1) makes the backend take all five
    // jobs in one read: one runs (and stops its worker), four wait in the buffer.
    let t = TestQueue::new(settings()).await;
    let jobs: Vec<Envelope> = (0..5).map(envelope).collect();
    t.queue.enqueue_many(&jobs).await.unwrap();
    let probe = Arc::new(Probe::default());
    let queue = t.queue.clone();
    let p = Arc::clone(&probe);
    let running = Running::start(Monitor::new().register(move |_| {
        WorkerBuilder::new("w1")
            .backend(
                StreamBackend::<TradingCycle>::new(queue.clone(), "w1", quick_policy(3))
                    .with_concurrency(5),
            )
            .data(Arc::clone(&p))
            .concurrency(1)
            .build(stop_worker)
    }));
    wait_until("the first job", || probe.count() == 1).await;
    running.stop().await;
    assert_eq!(probe.count(), 1, "no buffered job started after the stop");
    let d = t.queue.depth().await.unwrap();
    assert_eq!((d.waiting, d.in_flight, d.delayed), (4, 0, 0), "{d:?}");
    // They come back as they were: first attempt, first delivery.
    let mut c = t.queue.consumer("next").await.unwrap();
    let back = c.fetch(10).await.unwrap();
    assert_eq!(back.len(), 4);
    let ran = cycle(probe.runs()[0].sub).job_id();
    for d in &back {
        assert_eq!((d.envelope.attempt, d.deliveries), (1, 1));
        assert_ne!(d.envelope.id, ran);
    }
    t.wipe().await;
}
