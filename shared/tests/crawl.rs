//! Crawl through the fleet-wide Redis candle cache: many concurrent subscriptions on one market
//! cost one venue request per timeframe; forming candles never reach a decision.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tradefleet::bot::crawl::{CrawlError, CrawlRequest, NoCache, RedisCandleCache, crawl};
use tradefleet::domain::*;
use tradefleet::exchange::{AccountCheck, Exchange, ExchangeError, ExchangeResult};

/// A venue that serves synthetic candles aligned to the timeframe and counts kline requests.
#[derive(Debug, Default)]
struct CountingVenue {
    kline_calls: AtomicUsize,
    now: i64,
}

fn unsupported<T>() -> ExchangeResult<T> {
    Err(ExchangeError::Unsupported {
        venue: "counting",
        message: "not used by crawl".into(),
    })
}

#[async_trait]
impl Exchange for CountingVenue {
    fn name(&self) -> &'static str {
        "counting"
    }
    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        unsupported()
    }
    async fn klines(
        &self,
        _symbol: &Symbol,
        tf: Timeframe,
        _since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        self.kline_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let s = tf.seconds();
        let forming_open = self.now.div_euclid(s) * s;
        Ok((0..i64::from(limit))
            .rev()
            .map(|i| {
                let open = forming_open - i * s;
                let px = Decimal::from(100 + open / s % 7);
                Candle {
                    open_time: DateTime::from_timestamp(open, 0).unwrap(),
                    open: px,
                    high: px + Decimal::ONE,
                    low: px - Decimal::ONE,
                    close: px,
                    volume: Decimal::TEN,
                    closed: i != 0,
                }
            })
            .collect())
    }
    async fn ticker(&self, _: &Symbol) -> ExchangeResult<Ticker> {
        unsupported()
    }
    async fn instrument(&self, _: &Symbol) -> ExchangeResult<Instrument> {
        unsupported()
    }
    async fn balance(&self, _: &str) -> ExchangeResult<Balance> {
        unsupported()
    }
    async fn positions(&self, _: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        unsupported()
    }
    async fn set_leverage(&self, _: &Symbol, _: u32) -> ExchangeResult<()> {
        unsupported()
    }
    async fn place_order(&self, _: &OrderRequest) -> ExchangeResult<Order> {
        unsupported()
    }
    async fn cancel_order(&self, _: &Symbol, _: &ClientOrderId) -> ExchangeResult<()> {
        unsupported()
    }
    async fn cancel_all(&self, _: &Symbol) -> ExchangeResult<u32> {
        unsupported()
    }
    async fn open_orders(&self, _: &Symbol) -> ExchangeResult<Vec<Order>> {
        unsupported()
    }
    async fn order_by_client_id(
        &self,
        _: &Symbol,
        _: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        unsupported()
    }
    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        unsupported()
    }
}

const NOW: i64 = 1_700_003_123; // 2023-11-14T23:05:23Z, mid-candle for every timeframe used

async fn redis_cache() -> (RedisCandleCache, String) {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    (RedisCandleCache::new(conn, &prefix), prefix)
}

async fn wipe(prefix: &str) {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn fifty_subscriptions_cost_one_request_per_timeframe() {
    let venue = Arc::new(CountingVenue {
        now: NOW,
        ..Default::default()
    });
    let (cache, prefix) = redis_cache().await;
    let symbol: Symbol = "XRP/USDT:USDT".parse().unwrap();
    let tfs = [
        (Timeframe::M30, 50),
        (Timeframe::H1, 50),
        (Timeframe::H4, 20),
    ];
    let now = DateTime::from_timestamp(NOW, 0).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (venue, cache, symbol) = (venue.clone(), cache.clone(), symbol.clone());
        tasks.push(tokio::spawn(async move {
            crawl(
                venue.as_ref(),
                &cache,
                &CrawlRequest {
                    exchange_name: "counting",
                    symbol: &symbol,
                    timeframes: &tfs,
                    now,
                },
            )
            .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        venue.kline_calls.load(Ordering::SeqCst),
        3,
        "one request per timeframe"
    );
    for r in &results {
        assert_eq!(r, &results[0], "every subscription sees the same candles");
        assert_eq!(r[&Timeframe::H1].len(), 50);
        assert!(r.values().flatten().all(|c| c.closed));
        // The newest candle used closed at or before now.
        let last = r[&Timeframe::H4].last().unwrap();
        assert!(last.close_time(Timeframe::H4) <= now);
    }
    wipe(&prefix).await;
}

#[tokio::test]
async fn without_a_cache_every_crawl_asks_the_venue_and_short_data_is_an_error() {
    let venue = CountingVenue {
        now: NOW,
        ..Default::default()
    };
    let symbol: Symbol = "XRP/USDT:USDT".parse().unwrap();
    let now = DateTime::from_timestamp(NOW, 0).unwrap();
    for _ in 0..2 {
        crawl(
            &venue,
            &NoCache,
            &CrawlRequest {
                exchange_name: "counting",
                symbol: &symbol,
                timeframes: &[(Timeframe::M5, 10)],
                now,
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(venue.kline_calls.load(Ordering::SeqCst), 2);
    let none: [(Timeframe, usize); 0] = [];
    let err = crawl(
        &venue,
        &NoCache,
        &CrawlRequest {
            exchange_name: "counting",
            symbol: &symbol,
            timeframes: &none,
            now,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CrawlError::Input(_)), "{err}");
    // The venue "knows" less history than asked when now is before its data: ask for candles
    // at a time where the synthetic venue returns only forming ones.
    let err = crawl(
        &venue,
        &NoCache,
        &CrawlRequest {
            exchange_name: "counting",
            symbol: &symbol,
            timeframes: &[(Timeframe::H1, 5)],
            // A clock one day behind the venue: every candle it returns closes after `now`.
            now: now - chrono::Duration::days(1),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CrawlError::NotEnoughData { .. }), "{err}");
}
