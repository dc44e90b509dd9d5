//! SeaORM entities and the typed store operations over PostgreSQL and SQLite.
