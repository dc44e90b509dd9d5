//! The matching engine of the PAPER venue: plain functions over `PaperState` that accept orders,
//! play complete base candles against resting orders and the position, and report the account.
//! No I/O and no clock here, so every rule is testable on its own.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{
    Instrument, Order, OrderRequest, OrderStatus, OrderType, Position, PositionSide, Side, Symbol,
};
use crate::exchange::precision::{Round, round_price, round_to_increment};
use crate::exchange::{ExchangeError, ExchangeResult};

use super::VENUE;
use super::candles::{BaseCandle, millis_to_time};
use super::state::{Liquidity, PaperFill, PaperPosition, PaperState};

/// The trading rules of the simulated market, fixed for the life of one `PaperExchange`.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub symbol: Symbol,
    pub instrument: Instrument,
    pub taker_fee: Decimal,
    pub maker_fee: Decimal,
    pub slippage_bps: Decimal,
    pub maintenance_margin_rate: Decimal,
    pub max_leverage: u32,
    pub default_leverage: u32,
}

/// The account in numbers at one mark price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AccountView {
    pub wallet: Decimal,
    pub unrealized: Decimal,
    pub equity: Decimal,
    pub position_margin: Decimal,
    pub order_margin: Decimal,
    pub available: Decimal,
}

fn sign(side: Side) -> Decimal {
    match side {
        Side::Buy => Decimal::ONE,
        Side::Sell => Decimal::NEGATIVE_ONE,
    }
}

impl Rules {
    fn key(&self) -> String {
        self.symbol.to_string()
    }

    pub fn leverage(&self, st: &PaperState) -> u32 {
        st.leverage
            .get(&self.key())
            .copied()
            .unwrap_or(self.default_leverage)
    }

    /// A taker's price after slippage, on the tick grid, always against the taker.
    pub fn slipped(&self, side: Side, price: Decimal) -> Decimal {
        let f = self.slippage_bps / Decimal::from(10_000);
        match side {
            Side::Buy => round_price(price * (Decimal::ONE + f), &self.instrument, Round::Up),
            Side::Sell => round_price(price * (Decimal::ONE - f), &self.instrument, Round::Down),
        }
    }

    /// Isolated-style approximation: the price where the loss equals the initial margin minus a
    /// maintenance margin of `rate x entry notional`:
    /// long `entry x (1 - 1/L + mmr)`, short `entry x (1 + 1/L - mmr)`, put on the tick grid
    /// towards the entry (so it is reached no later than the exact value).
    pub fn liquidation_price(&self, pos: &PaperPosition, leverage: u32) -> Decimal {
        let inv = Decimal::ONE / Decimal::from(leverage.max(1));
        let mmr = self.maintenance_margin_rate;
        if pos.quantity > Decimal::ZERO {
            let p = pos.entry_price * (Decimal::ONE - inv + mmr);
            round_price(p.max(Decimal::ZERO), &self.instrument, Round::Up)
        } else {
            let p = pos.entry_price * (Decimal::ONE + inv - mmr);
            round_price(p, &self.instrument, Round::Down)
        }
    }

    pub fn position(&self, st: &PaperState) -> Option<PaperPosition> {
        st.positions.get(&self.key()).cloned()
    }

    /// The unified position, `None` when flat.
    pub fn position_view(&self, st: &PaperState, mark: Option<Decimal>) -> Option<Position> {
        let p = self.position(st)?;
        let lev = self.leverage(st);
        Some(Position {
            symbol: self.symbol.clone(),
            side: if p.quantity > Decimal::ZERO {
                PositionSide::Long
            } else {
                PositionSide::Short
            },
            quantity: p.quantity.abs(),
            entry_price: p.entry_price,
            mark_price: mark,
            unrealized_pnl: mark.map_or(Decimal::ZERO, |m| {
                ((m - p.entry_price) * p.quantity).normalize()
            }),
            leverage: Some(Decimal::from(lev)),
            liquidation_price: Some(self.liquidation_price(&p, lev)),
        })
    }

    pub fn account(&self, st: &PaperState, mark: Option<Decimal>) -> AccountView {
        self.account_without(st, mark, None)
    }

    /// The account with the margin of order `skip` not reserved (the order being filled).
    fn account_without(
        &self,
        st: &PaperState,
        mark: Option<Decimal>,
        skip: Option<usize>,
    ) -> AccountView {
        let lev = Decimal::from(self.leverage(st).max(1));
        let (unrealized, position_margin) = match self.position(st) {
            Some(p) => (
                mark.map_or(Decimal::ZERO, |m| (m - p.entry_price) * p.quantity),
                p.quantity.abs() * p.entry_price / lev,
            ),
            None => (Decimal::ZERO, Decimal::ZERO),
        };
        let order_margin: Decimal = st
            .orders
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                Some(*i) != skip
                    && o.status == OrderStatus::Open
                    && o.order_type == OrderType::Limit
                    && !o.reduce_only
            })
            .map(|(_, o)| o.quantity * o.price.unwrap_or_default() / lev)
            .sum();
        let equity = st.wallet_balance + unrealized;
        AccountView {
            wallet: st.wallet_balance,
            unrealized: unrealized.normalize(),
            equity: equity.normalize(),
            position_margin,
            order_margin,
            available: (equity - position_margin - order_margin)
                .max(Decimal::ZERO)
                .normalize(),
        }
    }

    /// How much an order of `side` can reduce the current position.
    fn reducible(&self, st: &PaperState, side: Side) -> Decimal {
        match self.position(st) {
            Some(p) if p.quantity > Decimal::ZERO && side == Side::Sell => p.quantity,
            Some(p) if p.quantity < Decimal::ZERO && side == Side::Buy => -p.quantity,
            _ => Decimal::ZERO,
        }
    }

    fn invalid(message: impl Into<String>) -> ExchangeError {
        ExchangeError::InvalidOrder {
            venue: VENUE,
            message: message.into(),
        }
    }

    fn on_grid(value: Decimal, increment: Decimal) -> bool {
        round_to_increment(value, increment, Round::Down) == value.normalize()
    }

    /// Accept `req` at `now` with the market at `price_now`: validate, then fill (market and
    /// marketable limit orders) or rest it. A rejected request leaves the state untouched.
    pub fn place(
        &self,
        st: &mut PaperState,
        req: &OrderRequest,
        price_now: Option<Decimal>,
        now: DateTime<Utc>,
    ) -> ExchangeResult<Order> {
        if st
            .orders
            .iter()
            .any(|o| o.client_order_id.as_ref() == Some(&req.client_order_id))
        {
            return Err(ExchangeError::DuplicateClientOrderId {
                venue: VENUE,
                message: format!(
                    "client order id {} was already used on this account",
                    req.client_order_id
                ),
            });
        }
        let inst = &self.instrument;
        if req.quantity <= Decimal::ZERO {
            return Err(Self::invalid(format!(
                "quantity must be positive, got {}",
                req.quantity
            )));
        }
        if !Self::on_grid(req.quantity, inst.step_size) {
            return Err(Self::invalid(format!(
                "quantity {} is not a multiple of the step size {}",
                req.quantity, inst.step_size
            )));
        }
        if req.quantity < inst.min_quantity {
            return Err(ExchangeError::BelowMinimum {
                venue: VENUE,
                what: "quantity",
                value: req.quantity.to_string(),
                minimum: inst.min_quantity.to_string(),
            });
        }
        let check_price = |name: &str, p: Option<Decimal>| -> ExchangeResult<Decimal> {
            let p = p.ok_or_else(|| {
                Self::invalid(format!("{} orders need a {name}", req.order_type.as_str()))
            })?;
            if p <= Decimal::ZERO || !Self::on_grid(p, inst.tick_size) {
                return Err(Self::invalid(format!(
                    "{name} {p} must be positive and a multiple of the tick size {}",
                    inst.tick_size
                )));
            }
            Ok(p)
        };
        let limit_price = match req.order_type {
            OrderType::Limit => Some(check_price("price", req.price)?),
            _ => None,
        };
        let trigger = if req.order_type.is_conditional() {
            Some(check_price("trigger price", req.trigger_price)?)
        } else {
            None
        };
        let price_now = price_now.ok_or_else(|| ExchangeError::Unavailable {
            venue: VENUE,
            message: "no market price yet: the replay has no complete candle at this time".into(),
        })?;
        if req.reduce_only && self.reducible(st, req.side) == Decimal::ZERO {
            return Err(Self::invalid(format!(
                "reduce-only {} order would not reduce any position",
                req.side.as_str()
            )));
        }
        let reference = limit_price.or(trigger).unwrap_or(price_now);
        if !req.reduce_only
            && inst.min_notional > Decimal::ZERO
            && req.quantity * reference < inst.min_notional
        {
            return Err(ExchangeError::BelowMinimum {
                venue: VENUE,
                what: "notional",
                value: (req.quantity * reference).normalize().to_string(),
                minimum: inst.min_notional.to_string(),
            });
        }
        if let Some(t) = trigger {
            let immediate = match (req.order_type, req.side) {
                (OrderType::StopMarket, Side::Sell) | (OrderType::TakeProfitMarket, Side::Buy) => {
                    t >= price_now
                }
                _ => t <= price_now,
            };
            if immediate {
                return Err(Self::invalid(format!(
                    "{} {} with trigger {t} would trigger immediately at price {price_now}",
                    req.side.as_str(),
                    req.order_type.as_str()
                )));
            }
        }

        let seq = st.next_order_seq;
        let order = Order {
            symbol: req.symbol.clone(),
            client_order_id: Some(req.client_order_id.clone()),
            exchange_order_id: format!("P{seq}"),
            side: req.side,
            order_type: req.order_type,
            status: OrderStatus::Open,
            quantity: req.quantity,
            price: limit_price,
            trigger_price: trigger,
            reduce_only: req.reduce_only,
            filled_quantity: Decimal::ZERO,
            average_price: None,
            fee: None,
            created_at: Some(now),
            updated_at: Some(now),
        };
        let now_ms = now.timestamp_millis();
        // Work on a copy so a rejection leaves no trace.
        let mut next = st.clone();
        next.next_order_seq = seq + 1;
        next.orders.push(order);
        let idx = next.orders.len() - 1;
        match (req.order_type, limit_price) {
            (OrderType::Market, _) => {
                let price = self.slipped(req.side, price_now);
                self.fill(&mut next, idx, price, Liquidity::Taker, now_ms, true)?;
            }
            (OrderType::Limit, Some(p))
                if (req.side == Side::Buy && p >= price_now)
                    || (req.side == Side::Sell && p <= price_now) =>
            {
                // Marketable: takes liquidity now, never at a worse price than its limit.
                let slipped = self.slipped(req.side, price_now);
                let price = match req.side {
                    Side::Buy => slipped.min(p),
                    Side::Sell => slipped.max(p),
                };
                self.fill(&mut next, idx, price, Liquidity::Taker, now_ms, true)?;
            }
            (OrderType::Limit, Some(p)) if !req.reduce_only => {
                let view = self.account(st, Some(price_now));
                let required = req.quantity * p / Decimal::from(self.leverage(st).max(1));
                if required > view.available {
                    return Err(insufficient(required, view.available));
                }
            }
            _ => {}
        }
        let placed = next.orders.get(idx).cloned().ok_or_else(|| {
            ExchangeError::malformed(VENUE, "place_order", "placed order vanished")
        })?;
        *st = next;
        Ok(placed)
    }

    /// Execute order `idx` at `price`. Reduce-only orders are trimmed to the position (and expire
    /// when there is nothing left to reduce); with `check_margin`, an order whose opening part
    /// needs more initial margin than is available fails with `InsufficientMargin`.
    fn fill(
        &self,
        st: &mut PaperState,
        idx: usize,
        price: Decimal,
        liquidity: Liquidity,
        time_ms: i64,
        check_margin: bool,
    ) -> ExchangeResult<()> {
        let Some(order) = st.orders.get(idx).cloned() else {
            return Ok(());
        };
        let time = millis_to_time(time_ms)?;
        let reducible = self.reducible(st, order.side);
        let quantity = if order.reduce_only {
            order.quantity.min(reducible)
        } else {
            order.quantity
        };
        if quantity <= Decimal::ZERO {
            if let Some(o) = st.orders.get_mut(idx) {
                o.status = OrderStatus::Expired;
                o.updated_at = Some(time);
            }
            return Ok(());
        }
        if check_margin && !order.reduce_only {
            let opening = (quantity - reducible).max(Decimal::ZERO);
            let required = opening * price / Decimal::from(self.leverage(st).max(1));
            let available = self.account_without(st, Some(price), Some(idx)).available;
            if required > available {
                return Err(insufficient(required, available));
            }
        }
        let realized = self.apply_to_position(st, order.side, quantity, price);
        let rate = match liquidity {
            Liquidity::Maker => self.maker_fee,
            Liquidity::Taker | Liquidity::Liquidation => self.taker_fee,
        };
        let fee = (quantity * price * rate).normalize();
        book(st, realized, fee);
        st.fills.push(PaperFill {
            time_ms,
            symbol: order.symbol.to_string(),
            client_order_id: order.client_order_id.as_ref().map(ToString::to_string),
            side: order.side,
            quantity,
            price,
            fee,
            realized_pnl: realized,
            liquidity,
        });
        if let Some(o) = st.orders.get_mut(idx) {
            o.status = if o.order_type.is_conditional() {
                OrderStatus::Triggered
            } else {
                OrderStatus::Filled
            };
            o.filled_quantity = quantity;
            o.average_price = Some(price);
            o.fee = Some(fee);
            o.updated_at = Some(time);
        }
        Ok(())
    }

    /// Net the fill into the one-way position; returns the realized PnL of the closed part.
    fn apply_to_position(
        &self,
        st: &mut PaperState,
        side: Side,
        quantity: Decimal,
        price: Decimal,
    ) -> Decimal {
        let key = self.key();
        let delta = sign(side) * quantity;
        let Some(p) = st.positions.get(&key).cloned() else {
            st.positions.insert(
                key,
                PaperPosition {
                    quantity: delta,
                    entry_price: price,
                },
            );
            return Decimal::ZERO;
        };
        let new_qty = p.quantity + delta;
        if p.quantity.is_sign_positive() == delta.is_sign_positive() {
            let entry =
                ((p.quantity.abs() * p.entry_price + quantity * price) / new_qty.abs()).normalize();
            st.positions.insert(
                key,
                PaperPosition {
                    quantity: new_qty,
                    entry_price: entry,
                },
            );
            return Decimal::ZERO;
        }
        let closed = quantity.min(p.quantity.abs());
        let direction = if p.quantity > Decimal::ZERO {
            Decimal::ONE
        } else {
            Decimal::NEGATIVE_ONE
        };
        let realized = (closed * (price - p.entry_price) * direction).normalize();
        if new_qty.is_zero() {
            st.positions.remove(&key);
        } else if new_qty.is_sign_positive() == p.quantity.is_sign_positive() {
            st.positions.insert(
                key,
                PaperPosition {
                    quantity: new_qty,
                    entry_price: p.entry_price,
                },
            );
        } else {
            st.positions.insert(
                key,
                PaperPosition {
                    quantity: new_qty,
                    entry_price: price,
                },
            );
        }
        realized
    }

    /// Close the whole position at its liquidation price. The account loses exactly the
    /// position's initial margin: the price move up to the liquidation price is realized PnL and
    /// the rest (the maintenance margin) is forfeited as a liquidation fee. Open orders of the
    /// symbol are canceled, as venues do.
    fn liquidate(&self, st: &mut PaperState, time_ms: i64) -> ExchangeResult<()> {
        let Some(p) = self.position(st) else {
            return Ok(());
        };
        let lev = self.leverage(st);
        let liq = self.liquidation_price(&p, lev);
        let margin = p.quantity.abs() * p.entry_price / Decimal::from(lev.max(1));
        let realized = (liq - p.entry_price) * p.quantity;
        let forfeited = (margin + realized).max(Decimal::ZERO);
        st.positions.remove(&self.key());
        let (realized, forfeited) = (realized.normalize(), forfeited.normalize());
        book(st, realized, forfeited);
        st.fills.push(PaperFill {
            time_ms,
            symbol: self.key(),
            client_order_id: None,
            side: if p.quantity > Decimal::ZERO {
                Side::Sell
            } else {
                Side::Buy
            },
            quantity: p.quantity.abs(),
            price: liq,
            fee: forfeited,
            realized_pnl: realized,
            liquidity: Liquidity::Liquidation,
        });
        let time = millis_to_time(time_ms)?;
        for o in st
            .orders
            .iter_mut()
            .filter(|o| o.status == OrderStatus::Open && o.symbol == self.symbol)
        {
            o.status = OrderStatus::Canceled;
            o.updated_at = Some(time);
        }
        Ok(())
    }

    /// The liquidation price when this candle reaches it for the current position.
    fn liquidation_hit(&self, st: &PaperState, c: &BaseCandle) -> Option<Decimal> {
        let p = self.position(st)?;
        let liq = self.liquidation_price(&p, self.leverage(st));
        let hit = if p.quantity > Decimal::ZERO {
            c.low <= liq
        } else {
            c.high >= liq
        };
        hit.then_some(liq)
    }

    fn open_of_type(&self, st: &PaperState, order_type: OrderType) -> Vec<usize> {
        st.orders
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.status == OrderStatus::Open
                    && o.order_type == order_type
                    && o.symbol == self.symbol
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn is_open(st: &PaperState, idx: usize) -> bool {
        st.orders
            .get(idx)
            .is_some_and(|o| o.status == OrderStatus::Open)
    }

    /// Play one complete base candle. Within a candle the path is unknown, so events are taken
    /// in a fixed, conservative order:
    /// 1. stop-market orders reached by the high/low (placement order), filled at the trigger,
    ///    or at the open when the candle opened beyond it, plus slippage and taker fee; when the
    ///    position's liquidation price lies between the open and a stop's trigger, the position
    ///    is liquidated first;
    /// 2. liquidation when the high/low reaches the liquidation price;
    /// 3. resting limit orders strictly crossed (buy: low < price, sell: high > price), filled
    ///    at their price with the maker fee;
    /// 4. take-profit-market orders reached, filled like stops.
    ///
    /// So when a stop and a take-profit are both reached in one candle, the stop wins.
    /// A triggered order whose opening part lacks margin is `Rejected`; a reduce-only order
    /// with nothing left to reduce `Expired`.
    pub fn process_candle(
        &self,
        st: &mut PaperState,
        c: &BaseCandle,
        base_ms: i64,
    ) -> ExchangeResult<()> {
        let t = c.open_time_ms + base_ms;
        for idx in self.open_of_type(st, OrderType::StopMarket) {
            let Some(o) = st.orders.get(idx).cloned() else {
                continue;
            };
            if !Self::is_open(st, idx) {
                continue;
            }
            let Some(trigger) = o.trigger_price else {
                continue;
            };
            let base = match o.side {
                Side::Sell if c.low <= trigger => trigger.min(c.open),
                Side::Buy if c.high >= trigger => trigger.max(c.open),
                _ => continue,
            };
            if let Some(liq) = self.liquidation_hit(st, c) {
                let long = self
                    .position(st)
                    .is_some_and(|p| p.quantity > Decimal::ZERO);
                let first = if long { liq >= base } else { liq <= base };
                if first {
                    self.liquidate(st, t)?;
                    if !Self::is_open(st, idx) {
                        continue;
                    }
                }
            }
            self.trigger(st, idx, base, t)?;
        }
        if self.liquidation_hit(st, c).is_some() {
            self.liquidate(st, t)?;
        }
        for idx in self.open_of_type(st, OrderType::Limit) {
            let Some(o) = st.orders.get(idx).cloned() else {
                continue;
            };
            let Some(price) = o.price else { continue };
            let crossed = match o.side {
                Side::Buy => c.low < price,
                Side::Sell => c.high > price,
            };
            if crossed && Self::is_open(st, idx) {
                self.fill(st, idx, price, Liquidity::Maker, t, false)?;
            }
        }
        for idx in self.open_of_type(st, OrderType::TakeProfitMarket) {
            let Some(o) = st.orders.get(idx).cloned() else {
                continue;
            };
            let Some(trigger) = o.trigger_price else {
                continue;
            };
            let base = match o.side {
                Side::Sell if c.high >= trigger => trigger.max(c.open),
                Side::Buy if c.low <= trigger => trigger.min(c.open),
                _ => continue,
            };
            if Self::is_open(st, idx) {
                self.trigger(st, idx, base, t)?;
            }
        }
        st.processed_until_ms = st.processed_until_ms.max(t);
        Ok(())
    }

    fn trigger(
        &self,
        st: &mut PaperState,
        idx: usize,
        base: Decimal,
        t: i64,
    ) -> ExchangeResult<()> {
        let Some(side) = st.orders.get(idx).map(|o| o.side) else {
            return Ok(());
        };
        let price = self.slipped(side, base);
        match self.fill(st, idx, price, Liquidity::Taker, t, true) {
            Err(ExchangeError::InsufficientMargin { .. }) => {
                let time = millis_to_time(t)?;
                if let Some(o) = st.orders.get_mut(idx) {
                    o.status = OrderStatus::Rejected;
                    o.updated_at = Some(time);
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Change the leverage; refused when the position's margin at the new leverage is not there.
    pub fn set_leverage(
        &self,
        st: &mut PaperState,
        leverage: u32,
        mark: Option<Decimal>,
    ) -> ExchangeResult<()> {
        if leverage == 0 || leverage > self.max_leverage {
            return Err(Self::invalid(format!(
                "leverage {leverage} is outside 1..={}",
                self.max_leverage
            )));
        }
        let mut next = st.clone();
        next.leverage.insert(self.key(), leverage);
        let view = self.account(&next, mark);
        if view.equity < view.position_margin + view.order_margin {
            return Err(insufficient(
                view.position_margin + view.order_margin,
                view.equity,
            ));
        }
        *st = next;
        Ok(())
    }
}

/// Realized PnL and fees into the balance, kept in their shortest form for output.
fn book(st: &mut PaperState, realized: Decimal, fee: Decimal) {
    st.wallet_balance = (st.wallet_balance + realized - fee).normalize();
    st.realized_pnl = (st.realized_pnl + realized).normalize();
    st.fees_paid = (st.fees_paid + fee).normalize();
}

fn insufficient(required: Decimal, available: Decimal) -> ExchangeError {
    ExchangeError::InsufficientMargin {
        venue: VENUE,
        message: format!(
            "initial margin {} exceeds available balance {}",
            required.round_dp(8).normalize(),
            available.round_dp(8).normalize()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::ClientOrderId;
    use rust_decimal_macros::dec;

    fn rules() -> Rules {
        let symbol: Symbol = "XRP/USDT:USDT".parse().unwrap();
        Rules {
            instrument: Instrument {
                symbol: symbol.clone(),
                venue_symbol: "XRPUSDT".into(),
                tick_size: dec!(0.0001),
                step_size: dec!(0.1),
                min_quantity: dec!(0.1),
                min_notional: dec!(5),
                contract_size: dec!(1),
                max_leverage: dec!(20),
            },
            symbol,
            taker_fee: dec!(0.0005),
            maker_fee: dec!(0.0002),
            slippage_bps: dec!(2),
            maintenance_margin_rate: dec!(0.005),
            max_leverage: 20,
            default_leverage: 10,
        }
    }

    fn state() -> PaperState {
        PaperState {
            version: super::super::STATE_VERSION,
            account: "t".into(),
            processed_until_ms: 0,
            initial_balance: dec!(1000),
            wallet_balance: dec!(1000),
            realized_pnl: Decimal::ZERO,
            fees_paid: Decimal::ZERO,
            leverage: Default::default(),
            positions: Default::default(),
            orders: Vec::new(),
            fills: Vec::new(),
            next_order_seq: 1,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(0).unwrap()
    }

    fn order(
        id: &str,
        side: Side,
        order_type: OrderType,
        qty: Decimal,
        px: Option<Decimal>,
        ro: bool,
    ) -> OrderRequest {
        OrderRequest {
            symbol: "XRP/USDT:USDT".parse().unwrap(),
            client_order_id: ClientOrderId::new(id).unwrap(),
            side,
            order_type,
            quantity: qty,
            price: if order_type == OrderType::Limit {
                px
            } else {
                None
            },
            trigger_price: if order_type.is_conditional() {
                px
            } else {
                None
            },
            reduce_only: ro,
        }
    }

    fn candle(open: Decimal, high: Decimal, low: Decimal, close: Decimal) -> BaseCandle {
        BaseCandle {
            open_time_ms: 0,
            open,
            high,
            low,
            close,
            volume: dec!(1),
        }
    }

    #[test]
    fn liquidation_price_follows_the_documented_formula() {
        let r = rules();
        let long = PaperPosition {
            quantity: dec!(10),
            entry_price: dec!(2),
        };
        // 2 x (1 - 1/10 + 0.005) = 1.81
        assert_eq!(r.liquidation_price(&long, 10), dec!(1.81));
        let short = PaperPosition {
            quantity: dec!(-10),
            entry_price: dec!(2),
        };
        // 2 x (1 + 1/4 - 0.005) = 2.49
        assert_eq!(r.liquidation_price(&short, 4), dec!(2.49));
        // 1x long: 2 x 0.005 = 0.01, never negative.
        assert_eq!(r.liquidation_price(&long, 1), dec!(0.01));
    }

    #[test]
    fn entries_average_and_closing_realizes_against_the_average() {
        let r = rules();
        let mut st = state();
        assert_eq!(
            r.apply_to_position(&mut st, Side::Buy, dec!(100), dec!(1.0)),
            dec!(0)
        );
        assert_eq!(
            r.apply_to_position(&mut st, Side::Buy, dec!(300), dec!(1.2)),
            dec!(0)
        );
        // (100 x 1.0 + 300 x 1.2) / 400 = 1.15
        assert_eq!(r.position(&st).unwrap().entry_price, dec!(1.15));
        // Selling 500: closes 400 at 1.3 -> 400 x 0.15 = 60, then short 100 at 1.3.
        assert_eq!(
            r.apply_to_position(&mut st, Side::Sell, dec!(500), dec!(1.3)),
            dec!(60)
        );
        let p = r.position(&st).unwrap();
        assert_eq!((p.quantity, p.entry_price), (dec!(-100), dec!(1.3)));
    }

    #[test]
    fn slippage_is_against_the_taker_on_the_tick_grid() {
        let r = rules();
        // 1.0881 x 1.0002 = 1.08831762 -> up 1.0884; x 0.9998 = 1.08788238 -> down 1.0878.
        assert_eq!(r.slipped(Side::Buy, dec!(1.0881)), dec!(1.0884));
        assert_eq!(r.slipped(Side::Sell, dec!(1.0881)), dec!(1.0878));
    }

    #[test]
    fn a_stop_gapped_through_fills_at_the_open() {
        let r = rules();
        let mut st = state();
        r.place(
            &mut st,
            &order("e", Side::Buy, OrderType::Market, dec!(100), None, false),
            Some(dec!(1.0)),
            now(),
        )
        .unwrap();
        r.place(
            &mut st,
            &order(
                "s",
                Side::Sell,
                OrderType::StopMarket,
                dec!(100),
                Some(dec!(0.98)),
                true,
            ),
            Some(dec!(1.0)),
            now(),
        )
        .unwrap();
        // Opens at 0.97, below the 0.98 trigger: fill 0.97 x 0.9998 = 0.969806 -> down 0.9698.
        r.process_candle(
            &mut st,
            &candle(dec!(0.97), dec!(0.975), dec!(0.96), dec!(0.97)),
            300_000,
        )
        .unwrap();
        let o = st.orders.get(1).unwrap();
        assert_eq!(o.status, OrderStatus::Triggered);
        assert_eq!(o.average_price, Some(dec!(0.9698)));
    }

    #[test]
    fn liquidation_comes_before_a_stop_beyond_it() {
        let r = rules();
        let mut st = state();
        // Long 100 at 1.0002 (1.0 slipped) at 10x: liquidation 1.0002 x 0.905 = 0.905181 -> up
        // 0.9052. A stop at 0.90 lies beyond it: the position is liquidated first and the stop
        // is canceled with the other open orders.
        r.place(
            &mut st,
            &order("e", Side::Buy, OrderType::Market, dec!(100), None, false),
            Some(dec!(1.0)),
            now(),
        )
        .unwrap();
        r.place(
            &mut st,
            &order(
                "s",
                Side::Sell,
                OrderType::StopMarket,
                dec!(100),
                Some(dec!(0.90)),
                true,
            ),
            Some(dec!(1.0)),
            now(),
        )
        .unwrap();
        r.process_candle(
            &mut st,
            &candle(dec!(0.99), dec!(0.99), dec!(0.85), dec!(0.86)),
            300_000,
        )
        .unwrap();
        assert!(r.position(&st).is_none());
        assert_eq!(st.orders.get(1).unwrap().status, OrderStatus::Canceled);
        let fill = st.fills.last().unwrap();
        assert_eq!(
            (fill.liquidity, fill.price),
            (Liquidity::Liquidation, dec!(0.9052))
        );
        // Entry fee 100 x 1.0002 x 0.0005 = 0.05001; margin 100 x 1.0002 / 10 = 10.002 is lost
        // whole: 1000 - 0.05001 - 10.002 = 989.94799.
        assert_eq!(st.wallet_balance, dec!(989.94799));
    }

    #[test]
    fn a_marketable_limit_takes_at_once_but_never_beyond_its_price() {
        let r = rules();
        let mut st = state();
        // Market 1.0: slipped buy 1.0002 <= limit 1.01 -> 1.0002; taker fee 100 x 1.0002 x
        // 0.0005 = 0.05001.
        let o = r
            .place(
                &mut st,
                &order(
                    "a",
                    Side::Buy,
                    OrderType::Limit,
                    dec!(100),
                    Some(dec!(1.01)),
                    false,
                ),
                Some(dec!(1.0)),
                now(),
            )
            .unwrap();
        assert_eq!(
            (o.status, o.average_price, o.fee),
            (OrderStatus::Filled, Some(dec!(1.0002)), Some(dec!(0.05001)))
        );
        // Limit 1.0001 is below the slipped 1.0002: filled at the limit.
        let o = r
            .place(
                &mut st,
                &order(
                    "b",
                    Side::Buy,
                    OrderType::Limit,
                    dec!(100),
                    Some(dec!(1.0001)),
                    false,
                ),
                Some(dec!(1.0)),
                now(),
            )
            .unwrap();
        assert_eq!(o.average_price, Some(dec!(1.0001)));
        // The order's own margin is not counted against it. Long 200 at 1.00015 uses
        // 200 x 1.00015 / 10 = 20.003 of margin; wallet 1000 - 0.05001 - 0.050005 = 999.899985,
        // so about 979.9 is available. A marketable buy of 9000 needs 9000 x 1.0002 / 10 = 900.18:
        // it fits, but would not if its own reservation (9000 x 1.01 / 10 = 909) were counted too.
        let o = r
            .place(
                &mut st,
                &order(
                    "big",
                    Side::Buy,
                    OrderType::Limit,
                    dec!(9000),
                    Some(dec!(1.01)),
                    false,
                ),
                Some(dec!(1.0)),
                now(),
            )
            .unwrap();
        assert_eq!(o.status, OrderStatus::Filled);
        // A buy limit under the market rests.
        let o = r
            .place(
                &mut st,
                &order(
                    "c",
                    Side::Buy,
                    OrderType::Limit,
                    dec!(100),
                    Some(dec!(0.99)),
                    false,
                ),
                Some(dec!(1.0)),
                now(),
            )
            .unwrap();
        assert_eq!(o.status, OrderStatus::Open);
    }

    #[test]
    fn rejected_requests_leave_the_state_untouched() {
        let r = rules();
        let mut st = state();
        let before = st.clone();
        for bad in [
            order("a", Side::Buy, OrderType::Market, dec!(0.15), None, false),
            order("b", Side::Buy, OrderType::Market, dec!(1), None, false),
            order("c", Side::Buy, OrderType::Limit, dec!(100), None, false),
            order(
                "d",
                Side::Buy,
                OrderType::Limit,
                dec!(100),
                Some(dec!(0.99995)),
                false,
            ),
            order(
                "e",
                Side::Sell,
                OrderType::StopMarket,
                dec!(100),
                Some(dec!(1.01)),
                false,
            ),
            order(
                "f",
                Side::Buy,
                OrderType::Market,
                dec!(1000000),
                None,
                false,
            ),
        ] {
            assert!(
                r.place(&mut st, &bad, Some(dec!(1.0)), now()).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(st, before);
    }
}
