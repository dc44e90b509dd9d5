#![allow(clippy::unwrap_used)]
//! Kraken Futures adapter through the public API only, against a wiremock server on 127.0.0.1
//! replaying Kraken's documented payloads: exact requests (method, path, query, headers and a
//! recomputed `Authent`), every error class, retries, malformed answers and idempotent placement.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use secrecy::SecretString;
use sha2::{Digest, Sha256, Sha512};
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
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Base64 of the bytes 0..=63 (the research notes' test secret).
const SECRET: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
const API_KEY: &str = "test-public-key";

const INSTRUMENTS: &str = "/derivatives/api/v3/instruments";
const SENDORDER: &str = "/derivatives/api/v3/sendorder";
const ORDER_STATUS: &str = "/derivatives/api/v3/orders/status";
const HISTORY: &str = "/api/history/v2/orders";
const TRIGGERS: &str = "/api/history/v2/triggers";
const ACCOUNTS: &str = "/derivatives/api/v3/accounts";

fn fixture(name: &str) -> String {
    let p = format!(
        "{}/tests/fixtures/kraken/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn fast_http() -> HttpSettings {
    HttpSettings {
        timeout_ms: 3_000,
        connect_timeout_ms: 1_000,
        max_retries: 2,
        backoff_base_ms: 1,
        backoff_max_ms: 5,
        max_retry_after_ms: 10_000,
    }
}

fn credentials() -> Credentials {
    Credentials {
        api_key: SecretString::from(API_KEY),
        api_secret: SecretString::from(SECRET),
        passphrase: None,
    }
}

fn params(server: &MockServer) -> VenueParams {
    VenueParams {
        base_url: Some(server.uri()),
        credentials: Some(credentials()),
        http: fast_http(),
        ..VenueParams::default()
    }
}

fn kraken(server: &MockServer) -> Arc<dyn Exchange> {
    build_exchange("kraken", &params(server)).unwrap()
}

fn btc() -> Symbol {
    "BTC/USD:USD".parse().unwrap()
}

fn ok(body: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json")
        .set_body_string(body.into())
}

async fn mount(server: &MockServer, verb: &str, p: &str, response: ResponseTemplate) {
    Mock::given(method(verb))
        .and(path(p))
        .respond_with(response)
        .mount(server)
        .await;
}

/// A mock answered once (highest priority), before the regular ones.
async fn mount_once(server: &MockServer, verb: &str, p: &str, response: ResponseTemplate) {
    Mock::given(method(verb))
        .and(path(p))
        .respond_with(response)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
}

async fn with_instruments() -> MockServer {
    let server = MockServer::start().await;
    mount(&server, "GET", INSTRUMENTS, ok(fixture("instruments.json"))).await;
    server
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Kraken's algorithm, written independently of the adapter.
fn expected_authent(secret_b64: &str, post_data: &str, nonce: &str, endpoint_path: &str) -> String {
    let secret = STANDARD.decode(secret_b64).unwrap();
    let digest = Sha256::digest(format!("{post_data}{nonce}{endpoint_path}").as_bytes());
    let mut mac = Hmac::<Sha512>::new_from_slice(&secret).unwrap();
    mac.update(&digest);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The one request received at `p`: its method and query string are exactly as given, it carries
/// the API key and a numeric nonce, and its `Authent` matches the one recomputed from what the
/// server actually received.
async fn assert_signed(server: &MockServer, verb: &str, p: &str, query: &str) -> Request {
    let reqs = requests_to(server, p).await;
    assert_eq!(reqs.len(), 1, "requests to {p}");
    let r = reqs.into_iter().next().unwrap();
    assert_eq!(r.method.as_str(), verb, "{p}");
    let got_query = r.url.query().unwrap_or("");
    assert_eq!(got_query, query, "{p}");
    assert_eq!(header(&r, "APIKey"), Some(API_KEY), "{p}");
    let nonce = header(&r, "Nonce").unwrap();
    assert!(nonce.parse::<u64>().is_ok(), "nonce {nonce:?}");
    let endpoint = r
        .url
        .path()
        .strip_prefix("/derivatives")
        .unwrap_or(r.url.path());
    assert_eq!(
        header(&r, "Authent"),
        Some(expected_authent(SECRET, got_query, nonce, endpoint).as_str()),
        "{p}"
    );
    r
}

fn order_request(cli: &str, order_type: OrderType) -> OrderRequest {
    OrderRequest {
        symbol: btc(),
        client_order_id: ClientOrderId::new(cli).unwrap(),
        side: Side::Buy,
        order_type,
        quantity: dec!(0.0001),
        price: Some(dec!(50000)),
        trigger_price: Some(dec!(48000)),
        reduce_only: false,
    }
}

fn time(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn known_answer_signature() {
    // Vector K4 of the research notes, and K2 (python-kraken-sdk's golden value).
    assert_eq!(
        expected_authent(
            SECRET,
            "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=0.0001&limitPrice=50000&cliOrdId=my-oid-0001",
            "1700000000000",
            "/api/v3/sendorder"
        ),
        "zP9TXUe9D4AfzUnHhCZexhRl4ZREsiTZX30BOZ4cVFd662YiaU1qCZRWwGztkhj8LfR3zVcjRHlQn3VyEdYzbg=="
    );
    assert_eq!(
        expected_authent(
            "cHl0aG9uLWtyYWtlbi1zZGsgdW5pdC10ZXN0IHNlY3JldCB2YWx1ZQ==",
            "orderType=lmt&symbol=PI_XBTUSD",
            "1616492376594",
            "/api/v3/sendorder"
        ),
        "Txi+gJVXe3EN1brXYQ46FuV6UVtEVSKhc6dYMhPb7a/HXZLGvO6m9UUg+KVKqhLxrbllOPI7qRkHYmPfJZZSGA=="
    );
}

#[test]
fn descriptor_is_honest() {
    let d = find_venue("kraken").unwrap();
    assert!(d.has_testnet);
    assert!(!d.needs_passphrase);
    assert!(!d.trades_in_contracts);
    assert!(d.notes.contains("PF_"));
}

#[test]
fn bad_secret_is_a_config_error_without_the_secret() {
    let p = VenueParams {
        credentials: Some(Credentials {
            api_key: SecretString::from(API_KEY),
            api_secret: SecretString::from("this is not base64!!"),
            passphrase: None,
        }),
        ..VenueParams::default()
    };
    let err = build_exchange("kraken", &p).unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(!err.to_string().contains("this is not base64"));
}

#[tokio::test]
async fn credentials_are_required_for_private_endpoints() {
    let server = with_instruments().await;
    let p = VenueParams {
        credentials: None,
        ..params(&server)
    };
    let ex = build_exchange("kraken", &p).unwrap();
    assert_eq!(ex.balance("USD").await.unwrap_err().kind(), "config");
    assert!(requests_to(&server, ACCOUNTS).await.is_empty());
}

#[tokio::test]
async fn debug_output_hides_credentials() {
    let server = MockServer::start().await;
    let ex = kraken(&server);
    let dbg = format!("{ex:?}");
    assert!(!dbg.contains(API_KEY) && !dbg.contains("AAECAw"), "{dbg}");
}

#[tokio::test]
async fn server_time_comes_from_a_public_ticker() {
    let server = MockServer::start().await;
    let p = "/derivatives/api/v3/tickers/PF_XBTUSD";
    mount(&server, "GET", p, ok(fixture("ticker.json"))).await;
    let t = kraken(&server).server_time().await.unwrap();
    assert_eq!(t, time("2022-06-17T11:00:31.335Z"));
    let r = &requests_to(&server, p).await[0];
    assert_eq!(r.method.as_str(), "GET");
    assert!(header(r, "APIKey").is_none() && header(r, "Authent").is_none());
}

#[tokio::test]
async fn klines_ask_in_seconds_and_mark_the_forming_candle() {
    let server = with_instruments().await;
    let p = "/api/charts/v1/trade/PF_XBTUSD/1m";
    mount(&server, "GET", p, ok(fixture("klines.json"))).await;
    // The fixture's candle opens at 1645198500 s; 30 s later it is still forming.
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp(1_645_198_530, 0).unwrap(),
    ));
    let ex = build_exchange(
        "kraken",
        &VenueParams {
            clock: clock.clone(),
            ..params(&server)
        },
    )
    .unwrap();
    let c = ex.klines(&btc(), Timeframe::M1, None, 2).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].open_time,
        DateTime::from_timestamp_millis(1_645_198_500_000).unwrap()
    );
    assert_eq!(
        (c[0].open, c[0].high, c[0].low, c[0].close, c[0].volume),
        (
            dec!(309.15),
            dec!(309.15),
            dec!(308.70),
            dec!(308.85),
            dec!(0)
        )
    );
    assert!(!c[0].closed);
    let reqs = requests_to(&server, p).await;
    assert_eq!(reqs[0].url.query(), Some("from=1645198410&to=1645198530"));
    assert!(header(&reqs[0], "APIKey").is_none());

    clock.set(DateTime::from_timestamp(1_645_198_560, 0).unwrap());
    let since = DateTime::from_timestamp(1_645_198_500, 0).unwrap();
    let c = ex
        .klines(&btc(), Timeframe::M1, Some(since), 3)
        .await
        .unwrap();
    assert!(c[0].closed, "a candle whose minute has passed is closed");
    let reqs = requests_to(&server, p).await;
    assert_eq!(reqs[1].url.query(), Some("from=1645198500&to=1645198680"));
}

#[tokio::test]
async fn klines_are_sorted_deduplicated_and_trimmed() {
    let server = with_instruments().await;
    let p = "/api/charts/v1/trade/PF_XBTUSD/1h";
    let candle = |t: i64, close: &str| {
        format!(
            r#"{{"time":{t},"open":"100.0","high":"110.0","low":"90.0","close":"{close}","volume":12.5}}"#
        )
    };
    let h = 3_600_000;
    let body = format!(
        r#"{{"candles":[{},{},{},{}],"more_candles":false}}"#,
        candle(3 * h, "103"),
        candle(h, "101"),
        candle(2 * h, "102"),
        candle(2 * h, "102"),
    );
    mount(&server, "GET", p, ok(body)).await;
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp_millis(3 * h + 60_000).unwrap(),
    ));
    let ex = build_exchange(
        "kraken",
        &VenueParams {
            clock,
            ..params(&server)
        },
    )
    .unwrap();
    let c = ex.klines(&btc(), Timeframe::H1, None, 2).await.unwrap();
    let closes: Vec<Decimal> = c.iter().map(|c| c.close).collect();
    assert_eq!(closes, vec![dec!(102), dec!(103)]);
    assert_eq!(
        c.iter().map(|c| c.closed).collect::<Vec<_>>(),
        vec![true, false]
    );
    assert_eq!(
        ex.klines(&btc(), Timeframe::H2, None, 2)
            .await
            .unwrap_err()
            .kind(),
        "unsupported"
    );
}

#[tokio::test]
async fn ticker_and_instrument() {
    let server = with_instruments().await;
    mount(
        &server,
        "GET",
        "/derivatives/api/v3/tickers/PF_XBTUSD",
        ok(fixture("ticker.json")),
    )
    .await;
    let ex = kraken(&server);
    let t = ex.ticker(&btc()).await.unwrap();
    assert_eq!(t.symbol, btc());
    assert_eq!(
        (t.last, t.bid, t.ask, t.mark),
        (
            dec!(49289),
            Some(dec!(8634)),
            Some(dec!(49289)),
            Some(dec!(30209.9))
        )
    );
    let i = ex.instrument(&btc()).await.unwrap();
    assert_eq!(i.venue_symbol, "PF_XBTUSD");
    assert_eq!(
        (
            i.tick_size,
            i.step_size,
            i.min_quantity,
            i.contract_size,
            i.max_leverage
        ),
        (dec!(1), dec!(0.0001), dec!(0.0001), dec!(1), dec!(50))
    );
    // The instruments list is fetched once and cached.
    assert_eq!(requests_to(&server, INSTRUMENTS).await.len(), 1);
}

#[tokio::test]
async fn unknown_symbols_are_typed() {
    let server = with_instruments().await;
    let ex = kraken(&server);
    let doge: Symbol = "DOGE/USD:USD".parse().unwrap();
    assert_eq!(
        ex.instrument(&doge).await.unwrap_err().kind(),
        "unknown_symbol"
    );
    assert_eq!(ex.ticker(&doge).await.unwrap_err().kind(), "unknown_symbol");
    assert_eq!(
        requests_to(&server, INSTRUMENTS).await.len(),
        1,
        "a fresh list is not downloaded again for every unknown symbol"
    );
    let usdt: Symbol = "BTC/USDT:USDT".parse().unwrap();
    assert_eq!(ex.ticker(&usdt).await.unwrap_err().kind(), "unknown_symbol");
}

#[tokio::test]
async fn http_500_with_an_order_error_is_that_error() {
    // Kraken has answered margin rejections as HTTP 500 with an `errors` list (ccxt#19896).
    let server = with_instruments().await;
    let body = r#"{"errors":[{"code":92,"message":"INSUFFICIENT_MARGIN"}]}"#;
    mount(
        &server,
        "POST",
        SENDORDER,
        ResponseTemplate::new(500).set_body_string(body),
    )
    .await;
    let err = kraken(&server)
        .place_order(&order_request("im1", OrderType::Limit))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::InsufficientMargin { .. }),
        "{err:?}"
    );
    assert_eq!(requests_to(&server, SENDORDER).await.len(), 1);
}

#[tokio::test]
async fn balance_reads_the_flex_account() {
    let server = MockServer::start().await;
    mount(&server, "GET", ACCOUNTS, ok(fixture("balance.json"))).await;
    let ex = kraken(&server);
    let b = ex.balance("USD").await.unwrap();
    assert_eq!(
        (b.asset.as_str(), b.equity, b.available, b.unrealized_pnl),
        ("USD", dec!(34995.52), dec!(34122.66), dec!(0))
    );
    let r = assert_signed(&server, "GET", ACCOUNTS, "").await;
    assert!(r.body.is_empty());
    let btc_holding = ex.balance("BTC").await.unwrap();
    assert_eq!(btc_holding.equity, dec!(0.1185308247));
}

#[tokio::test]
async fn positions_keep_pf_markets_and_price_them_at_mark() {
    let server = MockServer::start().await;
    let p = "/derivatives/api/v3/openpositions";
    mount(&server, "GET", p, ok(fixture("positions.json"))).await;
    let mut tickers: serde_json::Value = serde_json::from_str(&fixture("tickers.json")).unwrap();
    tickers["tickers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"symbol": "PF_DEFIUSD", "markPrice": 600.0, "last": 601.0}));
    mount(
        &server,
        "GET",
        "/derivatives/api/v3/tickers",
        ok(tickers.to_string()),
    )
    .await;
    let ex = kraken(&server);
    let ps = ex.positions(None).await.unwrap();
    assert_eq!(ps.len(), 1, "PI_ and FI_ positions are not PF_ perpetuals");
    let p0 = &ps[0];
    assert_eq!(p0.symbol.to_string(), "DEFI/USD:USD");
    assert_eq!(p0.side, PositionSide::Long);
    assert_eq!((p0.quantity, p0.entry_price), (dec!(1), dec!(570)));
    assert_eq!(
        (p0.mark_price, p0.unrealized_pnl),
        (Some(dec!(600)), dec!(30))
    );
    assert_eq!(p0.leverage, Some(dec!(5)));
    assert_signed(&server, "GET", p, "").await;
}

#[tokio::test]
async fn set_leverage_puts_the_max_leverage_preference() {
    let server = with_instruments().await;
    let p = "/derivatives/api/v3/leveragepreferences";
    mount(&server, "PUT", p, ok(fixture("success.json"))).await;
    let ex = kraken(&server);
    ex.set_leverage(&btc(), 5).await.unwrap();
    assert_signed(&server, "PUT", p, "symbol=PF_XBTUSD&maxLeverage=5").await;
    assert_eq!(
        ex.set_leverage(&btc(), 51).await.unwrap_err().kind(),
        "invalid_order"
    );
    assert_eq!(requests_to(&server, p).await.len(), 1, "refused locally");
}

#[tokio::test]
async fn place_limit_order() {
    let server = with_instruments().await;
    mount(&server, "POST", SENDORDER, ok(fixture("place_order.json"))).await;
    let o = kraken(&server)
        .place_order(&order_request("myoid0001", OrderType::Limit))
        .await
        .unwrap();
    assert_eq!(o.exchange_order_id, "179f9af8-e45e-469d-b3e9-2fd4675cb7d0");
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(o.client_order_id.unwrap().as_str(), "myoid0001");
    assert_eq!((o.quantity, o.price), (dec!(0.0001), Some(dec!(50000))));
    assert_eq!(o.created_at, Some(time("2019-09-05T16:33:50.734Z")));
    let r = assert_signed(
        &server,
        "POST",
        SENDORDER,
        "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=0.0001&limitPrice=50000&cliOrdId=myoid0001",
    )
    .await;
    assert_eq!(
        header(&r, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn place_conditional_and_market_orders() {
    let server = with_instruments().await;
    mount(&server, "POST", SENDORDER, ok(fixture("place_order.json"))).await;
    let ex = kraken(&server);
    let mut stop = order_request("stop1", OrderType::StopMarket);
    stop.side = Side::Sell;
    stop.reduce_only = true;
    let o = ex.place_order(&stop).await.unwrap();
    assert_eq!(
        (o.order_type, o.trigger_price, o.price),
        (OrderType::StopMarket, Some(dec!(48000)), None)
    );
    let mut tp = order_request("tp1", OrderType::TakeProfitMarket);
    tp.trigger_price = Some(dec!(52000));
    ex.place_order(&tp).await.unwrap();
    ex.place_order(&order_request("mkt1", OrderType::Market))
        .await
        .unwrap();
    let queries: Vec<String> = requests_to(&server, SENDORDER)
        .await
        .iter()
        .map(|r| r.url.query().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        queries,
        vec![
            "orderType=stp&symbol=PF_XBTUSD&side=sell&size=0.0001&stopPrice=48000&triggerSignal=mark&reduceOnly=true&cliOrdId=stop1",
            "orderType=take_profit&symbol=PF_XBTUSD&side=buy&size=0.0001&stopPrice=52000&triggerSignal=mark&cliOrdId=tp1",
            "orderType=mkt&symbol=PF_XBTUSD&side=buy&size=0.0001&cliOrdId=mkt1",
        ]
    );
}

#[tokio::test]
async fn executed_order_reports_fills() {
    let server = with_instruments().await;
    mount(
        &server,
        "POST",
        SENDORDER,
        ok(fixture("place_order_executed.json")),
    )
    .await;
    let mut req = order_request("fill1", OrderType::Limit);
    req.quantity = dec!(10);
    let o = kraken(&server).place_order(&req).await.unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(
        (o.filled_quantity, o.average_price),
        (dec!(10), Some(dec!(7244.5)))
    );
}

async fn place_rejected(fixture_name: &str) -> ExchangeError {
    let server = with_instruments().await;
    mount(&server, "POST", SENDORDER, ok(fixture(fixture_name))).await;
    let err = kraken(&server)
        .place_order(&order_request("rej1", OrderType::Limit))
        .await
        .unwrap_err();
    assert_eq!(
        requests_to(&server, SENDORDER).await.len(),
        1,
        "{fixture_name}"
    );
    err
}

#[tokio::test]
async fn success_envelope_with_insufficient_funds_is_insufficient_margin() {
    let err = place_rejected("place_order_insufficient_funds.json").await;
    assert!(
        matches!(err, ExchangeError::InsufficientMargin { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn success_envelope_with_duplicate_client_id_is_typed() {
    let err = place_rejected("place_order_duplicate_cliordid.json").await;
    assert!(
        matches!(err, ExchangeError::DuplicateClientOrderId { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn success_envelope_with_ioc_rejection_is_invalid_order() {
    let err = place_rejected("place_order_rejected_ioc.json").await;
    assert!(matches!(err, ExchangeError::InvalidOrder { .. }), "{err:?}");
    assert!(err.to_string().contains("iocWouldNotExecute"), "{err}");
}

#[tokio::test]
async fn cancel_order_by_client_id() {
    let server = with_instruments().await;
    let p = "/derivatives/api/v3/cancelorder";
    mount(&server, "POST", p, ok(fixture("cancel_order.json"))).await;
    let cli = ClientOrderId::new("1234568").unwrap();
    kraken(&server).cancel_order(&btc(), &cli).await.unwrap();
    assert_signed(&server, "POST", p, "cliOrdId=1234568").await;
}

#[tokio::test]
async fn cancel_of_unknown_order_is_order_not_found() {
    let server = with_instruments().await;
    let p = "/derivatives/api/v3/cancelorder";
    mount(
        &server,
        "POST",
        p,
        ok(fixture("cancel_order_not_found.json")),
    )
    .await;
    let cli = ClientOrderId::new("gone1").unwrap();
    let err = kraken(&server)
        .cancel_order(&btc(), &cli)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::OrderNotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn cancel_all_counts_cancelled_orders() {
    let server = with_instruments().await;
    let p = "/derivatives/api/v3/cancelallorders";
    mount(&server, "POST", p, ok(fixture("cancel_all_orders.json"))).await;
    assert_eq!(kraken(&server).cancel_all(&btc()).await.unwrap(), 3);
    assert_signed(&server, "POST", p, "symbol=PF_XBTUSD").await;
}

#[tokio::test]
async fn open_orders_of_one_symbol() {
    let server = with_instruments().await;
    let p = "/derivatives/api/v3/openorders";
    // The official example lists PI_XBTUSD orders; make two of them PF_XBTUSD ones.
    let mut body: serde_json::Value = serde_json::from_str(&fixture("open_orders.json")).unwrap();
    let orders = body["openOrders"].as_array_mut().unwrap();
    orders[0]["symbol"] = "PF_XBTUSD".into();
    orders[0]["cliOrdId"] = "tf77exit".into();
    orders[0]["unfilledSize"] = 0.0304.into();
    orders[1]["symbol"] = "pf_xbtusd".into();
    orders[1]["orderType"] = "stp".into();
    orders[1]["stopPrice"] = 7100.into();
    orders[1]["status"] = "partiallyFilled".into();
    orders[1]["filledSize"] = 0.5.into();
    mount(&server, "GET", p, ok(body.to_string())).await;
    let os = kraken(&server).open_orders(&btc()).await.unwrap();
    assert_eq!(os.len(), 2);
    let a = &os[0];
    assert_eq!(a.exchange_order_id, "59302619-41d2-4f0b-941f-7e7914760ad3");
    assert_eq!(a.client_order_id.as_ref().unwrap().as_str(), "tf77exit");
    assert_eq!(
        (a.side, a.order_type, a.status),
        (Side::Sell, OrderType::Limit, OrderStatus::Open)
    );
    assert_eq!(
        (a.quantity, a.price, a.reduce_only),
        (dec!(0.0304), Some(dec!(10640)), true)
    );
    let b = &os[1];
    assert_eq!(
        (b.order_type, b.status),
        (OrderType::StopMarket, OrderStatus::PartiallyFilled)
    );
    assert_eq!(
        (b.trigger_price, b.filled_quantity, b.quantity),
        (Some(dec!(7100)), dec!(0.5), dec!(1501.5))
    );
    assert_signed(&server, "GET", p, "").await;
}

#[tokio::test]
async fn order_lookup_uses_order_status_first() {
    let server = with_instruments().await;
    mount(
        &server,
        "POST",
        ORDER_STATUS,
        ok(fixture("orders_status.json")),
    )
    .await;
    let cli = ClientOrderId::new("tf0001entry").unwrap();
    let o = kraken(&server)
        .order_by_client_id(&btc(), &cli)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.exchange_order_id, "2ce038ae-c144-4de7-a0f1-82f7f4fca864");
    assert_eq!(
        (o.status, o.order_type),
        (OrderStatus::PartiallyFilled, OrderType::Limit)
    );
    assert_eq!(
        (o.quantity, o.filled_quantity, o.price),
        (dec!(0.0025), dec!(0.001), Some(dec!(61250)))
    );
    assert_signed(&server, "POST", ORDER_STATUS, "cliOrdIds=tf0001entry").await;
    assert!(
        requests_to(&server, HISTORY).await.is_empty(),
        "no history needed"
    );
}

#[tokio::test]
async fn trigger_order_lookup_tells_stop_from_take_profit() {
    let server = with_instruments().await;
    mount(
        &server,
        "POST",
        ORDER_STATUS,
        ok(fixture("orders_status_trigger.json")),
    )
    .await;
    let cli = ClientOrderId::new("tf0001stop").unwrap();
    let o = kraken(&server)
        .order_by_client_id(&btc(), &cli)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.order_type, o.status),
        (OrderType::StopMarket, OrderStatus::Open)
    );
    assert_eq!(
        (o.trigger_price, o.side, o.reduce_only),
        (Some(dec!(59000)), Side::Sell, true)
    );
}

#[tokio::test]
async fn order_lookup_falls_back_to_history() {
    let server = with_instruments().await;
    mount(
        &server,
        "POST",
        ORDER_STATUS,
        ok(fixture("orders_status_empty.json")),
    )
    .await;
    mount(&server, "GET", HISTORY, ok(fixture("history_orders.json"))).await;
    let cli = ClientOrderId::new("tf0042entry").unwrap();
    let o = kraken(&server)
        .order_by_client_id(&btc(), &cli)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.exchange_order_id, "7d0c6f0e-5b8e-4c8a-9f0e-3e2b1a0c9d11");
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!((o.quantity, o.filled_quantity), (dec!(0.004), dec!(0.004)));
    assert_signed(&server, "POST", ORDER_STATUS, "cliOrdIds=tf0042entry").await;
    // History paths are signed whole (no /derivatives prefix to strip).
    assert_signed(
        &server,
        "GET",
        HISTORY,
        "tradeable=PF_XBTUSD&sort=desc&count=500",
    )
    .await;
}

#[tokio::test]
async fn unknown_order_is_none() {
    let server = with_instruments().await;
    mount(
        &server,
        "POST",
        ORDER_STATUS,
        ok(fixture("orders_status_empty.json")),
    )
    .await;
    mount(
        &server,
        "GET",
        HISTORY,
        ok(fixture("history_orders_empty.json")),
    )
    .await;
    mount(
        &server,
        "GET",
        TRIGGERS,
        ok(fixture("history_triggers_empty.json")),
    )
    .await;
    let cli = ClientOrderId::new("never1").unwrap();
    assert!(
        kraken(&server)
            .order_by_client_id(&btc(), &cli)
            .await
            .unwrap()
            .is_none()
    );
    assert_signed(
        &server,
        "GET",
        HISTORY,
        "tradeable=PF_XBTUSD&sort=desc&count=500",
    )
    .await;
    assert_signed(
        &server,
        "GET",
        TRIGGERS,
        "tradeable=PF_XBTUSD&sort=desc&count=500",
    )
    .await;
}

#[tokio::test]
async fn stop_order_lookup_falls_back_to_trigger_history() {
    let server = with_instruments().await;
    mount(
        &server,
        "POST",
        ORDER_STATUS,
        ok(fixture("orders_status_empty.json")),
    )
    .await;
    // The order history knows other client ids only.
    mount(&server, "GET", HISTORY, ok(fixture("history_orders.json"))).await;
    mount(
        &server,
        "GET",
        TRIGGERS,
        ok(fixture("history_triggers.json")),
    )
    .await;
    let cli = ClientOrderId::new("tf0042stop").unwrap();
    let o = kraken(&server)
        .order_by_client_id(&btc(), &cli)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.exchange_order_id, "b7a6c5d4-e3f2-4a1b-8c9d-0e1f2a3b4c55");
    assert_eq!(
        (o.order_type, o.status),
        (OrderType::StopMarket, OrderStatus::Triggered)
    );
    assert_eq!(
        (o.side, o.quantity, o.trigger_price),
        (Side::Sell, dec!(0.004), Some(dec!(59000)))
    );
    assert_signed(
        &server,
        "GET",
        TRIGGERS,
        "tradeable=PF_XBTUSD&sort=desc&count=500",
    )
    .await;
}

#[tokio::test]
async fn connectivity_check_reports_what_it_cannot_know() {
    let server = MockServer::start().await;
    mount(&server, "GET", ACCOUNTS, ok(fixture("balance.json"))).await;
    let check = kraken(&server).test_connectivity().await.unwrap();
    assert_eq!((check.can_trade, check.can_withdraw), (None, None));
    assert!(
        check.notes.iter().any(|n| n.contains("permissions")),
        "{:?}",
        check.notes
    );
    assert_signed(&server, "GET", ACCOUNTS, "").await;
}

#[tokio::test]
async fn rate_limit_is_typed() {
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        "/derivatives/api/v3/openpositions",
        ok(fixture("error_api_limit_exceeded.json")),
    )
    .await;
    let p = VenueParams {
        http: HttpSettings {
            max_retries: 0,
            ..fast_http()
        },
        ..params(&server)
    };
    let err = build_exchange("kraken", &p)
        .unwrap()
        .positions(None)
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn authentication_error_is_auth() {
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        ACCOUNTS,
        ResponseTemplate::new(401).set_body_string(fixture("error_authentication.json")),
    )
    .await;
    let err = kraken(&server).balance("USD").await.unwrap_err();
    assert!(matches!(err, ExchangeError::Auth { .. }), "{err:?}");
    assert_eq!(
        requests_to(&server, ACCOUNTS).await.len(),
        1,
        "auth errors are not retried"
    );
}

#[tokio::test]
async fn nonce_rejection_is_re_signed_and_retried_even_for_orders() {
    let server = with_instruments().await;
    mount_once(
        &server,
        "POST",
        SENDORDER,
        ok(fixture("error_nonce_below_threshold.json")),
    )
    .await;
    mount(&server, "POST", SENDORDER, ok(fixture("place_order.json"))).await;
    let o = kraken(&server)
        .place_order(&order_request("nonce1", OrderType::Limit))
        .await
        .unwrap();
    assert_eq!(o.exchange_order_id, "179f9af8-e45e-469d-b3e9-2fd4675cb7d0");
    let reqs = requests_to(&server, SENDORDER).await;
    assert_eq!(reqs.len(), 2);
    let nonces: Vec<u64> = reqs
        .iter()
        .map(|r| header(r, "Nonce").unwrap().parse().unwrap())
        .collect();
    assert!(nonces[1] > nonces[0], "{nonces:?}");
    for r in &reqs {
        let q = r.url.query().unwrap_or("");
        let n = header(r, "Nonce").unwrap();
        assert_eq!(
            header(r, "Authent"),
            Some(expected_authent(SECRET, q, n, "/api/v3/sendorder").as_str())
        );
    }
}

#[tokio::test]
async fn server_error_on_a_read_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    mount_once(
        &server,
        "GET",
        ACCOUNTS,
        ResponseTemplate::new(503).set_body_string("Service Unavailable"),
    )
    .await;
    mount(&server, "GET", ACCOUNTS, ok(fixture("balance.json"))).await;
    let b = kraken(&server).balance("USD").await.unwrap();
    assert_eq!(b.equity, dec!(34995.52));
    assert_eq!(requests_to(&server, ACCOUNTS).await.len(), 2);
}

#[tokio::test]
async fn server_error_on_a_write_is_outcome_unknown_and_not_repeated() {
    let server = with_instruments().await;
    mount(
        &server,
        "POST",
        SENDORDER,
        ResponseTemplate::new(502).set_body_string("Bad Gateway"),
    )
    .await;
    let err = kraken(&server)
        .place_order(&order_request("gw1", OrderType::Limit))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert_eq!(requests_to(&server, SENDORDER).await.len(), 1);
}

#[tokio::test]
async fn market_unavailable_is_unavailable() {
    let server = MockServer::start().await;
    let body =
        r#"{"result":"error","serverTime":"2024-03-04T11:03:00.000Z","error":"marketUnavailable"}"#;
    mount(&server, "GET", "/derivatives/api/v3/openorders", ok(body)).await;
    mount(&server, "GET", INSTRUMENTS, ok(fixture("instruments.json"))).await;
    let p = VenueParams {
        http: HttpSettings {
            max_retries: 0,
            ..fast_http()
        },
        ..params(&server)
    };
    let err = build_exchange("kraken", &p)
        .unwrap()
        .open_orders(&btc())
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::Unavailable { .. }), "{err:?}");
}

/// Every operation with its endpoint and a fixture it normally accepts.
const ENDPOINTS: &[(&str, &str, &str, &str)] = &[
    ("instrument", "GET", INSTRUMENTS, "instruments.json"),
    (
        "server_time",
        "GET",
        "/derivatives/api/v3/tickers/PF_XBTUSD",
        "ticker.json",
    ),
    (
        "ticker",
        "GET",
        "/derivatives/api/v3/tickers/PF_XBTUSD",
        "ticker.json",
    ),
    (
        "klines",
        "GET",
        "/api/charts/v1/trade/PF_XBTUSD/1m",
        "klines.json",
    ),
    ("balance", "GET", ACCOUNTS, "balance.json"),
    (
        "positions",
        "GET",
        "/derivatives/api/v3/openpositions",
        "positions.json",
    ),
    (
        "positions_tickers",
        "GET",
        "/derivatives/api/v3/tickers",
        "tickers.json",
    ),
    (
        "set_leverage",
        "PUT",
        "/derivatives/api/v3/leveragepreferences",
        "success.json",
    ),
    ("place_order", "POST", SENDORDER, "place_order.json"),
    (
        "cancel_order",
        "POST",
        "/derivatives/api/v3/cancelorder",
        "cancel_order.json",
    ),
    (
        "cancel_all",
        "POST",
        "/derivatives/api/v3/cancelallorders",
        "cancel_all_orders.json",
    ),
    (
        "open_orders",
        "GET",
        "/derivatives/api/v3/openorders",
        "open_orders.json",
    ),
    ("order_status", "POST", ORDER_STATUS, "orders_status.json"),
    ("history", "GET", HISTORY, "history_orders.json"),
    ("trigger_history", "GET", TRIGGERS, "history_triggers.json"),
    ("connectivity", "GET", ACCOUNTS, "balance.json"),
];

async fn run(op: &str, ex: &dyn Exchange) -> Result<(), ExchangeError> {
    let cli = ClientOrderId::new("tf0042entry").unwrap();
    match op {
        "instrument" => ex.instrument(&btc()).await.map(|_| ()),
        "server_time" => ex.server_time().await.map(|_| ()),
        "ticker" => ex.ticker(&btc()).await.map(|_| ()),
        "klines" => ex.klines(&btc(), Timeframe::M1, None, 5).await.map(|_| ()),
        "balance" => ex.balance("USD").await.map(|_| ()),
        "positions" | "positions_tickers" => ex.positions(None).await.map(|_| ()),
        "set_leverage" => ex.set_leverage(&btc(), 5).await,
        "place_order" => ex
            .place_order(&order_request("mal1", OrderType::Limit))
            .await
            .map(|_| ()),
        "cancel_order" => ex.cancel_order(&btc(), &cli).await,
        "cancel_all" => ex.cancel_all(&btc()).await.map(|_| ()),
        "open_orders" => ex.open_orders(&btc()).await.map(|_| ()),
        "order_status" | "history" => ex.order_by_client_id(&btc(), &cli).await.map(|_| ()),
        "trigger_history" => {
            let stop = ClientOrderId::new("tf0042stop").unwrap();
            ex.order_by_client_id(&btc(), &stop).await.map(|_| ())
        }
        "connectivity" => ex.test_connectivity().await.map(|_| ()),
        other => panic!("unknown op {other}"),
    }
}

#[tokio::test]
async fn malformed_or_truncated_answers_from_every_endpoint_are_errors() {
    for (op, verb, p, name) in ENDPOINTS {
        let good = fixture(name);
        let good = good.trim_end();
        for body in [
            good[..good.len() / 2].to_string(),
            good[..good.len() - 1].to_string(),
            "<html>502 Bad Gateway</html>".to_string(),
            r#"{"result":"success","serverTime":"2024-01-01T00:00:00Z"}"#.to_string(),
        ] {
            let server = MockServer::start().await;
            // Every other endpoint answers correctly, so only `p` is broken.
            for (_, v2, p2, n2) in ENDPOINTS {
                if p2 != p {
                    mount(&server, v2, p2, ok(fixture(n2))).await;
                }
            }
            if *p == HISTORY || *p == TRIGGERS {
                // orders/status must not know the order, or history is never asked.
                Mock::given(method("POST"))
                    .and(path(ORDER_STATUS))
                    .respond_with(ok(fixture("orders_status_empty.json")))
                    .with_priority(1)
                    .mount(&server)
                    .await;
            }
            mount(&server, verb, p, ok(body.clone())).await;
            let p_params = VenueParams {
                http: HttpSettings {
                    max_retries: 0,
                    ..fast_http()
                },
                ..params(&server)
            };
            let ex = build_exchange("kraken", &p_params).unwrap();
            let result = run(op, ex.as_ref()).await;
            // A bare success envelope is a valid answer for set_leverage.
            if *op == "set_leverage" && body.starts_with(r#"{"result":"success""#) {
                assert!(result.is_ok(), "{op}: {result:?}");
                continue;
            }
            let err = result.expect_err(&format!("{op} accepted {body:?}"));
            let kind = err.kind();
            if *verb == "POST" && *op != "order_status" && *op != "history" {
                // A write the venue answered unreadably may have happened.
                assert!(
                    kind == "outcome_unknown" || kind == "malformed_response",
                    "{op}: {err:?}"
                );
            } else {
                assert!(
                    kind == "malformed_response" || kind == "venue",
                    "{op}: {err:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn place_once_after_a_timeout_finds_the_order_instead_of_placing_again() {
    let server = with_instruments().await;
    // The venue takes the order but answers after the client has given up.
    mount(
        &server,
        "POST",
        SENDORDER,
        ok(fixture("place_order.json")).set_delay(Duration::from_millis(1_500)),
    )
    .await;
    // Before placing: unknown. After the timeout: orders/status knows it.
    mount_once(
        &server,
        "POST",
        ORDER_STATUS,
        ok(fixture("orders_status_empty.json")),
    )
    .await;
    mount(
        &server,
        "POST",
        ORDER_STATUS,
        ok(fixture("orders_status.json")),
    )
    .await;
    mount(
        &server,
        "GET",
        HISTORY,
        ok(fixture("history_orders_empty.json")),
    )
    .await;
    mount(
        &server,
        "GET",
        TRIGGERS,
        ok(fixture("history_triggers_empty.json")),
    )
    .await;
    let p = VenueParams {
        http: HttpSettings {
            timeout_ms: 300,
            ..fast_http()
        },
        ..params(&server)
    };
    let ex = build_exchange("kraken", &p).unwrap();
    let mut request = order_request("tf0001entry", OrderType::Limit);
    request.quantity = dec!(0.0025);
    request.price = Some(dec!(61250));
    let placement = place_once(
        ex.as_ref(),
        &request,
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
    assert_eq!(
        order.exchange_order_id,
        "2ce038ae-c144-4de7-a0f1-82f7f4fca864"
    );
    assert_eq!(order.client_order_id.unwrap().as_str(), "tf0001entry");
    assert_eq!(
        requests_to(&server, SENDORDER).await.len(),
        1,
        "exactly one POST"
    );
}
