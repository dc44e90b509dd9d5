//! Circuit breakers: daily loss, maximum drawdown and consecutive losses. A tripped breaker pauses
//! the subscription with a recorded reason; an operator resumes it.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::sizing::{CapitalConfig, CapitalConfigError};

/// A subscription's risk config (the `risk_config` JSON column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    pub capital: CapitalConfig,
    /// Pause when today's loss reaches this % of the day's starting equity (0 = off).
    pub daily_loss_limit_pct: Decimal,
    /// Pause when equity falls this % below its peak (0 = off).
    pub max_drawdown_pct: Decimal,
    /// Pause after this many losing trades in a row (0 = off).
    pub max_consecutive_losses: u32,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            capital: CapitalConfig::default(),
            daily_loss_limit_pct: Decimal::from(5),
            max_drawdown_pct: Decimal::from(20),
            max_consecutive_losses: 5,
        }
    }
}

impl RiskConfig {
    pub fn validate(&self) -> Result<(), CapitalConfigError> {
        self.capital.validate()?;
        for (field, v) in [
            ("daily_loss_limit_pct", self.daily_loss_limit_pct),
            ("max_drawdown_pct", self.max_drawdown_pct),
        ] {
            if v < Decimal::ZERO || v > Decimal::ONE_HUNDRED {
                return Err(CapitalConfigError {
                    field,
                    reason: format!("{v} is outside 0..=100"),
                });
            }
        }
        Ok(())
    }
}

/// Which breaker tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    DailyLoss,
    MaxDrawdown,
    ConsecutiveLosses,
}

impl Breaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Breaker::DailyLoss => "daily_loss",
            Breaker::MaxDrawdown => "max_drawdown",
            Breaker::ConsecutiveLosses => "consecutive_losses",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerTrip {
    pub breaker: Breaker,
    /// The reason recorded on the paused subscription.
    pub reason: String,
}

/// What the breakers look at.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskState {
    /// Equity at the start of the current UTC day (first snapshot of the day).
    pub day_start_equity: Decimal,
    pub equity: Decimal,
    pub peak_equity: Decimal,
    /// Losing closed trades in a row, newest first.
    pub consecutive_losses: u32,
}

/// Count the losing trades at the head of `pnls_newest_first`.
pub fn consecutive_losses(pnls_newest_first: impl IntoIterator<Item = Decimal>) -> u32 {
    pnls_newest_first
        .into_iter()
        .take_while(|p| *p < Decimal::ZERO)
        .count()
        .try_into()
        .unwrap_or(u32::MAX)
}

/// The first breaker that trips, if any (checked: drawdown, daily loss, consecutive losses).
pub fn check_breakers(cfg: &RiskConfig, state: &RiskState) -> Option<BreakerTrip> {
    let hundred = Decimal::ONE_HUNDRED;
    if cfg.max_drawdown_pct > Decimal::ZERO && state.peak_equity > Decimal::ZERO {
        let dd = (state.peak_equity - state.equity) / state.peak_equity * hundred;
        if dd >= cfg.max_drawdown_pct {
            return Some(BreakerTrip {
                breaker: Breaker::MaxDrawdown,
                reason: format!(
                    "max drawdown: equity {} is {}% below peak {} (limit {}%)",
                    state.equity.normalize(),
                    dd.round_dp(2).normalize(),
                    state.peak_equity.normalize(),
                    cfg.max_drawdown_pct
                ),
            });
        }
    }
    if cfg.daily_loss_limit_pct > Decimal::ZERO && state.day_start_equity > Decimal::ZERO {
        let loss = (state.day_start_equity - state.equity) / state.day_start_equity * hundred;
        if loss >= cfg.daily_loss_limit_pct {
            return Some(BreakerTrip {
                breaker: Breaker::DailyLoss,
                reason: format!(
                    "daily loss: equity {} is {}% below today's start {} (limit {}%)",
                    state.equity.normalize(),
                    loss.round_dp(2).normalize(),
                    state.day_start_equity.normalize(),
                    cfg.daily_loss_limit_pct
                ),
            });
        }
    }
    if cfg.max_consecutive_losses > 0 && state.consecutive_losses >= cfg.max_consecutive_losses {
        return Some(BreakerTrip {
            breaker: Breaker::ConsecutiveLosses,
            reason: format!(
                "consecutive losses: {} losing trades in a row (limit {})",
                state.consecutive_losses, cfg.max_consecutive_losses
            ),
        });
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn state() -> RiskState {
        RiskState {
            day_start_equity: dec!(10000),
            equity: dec!(10000),
            peak_equity: dec!(10000),
            consecutive_losses: 0,
        }
    }

    #[test]
    fn healthy_account_trips_nothing() {
        assert_eq!(check_breakers(&RiskConfig::default(), &state()), None);
    }

    #[test]
    fn daily_loss_trips_at_the_limit_not_before() {
        let cfg = RiskConfig::default(); // 5%
        let mut s = state();
        s.equity = dec!(9501);
        assert_eq!(check_breakers(&cfg, &s), None);
        s.equity = dec!(9500);
        let trip = check_breakers(&cfg, &s).unwrap();
        assert_eq!(trip.breaker, Breaker::DailyLoss);
        assert!(trip.reason.contains("5%"), "{}", trip.reason);
    }

    #[test]
    fn drawdown_is_measured_from_the_peak() {
        let cfg = RiskConfig::default(); // 20%
        let mut s = state();
        s.peak_equity = dec!(15000);
        s.day_start_equity = dec!(12100);
        s.equity = dec!(12100); // 19.33% below peak
        assert_eq!(check_breakers(&cfg, &s), None);
        s.equity = dec!(12000); // 20%, and 0.8% down on the day
        assert_eq!(
            check_breakers(&cfg, &s).unwrap().breaker,
            Breaker::MaxDrawdown
        );
    }

    #[test]
    fn consecutive_losses_count_only_the_latest_run() {
        let pnls = [dec!(-1), dec!(-2), dec!(-3), dec!(4), dec!(-5)];
        assert_eq!(consecutive_losses(pnls), 3);
        let cfg = RiskConfig {
            max_consecutive_losses: 3,
            ..RiskConfig::default()
        };
        let mut s = state();
        s.consecutive_losses = 2;
        assert_eq!(check_breakers(&cfg, &s), None);
        s.consecutive_losses = 3;
        assert_eq!(
            check_breakers(&cfg, &s).unwrap().breaker,
            Breaker::ConsecutiveLosses
        );
    }

    #[test]
    fn zero_disables_a_breaker() {
        let cfg = RiskConfig {
            daily_loss_limit_pct: dec!(0),
            max_drawdown_pct: dec!(0),
            max_consecutive_losses: 0,
            ..RiskConfig::default()
        };
        let s = RiskState {
            day_start_equity: dec!(10000),
            equity: dec!(1),
            peak_equity: dec!(10000),
            consecutive_losses: 99,
        };
        assert_eq!(check_breakers(&cfg, &s), None);
    }

    #[test]
    fn config_rejects_unknown_fields_and_bad_ranges() {
        let err = serde_json::from_str::<RiskConfig>(r#"{"daily_loss_limit":3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("daily_loss_limit"), "{err}");
        let cfg: RiskConfig = serde_json::from_str(r#"{"max_drawdown_pct":"150"}"#).unwrap();
        assert_eq!(cfg.validate().unwrap_err().field, "max_drawdown_pct");
    }
}
