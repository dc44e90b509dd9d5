//! Bybit V5 linear adapter (not built yet: the registry reports it as unavailable).

use super::registry::{VenueDescriptor, not_yet_available};

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "bybit",
    display_name: "Bybit V5 linear",
    has_testnet: true,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "adapter not available yet",
    build: not_yet_available,
};
