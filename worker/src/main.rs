//! `worker`: pops trading-cycle jobs from Redis and runs the bot cycle. Thin: flags, config,
//! schema check, wiring; the runtime is `tradefleet::fleet::worker`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tradefleet::config::{Config, ConfigSources};
use tradefleet::fleet::worker::{Worker, WorkerDeps, WorkerSettings};
use tradefleet::lock::LockManager;
use tradefleet::queue::{QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE};
use tradefleet::telemetry::{self, Metrics};
use tradefleet::vault::KeyRing;

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "tradefleet worker: runs trading cycles popped from the Redis queue",
    long_about = "tradefleet worker: runs trading cycles popped from the Redis queue.\n\n\
        Configuration is layered: built-in defaults, then the --config file, then DATABASE_URL / \
        REDIS_URL, then TRADEFLEET__SECTION__KEY environment variables (e.g. \
        TRADEFLEET__WORKER__CONCURRENCY=8). The worker refuses to start when the database schema \
        is behind; run `migrations up` first. SIGTERM or SIGINT stop it gracefully."
)]
struct Cli {
    /// Configuration file (TOML). Unknown keys and bad values are rejected at start-up.
    #[arg(long, value_name = "FILE", env = "TRADEFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Start everything (database, schema, Redis, health server), then stop at once: a
    /// deployment smoke check.
    #[arg(long)]
    check: bool,
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
    match run(cli, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    // The worker opens exchange credentials, so it needs the vault keys before anything else.
    let keyring = Arc::new(KeyRing::from_config(&config.vault).context("worker refuses to start")?);
    let store = tradefleet::store::connect_config(&config.database).await?;
    tradefleet_migrations::check_current(store.connection())
        .await
        .context("worker refuses to start")?;
    let telemetry = telemetry::init("tradefleet-worker", &config.telemetry)?;
    let metrics = Arc::new(Metrics::new()?);
    let redis_client = redis::Client::open(config.redis.url.as_str())?;
    let redis = redis::aio::ConnectionManager::new(redis_client).await?;
    let locks = LockManager::new(redis.clone(), &config.redis.key_prefix);
    let queue = StreamQueue::connect(
        &config.redis.url,
        &config.redis.key_prefix,
        TRADING_CYCLE_QUEUE,
        QueueSettings {
            response_timeout_ms: config.redis.response_timeout_ms,
            orphan_idle_ms: config.worker.orphan_idle_ms,
            ..QueueSettings::default()
        },
    )
    .await?;
    let llm = tradefleet::bot::llm::LlmAdvisor::from_config(&config.llm)?.map(Arc::new);
    let settings = WorkerSettings::from_config(&config.worker);
    let clock = tradefleet::clock::from_config(&config.clock, chrono::Utc::now())?;
    let worker = Worker::new(
        WorkerDeps {
            store: store.clone(),
            locks,
            redis: redis.clone(),
            key_prefix: config.redis.key_prefix.clone(),
            keyring: Some(keyring),
            llm,
            metrics: metrics.clone(),
            clock,
            http: config.exchange.http.clone(),
            paper: config.paper.clone(),
            strategies: Arc::new(tradefleet::bot::strategy::build),
        },
        settings,
    )?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listen: SocketAddr = config
        .worker
        .listen
        .parse()
        .context("worker.listen is not an address")?;
    let sampler = telemetry::Sampler {
        metrics: metrics.clone(),
        queue: queue.clone(),
        store: Some(store.clone()),
        every: telemetry::SAMPLE_EVERY,
    }
    .spawn(stop_rx.clone());
    let ready_store = store.clone();
    let ready_redis = redis.clone();
    let mut health_stop = stop_rx.clone();
    let health = telemetry::serve(
        listen,
        metrics,
        move || {
            let store = ready_store.clone();
            let mut redis = ready_redis.clone();
            Box::pin(async move {
                tradefleet_migrations::check_current(store.connection())
                    .await
                    .map_err(|_| "database unreachable or schema not current".to_string())?;
                redis::cmd("PING")
                    .query_async::<()>(&mut redis)
                    .await
                    .map_err(|_| "redis unreachable".to_string())?;
                Ok(())
            })
        },
        async move {
            let _ = health_stop.wait_for(|s| *s).await;
        },
    )
    .await?;
    tracing::info!(
        worker = %worker.settings().worker_id,
        listen = %health.local_addr(),
        "worker started"
    );
    if !cli.check {
        let mut stop = stop_rx.clone();
        let signal_task = tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        worker
            .run(queue, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await?;
        signal_task.abort();
    } else {
        let _ = stop_tx.send(true);
    }
    let _ = sampler.await;
    health.stopped().await;
    store.close().await.ok();
    tracing::info!("worker stopped");
    if let Err(e) = telemetry.flush() {
        eprintln!("warning: {e}");
    }
    Ok(())
}
