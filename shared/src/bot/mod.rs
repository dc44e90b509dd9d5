//! The bot cycle: crawl -> analyze -> signal -> size -> execute -> record.

pub mod candles;
pub mod crawl;
pub mod cycle;
pub mod execution;
pub mod indicators;
pub mod llm;
pub mod order_ids;
pub mod record;
pub mod risk;
pub mod signal;
pub mod sizing;
pub mod strategy;
