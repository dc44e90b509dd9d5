//! The bot cycle: crawl -> analyze -> signal -> size -> execute -> record.
