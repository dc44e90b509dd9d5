//! Bybit wire models -> domain types: the envelope check, symbols, intervals, candles, orders,
//! positions and balances. Pure functions, so malformed payloads are tested without a network.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderStatus, OrderType, Position,
    PositionSide, Side, Symbol, Ticker, Timeframe,
};
use crate::exchange::http::{RawResponse, RequestKind, truncate};
use crate::exchange::wire::millis_to_time;
use crate::exchange::{AccountCheck, ExchangeError};

use super::VENUE;
use super::errors::{self, Context};
use super::wire::{
    ApiKeyInfo, Envelope, InstrumentRow, KlineResult, OrderRow, PositionRow, ServerTime, TickerRow,
    WalletResult,
};

/// A response we cannot read. For a write the venue may still have acted on it, so the caller
/// must reconcile rather than treat it as a plain failure.
pub(crate) fn malformed(
    endpoint: &str,
    kind: RequestKind,
    message: impl Into<String>,
) -> ExchangeError {
    let message = message.into();
    match kind {
        RequestKind::Read => ExchangeError::malformed(VENUE, endpoint, message),
        RequestKind::Write => ExchangeError::OutcomeUnknown {
            venue: VENUE,
            message: format!("malformed response from {endpoint}: {message}"),
        },
    }
}

/// Check HTTP status and retCode; return the envelope of a successful answer.
pub(crate) fn envelope(
    endpoint: &str,
    raw: &RawResponse,
    ctx: Context<'_>,
) -> Result<Envelope, ExchangeError> {
    let parsed = serde_json::from_str::<Envelope>(&raw.body);
    if !raw.status.is_success() {
        // A 403 is the IP ban whatever the body says; other statuses may carry a retCode.
        if raw.status.as_u16() != 403
            && let Ok(env) = &parsed
            && env.ret_code != 0
        {
            return Err(errors::from_ret_code(env.ret_code, &env.ret_msg, ctx));
        }
        if let Some(err) = errors::from_status(raw, ctx.kind) {
            return Err(err);
        }
    }
    let env = parsed.map_err(|e| {
        malformed(
            endpoint,
            ctx.kind,
            format!("{e}; body starts {:?}", truncate(&raw.body, 200)),
        )
    })?;
    if env.ret_code != 0 {
        return Err(errors::from_ret_code(env.ret_code, &env.ret_msg, ctx));
    }
    Ok(env)
}

/// The `result` of a successful envelope as `T`.
pub(crate) fn result<T: DeserializeOwned>(
    endpoint: &str,
    kind: RequestKind,
    value: serde_json::Value,
) -> Result<T, ExchangeError> {
    serde_json::from_value(value).map_err(|e| malformed(endpoint, kind, e.to_string()))
}

/// `BTC/USDT:USDT` -> `BTCUSDT`. Bybit linear perpetuals are `BASEQUOTE`, settled in the quote.
pub(crate) fn venue_symbol(symbol: &Symbol) -> Result<String, ExchangeError> {
    if symbol.quote() != symbol.settle() {
        return Err(ExchangeError::Unsupported {
            venue: VENUE,
            message: format!(
                "{symbol}: only linear perpetuals settled in the quote coin are supported"
            ),
        });
    }
    Ok(symbol.concat())
}

/// `BTCUSDT` settled in `USDT` -> `BTC/USDT:USDT`; `None` for anything that is not a
/// `BASE + settle` perpetual (dated futures, USDC `...PERP` names).
pub(crate) fn unified_symbol(venue_symbol: &str, settle: &str) -> Option<Symbol> {
    let base = venue_symbol.strip_suffix(settle)?;
    Symbol::new(base, settle, settle).ok()
}

/// Bybit's kline interval for a timeframe.
pub(crate) fn interval(timeframe: Timeframe) -> Result<&'static str, ExchangeError> {
    Ok(match timeframe {
        Timeframe::M1 => "1",
        Timeframe::M3 => "3",
        Timeframe::M5 => "5",
        Timeframe::M15 => "15",
        Timeframe::M30 => "30",
        Timeframe::H1 => "60",
        Timeframe::H2 => "120",
        Timeframe::H4 => "240",
        Timeframe::H6 => "360",
        Timeframe::H12 => "720",
        Timeframe::D1 => "D",
        Timeframe::W1 => "W",
        Timeframe::H8 => {
            return Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: "Bybit has no 8h kline interval".into(),
            });
        }
    })
}

pub(crate) fn server_time(t: &ServerTime) -> Result<DateTime<Utc>, ExchangeError> {
    let endpoint = "/v5/market/time";
    let from_nanos = t
        .time_nano
        .as_deref()
        .and_then(|n| n.trim().parse::<i64>().ok())
        .map(|n| n / 1_000_000);
    let ms = match from_nanos {
        Some(ms) => ms,
        None => t
            .time_second
            .checked_mul(1000)
            .ok_or_else(|| ExchangeError::malformed(VENUE, endpoint, "timeSecond out of range"))?,
    };
    millis_to_time(ms).ok_or_else(|| ExchangeError::malformed(VENUE, endpoint, "time out of range"))
}

fn dec_cell(row: &[String], i: usize, what: &str) -> Result<Decimal, ExchangeError> {
    let cell = row.get(i).ok_or_else(|| {
        ExchangeError::malformed(VENUE, "/v5/market/kline", format!("row without {what}"))
    })?;
    cell.trim().parse::<Decimal>().map_err(|e| {
        ExchangeError::malformed(VENUE, "/v5/market/kline", format!("{what} {cell:?}: {e}"))
    })
}

/// Candles oldest first (Bybit sends newest first). A candle is closed when its end is not after
/// `now`; the still-forming one comes out with `closed == false`.
pub(crate) fn klines(
    result: KlineResult,
    timeframe: Timeframe,
    now: DateTime<Utc>,
) -> Result<Vec<Candle>, ExchangeError> {
    let endpoint = "/v5/market/kline";
    let mut candles = result
        .list
        .iter()
        .map(|row| {
            let start = row
                .first()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .and_then(millis_to_time)
                .ok_or_else(|| ExchangeError::malformed(VENUE, endpoint, "bad start time"))?;
            let candle = Candle {
                open_time: start,
                open: dec_cell(row, 1, "open")?,
                high: dec_cell(row, 2, "high")?,
                low: dec_cell(row, 3, "low")?,
                close: dec_cell(row, 4, "close")?,
                volume: dec_cell(row, 5, "volume")?,
                closed: false,
            };
            let closed = candle.close_time(timeframe) <= now;
            Ok(Candle { closed, ..candle })
        })
        .collect::<Result<Vec<_>, ExchangeError>>()?;
    candles.sort_by_key(|c| c.open_time);
    candles.dedup_by_key(|c| c.open_time);
    Ok(candles)
}

pub(crate) fn ticker(
    rows: &[TickerRow],
    symbol: &Symbol,
    venue_symbol: &str,
    time: DateTime<Utc>,
) -> Result<Ticker, ExchangeError> {
    let row = rows
        .iter()
        .find(|r| r.symbol == venue_symbol)
        .ok_or_else(|| unknown_symbol(venue_symbol, "no ticker for the symbol"))?;
    Ok(Ticker {
        symbol: symbol.clone(),
        last: row.last_price,
        bid: row.bid1_price,
        ask: row.ask1_price,
        mark: row.mark_price,
        time,
    })
}

pub(crate) fn unknown_symbol(venue_symbol: &str, message: &str) -> ExchangeError {
    ExchangeError::UnknownSymbol {
        venue: VENUE,
        symbol: venue_symbol.to_string(),
        message: message.to_string(),
    }
}

pub(crate) fn instrument(
    rows: &[InstrumentRow],
    symbol: &Symbol,
    venue_symbol: &str,
) -> Result<Instrument, ExchangeError> {
    let endpoint = "/v5/market/instruments-info";
    let row = rows
        .iter()
        .find(|r| r.symbol == venue_symbol)
        .ok_or_else(|| unknown_symbol(venue_symbol, "not a linear instrument"))?;
    let settle = row.settle_coin.as_deref().unwrap_or(&row.quote_coin);
    if row.base_coin != symbol.base()
        || row.quote_coin != symbol.quote()
        || settle != symbol.settle()
    {
        return Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!(
                "{venue_symbol} is {}/{}:{settle}, not {symbol}",
                row.base_coin, row.quote_coin
            ),
        ));
    }
    let lot = &row.lot_size_filter;
    if row.price_filter.tick_size <= Decimal::ZERO || lot.qty_step <= Decimal::ZERO {
        return Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            "tickSize and qtyStep must be positive",
        ));
    }
    if !row.status.is_empty() && row.status != "Trading" {
        tracing::warn!(venue = VENUE, symbol = venue_symbol, status = %row.status, "instrument is not trading");
    }
    Ok(Instrument {
        symbol: symbol.clone(),
        venue_symbol: row.symbol.clone(),
        tick_size: row.price_filter.tick_size.normalize(),
        step_size: lot.qty_step.normalize(),
        min_quantity: lot.min_order_qty.normalize(),
        min_notional: lot.min_notional_value.unwrap_or(Decimal::ZERO).normalize(),
        contract_size: Decimal::ONE,
        max_leverage: row.leverage_filter.max_leverage.normalize(),
    })
}

/// Balance of `asset` in the UNIFIED account. Bybit gives no per-coin "available" any more
/// (`availableToWithdraw` is deprecated), so it is equity minus the margin the coin's positions and
/// orders hold and anything locked; for USD stablecoins it is also capped by the account-level
/// `totalAvailableBalance` (USD), the only available figure under cross margin.
pub(crate) fn balance(result: WalletResult, asset: &str) -> Result<Balance, ExchangeError> {
    let account = result
        .list
        .into_iter()
        .find(|a| a.account_type.is_empty() || a.account_type == "UNIFIED")
        .ok_or_else(|| {
            ExchangeError::malformed(
                VENUE,
                "/v5/account/wallet-balance",
                "no UNIFIED account in the answer",
            )
        })?;
    let Some(coin) = account
        .coin
        .iter()
        .find(|c| c.coin.eq_ignore_ascii_case(asset))
    else {
        return Ok(Balance {
            asset: asset.to_string(),
            equity: Decimal::ZERO,
            available: Decimal::ZERO,
            unrealized_pnl: Decimal::ZERO,
        });
    };
    let held = coin.total_position_im.unwrap_or_default()
        + coin.total_order_im.unwrap_or_default()
        + coin.locked.unwrap_or_default();
    let mut available = (coin.equity - held).max(Decimal::ZERO);
    if matches!(asset.to_ascii_uppercase().as_str(), "USDT" | "USDC")
        && let Some(total) = account.total_available_balance
    {
        available = available.min(total.max(Decimal::ZERO));
    }
    Ok(Balance {
        asset: coin.coin.clone(),
        equity: coin.equity,
        available,
        unrealized_pnl: coin.unrealised_pnl.unwrap_or_default(),
    })
}

/// Non-empty positions. `symbol` is the one asked for, if any; otherwise the venue symbol is read
/// against `settle`, and rows that are not `BASE+settle` perpetuals are skipped with a warning.
pub(crate) fn positions(
    rows: Vec<PositionRow>,
    symbol: Option<&Symbol>,
    settle: &str,
) -> Result<Vec<Position>, ExchangeError> {
    let endpoint = "/v5/position/list";
    let mut out = Vec::new();
    for row in rows {
        let side = match row.side.as_str() {
            "Buy" => PositionSide::Long,
            "Sell" => PositionSide::Short,
            "" | "None" => continue,
            other => {
                return Err(ExchangeError::malformed(
                    VENUE,
                    endpoint,
                    format!("unknown position side {other:?}"),
                ));
            }
        };
        if row.size.is_zero() {
            continue;
        }
        let unified = match symbol {
            Some(s) => {
                if row.symbol != s.concat() {
                    continue;
                }
                s.clone()
            }
            None => match unified_symbol(&row.symbol, settle) {
                Some(s) => s,
                None => {
                    tracing::warn!(venue = VENUE, symbol = %row.symbol, "skipping a position that is not a linear perpetual");
                    continue;
                }
            },
        };
        let entry_price = row.avg_price.ok_or_else(|| {
            ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("{}: open position without avgPrice", row.symbol),
            )
        })?;
        out.push(Position {
            symbol: unified,
            side,
            quantity: row.size.abs(),
            entry_price,
            mark_price: row.mark_price,
            unrealized_pnl: row.unrealised_pnl.unwrap_or_default(),
            leverage: row.leverage,
            liquidation_price: row.liq_price.filter(|p| !p.is_zero()),
        });
    }
    Ok(out)
}

fn side(s: &str, endpoint: &str) -> Result<Side, ExchangeError> {
    match s {
        "Buy" => Ok(Side::Buy),
        "Sell" => Ok(Side::Sell),
        other => Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!("unknown side {other:?}"),
        )),
    }
}

fn order_status(s: &str, endpoint: &str) -> Result<OrderStatus, ExchangeError> {
    Ok(match s {
        "New" | "Untriggered" | "Created" | "Active" => OrderStatus::Open,
        "PartiallyFilled" => OrderStatus::PartiallyFilled,
        "Filled" => OrderStatus::Filled,
        "Cancelled" | "PartiallyFilledCanceled" | "Deactivated" => OrderStatus::Canceled,
        "Rejected" => OrderStatus::Rejected,
        "Triggered" => OrderStatus::Triggered,
        other => {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("unknown orderStatus {other:?}"),
            ));
        }
    })
}

/// The trigger direction Bybit needs: 1 = fires when the price rises to the trigger, 2 = falls.
/// A stop fires against the position (a sell stop protects a long, so it fires on a fall), a take
/// profit in its favour.
pub(crate) fn trigger_direction(side: Side, order_type: OrderType) -> Option<u8> {
    match (order_type, side) {
        (OrderType::StopMarket, Side::Buy) | (OrderType::TakeProfitMarket, Side::Sell) => Some(1),
        (OrderType::StopMarket, Side::Sell) | (OrderType::TakeProfitMarket, Side::Buy) => Some(2),
        (OrderType::Market | OrderType::Limit, _) => None,
    }
}

fn order_type(row: &OrderRow, side: Side, endpoint: &str) -> Result<OrderType, ExchangeError> {
    let plain = match row.order_type.as_str() {
        "Market" => OrderType::Market,
        "Limit" => OrderType::Limit,
        other => {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("unknown orderType {other:?}"),
            ));
        }
    };
    Ok(match row.stop_order_type.as_str() {
        "" | "UNKNOWN" => plain,
        // Conditional orders with a price limit have no domain type; keep them as limits.
        _ if plain == OrderType::Limit => OrderType::Limit,
        // A stand-alone conditional order: stop or take profit according to its direction.
        "Stop" => match (row.trigger_direction, side) {
            (Some(1), Side::Buy) | (Some(2), Side::Sell) => OrderType::StopMarket,
            (Some(1), Side::Sell) | (Some(2), Side::Buy) => OrderType::TakeProfitMarket,
            _ => OrderType::StopMarket,
        },
        "StopLoss"
        | "PartialStopLoss"
        | "TrailingStop"
        | "tpslOrder"
        | "BidirectionalTpslOrder" => OrderType::StopMarket,
        "TakeProfit" | "PartialTakeProfit" => OrderType::TakeProfitMarket,
        other => {
            return Err(ExchangeError::malformed(
                VENUE,
                endpoint,
                format!("unknown stopOrderType {other:?}"),
            ));
        }
    })
}

fn positive(d: Option<Decimal>) -> Option<Decimal> {
    d.filter(|v| *v > Decimal::ZERO)
}

pub(crate) fn order(
    row: &OrderRow,
    symbol: &Symbol,
    endpoint: &str,
) -> Result<Order, ExchangeError> {
    let side = side(&row.side, endpoint)?;
    let order_type = order_type(row, side, endpoint)?;
    Ok(Order {
        symbol: symbol.clone(),
        // Ids this fleet did not make (other tools, the web UI) may not fit the domain rules.
        client_order_id: ClientOrderId::new(row.order_link_id.clone()).ok(),
        exchange_order_id: row.order_id.clone(),
        side,
        order_type,
        status: order_status(&row.order_status, endpoint)?,
        quantity: row.qty,
        price: if order_type == OrderType::Limit {
            positive(row.price)
        } else {
            None
        },
        trigger_price: positive(row.trigger_price),
        reduce_only: row.reduce_only,
        filled_quantity: row.cum_exec_qty.unwrap_or_default(),
        average_price: positive(row.avg_price),
        fee: row.cum_exec_fee,
        created_at: row.created_time.and_then(millis_to_time),
        updated_at: row.updated_time.and_then(millis_to_time),
    })
}

/// What the key may do, from `/v5/user/query-api`.
pub(crate) fn account_check(info: &ApiKeyInfo) -> AccountCheck {
    let p = &info.permissions;
    let has = |list: &[String], what: &str| list.iter().any(|x| x == what);
    let trade_perm = has(&p.contract_trade, "Order") || has(&p.derivatives, "DerivativesTrade");
    let can_trade = info.read_only == 0 && trade_perm;
    let can_withdraw = has(&p.wallet, "Withdraw");
    let mut notes = Vec::new();
    if info.read_only != 0 {
        notes.push("the key is read-only".to_string());
    } else if !trade_perm {
        notes.push("the key has no contract/derivatives order permission".to_string());
    }
    if can_withdraw {
        notes.push(
            "WARNING: the key may withdraw funds; a trading bot never needs that".to_string(),
        );
    }
    AccountCheck {
        can_trade: Some(can_trade),
        can_withdraw: Some(can_withdraw),
        notes,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exchange::bybit::wire::{
        InstrumentsResult, OrderListResult, PositionResult, TickerResult,
    };
    use proptest::prelude::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;
    use rust_decimal_macros::dec;

    const FIXTURES: &[(&str, &str)] = &[
        (
            "server_time",
            include_str!("../../../tests/fixtures/bybit/server_time.json"),
        ),
        (
            "klines",
            include_str!("../../../tests/fixtures/bybit/klines.json"),
        ),
        (
            "tickers",
            include_str!("../../../tests/fixtures/bybit/tickers.json"),
        ),
        (
            "instruments",
            include_str!("../../../tests/fixtures/bybit/instruments_linear.json"),
        ),
        (
            "balance",
            include_str!("../../../tests/fixtures/bybit/balance.json"),
        ),
        (
            "positions",
            include_str!("../../../tests/fixtures/bybit/positions.json"),
        ),
        (
            "set_leverage",
            include_str!("../../../tests/fixtures/bybit/set_leverage.json"),
        ),
        (
            "place_order",
            include_str!("../../../tests/fixtures/bybit/place_order.json"),
        ),
        (
            "cancel_order",
            include_str!("../../../tests/fixtures/bybit/cancel_order.json"),
        ),
        (
            "cancel_all",
            include_str!("../../../tests/fixtures/bybit/cancel_all.json"),
        ),
        (
            "open_orders",
            include_str!("../../../tests/fixtures/bybit/open_orders.json"),
        ),
        (
            "order_history",
            include_str!("../../../tests/fixtures/bybit/order_history.json"),
        ),
        (
            "query_api",
            include_str!("../../../tests/fixtures/bybit/query_api.json"),
        ),
    ];

    fn ctx() -> Context<'static> {
        Context {
            kind: RequestKind::Read,
            symbol: Some("BTCUSDT"),
            limit_reset_in: None,
        }
    }

    fn raw(body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: body.to_string(),
        }
    }

    fn btc() -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    /// Run a body through the envelope check and the parser of its endpoint.
    fn parse_any(name: &str, body: &str) -> Result<(), ExchangeError> {
        let env = envelope(name, &raw(body), ctx())?;
        let k = RequestKind::Read;
        let now = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        match name {
            "server_time" => server_time(&result::<ServerTime>(name, k, env.result)?).map(|_| ()),
            "klines" => klines(result(name, k, env.result)?, Timeframe::H1, now).map(|_| ()),
            "tickers" => {
                let r: TickerResult = result(name, k, env.result)?;
                ticker(&r.list, &btc(), "BTCUSDT", now).map(|_| ())
            }
            "instruments" => {
                let r: InstrumentsResult = result(name, k, env.result)?;
                instrument(&r.list, &btc(), "BTCUSDT").map(|_| ())
            }
            "balance" => balance(result(name, k, env.result)?, "USDT").map(|_| ()),
            "positions" => {
                let r: PositionResult = result(name, k, env.result)?;
                positions(r.list, None, "USD").map(|_| ())
            }
            "place_order" | "cancel_order" => {
                result::<super::super::wire::OrderAck>(name, k, env.result).map(|_| ())
            }
            "cancel_all" => {
                result::<super::super::wire::CancelAllResult>(name, k, env.result).map(|_| ())
            }
            "open_orders" | "order_history" => {
                let r: OrderListResult = result(name, k, env.result)?;
                r.list
                    .iter()
                    .try_for_each(|row| order(row, &btc(), name).map(|_| ()))
            }
            "query_api" => {
                result::<ApiKeyInfo>(name, k, env.result).map(|i| drop(account_check(&i)))
            }
            _ => Ok(()),
        }
    }

    #[test]
    fn every_fixture_parses() {
        for (name, body) in FIXTURES {
            parse_any(name, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn klines_come_out_oldest_first_with_the_forming_one_open() {
        let body = FIXTURES.iter().find(|(n, _)| *n == "klines").unwrap().1;
        let env = envelope("k", &raw(body), ctx()).unwrap();
        // 1670608800000 is the newest row's start; "now" falls inside it.
        let now = DateTime::from_timestamp_millis(1_670_608_800_000 + 60_000).unwrap();
        let c = klines(
            result("k", RequestKind::Read, env.result).unwrap(),
            Timeframe::H1,
            now,
        )
        .unwrap();
        assert_eq!(c.len(), 3);
        assert!(c.windows(2).all(|w| w[0].open_time < w[1].open_time));
        assert_eq!(c[0].open, dec!(17086.5));
        assert_eq!(c[2].close, dec!(17055.5));
        assert_eq!(
            c.iter().map(|c| c.closed).collect::<Vec<_>>(),
            vec![true, true, false]
        );
    }

    #[test]
    fn trigger_directions() {
        assert_eq!(
            trigger_direction(Side::Sell, OrderType::StopMarket),
            Some(2)
        );
        assert_eq!(trigger_direction(Side::Buy, OrderType::StopMarket), Some(1));
        assert_eq!(
            trigger_direction(Side::Sell, OrderType::TakeProfitMarket),
            Some(1)
        );
        assert_eq!(
            trigger_direction(Side::Buy, OrderType::TakeProfitMarket),
            Some(2)
        );
        assert_eq!(trigger_direction(Side::Buy, OrderType::Limit), None);
    }

    #[test]
    fn symbols_round_trip() {
        assert_eq!(venue_symbol(&btc()).unwrap(), "BTCUSDT");
        assert_eq!(unified_symbol("BTCUSDT", "USDT"), Some(btc()));
        assert_eq!(unified_symbol("BTC-26DEC25", "USDT"), None);
        assert_eq!(unified_symbol("USDT", "USDT"), None);
        assert!(venue_symbol(&"BTC/USD:BTC".parse().unwrap()).is_err());
    }

    #[test]
    fn error_envelope_is_mapped_before_the_result() {
        let e = envelope("x", &raw(r#"{"retCode":110007,"retMsg":"Available balance is insufficient","result":{},"time":1}"#), ctx()).unwrap_err();
        assert_eq!(e.kind(), "insufficient_margin");
    }

    #[test]
    fn malformed_write_answer_is_outcome_unknown() {
        let c = Context {
            kind: RequestKind::Write,
            ..ctx()
        };
        let e = envelope("/v5/order/create", &raw("{\"retCode\":0,"), c).unwrap_err();
        assert_eq!(e.kind(), "outcome_unknown");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Truncated or byte-mutated fixtures give an error or a value, never a panic.
        #[test]
        fn damaged_bodies_never_panic(idx in 0usize..FIXTURES.len(), cut in 0.0f64..1.0, pos in 0.0f64..1.0, byte in any::<u8>()) {
            let (name, body) = FIXTURES[idx];
            let bytes = body.as_bytes();
            let cut_at = ((bytes.len() as f64) * cut) as usize;
            let truncated = String::from_utf8_lossy(&bytes[..cut_at]).to_string();
            let r = parse_any(name, &truncated);
            if cut_at < body.trim_end().len() {
                prop_assert!(r.is_err(), "{} truncated at {} parsed", name, cut_at);
            }
            let mut mutated = bytes.to_vec();
            let at = ((mutated.len() as f64) * pos) as usize % mutated.len();
            mutated[at] = byte;
            let _ = parse_any(name, &String::from_utf8_lossy(&mutated));
        }
    }
}
