//! The harness cleans up after itself: test databases are dropped (by `close` or by `Drop` after a
//! panic) and Redis keys under a test's prefix are deleted, leaving other keys alone.
#![allow(clippy::unwrap_used)]

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tradefleet_tests::{Backend, DEFAULT_ADMIN_URL, TestDb, TestRedis};

async fn postgres_database_exists(name: &str) -> bool {
    let admin_url =
        std::env::var("TEST_DATABASE_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
    let admin = Database::connect(admin_url.as_str()).await.unwrap();
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    admin.close().await.ok();
    n == 1
}

fn database_name(db: &TestDb) -> String {
    let url = db.url();
    let name = url.rsplit('/').next().unwrap().to_string();
    assert!(name.starts_with("tf_test_"), "{url}");
    name
}

#[tokio::test]
async fn postgres_database_is_dropped_on_close() {
    let db = TestDb::postgres().await.unwrap();
    let name = database_name(&db);
    assert!(postgres_database_exists(&name).await);
    db.close().await;
    assert!(!postgres_database_exists(&name).await);
}

#[tokio::test]
async fn postgres_database_is_dropped_on_drop() {
    let db = TestDb::new(Backend::Postgres, false).await.unwrap();
    let name = database_name(&db);
    assert!(postgres_database_exists(&name).await);
    drop(db);
    assert!(!postgres_database_exists(&name).await);
}

#[tokio::test]
async fn sqlite_file_is_removed_on_close() {
    let db = TestDb::sqlite().await.unwrap();
    let path = db
        .url()
        .strip_prefix("sqlite://")
        .and_then(|s| s.split('?').next())
        .unwrap()
        .to_string();
    assert!(std::path::Path::new(&path).exists());
    db.close().await;
    assert!(!std::path::Path::new(&path).exists());
}

#[tokio::test]
async fn redis_keys_under_the_prefix_are_deleted() {
    let mine = TestRedis::new().await.unwrap();
    let other = TestRedis::new().await.unwrap();
    assert_ne!(mine.prefix(), other.prefix());
    let mut conn = mine.conn();
    for k in ["a", "lock:sub:1", "fence:sub:1"] {
        let _: () = redis::cmd("SET")
            .arg(mine.key(k))
            .arg("v")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg(other.key("a"))
        .arg("keep")
        .query_async(&mut conn)
        .await
        .unwrap();
    let probe = mine.key("a");
    assert_eq!(mine.close().await.unwrap(), 3);
    let gone: Option<String> = redis::cmd("GET")
        .arg(&probe)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(gone, None);
    let kept: Option<String> = redis::cmd("GET")
        .arg(other.key("a"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("keep"));

    // Dropped without close: keys are still removed.
    let key = other.key("a");
    drop(other);
    let gone: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(gone, None);
}
