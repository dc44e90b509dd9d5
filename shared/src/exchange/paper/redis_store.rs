//! A [`PaperStore`] in Redis, so worker processes on several machines share one simulated
//! account per subscription: each account is one JSON string under the fleet's key prefix.

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::VENUE;
use super::state::{PaperState, PaperStore};
use crate::exchange::{ExchangeError, ExchangeResult};

/// Paper accounts kept as JSON at `{prefix}:paper:account:{account}`. The caller serialises
/// load -> simulate -> save of one account (the worker's subscription lock); the store does no
/// compare-and-swap.
#[derive(Clone)]
pub struct RedisPaperStore {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisPaperStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPaperStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisPaperStore {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
        }
    }

    /// The Redis key of `account`.
    pub fn key(&self, account: &str) -> String {
        format!("{}:paper:account:{account}", self.prefix)
    }
}

fn unavailable(what: &str, e: &redis::RedisError) -> ExchangeError {
    ExchangeError::Unavailable {
        venue: VENUE,
        message: format!("paper state in redis: cannot {what}: {e}"),
    }
}

#[async_trait]
impl PaperStore for RedisPaperStore {
    async fn load(&self, account: &str) -> ExchangeResult<Option<PaperState>> {
        let mut c = self.conn.clone();
        let text: Option<String> = redis::cmd("GET")
            .arg(self.key(account))
            .query_async(&mut c)
            .await
            .map_err(|e| unavailable("read", &e))?;
        match text {
            None => Ok(None),
            Some(text) => {
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| ExchangeError::Config {
                        venue: VENUE,
                        message: format!(
                            "paper state of account {account} in redis is not valid: {e}"
                        ),
                    })
            }
        }
    }

    async fn save(&self, account: &str, state: &PaperState) -> ExchangeResult<()> {
        let text = serde_json::to_string(state).map_err(|e| ExchangeError::Config {
            venue: VENUE,
            message: format!("cannot serialize paper state: {e}"),
        })?;
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(account))
            .arg(text)
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| unavailable("write", &e))
    }
}
