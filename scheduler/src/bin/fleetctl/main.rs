//! fleetctl: the operator CLI (exchanges, credentials, subscriptions, runs, dead letters, cycles).
//! Human tables by default, `--json` for scripts; errors exit non-zero with a clear message.

mod analyze;
mod exchange_cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    version,
    about = "Operate a tradefleet: exchanges, credentials, subscriptions, runs, dead letters"
)]
struct Cli {
    /// Configuration file (TOML); environment variables TRADEFLEET__SECTION__KEY override it.
    #[arg(long, global = true, env = "TRADEFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the supported exchanges and what they can do.
    Exchanges,
    /// Talk to one exchange: time, klines, ticker, balance, positions, orders, check.
    Exchange(Box<exchange_cmd::ExchangeArgs>),
    /// Indicators and a strategy's signal for the last closed candle of a candle CSV.
    Analyze(analyze::AnalyzeArgs),
}

/// Shared by every command.
#[derive(Debug)]
pub(crate) struct Globals {
    pub config: Option<PathBuf>,
    pub json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let globals = Globals {
        config: cli.config,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Exchanges => output::exchanges(&globals),
        Command::Exchange(args) => exchange_cmd::run(&globals, *args).await,
        Command::Analyze(args) => analyze::analyze(&globals, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => output::fail(&globals, &e),
    }
}
