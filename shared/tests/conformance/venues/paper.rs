//! PAPER in the conformance suite: no mock, the simulated venue itself over its bundled XRP/USDT
//! 5m data, driven by a `ManualClock` that stands inside a candle (so the newest one is forming).

use std::sync::Arc;

use chrono::DateTime;
use tradefleet::clock::ManualClock;
use tradefleet::domain::{Symbol, Timeframe};
use tradefleet::exchange::{VenueParams, build_exchange};

use crate::{Opts, Subject, SubjectFuture};

/// 2021-11-17 00:02:30 UTC: inside the 00:00 candle of the bundled data.
const NOW_MS: i64 = 1_637_107_200_000 + 150_000;

/// The PAPER venue at `NOW_MS` with default settings. `opts` configure transports, which PAPER
/// has none of.
pub fn subject(opts: Opts) -> SubjectFuture {
    let _ = opts;
    Box::pin(async move {
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp_millis(NOW_MS).unwrap(),
        ));
        let ex = build_exchange(
            "paper",
            &VenueParams {
                clock,
                ..VenueParams::default()
            },
        )
        .unwrap();
        let symbol: Symbol = "XRP/USDT:USDT".parse().unwrap();
        let price = ex.ticker(&symbol).await.unwrap().last;
        Subject {
            venue: "paper",
            ex,
            symbol,
            price,
            klines: (Timeframe::M5, 6),
            mock: None,
        }
    })
}
