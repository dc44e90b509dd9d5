//! `fleetctl exchange <op>` as a process: every operation against the bundled PAPER market (the
//! account kept in a temp file across invocations), and the bad-input cases with their exact text.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

/// 2021-11-17 00:00 UTC: the last complete candle (23:55) closed at 1.0881.
const T0: i64 = 1_637_107_200_000;
const M5: i64 = 300_000;

fn fleetctl() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("fleetctl"));
    // No configuration from the developer's environment.
    cmd.env_clear();
    cmd
}

/// `fleetctl exchange <op> --exchange paper --paper-time <at> [--paper-state <state>] <extra>`.
fn paper(op: &str, at: i64, state: Option<&Path>, extra: &[&str]) -> Command {
    let mut cmd = fleetctl();
    cmd.args(["exchange", op, "--exchange", "paper", "--paper-time"])
        .arg(at.to_string());
    if let Some(state) = state {
        cmd.arg("--paper-state").arg(state);
    }
    cmd.args(extra);
    cmd
}

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn time_is_the_paper_clock() {
    let v = json_of(&mut paper("time", T0, None, &[]));
    assert_eq!(v["server_time"], "2021-11-17T00:00:00Z");
    paper("time", T0, None, &[])
        .assert()
        .success()
        .stdout("2021-11-17T00:00:00+00:00\n");
}

#[test]
fn klines_show_the_forming_hour_as_not_closed() {
    // 01:32:30: the 01:00 hour holds the complete candles 01:00..01:25.
    let now = 1_637_110_800_000 + 6 * M5 + 150_000;
    let v = json_of(&mut paper(
        "klines",
        now,
        None,
        &["--timeframe", "1h", "--limit", "2"],
    ));
    let candles = v.as_array().unwrap();
    assert_eq!(candles.len(), 2);
    assert_eq!(candles[0]["open_time"], "2021-11-17T00:00:00Z");
    assert_eq!(candles[0]["closed"], true);
    assert_eq!(candles[1]["open_time"], "2021-11-17T01:00:00Z");
    assert_eq!(candles[1]["closed"], false);
    assert_eq!(candles[1]["high"], "1.0954");
    assert_eq!(candles[1]["close"], "1.0949");
    paper("klines", now, None, &["--timeframe", "1h", "--limit", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "2021-11-17T01:00:00+00:00  1.0803  1.0954  1.0767  1.0949",
        ))
        .stdout(predicate::str::contains("  no\n"));
    paper("klines", now, None, &["--timeframe", "3m"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error[unsupported]: paper: not supported: timeframe 3m is not a multiple of the replay's 5m base interval",
        ));
}

#[test]
fn ticker_instrument_and_balance() {
    let v = json_of(&mut paper("ticker", T0, None, &[]));
    assert_eq!(v["last"], "1.0881");
    assert_eq!(v["symbol"], "XRP/USDT:USDT");
    let v = json_of(&mut paper("instrument", T0, None, &[]));
    assert_eq!(
        (&v["tick_size"], &v["step_size"], &v["min_notional"]),
        (
            &Value::from("0.0001"),
            &Value::from("0.1"),
            &Value::from("5")
        )
    );
    paper("balance", T0, None, &["--asset", "USDT"])
        .assert()
        .success()
        .stdout("ASSET  EQUITY  AVAILABLE  UNREALIZED_PNL\nUSDT   10000   10000      0\n");
}

#[test]
fn check_reports_the_simulated_account() {
    let v = json_of(&mut paper("check", T0, None, &[]));
    assert_eq!(v["exchange"], "paper");
    assert_eq!(v["account"]["can_trade"], true);
    assert_eq!(v["account"]["can_withdraw"], false);
    assert_eq!(v["positions"].as_array().unwrap().len(), 0);
    paper("check", T0, None, &[])
        .assert()
        .success()
        .stdout(predicate::str::contains("simulated account \"default\""));
}

#[test]
fn an_order_lifecycle_across_invocations_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper.json");
    let st = Some(state.as_path());

    paper("leverage", T0, st, &["--value", "5"])
        .assert()
        .success()
        .stdout("leverage of XRP/USDT:USDT set to 5x\n");
    let buy = [
        "--side",
        "buy",
        "--type",
        "market",
        "--quantity",
        "100",
        "--client-order-id",
        "cli1",
    ];
    // 1.0881 x 1.0002 = 1.08831762 -> up 1.0884; fee 100 x 1.0884 x 0.0005 = 0.05442.
    let v = json_of(&mut paper("order", T0, st, &buy));
    assert_eq!(v["placement"], "placed");
    assert_eq!(v["order"]["status"], "filled");
    assert_eq!(v["order"]["average_price"], "1.0884");
    assert_eq!(v["order"]["fee"], "0.05442");
    // The same client id again: the existing order, no second position.
    let v = json_of(&mut paper("order", T0, st, &buy));
    assert_eq!(v["placement"], "existing");
    let v = json_of(&mut paper("positions", T0, st, &[]));
    let p = v.as_array().unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(
        (&p[0]["side"], &p[0]["quantity"], &p[0]["leverage"]),
        (&Value::from("long"), &Value::from("100"), &Value::from("5"))
    );

    let sl = [
        "--side",
        "sell",
        "--type",
        "stop-market",
        "--quantity",
        "100",
        "--trigger-price",
        "1.0800",
        "--reduce-only",
        "--client-order-id",
        "cli2",
    ];
    paper("order", T0, st, &sl).assert().success();
    let tp = [
        "--side",
        "sell",
        "--type",
        "take-profit-market",
        "--quantity",
        "100",
        "--trigger-price",
        "1.0950",
        "--reduce-only",
        "--client-order-id",
        "cli3",
    ];
    paper("order", T0, st, &tp).assert().success();
    let v = json_of(&mut paper("open-orders", T0, st, &[]));
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["client_order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cli2", "cli3"]);

    paper("cancel", T0, st, &["--client-order-id", "cli3"])
        .assert()
        .success()
        .stdout("canceled cli3\n");
    let v = json_of(&mut paper(
        "order-status",
        T0,
        st,
        &["--client-order-id", "cli3"],
    ));
    assert_eq!(v["status"], "canceled");

    // Ten minutes later the 00:05 candle (low 1.0798) has triggered the stop at 1.0800:
    // 1.08 x 0.9998 = 1.079784 -> down 1.0797.
    let later = T0 + 2 * M5;
    let v = json_of(&mut paper(
        "order-status",
        later,
        st,
        &["--client-order-id", "cli2"],
    ));
    assert_eq!(v["status"], "triggered");
    assert_eq!(v["average_price"], "1.0797");
    let v = json_of(&mut paper("positions", later, st, &[]));
    assert_eq!(v.as_array().unwrap().len(), 0);
    // 10000 - 0.05442 (entry fee) + 100 x (1.0797 - 1.0884) = -0.87 - 100 x 1.0797 x 0.0005
    // = 0.053985 -> 9999.021595.
    let v = json_of(&mut paper("balance", later, st, &[]));
    assert_eq!(v["equity"], "9999.021595");

    paper(
        "order",
        later,
        st,
        &[
            "--side",
            "buy",
            "--type",
            "limit",
            "--quantity",
            "100",
            "--price",
            "1.0",
            "--client-order-id",
            "cli4",
        ],
    )
    .assert()
    .success();
    paper("cancel-all", later, st, &[])
        .assert()
        .success()
        .stdout("canceled 1 order(s) of XRP/USDT:USDT\n");
    paper("open-orders", later, st, &[])
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("CLIENT_ID").and(predicate::str::contains("cli4").not()),
        );
}

#[test]
fn a_generated_client_order_id_is_valid_and_reported() {
    let v = json_of(&mut paper(
        "order",
        T0,
        None,
        &["--side", "sell", "--type", "market", "--quantity", "10"],
    ));
    let id = v["order"]["client_order_id"].as_str().unwrap();
    assert!(id.starts_with("fc") && id.len() <= 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
}

#[test]
fn unknown_exchange_is_a_usage_error() {
    fleetctl()
        .args(["exchange", "ticker", "--exchange", "mtgox"])
        .assert()
        .code(2)
        .stderr(
            "error[config]: registry: configuration error: unknown exchange \"mtgox\"; \
             supported: paper, binance, bybit, okx, bitget, htx, kraken\n",
        );
}

#[test]
fn bad_symbols_are_usage_errors() {
    paper("ticker", T0, None, &["--symbol", "BTCUSDT"])
        .assert()
        .code(2)
        .stderr(
            "error[usage]: bad symbol \"BTCUSDT\": missing ':SETTLE' (only perpetual futures are \
             traded) (expected BASE/QUOTE:SETTLE, e.g. BTC/USDT:USDT)\n",
        );
    paper("ticker", T0, None, &["--symbol", "BTC/USDT:USDT"])
        .assert()
        .code(2)
        .stderr(
            "error[unknown_symbol]: paper: unknown symbol BTC/USDT:USDT: the paper market \
             replays XRP/USDT:USDT only\n",
        );
}

#[test]
fn bad_order_flags_are_usage_errors() {
    paper(
        "order",
        T0,
        None,
        &["--side", "up", "--type", "market", "--quantity", "1"],
    )
    .assert()
    .code(2)
    .stderr("error[usage]: --side: unknown side \"up\"\n");
    paper(
        "order",
        T0,
        None,
        &["--side", "buy", "--type", "limit", "--quantity", "100"],
    )
    .assert()
    .code(2)
    .stderr("error[usage]: --type limit needs --price\n");
    paper(
        "order",
        T0,
        None,
        &[
            "--side",
            "buy",
            "--type",
            "stop-market",
            "--quantity",
            "100",
        ],
    )
    .assert()
    .code(2)
    .stderr("error[usage]: --type stop-market needs --trigger-price\n");
    // In JSON mode the error is a JSON object on stdout.
    let out = paper(
        "order",
        T0,
        None,
        &[
            "--side",
            "up",
            "--type",
            "market",
            "--quantity",
            "1",
            "--json",
        ],
    )
    .assert()
    .code(2)
    .get_output()
    .stdout
    .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    assert_eq!(v["error"]["message"], "--side: unknown side \"up\"");
}

#[test]
fn venue_refusals_exit_1_with_the_kind() {
    // Below the 5 USDT minimum notional: 1 x 1.0881.
    paper(
        "order",
        T0,
        None,
        &["--side", "buy", "--type", "market", "--quantity", "1"],
    )
    .assert()
    .code(1)
    .stderr("error[below_minimum]: paper: notional 1.0881 is below the minimum 5\n");
    paper("order-status", T0, None, &["--client-order-id", "nope"])
        .assert()
        .code(1)
        .stderr("error[order_not_found]: paper: no order with client order id nope\n");
}

#[test]
fn vault_credentials_need_the_database_the_vault_and_a_stored_account() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("f.sqlite").display()
    );
    let check = |extra: &[&str]| {
        let mut cmd = paper("check", T0, None, &["--credentials", "alice"]);
        cmd.env("DATABASE_URL", &url).args(extra);
        cmd
    };
    check(&[])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error[schema]: database schema is behind:",
        ));
    check(&["--migrate"]).assert().code(2).stderr(
        "error[vault]: no vault key configured: set TRADEFLEET__VAULT__KEYS or \
         TRADEFLEET__VAULT__KEYS_FILE (generate one with `fleetctl vault gen-key`)\n",
    );
    check(&[])
        .env(
            "TRADEFLEET__VAULT__KEYS",
            "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .assert()
        .code(2)
        .stderr(
            "error[not_found]: principal \"alice\" not found (add it with `fleetctl principals \
             add alice`)\n",
        );
}

#[test]
fn credentials_come_in_pairs_and_are_never_printed() {
    fleetctl()
        .args(["exchange", "check", "--exchange", "binance"])
        .env("TRADEFLEET_API_KEY", "key-sekret-123")
        .assert()
        .code(2)
        .stderr(
            "error[usage]: TRADEFLEET_API_KEY and TRADEFLEET_API_SECRET must be set together\n",
        );
    // A venue that cannot be reached (a closed local port; tests never call a real exchange):
    // the error is typed, and no secret leaks.
    fleetctl()
        .args([
            "exchange",
            "check",
            "--exchange",
            "binance",
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .env("TRADEFLEET_API_KEY", "key-sekret-123")
        .env("TRADEFLEET_API_SECRET", "secret-sekret-456")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("sekret").not())
        .stderr(predicate::str::contains("sekret").not())
        .stderr(predicate::str::contains("error[network]"));
    // PAPER-only flags are refused elsewhere.
    fleetctl()
        .args([
            "exchange",
            "ticker",
            "--exchange",
            "okx",
            "--paper-time",
            "0",
        ])
        .assert()
        .code(2)
        .stderr("error[usage]: --paper-state and --paper-time apply to --exchange paper only\n");
}

#[test]
fn a_corrupt_state_file_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper.json");
    std::fs::write(&state, "{ not json").unwrap();
    paper("balance", T0, Some(&state), &[])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(format!(
            "error[config]: paper: configuration error: paper state file {} is not a valid state:",
            state.display()
        )));
}
