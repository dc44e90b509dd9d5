//! Job types put on the queue (trading cycles) and their payload codec.
