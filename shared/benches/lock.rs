//! Placeholder replaced by the lock benchmark.
fn main() {}
