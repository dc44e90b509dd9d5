//! One `Exchange` trait over every venue, in domain types. Each venue lives in its own folder
//! (HTTP client named after endpoints -> wire models -> parsing -> `impl Exchange`); venue types
//! never leave it. The registry maps a venue name to its descriptor and constructor.

pub mod error;
pub mod http;
pub mod idempotent;
pub mod instrumented;
pub mod precision;
pub mod registry;
pub mod wire;

pub mod binance;
pub mod bitget;
pub mod bybit;
pub mod htx;
pub mod kraken;
pub mod okx;
pub mod paper;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, Position, Symbol, Ticker,
    Timeframe,
};

pub use error::{ExchangeError, ExchangeResult, Recovery};
pub use registry::{VenueDescriptor, VenueParams, build_exchange, find_venue, venues};

/// API credentials of one account on one venue. `Debug` never shows the secrets.
#[derive(Clone)]
pub struct Credentials {
    pub api_key: SecretString,
    pub api_secret: SecretString,
    /// OKX, Bitget (and Kraken none): the passphrase chosen when the key was made.
    pub passphrase: Option<SecretString>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &"[REDACTED]")
            .field("api_secret", &"[REDACTED]")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

impl Credentials {
    /// Refuse credentials with an empty API key or secret (or, when `passphrase` is given, an
    /// empty passphrase): `"<venue_display> credentials are incomplete: empty api key, ..."`.
    pub(crate) fn check_complete(
        &self,
        venue: &'static str,
        venue_display: &str,
        passphrase: Option<&SecretString>,
    ) -> ExchangeResult<()> {
        use secrecy::ExposeSecret;
        let mut missing = Vec::new();
        if self.api_key.expose_secret().trim().is_empty() {
            missing.push("api key");
        }
        if self.api_secret.expose_secret().trim().is_empty() {
            missing.push("api secret");
        }
        if passphrase.is_some_and(|p| p.expose_secret().is_empty()) {
            missing.push("passphrase");
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(ExchangeError::Config {
            venue,
            message: format!(
                "{venue_display} credentials are incomplete: empty {}",
                missing.join(", ")
            ),
        })
    }
}

/// What the account's key may do, as far as the venue tells (for `credentials verify`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AccountCheck {
    pub can_trade: Option<bool>,
    /// A trading bot never needs withdrawal permission; operators are warned when it is on.
    pub can_withdraw: Option<bool>,
    pub notes: Vec<String>,
}

/// The operations the bot cycle needs from any futures venue. Quantities are base coin.
#[async_trait]
pub trait Exchange: Send + Sync + fmt::Debug {
    /// The registry name of the venue (`binance`, `paper`, ...).
    fn name(&self) -> &'static str;

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>>;

    /// Candles oldest first. The last one may be still forming (`closed == false`).
    /// `since` is the earliest open time wanted; otherwise the latest `limit` candles.
    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>>;

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker>;

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument>;

    /// Margin balance in `asset` (the settle asset, e.g. `USDT`).
    async fn balance(&self, asset: &str) -> ExchangeResult<Balance>;

    /// Open positions, of one symbol or all.
    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>>;

    /// Set leverage; "already at that leverage" answers are success.
    async fn set_leverage(&self, symbol: &Symbol, leverage: u32) -> ExchangeResult<()>;

    /// Place one order. Never retried blindly: an unknown outcome comes back as
    /// `ExchangeError::OutcomeUnknown` for the caller to reconcile (see [`idempotent`]).
    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order>;

    /// Cancel by client order id (regular or conditional order).
    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()>;

    /// Cancel every open order of the symbol, conditional ones included. Returns how many.
    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32>;

    /// Open orders of the symbol, conditional ones included.
    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>>;

    /// Look an order up by client order id: open, conditional or (where the venue keeps it)
    /// historical. `Ok(None)` when the venue does not know it.
    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>>;

    /// Reach the venue and, with credentials, the account. Returns what the key may do.
    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck>;
}

/// Position value in quote currency.
pub fn notional(quantity: Decimal, price: Decimal) -> Decimal {
    quantity * price
}
