//! `fleetctl analyze` as a process: JSON values against the TA-Lib reference for the bundled
//! market data, the human table, and the exact messages for bad input.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

const INDICATORS: [&str; 14] = [
    "rsi_14",
    "sma_20",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "stoch_k",
    "stoch_d",
    "volume_ratio",
];

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn market(tf: &str) -> String {
    repo_file(&format!("shared/data/market/XRPUSDT-PERP-{tf}.csv"))
        .display()
        .to_string()
}

fn reference(label: &str) -> Value {
    let path = repo_file(&format!(
        "shared/tests/fixtures/talib/reference_{label}.json"
    ));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fleetctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetctl"))
}

fn analyze_json(args: &[&str]) -> Value {
    let out = fleetctl()
        .arg("analyze")
        .args(args)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

/// Every indicator key of the JSON equals TA-Lib's last value (1e-6 relative, 1e-10 absolute
/// below 1e-4, as in the library's tests).
fn assert_matches_reference(json: &Value, reference: &Value) {
    for key in INDICATORS {
        let want = reference["series"][key].as_array().unwrap().last().unwrap();
        let (got, want) = (json[key].as_f64().unwrap(), want.as_f64().unwrap());
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1e-4),
            "{key}: fleetctl {got}, TA-Lib {want}"
        );
    }
    let last_time = reference["open_time"].as_array().unwrap().last().unwrap();
    let time = chrono::DateTime::parse_from_rfc3339(json["time"].as_str().unwrap()).unwrap();
    assert_eq!(time.timestamp_millis(), last_time.as_i64().unwrap());
}

#[test]
fn json_values_match_talib_on_the_bundled_5m_and_1h_data() {
    for tf in ["5m", "1h"] {
        let json = analyze_json(&["--csv", &market(tf)]);
        assert_matches_reference(&json, &reference(tf));
        assert_eq!(json["timeframe"], tf);
        assert_eq!(json["strategy"], "rsi_bollinger");
        let action = json["signal"]["action"].as_str().unwrap();
        assert!(["BUY", "SELL", "HOLD", "CLOSE"].contains(&action));
        let confidence = json["signal"]["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
        assert!(!json["signal"]["reasons"].as_array().unwrap().is_empty());
    }
}

#[test]
fn aggregates_a_finer_csv_to_the_requested_timeframe() {
    let json = analyze_json(&["--csv", &market("5m"), "--timeframe", "15m"]);
    assert_matches_reference(&json, &reference("15m_from_5m"));
    assert_eq!(json["csv_interval"], "5m");
    assert_eq!(json["candles"], 666);
}

#[test]
fn mtf_trend_gets_its_hourly_frame_from_the_5m_csv() {
    let json = analyze_json(&["--csv", &market("5m"), "--strategy", "mtf_trend"]);
    assert_eq!(json["strategy"], "mtf_trend");
    assert_eq!(json["other_timeframes"][0]["timeframe"], "1h");
    let signal = &json["signal"];
    if let Some(stop) = signal["stop_loss"].as_str() {
        let entry: f64 = signal["entry"].as_str().unwrap().parse().unwrap();
        let stop: f64 = stop.parse().unwrap();
        let take: f64 = signal["take_profit"].as_str().unwrap().parse().unwrap();
        assert!((stop < entry) == (entry < take), "{signal}");
    }
}

#[test]
fn prints_a_table_by_default() {
    let out = fleetctl()
        .args(["analyze", "--csv", &market("1h")])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "INDICATOR",
        "rsi_14",
        "bb_lower",
        "SIGNAL",
        "action",
        "rsi_bollinger",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

fn fails_with(args: &[&str], message: &str) {
    fleetctl()
        .arg("analyze")
        .args(args)
        .assert()
        .code(2)
        .stderr(format!("error[usage]: {message}\n"));
}

#[test]
fn missing_file() {
    fails_with(
        &["--csv", "/nonexistent/candles.csv"],
        "cannot open /nonexistent/candles.csv: No such file or directory (os error 2)",
    );
}

#[test]
fn malformed_row_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "open_time,open,high,low,close,volume\n\
         1636934400000,1.1893,1.1954,1.1891,1.1941,9289043.5\n\
         1636934700000,1.1941,1.1993,1.1934,oops,7267451.9\n",
    )
    .unwrap();
    let shown = path.display().to_string();
    fails_with(
        &["--csv", &shown],
        &format!("{shown}: line 3: close \"oops\" is not a decimal number"),
    );
}

#[test]
fn unknown_strategy() {
    fails_with(
        &["--csv", &market("1h"), "--strategy", "martingale"],
        "unknown strategy \"martingale\" (known: mtf_trend, rsi_bollinger)",
    );
}

#[test]
fn unsupported_timeframe() {
    fails_with(
        &["--csv", &market("1h"), "--timeframe", "2m"],
        "unsupported timeframe \"2m\" (supported: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w)",
    );
    fails_with(
        &["--csv", &market("1h"), "--timeframe", "5m"],
        "cannot aggregate 1h candles to 5m: the target timeframe is shorter than the data's",
    );
}

#[test]
fn too_few_candles_and_bad_strategy_config() {
    fails_with(
        &["--csv", &market("1h"), "--timeframe", "4h"],
        "4h indicators: analysis snapshot: need at least 34 closed candles, got 24",
    );
    fails_with(
        &[
            "--csv",
            &market("1h"),
            "--strategy-config",
            r#"{"oversold": 80}"#,
        ],
        "invalid config for strategy rsi_bollinger: field `oversold`: must be above 0 and below overbought (70), got 80",
    );
}

#[test]
fn errors_are_json_with_json() {
    let out = fleetctl()
        .args([
            "analyze",
            "--csv",
            &market("1h"),
            "--strategy",
            "nope",
            "--json",
        ])
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["error"]["kind"], "usage");
    assert_eq!(
        json["error"]["message"],
        "unknown strategy \"nope\" (known: mtf_trend, rsi_bollinger)"
    );
}
