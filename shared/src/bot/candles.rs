//! Candle series outside the exchange adapters: reading `open_time,open,high,low,close,volume`
//! CSV files (backtests, `fleetctl analyze`, the bundled market data) and resampling a series to
//! a longer timeframe.

use std::io::Read;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{Candle, Timeframe};

/// The header every candle CSV starts with.
pub const CSV_HEADER: &str = "open_time,open,high,low,close,volume";

/// Why a candle CSV or a resampling request was refused. Lines are counted from 1 (the header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandleError {
    #[error("cannot read the CSV: {0}")]
    Read(String),
    #[error("line 1: expected the header {CSV_HEADER:?}, found {found:?}")]
    Header { found: String },
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("the CSV holds no candles")]
    Empty,
    #[error(
        "cannot infer the candle interval: {reason} (rows must be candles of one supported timeframe)"
    )]
    Interval { reason: String },
    #[error("cannot aggregate {from} candles to {to}: {reason}")]
    Aggregate {
        from: Timeframe,
        to: Timeframe,
        reason: &'static str,
    },
}

/// Candles read from a CSV file, oldest first, with the interval they were recorded at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleSeries {
    pub interval: Timeframe,
    pub candles: Vec<Candle>,
}

/// Reads a candle CSV. Rows must be strictly increasing in `open_time` (Unix milliseconds),
/// prices positive decimals with `low <= open, close <= high`, volume non-negative. The
/// interval is the smallest gap between consecutive rows and must be a supported timeframe
/// (larger gaps are missing candles, allowed). A candle is closed when
/// `open_time + interval <= now`.
pub fn read_csv<R: Read>(reader: R, now: DateTime<Utc>) -> Result<CandleSeries, CandleError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| CandleError::Read(e.to_string()))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if header != CSV_HEADER {
        return Err(CandleError::Header { found: header });
    }
    let mut rows: Vec<(i64, Candle)> = Vec::new();
    for (index, record) in csv.records().enumerate() {
        // Header is line 1; fall back to counting when the reader cannot say.
        let fallback = index as u64 + 2;
        let record = record.map_err(|e| CandleError::Row {
            line: e.position().map_or(fallback, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(fallback, |p| p.line());
        let row = parse_row(&record).map_err(|message| CandleError::Row { line, message })?;
        if let Some((previous, _)) = rows.last()
            && row.0 <= *previous
        {
            return Err(CandleError::Row {
                line,
                message: format!(
                    "open_time {} is not after the previous row's {previous}",
                    row.0
                ),
            });
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(CandleError::Empty);
    }
    let interval = infer_interval(&rows)?;
    let candles = rows
        .into_iter()
        .map(|(_, mut candle)| {
            candle.closed = candle.close_time(interval) <= now;
            candle
        })
        .collect();
    Ok(CandleSeries { interval, candles })
}

fn parse_row(record: &csv::StringRecord) -> Result<(i64, Candle), String> {
    if record.len() != 6 {
        return Err(format!(
            "expected 6 fields ({CSV_HEADER}), found {}",
            record.len()
        ));
    }
    let field = |i: usize| record.get(i).unwrap_or("");
    let millis: i64 = field(0).parse().map_err(|_| {
        format!(
            "open_time {:?} is not an integer (Unix milliseconds)",
            field(0)
        )
    })?;
    let open_time = DateTime::<Utc>::from_timestamp_millis(millis)
        .ok_or_else(|| format!("open_time {millis} is out of range"))?;
    let decimal = |i: usize, name: &str| -> Result<Decimal, String> {
        let text = field(i);
        Decimal::from_str(text)
            .or_else(|_| Decimal::from_scientific(text))
            .map_err(|_| format!("{name} {text:?} is not a decimal number"))
    };
    let open = decimal(1, "open")?;
    let high = decimal(2, "high")?;
    let low = decimal(3, "low")?;
    let close = decimal(4, "close")?;
    let volume = decimal(5, "volume")?;
    for (name, value) in [
        ("open", open),
        ("high", high),
        ("low", low),
        ("close", close),
    ] {
        if value <= Decimal::ZERO {
            return Err(format!("{name} {value} must be positive"));
        }
    }
    if volume < Decimal::ZERO {
        return Err(format!("volume {volume} must not be negative"));
    }
    if low > open.min(close) || high < open.max(close) {
        return Err(format!(
            "prices are inconsistent: low {low} and high {high} must enclose open {open} and close {close}"
        ));
    }
    let candle = Candle {
        open_time,
        open,
        high,
        low,
        close,
        volume,
        closed: true,
    };
    Ok((millis, candle))
}

fn infer_interval(rows: &[(i64, Candle)]) -> Result<Timeframe, CandleError> {
    let smallest = rows
        .iter()
        .zip(rows.iter().skip(1))
        .map(|((a, _), (b, _))| b - a)
        .min()
        .ok_or_else(|| CandleError::Interval {
            reason: "a single row has no interval".into(),
        })?;
    Timeframe::ALL
        .into_iter()
        .find(|tf| tf.millis() == smallest)
        .ok_or_else(|| CandleError::Interval {
            reason: format!("the smallest gap between rows is {smallest} ms"),
        })
}

/// Start of the `timeframe` bucket holding `millis`. Buckets are aligned to the Unix epoch in
/// UTC, except weeks, which start on Monday 00:00 UTC (the epoch was a Thursday).
fn bucket_start(millis: i64, timeframe: Timeframe) -> i64 {
    const MONDAY_OFFSET: i64 = 4 * 86_400_000;
    let offset = if timeframe == Timeframe::W1 {
        MONDAY_OFFSET
    } else {
        0
    };
    let size = timeframe.millis();
    (millis - offset).div_euclid(size) * size + offset
}

/// Resamples `candles` of interval `from` (oldest first) to the longer timeframe `to`. Only
/// complete buckets are kept: one holding every `from` candle it should, all closed. A bucket
/// cut by a gap in the data or still forming at the end is dropped, so every output candle is
/// closed and real. `to == from` returns the closed candles unchanged.
pub fn aggregate(
    candles: &[Candle],
    from: Timeframe,
    to: Timeframe,
) -> Result<Vec<Candle>, CandleError> {
    let refuse = |reason| CandleError::Aggregate { from, to, reason };
    if to.millis() < from.millis() {
        return Err(refuse("the target timeframe is shorter than the data's"));
    }
    if to.millis() % from.millis() != 0 {
        return Err(refuse(
            "the target timeframe is not a whole multiple of the data's",
        ));
    }
    let per_bucket = usize::try_from(to.millis() / from.millis())
        .map_err(|_| refuse("the timeframe ratio does not fit in memory"))?;
    let mut out = Vec::with_capacity(candles.len() / per_bucket + 1);
    let mut current: Option<(i64, Candle, usize)> = None;
    let mut flush = |bucket: Option<(i64, Candle, usize)>| {
        if let Some((_, candle, count)) = bucket
            && count == per_bucket
            && candle.closed
        {
            out.push(candle);
        }
    };
    for candle in candles {
        let start = bucket_start(candle.open_time.timestamp_millis(), to);
        match current.as_mut() {
            Some((bucket, agg, count)) if *bucket == start => {
                agg.high = agg.high.max(candle.high);
                agg.low = agg.low.min(candle.low);
                agg.close = candle.close;
                agg.volume += candle.volume;
                agg.closed &= candle.closed;
                *count += 1;
            }
            _ => {
                flush(current.take());
                let open_time = DateTime::<Utc>::from_timestamp_millis(start)
                    .ok_or(refuse("a candle's bucket start is out of range"))?;
                let first = Candle {
                    open_time,
                    ..candle.clone()
                };
                // A bucket whose first candle is not at the bucket start is incomplete.
                let count = if first.open_time == candle.open_time {
                    1
                } else {
                    0
                };
                current = Some((start, first, count));
            }
        }
    }
    flush(current.take());
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(4_000_000_000_000).unwrap()
    }

    #[test]
    fn reads_rows_and_infers_the_interval() {
        let text = "open_time,open,high,low,close,volume\n\
                    0,1.0,1.2,0.9,1.1,10\n\
                    300000,1.1,1.3,1.0,1.2,5.5\n\
                    900000,1.2,1.2,1.1,1.15,0\n";
        let series = read_csv(text.as_bytes(), now()).unwrap();
        assert_eq!(series.interval, Timeframe::M5);
        assert_eq!(series.candles.len(), 3);
        assert_eq!(series.candles[1].volume, dec!(5.5));
        assert!(series.candles.iter().all(|c| c.closed));
    }

    #[test]
    fn the_candle_still_forming_is_not_closed() {
        let text = "open_time,open,high,low,close,volume\n0,1,1,1,1,1\n60000,1,1,1,1,1\n";
        let at = DateTime::<Utc>::from_timestamp_millis(100_000).unwrap();
        let series = read_csv(text.as_bytes(), at).unwrap();
        assert!(series.candles[0].closed);
        assert!(!series.candles[1].closed);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let cases = [
            (
                "0,1,1,1,abc,1",
                "line 3: close \"abc\" is not a decimal number",
            ),
            ("0,1,1,1,1", "line 3: expected 6 fields"),
            ("-5,1,1,1,1,1", "line 3: open_time -5 is not after"),
            ("600000,1,0.5,1,1,1", "line 3: prices are inconsistent"),
            (
                "600000,1,1,1,1,-1",
                "line 3: volume -1 must not be negative",
            ),
            ("x,1,1,1,1,1", "line 3: open_time \"x\" is not an integer"),
        ];
        for (row, expected) in cases {
            let text = format!("{CSV_HEADER}\n0,1,1,1,1,1\n{row}\n");
            let err = read_csv(text.as_bytes(), now()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{row}: got {err}");
        }
        let err = read_csv("time,o,h,l,c,v\n".as_bytes(), now()).unwrap_err();
        assert!(matches!(err, CandleError::Header { .. }));
        let err = read_csv(format!("{CSV_HEADER}\n").as_bytes(), now()).unwrap_err();
        assert_eq!(err, CandleError::Empty);
    }

    fn minute(i: i64, price: Decimal) -> Candle {
        Candle {
            open_time: DateTime::<Utc>::from_timestamp_millis(i * 60_000).unwrap(),
            open: price,
            high: price + dec!(1),
            low: price - dec!(1),
            close: price + dec!(0.5),
            volume: dec!(2),
            closed: true,
        }
    }

    #[test]
    fn aggregates_complete_buckets_only() {
        // Minutes 1..=10: bucket 0..5 misses minute 0, bucket 5..10 is complete, 10 is alone.
        let candles: Vec<Candle> = (1..=10).map(|i| minute(i, Decimal::from(i))).collect();
        let out = aggregate(&candles, Timeframe::M1, Timeframe::M5).unwrap();
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!(c.open_time.timestamp(), 300);
        assert_eq!((c.open, c.close), (dec!(5), dec!(9.5)));
        assert_eq!((c.high, c.low), (dec!(10), dec!(4)));
        assert_eq!(c.volume, dec!(10));
    }

    #[test]
    fn refuses_impossible_resampling() {
        assert!(aggregate(&[], Timeframe::H1, Timeframe::M5).is_err());
        assert!(aggregate(&[], Timeframe::M3, Timeframe::M5).is_err());
        assert!(
            aggregate(&[], Timeframe::M5, Timeframe::M5)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2024-01-03 is a Wednesday; its week starts Monday 2024-01-01.
        let wednesday = DateTime::parse_from_rfc3339("2024-01-03T12:00:00Z").unwrap();
        let start = bucket_start(wednesday.timestamp_millis(), Timeframe::W1);
        let monday = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(start, monday.timestamp_millis());
    }
}
