//! The backend's apalis layer, where each task's result reaches Redis (ack, retry, dead letter),
//! and the dead-letter hook the worker binary implements to keep the SQL record.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::BoxDynError;
use apalis_core::layers::{Layer, Service};
use apalis_core::task::Task;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::policy::{HandlerPanicked, Verdict, verdict};
use super::{Inner, Tracked};
use crate::queue::{Delivery, QueueError};

/// Why a job went to the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// The payload is not a valid job; it never ran.
    Malformed,
    /// The handler said not to retry ([`super::Permanent`] or apalis `AbortError`).
    Permanent,
    /// The last attempt the policy allows failed.
    Exhausted,
    /// Delivered more than `max_deliveries` times without an ack: it kills its workers.
    Poisoned,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Permanent => "permanent",
            Self::Exhausted => "exhausted",
            Self::Poisoned => "poisoned",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job leaving the queue for good, as handed to a [`DeadLetterHook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub job_id: String,
    pub entry_id: String,
    pub attempt: u32,
    pub deliveries: u32,
    /// The payload verbatim (even when malformed).
    pub payload: String,
    /// The text stored with the dead letter.
    pub error: String,
    pub reason: DeadLetterReason,
}

/// Called for every dead letter before it is written to the (capped) Redis dead stream; the
/// worker binary implements it to write the SQL `dead_letters` row.
///
/// Make it idempotent (upsert on job id and attempt): if Redis is unreachable when the entry is
/// then dead-lettered, the entry is run or buried again later and the hook sees it again. An
/// error is logged and does not stop the Redis dead letter. A call taking longer than 30 s is
/// abandoned (it holds a worker slot).
#[async_trait::async_trait]
pub trait DeadLetterHook: Send + Sync + 'static {
    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), BoxDynError>;
}

const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Tries of one settling Redis call before giving up on it.
const PERSIST_TRIES: u32 = 5;

/// Run a Redis write with a few quick retries (50 ms doubling). `None` when every try failed:
/// the entry then stays pending and comes back through the orphan path.
async fn persist<R, F, Fut>(what: &str, entry_id: &str, mut op: F) -> Option<R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, QueueError>>,
{
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=PERSIST_TRIES {
        match op().await {
            Ok(r) => return Some(r),
            Err(e) if attempt < PERSIST_TRIES => {
                tracing::warn!(entry = %entry_id, error = %e, attempt, "queue {what} failed; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::error!(entry = %entry_id, error = %e,
                    "queue {what} failed {PERSIST_TRIES} times; the entry stays pending and will run again after the orphan window");
            }
        }
    }
    None
}

impl<T> Inner<T> {
    /// Carry out what the policy decided for a finished delivery.
    async fn settle(&self, delivery: &Delivery, verdict: Verdict) {
        let queue = &self.settings.queue;
        let entry = delivery.entry_id.as_str();
        match verdict {
            Verdict::Ack => {
                persist("ack", entry, || queue.ack(delivery)).await;
            }
            Verdict::Retry { delay, error } => {
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                let at = chrono::Utc::now()
                    .timestamp_millis()
                    .saturating_add(delay_ms);
                tracing::warn!(job = %delivery.envelope.id, attempt = delivery.envelope.attempt,
                    retry_in_ms = delay_ms, error = %error, "job failed; retrying later");
                if persist("retry", entry, || queue.retry_at(delivery, at)).await == Some(false) {
                    tracing::warn!(job = %delivery.envelope.id, entry = %entry,
                        "entry no longer ours (claimed as an orphan): its new owner decides");
                }
            }
            Verdict::Bury { reason, error } => self.bury(delivery, reason, error).await,
        }
    }

    /// Dead-letter a delivery: the hook first (the durable record), then the Redis dead stream.
    pub(super) async fn bury(&self, delivery: &Delivery, reason: DeadLetterReason, error: String) {
        let letter = DeadLetter {
            job_id: delivery.envelope.id.clone(),
            entry_id: delivery.entry_id.clone(),
            attempt: delivery.envelope.attempt,
            deliveries: delivery.deliveries,
            payload: delivery.envelope.payload.clone(),
            error,
            reason,
        };
        tracing::error!(job = %letter.job_id, attempt = letter.attempt, reason = %reason,
            error = %letter.error, "job dead-lettered");
        if let Some(hook) = &self.settings.hook {
            match tokio::time::timeout(HOOK_TIMEOUT, hook.dead_lettered(&letter)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(job = %letter.job_id, error = %e, "dead-letter hook failed")
                }
                Err(_) => tracing::error!(job = %letter.job_id, "dead-letter hook timed out"),
            }
        }
        let queue = &self.settings.queue;
        persist("dead-letter", &letter.entry_id, || {
            queue.dead_letter(delivery, &letter.error)
        })
        .await;
    }

    /// Give an unstarted delivery back to the queue.
    pub(super) async fn release(&self, delivery: &Delivery) {
        let queue = &self.settings.queue;
        persist("release", &delivery.entry_id, || queue.release(delivery)).await;
        self.forget(&delivery.entry_id);
    }
}

/// The layer a [`super::StreamBackend`] gives its worker (through `BackendConfig::middleware`).
pub struct StreamAckLayer<T> {
    inner: Option<Arc<Inner<T>>>,
}

impl<T> StreamAckLayer<T> {
    pub(super) fn new(inner: Option<Arc<Inner<T>>>) -> Self {
        Self { inner }
    }
}

impl<T> Clone for StreamAckLayer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for StreamAckLayer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAckLayer").finish_non_exhaustive()
    }
}

impl<S, T> Layer<S> for StreamAckLayer<T> {
    type Service = StreamAckService<S, T>;

    fn layer(&self, service: S) -> Self::Service {
        StreamAckService {
            service,
            inner: self.inner.clone(),
        }
    }
}

/// Runs a task through the rest of the stack, then settles its delivery.
pub struct StreamAckService<S, T> {
    service: S,
    inner: Option<Arc<Inner<T>>>,
}

impl<S: Clone, T> Clone for StreamAckService<S, T> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, T> std::fmt::Debug for StreamAckService<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAckService").finish_non_exhaustive()
    }
}

impl<S, T> Service<Task<T>> for StreamAckService<S, T>
where
    S: Service<Task<T>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError> + Send + 'static,
    S::Response: Send + 'static,
    T: Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<T>) -> Self::Future {
        let tracked = task.data().get::<Tracked>().map(|t| Arc::clone(&t.0));
        // A panic is a failure like any other, with or without `catch_panic` further in.
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.service.call(task)));
        let inner = self.inner.clone();
        async move {
            let outcome: Result<S::Response, BoxDynError> = match called {
                Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(result) => result.map_err(Into::into),
                    Err(panic) => Err(HandlerPanicked::from_payload(panic.as_ref()).into()),
                },
                Err(panic) => Err(HandlerPanicked::from_payload(panic.as_ref()).into()),
            };
            if let (Some(inner), Some(delivery)) = (inner, tracked) {
                inner.handler_finished();
                let decided = verdict(&inner.settings.policy, &delivery, &outcome);
                inner.settle(&delivery, decided).await;
                inner.forget(&delivery.entry_id);
            }
            outcome
        }
        .boxed()
    }
}
