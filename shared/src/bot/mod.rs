//! The bot cycle: crawl -> analyze -> signal -> size -> execute -> record.

pub mod crawl;
pub mod execution;
pub mod llm;
pub mod order_ids;
pub mod risk;
pub mod sizing;
