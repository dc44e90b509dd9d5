//! Bitget wire models -> domain types: `BTCUSDT` <-> `BTC/USDT:USDT`, granularities, candles
//! (oldest first, the forming one marked), contract rules, and the explicit enum mappings.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderStatus, OrderType, Position,
    PositionSide, Side, Symbol, Ticker, Timeframe,
};
use crate::exchange::wire::millis_to_time;
use crate::exchange::{ExchangeError, ExchangeResult};

use super::VENUE;
use super::wire;

/// The quote and settle coin of every `USDT-FUTURES` contract.
pub(super) const USDT: &str = "USDT";

/// `BTC/USDT:USDT` -> `BTCUSDT`. Only USDT-margined linear perpetuals are traded here.
pub(super) fn venue_symbol(symbol: &Symbol) -> ExchangeResult<String> {
    if symbol.quote() != USDT || symbol.settle() != USDT {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: "only USDT-margined perpetuals (productType USDT-FUTURES) are supported"
                .into(),
        });
    }
    Ok(symbol.concat())
}

/// `BTCUSDT` (any case, as the venue echoes it) -> `BTC/USDT:USDT`.
pub(super) fn symbol_of(venue_symbol: &str) -> ExchangeResult<Symbol> {
    let upper = venue_symbol.to_ascii_uppercase();
    let unknown = |message: String| ExchangeError::UnknownSymbol {
        venue: VENUE,
        symbol: venue_symbol.to_string(),
        message,
    };
    let base = upper
        .strip_suffix(USDT)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| unknown("not a BASEUSDT symbol of USDT-FUTURES".into()))?;
    Symbol::new(base, USDT, USDT).map_err(|e| unknown(e.to_string()))
}

/// Bitget `granularity` of a timeframe; 6h and longer use the UTC-aligned bars. 8h does not exist.
pub(super) fn granularity(timeframe: Timeframe) -> ExchangeResult<&'static str> {
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
                message: "Bitget has no 8h candles".into(),
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

/// Candle rows (oldest first on the wire, sorted again to be sure) -> candles. A candle whose
/// interval has not ended at `now_ms` (venue time) is `closed == false`. Volume is base coin.
pub(super) fn candles(
    rows: &[wire::CandleRow],
    timeframe: Timeframe,
    now_ms: i64,
    endpoint: &str,
) -> ExchangeResult<Vec<Candle>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
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
        let candle = Candle {
            open_time: time(ts, endpoint)?,
            open: num(1, "open")?,
            high: num(2, "high")?,
            low: num(3, "low")?,
            close: num(4, "close")?,
            volume: num(5, "baseVolume")?,
            closed: ts.saturating_add(timeframe.millis()) <= now_ms,
        };
        // The quote volume must be there too: a 6-field row is a truncated one.
        num(6, "quoteVolume")?;
        out.push(candle);
    }
    out.sort_by_key(|c| c.open_time);
    out.dedup_by_key(|c| c.open_time);
    Ok(out)
}

pub(super) fn ticker(symbol: &Symbol, w: &wire::Ticker) -> ExchangeResult<Ticker> {
    Ok(Ticker {
        symbol: symbol.clone(),
        last: w.last_pr,
        bid: w.bid_pr,
        ask: w.ask_pr,
        mark: w.mark_price,
        time: time(w.ts, "/api/v2/mix/market/ticker")?,
    })
}

/// Contract rules in domain units: tick = priceEndStep x 10^-pricePlace; step = sizeMultiplier
/// (10^-volumePlace when absent); minimum = minTradeNum; min notional = minTradeUSDT.
pub(super) fn instrument(symbol: &Symbol, w: &wire::Contract) -> ExchangeResult<Instrument> {
    let endpoint = "/api/v2/mix/market/contracts";
    let unknown = |message: String| ExchangeError::UnknownSymbol {
        venue: VENUE,
        symbol: symbol.to_string(),
        message,
    };
    if !w.symbol.eq_ignore_ascii_case(&symbol.concat())
        || !w.base_coin.eq_ignore_ascii_case(symbol.base())
        || !w.quote_coin.eq_ignore_ascii_case(symbol.quote())
    {
        return Err(unknown(format!(
            "Bitget answered contract {} ({}/{}) for {}",
            w.symbol,
            w.base_coin,
            w.quote_coin,
            symbol.concat()
        )));
    }
    match w.symbol_type.as_deref() {
        None | Some("perpetual") => {}
        Some(other) => {
            return Err(unknown(format!(
                "{} is a {other} contract, not a perpetual",
                w.symbol
            )));
        }
    }
    // Maintenance or an opening restriction still leaves the rules valid; a delisted one is gone.
    match w.symbol_status.as_deref() {
        Some("off") => {
            return Err(unknown(format!("{} is delisted (status off)", w.symbol)));
        }
        None | Some("normal" | "maintain" | "limit_open" | "restrictedAPI") => {}
        Some(other) => {
            tracing::warn!(venue = VENUE, symbol = %w.symbol, status = other, "unknown contract status");
        }
    }
    if w.price_place > 18 || w.price_end_step <= Decimal::ZERO {
        return Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!(
                "bad price grid: pricePlace {} priceEndStep {}",
                w.price_place, w.price_end_step
            ),
        ));
    }
    let tick = (w.price_end_step * Decimal::new(1, w.price_place)).normalize();
    let step = match (w.size_multiplier, w.volume_place) {
        (Some(m), _) if m > Decimal::ZERO => m.normalize(),
        (_, Some(places)) if places <= 18 => Decimal::new(1, places),
        _ => {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                "neither a positive sizeMultiplier nor a volumePlace",
            ));
        }
    };
    if w.min_trade_num < Decimal::ZERO {
        return Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            "negative minTradeNum",
        ));
    }
    Ok(Instrument {
        symbol: symbol.clone(),
        venue_symbol: w.symbol.to_ascii_uppercase(),
        tick_size: tick,
        step_size: step,
        min_quantity: w.min_trade_num.normalize(),
        min_notional: w.min_trade_usdt.unwrap_or_default().normalize(),
        contract_size: Decimal::ONE,
        max_leverage: w.max_lever.unwrap_or(Decimal::ONE),
    })
}

/// A base-coin quantity must be a positive multiple of the step and at least the minimum: it is
/// never resized. Returns the wire text.
pub(super) fn size(instrument: &Instrument, quantity: Decimal) -> ExchangeResult<String> {
    if quantity <= Decimal::ZERO {
        return Err(ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!("quantity must be positive, got {quantity}"),
        });
    }
    if !(quantity / instrument.step_size).fract().is_zero() {
        return Err(ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!(
                "quantity {quantity} is not a multiple of the step {}",
                instrument.step_size
            ),
        });
    }
    if quantity < instrument.min_quantity {
        return Err(ExchangeError::BelowMinimum {
            venue: VENUE,
            what: "quantity",
            value: text(quantity),
            minimum: instrument.min_quantity.to_string(),
        });
    }
    Ok(text(quantity))
}

/// A limit or trigger price must already be on the tick grid: rounding is the caller's choice.
pub(super) fn price(instrument: &Instrument, what: &str, price: Decimal) -> ExchangeResult<String> {
    if price <= Decimal::ZERO {
        return Err(ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!("{what} must be positive, got {price}"),
        });
    }
    if !(price / instrument.tick_size).fract().is_zero() {
        return Err(ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!(
                "{what} {price} is not a multiple of the tick size {}",
                instrument.tick_size
            ),
        });
    }
    Ok(text(price))
}

/// The `asset` line of the USDT-FUTURES accounts; an account without that coin has zero of it.
pub(super) fn balance(asset: &str, rows: &[wire::Account]) -> Balance {
    match rows
        .iter()
        .find(|a| a.margin_coin.eq_ignore_ascii_case(asset))
    {
        None => Balance {
            asset: asset.to_string(),
            equity: Decimal::ZERO,
            available: Decimal::ZERO,
            unrealized_pnl: Decimal::ZERO,
        },
        Some(a) => Balance {
            asset: a.margin_coin.to_ascii_uppercase(),
            equity: a.account_equity,
            available: a.available,
            unrealized_pnl: a.unrealized_pl.unwrap_or_default(),
        },
    }
}

/// An open position in base coin; `None` when flat.
pub(super) fn position(w: &wire::Position) -> ExchangeResult<Option<Position>> {
    if w.total.is_zero() {
        return Ok(None);
    }
    let side = match w.hold_side {
        wire::HoldSide::Long => PositionSide::Long,
        wire::HoldSide::Short => PositionSide::Short,
    };
    let entry_price = w.open_price_avg.ok_or_else(|| {
        ExchangeError::malformed(
            VENUE,
            "/api/v2/mix/position/all-position",
            format!("open position {} without openPriceAvg", w.symbol),
        )
    })?;
    Ok(Some(Position {
        symbol: symbol_of(&w.symbol)?,
        side,
        quantity: w.total.abs(),
        entry_price,
        mark_price: w.mark_price,
        unrealized_pnl: w.unrealized_pl.unwrap_or_default(),
        leverage: w.leverage,
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

fn client_id(id: Option<&str>) -> Option<ClientOrderId> {
    id.and_then(|s| ClientOrderId::new(s).ok())
}

fn positive(d: Option<Decimal>) -> Option<Decimal> {
    d.filter(|v| *v > Decimal::ZERO)
}

/// Whether a `tradeSide` closes or reduces a position (hedge-mode `close`, one-way `reduce_*`,
/// and the venue's own liquidation/delivery/offset closes).
fn closes(trade_side: Option<&str>) -> bool {
    match trade_side {
        Some(
            "close"
            | "reduce_close_long"
            | "reduce_close_short"
            | "offset_close_long"
            | "offset_close_short"
            | "burst_close_long"
            | "burst_close_short"
            | "delivery_close_long"
            | "delivery_close_short"
            | "reduce_buy_single"
            | "reduce_sell_single"
            | "burst_buy_single"
            | "burst_sell_single"
            | "delivery_buy_single"
            | "delivery_sell_single",
        ) => true,
        Some(_) | None => false,
    }
}

/// A regular order in domain units (sizes are base coin on Bitget). Fees are negative when
/// charged; the domain's fee is the cost (positive), so the sign flips.
pub(super) fn order(w: &wire::Order) -> ExchangeResult<Order> {
    let order_type = match w.order_type {
        wire::OrderType::Market => OrderType::Market,
        wire::OrderType::Limit => OrderType::Limit,
    };
    let status = match w.state {
        wire::OrderState::Init | wire::OrderState::New | wire::OrderState::Live => {
            OrderStatus::Open
        }
        wire::OrderState::PartiallyFilled => OrderStatus::PartiallyFilled,
        wire::OrderState::Filled => OrderStatus::Filled,
        wire::OrderState::Canceled | wire::OrderState::Cancelled => OrderStatus::Canceled,
    };
    Ok(Order {
        symbol: symbol_of(&w.symbol)?,
        client_order_id: client_id(w.client_oid.as_deref()),
        exchange_order_id: w.order_id.clone(),
        side: side_of(w.side),
        order_type,
        status,
        quantity: w.size,
        price: positive(w.price).filter(|_| order_type == OrderType::Limit),
        trigger_price: None,
        reduce_only: w.reduce_only || closes(w.trade_side.as_deref()),
        filled_quantity: w.base_volume.unwrap_or_default(),
        average_price: positive(w.price_avg),
        fee: w.fee.map(|f| (-f).normalize()),
        created_at: opt_time(w.c_time),
        updated_at: opt_time(w.u_time),
    })
}

/// A pending plan order: `loss_plan`/`pos_loss` are stop-markets, `profit_plan`/`pos_profit`
/// take-profit-markets. A `normal_plan` carries no stop-or-profit meaning on Bitget; it is
/// reported as a stop-market. Trailing plans are not tracked.
pub(super) fn plan_order(w: &wire::PlanOrder) -> ExchangeResult<Order> {
    let order_type = match w.plan_type {
        wire::PlanType::LossPlan | wire::PlanType::PosLoss | wire::PlanType::NormalPlan => {
            OrderType::StopMarket
        }
        wire::PlanType::ProfitPlan | wire::PlanType::PosProfit => OrderType::TakeProfitMarket,
        other @ (wire::PlanType::TrackPlan | wire::PlanType::MovingPlan) => {
            return Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: format!("plan order {} of type {other:?} is not tracked", w.order_id),
            });
        }
    };
    let status = match w.plan_status {
        wire::PlanStatus::NotTrigger | wire::PlanStatus::Live => OrderStatus::Open,
        wire::PlanStatus::Triggered | wire::PlanStatus::Executing | wire::PlanStatus::Executed => {
            OrderStatus::Triggered
        }
        wire::PlanStatus::FailTrigger | wire::PlanStatus::FailExecute => OrderStatus::Rejected,
        wire::PlanStatus::Cancelled | wire::PlanStatus::Canceled => OrderStatus::Canceled,
    };
    // TP/SL plans always close; other plans say so through reduceOnly or tradeSide.
    let reduce_only = matches!(
        w.plan_type,
        wire::PlanType::LossPlan
            | wire::PlanType::PosLoss
            | wire::PlanType::ProfitPlan
            | wire::PlanType::PosProfit
    ) || w.reduce_only
        || closes(w.trade_side.as_deref());
    Ok(Order {
        symbol: symbol_of(&w.symbol)?,
        client_order_id: client_id(w.client_oid.as_deref()),
        exchange_order_id: w.order_id.clone(),
        side: side_of(w.side),
        order_type,
        status,
        quantity: w.size.unwrap_or_default(),
        // A plan executing as a limit order carries its limit price.
        price: positive(w.price).filter(|_| w.order_type == Some(wire::OrderType::Limit)),
        trigger_price: Some(w.trigger_price),
        reduce_only,
        filled_quantity: Decimal::ZERO,
        average_price: None,
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

    fn contract(price_place: u32, end_step: Decimal, mult: Option<Decimal>) -> wire::Contract {
        wire::Contract {
            symbol: "BTCUSDT".into(),
            base_coin: "BTC".into(),
            quote_coin: "USDT".into(),
            symbol_type: Some("perpetual".into()),
            symbol_status: Some("normal".into()),
            price_place,
            price_end_step: end_step,
            volume_place: Some(3),
            size_multiplier: mult,
            min_trade_num: dec!(0.001),
            min_trade_usdt: Some(dec!(5)),
            max_lever: Some(dec!(125)),
        }
    }

    #[test]
    fn symbols_round_trip_and_reject_other_kinds() {
        assert_eq!(venue_symbol(&btc()).unwrap(), "BTCUSDT");
        assert_eq!(symbol_of("BTCUSDT").unwrap(), btc());
        assert_eq!(symbol_of("ethusdt").unwrap().to_string(), "ETH/USDT:USDT");
        assert!(venue_symbol(&"BTC/USD:BTC".parse().unwrap()).is_err());
        assert!(venue_symbol(&"BTC/USDC:USDC".parse().unwrap()).is_err());
        for bad in ["USDT", "BTCUSD", "ETHUSD_231229", "", "BTC-USDT"] {
            assert!(symbol_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn granularities_use_uppercase_hours_and_utc_days() {
        assert_eq!(granularity(Timeframe::H1).unwrap(), "1H");
        assert_eq!(granularity(Timeframe::D1).unwrap(), "1Dutc");
        assert_eq!(granularity(Timeframe::M5).unwrap(), "5m");
        assert!(matches!(
            granularity(Timeframe::H8),
            Err(ExchangeError::Unsupported { .. })
        ));
    }

    #[test]
    fn tick_and_step_come_from_places_and_multiplier() {
        let i = instrument(&btc(), &contract(1, dec!(1), Some(dec!(0.001)))).unwrap();
        assert_eq!(i.tick_size, dec!(0.1));
        assert_eq!(i.step_size, dec!(0.001));
        let i = instrument(&btc(), &contract(2, dec!(5), None)).unwrap();
        assert_eq!(i.tick_size, dec!(0.05));
        assert_eq!(i.step_size, dec!(0.001), "10^-volumePlace");
        assert!(instrument(&btc(), &contract(1, dec!(0), Some(dec!(0.001)))).is_err());
        let eth: Symbol = "ETH/USDT:USDT".parse().unwrap();
        assert_eq!(
            instrument(&eth, &contract(1, dec!(1), None))
                .unwrap_err()
                .kind(),
            "unknown_symbol"
        );
    }

    #[test]
    fn sizes_and_prices_are_never_resized() {
        let i = instrument(&btc(), &contract(1, dec!(1), Some(dec!(0.001)))).unwrap();
        assert_eq!(size(&i, dec!(0.012)).unwrap(), "0.012");
        assert_eq!(size(&i, dec!(0.0120)).unwrap(), "0.012");
        assert!(matches!(
            size(&i, dec!(0.0125)),
            Err(ExchangeError::InvalidOrder { .. })
        ));
        assert!(matches!(
            size(&i, dec!(0)),
            Err(ExchangeError::InvalidOrder { .. })
        ));
        let mut big_min = i.clone();
        big_min.min_quantity = dec!(0.01);
        assert!(matches!(
            size(&big_min, dec!(0.005)),
            Err(ExchangeError::BelowMinimum { .. })
        ));
        assert_eq!(price(&i, "price", dec!(95000.5)).unwrap(), "95000.5");
        assert!(price(&i, "price", dec!(95000.55)).is_err());
        assert!(price(&i, "price", dec!(-1)).is_err());
    }

    #[test]
    fn candles_mark_the_forming_one_and_need_seven_fields() {
        let rows: Vec<wire::CandleRow> = vec![
            ["60000", "2", "3", "1", "2.5", "10", "25"]
                .map(String::from)
                .to_vec(),
            ["0", "1", "2", "0.5", "2", "20", "40"]
                .map(String::from)
                .to_vec(),
        ];
        let c = candles(&rows, Timeframe::M1, 100_000, "/c").unwrap();
        assert_eq!(c[0].open_time.timestamp_millis(), 0);
        assert!(c[0].closed);
        assert_eq!(c[0].volume, dec!(20));
        assert!(!c[1].closed, "60 s + 60 s > 100 s");
        let c = candles(&rows, Timeframe::M1, 120_000, "/c").unwrap();
        assert!(c[1].closed, "closes exactly at its end");
        let short: Vec<wire::CandleRow> =
            vec![["0", "1", "2", "0.5", "2", "20"].map(String::from).to_vec()];
        assert!(candles(&short, Timeframe::M1, 0, "/c").is_err());
        let bad: Vec<wire::CandleRow> = vec![
            ["x", "1", "2", "0.5", "2", "20", "1"]
                .map(String::from)
                .to_vec(),
        ];
        assert!(candles(&bad, Timeframe::M1, 0, "/c").is_err());
    }

    #[test]
    fn closing_trade_sides_are_reduce_only() {
        assert!(closes(Some("close")));
        assert!(closes(Some("reduce_sell_single")));
        assert!(!closes(Some("open")));
        assert!(!closes(Some("buy_single")));
        assert!(!closes(None));
    }
}
