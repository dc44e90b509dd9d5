//! The whole simulated account as one serializable value, and the `PaperStore` it lives in, so
//! several worker processes can run cycles for the same paper account one after another.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::domain::{Order, Side};
use crate::exchange::{ExchangeError, ExchangeResult};

use super::VENUE;

/// Version of the state layout; bumped when a field changes meaning.
pub const STATE_VERSION: u32 = 1;

/// One simulated account: balances, positions, every order it ever placed and every fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperState {
    pub version: u32,
    pub account: String,
    /// Base candles ending at or before this instant (Unix ms) have been simulated.
    pub processed_until_ms: i64,
    pub initial_balance: Decimal,
    /// Initial balance + realized PnL - fees.
    pub wallet_balance: Decimal,
    pub realized_pnl: Decimal,
    /// Trading fees plus margin forfeited in liquidations.
    pub fees_paid: Decimal,
    /// Leverage per symbol (unified symbol text) set through `set_leverage`.
    pub leverage: BTreeMap<String, u32>,
    /// Net position per symbol (unified symbol text).
    pub positions: BTreeMap<String, PaperPosition>,
    /// Every order in placement order; `exchange_order_id` is `P<sequence>`.
    pub orders: Vec<Order>,
    pub fills: Vec<PaperFill>,
    pub next_order_seq: u64,
}

/// A one-way (net) position: positive quantity long, negative short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperPosition {
    pub quantity: Decimal,
    pub entry_price: Decimal,
}

/// How a fill took liquidity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liquidity {
    Maker,
    Taker,
    Liquidation,
}

/// One execution against the simulated market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperFill {
    pub time_ms: i64,
    pub symbol: String,
    /// `None` for liquidations.
    pub client_order_id: Option<String>,
    pub side: Side,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub realized_pnl: Decimal,
    pub liquidity: Liquidity,
}

/// Where paper accounts are kept between calls. Implementations map their failures to
/// `ExchangeError::Unavailable` (retryable) or `ExchangeError::Config` (fix the setup). Callers
/// serialise the load -> simulate -> save sequence of one account (the worker's subscription lock
/// does this across processes; `PaperExchange` does it inside one process).
#[async_trait]
pub trait PaperStore: Send + Sync + fmt::Debug {
    async fn load(&self, account: &str) -> ExchangeResult<Option<PaperState>>;
    async fn save(&self, account: &str, state: &PaperState) -> ExchangeResult<()>;
}

/// Accounts kept in this process only (the default).
#[derive(Debug, Default)]
pub struct MemoryPaperStore {
    accounts: Mutex<HashMap<String, PaperState>>,
}

#[async_trait]
impl PaperStore for MemoryPaperStore {
    async fn load(&self, account: &str) -> ExchangeResult<Option<PaperState>> {
        Ok(self.accounts.lock().await.get(account).cloned())
    }
    async fn save(&self, account: &str, state: &PaperState) -> ExchangeResult<()> {
        self.accounts
            .lock()
            .await
            .insert(account.to_string(), state.clone());
        Ok(())
    }
}

/// Accounts kept in one JSON file (`{ "account": state, ... }`), rewritten atomically (temp
/// file + rename) on every save. Meant for `fleetctl` and demos, not for concurrent processes.
#[derive(Debug, Clone)]
pub struct FilePaperStore {
    path: PathBuf,
}

impl FilePaperStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    async fn read_all(&self) -> ExchangeResult<BTreeMap<String, PaperState>> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(BTreeMap::new()),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ExchangeError::Config {
                venue: VENUE,
                message: format!(
                    "paper state file {} is not a valid state: {e}",
                    self.path.display()
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(self.io_error("read", &e)),
        }
    }

    fn io_error(&self, what: &str, e: &std::io::Error) -> ExchangeError {
        ExchangeError::Unavailable {
            venue: VENUE,
            message: format!(
                "cannot {what} paper state file {}: {e}",
                self.path.display()
            ),
        }
    }
}

#[async_trait]
impl PaperStore for FilePaperStore {
    async fn load(&self, account: &str) -> ExchangeResult<Option<PaperState>> {
        Ok(self.read_all().await?.remove(account))
    }

    async fn save(&self, account: &str, state: &PaperState) -> ExchangeResult<()> {
        let mut all = self.read_all().await?;
        all.insert(account.to_string(), state.clone());
        let text = serde_json::to_vec_pretty(&all).map_err(|e| ExchangeError::Config {
            venue: VENUE,
            message: format!("cannot serialize paper state: {e}"),
        })?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        tokio::fs::write(&tmp, text)
            .await
            .map_err(|e| self.io_error("write", &e))?;
        tokio::fs::rename(&tmp, &self.path)
            .await
            .map_err(|e| self.io_error("replace", &e))
    }
}
