//! Kraken Futures harness: a stateful loopback venue over `fixtures/kraken/` (and the constructed
//! `fixtures/conformance/kraken/klines.json`). USD-margined `PF_XBTUSD` = `BTC/USD:USD`; orders
//! are looked up through `orders/status`, then the (here empty) order and trigger histories.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::Credentials;
use wiremock::{Mock, Request};

use crate::support::{
    Book, Endpoint, Entry, MockVenue, State, delayed, fixture_json, ok, ok_fixture, params_of,
};

const DIR: &str = "kraken";
/// 30 s into the newest 1m candle of the constructed `conformance/kraken/klines.json`.
const NOW_MS: i64 = 1_645_198_530_000;

const SENDORDER: Endpoint = Endpoint::new("POST", "/derivatives/api/v3/sendorder");
const PLACE: &[Endpoint] = &[SENDORDER];
const CANCEL_ALL: &[(Endpoint, usize)] = &[(
    Endpoint::new("POST", "/derivatives/api/v3/cancelallorders"),
    1,
)];

/// Base64 of the bytes 0..=63: Kraken secrets are base64.
const SECRET: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

#[derive(Debug)]
pub struct Kraken;

fn order_id(e: &Entry) -> String {
    format!("00000000-0000-4000-8000-{:012}", e.seq)
}

fn now_text() -> String {
    DateTime::from_timestamp_millis(NOW_MS)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An `openorders` element from `open_orders.json`.
fn open_order(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "open_orders.json")["openOrders"][0].clone();
    o["order_id"] = json!(order_id(e));
    o["cliOrdId"] = json!(e.client_id);
    o["symbol"] = json!(e.field("symbol"));
    o["side"] = json!(e.field("side"));
    o["orderType"] = json!(e.field("orderType"));
    o["limitPrice"] = if e.field("limitPrice").is_empty() {
        Value::Null
    } else {
        json!(e.field("limitPrice"))
    };
    if e.conditional {
        o["stopPrice"] = json!(e.field("stopPrice"));
    }
    o["unfilledSize"] = json!(e.field("size"));
    o["filledSize"] = json!(0);
    o["reduceOnly"] = json!(e.flag("reduceOnly"));
    o["status"] = json!("untouched");
    o
}

/// An `orders/status` element, from `orders_status.json` or `orders_status_trigger.json`.
fn status_order(e: &Entry) -> Value {
    let template = if e.conditional {
        "orders_status_trigger.json"
    } else {
        "orders_status.json"
    };
    let mut w = fixture_json(DIR, template)["orders"][0].clone();
    let o = &mut w["order"];
    o["orderId"] = json!(order_id(e));
    o["cliOrdId"] = json!(e.client_id);
    o["symbol"] = json!(e.field("symbol"));
    o["side"] = json!(e.field("side"));
    o["quantity"] = json!(e.field("size"));
    o["reduceOnly"] = json!(e.flag("reduceOnly"));
    o["limitPrice"] = if e.field("limitPrice").is_empty() {
        Value::Null
    } else {
        json!(e.field("limitPrice"))
    };
    if e.conditional {
        let below = matches!(
            (e.field("orderType").as_str(), e.field("side").as_str()),
            ("stp", "sell") | ("take_profit", "buy")
        );
        o["priceTriggerOptions"]["triggerPrice"] = json!(e.field("stopPrice"));
        o["priceTriggerOptions"]["triggerSide"] = json!(if below {
            "TRIGGER_BELOW"
        } else {
            "TRIGGER_ABOVE"
        });
    }
    let (status, filled) = match (e.state, e.conditional) {
        (State::Open, true) => ("TRIGGER_PLACED", Value::Null),
        (State::Open, false) => ("ENTERED_BOOK", json!(0)),
        (State::Filled, _) => ("FULLY_EXECUTED", json!(e.field("size"))),
        (State::Canceled, _) => ("CANCELLED", json!(0)),
    };
    o["filled"] = filled;
    w["status"] = json!(status);
    w["updateReason"] = Value::Null;
    w
}

impl MockVenue for Kraken {
    const NAME: &'static str = "kraken";

    fn new() -> Self {
        Self
    }

    fn symbol(&self) -> Symbol {
        "BTC/USD:USD".parse().unwrap()
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            api_key: "conformance-kraken-key".into(),
            api_secret: SECRET.into(),
            passphrase: None,
        }
    }

    fn now_ms(&self) -> i64 {
        NOW_MS
    }

    fn reference_price(&self) -> Decimal {
        dec!(61250)
    }

    fn klines_query(&self) -> (Timeframe, u32) {
        (Timeframe::M1, 3)
    }

    fn place_endpoints(&self) -> &'static [Endpoint] {
        PLACE
    }

    fn leverage_endpoint(&self) -> Endpoint {
        Endpoint::new("PUT", "/derivatives/api/v3/leveragepreferences")
    }

    fn cancel_all_calls(&self) -> &'static [(Endpoint, usize)] {
        CANCEL_ALL
    }

    fn mocks(&self, book: &Arc<Book>, place_delay: Duration) -> Vec<Mock> {
        let mut ticker = fixture_json(DIR, "ticker.json");
        ticker["serverTime"] = json!(now_text());
        let mut out = vec![
            // Kraken has no time endpoint: server_time reads this public ticker.
            Endpoint::new("GET", "/derivatives/api/v3/tickers/PF_XBTUSD")
                .route()
                .respond_with(ok(&ticker)),
            Endpoint::new("GET", "/derivatives/api/v3/instruments")
                .route()
                .respond_with(ok_fixture(DIR, "instruments.json")),
            Endpoint::new("GET", "/api/charts/v1/trade/PF_XBTUSD/1m")
                .route()
                .respond_with(ok_fixture("conformance/kraken", "klines.json")),
            Endpoint::new("GET", "/derivatives/api/v3/accounts")
                .route()
                .respond_with(ok_fixture(DIR, "balance.json")),
            self.leverage_endpoint()
                .route()
                .respond_with(ok_fixture(DIR, "success.json")),
            Endpoint::new("GET", "/api/history/v2/orders")
                .route()
                .respond_with(ok_fixture(DIR, "history_orders_empty.json")),
            Endpoint::new("GET", "/api/history/v2/triggers")
                .route()
                .respond_with(ok_fixture(DIR, "history_triggers_empty.json")),
        ];
        let b = Arc::clone(book);
        out.push(SENDORDER.route().respond_with(move |r: &Request| {
            let q = params_of(r);
            let cid = q["cliOrdId"].as_str().unwrap_or_default().to_string();
            let kind = q["orderType"].as_str().unwrap_or_default().to_string();
            let conditional = kind == "stp" || kind == "take_profit";
            let state = if kind == "mkt" {
                State::Filled
            } else {
                State::Open
            };
            let e = b.place(cid, conditional, state, q);
            let a = if e.state == State::Filled {
                // Filled on arrival: one execution of the whole size.
                let mut a = fixture_json(DIR, "place_order_executed.json");
                let event = &mut a["sendStatus"]["orderEvents"][0];
                event["price"] = json!(61250);
                event["amount"] = json!(e.field("size"));
                let prior = &mut event["orderPriorExecution"];
                prior["orderId"] = json!(order_id(&e));
                prior["cliOrdId"] = json!(e.client_id);
                prior["type"] = json!("mkt");
                prior["symbol"] = json!(e.field("symbol"));
                prior["side"] = json!(e.field("side"));
                prior["quantity"] = json!(e.field("size"));
                prior["limitPrice"] = Value::Null;
                a
            } else {
                let mut a = fixture_json(DIR, "place_order.json");
                let o = &mut a["sendStatus"]["orderEvents"][0]["order"];
                o["orderId"] = json!(order_id(&e));
                o["cliOrdId"] = json!(e.client_id);
                o["type"] = json!(kind);
                o["symbol"] = json!(e.field("symbol"));
                o["side"] = json!(e.field("side"));
                o["quantity"] = json!(e.field("size"));
                o["limitPrice"] = Value::Null;
                o["reduceOnly"] = json!(e.flag("reduceOnly"));
                a
            };
            let mut a = a;
            a["sendStatus"]["order_id"] = json!(order_id(&e));
            delayed(ok(&a), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("POST", "/derivatives/api/v3/orders/status")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    let wanted = q["cliOrdIds"].as_str().unwrap_or_default().to_string();
                    let mut a = fixture_json(DIR, "orders_status_empty.json");
                    a["orders"] =
                        json!(b.find(&wanted).iter().map(status_order).collect::<Vec<_>>());
                    ok(&a)
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/derivatives/api/v3/openorders")
                .route()
                .respond_with(move |_: &Request| {
                    let mut a = fixture_json(DIR, "open_orders.json");
                    a["openOrders"] =
                        json!(b.open(|_| true).iter().map(open_order).collect::<Vec<_>>());
                    ok(&a)
                }),
        );
        let b = Arc::clone(book);
        out.push(CANCEL_ALL[0].0.route().respond_with(move |_: &Request| {
            let gone: Vec<Value> = b
                .cancel(|_| true)
                .iter()
                .map(|e| json!({"order_id": order_id(e)}))
                .collect();
            let mut a = fixture_json(DIR, "cancel_all_orders.json");
            a["cancelStatus"]["cancelledOrders"] = json!(gone);
            a["cancelStatus"]["orderEvents"] = json!([]);
            ok(&a)
        }));
        out
    }
}
