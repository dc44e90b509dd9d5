//! Kraken Futures wire models: the JSON the venue sends, as serde structs. Only the fields the
//! adapter uses are declared; everything optional in practice is `Option`, so one odd instrument or
//! ticker does not break a whole list.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::exchange::wire::{decimal, int, opt_decimal};

/// The part every derivatives-API answer shares, and the error forms of every API.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope {
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    #[serde(default)]
    pub errors: Option<Vec<serde_json::Value>>,
}

/// A bare success acknowledgement (`PUT /leveragepreferences`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ack {
    #[serde(default)]
    pub server_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TickerResponse {
    pub ticker: WireTicker,
    pub server_time: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TickersResponse {
    pub tickers: Vec<WireTicker>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireTicker {
    pub symbol: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub last: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub bid: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub ask: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_price: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstrumentsResponse {
    pub instruments: Vec<WireInstrument>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireInstrument {
    pub symbol: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub tick_size: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub contract_size: Option<Decimal>,
    #[serde(default)]
    pub contract_value_trade_precision: Option<i32>,
    #[serde(default)]
    pub tradeable: Option<bool>,
    #[serde(default)]
    pub margin_levels: Option<Vec<WireMarginLevel>>,
    #[serde(default)]
    pub retail_margin_levels: Option<Vec<WireMarginLevel>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireMarginLevel {
    #[serde(deserialize_with = "decimal")]
    pub initial_margin: Decimal,
}

/// Charts API answer (no `result` envelope).
#[derive(Debug, Deserialize)]
pub(super) struct CandlesResponse {
    pub candles: Vec<WireCandle>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireCandle {
    /// Open time, milliseconds.
    #[serde(deserialize_with = "int")]
    pub time: i64,
    #[serde(deserialize_with = "decimal")]
    pub open: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub high: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub low: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub close: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub volume: Decimal,
}

#[derive(Debug, Deserialize)]
pub(super) struct AccountsResponse {
    pub accounts: WireAccounts,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireAccounts {
    #[serde(default)]
    pub flex: Option<WireFlexAccount>,
}

/// The multi-collateral ("flex") account that margins every `PF_*` perpetual, valued in USD.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireFlexAccount {
    #[serde(default)]
    pub currencies: BTreeMap<String, WireFlexCurrency>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub portfolio_value: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub balance_value: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub available_margin: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub total_unrealized: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub pnl: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireFlexCurrency {
    #[serde(deserialize_with = "decimal")]
    pub quantity: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub available: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OpenPositionsResponse {
    pub open_positions: Vec<WirePosition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WirePosition {
    pub side: String,
    pub symbol: String,
    #[serde(deserialize_with = "decimal")]
    pub price: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub size: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_fixed_leverage: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SendOrderResponse {
    pub send_status: WireSendStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireSendStatus {
    pub status: String,
    #[serde(default, rename = "order_id")]
    pub order_id: Option<String>,
    #[serde(default)]
    pub received_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub order_events: Vec<WireOrderEvent>,
}

/// One entry of `orderEvents` (PLACE, EXECUTION, REJECT, CANCEL, ...).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireOrderEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub amount: Option<Decimal>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelOrderResponse {
    pub cancel_status: WireCancelStatus,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireCancelStatus {
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelAllResponse {
    pub cancel_status: WireCancelAllStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireCancelAllStatus {
    pub status: String,
    #[serde(default)]
    pub cancelled_orders: Vec<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OpenOrdersResponse {
    pub open_orders: Vec<WireOpenOrder>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireOpenOrder {
    #[serde(rename = "order_id")]
    pub order_id: String,
    #[serde(default)]
    pub cli_ord_id: Option<String>,
    pub status: String,
    pub side: String,
    pub order_type: String,
    pub symbol: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub limit_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub stop_price: Option<Decimal>,
    #[serde(deserialize_with = "decimal")]
    pub filled_size: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub unfilled_size: Option<Decimal>,
    #[serde(default)]
    pub reduce_only: bool,
    #[serde(default)]
    pub received_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_update_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct OrderStatusResponse {
    pub orders: Vec<WireOrderStatus>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireOrderStatus {
    pub order: WireCachedOrder,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireCachedOrder {
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: String,
    #[serde(default)]
    pub cli_ord_id: Option<String>,
    pub symbol: String,
    pub side: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub filled: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub limit_price: Option<Decimal>,
    #[serde(default)]
    pub reduce_only: bool,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_update_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub price_trigger_options: Option<WireTriggerOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireTriggerOptions {
    #[serde(deserialize_with = "decimal")]
    pub trigger_price: Decimal,
    #[serde(default)]
    pub trigger_side: Option<String>,
}

/// History API (`/api/history/v2/orders`) page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HistoryOrdersResponse {
    pub elements: Vec<WireHistoryElement>,
    #[serde(default)]
    pub continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireHistoryElement {
    #[serde(deserialize_with = "int")]
    pub timestamp: i64,
    pub event: WireHistoryEvent,
}

/// Externally tagged event (`{"OrderPlaced": {...}}`); unknown event kinds leave every field empty.
#[derive(Debug, Deserialize)]
pub(super) struct WireHistoryEvent {
    #[serde(default, rename = "OrderPlaced")]
    pub placed: Option<WireHistoryOrderEvent>,
    #[serde(default, rename = "OrderUpdated")]
    pub updated: Option<WireHistoryUpdate>,
    #[serde(default, rename = "OrderCancelled")]
    pub cancelled: Option<WireHistoryOrderEvent>,
    #[serde(default, rename = "OrderRejected")]
    pub rejected: Option<WireHistoryOrderEvent>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireHistoryOrderEvent {
    pub order: WireHistoricalOrder,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireHistoryUpdate {
    pub new_order: WireHistoricalOrder,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireHistoricalOrder {
    pub uid: String,
    pub tradeable: String,
    pub direction: String,
    #[serde(deserialize_with = "decimal")]
    pub quantity: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub filled: Decimal,
    #[serde(deserialize_with = "int")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub limit_price: Option<Decimal>,
    pub order_type: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub reduce_only: bool,
    #[serde(default)]
    pub last_update_timestamp: Option<i64>,
}

/// History API (`/api/history/v2/triggers`) page: stop and take-profit orders.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HistoryTriggersResponse {
    pub elements: Vec<WireTriggerElement>,
    #[serde(default)]
    pub continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireTriggerElement {
    #[serde(deserialize_with = "int")]
    pub timestamp: i64,
    pub event: WireTriggerEvent,
}

/// Externally tagged trigger event; unknown kinds leave every field empty.
#[derive(Debug, Deserialize)]
pub(super) struct WireTriggerEvent {
    #[serde(default, rename = "OrderTriggerPlaced")]
    pub placed: Option<WireTriggerOrderEvent>,
    #[serde(default, rename = "OrderTriggerUpdated")]
    pub updated: Option<WireTriggerUpdate>,
    #[serde(default, rename = "OrderTriggerCancelled")]
    pub cancelled: Option<WireTriggerOrderEvent>,
    #[serde(default, rename = "OrderTriggerActivated")]
    pub activated: Option<WireTriggerOrderEvent>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireTriggerOrderEvent {
    pub order: WireHistoricalTrigger,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireTriggerUpdate {
    pub new_order_trigger: WireHistoricalTrigger,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireHistoricalTrigger {
    pub uid: String,
    pub tradeable: String,
    pub direction: String,
    #[serde(deserialize_with = "decimal")]
    pub quantity: Decimal,
    #[serde(deserialize_with = "int")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub limit_price: Option<Decimal>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub reduce_only: bool,
    #[serde(default)]
    pub last_update_timestamp: Option<i64>,
    pub trigger_options: WireHistoryTriggerOptions,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireHistoryTriggerOptions {
    #[serde(deserialize_with = "decimal")]
    pub trigger_price: Decimal,
    pub trigger_side: String,
}
