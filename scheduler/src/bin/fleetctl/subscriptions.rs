//! `fleetctl subscriptions` and `fleetctl bots`: create a subscription after checking every input
//! (venue, symbol, leverage, timeframes, interval, bot config) before anything is stored, then
//! list, show, pause, resume and delete.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradefleet::bot::risk::RiskConfig;
use tradefleet::bot::strategy::{self, STRATEGY_NAMES};
use tradefleet::clock::SystemClock;
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::{VenueParams, build_exchange, find_venue};
use tradefleet::store::{
    BotKind, CredentialKey, NewBot, NewSubscription, SubscriptionFilter, SubscriptionStatus,
    open_credentials, subscription,
};

use crate::Globals;
use crate::context::{Ctx, parse_duration};
use crate::output::{CliError, CliResult, print_json, print_table};

#[derive(Debug, Subcommand)]
pub(crate) enum SubscriptionsCmd {
    /// Subscribe a principal to a bot on one market; every input is checked before storing.
    Create(Box<CreateArgs>),
    /// List subscriptions.
    List {
        #[arg(long)]
        principal: Option<String>,
        /// active, paused or stopped.
        #[arg(long)]
        status: Option<String>,
    },
    /// One subscription with its configuration.
    Show { id: i64 },
    /// Stop scheduling a subscription until it is resumed (open positions are left alone).
    Pause {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Schedule a paused or stopped subscription again, from its next interval boundary.
    Resume { id: i64 },
    /// Delete a subscription with its runs, orders, positions, trades and equity snapshots.
    Delete {
        id: i64,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[arg(long)]
    principal: String,
    /// Venue: binance, bybit, okx, bitget, htx, kraken or paper.
    #[arg(long)]
    exchange: String,
    /// Unified symbol BASE/QUOTE:SETTLE (PAPER lists XRP/USDT:USDT).
    #[arg(long)]
    symbol: String,
    /// Bot name (built in: mtf_trend, rsi_bollinger; see `fleetctl bots list`).
    #[arg(long)]
    bot: String,
    /// How often a cycle runs: 1m or more (e.g. 5m, 1h, 1d).
    #[arg(long)]
    interval: String,
    /// Timeframes analysed, comma-separated (default: the interval when it is a timeframe, else 1h).
    #[arg(long)]
    timeframes: Option<String>,
    /// Leverage (at most the instrument's maximum).
    #[arg(long, default_value_t = 1)]
    leverage: u32,
    /// JSON file with optional `strategy`, `execution` and `risk` objects. (Named --bot-config
    /// because --config is fleetctl's own configuration file.)
    #[arg(long, value_name = "FILE")]
    bot_config: Option<PathBuf>,
    /// The venue's testnet / demo account.
    #[arg(long)]
    testnet: bool,
    /// Override the venue's base URL for the checks (proxy, mock); not stored.
    #[arg(long)]
    base_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BotsCmd {
    /// List the bot catalogue (built-in bots appear once a subscription used them, or with
    /// `bots list --builtin`).
    List {
        /// Also create the built-in bots (mtf_trend, rsi_bollinger) when missing.
        #[arg(long)]
        builtin: bool,
    },
}

/// The `--bot-config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BotConfigFile {
    strategy: Option<serde_json::Value>,
    execution: Option<serde_json::Value>,
    risk: Option<serde_json::Value>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Reads and checks the bot config file for a bot running `strategy_name`.
fn read_bot_config(
    path: &Path,
    strategy_name: &str,
) -> Result<(serde_json::Value, serde_json::Value, serde_json::Value), CliError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("--bot-config {shown}: cannot read: {e}")))?;
    let file: BotConfigFile = serde_json::from_str(&text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            CliError::usage(format!("--bot-config {shown}: not valid JSON: {e}"))
        } else {
            CliError::usage(format!("--bot-config {shown}: {e}"))
        }
    })?;
    let strategy = file.strategy.unwrap_or_else(empty_object);
    strategy::build(strategy_name, &strategy)
        .map_err(|e| CliError::usage(format!("--bot-config {shown}: strategy: {e}")))?;
    let execution = file.execution.unwrap_or_else(empty_object);
    if !execution.is_object() {
        return Err(CliError::usage(format!(
            "--bot-config {shown}: execution: expected a JSON object"
        )));
    }
    let risk = file.risk.unwrap_or_else(empty_object);
    let parsed: RiskConfig = serde_json::from_value(risk.clone())
        .map_err(|e| CliError::usage(format!("--bot-config {shown}: risk: {e}")))?;
    parsed
        .validate()
        .map_err(|e| CliError::usage(format!("--bot-config {shown}: {e}")))?;
    Ok((strategy, execution, risk))
}

/// `1m` or more, in whole seconds.
fn parse_interval(s: &str) -> Result<i64, CliError> {
    let d = parse_duration("--interval", s)?;
    if d.num_seconds() < 60 {
        return Err(CliError::usage(format!(
            "--interval {s}: must be at least one minute"
        )));
    }
    Ok(d.num_seconds())
}

fn parse_timeframes(s: &str) -> Result<Vec<Timeframe>, CliError> {
    let mut out: Vec<Timeframe> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let tf =
            Timeframe::from_str(part).map_err(|e| CliError::usage(format!("--timeframes: {e}")))?;
        if !out.contains(&tf) {
            out.push(tf);
        }
    }
    if out.is_empty() {
        return Err(CliError::usage(
            "--timeframes: at least one timeframe is needed",
        ));
    }
    if out.len() > 7 {
        return Err(CliError::usage("--timeframes: at most 7 timeframes"));
    }
    Ok(out)
}

/// The first multiple of `interval` seconds (since the Unix epoch) at or after `now`.
fn next_boundary(now: DateTime<Utc>, interval: i64) -> DateTime<Utc> {
    let t = now.timestamp();
    let next = t.div_euclid(interval) * interval
        + if t.rem_euclid(interval) == 0 && now.timestamp_subsec_nanos() == 0 {
            0
        } else {
            interval
        };
    DateTime::from_timestamp(next, 0).unwrap_or(now)
}

/// The bot of that name, or a built-in one (a TECHNICAL bot running the strategy of that name).
async fn resolve_bot(ctx: &Ctx, name: &str) -> Result<(Option<i64>, String), CliError> {
    if let Some(bot) = ctx.store.bot_by_name(name).await? {
        return Ok((Some(bot.id), bot.strategy));
    }
    if STRATEGY_NAMES.contains(&name) {
        return Ok((None, name.to_string()));
    }
    Err(CliError::usage(format!(
        "unknown bot {name:?} (built in: {}; see `fleetctl bots list`)",
        STRATEGY_NAMES.join(", ")
    )))
}

fn builtin_bot(name: &str) -> NewBot {
    NewBot {
        name: name.to_string(),
        kind: BotKind::Technical,
        strategy: name.to_string(),
        default_config: empty_object(),
    }
}

async fn create(globals: &Globals, a: CreateArgs) -> CliResult {
    // Inputs that need nothing but the command line first.
    let venue = find_venue(&a.exchange)?;
    if a.testnet && !venue.has_testnet {
        return Err(CliError::usage(format!(
            "--testnet: {} has no testnet/demo environment",
            venue.name
        )));
    }
    let symbol =
        Symbol::from_str(&a.symbol).map_err(|e| CliError::usage(format!("--symbol: {e}")))?;
    let interval_seconds = parse_interval(&a.interval)?;
    let timeframes = match &a.timeframes {
        Some(t) => parse_timeframes(t)?,
        None => vec![Timeframe::from_str(&a.interval).unwrap_or(Timeframe::H1)],
    };
    if a.leverage == 0 {
        return Err(CliError::usage("--leverage must be at least 1"));
    }
    let ctx = Ctx::open(globals).await?;
    let principal = ctx.principal(&a.principal).await?;
    let (bot_id, strategy_name) = resolve_bot(&ctx, &a.bot).await?;
    let (strategy_config, execution_config, risk_config) = match &a.bot_config {
        Some(path) => read_bot_config(path, &strategy_name)?,
        None => {
            strategy::build(&strategy_name, &serde_json::Value::Null)
                .map_err(|e| CliError::usage(format!("bot {}: {e}", a.bot)))?;
            (empty_object(), empty_object(), empty_object())
        }
    };

    // Ask the venue about the symbol, with the principal's credentials when stored (some venues
    // only tell leverage limits to signed requests).
    let stored = ctx
        .store
        .credential(&CredentialKey {
            principal_id: principal.id,
            exchange: venue.name.to_string(),
            testnet: a.testnet,
            label: "default".into(),
        })
        .await?;
    let credentials = match &stored {
        Some(row) if venue.name != "paper" => match ctx.key_ring() {
            Ok(ring) => open_credentials(&ring, row).ok(),
            Err(_) => None,
        },
        _ => None,
    };
    if stored.is_none() && venue.name != "paper" {
        eprintln!(
            "warning: principal {:?} has no {}{} credentials yet; cycles will fail until \
             `fleetctl credentials add` stores them",
            principal.name,
            venue.name,
            if a.testnet { " testnet" } else { "" }
        );
    }
    let params = VenueParams {
        testnet: a.testnet,
        base_url: a.base_url.clone(),
        credentials,
        http: ctx.config.exchange.http.clone(),
        paper: ctx.config.paper.clone(),
        clock: Arc::new(SystemClock),
    };
    let exchange = build_exchange(venue.name, &params)?;
    let instrument = exchange.instrument(&symbol).await?;
    if Decimal::from(a.leverage) > instrument.max_leverage {
        return Err(CliError::usage(format!(
            "--leverage {}: above the maximum {} of {} on {}",
            a.leverage,
            instrument.max_leverage.normalize(),
            symbol,
            venue.name
        )));
    }

    // Everything checked: store.
    let now = Utc::now();
    let bot_id = match bot_id {
        Some(id) => id,
        None => ctx.store.upsert_bot(&builtin_bot(&a.bot), now).await?.id,
    };
    let sub = ctx
        .store
        .create_subscription(
            &NewSubscription {
                principal_id: principal.id,
                bot_id,
                exchange: venue.name.to_string(),
                symbol,
                timeframes,
                interval_seconds,
                leverage: Decimal::from(a.leverage),
                strategy_config,
                execution_config,
                risk_config,
                testnet: a.testnet,
                first_run_at: next_boundary(now, interval_seconds),
            },
            now,
        )
        .await?;
    if globals.json {
        print_json(&sub)?;
    } else {
        println!(
            "created subscription {} ({} {} {} every {}s, first run {})",
            sub.id,
            a.bot,
            sub.exchange,
            sub.symbol,
            sub.interval_seconds,
            sub.next_run_at.to_rfc3339()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct SubscriptionOut<'a> {
    principal: String,
    bot: String,
    #[serde(flatten)]
    sub: &'a subscription::Model,
}

async fn outs<'a>(
    ctx: &Ctx,
    subs: &'a [subscription::Model],
) -> Result<Vec<SubscriptionOut<'a>>, CliError> {
    let principals = ctx.principal_names().await?;
    let bots: std::collections::BTreeMap<i64, String> = ctx
        .store
        .list_bots()
        .await?
        .into_iter()
        .map(|b| (b.id, b.name))
        .collect();
    Ok(subs
        .iter()
        .map(|sub| SubscriptionOut {
            principal: principals
                .get(&sub.principal_id)
                .cloned()
                .unwrap_or_else(|| sub.principal_id.to_string()),
            bot: bots
                .get(&sub.bot_id)
                .cloned()
                .unwrap_or_else(|| sub.bot_id.to_string()),
            sub,
        })
        .collect())
}

fn print_subs(subs: &[SubscriptionOut<'_>]) {
    let rows: Vec<Vec<String>> = subs
        .iter()
        .map(|o| {
            let s = o.sub;
            vec![
                s.id.to_string(),
                o.principal.clone(),
                o.bot.clone(),
                format!(
                    "{}{}",
                    s.exchange,
                    if s.testnet { " (testnet)" } else { "" }
                ),
                s.symbol.to_string(),
                s.timeframes.to_string(),
                format!("{}s", s.interval_seconds),
                s.leverage.get().normalize().to_string(),
                s.status.to_string(),
                s.next_run_at.to_rfc3339(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "PRINCIPAL",
            "BOT",
            "EXCHANGE",
            "SYMBOL",
            "TIMEFRAMES",
            "INTERVAL",
            "LEVERAGE",
            "STATUS",
            "NEXT_RUN",
        ],
        &rows,
    );
}

pub(crate) async fn run(globals: &Globals, cmd: SubscriptionsCmd) -> CliResult {
    match cmd {
        SubscriptionsCmd::Create(a) => create(globals, *a).await,
        SubscriptionsCmd::List { principal, status } => {
            let status = status
                .map(|s| {
                    SubscriptionStatus::from_str(&s).map_err(|_| {
                        CliError::usage(format!(
                            "--status: {s:?} is not one of active, paused, stopped"
                        ))
                    })
                })
                .transpose()?;
            let ctx = Ctx::open(globals).await?;
            let principal_id = match principal {
                Some(name) => Some(ctx.principal(&name).await?.id),
                None => None,
            };
            let subs = ctx
                .store
                .list_subscriptions(&SubscriptionFilter {
                    principal_id,
                    status,
                })
                .await?;
            let out = outs(&ctx, &subs).await?;
            if globals.json {
                print_json(&out)?;
            } else {
                print_subs(&out);
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscriptionsCmd::Show { id } => {
            let ctx = Ctx::open(globals).await?;
            let sub = ctx.store.subscription(id).await?;
            let subs = [sub];
            let out = outs(&ctx, &subs).await?;
            if globals.json {
                print_json(&out.first())?;
            } else {
                print_subs(&out);
                let s = &subs[0];
                println!();
                println!(
                    "status_reason     {}",
                    s.status_reason.as_deref().unwrap_or("-")
                );
                println!(
                    "last_run_at       {}",
                    s.last_run_at.map_or_else(|| "-".into(), |t| t.to_rfc3339())
                );
                println!("strategy_config   {}", s.strategy_config);
                println!("execution_config  {}", s.execution_config);
                println!("risk_config       {}", s.risk_config);
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscriptionsCmd::Pause { id, reason } => {
            let ctx = Ctx::open(globals).await?;
            let sub = ctx
                .store
                .pause_subscription(id, reason.as_deref(), Utc::now())
                .await?;
            status_changed(globals, &sub, "paused")
        }
        SubscriptionsCmd::Resume { id } => {
            let ctx = Ctx::open(globals).await?;
            let now = Utc::now();
            let current = ctx.store.subscription(id).await?;
            let next = next_boundary(now, current.interval_seconds.max(1));
            let sub = ctx.store.resume_subscription(id, next, now).await?;
            status_changed(globals, &sub, "resumed")
        }
        SubscriptionsCmd::Delete { id, yes } => {
            if !yes {
                return Err(CliError::usage(format!(
                    "deleting subscription {id} also deletes its runs, orders, positions, trades \
                     and equity snapshots; pass --yes to confirm (or pause it instead)"
                )));
            }
            let ctx = Ctx::open(globals).await?;
            ctx.store.delete_subscription(id).await?;
            if globals.json {
                print_json(&serde_json::json!({ "deleted": id }))?;
            } else {
                println!("deleted subscription {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn status_changed(globals: &Globals, sub: &subscription::Model, what: &str) -> CliResult {
    if globals.json {
        print_json(sub)?;
    } else {
        println!(
            "{what} subscription {} (status {}, next run {})",
            sub.id,
            sub.status,
            sub.next_run_at.to_rfc3339()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn bots(globals: &Globals, cmd: BotsCmd) -> CliResult {
    let BotsCmd::List { builtin } = cmd;
    let ctx = Ctx::open(globals).await?;
    if builtin {
        for name in STRATEGY_NAMES {
            if ctx.store.bot_by_name(name).await?.is_none() {
                ctx.store.upsert_bot(&builtin_bot(name), Utc::now()).await?;
            }
        }
    }
    let bots = ctx.store.list_bots().await?;
    if globals.json {
        print_json(&bots)?;
    } else {
        let rows: Vec<Vec<String>> = bots
            .iter()
            .map(|b| {
                vec![
                    b.id.to_string(),
                    b.name.clone(),
                    b.kind.to_string(),
                    b.strategy.clone(),
                    b.default_config.to_string(),
                ]
            })
            .collect();
        print_table(&["ID", "NAME", "KIND", "STRATEGY", "DEFAULT_CONFIG"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
