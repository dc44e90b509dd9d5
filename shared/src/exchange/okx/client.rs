//! Raw OKX V5 HTTP client: one method per endpoint, signing, the demo header, the envelope and
//! per-order `sCode` checks, retries (reads only, writes never blindly) and clock resync.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exchange::http::{
    ClockOffset, HttpSettings, RateLimit, RawResponse, RequestKind, VenueHttp, truncate,
};
use crate::exchange::{Credentials, ExchangeError, ExchangeResult};

use super::VENUE;
use super::errors::{ErrorContext, map_code};
use super::signing::{iso_timestamp, prehash, sign};
use super::wire::{self, Envelope, ItemStatus};

/// Production REST host; demo trading uses the same host plus `x-simulated-trading: 1`.
pub(super) const PRODUCTION_URL: &str = "https://www.okx.com";

/// One client-side budget for the whole instance: 60 units per 2 s. OKX sets limits per endpoint
/// (no usage headers are sent), so each call spends `60 / documented-requests-per-2s` units:
/// sharing one bucket is stricter than the venue, never looser.
pub(super) const RATE_LIMIT: RateLimit = RateLimit {
    capacity: 60,
    per: Duration::from_secs(2),
};
/// 60 requests / 2 s: place/cancel order, batch cancel, pending orders, order details.
const W_TRADE: u32 = 1;
/// 40 requests / 2 s: market candles.
const W_CANDLES: u32 = 2;
/// 20 requests / 2 s: ticker, instruments, history candles, set-leverage, algo endpoints.
const W_20: u32 = 3;
/// 10 requests / 2 s: balance, positions, server time.
const W_10: u32 = 6;
/// 5 requests / 2 s: account configuration.
const W_5: u32 = 12;

/// Page size of the pending-order lists (the venue maximum).
pub(super) const PAGE_LIMIT: usize = 100;

/// API key, secret and passphrase; all three are needed for private endpoints.
struct Keys {
    api_key: SecretString,
    secret: SecretString,
    passphrase: SecretString,
}

/// The HTTP side of one OKX instance.
pub(super) struct OkxClient {
    http: VenueHttp,
    keys: Option<Keys>,
    simulated: bool,
    clock: ClockOffset,
}

impl std::fmt::Debug for OkxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OkxClient")
            .field("base_url", &self.http.base_url().as_str())
            .field("simulated", &self.simulated)
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
    inst_id: Option<&'a str>,
    /// Batch endpoint: per-item failures come back as items, not as an error.
    batch: bool,
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
            inst_id: None,
            batch: false,
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
            inst_id: None,
            batch: false,
        })
    }

    fn inst(mut self, inst_id: &'a str) -> Self {
        self.inst_id = Some(inst_id);
        self
    }

    fn batch(mut self) -> Self {
        self.batch = true;
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
            inst_id: self.inst_id,
            kind: self.kind,
        }
    }
}

/// `a=1&b=2`, form-encoded; the signature covers exactly this text.
fn encode_query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
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

/// Decode one OKX answer: the envelope, the top-level `code`, per-item `sCode`s (single-item
/// trade endpoints), then `data` as `Vec<T>`. Pure, so it can be fuzzed without a server.
pub(super) fn decode<T: DeserializeOwned>(
    raw: &RawResponse,
    ctx: ErrorContext<'_>,
    batch: bool,
) -> ExchangeResult<Vec<T>> {
    let envelope: Envelope = match serde_json::from_str(&raw.body) {
        Ok(e) => e,
        Err(e) => {
            return Err(raw.status_error(VENUE, ctx.kind).unwrap_or_else(|| {
                unreadable(
                    ctx,
                    format!("not an OKX envelope ({e}): {}", truncate(&raw.body, 200)),
                )
            }));
        }
    };
    let items_allowed = batch && matches!(envelope.code.as_str(), "0" | "1" | "2");
    if envelope.code != "0" && !items_allowed {
        if let Some((code, msg)) = first_item_error(&envelope.data) {
            return Err(map_code(&code, &msg, ctx));
        }
        return Err(map_code(&envelope.code, &envelope.msg, ctx));
    }
    if !raw.status.is_success() && !items_allowed {
        // A success code with a failure status: trust the status.
        if let Some(e) = raw.status_error(VENUE, ctx.kind) {
            return Err(e);
        }
    }
    if !batch && let Some((code, msg)) = first_item_error(&envelope.data) {
        return Err(map_code(&code, &msg, ctx));
    }
    match envelope.data {
        serde_json::Value::Null => Ok(Vec::new()),
        data => serde_json::from_value::<Vec<T>>(data)
            .map_err(|e| unreadable(ctx, format!("unexpected data: {e}"))),
    }
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

/// The first item of `data` with a non-zero `sCode`, if `data` is a list of such items.
fn first_item_error(data: &serde_json::Value) -> Option<(String, String)> {
    let items = data.as_array()?;
    items.iter().find_map(|item| {
        let status: ItemStatus = serde_json::from_value(item.clone()).ok()?;
        match status.s_code {
            Some(code) if code != "0" => Some((code, status.s_msg.unwrap_or_default())),
            _ => None,
        }
    })
}

/// One result of a batch cancel: the id and its own `sCode`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchItem {
    #[serde(default, deserialize_with = "wire::opt_text")]
    pub ord_id: Option<String>,
    #[serde(default, deserialize_with = "wire::opt_text")]
    pub algo_id: Option<String>,
    #[serde(rename = "sCode", default, deserialize_with = "wire::opt_text")]
    pub s_code: Option<String>,
    #[serde(rename = "sMsg", default)]
    pub s_msg: Option<String>,
}

impl BatchItem {
    /// `None` when this item succeeded; otherwise the mapped error.
    pub(super) fn error(&self, endpoint: &str, inst_id: &str) -> Option<ExchangeError> {
        match self.s_code.as_deref() {
            None | Some("0") => None,
            Some(code) => Some(map_code(
                code,
                self.s_msg.as_deref().unwrap_or_default(),
                ErrorContext {
                    endpoint,
                    inst_id: Some(inst_id),
                    kind: RequestKind::Write,
                },
            )),
        }
    }
}

impl OkxClient {
    /// `base_url` is the production host unless overridden; `simulated` adds the demo header.
    pub(super) fn new(
        base_url: &str,
        credentials: Option<&Credentials>,
        simulated: bool,
        settings: HttpSettings,
    ) -> ExchangeResult<Self> {
        let keys = match credentials {
            None => None,
            Some(c) => {
                let passphrase = c.passphrase.clone().ok_or_else(|| ExchangeError::Config {
                    venue: VENUE,
                    message: "OKX credentials need a passphrase (the one chosen when the API key \
                              was created); api key and secret were given, the passphrase is missing"
                        .into(),
                })?;
                c.check_complete(VENUE, "OKX", Some(&passphrase))?;
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
            simulated,
            clock: ClockOffset::default(),
        })
    }

    pub(super) fn has_credentials(&self) -> bool {
        self.keys.is_some()
    }

    fn keys(&self, path: &str) -> ExchangeResult<&Keys> {
        self.keys.as_ref().ok_or_else(|| ExchangeError::Config {
            venue: VENUE,
            message: format!(
                "{path} is private: OKX credentials (api key, api secret and passphrase) are missing"
            ),
        })
    }

    /// Run `req` with the retry policy of its kind; timestamp rejections resync the clock first.
    async fn call<T: DeserializeOwned>(&self, req: &Req<'_>) -> ExchangeResult<Vec<T>> {
        self.http
            .with_retries(req.kind, || self.attempt::<T>(req), || self.resync())
            .await
    }

    /// One signed (or public) attempt of `req`.
    async fn attempt<T: DeserializeOwned>(&self, req: &Req<'_>) -> ExchangeResult<Vec<T>> {
        let path_and_query = req.path_and_query();
        let mut builder = self.http.request(req.method.clone(), &path_and_query);
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        if self.simulated {
            builder = builder.header("x-simulated-trading", "1");
        }
        if req.signed {
            let keys = self.keys(req.path)?;
            let timestamp = iso_timestamp(self.clock.now_ms());
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
                    "OK-ACCESS-KEY",
                    secret_header("api key", keys.api_key.expose_secret())?,
                )
                .header("OK-ACCESS-SIGN", secret_header("signature", &signature)?)
                .header("OK-ACCESS-TIMESTAMP", timestamp)
                .header(
                    "OK-ACCESS-PASSPHRASE",
                    secret_header("passphrase", keys.passphrase.expose_secret())?,
                );
        }
        let raw = self.http.send(builder, req.kind, req.weight).await?;
        let result = decode::<T>(&raw, req.context(), req.batch);
        if let Err(ExchangeError::RateLimited { .. }) = &result {
            // 50011 may come with HTTP 200: make the next calls wait for a refill.
            self.http.limiter().drain();
        }
        result
    }

    /// Measure the venue clock again after a timestamp rejection (one attempt, never recursive).
    async fn resync(&self) {
        if let Err(e) = self.sync_clock().await {
            tracing::warn!(venue = VENUE, error = %e, "clock resync failed");
        }
    }

    async fn sync_clock(&self) -> ExchangeResult<DateTime<Utc>> {
        let req = Req::get("/api/v5/public/time", &[], false, W_10);
        let sent = Utc::now();
        let rows = self.attempt::<wire::ServerTime>(&req).await?;
        let received = Utc::now();
        self.record_time(&rows, sent, received)
    }

    fn record_time(
        &self,
        rows: &[wire::ServerTime],
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
    ) -> ExchangeResult<DateTime<Utc>> {
        let ts = rows
            .first()
            .map(|r| r.ts)
            .ok_or_else(|| ExchangeError::malformed(VENUE, "/api/v5/public/time", "empty data"))?;
        let server = DateTime::<Utc>::from_timestamp_millis(ts).ok_or_else(|| {
            ExchangeError::malformed(VENUE, "/api/v5/public/time", format!("bad ts {ts}"))
        })?;
        self.clock.record(server, sent, received);
        Ok(server)
    }

    // ------------------------------------------------------------ public data

    /// GET /api/v5/public/time (also updates the clock offset).
    pub(super) async fn get_public_time(&self) -> ExchangeResult<DateTime<Utc>> {
        let req = Req::get("/api/v5/public/time", &[], false, W_10);
        let sent = Utc::now();
        let rows = self.call::<wire::ServerTime>(&req).await?;
        self.record_time(&rows, sent, Utc::now())
    }

    /// GET /api/v5/market/candles (latest 1,440 bars) or /market/history-candles (older).
    pub(super) async fn get_candles(
        &self,
        history: bool,
        inst_id: &str,
        bar: &str,
        after: Option<i64>,
        before: Option<i64>,
        limit: usize,
    ) -> ExchangeResult<Vec<wire::CandleRow>> {
        let (path, weight) = if history {
            ("/api/v5/market/history-candles", W_20)
        } else {
            ("/api/v5/market/candles", W_CANDLES)
        };
        let after = after.map(|v| v.to_string());
        let before = before.map(|v| v.to_string());
        let limit = limit.to_string();
        let mut q: Vec<(&str, &str)> = vec![("instId", inst_id), ("bar", bar)];
        if let Some(a) = &after {
            q.push(("after", a));
        }
        if let Some(b) = &before {
            q.push(("before", b));
        }
        q.push(("limit", &limit));
        self.call(&Req::get(path, &q, false, weight).inst(inst_id))
            .await
    }

    /// GET /api/v5/market/ticker
    pub(super) async fn get_market_ticker(
        &self,
        inst_id: &str,
    ) -> ExchangeResult<Vec<wire::Ticker>> {
        let req =
            Req::get("/api/v5/market/ticker", &[("instId", inst_id)], false, W_20).inst(inst_id);
        self.call(&req).await
    }

    /// GET /api/v5/public/instruments?instType=SWAP&instId=
    pub(super) async fn get_public_instruments(
        &self,
        inst_id: &str,
    ) -> ExchangeResult<Vec<wire::Instrument>> {
        let req = Req::get(
            "/api/v5/public/instruments",
            &[("instType", "SWAP"), ("instId", inst_id)],
            false,
            W_20,
        )
        .inst(inst_id);
        self.call(&req).await
    }

    // ------------------------------------------------------------ account

    /// GET /api/v5/account/balance?ccy=
    pub(super) async fn get_account_balance(
        &self,
        ccy: &str,
    ) -> ExchangeResult<Vec<wire::Balance>> {
        self.call(&Req::get(
            "/api/v5/account/balance",
            &[("ccy", ccy)],
            true,
            W_10,
        ))
        .await
    }

    /// GET /api/v5/account/positions?instType=SWAP[&instId=]
    pub(super) async fn get_account_positions(
        &self,
        inst_id: Option<&str>,
    ) -> ExchangeResult<Vec<wire::Position>> {
        let mut q = vec![("instType", "SWAP")];
        if let Some(i) = inst_id {
            q.push(("instId", i));
        }
        self.call(&Req::get("/api/v5/account/positions", &q, true, W_10))
            .await
    }

    /// GET /api/v5/account/config
    pub(super) async fn get_account_config(&self) -> ExchangeResult<Vec<wire::AccountConfig>> {
        self.call(&Req::get("/api/v5/account/config", &[], true, W_5))
            .await
    }

    /// POST /api/v5/account/set-leverage
    pub(super) async fn post_set_leverage(
        &self,
        body: &wire::SetLeverageBody<'_>,
    ) -> ExchangeResult<Vec<wire::SetLeverageAck>> {
        // Setting a leverage is idempotent, so the write may be retried like a read.
        let mut req = Req::post("/api/v5/account/set-leverage", body, W_20)?.inst(body.inst_id);
        req.kind = RequestKind::Read;
        self.call(&req).await
    }

    // ------------------------------------------------------------ trade

    /// POST /api/v5/trade/order
    pub(super) async fn post_trade_order(
        &self,
        body: &wire::PlaceOrderBody<'_>,
    ) -> ExchangeResult<Vec<wire::OrderAck>> {
        self.call(&Req::post("/api/v5/trade/order", body, W_TRADE)?.inst(body.inst_id))
            .await
    }

    /// POST /api/v5/trade/order-algo
    pub(super) async fn post_trade_order_algo(
        &self,
        body: &wire::PlaceAlgoBody<'_>,
    ) -> ExchangeResult<Vec<wire::AlgoAck>> {
        self.call(&Req::post("/api/v5/trade/order-algo", body, W_20)?.inst(body.inst_id))
            .await
    }

    /// POST /api/v5/trade/cancel-order
    pub(super) async fn post_trade_cancel_order(
        &self,
        body: &wire::CancelOrderBody<'_>,
    ) -> ExchangeResult<Vec<BatchItem>> {
        self.call(&Req::post("/api/v5/trade/cancel-order", body, W_TRADE)?.inst(body.inst_id))
            .await
    }

    /// POST /api/v5/trade/cancel-batch-orders (at most 20 per call); per-item results.
    pub(super) async fn post_trade_cancel_batch_orders(
        &self,
        inst_id: &str,
        items: &[wire::CancelOrderBody<'_>],
    ) -> ExchangeResult<Vec<BatchItem>> {
        let req = Req::post("/api/v5/trade/cancel-batch-orders", items, W_TRADE)?
            .inst(inst_id)
            .batch();
        self.call(&req).await
    }

    /// POST /api/v5/trade/cancel-algos (at most 10 per call); per-item results.
    pub(super) async fn post_trade_cancel_algos(
        &self,
        inst_id: &str,
        items: &[wire::CancelAlgoBody<'_>],
    ) -> ExchangeResult<Vec<BatchItem>> {
        let req = Req::post("/api/v5/trade/cancel-algos", items, W_20)?
            .inst(inst_id)
            .batch();
        self.call(&req).await
    }

    /// GET /api/v5/trade/orders-pending?instType=SWAP&instId=&limit=100[&after=ordId]
    pub(super) async fn get_trade_orders_pending<T: DeserializeOwned>(
        &self,
        inst_id: &str,
        after: Option<&str>,
    ) -> ExchangeResult<Vec<T>> {
        let limit = PAGE_LIMIT.to_string();
        let mut q = vec![
            ("instType", "SWAP"),
            ("instId", inst_id),
            ("limit", limit.as_str()),
        ];
        if let Some(a) = after {
            q.push(("after", a));
        }
        self.call(&Req::get("/api/v5/trade/orders-pending", &q, true, W_TRADE).inst(inst_id))
            .await
    }

    /// GET /api/v5/trade/orders-algo-pending?ordType=&instType=SWAP&instId=&limit=100[&after=algoId]
    pub(super) async fn get_trade_orders_algo_pending<T: DeserializeOwned>(
        &self,
        inst_id: &str,
        ord_type: &str,
        after: Option<&str>,
    ) -> ExchangeResult<Vec<T>> {
        let limit = PAGE_LIMIT.to_string();
        let mut q = vec![
            ("ordType", ord_type),
            ("instType", "SWAP"),
            ("instId", inst_id),
            ("limit", limit.as_str()),
        ];
        if let Some(a) = after {
            q.push(("after", a));
        }
        self.call(&Req::get("/api/v5/trade/orders-algo-pending", &q, true, W_20).inst(inst_id))
            .await
    }

    /// GET /api/v5/trade/order?instId=&clOrdId=
    pub(super) async fn get_trade_order(
        &self,
        inst_id: &str,
        cl_ord_id: &str,
    ) -> ExchangeResult<Vec<wire::Order>> {
        let req = Req::get(
            "/api/v5/trade/order",
            &[("instId", inst_id), ("clOrdId", cl_ord_id)],
            true,
            W_TRADE,
        )
        .inst(inst_id);
        self.call(&req).await
    }

    /// GET /api/v5/trade/order-algo?algoClOrdId=
    pub(super) async fn get_trade_order_algo(
        &self,
        inst_id: &str,
        algo_cl_ord_id: &str,
    ) -> ExchangeResult<Vec<wire::AlgoOrder>> {
        let req = Req::get(
            "/api/v5/trade/order-algo",
            &[("algoClOrdId", algo_cl_ord_id)],
            true,
            W_20,
        )
        .inst(inst_id);
        self.call(&req).await
    }
}
