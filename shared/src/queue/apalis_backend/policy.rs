//! What a finished task turns into: ack, a delayed retry, or a dead letter (the retry policy and
//! the error markers a handler uses to say "do not retry").

use std::error::Error as StdError;
use std::time::Duration;

use apalis::layers::catch_panic::PanicError;
use apalis_core::error::{AbortError, BoxDynError, RetryAfterError};

use super::DeadLetterReason;
use crate::queue::Delivery;

/// How failed jobs are retried: exponential backoff with jitter, then a dead letter.
///
/// Attempt `a` (1-based) that fails is retried after about `base_delay * 2^(a-1)`, capped at
/// `max_delay`, with "equal jitter" (a uniformly random point in the upper half of that delay,
/// so a burst of failures does not come back as a burst). The attempt `max_attempts` that fails is
/// dead-lettered instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs of a job before it is dead-lettered (at least 1; 0 counts as 1).
    pub max_attempts: u32,
    /// Delay before the second attempt (before jitter).
    pub base_delay: Duration,
    /// Upper bound of any delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The attempt count that is dead-lettered when it fails.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    /// The delay (before jitter) after failed attempt `attempt`.
    pub fn ceiling_for(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The jittered delay after failed attempt `attempt`: within `[ceiling / 2, ceiling]`.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling_for(attempt);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::random_range(0..=spread))
    }
}

/// Wrap a handler error in this to dead-letter the job at once, whatever attempts are left
/// (bad input, a subscription that no longer exists...). apalis's `AbortError` does the same;
/// a panic caught by `catch_panic` (an `AbortError` around a `PanicError`) is *not* permanent.
///
/// ```
/// # use apalis_core::error::BoxDynError;
/// use tradefleet::queue::Permanent;
/// fn reject() -> Result<(), BoxDynError> {
///     Err(Permanent::new("subscription 42 was deleted").into())
/// }
/// # assert!(reject().is_err());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(#[source] BoxDynError);

impl Permanent {
    pub fn new(error: impl Into<BoxDynError>) -> Self {
        Self(error.into())
    }
}

/// A handler that panicked (caught by the backend's own layer when `catch_panic` is absent).
#[derive(Debug, Clone, thiserror::Error)]
#[error("handler panicked: {0}")]
pub struct HandlerPanicked(pub String);

impl HandlerPanicked {
    pub(super) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let text = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic without a message".to_owned()
        };
        Self(text)
    }
}

/// What to do with a finished delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Ack,
    Retry {
        delay: Duration,
        error: String,
    },
    Bury {
        reason: DeadLetterReason,
        error: String,
    },
}

fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e| e.source())
}

fn caused_by_panic(e: &(dyn StdError + 'static)) -> bool {
    chain(e).any(|e| e.is::<PanicError>() || e.is::<HandlerPanicked>())
}

/// A `Permanent` anywhere in the chain, or an `AbortError` that is not a caught panic.
fn is_permanent(e: &(dyn StdError + 'static)) -> bool {
    for err in chain(e) {
        if err.is::<Permanent>() {
            return true;
        }
        if err.is::<AbortError>() {
            return !caused_by_panic(err);
        }
    }
    false
}

fn retry_after(e: &(dyn StdError + 'static)) -> Option<Duration> {
    chain(e).find_map(|e| {
        e.downcast_ref::<RetryAfterError>()
            .map(|r| r.get_duration())
    })
}

pub(super) fn verdict<R>(
    policy: &RetryPolicy,
    delivery: &Delivery,
    outcome: &Result<R, BoxDynError>,
) -> Verdict {
    let Err(e) = outcome else {
        return Verdict::Ack;
    };
    let e: &(dyn StdError + 'static) = e.as_ref();
    let attempt = delivery.envelope.attempt.max(1);
    let max = policy.attempts();
    if is_permanent(e) {
        return Verdict::Bury {
            reason: DeadLetterReason::Permanent,
            error: format!("permanent failure on attempt {attempt}: {e}"),
        };
    }
    if attempt >= max {
        return Verdict::Bury {
            reason: DeadLetterReason::Exhausted,
            error: format!("attempt {attempt} of {max} failed: {e}"),
        };
    }
    Verdict::Retry {
        // A handler asking for a specific delay (apalis's `RetryAfterError`) gets it.
        delay: retry_after(e).unwrap_or_else(|| policy.delay_for(attempt)),
        error: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Envelope;

    fn delivery(attempt: u32) -> Delivery {
        Delivery {
            entry_id: "1-0".into(),
            envelope: Envelope {
                id: "job".into(),
                attempt,
                payload: "{}".into(),
            },
            deliveries: 1,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        }
    }

    #[test]
    fn delays_double_stay_capped_and_jitter_in_the_upper_half() {
        let p = policy();
        assert_eq!(p.ceiling_for(1), Duration::from_millis(100));
        assert_eq!(p.ceiling_for(2), Duration::from_millis(200));
        assert_eq!(p.ceiling_for(4), Duration::from_millis(800));
        assert_eq!(p.ceiling_for(5), Duration::from_millis(1_000));
        assert_eq!(p.ceiling_for(u32::MAX), Duration::from_millis(1_000));
        for attempt in 1..8 {
            let ceiling = p.ceiling_for(attempt);
            for _ in 0..50 {
                let d = p.delay_for(attempt);
                assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            }
        }
        let zero = RetryPolicy {
            max_attempts: 0,
            ..p
        };
        assert_eq!(zero.attempts(), 1);
    }

    #[test]
    fn verdicts_follow_the_policy_and_the_error_markers() {
        let p = policy();
        assert_eq!(
            verdict::<()>(&p, &delivery(1), &Ok(())),
            Verdict::Ack,
            "success acks"
        );
        let boom = || -> Result<(), BoxDynError> { Err("boom".into()) };
        assert!(matches!(
            verdict(&p, &delivery(2), &boom()),
            Verdict::Retry { ref error, .. } if error == "boom"
        ));
        assert!(matches!(
            verdict(&p, &delivery(3), &boom()),
            Verdict::Bury { reason: DeadLetterReason::Exhausted, ref error }
                if error == "attempt 3 of 3 failed: boom"
        ));
        let permanent: Result<(), BoxDynError> = Err(Permanent::new("gone").into());
        assert!(matches!(
            verdict(&p, &delivery(1), &permanent),
            Verdict::Bury { reason: DeadLetterReason::Permanent, ref error } if error.contains("gone")
        ));
        let aborted: Result<(), BoxDynError> = Err(AbortError::new("stop").into());
        assert!(matches!(
            verdict(&p, &delivery(1), &aborted),
            Verdict::Bury {
                reason: DeadLetterReason::Permanent,
                ..
            }
        ));
        // `catch_panic` wraps a panic in an AbortError: it is retried like any failure.
        let panicked: Result<(), BoxDynError> =
            Err(AbortError::new(PanicError("oops".into())).into());
        assert!(matches!(
            verdict(&p, &delivery(1), &panicked),
            Verdict::Retry { .. }
        ));
        let asked: Result<(), BoxDynError> =
            Err(RetryAfterError::new("later", Duration::from_secs(7)).into());
        assert!(matches!(
            verdict(&p, &delivery(1), &asked),
            Verdict::Retry { delay, .. } if delay == Duration::from_secs(7)
        ));
    }
}
