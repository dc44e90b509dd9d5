//! One trading cycle, exchange-agnostic and free of SQL and Redis specifics:
//! reconcile -> breakers -> crawl -> analyze -> signal (-> LLM) -> size -> execute.
//!
//! The worker loads a [`CycleState`] from the store, calls [`run_cycle`], and records the returned
//! [`CycleOutcome`] in one transaction. Backtests and `fleetctl` run the same function. The cycle
//! never touches a position it did not open: an untracked position on the venue is reported, and
//! only resumed when this slot's own entry order is found on the venue (a retried job).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tracing::Instrument;

use super::crawl::{CandleCache, CrawlError, CrawlRequest, crawl};
use super::execution::{
    ClosePlan, EntryPlan, ExecutedOrder, ExecutionError, ExecutionReport, ExecutionSettings,
    Reconciled, TrackedPosition, WriteGate, close_position, execute_entry, reconcile,
};
use super::indicators::Snapshot;
use super::llm::{LlmAdvice, LlmAdvisor};
use super::order_ids::{OrderRole, client_order_id};
use super::risk::{BreakerTrip, RiskConfig, RiskState, check_breakers, consecutive_losses};
use super::signal::{Action, Signal};
use super::sizing::{LlmRecommendation, SizingDecision, SizingInput, TradeStats, size_position};
use super::strategy::{MarketView, Strategy, StrategyError};
use crate::domain::{Balance, Candle, PositionSide, Symbol, Timeframe};
use crate::exchange::{Exchange, ExchangeError};

/// What the subscription asks for.
#[derive(Debug)]
pub struct CycleSpec<'a> {
    pub subscription_id: i64,
    pub slot: DateTime<Utc>,
    /// Registry name of the venue (cache keys, records).
    pub exchange_name: &'a str,
    pub symbol: &'a Symbol,
    /// The subscription's timeframes (1..=7); the strategy may add its own.
    pub timeframes: &'a [Timeframe],
    /// Closed candles per timeframe.
    pub candles: usize,
    pub leverage: u32,
    pub strategy: &'a dyn Strategy,
    pub risk: &'a RiskConfig,
    /// Wall-clock (or replay) time of this run; closed candles end at or before it.
    pub now: DateTime<Utc>,
}

/// What the fleet's records say before this cycle.
#[derive(Debug, Clone, Default)]
pub struct CycleState {
    /// The position this subscription opened and believes still open.
    pub tracked: Option<TrackedPosition>,
    /// Realized PnL of closed trades, newest first (Kelly, consecutive losses).
    pub trade_pnls_newest_first: Vec<Decimal>,
    /// Highest equity recorded.
    pub peak_equity: Option<Decimal>,
    /// First equity recorded today (UTC).
    pub day_start_equity: Option<Decimal>,
    /// When `day_start_equity` was recorded.
    pub day_start_at: Option<DateTime<Utc>>,
    /// Notional of the principal's other open positions on this exchange.
    pub open_exposure: Decimal,
}

/// Everything a cycle decided and did, for the run record.
#[derive(Debug, Clone, Serialize)]
pub struct CycleOutcome {
    /// A trade that closed since the last cycle (by SL/TP or unknown).
    pub closed: Option<Box<super::execution::ClosedTrade>>,
    /// A breaker tripped: the subscription must be paused with this reason; nothing was traded.
    pub breaker: Option<BreakerTrip>,
    /// Indicator snapshots per timeframe.
    pub analysis: BTreeMap<Timeframe, Snapshot>,
    pub signal: Option<Signal>,
    pub llm: Option<LlmAdvice>,
    pub sizing: Option<SizingDecision>,
    pub execution: Option<ExecutionReport>,
    /// A CLOSE (or opposite) signal's market close.
    pub close_order: Option<ExecutedOrder>,
    /// The position tracked after this cycle.
    pub tracked: Option<TrackedPosition>,
    /// Balance at the end of the cycle.
    pub balance: Option<Balance>,
    pub notes: Vec<String>,
    /// Milliseconds per stage (crawl, analyze, signal, size, execute).
    pub stage_ms: BTreeMap<&'static str, u64>,
    /// The same stages at full precision, for the cycle-duration histogram.
    #[serde(skip)]
    pub stage_durations: BTreeMap<&'static str, Duration>,
}

impl CycleOutcome {
    fn stage_done(&mut self, stage: &'static str, started: Instant) {
        let elapsed = started.elapsed();
        self.stage_ms.insert(
            stage,
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        );
        self.stage_durations.insert(stage, elapsed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error(transparent)]
    Crawl(#[from] CrawlError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Execution(#[from] ExecutionError),
}

impl CycleError {
    /// Worth retrying the job (the venue or network may recover), as opposed to a bug or bad
    /// configuration that will fail the same way.
    pub fn is_retryable(&self) -> bool {
        use crate::exchange::Recovery;
        match self {
            CycleError::Exchange(e)
            | CycleError::Crawl(CrawlError::Exchange(e))
            | CycleError::Execution(ExecutionError::Exchange(e)) => {
                e.recovery() != Recovery::Permanent
            }
            CycleError::Execution(ExecutionError::GateClosed(_)) => true,
            _ => false,
        }
    }
}

fn confidence(signal: &Signal) -> Decimal {
    Decimal::try_from(signal.confidence())
        .map(|d| d.round_dp(4))
        .unwrap_or(Decimal::ZERO)
}

/// Run one cycle. Exchange writes happen only in the execute step, each behind `gate`.
pub async fn run_cycle(
    exchange: &dyn Exchange,
    cache: &dyn CandleCache,
    llm: Option<&LlmAdvisor>,
    spec: &CycleSpec<'_>,
    state: &CycleState,
    gate: &dyn WriteGate,
    settings: &ExecutionSettings,
) -> Result<CycleOutcome, CycleError> {
    let mut out = CycleOutcome {
        closed: None,
        breaker: None,
        analysis: BTreeMap::new(),
        signal: None,
        llm: None,
        sizing: None,
        execution: None,
        close_order: None,
        tracked: state.tracked.clone(),
        balance: None,
        notes: Vec::new(),
        stage_ms: BTreeMap::new(),
        stage_durations: BTreeMap::new(),
    };
    let mut pnls = state.trade_pnls_newest_first.clone();

    // 1. Reconcile what we believe with what the venue says.
    let t = Instant::now();
    let span = tracing::info_span!("cycle.reconcile");
    if let Some(tracked) = &state.tracked {
        match reconcile(exchange, tracked, gate)
            .instrument(span.clone())
            .await?
        {
            Reconciled::Open { quantity } => {
                if quantity != tracked.quantity {
                    out.notes.push(format!(
                        "venue position quantity {quantity} differs from the recorded {}",
                        tracked.quantity
                    ));
                }
            }
            Reconciled::Closed(trade) => {
                if let Some(p) = trade.realized_pnl {
                    pnls.insert(0, p);
                }
                out.tracked = None;
                out.closed = Some(trade);
            }
        }
    }
    let balance = exchange
        .balance(spec.symbol.settle())
        .instrument(span.clone())
        .await?;
    let venue_position = exchange
        .positions(Some(spec.symbol))
        .instrument(span)
        .await?
        .into_iter()
        .find(|p| p.symbol == *spec.symbol && p.quantity > Decimal::ZERO);
    out.stage_done("reconcile", t);

    // 2. Circuit breakers.
    let equity = balance.equity;
    let peak = state.peak_equity.map_or(equity, |p| p.max(equity));
    let risk_state = RiskState {
        day_start_equity: state.day_start_equity.unwrap_or(equity),
        equity,
        peak_equity: peak,
        consecutive_losses: consecutive_losses(pnls.iter().copied()),
    };
    out.balance = Some(balance.clone());
    if let Some(trip) = check_breakers(spec.risk, &risk_state) {
        out.breaker = Some(trip);
        return Ok(out);
    }

    // 3. Crawl.
    let t = Instant::now();
    let mut tfs: Vec<Timeframe> = spec.timeframes.to_vec();
    for tf in spec.strategy.timeframes() {
        if !tfs.contains(&tf) {
            tfs.push(tf);
        }
    }
    let wanted: Vec<(Timeframe, usize)> = tfs.iter().map(|tf| (*tf, spec.candles)).collect();
    let series: BTreeMap<Timeframe, Vec<Candle>> = crawl(
        exchange,
        cache,
        &CrawlRequest {
            exchange_name: spec.exchange_name,
            symbol: spec.symbol,
            timeframes: &wanted,
            now: spec.now,
        },
    )
    .instrument(tracing::info_span!("cycle.crawl"))
    .await?;
    out.stage_done("crawl", t);

    // 4. Analyze.
    let t = Instant::now();
    let refs: Vec<(Timeframe, &[Candle])> =
        series.iter().map(|(tf, c)| (*tf, c.as_slice())).collect();
    // Our own entry of this slot, on the venue but not yet recorded (an earlier attempt died
    // after placing it): the strategy decides as the interrupted attempt did, flat, so the entry
    // resumes (stop-loss and take-profit placed) instead of being taken for an open position.
    let entry_id = client_order_id(spec.subscription_id, spec.slot, OrderRole::Entry, 0)
        .map_err(|e| CycleError::Execution(ExecutionError::ClientOrderId(e)))?;
    let own_entry_on_venue = if out.tracked.is_none() && venue_position.is_some() {
        exchange
            .order_by_client_id(spec.symbol, &entry_id)
            .await?
            .is_some()
    } else {
        false
    };
    let view_position = if own_entry_on_venue {
        None
    } else {
        venue_position.as_ref()
    };
    let view = tracing::info_span!("cycle.analyze").in_scope(|| {
        let view = MarketView::new(&refs, view_position)?;
        for frame in view.frames() {
            out.analysis
                .insert(frame.timeframe(), frame.snapshot().clone());
        }
        Ok::<_, CycleError>(view)
    })?;
    out.stage_done("analyze", t);

    // 5. Signal (and the LLM's advice, which never blocks the cycle).
    let t = Instant::now();
    let span = tracing::info_span!("cycle.signal", action = tracing::field::Empty);
    let signal = span.in_scope(|| spec.strategy.generate(&view))?;
    span.record("action", signal.action().as_str());
    if let Some(advisor) = llm {
        let input = serde_json::json!({
            "symbol": spec.symbol.to_string(),
            "analysis": &out.analysis,
            "signal": &signal,
            "position": venue_position.as_ref().map(|p| p.side.as_str()),
        });
        match advisor.advise(&input).instrument(span).await {
            Ok(a) => out.llm = Some(a),
            Err(e) => out.notes.push(format!("LLM advice unavailable: {e}")),
        }
    }
    out.stage_done("signal", t);
    let action = signal.action();
    out.signal = Some(signal.clone());

    // 6-7. Decide, size and execute.
    let wanted_side = match action {
        Action::Buy => Some(PositionSide::Long),
        Action::Sell => Some(PositionSide::Short),
        _ => None,
    };
    let t = Instant::now();
    let execute_span = tracing::info_span!("cycle.execute");
    match (&out.tracked, &venue_position) {
        // Our position is open: CLOSE, or an opposite signal, closes it; anything else holds.
        (Some(tracked), _) => {
            let opposite = wanted_side.is_some_and(|s| s != tracked.side);
            if action == Action::Close || opposite {
                let qty = venue_position
                    .as_ref()
                    .map_or(tracked.quantity, |p| p.quantity);
                let order = close_position(
                    exchange,
                    &ClosePlan {
                        subscription_id: spec.subscription_id,
                        slot: spec.slot,
                        symbol: spec.symbol.clone(),
                        side: tracked.side,
                        quantity: qty,
                    },
                    gate,
                    settings,
                )
                .instrument(execute_span.clone())
                .await?;
                out.notes.push(format!(
                    "{} signal closed the {} position",
                    action,
                    tracked.side.as_str()
                ));
                out.close_order = Some(order);
            }
        }
        // A position we do not track: ours only if this slot's entry is on the venue.
        (None, Some(p)) if !own_entry_on_venue => {
            out.notes.push(format!(
                "untracked {} position of {} on the venue; not touched",
                p.side.as_str(),
                p.quantity
            ));
        }
        // Our own unrecorded entry, but the signal no longer asks for its side (the market
        // moved between attempts): it has no protective orders, so it is closed, not left open.
        (None, Some(p)) if wanted_side != Some(p.side) => {
            let order = close_position(
                exchange,
                &ClosePlan {
                    subscription_id: spec.subscription_id,
                    slot: spec.slot,
                    symbol: spec.symbol.clone(),
                    side: p.side,
                    quantity: p.quantity,
                },
                gate,
                settings,
            )
            .await?;
            out.notes.push(format!(
                "this slot's {} entry from an earlier attempt closed: the signal is now {action}",
                p.side.as_str()
            ));
            out.close_order = Some(order);
        }
        (None, existing) => {
            if let Some(side) = wanted_side {
                let t_size = Instant::now();
                let size_span = tracing::info_span!("cycle.size");
                let instrument = Exchange::instrument(exchange, spec.symbol)
                    .instrument(size_span.clone())
                    .await?;
                let stats = TradeStats::from_pnls(pnls.iter().copied());
                let llm_rec = out.llm.as_ref().and_then(|a| {
                    a.position_size_pct.map(|pct| LlmRecommendation {
                        position_size_pct: pct,
                        confidence: a.confidence,
                    })
                });
                let decision = size_span.in_scope(|| {
                    size_position(&SizingInput {
                        config: &spec.risk.capital,
                        instrument: &instrument,
                        equity: balance.equity,
                        available: balance.available,
                        peak_equity: peak,
                        entry_price: signal.entry(),
                        stop_loss: signal.stop_loss(),
                        leverage: spec.leverage,
                        open_exposure: state.open_exposure,
                        trade_stats: &stats,
                        llm: llm_rec.as_ref(),
                        confidence: confidence(&signal),
                    })
                });
                out.stage_done("size", t_size);
                // A retried job whose entry already filled resumes with the venue's quantity.
                let resume_qty = existing.as_ref().map(|p| p.quantity);
                let plan_qty = match (&decision, resume_qty) {
                    (_, Some(q)) => Some((q, spec.leverage)),
                    (
                        SizingDecision::Open {
                            quantity, leverage, ..
                        },
                        None,
                    ) => Some((*quantity, *leverage)),
                    (SizingDecision::Skip { .. }, None) => None,
                };
                out.sizing = Some(decision);
                if let (Some((quantity, leverage)), Some(stop_loss)) =
                    (plan_qty, signal.stop_loss())
                {
                    let plan = EntryPlan {
                        subscription_id: spec.subscription_id,
                        slot: spec.slot,
                        symbol: spec.symbol.clone(),
                        side,
                        quantity,
                        leverage,
                        stop_loss,
                        take_profit: signal.take_profit(),
                    };
                    let report = execute_entry(exchange, &instrument, &plan, gate, settings)
                        .instrument(execute_span.clone())
                        .await?;
                    if report.filled_quantity > Decimal::ZERO && !report.closed_without_stop {
                        let entry_fee = report
                            .orders
                            .iter()
                            .find(|o| o.role == OrderRole::Entry)
                            .and_then(|o| o.order.fee)
                            .unwrap_or(Decimal::ZERO);
                        let id_of = |role| {
                            report
                                .orders
                                .iter()
                                .find(|o| o.role == role)
                                .and_then(|o| o.order.client_order_id.clone())
                        };
                        out.tracked = Some(TrackedPosition {
                            symbol: spec.symbol.clone(),
                            side,
                            quantity: report.filled_quantity,
                            entry_price: report.average_price.unwrap_or(signal.entry()),
                            opened_at: spec.now,
                            entry_fee,
                            stop_loss_id: id_of(OrderRole::StopLoss),
                            take_profit_id: id_of(OrderRole::TakeProfit),
                        });
                    }
                    out.execution = Some(report);
                }
            }
        }
    }
    out.stage_done("execute", t);
    out.balance = Some(exchange.balance(spec.symbol.settle()).await?);
    Ok(out)
}
