//! Bitget error codes -> `ExchangeError`, in one `match`. Codes come from the `code` of the
//! envelope (`"00000"` is success and never gets here) or, for batch cancels, per item.

use crate::exchange::ExchangeError;
use crate::exchange::http::RequestKind;

use super::VENUE;

/// Where an error happened, for the message (and the symbol of `UnknownSymbol`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorContext<'a> {
    pub endpoint: &'a str,
    pub symbol: Option<&'a str>,
    pub kind: RequestKind,
}

/// What a user of a Unified Trading Account has to know: this adapter speaks the classic V2 API.
pub(super) const UNIFIED_ACCOUNT_HELP: &str = "this Bitget account is in Unified Trading Account \
    (UTA) mode, which the classic V2 futures API used by tradefleet does not serve; switch the \
    account back to the classic account mode on bitget.com (or use a classic sub-account) and \
    try again";

/// The one mapping of a Bitget code to an error.
pub(super) fn map_code(code: &str, msg: &str, ctx: ErrorContext<'_>) -> ExchangeError {
    let venue = VENUE;
    let message = format!("{} (code {code}): {msg}", ctx.endpoint);
    match code {
        // HTTP 429 mirrored in the body, and the "too many requests" code.
        "429" | "1001" | "40010" => ExchangeError::RateLimited {
            venue,
            retry_after: None,
            message,
        },
        // Timestamp missing, invalid or outside the window: resync the clock and try again.
        "40004" | "40005" | "40008" => ExchangeError::TimestampOutOfWindow { venue, message },
        // Credentials: missing key/sign/passphrase headers, invalid key, bad signature, wrong
        // passphrase, key/passphrase mismatch, key gone.
        "40001" | "40002" | "40003" | "40006" | "40009" | "40011" | "40012" | "40037" => {
            ExchangeError::Auth { venue, message }
        }
        // A demo key on the live environment or the reverse.
        "40099" => ExchangeError::Auth {
            venue,
            message: format!(
                "{message} (a demo-trading key needs the testnet/demo setting, a live key must \
                 not have it)"
            ),
        },
        // Unified account: the classic V2 API is refused for the whole account.
        "40085" => ExchangeError::Permission {
            venue,
            message: format!("{UNIFIED_ACCOUNT_HELP} ({message})"),
        },
        // Valid key that may not do this: abnormal user status, missing permission, phone or
        // Google binding required, IP not whitelisted.
        "40013" | "40014" | "40016" | "40018" => ExchangeError::Permission { venue, message },
        // Not enough balance or margin.
        "40754" | "40762" | "40711" | "40712" | "43012" => {
            ExchangeError::InsufficientMargin { venue, message }
        }
        "40786" => ExchangeError::DuplicateClientOrderId { venue, message },
        // The order (or plan order) does not exist, or there is nothing to cancel.
        "40768" | "40109" | "43001" | "43025" | "22001" => {
            ExchangeError::OrderNotFound { venue, message }
        }
        // Client id format, parameters, sizes and prices.
        "40305" | "40500" => ExchangeError::InvalidOrder {
            venue,
            message: format!("{message} (client order id rejected)"),
        },
        "40017" | "40019" | "40020" | "40108" | "40808" | "41103" | "45110" => {
            ExchangeError::InvalidOrder { venue, message }
        }
        // Hedge-mode account answering a one-way order (or the reverse).
        "40774" => ExchangeError::InvalidOrder {
            venue,
            message: format!(
                "{message} (the account's position mode does not match: tradefleet trades \
                 one-way mode; switch the USDT-FUTURES position mode to one-way)"
            ),
        },
        // Symbol or contract configuration unknown.
        "40034" | "40102" => ExchangeError::UnknownSymbol {
            venue,
            symbol: ctx.symbol.unwrap_or("?").to_string(),
            message,
        },
        // System abnormal or being upgraded: a write that got one of these may have been executed.
        "40015" | "40200" => match ctx.kind {
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
            endpoint: "/api/v2/mix/order/place-order",
            symbol: Some("BTCUSDT"),
            kind,
        }
    }

    #[test]
    fn documented_codes_map_to_their_class() {
        let cases = [
            ("429", "rate_limited"),
            ("40008", "timestamp_out_of_window"),
            ("40005", "timestamp_out_of_window"),
            ("40009", "auth"),
            ("40006", "auth"),
            ("40012", "auth"),
            ("40099", "auth"),
            ("40085", "permission"),
            ("40018", "permission"),
            ("40762", "insufficient_margin"),
            ("43012", "insufficient_margin"),
            ("40786", "duplicate_client_order_id"),
            ("40768", "order_not_found"),
            ("43025", "order_not_found"),
            ("40305", "invalid_order"),
            ("40808", "invalid_order"),
            ("45110", "invalid_order"),
            ("40774", "invalid_order"),
            ("40034", "unknown_symbol"),
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
    fn system_errors_depend_on_request_kind() {
        for code in ["40015", "40200"] {
            assert_eq!(
                map_code(code, "x", ctx(RequestKind::Read)).kind(),
                "unavailable"
            );
            assert_eq!(
                map_code(code, "x", ctx(RequestKind::Write)).kind(),
                "outcome_unknown"
            );
        }
    }

    #[test]
    fn unified_account_explains_the_account_mode() {
        let e = map_code("40085", "classic API not supported", ctx(RequestKind::Read));
        let text = e.to_string();
        assert!(text.contains("Unified Trading Account"), "{text}");
        assert!(text.contains("classic"), "{text}");
        assert!(text.contains("40085"), "{text}");
    }
}
