//! Redis distributed lock per subscription: token + TTL + renewal + fencing token.
//!
//! Keys (under the configured prefix, e.g. `tf`):
//!
//! ```text
//! {prefix}:lock:sub:{<id>}         the lock: a random token, with a TTL (SET NX PX)
//! {prefix}:lock:sub:{<id>}:fence   the fencing counter (INCR), never expires
//! ```
//!
//! The `{<id>}` braces are a Redis Cluster hash tag, so both keys live in one slot and the
//! acquire script can touch both. Acquire is one Lua script: `SET key token NX PX ttl` and, only
//! if that succeeded, `INCR` of the fence key - so no holder ever lacks a fencing token and a
//! failed acquire does not burn one. The fence counter must outlive every lock (the store
//! refuses writes with a token older than the last one it saw), which is why it has no TTL.
//!
//! While a [`LockGuard`] lives, a tokio task renews the TTL every `ttl / 3` with a
//! compare-and-`PEXPIRE` script. The guard counts itself valid until `t + ttl`, where `t` is
//! when the last successful renewal (or the acquire) was *sent*; Redis set its expiry later than
//! that, so the guard never believes it holds a lock Redis has already expired (clock-rate drift
//! aside). A renewal that finds the key gone or owned by another token, or no successful
//! renewal within the TTL (Redis errors and timeouts count as failures, never panics), marks the
//! guard lost: [`LockGuard::ensure_held`] then fails and [`LockGuard::lost`] resolves. Callers
//! check `ensure_held` before every exchange write and pass the fencing token to the store.
//!
//! Connection: one `redis` [`ConnectionManager`] (multiplexed, `Clone`, reconnects by itself)
//! with the response timeout from `RedisConfig::response_timeout_ms`, shared by every guard and
//! renewal task of the process. A pooled deadpool connection would cost a checkout per renewal
//! and is not `Clone`; the lock's commands are tiny and pipeline well on one socket.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::RedisConfig;

/// Shortest TTL accepted (renewal runs every TTL/3).
const MIN_TTL: Duration = Duration::from_millis(30);
/// Longest TTL (and wait) accepted; keeps instant arithmetic far from overflow.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

const ACQUIRE_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
";

/// Like `ACQUIRE_LUA`, but first raises the fencing counter to at least `ARGV[3]` (the newest
/// token the store committed), so a counter lost with Redis data never hands out a token the
/// store would refuse.
const ACQUIRE_FLOOR_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local current = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  local floor = tonumber(ARGV[3]) or 0
  if current < floor then
    redis.call('SET', KEYS[2], ARGV[3])
  end
  return redis.call('INCR', KEYS[2])
end
return 0
";

const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Errors of the lock. `Lost` means: stop before the next exchange write.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("redis error on lock {key}: {source}")]
    Redis {
        key: String,
        #[source]
        source: RedisError,
    },
    #[error("no answer from redis on lock {key} within {after:?} (the lock TTL)")]
    Timeout { key: String, after: Duration },
    #[error("cannot connect the lock manager to redis: {0}")]
    Connect(#[source] RedisError),
    #[error("lock {key} lost: {reason}")]
    Lost { key: String, reason: LostReason },
    #[error("invalid lock TTL {ttl:?}: must be between 30 ms and 24 h")]
    InvalidTtl { ttl: Duration },
    #[error("unexpected reply {reply} from redis on lock {key}")]
    UnexpectedReply { key: String, reply: i64 },
}

/// Why a guard stopped holding its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// A renewal found the key gone or owned by another token (expiry, failover, deletion).
    Taken,
    /// No successful renewal within the TTL (Redis unreachable, slow or erroring).
    Expired,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::Taken => "the key is gone or owned by another holder",
            LostReason::Expired => "no successful renewal within the TTL",
        })
    }
}

/// A fencing token: strictly increasing across successive holders of one subscription's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[derive(Debug)]
struct Scripts {
    acquire: Script,
    acquire_floor: Script,
    renew: Script,
    release: Script,
}

/// Takes per-subscription locks. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct LockManager {
    conn: ConnectionManager,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
}

impl fmt::Debug for LockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockManager")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl LockManager {
    /// Connects to `config.url` with `config.response_timeout_ms` as response and connect timeout.
    pub async fn connect(config: &RedisConfig) -> Result<LockManager, LockError> {
        let client = redis::Client::open(config.url.as_str()).map_err(LockError::Connect)?;
        let timeout = Duration::from_millis(config.response_timeout_ms.max(1));
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout));
        let conn = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(LockError::Connect)?;
        Ok(LockManager::new(conn, &config.key_prefix))
    }

    /// Over an existing connection manager (its response timeout applies).
    pub fn new(conn: ConnectionManager, key_prefix: &str) -> LockManager {
        LockManager {
            conn,
            prefix: Arc::from(key_prefix),
            scripts: Arc::new(Scripts {
                acquire: Script::new(ACQUIRE_LUA),
                acquire_floor: Script::new(ACQUIRE_FLOOR_LUA),
                renew: Script::new(RENEW_LUA),
                release: Script::new(RELEASE_LUA),
            }),
        }
    }

    /// The Redis key of a subscription's lock.
    pub fn lock_key(&self, sub_id: impl fmt::Display) -> String {
        lock_key_for(&self.prefix, &sub_id)
    }

    /// The Redis key of a subscription's fencing counter.
    pub fn fence_key(&self, sub_id: impl fmt::Display) -> String {
        format!("{}:fence", self.lock_key(sub_id))
    }

    /// Tries once. `Ok(None)`: another holder has it. The guard renews until released or dropped.
    pub async fn acquire(
        &self,
        sub_id: impl fmt::Display,
        ttl: Duration,
    ) -> Result<Option<LockGuard>, LockError> {
        self.acquire_inner(&sub_id.to_string(), ttl, true, None)
            .await
    }

    /// Like [`LockManager::acquire`], but the fencing token handed out is above `floor` (the
    /// newest token the store has committed for the subscription): if Redis lost the counter,
    /// it restarts above `floor` instead of at 1. Renewed like `acquire`.
    pub async fn acquire_with_floor(
        &self,
        sub_id: impl fmt::Display,
        ttl: Duration,
        floor: u64,
    ) -> Result<Option<LockGuard>, LockError> {
        self.acquire_inner(&sub_id.to_string(), ttl, true, Some(floor))
            .await
    }

    /// Like [`LockManager::acquire`] but without renewal: a lease that ends after `ttl`
    /// (`ensure_held` fails from then on). For short, bounded critical sections.
    pub async fn acquire_unrenewed(
        &self,
        sub_id: impl fmt::Display,
        ttl: Duration,
    ) -> Result<Option<LockGuard>, LockError> {
        self.acquire_inner(&sub_id.to_string(), ttl, false, None)
            .await
    }

    /// Retries [`LockManager::acquire`] with growing pauses (20 ms doubling to 250 ms, with
    /// jitter) until it succeeds or `max_wait` (capped at 24 h) has passed (`Ok(None)`).
    pub async fn try_acquire_with_wait(
        &self,
        sub_id: impl fmt::Display,
        ttl: Duration,
        max_wait: Duration,
    ) -> Result<Option<LockGuard>, LockError> {
        let deadline = Instant::now() + max_wait.min(MAX_TTL);
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(guard) = self
                .acquire_inner(&sub_id.to_string(), ttl, true, None)
                .await?
            {
                return Ok(Some(guard));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let half = u64::try_from(pause.as_millis() / 2).unwrap_or(0);
            let jitter = Duration::from_millis(rand::random_range(0..=half));
            tokio::time::sleep((pause + jitter).min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    async fn acquire_inner(
        &self,
        sub_id: &str,
        ttl: Duration,
        renew: bool,
        floor: Option<u64>,
    ) -> Result<Option<LockGuard>, LockError> {
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(LockError::InvalidTtl { ttl });
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let key = self.lock_key(sub_id);
        let fence_key = self.fence_key(sub_id);
        let token = new_token();
        let sent_at = Instant::now();
        let mut conn = self.conn.clone();
        let mut invocation = match floor {
            Some(_) => self.scripts.acquire_floor.key(&key),
            None => self.scripts.acquire.key(&key),
        };
        invocation.key(&fence_key).arg(&token).arg(ttl_ms);
        if let Some(floor) = floor {
            invocation.arg(floor);
        }
        // An answer later than the TTL would be worthless (the lock would already be expired),
        // so the TTL bounds the wait, also while the connection manager is reconnecting.
        let reply = tokio::time::timeout(ttl, invocation.invoke_async::<i64>(&mut conn)).await;
        let fence = match reply {
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => u64::try_from(n).map_err(|_| LockError::UnexpectedReply {
                key: key.clone(),
                reply: n,
            })?,
            Ok(Err(_)) | Err(_) => {
                // Outcome unknown (e.g. a timeout after Redis ran the script): we may hold the
                // key. Free it if so, rather than blocking the subscription for a whole TTL.
                spawn_release(
                    self.conn.clone(),
                    self.scripts.clone(),
                    key.clone(),
                    token,
                    ttl,
                );
                return Err(match reply {
                    Ok(Err(source)) => LockError::Redis { key, source },
                    _ => LockError::Timeout { key, after: ttl },
                });
            }
        };
        let (state, _) = watch::channel(LockState {
            valid_until: sent_at + ttl,
            lost: None,
        });
        let state = Arc::new(state);
        let renewal = renew.then(|| {
            tokio::spawn(renew_loop(RenewTask {
                first_at: sent_at + ttl / 3,
                conn: self.conn.clone(),
                scripts: self.scripts.clone(),
                key: key.clone(),
                token: token.clone(),
                ttl,
                ttl_ms,
                state: state.clone(),
            }))
        });
        tracing::debug!(lock = %key, fence, "lock acquired");
        Ok(Some(LockGuard {
            key,
            token,
            fence: FencingToken(fence),
            ttl,
            state,
            renewal,
            conn: self.conn.clone(),
            scripts: self.scripts.clone(),
            released: false,
        }))
    }
}

fn lock_key_for(prefix: &str, sub_id: &dyn fmt::Display) -> String {
    format!("{prefix}:lock:sub:{{{sub_id}}}")
}

fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[derive(Debug, Clone, Copy)]
struct LockState {
    /// Until when the lock is surely ours (send time of the last successful renewal + TTL).
    valid_until: Instant,
    lost: Option<LostReason>,
}

fn mark_lost(state: &watch::Sender<LockState>, reason: LostReason) {
    state.send_if_modified(|s| {
        if s.lost.is_none() {
            s.lost = Some(reason);
            true
        } else {
            false
        }
    });
}

/// A held lock. Check [`LockGuard::ensure_held`] before each exchange write; pass
/// [`LockGuard::fencing_token`] to the store. Release with [`LockGuard::release`]; dropping the
/// guard stops renewal and releases in a spawned task (best effort; otherwise the TTL frees it).
pub struct LockGuard {
    key: String,
    token: String,
    fence: FencingToken,
    ttl: Duration,
    state: Arc<watch::Sender<LockState>>,
    renewal: Option<JoinHandle<()>>,
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    released: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = *self.state.borrow();
        f.debug_struct("LockGuard")
            .field("key", &self.key)
            .field("fence", &self.fence)
            .field("ttl", &self.ttl)
            .field("lost", &s.lost)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The Redis key held.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn fencing_token(&self) -> FencingToken {
        self.fence
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `Ok` while the lock is surely held: no renewal found it taken, and the last successful
    /// renewal (or the acquire) was sent less than one TTL ago.
    pub fn ensure_held(&self) -> Result<(), LockError> {
        let s = *self.state.borrow();
        let reason = match s.lost {
            Some(reason) => reason,
            None if Instant::now() >= s.valid_until => {
                mark_lost(&self.state, LostReason::Expired);
                LostReason::Expired
            }
            None => return Ok(()),
        };
        Err(LockError::Lost {
            key: self.key.clone(),
            reason,
        })
    }

    /// How long the lock is surely held without another successful renewal (`None` if lost).
    pub fn remaining(&self) -> Option<Duration> {
        let s = *self.state.borrow();
        if s.lost.is_some() {
            return None;
        }
        s.valid_until.checked_duration_since(Instant::now())
    }

    /// Resolves when the lock is lost (at once if it already is). Also fires when the validity
    /// runs out even if the renewal task is stuck, so it can drive a `select!` around a cycle.
    pub async fn lost(&self) -> LostReason {
        let mut rx = self.state.subscribe();
        loop {
            let s = *rx.borrow_and_update();
            if let Some(reason) = s.lost {
                return reason;
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // Unreachable while `self` holds the sender; treat as lost.
                        return LostReason::Expired;
                    }
                }
                () = tokio::time::sleep_until(s.valid_until) => {
                    let still_valid = self.state.borrow().valid_until > Instant::now();
                    if !still_valid {
                        mark_lost(&self.state, LostReason::Expired);
                    }
                }
            }
        }
    }

    /// Stops renewal and deletes the key if this guard still owns it. `Ok(true)`: deleted;
    /// `Ok(false)`: it was no longer ours (expired or taken) and nothing was touched. Waits at
    /// most one TTL (by then the key expires on its own): `LockError::Timeout`.
    pub async fn release(mut self) -> Result<bool, LockError> {
        self.released = true;
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.release.key(&self.key);
        invocation.arg(&self.token);
        let deleted = tokio::time::timeout(self.ttl, invocation.invoke_async::<i64>(&mut conn))
            .await
            .map_err(|_| LockError::Timeout {
                key: self.key.clone(),
                after: self.ttl,
            })?
            .map_err(|source| LockError::Redis {
                key: self.key.clone(),
                source,
            })?;
        tracing::debug!(lock = %self.key, deleted = deleted == 1, "lock released");
        Ok(deleted == 1)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
        if self.released {
            return;
        }
        spawn_release(
            self.conn.clone(),
            self.scripts.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
            self.ttl,
        );
    }
}

/// Best-effort compare-and-delete in the background, given up after `ttl` (no runtime:
/// nothing; the TTL frees the key).
fn spawn_release(
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    key: String,
    token: String,
    ttl: Duration,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut conn = conn;
        let mut invocation = scripts.release.key(&key);
        invocation.arg(&token);
        match tokio::time::timeout(ttl, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(lock = %key, error = %e, "background lock release failed; the TTL will free it");
            }
            Err(_) => {
                tracing::debug!(lock = %key, "background lock release timed out; the TTL will free it");
            }
        }
    });
}

struct RenewTask {
    first_at: Instant,
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    key: String,
    token: String,
    ttl: Duration,
    ttl_ms: u64,
    state: Arc<watch::Sender<LockState>>,
}

/// Renews every TTL/3 (sooner after a failure) until the lock is lost or the task is aborted.
async fn renew_loop(task: RenewTask) {
    let period = task.ttl / 3;
    let retry = (period / 3).max(Duration::from_millis(5));
    let mut next = task.first_at;
    let mut conn = task.conn.clone();
    loop {
        tokio::time::sleep_until(next).await;
        let valid_until = {
            let s = *task.state.borrow();
            if s.lost.is_some() {
                return;
            }
            s.valid_until
        };
        let sent_at = Instant::now();
        let mut invocation = task.scripts.renew.key(&task.key);
        invocation.arg(&task.token).arg(task.ttl_ms);
        let renewal = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout_at(valid_until, renewal).await {
            Ok(Ok(1)) => {
                task.state.send_if_modified(|s| {
                    let extended = sent_at + task.ttl;
                    if s.lost.is_none() && extended > s.valid_until {
                        s.valid_until = extended;
                        true
                    } else {
                        false
                    }
                });
                next = sent_at + period;
            }
            Ok(Ok(_)) => {
                tracing::warn!(lock = %task.key, "lock lost: key gone or owned by another holder");
                mark_lost(&task.state, LostReason::Taken);
                return;
            }
            Ok(Err(e)) => {
                if Instant::now() >= valid_until {
                    tracing::warn!(lock = %task.key, error = %e, "lock lost: renewals failed for a whole TTL");
                    mark_lost(&task.state, LostReason::Expired);
                    return;
                }
                tracing::warn!(lock = %task.key, error = %e, "lock renewal failed; retrying");
                next = Instant::now() + retry;
            }
            Err(_elapsed) => {
                tracing::warn!(lock = %task.key, "lock lost: no renewal answer within the TTL");
                mark_lost(&task.state, LostReason::Expired);
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        // Both keys must hash on the same `{...}` section for the acquire script.
        let lock = lock_key_for("tf", &42);
        assert_eq!(lock, "tf:lock:sub:{42}");
        let tag = |k: &str| {
            let open = k.find('{').unwrap();
            let close = k[open..].find('}').unwrap() + open;
            k[open + 1..close].to_owned()
        };
        assert_eq!(tag(&lock), tag(&format!("{lock}:fence")));
    }

    #[test]
    fn guards_can_move_between_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<LockManager>();
        send_sync::<LockGuard>();
        send_sync::<LockError>();
    }

    #[test]
    fn tokens_are_random_128_bit_hex() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_token());
    }
}
