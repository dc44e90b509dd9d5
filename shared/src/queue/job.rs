//! The jobs the fleet puts on the queue, and their JSON payload codec.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a cycle runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Enqueued by the scheduler for a due slot.
    Scheduled,
    /// Enqueued by an operator (`fleetctl cycle run`).
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
        }
    }
}

/// One trading cycle of one subscription for one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingCycle {
    pub subscription_id: i64,
    /// The schedule slot this cycle belongs to (the run row's unique key with the subscription).
    pub slot: DateTime<Utc>,
    pub trigger: Trigger,
    /// W3C trace context (`traceparent`, `tracestate`) of the enqueuer, so one trace spans
    /// enqueue -> lock -> cycle -> orders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trace_context: BTreeMap<String, String>,
}

impl TradingCycle {
    /// The queue-level job id: one per (subscription, slot), so a second enqueue is a no-op.
    pub fn job_id(&self) -> String {
        format!("cycle:{}:{}", self.subscription_id, self.slot.timestamp())
    }

    pub fn to_payload(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parse a payload; the error says what is wrong (it goes to the dead-letter record).
    pub fn from_payload(payload: &str) -> Result<Self, PayloadError> {
        serde_json::from_str(payload).map_err(|e| PayloadError(e.to_string()))
    }
}

/// A payload that is not a valid job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed job payload: {0}")]
pub struct PayloadError(pub String);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_garbage() {
        let job = TradingCycle {
            subscription_id: 7,
            slot: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            trigger: Trigger::Scheduled,
            trace_context: BTreeMap::from([("traceparent".into(), "00-abc-def-01".into())]),
        };
        assert_eq!(TradingCycle::from_payload(&job.to_payload()).unwrap(), job);
        assert_eq!(job.job_id(), "cycle:7:1700000000");
        for bad in [
            "",
            "{",
            "{\"subscription_id\":\"x\"}",
            "{\"subscription_id\":1,\"slot\":\"2024-01-01T00:00:00Z\",\"trigger\":\"scheduled\",\"extra\":1}",
        ] {
            assert!(TradingCycle::from_payload(bad).is_err(), "{bad}");
        }
    }
}
