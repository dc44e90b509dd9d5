//! HTX USDT-M linear swap harness: a stateful loopback venue over `fixtures/htx/`. Sizes travel as
//! whole contracts (0.001 BTC each); regular orders at `/v5/trade/order`, stops and take-profits
//! as reduce-only V5 `tpsl` algo orders. HTX carries client ids as positive int64: the mock keeps
//! the integers it receives, and the suite checks them against the adapter's documented mapping
//! (re-implemented here in [`Htx::venue_client_id`]).

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::Credentials;
use wiremock::{Mock, Request, ResponseTemplate};

use crate::support::{
    Book, Endpoint, Entry, MockVenue, State, body_of, delayed, fixture_json, ok, ok_fixture,
    params_of,
};

const DIR: &str = "htx";
/// 5 minutes into the newest 60min candle of `klines_btc_60min.json` (1763701200 s), its `ts`.
const NOW_MS: i64 = 1_763_701_500_000;

const ORDER: Endpoint = Endpoint::new("POST", "/v5/trade/order");
const ALGO_ORDER: Endpoint = Endpoint::new("POST", "/v5/algo/order");
const PLACE: &[Endpoint] = &[ORDER, ALGO_ORDER];
const CANCEL_ALL_ORDERS: Endpoint = Endpoint::new("POST", "/v5/trade/cancel_all_orders");
const CANCEL_ALGOS: Endpoint = Endpoint::new("POST", "/v5/algo/cancel_orders");
/// Regular orders go in one call (none is left: the entry filled, so HTX answers 1051), then the
/// two tp/sl orders in one batch.
const CANCEL_ALL: &[(Endpoint, usize)] = &[(CANCEL_ALL_ORDERS, 1), (CANCEL_ALGOS, 1)];

#[derive(Debug)]
pub struct Htx;

fn order_id(e: &Entry) -> String {
    format!("{}", 1_512_600_000_000_000_000u64 + e.seq)
}

/// A V5 answer with `code` and `message`.
fn v5(code: u16, message: &str, data: Value) -> ResponseTemplate {
    ok(&json!({"code": code, "message": message, "data": data, "ts": NOW_MS}))
}

fn success(data: Value) -> ResponseTemplate {
    v5(200, "Success", data)
}

fn order_missing() -> ResponseTemplate {
    v5(1061, "This order doesn't exist.", Value::Null)
}

/// A regular order (`/v5/trade/order`, `/v5/trade/order/opens`) from `order_info_v5.json`.
fn regular(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "order_info_v5.json")["data"].clone();
    o["id"] = json!(order_id(e));
    o["order_id"] = json!(order_id(e));
    o["client_order_id"] = json!(e.client_id);
    o["contract_code"] = json!(e.field("contract_code"));
    o["side"] = json!(e.field("side"));
    o["position_side"] = json!(e.field("position_side"));
    o["margin_mode"] = json!(e.field("margin_mode"));
    o["type"] = json!(e.field("type"));
    o["volume"] = json!(e.field("volume"));
    o["price"] = json!(if e.field("type") == "market" {
        "0".into()
    } else {
        e.field("price")
    });
    o["reduce_only"] = json!(e.field("reduce_only") == "1");
    let (state, traded, avg, fee) = match e.state {
        State::Open => ("new", "0".to_string(), Value::Null, "0"),
        State::Filled => ("filled", e.field("volume"), json!("91200"), "-0.0456"),
        State::Canceled => ("canceled", "0".to_string(), Value::Null, "0"),
    };
    o["state"] = json!(state);
    o["trade_volume"] = json!(traded);
    o["trade_avg_price"] = avg;
    o["fee"] = json!(fee);
    o
}

/// A tp/sl algo order (`/v5/algo/order`, `/v5/algo/order/opens`) from the first row of
/// `algo_open_orders_v5.json`; only the leg that was set carries a trigger.
fn algo(e: &Entry) -> Value {
    let mut o = fixture_json(DIR, "algo_open_orders_v5.json")["data"][0].clone();
    o["id"] = json!(order_id(e));
    o["algo_id"] = json!(order_id(e));
    o["algo_client_order_id"] = json!(e.client_id);
    o["contract_code"] = json!(e.field("contract_code"));
    o["type"] = json!(e.field("type"));
    o["side"] = json!(e.field("side"));
    o["position_side"] = json!(e.field("position_side"));
    o["margin_mode"] = json!(e.field("margin_mode"));
    o["volume"] = json!(e.field("volume"));
    o["reduce_only"] = json!(e.field("reduce_only") == "1");
    for (price, kind) in [
        ("sl_trigger_price", "sl_type"),
        ("tp_trigger_price", "tp_type"),
    ] {
        if e.field(price).is_empty() {
            o[price] = Value::Null;
            if let Some(m) = o.as_object_mut() {
                m.remove(kind);
            }
        } else {
            o[price] = json!(e.field(price));
            o[kind] = json!(e.field(kind));
        }
    }
    o["state"] = json!(match e.state {
        State::Open => "new",
        State::Filled => "triggered",
        State::Canceled => "canceled",
    });
    o
}

impl MockVenue for Htx {
    const NAME: &'static str = "htx";

    fn new() -> Self {
        Self
    }

    fn symbol(&self) -> Symbol {
        "BTC/USDT:USDT".parse().unwrap()
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            api_key: "conformance-htx-key".into(),
            api_secret: "conformance-htx-secret".into(),
            passphrase: None,
        }
    }

    fn now_ms(&self) -> i64 {
        NOW_MS
    }

    fn reference_price(&self) -> Decimal {
        dec!(91200)
    }

    fn klines_query(&self) -> (Timeframe, u32) {
        (Timeframe::H1, 3)
    }

    fn place_endpoints(&self) -> &'static [Endpoint] {
        PLACE
    }

    fn leverage_endpoint(&self) -> Endpoint {
        Endpoint::new("POST", "/v5/position/lever")
    }

    fn cancel_all_calls(&self) -> &'static [(Endpoint, usize)] {
        CANCEL_ALL
    }

    /// The documented mapping of the adapter (`htx::parse::venue_client_id`): the first 8 bytes
    /// of SHA-256 of the id text, big-endian, top bit cleared, and 1 instead of 0.
    fn venue_client_id(ours: &str) -> String {
        let digest = Sha256::digest(ours.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) & (u64::MAX >> 1))
            .max(1)
            .to_string()
    }

    fn mocks(&self, book: &Arc<Book>, place_delay: Duration) -> Vec<Mock> {
        let mut time = fixture_json(DIR, "server_timestamp.json");
        time["ts"] = json!(NOW_MS);
        let mut out = vec![
            Endpoint::new("GET", "/api/v1/timestamp")
                .route()
                .respond_with(ok(&time)),
            Endpoint::new("GET", "/linear-swap-ex/market/history/kline")
                .route()
                .respond_with(ok_fixture(DIR, "klines_btc_60min.json")),
            Endpoint::new("GET", "/linear-swap-api/v1/swap_contract_info")
                .route()
                .respond_with(ok_fixture(DIR, "contract_info.json")),
            Endpoint::new("GET", "/v5/market/risk/limit")
                .route()
                .respond_with(ok_fixture(DIR, "risk_limit_v5.json")),
            Endpoint::new("GET", "/v5/account/balance")
                .route()
                .respond_with(ok_fixture(DIR, "balance.json")),
            // The answer echoes the leverage; the adapter checks it.
            self.leverage_endpoint()
                .route()
                .respond_with(|r: &Request| {
                    let b = body_of(r);
                    let mut a = fixture_json(DIR, "set_leverage_v5.json");
                    a["data"]["lever_rate"] = b["lever_rate"].clone();
                    a["data"]["contract_code"] = b["contract_code"].clone();
                    a["data"]["margin_mode"] = b["margin_mode"].clone();
                    ok(&a)
                }),
        ];
        let b = Arc::clone(book);
        out.push(ORDER.route().respond_with(move |r: &Request| {
            let body = body_of(r);
            let cid = body["client_order_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let state = if body["type"] == "market" {
                State::Filled
            } else {
                State::Open
            };
            let e = b.place(cid, false, state, body);
            let mut a = fixture_json(DIR, "place_order.json");
            a["data"]["order_id"] = json!(order_id(&e));
            a["data"]["client_order_id"] = json!(e.client_id);
            delayed(ok(&a), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(ALGO_ORDER.route().respond_with(move |r: &Request| {
            let body = body_of(r);
            let cid = body["algo_client_order_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let e = b.place(cid, true, State::Open, body);
            let mut a = fixture_json(DIR, "place_algo_order_v5.json");
            a["data"][0]["algo_id"] = json!(order_id(&e));
            a["data"][0]["algo_client_order_id"] = json!(e.client_id);
            delayed(ok(&a), place_delay)
        }));
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/v5/trade/order")
                .route()
                .respond_with(move |r: &Request| {
                    let q = params_of(r);
                    match b.find(q["client_order_id"].as_str().unwrap_or_default()) {
                        Some(e) if !e.conditional => success(regular(&e)),
                        _ => order_missing(),
                    }
                }),
        );
        let b = Arc::clone(book);
        out.push(Endpoint::new("GET", "/v5/algo/order").route().respond_with(
            move |r: &Request| {
                let q = params_of(r);
                match b.find(q["algo_client_order_id"].as_str().unwrap_or_default()) {
                    Some(e) if e.conditional => success(algo(&e)),
                    _ => order_missing(),
                }
            },
        ));
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/v5/trade/order/opens")
                .route()
                .respond_with(move |_: &Request| {
                    success(json!(
                        b.open(|e| !e.conditional)
                            .iter()
                            .map(regular)
                            .collect::<Vec<_>>()
                    ))
                }),
        );
        let b = Arc::clone(book);
        out.push(
            Endpoint::new("GET", "/v5/algo/order/opens")
                .route()
                .respond_with(move |_: &Request| {
                    success(json!(
                        b.open(|e| e.conditional)
                            .iter()
                            .map(algo)
                            .collect::<Vec<_>>()
                    ))
                }),
        );
        // Per-order items; with nothing to cancel HTX answers 1051.
        let b = Arc::clone(book);
        out.push(CANCEL_ALL_ORDERS.route().respond_with(move |_: &Request| {
            let gone = b.cancel(|e| !e.conditional);
            if gone.is_empty() {
                return v5(1051, "No orders to cancel.", Value::Null);
            }
            let items: Vec<Value> = gone
                .iter()
                .map(|e| {
                    json!({
                        "code": 200, "message": "Success",
                        "order_id": order_id(e), "client_order_id": e.client_id
                    })
                })
                .collect();
            success(json!(items))
        }));
        // A JSON array of {contract_code, algo_id | algo_client_order_id}; per-item results.
        let b = Arc::clone(book);
        out.push(CANCEL_ALGOS.route().respond_with(move |r: &Request| {
            let items: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_default();
            let mut template = fixture_json(DIR, "cancel_algo_v5.json");
            let rows: Vec<Value> = items
                .iter()
                .map(|item| {
                    let id = item["algo_id"].as_str().map(String::from);
                    let cid = item["algo_client_order_id"].as_str().map(String::from);
                    let gone = b.cancel(|e| {
                        e.conditional
                            && (id.as_deref() == Some(order_id(e).as_str())
                                || cid.as_deref() == Some(e.client_id.as_str()))
                    });
                    let mut row = template["data"][0].clone();
                    row["algo_id"] = json!(id);
                    row["algo_client_order_id"] = json!(cid);
                    if gone.is_empty() {
                        row["code"] = json!(1061);
                        row["message"] = json!("This order doesn't exist.");
                    }
                    row
                })
                .collect();
            template["data"] = json!(rows);
            ok(&template)
        }));
        out
    }
}
