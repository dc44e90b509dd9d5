//! PAPER: a simulated USDT-margined linear-perpetual venue over replayed candles, the default venue
//! of the demo and of backtests.
//!
//! # Time
//! Time is `VenueParams::clock`. A base candle is complete when its end is `<= now`. The market
//! price at `now` is the close of the last complete base candle; the market therefore opens when
//! the first candle of the data completes: before that, klines are empty and orders and tickers
//! fail with `Unavailable` (retry later). After the data ends the market is frozen at the last
//! close and every candle is reported closed. Klines of higher timeframes (multiples of the base
//! interval only) aggregate the complete base candles; the period containing `now` is returned
//! with `closed = false` and holds only the base candles already complete (a flat candle at the
//! current price with zero volume when none is), so nothing is ever read from the future.
//!
//! Data prices are put on the instrument's tick grid (nearest) before use.
//!
//! # Simulation
//! The account advances lazily: every account call first plays the complete base candles between
//! the last simulated instant and `now`, in order (rules in `engine.rs`: stops before take-profits
//! in one candle, fills at the trigger or the gapped open, maker fee for resting limit fills).
//! Market orders fill at the current price moved against the taker by `slippage_bps` (on the
//! tick grid) and pay the taker fee; a limit order marketable on arrival fills the same way but
//! never beyond its limit price.
//! Orders placed while a candle forms take part in that candle, whose path starts at the price
//! they were checked against. Reduce-only orders never increase or flip a position: an excess
//! quantity is trimmed to the position, and a reduce-only order that finds no position to reduce
//! is rejected at placement (`InvalidOrder`) or expires when it triggers later.
//! Initial margin is checked against the available balance for the opening part of an order
//! (the margin a flipping order frees by closing is not counted: conservative); resting limit
//! orders reserve their full margin.
//! A conditional order that fires ends `Triggered`, carrying the fill of the market order it
//! became (quantity, average price, fee); a liquidation cancels the symbol's open orders.
//! Positions are one-way per symbol; initial margin = notional / leverage; the liquidation price
//! is the isolated-style approximation documented on `Rules::liquidation_price`, and a
//! liquidation loses exactly the position's initial margin.
//!
//! # State
//! The whole account is one [`PaperState`] in a [`PaperStore`] (in memory by default, a JSON file
//! when `state_file` is set), loaded and saved around every account call, so workers in several
//! processes can take turns on one account (one at a time: the store does no compare-and-swap).
//! Every order and fill is kept, so the state grows with the account's history. Results depend only on the data, the settings and the
//! clock: nothing random and no wall-clock time is used.

mod candles;
mod engine;
mod redis_store;
mod state;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, OrderStatus, Position, Symbol,
    Ticker, Timeframe,
};

use super::precision::{Round, round_price};
use super::registry::{VenueDescriptor, VenueParams};
use super::{AccountCheck, Exchange, ExchangeError, ExchangeResult};

pub use candles::{BUNDLED_SYMBOL, BaseCandle, CandleSource, ReplaySource};
pub use redis_store::RedisPaperStore;
pub use state::{
    FilePaperStore, Liquidity, MemoryPaperStore, PaperFill, PaperPosition, PaperState, PaperStore,
    STATE_VERSION,
};

use engine::Rules;

const VENUE: &str = "paper";

/// Settings of the simulated venue (config section `paper`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaperSettings {
    /// Candle CSV (`open_time,open,high,low,close,volume`) replayed as the market; the bundled
    /// XRP/USDT 5m data when unset.
    pub csv: Option<std::path::PathBuf>,
    /// Starting equity in the settle asset.
    pub initial_balance: Decimal,
    /// Taker fee as a fraction (0.0005 = 5 bp).
    pub taker_fee: Decimal,
    /// Maker fee as a fraction.
    pub maker_fee: Decimal,
    /// Market-order slippage in basis points.
    pub slippage_bps: Decimal,
    /// Seed of the simulator's randomness. The simulator draws no random numbers today; the seed
    /// keeps a future stochastic fill model reproducible.
    pub seed: u64,
    pub max_leverage: u32,
    /// Leverage of a symbol before `set_leverage` is called.
    pub default_leverage: u32,
    /// The account whose state is loaded and saved (one venue instance, one account).
    pub account: String,
    /// Unified symbol of the replayed market (the bundled data is XRP/USDT:USDT).
    pub symbol: String,
    pub tick_size: Decimal,
    pub step_size: Decimal,
    pub min_quantity: Decimal,
    /// Smallest order value in the quote currency (reduce-only orders are exempt).
    pub min_notional: Decimal,
    /// Maintenance margin as a fraction of the entry notional (liquidation price).
    pub maintenance_margin_rate: Decimal,
    /// Keep accounts in this JSON file instead of in memory (fleetctl `--paper-state`).
    pub state_file: Option<PathBuf>,
}

impl Default for PaperSettings {
    fn default() -> Self {
        Self {
            csv: None,
            initial_balance: Decimal::from(10_000),
            taker_fee: Decimal::new(5, 4),
            maker_fee: Decimal::new(2, 4),
            slippage_bps: Decimal::from(2),
            seed: 42,
            max_leverage: 20,
            default_leverage: 10,
            account: "default".into(),
            symbol: BUNDLED_SYMBOL.into(),
            tick_size: Decimal::new(1, 4),
            step_size: Decimal::new(1, 1),
            min_quantity: Decimal::new(1, 1),
            min_notional: Decimal::from(5),
            maintenance_margin_rate: Decimal::new(5, 3),
            state_file: None,
        }
    }
}

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "paper",
    display_name: "PAPER (simulated fills on replayed market data)",
    has_testnet: false,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "bundled XRP/USDT:USDT 5m replay by default; time from the clock; no credentials",
    build,
};

fn build(params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    Ok(Arc::new(PaperExchange::new(
        params.paper.clone(),
        params.clock.clone(),
    )?))
}

fn config_error(message: impl Into<String>) -> ExchangeError {
    ExchangeError::Config {
        venue: VENUE,
        message: message.into(),
    }
}

/// The simulated venue: one account (`settings.account`) on one replayed market.
#[derive(Debug)]
pub struct PaperExchange {
    source: Arc<dyn CandleSource>,
    rules: Rules,
    account: String,
    initial_balance: Decimal,
    clock: Arc<dyn Clock>,
    store: Arc<dyn PaperStore>,
    /// Serialises load -> simulate -> save inside this process; holds the account between
    /// calls when `held` is set.
    gate: tokio::sync::Mutex<Option<PaperState>>,
    /// This instance has the account to itself (see [`PaperExchange::holding_account`]).
    held: bool,
}

impl PaperExchange {
    /// The market from `settings.csv` (or the bundled data) and the store from
    /// `settings.state_file` (or memory).
    pub fn new(settings: PaperSettings, clock: Arc<dyn Clock>) -> ExchangeResult<Self> {
        let symbol = Symbol::from_str(&settings.symbol)
            .map_err(|e| config_error(format!("paper.symbol: {e}")))?;
        let source: Arc<dyn CandleSource> = match &settings.csv {
            None if symbol.to_string() == BUNDLED_SYMBOL => ReplaySource::bundled()?,
            None => {
                return Err(config_error(format!(
                    "paper.symbol {} needs paper.csv: the bundled data is {BUNDLED_SYMBOL}",
                    settings.symbol
                )));
            }
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| config_error(format!("paper.csv {}: {e}", path.display())))?;
                Arc::new(ReplaySource::from_csv(
                    symbol,
                    &text,
                    &path.display().to_string(),
                )?)
            }
        };
        let store: Arc<dyn PaperStore> = match &settings.state_file {
            Some(path) => Arc::new(FilePaperStore::new(path.clone())),
            None => Arc::new(MemoryPaperStore::default()),
        };
        Self::with_parts(settings, clock, source, store)
    }

    /// Any market and any store (a live klines source, a Redis or SQL store).
    pub fn with_parts(
        settings: PaperSettings,
        clock: Arc<dyn Clock>,
        source: Arc<dyn CandleSource>,
        store: Arc<dyn PaperStore>,
    ) -> ExchangeResult<Self> {
        let s = &settings;
        let non_negative = [
            ("paper.initial_balance", s.initial_balance),
            ("paper.taker_fee", s.taker_fee),
            ("paper.maker_fee", s.maker_fee),
            ("paper.slippage_bps", s.slippage_bps),
            ("paper.min_notional", s.min_notional),
            ("paper.maintenance_margin_rate", s.maintenance_margin_rate),
        ];
        if let Some((key, v)) = non_negative.iter().find(|(_, v)| *v < Decimal::ZERO) {
            return Err(config_error(format!("{key} must not be negative, got {v}")));
        }
        let positive = [
            ("paper.tick_size", s.tick_size),
            ("paper.step_size", s.step_size),
            ("paper.min_quantity", s.min_quantity),
        ];
        if let Some((key, v)) = positive.iter().find(|(_, v)| *v <= Decimal::ZERO) {
            return Err(config_error(format!("{key} must be positive, got {v}")));
        }
        if s.maintenance_margin_rate >= Decimal::ONE {
            return Err(config_error(
                "paper.maintenance_margin_rate must be below 1",
            ));
        }
        if s.max_leverage == 0 || s.default_leverage == 0 || s.default_leverage > s.max_leverage {
            return Err(config_error(format!(
                "paper leverage: need 1 <= default_leverage ({}) <= max_leverage ({})",
                s.default_leverage, s.max_leverage
            )));
        }
        if s.account.trim().is_empty() {
            return Err(config_error("paper.account must not be empty"));
        }
        let symbol = source.symbol().clone();
        let instrument = Instrument {
            symbol: symbol.clone(),
            venue_symbol: symbol.concat(),
            tick_size: s.tick_size,
            step_size: s.step_size,
            min_quantity: s.min_quantity,
            min_notional: s.min_notional,
            contract_size: Decimal::ONE,
            max_leverage: Decimal::from(s.max_leverage),
        };
        Ok(Self {
            rules: Rules {
                symbol,
                instrument,
                taker_fee: s.taker_fee,
                maker_fee: s.maker_fee,
                slippage_bps: s.slippage_bps,
                maintenance_margin_rate: s.maintenance_margin_rate,
                max_leverage: s.max_leverage,
                default_leverage: s.default_leverage,
            },
            account: s.account.clone(),
            initial_balance: s.initial_balance,
            clock,
            store,
            source,
            gate: tokio::sync::Mutex::new(None),
            held: false,
        })
    }

    /// The account as of the clock's `now` (simulated up to it and saved).
    pub async fn state(&self) -> ExchangeResult<PaperState> {
        self.with_account(|st, _| Ok(st.clone())).await
    }

    fn check_symbol(&self, symbol: &Symbol) -> ExchangeResult<()> {
        if symbol == &self.rules.symbol {
            return Ok(());
        }
        Err(ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: format!("the paper market replays {} only", self.rules.symbol),
        })
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Data prices on the tick grid (nearest): the bundled data holds float artefacts such as
    /// `1.0937000000000001`, which no venue would quote.
    fn on_tick(&self, c: BaseCandle) -> BaseCandle {
        let tick = |p| round_price(p, &self.rules.instrument, Round::Nearest);
        BaseCandle {
            open: tick(c.open),
            high: tick(c.high),
            low: tick(c.low),
            close: tick(c.close),
            ..c
        }
    }

    async fn closed_candles(&self, from_ms: i64, to_ms: i64) -> ExchangeResult<Vec<BaseCandle>> {
        Ok(self
            .source
            .closed_candles(from_ms, to_ms)
            .await?
            .into_iter()
            .map(|c| self.on_tick(c))
            .collect())
    }

    async fn last_closed(&self, at_ms: i64) -> ExchangeResult<Option<BaseCandle>> {
        Ok(self
            .source
            .last_closed(at_ms)
            .await?
            .map(|c| self.on_tick(c)))
    }

    /// The market price at `now_ms`: the close of the last complete base candle.
    async fn price_at(&self, now_ms: i64) -> ExchangeResult<Option<Decimal>> {
        Ok(self.last_closed(now_ms).await?.map(|c| c.close))
    }

    async fn fresh_state(&self, now_ms: i64) -> ExchangeResult<PaperState> {
        let base = self.source.base_interval_ms();
        let processed = match self.source.last_closed(now_ms).await? {
            Some(c) => c.open_time_ms + base,
            None => self.source.first_open_ms(),
        };
        Ok(PaperState {
            version: STATE_VERSION,
            account: self.account.clone(),
            processed_until_ms: processed,
            initial_balance: self.initial_balance,
            wallet_balance: self.initial_balance,
            realized_pnl: Decimal::ZERO,
            fees_paid: Decimal::ZERO,
            leverage: Default::default(),
            positions: Default::default(),
            orders: Vec::new(),
            fills: Vec::new(),
            next_order_seq: 1,
        })
    }

    /// For a caller that holds the account alone for this instance's whole life (the worker,
    /// under the subscription's lock, builds one instance per cycle): the account is read from
    /// the store once and kept between calls. Any instance writes the account back only when a
    /// call changed it.
    pub fn holding_account(mut self) -> Self {
        self.held = true;
        self
    }

    /// Load the account, simulate it up to now, run `op`, save when anything changed. `op` must
    /// leave the state untouched when it fails; the simulated progress is saved either way.
    async fn with_account<T>(
        &self,
        op: impl FnOnce(&mut PaperState, &AccountCtx) -> ExchangeResult<T>,
    ) -> ExchangeResult<T> {
        let mut turn = self.gate.lock().await;
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        // Taken out: put back only after a successful save, so a failed call reloads.
        let kept = turn.take().filter(|_| self.held);
        let (mut st, loaded) = match kept {
            Some(st) => (st.clone(), Some(st)),
            None => match self.store.load(&self.account).await? {
                Some(st) if st.version == STATE_VERSION => (st.clone(), Some(st)),
                Some(st) => {
                    return Err(config_error(format!(
                        "paper account {} has state version {}, this build reads {STATE_VERSION}",
                        self.account, st.version
                    )));
                }
                None => (self.fresh_state(now_ms).await?, None),
            },
        };
        if now_ms > st.processed_until_ms {
            let base = self.source.base_interval_ms();
            for c in self.closed_candles(st.processed_until_ms, now_ms).await? {
                self.rules.process_candle(&mut st, &c, base)?;
            }
        }
        let ctx = AccountCtx {
            now,
            price: self.price_at(now_ms).await?,
        };
        let out = op(&mut st, &ctx);
        if loaded.as_ref() != Some(&st) {
            self.store.save(&self.account, &st).await?;
        }
        if self.held {
            *turn = Some(st);
        }
        out
    }

    fn find_order<'a>(
        st: &'a PaperState,
        symbol: &Symbol,
        id: &ClientOrderId,
    ) -> Option<&'a Order> {
        st.orders
            .iter()
            .find(|o| &o.symbol == symbol && o.client_order_id.as_ref() == Some(id))
    }
}

/// What an account operation knows about the market.
struct AccountCtx {
    now: DateTime<Utc>,
    price: Option<Decimal>,
}

#[async_trait]
impl Exchange for PaperExchange {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        Ok(self.clock.now())
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        self.check_symbol(symbol)?;
        candles::check_timeframe(self.source.as_ref(), timeframe)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_ms = self.now_ms();
        let len = timeframe.millis();
        let span = len.saturating_mul(i64::from(limit));
        // After the data ends, "latest" means the latest of the data.
        let data_end = self.source.data_end_ms();
        let frozen = data_end.is_some_and(|end| now_ms >= end);
        let (now_ms, current) = match data_end {
            Some(end) if frozen => (end, candles::period_start(end - 1, timeframe)),
            _ => (now_ms, candles::period_start(now_ms, timeframe)),
        };
        let (from, to) = match since {
            Some(s) => {
                let s = s.timestamp_millis();
                let start = candles::period_start(s, timeframe);
                let start = if start < s { start + len } else { start };
                (start, now_ms.min(start.saturating_add(span)))
            }
            None => (current.saturating_sub(span - len), now_ms),
        };
        if from > now_ms {
            return Ok(Vec::new());
        }
        let closed_at = if frozen { i64::MAX } else { now_ms };
        let base = self.closed_candles(from, to).await?;
        let mut out = candles::aggregate(&base, timeframe, closed_at)?;
        let has_current = out
            .last()
            .is_some_and(|c| c.open_time.timestamp_millis() == current);
        if !frozen
            && !has_current
            && current >= from
            && current < from.saturating_add(span)
            && let Some(last) = self.last_closed(now_ms).await?
        {
            out.push(Candle {
                open_time: candles::millis_to_time(current)?,
                open: last.close,
                high: last.close,
                low: last.close,
                close: last.close,
                volume: Decimal::ZERO,
                closed: false,
            });
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if since.is_some() {
            out.truncate(limit);
        } else if out.len() > limit {
            out.drain(..out.len() - limit);
        }
        Ok(out)
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        self.check_symbol(symbol)?;
        let now = self.clock.now();
        let last = self
            .price_at(now.timestamp_millis())
            .await?
            .ok_or_else(|| ExchangeError::Unavailable {
                venue: VENUE,
                message: format!(
                    "no market price at {now}: the replay's first candle opens at {} ms and completes {} ms later",
                    self.source.first_open_ms(),
                    self.source.base_interval_ms()
                ),
            })?;
        Ok(Ticker {
            symbol: symbol.clone(),
            last,
            bid: None,
            ask: None,
            mark: Some(last),
            time: now,
        })
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        self.check_symbol(symbol)?;
        Ok(self.rules.instrument.clone())
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        let settle = self.rules.symbol.settle().to_string();
        if !asset.eq_ignore_ascii_case(&settle) {
            return Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: format!("the paper account holds {settle} only, not {asset}"),
            });
        }
        self.with_account(|st, ctx| {
            let view = self.rules.account(st, ctx.price);
            Ok(Balance {
                asset: settle,
                equity: view.equity,
                available: view.available,
                unrealized_pnl: view.unrealized,
            })
        })
        .await
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        if let Some(s) = symbol {
            self.check_symbol(s)?;
        }
        self.with_account(|st, ctx| {
            Ok(self
                .rules
                .position_view(st, ctx.price)
                .into_iter()
                .collect())
        })
        .await
    }

    async fn set_leverage(&self, symbol: &Symbol, leverage: u32) -> ExchangeResult<()> {
        self.check_symbol(symbol)?;
        self.with_account(|st, ctx| self.rules.set_leverage(st, leverage, ctx.price))
            .await
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        self.check_symbol(&request.symbol)?;
        self.with_account(|st, ctx| self.rules.place(st, request, ctx.price, ctx.now))
            .await
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        self.check_symbol(symbol)?;
        self.with_account(|st, ctx| {
            let Some(order) = st.orders.iter_mut().find(|o| {
                &o.symbol == symbol && o.client_order_id.as_ref() == Some(client_order_id)
            }) else {
                return Err(ExchangeError::OrderNotFound {
                    venue: VENUE,
                    message: format!("no order with client order id {client_order_id}"),
                });
            };
            if order.status != OrderStatus::Open {
                return Err(ExchangeError::OrderNotFound {
                    venue: VENUE,
                    message: format!(
                        "order {client_order_id} is {} and can no longer be canceled",
                        order.status.as_str()
                    ),
                });
            }
            order.status = OrderStatus::Canceled;
            order.updated_at = Some(ctx.now);
            Ok(())
        })
        .await
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        self.check_symbol(symbol)?;
        self.with_account(|st, ctx| {
            let mut n = 0u32;
            for o in st
                .orders
                .iter_mut()
                .filter(|o| &o.symbol == symbol && o.status == OrderStatus::Open)
            {
                o.status = OrderStatus::Canceled;
                o.updated_at = Some(ctx.now);
                n = n.saturating_add(1);
            }
            Ok(n)
        })
        .await
    }

    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>> {
        self.check_symbol(symbol)?;
        self.with_account(|st, _| {
            Ok(st
                .orders
                .iter()
                .filter(|o| &o.symbol == symbol && o.status == OrderStatus::Open)
                .cloned()
                .collect())
        })
        .await
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        self.check_symbol(symbol)?;
        self.with_account(|st, _| Ok(Self::find_order(st, symbol, client_order_id).cloned()))
            .await
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        let first = self.source.first_open_ms();
        let end = self.source.data_end_ms();
        let symbol = self.rules.symbol.clone();
        self.with_account(|st, _| {
            Ok(AccountCheck {
                can_trade: Some(true),
                can_withdraw: Some(false),
                notes: vec![
                    format!("simulated account {:?}", st.account),
                    format!(
                        "market {symbol}: replay from {} to {}",
                        candles::millis_to_time(first)?,
                        match end {
                            Some(e) => candles::millis_to_time(e)?.to_string(),
                            None => "live".into(),
                        }
                    ),
                ],
            })
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigSources};

    fn env(pairs: &[(&str, &str)]) -> ConfigSources {
        ConfigSources {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn settings_come_from_the_environment() {
        let c = Config::load(&env(&[
            ("TRADEFLEET__PAPER__ACCOUNT", "alice"),
            ("TRADEFLEET__PAPER__TICK_SIZE", "0.001"),
            ("TRADEFLEET__PAPER__MIN_NOTIONAL", "10"),
            ("TRADEFLEET__PAPER__DEFAULT_LEVERAGE", "3"),
            ("TRADEFLEET__PAPER__STATE_FILE", "/tmp/p.json"),
        ]))
        .unwrap();
        assert_eq!(c.paper.account, "alice");
        assert_eq!(c.paper.tick_size, Decimal::new(1, 3));
        assert_eq!(c.paper.min_notional, Decimal::from(10));
        assert_eq!(c.paper.default_leverage, 3);
        assert_eq!(c.paper.state_file, Some(PathBuf::from("/tmp/p.json")));
    }

    #[test]
    fn unknown_paper_keys_are_refused() {
        let err = Config::load(&env(&[("TRADEFLEET__PAPER__TICKSIZE", "0.1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ticksize"), "{err}");
    }
}
