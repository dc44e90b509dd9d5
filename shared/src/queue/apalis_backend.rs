//! An apalis 1.0 backend over our Redis Streams queue: workers keep apalis's monitor, layers and
//! graceful shutdown, while fetching, acks, retries, orphans and dead letters follow our rules.
//!
//! # How results reach the backend in apalis 1.0
//! A worker polls its backend (`poll_ready`, `poll_next`, then `poll_close` at shutdown) and runs
//! each task through the stack `Data(worker) -> backend middleware -> your layers -> lifecycle ->
//! handler`. The layer a backend returns from [`BackendConfig::middleware`] therefore wraps every
//! layer you add (`concurrency`, `catch_panic`, `enable_tracing`, ...) and sees each task's final
//! `Result`. [`StreamBackend`]'s layer ([`StreamAckLayer`]) awaits the handler, then acks,
//! schedules a retry or dead-letters, and only then lets the task end; so graceful shutdown, which
//! waits for running tasks, also waits for their acks.
//!
//! | handler outcome | what happens |
//! |---|---|
//! | `Ok(_)` | `ack` (`XACK` + `XDEL`: the job leaves Redis) |
//! | `Err(e)`, attempt < `max_attempts` | `retry_at` (attempt + 1) after [`RetryPolicy::delay_for`], or after the delay of an apalis `RetryAfterError` |
//! | `Err(e)`, attempt = `max_attempts` | dead letter `"attempt N of M failed: {e}"` |
//! | `Err(`[`Permanent`]`)`, or apalis `AbortError` | dead letter `"permanent failure on attempt N: {e}"` |
//! | panic (with or without `.catch_panic()`) | a failure like `Err`: retried, then dead-lettered |
//! | payload that is not JSON for `T` | dead letter with the parse error; never reaches the handler |
//! | entry delivered more than `max_deliveries` times without an ack | dead letter `"delivered N times without an ack (it killed its workers)"` |
//!
//! Every dead letter also goes to the optional [`DeadLetterHook`] (the SQL `dead_letters` row),
//! before the Redis dead stream, which is capped.
//!
//! # Fetching
//! Two background tasks per worker start on the first poll:
//! - the fetcher: when the worker asks for a task and none is buffered, a blocking `XREADGROUP`
//!   on its own connection (an idle worker wakes as soon as a job is pushed: no poll interval);
//!   before reading, delayed retries due now are promoted (at most every 100 ms) and, every
//!   `orphan_idle_ms / 3`, orphans of dead consumers are claimed into the free slots;
//! - the keeper: every `orphan_idle_ms / 3`, refreshes the entries this consumer holds (`touch`),
//!   so a long job is never taken for an orphan.
//!
//! Redis errors are logged and retried with capped exponential backoff (the blocking connection
//! is re-made); they never end the worker.
//!
//! # Free slots
//! apalis asks for a task only when the whole stack, `.concurrency(n)` included, can take one:
//! each `poll_next` proves one free slot beside the tasks running. The backend keeps a lower
//! bound of the concurrency (the one declared with [`StreamBackend::with_concurrency`], raised to
//! the largest `running + 1` it sees) and fetches only while the worker waits for a task, never
//! more than that bound minus the tasks running: nothing sits fetched beyond free slots for a
//! crash to strand. Declare the same `n` on both (`.with_concurrency(n)` and `.concurrency(n)`):
//! without the declaration the bound is learned from overlapping tasks, which for very short
//! jobs stays low and costs throughput (one entry per round trip), never safety. Always set
//! `.concurrency(n)`: without it apalis runs every task it is given (at most 100 per fetch,
//! [`StreamBackend::with_max_fetch`]).
//!
//! # In the handler
//! Take a [`JobInfo`] argument for the job id, the attempt (1-based, raised by each retry) and the
//! delivery count of the stream entry (above 1 when a previous consumer died running it). apalis's
//! own `Attempt` extractor reads the same attempt number. The apalis `TaskId` is the stream entry
//! id (unique per delivery), not the job id.
//!
//! # Shutdown
//! At `poll_close` (all running tasks done), the background tasks stop (a blocking read in
//! progress finishes first, at most `block_ms`) and entries fetched but never started are given
//! back with [`StreamQueue::release`], for another worker to run at once.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use apalis::prelude::*;
//! use tradefleet::queue::{JobInfo, QueueSettings, RetryPolicy, StreamBackend, StreamQueue, TradingCycle};
//!
//! async fn run_cycle(job: TradingCycle, info: JobInfo) -> Result<(), BoxDynError> {
//!     tracing::info!(job = %info.job_id, attempt = info.attempt, "cycle {}", job.subscription_id);
//!     Ok(())
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let queue = StreamQueue::connect("redis://127.0.0.1:6379", "fleet", "trading-cycle",
//!     QueueSettings::default()).await?;
//! let consumer = format!("worker-{}", uuid::Uuid::new_v4().simple());
//! Monitor::new()
//!     .register(move |_restarts| {
//!         WorkerBuilder::new(consumer.clone())
//!             .backend(StreamBackend::<TradingCycle>::new(queue.clone(), consumer.clone(),
//!                 RetryPolicy::default()).with_concurrency(16))
//!             .concurrency(16)
//!             .catch_panic()
//!             .build(run_cycle)
//!     })
//!     .run_with_signal(tokio::signal::ctrl_c())
//!     .await?;
//! # Ok(()) }
//! ```

use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::Task;
use apalis_core::task::from_request::FromRequest;
use apalis_core::worker::context::WorkerContext;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::queue::{Delivery, StreamQueue};

mod fetch;
mod policy;
mod settle;

pub use policy::{HandlerPanicked, Permanent, RetryPolicy};
pub use settle::{DeadLetter, DeadLetterHook, DeadLetterReason, StreamAckLayer, StreamAckService};

/// Entries asked for per blocking read, at most.
const DEFAULT_MAX_FETCH: usize = 100;

/// Errors of the backend itself. Redis errors are not among them: they are retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamBackendError {
    #[error("the stream backend must run inside a Tokio runtime")]
    NoRuntime,
}

/// What a handler may know about the delivery it runs (extract it as a handler argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The queue-level job id (`TradingCycle::job_id`).
    pub job_id: String,
    /// The stream entry id of this delivery.
    pub entry_id: String,
    /// 1 on the first run, raised by each retry.
    pub attempt: u32,
    /// Deliveries of this stream entry: 1, or more when a consumer died running it.
    pub deliveries: u32,
    /// The policy's attempt limit: a failure of attempt `max_attempts` is dead-lettered.
    pub max_attempts: u32,
}

impl JobInfo {
    /// Whether a failure now goes to the dead letters instead of a retry.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// A task did not come from a [`StreamBackend`], so it has no [`JobInfo`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this task has no JobInfo: it was not produced by a StreamBackend")]
pub struct JobInfoMissing;

impl<T: Sync> FromRequest<Task<T>> for JobInfo {
    type Error = JobInfoMissing;

    async fn from_request(task: &Task<T>) -> Result<Self, Self::Error> {
        task.data().get::<JobInfo>().cloned().ok_or(JobInfoMissing)
    }
}

/// The delivery behind a task, carried in the task's extensions for the ack layer.
#[derive(Clone)]
struct Tracked(Arc<Delivery>);

/// A decoded delivery waiting for the worker to take it.
struct Ready<T> {
    delivery: Arc<Delivery>,
    task: Task<T>,
}

/// Slot accounting, shared by the backend, its background tasks and its ack layer.
struct State<T> {
    /// Fetched and decoded, not yet handed to the worker.
    ready: VecDeque<Ready<T>>,
    /// Entry ids this consumer owns (ready, running or being settled): the keeper touches them.
    held: HashSet<String>,
    /// Handed to the worker, handler not finished.
    running: usize,
    /// Lower bound of the worker's concurrency: the declared one, raised to the largest
    /// `running + 1` seen in `poll_next`.
    capacity: usize,
    /// The worker waits in `poll_next` with nothing buffered.
    wanted: bool,
    waker: Option<Waker>,
    closing: bool,
}

struct Settings {
    queue: StreamQueue,
    consumer: String,
    policy: RetryPolicy,
    hook: Option<Arc<dyn DeadLetterHook>>,
    max_fetch: usize,
    /// The worker's concurrency as declared with `with_concurrency` (1 when not declared).
    concurrency: usize,
}

struct Inner<T> {
    settings: Settings,
    state: Mutex<State<T>>,
    wake_fetcher: Notify,
}

impl<T> Inner<T> {
    fn new(settings: Settings) -> Self {
        Self {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                held: HashSet::new(),
                running: 0,
                capacity: settings.concurrency,
                wanted: false,
                waker: None,
                closing: false,
            }),
            settings,
            wake_fetcher: Notify::new(),
        }
    }

    /// The state; a panic elsewhere while holding the lock leaves consistent plain data, so a
    /// poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many entries the fetcher may take now: only when the worker waits for one, and
    /// never more than the free slots.
    fn wanted_count(&self) -> usize {
        let s = self.lock();
        if s.closing || !s.wanted || !s.ready.is_empty() {
            return 0;
        }
        s.capacity
            .saturating_sub(s.running)
            .clamp(1, self.settings.max_fetch.max(1))
    }

    fn is_held(&self, entry_id: &str) -> bool {
        self.lock().held.contains(entry_id)
    }

    fn held_ids(&self) -> Vec<String> {
        self.lock().held.iter().cloned().collect()
    }

    /// Buffer decoded deliveries for the worker; when closing, hand them back for release.
    fn offer(&self, items: Vec<Ready<T>>) -> Vec<Ready<T>> {
        if items.is_empty() {
            return items;
        }
        let mut s = self.lock();
        if s.closing {
            return items;
        }
        for item in items {
            s.held.insert(item.delivery.entry_id.clone());
            s.ready.push_back(item);
        }
        s.wanted = false;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        Vec::new()
    }

    fn handler_finished(&self) {
        let mut s = self.lock();
        s.running = s.running.saturating_sub(1);
    }

    fn forget(&self, entry_id: &str) {
        self.lock().held.remove(entry_id);
    }

    /// Stop taking work; returns what was buffered and never started.
    fn begin_close(&self) -> Vec<Ready<T>> {
        let mut s = self.lock();
        s.closing = true;
        s.wanted = false;
        s.ready.drain(..).collect()
    }
}

/// An apalis [`Backend`] that runs JSON jobs of type `T` from a [`StreamQueue`] as consumer
/// `consumer` (unique per process), with our [`RetryPolicy`]. See the module docs.
pub struct StreamBackend<T> {
    settings: Option<Settings>,
    inner: Option<Arc<Inner<T>>>,
    close_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    closer: Option<BoxFuture<'static, ()>>,
    _job: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for StreamBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let consumer = match (&self.settings, &self.inner) {
            (Some(s), _) => s.consumer.as_str(),
            (None, Some(i)) => i.settings.consumer.as_str(),
            (None, None) => "",
        };
        f.debug_struct("StreamBackend")
            .field("consumer", &consumer)
            .field("started", &!self.tasks.is_empty())
            .finish_non_exhaustive()
    }
}

impl<T> StreamBackend<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// A backend reading `queue` as consumer `consumer`. Nothing connects until the worker runs.
    pub fn new(queue: StreamQueue, consumer: impl Into<String>, policy: RetryPolicy) -> Self {
        Self {
            settings: Some(Settings {
                queue,
                consumer: consumer.into(),
                policy,
                hook: None,
                max_fetch: DEFAULT_MAX_FETCH,
                concurrency: 1,
            }),
            inner: None,
            close_tx: watch::channel(false).0,
            tasks: Vec::new(),
            closer: None,
            _job: PhantomData,
        }
    }

    /// Also report every dead letter to `hook` (before it goes to the capped Redis dead stream).
    /// Call before handing the backend to the worker.
    #[must_use]
    pub fn with_dead_letter_hook(mut self, hook: Arc<dyn DeadLetterHook>) -> Self {
        if let Some(s) = self.settings.as_mut() {
            s.hook = Some(hook);
        }
        self
    }

    /// Tell the backend the worker's `.concurrency(n)`: it may then fetch up to `n` entries at
    /// once from the start. Without it, the backend learns the bound from how many tasks the
    /// worker runs at a time; for very short jobs that bound stays low (one entry per round
    /// trip: safe, but slower). A value above the real concurrency lets up to the difference
    /// wait in the backend's buffer (still touched, so never taken for orphans while alive).
    #[must_use]
    pub fn with_concurrency(mut self, n: usize) -> Self {
        if let Some(s) = self.settings.as_mut() {
            s.concurrency = n.max(1);
        }
        self
    }

    /// At most `n` entries per blocking read (default 100), whatever the free slots.
    #[must_use]
    pub fn with_max_fetch(mut self, n: usize) -> Self {
        if let Some(s) = self.settings.as_mut() {
            s.max_fetch = n.max(1);
        }
        self
    }
}

impl<T> StreamBackend<T> {
    fn inner(&mut self) -> Option<&Arc<Inner<T>>> {
        if self.inner.is_none() {
            let settings = self.settings.take()?;
            self.inner = Some(Arc::new(Inner::new(settings)));
        }
        self.inner.as_ref()
    }
}

impl<T> StreamBackend<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    fn start(&mut self) -> Result<(), StreamBackendError> {
        if !self.tasks.is_empty() || self.closer.is_some() {
            return Ok(());
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| StreamBackendError::NoRuntime)?;
        let Some(inner) = self.inner().cloned() else {
            return Ok(());
        };
        self.tasks.push(runtime.spawn(fetch::fetcher(
            Arc::clone(&inner),
            self.close_tx.subscribe(),
        )));
        self.tasks
            .push(runtime.spawn(fetch::keeper(inner, self.close_tx.subscribe())));
        Ok(())
    }

    /// Stop the background tasks, then give back what was fetched and never started.
    fn close_future(&mut self) -> BoxFuture<'static, ()> {
        self.close_tx.send_replace(true);
        let tasks = std::mem::take(&mut self.tasks);
        let inner = self.inner.clone();
        async move {
            let Some(inner) = inner else { return };
            let unstarted = inner.begin_close();
            inner.wake_fetcher.notify_one();
            for task in tasks {
                // A background task that panicked has nothing left to finish.
                let _ = task.await;
            }
            for item in unstarted {
                inner.release(&item.delivery).await;
            }
        }
        .boxed()
    }
}

impl<T> Drop for StreamBackend<T> {
    fn drop(&mut self) {
        // Dropped without a graceful close (e.g. a shutdown timeout): stop the background tasks.
        // What they hold goes back to the queue through the orphan path.
        self.close_tx.send_replace(true);
        if let Some(inner) = &self.inner {
            inner.lock().closing = true;
            inner.wake_fetcher.notify_one();
        }
    }
}

impl<T> Backend for StreamBackend<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    type Task = Task<T>;
    type Error = StreamBackendError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(self.start())
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        if let Err(e) = self.start() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(inner) = self.inner() else {
            return Poll::Ready(None);
        };
        let mut s = inner.lock();
        // The worker asks only when its stack has a free slot: one more than those running.
        s.capacity = s.capacity.max(s.running + 1);
        if let Some(item) = s.ready.pop_front() {
            s.running += 1;
            return Poll::Ready(Some(Ok(item.task)));
        }
        s.waker = Some(cx.waker().clone());
        if !s.wanted {
            s.wanted = true;
            drop(s);
            inner.wake_fetcher.notify_one();
        }
        Poll::Pending
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closer.is_none() {
            self.closer = Some(self.close_future());
        }
        match self.closer.as_mut() {
            Some(closer) => closer.poll_unpin(cx).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<T> BackendConfig for StreamBackend<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    type Args = T;
    type Id = String;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = StreamAckLayer<T>;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        StreamAckLayer::new(self.inner().cloned())
    }
}
