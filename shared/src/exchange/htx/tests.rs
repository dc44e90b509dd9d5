//! Malformed-input tests of the whole decode pipeline (envelope -> wire -> domain) over the
//! fixtures: every fixture decodes whole, truncated bodies are errors, mutated bodies never panic.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use proptest::prelude::*;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use rust_decimal_macros::dec;

use crate::domain::{Symbol, Timeframe};
use crate::exchange::http::{RawResponse, RequestKind};
use crate::exchange::{ExchangeError, ExchangeResult};

use super::client::{decode, list, payload};
use super::errors::ErrorContext;
use super::{parse, wire};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/htx/", $name))
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
        contract_code: Some("BTC-USDT"),
        kind,
    }
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

fn none(_: &str) -> Option<crate::domain::ClientOrderId> {
    None
}

type Pipeline = fn(&str) -> ExchangeResult<()>;

fn read(b: &str) -> ExchangeResult<super::wire::Envelope> {
    decode(&raw(b), ctx(RequestKind::Read))
}

fn write(b: &str) -> ExchangeResult<super::wire::Envelope> {
    decode(&raw(b), ctx(RequestKind::Write))
}

fn pipelines() -> Vec<(&'static str, &'static str, Pipeline)> {
    vec![
        ("server_timestamp", fixture!("server_timestamp.json"), |b| {
            read(b)?
                .ts
                .ok_or_else(|| ExchangeError::malformed("htx", "/t", "no ts"))
                .map(|_| ())
        }),
        ("klines", fixture!("klines.json"), |b| {
            let rows: Vec<wire::KlineRow> = list(read(b)?.data, ctx(RequestKind::Read))?;
            parse::candles(&rows, Timeframe::M1, Utc::now(), "/k").map(|_| ())
        }),
        ("klines_btc_60min", fixture!("klines_btc_60min.json"), |b| {
            let rows: Vec<wire::KlineRow> = list(read(b)?.data, ctx(RequestKind::Read))?;
            parse::candles(&rows, Timeframe::H1, Utc::now(), "/k").map(|_| ())
        }),
        ("ticker", fixture!("ticker_detail_merged.json"), |b| {
            let t: wire::MergedTick = payload(read(b)?.tick, ctx(RequestKind::Read))?;
            parse::ticker(&btc(), &t).map(|_| ())
        }),
        ("contract_info", fixture!("contract_info.json"), |b| {
            let rows: Vec<wire::ContractInfo> = list(read(b)?.data, ctx(RequestKind::Read))?;
            for r in &rows {
                parse::instrument(&btc(), r, None)?;
            }
            Ok(())
        }),
        ("risk_limit", fixture!("risk_limit_v5.json"), |b| {
            list::<wire::RiskTier>(read(b)?.data, ctx(RequestKind::Read)).map(|_| ())
        }),
        ("balance", fixture!("balance.json"), |b| {
            let d: wire::Balance = payload(read(b)?.data, ctx(RequestKind::Read))?;
            parse::balance("USDT", &d);
            Ok(())
        }),
        ("positions", fixture!("positions.json"), |b| {
            let rows: Vec<wire::Position> = list(read(b)?.data, ctx(RequestKind::Read))?;
            for p in &rows {
                parse::position(p, dec!(0.001))?;
            }
            Ok(())
        }),
        ("set_leverage", fixture!("set_leverage_v5.json"), |b| {
            payload::<wire::SetLeverageAck>(read(b)?.data, ctx(RequestKind::Read)).map(|_| ())
        }),
        ("place_order", fixture!("place_order.json"), |b| {
            payload::<wire::OrderAck>(write(b)?.data, ctx(RequestKind::Write)).map(|_| ())
        }),
        (
            "place_algo_order",
            fixture!("place_algo_order_v5.json"),
            |b| list::<wire::AlgoAck>(write(b)?.data, ctx(RequestKind::Write)).map(|_| ()),
        ),
        ("order_info", fixture!("order_info_v5.json"), |b| {
            let rows: Vec<wire::Order> = list(read(b)?.data, ctx(RequestKind::Read))?;
            for o in &rows {
                parse::order(o, dec!(0.001), &none)?;
            }
            Ok(())
        }),
        ("open_orders", fixture!("open_orders_v5.json"), |b| {
            let rows: Vec<wire::Order> = list(read(b)?.data, ctx(RequestKind::Read))?;
            for o in &rows {
                parse::order(o, dec!(0.001), &none)?;
            }
            Ok(())
        }),
        (
            "algo_open_orders",
            fixture!("algo_open_orders_v5.json"),
            |b| {
                let rows: Vec<wire::AlgoOrder> = list(read(b)?.data, ctx(RequestKind::Read))?;
                for a in &rows {
                    parse::algo_order(a, dec!(0.001), &none)?;
                }
                Ok(())
            },
        ),
        ("cancel_order", fixture!("cancel_order_v5.json"), |b| {
            list::<wire::CancelItem>(write(b)?.data, ctx(RequestKind::Write)).map(|_| ())
        }),
        ("cancel_all", fixture!("cancel_all_v5.json"), |b| {
            list::<wire::CancelItem>(write(b)?.data, ctx(RequestKind::Write)).map(|_| ())
        }),
        ("cancel_algo", fixture!("cancel_algo_v5.json"), |b| {
            list::<wire::AlgoAck>(write(b)?.data, ctx(RequestKind::Write)).map(|_| ())
        }),
    ]
}

#[test]
fn every_fixture_decodes_whole() {
    for (name, body, run) in pipelines() {
        assert!(run(body).is_ok(), "{name}: {:?}", run(body));
    }
}

#[test]
fn legacy_v1_envelopes_still_decode_or_map_their_error() {
    for body in [
        fixture!("place_order_v1_legacy_cross.json"),
        fixture!("balance_v1_legacy_cross_account_info.json"),
        fixture!("positions_v1_legacy_cross_position_info.json"),
        fixture!("cancel_order_v1_legacy_cross.json"),
        fixture!("cancel_all_v1_legacy_cross.json"),
        fixture!("switch_lever_v1_legacy_cross.json"),
        fixture!("order_info_v1_legacy_cross.json"),
        fixture!("open_orders_v1_legacy_cross.json"),
        fixture!("trigger_order_v1_legacy_cross.json"),
        fixture!("tpsl_order_v1_legacy_cross.json"),
    ] {
        assert!(read(body).is_ok(), "{body}");
    }
    let err = write(fixture!("error_trigger_order_v1.json")).unwrap_err();
    match err {
        ExchangeError::Venue { code, message, .. } => {
            assert_eq!(code, "1085");
            assert!(message.contains("Trigger order failed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn gateway_errors_with_hyphenated_keys_are_mapped() {
    let e = read(r#"{"status":"error","err-code":"api-signature-not-valid","err-msg":"Signature not valid: Verification failure","data":null}"#)
        .unwrap_err();
    assert_eq!(e.kind(), "auth");
    let e = read(r#"{"status":"maintain"}"#).unwrap_err();
    assert_eq!(e.kind(), "unavailable");
    let e = write(r#"{"code":1004,"message":"System busy","ts":1}"#).unwrap_err();
    assert_eq!(e.kind(), "outcome_unknown");
}

#[test]
fn non_json_bodies_use_the_http_status() {
    let mut r = raw("<html>bad gateway</html>");
    r.status = StatusCode::BAD_GATEWAY;
    assert_eq!(
        decode(&r, ctx(RequestKind::Read)).unwrap_err().kind(),
        "unavailable"
    );
    assert_eq!(
        decode(&r, ctx(RequestKind::Write)).unwrap_err().kind(),
        "outcome_unknown"
    );
    r.status = StatusCode::OK;
    assert_eq!(
        decode(&r, ctx(RequestKind::Read)).unwrap_err().kind(),
        "malformed_response"
    );
    // Valid JSON that is no HTX envelope.
    assert!(read("[]").is_err());
    assert!(read(r#"{"status":"weird"}"#).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn truncated_bodies_are_errors(which in 0usize..17, cut in 0.0f64..1.0) {
        let all = pipelines();
        let (name, body, run) = all[which % all.len()];
        let body = body.trim_end();
        let at = ((body.len() as f64) * cut) as usize;
        let at = (0..=at).rev().find(|i| body.is_char_boundary(*i)).unwrap_or(0);
        prop_assert!(run(&body[..at]).is_err(), "{} cut at {} decoded", name, at);
    }

    #[test]
    fn mutated_bodies_never_panic(which in 0usize..17, pos in 0.0f64..1.0, byte in prop::sample::select(vec![b'"', b'{', b'}', b'[', b']', b',', b':', b'-', b'x', b'9', b'.', b' ', b'e', b'0'])) {
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
    fn arbitrary_text_never_panics(s in ".{0,200}") {
        let _ = read(&s);
        let _ = write(&s);
    }
}
