//! `fleetctl demo` as a user runs it: the whole fleet (scheduler and two workers on a replay
//! clock) for a few seconds, its JSON summary checked against the database it leaves behind, no
//! child left running; and the message and exit code when Redis can be neither reached nor
//! started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use redis::AsyncCommands;
use rust_decimal::Decimal;
use sea_orm::EntityTrait;
use serde_json::Value;
use tradefleet::config::DatabaseConfig;
use tradefleet::store::{PositionStatus, RunStatus, cycle_run, dead_letter, order, trade};
use tradefleet_tests::{TestRedis, workspace_bin};

/// A TCP port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn demo(args: &[&str], env: &[(&str, &str)], tmp: &Path) -> Output {
    let mut cmd = Command::new(workspace_bin("fleetctl").unwrap());
    cmd.env_clear()
        .arg("demo")
        .args(args)
        .env("TMPDIR", tmp)
        .current_dir(tmp);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Processes whose working directory is inside `dir` (the demo runs its children there).
fn processes_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            let cmdline = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
            out.push(format!("{name}: {}", cmdline.replace('\0', " ")));
        }
    }
    out
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a decimal string, got {v}"))
        .parse()
        .unwrap()
}

fn summary(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the JSON summary ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_the_fleet_and_its_summary_matches_the_database() {
    let redis = TestRedis::new().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let out = demo(
        &["--json", "--keep", "--duration", "12s", "--speed", "2400"],
        &[("REDIS_URL", redis.url()), ("PATH", &path)],
        tmp.path(),
    );
    let s = summary(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("using an ephemeral vault key; nothing is kept"),
        "{stderr}"
    );
    assert!(stderr.contains("runs finished"), "no progress: {stderr}");
    assert_eq!(s["redis"], "shared");
    let dir = PathBuf::from(s["dir"].as_str().unwrap());
    assert!(dir.starts_with(tmp.path()), "{}", dir.display());
    assert!(processes_in(&dir).is_empty(), "{:?}", processes_in(&dir));

    let subs = s["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 4);
    let strategies: HashSet<&str> = subs
        .iter()
        .map(|x| x["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(strategies, HashSet::from(["rsi_bollinger", "mtf_trend"]));
    for sub in subs {
        assert!(sub["cycles"].as_u64().unwrap() > 0, "no cycles: {sub}");
    }
    let checks = &s["checks"];
    assert_eq!(checks["ok"], true, "{checks}");
    assert_eq!(checks["duplicate_runs"].as_array().unwrap().len(), 0);
    assert_eq!(checks["dead_letters"], 0);
    assert_eq!(checks["clean_exit"], true);

    // The kept database says the same.
    let store = tradefleet::store::connect_config(&DatabaseConfig {
        url: format!("sqlite://{}?mode=rw", dir.join("demo.sqlite").display()),
        max_connections: 1,
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    let conn = store.connection();
    let runs = cycle_run::Entity::find().all(conn).await.unwrap();
    let slots: HashSet<(i64, chrono::DateTime<chrono::Utc>)> =
        runs.iter().map(|r| (r.subscription_id, r.slot)).collect();
    assert_eq!(slots.len(), runs.len(), "one run per (subscription, slot)");
    let succeeded: HashSet<(i64, chrono::DateTime<chrono::Utc>)> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .map(|r| (r.subscription_id, r.slot))
        .collect();
    let totals = &s["totals"];
    assert_eq!(totals["cycles"].as_u64().unwrap(), succeeded.len() as u64);
    assert_eq!(
        subs.iter()
            .map(|x| x["cycles"].as_u64().unwrap())
            .sum::<u64>(),
        succeeded.len() as u64
    );
    assert!(
        dead_letter::Entity::find()
            .all(conn)
            .await
            .unwrap()
            .is_empty()
    );
    let orders = order::Entity::find().all(conn).await.unwrap();
    assert!(!orders.is_empty(), "the demo placed no order: {s}");
    assert_eq!(totals["orders"].as_u64().unwrap(), orders.len() as u64);

    // Realized PnL: the closed trades of each subscription, and the total of those.
    let mut pnl: BTreeMap<i64, Decimal> = BTreeMap::new();
    for t in trade::Entity::find().all(conn).await.unwrap() {
        if t.status == PositionStatus::Closed {
            *pnl.entry(t.subscription_id).or_default() += t.realized_pnl.get();
        }
    }
    let mut sum = Decimal::ZERO;
    for sub in subs {
        let id = sub["id"].as_i64().unwrap();
        let got = dec(&sub["realized_pnl"]);
        assert_eq!(got, pnl.get(&id).copied().unwrap_or_default(), "{sub}");
        sum += got;
    }
    assert_eq!(dec(&totals["realized_pnl"]), sum);
    store.close().await.ok();

    // Its Redis keys are gone.
    let prefix = s["redis_prefix"].as_str().unwrap();
    let mut c = redis.conn();
    let left: Vec<String> = c.keys(format!("{prefix}:*")).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    redis.close().await.unwrap();
}

#[test]
fn without_redis_or_redis_server_the_demo_says_how_to_install_it() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let out = demo(
        &[],
        &[
            ("REDIS_URL", url.as_str()),
            ("PATH", empty.path().to_str().unwrap()),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error[redis_unavailable]: Redis is not reachable at {url} and redis-server is not \
             on PATH. Install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: \
             brew install redis) or set REDIS_URL to a reachable server, then run the demo again."
        )
    );
    // Nothing left behind: the temp dir it made is gone.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn without_redis_the_demo_starts_a_private_redis_server_and_stops_it() {
    let Some(path) = std::env::var_os("PATH") else {
        return;
    };
    let has_server = std::env::split_paths(&path).any(|d| d.join("redis-server").is_file());
    if !has_server {
        eprintln!("redis-server is not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let out = demo(
        &["--json", "--duration", "6s", "--subscriptions", "2"],
        &[
            ("REDIS_URL", url.as_str()),
            ("PATH", path.to_str().unwrap()),
        ],
        tmp.path(),
    );
    let s = summary(&out);
    assert_eq!(s["redis"], "private");
    assert_eq!(s["checks"]["ok"], true, "{s}");
    for sub in s["subscriptions"].as_array().unwrap() {
        assert!(sub["cycles"].as_u64().unwrap() > 0, "no cycles: {sub}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("starting a private redis-server"),
        "{stderr}"
    );
    // No redis-server (or anything else) is left running in its directory, which is removed.
    assert!(
        processes_in(tmp.path()).is_empty(),
        "{:?}",
        processes_in(tmp.path())
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
