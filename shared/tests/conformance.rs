//! Exchange conformance suite: the same scenario list against every venue, each through a stateful
//! loopback mock of its API (harnesses in `conformance/venues/`), and against PAPER itself.
//!
//! Scenarios (one `#[tokio::test]` per venue and scenario, named `<venue>::sN_<scenario>`):
//! 1. klines: oldest first, strictly increasing open times, only the last may be forming, every
//!    closed candle ends at or before the venue's time, and the one holding that time is forming;
//! 2. instrument: positive tick/step/minimum, rounding with `precision::round_quantity` lands on
//!    the grid, contract size consistent with the registry's `trades_in_contracts`;
//! 3. balance in the settle asset: equity >= available >= 0;
//! 4. set leverage succeeds, and setting the same leverage again succeeds too;
//! 5. market entry + reduce-only stop-loss + reduce-only take-profit with deterministic client ids
//!    (`bot::order_ids::client_order_id`), each returned with its id, side, type and reduce-only;
//! 6. open orders include the two conditional orders, as placed;
//! 7. a place request that times out but reached the venue: `idempotent::place_once` returns the
//!    order as `Existing` (filled) and exactly one place request was sent (PAPER: the first
//!    attempt's answer is lost);
//! 8. cancel all cancels both conditional orders (count 2, the right cancel calls), leaves no
//!    open orders, and looking them up by client id reports them cancelled;
//! 9. (extra) reading the server time does not change which candles are closed.
//!
//! Adding a venue: one harness file in `conformance/venues/` implementing `MockVenue` and one line
//! in `conformance!` below (see docs/adding-an-exchange.md). `every_registered_venue_is_covered`
//! fails when the registry holds a venue that is not in that list.
#![allow(clippy::unwrap_used)]

#[path = "conformance/support.rs"]
mod support;

#[path = "conformance/venues"]
mod venues {
    pub mod binance;
    pub mod bitget;
    pub mod bybit;
    pub mod htx;
    pub mod kraken;
    pub mod okx;
    pub mod paper;
}

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tradefleet::bot::order_ids::{OrderRole, client_order_id};
use tradefleet::clock::ManualClock;
use tradefleet::domain::{
    Instrument, Order, OrderRequest, OrderStatus, OrderType, PositionSide, Side, Symbol, Timeframe,
};
use tradefleet::exchange::http::HttpSettings;
use tradefleet::exchange::idempotent::{Placement, ReconcilePolicy, place_once};
use tradefleet::exchange::precision::{
    Round, base_to_contracts, round_price, round_quantity, round_to_increment,
};
use tradefleet::exchange::{
    Exchange, VenueParams, build_exchange, find_venue, venues as registered_venues,
};
use wiremock::MockServer;

use support::{Book, Endpoint, MockVenue};

// ------------------------------------------------------------------------------ the harness list

/// One module of nine tests per venue. Another venue is one more line in the list below.
macro_rules! conformance {
    ($($venue:ident => $build:expr),* $(,)?) => {
        /// Every venue of the list, by registry name.
        const COVERED: &[&str] = &[$(stringify!($venue)),*];
        $(
        mod $venue {
            use super::*;
            const VENUE: &str = stringify!($venue);
            #[tokio::test]
            async fn s1_klines() {
                run(VENUE, Scenario::Klines, $build).await;
            }
            #[tokio::test]
            async fn s2_instrument_precision() {
                run(VENUE, Scenario::Instrument, $build).await;
            }
            #[tokio::test]
            async fn s3_balance() {
                run(VENUE, Scenario::Balance, $build).await;
            }
            #[tokio::test]
            async fn s4_set_leverage() {
                run(VENUE, Scenario::SetLeverage, $build).await;
            }
            #[tokio::test]
            async fn s5_entry_with_stop_loss_and_take_profit() {
                run(VENUE, Scenario::Bracket, $build).await;
            }
            #[tokio::test]
            async fn s6_open_orders_include_conditional_ones() {
                run(VENUE, Scenario::OpenOrders, $build).await;
            }
            #[tokio::test]
            async fn s7_timed_out_place_is_found_by_client_id() {
                run(VENUE, Scenario::LookupAfterTimeout, $build).await;
            }
            #[tokio::test]
            async fn s8_cancel_all_leaves_no_open_orders() {
                run(VENUE, Scenario::CancelAll, $build).await;
            }
            #[tokio::test]
            async fn s9_klines_unchanged_by_a_server_time_sync() {
                run(VENUE, Scenario::KlinesAcrossTimeSync, $build).await;
            }
        }
        )*
    };
}

conformance! {
    binance => mock::<venues::binance::Binance>,
    bybit => mock::<venues::bybit::Bybit>,
    okx => mock::<venues::okx::Okx>,
    kraken => mock::<venues::kraken::Kraken>,
    bitget => mock::<venues::bitget::Bitget>,
    htx => mock::<venues::htx::Htx>,
    paper => venues::paper::subject,
}

/// Every venue the registry builds has a harness in the list above, so none is left out silently.
#[test]
fn every_registered_venue_is_covered() {
    for d in registered_venues() {
        assert!(
            COVERED.contains(&d.name),
            "{}: registered but not in `conformance!`: add tests/conformance/venues/{}.rs (see \
             docs/adding-an-exchange.md)",
            d.name,
            d.name
        );
    }
    for v in COVERED {
        find_venue(v).unwrap_or_else(|e| panic!("{v} is not in the registry: {e}"));
    }
}

// ------------------------------------------------------------------------------ expected failures

/// (venue, scenario, reason): cases known to fail, documented instead of hidden; empty while every
/// venue conforms. Such a test passes only while the scenario still fails, and fails once it
/// passes so the entry is removed: the list never goes stale.
const EXPECTED_FAILURES: &[(&str, Scenario, &str)] = &[];

// ------------------------------------------------------------------------------ subjects

/// How a subject is built for one scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// Hold back the answers of place requests this long (the order is recorded first).
    pub place_delay: Duration,
    /// Whole-request timeout of the adapter's HTTP client (default 5 s).
    pub timeout_ms: Option<u64>,
}

/// The venue under test in one scenario.
#[derive(Debug)]
pub struct Subject {
    pub venue: &'static str,
    pub ex: Arc<dyn Exchange>,
    pub symbol: Symbol,
    /// A price near the market, for trigger prices.
    pub price: Decimal,
    /// Timeframe and count asked for in the klines scenario.
    pub klines: (Timeframe, u32),
    /// The mock behind a real venue's adapter; `None` for PAPER.
    pub mock: Option<Mocked>,
}

/// A venue's loopback mock and what the suite checks on it.
#[derive(Debug)]
pub struct Mocked {
    pub server: MockServer,
    pub book: Arc<Book>,
    pub place: &'static [Endpoint],
    pub leverage: Endpoint,
    pub cancel_all: &'static [(Endpoint, usize)],
    /// `MockVenue::venue_client_id` of the venue: how our client ids reach its book.
    pub client_id: fn(&str) -> String,
}

impl Mocked {
    /// Place requests received, over every place endpoint.
    async fn place_requests(&self) -> usize {
        let mut n = 0;
        for ep in self.place {
            n += ep.count(&self.server).await;
        }
        n
    }
}

pub type SubjectFuture = Pin<Box<dyn Future<Output = Subject> + Send>>;
type Build = fn(Opts) -> SubjectFuture;

/// The adapter of `H` built by the registry against `H`'s mock on 127.0.0.1.
fn mock<H: MockVenue>(opts: Opts) -> SubjectFuture {
    Box::pin(async move {
        let h = H::new();
        let server = MockServer::start().await;
        let book = Arc::new(Book::default());
        for m in h.mocks(&book, opts.place_delay) {
            m.mount(&server).await;
        }
        let params = VenueParams {
            base_url: Some(server.uri()),
            credentials: Some(h.credentials()),
            http: HttpSettings {
                timeout_ms: opts.timeout_ms.unwrap_or(5_000),
                connect_timeout_ms: 1_000,
                max_retries: 2,
                backoff_base_ms: 1,
                backoff_max_ms: 5,
                max_retry_after_ms: 1_000,
            },
            clock: Arc::new(ManualClock::new(at(h.now_ms()))),
            ..VenueParams::default()
        };
        let ex = build_exchange(H::NAME, &params)
            .unwrap_or_else(|e| panic!("{}: build_exchange failed: {e}", H::NAME));
        Subject {
            venue: H::NAME,
            ex,
            symbol: h.symbol(),
            price: h.reference_price(),
            klines: h.klines_query(),
            mock: Some(Mocked {
                server,
                book,
                place: h.place_endpoints(),
                leverage: h.leverage_endpoint(),
                cancel_all: h.cancel_all_calls(),
                client_id: H::venue_client_id,
            }),
        }
    })
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

// ------------------------------------------------------------------------------ running

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Klines,
    Instrument,
    Balance,
    SetLeverage,
    Bracket,
    OpenOrders,
    LookupAfterTimeout,
    CancelAll,
    KlinesAcrossTimeSync,
}

async fn play(scenario: Scenario, build: Build) {
    match scenario {
        Scenario::Klines => klines(build).await,
        Scenario::Instrument => instrument(build).await,
        Scenario::Balance => balance(build).await,
        Scenario::SetLeverage => set_leverage(build).await,
        Scenario::Bracket => bracket(build).await,
        Scenario::OpenOrders => open_orders(build).await,
        Scenario::LookupAfterTimeout => lookup_after_timeout(build).await,
        Scenario::CancelAll => cancel_all(build).await,
        Scenario::KlinesAcrossTimeSync => klines_across_time_sync(build).await,
    }
}

/// Play `scenario` on `venue`, honouring `EXPECTED_FAILURES`.
async fn run(venue: &'static str, scenario: Scenario, build: Build) {
    let expected = EXPECTED_FAILURES
        .iter()
        .find(|(v, s, _)| *v == venue && *s == scenario);
    let outcome = tokio::spawn(play(scenario, build)).await;
    match (outcome, expected) {
        (Ok(()), None) => {}
        (Ok(()), Some((_, _, reason))) => panic!(
            "{venue} {scenario:?} is listed as an expected failure ({reason}) but passes now: \
             remove it from EXPECTED_FAILURES"
        ),
        (Err(e), None) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        (Err(e), None) => panic!("{venue} {scenario:?}: {e}"),
        (Err(e), Some((_, _, reason))) => {
            assert!(e.is_panic(), "{venue} {scenario:?}: {e}");
            eprintln!("{venue} {scenario:?}: expected failure: {reason}");
        }
    }
}

// ------------------------------------------------------------------------------ order helpers

/// 2026-01-01 00:00 UTC: the cycle slot every client id of the suite belongs to.
const SLOT_SECS: i64 = 1_767_225_600;
const SUBSCRIPTION: i64 = 4_242;

fn cid(role: OrderRole) -> tradefleet::domain::ClientOrderId {
    client_order_id(
        SUBSCRIPTION,
        DateTime::from_timestamp(SLOT_SECS, 0).unwrap(),
        role,
        0,
    )
    .unwrap()
}

/// The smallest sensible entry: at least the minimum quantity and twice the minimum notional at
/// `price`, rounded up to the step.
fn entry_quantity(inst: &Instrument, price: Decimal) -> Decimal {
    let for_notional = if price > Decimal::ZERO {
        inst.min_notional * dec!(2) / price
    } else {
        Decimal::ZERO
    };
    round_to_increment(
        inst.min_quantity.max(for_notional),
        inst.step_size,
        Round::Up,
    )
}

/// Long market entry, reduce-only stop 3 % below and take-profit 3 % above `s.price`.
async fn bracket_requests(s: &Subject) -> [OrderRequest; 3] {
    let inst =
        s.ex.instrument(&s.symbol)
            .await
            .unwrap_or_else(|e| panic!("{}: instrument: {e}", s.venue));
    let quantity = entry_quantity(&inst, s.price);
    let order = |role, side, order_type, trigger_price, reduce_only| OrderRequest {
        symbol: s.symbol.clone(),
        client_order_id: cid(role),
        side,
        order_type,
        quantity,
        price: None,
        trigger_price,
        reduce_only,
    };
    [
        order(OrderRole::Entry, Side::Buy, OrderType::Market, None, false),
        order(
            OrderRole::StopLoss,
            Side::Sell,
            OrderType::StopMarket,
            Some(round_price(s.price * dec!(0.97), &inst, Round::Down)),
            true,
        ),
        order(
            OrderRole::TakeProfit,
            Side::Sell,
            OrderType::TakeProfitMarket,
            Some(round_price(s.price * dec!(1.03), &inst, Round::Up)),
            true,
        ),
    ]
}

/// `order` is what `request` asked for.
fn assert_matches(venue: &str, what: &str, order: &Order, request: &OrderRequest) {
    let ctx = format!("{venue} {what} {}", request.client_order_id);
    assert_eq!(order.symbol, request.symbol, "{ctx}: symbol");
    assert_eq!(
        order.client_order_id.as_ref(),
        Some(&request.client_order_id),
        "{ctx}: client order id"
    );
    assert_eq!(order.side, request.side, "{ctx}: side");
    assert_eq!(order.order_type, request.order_type, "{ctx}: type");
    assert_eq!(order.reduce_only, request.reduce_only, "{ctx}: reduce_only");
    assert_eq!(order.quantity, request.quantity, "{ctx}: quantity");
    assert!(!order.exchange_order_id.is_empty(), "{ctx}: exchange id");
    if request.order_type.is_conditional() {
        assert_eq!(order.trigger_price, request.trigger_price, "{ctx}: trigger");
        assert_eq!(order.status, OrderStatus::Open, "{ctx}: status");
    }
}

/// Place the three orders of the bracket, checking each answer.
async fn place_bracket(s: &Subject) -> [OrderRequest; 3] {
    let requests = bracket_requests(s).await;
    for (r, what) in requests.iter().zip(["entry", "stop-loss", "take-profit"]) {
        let o =
            s.ex.place_order(r)
                .await
                .unwrap_or_else(|e| panic!("{}: place {what}: {e}", s.venue));
        assert_matches(s.venue, what, &o, r);
    }
    requests
}

// ------------------------------------------------------------------------------ scenarios

/// Scenario 1: Klines oldest first, strictly increasing, only the last forming, none from the
/// future.
async fn klines(build: Build) {
    let s = build(Opts::default()).await;
    let (tf, limit) = s.klines;
    let candles =
        s.ex.klines(&s.symbol, tf, None, limit)
            .await
            .unwrap_or_else(|e| panic!("{}: klines: {e}", s.venue));
    // Read after the klines; scenario 9 checks that reading it first changes nothing.
    let now =
        s.ex.server_time()
            .await
            .unwrap_or_else(|e| panic!("{}: server_time: {e}", s.venue));
    let v = s.venue;
    assert!(
        (2..=limit as usize).contains(&candles.len()),
        "{v}: {} candles for a limit of {limit}",
        candles.len()
    );
    for w in candles.windows(2) {
        assert!(
            w[0].open_time < w[1].open_time,
            "{v}: open times not strictly increasing: {} then {}",
            w[0].open_time,
            w[1].open_time
        );
    }
    let (last, earlier) = candles.split_last().unwrap();
    for c in earlier {
        assert!(
            c.closed,
            "{v}: candle {} is open but not the last",
            c.open_time
        );
    }
    for c in &candles {
        assert!(
            c.open_time <= now,
            "{v}: candle {} opens after {now}",
            c.open_time
        );
        if c.closed {
            assert!(
                c.close_time(tf) <= now,
                "{v}: candle {} is closed but ends at {}, after {now}",
                c.open_time,
                c.close_time(tf)
            );
        }
        assert!(
            c.low <= c.high,
            "{v}: candle {} low above high",
            c.open_time
        );
    }
    // Every subject's time stands inside its newest candle.
    assert!(
        !last.closed && last.close_time(tf) > now,
        "{v}: the candle holding {now} must be forming: {last:?}"
    );
}

/// Scenario 2: Instrument precision and contract size.
async fn instrument(build: Build) {
    let s = build(Opts::default()).await;
    let v = s.venue;
    let i =
        s.ex.instrument(&s.symbol)
            .await
            .unwrap_or_else(|e| panic!("{v}: instrument: {e}"));
    assert_eq!(i.symbol, s.symbol, "{v}");
    assert!(!i.venue_symbol.is_empty(), "{v}: venue symbol");
    assert!(i.tick_size > Decimal::ZERO, "{v}: tick {}", i.tick_size);
    assert!(i.step_size > Decimal::ZERO, "{v}: step {}", i.step_size);
    assert!(
        i.min_quantity > Decimal::ZERO,
        "{v}: min qty {}",
        i.min_quantity
    );
    assert!(i.min_notional >= Decimal::ZERO, "{v}: min notional");
    assert!(
        i.max_leverage >= Decimal::ONE,
        "{v}: max leverage {}",
        i.max_leverage
    );
    assert!(
        (i.min_quantity / i.step_size).fract().is_zero(),
        "{v}: min qty {} is off the step {}",
        i.min_quantity,
        i.step_size
    );
    // A quantity off the grid rounds down onto it, never below the minimum asked around.
    let asked = i.min_quantity * dec!(3) + i.step_size * dec!(0.37);
    let q = round_quantity(asked, &i);
    assert!(
        (q / i.step_size).fract().is_zero(),
        "{v}: {q} off the step {}",
        i.step_size
    );
    assert!(q <= asked && asked - q < i.step_size, "{v}: {asked} -> {q}");
    assert!(q >= i.min_quantity, "{v}: {q} below the minimum");
    let d = find_venue(v).unwrap();
    assert!(i.contract_size > Decimal::ZERO, "{v}: contract size");
    if d.trades_in_contracts {
        for (what, x) in [
            ("step", i.step_size),
            ("min qty", i.min_quantity),
            ("rounded", q),
        ] {
            base_to_contracts(v, x, i.contract_size).unwrap_or_else(|e| {
                panic!(
                    "{v}: {what} {x} is not whole contracts of {}: {e}",
                    i.contract_size
                )
            });
        }
    } else {
        assert_eq!(
            i.contract_size,
            Decimal::ONE,
            "{v}: trades base coin, so the contract size must be 1"
        );
    }
}

/// Scenario 3: Balance in the settle asset.
async fn balance(build: Build) {
    let s = build(Opts::default()).await;
    let v = s.venue;
    let asset = s.symbol.settle();
    let b =
        s.ex.balance(asset)
            .await
            .unwrap_or_else(|e| panic!("{v}: balance: {e}"));
    assert_eq!(b.asset, asset, "{v}");
    assert!(
        b.equity >= b.available,
        "{v}: equity {} < available {}",
        b.equity,
        b.available
    );
    assert!(
        b.available >= Decimal::ZERO,
        "{v}: available {}",
        b.available
    );
    assert!(
        b.equity > Decimal::ZERO,
        "{v}: the fixtures' accounts hold money"
    );
}

/// Scenario 4: Set leverage, then set it again (venues may answer "not modified": that is success).
async fn set_leverage(build: Build) {
    let s = build(Opts::default()).await;
    let v = s.venue;
    for attempt in ["first", "repeated"] {
        s.ex.set_leverage(&s.symbol, 5)
            .await
            .unwrap_or_else(|e| panic!("{v}: {attempt} set_leverage(5): {e}"));
    }
    if let Some(m) = &s.mock {
        assert_eq!(m.leverage.count(&m.server).await, 2, "{v}: {}", m.leverage);
    }
}

/// Scenario 5: Entry, stop-loss and take-profit with deterministic client ids.
async fn bracket(build: Build) {
    let s = build(Opts::default()).await;
    let v = s.venue;
    let requests = place_bracket(&s).await;
    match &s.mock {
        Some(m) => {
            assert_eq!(m.place_requests().await, 3, "{v}: place requests");
            let got: Vec<(String, bool)> = m
                .book
                .all()
                .iter()
                .map(|e| (e.client_id.clone(), e.conditional))
                .collect();
            let want: Vec<(String, bool)> = requests
                .iter()
                .map(|r| {
                    (
                        (m.client_id)(r.client_order_id.as_str()),
                        r.order_type.is_conditional(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{v}: what the venue received");
        }
        None => {
            let p = s.ex.positions(Some(&s.symbol)).await.unwrap();
            assert_eq!(p.len(), 1, "{v}: {p:?}");
            assert_eq!(p[0].side, PositionSide::Long, "{v}");
            assert_eq!(p[0].quantity, requests[0].quantity, "{v}");
        }
    }
}

/// Scenario 6: Open orders list the resting conditional orders as placed.
async fn open_orders(build: Build) {
    let s = build(Opts::default()).await;
    let v = s.venue;
    let requests = place_bracket(&s).await;
    let open =
        s.ex.open_orders(&s.symbol)
            .await
            .unwrap_or_else(|e| panic!("{v}: open_orders: {e}"));
    for o in &open {
        assert_eq!(o.symbol, s.symbol, "{v}: {o:?}");
    }
    for (r, what) in requests[1..].iter().zip(["stop-loss", "take-profit"]) {
        let found = open
            .iter()
            .find(|o| o.client_order_id.as_ref() == Some(&r.client_order_id))
            .unwrap_or_else(|| panic!("{v}: {what} {} not among {open:?}", r.client_order_id));
        assert_matches(v, what, found, r);
    }
}

/// Scenario 7: The place request times out after reaching the venue: reconciled, never sent twice.
async fn lookup_after_timeout(build: Build) {
    let s = build(Opts {
        place_delay: Duration::from_millis(2_000),
        timeout_ms: Some(500),
    })
    .await;
    let v = s.venue;
    let entry = bracket_requests(&s).await[0].clone();
    if s.mock.is_none() {
        // PAPER has no transport: the first attempt is placed and its answer is lost.
        let _lost = s.ex.place_order(&entry).await.unwrap();
    }
    let policy = ReconcilePolicy {
        lookups: 3,
        pause: Duration::from_millis(50),
    };
    let placement = place_once(s.ex.as_ref(), &entry, policy)
        .await
        .unwrap_or_else(|e| panic!("{v}: place_once: {e}"));
    let Placement::Existing(order) = placement else {
        panic!("{v}: expected the order found by client id, got {placement:?}");
    };
    let ctx = format!("{v} reconciled entry");
    assert_eq!(
        order.client_order_id.as_ref(),
        Some(&entry.client_order_id),
        "{ctx}"
    );
    assert_eq!(
        (
            order.side,
            order.order_type,
            order.quantity,
            order.reduce_only
        ),
        (
            entry.side,
            entry.order_type,
            entry.quantity,
            entry.reduce_only
        ),
        "{ctx}"
    );
    // Every subject fills a market entry on arrival; the look-up must report that fill.
    assert_eq!(
        (order.status, order.filled_quantity),
        (OrderStatus::Filled, entry.quantity),
        "{ctx}"
    );
    match &s.mock {
        Some(m) => {
            assert_eq!(
                m.place_requests().await,
                1,
                "{v}: exactly one place request"
            );
            assert_eq!(m.book.all().len(), 1, "{v}: one order on the venue");
        }
        None => {
            let p = s.ex.positions(Some(&s.symbol)).await.unwrap();
            assert_eq!(p.len(), 1, "{v}: {p:?}");
            assert_eq!(p[0].quantity, entry.quantity, "{v}: filled once, not twice");
        }
    }
}

/// Scenario 8: Cancel all: both conditional orders go, with the venue's cancel calls, nothing is
/// open, and a look-up by client id reports them cancelled.
async fn cancel_all(build: Build) {
    let s = build(Opts::default()).await;
    let v = s.venue;
    let requests = place_bracket(&s).await;
    let n =
        s.ex.cancel_all(&s.symbol)
            .await
            .unwrap_or_else(|e| panic!("{v}: cancel_all: {e}"));
    assert_eq!(n, 2, "{v}: cancelled count");
    let open = s.ex.open_orders(&s.symbol).await.unwrap();
    assert!(open.is_empty(), "{v}: still open: {open:?}");
    for r in &requests[1..] {
        let o =
            s.ex.order_by_client_id(&s.symbol, &r.client_order_id)
                .await
                .unwrap_or_else(|e| panic!("{v}: look-up of {}: {e}", r.client_order_id))
                .unwrap_or_else(|| panic!("{v}: {} unknown after cancel", r.client_order_id));
        assert_eq!(
            o.status,
            OrderStatus::Canceled,
            "{v}: {}",
            r.client_order_id
        );
    }
    if let Some(m) = &s.mock {
        for (ep, calls) in m.cancel_all {
            assert_eq!(ep.count(&m.server).await, *calls, "{v}: {ep}");
        }
    }
}

/// Scenario 9: A server-time read (which venues use to sync their clock offset) must not change
/// which candles are closed while the venue's time stands still.
async fn klines_across_time_sync(build: Build) {
    let s = build(Opts::default()).await;
    let v = s.venue;
    let (tf, limit) = s.klines;
    let flags = |c: &[tradefleet::domain::Candle]| -> Vec<(DateTime<Utc>, bool)> {
        c.iter().map(|c| (c.open_time, c.closed)).collect()
    };
    let before = s.ex.klines(&s.symbol, tf, None, limit).await.unwrap();
    s.ex.server_time()
        .await
        .unwrap_or_else(|e| panic!("{v}: server_time: {e}"));
    let after = s.ex.klines(&s.symbol, tf, None, limit).await.unwrap();
    assert_eq!(flags(&before), flags(&after), "{v}: closed flags moved");
}
