//! What a strategy decides for one cycle: an action, how sure it is, the prices it implies and
//! why. Constructors enforce the invariants the order code relies on.

use std::fmt;

use rust_decimal::Decimal;
use serde::Serialize;

/// What the bot should do this cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Open (or add to) a long position.
    Buy,
    /// Open (or add to) a short position.
    Sell,
    /// Do nothing.
    Hold,
    /// Close the open position.
    Close,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Buy => "BUY",
            Action::Sell => "SELL",
            Action::Hold => "HOLD",
            Action::Close => "CLOSE",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signal that breaks an invariant (a strategy bug, reported instead of traded).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalError {
    #[error(
        "{action} signal: stop-loss {stop_loss} and take-profit {take_profit} must lie on either side of entry {entry} ({rule})"
    )]
    PricesOutOfOrder {
        action: Action,
        entry: Decimal,
        stop_loss: Decimal,
        take_profit: Decimal,
        rule: &'static str,
    },
    #[error("{action} signal: {what} {value} must be positive")]
    NonPositivePrice {
        action: Action,
        what: &'static str,
        value: Decimal,
    },
    #[error("signal confidence must be a number in 0..=1, got {0}")]
    BadConfidence(f64),
}

/// One cycle's decision. `entry` is the reference price (the last close); `stop_loss` and
/// `take_profit` are set for BUY and SELL only, on the losing and winning side of `entry`.
/// `confidence` is in 0..=1 (each strategy documents how it derives it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    action: Action,
    confidence: f64,
    entry: Decimal,
    stop_loss: Option<Decimal>,
    take_profit: Option<Decimal>,
    reasons: Vec<String>,
}

impl Signal {
    /// A BUY: requires `stop_loss < entry < take_profit`, all positive.
    pub fn buy(
        entry: Decimal,
        stop_loss: Decimal,
        take_profit: Decimal,
        confidence: f64,
        reasons: Vec<String>,
    ) -> Result<Self, SignalError> {
        Self::entry_signal(
            Action::Buy,
            entry,
            stop_loss,
            take_profit,
            confidence,
            reasons,
        )
    }

    /// A SELL: requires `take_profit < entry < stop_loss`, all positive.
    pub fn sell(
        entry: Decimal,
        stop_loss: Decimal,
        take_profit: Decimal,
        confidence: f64,
        reasons: Vec<String>,
    ) -> Result<Self, SignalError> {
        Self::entry_signal(
            Action::Sell,
            entry,
            stop_loss,
            take_profit,
            confidence,
            reasons,
        )
    }

    /// A HOLD at `entry` (no prices to act on).
    pub fn hold(
        entry: Decimal,
        confidence: f64,
        reasons: Vec<String>,
    ) -> Result<Self, SignalError> {
        Self::plain(Action::Hold, entry, confidence, reasons)
    }

    /// A CLOSE of the open position at about `entry`.
    pub fn close(
        entry: Decimal,
        confidence: f64,
        reasons: Vec<String>,
    ) -> Result<Self, SignalError> {
        Self::plain(Action::Close, entry, confidence, reasons)
    }

    fn plain(
        action: Action,
        entry: Decimal,
        confidence: f64,
        reasons: Vec<String>,
    ) -> Result<Self, SignalError> {
        Ok(Self {
            action,
            confidence: check_confidence(confidence)?,
            entry: positive(action, "entry", entry)?,
            stop_loss: None,
            take_profit: None,
            reasons,
        })
    }

    fn entry_signal(
        action: Action,
        entry: Decimal,
        stop_loss: Decimal,
        take_profit: Decimal,
        confidence: f64,
        reasons: Vec<String>,
    ) -> Result<Self, SignalError> {
        let entry = positive(action, "entry", entry)?;
        let stop_loss = positive(action, "stop-loss", stop_loss)?;
        let take_profit = positive(action, "take-profit", take_profit)?;
        let (ordered, rule) = match action {
            Action::Sell => (
                take_profit < entry && entry < stop_loss,
                "a SELL needs take-profit < entry < stop-loss",
            ),
            _ => (
                stop_loss < entry && entry < take_profit,
                "a BUY needs stop-loss < entry < take-profit",
            ),
        };
        if !ordered {
            return Err(SignalError::PricesOutOfOrder {
                action,
                entry,
                stop_loss,
                take_profit,
                rule,
            });
        }
        Ok(Self {
            action,
            confidence: check_confidence(confidence)?,
            entry,
            stop_loss: Some(stop_loss),
            take_profit: Some(take_profit),
            reasons,
        })
    }

    pub fn action(&self) -> Action {
        self.action
    }
    pub fn confidence(&self) -> f64 {
        self.confidence
    }
    pub fn entry(&self) -> Decimal {
        self.entry
    }
    pub fn stop_loss(&self) -> Option<Decimal> {
        self.stop_loss
    }
    pub fn take_profit(&self) -> Option<Decimal> {
        self.take_profit
    }
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }
}

fn check_confidence(confidence: f64) -> Result<f64, SignalError> {
    if (0.0..=1.0).contains(&confidence) {
        Ok(confidence)
    } else {
        Err(SignalError::BadConfidence(confidence))
    }
}

fn positive(action: Action, what: &'static str, value: Decimal) -> Result<Decimal, SignalError> {
    if value > Decimal::ZERO {
        Ok(value)
    } else {
        Err(SignalError::NonPositivePrice {
            action,
            what,
            value,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn entry_signals_keep_their_prices_on_the_right_sides() {
        assert!(Signal::buy(dec!(10), dec!(9), dec!(12), 0.7, vec![]).is_ok());
        assert!(Signal::buy(dec!(10), dec!(11), dec!(12), 0.7, vec![]).is_err());
        assert!(Signal::sell(dec!(10), dec!(11), dec!(8), 0.7, vec![]).is_ok());
        assert!(Signal::sell(dec!(10), dec!(9), dec!(12), 0.7, vec![]).is_err());
        assert!(Signal::buy(dec!(10), dec!(-1), dec!(12), 0.7, vec![]).is_err());
    }

    #[test]
    fn confidence_outside_0_1_or_nan_is_refused() {
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(Signal::hold(dec!(1), bad, vec![]).is_err(), "{bad}");
        }
        let s = Signal::close(dec!(1), 1.0, vec!["why".into()]).unwrap();
        assert_eq!(s.action(), Action::Close);
        assert_eq!(s.stop_loss(), None);
    }

    #[test]
    fn serializes_actions_in_capitals() {
        let s = Signal::buy(dec!(10), dec!(9), dec!(12), 0.5, vec!["x".into()]).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["action"], "BUY");
        assert_eq!(json["stop_loss"], "9");
    }
}
