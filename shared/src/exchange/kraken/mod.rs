//! Kraken Futures adapter: USD-margined linear perpetuals (`PF_*`) on futures.kraken.com, behind
//! the `Exchange` trait. Layers: `client` (raw HTTP, one method per endpoint, signed by
//! `signing`) -> `wire` (serde) -> `parse` (domain types, `errors` for venue codes) -> here.
//!
//! Symbols: `BASE/USD:USD` <-> `PF_{BASE}USD`, with Bitcoin spelled `XBT` (see `symbols`).
//! Server time: Kraken has no time endpoint; `server_time` reads the `serverTime` field of the
//! public `GET /tickers/PF_XBTUSD` answer.

mod client;
mod errors;
mod parse;
mod signing;
mod symbols;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use self::client::KrakenClient;
use self::errors::map_code;
use self::signing::Signer;
use self::wire::WireInstrument;
use super::http::{RateLimit, RequestKind, VenueHttp};
use super::precision::{Round, round_to_increment};
use super::registry::{VenueDescriptor, VenueParams};
use super::{AccountCheck, Exchange, ExchangeError, ExchangeResult};
use crate::clock::Clock;
use crate::domain::{
    Balance, Candle, ClientOrderId, Instrument, Order, OrderRequest, OrderType, Position, Symbol,
    Ticker, Timeframe,
};

const VENUE: &str = "kraken";

const PRODUCTION_URL: &str = "https://futures.kraken.com";
const DEMO_URL: &str = "https://demo-futures.kraken.com";

/// `/derivatives` endpoints: 500 cost units per 10 seconds.
const RATE_LIMIT: RateLimit = RateLimit {
    capacity: 500,
    per: Duration::from_secs(10),
};

/// How long the `/instruments` list is trusted before it is fetched again.
const INSTRUMENTS_TTL: Duration = Duration::from_secs(3600);

/// A symbol missing from a cached list is looked up again only when the list is at least this old.
const MISS_REFETCH_AFTER: Duration = Duration::from_secs(60);

/// Largest candle window asked for in one call (ccxt pages Kraken's charts API by 2000).
const MAX_CANDLES: u32 = 2000;

/// Pages of order (then trigger) history searched for a client order id (500 events each,
/// newest first).
const HISTORY_PAGES: usize = 3;

/// Market whose public ticker gives the server time and proves connectivity.
const REFERENCE_SYMBOL: &str = "PF_XBTUSD";

pub const DESCRIPTOR: VenueDescriptor = VenueDescriptor {
    name: "kraken",
    display_name: "Kraken Futures",
    has_testnet: true,
    needs_passphrase: false,
    trades_in_contracts: false,
    notes: "USD-margined linear perpetuals PF_{BASE}USD only: use BASE/USD:USD symbols (BTC is XBT \
            on the venue). Testnet = demo-futures.kraken.com (separate keys). set_leverage sets the \
            symbol's max-leverage preference, which also switches it to isolated margin. Stop and \
            take-profit orders trigger on the mark price. Order lookup uses orders/status (open or \
            closed in the last 5 s), then the order and trigger history APIs (newest 3 x 500 events \
            of the market each). test_connectivity cannot read key permissions.",
    build,
};

/// The host root every API path hangs off. An override may be given as the host or, as Kraken's
/// documentation prints it, with the `/derivatives/api/v3` suffix, which is dropped.
fn base_url(params: &VenueParams) -> &str {
    match (&params.base_url, params.testnet) {
        (Some(url), _) => {
            let url = url.trim_end_matches('/');
            url.strip_suffix("/derivatives/api/v3").unwrap_or(url)
        }
        (None, true) => DEMO_URL,
        (None, false) => PRODUCTION_URL,
    }
}

fn build(params: &VenueParams) -> ExchangeResult<Arc<dyn Exchange>> {
    let base_url = base_url(params);
    let http = VenueHttp::new(VENUE, base_url, RATE_LIMIT, params.http.clone())?;
    let signer = params
        .credentials
        .as_ref()
        .map(|c| Signer::new(c.api_key.clone(), &c.api_secret))
        .transpose()?;
    Ok(Arc::new(KrakenFutures {
        client: KrakenClient::new(http, signer),
        instruments: tokio::sync::Mutex::new(None),
        clock: params.clock.clone(),
    }))
}

/// The instruments list, keyed by upper-case venue symbol, with when it was fetched.
type InstrumentCache = (Instant, Arc<HashMap<String, WireInstrument>>);

#[derive(Debug)]
struct KrakenFutures {
    client: KrakenClient,
    instruments: tokio::sync::Mutex<Option<InstrumentCache>>,
    /// Decides which candle is still forming.
    clock: Arc<dyn Clock>,
}

/// Kraken chart resolutions; the others have no Kraken equivalent.
fn resolution(tf: Timeframe) -> ExchangeResult<&'static str> {
    match tf {
        Timeframe::M1 => Ok("1m"),
        Timeframe::M5 => Ok("5m"),
        Timeframe::M15 => Ok("15m"),
        Timeframe::M30 => Ok("30m"),
        Timeframe::H1 => Ok("1h"),
        Timeframe::H4 => Ok("4h"),
        Timeframe::H12 => Ok("12h"),
        Timeframe::D1 => Ok("1d"),
        Timeframe::W1 => Ok("1w"),
        Timeframe::M3 | Timeframe::H2 | Timeframe::H6 | Timeframe::H8 => {
            Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: format!(
                    "timeframe {tf} (Kraken charts offer 1m 5m 15m 30m 1h 4h 12h 1d 1w)"
                ),
            })
        }
    }
}

fn invalid(message: String) -> ExchangeError {
    ExchangeError::InvalidOrder {
        venue: VENUE,
        message,
    }
}

fn malformed_instrument(i: &Instrument) -> ExchangeError {
    ExchangeError::malformed(
        VENUE,
        "instruments",
        format!(
            "{}: contract size {} is not positive",
            i.venue_symbol, i.contract_size
        ),
    )
}

fn on_grid(value: Decimal, increment: Decimal) -> bool {
    round_to_increment(value, increment, Round::Down) == value.normalize()
}

impl KrakenFutures {
    async fn fetch_instruments(&self) -> ExchangeResult<Arc<HashMap<String, WireInstrument>>> {
        let list = self.client.get_instruments().await?;
        let map: HashMap<String, WireInstrument> = list
            .instruments
            .into_iter()
            .map(|i| (i.symbol.to_ascii_uppercase(), i))
            .collect();
        Ok(Arc::new(map))
    }

    /// The venue symbol of `symbol` and its `/instruments` entry; `UnknownSymbol` when Kraken
    /// does not list it as a linear multi-collateral perpetual.
    async fn resolve(&self, symbol: &Symbol) -> ExchangeResult<WireInstrument> {
        let venue_symbol = symbols::to_venue(symbol)?;
        let mut cache = self.instruments.lock().await;
        let (hit, may_refetch) = match cache.as_ref() {
            Some((at, map)) if at.elapsed() < INSTRUMENTS_TTL => (
                map.get(&venue_symbol).cloned(),
                // A miss may be a new listing, but do not re-download the list on every miss.
                at.elapsed() >= MISS_REFETCH_AFTER,
            ),
            _ => (None, true),
        };
        let found = match hit {
            Some(i) => Some(i),
            None if may_refetch => {
                let map = self.fetch_instruments().await?;
                let found = map.get(&venue_symbol).cloned();
                *cache = Some((Instant::now(), map));
                found
            }
            None => None,
        };
        let unknown = |message: &str| ExchangeError::UnknownSymbol {
            venue: VENUE,
            symbol: symbol.to_string(),
            message: format!("{venue_symbol}: {message}"),
        };
        let instrument = found.ok_or_else(|| unknown("not listed by /instruments"))?;
        match instrument.kind.as_deref() {
            None | Some("flexible_futures") => Ok(instrument),
            Some(other) => Err(unknown(&format!(
                "type {other}, not a multi-collateral perpetual"
            ))),
        }
    }

    async fn domain_instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        let w = self.resolve(symbol).await?;
        parse::instrument(symbol, &w)
    }

    /// `sendorder` parameters, after checking the request against the instrument's grids. Nothing
    /// is rounded here: a quantity or price off the grid is the caller's bug, not ours to change.
    fn order_params(
        request: &OrderRequest,
        instrument: &Instrument,
    ) -> ExchangeResult<Vec<(&'static str, String)>> {
        if request.quantity <= Decimal::ZERO {
            return Err(invalid(format!(
                "quantity {} must be positive",
                request.quantity
            )));
        }
        if !on_grid(request.quantity, instrument.step_size) {
            return Err(invalid(format!(
                "quantity {} is not a multiple of the step {}",
                request.quantity, instrument.step_size
            )));
        }
        // PF_ sizes are fractional (contractSize 1, step 10^-precision), so no whole-contract rule.
        if instrument.contract_size <= Decimal::ZERO {
            return Err(malformed_instrument(instrument));
        }
        let size = request.quantity / instrument.contract_size;
        let price_param = |p: Option<Decimal>, what: &str| -> ExchangeResult<String> {
            let p = p.ok_or_else(|| {
                invalid(format!(
                    "{} order needs a {what}",
                    request.order_type.as_str()
                ))
            })?;
            if p <= Decimal::ZERO || !on_grid(p, instrument.tick_size) {
                return Err(invalid(format!(
                    "{what} {p} must be positive and a multiple of the tick {}",
                    instrument.tick_size
                )));
            }
            Ok(p.normalize().to_string())
        };
        let order_type = match request.order_type {
            OrderType::Market => "mkt",
            OrderType::Limit => "lmt",
            OrderType::StopMarket => "stp",
            OrderType::TakeProfitMarket => "take_profit",
        };
        let mut params = vec![
            ("orderType", order_type.to_string()),
            ("symbol", instrument.venue_symbol.clone()),
            ("side", request.side.as_str().to_string()),
            ("size", size.normalize().to_string()),
        ];
        match request.order_type {
            OrderType::Market => {}
            OrderType::Limit => params.push(("limitPrice", price_param(request.price, "price")?)),
            OrderType::StopMarket | OrderType::TakeProfitMarket => {
                params.push((
                    "stopPrice",
                    price_param(request.trigger_price, "trigger price")?,
                ));
                params.push(("triggerSignal", "mark".to_string()));
            }
        }
        if request.reduce_only {
            params.push(("reduceOnly", "true".to_string()));
        }
        params.push(("cliOrdId", request.client_order_id.as_str().to_string()));
        Ok(params)
    }

    /// Search the order history, then the trigger history, newest first, a few pages each.
    async fn history_lookup(
        &self,
        venue_symbol: &str,
        cli: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        let mut token: Option<String> = None;
        for _ in 0..HISTORY_PAGES {
            let mut page = self
                .client
                .get_history_orders(venue_symbol, token.as_deref())
                .await?;
            token = page.continuation_token.take().filter(|t| !t.is_empty());
            if let Some(order) = parse::history_lookup(page, cli.as_str())? {
                return Ok(Some(order));
            }
            if token.is_none() {
                break;
            }
        }
        let mut token: Option<String> = None;
        for _ in 0..HISTORY_PAGES {
            let mut page = self
                .client
                .get_history_triggers(venue_symbol, token.as_deref())
                .await?;
            token = page.continuation_token.take().filter(|t| !t.is_empty());
            if let Some(order) = parse::trigger_history_lookup(page, cli.as_str())? {
                return Ok(Some(order));
            }
            if token.is_none() {
                break;
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Exchange for KrakenFutures {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn server_time(&self) -> ExchangeResult<DateTime<Utc>> {
        Ok(self
            .client
            .get_tickers_symbol(REFERENCE_SYMBOL)
            .await?
            .server_time)
    }

    async fn klines(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> ExchangeResult<Vec<Candle>> {
        let res = resolution(timeframe)?;
        if limit > MAX_CANDLES {
            return Err(ExchangeError::Unsupported {
                venue: VENUE,
                message: format!("at most {MAX_CANDLES} candles per call, asked for {limit}"),
            });
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let w = self.resolve(symbol).await?;
        let now = self.clock.now();
        let span = i64::from(limit) * timeframe.seconds();
        let (from_s, to_s) = match since {
            Some(s) => (s.timestamp(), s.timestamp() + span),
            None => (now.timestamp() - span, now.timestamp()),
        };
        let resp = self
            .client
            .get_charts_trade(&w.symbol, res, from_s, to_s)
            .await?;
        parse::candles(resp, timeframe, now, since, limit as usize)
    }

    async fn ticker(&self, symbol: &Symbol) -> ExchangeResult<Ticker> {
        let w = self.resolve(symbol).await?;
        let resp = self.client.get_tickers_symbol(&w.symbol).await?;
        parse::ticker(symbol, resp)
    }

    async fn instrument(&self, symbol: &Symbol) -> ExchangeResult<Instrument> {
        self.domain_instrument(symbol).await
    }

    async fn balance(&self, asset: &str) -> ExchangeResult<Balance> {
        let resp = self.client.get_accounts().await?;
        parse::balance(resp, asset)
    }

    async fn positions(&self, symbol: Option<&Symbol>) -> ExchangeResult<Vec<Position>> {
        let only = match symbol {
            Some(s) => Some(self.resolve(s).await?.symbol),
            None => None,
        };
        let resp = self.client.get_openpositions().await?;
        if resp.open_positions.is_empty() {
            return Ok(Vec::new());
        }
        // openpositions carries no mark price or PnL: the public tickers do.
        let marks: HashMap<String, Decimal> = self
            .client
            .get_tickers()
            .await?
            .tickers
            .into_iter()
            .filter_map(|t| Some((t.symbol.to_ascii_uppercase(), t.mark_price?)))
            .collect();
        parse::positions(resp, only.as_deref(), &marks)
    }

    async fn set_leverage(&self, symbol: &Symbol, leverage: u32) -> ExchangeResult<()> {
        let instrument = self.domain_instrument(symbol).await?;
        if leverage == 0 || Decimal::from(leverage) > instrument.max_leverage {
            return Err(invalid(format!(
                "leverage {leverage} outside 1..={} for {}",
                instrument.max_leverage, instrument.venue_symbol
            )));
        }
        let ack = self
            .client
            .put_leveragepreferences(&instrument.venue_symbol, leverage)
            .await?;
        tracing::debug!(venue = VENUE, server_time = ?ack.server_time, "leverage preference set");
        Ok(())
    }

    async fn place_order(&self, request: &OrderRequest) -> ExchangeResult<Order> {
        let wire = self.resolve(&request.symbol).await?;
        if wire.tradeable == Some(false) {
            return Err(ExchangeError::Unavailable {
                venue: VENUE,
                message: format!("{} is not tradeable right now", wire.symbol),
            });
        }
        let instrument = parse::instrument(&request.symbol, &wire)?;
        let params = Self::order_params(request, &instrument)?;
        let resp = self.client.post_sendorder(&params).await?;
        parse::sent_order(request, resp, instrument.contract_size)
    }

    async fn cancel_order(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<()> {
        self.resolve(symbol).await?;
        let resp = self
            .client
            .post_cancelorder(client_order_id.as_str())
            .await?;
        let context = format!("cancelorder {client_order_id}");
        match resp.cancel_status.status.as_str() {
            "cancelled" => Ok(()),
            "filled" => Err(ExchangeError::OrderNotFound {
                venue: VENUE,
                message: format!("{context}: already filled, nothing to cancel"),
            }),
            other => Err(map_code(other, &context, RequestKind::Write)),
        }
    }

    async fn cancel_all(&self, symbol: &Symbol) -> ExchangeResult<u32> {
        let w = self.resolve(symbol).await?;
        let resp = self.client.post_cancelallorders(&w.symbol).await?;
        match resp.cancel_status.status.as_str() {
            "cancelled" => {
                Ok(u32::try_from(resp.cancel_status.cancelled_orders.len()).unwrap_or(u32::MAX))
            }
            "noOrdersToCancel" => Ok(0),
            other => Err(map_code(
                other,
                &format!("cancelallorders {}", w.symbol),
                RequestKind::Write,
            )),
        }
    }

    async fn open_orders(&self, symbol: &Symbol) -> ExchangeResult<Vec<Order>> {
        let w = self.resolve(symbol).await?;
        let resp = self.client.get_openorders().await?;
        let mut out = Vec::new();
        for o in resp.open_orders {
            if !o.symbol.eq_ignore_ascii_case(&w.symbol) {
                continue;
            }
            if let Some(order) = parse::open_order(o)? {
                out.push(order);
            }
        }
        Ok(out)
    }

    async fn order_by_client_id(
        &self,
        symbol: &Symbol,
        client_order_id: &ClientOrderId,
    ) -> ExchangeResult<Option<Order>> {
        let w = self.resolve(symbol).await?;
        // Open orders and those closed in the last 5 seconds.
        let status = self
            .client
            .post_orders_status(client_order_id.as_str())
            .await?;
        if let Some(found) = status
            .orders
            .into_iter()
            .find(|o| o.order.cli_ord_id.as_deref() == Some(client_order_id.as_str()))
        {
            return parse::status_order(found).map(Some);
        }
        // Older: the account's order and trigger history.
        self.history_lookup(&w.symbol, client_order_id).await
    }

    async fn test_connectivity(&self) -> ExchangeResult<AccountCheck> {
        if !self.client.has_credentials() {
            self.client.get_tickers_symbol(REFERENCE_SYMBOL).await?;
            return Ok(AccountCheck {
                can_trade: None,
                can_withdraw: None,
                notes: vec![
                    "public API reachable; no credentials configured, account not checked".into(),
                ],
            });
        }
        let accounts = self.client.get_accounts().await?;
        let mut notes = vec![
            "signed GET /accounts accepted: the key is valid and may read the account".into(),
            "Kraken's /accounts does not report key permissions: trading and withdrawal rights \
             are not verified"
                .into(),
        ];
        if accounts.accounts.flex.is_none() {
            notes.push("no multi-collateral (flex) wallet: PF_ perpetuals cannot be traded".into());
        }
        Ok(AccountCheck {
            can_trade: None,
            can_withdraw: None,
            notes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::Side;
    use rust_decimal_macros::dec;

    fn instrument() -> Instrument {
        Instrument {
            symbol: "BTC/USD:USD".parse().unwrap(),
            venue_symbol: "PF_XBTUSD".into(),
            tick_size: dec!(0.5),
            step_size: dec!(0.0001),
            min_quantity: dec!(0.0001),
            min_notional: Decimal::ZERO,
            contract_size: Decimal::ONE,
            max_leverage: dec!(50),
        }
    }

    fn request(order_type: OrderType) -> OrderRequest {
        OrderRequest {
            symbol: "BTC/USD:USD".parse().unwrap(),
            client_order_id: ClientOrderId::new("tf1").unwrap(),
            side: Side::Sell,
            order_type,
            quantity: dec!(0.0120),
            price: Some(dec!(61000.5)),
            trigger_price: Some(dec!(59000)),
            reduce_only: true,
        }
    }

    #[test]
    fn order_parameters_per_type() {
        let p =
            KrakenFutures::order_params(&request(OrderType::StopMarket), &instrument()).unwrap();
        let q: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            q.join("&"),
            "orderType=stp&symbol=PF_XBTUSD&side=sell&size=0.012&stopPrice=59000&triggerSignal=mark&reduceOnly=true&cliOrdId=tf1"
        );
        let p = KrakenFutures::order_params(&request(OrderType::Limit), &instrument()).unwrap();
        assert!(p.contains(&("limitPrice", "61000.5".into())));
        assert!(!p.iter().any(|(k, _)| *k == "stopPrice"));
        let p = KrakenFutures::order_params(&request(OrderType::Market), &instrument()).unwrap();
        assert!(
            !p.iter()
                .any(|(k, _)| *k == "limitPrice" || *k == "stopPrice")
        );
    }

    #[test]
    fn off_grid_requests_are_refused_not_rounded() {
        let mut r = request(OrderType::Limit);
        r.quantity = dec!(0.00015);
        assert_eq!(
            KrakenFutures::order_params(&r, &instrument())
                .unwrap_err()
                .kind(),
            "invalid_order"
        );
        let mut r = request(OrderType::Limit);
        r.price = Some(dec!(61000.3));
        assert!(KrakenFutures::order_params(&r, &instrument()).is_err());
        let mut r = request(OrderType::TakeProfitMarket);
        r.trigger_price = None;
        assert!(KrakenFutures::order_params(&r, &instrument()).is_err());
    }

    #[test]
    fn base_url_choice() {
        let with = |base_url: Option<&str>, testnet: bool| VenueParams {
            base_url: base_url.map(str::to_string),
            testnet,
            ..VenueParams::default()
        };
        assert_eq!(base_url(&with(None, false)), "https://futures.kraken.com");
        assert_eq!(
            base_url(&with(None, true)),
            "https://demo-futures.kraken.com"
        );
        assert_eq!(
            base_url(&with(
                Some("https://proxy.local/kraken/derivatives/api/v3/"),
                false
            )),
            "https://proxy.local/kraken"
        );
        assert_eq!(
            base_url(&with(Some("http://127.0.0.1:9"), true)),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn unsupported_timeframes_are_typed() {
        assert_eq!(resolution(Timeframe::H4).unwrap(), "4h");
        assert_eq!(resolution(Timeframe::H2).unwrap_err().kind(), "unsupported");
    }
}
