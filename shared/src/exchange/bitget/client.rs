//! Raw Bitget V2 mix HTTP client: one method per endpoint, signing, the demo header, the envelope,
//! retries (reads only, writes never blindly) and clock resync on timestamp rejections.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::Clock;
use crate::exchange::http::{
    ClockOffset, HttpSettings, RateLimit, RawResponse, RequestKind, VenueHttp, truncate,
};
use crate::exchange::{Credentials, ExchangeError, ExchangeResult};

use super::VENUE;
use super::errors::{ErrorContext, map_code};
use super::signing::{prehash, sign};
use super::wire::{self, Envelope};

/// Production REST host; demo trading uses the same host plus `paptrading: 1` and a demo key.
pub(super) const PRODUCTION_URL: &str = "https://api.bitget.com";
/// The only product type this adapter trades.
pub(super) const PRODUCT_TYPE: &str = "USDT-FUTURES";

/// One client-side budget for the whole instance: 20 units per second. Bitget limits each
/// endpoint separately (20/s per IP for market data, 10/s per UID for orders and accounts, 5/s
/// for all-position), so each call spends `20 / documented-requests-per-second` units: sharing one
/// bucket is stricter than the venue, never looser.
pub(super) const RATE_LIMIT: RateLimit = RateLimit {
    capacity: 20,
    per: Duration::from_secs(1),
};
/// 20 requests / s: market data and server time.
const W_20: u32 = 1;
/// 10 requests / s: orders, cancels, order queries, accounts, leverage.
const W_10: u32 = 2;
/// 5 requests / s: positions.
const W_5: u32 = 4;

/// Page size of the pending-order lists (the venue maximum).
pub(super) const PAGE_LIMIT: usize = 100;

/// API key, secret and passphrase; all three are needed for private endpoints.
struct Keys {
    api_key: SecretString,
    secret: SecretString,
    passphrase: SecretString,
}

/// The HTTP side of one Bitget instance.
pub(super) struct BitgetClient {
    http: VenueHttp,
    keys: Option<Keys>,
    demo: bool,
    /// Our time (`VenueParams::clock`), corrected by `clock` (the venue's measured offset).
    wall: Arc<dyn Clock>,
    clock: ClockOffset,
}

impl std::fmt::Debug for BitgetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitgetClient")
            .field("base_url", &self.http.base_url().as_str())
            .field("demo", &self.demo)
            .field("credentials", &self.keys.as_ref().map(|_| "[REDACTED]"))
            .field("clock_offset_ms", &self.clock.offset_ms())
            .finish()
    }
}

/// One request as the retry loop sees it.
struct Req<'a> {
    method: Method,
    path: &'static str,
    /// Encoded query without `?`, empty for none.
    query: String,
    body: Option<String>,
    signed: bool,
    kind: RequestKind,
    weight: u32,
    symbol: Option<&'a str>,
}

impl<'a> Req<'a> {
    fn get(path: &'static str, query: &[(&str, &str)], signed: bool, weight: u32) -> Self {
        Self {
            method: Method::GET,
            path,
            query: encode_query(query),
            body: None,
            signed,
            kind: RequestKind::Read,
            weight,
            symbol: None,
        }
    }

    fn post<B: Serialize + ?Sized>(
        path: &'static str,
        body: &B,
        weight: u32,
    ) -> ExchangeResult<Self> {
        let body = serde_json::to_string(body).map_err(|e| ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!("cannot encode the body of {path}: {e}"),
        })?;
        Ok(Self {
            method: Method::POST,
            path,
            query: String::new(),
            body: Some(body),
            signed: true,
            kind: RequestKind::Write,
            weight,
            symbol: None,
        })
    }

    fn symbol(mut self, symbol: &'a str) -> Self {
        self.symbol = Some(symbol);
        self
    }

    fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.to_string()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    fn context(&self) -> ErrorContext<'_> {
        ErrorContext {
            endpoint: self.path,
            symbol: self.symbol,
            kind: self.kind,
        }
    }
}

/// `a=1&b=2`, keys sorted, form-encoded. The same bytes go into the URL and the signature.
pub(super) fn encode_query(pairs: &[(&str, &str)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(sorted)
        .finish()
}

/// A header value from a secret, marked sensitive so it never shows in debug output.
fn secret_header(name: &str, value: &str) -> ExchangeResult<HeaderValue> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ExchangeError::Config {
        venue: VENUE,
        message: format!("the {name} holds characters that cannot be sent in an HTTP header"),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Decode one Bitget answer: the envelope, its `code`, then `data` as `T` (`null` data only
/// decodes into types that accept it, such as `Option`). Pure, so it can be fuzzed without a
/// server.
pub(super) fn decode<T: DeserializeOwned>(
    raw: &RawResponse,
    ctx: ErrorContext<'_>,
) -> ExchangeResult<T> {
    let envelope: Envelope = match serde_json::from_str(&raw.body) {
        Ok(e) => e,
        Err(e) => {
            return Err(raw.status_error(VENUE, ctx.kind).unwrap_or_else(|| {
                unreadable(
                    ctx,
                    format!("not a Bitget envelope ({e}): {}", truncate(&raw.body, 200)),
                )
            }));
        }
    };
    if envelope.code != "00000" {
        let err = map_code(&envelope.code, envelope.msg.as_deref().unwrap_or(""), ctx);
        return Err(match err {
            ExchangeError::RateLimited {
                venue,
                retry_after: None,
                message,
            } => ExchangeError::RateLimited {
                venue,
                retry_after: raw.retry_after(),
                message,
            },
            // A generic code on a 5xx: the status says more than the code.
            ExchangeError::Venue { .. } if raw.status.is_server_error() => {
                raw.status_error(VENUE, ctx.kind).unwrap_or(err)
            }
            other => other,
        });
    }
    if !raw.status.is_success()
        && let Some(e) = raw.status_error(VENUE, ctx.kind)
    {
        // A success code with a failure status: trust the status.
        return Err(e);
    }
    serde_json::from_value::<T>(envelope.data)
        .map_err(|e| unreadable(ctx, format!("unexpected data: {e}")))
}

/// An answer we cannot read: `Malformed` for a read; for a write the venue may have acted, so
/// the caller must reconcile (`OutcomeUnknown`).
fn unreadable(ctx: ErrorContext<'_>, message: String) -> ExchangeError {
    match ctx.kind {
        RequestKind::Read => ExchangeError::malformed(VENUE, ctx.endpoint, message),
        RequestKind::Write => ExchangeError::OutcomeUnknown {
            venue: VENUE,
            message: format!("{}: unreadable answer: {message}", ctx.endpoint),
        },
    }
}

impl BitgetClient {
    /// `base_url` is the production host unless overridden; `demo` adds `paptrading: 1`; `wall`
    /// is our time source.
    pub(super) fn new(
        base_url: &str,
        credentials: Option<&Credentials>,
        demo: bool,
        settings: HttpSettings,
        wall: Arc<dyn Clock>,
    ) -> ExchangeResult<Self> {
        let keys = match credentials {
            None => None,
            Some(c) => {
                let passphrase = c.passphrase.clone().ok_or_else(|| ExchangeError::Config {
                    venue: VENUE,
                    message: "Bitget credentials need a passphrase (the one chosen when the API \
                              key was created); api key and secret were given, the passphrase \
                              is missing"
                        .into(),
                })?;
                c.check_complete(VENUE, "Bitget", Some(&passphrase))?;
                Some(Keys {
                    api_key: c.api_key.clone(),
                    secret: c.api_secret.clone(),
                    passphrase,
                })
            }
        };
        Ok(Self {
            http: VenueHttp::new(VENUE, base_url, RATE_LIMIT, settings)?,
            keys,
            demo,
            wall,
            clock: ClockOffset::default(),
        })
    }

    pub(super) fn has_credentials(&self) -> bool {
        self.keys.is_some()
    }

    /// Our clock corrected by the venue's offset (for telling forming candles).
    pub(super) fn now_ms(&self) -> i64 {
        self.wall.now().timestamp_millis() + self.clock.offset_ms()
    }

    fn keys(&self, path: &str) -> ExchangeResult<&Keys> {
        self.keys.as_ref().ok_or_else(|| ExchangeError::Config {
            venue: VENUE,
            message: format!(
                "{path} is private: Bitget credentials (api key, api secret and passphrase) are \
                 missing"
            ),
        })
    }

    /// Run `req` with the retry policy of its kind; timestamp rejections resync the clock first.
    async fn call<T: DeserializeOwned>(&self, req: &Req<'_>) -> ExchangeResult<T> {
        self.http
            .with_retries(req.kind, || self.attempt::<T>(req), || self.resync())
            .await
    }

    /// One signed (or public) attempt of `req`.
    async fn attempt<T: DeserializeOwned>(&self, req: &Req<'_>) -> ExchangeResult<T> {
        let path_and_query = req.path_and_query();
        let mut builder = self
            .http
            .request(req.method.clone(), &path_and_query)
            .header(CONTENT_TYPE, "application/json")
            .header("locale", "en-US");
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        if self.demo {
            builder = builder.header("paptrading", "1");
        }
        if req.signed {
            let keys = self.keys(req.path)?;
            let timestamp = self.now_ms().to_string();
            let signature = sign(
                keys.secret.expose_secret(),
                &prehash(
                    &timestamp,
                    req.method.as_str(),
                    &path_and_query,
                    req.body.as_deref().unwrap_or_default(),
                ),
            );
            builder = builder
                .header(
                    "ACCESS-KEY",
                    secret_header("api key", keys.api_key.expose_secret())?,
                )
                .header("ACCESS-SIGN", secret_header("signature", &signature)?)
                .header("ACCESS-TIMESTAMP", timestamp)
                .header(
                    "ACCESS-PASSPHRASE",
                    secret_header("passphrase", keys.passphrase.expose_secret())?,
                );
        }
        let raw = self.http.send(builder, req.kind, req.weight).await?;
        let result = decode::<T>(&raw, req.context());
        if let Err(ExchangeError::RateLimited { .. }) = &result {
            // A rate-limit code may come with HTTP 200: make the next calls wait for a refill.
            self.http.limiter().drain();
        }
        result
    }

    /// Measure the venue clock again after a timestamp rejection (one attempt, never recursive).
    async fn resync(&self) {
        let req = Req::get("/api/v2/public/time", &[], false, W_20);
        let sent = self.wall.now();
        let result = match self.attempt::<wire::ServerTime>(&req).await {
            Ok(t) => self.record_time(&t, sent, self.wall.now()).map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(venue = VENUE, error = %e, "clock resync failed");
        }
    }

    fn record_time(
        &self,
        t: &wire::ServerTime,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
    ) -> ExchangeResult<DateTime<Utc>> {
        let server = DateTime::<Utc>::from_timestamp_millis(t.server_time).ok_or_else(|| {
            ExchangeError::malformed(
                VENUE,
                "/api/v2/public/time",
                format!("bad serverTime {}", t.server_time),
            )
        })?;
        self.clock.record(server, sent, received);
        Ok(server)
    }

    // ------------------------------------------------------------ public data

    /// GET /api/v2/public/time (also updates the clock offset).
    pub(super) async fn get_public_time(&self) -> ExchangeResult<DateTime<Utc>> {
        let req = Req::get("/api/v2/public/time", &[], false, W_20);
        let sent = self.wall.now();
        let t = self.call::<wire::ServerTime>(&req).await?;
        self.record_time(&t, sent, self.wall.now())
    }

    /// GET /api/v2/mix/market/candles (recent) or /history-candles (older), rows oldest first.
    pub(super) async fn get_candles(
        &self,
        history: bool,
        symbol: &str,
        granularity: &str,
        start: Option<i64>,
        end: Option<i64>,
        limit: usize,
    ) -> ExchangeResult<Vec<wire::CandleRow>> {
        let path = if history {
            "/api/v2/mix/market/history-candles"
        } else {
            "/api/v2/mix/market/candles"
        };
        let start = start.map(|v| v.to_string());
        let end = end.map(|v| v.to_string());
        let limit = limit.to_string();
        let mut q: Vec<(&str, &str)> = vec![
            ("symbol", symbol),
            ("productType", PRODUCT_TYPE),
            ("granularity", granularity),
            ("limit", &limit),
        ];
        if let Some(s) = &start {
            q.push(("startTime", s));
        }
        if let Some(e) = &end {
            q.push(("endTime", e));
        }
        let rows: Option<Vec<wire::CandleRow>> = self
            .call(&Req::get(path, &q, false, W_20).symbol(symbol))
            .await?;
        Ok(rows.unwrap_or_default())
    }

    /// GET /api/v2/mix/market/ticker?productType=&symbol=
    pub(super) async fn get_market_ticker(
        &self,
        symbol: &str,
    ) -> ExchangeResult<Vec<wire::Ticker>> {
        let q = [("symbol", symbol), ("productType", PRODUCT_TYPE)];
        let rows: Option<Vec<wire::Ticker>> = self
            .call(&Req::get("/api/v2/mix/market/ticker", &q, false, W_20).symbol(symbol))
            .await?;
        Ok(rows.unwrap_or_default())
    }

    /// GET /api/v2/mix/market/contracts?productType=&symbol=
    pub(super) async fn get_market_contracts(
        &self,
        symbol: &str,
    ) -> ExchangeResult<Vec<wire::Contract>> {
        let q = [("symbol", symbol), ("productType", PRODUCT_TYPE)];
        let rows: Option<Vec<wire::Contract>> = self
            .call(&Req::get("/api/v2/mix/market/contracts", &q, false, W_20).symbol(symbol))
            .await?;
        Ok(rows.unwrap_or_default())
    }

    // ------------------------------------------------------------ account

    /// GET /api/v2/mix/account/accounts?productType=
    pub(super) async fn get_account_accounts(&self) -> ExchangeResult<Vec<wire::Account>> {
        let q = [("productType", PRODUCT_TYPE)];
        let rows: Option<Vec<wire::Account>> = self
            .call(&Req::get("/api/v2/mix/account/accounts", &q, true, W_10))
            .await?;
        Ok(rows.unwrap_or_default())
    }

    /// GET /api/v2/mix/account/account?marginCoin=&productType=&symbol=
    pub(super) async fn get_account_account(
        &self,
        symbol: &str,
        margin_coin: &str,
    ) -> ExchangeResult<wire::SingleAccount> {
        let q = [
            ("symbol", symbol),
            ("productType", PRODUCT_TYPE),
            ("marginCoin", margin_coin),
        ];
        let req = Req::get("/api/v2/mix/account/account", &q, true, W_10).symbol(symbol);
        let account: Option<wire::SingleAccount> = self.call(&req).await?;
        account.ok_or_else(|| {
            ExchangeError::malformed(VENUE, "/api/v2/mix/account/account", "empty data")
        })
    }

    /// GET /api/v2/mix/position/all-position?marginCoin=&productType=
    pub(super) async fn get_all_position(
        &self,
        margin_coin: &str,
    ) -> ExchangeResult<Vec<wire::Position>> {
        let q = [("productType", PRODUCT_TYPE), ("marginCoin", margin_coin)];
        let rows: Option<Vec<wire::Position>> = self
            .call(&Req::get(
                "/api/v2/mix/position/all-position",
                &q,
                true,
                W_5,
            ))
            .await?;
        Ok(rows.unwrap_or_default())
    }

    /// GET /api/v2/mix/position/single-position?marginCoin=&productType=&symbol=
    pub(super) async fn get_single_position(
        &self,
        symbol: &str,
        margin_coin: &str,
    ) -> ExchangeResult<Vec<wire::Position>> {
        let q = [
            ("symbol", symbol),
            ("productType", PRODUCT_TYPE),
            ("marginCoin", margin_coin),
        ];
        let req = Req::get("/api/v2/mix/position/single-position", &q, true, W_10).symbol(symbol);
        let rows: Option<Vec<wire::Position>> = self.call(&req).await?;
        Ok(rows.unwrap_or_default())
    }

    /// POST /api/v2/mix/account/set-leverage
    pub(super) async fn post_set_leverage(
        &self,
        body: &wire::SetLeverageBody<'_>,
    ) -> ExchangeResult<Option<wire::LeverageAck>> {
        // Setting a leverage is idempotent, so the write may be retried like a read.
        let mut req =
            Req::post("/api/v2/mix/account/set-leverage", body, W_10)?.symbol(body.symbol);
        req.kind = RequestKind::Read;
        self.call(&req).await
    }

    // ------------------------------------------------------------ trade

    /// POST /api/v2/mix/order/place-order
    pub(super) async fn post_place_order(
        &self,
        body: &wire::PlaceOrderBody<'_>,
    ) -> ExchangeResult<Option<wire::OrderAck>> {
        self.call(&Req::post("/api/v2/mix/order/place-order", body, W_10)?.symbol(body.symbol))
            .await
    }

    /// POST /api/v2/mix/order/place-plan-order
    pub(super) async fn post_place_plan_order(
        &self,
        body: &wire::PlacePlanBody<'_>,
    ) -> ExchangeResult<Option<wire::OrderAck>> {
        let req = Req::post("/api/v2/mix/order/place-plan-order", body, W_10)?.symbol(body.symbol);
        self.call(&req).await
    }

    /// POST /api/v2/mix/order/place-tpsl-order
    pub(super) async fn post_place_tpsl_order(
        &self,
        body: &wire::PlaceTpslBody<'_>,
    ) -> ExchangeResult<Option<wire::OrderAck>> {
        let req = Req::post("/api/v2/mix/order/place-tpsl-order", body, W_10)?.symbol(body.symbol);
        self.call(&req).await
    }

    /// POST /api/v2/mix/order/cancel-order (by clientOid)
    pub(super) async fn post_cancel_order(
        &self,
        body: &wire::CancelOrderBody<'_>,
    ) -> ExchangeResult<Option<wire::OrderAck>> {
        let req = Req::post("/api/v2/mix/order/cancel-order", body, W_10)?.symbol(body.symbol);
        self.call(&req).await
    }

    /// POST /api/v2/mix/order/batch-cancel-orders (at most 50 ids); per-item results.
    pub(super) async fn post_batch_cancel_orders(
        &self,
        body: &wire::BatchCancelBody<'_>,
    ) -> ExchangeResult<wire::BatchResult> {
        let req =
            Req::post("/api/v2/mix/order/batch-cancel-orders", body, W_10)?.symbol(body.symbol);
        self.call(&req).await
    }

    /// POST /api/v2/mix/order/cancel-plan-order (listed ids of one plan type); per-item results.
    pub(super) async fn post_cancel_plan_order(
        &self,
        body: &wire::CancelPlanBody<'_>,
    ) -> ExchangeResult<wire::BatchResult> {
        let req = Req::post("/api/v2/mix/order/cancel-plan-order", body, W_10)?.symbol(body.symbol);
        self.call(&req).await
    }

    /// GET /api/v2/mix/order/orders-pending?limit=100&productType=&symbol=[&idLessThan=]
    pub(super) async fn get_orders_pending<T: DeserializeOwned>(
        &self,
        symbol: &str,
        id_less_than: Option<&str>,
    ) -> ExchangeResult<wire::Page<T>> {
        let limit = PAGE_LIMIT.to_string();
        let mut q = vec![
            ("symbol", symbol),
            ("productType", PRODUCT_TYPE),
            ("limit", limit.as_str()),
        ];
        if let Some(id) = id_less_than {
            q.push(("idLessThan", id));
        }
        let req = Req::get("/api/v2/mix/order/orders-pending", &q, true, W_10).symbol(symbol);
        let page: Option<wire::Page<T>> = self.call(&req).await?;
        Ok(page.unwrap_or(wire::Page {
            entrusted_list: Vec::new(),
            end_id: None,
        }))
    }

    /// GET /api/v2/mix/order/orders-plan-pending?planType=&productType=&symbol=[&clientOid=]
    /// [&idLessThan=]&limit=100
    pub(super) async fn get_orders_plan_pending<T: DeserializeOwned>(
        &self,
        symbol: &str,
        plan_type: &str,
        client_oid: Option<&str>,
        id_less_than: Option<&str>,
    ) -> ExchangeResult<wire::Page<T>> {
        let limit = PAGE_LIMIT.to_string();
        let mut q = vec![
            ("symbol", symbol),
            ("productType", PRODUCT_TYPE),
            ("planType", plan_type),
            ("limit", limit.as_str()),
        ];
        if let Some(c) = client_oid {
            q.push(("clientOid", c));
        }
        if let Some(id) = id_less_than {
            q.push(("idLessThan", id));
        }
        let req = Req::get("/api/v2/mix/order/orders-plan-pending", &q, true, W_10).symbol(symbol);
        let page: Option<wire::Page<T>> = self.call(&req).await?;
        Ok(page.unwrap_or(wire::Page {
            entrusted_list: Vec::new(),
            end_id: None,
        }))
    }

    /// GET /api/v2/mix/order/orders-plan-history?clientOid=&limit=100&planType=&productType=&symbol=
    /// (triggered, failed and cancelled plan orders of one client id).
    pub(super) async fn get_orders_plan_history<T: DeserializeOwned>(
        &self,
        symbol: &str,
        plan_type: &str,
        client_oid: &str,
    ) -> ExchangeResult<Vec<T>> {
        let limit = PAGE_LIMIT.to_string();
        let q = [
            ("symbol", symbol),
            ("productType", PRODUCT_TYPE),
            ("planType", plan_type),
            ("clientOid", client_oid),
            ("limit", limit.as_str()),
        ];
        let req = Req::get("/api/v2/mix/order/orders-plan-history", &q, true, W_10).symbol(symbol);
        let page: Option<wire::Page<T>> = self.call(&req).await?;
        Ok(page.map(|p| p.entrusted_list).unwrap_or_default())
    }

    /// GET /api/v2/mix/order/detail?clientOid=&productType=&symbol=
    pub(super) async fn get_order_detail(
        &self,
        symbol: &str,
        client_oid: &str,
    ) -> ExchangeResult<Option<wire::Order>> {
        let q = [
            ("symbol", symbol),
            ("productType", PRODUCT_TYPE),
            ("clientOid", client_oid),
        ];
        let req = Req::get("/api/v2/mix/order/detail", &q, true, W_10).symbol(symbol);
        self.call(&req).await
    }
}
