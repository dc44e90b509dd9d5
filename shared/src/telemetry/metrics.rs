//! The fleet's Prometheus metrics: one registry per process behind typed helpers, so a call site
//! can only pick label values from small enums, the venue registry or `&'static str` endpoints.

use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::TelemetryError;
use super::process::ProcessCollector;
use crate::bot::order_ids::OrderRole;
use crate::bot::risk::Breaker;
use crate::exchange::instrumented::ENDPOINTS;
use crate::exchange::{ExchangeError, venues};
use crate::queue::job::Trigger;

/// Label value for a venue name that is not in the registry (never the raw input).
const OTHER_VENUE: &str = "other";

/// Seconds; a cycle stage is milliseconds on PAPER, seconds against a slow venue or an LLM.
const CYCLE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Seconds between a slot and the start of its cycle; the target is under one second.
const LATENESS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];
/// Seconds of one venue REST call, retries included.
const REQUEST_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    Enqueued,
    Started,
    Succeeded,
    Failed,
    Retried,
    DeadLettered,
}

/// One step of the bot cycle, or the whole cycle (`Total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleStage {
    Crawl,
    Analyze,
    Signal,
    Size,
    Execute,
    Record,
    Total,
}

impl CycleStage {
    pub const ALL: [CycleStage; 7] = [
        CycleStage::Crawl,
        CycleStage::Analyze,
        CycleStage::Signal,
        CycleStage::Size,
        CycleStage::Execute,
        CycleStage::Record,
        CycleStage::Total,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CycleStage::Crawl => "crawl",
            CycleStage::Analyze => "analyze",
            CycleStage::Signal => "signal",
            CycleStage::Size => "size",
            CycleStage::Execute => "execute",
            CycleStage::Record => "record",
            CycleStage::Total => "total",
        }
    }
}

/// Where jobs sit in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    Waiting,
    InFlight,
    Delayed,
    Dead,
}

impl QueueState {
    pub const ALL: [QueueState; 4] = [
        QueueState::Waiting,
        QueueState::InFlight,
        QueueState::Delayed,
        QueueState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::InFlight => "in_flight",
            QueueState::Delayed => "delayed",
            QueueState::Dead => "dead",
        }
    }
}

/// What happened when taking or holding a subscription lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockEvent {
    /// The lock was taken.
    Acquired,
    /// Another worker holds it.
    Contended,
    /// A held lock expired or was taken over before the cycle finished.
    Lost,
}

/// The result of one venue REST call: `Ok(())` or the error it mapped to (labelled by
/// [`ExchangeError::kind`], a fixed set).
pub type RequestOutcome<'a> = Result<(), &'a ExchangeError>;

/// What became of one order the cycle tried to place.
#[derive(Debug, Clone, Copy)]
pub enum OrderOutcome<'a> {
    /// Placed by this attempt.
    Placed,
    /// An earlier attempt of the same job had already placed it (found by client order id).
    AlreadyPlaced,
    /// The venue refused it, or the outcome is unknown (`outcome_unknown`).
    Failed(&'a ExchangeError),
}

impl OrderOutcome<'_> {
    fn as_str(&self) -> &'static str {
        match self {
            OrderOutcome::Placed => "placed",
            OrderOutcome::AlreadyPlaced => "already_placed",
            OrderOutcome::Failed(e) => e.kind(),
        }
    }
}

/// The registry name of `name`, or `"other"`: a label value never comes from unchecked input.
fn venue_label(name: &str) -> &'static str {
    venues()
        .iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
        .map_or(OTHER_VENUE, |v| v.name)
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, TelemetryError> {
    let c = IntCounter::with_opts(Opts::new(name, help))?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, TelemetryError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, TelemetryError> {
    let g = IntGauge::with_opts(Opts::new(name, help))?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> Result<HistogramVec, TelemetryError> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Every metric of one process, in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    jobs_enqueued: IntCounterVec,
    jobs_started: IntCounterVec,
    jobs_succeeded: IntCounterVec,
    jobs_failed: IntCounterVec,
    jobs_retried: IntCounterVec,
    jobs_dead_lettered: IntCounterVec,
    cycle_duration: HistogramVec,
    schedule_lateness: Histogram,
    queue_depth: IntGaugeVec,
    lock_acquired: IntCounter,
    lock_contended: IntCounter,
    lock_lost: IntCounter,
    scheduler_leader: IntGauge,
    scheduler_due_backlog: IntGauge,
    scheduler_skipped_slots: IntCounter,
    exchange_requests: IntCounterVec,
    exchange_request_duration: HistogramVec,
    exchange_rate_limit_headroom: prometheus::GaugeVec,
    orders: IntCounterVec,
    order_fills: IntCounterVec,
    breaker_trips: IntCounterVec,
    positions_without_stop_loss: IntGauge,
}

impl Metrics {
    /// A fresh registry with every family registered, plus the process collector (Linux).
    pub fn new() -> Result<Self, TelemetryError> {
        let r = Registry::new();
        let trigger = &["trigger"];
        let m = Metrics {
            jobs_enqueued: counter_vec(
                &r,
                "tradefleet_jobs_enqueued_total",
                "Trading-cycle jobs put on the queue.",
                trigger,
            )?,
            jobs_started: counter_vec(
                &r,
                "tradefleet_jobs_started_total",
                "Jobs a worker began to run.",
                trigger,
            )?,
            jobs_succeeded: counter_vec(
                &r,
                "tradefleet_jobs_succeeded_total",
                "Jobs that finished successfully.",
                trigger,
            )?,
            jobs_failed: counter_vec(
                &r,
                "tradefleet_jobs_failed_total",
                "Job attempts that failed (retried or dead-lettered afterwards).",
                trigger,
            )?,
            jobs_retried: counter_vec(
                &r,
                "tradefleet_jobs_retried_total",
                "Failed jobs put back on the queue for another attempt.",
                trigger,
            )?,
            jobs_dead_lettered: counter_vec(
                &r,
                "tradefleet_jobs_dead_lettered_total",
                "Jobs moved to dead letters after their last attempt or a permanent error.",
                trigger,
            )?,
            cycle_duration: histogram_vec(
                &r,
                "tradefleet_cycle_duration_seconds",
                "Duration of each bot-cycle stage and of the whole cycle (stage=total).",
                CYCLE_BUCKETS,
                &["exchange", "stage"],
            )?,
            schedule_lateness: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "tradefleet_schedule_lateness_seconds",
                        "Cycle start minus its schedule slot.",
                    )
                    .buckets(LATENESS_BUCKETS.to_vec()),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            queue_depth: {
                let g = IntGaugeVec::new(
                    Opts::new("tradefleet_queue_depth", "Jobs in the queue by state."),
                    &["state"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            lock_acquired: counter(
                &r,
                "tradefleet_lock_acquired_total",
                "Subscription locks taken.",
            )?,
            lock_contended: counter(
                &r,
                "tradefleet_lock_contended_total",
                "Subscription lock attempts that found the lock held by another worker.",
            )?,
            lock_lost: counter(
                &r,
                "tradefleet_lock_lost_total",
                "Subscription locks lost (expired or taken over) while a cycle ran.",
            )?,
            scheduler_leader: gauge(
                &r,
                "tradefleet_scheduler_leader",
                "1 while this scheduler holds the leader lease, else 0.",
            )?,
            scheduler_due_backlog: gauge(
                &r,
                "tradefleet_scheduler_due_backlog",
                "Subscriptions due but not yet enqueued at the end of the last tick.",
            )?,
            scheduler_skipped_slots: counter(
                &r,
                "tradefleet_scheduler_skipped_slots_total",
                "Missed schedule slots skipped after downtime (only the latest one runs).",
            )?,
            exchange_requests: counter_vec(
                &r,
                "tradefleet_exchange_requests_total",
                "Venue REST calls by endpoint and outcome (ok or the error kind).",
                &["venue", "endpoint", "outcome"],
            )?,
            exchange_request_duration: histogram_vec(
                &r,
                "tradefleet_exchange_request_duration_seconds",
                "Duration of venue REST calls, retries included.",
                REQUEST_BUCKETS,
                &["venue", "endpoint"],
            )?,
            exchange_rate_limit_headroom: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "tradefleet_exchange_rate_limit_headroom_ratio",
                        "Share of the venue's request budget left in the current window (0..1).",
                    ),
                    &["venue"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            orders: counter_vec(
                &r,
                "tradefleet_orders_total",
                "Orders by role and outcome (placed, already_placed or the error kind).",
                &["venue", "role", "outcome"],
            )?,
            order_fills: counter_vec(
                &r,
                "tradefleet_order_fills_total",
                "Orders that came back (partly) filled when placed, by role.",
                &["venue", "role"],
            )?,
            breaker_trips: counter_vec(
                &r,
                "tradefleet_circuit_breaker_trips_total",
                "Circuit breakers tripped (the subscription is paused).",
                &["breaker"],
            )?,
            positions_without_stop_loss: gauge(
                &r,
                "tradefleet_positions_without_stop_loss",
                "Open positions found without a resting stop-loss order; should be 0.",
            )?,
            registry: r,
        };
        m.registry.register(Box::new(ProcessCollector::new()?))?;
        m.preinitialize();
        Ok(m)
    }

    /// Counters whose label space is a small enum start at 0, so their series exist (and
    /// `rate()`/`absent()` work) before the first event.
    fn preinitialize(&self) {
        for trigger in [Trigger::Scheduled, Trigger::Manual] {
            for family in [
                &self.jobs_enqueued,
                &self.jobs_started,
                &self.jobs_succeeded,
                &self.jobs_failed,
                &self.jobs_retried,
                &self.jobs_dead_lettered,
            ] {
                family.with_label_values(&[trigger.as_str()]);
            }
        }
        for breaker in [
            Breaker::DailyLoss,
            Breaker::MaxDrawdown,
            Breaker::ConsecutiveLosses,
        ] {
            self.breaker_trips.with_label_values(&[breaker.as_str()]);
        }
        for state in QueueState::ALL {
            self.queue_depth.with_label_values(&[state.as_str()]);
        }
        for venue in venues() {
            let venue = venue.name;
            for stage in CycleStage::ALL {
                self.cycle_duration
                    .with_label_values(&[venue, stage.as_str()]);
            }
            for endpoint in ENDPOINTS {
                self.exchange_requests
                    .with_label_values(&[venue, endpoint, "ok"]);
                self.exchange_request_duration
                    .with_label_values(&[venue, endpoint]);
            }
            // A limiter starts with its whole budget.
            self.exchange_rate_limit_headroom
                .with_label_values(&[venue])
                .set(1.0);
            for role in OrderRole::ALL {
                for outcome in ["placed", "already_placed"] {
                    self.orders
                        .with_label_values(&[venue, role.as_str(), outcome]);
                }
                self.order_fills.with_label_values(&[venue, role.as_str()]);
            }
        }
    }

    /// The registry, for gathering or for registering a binary's own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Result<String, TelemetryError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf)
            .map_err(|e| TelemetryError::Metrics(prometheus::Error::Msg(e.to_string())))
    }

    pub fn job(&self, event: JobEvent, trigger: Trigger) {
        let family = match event {
            JobEvent::Enqueued => &self.jobs_enqueued,
            JobEvent::Started => &self.jobs_started,
            JobEvent::Succeeded => &self.jobs_succeeded,
            JobEvent::Failed => &self.jobs_failed,
            JobEvent::Retried => &self.jobs_retried,
            JobEvent::DeadLettered => &self.jobs_dead_lettered,
        };
        family.with_label_values(&[trigger.as_str()]).inc();
    }

    /// How long `stage` of one cycle took on `exchange` (a registry venue name).
    pub fn cycle_stage(&self, exchange: &str, stage: CycleStage, elapsed: Duration) {
        self.cycle_duration
            .with_label_values(&[venue_label(exchange), stage.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// A cycle for `slot` started at `started`; early starts count as 0.
    pub fn schedule_lateness(&self, slot: DateTime<Utc>, started: DateTime<Utc>) {
        let late = (started - slot).to_std().unwrap_or(Duration::ZERO);
        self.schedule_lateness.observe(late.as_secs_f64());
    }

    pub fn queue_depth(&self, state: QueueState, jobs: u64) {
        self.queue_depth
            .with_label_values(&[state.as_str()])
            .set(i64::try_from(jobs).unwrap_or(i64::MAX));
    }

    pub fn lock(&self, event: LockEvent) {
        match event {
            LockEvent::Acquired => self.lock_acquired.inc(),
            LockEvent::Contended => self.lock_contended.inc(),
            LockEvent::Lost => self.lock_lost.inc(),
        }
    }

    pub fn scheduler_leader(&self, leader: bool) {
        self.scheduler_leader.set(i64::from(leader));
    }

    pub fn scheduler_due_backlog(&self, due: u64) {
        self.scheduler_due_backlog
            .set(i64::try_from(due).unwrap_or(i64::MAX));
    }

    pub fn scheduler_skipped_slots(&self, skipped: u64) {
        self.scheduler_skipped_slots.inc_by(skipped);
    }

    /// One venue REST call. `endpoint` is the adapter's fixed name for it (`place_order`).
    pub fn exchange_request(
        &self,
        venue: &str,
        endpoint: &'static str,
        outcome: RequestOutcome<'_>,
        elapsed: Duration,
    ) {
        let venue = venue_label(venue);
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(e) => e.kind(),
        };
        self.exchange_requests
            .with_label_values(&[venue, endpoint, outcome])
            .inc();
        self.exchange_request_duration
            .with_label_values(&[venue, endpoint])
            .observe(elapsed.as_secs_f64());
    }

    /// The venue's remaining request budget, 0..=1 (`RateLimiter::headroom`).
    pub fn rate_limit_headroom(&self, venue: &str, headroom: f64) {
        let value = if headroom.is_finite() {
            headroom.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.exchange_rate_limit_headroom
            .with_label_values(&[venue_label(venue)])
            .set(value);
    }

    pub fn order(&self, venue: &str, role: OrderRole, outcome: OrderOutcome<'_>) {
        self.orders
            .with_label_values(&[venue_label(venue), role.as_str(), outcome.as_str()])
            .inc();
    }

    /// An order came back from placement with `filled` base quantity already filled.
    pub fn order_filled(&self, venue: &str, role: OrderRole) {
        self.order_fills
            .with_label_values(&[venue_label(venue), role.as_str()])
            .inc();
    }

    pub fn breaker_tripped(&self, breaker: Breaker) {
        self.breaker_trips
            .with_label_values(&[breaker.as_str()])
            .inc();
    }

    pub fn positions_without_stop_loss(&self, positions: u64) {
        self.positions_without_stop_loss
            .set(i64::try_from(positions).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_venues_collapse_to_one_label() {
        assert_eq!(venue_label("BINANCE"), "binance");
        assert_eq!(venue_label("paper"), "paper");
        assert_eq!(venue_label("sub-12345"), OTHER_VENUE);
        assert_eq!(venue_label(""), OTHER_VENUE);
    }

    #[test]
    fn early_start_counts_as_zero_lateness() {
        let m = Metrics::new().unwrap();
        let slot = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        m.schedule_lateness(slot, slot - chrono::Duration::seconds(5));
        let h = &m.schedule_lateness;
        assert_eq!(h.get_sample_count(), 1);
        assert_eq!(h.get_sample_sum(), 0.0);
    }
}
