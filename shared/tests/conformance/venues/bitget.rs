//! Bitget V2 mix (USDT-FUTURES) harness: a stateful loopback venue over `fixtures/bitget/`. Sizes
//! travel in base coin; regular orders at `/order/place-order`, reduce-only stops and take-profits
//! as position TP/SL plans (`/order/place-tpsl-order`), other stops as normal trigger plans. Plans
//! are listed per family (`normal_plan`, `profit_loss`) and cancelled per plan type.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::Credentials;
use wiremock::{Mock, Request, ResponseTemplate};

use crate::support::{
    Book, Endpoint, Entry, MockVenue, State, answer, body_of, delayed, fixture_json, ok,
    ok_fixture, params_of,
};

const DIR: &str = "bitget";
/// 150 s into the newest 5m candle of `klines.json` (1695836100000); the mocked server time.
const NOW_MS: i64 = 1_695_836_100_000 + 150_000;

const PLACE_ORDER: Endpoint = Endpoint::new("POST", "/api/v2/mix/order/place-order");
const PLACE_PLAN: Endpoint = Endpoint::new("POST", "/api/v2/mix/order/place-plan-order");
const PLACE_TPSL: Endpoint = Endpoint::new("POST", "/api/v2/mix/order/place-tpsl-order");
const PLACE: &[Endpoint] = &[PLACE_ORDER, PLACE_PLAN, PLACE_TPSL];
const BATCH_CANCEL: Endpoint = Endpoint::new("POST", "/api/v2/mix/order/batch-cancel-orders");
const CANCEL_PLAN: Endpoint = Endpoint::new("POST", "/api/v2/mix/order/cancel-plan-order");
/// The entry is filled, so no regular order is left; the stop-loss (`loss_plan`) and the
/// take-profit (`profit_plan`) are of two plan types, cancelled one call each.
const CANCEL_ALL: &[(Endpoint, usize)] = &[(BATCH_CANCEL, 0), (CANCEL_PLAN, 2)];

#[derive(Debug)]
pub struct Bitget;

fn order_id(e: &Entry) -> String {
    format!("{}", 1_214_447_979_043_400_000u64 + e.seq)
}

/// `YES` when the adapter flagged the order reduce-only (Bitget's one-way-mode flag).
fn yes_no(e: &Entry) -> &'static str {
    if e.field("reduceOnly").eq_ignore_ascii_case("yes") {
        "YES"
    } else {
        "NO"
    }
}

/// The plan type a conditional order was placed with (`normal_plan`, `loss_plan`, `profit_plan`).
fn plan_type(e: &Entry) -> String {
    e.field("planType")
}

/// The family the pending and history lists are queried by.
fn family(e: &Entry) -> &'static str {
    match plan_type(e).as_str() {
        "normal_plan" => "normal_plan",
        _ => "profit_loss",
    }
}

/// A regular order (`/order/detail`, `/order/orders-pending` rows) from `order_detail.json`.
fn regular(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "order_detail.json")["data"].clone();
    o["symbol"] = json!(e.field("symbol"));
    o["orderId"] = json!(order_id(e));
    o["clientOid"] = json!(e.client_id);
    o["size"] = json!(e.field("size"));
    o["side"] = json!(e.field("side"));
    o["orderType"] = json!(e.field("orderType"));
    o["price"] = json!(if e.field("orderType") == "limit" {
        e.field("price")
    } else {
        "0".into()
    });
    o["force"] = json!(e.field("force"));
    o["reduceOnly"] = json!(yes_no(e));
    o["tradeSide"] = json!("");
    o["posSide"] = json!("net");
    o["posMode"] = json!("one_way_mode");
    o["marginMode"] = json!(e.field("marginMode"));
    o["marginCoin"] = json!(e.field("marginCoin"));
    o["presetStopSurplusPrice"] = json!("");
    o["presetStopLossPrice"] = json!("");
    let (state, filled, avg, fee) = match e.state {
        State::Open => ("live", "0".to_string(), "", ""),
        State::Filled => ("filled", e.field("size"), "26171", "-0.157026"),
        State::Canceled => ("canceled", "0".to_string(), "", ""),
    };
    o["state"] = json!(state);
    o["baseVolume"] = json!(filled);
    o["priceAvg"] = json!(avg);
    o["fee"] = json!(fee);
    o
}

/// A plan order row of `/orders-plan-pending` and `/orders-plan-history`: TP/SL plans from the
/// `profit_loss` fixture, trigger plans from the `normal_plan` one. A TP/SL plan is listed with the
/// closing side (the opposite of the `holdSide` it was placed with) and the position's side.
fn plan(e: &Entry) -> Value {
    let tpsl = family(e) == "profit_loss";
    let mut o = if tpsl {
        fixture_json(DIR, "orders_plan_pending_tpsl.json")["data"]["entrustedList"][0].clone()
    } else {
        fixture_json(DIR, "orders_plan_pending.json")["data"]["entrustedList"][0].clone()
    };
    o["planType"] = json!(plan_type(e));
    o["symbol"] = json!(e.field("symbol"));
    o["size"] = json!(e.field("size"));
    o["orderId"] = json!(order_id(e));
    o["clientOid"] = json!(e.client_id);
    o["triggerPrice"] = json!(e.field("triggerPrice"));
    o["triggerType"] = json!(e.field("triggerType"));
    o["price"] = json!("0");
    o["orderType"] = json!("market");
    o["posMode"] = json!("one_way_mode");
    o["marginCoin"] = json!(e.field("marginCoin"));
    if tpsl {
        let hold = e.field("holdSide");
        o["side"] = json!(if hold == "buy" { "sell" } else { "buy" });
        o["posSide"] = json!(if hold == "buy" { "long" } else { "short" });
        o["tradeSide"] = json!("close");
        o["executePrice"] = json!(e.field("executePrice"));
    } else {
        o["side"] = json!(e.field("side"));
        o["posSide"] = json!("net");
        o["tradeSide"] = json!(if yes_no(e) == "YES" { "close" } else { "open" });
        o["marginMode"] = json!(e.field("marginMode"));
    }
    o["planStatus"] = json!(match e.state {
        State::Open => "live",
        State::Filled => "executed",
        State::Canceled => "cancelled",
    });
    o
}

fn success(data: Value) -> ResponseTemplate {
    ok(&json!({"code": "00000", "msg": "success", "requestTime": NOW_MS, "data": data}))
}

/// A page of the pending and history lists; Bitget sends `null` for an empty list.
fn page(rows: Vec<Value>) -> ResponseTemplate {
    let end_id = rows
        .last()
        .map(|r| r["orderId"].clone())
        .unwrap_or(Value::Null);
    let list = if rows.is_empty() {
        Value::Null
    } else {
        json!(rows)
    };
    success(json!({"entrustedList": list, "endId": end_id}))
}

fn order_missing() -> ResponseTemplate {
    answer(
        400,
        &json!({
            "code": "40109", "msg": "The data of the order cannot be found",
            "requestTime": NOW_MS, "data": null
        }),
    )
}

/// Cancel the listed `orderIdList` among the orders `filter` selects; per-item results.
fn cancel_listed(book: &Book, r: &Request, filter: impl Fn(&Entry) -> bool) -> ResponseTemplate {
    let body = body_of(r);
    let items = body["orderIdList"].as_array().cloned().unwrap_or_default();
    let mut success_list = Vec::new();
    let mut failure_list = Vec::new();
    for item in items {
        let id = item["orderId"].as_str().unwrap_or_default().to_string();
        let gone = book.cancel(|e| order_id(e) == id && filter(e));
        match gone.first() {
            Some(e) => success_list.push(json!({"orderId": id, "clientOid": e.client_id})),
            None => failure_list
                .push(json!({"orderId": id, "clientOid": "", "errorMsg": "notExistend"})),
        }
    }
    success(json!({"successList": success_list, "failureList": failure_list}))
}

/// The place answer (`{orderId, clientOid}`) of `template`, for `e`.
fn placed(template: &str, e: &Entry) -> Value {
    let mut a = fixture_json(DIR, template);
    a["data"]["orderId"] = json!(order_id(e));
    a["data"]["clientOid"] = json!(e.client_id);
    a
}

impl MockVenue for Bitget {
    const NAME: &'static str = "bitget";

    fn new() -> Self {
        Self
    }

    fn symbol(&self) -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            api_key: "conformance-bitget-key".into(),
            api_secret: "conformance-bitget-secret".into(),
            passphrase: Some("conformance-bitget-passphrase".into()),
        }
    }

    fn now_ms(&self) -> i64 {
        NOW_MS
    }

    fn reference_price(&self) -> Decimal {
        dec!(26171)
    }

    fn klines_query(&self) -> (Timeframe, u32) {
        (Timeframe::M5, 2)
    }

    fn place_endpoints(&self) -> &'static [Endpoint] {
        PLACE
    }

    fn leverage_endpoint(&self) -> Endpoint {
        Endpoint::new("POST", "/api/v2/mix/account/set-leverage")
    }

    fn cancel_all_calls(&self) -> &'static [(Endpoint, usize)] {
        CANCEL_ALL
    }

    fn mocks(&self, book: &Arc<Book>, place_delay: Duration) -> Vec<Mock> {
        let mut time = fixture_json(DIR, "server_time.json");
        time["data"]["serverTime"] = json!(NOW_MS.to_string());
        time["requestTime"] = json!(NOW_MS);
        let mut out = vec![
            Endpoint::new("GET", "/api/v2/public/time")
                .route()
                .respond_with(ok(&time)),
            Endpoint::new("GET", "/api/v2/mix/market/candles")
                .route()
                .respond_with(ok_fixture(DIR, "klines.json")),
            Endpoint::new("GET", "/api/v2/mix/market/contracts")
                .route()
                .respond_with(ok_fixture(DIR, "contracts.json")),
            Endpoint::new("GET", "/api/v2/mix/account/accounts")
                .route()
                .respond_with(ok_fixture(DIR, "balance.json")),
            // Crossed margin: the answer carries the leverage set; the adapter checks it.
            self.leverage_endpoint()
                .route()
                .respond_with(|r: &Request| {
                    let b = body_of(r);
                    let mut a = fixture_json(DIR, "set_leverage.json");
                    for k in ["longLeverage", "shortLeverage", "crossMarginLeverage"] {
                        a["data"][k] = b["leverage"].clone();
                    }
                    a["data"]["symbol"] = b["symbol"].clone();
                    a["data"]["marginMode"] = json!("crossed");
                    ok(&a)
                }),
        ];
        let b = Arc::clone(book);
        out.push(PLACE_ORDER.route().respond_with(move |r: &Request| {
            let body = body_of(r);
            let cid = body["clientOid"].as_str().unwrap_or_default().to_string();
            let state = if body["orderType"] == "market" {
                State::Filled
            } else {
                State::Open
            };
            let e = b.place(cid, false, state, body);
            delayed(ok(&placed("place_order.json", &e)), place_delay)
        }));
        for ep in [PLACE_PLAN, PLACE_TPSL] {
            let b = Arc::clone(book);
            out.push(ep.route().respond_with(move |r: &Request| {
                let body = body_of(r);
                let cid = body["clientOid"].as_str().unwrap_or_default().to_string();
                let e = b.place(cid, true, State::Open, body);
                delayed(ok(&placed("place_plan_order.json", &e)), place_delay)
            }));
        }
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v2/mix/order/detail")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    match b.find(q["clientOid"].as_str().unwrap_or_default()) {
                        Some(e) if !e.conditional => success(regular(&e)),
                        _ => order_missing(),
                    }
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v2/mix/order/orders-pending")
                .route()
                .respond_with(move |_: &Request| {
                    page(b.open(|e| !e.conditional).iter().map(regular).collect())
                }),
        );
        // Pending plans of one family, optionally of one client id.
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v2/mix/order/orders-plan-pending")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    let fam = q["planType"].as_str().unwrap_or_default().to_string();
                    let cid = q.get("clientOid").and_then(Value::as_str).map(String::from);
                    let rows = b.open(|e| {
                        e.conditional
                            && family(e) == fam
                            && cid.as_deref().is_none_or(|c| c == e.client_id)
                    });
                    page(rows.iter().map(plan).collect())
                }),
        );
        // Finished plans (here: cancelled ones) of one family and client id.
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/api/v2/mix/order/orders-plan-history")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    let fam = q["planType"].as_str().unwrap_or_default();
                    let cid = q["clientOid"].as_str().unwrap_or_default();
                    let rows: Vec<Value> = b
                        .find(cid)
                        .filter(|e| e.conditional && e.state != State::Open && family(e) == fam)
                        .iter()
                        .map(plan)
                        .collect();
                    page(rows)
                }),
        );
        let b = Arc::clone(book);
        out.push(
            BATCH_CANCEL
                .route()
                .respond_with(move |r: &Request| cancel_listed(&b, r, |e| !e.conditional)),
        );
        // Only plans of the plan type named in the body are cancelled.
        let b = Arc::clone(book);
        out.push(CANCEL_PLAN.route().respond_with(move |r: &Request| {
            let kind = body_of(r)["planType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            cancel_listed(&b, r, |e| e.conditional && plan_type(e) == kind)
        }));
        out
    }
}
