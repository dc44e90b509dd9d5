//! The per-subscription Redis lock against a real Redis (127.0.0.1:6379 or `TEST_REDIS_URL`):
//! exclusion, release, expiry, renewal, owner-only release, fencing, loss detection, outage.
//! Each test uses its own `test:{uuid}` key prefix and deletes its keys at the end.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tradefleet::config::RedisConfig;
use tradefleet::lock::{LockError, LockManager, LostReason};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A unique key prefix; its keys are deleted on drop (also when a test fails).
struct Scope {
    prefix: String,
}

impl Scope {
    fn new() -> Self {
        Self {
            prefix: format!("test:{}", uuid::Uuid::new_v4()),
        }
    }

    fn config(&self, url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_owned(),
            key_prefix: self.prefix.clone(),
            response_timeout_ms: 2_000,
        }
    }

    async fn manager(&self) -> LockManager {
        LockManager::connect(&self.config(&redis_url()))
            .await
            .unwrap()
    }

    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> =
            match redis::Commands::scan_match::<_, String>(&mut conn, format!("{}:*", self.prefix))
            {
                Ok(iter) => iter.filter_map(Result::ok).collect(),
                Err(_) => return,
            };
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::Commands::del(&mut conn, keys);
        }
    }
}

const TTL: Duration = Duration::from_secs(5);

#[tokio::test]
async fn second_acquire_is_contended_until_release() {
    let scope = Scope::new();
    let worker_a = scope.manager().await;
    let worker_b = scope.manager().await;

    let a = worker_a.acquire(7, TTL).await.unwrap().unwrap();
    a.ensure_held().unwrap();
    // A cycle can `select!` on `lost()` inside a spawned task.
    fn is_send<T: Send>(_: &T) {}
    is_send(&a.lost());
    assert!(worker_b.acquire(7, TTL).await.unwrap().is_none());
    assert!(worker_a.acquire(7, TTL).await.unwrap().is_none());
    // Another subscription is independent.
    let other = worker_b.acquire(8, TTL).await.unwrap().unwrap();

    let fence_a = a.fencing_token();
    assert!(a.release().await.unwrap());
    let b = worker_b.acquire(7, TTL).await.unwrap().unwrap();
    assert!(b.fencing_token() > fence_a);
    assert!(b.release().await.unwrap());
    assert!(other.release().await.unwrap());
}

#[tokio::test]
async fn lock_key_has_the_ttl_and_the_fence_key_none() {
    let scope = Scope::new();
    let m = scope.manager().await;
    let mut raw = scope.raw().await;
    let g = m.acquire("s1", TTL).await.unwrap().unwrap();
    let pttl: i64 = raw.pttl(m.lock_key("s1")).await.unwrap();
    assert!(pttl > 0 && pttl <= 5_000, "{pttl}");
    let fence_ttl: i64 = raw.pttl(m.fence_key("s1")).await.unwrap();
    assert_eq!(fence_ttl, -1, "fence counter must not expire");
    let fence: u64 = raw.get(m.fence_key("s1")).await.unwrap();
    assert_eq!(fence, g.fencing_token().get());
    // A contended attempt does not burn a fencing token.
    assert!(m.acquire("s1", TTL).await.unwrap().is_none());
    let fence_after: u64 = raw.get(m.fence_key("s1")).await.unwrap();
    assert_eq!(fence_after, fence);
    g.release().await.unwrap();
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_holders() {
    let scope = Scope::new();
    let managers = [scope.manager().await, scope.manager().await];
    let mut last = None;
    for round in 0..8 {
        let g = managers[round % 2].acquire(99, TTL).await.unwrap().unwrap();
        let f = g.fencing_token();
        if let Some(prev) = last {
            assert!(f > prev, "{f} after {prev}");
        }
        last = Some(f);
        if round % 3 == 0 {
            drop(g); // background release; the next holder waits for it
            let next = managers[0]
                .try_acquire_with_wait(99, TTL, Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap();
            assert!(next.fencing_token() > f);
            last = Some(next.fencing_token());
            next.release().await.unwrap();
        } else {
            g.release().await.unwrap();
        }
    }
}

#[tokio::test]
async fn unrenewed_lease_expires_then_another_takes_it_and_the_first_reports_lost() {
    let scope = Scope::new();
    let m = scope.manager().await;
    let ttl = Duration::from_millis(300);
    let first = m.acquire_unrenewed(1, ttl).await.unwrap().unwrap();
    first.ensure_held().unwrap();
    assert!(m.acquire(1, TTL).await.unwrap().is_none());

    // The guard reports the loss by itself once the validity has passed.
    assert_eq!(
        timeout(Duration::from_secs(5), first.lost()).await.unwrap(),
        LostReason::Expired
    );
    assert!(matches!(
        first.ensure_held(),
        Err(LockError::Lost {
            reason: LostReason::Expired,
            ..
        })
    ));
    // Redis expires the key at (or after) the guard's own deadline; wait for it logically.
    let second = m
        .try_acquire_with_wait(1, TTL, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(second.fencing_token() > first.fencing_token());
    second.ensure_held().unwrap();
    second.release().await.unwrap();
}

#[tokio::test]
async fn renewal_keeps_the_lock_beyond_its_ttl() {
    let scope = Scope::new();
    let holder = scope.manager().await;
    let competitor = scope.manager().await;
    let ttl = Duration::from_secs(1);
    let g = holder.acquire(5, ttl).await.unwrap().unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_500) {
        assert!(competitor.acquire(5, ttl).await.unwrap().is_none());
        g.ensure_held().unwrap();
        sleep(Duration::from_millis(200)).await;
    }
    g.ensure_held().unwrap();
    assert!(g.remaining().unwrap() > Duration::ZERO);
    assert!(g.release().await.unwrap());
    assert!(competitor.acquire(5, ttl).await.unwrap().is_some());
}

#[tokio::test]
async fn only_the_owner_token_releases() {
    let scope = Scope::new();
    let m = scope.manager().await;
    let mut raw = scope.raw().await;
    let stale = m
        .acquire_unrenewed(3, Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let owner = m
        .try_acquire_with_wait(3, TTL, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let owner_token: String = raw.get(m.lock_key(3)).await.unwrap();

    // The stale guard's release touches nothing.
    assert!(!stale.release().await.unwrap());
    let still: Option<String> = raw.get(m.lock_key(3)).await.unwrap();
    assert_eq!(still.as_deref(), Some(owner_token.as_str()));
    owner.ensure_held().unwrap();
    assert!(m.acquire(3, TTL).await.unwrap().is_none());

    // Nor does dropping a stale guard (background release).
    let stale2 = m
        .acquire_unrenewed(4, Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let owner2 = m
        .try_acquire_with_wait(4, TTL, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    drop(stale2);
    sleep(Duration::from_millis(300)).await;
    assert!(m.acquire(4, TTL).await.unwrap().is_none());
    owner2.ensure_held().unwrap();

    assert!(owner.release().await.unwrap());
    assert!(owner2.release().await.unwrap());
}

#[tokio::test]
async fn a_deleted_key_is_detected() {
    let scope = Scope::new();
    let m = scope.manager().await;
    let mut raw = scope.raw().await;
    let g = m
        .acquire(11, Duration::from_millis(900))
        .await
        .unwrap()
        .unwrap();
    let _: i64 = raw.del(m.lock_key(11)).await.unwrap();
    // The next renewal (within TTL/3) finds the key gone.
    assert_eq!(
        timeout(Duration::from_secs(5), g.lost()).await.unwrap(),
        LostReason::Taken
    );
    let err = g.ensure_held().unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Lost {
                reason: LostReason::Taken,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&m.lock_key(11)), "{err}");
    assert!(!g.release().await.unwrap());
}

#[tokio::test]
async fn a_key_taken_over_by_another_token_is_detected() {
    let scope = Scope::new();
    let m = scope.manager().await;
    let mut raw = scope.raw().await;
    let g = m
        .acquire(12, Duration::from_millis(900))
        .await
        .unwrap()
        .unwrap();
    // Failover without replication of our SET: someone else now holds the key.
    let _: () = raw.set(m.lock_key(12), "someone-else").await.unwrap();
    assert_eq!(
        timeout(Duration::from_secs(5), g.lost()).await.unwrap(),
        LostReason::Taken
    );
    assert!(g.ensure_held().is_err());
    // Our release must not delete the other holder's key.
    assert!(!g.release().await.unwrap());
    let v: Option<String> = raw.get(m.lock_key(12)).await.unwrap();
    assert_eq!(v.as_deref(), Some("someone-else"));
}

#[tokio::test]
async fn dropping_the_guard_releases_in_the_background() {
    let scope = Scope::new();
    let m = scope.manager().await;
    let g = m.acquire(21, TTL).await.unwrap().unwrap();
    drop(g);
    // Far sooner than the 5 s TTL.
    let next = m
        .try_acquire_with_wait(21, TTL, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(next.is_some());
}

#[tokio::test]
async fn waiting_acquire_gives_up_after_max_wait() {
    let scope = Scope::new();
    let m = scope.manager().await;
    let g = m.acquire(31, TTL).await.unwrap().unwrap();
    let started = Instant::now();
    let none = m
        .try_acquire_with_wait(31, TTL, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_none());
    assert!(started.elapsed() >= Duration::from_millis(300));
    g.release().await.unwrap();
}

#[tokio::test]
async fn out_of_range_ttl_is_rejected() {
    let scope = Scope::new();
    let m = scope.manager().await;
    assert!(matches!(
        m.acquire(1, Duration::from_millis(5)).await,
        Err(LockError::InvalidTtl { .. })
    ));
    // An absurd TTL (e.g. a bad config value) is an error, not an overflow panic.
    assert!(matches!(
        m.acquire(1, Duration::from_millis(u64::MAX)).await,
        Err(LockError::InvalidTtl { .. })
    ));
    let unbounded_wait = m
        .try_acquire_with_wait(1, Duration::from_secs(1), Duration::MAX)
        .await
        .unwrap()
        .unwrap();
    unbounded_wait.release().await.unwrap();
}

/// A TCP proxy in front of Redis that can be cut: existing connections are dropped and new ones
/// refused, like a network partition.
struct Proxy {
    url: String,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let mut target = url::Url::parse(&redis_url()).unwrap();
        let addr = format!(
            "{}:{}",
            target.host_str().unwrap(),
            target.port().unwrap_or(6379)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns2 = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let addr = addr.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(task);
            }
        });
        target.set_host(Some("127.0.0.1")).unwrap();
        target.set_port(Some(port)).unwrap();
        Proxy {
            url: target.to_string(),
            accept,
            conns,
        }
    }

    fn cut(&self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test]
async fn redis_outage_during_renewal_is_a_loss_not_a_panic() {
    let scope = Scope::new();
    let proxy = Proxy::start().await;
    let mut cfg = scope.config(&proxy.url);
    cfg.response_timeout_ms = 300;
    let through_proxy = LockManager::connect(&cfg).await.unwrap();
    let direct = scope.manager().await;

    let g = through_proxy
        .acquire(41, Duration::from_millis(900))
        .await
        .unwrap()
        .unwrap();
    g.ensure_held().unwrap();
    proxy.cut();

    // Renewals fail (reset, refused or timed out); after one TTL without success the guard
    // reports the lock lost - as expiry, not as a takeover.
    assert_eq!(
        timeout(Duration::from_secs(10), g.lost()).await.unwrap(),
        LostReason::Expired
    );
    assert!(matches!(
        g.ensure_held(),
        Err(LockError::Lost {
            reason: LostReason::Expired,
            ..
        })
    ));
    // Redis itself let the key expire: a worker that can reach it takes over.
    let next = direct
        .try_acquire_with_wait(41, TTL, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > g.fencing_token());
    // Release through the cut proxy fails with an error value within one TTL (no panic, no
    // hang), and does not disturb the new owner.
    let released = timeout(Duration::from_secs(10), g.release()).await.unwrap();
    assert!(
        matches!(
            released,
            Err(LockError::Timeout { .. } | LockError::Redis { .. })
        ),
        "{released:?}"
    );
    next.ensure_held().unwrap();
    next.release().await.unwrap();
}
