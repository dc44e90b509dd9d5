//! The observability of deploy/ checked against a real Prometheus: the test starts the
//! `scheduler` and a `worker` over a test database and Redis prefix with a few PAPER
//! subscriptions, lets them run real cycles, starts `prometheus` (private port, temp dir, 1 s
//! scrape interval, the alert rules of deploy/prometheus/alerts.yml) scraping both, then
//! evaluates every PromQL expression of the Grafana dashboards and of the loaded rules through
//! the HTTP API. Every expression must parse; every panel query must return data. Expressions are
//! read from the files, so a new panel or rule is covered without touching this test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;
use tradefleet::store::{PositionStatus, RunFilter, RunStatus, position};
use tradefleet::telemetry::positions_without_stop_loss;
use tradefleet_tests::fleet::{
    free_port, http_get, paper_subscriptions, spawn_scheduler, spawn_worker, trading_configs,
    url_encode,
};
use tradefleet_tests::{TestDb, TestRedis};

/// Only a failing test waits this long.
const PATIENCE: Duration = Duration::from_secs(45);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(scheduler_port: u16, worker_port: u16) -> Prometheus {
        let bin = which("prometheus").expect(
            "the `prometheus` server is needed: run scripts/check-observability.sh (installs it \
             as root with apt-get) or put it on PATH",
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            workspace().join("deploy/prometheus/alerts.yml"),
            dir.path().join("alerts.yml"),
        )
        .unwrap();
        // The job names of deploy/prometheus/prometheus.yml (the dashboards and rules use them).
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - alerts.yml\n\
             scrape_configs:\n\
             \x20 - job_name: tradefleet-scheduler\n    static_configs:\n      - targets: [\"127.0.0.1:{scheduler_port}\"]\n\
             \x20 - job_name: tradefleet-worker\n    static_configs:\n      - targets: [\"127.0.0.1:{worker_port}\"]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port().unwrap();
        let child = Command::new(bin)
            .current_dir(dir.path())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The `data` of a successful API answer, or the error text.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) =
            http_get(self.port, path).ok_or_else(|| "prometheus does not answer".to_string())?;
        let v: Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// The instant-vector (or scalar) result of `expr` now.
    fn query(&self, expr: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}", url_encode(expr)))
    }

    fn scalar(&self, expr: &str) -> Option<f64> {
        let data = self.query(expr).ok()?;
        let value = &data["result"].as_array()?.first()?["value"][1];
        value.as_str()?.parse().ok()
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Grafana's variables, as a dashboard viewer would have them (all venues, a short range).
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__interval", "5s")
        .replace("$__range", "5m")
        .replace("$venue", ".*")
}

/// Every `(dashboard, panel title, expr)` of deploy/grafana/dashboards, nested rows included.
fn dashboard_queries() -> Vec<(String, String, String)> {
    fn walk(file: &str, v: &Value, out: &mut Vec<(String, String, String)>) {
        if let Some(panels) = v["panels"].as_array() {
            for p in panels {
                for t in p["targets"].as_array().into_iter().flatten() {
                    if let Some(expr) = t["expr"].as_str() {
                        out.push((
                            file.to_string(),
                            p["title"].as_str().unwrap_or("?").to_string(),
                            expr.to_string(),
                        ));
                    }
                }
                walk(file, p, out);
            }
        }
    }
    let dir = workspace().join("deploy/grafana/dashboards");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "dashboards missing in {}", dir.display());
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let before = out.len();
        walk(&name, &v, &mut out);
        assert!(out.len() > before, "{name} has no queries");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_query_works_against_a_live_fleet() {
    let db = TestDb::postgres().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    // One that holds (default config) and two that open a position with SL/TP orders.
    let [buy, sell] = trading_configs();
    let subs = paper_subscriptions(db.store(), &[serde_json::json!({}), buy, sell], 300)
        .await
        .unwrap();
    let mut scheduler = spawn_scheduler(&db, &redis, &[]).unwrap();
    let mut worker = spawn_worker(&db, &redis, &[]).unwrap();
    let prom = Prometheus::start(scheduler.port, worker.port);
    let deadline = Instant::now() + PATIENCE;

    // Real cycles: every subscription's first slot runs to a succeeded run.
    loop {
        let runs = db.store().list_runs(&RunFilter::default()).await.unwrap();
        let done = runs
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count();
        if done == subs.len() {
            break;
        }
        scheduler.check_alive().unwrap();
        worker.check_alive().unwrap();
        assert!(
            Instant::now() < deadline,
            "cycles did not succeed: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Prometheus has scraped both processes since the cycles, several times.
    let succeeded = "sum(tradefleet_jobs_succeeded_total)";
    loop {
        let up = prom.scalar("sum(up)");
        let scrapes = prom.scalar("min(count_over_time(up[1m]))");
        let jobs = prom.scalar(succeeded);
        if up == Some(2.0) && scrapes.is_some_and(|n| n >= 4.0) && jobs == Some(3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never saw the fleet: up={up:?} scrapes={scrapes:?} succeeded={jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // What the fleet did shows up, with bounded labels only.
    assert_eq!(
        prom.scalar("sum(tradefleet_jobs_enqueued_total{job=\"tradefleet-scheduler\"})"),
        Some(3.0)
    );
    assert_eq!(
        prom.scalar(
            "sum(tradefleet_cycle_duration_seconds_count{exchange=\"paper\",stage=\"total\"})"
        ),
        Some(3.0)
    );
    assert_eq!(
        prom.scalar("sum(tradefleet_lock_acquired_total)"),
        Some(3.0)
    );
    assert_eq!(
        prom.scalar("sum(tradefleet_schedule_lateness_seconds_count)"),
        Some(3.0)
    );
    let balance_calls = prom
        .scalar("sum(tradefleet_exchange_requests_total{venue=\"paper\",endpoint=\"balance\",outcome=\"ok\"})")
        .unwrap();
    assert!(balance_calls >= 3.0, "{balance_calls}");
    // The two trading subscriptions: at least one opened a position with its stop-loss.
    for role in ["entry", "stop_loss"] {
        let placed = prom
            .scalar(&format!(
                "sum(tradefleet_orders_total{{venue=\"paper\",role=\"{role}\",outcome=\"placed\"}})"
            ))
            .unwrap();
        assert!(placed >= 1.0, "{role}: {placed}");
    }
    let open_positions = position::Entity::find()
        .filter(position::Column::Status.eq(PositionStatus::Open))
        .count(db.conn())
        .await
        .unwrap();
    assert!(open_positions >= 1);
    assert_eq!(positions_without_stop_loss(db.store()).await.unwrap(), 0);
    assert_eq!(
        prom.scalar("max(tradefleet_positions_without_stop_loss)"),
        Some(0.0)
    );
    assert_eq!(prom.scalar("max(tradefleet_scheduler_leader)"), Some(1.0));
    assert!(prom.scalar("max(process_resident_memory_bytes)").unwrap() > 1e6);
    let sub_labels = prom
        .query("count({__name__=~\"tradefleet_.*\", subscription_id!=\"\"})")
        .unwrap();
    assert_eq!(
        sub_labels["result"],
        serde_json::json!([]),
        "subscription ids as labels"
    );

    // Every panel query parses and returns data.
    let queries = dashboard_queries();
    let mut failures = Vec::new();
    for (file, title, expr) in &queries {
        let promql = grafana_to_promql(expr);
        match prom.query(&promql) {
            Ok(data) => {
                let empty = data["result"].as_array().is_some_and(Vec::is_empty);
                if empty {
                    failures.push(format!("{file} / {title}: no data: {promql}"));
                }
            }
            Err(e) => failures.push(format!("{file} / {title}: {e}: {promql}")),
        }
    }

    // Every rule Prometheus loaded from alerts.yml evaluates without error and parses on its own.
    let mut rules;
    loop {
        let groups = prom.api("/api/v1/rules").unwrap();
        rules = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect::<Vec<_>>();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules never evaluated: {rules:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let file_rules = std::fs::read_to_string(workspace().join("deploy/prometheus/alerts.yml"))
        .unwrap()
        .matches("- alert:")
        .count();
    assert_eq!(rules.len(), file_rules, "prometheus loaded every rule");
    for r in &rules {
        let name = r["name"].as_str().unwrap_or("?");
        if r["health"] != "ok" {
            failures.push(format!(
                "rule {name}: health {} {}",
                r["health"], r["lastError"]
            ));
        }
        let expr = r["query"].as_str().unwrap();
        if let Err(e) = prom.query(expr) {
            failures.push(format!("rule {name}: {e}: {expr}"));
        }
        assert!(
            r["duration"].as_f64().is_some(),
            "rule {name} has no `for:` duration"
        );
        assert!(
            r["annotations"]["summary"].is_string() && r["annotations"]["description"].is_string(),
            "rule {name} lacks a summary or description"
        );
    }
    // The fleet is healthy: none of the paging alerts fire.
    let firing: Vec<_> = rules
        .iter()
        .filter(|r| r["state"] == "firing" && r["labels"]["severity"] == "page")
        .map(|r| r["name"].clone())
        .collect();
    assert!(
        firing.is_empty(),
        "paging alerts firing on a healthy fleet: {firing:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries and {} rules failed:\n{}",
        failures.len(),
        queries.len(),
        rules.len(),
        failures.join("\n")
    );

    // Cancel the stop-losses on record: the sampled gauge counts the unprotected positions and
    // the paging alert goes pending.
    db.conn()
        .execute_unprepared("UPDATE orders SET status = 'canceled' WHERE role = 'stop_loss'")
        .await
        .unwrap();
    assert_eq!(
        positions_without_stop_loss(db.store()).await.unwrap(),
        open_positions
    );
    let pending =
        "count(ALERTS{alertname=\"TradefleetPositionWithoutStopLoss\",alertstate=\"pending\"})";
    loop {
        let gauge = prom.scalar("max(tradefleet_positions_without_stop_loss)");
        if gauge == Some(open_positions as f64) && prom.scalar(pending) == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unprotected position never showed: gauge {gauge:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    drop(prom);
    drop(worker);
    drop(scheduler);
    redis.close().await.unwrap();
    db.close().await;
}
