//! `worker`: pops trading-cycle jobs from Redis and runs the bot cycle. This build performs the
//! start-up checks (configuration, database, schema) and then stops: the runtime is not built yet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tradefleet::config::{Config, ConfigSources};

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "tradefleet worker: runs trading cycles popped from the Redis queue",
    long_about = "tradefleet worker: runs trading cycles popped from the Redis queue.\n\n\
        Configuration is layered: built-in defaults, then the --config file, then DATABASE_URL / \
        REDIS_URL, then TRADEFLEET__SECTION__KEY environment variables (e.g. \
        TRADEFLEET__WORKER__CONCURRENCY=8). The worker refuses to start when the database schema \
        is behind; run `migrations up` first."
)]
struct Cli {
    /// Configuration file (TOML). Unknown keys and bad values are rejected at start-up.
    #[arg(long, value_name = "FILE", env = "TRADEFLEET_CONFIG")]
    config: Option<PathBuf>,
}

/// Exit code for a configuration the operator must fix.
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&ConfigSources::from_process(cli.config.as_deref())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let store = match tradefleet::store::connect_config(&config.database).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = tradefleet_migrations::check_current(store.connection()).await {
        eprintln!("error: worker refuses to start: {e}");
        return ExitCode::FAILURE;
    }
    store.close().await.ok();
    eprintln!(
        "error: configuration and database schema are fine, but the worker runtime is not \
         available in this build yet; nothing was started"
    );
    ExitCode::FAILURE
}
