//! Raw Binance USDⓈ-M REST client: one method per endpoint, signing, clock offset, rate-limit
//! bookkeeping and retries. It speaks wire models only; `mod.rs` turns them into domain types.

use reqwest::Method;
use reqwest::header::HeaderValue;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::VENUE;
use super::errors::decode;
use super::signing::{query_string, signed_query};
use super::wire::{
    Account, Ack, ExchangeInfo, KlineRow, LeverageBracketResponse, LeverageSet, OpenAlgoOrders,
    PositionRisk, ServerTime, TickerPrice, WireAlgoOrder, WireOrder,
};
use crate::exchange::http::{ClockOffset, RateLimiter, RequestKind, VenueHttp};
use crate::exchange::{Credentials, ExchangeError, ExchangeResult};

/// Documented REQUEST_WEIGHT limit per IP and minute (exchangeInfo `rateLimits`).
pub(crate) const WEIGHT_PER_MINUTE: u32 = 2400;
/// Documented ORDERS limit per account and 10 seconds.
pub(crate) const ORDERS_PER_10S: u32 = 300;
/// How long a signed request stays valid after its timestamp (the venue's default).
const RECV_WINDOW_MS: u64 = 5000;

/// Signed (`TRADE`/`USER_DATA`) or public (`NONE`/`MARKET_DATA`) endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Public,
    Signed,
}

/// One request as the endpoint methods describe it.
#[derive(Debug)]
struct Call<'a> {
    method: Method,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    security: Security,
    kind: RequestKind,
    weight: u32,
    /// Counts against the per-account order limit.
    order: bool,
    /// The venue symbol, for `UnknownSymbol` errors.
    symbol: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'static str, security: Security, kind: RequestKind) -> Self {
        Self {
            method,
            path,
            params: Vec::new(),
            security,
            kind,
            weight: 1,
            order: false,
            symbol: None,
        }
    }
    fn param(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.params.push((key, value.into()));
        self
    }
    fn symbol(mut self, venue_symbol: &'a str) -> Self {
        self.symbol = Some(venue_symbol);
        self.param("symbol", venue_symbol)
    }
    fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    fn order(mut self) -> Self {
        self.order = true;
        self
    }
}

/// The HTTP side of one Binance instance.
#[derive(Debug)]
pub(crate) struct BinanceClient {
    http: VenueHttp,
    credentials: Option<Credentials>,
    offset: ClockOffset,
    /// Our time: the offset is measured against it and signed timestamps come from it.
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    orders: RateLimiter,
}

impl BinanceClient {
    pub(crate) fn new(
        http: VenueHttp,
        credentials: Option<Credentials>,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Self {
        Self {
            http,
            credentials,
            offset: ClockOffset::default(),
            clock,
            orders: RateLimiter::new(crate::exchange::http::RateLimit {
                capacity: ORDERS_PER_10S,
                per: std::time::Duration::from_secs(10),
            }),
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The credentials, or a configuration error naming what is missing for `what`.
    pub(crate) fn require_credentials(&self, what: &str) -> ExchangeResult<&Credentials> {
        self.credentials.as_ref().ok_or_else(|| ExchangeError::Config {
            venue: VENUE,
            message: format!(
                "{what} is a signed endpoint and needs credentials (API key and API secret); none are configured"
            ),
        })
    }

    /// Server time minus local time, as last measured.
    pub(crate) fn offset_ms(&self) -> i64 {
        self.offset.offset_ms()
    }

    /// Re-measure the clock offset from `/fapi/v1/time` (after a -1021 rejection).
    async fn resync(&self) {
        match self.get_time().await {
            Ok(_) => tracing::debug!(
                venue = VENUE,
                offset_ms = self.offset.offset_ms(),
                "clock offset resynchronised"
            ),
            Err(e) => tracing::warn!(venue = VENUE, error = %e, "clock resync failed"),
        }
    }

    /// Feed the usage headers into the limiters (they only ever make them more careful).
    fn observe(&self, raw: &crate::exchange::http::RawResponse) {
        if let Some(used) = raw
            .header("x-mbx-used-weight-1m")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.http
                .limiter()
                .observe_usage(used, u64::from(WEIGHT_PER_MINUTE));
        }
        if let Some(used) = raw
            .header("x-mbx-order-count-10s")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.orders.observe_usage(used, u64::from(ORDERS_PER_10S));
        }
    }

    /// One attempt: fresh timestamp and signature each time.
    async fn attempt<T: DeserializeOwned>(&self, call: &Call<'_>) -> ExchangeResult<T> {
        let mut query = query_string(&call.params);
        let mut builder_key = None;
        if call.security == Security::Signed {
            let creds = self.require_credentials(call.path)?;
            let mut params = call.params.clone();
            params.push(("recvWindow", RECV_WINDOW_MS.to_string()));
            params.push((
                "timestamp",
                (self.clock.now().timestamp_millis() + self.offset.offset_ms()).to_string(),
            ));
            query = signed_query(creds.api_secret.expose_secret(), &query_string(&params));
            let mut key = HeaderValue::from_str(creds.api_key.expose_secret()).map_err(|_| {
                ExchangeError::Config {
                    venue: VENUE,
                    message: "the API key contains characters not allowed in an HTTP header".into(),
                }
            })?;
            key.set_sensitive(true);
            builder_key = Some(key);
        }
        let path_and_query = if query.is_empty() {
            call.path.to_string()
        } else {
            format!("{}?{query}", call.path)
        };
        let mut builder = self.http.request(call.method.clone(), &path_and_query);
        if let Some(key) = builder_key {
            builder = builder.header("X-MBX-APIKEY", key);
        }
        if call.order {
            self.orders.acquire(1).await;
        }
        let raw = self.http.send(builder, call.kind, call.weight).await?;
        self.observe(&raw);
        decode(&raw, call.path, call.kind, call.symbol)
    }

    /// Run `call` with the shared retry policy; -1021 resyncs the clock before the retry.
    async fn run<T: DeserializeOwned>(&self, call: Call<'_>) -> ExchangeResult<T> {
        if call.security == Security::Signed {
            self.require_credentials(call.path)?;
        }
        self.http
            .with_retries(call.kind, || self.attempt(&call), || self.resync())
            .await
    }

    // ---- public endpoints ----

    /// GET /fapi/v1/time; also records the clock offset.
    pub(crate) async fn get_time(&self) -> ExchangeResult<ServerTime> {
        let sent = self.clock.now();
        let call = Call::new(
            Method::GET,
            "/fapi/v1/time",
            Security::Public,
            RequestKind::Read,
        );
        // Not through `run`: the resync hook calls this, so it must not resync itself.
        let t: ServerTime = self
            .http
            .with_retries(RequestKind::Read, || self.attempt(&call), || async {})
            .await?;
        if let Some(server) = crate::exchange::wire::millis_to_time(t.server_time) {
            self.offset.record(server, sent, self.clock.now());
        }
        Ok(t)
    }

    /// GET /fapi/v1/ping
    pub(crate) async fn get_ping(&self) -> ExchangeResult<serde_json::Value> {
        self.run(Call::new(
            Method::GET,
            "/fapi/v1/ping",
            Security::Public,
            RequestKind::Read,
        ))
        .await
    }

    /// GET /fapi/v1/klines (weight grows with `limit`).
    pub(crate) async fn get_klines(
        &self,
        venue_symbol: &str,
        interval: &str,
        start_time: Option<i64>,
        limit: u32,
    ) -> ExchangeResult<Vec<KlineRow>> {
        let weight = match limit {
            0..100 => 1,
            100..500 => 2,
            500..=1000 => 5,
            _ => 10,
        };
        let mut call = Call::new(
            Method::GET,
            "/fapi/v1/klines",
            Security::Public,
            RequestKind::Read,
        )
        .symbol(venue_symbol)
        .param("interval", interval)
        .weight(weight);
        if let Some(start) = start_time {
            call = call.param("startTime", start.to_string());
        }
        self.run(call.param("limit", limit.to_string())).await
    }

    /// GET /fapi/v1/ticker/price?symbol=
    pub(crate) async fn get_ticker_price(&self, venue_symbol: &str) -> ExchangeResult<TickerPrice> {
        self.run(
            Call::new(
                Method::GET,
                "/fapi/v1/ticker/price",
                Security::Public,
                RequestKind::Read,
            )
            .symbol(venue_symbol),
        )
        .await
    }

    /// GET /fapi/v1/exchangeInfo
    pub(crate) async fn get_exchange_info(&self) -> ExchangeResult<ExchangeInfo> {
        self.run(Call::new(
            Method::GET,
            "/fapi/v1/exchangeInfo",
            Security::Public,
            RequestKind::Read,
        ))
        .await
    }

    // ---- signed reads ----

    /// GET /fapi/v1/leverageBracket?symbol=
    pub(crate) async fn get_leverage_bracket(
        &self,
        venue_symbol: &str,
    ) -> ExchangeResult<LeverageBracketResponse> {
        self.run(
            Call::new(
                Method::GET,
                "/fapi/v1/leverageBracket",
                Security::Signed,
                RequestKind::Read,
            )
            .symbol(venue_symbol),
        )
        .await
    }

    /// GET /fapi/v3/account
    pub(crate) async fn get_account(&self) -> ExchangeResult<Account> {
        self.run(
            Call::new(
                Method::GET,
                "/fapi/v3/account",
                Security::Signed,
                RequestKind::Read,
            )
            .weight(5),
        )
        .await
    }

    /// GET /fapi/v3/positionRisk[?symbol=]
    pub(crate) async fn get_position_risk(
        &self,
        venue_symbol: Option<&str>,
    ) -> ExchangeResult<Vec<PositionRisk>> {
        let mut call = Call::new(
            Method::GET,
            "/fapi/v3/positionRisk",
            Security::Signed,
            RequestKind::Read,
        )
        .weight(5);
        if let Some(s) = venue_symbol {
            call = call.symbol(s);
        }
        self.run(call).await
    }

    /// GET /fapi/v1/openOrders?symbol=
    pub(crate) async fn get_open_orders(
        &self,
        venue_symbol: &str,
    ) -> ExchangeResult<Vec<WireOrder>> {
        self.run(
            Call::new(
                Method::GET,
                "/fapi/v1/openOrders",
                Security::Signed,
                RequestKind::Read,
            )
            .symbol(venue_symbol),
        )
        .await
    }

    /// GET /fapi/v1/openAlgoOrders?symbol=
    pub(crate) async fn get_open_algo_orders(
        &self,
        venue_symbol: &str,
    ) -> ExchangeResult<OpenAlgoOrders> {
        self.run(
            Call::new(
                Method::GET,
                "/fapi/v1/openAlgoOrders",
                Security::Signed,
                RequestKind::Read,
            )
            .symbol(venue_symbol),
        )
        .await
    }

    /// GET /fapi/v1/order?symbol=&origClientOrderId=
    pub(crate) async fn get_order(
        &self,
        venue_symbol: &str,
        client_order_id: &str,
    ) -> ExchangeResult<WireOrder> {
        self.run(
            Call::new(
                Method::GET,
                "/fapi/v1/order",
                Security::Signed,
                RequestKind::Read,
            )
            .symbol(venue_symbol)
            .param("origClientOrderId", client_order_id),
        )
        .await
    }

    /// GET /fapi/v1/algoOrder?clientAlgoId=
    pub(crate) async fn get_algo_order(
        &self,
        client_algo_id: &str,
    ) -> ExchangeResult<WireAlgoOrder> {
        self.run(
            Call::new(
                Method::GET,
                "/fapi/v1/algoOrder",
                Security::Signed,
                RequestKind::Read,
            )
            .param("clientAlgoId", client_algo_id),
        )
        .await
    }

    // ---- signed writes (never retried once they may have reached the venue) ----

    /// POST /fapi/v1/leverage
    pub(crate) async fn post_leverage(
        &self,
        venue_symbol: &str,
        leverage: u32,
    ) -> ExchangeResult<LeverageSet> {
        self.run(
            Call::new(
                Method::POST,
                "/fapi/v1/leverage",
                Security::Signed,
                RequestKind::Write,
            )
            .symbol(venue_symbol)
            .param("leverage", leverage.to_string()),
        )
        .await
    }

    /// POST /fapi/v1/order with `params` (symbol first, as the caller built them).
    pub(crate) async fn post_order(
        &self,
        venue_symbol: &str,
        params: Vec<(&'static str, String)>,
    ) -> ExchangeResult<WireOrder> {
        let mut call = Call::new(
            Method::POST,
            "/fapi/v1/order",
            Security::Signed,
            RequestKind::Write,
        )
        .symbol(venue_symbol)
        .weight(0)
        .order();
        call.params.extend(params);
        self.run(call).await
    }

    /// POST /fapi/v1/algoOrder (conditional orders).
    pub(crate) async fn post_algo_order(
        &self,
        venue_symbol: &str,
        params: Vec<(&'static str, String)>,
    ) -> ExchangeResult<WireAlgoOrder> {
        let mut call = Call::new(
            Method::POST,
            "/fapi/v1/algoOrder",
            Security::Signed,
            RequestKind::Write,
        )
        .param("algoType", "CONDITIONAL")
        .symbol(venue_symbol)
        .weight(0)
        .order();
        call.params.extend(params);
        self.run(call).await
    }

    /// DELETE /fapi/v1/order?symbol=&origClientOrderId=
    pub(crate) async fn delete_order(
        &self,
        venue_symbol: &str,
        client_order_id: &str,
    ) -> ExchangeResult<WireOrder> {
        self.run(
            Call::new(
                Method::DELETE,
                "/fapi/v1/order",
                Security::Signed,
                RequestKind::Write,
            )
            .symbol(venue_symbol)
            .param("origClientOrderId", client_order_id),
        )
        .await
    }

    /// DELETE /fapi/v1/algoOrder?clientAlgoId=
    pub(crate) async fn delete_algo_order(&self, client_algo_id: &str) -> ExchangeResult<Ack> {
        self.run(
            Call::new(
                Method::DELETE,
                "/fapi/v1/algoOrder",
                Security::Signed,
                RequestKind::Write,
            )
            .param("clientAlgoId", client_algo_id),
        )
        .await
    }

    /// DELETE /fapi/v1/allOpenOrders?symbol=
    pub(crate) async fn delete_all_open_orders(&self, venue_symbol: &str) -> ExchangeResult<Ack> {
        self.run(
            Call::new(
                Method::DELETE,
                "/fapi/v1/allOpenOrders",
                Security::Signed,
                RequestKind::Write,
            )
            .symbol(venue_symbol),
        )
        .await
    }

    /// DELETE /fapi/v1/algoOpenOrders?symbol=
    pub(crate) async fn delete_algo_open_orders(&self, venue_symbol: &str) -> ExchangeResult<Ack> {
        self.run(
            Call::new(
                Method::DELETE,
                "/fapi/v1/algoOpenOrders",
                Security::Signed,
                RequestKind::Write,
            )
            .symbol(venue_symbol),
        )
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exchange::http::{HttpSettings, RateLimit, RawResponse};
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    #[test]
    fn usage_headers_lower_the_limiters() {
        let http = VenueHttp::new(
            VENUE,
            "http://127.0.0.1:9",
            RateLimit {
                capacity: WEIGHT_PER_MINUTE,
                per: std::time::Duration::from_secs(60),
            },
            HttpSettings::default(),
        )
        .unwrap();
        let client = BinanceClient::new(http, None, std::sync::Arc::new(crate::clock::SystemClock));
        assert!(client.http.limiter().headroom() > 0.99);
        let mut headers = HeaderMap::new();
        headers.insert("X-MBX-USED-WEIGHT-1M", "2280".parse().unwrap());
        headers.insert("X-MBX-ORDER-COUNT-10S", "270".parse().unwrap());
        client.observe(&RawResponse {
            status: StatusCode::OK,
            headers,
            body: String::new(),
        });
        // 2280 of 2400 used: at most 5 % left (plus a sliver of refill); 270 of 300 orders: 10 %.
        assert!(client.http.limiter().headroom() < 0.06);
        assert!(client.orders.headroom() < 0.11);
    }

    #[test]
    fn signed_calls_need_credentials() {
        let http = VenueHttp::new(
            VENUE,
            "http://127.0.0.1:9",
            RateLimit {
                capacity: 10,
                per: std::time::Duration::from_secs(1),
            },
            HttpSettings::default(),
        )
        .unwrap();
        let client = BinanceClient::new(http, None, std::sync::Arc::new(crate::clock::SystemClock));
        let e = client.require_credentials("/fapi/v3/account").unwrap_err();
        assert!(e.to_string().contains("/fapi/v3/account"));
        assert_eq!(e.kind(), "config");
    }
}
