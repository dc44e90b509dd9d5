//! Binance wire models -> domain types. Every venue enum maps through an explicit `match`;
//! anything unexpected is a typed error naming the endpoint, never a panic.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::VENUE;
use super::wire::{
    Account, KlineRow, LeverageBracketResponse, PositionRisk, ServerTime, SymbolFilter, SymbolInfo,
    TickerPrice, WireAlgoOrder, WireOrder,
};
use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderStatus, OrderType, Position,
    PositionSide, Side, Symbol, Ticker, Timeframe,
};
use crate::exchange::ExchangeError;
use crate::exchange::wire::millis_to_time;

/// Quote assets of USDⓈ-M perpetuals, longest first so `FDUSD` wins over `USD`-like suffixes.
const QUOTES: [&str; 4] = ["FDUSD", "USDT", "USDC", "BUSD"];

/// `BTC/USDT:USDT` -> `BTCUSDT`. USDⓈ-M contracts settle in their quote asset; anything else
/// (coin-margined, cross-settled) is not on this venue.
pub(crate) fn venue_symbol(symbol: &Symbol) -> Result<String, ExchangeError> {
    if symbol.settle() != symbol.quote() {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: "USDⓈ-M perpetuals settle in their quote asset (e.g. BTC/USDT:USDT)".into(),
        });
    }
    Ok(symbol.concat())
}

/// `BTCUSDT` -> `BTC/USDT:USDT`, for answers that list many symbols. `None` for names that are
/// not linear perpetuals in a known quote asset (e.g. dated contracts `BTCUSDT_250926`).
pub(crate) fn unified_symbol(venue_symbol: &str) -> Option<Symbol> {
    QUOTES.iter().find_map(|quote| {
        let base = venue_symbol.strip_suffix(quote)?;
        Symbol::new(base, quote, quote).ok()
    })
}

fn time(endpoint: &str, ms: i64) -> Result<DateTime<Utc>, ExchangeError> {
    millis_to_time(ms)
        .ok_or_else(|| ExchangeError::malformed(VENUE, endpoint, format!("bad time {ms}")))
}

fn check_symbol(endpoint: &str, expected: &str, got: &str) -> Result<(), ExchangeError> {
    if expected == got {
        Ok(())
    } else {
        Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!("asked for {expected}, got {got}"),
        ))
    }
}

pub(crate) fn parse_server_time(t: &ServerTime) -> Result<DateTime<Utc>, ExchangeError> {
    time("/fapi/v1/time", t.server_time)
}

/// Candles oldest first; a candle whose close time is not yet past `now_ms` is `closed = false`.
pub(crate) fn parse_klines(
    rows: &[KlineRow],
    timeframe: Timeframe,
    now_ms: i64,
) -> Result<Vec<Candle>, ExchangeError> {
    const EP: &str = "/fapi/v1/klines";
    let mut candles = Vec::with_capacity(rows.len());
    for row in rows {
        let (open_ms, close_ms) = (row.0, row.6);
        if close_ms < open_ms || close_ms - open_ms >= timeframe.millis() {
            return Err(ExchangeError::malformed(
                VENUE,
                EP,
                format!("candle {open_ms}..{close_ms} does not span one {timeframe}"),
            ));
        }
        candles.push(Candle {
            open_time: time(EP, open_ms)?,
            open: row.1,
            high: row.2,
            low: row.3,
            close: row.4,
            volume: row.5,
            closed: now_ms > close_ms,
        });
    }
    candles.sort_by_key(|c| c.open_time);
    Ok(candles)
}

pub(crate) fn parse_ticker(
    symbol: &Symbol,
    venue_symbol: &str,
    t: &TickerPrice,
) -> Result<Ticker, ExchangeError> {
    const EP: &str = "/fapi/v1/ticker/price";
    check_symbol(EP, venue_symbol, &t.symbol)?;
    Ok(Ticker {
        symbol: symbol.clone(),
        last: t.price,
        bid: None,
        ask: None,
        mark: None,
        time: time(EP, t.time)?,
    })
}

/// Trading rules of one symbol; market orders have their own lot filter on Binance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    pub instrument: Instrument,
    pub market_step: Decimal,
    pub market_min_qty: Decimal,
}

pub(crate) fn parse_rules(
    symbol: &Symbol,
    info: &SymbolInfo,
    max_leverage: Decimal,
) -> Result<Rules, ExchangeError> {
    const EP: &str = "/fapi/v1/exchangeInfo";
    let missing = |what: &str| {
        ExchangeError::malformed(VENUE, EP, format!("{}: no {what} filter", info.symbol))
    };
    let (mut tick, mut lot, mut market_lot, mut notional) = (None, None, None, None);
    for f in &info.filters {
        match f {
            SymbolFilter::Price { tick_size } => tick = Some(*tick_size),
            SymbolFilter::LotSize { step_size, min_qty } => lot = Some((*step_size, *min_qty)),
            SymbolFilter::MarketLotSize { step_size, min_qty } => {
                market_lot = Some((*step_size, *min_qty))
            }
            SymbolFilter::MinNotional { notional: n } => notional = Some(*n),
            SymbolFilter::Other => {}
        }
    }
    let tick_size = tick.ok_or_else(|| missing("PRICE_FILTER"))?;
    let (step_size, min_quantity) = lot.ok_or_else(|| missing("LOT_SIZE"))?;
    if tick_size <= Decimal::ZERO || step_size <= Decimal::ZERO {
        return Err(ExchangeError::malformed(
            VENUE,
            EP,
            format!(
                "{}: tick {tick_size} / step {step_size} must be positive",
                info.symbol
            ),
        ));
    }
    let (market_step, market_min_qty) = market_lot.unwrap_or((step_size, min_quantity));
    Ok(Rules {
        instrument: Instrument {
            symbol: symbol.clone(),
            venue_symbol: info.symbol.clone(),
            tick_size: tick_size.normalize(),
            step_size: step_size.normalize(),
            min_quantity: min_quantity.normalize(),
            min_notional: notional.unwrap_or_default().normalize(),
            contract_size: Decimal::ONE,
            max_leverage,
        },
        market_step: market_step.normalize(),
        market_min_qty: market_min_qty.normalize(),
    })
}

/// The highest initial leverage of the symbol's brackets (the first bracket's).
pub(crate) fn parse_max_leverage(
    resp: LeverageBracketResponse,
    venue_symbol: &str,
) -> Result<Decimal, ExchangeError> {
    const EP: &str = "/fapi/v1/leverageBracket";
    let list = match resp {
        LeverageBracketResponse::Many(v) => v,
        LeverageBracketResponse::One(o) => vec![o],
    };
    list.into_iter()
        .find(|s| s.symbol == venue_symbol)
        .and_then(|s| s.brackets.iter().map(|b| b.initial_leverage).max())
        .filter(|l| *l >= Decimal::ONE)
        .ok_or_else(|| {
            ExchangeError::malformed(VENUE, EP, format!("no leverage bracket for {venue_symbol}"))
        })
}

/// Margin balance of `asset`; an asset the account never held is all zeros.
pub(crate) fn parse_balance(account: &Account, asset: &str) -> Balance {
    let wanted = asset.to_ascii_uppercase();
    match account.assets.iter().find(|a| a.asset == wanted) {
        Some(a) => Balance {
            asset: wanted,
            equity: a.margin_balance,
            available: a.available_balance,
            unrealized_pnl: a.unrealized_profit,
        },
        None => Balance {
            asset: wanted,
            equity: Decimal::ZERO,
            available: Decimal::ZERO,
            unrealized_pnl: Decimal::ZERO,
        },
    }
}

/// Open positions (non-zero amounts). Symbols that are not linear perpetuals are skipped with a
/// warning: the fleet only trades perpetuals.
pub(crate) fn parse_positions(rows: &[PositionRisk]) -> Result<Vec<Position>, ExchangeError> {
    const EP: &str = "/fapi/v3/positionRisk";
    let mut out = Vec::new();
    for p in rows {
        if p.position_amt.is_zero() {
            continue;
        }
        let side = match p.position_side.as_str() {
            "BOTH" if p.position_amt > Decimal::ZERO => PositionSide::Long,
            "BOTH" => PositionSide::Short,
            "LONG" => PositionSide::Long,
            "SHORT" => PositionSide::Short,
            other => {
                return Err(ExchangeError::malformed(
                    VENUE,
                    EP,
                    format!("unknown positionSide {other:?}"),
                ));
            }
        };
        let Some(symbol) = unified_symbol(&p.symbol) else {
            tracing::warn!(venue = VENUE, symbol = %p.symbol, "skipping position in a non-perpetual symbol");
            continue;
        };
        out.push(Position {
            symbol,
            side,
            quantity: p.position_amt.abs(),
            entry_price: p.entry_price,
            mark_price: p.mark_price,
            unrealized_pnl: p.unrealized_profit,
            leverage: p.leverage,
            liquidation_price: p.liquidation_price.filter(|l| !l.is_zero()),
        });
    }
    Ok(out)
}

fn parse_side(endpoint: &str, s: &str) -> Result<Side, ExchangeError> {
    match s {
        "BUY" => Ok(Side::Buy),
        "SELL" => Ok(Side::Sell),
        other => Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!("unknown side {other:?}"),
        )),
    }
}

pub(crate) fn side_str(side: Side) -> &'static str {
    match side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

fn parse_order_type(endpoint: &str, s: &str) -> Result<OrderType, ExchangeError> {
    match s {
        "MARKET" => Ok(OrderType::Market),
        "LIMIT" => Ok(OrderType::Limit),
        "STOP_MARKET" => Ok(OrderType::StopMarket),
        "TAKE_PROFIT_MARKET" => Ok(OrderType::TakeProfitMarket),
        other => Err(ExchangeError::Unsupported {
            venue: VENUE,
            message: format!("{endpoint}: order type {other:?} is not one the fleet trades"),
        }),
    }
}

fn parse_status(endpoint: &str, s: &str) -> Result<OrderStatus, ExchangeError> {
    match s {
        "NEW" => Ok(OrderStatus::Open),
        "PARTIALLY_FILLED" => Ok(OrderStatus::PartiallyFilled),
        "FILLED" => Ok(OrderStatus::Filled),
        "CANCELED" => Ok(OrderStatus::Canceled),
        "REJECTED" => Ok(OrderStatus::Rejected),
        "EXPIRED" | "EXPIRED_IN_MATCH" => Ok(OrderStatus::Expired),
        other => Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!("unknown order status {other:?}"),
        )),
    }
}

fn parse_algo_status(endpoint: &str, s: &str) -> Result<OrderStatus, ExchangeError> {
    match s {
        "NEW" => Ok(OrderStatus::Open),
        // The trigger fired; the resulting market order is a regular order on the venue.
        "TRIGGERING" | "TRIGGERED" | "FINISHED" => Ok(OrderStatus::Triggered),
        "CANCELED" | "CANCELLED" => Ok(OrderStatus::Canceled),
        "REJECTED" => Ok(OrderStatus::Rejected),
        "EXPIRED" => Ok(OrderStatus::Expired),
        other => Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!("unknown algo status {other:?}"),
        )),
    }
}

fn positive(d: Option<Decimal>) -> Option<Decimal> {
    d.filter(|v| *v > Decimal::ZERO)
}

fn opt_time(endpoint: &str, ms: Option<i64>) -> Result<Option<DateTime<Utc>>, ExchangeError> {
    ms.filter(|v| *v > 0).map(|v| time(endpoint, v)).transpose()
}

/// A regular order. Client ids Binance generated itself (`x-...`, `web_...`) are not valid
/// domain ids and come back as `None`.
pub(crate) fn parse_order(
    endpoint: &str,
    symbol: &Symbol,
    venue_symbol: &str,
    o: &WireOrder,
) -> Result<Order, ExchangeError> {
    check_symbol(endpoint, venue_symbol, &o.symbol)?;
    Ok(Order {
        symbol: symbol.clone(),
        client_order_id: ClientOrderId::new(o.client_order_id.clone()).ok(),
        exchange_order_id: o.order_id.clone(),
        side: parse_side(endpoint, &o.side)?,
        order_type: parse_order_type(endpoint, &o.order_type)?,
        status: parse_status(endpoint, &o.status)?,
        quantity: o.orig_qty,
        price: positive(o.price),
        trigger_price: positive(o.stop_price),
        reduce_only: o.reduce_only,
        filled_quantity: o.executed_qty,
        average_price: positive(o.avg_price),
        fee: None,
        created_at: opt_time(endpoint, o.time)?,
        updated_at: opt_time(endpoint, o.update_time)?,
    })
}

/// A conditional order of the Algo Service. Its fill is reported on the regular order it
/// triggers, so `filled_quantity` is zero here.
pub(crate) fn parse_algo_order(
    endpoint: &str,
    symbol: &Symbol,
    venue_symbol: &str,
    o: &WireAlgoOrder,
) -> Result<Order, ExchangeError> {
    check_symbol(endpoint, venue_symbol, &o.symbol)?;
    Ok(Order {
        symbol: symbol.clone(),
        client_order_id: ClientOrderId::new(o.client_algo_id.clone()).ok(),
        exchange_order_id: o.algo_id.clone(),
        side: parse_side(endpoint, &o.side)?,
        order_type: parse_order_type(endpoint, &o.order_type)?,
        status: parse_algo_status(endpoint, &o.algo_status)?,
        quantity: o.quantity.unwrap_or_default(),
        price: positive(o.price),
        trigger_price: positive(o.trigger_price),
        reduce_only: o.reduce_only,
        filled_quantity: Decimal::ZERO,
        average_price: None,
        fee: None,
        created_at: opt_time(endpoint, o.create_time)?,
        updated_at: opt_time(endpoint, o.update_time)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exchange::binance::errors::decode;
    use crate::exchange::binance::wire::{Ack, ExchangeInfo};
    use crate::exchange::http::{RawResponse, RequestKind};
    use proptest::prelude::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;
    use rust_decimal_macros::dec;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../../../tests/fixtures/binance/", $name)),
            )
        };
    }

    const FIXTURES: [(&str, &str); 16] = [
        fixture!("klines.json"),
        fixture!("klines_official.json"),
        fixture!("place_order.json"),
        fixture!("algo_order.json"),
        fixture!("positions.json"),
        fixture!("positions_v3_official.json"),
        fixture!("balance_account.json"),
        fixture!("balance_v3_official.json"),
        fixture!("leverage.json"),
        fixture!("cancel_all.json"),
        fixture!("server_time.json"),
        fixture!("ticker_price.json"),
        fixture!("exchange_info.json"),
        fixture!("leverage_bracket.json"),
        fixture!("algo_cancel.json"),
        fixture!("query_order.json"),
    ];

    fn ok(body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: body.to_string(),
        }
    }

    fn btc() -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    /// Decode `body` as the endpoint `name` answers and parse it into domain types.
    fn parse_fixture(name: &str, body: &str) -> Result<(), ExchangeError> {
        let raw = ok(body);
        let r = RequestKind::Read;
        let btc = btc();
        let bnb: Symbol = "BNB/USDT:USDT".parse().unwrap();
        match name {
            "klines.json" | "klines_official.json" => {
                let rows: Vec<KlineRow> = decode(&raw, "/fapi/v1/klines", r, None)?;
                let tf = if name == "klines.json" {
                    Timeframe::M1
                } else {
                    Timeframe::W1
                };
                parse_klines(&rows, tf, 0).map(|_| ())
            }
            "place_order.json" | "query_order.json" => {
                let o: WireOrder = decode(&raw, "/fapi/v1/order", r, None)?;
                parse_order("/fapi/v1/order", &btc, "BTCUSDT", &o).map(|_| ())
            }
            "algo_order.json" => {
                let o: WireAlgoOrder = decode(&raw, "/fapi/v1/algoOrder", r, None)?;
                parse_algo_order("/fapi/v1/algoOrder", &bnb, "BNBUSDT", &o).map(|_| ())
            }
            "positions.json" | "positions_v3_official.json" => {
                let rows: Vec<PositionRisk> = decode(&raw, "/fapi/v3/positionRisk", r, None)?;
                parse_positions(&rows).map(|_| ())
            }
            "balance_account.json" => {
                let a: Account = decode(&raw, "/fapi/v3/account", r, None)?;
                let _ = parse_balance(&a, "USDT");
                Ok(())
            }
            // The /fapi/v3/balance shape is not the account shape: it must be refused.
            "balance_v3_official.json" => {
                decode::<Account>(&raw, "/fapi/v3/account", r, None).map(|_| ())
            }
            "leverage.json" => {
                decode::<super::super::wire::LeverageSet>(&raw, "/fapi/v1/leverage", r, None)
                    .map(|_| ())
            }
            "cancel_all.json" | "algo_cancel.json" => {
                decode::<Ack>(&raw, "/fapi/v1/allOpenOrders", r, None).map(|_| ())
            }
            "server_time.json" => {
                let t: ServerTime = decode(&raw, "/fapi/v1/time", r, None)?;
                parse_server_time(&t).map(|_| ())
            }
            "ticker_price.json" => {
                let t: TickerPrice = decode(&raw, "/fapi/v1/ticker/price", r, None)?;
                parse_ticker(&btc, "BTCUSDT", &t).map(|_| ())
            }
            "exchange_info.json" => {
                let info: ExchangeInfo = decode(&raw, "/fapi/v1/exchangeInfo", r, None)?;
                let s = info
                    .symbols
                    .iter()
                    .find(|s| s.symbol == "BTCUSDT")
                    .ok_or_else(|| {
                        ExchangeError::malformed(VENUE, "/fapi/v1/exchangeInfo", "no BTCUSDT")
                    })?;
                parse_rules(&btc, s, Decimal::from(20)).map(|_| ())
            }
            "leverage_bracket.json" => {
                let b: LeverageBracketResponse = decode(&raw, "/fapi/v1/leverageBracket", r, None)?;
                parse_max_leverage(b, "BTCUSDT").map(|_| ())
            }
            other => panic!("no parser for fixture {other}"),
        }
    }

    #[test]
    fn recorded_fixtures_parse_into_domain_values() {
        for (name, body) in FIXTURES {
            let res = parse_fixture(name, body);
            match name {
                "balance_v3_official.json" => assert!(res.is_err(), "{name} has no assets[]"),
                // A trailing stop is not a type the fleet trades: refused, not mislabelled.
                "query_order.json" => {
                    assert_eq!(res.unwrap_err().kind(), "unsupported", "{name}")
                }
                // The recorded algo example is a TAKE_PROFIT (limit) order: refused the same way.
                "algo_order.json" => assert_eq!(res.unwrap_err().kind(), "unsupported"),
                _ => assert!(res.is_ok(), "{name}: {res:?}"),
            }
        }
    }

    #[test]
    fn klines_mark_only_the_forming_candle_open() {
        let rows: Vec<KlineRow> = serde_json::from_str(FIXTURES[0].1).unwrap();
        // Inside the third candle (1712738580000..=1712738639999).
        let c = parse_klines(&rows, Timeframe::M1, 1_712_738_600_000).unwrap();
        assert_eq!(c.len(), 3);
        assert!(c[0].open_time < c[1].open_time && c[1].open_time < c[2].open_time);
        assert_eq!(
            c.iter().map(|c| c.closed).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(c[1].high, dec!(71471.00));
        assert_eq!(c[2].volume, dec!(1.542));
        // One millisecond after the last close time, every candle is closed.
        let c = parse_klines(&rows, Timeframe::M1, 1_712_738_640_000).unwrap();
        assert!(c.iter().all(|c| c.closed));
        // Before the first close time nothing is closed.
        let c = parse_klines(&rows, Timeframe::M1, 1_712_738_519_999).unwrap();
        assert!(c.iter().all(|c| !c.closed));
        // A row longer than the timeframe asked for is refused.
        assert!(parse_klines(&rows, Timeframe::M1, 0).is_ok());
        let weekly: Vec<KlineRow> = serde_json::from_str(FIXTURES[1].1).unwrap();
        assert_eq!(
            parse_klines(&weekly, Timeframe::D1, 0).unwrap_err().kind(),
            "malformed_response"
        );
    }

    #[test]
    fn positions_are_signed_by_amount() {
        let rows: Vec<PositionRisk> = serde_json::from_str(FIXTURES[4].1).unwrap();
        let p = parse_positions(&rows).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].symbol, btc());
        assert_eq!(p[0].side, PositionSide::Long);
        assert_eq!(p[0].quantity, dec!(0.009));
        let short = FIXTURES[5].1.replace("\"30\"", "\"-30\"");
        let rows: Vec<PositionRisk> = serde_json::from_str(&short).unwrap();
        let p = parse_positions(&rows).unwrap();
        assert_eq!(p[0].side, PositionSide::Short);
        assert_eq!(p[0].quantity, dec!(30));
        assert_eq!(p[0].symbol.to_string(), "ADA/USDT:USDT");
        // A zero liquidation price means "none".
        assert_eq!(p[0].liquidation_price, None);
    }

    #[test]
    fn symbols_map_both_ways() {
        assert_eq!(venue_symbol(&btc()).unwrap(), "BTCUSDT");
        let coin_margined: Symbol = "BTC/USD:BTC".parse().unwrap();
        assert_eq!(
            venue_symbol(&coin_margined).unwrap_err().kind(),
            "unknown_symbol"
        );
        assert_eq!(unified_symbol("BTCUSDT"), Some(btc()));
        assert_eq!(
            unified_symbol("ETHUSDC").map(|s| s.to_string()).as_deref(),
            Some("ETH/USDC:USDC")
        );
        assert_eq!(unified_symbol("BTCUSDT_250926"), None);
        assert_eq!(unified_symbol("USDT"), None);
    }

    fn fixture_and_cut() -> impl Strategy<Value = (usize, usize)> {
        (0..FIXTURES.len()).prop_flat_map(|i| (Just(i), 0..FIXTURES[i].1.len()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Every proper prefix of a fixture is an error, never a panic.
        #[test]
        fn truncated_bodies_are_errors((i, cut) in fixture_and_cut()) {
            let (name, body) = FIXTURES[i];
            let mut cut = cut;
            while !body.is_char_boundary(cut) { cut -= 1; }
            let prefix = &body[..cut];
            prop_assume!(prefix.trim_end() != body.trim_end());
            prop_assert!(parse_fixture(name, prefix).is_err(), "{} cut at {}", name, cut);
        }

        /// Any single-byte mutation is handled without panicking.
        #[test]
        fn mutated_bodies_never_panic((i, at) in fixture_and_cut(), byte in 0x20u8..0x7f) {
            let (name, body) = FIXTURES[i];
            let mut bytes = body.as_bytes().to_vec();
            if let Some(b) = bytes.get_mut(at) { *b = byte; }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_fixture(name, &text);
        }
    }
}
