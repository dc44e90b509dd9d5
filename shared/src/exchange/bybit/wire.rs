//! Bybit V5 wire models (serde), exactly as the venue sends them. They never leave this folder;
//! `parse.rs` turns them into domain types.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::exchange::wire::opt_int;
use crate::exchange::wire::{decimal, id_string, int, opt_decimal};

/// The envelope every V5 response shares. `result` is kept raw so the retCode is read before the
/// payload is interpreted (error responses often carry `{}` there).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope {
    #[serde(deserialize_with = "int")]
    pub ret_code: i64,
    #[serde(default)]
    pub ret_msg: String,
    #[serde(default)]
    pub result: serde_json::Value,
    /// Server time of the response, ms.
    #[serde(default, deserialize_with = "opt_int")]
    pub time: Option<i64>,
}

/// GET /v5/market/time
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerTime {
    #[serde(deserialize_with = "int")]
    pub time_second: i64,
    #[serde(default)]
    pub time_nano: Option<String>,
}

/// GET /v5/market/kline: rows `[start, open, high, low, close, volume, turnover]`, newest first.
#[derive(Debug, Deserialize)]
pub(crate) struct KlineResult {
    pub list: Vec<Vec<String>>,
}

/// GET /v5/market/tickers
#[derive(Debug, Deserialize)]
pub(crate) struct TickerResult {
    pub list: Vec<TickerRow>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TickerRow {
    pub symbol: String,
    #[serde(deserialize_with = "decimal")]
    pub last_price: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub bid1_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub ask1_price: Option<Decimal>,
}

/// GET /v5/market/instruments-info
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstrumentsResult {
    pub list: Vec<InstrumentRow>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstrumentRow {
    pub symbol: String,
    #[serde(default)]
    pub status: String,
    pub base_coin: String,
    pub quote_coin: String,
    #[serde(default)]
    pub settle_coin: Option<String>,
    pub leverage_filter: LeverageFilter,
    pub price_filter: PriceFilter,
    pub lot_size_filter: LotSizeFilter,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeverageFilter {
    #[serde(deserialize_with = "decimal")]
    pub max_leverage: Decimal,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PriceFilter {
    #[serde(deserialize_with = "decimal")]
    pub tick_size: Decimal,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LotSizeFilter {
    #[serde(deserialize_with = "decimal")]
    pub qty_step: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub min_order_qty: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub min_notional_value: Option<Decimal>,
}

/// GET /v5/account/wallet-balance
#[derive(Debug, Deserialize)]
pub(crate) struct WalletResult {
    pub list: Vec<WalletAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WalletAccount {
    #[serde(default)]
    pub account_type: String,
    /// Account-level available balance, in USD (the only one given for cross margin).
    #[serde(default, deserialize_with = "opt_decimal")]
    pub total_available_balance: Option<Decimal>,
    pub coin: Vec<WalletCoin>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WalletCoin {
    pub coin: String,
    #[serde(deserialize_with = "decimal")]
    pub equity: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub unrealised_pnl: Option<Decimal>,
    #[serde(rename = "totalPositionIM", default, deserialize_with = "opt_decimal")]
    pub total_position_im: Option<Decimal>,
    #[serde(rename = "totalOrderIM", default, deserialize_with = "opt_decimal")]
    pub total_order_im: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub locked: Option<Decimal>,
}

/// GET /v5/position/list
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PositionResult {
    pub list: Vec<PositionRow>,
    #[serde(default)]
    pub next_page_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PositionRow {
    pub symbol: String,
    /// `Buy`, `Sell`, or `""` for an empty position.
    pub side: String,
    #[serde(deserialize_with = "decimal")]
    pub size: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub avg_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub unrealised_pnl: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub leverage: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub liq_price: Option<Decimal>,
}

/// POST /v5/position/set-leverage
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetLeverageBody<'a> {
    pub category: &'static str,
    pub symbol: &'a str,
    pub buy_leverage: String,
    pub sell_leverage: String,
}

/// POST /v5/order/create
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateOrderBody<'a> {
    pub category: &'static str,
    pub symbol: &'a str,
    pub side: &'static str,
    pub order_type: &'static str,
    pub qty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_in_force: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_direction: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_by: Option<&'static str>,
    pub position_idx: u8,
    pub order_link_id: &'a str,
    pub reduce_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_on_trigger: Option<bool>,
}

/// Answer of create / cancel: an acknowledgement only.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderAck {
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
    #[serde(default)]
    pub order_link_id: String,
}

/// POST /v5/order/cancel
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelOrderBody<'a> {
    pub category: &'static str,
    pub symbol: &'a str,
    pub order_link_id: &'a str,
}

/// POST /v5/order/cancel-all (no `orderFilter`: linear then cancels every kind of order).
#[derive(Debug, Serialize)]
pub(crate) struct CancelAllBody<'a> {
    pub category: &'static str,
    pub symbol: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CancelAllResult {
    pub list: Vec<OrderAck>,
}

/// GET /v5/order/realtime and /v5/order/history
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderListResult {
    pub list: Vec<OrderRow>,
    #[serde(default)]
    pub next_page_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderRow {
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
    #[serde(default)]
    pub order_link_id: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    #[serde(default)]
    pub stop_order_type: String,
    pub order_status: String,
    #[serde(deserialize_with = "decimal")]
    pub qty: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub trigger_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_int")]
    pub trigger_direction: Option<i64>,
    #[serde(default)]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub cum_exec_qty: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub avg_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub cum_exec_fee: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_int")]
    pub created_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub updated_time: Option<i64>,
}

/// GET /v5/user/query-api
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiKeyInfo {
    /// 0 read and write, 1 read only.
    #[serde(deserialize_with = "int")]
    pub read_only: i64,
    pub permissions: ApiPermissions,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiPermissions {
    #[serde(rename = "ContractTrade", default)]
    pub contract_trade: Vec<String>,
    #[serde(rename = "Derivatives", default)]
    pub derivatives: Vec<String>,
    #[serde(rename = "Wallet", default)]
    pub wallet: Vec<String>,
}
