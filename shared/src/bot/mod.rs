//! The bot cycle: crawl -> analyze -> signal -> size -> execute -> record.

pub mod execution;
pub mod order_ids;
pub mod risk;
pub mod sizing;
