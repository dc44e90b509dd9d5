//! `fleetctl runs`: cycle runs by subscription, status and time, and one run with its orders.

use std::process::ExitCode;
use std::str::FromStr;

use chrono::Utc;
use clap::Subcommand;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use tradefleet::store::{RunStatus, cycle_run, order};

use crate::Globals;
use crate::context::{Ctx, parse_since};
use crate::output::{CliError, CliResult, print_json, print_table};

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCmd {
    /// Runs, newest slot first.
    List {
        #[arg(long)]
        subscription: Option<i64>,
        /// enqueued, running, succeeded, failed, skipped or dead_lettered.
        #[arg(long)]
        status: Option<String>,
        /// Slots at or after this instant: RFC 3339, or a duration back from now (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One run and the orders it placed.
    Show { id: i64 },
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn print_runs(runs: &[cycle_run::Model]) {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.subscription_id.to_string(),
                r.slot.to_rfc3339(),
                r.trigger.to_string(),
                r.status.to_string(),
                r.attempt.to_string(),
                opt(r.signal.clone()),
                opt(r.confidence.map(|c| c.get().normalize())),
                opt(r.finished_at.map(|t| t.to_rfc3339())),
                opt(r.error.clone()),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "SUBSCRIPTION",
            "SLOT",
            "TRIGGER",
            "STATUS",
            "ATTEMPT",
            "SIGNAL",
            "CONFIDENCE",
            "FINISHED",
            "ERROR",
        ],
        &rows,
    );
}

fn print_orders(orders: &[order::Model]) {
    let rows: Vec<Vec<String>> = orders
        .iter()
        .map(|o| {
            vec![
                o.client_order_id.clone(),
                opt(o.exchange_order_id.clone()),
                o.role.to_string(),
                o.side.as_str().to_string(),
                o.order_type.as_str().to_string(),
                o.status.as_str().to_string(),
                o.quantity.get().normalize().to_string(),
                opt(o.price.map(|p| p.get().normalize())),
                opt(o.trigger_price.map(|p| p.get().normalize())),
                o.filled_quantity.get().normalize().to_string(),
                opt(o.average_price.map(|p| p.get().normalize())),
            ]
        })
        .collect();
    print_table(
        &[
            "CLIENT_ID",
            "ID",
            "ROLE",
            "SIDE",
            "TYPE",
            "STATUS",
            "QTY",
            "PRICE",
            "TRIGGER",
            "FILLED",
            "AVG_PRICE",
        ],
        &rows,
    );
}

#[derive(Serialize)]
struct RunOut {
    #[serde(flatten)]
    run: cycle_run::Model,
    orders: Vec<order::Model>,
}

pub(crate) async fn run(globals: &Globals, cmd: RunsCmd) -> CliResult {
    match cmd {
        RunsCmd::List {
            subscription,
            status,
            since,
            limit,
        } => {
            let status = status
                .map(|s| {
                    RunStatus::from_str(&s).map_err(|_| {
                        CliError::usage(format!(
                            "--status: {s:?} is not one of {}",
                            RunStatus::ALL
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
                })
                .transpose()?;
            let since = since
                .map(|s| parse_since("--since", &s, Utc::now()))
                .transpose()?;
            if limit == 0 {
                return Err(CliError::usage("--limit must be at least 1"));
            }
            let ctx = Ctx::open(globals).await?;
            use cycle_run::Column as C;
            let mut q = cycle_run::Entity::find();
            if let Some(s) = subscription {
                q = q.filter(C::SubscriptionId.eq(s));
            }
            if let Some(st) = status {
                q = q.filter(C::Status.eq(st));
            }
            if let Some(t) = since {
                q = q.filter(C::Slot.gte(t));
            }
            let runs = q
                .order_by_desc(C::Slot)
                .order_by_desc(C::Id)
                .limit(limit)
                .all(ctx.store.connection())
                .await
                .map_err(|e| CliError::failure("database", format!("listing cycle runs: {e}")))?;
            if globals.json {
                print_json(&runs)?;
            } else {
                print_runs(&runs);
            }
        }
        RunsCmd::Show { id } => {
            let ctx = Ctx::open(globals).await?;
            let run = ctx.store.run(id).await?;
            let orders = ctx.store.orders_for_run(id).await?;
            if globals.json {
                print_json(&RunOut { run, orders })?;
            } else {
                print_runs(std::slice::from_ref(&run));
                if let Some(a) = &run.analysis {
                    println!("\nanalysis  {a}");
                }
                println!("\norders:");
                print_orders(&orders);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
