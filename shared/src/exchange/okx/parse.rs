//! OKX wire models -> domain types: instId <-> unified symbols, bars, candles (newest first ->
//! oldest first), contracts <-> base coin, and the explicit enum mappings.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderStatus, OrderType, Position,
    PositionSide, Side, Symbol, Ticker, Timeframe,
};
use crate::exchange::precision::{base_to_contracts, contracts_to_base};
use crate::exchange::wire::millis_to_time;
use crate::exchange::{ExchangeError, ExchangeResult};

use super::VENUE;
use super::wire;

/// Trading rules of one SWAP, in domain units plus the raw contract figures the adapter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spec {
    pub instrument: Instrument,
    /// Base coin per contract.
    pub ct_val: Decimal,
    /// Contract step.
    pub lot_sz: Decimal,
    /// Smallest order, in contracts.
    pub min_sz: Decimal,
}

/// `BTC/USDT:USDT` -> `BTC-USDT-SWAP`. Only linear (settle = quote) perpetuals are traded here.
pub(super) fn inst_id(symbol: &Symbol) -> ExchangeResult<String> {
    if symbol.settle() != symbol.quote() {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: "only linear perpetual SWAPs (settled in the quote currency) are supported"
                .into(),
        });
    }
    Ok(format!("{}-{}-SWAP", symbol.base(), symbol.quote()))
}

/// `BTC-USDT-SWAP` -> `BTC/USDT:USDT`; anything else (spot, futures, inverse) is an error.
pub(super) fn symbol_of(inst_id: &str) -> ExchangeResult<Symbol> {
    let unknown = |message: &str| ExchangeError::UnknownSymbol {
        venue: VENUE,
        symbol: inst_id.to_string(),
        message: message.to_string(),
    };
    let mut parts = inst_id.split('-');
    let (Some(base), Some(quote), Some("SWAP"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unknown("not a BASE-QUOTE-SWAP instrument id"));
    };
    if quote == "USD" {
        return Err(unknown("coin-margined (inverse) SWAPs are not supported"));
    }
    Symbol::new(base, quote, quote).map_err(|e| unknown(&e.to_string()))
}

/// OKX `bar` of a timeframe; days and weeks use the UTC-aligned bars. 8h does not exist on OKX.
pub(super) fn bar(timeframe: Timeframe) -> ExchangeResult<&'static str> {
    Ok(match timeframe {
        Timeframe::M1 => "1m",
        Timeframe::M3 => "3m",
        Timeframe::M5 => "5m",
        Timeframe::M15 => "15m",
        Timeframe::M30 => "30m",
        Timeframe::H1 => "1H",
        Timeframe::H2 => "2H",
        Timeframe::H4 => "4H",
        Timeframe::H6 => "6Hutc",
        Timeframe::H12 => "12Hutc",
        Timeframe::D1 => "1Dutc",
        Timeframe::W1 => "1Wutc",
        Timeframe::H8 => {
            return Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: "OKX has no 8h candles".into(),
            });
        }
    })
}

/// A decimal as plain text for the wire (`0.02`, `2`, never an exponent).
pub(super) fn text(d: Decimal) -> String {
    d.normalize().to_string()
}

fn time(ms: i64, endpoint: &str) -> ExchangeResult<DateTime<Utc>> {
    millis_to_time(ms)
        .ok_or_else(|| ExchangeError::malformed(VENUE, endpoint, format!("bad time {ms}")))
}

fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(millis_to_time)
}

/// Candle rows (newest first on the wire) -> candles oldest first. Volume is `volCcy` (base coin).
pub(super) fn candles(rows: &[wire::CandleRow], endpoint: &str) -> ExchangeResult<Vec<Candle>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.iter().rev() {
        let field = |i: usize, what: &str| -> ExchangeResult<&str> {
            row.get(i).map(String::as_str).ok_or_else(|| {
                ExchangeError::malformed(
                    VENUE,
                    endpoint,
                    format!("candle row has {} fields, {what} missing", row.len()),
                )
            })
        };
        let num = |i: usize, what: &str| -> ExchangeResult<Decimal> {
            let s = field(i, what)?;
            s.parse::<Decimal>().map_err(|e| {
                ExchangeError::malformed(VENUE, endpoint, format!("candle {what} {s:?}: {e}"))
            })
        };
        let ts_text = field(0, "ts")?;
        let ts = ts_text.parse::<i64>().map_err(|e| {
            ExchangeError::malformed(VENUE, endpoint, format!("candle ts {ts_text:?}: {e}"))
        })?;
        let closed = match field(8, "confirm")? {
            "1" => true,
            "0" => false,
            other => {
                return Err(ExchangeError::malformed(
                    VENUE,
                    endpoint,
                    format!("candle confirm {other:?}"),
                ));
            }
        };
        out.push(Candle {
            open_time: time(ts, endpoint)?,
            open: num(1, "open")?,
            high: num(2, "high")?,
            low: num(3, "low")?,
            close: num(4, "close")?,
            volume: num(6, "volCcy")?,
            closed,
        });
    }
    // Stable: rows sharing a time keep the venue's (reversed) order.
    out.sort_by_key(|c| c.open_time);
    Ok(out)
}

pub(super) fn ticker(symbol: &Symbol, w: &wire::Ticker) -> ExchangeResult<Ticker> {
    Ok(Ticker {
        symbol: symbol.clone(),
        last: w.last,
        bid: w.bid_px,
        ask: w.ask_px,
        mark: None,
        time: time(w.ts, "/api/v5/market/ticker")?,
    })
}

/// Instrument in base-coin units: step = lotSz x ctVal, minimum = minSz x ctVal.
pub(super) fn instrument(symbol: &Symbol, w: &wire::Instrument) -> ExchangeResult<Spec> {
    let endpoint = "/api/v5/public/instruments";
    if w.inst_type != "SWAP" {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: w.inst_id.clone(),
            message: format!("instrument type {} is not SWAP", w.inst_type),
        });
    }
    if w.ct_type != "linear" || w.settle_ccy != symbol.settle() {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: w.inst_id.clone(),
            message: format!(
                "{} settles in {:?} ({}), not a linear {} perpetual",
                w.inst_id,
                w.settle_ccy,
                w.ct_type,
                symbol.settle()
            ),
        });
    }
    for (name, v) in [
        ("ctVal", w.ct_val),
        ("lotSz", w.lot_sz),
        ("tickSz", w.tick_sz),
    ] {
        if v <= Decimal::ZERO {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("{name} must be positive, got {v}"),
            ));
        }
    }
    if w.min_sz < Decimal::ZERO {
        return Err(ExchangeError::malformed(VENUE, endpoint, "negative minSz"));
    }
    Ok(Spec {
        instrument: Instrument {
            symbol: symbol.clone(),
            venue_symbol: w.inst_id.clone(),
            tick_size: w.tick_sz.normalize(),
            step_size: contracts_to_base(w.lot_sz, w.ct_val),
            min_quantity: contracts_to_base(w.min_sz, w.ct_val),
            min_notional: Decimal::ZERO,
            contract_size: w.ct_val.normalize(),
            max_leverage: w.lever.unwrap_or(Decimal::ONE),
        },
        ct_val: w.ct_val,
        lot_sz: w.lot_sz,
        min_sz: w.min_sz,
    })
}

/// A base-coin quantity as whole lots of contracts: anything else is an `InvalidOrder`, never a
/// silent resize. Returns the contract count (a multiple of `lotSz`).
pub(super) fn contracts(spec: &Spec, quantity: Decimal) -> ExchangeResult<Decimal> {
    if quantity <= Decimal::ZERO {
        return Err(ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!("quantity must be positive, got {quantity}"),
        });
    }
    let lots = base_to_contracts(VENUE, quantity, spec.ct_val * spec.lot_sz)?;
    let contracts = (lots * spec.lot_sz).normalize();
    if contracts < spec.min_sz {
        return Err(ExchangeError::BelowMinimum {
            venue: VENUE,
            what: "quantity",
            value: quantity.normalize().to_string(),
            minimum: spec.instrument.min_quantity.to_string(),
        });
    }
    Ok(contracts)
}

/// The `asset` line of the balance; an account without that currency has zero of it.
pub(super) fn balance(asset: &str, data: &[wire::Balance]) -> Balance {
    let detail = data
        .iter()
        .flat_map(|b| b.details.iter())
        .find(|d| d.ccy.eq_ignore_ascii_case(asset));
    match detail {
        None => Balance {
            asset: asset.to_string(),
            equity: Decimal::ZERO,
            available: Decimal::ZERO,
            unrealized_pnl: Decimal::ZERO,
        },
        Some(d) => Balance {
            asset: d.ccy.clone(),
            equity: d.eq.unwrap_or_default(),
            available: d.avail_eq.or(d.avail_bal).unwrap_or_default(),
            unrealized_pnl: d.upl.unwrap_or_default(),
        },
    }
}

/// A SWAP position with its contracts in base coin; `None` for flat positions.
pub(super) fn position(w: &wire::Position, ct_val: Decimal) -> ExchangeResult<Option<Position>> {
    let pos = w.pos.unwrap_or_default();
    if pos.is_zero() {
        return Ok(None);
    }
    let side = match w.pos_side {
        wire::PosSide::Long => PositionSide::Long,
        wire::PosSide::Short => PositionSide::Short,
        wire::PosSide::Net if pos > Decimal::ZERO => PositionSide::Long,
        wire::PosSide::Net => PositionSide::Short,
    };
    let entry_price = w.avg_px.ok_or_else(|| {
        ExchangeError::malformed(
            VENUE,
            "/api/v5/account/positions",
            format!("open position {} without avgPx", w.inst_id),
        )
    })?;
    Ok(Some(Position {
        symbol: symbol_of(&w.inst_id)?,
        side,
        quantity: contracts_to_base(pos.abs(), ct_val),
        entry_price,
        mark_price: w.mark_px,
        unrealized_pnl: w.upl.unwrap_or_default(),
        leverage: w.lever,
        liquidation_price: w.liq_px.filter(|p| *p > Decimal::ZERO),
    }))
}

pub(super) fn side_to_wire(side: Side) -> wire::Side {
    match side {
        Side::Buy => wire::Side::Buy,
        Side::Sell => wire::Side::Sell,
    }
}

fn side_of(side: wire::Side) -> Side {
    match side {
        wire::Side::Buy => Side::Buy,
        wire::Side::Sell => Side::Sell,
    }
}

fn client_id(id: Option<&str>) -> Option<ClientOrderId> {
    id.and_then(|s| ClientOrderId::new(s).ok())
}

fn positive(d: Option<Decimal>) -> Option<Decimal> {
    d.filter(|v| *v > Decimal::ZERO)
}

/// A regular order in domain units. OKX fees are negative when charged; the domain's fee is the
/// cost (positive), so the sign flips.
pub(super) fn order(w: &wire::Order, ct_val: Decimal) -> ExchangeResult<Order> {
    let order_type = match w.ord_type {
        wire::OrdType::Market | wire::OrdType::OptimalLimitIoc => OrderType::Market,
        wire::OrdType::Limit
        | wire::OrdType::PostOnly
        | wire::OrdType::Fok
        | wire::OrdType::Ioc
        | wire::OrdType::Mmp
        | wire::OrdType::MmpAndPostOnly
        | wire::OrdType::Elp => OrderType::Limit,
    };
    let status = match w.state {
        wire::OrdState::Live => OrderStatus::Open,
        wire::OrdState::PartiallyFilled => OrderStatus::PartiallyFilled,
        wire::OrdState::Filled => OrderStatus::Filled,
        wire::OrdState::Canceled | wire::OrdState::MmpCanceled => OrderStatus::Canceled,
    };
    Ok(Order {
        symbol: symbol_of(&w.inst_id)?,
        client_order_id: client_id(w.cl_ord_id.as_deref()),
        exchange_order_id: w.ord_id.clone(),
        side: side_of(w.side),
        order_type,
        status,
        quantity: contracts_to_base(w.sz, ct_val),
        price: positive(w.px),
        trigger_price: None,
        reduce_only: w.reduce_only,
        filled_quantity: contracts_to_base(w.acc_fill_sz.unwrap_or_default(), ct_val),
        average_price: positive(w.avg_px),
        fee: w.fee.map(|f| (-f).normalize()),
        created_at: opt_time(w.c_time),
        updated_at: opt_time(w.u_time),
    })
}

/// A conditional algo order: a stop-loss trigger is a stop-market, a take-profit trigger a
/// take-profit-market (both execute at market, `ordPx` -1).
pub(super) fn algo_order(w: &wire::AlgoOrder, ct_val: Decimal) -> ExchangeResult<Order> {
    let endpoint = "/api/v5/trade/orders-algo-pending";
    let (order_type, trigger) = match (w.ord_type, w.sl_trigger_px, w.tp_trigger_px) {
        (wire::AlgoOrdType::Conditional | wire::AlgoOrdType::Oco, Some(sl), _) => {
            (OrderType::StopMarket, sl)
        }
        (wire::AlgoOrdType::Conditional | wire::AlgoOrdType::Oco, None, Some(tp)) => {
            (OrderType::TakeProfitMarket, tp)
        }
        (wire::AlgoOrdType::Conditional | wire::AlgoOrdType::Oco, None, None) => {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("conditional order {} without a trigger price", w.algo_id),
            ));
        }
        (
            other @ (wire::AlgoOrdType::Trigger
            | wire::AlgoOrdType::MoveOrderStop
            | wire::AlgoOrdType::Iceberg
            | wire::AlgoOrdType::Twap
            | wire::AlgoOrdType::Chase),
            _,
            _,
        ) => {
            return Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: format!("algo order {} of type {other:?} is not tracked", w.algo_id),
            });
        }
    };
    let status = match w.state {
        wire::AlgoState::Live | wire::AlgoState::Pause => OrderStatus::Open,
        wire::AlgoState::Effective | wire::AlgoState::PartiallyEffective => OrderStatus::Triggered,
        wire::AlgoState::Canceled => OrderStatus::Canceled,
        wire::AlgoState::OrderFailed | wire::AlgoState::PartiallyFailed => OrderStatus::Rejected,
    };
    Ok(Order {
        symbol: symbol_of(&w.inst_id)?,
        client_order_id: client_id(w.algo_cl_ord_id.as_deref()),
        exchange_order_id: w.algo_id.clone(),
        side: side_of(w.side),
        order_type,
        status,
        quantity: contracts_to_base(w.sz.unwrap_or_default(), ct_val),
        price: None,
        trigger_price: Some(trigger),
        reduce_only: w.reduce_only,
        filled_quantity: contracts_to_base(w.actual_sz.unwrap_or_default(), ct_val),
        average_price: positive(w.actual_px),
        fee: None,
        created_at: opt_time(w.c_time),
        updated_at: opt_time(w.u_time),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn btc() -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    fn spec(ct_val: Decimal, lot_sz: Decimal, min_sz: Decimal) -> Spec {
        let w = wire::Instrument {
            inst_type: "SWAP".into(),
            inst_id: "BTC-USDT-SWAP".into(),
            settle_ccy: "USDT".into(),
            ct_type: "linear".into(),
            ct_val,
            tick_sz: dec!(0.1),
            lot_sz,
            min_sz,
            lever: Some(dec!(100)),
        };
        instrument(&btc(), &w).unwrap()
    }

    #[test]
    fn inst_ids_round_trip_and_reject_other_kinds() {
        assert_eq!(inst_id(&btc()).unwrap(), "BTC-USDT-SWAP");
        assert_eq!(symbol_of("BTC-USDT-SWAP").unwrap(), btc());
        assert!(inst_id(&"BTC/USD:BTC".parse().unwrap()).is_err());
        for bad in [
            "BTC-USDT",
            "BTC-USD-SWAP",
            "BTC-USDT-250328",
            "BTC-USDT-SWAP-X",
            "",
        ] {
            assert!(symbol_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bars_use_uppercase_hours_and_utc_days() {
        assert_eq!(bar(Timeframe::H1).unwrap(), "1H");
        assert_eq!(bar(Timeframe::D1).unwrap(), "1Dutc");
        assert_eq!(bar(Timeframe::M5).unwrap(), "5m");
        assert!(matches!(
            bar(Timeframe::H8),
            Err(ExchangeError::Unsupported { .. })
        ));
    }

    #[test]
    fn contracts_need_whole_lots() {
        let s = spec(dec!(0.01), dec!(1), dec!(1));
        assert_eq!(s.instrument.step_size, dec!(0.01));
        assert_eq!(contracts(&s, dec!(0.02)).unwrap(), dec!(2));
        assert!(matches!(
            contracts(&s, dec!(0.015)),
            Err(ExchangeError::InvalidOrder { .. })
        ));
        assert!(matches!(
            contracts(&s, dec!(0)),
            Err(ExchangeError::InvalidOrder { .. })
        ));
        // Fractional lots: 0.0001 BTC is 0.01 contracts when lotSz is 0.01.
        let s = spec(dec!(0.01), dec!(0.01), dec!(0.01));
        assert_eq!(contracts(&s, dec!(0.0001)).unwrap(), dec!(0.01));
        assert!(contracts(&s, dec!(0.00015)).is_err());
        // Whole lots but under the minimum.
        let s = spec(dec!(0.01), dec!(1), dec!(5));
        assert!(matches!(
            contracts(&s, dec!(0.02)),
            Err(ExchangeError::BelowMinimum { .. })
        ));
    }

    #[test]
    fn candles_come_out_oldest_first_with_confirm() {
        let rows: Vec<wire::CandleRow> = vec![
            ["2000", "2", "3", "1", "2.5", "10", "0.1", "5", "0"]
                .map(String::from)
                .to_vec(),
            ["1000", "1", "2", "0.5", "2", "20", "0.2", "6", "1"]
                .map(String::from)
                .to_vec(),
        ];
        let c = candles(&rows, "/c").unwrap();
        assert_eq!(c[0].open_time.timestamp_millis(), 1000);
        assert!(c[0].closed);
        assert_eq!(c[0].volume, dec!(0.2));
        assert_eq!(c[1].open_time.timestamp_millis(), 2000);
        assert!(!c[1].closed);
        let short: Vec<wire::CandleRow> = vec![["1000", "1"].map(String::from).to_vec()];
        assert!(candles(&short, "/c").is_err());
        let bad: Vec<wire::CandleRow> = vec![
            ["1000", "1", "2", "0.5", "2", "20", "0.2", "6", "maybe"]
                .map(String::from)
                .to_vec(),
        ];
        assert!(candles(&bad, "/c").is_err());
    }
}
