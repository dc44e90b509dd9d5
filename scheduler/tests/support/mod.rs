//! Shared by the fleetctl process tests: the binary with an empty environment, a database of its
//! own (SQLite file or PostgreSQL) and fixed vault keys.
#![allow(dead_code, clippy::unwrap_used)]

use assert_cmd::Command;
use tradefleet_tests::TestDb;

/// Two vault master keys (test values only).
pub const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// fleetctl with no configuration from the developer's environment.
pub fn fleetctl() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("fleetctl"));
    cmd.env_clear();
    cmd
}

/// A database for one test and the fleetctl invocations pointed at it.
pub struct Fleet {
    pub db: Option<TestDb>,
    /// A SQLite file fleetctl itself migrates with --migrate.
    dir: Option<tempfile::TempDir>,
    pub url: String,
    pub keys: Option<String>,
}

impl Fleet {
    /// An empty SQLite file: fleetctl is run with `--migrate`.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("fleet.sqlite").display()
        );
        Self {
            db: None,
            dir: Some(dir),
            url,
            keys: Some(K1.to_string()),
        }
    }

    /// A database migrated by the harness (PostgreSQL or SQLite), for tests that seed rows.
    pub async fn with_db(db: TestDb) -> Self {
        let url = db.url().to_string();
        Self {
            db: Some(db),
            dir: None,
            url,
            keys: Some(K1.to_string()),
        }
    }

    pub fn db(&self) -> &TestDb {
        self.db.as_ref().unwrap()
    }

    /// The SQLite file, when there is one.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("fleet.sqlite"))
    }

    /// `fleetctl [--migrate] <args>` against this database with the vault keys set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = fleetctl();
        cmd.env("DATABASE_URL", &self.url);
        if let Some(keys) = &self.keys {
            cmd.env("TRADEFLEET__VAULT__KEYS", keys);
        }
        if self.dir.is_some() {
            cmd.arg("--migrate");
        }
        cmd.args(args);
        cmd
    }

    /// Runs `args` with `--json`, expects success, returns the parsed output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .cmd(args)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    }

    pub async fn close(self) {
        if let Some(db) = self.db {
            db.close().await;
        }
    }
}
