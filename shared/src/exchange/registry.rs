//! The venue registry: one descriptor per venue. Adding a venue = one folder + one line in `VENUES`.

use std::sync::Arc;

use serde::Serialize;

use super::http::HttpSettings;
use super::{Credentials, Exchange, ExchangeError, ExchangeResult};
use crate::clock::{Clock, SystemClock};

/// Everything needed to build one venue instance.
#[derive(Debug, Clone)]
pub struct VenueParams {
    /// Use the venue's testnet / demo environment.
    pub testnet: bool,
    /// Override the base URL (testnet, proxy, local mock).
    pub base_url: Option<String>,
    pub credentials: Option<Credentials>,
    pub http: HttpSettings,
    /// Settings of the simulated venue; ignored by real venues.
    pub paper: super::paper::PaperSettings,
    /// Time source; real venues sign with wall-clock time, PAPER replays data by it.
    pub clock: Arc<dyn Clock>,
}

impl Default for VenueParams {
    fn default() -> Self {
        Self {
            testnet: false,
            base_url: None,
            credentials: None,
            http: HttpSettings::default(),
            paper: super::paper::PaperSettings::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// What a venue is and can do, and how to build it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VenueDescriptor {
    /// Registry name, used in config, the CLI and the database (`binance`).
    pub name: &'static str,
    pub display_name: &'static str,
    pub has_testnet: bool,
    pub needs_passphrase: bool,
    /// Base coin (`false`) or contracts of a contract size (`true`) on the wire.
    pub trades_in_contracts: bool,
    /// Free-text capability notes shown by `fleetctl exchanges`.
    pub notes: &'static str,
    #[serde(skip)]
    pub build: fn(&VenueParams) -> ExchangeResult<Arc<dyn Exchange>>,
}

static VENUES: &[VenueDescriptor] = &[
    super::paper::DESCRIPTOR,
    super::binance::DESCRIPTOR,
    super::bybit::DESCRIPTOR,
    super::okx::DESCRIPTOR,
    super::bitget::DESCRIPTOR,
    super::htx::DESCRIPTOR,
    super::kraken::DESCRIPTOR,
];

/// Every supported venue.
pub fn venues() -> &'static [VenueDescriptor] {
    VENUES
}

/// The descriptor of `name`, or a clear error listing the supported ones.
pub fn find_venue(name: &str) -> ExchangeResult<&'static VenueDescriptor> {
    VENUES
        .iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ExchangeError::Config {
            venue: "registry",
            message: format!(
                "unknown exchange {name:?}; supported: {}",
                VENUES.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
            ),
        })
}

/// Build the venue `name` with `params`.
pub fn build_exchange(name: &str, params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    let venue = find_venue(name)?;
    if params.testnet && !venue.has_testnet {
        return Err(ExchangeError::Config {
            venue: venue.name,
            message: "this venue has no testnet/demo environment".into(),
        });
    }
    (venue.build)(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_exchange_names_the_supported_ones() {
        let err = find_venue("mtgox").unwrap_err().to_string();
        assert!(err.contains("unknown exchange \"mtgox\""), "{err}");
        assert!(err.contains("binance") && err.contains("paper"), "{err}");
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = venues().iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), venues().len());
    }
}
