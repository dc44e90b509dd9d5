//! Kraken Futures answers -> domain types: the envelope check (including rejections that arrive as
//! `result: success`), then wire models -> `Ticker`, `Instrument`, `Candle`, `Order`, ...

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use super::VENUE;
use super::errors::map_code;
use super::symbols::from_venue;
use super::wire::{
    AccountsResponse, CandlesResponse, Envelope, HistoryOrdersResponse, HistoryTriggersResponse,
    OpenPositionsResponse, SendOrderResponse, TickerResponse, WireCachedOrder, WireHistoricalOrder,
    WireHistoricalTrigger, WireInstrument, WireOpenOrder, WireOrderStatus,
};
use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, OrderStatus, OrderType,
    Position, PositionSide, Side, Symbol, Ticker, Timeframe,
};
use crate::exchange::ExchangeError;
use crate::exchange::http::{RawResponse, RequestKind, truncate};
use crate::exchange::wire::millis_to_time;

fn malformed(endpoint: &str, message: impl Into<String>) -> ExchangeError {
    ExchangeError::malformed(VENUE, endpoint, message)
}

/// The error code an answer carries, if it is an error answer.
fn error_code(env: &Envelope) -> Option<String> {
    let text = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Object(o) => {
                o.get("message").or_else(|| o.get("code")).map(|m| match m {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }
            _ => None,
        }
    };
    let from_fields = env
        .error
        .as_ref()
        .and_then(text)
        .or_else(|| env.errors.as_ref().and_then(|es| es.iter().find_map(text)));
    match env.result.as_deref() {
        Some("error") => Some(from_fields.unwrap_or_else(|| "unknownError".to_string())),
        _ => from_fields,
    }
}

/// Turn one answer into `T`, or into the error it reports. A write whose 2xx answer cannot be
/// read has an unknown outcome (the venue received it), never a plain parse error.
pub(super) fn decode<T: DeserializeOwned>(
    endpoint: &str,
    raw: &RawResponse,
    kind: RequestKind,
) -> Result<T, ExchangeError> {
    let envelope = serde_json::from_str::<Envelope>(&raw.body).ok();
    if let Some(code) = envelope.as_ref().and_then(error_code) {
        return Err(map_code(&code, endpoint, kind));
    }
    if let Some(err) = raw.status_error(VENUE, kind) {
        return Err(err);
    }
    let unreadable = |message: String| match kind {
        RequestKind::Read => malformed(endpoint, message),
        RequestKind::Write => ExchangeError::OutcomeUnknown {
            venue: VENUE,
            message: format!("unreadable answer from {endpoint}: {message}"),
        },
    };
    if let Some(result) = envelope.as_ref().and_then(|e| e.result.as_deref())
        && result != "success"
    {
        return Err(unreadable(format!("unexpected result {result:?}")));
    }
    serde_json::from_str::<T>(&raw.body)
        .map_err(|e| unreadable(format!("{e}; body starts {:?}", truncate(&raw.body, 200))))
}

fn side(endpoint: &str, s: &str) -> Result<Side, ExchangeError> {
    match s {
        "buy" | "Buy" | "BUY" => Ok(Side::Buy),
        "sell" | "Sell" | "SELL" => Ok(Side::Sell),
        other => Err(malformed(endpoint, format!("unknown side {other:?}"))),
    }
}

fn client_id(s: Option<&str>) -> Option<ClientOrderId> {
    // Orders placed by other tools may carry ids the fleet's format does not allow.
    s.and_then(|s| ClientOrderId::new(s).ok())
}

/// Filled quantity -> open / partially filled / filled.
fn fill_status(filled: Decimal, quantity: Decimal) -> OrderStatus {
    if quantity > Decimal::ZERO && filled >= quantity {
        OrderStatus::Filled
    } else if filled > Decimal::ZERO {
        OrderStatus::PartiallyFilled
    } else {
        OrderStatus::Open
    }
}

pub(super) fn ticker(symbol: &Symbol, resp: TickerResponse) -> Result<Ticker, ExchangeError> {
    let t = resp.ticker;
    let last = t
        .last
        .ok_or_else(|| malformed("tickers", format!("no last price for {}", t.symbol)))?;
    Ok(Ticker {
        symbol: symbol.clone(),
        last,
        bid: t.bid,
        ask: t.ask,
        mark: t.mark_price,
        time: resp.server_time,
    })
}

/// `10^-p`: Kraken gives sizes as a number of decimals (`contractValueTradePrecision`).
fn step_from_precision(p: i32) -> Option<Decimal> {
    if p >= 0 {
        let scale = u32::try_from(p).ok().filter(|s| *s <= 28)?;
        Some(Decimal::new(1, scale))
    } else {
        let exp = u32::try_from(p.checked_neg()?).ok().filter(|e| *e <= 18)?;
        Some(Decimal::from(10u64.checked_pow(exp)?))
    }
}

pub(super) fn instrument(symbol: &Symbol, w: &WireInstrument) -> Result<Instrument, ExchangeError> {
    let endpoint = "instruments";
    let tick_size = w
        .tick_size
        .filter(|t| *t > Decimal::ZERO)
        .ok_or_else(|| malformed(endpoint, format!("{}: missing or bad tickSize", w.symbol)))?;
    let contract_size = w.contract_size.unwrap_or(Decimal::ONE);
    if contract_size <= Decimal::ZERO {
        return Err(malformed(
            endpoint,
            format!("{}: contractSize {contract_size} is not positive", w.symbol),
        ));
    }
    let step = w
        .contract_value_trade_precision
        .and_then(step_from_precision)
        .ok_or_else(|| {
            malformed(
                endpoint,
                format!("{}: missing or bad contractValueTradePrecision", w.symbol),
            )
        })?;
    let step_size = (step * contract_size).normalize();
    // Leverage is capped by the lowest initial-margin tier: 2% -> 50x. Whole multiples only.
    let min_initial = w
        .margin_levels
        .as_deref()
        .filter(|l| !l.is_empty())
        .or(w.retail_margin_levels.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|l| l.initial_margin)
        .filter(|im| *im > Decimal::ZERO)
        .min();
    let max_leverage = match min_initial {
        Some(im) => (Decimal::ONE / im).floor().max(Decimal::ONE),
        None => Decimal::ONE,
    };
    Ok(Instrument {
        symbol: symbol.clone(),
        venue_symbol: w.symbol.clone(),
        tick_size: tick_size.normalize(),
        step_size,
        min_quantity: step_size,
        min_notional: Decimal::ZERO,
        contract_size,
        max_leverage,
    })
}

/// Candles oldest first, de-duplicated; the one that has not ended at `now` is `closed == false`.
/// With `since`, the first `limit` candles from it; otherwise the latest `limit`.
pub(super) fn candles(
    resp: CandlesResponse,
    timeframe: Timeframe,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    limit: usize,
) -> Result<Vec<Candle>, ExchangeError> {
    let mut rows = resp.candles;
    rows.sort_by_key(|c| c.time);
    rows.dedup_by_key(|c| c.time);
    let mut out = Vec::with_capacity(rows.len());
    for c in rows {
        let open_time = millis_to_time(c.time)
            .ok_or_else(|| malformed("charts", format!("bad candle time {}", c.time)))?;
        if since.is_some_and(|s| open_time < s) {
            continue;
        }
        let candle = Candle {
            open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            closed: false,
        };
        let closed = candle.close_time(timeframe) <= now;
        out.push(Candle { closed, ..candle });
    }
    if since.is_some() {
        out.truncate(limit);
    } else if out.len() > limit {
        out.drain(..out.len() - limit);
    }
    Ok(out)
}

/// Unified bases are spelled differently for Bitcoin only.
fn venue_currency(asset: &str) -> String {
    match asset.to_ascii_uppercase().as_str() {
        "BTC" => "XBT".to_string(),
        other => other.to_string(),
    }
}

/// `USD`: the flex account's margin summary (valued in USD, the settle currency of `PF_*`).
/// Another asset: what the flex wallet holds of it (no PnL at that level); zero when none.
pub(super) fn balance(resp: AccountsResponse, asset: &str) -> Result<Balance, ExchangeError> {
    let endpoint = "accounts";
    let flex = resp
        .accounts
        .flex
        .ok_or_else(|| ExchangeError::Unsupported {
            venue: VENUE,
            message: "the account has no multi-collateral (flex) wallet, which PF_ perpetuals need"
                .into(),
        })?;
    let asset = asset.to_ascii_uppercase();
    if asset == "USD" {
        let equity = flex
            .portfolio_value
            .or(flex.balance_value)
            .ok_or_else(|| malformed(endpoint, "flex account without portfolioValue"))?;
        let available = flex
            .available_margin
            .ok_or_else(|| malformed(endpoint, "flex account without availableMargin"))?;
        return Ok(Balance {
            asset,
            equity,
            available,
            unrealized_pnl: flex.total_unrealized.or(flex.pnl).unwrap_or_default(),
        });
    }
    let wanted = venue_currency(&asset);
    let holding = flex
        .currencies
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&wanted))
        .map(|(_, v)| v);
    Ok(match holding {
        Some(h) => Balance {
            asset,
            equity: h.quantity,
            available: h.available.unwrap_or(h.quantity),
            unrealized_pnl: Decimal::ZERO,
        },
        None => Balance {
            asset,
            equity: Decimal::ZERO,
            available: Decimal::ZERO,
            unrealized_pnl: Decimal::ZERO,
        },
    })
}

/// Open `PF_*` positions (other markets are skipped), optionally of one venue symbol. `marks`
/// (upper-case venue symbol -> mark price) gives mark and unrealized PnL, which `openpositions`
/// does not report.
pub(super) fn positions(
    resp: OpenPositionsResponse,
    only: Option<&str>,
    marks: &HashMap<String, Decimal>,
) -> Result<Vec<Position>, ExchangeError> {
    let mut out = Vec::new();
    for p in resp.open_positions {
        let Some(symbol) = from_venue(&p.symbol) else {
            continue;
        };
        if only.is_some_and(|o| !o.eq_ignore_ascii_case(&p.symbol)) {
            continue;
        }
        let side = match p.side.as_str() {
            "long" => PositionSide::Long,
            "short" => PositionSide::Short,
            other => {
                return Err(malformed(
                    "openpositions",
                    format!("unknown position side {other:?}"),
                ));
            }
        };
        let quantity = p.size.abs();
        if quantity.is_zero() {
            continue;
        }
        let mark = marks.get(&p.symbol.to_ascii_uppercase()).copied();
        let unrealized_pnl = mark
            .map(|m| match side {
                PositionSide::Long => (m - p.price) * quantity,
                PositionSide::Short => (p.price - m) * quantity,
            })
            .unwrap_or_default();
        out.push(Position {
            symbol,
            side,
            quantity,
            entry_price: p.price,
            mark_price: mark,
            unrealized_pnl,
            leverage: p.max_fixed_leverage,
            liquidation_price: None,
        });
    }
    Ok(out)
}

/// A `sendorder` answer: `result: success` alone proves nothing, `sendStatus.status` decides.
pub(super) fn sent_order(
    request: &OrderRequest,
    resp: SendOrderResponse,
    contract_size: Decimal,
) -> Result<Order, ExchangeError> {
    let s = resp.send_status;
    let accepted_status = match s.status.as_str() {
        "placed" | "attempted" | "edited" => None,
        "partiallyFilled" => Some(OrderStatus::PartiallyFilled),
        "filled" => Some(OrderStatus::Filled),
        "cancelled" => Some(OrderStatus::Canceled),
        rejected => {
            let reason = s
                .order_events
                .iter()
                .find_map(|e| e.reason.as_deref())
                .unwrap_or_default();
            let context = if reason.is_empty() {
                format!("sendorder {}", request.client_order_id)
            } else {
                format!("sendorder {}: {reason}", request.client_order_id)
            };
            return Err(map_code(rejected, &context, RequestKind::Write));
        }
    };
    let exchange_order_id = s.order_id.ok_or_else(|| ExchangeError::OutcomeUnknown {
        venue: VENUE,
        message: format!(
            "sendorder answered {:?} without an order id for {}",
            s.status, request.client_order_id
        ),
    })?;
    let (mut filled, mut value) = (Decimal::ZERO, Decimal::ZERO);
    for e in s.order_events.iter().filter(|e| e.kind == "EXECUTION") {
        if let (Some(price), Some(amount)) = (e.price, e.amount) {
            filled += amount;
            value += price * amount;
        }
    }
    let average_price = (filled > Decimal::ZERO).then(|| (value / filled).normalize());
    let filled_quantity = (filled * contract_size).normalize();
    let status = accepted_status.unwrap_or_else(|| fill_status(filled_quantity, request.quantity));
    Ok(Order {
        symbol: request.symbol.clone(),
        client_order_id: Some(request.client_order_id.clone()),
        exchange_order_id,
        side: request.side,
        order_type: request.order_type,
        status,
        quantity: request.quantity,
        price: match request.order_type {
            OrderType::Limit => request.price,
            _ => None,
        },
        trigger_price: if request.order_type.is_conditional() {
            request.trigger_price
        } else {
            None
        },
        reduce_only: request.reduce_only,
        filled_quantity,
        average_price,
        fee: None,
        created_at: s.received_time,
        updated_at: s.received_time,
    })
}

/// One `openorders` entry; `None` for markets other than `PF_*` perpetuals.
pub(super) fn open_order(w: WireOpenOrder) -> Result<Option<Order>, ExchangeError> {
    let endpoint = "openorders";
    let Some(symbol) = from_venue(&w.symbol) else {
        return Ok(None);
    };
    let order_type = match w.order_type.as_str() {
        "lmt" | "post" => OrderType::Limit,
        "mkt" | "ioc" => OrderType::Market,
        "stp" | "stop" => OrderType::StopMarket,
        "take_profit" => OrderType::TakeProfitMarket,
        other => return Err(malformed(endpoint, format!("unknown order type {other:?}"))),
    };
    let status = match w.status.as_str() {
        "untouched" => OrderStatus::Open,
        "partiallyFilled" => OrderStatus::PartiallyFilled,
        other => {
            return Err(malformed(
                endpoint,
                format!("unknown order status {other:?}"),
            ));
        }
    };
    let quantity = w.filled_size + w.unfilled_size.unwrap_or_default();
    Ok(Some(Order {
        symbol,
        client_order_id: client_id(w.cli_ord_id.as_deref()),
        exchange_order_id: w.order_id,
        side: side(endpoint, &w.side)?,
        order_type,
        status,
        quantity,
        price: w.limit_price,
        trigger_price: w.stop_price,
        reduce_only: w.reduce_only,
        filled_quantity: w.filled_size,
        average_price: None,
        fee: None,
        created_at: w.received_time,
        updated_at: w.last_update_time,
    }))
}

/// The domain order type of an `orders/status` entry. Trigger orders do not say whether they are
/// a stop or a take-profit; the trigger direction does: a sell triggered below the market (or a
/// buy above it) is a stop, the other way round a take-profit.
fn status_order_type(o: &WireCachedOrder, side: Side) -> Result<OrderType, ExchangeError> {
    match o.kind.as_str() {
        "ORDER" => Ok(if o.limit_price.is_some() {
            OrderType::Limit
        } else {
            OrderType::Market
        }),
        "TRIGGER_ORDER" => {
            let trigger_side = o
                .price_trigger_options
                .as_ref()
                .and_then(|t| t.trigger_side.as_deref())
                .ok_or_else(|| malformed("orders/status", "trigger order without triggerSide"))?;
            match (trigger_side, side) {
                ("TRIGGER_BELOW", Side::Sell) | ("TRIGGER_ABOVE", Side::Buy) => {
                    Ok(OrderType::StopMarket)
                }
                ("TRIGGER_ABOVE", Side::Sell) | ("TRIGGER_BELOW", Side::Buy) => {
                    Ok(OrderType::TakeProfitMarket)
                }
                (other, _) => Err(malformed(
                    "orders/status",
                    format!("unknown triggerSide {other:?}"),
                )),
            }
        }
        other => Err(malformed(
            "orders/status",
            format!("unknown order kind {other:?}"),
        )),
    }
}

/// One `orders/status` entry.
pub(super) fn status_order(w: WireOrderStatus) -> Result<Order, ExchangeError> {
    let endpoint = "orders/status";
    let o = w.order;
    let symbol = from_venue(&o.symbol)
        .ok_or_else(|| malformed(endpoint, format!("not a PF_ perpetual: {}", o.symbol)))?;
    let side = side(endpoint, &o.side)?;
    let order_type = status_order_type(&o, side)?;
    let quantity = o
        .quantity
        .ok_or_else(|| malformed(endpoint, format!("order {} without quantity", o.order_id)))?;
    let filled = o.filled.unwrap_or_default();
    let status = match w.status.as_str() {
        "ENTERED_BOOK" => fill_status(filled, quantity),
        "FULLY_EXECUTED" => OrderStatus::Filled,
        "REJECTED" | "TRIGGER_ACTIVATION_FAILURE" => OrderStatus::Rejected,
        "CANCELLED" => OrderStatus::Canceled,
        "TRIGGER_PLACED" => OrderStatus::Open,
        other => {
            return Err(malformed(
                endpoint,
                format!("unknown order status {other:?}"),
            ));
        }
    };
    Ok(Order {
        symbol,
        client_order_id: client_id(o.cli_ord_id.as_deref()),
        exchange_order_id: o.order_id,
        side,
        order_type,
        status,
        quantity,
        price: o.limit_price,
        trigger_price: o.price_trigger_options.map(|t| t.trigger_price),
        reduce_only: o.reduce_only,
        filled_quantity: filled,
        average_price: None,
        fee: None,
        created_at: o.timestamp,
        updated_at: o.last_update_timestamp,
    })
}

fn history_order(o: WireHistoricalOrder, status: OrderStatus) -> Result<Order, ExchangeError> {
    let endpoint = "history/orders";
    let symbol = from_venue(&o.tradeable)
        .ok_or_else(|| malformed(endpoint, format!("not a PF_ perpetual: {}", o.tradeable)))?;
    let order_type = match o.order_type.as_str() {
        "Limit" | "Post" => OrderType::Limit,
        // `mkt` orders are immediate-or-cancel with price protection on Kraken.
        "Market" | "IoC" | "Liquidation" | "Assignment" | "Unwind" => OrderType::Market,
        other => return Err(malformed(endpoint, format!("unknown order type {other:?}"))),
    };
    Ok(Order {
        symbol,
        client_order_id: client_id(o.client_id.as_deref()),
        exchange_order_id: o.uid,
        side: side(endpoint, &o.direction)?,
        order_type,
        status,
        quantity: o.quantity,
        price: o.limit_price.filter(|_| order_type == OrderType::Limit),
        trigger_price: None,
        reduce_only: o.reduce_only,
        filled_quantity: o.filled,
        average_price: None,
        fee: None,
        created_at: millis_to_time(o.timestamp),
        updated_at: o.last_update_timestamp.and_then(millis_to_time),
    })
}

/// The latest state of the order with client id `cli` in one history page, if it is there.
pub(super) fn history_lookup(
    resp: HistoryOrdersResponse,
    cli: &str,
) -> Result<Option<Order>, ExchangeError> {
    let mut best: Option<(i64, WireHistoricalOrder, OrderStatus)> = None;
    for el in resp.elements {
        let ev = el.event;
        let (order, status) = if let Some(p) = ev.placed {
            let s = fill_status(p.order.filled, p.order.quantity);
            (p.order, s)
        } else if let Some(u) = ev.updated {
            let s = fill_status(u.new_order.filled, u.new_order.quantity);
            (u.new_order, s)
        } else if let Some(c) = ev.cancelled {
            (c.order, OrderStatus::Canceled)
        } else if let Some(r) = ev.rejected {
            (r.order, OrderStatus::Rejected)
        } else {
            continue;
        };
        if order.client_id.as_deref() != Some(cli) {
            continue;
        }
        let newer = best.as_ref().is_none_or(|(t, _, _)| el.timestamp >= *t);
        if newer {
            best = Some((el.timestamp, order, status));
        }
    }
    best.map(|(_, o, s)| history_order(o, s)).transpose()
}

fn trigger_history_order(
    o: WireHistoricalTrigger,
    status: OrderStatus,
) -> Result<Order, ExchangeError> {
    let endpoint = "history/triggers";
    let symbol = from_venue(&o.tradeable)
        .ok_or_else(|| malformed(endpoint, format!("not a PF_ perpetual: {}", o.tradeable)))?;
    let side = side(endpoint, &o.direction)?;
    // As for orders/status: the trigger direction tells a stop from a take-profit.
    let order_type = match (o.trigger_options.trigger_side.as_str(), side) {
        ("Below", Side::Sell) | ("Above", Side::Buy) => OrderType::StopMarket,
        ("Above", Side::Sell) | ("Below", Side::Buy) => OrderType::TakeProfitMarket,
        (other, _) => {
            return Err(malformed(
                endpoint,
                format!("unknown triggerSide {other:?}"),
            ));
        }
    };
    Ok(Order {
        symbol,
        client_order_id: client_id(o.client_id.as_deref()),
        exchange_order_id: o.uid,
        side,
        order_type,
        status,
        quantity: o.quantity,
        price: o.limit_price,
        trigger_price: Some(o.trigger_options.trigger_price),
        reduce_only: o.reduce_only,
        filled_quantity: Decimal::ZERO,
        average_price: None,
        fee: None,
        created_at: millis_to_time(o.timestamp),
        updated_at: o.last_update_timestamp.and_then(millis_to_time),
    })
}

/// The latest state of the trigger (stop / take-profit) order with client id `cli` in one page.
/// An activated trigger is `Triggered`: the market order it became is tracked by the venue.
pub(super) fn trigger_history_lookup(
    resp: HistoryTriggersResponse,
    cli: &str,
) -> Result<Option<Order>, ExchangeError> {
    let mut best: Option<(i64, WireHistoricalTrigger, OrderStatus)> = None;
    for el in resp.elements {
        let ev = el.event;
        let (order, status) = if let Some(p) = ev.placed {
            (p.order, OrderStatus::Open)
        } else if let Some(u) = ev.updated {
            (u.new_order_trigger, OrderStatus::Open)
        } else if let Some(c) = ev.cancelled {
            (c.order, OrderStatus::Canceled)
        } else if let Some(a) = ev.activated {
            (a.order, OrderStatus::Triggered)
        } else {
            continue;
        };
        if order.client_id.as_deref() != Some(cli) {
            continue;
        }
        if best.as_ref().is_none_or(|(t, _, _)| el.timestamp >= *t) {
            best = Some((el.timestamp, order, status));
        }
    }
    best.map(|(_, o, s)| trigger_history_order(o, s))
        .transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::wire::{
        Ack, CancelAllResponse, CancelOrderResponse, InstrumentsResponse, OpenOrdersResponse,
        OrderStatusResponse, TickersResponse,
    };
    use super::*;
    use proptest::prelude::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;
    use rust_decimal_macros::dec;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../tests/fixtures/kraken/", $name))
        };
    }

    fn raw(body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: body.to_string(),
        }
    }

    fn btc() -> Symbol {
        "BTC/USD:USD".parse().unwrap()
    }

    fn request(order_type: OrderType) -> OrderRequest {
        OrderRequest {
            symbol: btc(),
            client_order_id: ClientOrderId::new("tf1").unwrap(),
            side: Side::Buy,
            order_type,
            quantity: dec!(10),
            price: Some(dec!(7500)),
            trigger_price: None,
            reduce_only: false,
        }
    }

    /// Every body through the decoder and the domain parser of its endpoint.
    fn parse_any(name: &str, body: &str) -> Result<(), ExchangeError> {
        let r = raw(body);
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let read = RequestKind::Read;
        match name {
            "ticker" => ticker(&btc(), decode::<TickerResponse>("t", &r, read)?).map(|_| ()),
            "tickers" => decode::<TickersResponse>("t", &r, read).map(|_| ()),
            "instruments" => {
                let all = decode::<InstrumentsResponse>("i", &r, read)?;
                for w in &all.instruments {
                    if from_venue(&w.symbol).is_some() {
                        instrument(&btc(), w)?;
                    }
                }
                Ok(())
            }
            "klines" => candles(
                decode::<CandlesResponse>("c", &r, read)?,
                Timeframe::M15,
                now,
                None,
                10,
            )
            .map(|_| ()),
            "balance" => balance(decode::<AccountsResponse>("a", &r, read)?, "USD").map(|_| ()),
            "positions" => positions(
                decode::<OpenPositionsResponse>("p", &r, read)?,
                None,
                &HashMap::new(),
            )
            .map(|_| ()),
            "place" => sent_order(
                &request(OrderType::Limit),
                decode::<SendOrderResponse>("s", &r, RequestKind::Write)?,
                Decimal::ONE,
            )
            .map(|_| ()),
            "cancel" => decode::<CancelOrderResponse>("c", &r, RequestKind::Write).map(|_| ()),
            "cancel_all" => decode::<CancelAllResponse>("c", &r, RequestKind::Write).map(|_| ()),
            "open_orders" => {
                for o in decode::<OpenOrdersResponse>("o", &r, read)?.open_orders {
                    open_order(o)?;
                }
                Ok(())
            }
            "status" => {
                for o in decode::<OrderStatusResponse>("s", &r, read)?.orders {
                    status_order(o)?;
                }
                Ok(())
            }
            "history" => history_lookup(
                decode::<HistoryOrdersResponse>("h", &r, read)?,
                "tf0042entry",
            )
            .map(|_| ()),
            "triggers" => trigger_history_lookup(
                decode::<HistoryTriggersResponse>("h", &r, read)?,
                "tf0042stop",
            )
            .map(|_| ()),
            "ack" => decode::<Ack>("l", &r, RequestKind::Write).map(|_| ()),
            other => panic!("no parser for {other}"),
        }
    }

    const FIXTURES: &[(&str, &str)] = &[
        ("ticker", fixture!("ticker.json")),
        ("tickers", fixture!("tickers.json")),
        ("instruments", fixture!("instruments.json")),
        ("klines", fixture!("klines.json")),
        ("balance", fixture!("balance.json")),
        ("positions", fixture!("positions.json")),
        ("place", fixture!("place_order.json")),
        ("place", fixture!("place_order_executed.json")),
        ("cancel", fixture!("cancel_order.json")),
        ("cancel_all", fixture!("cancel_all_orders.json")),
        ("open_orders", fixture!("open_orders.json")),
        ("status", fixture!("orders_status.json")),
        ("status", fixture!("orders_status_trigger.json")),
        ("history", fixture!("history_orders.json")),
        ("triggers", fixture!("history_triggers.json")),
        ("ack", fixture!("success.json")),
    ];

    #[test]
    fn every_fixture_parses() {
        for (name, body) in FIXTURES {
            // PI_/FI_ markets in the official examples are skipped, not errors.
            parse_any(name, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn every_truncation_of_every_fixture_is_an_error() {
        for (name, body) in FIXTURES {
            let body = body.trim_end();
            let mut cut = body.len();
            while cut > 0 {
                cut -= 1;
                if !body.is_char_boundary(cut) {
                    continue;
                }
                assert!(
                    parse_any(name, &body[..cut]).is_err(),
                    "{name} cut at {cut} parsed"
                );
            }
        }
    }

    #[test]
    fn rejections_inside_success_envelopes_are_typed() {
        let read = |b: &str| {
            sent_order(
                &request(OrderType::Limit),
                decode::<SendOrderResponse>("sendorder", &raw(b), RequestKind::Write).unwrap(),
                Decimal::ONE,
            )
            .unwrap_err()
            .kind()
        };
        assert_eq!(
            read(fixture!("place_order_rejected_ioc.json")),
            "invalid_order"
        );
        assert_eq!(
            read(fixture!("place_order_insufficient_funds.json")),
            "insufficient_margin"
        );
        assert_eq!(
            read(fixture!("place_order_duplicate_cliordid.json")),
            "duplicate_client_order_id"
        );
    }

    #[test]
    fn executed_order_reports_its_fill() {
        let o = sent_order(
            &request(OrderType::Limit),
            decode::<SendOrderResponse>(
                "s",
                &raw(fixture!("place_order_executed.json")),
                RequestKind::Write,
            )
            .unwrap(),
            Decimal::ONE,
        )
        .unwrap();
        assert_eq!(o.exchange_order_id, "61ca5732-3478-42fe-8362-abbfd9465294");
        assert_eq!(o.filled_quantity, dec!(10));
        assert_eq!(o.average_price, Some(dec!(7244.5)));
        assert_eq!(o.status, OrderStatus::Filled);
    }

    #[test]
    fn instrument_rules_from_the_pf_xbtusd_element() {
        let w: WireInstrument =
            serde_json::from_str(fixture!("instrument_pf_xbtusd_element.json")).unwrap();
        let i = instrument(&btc(), &w).unwrap();
        assert_eq!(i.tick_size, dec!(1));
        assert_eq!(i.step_size, dec!(0.0001));
        assert_eq!(i.min_quantity, dec!(0.0001));
        assert_eq!(i.contract_size, dec!(1));
        assert_eq!(i.max_leverage, dec!(50));
        assert_eq!(step_from_precision(-1), Some(dec!(10)));
        assert_eq!(step_from_precision(40), None);
    }

    #[test]
    fn history_keeps_the_latest_event() {
        let h: HistoryOrdersResponse =
            serde_json::from_str(fixture!("history_orders.json")).unwrap();
        let o = history_lookup(h, "tf0042entry").unwrap().unwrap();
        assert_eq!(o.status, OrderStatus::Filled);
        assert_eq!(o.filled_quantity, dec!(0.004));
        let h: HistoryOrdersResponse =
            serde_json::from_str(fixture!("history_orders.json")).unwrap();
        let o = history_lookup(h, "tf0041exit").unwrap().unwrap();
        assert_eq!((o.status, o.side), (OrderStatus::Canceled, Side::Sell));
        assert_eq!(o.symbol.to_string(), "ETH/USD:USD");
        let h: HistoryOrdersResponse =
            serde_json::from_str(fixture!("history_orders.json")).unwrap();
        assert!(history_lookup(h, "nope").unwrap().is_none());
    }

    #[test]
    fn trigger_history_reports_activation() {
        let h: HistoryTriggersResponse =
            serde_json::from_str(fixture!("history_triggers.json")).unwrap();
        let o = trigger_history_lookup(h, "tf0042stop").unwrap().unwrap();
        assert_eq!(
            (o.status, o.order_type),
            (OrderStatus::Triggered, OrderType::StopMarket)
        );
        assert_eq!((o.trigger_price, o.price), (Some(dec!(59000)), None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Random byte edits of any fixture: an error or a value, never a panic.
        #[test]
        fn mutated_fixtures_never_panic(
            which in 0..FIXTURES.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let (name, body) = FIXTURES[which];
            let mut bytes = body.as_bytes().to_vec();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_any(name, &text);
        }
    }
}
