//! Execution: turn a sized entry into orders on any venue, exactly once, and never leave a
//! position without a stop-loss.
//!
//! Order of writes: leverage -> entry -> reduce-only stop-loss sized from the actual fill ->
//! reduce-only take-profit. Every order has a deterministic client order id (subscription, slot,
//! role) and goes through [`place_once`], so a retried job resumes where the last attempt
//! stopped. Before each write the [`WriteGate`] is checked (the subscription lock): a cycle that
//! lost its lock stops before its next exchange write. An entry whose stop-loss cannot be placed
//! is closed with a reduce-only market order and flagged.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::order_ids::{OrderRole, client_order_id};
use crate::domain::{
    ClientOrderId, Instrument, Order, OrderRequest, OrderStatus, OrderType, PositionSide, Symbol,
};
use crate::exchange::idempotent::{Placement, ReconcilePolicy, place_once};
use crate::exchange::precision::{Round, round_to_increment};
use crate::exchange::{Exchange, ExchangeError};

/// Checked before every exchange write. The worker's lock guard implements it.
pub trait WriteGate: Send + Sync {
    /// `Err` with the reason when writes must stop (lock lost, shutdown deadline passed).
    fn check(&self) -> Result<(), String>;
}

/// A gate that is always open: backtests, the CLI and tests without a fleet lock.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGate;

impl WriteGate for NoGate {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Why execution stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error("stopped before an exchange write: {0}")]
    GateClosed(String),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("bad client order id: {0}")]
    ClientOrderId(#[from] crate::domain::DomainError),
}

/// A sized entry to execute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryPlan {
    pub subscription_id: i64,
    pub slot: DateTime<Utc>,
    pub symbol: Symbol,
    pub side: PositionSide,
    /// Base-coin quantity, on the step grid.
    pub quantity: Decimal,
    pub leverage: u32,
    pub stop_loss: Decimal,
    pub take_profit: Option<Decimal>,
}

/// One order the cycle placed or found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutedOrder {
    pub role: OrderRole,
    pub order: Order,
    /// False when an earlier attempt of this job had already placed it.
    pub placed_now: bool,
}

/// What execution did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExecutionReport {
    pub orders: Vec<ExecutedOrder>,
    /// Base-coin quantity the entry filled.
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    /// The stop-loss could not be placed, so the position was closed at market.
    pub closed_without_stop: bool,
    pub warnings: Vec<String>,
}

/// Tuning of execution.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionSettings {
    pub reconcile: ReconcilePolicy,
    /// Look-ups of a market entry that came back without its fill.
    pub fill_lookups: u32,
    pub fill_pause: Duration,
}

impl Default for ExecutionSettings {
    fn default() -> Self {
        Self {
            reconcile: ReconcilePolicy::default(),
            fill_lookups: 3,
            fill_pause: Duration::from_millis(300),
        }
    }
}

/// Test-only fault hook: names a file. While that file exists, every entry this process places
/// is followed by a pause: the cycle writes the process id to `<file>.reached` and waits until the
/// file is removed, so process tests can SIGKILL or SIGTERM a worker right after its entry order.
/// Never set it in production. Unset (the normal case), the hook costs one cached check.
pub const TEST_HOLD_AFTER_ENTRY_ENV: &str = "TRADEFLEET_TEST_HOLD_AFTER_ENTRY";

async fn test_hold_after_entry() {
    static HOLD: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let Some(path) = HOLD.get_or_init(|| {
        std::env::var_os(TEST_HOLD_AFTER_ENTRY_ENV)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    }) else {
        return;
    };
    if !path.exists() {
        return;
    }
    let mut marker = path.clone().into_os_string();
    marker.push(".reached");
    if let Err(e) = std::fs::write(&marker, std::process::id().to_string()) {
        tracing::warn!(error = %e, "test hold hook: cannot write the marker");
    }
    tracing::warn!(hold = %path.display(), "test hold hook: holding after the entry order");
    while path.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn gate(g: &dyn WriteGate) -> Result<(), ExecutionError> {
    g.check().map_err(ExecutionError::GateClosed)
}

/// Protective prices are rounded toward the entry: a tighter stop and a nearer target, never a
/// wider loss than the strategy asked for.
fn protective_price(price: Decimal, entry: Decimal, tick: Decimal) -> Decimal {
    let dir = if price < entry {
        Round::Up
    } else {
        Round::Down
    };
    round_to_increment(price, tick, dir)
}

async fn place(
    exchange: &dyn Exchange,
    request: OrderRequest,
    role: OrderRole,
    settings: &ExecutionSettings,
) -> Result<ExecutedOrder, ExchangeError> {
    let placement = place_once(exchange, &request, settings.reconcile).await?;
    let placed_now = matches!(placement, Placement::Placed(_));
    Ok(ExecutedOrder {
        role,
        order: placement.into_order(),
        placed_now,
    })
}

/// The entry as filled, asking the venue again when a market order came back before its fill
/// (an acknowledgement only, as on Bybit): the looked-up order carries the fill and its fee.
async fn entry_fill(
    exchange: &dyn Exchange,
    symbol: &Symbol,
    id: &ClientOrderId,
    order: &Order,
    settings: &ExecutionSettings,
) -> Option<Order> {
    if order.filled_quantity > Decimal::ZERO || order.status.is_terminal() {
        return None;
    }
    for _ in 0..settings.fill_lookups {
        tokio::time::sleep(settings.fill_pause).await;
        if let Ok(Some(o)) = exchange.order_by_client_id(symbol, id).await
            && (o.filled_quantity > Decimal::ZERO || o.status.is_terminal())
        {
            return Some(o);
        }
    }
    None
}

/// Execute `plan`: leverage, entry, stop-loss, take-profit. Safe to call again for the same plan
/// (a retried job): orders already on the venue are found, not placed twice.
pub async fn execute_entry(
    exchange: &dyn Exchange,
    instrument: &Instrument,
    plan: &EntryPlan,
    write_gate: &dyn WriteGate,
    settings: &ExecutionSettings,
) -> Result<ExecutionReport, ExecutionError> {
    let mut report = ExecutionReport::default();
    let id = |role| client_order_id(plan.subscription_id, plan.slot, role, 0);
    let entry_id = id(OrderRole::Entry)?;
    let sl_id = id(OrderRole::StopLoss)?;
    let tp_id = id(OrderRole::TakeProfit)?;
    let close_id = id(OrderRole::Close)?;

    gate(write_gate)?;
    exchange.set_leverage(&plan.symbol, plan.leverage).await?;

    gate(write_gate)?;
    let mut entry = place(
        exchange,
        OrderRequest {
            symbol: plan.symbol.clone(),
            client_order_id: entry_id.clone(),
            side: plan.side.entry_side(),
            order_type: OrderType::Market,
            quantity: plan.quantity,
            price: None,
            trigger_price: None,
            reduce_only: false,
        },
        OrderRole::Entry,
        settings,
    )
    .await?;
    // Report the filled order (its fee becomes the tracked position's entry fee), not the ack.
    if let Some(filled) =
        entry_fill(exchange, &plan.symbol, &entry_id, &entry.order, settings).await
    {
        entry.order = filled;
    }
    test_hold_after_entry().await;
    let (filled, avg) = (entry.order.filled_quantity, entry.order.average_price);
    report.orders.push(entry);
    report.filled_quantity = filled;
    report.average_price = avg;
    if filled <= Decimal::ZERO {
        report
            .warnings
            .push("entry did not fill; no protective orders placed".into());
        return Ok(report);
    }
    // Protect what actually filled (partial fills included).
    let protect_qty = round_to_increment(filled, instrument.step_size, Round::Down);
    let reference = avg.unwrap_or(plan.stop_loss);
    let exit_side = plan.side.exit_side();

    gate(write_gate)?;
    let stop_price = protective_price(plan.stop_loss, reference, instrument.tick_size);
    let stop = place(
        exchange,
        OrderRequest {
            symbol: plan.symbol.clone(),
            client_order_id: sl_id,
            side: exit_side,
            order_type: OrderType::StopMarket,
            quantity: protect_qty,
            price: None,
            trigger_price: Some(stop_price),
            reduce_only: true,
        },
        OrderRole::StopLoss,
        settings,
    )
    .await;
    match stop {
        Ok(o) => report.orders.push(o),
        Err(e) => {
            // Never leave a position naked: close it, and flag the cycle. The close is a write
            // too, but it reduces risk, so it is placed even if the gate has closed meanwhile.
            tracing::error!(error = %e, "stop-loss could not be placed; closing the entry");
            report.warnings.push(format!(
                "stop-loss could not be placed ({e}); position closed"
            ));
            let close = place(
                exchange,
                OrderRequest {
                    symbol: plan.symbol.clone(),
                    client_order_id: close_id,
                    side: exit_side,
                    order_type: OrderType::Market,
                    quantity: protect_qty,
                    price: None,
                    trigger_price: None,
                    reduce_only: true,
                },
                OrderRole::Close,
                settings,
            )
            .await?;
            report.orders.push(close);
            report.closed_without_stop = true;
            return Ok(report);
        }
    }

    if let Some(tp) = plan.take_profit {
        gate(write_gate)?;
        let tp_price = protective_price(tp, reference, instrument.tick_size);
        match place(
            exchange,
            OrderRequest {
                symbol: plan.symbol.clone(),
                client_order_id: tp_id,
                side: exit_side,
                order_type: OrderType::TakeProfitMarket,
                quantity: protect_qty,
                price: None,
                trigger_price: Some(tp_price),
                reduce_only: true,
            },
            OrderRole::TakeProfit,
            settings,
        )
        .await
        {
            Ok(o) => report.orders.push(o),
            // The stop protects the position; a missing target is worth a warning, not a close.
            Err(e) => report
                .warnings
                .push(format!("take-profit could not be placed: {e}")),
        }
    }
    Ok(report)
}

/// A position to close at market (a CLOSE signal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosePlan {
    pub subscription_id: i64,
    pub slot: DateTime<Utc>,
    pub symbol: Symbol,
    pub side: PositionSide,
    pub quantity: Decimal,
}

/// Close an open position at market, cancelling its protective orders first.
pub async fn close_position(
    exchange: &dyn Exchange,
    plan: &ClosePlan,
    write_gate: &dyn WriteGate,
    settings: &ExecutionSettings,
) -> Result<ExecutedOrder, ExecutionError> {
    gate(write_gate)?;
    exchange.cancel_all(&plan.symbol).await?;
    gate(write_gate)?;
    Ok(place(
        exchange,
        OrderRequest {
            symbol: plan.symbol.clone(),
            client_order_id: client_order_id(plan.subscription_id, plan.slot, OrderRole::Close, 0)?,
            side: plan.side.exit_side(),
            order_type: OrderType::Market,
            quantity: plan.quantity,
            price: None,
            trigger_price: None,
            reduce_only: true,
        },
        OrderRole::Close,
        settings,
    )
    .await?)
}

/// A position the fleet believes is open (from its own records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedPosition {
    pub symbol: Symbol,
    pub side: PositionSide,
    pub quantity: Decimal,
    pub entry_price: Decimal,
    pub opened_at: DateTime<Utc>,
    /// Entry fees already paid.
    pub entry_fee: Decimal,
    pub stop_loss_id: Option<ClientOrderId>,
    pub take_profit_id: Option<ClientOrderId>,
}

/// How a tracked position ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    StopLoss,
    TakeProfit,
    /// Gone from the venue with neither protective order filled (manual close, liquidation,
    /// ADL). Recorded as such; no exit price is guessed.
    Unknown,
}

/// The result of comparing a tracked position with the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reconciled {
    /// Still open on the venue (with the venue's current quantity).
    Open { quantity: Decimal },
    /// Closed since the last cycle.
    Closed(Box<ClosedTrade>),
}

/// A finished trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedTrade {
    pub reason: ExitReason,
    pub exit_price: Option<Decimal>,
    pub quantity: Decimal,
    /// Entry plus exit fees, where known.
    pub fees: Decimal,
    /// Price PnL minus fees; `None` when the exit is unknown.
    pub realized_pnl: Option<Decimal>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The exit order, when one filled.
    pub exit_order: Option<Order>,
}

fn filled_exit(o: &Order) -> bool {
    o.filled_quantity > Decimal::ZERO
        && matches!(
            o.status,
            OrderStatus::Filled | OrderStatus::Triggered | OrderStatus::PartiallyFilled
        )
}

/// Compare `tracked` with the venue: still open, or closed by its stop-loss / take-profit (a
/// trade with exact realized PnL from the exit order's fill), or gone for a reason the venue
/// does not tell (recorded as unknown). Leftover protective orders of a closed position are
/// cancelled.
pub async fn reconcile(
    exchange: &dyn Exchange,
    tracked: &TrackedPosition,
    write_gate: &dyn WriteGate,
) -> Result<Reconciled, ExecutionError> {
    let positions = exchange.positions(Some(&tracked.symbol)).await?;
    if let Some(p) = positions.iter().find(|p| {
        p.symbol == tracked.symbol && p.side == tracked.side && p.quantity > Decimal::ZERO
    }) {
        return Ok(Reconciled::Open {
            quantity: p.quantity,
        });
    }
    let mut exit: Option<(ExitReason, Order)> = None;
    for (reason, id) in [
        (ExitReason::StopLoss, &tracked.stop_loss_id),
        (ExitReason::TakeProfit, &tracked.take_profit_id),
    ] {
        if let Some(id) = id
            && let Some(o) = exchange.order_by_client_id(&tracked.symbol, id).await?
            && filled_exit(&o)
        {
            exit = Some((reason, o));
            break;
        }
    }
    // Whatever protective order is left must not open a new position later.
    gate(write_gate)?;
    exchange.cancel_all(&tracked.symbol).await?;
    let trade = match exit {
        Some((reason, order)) => {
            let price = order.average_price.or(order.trigger_price);
            let qty = order.filled_quantity.min(tracked.quantity);
            let fees = tracked.entry_fee + order.fee.unwrap_or(Decimal::ZERO);
            let pnl = price.map(|px| {
                let dir = match tracked.side {
                    PositionSide::Long => Decimal::ONE,
                    PositionSide::Short => Decimal::NEGATIVE_ONE,
                };
                (px - tracked.entry_price) * qty * dir - fees
            });
            ClosedTrade {
                reason,
                exit_price: price,
                quantity: qty,
                fees,
                realized_pnl: pnl,
                closed_at: order.updated_at,
                exit_order: Some(order),
            }
        }
        None => ClosedTrade {
            reason: ExitReason::Unknown,
            exit_price: None,
            quantity: tracked.quantity,
            fees: tracked.entry_fee,
            realized_pnl: None,
            closed_at: None,
            exit_order: None,
        },
    };
    Ok(Reconciled::Closed(Box::new(trade)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn protective_prices_round_toward_the_entry() {
        // Long: stop below entry rounds up, target above rounds down.
        assert_eq!(
            protective_price(dec!(0.98765), dec!(1.0), dec!(0.001)),
            dec!(0.988)
        );
        assert_eq!(
            protective_price(dec!(1.05678), dec!(1.0), dec!(0.001)),
            dec!(1.056)
        );
        // Short: stop above entry rounds down, target below rounds up.
        assert_eq!(
            protective_price(dec!(1.05678), dec!(1.0), dec!(0.001)),
            dec!(1.056)
        );
        assert_eq!(
            protective_price(dec!(0.94321), dec!(1.0), dec!(0.001)),
            dec!(0.944)
        );
    }
}
