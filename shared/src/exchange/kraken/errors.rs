//! Kraken Futures error codes (envelope `error`, `sendStatus.status`, `cancelStatus.status` and the
//! upper-case `OrderError` names) mapped onto `ExchangeError` in one place.

use std::time::Duration;

use super::VENUE;
use crate::exchange::ExchangeError;
use crate::exchange::http::RequestKind;

/// What a Kraken code means to a caller. `kind` matters only for codes whose effect on a write is
/// unknown (server-side failures).
pub(super) fn map_code(code: &str, context: &str, kind: RequestKind) -> ExchangeError {
    let message = if context.is_empty() {
        code.to_string()
    } else {
        format!("{code} ({context})")
    };
    let venue = VENUE;
    match code {
        "apiLimitExceeded" | "tooManyRequests" => ExchangeError::RateLimited {
            venue,
            // Kraken's cost budget refills over 10 s; it sends no Retry-After.
            retry_after: Some(Duration::from_secs(1)),
            message,
        },
        // Rejected before anything ran: re-signing with a fresh nonce and retrying is safe.
        "nonceBelowThreshold" | "nonceDuplicate" => {
            ExchangeError::TimestampOutOfWindow { venue, message }
        }
        "authenticationError" | "invalidKey" | "invalidSignature" | "apiKeyInvalid" => {
            ExchangeError::Auth { venue, message }
        }
        "accountInactive" | "permissionDenied" | "insufficientPermissions" => {
            ExchangeError::Permission { venue, message }
        }
        "insufficientAvailableFunds"
        | "insufficientFunds"
        | "wouldCauseLiquidation"
        | "INSUFFICIENT_MARGIN"
        | "INSUFFICIENT_CLOSING_MARGIN"
        | "WOULD_CAUSE_LIQUIDATION" => ExchangeError::InsufficientMargin { venue, message },
        "clientOrderIdAlreadyExist" | "CLIENT_ORDER_ID_IN_USE" => {
            ExchangeError::DuplicateClientOrderId { venue, message }
        }
        "notFound"
        | "orderForEditNotFound"
        | "ORDER_FOR_CANCELLATION_NOT_FOUND"
        | "ORDER_FOR_EDIT_NOT_FOUND" => ExchangeError::OrderNotFound { venue, message },
        "invalidArgument"
        | "requiredArgumentMissing"
        | "invalidSize"
        | "invalidPrice"
        | "invalidAmount"
        | "invalidUnit"
        | "Json Parse Error"
        | "invalidOrderType"
        | "invalidSide"
        | "postWouldExecute"
        | "iocWouldNotExecute"
        | "wouldNotReducePosition"
        | "selfFill"
        | "outsidePriceCollar"
        | "wouldIncreasePriceDislocation"
        | "maxPositionViolation"
        | "tooManySmallOrders"
        | "tooManyOrders"
        | "marketIsPostOnly"
        | "fixedLeverageTooHigh"
        | "clientOrderIdTooBig"
        | "clientOrderIdTooLong"
        | "clientOrderIdInvalid"
        | "orderForEditNotAStop"
        | "INVALID_PRICE"
        | "INVALID_QUANTITY"
        | "POST_WOULD_EXECUTE"
        | "IOC_WOULD_NOT_EXECUTE"
        | "WOULD_NOT_REDUCE_POSITION"
        | "WOULD_EXECUTE_SELF"
        | "PRICE_COLLAR"
        | "MAX_POSITION_EXCEEDED"
        | "SMALL_ORDER_LIMIT_EXCEEDED"
        | "CLIENT_ORDER_ID_TOO_LONG" => ExchangeError::InvalidOrder { venue, message },
        "contractNotFound" | "MARKET_NOT_FOUND" => ExchangeError::UnknownSymbol {
            venue,
            symbol: context.to_string(),
            message,
        },
        // The venue says it did not process the request: safe to try again later, even a write.
        "marketSuspended"
        | "marketInactive"
        | "marketUnavailable"
        | "MARKET_SUSPENDED"
        | "wouldProcessAfterSpecifiedTime" => ExchangeError::Unavailable { venue, message },
        // Server-side failures: nothing is proven about a write.
        "Unavailable" | "Server Error" | "unknownError" => match kind {
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
mod tests {
    use super::*;

    #[test]
    fn every_error_class_has_a_code() {
        let read = RequestKind::Read;
        let cases = [
            ("apiLimitExceeded", "rate_limited"),
            ("nonceBelowThreshold", "timestamp_out_of_window"),
            ("nonceDuplicate", "timestamp_out_of_window"),
            ("authenticationError", "auth"),
            ("invalidKey", "auth"),
            ("accountInactive", "permission"),
            ("insufficientAvailableFunds", "insufficient_margin"),
            ("INSUFFICIENT_MARGIN", "insufficient_margin"),
            ("clientOrderIdAlreadyExist", "duplicate_client_order_id"),
            ("notFound", "order_not_found"),
            ("orderForEditNotFound", "order_not_found"),
            ("invalidSize", "invalid_order"),
            ("invalidArgument", "invalid_order"),
            ("postWouldExecute", "invalid_order"),
            ("iocWouldNotExecute", "invalid_order"),
            ("marketSuspended", "unavailable"),
            ("marketUnavailable", "unavailable"),
            ("contractNotFound", "unknown_symbol"),
            ("somethingNew", "venue"),
        ];
        for (code, kind) in cases {
            assert_eq!(map_code(code, "", read).kind(), kind, "{code}");
        }
        assert_eq!(map_code("Server Error", "", read).kind(), "unavailable");
        assert_eq!(
            map_code("Server Error", "", RequestKind::Write).kind(),
            "outcome_unknown"
        );
    }
}
