//! Raw Bybit V5 HTTP client, one method per endpoint. It signs, sends through the shared
//! `VenueHttp` (rate limits, retries, timeouts), feeds the usage headers back into the limiter,
//! resyncs the clock on timestamp rejections and hands back checked wire models.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::Clock;
use crate::exchange::http::{
    ClockOffset, RateLimit, RateLimiter, RawResponse, RequestKind, VenueHttp,
};
use crate::exchange::{Credentials, ExchangeError};

use super::VENUE;
use super::errors::{self, Context};
use super::parse;
use super::signing;
use super::wire::{
    ApiKeyInfo, CancelAllBody, CancelAllResult, CancelOrderBody, CreateOrderBody, Envelope,
    InstrumentsResult, KlineResult, OrderAck, OrderListResult, PositionResult, ServerTime,
    SetLeverageBody, TickerResult, WalletResult,
};

pub(crate) const CATEGORY: &str = "linear";

/// IP limit: 600 requests per 5 s per IP (HTTP 403 and a 10 minute ban beyond it).
pub(crate) const IP_LIMIT: RateLimit = RateLimit {
    capacity: 600,
    per: Duration::from_secs(5),
};

/// Per-UID limit of the order and leverage writes used here (10/s for linear).
const WRITE_LIMIT: RateLimit = RateLimit {
    capacity: 10,
    per: Duration::from_secs(1),
};

/// Default `X-BAPI-RECV-WINDOW` in ms.
pub(crate) const RECV_WINDOW_MS: u64 = 5_000;

/// Longest wait taken from `X-Bapi-Limit-Reset-Timestamp` (the per-UID windows are 1 s).
const MAX_RESET_WAIT: Duration = Duration::from_secs(5);

/// A GET query as sent and signed: `k=v` pairs joined by `&`, values form-encoded. A pagination
/// `cursor` is returned by Bybit already percent-encoded and is sent back as it came when it holds
/// only URL-safe characters (encoding it again would change the cursor the venue decodes).
fn query_string(pairs: &[(&str, String)]) -> String {
    let url_safe = |v: &str| {
        v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%'))
    };
    let mut parts = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if *k == "cursor" && url_safe(v) {
            parts.push(format!("{k}={v}"));
        } else {
            parts.push(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(k, v)
                    .finish(),
            );
        }
    }
    parts.join("&")
}

fn sensitive(value: &str, what: &str) -> Result<HeaderValue, ExchangeError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ExchangeError::Config {
        venue: VENUE,
        message: format!("{what} contains characters not allowed in an HTTP header"),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[derive(Debug)]
pub(crate) struct BybitClient {
    http: VenueHttp,
    credentials: Option<Credentials>,
    clock: Arc<dyn Clock>,
    offset: ClockOffset,
    recv_window: u64,
    writes: RateLimiter,
    /// Set after HTTP 403: no request leaves until then.
    banned_until: Mutex<Option<Instant>>,
}

impl BybitClient {
    pub(crate) fn new(
        http: VenueHttp,
        credentials: Option<Credentials>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            credentials,
            clock,
            offset: ClockOffset::default(),
            recv_window: RECV_WINDOW_MS,
            writes: RateLimiter::new(WRITE_LIMIT),
            banned_until: Mutex::new(None),
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The venue's idea of now: our clock corrected by the last measured offset.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let ms = self.clock.now().timestamp_millis() + self.offset.offset_ms();
        DateTime::from_timestamp_millis(ms).unwrap_or_else(|| self.clock.now())
    }

    /// Our own clock, uncorrected (to report the skew).
    pub(crate) fn local_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn credentials(&self, endpoint: &str) -> Result<&Credentials, ExchangeError> {
        self.credentials
            .as_ref()
            .ok_or_else(|| ExchangeError::Config {
                venue: VENUE,
                message: format!(
                    "{endpoint} needs API credentials (api_key and api_secret); none are configured"
                ),
            })
    }

    fn check_ban(&self) -> Result<(), ExchangeError> {
        let guard = self.banned_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = *guard {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(ExchangeError::RateLimited {
                    venue: VENUE,
                    retry_after: Some(left),
                    message: "IP banned after HTTP 403; not sending until the ban is over".into(),
                });
            }
        }
        Ok(())
    }

    /// Usage headers into the limiters (the IP-wide one always, the per-UID write one for writes,
    /// whose headers report exactly that limit); HTTP 403 starts the ban. Returns the wait until
    /// the per-UID window resets.
    fn observe(&self, raw: &RawResponse, kind: RequestKind) -> Option<Duration> {
        if raw.status.as_u16() == 403 {
            *self.banned_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + errors::IP_BAN);
            self.http.limiter().drain();
        }
        let num = |h: &str| raw.header(h).and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(limit), Some(remaining)) = (num("x-bapi-limit"), num("x-bapi-limit-status")) {
            let used = limit.saturating_sub(remaining);
            self.http.limiter().observe_usage(used, limit);
            if kind == RequestKind::Write {
                self.writes.observe_usage(used, limit);
            }
        }
        let reset = raw
            .header("x-bapi-limit-reset-timestamp")
            .and_then(|v| v.trim().parse::<i64>().ok())?;
        let wait = reset - self.now().timestamp_millis();
        (wait > 0).then(|| Duration::from_millis(wait.unsigned_abs()).min(MAX_RESET_WAIT))
    }

    /// The signing headers of one request over `payload`.
    fn sign(
        &self,
        endpoint: &str,
        builder: reqwest::RequestBuilder,
        payload: &str,
    ) -> Result<reqwest::RequestBuilder, ExchangeError> {
        let creds = self.credentials(endpoint)?;
        let key = creds.api_key.expose_secret();
        let timestamp = self.now().timestamp_millis();
        let signature = signing::sign(
            creds.api_secret.expose_secret(),
            timestamp,
            key,
            self.recv_window,
            payload,
        )?;
        Ok(builder
            .header("X-BAPI-API-KEY", sensitive(key, "api_key")?)
            .header("X-BAPI-TIMESTAMP", timestamp.to_string())
            .header("X-BAPI-RECV-WINDOW", self.recv_window.to_string())
            .header("X-BAPI-SIGN", sensitive(&signature, "signature")?)
            .header("X-BAPI-SIGN-TYPE", "2"))
    }

    async fn get_once(
        &self,
        endpoint: &'static str,
        query: &str,
        signed: bool,
        symbol: Option<&str>,
    ) -> Result<Envelope, ExchangeError> {
        self.check_ban()?;
        let path = if query.is_empty() {
            endpoint.to_string()
        } else {
            format!("{endpoint}?{query}")
        };
        let mut builder = self.http.request(Method::GET, &path);
        if signed {
            builder = self.sign(endpoint, builder, query)?;
        }
        let raw = self.http.send(builder, RequestKind::Read, 1).await?;
        let limit_reset_in = self.observe(&raw, RequestKind::Read);
        parse::envelope(
            endpoint,
            &raw,
            Context {
                kind: RequestKind::Read,
                symbol,
                limit_reset_in,
            },
        )
    }

    async fn post_once(
        &self,
        endpoint: &'static str,
        body: &str,
        symbol: Option<&str>,
    ) -> Result<Envelope, ExchangeError> {
        self.check_ban()?;
        self.credentials(endpoint)?;
        self.writes.acquire(1).await;
        let builder = self
            .http
            .request(Method::POST, endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let builder = self.sign(endpoint, builder, body)?;
        let raw = self.http.send(builder, RequestKind::Write, 1).await?;
        let limit_reset_in = self.observe(&raw, RequestKind::Write);
        parse::envelope(
            endpoint,
            &raw,
            Context {
                kind: RequestKind::Write,
                symbol,
                limit_reset_in,
            },
        )
    }

    /// Measure the offset to the venue's clock (after a 10002 rejection).
    async fn sync_time(&self) {
        let sent_at = self.clock.now();
        match self.market_time_once().await {
            Ok(server) => {
                let received_at = self.clock.now();
                self.offset.record(server, sent_at, received_at);
                tracing::info!(
                    venue = VENUE,
                    offset_ms = self.offset.offset_ms(),
                    "resynced clock offset"
                );
            }
            Err(e) => tracing::warn!(venue = VENUE, error = %e, "clock resync failed"),
        }
    }

    /// A read, retried on retryable errors, resyncing the clock after timestamp rejections.
    async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        pairs: &[(&str, String)],
        signed: bool,
        symbol: Option<&str>,
    ) -> Result<(T, Option<i64>), ExchangeError> {
        let query = query_string(pairs);
        let query = query.as_str();
        let env = self
            .http
            .with_retries(
                RequestKind::Read,
                move || self.get_once(endpoint, query, signed, symbol),
                move || self.sync_time(),
            )
            .await?;
        Ok((
            parse::result(endpoint, RequestKind::Read, env.result)?,
            env.time,
        ))
    }

    /// A write: retried only when the venue provably did not act (see `VenueHttp::with_retries`).
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        body: &B,
        symbol: Option<&str>,
    ) -> Result<(T, Option<i64>), ExchangeError> {
        let body = serde_json::to_string(body).map_err(|e| ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!("cannot encode the {endpoint} body: {e}"),
        })?;
        let body = body.as_str();
        let env = self
            .http
            .with_retries(
                RequestKind::Write,
                move || self.post_once(endpoint, body, symbol),
                move || self.sync_time(),
            )
            .await?;
        Ok((
            parse::result(endpoint, RequestKind::Write, env.result)?,
            env.time,
        ))
    }

    async fn market_time_once(&self) -> Result<DateTime<Utc>, ExchangeError> {
        let endpoint = "/v5/market/time";
        let env = self.get_once(endpoint, "", false, None).await?;
        parse::server_time(&parse::result::<ServerTime>(
            endpoint,
            RequestKind::Read,
            env.result,
        )?)
    }

    /// GET /v5/market/time
    pub(crate) async fn market_time(&self) -> Result<DateTime<Utc>, ExchangeError> {
        let (t, _) = self
            .get::<ServerTime>("/v5/market/time", &[], false, None)
            .await?;
        parse::server_time(&t)
    }

    /// GET /v5/market/kline
    pub(crate) async fn market_kline(
        &self,
        symbol: &str,
        interval: &str,
        start: Option<i64>,
        end: Option<i64>,
        limit: u32,
    ) -> Result<KlineResult, ExchangeError> {
        let mut q = vec![
            ("category", CATEGORY.to_string()),
            ("symbol", symbol.to_string()),
            ("interval", interval.to_string()),
        ];
        if let Some(start) = start {
            q.push(("start", start.to_string()));
        }
        if let Some(end) = end {
            q.push(("end", end.to_string()));
        }
        q.push(("limit", limit.to_string()));
        Ok(self
            .get("/v5/market/kline", &q, false, Some(symbol))
            .await?
            .0)
    }

    /// GET /v5/market/tickers; also returns the envelope time.
    pub(crate) async fn market_tickers(
        &self,
        symbol: &str,
    ) -> Result<(TickerResult, Option<i64>), ExchangeError> {
        let q = [
            ("category", CATEGORY.to_string()),
            ("symbol", symbol.to_string()),
        ];
        self.get("/v5/market/tickers", &q, false, Some(symbol))
            .await
    }

    /// GET /v5/market/instruments-info
    pub(crate) async fn market_instruments_info(
        &self,
        symbol: &str,
    ) -> Result<InstrumentsResult, ExchangeError> {
        let q = [
            ("category", CATEGORY.to_string()),
            ("symbol", symbol.to_string()),
        ];
        Ok(self
            .get("/v5/market/instruments-info", &q, false, Some(symbol))
            .await?
            .0)
    }

    /// GET /v5/account/wallet-balance (UNIFIED account)
    pub(crate) async fn account_wallet_balance(
        &self,
        coin: &str,
    ) -> Result<WalletResult, ExchangeError> {
        let q = [
            ("accountType", "UNIFIED".to_string()),
            ("coin", coin.to_string()),
        ];
        Ok(self
            .get("/v5/account/wallet-balance", &q, true, None)
            .await?
            .0)
    }

    /// GET /v5/position/list, by symbol or by settle coin, one page.
    pub(crate) async fn position_list(
        &self,
        symbol: Option<&str>,
        settle_coin: &str,
        cursor: Option<&str>,
    ) -> Result<PositionResult, ExchangeError> {
        let mut q = vec![("category", CATEGORY.to_string())];
        match symbol {
            Some(s) => q.push(("symbol", s.to_string())),
            None => q.push(("settleCoin", settle_coin.to_string())),
        }
        q.push(("limit", "200".to_string()));
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        Ok(self.get("/v5/position/list", &q, true, symbol).await?.0)
    }

    /// POST /v5/position/set-leverage
    pub(crate) async fn position_set_leverage(
        &self,
        body: &SetLeverageBody<'_>,
    ) -> Result<(), ExchangeError> {
        self.post::<_, serde_json::Value>("/v5/position/set-leverage", body, Some(body.symbol))
            .await
            .map(|_| ())
    }

    /// POST /v5/order/create
    pub(crate) async fn order_create(
        &self,
        body: &CreateOrderBody<'_>,
    ) -> Result<(OrderAck, Option<i64>), ExchangeError> {
        self.post("/v5/order/create", body, Some(body.symbol)).await
    }

    /// POST /v5/order/cancel
    pub(crate) async fn order_cancel(
        &self,
        body: &CancelOrderBody<'_>,
    ) -> Result<OrderAck, ExchangeError> {
        Ok(self
            .post("/v5/order/cancel", body, Some(body.symbol))
            .await?
            .0)
    }

    /// POST /v5/order/cancel-all
    pub(crate) async fn order_cancel_all(
        &self,
        body: &CancelAllBody<'_>,
    ) -> Result<CancelAllResult, ExchangeError> {
        Ok(self
            .post("/v5/order/cancel-all", body, Some(body.symbol))
            .await?
            .0)
    }

    /// GET /v5/order/realtime (open orders of every kind, or one order by orderLinkId)
    pub(crate) async fn order_realtime(
        &self,
        symbol: &str,
        order_link_id: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<OrderListResult, ExchangeError> {
        let q = order_query(symbol, order_link_id, cursor);
        Ok(self
            .get("/v5/order/realtime", &q, true, Some(symbol))
            .await?
            .0)
    }

    /// GET /v5/order/history (one order by orderLinkId)
    pub(crate) async fn order_history(
        &self,
        symbol: &str,
        order_link_id: &str,
    ) -> Result<OrderListResult, ExchangeError> {
        let q = order_query(symbol, Some(order_link_id), None);
        Ok(self
            .get("/v5/order/history", &q, true, Some(symbol))
            .await?
            .0)
    }

    /// GET /v5/user/query-api (the key's own permissions)
    pub(crate) async fn user_query_api(&self) -> Result<ApiKeyInfo, ExchangeError> {
        Ok(self.get("/v5/user/query-api", &[], true, None).await?.0)
    }
}

fn order_query(
    symbol: &str,
    order_link_id: Option<&str>,
    cursor: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("category", CATEGORY.to_string()),
        ("symbol", symbol.to_string()),
    ];
    match order_link_id {
        Some(id) => q.push(("orderLinkId", id.to_string())),
        None => q.push(("limit", "50".to_string())),
    }
    if let Some(c) = cursor {
        q.push(("cursor", c.to_string()));
    }
    q
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::exchange::http::HttpSettings;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn client() -> BybitClient {
        let http = VenueHttp::new(
            VENUE,
            "http://127.0.0.1:9",
            IP_LIMIT,
            HttpSettings::default(),
        )
        .unwrap();
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        ));
        BybitClient::new(http, None, clock)
    }

    fn response(status: u16, headers: &[(&'static str, &str)]) -> RawResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: String::new(),
        }
    }

    #[test]
    fn usage_headers_lower_the_headroom_and_give_the_reset_wait() {
        let c = client();
        assert!(c.http.limiter().headroom() > 0.99);
        let wait = c.observe(
            &response(
                200,
                &[
                    ("x-bapi-limit", "10"),
                    ("x-bapi-limit-status", "1"),
                    ("x-bapi-limit-reset-timestamp", "1700000000800"),
                ],
            ),
            RequestKind::Write,
        );
        assert!(c.http.limiter().headroom() <= 0.11, "9 of 10 used");
        assert!(c.writes.headroom() <= 0.11, "the write limiter too");
        assert_eq!(wait, Some(Duration::from_millis(800)));
        // A reset in the past means no wait; a read leaves the write limiter alone.
        let c = client();
        let wait = c.observe(
            &response(
                200,
                &[
                    ("x-bapi-limit", "50"),
                    ("x-bapi-limit-status", "0"),
                    ("x-bapi-limit-reset-timestamp", "1699999999000"),
                ],
            ),
            RequestKind::Read,
        );
        assert!(c.writes.headroom() > 0.99);
        assert!(c.http.limiter().headroom() < 0.01);
        assert_eq!(wait, None);
    }

    #[test]
    fn http_403_bans_the_client() {
        let c = client();
        assert!(c.check_ban().is_ok());
        c.observe(&response(403, &[]), RequestKind::Read);
        let err = c.check_ban().unwrap_err();
        assert_eq!(err.kind(), "rate_limited");
        assert!(err.retry_after().unwrap() > Duration::from_secs(590));
        assert!(c.http.limiter().headroom() < 0.01);
    }

    #[test]
    fn query_strings_are_encoded_in_order() {
        let q = query_string(&[
            ("category", "linear".into()),
            ("symbol", "BTC USDT".into()),
            ("cursor", "a=b&c".into()),
        ]);
        assert_eq!(q, "category=linear&symbol=BTC+USDT&cursor=a%3Db%26c");
        let q = query_string(&[
            ("category", "linear".into()),
            ("cursor", "page_args%3D42%26".into()),
        ]);
        assert_eq!(
            q, "category=linear&cursor=page_args%3D42%26",
            "sent back as it came"
        );
        assert_eq!(query_string(&[]), "");
    }
}
