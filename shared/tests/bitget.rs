//! Bitget V2 USDT-FUTURES adapter through the public API only, against a wiremock venue on
//! 127.0.0.1 replaying recorded payloads: exact requests (method, path, query, body, auth headers,
//! signature), the demo header, error classes, malformed answers and exactly-once placement.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
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

const KEY: &str = "bg-test-key";
const SECRET: &str = "bg-test-secret-0123456789";
const PASSPHRASE: &str = "bg-test-passphrase";

const P_TIME: &str = "/api/v2/public/time";
const P_CANDLES: &str = "/api/v2/mix/market/candles";
const P_HISTORY: &str = "/api/v2/mix/market/history-candles";
const P_TICKER: &str = "/api/v2/mix/market/ticker";
const P_CONTRACTS: &str = "/api/v2/mix/market/contracts";
const P_ACCOUNTS: &str = "/api/v2/mix/account/accounts";
const P_ACCOUNT: &str = "/api/v2/mix/account/account";
const P_ALL_POS: &str = "/api/v2/mix/position/all-position";
const P_ONE_POS: &str = "/api/v2/mix/position/single-position";
const P_LEVERAGE: &str = "/api/v2/mix/account/set-leverage";
const P_PLACE: &str = "/api/v2/mix/order/place-order";
const P_PLAN: &str = "/api/v2/mix/order/place-plan-order";
const P_TPSL: &str = "/api/v2/mix/order/place-tpsl-order";
const P_CANCEL: &str = "/api/v2/mix/order/cancel-order";
const P_BATCH_CANCEL: &str = "/api/v2/mix/order/batch-cancel-orders";
const P_CANCEL_PLAN: &str = "/api/v2/mix/order/cancel-plan-order";
const P_PENDING: &str = "/api/v2/mix/order/orders-pending";
const P_PLAN_PENDING: &str = "/api/v2/mix/order/orders-plan-pending";
const P_PLAN_HISTORY: &str = "/api/v2/mix/order/orders-plan-history";
const P_DETAIL: &str = "/api/v2/mix/order/detail";

fn fixture(name: &str) -> String {
    let p = format!(
        "{}/tests/fixtures/bitget/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
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

/// A Bitget error envelope.
fn venue_error(status: u16, code: &str, msg: &str) -> ResponseTemplate {
    body(
        status,
        json!({"code": code, "msg": msg, "requestTime": 1763700000000i64, "data": null}),
    )
}

fn success(data: Value) -> ResponseTemplate {
    body(
        200,
        json!({"code":"00000","msg":"success","requestTime":1763700000000i64,"data":data}),
    )
}

fn empty_page() -> ResponseTemplate {
    success(json!({"entrustedList": null, "endId": null}))
}

fn order_missing() -> ResponseTemplate {
    venue_error(
        400,
        "40109",
        "The data of the order cannot be found, please confirm the order number",
    )
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

fn bitget(server: &MockServer) -> Arc<dyn Exchange> {
    build_exchange("bitget", &params(server)).unwrap()
}

fn demo(server: &MockServer) -> Arc<dyn Exchange> {
    build_exchange(
        "bitget",
        &VenueParams {
            testnet: true,
            ..params(server)
        },
    )
    .unwrap()
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

fn eth() -> Symbol {
    "ETH/USDT:USDT".parse().unwrap()
}

fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).unwrap()
}

async fn mount_btc_contract(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(P_CONTRACTS))
        .and(query_param("productType", "USDT-FUTURES"))
        .and(query_param("symbol", "BTCUSDT"))
        .respond_with(ok("contracts.json"))
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

fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The test's own Bitget signature: base64(HMAC-SHA256(secret, ts + METHOD + path?query + body)).
fn expected_signature(secret: &str, ts: &str, m: &str, path_and_query: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}{m}{path_and_query}{body}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request carries the auth headers and a signature recomputed from what was received.
fn assert_signed(r: &Request) {
    assert_eq!(header(r, "ACCESS-KEY"), Some(KEY));
    assert_eq!(header(r, "ACCESS-PASSPHRASE"), Some(PASSPHRASE));
    assert_eq!(header(r, "locale"), Some("en-US"));
    assert_eq!(header(r, "content-type"), Some("application/json"));
    let ts = header(r, "ACCESS-TIMESTAMP").expect("timestamp header");
    let ms: i64 = ts.parse().expect("millisecond timestamp");
    assert!(ms > 1_600_000_000_000, "milliseconds, not seconds: {ts}");
    let path_and_query = match r.url.query() {
        Some(q) => format!("{}?{q}", r.url.path()),
        None => r.url.path().to_string(),
    };
    let body = String::from_utf8(r.body.clone()).unwrap();
    let want = expected_signature(SECRET, ts, r.method.as_str(), &path_and_query, &body);
    assert_eq!(
        header(r, "ACCESS-SIGN"),
        Some(want.as_str()),
        "signature of {path_and_query}"
    );
}

fn assert_public(r: &Request) {
    for h in [
        "ACCESS-KEY",
        "ACCESS-SIGN",
        "ACCESS-PASSPHRASE",
        "ACCESS-TIMESTAMP",
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

/// The order-detail fixture re-labelled as a BTCUSDT order with client id `cl`.
fn btc_detail(cl: &str, order_id: &str, state: &str) -> ResponseTemplate {
    let mut d = fixture_json("order_detail.json");
    d["data"]["symbol"] = json!("BTCUSDT");
    d["data"]["clientOid"] = json!(cl);
    d["data"]["orderId"] = json!(order_id);
    d["data"]["size"] = json!("0.02");
    d["data"]["state"] = json!(state);
    body(200, d)
}

/// A batch-cancel answer that cancels every id of the request.
fn echo_cancel(req: &Request) -> ResponseTemplate {
    let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let ids: Vec<Value> = v["orderIdList"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|i| json!({"orderId": i["orderId"], "clientOid": ""}))
        .collect();
    success(json!({"successList": ids, "failureList": []}))
}

// ------------------------------------------------------------------------------------ signing

#[test]
fn test_signer_reproduces_the_computed_vectors() {
    // The project's vector file (Bitget documents prehash strings, not signatures).
    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(
        expected_signature(
            secret,
            "1700000000000",
            "GET",
            "/api/v2/mix/order/detail?clientOid=my-oid-0001&productType=USDT-FUTURES&symbol=BTCUSDT",
            ""
        ),
        "o6WdoBzm0j15aZnTYajKeit4SXtFukngCy/SpJAwCac="
    );
    assert_eq!(
        expected_signature(
            secret,
            "1700000000000",
            "POST",
            "/api/v2/mix/order/place-order",
            r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.001","side":"buy","orderType":"market","clientOid":"my-oid-0001"}"#
        ),
        "mlr5M1G6nNl7V8h987YSWes0q9dF3tqdNBownihQ28c="
    );
}

#[test]
fn descriptor_is_honest() {
    let d = tradefleet::exchange::find_venue("bitget").unwrap();
    assert!(d.has_testnet && d.needs_passphrase && !d.trades_in_contracts);
    assert!(!d.notes.contains("not available"));
    assert!(d.notes.contains("paptrading") && d.notes.contains("40085"));
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
    let err = build_exchange("bitget", &p).unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(err.to_string().contains("passphrase"), "{err}");
    let empty = VenueParams {
        credentials: Some(Credentials {
            passphrase: Some(SecretString::from("")),
            ..credentials()
        }),
        ..VenueParams::default()
    };
    assert_eq!(
        build_exchange("bitget", &empty).unwrap_err().kind(),
        "config"
    );
}

#[tokio::test]
async fn private_call_without_credentials_is_a_config_error_and_sends_nothing() {
    let server = MockServer::start().await;
    let ex = build_exchange(
        "bitget",
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
async fn debug_output_and_errors_never_show_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(venue_error(400, "40012", "apikey/password is incorrect"))
        .mount(&server)
        .await;
    let ex = bitget(&server);
    let dbg = format!("{ex:?}");
    let err = ex.balance("USDT").await.unwrap_err();
    let text = format!("{err} {err:?}");
    for s in [KEY, SECRET, PASSPHRASE] {
        assert!(!dbg.contains(s), "{dbg}");
        assert!(!text.contains(s), "{text}");
    }
}

// ------------------------------------------------------------------------------------ market data

#[tokio::test]
async fn server_time_is_public() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TIME))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    let t = bitget(&server).server_time().await.unwrap();
    assert_eq!(t.timestamp_millis(), 1_700_111_073_740);
    let r = only_request(&server, "GET", P_TIME).await;
    assert_public(&r);
    assert!(r.url.query().is_none());
    assert!(header(&r, "paptrading").is_none(), "live by default");
}

#[tokio::test]
async fn latest_klines_come_oldest_first_in_base_volume() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_CANDLES))
        .respond_with(ok("klines.json"))
        .mount(&server)
        .await;
    let c = bitget(&server)
        .klines(&btc(), Timeframe::M5, None, 2)
        .await
        .unwrap();
    let r = only_request(&server, "GET", P_CANDLES).await;
    assert_public(&r);
    assert_eq!(
        query(&r),
        q(&[
            ("symbol", "BTCUSDT"),
            ("productType", "USDT-FUTURES"),
            ("granularity", "5m"),
            ("limit", "2"),
        ])
    );
    let times: Vec<i64> = c.iter().map(|c| c.open_time.timestamp_millis()).collect();
    assert_eq!(times, [1_695_835_800_000, 1_695_836_100_000]);
    assert!(c.iter().all(|c| c.closed), "2023 candles are long closed");
    assert_eq!(c[0].open, dec!(26210.5));
    assert_eq!(c[0].low, dec!(26194.5));
    assert_eq!(c[0].volume, dec!(26.26), "baseVolume, not quote volume");
    assert_eq!(c[1].close, dec!(26171));
    assert!(requests(&server, "GET", P_HISTORY).await.is_empty());
}

/// `n` one-minute rows ending with the candle that opened at `newest`, oldest first.
fn minute_rows(newest: i64, n: usize) -> Value {
    let rows: Vec<Value> = (0..n)
        .rev()
        .map(|i| {
            let ts = newest - i as i64 * 60_000;
            json!([ts.to_string(), "100", "101", "99", "100.5", "2", "201"])
        })
        .collect();
    json!({"code":"00000","msg":"success","requestTime":0,"data":rows})
}

#[tokio::test]
async fn the_candle_still_forming_is_not_closed() {
    let server = MockServer::start().await;
    let now = Utc::now().timestamp_millis();
    let forming = now - now % 60_000;
    Mock::given(method("GET"))
        .and(path(P_CANDLES))
        .respond_with(body(200, minute_rows(forming, 3)))
        .mount(&server)
        .await;
    let c = bitget(&server)
        .klines(&btc(), Timeframe::M1, None, 3)
        .await
        .unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(
        c.iter().map(|c| c.closed).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(c[2].open_time.timestamp_millis(), forming);
    assert_eq!(
        query(&only_request(&server, "GET", P_CANDLES).await)["granularity"],
        "1m"
    );
}

/// The forming candle is told by the clock the adapter was built with (`VenueParams::clock`),
/// corrected by the measured offset: a server-time read at the same instant changes no flag.
#[tokio::test]
async fn the_injected_clock_decides_which_candle_is_forming() {
    let server = MockServer::start().await;
    // 150 s into the newest 5m candle of klines.json.
    let now = 1_695_836_100_000i64 + 150_000;
    Mock::given(method("GET"))
        .and(path(P_CANDLES))
        .respond_with(ok("klines.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_TIME))
        .respond_with(success(json!({"serverTime": now.to_string()})))
        .mount(&server)
        .await;
    let clock = ManualClock::new(Utc.timestamp_millis_opt(now).unwrap());
    let ex = build_exchange(
        "bitget",
        &VenueParams {
            clock: Arc::new(clock),
            ..params(&server)
        },
    )
    .unwrap();
    let flags = |c: Vec<tradefleet::domain::Candle>| c.iter().map(|c| c.closed).collect::<Vec<_>>();
    let before = ex.klines(&btc(), Timeframe::M5, None, 2).await.unwrap();
    assert_eq!(
        flags(before),
        [true, false],
        "the newest candle holds `now`"
    );
    assert_eq!(ex.server_time().await.unwrap().timestamp_millis(), now);
    let after = ex.klines(&btc(), Timeframe::M5, None, 2).await.unwrap();
    assert_eq!(flags(after), [true, false], "a zero offset moves nothing");
}

#[tokio::test]
async fn more_latest_klines_than_one_page_walk_back_through_history() {
    let server = MockServer::start().await;
    let newest = 1_763_700_000_000i64; // a whole minute
    let oldest_of_first = newest - 999 * 60_000;
    Mock::given(method("GET"))
        .and(path(P_CANDLES))
        .respond_with(body(200, minute_rows(newest, 1000)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_HISTORY))
        .respond_with(body(200, minute_rows(oldest_of_first - 60_000, 200)))
        .mount(&server)
        .await;
    let c = bitget(&server)
        .klines(&btc(), Timeframe::M1, None, 1_200)
        .await
        .unwrap();
    assert_eq!(c.len(), 1_200);
    assert!(
        c.windows(2).all(
            |w| w[1].open_time.timestamp_millis() - w[0].open_time.timestamp_millis() == 60_000
        )
    );
    assert_eq!(c[1_199].open_time.timestamp_millis(), newest);
    assert_eq!(
        query(&only_request(&server, "GET", P_CANDLES).await)["limit"],
        "1000"
    );
    let h = query(&only_request(&server, "GET", P_HISTORY).await);
    assert_eq!(h["limit"], "200");
    assert_eq!(h["endTime"], (oldest_of_first - 1).to_string());
    assert_eq!(h["startTime"], (oldest_of_first - 200 * 60_000).to_string());
}

#[tokio::test]
async fn klines_since_ask_for_a_window_and_old_ones_use_history() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_CANDLES))
        .respond_with(ok("klines.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_HISTORY))
        .respond_with(ok("klines.json"))
        .mount(&server)
        .await;
    let ex = bitget(&server);
    let now = Utc::now().timestamp_millis();
    let since_ms = now - now % 300_000 - 900_000;
    let since = Utc.timestamp_millis_opt(since_ms).unwrap();
    // The replayed rows are older than `since`: they are dropped, and the walk stops at "now".
    let c = ex
        .klines(&btc(), Timeframe::M5, Some(since), 3)
        .await
        .unwrap();
    assert!(c.is_empty(), "{c:?}");
    let calls = requests(&server, "GET", P_CANDLES).await;
    let first = query(&calls[0]);
    assert_eq!(first["startTime"], since_ms.to_string());
    assert_eq!(first["endTime"], (since_ms + 3 * 300_000 - 1).to_string());
    assert_eq!(first["limit"], "3");
    assert_eq!(first["granularity"], "5m");

    // Since a date the recent endpoint does not reach: history-candles, 200 at most.
    let old = Utc.timestamp_millis_opt(1_695_835_800_000).unwrap();
    let c = ex
        .klines(&btc(), Timeframe::M5, Some(old), 2)
        .await
        .unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].open_time, old);
    let h = query(&only_request(&server, "GET", P_HISTORY).await);
    assert_eq!(h["startTime"], old.timestamp_millis().to_string());
    assert_eq!(
        h["endTime"],
        (old.timestamp_millis() + 2 * 300_000 - 1).to_string()
    );
    assert_eq!(h["limit"], "2");
}

#[tokio::test]
async fn eight_hour_candles_are_unsupported_without_a_request() {
    let server = MockServer::start().await;
    let err = bitget(&server)
        .klines(&btc(), Timeframe::H8, None, 5)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unsupported");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn ticker_reads_last_bid_ask_and_time() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(ok("ticker.json"))
        .mount(&server)
        .await;
    let t = bitget(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(1829.3));
    assert_eq!(t.bid, Some(dec!(1829.3)));
    assert_eq!(t.ask, Some(dec!(1829.8)));
    assert_eq!(t.mark, None, "the official example has no markPrice");
    assert_eq!(t.time.timestamp_millis(), 1_695_794_098_184);
    let r = only_request(&server, "GET", P_TICKER).await;
    assert_public(&r);
    assert_eq!(
        r.url.query(),
        Some("productType=USDT-FUTURES&symbol=BTCUSDT")
    );
}

#[tokio::test]
async fn instrument_reads_the_contract_rules() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    let i = bitget(&server).instrument(&btc()).await.unwrap();
    assert_eq!(i.venue_symbol, "BTCUSDT");
    assert_eq!(i.tick_size, dec!(0.1), "priceEndStep 1 x 10^-pricePlace 1");
    assert_eq!(i.step_size, dec!(0.01), "sizeMultiplier");
    assert_eq!(i.min_quantity, dec!(0.01), "minTradeNum");
    assert_eq!(i.min_notional, dec!(5), "minTradeUSDT");
    assert_eq!(i.contract_size, dec!(1), "sizes are base coin");
    assert_eq!(i.max_leverage, dec!(125));
    let r = only_request(&server, "GET", P_CONTRACTS).await;
    assert_public(&r);
    assert_eq!(
        r.url.query(),
        Some("productType=USDT-FUTURES&symbol=BTCUSDT")
    );
}

#[tokio::test]
async fn demo_contract_list_is_not_the_asked_symbol() {
    // The SUSDT demo coins are another product type; the adapter never trades them.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_CONTRACTS))
        .respond_with(ok("contracts_demo_susdt.json"))
        .mount(&server)
        .await;
    let err = demo(&server).instrument(&btc()).await.unwrap_err();
    assert_eq!(err.kind(), "unknown_symbol", "{err}");
    let r = only_request(&server, "GET", P_CONTRACTS).await;
    assert_eq!(query(&r)["productType"], "USDT-FUTURES");
    assert_eq!(header(&r, "paptrading"), Some("1"));
}

// ------------------------------------------------------------------------------------ account

#[tokio::test]
async fn balance_is_signed_and_reads_the_usdt_line() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(ok("balance.json"))
        .mount(&server)
        .await;
    let b = bitget(&server).balance("USDT").await.unwrap();
    assert_eq!(b.asset, "USDT");
    assert_eq!(b.equity, dec!(10582.90265771));
    assert_eq!(b.available, dec!(10575.26735771));
    assert_eq!(b.unrealized_pnl, dec!(0), "empty unrealizedPL is zero");
    let r = only_request(&server, "GET", P_ACCOUNTS).await;
    assert_eq!(r.url.query(), Some("productType=USDT-FUTURES"));
    assert_signed(&r);
    assert!(header(&r, "paptrading").is_none(), "live by default");
    // A coin the account does not hold is zero, not an error.
    let none = bitget(&server).balance("USDC").await.unwrap();
    assert_eq!(none.equity, dec!(0));
}

#[tokio::test]
async fn demo_trading_adds_the_paptrading_header_everywhere() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(ok("balance.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(ok("ticker.json"))
        .mount(&server)
        .await;
    let ex = demo(&server);
    ex.balance("USDT").await.unwrap();
    ex.ticker(&btc()).await.unwrap();
    let r = only_request(&server, "GET", P_ACCOUNTS).await;
    assert_eq!(header(&r, "paptrading"), Some("1"));
    assert_eq!(
        query(&r)["productType"],
        "USDT-FUTURES",
        "never SUSDT-FUTURES"
    );
    assert_signed(&r);
    let t = only_request(&server, "GET", P_TICKER).await;
    assert_eq!(header(&t, "paptrading"), Some("1"));
    assert_eq!(query(&t)["symbol"], "BTCUSDT", "never SBTCSUSDT");
}

#[tokio::test]
async fn all_positions_in_base_coin() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_ALL_POS))
        .respond_with(ok("positions.json"))
        .mount(&server)
        .await;
    let p = bitget(&server).positions(None).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].symbol, btc());
    assert_eq!(p[0].side, PositionSide::Short);
    assert_eq!(p[0].quantity, dec!(0.0155));
    assert_eq!(p[0].entry_price, dec!(88505.233333333333));
    assert_eq!(p[0].mark_price, Some(dec!(93203.4)));
    assert_eq!(p[0].unrealized_pnl, dec!(-72.8215833333333385));
    assert_eq!(p[0].leverage, Some(dec!(14)));
    assert_eq!(p[0].liquidation_price, Some(dec!(5737867.8639926850760812)));
    let r = only_request(&server, "GET", P_ALL_POS).await;
    assert_eq!(
        query(&r),
        q(&[("marginCoin", "USDT"), ("productType", "USDT-FUTURES")])
    );
    assert_signed(&r);
}

#[tokio::test]
async fn positions_of_one_symbol_use_single_position() {
    let server = MockServer::start().await;
    let mut flat = fixture_json("positions_jkorf_copy.json");
    let mut second = flat["data"][0].clone();
    second["holdSide"] = json!("short");
    second["total"] = json!("0");
    flat["data"].as_array_mut().unwrap().push(second);
    Mock::given(method("GET"))
        .and(path(P_ONE_POS))
        .respond_with(body(200, flat))
        .mount(&server)
        .await;
    let p = bitget(&server).positions(Some(&btc())).await.unwrap();
    assert_eq!(p.len(), 1, "the flat short side is skipped: {p:?}");
    assert_eq!(p[0].side, PositionSide::Long);
    assert_eq!(p[0].quantity, dec!(0.01));
    assert_eq!(p[0].entry_price, dec!(25000));
    let r = only_request(&server, "GET", P_ONE_POS).await;
    assert_eq!(
        query(&r),
        q(&[
            ("marginCoin", "USDT"),
            ("productType", "USDT-FUTURES"),
            ("symbol", "BTCUSDT"),
        ])
    );
    assert_signed(&r);
    assert!(requests(&server, "GET", P_ALL_POS).await.is_empty());
}

#[tokio::test]
async fn set_leverage_posts_and_checks_the_echo() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(P_LEVERAGE))
        .respond_with(ok("set_leverage.json"))
        .mount(&server)
        .await;
    let ex = bitget(&server);
    ex.set_leverage(&btc(), 20).await.unwrap();
    let r = only_request(&server, "POST", P_LEVERAGE).await;
    assert_eq!(
        json_body(&r),
        json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginCoin":"USDT","leverage":"20"})
    );
    assert!(r.url.query().is_none());
    assert_signed(&r);
    // The venue echoes crossed leverage 20: asking for 25 did not take effect.
    let err = ex.set_leverage(&btc(), 25).await.unwrap_err();
    assert!(err.to_string().contains("25"), "{err}");
    assert_eq!(
        ex.set_leverage(&btc(), 0).await.unwrap_err().kind(),
        "invalid_order"
    );
}

#[tokio::test]
async fn connectivity_checks_the_account_and_reports_its_modes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TIME))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNT))
        .respond_with(ok("balance_single_account.json"))
        .mount(&server)
        .await;
    let check = bitget(&server).test_connectivity().await.unwrap();
    assert_eq!(check.can_withdraw, None);
    assert!(
        check
            .notes
            .iter()
            .any(|n| n.contains("hedge_mode") && n.contains("one_way_mode")),
        "{check:?}"
    );
    let r = only_request(&server, "GET", P_ACCOUNT).await;
    assert_eq!(
        query(&r),
        q(&[
            ("marginCoin", "USDT"),
            ("productType", "USDT-FUTURES"),
            ("symbol", "BTCUSDT"),
        ])
    );
    assert_signed(&r);
    assert_public(&only_request(&server, "GET", P_TIME).await);
}

#[tokio::test]
async fn connectivity_without_credentials_checks_only_public_endpoints() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TIME))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    let ex = build_exchange(
        "bitget",
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
async fn market_order_sends_base_coin_size_and_client_oid() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let o = bitget(&server)
        .place_order(&market(dec!(0.02), "tf1a2b3c4d"))
        .await
        .unwrap();
    let r = only_request(&server, "POST", P_PLACE).await;
    assert_eq!(
        json_body(&r),
        json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.02","side":"buy","orderType":"market","clientOid":"tf1a2b3c4d"})
    );
    assert!(r.url.query().is_none());
    assert_signed(&r);
    assert_eq!(o.exchange_order_id, "121211212122");
    assert_eq!(o.quantity, dec!(0.02));
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(o.client_order_id, Some(cid("tf1a2b3c4d")));
}

#[tokio::test]
async fn quantity_off_the_step_or_under_the_minimum_is_rejected_before_sending() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let ex = bitget(&server);
    let err = ex
        .place_order(&market(dec!(0.015), "tfhalf"))
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::InvalidOrder { .. }), "{err:?}");
    let err = ex
        .place_order(&market(dec!(0), "tfzero"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_order");
    assert!(requests(&server, "POST", P_PLACE).await.is_empty());
}

#[tokio::test]
async fn limit_reduce_only_order_on_demo_sends_price_force_and_reduce_only() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(ok("place_order.json"))
        .mount(&server)
        .await;
    let ex = demo(&server);
    let req = OrderRequest {
        side: Side::Sell,
        order_type: OrderType::Limit,
        price: Some(dec!(95000.5)),
        reduce_only: true,
        ..market(dec!(0.05), "tflimit6")
    };
    let o = ex.place_order(&req).await.unwrap();
    let r = only_request(&server, "POST", P_PLACE).await;
    assert_eq!(
        json_body(&r),
        json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.05","price":"95000.5","side":"sell","orderType":"limit","force":"gtc","reduceOnly":"YES","clientOid":"tflimit6"})
    );
    assert_eq!(header(&r, "paptrading"), Some("1"));
    assert_signed(&r);
    assert_eq!(o.price, Some(dec!(95000.5)));
    assert!(o.reduce_only);

    // A price off the tick grid, or a limit without a price, is refused locally.
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
    assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
}

#[tokio::test]
async fn reduce_only_order_answered_without_order_id_is_resolved_by_client_oid() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(success(json!({"clientOid": "tfclose01", "orderId": null})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_DETAIL))
        .and(query_param("clientOid", "tfclose01"))
        .respond_with(btc_detail("tfclose01", "1214400000000000001", "filled"))
        .mount(&server)
        .await;
    let req = OrderRequest {
        side: Side::Sell,
        reduce_only: true,
        ..market(dec!(0.02), "tfclose01")
    };
    let o = bitget(&server).place_order(&req).await.unwrap();
    assert_eq!(o.exchange_order_id, "1214400000000000001");
    assert_eq!(o.client_order_id, Some(cid("tfclose01")));
    assert_eq!(o.status, OrderStatus::Filled);
    let r = only_request(&server, "POST", P_PLACE).await;
    assert_eq!(json_body(&r)["reduceOnly"], "YES");
    let d = only_request(&server, "GET", P_DETAIL).await;
    assert_eq!(
        d.url.query(),
        Some("clientOid=tfclose01&productType=USDT-FUTURES&symbol=BTCUSDT")
    );
    assert_signed(&d);
}

#[tokio::test]
async fn accepted_order_that_cannot_be_found_is_outcome_unknown() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(success(json!({"clientOid": "tfclose02"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_DETAIL))
        .respond_with(order_missing())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_HISTORY))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    let req = OrderRequest {
        side: Side::Sell,
        reduce_only: true,
        ..market(dec!(0.02), "tfclose02")
    };
    let err = bitget(&server).place_order(&req).await.unwrap_err();
    assert_eq!(err.kind(), "outcome_unknown", "{err}");
    assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
}

#[tokio::test]
async fn accepted_order_whose_lookup_fails_is_outcome_unknown_not_retryable() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(success(json!({"clientOid": "tfclose03", "orderId": ""})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_DETAIL))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .mount(&server)
        .await;
    let req = OrderRequest {
        side: Side::Sell,
        reduce_only: true,
        ..market(dec!(0.02), "tfclose03")
    };
    let err = bitget(&server).place_order(&req).await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
}

#[tokio::test]
async fn reduce_only_stop_and_take_profit_are_position_tpsl_plans() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_TPSL))
        .respond_with(ok("place_plan_order.json"))
        .mount(&server)
        .await;
    let ex = bitget(&server);
    let stop = OrderRequest {
        side: Side::Sell,
        order_type: OrderType::StopMarket,
        trigger_price: Some(dec!(85000)),
        reduce_only: true,
        ..market(dec!(0.02), "tfsl0001")
    };
    let o = ex.place_order(&stop).await.unwrap();
    assert_eq!(o.exchange_order_id, "121212121212");
    assert_eq!(o.order_type, OrderType::StopMarket);
    assert_eq!(o.trigger_price, Some(dec!(85000)));
    let tp = OrderRequest {
        order_type: OrderType::TakeProfitMarket,
        trigger_price: Some(dec!(99000.1)),
        client_order_id: cid("tftp0001"),
        ..stop
    };
    ex.place_order(&tp).await.unwrap();
    let r = requests(&server, "POST", P_TPSL).await;
    assert_eq!(r.len(), 2);
    assert_eq!(
        json_body(&r[0]),
        json!({"marginCoin":"USDT","productType":"USDT-FUTURES","symbol":"BTCUSDT","planType":"loss_plan","triggerPrice":"85000","triggerType":"mark_price","executePrice":"0","holdSide":"buy","size":"0.02","clientOid":"tfsl0001"})
    );
    assert_eq!(
        json_body(&r[1]),
        json!({"marginCoin":"USDT","productType":"USDT-FUTURES","symbol":"BTCUSDT","planType":"profit_plan","triggerPrice":"99000.1","triggerType":"mark_price","executePrice":"0","holdSide":"buy","size":"0.02","clientOid":"tftp0001"})
    );
    assert_signed(&r[0]);
    assert_signed(&r[1]);
    assert!(requests(&server, "POST", P_PLACE).await.is_empty());
    assert!(requests(&server, "POST", P_PLAN).await.is_empty());
}

#[tokio::test]
async fn entry_stop_is_a_normal_trigger_plan_and_an_entry_take_profit_is_refused() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLAN))
        .respond_with(ok("place_plan_order.json"))
        .mount(&server)
        .await;
    let ex = bitget(&server);
    let stop = OrderRequest {
        order_type: OrderType::StopMarket,
        trigger_price: Some(dec!(101000)),
        ..market(dec!(0.03), "tfentry1")
    };
    let o = ex.place_order(&stop).await.unwrap();
    assert_eq!(o.exchange_order_id, "121212121212");
    let r = only_request(&server, "POST", P_PLAN).await;
    assert_eq!(
        json_body(&r),
        json!({"planType":"normal_plan","symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.03","triggerPrice":"101000","triggerType":"mark_price","side":"buy","orderType":"market","clientOid":"tfentry1"})
    );
    assert_signed(&r);
    let tp = OrderRequest {
        order_type: OrderType::TakeProfitMarket,
        ..stop.clone()
    };
    assert_eq!(
        ex.place_order(&tp).await.unwrap_err().kind(),
        "invalid_order"
    );
    let no_trigger = OrderRequest {
        trigger_price: None,
        ..stop
    };
    assert_eq!(
        ex.place_order(&no_trigger).await.unwrap_err().kind(),
        "invalid_order"
    );
    assert_eq!(requests(&server, "POST", P_PLAN).await.len(), 1);
    assert!(requests(&server, "POST", P_TPSL).await.is_empty());
}

#[tokio::test]
async fn cancel_by_client_oid_of_a_regular_order() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(P_CANCEL))
        .respond_with(ok("cancel_order.json"))
        .mount(&server)
        .await;
    bitget(&server)
        .cancel_order(&btc(), &cid("tflimit6"))
        .await
        .unwrap();
    let r = only_request(&server, "POST", P_CANCEL).await;
    assert_eq!(
        json_body(&r),
        json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginCoin":"USDT","clientOid":"tflimit6"})
    );
    assert_signed(&r);
    assert!(requests(&server, "GET", P_PLAN_PENDING).await.is_empty());
    assert!(requests(&server, "POST", P_CANCEL_PLAN).await.is_empty());
}

#[tokio::test]
async fn cancel_by_client_oid_falls_back_to_the_plan_order() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(P_CANCEL))
        .respond_with(venue_error(400, "40768", "Order does not exist"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "normal_plan"))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "profit_loss"))
        .respond_with(ok("orders_plan_pending_tpsl.json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(P_CANCEL_PLAN))
        .respond_with(ok("cancel_plan_order.json"))
        .mount(&server)
        .await;
    bitget(&server)
        .cancel_order(&btc(), &cid("tfsl0001"))
        .await
        .unwrap();
    assert_eq!(requests(&server, "POST", P_CANCEL).await.len(), 1);
    let lookups = requests(&server, "GET", P_PLAN_PENDING).await;
    assert_eq!(lookups.len(), 2);
    assert_eq!(
        query(&lookups[0]),
        q(&[
            ("clientOid", "tfsl0001"),
            ("limit", "100"),
            ("planType", "normal_plan"),
            ("productType", "USDT-FUTURES"),
            ("symbol", "BTCUSDT"),
        ])
    );
    assert_signed(&lookups[1]);
    let r = only_request(&server, "POST", P_CANCEL_PLAN).await;
    assert_eq!(
        json_body(&r),
        json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginCoin":"USDT","planType":"loss_plan","orderIdList":[{"orderId":"1214447979043405825","clientOid":"tfsl0001"}]})
    );
    assert_signed(&r);
}

#[tokio::test]
async fn cancel_of_an_unknown_client_oid_is_order_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(P_CANCEL))
        .respond_with(venue_error(400, "40768", "Order does not exist"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    let err = bitget(&server)
        .cancel_order(&btc(), &cid("nothere"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::OrderNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("40768"), "{err}");
    assert!(requests(&server, "POST", P_CANCEL_PLAN).await.is_empty());
}

#[tokio::test]
async fn cancel_all_cancels_regular_and_every_plan_family() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_PENDING))
        .respond_with(ok("orders_pending.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "normal_plan"))
        .respond_with(ok("orders_plan_pending.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "profit_loss"))
        .respond_with(ok("orders_plan_pending_tpsl.json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(P_BATCH_CANCEL))
        .respond_with(ok("batch_cancel_orders.json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(P_CANCEL_PLAN))
        .respond_with(echo_cancel)
        .mount(&server)
        .await;
    let n = bitget(&server).cancel_all(&btc()).await.unwrap();
    // 1 regular (its "notExistend" failure is already gone) + 1 normal plan + 1 SL + 1 TP.
    assert_eq!(n, 4);
    let p = only_request(&server, "GET", P_PENDING).await;
    assert_eq!(
        query(&p),
        q(&[
            ("limit", "100"),
            ("productType", "USDT-FUTURES"),
            ("symbol", "BTCUSDT"),
        ])
    );
    assert_signed(&p);
    let b = only_request(&server, "POST", P_BATCH_CANCEL).await;
    assert_eq!(
        json_body(&b),
        json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginCoin":"USDT","orderIdList":[{"orderId":"123"}]})
    );
    assert_signed(&b);
    let plans = requests(&server, "POST", P_CANCEL_PLAN).await;
    let bodies: Vec<Value> = plans.iter().map(json_body).collect();
    assert_eq!(
        bodies,
        [
            json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginCoin":"USDT","planType":"normal_plan","orderIdList":[{"orderId":"123"}]}),
            json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginCoin":"USDT","planType":"loss_plan","orderIdList":[{"orderId":"1214447979043405825"}]}),
            json!({"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginCoin":"USDT","planType":"profit_plan","orderIdList":[{"orderId":"1214447979043405826"}]}),
        ]
    );
}

#[tokio::test]
async fn cancel_all_with_nothing_open_sends_no_cancel() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    assert_eq!(bitget(&server).cancel_all(&btc()).await.unwrap(), 0);
    assert!(requests(&server, "POST", P_BATCH_CANCEL).await.is_empty());
    assert!(requests(&server, "POST", P_CANCEL_PLAN).await.is_empty());
}

#[tokio::test]
async fn cancel_all_reports_a_real_failure() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_PENDING))
        .respond_with(ok("orders_pending.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(P_BATCH_CANCEL))
        .respond_with(success(json!({"successList": [], "failureList": [
            {"orderId": "123", "clientOid": "", "errorCode": "40015", "errorMsg": "System is abnormal"}
        ]})))
        .mount(&server)
        .await;
    let err = bitget(&server).cancel_all(&btc()).await.unwrap_err();
    assert!(err.to_string().contains("40015"), "{err}");
}

#[tokio::test]
async fn open_orders_include_plan_orders() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_PENDING))
        .respond_with(ok("orders_pending.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "normal_plan"))
        .respond_with(ok("orders_plan_pending.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "profit_loss"))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    let o = bitget(&server).open_orders(&eth()).await.unwrap();
    assert_eq!(o.len(), 2, "{o:?}");
    assert_eq!(o[0].symbol, eth());
    assert_eq!(o[0].exchange_order_id, "123");
    assert_eq!(o[0].client_order_id, Some(cid("12321")));
    assert_eq!(o[0].status, OrderStatus::PartiallyFilled);
    assert_eq!(o[0].order_type, OrderType::Limit);
    assert_eq!(o[0].quantity, dec!(100));
    assert_eq!(o[0].filled_quantity, dec!(12.1));
    assert_eq!(o[0].price, Some(dec!(1900)));
    assert_eq!(o[0].average_price, Some(dec!(1903)));
    assert!(!o[0].reduce_only, "tradeSide open");
    assert_eq!(
        o[0].created_at.unwrap().timestamp_millis(),
        1_627_293_504_612
    );
    assert_eq!(o[1].order_type, OrderType::StopMarket);
    assert_eq!(o[1].trigger_price, Some(dec!(1901)));
    assert_eq!(o[1].status, OrderStatus::Open);
    assert_eq!(o[1].client_order_id, Some(cid("121212")));
    assert_eq!(o[1].quantity, dec!(1));
    let p = only_request(&server, "GET", P_PENDING).await;
    assert_eq!(query(&p)["symbol"], "ETHUSDT");
    assert_signed(&p);
    assert_eq!(requests(&server, "GET", P_PLAN_PENDING).await.len(), 2);
}

#[tokio::test]
async fn open_orders_report_tpsl_plans_with_their_kind() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "normal_plan"))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "profit_loss"))
        .respond_with(ok("orders_plan_pending_tpsl.json"))
        .mount(&server)
        .await;
    let o = bitget(&server).open_orders(&btc()).await.unwrap();
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].order_type, OrderType::StopMarket);
    assert_eq!(o[0].trigger_price, Some(dec!(85000)));
    assert_eq!(o[1].order_type, OrderType::TakeProfitMarket);
    assert_eq!(o[1].trigger_price, Some(dec!(99000.1)));
    assert!(o.iter().all(|o| o.reduce_only && o.side == Side::Sell));
    assert!(o.iter().all(|o| o.status == OrderStatus::Open));
}

#[tokio::test]
async fn pending_orders_follow_id_less_than_pages() {
    let server = MockServer::start().await;
    let row = fixture_json("orders_pending.json")["data"]["entrustedList"][0].clone();
    let page = |from: usize, n: usize, end: &str| {
        let rows: Vec<Value> = (from..from + n)
            .map(|i| {
                let mut r = row.clone();
                r["orderId"] = json!(format!("{}", 10_000 - i));
                r
            })
            .collect();
        success(json!({"entrustedList": rows, "endId": end}))
    };
    Mock::given(method("GET"))
        .and(path(P_PENDING))
        .and(query_param("idLessThan", "9900"))
        .respond_with(page(100, 3, "9898"))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PENDING))
        .respond_with(page(0, 100, "9900"))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    let o = bitget(&server).open_orders(&eth()).await.unwrap();
    assert_eq!(o.len(), 103);
    assert_eq!(requests(&server, "GET", P_PENDING).await.len(), 2);
}

#[tokio::test]
async fn order_by_client_id_reads_the_detail() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_DETAIL))
        .respond_with(ok("order_detail.json"))
        .mount(&server)
        .await;
    let o = bitget(&server)
        .order_by_client_id(&eth(), &cid("77777"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.symbol, eth());
    assert_eq!(o.exchange_order_id, "123456");
    assert_eq!(o.client_order_id, Some(cid("77777")));
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(o.order_type, OrderType::Limit);
    assert_eq!(o.quantity, dec!(2));
    assert_eq!(o.filled_quantity, dec!(2));
    assert_eq!(o.average_price, Some(dec!(1900)));
    assert!(o.reduce_only, "reduceOnly yes");
    assert_eq!(o.fee, None, "empty fee");
    let r = only_request(&server, "GET", P_DETAIL).await;
    assert_eq!(
        r.url.query(),
        Some("clientOid=77777&productType=USDT-FUTURES&symbol=ETHUSDT")
    );
    assert_signed(&r);
    assert!(requests(&server, "GET", P_PLAN_PENDING).await.is_empty());
}

#[tokio::test]
async fn order_by_client_id_falls_back_to_plan_orders_then_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_DETAIL))
        .respond_with(order_missing())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "normal_plan"))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "profit_loss"))
        .and(query_param("clientOid", "tftp0001"))
        .respond_with(ok("orders_plan_pending_tpsl.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .and(query_param("planType", "profit_loss"))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    // The stop-loss already fired: only the plan history knows it.
    let mut fired = fixture_json("orders_plan_pending_tpsl.json");
    fired["data"]["entrustedList"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    fired["data"]["entrustedList"][0]["planStatus"] = json!("executed");
    Mock::given(method("GET"))
        .and(path(P_PLAN_HISTORY))
        .and(query_param("planType", "profit_loss"))
        .and(query_param("clientOid", "tfsl0001"))
        .respond_with(body(200, fired))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_HISTORY))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    let ex = bitget(&server);
    let o = ex
        .order_by_client_id(&btc(), &cid("tftp0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.order_type, OrderType::TakeProfitMarket);
    assert_eq!(o.exchange_order_id, "1214447979043405826");
    assert_eq!(o.client_order_id, Some(cid("tftp0001")));
    let lookups = requests(&server, "GET", P_PLAN_PENDING).await;
    assert_eq!(lookups.len(), 2);
    assert!(lookups.iter().all(|r| query(r)["clientOid"] == "tftp0001"));
    lookups.iter().for_each(assert_signed);
    assert!(requests(&server, "GET", P_PLAN_HISTORY).await.is_empty());

    let sl = ex
        .order_by_client_id(&btc(), &cid("tfsl0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sl.status, OrderStatus::Triggered);
    assert_eq!(sl.order_type, OrderType::StopMarket);
    let history = requests(&server, "GET", P_PLAN_HISTORY).await;
    assert_eq!(history.len(), 2, "normal_plan, then profit_loss");
    assert_eq!(
        query(&history[1]),
        q(&[
            ("clientOid", "tfsl0001"),
            ("limit", "100"),
            ("planType", "profit_loss"),
            ("productType", "USDT-FUTURES"),
            ("symbol", "BTCUSDT"),
        ])
    );
    assert_signed(&history[1]);

    assert_eq!(
        ex.order_by_client_id(&btc(), &cid("nothere"))
            .await
            .unwrap(),
        None
    );
}

// ------------------------------------------------------------------------------------ errors

#[tokio::test]
async fn unified_account_is_a_permission_error_that_explains_the_account_mode() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(venue_error(
            400,
            "40085",
            "You are in Unified Account mode, and the Classic Account API is not supported",
        ))
        .mount(&server)
        .await;
    let err = bitget(&server).balance("USDT").await.unwrap_err();
    assert!(matches!(err, ExchangeError::Permission { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("Unified Trading Account"), "{text}");
    assert!(text.contains("classic account mode"), "{text}");
    assert!(text.contains("40085"), "{text}");
    assert_eq!(
        requests(&server, "GET", P_ACCOUNTS).await.len(),
        1,
        "never retried"
    );
}

#[tokio::test]
async fn rate_limit_is_retried_for_reads_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(venue_error(429, "429", "Too Many Requests"))
        .mount(&server)
        .await;
    let err = bitget(&server).ticker(&btc()).await.unwrap_err();
    assert!(matches!(err, ExchangeError::RateLimited { .. }), "{err:?}");
    // One attempt plus `max_retries` (2).
    assert_eq!(requests(&server, "GET", P_TICKER).await.len(), 3);
}

#[tokio::test]
async fn a_long_retry_after_is_returned_at_once_with_the_wait() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(
            venue_error(429, "429", "Too Many Requests").insert_header("Retry-After", "60"),
        )
        .mount(&server)
        .await;
    let err = bitget(&server).ticker(&btc()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)), "{err:?}");
    assert_eq!(requests(&server, "GET", P_TICKER).await.len(), 1);
}

#[tokio::test]
async fn rate_limit_without_a_json_body_is_recognised_by_its_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(ResponseTemplate::new(429).set_body_string("Too Many Requests"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(ok("ticker.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let t = bitget(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(1829.3));
    assert_eq!(requests(&server, "GET", P_TICKER).await.len(), 2);
}

#[tokio::test]
async fn expired_timestamp_resyncs_the_clock_then_succeeds() {
    let server = MockServer::start().await;
    let venue_now = Utc::now() + chrono::Duration::hours(1);
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(venue_error(400, "40008", "Request timestamp expired"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(ok("balance.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_TIME))
        .respond_with(success(
            json!({"serverTime": venue_now.timestamp_millis().to_string()}),
        ))
        .mount(&server)
        .await;
    let b = bitget(&server).balance("USDT").await.unwrap();
    assert_eq!(b.equity, dec!(10582.90265771));
    let calls = requests(&server, "GET", P_ACCOUNTS).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(requests(&server, "GET", P_TIME).await.len(), 1);
    let ts = |r: &Request| -> i64 { header(r, "ACCESS-TIMESTAMP").unwrap().parse().unwrap() };
    let shift = ts(&calls[1]) - ts(&calls[0]);
    assert!(
        shift > 50 * 60_000,
        "the retry is signed with the venue's clock, shifted by {shift} ms"
    );
    calls.iter().for_each(assert_signed);
}

#[tokio::test]
async fn bad_signature_and_wrong_passphrase_are_auth_errors_not_retried() {
    for (code, msg) in [
        ("40009", "sign signature error"),
        ("40012", "apikey/password is incorrect"),
        ("40006", "Invalid ACCESS_KEY"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(P_ACCOUNTS))
            .respond_with(venue_error(400, code, msg))
            .mount(&server)
            .await;
        let err = bitget(&server).balance("USDT").await.unwrap_err();
        assert!(matches!(err, ExchangeError::Auth { .. }), "{code}: {err:?}");
        assert!(err.to_string().contains(code));
        assert_eq!(requests(&server, "GET", P_ACCOUNTS).await.len(), 1);
    }
}

#[tokio::test]
async fn wrong_environment_says_demo_or_live() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(venue_error(
            400,
            "40099",
            "exchange environment is incorrect",
        ))
        .mount(&server)
        .await;
    let err = demo(&server).balance("USDT").await.unwrap_err();
    assert_eq!(err.kind(), "auth");
    assert!(err.to_string().contains("demo"), "{err}");
}

#[tokio::test]
async fn ip_not_whitelisted_is_a_permission_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNTS))
        .respond_with(venue_error(400, "40018", "Invalid IP"))
        .mount(&server)
        .await;
    let err = bitget(&server).balance("USDT").await.unwrap_err();
    assert!(matches!(err, ExchangeError::Permission { .. }), "{err:?}");
}

async fn place_with_answer(answer: ResponseTemplate) -> (ExchangeError, MockServer) {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(answer)
        .mount(&server)
        .await;
    let err = bitget(&server)
        .place_order(&market(dec!(0.02), "tf1a2b3c4d"))
        .await
        .unwrap_err();
    (err, server)
}

#[tokio::test]
async fn insufficient_balance() {
    for code in ["40762", "43012", "40754"] {
        let (err, server) = place_with_answer(venue_error(
            400,
            code,
            "The order amount exceeds the balance",
        ))
        .await;
        assert!(
            matches!(err, ExchangeError::InsufficientMargin { .. }),
            "{code}: {err:?}"
        );
        assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
    }
}

#[tokio::test]
async fn duplicate_client_oid() {
    let (err, server) = place_with_answer(venue_error(400, "40786", "Duplicate clientOid")).await;
    assert!(
        matches!(err, ExchangeError::DuplicateClientOrderId { .. }),
        "{err:?}"
    );
    assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
}

#[tokio::test]
async fn client_oid_format_is_an_invalid_order() {
    let (err, _) = place_with_answer(venue_error(
        400,
        "40305",
        "Client_oid length is not greater than 50, and cannot be Martian characters",
    ))
    .await;
    match err {
        ExchangeError::InvalidOrder { message, .. } => {
            assert!(
                message.contains("40305") && message.contains("client order id"),
                "{message}"
            )
        }
        other => panic!("expected InvalidOrder, got {other:?}"),
    }
}

#[tokio::test]
async fn size_precision_and_minimum_are_invalid_orders() {
    for code in ["40808", "45110"] {
        let (err, _) = place_with_answer(venue_error(400, code, "checkBDScale error")).await;
        assert_eq!(err.kind(), "invalid_order", "{code}");
    }
}

#[tokio::test]
async fn hedge_mode_mismatch_explains_the_position_mode() {
    let (err, _) = place_with_answer(venue_error(
        400,
        "40774",
        "The order type for unilateral position must also be the unilateral position type.",
    ))
    .await;
    assert_eq!(err.kind(), "invalid_order");
    assert!(err.to_string().contains("one-way"), "{err}");
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
    assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
}

#[tokio::test]
async fn system_error_code_on_a_write_is_outcome_unknown_too() {
    let (err, server) = place_with_answer(venue_error(500, "40015", "System is abnormal")).await;
    assert!(
        matches!(err, ExchangeError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
}

#[tokio::test]
async fn unknown_code_is_a_venue_error_with_the_code() {
    let (err, _) = place_with_answer(venue_error(400, "49999", "something new")).await;
    match err {
        ExchangeError::Venue { code, message, .. } => {
            assert_eq!(code, "49999");
            assert!(message.contains("something new"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_error_on_a_read_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(ResponseTemplate::new(503).set_body_string("Service Unavailable"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_TICKER))
        .respond_with(ok("ticker.json"))
        .with_priority(2)
        .mount(&server)
        .await;
    let t = bitget(&server).ticker(&btc()).await.unwrap();
    assert_eq!(t.last, dec!(1829.3));
    assert_eq!(requests(&server, "GET", P_TICKER).await.len(), 2);
}

#[tokio::test]
async fn unknown_symbol_is_unknown_symbol() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_CONTRACTS))
        .respond_with(venue_error(
            400,
            "40034",
            "Parameter NOPEUSDT does not exist",
        ))
        .mount(&server)
        .await;
    let nope: Symbol = "NOPE/USDT:USDT".parse().unwrap();
    let ex = bitget(&server);
    match ex.instrument(&nope).await.unwrap_err() {
        ExchangeError::UnknownSymbol { symbol, .. } => assert_eq!(symbol, "NOPEUSDT"),
        other => panic!("{other:?}"),
    }
    // An order for it never reaches the trade endpoint.
    let err = ex
        .place_order(&OrderRequest {
            symbol: nope,
            ..market(dec!(1), "tfx")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_symbol");
    assert!(requests(&server, "POST", P_PLACE).await.is_empty());

    // An empty list means the same; non-USDT symbols are refused locally.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path(P_CONTRACTS))
        .respond_with(success(json!([])))
        .mount(&server)
        .await;
    assert_eq!(
        ex.instrument(&btc()).await.unwrap_err().kind(),
        "unknown_symbol"
    );
    let usdc: Symbol = "BTC/USDC:USDC".parse().unwrap();
    assert_eq!(ex.ticker(&usdc).await.unwrap_err().kind(), "unknown_symbol");
    assert_eq!(
        requests(&server, "GET", P_TICKER).await.len(),
        0,
        "refused before sending"
    );
}

// ------------------------------------------------------------------------------------ malformed

/// Normal answers of every endpoint at a low priority, so that one endpoint can be broken.
async fn mount_background(server: &MockServer) {
    let mocks = [
        ("GET", P_TIME, ok("server_time.json")),
        ("GET", P_CONTRACTS, ok("contracts.json")),
        ("GET", P_PENDING, ok("orders_pending.json")),
        ("GET", P_PLAN_PENDING, ok("orders_plan_pending_tpsl.json")),
        ("GET", P_DETAIL, order_missing()),
        ("GET", P_PLAN_HISTORY, empty_page()),
        (
            "POST",
            P_CANCEL,
            venue_error(400, "40768", "Order does not exist"),
        ),
    ];
    for (m, p, answer) in mocks {
        Mock::given(method(m))
            .and(path(p))
            .respond_with(answer)
            .with_priority(10)
            .mount(server)
            .await;
    }
    for p in [P_BATCH_CANCEL, P_CANCEL_PLAN] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(echo_cancel)
            .with_priority(10)
            .mount(server)
            .await;
    }
}

/// Every endpoint answering a truncated or non-JSON body: an error, never a panic.
#[tokio::test]
async fn malformed_answers_from_every_endpoint_are_errors() {
    let server = MockServer::start().await;
    let endpoints: [(&str, &str, &str); 20] = [
        ("GET", P_TIME, "server_time.json"),
        ("GET", P_CANDLES, "klines.json"),
        ("GET", P_HISTORY, "klines.json"),
        ("GET", P_TICKER, "ticker.json"),
        ("GET", P_CONTRACTS, "contracts.json"),
        ("GET", P_ACCOUNTS, "balance.json"),
        ("GET", P_ACCOUNT, "balance_single_account.json"),
        ("GET", P_ALL_POS, "positions.json"),
        ("GET", P_ONE_POS, "positions_jkorf_copy.json"),
        ("POST", P_LEVERAGE, "set_leverage.json"),
        ("POST", P_PLACE, "place_order.json"),
        ("POST", P_PLAN, "place_plan_order.json"),
        ("POST", P_TPSL, "place_plan_order.json"),
        ("POST", P_CANCEL, "cancel_order.json"),
        ("POST", P_BATCH_CANCEL, "batch_cancel_orders.json"),
        ("POST", P_CANCEL_PLAN, "cancel_plan_order.json"),
        ("GET", P_PENDING, "orders_pending.json"),
        ("GET", P_PLAN_PENDING, "orders_plan_pending_tpsl.json"),
        ("GET", P_DETAIL, "order_detail.json"),
        ("GET", P_PLAN_HISTORY, "orders_plan_pending_tpsl.json"),
    ];
    let sl = OrderRequest {
        order_type: OrderType::StopMarket,
        trigger_price: Some(dec!(80000)),
        side: Side::Sell,
        reduce_only: true,
        ..market(dec!(0.02), "tfsl0001")
    };
    let entry_stop = OrderRequest {
        reduce_only: false,
        side: Side::Buy,
        trigger_price: Some(dec!(120000)),
        ..sl.clone()
    };
    let old = Utc.timestamp_millis_opt(1_695_835_800_000).unwrap();
    for (m, p, f) in endpoints {
        let full = fixture(f);
        let full = full.trim_end();
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
            let ex = bitget(&server);
            let result = match (m, p) {
                (_, P_TIME) => ex.server_time().await.map(|_| ()),
                (_, P_CANDLES) => ex.klines(&btc(), Timeframe::M5, None, 2).await.map(|_| ()),
                (_, P_HISTORY) => ex
                    .klines(&btc(), Timeframe::M5, Some(old), 2)
                    .await
                    .map(|_| ()),
                (_, P_TICKER) => ex.ticker(&btc()).await.map(|_| ()),
                (_, P_CONTRACTS) => ex.instrument(&btc()).await.map(|_| ()),
                (_, P_ACCOUNTS) => ex.balance("USDT").await.map(|_| ()),
                (_, P_ACCOUNT) => ex.test_connectivity().await.map(|_| ()),
                (_, P_ALL_POS) => ex.positions(None).await.map(|_| ()),
                (_, P_ONE_POS) => ex.positions(Some(&btc())).await.map(|_| ()),
                (_, P_LEVERAGE) => ex.set_leverage(&btc(), 20).await,
                (_, P_PLACE) => ex.place_order(&market(dec!(0.02), "tfm")).await.map(|_| ()),
                (_, P_PLAN) => ex.place_order(&entry_stop).await.map(|_| ()),
                (_, P_TPSL) => ex.place_order(&sl).await.map(|_| ()),
                (_, P_CANCEL) => ex.cancel_order(&btc(), &cid("tfm")).await,
                (_, P_CANCEL_PLAN) => ex.cancel_order(&btc(), &cid("tfsl0001")).await,
                (_, P_BATCH_CANCEL) => ex.cancel_all(&btc()).await.map(|_| ()),
                (_, P_PENDING) => ex.open_orders(&btc()).await.map(|_| ()),
                (_, P_PLAN_PENDING) => ex.order_by_client_id(&btc(), &cid("tfm")).await.map(|_| ()),
                (_, P_DETAIL | P_PLAN_HISTORY) => {
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
async fn timed_out_order_is_reconciled_by_client_oid_without_a_second_post() {
    let server = MockServer::start().await;
    mount_btc_contract(&server).await;
    // Before placing: unknown as a regular order and as a plan order.
    Mock::given(method("GET"))
        .and(path(P_DETAIL))
        .respond_with(order_missing())
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_PENDING))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_PLAN_HISTORY))
        .respond_with(empty_page())
        .mount(&server)
        .await;
    // The venue takes the order but answers after the client has given up.
    Mock::given(method("POST"))
        .and(path(P_PLACE))
        .respond_with(ok("place_order.json").set_delay(Duration::from_millis(3_000)))
        .mount(&server)
        .await;
    // Afterwards the order exists under its clientOid.
    Mock::given(method("GET"))
        .and(path(P_DETAIL))
        .and(query_param("clientOid", "tf1a2b3c4d"))
        .respond_with(btc_detail("tf1a2b3c4d", "121211212122", "filled"))
        .with_priority(2)
        .mount(&server)
        .await;
    let ex = build_exchange(
        "bitget",
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
            assert_eq!(o.exchange_order_id, "121211212122");
            assert_eq!(o.client_order_id, Some(cid("tf1a2b3c4d")));
            assert_eq!(o.quantity, dec!(0.02));
            assert_eq!(o.status, OrderStatus::Filled);
        }
        other => panic!("expected the existing order, got {other:?}"),
    }
    assert_eq!(requests(&server, "POST", P_PLACE).await.len(), 1);
    assert_eq!(requests(&server, "GET", P_DETAIL).await.len(), 2);
}

#[tokio::test]
async fn connectivity_of_a_unified_account_explains_why_it_cannot_work() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(P_TIME))
        .respond_with(ok("server_time.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(P_ACCOUNT))
        .respond_with(venue_error(
            400,
            "40085",
            "You are in Unified Account mode, and the Classic Account API is not supported",
        ))
        .mount(&server)
        .await;
    let err = bitget(&server).test_connectivity().await.unwrap_err();
    assert_eq!(err.kind(), "permission");
    assert!(err.to_string().contains("Unified Trading Account"), "{err}");
}
