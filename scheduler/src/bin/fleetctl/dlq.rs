//! `fleetctl dlq`: jobs that ran out of attempts. List them, put one back on the trading-cycle
//! queue (under a fresh job id, so the queue's dedupe does not swallow it), or purge old ones.

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tradefleet::queue::{Envelope, QueueSettings, StreamQueue, TRADING_CYCLE_QUEUE, TradingCycle};
use tradefleet::store::{RunStatus, dead_letter};

use crate::Globals;
use crate::context::{Ctx, parse_duration};
use crate::output::{CliError, CliResult, exit, print_json, print_table};

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCmd {
    /// Dead letters, newest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Re-enqueue one dead letter's job on the trading-cycle queue, then delete the dead letter.
    Retry { id: i64 },
    /// Delete dead letters (all, or those older than --older-than).
    Purge {
        /// Only those created longer ago than this (e.g. 7d, 12h).
        #[arg(long)]
        older_than: Option<String>,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// A job id never used before: the original id plus `:retry:` and the time in hex nanoseconds.
fn fresh_job_id(original: &str) -> String {
    let nanos = Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or_default()
        .unsigned_abs();
    format!("{original}:retry:{nanos:x}{:x}", std::process::id())
}

pub(crate) async fn run(globals: &Globals, cmd: DlqCmd) -> CliResult {
    match cmd {
        DlqCmd::List { limit } => {
            let ctx = Ctx::open(globals).await?;
            let rows = ctx.store.list_dead_letters(None, limit).await?;
            if globals.json {
                print_json(&rows)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.queue.clone(),
                            d.job_id.clone().unwrap_or_else(|| "-".into()),
                            d.attempts.to_string(),
                            d.created_at.to_rfc3339(),
                            d.error.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "QUEUE", "JOB_ID", "ATTEMPTS", "CREATED", "ERROR"],
                    &table,
                );
            }
        }
        DlqCmd::Retry { id } => {
            let ctx = Ctx::open(globals).await?;
            let row = ctx.store.dead_letter(id).await?;
            if row.queue != TRADING_CYCLE_QUEUE {
                return Err(CliError::usage(format!(
                    "dead letter {id} is from queue {:?}; fleetctl retries {TRADING_CYCLE_QUEUE} jobs only",
                    row.queue
                )));
            }
            let job = TradingCycle::from_payload(&row.payload).map_err(|e| CliError {
                kind: "bad_payload".into(),
                message: format!("dead letter {id} cannot be retried: {e}"),
                code: exit::FAILURE,
            })?;
            let original = row.job_id.clone().unwrap_or_else(|| job.job_id());
            let envelope = Envelope {
                id: fresh_job_id(&original),
                attempt: 1,
                payload: row.payload.clone(),
            };
            let settings = QueueSettings {
                response_timeout_ms: ctx.config.redis.response_timeout_ms,
                ..QueueSettings::default()
            };
            let queue = StreamQueue::connect(
                &ctx.config.redis.url,
                &ctx.config.redis.key_prefix,
                TRADING_CYCLE_QUEUE,
                settings,
            )
            .await
            .map_err(|e| CliError::failure("redis", e.to_string()))?;
            let added = queue
                .enqueue(&envelope)
                .await
                .map_err(|e| CliError::failure("redis", e.to_string()))?;
            if !added {
                return Err(CliError::failure(
                    "redis",
                    format!(
                        "job {} was already on the queue; nothing changed",
                        envelope.id
                    ),
                ));
            }
            // The run of that slot goes back to `enqueued`, so the worker runs it again.
            let tx = ctx.store.begin().await?;
            if let Some(run) = tx.run_for_slot(job.subscription_id, job.slot).await?
                && run.status == RunStatus::DeadLettered
            {
                tx.set_run_status(run.id, RunStatus::Enqueued).await?;
            }
            tx.delete_dead_letter(id).await?;
            tx.commit().await?;
            if globals.json {
                print_json(&serde_json::json!({ "retried": id, "job_id": envelope.id }))?;
            } else {
                println!("re-enqueued dead letter {id} as job {}", envelope.id);
            }
        }
        DlqCmd::Purge { older_than, yes } => {
            let cutoff = older_than
                .map(|s| parse_duration("--older-than", &s).map(|d| Utc::now() - d))
                .transpose()?;
            if !yes {
                return Err(CliError::usage(
                    "purging deletes dead letters for good; pass --yes to confirm",
                ));
            }
            let ctx = Ctx::open(globals).await?;
            let mut q = dead_letter::Entity::delete_many();
            if let Some(c) = cutoff {
                q = q.filter(dead_letter::Column::CreatedAt.lt(c));
            }
            let res = q
                .exec(ctx.store.connection())
                .await
                .map_err(|e| CliError::failure("database", format!("purging dead letters: {e}")))?;
            if globals.json {
                print_json(&serde_json::json!({ "purged": res.rows_affected }))?;
            } else {
                println!("purged {} dead letter(s)", res.rows_affected);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
