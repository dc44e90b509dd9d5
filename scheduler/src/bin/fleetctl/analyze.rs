//! `fleetctl analyze`: the analysis snapshot and a strategy's signal for the last closed candle
//! of a candle CSV, so an operator can see what a bot would decide on given data.
//!
//! The CSV's interval is inferred from its rows. `--timeframe` defaults to that interval; a
//! longer timeframe is built by aggregating complete buckets of CSV candles (a shorter one is
//! refused). Timeframes the strategy needs besides (e.g. `mtf_trend`'s 1h trend frame) are
//! aggregated the same way. A candle counts as closed once its close time has passed.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::Args;
use serde::Serialize;
use tradefleet::bot::candles::{aggregate, read_csv};
use tradefleet::bot::indicators::Snapshot;
use tradefleet::bot::signal::Signal;
use tradefleet::bot::strategy::{MarketView, build};
use tradefleet::domain::{Candle, Timeframe};

use crate::Globals;
use crate::output::{CliError, CliResult, print_json, print_table};

#[derive(Debug, Args)]
pub(crate) struct AnalyzeArgs {
    /// Candle CSV with the header open_time,open,high,low,close,volume (open_time in Unix ms).
    #[arg(long)]
    csv: PathBuf,
    /// Timeframe to analyze (1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w); CSV candles are
    /// aggregated up to it. Default: the CSV's own interval.
    #[arg(long)]
    timeframe: Option<String>,
    /// Strategy to run.
    #[arg(long, default_value = "rsi_bollinger")]
    strategy: String,
    /// Strategy configuration as a JSON object (unset fields keep their defaults).
    #[arg(long, value_name = "JSON")]
    strategy_config: Option<String>,
}

/// What `--json` prints: the snapshot's keys at the top level, then the signal.
#[derive(Debug, Serialize)]
struct Report<'a> {
    csv: String,
    csv_interval: Timeframe,
    /// Closed candles of the analyzed timeframe.
    candles: usize,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    strategy: &'a str,
    signal: &'a Signal,
    /// Snapshots of the other timeframes the strategy looked at.
    other_timeframes: Vec<&'a Snapshot>,
}

pub(crate) fn analyze(globals: &Globals, args: AnalyzeArgs) -> CliResult {
    let timeframe = args
        .timeframe
        .as_deref()
        .map(str::parse::<Timeframe>)
        .transpose()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let config = match args.strategy_config.as_deref() {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| CliError::usage(format!("--strategy-config is not valid JSON: {e}")))?,
        None => serde_json::Value::Null,
    };
    let strategy = build(&args.strategy, &config).map_err(|e| CliError::usage(e.to_string()))?;

    let path = args.csv.display().to_string();
    let file =
        File::open(&args.csv).map_err(|e| CliError::usage(format!("cannot open {path}: {e}")))?;
    let series = read_csv(file, Utc::now()).map_err(|e| CliError::usage(format!("{path}: {e}")))?;
    let timeframe = timeframe.unwrap_or(series.interval);

    let mut wanted = vec![timeframe];
    for tf in strategy.timeframes() {
        if !wanted.contains(&tf) {
            wanted.push(tf);
        }
    }
    let mut frames: Vec<(Timeframe, Vec<Candle>)> = Vec::with_capacity(wanted.len());
    for tf in wanted {
        let candles = aggregate(&series.candles, series.interval, tf)
            .map_err(|e| CliError::usage(e.to_string()))?;
        frames.push((tf, candles));
    }
    let borrowed: Vec<(Timeframe, &[Candle])> =
        frames.iter().map(|(tf, c)| (*tf, c.as_slice())).collect();
    let view = MarketView::new(&borrowed, None).map_err(|e| CliError::usage(e.to_string()))?;
    let signal = strategy
        .generate(&view)
        .map_err(|e| CliError::failure("strategy", e.to_string()))?;
    let frame = view
        .frame(timeframe)
        .ok_or_else(|| CliError::failure("analyze", format!("no {timeframe} frame was built")))?;

    let report = Report {
        csv: path,
        csv_interval: series.interval,
        candles: frame.candles().len(),
        snapshot: frame.snapshot(),
        strategy: strategy.name(),
        signal: &signal,
        other_timeframes: view
            .frames()
            .iter()
            .filter(|f| f.timeframe() != timeframe)
            .map(|f| f.snapshot())
            .collect(),
    };
    if globals.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &Report<'_>) {
    let s = report.snapshot;
    let f = |v: f64| format!("{v:.6}");
    let mut rows = vec![
        vec!["timeframe".into(), s.timeframe.to_string()],
        vec!["candle open time".into(), s.time.to_rfc3339()],
        vec!["closed candles".into(), report.candles.to_string()],
        vec!["close".into(), s.close.to_string()],
        vec!["rsi_14".into(), format!("{:.2}", s.rsi_14)],
        vec!["sma_20".into(), f(s.sma_20)],
        vec!["ema_12".into(), f(s.ema_12)],
        vec!["ema_26".into(), f(s.ema_26)],
        vec!["macd".into(), f(s.macd)],
        vec!["macd_signal".into(), f(s.macd_signal)],
        vec!["macd_hist".into(), f(s.macd_hist)],
        vec!["bb_upper".into(), f(s.bb_upper)],
        vec!["bb_middle".into(), f(s.bb_middle)],
        vec!["bb_lower".into(), f(s.bb_lower)],
        vec!["atr_14".into(), f(s.atr_14)],
        vec!["stoch_k".into(), format!("{:.2}", s.stoch_k)],
        vec!["stoch_d".into(), format!("{:.2}", s.stoch_d)],
        vec![
            "volume_ratio".into(),
            s.volume_ratio
                .map_or_else(|| "n/a".into(), |v| format!("{v:.3}")),
        ],
    ];
    for other in &report.other_timeframes {
        rows.push(vec![
            format!("{} close / rsi_14", other.timeframe),
            format!("{} / {:.2}", other.close, other.rsi_14),
        ]);
    }
    print_table(&["INDICATOR", "VALUE"], &rows);
    println!();
    let signal = report.signal;
    let price = |p: Option<rust_decimal::Decimal>| p.map_or_else(|| "-".into(), |p| p.to_string());
    let mut rows = vec![
        vec!["strategy".into(), report.strategy.to_string()],
        vec!["action".into(), signal.action().to_string()],
        vec!["confidence".into(), format!("{:.2}", signal.confidence())],
        vec!["entry".into(), signal.entry().to_string()],
        vec!["stop_loss".into(), price(signal.stop_loss())],
        vec!["take_profit".into(), price(signal.take_profit())],
    ];
    for reason in signal.reasons() {
        rows.push(vec!["reason".into(), reason.clone()]);
    }
    print_table(&["SIGNAL", "VALUE"], &rows);
}
