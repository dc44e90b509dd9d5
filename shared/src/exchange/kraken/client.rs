//! Raw Kraken Futures HTTP client: one method per endpoint, each building the exact URL-encoded
//! parameter string it signs and sends, with its documented rate-limit cost and retry class.

use chrono::Utc;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::de::DeserializeOwned;

use super::VENUE;
use super::parse::decode;
use super::signing::Signer;
use super::wire::{
    AccountsResponse, Ack, CancelAllResponse, CancelOrderResponse, CandlesResponse,
    HistoryOrdersResponse, HistoryTriggersResponse, InstrumentsResponse, OpenOrdersResponse,
    OpenPositionsResponse, OrderStatusResponse, SendOrderResponse, TickerResponse, TickersResponse,
};
use crate::exchange::ExchangeError;
use crate::exchange::http::{RequestKind, VenueHttp};

const DERIVATIVES: &str = "/derivatives/api/v3";
const CHARTS: &str = "/api/charts/v1";
const HISTORY: &str = "/api/history/v2";

/// Costs from Kraken's rate-limit guide (500 units per 10 s for `/derivatives`); public
/// endpoints cost nothing. The leverage preference and the history API are not in the cost
/// table; they are charged like the other account reads.
mod cost {
    pub const PUBLIC: u32 = 0;
    pub const ACCOUNTS: u32 = 2;
    pub const OPEN_POSITIONS: u32 = 2;
    pub const OPEN_ORDERS: u32 = 2;
    pub const ORDER_STATUS: u32 = 1;
    pub const LEVERAGE: u32 = 2;
    pub const SEND_ORDER: u32 = 10;
    pub const CANCEL_ORDER: u32 = 10;
    pub const CANCEL_ALL: u32 = 25;
    pub const HISTORY: u32 = 2;
}

/// Whether a request carries `APIKey`/`Nonce`/`Authent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Public,
    Signed,
}

/// `key=value&...`, URL-encoded, in the given order: the string that is both sent and signed.
fn encode(params: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn header(value: &str, what: &str) -> Result<HeaderValue, ExchangeError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ExchangeError::Config {
        venue: VENUE,
        message: format!("{what} contains characters not allowed in an HTTP header"),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[derive(Debug)]
pub(super) struct KrakenClient {
    http: VenueHttp,
    signer: Option<Signer>,
}

impl KrakenClient {
    pub(super) fn new(http: VenueHttp, signer: Option<Signer>) -> Self {
        Self { http, signer }
    }

    pub(super) fn has_credentials(&self) -> bool {
        self.signer.is_some()
    }

    /// One attempt: encode, sign (fresh nonce), send, decode.
    async fn once<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        params: &[(&str, String)],
        auth: Auth,
        kind: RequestKind,
        weight: u32,
    ) -> Result<T, ExchangeError> {
        let query = encode(params);
        let target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut builder = self.http.request(method.clone(), &target);
        if auth == Auth::Signed {
            let signer = self.signer.as_ref().ok_or_else(|| ExchangeError::Config {
                venue: VENUE,
                message: format!("{path} needs API credentials and none are configured"),
            })?;
            let signed = signer.sign(&query, path, Utc::now().timestamp_millis())?;
            builder = builder
                .header("APIKey", header(&signed.api_key, "API key")?)
                .header("Nonce", signed.nonce)
                .header("Authent", header(&signed.authent, "signature")?);
        }
        if *method != Method::GET {
            builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let raw = self.http.send(builder, kind, weight).await?;
        let endpoint = path.strip_prefix(DERIVATIVES).unwrap_or(path);
        let result = decode::<T>(endpoint, &raw, kind);
        if matches!(result, Err(ExchangeError::RateLimited { .. })) {
            self.http.limiter().drain();
        }
        result
    }

    /// Reads retry on retryable errors; writes only on errors proving nothing happened (nonce
    /// rejections are re-signed with a new nonce on each attempt).
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        auth: Auth,
        kind: RequestKind,
        weight: u32,
    ) -> Result<T, ExchangeError> {
        self.http
            .with_retries(
                kind,
                || self.once::<T>(&method, path, params, auth, kind, weight),
                || async {},
            )
            .await
    }

    pub(super) async fn get_tickers_symbol(
        &self,
        venue_symbol: &str,
    ) -> Result<TickerResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/tickers/{venue_symbol}");
        self.call(
            Method::GET,
            &path,
            &[],
            Auth::Public,
            RequestKind::Read,
            cost::PUBLIC,
        )
        .await
    }

    pub(super) async fn get_tickers(&self) -> Result<TickersResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/tickers");
        self.call(
            Method::GET,
            &path,
            &[],
            Auth::Public,
            RequestKind::Read,
            cost::PUBLIC,
        )
        .await
    }

    pub(super) async fn get_instruments(&self) -> Result<InstrumentsResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/instruments");
        self.call(
            Method::GET,
            &path,
            &[],
            Auth::Public,
            RequestKind::Read,
            cost::PUBLIC,
        )
        .await
    }

    /// Trade-price candles; `from`/`to` are epoch SECONDS.
    pub(super) async fn get_charts_trade(
        &self,
        venue_symbol: &str,
        resolution: &str,
        from_s: i64,
        to_s: i64,
    ) -> Result<CandlesResponse, ExchangeError> {
        let path = format!("{CHARTS}/trade/{venue_symbol}/{resolution}");
        let params = [("from", from_s.to_string()), ("to", to_s.to_string())];
        self.call(
            Method::GET,
            &path,
            &params,
            Auth::Public,
            RequestKind::Read,
            cost::PUBLIC,
        )
        .await
    }

    pub(super) async fn get_accounts(&self) -> Result<AccountsResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/accounts");
        self.call(
            Method::GET,
            &path,
            &[],
            Auth::Signed,
            RequestKind::Read,
            cost::ACCOUNTS,
        )
        .await
    }

    pub(super) async fn get_openpositions(&self) -> Result<OpenPositionsResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/openpositions");
        let (kind, weight) = (RequestKind::Read, cost::OPEN_POSITIONS);
        self.call(Method::GET, &path, &[], Auth::Signed, kind, weight)
            .await
    }

    /// Setting the same preference twice is harmless, so this PUT is retried like a read.
    pub(super) async fn put_leveragepreferences(
        &self,
        venue_symbol: &str,
        max_leverage: u32,
    ) -> Result<Ack, ExchangeError> {
        let path = format!("{DERIVATIVES}/leveragepreferences");
        let params = [
            ("symbol", venue_symbol.to_string()),
            ("maxLeverage", max_leverage.to_string()),
        ];
        let (kind, weight) = (RequestKind::Read, cost::LEVERAGE);
        self.call(Method::PUT, &path, &params, Auth::Signed, kind, weight)
            .await
    }

    pub(super) async fn post_sendorder(
        &self,
        params: &[(&str, String)],
    ) -> Result<SendOrderResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/sendorder");
        let (kind, weight) = (RequestKind::Write, cost::SEND_ORDER);
        self.call(Method::POST, &path, params, Auth::Signed, kind, weight)
            .await
    }

    pub(super) async fn post_cancelorder(
        &self,
        cli_ord_id: &str,
    ) -> Result<CancelOrderResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/cancelorder");
        let params = [("cliOrdId", cli_ord_id.to_string())];
        let (kind, weight) = (RequestKind::Write, cost::CANCEL_ORDER);
        self.call(Method::POST, &path, &params, Auth::Signed, kind, weight)
            .await
    }

    pub(super) async fn post_cancelallorders(
        &self,
        venue_symbol: &str,
    ) -> Result<CancelAllResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/cancelallorders");
        let params = [("symbol", venue_symbol.to_string())];
        let (kind, weight) = (RequestKind::Write, cost::CANCEL_ALL);
        self.call(Method::POST, &path, &params, Auth::Signed, kind, weight)
            .await
    }

    pub(super) async fn get_openorders(&self) -> Result<OpenOrdersResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/openorders");
        let (kind, weight) = (RequestKind::Read, cost::OPEN_ORDERS);
        self.call(Method::GET, &path, &[], Auth::Signed, kind, weight)
            .await
    }

    /// A POST that only reads: retried like a read.
    pub(super) async fn post_orders_status(
        &self,
        cli_ord_id: &str,
    ) -> Result<OrderStatusResponse, ExchangeError> {
        let path = format!("{DERIVATIVES}/orders/status");
        let params = [("cliOrdIds", cli_ord_id.to_string())];
        let (kind, weight) = (RequestKind::Read, cost::ORDER_STATUS);
        self.call(Method::POST, &path, &params, Auth::Signed, kind, weight)
            .await
    }

    /// One page of order events of one market, newest first.
    pub(super) async fn get_history_orders(
        &self,
        venue_symbol: &str,
        continuation_token: Option<&str>,
    ) -> Result<HistoryOrdersResponse, ExchangeError> {
        self.history_page("orders", venue_symbol, continuation_token)
            .await
    }

    /// One page of trigger (stop / take-profit) events of one market, newest first.
    pub(super) async fn get_history_triggers(
        &self,
        venue_symbol: &str,
        continuation_token: Option<&str>,
    ) -> Result<HistoryTriggersResponse, ExchangeError> {
        self.history_page("triggers", venue_symbol, continuation_token)
            .await
    }

    async fn history_page<T: DeserializeOwned>(
        &self,
        stream: &str,
        venue_symbol: &str,
        continuation_token: Option<&str>,
    ) -> Result<T, ExchangeError> {
        let path = format!("{HISTORY}/{stream}");
        let mut params = vec![
            ("tradeable", venue_symbol.to_string()),
            ("sort", "desc".to_string()),
            ("count", "500".to_string()),
        ];
        if let Some(token) = continuation_token {
            params.push(("continuation_token", token.to_string()));
        }
        let (kind, weight) = (RequestKind::Read, cost::HISTORY);
        self.call(Method::GET, &path, &params, Auth::Signed, kind, weight)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_keep_their_order_and_are_encoded() {
        let q = encode(&[
            ("orderType", "lmt".into()),
            ("symbol", "PF_XBTUSD".into()),
            ("cliOrdId", "a b&c".into()),
        ]);
        assert_eq!(q, "orderType=lmt&symbol=PF_XBTUSD&cliOrdId=a+b%26c");
        assert_eq!(encode(&[]), "");
    }
}
