//! Column types shared by the entities: exact decimals on both backends, and enums / domain values
//! stored as short strings, so every column reads back as a typed value or a typed error.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, StringLen, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value};
use serde::{Deserialize, Serialize};

use crate::domain::{DomainError, OrderStatus, OrderType, PositionSide, Side, Symbol, Timeframe};

/// An exact decimal column: `NUMERIC` on PostgreSQL, `TEXT` on SQLite.
///
/// SeaORM reads `Decimal` from SQLite through `f64`, which turns `0.1` into
/// `0.1000000000000000055511151231`; this type reads the stored text instead.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct DbDecimal(pub Decimal);

impl DbDecimal {
    pub fn get(self) -> Decimal {
        self.0
    }
}

impl From<Decimal> for DbDecimal {
    fn from(d: Decimal) -> Self {
        Self(d)
    }
}

impl From<DbDecimal> for Decimal {
    fn from(d: DbDecimal) -> Self {
        d.0
    }
}

impl fmt::Display for DbDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

fn type_error(what: &str, input: &str, why: impl fmt::Display) -> TryGetError {
    TryGetError::DbErr(DbErr::Type(format!(
        "column value {input:?} is not a valid {what}: {why}"
    )))
}

impl From<DbDecimal> for Value {
    fn from(d: DbDecimal) -> Self {
        // Bound as NUMERIC on PostgreSQL; sea-query binds decimals as their text on SQLite.
        Value::Decimal(Some(d.0))
    }
}

impl TryGetable for DbDecimal {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        if res.try_as_sqlite_row().is_some() {
            let text = <String as TryGetable>::try_get_by(res, idx)?;
            Decimal::from_str_exact(text.trim())
                .map(DbDecimal)
                .map_err(|e| type_error("decimal", &text, e))
        } else {
            <Decimal as TryGetable>::try_get_by(res, idx).map(DbDecimal)
        }
    }
}

impl ValueType for DbDecimal {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::Decimal(Some(d)) => Ok(DbDecimal(d)),
            Value::String(Some(s)) => Decimal::from_str_exact(&s)
                .map(DbDecimal)
                .map_err(|_| ValueTypeErr),
            _ => Err(ValueTypeErr),
        }
    }
    fn type_name() -> String {
        "DbDecimal".to_string()
    }
    fn array_type() -> ArrayType {
        ArrayType::Decimal
    }
    fn column_type() -> ColumnType {
        ColumnType::Decimal(None)
    }
}

impl Nullable for DbDecimal {
    fn null() -> Value {
        Value::Decimal(None)
    }
}

impl sea_orm::IntoActiveValue<DbDecimal> for DbDecimal {
    fn into_active_value(self) -> sea_orm::ActiveValue<DbDecimal> {
        sea_orm::ActiveValue::Set(self)
    }
}

/// Implements the SeaORM value traits for a type stored as a `VARCHAR(len)`, given how to parse
/// and render it.
macro_rules! string_column {
    ($ty:ty, $len:expr, $what:expr, $parse:expr, $render:expr) => {
        impl From<$ty> for Value {
            fn from(v: $ty) -> Self {
                let render: fn(&$ty) -> String = $render;
                Value::String(Some(render(&v)))
            }
        }

        impl TryGetable for $ty {
            fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
                let text = <String as TryGetable>::try_get_by(res, idx)?;
                let parse: fn(&str) -> Result<$ty, String> = $parse;
                parse(&text).map_err(|e| type_error($what, &text, e))
            }
        }

        impl ValueType for $ty {
            fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
                let parse: fn(&str) -> Result<$ty, String> = $parse;
                match v {
                    Value::String(Some(s)) => parse(&s).map_err(|_| ValueTypeErr),
                    _ => Err(ValueTypeErr),
                }
            }
            fn type_name() -> String {
                stringify!($ty).to_string()
            }
            fn array_type() -> ArrayType {
                ArrayType::String
            }
            fn column_type() -> ColumnType {
                ColumnType::String(StringLen::N($len))
            }
        }

        impl Nullable for $ty {
            fn null() -> Value {
                Value::String(None)
            }
        }

        impl sea_orm::IntoActiveValue<$ty> for $ty {
            fn into_active_value(self) -> sea_orm::ActiveValue<$ty> {
                sea_orm::ActiveValue::Set(self)
            }
        }
    };
}

/// A closed set of store-owned values with stable spellings in the database and in JSON.
macro_rules! str_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident ($len:expr) { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $var),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$var),)+
                    _ => Err(DomainError::UnknownVariant {
                        what: stringify!($name),
                        input: s.to_string(),
                    }),
                }
            }
        }

        string_column!(
            $name,
            $len,
            stringify!($name),
            |s| s.parse::<$name>().map_err(|e| e.to_string()),
            |v| v.as_str().to_string()
        );
    };
}

str_enum! {
    /// What drives a bot's decisions.
    pub enum BotKind(16) {
        Technical = "TECHNICAL",
        Ml = "ML",
        Llm = "LLM",
    }
}

str_enum! {
    /// Whether the scheduler runs a subscription.
    pub enum SubscriptionStatus(16) {
        /// Scheduled: the due query picks it up when `next_run_at` passes.
        Active = "active",
        /// Not scheduled until resumed; open positions are left alone.
        Paused = "paused",
        /// Not scheduled, for good (e.g. after a fatal error); resume to start again.
        Stopped = "stopped",
    }
}

str_enum! {
    /// Why a cycle run exists.
    pub enum RunTrigger(16) {
        Scheduled = "scheduled",
        Manual = "manual",
    }
}

str_enum! {
    /// Life of one cycle run.
    pub enum RunStatus(16) {
        Enqueued = "enqueued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Not run: a missed slot, a paused subscription, or nothing to do.
        Skipped = "skipped",
        /// Out of attempts; the job sits in dead letters.
        DeadLettered = "dead_lettered",
    }
}

impl RunStatus {
    /// No further transition is expected.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Skipped | RunStatus::DeadLettered
        )
    }
}

str_enum! {
    /// What an order is for within a cycle.
    pub enum OrderRole(16) {
        Entry = "entry",
        StopLoss = "stop_loss",
        TakeProfit = "take_profit",
        Close = "close",
    }
}

str_enum! {
    /// Whether a position or trade is still open.
    pub enum PositionStatus(8) {
        Open = "open",
        Closed = "closed",
    }
}

fn parse_order_status(s: &str) -> Result<OrderStatus, String> {
    const ALL: [OrderStatus; 7] = [
        OrderStatus::Open,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Canceled,
        OrderStatus::Rejected,
        OrderStatus::Expired,
        OrderStatus::Triggered,
    ];
    ALL.into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown order status {s:?}"))
}

fn parse_position_side(s: &str) -> Result<PositionSide, String> {
    match s {
        "long" => Ok(PositionSide::Long),
        "short" => Ok(PositionSide::Short),
        _ => Err(format!("unknown position side {s:?}")),
    }
}

string_column!(
    Side,
    8,
    "side",
    |s| s.parse::<Side>().map_err(|e| e.to_string()),
    |v| v.as_str().to_string()
);
string_column!(PositionSide, 8, "position side", parse_position_side, |v| v
    .as_str()
    .to_string());
string_column!(
    OrderType,
    32,
    "order type",
    |s| s.parse::<OrderType>().map_err(|e| e.to_string()),
    |v| v.as_str().to_string()
);
string_column!(OrderStatus, 24, "order status", parse_order_status, |v| v
    .as_str()
    .to_string());
string_column!(
    Symbol,
    64,
    "symbol",
    |s| s.parse::<Symbol>().map_err(|e| e.to_string()),
    |v| v.to_string()
);

/// The timeframes a subscription analyses, stored as `5m,1h,4h`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeframeList(pub Vec<Timeframe>);

impl fmt::Display for TimeframeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self.0.iter().map(|t| t.as_str()).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for TimeframeList {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Timeframe::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(TimeframeList)
    }
}

string_column!(
    TimeframeList,
    128,
    "timeframe list",
    |s| s.parse::<TimeframeList>().map_err(|e| e.to_string()),
    |v| v.to_string()
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn store_enums_round_trip_through_their_spelling() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
        }
        assert_eq!("LLM".parse::<BotKind>().unwrap(), BotKind::Llm);
        assert!("llm".parse::<BotKind>().is_err());
        assert!(RunStatus::Succeeded.is_terminal());
        assert!(!RunStatus::Running.is_terminal());
    }

    #[test]
    fn timeframe_lists_parse_and_reject_unknown_frames() {
        let l: TimeframeList = "5m, 1h,4h".parse().unwrap();
        assert_eq!(l.0, vec![Timeframe::M5, Timeframe::H1, Timeframe::H4]);
        assert_eq!(l.to_string(), "5m,1h,4h");
        assert!("5m,2m".parse::<TimeframeList>().is_err());
    }

    #[test]
    fn order_status_spellings_match_the_domain() {
        for s in ["open", "partially_filled", "filled", "triggered"] {
            assert_eq!(parse_order_status(s).unwrap().as_str(), s);
        }
        assert!(parse_order_status("done").is_err());
    }

    #[test]
    fn decimal_values_convert_exactly() {
        let d = Decimal::from_str_exact("123456789.123456789").unwrap();
        let v: Value = DbDecimal(d).into();
        assert_eq!(<DbDecimal as ValueType>::try_from(v).unwrap().get(), d);
        let from_text =
            <DbDecimal as ValueType>::try_from(Value::String(Some("0.000000000001".into())))
                .unwrap();
        assert_eq!(from_text.get().to_string(), "0.000000000001");
    }
}
