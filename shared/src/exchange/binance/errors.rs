//! Binance error codes -> `ExchangeError`, in one `match`, plus the decoding of every response
//! (status, `{"code","msg"}` body, or the expected JSON) so no caller interprets raw bodies.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::VENUE;
use super::wire::ApiError;
use crate::exchange::ExchangeError;
use crate::exchange::http::{RawResponse, RequestKind, truncate};

/// Map one documented Binance error code. `retry_after` comes from the response header;
/// `kind` decides whether a lost-in-the-backend answer is "retry" (read) or "reconcile" (write).
pub(crate) fn map_code(
    code: i64,
    msg: &str,
    kind: RequestKind,
    retry_after: Option<Duration>,
    symbol: Option<&str>,
) -> ExchangeError {
    let venue = VENUE;
    let message = format!("{code} {}", truncate(msg, 300));
    match code {
        // TOO_MANY_REQUESTS, TOO_MANY_ORDERS
        -1003 | -1015 => ExchangeError::RateLimited {
            venue,
            retry_after,
            message,
        },
        // INVALID_TIMESTAMP: outside recvWindow or ahead of the server.
        -1021 => ExchangeError::TimestampOutOfWindow { venue, message },
        // UNAUTHORIZED, INVALID_SIGNATURE, BAD_API_KEY_FMT
        -1002 | -1022 | -2014 => ExchangeError::Auth { venue, message },
        // REJECTED_MBX_KEY: invalid key, IP not whitelisted, or no permission for the action.
        -2015 => ExchangeError::Permission { venue, message },
        // MARGIN_NOT_SUFFICIEN, BALANCE_NOT_SUFFICIENT, max position at this leverage, margin check.
        -2018 | -2019 | -2027 | -2028 => ExchangeError::InsufficientMargin { venue, message },
        // DUPLICATED_CLIENT_ORDER_ID
        -4116 => ExchangeError::DuplicateClientOrderId { venue, message },
        // Unknown order sent (cancel), NO_SUCH_ORDER "Order does not exist." (query).
        -2011 | -2013 => ExchangeError::OrderNotFound { venue, message },
        // Bad parameters, precision, quantity, price, notional, reduce-only, trigger, order type.
        -1013 | -1100 | -1102 | -1106 | -1111 | -1116 | -1117 | -1130 | -2021 | -2022 | -4003
        | -4004 | -4005 | -4014 | -4015 | -4023 | -4028 | -4120 | -4164 => {
            ExchangeError::InvalidOrder { venue, message }
        }
        // Invalid symbol.
        -1121 => ExchangeError::UnknownSymbol {
            venue,
            symbol: symbol.unwrap_or_default().to_string(),
            message,
        },
        // UNKNOWN, DISCONNECTED, message-bus error, TIMEOUT ("execution status unknown"): a write
        // may have happened.
        -1000 | -1001 | -1006 | -1007 => match kind {
            RequestKind::Read => ExchangeError::Unavailable { venue, message },
            RequestKind::Write => ExchangeError::OutcomeUnknown { venue, message },
        },
        // SERVER_BUSY: rejected before execution.
        -1008 => ExchangeError::Unavailable { venue, message },
        _ => ExchangeError::Venue {
            venue,
            code: code.to_string(),
            message: truncate(msg, 300).to_string(),
        },
    }
}

/// Turn one response into `T` or the error it reports.
///
/// Order of precedence: 429/418 are rate limits whatever the body says; a `{"code","msg"}` body
/// with a negative code is mapped by [`map_code`]; other failures use the HTTP status; a success
/// body that is not the expected JSON is `Malformed`.
pub(crate) fn decode<T: DeserializeOwned>(
    raw: &RawResponse,
    endpoint: &str,
    kind: RequestKind,
    symbol: Option<&str>,
) -> Result<T, ExchangeError> {
    let status = raw.status.as_u16();
    let api_error = serde_json::from_str::<ApiError>(&raw.body)
        .ok()
        .filter(|e| e.code < 0);
    if status == 429 || status == 418 {
        let detail = api_error
            .map(|e| format!("{} {}", e.code, truncate(&e.msg, 300)))
            .unwrap_or_else(|| truncate(&raw.body, 300).to_string());
        let what = if status == 418 {
            "IP banned"
        } else {
            "too many requests"
        };
        return Err(ExchangeError::RateLimited {
            venue: VENUE,
            retry_after: raw.retry_after(),
            message: format!("HTTP {status} ({what}) on {endpoint}: {detail}"),
        });
    }
    if let Some(e) = api_error {
        let mapped = map_code(e.code, &e.msg, kind, raw.retry_after(), symbol);
        // An unmapped code on a 5xx keeps the status meaning (a write's outcome is unknown).
        if matches!(mapped, ExchangeError::Venue { .. })
            && let Some(by_status) = raw.status_error(VENUE, kind)
            && status >= 500
        {
            return Err(by_status);
        }
        return Err(mapped);
    }
    // 408: the gateway gave up waiting for the backend, which may still execute the request.
    if status == 408 {
        let message = format!("HTTP 408 on {endpoint}: {}", truncate(&raw.body, 300));
        return Err(match kind {
            RequestKind::Read => ExchangeError::Unavailable {
                venue: VENUE,
                message,
            },
            RequestKind::Write => ExchangeError::OutcomeUnknown {
                venue: VENUE,
                message,
            },
        });
    }
    if let Some(e) = raw.status_error(VENUE, kind) {
        return Err(e);
    }
    serde_json::from_str::<T>(&raw.body)
        .map_err(|e| ExchangeError::malformed(VENUE, endpoint, e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    #[test]
    fn every_documented_code_has_its_variant() {
        let cases: &[(i64, &str)] = &[
            (-1003, "rate_limited"),
            (-1015, "rate_limited"),
            (-1021, "timestamp_out_of_window"),
            (-1022, "auth"),
            (-2014, "auth"),
            (-2015, "permission"),
            (-2019, "insufficient_margin"),
            (-2018, "insufficient_margin"),
            (-2027, "insufficient_margin"),
            (-4116, "duplicate_client_order_id"),
            (-2011, "order_not_found"),
            (-2013, "order_not_found"),
            (-1111, "invalid_order"),
            (-1013, "invalid_order"),
            (-4003, "invalid_order"),
            (-4004, "invalid_order"),
            (-4014, "invalid_order"),
            (-4023, "invalid_order"),
            (-4164, "invalid_order"),
            (-4120, "invalid_order"),
            (-2021, "invalid_order"),
            (-2022, "invalid_order"),
            (-1121, "unknown_symbol"),
            (-1008, "unavailable"),
            (-9999, "venue"),
        ];
        for (code, kind) in cases {
            let e = map_code(*code, "m", RequestKind::Write, None, Some("BTCUSDT"));
            assert_eq!(e.kind(), *kind, "code {code}");
        }
        assert_eq!(
            map_code(-1001, "m", RequestKind::Read, None, None).kind(),
            "unavailable"
        );
        assert_eq!(
            map_code(-1007, "m", RequestKind::Write, None, None).kind(),
            "outcome_unknown"
        );
    }

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.to_string(),
        }
    }

    #[test]
    fn decode_prefers_codes_then_status_then_body() {
        let e = decode::<serde_json::Value>(
            &raw(400, r#"{"code":-1121,"msg":"Invalid symbol."}"#),
            "/x",
            RequestKind::Read,
            Some("FOOUSDT"),
        )
        .unwrap_err();
        assert!(
            matches!(e, ExchangeError::UnknownSymbol { ref symbol, .. } if symbol == "FOOUSDT")
        );
        let e = decode::<serde_json::Value>(&raw(503, "oops"), "/x", RequestKind::Write, None)
            .unwrap_err();
        assert_eq!(e.kind(), "outcome_unknown");
        let e = decode::<Vec<i64>>(&raw(200, "[1,"), "/x", RequestKind::Read, None).unwrap_err();
        assert_eq!(e.kind(), "malformed_response");
        // Unmapped codes keep the meaning of a 5xx; 408 is a backend timeout.
        let e = decode::<serde_json::Value>(
            &raw(502, r#"{"code":-1099,"msg":"?"}"#),
            "/x",
            RequestKind::Write,
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind(), "outcome_unknown");
        let e = decode::<serde_json::Value>(
            &raw(400, r#"{"code":-1099,"msg":"?"}"#),
            "/x",
            RequestKind::Write,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, ExchangeError::Venue { ref code, .. } if code == "-1099"));
        for (kind, want) in [
            (RequestKind::Read, "unavailable"),
            (RequestKind::Write, "outcome_unknown"),
        ] {
            let e = decode::<serde_json::Value>(&raw(408, ""), "/x", kind, None).unwrap_err();
            assert_eq!(e.kind(), want);
        }
        let ok: serde_json::Value = decode(
            &raw(200, r#"{"code":200,"msg":"done"}"#),
            "/x",
            RequestKind::Write,
            None,
        )
        .unwrap();
        assert_eq!(ok["code"], 200);
    }
}
