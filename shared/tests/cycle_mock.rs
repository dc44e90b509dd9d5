//! The whole bot cycle against a stateful loopback mock of Bybit V5, through the real Bybit
//! adapter: entry + stop-loss + take-profit placed once with their deterministic orderLinkIds, a
//! retried slot creates nothing, a triggered stop becomes a trade with exact PnL, and a rejected
//! stop-loss closes the entry at once.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tradefleet::bot::crawl::NoCache;
use tradefleet::bot::cycle::{CycleOutcome, CycleSpec, CycleState, run_cycle};
use tradefleet::bot::execution::{ExecutionSettings, ExitReason, NoGate};
use tradefleet::bot::order_ids::{OrderRole, client_order_id};
use tradefleet::bot::risk::RiskConfig;
use tradefleet::bot::signal::{Action, Signal};
use tradefleet::bot::sizing::SizingDecision;
use tradefleet::bot::strategy::{MarketView, Strategy, StrategyError};
use tradefleet::clock::{Clock, ManualClock};
use tradefleet::domain::{OrderStatus, OrderType, Symbol, Timeframe};
use tradefleet::exchange::http::HttpSettings;
use tradefleet::exchange::idempotent::ReconcilePolicy;
use tradefleet::exchange::{Credentials, Exchange, VenueParams, build_exchange};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// 2025-11-21 04:30 UTC, on the 5m grid: the cycle's slot and the mock's time in step 1.
const T0: i64 = 1_763_699_400;
/// Close of the last closed 5m candle at `T0` (04:25-04:30); the other candles wiggle around it.
const LAST_CLOSE: Decimal = dec!(91234.5);
/// Where market orders fill in these tests (buys a little above the last close, sells below).
const BUY_FILL: Decimal = dec!(91240.0);
const SELL_FILL: Decimal = dec!(91229.0);
/// Taker fee rate of every fill.
const FEE_RATE: Decimal = dec!(0.00055);
/// Equity of the account before any trade.
const START_EQUITY: Decimal = dec!(10000);
/// The strategy's stop and target: off the 0.10 tick grid on purpose.
const STOP: Decimal = dec!(89876.54);
const TARGET: Decimal = dec!(93456.78);
const LEVERAGE: u32 = 10;
const SUBSCRIPTION: i64 = 42;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

fn link_id(subscription: i64, role: OrderRole) -> String {
    client_order_id(subscription, at(T0), role, 0)
        .unwrap()
        .as_str()
        .to_string()
}

fn s(d: Decimal) -> String {
    d.normalize().to_string()
}

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/bybit/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The mock venue
// ---------------------------------------------------------------------------------------------

/// One order as the mock keeps it (enough of Bybit's order row to answer look-ups).
#[derive(Debug, Clone)]
struct MockOrder {
    order_id: String,
    link_id: String,
    side: String,
    /// `""` for a plain order, `"Stop"` for a stand-alone conditional one.
    stop_order_type: String,
    trigger_price: Option<Decimal>,
    trigger_direction: i64,
    qty: Decimal,
    reduce_only: bool,
    status: String,
    filled: Decimal,
    avg_price: Option<Decimal>,
    fee: Decimal,
    created_ms: i64,
    updated_ms: i64,
}

impl MockOrder {
    fn is_open(&self) -> bool {
        matches!(
            self.status.as_str(),
            "New" | "Untriggered" | "PartiallyFilled"
        )
    }

    fn row(&self) -> Value {
        json!({
            "orderId": self.order_id,
            "orderLinkId": self.link_id,
            "symbol": "BTCUSDT",
            "price": "0",
            "qty": s(self.qty),
            "side": self.side,
            "positionIdx": 0,
            "orderStatus": self.status,
            "avgPrice": self.avg_price.map(s).unwrap_or_default(),
            "leavesQty": s(self.qty - self.filled),
            "cumExecQty": s(self.filled),
            "cumExecFee": s(self.fee),
            "timeInForce": "IOC",
            "orderType": "Market",
            "stopOrderType": self.stop_order_type,
            "triggerPrice": self.trigger_price.map_or_else(|| "0.00".to_string(), s),
            "triggerDirection": self.trigger_direction,
            "triggerBy": if self.trigger_price.is_some() { "LastPrice" } else { "" },
            "reduceOnly": self.reduce_only,
            "closeOnTrigger": self.trigger_price.is_some() && self.reduce_only,
            "createdTime": self.created_ms.to_string(),
            "updatedTime": self.updated_ms.to_string(),
        })
    }
}

/// The one-way position of BTCUSDT.
#[derive(Debug, Clone)]
struct MockPosition {
    /// `Buy` (long) or `Sell` (short).
    side: String,
    size: Decimal,
    avg_price: Decimal,
}

/// Everything the mock venue remembers between requests.
#[derive(Debug)]
struct State {
    clock: Arc<ManualClock>,
    /// Deposits + realized PnL - fees.
    wallet: Decimal,
    mark: Decimal,
    buy_fill: Decimal,
    sell_fill: Decimal,
    leverage: Option<u32>,
    position: Option<MockPosition>,
    orders: Vec<MockOrder>,
    /// Reject every conditional order with this retCode and message.
    reject_conditional: Option<(i64, &'static str)>,
    /// Fill opening market orders only this fraction of the way (rounded down to the 0.001
    /// step), the rest cancelled: Bybit's `PartiallyFilledCanceled`.
    entry_fill_ratio: Option<Decimal>,
    next_order_id: u64,
}

impl State {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn unrealised(&self) -> Decimal {
        self.position.as_ref().map_or(Decimal::ZERO, |p| {
            let dir = if p.side == "Buy" {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            (self.mark - p.avg_price) * p.size * dir
        })
    }

    /// A fill of `qty` at `price` paying `fee`: opens, adds to or reduces the position.
    fn apply_fill(&mut self, side: &str, qty: Decimal, price: Decimal, fee: Decimal) {
        self.wallet -= fee;
        match self.position.take() {
            None => {
                self.position = Some(MockPosition {
                    side: side.to_string(),
                    size: qty,
                    avg_price: price,
                });
            }
            Some(mut p) if p.side == side => {
                p.avg_price = (p.avg_price * p.size + price * qty) / (p.size + qty);
                p.size += qty;
                self.position = Some(p);
            }
            Some(mut p) => {
                let closed = qty.min(p.size);
                let dir = if p.side == "Buy" {
                    Decimal::ONE
                } else {
                    Decimal::NEGATIVE_ONE
                };
                self.wallet += (price - p.avg_price) * closed * dir;
                p.size -= closed;
                if p.size > Decimal::ZERO {
                    self.position = Some(p);
                }
            }
        }
    }

    /// The conditional order `link` triggered and filled at `price` (moves the mark there).
    fn fill_conditional(&mut self, link: &str, price: Decimal) {
        let now = self.now_ms();
        let i = self.orders.iter().position(|o| o.link_id == link).unwrap();
        let o = &mut self.orders[i];
        assert_eq!(o.status, "Untriggered", "{link}");
        let fee = o.qty * price * FEE_RATE;
        o.status = "Filled".into();
        o.filled = o.qty;
        o.avg_price = Some(price);
        o.fee = fee;
        o.updated_ms = now;
        let (side, qty) = (o.side.clone(), o.qty);
        self.mark = price;
        self.apply_fill(&side, qty, price, fee);
    }

    fn order(&self, link: &str) -> Option<&MockOrder> {
        self.orders.iter().find(|o| o.link_id == link)
    }
}

fn envelope(result: Value, time_ms: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": time_ms
    }))
}

fn rejected(code: i64, msg: &str, time_ms: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": time_ms
    }))
}

/// Close of the candle opening at `open` (seconds) on a grid of `step` seconds: the candle that
/// closes at `T0` closes at [`LAST_CLOSE`], its neighbours 2.5 apart in a five-candle wave.
fn close_of(open: i64, step: i64) -> Decimal {
    let n = (open - (T0 - step)).div_euclid(step);
    LAST_CLOSE + dec!(2.5) * Decimal::from((n + 2).rem_euclid(5) - 2)
}

/// The mock venue: one responder for every path, sharing the state.
struct Venue(Arc<Mutex<State>>);

impl Venue {
    fn klines(st: &State, q: &HashMap<String, String>) -> ResponseTemplate {
        let now = st.clock.now().timestamp();
        let step: i64 = match q.get("interval").map(String::as_str) {
            Some("1") => 60,
            Some("5") => 300,
            _ => return rejected(10001, "params error: interval", st.now_ms()),
        };
        let limit: i64 = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(200)
            .clamp(1, 1000);
        if q.contains_key("start") || q.contains_key("end") {
            return rejected(
                10001,
                "the mock serves only the latest candles",
                st.now_ms(),
            );
        }
        // Newest first; the first row is the candle still forming at the mock's time.
        let forming = now.div_euclid(step) * step;
        let list: Vec<Value> = (0..limit)
            .map(|i| {
                let open_time = forming - i * step;
                let open = close_of(open_time - step, step);
                let close = close_of(open_time, step);
                let high = open.max(close) + dec!(3.0);
                let low = open.min(close) - dec!(3.0);
                json!([
                    (open_time * 1000).to_string(),
                    s(open),
                    s(high),
                    s(low),
                    s(close),
                    "12.345",
                    s(close * dec!(12.345)),
                ])
            })
            .collect();
        envelope(
            json!({"category": "linear", "symbol": "BTCUSDT", "list": list}),
            st.now_ms(),
        )
    }

    fn wallet(st: &State) -> ResponseTemplate {
        let upnl = st.unrealised();
        let equity = st.wallet + upnl;
        let im = st.position.as_ref().map_or(Decimal::ZERO, |p| {
            p.size * p.avg_price / Decimal::from(st.leverage.unwrap_or(1))
        });
        envelope(
            json!({"list": [{
                "accountType": "UNIFIED",
                "totalEquity": s(equity),
                "totalWalletBalance": s(st.wallet),
                "totalAvailableBalance": s(equity - im),
                "coin": [{
                    "coin": "USDT",
                    "equity": s(equity),
                    "walletBalance": s(st.wallet),
                    "unrealisedPnl": s(upnl),
                    "totalPositionIM": s(im),
                    "totalOrderIM": "0",
                    "locked": "0",
                }],
            }]}),
            st.now_ms(),
        )
    }

    fn positions(st: &State) -> ResponseTemplate {
        // One-way mode always lists the symbol; an empty position has side "" and size 0.
        let row = match &st.position {
            Some(p) => json!({
                "positionIdx": 0, "symbol": "BTCUSDT", "side": p.side, "size": s(p.size),
                "avgPrice": s(p.avg_price), "markPrice": s(st.mark),
                "unrealisedPnl": s(st.unrealised()),
                "leverage": st.leverage.unwrap_or(1).to_string(), "liqPrice": "",
            }),
            None => json!({
                "positionIdx": 0, "symbol": "BTCUSDT", "side": "", "size": "0",
                "avgPrice": "0", "markPrice": s(st.mark), "unrealisedPnl": "0",
                "leverage": st.leverage.unwrap_or(1).to_string(), "liqPrice": "",
            }),
        };
        envelope(
            json!({"category": "linear", "list": [row], "nextPageCursor": ""}),
            st.now_ms(),
        )
    }

    fn set_leverage(st: &mut State, body: &Value) -> ResponseTemplate {
        let lev = body["buyLeverage"]
            .as_str()
            .and_then(|l| l.parse::<u32>().ok());
        match lev {
            None => rejected(10001, "params error: buyLeverage", st.now_ms()),
            Some(l) if st.leverage == Some(l) => {
                rejected(110043, "Set leverage not modified", st.now_ms())
            }
            Some(l) => {
                st.leverage = Some(l);
                envelope(json!({}), st.now_ms())
            }
        }
    }

    fn create(st: &mut State, body: &Value) -> ResponseTemplate {
        let now = st.now_ms();
        let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        let (link, side, order_type) = (text("orderLinkId"), text("side"), text("orderType"));
        let Ok(qty) = text("qty").parse::<Decimal>() else {
            return rejected(10001, "params error: qty", now);
        };
        if body["category"] != "linear" || body["symbol"] != "BTCUSDT" || order_type != "Market" {
            return rejected(
                10001,
                "params error: the mock trades linear BTCUSDT at market",
                now,
            );
        }
        if st.order(&link).is_some() {
            return rejected(110072, "OrderLinkedID is duplicate", now);
        }
        let reduce_only = body["reduceOnly"].as_bool().unwrap_or(false);
        let trigger = body["triggerPrice"]
            .as_str()
            .map(|t| t.parse::<Decimal>().unwrap_or_default());
        if trigger.is_some() {
            if let Some((code, msg)) = st.reject_conditional {
                return rejected(code, msg, now);
            }
        } else if reduce_only {
            let reducible = st.position.as_ref().is_some_and(|p| p.side != side);
            if !reducible {
                return rejected(
                    110017,
                    "current position is zero, cannot fix reduce-only order qty",
                    now,
                );
            }
        }
        st.next_order_id += 1;
        let order_id = format!("77000000000000{:05}", st.next_order_id);
        let mut order = MockOrder {
            order_id: order_id.clone(),
            link_id: link.clone(),
            side: side.clone(),
            stop_order_type: String::new(),
            trigger_price: trigger,
            trigger_direction: body["triggerDirection"].as_i64().unwrap_or(0),
            qty,
            reduce_only,
            status: "New".into(),
            filled: Decimal::ZERO,
            avg_price: None,
            fee: Decimal::ZERO,
            created_ms: now,
            updated_ms: now,
        };
        if trigger.is_some() {
            // A conditional order rests until the test moves the market through it.
            order.stop_order_type = "Stop".into();
            order.status = "Untriggered".into();
        } else {
            // A market order fills at once, in full.
            let price = if side == "Buy" {
                st.buy_fill
            } else {
                st.sell_fill
            };
            let (filled, status) = match st.entry_fill_ratio {
                Some(r) if !reduce_only => (
                    (qty * r / dec!(0.001)).floor() * dec!(0.001),
                    "PartiallyFilledCanceled",
                ),
                _ => (qty, "Filled"),
            };
            let fee = filled * price * FEE_RATE;
            order.status = status.into();
            order.filled = filled;
            order.avg_price = Some(price);
            order.fee = fee;
            st.apply_fill(&side, filled, price, fee);
        }
        st.orders.push(order);
        // Bybit only acknowledges a create.
        envelope(json!({"orderId": order_id, "orderLinkId": link}), now)
    }

    fn order_list(st: &State, q: &HashMap<String, String>, open: bool) -> ResponseTemplate {
        let list: Vec<Value> = st
            .orders
            .iter()
            .filter(|o| o.is_open() == open)
            .filter(|o| q.get("orderLinkId").is_none_or(|l| *l == o.link_id))
            .map(MockOrder::row)
            .collect();
        envelope(
            json!({"category": "linear", "list": list, "nextPageCursor": ""}),
            st.now_ms(),
        )
    }

    fn cancel_all(st: &mut State) -> ResponseTemplate {
        let now = st.now_ms();
        let mut list = Vec::new();
        for o in st.orders.iter_mut().filter(|o| o.is_open()) {
            o.status = if o.stop_order_type.is_empty() {
                "Cancelled".into()
            } else {
                "Deactivated".into()
            };
            o.updated_ms = now;
            list.push(json!({"orderId": o.order_id, "orderLinkId": o.link_id}));
        }
        envelope(json!({"list": list, "success": "1"}), now)
    }
}

impl Respond for Venue {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = st.now_ms();
        let path = req.url.path();
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let public = path.starts_with("/v5/market/");
        if !public && req.headers.get("x-bapi-sign").is_none() {
            return rejected(10003, "API key is invalid", now);
        }
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return rejected(10001, "params error: body", now),
            }
        };
        match (req.method.as_str(), path) {
            ("GET", "/v5/market/time") => envelope(
                json!({
                    "timeSecond": (now / 1000).to_string(),
                    "timeNano": (i128::from(now) * 1_000_000).to_string(),
                }),
                now,
            ),
            ("GET", "/v5/market/kline") => Venue::klines(&st, &q),
            ("GET", "/v5/market/instruments-info") => {
                ResponseTemplate::new(200).set_body_string(fixture("instruments_linear.json"))
            }
            ("GET", "/v5/account/wallet-balance") => Venue::wallet(&st),
            ("GET", "/v5/position/list") => Venue::positions(&st),
            ("POST", "/v5/position/set-leverage") => Venue::set_leverage(&mut st, &body),
            ("POST", "/v5/order/create") => Venue::create(&mut st, &body),
            ("GET", "/v5/order/realtime") => Venue::order_list(&st, &q, true),
            ("GET", "/v5/order/history") => Venue::order_list(&st, &q, false),
            ("POST", "/v5/order/cancel-all") => Venue::cancel_all(&mut st),
            _ => ResponseTemplate::new(404),
        }
    }
}

/// A started mock venue, its shared state and the adapter pointed at it.
struct Mocked {
    server: MockServer,
    state: Arc<Mutex<State>>,
    clock: Arc<ManualClock>,
    exchange: Arc<dyn Exchange>,
}

impl Mocked {
    async fn start() -> Self {
        Self::start_with(Credentials {
            api_key: "mock-key".into(),
            api_secret: "mock-secret".into(),
            passphrase: None,
        })
        .await
    }

    async fn start_with(credentials: Credentials) -> Self {
        let clock = Arc::new(ManualClock::new(at(T0)));
        let state = Arc::new(Mutex::new(State {
            clock: clock.clone(),
            wallet: START_EQUITY,
            mark: LAST_CLOSE,
            buy_fill: BUY_FILL,
            sell_fill: SELL_FILL,
            leverage: None,
            position: None,
            orders: Vec::new(),
            reject_conditional: None,
            entry_fill_ratio: None,
            next_order_id: 0,
        }));
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(Venue(state.clone()))
            .mount(&server)
            .await;
        let params = VenueParams {
            base_url: Some(server.uri()),
            credentials: Some(credentials),
            http: HttpSettings {
                timeout_ms: 5_000,
                backoff_base_ms: 1,
                backoff_max_ms: 5,
                max_retries: 1,
                ..HttpSettings::default()
            },
            clock: clock.clone(),
            ..VenueParams::default()
        };
        let exchange = build_exchange("bybit", &params).unwrap();
        Self {
            server,
            state,
            clock,
            exchange,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Bodies of the requests received on `method path`, in order.
    async fn bodies(&self, method: &str, path: &str) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.url.path() == path)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    async fn creates(&self) -> Vec<Value> {
        self.bodies("POST", "/v5/order/create").await
    }

    async fn cycle(
        &self,
        subscription: i64,
        strategy: &dyn Strategy,
        state: &CycleState,
    ) -> CycleOutcome {
        let risk = RiskConfig::default();
        let symbol = btc();
        let tfs = [Timeframe::M5];
        let spec = CycleSpec {
            subscription_id: subscription,
            slot: at(T0),
            exchange_name: "bybit",
            symbol: &symbol,
            timeframes: &tfs,
            candles: 60,
            leverage: LEVERAGE,
            strategy,
            risk: &risk,
            now: self.clock.now(),
        };
        let settings = ExecutionSettings {
            reconcile: ReconcilePolicy {
                lookups: 2,
                pause: Duration::from_millis(1),
            },
            fill_lookups: 3,
            fill_pause: Duration::from_millis(1),
        };
        run_cycle(
            self.exchange.as_ref(),
            &NoCache,
            None,
            &spec,
            state,
            &NoGate,
            &settings,
        )
        .await
        .unwrap()
    }
}

/// Buys at the last close with [`STOP`] and [`TARGET`] while the last closed candle opened before
/// `hold_from` (Unix seconds), then holds: the cycle's mechanics are under test, not a strategy.
#[derive(Debug)]
struct AlwaysBuy {
    hold_from: i64,
}

impl Strategy for AlwaysBuy {
    fn name(&self) -> &'static str {
        "always_buy"
    }
    fn validate(&self) -> Result<(), StrategyError> {
        Ok(())
    }
    fn generate(&self, view: &MarketView<'_>) -> Result<Signal, StrategyError> {
        let last = view.shortest().and_then(|f| f.last()).unwrap();
        if last.open_time.timestamp() >= self.hold_from {
            return Ok(Signal::hold(last.close, 0.5, vec!["scripted hold".into()]).unwrap());
        }
        Ok(Signal::buy(last.close, STOP, TARGET, 0.8, vec!["scripted".into()]).unwrap())
    }
}

/// Buys in the cycle at `T0` only (its last closed candle opened at `T0 - 300`).
const BUY_AT_T0: AlwaysBuy = AlwaysBuy { hold_from: T0 };

// Hand checks shared by the tests.
//
// Sizing at T0: equity 10000 (no position, wallet 10000, nothing held), fixed_pct 2% -> margin 200;
// x leverage 10 -> notional 2000 (under 3x-equity exposure 30000, margin under available 10000);
// / last close 91234.5 = 0.02192...; down to the 0.001 qtyStep -> 0.021 BTC (above minOrderQty
// 0.001; notional 0.021 x 91234.5 = 1915.9245 above minNotionalValue 5).
const QTY: Decimal = dec!(0.021);
// Entry: 0.021 filled at 91240.0; fee 0.021 x 91240.0 x 0.00055 = 1916.04 x 0.00055 = 1.053822.
const ENTRY_FEE: Decimal = dec!(1.053822);
// Protective triggers rounded toward the entry (91240.0) on the 0.10 tick: the stop below it
// rounds up, 89876.54 -> 89876.6; the target above it rounds down, 93456.78 -> 93456.7.
const STOP_TRIGGER: &str = "89876.6";
const TARGET_TRIGGER: &str = "93456.7";

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn one_cycle_sets_leverage_once_and_creates_entry_stop_and_target_with_deterministic_ids() {
    let m = Mocked::start().await;
    let out = m
        .cycle(SUBSCRIPTION, &BUY_AT_T0, &CycleState::default())
        .await;

    let signal = out.signal.as_ref().unwrap();
    assert_eq!(signal.action(), Action::Buy);
    assert_eq!(signal.entry(), LAST_CLOSE, "the last closed candle's close");
    match out.sizing.as_ref().unwrap() {
        SizingDecision::Open {
            quantity, leverage, ..
        } => {
            assert_eq!(*quantity, QTY);
            assert_eq!(*leverage, LEVERAGE);
        }
        other => panic!("sizing skipped: {other:?}"),
    }

    // Exactly one leverage call, at the subscription's leverage.
    let leverage = m.bodies("POST", "/v5/position/set-leverage").await;
    assert_eq!(leverage.len(), 1, "{leverage:?}");
    assert_eq!(leverage[0]["symbol"], "BTCUSDT");
    assert_eq!(leverage[0]["buyLeverage"], "10");
    assert_eq!(leverage[0]["sellLeverage"], "10");

    // Exactly three creates: market entry, reduce-only stop, reduce-only take-profit.
    let creates = m.creates().await;
    assert_eq!(creates.len(), 3, "{creates:#?}");
    let (entry, stop, target) = (&creates[0], &creates[1], &creates[2]);
    assert_eq!(
        entry["orderLinkId"],
        link_id(SUBSCRIPTION, OrderRole::Entry)
    );
    assert_eq!(entry["side"], "Buy");
    assert_eq!(entry["orderType"], "Market");
    assert_eq!(entry["qty"], s(QTY));
    assert_eq!(entry["reduceOnly"], false);
    assert!(entry.get("triggerPrice").is_none(), "{entry}");

    assert_eq!(
        stop["orderLinkId"],
        link_id(SUBSCRIPTION, OrderRole::StopLoss)
    );
    assert_eq!(stop["side"], "Sell");
    assert_eq!(stop["orderType"], "Market");
    assert_eq!(stop["qty"], s(QTY));
    assert_eq!(stop["reduceOnly"], true);
    assert_eq!(stop["closeOnTrigger"], true);
    assert_eq!(stop["triggerPrice"], STOP_TRIGGER);
    assert_eq!(stop["triggerDirection"], 2, "a sell stop fires on a fall");

    assert_eq!(
        target["orderLinkId"],
        link_id(SUBSCRIPTION, OrderRole::TakeProfit)
    );
    assert_eq!(target["side"], "Sell");
    assert_eq!(target["orderType"], "Market");
    assert_eq!(target["qty"], s(QTY));
    assert_eq!(target["reduceOnly"], true);
    assert_eq!(target["triggerPrice"], TARGET_TRIGGER);
    assert_eq!(
        target["triggerDirection"], 1,
        "a sell target fires on a rise"
    );

    // The report and the tracked position come from the venue's fill.
    let exec = out.execution.as_ref().unwrap();
    let roles: Vec<_> = exec.orders.iter().map(|o| (o.role, o.placed_now)).collect();
    assert_eq!(
        roles,
        [
            (OrderRole::Entry, true),
            (OrderRole::StopLoss, true),
            (OrderRole::TakeProfit, true)
        ]
    );
    assert!(!exec.closed_without_stop);
    assert_eq!(exec.filled_quantity, QTY);
    assert_eq!(exec.average_price, Some(BUY_FILL));
    assert_eq!(exec.orders[1].order.order_type, OrderType::StopMarket);
    assert_eq!(exec.orders[2].order.order_type, OrderType::TakeProfitMarket);
    let tracked = out.tracked.as_ref().unwrap();
    assert_eq!(tracked.quantity, QTY);
    assert_eq!(tracked.entry_price, BUY_FILL);
    assert_eq!(tracked.entry_fee, ENTRY_FEE, "the fee the venue charged");
    assert_eq!(
        tracked.stop_loss_id.as_ref().unwrap().as_str(),
        link_id(SUBSCRIPTION, OrderRole::StopLoss)
    );
    assert_eq!(
        tracked.take_profit_id.as_ref().unwrap().as_str(),
        link_id(SUBSCRIPTION, OrderRole::TakeProfit)
    );

    // The venue holds the long and both resting orders.
    let st = m.state();
    let p = st.position.as_ref().unwrap();
    assert_eq!(
        (p.side.as_str(), p.size, p.avg_price),
        ("Buy", QTY, BUY_FILL)
    );
    assert_eq!(st.orders.iter().filter(|o| o.is_open()).count(), 2);
    // Balance at the end of the cycle: wallet 10000 - 1.053822 fee, plus the unrealised
    // (91234.5 - 91240.0) x 0.021 = -0.1155 at the mark -> 9998.830678.
    assert_eq!(out.balance.as_ref().unwrap().equity, dec!(9998.830678));
}

#[tokio::test]
async fn a_retried_slot_creates_nothing_and_finds_every_order() {
    let m = Mocked::start().await;
    let first = m
        .cycle(SUBSCRIPTION, &BUY_AT_T0, &CycleState::default())
        .await;
    assert_eq!(m.creates().await.len(), 3);

    // The same slot with the same empty state: a retried job that never recorded attempt one.
    let again = m
        .cycle(SUBSCRIPTION, &BUY_AT_T0, &CycleState::default())
        .await;
    assert_eq!(m.creates().await.len(), 3, "no new order-create request");
    let exec = again.execution.as_ref().unwrap();
    let roles: Vec<_> = exec.orders.iter().map(|o| (o.role, o.placed_now)).collect();
    assert_eq!(
        roles,
        [
            (OrderRole::Entry, false),
            (OrderRole::StopLoss, false),
            (OrderRole::TakeProfit, false)
        ]
    );
    assert!(!exec.closed_without_stop);
    // It resumed with the venue's position and the orders as the venue reports them.
    assert_eq!(exec.filled_quantity, QTY);
    assert_eq!(exec.orders[0].order.status, OrderStatus::Filled);
    assert_eq!(exec.orders[1].order.status, OrderStatus::Open);
    assert_eq!(exec.orders[1].order.trigger_price, Some(dec!(89876.6)));
    assert_eq!(again.tracked, first.tracked, "the same position is tracked");
    // Leverage was asked again; the venue's "not modified" answer is success.
    assert_eq!(m.bodies("POST", "/v5/position/set-leverage").await.len(), 2);
    let st = m.state();
    assert_eq!(st.position.as_ref().unwrap().size, QTY, "no second entry");
    assert_eq!(st.orders.len(), 3);
}

#[tokio::test]
async fn a_triggered_stop_becomes_a_trade_with_exact_pnl_and_the_target_is_cancelled() {
    let m = Mocked::start().await;
    let first = m
        .cycle(SUBSCRIPTION, &BUY_AT_T0, &CycleState::default())
        .await;
    let tracked = first.tracked.clone().unwrap();

    // 04:36: the price fell through the stop at 04:33, which filled at 89870.0.
    let sl = link_id(SUBSCRIPTION, OrderRole::StopLoss);
    let tp = link_id(SUBSCRIPTION, OrderRole::TakeProfit);
    m.clock.set(at(T0 + 180));
    m.state().fill_conditional(&sl, dec!(89870.0));
    m.clock.set(at(T0 + 360));
    assert!(m.state().position.is_none());

    let state = CycleState {
        tracked: Some(tracked),
        ..CycleState::default()
    };
    let out = m.cycle(SUBSCRIPTION, &BUY_AT_T0, &state).await;
    let trade = out.closed.as_ref().unwrap();
    assert_eq!(trade.reason, ExitReason::StopLoss);
    assert_eq!(trade.quantity, QTY);
    assert_eq!(trade.exit_price, Some(dec!(89870.0)));
    assert_eq!(trade.closed_at, Some(at(T0 + 180)));
    let exit = trade.exit_order.as_ref().unwrap();
    assert_eq!(exit.status, OrderStatus::Filled);
    assert_eq!(exit.client_order_id.as_ref().unwrap().as_str(), sl);
    // Hand check: exit fee 0.021 x 89870.0 x 0.00055 = 1887.27 x 0.00055 = 1.0379985;
    // fees 1.053822 + 1.0379985 = 2.0918205. Price PnL (89870.0 - 91240.0) x 0.021 = -28.77.
    // Realized -28.77 - 1.053822 - 1.0379985 = -30.8618205.
    assert_eq!(trade.fees, dec!(2.0918205));
    assert_eq!(trade.realized_pnl, Some(dec!(-30.8618205)));
    // ...which is exactly what the account lost.
    assert_eq!(
        out.balance.as_ref().unwrap().equity,
        START_EQUITY + trade.realized_pnl.unwrap()
    );

    // The leftover take-profit was cancelled with one cancel-all.
    let cancels = m.bodies("POST", "/v5/order/cancel-all").await;
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(cancels[0]["symbol"], "BTCUSDT");
    assert_eq!(m.state().order(&tp).unwrap().status, "Deactivated");
    // Nothing new was traded: the strategy holds at this slot's candles.
    assert_eq!(out.signal.as_ref().unwrap().action(), Action::Hold);
    assert!(out.execution.is_none());
    assert!(out.tracked.is_none());
    assert_eq!(m.creates().await.len(), 3);
}

#[tokio::test]
async fn a_rejected_stop_loss_closes_the_entry_at_market() {
    let m = Mocked::start().await;
    m.state().reject_conditional = Some((110093, "expect Falling, but trigger_price >= current"));
    let sub = 43;
    let out = m.cycle(sub, &BUY_AT_T0, &CycleState::default()).await;

    let creates = m.creates().await;
    let ids: Vec<&str> = creates
        .iter()
        .map(|c| c["orderLinkId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            link_id(sub, OrderRole::Entry),
            link_id(sub, OrderRole::StopLoss),
            link_id(sub, OrderRole::Close)
        ],
        "entry, the rejected stop, then exactly one close; no take-profit"
    );
    let close = &creates[2];
    assert_eq!(close["side"], "Sell");
    assert_eq!(close["orderType"], "Market");
    assert_eq!(close["qty"], s(QTY));
    assert_eq!(close["reduceOnly"], true);
    assert!(close.get("triggerPrice").is_none(), "{close}");

    let exec = out.execution.as_ref().unwrap();
    assert!(exec.closed_without_stop);
    let roles: Vec<_> = exec.orders.iter().map(|o| (o.role, o.placed_now)).collect();
    assert_eq!(roles, [(OrderRole::Entry, true), (OrderRole::Close, true)]);
    assert!(
        exec.warnings.iter().any(|w| w.contains("110093")),
        "{:?}",
        exec.warnings
    );
    assert!(out.tracked.is_none(), "nothing left to track");

    // Never a naked position: the venue is flat with nothing resting.
    let st = m.state();
    assert!(st.position.is_none());
    assert!(st.orders.iter().all(|o| !o.is_open()));
    // Close fee 0.021 x 91229.0 x 0.00055 = 1915.809 x 0.00055 = 1.05369495; price PnL
    // (91229.0 - 91240.0) x 0.021 = -0.231. Equity 10000 - 1.053822 - 1.05369495 - 0.231.
    assert_eq!(out.balance.as_ref().unwrap().equity, dec!(9997.66148305));
}

/// A `MakeWriter` collecting everything `tracing` writes, for the secret-leak test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_full_cycle_at_trace_level_logs_no_secret() {
    // Credentials as the fleet gets them: sealed in the vault, opened for the cycle.
    const KEY: &str = "AKIAleakcanaryKEY0001";
    const SECRET: &str = "leakcanarySECRETzz9876";
    let ring = tradefleet::vault::KeyRing::ephemeral().unwrap();
    let sealed = ring
        .seal_credentials(
            "7",
            "bybit",
            &Credentials {
                api_key: KEY.into(),
                api_secret: SECRET.into(),
                passphrase: None,
            },
        )
        .unwrap();
    let opened = ring.open_credentials("7", "bybit", &sealed).unwrap();

    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Process-wide (only this test installs one): a thread-scoped subscriber can miss events of
    // callsites that other test threads already cached as uninteresting. Other tests' output may
    // land in the buffer too; they use different credentials.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let m = Mocked::start_with(opened).await;
    // A normal entry with its protective orders, then a rejected stop that forces a close:
    // signed requests, retries of lookups, errors and warnings all pass through the logs.
    let out = m
        .cycle(SUBSCRIPTION, &BUY_AT_T0, &CycleState::default())
        .await;
    assert_eq!(out.execution.as_ref().unwrap().orders.len(), 3);
    m.state().reject_conditional = Some((110093, "expect Falling, but trigger_price >= current"));
    let out = m.cycle(44, &BUY_AT_T0, &CycleState::default()).await;
    let debug = format!("{out:?} {:?} {sealed:?}", m.exchange);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 10,
        "TRACE output was captured:\n{logs}"
    );
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "{logs}");
    for secret in [KEY, SECRET] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(!debug.contains(secret), "{secret} leaked into Debug output");
    }
    // The venue did receive the key: the test is not vacuous.
    let reqs = m.server.received_requests().await.unwrap();
    assert!(reqs.iter().any(|r| {
        r.headers
            .get("X-BAPI-API-KEY")
            .is_some_and(|v| v.to_str().unwrap_or_default() == KEY)
    }));
}

#[tokio::test]
async fn a_partial_entry_fill_is_protected_by_orders_of_the_filled_size() {
    let m = Mocked::start().await;
    m.state().entry_fill_ratio = Some(dec!(0.5));
    let out = m
        .cycle(SUBSCRIPTION, &BUY_AT_T0, &CycleState::default())
        .await;
    // Sized 0.021 (see the first test); half fills: 0.0105 -> 0.010 on the 0.001 step.
    let exec = out.execution.as_ref().unwrap();
    assert_eq!(exec.filled_quantity, dec!(0.010));
    let creates = m.creates().await;
    assert_eq!(creates.len(), 3, "{creates:?}");
    let qty = |v: &Value| v["qty"].as_str().unwrap().parse::<Decimal>().unwrap();
    assert_eq!(
        qty(&creates[0]),
        QTY,
        "the entry asked for the sized quantity"
    );
    assert_eq!(
        qty(&creates[1]),
        dec!(0.010),
        "stop-loss covers what filled"
    );
    assert_eq!(
        qty(&creates[2]),
        dec!(0.010),
        "take-profit covers what filled"
    );
    assert_eq!(creates[1]["reduceOnly"], true);
    let tracked = out.tracked.as_ref().unwrap();
    assert_eq!(tracked.quantity, dec!(0.010));
    assert_eq!(m.state().position.as_ref().unwrap().size, dec!(0.010));
}
