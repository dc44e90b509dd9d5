//! Bitget V2 mix wire models (serde), exactly as the venue sends and expects them. They never
//! leave the `bitget` folder; `parse.rs` turns them into domain types.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::exchange::wire::{decimal, id_string, opt_decimal};
pub(super) use crate::exchange::wire::{opt_int as opt_millis, opt_text};

/// Every Bitget answer: `{"code":"00000","msg":"success","requestTime":..,"data":..}`. `data` is
/// kept raw until the code says it holds a result.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope {
    #[serde(deserialize_with = "id_string")]
    pub code: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub msg: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// Milliseconds as a string or number, required.
pub(super) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    opt_millis(d)?.ok_or_else(|| serde::de::Error::custom("missing milliseconds"))
}

/// Bitget's `"YES"`/`"NO"` flags (any case); missing or `""` is false.
pub(super) fn yes_no<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match opt_text(d)? {
        None => Ok(false),
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" => Ok(true),
            "no" | "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("not YES/NO: {s:?}"))),
        },
    }
}

// ---------------------------------------------------------------- public data

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServerTime {
    #[serde(deserialize_with = "millis")]
    pub server_time: i64,
}

/// One candle row `[ts, open, high, low, close, baseVolume, quoteVolume]`, all strings.
pub(super) type CandleRow = Vec<String>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ticker {
    #[serde(deserialize_with = "decimal")]
    pub last_pr: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub bid_pr: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub ask_pr: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_price: Option<Decimal>,
    #[serde(deserialize_with = "millis")]
    pub ts: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Contract {
    pub symbol: String,
    pub base_coin: String,
    pub quote_coin: String,
    #[serde(default)]
    pub symbol_type: Option<String>,
    #[serde(default)]
    pub symbol_status: Option<String>,
    #[serde(deserialize_with = "int_text")]
    pub price_place: u32,
    #[serde(deserialize_with = "decimal")]
    pub price_end_step: Decimal,
    #[serde(default, deserialize_with = "opt_int_text")]
    pub volume_place: Option<u32>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub size_multiplier: Option<Decimal>,
    #[serde(deserialize_with = "decimal")]
    pub min_trade_num: Decimal,
    #[serde(default, rename = "minTradeUSDT", deserialize_with = "opt_decimal")]
    pub min_trade_usdt: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_lever: Option<Decimal>,
}

/// A small non-negative integer given as text or a number (`pricePlace`, `volumePlace`).
fn int_text<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    opt_int_text(d)?.ok_or_else(|| serde::de::Error::custom("missing integer"))
}

fn opt_int_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match opt_text(d)? {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("not a small integer: {s:?}: {e}"))),
    }
}

// ---------------------------------------------------------------- account

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Account {
    pub margin_coin: String,
    #[serde(deserialize_with = "decimal")]
    pub available: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub account_equity: Decimal,
    #[serde(default, rename = "unrealizedPL", deserialize_with = "opt_decimal")]
    pub unrealized_pl: Option<Decimal>,
}

/// GET /account/account: one margin coin of one symbol, with the account's modes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SingleAccount {
    #[serde(default)]
    pub margin_mode: Option<String>,
    #[serde(default)]
    pub pos_mode: Option<String>,
    #[serde(default)]
    pub asset_mode: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum HoldSide {
    Long,
    Short,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Position {
    pub symbol: String,
    pub hold_side: HoldSide,
    #[serde(deserialize_with = "decimal")]
    pub total: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub open_price_avg: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_price: Option<Decimal>,
    #[serde(default, rename = "unrealizedPL", deserialize_with = "opt_decimal")]
    pub unrealized_pl: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub leverage: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub liquidation_price: Option<Decimal>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetLeverageBody<'a> {
    pub symbol: &'a str,
    pub product_type: &'a str,
    pub margin_coin: &'a str,
    pub leverage: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LeverageAck {
    #[serde(default, deserialize_with = "opt_decimal")]
    pub long_leverage: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub short_leverage: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub cross_margin_leverage: Option<Decimal>,
    #[serde(default)]
    pub margin_mode: Option<MarginMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum MarginMode {
    #[serde(alias = "cross")]
    Crossed,
    Isolated,
}

// ---------------------------------------------------------------- trade

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Side {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum OrderType {
    Limit,
    Market,
}

/// POST /order/place-order. `size` is base coin; `reduceOnly` is the one-way-mode flag.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlaceOrderBody<'a> {
    pub symbol: &'a str,
    pub product_type: &'a str,
    pub margin_mode: &'a str,
    pub margin_coin: &'a str,
    pub size: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    pub side: Side,
    pub order_type: OrderType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduce_only: Option<&'a str>,
    pub client_oid: &'a str,
}

/// POST /order/place-plan-order with a market execution (`normal_plan`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlacePlanBody<'a> {
    pub plan_type: &'a str,
    pub symbol: &'a str,
    pub product_type: &'a str,
    pub margin_mode: &'a str,
    pub margin_coin: &'a str,
    pub size: String,
    pub trigger_price: String,
    pub trigger_type: &'a str,
    pub side: Side,
    pub order_type: OrderType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduce_only: Option<&'a str>,
    pub client_oid: &'a str,
}

/// POST /order/place-tpsl-order: a stop-loss (`loss_plan`) or take-profit (`profit_plan`) on the
/// open position; `holdSide` is the position's direction (`buy`/`sell` in one-way mode).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlaceTpslBody<'a> {
    pub margin_coin: &'a str,
    pub product_type: &'a str,
    pub symbol: &'a str,
    pub plan_type: &'a str,
    pub trigger_price: String,
    pub trigger_type: &'a str,
    pub execute_price: &'a str,
    pub hold_side: Side,
    pub size: String,
    pub client_oid: &'a str,
}

/// Answer of the place endpoints: `orderId` may be missing for reduce-only orders in one-way mode.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderAck {
    #[serde(default, deserialize_with = "opt_text")]
    pub order_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelOrderBody<'a> {
    pub symbol: &'a str,
    pub product_type: &'a str,
    pub margin_coin: &'a str,
    pub client_oid: &'a str,
}

/// One id of a batch cancel list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct IdItem<'a> {
    pub order_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_oid: Option<&'a str>,
}

/// POST /order/batch-cancel-orders with an explicit `orderIdList` (max 50).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchCancelBody<'a> {
    pub symbol: &'a str,
    pub product_type: &'a str,
    pub margin_coin: &'a str,
    pub order_id_list: Vec<IdItem<'a>>,
}

/// POST /order/cancel-plan-order for the listed orders of one plan type.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelPlanBody<'a> {
    pub symbol: &'a str,
    pub product_type: &'a str,
    pub margin_coin: &'a str,
    pub plan_type: &'a str,
    pub order_id_list: Vec<IdItem<'a>>,
}

/// `{successList, failureList}` of the batch cancel endpoints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchResult {
    #[serde(default)]
    pub success_list: Vec<BatchItem>,
    #[serde(default)]
    pub failure_list: Vec<BatchItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchItem {
    #[serde(default, deserialize_with = "opt_text")]
    pub order_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub error_code: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub error_msg: Option<String>,
}

/// A page of `orders-pending` / `orders-plan-pending`: `entrustedList` may be `null` when empty.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub(super) struct Page<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_list")]
    pub entrusted_list: Vec<T>,
    #[serde(default, deserialize_with = "opt_text")]
    pub end_id: Option<String>,
}

fn null_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Order state: `state` on the detail endpoint, `status` in the pending list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OrderState {
    Init,
    New,
    Live,
    PartiallyFilled,
    Filled,
    Canceled,
    #[serde(rename = "cancelled")]
    Cancelled,
}

/// A regular order (detail or pending list).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Order {
    pub symbol: String,
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_oid: Option<String>,
    #[serde(deserialize_with = "decimal")]
    pub size: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price_avg: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub base_volume: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub fee: Option<Decimal>,
    #[serde(alias = "status")]
    pub state: OrderState,
    pub side: Side,
    pub order_type: OrderType,
    #[serde(default, deserialize_with = "yes_no")]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_text")]
    pub trade_side: Option<String>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub c_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub u_time: Option<i64>,
}

/// Kinds of plan orders in the pending lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum PlanType {
    NormalPlan,
    TrackPlan,
    ProfitPlan,
    LossPlan,
    PosProfit,
    PosLoss,
    MovingPlan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum PlanStatus {
    NotTrigger,
    Live,
    Triggered,
    Executing,
    Executed,
    FailTrigger,
    FailExecute,
    Cancelled,
    Canceled,
}

/// A pending plan (trigger / TP / SL) order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlanOrder {
    pub plan_type: PlanType,
    pub symbol: String,
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_oid: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub size: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(deserialize_with = "decimal")]
    pub trigger_price: Decimal,
    pub plan_status: PlanStatus,
    pub side: Side,
    #[serde(default)]
    pub order_type: Option<OrderType>,
    #[serde(default, deserialize_with = "yes_no")]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_text")]
    pub trade_side: Option<String>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub c_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub u_time: Option<i64>,
}

/// Just the ids of a pending regular order (for cancel-all).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderIds {
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
}

/// Just the ids and plan type of a pending plan order (for cancel and cancel-all).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlanIds {
    pub plan_type: PlanType,
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_oid: Option<String>,
}
