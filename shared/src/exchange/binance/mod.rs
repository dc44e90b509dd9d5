//! Binance USDⓈ-M futures adapter: builds the venue from `VenueParams` and implements `Exchange`
//! over the raw client (`client.rs`), wire models (`wire.rs`) and parsers (`parse.rs`).
//!
//! Conditional orders (stop-market, take-profit-market) go through the Algo Service
//! (`/fapi/v1/algoOrder`), because `/fapi/v1/order` rejects them since 2025-12 (-4120).

mod client;
mod errors;
mod parse;
mod signing;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use self::client::{BinanceClient, WEIGHT_PER_MINUTE};
use self::parse::{Rules, side_str, venue_symbol};
use super::http::{RateLimit, VenueHttp};
use super::precision::{Round, round_to_increment};
use super::registry::{VenueDescriptor, VenueParams};
use super::{AccountCheck, Exchange, ExchangeError, ExchangeResult};
use crate::clock::Clock;
use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, OrderType, Position, Symbol,
    Ticker, Timeframe,
};

pub(crate) const VENUE: &str = "binance";
const MAINNET_URL: &str = "https://fapi.binance.com";
const TESTNET_URL: &str = "https://testnet.binancefuture.com";
/// Without credentials the leverage brackets (a signed endpoint) cannot be read; this
/// conservative figure is reported instead.
const DEFAULT_MAX_LEVERAGE: u32 = 20;
/// Trading rules change rarely; refresh them at most this often.
const RULES_TTL: Duration = Duration::from_secs(3600);
/// The largest page `/fapi/v1/klines` serves.
const MAX_KLINES: u32 = 1500;

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "binance",
    display_name: "Binance USDⓈ-M",
    has_testnet: true,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "USDⓈ-M perpetuals, one-way mode, quantities in base coin. HMAC keys only. \
            Stop/take-profit orders use the Algo Order API (trigger on mark price). \
            Testnet: testnet.binancefuture.com. Max leverage from leverage brackets with \
            credentials, else 20. Ticker gives last price only (no bid/ask/mark).",
    build,
};

/// The override when given, else the testnet or production host.
fn base_url(params: &VenueParams) -> &str {
    match (&params.base_url, params.testnet) {
        (Some(url), _) => url.as_str(),
        (None, true) => TESTNET_URL,
        (None, false) => MAINNET_URL,
    }
}

fn build(params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    let http = VenueHttp::new(
        VENUE,
        base_url(params),
        RateLimit {
            capacity: WEIGHT_PER_MINUTE,
            per: Duration::from_secs(60),
        },
        params.http.clone(),
    )?;
    Ok(Arc::new(Binance {
        client: BinanceClient::new(http, params.credentials.clone(), params.clock.clone()),
        clock: params.clock.clone(),
        rules: Mutex::new(HashMap::new()),
    }))
}

/// One Binance USDⓈ-M account (or the public API only, without credentials).
#[derive(Debug)]
struct Binance {
    client: BinanceClient,
    clock: Arc<dyn Clock>,
    /// Venue symbol -> (fetched at, rules).
    rules: Mutex<HashMap<String, (Instant, Rules)>>,
}

fn invalid(message: String) -> ExchangeError {
    ExchangeError::InvalidOrder {
        venue: VENUE,
        message,
    }
}

/// Decimal text as the venue wants it: no exponent, no trailing zeros.
fn num(d: Decimal) -> String {
    d.normalize().to_string()
}

/// `value` must already sit on the `increment` grid: rounding here only checks, never resizes.
fn on_grid(
    what: &str,
    value: Decimal,
    increment: Decimal,
    round: Round,
) -> ExchangeResult<Decimal> {
    let rounded = round_to_increment(value, increment, round);
    if rounded != value {
        return Err(invalid(format!(
            "{what} {value} is not a multiple of {increment} (nearest allowed: {rounded})"
        )));
    }
    Ok(rounded)
}

/// The limit price of `request`, on the tick grid and (unless reduce-only, which Binance exempts)
/// above the minimum notional.
fn limit_price(
    request: &OrderRequest,
    inst: &Instrument,
    quantity: Decimal,
) -> ExchangeResult<Decimal> {
    let price = request
        .price
        .filter(|p| *p > Decimal::ZERO)
        .ok_or_else(|| invalid("a limit order needs a positive price".into()))?;
    let price = on_grid("price", price, inst.tick_size, Round::Nearest)?;
    if inst.min_notional > Decimal::ZERO
        && !request.reduce_only
        && quantity * price < inst.min_notional
    {
        return Err(ExchangeError::BelowMinimum {
            venue: VENUE,
            what: "notional",
            value: num(quantity * price),
            minimum: num(inst.min_notional),
        });
    }
    Ok(price)
}

/// Type, quantity and trigger of an Algo Service conditional order. Triggers on the mark price,
/// so a single traded wick does not fire a stop.
fn conditional(
    venue_type: &'static str,
    request: &OrderRequest,
    inst: &Instrument,
    quantity: Decimal,
) -> ExchangeResult<[(&'static str, String); 4]> {
    let trigger = request
        .trigger_price
        .filter(|p| *p > Decimal::ZERO)
        .ok_or_else(|| {
            invalid("a stop or take-profit order needs a positive trigger price".into())
        })?;
    let trigger = on_grid("trigger price", trigger, inst.tick_size, Round::Nearest)?;
    Ok([
        ("type", venue_type.into()),
        ("quantity", num(quantity)),
        ("triggerPrice", num(trigger)),
        ("workingType", "MARK_PRICE".into()),
    ])
}

impl Binance {
    fn cached_rules(&self, venue_symbol: &str) -> Option<Rules> {
        let map = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        map.get(venue_symbol)
            .filter(|(at, _)| at.elapsed() < RULES_TTL)
            .map(|(_, r)| r.clone())
    }

    /// Trading rules of `symbol`, from the cache or exchangeInfo (+ leverage brackets).
    async fn rules(&self, symbol: &Symbol) -> ExchangeResult<Rules> {
        let vs = venue_symbol(symbol)?;
        if let Some(r) = self.cached_rules(&vs) {
            return Ok(r);
        }
        let info = self.client.get_exchange_info().await?;
        let entry = info
            .symbols
            .iter()
            .find(|s| s.symbol == vs)
            .ok_or_else(|| ExchangeError::UnknownSymbol {
                venue: VENUE,
                symbol: symbol.to_string(),
                message: format!("{vs} is not listed in exchangeInfo"),
            })?;
        if entry.contract_type != "PERPETUAL"
            || entry.base_asset != symbol.base()
            || entry.quote_asset != symbol.quote()
            || entry.margin_asset != symbol.settle()
        {
            return Err(ExchangeError::UnknownSymbol {
                venue: VENUE,
                symbol: symbol.to_string(),
                message: format!(
                    "{vs} is a {} contract {}/{} margined in {}",
                    entry.contract_type, entry.base_asset, entry.quote_asset, entry.margin_asset
                ),
            });
        }
        if entry.status != "TRADING" {
            tracing::warn!(venue = VENUE, symbol = %vs, status = %entry.status, "symbol is not trading");
        }
        let max_leverage = if self.client.has_credentials() {
            parse::parse_max_leverage(self.client.get_leverage_bracket(&vs).await?, &vs)?
        } else {
            Decimal::from(DEFAULT_MAX_LEVERAGE)
        };
        let rules = parse::parse_rules(symbol, entry, max_leverage)?;
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vs, (Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// Check `request` against the rules and build the venue parameters (after `symbol`).
    fn order_params(
        &self,
        request: &OrderRequest,
        rules: &Rules,
    ) -> ExchangeResult<Vec<(&'static str, String)>> {
        let inst = &rules.instrument;
        if request.quantity <= Decimal::ZERO {
            return Err(invalid(format!(
                "quantity must be positive, got {}",
                request.quantity
            )));
        }
        let (step, min_qty) = match request.order_type {
            OrderType::Market => (rules.market_step, rules.market_min_qty),
            OrderType::Limit | OrderType::StopMarket | OrderType::TakeProfitMarket => {
                (inst.step_size, inst.min_quantity)
            }
        };
        // Quantities only ever round down; a request off the step is refused, not resized.
        let quantity = on_grid("quantity", request.quantity, step, Round::Down)?;
        if quantity < min_qty {
            return Err(ExchangeError::BelowMinimum {
                venue: VENUE,
                what: "quantity",
                value: num(quantity),
                minimum: num(min_qty),
            });
        }
        let mut p: Vec<(&'static str, String)> = vec![("side", side_str(request.side).into())];
        match request.order_type {
            OrderType::Market => {
                p.extend([("type", "MARKET".into()), ("quantity", num(quantity))]);
            }
            OrderType::Limit => {
                let price = limit_price(request, inst, quantity)?;
                p.extend([
                    ("type", "LIMIT".into()),
                    ("timeInForce", "GTC".into()),
                    ("quantity", num(quantity)),
                    ("price", num(price)),
                ]);
            }
            OrderType::StopMarket => p.extend(conditional("STOP_MARKET", request, inst, quantity)?),
            OrderType::TakeProfitMarket => {
                p.extend(conditional("TAKE_PROFIT_MARKET", request, inst, quantity)?)
            }
        }
        if request.reduce_only {
            p.push(("reduceOnly", "true".into()));
        }
        if request.order_type.is_conditional() {
            p.push(("clientAlgoId", request.client_order_id.to_string()));
        } else {
            p.push(("newClientOrderId", request.client_order_id.to_string()));
            // RESULT: market orders come back in their final (filled) state.
            p.push(("newOrderRespType", "RESULT".into()));
        }
        Ok(p)
    }

    /// Local time corrected by the measured server offset, for `closed` flags.
    fn venue_now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis() + self.client.offset_ms()
    }
}

#[async_trait]
impl Exchange for Binance {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        parse::parse_server_time(&self.client.get_time().await?)
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        let vs = venue_symbol(symbol)?;
        let limit = limit.clamp(1, MAX_KLINES);
        let rows = self
            .client
            .get_klines(
                &vs,
                timeframe.as_str(),
                since.map(|t| t.timestamp_millis()),
                limit,
            )
            .await?;
        parse::parse_klines(&rows, timeframe, self.venue_now_ms())
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        let vs = venue_symbol(symbol)?;
        let t = self.client.get_ticker_price(&vs).await?;
        parse::parse_ticker(symbol, &vs, &t)
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        Ok(self.rules(symbol).await?.instrument)
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        self.client
            .require_credentials("balance (/fapi/v3/account)")?;
        let account = self.client.get_account().await?;
        Ok(parse::parse_balance(&account, asset))
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        self.client
            .require_credentials("positions (/fapi/v3/positionRisk)")?;
        let vs = symbol.map(venue_symbol).transpose()?;
        let rows = self.client.get_position_risk(vs.as_deref()).await?;
        let positions = parse::parse_positions(&rows)?;
        Ok(match symbol {
            Some(s) => positions.into_iter().filter(|p| &p.symbol == s).collect(),
            None => positions,
        })
    }

    async fn set_leverage(&self, symbol: &Symbol, leverage: u32) -> ExchangeResult<()> {
        self.client
            .require_credentials("set_leverage (/fapi/v1/leverage)")?;
        let vs = venue_symbol(symbol)?;
        if leverage == 0 {
            return Err(invalid("leverage must be at least 1".into()));
        }
        let set = self.client.post_leverage(&vs, leverage).await?;
        if set.symbol != vs || set.leverage != i64::from(leverage) {
            return Err(ExchangeError::malformed(
                VENUE,
                "/fapi/v1/leverage",
                format!(
                    "asked for {leverage}x on {vs}, venue answered {}x on {}",
                    set.leverage, set.symbol
                ),
            ));
        }
        Ok(())
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        self.client.require_credentials("place_order")?;
        let vs = venue_symbol(&request.symbol)?;
        let rules = self.rules(&request.symbol).await?;
        let params = self.order_params(request, &rules)?;
        if request.order_type.is_conditional() {
            let o = self.client.post_algo_order(&vs, params).await?;
            parse::parse_algo_order("/fapi/v1/algoOrder", &request.symbol, &vs, &o)
        } else {
            let o = self.client.post_order(&vs, params).await?;
            parse::parse_order("/fapi/v1/order", &request.symbol, &vs, &o)
        }
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        self.client.require_credentials("cancel_order")?;
        let vs = venue_symbol(symbol)?;
        match self
            .client
            .delete_order(&vs, client_order_id.as_str())
            .await
        {
            Ok(_) => Ok(()),
            Err(ExchangeError::OrderNotFound { .. }) => {
                // Not a regular order: it may be a conditional one.
                self.client
                    .delete_algo_order(client_order_id.as_str())
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        self.client.require_credentials("cancel_all")?;
        let vs = venue_symbol(symbol)?;
        // Binance reports no count: count what is open, then cancel both books.
        let open = self.open_orders(symbol).await?;
        self.client.delete_all_open_orders(&vs).await?;
        self.client.delete_algo_open_orders(&vs).await?;
        Ok(u32::try_from(open.len()).unwrap_or(u32::MAX))
    }

    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>> {
        self.client.require_credentials("open_orders")?;
        let vs = venue_symbol(symbol)?;
        let mut out = Vec::new();
        for o in self.client.get_open_orders(&vs).await? {
            out.push(parse::parse_order("/fapi/v1/openOrders", symbol, &vs, &o)?);
        }
        let algos = match self.client.get_open_algo_orders(&vs).await? {
            wire::OpenAlgoOrders::List(v) | wire::OpenAlgoOrders::Wrapped { orders: v } => v,
        };
        for o in &algos {
            out.push(parse::parse_algo_order(
                "/fapi/v1/openAlgoOrders",
                symbol,
                &vs,
                o,
            )?);
        }
        Ok(out)
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        self.client.require_credentials("order_by_client_id")?;
        let vs = venue_symbol(symbol)?;
        match self.client.get_order(&vs, client_order_id.as_str()).await {
            Ok(o) => return parse::parse_order("/fapi/v1/order", symbol, &vs, &o).map(Some),
            Err(ExchangeError::OrderNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.client.get_algo_order(client_order_id.as_str()).await {
            Ok(o) => parse::parse_algo_order("/fapi/v1/algoOrder", symbol, &vs, &o).map(Some),
            Err(ExchangeError::OrderNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        self.client.get_ping().await?;
        if !self.client.has_credentials() {
            return Ok(AccountCheck {
                can_trade: None,
                can_withdraw: None,
                notes: vec!["no credentials configured: only the public API was checked".into()],
            });
        }
        let account = self.client.get_account().await?;
        let mut notes = vec!["public API reachable; signed account request accepted".into()];
        if account.can_trade.is_none() || account.can_withdraw.is_none() {
            notes.push("the account endpoint did not report trade/withdraw permissions".into());
        }
        if account.can_withdraw == Some(true) {
            notes.push("this key may withdraw: a trading bot never needs that".into());
        }
        Ok(AccountCheck {
            can_trade: account.can_trade,
            can_withdraw: account.can_withdraw,
            notes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_url_prefers_override_then_environment() {
        let mut p = VenueParams::default();
        assert_eq!(base_url(&p), "https://fapi.binance.com");
        p.testnet = true;
        assert_eq!(base_url(&p), "https://testnet.binancefuture.com");
        p.base_url = Some("http://127.0.0.1:1234".into());
        assert_eq!(base_url(&p), "http://127.0.0.1:1234");
        p.base_url = Some("not a url".into());
        assert_eq!(build(&p).unwrap_err().kind(), "config");
    }

    #[test]
    fn grid_checks_refuse_instead_of_resizing() {
        use rust_decimal_macros::dec;
        assert_eq!(
            on_grid("quantity", dec!(0.012), dec!(0.001), Round::Down).unwrap(),
            dec!(0.012)
        );
        let e = on_grid("quantity", dec!(0.0125), dec!(0.001), Round::Down).unwrap_err();
        assert!(e.to_string().contains("nearest allowed: 0.012"), "{e}");
        assert_eq!(num(dec!(110001.000)), "110001");
        assert_eq!(num(dec!(0.00010)), "0.0001");
    }
}
