//! The tradefleet SQL schema as ordered migrations that run unchanged on PostgreSQL and SQLite,
//! plus the start-up check binaries use to refuse a database whose schema is behind.

use std::path::PathBuf;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseBackend, DatabaseConnection, EntityTrait};

mod m20261121_000001_accounts;
mod m20261121_000002_subscriptions;
mod m20261121_000003_trading;
mod m20261121_000004_dead_letters;
mod m20261121_000005_equity_marks;
mod m20261121_000006_due_order;

/// The command operators run to bring a database up to date; error messages name it.
pub const MIGRATE_COMMAND: &str = "migrations up";

/// All tradefleet migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_accounts::Migration),
            Box::new(m20261121_000002_subscriptions::Migration),
            Box::new(m20261121_000003_trading::Migration),
            Box::new(m20261121_000004_dead_letters::Migration),
            Box::new(m20261121_000005_equity_marks::Migration),
            Box::new(m20261121_000006_due_order::Migration),
        ]
    }
}

/// Why a database cannot be used by this build.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "database schema is behind: {pending} of {total} migrations pending (next: {next}); \
         run `{MIGRATE_COMMAND}` (e.g. `cargo run -p tradefleet-migrations -- up`) before starting"
    )]
    Behind {
        pending: usize,
        total: usize,
        next: String,
    },
    #[error(
        "database schema is newer than this build: unknown applied migration(s) {}; \
         run the tradefleet version that applied them",
        unknown.join(", ")
    )]
    Ahead { unknown: Vec<String> },
    #[error("cannot read the migration status of the database: {0}")]
    Status(#[source] DbErr),
}

/// Ok when every migration of this build is applied and none unknown to it. Never writes (not
/// even the migrations table), so it is safe on a database the caller must not change.
pub async fn check_current(db: &DatabaseConnection) -> Result<(), SchemaError> {
    let manager = SchemaManager::new(db);
    let table = Migrator::migration_table_name().to_string();
    let applied: Vec<String> = if manager
        .has_table(&table)
        .await
        .map_err(SchemaError::Status)?
    {
        sea_orm_migration::seaql_migrations::Entity::find()
            .all(db)
            .await
            .map_err(SchemaError::Status)?
            .into_iter()
            .map(|m| m.version)
            .collect()
    } else {
        Vec::new()
    };
    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let mut unknown: Vec<String> = applied
        .iter()
        .filter(|v| !known.contains(v))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(SchemaError::Ahead { unknown });
    }
    let pending: Vec<&String> = known.iter().filter(|k| !applied.contains(k)).collect();
    match pending.first() {
        None => Ok(()),
        Some(next) => Err(SchemaError::Behind {
            pending: pending.len(),
            total: known.len(),
            next: (*next).clone(),
        }),
    }
}

/// For a `sqlite:` URL naming a file, the directory that must exist before SQLite can create the
/// file (`sqlite://./data/x.sqlite?mode=rwc` -> `./data`). `None` for other URLs and in-memory
/// databases.
pub fn sqlite_parent_dir(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    if parent.as_os_str().is_empty() {
        return None;
    }
    Some(parent.to_path_buf())
}

/// Creates the parent directory of a SQLite database file when needed.
pub fn ensure_sqlite_parent_dir(url: &str) -> std::io::Result<()> {
    match sqlite_parent_dir(url) {
        Some(dir) => std::fs::create_dir_all(dir),
        None => Ok(()),
    }
}

/// Column helpers shared by the migrations so both backends get the same logical schema.
pub(crate) mod cols {
    use super::*;

    /// `BIGINT` auto-increment primary key (`INTEGER PRIMARY KEY AUTOINCREMENT` on SQLite).
    pub(crate) fn id<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.big_integer().not_null().auto_increment().primary_key();
        c
    }

    /// An exact decimal: unconstrained `NUMERIC` on PostgreSQL, `TEXT` on SQLite (SQLite's
    /// numeric affinity would turn decimals into lossy 8-byte floats).
    pub(crate) fn decimal<T: IntoIden>(m: &SchemaManager, name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        if m.get_database_backend() == DatabaseBackend::Sqlite {
            c.text();
        } else {
            c.decimal();
        }
        c
    }

    pub(crate) fn decimal_not_null<T: IntoIden>(m: &SchemaManager, name: T) -> ColumnDef {
        let mut c = decimal(m, name);
        c.not_null();
        c
    }

    pub(crate) fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.timestamp_with_time_zone().not_null();
        c
    }

    pub(crate) fn timestamp_null<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.timestamp_with_time_zone().null();
        c
    }

    pub(crate) fn string<T: IntoIden>(name: T, len: u32) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.string_len(len).not_null();
        c
    }

    pub(crate) fn string_null<T: IntoIden>(name: T, len: u32) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.string_len(len).null();
        c
    }

    pub(crate) fn text_null<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.text().null();
        c
    }

    pub(crate) fn json<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.json_binary().not_null();
        c
    }

    pub(crate) fn json_null<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.json_binary().null();
        c
    }

    pub(crate) fn boolean<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.boolean().not_null().default(false);
        c
    }

    pub(crate) fn big_int<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.big_integer().not_null();
        c
    }

    pub(crate) fn big_int_null<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.big_integer().null();
        c
    }

    pub(crate) fn int<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.integer().not_null();
        c
    }

    pub(crate) fn blob<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.blob().not_null();
        c
    }

    pub(crate) fn blob_null<T: IntoIden>(name: T) -> ColumnDef {
        let mut c = ColumnDef::new(name);
        c.blob().null();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_parent_dir_is_found_only_for_files_in_a_directory() {
        assert_eq!(
            sqlite_parent_dir("sqlite://./data/tradefleet.sqlite?mode=rwc"),
            Some(PathBuf::from("./data"))
        );
        assert_eq!(
            sqlite_parent_dir("sqlite:/tmp/x/y.db"),
            Some(PathBuf::from("/tmp/x"))
        );
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite://plain.db"), None);
        assert_eq!(sqlite_parent_dir("postgres://h/db"), None);
    }

    #[test]
    fn migration_names_come_from_their_files_and_are_ordered() {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        assert!(names.iter().all(|n| n.starts_with("m2026")), "{names:?}");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
