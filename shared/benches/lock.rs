//! Cost of the per-subscription lock round trips against the local Redis (127.0.0.1:6379 or
//! `TEST_REDIS_URL`): acquire + release of a free lock, and a contended acquire. Skips with a
//! message when Redis is unreachable.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tradefleet::config::RedisConfig;
use tradefleet::lock::LockManager;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn lock_round_trips(c: &mut Criterion) {
    // One thread: the measured loop, the connection's driver task and the renewal tasks share
    // it, so no cross-thread wake-ups are timed (a worker runs many cycles per thread anyway).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = redis_url();
    let config = RedisConfig {
        url: url.clone(),
        key_prefix: format!("bench:{}", uuid::Uuid::new_v4()),
        response_timeout_ms: 2_000,
    };
    let connected = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), LockManager::connect(&config)).await
    });
    let manager = match connected {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            eprintln!("skipping lock benchmark: cannot reach Redis at {url}: {e}");
            return;
        }
        Err(_) => {
            eprintln!("skipping lock benchmark: no answer from Redis at {url} within 3 s");
            return;
        }
    };
    let ttl = Duration::from_secs(30);

    c.bench_function("lock/acquire+release", |b| {
        b.iter(|| {
            rt.block_on(async {
                let guard = manager.acquire(1, ttl).await.unwrap().unwrap();
                assert!(guard.release().await.unwrap());
            })
        })
    });

    let held = rt.block_on(manager.acquire(2, ttl)).unwrap().unwrap();
    c.bench_function("lock/acquire_contended", |b| {
        b.iter(|| rt.block_on(async { assert!(manager.acquire(2, ttl).await.unwrap().is_none()) }))
    });
    rt.block_on(held.release()).unwrap();

    // Remove this run's keys (the fence counters never expire by design).
    rt.block_on(async {
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys = [
            manager.lock_key(1),
            manager.fence_key(1),
            manager.lock_key(2),
            manager.fence_key(2),
        ];
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    });
}

criterion_group!(benches, lock_round_trips);
criterion_main!(benches);
