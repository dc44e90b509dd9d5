//! HTX USDT-margined linear swap adapter: `BTC-USDT` <-> `BTC/USDT:USDT`, whole contracts on the
//! wire and base coin outside. Private calls use the V5 API (the v1 trading endpoints were shut
//! down on 2026-07-13); market data stays on `/linear-swap-ex` and `swap_contract_info`.
//! Layers: `client` (endpoints, Signature V2, envelopes) -> `wire` (serde models) -> `parse`
//! (domain types) -> `impl Exchange` here; `errors` maps codes.
//!
//! Client order ids: HTX wants a positive int64, so each `ClientOrderId` is mapped
//! deterministically (`parse::venue_client_id`: SHA-256, first 8 bytes, top bit cleared) and
//! orders are looked up by that integer. HTX resolves a client id for 8 hours only (and, for
//! multi-asset accounts, not at all once the order is filled or cancelled): after that,
//! `order_by_client_id` answers `Ok(None)` even though the order existed, so an order must be
//! reconciled within that window, never re-placed on a `None` that comes later.

mod client;
mod errors;
mod parse;
mod signing;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, OrderStatus, OrderType,
    Position, Symbol, Ticker, Timeframe,
};
use crate::exchange::registry::{VenueDescriptor, VenueParams};
use crate::exchange::{AccountCheck, Exchange, ExchangeError, ExchangeResult};

use client::{HtxClient, KlineWindow, PRODUCTION_URL};
use parse::Spec;

const VENUE: &str = "htx";

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: VENUE,
    display_name: "HTX USDT-M linear swaps",
    has_testnet: false,
    needs_passphrase: false,
    trades_in_contracts: true,
    notes: "USDT-margined perpetual swaps (BTC-USDT = BTC/USDT:USDT), cross margin, one-way \
            positions (position_side both), private calls on the V5 API. Sizes are whole \
            contracts (contract_size base coin each): other quantities are rejected, never \
            resized. Stops and take-profits are reduce-only V5 tp/sl algo orders. Client order \
            ids are mapped to positive int64 and resolvable for 8 hours only. No testnet. \
            No 3m/2h/6h/8h/12h candles. Leverage ceiling from the V5 risk-limit tiers (1x when \
            unavailable).",
    build,
};

/// Margin mode of every order and leverage setting.
const MARGIN_MODE: &str = "cross";
/// The algo-order type this adapter places, lists and cancels.
const ALGO_TYPE: &str = "tpsl";
/// Contract specs are re-read after this long.
const SPEC_TTL: Duration = Duration::from_secs(3_600);
/// Rows per `/history/kline` request (the venue maximum).
const KLINE_PAGE: u32 = 2_000;
/// Upper bound on pages of one listing, so a misbehaving venue cannot loop us forever.
const MAX_PAGES: usize = 50;
/// Algo orders per `/v5/algo/cancel_orders` call.
const CANCEL_ALGO_BATCH: usize = 10;

fn build(params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    let base_url = params.base_url.as_deref().unwrap_or(PRODUCTION_URL);
    let client = HtxClient::new(
        base_url,
        params.credentials.as_ref(),
        params.http.clone(),
        Arc::clone(&params.clock),
    )?;
    Ok(Arc::new(Htx {
        client,
        specs: Mutex::new(HashMap::new()),
        client_ids: Mutex::new(HashMap::new()),
    }))
}

/// One HTX account (or the public API only, without credentials).
#[derive(Debug)]
struct Htx {
    client: HtxClient,
    specs: Mutex<HashMap<String, (Instant, Arc<Spec>)>>,
    /// Venue integer client id -> our id, for the ids this instance placed or looked up (the
    /// mapping is one-way, so orders placed by another process list without a client id).
    client_ids: Mutex<HashMap<String, ClientOrderId>>,
}

impl Htx {
    fn cached_spec(&self, code: &str) -> Option<Arc<Spec>> {
        let specs = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        specs
            .get(code)
            .filter(|(at, _)| at.elapsed() < SPEC_TTL)
            .map(|(_, s)| Arc::clone(s))
    }

    /// Read the contract from the venue and cache it.
    async fn fetch_spec(&self, symbol: &Symbol, code: &str) -> ExchangeResult<Arc<Spec>> {
        let rows = self.client.get_swap_contract_info(code).await?;
        let row = rows
            .iter()
            .find(|r| r.contract_code == code)
            .ok_or_else(|| ExchangeError::UnknownSymbol {
                venue: VENUE,
                symbol: symbol.to_string(),
                message: format!("HTX lists no USDT-margined swap {code}"),
            })?;
        // The leverage ceiling: an endpoint that is missing or refuses leaves sizing at 1x
        // (never higher); an answer we cannot read is an error like everywhere else.
        let max_leverage = match self.client.get_market_risk_limit(code, MARGIN_MODE).await {
            Ok(tiers) => tiers.iter().filter_map(|t| t.max_lever).max(),
            Err(e @ ExchangeError::Malformed { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(venue = VENUE, contract_code = %code, error = %e, "risk limits unavailable; max leverage 1");
                None
            }
        };
        let spec = Arc::new(parse::instrument(symbol, row, max_leverage)?);
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(code.to_string(), (Instant::now(), Arc::clone(&spec)));
        Ok(spec)
    }

    async fn spec(&self, symbol: &Symbol) -> ExchangeResult<(String, Arc<Spec>)> {
        let code = parse::contract_code(symbol)?;
        if let Some(s) = self.cached_spec(&code) {
            return Ok((code, s));
        }
        let s = self.fetch_spec(symbol, &code).await?;
        Ok((code, s))
    }

    /// The venue's integer for `id`, remembered so listings can name it again.
    fn venue_id(&self, id: &ClientOrderId) -> String {
        let n = parse::venue_client_id(id).to_string();
        self.client_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n.clone(), id.clone());
        n
    }

    fn known_id(&self, venue_id: &str) -> Option<ClientOrderId> {
        self.client_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(venue_id)
            .cloned()
    }

    /// A trigger or limit price must already be on the tick grid: rounding is the caller's choice.
    fn check_tick(spec: &Spec, what: &str, price: Decimal) -> ExchangeResult<String> {
        if price <= Decimal::ZERO {
            return Err(ExchangeError::InvalidOrder {
                venue: VENUE,
                message: format!("{what} must be positive, got {price}"),
            });
        }
        if !(price / spec.instrument.tick_size).fract().is_zero() {
            return Err(ExchangeError::InvalidOrder {
                venue: VENUE,
                message: format!(
                    "{what} {price} is not a multiple of the tick size {}",
                    spec.instrument.tick_size
                ),
            });
        }
        Ok(parse::text(price))
    }

    /// Count the successes of per-order results; "already gone" ones are skipped, other
    /// failures kept (the first one is returned after everything was tried).
    fn tally<'a>(
        items: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
        endpoint: &str,
        code: &str,
        cancelled: &mut u32,
        first_error: &mut Option<ExchangeError>,
    ) {
        let ctx = errors::ErrorContext {
            endpoint,
            contract_code: Some(code),
            kind: crate::exchange::http::RequestKind::Write,
        };
        for (item_code, message) in items {
            match item_code {
                None | Some("200") => *cancelled += 1,
                Some(c) => match errors::map_code(c, message.unwrap_or_default(), ctx) {
                    ExchangeError::OrderNotFound { .. } => {}
                    e => {
                        tracing::warn!(venue = VENUE, error = %e, "cancel failed");
                        first_error.get_or_insert(e);
                    }
                },
            }
        }
    }
}

#[async_trait]
impl Exchange for Htx {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        self.client.get_timestamp().await
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        let code = parse::contract_code(symbol)?;
        let period = parse::period(timeframe)?;
        let endpoint = "/linear-swap-ex/market/history/kline";
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let step = timeframe.seconds();
        let now = self.client.now();
        // More latest candles than one request returns: ask for the window that ends now.
        let since = match since {
            None if limit > KLINE_PAGE => {
                let now_s = now.timestamp();
                let start = now_s - now_s.rem_euclid(step) - step * (i64::from(limit) - 1);
                DateTime::<Utc>::from_timestamp(start, 0)
            }
            given => given,
        };
        let candles = match since {
            None => {
                let rows = self
                    .client
                    .get_history_kline(&code, period, KlineWindow::Latest(limit.min(KLINE_PAGE)))
                    .await?;
                parse::candles(&rows, timeframe, now, endpoint)?
            }
            Some(since) => {
                // Windows of up to 2,000 bars, `from`/`to` in seconds (both inclusive).
                let mut rows = Vec::new();
                let mut cursor = since.timestamp();
                let mut remaining = wanted;
                for _ in 0..MAX_PAGES {
                    if cursor > now.timestamp() || remaining == 0 {
                        break;
                    }
                    let n = remaining.min(KLINE_PAGE as usize) as i64;
                    let to = cursor.saturating_add(step.saturating_mul(n - 1));
                    let page = self
                        .client
                        .get_history_kline(&code, period, KlineWindow::Range { from: cursor, to })
                        .await?;
                    remaining = remaining.saturating_sub(page.len());
                    rows.extend(page);
                    cursor = to.saturating_add(step);
                }
                let mut c = parse::candles(&rows, timeframe, now, endpoint)?;
                c.retain(|c| c.open_time >= since);
                c
            }
        };
        let mut candles = candles;
        match since {
            // The latest ones: keep the newest `limit`.
            None => {
                let excess = candles.len().saturating_sub(wanted);
                candles.drain(..excess);
            }
            Some(_) => candles.truncate(wanted),
        }
        Ok(candles)
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        let code = parse::contract_code(symbol)?;
        let tick = self.client.get_detail_merged(&code).await?;
        parse::ticker(symbol, &tick)
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        let code = parse::contract_code(symbol)?;
        Ok(self.fetch_spec(symbol, &code).await?.instrument.clone())
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        let data = self.client.get_account_balance().await?;
        Ok(parse::balance(asset, &data))
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        let code = symbol.map(parse::contract_code).transpose()?;
        let rows = self.client.get_position_opens(code.as_deref()).await?;
        let mut out = Vec::new();
        for row in &rows {
            if row.volume.is_zero() {
                continue;
            }
            if let Some(kind) = row.contract_type.as_deref().filter(|k| *k != "swap") {
                tracing::warn!(venue = VENUE, contract_code = %row.contract_code, kind, "non-swap position skipped");
                continue;
            }
            let sym = match parse::symbol_of(&row.contract_code) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(venue = VENUE, contract_code = %row.contract_code, error = %e, "position skipped");
                    continue;
                }
            };
            let (_, spec) = self.spec(&sym).await?;
            if let Some(p) = parse::position(row, spec.contract_size)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    async fn set_leverage(&self, symbol: &Symbol, leverage: u32) -> ExchangeResult<()> {
        if leverage == 0 {
            return Err(ExchangeError::InvalidOrder {
                venue: VENUE,
                message: "leverage must be at least 1".into(),
            });
        }
        let code = parse::contract_code(symbol)?;
        let body = wire::SetLeverageBody {
            contract_code: &code,
            margin_mode: MARGIN_MODE,
            lever_rate: leverage,
        };
        let ack = self.client.post_position_lever(&body).await?;
        match ack.lever_rate {
            Some(l) if l != Decimal::from(leverage) => Err(ExchangeError::Venue {
                venue: VENUE,
                code: "leverage".into(),
                message: format!("asked for leverage {leverage}, HTX answered {l}"),
            }),
            _ => Ok(()),
        }
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        let (code, spec) = self.spec(&request.symbol).await?;
        let volume = parse::text(parse::contracts(&spec, request.quantity)?);
        let side = parse::side_to_wire(request.side);
        let placed = |exchange_order_id: String| Order {
            symbol: request.symbol.clone(),
            client_order_id: Some(request.client_order_id.clone()),
            exchange_order_id,
            side: request.side,
            order_type: request.order_type,
            status: OrderStatus::Open,
            quantity: request.quantity,
            price: request
                .price
                .filter(|_| request.order_type == OrderType::Limit),
            trigger_price: request
                .trigger_price
                .filter(|_| request.order_type.is_conditional()),
            reduce_only: request.reduce_only,
            filled_quantity: Decimal::ZERO,
            average_price: None,
            fee: None,
            created_at: None,
            updated_at: None,
        };
        match request.order_type {
            OrderType::Market | OrderType::Limit => {
                let (order_type, price) = match request.order_type {
                    OrderType::Limit => {
                        let price = request.price.ok_or_else(|| ExchangeError::InvalidOrder {
                            venue: VENUE,
                            message: "a limit order needs a price".into(),
                        })?;
                        (
                            wire::OrderType::Limit,
                            Some(Self::check_tick(&spec, "price", price)?),
                        )
                    }
                    _ => (wire::OrderType::Market, None),
                };
                let body = wire::PlaceOrderBody {
                    contract_code: &code,
                    margin_mode: MARGIN_MODE,
                    position_side: wire::PositionSide::Both,
                    side,
                    order_type,
                    volume,
                    price,
                    client_order_id: self.venue_id(&request.client_order_id),
                    reduce_only: request.reduce_only.then_some(1),
                };
                let ack = self.client.post_trade_order(&body).await?;
                let order_id = ack.order_id.ok_or_else(|| {
                    // The venue said success but named no order: it exists, we must reconcile.
                    ExchangeError::OutcomeUnknown {
                        venue: VENUE,
                        message: "/v5/trade/order: success without an order_id".into(),
                    }
                })?;
                Ok(placed(order_id))
            }
            OrderType::StopMarket | OrderType::TakeProfitMarket => {
                if !request.reduce_only {
                    return Err(ExchangeError::InvalidOrder {
                        venue: VENUE,
                        message: format!(
                            "{} orders are placed as position tp/sl orders on HTX, which only \
                             reduce: set reduce_only",
                            request.order_type.as_str()
                        ),
                    });
                }
                let trigger = request
                    .trigger_price
                    .ok_or_else(|| ExchangeError::InvalidOrder {
                        venue: VENUE,
                        message: format!(
                            "a {} order needs a trigger price",
                            request.order_type.as_str()
                        ),
                    })?;
                let trigger = Self::check_tick(&spec, "trigger price", trigger)?;
                let stop = request.order_type == OrderType::StopMarket;
                let body = wire::PlaceAlgoBody {
                    contract_code: &code,
                    algo_type: wire::AlgoType::Tpsl,
                    position_side: wire::PositionSide::Both,
                    side,
                    margin_mode: MARGIN_MODE,
                    algo_client_order_id: self.venue_id(&request.client_order_id),
                    volume,
                    sl_trigger_price: stop.then(|| trigger.clone()),
                    sl_type: stop.then_some(wire::OrderType::Market),
                    tp_trigger_price: (!stop).then(|| trigger.clone()),
                    tp_type: (!stop).then_some(wire::OrderType::Market),
                    reduce_only: 1,
                };
                let acks = self.client.post_algo_order(&body).await?;
                let algo_id = acks
                    .first()
                    .and_then(|a| a.algo_id.clone())
                    .ok_or_else(|| ExchangeError::OutcomeUnknown {
                        venue: VENUE,
                        message: "/v5/algo/order: success without an algo_id".into(),
                    })?;
                Ok(placed(algo_id))
            }
        }
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        let code = parse::contract_code(symbol)?;
        let venue_id = self.venue_id(client_order_id);
        let regular = wire::CancelOrderBody {
            contract_code: &code,
            client_order_id: venue_id.clone(),
        };
        match self.client.post_trade_cancel_order(&regular).await {
            Ok(_) => return Ok(()),
            Err(ExchangeError::OrderNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        // Not a regular order: maybe a tp/sl one, under its algo_client_order_id.
        let endpoint = "/v5/algo/cancel_orders";
        let items = [wire::CancelAlgoItem {
            contract_code: &code,
            algo_id: None,
            algo_client_order_id: Some(venue_id),
        }];
        let acks = self.client.post_algo_cancel_orders(&code, &items).await?;
        let Some(ack) = acks.first() else {
            return Err(ExchangeError::OrderNotFound {
                venue: VENUE,
                message: format!("{client_order_id} is neither a regular nor a tp/sl order"),
            });
        };
        match ack.code.as_deref() {
            None | Some("200") => Ok(()),
            Some(c) => Err(errors::map_code(
                c,
                ack.message.as_deref().unwrap_or_default(),
                errors::ErrorContext {
                    endpoint,
                    contract_code: Some(&code),
                    kind: crate::exchange::http::RequestKind::Write,
                },
            )),
        }
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        let code = parse::contract_code(symbol)?;
        let mut cancelled = 0u32;
        let mut first_error = None;

        match self
            .client
            .post_trade_cancel_all_orders(&wire::CancelAllBody {
                contract_code: &code,
            })
            .await
        {
            Ok(items) => Self::tally(
                items
                    .iter()
                    .map(|i| (i.code.as_deref(), i.message.as_deref())),
                "/v5/trade/cancel_all_orders",
                &code,
                &mut cancelled,
                &mut first_error,
            ),
            // 1051 "No orders to cancel".
            Err(ExchangeError::OrderNotFound { .. }) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }

        let algos: Vec<wire::AlgoId> = self.client.get_algo_order_opens(&code, ALGO_TYPE).await?;
        for chunk in algos.chunks(CANCEL_ALGO_BATCH) {
            let items: Vec<_> = chunk
                .iter()
                .map(|a| wire::CancelAlgoItem {
                    contract_code: &code,
                    algo_id: Some(&a.algo_id),
                    algo_client_order_id: None,
                })
                .collect();
            match self.client.post_algo_cancel_orders(&code, &items).await {
                Ok(acks) => Self::tally(
                    acks.iter()
                        .map(|a| (a.code.as_deref(), a.message.as_deref())),
                    "/v5/algo/cancel_orders",
                    &code,
                    &mut cancelled,
                    &mut first_error,
                ),
                Err(ExchangeError::OrderNotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(cancelled),
        }
    }

    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>> {
        let (code, spec) = self.spec(symbol).await?;
        let orders: Vec<wire::Order> = self
            .client
            .get_trade_order_opens(&code, MARGIN_MODE)
            .await?;
        let algos: Vec<wire::AlgoOrder> =
            self.client.get_algo_order_opens(&code, ALGO_TYPE).await?;
        if orders.len() >= client::PAGE_LIMIT || algos.len() >= client::PAGE_LIMIT {
            tracing::warn!(
                venue = VENUE,
                contract_code = %code,
                "a full page of open orders: only the first {} of a kind are listed",
                client::PAGE_LIMIT
            );
        }
        let ids = |v: &str| self.known_id(v);
        let mut out = Vec::with_capacity(orders.len() + algos.len());
        for o in &orders {
            out.push(parse::order(o, spec.contract_size, &ids)?);
        }
        for a in &algos {
            out.push(parse::algo_order(a, spec.contract_size, &ids)?);
        }
        Ok(out)
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        let (code, spec) = self.spec(symbol).await?;
        let venue_id = self.venue_id(client_order_id);
        let ours = |v: &str| (v == venue_id).then(|| client_order_id.clone());
        match self
            .client
            .get_trade_order(&code, MARGIN_MODE, &venue_id)
            .await
        {
            Ok(rows) => {
                let row = rows
                    .iter()
                    .find(|o| o.client_order_id.as_deref() == Some(venue_id.as_str()))
                    .or(rows.first());
                if let Some(o) = row {
                    return parse::order(o, spec.contract_size, &ours).map(Some);
                }
            }
            Err(ExchangeError::OrderNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self
            .client
            .get_algo_order(&code, ALGO_TYPE, &venue_id)
            .await
        {
            Ok(rows) => match rows.first() {
                Some(a) => parse::algo_order(a, spec.contract_size, &ours).map(Some),
                None => Ok(None),
            },
            Err(ExchangeError::OrderNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        self.client.get_timestamp().await?;
        if !self.client.has_credentials() {
            return Ok(AccountCheck {
                notes: vec!["no credentials: only public endpoints were checked".into()],
                ..AccountCheck::default()
            });
        }
        self.client.get_account_balance().await?;
        Ok(AccountCheck {
            can_trade: None,
            can_withdraw: None,
            notes: vec![
                "the key signed /v5/account/balance successfully".into(),
                "HTX's futures host exposes no key-permission query: check trade and withdraw \
                 permissions in the HTX API-key settings"
                    .into(),
            ],
        })
    }
}
