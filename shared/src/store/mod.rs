//! SeaORM entities and the typed store operations over PostgreSQL and SQLite.
//!
//! [`Store`] wraps a connection pool or, after [`Store::begin`], one transaction, and offers the
//! same typed operations on both, so a worker can commit a cycle's results (fencing check, run
//! status, orders) atomically. Money is exact ([`DbDecimal`]) on both backends. Operations that
//! stamp times take `now` from the caller's `Clock`.

mod accounts;
mod credentials;
pub mod entities;
mod records;
mod rotation;
mod runs;
mod subscriptions;
mod types;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqlErr, TransactionTrait,
};

use crate::config::DatabaseConfig;

pub use accounts::NewBot;
pub use credentials::{CredentialKey, SealedCredentials, SealedSecret};
pub use entities::{
    bot, cycle_run, dead_letter, equity_snapshot, exchange_credential, order, position, principal,
    subscription, trade,
};
pub use records::{NewDeadLetter, NewPosition, NewTrade, OrderRecord};
pub use rotation::{CredentialRowSource, open_credentials, seal_credentials, vault_principal};
pub use runs::{CycleInputs, CycleStart, FencedFinish, InsertRun, NewRun, RunFilter, RunOutcome};
pub use subscriptions::{CycleContext, EquityMarks, NewSubscription, SubscriptionFilter};
pub use types::{
    BotKind, DbDecimal, OrderRole, PositionStatus, RunStatus, RunTrigger, SubscriptionStatus,
    TimeframeList,
};

/// A store operation that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        #[source]
        source: DbErr,
    },
    #[error("cannot create the directory for SQLite database {url}: {source}")]
    SqliteDir {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{entity} {key} not found")]
    NotFound { entity: &'static str, key: String },
    #[error("{entity} {key} already exists")]
    AlreadyExists { entity: &'static str, key: String },
    #[error("{entity} {key} refers to a row that does not exist: {detail}")]
    MissingReference {
        entity: &'static str,
        key: String,
        detail: String,
    },
    #[error(
        "stale fencing token {token} for subscription {subscription_id}: \
         token {newest} already committed (another worker took over)"
    )]
    StaleFencingToken {
        subscription_id: i64,
        token: i64,
        newest: i64,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("database error while {action}: {source}")]
    Db {
        action: &'static str,
        #[source]
        source: DbErr,
    },
}

impl StoreError {
    /// True when trying again later may succeed (connection trouble, a server shutting down or
    /// restarting, a serialization failure or deadlock, a busy SQLite file), false when the same
    /// call would fail the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Db { source, .. } => is_transient(source),
            _ => false,
        }
    }
}

/// [`StoreError::is_retryable`] for a `DbErr`. A statement on a pooled connection the server
/// dropped fails with an I/O error from the query itself (connections in steady use are not
/// pinged first), so query errors are classified too, not only connection errors.
fn is_transient(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::sqlx::error::DatabaseError;
    let sqlx = match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => return true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx {
        Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::Protocol(_) | Sqlx::PoolTimedOut => true,
        Sqlx::WorkerCrashed => true,
        Sqlx::Database(db) => {
            if let Some(sqlite) = db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>() {
                // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
                let primary = sqlite
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff);
                return matches!(primary, Some(5 | 6));
            }
            db.code().is_some_and(|code| {
                // Class 08: connection exception; 57P01-03: admin/crash shutdown, cannot
                // connect now; 40001/40P01: serialization failure, deadlock; 53300: too many
                // connections.
                code.starts_with("08")
                    || matches!(
                        code.as_ref(),
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
                    )
            })
        }
        _ => false,
    }
}

/// Maps a `DbErr` to `StoreError::Db` with what was being done.
pub(crate) fn db_err(action: &'static str) -> impl FnOnce(DbErr) -> StoreError {
    move |source| StoreError::Db { action, source }
}

/// Maps constraint violations of an insert to typed errors, anything else to `Db`.
pub(crate) fn insert_err(
    entity: &'static str,
    key: String,
    action: &'static str,
) -> impl FnOnce(DbErr) -> StoreError {
    move |source| match source.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::AlreadyExists { entity, key },
        Some(SqlErr::ForeignKeyConstraintViolation(detail)) => StoreError::MissingReference {
            entity,
            key,
            detail,
        },
        _ => StoreError::Db { action, source },
    }
}

/// `url` with the password (if any) replaced, safe for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The typed operations of the fleet's database, over a pool (`Store`) or a transaction
/// (`Store<DatabaseTransaction>`).
#[derive(Debug, Clone)]
pub struct Store<C = DatabaseConnection> {
    conn: C,
}

/// Connects to `url` (`postgres://...` or `sqlite://path?mode=rwc`) with up to
/// `max_connections` pooled connections. SQLite gets WAL, foreign keys and a busy timeout, and
/// its directory is created when missing.
pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
    let defaults = DatabaseConfig::default();
    connect_with(
        url,
        max_connections,
        Duration::from_millis(defaults.connect_timeout_ms),
        Duration::from_millis(defaults.ping_idle_after_ms),
    )
    .await
}

/// [`connect`] with the settings of the `[database]` configuration section.
pub async fn connect_config(config: &DatabaseConfig) -> Result<Store, StoreError> {
    connect_with(
        &config.url,
        config.max_connections,
        Duration::from_millis(config.connect_timeout_ms.max(1)),
        Duration::from_millis(config.ping_idle_after_ms),
    )
    .await
}

async fn connect_with(
    url: &str,
    max_connections: u32,
    timeout: Duration,
    ping_idle_after: Duration,
) -> Result<Store, StoreError> {
    let sqlite = url.starts_with("sqlite:");
    if sqlite && let Some(dir) = sqlite_parent_dir(url) {
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::SqliteDir {
            url: url.to_string(),
            source,
        })?;
    }
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(max_connections.max(1))
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        .sqlx_logging(false);
    if ping_idle_after.is_zero() {
        opts.test_before_acquire(true);
    } else {
        // Only a connection idle long enough to have been dropped (server restart, proxy,
        // firewall) is pinged; one dropped sooner fails its statement, which is retryable.
        opts.test_before_acquire_if_idle_for(ping_idle_after);
    }
    if sqlite {
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        });
    }
    let conn = Database::connect(opts)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(url),
            source,
        })?;
    Ok(Store { conn })
}

/// The directory of a SQLite database file, if the URL names one inside a directory.
fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    (!parent.as_os_str().is_empty()).then(|| parent.to_path_buf())
}

impl Store<DatabaseConnection> {
    /// Wraps an existing connection (e.g. one a test harness made).
    pub fn from_connection(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Starts a transaction; every operation of the returned store runs inside it.
    pub async fn begin(&self) -> Result<Store<DatabaseTransaction>, StoreError> {
        let conn = self
            .conn
            .begin()
            .await
            .map_err(db_err("starting a transaction"))?;
        Ok(Store { conn })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(self) -> Result<(), StoreError> {
        self.conn.close().await.map_err(db_err("closing the pool"))
    }
}

impl Store<DatabaseTransaction> {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.conn
            .commit()
            .await
            .map_err(db_err("committing a transaction"))
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        self.conn
            .rollback()
            .await
            .map_err(db_err("rolling back a transaction"))
    }
}

impl<C: ConnectionTrait> Store<C> {
    /// The underlying connection, for queries the store does not offer.
    pub fn connection(&self) -> &C {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_from_a_query_is_retryable() {
        use std::sync::Arc;

        use sea_orm::RuntimeErr;
        use sea_orm::sqlx::Error as Sqlx;
        let query = |e: Sqlx| StoreError::Db {
            action: "reading",
            source: DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))),
        };
        let broken = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        assert!(query(Sqlx::Io(broken())).is_retryable());
        assert!(query(Sqlx::Protocol("expected 5 bytes, got 0 at EOF".into())).is_retryable());
        assert!(query(Sqlx::PoolTimedOut).is_retryable());
        assert!(
            StoreError::Db {
                action: "writing",
                source: DbErr::Exec(RuntimeErr::SqlxError(Arc::new(Sqlx::Io(broken())))),
            }
            .is_retryable()
        );
        assert!(
            StoreError::Db {
                action: "connecting",
                source: DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
            }
            .is_retryable()
        );
        assert!(
            StoreError::Db {
                action: "x",
                source: DbErr::Conn(RuntimeErr::Internal("reset".into())),
            }
            .is_retryable()
        );
        // The same call would fail the same way.
        assert!(
            !StoreError::NotFound {
                entity: "subscription",
                key: "1".into(),
            }
            .is_retryable()
        );
        assert!(!query(Sqlx::RowNotFound).is_retryable());
        assert!(!query(Sqlx::ColumnNotFound("pid".into())).is_retryable());
        assert!(
            !StoreError::Db {
                action: "reading",
                source: DbErr::Type("not a decimal".into()),
            }
            .is_retryable()
        );
        assert!(
            !StoreError::Invalid {
                what: "run outcome",
                reason: "not terminal".into()
            }
            .is_retryable()
        );
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://fleet:s3cret@db.internal:5432/tf"),
            "postgres://fleet:***@db.internal:5432/tf"
        );
        assert_eq!(
            redact_url("postgres://fleet@db/tf"),
            "postgres://fleet@db/tf"
        );
        assert_eq!(
            redact_url("sqlite://./data/x.sqlite?mode=rwc"),
            "sqlite://./data/x.sqlite?mode=rwc"
        );
    }

    #[test]
    fn sqlite_directories_are_derived_from_urls() {
        assert_eq!(
            sqlite_parent_dir("sqlite://./data/tf.sqlite?mode=rwc"),
            Some(std::path::PathBuf::from("./data"))
        );
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("postgres://x/y"), None);
    }
}
