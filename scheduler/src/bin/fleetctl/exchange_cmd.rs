//! `fleetctl exchange <op>`: talk to one venue through the unified `Exchange` trait, so an operator
//! can check keys, read the market and place or cancel one order by hand on any venue or on PAPER.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Serialize;
use tradefleet::clock::{Clock, ManualClock, SystemClock};
use tradefleet::config::{Config, ConfigSources};
use tradefleet::domain::{
    Candle, ClientOrderId, Order, OrderRequest, OrderType, Side, Symbol, Timeframe,
};
use tradefleet::exchange::idempotent::{Placement, ReconcilePolicy, place_once};
use tradefleet::exchange::{Credentials, Exchange, VenueParams, build_exchange, find_venue};

use crate::Globals;
use crate::context::Ctx;
use crate::output::{CliError, CliResult, print_json, print_table};

const AFTER_HELP: &str = "\
Credentials come from TRADEFLEET_API_KEY, TRADEFLEET_API_SECRET and (OKX, Bitget)
TRADEFLEET_API_PASSPHRASE, or with --credentials PRINCIPAL from the vault (the database and
TRADEFLEET__VAULT__KEYS / TRADEFLEET__VAULT__KEYS_FILE); they are never printed. PAPER needs none.

PAPER keeps its account in memory, so by default every fleetctl invocation starts a fresh
account. Pass --paper-state FILE to keep the account in a JSON file across invocations (an order
placed by one call is then seen by the next). PAPER's time is the wall clock, which lies after
the bundled data (the market is frozen at its last candle); --paper-time replays another instant.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct ExchangeArgs {
    #[command(subcommand)]
    op: Op,
}

/// Flags every operation takes.
#[derive(Debug, Args)]
struct Target {
    /// Venue: binance, bybit, okx, bitget, htx, kraken or paper.
    #[arg(long)]
    exchange: String,
    /// Use the venue's testnet / demo environment.
    #[arg(long)]
    testnet: bool,
    /// Override the venue's base URL (proxy, mock).
    #[arg(long)]
    base_url: Option<String>,
    /// Unified symbol BASE/QUOTE:SETTLE (default: XRP/USDT:USDT on paper, BTC/USDT:USDT elsewhere).
    #[arg(long)]
    symbol: Option<String>,
    /// Use the stored credentials of this principal (needs the database and the vault keys).
    #[arg(long)]
    credentials: Option<String>,
    /// Which of the principal's stored accounts on this venue (with --credentials).
    #[arg(long, default_value = "default")]
    credentials_label: String,
    /// PAPER: keep the simulated account in this JSON file across invocations (without it every
    /// invocation starts a fresh in-memory account).
    #[arg(long)]
    paper_state: Option<PathBuf>,
    /// PAPER: the simulated "now" (RFC 3339 or Unix milliseconds) instead of the wall clock.
    #[arg(long)]
    paper_time: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Op {
    /// The venue's clock.
    Time(Target),
    /// Recent candles, oldest first (the last one may still be forming).
    Klines {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "1h")]
        timeframe: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Earliest open time wanted (RFC 3339 or Unix ms); otherwise the latest candles.
        #[arg(long)]
        since: Option<String>,
    },
    /// Last price of the symbol.
    Ticker(Target),
    /// Trading rules of the symbol (tick, step, minimums).
    Instrument(Target),
    /// Margin balance.
    Balance {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "USDT")]
        asset: String,
    },
    /// Open positions.
    Positions(Target),
    /// Set the symbol's leverage.
    Leverage {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        value: u32,
    },
    /// Place one order, exactly once per client order id.
    Order {
        #[command(flatten)]
        target: Target,
        /// buy or sell.
        #[arg(long)]
        side: String,
        /// market, limit, stop-market or take-profit-market.
        #[arg(long = "type")]
        order_type: String,
        /// Base-coin quantity.
        #[arg(long)]
        quantity: String,
        /// Limit price (limit orders).
        #[arg(long)]
        price: Option<String>,
        /// Trigger price (stop-market, take-profit-market).
        #[arg(long)]
        trigger_price: Option<String>,
        /// Only reduce the position (an excess quantity is trimmed to it).
        #[arg(long)]
        reduce_only: bool,
        /// 1-32 letters and digits; generated when absent. Placing again with the same id
        /// returns the existing order.
        #[arg(long)]
        client_order_id: Option<String>,
    },
    /// Cancel one order by client order id.
    Cancel {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        client_order_id: String,
    },
    /// Cancel every open order of the symbol, conditional ones included.
    CancelAll(Target),
    /// Open orders of the symbol, conditional ones included.
    OpenOrders(Target),
    /// One order by client order id.
    OrderStatus {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        client_order_id: String,
    },
    /// Connectivity, account and positions: validates the credentials.
    Check(Target),
}

/// A connected venue and the symbol the operation is about.
struct Session {
    exchange: Arc<dyn Exchange>,
    symbol: Symbol,
}

fn parse_time(flag: &str, s: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(ms) = s.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| CliError::usage(format!("{flag}: {ms} ms is out of range")));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CliError::usage(format!(
                "{flag}: {s:?} is neither RFC 3339 nor Unix milliseconds ({e})"
            ))
        })
}

fn parse_decimal(flag: &str, s: &str) -> Result<Decimal, CliError> {
    Decimal::from_str(s).map_err(|_| CliError::usage(format!("{flag}: {s:?} is not a number")))
}

fn env_secret(name: &str) -> Option<SecretString> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}

/// API credentials from the environment; `None` when neither key nor secret is set.
fn credentials_from_env() -> Result<Option<Credentials>, CliError> {
    match (
        env_secret("TRADEFLEET_API_KEY"),
        env_secret("TRADEFLEET_API_SECRET"),
    ) {
        (Some(api_key), Some(api_secret)) => Ok(Some(Credentials {
            api_key,
            api_secret,
            passphrase: env_secret("TRADEFLEET_API_PASSPHRASE"),
        })),
        (None, None) => Ok(None),
        _ => Err(CliError::usage(
            "TRADEFLEET_API_KEY and TRADEFLEET_API_SECRET must be set together",
        )),
    }
}

/// The principal's credentials for the target venue, opened through the vault.
async fn vault_credentials(
    globals: &Globals,
    venue: &tradefleet::exchange::VenueDescriptor,
    t: &Target,
    principal: &str,
) -> Result<Credentials, CliError> {
    let ctx = Ctx::open(globals).await?;
    let ring = ctx.key_ring()?;
    let credentials = crate::credentials::load(
        &ctx,
        &ring,
        principal,
        venue,
        t.testnet,
        &t.credentials_label,
    )
    .await?;
    ctx.store.close().await.ok();
    Ok(credentials)
}

async fn connect(globals: &Globals, t: &Target) -> Result<Session, CliError> {
    let venue = find_venue(&t.exchange)?;
    let is_paper = venue.name == "paper";
    if !is_paper && (t.paper_state.is_some() || t.paper_time.is_some()) {
        return Err(CliError::usage(
            "--paper-state and --paper-time apply to --exchange paper only",
        ));
    }
    let config = Config::load(&ConfigSources::from_process(globals.config.as_deref()))
        .map_err(|e| CliError::usage(e.to_string()))?;
    let mut paper = config.paper.clone();
    if let Some(path) = &t.paper_state {
        paper.state_file = Some(path.clone());
    }
    let default_symbol = if is_paper {
        paper.symbol.clone()
    } else {
        "BTC/USDT:USDT".to_string()
    };
    let symbol_text = t.symbol.clone().unwrap_or(default_symbol);
    let symbol = Symbol::from_str(&symbol_text).map_err(|e| CliError::usage(e.to_string()))?;
    let clock: Arc<dyn Clock> = match &t.paper_time {
        Some(s) => Arc::new(ManualClock::new(parse_time("--paper-time", s)?)),
        None => Arc::new(SystemClock),
    };
    let credentials = match &t.credentials {
        // Opened on PAPER too (it ignores them), so the vault path can be checked offline.
        Some(principal) => Some(vault_credentials(globals, venue, t, principal).await?),
        None if is_paper => None,
        None => credentials_from_env()?,
    };
    let params = VenueParams {
        testnet: t.testnet,
        base_url: t.base_url.clone(),
        credentials,
        http: config.exchange.http.clone(),
        paper,
        clock,
    };
    let exchange = build_exchange(venue.name, &params)?;
    Ok(Session { exchange, symbol })
}

fn opt(d: Option<Decimal>) -> String {
    d.map_or_else(|| "-".to_string(), |d| d.normalize().to_string())
}

fn num(d: Decimal) -> String {
    d.normalize().to_string()
}

fn print_orders(orders: &[Order]) {
    let rows: Vec<Vec<String>> = orders
        .iter()
        .map(|o| {
            vec![
                o.client_order_id
                    .as_ref()
                    .map_or_else(|| "-".into(), ToString::to_string),
                o.exchange_order_id.clone(),
                o.symbol.to_string(),
                o.side.as_str().into(),
                o.order_type.as_str().into(),
                o.status.as_str().into(),
                num(o.quantity),
                opt(o.price),
                opt(o.trigger_price),
                if o.reduce_only { "yes" } else { "no" }.into(),
                num(o.filled_quantity),
                opt(o.average_price),
                opt(o.fee),
            ]
        })
        .collect();
    print_table(
        &[
            "CLIENT_ID",
            "ID",
            "SYMBOL",
            "SIDE",
            "TYPE",
            "STATUS",
            "QTY",
            "PRICE",
            "TRIGGER",
            "REDUCE_ONLY",
            "FILLED",
            "AVG_PRICE",
            "FEE",
        ],
        &rows,
    );
}

fn print_candles(candles: &[Candle]) {
    let rows: Vec<Vec<String>> = candles
        .iter()
        .map(|c| {
            vec![
                c.open_time.to_rfc3339(),
                num(c.open),
                num(c.high),
                num(c.low),
                num(c.close),
                num(c.volume),
                if c.closed { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    print_table(
        &[
            "OPEN_TIME",
            "OPEN",
            "HIGH",
            "LOW",
            "CLOSE",
            "VOLUME",
            "CLOSED",
        ],
        &rows,
    );
}

fn key_values(rows: Vec<(&str, String)>) {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect();
    print_table(&["FIELD", "VALUE"], &rows);
}

fn emit<T: Serialize>(globals: &Globals, value: &T, human: impl FnOnce(&T)) -> CliResult {
    if globals.json {
        print_json(value)?;
    } else {
        human(value);
    }
    Ok(ExitCode::SUCCESS)
}

fn client_id(flag: &str, s: &str) -> Result<ClientOrderId, CliError> {
    ClientOrderId::new(s).map_err(|e| CliError::usage(format!("{flag}: {e}")))
}

/// A fresh id for a hand-placed order: `fc`, the time in hex nanoseconds and the process id.
fn generated_client_id() -> Result<ClientOrderId, CliError> {
    let nanos = Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or_default()
        .unsigned_abs();
    ClientOrderId::new(format!("fc{nanos:x}{:x}", std::process::id()))
        .map_err(|e| CliError::failure("internal", e.to_string()))
}

struct OrderFlags<'a> {
    side: &'a str,
    order_type: &'a str,
    quantity: &'a str,
    price: Option<&'a str>,
    trigger_price: Option<&'a str>,
    reduce_only: bool,
    client_order_id: Option<&'a str>,
}

/// Check the order flags without a venue, so bad input is reported before connecting.
/// Returns the request minus its symbol.
fn order_request(f: &OrderFlags<'_>) -> Result<impl FnOnce(Symbol) -> OrderRequest, CliError> {
    let side = Side::from_str(f.side).map_err(|e| CliError::usage(format!("--side: {e}")))?;
    let order_type =
        OrderType::from_str(f.order_type).map_err(|e| CliError::usage(format!("--type: {e}")))?;
    let quantity = parse_decimal("--quantity", f.quantity)?;
    let price = f.price.map(|p| parse_decimal("--price", p)).transpose()?;
    let trigger_price = f
        .trigger_price
        .map(|p| parse_decimal("--trigger-price", p))
        .transpose()?;
    match order_type {
        OrderType::Limit if price.is_none() => {
            return Err(CliError::usage("--type limit needs --price"));
        }
        t if t.is_conditional() && trigger_price.is_none() => {
            return Err(CliError::usage(format!(
                "--type {} needs --trigger-price",
                t.as_str()
            )));
        }
        _ => {}
    }
    let client_order_id = match f.client_order_id {
        Some(id) => client_id("--client-order-id", id)?,
        None => generated_client_id()?,
    };
    let reduce_only = f.reduce_only;
    Ok(move |symbol| OrderRequest {
        symbol,
        client_order_id,
        side,
        order_type,
        quantity,
        price,
        trigger_price,
        reduce_only,
    })
}

#[derive(Serialize)]
struct PlacementOut<'a> {
    placement: &'static str,
    order: &'a Order,
}

#[derive(Serialize)]
struct CheckOut {
    exchange: &'static str,
    server_time: DateTime<Utc>,
    account: tradefleet::exchange::AccountCheck,
    positions: Vec<tradefleet::domain::Position>,
}

/// `fleetctl exchange <op>`.
pub(crate) async fn run(globals: &Globals, args: ExchangeArgs) -> CliResult {
    match args.op {
        Op::Time(t) => {
            let s = connect(globals, &t).await?;
            let time = s.exchange.server_time().await?;
            emit(globals, &serde_json::json!({ "server_time": time }), |_| {
                println!("{}", time.to_rfc3339());
            })
        }
        Op::Klines {
            target,
            timeframe,
            limit,
            since,
        } => {
            let tf = Timeframe::from_str(&timeframe)
                .map_err(|e| CliError::usage(format!("--timeframe: {e}")))?;
            let since = since.map(|s| parse_time("--since", &s)).transpose()?;
            let s = connect(globals, &target).await?;
            let candles = s.exchange.klines(&s.symbol, tf, since, limit).await?;
            emit(globals, &candles, |c| print_candles(c))
        }
        Op::Ticker(t) => {
            let s = connect(globals, &t).await?;
            let ticker = s.exchange.ticker(&s.symbol).await?;
            emit(globals, &ticker, |t| {
                print_table(
                    &["SYMBOL", "LAST", "BID", "ASK", "MARK", "TIME"],
                    &[vec![
                        t.symbol.to_string(),
                        num(t.last),
                        opt(t.bid),
                        opt(t.ask),
                        opt(t.mark),
                        t.time.to_rfc3339(),
                    ]],
                );
            })
        }
        Op::Instrument(t) => {
            let s = connect(globals, &t).await?;
            let i = s.exchange.instrument(&s.symbol).await?;
            emit(globals, &i, |i| {
                key_values(vec![
                    ("symbol", i.symbol.to_string()),
                    ("venue_symbol", i.venue_symbol.clone()),
                    ("tick_size", num(i.tick_size)),
                    ("step_size", num(i.step_size)),
                    ("min_quantity", num(i.min_quantity)),
                    ("min_notional", num(i.min_notional)),
                    ("contract_size", num(i.contract_size)),
                    ("max_leverage", num(i.max_leverage)),
                ]);
            })
        }
        Op::Balance { target, asset } => {
            let s = connect(globals, &target).await?;
            let b = s.exchange.balance(&asset).await?;
            emit(globals, &b, |b| {
                print_table(
                    &["ASSET", "EQUITY", "AVAILABLE", "UNREALIZED_PNL"],
                    &[vec![
                        b.asset.clone(),
                        num(b.equity),
                        num(b.available),
                        num(b.unrealized_pnl),
                    ]],
                );
            })
        }
        Op::Positions(t) => {
            let s = connect(globals, &t).await?;
            let positions = s.exchange.positions(None).await?;
            emit(globals, &positions, |p| print_positions(p))
        }
        Op::Leverage { target, value } => {
            let s = connect(globals, &target).await?;
            s.exchange.set_leverage(&s.symbol, value).await?;
            let out = serde_json::json!({ "symbol": s.symbol, "leverage": value });
            emit(globals, &out, |_| {
                println!("leverage of {} set to {value}x", s.symbol);
            })
        }
        Op::Order {
            target,
            side,
            order_type,
            quantity,
            price,
            trigger_price,
            reduce_only,
            client_order_id,
        } => {
            let flags = OrderFlags {
                side: &side,
                order_type: &order_type,
                quantity: &quantity,
                price: price.as_deref(),
                trigger_price: trigger_price.as_deref(),
                reduce_only,
                client_order_id: client_order_id.as_deref(),
            };
            let make_request = order_request(&flags)?;
            let s = connect(globals, &target).await?;
            let request = make_request(s.symbol.clone());
            let placement =
                place_once(s.exchange.as_ref(), &request, ReconcilePolicy::default()).await?;
            let (kind, order) = match &placement {
                Placement::Placed(o) => ("placed", o),
                Placement::Existing(o) => ("existing", o),
            };
            let out = PlacementOut {
                placement: kind,
                order,
            };
            emit(globals, &out, |o| {
                println!("{} order {}", o.placement, request.client_order_id);
                print_orders(std::slice::from_ref(o.order));
            })
        }
        Op::Cancel {
            target,
            client_order_id,
        } => {
            let id = client_id("--client-order-id", &client_order_id)?;
            let s = connect(globals, &target).await?;
            s.exchange.cancel_order(&s.symbol, &id).await?;
            emit(globals, &serde_json::json!({ "canceled": id }), |_| {
                println!("canceled {id}");
            })
        }
        Op::CancelAll(t) => {
            let s = connect(globals, &t).await?;
            let n = s.exchange.cancel_all(&s.symbol).await?;
            emit(
                globals,
                &serde_json::json!({ "symbol": s.symbol, "canceled": n }),
                |_| println!("canceled {n} order(s) of {}", s.symbol),
            )
        }
        Op::OpenOrders(t) => {
            let s = connect(globals, &t).await?;
            let orders = s.exchange.open_orders(&s.symbol).await?;
            emit(globals, &orders, |o| print_orders(o))
        }
        Op::OrderStatus {
            target,
            client_order_id,
        } => {
            let id = client_id("--client-order-id", &client_order_id)?;
            let s = connect(globals, &target).await?;
            match s.exchange.order_by_client_id(&s.symbol, &id).await? {
                Some(order) => emit(globals, &order, |o| print_orders(std::slice::from_ref(o))),
                None => Err(CliError::failure(
                    "order_not_found",
                    format!("{}: no order with client order id {id}", s.exchange.name()),
                )),
            }
        }
        Op::Check(t) => {
            let s = connect(globals, &t).await?;
            check_report(globals, s.exchange.as_ref()).await
        }
    }
}

/// Connectivity, account permissions and positions of `exchange`, printed; warns when the key
/// may withdraw. Shared by `exchange check` and `credentials verify`.
pub(crate) async fn check_report(globals: &Globals, exchange: &dyn Exchange) -> CliResult {
    let server_time = exchange.server_time().await?;
    let account = exchange.test_connectivity().await?;
    let positions = exchange.positions(None).await?;
    let out = CheckOut {
        exchange: exchange.name(),
        server_time,
        account,
        positions,
    };
    emit(globals, &out, |c| {
        let yes_no = |b: Option<bool>| match b {
            Some(true) => "yes".to_string(),
            Some(false) => "no".to_string(),
            None => "unknown".to_string(),
        };
        let mut rows = vec![
            ("exchange", c.exchange.to_string()),
            ("server_time", c.server_time.to_rfc3339()),
            ("can_trade", yes_no(c.account.can_trade)),
            ("can_withdraw", yes_no(c.account.can_withdraw)),
            ("open_positions", c.positions.len().to_string()),
        ];
        rows.extend(c.account.notes.iter().map(|n| ("note", n.clone())));
        key_values(rows);
    })?;
    if out.account.can_withdraw == Some(true) {
        eprintln!("warning: this key may withdraw funds; a trading bot never needs that");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_positions(positions: &[tradefleet::domain::Position]) {
    let rows: Vec<Vec<String>> = positions
        .iter()
        .map(|p| {
            vec![
                p.symbol.to_string(),
                p.side.as_str().into(),
                num(p.quantity),
                num(p.entry_price),
                opt(p.mark_price),
                num(p.unrealized_pnl.round_dp(8)),
                opt(p.leverage),
                opt(p.liquidation_price),
            ]
        })
        .collect();
    print_table(
        &[
            "SYMBOL",
            "SIDE",
            "QTY",
            "ENTRY",
            "MARK",
            "UNREALIZED_PNL",
            "LEVERAGE",
            "LIQ_PRICE",
        ],
        &rows,
    );
}
