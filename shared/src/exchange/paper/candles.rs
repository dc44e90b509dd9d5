//! Market data of the PAPER venue: the `CandleSource` of base candles (a CSV replay today, a live
//! public-klines feed later) and the aggregation of higher timeframes from those base candles.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{Candle, Symbol, Timeframe};
use crate::exchange::{ExchangeError, ExchangeResult};

use super::VENUE;

/// The bundled real XRP/USDT perpetual 5m candles, the default market of the simulator.
const BUNDLED_CSV: &str = include_str!("../../../data/market/XRPUSDT-PERP-5m.csv");
/// The symbol the bundled data is traded as.
pub const BUNDLED_SYMBOL: &str = "XRP/USDT:USDT";

/// Latest accepted open time (9999-12-31 23:59:59 UTC), so time arithmetic never overflows.
const MAX_OPEN_TIME_MS: i64 = 253_402_300_799_000;

/// One complete base candle as a source holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseCandle {
    pub open_time_ms: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

/// Where the simulator's market comes from. Only complete base candles cross this boundary, so a
/// live public-klines source only has to drop the candle still forming.
#[async_trait]
pub trait CandleSource: Send + Sync + fmt::Debug {
    /// The one symbol this source quotes.
    fn symbol(&self) -> &Symbol;
    /// Length of one base candle in milliseconds.
    fn base_interval_ms(&self) -> i64;
    /// Open time of the first base candle.
    fn first_open_ms(&self) -> i64;
    /// First instant after the last base candle; `None` for a source that keeps growing.
    fn data_end_ms(&self) -> Option<i64>;
    /// Base candles with `from_ms <= open_time` and `open_time + base <= to_ms`, oldest first.
    async fn closed_candles(&self, from_ms: i64, to_ms: i64) -> ExchangeResult<Vec<BaseCandle>>;
    /// The last base candle complete at `at_ms` (its end `<= at_ms`), if any.
    async fn last_closed(&self, at_ms: i64) -> ExchangeResult<Option<BaseCandle>>;
}

/// A finite replay of base candles loaded from CSV text.
#[derive(Debug)]
pub struct ReplaySource {
    symbol: Symbol,
    base_ms: i64,
    candles: Vec<BaseCandle>,
}

static BUNDLED: LazyLock<Result<Arc<ReplaySource>, ExchangeError>> = LazyLock::new(|| {
    let symbol = Symbol::from_str(BUNDLED_SYMBOL).map_err(|e| ExchangeError::Config {
        venue: VENUE,
        message: e.to_string(),
    })?;
    ReplaySource::from_csv(symbol, BUNDLED_CSV, "bundled XRPUSDT-PERP-5m.csv").map(Arc::new)
});

impl ReplaySource {
    /// The bundled XRP/USDT 5m data (parsed once per process).
    pub fn bundled() -> ExchangeResult<Arc<ReplaySource>> {
        BUNDLED.clone()
    }

    /// Parse `open_time,open,high,low,close,volume` rows (header first, open_time in Unix ms).
    /// Rows must be strictly increasing; gaps are allowed when they are whole base intervals,
    /// the base interval being the spacing of the first two rows.
    pub fn from_csv(symbol: Symbol, text: &str, origin: &str) -> ExchangeResult<ReplaySource> {
        let bad = |line: usize, why: String| ExchangeError::Config {
            venue: VENUE,
            message: format!("candle data {origin}, line {line}: {why}"),
        };
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header))
                if header
                    .trim()
                    .eq_ignore_ascii_case("open_time,open,high,low,close,volume") => {}
            _ => {
                return Err(bad(
                    1,
                    "expected the header open_time,open,high,low,close,volume".into(),
                ));
            }
        }
        let mut candles: Vec<BaseCandle> = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [t, o, h, l, c, v] = fields.as_slice() else {
                return Err(bad(n, format!("expected 6 fields, got {}", fields.len())));
            };
            let t: i64 = t
                .parse()
                .map_err(|_| bad(n, format!("open_time {t:?} is not an integer")))?;
            if !(0..=MAX_OPEN_TIME_MS).contains(&t) {
                return Err(bad(
                    n,
                    format!("open_time {t} is outside 1970..=9999 in Unix ms"),
                ));
            }
            let dec = |name: &str, s: &str| {
                Decimal::from_str(s).map_err(|_| bad(n, format!("{name} {s:?} is not a decimal")))
            };
            let candle = BaseCandle {
                open_time_ms: t,
                open: dec("open", o)?,
                high: dec("high", h)?,
                low: dec("low", l)?,
                close: dec("close", c)?,
                volume: dec("volume", v)?,
            };
            let positive = candle.low > Decimal::ZERO && candle.volume >= Decimal::ZERO;
            let ordered = candle.low <= candle.open.min(candle.close)
                && candle.high >= candle.open.max(candle.close);
            if !positive || !ordered {
                return Err(bad(
                    n,
                    "prices must be positive with low <= open, close <= high".into(),
                ));
            }
            if let Some(prev) = candles.last()
                && candle.open_time_ms <= prev.open_time_ms
            {
                return Err(bad(n, "open_time must increase strictly".into()));
            }
            candles.push(candle);
        }
        let base_ms = match candles.as_slice() {
            [first, second, ..] => second.open_time_ms - first.open_time_ms,
            _ => {
                return Err(bad(
                    1,
                    "at least two candles are needed to know the interval".into(),
                ));
            }
        };
        for pair in candles.windows(2) {
            if let [a, b] = pair
                && (b.open_time_ms - a.open_time_ms) % base_ms != 0
            {
                return Err(bad(
                    0,
                    format!(
                        "candle at {} is not a whole number of {base_ms} ms intervals after the previous one",
                        b.open_time_ms
                    ),
                ));
            }
        }
        Ok(ReplaySource {
            symbol,
            base_ms,
            candles,
        })
    }

    fn index_of_open(&self, open_ms: i64) -> usize {
        self.candles.partition_point(|c| c.open_time_ms < open_ms)
    }
}

#[async_trait]
impl CandleSource for ReplaySource {
    fn symbol(&self) -> &Symbol {
        &self.symbol
    }
    fn base_interval_ms(&self) -> i64 {
        self.base_ms
    }
    fn first_open_ms(&self) -> i64 {
        self.candles.first().map_or(0, |c| c.open_time_ms)
    }
    fn data_end_ms(&self) -> Option<i64> {
        self.candles.last().map(|c| c.open_time_ms + self.base_ms)
    }
    async fn closed_candles(&self, from_ms: i64, to_ms: i64) -> ExchangeResult<Vec<BaseCandle>> {
        let start = self.index_of_open(from_ms);
        let end = self.index_of_open(to_ms.saturating_sub(self.base_ms - 1));
        Ok(self
            .candles
            .get(start..end.max(start))
            .map(<[BaseCandle]>::to_vec)
            .unwrap_or_default())
    }
    async fn last_closed(&self, at_ms: i64) -> ExchangeResult<Option<BaseCandle>> {
        let end = self.index_of_open(at_ms.saturating_sub(self.base_ms - 1));
        Ok(end
            .checked_sub(1)
            .and_then(|i| self.candles.get(i))
            .cloned())
    }
}

/// Weeks start on Monday (1970-01-05), as on the venues; every other period on the epoch grid.
fn period_offset_ms(timeframe: Timeframe) -> i64 {
    if timeframe == Timeframe::W1 {
        4 * 86_400_000
    } else {
        0
    }
}

/// Open time of the `timeframe` period containing `t_ms`.
pub(crate) fn period_start(t_ms: i64, timeframe: Timeframe) -> i64 {
    let len = timeframe.millis();
    let off = period_offset_ms(timeframe);
    (t_ms - off).div_euclid(len) * len + off
}

/// `timeframe` must be a whole multiple of the source's base interval.
pub(crate) fn check_timeframe(
    source: &dyn CandleSource,
    timeframe: Timeframe,
) -> ExchangeResult<()> {
    let base = source.base_interval_ms();
    let len = timeframe.millis();
    if len < base || len % base != 0 {
        return Err(ExchangeError::Unsupported {
            venue: VENUE,
            message: format!(
                "timeframe {timeframe} is not a multiple of the replay's {} base interval; use a multiple of it",
                describe_ms(base)
            ),
        });
    }
    Ok(())
}

fn describe_ms(ms: i64) -> String {
    Timeframe::ALL
        .into_iter()
        .find(|tf| tf.millis() == ms)
        .map_or_else(|| format!("{ms} ms"), |tf| tf.as_str().to_string())
}

pub(crate) fn millis_to_time(ms: i64) -> ExchangeResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| ExchangeError::Config {
        venue: VENUE,
        message: format!("timestamp {ms} ms is out of range"),
    })
}

/// Group complete base candles into `timeframe` candles. A period is `closed` once its end is
/// `<= now_ms`; a period still forming holds only the base candles already complete (never data
/// from the future). Periods are returned oldest first.
pub(crate) fn aggregate(
    base: &[BaseCandle],
    timeframe: Timeframe,
    now_ms: i64,
) -> ExchangeResult<Vec<Candle>> {
    let mut out: Vec<(i64, BaseCandle)> = Vec::new();
    for c in base {
        let start = period_start(c.open_time_ms, timeframe);
        match out.last_mut() {
            Some((s, agg)) if *s == start => {
                agg.high = agg.high.max(c.high);
                agg.low = agg.low.min(c.low);
                agg.close = c.close;
                agg.volume += c.volume;
            }
            _ => out.push((start, c.clone())),
        }
    }
    out.into_iter()
        .map(|(start, c)| {
            Ok(Candle {
                open_time: millis_to_time(start)?,
                open: c.open,
                high: c.high,
                low: c.low,
                close: c.close,
                volume: c.volume,
                closed: start + timeframe.millis() <= now_ms,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn source(text: &str) -> ExchangeResult<ReplaySource> {
        ReplaySource::from_csv("XRP/USDT:USDT".parse().unwrap(), text, "test")
    }

    #[test]
    fn bundled_data_parses_with_a_5m_base() {
        let s = ReplaySource::bundled().unwrap();
        assert_eq!(s.base_interval_ms(), 300_000);
        assert_eq!(s.first_open_ms(), 1_636_934_400_000);
        // 1999 rows: the last opens at 1637533800000, so the data ends 5 minutes later.
        assert_eq!(s.data_end_ms(), Some(1_637_534_100_000));
    }

    #[test]
    fn bad_rows_are_config_errors_with_the_line() {
        let h = "open_time,open,high,low,close,volume\n";
        let e = source(&format!("{h}1,1,2,1,1,5\n2,1,2,x,1,5\n")).unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("low"),
            "{e}"
        );
        let e = source(&format!("{h}1,1,2,1,1,5\n1,1,2,1,1,5\n")).unwrap_err();
        assert!(e.to_string().contains("increase strictly"), "{e}");
        let e = source(&format!("{h}1,1,2,1.5,1,5\n2,1,2,1,1,5\n")).unwrap_err();
        assert!(e.to_string().contains("low <="), "{e}");
        let e = source(&format!("{h}-5,1,2,1,1,5\n0,1,2,1,1,5\n")).unwrap_err();
        assert!(e.to_string().contains("outside 1970"), "{e}");
        let e = source("time,o\n1,2\n").unwrap_err();
        assert!(e.to_string().contains("header"), "{e}");
        let e = source(&format!("{h}0,1,2,1,1,5\n300,1,2,1,1,5\n500,1,2,1,1,5\n")).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
    }

    #[tokio::test]
    async fn closed_candles_respect_both_bounds() {
        let h = "open_time,open,high,low,close,volume\n";
        let s = source(&format!(
            "{h}0,1,2,1,1,5\n300000,1,2,1,2,5\n600000,2,3,1,3,5\n"
        ))
        .unwrap();
        // At 599999 only the first candle (end 300000) is complete; the second ends at 600000.
        let got = s.closed_candles(0, 599_999).await.unwrap();
        assert_eq!(got.len(), 1);
        let got = s.closed_candles(300_000, 900_000).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            s.last_closed(899_999).await.unwrap().unwrap().close,
            dec!(2)
        );
        assert!(s.last_closed(299_999).await.unwrap().is_none());
    }

    #[test]
    fn timeframes_must_be_multiples_of_the_base() {
        let s = ReplaySource::bundled().unwrap();
        assert!(check_timeframe(s.as_ref(), Timeframe::M15).is_ok());
        assert!(check_timeframe(s.as_ref(), Timeframe::W1).is_ok());
        let e = check_timeframe(s.as_ref(), Timeframe::M3).unwrap_err();
        assert_eq!(e.kind(), "unsupported");
        assert!(e.to_string().contains("5m base interval"), "{e}");
        assert!(check_timeframe(s.as_ref(), Timeframe::M1).is_err());
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2021-11-17 (a Wednesday) 12:00 UTC -> Monday 2021-11-15 00:00 UTC = 1636934400000.
        assert_eq!(
            period_start(1_637_150_400_000, Timeframe::W1),
            1_636_934_400_000
        );
        assert_eq!(
            period_start(1_637_150_400_000 + 1, Timeframe::H1),
            1_637_150_400_000
        );
    }
}
