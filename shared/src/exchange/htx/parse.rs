//! HTX wire models -> domain types: `contract_code` <-> unified symbols, periods, candles (seconds,
//! oldest first), contracts <-> base coin, client order ids -> HTX's positive int64, and the
//! explicit enum mappings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderStatus, OrderType, Position,
    PositionSide, Side, Symbol, Ticker, Timeframe,
};
use crate::exchange::precision::{base_to_contracts, contracts_to_base};
use crate::exchange::wire::millis_to_time;
use crate::exchange::{ExchangeError, ExchangeResult};

use super::VENUE;
use super::wire;

/// Trading rules of one contract, in domain units plus the contract size the adapter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spec {
    pub instrument: Instrument,
    /// Base coin per contract.
    pub contract_size: Decimal,
}

/// `BTC/USDT:USDT` -> `BTC-USDT`, the exact perpetual code. Only linear (settle = quote =
/// USDT) perpetuals are traded here; delivery futures (`BTC-USDT-251103`) are not.
pub(super) fn contract_code(symbol: &Symbol) -> ExchangeResult<String> {
    if symbol.settle() != symbol.quote() || symbol.quote() != "USDT" {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: "only USDT-margined linear perpetual swaps are supported".into(),
        });
    }
    Ok(format!("{}-{}", symbol.base(), symbol.quote()))
}

/// `BTC-USDT` -> `BTC/USDT:USDT`; delivery futures and anything else are errors.
pub(super) fn symbol_of(code: &str) -> ExchangeResult<Symbol> {
    let unknown = |message: &str| ExchangeError::UnknownSymbol {
        venue: VENUE,
        symbol: code.to_string(),
        message: message.to_string(),
    };
    let mut parts = code.split('-');
    let (Some(base), Some(quote), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(unknown(
            "not a BASE-USDT perpetual code (delivery futures are not traded)",
        ));
    };
    if !quote.eq_ignore_ascii_case("USDT") {
        return Err(unknown("not a USDT-margined contract"));
    }
    Symbol::new(base, quote, quote).map_err(|e| unknown(&e.to_string()))
}

/// HTX `period` of a timeframe. 3m, 2h, 6h, 8h and 12h do not exist on HTX.
pub(super) fn period(timeframe: Timeframe) -> ExchangeResult<&'static str> {
    Ok(match timeframe {
        Timeframe::M1 => "1min",
        Timeframe::M5 => "5min",
        Timeframe::M15 => "15min",
        Timeframe::M30 => "30min",
        Timeframe::H1 => "60min",
        Timeframe::H4 => "4hour",
        Timeframe::D1 => "1day",
        Timeframe::W1 => "1week",
        Timeframe::M3 | Timeframe::H2 | Timeframe::H6 | Timeframe::H8 | Timeframe::H12 => {
            return Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: format!("HTX has no {timeframe} candles"),
            });
        }
    })
}

/// A decimal as plain text for the wire (`0.02`, `2`, never an exponent).
pub(super) fn text(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Our client order id as HTX's positive int64: the first 8 bytes of SHA-256 of the id text,
/// big-endian, with the top bit cleared (so it fits a signed 64-bit integer), and 1 instead of 0.
/// Deterministic, so a retry or a look-up after a restart finds the same order. Two of our ids
/// collide with probability about n^2 / 2^64, far below anything a fleet produces.
pub(super) fn venue_client_id(id: &ClientOrderId) -> u64 {
    let digest = Sha256::digest(id.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let n = u64::from_be_bytes(first) & (u64::MAX >> 1);
    n.max(1)
}

/// Candles oldest first, de-duplicated by open time (the last row of a time wins); a candle that
/// has not ended at `now` is `closed == false`. Row `id` is the open time in seconds; volume is
/// `amount` (base coin).
pub(super) fn candles(
    rows: &[wire::KlineRow],
    timeframe: Timeframe,
    now: DateTime<Utc>,
    endpoint: &str,
) -> ExchangeResult<Vec<Candle>> {
    let mut by_time: BTreeMap<i64, Candle> = BTreeMap::new();
    for r in rows {
        let open_time = DateTime::<Utc>::from_timestamp(r.id, 0).ok_or_else(|| {
            ExchangeError::malformed(VENUE, endpoint, format!("bad candle id {}", r.id))
        })?;
        let closed = open_time + chrono::Duration::seconds(timeframe.seconds()) <= now;
        by_time.insert(
            r.id,
            Candle {
                open_time,
                open: r.open,
                high: r.high,
                low: r.low,
                close: r.close,
                volume: r.amount,
                closed,
            },
        );
    }
    Ok(by_time.into_values().collect())
}

pub(super) fn ticker(symbol: &Symbol, w: &wire::MergedTick) -> ExchangeResult<Ticker> {
    Ok(Ticker {
        symbol: symbol.clone(),
        last: w.close,
        bid: w.bid,
        ask: w.ask,
        mark: None,
        time: millis_to_time(w.ts).ok_or_else(|| {
            ExchangeError::malformed(
                VENUE,
                "/linear-swap-ex/market/detail/merged",
                format!("bad ts {}", w.ts),
            )
        })?,
    })
}

/// Instrument in base-coin units: one contract is the step and the minimum.
///
/// `swap_contract_info` publishes no leverage ceiling: it comes from the risk-limit tiers
/// (`max_leverage`, the highest tier's `max_lever`); without it the ceiling is 1 (sizing stays
/// conservative) and the venue itself rejects a leverage it does not allow at `set_leverage`.
pub(super) fn instrument(
    symbol: &Symbol,
    w: &wire::ContractInfo,
    max_leverage: Option<Decimal>,
) -> ExchangeResult<Spec> {
    let endpoint = "/linear-swap-api/v1/swap_contract_info";
    for (name, v) in [
        ("contract_size", w.contract_size),
        ("price_tick", w.price_tick),
    ] {
        if v <= Decimal::ZERO {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("{name} must be positive, got {v}"),
            ));
        }
    }
    if let Some(status @ (0 | 2 | 3 | 4)) = w.contract_status {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: w.contract_code.clone(),
            message: format!("contract is not trading (contract_status {status})"),
        });
    }
    let contract_size = w.contract_size.normalize();
    Ok(Spec {
        instrument: Instrument {
            symbol: symbol.clone(),
            venue_symbol: w.contract_code.clone(),
            tick_size: w.price_tick.normalize(),
            step_size: contract_size,
            min_quantity: contract_size,
            min_notional: Decimal::ZERO,
            contract_size,
            max_leverage: max_leverage
                .map(|l| l.floor())
                .filter(|l| *l >= Decimal::ONE)
                .unwrap_or(Decimal::ONE),
        },
        contract_size,
    })
}

/// A base-coin quantity as whole contracts: anything else is an `InvalidOrder`, never a silent
/// resize.
pub(super) fn contracts(spec: &Spec, quantity: Decimal) -> ExchangeResult<Decimal> {
    if quantity <= Decimal::ZERO {
        return Err(ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!("quantity must be positive, got {quantity}"),
        });
    }
    base_to_contracts(VENUE, quantity, spec.contract_size)
}

/// The `asset` line of the V5 balance; an account without that currency has zero of it.
/// Available is `available_margin` (what can open positions), else `available`.
pub(super) fn balance(asset: &str, data: &wire::Balance) -> Balance {
    match data
        .details
        .iter()
        .find(|d| d.currency.eq_ignore_ascii_case(asset))
    {
        None => Balance {
            asset: asset.to_string(),
            equity: Decimal::ZERO,
            available: Decimal::ZERO,
            unrealized_pnl: Decimal::ZERO,
        },
        Some(d) => Balance {
            asset: d.currency.clone(),
            equity: d.equity.unwrap_or_default(),
            available: d.available_margin.or(d.available).unwrap_or_default(),
            unrealized_pnl: d.profit_unreal.unwrap_or_default(),
        },
    }
}

/// A V5 position with its contracts in base coin; `None` for a flat one.
pub(super) fn position(
    w: &wire::Position,
    contract_size: Decimal,
) -> ExchangeResult<Option<Position>> {
    let endpoint = "/v5/trade/position/opens";
    if w.volume.is_zero() {
        return Ok(None);
    }
    let side = match (w.position_side, w.direction) {
        (wire::PositionSide::Long, _) => PositionSide::Long,
        (wire::PositionSide::Short, _) => PositionSide::Short,
        (wire::PositionSide::Both, Some(wire::Side::Buy)) => PositionSide::Long,
        (wire::PositionSide::Both, Some(wire::Side::Sell)) => PositionSide::Short,
        (wire::PositionSide::Both, None) => {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("one-way position {} without a direction", w.contract_code),
            ));
        }
    };
    let entry_price = w.open_avg_price.ok_or_else(|| {
        ExchangeError::malformed(
            VENUE,
            endpoint,
            format!("open position {} without open_avg_price", w.contract_code),
        )
    })?;
    Ok(Some(Position {
        symbol: symbol_of(&w.contract_code)?,
        side,
        quantity: contracts_to_base(w.volume.abs(), contract_size),
        entry_price,
        mark_price: w.mark_price,
        unrealized_pnl: w.profit_unreal.unwrap_or_default(),
        leverage: w.lever_rate,
        // One-way cross positions report a negative "liquidation price" when none is reachable.
        liquidation_price: w.liquidation_price.filter(|p| *p > Decimal::ZERO),
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

fn positive(d: Option<Decimal>) -> Option<Decimal> {
    d.filter(|v| *v > Decimal::ZERO)
}

fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(millis_to_time)
}

/// Resolve the venue's integer client id back to ours, when we know it.
pub(super) type ClientIds<'a> = &'a dyn Fn(&str) -> Option<ClientOrderId>;

/// A regular V5 order in domain units. HTX fees are negative when charged; the domain's fee is
/// the cost (positive), so the sign flips.
pub(super) fn order(
    w: &wire::Order,
    contract_size: Decimal,
    client_ids: ClientIds<'_>,
) -> ExchangeResult<Order> {
    let order_type = match w.order_type {
        wire::OrderType::Market => OrderType::Market,
        wire::OrderType::Limit | wire::OrderType::PostOnly => OrderType::Limit,
    };
    let status = match w.state {
        wire::OrderState::New => OrderStatus::Open,
        wire::OrderState::PartiallyFilled => OrderStatus::PartiallyFilled,
        wire::OrderState::Filled => OrderStatus::Filled,
        wire::OrderState::PartiallyCanceled | wire::OrderState::Canceled => OrderStatus::Canceled,
        wire::OrderState::Rejected => OrderStatus::Rejected,
    };
    Ok(Order {
        symbol: symbol_of(&w.contract_code)?,
        client_order_id: w.client_order_id.as_deref().and_then(client_ids),
        exchange_order_id: w.order_id.clone(),
        side: side_of(w.side),
        order_type,
        status,
        quantity: contracts_to_base(w.volume, contract_size),
        price: positive(w.price).filter(|_| order_type == OrderType::Limit),
        trigger_price: None,
        reduce_only: w.reduce_only,
        filled_quantity: contracts_to_base(w.trade_volume.unwrap_or_default(), contract_size),
        average_price: positive(w.trade_avg_price),
        fee: w.fee.map(|f| (-f).normalize()),
        created_at: opt_time(w.created_time),
        updated_at: opt_time(w.updated_time),
    })
}

/// A V5 algo order: a stop-loss trigger is a stop-market, a take-profit trigger a
/// take-profit-market (both execute at market).
pub(super) fn algo_order(
    w: &wire::AlgoOrder,
    contract_size: Decimal,
    client_ids: ClientIds<'_>,
) -> ExchangeResult<Order> {
    let endpoint = "/v5/algo/order/opens";
    let (order_type, trigger) = match (w.algo_type, w.sl_trigger_price, w.tp_trigger_price) {
        (wire::AlgoType::Tpsl | wire::AlgoType::Sl, Some(sl), _) => (OrderType::StopMarket, sl),
        (wire::AlgoType::Tpsl | wire::AlgoType::Tp, None, Some(tp)) => {
            (OrderType::TakeProfitMarket, tp)
        }
        (wire::AlgoType::Tpsl | wire::AlgoType::Sl | wire::AlgoType::Tp, _, _) => {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("tp/sl order {} without a trigger price", w.algo_id),
            ));
        }
        (
            other @ (wire::AlgoType::Trigger
            | wire::AlgoType::Trailing
            | wire::AlgoType::TrailingStop),
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
        wire::AlgoState::New | wire::AlgoState::Created | wire::AlgoState::Untriggered => {
            OrderStatus::Open
        }
        wire::AlgoState::Triggered => OrderStatus::Triggered,
        wire::AlgoState::Canceled | wire::AlgoState::Cancelled => OrderStatus::Canceled,
        wire::AlgoState::Rejected | wire::AlgoState::Failed => OrderStatus::Rejected,
    };
    Ok(Order {
        symbol: symbol_of(&w.contract_code)?,
        client_order_id: w.algo_client_order_id.as_deref().and_then(client_ids),
        exchange_order_id: w.algo_id.clone(),
        side: side_of(w.side),
        order_type,
        status,
        quantity: contracts_to_base(w.volume.unwrap_or_default(), contract_size),
        price: None,
        trigger_price: Some(trigger),
        reduce_only: w.reduce_only,
        filled_quantity: contracts_to_base(w.actual_volume.unwrap_or_default(), contract_size),
        average_price: positive(w.actual_price),
        fee: None,
        created_at: opt_time(w.created_time),
        updated_at: opt_time(w.updated_time),
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

    #[test]
    fn contract_codes_round_trip_and_reject_other_kinds() {
        assert_eq!(contract_code(&btc()).unwrap(), "BTC-USDT");
        assert_eq!(symbol_of("BTC-USDT").unwrap(), btc());
        assert!(contract_code(&"BTC/USD:BTC".parse().unwrap()).is_err());
        assert!(contract_code(&"BTC/USDC:USDC".parse().unwrap()).is_err());
        for bad in ["BTC-USDT-251103", "BTCUSDT", "BTC-USD", "", "-USDT"] {
            assert!(symbol_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_use_htx_names() {
        assert_eq!(period(Timeframe::H1).unwrap(), "60min");
        assert_eq!(period(Timeframe::H4).unwrap(), "4hour");
        assert_eq!(period(Timeframe::D1).unwrap(), "1day");
        assert!(matches!(
            period(Timeframe::H8),
            Err(ExchangeError::Unsupported { .. })
        ));
    }

    #[test]
    fn client_ids_map_to_stable_positive_int63() {
        let a = ClientOrderId::new("tf1a2b3c4d").unwrap();
        let b = ClientOrderId::new("tf1a2b3c4e").unwrap();
        assert_eq!(venue_client_id(&a), venue_client_id(&a));
        assert_ne!(venue_client_id(&a), venue_client_id(&b));
        for id in [&a, &b] {
            let n = venue_client_id(id);
            assert!(n >= 1 && n <= i64::MAX as u64);
        }
        // Pinned so a change of the mapping (which would orphan live orders) fails loudly.
        assert_eq!(venue_client_id(&a), 3_402_580_478_552_149_585);
    }

    #[test]
    fn contracts_must_be_whole() {
        let w = wire::ContractInfo {
            contract_code: "BTC-USDT".into(),
            contract_size: dec!(0.001),
            price_tick: dec!(0.1),
            contract_status: Some(1),
        };
        let s = instrument(&btc(), &w, Some(dec!(200))).unwrap();
        assert_eq!(s.instrument.max_leverage, dec!(200));
        let s = instrument(&btc(), &w, None).unwrap();
        assert_eq!(s.instrument.max_leverage, dec!(1));
        assert_eq!(s.instrument.step_size, dec!(0.001));
        assert_eq!(contracts(&s, dec!(0.1)).unwrap(), dec!(100));
        assert!(matches!(
            contracts(&s, dec!(0.0015)),
            Err(ExchangeError::InvalidOrder { .. })
        ));
        assert!(contracts(&s, dec!(0)).is_err());
        let suspended = wire::ContractInfo {
            contract_status: Some(3),
            ..w
        };
        assert!(instrument(&btc(), &suspended, None).is_err());
    }
}
