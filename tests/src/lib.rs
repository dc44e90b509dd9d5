//! Test harness shared by every crate's tests: a fresh migrated database per test (PostgreSQL or
//! SQLite, dropped afterwards), a Redis connection with a private key prefix, and the workspace
//! binaries for process tests. Nothing here touches the network beyond loopback services.

pub mod fleet;
pub mod procstat;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use tradefleet::store::{self, Store};
use tradefleet_migrations::Migrator;

pub mod private;

/// Default admin URL for creating per-test databases (override with `TEST_DATABASE_ADMIN_URL`).
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// A vault key ring (`TRADEFLEET__VAULT__KEYS`) for processes spawned by tests: fixed, public,
/// good for nothing but tests.
pub const TEST_VAULT_KEYS: &str = "test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Default Redis for tests (override with `TEST_REDIS_URL`).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Which SQL backend a [`TestDb`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug)]
enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { _dir: tempfile::TempDir },
}

/// A database of its own for one test: `tf_test_<uuid>` on PostgreSQL or a file in a temporary
/// directory for SQLite. Call [`TestDb::close`] at the end; if the test panics first, `Drop`
/// still drops the PostgreSQL database (best effort) and removes the SQLite directory.
#[derive(Debug)]
pub struct TestDb {
    backend: Backend,
    url: String,
    store: Store,
    cleanup: Option<Cleanup>,
}

impl TestDb {
    /// A migrated PostgreSQL database.
    pub async fn postgres() -> anyhow::Result<Self> {
        Self::new(Backend::Postgres, true).await
    }

    /// A migrated SQLite database.
    pub async fn sqlite() -> anyhow::Result<Self> {
        Self::new(Backend::Sqlite, true).await
    }

    /// A database on `backend`, migrated when `migrate` is true, else empty.
    pub async fn new(backend: Backend, migrate: bool) -> anyhow::Result<Self> {
        let (url, cleanup) = match backend {
            Backend::Postgres => {
                let admin_url = admin_url();
                let name = format!("tf_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(admin_url.as_str())
                    .await
                    .with_context(|| {
                        format!(
                            "cannot reach PostgreSQL at {} (set TEST_DATABASE_ADMIN_URL, or run \
                             scripts/test.sh, which starts it)",
                            store::redact_url(&admin_url)
                        )
                    })?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .with_context(|| format!("creating test database {name}"))?;
                admin.close().await.ok();
                let url = with_database(&admin_url, &name)?;
                (url, Cleanup::Postgres { admin_url, name })
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().context("creating a temporary directory")?;
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("tf.sqlite").display()
                );
                (url, Cleanup::Sqlite { _dir: dir })
            }
        };
        // From here on, Drop cleans up even if connecting or migrating fails.
        let mut partial = Partial(Some(cleanup));
        let store = store::connect(&url, 4)
            .await
            .with_context(|| format!("connecting to test database {}", store::redact_url(&url)))?;
        if migrate {
            Migrator::up(store.connection(), None)
                .await
                .context("migrating the test database")?;
        }
        Ok(Self {
            backend,
            url,
            store,
            cleanup: partial.0.take(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The store over this database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The raw connection, e.g. for migrations.
    pub fn conn(&self) -> &DatabaseConnection {
        self.store.connection()
    }

    /// Connection URL of this database (loopback, no secrets).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the pool and drops the database.
    pub async fn close(mut self) {
        let store = self.store.clone();
        store.close().await.ok();
        if let Some(cleanup) = self.cleanup.take() {
            cleanup_async(cleanup).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup_blocking(cleanup);
        }
    }
}

/// Cleans up a database whose `TestDb` was never finished.
struct Partial(Option<Cleanup>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(cleanup) = self.0.take() {
            cleanup_blocking(cleanup);
        }
    }
}

async fn cleanup_async(cleanup: Cleanup) {
    if let Cleanup::Postgres { admin_url, name } = cleanup
        && let Ok(admin) = Database::connect(admin_url.as_str()).await
    {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .ok();
        admin.close().await.ok();
    }
}

/// Runs the cleanup on a thread with its own runtime, so it works from `Drop` inside or outside
/// an async context.
fn cleanup_blocking(cleanup: Cleanup) {
    if matches!(cleanup, Cleanup::Sqlite { .. }) {
        return; // TempDir removes itself.
    }
    let handle = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(cleanup_async(cleanup));
        }
    });
    handle.join().ok();
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

/// `admin_url` pointing at database `name` instead (query string kept).
fn with_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let Some((scheme, rest)) = admin_url.split_once("://") else {
        bail!("TEST_DATABASE_ADMIN_URL {admin_url:?} is not a URL");
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut url = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

/// Generates one test per backend (`<name>::postgres` and `<name>::sqlite`) from one async body
/// that receives `&TestDb`:
///
/// ```ignore
/// tradefleet_tests::test_both_backends!(async fn creates_principals(db) {
///     db.store().create_principal("ann", now).await.unwrap();
/// });
/// ```
#[macro_export]
macro_rules! test_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn postgres() {
                let test_db = $crate::TestDb::new($crate::Backend::Postgres, true)
                    .await
                    .expect("PostgreSQL test database");
                {
                    let $db = &test_db;
                    $body
                }
                test_db.close().await;
            }

            #[tokio::test]
            async fn sqlite() {
                let test_db = $crate::TestDb::new($crate::Backend::Sqlite, true)
                    .await
                    .expect("SQLite test database");
                {
                    let $db = &test_db;
                    $body
                }
                test_db.close().await;
            }
        }
    };
}

/// A Redis connection whose keys all start with a prefix of its own (`tf_test_<uuid>`); the keys
/// are deleted by [`TestRedis::close`] (or, best effort, on drop).
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    prefix: String,
    conn: redis::aio::MultiplexedConnection,
    cleaned: bool,
}

impl TestRedis {
    pub async fn new() -> anyhow::Result<Self> {
        let url = std::env::var("TEST_REDIS_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string());
        let client = redis::Client::open(url.as_str())
            .with_context(|| format!("bad TEST_REDIS_URL {}", store::redact_url(&url)))?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| {
                format!(
                    "cannot reach Redis at {} (set TEST_REDIS_URL, or run scripts/test.sh, which \
                     starts it)",
                    store::redact_url(&url)
                )
            })?;
        Ok(Self {
            url,
            prefix: format!("tf_test_{}", uuid::Uuid::new_v4().simple()),
            conn,
            cleaned: false,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix of this test (use it as `redis.key_prefix`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:<suffix>`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// A handle on the shared multiplexed connection.
    pub fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.conn.clone()
    }

    /// Deletes every key under the prefix; returns how many were deleted.
    pub async fn close(mut self) -> anyhow::Result<usize> {
        self.cleaned = true;
        delete_prefixed(&mut self.conn, &self.prefix).await
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let url = self.url.clone();
        let prefix = self.prefix.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = redis::Client::open(url.as_str())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    delete_prefixed(&mut conn, &prefix).await.ok();
                }
            });
        });
        handle.join().ok();
    }
}

async fn delete_prefixed(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> anyhow::Result<usize> {
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await
            .context("scanning test keys")?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("DEL")
                .arg(&keys)
                .query_async(conn)
                .await
                .context("deleting test keys")?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Path of a workspace binary (`scheduler`, `worker`, `fleetctl`, `migrations`), built first
/// (once per test process) so process tests never run a stale executable.
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    static PROFILE_DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = PROFILE_DIR
        .get_or_init(|| build_workspace_bins().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        bail!("binary {} was not built", path.display());
    }
    Ok(path)
}

fn build_workspace_bins() -> anyhow::Result<PathBuf> {
    // The test executable lives in <target>/<profile>/deps/; binaries in <target>/<profile>/.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not inside a cargo target directory")?
        .to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("tests crate is not inside the workspace")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "--quiet",
        "-p",
        "tradefleet-scheduler",
        "-p",
        "tradefleet-worker",
        "-p",
        "tradefleet-migrations",
        "--bins",
    ]);
    // The test runner's per-package variables (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...) must not
    // leak into this build: build scripts that watch them (ring's does) would then see a change
    // and rebuild half the graph twice per run, once here and once in the next plain build.
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str()
            && (k == "CARGO_MANIFEST_DIR"
                || k == "CARGO_MANIFEST_PATH"
                || k == "CARGO_CRATE_NAME"
                || k == "CARGO_PRIMARY_PACKAGE"
                || k == "CARGO_TARGET_TMPDIR"
                || k == "CARGO_RUSTC_CURRENT_DIR"
                || k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_"))
        {
            cmd.env_remove(k);
        }
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // Build into the directory the tests run from, whatever CARGO_TARGET_DIR says.
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let out = cmd
        .output()
        .context("running cargo build for the binaries")?;
    if !out.status.success() {
        bail!(
            "cargo build of the workspace binaries failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(profile_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaces_the_admin_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "tf_test_1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/tf_test_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
        assert!(with_database("nonsense", "x").is_err());
    }
}
