//! A job queue on Redis Streams with a consumer group.
//!
//! Why not apalis-redis 1.0: it wedges above ~8k due jobs (Lua `unpack`), loses poll wake-ups,
//! never raises the attempt count on redelivery, retries 25 times whatever the policy says, and
//! keeps finished jobs forever (see the README). Here:
//! - enqueue = `XADD` guarded by a `SET NX EX` dedupe key, atomically in one script;
//! - pickup = `XREADGROUP ... BLOCK` on a dedicated connection: a new job wakes an idle consumer at once;
//! - ack = `XACK` + `XDEL` in one script, so finished jobs leave Redis (bounded memory);
//! - orphans = `XPENDING IDLE` + `XCLAIM` (only one claimer wins); live consumers keep their
//!   in-flight entries fresh with `XCLAIM ... JUSTID`; an entry delivered `max_deliveries` times
//!   without an ack (it killed its workers) is handed back as poisoned for the dead-letter path;
//! - retries = a ZSET of delayed envelopes promoted by a script in bounded chunks (no unpack limit);
//! - the SQL database stays the source of truth: Redis is transport, and losing it loses no slot
//!   (the scheduler re-enqueues runs still marked enqueued).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Script, Value};
use serde::{Deserialize, Serialize};

/// Queue errors. Redis failures are transient from the caller's point of view: back off and retry.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("bad queue configuration: {0}")]
    Config(String),
}

/// Tuning of one queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// How long one blocking read waits for new jobs.
    pub block_ms: u64,
    /// An entry not acked nor refreshed for this long belongs to a dead consumer.
    pub orphan_idle_ms: u64,
    /// Deliveries without an ack after which an entry is poisoned (dead-lettered).
    pub max_deliveries: u32,
    /// How long a job id stays deduplicated after enqueue.
    pub dedupe_ttl_s: u64,
    /// Delayed entries promoted per script call.
    pub promote_chunk: u32,
    /// Approximate cap of the dead-letter stream (the SQL table is the durable record).
    pub dead_maxlen: u32,
    /// Response timeout of ordinary commands.
    pub response_timeout_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            block_ms: 1_000,
            orphan_idle_ms: 15_000,
            max_deliveries: 3,
            dedupe_ttl_s: 86_400,
            promote_chunk: 500,
            dead_maxlen: 10_000,
            response_timeout_ms: 5_000,
        }
    }
}

/// What travels through the queue: a job id, its attempt number and the payload text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    /// 1 on the first run; raised by each retry.
    pub attempt: u32,
    /// The job as text (JSON). Kept verbatim even when malformed, for the dead-letter record.
    pub payload: String,
}

/// One entry handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id (for ack).
    pub entry_id: String,
    pub envelope: Envelope,
    /// How many times Redis delivered this entry (1 = first delivery).
    pub deliveries: u32,
}

/// Sizes of the queue's parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// In the stream, not yet delivered.
    pub waiting: u64,
    /// Delivered, not yet acked.
    pub in_flight: u64,
    /// Waiting in the retry ZSET.
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub dead: u64,
}

/// Orphans found by a claim pass.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Taken over by this consumer, to run again.
    pub deliveries: Vec<Delivery>,
    /// Delivered `max_deliveries` times without an ack: dead-letter them.
    pub poisoned: Vec<Delivery>,
}

/// Jobs per enqueue script call: large enough that the per-call cost vanishes, small enough
/// that one call blocks Redis for about a millisecond.
const ENQUEUE_CHUNK: usize = 500;

#[derive(Debug, Clone)]
struct Keys {
    stream: String,
    group: String,
    delayed: String,
    dead: String,
    dedupe_prefix: String,
}

/// Many jobs in one script call: KEYS = stream, then the dedupe key of each job; ARGV = the
/// dedupe TTL, then (id, attempt, payload) per job. Returns how many were added.
const ENQUEUE_MANY: &str = r#"
local n = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    local j = (i - 2) * 3 + 1
    redis.call('XADD', KEYS[1], '*', 'id', ARGV[j + 1], 'attempt', ARGV[j + 2], 'payload', ARGV[j + 3])
    n = n + 1
  end
end
return n
"#;

/// Many delayed jobs in one script call: KEYS = delayed set, then the dedupe key of each job;
/// ARGV = the dedupe TTL, then (member, run_at_ms) per job. Returns how many were added.
const ENQUEUE_MANY_AT: &str = r#"
local n = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    local j = (i - 2) * 2 + 1
    redis.call('ZADD', KEYS[1], ARGV[j + 2], ARGV[j + 1])
    n = n + 1
  end
end
return n
"#;

const ACK: &str = r#"
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return n
"#;

const RETRY: &str = r#"
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if n == 1 then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
return n
"#;

const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local ok, e = pcall(cjson.decode, m)
  if ok and type(e) == 'table' and e.id and e.payload then
    redis.call('XADD', KEYS[1], '*', 'id', tostring(e.id), 'attempt', tostring(e.attempt or 1), 'payload', tostring(e.payload))
  end
  redis.call('ZREM', KEYS[2], m)
end
return #due
"#;

const RELEASE: &str = r#"
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if n == 1 then
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[3], 'attempt', ARGV[4], 'payload', ARGV[5])
end
return n
"#;

const DEAD: &str = r#"
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[3], 'attempt', ARGV[4], 'payload', ARGV[5], 'error', ARGV[6])
return n
"#;

/// A named queue under a key prefix.
#[derive(Clone)]
pub struct StreamQueue {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    settings: QueueSettings,
}

impl std::fmt::Debug for StreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamQueue")
            .field("stream", &self.keys.stream)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn field_str(entry: &StreamId, name: &str) -> Option<String> {
    match entry.map.get(name)? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn envelope_of(entry: &StreamId) -> Envelope {
    Envelope {
        id: field_str(entry, "id").unwrap_or_else(|| format!("entry:{}", entry.id)),
        attempt: field_str(entry, "attempt")
            .and_then(|a| a.parse().ok())
            .unwrap_or(1),
        payload: field_str(entry, "payload").unwrap_or_default(),
    }
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

impl StreamQueue {
    /// Connect to `url` and use the queue `name` under `prefix` (`{prefix}:queue:{name}:*`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        name: &str,
        settings: QueueSettings,
    ) -> Result<Self, QueueError> {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(QueueError::Config(format!("bad queue name {name:?}")));
        }
        let client = redis::Client::open(url)?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_millis(settings.response_timeout_ms)))
            .set_connection_timeout(Some(Duration::from_millis(settings.response_timeout_ms)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client.clone(), cfg).await?;
        let base = format!("{prefix}:queue:{name}");
        let queue = Self {
            client,
            conn,
            keys: Keys {
                stream: format!("{base}:stream"),
                group: "workers".into(),
                delayed: format!("{base}:delayed"),
                dead: format!("{base}:dead"),
                dedupe_prefix: format!("{base}:dedupe:"),
            },
            settings,
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Create the stream and consumer group if missing (after a Redis restart too).
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        let r: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Enqueue unless `envelope.id` was enqueued within the dedupe TTL. Returns whether it was added.
    pub async fn enqueue(&self, envelope: &Envelope) -> Result<bool, QueueError> {
        Ok(self.enqueue_many(std::slice::from_ref(envelope)).await? == 1)
    }

    /// Enqueue many: one script call per `ENQUEUE_CHUNK` jobs (each job deduplicated on its
    /// own key, as [`StreamQueue::enqueue`] does). Returns how many were new.
    pub async fn enqueue_many(&self, envelopes: &[Envelope]) -> Result<usize, QueueError> {
        let script = Script::new(ENQUEUE_MANY);
        let mut added = 0;
        let mut c = self.conn.clone();
        for chunk in envelopes.chunks(ENQUEUE_CHUNK) {
            let mut invocation = script.key(&self.keys.stream);
            invocation.arg(self.settings.dedupe_ttl_s);
            for e in chunk {
                invocation
                    .key(format!("{}{}", self.keys.dedupe_prefix, e.id))
                    .arg(&e.id)
                    .arg(e.attempt)
                    .arg(&e.payload);
            }
            // `invoke_async` loads the script itself when Redis lost it (NOSCRIPT).
            let n: usize = invocation.invoke_async(&mut c).await?;
            added += n;
        }
        Ok(added)
    }

    /// Like [`StreamQueue::enqueue_many`] but each envelope waits in the delayed set until its
    /// `run_at_ms` (Unix ms); the same dedupe key guards it, so a job id enqueued within the
    /// dedupe TTL (delayed or not) is not added again. Returns how many were new.
    pub async fn enqueue_many_at(&self, jobs: &[(Envelope, i64)]) -> Result<usize, QueueError> {
        let script = Script::new(ENQUEUE_MANY_AT);
        let mut added = 0;
        let mut c = self.conn.clone();
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let mut invocation = script.key(&self.keys.delayed);
            invocation.arg(self.settings.dedupe_ttl_s);
            for (e, run_at_ms) in chunk {
                let member = serde_json::to_string(e)
                    .map_err(|e| QueueError::Config(format!("cannot encode envelope: {e}")))?;
                invocation
                    .key(format!("{}{}", self.keys.dedupe_prefix, e.id))
                    .arg(member)
                    .arg(*run_at_ms);
            }
            let n: usize = invocation.invoke_async(&mut c).await?;
            added += n;
        }
        Ok(added)
    }

    /// Put `envelope` in the delayed set to run at `run_at_ms` (Unix ms), bypassing dedupe.
    pub async fn enqueue_at(&self, envelope: &Envelope, run_at_ms: i64) -> Result<(), QueueError> {
        let member = serde_json::to_string(envelope)
            .map_err(|e| QueueError::Config(format!("cannot encode envelope: {e}")))?;
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("ZADD")
            .arg(&self.keys.delayed)
            .arg(run_at_ms)
            .arg(member)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Move due delayed entries into the stream, in chunks. Returns how many moved.
    pub async fn promote_due(&self, now_ms: i64) -> Result<u64, QueueError> {
        let script = Script::new(PROMOTE);
        let mut c = self.conn.clone();
        let mut total = 0u64;
        loop {
            let n: u64 = script
                .key(&self.keys.stream)
                .key(&self.keys.delayed)
                .arg(now_ms)
                .arg(self.settings.promote_chunk)
                .invoke_async(&mut c)
                .await?;
            total += n;
            if n < u64::from(self.settings.promote_chunk) {
                return Ok(total);
            }
        }
    }

    /// Acknowledge and delete a finished entry.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        let _: i64 = Script::new(ACK)
            .key(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(&delivery.entry_id)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// Finish this delivery and schedule attempt + 1 at `run_at_ms`. Returns false when the entry
    /// was no longer ours (claimed by another consumer), in which case nothing is scheduled.
    pub async fn retry_at(&self, delivery: &Delivery, run_at_ms: i64) -> Result<bool, QueueError> {
        let next = Envelope {
            attempt: delivery.envelope.attempt.saturating_add(1),
            ..delivery.envelope.clone()
        };
        let member = serde_json::to_string(&next)
            .map_err(|e| QueueError::Config(format!("cannot encode envelope: {e}")))?;
        let mut c = self.conn.clone();
        let n: i64 = Script::new(RETRY)
            .key(&self.keys.stream)
            .key(&self.keys.delayed)
            .arg(&self.keys.group)
            .arg(&delivery.entry_id)
            .arg(run_at_ms)
            .arg(member)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Give a delivery back unrun (a worker shutting down with jobs it fetched but never started):
    /// the entry is re-added at the stream's tail with the same id, attempt and payload, so
    /// another consumer runs it at once instead of after the orphan window, and no attempt or
    /// delivery is counted. Returns false when the entry was no longer ours (nothing is re-added).
    pub async fn release(&self, delivery: &Delivery) -> Result<bool, QueueError> {
        let mut c = self.conn.clone();
        let n: i64 = Script::new(RELEASE)
            .key(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(&delivery.entry_id)
            .arg(&delivery.envelope.id)
            .arg(delivery.envelope.attempt)
            .arg(&delivery.envelope.payload)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Move a delivery to the dead-letter stream with its error.
    pub async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        let _: i64 = Script::new(DEAD)
            .key(&self.keys.stream)
            .key(&self.keys.dead)
            .arg(&self.keys.group)
            .arg(&delivery.entry_id)
            .arg(&delivery.envelope.id)
            .arg(delivery.envelope.attempt)
            .arg(&delivery.envelope.payload)
            .arg(error)
            .arg(self.settings.dead_maxlen)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// Current sizes (for the queue-depth gauges and `fleetctl`).
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let mut c = self.conn.clone();
        let (len, delayed, dead): (u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.keys.stream)
            .cmd("ZCARD")
            .arg(&self.keys.delayed)
            .cmd("XLEN")
            .arg(&self.keys.dead)
            .query_async(&mut c)
            .await?;
        let pending: Value = redis::cmd("XPENDING")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .query_async(&mut c)
            .await
            .or_else(|e| {
                if is_nogroup(&e) {
                    Ok(Value::Nil)
                } else {
                    Err(e)
                }
            })?;
        let in_flight = match pending {
            Value::Array(items) => match items.first() {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        };
        Ok(QueueDepth {
            waiting: len.saturating_sub(in_flight),
            in_flight,
            delayed,
            dead,
        })
    }

    /// A consumer named `name` (unique per process) with its own connection for blocking reads.
    pub async fn consumer(&self, name: &str) -> Result<Consumer, QueueError> {
        let blocking = self.blocking_connection().await?;
        Ok(Consumer {
            queue: self.clone(),
            name: name.to_string(),
            blocking,
        })
    }

    async fn blocking_connection(&self) -> Result<MultiplexedConnection, QueueError> {
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_millis(
                self.settings.block_ms + self.settings.response_timeout_ms,
            )))
            .set_connection_timeout(Some(Duration::from_millis(
                self.settings.response_timeout_ms,
            )));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?)
    }
}

/// One consumer of the group. Reads block on a dedicated connection, so pickup is immediate.
pub struct Consumer {
    queue: StreamQueue,
    name: String,
    blocking: MultiplexedConnection,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wait up to `block_ms` for up to `max` new entries.
    pub async fn fetch(&mut self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let keys = &self.queue.keys;
        let read = |conn: &mut MultiplexedConnection| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&keys.group)
                .arg(&self.name)
                .arg("COUNT")
                .arg(max.max(1))
                .arg("BLOCK")
                .arg(self.queue.settings.block_ms)
                .arg("STREAMS")
                .arg(&keys.stream)
                .arg(">");
            let mut conn = conn.clone();
            async move { cmd.query_async::<Option<StreamReadReply>>(&mut conn).await }
        };
        let reply = match read(&mut self.blocking).await {
            Ok(r) => r,
            Err(e) if is_nogroup(&e) => {
                self.queue.ensure_group().await?;
                read(&mut self.blocking).await?
            }
            Err(e) => {
                // The dedicated connection may be dead (Redis restarted): make a new one next time.
                if let Ok(fresh) = self.queue.blocking_connection().await {
                    self.blocking = fresh;
                }
                return Err(e.into());
            }
        };
        Ok(reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .map(|entry| Delivery {
                        envelope: envelope_of(&entry),
                        entry_id: entry.id,
                        deliveries: 1,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Keep this consumer's in-flight entries from looking orphaned (resets their idle time
    /// without counting a delivery). Call every `orphan_idle_ms / 3` while they run.
    pub async fn touch(&self, entry_ids: &[String]) -> Result<(), QueueError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let keys = &self.queue.keys;
        let mut c = self.queue.conn.clone();
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&keys.stream)
            .arg(&keys.group)
            .arg(&self.name)
            .arg(0)
            .arg(entry_ids)
            .arg("JUSTID");
        let _: Value = cmd.query_async(&mut c).await?;
        Ok(())
    }

    /// Take over up to `max` entries idle for longer than `orphan_idle_ms` (their consumer died).
    /// Entries already delivered `max_deliveries` times come back as poisoned.
    pub async fn claim_orphans(&self, max: usize) -> Result<Claimed, QueueError> {
        let keys = &self.queue.keys;
        let s = &self.queue.settings;
        let mut c = self.queue.conn.clone();
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&keys.stream)
            .arg(&keys.group)
            .arg("IDLE")
            .arg(s.orphan_idle_ms)
            .arg("-")
            .arg("+")
            .arg(max.max(1))
            .query_async(&mut c)
            .await?;
        let mut out = Claimed::default();
        for p in pending.ids {
            let claimed: redis::streams::StreamClaimReply = redis::cmd("XCLAIM")
                .arg(&keys.stream)
                .arg(&keys.group)
                .arg(&self.name)
                .arg(s.orphan_idle_ms)
                .arg(&p.id)
                .query_async(&mut c)
                .await?;
            // Empty: another consumer claimed it first, or it was acked meanwhile.
            for entry in claimed.ids {
                let delivery = Delivery {
                    envelope: envelope_of(&entry),
                    entry_id: entry.id,
                    deliveries: u32::try_from(p.times_delivered)
                        .unwrap_or(u32::MAX)
                        .saturating_add(1),
                };
                if delivery.deliveries > s.max_deliveries {
                    out.poisoned.push(delivery);
                } else {
                    out.deliveries.push(delivery);
                }
            }
        }
        Ok(out)
    }
}
