//! PAPER: a simulated futures venue over real or replayed candles (not built yet).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::registry::{VenueDescriptor, not_yet_available};

/// Settings of the simulated venue (config section `paper`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaperSettings {
    /// Candle CSV (`open_time,open,high,low,close,volume`) replayed as the market; the bundled
    /// XRP/USDT 5m data when unset.
    pub csv: Option<std::path::PathBuf>,
    /// Starting equity in the settle asset.
    pub initial_balance: Decimal,
    /// Taker fee as a fraction (0.0005 = 5 bp).
    pub taker_fee: Decimal,
    /// Maker fee as a fraction.
    pub maker_fee: Decimal,
    /// Market-order slippage in basis points.
    pub slippage_bps: Decimal,
    /// Seed of the simulator's randomness (deterministic for a given seed and data).
    pub seed: u64,
    pub max_leverage: u32,
}

impl Default for PaperSettings {
    fn default() -> Self {
        Self {
            csv: None,
            initial_balance: Decimal::from(10_000),
            taker_fee: Decimal::new(5, 4),
            maker_fee: Decimal::new(2, 4),
            slippage_bps: Decimal::from(2),
            seed: 42,
            max_leverage: 20,
        }
    }
}

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "paper",
    display_name: "PAPER (simulated fills on replayed market data)",
    has_testnet: false,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "adapter not available yet",
    build: not_yet_available,
};
