//! Explicit rounding to tick and step sizes, and base-coin <-> contract conversion.
//!
//! Every rounding says its direction. Quantities round toward zero (never more than asked);
//! prices round in the direction the caller names, chosen to be the safe one for the order.

use rust_decimal::{Decimal, RoundingStrategy};

use super::error::ExchangeError;
use crate::domain::Instrument;

/// Which way a price is allowed to move when it is put on the tick grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Down,
    Up,
    Nearest,
}

/// `value` on the grid of `increment` in the given direction. A zero or negative increment is
/// treated as "no grid" and returns `value` unchanged.
pub fn round_to_increment(value: Decimal, increment: Decimal, direction: Round) -> Decimal {
    if increment <= Decimal::ZERO {
        return value;
    }
    let steps = value / increment;
    let steps = match direction {
        Round::Down => steps.floor(),
        Round::Up => steps.ceil(),
        Round::Nearest => steps.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero),
    };
    (steps * increment).normalize()
}

/// A base-coin quantity rounded down to the instrument's step.
pub fn round_quantity(quantity: Decimal, instrument: &Instrument) -> Decimal {
    round_to_increment(quantity.abs(), instrument.step_size, Round::Down)
}

/// A price on the instrument's tick grid.
pub fn round_price(price: Decimal, instrument: &Instrument, direction: Round) -> Decimal {
    round_to_increment(price, instrument.tick_size, direction)
}

/// Round `quantity` down to the step and check it against the minimum quantity and (when `price`
/// is known) the minimum notional. Returns the rounded quantity.
pub fn checked_quantity(
    venue: &'static str,
    instrument: &Instrument,
    quantity: Decimal,
    price: Option<Decimal>,
) -> Result<Decimal, ExchangeError> {
    let rounded = round_quantity(quantity, instrument);
    if rounded <= Decimal::ZERO || rounded < instrument.min_quantity {
        return Err(ExchangeError::BelowMinimum {
            venue,
            what: "quantity",
            value: rounded.to_string(),
            minimum: instrument.min_quantity.to_string(),
        });
    }
    if let Some(price) = price
        && instrument.min_notional > Decimal::ZERO
        && rounded * price < instrument.min_notional
    {
        return Err(ExchangeError::BelowMinimum {
            venue,
            what: "notional",
            value: (rounded * price).normalize().to_string(),
            minimum: instrument.min_notional.to_string(),
        });
    }
    Ok(rounded)
}

/// Base coin -> contracts. Errors when the quantity is not a whole number of contracts, so an
/// adapter never silently trades a different size than the caller asked for.
pub fn base_to_contracts(
    venue: &'static str,
    quantity: Decimal,
    contract_size: Decimal,
) -> Result<Decimal, ExchangeError> {
    if contract_size <= Decimal::ZERO {
        return Err(ExchangeError::Config {
            venue,
            message: format!("contract size must be positive, got {contract_size}"),
        });
    }
    let contracts = quantity / contract_size;
    if contracts.fract() != Decimal::ZERO {
        return Err(ExchangeError::InvalidOrder {
            venue,
            message: format!(
                "quantity {quantity} is not a whole number of contracts of {contract_size}"
            ),
        });
    }
    Ok(contracts.normalize())
}

/// Contracts -> base coin.
pub fn contracts_to_base(contracts: Decimal, contract_size: Decimal) -> Decimal {
    (contracts * contract_size).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn instrument() -> Instrument {
        Instrument {
            symbol: "BTC/USDT:USDT".parse().unwrap(),
            venue_symbol: "BTCUSDT".into(),
            tick_size: dec!(0.1),
            step_size: dec!(0.001),
            min_quantity: dec!(0.001),
            min_notional: dec!(5),
            contract_size: dec!(1),
            max_leverage: dec!(125),
        }
    }

    #[test]
    fn rounding_directions() {
        assert_eq!(
            round_to_increment(dec!(100.05), dec!(0.1), Round::Down),
            dec!(100)
        );
        assert_eq!(
            round_to_increment(dec!(100.01), dec!(0.1), Round::Up),
            dec!(100.1)
        );
        assert_eq!(
            round_to_increment(dec!(100.05), dec!(0.1), Round::Nearest),
            dec!(100.1)
        );
        assert_eq!(
            round_to_increment(dec!(7), dec!(0), Round::Down),
            dec!(7),
            "no grid"
        );
    }

    #[test]
    fn minimums_are_typed_errors() {
        let i = instrument();
        assert!(matches!(
            checked_quantity("t", &i, dec!(0.0009), None),
            Err(ExchangeError::BelowMinimum {
                what: "quantity",
                ..
            })
        ));
        assert!(matches!(
            checked_quantity("t", &i, dec!(0.001), Some(dec!(1000))),
            Err(ExchangeError::BelowMinimum {
                what: "notional",
                ..
            })
        ));
        assert_eq!(
            checked_quantity("t", &i, dec!(0.0129), Some(dec!(50000))).unwrap(),
            dec!(0.012)
        );
    }

    #[test]
    fn non_integer_contracts_are_rejected() {
        assert_eq!(
            base_to_contracts("t", dec!(0.1), dec!(0.001)).unwrap(),
            dec!(100)
        );
        assert!(base_to_contracts("t", dec!(0.0015), dec!(0.001)).is_err());
        assert!(base_to_contracts("t", dec!(1), dec!(0)).is_err());
    }

    fn decimal(max_units: i64, scale: u32) -> impl Strategy<Value = Decimal> {
        (0..max_units).prop_map(move |u| Decimal::new(u, scale))
    }

    proptest! {
        #[test]
        fn rounded_quantity_is_on_grid_and_never_larger(q in decimal(10_000_000_000, 8), step_units in 1i64..10_000, scale in 0u32..8) {
            let step = Decimal::new(step_units, scale);
            let r = round_to_increment(q, step, Round::Down);
            prop_assert!(r <= q);
            prop_assert!(q - r < step);
            prop_assert_eq!((r / step).fract(), Decimal::ZERO);
        }

        #[test]
        fn price_rounding_brackets_the_input(p in decimal(10_000_000_000, 6), tick_units in 1i64..1000, scale in 0u32..6) {
            let tick = Decimal::new(tick_units, scale);
            let down = round_to_increment(p, tick, Round::Down);
            let up = round_to_increment(p, tick, Round::Up);
            let near = round_to_increment(p, tick, Round::Nearest);
            prop_assert!(down <= p && p <= up);
            prop_assert!(up - down <= tick);
            prop_assert!(near == down || near == up);
        }

        #[test]
        fn contracts_round_trip(contracts in 1i64..1_000_000, cs_units in 1i64..1000, scale in 0u32..6) {
            let cs = Decimal::new(cs_units, scale);
            let base = contracts_to_base(Decimal::from(contracts), cs);
            let back = base_to_contracts("t", base, cs).unwrap();
            prop_assert_eq!(back, Decimal::from(contracts));
        }
    }
}
