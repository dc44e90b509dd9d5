//! Job types put on the queue (trading cycles), their payload codec, and the Redis Streams queue
//! the scheduler, fleetctl and workers share.

pub mod job;
pub mod streams;

pub use job::{PayloadError, TradingCycle, Trigger};
pub use streams::{
    Claimed, Consumer, Delivery, Envelope, QueueDepth, QueueError, QueueSettings, StreamQueue,
};

/// The queue of trading cycles.
pub const TRADING_CYCLE_QUEUE: &str = "trading-cycle";
