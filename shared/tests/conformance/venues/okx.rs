//! OKX V5 SWAP harness: a stateful loopback venue over `fixtures/okx/`. Sizes travel in contracts
//! (ctVal 0.01 BTC); regular orders at `/api/v5/trade/order`, conditional ones are algo orders.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::Credentials;
use wiremock::{Mock, Request, ResponseTemplate};

use crate::support::{
    Book, Endpoint, Entry, MockVenue, State, body_of, delayed, fixture_json, ok, ok_fixture,
    params_of,
};

const DIR: &str = "okx";
/// `server_time.json`; the newest candle of `klines_btc_swap.json` (5m from 1763700000000) is
/// still forming then (confirm 0).
const NOW_MS: i64 = 1_763_700_000_123;

const ORDER: Endpoint = Endpoint::new("POST", "/api/v5/trade/order");
const ORDER_ALGO: Endpoint = Endpoint::new("POST", "/api/v5/trade/order-algo");
const PLACE: &[Endpoint] = &[ORDER, ORDER_ALGO];
const CANCEL_BATCH: Endpoint = Endpoint::new("POST", "/api/v5/trade/cancel-batch-orders");
const CANCEL_ALGOS: Endpoint = Endpoint::new("POST", "/api/v5/trade/cancel-algos");
/// The entry is filled, so only the two algo orders are left to cancel (one batch).
const CANCEL_ALL: &[(Endpoint, usize)] = &[(CANCEL_BATCH, 0), (CANCEL_ALGOS, 1)];

#[derive(Debug)]
pub struct Okx;

fn ord_id(e: &Entry) -> String {
    format!("{}", 2_896_576_259_728_000_000u64 + e.seq)
}

/// A regular order (`/trade/order`, `/trade/orders-pending`) from `order_details.json`.
fn regular(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "order_details.json")["data"][0].clone();
    o["ordId"] = json!(ord_id(e));
    o["clOrdId"] = json!(e.client_id);
    o["instId"] = json!(e.field("instId"));
    o["ordType"] = json!(e.field("ordType"));
    o["side"] = json!(e.field("side"));
    o["sz"] = json!(e.field("sz"));
    o["px"] = json!(e.field("px"));
    o["reduceOnly"] = json!(if e.flag("reduceOnly") {
        "true"
    } else {
        "false"
    });
    let (state, filled, avg) = match e.state {
        State::Open => ("live", "0".to_string(), ""),
        State::Filled => ("filled", e.field("sz"), "91234.5"),
        State::Canceled => ("canceled", "0".to_string(), ""),
    };
    o["state"] = json!(state);
    o["accFillSz"] = json!(filled);
    o["fillSz"] = json!(filled);
    o["avgPx"] = json!(avg);
    o["fillPx"] = json!(avg);
    o
}

/// A conditional algo order (`/trade/order-algo`, `/trade/orders-algo-pending`) from
/// `orders_algo_pending.json`.
fn algo(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "orders_algo_pending.json")["data"][0].clone();
    o["algoId"] = json!(ord_id(e));
    o["algoClOrdId"] = json!(e.client_id);
    o["instId"] = json!(e.field("instId"));
    o["ordType"] = json!(e.field("ordType"));
    o["side"] = json!(e.field("side"));
    o["sz"] = json!(e.field("sz"));
    o["reduceOnly"] = json!(if e.flag("reduceOnly") {
        "true"
    } else {
        "false"
    });
    for k in ["slTriggerPx", "slOrdPx", "tpTriggerPx", "tpOrdPx"] {
        o[k] = json!(e.field(k));
    }
    o["slTriggerPxType"] = json!(if e.field("slTriggerPx").is_empty() {
        ""
    } else {
        "last"
    });
    o["tpTriggerPxType"] = json!(if e.field("tpTriggerPx").is_empty() {
        ""
    } else {
        "last"
    });
    o["state"] = json!(match e.state {
        State::Open => "live",
        State::Filled => "effective",
        State::Canceled => "canceled",
    });
    o
}

fn data(rows: Vec<Value>) -> ResponseTemplate {
    ok(&json!({"code": "0", "msg": "", "data": rows}))
}

fn not_exist() -> ResponseTemplate {
    ok(&json!({"code": "51603", "msg": "Order does not exist", "data": []}))
}

/// Cancel the listed ids (`id_field` of each body item) and answer each with sCode 0.
fn cancel_batch(book: &Book, r: &Request, id_field: &str) -> ResponseTemplate {
    let items: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_default();
    let rows = items
        .iter()
        .map(|item| {
            let id = item[id_field].as_str().unwrap_or_default().to_string();
            let gone = book.cancel(|e| ord_id(e) == id);
            let (code, msg) = if gone.is_empty() {
                (
                    "51400",
                    "Order cancellation failed: filled, canceled or unknown",
                )
            } else {
                ("0", "")
            };
            json!({id_field: id, "clOrdId": "", "sCode": code, "sMsg": msg})
        })
        .collect();
    data(rows)
}

impl MockVenue for Okx {
    const NAME: &'static str = "okx";

    fn new() -> Self {
        Self
    }

    fn symbol(&self) -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            api_key: "conformance-okx-key".into(),
            api_secret: "conformance-okx-secret".into(),
            passphrase: Some("conformance-okx-passphrase".into()),
        }
    }

    fn now_ms(&self) -> i64 {
        NOW_MS
    }

    fn reference_price(&self) -> Decimal {
        dec!(91234.5)
    }

    fn klines_query(&self) -> (Timeframe, u32) {
        (Timeframe::M5, 3)
    }

    fn place_endpoints(&self) -> &'static [Endpoint] {
        PLACE
    }

    fn leverage_endpoint(&self) -> Endpoint {
        Endpoint::new("POST", "/api/v5/account/set-leverage")
    }

    fn cancel_all_calls(&self) -> &'static [(Endpoint, usize)] {
        CANCEL_ALL
    }

    fn mocks(&self, book: &Arc<Book>, place_delay: Duration) -> Vec<Mock> {
        let mut out = vec![
            Endpoint::new("GET", "/api/v5/public/time")
                .route()
                .respond_with(ok_fixture(DIR, "server_time.json")),
            Endpoint::new("GET", "/api/v5/market/candles")
                .route()
                .respond_with(ok_fixture(DIR, "klines_btc_swap.json")),
            Endpoint::new("GET", "/api/v5/public/instruments")
                .route()
                .respond_with(ok_fixture(DIR, "instruments_btc_swap.json")),
            Endpoint::new("GET", "/api/v5/account/balance")
                .route()
                .respond_with(ok_fixture(DIR, "balance.json")),
            // The documented answer echoes the leverage; the adapter checks it.
            self.leverage_endpoint()
                .route()
                .respond_with(|r: &Request| {
                    let b = body_of(r);
                    let mut a = fixture_json(DIR, "set_leverage.json");
                    a["data"][0]["lever"] = b["lever"].clone();
                    a["data"][0]["instId"] = b["instId"].clone();
                    ok(&a)
                }),
        ];
        let b = Arc::clone(book);
        out.push(ORDER.route().respond_with(move |r: &Request| {
            let body = body_of(r);
            let cid = body["clOrdId"].as_str().unwrap_or_default().to_string();
            let state = if body["ordType"] == "market" {
                State::Filled
            } else {
                State::Open
            };
            let e = b.place(cid, false, state, body);
            let mut a = fixture_json(DIR, "place_order.json");
            a["data"][0]["clOrdId"] = json!(e.client_id);
            a["data"][0]["ordId"] = json!(ord_id(&e));
            a["data"][0]["tag"] = json!("");
            delayed(ok(&a), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(ORDER_ALGO.route().respond_with(move |r: &Request| {
            let body = body_of(r);
            let cid = body["algoClOrdId"].as_str().unwrap_or_default().to_string();
            let e = b.place(cid, true, State::Open, body);
            let mut a = fixture_json(DIR, "place_algo_order.json");
            a["data"][0]["algoClOrdId"] = json!(e.client_id);
            a["data"][0]["clOrdId"] = json!(e.client_id);
            a["data"][0]["algoId"] = json!(ord_id(&e));
            a["data"][0]["tag"] = json!("");
            delayed(ok(&a), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v5/trade/order")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    match b.find(q["clOrdId"].as_str().unwrap_or_default()) {
                        Some(e) if !e.conditional => data(vec![regular(&e)]),
                        _ => not_exist(),
                    }
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v5/trade/order-algo")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    match b.find(q["algoClOrdId"].as_str().unwrap_or_default()) {
                        Some(e) if e.conditional => data(vec![algo(&e)]),
                        _ => not_exist(),
                    }
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v5/trade/orders-pending")
                .route()
                .respond_with(move |_: &Request| {
                    data(b.open(|e| !e.conditional).iter().map(regular).collect())
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v5/trade/orders-algo-pending")
                .route()
                .respond_with(move |_: &Request| {
                    data(b.open(|e| e.conditional).iter().map(algo).collect())
                }),
        );
        let b = Arc::clone(book);
        out.push(
            CANCEL_BATCH
                .route()
                .respond_with(move |r: &Request| cancel_batch(&b, r, "ordId")),
        );
        let b = Arc::clone(book);
        out.push(
            CANCEL_ALGOS
                .route()
                .respond_with(move |r: &Request| cancel_batch(&b, r, "algoId")),
        );
        out
    }
}
