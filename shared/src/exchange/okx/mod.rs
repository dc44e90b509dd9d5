//! OKX V5 SWAP adapter (not built yet: the registry reports it as unavailable).

use super::registry::{VenueDescriptor, not_yet_available};

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "okx",
    display_name: "OKX V5 SWAP",
    has_testnet: true,
    needs_passphrase: true,
    trades_in_contracts: false,
    notes: "adapter not available yet",
    build: not_yet_available,
};
