//! OKX error codes -> `ExchangeError`, in one `match`. Codes come from the top-level `code` of the
//! envelope or, for trade endpoints, from the per-order `data[].sCode`.

use crate::exchange::ExchangeError;
use crate::exchange::http::RequestKind;

use super::VENUE;

/// Where an error happened, for the message (and the symbol of `UnknownSymbol`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorContext<'a> {
    pub endpoint: &'a str,
    pub inst_id: Option<&'a str>,
    pub kind: RequestKind,
}

/// The one mapping of an OKX code to an error. `code` "0" is not an error and must not get here.
pub(super) fn map_code(code: &str, msg: &str, ctx: ErrorContext<'_>) -> ExchangeError {
    let venue = VENUE;
    let message = format!("{} (code {code}): {msg}", ctx.endpoint);
    match code {
        // Rate limits: general, sub-account order limit, "too frequent".
        "50011" | "50061" | "50040" => ExchangeError::RateLimited {
            venue,
            retry_after: None,
            message,
        },
        // Request timestamp expired: resync the clock and try again.
        "50102" => ExchangeError::TimestampOutOfWindow { venue, message },
        // Credentials: environment mismatch (demo key on live or the reverse), missing or invalid
        // headers, wrong passphrase, invalid key, malformed timestamp, bad signature, key gone.
        "50101" | "50103" | "50104" | "50105" | "50106" | "50107" | "50111" | "50112" | "50113"
        | "50114" | "50119" => ExchangeError::Auth { venue, message },
        // The key is valid but may not do this: frozen key, IP not whitelisted, account blocked or
        // restricted, no permission for the endpoint, order placement blocked.
        "50100" | "50110" | "50007" | "50009" | "50012" | "50030" | "50120" | "51009" => {
            ExchangeError::Permission { venue, message }
        }
        // Not enough margin or balance.
        "51008" | "51119" | "51127" | "51131" => {
            ExchangeError::InsufficientMargin { venue, message }
        }
        "51016" => ExchangeError::DuplicateClientOrderId { venue, message },
        // Order does not exist, or is already filled/canceled/gone.
        "51603" | "51400" | "51401" | "51402" | "51503" => {
            ExchangeError::OrderNotFound { venue, message }
        }
        // Parameters, sizes, prices and order rules.
        "50014" | "51000" | "51004" | "51005" | "51006" | "51007" | "51010" | "51020" | "51120"
        | "51121" | "51122" | "51150" | "51201" | "51202" | "51203" => {
            ExchangeError::InvalidOrder { venue, message }
        }
        // Instrument unknown, not of this type, expired or suspended.
        "51001" | "51015" | "51027" | "51028" | "51029" | "51030" => ExchangeError::UnknownSymbol {
            venue,
            symbol: ctx.inst_id.unwrap_or("?").to_string(),
            message,
        },
        // Service unavailable, endpoint timeout, API offline, busy, system error. A write that got
        // one of these may still have been executed.
        "50001" | "50004" | "50005" | "50013" | "50026" => match ctx.kind {
            RequestKind::Read => ExchangeError::Unavailable { venue, message },
            RequestKind::Write => ExchangeError::OutcomeUnknown { venue, message },
        },
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
            endpoint: "/api/v5/trade/order",
            inst_id: Some("BTC-USDT-SWAP"),
            kind,
        }
    }

    #[test]
    fn documented_codes_map_to_their_class() {
        let cases = [
            ("50011", "rate_limited"),
            ("50061", "rate_limited"),
            ("50102", "timestamp_out_of_window"),
            ("50111", "auth"),
            ("50113", "auth"),
            ("50105", "auth"),
            ("50101", "auth"),
            ("50110", "permission"),
            ("50030", "permission"),
            ("51008", "insufficient_margin"),
            ("51016", "duplicate_client_order_id"),
            ("51603", "order_not_found"),
            ("51400", "order_not_found"),
            ("51000", "invalid_order"),
            ("51121", "invalid_order"),
            ("51120", "invalid_order"),
            ("51150", "invalid_order"),
            ("51001", "unknown_symbol"),
            ("99999", "venue"),
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
    fn busy_codes_depend_on_request_kind() {
        for code in ["50001", "50004", "50013", "50026"] {
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
    fn unknown_symbol_names_the_instrument_and_messages_keep_the_code() {
        match map_code(
            "51001",
            "Instrument ID does not exist",
            ctx(RequestKind::Read),
        ) {
            ExchangeError::UnknownSymbol {
                symbol, message, ..
            } => {
                assert_eq!(symbol, "BTC-USDT-SWAP");
                assert!(message.contains("51001") && message.contains("does not exist"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
