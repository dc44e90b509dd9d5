//! The bot cycle: crawl -> analyze -> signal -> size -> execute -> record.

pub mod candles;
pub mod indicators;
pub mod signal;
pub mod strategy;
