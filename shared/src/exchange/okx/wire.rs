//! OKX V5 wire models (serde), exactly as the venue sends and expects them. They never leave the
//! `okx` folder; `parse.rs` turns them into domain types.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::exchange::wire::{decimal, id_string, int, opt_decimal};
pub(super) use crate::exchange::wire::{opt_int as opt_millis, opt_text};

/// Every OKX answer: `{"code":"0","msg":"","data":[...]}`. `data` is kept raw until the code says
/// whether it holds results or per-order errors.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope {
    #[serde(deserialize_with = "id_string")]
    pub code: String,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The per-item result fields of trade endpoints (`sCode` "0" = accepted).
#[derive(Debug, Deserialize)]
pub(super) struct ItemStatus {
    #[serde(rename = "sCode", default, deserialize_with = "opt_text")]
    pub s_code: Option<String>,
    #[serde(rename = "sMsg", default)]
    pub s_msg: Option<String>,
}

/// OKX booleans arrive as `"true"`/`"false"` strings or JSON booleans; missing or `""` is false.
pub(super) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        B(bool),
        S(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(false),
        Some(B::B(b)) => Ok(b),
        Some(B::S(s)) => match s.as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "not a boolean: {other:?}"
            ))),
        },
    }
}

// ---------------------------------------------------------------- public data

#[derive(Debug, Deserialize)]
pub(super) struct ServerTime {
    #[serde(deserialize_with = "int")]
    pub ts: i64,
}

/// One candle row `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`, all strings.
pub(super) type CandleRow = Vec<String>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ticker {
    #[serde(deserialize_with = "decimal")]
    pub last: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub ask_px: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub bid_px: Option<Decimal>,
    #[serde(deserialize_with = "int")]
    pub ts: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Instrument {
    pub inst_type: String,
    pub inst_id: String,
    #[serde(default)]
    pub settle_ccy: String,
    #[serde(default)]
    pub ct_type: String,
    #[serde(deserialize_with = "decimal")]
    pub ct_val: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub tick_sz: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub lot_sz: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub min_sz: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub lever: Option<Decimal>,
}

// ---------------------------------------------------------------- account

#[derive(Debug, Deserialize)]
pub(super) struct Balance {
    #[serde(default)]
    pub details: Vec<BalanceDetail>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BalanceDetail {
    pub ccy: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub eq: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub avail_eq: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub avail_bal: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub upl: Option<Decimal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum PosSide {
    Net,
    Long,
    Short,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Position {
    pub inst_type: String,
    pub inst_id: String,
    /// Contracts; signed in net mode.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub pos: Option<Decimal>,
    pub pos_side: PosSide,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub avg_px: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_px: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub upl: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub lever: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub liq_px: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccountConfig {
    /// e.g. `read_only,trade,withdraw`.
    #[serde(default)]
    pub perm: Option<String>,
    #[serde(default)]
    pub pos_mode: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub acct_lv: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetLeverageBody<'a> {
    pub inst_id: &'a str,
    pub lever: String,
    pub mgn_mode: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetLeverageAck {
    #[serde(default, deserialize_with = "opt_decimal")]
    pub lever: Option<Decimal>,
}

// ---------------------------------------------------------------- trade

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Side {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OrdType {
    Market,
    Limit,
    PostOnly,
    Fok,
    Ioc,
    OptimalLimitIoc,
    Mmp,
    MmpAndPostOnly,
    Elp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OrdState {
    Live,
    PartiallyFilled,
    Filled,
    Canceled,
    MmpCanceled,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlaceOrderBody<'a> {
    pub inst_id: &'a str,
    pub td_mode: &'a str,
    pub side: Side,
    pub ord_type: OrdType,
    /// Contracts.
    pub sz: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub px: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduce_only: Option<bool>,
    pub cl_ord_id: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderAck {
    #[serde(default, deserialize_with = "opt_text")]
    pub ord_id: Option<String>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub ts: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Order {
    pub inst_id: String,
    #[serde(deserialize_with = "id_string")]
    pub ord_id: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub cl_ord_id: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub px: Option<Decimal>,
    #[serde(deserialize_with = "decimal")]
    pub sz: Decimal,
    pub ord_type: OrdType,
    pub side: Side,
    pub state: OrdState,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub acc_fill_sz: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub avg_px: Option<Decimal>,
    /// Negative = fee charged, positive = rebate.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub fee: Option<Decimal>,
    #[serde(default, deserialize_with = "flag")]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_millis")]
    pub c_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub u_time: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AlgoOrdType {
    Conditional,
    Oco,
    Trigger,
    MoveOrderStop,
    Iceberg,
    Twap,
    Chase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AlgoState {
    Live,
    Pause,
    PartiallyEffective,
    Effective,
    Canceled,
    OrderFailed,
    PartiallyFailed,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlaceAlgoBody<'a> {
    pub inst_id: &'a str,
    pub td_mode: &'a str,
    pub side: Side,
    pub ord_type: AlgoOrdType,
    /// Contracts.
    pub sz: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduce_only: Option<bool>,
    pub algo_cl_ord_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sl_trigger_px: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sl_ord_px: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp_trigger_px: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp_ord_px: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AlgoAck {
    #[serde(default, deserialize_with = "opt_text")]
    pub algo_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AlgoOrder {
    pub inst_id: String,
    #[serde(deserialize_with = "id_string")]
    pub algo_id: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub algo_cl_ord_id: Option<String>,
    pub ord_type: AlgoOrdType,
    pub side: Side,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub sz: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub sl_trigger_px: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub tp_trigger_px: Option<Decimal>,
    pub state: AlgoState,
    #[serde(default, deserialize_with = "flag")]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub actual_sz: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub actual_px: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub c_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub u_time: Option<i64>,
}

/// Just the id of a pending algo order (cancel-all needs nothing else, whatever its type).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AlgoId {
    #[serde(deserialize_with = "id_string")]
    pub algo_id: String,
}

/// Just the id of a pending order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrdId {
    #[serde(deserialize_with = "id_string")]
    pub ord_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelOrderBody<'a> {
    pub inst_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ord_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cl_ord_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelAlgoBody<'a> {
    pub inst_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algo_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algo_cl_ord_id: Option<&'a str>,
}
