//! `fleetctl cycle run`: one manual trading cycle of a subscription, now. Records the run for the
//! current second (trigger `manual`), puts its job on the trading-cycle queue, and with `--wait`
//! follows the run row until a worker finishes it.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::io::IsTerminal;
use tradefleet::fleet::scheduler::cycle_envelope;
use tradefleet::queue::{QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE, Trigger};

use tracing::Instrument;
use tradefleet::config::TelemetryConfig;
use tradefleet::store::{InsertRun, NewRun, RunTrigger, cycle_run};
use tradefleet::telemetry;

use crate::Globals;
use crate::context::{Ctx, parse_duration};
use crate::output::{CliError, CliResult, exit, print_json};

/// How often `--wait` reads the run row.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Subcommand)]
pub(crate) enum CycleCmd {
    /// Enqueue one manual cycle of a subscription for the current second.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The subscription id.
    #[arg(long)]
    subscription: i64,
    /// Wait until a worker has finished the run, then print its status, signal and error.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits (e.g. 30s, 5m).
    #[arg(long, default_value = "60s")]
    timeout: String,
}

#[derive(Debug, Serialize)]
struct Outcome {
    run_id: i64,
    subscription_id: i64,
    slot: String,
    job_id: String,
    /// False when the job was already on the queue (the same second was triggered twice).
    enqueued: bool,
    status: String,
    signal: Option<String>,
    error: Option<String>,
}

impl Outcome {
    fn update(&mut self, run: &cycle_run::Model) {
        self.status = run.status.to_string();
        self.signal = run.signal.clone();
        self.error = run.error.clone();
    }
}

pub(crate) async fn run(globals: &Globals, cmd: CycleCmd) -> CliResult {
    let CycleCmd::Run(args) = cmd;
    let timeout = parse_duration("--timeout", &args.timeout)?
        .to_std()
        .map_err(|_| CliError::usage("--timeout must not be negative"))?;
    let ctx = Ctx::open(globals).await?;
    // With an OTLP endpoint configured, the job carries this command's trace context, so the
    // worker's cycle continues one trace from `fleetctl.cycle_run`; logs stay on stderr.
    let _telemetry = match ctx.config.telemetry.otlp_endpoint.as_deref().map(str::trim) {
        Some(endpoint) if !endpoint.is_empty() => {
            let cfg = TelemetryConfig {
                // The filter applies to spans too: fleetctl's own must stay on.
                log_level: std::env::var("RUST_LOG")
                    .unwrap_or_else(|_| "warn,fleetctl=info".into()),
                ..ctx.config.telemetry.clone()
            };
            Some(
                telemetry::init_with_writer(
                    "tradefleet-fleetctl",
                    &cfg,
                    std::io::stderr,
                    std::io::stderr().is_terminal(),
                )
                .map_err(|e| CliError::usage(format!("telemetry: {e}")))?,
            )
        }
        _ => {
            crate::init_logging();
            None
        }
    };
    let span = tracing::info_span!("fleetctl.cycle_run", subscription_id = args.subscription);
    run_traced(globals, ctx, args, timeout)
        .instrument(span)
        .await
}

async fn run_traced(globals: &Globals, ctx: Ctx, args: RunArgs, timeout: Duration) -> CliResult {
    let sub = ctx.store.subscription(args.subscription).await?;
    let now = Utc::now();
    // Whole seconds: the queue's job id carries the slot to the second.
    let slot = now.trunc_subsecs(0);
    let inserted = ctx
        .store
        .insert_run(&NewRun {
            subscription_id: sub.id,
            slot,
            trigger: RunTrigger::Manual,
            enqueued_at: now,
        })
        .await?;
    if let InsertRun::AlreadyExists(run) = &inserted {
        tracing::info!(run_id = run.id, "the run of this second already existed");
    }
    let run = inserted.into_run();
    let queue = StreamQueue::connect(
        &ctx.config.redis.url,
        &ctx.config.redis.key_prefix,
        TRADING_CYCLE_QUEUE,
        QueueSettings {
            response_timeout_ms: ctx.config.redis.response_timeout_ms,
            ..QueueSettings::default()
        },
    )
    .await
    .map_err(|e| CliError::failure("redis", e.to_string()))?;
    let envelope = cycle_envelope(sub.id, slot, Trigger::Manual);
    let enqueued = queue
        .enqueue(&envelope)
        .await
        .map_err(|e| CliError::failure("redis", e.to_string()))?;
    let mut outcome = Outcome {
        run_id: run.id,
        subscription_id: sub.id,
        slot: slot.to_rfc3339(),
        job_id: envelope.id,
        enqueued,
        status: String::new(),
        signal: None,
        error: None,
    };
    outcome.update(&run);
    if !args.wait {
        report(globals, &outcome)?;
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = ctx.store.run(run.id).await?;
        outcome.update(&current);
        if current.status.is_terminal() {
            report(globals, &outcome)?;
            return Ok(ExitCode::SUCCESS);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError {
                kind: "timeout".into(),
                message: format!(
                    "run {} (job {}) is still {} after {}; it stays queued for a worker \
                     (follow it with `fleetctl runs show {}`)",
                    outcome.run_id, outcome.job_id, outcome.status, args.timeout, outcome.run_id
                ),
                code: exit::FAILURE,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn report(globals: &Globals, outcome: &Outcome) -> Result<(), CliError> {
    if globals.json {
        return print_json(outcome);
    }
    println!(
        "run {} of subscription {} for slot {}: job {} {}",
        outcome.run_id,
        outcome.subscription_id,
        outcome.slot,
        outcome.job_id,
        if outcome.enqueued {
            "enqueued"
        } else {
            "was already queued"
        }
    );
    println!("status: {}", outcome.status);
    if let Some(signal) = &outcome.signal {
        println!("signal: {signal}");
    }
    if let Some(error) = &outcome.error {
        println!("error: {error}");
    }
    Ok(())
}
