//! Redis distributed lock per subscription: token + TTL + renewal + fencing token.
