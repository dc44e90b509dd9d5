//! HTX error codes -> `ExchangeError`, in one `match`. Codes come from the V5 envelope (`code`
//! other than 200), from v1/market envelopes (`status: "error"` with `err_code`, or the gateway's
//! hyphenated `err-code`), or from per-order items of batch answers.
//!
//! The numeric codes are the documented USDT-swap ones; V5 answers were seen to reuse the same
//! numeric space, but no V5 error table was available: codes not listed here come back as
//! `ExchangeError::Venue` with the code and message, so nothing is silently misclassified.

use crate::exchange::ExchangeError;
use crate::exchange::http::RequestKind;

use super::VENUE;

/// Where an error happened, for the message (and the symbol of `UnknownSymbol`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorContext<'a> {
    pub endpoint: &'a str,
    pub contract_code: Option<&'a str>,
    pub kind: RequestKind,
}

/// A duplicate-client-id rejection whose code we do not know (V5 has not published its table):
/// recognised by its text, e.g. "Customer's order number is repeated".
fn says_duplicate_client_id(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    (m.contains("client") || m.contains("customer"))
        && (m.contains("repeat") || m.contains("duplicat"))
}

/// An unknown-order answer whose code we do not know (V5), recognised by its text, e.g.
/// "This order doesn't exist." Without this a V5 look-up of a fresh client id would block
/// every placement with a permanent error.
fn says_order_missing(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("order")
        && (m.contains("not exist") || m.contains("n't exist") || m.contains("not found"))
}

/// The one mapping of an HTX code to an error. Success codes (200 / `ok`) must not get here.
pub(super) fn map_code(code: &str, msg: &str, ctx: ErrorContext<'_>) -> ExchangeError {
    let venue = VENUE;
    let message = format!("{} (code {code}): {msg}", ctx.endpoint);
    match code {
        // Access frequency over the limit (numeric and gateway forms), HTTP 429 in the body.
        "1032" | "rate-too-many-requests" | "base-request-exceed-frequency-limit" | "429" => {
            ExchangeError::RateLimited {
                venue,
                retry_after: None,
                message,
            }
        }
        // Invalid submission time: resync the clock and sign again.
        "12001" | "api-timestamp-invalid" => ExchangeError::TimestampOutOfWindow { venue, message },
        // Verification failed, key expired, gateway signature/key errors.
        "12008" | "12004" | "api-signature-not-valid" | "api-key-invalid" | "403" => {
            ExchangeError::Auth { venue, message }
        }
        // Contract API disabled for this account (order-cancel-ratio ban).
        "1084" => ExchangeError::Permission { venue, message },
        "1047" => ExchangeError::InsufficientMargin { venue, message },
        "1050" => ExchangeError::DuplicateClientOrderId { venue, message },
        // Order does not exist, no orders to cancel, repeated cancellation, already executed.
        "1017" | "1061" | "1051" | "1071" | "1063" => {
            ExchangeError::OrderNotFound { venue, message }
        }
        // Price precision/limits, amount, illegal parameter, client id not an integer, close
        // amount larger than the position (an order problem, not a margin one).
        "1038" | "1039" | "1040" | "1041" | "1048" | "1065" | "1067" => {
            ExchangeError::InvalidOrder { venue, message }
        }
        // Contract type / contract does not exist.
        "1013" | "1014" => ExchangeError::UnknownSymbol {
            venue,
            symbol: ctx.contract_code.unwrap_or("?").to_string(),
            message,
        },
        // System error, not ready, query error, busy, settlement windows, maintenance. A write
        // that got one of these may still have been executed.
        "1000" | "1001" | "1002" | "1004" | "1056" | "1077" | "1078" | "1079" | "1080"
        | "maintain" => match ctx.kind {
            RequestKind::Read => ExchangeError::Unavailable { venue, message },
            RequestKind::Write => ExchangeError::OutcomeUnknown { venue, message },
        },
        _ if says_duplicate_client_id(msg) => {
            ExchangeError::DuplicateClientOrderId { venue, message }
        }
        _ if says_order_missing(msg) => ExchangeError::OrderNotFound { venue, message },
        other => ExchangeError::Venue {
            venue,
            code: other.to_string(),
            message,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx(kind: RequestKind) -> ErrorContext<'static> {
        ErrorContext {
            endpoint: "/v5/trade/order",
            contract_code: Some("BTC-USDT"),
            kind,
        }
    }

    #[test]
    fn documented_codes_map_to_their_class() {
        let cases = [
            ("1032", "rate_limited"),
            ("rate-too-many-requests", "rate_limited"),
            ("12001", "timestamp_out_of_window"),
            ("12008", "auth"),
            ("api-signature-not-valid", "auth"),
            ("1084", "permission"),
            ("1047", "insufficient_margin"),
            ("1050", "duplicate_client_order_id"),
            ("1061", "order_not_found"),
            ("1017", "order_not_found"),
            ("1040", "invalid_order"),
            ("1067", "invalid_order"),
            ("1014", "unknown_symbol"),
            ("1085", "venue"),
        ];
        for (code, kind) in cases {
            assert_eq!(
                map_code(code, "m", ctx(RequestKind::Read)).kind(),
                kind,
                "code {code}"
            );
        }
    }

    #[test]
    fn system_codes_depend_on_request_kind() {
        for code in ["1000", "1004", "1056", "maintain"] {
            assert_eq!(
                map_code(code, "busy", ctx(RequestKind::Read)).kind(),
                "unavailable"
            );
            assert_eq!(
                map_code(code, "busy", ctx(RequestKind::Write)).kind(),
                "outcome_unknown"
            );
        }
    }

    #[test]
    fn unknown_code_with_duplicate_text_is_a_duplicate() {
        let e = map_code("4002", "The order does not exist", ctx(RequestKind::Read));
        assert_eq!(e.kind(), "order_not_found");
        let e = map_code(
            "4001",
            "Customer's order number is repeated. Please try again later.",
            ctx(RequestKind::Write),
        );
        assert_eq!(e.kind(), "duplicate_client_order_id");
        match map_code(
            "1014",
            "This contract doesn't exist.",
            ctx(RequestKind::Read),
        ) {
            ExchangeError::UnknownSymbol {
                symbol, message, ..
            } => {
                assert_eq!(symbol, "BTC-USDT");
                assert!(message.contains("1014"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
