//! Bybit V5 linear harness: a stateful loopback venue over `fixtures/bybit/`. One order endpoint
//! for regular and conditional orders; open orders from `/v5/order/realtime`, finished ones from
//! `/v5/order/history`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::Credentials;
use wiremock::{Mock, Request};

use crate::support::{
    Book, Endpoint, Entry, MockVenue, State, body_of, delayed, fixture_json, ok, ok_fixture,
    params_of,
};

const DIR: &str = "bybit";
/// 30 minutes into the newest 1h candle of `klines.json` (1670608800000).
const NOW_MS: i64 = 1_670_608_800_000 + 1_800_000;

const CREATE: Endpoint = Endpoint::new("POST", "/v5/order/create");
const PLACE: &[Endpoint] = &[CREATE];
const CANCEL_ALL: &[(Endpoint, usize)] = &[(Endpoint::new("POST", "/v5/order/cancel-all"), 1)];

#[derive(Debug)]
pub struct Bybit;

/// An order row of `/v5/order/realtime` and `/v5/order/history`, from `open_orders.json`.
fn row(e: &Entry) -> Value {
    let mut r = fixture_json(DIR, "open_orders.json")["result"]["list"][0].clone();
    r["orderId"] = json!(format!("conformance-{}", e.seq));
    r["orderLinkId"] = json!(e.client_id);
    r["symbol"] = json!(e.field("symbol"));
    r["side"] = json!(e.field("side"));
    r["orderType"] = json!(e.field("orderType"));
    r["qty"] = json!(e.field("qty"));
    r["price"] = json!(if e.field("orderType") == "Limit" {
        e.field("price")
    } else {
        "0".into()
    });
    r["reduceOnly"] = json!(e.flag("reduceOnly"));
    r["closeOnTrigger"] = json!(e.flag("closeOnTrigger"));
    if e.conditional {
        r["stopOrderType"] = json!("Stop");
        r["triggerPrice"] = json!(e.field("triggerPrice"));
        r["triggerDirection"] = e.fields["triggerDirection"].clone();
        r["triggerBy"] = json!(e.field("triggerBy"));
    } else {
        r["stopOrderType"] = json!("");
        r["triggerPrice"] = json!("0.00");
        r["triggerDirection"] = json!(0);
        r["triggerBy"] = json!("");
    }
    let (status, filled, leaves, avg) = match (e.state, e.conditional) {
        (State::Open, true) => ("Untriggered", "0", e.field("qty"), ""),
        (State::Open, false) => ("New", "0", e.field("qty"), ""),
        (State::Filled, _) => ("Filled", "", "0".to_string(), "91234.50"),
        (State::Canceled, true) => ("Deactivated", "0", "0".to_string(), ""),
        (State::Canceled, false) => ("Cancelled", "0", "0".to_string(), ""),
    };
    r["orderStatus"] = json!(status);
    r["cumExecQty"] = json!(if filled.is_empty() {
        e.field("qty")
    } else {
        filled.to_string()
    });
    r["leavesQty"] = json!(leaves);
    r["avgPrice"] = json!(avg);
    r
}

/// The list envelope of the order queries.
fn list(rows: Vec<Value>) -> Value {
    json!({
        "retCode": 0, "retMsg": "OK",
        "result": {"category": "linear", "list": rows, "nextPageCursor": ""},
        "retExtInfo": {}, "time": NOW_MS
    })
}

impl MockVenue for Bybit {
    const NAME: &'static str = "bybit";

    fn new() -> Self {
        Self
    }

    fn symbol(&self) -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            api_key: "conformance-bybit-key".into(),
            api_secret: "conformance-bybit-secret".into(),
            passphrase: None,
        }
    }

    fn now_ms(&self) -> i64 {
        NOW_MS
    }

    fn reference_price(&self) -> Decimal {
        dec!(91234.5)
    }

    fn klines_query(&self) -> (Timeframe, u32) {
        (Timeframe::H1, 3)
    }

    fn place_endpoints(&self) -> &'static [Endpoint] {
        PLACE
    }

    fn leverage_endpoint(&self) -> Endpoint {
        Endpoint::new("POST", "/v5/position/set-leverage")
    }

    fn cancel_all_calls(&self) -> &'static [(Endpoint, usize)] {
        CANCEL_ALL
    }

    fn mocks(&self, book: &Arc<Book>, place_delay: Duration) -> Vec<Mock> {
        let mut time = fixture_json(DIR, "server_time.json");
        time["result"]["timeSecond"] = json!((NOW_MS / 1000).to_string());
        time["result"]["timeNano"] = json!(format!("{NOW_MS}000000"));
        time["time"] = json!(NOW_MS);
        // Bybit answers 110043 "not modified" when the leverage already is the one asked for.
        let leverages: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut out = vec![
            Endpoint::new("GET", "/v5/market/time")
                .route()
                .respond_with(ok(&time)),
            Endpoint::new("GET", "/v5/market/kline")
                .route()
                .respond_with(ok_fixture(DIR, "klines.json")),
            Endpoint::new("GET", "/v5/market/instruments-info")
                .route()
                .respond_with(ok_fixture(DIR, "instruments_linear.json")),
            Endpoint::new("GET", "/v5/account/wallet-balance")
                .route()
                .respond_with(ok_fixture(DIR, "balance_usdt.json")),
            self.leverage_endpoint()
                .route()
                .respond_with(move |r: &Request| {
                    let b = body_of(r);
                    let key = format!("{}/{}/{}", b["symbol"], b["buyLeverage"], b["sellLeverage"]);
                    let fresh = leverages
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key);
                    if fresh {
                        ok_fixture(DIR, "set_leverage.json")
                    } else {
                        ok(&json!({
                            "retCode": 110043, "retMsg": "Set leverage has not been modified.",
                            "result": {}, "retExtInfo": {}, "time": NOW_MS
                        }))
                    }
                }),
        ];
        let b = Arc::clone(book);
        out.push(CREATE.route().respond_with(move |r: &Request| {
            let body = body_of(r);
            let cid = body["orderLinkId"].as_str().unwrap_or_default().to_string();
            let conditional = body.get("triggerPrice").is_some();
            let state = if !conditional && body["orderType"] == "Market" {
                State::Filled
            } else {
                State::Open
            };
            let e = b.place(cid, conditional, state, body);
            let mut a = fixture_json(DIR, "place_order.json");
            a["result"]["orderId"] = json!(format!("conformance-{}", e.seq));
            a["result"]["orderLinkId"] = json!(e.client_id);
            delayed(ok(&a), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/v5/order/realtime")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    let rows = match q.get("orderLinkId").and_then(Value::as_str) {
                        Some(id) => b.open(|e| e.client_id == id),
                        None => b.open(|_| true),
                    };
                    ok(&list(rows.iter().map(row).collect()))
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/v5/order/history")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    let id = q["orderLinkId"].as_str().unwrap_or_default();
                    ok(&list(b.find(id).iter().map(row).collect()))
                }),
        );
        let b = Arc::clone(book);
        out.push(CANCEL_ALL[0].0.route().respond_with(move |_: &Request| {
            let gone: Vec<Value> = b
                .cancel(|_| true)
                .iter()
                .map(|e| {
                    json!({"orderId": format!("conformance-{}", e.seq), "orderLinkId": e.client_id})
                })
                .collect();
            let mut a = fixture_json(DIR, "cancel_all.json");
            a["result"]["list"] = json!(gone);
            ok(&a)
        }));
        out
    }
}
