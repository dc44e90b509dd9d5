//! Job types put on the queue (trading cycles), their payload codec, the Redis Streams queue
//! the scheduler, fleetctl and workers share, and the apalis backend workers run it with.

pub mod apalis_backend;
pub mod job;
pub mod streams;

pub use apalis_backend::{
    DeadLetter, DeadLetterHook, DeadLetterReason, HandlerPanicked, JobInfo, Permanent, RetryPolicy,
    StreamBackend, StreamBackendError,
};
pub use job::{PayloadError, TradingCycle, Trigger};
pub use streams::{
    Claimed, Consumer, Delivery, Envelope, QueueDepth, QueueError, QueueSettings, StreamQueue,
};

/// The queue of trading cycles.
pub const TRADING_CYCLE_QUEUE: &str = "trading-cycle";
