//! The binaries as an operator meets them: `--help`, configuration errors that name the key, and
//! refusing to start on a database whose schema is behind.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use tradefleet_tests::{TEST_VAULT_KEYS, workspace_bin};

/// The binary `name`, run in `dir` with an empty environment (no stray TRADEFLEET__* values)
/// but the test vault key.
fn bin(name: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(workspace_bin(name).unwrap());
    cmd.env_clear()
        .current_dir(dir)
        .env("TRADEFLEET__VAULT__KEYS", TEST_VAULT_KEYS);
    cmd
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("fleet.sqlite").display())
}

#[test]
fn help_lists_options_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["scheduler", "worker"] {
        bin(name, dir.path())
            .arg("--help")
            .assert()
            .success()
            .stdout(predicate::str::contains("--config"))
            .stdout(predicate::str::contains("TRADEFLEET_CONFIG"))
            .stdout(predicate::str::contains("migrations up"));
    }
    bin("fleetctl", dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("exchanges"))
        .stdout(predicate::str::contains("--json"))
        .stdout(predicate::str::contains("--config"));
    bin("migrations", dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("up"))
        .stdout(predicate::str::contains("down"))
        .stdout(predicate::str::contains("status"))
        .stdout(predicate::str::contains("fresh"))
        .stdout(predicate::str::contains("--database-url"));
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.toml");
    std::fs::write(&file, "[worker]\nconcurency = 4\n").unwrap();
    for name in ["scheduler", "worker"] {
        bin(name, dir.path())
            .arg("--config")
            .arg(&file)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("concurency"));
    }
}

#[test]
fn bad_config_value_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.toml");
    std::fs::write(&file, "[scheduler]\ntick_ms = \"soon\"\n").unwrap();
    for name in ["scheduler", "worker"] {
        bin(name, dir.path())
            .env("TRADEFLEET_CONFIG", &file)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("scheduler.tick_ms"));
    }
    // Environment variables are checked the same way.
    bin("worker", dir.path())
        .env("TRADEFLEET__WORKER__CONCURRENCY", "0")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("worker.concurrency"));
}

#[test]
fn unmigrated_database_is_refused_until_migrations_run() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    for name in ["worker", "scheduler"] {
        bin(name, dir.path())
            .env("DATABASE_URL", &url)
            .assert()
            .failure()
            .stderr(predicate::str::contains("migrations up"))
            .stderr(predicate::str::contains("6 of 6 migrations pending"));
    }

    bin("migrations", dir.path())
        .args(["--database-url", &url, "up"])
        .assert()
        .success()
        .stdout(predicate::str::contains("applied 6 migration(s)"));
    bin("migrations", dir.path())
        .env("DATABASE_URL", &url)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("Pending").not())
        .stdout(predicate::str::contains("m20261121_000006_due_order"));

    // Past every check the worker starts (database, schema, Redis, health server); `--check`
    // stops it at once.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = rt.block_on(tradefleet_tests::TestRedis::new()).unwrap();
    bin("worker", dir.path())
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", redis.url())
        .env("TRADEFLEET__REDIS__KEY_PREFIX", redis.prefix())
        .env("TRADEFLEET__WORKER__LISTEN", "127.0.0.1:0")
        .arg("--check")
        .assert()
        .success();
    rt.block_on(redis.close()).unwrap();
    // The scheduler passes the schema check and goes on to Redis (unreachable here).
    bin("scheduler", dir.path())
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("TRADEFLEET__REDIS__RESPONSE_TIMEOUT_MS", "1000")
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot connect to Redis"))
        .stderr(predicate::str::contains("migrations up").not());

    bin("migrations", dir.path())
        .args(["--database-url", &url, "down", "--steps", "1"])
        .assert()
        .success();
    bin("worker", dir.path())
        .env("DATABASE_URL", &url)
        .assert()
        .failure()
        .stderr(predicate::str::contains("1 of 6 migrations pending"));
}

#[test]
fn migrations_creates_the_default_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    bin("migrations", dir.path()).arg("up").assert().success();
    assert!(dir.path().join("data/tradefleet.sqlite").exists());
}

#[test]
fn unreachable_database_fails_without_leaking_the_password() {
    let dir = tempfile::tempdir().unwrap();
    bin("worker", dir.path())
        .env("DATABASE_URL", "postgres://fleet:hunter2@127.0.0.1:1/tf")
        .env("TRADEFLEET__DATABASE__CONNECT_TIMEOUT_MS", "2000")
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot connect"))
        .stderr(predicate::str::contains("hunter2").not());
}

#[test]
fn the_worker_refuses_to_start_without_a_vault_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    bin("migrations", dir.path())
        .env("DATABASE_URL", &url)
        .arg("up")
        .assert()
        .success();
    bin("worker", dir.path())
        .env_remove("TRADEFLEET__VAULT__KEYS")
        .env("DATABASE_URL", &url)
        .assert()
        .failure()
        .stderr(predicate::str::contains("worker refuses to start"))
        .stderr(predicate::str::contains(
            "no vault key configured: set TRADEFLEET__VAULT__KEYS or TRADEFLEET__VAULT__KEYS_FILE",
        ));
    // A key that is not 32 bytes of base64 is refused too, and not echoed.
    bin("worker", dir.path())
        .env("TRADEFLEET__VAULT__KEYS", "k1:c2hvcnQ=")
        .env("DATABASE_URL", &url)
        .assert()
        .failure()
        .stderr(predicate::str::contains("worker refuses to start"))
        .stderr(predicate::str::contains("c2hvcnQ").not());
}
