//! The scheduler loop, one [`Scheduler::tick`] at a time: hold the leader lease, turn every due
//! subscription into one `enqueued` run plus one queue job per (subscription, slot), advance the
//! schedule with a compare-and-set, and re-enqueue runs whose jobs went missing.
//!
//! Why a slot is enqueued once and never lost:
//! - only the lease holder enqueues; a standby's tick only tries to take the lease;
//! - per batch, one transaction moves `next_run_at` with a compare-and-set and records the runs of
//!   exactly the subscriptions it moved, so two schedulers overlapping during a failover cannot
//!   both claim a slot (the loser's rows do not match and get no run);
//! - jobs are put on Redis after the commit, under `TradingCycle::job_id()`, which the queue
//!   deduplicates; if Redis loses them (or the process dies between commit and enqueue) the
//!   reconciler finds the runs still `enqueued` and enqueues them again.

mod sql;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::SchedulerConfig;
use crate::lock::{FencingToken, LockError, LockGuard, LockManager};
use crate::queue::{Envelope, QueueError, StreamQueue, TradingCycle, Trigger};
use crate::store::{RunTrigger, Store, StoreError};
use crate::telemetry::{JobEvent, Metrics, inject_current};

use sql::{Advance, DueRow};

/// Name of the leader lease in the lock key space (`{prefix}:lock:sub:{scheduler-leader}`); it
/// cannot collide with a subscription's lock, whose ids are numbers.
pub const LEADER_LEASE: &str = "scheduler-leader";

/// Most stale runs re-enqueued by one reconciler pass.
const RECONCILE_MAX: u64 = 10_000;

/// Why a tick failed. Store and Redis errors are transient: the next tick tries again.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("leader lease: {0}")]
    Lease(#[from] LockError),
    #[error("invalid scheduler settings: {0}")]
    Settings(String),
}

/// Tuning of a [`Scheduler`].
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    /// Subscriptions read and advanced per transaction.
    pub batch_size: u32,
    /// Due batches written at once on PostgreSQL (one reader pages through the due rows; each
    /// page is a disjoint batch). SQLite writes one at a time.
    pub parallel_batches: u32,
    /// The leader lease; a standby takes over within this time after the leader dies.
    pub lease_ttl: Duration,
    /// Spread each subscription's job over up to this many ms after its slot (0 = off).
    pub jitter_ms: u64,
    /// A run still `enqueued` this long (wall time) after it was enqueued gets its job enqueued
    /// again.
    pub reconcile_after: chrono::Duration,
}

impl SchedulerSettings {
    /// From the `[scheduler]` section: the reconciler threshold is `reconcile_after_ms`, or
    /// 2 x tick + 30 s when that is 0.
    pub fn from_config(config: &SchedulerConfig) -> Self {
        let tick = i64::try_from(config.tick_ms).unwrap_or(i64::MAX / 4);
        let reconcile_ms = match config.reconcile_after_ms {
            0 => tick.saturating_mul(2).saturating_add(30_000),
            ms => i64::try_from(ms).unwrap_or(i64::MAX / 4),
        };
        Self {
            batch_size: config.batch_size.max(1),
            parallel_batches: config.parallel_batches.max(1),
            lease_ttl: Duration::from_millis(config.lease_ttl_ms),
            jitter_ms: config.jitter_ms,
            reconcile_after: chrono::Duration::milliseconds(reconcile_ms),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// This scheduler held the leader lease for the tick.
    pub leader: bool,
    /// Due subscriptions read.
    pub due: u64,
    /// Jobs newly put on the queue for due slots (the queue's dedupe drops repeats).
    pub enqueued: u64,
    /// Missed slots skipped because a later slot of the same subscription was already due.
    pub skipped_slots: u64,
    /// Jobs put back on the queue by the reconciler for runs still `enqueued`.
    pub reenqueued: u64,
}

/// The slot to run for a due subscription: the latest one on its grid that is not in the future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPlan {
    pub slot: DateTime<Utc>,
    /// Slots between `next_run_at` and `slot` that are not run.
    pub skipped: u64,
    /// The new `next_run_at`.
    pub next: DateTime<Utc>,
}

/// The latest slot `next_run_at + k * interval <= now` and what follows it. `None` for a
/// subscription that is not due or whose interval cannot be used (not positive, or overflowing).
pub fn plan_slot(
    next_run_at: DateTime<Utc>,
    interval_seconds: i64,
    now: DateTime<Utc>,
) -> Option<SlotPlan> {
    if interval_seconds <= 0 || next_run_at > now {
        return None;
    }
    let behind = (now - next_run_at).num_microseconds()?;
    let step = interval_seconds.checked_mul(1_000_000)?;
    let k = behind / step;
    let slot =
        next_run_at.checked_add_signed(chrono::Duration::microseconds(k.checked_mul(step)?))?;
    let next = slot.checked_add_signed(chrono::Duration::seconds(interval_seconds))?;
    Some(SlotPlan {
        slot,
        skipped: u64::try_from(k).ok()?,
        next,
    })
}

/// The delay of a subscription's job within `[0, jitter_ms]`: a fixed function of its id, so the
/// same subscription starts at the same offset every interval.
pub fn jitter_for(subscription_id: i64, jitter_ms: u64) -> u64 {
    if jitter_ms == 0 {
        return 0;
    }
    // SplitMix64 finaliser: cheap, stable across builds, spreads consecutive ids well.
    let mut z = (subscription_id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % jitter_ms.saturating_add(1)
}

/// The job of one (subscription, slot), with the current trace context.
pub fn cycle_envelope(subscription_id: i64, slot: DateTime<Utc>, trigger: Trigger) -> Envelope {
    let job = TradingCycle {
        subscription_id,
        slot,
        trigger,
        trace_context: inject_current(),
    };
    Envelope {
        id: job.job_id(),
        attempt: 1,
        payload: job.to_payload(),
    }
}

fn queue_trigger(trigger: RunTrigger) -> Trigger {
    match trigger {
        RunTrigger::Scheduled => Trigger::Scheduled,
        RunTrigger::Manual => Trigger::Manual,
    }
}

/// One scheduler replica. Drive it with [`Scheduler::tick`] every `tick_ms`; call
/// [`Scheduler::release`] on shutdown so a standby takes over at once.
pub struct Scheduler {
    store: Store,
    queue: StreamQueue,
    locks: LockManager,
    clock: Arc<dyn Clock>,
    metrics: Option<Arc<Metrics>>,
    settings: SchedulerSettings,
    lease: Option<LockGuard>,
    last_reconcile: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("settings", &self.settings)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler over `store` and the trading-cycle `queue`; `locks` holds the leader lease.
    pub fn new(
        store: Store,
        queue: StreamQueue,
        locks: LockManager,
        clock: Arc<dyn Clock>,
        settings: SchedulerSettings,
    ) -> Result<Self, SchedulerError> {
        if settings.batch_size == 0 {
            return Err(SchedulerError::Settings(
                "batch_size must be at least 1".into(),
            ));
        }
        if settings.reconcile_after <= chrono::Duration::zero() {
            return Err(SchedulerError::Settings(
                "reconcile_after must be positive".into(),
            ));
        }
        Ok(Self {
            store,
            queue,
            locks,
            clock,
            metrics: None,
            settings,
            lease: None,
            last_reconcile: None,
        })
    }

    /// Record the scheduler metrics in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Whether this replica holds a lease it has not lost (as of its last check).
    pub fn is_leader(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.ensure_held().is_ok())
    }

    /// The fencing token of the lease held, if any (it grows with every new leader).
    pub fn fencing_token(&self) -> Option<FencingToken> {
        self.lease
            .as_ref()
            .filter(|l| l.ensure_held().is_ok())
            .map(LockGuard::fencing_token)
    }

    /// Give the lease up (on shutdown), so a standby takes over at its next tick.
    pub async fn release(&mut self) -> Result<(), SchedulerError> {
        if let Some(lease) = self.lease.take() {
            lease.release().await?;
        }
        if let Some(m) = &self.metrics {
            m.scheduler_leader(false);
        }
        Ok(())
    }

    /// One step: keep or take the lease; as leader, enqueue every due slot and reconcile.
    #[tracing::instrument(name = "scheduler.tick", skip_all, fields(leader, due, enqueued))]
    pub async fn tick(&mut self) -> Result<TickReport, SchedulerError> {
        let mut report = TickReport {
            leader: self.hold_lease().await?,
            ..TickReport::default()
        };
        if let Some(m) = &self.metrics {
            m.scheduler_leader(report.leader);
        }
        if !report.leader {
            return Ok(report);
        }
        let now = self.clock.now();
        let result = self.enqueue_due(now, &mut report).await;
        if let Some(m) = &self.metrics {
            m.scheduler_skipped_slots(report.skipped_slots);
            for _ in 0..report.enqueued {
                m.job(JobEvent::Enqueued, Trigger::Scheduled);
            }
        }
        result?;
        if report.leader {
            report.reenqueued = self.reconcile(now).await?;
        }
        let span = tracing::Span::current();
        span.record("leader", report.leader);
        span.record("due", report.due);
        span.record("enqueued", report.enqueued);
        Ok(report)
    }

    /// True while this replica holds the lease, taking it when it is free.
    async fn hold_lease(&mut self) -> Result<bool, SchedulerError> {
        if let Some(lease) = &self.lease {
            match lease.ensure_held() {
                Ok(()) => return Ok(true),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler leader lease lost; standing by");
                    self.lease = None;
                }
            }
        }
        match self
            .locks
            .acquire(LEADER_LEASE, self.settings.lease_ttl)
            .await?
        {
            Some(lease) => {
                tracing::info!(fence = %lease.fencing_token(), "scheduler is now the leader");
                self.lease = Some(lease);
                // A new leader reconciles at once: the old one may have died mid-tick.
                self.last_reconcile = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn lease_held(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.ensure_held().is_ok())
    }

    async fn enqueue_due(
        &mut self,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        use futures::StreamExt;
        // One reader pages through the due subscriptions in (next_run_at, id) order; each page
        // is a batch that a writer advances, records and enqueues. On PostgreSQL up to
        // `parallel_batches` writers run at once (their per-row work then uses more than one
        // core, and one batch's Redis enqueue overlaps the others' SQL); SQLite has one writer.
        // Reads and writes are polled together: a read waiting for a pooled connection must
        // never stop the writers that hold them from finishing.
        let writers = if self.store.backend() == sea_orm::DbBackend::Postgres {
            self.settings.parallel_batches.max(1) as usize
        } else {
            1
        };
        let batch = u64::from(self.settings.batch_size);
        let this = &*self;
        let read = |after: Option<(DateTime<Utc>, i64)>| -> Step<'_> {
            Box::pin(async move { Done::Read(sql::due(&this.store, now, batch, after).await) })
        };
        let mut steps = futures::stream::FuturesUnordered::new();
        steps.push(read(None));
        let (mut reading, mut writing, mut more) = (true, 0usize, false);
        let mut outcome: Result<(), SchedulerError> = Ok(());
        let mut cursor: Option<(DateTime<Utc>, i64)> = None;
        while let Some(done) = steps.next().await {
            match done {
                Done::Read(Err(e)) => {
                    reading = false;
                    if outcome.is_ok() {
                        outcome = Err(e.into());
                    }
                }
                Done::Read(Ok(due)) => {
                    reading = false;
                    report.due += due.len() as u64;
                    more = due.len() as u64 == batch;
                    if let Some(last) = due.last() {
                        cursor = Some((last.next_run_at, last.id));
                        if this.lease_held() {
                            writing += 1;
                            steps.push(Box::pin(async move {
                                Done::Wrote(this.write_batch(now, due).await)
                            }));
                        } else {
                            report.leader = false;
                        }
                    }
                }
                Done::Wrote(batch_done) => {
                    writing -= 1;
                    merge(report, batch_done, &mut outcome);
                }
            }
            if more && !reading && writing < writers && outcome.is_ok() && report.leader {
                reading = true;
                more = false;
                steps.push(read(cursor));
            }
        }
        outcome?;
        if let Some(m) = &self.metrics {
            m.scheduler_due_backlog(0);
        }
        Ok(())
    }

    /// One due batch: stop what cannot be scheduled, move the schedules and record the runs in
    /// one transaction, then put the jobs of the rows this transaction moved on the queue.
    async fn write_batch(&self, now: DateTime<Utc>, due: Vec<DueRow>) -> BatchResult {
        let mut done = BatchReport::default();
        let result = self.write_batch_inner(now, &due, &mut done).await;
        (done, result)
    }

    async fn write_batch_inner(
        &self,
        now: DateTime<Utc>,
        due: &[DueRow],
        done: &mut BatchReport,
    ) -> Result<(), SchedulerError> {
        let postgres = self.store.backend() == sea_orm::DbBackend::Postgres;
        let (advances, skipped, unusable) = plan_batch(due, now);
        for id in unusable {
            // It would be due forever: stop it, with why.
            self.store
                .stop_subscription(id, Some("scheduler: unusable interval"), now)
                .await?;
        }
        let tx = self.store.begin().await?;
        let moved = if postgres {
            sql::advance_and_record_pg(&tx, &advances, RunTrigger::Scheduled, now).await?
        } else {
            sql::advance_many(&tx, &advances, now).await?
        };
        // Rows that lost their compare-and-set were moved by someone else meanwhile.
        let moved: std::collections::HashSet<i64> = moved.into_iter().collect();
        let won: Vec<&Advance> = advances.iter().filter(|a| moved.contains(&a.id)).collect();
        let runs: Vec<(i64, DateTime<Utc>)> = won.iter().map(|a| (a.id, a.slot)).collect();
        if !postgres {
            sql::insert_runs(&tx, &runs, RunTrigger::Scheduled, now).await?;
        }
        if !self.lease_held() {
            // Lost the lease mid-batch: let the new leader do it.
            tx.rollback().await?;
            done.lost_lease = true;
            return Ok(());
        }
        tx.commit().await?;
        done.skipped_slots += won
            .iter()
            .map(|a| skipped.get(&a.id).copied().unwrap_or(0))
            .sum::<u64>();
        // Jobs go on the queue only after the commit. They are built inside the enqueue span,
        // so each carries it as the parent of the worker's trace.
        let span = tracing::info_span!("queue.enqueue", jobs = runs.len());
        let jobs = span.in_scope(|| self.jobs_of(&runs, now));
        done.enqueued += jobs.enqueue(&self.queue).instrument(span).await?;
        Ok(())
    }

    /// The jobs of `runs`, delayed by their jitter when it is on (built here, in the tick's
    /// span, so they carry its trace context).
    fn jobs_of(&self, runs: &[(i64, DateTime<Utc>)], now: DateTime<Utc>) -> Jobs {
        let now_ms = now.timestamp_millis();
        let mut jobs = Jobs::default();
        for (id, slot) in runs {
            let envelope = cycle_envelope(*id, *slot, Trigger::Scheduled);
            let delay = jitter_for(*id, self.settings.jitter_ms);
            let run_at = slot
                .timestamp_millis()
                .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
            if delay > 0 && run_at > now_ms {
                // The delayed set runs on the wall clock; on a replay the slot is simulated time.
                let run_at = DateTime::from_timestamp_millis(run_at)
                    .map_or(run_at, |t| self.clock.to_wall(t).timestamp_millis());
                jobs.delayed.push((envelope, run_at));
            } else {
                jobs.at_once.push(envelope);
            }
        }
        jobs
    }

    /// Re-enqueue the jobs of runs still `enqueued` after `reconcile_after`, at most once per
    /// `reconcile_after`. Dedupe makes this a no-op for jobs still on the queue.
    async fn reconcile(&mut self, now: DateTime<Utc>) -> Result<u64, SchedulerError> {
        // The threshold is wall time; `now` and the runs' `enqueued_at` are the clock's time,
        // which a replay runs `speed` times faster.
        let reconcile_after = self
            .settings
            .reconcile_after
            .checked_mul(i32::try_from(self.clock.speed()).unwrap_or(i32::MAX))
            .unwrap_or(chrono::Duration::MAX);
        if let Some(last) = self.last_reconcile
            && now - last < reconcile_after
        {
            return Ok(0);
        }
        let before = now
            .checked_sub_signed(reconcile_after)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let page = u64::from(self.settings.batch_size);
        let mut after_id = 0;
        let mut seen = 0;
        let mut added = 0;
        while seen < RECONCILE_MAX {
            let stale = sql::stale_runs(&self.store, before, after_id, page).await?;
            let Some(last) = stale.last() else { break };
            after_id = last.id;
            seen += stale.len() as u64;
            let envelopes: Vec<Envelope> = stale
                .iter()
                .map(|r| cycle_envelope(r.subscription_id, r.slot, queue_trigger(r.trigger)))
                .collect();
            added += self.queue.enqueue_many(&envelopes).await? as u64;
            if (stale.len() as u64) < page {
                break;
            }
        }
        self.last_reconcile = Some(now);
        if added > 0 {
            tracing::warn!(
                reenqueued = added,
                "re-enqueued jobs of runs still enqueued (their jobs were missing from the queue)"
            );
        }
        Ok(added)
    }
}

/// What one batch wrote, also when it failed part-way (then: nothing, or what its commit
/// covered before the enqueue failed).
#[derive(Debug, Default)]
struct BatchReport {
    enqueued: u64,
    skipped_slots: u64,
    lost_lease: bool,
}

type BatchResult = (BatchReport, Result<(), SchedulerError>);

/// A due page read, or a batch written.
enum Done {
    Read(Result<Vec<DueRow>, StoreError>),
    Wrote(BatchResult),
}

/// One read or write of a tick, polled with the others.
type Step<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send + 'a>>;

/// Add a finished batch to the tick's report; the first error is kept.
fn merge(
    report: &mut TickReport,
    (done, result): BatchResult,
    outcome: &mut Result<(), SchedulerError>,
) {
    report.enqueued += done.enqueued;
    report.skipped_slots += done.skipped_slots;
    if done.lost_lease {
        report.leader = false;
    }
    if let Err(e) = result
        && outcome.is_ok()
    {
        *outcome = Err(e);
    }
}

/// The jobs of one committed batch.
#[derive(Default)]
struct Jobs {
    at_once: Vec<Envelope>,
    delayed: Vec<(Envelope, i64)>,
}

impl Jobs {
    /// Put them on the queue. Returns how many were new (the queue drops repeats).
    async fn enqueue(self, queue: &StreamQueue) -> Result<u64, QueueError> {
        let mut added = queue.enqueue_many(&self.at_once).await? as u64;
        if !self.delayed.is_empty() {
            added += queue.enqueue_many_at(&self.delayed).await? as u64;
        }
        Ok(added)
    }
}

/// The advances of a due batch, the skipped-slot count of each subscription, and the ids whose
/// interval cannot be scheduled.
fn plan_batch(
    due: &[DueRow],
    now: DateTime<Utc>,
) -> (Vec<Advance>, std::collections::HashMap<i64, u64>, Vec<i64>) {
    let mut advances = Vec::with_capacity(due.len());
    let mut skipped = std::collections::HashMap::with_capacity(due.len());
    let mut unusable = Vec::new();
    for row in due {
        match plan_slot(row.next_run_at, row.interval_seconds, now) {
            Some(plan) => {
                advances.push(Advance {
                    id: row.id,
                    from: row.next_run_at,
                    slot: plan.slot,
                    to: plan.next,
                });
                skipped.insert(row.id, plan.skipped);
            }
            None => {
                tracing::warn!(
                    subscription_id = row.id,
                    interval_seconds = row.interval_seconds,
                    "cannot schedule subscription: unusable interval; stopping it"
                );
                unusable.push(row.id);
            }
        }
    }
    (advances, skipped, unusable)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn the_latest_slot_runs_and_earlier_ones_are_counted() {
        let p = plan_slot(t(0), 300, t(0)).unwrap();
        assert_eq!((p.slot, p.skipped, p.next), (t(0), 0, t(300)));
        let p = plan_slot(t(0), 300, t(299)).unwrap();
        assert_eq!((p.slot, p.skipped, p.next), (t(0), 0, t(300)));
        // One hour late on a 5-minute grid: 12 slots due, the 12th runs, 11 are skipped.
        let p = plan_slot(t(0), 300, t(3_300)).unwrap();
        assert_eq!((p.slot, p.skipped, p.next), (t(3_300), 11, t(3_600)));
        assert_eq!(plan_slot(t(10), 300, t(0)), None);
        assert_eq!(plan_slot(t(0), 0, t(10)), None);
        assert_eq!(plan_slot(t(0), -5, t(10)), None);
        assert_eq!(plan_slot(t(0), i64::MAX, t(10)), None);
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        assert_eq!(jitter_for(42, 0), 0);
        for id in [-3, 0, 1, 2, 99, i64::MAX] {
            let j = jitter_for(id, 5_000);
            assert!(j <= 5_000);
            assert_eq!(j, jitter_for(id, 5_000));
        }
        let distinct: std::collections::HashSet<u64> =
            (0..100).map(|id| jitter_for(id, 60_000)).collect();
        assert!(distinct.len() > 90, "ids should spread: {}", distinct.len());
    }
}
