//! OKX V5 adapter through the public API only, against a wiremock venue on 127.0.0.1 replaying
//! recorded payloads: exact requests (method, path, query, body, auth headers, signature), unit
//! conversion, error classes, malformed answers and exactly-once placement.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal_macros::dec;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use tradefleet::domain::{
    ClientOrderId, OrderRequest, OrderStatus, OrderType, PositionSide, Side, Symbol, Timeframe,
};
use tradefleet::exchange::http::HttpSettings;
use tradefleet::exchange::idempotent::{Placement, ReconcilePolicy, place_once};
use tradefleet::exchange::{Credentials, Exchange, ExchangeError, VenueParams, build_exchange};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "okx-test-key";
const SECRET: &str = "okx-test-secret-0123456789";
const PASSPHRASE: &str = "okx-test-passphrase";

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/okx/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn ok(name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(fixture(name), "application/json")
}

fn body(status: u16, v: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(v.to_string(), "application/json")
}

fn credentials() -> Credentials {
    Credentials {
        api_key: SecretString::from(KEY),
        api_secret: SecretString::from(SECRET),
        passphrase: Some(SecretString::from(PASSPHRASE)),
    }
}

fn settings() -> HttpSettings {
    HttpSettings {
        timeout_ms: 5_000,
        max_retries: 2,
        backoff_base_ms: 1,
        backoff_max_ms: 5,
        ..HttpSettings::default()
    }
}

fn params(server: &MockServer) -> VenueParams {
    VenueParams {
        base_url: Some(server.uri()),
        credentials: Some(credentials()),
        http: settings(),
        ..VenueParams::default()
    }
}

fn okx(server: &MockServer) -> Arc<dyn Exchange> {
    build_exchange("okx", &params(server)).unwrap()
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).unwrap()
}

async fn mount_btc_instrument(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/v5/public/instruments"))
        .and(query_param("instType", "SWAP"))
        .and(query_param("instId", "BTC-USDT-SWAP"))
        .respond_with(ok("instruments_btc_swap.json"))
        .mount(server)
        .await;
}

async fn requests(server: &MockServer, m: &str, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == m && r.url.path() == p)
        .collect()
}

async fn only_request(server: &MockServer, m: &str, p: &str) -> Request {
    let mut r = requests(server, m, p).await;
    assert_eq!(r.len(), 1, "expected exactly one {m} {p}");
    r.remove(0)
}

fn query(r: &Request) -> BTreeMap<String, String> {
    r.url.query_pairs().into_owned().collect()
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The test's own OKX signature: base64(HMAC-SHA256(secret, ts + METHOD + path?query + body)).
fn expected_signature(secret: &str, ts: &str, m: &str, path_and_query: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}{m}{path_and_query}{body}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request carries the four auth headers and a signature recomputed from what was received.
fn assert_signed(r: &Request) {
    assert_eq!(header(r, "OK-ACCESS-KEY"), Some(KEY));
    assert_eq!(header(r, "OK-ACCESS-PASSPHRASE"), Some(PASSPHRASE));
    let ts = header(r, "OK-ACCESS-TIMESTAMP").expect("timestamp header");
    assert_eq!(ts.len(), 24, "ISO-8601 with milliseconds: {ts}");
    assert!(ts.ends_with('Z'), "{ts}");
    DateTime::parse_from_rfc3339(ts).unwrap();
    let path_and_query = match r.url.query() {
        Some(q) => format!("{}?{q}", r.url.path()),
        None => r.url.path().to_string(),
    };
    let body = String::from_utf8(r.body.clone()).unwrap();
    let want = expected_signature(SECRET, ts, r.method.as_str(), &path_and_query, &body);
    assert_eq!(
        header(r, "OK-ACCESS-SIGN"),
        Some(want.as_str()),
        "signature of {path_and_query}"
    );
}

fn assert_public(r: &Request) {
    for h in [
        "OK-ACCESS-KEY",
        "OK-ACCESS-SIGN",
        "OK-ACCESS-PASSPHRASE",
        "OK-ACCESS-TIMESTAMP",
    ] {
        assert!(header(r, h).is_none(), "public request carries {h}");
    }
}

fn json_body(r: &Request) -> Value {
    assert_eq!(header(r, "content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

fn market(qty: rust_decimal::Decimal, id: &str) -> OrderRequest {
    OrderRequest {
        symbol: btc(),
        client_order_id: cid(id),
        side: Side::Buy,
        order_type: OrderType::Market,
        quantity: qty,
        price: None,
        trigger_price: None,
        reduce_only: false,
    }
}

fn not_exist() -> ResponseTemplate {
    body(
        200,
        json!({"code":"51603","msg":"Order does not exist","data":[]}),
    )
}

// ------------------------------------------------------------------------------------ signing

#[test]
fn test_signer_reproduces_the_documented_vectors() {
    // Inputs from the OKX authentication docs; signatures from the project's vector file.
    let secret = "22582BD0CFF14C41EDBF1AB98506286D";
    let ts = "2020-12-08T09:08:57.715Z";
    assert_eq!(
        expected_signature(secret, ts, "GET", "/api/v5/account/balance?ccy=BTC", ""),
        "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY="
    );
    assert_eq!(
        expected_signature(
            secret,
            ts,
            "POST",
            "/api/v5/account/set-leverage",
            r#"{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}"#
        ),
        "eCnnCgWLjlQ9XnpUkrcny3qNq3WW/81KNrDr/XR6Xv8="
    );
}

#[test]
fn descriptor_is_honest() {
    let d = tradefleet::exchange::find_venue("okx").unwrap();
    assert!(d.has_testnet && d.needs_passphrase && d.trades_in_contracts);
    assert!(!d.notes.contains("not available"));
}

#[test]
fn missing_passphrase_is_a_config_error_naming_it() {
    let p = VenueParams {
        credentials: Some(Credentials {
            passphrase: None,
            ..credentials()
        }),
        ..VenueParams::default()
    };
    let err = build_exchange("okx", &p).unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(err.to_string().contains("passphrase"), "{err}");
}

#[tokio::test]
async fn private_call_without_credentials_is_a_config_error_and_sends_nothing() {
    let server = MockServer::start().await;
    let ex = build_exchange(
        "okx",
        &VenueParams {
            base_url: Some(server.uri()),
            ..VenueParams::default()
        },
    )
    .unwrap();
    let err = ex.balance("USDT").await.unwrap_err();
    assert_eq!(err.kind(), "config");
    let text = err.to_string();
    assert!(
        text.contains("api key") && text.contains("passphrase"),
        "{text}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let server = MockServer::start().await;
    let ex = okx(&server);
    let dbg = format!("{ex:?}");
    for s in [KEY, SECRET, PASSPHRASE] {
        assert!(!dbg.contains(s), "{dbg}");
    }
}

// ------------------------------------------------------------------------------------ market data

#[tokio::test]
async fn server_time_is_public() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/time"))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    let t = okx(&server).server_time().await.unwrap();
    assert_eq!(t.timestamp_millis(), 1_763_700_000_123);
    let r = only_request(&server, "GET", "/api/v5/public/time").await;
    assert_public(&r);
    assert!(r.url.query().is_none());
}

#[tokio::test]
async fn latest_klines_come_oldest_first_with_confirm_and_base_volume() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/candles"))
        .respond_with(ok("klines_btc_swap.json"))
        .mount(&server)
        .await;
    let c = okx(&server)
        .klines(&btc(), Timeframe::M5, None, 3)
        .await
        .unwrap();
    let r = only_request(&server, "GET", "/api/v5/market/candles").await;
    assert_public(&r);
    assert_eq!(
        query(&r),
        BTreeMap::from([
            ("instId".into(), "BTC-USDT-SWAP".into()),
            ("bar".into(), "5m".into()),
            ("limit".into(), "3".into()),
        ])
    );
    let times: Vec<i64> = c.iter().map(|c| c.open_time.timestamp_millis()).collect();
    assert_eq!(
        times,
        [1_763_699_400_000, 1_763_699_700_000, 1_763_700_000_000]
    );
    assert_eq!(
        c.iter().map(|c| c.closed).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(c[0].open, dec!(91100.5));
    assert_eq!(c[0].close, dec!(91150));
    assert_eq!(
        c[0].volume,
        dec!(18.75),
        "volCcy (base coin), not contracts"
    );
    assert_eq!(c[2].high, dec!(91250));
}

#[tokio::test]
async fn official_kline_example_parses_with_the_forming_candle_last() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/candles"))
        .respond_with(ok("klines.json"))
        .mount(&server)
        .await;
    let c = okx(&server)
        .klines(&btc(), Timeframe::H1, None, 2)
        .await
        .unwrap();
    assert_eq!(
        query(&only_request(&server, "GET", "/api/v5/market/candles").await)["bar"],
        "1H"
    );
    assert_eq!(c.len(), 2);
    assert!(c[0].closed && !c[1].closed);
    assert_eq!(c[1].open, dec!(3.721));
    assert_eq!(c[1].volume, dec!(22698348.04828491));
}

#[tokio::test]
async fn more_latest_klines_than_one_page_walk_back_with_after() {
    let server = MockServer::start().await;
    let newest = 1_763_700_000_000i64;
    let oldest_of_first = newest - 299 * 300_000;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/candles"))
        .and(query_param("after", oldest_of_first.to_string()))
        .respond_with(body(200, candle_rows(oldest_of_first - 300_000, 100)))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/candles"))
        .respond_with(body(200, candle_rows(newest, 300)))
        .with_priority(2)
        .mount(&server)
        .await;
    let c = okx(&server)
        .klines(&btc(), Timeframe::M5, None, 400)
        .await
        .unwrap();
    assert_eq!(c.len(), 400);
    assert!(
        c.windows(2).all(
            |w| w[1].open_time.timestamp_millis() - w[0].open_time.timestamp_millis() == 300_000
        )
    );
    assert_eq!(c[399].open_time.timestamp_millis(), newest);
    assert!(!c[399].closed);
    let calls = requests(&server, "GET", "/api/v5/market/candles").await;
    assert_eq!(calls.len(), 2);
    assert_eq!(query(&calls[0])["limit"], "300");
    assert!(!query(&calls[0]).contains_key("after"));
    assert_eq!(query(&calls[1])["limit"], "100");
    assert_eq!(query(&calls[1])["after"], oldest_of_first.to_string());
}

#[tokio::test]
async fn klines_since_ask_for_a_window_and_old_ones_use_history() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/candles"))
        .respond_with(ok("klines_btc_swap.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/history-candles"))
        .respond_with(ok("klines_btc_swap.json"))
        .mount(&server)
        .await;
    let ex = okx(&server);
    let now = Utc::now().timestamp_millis();
    let since_ms = now - now % 300_000 - 900_000;
    let since = Utc.timestamp_millis_opt(since_ms).unwrap();
    let c = ex
        .klines(&btc(), Timeframe::M5, Some(since), 3)
        .await
        .unwrap();
    assert_eq!(c.len(), 3);
    let q = query(&only_request(&server, "GET", "/api/v5/market/candles").await);
    assert_eq!(q["before"], (since_ms - 1).to_string());
    assert_eq!(q["after"], (since_ms + 3 * 300_000).to_string());
    assert_eq!(q["limit"], "3");
    assert_eq!(q["bar"], "5m");

    let old = Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap();
    ex.klines(&btc(), Timeframe::D1, Some(old), 2)
        .await
        .unwrap();
    let q = query(&only_request(&server, "GET", "/api/v5/market/history-candles").await);
    assert_eq!(q["bar"], "1Dutc");
    assert_eq!(q["before"], (old.timestamp_millis() - 1).to_string());
    assert_eq!(
        q["after"],
        (old.timestamp_millis() + 2 * 86_400_000).to_string()
    );
}

#[tokio::test]
async fn ticker_reads_last_bid_ask() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/ticker"))
        .respond_with(ok("ticker.json"))
        .mount(&server)
        .await;
    let t = okx(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(91234.5));
    assert_eq!(t.bid, Some(dec!(91234.5)));
    assert_eq!(t.ask, Some(dec!(91234.6)));
    assert_eq!(t.time.timestamp_millis(), 1_763_700_000_456);
    let r = only_request(&server, "GET", "/api/v5/market/ticker").await;
    assert_public(&r);
    assert_eq!(r.url.query(), Some("instId=BTC-USDT-SWAP"));
}

#[tokio::test]
async fn instrument_is_in_base_coin_units() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    let i = okx(&server).instrument(&btc()).await.unwrap();
    assert_eq!(i.venue_symbol, "BTC-USDT-SWAP");
    assert_eq!(i.tick_size, dec!(0.1));
    assert_eq!(i.step_size, dec!(0.01), "lotSz 1 x ctVal 0.01");
    assert_eq!(i.min_quantity, dec!(0.01), "minSz 1 x ctVal 0.01");
    assert_eq!(i.contract_size, dec!(0.01));
    assert_eq!(i.max_leverage, dec!(100));
    assert_eq!(i.min_notional, dec!(0));
    let r = only_request(&server, "GET", "/api/v5/public/instruments").await;
    assert_eq!(r.url.query(), Some("instType=SWAP&instId=BTC-USDT-SWAP"));
}

// ------------------------------------------------------------------------------------ account

#[tokio::test]
async fn balance_is_signed_and_reads_the_asset_line() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/balance"))
        .respond_with(ok("balance.json"))
        .mount(&server)
        .await;
    let b = okx(&server).balance("USDT").await.unwrap();
    assert_eq!(b.asset, "USDT");
    assert_eq!(b.equity, dec!(4992.890093622894));
    assert_eq!(b.available, dec!(4834.3170936228935));
    assert_eq!(b.unrealized_pnl, dec!(-7.545600000000006));
    let r = only_request(&server, "GET", "/api/v5/account/balance").await;
    assert_eq!(r.url.query(), Some("ccy=USDT"));
    assert_signed(&r);
    assert!(
        header(&r, "x-simulated-trading").is_none(),
        "live by default"
    );
}

#[tokio::test]
async fn demo_trading_adds_the_simulated_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/balance"))
        .respond_with(ok("balance.json"))
        .mount(&server)
        .await;
    let ex = build_exchange(
        "okx",
        &VenueParams {
            testnet: true,
            ..params(&server)
        },
    )
    .unwrap();
    ex.balance("USDT").await.unwrap();
    let r = only_request(&server, "GET", "/api/v5/account/balance").await;
    assert_eq!(header(&r, "x-simulated-trading"), Some("1"));
    assert_signed(&r);
}

#[tokio::test]
async fn positions_in_contracts_come_back_in_base_coin() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/instruments"))
        .and(query_param("instId", "ETH-USDT-SWAP"))
        .respond_with(ok("instruments_eth_swap.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/positions"))
        .respond_with(ok("positions_swap.json"))
        .mount(&server)
        .await;
    let p = okx(&server).positions(None).await.unwrap();
    assert_eq!(p.len(), 2, "the flat SOL position is skipped: {p:?}");
    assert_eq!(p[0].symbol, btc());
    assert_eq!(p[0].side, PositionSide::Long);
    assert_eq!(p[0].quantity, dec!(0.02), "2 contracts x 0.01 BTC");
    assert_eq!(p[0].entry_price, dec!(90120.5));
    assert_eq!(p[0].mark_price, Some(dec!(91234.5)));
    assert_eq!(p[0].unrealized_pnl, dec!(22.28));
    assert_eq!(p[0].leverage, Some(dec!(10)));
    assert_eq!(p[0].liquidation_price, Some(dec!(81500.3)));
    assert_eq!(p[1].symbol.to_string(), "ETH/USDT:USDT");
    assert_eq!(p[1].side, PositionSide::Short);
    assert_eq!(p[1].quantity, dec!(3), "-30 contracts x 0.1 ETH");
    let r = only_request(&server, "GET", "/api/v5/account/positions").await;
    assert_eq!(r.url.query(), Some("instType=SWAP"));
    assert_signed(&r);
}

#[tokio::test]
async fn positions_of_one_symbol_filter_by_inst_id_and_skip_non_swaps() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/positions"))
        .respond_with(ok("positions.json"))
        .mount(&server)
        .await;
    // The official example is a MARGIN position: nothing to report for a SWAP adapter.
    let p = okx(&server).positions(Some(&btc())).await.unwrap();
    assert!(p.is_empty(), "{p:?}");
    let r = only_request(&server, "GET", "/api/v5/account/positions").await;
    assert_eq!(r.url.query(), Some("instType=SWAP&instId=BTC-USDT-SWAP"));
    assert_signed(&r);
}

#[tokio::test]
async fn set_leverage_posts_cross_margin() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v5/account/set-leverage"))
        .respond_with(ok("set_leverage.json"))
        .mount(&server)
        .await;
    okx(&server).set_leverage(&btc(), 10).await.unwrap();
    let r = only_request(&server, "POST", "/api/v5/account/set-leverage").await;
    assert_eq!(
        json_body(&r),
        json!({"instId":"BTC-USDT-SWAP","lever":"10","mgnMode":"cross"})
    );
    assert!(r.url.query().is_none());
    assert_signed(&r);
}

#[tokio::test]
async fn connectivity_reports_key_permissions() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/time"))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/config"))
        .respond_with(ok("account_config.json"))
        .mount(&server)
        .await;
    let check = okx(&server).test_connectivity().await.unwrap();
    assert_eq!(check.can_trade, Some(true));
    assert_eq!(check.can_withdraw, Some(false));
    assert_signed(&only_request(&server, "GET", "/api/v5/account/config").await);
    assert_public(&only_request(&server, "GET", "/api/v5/public/time").await);

    // Withdrawal permission and a hedge-mode account are reported.
    server.reset().await;
    let mut cfg = fixture_json("account_config.json");
    cfg["data"][0]["perm"] = json!("read_only,withdraw,trade");
    cfg["data"][0]["posMode"] = json!("long_short_mode");
    Mock::given(method("GET"))
        .and(path("/api/v5/public/time"))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/config"))
        .respond_with(body(200, cfg))
        .mount(&server)
        .await;
    let check = okx(&server).test_connectivity().await.unwrap();
    assert_eq!(check.can_withdraw, Some(true));
    assert!(
        check.notes.iter().any(|n| n.contains("long_short_mode")),
        "{check:?}"
    );
}

#[tokio::test]
async fn connectivity_without_credentials_checks_only_public_endpoints() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/time"))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    let ex = build_exchange(
        "okx",
        &VenueParams {
            base_url: Some(server.uri()),
            ..VenueParams::default()
        },
    )
    .unwrap();
    let check = ex.test_connectivity().await.unwrap();
    assert_eq!(check.can_trade, None);
    assert!(!check.notes.is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

// ------------------------------------------------------------------------------------ orders

#[tokio::test]
async fn market_order_converts_base_coin_to_contracts() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/order"))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let o = okx(&server)
        .place_order(&market(dec!(0.02), "tf1a2b3c4d"))
        .await
        .unwrap();
    let r = only_request(&server, "POST", "/api/v5/trade/order").await;
    assert_eq!(
        json_body(&r),
        json!({"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"buy","ordType":"market","sz":"2","clOrdId":"tf1a2b3c4d"})
    );
    assert_signed(&r);
    assert_eq!(o.exchange_order_id, "2896576259728695296");
    assert_eq!(o.quantity, dec!(0.02));
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(o.client_order_id, Some(cid("tf1a2b3c4d")));
    assert_eq!(o.created_at.unwrap().timestamp_millis(), 1_758_827_099_512);
}

#[tokio::test]
async fn quantity_that_is_not_whole_contracts_is_rejected_before_sending() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/order"))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let err = okx(&server)
        .place_order(&market(dec!(0.015), "tfhalf"))
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::InvalidOrder { .. }), "{err:?}");
    assert!(
        requests(&server, "POST", "/api/v5/trade/order")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn limit_order_on_demo_sends_price_and_reduce_only() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/order"))
        .respond_with(ok("place_order_official.json"))
        .mount(&server)
        .await;
    let ex = build_exchange(
        "okx",
        &VenueParams {
            testnet: true,
            ..params(&server)
        },
    )
    .unwrap();
    let req = OrderRequest {
        side: Side::Sell,
        order_type: OrderType::Limit,
        price: Some(dec!(95000.5)),
        reduce_only: true,
        ..market(dec!(0.05), "oktswap6")
    };
    let o = ex.place_order(&req).await.unwrap();
    let r = only_request(&server, "POST", "/api/v5/trade/order").await;
    assert_eq!(
        json_body(&r),
        json!({"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"sell","ordType":"limit","sz":"5","px":"95000.5","reduceOnly":true,"clOrdId":"oktswap6"})
    );
    assert_eq!(header(&r, "x-simulated-trading"), Some("1"));
    assert_signed(&r);
    assert_eq!(o.exchange_order_id, "312269865356374016");
    assert_eq!(o.price, Some(dec!(95000.5)));

    // A price off the tick grid is refused locally.
    let off_tick = OrderRequest {
        price: Some(dec!(95000.55)),
        ..req
    };
    assert!(matches!(
        ex.place_order(&off_tick).await,
        Err(ExchangeError::InvalidOrder { .. })
    ));
    assert_eq!(
        requests(&server, "POST", "/api/v5/trade/order").await.len(),
        1
    );
}

#[tokio::test]
async fn stop_and_take_profit_go_to_the_algo_endpoint() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/order-algo"))
        .respond_with(ok("place_algo_order.json"))
        .mount(&server)
        .await;
    let ex = okx(&server);
    let stop = OrderRequest {
        side: Side::Sell,
        order_type: OrderType::StopMarket,
        trigger_price: Some(dec!(85000)),
        reduce_only: true,
        ..market(dec!(0.02), "tfsl0001")
    };
    let o = ex.place_order(&stop).await.unwrap();
    assert_eq!(o.exchange_order_id, "2896574163517353984");
    assert_eq!(o.order_type, OrderType::StopMarket);
    assert_eq!(o.trigger_price, Some(dec!(85000)));
    let tp = OrderRequest {
        order_type: OrderType::TakeProfitMarket,
        trigger_price: Some(dec!(99000.1)),
        client_order_id: cid("tftp0001"),
        ..stop
    };
    ex.place_order(&tp).await.unwrap();
    let r = requests(&server, "POST", "/api/v5/trade/order-algo").await;
    assert_eq!(r.len(), 2);
    assert_eq!(
        json_body(&r[0]),
        json!({"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"sell","ordType":"conditional","sz":"2","reduceOnly":true,"algoClOrdId":"tfsl0001","slTriggerPx":"85000","slOrdPx":"-1"})
    );
    assert_eq!(
        json_body(&r[1]),
        json!({"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"sell","ordType":"conditional","sz":"2","reduceOnly":true,"algoClOrdId":"tftp0001","tpTriggerPx":"99000.1","tpOrdPx":"-1"})
    );
    assert_signed(&r[0]);
    assert_signed(&r[1]);
    assert!(
        requests(&server, "POST", "/api/v5/trade/order")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn cancel_by_client_id_tries_regular_then_algo() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-order"))
        .respond_with(ok("cancel_order.json"))
        .mount(&server)
        .await;
    let ex = okx(&server);
    ex.cancel_order(&btc(), &cid("oktswap6")).await.unwrap();
    let r = only_request(&server, "POST", "/api/v5/trade/cancel-order").await;
    assert_eq!(
        json_body(&r),
        json!({"instId":"BTC-USDT-SWAP","clOrdId":"oktswap6"})
    );
    assert_signed(&r);
    assert!(
        requests(&server, "POST", "/api/v5/trade/cancel-algos")
            .await
            .is_empty()
    );

    // Not a regular order: the per-order 51400 sends us to cancel-algos by algoClOrdId.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-order"))
        .respond_with(body(
            200,
            json!({"code":"1","msg":"","data":[{"clOrdId":"tfsl0001","ordId":"","sCode":"51400","sMsg":"Cancellation failed as the order has been filled, canceled or does not exist"}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-algos"))
        .respond_with(ok("cancel_algos.json"))
        .mount(&server)
        .await;
    ex.cancel_order(&btc(), &cid("tfsl0001")).await.unwrap();
    let r = only_request(&server, "POST", "/api/v5/trade/cancel-algos").await;
    assert_eq!(
        json_body(&r),
        json!([{"instId":"BTC-USDT-SWAP","algoClOrdId":"tfsl0001"}])
    );
    assert_signed(&r);

    // Unknown everywhere: OrderNotFound.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-order"))
        .respond_with(not_exist())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-algos"))
        .respond_with(body(
            200,
            json!({"code":"1","msg":"","data":[{"algoId":"","sCode":"51603","sMsg":"Order does not exist"}]}),
        ))
        .mount(&server)
        .await;
    let err = ex.cancel_order(&btc(), &cid("nothere")).await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::OrderNotFound { .. }),
        "{err:?}"
    );
}

fn pending_orders(n: usize) -> Value {
    let template = fixture_json("orders_pending.json")["data"][1].clone();
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut o = template.clone();
            o["ordId"] = json!(format!("90000000000000{i:04}"));
            o
        })
        .collect();
    json!({"code":"0","msg":"","data":data})
}

fn pending_algos(n: usize) -> Value {
    let template = fixture_json("orders_algo_pending.json")["data"][0].clone();
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut o = template.clone();
            o["algoId"] = json!(format!("70000000000000{i:04}"));
            o
        })
        .collect();
    json!({"code":"0","msg":"","data":data})
}

/// Candle rows, newest first, `n` bars of 5 minutes ending at `newest`.
fn candle_rows(newest: i64, n: usize) -> Value {
    let data: Vec<Value> = (0..n as i64)
        .map(|i| {
            let ts = newest - i * 300_000;
            json!([
                ts.to_string(),
                "1",
                "2",
                "0.5",
                "1.5",
                "100",
                "1",
                "150",
                if i == 0 { "0" } else { "1" }
            ])
        })
        .collect();
    json!({"code":"0","msg":"","data":data})
}

/// Batch answers echo every requested id with sCode 0.
fn echo_batch(id_field: &'static str) -> impl Fn(&Request) -> ResponseTemplate {
    move |r: &Request| {
        let items: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        let data: Vec<Value> = items
            .iter()
            .map(|i| json!({id_field: i[id_field], "clOrdId":"", "sCode":"0", "sMsg":""}))
            .collect();
        body(200, json!({"code":"0","msg":"","data":data}))
    }
}

#[tokio::test]
async fn cancel_all_batches_twenty_orders_and_ten_algos_per_call() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-pending"))
        .respond_with(body(200, pending_orders(25)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-algo-pending"))
        .respond_with(body(200, pending_algos(12)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-batch-orders"))
        .respond_with(echo_batch("ordId"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-algos"))
        .respond_with(echo_batch("algoId"))
        .mount(&server)
        .await;
    let n = okx(&server).cancel_all(&btc()).await.unwrap();
    assert_eq!(n, 37);

    let list = only_request(&server, "GET", "/api/v5/trade/orders-pending").await;
    assert_eq!(
        list.url.query(),
        Some("instType=SWAP&instId=BTC-USDT-SWAP&limit=100")
    );
    assert_signed(&list);
    let algo_list = only_request(&server, "GET", "/api/v5/trade/orders-algo-pending").await;
    assert_eq!(query(&algo_list)["ordType"], "conditional,oco");
    assert_signed(&algo_list);

    let batches = requests(&server, "POST", "/api/v5/trade/cancel-batch-orders").await;
    assert_eq!(batches.len(), 2);
    let sizes: Vec<usize> = batches
        .iter()
        .map(|r| json_body(r).as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [20, 5]);
    assert_eq!(
        json_body(&batches[1])[4],
        json!({"instId":"BTC-USDT-SWAP","ordId":"900000000000000024"})
    );
    batches.iter().for_each(assert_signed);
    let algos = requests(&server, "POST", "/api/v5/trade/cancel-algos").await;
    let sizes: Vec<usize> = algos
        .iter()
        .map(|r| json_body(r).as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [10, 2]);
    assert_eq!(
        json_body(&algos[1]),
        json!([
            {"instId":"BTC-USDT-SWAP","algoId":"700000000000000010"},
            {"instId":"BTC-USDT-SWAP","algoId":"700000000000000011"}
        ])
    );
    algos.iter().for_each(assert_signed);
}

#[tokio::test]
async fn cancel_all_reports_a_failed_item_but_not_an_already_gone_one() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-pending"))
        .respond_with(body(200, pending_orders(2)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-algo-pending"))
        .respond_with(body(200, json!({"code":"0","msg":"","data":[]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-batch-orders"))
        .respond_with(body(
            200,
            json!({"code":"2","msg":"","data":[
                {"ordId":"900000000000000000","sCode":"0","sMsg":""},
                {"ordId":"900000000000000001","sCode":"51400","sMsg":"already canceled"}
            ]}),
        ))
        .mount(&server)
        .await;
    assert_eq!(okx(&server).cancel_all(&btc()).await.unwrap(), 1);
    assert!(
        requests(&server, "POST", "/api/v5/trade/cancel-algos")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn open_orders_include_conditional_ones_in_base_coin() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-pending"))
        .respond_with(ok("orders_pending.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-algo-pending"))
        .respond_with(ok("orders_algo_pending.json"))
        .mount(&server)
        .await;
    let o = okx(&server).open_orders(&btc()).await.unwrap();
    assert_eq!(o.len(), 4);
    assert_eq!(o[0].client_order_id, Some(cid("tfbuy0001")));
    assert_eq!(o[0].status, OrderStatus::PartiallyFilled);
    assert_eq!(o[0].order_type, OrderType::Limit);
    assert_eq!(o[0].quantity, dec!(0.03));
    assert_eq!(o[0].filled_quantity, dec!(0.01));
    assert_eq!(o[0].price, Some(dec!(90000)));
    assert_eq!(o[0].fee, Some(dec!(0.36)), "fee as a cost");
    assert_eq!(o[1].client_order_id, None);
    assert_eq!(
        o[1].order_type,
        OrderType::Limit,
        "post_only is a limit order"
    );
    assert!(o[1].reduce_only);
    assert_eq!(o[2].order_type, OrderType::StopMarket);
    assert_eq!(o[2].trigger_price, Some(dec!(85000)));
    assert_eq!(o[2].quantity, dec!(0.02));
    assert_eq!(o[2].status, OrderStatus::Open);
    assert_eq!(o[2].exchange_order_id, "2896574163517353984");
    assert_eq!(o[3].order_type, OrderType::TakeProfitMarket);
    assert_eq!(o[3].trigger_price, Some(dec!(99000)));
    let algo = only_request(&server, "GET", "/api/v5/trade/orders-algo-pending").await;
    assert_eq!(
        algo.url.query(),
        Some("ordType=conditional&instType=SWAP&instId=BTC-USDT-SWAP&limit=100")
    );
    assert_signed(&algo);
}

#[tokio::test]
async fn open_orders_follow_pages_of_one_hundred() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-pending"))
        .and(query_param("after", "900000000000000099"))
        .respond_with(body(200, pending_orders(3)))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-pending"))
        .respond_with(body(200, pending_orders(100)))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/orders-algo-pending"))
        .respond_with(body(200, json!({"code":"0","msg":"","data":[]})))
        .mount(&server)
        .await;
    let o = okx(&server).open_orders(&btc()).await.unwrap();
    assert_eq!(o.len(), 103);
    assert_eq!(
        requests(&server, "GET", "/api/v5/trade/orders-pending")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn order_by_client_id_finds_regular_then_algo_else_none() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order"))
        .respond_with(ok("order_details.json"))
        .mount(&server)
        .await;
    let ex = okx(&server);
    let o = ex
        .order_by_client_id(&btc(), &cid("tf1a2b3c4d"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(o.quantity, dec!(0.02));
    assert_eq!(o.filled_quantity, dec!(0.02));
    assert_eq!(o.average_price, Some(dec!(91230.4)));
    assert_eq!(o.fee, Some(dec!(0.9123)));
    assert_eq!(o.order_type, OrderType::Market);
    let r = only_request(&server, "GET", "/api/v5/trade/order").await;
    assert_eq!(
        r.url.query(),
        Some("instId=BTC-USDT-SWAP&clOrdId=tf1a2b3c4d")
    );
    assert_signed(&r);

    // Not a regular order, but a pending algo order.
    server.reset().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order"))
        .respond_with(not_exist())
        .mount(&server)
        .await;
    let mut algo = fixture_json("orders_algo_pending.json");
    algo["data"].as_array_mut().unwrap().truncate(1);
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order-algo"))
        .respond_with(body(200, algo))
        .mount(&server)
        .await;
    let o = ex
        .order_by_client_id(&btc(), &cid("tfsl0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.order_type, OrderType::StopMarket);
    assert_eq!(o.exchange_order_id, "2896574163517353984");
    let r = only_request(&server, "GET", "/api/v5/trade/order-algo").await;
    assert_eq!(r.url.query(), Some("algoClOrdId=tfsl0001"));
    assert_signed(&r);

    // Unknown to both: None, not an error.
    server.reset().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order"))
        .respond_with(not_exist())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order-algo"))
        .respond_with(not_exist())
        .mount(&server)
        .await;
    assert_eq!(
        ex.order_by_client_id(&btc(), &cid("nothere"))
            .await
            .unwrap(),
        None
    );
}

// ------------------------------------------------------------------------------------ errors

#[tokio::test]
async fn rate_limit_is_retried_for_reads_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/ticker"))
        .respond_with(body(
            429,
            json!({"code":"50011","msg":"Rate limit reached. Please refer to API documentation and throttle requests accordingly","data":[]}),
        ))
        .mount(&server)
        .await;
    let err = okx(&server).ticker(&btc()).await.unwrap_err();
    assert!(matches!(err, ExchangeError::RateLimited { .. }), "{err:?}");
    assert!(err.to_string().contains("50011"));
    // One attempt plus `max_retries` (2).
    assert_eq!(
        requests(&server, "GET", "/api/v5/market/ticker")
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn expired_timestamp_resyncs_the_clock_then_succeeds() {
    let server = MockServer::start().await;
    let venue_now = Utc::now() + chrono::Duration::hours(1);
    Mock::given(method("GET"))
        .and(path("/api/v5/account/balance"))
        .respond_with(body(
            401,
            json!({"code":"50102","msg":"Timestamp request expired","data":[]}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/balance"))
        .respond_with(ok("balance.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/time"))
        .respond_with(body(
            200,
            json!({"code":"0","msg":"","data":[{"ts": venue_now.timestamp_millis().to_string()}]}),
        ))
        .mount(&server)
        .await;
    let b = okx(&server).balance("USDT").await.unwrap();
    assert_eq!(b.equity, dec!(4992.890093622894));
    let calls = requests(&server, "GET", "/api/v5/account/balance").await;
    assert_eq!(calls.len(), 2);
    assert_eq!(
        requests(&server, "GET", "/api/v5/public/time").await.len(),
        1
    );
    let ts = |r: &Request| {
        DateTime::parse_from_rfc3339(header(r, "OK-ACCESS-TIMESTAMP").unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let shift = ts(&calls[1]) - ts(&calls[0]);
    assert!(
        shift > chrono::Duration::minutes(50),
        "the retry is signed with the venue's clock, shifted by {shift}"
    );
    calls.iter().for_each(assert_signed);
}

#[tokio::test]
async fn bad_signature_is_an_auth_error_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/balance"))
        .respond_with(body(
            401,
            json!({"code":"50113","msg":"Invalid Sign","data":[]}),
        ))
        .mount(&server)
        .await;
    let err = okx(&server).balance("USDT").await.unwrap_err();
    assert!(matches!(err, ExchangeError::Auth { .. }), "{err:?}");
    assert_eq!(
        requests(&server, "GET", "/api/v5/account/balance")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn ip_not_whitelisted_is_a_permission_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/balance"))
        .respond_with(body(
            401,
            json!({"code":"50110","msg":"Your IP 1.2.3.4 is not included in your API key's IP whitelist.","data":[]}),
        ))
        .mount(&server)
        .await;
    let err = okx(&server).balance("USDT").await.unwrap_err();
    assert!(matches!(err, ExchangeError::Permission { .. }), "{err:?}");
}

async fn place_with_answer(answer: ResponseTemplate) -> (ExchangeError, MockServer) {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/order"))
        .respond_with(answer)
        .mount(&server)
        .await;
    let err = okx(&server)
        .place_order(&market(dec!(0.02), "tf1a2b3c4d"))
        .await
        .unwrap_err();
    (err, server)
}

#[tokio::test]
async fn insufficient_margin_from_the_per_order_code() {
    let (err, server) = place_with_answer(ok("error_insufficient_margin.json")).await;
    assert!(
        matches!(err, ExchangeError::InsufficientMargin { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("51008"));
    assert_eq!(
        requests(&server, "POST", "/api/v5/trade/order").await.len(),
        1
    );
}

#[tokio::test]
async fn duplicate_client_order_id() {
    let (err, _) = place_with_answer(body(
        200,
        json!({"code":"1","msg":"All operations failed","data":[{"clOrdId":"tf1a2b3c4d","ordId":"","sCode":"51016","sMsg":"Duplicated clOrdId","tag":""}]}),
    ))
    .await;
    assert!(
        matches!(err, ExchangeError::DuplicateClientOrderId { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn per_order_error_in_data_is_mapped_not_the_generic_top_level_code() {
    let (err, _) = place_with_answer(body(
        200,
        json!({"code":"1","msg":"All operations failed","data":[{"clOrdId":"tf1a2b3c4d","ordId":"","sCode":"51121","sMsg":"Order quantity must be a multiple of the lot size.","tag":""}]}),
    ))
    .await;
    match err {
        ExchangeError::InvalidOrder { message, .. } => {
            assert!(
                message.contains("51121") && message.contains("lot size"),
                "{message}"
            )
        }
        other => panic!("expected InvalidOrder, got {other:?}"),
    }
}

#[tokio::test]
async fn server_error_on_a_write_is_outcome_unknown_after_exactly_one_post() {
    let (err, server) = place_with_answer(
        ResponseTemplate::new(502).set_body_string("<html>502 Bad Gateway</html>"),
    )
    .await;
    assert!(
        matches!(err, ExchangeError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert_eq!(
        requests(&server, "POST", "/api/v5/trade/order").await.len(),
        1
    );
}

#[tokio::test]
async fn busy_code_on_a_write_is_outcome_unknown_too() {
    let (err, server) = place_with_answer(body(
        200,
        json!({"code":"50013","msg":"Systems are busy. Please try again later.","data":[]}),
    ))
    .await;
    assert!(
        matches!(err, ExchangeError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert_eq!(
        requests(&server, "POST", "/api/v5/trade/order").await.len(),
        1
    );
}

#[tokio::test]
async fn server_error_on_a_read_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/ticker"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/market/ticker"))
        .respond_with(ok("ticker.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let t = okx(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(91234.5));
    assert_eq!(
        requests(&server, "GET", "/api/v5/market/ticker")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn unknown_instrument_is_unknown_symbol() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/instruments"))
        .respond_with(body(
            200,
            json!({"code":"51001","msg":"Instrument ID does not exist","data":[]}),
        ))
        .mount(&server)
        .await;
    let doge: Symbol = "NOPE/USDT:USDT".parse().unwrap();
    let ex = okx(&server);
    match ex.instrument(&doge).await.unwrap_err() {
        ExchangeError::UnknownSymbol { symbol, .. } => assert_eq!(symbol, "NOPE-USDT-SWAP"),
        other => panic!("{other:?}"),
    }
    // An order for it never reaches the trade endpoint.
    let err = ex
        .place_order(&OrderRequest {
            symbol: doge,
            ..market(dec!(1), "tfx")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_symbol");
    assert!(
        requests(&server, "POST", "/api/v5/trade/order")
            .await
            .is_empty()
    );

    // An empty answer means the same; inverse or non-linear symbols are refused locally.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/instruments"))
        .respond_with(body(200, json!({"code":"0","msg":"","data":[]})))
        .mount(&server)
        .await;
    assert_eq!(
        ex.instrument(&btc()).await.unwrap_err().kind(),
        "unknown_symbol"
    );
    let inverse: Symbol = "BTC/USD:BTC".parse().unwrap();
    assert_eq!(
        ex.ticker(&inverse).await.unwrap_err().kind(),
        "unknown_symbol"
    );
}

// ------------------------------------------------------------------------------------ malformed

/// Normal answers of every endpoint at a low priority, so that one endpoint can be broken.
async fn mount_background(server: &MockServer) {
    let mocks = [
        ("GET", "/api/v5/public/time", ok("server_time.json")),
        (
            "GET",
            "/api/v5/public/instruments",
            ok("instruments_btc_swap.json"),
        ),
        (
            "GET",
            "/api/v5/trade/orders-pending",
            body(200, pending_orders(2)),
        ),
        (
            "GET",
            "/api/v5/trade/orders-algo-pending",
            ok("orders_algo_pending.json"),
        ),
        ("GET", "/api/v5/trade/order", not_exist()),
        ("GET", "/api/v5/trade/order-algo", not_exist()),
    ];
    for (m, p, answer) in mocks {
        Mock::given(method(m))
            .and(path(p))
            .respond_with(answer)
            .with_priority(10)
            .mount(server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-batch-orders"))
        .respond_with(echo_batch("ordId"))
        .with_priority(10)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/cancel-algos"))
        .respond_with(echo_batch("algoId"))
        .with_priority(10)
        .mount(server)
        .await;
}

/// Every endpoint answering a truncated or non-JSON body: an error, never a panic.
#[tokio::test]
async fn malformed_answers_from_every_endpoint_are_errors() {
    let server = MockServer::start().await;
    let endpoints: [(&str, &str, &str); 18] = [
        ("GET", "/api/v5/public/time", "server_time.json"),
        ("GET", "/api/v5/market/candles", "klines_btc_swap.json"),
        (
            "GET",
            "/api/v5/market/history-candles",
            "klines_btc_swap.json",
        ),
        ("GET", "/api/v5/market/ticker", "ticker.json"),
        (
            "GET",
            "/api/v5/public/instruments",
            "instruments_btc_swap.json",
        ),
        ("GET", "/api/v5/account/balance", "balance.json"),
        ("GET", "/api/v5/account/positions", "positions_swap.json"),
        ("GET", "/api/v5/account/config", "account_config.json"),
        ("POST", "/api/v5/account/set-leverage", "set_leverage.json"),
        ("POST", "/api/v5/trade/order", "place_order.json"),
        ("POST", "/api/v5/trade/order-algo", "place_algo_order.json"),
        ("POST", "/api/v5/trade/cancel-order", "cancel_order.json"),
        (
            "POST",
            "/api/v5/trade/cancel-batch-orders",
            "cancel_order.json",
        ),
        ("POST", "/api/v5/trade/cancel-algos", "cancel_algos.json"),
        ("GET", "/api/v5/trade/orders-pending", "orders_pending.json"),
        (
            "GET",
            "/api/v5/trade/orders-algo-pending",
            "orders_algo_pending.json",
        ),
        ("GET", "/api/v5/trade/order", "order_details.json"),
        (
            "GET",
            "/api/v5/trade/order-algo",
            "orders_algo_pending.json",
        ),
    ];
    let sl = OrderRequest {
        order_type: OrderType::StopMarket,
        trigger_price: Some(dec!(80000)),
        side: Side::Sell,
        reduce_only: true,
        ..market(dec!(0.02), "tfsl")
    };
    let old = Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap();
    for (m, p, f) in endpoints {
        let full = fixture(f);
        for bad in [
            full[..full.len() / 2].to_string(),
            full[..full.len() - 3].to_string(),
            "<html>oops</html>".to_string(),
            String::new(),
        ] {
            server.reset().await;
            Mock::given(method(m))
                .and(path(p))
                .respond_with(ResponseTemplate::new(200).set_body_string(bad.clone()))
                .with_priority(1)
                .mount(&server)
                .await;
            mount_background(&server).await;
            // A fresh instance per case: one shared client-side rate budget would only slow this down.
            let ex = okx(&server);
            let result = match (m, p) {
                (_, "/api/v5/public/time") => ex.server_time().await.map(|_| ()),
                (_, "/api/v5/market/candles") => {
                    ex.klines(&btc(), Timeframe::M5, None, 3).await.map(|_| ())
                }
                (_, "/api/v5/market/history-candles") => ex
                    .klines(&btc(), Timeframe::M5, Some(old), 3)
                    .await
                    .map(|_| ()),
                (_, "/api/v5/market/ticker") => ex.ticker(&btc()).await.map(|_| ()),
                (_, "/api/v5/public/instruments") => ex.instrument(&btc()).await.map(|_| ()),
                (_, "/api/v5/account/balance") => ex.balance("USDT").await.map(|_| ()),
                (_, "/api/v5/account/positions") => ex.positions(None).await.map(|_| ()),
                (_, "/api/v5/account/config") => ex.test_connectivity().await.map(|_| ()),
                (_, "/api/v5/account/set-leverage") => ex.set_leverage(&btc(), 5).await,
                ("POST", "/api/v5/trade/order") => {
                    ex.place_order(&market(dec!(0.02), "tfm")).await.map(|_| ())
                }
                (_, "/api/v5/trade/order-algo") if m == "POST" => {
                    ex.place_order(&sl).await.map(|_| ())
                }
                (_, "/api/v5/trade/cancel-order") => ex.cancel_order(&btc(), &cid("tfm")).await,
                (_, "/api/v5/trade/cancel-batch-orders" | "/api/v5/trade/cancel-algos") => {
                    ex.cancel_all(&btc()).await.map(|_| ())
                }
                (_, "/api/v5/trade/orders-pending" | "/api/v5/trade/orders-algo-pending") => {
                    ex.open_orders(&btc()).await.map(|_| ())
                }
                (_, "/api/v5/trade/order" | "/api/v5/trade/order-algo") => {
                    ex.order_by_client_id(&btc(), &cid("tfm")).await.map(|_| ())
                }
                other => panic!("no operation for {other:?}"),
            };
            assert!(
                result.is_err(),
                "{m} {p} accepted {:?}",
                &bad[..bad.len().min(40)]
            );
            assert!(
                !requests(&server, m, p).await.is_empty(),
                "{m} {p} was never called"
            );
        }
    }
}

// ------------------------------------------------------------------------------------ idempotency

#[tokio::test]
async fn timed_out_order_is_reconciled_by_client_id_without_a_second_post() {
    let server = MockServer::start().await;
    mount_btc_instrument(&server).await;
    // Before placing: unknown as a regular order and as an algo order.
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order"))
        .respond_with(not_exist())
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order-algo"))
        .respond_with(not_exist())
        .mount(&server)
        .await;
    // The venue takes the order but answers after the client has given up.
    Mock::given(method("POST"))
        .and(path("/api/v5/trade/order"))
        .respond_with(ok("place_order.json").set_delay(Duration::from_millis(3_000)))
        .mount(&server)
        .await;
    // Afterwards the order exists under its clOrdId.
    Mock::given(method("GET"))
        .and(path("/api/v5/trade/order"))
        .respond_with(ok("order_details.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let ex = build_exchange(
        "okx",
        &VenueParams {
            http: HttpSettings {
                timeout_ms: 500,
                ..settings()
            },
            ..params(&server)
        },
    )
    .unwrap();
    let req = market(dec!(0.02), "tf1a2b3c4d");
    let placement = place_once(ex.as_ref(), &req, ReconcilePolicy::default())
        .await
        .unwrap();
    match placement {
        Placement::Existing(o) => {
            assert_eq!(o.exchange_order_id, "2896576259728695296");
            assert_eq!(o.client_order_id, Some(cid("tf1a2b3c4d")));
            assert_eq!(o.quantity, dec!(0.02));
        }
        other => panic!("expected the existing order, got {other:?}"),
    }
    assert_eq!(
        requests(&server, "POST", "/api/v5/trade/order").await.len(),
        1
    );
    assert_eq!(
        requests(&server, "GET", "/api/v5/trade/order").await.len(),
        2
    );
}
