//! Deterministic client order ids: the same (subscription, slot, role) always gives the same id,
//! so a retried job finds its earlier order instead of placing a second one.
//!
//! Format: `tf` + base36(slot, Unix seconds, zero-padded to 8) + decimal(subscription id) + role
//! letter + [decimal(sequence), only when > 0]. The fixed-width slot, digits-only id and sequence,
//! and a single letter between them make the id unambiguous (no two inputs share an id).
//! Letters and digits only, at most 32 characters: valid on every supported venue (OKX's
//! `clOrdId` is the strictest). The HTX adapter maps it to an integer inside its folder.

use chrono::{DateTime, Utc};

use crate::domain::{ClientOrderId, DomainError};

pub use crate::store::OrderRole;

fn role_letter(role: OrderRole) -> char {
    match role {
        OrderRole::Entry => 'e',
        OrderRole::StopLoss => 's',
        OrderRole::TakeProfit => 't',
        OrderRole::Close => 'c',
    }
}

/// The role encoded in a client order id made by [`client_order_id`], or `None` for any other id
/// (an order placed by hand, another tool's format).
pub fn role_of(id: &str) -> Option<OrderRole> {
    let rest = id.strip_prefix("tf")?;
    // 8 base36 digits of the slot, then the subscription id's decimal digits, then the letter.
    let rest = rest.get(8..)?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let mut chars = rest.chars();
    let role = match chars.next()? {
        'e' => OrderRole::Entry,
        's' => OrderRole::StopLoss,
        't' => OrderRole::TakeProfit,
        'c' => OrderRole::Close,
        _ => return None,
    };
    chars.all(|c| c.is_ascii_digit()).then_some(role)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::with_capacity(13);
    while n > 0 {
        // `n % 36` is always < 36, so the index is in bounds.
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Largest `sequence` (two decimal digits keep the worst case within 32 characters).
pub const MAX_SEQUENCE: u32 = 99;

/// The client order id of `role` in the cycle of `subscription_id` at `slot`. `sequence` tells
/// apart several orders of one role in one cycle (0 for the first, at most [`MAX_SEQUENCE`]).
pub fn client_order_id(
    subscription_id: i64,
    slot: DateTime<Utc>,
    role: OrderRole,
    sequence: u32,
) -> Result<ClientOrderId, DomainError> {
    let sub = u64::try_from(subscription_id).map_err(|_| DomainError::BadClientOrderId {
        input: subscription_id.to_string(),
        reason: "subscription id must not be negative",
    })?;
    let slot_secs = u64::try_from(slot.timestamp()).map_err(|_| DomainError::BadClientOrderId {
        input: slot.to_rfc3339(),
        reason: "slot must be after 1970",
    })?;
    if slot_secs >= 36u64.pow(8) {
        return Err(DomainError::BadClientOrderId {
            input: slot.to_rfc3339(),
            reason: "slot is too far in the future",
        });
    }
    if sequence > MAX_SEQUENCE {
        return Err(DomainError::BadClientOrderId {
            input: sequence.to_string(),
            reason: "at most 99 orders of one role per cycle",
        });
    }
    let mut id = format!("tf{:0>8}{sub}{}", base36(slot_secs), role_letter(role));
    if sequence > 0 {
        id.push_str(&sequence.to_string());
    }
    ClientOrderId::new(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn slot(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn foreign_ids_have_no_role() {
        for id in [
            "",
            "tf",
            "tf0000e",
            "xx00000000042e",
            "tf1234567842q",
            "tf1234567842ex",
        ] {
            assert_eq!(role_of(id), None, "{id}");
        }
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = client_order_id(42, slot(1_795_236_240), OrderRole::Entry, 0).unwrap();
        let b = client_order_id(42, slot(1_795_236_240), OrderRole::Entry, 0).unwrap();
        assert_eq!(a, b);
        let mut seen = HashSet::new();
        for sub in [1, 42, 43, 1_000_000] {
            for s in [1_795_236_240, 1_795_239_840] {
                for role in [
                    OrderRole::Entry,
                    OrderRole::StopLoss,
                    OrderRole::TakeProfit,
                    OrderRole::Close,
                ] {
                    for seq in [0, 1, 12] {
                        let id = client_order_id(sub, slot(s), role, seq).unwrap();
                        assert_eq!(role_of(id.as_str()), Some(role), "{id}");
                        assert!(seen.insert(id));
                    }
                }
            }
        }
    }

    #[test]
    fn worst_case_fits_every_venue() {
        let id =
            client_order_id(i64::MAX, slot(253_402_300_799), OrderRole::TakeProfit, 99).unwrap();
        assert!(id.as_str().len() <= 32, "{id}");
        assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(client_order_id(-1, slot(0), OrderRole::Entry, 0).is_err());
        assert!(client_order_id(1, slot(0), OrderRole::Entry, 100).is_err());
    }

    #[test]
    fn layout_cannot_collide() {
        // Digits-only id and sequence around a single role letter: (1, seq 23) and (12, seq 3)
        // differ because the letter sits between them.
        let a = client_order_id(1, slot(60), OrderRole::Entry, 23).unwrap();
        let b = client_order_id(12, slot(60), OrderRole::Entry, 3).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str(), "tf0000001o1e23");
    }
}
