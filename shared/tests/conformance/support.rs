//! Machinery shared by the conformance suite's mock venues: the `MockVenue` harness trait, the
//! order book a mock keeps between requests, fixture loading and request helpers.
//!
//! Every mock is a small stateful venue on a loopback `wiremock` server: a place request is
//! recorded in the [`Book`] the moment it arrives (before any configured answer delay), and the
//! look-up, open-order and cancel endpoints answer from that book, rendered in the venue's own wire
//! format from its recorded fixtures. What an adapter encodes on a place request is therefore what
//! it later reads back, so encoding and parsing are checked together. Simplification of every
//! mock: market orders fill completely on arrival; conditional orders rest until cancelled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::Credentials;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

/// One HTTP endpoint of a venue: method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
}

impl Endpoint {
    pub const fn new(method: &'static str, path: &'static str) -> Self {
        Self { method, path }
    }

    /// A mock builder matching this endpoint.
    pub fn route(self) -> MockBuilder {
        Mock::given(method(self.method)).and(path(self.path))
    }

    /// How many requests `server` received here.
    pub async fn count(self, server: &MockServer) -> usize {
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.method.as_str() == self.method && r.url.path() == self.path)
            .count()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// One venue as the conformance suite drives it through a mock. Adding a venue = one type that
/// implements this trait (in its own file under `tests/conformance/`) + one line in the suite's
/// harness list.
pub trait MockVenue: Send + Sync + 'static {
    /// The registry name (`build_exchange(NAME, ..)`).
    const NAME: &'static str;
    fn new() -> Self;
    /// The unified symbol traded in every scenario.
    fn symbol(&self) -> Symbol;
    /// Credentials the adapter signs with (passphrase where the venue needs one).
    fn credentials(&self) -> Credentials;
    /// The venue's time in ms: the adapter's `ManualClock` and the mocked server time. Chosen
    /// inside the newest candle of the kline fixture, so that candle is still forming.
    fn now_ms(&self) -> i64;
    /// A price near the fixtures' market, for the stop-loss and take-profit triggers.
    fn reference_price(&self) -> Decimal;
    /// Timeframe and count of the klines scenario (what the kline fixture holds).
    fn klines_query(&self) -> (Timeframe, u32);
    /// Endpoints that place orders (regular and conditional).
    fn place_endpoints(&self) -> &'static [Endpoint];
    /// The endpoint `set_leverage` writes to.
    fn leverage_endpoint(&self) -> Endpoint;
    /// Endpoints `cancel_all` must call when the symbol has a filled entry and two resting
    /// conditional orders, with how many calls each.
    fn cancel_all_calls(&self) -> &'static [(Endpoint, usize)];
    /// Our client order id as the venue carries it (and as the mock records it in the [`Book`]):
    /// unchanged unless the venue needs another form (HTX: a positive int64).
    fn venue_client_id(ours: &str) -> String
    where
        Self: Sized,
    {
        ours.to_string()
    }
    /// Every mock of the venue, answering from `book`; answers of the place endpoints are held
    /// back for `place_delay` (the order is recorded first).
    fn mocks(&self, book: &Arc<Book>, place_delay: Duration) -> Vec<Mock>;
}

/// Where an order recorded by a mock venue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    Filled,
    Canceled,
}

/// One order a mock venue received.
#[derive(Debug, Clone)]
pub struct Entry {
    pub client_id: String,
    /// Sequence number given by the book (1, 2, ...), the basis of the venue's order id.
    pub seq: u64,
    pub conditional: bool,
    pub state: State,
    /// The request parameters exactly as the adapter sent them (query pairs or JSON body).
    pub fields: Value,
}

impl Entry {
    /// A request field as text (`""` when absent); JSON strings come back without quotes.
    pub fn field(&self, key: &str) -> String {
        match self.fields.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }

    /// A boolean request field: JSON `true` or the text `true`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.fields.get(key), Some(Value::Bool(true)))
            || matches!(self.fields.get(key), Some(Value::String(s)) if s == "true")
    }
}

/// The orders a mock venue holds, shared by its responders.
#[derive(Debug, Default)]
pub struct Book {
    entries: Mutex<Vec<Entry>>,
    seq: AtomicU64,
}

impl Book {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a received order and return it.
    pub fn place(
        &self,
        client_id: String,
        conditional: bool,
        state: State,
        fields: Value,
    ) -> Entry {
        let entry = Entry {
            client_id,
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            conditional,
            state,
            fields,
        };
        self.lock().push(entry.clone());
        entry
    }

    /// The order recorded under `client_id`, if any.
    pub fn find(&self, client_id: &str) -> Option<Entry> {
        self.lock()
            .iter()
            .find(|e| e.client_id == client_id)
            .cloned()
    }

    /// Every recorded order, in arrival order.
    pub fn all(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// Open orders that `filter` selects.
    pub fn open(&self, filter: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        self.lock()
            .iter()
            .filter(|e| e.state == State::Open && filter(e))
            .cloned()
            .collect()
    }

    /// Cancel the open orders that `filter` selects; returns them as they were.
    pub fn cancel(&self, filter: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let mut entries = self.lock();
        let mut out = Vec::new();
        for e in entries.iter_mut() {
            if e.state == State::Open && filter(e) {
                out.push(e.clone());
                e.state = State::Canceled;
            }
        }
        out
    }
}

/// The text of `shared/tests/fixtures/<dir>/<name>`.
pub fn fixture(dir: &str, name: &str) -> String {
    let p = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

pub fn fixture_json(dir: &str, name: &str) -> Value {
    let text = fixture(dir, name);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))
}

/// A JSON answer with `status`.
pub fn answer(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string().into_bytes(), "application/json")
}

pub fn ok(body: &Value) -> ResponseTemplate {
    answer(200, body)
}

/// A fixture answered unchanged.
pub fn ok_fixture(dir: &str, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(fixture(dir, name).into_bytes(), "application/json")
}

/// `template` held back for `delay` (none when zero).
pub fn delayed(template: ResponseTemplate, delay: Duration) -> ResponseTemplate {
    if delay.is_zero() {
        template
    } else {
        template.set_delay(delay)
    }
}

/// The query pairs and, for form-encoded bodies, the body pairs of `r`, as a JSON object of
/// strings.
pub fn params_of(r: &Request) -> Value {
    let mut map = Map::new();
    for (k, v) in r.url.query_pairs() {
        map.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    let form = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        for (k, v) in url::form_urlencoded::parse(&r.body) {
            map.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    Value::Object(map)
}

/// The JSON body of `r` (`null` when it is not JSON).
pub fn body_of(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}
