//! Bybit V5 linear adapter tested through the public API against a loopback mock venue that
//! replays recorded payloads: exact requests, signatures, error classes and idempotent placement.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use sha2::Sha256;
use tradefleet::clock::ManualClock;
use tradefleet::domain::{
    ClientOrderId, OrderRequest, OrderStatus, OrderType, PositionSide, Side, Symbol, Timeframe,
};
use tradefleet::exchange::http::HttpSettings;
use tradefleet::exchange::idempotent::{Placement, ReconcilePolicy, place_once};
use tradefleet::exchange::{Credentials, Exchange, ExchangeError, VenueParams, build_exchange};
use wiremock::matchers::{body_json, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "test-api-key";
const SECRET: &str = "test-secret-do-not-use";
/// The manual clock's time in most tests (ms).
const T0: i64 = 1_700_000_000_000;

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/bybit/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn ok(name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(fixture(name))
}

fn ret_code(code: i64, msg: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": T0}),
    )
}

fn empty_list() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "retCode": 0, "retMsg": "OK",
        "result": {"category": "linear", "list": [], "nextPageCursor": ""},
        "retExtInfo": {}, "time": T0
    }))
}

fn settings() -> HttpSettings {
    HttpSettings {
        timeout_ms: 3_000,
        backoff_base_ms: 1,
        backoff_max_ms: 5,
        max_retries: 2,
        ..HttpSettings::default()
    }
}

fn params_at(server: &MockServer, now_ms: i64, with_credentials: bool) -> VenueParams {
    VenueParams {
        base_url: Some(server.uri()),
        credentials: with_credentials.then(|| Credentials {
            api_key: KEY.into(),
            api_secret: SECRET.into(),
            passphrase: None,
        }),
        http: settings(),
        clock: Arc::new(ManualClock::new(
            DateTime::from_timestamp_millis(now_ms).unwrap(),
        )),
        ..VenueParams::default()
    }
}

fn bybit(server: &MockServer) -> Arc<dyn Exchange> {
    build_exchange("bybit", &params_at(server, T0, true)).unwrap()
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).unwrap()
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The auth headers are there and `X-BAPI-SIGN` is the HMAC of exactly what was sent.
fn assert_signed(req: &Request) {
    assert_eq!(header(req, "x-bapi-api-key"), Some(KEY), "{}", req.url);
    assert_eq!(header(req, "x-bapi-recv-window"), Some("5000"));
    assert_eq!(header(req, "x-bapi-sign-type"), Some("2"));
    let ts = header(req, "x-bapi-timestamp").expect("timestamp header");
    assert!(ts.parse::<i64>().is_ok(), "timestamp {ts}");
    if req.method.as_str() == "GET" {
        // Bybit may answer a GET carrying a body with HTTP 403.
        assert!(req.body.is_empty(), "GET with a body: {}", req.url);
    }
    let payload = if req.method.as_str() == "GET" {
        req.url.query().unwrap_or("").to_string()
    } else {
        String::from_utf8(req.body.clone()).unwrap()
    };
    let expected = hmac_hex(SECRET, &format!("{ts}{KEY}5000{payload}"));
    assert_eq!(
        header(req, "x-bapi-sign"),
        Some(expected.as_str()),
        "signature of {} {}",
        req.method,
        req.url
    );
}

fn assert_unsigned(req: &Request) {
    assert!(header(req, "x-bapi-sign").is_none(), "{}", req.url);
    assert!(header(req, "x-bapi-api-key").is_none(), "{}", req.url);
}

async fn received(server: &MockServer, m: &str, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == m && r.url.path() == p)
        .collect()
}

async fn mount_instrument(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v5/market/instruments-info"))
        .and(query_param("category", "linear"))
        .and(query_param("symbol", "BTCUSDT"))
        .respond_with(ok("instruments_linear.json"))
        .mount(server)
        .await;
}

fn request(order_type: OrderType, side: Side, qty: rust_decimal::Decimal) -> OrderRequest {
    OrderRequest {
        symbol: btc(),
        client_order_id: cid("tf1entry0001"),
        side,
        order_type,
        quantity: qty,
        price: None,
        trigger_price: None,
        reduce_only: false,
    }
}

// ---------------------------------------------------------------- signing

#[test]
fn known_answer_signature_from_the_vectors() {
    // The computed vector of the research notes; the adapter's own signer has the same unit test.
    assert_eq!(
        hmac_hex(
            SECRET,
            "1700000000000test-api-key5000category=linear&symbol=BTCUSDT"
        ),
        "eb90c41a493fc8ce508d1c741b4e8761bce579b7bea12c57d4b2409d428e1108"
    );
}

#[tokio::test]
async fn signed_request_uses_the_clock_for_its_timestamp() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/account/wallet-balance"))
        .respond_with(ok("balance_usdt.json"))
        .mount(&server)
        .await;
    bybit(&server).balance("USDT").await.unwrap();
    let reqs = received(&server, "GET", "/v5/account/wallet-balance").await;
    assert_eq!(reqs.len(), 1);
    assert_eq!(header(&reqs[0], "x-bapi-timestamp"), Some("1700000000000"));
    // With key, timestamp and query fixed, the signature is the known answer.
    assert_eq!(reqs[0].url.query(), Some("accountType=UNIFIED&coin=USDT"));
    assert_eq!(
        header(&reqs[0], "x-bapi-sign"),
        Some(
            hmac_hex(
                SECRET,
                "1700000000000test-api-key5000accountType=UNIFIED&coin=USDT"
            )
            .as_str()
        )
    );
}

// ---------------------------------------------------------------- market data

#[tokio::test]
async fn server_time_reads_the_public_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/time"))
        .respond_with(ok("server_time.json"))
        .expect(1)
        .mount(&server)
        .await;
    let t = bybit(&server).server_time().await.unwrap();
    assert_eq!(t.timestamp_millis(), 1_688_639_403_423);
    assert_unsigned(&received(&server, "GET", "/v5/market/time").await[0]);
}

#[tokio::test]
async fn klines_newest_first_come_out_oldest_first_with_the_forming_candle_open() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/kline"))
        .and(query_param("category", "linear"))
        .and(query_param("symbol", "BTCUSDT"))
        .and(query_param("interval", "60"))
        .and(query_param("limit", "3"))
        .and(query_param_is_missing("start"))
        .respond_with(ok("klines.json"))
        .expect(1)
        .mount(&server)
        .await;
    // The clock stands 30 minutes into the newest candle (1670608800000).
    let ex = build_exchange(
        "bybit",
        &params_at(&server, 1_670_608_800_000 + 1_800_000, true),
    )
    .unwrap();
    let candles = ex.klines(&btc(), Timeframe::H1, None, 3).await.unwrap();
    let starts: Vec<i64> = candles
        .iter()
        .map(|c| c.open_time.timestamp_millis())
        .collect();
    assert_eq!(
        starts,
        vec![1_670_601_600_000, 1_670_605_200_000, 1_670_608_800_000]
    );
    assert_eq!(candles[0].open, dec!(17086.5));
    assert_eq!(candles[0].high, dec!(17088));
    assert_eq!(candles[0].low, dec!(16978));
    assert_eq!(candles[0].close, dec!(17071.5));
    assert_eq!(candles[0].volume, dec!(6356));
    assert_eq!(
        candles.iter().map(|c| c.closed).collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert_unsigned(&received(&server, "GET", "/v5/market/kline").await[0]);
}

#[tokio::test]
async fn klines_since_bounds_the_window_and_all_past_candles_are_closed() {
    let server = MockServer::start().await;
    let start = 1_670_601_600_000i64;
    Mock::given(method("GET"))
        .and(path("/v5/market/kline"))
        .and(query_param("start", start.to_string()))
        .and(query_param("end", (start + 3 * 3_600_000 - 1).to_string()))
        .and(query_param("limit", "3"))
        .respond_with(ok("klines.json"))
        .expect(1)
        .mount(&server)
        .await;
    let candles = bybit(&server)
        .klines(
            &btc(),
            Timeframe::H1,
            DateTime::from_timestamp_millis(start),
            3,
        )
        .await
        .unwrap();
    assert_eq!(candles.len(), 3);
    assert!(candles.iter().all(|c| c.closed));
    assert!(candles.windows(2).all(|w| w[0].open_time < w[1].open_time));
}

#[tokio::test]
async fn klines_of_an_interval_bybit_lacks_are_unsupported_without_a_request() {
    let server = MockServer::start().await;
    let err = bybit(&server)
        .klines(&btc(), Timeframe::H8, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unsupported");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn ticker_reads_last_bid_ask_mark() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/tickers"))
        .and(query_param("category", "linear"))
        .and(query_param("symbol", "BTCUSDT"))
        .respond_with(ok("tickers.json"))
        .expect(1)
        .mount(&server)
        .await;
    let t = bybit(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.symbol, btc());
    assert_eq!(t.last, dec!(91234.50));
    assert_eq!(t.bid, Some(dec!(91234.40)));
    assert_eq!(t.ask, Some(dec!(91234.50)));
    assert_eq!(t.mark, Some(dec!(91236.00)));
    assert_eq!(t.time.timestamp_millis(), 1_763_700_000_123);
}

#[tokio::test]
async fn instrument_reads_filters() {
    let server = MockServer::start().await;
    mount_instrument(&server).await;
    let i = bybit(&server).instrument(&btc()).await.unwrap();
    assert_eq!(i.venue_symbol, "BTCUSDT");
    assert_eq!(i.tick_size, dec!(0.1));
    assert_eq!(i.step_size, dec!(0.001));
    assert_eq!(i.min_quantity, dec!(0.001));
    assert_eq!(i.min_notional, dec!(5));
    assert_eq!(i.max_leverage, dec!(100));
    assert_eq!(i.contract_size, dec!(1));
    assert_unsigned(&received(&server, "GET", "/v5/market/instruments-info").await[0]);
}

// ---------------------------------------------------------------- account

#[tokio::test]
async fn balance_of_the_unified_account() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/account/wallet-balance"))
        .and(query_param("accountType", "UNIFIED"))
        .and(query_param("coin", "USDT"))
        .respond_with(ok("balance_usdt.json"))
        .expect(1)
        .mount(&server)
        .await;
    let b = bybit(&server).balance("USDT").await.unwrap();
    assert_eq!(b.asset, "USDT");
    assert_eq!(b.equity, dec!(1052.75));
    assert_eq!(b.unrealized_pnl, dec!(12.75));
    // equity - position IM - order IM = 899.60, capped by the account's 880.10 available.
    assert_eq!(b.available, dec!(880.10));
    assert_signed(&received(&server, "GET", "/v5/account/wallet-balance").await[0]);
}

#[tokio::test]
async fn balance_of_a_coin_not_held_is_zero() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/account/wallet-balance"))
        .respond_with(ok("balance.json"))
        .mount(&server)
        .await;
    let b = bybit(&server).balance("USDT").await.unwrap();
    assert_eq!((b.equity, b.available), (dec!(0), dec!(0)));
}

#[tokio::test]
async fn positions_of_one_symbol_and_of_all() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/position/list"))
        .and(query_param("category", "linear"))
        .and(query_param("symbol", "BTCUSDT"))
        .respond_with(ok("positions_linear.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/position/list"))
        .and(query_param("settleCoin", "USDT"))
        .and(query_param_is_missing("symbol"))
        .respond_with(ok("positions_linear.json"))
        .expect(1)
        .mount(&server)
        .await;
    let ex = bybit(&server);
    for ps in [
        ex.positions(Some(&btc())).await.unwrap(),
        ex.positions(None).await.unwrap(),
    ] {
        assert_eq!(ps.len(), 1);
        let p = &ps[0];
        assert_eq!(p.symbol, btc());
        assert_eq!(p.side, PositionSide::Long);
        assert_eq!(p.quantity, dec!(0.015));
        assert_eq!(p.entry_price, dec!(90100.5));
        assert_eq!(p.mark_price, Some(dec!(91236.00)));
        assert_eq!(p.unrealized_pnl, dec!(17.0317));
        assert_eq!(p.leverage, Some(dec!(10)));
        assert_eq!(p.liquidation_price, Some(dec!(81500.3)));
    }
    for r in received(&server, "GET", "/v5/position/list").await {
        assert_signed(&r);
    }
}

#[tokio::test]
async fn set_leverage_sends_buy_and_sell_leverage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v5/position/set-leverage"))
        .and(body_json(json!({"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "7", "sellLeverage": "7"})))
        .respond_with(ok("set_leverage.json"))
        .expect(1)
        .mount(&server)
        .await;
    bybit(&server).set_leverage(&btc(), 7).await.unwrap();
    let reqs = received(&server, "POST", "/v5/position/set-leverage").await;
    assert_signed(&reqs[0]);
    assert_eq!(header(&reqs[0], "content-type"), Some("application/json"));
}

#[tokio::test]
async fn set_leverage_not_modified_110043_is_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v5/position/set-leverage"))
        .respond_with(ret_code(110043, "Set leverage has not been modified."))
        .expect(1)
        .mount(&server)
        .await;
    bybit(&server).set_leverage(&btc(), 10).await.unwrap();
}

// ---------------------------------------------------------------- orders

#[tokio::test]
async fn place_limit_order_sends_the_exact_body() {
    let server = MockServer::start().await;
    mount_instrument(&server).await;
    Mock::given(method("POST"))
        .and(path("/v5/order/create"))
        .and(body_json(json!({
            "category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
            "qty": "0.01", "price": "90000.1", "timeInForce": "GTC", "positionIdx": 0,
            "orderLinkId": "tf1entry0001", "reduceOnly": false
        })))
        .respond_with(ok("place_order.json"))
        .expect(1)
        .mount(&server)
        .await;
    let mut req = request(OrderType::Limit, Side::Buy, dec!(0.010));
    req.price = Some(dec!(90000.10));
    let order = bybit(&server).place_order(&req).await.unwrap();
    assert_eq!(order.exchange_order_id, "1321003749386327552");
    assert_eq!(order.client_order_id, Some(cid("tf1entry0001")));
    assert_eq!(order.status, OrderStatus::Open);
    assert_eq!(order.price, Some(dec!(90000.10)));
    assert_eq!(order.quantity, dec!(0.010));
    assert_signed(&received(&server, "POST", "/v5/order/create").await[0]);
}

#[tokio::test]
async fn place_market_order_has_no_price_or_time_in_force() {
    let server = MockServer::start().await;
    mount_instrument(&server).await;
    Mock::given(method("POST"))
        .and(path("/v5/order/create"))
        .and(body_json(json!({
            "category": "linear", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market",
            "qty": "0.002", "positionIdx": 0, "orderLinkId": "tf1entry0001", "reduceOnly": true
        })))
        .respond_with(ok("place_order.json"))
        .expect(1)
        .mount(&server)
        .await;
    let mut req = request(OrderType::Market, Side::Sell, dec!(0.002));
    req.reduce_only = true;
    req.price = Some(dec!(1)); // ignored for market orders
    bybit(&server).place_order(&req).await.unwrap();
}

#[tokio::test]
async fn conditional_orders_carry_trigger_price_and_direction() {
    let cases = [
        // A sell stop protects a long: fires when the price falls (2).
        (OrderType::StopMarket, Side::Sell, 2),
        // A buy stop protects a short: fires when the price rises (1).
        (OrderType::StopMarket, Side::Buy, 1),
        // A sell take-profit closes a long above: rises (1).
        (OrderType::TakeProfitMarket, Side::Sell, 1),
        (OrderType::TakeProfitMarket, Side::Buy, 2),
    ];
    for (order_type, side, direction) in cases {
        let server = MockServer::start().await;
        mount_instrument(&server).await;
        let side_text = if side == Side::Buy { "Buy" } else { "Sell" };
        Mock::given(method("POST"))
            .and(path("/v5/order/create"))
            .and(body_json(json!({
                "category": "linear", "symbol": "BTCUSDT", "side": side_text, "orderType": "Market",
                "qty": "0.01", "triggerPrice": "88000", "triggerDirection": direction,
                "triggerBy": "LastPrice", "positionIdx": 0, "orderLinkId": "tf1stop0001",
                "reduceOnly": true, "closeOnTrigger": true
            })))
            .respond_with(ok("place_order.json"))
            .expect(1)
            .mount(&server)
            .await;
        let mut req = request(order_type, side, dec!(0.01));
        req.client_order_id = cid("tf1stop0001");
        req.trigger_price = Some(dec!(88000.0));
        req.reduce_only = true;
        let order = bybit(&server).place_order(&req).await.unwrap();
        assert_eq!(order.order_type, order_type);
        assert_eq!(order.trigger_price, Some(dec!(88000)));
    }
}

#[tokio::test]
async fn off_grid_or_too_small_orders_are_refused_before_sending() {
    let server = MockServer::start().await;
    mount_instrument(&server).await;
    let ex = bybit(&server);
    let off_step = request(OrderType::Market, Side::Buy, dec!(0.0015));
    assert_eq!(
        ex.place_order(&off_step).await.unwrap_err().kind(),
        "invalid_order"
    );
    let mut off_tick = request(OrderType::Limit, Side::Buy, dec!(0.01));
    off_tick.price = Some(dec!(90000.15));
    assert_eq!(
        ex.place_order(&off_tick).await.unwrap_err().kind(),
        "invalid_order"
    );
    let mut no_price = request(OrderType::Limit, Side::Buy, dec!(0.01));
    no_price.price = None;
    assert_eq!(
        ex.place_order(&no_price).await.unwrap_err().kind(),
        "invalid_order"
    );
    let no_trigger = request(OrderType::StopMarket, Side::Sell, dec!(0.01));
    assert_eq!(
        ex.place_order(&no_trigger).await.unwrap_err().kind(),
        "invalid_order"
    );
    let mut small_notional = request(OrderType::Limit, Side::Buy, dec!(0.001));
    small_notional.price = Some(dec!(1000));
    assert!(matches!(
        ex.place_order(&small_notional).await.unwrap_err(),
        ExchangeError::BelowMinimum {
            what: "notional",
            ..
        }
    ));
    let zero = request(OrderType::Market, Side::Buy, dec!(0));
    assert_eq!(
        ex.place_order(&zero).await.unwrap_err().kind(),
        "invalid_order"
    );
    assert!(
        received(&server, "POST", "/v5/order/create")
            .await
            .is_empty()
    );
    // The instrument was fetched once and reused.
    assert_eq!(
        received(&server, "GET", "/v5/market/instruments-info")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn cancel_order_by_order_link_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v5/order/cancel"))
        .and(body_json(
            json!({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "linear004"}),
        ))
        .respond_with(ok("cancel_order.json"))
        .expect(1)
        .mount(&server)
        .await;
    bybit(&server)
        .cancel_order(&btc(), &cid("linear004"))
        .await
        .unwrap();
    assert_signed(&received(&server, "POST", "/v5/order/cancel").await[0]);
}

#[tokio::test]
async fn cancel_of_an_unknown_order_is_order_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v5/order/cancel"))
        .respond_with(ret_code(110001, "Order does not exist."))
        .expect(1)
        .mount(&server)
        .await;
    let err = bybit(&server)
        .cancel_order(&btc(), &cid("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "order_not_found");
}

#[tokio::test]
async fn cancel_all_is_one_call_without_order_filter() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v5/order/cancel-all"))
        .and(body_json(
            json!({"category": "linear", "symbol": "BTCUSDT"}),
        ))
        .respond_with(ok("cancel_all.json"))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(bybit(&server).cancel_all(&btc()).await.unwrap(), 2);
    assert_signed(&received(&server, "POST", "/v5/order/cancel-all").await[0]);
}

#[tokio::test]
async fn open_orders_include_untriggered_conditional_orders() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param("category", "linear"))
        .and(query_param("symbol", "BTCUSDT"))
        .and(query_param_is_missing("orderLinkId"))
        .respond_with(ok("open_orders.json"))
        .expect(1)
        .mount(&server)
        .await;
    let orders = bybit(&server).open_orders(&btc()).await.unwrap();
    assert_eq!(orders.len(), 2);
    let stop = &orders[0];
    assert_eq!(stop.client_order_id, Some(cid("tf1stop0001")));
    assert_eq!(stop.order_type, OrderType::StopMarket);
    assert_eq!(stop.status, OrderStatus::Open);
    assert_eq!(stop.side, Side::Sell);
    assert_eq!(stop.trigger_price, Some(dec!(88000)));
    assert_eq!(stop.price, None);
    assert!(stop.reduce_only);
    let limit = &orders[1];
    assert_eq!(limit.order_type, OrderType::Limit);
    assert_eq!(limit.status, OrderStatus::PartiallyFilled);
    assert_eq!(limit.price, Some(dec!(90000)));
    assert_eq!(limit.filled_quantity, dec!(0.004));
    assert_eq!(limit.average_price, Some(dec!(90000)));
    assert_eq!(limit.fee, Some(dec!(0.072)));
    assert_eq!(limit.trigger_price, None);
    assert_eq!(
        limit.created_at.unwrap().timestamp_millis(),
        1_763_699_990_000
    );
    assert_signed(&received(&server, "GET", "/v5/order/realtime").await[0]);
}

#[tokio::test]
async fn open_orders_follow_the_cursor() {
    let server = MockServer::start().await;
    let mut first: Value = serde_json::from_str(&fixture("open_orders.json")).unwrap();
    first["result"]["nextPageCursor"] = json!("page2%3Dtoken");
    let mut second: Value = serde_json::from_str(&fixture("order_history.json")).unwrap();
    second["result"]["list"][0]["orderStatus"] = json!("New");
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param("cursor", "page2=token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(second))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first))
        .expect(1)
        .mount(&server)
        .await;
    let orders = bybit(&server).open_orders(&btc()).await.unwrap();
    let ids: Vec<_> = orders
        .iter()
        .map(|o| o.client_order_id.clone().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![cid("tf1stop0001"), cid("tf1entry0001"), cid("tf1exit0001")]
    );
    let reqs = received(&server, "GET", "/v5/order/realtime").await;
    assert!(
        reqs.iter()
            .any(|r| r.url.query().unwrap().ends_with("&cursor=page2%3Dtoken"))
    );
    for r in reqs {
        assert_signed(&r);
    }
}

#[tokio::test]
async fn cancel_all_repeats_while_bybit_reports_a_full_batch() {
    let server = MockServer::start().await;
    let full: Vec<Value> = (0..500)
        .map(|i| json!({"orderId": format!("id{i}"), "orderLinkId": format!("c{i}")}))
        .collect();
    Mock::given(method("POST"))
        .and(path("/v5/order/cancel-all"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "retCode": 0, "retMsg": "OK", "result": {"list": full, "success": "1"},
            "retExtInfo": {}, "time": T0
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v5/order/cancel-all"))
        .respond_with(ok("cancel_all.json"))
        .mount(&server)
        .await;
    assert_eq!(bybit(&server).cancel_all(&btc()).await.unwrap(), 502);
    assert_eq!(
        received(&server, "POST", "/v5/order/cancel-all")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn order_by_client_id_falls_back_to_history_then_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param("orderLinkId", "tf1entry0001"))
        .respond_with(ok("open_orders.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .respond_with(empty_list())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/history"))
        .and(query_param("orderLinkId", "tf1exit0001"))
        .respond_with(ok("order_history.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/history"))
        .respond_with(empty_list())
        .mount(&server)
        .await;
    let ex = bybit(&server);

    let live = ex
        .order_by_client_id(&btc(), &cid("tf1entry0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.exchange_order_id, "1616024329462743808");
    assert!(
        received(&server, "GET", "/v5/order/history")
            .await
            .is_empty(),
        "found in realtime"
    );

    let done = ex
        .order_by_client_id(&btc(), &cid("tf1exit0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, OrderStatus::Filled);
    assert_eq!(done.order_type, OrderType::Market);
    assert_eq!(done.average_price, Some(dec!(91010.25)));
    assert_eq!(done.filled_quantity, dec!(0.020));

    assert_eq!(
        ex.order_by_client_id(&btc(), &cid("unknown1"))
            .await
            .unwrap(),
        None
    );

    let history = received(&server, "GET", "/v5/order/history").await;
    assert_eq!(history.len(), 2);
    for r in history
        .iter()
        .chain(received(&server, "GET", "/v5/order/realtime").await.iter())
    {
        assert_signed(r);
        let q: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
        assert!(q.contains(&("category".into(), "linear".into())));
        assert!(q.contains(&("symbol".into(), "BTCUSDT".into())));
    }
}

// ---------------------------------------------------------------- connectivity, credentials

#[tokio::test]
async fn test_connectivity_reports_key_permissions() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/time"))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/user/query-api"))
        .respond_with(ok("query_api.json"))
        .expect(1)
        .mount(&server)
        .await;
    let check = bybit(&server).test_connectivity().await.unwrap();
    assert_eq!(check.can_trade, Some(true));
    assert_eq!(check.can_withdraw, Some(false));
    assert_signed(&received(&server, "GET", "/v5/user/query-api").await[0]);
}

#[tokio::test]
async fn withdraw_permission_is_reported() {
    let server = MockServer::start().await;
    let mut body: Value = serde_json::from_str(&fixture("query_api.json")).unwrap();
    body["result"]["permissions"]["Wallet"] = json!(["AccountTransfer", "Withdraw"]);
    body["result"]["readOnly"] = json!(1);
    Mock::given(method("GET"))
        .and(path("/v5/market/time"))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/user/query-api"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let check = bybit(&server).test_connectivity().await.unwrap();
    assert_eq!(check.can_trade, Some(false), "read-only key");
    assert_eq!(check.can_withdraw, Some(true));
    assert!(
        check.notes.iter().any(|n| n.contains("withdraw")),
        "{:?}",
        check.notes
    );
}

#[tokio::test]
async fn without_credentials_public_works_and_private_names_the_missing_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/time"))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    let ex = build_exchange("bybit", &params_at(&server, T0, false)).unwrap();
    ex.server_time().await.unwrap();
    let check = ex.test_connectivity().await.unwrap();
    assert_eq!(check.can_trade, None);
    let err = ex.balance("USDT").await.unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(err.to_string().contains("credentials"), "{err}");
    let err = ex.set_leverage(&btc(), 5).await.unwrap_err();
    assert_eq!(err.kind(), "config");
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(paths.iter().all(|p| p == "/v5/market/time"), "{paths:?}");
}

#[tokio::test]
async fn debug_output_hides_the_secret() {
    let server = MockServer::start().await;
    let shown = format!("{:?}", bybit(&server));
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
}

// ---------------------------------------------------------------- error classes

#[tokio::test]
async fn ret_code_10006_is_rate_limited() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/position/list"))
        .respond_with(ret_code(10006, "Too many visits!"))
        .mount(&server)
        .await;
    let err = bybit(&server).positions(Some(&btc())).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
    // A read is retried (max_retries = 2) before the error is returned.
    assert_eq!(received(&server, "GET", "/v5/position/list").await.len(), 3);
}

#[tokio::test]
async fn http_429_is_rate_limited() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v5/order/cancel"))
        .respond_with(ResponseTemplate::new(429).set_body_string("Too Many Requests"))
        .mount(&server)
        .await;
    let err = bybit(&server)
        .cancel_order(&btc(), &cid("x1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
}

#[tokio::test]
async fn http_403_is_an_ip_ban_and_nothing_is_sent_during_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/tickers"))
        .respond_with(ResponseTemplate::new(403).set_body_string("access too frequent"))
        .mount(&server)
        .await;
    let ex = bybit(&server);
    let err = ex.ticker(&btc()).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
    assert!(err.retry_after().unwrap() >= Duration::from_secs(590));
    let again = ex.ticker(&btc()).await.unwrap_err();
    assert_eq!(again.kind(), "rate_limited");
    assert!(again.retry_after().unwrap() >= Duration::from_secs(590));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "no request while banned"
    );
}

#[tokio::test]
async fn ret_code_10002_resyncs_the_clock_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .respond_with(ret_code(
            10002,
            "invalid request, please check your server timestamp or recv_window param",
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .respond_with(ok("open_orders.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/market/time"))
        .respond_with(ok("server_time.json"))
        .expect(1)
        .mount(&server)
        .await;
    let orders = bybit(&server).open_orders(&btc()).await.unwrap();
    assert_eq!(orders.len(), 2);
    let reqs = received(&server, "GET", "/v5/order/realtime").await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(header(&reqs[0], "x-bapi-timestamp"), Some("1700000000000"));
    // The manual clock did not move, so the retry is stamped with the venue's time exactly.
    assert_eq!(header(&reqs[1], "x-bapi-timestamp"), Some("1688639403423"));
    assert_signed(&reqs[1]);
}

#[tokio::test]
async fn auth_errors_are_auth_and_permission() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/account/wallet-balance"))
        .respond_with(ret_code(10003, "API key is invalid."))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v5/position/set-leverage"))
        .respond_with(ret_code(
            10005,
            "Permission denied, please check your API key permissions.",
        ))
        .mount(&server)
        .await;
    let ex = bybit(&server);
    assert_eq!(ex.balance("USDT").await.unwrap_err().kind(), "auth");
    assert_eq!(
        ex.set_leverage(&btc(), 3).await.unwrap_err().kind(),
        "permission"
    );
    assert_eq!(
        received(&server, "GET", "/v5/account/wallet-balance")
            .await
            .len(),
        1,
        "auth is not retried"
    );
}

#[tokio::test]
async fn insufficient_margin_and_duplicate_id_on_place() {
    for (code, msg, kind) in [
        (
            110007,
            "Available balance is insufficient",
            "insufficient_margin",
        ),
        (
            110072,
            "OrderLinkedID is duplicate",
            "duplicate_client_order_id",
        ),
        (
            110094,
            "Order notional value below the lower limit",
            "invalid_order",
        ),
    ] {
        let server = MockServer::start().await;
        mount_instrument(&server).await;
        Mock::given(method("POST"))
            .and(path("/v5/order/create"))
            .respond_with(ret_code(code, msg))
            .mount(&server)
            .await;
        let err = bybit(&server)
            .place_order(&request(OrderType::Market, Side::Buy, dec!(0.01)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{code}");
        assert_eq!(received(&server, "POST", "/v5/order/create").await.len(), 1);
    }
}

#[tokio::test]
async fn unknown_symbols() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/instruments-info"))
        .respond_with(empty_list())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/market/tickers"))
        .respond_with(ret_code(10001, "params error: symbol invalid"))
        .mount(&server)
        .await;
    let nope: Symbol = "NOPE/USDT:USDT".parse().unwrap();
    let ex = bybit(&server);
    let err = ex.instrument(&nope).await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::UnknownSymbol { ref symbol, .. } if symbol == "NOPEUSDT"),
        "{err}"
    );
    let err = ex.ticker(&nope).await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::UnknownSymbol { ref symbol, .. } if symbol == "NOPEUSDT"),
        "{err}"
    );
    // An order for it is refused before anything is posted.
    let mut req = request(OrderType::Market, Side::Buy, dec!(1));
    req.symbol = nope;
    assert_eq!(
        ex.place_order(&req).await.unwrap_err().kind(),
        "unknown_symbol"
    );
    assert!(
        received(&server, "POST", "/v5/order/create")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn server_error_on_a_read_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v5/market/tickers"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/market/tickers"))
        .respond_with(ok("tickers.json"))
        .mount(&server)
        .await;
    let t = bybit(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(91234.50));
    assert_eq!(
        received(&server, "GET", "/v5/market/tickers").await.len(),
        2
    );
}

#[tokio::test]
async fn server_error_on_a_write_is_outcome_unknown_after_one_post() {
    for response in [
        ResponseTemplate::new(503).set_body_string("service unavailable"),
        ret_code(10016, "Internal server error."),
        ResponseTemplate::new(200).set_body_string("{\"retCode\":0,\"retMsg\":\"OK\",\"res"),
    ] {
        let server = MockServer::start().await;
        mount_instrument(&server).await;
        Mock::given(method("POST"))
            .and(path("/v5/order/create"))
            .respond_with(response)
            .mount(&server)
            .await;
        let err = bybit(&server)
            .place_order(&request(OrderType::Market, Side::Buy, dec!(0.01)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "outcome_unknown", "{err}");
        assert_eq!(received(&server, "POST", "/v5/order/create").await.len(), 1);
    }
}

#[tokio::test]
async fn truncated_bodies_from_every_endpoint_are_errors() {
    let server = MockServer::start().await;
    let endpoints = [
        ("GET", "/v5/market/time", "server_time.json"),
        ("GET", "/v5/market/kline", "klines.json"),
        ("GET", "/v5/market/tickers", "tickers.json"),
        (
            "GET",
            "/v5/market/instruments-info",
            "instruments_linear.json",
        ),
        ("GET", "/v5/account/wallet-balance", "balance_usdt.json"),
        ("GET", "/v5/position/list", "positions_linear.json"),
        ("POST", "/v5/position/set-leverage", "set_leverage.json"),
        ("POST", "/v5/order/create", "place_order.json"),
        ("POST", "/v5/order/cancel", "cancel_order.json"),
        ("POST", "/v5/order/cancel-all", "cancel_all.json"),
        ("GET", "/v5/order/realtime", "open_orders.json"),
        ("GET", "/v5/order/history", "order_history.json"),
        ("GET", "/v5/user/query-api", "query_api.json"),
    ];
    for fraction in [0.0, 0.1, 0.5, 0.9, 0.99] {
        server.reset().await;
        for (m, p, f) in endpoints {
            let body = fixture(f);
            let cut = (body.trim_end().len() as f64 * fraction) as usize;
            let template = ResponseTemplate::new(200).set_body_string(body[..cut].to_string());
            if p == "/v5/market/instruments-info" {
                // place_order needs valid rules to reach /v5/order/create.
                Mock::given(method(m))
                    .and(path(p))
                    .respond_with(ok(f))
                    .mount(&server)
                    .await;
            } else {
                Mock::given(method(m))
                    .and(path(p))
                    .respond_with(template)
                    .mount(&server)
                    .await;
            }
        }
        let ex = bybit(&server);
        let s = btc();
        let id = cid("tf1entry0001");
        let results: Vec<(&str, Result<(), ExchangeError>)> = vec![
            ("time", ex.server_time().await.map(drop)),
            (
                "klines",
                ex.klines(&s, Timeframe::H1, None, 3).await.map(drop),
            ),
            ("ticker", ex.ticker(&s).await.map(drop)),
            ("balance", ex.balance("USDT").await.map(drop)),
            ("positions", ex.positions(Some(&s)).await.map(drop)),
            ("leverage", ex.set_leverage(&s, 5).await.map(drop)),
            (
                "place",
                ex.place_order(&request(OrderType::Market, Side::Buy, dec!(0.01)))
                    .await
                    .map(drop),
            ),
            ("cancel", ex.cancel_order(&s, &id).await.map(drop)),
            ("cancel_all", ex.cancel_all(&s).await.map(drop)),
            ("open_orders", ex.open_orders(&s).await.map(drop)),
            ("by_id", ex.order_by_client_id(&s, &id).await.map(drop)),
            ("connectivity", ex.test_connectivity().await.map(drop)),
        ];
        for (name, r) in results {
            let err = r.expect_err(name);
            assert!(
                matches!(err.kind(), "malformed_response" | "outcome_unknown"),
                "{name} at {fraction}: {err}"
            );
        }
        // The instrument rules themselves, truncated.
        server.reset().await;
        let body = fixture("instruments_linear.json");
        let cut = (body.len() as f64 * fraction) as usize;
        Mock::given(method("GET"))
            .and(path("/v5/market/instruments-info"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body[..cut].to_string()))
            .mount(&server)
            .await;
        assert_eq!(
            bybit(&server).instrument(&s).await.unwrap_err().kind(),
            "malformed_response"
        );
    }
}

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn timed_out_place_is_reconciled_by_order_link_id_without_a_second_post() {
    let server = MockServer::start().await;
    mount_instrument(&server).await;
    // Before placing: the id is unknown to the venue.
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param("orderLinkId", "tf1entry0001"))
        .respond_with(empty_list())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/history"))
        .respond_with(empty_list())
        .mount(&server)
        .await;
    // The venue takes the order but answers after the client has given up.
    Mock::given(method("POST"))
        .and(path("/v5/order/create"))
        .respond_with(ok("place_order.json").set_delay(Duration::from_millis(1_500)))
        .mount(&server)
        .await;
    // Afterwards the order is live under its orderLinkId.
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param("orderLinkId", "tf1entry0001"))
        .respond_with(ok("open_orders.json"))
        .mount(&server)
        .await;
    let mut params = params_at(&server, T0, true);
    params.http.timeout_ms = 300;
    let ex = build_exchange("bybit", &params).unwrap();
    let mut req = request(OrderType::Limit, Side::Buy, dec!(0.010));
    req.price = Some(dec!(90000));

    // The bare write reports the unknown outcome instead of failing or retrying.
    let direct = ex.place_order(&req).await.unwrap_err();
    assert_eq!(direct.kind(), "outcome_unknown", "{direct}");
    server.reset().await;

    mount_instrument(&server).await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param("orderLinkId", "tf1entry0001"))
        .respond_with(empty_list())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/history"))
        .respond_with(empty_list())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v5/order/create"))
        .respond_with(ok("place_order.json").set_delay(Duration::from_millis(1_500)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v5/order/realtime"))
        .and(query_param("orderLinkId", "tf1entry0001"))
        .respond_with(ok("open_orders.json"))
        .mount(&server)
        .await;
    let placement = place_once(
        ex.as_ref(),
        &req,
        ReconcilePolicy {
            lookups: 3,
            pause: Duration::from_millis(10),
        },
    )
    .await
    .unwrap();
    let Placement::Existing(order) = placement else {
        panic!("expected the existing order, got {placement:?}");
    };
    assert_eq!(order.exchange_order_id, "1616024329462743808");
    assert_eq!(order.client_order_id, Some(cid("tf1entry0001")));
    assert_eq!(order.status, OrderStatus::PartiallyFilled);
    let posts = received(&server, "POST", "/v5/order/create").await;
    assert_eq!(posts.len(), 1, "exactly one order placed");
    assert_eq!(
        posts[0].body_json::<Value>().unwrap()["orderLinkId"],
        "tf1entry0001"
    );
}
