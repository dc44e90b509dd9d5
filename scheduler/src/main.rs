//! `scheduler`: enqueues one trading-cycle job per due (subscription, slot). Thin: flags,
//! configuration, start-up checks, telemetry and the health server, then `Scheduler::tick` every
//! `tick_ms` until SIGTERM or SIGINT, when it gives the leader lease up and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::FutureExt;
use tokio::sync::watch;
use tradefleet::config::{Config, ConfigSources};
use tradefleet::fleet::scheduler::{Scheduler, SchedulerSettings};
use tradefleet::lock::LockManager;
use tradefleet::queue::{QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE};
use tradefleet::store::Store;
use tradefleet::telemetry::{self, Metrics};

#[derive(Debug, Parser)]
#[command(
    name = "scheduler",
    version,
    about = "tradefleet scheduler: enqueues due trading cycles (one active leader)",
    long_about = "tradefleet scheduler: enqueues due trading cycles (one active leader).\n\n\
        Configuration is layered: built-in defaults, then the --config file, then DATABASE_URL / \
        REDIS_URL, then TRADEFLEET__SECTION__KEY environment variables (e.g. \
        TRADEFLEET__SCHEDULER__TICK_MS=500). The scheduler refuses to start when the database schema \
        is behind; run `migrations up` first. SIGTERM or SIGINT stops it: the leader lease is \
        released so a standby takes over at once."
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
    let listen: SocketAddr = match config.scheduler.listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "error: invalid configuration: scheduler.listen: {:?} is not an address: {e}",
                config.scheduler.listen
            );
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
        eprintln!("error: scheduler refuses to start: {e}");
        return ExitCode::FAILURE;
    }
    match run(config, listen, store).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, listen: SocketAddr, store: Store) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("tradefleet-scheduler", &config.telemetry)?;
    let metrics = Arc::new(Metrics::new()?);
    let queue = StreamQueue::connect(
        &config.redis.url,
        &config.redis.key_prefix,
        TRADING_CYCLE_QUEUE,
        QueueSettings {
            response_timeout_ms: config.redis.response_timeout_ms,
            ..QueueSettings::default()
        },
    )
    .await
    .context("cannot connect to Redis")?;
    let locks = LockManager::connect(&config.redis)
        .await
        .context("cannot connect to Redis")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let health = {
        let store = store.clone();
        let queue = queue.clone();
        let readiness = move || {
            let store = store.clone();
            let queue = queue.clone();
            async move {
                tradefleet_migrations::check_current(store.connection())
                    .await
                    .map_err(|e| format!("database: {e}"))?;
                queue.depth().await.map_err(|e| format!("redis: {e}"))?;
                Ok(())
            }
            .boxed()
        };
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        telemetry::serve(listen, metrics.clone(), readiness, shutdown).await?
    };

    let sampler = telemetry::Sampler {
        metrics: metrics.clone(),
        queue: queue.clone(),
        store: Some(store.clone()),
        every: telemetry::SAMPLE_EVERY,
    }
    .spawn(stop_rx.clone());
    let clock = tradefleet::clock::from_config(&config.clock, chrono::Utc::now())?;
    let mut scheduler = Scheduler::new(
        store.clone(),
        queue,
        locks,
        clock,
        SchedulerSettings::from_config(&config.scheduler),
    )?
    .with_metrics(metrics);
    tracing::info!(
        tick_ms = config.scheduler.tick_ms,
        batch_size = config.scheduler.batch_size,
        "scheduler started"
    );

    let mut ticks = tokio::time::interval(Duration::from_millis(config.scheduler.tick_ms.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            biased;
            reason = &mut signal => {
                tracing::info!(signal = reason, "stopping");
                break;
            }
            _ = ticks.tick() => {
                match scheduler.tick().await {
                    Ok(report) if report.leader && (report.enqueued > 0 || report.reenqueued > 0) => {
                        tracing::info!(
                            due = report.due,
                            enqueued = report.enqueued,
                            skipped_slots = report.skipped_slots,
                            reenqueued = report.reenqueued,
                            "tick"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "scheduler tick failed; retrying next tick"),
                }
            }
        }
    }
    if let Err(e) = scheduler.release().await {
        tracing::warn!(error = %e, "could not release the leader lease; it expires by itself");
    }
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    health.stopped().await;
    store.close().await.ok();
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
