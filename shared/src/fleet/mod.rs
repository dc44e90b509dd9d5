//! The fleet runtimes built on the library's parts: the worker that runs queued cycles.

pub mod worker;
