//! Bybit V5 USDT-perpetual (`category=linear`) adapter: the registry descriptor and the
//! `impl Exchange` over the endpoint client. Layers: `client` (signed HTTP, one method per
//! endpoint) -> `wire` (serde models) -> `parse` (domain types) -> this file; `errors` maps
//! retCodes, `signing` computes `X-BAPI-SIGN`.

mod client;
mod errors;
mod parse;
mod signing;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, OrderStatus, OrderType,
    Position, Side, Symbol, Ticker, Timeframe,
};
use crate::exchange::http::VenueHttp;
use crate::exchange::precision::{Round, checked_quantity, round_price, round_quantity};
use crate::exchange::registry::VenueDescriptor;
use crate::exchange::{AccountCheck, Exchange, ExchangeError, ExchangeResult, VenueParams};

use client::{BybitClient, CATEGORY, IP_LIMIT};
use wire::{CancelAllBody, CancelOrderBody, CreateOrderBody, SetLeverageBody};

pub(crate) const VENUE: &str = "bybit";

const MAINNET_URL: &str = "https://api.bybit.com";
const TESTNET_URL: &str = "https://api-testnet.bybit.com";

/// Most klines one request returns.
const MAX_KLINES: u32 = 1000;
/// Pages of a cursor-paginated list read before giving up (50 orders / 200 positions a page).
const MAX_PAGES: usize = 20;
/// `cancel-all` cancels at most 500 orders per call (chosen at random when there are more).
const CANCEL_ALL_BATCH: usize = 500;
const CANCEL_ALL_ROUNDS: usize = 5;
/// How long instrument rules are reused before being fetched again.
const INSTRUMENT_TTL_SECS: i64 = 3_600;

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "bybit",
    display_name: "Bybit V5 linear",
    has_testnet: true,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "USDT perpetuals (category=linear) on a UNIFIED account, one-way mode (positionIdx 0). \
            Testnet = api-testnet.bybit.com; for mainnet demo trading set base_url to \
            https://api-demo.bybit.com. Stops/take-profits are conditional market orders \
            (triggerBy LastPrice). positions(None) lists USDT-settled perpetuals. No 8h klines. Balance 'available' is estimated from coin \
            equity minus position/order margin (Bybit no longer reports it per coin).",
    build,
};

/// The `base_url` override, else the testnet or the production host.
fn base_url(params: &VenueParams) -> &str {
    match &params.base_url {
        Some(url) => url.as_str(),
        None if params.testnet => TESTNET_URL,
        None => MAINNET_URL,
    }
}

fn build(params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    let http = VenueHttp::new(VENUE, base_url(params), IP_LIMIT, params.http.clone())?;
    Ok(Arc::new(Bybit {
        client: BybitClient::new(http, params.credentials.clone(), params.clock.clone()),
        instruments: Mutex::new(HashMap::new()),
    }))
}

/// The Bybit adapter. Its `Debug` shows no secrets (credentials redact themselves).
#[derive(Debug)]
struct Bybit {
    client: BybitClient,
    instruments: Mutex<HashMap<String, (Instrument, DateTime<Utc>)>>,
}

fn fmt_decimal(d: Decimal) -> String {
    d.normalize().to_string()
}

fn invalid(message: String) -> ExchangeError {
    ExchangeError::InvalidOrder {
        venue: VENUE,
        message,
    }
}

impl Bybit {
    /// Instrument rules, cached for an hour (place_order checks every order against them).
    async fn rules(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        let key = parse::venue_symbol(symbol)?;
        let now = self.client.now();
        if let Some((inst, at)) = self
            .instruments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && now - *at < Duration::seconds(INSTRUMENT_TTL_SECS)
        {
            return Ok(inst.clone());
        }
        let inst = self.instrument(symbol).await?;
        self.instruments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (inst.clone(), now));
        Ok(inst)
    }

    /// The order as Bybit must receive it, or why it cannot be sent unchanged.
    fn create_body<'a>(
        request: &'a OrderRequest,
        venue_symbol: &'a str,
        inst: &Instrument,
    ) -> ExchangeResult<CreateOrderBody<'a>> {
        let qty = request.quantity;
        if qty <= Decimal::ZERO {
            return Err(invalid(format!("quantity must be positive, got {qty}")));
        }
        if round_quantity(qty, inst) != qty {
            return Err(invalid(format!(
                "quantity {qty} is not a multiple of the qtyStep {}",
                inst.step_size
            )));
        }
        let on_tick = |what: &str, p: Decimal| -> ExchangeResult<String> {
            if p <= Decimal::ZERO {
                return Err(invalid(format!("{what} must be positive, got {p}")));
            }
            if round_price(p, inst, Round::Nearest) != p {
                return Err(invalid(format!(
                    "{what} {p} is not on the tickSize {}",
                    inst.tick_size
                )));
            }
            Ok(fmt_decimal(p))
        };
        let (order_type, price, time_in_force, trigger_price) = match request.order_type {
            OrderType::Market => ("Market", None, None, None),
            OrderType::Limit => {
                let p = request
                    .price
                    .ok_or_else(|| invalid("a limit order needs a price".into()))?;
                ("Limit", Some(on_tick("price", p)?), Some("GTC"), None)
            }
            OrderType::StopMarket | OrderType::TakeProfitMarket => {
                let t = request.trigger_price.ok_or_else(|| {
                    invalid(format!(
                        "a {} order needs a trigger price",
                        request.order_type.as_str()
                    ))
                })?;
                ("Market", None, None, Some(on_tick("trigger price", t)?))
            }
        };
        // Reduce-only orders may close less than the minimum notional; others are checked.
        let reference_price = match request.order_type {
            OrderType::Limit => request.price,
            OrderType::StopMarket | OrderType::TakeProfitMarket => request.trigger_price,
            OrderType::Market => None,
        }
        .filter(|_| !request.reduce_only);
        checked_quantity(VENUE, inst, qty, reference_price)?;
        let conditional = request.order_type.is_conditional();
        Ok(CreateOrderBody {
            category: CATEGORY,
            symbol: venue_symbol,
            side: match request.side {
                Side::Buy => "Buy",
                Side::Sell => "Sell",
            },
            order_type,
            qty: fmt_decimal(qty),
            price,
            time_in_force,
            trigger_price,
            trigger_direction: parse::trigger_direction(request.side, request.order_type),
            trigger_by: conditional.then_some("LastPrice"),
            position_idx: 0,
            order_link_id: request.client_order_id.as_str(),
            reduce_only: request.reduce_only,
            close_on_trigger: (conditional && request.reduce_only).then_some(true),
        })
    }
}

#[async_trait]
impl Exchange for Bybit {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        self.client.market_time().await
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        let interval = parse::interval(timeframe)?;
        let limit = limit.clamp(1, MAX_KLINES);
        // With a start, bound the window too, so the earliest `limit` candles come back.
        let start = since.map(|t| t.timestamp_millis());
        let end = start.map(|s| s + i64::from(limit) * timeframe.millis() - 1);
        let result = self
            .client
            .market_kline(&venue_symbol, interval, start, end, limit)
            .await?;
        parse::klines(result, timeframe, self.client.now())
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        let (result, time) = self.client.market_tickers(&venue_symbol).await?;
        let time = time
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(|| self.client.now());
        parse::ticker(&result.list, symbol, &venue_symbol, time)
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        let result = self.client.market_instruments_info(&venue_symbol).await?;
        parse::instrument(&result.list, symbol, &venue_symbol)
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        let result = self.client.account_wallet_balance(asset).await?;
        parse::balance(result, asset)
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        let venue_symbol = symbol.map(parse::venue_symbol).transpose()?;
        let settle = symbol.map_or("USDT", |s| s.settle());
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .position_list(venue_symbol.as_deref(), settle, cursor.as_deref())
                .await?;
            rows.extend(page.list);
            match page.next_page_cursor.filter(|c| !c.is_empty()) {
                Some(c) if venue_symbol.is_none() => cursor = Some(c),
                _ => return parse::positions(rows, symbol, settle),
            }
        }
        Err(ExchangeError::malformed(
            VENUE,
            "/v5/position/list",
            format!("more than {MAX_PAGES} pages of positions"),
        ))
    }

    async fn set_leverage(&self, symbol: &Symbol, leverage: u32) -> ExchangeResult<()> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        if leverage == 0 {
            return Err(invalid("leverage must be at least 1".into()));
        }
        let body = SetLeverageBody {
            category: CATEGORY,
            symbol: &venue_symbol,
            buy_leverage: leverage.to_string(),
            sell_leverage: leverage.to_string(),
        };
        match self.client.position_set_leverage(&body).await {
            Ok(()) => Ok(()),
            // "Set leverage has not been modified": it already is at that leverage.
            Err(ExchangeError::Venue { code, .. })
                if code == errors::LEVERAGE_NOT_MODIFIED.to_string() =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        let venue_symbol = parse::venue_symbol(&request.symbol)?;
        let inst = self.rules(&request.symbol).await?;
        let body = Self::create_body(request, &venue_symbol, &inst)?;
        let (ack, time) = self.client.order_create(&body).await?;
        if !ack.order_link_id.is_empty() && ack.order_link_id != request.client_order_id.as_str() {
            tracing::warn!(
                venue = VENUE,
                sent = %request.client_order_id,
                acknowledged = %ack.order_link_id,
                "order acknowledged under another orderLinkId"
            );
        }
        let created = time.and_then(DateTime::from_timestamp_millis);
        Ok(Order {
            symbol: request.symbol.clone(),
            client_order_id: Some(request.client_order_id.clone()),
            exchange_order_id: ack.order_id,
            side: request.side,
            order_type: request.order_type,
            // Bybit only acknowledges here; the state is learnt by querying the order.
            status: OrderStatus::Open,
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
            filled_quantity: Decimal::ZERO,
            average_price: None,
            fee: None,
            created_at: created,
            updated_at: created,
        })
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        let body = CancelOrderBody {
            category: CATEGORY,
            symbol: &venue_symbol,
            order_link_id: client_order_id.as_str(),
        };
        self.client.order_cancel(&body).await.map(|_| ())
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        let body = CancelAllBody {
            category: CATEGORY,
            symbol: &venue_symbol,
        };
        let mut total = 0u32;
        for _ in 0..CANCEL_ALL_ROUNDS {
            let n = self.client.order_cancel_all(&body).await?.list.len();
            total = total.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            // A full batch means there may be more left: Bybit cancels at most 500 per call.
            if n < CANCEL_ALL_BATCH {
                return Ok(total);
            }
        }
        Ok(total)
    }

    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        let endpoint = "/v5/order/realtime";
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .order_realtime(&venue_symbol, None, cursor.as_deref())
                .await?;
            for row in &page.list {
                if row.symbol == venue_symbol {
                    out.push(parse::order(row, symbol, endpoint)?);
                }
            }
            match page.next_page_cursor.filter(|c| !c.is_empty()) {
                Some(c) if !page.list.is_empty() => cursor = Some(c),
                _ => return Ok(out),
            }
        }
        Err(ExchangeError::malformed(
            VENUE,
            endpoint,
            format!("more than {MAX_PAGES} pages of open orders"),
        ))
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        let venue_symbol = parse::venue_symbol(symbol)?;
        let id = client_order_id.as_str();
        let find = |list: &[wire::OrderRow], endpoint: &str| -> ExchangeResult<Option<Order>> {
            list.iter()
                .find(|r| r.order_link_id == id && r.symbol == venue_symbol)
                .map(|r| parse::order(r, symbol, endpoint))
                .transpose()
        };
        let realtime = self
            .client
            .order_realtime(&venue_symbol, Some(id), None)
            .await?;
        if let Some(order) = find(&realtime.list, "/v5/order/realtime")? {
            return Ok(Some(order));
        }
        let history = self.client.order_history(&venue_symbol, id).await?;
        find(&history.list, "/v5/order/history")
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        let server = self.client.market_time().await?;
        let skew_ms = (server - self.client.local_now()).num_milliseconds();
        let mut check = if self.client.has_credentials() {
            parse::account_check(&self.client.user_query_api().await?)
        } else {
            AccountCheck {
                notes: vec!["no credentials: only public market data was checked".into()],
                ..AccountCheck::default()
            }
        };
        if skew_ms.abs() > 1_000 {
            check.notes.push(format!(
                "local clock differs from Bybit's by {skew_ms} ms; signed requests resync it"
            ));
        }
        Ok(check)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_url_follows_override_then_testnet_flag() {
        let mut p = VenueParams::default();
        assert_eq!(base_url(&p), "https://api.bybit.com");
        p.testnet = true;
        assert_eq!(base_url(&p), "https://api-testnet.bybit.com");
        p.base_url = Some("https://api-demo.bybit.com".into());
        assert_eq!(base_url(&p), "https://api-demo.bybit.com");
    }

    #[test]
    fn a_bad_base_url_is_a_config_error() {
        let p = VenueParams {
            base_url: Some("not a url".into()),
            ..VenueParams::default()
        };
        assert_eq!(build(&p).unwrap_err().kind(), "config");
    }
}
