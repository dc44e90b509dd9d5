//! HTTP machinery every venue shares: one reqwest client per venue instance, a weight-based rate
//! limiter fed by documented limits and usage headers, retries with jittered exponential backoff
//! for reads (never a blind retry of a write), and a server-time offset for signed requests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{ExchangeError, Recovery};

/// Timeouts and retry policy of venue HTTP calls. Part of the `exchange` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Whole-request timeout.
    pub timeout_ms: u64,
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// Extra attempts for retryable failures of reads (and of writes that never reached the venue).
    pub max_retries: u32,
    /// First backoff; doubles each attempt, with full jitter.
    pub backoff_base_ms: u64,
    /// Upper bound of one backoff.
    pub backoff_max_ms: u64,
    /// Longest wait a `Retry-After` may impose before the error is returned instead.
    pub max_retry_after_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            connect_timeout_ms: 3_000,
            max_retries: 3,
            backoff_base_ms: 200,
            backoff_max_ms: 5_000,
            max_retry_after_ms: 10_000,
        }
    }
}

/// Whether a request changes state on the venue; writes are never retried once they may have
/// reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Write,
}

/// A documented rate limit: `capacity` weight units refilled over `per`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub capacity: u32,
    pub per: Duration,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token bucket with weights. Usage headers can only make it more careful, never less.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    refill_per_sec: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let capacity = f64::from(limit.capacity.max(1));
        Self {
            capacity,
            refill_per_sec: capacity / limit.per.as_secs_f64().max(0.001),
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // A poisoned limiter only means another thread panicked mid-update; the numbers are still usable.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refill(&self, b: &mut Bucket) {
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        b.last = now;
    }

    /// How long to wait before `weight` may be spent; reserves it when the wait is zero.
    fn try_take(&self, weight: u32) -> Duration {
        let weight = f64::from(weight).min(self.capacity);
        let mut b = self.lock();
        self.refill(&mut b);
        if b.tokens >= weight {
            b.tokens -= weight;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((weight - b.tokens) / self.refill_per_sec)
        }
    }

    /// Wait until `weight` units are available, then spend them.
    pub async fn acquire(&self, weight: u32) {
        loop {
            let wait = self.try_take(weight);
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Headroom left in the current window, 0..=1 (for the rate-limit headroom gauge).
    pub fn headroom(&self) -> f64 {
        let mut b = self.lock();
        self.refill(&mut b);
        (b.tokens / self.capacity).clamp(0.0, 1.0)
    }

    /// The venue reported `used` of `limit` in its window: never believe we have more than it says.
    pub fn observe_usage(&self, used: u64, limit: u64) {
        if limit == 0 {
            return;
        }
        let fraction_left = 1.0 - (used as f64 / limit as f64).clamp(0.0, 1.0);
        let mut b = self.lock();
        self.refill(&mut b);
        b.tokens = b.tokens.min(fraction_left * self.capacity);
    }

    /// The venue says we are limited: spend everything so the next request waits for a refill.
    pub fn drain(&self) {
        let mut b = self.lock();
        b.tokens = 0.0;
        b.last = Instant::now();
    }
}

/// Difference between the venue's clock and ours, kept up to date from `server_time` after
/// timestamp errors.
#[derive(Debug, Default)]
pub struct ClockOffset(AtomicI64);

impl ClockOffset {
    /// Our clock corrected by the last measured offset, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis() + self.0.load(Ordering::Relaxed)
    }
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_else(Utc::now)
    }
    /// Record `server - local`, using the midpoint of the request for the local time.
    pub fn record(
        &self,
        server: DateTime<Utc>,
        sent_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) {
        let local_mid = sent_at.timestamp_millis()
            + (received_at.timestamp_millis() - sent_at.timestamp_millis()) / 2;
        self.0
            .store(server.timestamp_millis() - local_mid, Ordering::Relaxed);
    }
    pub fn offset_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The parts of a venue response the parsers need.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl RawResponse {
    /// A header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Retry-After` in seconds, when the venue sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }

    /// The generic meaning of an HTTP status that the venue's body did not explain:
    /// 429/418 rate limits, 401/403 auth, 5xx unavailable (or outcome unknown for a write).
    pub fn status_error(&self, venue: &'static str, kind: RequestKind) -> Option<ExchangeError> {
        let s = self.status;
        if s.is_success() {
            return None;
        }
        let message = format!("HTTP {}: {}", s.as_u16(), truncate(&self.body, 300));
        Some(match s.as_u16() {
            429 | 418 => ExchangeError::RateLimited {
                venue,
                retry_after: self.retry_after(),
                message,
            },
            401 => ExchangeError::Auth { venue, message },
            403 => ExchangeError::Permission { venue, message },
            404 => ExchangeError::Venue {
                venue,
                code: "404".into(),
                message,
            },
            500..=599 => match kind {
                RequestKind::Read => ExchangeError::Unavailable { venue, message },
                RequestKind::Write => ExchangeError::OutcomeUnknown { venue, message },
            },
            code => ExchangeError::Venue {
                venue,
                code: code.to_string(),
                message,
            },
        })
    }
}

/// Cut `s` to at most `max` bytes on a character boundary, for error messages.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The rate-limit headroom (0..=1) each venue's limiter last showed, by registry name, for the
/// `tradefleet_exchange_rate_limit_headroom_ratio` gauge. Venue instances are short-lived (one per
/// cycle), so the latest reading of any instance stands for the venue.
static LAST_HEADROOM: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

fn record_headroom(venue: &'static str, headroom: f64) {
    let mut last = LAST_HEADROOM.lock().unwrap_or_else(|e| e.into_inner());
    match last.iter_mut().find(|(v, _)| *v == venue) {
        Some(slot) => slot.1 = headroom,
        None => last.push((venue, headroom)),
    }
}

/// The headroom `venue`'s limiter showed around its latest request, if it made one.
pub fn last_headroom(venue: &str) -> Option<f64> {
    let last = LAST_HEADROOM.lock().unwrap_or_else(|e| e.into_inner());
    last.iter().find(|(v, _)| *v == venue).map(|(_, h)| *h)
}

/// Install the one rustls crypto provider (ring) for the process. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP side of one venue instance: base URL, client, limiter and retry policy.
#[derive(Debug)]
pub struct VenueHttp {
    venue: &'static str,
    base_url: Url,
    client: reqwest::Client,
    limiter: RateLimiter,
    settings: HttpSettings,
}

impl VenueHttp {
    pub fn new(
        venue: &'static str,
        base_url: &str,
        limit: RateLimit,
        settings: HttpSettings,
    ) -> Result<Self, ExchangeError> {
        let base_url = Url::parse(base_url).map_err(|e| ExchangeError::Config {
            venue,
            message: format!("bad base URL {base_url:?}: {e}"),
        })?;
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .user_agent(concat!("tradefleet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExchangeError::Config {
                venue,
                message: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Self {
            venue,
            base_url,
            client,
            limiter: RateLimiter::new(limit),
            settings,
        })
    }

    pub fn venue(&self) -> &'static str {
        self.venue
    }
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }
    /// `host[:port]` of the base URL (HTX signs it).
    pub fn host(&self) -> String {
        let host = self.base_url.host_str().unwrap_or_default();
        match self.base_url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The full URL of `path` (which starts with `/`) under the base URL, keeping any base path.
    pub fn url(&self, path: &str) -> String {
        let base = self.base_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }

    /// A request builder for `path_and_query` (already encoded, starting with `/`).
    pub fn request(&self, method: Method, path_and_query: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path_and_query))
    }

    /// Send one request, waiting for `weight` rate-limit units first. Transport failures become
    /// `Network` when the request provably never left (connect errors), and otherwise `Network`
    /// for reads or `OutcomeUnknown` for writes. The status is not interpreted here.
    pub async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        kind: RequestKind,
        weight: u32,
    ) -> Result<RawResponse, ExchangeError> {
        self.limiter.acquire(weight).await;
        let venue = self.venue;
        record_headroom(venue, self.limiter.headroom());
        let transport = |e: reqwest::Error| {
            // Never include the URL: query strings of signed requests carry signatures.
            let e = e.without_url();
            let never_sent = e.is_connect() || e.is_builder();
            if never_sent || kind == RequestKind::Read {
                ExchangeError::Network {
                    venue,
                    message: e.to_string(),
                }
            } else {
                ExchangeError::OutcomeUnknown {
                    venue,
                    message: e.to_string(),
                }
            }
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.map_err(transport)?;
        if status.as_u16() == 429 || status.as_u16() == 418 {
            self.limiter.drain();
        }
        record_headroom(venue, self.limiter.headroom());
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// Run `attempt` until it succeeds or fails in a way that must not be retried.
    ///
    /// Reads are retried on `Recovery::Retry` errors. Writes are retried only on errors that
    /// prove the venue did not act (`Network` = never delivered, `RateLimited`, and
    /// `TimestampOutOfWindow`, which venues reject before execution). `OutcomeUnknown` is never
    /// retried here: the caller reconciles by client order id. `on_timestamp_error` runs before a
    /// retry after a timestamp rejection (to resync the clock offset).
    pub async fn with_retries<T, F, Fut, R, RFut>(
        &self,
        kind: RequestKind,
        mut attempt: F,
        mut on_timestamp_error: R,
    ) -> Result<T, ExchangeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ExchangeError>>,
        R: FnMut() -> RFut,
        RFut: Future<Output = ()>,
    {
        let mut tries = 0u32;
        loop {
            let err = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retryable = match (&err, kind) {
                (_, _) if err.recovery() != Recovery::Retry => false,
                (ExchangeError::Unavailable { .. }, RequestKind::Write) => false,
                _ => true,
            };
            if !retryable || tries >= self.settings.max_retries {
                return Err(err);
            }
            let wait = match err.retry_after() {
                Some(d) if d.as_millis() > u128::from(self.settings.max_retry_after_ms) => {
                    return Err(err);
                }
                Some(d) => d,
                None => backoff(&self.settings, tries),
            };
            if matches!(err, ExchangeError::TimestampOutOfWindow { .. }) {
                on_timestamp_error().await;
            }
            tracing::debug!(
                venue = self.venue,
                kind = err.kind(),
                tries,
                wait_ms = wait.as_millis() as u64,
                "retrying venue request"
            );
            tokio::time::sleep(wait).await;
            tries += 1;
        }
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(max, base * 2^tries)]`.
pub fn backoff(settings: &HttpSettings, tries: u32) -> Duration {
    let cap = settings
        .backoff_base_ms
        .saturating_mul(1u64 << tries.min(20))
        .min(settings.backoff_max_ms);
    Duration::from_millis(rand::rng().random_range(0..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_waits_for_refill() {
        let l = RateLimiter::new(RateLimit {
            capacity: 10,
            per: Duration::from_secs(1),
        });
        let start = tokio::time::Instant::now();
        l.acquire(10).await;
        assert!(start.elapsed() < Duration::from_millis(1));
        l.acquire(5).await;
        // 5 units at 10/s is half a second of (virtual) waiting.
        assert!(start.elapsed() >= Duration::from_millis(450));
    }

    #[test]
    fn usage_headers_only_lower_headroom() {
        let l = RateLimiter::new(RateLimit {
            capacity: 100,
            per: Duration::from_secs(60),
        });
        l.observe_usage(90, 100);
        assert!(l.headroom() <= 0.11);
        l.observe_usage(10, 100);
        assert!(
            l.headroom() <= 0.11,
            "a lower usage figure must not refill the bucket"
        );
    }

    #[test]
    fn backoff_is_bounded() {
        let s = HttpSettings::default();
        for t in 0..40 {
            assert!(backoff(&s, t) <= Duration::from_millis(s.backoff_max_ms));
        }
    }

    #[test]
    fn status_errors_depend_on_request_kind() {
        let r = RawResponse {
            status: StatusCode::BAD_GATEWAY,
            headers: HeaderMap::new(),
            body: "bad gateway".into(),
        };
        assert_eq!(
            r.status_error("t", RequestKind::Read).unwrap().kind(),
            "unavailable"
        );
        assert_eq!(
            r.status_error("t", RequestKind::Write).unwrap().kind(),
            "outcome_unknown"
        );
    }
}
