//! Raw HTX HTTP client: one method per endpoint, Signature V2 in the query string, the three
//! envelope generations (V5 `code`, v1/market `status`, gateway `err-code`), per-item results,
//! retries (reads only, writes never blindly), rate-limit headers and clock resync.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
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
use super::signing::{
    SIGNATURE_METHOD, SIGNATURE_VERSION, canonical_query, encode, payload as prehash, sign,
    timestamp,
};
use super::wire::{self, Envelope};

/// Production REST host (Cloudflare). `https://api.hbdm.vn` is the AWS-hosted alternative; pass
/// it as the base URL override, the signature follows the host automatically.
pub(super) const PRODUCTION_URL: &str = "https://api.hbdm.com";

/// Private calls: 72 requests / 3 s per UID (36 trade + 36 read, 2021 docs; V5 figures were not
/// published). One bucket for everything is stricter than the venue, never looser.
pub(super) const RATE_LIMIT: RateLimit = RateLimit {
    capacity: 72,
    per: Duration::from_secs(3),
};
/// Trade endpoints count double: they share the bucket with reads but have half the budget.
const W_TRADE: u32 = 2;
const W_READ: u32 = 1;

/// Rows per page of the open-order lists (the venue maximum).
pub(super) const PAGE_LIMIT: usize = 100;

/// Access key and secret; both are needed for private endpoints.
struct Keys {
    access_key: SecretString,
    secret: SecretString,
}

/// The HTTP side of one HTX instance.
pub(super) struct HtxClient {
    http: VenueHttp,
    keys: Option<Keys>,
    /// Our time (`VenueParams::clock`), corrected by `clock` (the venue's measured offset).
    wall: Arc<dyn Clock>,
    clock: ClockOffset,
}

impl std::fmt::Debug for HtxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtxClient")
            .field("base_url", &self.http.base_url().as_str())
            .field("credentials", &self.keys.as_ref().map(|_| "[REDACTED]"))
            .field("clock_offset_ms", &self.clock.offset_ms())
            .finish()
    }
}

/// One request as the retry loop sees it.
struct Req<'a> {
    method: Method,
    path: &'static str,
    /// Query parameters (GET); signed together with the auth parameters.
    params: Vec<(&'static str, String)>,
    body: Option<String>,
    signed: bool,
    kind: RequestKind,
    weight: u32,
    contract_code: Option<&'a str>,
}

impl<'a> Req<'a> {
    fn get(path: &'static str, params: Vec<(&'static str, String)>, signed: bool) -> Self {
        Self {
            method: Method::GET,
            path,
            params,
            body: None,
            signed,
            kind: RequestKind::Read,
            weight: W_READ,
            contract_code: None,
        }
    }

    fn post<B: Serialize + ?Sized>(path: &'static str, body: &B) -> ExchangeResult<Self> {
        let body = serde_json::to_string(body).map_err(|e| ExchangeError::InvalidOrder {
            venue: VENUE,
            message: format!("cannot encode the body of {path}: {e}"),
        })?;
        Ok(Self {
            method: Method::POST,
            path,
            params: Vec::new(),
            body: Some(body),
            signed: true,
            kind: RequestKind::Write,
            weight: W_TRADE,
            contract_code: None,
        })
    }

    fn contract(mut self, contract_code: &'a str) -> Self {
        self.contract_code = Some(contract_code);
        self
    }

    fn context(&self) -> ErrorContext<'_> {
        ErrorContext {
            endpoint: self.path,
            contract_code: self.contract_code,
            kind: self.kind,
        }
    }
}

/// An answer we cannot read: `Malformed` for a read; for a write the venue may have acted, so
/// the caller must reconcile (`OutcomeUnknown`).
pub(super) fn unreadable(ctx: ErrorContext<'_>, message: String) -> ExchangeError {
    match ctx.kind {
        RequestKind::Read => ExchangeError::malformed(VENUE, ctx.endpoint, message),
        RequestKind::Write => ExchangeError::OutcomeUnknown {
            venue: VENUE,
            message: format!("{}: unreadable answer: {message}", ctx.endpoint),
        },
    }
}

/// Check one HTX answer: JSON envelope, V5 `code` (200 = success) or v1/market `status`
/// (`ok` / `error` with `err_code` or the gateway's `err-code` / `maintain`), then the HTTP
/// status. Pure, so it can be fuzzed without a server.
pub(super) fn decode(raw: &RawResponse, ctx: ErrorContext<'_>) -> ExchangeResult<Envelope> {
    let envelope: Envelope = match serde_json::from_str(&raw.body) {
        Ok(e) => e,
        Err(e) => {
            return Err(raw.status_error(VENUE, ctx.kind).unwrap_or_else(|| {
                unreadable(
                    ctx,
                    format!("not an HTX envelope ({e}): {}", truncate(&raw.body, 200)),
                )
            }));
        }
    };
    match (&envelope.code, envelope.status.as_deref()) {
        (Some(code), _) if code == "200" => {}
        (Some(code), _) => {
            return Err(map_code(
                code,
                envelope.message.as_deref().unwrap_or_default(),
                ctx,
            ));
        }
        (None, Some("ok")) => {}
        (None, Some("error")) => {
            let code = envelope.err_code.as_deref().unwrap_or("error");
            return Err(map_code(
                code,
                envelope.err_msg.as_deref().unwrap_or_default(),
                ctx,
            ));
        }
        (None, Some("maintain")) => {
            return Err(map_code("maintain", "the venue is under maintenance", ctx));
        }
        (None, Some(other)) => {
            return Err(unreadable(ctx, format!("unknown status {other:?}")));
        }
        (None, None) => {
            return Err(raw.status_error(VENUE, ctx.kind).unwrap_or_else(|| {
                unreadable(ctx, "neither `code` nor `status` in the answer".into())
            }));
        }
    }
    if let Some(e) = raw.status_error(VENUE, ctx.kind) {
        // A success code with a failure status: trust the status.
        return Err(e);
    }
    Ok(envelope)
}

/// `value` (the envelope's `data` or `tick`) as `T`.
pub(super) fn payload<T: DeserializeOwned>(
    value: serde_json::Value,
    ctx: ErrorContext<'_>,
) -> ExchangeResult<T> {
    serde_json::from_value::<T>(value).map_err(|e| unreadable(ctx, format!("unexpected data: {e}")))
}

/// `data` that may be one object, a list, `null` or missing: always a list.
pub(super) fn list<T: DeserializeOwned>(
    value: serde_json::Value,
    ctx: ErrorContext<'_>,
) -> ExchangeResult<Vec<T>> {
    match value {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(_) => payload(value, ctx),
        single => payload::<T>(single, ctx).map(|t| vec![t]),
    }
}

/// The first failed item of a per-item answer (`code` other than 200), mapped.
pub(super) fn first_item_error(
    items: &[(Option<String>, Option<String>)],
    ctx: ErrorContext<'_>,
) -> Option<ExchangeError> {
    items.iter().find_map(|(code, msg)| match code.as_deref() {
        None | Some("200") => None,
        Some(code) => Some(map_code(code, msg.as_deref().unwrap_or_default(), ctx)),
    })
}

impl HtxClient {
    /// `wall` is our time source (`VenueParams::clock`), corrected by the measured offset.
    pub(super) fn new(
        base_url: &str,
        credentials: Option<&Credentials>,
        settings: HttpSettings,
        wall: Arc<dyn Clock>,
    ) -> ExchangeResult<Self> {
        let keys = match credentials {
            None => None,
            Some(c) => {
                c.check_complete(VENUE, "HTX", None)?;
                Some(Keys {
                    access_key: c.api_key.clone(),
                    secret: c.api_secret.clone(),
                })
            }
        };
        Ok(Self {
            http: VenueHttp::new(VENUE, base_url, RATE_LIMIT, settings)?,
            keys,
            wall,
            clock: ClockOffset::default(),
        })
    }

    pub(super) fn has_credentials(&self) -> bool {
        self.keys.is_some()
    }

    /// Our time corrected by the venue's measured offset.
    pub(super) fn now(&self) -> DateTime<Utc> {
        let wall = self.wall.now();
        DateTime::from_timestamp_millis(wall.timestamp_millis() + self.clock.offset_ms())
            .unwrap_or(wall)
    }

    fn keys(&self, path: &str) -> ExchangeResult<&Keys> {
        self.keys.as_ref().ok_or_else(|| ExchangeError::Config {
            venue: VENUE,
            message: format!(
                "{path} is private: HTX credentials (api key and api secret) are missing"
            ),
        })
    }

    /// Run `req` with the retry policy of its kind; timestamp rejections resync the clock first.
    async fn call(&self, req: &Req<'_>) -> ExchangeResult<Envelope> {
        self.http
            .with_retries(req.kind, || self.attempt(req), || self.resync())
            .await
    }

    /// `path?query` of one attempt: business parameters, plus the signed auth parameters and
    /// `Signature` for private calls. The signed host is `VenueHttp::host()`.
    fn path_and_query(&self, req: &Req<'_>) -> ExchangeResult<String> {
        let mut params: Vec<(&str, &str)> =
            req.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if !req.signed {
            let query = canonical_query(&params);
            return Ok(if query.is_empty() {
                req.path.to_string()
            } else {
                format!("{}?{query}", req.path)
            });
        }
        let keys = self.keys(req.path)?;
        let ts = timestamp(self.now().timestamp_millis());
        params.push(("AccessKeyId", keys.access_key.expose_secret()));
        params.push(("SignatureMethod", SIGNATURE_METHOD));
        params.push(("SignatureVersion", SIGNATURE_VERSION));
        params.push(("Timestamp", &ts));
        let query = canonical_query(&params);
        let signature = sign(
            keys.secret.expose_secret(),
            &prehash(req.method.as_str(), &self.http.host(), req.path, &query),
        );
        Ok(format!(
            "{}?{query}&Signature={}",
            req.path,
            encode(&signature)
        ))
    }

    /// One signed (or public) attempt of `req`.
    async fn attempt(&self, req: &Req<'_>) -> ExchangeResult<Envelope> {
        let path_and_query = self.path_and_query(req)?;
        let mut builder = self.http.request(req.method.clone(), &path_and_query);
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let raw = self.http.send(builder, req.kind, req.weight).await?;
        self.observe_headers(&raw);
        let result = decode(&raw, req.context());
        if let Err(ExchangeError::RateLimited { .. }) = &result {
            // 1032 comes with HTTP 200: make the next calls wait for a refill.
            self.http.limiter().drain();
        }
        result
    }

    /// `ratelimit-limit` / `ratelimit-remaining` make the limiter more careful, never less.
    fn observe_headers(&self, raw: &RawResponse) {
        let num = |name: &str| raw.header(name).and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(limit), Some(remaining)) = (num("ratelimit-limit"), num("ratelimit-remaining"))
        {
            self.http
                .limiter()
                .observe_usage(limit.saturating_sub(remaining), limit);
        }
    }

    /// Measure the venue clock again after a timestamp rejection (one attempt, never recursive).
    async fn resync(&self) {
        let req = Req::get("/api/v1/timestamp", Vec::new(), false);
        let sent = self.wall.now();
        let result = match self.attempt(&req).await {
            Ok(env) => self.record_time(&env, sent, self.wall.now()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(venue = VENUE, error = %e, "clock resync failed");
        }
    }

    fn record_time(
        &self,
        env: &Envelope,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
    ) -> ExchangeResult<DateTime<Utc>> {
        let endpoint = "/api/v1/timestamp";
        let ts = env
            .ts
            .ok_or_else(|| ExchangeError::malformed(VENUE, endpoint, "no ts"))?;
        let server = DateTime::<Utc>::from_timestamp_millis(ts)
            .ok_or_else(|| ExchangeError::malformed(VENUE, endpoint, format!("bad ts {ts}")))?;
        self.clock.record(server, sent, received);
        Ok(server)
    }

    // ------------------------------------------------------------ public data

    /// GET /api/v1/timestamp (also updates the clock offset).
    pub(super) async fn get_timestamp(&self) -> ExchangeResult<DateTime<Utc>> {
        let req = Req::get("/api/v1/timestamp", Vec::new(), false);
        let sent = self.wall.now();
        let env = self.call(&req).await?;
        self.record_time(&env, sent, self.wall.now())
    }

    /// GET /linear-swap-ex/market/history/kline: the latest `size` rows, or the window
    /// `[from, to]` (seconds; `size` must then be absent or the window is ignored).
    pub(super) async fn get_history_kline(
        &self,
        contract_code: &str,
        period: &str,
        window: KlineWindow,
    ) -> ExchangeResult<Vec<wire::KlineRow>> {
        let mut params = vec![
            ("contract_code", contract_code.to_string()),
            ("period", period.to_string()),
        ];
        match window {
            KlineWindow::Latest(size) => params.push(("size", size.to_string())),
            KlineWindow::Range { from, to } => {
                params.push(("from", from.to_string()));
                params.push(("to", to.to_string()));
            }
        }
        let req =
            Req::get("/linear-swap-ex/market/history/kline", params, false).contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// GET /linear-swap-ex/market/detail/merged
    pub(super) async fn get_detail_merged(
        &self,
        contract_code: &str,
    ) -> ExchangeResult<wire::MergedTick> {
        let req = Req::get(
            "/linear-swap-ex/market/detail/merged",
            vec![("contract_code", contract_code.to_string())],
            false,
        )
        .contract(contract_code);
        let env = self.call(&req).await?;
        payload(env.tick, req.context())
    }

    /// GET /linear-swap-api/v1/swap_contract_info (market data, exempt from the V5 migration).
    pub(super) async fn get_swap_contract_info(
        &self,
        contract_code: &str,
    ) -> ExchangeResult<Vec<wire::ContractInfo>> {
        let req = Req::get(
            "/linear-swap-api/v1/swap_contract_info",
            vec![("contract_code", contract_code.to_string())],
            false,
        )
        .contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// GET /v5/market/risk/limit?contract_code=&margin_mode= (public V5 market data).
    pub(super) async fn get_market_risk_limit(
        &self,
        contract_code: &str,
        margin_mode: &str,
    ) -> ExchangeResult<Vec<wire::RiskTier>> {
        let req = Req::get(
            "/v5/market/risk/limit",
            vec![
                ("contract_code", contract_code.to_string()),
                ("margin_mode", margin_mode.to_string()),
            ],
            false,
        )
        .contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    // ------------------------------------------------------------ account (V5)

    /// GET /v5/account/balance
    pub(super) async fn get_account_balance(&self) -> ExchangeResult<wire::Balance> {
        let req = Req::get("/v5/account/balance", Vec::new(), true);
        let env = self.call(&req).await?;
        payload(env.data, req.context())
    }

    /// GET /v5/trade/position/opens[?contract_code=]
    pub(super) async fn get_position_opens(
        &self,
        contract_code: Option<&str>,
    ) -> ExchangeResult<Vec<wire::Position>> {
        let params = contract_code
            .map(|c| vec![("contract_code", c.to_string())])
            .unwrap_or_default();
        let req = Req::get("/v5/trade/position/opens", params, true);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// POST /v5/position/lever. Setting a leverage is idempotent, so it is retried like a read.
    pub(super) async fn post_position_lever(
        &self,
        body: &wire::SetLeverageBody<'_>,
    ) -> ExchangeResult<wire::SetLeverageAck> {
        let mut req = Req::post("/v5/position/lever", body)?.contract(body.contract_code);
        req.kind = RequestKind::Read;
        let env = self.call(&req).await?;
        payload(env.data, req.context())
    }

    // ------------------------------------------------------------ trade (V5)

    /// POST /v5/trade/order
    pub(super) async fn post_trade_order(
        &self,
        body: &wire::PlaceOrderBody<'_>,
    ) -> ExchangeResult<wire::OrderAck> {
        let req = Req::post("/v5/trade/order", body)?.contract(body.contract_code);
        let env = self.call(&req).await?;
        payload(env.data, req.context())
    }

    /// POST /v5/algo/order; the answer is a list of acknowledgements, each with its own code.
    pub(super) async fn post_algo_order(
        &self,
        body: &wire::PlaceAlgoBody<'_>,
    ) -> ExchangeResult<Vec<wire::AlgoAck>> {
        let req = Req::post("/v5/algo/order", body)?.contract(body.contract_code);
        let env = self.call(&req).await?;
        let acks: Vec<wire::AlgoAck> = list(env.data, req.context())?;
        let codes: Vec<_> = acks
            .iter()
            .map(|a| (a.code.clone(), a.message.clone()))
            .collect();
        match first_item_error(&codes, req.context()) {
            Some(e) => Err(e),
            None => Ok(acks),
        }
    }

    /// POST /v5/trade/cancel_order by client order id.
    pub(super) async fn post_trade_cancel_order(
        &self,
        body: &wire::CancelOrderBody<'_>,
    ) -> ExchangeResult<Vec<wire::CancelItem>> {
        let req = Req::post("/v5/trade/cancel_order", body)?.contract(body.contract_code);
        let env = self.call(&req).await?;
        let items: Vec<wire::CancelItem> = list(env.data, req.context())?;
        let codes: Vec<_> = items
            .iter()
            .map(|i| (i.code.clone(), i.message.clone()))
            .collect();
        match first_item_error(&codes, req.context()) {
            Some(e) => Err(e),
            None => Ok(items),
        }
    }

    /// POST /v5/trade/cancel_all_orders; per-order results (failures are items, not errors).
    pub(super) async fn post_trade_cancel_all_orders(
        &self,
        body: &wire::CancelAllBody<'_>,
    ) -> ExchangeResult<Vec<wire::CancelItem>> {
        let req = Req::post("/v5/trade/cancel_all_orders", body)?.contract(body.contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// POST /v5/algo/cancel_orders with a JSON array of items; per-item results.
    pub(super) async fn post_algo_cancel_orders(
        &self,
        contract_code: &str,
        items: &[wire::CancelAlgoItem<'_>],
    ) -> ExchangeResult<Vec<wire::AlgoAck>> {
        let req = Req::post("/v5/algo/cancel_orders", items)?.contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// GET /v5/trade/order/opens?contract_code=&margin_mode=&limit=
    pub(super) async fn get_trade_order_opens<T: DeserializeOwned>(
        &self,
        contract_code: &str,
        margin_mode: &str,
    ) -> ExchangeResult<Vec<T>> {
        let req = Req::get(
            "/v5/trade/order/opens",
            vec![
                ("contract_code", contract_code.to_string()),
                ("margin_mode", margin_mode.to_string()),
                ("limit", PAGE_LIMIT.to_string()),
            ],
            true,
        )
        .contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// GET /v5/algo/order/opens?contract_code=&type=&limit=
    pub(super) async fn get_algo_order_opens<T: DeserializeOwned>(
        &self,
        contract_code: &str,
        algo_type: &str,
    ) -> ExchangeResult<Vec<T>> {
        let req = Req::get(
            "/v5/algo/order/opens",
            vec![
                ("contract_code", contract_code.to_string()),
                ("type", algo_type.to_string()),
                ("limit", PAGE_LIMIT.to_string()),
            ],
            true,
        )
        .contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// GET /v5/trade/order?contract_code=&margin_mode=&client_order_id= ; the client id is the
    /// mapped integer. `data` may be one order, a list, or empty/`null` when unknown.
    pub(super) async fn get_trade_order(
        &self,
        contract_code: &str,
        margin_mode: &str,
        client_order_id: &str,
    ) -> ExchangeResult<Vec<wire::Order>> {
        let req = Req::get(
            "/v5/trade/order",
            vec![
                ("contract_code", contract_code.to_string()),
                ("margin_mode", margin_mode.to_string()),
                ("client_order_id", client_order_id.to_string()),
            ],
            true,
        )
        .contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }

    /// GET /v5/algo/order?contract_code=&type=&algo_client_order_id=
    pub(super) async fn get_algo_order(
        &self,
        contract_code: &str,
        algo_type: &str,
        algo_client_order_id: &str,
    ) -> ExchangeResult<Vec<wire::AlgoOrder>> {
        let req = Req::get(
            "/v5/algo/order",
            vec![
                ("contract_code", contract_code.to_string()),
                ("type", algo_type.to_string()),
                ("algo_client_order_id", algo_client_order_id.to_string()),
            ],
            true,
        )
        .contract(contract_code);
        let env = self.call(&req).await?;
        list(env.data, req.context())
    }
}

/// Which candles `/history/kline` returns.
#[derive(Debug, Clone, Copy)]
pub(super) enum KlineWindow {
    /// The latest `n` rows (1..=2000).
    Latest(u32),
    /// Open times from `from` to `to` inclusive, in seconds.
    Range { from: i64, to: i64 },
}
