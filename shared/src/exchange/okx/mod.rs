//! OKX V5 adapter for USDT-margined perpetual SWAPs: `BTC-USDT-SWAP` <-> `BTC/USDT:USDT`, sizes in
//! contracts on the wire and base coin outside. Layers: `client` (endpoints, signing, envelope) ->
//! `wire` (serde models) -> `parse` (domain types) -> `impl Exchange` here; `errors` maps codes.

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

use client::{BatchItem, OkxClient, PAGE_LIMIT, PRODUCTION_URL};
use parse::Spec;

const VENUE: &str = "okx";

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: VENUE,
    display_name: "OKX V5 SWAP",
    has_testnet: true,
    needs_passphrase: true,
    trades_in_contracts: true,
    notes: "USDT-margined perpetual SWAPs (BTC-USDT-SWAP = BTC/USDT:USDT), cross margin, \
            net position mode. Sizes are whole lots of contracts (ctVal x lotSz base coin): \
            other quantities are rejected, never resized. Stops and take-profits are \
            conditional algo orders. Demo trading: same host with x-simulated-trading: 1 and \
            demo keys. No 8h candles.",
    build,
};

/// Margin mode of every order and leverage setting.
const TD_MODE: &str = "cross";
/// Instrument specs are re-read after this long (OKX announces tick/lot changes ahead).
const SPEC_TTL: Duration = Duration::from_secs(3_600);
/// Candle rows per request on `/market/candles` and `/market/history-candles`.
const CANDLES_PAGE: usize = 300;
const HISTORY_PAGE: usize = 100;
/// `/market/candles` reaches back this many bars; older ones need `/market/history-candles`.
const RECENT_BARS: i64 = 1_440;
/// Upper bound on pages of one listing, so a misbehaving venue cannot loop us forever.
const MAX_PAGES: usize = 50;
/// Batch sizes of the cancel endpoints.
const CANCEL_BATCH: usize = 20;
const CANCEL_ALGO_BATCH: usize = 10;
/// Algo kinds cancel-all removes (the adapter itself only places `conditional`).
const CANCEL_ALL_ALGO_TYPES: &str = "conditional,oco";

/// Follow `after`-cursor pages of up to `PAGE_LIMIT` rows until a short page (or `MAX_PAGES`).
async fn all_pages<T, F, Fut, I>(mut fetch: F, id: I) -> ExchangeResult<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = ExchangeResult<Vec<T>>>,
    I: Fn(&T) -> String,
{
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = fetch(after.take()).await?;
        let full = page.len() >= PAGE_LIMIT;
        after = page.last().map(&id);
        all.extend(page);
        if !full || after.is_none() {
            break;
        }
    }
    Ok(all)
}

fn build(params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    let base_url = params.base_url.as_deref().unwrap_or(PRODUCTION_URL);
    let client = OkxClient::new(
        base_url,
        params.credentials.as_ref(),
        params.testnet,
        params.http.clone(),
    )?;
    Ok(Arc::new(Okx {
        client,
        specs: Mutex::new(HashMap::new()),
    }))
}

/// One OKX account (or the public API only, without credentials).
#[derive(Debug)]
struct Okx {
    client: OkxClient,
    specs: Mutex<HashMap<String, (Instant, Arc<Spec>)>>,
}

impl Okx {
    fn cached_spec(&self, inst_id: &str) -> Option<Arc<Spec>> {
        let specs = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        specs
            .get(inst_id)
            .filter(|(at, _)| at.elapsed() < SPEC_TTL)
            .map(|(_, s)| Arc::clone(s))
    }

    /// Read the instrument from the venue and cache it.
    async fn fetch_spec(&self, symbol: &Symbol, inst_id: &str) -> ExchangeResult<Arc<Spec>> {
        let rows = self.client.get_public_instruments(inst_id).await?;
        let row = rows.iter().find(|r| r.inst_id == inst_id).ok_or_else(|| {
            ExchangeError::UnknownSymbol {
                venue: VENUE,
                symbol: symbol.to_string(),
                message: format!("OKX lists no SWAP {inst_id}"),
            }
        })?;
        let spec = Arc::new(parse::instrument(symbol, row)?);
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(inst_id.to_string(), (Instant::now(), Arc::clone(&spec)));
        Ok(spec)
    }

    async fn spec(&self, symbol: &Symbol) -> ExchangeResult<(String, Arc<Spec>)> {
        let inst_id = parse::inst_id(symbol)?;
        if let Some(s) = self.cached_spec(&inst_id) {
            return Ok((inst_id, s));
        }
        let s = self.fetch_spec(symbol, &inst_id).await?;
        Ok((inst_id, s))
    }

    /// Every pending regular order (all pages) of `inst_id`.
    async fn pending_orders<T, F>(&self, inst_id: &str, id: F) -> ExchangeResult<Vec<T>>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&T) -> String,
    {
        all_pages(
            |after| async move {
                self.client
                    .get_trade_orders_pending(inst_id, after.as_deref())
                    .await
            },
            id,
        )
        .await
    }

    /// Every pending algo order of the given types (all pages) of `inst_id`.
    async fn pending_algos<T, F>(
        &self,
        inst_id: &str,
        ord_type: &str,
        id: F,
    ) -> ExchangeResult<Vec<T>>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&T) -> String,
    {
        all_pages(
            |after| async move {
                self.client
                    .get_trade_orders_algo_pending(inst_id, ord_type, after.as_deref())
                    .await
            },
            id,
        )
        .await
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

    /// Count the successes of a batch; "already gone" items are skipped, other failures kept.
    fn tally(
        items: &[BatchItem],
        endpoint: &str,
        inst_id: &str,
        cancelled: &mut u32,
        first_error: &mut Option<ExchangeError>,
    ) {
        for item in items {
            match item.error(endpoint, inst_id) {
                None => *cancelled += 1,
                Some(ExchangeError::OrderNotFound { .. }) => {}
                Some(e) => {
                    tracing::warn!(venue = VENUE, error = %e, ord_id = ?item.ord_id, algo_id = ?item.algo_id, "cancel failed");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
}

#[async_trait]
impl Exchange for Okx {
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
        let inst_id = parse::inst_id(symbol)?;
        let bar = parse::bar(timeframe)?;
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let step = timeframe.millis();
        let mut out: Vec<Candle> = Vec::new();
        match since {
            None => {
                // Latest candles, newest page first, walking back with `after` (older than).
                let mut after: Option<i64> = None;
                for _ in 0..MAX_PAGES {
                    let n = (wanted - out.len()).min(CANDLES_PAGE);
                    let endpoint = "/api/v5/market/candles";
                    let rows = self
                        .client
                        .get_candles(false, &inst_id, bar, after, None, n)
                        .await?;
                    let page = parse::candles(&rows, endpoint)?;
                    let Some(oldest) = page.first().map(|c| c.open_time.timestamp_millis()) else {
                        break;
                    };
                    let mut merged = page;
                    merged.extend(out);
                    out = merged;
                    if out.len() >= wanted || rows.len() < n {
                        break;
                    }
                    after = Some(oldest);
                }
                let excess = out.len().saturating_sub(wanted);
                out.drain(..excess);
            }
            Some(since) => {
                // A window [cursor, cursor + n bars) per request: before = cursor - 1 (newer
                // than), after = cursor + n * bar (older than).
                let now = Utc::now().timestamp_millis();
                let history = since.timestamp_millis() < now - (RECENT_BARS - 1) * step;
                let (page_size, endpoint) = if history {
                    (HISTORY_PAGE, "/api/v5/market/history-candles")
                } else {
                    (CANDLES_PAGE, "/api/v5/market/candles")
                };
                let mut cursor = since.timestamp_millis();
                for _ in 0..MAX_PAGES {
                    if cursor > now {
                        break;
                    }
                    let n = (wanted - out.len()).min(page_size);
                    let end = cursor.saturating_add(step.saturating_mul(n as i64));
                    let rows = self
                        .client
                        .get_candles(history, &inst_id, bar, Some(end), Some(cursor - 1), n)
                        .await?;
                    let page = parse::candles(&rows, endpoint)?;
                    out.extend(page);
                    if out.len() >= wanted {
                        break;
                    }
                    cursor = end;
                }
                out.truncate(wanted);
            }
        }
        Ok(out)
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        let inst_id = parse::inst_id(symbol)?;
        let rows = self.client.get_market_ticker(&inst_id).await?;
        let row = rows.first().ok_or_else(|| ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: "empty ticker".into(),
        })?;
        parse::ticker(symbol, row)
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        let inst_id = parse::inst_id(symbol)?;
        Ok(self.fetch_spec(symbol, &inst_id).await?.instrument.clone())
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        let data = self.client.get_account_balance(asset).await?;
        Ok(parse::balance(asset, &data))
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        let inst = symbol.map(parse::inst_id).transpose()?;
        let rows = self.client.get_account_positions(inst.as_deref()).await?;
        let mut out = Vec::new();
        for row in &rows {
            if row.inst_type != "SWAP" || row.pos.unwrap_or_default().is_zero() {
                continue;
            }
            let sym = match parse::symbol_of(&row.inst_id) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(venue = VENUE, inst_id = %row.inst_id, error = %e, "position skipped");
                    continue;
                }
            };
            let (_, spec) = self.spec(&sym).await?;
            if let Some(p) = parse::position(row, spec.ct_val)? {
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
        let inst_id = parse::inst_id(symbol)?;
        let body = wire::SetLeverageBody {
            inst_id: &inst_id,
            lever: leverage.to_string(),
            mgn_mode: TD_MODE,
        };
        let acks = self.client.post_set_leverage(&body).await?;
        match acks.first().and_then(|a| a.lever) {
            Some(l) if l != Decimal::from(leverage) => Err(ExchangeError::Venue {
                venue: VENUE,
                code: "leverage".into(),
                message: format!("asked for leverage {leverage}, OKX answered {l}"),
            }),
            _ => Ok(()),
        }
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        let (inst_id, spec) = self.spec(&request.symbol).await?;
        let sz = parse::text(parse::contracts(&spec, request.quantity)?);
        let side = parse::side_to_wire(request.side);
        let reduce_only = request.reduce_only.then_some(true);
        let cl = request.client_order_id.as_str();
        let placed = |exchange_order_id: String, ts: Option<i64>| Order {
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
            created_at: ts.and_then(crate::exchange::wire::millis_to_time),
            updated_at: None,
        };
        match request.order_type {
            OrderType::Market | OrderType::Limit => {
                let (ord_type, px) = match request.order_type {
                    OrderType::Limit => {
                        let price = request.price.ok_or_else(|| ExchangeError::InvalidOrder {
                            venue: VENUE,
                            message: "a limit order needs a price".into(),
                        })?;
                        (
                            wire::OrdType::Limit,
                            Some(Self::check_tick(&spec, "price", price)?),
                        )
                    }
                    _ => (wire::OrdType::Market, None),
                };
                let body = wire::PlaceOrderBody {
                    inst_id: &inst_id,
                    td_mode: TD_MODE,
                    side,
                    ord_type,
                    sz,
                    px,
                    reduce_only,
                    cl_ord_id: cl,
                };
                let acks = self.client.post_trade_order(&body).await?;
                let ack = acks.first().ok_or_else(|| {
                    ExchangeError::malformed(VENUE, "/api/v5/trade/order", "no order in the answer")
                })?;
                let ord_id = ack.ord_id.clone().ok_or_else(|| {
                    ExchangeError::malformed(VENUE, "/api/v5/trade/order", "answer without ordId")
                })?;
                Ok(placed(ord_id, ack.ts))
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
                let trigger = Self::check_tick(&spec, "trigger price", trigger)?;
                let stop = request.order_type == OrderType::StopMarket;
                let body = wire::PlaceAlgoBody {
                    inst_id: &inst_id,
                    td_mode: TD_MODE,
                    side,
                    ord_type: wire::AlgoOrdType::Conditional,
                    sz,
                    reduce_only,
                    algo_cl_ord_id: cl,
                    sl_trigger_px: stop.then(|| trigger.clone()),
                    sl_ord_px: stop.then_some("-1"),
                    tp_trigger_px: (!stop).then(|| trigger.clone()),
                    tp_ord_px: (!stop).then_some("-1"),
                };
                let acks = self.client.post_trade_order_algo(&body).await?;
                let algo_id = acks
                    .first()
                    .and_then(|a| a.algo_id.clone())
                    .ok_or_else(|| {
                        ExchangeError::malformed(
                            VENUE,
                            "/api/v5/trade/order-algo",
                            "answer without algoId",
                        )
                    })?;
                Ok(placed(algo_id, None))
            }
        }
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        let inst_id = parse::inst_id(symbol)?;
        let cl = client_order_id.as_str();
        let regular = wire::CancelOrderBody {
            inst_id: &inst_id,
            ord_id: None,
            cl_ord_id: Some(cl),
        };
        match self.client.post_trade_cancel_order(&regular).await {
            Ok(_) => return Ok(()),
            Err(ExchangeError::OrderNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        // Not a regular order: maybe a conditional one, under its algoClOrdId.
        let algo = [wire::CancelAlgoBody {
            inst_id: &inst_id,
            algo_id: None,
            algo_cl_ord_id: Some(cl),
        }];
        let items = self.client.post_trade_cancel_algos(&inst_id, &algo).await?;
        match items.first() {
            None => Err(ExchangeError::malformed(
                VENUE,
                "/api/v5/trade/cancel-algos",
                "no result item",
            )),
            Some(item) => match item.error("/api/v5/trade/cancel-algos", &inst_id) {
                None => Ok(()),
                Some(e) => Err(e),
            },
        }
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        let inst_id = parse::inst_id(symbol)?;
        let mut cancelled = 0u32;
        let mut first_error = None;

        let orders: Vec<wire::OrdId> = self
            .pending_orders(&inst_id, |o: &wire::OrdId| o.ord_id.clone())
            .await?;
        for chunk in orders.chunks(CANCEL_BATCH) {
            let items: Vec<_> = chunk
                .iter()
                .map(|o| wire::CancelOrderBody {
                    inst_id: &inst_id,
                    ord_id: Some(&o.ord_id),
                    cl_ord_id: None,
                })
                .collect();
            match self
                .client
                .post_trade_cancel_batch_orders(&inst_id, &items)
                .await
            {
                Ok(results) => Self::tally(
                    &results,
                    "/api/v5/trade/cancel-batch-orders",
                    &inst_id,
                    &mut cancelled,
                    &mut first_error,
                ),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }

        let algos: Vec<wire::AlgoId> = self
            .pending_algos(&inst_id, CANCEL_ALL_ALGO_TYPES, |a: &wire::AlgoId| {
                a.algo_id.clone()
            })
            .await?;
        for chunk in algos.chunks(CANCEL_ALGO_BATCH) {
            let items: Vec<_> = chunk
                .iter()
                .map(|a| wire::CancelAlgoBody {
                    inst_id: &inst_id,
                    algo_id: Some(&a.algo_id),
                    algo_cl_ord_id: None,
                })
                .collect();
            match self.client.post_trade_cancel_algos(&inst_id, &items).await {
                Ok(results) => Self::tally(
                    &results,
                    "/api/v5/trade/cancel-algos",
                    &inst_id,
                    &mut cancelled,
                    &mut first_error,
                ),
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
        let (inst_id, spec) = self.spec(symbol).await?;
        let orders: Vec<wire::Order> = self
            .pending_orders(&inst_id, |o: &wire::Order| o.ord_id.clone())
            .await?;
        let algos: Vec<wire::AlgoOrder> = self
            .pending_algos(&inst_id, "conditional", |a: &wire::AlgoOrder| {
                a.algo_id.clone()
            })
            .await?;
        let mut out = Vec::with_capacity(orders.len() + algos.len());
        for o in &orders {
            out.push(parse::order(o, spec.ct_val)?);
        }
        for a in &algos {
            out.push(parse::algo_order(a, spec.ct_val)?);
        }
        Ok(out)
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        let (inst_id, spec) = self.spec(symbol).await?;
        let cl = client_order_id.as_str();
        // Regular orders: GET /trade/order also answers for filled and canceled ones (OKX keeps
        // unfilled canceled orders about 2 hours). The history lists cannot filter by client id.
        match self.client.get_trade_order(&inst_id, cl).await {
            Ok(rows) => {
                if let Some(o) = rows.first() {
                    return parse::order(o, spec.ct_val).map(Some);
                }
            }
            Err(ExchangeError::OrderNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.client.get_trade_order_algo(&inst_id, cl).await {
            Ok(rows) => match rows.first() {
                Some(a) => parse::algo_order(a, spec.ct_val).map(Some),
                None => Ok(None),
            },
            Err(ExchangeError::OrderNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        self.client.get_public_time().await?;
        if !self.client.has_credentials() {
            return Ok(AccountCheck {
                notes: vec!["no credentials: only public endpoints were checked".into()],
                ..AccountCheck::default()
            });
        }
        let config = self.client.get_account_config().await?;
        let config = config.first().ok_or_else(|| {
            ExchangeError::malformed(VENUE, "/api/v5/account/config", "empty data")
        })?;
        let mut check = AccountCheck::default();
        if let Some(perm) = &config.perm {
            let perms: Vec<&str> = perm.split(',').map(str::trim).collect();
            check.can_trade = Some(perms.contains(&"trade"));
            check.can_withdraw = Some(perms.contains(&"withdraw"));
            check.notes.push(format!("key permissions: {perm}"));
        }
        match config.pos_mode.as_deref() {
            Some("net_mode") | None => {}
            Some(other) => check.notes.push(format!(
                "position mode is {other}; the fleet trades net positions (set net_mode)"
            )),
        }
        if config.acct_lv.as_deref() == Some("1") {
            check
                .notes
                .push("account mode is Spot (acctLv 1): SWAP trading needs a futures mode".into());
        }
        Ok(check)
    }
}
