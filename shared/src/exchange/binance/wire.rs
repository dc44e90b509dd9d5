//! Binance USDⓈ-M wire models: the JSON shapes of the endpoints the adapter calls, read with
//! serde exactly as the venue sends them (numbers as strings or JSON numbers).

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::exchange::wire::opt_int;
use crate::exchange::wire::{decimal, id_string, int, opt_decimal};

/// Error body of every endpoint: `{"code": -1121, "msg": "Invalid symbol."}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiError {
    pub code: i64,
    #[serde(default)]
    pub msg: String,
}

/// GET /fapi/v1/time
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerTime {
    #[serde(deserialize_with = "int")]
    pub server_time: i64,
}

/// One row of GET /fapi/v1/klines:
/// `[openTime, open, high, low, close, volume, closeTime, quoteVolume, trades, takerBase, takerQuote, ignore]`.
#[derive(Debug, Deserialize)]
pub(crate) struct KlineRow(
    #[serde(deserialize_with = "int")] pub i64,
    #[serde(deserialize_with = "decimal")] pub Decimal,
    #[serde(deserialize_with = "decimal")] pub Decimal,
    #[serde(deserialize_with = "decimal")] pub Decimal,
    #[serde(deserialize_with = "decimal")] pub Decimal,
    #[serde(deserialize_with = "decimal")] pub Decimal,
    #[serde(deserialize_with = "int")] pub i64,
    pub serde::de::IgnoredAny,
    pub serde::de::IgnoredAny,
    pub serde::de::IgnoredAny,
    pub serde::de::IgnoredAny,
    pub serde::de::IgnoredAny,
);

/// GET /fapi/v1/ticker/price?symbol=
#[derive(Debug, Deserialize)]
pub(crate) struct TickerPrice {
    pub symbol: String,
    #[serde(deserialize_with = "decimal")]
    pub price: Decimal,
    #[serde(deserialize_with = "int")]
    pub time: i64,
}

/// GET /fapi/v1/exchangeInfo
#[derive(Debug, Deserialize)]
pub(crate) struct ExchangeInfo {
    pub symbols: Vec<SymbolInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SymbolInfo {
    pub symbol: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub contract_type: String,
    pub base_asset: String,
    pub quote_asset: String,
    pub margin_asset: String,
    pub filters: Vec<SymbolFilter>,
}

/// The filters the adapter needs; every other filter type is accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "filterType")]
pub(crate) enum SymbolFilter {
    #[serde(rename = "PRICE_FILTER", rename_all = "camelCase")]
    Price {
        #[serde(deserialize_with = "decimal")]
        tick_size: Decimal,
    },
    #[serde(rename = "LOT_SIZE", rename_all = "camelCase")]
    LotSize {
        #[serde(deserialize_with = "decimal")]
        step_size: Decimal,
        #[serde(deserialize_with = "decimal")]
        min_qty: Decimal,
    },
    #[serde(rename = "MARKET_LOT_SIZE", rename_all = "camelCase")]
    MarketLotSize {
        #[serde(deserialize_with = "decimal")]
        step_size: Decimal,
        #[serde(deserialize_with = "decimal")]
        min_qty: Decimal,
    },
    #[serde(rename = "MIN_NOTIONAL")]
    MinNotional {
        #[serde(deserialize_with = "decimal")]
        notional: Decimal,
    },
    #[serde(other)]
    Other,
}

/// GET /fapi/v1/leverageBracket?symbol= : an array of these, or (for one symbol on some
/// deployments) a single object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum LeverageBracketResponse {
    Many(Vec<SymbolBrackets>),
    One(SymbolBrackets),
}

#[derive(Debug, Deserialize)]
pub(crate) struct SymbolBrackets {
    pub symbol: String,
    pub brackets: Vec<Bracket>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Bracket {
    #[serde(deserialize_with = "decimal")]
    pub initial_leverage: Decimal,
}

/// GET /fapi/v3/account (also the v2 shape, which adds the permission flags).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Account {
    #[serde(default)]
    pub can_trade: Option<bool>,
    #[serde(default)]
    pub can_withdraw: Option<bool>,
    pub assets: Vec<AccountAsset>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccountAsset {
    pub asset: String,
    #[serde(deserialize_with = "decimal")]
    pub unrealized_profit: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub margin_balance: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub available_balance: Decimal,
}

/// One entry of GET /fapi/v3/positionRisk.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PositionRisk {
    pub symbol: String,
    pub position_side: String,
    #[serde(deserialize_with = "decimal")]
    pub position_amt: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub entry_price: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub mark_price: Option<Decimal>,
    #[serde(rename = "unRealizedProfit", deserialize_with = "decimal")]
    pub unrealized_profit: Decimal,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub liquidation_price: Option<Decimal>,
    /// Only in the v2 shape.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub leverage: Option<Decimal>,
}

/// POST /fapi/v1/leverage
#[derive(Debug, Deserialize)]
pub(crate) struct LeverageSet {
    #[serde(deserialize_with = "int")]
    pub leverage: i64,
    pub symbol: String,
}

/// A regular order as POST/GET/DELETE /fapi/v1/order and GET /fapi/v1/openOrders return it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireOrder {
    #[serde(deserialize_with = "id_string")]
    pub order_id: String,
    pub symbol: String,
    pub status: String,
    pub client_order_id: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub avg_price: Option<Decimal>,
    #[serde(deserialize_with = "decimal")]
    pub orig_qty: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub executed_qty: Decimal,
    #[serde(rename = "type")]
    pub order_type: String,
    #[serde(default)]
    pub reduce_only: bool,
    pub side: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub stop_price: Option<Decimal>,
    /// Present in GET responses; the POST response has only `updateTime`.
    #[serde(default, deserialize_with = "opt_int")]
    pub time: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub update_time: Option<i64>,
}

/// A conditional order of the Algo Service (`/fapi/v1/algoOrder`, `/fapi/v1/openAlgoOrders`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireAlgoOrder {
    #[serde(deserialize_with = "id_string")]
    pub algo_id: String,
    pub client_algo_id: String,
    pub order_type: String,
    pub symbol: String,
    pub side: String,
    /// Empty or absent for close-position orders.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub quantity: Option<Decimal>,
    pub algo_status: String,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub trigger_price: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub price: Option<Decimal>,
    #[serde(default)]
    pub reduce_only: bool,
    #[serde(default, deserialize_with = "opt_int")]
    pub create_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub update_time: Option<i64>,
}

/// GET /fapi/v1/openAlgoOrders: a bare array, or an object wrapping it under `orders`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OpenAlgoOrders {
    List(Vec<WireAlgoOrder>),
    Wrapped { orders: Vec<WireAlgoOrder> },
}

/// `{"code": 200, "msg": "..."}` style acknowledgements (cancel-all, algo cancel): any JSON
/// object is accepted; failures arrive as negative codes and are mapped before this.
#[derive(Debug, Deserialize)]
pub(crate) struct Ack {}
