//! Record: what a cycle decided and did, written through the store in the caller's transaction,
//! and the state the next cycle starts from, read back.
//!
//! [`record_outcome`] runs the fencing check first (a worker that lost its lock to a newer one
//! cannot overwrite that one's results), then writes orders (upsert by client order id), the
//! closed trade and position, a newly opened position, an equity snapshot, a circuit-breaker
//! pause, and finishes the run with the signal and the analysis (indicator snapshots per
//! timeframe, the sizing decision with its reasons, LLM advice, notes, stage timings).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::ConnectionTrait;

use super::cycle::{CycleOutcome, CycleState};
use super::execution::{ExecutedOrder, ExitReason, TrackedPosition};
use super::risk::RiskConfig;
use super::sizing::SizingMethod;
use crate::domain::{ClientOrderId, Order};
use crate::store::{
    CycleInputs, EquityMarks, FencedFinish, NewPosition, NewTrade, OrderRecord, OrderRole,
    PositionStatus, RunOutcome, RunStatus, Store, StoreError, subscription,
};

/// Who is recording, for what.
#[derive(Debug, Clone)]
pub struct RecordContext<'a> {
    pub run_id: i64,
    pub subscription_id: i64,
    /// Registry name of the venue.
    pub exchange: &'a str,
    pub fencing_token: i64,
    pub now: DateTime<Utc>,
    /// The subscription's equity marks after this cycle ([`equity_marks`]), stored with the
    /// fencing check; `None` leaves them as they are.
    pub marks: Option<EquityMarks>,
}

/// The equity marks after `outcome` (a cycle that started from `state`), recorded at `now`:
/// `None` when the cycle read no balance.
pub fn equity_marks(
    state: &CycleState,
    outcome: &CycleOutcome,
    now: DateTime<Utc>,
) -> Option<EquityMarks> {
    let balance = outcome.balance.as_ref()?;
    Some(EquityMarks::after(
        state.peak_equity,
        state.day_start_equity.zip(state.day_start_at),
        balance.equity,
        now,
    ))
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSummary {
    pub orders: usize,
    pub trade_recorded: bool,
    pub position_opened: bool,
    pub paused: bool,
}

fn order_record(ctx: &RecordContext<'_>, role: OrderRole, o: &Order) -> Option<OrderRecord> {
    Some(OrderRecord {
        client_order_id: o.client_order_id.clone()?,
        subscription_id: ctx.subscription_id,
        run_id: Some(ctx.run_id),
        exchange: ctx.exchange.to_string(),
        symbol: o.symbol.clone(),
        exchange_order_id: Some(o.exchange_order_id.clone()),
        role,
        side: o.side,
        order_type: o.order_type,
        quantity: o.quantity,
        price: o.price,
        trigger_price: o.trigger_price,
        reduce_only: o.reduce_only,
        status: o.status,
        filled_quantity: o.filled_quantity,
        average_price: o.average_price,
        fee: o.fee,
        raw: serde_json::to_value(o).ok(),
    })
}

/// The run record's analysis document.
fn analysis_json(outcome: &CycleOutcome) -> serde_json::Value {
    serde_json::json!({
        "timeframes": &outcome.analysis,
        "signal": &outcome.signal,
        "sizing": &outcome.sizing,
        "llm": &outcome.llm,
        "breaker": &outcome.breaker,
        "closed": &outcome.closed,
        "notes": &outcome.notes,
        "stage_ms": &outcome.stage_ms,
    })
}

/// Write `outcome` for the run in `ctx`. Call inside a transaction; the fencing check comes first.
pub async fn record_outcome<C: ConnectionTrait>(
    store: &Store<C>,
    ctx: &RecordContext<'_>,
    outcome: &CycleOutcome,
) -> Result<RecordSummary, StoreError> {
    store
        .check_fencing_token_with_marks(ctx.subscription_id, ctx.fencing_token, ctx.marks.as_ref())
        .await?;
    let mut summary = RecordSummary::default();

    let mut orders: Vec<(OrderRole, &Order)> = Vec::new();
    if let Some(exec) = &outcome.execution {
        orders.extend(
            exec.orders
                .iter()
                .map(|o: &ExecutedOrder| (o.role, &o.order)),
        );
    }
    if let Some(close) = &outcome.close_order {
        orders.push((close.role, &close.order));
    }
    let exit_role = outcome.closed.as_ref().and_then(|t| match t.reason {
        ExitReason::StopLoss => Some(OrderRole::StopLoss),
        ExitReason::TakeProfit => Some(OrderRole::TakeProfit),
        ExitReason::Unknown => None,
    });
    if let (Some(role), Some(exit)) = (
        exit_role,
        outcome.closed.as_ref().and_then(|t| t.exit_order.as_ref()),
    ) {
        orders.push((role, exit));
    }
    for (role, o) in orders {
        if let Some(rec) = order_record(ctx, role, o) {
            // An order placed by an earlier run keeps its run id: upsert updates status/fills.
            let rec = match store
                .order_by_client_id(rec.client_order_id.as_str())
                .await?
            {
                Some(existing) => OrderRecord {
                    run_id: existing.run_id,
                    ..rec
                },
                None => rec,
            };
            store.upsert_order(&rec, ctx.now).await?;
            summary.orders += 1;
        }
    }

    if let Some(trade) = &outcome.closed {
        let open = store
            .list_positions(ctx.subscription_id, Some(PositionStatus::Open))
            .await?;
        let position = open.into_iter().next();
        match (trade.exit_price, trade.realized_pnl) {
            (Some(exit), Some(pnl)) => {
                if let Some(p) = &position {
                    store
                        .insert_trade(&NewTrade {
                            subscription_id: ctx.subscription_id,
                            run_id: Some(ctx.run_id),
                            symbol: p.symbol.clone(),
                            side: p.side,
                            quantity: trade.quantity,
                            entry_price: p.entry_price.get(),
                            exit_price: Some(exit),
                            realized_pnl: pnl,
                            fees: trade.fees,
                            opened_at: p.opened_at,
                            closed_at: Some(trade.closed_at.unwrap_or(ctx.now)),
                        })
                        .await?;
                    store
                        .close_position(p.id, exit, pnl, trade.fees, ctx.now)
                        .await?;
                    summary.trade_recorded = true;
                }
            }
            // Gone without a known exit: the position is closed with no exit price and no trade
            // row is invented; the run's analysis carries the note.
            _ => {
                if let Some(p) = &position {
                    store.mark_position_gone(p.id, ctx.now).await?;
                }
            }
        }
    }

    let newly_opened = outcome
        .execution
        .as_ref()
        .is_some_and(|e| e.filled_quantity > Decimal::ZERO && !e.closed_without_stop);
    if newly_opened && let Some(t) = &outcome.tracked {
        let already = store
            .list_positions(ctx.subscription_id, Some(PositionStatus::Open))
            .await?;
        if already.is_empty() {
            store
                .open_position(&NewPosition {
                    subscription_id: ctx.subscription_id,
                    symbol: t.symbol.clone(),
                    side: t.side,
                    quantity: t.quantity,
                    entry_price: t.entry_price,
                    fees: t.entry_fee,
                    opened_at: t.opened_at,
                })
                .await?;
            summary.position_opened = true;
        }
    }

    if let Some(b) = &outcome.balance {
        store
            .insert_equity_snapshot(ctx.subscription_id, ctx.now, b.equity, b.unrealized_pnl)
            .await?;
    }

    if let Some(trip) = &outcome.breaker {
        store
            .pause_subscription(ctx.subscription_id, Some(&trip.reason), ctx.now)
            .await?;
        summary.paused = true;
    }

    store
        .close_run(ctx.run_id, &run_outcome(outcome), ctx.now)
        .await?;
    Ok(summary)
}

/// How the run of `outcome` ended, for its row.
fn run_outcome(outcome: &CycleOutcome) -> RunOutcome {
    let signal = outcome.signal.as_ref();
    RunOutcome {
        status: if outcome.breaker.is_some() {
            RunStatus::Skipped
        } else {
            RunStatus::Succeeded
        },
        signal: signal.map(|s| s.action().as_str().to_string()),
        confidence: signal.and_then(|s| {
            Decimal::try_from(s.confidence())
                .ok()
                .map(|d| d.round_dp(4))
        }),
        analysis: Some(analysis_json(outcome)),
        error: None,
    }
}

/// On PostgreSQL, the record of an outcome that placed, closed, opened and paused nothing (most
/// cycles: the strategy holds) as one statement with the fencing check: one round trip instead
/// of the five of a transaction. `Ok(None)` when the outcome needs [`record_outcome`] in a
/// transaction (or the database is SQLite); nothing was written then.
pub async fn record_outcome_at_once<C: ConnectionTrait>(
    store: &Store<C>,
    ctx: &RecordContext<'_>,
    outcome: &CycleOutcome,
) -> Result<Option<RecordSummary>, StoreError> {
    let only_the_run = outcome.execution.is_none()
        && outcome.close_order.is_none()
        && outcome.closed.is_none()
        && outcome.breaker.is_none();
    if !only_the_run || store.backend() != sea_orm::DbBackend::Postgres {
        return Ok(None);
    }
    store
        .finish_run_fenced(&FencedFinish {
            run_id: ctx.run_id,
            subscription_id: ctx.subscription_id,
            fencing_token: ctx.fencing_token,
            now: ctx.now,
            snapshot: outcome
                .balance
                .as_ref()
                .map(|b| (b.equity, b.unrealized_pnl)),
            marks: ctx.marks.as_ref(),
            outcome: &run_outcome(outcome),
        })
        .await?;
    Ok(Some(RecordSummary::default()))
}

/// How many of the newest equity snapshots seed the equity marks of a subscription that has
/// none yet.
pub const PEAK_WINDOW: u64 = 5_000;
/// Closed trades the breakers and Kelly sizing look at: the most recent ones, so a cycle's cost
/// does not grow with the subscription's age (a 5m bot that trades every hour closes ~8,700
/// trades a year).
pub const TRADE_WINDOW: u64 = 1_000;

/// How many of the newest closed trades a cycle under `risk` reads: [`TRADE_WINDOW`] when it
/// sizes by Kelly (the only reader of the trade statistics), else only as many as the loss
/// streak breaker counts to (`max_consecutive_losses`; none when it is off). A mature
/// subscription then costs no more per cycle than a new one.
pub fn trade_window(risk: &RiskConfig) -> u64 {
    if risk.capital.sizing_method == SizingMethod::Kelly {
        TRADE_WINDOW
    } else {
        u64::from(risk.max_consecutive_losses)
    }
}

/// The state the next cycle of `subscription` starts from: two queries (the open positions
/// of the principal on the venue, the newest closed trades), then [`state_from_inputs`]. The
/// worker reads the same inputs with [`Store::start_cycle`], in the statement that marks its
/// run running.
pub async fn load_state<C: ConnectionTrait>(
    store: &Store<C>,
    subscription: &subscription::Model,
    now: DateTime<Utc>,
) -> Result<CycleState, StoreError> {
    let inputs = CycleInputs {
        positions: store
            .open_positions_of_principal(subscription.principal_id, &subscription.exchange)
            .await?,
        trade_pnls_newest_first: store
            .recent_closed_trade_pnls(subscription.id, TRADE_WINDOW)
            .await?,
    };
    state_from_inputs(store, subscription, now, inputs).await
}

/// The cycle state from its inputs; reads the protective orders when the subscription has an
/// open position, and the newest equity snapshots when it has no equity marks yet (once); the
/// marks otherwise come with the subscription row.
pub async fn state_from_inputs<C: ConnectionTrait>(
    store: &Store<C>,
    subscription: &subscription::Model,
    now: DateTime<Utc>,
    inputs: CycleInputs,
) -> Result<CycleState, StoreError> {
    let subscription_id = subscription.id;
    // Its own open position, and the notional (at entry) of the principal's other open
    // positions on this exchange.
    let mut own = None;
    let mut open_exposure = Decimal::ZERO;
    for p in inputs.positions {
        if p.subscription_id == subscription_id {
            if own.is_none() {
                own = Some(p);
            }
        } else {
            open_exposure += p.quantity.get() * p.entry_price.get();
        }
    }
    let tracked = match own {
        None => None,
        Some(p) => {
            // The protective orders of the newest entry are the position's.
            let orders = store.list_orders(subscription_id, 50).await?;
            let id_of = |role: OrderRole| -> Option<ClientOrderId> {
                orders
                    .iter()
                    .find(|o| o.role == role)
                    .and_then(|o| ClientOrderId::new(o.client_order_id.clone()).ok())
            };
            Some(TrackedPosition {
                symbol: p.symbol.clone(),
                side: p.side,
                quantity: p.quantity.get(),
                entry_price: p.entry_price.get(),
                opened_at: p.opened_at,
                entry_fee: p.fees.get(),
                stop_loss_id: id_of(OrderRole::StopLoss),
                take_profit_id: id_of(OrderRole::TakeProfit),
            })
        }
    };
    let trade_pnls_newest_first = inputs.trade_pnls_newest_first;
    let (peak_equity, day_start) = match EquityMarks::of(subscription, now) {
        Some((peak, day_start)) => (Some(peak), day_start.zip(subscription.day_start_at)),
        // No marks yet (a new subscription, or one from before the marks): seed them from
        // the newest snapshots, once; this cycle's record stores them.
        None => {
            let snapshots = store
                .list_equity_snapshots(subscription_id, PEAK_WINDOW)
                .await?;
            let peak = snapshots.iter().map(|s| s.equity.get()).max();
            let today = now.date_naive();
            let day_start = snapshots
                .iter()
                .filter(|s| s.time.date_naive() == today)
                .min_by_key(|s| s.time)
                .map(|s| (s.equity.get(), s.time));
            (peak, day_start)
        }
    };
    Ok(CycleState {
        tracked,
        trade_pnls_newest_first,
        peak_equity,
        day_start_equity: day_start.map(|(e, _)| e),
        day_start_at: day_start.map(|(_, at)| at),
        open_exposure,
    })
}
