//! `fleetctl performance`: a subscription's results from its closed trades and equity snapshots.
//!
//! Money and percentages are exact `Decimal`s; only the Sharpe ratio is an `f64` (it needs a
//! square root). Sharpe ratio = mean(r) / sd(r) over per-trade returns
//! r = realized_pnl / (entry_price x quantity), with the sample standard deviation (n - 1), no
//! risk-free rate and no annualisation; it needs at least two trades with returns that differ.

use std::process::ExitCode;

use clap::Args;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use tradefleet::store::{PositionStatus, equity_snapshot, trade};

use crate::Globals;
use crate::context::Ctx;
use crate::output::{CliError, CliResult, print_json, print_table};

#[derive(Debug, Args)]
pub(crate) struct PerformanceArgs {
    #[arg(long)]
    subscription: i64,
}

/// The figures `performance` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Performance {
    pub subscription_id: i64,
    pub total_trades: u64,
    pub winning_trades: u64,
    pub losing_trades: u64,
    /// Winning / total x 100.
    pub win_rate_pct: Option<Decimal>,
    pub total_pnl: Decimal,
    /// The first equity snapshot.
    pub starting_equity: Option<Decimal>,
    /// Total PnL / starting equity x 100.
    pub total_pnl_pct: Option<Decimal>,
    pub average_trade_seconds: Option<i64>,
    /// Largest fall from a running peak of the equity snapshots, in money and % of that peak.
    pub max_drawdown: Option<Decimal>,
    pub max_drawdown_pct: Option<Decimal>,
    /// See the module docs for the formula.
    pub sharpe_ratio: Option<f64>,
}

/// Computes [`Performance`] from trades (any order; open ones are ignored) and snapshots.
pub(crate) fn compute(
    subscription_id: i64,
    trades: &[trade::Model],
    snapshots: &[equity_snapshot::Model],
) -> Performance {
    let closed: Vec<&trade::Model> = trades
        .iter()
        .filter(|t| t.status == PositionStatus::Closed)
        .collect();
    let pnl = |t: &trade::Model| t.realized_pnl.get();
    let total = closed.len() as u64;
    let winning = closed.iter().filter(|t| pnl(t) > Decimal::ZERO).count() as u64;
    let losing = closed.iter().filter(|t| pnl(t) < Decimal::ZERO).count() as u64;
    let total_pnl: Decimal = closed.iter().map(|t| pnl(t)).sum();
    let hundred = Decimal::ONE_HUNDRED;
    let win_rate_pct = (total > 0).then(|| {
        (Decimal::from(winning) * hundred / Decimal::from(total))
            .round_dp(2)
            .normalize()
    });

    let mut snaps: Vec<&equity_snapshot::Model> = snapshots.iter().collect();
    snaps.sort_by_key(|s| (s.time, s.id));
    let starting_equity = snaps.first().map(|s| s.equity.get());
    let total_pnl_pct = starting_equity
        .filter(|e| *e > Decimal::ZERO)
        .map(|e| (total_pnl * hundred / e).round_dp(4).normalize());

    let durations: Vec<i64> = closed
        .iter()
        .filter_map(|t| t.closed_at.map(|c| (c - t.opened_at).num_seconds()))
        .collect();
    let average_trade_seconds =
        (!durations.is_empty()).then(|| durations.iter().sum::<i64>() / durations.len() as i64);

    let (mut max_dd, mut max_dd_pct) = (None::<Decimal>, None::<Decimal>);
    let mut peak: Option<Decimal> = None;
    for s in &snaps {
        let e = s.equity.get();
        let p = peak.map_or(e, |p| p.max(e));
        peak = Some(p);
        let dd = p - e;
        if max_dd.is_none_or(|m| dd > m) {
            max_dd = Some(dd);
            max_dd_pct = (p > Decimal::ZERO).then(|| (dd * hundred / p).round_dp(4).normalize());
        }
    }

    let returns: Vec<f64> = closed
        .iter()
        .filter_map(|t| {
            let notional = t.entry_price.get() * t.quantity.get();
            (notional > Decimal::ZERO)
                .then(|| (pnl(t) / notional).to_f64())
                .flatten()
        })
        .collect();
    let sharpe_ratio = sharpe(&returns);

    Performance {
        subscription_id,
        total_trades: total,
        winning_trades: winning,
        losing_trades: losing,
        win_rate_pct,
        total_pnl: total_pnl.normalize(),
        starting_equity: starting_equity.map(|e| e.normalize()),
        total_pnl_pct,
        average_trade_seconds,
        max_drawdown: max_dd.map(|d| d.normalize()),
        max_drawdown_pct: max_dd_pct,
        sharpe_ratio,
    }
}

/// mean / sample standard deviation; `None` under two returns or with no spread.
fn sharpe(returns: &[f64]) -> Option<f64> {
    if returns.len() < 2 {
        return None;
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sd = var.sqrt();
    (sd > 0.0 && sd.is_finite()).then(|| mean / sd)
}

fn duration_text(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub(crate) async fn run(globals: &Globals, args: PerformanceArgs) -> CliResult {
    let ctx = Ctx::open(globals).await?;
    let sub = ctx.store.subscription(args.subscription).await?;
    let trades = ctx.store.list_trades(sub.id).await?;
    let snapshots = equity_snapshot::Entity::find()
        .filter(equity_snapshot::Column::SubscriptionId.eq(sub.id))
        .all(ctx.store.connection())
        .await
        .map_err(|e| CliError::failure("database", format!("listing equity snapshots: {e}")))?;
    let p = compute(sub.id, &trades, &snapshots);
    if globals.json {
        print_json(&p)?;
        return Ok(ExitCode::SUCCESS);
    }
    let dash = || "-".to_string();
    let pct = |d: Option<Decimal>| d.map_or_else(dash, |d| format!("{}%", d.normalize()));
    let rows: Vec<Vec<String>> = vec![
        ("subscription", p.subscription_id.to_string()),
        ("total_trades", p.total_trades.to_string()),
        ("winning_trades", p.winning_trades.to_string()),
        ("losing_trades", p.losing_trades.to_string()),
        ("win_rate", pct(p.win_rate_pct)),
        ("total_pnl", p.total_pnl.normalize().to_string()),
        (
            "starting_equity",
            p.starting_equity
                .map_or_else(dash, |d| d.normalize().to_string()),
        ),
        ("total_pnl_pct", pct(p.total_pnl_pct)),
        (
            "average_trade_duration",
            p.average_trade_seconds.map_or_else(dash, duration_text),
        ),
        (
            "max_drawdown",
            p.max_drawdown
                .map_or_else(dash, |d| d.normalize().to_string()),
        ),
        ("max_drawdown_pct", pct(p.max_drawdown_pct)),
        (
            "sharpe_ratio",
            p.sharpe_ratio.map_or_else(dash, |s| format!("{s:.4}")),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect();
    print_table(&["METRIC", "VALUE"], &rows);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use tradefleet::domain::{PositionSide, Symbol};
    use tradefleet::store::DbDecimal;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn d(s: &str) -> DbDecimal {
        DbDecimal(s.parse().unwrap())
    }

    fn trade(id: i64, pnl: &str, open: i64, close: Option<i64>) -> trade::Model {
        trade::Model {
            id,
            subscription_id: 1,
            run_id: None,
            symbol: "XRP/USDT:USDT".parse::<Symbol>().unwrap(),
            side: PositionSide::Long,
            quantity: d("100"),
            entry_price: d("1"),
            exit_price: close.map(|_| d("1")),
            realized_pnl: d(pnl),
            fees: d("0"),
            status: if close.is_some() {
                PositionStatus::Closed
            } else {
                PositionStatus::Open
            },
            opened_at: t(open),
            closed_at: close.map(t),
        }
    }

    fn snap(id: i64, at: i64, equity: &str) -> equity_snapshot::Model {
        equity_snapshot::Model {
            id,
            subscription_id: 1,
            time: t(at),
            equity: d(equity),
            unrealized_pnl: d("0"),
        }
    }

    #[test]
    fn figures_from_trades_and_snapshots() {
        let trades = [
            trade(1, "10", 0, Some(3_600)),
            trade(2, "-4", 3_600, Some(5_400)),
            trade(3, "6", 7_200, Some(7_800)),
            trade(4, "99", 9_000, None),
        ];
        let snaps = [
            snap(3, 300, "1006"),
            snap(1, 0, "1000"),
            snap(2, 100, "1010"),
            snap(4, 400, "1012"),
        ];
        let p = compute(1, &trades, &snaps);
        assert_eq!(
            (p.total_trades, p.winning_trades, p.losing_trades),
            (3, 2, 1)
        );
        assert_eq!(p.win_rate_pct, Some("66.67".parse().unwrap()));
        assert_eq!(p.total_pnl, Decimal::from(12));
        assert_eq!(p.starting_equity, Some(Decimal::from(1000)));
        assert_eq!(p.total_pnl_pct, Some("1.2".parse().unwrap()));
        // (3600 + 1800 + 600) / 3
        assert_eq!(p.average_trade_seconds, Some(2_000));
        // Peak 1010, trough 1006.
        assert_eq!(p.max_drawdown, Some(Decimal::from(4)));
        assert_eq!(p.max_drawdown_pct, Some("0.396".parse().unwrap()));
        // Returns 0.10, -0.04, 0.06: mean 0.04, sd sqrt(0.0052) = 0.0721110.
        let s = p.sharpe_ratio.unwrap();
        assert!((s - 0.04 / 0.0052f64.sqrt()).abs() < 1e-9, "{s}");
    }

    #[test]
    fn empty_history_has_no_ratios() {
        let p = compute(1, &[], &[]);
        assert_eq!(p.total_trades, 0);
        assert_eq!(p.win_rate_pct, None);
        assert_eq!(p.sharpe_ratio, None);
        assert_eq!(p.max_drawdown, None);
        let one = compute(1, &[trade(1, "5", 0, Some(60))], &[]);
        assert_eq!(one.sharpe_ratio, None, "one trade has no spread");
        assert_eq!(one.total_pnl_pct, None, "no snapshot, no starting equity");
    }
}
