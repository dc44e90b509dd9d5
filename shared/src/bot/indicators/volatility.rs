//! Volatility measures: true range, Wilder's ATR and Bollinger Bands.

use super::moving_average::sma_into;
use super::{IndicatorError, Series, check_lengths, check_period};

/// True range: `max(high, previous close) - min(low, previous close)`. Lookback 1
/// (TA-Lib `TRANGE`).
pub fn true_range(high: &[f64], low: &[f64], close: &[f64]) -> Result<Series, IndicatorError> {
    let n = check_lengths("true_range", &[high, low, close])?;
    if n < 2 {
        return Ok(Series::undefined(n));
    }
    let mut out = vec![f64::NAN; n];
    for (slot, tr) in out.iter_mut().skip(1).zip(ranges(high, low, close)) {
        *slot = tr;
    }
    Ok(Series::new(out, 1))
}

/// True ranges from the second candle on.
fn ranges<'a>(high: &'a [f64], low: &'a [f64], close: &'a [f64]) -> impl Iterator<Item = f64> + 'a {
    high.iter()
        .zip(low)
        .skip(1)
        .zip(close)
        .map(|((&h, &l), &prev)| h.max(prev) - l.min(prev))
}

/// Wilder's average true range (TA-Lib `ATR`): the first value, at index `period`, is the mean
/// of the first `period` true ranges (candles 1..=period); then
/// `atr = (atr * (period - 1) + tr) / period`. Lookback `period`.
pub fn atr(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    period: usize,
) -> Result<Series, IndicatorError> {
    check_period("atr", "period", period, 1)?;
    let n = check_lengths("atr", &[high, low, close])?;
    if n <= period {
        return Ok(Series::undefined(n));
    }
    let p = period as f64;
    let mut out = vec![f64::NAN; n];
    let mut trs = ranges(high, low, close);
    let mut prev = trs.by_ref().take(period).sum::<f64>() / p;
    let mut outputs = out.iter_mut().skip(period);
    if let Some(first) = outputs.next() {
        *first = prev;
    }
    for (slot, tr) in outputs.zip(trs) {
        prev = (prev * (p - 1.0) + tr) / p;
        *slot = prev;
    }
    Ok(Series::new(out, period))
}

/// Upper, middle and lower Bollinger Band.
#[derive(Debug, Clone, PartialEq)]
pub struct Bollinger {
    pub upper: Series,
    pub middle: Series,
    pub lower: Series,
}

/// Bollinger Bands as TA-Lib's `BBANDS` with an SMA middle: middle = SMA(`period`), bands at
/// `deviations` population standard deviations (divide by `period`, not `period - 1`).
/// Lookback `period - 1`.
///
/// The running variance is accumulated on values shifted by the first input, which keeps the
/// sum-of-squares cancellation small at any price level. TA-Lib clamps a variance below 1e-8
/// (absolute) to zero; this does not, because that threshold collapses the bands of any coin
/// priced below about a cent.
pub fn bollinger(
    input: &[f64],
    period: usize,
    deviations: f64,
) -> Result<Bollinger, IndicatorError> {
    check_period("bollinger", "period", period, 1)?;
    let n = input.len();
    if n < period {
        let undefined = Series::undefined(n);
        return Ok(Bollinger {
            upper: undefined.clone(),
            middle: undefined.clone(),
            lower: undefined,
        });
    }
    let mut middle = vec![f64::NAN; n];
    sma_into(input, period, &mut middle);
    let shift = input.first().copied().unwrap_or(0.0);
    let p = period as f64;
    let mut sum = 0.0;
    let mut sum_sq = 0.0;
    for x in input.iter().take(period) {
        let d = x - shift;
        sum += d;
        sum_sq += d * d;
    }
    let mut upper = vec![f64::NAN; n];
    let mut lower = vec![f64::NAN; n];
    let deviation = |sum: f64, sum_sq: f64| {
        let mean = sum / p;
        let variance = sum_sq / p - mean * mean;
        if variance > 0.0 { variance.sqrt() } else { 0.0 }
    };
    let mut set = |i: usize, sd: f64| {
        if let (Some(u), Some(l), Some(m)) = (upper.get_mut(i), lower.get_mut(i), middle.get(i)) {
            *u = m + deviations * sd;
            *l = m - deviations * sd;
        }
    };
    set(period - 1, deviation(sum, sum_sq));
    for (i, (new, old)) in input.iter().skip(period).zip(input).enumerate() {
        let (dn, dold) = (new - shift, old - shift);
        sum += dn - dold;
        sum_sq += dn * dn - dold * dold;
        set(i + period, deviation(sum, sum_sq));
    }
    Ok(Bollinger {
        upper: Series::new(upper, period - 1),
        middle: Series::new(middle, period - 1),
        lower: Series::new(lower, period - 1),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn true_range_uses_the_previous_close_across_gaps() {
        // Gap up: previous close 10, candle 12..13 -> range 13 - 10 = 3.
        let tr = true_range(&[11.0, 13.0], &[9.0, 12.0], &[10.0, 12.5]).unwrap();
        assert_eq!(tr.get(0), None);
        assert_eq!(tr.get(1), Some(3.0));
    }

    #[test]
    fn atr_seeds_with_the_mean_true_range_then_smooths() {
        let high = [2.0, 3.0, 4.0, 8.0];
        let low = [1.0, 2.0, 3.0, 4.0];
        let close = [1.5, 2.5, 3.5, 7.0];
        let a = atr(&high, &low, &close, 2).unwrap();
        assert_eq!(a.lookback(), 2);
        // tr1 = 3 - 1.5 = 1.5, tr2 = 4 - 2.5 = 1.5 -> 1.5; tr3 = 8 - 3.5 = 4.5 -> (1.5 + 4.5) / 2
        assert_eq!(a.get(2), Some(1.5));
        assert_eq!(a.get(3), Some(3.0));
    }

    #[test]
    fn bollinger_uses_population_deviation() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, population sd 2.
        let b = bollinger(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 8, 2.0).unwrap();
        assert!((b.middle.last().unwrap() - 5.0).abs() < 1e-12);
        assert!((b.upper.last().unwrap() - 9.0).abs() < 1e-12);
        assert!((b.lower.last().unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bollinger_stays_accurate_at_high_prices() {
        let input: Vec<f64> = (0..60)
            .map(|i| 65_000.0 + f64::from(i % 2) * 0.01)
            .collect();
        let b = bollinger(&input, 20, 2.0).unwrap();
        let width = b.upper.last().unwrap() - b.lower.last().unwrap();
        // sd of an even 0/0.01 alternation is 0.005 -> width 4 * 0.005.
        assert!((width - 0.02).abs() < 1e-9, "width {width}");
    }
}
