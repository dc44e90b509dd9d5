//! Metrics and spans for every venue call, in one place for every adapter and PAPER: an
//! [`Instrumented`] exchange wraps any [`Exchange`] and, per trait call, opens an
//! `exchange.request` span and records `tradefleet_exchange_requests_total` and its latency
//! histogram under a fixed endpoint name (the trait method, never a URL path, so no id can become
//! a label). Orders placed through it count in `tradefleet_orders_total` by the role read back
//! from the fleet's client order id; the limiter's headroom after the call sets the venue's
//! rate-limit gauge.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use super::{AccountCheck, Exchange, ExchangeResult};
use crate::bot::order_ids::role_of;
use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, Position, Symbol, Ticker,
    Timeframe,
};
use crate::telemetry::{Metrics, OrderOutcome};

/// The endpoint label of each [`Exchange`] method: the complete, fixed label space.
pub const ENDPOINTS: [&str; 12] = [
    "server_time",
    "klines",
    "ticker",
    "instrument",
    "balance",
    "positions",
    "set_leverage",
    "place_order",
    "cancel_order",
    "cancel_all",
    "open_orders",
    "order_by_client_id",
];

/// Test-connectivity calls are operator actions, counted under their own endpoint.
const TEST_CONNECTIVITY: &str = "test_connectivity";

/// An [`Exchange`] whose every call is measured and traced.
#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn Exchange>,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Exchange>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn call<T, F>(&self, endpoint: &'static str, fut: F) -> ExchangeResult<T>
    where
        F: Future<Output = ExchangeResult<T>>,
    {
        let venue = self.inner.name();
        let span = tracing::info_span!(
            "exchange.request",
            venue,
            endpoint,
            outcome = tracing::field::Empty,
            otel.kind = "client",
        );
        let started = Instant::now();
        let result = fut.instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        span.record("outcome", outcome);
        self.metrics.exchange_request(
            venue,
            endpoint,
            result.as_ref().map(|_| ()),
            started.elapsed(),
        );
        // PAPER has no request budget: it always has all of it.
        let headroom = if venue == "paper" {
            Some(1.0)
        } else {
            super::http::last_headroom(venue)
        };
        if let Some(h) = headroom {
            self.metrics.rate_limit_headroom(venue, h);
        }
        result
    }
}

#[async_trait]
impl Exchange for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        self.call("server_time", self.inner.server_time()).await
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        self.call("klines", self.inner.klines(symbol, timeframe, since, limit))
            .await
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        self.call("ticker", self.inner.ticker(symbol)).await
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        self.call(
            "instrument",
            Exchange::instrument(self.inner.as_ref(), symbol),
        )
        .await
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        self.call("balance", self.inner.balance(asset)).await
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        self.call("positions", self.inner.positions(symbol)).await
    }

    async fn set_leverage(&self, symbol: &Symbol, leverage: u32) -> ExchangeResult<()> {
        self.call("set_leverage", self.inner.set_leverage(symbol, leverage))
            .await
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        let result = self
            .call("place_order", self.inner.place_order(request))
            .await;
        if let Some(role) = role_of(request.client_order_id.as_str()) {
            let venue = self.inner.name();
            match &result {
                Ok(order) => {
                    self.metrics.order(venue, role, OrderOutcome::Placed);
                    if order.filled_quantity > rust_decimal::Decimal::ZERO {
                        self.metrics.order_filled(venue, role);
                    }
                }
                Err(e) => self.metrics.order(venue, role, OrderOutcome::Failed(e)),
            }
        }
        result
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        self.call(
            "cancel_order",
            self.inner.cancel_order(symbol, client_order_id),
        )
        .await
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        self.call("cancel_all", self.inner.cancel_all(symbol)).await
    }

    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>> {
        self.call("open_orders", self.inner.open_orders(symbol))
            .await
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        self.call(
            "order_by_client_id",
            self.inner.order_by_client_id(symbol, client_order_id),
        )
        .await
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        self.call(TEST_CONNECTIVITY, self.inner.test_connectivity())
            .await
    }
}
