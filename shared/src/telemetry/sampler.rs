//! Gauges read from the shared state rather than counted from events: queue depth (Redis) and
//! positions open without a resting stop-loss (SQL). Each binary runs one [`Sampler`] task; the
//! readings are fleet-wide, so dashboards take `max` across replicas, not `sum`.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::metrics::{Metrics, QueueState};
use crate::queue::StreamQueue;
use crate::store::{Store, StoreError, db_err};

/// Open positions with no stop-loss order of their subscription still resting (`open` or
/// `partially_filled`) that was created since the position opened. Both backends.
const POSITIONS_WITHOUT_STOP_LOSS: &str = "SELECT COUNT(*) AS n FROM positions p \
     WHERE p.status = 'open' AND NOT EXISTS ( \
       SELECT 1 FROM orders o WHERE o.subscription_id = p.subscription_id \
       AND o.role = 'stop_loss' AND o.status IN ('open', 'partially_filled') \
       AND o.created_at >= p.opened_at)";

/// Count the open positions that have no resting stop-loss.
pub async fn positions_without_stop_loss(store: &Store) -> Result<u64, StoreError> {
    let backend = store.backend();
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(backend, POSITIONS_WITHOUT_STOP_LOSS))
        .await
        .map_err(db_err("counting positions without a stop-loss"))?;
    let n: i64 = match row {
        Some(r) => r
            .try_get("", "n")
            .map_err(db_err("reading the count of positions without a stop-loss"))?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How often the binaries sample.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What to sample, and how often.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub metrics: Arc<Metrics>,
    pub queue: StreamQueue,
    /// `None`: the positions gauge is left alone (a process without a database).
    pub store: Option<Store>,
    pub every: Duration,
}

impl Sampler {
    /// Take one reading of every gauge. Failures are logged and leave the gauge as it was.
    pub async fn sample_once(&self) {
        match self.queue.depth().await {
            Ok(d) => {
                self.metrics.queue_depth(QueueState::Waiting, d.waiting);
                self.metrics.queue_depth(QueueState::InFlight, d.in_flight);
                self.metrics.queue_depth(QueueState::Delayed, d.delayed);
                self.metrics.queue_depth(QueueState::Dead, d.dead);
            }
            Err(e) => tracing::debug!(error = %e, "cannot sample the queue depth"),
        }
        if let Some(store) = &self.store {
            match positions_without_stop_loss(store).await {
                Ok(n) => self.metrics.positions_without_stop_loss(n),
                Err(e) => tracing::debug!(error = %e, "cannot count positions without stop-loss"),
            }
        }
    }

    /// Sample at once, then every `every`, until `stop` turns true.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.every.max(Duration::from_millis(100)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The `watch::Ref` is dropped inside, so it is never held across an await.
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    biased;
                    () = &mut stopped => break,
                    _ = ticks.tick() => self.sample_once().await,
                }
            }
        })
    }
}
