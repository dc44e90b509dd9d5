//! Malformed-input tests of the whole decode pipeline (envelope -> wire -> domain) over the
//! recorded fixtures: truncated bodies must be errors, mutated bodies must never panic.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use rust_decimal_macros::dec;

use crate::domain::Symbol;
use crate::exchange::ExchangeResult;
use crate::exchange::http::{RawResponse, RequestKind};

use super::client::{BatchItem, decode};
use super::errors::ErrorContext;
use super::{parse, wire};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/okx/", $name))
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
        inst_id: Some("BTC-USDT-SWAP"),
        kind,
    }
}

fn btc() -> Symbol {
    "BTC/USDT:USDT".parse().unwrap()
}

/// Decode `body` as the answer of one endpoint and parse it into domain types.
type Pipeline = fn(&str) -> ExchangeResult<()>;

fn pipelines() -> Vec<(&'static str, &'static str, Pipeline)> {
    vec![
        ("server_time", fixture!("server_time.json"), |b| {
            let v = decode::<wire::ServerTime>(&raw(b), ctx(RequestKind::Read), false)?;
            v.first()
                .ok_or_else(|| crate::exchange::ExchangeError::malformed("okx", "/t", "empty"))?;
            Ok(())
        }),
        ("klines", fixture!("klines.json"), |b| {
            let v = decode::<wire::CandleRow>(&raw(b), ctx(RequestKind::Read), false)?;
            parse::candles(&v, "/c").map(|_| ())
        }),
        ("klines_btc_swap", fixture!("klines_btc_swap.json"), |b| {
            let v = decode::<wire::CandleRow>(&raw(b), ctx(RequestKind::Read), false)?;
            parse::candles(&v, "/c").map(|_| ())
        }),
        ("ticker", fixture!("ticker.json"), |b| {
            let v = decode::<wire::Ticker>(&raw(b), ctx(RequestKind::Read), false)?;
            for t in &v {
                parse::ticker(&btc(), t)?;
            }
            Ok(())
        }),
        ("instruments", fixture!("instruments_btc_swap.json"), |b| {
            let v = decode::<wire::Instrument>(&raw(b), ctx(RequestKind::Read), false)?;
            for i in &v {
                parse::instrument(&btc(), i)?;
            }
            Ok(())
        }),
        ("balance", fixture!("balance.json"), |b| {
            let v = decode::<wire::Balance>(&raw(b), ctx(RequestKind::Read), false)?;
            parse::balance("USDT", &v);
            Ok(())
        }),
        ("positions", fixture!("positions.json"), |b| {
            let v = decode::<wire::Position>(&raw(b), ctx(RequestKind::Read), false)?;
            for p in v.iter().filter(|p| p.inst_type == "SWAP") {
                parse::position(p, dec!(0.01))?;
            }
            Ok(())
        }),
        ("positions_swap", fixture!("positions_swap.json"), |b| {
            let v = decode::<wire::Position>(&raw(b), ctx(RequestKind::Read), false)?;
            for p in &v {
                parse::position(p, dec!(0.01))?;
            }
            Ok(())
        }),
        ("order_details", fixture!("order_details.json"), |b| {
            let v = decode::<wire::Order>(&raw(b), ctx(RequestKind::Read), false)?;
            for o in &v {
                parse::order(o, dec!(0.01))?;
            }
            Ok(())
        }),
        ("orders_pending", fixture!("orders_pending.json"), |b| {
            let v = decode::<wire::Order>(&raw(b), ctx(RequestKind::Read), false)?;
            for o in &v {
                parse::order(o, dec!(0.01))?;
            }
            Ok(())
        }),
        (
            "orders_algo_pending",
            fixture!("orders_algo_pending.json"),
            |b| {
                let v = decode::<wire::AlgoOrder>(&raw(b), ctx(RequestKind::Read), false)?;
                for a in &v {
                    parse::algo_order(a, dec!(0.01))?;
                }
                Ok(())
            },
        ),
        ("place_order", fixture!("place_order.json"), |b| {
            decode::<wire::OrderAck>(&raw(b), ctx(RequestKind::Write), false).map(|_| ())
        }),
        (
            "place_order_official",
            fixture!("place_order_official.json"),
            |b| decode::<wire::OrderAck>(&raw(b), ctx(RequestKind::Write), false).map(|_| ()),
        ),
        ("place_algo_order", fixture!("place_algo_order.json"), |b| {
            decode::<wire::AlgoAck>(&raw(b), ctx(RequestKind::Write), false).map(|_| ())
        }),
        ("cancel_order", fixture!("cancel_order.json"), |b| {
            decode::<BatchItem>(&raw(b), ctx(RequestKind::Write), false).map(|_| ())
        }),
        ("cancel_algos", fixture!("cancel_algos.json"), |b| {
            decode::<BatchItem>(&raw(b), ctx(RequestKind::Write), true).map(|_| ())
        }),
        ("account_config", fixture!("account_config.json"), |b| {
            decode::<wire::AccountConfig>(&raw(b), ctx(RequestKind::Read), false).map(|_| ())
        }),
        ("set_leverage", fixture!("set_leverage.json"), |b| {
            decode::<wire::SetLeverageAck>(&raw(b), ctx(RequestKind::Read), false).map(|_| ())
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
fn per_order_error_inside_data_wins_over_the_top_level_code() {
    let err = decode::<wire::OrderAck>(
        &raw(fixture!("error_insufficient_margin.json")),
        ctx(RequestKind::Write),
        false,
    )
    .unwrap_err();
    assert_eq!(err.kind(), "insufficient_margin", "{err}");
}

#[test]
fn non_json_bodies_use_the_http_status() {
    let mut r = raw("<html>bad gateway</html>");
    r.status = StatusCode::BAD_GATEWAY;
    let read = decode::<wire::Ticker>(&r, ctx(RequestKind::Read), false).unwrap_err();
    let write = decode::<wire::OrderAck>(&r, ctx(RequestKind::Write), false).unwrap_err();
    assert_eq!(read.kind(), "unavailable");
    assert_eq!(write.kind(), "outcome_unknown");
    r.status = StatusCode::OK;
    let ok_status = decode::<wire::Ticker>(&r, ctx(RequestKind::Read), false).unwrap_err();
    assert_eq!(ok_status.kind(), "malformed_response");
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
}
