//! Crawl: fetch the closed candles of 1..=7 timeframes, through a fleet-wide cache.
//!
//! Candles are cached in Redis per (exchange, symbol, timeframe, last close), so a thousand
//! subscriptions on one market cost one venue request per timeframe and candle close. The first
//! worker to miss takes a short fill lock (`SET NX PX`) and fetches; the others wait briefly for
//! its result and only fetch themselves if it does not come. Decisions use closed candles only.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;

use crate::domain::{Candle, Symbol, Timeframe};
use crate::exchange::{Exchange, ExchangeError};

/// Most timeframes one subscription may analyse.
pub const MAX_TIMEFRAMES: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("{timeframe}: only {got} closed candles, {needed} needed")]
    NotEnoughData {
        timeframe: Timeframe,
        got: usize,
        needed: usize,
    },
}

/// The close time of the last closed candle of `tf` at `now` (candles align to the epoch).
pub fn last_close(now: DateTime<Utc>, tf: Timeframe) -> DateTime<Utc> {
    let s = tf.seconds();
    let t = now.timestamp().div_euclid(s) * s;
    DateTime::from_timestamp(t, 0).unwrap_or(now)
}

/// Where candles are cached. The Redis implementation is shared by the fleet; `NoCache` serves
/// the CLI and backtests.
#[async_trait::async_trait]
pub trait CandleCache: Send + Sync {
    async fn get(&self, key: &str) -> Option<Vec<Candle>>;
    async fn put(&self, key: &str, candles: &[Candle], ttl: Duration);
    /// Try to become the one filler of `key`.
    async fn claim_fill(&self, key: &str, ttl: Duration) -> bool;
}

/// No caching: every crawl asks the venue.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

#[async_trait::async_trait]
impl CandleCache for NoCache {
    async fn get(&self, _key: &str) -> Option<Vec<Candle>> {
        None
    }
    async fn put(&self, _key: &str, _candles: &[Candle], _ttl: Duration) {}
    async fn claim_fill(&self, _key: &str, _ttl: Duration) -> bool {
        true
    }
}

/// The fleet-wide cache in Redis. Cache failures never fail a cycle: they only cost a request.
#[derive(Clone)]
pub struct RedisCandleCache {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCandleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCandleCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCandleCache {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
        }
    }
    fn full(&self, key: &str) -> String {
        format!("{}:candles:{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl CandleCache for RedisCandleCache {
    async fn get(&self, key: &str) -> Option<Vec<Candle>> {
        let mut c = self.conn.clone();
        let text: Option<String> = redis::cmd("GET")
            .arg(self.full(key))
            .query_async(&mut c)
            .await
            .ok()?;
        serde_json::from_str(&text?).ok()
    }
    async fn put(&self, key: &str, candles: &[Candle], ttl: Duration) {
        let Ok(text) = serde_json::to_string(candles) else {
            return;
        };
        let mut c = self.conn.clone();
        let r: Result<(), _> = redis::cmd("SET")
            .arg(self.full(key))
            .arg(text)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut c)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "candle cache write failed");
        }
    }
    async fn claim_fill(&self, key: &str, ttl: Duration) -> bool {
        let mut c = self.conn.clone();
        let r: Result<Option<String>, _> = redis::cmd("SET")
            .arg(format!("{}:fill", self.full(key)))
            .arg("1")
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(5_000).max(1))
            .query_async(&mut c)
            .await;
        // If Redis is unavailable, fetch ourselves rather than wait.
        r.map(|v| v.is_some()).unwrap_or(true)
    }
}

/// What to crawl.
#[derive(Debug, Clone)]
pub struct CrawlRequest<'a> {
    /// Registry name of the venue (part of the cache key).
    pub exchange_name: &'a str,
    pub symbol: &'a Symbol,
    /// (timeframe, closed candles needed), 1..=7 entries.
    pub timeframes: &'a [(Timeframe, usize)],
    pub now: DateTime<Utc>,
}

/// How long a loser of the fill race waits for the winner.
const FILL_WAIT: Duration = Duration::from_millis(3_000);
const FILL_POLL: Duration = Duration::from_millis(50);

/// Closed candles per timeframe, oldest first, exactly `needed` of each (the most recent ones).
pub async fn crawl(
    exchange: &dyn Exchange,
    cache: &dyn CandleCache,
    req: &CrawlRequest<'_>,
) -> Result<BTreeMap<Timeframe, Vec<Candle>>, CrawlError> {
    if req.timeframes.is_empty() || req.timeframes.len() > MAX_TIMEFRAMES {
        return Err(CrawlError::Input(format!(
            "between 1 and {MAX_TIMEFRAMES} timeframes are needed, got {}",
            req.timeframes.len()
        )));
    }
    let mut out = BTreeMap::new();
    for &(tf, needed) in req.timeframes {
        if needed == 0 || needed > 1_000 {
            return Err(CrawlError::Input(format!(
                "{tf}: candle count must be 1..=1000, got {needed}"
            )));
        }
        let close = last_close(req.now, tf);
        let key = format!(
            "{}:{}:{}:{}",
            req.exchange_name,
            req.symbol,
            tf,
            close.timestamp()
        );
        let cached = match cache.get(&key).await {
            Some(c) if c.len() >= needed => Some(c),
            _ => None,
        };
        let candles = match cached {
            Some(c) => c,
            None => {
                let mut got = None;
                if !cache.claim_fill(&key, FILL_WAIT).await {
                    let deadline = tokio::time::Instant::now() + FILL_WAIT;
                    while tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(FILL_POLL).await;
                        if let Some(c) = cache.get(&key).await
                            && c.len() >= needed
                        {
                            got = Some(c);
                            break;
                        }
                    }
                }
                match got {
                    Some(c) => c,
                    None => {
                        // Two extra candles: the one forming at `req.now`, and the one that
                        // closes if a candle boundary passes before the venue answers (its
                        // "latest" then ends one candle later; that candle is dropped below).
                        let limit = u32::try_from(needed + 2).unwrap_or(1_002);
                        let fetched = exchange.klines(req.symbol, tf, None, limit).await?;
                        let closed: Vec<Candle> = fetched
                            .into_iter()
                            .filter(|c| c.closed && c.close_time(tf) <= close)
                            .collect();
                        // Valid until the next candle closes.
                        let ttl = Duration::from_secs(
                            u64::try_from(tf.seconds()).unwrap_or(60).saturating_add(5),
                        );
                        cache.put(&key, &closed, ttl).await;
                        closed
                    }
                }
            }
        };
        let closed: Vec<Candle> = candles
            .into_iter()
            .filter(|c| c.closed && c.close_time(tf) <= close)
            .collect();
        if closed.len() < needed {
            return Err(CrawlError::NotEnoughData {
                timeframe: tf,
                got: closed.len(),
                needed,
            });
        }
        let skip = closed.len() - needed;
        out.insert(tf, closed.into_iter().skip(skip).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_close_aligns_to_the_timeframe() {
        let t = DateTime::parse_from_rfc3339("2024-03-01T10:47:13Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            last_close(t, Timeframe::H1).to_rfc3339(),
            "2024-03-01T10:00:00+00:00"
        );
        assert_eq!(
            last_close(t, Timeframe::M15).to_rfc3339(),
            "2024-03-01T10:45:00+00:00"
        );
        assert_eq!(
            last_close(t, Timeframe::H4).to_rfc3339(),
            "2024-03-01T08:00:00+00:00"
        );
    }
}
