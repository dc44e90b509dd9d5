//! The fleet runtimes built on the library's parts: the scheduler that enqueues due slots and the
//! worker that runs queued cycles. The binaries drive them.

pub mod scheduler;
pub mod worker;
