//! Unified symbol <-> Kraken Futures symbol. The fleet trades Kraken's linear multi-collateral
//! perpetuals, `PF_{BASE}USD`: quoted and settled in USD, Bitcoin spelled `XBT`. So
//! `BTC/USD:USD` <-> `PF_XBTUSD`, `ETH/USD:USD` <-> `PF_ETHUSD`. Anything else (USDT-quoted,
//! inverse `PI_*`, dated `FI_*`) is not a Kraken Futures linear perpetual and is refused here;
//! the adapter then checks the result against `/instruments`.

use super::VENUE;
use crate::domain::Symbol;
use crate::exchange::ExchangeError;

/// Unified base -> Kraken base.
fn venue_base(base: &str) -> &str {
    match base {
        "BTC" => "XBT",
        other => other,
    }
}

/// Kraken base -> unified base.
fn unified_base(base: &str) -> &str {
    match base {
        "XBT" => "BTC",
        other => other,
    }
}

/// `BTC/USD:USD` -> `PF_XBTUSD`, before checking that the venue lists it.
pub(super) fn to_venue(symbol: &Symbol) -> Result<String, ExchangeError> {
    if symbol.quote() != "USD" || symbol.settle() != "USD" {
        return Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: "Kraken Futures linear perpetuals are quoted and settled in USD: use BASE/USD:USD (e.g. BTC/USD:USD)"
                .into(),
        });
    }
    Ok(format!("PF_{}USD", venue_base(symbol.base())))
}

/// `PF_XBTUSD` (any case) -> `BTC/USD:USD`; `None` for anything that is not a `PF_*USD` perpetual.
pub(super) fn from_venue(venue_symbol: &str) -> Option<Symbol> {
    let upper = venue_symbol.to_ascii_uppercase();
    let base = upper.strip_prefix("PF_")?.strip_suffix("USD")?;
    if base.is_empty() {
        return None;
    }
    Symbol::new(unified_base(base), "USD", "USD").ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn btc_is_xbt_and_others_pass_through() {
        let btc: Symbol = "BTC/USD:USD".parse().unwrap();
        assert_eq!(to_venue(&btc).unwrap(), "PF_XBTUSD");
        let eth: Symbol = "ETH/USD:USD".parse().unwrap();
        assert_eq!(to_venue(&eth).unwrap(), "PF_ETHUSD");
        assert_eq!(from_venue("PF_XBTUSD"), Some(btc.clone()));
        assert_eq!(from_venue("pf_xbtusd"), Some(btc));
        assert_eq!(
            from_venue("PF_DEFIUSD").unwrap().to_string(),
            "DEFI/USD:USD"
        );
    }

    #[test]
    fn other_markets_are_refused() {
        let usdt: Symbol = "BTC/USDT:USDT".parse().unwrap();
        assert_eq!(to_venue(&usdt).unwrap_err().kind(), "unknown_symbol");
        for s in [
            "PI_XBTUSD",
            "FI_XBTUSD_201225",
            "PF_USD",
            "PF_XBTEUR",
            "in_xbtusd",
        ] {
            assert_eq!(from_venue(s), None, "{s}");
        }
    }
}
