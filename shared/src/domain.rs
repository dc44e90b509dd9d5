//! Domain types every layer speaks: unified symbols, timeframes, candles, orders and positions.
//!
//! Prices and quantities are `rust_decimal::Decimal`; quantities are in base coin at this level
//! (venue adapters convert to contracts inside their own folder).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A value that failed to parse into a domain type, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("bad symbol {input:?}: {reason} (expected BASE/QUOTE:SETTLE, e.g. BTC/USDT:USDT)")]
    BadSymbol { input: String, reason: &'static str },
    #[error("unsupported timeframe {0:?} (supported: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w)")]
    BadTimeframe(String),
    #[error("bad client order id {input:?}: {reason}")]
    BadClientOrderId { input: String, reason: &'static str },
    #[error("unknown {what} {input:?}")]
    UnknownVariant { what: &'static str, input: String },
}

/// A unified futures symbol `BASE/QUOTE:SETTLE`, e.g. `BTC/USDT:USDT` (a linear perpetual).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    base: String,
    quote: String,
    settle: String,
}

impl Symbol {
    /// A symbol from its parts; each part is upper-cased and must be 1..=20 ASCII alphanumerics.
    pub fn new(base: &str, quote: &str, settle: &str) -> Result<Self, DomainError> {
        let input = format!("{base}/{quote}:{settle}");
        let check = |part: &str| -> Result<String, DomainError> {
            if part.is_empty() || part.len() > 20 {
                return Err(DomainError::BadSymbol {
                    input: input.clone(),
                    reason: "each part must be 1 to 20 characters",
                });
            }
            if !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(DomainError::BadSymbol {
                    input: input.clone(),
                    reason: "parts may hold only letters and digits",
                });
            }
            Ok(part.to_ascii_uppercase())
        };
        Ok(Self {
            base: check(base)?,
            quote: check(quote)?,
            settle: check(settle)?,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn quote(&self) -> &str {
        &self.quote
    }
    pub fn settle(&self) -> &str {
        &self.settle
    }
    /// `BASEQUOTE`, the concatenated form most venues use (`BTCUSDT`).
    pub fn concat(&self) -> String {
        format!("{}{}", self.base, self.quote)
    }
}

impl FromStr for Symbol {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| DomainError::BadSymbol {
            input: s.to_string(),
            reason,
        };
        let (pair, settle) = s
            .split_once(':')
            .ok_or_else(|| bad("missing ':SETTLE' (only perpetual futures are traded)"))?;
        let (base, quote) = pair.split_once('/').ok_or_else(|| bad("missing '/'"))?;
        Symbol::new(base, quote, settle)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.base, self.quote, self.settle)
    }
}

impl Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Candle interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timeframe {
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    W1,
}

impl Timeframe {
    pub const ALL: [Timeframe; 13] = [
        Timeframe::M1,
        Timeframe::M3,
        Timeframe::M5,
        Timeframe::M15,
        Timeframe::M30,
        Timeframe::H1,
        Timeframe::H2,
        Timeframe::H4,
        Timeframe::H6,
        Timeframe::H8,
        Timeframe::H12,
        Timeframe::D1,
        Timeframe::W1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Timeframe::M1 => "1m",
            Timeframe::M3 => "3m",
            Timeframe::M5 => "5m",
            Timeframe::M15 => "15m",
            Timeframe::M30 => "30m",
            Timeframe::H1 => "1h",
            Timeframe::H2 => "2h",
            Timeframe::H4 => "4h",
            Timeframe::H6 => "6h",
            Timeframe::H8 => "8h",
            Timeframe::H12 => "12h",
            Timeframe::D1 => "1d",
            Timeframe::W1 => "1w",
        }
    }

    /// Length of one candle in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Timeframe::M1 => 60,
            Timeframe::M3 => 180,
            Timeframe::M5 => 300,
            Timeframe::M15 => 900,
            Timeframe::M30 => 1_800,
            Timeframe::H1 => 3_600,
            Timeframe::H2 => 7_200,
            Timeframe::H4 => 14_400,
            Timeframe::H6 => 21_600,
            Timeframe::H8 => 28_800,
            Timeframe::H12 => 43_200,
            Timeframe::D1 => 86_400,
            Timeframe::W1 => 604_800,
        }
    }

    pub fn millis(self) -> i64 {
        self.seconds() * 1_000
    }
}

impl FromStr for Timeframe {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timeframe::ALL
            .into_iter()
            .find(|tf| tf.as_str() == s)
            .ok_or_else(|| DomainError::BadTimeframe(s.to_string()))
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Timeframe {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Timeframe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One OHLCV candle. `closed` is false for the candle still forming at the time of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    pub open_time: DateTime<Utc>,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// Volume in base coin.
    pub volume: Decimal,
    pub closed: bool,
}

impl Candle {
    /// The first instant after this candle.
    pub fn close_time(&self, timeframe: Timeframe) -> DateTime<Utc> {
        self.open_time + chrono::Duration::seconds(timeframe.seconds())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

impl FromStr for Side {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "buy" => Ok(Side::Buy),
            "sell" => Ok(Side::Sell),
            _ => Err(DomainError::UnknownVariant {
                what: "side",
                input: s.to_string(),
            }),
        }
    }
}

/// Direction of an open position (the fleet trades one-way/net positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionSide {
    Long,
    Short,
}

impl PositionSide {
    /// The order side that opens a position of this direction.
    pub fn entry_side(self) -> Side {
        match self {
            PositionSide::Long => Side::Buy,
            PositionSide::Short => Side::Sell,
        }
    }
    /// The order side that reduces or closes a position of this direction.
    pub fn exit_side(self) -> Side {
        self.entry_side().opposite()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PositionSide::Long => "long",
            PositionSide::Short => "short",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderType {
    Market,
    Limit,
    /// Market order triggered when the last/mark price crosses `trigger_price` against the position.
    StopMarket,
    /// Market order triggered when the price crosses `trigger_price` in the position's favour.
    TakeProfitMarket,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
            OrderType::StopMarket => "stop-market",
            OrderType::TakeProfitMarket => "take-profit-market",
        }
    }
    /// Conditional orders rest until a trigger price is crossed.
    pub fn is_conditional(self) -> bool {
        matches!(self, OrderType::StopMarket | OrderType::TakeProfitMarket)
    }
}

impl FromStr for OrderType {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "market" => Ok(OrderType::Market),
            "limit" => Ok(OrderType::Limit),
            "stop-market" => Ok(OrderType::StopMarket),
            "take-profit-market" => Ok(OrderType::TakeProfitMarket),
            _ => Err(DomainError::UnknownVariant {
                what: "order type (market, limit, stop-market, take-profit-market)",
                input: s.to_string(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted and resting (limit) or waiting for its trigger (conditional).
    Open,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
    Expired,
    /// A conditional order whose trigger fired; the resulting market order is tracked by the venue.
    Triggered,
}

impl OrderStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Canceled
                | OrderStatus::Rejected
                | OrderStatus::Expired
                | OrderStatus::Triggered
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Open => "open",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Canceled => "canceled",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Expired => "expired",
            OrderStatus::Triggered => "triggered",
        }
    }
}

/// Client order id every order carries: 1..=32 ASCII letters and digits, the intersection of what
/// all supported venues accept (OKX is the strictest). Deterministic ids make retries idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientOrderId(String);

impl ClientOrderId {
    pub const MAX_LEN: usize = 32;

    pub fn new(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(DomainError::BadClientOrderId {
                input: s,
                reason: "must be 1 to 32 characters",
            });
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(DomainError::BadClientOrderId {
                input: s,
                reason: "only ASCII letters and digits are accepted by every venue",
            });
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClientOrderId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientOrderId::new(s)
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ClientOrderId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientOrderId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClientOrderId::new(s).map_err(serde::de::Error::custom)
    }
}

/// What the bot asks an exchange to do. `quantity` is in base coin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub symbol: Symbol,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub order_type: OrderType,
    pub quantity: Decimal,
    /// Limit price; required for `Limit`, ignored otherwise.
    pub price: Option<Decimal>,
    /// Trigger price; required for `StopMarket` and `TakeProfitMarket`.
    pub trigger_price: Option<Decimal>,
    pub reduce_only: bool,
}

/// An order as the venue reports it, in domain units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub symbol: Symbol,
    pub client_order_id: Option<ClientOrderId>,
    /// The venue's own id (algo id for conditional orders where the venue keeps them apart).
    pub exchange_order_id: String,
    pub side: Side,
    pub order_type: OrderType,
    pub status: OrderStatus,
    /// Base-coin quantity.
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub trigger_price: Option<Decimal>,
    pub reduce_only: bool,
    /// Base-coin quantity filled so far.
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    pub fee: Option<Decimal>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Trading rules of one instrument, in base coin and quote currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    pub symbol: Symbol,
    /// The venue's own symbol (`BTCUSDT`, `BTC-USDT-SWAP`, `PF_XBTUSD`, ...).
    pub venue_symbol: String,
    pub tick_size: Decimal,
    /// Base-coin quantity step (already multiplied by the contract size).
    pub step_size: Decimal,
    /// Smallest base-coin quantity.
    pub min_quantity: Decimal,
    /// Smallest order value in quote currency, zero when the venue has none.
    pub min_notional: Decimal,
    /// Base coin per contract (1 where the venue trades in base coin).
    pub contract_size: Decimal,
    pub max_leverage: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticker {
    pub symbol: Symbol,
    pub last: Decimal,
    pub bid: Option<Decimal>,
    pub ask: Option<Decimal>,
    pub mark: Option<Decimal>,
    pub time: DateTime<Utc>,
}

/// Margin balance in the settle asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub asset: String,
    /// Wallet balance plus unrealized PnL.
    pub equity: Decimal,
    /// What can open new positions.
    pub available: Decimal,
    pub unrealized_pnl: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub symbol: Symbol,
    pub side: PositionSide,
    /// Base-coin quantity, always positive.
    pub quantity: Decimal,
    pub entry_price: Decimal,
    pub mark_price: Option<Decimal>,
    pub unrealized_pnl: Decimal,
    pub leverage: Option<Decimal>,
    pub liquidation_price: Option<Decimal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_round_trips_and_rejects_garbage() {
        let s: Symbol = "btc/usdt:USDT".parse().unwrap();
        assert_eq!(s.to_string(), "BTC/USDT:USDT");
        assert_eq!(s.concat(), "BTCUSDT");
        for bad in [
            "BTCUSDT",
            "BTC/USDT",
            "BTC-/USDT:USDT",
            "/USDT:USDT",
            "BTC/USDT:",
        ] {
            assert!(bad.parse::<Symbol>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn timeframes_parse_and_measure() {
        for tf in Timeframe::ALL {
            assert_eq!(tf.as_str().parse::<Timeframe>().unwrap(), tf);
        }
        assert_eq!(Timeframe::H4.seconds(), 14_400);
        assert!(matches!(
            "2m".parse::<Timeframe>(),
            Err(DomainError::BadTimeframe(_))
        ));
    }

    #[test]
    fn client_order_ids_fit_every_venue() {
        assert!(ClientOrderId::new("tf12ab34e").is_ok());
        assert!(ClientOrderId::new("a".repeat(32)).is_ok());
        assert!(ClientOrderId::new("a".repeat(33)).is_err());
        assert!(ClientOrderId::new("with-dash").is_err());
        assert!(ClientOrderId::new("").is_err());
    }
}
