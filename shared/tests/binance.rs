//! Binance USDⓈ-M adapter through the public API only: every operation against a loopback mock
//! replaying recorded payloads, with the exact request (method, path, query, key header and
//! HMAC signature) checked, one test per error class, malformed bodies, and exactly-once placement.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal_macros::dec;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use tradefleet::clock::ManualClock;
use tradefleet::domain::{
    ClientOrderId, OrderRequest, OrderStatus, OrderType, PositionSide, Side, Symbol, Timeframe,
};
use tradefleet::exchange::http::HttpSettings;
use tradefleet::exchange::idempotent::{Placement, ReconcilePolicy, place_once};
use tradefleet::exchange::{
    Credentials, Exchange, ExchangeError, VenueParams, build_exchange, find_venue,
};
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "test-api-key-0001";
const SECRET: &str = "test-secret-do-not-use";

// ---------- helpers ----------

fn fixture(name: &str) -> String {
    let p = format!(
        "{}/tests/fixtures/binance/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn settings() -> HttpSettings {
    HttpSettings {
        timeout_ms: 2_000,
        connect_timeout_ms: 1_000,
        max_retries: 3,
        backoff_base_ms: 1,
        backoff_max_ms: 5,
        max_retry_after_ms: 10_000,
    }
}

fn params(server: &MockServer, with_credentials: bool) -> VenueParams {
    VenueParams {
        base_url: Some(server.uri()),
        credentials: with_credentials.then(|| Credentials {
            api_key: SecretString::from(KEY),
            api_secret: SecretString::from(SECRET),
            passphrase: None,
        }),
        http: settings(),
        ..VenueParams::default()
    }
}

fn venue(server: &MockServer) -> Arc<dyn Exchange> {
    build_exchange("binance", &params(server, true)).unwrap()
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

fn bnb() -> Symbol {
    "BNB/USDT:USDT".parse().unwrap()
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).unwrap()
}

fn json_response(status: u16, body: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.into().into_bytes(), "application/json")
}

fn ok(body: impl Into<String>) -> ResponseTemplate {
    json_response(200, body)
}

fn api_error(status: u16, code: i64, msg: &str) -> ResponseTemplate {
    json_response(status, json!({"code": code, "msg": msg}).to_string())
}

/// Matches only requests carrying our API key and a valid signature over the exact query.
#[derive(Debug)]
struct Signed;

impl Match for Signed {
    fn matches(&self, request: &Request) -> bool {
        let key_ok = request
            .headers
            .get("X-MBX-APIKEY")
            .and_then(|v| v.to_str().ok())
            == Some(KEY);
        let query = request.url.query().unwrap_or_default();
        let sig_ok = match query.rsplit_once("&signature=") {
            Some((payload, sig)) => hmac_hex(SECRET, payload) == sig,
            None => false,
        };
        key_ok && sig_ok && request.body.is_empty()
    }
}

/// The query pairs of a request, in order, with the signature checked and removed; the
/// `timestamp` value is replaced by `T` (it is the clock) after checking it is an integer.
fn signed_pairs(request: &Request) -> Vec<(String, String)> {
    assert_eq!(
        request
            .headers
            .get("X-MBX-APIKEY")
            .and_then(|v| v.to_str().ok()),
        Some(KEY)
    );
    let query = request.url.query().unwrap();
    let (payload, sig) = query.rsplit_once("&signature=").unwrap();
    assert_eq!(sig, hmac_hex(SECRET, payload), "signature over {payload}");
    assert_eq!(sig.len(), 64);
    assert!(request.body.is_empty(), "everything travels in the query");
    url::form_urlencoded::parse(payload.as_bytes())
        .map(|(k, v)| {
            if k == "timestamp" {
                assert!(v.parse::<i64>().unwrap() > 1_600_000_000_000);
                (k.into_owned(), "T".to_string())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([
            ("recvWindow".to_string(), "5000".to_string()),
            ("timestamp".to_string(), "T".to_string()),
        ])
        .collect()
}

fn public_pairs(request: &Request) -> Vec<(String, String)> {
    assert!(request.headers.get("X-MBX-APIKEY").is_none());
    request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

async fn requests_to(server: &MockServer, verb: &str, p: &str) -> Vec<Request> {
    requests(server)
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == p)
        .collect()
}

/// exchangeInfo (public) and the BTCUSDT leverage brackets (signed).
async fn mount_rules(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/fapi/v1/exchangeInfo"))
        .respond_with(ok(fixture("exchange_info.json")))
        .mount(server)
        .await;
    let mut brackets = fixture_json("leverage_bracket.json");
    let bnb = {
        let mut b = brackets[0].clone();
        b["symbol"] = json!("BNBUSDT");
        b["brackets"][0]["initialLeverage"] = json!(75);
        b
    };
    brackets.as_array_mut().unwrap().push(bnb);
    Mock::given(method("GET"))
        .and(path("/fapi/v1/leverageBracket"))
        .and(Signed)
        .respond_with(ok(brackets.to_string()))
        .mount(server)
        .await;
}

/// place_order.json answered for our client id (the recorded one was generated by the venue).
fn order_body(client_id: &str, patch: &[(&str, Value)]) -> String {
    let mut o = fixture_json("place_order.json");
    o["clientOrderId"] = json!(client_id);
    for (k, v) in patch {
        o[*k] = v.clone();
    }
    o.to_string()
}

/// algo_order.json answered for our client id and a type the fleet trades.
fn algo_body(client_id: &str, order_type: &str) -> Value {
    let mut o = fixture_json("algo_order.json");
    o["clientAlgoId"] = json!(client_id);
    o["orderType"] = json!(order_type);
    o["price"] = json!("0.000");
    o
}

fn limit_sell() -> OrderRequest {
    OrderRequest {
        symbol: btc(),
        client_order_id: cid("tf1limit0001"),
        side: Side::Sell,
        order_type: OrderType::Limit,
        quantity: dec!(0.200),
        price: Some(dec!(110001.0)),
        trigger_price: None,
        reduce_only: false,
    }
}

fn stop_sell() -> OrderRequest {
    OrderRequest {
        client_order_id: cid("tf1stop0001"),
        order_type: OrderType::StopMarket,
        quantity: dec!(0.009),
        price: None,
        trigger_price: Some(dec!(60000.0)),
        reduce_only: true,
        ..limit_sell()
    }
}

// ---------- registry, signing ----------

#[test]
fn descriptor_is_registered_honestly() {
    let d = find_venue("binance").unwrap();
    assert_eq!(d.name, "binance");
    assert!(d.has_testnet);
    assert!(!d.trades_in_contracts);
    assert!(d.notes.contains("Algo"));
    assert!(!d.notes.contains("not available"));
}

/// The checker used by every test reproduces the official worked example of the docs.
#[test]
fn official_signature_vector_reproduces() {
    assert_eq!(
        hmac_hex(
            "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
        ),
        "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    );
}

#[tokio::test]
async fn debug_output_never_shows_credentials() {
    let server = MockServer::start().await;
    let ex = venue(&server);
    let dbg = format!("{ex:?}");
    assert!(!dbg.contains(SECRET) && !dbg.contains(KEY), "{dbg}");
}

// ---------- public endpoints ----------

#[tokio::test]
async fn server_time_reads_the_time_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/time"))
        .respond_with(ok(fixture("server_time.json")))
        .expect(1)
        .mount(&server)
        .await;
    let t = venue(&server).server_time().await.unwrap();
    assert_eq!(t.timestamp_millis(), 1_712_738_600_000);
    let r = requests(&server).await;
    assert!(public_pairs(&r[0]).is_empty());
}

#[tokio::test]
async fn klines_are_oldest_first_and_the_forming_one_is_open() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/klines"))
        .respond_with(ok(fixture("klines.json")))
        .mount(&server)
        .await;
    // The venue's clock is inside the third candle (1712738580000..=1712738639999).
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp_millis(1_712_738_600_000).unwrap(),
    ));
    let ex = build_exchange(
        "binance",
        &VenueParams {
            clock: clock.clone(),
            ..params(&server, false)
        },
    )
    .unwrap();
    let since = DateTime::from_timestamp_millis(1_712_738_460_000).unwrap();
    let candles = ex
        .klines(&btc(), Timeframe::M1, Some(since), 3)
        .await
        .unwrap();
    assert_eq!(candles.len(), 3);
    assert_eq!(candles[0].open_time, since);
    assert!(candles.windows(2).all(|w| w[0].open_time < w[1].open_time));
    assert_eq!(
        candles.iter().map(|c| c.closed).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(candles[1].low, dec!(70459.40));
    assert_eq!(candles[2].volume, dec!(1.542));
    let r = requests(&server).await;
    assert_eq!(
        public_pairs(&r[0]),
        vec![
            ("symbol".into(), "BTCUSDT".into()),
            ("interval".into(), "1m".into()),
            ("startTime".into(), "1712738460000".into()),
            ("limit".into(), "3".into()),
        ]
    );
    // After the last close time every candle is closed; limits above 1500 are capped.
    clock.advance(chrono::Duration::seconds(60));
    let candles = ex.klines(&btc(), Timeframe::M1, None, 5000).await.unwrap();
    assert!(candles.iter().all(|c| c.closed));
    let r = requests(&server).await;
    assert_eq!(
        public_pairs(&r[1]),
        vec![
            ("symbol".into(), "BTCUSDT".into()),
            ("interval".into(), "1m".into()),
            ("limit".into(), "1500".into()),
        ]
    );
}

#[tokio::test]
async fn ticker_reads_the_last_price() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ticker/price"))
        .respond_with(ok(fixture("ticker_price.json")))
        .mount(&server)
        .await;
    let t = venue(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.symbol, btc());
    assert_eq!(t.last, dec!(70459.40));
    assert_eq!(t.time.timestamp_millis(), 1_712_738_600_123);
    let r = requests(&server).await;
    assert_eq!(
        public_pairs(&r[0]),
        vec![("symbol".to_string(), "BTCUSDT".to_string())]
    );
}

#[tokio::test]
async fn instrument_comes_from_filters_and_leverage_brackets() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    let ex = venue(&server);
    let i = ex.instrument(&btc()).await.unwrap();
    assert_eq!(i.venue_symbol, "BTCUSDT");
    assert_eq!(i.tick_size, dec!(0.1));
    assert_eq!(i.step_size, dec!(0.001));
    assert_eq!(i.min_quantity, dec!(0.001));
    assert_eq!(i.min_notional, dec!(100));
    assert_eq!(i.contract_size, dec!(1));
    assert_eq!(i.max_leverage, dec!(125));
    // Cached: a second look-up sends nothing.
    assert_eq!(ex.instrument(&btc()).await.unwrap(), i);
    assert_eq!(
        requests_to(&server, "GET", "/fapi/v1/exchangeInfo")
            .await
            .len(),
        1
    );
    let brackets = requests_to(&server, "GET", "/fapi/v1/leverageBracket").await;
    assert_eq!(brackets.len(), 1);
    assert_eq!(signed_pairs(&brackets[0]), pairs(&[("symbol", "BTCUSDT")]));

    // Not listed -> UnknownSymbol.
    let eth: Symbol = "ETH/USDT:USDT".parse().unwrap();
    assert!(matches!(
        ex.instrument(&eth).await,
        Err(ExchangeError::UnknownSymbol { .. })
    ));
}

#[tokio::test]
async fn instrument_without_credentials_uses_the_documented_default_leverage() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    let ex = build_exchange("binance", &params(&server, false)).unwrap();
    let i = ex.instrument(&bnb()).await.unwrap();
    assert_eq!(i.tick_size, dec!(0.01));
    assert_eq!(i.step_size, dec!(0.01));
    assert_eq!(i.min_notional, dec!(5));
    assert_eq!(i.max_leverage, dec!(20));
    assert!(
        requests_to(&server, "GET", "/fapi/v1/leverageBracket")
            .await
            .is_empty()
    );
}

// ---------- account ----------

#[tokio::test]
async fn balance_comes_from_the_account_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/account"))
        .and(Signed)
        .respond_with(ok(fixture("balance_account.json")))
        .mount(&server)
        .await;
    let ex = venue(&server);
    let b = ex.balance("USDT").await.unwrap();
    assert_eq!(b.asset, "USDT");
    assert_eq!(b.equity, dec!(31.022612));
    assert_eq!(b.available, dec!(31.022612));
    assert_eq!(b.unrealized_pnl, dec!(0));
    let r = requests(&server).await;
    assert_eq!(signed_pairs(&r[0]), pairs(&[]));
    // An asset the account never held is zero.
    assert_eq!(ex.balance("USDC").await.unwrap().equity, dec!(0));
}

#[tokio::test]
async fn positions_of_all_symbols_and_of_one() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/positionRisk"))
        .and(Signed)
        .respond_with(ok(fixture("positions.json")))
        .mount(&server)
        .await;
    let ex = venue(&server);
    let all = ex.positions(None).await.unwrap();
    assert_eq!(all.len(), 1);
    let p = &all[0];
    assert_eq!(p.symbol, btc());
    assert_eq!(p.side, PositionSide::Long);
    assert_eq!(p.quantity, dec!(0.009));
    assert_eq!(p.entry_price, dec!(67445.9));
    assert_eq!(p.mark_price, Some(dec!(67502.68519858)));
    assert_eq!(p.unrealized_pnl, dec!(0.51106678));
    assert_eq!(p.liquidation_price, Some(dec!(64846.98753790)));
    assert_eq!(p.leverage, None, "v3 positionRisk carries no leverage");
    let one = ex.positions(Some(&btc())).await.unwrap();
    assert_eq!(one, all);
    let r = requests(&server).await;
    assert_eq!(signed_pairs(&r[0]), pairs(&[]));
    assert_eq!(signed_pairs(&r[1]), pairs(&[("symbol", "BTCUSDT")]));
}

#[tokio::test]
async fn set_leverage_posts_symbol_and_leverage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/leverage"))
        .and(Signed)
        .respond_with(ok(fixture("leverage.json")))
        .mount(&server)
        .await;
    let ex = venue(&server);
    ex.set_leverage(&btc(), 21).await.unwrap();
    let r = requests(&server).await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        signed_pairs(&r[0]),
        pairs(&[("symbol", "BTCUSDT"), ("leverage", "21")])
    );
    // An answer for another leverage is not silently accepted.
    assert!(matches!(
        ex.set_leverage(&btc(), 10).await,
        Err(ExchangeError::Malformed { .. })
    ));
}

#[tokio::test]
async fn test_connectivity_pings_and_reads_permissions() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ping"))
        .respond_with(ok(fixture("ping.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/account"))
        .and(Signed)
        .respond_with(ok(fixture("balance_account.json")))
        .mount(&server)
        .await;
    let check = venue(&server).test_connectivity().await.unwrap();
    assert_eq!(check.can_trade, Some(true));
    assert_eq!(check.can_withdraw, Some(true));
    assert!(check.notes.iter().any(|n| n.contains("withdraw")));
    assert_eq!(requests_to(&server, "GET", "/fapi/v1/ping").await.len(), 1);

    let public = build_exchange("binance", &params(&server, false))
        .unwrap()
        .test_connectivity()
        .await
        .unwrap();
    assert_eq!(public.can_trade, None);
    assert_eq!(
        requests_to(&server, "GET", "/fapi/v3/account").await.len(),
        1
    );
}

#[tokio::test]
async fn private_calls_without_credentials_name_what_is_missing() {
    let server = MockServer::start().await;
    let ex = build_exchange("binance", &params(&server, false)).unwrap();
    let errs = [
        ex.balance("USDT").await.unwrap_err(),
        ex.positions(None).await.unwrap_err(),
        ex.set_leverage(&btc(), 5).await.unwrap_err(),
        ex.place_order(&limit_sell()).await.unwrap_err(),
        ex.cancel_order(&btc(), &cid("a1")).await.unwrap_err(),
        ex.cancel_all(&btc()).await.unwrap_err(),
        ex.open_orders(&btc()).await.unwrap_err(),
        ex.order_by_client_id(&btc(), &cid("a1")).await.unwrap_err(),
    ];
    for e in errs {
        assert!(
            matches!(&e, ExchangeError::Config { message, .. } if message.contains("API key and API secret")),
            "{e}"
        );
    }
    assert!(requests(&server).await.is_empty());
}

// ---------- orders ----------

#[tokio::test]
async fn limit_order_is_posted_with_exact_parameters() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/order"))
        .and(Signed)
        .respond_with(ok(order_body("tf1limit0001", &[])))
        .mount(&server)
        .await;
    let order = venue(&server).place_order(&limit_sell()).await.unwrap();
    assert_eq!(order.symbol, btc());
    assert_eq!(order.client_order_id, Some(cid("tf1limit0001")));
    assert_eq!(order.exchange_order_id, "4087922044");
    assert_eq!(order.side, Side::Sell);
    assert_eq!(order.order_type, OrderType::Limit);
    assert_eq!(order.status, OrderStatus::Open);
    assert_eq!(order.quantity, dec!(0.2));
    assert_eq!(order.price, Some(dec!(110001)));
    assert_eq!(order.filled_quantity, dec!(0));
    assert_eq!(order.average_price, None);
    assert_eq!(order.trigger_price, None);
    let posts = requests_to(&server, "POST", "/fapi/v1/order").await;
    assert_eq!(posts.len(), 1);
    assert_eq!(
        signed_pairs(&posts[0]),
        pairs(&[
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.2"),
            ("price", "110001"),
            ("newClientOrderId", "tf1limit0001"),
            ("newOrderRespType", "RESULT"),
        ])
    );
}

#[tokio::test]
async fn reduce_only_market_order_is_posted_with_exact_parameters() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/order"))
        .and(Signed)
        .respond_with(ok(order_body(
            "tf1mkt0001",
            &[
                ("type", json!("MARKET")),
                ("status", json!("FILLED")),
                ("side", json!("BUY")),
                ("origQty", json!("0.009")),
                ("executedQty", json!("0.009")),
                ("avgPrice", json!("67500.10")),
                ("price", json!("0")),
                ("reduceOnly", json!(true)),
            ],
        )))
        .mount(&server)
        .await;
    let req = OrderRequest {
        client_order_id: cid("tf1mkt0001"),
        side: Side::Buy,
        order_type: OrderType::Market,
        quantity: dec!(0.009),
        price: None,
        reduce_only: true,
        ..limit_sell()
    };
    let order = venue(&server).place_order(&req).await.unwrap();
    assert_eq!(order.status, OrderStatus::Filled);
    assert_eq!(order.filled_quantity, dec!(0.009));
    assert_eq!(order.average_price, Some(dec!(67500.10)));
    assert_eq!(order.price, None);
    assert!(order.reduce_only);
    let posts = requests_to(&server, "POST", "/fapi/v1/order").await;
    assert_eq!(
        signed_pairs(&posts[0]),
        pairs(&[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "0.009"),
            ("reduceOnly", "true"),
            ("newClientOrderId", "tf1mkt0001"),
            ("newOrderRespType", "RESULT"),
        ])
    );
}

#[tokio::test]
async fn stop_market_goes_to_the_algo_endpoint() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/algoOrder"))
        .and(Signed)
        .respond_with(ok(algo_body("tf1stop0001", "STOP_MARKET").to_string()))
        .mount(&server)
        .await;
    let req = OrderRequest {
        symbol: bnb(),
        client_order_id: cid("tf1stop0001"),
        side: Side::Sell,
        order_type: OrderType::StopMarket,
        quantity: dec!(0.01),
        price: None,
        trigger_price: Some(dec!(750.00)),
        reduce_only: true,
    };
    let order = venue(&server).place_order(&req).await.unwrap();
    assert_eq!(order.symbol, bnb());
    assert_eq!(order.exchange_order_id, "2146760");
    assert_eq!(order.client_order_id, Some(cid("tf1stop0001")));
    assert_eq!(order.order_type, OrderType::StopMarket);
    assert_eq!(order.status, OrderStatus::Open);
    assert_eq!(order.trigger_price, Some(dec!(750)));
    assert_eq!(order.quantity, dec!(0.01));
    assert!(
        requests_to(&server, "POST", "/fapi/v1/order")
            .await
            .is_empty()
    );
    let posts = requests_to(&server, "POST", "/fapi/v1/algoOrder").await;
    assert_eq!(posts.len(), 1);
    assert_eq!(
        signed_pairs(&posts[0]),
        pairs(&[
            ("algoType", "CONDITIONAL"),
            ("symbol", "BNBUSDT"),
            ("side", "SELL"),
            ("type", "STOP_MARKET"),
            ("quantity", "0.01"),
            ("triggerPrice", "750"),
            ("workingType", "MARK_PRICE"),
            ("reduceOnly", "true"),
            ("clientAlgoId", "tf1stop0001"),
        ])
    );
}

#[tokio::test]
async fn take_profit_market_goes_to_the_algo_endpoint() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/algoOrder"))
        .and(Signed)
        .respond_with(ok(algo_body("tf1tp0001", "TAKE_PROFIT_MARKET").to_string()))
        .mount(&server)
        .await;
    let req = OrderRequest {
        symbol: bnb(),
        client_order_id: cid("tf1tp0001"),
        side: Side::Sell,
        order_type: OrderType::TakeProfitMarket,
        quantity: dec!(0.01),
        price: None,
        trigger_price: Some(dec!(812.34)),
        reduce_only: false,
    };
    let order = venue(&server).place_order(&req).await.unwrap();
    assert_eq!(order.order_type, OrderType::TakeProfitMarket);
    let posts = requests_to(&server, "POST", "/fapi/v1/algoOrder").await;
    assert_eq!(
        signed_pairs(&posts[0]),
        pairs(&[
            ("algoType", "CONDITIONAL"),
            ("symbol", "BNBUSDT"),
            ("side", "SELL"),
            ("type", "TAKE_PROFIT_MARKET"),
            ("quantity", "0.01"),
            ("triggerPrice", "812.34"),
            ("workingType", "MARK_PRICE"),
            ("clientAlgoId", "tf1tp0001"),
        ])
    );
}

#[tokio::test]
async fn orders_off_the_grid_or_below_minimums_are_refused_before_sending() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    let ex = venue(&server);
    let cases = [
        // Quantity not a multiple of the 0.001 step: refused, never resized.
        (
            OrderRequest {
                quantity: dec!(0.2005),
                ..limit_sell()
            },
            "invalid_order",
        ),
        // Price off the 0.1 tick.
        (
            OrderRequest {
                price: Some(dec!(110001.05)),
                ..limit_sell()
            },
            "invalid_order",
        ),
        // Notional 0.001 * 60000 = 60 < 100.
        (
            OrderRequest {
                quantity: dec!(0.001),
                price: Some(dec!(60000)),
                ..limit_sell()
            },
            "below_minimum",
        ),
        // Limit without price.
        (
            OrderRequest {
                price: None,
                ..limit_sell()
            },
            "invalid_order",
        ),
        // Zero quantity.
        (
            OrderRequest {
                quantity: dec!(0),
                ..limit_sell()
            },
            "invalid_order",
        ),
        // Stop without trigger.
        (
            OrderRequest {
                order_type: OrderType::StopMarket,
                trigger_price: None,
                ..limit_sell()
            },
            "invalid_order",
        ),
    ];
    for (req, kind) in cases {
        let e = ex.place_order(&req).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{req:?}: {e}");
    }
    let posts: Vec<_> = requests(&server)
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert!(posts.is_empty(), "nothing may be sent");
}

#[tokio::test]
async fn quantity_under_the_minimum_is_below_minimum() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/exchangeInfo"))
        .respond_with(ok(fixture("exchange_info.json").replace(
            r#""minQty": "0.001", "maxQty": "1000""#,
            r#""minQty": "0.010", "maxQty": "1000""#,
        )))
        .mount(&server)
        .await;
    mount_rules(&server).await;
    let e = venue(&server)
        .place_order(&OrderRequest {
            quantity: dec!(0.005),
            ..limit_sell()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ExchangeError::BelowMinimum { what: "quantity", minimum, .. } if minimum == "0.01"),
        "{e}"
    );
}

#[tokio::test]
async fn cancel_order_tries_regular_then_algo() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/fapi/v1/order"))
        .and(Signed)
        .and(wiremock::matchers::query_param(
            "origClientOrderId",
            "tf1limit0001",
        ))
        .respond_with(ok(order_body(
            "tf1limit0001",
            &[("status", json!("CANCELED"))],
        )))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/fapi/v1/order"))
        .and(Signed)
        .respond_with(api_error(400, -2011, "Unknown order sent."))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/fapi/v1/algoOrder"))
        .and(Signed)
        .respond_with(ok(fixture("algo_cancel.json")))
        .mount(&server)
        .await;
    let ex = venue(&server);
    ex.cancel_order(&btc(), &cid("tf1limit0001")).await.unwrap();
    assert!(
        requests_to(&server, "DELETE", "/fapi/v1/algoOrder")
            .await
            .is_empty()
    );
    ex.cancel_order(&btc(), &cid("tf1stop0001")).await.unwrap();
    let regular = requests_to(&server, "DELETE", "/fapi/v1/order").await;
    assert_eq!(
        signed_pairs(&regular[1]),
        pairs(&[("symbol", "BTCUSDT"), ("origClientOrderId", "tf1stop0001")])
    );
    let algo = requests_to(&server, "DELETE", "/fapi/v1/algoOrder").await;
    assert_eq!(algo.len(), 1);
    assert_eq!(
        signed_pairs(&algo[0]),
        pairs(&[("clientAlgoId", "tf1stop0001")])
    );
}

#[tokio::test]
async fn cancel_of_an_unknown_order_is_order_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/fapi/v1/order"))
        .respond_with(api_error(400, -2011, "Unknown order sent."))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/fapi/v1/algoOrder"))
        .respond_with(api_error(400, -2011, "Unknown order sent."))
        .mount(&server)
        .await;
    let e = venue(&server)
        .cancel_order(&btc(), &cid("nope1"))
        .await
        .unwrap_err();
    assert!(matches!(e, ExchangeError::OrderNotFound { .. }), "{e}");
}

async fn mount_open_orders(server: &MockServer) {
    let regular = json!([
        serde_json::from_str::<Value>(&order_body(
            "tf1limit0001",
            &[("time", json!(1739781831932i64))]
        ))
        .unwrap(),
        serde_json::from_str::<Value>(&order_body(
            "tf1limit0002",
            &[
                ("orderId", json!(4087922045i64)),
                ("status", json!("PARTIALLY_FILLED")),
                ("executedQty", json!("0.050"))
            ]
        ))
        .unwrap(),
    ]);
    Mock::given(method("GET"))
        .and(path("/fapi/v1/openOrders"))
        .and(Signed)
        .respond_with(ok(regular.to_string()))
        .mount(server)
        .await;
    let mut algo = algo_body("tf1stop0001", "STOP_MARKET");
    algo["symbol"] = json!("BTCUSDT");
    Mock::given(method("GET"))
        .and(path("/fapi/v1/openAlgoOrders"))
        .and(Signed)
        .respond_with(ok(json!([algo]).to_string()))
        .mount(server)
        .await;
}

#[tokio::test]
async fn open_orders_merge_regular_and_algo_orders() {
    let server = MockServer::start().await;
    mount_open_orders(&server).await;
    let orders = venue(&server).open_orders(&btc()).await.unwrap();
    assert_eq!(orders.len(), 3);
    assert_eq!(orders[0].client_order_id, Some(cid("tf1limit0001")));
    assert_eq!(
        orders[0].created_at.unwrap().timestamp_millis(),
        1_739_781_831_932
    );
    assert_eq!(orders[1].status, OrderStatus::PartiallyFilled);
    assert_eq!(orders[1].filled_quantity, dec!(0.05));
    assert_eq!(orders[2].order_type, OrderType::StopMarket);
    assert_eq!(orders[2].exchange_order_id, "2146760");
    for p in ["/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders"] {
        let r = requests_to(&server, "GET", p).await;
        assert_eq!(r.len(), 1, "{p}");
        assert_eq!(signed_pairs(&r[0]), pairs(&[("symbol", "BTCUSDT")]), "{p}");
    }
}

#[tokio::test]
async fn open_orders_refuse_types_the_fleet_does_not_trade() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/openOrders"))
        .respond_with(ok(format!("[{}]", fixture("query_order.json"))))
        .mount(&server)
        .await;
    let e = venue(&server).open_orders(&btc()).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Unsupported { .. }), "{e}");
}

#[tokio::test]
async fn cancel_all_cancels_both_books_and_counts() {
    let server = MockServer::start().await;
    mount_open_orders(&server).await;
    for p in ["/fapi/v1/allOpenOrders", "/fapi/v1/algoOpenOrders"] {
        Mock::given(method("DELETE"))
            .and(path(p))
            .and(Signed)
            .respond_with(ok(fixture("cancel_all.json")))
            .expect(1)
            .mount(&server)
            .await;
    }
    assert_eq!(venue(&server).cancel_all(&btc()).await.unwrap(), 3);
    for p in ["/fapi/v1/allOpenOrders", "/fapi/v1/algoOpenOrders"] {
        let r = requests_to(&server, "DELETE", p).await;
        assert_eq!(r.len(), 1, "{p}");
        assert_eq!(signed_pairs(&r[0]), pairs(&[("symbol", "BTCUSDT")]), "{p}");
    }
}

#[tokio::test]
async fn order_by_client_id_finds_regular_then_algo_else_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/order"))
        .and(Signed)
        .and(wiremock::matchers::query_param(
            "origClientOrderId",
            "tf1limit0001",
        ))
        .respond_with(ok(order_body("tf1limit0001", &[])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/order"))
        .respond_with(api_error(400, -2013, "Order does not exist."))
        .mount(&server)
        .await;
    let mut algo = algo_body("tf1stop0001", "STOP_MARKET");
    algo["symbol"] = json!("BTCUSDT");
    Mock::given(method("GET"))
        .and(path("/fapi/v1/algoOrder"))
        .and(Signed)
        .and(wiremock::matchers::query_param(
            "clientAlgoId",
            "tf1stop0001",
        ))
        .respond_with(ok(algo.to_string()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/algoOrder"))
        .respond_with(api_error(400, -2013, "Order does not exist."))
        .mount(&server)
        .await;
    let ex = venue(&server);
    let regular = ex
        .order_by_client_id(&btc(), &cid("tf1limit0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(regular.order_type, OrderType::Limit);
    assert!(
        requests_to(&server, "GET", "/fapi/v1/algoOrder")
            .await
            .is_empty()
    );
    let algo = ex
        .order_by_client_id(&btc(), &cid("tf1stop0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(algo.order_type, OrderType::StopMarket);
    assert_eq!(
        ex.order_by_client_id(&btc(), &cid("unknown1"))
            .await
            .unwrap(),
        None
    );
    let q = requests_to(&server, "GET", "/fapi/v1/order").await;
    assert_eq!(
        signed_pairs(&q[0]),
        pairs(&[("symbol", "BTCUSDT"), ("origClientOrderId", "tf1limit0001")])
    );
    let a = requests_to(&server, "GET", "/fapi/v1/algoOrder").await;
    assert_eq!(
        signed_pairs(&a[0]),
        pairs(&[("clientAlgoId", "tf1stop0001")])
    );
}

// ---------- error classes ----------

#[tokio::test]
async fn http_429_is_rate_limited_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ticker/price"))
        .respond_with(
            api_error(
                429,
                -1003,
                "Too many requests; current limit is 2400 requests per minute.",
            )
            .insert_header("Retry-After", "30"),
        )
        .mount(&server)
        .await;
    let e = venue(&server).ticker(&btc()).await.unwrap_err();
    assert!(matches!(e, ExchangeError::RateLimited { .. }), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    // 30 s is over the configured maximum wait: returned, not retried.
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn http_418_ban_is_rate_limited_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/account"))
        .respond_with(
            api_error(
                418,
                -1003,
                "Way too many requests; IP banned until 1712739000000.",
            )
            .insert_header("Retry-After", "120"),
        )
        .mount(&server)
        .await;
    let e = venue(&server).balance("USDT").await.unwrap_err();
    assert!(
        matches!(&e, ExchangeError::RateLimited { message, .. } if message.contains("banned")),
        "{e}"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn timestamp_rejection_resyncs_the_clock_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/account"))
        .respond_with(api_error(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/account"))
        .and(Signed)
        .respond_with(ok(fixture("balance_account.json")))
        .with_priority(2)
        .mount(&server)
        .await;
    // The venue's clock runs one hour ahead of ours.
    let ahead = chrono::Utc::now().timestamp_millis() + 3_600_000;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/time"))
        .respond_with(ok(json!({ "serverTime": ahead }).to_string()))
        .mount(&server)
        .await;
    let b = venue(&server).balance("USDT").await.unwrap();
    assert_eq!(b.equity, dec!(31.022612));
    let r = requests(&server).await;
    let paths: Vec<_> = r.iter().map(|r| r.url.path().to_string()).collect();
    assert_eq!(
        paths,
        ["/fapi/v3/account", "/fapi/v1/time", "/fapi/v3/account"]
    );
    let ts = |req: &Request| -> i64 {
        req.url
            .query_pairs()
            .find(|(k, _)| k == "timestamp")
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    // The retry is signed with the corrected clock (about an hour later than the first try).
    assert!(
        ts(&r[2]) - ts(&r[0]) > 3_000_000,
        "{} vs {}",
        ts(&r[2]),
        ts(&r[0])
    );
    signed_pairs(&r[2]);
}

#[tokio::test]
async fn auth_and_permission_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/account"))
        .respond_with(api_error(
            400,
            -1022,
            "Signature for this request is not valid.",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/positionRisk"))
        .respond_with(api_error(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        ))
        .mount(&server)
        .await;
    let ex = venue(&server);
    let e = ex.balance("USDT").await.unwrap_err();
    assert!(matches!(e, ExchangeError::Auth { .. }), "{e}");
    let e = ex.positions(None).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Permission { .. }), "{e}");
    // Neither is retried.
    assert_eq!(requests(&server).await.len(), 2);
    assert!(!e.to_string().contains(SECRET));
}

async fn rejecting_order_server(status: u16, code: i64, msg: &str) -> MockServer {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/order"))
        .respond_with(api_error(status, code, msg))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn insufficient_margin_is_typed_and_not_retried() {
    let server = rejecting_order_server(400, -2019, "Margin is insufficient.").await;
    let e = venue(&server).place_order(&limit_sell()).await.unwrap_err();
    assert!(matches!(e, ExchangeError::InsufficientMargin { .. }), "{e}");
    assert_eq!(
        requests_to(&server, "POST", "/fapi/v1/order").await.len(),
        1
    );
}

#[tokio::test]
async fn duplicate_client_order_id_is_typed() {
    let server = rejecting_order_server(400, -4116, "ClientOrderId is duplicated.").await;
    let e = venue(&server).place_order(&limit_sell()).await.unwrap_err();
    assert!(
        matches!(e, ExchangeError::DuplicateClientOrderId { .. }),
        "{e}"
    );
    assert_eq!(
        requests_to(&server, "POST", "/fapi/v1/order").await.len(),
        1
    );
}

#[tokio::test]
async fn invalid_order_codes_are_typed() {
    let server = rejecting_order_server(
        400,
        -4164,
        "Order's notional must be no smaller than 100 (unless you choose reduce only).",
    )
    .await;
    let e = venue(&server).place_order(&limit_sell()).await.unwrap_err();
    assert!(matches!(e, ExchangeError::InvalidOrder { .. }), "{e}");
}

#[tokio::test]
async fn unknown_symbol_is_typed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ticker/price"))
        .respond_with(api_error(400, -1121, "Invalid symbol."))
        .mount(&server)
        .await;
    let doge: Symbol = "DOGEX/USDT:USDT".parse().unwrap();
    let e = venue(&server).ticker(&doge).await.unwrap_err();
    assert!(
        matches!(&e, ExchangeError::UnknownSymbol { symbol, .. } if symbol == "DOGEXUSDT"),
        "{e}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn server_error_on_a_read_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ticker/price"))
        .respond_with(json_response(502, "<html>Bad Gateway</html>"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ticker/price"))
        .respond_with(api_error(
            503,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        ))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ticker/price"))
        .respond_with(ok(fixture("ticker_price.json")))
        .with_priority(3)
        .mount(&server)
        .await;
    let t = venue(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(70459.40));
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn server_error_on_a_write_is_outcome_unknown_with_one_post() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/order"))
        .respond_with(json_response(
            503,
            "Unknown error, please check your request or try again later.",
        ))
        .mount(&server)
        .await;
    let e = venue(&server).place_order(&limit_sell()).await.unwrap_err();
    assert!(matches!(e, ExchangeError::OutcomeUnknown { .. }), "{e}");
    assert_eq!(
        requests_to(&server, "POST", "/fapi/v1/order").await.len(),
        1
    );
}

// ---------- malformed bodies ----------

/// Half of each recorded body, served by every endpoint: an error, never a panic.
#[tokio::test]
async fn truncated_bodies_from_every_endpoint_are_errors() {
    type Op =
        fn(Arc<dyn Exchange>) -> futures::future::BoxFuture<'static, Result<(), ExchangeError>>;
    let ops: Vec<(&str, &str, &str, Op)> = vec![
        ("GET", "/fapi/v1/time", "server_time.json", |ex| {
            Box::pin(async move { ex.server_time().await.map(|_| ()) })
        }),
        ("GET", "/fapi/v1/klines", "klines.json", |ex| {
            Box::pin(async move { ex.klines(&btc(), Timeframe::M1, None, 3).await.map(|_| ()) })
        }),
        ("GET", "/fapi/v1/ticker/price", "ticker_price.json", |ex| {
            Box::pin(async move { ex.ticker(&btc()).await.map(|_| ()) })
        }),
        ("GET", "/fapi/v1/exchangeInfo", "exchange_info.json", |ex| {
            Box::pin(async move { ex.instrument(&btc()).await.map(|_| ()) })
        }),
        ("GET", "/fapi/v3/account", "balance_account.json", |ex| {
            Box::pin(async move { ex.balance("USDT").await.map(|_| ()) })
        }),
        ("GET", "/fapi/v3/positionRisk", "positions.json", |ex| {
            Box::pin(async move { ex.positions(None).await.map(|_| ()) })
        }),
        ("POST", "/fapi/v1/leverage", "leverage.json", |ex| {
            Box::pin(async move { ex.set_leverage(&btc(), 21).await })
        }),
        ("GET", "/fapi/v1/openOrders", "place_order.json", |ex| {
            Box::pin(async move { ex.open_orders(&btc()).await.map(|_| ()) })
        }),
        ("GET", "/fapi/v1/order", "place_order.json", |ex| {
            Box::pin(async move { ex.order_by_client_id(&btc(), &cid("x1")).await.map(|_| ()) })
        }),
        ("POST", "/fapi/v1/order", "place_order.json", |ex| {
            Box::pin(async move { ex.place_order(&limit_sell()).await.map(|_| ()) })
        }),
        (
            "DELETE",
            "/fapi/v1/allOpenOrders",
            "cancel_all.json",
            |ex| Box::pin(async move { ex.cancel_all(&btc()).await.map(|_| ()) }),
        ),
        (
            "GET",
            "/fapi/v1/leverageBracket",
            "leverage_bracket.json",
            |ex| Box::pin(async move { ex.instrument(&btc()).await.map(|_| ()) }),
        ),
        ("POST", "/fapi/v1/algoOrder", "algo_order.json", |ex| {
            Box::pin(async move { ex.place_order(&stop_sell()).await.map(|_| ()) })
        }),
        ("GET", "/fapi/v1/openAlgoOrders", "algo_order.json", |ex| {
            Box::pin(async move { ex.open_orders(&btc()).await.map(|_| ()) })
        }),
        ("GET", "/fapi/v1/algoOrder", "algo_order.json", |ex| {
            Box::pin(async move { ex.order_by_client_id(&btc(), &cid("x1")).await.map(|_| ()) })
        }),
        ("DELETE", "/fapi/v1/order", "place_order.json", |ex| {
            Box::pin(async move { ex.cancel_order(&btc(), &cid("x1")).await })
        }),
        ("DELETE", "/fapi/v1/algoOrder", "algo_cancel.json", |ex| {
            Box::pin(async move { ex.cancel_order(&btc(), &cid("x1")).await })
        }),
        (
            "DELETE",
            "/fapi/v1/algoOpenOrders",
            "cancel_all.json",
            |ex| Box::pin(async move { ex.cancel_all(&btc()).await.map(|_| ()) }),
        ),
        ("GET", "/fapi/v1/ping", "ping.json", |ex| {
            Box::pin(async move { ex.test_connectivity().await.map(|_| ()) })
        }),
    ];
    for (verb, p, name, op) in ops {
        let server = MockServer::start().await;
        let body = fixture(name);
        let body = if name == "ping.json" {
            "{".to_string()
        } else {
            body[..body.len() / 2].to_string()
        };
        Mock::given(method(verb))
            .and(path(p))
            .respond_with(ok(body))
            .with_priority(1)
            .mount(&server)
            .await;
        // Everything else the operation needs answers normally.
        mount_rules(&server).await;
        Mock::given(method("GET"))
            .and(path("/fapi/v1/openOrders"))
            .respond_with(ok("[]"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/fapi/v1/openAlgoOrders"))
            .respond_with(ok("[]"))
            .mount(&server)
            .await;
        for p in ["/fapi/v1/order", "/fapi/v1/algoOrder"] {
            Mock::given(method("GET"))
                .and(path(p))
                .respond_with(api_error(400, -2013, "Order does not exist."))
                .mount(&server)
                .await;
        }
        Mock::given(method("DELETE"))
            .and(path("/fapi/v1/order"))
            .respond_with(api_error(400, -2011, "Unknown order sent."))
            .mount(&server)
            .await;
        Mock::given(method("DELETE"))
            .and(path("/fapi/v1/allOpenOrders"))
            .respond_with(ok(fixture("cancel_all.json")))
            .mount(&server)
            .await;
        let e = op(venue(&server)).await.unwrap_err();
        assert!(
            matches!(e, ExchangeError::Malformed { .. }),
            "{verb} {p}: {e}"
        );
    }
}

// ---------- exactly-once placement ----------

#[tokio::test]
async fn timed_out_order_is_reconciled_by_client_id_not_placed_again() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    // Before placing: unknown (once); after the timeout the venue has it.
    Mock::given(method("GET"))
        .and(path("/fapi/v1/order"))
        .respond_with(api_error(400, -2013, "Order does not exist."))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/order"))
        .and(Signed)
        .respond_with(ok(order_body("tf1limit0001", &[])))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/algoOrder"))
        .respond_with(api_error(400, -2013, "Order does not exist."))
        .mount(&server)
        .await;
    // The venue takes the order but answers after the client gave up.
    Mock::given(method("POST"))
        .and(path("/fapi/v1/order"))
        .respond_with(ok(order_body("tf1limit0001", &[])).set_delay(Duration::from_millis(1_500)))
        .mount(&server)
        .await;
    let ex = build_exchange(
        "binance",
        &VenueParams {
            http: HttpSettings {
                timeout_ms: 300,
                ..settings()
            },
            ..params(&server, true)
        },
    )
    .unwrap();
    // Without reconciliation the timeout is an unknown outcome, not a failure.
    let placement = place_once(
        ex.as_ref(),
        &limit_sell(),
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
    assert_eq!(order.client_order_id, Some(cid("tf1limit0001")));
    assert_eq!(order.exchange_order_id, "4087922044");
    assert_eq!(
        requests_to(&server, "POST", "/fapi/v1/order").await.len(),
        1,
        "exactly one order was sent"
    );
    assert_eq!(requests_to(&server, "GET", "/fapi/v1/order").await.len(), 2);
}

#[tokio::test]
async fn write_timeout_alone_is_outcome_unknown() {
    let server = MockServer::start().await;
    mount_rules(&server).await;
    Mock::given(method("POST"))
        .and(path("/fapi/v1/order"))
        .respond_with(ok(order_body("tf1limit0001", &[])).set_delay(Duration::from_millis(1_500)))
        .mount(&server)
        .await;
    let ex = build_exchange(
        "binance",
        &VenueParams {
            http: HttpSettings {
                timeout_ms: 300,
                ..settings()
            },
            ..params(&server, true)
        },
    )
    .unwrap();
    let e = ex.place_order(&limit_sell()).await.unwrap_err();
    assert!(matches!(e, ExchangeError::OutcomeUnknown { .. }), "{e}");
    assert!(!e.to_string().contains("signature="), "{e}");
    assert_eq!(
        requests_to(&server, "POST", "/fapi/v1/order").await.len(),
        1
    );
}
