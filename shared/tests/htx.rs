//! HTX USDT-M linear swap adapter through the public API only, against a wiremock venue on
//! 127.0.0.1 replaying recorded (and labelled constructed) payloads: exact requests (method, path,
//! query, JSON body, Signature V2 recomputed from what the server received with its host:port),
//! contract conversion, every error class, malformed answers and exactly-once placement.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{NaiveDateTime, TimeZone, Utc};
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
use tradefleet::exchange::{Credentials, Exchange, ExchangeError, VenueParams, build_exchange};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "htx-test-access-key";
const SECRET: &str = "htx-test-secret-0123456789";

const TIMESTAMP: &str = "/api/v1/timestamp";
const KLINE: &str = "/linear-swap-ex/market/history/kline";
const MERGED: &str = "/linear-swap-ex/market/detail/merged";
const CONTRACT_INFO: &str = "/linear-swap-api/v1/swap_contract_info";
const BALANCE: &str = "/v5/account/balance";
const POSITIONS: &str = "/v5/trade/position/opens";
const LEVER: &str = "/v5/position/lever";
const ORDER: &str = "/v5/trade/order";
const ALGO_ORDER: &str = "/v5/algo/order";
const CANCEL: &str = "/v5/trade/cancel_order";
const CANCEL_ALL: &str = "/v5/trade/cancel_all_orders";
const CANCEL_ALGOS: &str = "/v5/algo/cancel_orders";
const OPENS: &str = "/v5/trade/order/opens";
const ALGO_OPENS: &str = "/v5/algo/order/opens";
const RISK_LIMIT: &str = "/v5/market/risk/limit";

/// The adapter's documented client-id mapping of the ids used below (SHA-256, first 8 bytes,
/// top bit cleared), computed independently.
const CID_MARKET: &str = "3402580478552149585"; // tf1a2b3c4d
const CID_BUY: &str = "7983795857485280536"; // tfbuy0001
const CID_SL: &str = "1805321002945273726"; // tfsl0001
const CID_TP: &str = "682312136378921276"; // tftp0001

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/htx/{name}", env!("CARGO_MANIFEST_DIR"));
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

/// A V5 error answer (constructed: documented code and message, V5 envelope).
fn v5_error(code: i64, message: &str) -> ResponseTemplate {
    body(
        200,
        json!({"code": code, "message": message, "data": null, "ts": 1_780_000_000_000i64}),
    )
}

fn not_found() -> ResponseTemplate {
    v5_error(1061, "This order doesn't exist.")
}

fn credentials() -> Credentials {
    Credentials {
        api_key: SecretString::from(KEY),
        api_secret: SecretString::from(SECRET),
        passphrase: None,
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

fn htx(server: &MockServer) -> Arc<dyn Exchange> {
    build_exchange("htx", &params(server)).unwrap()
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).unwrap()
}

async fn mount_contract_info(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(CONTRACT_INFO))
        .and(query_param("contract_code", "BTC-USDT"))
        .respond_with(ok("contract_info.json"))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(RISK_LIMIT))
        .and(query_param("contract_code", "BTC-USDT"))
        .respond_with(ok("risk_limit_v5.json"))
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

const AUTH_PARAMS: [&str; 5] = [
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "Timestamp",
    "Signature",
];

/// The business parameters of the query (auth parameters removed).
fn query(r: &Request) -> BTreeMap<String, String> {
    r.url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| !AUTH_PARAMS.contains(&k.as_str()))
        .collect()
}

fn param(r: &Request, name: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The test's own percent-encoding: unreserved characters stay, everything else `%XX` upper-case.
fn quote(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The test's own Signature V2.
fn expected_signature(
    secret: &str,
    m: &str,
    host: &str,
    p: &str,
    pairs: &[(String, String)],
) -> String {
    let mut sorted: Vec<_> = pairs.to_vec();
    sorted.sort();
    let q = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
        .collect::<Vec<_>>()
        .join("&");
    let payload = format!("{m}\n{host}\n{p}\n{q}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request carries the auth parameters and a Signature recomputed from what the server
/// received, over the host the server listens on (`127.0.0.1:port`).
fn assert_signed(server: &MockServer, r: &Request) {
    assert_eq!(param(r, "AccessKeyId").as_deref(), Some(KEY));
    assert_eq!(param(r, "SignatureMethod").as_deref(), Some("HmacSHA256"));
    assert_eq!(param(r, "SignatureVersion").as_deref(), Some("2"));
    let ts = param(r, "Timestamp").expect("Timestamp");
    assert_eq!(ts.len(), 19, "YYYY-MM-DDThh:mm:ss: {ts}");
    NaiveDateTime::parse_from_str(&ts, "%Y-%m-%dT%H:%M:%S").unwrap();
    let raw_query = r.url.query().unwrap();
    assert!(
        raw_query.contains(&format!("Timestamp={}", quote(&ts))),
        "the colons of the timestamp are sent encoded: {raw_query}"
    );
    let pairs: Vec<(String, String)> = r
        .url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "Signature")
        .collect();
    let host = server.address().to_string();
    let want = expected_signature(SECRET, r.method.as_str(), &host, r.url.path(), &pairs);
    assert_eq!(
        param(r, "Signature").as_deref(),
        Some(want.as_str()),
        "signature of {} {}",
        r.method,
        r.url.path()
    );
}

fn assert_public(r: &Request) {
    for p in AUTH_PARAMS {
        assert!(param(r, p).is_none(), "public request carries {p}");
    }
}

fn json_body(r: &Request) -> Value {
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok());
    assert_eq!(ct, Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

/// POSTs sign only the four auth parameters: nothing else travels in the query.
fn assert_signed_post(server: &MockServer, r: &Request) {
    assert!(query(r).is_empty(), "POST query carries {:?}", query(r));
    assert_signed(server, r);
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

fn stop(id: &str) -> OrderRequest {
    OrderRequest {
        side: Side::Sell,
        order_type: OrderType::StopMarket,
        trigger_price: Some(dec!(85000)),
        reduce_only: true,
        ..market(dec!(0.02), id)
    }
}

// ------------------------------------------------------------------------------------ signing

#[test]
fn test_signer_reproduces_the_vectors() {
    // Vectors H2 and H3 of the project's signing-vector file.
    let auth = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("AccessKeyId", "abcdef12-34567890-abcdef12-3456"),
            ("SignatureMethod", "HmacSHA256"),
            ("SignatureVersion", "2"),
            ("Timestamp", "2026-11-21T04:00:00"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        v.reverse();
        v
    };
    let secret = "00000000-11111111-22222222-3333";
    assert_eq!(
        expected_signature(
            secret,
            "POST",
            "api.hbdm.com",
            "/v5/trade/order",
            &auth(&[])
        ),
        "KM/WSiJutx78Vserg3jrfjmGexBFRIPL2u/KnS4X9HE="
    );
    assert_eq!(
        expected_signature(
            secret,
            "GET",
            "api.hbdm.com",
            "/v5/trade/order",
            &auth(&[
                ("margin_mode", "cross"),
                ("contract_code", "BTC-USDT"),
                ("client_order_id", "123456789")
            ])
        ),
        "2jJgks6OFHGX4dp84zN72KashXjIlsT7X5Iv3Qk4iEQ="
    );
}

#[test]
fn descriptor_is_honest_and_testnet_is_refused() {
    let d = tradefleet::exchange::find_venue("htx").unwrap();
    assert!(!d.has_testnet && !d.needs_passphrase && d.trades_in_contracts);
    assert!(!d.notes.contains("not available"));
    let err = build_exchange(
        "htx",
        &VenueParams {
            testnet: true,
            ..VenueParams::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), "config");
}

#[tokio::test]
async fn private_call_without_credentials_is_a_config_error_and_sends_nothing() {
    let server = MockServer::start().await;
    let ex = build_exchange(
        "htx",
        &VenueParams {
            base_url: Some(server.uri()),
            ..VenueParams::default()
        },
    )
    .unwrap();
    let err = ex.balance("USDT").await.unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(err.to_string().contains("api key"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn debug_output_and_errors_never_show_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(BALANCE))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    let dbg = format!("{ex:?}");
    let err = ex.balance("USDT").await.unwrap_err().to_string();
    for s in [KEY, SECRET] {
        assert!(!dbg.contains(s), "{dbg}");
        assert!(!err.contains(s), "{err}");
    }
    assert!(!err.contains("Signature"), "{err}");
}

// ------------------------------------------------------------------------------------ market data

#[tokio::test]
async fn server_time_is_public() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(TIMESTAMP))
        .respond_with(ok("server_timestamp.json"))
        .mount(&server)
        .await;
    let t = htx(&server).server_time().await.unwrap();
    assert_eq!(t.timestamp_millis(), 1_578_124_684_692);
    let r = only_request(&server, "GET", TIMESTAMP).await;
    assert_public(&r);
    assert!(r.url.query().is_none());
}

#[tokio::test]
async fn official_kline_example_is_in_seconds_with_base_volume() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(KLINE))
        .respond_with(ok("klines.json"))
        .mount(&server)
        .await;
    let c = htx(&server)
        .klines(&btc(), Timeframe::M1, None, 5)
        .await
        .unwrap();
    let r = only_request(&server, "GET", KLINE).await;
    assert_public(&r);
    assert_eq!(
        query(&r),
        BTreeMap::from([
            ("contract_code".into(), "BTC-USDT".into()),
            ("period".into(), "1min".into()),
            ("size".into(), "5".into()),
        ])
    );
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].open_time.timestamp(), 1_603_695_060, "id is seconds");
    assert_eq!(c[0].open, dec!(13076.8));
    assert_eq!(c[0].volume, dec!(0.004), "amount (base coin), not vol");
    assert!(c[0].closed);
}

#[tokio::test]
async fn klines_come_out_oldest_first_and_the_forming_one_open() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(KLINE))
        .and(query_param("period", "60min"))
        .respond_with(ok("klines_btc_60min.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    let c = ex.klines(&btc(), Timeframe::H1, None, 2).await.unwrap();
    // Three rows out of order; the latest two, oldest first.
    let times: Vec<i64> = c.iter().map(|c| c.open_time.timestamp()).collect();
    assert_eq!(times, [1_763_697_600, 1_763_701_200]);
    assert_eq!(c[0].volume, dec!(8.75));
    assert_eq!(c[1].close, dec!(91250));

    // A candle that has not ended yet is not closed.
    server.reset().await;
    let now = Utc::now().timestamp();
    let hour = now - now % 3_600;
    let rows: Vec<Value> = [hour, hour - 3_600, hour - 7_200]
        .iter()
        .map(|id| json!({"id": id, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "amount": 0.25, "vol": 250, "count": 3, "trade_turnover": 10}))
        .collect();
    Mock::given(method("GET"))
        .and(path(KLINE))
        .respond_with(body(
            200,
            json!({"ch":"market.BTC-USDT.kline.60min","status":"ok","ts":now * 1000,"data":rows}),
        ))
        .mount(&server)
        .await;
    let c = ex.klines(&btc(), Timeframe::H1, None, 3).await.unwrap();
    assert_eq!(
        c.iter().map(|c| c.closed).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(c[2].open_time.timestamp(), hour);
}

/// The forming candle is told by the clock the adapter was built with (`VenueParams::clock`),
/// corrected by the measured offset: a server-time read at the same instant changes no flag.
#[tokio::test]
async fn the_injected_clock_decides_which_candle_is_forming() {
    let server = MockServer::start().await;
    // 5 minutes into the newest 60min candle of klines_btc_60min.json.
    let now = 1_763_701_500_000i64;
    Mock::given(method("GET"))
        .and(path(KLINE))
        .respond_with(ok("klines_btc_60min.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(TIMESTAMP))
        .respond_with(body(200, json!({"status": "ok", "ts": now})))
        .mount(&server)
        .await;
    let clock = ManualClock::new(Utc.timestamp_millis_opt(now).unwrap());
    let ex = build_exchange(
        "htx",
        &VenueParams {
            clock: Arc::new(clock),
            ..params(&server)
        },
    )
    .unwrap();
    let flags = |c: Vec<tradefleet::domain::Candle>| c.iter().map(|c| c.closed).collect::<Vec<_>>();
    let before = ex.klines(&btc(), Timeframe::H1, None, 3).await.unwrap();
    assert_eq!(
        flags(before),
        [true, true, false],
        "the newest candle holds `now`"
    );
    assert_eq!(ex.server_time().await.unwrap().timestamp_millis(), now);
    let after = ex.klines(&btc(), Timeframe::H1, None, 3).await.unwrap();
    assert_eq!(
        flags(after),
        [true, true, false],
        "a zero offset moves nothing"
    );
}

#[tokio::test]
async fn klines_since_ask_for_a_window_in_seconds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(KLINE))
        .respond_with(ok("klines_btc_60min.json"))
        .mount(&server)
        .await;
    let since = Utc.timestamp_opt(1_763_694_000, 0).unwrap();
    let c = htx(&server)
        .klines(&btc(), Timeframe::H1, Some(since), 3)
        .await
        .unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c[0].open_time, since);
    let q = query(&only_request(&server, "GET", KLINE).await);
    assert_eq!(q["from"], "1763694000");
    assert_eq!(q["to"], "1763701200", "from + 2 bars, inclusive");
    assert!(
        !q.contains_key("size"),
        "size would make HTX ignore from/to"
    );
    assert_eq!(q["period"], "60min");
}

/// Rows of 1-minute candles for the `[from, to]` window a request asks for.
fn window_rows(r: &Request) -> ResponseTemplate {
    let q = query(r);
    let from: i64 = q["from"].parse().unwrap();
    let to: i64 = q["to"].parse().unwrap();
    let rows: Vec<Value> = (from..=to)
        .step_by(60)
        .map(|id| json!({"id": id, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "amount": 0.1, "vol": 100}))
        .collect();
    body(200, json!({"status":"ok","ts":1,"data":rows}))
}

#[tokio::test]
async fn klines_since_walk_windows_of_two_thousand_bars() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(KLINE))
        .respond_with(window_rows)
        .mount(&server)
        .await;
    let now = Utc::now().timestamp();
    let since_s = now - now % 60 - 3_000 * 60;
    let since = Utc.timestamp_opt(since_s, 0).unwrap();
    let c = htx(&server)
        .klines(&btc(), Timeframe::M1, Some(since), 2_500)
        .await
        .unwrap();
    assert_eq!(c.len(), 2_500);
    assert_eq!(c[0].open_time, since);
    assert!(
        c.windows(2)
            .all(|w| (w[1].open_time - w[0].open_time).num_seconds() == 60)
    );
    assert!(c.iter().all(|c| c.closed));
    let calls = requests(&server, "GET", KLINE).await;
    let windows: Vec<(String, String)> = calls
        .iter()
        .map(|r| (query(r)["from"].clone(), query(r)["to"].clone()))
        .collect();
    assert_eq!(
        windows,
        [
            (since_s.to_string(), (since_s + 1_999 * 60).to_string()),
            (
                (since_s + 2_000 * 60).to_string(),
                (since_s + 2_499 * 60).to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn more_latest_klines_than_one_request_use_the_window_ending_now() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(KLINE))
        .respond_with(window_rows)
        .mount(&server)
        .await;
    let c = htx(&server)
        .klines(&btc(), Timeframe::M1, None, 2_100)
        .await
        .unwrap();
    assert_eq!(c.len(), 2_100);
    let now = Utc::now().timestamp();
    let last = c[2_099].open_time.timestamp();
    assert!(
        now - last < 120,
        "ends at the current minute: {last} vs {now}"
    );
    assert!(!c[2_099].closed, "the current minute is still forming");
    let calls = requests(&server, "GET", KLINE).await;
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|r| !query(r).contains_key("size")));
}

#[tokio::test]
async fn unsupported_timeframe_sends_nothing() {
    let server = MockServer::start().await;
    let err = htx(&server)
        .klines(&btc(), Timeframe::H8, None, 3)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unsupported");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn ticker_reads_last_bid_ask() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(MERGED))
        .respond_with(ok("ticker_detail_merged.json"))
        .mount(&server)
        .await;
    let t = htx(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(13076.8));
    assert_eq!(t.bid, Some(dec!(13082.9)));
    assert_eq!(t.ask, Some(dec!(13084.2)));
    assert_eq!(t.time.timestamp_millis(), 1_603_695_162_580);
    let r = only_request(&server, "GET", MERGED).await;
    assert_public(&r);
    assert_eq!(r.url.query(), Some("contract_code=BTC-USDT"));
}

#[tokio::test]
async fn instrument_is_in_base_coin_units() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    let i = htx(&server).instrument(&btc()).await.unwrap();
    assert_eq!(i.venue_symbol, "BTC-USDT");
    assert_eq!(i.tick_size, dec!(0.1));
    assert_eq!(i.contract_size, dec!(0.001));
    assert_eq!(i.step_size, dec!(0.001), "one contract");
    assert_eq!(i.min_quantity, dec!(0.001));
    assert_eq!(i.min_notional, dec!(0));
    assert_eq!(i.max_leverage, dec!(200), "highest risk tier");
    let r = only_request(&server, "GET", CONTRACT_INFO).await;
    assert_public(&r);
    assert_eq!(r.url.query(), Some("contract_code=BTC-USDT"));
    let r = only_request(&server, "GET", RISK_LIMIT).await;
    assert_public(&r);
    assert_eq!(
        r.url.query(),
        Some("contract_code=BTC-USDT&margin_mode=cross")
    );

    // Without risk limits (endpoint missing or refusing) the ceiling is 1x, never more.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path(CONTRACT_INFO))
        .respond_with(ok("contract_info.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(RISK_LIMIT))
        .respond_with(ResponseTemplate::new(404).set_body_string("not found"))
        .mount(&server)
        .await;
    let i = htx(&server).instrument(&btc()).await.unwrap();
    assert_eq!(i.max_leverage, dec!(1));
    assert_eq!(i.step_size, dec!(0.001));
}

// ------------------------------------------------------------------------------------ account

#[tokio::test]
async fn balance_is_signed_and_reads_the_asset_line() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(BALANCE))
        .respond_with(ok("balance.json"))
        .mount(&server)
        .await;
    let b = htx(&server).balance("USDT").await.unwrap();
    assert_eq!(b.asset, "USDT");
    assert_eq!(b.equity, dec!(174.216697577770536136));
    assert_eq!(b.available, dec!(174.216697577770536136));
    assert_eq!(b.unrealized_pnl, dec!(0));
    let r = only_request(&server, "GET", BALANCE).await;
    assert!(query(&r).is_empty());
    assert_signed(&server, &r);
}

#[tokio::test]
async fn positions_in_contracts_come_back_in_base_coin() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("GET"))
        .and(path(POSITIONS))
        .respond_with(ok("positions.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    let p = ex.positions(None).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].symbol, btc());
    assert_eq!(p[0].side, PositionSide::Long);
    assert_eq!(p[0].quantity, dec!(0.001), "1 contract x 0.001 BTC");
    assert_eq!(p[0].entry_price, dec!(63204.5));
    assert_eq!(p[0].mark_price, Some(dec!(63165.5)));
    assert_eq!(p[0].unrealized_pnl, dec!(-0.039));
    assert_eq!(p[0].leverage, Some(dec!(20)));
    assert_eq!(p[0].liquidation_price, None, "negative = unreachable");
    let r = only_request(&server, "GET", POSITIONS).await;
    assert!(query(&r).is_empty());
    assert_signed(&server, &r);

    // One symbol; a one-way (`both`) short; delivery futures are skipped.
    server.reset().await;
    mount_contract_info(&server).await;
    let mut v = fixture_json("positions.json");
    let mut short = v["data"][0].clone();
    short["position_side"] = json!("both");
    short["direction"] = json!("sell");
    short["volume"] = json!("30");
    let mut delivery = v["data"][0].clone();
    delivery["contract_code"] = json!("BTC-USDT-251226");
    delivery["contract_type"] = json!("quarter");
    v["data"] = json!([short, delivery]);
    Mock::given(method("GET"))
        .and(path(POSITIONS))
        .respond_with(body(200, v))
        .mount(&server)
        .await;
    let p = ex.positions(Some(&btc())).await.unwrap();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].side, PositionSide::Short);
    assert_eq!(p[0].quantity, dec!(0.03));
    let r = only_request(&server, "GET", POSITIONS).await;
    assert_eq!(
        query(&r),
        BTreeMap::from([("contract_code".into(), "BTC-USDT".into())])
    );
    assert_signed(&server, &r);
}

#[tokio::test]
async fn set_leverage_posts_cross_margin_and_checks_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(LEVER))
        .respond_with(ok("set_leverage_v5.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    ex.set_leverage(&btc(), 10).await.unwrap();
    let r = only_request(&server, "POST", LEVER).await;
    assert_eq!(
        json_body(&r),
        json!({"contract_code":"BTC-USDT","margin_mode":"cross","lever_rate":10})
    );
    assert_signed_post(&server, &r);
    // The venue answering another leverage is an error, not a silent success.
    let err = ex.set_leverage(&btc(), 5).await.unwrap_err();
    assert_eq!(err.kind(), "venue", "{err}");
    assert_eq!(
        ex.set_leverage(&btc(), 0).await.unwrap_err().kind(),
        "invalid_order"
    );
}

#[tokio::test]
async fn connectivity_checks_the_clock_and_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(TIMESTAMP))
        .respond_with(ok("server_timestamp.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(BALANCE))
        .respond_with(ok("balance.json"))
        .mount(&server)
        .await;
    let check = htx(&server).test_connectivity().await.unwrap();
    assert_eq!(check.can_trade, None, "HTX does not tell");
    assert!(!check.notes.is_empty());
    assert_public(&only_request(&server, "GET", TIMESTAMP).await);
    assert_signed(&server, &only_request(&server, "GET", BALANCE).await);

    let public = build_exchange(
        "htx",
        &VenueParams {
            base_url: Some(server.uri()),
            ..VenueParams::default()
        },
    )
    .unwrap();
    server.reset().await;
    Mock::given(method("GET"))
        .and(path(TIMESTAMP))
        .respond_with(ok("server_timestamp.json"))
        .mount(&server)
        .await;
    let check = public.test_connectivity().await.unwrap();
    assert!(check.notes[0].contains("no credentials"));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

// ------------------------------------------------------------------------------------ orders

#[tokio::test]
async fn market_order_converts_base_coin_to_contracts_and_maps_the_client_id() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("POST"))
        .and(path(ORDER))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let o = htx(&server)
        .place_order(&market(dec!(0.02), "tf1a2b3c4d"))
        .await
        .unwrap();
    let r = only_request(&server, "POST", ORDER).await;
    assert_eq!(
        json_body(&r),
        json!({"contract_code":"BTC-USDT","margin_mode":"cross","position_side":"both","side":"buy","type":"market","volume":"20","client_order_id":CID_MARKET})
    );
    assert_signed_post(&server, &r);
    assert_eq!(o.exchange_order_id, "1512501029504577536");
    assert_eq!(o.quantity, dec!(0.02));
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(o.client_order_id, Some(cid("tf1a2b3c4d")));
}

#[tokio::test]
async fn quantity_that_is_not_whole_contracts_is_rejected_before_sending() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("POST"))
        .and(path(ORDER))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    for qty in [dec!(0.0015), dec!(0.0001), dec!(0)] {
        let err = ex.place_order(&market(qty, "tfhalf")).await.unwrap_err();
        assert!(matches!(err, ExchangeError::InvalidOrder { .. }), "{err:?}");
    }
    let odd_stop = OrderRequest {
        quantity: dec!(0.0205),
        ..stop("tfhalfsl")
    };
    assert_eq!(
        ex.place_order(&odd_stop).await.unwrap_err().kind(),
        "invalid_order"
    );
    assert!(requests(&server, "POST", ORDER).await.is_empty());
    assert!(requests(&server, "POST", ALGO_ORDER).await.is_empty());
}

#[tokio::test]
async fn limit_order_sends_price_and_reduce_only() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("POST"))
        .and(path(ORDER))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    let req = OrderRequest {
        side: Side::Sell,
        order_type: OrderType::Limit,
        price: Some(dec!(95000.5)),
        reduce_only: true,
        ..market(dec!(0.005), "tfbuy0001")
    };
    let o = ex.place_order(&req).await.unwrap();
    let r = only_request(&server, "POST", ORDER).await;
    assert_eq!(
        json_body(&r),
        json!({"contract_code":"BTC-USDT","margin_mode":"cross","position_side":"both","side":"sell","type":"limit","volume":"5","price":"95000.5","client_order_id":CID_BUY,"reduce_only":1})
    );
    assert_signed_post(&server, &r);
    assert_eq!(o.price, Some(dec!(95000.5)));
    assert!(o.reduce_only);

    // Off the tick grid, or without a price: refused locally.
    for bad in [
        OrderRequest {
            price: Some(dec!(95000.55)),
            ..req.clone()
        },
        OrderRequest {
            price: None,
            ..req.clone()
        },
    ] {
        assert!(matches!(
            ex.place_order(&bad).await,
            Err(ExchangeError::InvalidOrder { .. })
        ));
    }
    assert_eq!(requests(&server, "POST", ORDER).await.len(), 1);
}

#[tokio::test]
async fn stop_and_take_profit_go_to_the_v5_algo_endpoint() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("POST"))
        .and(path(ALGO_ORDER))
        .respond_with(ok("place_algo_order_v5.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    let o = ex.place_order(&stop("tfsl0001")).await.unwrap();
    assert_eq!(o.exchange_order_id, "1512871666507657216");
    assert_eq!(o.order_type, OrderType::StopMarket);
    assert_eq!(o.trigger_price, Some(dec!(85000)));
    let tp = OrderRequest {
        order_type: OrderType::TakeProfitMarket,
        trigger_price: Some(dec!(99000.1)),
        client_order_id: cid("tftp0001"),
        ..stop("x")
    };
    ex.place_order(&tp).await.unwrap();
    let r = requests(&server, "POST", ALGO_ORDER).await;
    assert_eq!(r.len(), 2);
    assert_eq!(
        json_body(&r[0]),
        json!({"contract_code":"BTC-USDT","type":"tpsl","position_side":"both","side":"sell","margin_mode":"cross","algo_client_order_id":CID_SL,"volume":"20","sl_trigger_price":"85000","sl_type":"market","reduce_only":1})
    );
    assert_eq!(
        json_body(&r[1]),
        json!({"contract_code":"BTC-USDT","type":"tpsl","position_side":"both","side":"sell","margin_mode":"cross","algo_client_order_id":CID_TP,"volume":"20","tp_trigger_price":"99000.1","tp_type":"market","reduce_only":1})
    );
    assert_signed_post(&server, &r[0]);
    assert_signed_post(&server, &r[1]);
    assert!(requests(&server, "POST", ORDER).await.is_empty());

    // A conditional order that is not reduce-only, or has no trigger, is refused locally.
    for bad in [
        OrderRequest {
            reduce_only: false,
            ..stop("tfsl0002")
        },
        OrderRequest {
            trigger_price: None,
            ..stop("tfsl0003")
        },
    ] {
        assert_eq!(
            ex.place_order(&bad).await.unwrap_err().kind(),
            "invalid_order"
        );
    }
    assert_eq!(requests(&server, "POST", ALGO_ORDER).await.len(), 2);
}

#[tokio::test]
async fn algo_item_failure_is_mapped() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("POST"))
        .and(path(ALGO_ORDER))
        .respond_with(body(
            200,
            json!({"code":200,"message":"Success","data":[{"algo_id":null,"algo_client_order_id":CID_SL,"code":1047,"message":"Insufficient margin available."}],"ts":1}),
        ))
        .mount(&server)
        .await;
    let err = htx(&server)
        .place_order(&stop("tfsl0001"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "insufficient_margin", "{err}");
}

#[tokio::test]
async fn cancel_by_client_id_tries_regular_then_algo() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CANCEL))
        .respond_with(ok("cancel_order_v5.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    ex.cancel_order(&btc(), &cid("tfbuy0001")).await.unwrap();
    let r = only_request(&server, "POST", CANCEL).await;
    assert_eq!(
        json_body(&r),
        json!({"contract_code":"BTC-USDT","client_order_id":CID_BUY})
    );
    assert_signed_post(&server, &r);
    assert!(requests(&server, "POST", CANCEL_ALGOS).await.is_empty());

    // Not a regular order: the algo endpoint, by algo_client_order_id, as a JSON array.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path(CANCEL))
        .respond_with(not_found())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CANCEL_ALGOS))
        .respond_with(ok("cancel_algo_v5.json"))
        .mount(&server)
        .await;
    ex.cancel_order(&btc(), &cid("tfsl0001")).await.unwrap();
    let r = only_request(&server, "POST", CANCEL_ALGOS).await;
    assert_eq!(
        json_body(&r),
        json!([{"contract_code":"BTC-USDT","algo_client_order_id":CID_SL}])
    );
    assert_signed_post(&server, &r);

    // Unknown to both: OrderNotFound.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path(CANCEL))
        .respond_with(not_found())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CANCEL_ALGOS))
        .respond_with(body(
            200,
            json!({"code":200,"message":"Success","data":[{"algo_id":null,"code":1061,"message":"This order doesn't exist."}],"ts":1}),
        ))
        .mount(&server)
        .await;
    let err = ex.cancel_order(&btc(), &cid("nothere")).await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::OrderNotFound { .. }),
        "{err:?}"
    );
}

/// Algo-cancel answers echo every requested id with code 200.
fn echo_algo_cancel(r: &Request) -> ResponseTemplate {
    let items: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
    let data: Vec<Value> = items
        .iter()
        .map(|i| json!({"algo_id": i["algo_id"], "algo_client_order_id": null, "code": 200, "message": "Success"}))
        .collect();
    body(
        200,
        json!({"code":200,"message":"Success","data":data,"ts":1}),
    )
}

fn algo_opens(n: usize) -> Value {
    let template = fixture_json("algo_open_orders_v5.json")["data"][0].clone();
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut o = template.clone();
            o["algo_id"] = json!(format!("15128716665076{i:05}"));
            o
        })
        .collect();
    json!({"code":200,"message":"Success","data":data,"ts":1})
}

#[tokio::test]
async fn cancel_all_cancels_regular_and_algo_orders() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CANCEL_ALL))
        .respond_with(ok("cancel_all_v5.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ALGO_OPENS))
        .respond_with(body(200, algo_opens(12)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CANCEL_ALGOS))
        .respond_with(echo_algo_cancel)
        .mount(&server)
        .await;
    let n = htx(&server).cancel_all(&btc()).await.unwrap();
    assert_eq!(
        n,
        2 + 12,
        "the repeated-cancellation item is not counted nor an error"
    );
    let r = only_request(&server, "POST", CANCEL_ALL).await;
    assert_eq!(json_body(&r), json!({"contract_code":"BTC-USDT"}));
    assert_signed_post(&server, &r);
    let list = only_request(&server, "GET", ALGO_OPENS).await;
    assert_eq!(
        query(&list),
        BTreeMap::from([
            ("contract_code".into(), "BTC-USDT".into()),
            ("type".into(), "tpsl".into()),
            ("limit".into(), "100".into()),
        ])
    );
    assert_signed(&server, &list);
    let batches = requests(&server, "POST", CANCEL_ALGOS).await;
    let sizes: Vec<usize> = batches
        .iter()
        .map(|r| json_body(r).as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [10, 2]);
    assert_eq!(
        json_body(&batches[1])[1],
        json!({"contract_code":"BTC-USDT","algo_id":"1512871666507600011"})
    );
    batches.iter().for_each(|r| assert_signed_post(&server, r));

    // Nothing to cancel: 1051 and an empty algo list are zero, not an error.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path(CANCEL_ALL))
        .respond_with(v5_error(1051, "No orders to cancel."))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ALGO_OPENS))
        .respond_with(body(
            200,
            json!({"code":200,"message":"Success","data":[],"ts":1}),
        ))
        .mount(&server)
        .await;
    assert_eq!(htx(&server).cancel_all(&btc()).await.unwrap(), 0);
}

#[tokio::test]
async fn open_orders_include_algo_orders_in_base_coin() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("GET"))
        .and(path(OPENS))
        .respond_with(ok("open_orders_v5.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ALGO_OPENS))
        .respond_with(ok("algo_open_orders_v5.json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ORDER))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    let o = ex.open_orders(&btc()).await.unwrap();
    assert_eq!(o.len(), 4);
    assert_eq!(o[0].status, OrderStatus::PartiallyFilled);
    assert_eq!(o[0].order_type, OrderType::Limit);
    assert_eq!(o[0].quantity, dec!(0.03));
    assert_eq!(o[0].filled_quantity, dec!(0.01));
    assert_eq!(o[0].price, Some(dec!(90000)));
    assert_eq!(o[0].fee, Some(dec!(0.36)), "fee as a cost");
    assert_eq!(
        o[0].client_order_id, None,
        "the integer cannot be reversed by an instance that never saw the id"
    );
    assert_eq!(
        o[1].order_type,
        OrderType::Limit,
        "post_only is a limit order"
    );
    assert!(o[1].reduce_only);
    assert_eq!(o[1].exchange_order_id, "1512600000000000002");
    assert_eq!(o[2].order_type, OrderType::StopMarket);
    assert_eq!(o[2].trigger_price, Some(dec!(85000)));
    assert_eq!(o[2].quantity, dec!(0.02));
    assert_eq!(o[2].status, OrderStatus::Open);
    assert_eq!(o[3].order_type, OrderType::TakeProfitMarket);
    assert_eq!(o[3].trigger_price, Some(dec!(99000)));
    let r = only_request(&server, "GET", OPENS).await;
    assert_eq!(
        query(&r),
        BTreeMap::from([
            ("contract_code".into(), "BTC-USDT".into()),
            ("margin_mode".into(), "cross".into()),
            ("limit".into(), "100".into()),
        ])
    );
    assert_signed(&server, &r);

    // Once this instance has used the id, listings name it.
    let req = OrderRequest {
        order_type: OrderType::Limit,
        price: Some(dec!(90000)),
        ..market(dec!(0.03), "tfbuy0001")
    };
    ex.place_order(&req).await.unwrap();
    let o = ex.open_orders(&btc()).await.unwrap();
    assert_eq!(o[0].client_order_id, Some(cid("tfbuy0001")));
}

#[tokio::test]
async fn order_by_client_id_finds_regular_then_algo_else_none() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("GET"))
        .and(path(ORDER))
        .respond_with(ok("order_info_v5.json"))
        .mount(&server)
        .await;
    let ex = htx(&server);
    let o = ex
        .order_by_client_id(&btc(), &cid("tf1a2b3c4d"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.client_order_id, Some(cid("tf1a2b3c4d")));
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(o.order_type, OrderType::Market);
    assert_eq!(o.quantity, dec!(0.02));
    assert_eq!(o.filled_quantity, dec!(0.02));
    assert_eq!(o.average_price, Some(dec!(91230.4)));
    assert_eq!(o.fee, Some(dec!(0.9123)));
    assert_eq!(o.price, None, "a market order has no limit price");
    let r = only_request(&server, "GET", ORDER).await;
    assert_eq!(
        query(&r),
        BTreeMap::from([
            ("contract_code".into(), "BTC-USDT".into()),
            ("margin_mode".into(), "cross".into()),
            ("client_order_id".into(), CID_MARKET.into()),
        ])
    );
    assert_signed(&server, &r);

    // Not a regular order, but a tp/sl one.
    server.reset().await;
    mount_contract_info(&server).await;
    Mock::given(method("GET"))
        .and(path(ORDER))
        .respond_with(not_found())
        .mount(&server)
        .await;
    let mut algo = fixture_json("algo_open_orders_v5.json");
    algo["data"] = algo["data"][0].clone();
    Mock::given(method("GET"))
        .and(path(ALGO_ORDER))
        .respond_with(body(200, algo))
        .mount(&server)
        .await;
    let o = ex
        .order_by_client_id(&btc(), &cid("tfsl0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.order_type, OrderType::StopMarket);
    assert_eq!(o.client_order_id, Some(cid("tfsl0001")));
    assert_eq!(o.exchange_order_id, "1512871666507657216");
    let r = only_request(&server, "GET", ALGO_ORDER).await;
    assert_eq!(
        query(&r),
        BTreeMap::from([
            ("contract_code".into(), "BTC-USDT".into()),
            ("type".into(), "tpsl".into()),
            ("algo_client_order_id".into(), CID_SL.into()),
        ])
    );
    assert_signed(&server, &r);

    // Unknown to both (an error code, or an empty answer): None, not an error.
    for empty in [
        not_found(),
        body(
            200,
            json!({"code":200,"message":"Success","data":null,"ts":1}),
        ),
    ] {
        server.reset().await;
        mount_contract_info(&server).await;
        Mock::given(method("GET"))
            .and(path(ORDER))
            .respond_with(empty.clone())
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(ALGO_ORDER))
            .respond_with(empty)
            .mount(&server)
            .await;
        assert_eq!(
            ex.order_by_client_id(&btc(), &cid("nothere"))
                .await
                .unwrap(),
            None
        );
    }
}

// ------------------------------------------------------------------------------------ errors

#[tokio::test]
async fn rate_limit_is_retried_for_reads_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(MERGED))
        .respond_with(body(
            200,
            json!({"status":"error","err_code":1032,"err_msg":"The number of access exceeded the limit.","ts":1}),
        ))
        .mount(&server)
        .await;
    let err = htx(&server).ticker(&btc()).await.unwrap_err();
    assert!(matches!(err, ExchangeError::RateLimited { .. }), "{err:?}");
    assert!(err.to_string().contains("1032"));
    assert_eq!(
        requests(&server, "GET", MERGED).await.len(),
        3,
        "1 + max_retries"
    );
}

#[tokio::test]
async fn invalid_timestamp_resyncs_the_clock_then_succeeds() {
    let server = MockServer::start().await;
    let venue_now = Utc::now() + chrono::Duration::hours(1);
    Mock::given(method("GET"))
        .and(path(BALANCE))
        .respond_with(v5_error(12001, "Invalid submission time."))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(BALANCE))
        .respond_with(ok("balance.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(TIMESTAMP))
        .respond_with(body(
            200,
            json!({"status":"ok","ts": venue_now.timestamp_millis()}),
        ))
        .mount(&server)
        .await;
    let b = htx(&server).balance("USDT").await.unwrap();
    assert_eq!(b.asset, "USDT");
    let calls = requests(&server, "GET", BALANCE).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(requests(&server, "GET", TIMESTAMP).await.len(), 1);
    let ts = |r: &Request| {
        NaiveDateTime::parse_from_str(&param(r, "Timestamp").unwrap(), "%Y-%m-%dT%H:%M:%S").unwrap()
    };
    let shift = ts(&calls[1]) - ts(&calls[0]);
    assert!(
        shift > chrono::Duration::minutes(50),
        "the retry is signed with the venue's clock, shifted by {shift}"
    );
    calls.iter().for_each(|r| assert_signed(&server, r));
}

#[tokio::test]
async fn bad_signature_is_an_auth_error_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(BALANCE))
        .respond_with(body(
            200,
            json!({"status":"error","err-code":"api-signature-not-valid","err-msg":"Signature not valid: Verification failure [校验失败]","data":null}),
        ))
        .mount(&server)
        .await;
    let err = htx(&server).balance("USDT").await.unwrap_err();
    assert!(matches!(err, ExchangeError::Auth { .. }), "{err:?}");
    assert_eq!(requests(&server, "GET", BALANCE).await.len(), 1);
}

async fn place_with_answer(answer: ResponseTemplate) -> (ExchangeError, MockServer) {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    Mock::given(method("POST"))
        .and(path(ORDER))
        .respond_with(answer)
        .mount(&server)
        .await;
    let err = htx(&server)
        .place_order(&market(dec!(0.02), "tf1a2b3c4d"))
        .await
        .unwrap_err();
    (err, server)
}

#[tokio::test]
async fn insufficient_margin() {
    let (err, server) = place_with_answer(v5_error(1047, "Insufficient margin available.")).await;
    assert!(
        matches!(err, ExchangeError::InsufficientMargin { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("1047"));
    assert_eq!(requests(&server, "POST", ORDER).await.len(), 1);
}

#[tokio::test]
async fn duplicate_client_order_id_v1_code_and_v5_text() {
    let (err, _) = place_with_answer(v5_error(
        1050,
        "Customer's order number is repeated. Please try again later.",
    ))
    .await;
    assert!(
        matches!(err, ExchangeError::DuplicateClientOrderId { .. }),
        "{err:?}"
    );
    // A V5 code we have no table for, recognised by its text.
    let (err, _) = place_with_answer(v5_error(
        4015,
        "Duplicate client order id, please try again later.",
    ))
    .await;
    assert_eq!(err.kind(), "duplicate_client_order_id", "{err}");
}

#[tokio::test]
async fn disabled_contract_api_is_a_permission_error() {
    let (err, server) = place_with_answer(v5_error(
        1084,
        "Your contract API is disabled, please try again after {0} (GMT+8).",
    ))
    .await;
    assert!(matches!(err, ExchangeError::Permission { .. }), "{err:?}");
    assert_eq!(requests(&server, "POST", ORDER).await.len(), 1);
}

#[tokio::test]
async fn unknown_order_text_under_a_new_code_is_not_found() {
    let server = MockServer::start().await;
    mount_contract_info(&server).await;
    for p in [ORDER, ALGO_ORDER] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(v5_error(4100, "The order does not exist."))
            .mount(&server)
            .await;
    }
    assert_eq!(
        htx(&server)
            .order_by_client_id(&btc(), &cid("fresh"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn invalid_parameters_are_invalid_order() {
    let (err, _) = place_with_answer(v5_error(1067, "Illegal parameter.")).await;
    assert!(matches!(err, ExchangeError::InvalidOrder { .. }), "{err:?}");
}

#[tokio::test]
async fn unknown_code_is_a_venue_error_with_its_code() {
    let (err, _) = place_with_answer(v5_error(9999, "Something new.")).await;
    match err {
        ExchangeError::Venue { code, message, .. } => {
            assert_eq!(code, "9999");
            assert!(message.contains("Something new"));
        }
        other => panic!("{other:?}"),
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
    assert_eq!(requests(&server, "POST", ORDER).await.len(), 1);
}

#[tokio::test]
async fn busy_code_on_a_write_is_outcome_unknown_too() {
    let (err, server) = place_with_answer(v5_error(1004, "System busy.")).await;
    assert_eq!(err.kind(), "outcome_unknown", "{err}");
    assert_eq!(requests(&server, "POST", ORDER).await.len(), 1);
}

#[tokio::test]
async fn server_error_on_a_read_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(MERGED))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(MERGED))
        .respond_with(ok("ticker_detail_merged.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let t = htx(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(13076.8));
    assert_eq!(requests(&server, "GET", MERGED).await.len(), 2);
}

#[tokio::test]
async fn maintenance_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(MERGED))
        .respond_with(body(200, json!({"status":"maintain"})))
        .mount(&server)
        .await;
    let err = htx(&server).ticker(&btc()).await.unwrap_err();
    assert_eq!(err.kind(), "unavailable");
}

#[tokio::test]
async fn unknown_contract_is_unknown_symbol() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CONTRACT_INFO))
        .respond_with(body(
            200,
            json!({"status":"error","err_code":1014,"err_msg":"This contract doesn't exist.","ts":1}),
        ))
        .mount(&server)
        .await;
    let nope: Symbol = "NOPE/USDT:USDT".parse().unwrap();
    let ex = htx(&server);
    match ex.instrument(&nope).await.unwrap_err() {
        ExchangeError::UnknownSymbol { symbol, .. } => assert_eq!(symbol, "NOPE-USDT"),
        other => panic!("{other:?}"),
    }
    let err = ex
        .place_order(&OrderRequest {
            symbol: nope,
            ..market(dec!(1), "tfx")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_symbol");
    assert!(requests(&server, "POST", ORDER).await.is_empty());

    // An empty list means the same; non-USDT or inverse symbols are refused locally.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path(CONTRACT_INFO))
        .respond_with(body(200, json!({"status":"ok","data":[],"ts":1})))
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
        ("GET", TIMESTAMP, ok("server_timestamp.json")),
        ("GET", CONTRACT_INFO, ok("contract_info.json")),
        ("GET", RISK_LIMIT, ok("risk_limit_v5.json")),
        ("GET", OPENS, ok("open_orders_v5.json")),
        ("GET", ALGO_OPENS, ok("algo_open_orders_v5.json")),
        ("GET", ORDER, not_found()),
        ("GET", ALGO_ORDER, not_found()),
        ("POST", CANCEL_ALL, ok("cancel_all_v5.json")),
        ("POST", CANCEL_ALGOS, ok("cancel_algo_v5.json")),
    ];
    for (m, p, answer) in mocks {
        Mock::given(method(m))
            .and(path(p))
            .respond_with(answer)
            .with_priority(10)
            .mount(server)
            .await;
    }
}

/// Every endpoint answering a truncated or non-JSON body: an error, never a panic.
#[tokio::test]
async fn malformed_answers_from_every_endpoint_are_errors() {
    let server = MockServer::start().await;
    let endpoints: [(&str, &str, &str); 17] = [
        ("GET", TIMESTAMP, "server_timestamp.json"),
        ("GET", KLINE, "klines.json"),
        ("GET", MERGED, "ticker_detail_merged.json"),
        ("GET", CONTRACT_INFO, "contract_info.json"),
        ("GET", RISK_LIMIT, "risk_limit_v5.json"),
        ("GET", BALANCE, "balance.json"),
        ("GET", POSITIONS, "positions.json"),
        ("POST", LEVER, "set_leverage_v5.json"),
        ("POST", ORDER, "place_order.json"),
        ("POST", ALGO_ORDER, "place_algo_order_v5.json"),
        ("POST", CANCEL, "cancel_order_v5.json"),
        ("POST", CANCEL_ALL, "cancel_all_v5.json"),
        ("POST", CANCEL_ALGOS, "cancel_algo_v5.json"),
        ("GET", OPENS, "open_orders_v5.json"),
        ("GET", ALGO_OPENS, "algo_open_orders_v5.json"),
        ("GET", ORDER, "order_info_v5.json"),
        ("GET", ALGO_ORDER, "algo_open_orders_v5.json"),
    ];
    for (m, p, f) in endpoints {
        let full = fixture(f);
        for bad in [
            full[..full.len() / 2].to_string(),
            full.trim_end()[..full.trim_end().len() - 3].to_string(),
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
            // A fresh instance per case (no cached contract spec).
            let ex = htx(&server);
            let result = match (m, p) {
                (_, TIMESTAMP) => ex.server_time().await.map(|_| ()),
                (_, KLINE) => ex.klines(&btc(), Timeframe::M1, None, 3).await.map(|_| ()),
                (_, MERGED) => ex.ticker(&btc()).await.map(|_| ()),
                (_, CONTRACT_INFO | RISK_LIMIT) => ex.instrument(&btc()).await.map(|_| ()),
                (_, BALANCE) => ex.balance("USDT").await.map(|_| ()),
                (_, POSITIONS) => ex.positions(None).await.map(|_| ()),
                (_, LEVER) => ex.set_leverage(&btc(), 10).await,
                ("POST", ORDER) => ex.place_order(&market(dec!(0.02), "tfm")).await.map(|_| ()),
                ("POST", ALGO_ORDER) => ex.place_order(&stop("tfsl")).await.map(|_| ()),
                (_, CANCEL) => ex.cancel_order(&btc(), &cid("tfm")).await,
                (_, CANCEL_ALL | CANCEL_ALGOS) => ex.cancel_all(&btc()).await.map(|_| ()),
                (_, OPENS | ALGO_OPENS) => ex.open_orders(&btc()).await.map(|_| ()),
                ("GET", ORDER | ALGO_ORDER) => {
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
    mount_contract_info(&server).await;
    // Before placing: unknown as a regular order and as an algo order.
    Mock::given(method("GET"))
        .and(path(ORDER))
        .respond_with(not_found())
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(ALGO_ORDER))
        .respond_with(not_found())
        .mount(&server)
        .await;
    // The venue takes the order but answers after the client has given up.
    Mock::given(method("POST"))
        .and(path(ORDER))
        .respond_with(ok("place_order.json").set_delay(Duration::from_millis(3_000)))
        .mount(&server)
        .await;
    // Afterwards the order exists under its mapped client id.
    Mock::given(method("GET"))
        .and(path(ORDER))
        .and(query_param("client_order_id", CID_MARKET))
        .respond_with(ok("order_info_v5.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let ex = build_exchange(
        "htx",
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
            assert_eq!(o.exchange_order_id, "1512501029504577536");
            assert_eq!(o.client_order_id, Some(cid("tf1a2b3c4d")));
            assert_eq!(o.quantity, dec!(0.02));
            assert_eq!(o.status, OrderStatus::Filled);
        }
        other => panic!("expected the existing order, got {other:?}"),
    }
    assert_eq!(requests(&server, "POST", ORDER).await.len(), 1);
    let lookups = requests(&server, "GET", ORDER).await;
    assert_eq!(lookups.len(), 2);
    for r in &lookups {
        assert_eq!(query(r)["client_order_id"], CID_MARKET);
        assert_signed(&server, r);
    }
}
