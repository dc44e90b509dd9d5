//! HTX wire models (serde), exactly as the venue sends and expects them: the public market-data
//! answers (`status`/`ts` envelopes, JSON numbers) and the V5 private API (`code`/`message`/`data`
//! envelopes, decimal strings). They never leave the `htx` folder; `parse.rs` maps them.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::exchange::wire::opt_int;
use crate::exchange::wire::{decimal, id_string, int, opt_decimal};
pub(super) use crate::exchange::wire::{opt_int as opt_millis, opt_text};

/// Every HTX answer, whichever generation: V5 `{"code":200,"message":"Success","data":..,"ts":..}`,
/// v1/market `{"status":"ok","data"|"tick":..,"ts":..}` or `{"status":"error","err_code":..}`,
/// gateway `{"status":"error","err-code":"..","err-msg":".."}`. Payloads stay raw until the
/// envelope says whether the call succeeded.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope {
    #[serde(default, deserialize_with = "opt_text")]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, alias = "err-code", deserialize_with = "opt_text")]
    pub err_code: Option<String>,
    #[serde(default, alias = "err-msg")]
    pub err_msg: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
    #[serde(default)]
    pub tick: serde_json::Value,
    #[serde(default, deserialize_with = "opt_millis")]
    pub ts: Option<i64>,
}

/// Booleans as JSON booleans, `0`/`1` numbers or strings; missing or `null` is false.
pub(super) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        N(i64),
        S(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(false),
        Some(B::Bool(b)) => Ok(b),
        Some(B::N(0)) => Ok(false),
        Some(B::N(1)) => Ok(true),
        Some(B::S(s)) => match s.as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "not a boolean: {other:?}"
            ))),
        },
        Some(B::N(n)) => Err(serde::de::Error::custom(format!("not a boolean: {n}"))),
    }
}

/// The price of a `[price, size]` book level; missing or `null` is `None`.
fn opt_level_price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    #[derive(Deserialize)]
    struct Level(
        #[serde(deserialize_with = "decimal")] Decimal,
        #[allow(dead_code)] serde::de::IgnoredAny,
    );
    Ok(Option::<Level>::deserialize(d)?.map(|l| l.0))
}

// ---------------------------------------------------------------- public data

/// One row of `/linear-swap-ex/market/history/kline`. `id` is the open time in SECONDS; `amount`
/// is base coin, `vol` contracts.
#[derive(Debug, Deserialize)]
pub(super) struct KlineRow {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    #[serde(deserialize_with = "decimal")]
    pub open: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub high: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub low: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub close: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub amount: Decimal,
}

/// `tick` of `/linear-swap-ex/market/detail/merged`.
#[derive(Debug, Deserialize)]
pub(super) struct MergedTick {
    #[serde(deserialize_with = "decimal")]
    pub close: Decimal,
    #[serde(default, deserialize_with = "opt_level_price")]
    pub bid: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_level_price")]
    pub ask: Option<Decimal>,
    #[serde(deserialize_with = "int")]
    pub ts: i64,
}

/// One row of `/linear-swap-api/v1/swap_contract_info`.
#[derive(Debug, Deserialize)]
pub(super) struct ContractInfo {
    pub contract_code: String,
    /// Base coin per contract (the 2021 docs label it "USDT", the example value is BTC).
    #[serde(deserialize_with = "decimal")]
    pub contract_size: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub price_tick: Decimal,
    /// 1 = listing; 0 delisted, 2 pending listing, 3 suspended, 4 suspending, 5-8 settlement.
    #[serde(default, deserialize_with = "opt_int")]
    pub contract_status: Option<i64>,
}

/// One tier of `GET /v5/market/risk/limit` (public); only the leverage ceiling is used.
#[derive(Debug, Deserialize)]
pub(super) struct RiskTier {
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_lever: Option<Decimal>,
}

// ---------------------------------------------------------------- account (V5)

#[derive(Debug, Deserialize)]
pub(super) struct Balance {
    #[serde(default)]
    pub details: Vec<BalanceDetail>,
}

#[derive(Debug, Deserialize)]
pub(super) struct BalanceDetail {
    pub currency: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub equity: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub available: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub available_margin: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub profit_unreal: Option<Decimal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum PositionSide {
    Long,
    Short,
    /// One-way mode.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Side {
    Buy,
    Sell,
}

/// One row of `GET /v5/trade/position/opens`; `volume` is contracts.
#[derive(Debug, Deserialize)]
pub(super) struct Position {
    pub contract_code: String,
    pub position_side: PositionSide,
    #[serde(default)]
    pub direction: Option<Side>,
    #[serde(deserialize_with = "decimal")]
    pub volume: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub open_avg_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub lever_rate: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub liquidation_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub profit_unreal: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_price: Option<Decimal>,
    #[serde(default)]
    pub contract_type: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct SetLeverageBody<'a> {
    pub contract_code: &'a str,
    pub margin_mode: &'a str,
    pub lever_rate: u32,
}

#[derive(Debug, Deserialize)]
pub(super) struct SetLeverageAck {
    #[serde(default, deserialize_with = "opt_decimal")]
    pub lever_rate: Option<Decimal>,
}

// ---------------------------------------------------------------- trade (V5)

/// `type` of a V5 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OrderType {
    Market,
    Limit,
    PostOnly,
}

/// `state` of a V5 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OrderState {
    New,
    PartiallyFilled,
    Filled,
    PartiallyCanceled,
    Canceled,
    Rejected,
}

/// Body of `POST /v5/trade/order` (one-way mode: `position_side` "both").
#[derive(Debug, Serialize)]
pub(super) struct PlaceOrderBody<'a> {
    pub contract_code: &'a str,
    pub margin_mode: &'a str,
    pub position_side: PositionSide,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Whole contracts.
    pub volume: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// The mapped positive int64, as text.
    pub client_order_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduce_only: Option<u8>,
}

#[derive(Debug, Deserialize)]
pub(super) struct OrderAck {
    #[serde(default, deserialize_with = "opt_text")]
    pub order_id: Option<String>,
}

/// One V5 order (`GET /v5/trade/order`, `GET /v5/trade/order/opens`); sizes in contracts.
#[derive(Debug, Deserialize)]
pub(super) struct Order {
    pub contract_code: String,
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_order_id: Option<String>,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(deserialize_with = "decimal")]
    pub volume: Decimal,
    pub state: OrderState,
    #[serde(default, deserialize_with = "flag")]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub trade_volume: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub trade_avg_price: Option<Decimal>,
    /// Negative when charged.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub fee: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub created_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub updated_time: Option<i64>,
}

/// `type` of a V5 algo order. The adapter places only `tpsl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AlgoType {
    Tpsl,
    Tp,
    Sl,
    Trigger,
    Trailing,
    TrailingStop,
}

/// `state` of a V5 algo order. No V5 table was available: these are the values seen in
/// third-party clients; any other value is a parse error naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AlgoState {
    New,
    Created,
    Untriggered,
    Triggered,
    Canceled,
    Cancelled,
    Rejected,
    Failed,
}

/// Body of `POST /v5/algo/order` for a position stop-loss or take-profit executed at market.
#[derive(Debug, Serialize)]
pub(super) struct PlaceAlgoBody<'a> {
    pub contract_code: &'a str,
    #[serde(rename = "type")]
    pub algo_type: AlgoType,
    pub position_side: PositionSide,
    pub side: Side,
    pub margin_mode: &'a str,
    pub algo_client_order_id: String,
    /// Whole contracts.
    pub volume: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sl_trigger_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sl_type: Option<OrderType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp_trigger_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp_type: Option<OrderType>,
    pub reduce_only: u8,
}

/// One acknowledgement of an algo placement or cancellation (per-item `code` when it failed).
#[derive(Debug, Deserialize)]
pub(super) struct AlgoAck {
    #[serde(default, deserialize_with = "opt_text")]
    pub algo_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// One V5 algo order (`GET /v5/algo/order`, `GET /v5/algo/order/opens`); sizes in contracts.
#[derive(Debug, Deserialize)]
pub(super) struct AlgoOrder {
    pub contract_code: String,
    #[serde(deserialize_with = "id_string")]
    pub algo_id: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub algo_client_order_id: Option<String>,
    #[serde(rename = "type")]
    pub algo_type: AlgoType,
    pub state: AlgoState,
    pub side: Side,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub volume: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub sl_trigger_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub tp_trigger_price: Option<Decimal>,
    #[serde(default, deserialize_with = "flag")]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub actual_volume: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub actual_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub created_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_millis")]
    pub updated_time: Option<i64>,
}

/// Just the id of an open algo order (cancel-all needs nothing else, whatever its type).
#[derive(Debug, Deserialize)]
pub(super) struct AlgoId {
    #[serde(deserialize_with = "id_string")]
    pub algo_id: String,
}

#[derive(Debug, Serialize)]
pub(super) struct CancelOrderBody<'a> {
    pub contract_code: &'a str,
    pub client_order_id: String,
}

#[derive(Debug, Serialize)]
pub(super) struct CancelAllBody<'a> {
    pub contract_code: &'a str,
}

/// One item of `POST /v5/algo/cancel_orders` (the body is a JSON array of these).
#[derive(Debug, Serialize)]
pub(super) struct CancelAlgoItem<'a> {
    pub contract_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algo_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algo_client_order_id: Option<String>,
}

/// One per-order result of a cancel (`code` 200 or absent = cancelled).
#[derive(Debug, Deserialize)]
pub(super) struct CancelItem {
    #[serde(default, deserialize_with = "opt_text")]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}
