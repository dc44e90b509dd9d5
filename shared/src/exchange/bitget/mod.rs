//! Bitget V2 mix adapter for USDT-margined perpetuals (`productType=USDT-FUTURES`, `marginCoin=USDT`):
//! `BTCUSDT` <-> `BTC/USDT:USDT`, sizes in base coin on the wire and outside. Layers: `client`
//! (endpoints, signing, envelope) -> `wire` (serde models) -> `parse` (domain types) ->
//! `impl Exchange` here; `errors` maps codes.

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

use client::{BitgetClient, PAGE_LIMIT, PRODUCT_TYPE, PRODUCTION_URL};
use parse::USDT;

const VENUE: &str = "bitget";

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: VENUE,
    display_name: "Bitget V2 USDT-FUTURES",
    has_testnet: true,
    needs_passphrase: true,
    trades_in_contracts: false,
    notes: "USDT-margined perpetuals (BTCUSDT = BTC/USDT:USDT, productType USDT-FUTURES), \
            crossed margin, sizes in base coin. Classic accounts only: a Unified Trading Account \
            is refused by the V2 API (code 40085). One-way position mode (reduce-only orders use \
            reduceOnly YES; hedge mode is not supported). Reduce-only stops and take-profits are \
            position TP/SL plans, entry stops are normal trigger plans; triggers use the mark \
            price. Demo trading: demo keys with the paptrading: 1 header on the production host \
            and the normal symbols (never the SUSDT demo coins). No 8h candles.",
    build,
};

/// Margin mode of every order.
const MARGIN_MODE: &str = "crossed";
/// Trigger price of stops and take-profits.
const TRIGGER_TYPE: &str = "mark_price";
/// Instrument rules are re-read after this long.
const SPEC_TTL: Duration = Duration::from_secs(3_600);
/// Candle rows per request on `/market/candles` and `/market/history-candles`.
const CANDLES_PAGE: usize = 1_000;
const HISTORY_PAGE: usize = 200;
/// Longest time span of one candle request.
const MAX_CANDLE_SPAN_MS: i64 = 90 * 86_400_000;
/// Upper bound on pages of one listing, so a misbehaving venue cannot loop us forever.
const MAX_PAGES: usize = 50;
/// Ids per batch cancel.
const CANCEL_BATCH: usize = 50;
/// The plan-order families the pending list is queried by.
const PLAN_NORMAL: &str = "normal_plan";
const PLAN_TPSL: &str = "profit_loss";

/// How far back `/market/candles` reaches, per the venue docs (shorter where undocumented);
/// older candles come from `/market/history-candles`.
fn recent_lookback_days(timeframe: Timeframe) -> i64 {
    match timeframe {
        Timeframe::M1 | Timeframe::M3 | Timeframe::M5 => 30,
        Timeframe::M15 => 52,
        Timeframe::M30 => 62,
        Timeframe::H1 | Timeframe::H2 => 83,
        Timeframe::H4 => 240,
        Timeframe::H6 | Timeframe::H8 | Timeframe::H12 | Timeframe::D1 | Timeframe::W1 => 360,
    }
}

fn build(params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    let base_url = params.base_url.as_deref().unwrap_or(PRODUCTION_URL);
    let client = BitgetClient::new(
        base_url,
        params.credentials.as_ref(),
        params.testnet,
        params.http.clone(),
        Arc::clone(&params.clock),
    )?;
    Ok(Arc::new(Bitget {
        client,
        specs: Mutex::new(HashMap::new()),
    }))
}

/// Follow `idLessThan` pages of up to `PAGE_LIMIT` rows until a short page (or `MAX_PAGES`).
async fn all_pages<T, F, Fut>(mut fetch: F) -> ExchangeResult<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = ExchangeResult<wire::Page<T>>>,
{
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = fetch(cursor.take()).await?;
        let full = page.entrusted_list.len() >= PAGE_LIMIT;
        all.extend(page.entrusted_list);
        cursor = page.end_id;
        if !full || cursor.is_none() {
            break;
        }
    }
    Ok(all)
}

/// One Bitget account (or the public API only, without credentials).
#[derive(Debug)]
struct Bitget {
    client: BitgetClient,
    specs: Mutex<HashMap<String, (Instant, Arc<Instrument>)>>,
}

impl Bitget {
    fn cached_spec(&self, venue_symbol: &str) -> Option<Arc<Instrument>> {
        let specs = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        specs
            .get(venue_symbol)
            .filter(|(at, _)| at.elapsed() < SPEC_TTL)
            .map(|(_, s)| Arc::clone(s))
    }

    /// Read the contract from the venue and cache it.
    async fn fetch_spec(&self, symbol: &Symbol, vs: &str) -> ExchangeResult<Arc<Instrument>> {
        let rows = self.client.get_market_contracts(vs).await?;
        let row = rows
            .iter()
            .find(|r| r.symbol.eq_ignore_ascii_case(vs))
            .ok_or_else(|| ExchangeError::UnknownSymbol {
                venue: VENUE,
                symbol: symbol.to_string(),
                message: format!("Bitget lists no USDT-FUTURES contract {vs}"),
            })?;
        let spec = Arc::new(parse::instrument(symbol, row)?);
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vs.to_string(), (Instant::now(), Arc::clone(&spec)));
        Ok(spec)
    }

    async fn spec(&self, symbol: &Symbol) -> ExchangeResult<(String, Arc<Instrument>)> {
        let vs = parse::venue_symbol(symbol)?;
        if let Some(s) = self.cached_spec(&vs) {
            return Ok((vs, s));
        }
        let s = self.fetch_spec(symbol, &vs).await?;
        Ok((vs, s))
    }

    /// Every pending regular order (all pages) of `vs`.
    async fn pending_orders<T: serde::de::DeserializeOwned>(
        &self,
        vs: &str,
    ) -> ExchangeResult<Vec<T>> {
        all_pages(
            |cursor| async move { self.client.get_orders_pending(vs, cursor.as_deref()).await },
        )
        .await
    }

    /// Every pending plan order of one family (all pages) of `vs`, optionally of one client id.
    async fn pending_plans<T: serde::de::DeserializeOwned>(
        &self,
        vs: &str,
        plan_type: &str,
        client_oid: Option<&str>,
    ) -> ExchangeResult<Vec<T>> {
        all_pages(|cursor| async move {
            self.client
                .get_orders_plan_pending(vs, plan_type, client_oid, cursor.as_deref())
                .await
        })
        .await
    }

    /// The pending plan order (trigger or TP/SL) with this client id, if any.
    async fn find_plan<T, F>(&self, vs: &str, cl: &str, client_oid: F) -> ExchangeResult<Option<T>>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&T) -> Option<&str>,
    {
        for family in [PLAN_NORMAL, PLAN_TPSL] {
            let plans: Vec<T> = self.pending_plans(vs, family, Some(cl)).await?;
            if let Some(p) = plans.into_iter().find(|p| client_oid(p) == Some(cl)) {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// After an accepted placement without an `orderId`: the order as the venue now knows it.
    async fn resolve_by_client_id(
        &self,
        request: &OrderRequest,
        endpoint: &str,
    ) -> ExchangeResult<Order> {
        // The venue accepted the order: whatever goes wrong now, the outcome is unknown, never
        // a failure that would invite a blind retry.
        match self
            .order_by_client_id(&request.symbol, &request.client_order_id)
            .await
        {
            Ok(Some(o)) => Ok(o),
            Err(e) => Err(ExchangeError::OutcomeUnknown {
                venue: VENUE,
                message: format!(
                    "{endpoint} accepted client order id {} without an orderId, and looking it                      up failed: {e}",
                    request.client_order_id
                ),
            }),
            Ok(None) => Err(ExchangeError::OutcomeUnknown {
                venue: VENUE,
                message: format!(
                    "{endpoint} accepted client order id {} without an orderId and the order \
                     cannot be found yet",
                    request.client_order_id
                ),
            }),
        }
    }

    /// Count the successes of a batch cancel; "already gone" items are skipped, other failures
    /// kept.
    fn tally(
        result: &wire::BatchResult,
        endpoint: &str,
        vs: &str,
        cancelled: &mut u32,
        first_error: &mut Option<ExchangeError>,
    ) {
        *cancelled += u32::try_from(result.success_list.len()).unwrap_or(u32::MAX);
        for item in &result.failure_list {
            let msg = item.error_msg.as_deref().unwrap_or_default();
            let err = match item.error_code.as_deref() {
                Some(code) => errors::map_code(
                    code,
                    msg,
                    errors::ErrorContext {
                        endpoint,
                        symbol: Some(vs),
                        kind: crate::exchange::http::RequestKind::Write,
                    },
                ),
                // Bitget reports vanished orders with a message only ("notExistend").
                None if msg.to_ascii_lowercase().contains("exist") => {
                    ExchangeError::OrderNotFound {
                        venue: VENUE,
                        message: msg.to_string(),
                    }
                }
                None => ExchangeError::Venue {
                    venue: VENUE,
                    code: "cancel".into(),
                    message: format!("{endpoint}: {msg}"),
                },
            };
            match err {
                ExchangeError::OrderNotFound { .. } => {}
                e => {
                    tracing::warn!(venue = VENUE, error = %e, order_id = ?item.order_id, "cancel failed");
                    first_error.get_or_insert(e);
                }
            }
        }
    }

    fn plan_type_text(plan_type: wire::PlanType) -> &'static str {
        match plan_type {
            wire::PlanType::NormalPlan => "normal_plan",
            wire::PlanType::TrackPlan => "track_plan",
            wire::PlanType::ProfitPlan => "profit_plan",
            wire::PlanType::LossPlan => "loss_plan",
            wire::PlanType::PosProfit => "pos_profit",
            wire::PlanType::PosLoss => "pos_loss",
            wire::PlanType::MovingPlan => "moving_plan",
        }
    }

    fn placed(request: &OrderRequest, exchange_order_id: String) -> Order {
        Order {
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
        }
    }
}

#[async_trait]
impl Exchange for Bitget {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        self.client.get_public_time().await
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        let vs = parse::venue_symbol(symbol)?;
        let granularity = parse::granularity(timeframe)?;
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let step = timeframe.millis();
        let span_bars = usize::try_from(MAX_CANDLE_SPAN_MS / step)
            .unwrap_or(1)
            .max(1);
        let mut out: Vec<Candle> = Vec::new();
        match since {
            None => {
                // The latest page from /candles, then older pages from /history-candles.
                let n = wanted.min(CANDLES_PAGE);
                let endpoint = "/api/v2/mix/market/candles";
                let rows = self
                    .client
                    .get_candles(false, &vs, granularity, None, None, n)
                    .await?;
                out = parse::candles(&rows, timeframe, self.client.now_ms(), endpoint)?;
                let mut short = rows.len() < n;
                for _ in 0..MAX_PAGES {
                    if out.len() >= wanted || short {
                        break;
                    }
                    let Some(oldest) = out.first().map(|c| c.open_time.timestamp_millis()) else {
                        break;
                    };
                    let n = (wanted - out.len()).min(HISTORY_PAGE).min(span_bars);
                    let endpoint = "/api/v2/mix/market/history-candles";
                    let start = oldest.saturating_sub(step.saturating_mul(n as i64));
                    let rows = self
                        .client
                        .get_candles(true, &vs, granularity, Some(start), Some(oldest - 1), n)
                        .await?;
                    short = rows.len() < n;
                    let page = parse::candles(&rows, timeframe, self.client.now_ms(), endpoint)?;
                    let mut merged: Vec<Candle> = page
                        .into_iter()
                        .filter(|c| c.open_time.timestamp_millis() < oldest)
                        .collect();
                    if merged.is_empty() {
                        break;
                    }
                    merged.extend(out);
                    out = merged;
                }
                let excess = out.len().saturating_sub(wanted);
                out.drain(..excess);
            }
            Some(since) => {
                // Windows [cursor, cursor + n bars) walking forward.
                let now = self.client.now_ms();
                let since_ms = since.timestamp_millis();
                let lookback = (recent_lookback_days(timeframe) - 1) * 86_400_000;
                let history = since_ms < now - lookback;
                let (page_size, endpoint) = if history {
                    (HISTORY_PAGE, "/api/v2/mix/market/history-candles")
                } else {
                    (CANDLES_PAGE, "/api/v2/mix/market/candles")
                };
                let mut cursor = since_ms;
                for _ in 0..MAX_PAGES {
                    if cursor > now || out.len() >= wanted {
                        break;
                    }
                    let n = (wanted - out.len()).min(page_size).min(span_bars);
                    let end = cursor.saturating_add(step.saturating_mul(n as i64));
                    let rows = self
                        .client
                        .get_candles(history, &vs, granularity, Some(cursor), Some(end - 1), n)
                        .await?;
                    let page = parse::candles(&rows, timeframe, now, endpoint)?;
                    let last = out.last().map(|c| c.open_time.timestamp_millis());
                    out.extend(page.into_iter().filter(|c| {
                        let t = c.open_time.timestamp_millis();
                        t >= since_ms && last.is_none_or(|l| t > l)
                    }));
                    cursor = end;
                }
                out.truncate(wanted);
            }
        }
        Ok(out)
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        let vs = parse::venue_symbol(symbol)?;
        let rows = self.client.get_market_ticker(&vs).await?;
        let row = rows.first().ok_or_else(|| ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: "empty ticker".into(),
        })?;
        parse::ticker(symbol, row)
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        let vs = parse::venue_symbol(symbol)?;
        Ok(self.fetch_spec(symbol, &vs).await?.as_ref().clone())
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        let rows = self.client.get_account_accounts().await?;
        Ok(parse::balance(asset, &rows))
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        let rows = match symbol {
            Some(s) => {
                let vs = parse::venue_symbol(s)?;
                self.client.get_single_position(&vs, USDT).await?
            }
            None => self.client.get_all_position(USDT).await?,
        };
        let mut out = Vec::new();
        for row in &rows {
            match parse::position(row) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(e @ ExchangeError::UnknownSymbol { .. }) => {
                    tracing::warn!(venue = VENUE, symbol = %row.symbol, error = %e, "position skipped");
                }
                Err(e) => return Err(e),
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
        let vs = parse::venue_symbol(symbol)?;
        let body = wire::SetLeverageBody {
            symbol: &vs,
            product_type: PRODUCT_TYPE,
            margin_coin: USDT,
            leverage: leverage.to_string(),
        };
        let ack = self.client.post_set_leverage(&body).await?;
        let asked = Decimal::from(leverage);
        let answered = ack.and_then(|a| match a.margin_mode {
            Some(wire::MarginMode::Crossed) => a.cross_margin_leverage,
            // Isolated margin sets both sides; report the first that differs.
            Some(wire::MarginMode::Isolated) => [a.long_leverage, a.short_leverage]
                .into_iter()
                .flatten()
                .find(|l| *l != asked),
            None => None,
        });
        match answered {
            Some(l) if l != asked => Err(ExchangeError::Venue {
                venue: VENUE,
                code: "leverage".into(),
                message: format!("asked for leverage {leverage}, Bitget answered {l}"),
            }),
            _ => Ok(()),
        }
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        let (vs, spec) = self.spec(&request.symbol).await?;
        let size = parse::size(&spec, request.quantity)?;
        let cl = request.client_order_id.as_str();
        match request.order_type {
            OrderType::Market | OrderType::Limit => {
                let (order_type, price, force) = match request.order_type {
                    OrderType::Limit => {
                        let price = request.price.ok_or_else(|| ExchangeError::InvalidOrder {
                            venue: VENUE,
                            message: "a limit order needs a price".into(),
                        })?;
                        (
                            wire::OrderType::Limit,
                            Some(parse::price(&spec, "price", price)?),
                            Some("gtc"),
                        )
                    }
                    _ => (wire::OrderType::Market, None, None),
                };
                let body = wire::PlaceOrderBody {
                    symbol: &vs,
                    product_type: PRODUCT_TYPE,
                    margin_mode: MARGIN_MODE,
                    margin_coin: USDT,
                    size,
                    price,
                    side: parse::side_to_wire(request.side),
                    order_type,
                    force,
                    reduce_only: request.reduce_only.then_some("YES"),
                    client_oid: cl,
                };
                let endpoint = "/api/v2/mix/order/place-order";
                let ack = self.client.post_place_order(&body).await?;
                match ack.and_then(|a| a.order_id) {
                    Some(id) => Ok(Self::placed(request, id)),
                    // One-way reduce-only orders that displace older ones come back without an
                    // orderId: the clientOid finds them.
                    None => self.resolve_by_client_id(request, endpoint).await,
                }
            }
            OrderType::StopMarket | OrderType::TakeProfitMarket => {
                let trigger = request
                    .trigger_price
                    .ok_or_else(|| ExchangeError::InvalidOrder {
                        venue: VENUE,
                        message: format!(
                            "a {} order needs a trigger price",
                            request.order_type.as_str()
                        ),
                    })?;
                let trigger = parse::price(&spec, "trigger price", trigger)?;
                let stop = request.order_type == OrderType::StopMarket;
                let (ack, endpoint) = if request.reduce_only {
                    // A TP/SL plan on the open position: `holdSide` is the position's direction,
                    // the opposite of the closing order's side.
                    let body = wire::PlaceTpslBody {
                        margin_coin: USDT,
                        product_type: PRODUCT_TYPE,
                        symbol: &vs,
                        plan_type: if stop { "loss_plan" } else { "profit_plan" },
                        trigger_price: trigger,
                        trigger_type: TRIGGER_TYPE,
                        execute_price: "0",
                        hold_side: parse::side_to_wire(request.side.opposite()),
                        size,
                        client_oid: cl,
                    };
                    (
                        self.client.post_place_tpsl_order(&body).await?,
                        "/api/v2/mix/order/place-tpsl-order",
                    )
                } else if stop {
                    let body = wire::PlacePlanBody {
                        plan_type: PLAN_NORMAL,
                        symbol: &vs,
                        product_type: PRODUCT_TYPE,
                        margin_mode: MARGIN_MODE,
                        margin_coin: USDT,
                        size,
                        trigger_price: trigger,
                        trigger_type: TRIGGER_TYPE,
                        side: parse::side_to_wire(request.side),
                        order_type: wire::OrderType::Market,
                        reduce_only: None,
                        client_oid: cl,
                    };
                    (
                        self.client.post_place_plan_order(&body).await?,
                        "/api/v2/mix/order/place-plan-order",
                    )
                } else {
                    return Err(ExchangeError::InvalidOrder {
                        venue: VENUE,
                        message: "a take-profit-market order closes a position: set reduce_only"
                            .into(),
                    });
                };
                match ack.and_then(|a| a.order_id) {
                    Some(id) => Ok(Self::placed(request, id)),
                    None => self.resolve_by_client_id(request, endpoint).await,
                }
            }
        }
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        let vs = parse::venue_symbol(symbol)?;
        let cl = client_order_id.as_str();
        let regular = wire::CancelOrderBody {
            symbol: &vs,
            product_type: PRODUCT_TYPE,
            margin_coin: USDT,
            client_oid: cl,
        };
        let not_regular = match self.client.post_cancel_order(&regular).await {
            Ok(_) => return Ok(()),
            Err(e @ ExchangeError::OrderNotFound { .. }) => e,
            Err(e) => return Err(e),
        };
        // Not a regular order: maybe a plan order; its plan type and id come from the pending list.
        let Some(plan) = self
            .find_plan(&vs, cl, |p: &wire::PlanIds| p.client_oid.as_deref())
            .await?
        else {
            return Err(not_regular);
        };
        let body = wire::CancelPlanBody {
            symbol: &vs,
            product_type: PRODUCT_TYPE,
            margin_coin: USDT,
            plan_type: Self::plan_type_text(plan.plan_type),
            order_id_list: vec![wire::IdItem {
                order_id: &plan.order_id,
                client_oid: Some(cl),
            }],
        };
        let endpoint = "/api/v2/mix/order/cancel-plan-order";
        let result = self.client.post_cancel_plan_order(&body).await?;
        let mut cancelled = 0;
        let mut first_error = None;
        Self::tally(&result, endpoint, &vs, &mut cancelled, &mut first_error);
        match (cancelled, first_error) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(ExchangeError::OrderNotFound {
                venue: VENUE,
                message: format!("{endpoint}: plan order {cl} was not cancelled (already gone)"),
            }),
            _ => Ok(()),
        }
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        let vs = parse::venue_symbol(symbol)?;
        let mut cancelled = 0u32;
        let mut first_error = None;

        let orders: Vec<wire::OrderIds> = self.pending_orders(&vs).await?;
        for chunk in orders.chunks(CANCEL_BATCH) {
            let body = wire::BatchCancelBody {
                symbol: &vs,
                product_type: PRODUCT_TYPE,
                margin_coin: USDT,
                order_id_list: chunk
                    .iter()
                    .map(|o| wire::IdItem {
                        order_id: &o.order_id,
                        client_oid: None,
                    })
                    .collect(),
            };
            match self.client.post_batch_cancel_orders(&body).await {
                Ok(result) => Self::tally(
                    &result,
                    "/api/v2/mix/order/batch-cancel-orders",
                    &vs,
                    &mut cancelled,
                    &mut first_error,
                ),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }

        let mut plans: Vec<wire::PlanIds> = self.pending_plans(&vs, PLAN_NORMAL, None).await?;
        plans.extend(
            self.pending_plans::<wire::PlanIds>(&vs, PLAN_TPSL, None)
                .await?,
        );
        let mut by_type: Vec<(wire::PlanType, Vec<&wire::PlanIds>)> = Vec::new();
        for p in &plans {
            match by_type.iter_mut().find(|(t, _)| *t == p.plan_type) {
                Some((_, list)) => list.push(p),
                None => by_type.push((p.plan_type, vec![p])),
            }
        }
        for (plan_type, list) in &by_type {
            for chunk in list.chunks(CANCEL_BATCH) {
                let body = wire::CancelPlanBody {
                    symbol: &vs,
                    product_type: PRODUCT_TYPE,
                    margin_coin: USDT,
                    plan_type: Self::plan_type_text(*plan_type),
                    order_id_list: chunk
                        .iter()
                        .map(|p| wire::IdItem {
                            order_id: &p.order_id,
                            client_oid: None,
                        })
                        .collect(),
                };
                match self.client.post_cancel_plan_order(&body).await {
                    Ok(result) => Self::tally(
                        &result,
                        "/api/v2/mix/order/cancel-plan-order",
                        &vs,
                        &mut cancelled,
                        &mut first_error,
                    ),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(cancelled),
        }
    }

    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>> {
        let vs = parse::venue_symbol(symbol)?;
        let orders: Vec<wire::Order> = self.pending_orders(&vs).await?;
        let mut plans: Vec<wire::PlanOrder> = self.pending_plans(&vs, PLAN_NORMAL, None).await?;
        plans.extend(
            self.pending_plans::<wire::PlanOrder>(&vs, PLAN_TPSL, None)
                .await?,
        );
        let mut out = Vec::with_capacity(orders.len() + plans.len());
        for o in &orders {
            out.push(parse::order(o)?);
        }
        for p in &plans {
            match parse::plan_order(p) {
                Ok(o) => out.push(o),
                Err(e @ ExchangeError::Unsupported { .. }) => {
                    tracing::warn!(venue = VENUE, error = %e, "plan order skipped");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        let vs = parse::venue_symbol(symbol)?;
        let cl = client_order_id.as_str();
        // Regular orders: the detail answers for open, filled and canceled orders alike.
        match self.client.get_order_detail(&vs, cl).await {
            Ok(Some(o)) => return parse::order(&o).map(Some),
            Ok(None) | Err(ExchangeError::OrderNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        // Plan orders: pending ones first, then the history (triggered, failed, cancelled).
        if let Some(p) = self
            .find_plan(&vs, cl, |p: &wire::PlanOrder| p.client_oid.as_deref())
            .await?
        {
            return parse::plan_order(&p).map(Some);
        }
        for family in [PLAN_NORMAL, PLAN_TPSL] {
            let done: Vec<wire::PlanOrder> =
                self.client.get_orders_plan_history(&vs, family, cl).await?;
            if let Some(p) = done.iter().find(|p| p.client_oid.as_deref() == Some(cl)) {
                return parse::plan_order(p).map(Some);
            }
        }
        Ok(None)
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        self.client.get_public_time().await?;
        if !self.client.has_credentials() {
            return Ok(AccountCheck {
                notes: vec!["no credentials: only public endpoints were checked".into()],
                ..AccountCheck::default()
            });
        }
        // A classic-account call: a Unified Trading Account fails here with code 40085.
        let account = self.client.get_account_account("BTCUSDT", USDT).await?;
        let mut check = AccountCheck {
            notes: vec![
                "Bitget does not report key permissions on the futures API; the key was accepted \
                 by a private USDT-FUTURES endpoint"
                    .into(),
            ],
            ..AccountCheck::default()
        };
        match account.pos_mode.as_deref() {
            Some("one_way_mode") | None => {}
            Some(other) => check.notes.push(format!(
                "position mode is {other}; tradefleet trades one-way mode (set one_way_mode)"
            )),
        }
        match account.margin_mode.as_deref() {
            Some("crossed") | None => {}
            Some(other) => check.notes.push(format!(
                "BTCUSDT margin mode is {other}; tradefleet places crossed-margin orders (set \
                 crossed)"
            )),
        }
        if let Some(a) = account.asset_mode.as_deref() {
            check.notes.push(format!("asset mode {a}"));
        }
        Ok(check)
    }
}
