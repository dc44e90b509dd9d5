//! The backend's two background tasks: the fetcher (blocking reads, delayed-retry promotion,
//! orphan claims, payload decoding) and the keeper (keeps held entries from looking orphaned).

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::{DeadLetterReason, Inner, JobInfo, Ready, Tracked};
use crate::queue::{Consumer, Delivery, PayloadError};

/// Delayed retries are promoted at most this often by one worker.
const PROMOTE_EVERY: Duration = Duration::from_millis(100);

/// Capped exponential backoff after Redis errors.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// Sleep the current delay (cut short by shutdown), then double it.
    async fn wait(&mut self, close: &mut watch::Receiver<bool>) {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = close.changed() => {}
        }
    }
}

fn closed(close: &watch::Receiver<bool>) -> bool {
    *close.borrow() || close.has_changed().is_err()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The orphan claim and touch period: a third of the orphan window.
fn maintenance_period<T>(inner: &Inner<T>) -> Duration {
    Duration::from_millis((inner.settings.queue.settings().orphan_idle_ms / 3).max(10))
}

/// Decode a delivery into an apalis task, or say why its payload is not a job.
fn decode<T: DeserializeOwned>(
    delivery: Delivery,
    max_attempts: u32,
    consumer: &str,
) -> Result<Ready<T>, (Delivery, PayloadError)> {
    let args: T = match serde_json::from_str(&delivery.envelope.payload) {
        Ok(a) => a,
        Err(e) => return Err((delivery, PayloadError(e.to_string()))),
    };
    let attempt = delivery.envelope.attempt.max(1);
    let info = JobInfo {
        job_id: delivery.envelope.id.clone(),
        entry_id: delivery.entry_id.clone(),
        attempt,
        deliveries: delivery.deliveries,
        max_attempts,
    };
    let delivery = Arc::new(delivery);
    // apalis raises the attempt counter when the task starts, so it reads `attempt` while running.
    let task: Task<T> = TaskBuilder::new(args)
        .task_id(TaskId::from_string(delivery.entry_id.clone()))
        .attempt(usize::try_from(attempt - 1).unwrap_or(usize::MAX))
        .max_attempts(usize::try_from(max_attempts).unwrap_or(usize::MAX))
        .lock_by(Some(consumer.to_owned()))
        .data(info)
        .data(Tracked(Arc::clone(&delivery)))
        .build();
    Ok(Ready { delivery, task })
}

impl<T: DeserializeOwned> Inner<T> {
    /// Decode, dead-letter what does not parse, buffer the rest (or give it back if closing).
    async fn admit(&self, deliveries: Vec<Delivery>) {
        let max_attempts = self.settings.policy.attempts();
        let mut ready = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match decode(delivery, max_attempts, &self.settings.consumer) {
                Ok(r) => ready.push(r),
                Err((delivery, e)) => {
                    self.bury(&delivery, DeadLetterReason::Malformed, e.to_string())
                        .await;
                }
            }
        }
        for unwanted in self.offer(ready) {
            self.release(&unwanted.delivery).await;
        }
    }
}

/// A consumer for this backend, made on first use and again after it could not be made.
async fn consumer<'a, T>(
    inner: &Inner<T>,
    slot: &'a mut Option<Consumer>,
) -> Result<&'a mut Consumer, crate::queue::QueueError> {
    if slot.is_none() {
        *slot = Some(
            inner
                .settings
                .queue
                .consumer(&inner.settings.consumer)
                .await?,
        );
    }
    match slot {
        Some(c) => Ok(c),
        None => Err(crate::queue::QueueError::Config("consumer vanished".into())),
    }
}

/// Fetch for the worker whenever it waits for a task, until shutdown.
pub(super) async fn fetcher<T>(inner: Arc<Inner<T>>, mut close: watch::Receiver<bool>)
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let period = maintenance_period(&inner);
    let mut slot: Option<Consumer> = None;
    let mut backoff = Backoff::new();
    let mut last_promote: Option<Instant> = None;
    let mut last_claim = Instant::now();
    loop {
        if closed(&close) {
            break;
        }
        let want = inner.wanted_count();
        if want == 0 {
            tokio::select! {
                _ = inner.wake_fetcher.notified() => {}
                _ = close.changed() => {}
            }
            continue;
        }
        let c = match consumer(&inner, &mut slot).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(consumer = %inner.settings.consumer, error = %e, "cannot open the queue consumer; backing off");
                backoff.wait(&mut close).await;
                continue;
            }
        };
        let queue = &inner.settings.queue;
        if last_promote.is_none_or(|t| t.elapsed() >= PROMOTE_EVERY) {
            match queue.promote_due(now_ms()).await {
                Ok(_) => last_promote = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "promoting due retries failed"),
            }
        }
        if last_claim.elapsed() >= period {
            last_claim = Instant::now();
            match c.claim_orphans(want).await {
                Ok(claimed) => {
                    for p in claimed.poisoned {
                        let error = format!(
                            "delivered {} times without an ack (it killed its workers)",
                            p.deliveries
                        );
                        inner.bury(&p, DeadLetterReason::Poisoned, error).await;
                    }
                    let orphans: Vec<Delivery> = claimed
                        .deliveries
                        .into_iter()
                        .filter(|d| !inner.is_held(&d.entry_id))
                        .collect();
                    if !orphans.is_empty() {
                        tracing::info!(count = orphans.len(), "claimed orphaned jobs");
                        inner.admit(orphans).await;
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming orphans failed"),
            }
        }
        // The read must not be cancelled: entries it delivers belong to us once Redis answers.
        match c.fetch(want).await {
            Ok(deliveries) => {
                backoff.reset();
                inner.admit(deliveries).await;
            }
            Err(e) => {
                tracing::warn!(consumer = %inner.settings.consumer, error = %e, "queue read failed; backing off");
                backoff.wait(&mut close).await;
            }
        }
    }
}

/// Refresh the entries this consumer holds every third of the orphan window, until shutdown.
pub(super) async fn keeper<T>(inner: Arc<Inner<T>>, mut close: watch::Receiver<bool>)
where
    T: Send + Sync + 'static,
{
    let period = maintenance_period(&inner);
    let mut slot: Option<Consumer> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = close.changed() => {}
        }
        if closed(&close) {
            break;
        }
        let held = inner.held_ids();
        if held.is_empty() {
            continue;
        }
        let c = match consumer(&inner, &mut slot).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the queue consumer for touches");
                continue;
            }
        };
        if let Err(e) = c.touch(&held).await {
            tracing::warn!(error = %e, count = held.len(), "refreshing in-flight entries failed");
        }
    }
}
