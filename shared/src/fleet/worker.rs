//! The worker runtime: runs `TradingCycle` jobs from the Redis queue under the subscription
//! lock, records each cycle fenced by its lock's token, and keeps the SQL dead-letter record.
//!
//! One job, in order ([`Worker::handle`]):
//! 1. read the subscription, its bot and the slot's run in one query (unknown subscription:
//!    permanent failure; not active: the run is `skipped`);
//! 2. create the run row of (subscription, slot) when the scheduler did not (a manual job); a
//!    terminal run is a no-op (a retried or duplicated job never runs a slot twice);
//! 3. take `lock:sub:{id}` with the store's newest fencing token as the counter's floor (a Redis
//!    that lost its data cannot hand out a token the store refuses); contended: retry soon;
//! 4. mark the run `running` and read the cycle's state inputs (open positions of the
//!    principal, recent trade PnLs) in one statement on PostgreSQL ([`Store::start_cycle`]),
//!    build the venue (PAPER accounts live in Redis, one per subscription, held in memory for
//!    the cycle; real venues open the principal's sealed credentials with the vault),
//!    `run_cycle` with the lock as the write gate;
//! 5. record with the fencing check first: on PostgreSQL a cycle that placed, closed, opened and
//!    paused nothing in one statement ([`record_outcome_at_once`]), anything else with
//!    `record_outcome` in one transaction; release the lock.
//!
//! Retryable failures go back to the queue (the backend's `RetryPolicy`), with the run set back
//! to `enqueued`; others are dead-lettered at once ([`Permanent`]) with the run `failed`, and the
//! [`SqlDeadLetters`] hook then writes the `dead_letters` row and marks the run `dead_lettered`.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::error::{BoxDynError, RetryAfterError};
use chrono::SubsecRound;
use redis::aio::ConnectionManager;
use rust_decimal::prelude::ToPrimitive;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tracing::Instrument;

use crate::bot::crawl::{CandleCache, NoCache, RedisCandleCache};
use crate::bot::cycle::{CycleError, CycleOutcome, CycleSpec, run_cycle};
use crate::bot::execution::{ExecutionSettings, WriteGate};
use crate::bot::llm::LlmAdvisor;
use crate::bot::record::{
    RecordContext, equity_marks, record_outcome, record_outcome_at_once, state_from_inputs,
    trade_window,
};
use crate::bot::risk::RiskConfig;
use crate::bot::strategy::{Strategy, StrategyError};
use crate::clock::Clock;
use crate::config::WorkerConfig;
use crate::domain::Symbol;
use crate::exchange::http::HttpSettings;
use crate::exchange::instrumented::Instrumented;
use crate::exchange::paper::{
    CandleSource, PaperExchange, PaperSettings, RedisPaperStore, ReplaySource,
};
use crate::exchange::{Exchange, ExchangeError, VenueDescriptor, VenueParams, build_exchange};
use crate::lock::{LockError, LockGuard, LockManager};
use crate::queue::{
    DeadLetter, DeadLetterHook, JobInfo, Permanent, RetryPolicy, StreamBackend, StreamQueue,
    TradingCycle, Trigger,
};
use crate::store::{
    CredentialKey, CycleStart, NewRun, RunOutcome, RunStatus, RunTrigger, Store, StoreError,
    SubscriptionStatus, bot, cycle_run, dead_letter, open_credentials, subscription,
};
use crate::telemetry::{CycleStage, JobEvent, LockEvent, Metrics, set_parent_from};
use crate::vault::KeyRing;

/// Closed candles per timeframe a cycle reads.
pub const CYCLE_CANDLES: usize = 200;
/// The credential label a subscription trades with.
const CREDENTIAL_LABEL: &str = "default";

/// Builds a subscription's strategy from its bot's strategy name and its config.
pub type StrategyFactory =
    Arc<dyn Fn(&str, &serde_json::Value) -> Result<Box<dyn Strategy>, StrategyError> + Send + Sync>;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Unique per process; also the queue consumer name.
    pub worker_id: String,
    /// Cycles run at once (declared to apalis and to the backend).
    pub concurrency: usize,
    pub lock_ttl: Duration,
    /// How long a shutdown waits for running cycles.
    pub shutdown_deadline: Duration,
    pub retry: RetryPolicy,
    /// Retry delay of a job whose subscription lock is held elsewhere.
    pub contention_delay: Duration,
    /// Closed candles per timeframe.
    pub candles: usize,
}

impl WorkerSettings {
    /// From the `worker` config section (a missing id becomes `{host}-{pid}-{random}`).
    pub fn from_config(cfg: &WorkerConfig) -> Self {
        Self {
            worker_id: cfg.id.clone().unwrap_or_else(default_worker_id),
            concurrency: usize::try_from(cfg.concurrency.max(1)).unwrap_or(1),
            lock_ttl: Duration::from_millis(cfg.lock_ttl_ms),
            shutdown_deadline: Duration::from_millis(cfg.shutdown_deadline_ms),
            retry: RetryPolicy {
                max_attempts: cfg.max_attempts,
                ..RetryPolicy::default()
            },
            contention_delay: Duration::from_secs(1),
            candles: CYCLE_CANDLES,
        }
    }
}

/// `{host}-{pid}-{random}`.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "worker".to_string());
    let random: u32 = rand::random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

/// What a worker needs from the outside.
pub struct WorkerDeps {
    pub store: Store,
    pub locks: LockManager,
    /// For the candle cache and the PAPER accounts.
    pub redis: ConnectionManager,
    pub key_prefix: String,
    /// Opens real venues' credentials; `None`: only PAPER subscriptions can run.
    pub keyring: Option<Arc<KeyRing>>,
    pub llm: Option<Arc<LlmAdvisor>>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub http: HttpSettings,
    pub paper: PaperSettings,
    pub strategies: StrategyFactory,
}

impl std::fmt::Debug for WorkerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerDeps")
            .field("key_prefix", &self.key_prefix)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Why a job failed. [`JobError::is_retryable`] decides between a retry and a dead letter.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("subscription {0} does not exist")]
    UnknownSubscription(i64),
    #[error("subscription {0} is locked by another worker")]
    Contended(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("venue: {0}")]
    Venue(#[from] ExchangeError),
    #[error("strategy: {0}")]
    Strategy(#[from] StrategyError),
    #[error("subscription {subscription_id}: {message}")]
    Config {
        subscription_id: i64,
        message: String,
    },
    #[error(transparent)]
    Cycle(#[from] CycleError),
}

impl JobError {
    /// Worth another attempt later.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::Contended(_) | JobError::Lock(_) => true,
            // A newer holder committed: the retry runs under a newer token.
            JobError::Store(StoreError::StaleFencingToken { .. }) => true,
            JobError::Store(e) => e.is_retryable(),
            JobError::Venue(e) => e.recovery() != crate::exchange::Recovery::Permanent,
            JobError::Cycle(e) => e.is_retryable(),
            JobError::UnknownSubscription(_) | JobError::Strategy(_) | JobError::Config { .. } => {
                false
            }
        }
    }
}

/// How a job ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The cycle ran and its results were committed.
    Succeeded,
    /// The slot's run was already terminal: nothing done.
    AlreadyDone(RunStatus),
    /// The subscription is not active: the run is `skipped`.
    Skipped,
}

/// Errors starting or running the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("paper market data: {0}")]
    Paper(#[from] ExchangeError),
    #[error("apalis monitor: {0}")]
    Monitor(String),
}

struct Ctx {
    deps: WorkerDeps,
    settings: WorkerSettings,
    /// Set at shutdown: no exchange write starts after this instant, so a cycle still running
    /// when the deadline forces the exit is never cut in the middle of placing an order.
    writes_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    paper_source: Arc<dyn CandleSource>,
    cache: RedisCandleCache,
    paper_store: Arc<RedisPaperStore>,
}

/// The worker: [`Worker::handle`] runs one job; [`Worker::run`] runs the queue until shutdown.
#[derive(Clone)]
pub struct Worker {
    ctx: Arc<Ctx>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("settings", &self.ctx.settings)
            .finish_non_exhaustive()
    }
}

/// The cycle's write gate: the subscription lock, and the shutdown's write cut-off.
struct LockGate<'a> {
    guard: &'a LockGuard,
    ctx: &'a Ctx,
}

impl WriteGate for LockGate<'_> {
    fn check(&self) -> Result<(), String> {
        self.guard.ensure_held().map_err(|e| e.to_string())?;
        if self
            .ctx
            .writes_until()
            .is_some_and(|t| tokio::time::Instant::now() >= t)
        {
            return Err("the worker is shutting down: no new exchange writes".into());
        }
        Ok(())
    }
}

impl Ctx {
    fn writes_until(&self) -> Option<tokio::time::Instant> {
        *self
            .writes_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Allow exchange writes until `t` at the latest (the earliest cut-off wins).
    fn close_writes_at(&self, t: tokio::time::Instant) {
        let mut w = self
            .writes_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *w = Some(w.map_or(t, |old| old.min(t)));
    }
}

fn paper_source(settings: &PaperSettings) -> Result<Arc<dyn CandleSource>, ExchangeError> {
    let config = |message: String| ExchangeError::Config {
        venue: "paper",
        message,
    };
    match &settings.csv {
        None => Ok(ReplaySource::bundled()?),
        Some(path) => {
            let symbol = Symbol::from_str(&settings.symbol)
                .map_err(|e| config(format!("paper.symbol: {e}")))?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| config(format!("paper.csv {}: {e}", path.display())))?;
            Ok(Arc::new(ReplaySource::from_csv(
                symbol,
                &text,
                &path.display().to_string(),
            )?))
        }
    }
}

impl Worker {
    /// Reads the PAPER market data once (bundled or `paper.csv`).
    pub fn new(deps: WorkerDeps, settings: WorkerSettings) -> Result<Self, WorkerError> {
        let paper_source = paper_source(&deps.paper)?;
        let cache = RedisCandleCache::new(deps.redis.clone(), &deps.key_prefix);
        let paper_store = Arc::new(RedisPaperStore::new(deps.redis.clone(), &deps.key_prefix));
        Ok(Self {
            ctx: Arc::new(Ctx {
                deps,
                settings,
                paper_source,
                cache,
                paper_store,
                writes_until: std::sync::Mutex::new(None),
            }),
        })
    }

    pub fn settings(&self) -> &WorkerSettings {
        &self.ctx.settings
    }

    /// From now on no cycle of this worker starts an exchange write (cycles still running stop
    /// before their next one and are retried). [`Worker::run`] does this at three quarters of
    /// the shutdown deadline.
    pub fn stop_writes(&self) {
        self.ctx.close_writes_at(tokio::time::Instant::now());
    }

    /// The hook writing the SQL dead-letter record.
    pub fn dead_letter_hook(&self) -> Arc<dyn DeadLetterHook> {
        Arc::new(SqlDeadLetters {
            store: self.ctx.deps.store.clone(),
            metrics: self.ctx.deps.metrics.clone(),
            clock: self.ctx.deps.clock.clone(),
        })
    }

    /// A backend for this worker over `queue` (consumer = worker id, concurrency declared).
    pub fn backend(&self, queue: StreamQueue) -> StreamBackend<TradingCycle> {
        let s = &self.ctx.settings;
        StreamBackend::<TradingCycle>::new(queue, s.worker_id.clone(), s.retry)
            .with_concurrency(s.concurrency)
            .with_dead_letter_hook(self.dead_letter_hook())
    }

    /// Runs jobs from `queue` until `shutdown` resolves, then stops fetching and waits up to
    /// the shutdown deadline for running cycles (their locks are released as they finish). No
    /// exchange write starts after three quarters of the deadline.
    pub async fn run<F>(self, queue: StreamQueue, shutdown: F) -> Result<(), WorkerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = self.ctx.settings.worker_id.clone();
        let concurrency = self.ctx.settings.concurrency;
        let deadline = self.ctx.settings.shutdown_deadline;
        let worker = self.clone();
        let ctx = self.ctx.clone();
        let monitor = Monitor::new()
            .register(move |_restarts| {
                WorkerBuilder::new(name.clone())
                    .backend(worker.backend(queue.clone()))
                    .data(worker.clone())
                    .concurrency(concurrency)
                    .catch_panic()
                    .build(apalis_handler)
            })
            .shutdown_timeout(deadline);
        monitor
            .run_with_signal(async move {
                shutdown.await;
                tracing::info!(?deadline, "shutting down: waiting for running cycles");
                // Writes stop at three quarters of the deadline; the rest lets cycles record.
                ctx.close_writes_at(tokio::time::Instant::now() + deadline * 3 / 4);
                Ok(())
            })
            .await
            .map_err(|e| WorkerError::Monitor(e.to_string()))
    }

    /// One job, with metrics and the error's retry class applied (see the module docs).
    pub async fn process(&self, job: &TradingCycle, info: &JobInfo) -> Result<(), BoxDynError> {
        let metrics = &self.ctx.deps.metrics;
        let span = tracing::info_span!(
            "trading_cycle",
            subscription_id = job.subscription_id,
            slot = %job.slot,
            attempt = info.attempt,
            worker = %self.ctx.settings.worker_id,
        );
        set_parent_from(&job.trace_context, &span);
        metrics.job(JobEvent::Started, job.trigger);
        match self.handle(job, info).instrument(span.clone()).await {
            Ok(outcome) => {
                span.in_scope(|| tracing::info!(?outcome, "job done"));
                metrics.job(JobEvent::Succeeded, job.trigger);
                Ok(())
            }
            Err(e) => {
                metrics.job(JobEvent::Failed, job.trigger);
                let retry = e.is_retryable() && !info.is_last_attempt();
                span.in_scope(|| tracing::warn!(error = %e, retry, "job failed"));
                if !e.is_retryable() {
                    return Err(Permanent::new(e).into());
                }
                if retry {
                    metrics.job(JobEvent::Retried, job.trigger);
                }
                if let JobError::Contended(_) = e {
                    return Err(RetryAfterError::new(e, self.ctx.settings.contention_delay).into());
                }
                Err(e.into())
            }
        }
    }

    /// Runs one job; see the module docs for the steps.
    pub async fn handle(&self, job: &TradingCycle, info: &JobInfo) -> Result<JobOutcome, JobError> {
        let d = &self.ctx.deps;
        let context = match d.store.cycle_context(job.subscription_id, job.slot).await {
            Ok(c) => c,
            Err(StoreError::NotFound { .. }) => {
                return Err(JobError::UnknownSubscription(job.subscription_id));
            }
            Err(e) => return Err(e.into()),
        };
        let (sub, bot) = (context.subscription, context.bot);
        let now = d.clock.now();
        // The scheduler recorded the run when it enqueued the job; a manual job, or one whose
        // run is gone, records it here.
        let run = match context.run {
            Some(run) => run,
            None => d
                .store
                .insert_run(&NewRun {
                    subscription_id: sub.id,
                    slot: job.slot,
                    trigger: match job.trigger {
                        Trigger::Scheduled => RunTrigger::Scheduled,
                        Trigger::Manual => RunTrigger::Manual,
                    },
                    enqueued_at: now,
                })
                .await?
                .into_run(),
        };
        if run.status.is_terminal() {
            return Ok(JobOutcome::AlreadyDone(run.status));
        }
        if sub.status != SubscriptionStatus::Active {
            d.store
                .close_run(
                    run.id,
                    &RunOutcome {
                        status: RunStatus::Skipped,
                        signal: None,
                        confidence: None,
                        analysis: None,
                        error: Some(format!("subscription is {}", sub.status)),
                    },
                    now,
                )
                .await?;
            return Ok(JobOutcome::Skipped);
        }
        self.locked(job, info, &sub, &bot, &run).await
    }

    /// A failed attempt's run, if it is still the one this attempt started (running under
    /// `fence`): back to `enqueued` when it will be retried, else `failed`. A run another worker
    /// has since taken over or finished is left alone.
    async fn mark_failed(&self, run_id: i64, fence: i64, e: &JobError, info: &JobInfo) {
        use sea_orm::sea_query::Expr;
        let retry = e.is_retryable() && !info.is_last_attempt();
        let mut update = cycle_run::Entity::update_many()
            .col_expr(cycle_run::Column::Error, Expr::value(Some(e.to_string())));
        update = if retry {
            update.col_expr(cycle_run::Column::Status, Expr::value(RunStatus::Enqueued))
        } else {
            update
                .col_expr(cycle_run::Column::Status, Expr::value(RunStatus::Failed))
                .col_expr(
                    cycle_run::Column::FinishedAt,
                    Expr::value(Some(self.ctx.deps.clock.now())),
                )
        };
        let res = update
            .filter(cycle_run::Column::Id.eq(run_id))
            .filter(cycle_run::Column::Status.eq(RunStatus::Running))
            .filter(cycle_run::Column::FencingToken.eq(fence))
            .exec(self.ctx.deps.store.connection())
            .await;
        if let Err(err) = res {
            tracing::warn!(run_id, error = %err, "cannot record the failed attempt");
        }
    }

    async fn locked(
        &self,
        job: &TradingCycle,
        info: &JobInfo,
        sub: &subscription::Model,
        bot: &bot::Model,
        run: &cycle_run::Model,
    ) -> Result<JobOutcome, JobError> {
        let d = &self.ctx.deps;
        let floor = sub
            .last_fencing_token
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(0);
        let Some(guard) = d
            .locks
            .acquire_with_floor(sub.id, self.ctx.settings.lock_ttl, floor)
            .instrument(tracing::info_span!("lock.acquire"))
            .await?
        else {
            d.metrics.lock(LockEvent::Contended);
            // Still contended on the last attempt while the scheduler has already moved past
            // this slot: the subscription's cycles run slower than its interval. The slot is
            // recorded as skipped (as missed slots are after downtime), not dead-lettered: a
            // later slot runs, and a dead letter per slot would only page someone for it.
            if info.is_last_attempt()
                && job.trigger == Trigger::Scheduled
                && sub.last_run_at.is_some_and(|l| l > job.slot)
            {
                d.store
                    .close_run(
                        run.id,
                        &RunOutcome {
                            status: RunStatus::Skipped,
                            signal: None,
                            confidence: None,
                            analysis: None,
                            error: Some(format!(
                                "superseded: the subscription was still locked by another \
                                 cycle on the last attempt and a later slot is already \
                                 scheduled ({})",
                                sub.last_run_at.map(|l| l.to_rfc3339()).unwrap_or_default()
                            )),
                        },
                        d.clock.now(),
                    )
                    .await?;
                return Ok(JobOutcome::Skipped);
            }
            return Err(JobError::Contended(sub.id));
        };
        d.metrics.lock(LockEvent::Acquired);
        let result = self.cycle(job, info, sub, bot, run, &guard).await;
        if let Err(e) = &result {
            let fence = i64::try_from(guard.fencing_token().get()).unwrap_or(i64::MAX);
            self.mark_failed(run.id, fence, e, info).await;
        }
        if matches!(
            &result,
            Err(JobError::Cycle(CycleError::Execution(
                crate::bot::execution::ExecutionError::GateClosed(_)
            )))
        ) {
            d.metrics.lock(LockEvent::Lost);
        }
        if let Err(e) = guard.release().await {
            tracing::warn!(error = %e, "cannot release the subscription lock (its TTL frees it)");
        }
        result
    }

    async fn cycle(
        &self,
        job: &TradingCycle,
        info: &JobInfo,
        sub: &subscription::Model,
        bot: &bot::Model,
        run: &cycle_run::Model,
        guard: &LockGuard,
    ) -> Result<JobOutcome, JobError> {
        let d = &self.ctx.deps;
        let fence = i64::try_from(guard.fencing_token().get()).unwrap_or(i64::MAX);
        let started = d.clock.now();
        // Lateness in wall time: a replay clock runs `speed` times faster.
        let late = (started - job.slot) / i32::try_from(d.clock.speed()).unwrap_or(i32::MAX);
        d.metrics.schedule_lateness(job.slot, job.slot + late);
        let attempt = i32::try_from(info.attempt).unwrap_or(i32::MAX);
        let risk: RiskConfig =
            serde_json::from_value(sub.risk_config.clone()).map_err(|e| JobError::Config {
                subscription_id: sub.id,
                message: format!("risk_config: {e}"),
            })?;
        let inputs = d
            .store
            .start_cycle(&CycleStart {
                run_id: run.id,
                worker_id: &self.ctx.settings.worker_id,
                fencing_token: fence,
                attempt,
                now: started,
                subscription: sub,
                trade_window: trade_window(&risk),
            })
            .await?;

        let strategy_config = merged(&bot.default_config, &sub.strategy_config);
        let strategy = (d.strategies)(&bot.strategy, &strategy_config)?;
        let leverage = sub.leverage.get().to_u32().unwrap_or(1).max(1);
        let descriptor = crate::exchange::find_venue(&sub.exchange)?;
        let exchange = self.venue(sub, descriptor, started).await?;
        let state = state_from_inputs(&d.store, sub, started, inputs).await?;
        let timeframes = sub.timeframes.0.clone();
        let spec = CycleSpec {
            subscription_id: sub.id,
            slot: job.slot,
            exchange_name: &sub.exchange,
            symbol: &sub.symbol,
            timeframes: &timeframes,
            candles: self.ctx.settings.candles,
            leverage,
            strategy: strategy.as_ref(),
            risk: &risk,
            now: started,
        };
        let t = Instant::now();
        let exchange: Arc<dyn Exchange> = Arc::new(Instrumented::new(exchange, d.metrics.clone()));
        // PAPER's candles are in this process already: the fleet cache would only add a Redis
        // round trip and a JSON decode.
        let cache: &dyn CandleCache = if descriptor.name == "paper" {
            &NoCache
        } else {
            &self.ctx.cache
        };
        let outcome = run_cycle(
            exchange.as_ref(),
            cache,
            d.llm.as_deref(),
            &spec,
            &state,
            &LockGate {
                guard,
                ctx: &self.ctx,
            },
            &ExecutionSettings::default(),
        )
        .instrument(tracing::info_span!("cycle.run", exchange = %sub.exchange))
        .await?;
        self.stage_metrics(&sub.exchange, &outcome);
        outcome_metrics(&d.metrics, &sub.exchange, &outcome);

        let t_record = Instant::now();
        guard.ensure_held()?;
        let record_span = tracing::info_span!("db.record", otel.kind = "client");
        let record_now = d.clock.now();
        let record = RecordContext {
            run_id: run.id,
            subscription_id: sub.id,
            exchange: &sub.exchange,
            fencing_token: fence,
            now: record_now,
            marks: equity_marks(&state, &outcome, record_now),
        };
        let at_once = record_outcome_at_once(&d.store, &record, &outcome)
            .instrument(record_span.clone())
            .await?;
        if at_once.is_none() {
            let tx = d.store.begin().instrument(record_span.clone()).await?;
            record_outcome(&tx, &record, &outcome)
                .instrument(record_span.clone())
                .await?;
            tx.commit().instrument(record_span).await?;
        }
        d.metrics
            .cycle_stage(&sub.exchange, CycleStage::Record, t_record.elapsed());
        d.metrics
            .cycle_stage(&sub.exchange, CycleStage::Total, t.elapsed());
        Ok(JobOutcome::Succeeded)
    }

    fn stage_metrics(&self, exchange: &str, outcome: &CycleOutcome) {
        for stage in CycleStage::ALL {
            if let Some(elapsed) = outcome.stage_durations.get(stage.as_str()) {
                self.ctx.deps.metrics.cycle_stage(exchange, stage, *elapsed);
            }
        }
    }

    /// The subscription's venue: PAPER on the shared Redis account of the subscription, or a
    /// real venue with the principal's credentials opened by the vault.
    ///
    /// PAPER runs the whole cycle at the instant it started (`now`): the simulated market does
    /// not move between the crawl and the orders, so the cycle sees one consistent market even
    /// on a fast replay clock or a loaded machine (at 2400x, a second of wall time is 40
    /// simulated minutes: eight 5m candles closing between two requests of one cycle).
    async fn venue(
        &self,
        sub: &subscription::Model,
        descriptor: &VenueDescriptor,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<dyn Exchange>, JobError> {
        let d = &self.ctx.deps;
        if descriptor.name == "paper" {
            let settings = PaperSettings {
                account: format!("sub-{}", sub.id),
                ..d.paper.clone()
            };
            // One instance per cycle, under the subscription's lock: it may hold the account.
            let paper = PaperExchange::with_parts(
                settings,
                Arc::new(crate::clock::ManualClock::new(now)),
                self.ctx.paper_source.clone(),
                self.ctx.paper_store.clone(),
            )?
            .holding_account();
            return Ok(Arc::new(paper));
        }
        let Some(ring) = &d.keyring else {
            return Err(JobError::Config {
                subscription_id: sub.id,
                message: "no vault keys configured: cannot open exchange credentials".into(),
            });
        };
        let key = CredentialKey {
            principal_id: sub.principal_id,
            exchange: descriptor.name.to_string(),
            testnet: sub.testnet,
            label: CREDENTIAL_LABEL.into(),
        };
        let row = d
            .store
            .credential(&key)
            .await?
            .ok_or_else(|| JobError::Config {
                subscription_id: sub.id,
                message: format!("no stored credentials for {key}"),
            })?;
        let credentials = open_credentials(ring, &row).map_err(|e| JobError::Config {
            subscription_id: sub.id,
            message: format!("cannot open the credentials: {e}"),
        })?;
        let params = VenueParams {
            testnet: sub.testnet,
            credentials: Some(credentials),
            http: d.http.clone(),
            clock: d.clock.clone(),
            ..VenueParams::default()
        };
        Ok(build_exchange(descriptor.name, &params)?)
    }
}

/// What the cycle's outcome says beyond the venue calls: a tripped breaker, and orders an
/// earlier attempt had already placed (placements themselves count in [`Instrumented`]).
fn outcome_metrics(metrics: &Metrics, exchange: &str, outcome: &CycleOutcome) {
    if let Some(trip) = &outcome.breaker {
        metrics.breaker_tripped(trip.breaker);
    }
    let orders = outcome.execution.iter().flat_map(|r| r.orders.iter());
    for o in orders.chain(outcome.close_order.iter()) {
        if !o.placed_now {
            metrics.order(
                exchange,
                o.role,
                crate::telemetry::OrderOutcome::AlreadyPlaced,
            );
        }
    }
}

/// The bot's default strategy config overlaid with the subscription's (top-level keys).
fn merged(defaults: &serde_json::Value, own: &serde_json::Value) -> serde_json::Value {
    match (defaults, own) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            let mut out: serde_json::Map<String, serde_json::Value> = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            serde_json::Value::Object(out)
        }
        (_, serde_json::Value::Null) => defaults.clone(),
        _ => own.clone(),
    }
}

async fn apalis_handler(
    job: TradingCycle,
    info: JobInfo,
    worker: Data<Worker>,
) -> Result<(), BoxDynError> {
    worker.process(&job, &info).await
}

/// The SQL record of dead letters: a `dead_letters` row per letter, and the slot's run marked
/// `dead_lettered` (a malformed payload has no run).
#[derive(Debug, Clone)]
pub struct SqlDeadLetters {
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl SqlDeadLetters {
    pub fn new(store: Store, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            metrics,
            clock,
        }
    }
}

#[async_trait::async_trait]
impl DeadLetterHook for SqlDeadLetters {
    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), BoxDynError> {
        let job = TradingCycle::from_payload(&letter.payload).ok();
        self.metrics.job(
            JobEvent::DeadLettered,
            job.as_ref().map_or(Trigger::Scheduled, |j| j.trigger),
        );
        let now = self.clock.now();
        // Idempotent: a letter seen again (Redis failed after this hook) is written once.
        let existing = dead_letter::Entity::find()
            .filter(dead_letter::Column::JobId.eq(letter.job_id.as_str()))
            .filter(dead_letter::Column::Payload.eq(letter.payload.as_str()))
            .one(self.store.connection())
            .await?;
        if existing.is_none() {
            self.store
                .insert_dead_letter(
                    &crate::store::NewDeadLetter {
                        queue: crate::queue::TRADING_CYCLE_QUEUE.into(),
                        job_id: Some(letter.job_id.clone()),
                        payload: letter.payload.clone(),
                        error: letter.error.clone(),
                        attempts: i32::try_from(letter.attempt).unwrap_or(i32::MAX),
                    },
                    now,
                )
                .await?;
        }
        // The slot's run, unless it succeeded, was skipped or is running elsewhere (a duplicate
        // delivery's letter must not touch the run another worker is finishing).
        if let Some(job) = job {
            use sea_orm::sea_query::Expr;
            cycle_run::Entity::update_many()
                .col_expr(
                    cycle_run::Column::Status,
                    Expr::value(RunStatus::DeadLettered),
                )
                .filter(cycle_run::Column::SubscriptionId.eq(job.subscription_id))
                .filter(cycle_run::Column::Slot.eq(job.slot.trunc_subsecs(6)))
                .filter(cycle_run::Column::Status.is_in([RunStatus::Enqueued, RunStatus::Failed]))
                .exec(self.store.connection())
                .await?;
        }
        Ok(())
    }
}
