//! tradefleet: the library behind the scheduler, worker and fleetctl binaries.
//!
//! Layers, bottom up: `domain` types; `exchange` (one trait, one folder per venue, PAPER);
//! `bot` (the exchange-agnostic trading cycle); `store` (SeaORM), `lock` (Redis), `vault`
//! (encrypted credentials), `queue` (job types); `config` and `telemetry` for the binaries.

pub mod bot;
pub mod clock;
pub mod config;
pub mod domain;
pub mod exchange;
pub mod fleet;
pub mod lock;
pub mod queue;
pub mod store;
pub mod telemetry;
pub mod vault;
