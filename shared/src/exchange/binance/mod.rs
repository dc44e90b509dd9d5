//! Binance USDⓈ-M adapter (not built yet: the registry reports it as unavailable).

use super::registry::{VenueDescriptor, not_yet_available};

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "binance",
    display_name: "Binance USDⓈ-M",
    has_testnet: true,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "adapter not available yet",
    build: not_yet_available,
};
