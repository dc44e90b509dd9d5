//! `fleetctl principals`, `credentials` and `vault` as processes: secrets from stdin only, masked
//! listings, ciphertext-only rows, rotation to the newest key, stored credentials used by
//! `exchange check` / `credentials verify` against loopback mocks, and no secret in any output
//! even with TRACE logging on.
#![allow(clippy::unwrap_used)]

mod support;

use predicates::prelude::*;
use serde_json::Value;
use support::{Fleet, K1, K2, fleetctl};
use tradefleet_tests::TestDb;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_KEY: &str = "ABCDkey0123456789xyz";
const SECRET: &str = "s3cr3t-VALUE-never-shown";
const PASSPHRASE: &str = "pass-PHRASE-hidden";

fn add(fleet: &Fleet, exchange: &str, stdin: &str) -> assert_cmd::assert::Assert {
    fleet
        .cmd(&[
            "credentials",
            "add",
            "--principal",
            "alice",
            "--exchange",
            exchange,
            "--api-key",
            API_KEY,
        ])
        .write_stdin(stdin)
        .assert()
}

fn setup_alice(fleet: &Fleet) {
    fleet
        .cmd(&["principals", "add", "alice"])
        .assert()
        .success();
}

/// Every file of the SQLite database (main file and WAL) as bytes.
fn database_bytes(fleet: &Fleet) -> Vec<u8> {
    let file = fleet.sqlite_file().unwrap();
    let mut all = Vec::new();
    for entry in std::fs::read_dir(file.parent().unwrap()).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn schema_and_vault_are_required_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("f.sqlite").display()
    );
    // No --migrate on an empty database: refused, naming the command to run.
    fleetctl()
        .env("DATABASE_URL", &url)
        .args(["principals", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error[schema]: database schema is behind:",
        ))
        .stderr(predicate::str::contains("run `migrations up`"))
        .stderr(predicate::str::contains("or pass --migrate to fleetctl"));
    let mut fleet = Fleet::sqlite();
    setup_alice(&fleet);
    fleet.keys = None;
    fleet.cmd(&["credentials", "list"]).assert().code(2).stderr(
        "error[vault]: no vault key configured: set TRADEFLEET__VAULT__KEYS or \
             TRADEFLEET__VAULT__KEYS_FILE (generate one with `fleetctl vault gen-key`)\n",
    );
    add(&fleet, "binance", &format!("{SECRET}\n"))
        .code(2)
        .stderr(predicate::str::starts_with(
            "error[vault]: no vault key configured",
        ));
}

#[test]
fn principals_are_added_once_and_listed() {
    let fleet = Fleet::sqlite();
    fleet
        .cmd(&["principals", "add", "alice"])
        .assert()
        .success()
        .stdout("added principal alice (id 1)\n");
    fleet
        .cmd(&["principals", "add", "alice"])
        .assert()
        .code(2)
        .stderr("error[already_exists]: principal alice already exists\n");
    fleet.cmd(&["principals", "add", "bob"]).assert().success();
    let v = fleet.json(&["principals", "list"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
}

#[test]
fn bad_credential_input_is_refused_with_exact_messages() {
    let fleet = Fleet::sqlite();
    setup_alice(&fleet);
    fleet
        .cmd(&[
            "credentials",
            "add",
            "--principal",
            "bob",
            "--exchange",
            "binance",
            "--api-key",
            API_KEY,
        ])
        .write_stdin(format!("{SECRET}\n"))
        .assert()
        .code(2)
        .stderr(
            "error[not_found]: principal \"bob\" not found (add it with `fleetctl principals \
             add bob`)\n",
        );
    add(&fleet, "mtgox", "x\n").code(2).stderr(
        "error[config]: registry: configuration error: unknown exchange \"mtgox\"; supported: \
         paper, binance, bybit, okx, bitget, htx, kraken\n",
    );
    add(&fleet, "binance", "\n")
        .code(2)
        .stderr("error[usage]: the API secret is empty\n");
    add(&fleet, "binance", "")
        .code(2)
        .stderr("error[usage]: the API secret is missing: give it on stdin, one value per line\n");
    // OKX needs a passphrase after the secret.
    add(&fleet, "okx", &format!("{SECRET}\n")).code(2).stderr(
        "error[usage]: the API passphrase is missing: give it on stdin, one value per line\n",
    );
    add(&fleet, "binance", &format!("{SECRET}\n")).success();
    add(&fleet, "binance", &format!("{SECRET}\n"))
        .code(2)
        .stderr(
            "error[already_exists]: credentials binance/default of alice already exist (remove \
             them first, or use another --label)\n",
        );
    // Nothing half-stored by the refusals.
    let v = fleet.json(&["credentials", "list"]);
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn added_credentials_are_masked_and_stored_as_ciphertext_only() {
    let fleet = Fleet::sqlite();
    setup_alice(&fleet);
    add(&fleet, "binance", &format!("{SECRET}\n"))
        .success()
        .stdout(
            "stored credentials binance/default of alice (id 1, API key ABCD…, sealed with vault \
             key k1)\n",
        );
    add(&fleet, "okx", &format!("{SECRET}\n{PASSPHRASE}\n")).success();
    let out = fleet
        .cmd(&["credentials", "list"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "ID  PRINCIPAL  EXCHANGE  TESTNET  LABEL    API_KEY  VAULT_KEY  ROTATED\n\
         1   alice      binance   no       default  ABCD…    k1         -\n\
         2   alice      okx       no       default  ABCD…    k1         -\n"
    );
    let v = fleet.json(&["credentials", "list", "--principal", "alice"]);
    assert_eq!(v[1]["has_passphrase"], true);
    assert_eq!(v[0]["api_key"], "ABCD…");
    for secret in [API_KEY, SECRET, PASSPHRASE] {
        assert!(!v.to_string().contains(secret));
        assert!(
            !contains(&database_bytes(&fleet), secret),
            "{secret} is in the database files"
        );
    }
    fleet
        .cmd(&[
            "credentials",
            "remove",
            "--principal",
            "alice",
            "--exchange",
            "okx",
        ])
        .assert()
        .success()
        .stdout("removed credentials okx/default of alice (id 2)\n");
    fleet
        .cmd(&[
            "credentials",
            "remove",
            "--principal",
            "alice",
            "--exchange",
            "okx",
        ])
        .assert()
        .code(2)
        .stderr("error[not_found]: no credentials okx/default of alice\n");
    assert_eq!(
        fleet
            .json(&["credentials", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Without --api-key the key is read from stdin too, before the secret.
    fleet
        .cmd(&[
            "credentials",
            "add",
            "--principal",
            "alice",
            "--exchange",
            "bybit",
            "--testnet",
            "--label",
            "second",
        ])
        .write_stdin(format!("WXYZ{API_KEY}\n{SECRET}\n"))
        .assert()
        .success()
        .stdout(
            "stored credentials bybit (testnet)/second of alice (id 3, API key WXYZ…, sealed \
             with vault key k1)\n",
        );
    // Errors in JSON mode are a JSON object on stdout.
    let out = fleet
        .cmd(&[
            "credentials",
            "remove",
            "--principal",
            "alice",
            "--exchange",
            "okx",
            "--json",
        ])
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["kind"], "not_found");
    assert_eq!(v["error"]["message"], "no credentials okx/default of alice");
}

#[test]
fn gen_key_prints_a_usable_key() {
    let out = fleetctl()
        .args(["vault", "gen-key", "--id", "k9"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let key = String::from_utf8(out).unwrap().trim().to_string();
    assert!(key.starts_with("k9:"), "{key}");
    let mut fleet = Fleet::sqlite();
    fleet.keys = Some(key);
    setup_alice(&fleet);
    add(&fleet, "paper", &format!("{SECRET}\n")).success();
    assert_eq!(fleet.json(&["credentials", "list"])[0]["key_id"], "k9");
    // The same key from a mounted keys file.
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("vault-keys");
    std::fs::write(&keys_file, format!("{}\n", fleet.keys.take().unwrap())).unwrap();
    let out = fleet
        .cmd(&["credentials", "list", "--json"])
        .env("TRADEFLEET__VAULT__KEYS_FILE", &keys_file)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["api_key"], "ABCD…");
    fleetctl()
        .args(["vault", "gen-key", "--id", "bad id"])
        .assert()
        .code(2)
        .stderr(
            "error[usage]: vault key entry #1 has an invalid key id: use 1-64 characters of A-Z \
             a-z 0-9 . _ -\n",
        );
}

fn rotate(fleet: &Fleet, extra: &[&str]) -> Value {
    let mut args = vec!["credentials", "rotate"];
    args.extend_from_slice(extra);
    fleet.json(&args)
}

fn counts(v: &Value) -> (u64, u64, u64) {
    (
        v["scanned"].as_u64().unwrap(),
        v["resealed"].as_u64().unwrap(),
        v["already_current"].as_u64().unwrap(),
    )
}

fn key_ids(fleet: &Fleet) -> Vec<String> {
    fleet
        .json(&["credentials", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key_id"].as_str().unwrap().to_string())
        .collect()
}

/// Rotation re-seals every row to the newest key, resumes after a given id, and the rows still
/// open (through `exchange check --credentials`) once the old key is retired.
fn rotation_flow(fleet: &mut Fleet) {
    setup_alice(fleet);
    add(fleet, "paper", &format!("{SECRET}\n")).success();
    add(fleet, "binance", &format!("{SECRET}\n")).success();
    add(fleet, "okx", &format!("{SECRET}\n{PASSPHRASE}\n")).success();
    assert_eq!(key_ids(fleet), ["k1", "k1", "k1"]);

    // Nothing to do while k1 is the newest key.
    assert_eq!(counts(&rotate(fleet, &[])), (3, 0, 3));

    fleet.keys = Some(format!("{K1},{K2}"));
    // An interrupted run resumes after the last id it finished.
    let v = rotate(fleet, &["--batch", "1", "--start-after", "1"]);
    assert_eq!(counts(&v), (2, 2, 0));
    assert_eq!(v["last_id"], 3);
    assert_eq!(key_ids(fleet), ["k1", "k2", "k2"]);
    fleet
        .cmd(&["credentials", "rotate"])
        .assert()
        .success()
        .stdout(
            "NEWEST_KEY  SCANNED  RESEALED  ALREADY_CURRENT  CONFLICTS  FAILURES\n\
             k2          3        1         2                0          0\n",
        );
    assert_eq!(key_ids(fleet), ["k2", "k2", "k2"]);
    assert_eq!(counts(&rotate(fleet, &[])), (3, 0, 3));

    // The old key retired: everything still opens.
    fleet.keys = Some(K2.to_string());
    let v = fleet.json(&["credentials", "list"]);
    for c in v.as_array().unwrap() {
        assert_eq!(c["api_key"], "ABCD…");
    }
    fleet
        .cmd(&[
            "exchange",
            "check",
            "--exchange",
            "paper",
            "--credentials",
            "alice",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("can_trade"));

    // Without the newest key the rows no longer open, and say why.
    fleet.keys = Some(K1.to_string());
    fleet
        .cmd(&[
            "exchange",
            "check",
            "--exchange",
            "paper",
            "--credentials",
            "alice",
        ])
        .assert()
        .code(1)
        .stderr(
            "error[vault]: credential 1 of principal \"alice\": secret is sealed with vault key \
             \"k2\", which is not in the key ring (was an old key removed before rotation \
             finished?)\n",
        );
    let out = fleet
        .cmd(&["credentials", "rotate"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.ends_with(
            "error[rotation]: 3 credential(s) could not be opened and stay on their old key\n"
        ),
        "{stderr}"
    );
}

#[test]
fn rotation_on_sqlite() {
    let mut fleet = Fleet::sqlite();
    rotation_flow(&mut fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_postgres() {
    let mut fleet = Fleet::with_db(TestDb::postgres().await.unwrap()).await;
    let f = tokio::task::spawn_blocking(move || {
        rotation_flow(&mut fleet);
        fleet
    })
    .await
    .unwrap();
    f.close().await;
}

/// A Binance-style mock that only answers signed calls carrying `API_KEY`; the account may
/// withdraw.
async fn binance_mock() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/time"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"serverTime":1712738600000}"#))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v1/ping"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/account"))
        .and(header("X-MBX-APIKEY", API_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"canTrade":true,"canWithdraw":true,"assets":[{"asset":"USDT","unrealizedProfit":"0","marginBalance":"31.02","availableBalance":"31.02"}]}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fapi/v3/positionRisk"))
        .and(header("X-MBX-APIKEY", API_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    server
}

fn assert_no_secret(output: &std::process::Output, secrets: &[&str]) {
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        for s in secrets {
            assert!(!text.contains(s), "secret {s:?} leaked:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_uses_vault_credentials_and_warns_about_withdrawals() {
    let server = binance_mock().await;
    let uri = server.uri();
    tokio::task::spawn_blocking(move || {
        let fleet = Fleet::sqlite();
        setup_alice(&fleet);
        add(&fleet, "binance", &format!("{SECRET}\n")).success();
        let verify = |extra: &[&str]| {
            let mut args = vec![
                "credentials",
                "verify",
                "--principal",
                "alice",
                "--exchange",
                "binance",
                "--base-url",
                uri.as_str(),
            ];
            args.extend_from_slice(extra);
            fleet.cmd(&args).assert()
        };
        let out = verify(&[])
            .success()
            .stdout(predicate::str::contains("can_withdraw    yes"))
            .stderr("warning: this key may withdraw funds; a trading bot never needs that\n")
            .get_output()
            .clone();
        assert_no_secret(&out, &[API_KEY, SECRET]);
        let out = verify(&["--json"]).success().get_output().stdout.clone();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["account"]["can_trade"], true);
        assert_eq!(v["positions"], Value::Array(vec![]));
        verify(&["--testnet"]).code(2).stderr(
            "error[not_found]: no binance testnet credentials labelled \"default\" for principal \
             \"alice\" (add them with `fleetctl credentials add`)\n",
        );
    })
    .await
    .unwrap();
    // The signed calls carried the key that came out of the vault.
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().any(|r| r.url.path() == "/fapi/v3/account"
        && r.headers.get("X-MBX-APIKEY").map(|h| h.as_bytes()) == Some(API_KEY.as_bytes())));
}

/// The secret-leak test: `exchange check --credentials` with TRACE logging on, against venues
/// that accept (Binance mock) and refuse (OKX mock: the request carries key, signature and
/// passphrase) the vault's credentials. No key, secret or passphrase in any output line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_or_errors_at_trace_level() {
    let binance = binance_mock().await;
    let okx = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/public/time"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"{"code":"0","msg":"","data":[{"ts":"1712738600000"}]}"#),
        )
        .mount(&okx)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v5/account/config"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string(r#"{"code":"50111","msg":"Invalid OK-ACCESS-KEY","data":[]}"#),
        )
        .mount(&okx)
        .await;
    let (binance_uri, okx_uri) = (binance.uri(), okx.uri());
    tokio::task::spawn_blocking(move || {
        let fleet = Fleet::sqlite();
        setup_alice(&fleet);
        add(&fleet, "binance", &format!("{SECRET}\n")).success();
        add(&fleet, "okx", &format!("{SECRET}\n{PASSPHRASE}\n")).success();
        let check = |exchange: &str, uri: &str| {
            fleet
                .cmd(&[
                    "exchange",
                    "check",
                    "--exchange",
                    exchange,
                    "--base-url",
                    uri,
                    "--credentials",
                    "alice",
                ])
                .env("RUST_LOG", "trace")
                .assert()
        };
        let ok = check("binance", &binance_uri)
            .success()
            .get_output()
            .clone();
        let refused = check("okx", &okx_uri).code(1).get_output().clone();
        let refused_err = String::from_utf8_lossy(&refused.stderr).to_string();
        assert!(
            refused_err.contains("error[auth]: okx: authentication failed"),
            "{refused_err}"
        );
        for out in [&ok, &refused] {
            // TRACE logging was really on (the test would prove nothing otherwise).
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("TRACE") || err.contains("DEBUG"), "{err}");
            assert_no_secret(out, &[API_KEY, SECRET, PASSPHRASE]);
        }
    })
    .await
    .unwrap();
    let requests = okx.received_requests().await.unwrap();
    let config = requests
        .iter()
        .find(|r| r.url.path() == "/api/v5/account/config")
        .unwrap();
    assert_eq!(
        config
            .headers
            .get("OK-ACCESS-PASSPHRASE")
            .unwrap()
            .as_bytes(),
        PASSPHRASE.as_bytes()
    );
    assert_eq!(
        config.headers.get("OK-ACCESS-KEY").unwrap().as_bytes(),
        API_KEY.as_bytes()
    );
}
