//! Typed, layered configuration: defaults -> optional TOML file -> `DATABASE_URL` / `REDIS_URL`
//! -> `TRADEFLEET__SECTION__KEY` environment variables. Unknown keys and bad values fail at start-up
//! with the key that is wrong.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::clock::{ClockMode, MAX_REPLAY_SPEED};
use crate::exchange::http::HttpSettings;
use crate::exchange::paper::PaperSettings;

/// A configuration that cannot be used, with the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub scheduler: SchedulerConfig,
    pub worker: WorkerConfig,
    pub exchange: ExchangeConfig,
    pub paper: PaperSettings,
    pub vault: VaultConfig,
    pub telemetry: TelemetryConfig,
    pub llm: LlmConfig,
    pub clock: ClockConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://...` in production; the embedded default is a SQLite file under `./data/`.
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
    /// A pooled connection idle for at least this long is pinged before it is handed out (a
    /// connection in steady use is not: a ping per checkout would double the round trips of
    /// every statement). `0` pings on every checkout.
    pub ping_idle_after_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/tradefleet.sqlite?mode=rwc".into(),
            max_connections: 10,
            connect_timeout_ms: 5_000,
            ping_idle_after_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key the fleet writes, so several fleets (or tests) share one Redis.
    pub key_prefix: String,
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "tf".into(),
            response_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// How often due subscriptions are read.
    pub tick_ms: u64,
    /// Subscriptions read and enqueued per transaction.
    pub batch_size: u32,
    /// Due batches written at once on PostgreSQL, each in its own transaction; SQLite always
    /// writes one at a time (it has one writer).
    pub parallel_batches: u32,
    /// Leader lease; a standby takes over within this time after the leader dies.
    pub lease_ttl_ms: u64,
    /// Spread each subscription's start over up to this many ms after its slot (0 = off).
    pub jitter_ms: u64,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: String,
    /// A run still `enqueued` this long gets its job enqueued again (its job was lost with
    /// Redis); 0 = 2 x `tick_ms` + 30 s.
    pub reconcile_after_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1_000,
            batch_size: 1_000,
            parallel_batches: 4,
            lease_ttl_ms: 10_000,
            jitter_ms: 0,
            listen: "127.0.0.1:9101".into(),
            reconcile_after_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Cycles run at once by one worker process.
    pub concurrency: u32,
    /// TTL of the per-subscription lock; renewed every TTL/3 while the cycle runs.
    pub lock_ttl_ms: u64,
    /// How long SIGTERM waits for in-flight cycles.
    pub shutdown_deadline_ms: u64,
    /// Attempts of a job before it goes to dead letters.
    pub max_attempts: u32,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: String,
    /// Worker id; `{host}-{pid}-{random}` when unset, so no two processes share one.
    pub id: Option<String>,
    /// A job whose worker stopped refreshing it for this long (the process died) is claimed by
    /// another worker.
    pub orphan_idle_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            lock_ttl_ms: 30_000,
            shutdown_deadline_ms: 30_000,
            max_attempts: 5,
            listen: "127.0.0.1:9102".into(),
            id: None,
            orphan_idle_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    pub http: HttpSettings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// `id:base64key` pairs, comma-separated, newest last. Never logged.
    #[serde(skip_serializing)]
    pub keys: Option<SecretString>,
    /// A file holding the same (e.g. a mounted Kubernetes secret).
    pub keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` filter directive (`info`, `tradefleet=debug,info`).
    pub log_level: String,
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint; also read from `OTEL_EXPORTER_OTLP_ENDPOINT`. Export is off when unset.
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            service_name: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Ask an LLM during analysis (bots of kind LLM, sizing method `llm_hybrid`).
    pub enabled: bool,
    /// OpenAI-compatible chat-completions base URL.
    pub base_url: String,
    pub model: String,
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    pub timeout_ms: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key: None,
            timeout_ms: 20_000,
        }
    }
}

/// The clock of the scheduler and the workers (`[clock]`): wall time, or a replay of simulated
/// time `replay_start + (wall_now - replay_origin) * replay_speed` that every process given the
/// same values agrees on. Lock TTLs and the leader lease stay wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// `system` or `replay`.
    pub mode: ClockMode,
    /// Simulated time at `replay_origin` (RFC 3339); required for `replay`.
    pub replay_start: Option<chrono::DateTime<chrono::Utc>>,
    /// Wall-clock instant the replay starts from (RFC 3339); the process start when unset, so
    /// give it explicitly to keep several processes in step.
    pub replay_origin: Option<chrono::DateTime<chrono::Utc>>,
    /// Simulated seconds per wall second, a whole number >= 1.
    pub replay_speed: u32,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            mode: ClockMode::System,
            replay_start: None,
            replay_origin: None,
            replay_speed: 1,
        }
    }
}

/// Where configuration comes from; the environment is passed in so tests need not mutate it.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    /// Environment variables to apply (usually `std::env::vars()`).
    pub env: Vec<(String, String)>,
}

impl ConfigSources {
    /// The file given on the command line and the process environment.
    pub fn from_process(file: Option<&Path>) -> Self {
        Self {
            file: file.map(Path::to_path_buf),
            env: std::env::vars().collect(),
        }
    }
}

impl Config {
    /// Load and validate. Errors name the offending key (and file).
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &sources.file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(file));
        }
        let get = |name: &str| {
            sources
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if let Some(url) = get("DATABASE_URL") {
            fig = fig.merge(Serialized::default("database.url", url));
        }
        if let Some(url) = get("REDIS_URL") {
            fig = fig.merge(Serialized::default("redis.url", url));
        }
        if let Some(ep) = get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|s| !s.is_empty()) {
            fig = fig.merge(Serialized::default("telemetry.otlp_endpoint", ep));
        }
        // TRADEFLEET__SECTION__KEY; single-underscore TRADEFLEET_* variables (API keys for
        // one-off CLI use) are not configuration and are left alone.
        for (key, value) in sources
            .env
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("TRADEFLEET__").map(|rest| (rest, v)))
        {
            let path = key.to_ascii_lowercase().replace("__", ".");
            if path.is_empty() {
                continue;
            }
            let parsed = parse_env_value(value);
            fig = fig.merge(Serialized::default(&path, parsed));
        }
        let config: Config = fig.extract().map_err(|e| {
            ConfigError(
                e.into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if !(self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://")
            || self.database.url.starts_with("sqlite:"))
        {
            return bad(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            );
        }
        if !(self.redis.url.starts_with("redis://") || self.redis.url.starts_with("rediss://")) {
            return bad("redis.url", "must start with redis:// or rediss://");
        }
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency", "must be at least 1");
        }
        if self.worker.lock_ttl_ms < 1_000 {
            return bad("worker.lock_ttl_ms", "must be at least 1000");
        }
        if self.worker.orphan_idle_ms < 300 {
            return bad("worker.orphan_idle_ms", "must be at least 300");
        }
        if self.worker.max_attempts == 0 {
            return bad("worker.max_attempts", "must be at least 1");
        }
        if self.scheduler.tick_ms == 0 {
            return bad("scheduler.tick_ms", "must be at least 1");
        }
        if self.scheduler.batch_size == 0 {
            return bad("scheduler.batch_size", "must be at least 1");
        }
        if !(1..=64).contains(&self.scheduler.parallel_batches) {
            return bad("scheduler.parallel_batches", "must be between 1 and 64");
        }
        if self.scheduler.lease_ttl_ms < 1_000 {
            return bad("scheduler.lease_ttl_ms", "must be at least 1000");
        }
        if !(1..=MAX_REPLAY_SPEED).contains(&self.clock.replay_speed) {
            return bad(
                "clock.replay_speed",
                &format!("must be a whole number from 1 to {MAX_REPLAY_SPEED}"),
            );
        }
        if self.clock.mode == ClockMode::Replay && self.clock.replay_start.is_none() {
            return bad(
                "clock.replay_start",
                "required when clock.mode is \"replay\" (RFC 3339, e.g. 2021-11-17T12:00:00Z)",
            );
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(char::is_whitespace) {
            return bad("redis.key_prefix", "must be non-empty without spaces");
        }
        Ok(())
    }
}

/// Environment values are typed like TOML scalars: integers, floats and booleans as such,
/// everything else as a string.
fn parse_env_value(value: &str) -> figment::value::Value {
    use figment::value::Value;
    let t = value.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    if t.contains('.')
        && let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        // Keep the text too: decimals (money) deserialize from strings exactly.
        return Value::from(t.to_string());
    }
    match t {
        "true" => Value::from(true),
        "false" => Value::from(false),
        _ => Value::from(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::io::Write;

    fn load_toml(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Config::load(&ConfigSources {
            file: Some(f.path().to_path_buf()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn defaults_serve_the_embedded_mode() {
        let c = Config::load(&ConfigSources::default()).unwrap();
        assert!(c.database.url.starts_with("sqlite://./data/"));
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_toml("[worker]\nconcurency = 4\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurency"), "{err}");
        assert!(err.contains("worker"), "{err}");
    }

    #[test]
    fn unknown_section_is_named() {
        let err = load_toml("[wrker]\nconcurrency = 4\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrker"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = load_toml("[worker]\nconcurrency = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.concurrency"), "{err}");
        let err = load_toml("[worker]\nconcurrency = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.concurrency"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_conventional_urls_apply() {
        let c = load_toml(
            "[worker]\nconcurrency = 4\n",
            &[
                ("TRADEFLEET__WORKER__CONCURRENCY", "9"),
                ("DATABASE_URL", "postgres://localhost/x"),
                ("TRADEFLEET__PAPER__TAKER_FEE", "0.0004"),
                ("TRADEFLEET__VAULT__KEYS", "k1:AAAA"),
                ("TRADEFLEET_API_KEY", "not-config"),
            ],
        )
        .unwrap();
        assert_eq!(c.worker.concurrency, 9);
        assert_eq!(c.database.url, "postgres://localhost/x");
        assert_eq!(c.paper.taker_fee.to_string(), "0.0004");
        assert_eq!(c.vault.keys.unwrap().expose_secret(), "k1:AAAA");
    }

    #[test]
    fn bad_env_value_is_named() {
        let err = Config::load(&ConfigSources {
            file: None,
            env: vec![("TRADEFLEET__SCHEDULER__TICK_MS".into(), "soon".into())],
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("scheduler.tick_ms"), "{err}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = Config::load(&ConfigSources {
            file: None,
            env: vec![("TRADEFLEET__LLM__API_KEY".into(), "sk-very-secret".into())],
        })
        .unwrap();
        assert!(!format!("{c:?}").contains("sk-very-secret"));
    }

    #[test]
    fn clock_defaults_to_the_system_clock() {
        let c = Config::load(&ConfigSources::default()).unwrap();
        assert_eq!(c.clock, ClockConfig::default());
        assert_eq!(c.clock.mode, ClockMode::System);
    }

    #[test]
    fn replay_clock_from_env() {
        let c = Config::load(&ConfigSources {
            file: None,
            env: vec![
                ("TRADEFLEET__CLOCK__MODE".into(), "replay".into()),
                (
                    "TRADEFLEET__CLOCK__REPLAY_START".into(),
                    "2021-11-17T12:00:00Z".into(),
                ),
                (
                    "TRADEFLEET__CLOCK__REPLAY_ORIGIN".into(),
                    "2026-01-02T03:04:05.250Z".into(),
                ),
                ("TRADEFLEET__CLOCK__REPLAY_SPEED".into(), "600".into()),
            ],
        })
        .unwrap();
        assert_eq!(c.clock.mode, ClockMode::Replay);
        assert_eq!(
            c.clock.replay_start.unwrap().to_rfc3339(),
            "2021-11-17T12:00:00+00:00"
        );
        assert_eq!(
            c.clock.replay_origin.unwrap().timestamp_millis(),
            chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.250Z")
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(c.clock.replay_speed, 600);
    }

    #[test]
    fn bad_clock_values_are_named() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("clock.mode", &[("TRADEFLEET__CLOCK__MODE", "warp")]),
            (
                "clock.replay_start",
                &[("TRADEFLEET__CLOCK__MODE", "replay")],
            ),
            (
                "clock.replay_start",
                &[
                    ("TRADEFLEET__CLOCK__MODE", "replay"),
                    ("TRADEFLEET__CLOCK__REPLAY_START", "yesterday"),
                ],
            ),
            (
                "clock.replay_origin",
                &[("TRADEFLEET__CLOCK__REPLAY_ORIGIN", "2021-13-01T00:00:00Z")],
            ),
            (
                "clock.replay_speed",
                &[("TRADEFLEET__CLOCK__REPLAY_SPEED", "0")],
            ),
            (
                "clock.replay_speed",
                &[("TRADEFLEET__CLOCK__REPLAY_SPEED", "2.5")],
            ),
            (
                "clock.replay_speed",
                &[("TRADEFLEET__CLOCK__REPLAY_SPEED", "-3")],
            ),
        ];
        for (key, env) in cases {
            let err = Config::load(&ConfigSources {
                file: None,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(key), "{env:?}: {err}");
        }
        let err = load_toml("[clock]\nreplay_sped = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("replay_sped"), "{err}");
    }
}
