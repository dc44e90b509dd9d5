//! Exchange errors that tell the caller what it can do: retry, give up, or reconcile an unknown outcome.

use std::time::Duration;

/// What a caller may do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Safe to try again (after `retry_after` where given): the request provably had no effect.
    Retry,
    /// Trying again will fail the same way; fix the input, credentials or account first.
    Permanent,
    /// A write may or may not have happened: look the order up by client order id before anything else.
    Reconcile,
}

/// One error type for every venue. Venue codes map onto these variants inside each adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error("{venue}: rate limited{}: {message}", retry_after.map(|d| format!(" (retry after {} ms)", d.as_millis())).unwrap_or_default())]
    RateLimited {
        venue: &'static str,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("{venue}: authentication failed: {message}")]
    Auth {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: permission denied: {message}")]
    Permission {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: insufficient margin: {message}")]
    InsufficientMargin {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: invalid order: {message}")]
    InvalidOrder {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: order not found: {message}")]
    OrderNotFound {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: duplicate client order id: {message}")]
    DuplicateClientOrderId {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: request timestamp outside the venue's window: {message}")]
    TimestampOutOfWindow {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: unavailable: {message}")]
    Unavailable {
        venue: &'static str,
        message: String,
    },
    /// The request never reached the venue (connection refused, DNS, TLS handshake).
    #[error("{venue}: network error (request not delivered): {message}")]
    Network {
        venue: &'static str,
        message: String,
    },
    /// A write whose result we did not see (timeout, reset after sending, gateway error).
    #[error("{venue}: outcome unknown, reconcile by client order id: {message}")]
    OutcomeUnknown {
        venue: &'static str,
        message: String,
    },
    #[error("{venue}: unknown symbol {symbol}: {message}")]
    UnknownSymbol {
        venue: &'static str,
        symbol: String,
        message: String,
    },
    /// The quantity or notional is under the instrument's minimum after rounding.
    #[error("{venue}: {what} {value} is below the minimum {minimum}")]
    BelowMinimum {
        venue: &'static str,
        what: &'static str,
        value: String,
        minimum: String,
    },
    /// The venue answered something we cannot parse.
    #[error("{venue}: malformed response from {endpoint}: {message}")]
    Malformed {
        venue: &'static str,
        endpoint: String,
        message: String,
    },
    /// The operation or parameter is not supported by this venue.
    #[error("{venue}: not supported: {message}")]
    Unsupported {
        venue: &'static str,
        message: String,
    },
    /// Local misconfiguration: missing credentials, bad base URL, and the like.
    #[error("{venue}: configuration error: {message}")]
    Config {
        venue: &'static str,
        message: String,
    },
    /// A documented venue code with no better mapping.
    #[error("{venue}: venue error {code}: {message}")]
    Venue {
        venue: &'static str,
        code: String,
        message: String,
    },
}

impl ExchangeError {
    /// A short stable name for metrics labels, CLI output and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ExchangeError::RateLimited { .. } => "rate_limited",
            ExchangeError::Auth { .. } => "auth",
            ExchangeError::Permission { .. } => "permission",
            ExchangeError::InsufficientMargin { .. } => "insufficient_margin",
            ExchangeError::InvalidOrder { .. } => "invalid_order",
            ExchangeError::OrderNotFound { .. } => "order_not_found",
            ExchangeError::DuplicateClientOrderId { .. } => "duplicate_client_order_id",
            ExchangeError::TimestampOutOfWindow { .. } => "timestamp_out_of_window",
            ExchangeError::Unavailable { .. } => "unavailable",
            ExchangeError::Network { .. } => "network",
            ExchangeError::OutcomeUnknown { .. } => "outcome_unknown",
            ExchangeError::UnknownSymbol { .. } => "unknown_symbol",
            ExchangeError::BelowMinimum { .. } => "below_minimum",
            ExchangeError::Malformed { .. } => "malformed_response",
            ExchangeError::Unsupported { .. } => "unsupported",
            ExchangeError::Config { .. } => "config",
            ExchangeError::Venue { .. } => "venue",
        }
    }

    /// What the caller can do about it.
    pub fn recovery(&self) -> Recovery {
        match self {
            ExchangeError::RateLimited { .. }
            | ExchangeError::TimestampOutOfWindow { .. }
            | ExchangeError::Unavailable { .. }
            | ExchangeError::Network { .. } => Recovery::Retry,
            ExchangeError::OutcomeUnknown { .. } => Recovery::Reconcile,
            _ => Recovery::Permanent,
        }
    }

    /// The wait the venue asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExchangeError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn malformed(venue: &'static str, endpoint: &str, message: impl Into<String>) -> Self {
        ExchangeError::Malformed {
            venue,
            endpoint: endpoint.to_string(),
            message: message.into(),
        }
    }
}

pub type ExchangeResult<T> = Result<T, ExchangeError>;
