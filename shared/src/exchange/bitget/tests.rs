//! Malformed-input tests of the whole decode pipeline (envelope -> wire -> domain) over the
//! recorded fixtures: truncated bodies must be errors, mutated bodies must never panic.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::domain::{Symbol, Timeframe};
use crate::exchange::http::{RawResponse, RequestKind};
use crate::exchange::{ExchangeError, ExchangeResult};

use super::client::{decode, encode_query};
use super::errors::ErrorContext;
use super::signing::{prehash, sign};
use super::{parse, wire};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/bitget/", $name))
    };
}

fn raw(body: &str) -> RawResponse {
    RawResponse {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: body.to_string(),
    }
}

fn ctx(kind: RequestKind) -> ErrorContext<'static> {
    ErrorContext {
        endpoint: "/test",
        symbol: Some("BTCUSDT"),
        kind,
    }
}

fn read<T: serde::de::DeserializeOwned>(b: &str) -> ExchangeResult<T> {
    decode::<T>(&raw(b), ctx(RequestKind::Read))
}

fn write<T: serde::de::DeserializeOwned>(b: &str) -> ExchangeResult<T> {
    decode::<T>(&raw(b), ctx(RequestKind::Write))
}

fn some<T>(v: Option<T>) -> ExchangeResult<T> {
    v.ok_or_else(|| ExchangeError::malformed("bitget", "/t", "empty"))
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

/// Decode `body` as the answer of one endpoint and parse it into domain types.
type Pipeline = fn(&str) -> ExchangeResult<()>;

fn pipelines() -> Vec<(&'static str, &'static str, Pipeline)> {
    vec![
        ("server_time", fixture!("server_time.json"), |b| {
            some(read::<Option<wire::ServerTime>>(b)?).map(|_| ())
        }),
        ("klines", fixture!("klines.json"), |b| {
            let rows = some(read::<Option<Vec<wire::CandleRow>>>(b)?)?;
            parse::candles(&rows, Timeframe::M5, i64::MAX, "/c").map(|_| ())
        }),
        ("ticker", fixture!("ticker.json"), |b| {
            for t in some(read::<Option<Vec<wire::Ticker>>>(b)?)? {
                parse::ticker(&btc(), &t)?;
            }
            Ok(())
        }),
        ("contracts", fixture!("contracts.json"), |b| {
            for c in some(read::<Option<Vec<wire::Contract>>>(b)?)? {
                parse::instrument(&btc(), &c)?;
            }
            Ok(())
        }),
        ("balance", fixture!("balance.json"), |b| {
            parse::balance("USDT", &some(read::<Option<Vec<wire::Account>>>(b)?)?);
            Ok(())
        }),
        (
            "balance_single_account",
            fixture!("balance_single_account.json"),
            |b| some(read::<Option<wire::SingleAccount>>(b)?).map(|_| ()),
        ),
        ("positions", fixture!("positions.json"), |b| {
            for p in some(read::<Option<Vec<wire::Position>>>(b)?)? {
                parse::position(&p)?;
            }
            Ok(())
        }),
        (
            "positions_jkorf_copy",
            fixture!("positions_jkorf_copy.json"),
            |b| {
                for p in some(read::<Option<Vec<wire::Position>>>(b)?)? {
                    parse::position(&p)?;
                }
                Ok(())
            },
        ),
        ("set_leverage", fixture!("set_leverage.json"), |b| {
            some(read::<Option<wire::LeverageAck>>(b)?).map(|_| ())
        }),
        ("place_order", fixture!("place_order.json"), |b| {
            some(write::<Option<wire::OrderAck>>(b)?).map(|_| ())
        }),
        ("place_plan_order", fixture!("place_plan_order.json"), |b| {
            some(write::<Option<wire::OrderAck>>(b)?).map(|_| ())
        }),
        ("cancel_order", fixture!("cancel_order.json"), |b| {
            some(write::<Option<wire::OrderAck>>(b)?).map(|_| ())
        }),
        (
            "batch_cancel_orders",
            fixture!("batch_cancel_orders.json"),
            |b| write::<wire::BatchResult>(b).map(|_| ()),
        ),
        (
            "cancel_plan_order",
            fixture!("cancel_plan_order.json"),
            |b| write::<wire::BatchResult>(b).map(|_| ()),
        ),
        ("order_detail", fixture!("order_detail.json"), |b| {
            parse::order(&some(read::<Option<wire::Order>>(b)?)?).map(|_| ())
        }),
        ("orders_pending", fixture!("orders_pending.json"), |b| {
            for o in some(read::<Option<wire::Page<wire::Order>>>(b)?)?.entrusted_list {
                parse::order(&o)?;
            }
            Ok(())
        }),
        (
            "orders_plan_pending",
            fixture!("orders_plan_pending.json"),
            |b| {
                for o in some(read::<Option<wire::Page<wire::PlanOrder>>>(b)?)?.entrusted_list {
                    parse::plan_order(&o)?;
                }
                Ok(())
            },
        ),
        (
            "orders_plan_pending_tpsl",
            fixture!("orders_plan_pending_tpsl.json"),
            |b| {
                for o in some(read::<Option<wire::Page<wire::PlanOrder>>>(b)?)?.entrusted_list {
                    parse::plan_order(&o)?;
                }
                Ok(())
            },
        ),
    ]
}

#[test]
fn every_fixture_decodes_whole() {
    for (name, body, run) in pipelines() {
        assert!(run(body).is_ok(), "{name}: {:?}", run(body));
    }
}

#[test]
fn place_order_body_is_the_signed_vector_body() {
    let body = wire::PlaceOrderBody {
        symbol: "BTCUSDT",
        product_type: "USDT-FUTURES",
        margin_mode: "crossed",
        margin_coin: "USDT",
        size: "0.001".into(),
        price: None,
        side: wire::Side::Buy,
        order_type: wire::OrderType::Market,
        force: None,
        reduce_only: None,
        client_oid: "my-oid-0001",
    };
    let json = serde_json::to_string(&body).unwrap();
    assert_eq!(
        json,
        r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.001","side":"buy","orderType":"market","clientOid":"my-oid-0001"}"#
    );
    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let p = prehash(
        "1700000000000",
        "POST",
        "/api/v2/mix/order/place-order",
        &json,
    );
    assert_eq!(
        sign(secret, &p),
        "mlr5M1G6nNl7V8h987YSWes0q9dF3tqdNBownihQ28c="
    );
}

#[test]
fn queries_are_sorted_like_the_signed_vector() {
    let q = encode_query(&[
        ("symbol", "BTCUSDT"),
        ("productType", "USDT-FUTURES"),
        ("clientOid", "my-oid-0001"),
    ]);
    assert_eq!(
        q,
        "clientOid=my-oid-0001&productType=USDT-FUTURES&symbol=BTCUSDT"
    );
}

#[test]
fn error_envelopes_and_non_json_bodies() {
    let err = read::<Option<wire::Ticker>>(
        r#"{"code":"40085","msg":"unified","requestTime":1,"data":null}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), "permission");
    let mut r = raw("<html>bad gateway</html>");
    r.status = StatusCode::BAD_GATEWAY;
    let read_err = decode::<Option<wire::Ticker>>(&r, ctx(RequestKind::Read)).unwrap_err();
    let write_err = decode::<Option<wire::OrderAck>>(&r, ctx(RequestKind::Write)).unwrap_err();
    assert_eq!(read_err.kind(), "unavailable");
    assert_eq!(write_err.kind(), "outcome_unknown");
    r.status = StatusCode::OK;
    assert_eq!(
        decode::<Option<wire::Ticker>>(&r, ctx(RequestKind::Read))
            .unwrap_err()
            .kind(),
        "malformed_response"
    );
    // An unreadable answer to a write may hide an executed order.
    assert_eq!(
        write::<Option<wire::OrderAck>>(r#"{"code":"00000","data":{"orderId":[1]}}"#)
            .unwrap_err()
            .kind(),
        "outcome_unknown"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn truncated_bodies_are_errors(which in 0usize..18, cut in 0.0f64..1.0) {
        let all = pipelines();
        let (name, body, run) = all[which % all.len()];
        let body = body.trim_end();
        let at = ((body.len() as f64) * cut) as usize;
        let at = (0..=at).rev().find(|i| body.is_char_boundary(*i)).unwrap_or(0);
        prop_assert!(run(&body[..at]).is_err(), "{} cut at {} decoded", name, at);
    }

    #[test]
    fn mutated_bodies_never_panic(which in 0usize..18, pos in 0.0f64..1.0, byte in prop::sample::select(vec![b'"', b'{', b'}', b'[', b']', b',', b':', b'-', b'x', b'9', b'.', b' ', b'e'])) {
        let all = pipelines();
        let (_, body, run) = all[which % all.len()];
        let mut bytes = body.as_bytes().to_vec();
        let i = ((bytes.len() as f64) * pos) as usize % bytes.len().max(1);
        if let Some(b) = bytes.get_mut(i) {
            *b = byte;
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let _ = run(&mutated);
    }

    #[test]
    fn arbitrary_candle_rows_never_panic(rows in prop::collection::vec(prop::collection::vec("[0-9.eE-]{0,12}", 0..9), 0..5), now in any::<i64>()) {
        let _ = parse::candles(&rows, Timeframe::M1, now, "/c");
    }
}
