//! Exactly-once order placement over any venue: look the client order id up first, place once, and
//! after an unknown outcome reconcile by client order id instead of placing again.

use std::time::Duration;

use crate::domain::{Order, OrderRequest};

use super::{Exchange, ExchangeError};

/// How hard to try to learn the fate of a write whose outcome is unknown.
#[derive(Debug, Clone, Copy)]
pub struct ReconcilePolicy {
    /// Look-ups after an unknown outcome before giving up (the venue may need a moment to index).
    pub lookups: u32,
    pub pause: Duration,
}

impl Default for ReconcilePolicy {
    fn default() -> Self {
        Self {
            lookups: 3,
            pause: Duration::from_millis(500),
        }
    }
}

/// Whether the order was placed now or found from an earlier attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Placed(Order),
    Existing(Order),
}

impl Placement {
    pub fn order(&self) -> &Order {
        match self {
            Placement::Placed(o) | Placement::Existing(o) => o,
        }
    }
    pub fn into_order(self) -> Order {
        match self {
            Placement::Placed(o) | Placement::Existing(o) => o,
        }
    }
}

/// Place `request` at most once, whatever happened before:
/// 1. an order with this client id already on the venue is returned as it is;
/// 2. otherwise it is placed once;
/// 3. on `OutcomeUnknown` (or a duplicate-id rejection) it is looked up by client id; when the venue
///    still does not know it after `policy.lookups` tries, `OutcomeUnknown` is returned and nothing
///    is placed again: the next attempt of the job starts at step 1.
pub async fn place_once(
    exchange: &dyn Exchange,
    request: &OrderRequest,
    policy: ReconcilePolicy,
) -> Result<Placement, ExchangeError> {
    if let Some(existing) = exchange
        .order_by_client_id(&request.symbol, &request.client_order_id)
        .await?
    {
        return Ok(Placement::Existing(existing));
    }
    match exchange.place_order(request).await {
        Ok(order) => Ok(Placement::Placed(order)),
        Err(
            err @ (ExchangeError::OutcomeUnknown { .. }
            | ExchangeError::DuplicateClientOrderId { .. }),
        ) => {
            for i in 0..policy.lookups {
                if i > 0 {
                    tokio::time::sleep(policy.pause).await;
                }
                match exchange
                    .order_by_client_id(&request.symbol, &request.client_order_id)
                    .await
                {
                    Ok(Some(order)) => return Ok(Placement::Existing(order)),
                    Ok(None) => continue,
                    Err(e) if e.recovery() == super::Recovery::Retry => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(match err {
                ExchangeError::DuplicateClientOrderId { venue, message } => {
                    ExchangeError::OutcomeUnknown {
                        venue,
                        message: format!(
                            "venue reports duplicate client order id {} but cannot find it: {message}",
                            request.client_order_id
                        ),
                    }
                }
                other => other,
            })
        }
        Err(e) => Err(e),
    }
}
