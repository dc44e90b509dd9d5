//! fleetctl: the operator CLI (exchanges, credentials, subscriptions, runs, dead letters, cycles).
//! Human tables by default, `--json` for scripts; errors exit non-zero with a clear message.

mod analyze;
mod context;
mod credentials;
mod cycle;
mod demo;
mod dlq;
mod exchange_cmd;
mod output;
mod performance;
mod principals;
mod runs;
mod subscriptions;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Commands that use the database read DATABASE_URL (or database.url of the --config file) and
refuse a schema that is behind: run `migrations up` first, or pass --migrate. Commands that touch
credentials need the vault keys (TRADEFLEET__VAULT__KEYS or TRADEFLEET__VAULT__KEYS_FILE).
Set RUST_LOG (e.g. RUST_LOG=debug) to log to stderr; secrets are never logged.
Exit codes: 0 success, 1 failure (exchange, database, Redis), 2 bad input or configuration.";

#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    version,
    about = "Operate a tradefleet: exchanges, credentials, subscriptions, runs, dead letters",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Configuration file (TOML); environment variables TRADEFLEET__SECTION__KEY override it.
    #[arg(long, global = true, env = "TRADEFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Apply pending database migrations before running the command.
    #[arg(long, global = true)]
    migrate: bool,
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
    /// Fleet users: add, list.
    #[command(subcommand)]
    Principals(principals::PrincipalsCmd),
    /// Exchange API keys in the vault: add, list, verify, remove, rotate.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCmd),
    /// Vault master keys: gen-key.
    #[command(subcommand)]
    Vault(credentials::VaultCmd),
    /// The bot catalogue.
    #[command(subcommand)]
    Bots(subscriptions::BotsCmd),
    /// Subscriptions: create, list, show, pause, resume, delete.
    #[command(subcommand)]
    Subscriptions(subscriptions::SubscriptionsCmd),
    /// Cycle runs: list, show.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// Dead letters: list, retry, purge.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// A subscription's results: trades, win rate, PnL, drawdown, Sharpe ratio.
    Performance(performance::PerformanceArgs),
    /// One-off cycles: run (enqueue a manual cycle now, optionally --wait for its result).
    #[command(subcommand)]
    Cycle(cycle::CycleCmd),
    /// The whole fleet on this machine for a minute: SQLite in a temp dir, Redis, the scheduler
    /// and two workers on PAPER over replayed market data, then a summary. Run it with
    /// scripts/demo.sh, which builds the binaries. Exit code 3: Redis unreachable and
    /// redis-server not installed.
    Demo(demo::DemoArgs),
}

/// Shared by every command.
#[derive(Debug)]
pub(crate) struct Globals {
    pub config: Option<PathBuf>,
    pub json: bool,
    pub migrate: bool,
}

/// Logs to stderr when RUST_LOG is set; otherwise fleetctl stays quiet. (`cycle run` sets up
/// its own, with trace export, once it has read the configuration.)
pub(crate) fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
            .ok();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Cycle(_)) {
        init_logging();
    }
    let globals = Globals {
        config: cli.config,
        json: cli.json,
        migrate: cli.migrate,
    };
    let result = match cli.command {
        Command::Exchanges => output::exchanges(&globals),
        Command::Exchange(args) => exchange_cmd::run(&globals, *args).await,
        Command::Analyze(args) => analyze::analyze(&globals, args),
        Command::Principals(cmd) => principals::run(&globals, cmd).await,
        Command::Credentials(cmd) => credentials::run(&globals, cmd).await,
        Command::Vault(cmd) => credentials::vault(&globals, cmd),
        Command::Bots(cmd) => subscriptions::bots(&globals, cmd).await,
        Command::Subscriptions(cmd) => subscriptions::run(&globals, cmd).await,
        Command::Runs(cmd) => runs::run(&globals, cmd).await,
        Command::Dlq(cmd) => dlq::run(&globals, cmd).await,
        Command::Performance(args) => performance::run(&globals, args).await,
        Command::Cycle(cmd) => cycle::run(&globals, cmd).await,
        Command::Demo(args) => demo::run(&globals, args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => output::fail(&globals, &e),
    }
}
