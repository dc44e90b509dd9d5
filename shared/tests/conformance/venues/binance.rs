//! Binance USDⓈ-M harness: a stateful loopback venue over `fixtures/binance/`. Regular orders
//! live at `/fapi/v1/order`, conditional ones in the Algo Service (`/fapi/v1/algoOrder`).

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::Credentials;
use wiremock::{Mock, Request};

use crate::support::{
    Book, Endpoint, Entry, MockVenue, State, answer, delayed, fixture_json, ok, ok_fixture,
    params_of,
};

const DIR: &str = "binance";
/// Inside the newest candle of `klines.json` (1712738580000..=1712738639999); the time of
/// `server_time.json`.
const NOW_MS: i64 = 1_712_738_600_000;

const ORDER: Endpoint = Endpoint::new("POST", "/fapi/v1/order");
const ALGO_ORDER: Endpoint = Endpoint::new("POST", "/fapi/v1/algoOrder");
const PLACE: &[Endpoint] = &[ORDER, ALGO_ORDER];
const CANCEL_ALL: &[(Endpoint, usize)] = &[
    (Endpoint::new("DELETE", "/fapi/v1/allOpenOrders"), 1),
    (Endpoint::new("DELETE", "/fapi/v1/algoOpenOrders"), 1),
];

#[derive(Debug)]
pub struct Binance;

/// A regular order (GET/POST `/fapi/v1/order`, `openOrders`) from `place_order.json`.
fn regular(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "place_order.json");
    let kind = e.field("type");
    o["orderId"] = json!(e.seq);
    o["symbol"] = json!(e.field("symbol"));
    o["clientOrderId"] = json!(e.client_id);
    o["side"] = json!(e.field("side"));
    o["type"] = json!(kind);
    o["origType"] = json!(kind);
    o["origQty"] = json!(e.field("quantity"));
    o["price"] = json!(if kind == "LIMIT" {
        e.field("price")
    } else {
        "0".into()
    });
    o["reduceOnly"] = json!(e.flag("reduceOnly"));
    let (status, executed, avg) = match e.state {
        State::Open => ("NEW", "0".to_string(), "0".to_string()),
        State::Filled => ("FILLED", e.field("quantity"), "70459.40".to_string()),
        State::Canceled => ("CANCELED", "0".to_string(), "0".to_string()),
    };
    o["status"] = json!(status);
    o["executedQty"] = json!(executed);
    o["cumQty"] = json!(executed);
    o["avgPrice"] = json!(avg);
    o
}

/// A conditional order of the Algo Service from `algo_order.json`.
fn algo(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "algo_order.json");
    o["algoId"] = json!(e.seq);
    o["clientAlgoId"] = json!(e.client_id);
    o["orderType"] = json!(e.field("type"));
    o["symbol"] = json!(e.field("symbol"));
    o["side"] = json!(e.field("side"));
    o["quantity"] = json!(e.field("quantity"));
    o["triggerPrice"] = json!(e.field("triggerPrice"));
    o["price"] = json!("0");
    o["workingType"] = json!(e.field("workingType"));
    o["reduceOnly"] = json!(e.flag("reduceOnly"));
    o["algoStatus"] = json!(match e.state {
        State::Open => "NEW",
        State::Filled => "FINISHED",
        State::Canceled => "CANCELED",
    });
    o
}

fn not_found() -> wiremock::ResponseTemplate {
    answer(400, &json!({"code": -2013, "msg": "Order does not exist."}))
}

impl MockVenue for Binance {
    const NAME: &'static str = "binance";

    fn new() -> Self {
        Self
    }

    fn symbol(&self) -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            api_key: "conformance-binance-key".into(),
            api_secret: "conformance-binance-secret".into(),
            passphrase: None,
        }
    }

    fn now_ms(&self) -> i64 {
        NOW_MS
    }

    fn reference_price(&self) -> Decimal {
        dec!(70459.4)
    }

    fn klines_query(&self) -> (Timeframe, u32) {
        (Timeframe::M1, 3)
    }

    fn place_endpoints(&self) -> &'static [Endpoint] {
        PLACE
    }

    fn leverage_endpoint(&self) -> Endpoint {
        Endpoint::new("POST", "/fapi/v1/leverage")
    }

    fn cancel_all_calls(&self) -> &'static [(Endpoint, usize)] {
        CANCEL_ALL
    }

    fn mocks(&self, book: &Arc<Book>, place_delay: Duration) -> Vec<Mock> {
        let mut time = fixture_json(DIR, "server_time.json");
        time["serverTime"] = json!(NOW_MS);
        let mut out = vec![
            Endpoint::new("GET", "/fapi/v1/time")
                .route()
                .respond_with(ok(&time)),
            Endpoint::new("GET", "/fapi/v1/klines")
                .route()
                .respond_with(ok_fixture(DIR, "klines.json")),
            Endpoint::new("GET", "/fapi/v1/exchangeInfo")
                .route()
                .respond_with(ok_fixture(DIR, "exchange_info.json")),
            Endpoint::new("GET", "/fapi/v1/leverageBracket")
                .route()
                .respond_with(ok_fixture(DIR, "leverage_bracket.json")),
            Endpoint::new("GET", "/fapi/v3/account")
                .route()
                .respond_with(ok_fixture(DIR, "balance_account.json")),
            // The documented answer echoes symbol and leverage; the adapter checks both.
            self.leverage_endpoint()
                .route()
                .respond_with(|r: &Request| {
                    let q = params_of(r);
                    let mut a = fixture_json(DIR, "leverage.json");
                    a["symbol"] = q["symbol"].clone();
                    a["leverage"] =
                        json!(q["leverage"].as_str().and_then(|l| l.parse::<i64>().ok()));
                    ok(&a)
                }),
        ];
        let b = Arc::clone(book);
        out.push(ORDER.route().respond_with(move |r: &Request| {
            let q = params_of(r);
            let cid = q["newClientOrderId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let state = if q["type"] == "MARKET" {
                State::Filled
            } else {
                State::Open
            };
            let e = b.place(cid, false, state, q);
            delayed(ok(&regular(&e)), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(ALGO_ORDER.route().respond_with(move |r: &Request| {
            let q = params_of(r);
            let cid = q["clientAlgoId"].as_str().unwrap_or_default().to_string();
            let e = b.place(cid, true, State::Open, q);
            delayed(ok(&algo(&e)), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(Endpoint::new("GET", "/fapi/v1/order").route().respond_with(
            move |r: &Request| {
                let q = params_of(r);
                match b.find(q["origClientOrderId"].as_str().unwrap_or_default()) {
                    Some(e) if !e.conditional => ok(&regular(&e)),
                    _ => not_found(),
                }
            },
        ));
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/fapi/v1/algoOrder")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    match b.find(q["clientAlgoId"].as_str().unwrap_or_default()) {
                        Some(e) if e.conditional => ok(&algo(&e)),
                        _ => not_found(),
                    }
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/fapi/v1/openOrders")
                .route()
                .respond_with(move |_: &Request| {
                    let list: Vec<Value> = b.open(|e| !e.conditional).iter().map(regular).collect();
                    ok(&json!(list))
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/fapi/v1/openAlgoOrders")
                .route()
                .respond_with(move |_: &Request| {
                    let list: Vec<Value> = b.open(|e| e.conditional).iter().map(algo).collect();
                    ok(&json!(list))
                }),
        );
        let b = Arc::clone(book);
        out.push(CANCEL_ALL[0].0.route().respond_with(move |_: &Request| {
            b.cancel(|e| !e.conditional);
            ok_fixture(DIR, "cancel_all.json")
        }));
        let b = Arc::clone(book);
        out.push(CANCEL_ALL[1].0.route().respond_with(move |_: &Request| {
            b.cancel(|e| e.conditional);
            ok_fixture(DIR, "cancel_all.json")
        }));
        out
    }
}
