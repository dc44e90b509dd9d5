//! HTX USDT-M linear swaps adapter (not built yet: the registry reports it as unavailable).

use super::registry::{VenueDescriptor, not_yet_available};

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "htx",
    display_name: "HTX USDT-M linear swaps",
    has_testnet: false,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "adapter not available yet",
    build: not_yet_available,
};
