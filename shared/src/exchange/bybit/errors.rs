//! Bybit retCodes and HTTP statuses mapped onto `ExchangeError`, in one place, so every endpoint
//! reports the same failure the same way.

use std::time::Duration;

use crate::exchange::ExchangeError;
use crate::exchange::http::{RawResponse, RequestKind, truncate};

use super::VENUE;

/// How long Bybit asks a banned IP to stay away after HTTP 403 "access too frequent".
pub(crate) const IP_BAN: Duration = Duration::from_secs(600);

/// retCode 110043 "Set leverage has not been modified": success for `set_leverage`.
pub(crate) const LEVERAGE_NOT_MODIFIED: i64 = 110_043;

/// What the caller was doing when the venue answered with a non-zero retCode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub kind: RequestKind,
    /// The venue symbol the request was about, for `UnknownSymbol`.
    pub symbol: Option<&'a str>,
    /// When the per-UID limit window resets (from `X-Bapi-Limit-Reset-Timestamp`).
    pub limit_reset_in: Option<Duration>,
}

/// The one mapping of documented Bybit retCodes.
pub(crate) fn from_ret_code(code: i64, message: &str, ctx: Context<'_>) -> ExchangeError {
    let venue = VENUE;
    let message = format!("retCode {code}: {}", truncate(message, 300));
    match code {
        // Request time outside recv_window / request expired: resync the clock and retry.
        10002 | -1 => ExchangeError::TimestampOutOfWindow { venue, message },
        // Per-UID endpoint limit ("Too many visits") and IP-level frequency limit.
        10006 | 10018 => ExchangeError::RateLimited {
            venue,
            retry_after: ctx.limit_reset_in,
            message,
        },
        // Invalid key (or key/host environment mismatch), bad signature, auth failed.
        10003 | 10004 | 10007 => ExchangeError::Auth { venue, message },
        // Key lacks the permission, or the request IP is not bound to the key.
        10005 | 10010 => ExchangeError::Permission { venue, message },
        // Wallet / available balance / available margin insufficient.
        110004 | 110007 | 110012 | 110044 | 110045 => {
            ExchangeError::InsufficientMargin { venue, message }
        }
        // OrderLinkedID is duplicate; invalid duplicate request.
        110072 | 10014 => ExchangeError::DuplicateClientOrderId { venue, message },
        // Order does not exist; order already completed or cancelled.
        110001 | 110008 => ExchangeError::OrderNotFound { venue, message },
        // Generic parameter error: Bybit reports unknown symbols through it.
        10001 if mentions_symbol(&message) => ExchangeError::UnknownSymbol {
            venue,
            symbol: ctx.symbol.unwrap_or_default().to_string(),
            message,
        },
        10001 => ExchangeError::InvalidOrder { venue, message },
        // Quantity truncated to zero, notional under the minimum, price out of range or outside
        // the price limits, trigger direction against the current price, too many stop orders.
        110017 | 110094 | 110003 | 30208 | 30209 | 110092 | 110093 | 110009 => {
            ExchangeError::InvalidOrder { venue, message }
        }
        // Server error / timeout / "order is processing, try again later": the venue did not
        // answer the request; for a write we cannot know whether it was applied.
        10016 | 10000 | 110079 => match ctx.kind {
            RequestKind::Read => ExchangeError::Unavailable { venue, message },
            RequestKind::Write => ExchangeError::OutcomeUnknown { venue, message },
        },
        // "Position mode not modified" and "leverage not modified" are answers the callers that
        // care about them handle themselves; elsewhere they stay venue errors.
        110025 | LEVERAGE_NOT_MODIFIED => ExchangeError::Venue {
            venue,
            code: code.to_string(),
            message,
        },
        _ => ExchangeError::Venue {
            venue,
            code: code.to_string(),
            message,
        },
    }
}

fn mentions_symbol(message: &str) -> bool {
    message.to_ascii_lowercase().contains("symbol")
}

/// The error an HTTP status means on Bybit, when it is not a success.
/// 403 is the IP ban ("access too frequent", wait at least 10 minutes).
pub(crate) fn from_status(raw: &RawResponse, kind: RequestKind) -> Option<ExchangeError> {
    if raw.status.is_success() {
        return None;
    }
    match raw.status.as_u16() {
        403 => Some(ExchangeError::RateLimited {
            venue: VENUE,
            retry_after: Some(IP_BAN),
            message: format!(
                "HTTP 403 (IP rate limit ban or blocked region): {}",
                truncate(&raw.body, 300)
            ),
        }),
        _ => raw.status_error(VENUE, kind),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exchange::Recovery;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn ctx(kind: RequestKind) -> Context<'static> {
        Context {
            kind,
            symbol: Some("BTCUSDT"),
            limit_reset_in: None,
        }
    }

    #[test]
    fn documented_codes_map_to_their_class() {
        let r = RequestKind::Read;
        let cases: &[(i64, &str, &str)] = &[
            (10002, "req time out of window", "timestamp_out_of_window"),
            (10006, "Too many visits", "rate_limited"),
            (10003, "API key is invalid", "auth"),
            (10004, "Error sign", "auth"),
            (10005, "Permission denied", "permission"),
            (10010, "Unmatched IP", "permission"),
            (
                110007,
                "Available balance is insufficient",
                "insufficient_margin",
            ),
            (
                110044,
                "Available margin is insufficient",
                "insufficient_margin",
            ),
            (
                110072,
                "OrderLinkedID is duplicate",
                "duplicate_client_order_id",
            ),
            (110001, "Order does not exist", "order_not_found"),
            (10001, "params error: symbol invalid", "unknown_symbol"),
            (10001, "params error: qty", "invalid_order"),
            (
                110017,
                "orderQty will be truncated to zero",
                "invalid_order",
            ),
            (
                110094,
                "Order notional value below the lower limit",
                "invalid_order",
            ),
            (10016, "Server error", "unavailable"),
            (110043, "leverage not modified", "venue"),
            (987654, "something new", "venue"),
        ];
        for (code, msg, kind) in cases {
            let e = from_ret_code(*code, msg, ctx(r));
            assert_eq!(e.kind(), *kind, "retCode {code}");
            assert!(e.to_string().contains(&code.to_string()), "{e}");
        }
    }

    #[test]
    fn server_errors_on_writes_are_outcome_unknown() {
        let e = from_ret_code(10016, "Server error", ctx(RequestKind::Write));
        assert_eq!(e.recovery(), Recovery::Reconcile);
    }

    #[test]
    fn unknown_symbol_names_the_symbol() {
        let e = from_ret_code(10001, "Symbol Is Invalid", ctx(RequestKind::Read));
        assert!(
            matches!(e, ExchangeError::UnknownSymbol { ref symbol, .. } if symbol == "BTCUSDT")
        );
    }

    #[test]
    fn http_403_is_a_ten_minute_ban() {
        let raw = RawResponse {
            status: StatusCode::FORBIDDEN,
            headers: HeaderMap::new(),
            body: "access too frequent".into(),
        };
        let e = from_status(&raw, RequestKind::Read).unwrap();
        assert_eq!(e.kind(), "rate_limited");
        assert_eq!(e.retry_after(), Some(IP_BAN));
        let ok = RawResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: String::new(),
        };
        assert!(from_status(&ok, RequestKind::Read).is_none());
    }
}
