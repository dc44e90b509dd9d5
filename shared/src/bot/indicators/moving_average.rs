//! Moving averages (SMA, EMA) and the volume ratio built on them.

use super::{IndicatorError, Series, check_period};

/// Simple moving average of `period` values. Lookback `period - 1` (TA-Lib `SMA`).
pub fn sma(input: &[f64], period: usize) -> Result<Series, IndicatorError> {
    check_period("sma", "period", period, 1)?;
    let mut out = vec![f64::NAN; input.len()];
    if input.len() < period {
        return Ok(Series::undefined(input.len()));
    }
    sma_into(input, period, &mut out);
    Ok(Series::new(out, period - 1))
}

/// Writes the SMA of `input` into `out[period - 1..]`; `out` is as long as `input` and
/// `input.len() >= period >= 1` (checked by the callers).
pub(super) fn sma_into(input: &[f64], period: usize, out: &mut [f64]) {
    let p = period as f64;
    let mut sum: f64 = input.iter().take(period).sum();
    let mut outputs = out.iter_mut().skip(period - 1);
    if let Some(first) = outputs.next() {
        *first = sum / p;
    }
    let entering = input.iter().skip(period);
    for ((slot, new), old) in outputs.zip(entering).zip(input.iter()) {
        sum += new - old;
        *slot = sum / p;
    }
}

/// Exponential moving average with `k = 2 / (period + 1)`, seeded (like TA-Lib's default) with
/// the SMA of the first `period` values. Lookback `period - 1` (TA-Lib `EMA`).
pub fn ema(input: &[f64], period: usize) -> Result<Series, IndicatorError> {
    check_period("ema", "period", period, 1)?;
    Ok(ema_seeded_at(input, period, period - 1))
}

/// EMA whose first value sits at `seed_index`, equal to the SMA of the `period` inputs ending
/// there. TA-Lib's MACD seeds its fast EMA this way at the slow EMA's lookback.
/// `period >= 1` and `seed_index >= period - 1` are the caller's duty.
pub(super) fn ema_seeded_at(input: &[f64], period: usize, seed_index: usize) -> Series {
    let n = input.len();
    if n <= seed_index || period == 0 || seed_index + 1 < period {
        return Series::undefined(n);
    }
    let k = 2.0 / (period as f64 + 1.0);
    let mut out = vec![f64::NAN; n];
    let window = input.iter().skip(seed_index + 1 - period).take(period);
    let mut prev = window.sum::<f64>() / period as f64;
    let mut outputs = out.iter_mut().skip(seed_index);
    if let Some(first) = outputs.next() {
        *first = prev;
    }
    for (slot, x) in outputs.zip(input.iter().skip(seed_index + 1)) {
        prev = (x - prev) * k + prev;
        *slot = prev;
    }
    Series::new(out, seed_index)
}

/// Volume relative to its recent average: `volume / SMA(volume, period)`. Lookback
/// `period - 1`; undefined where the average volume is zero.
pub fn volume_ratio(volume: &[f64], period: usize) -> Result<Series, IndicatorError> {
    check_period("volume_ratio", "period", period, 1)?;
    let average = sma(volume, period)?;
    let lookback = average.lookback();
    let mut out = average.values;
    for (slot, v) in out.iter_mut().zip(volume).skip(lookback) {
        *slot = if *slot == 0.0 { f64::NAN } else { v / *slot };
    }
    Ok(Series::new(out, lookback))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sma_is_the_window_mean_after_its_lookback() {
        let s = sma(&[1.0, 2.0, 3.0, 4.0, 5.0], 3).unwrap();
        assert_eq!(s.lookback(), 2);
        assert_eq!(s.get(1), None);
        assert_eq!(s.get(2), Some(2.0));
        assert_eq!(s.get(4), Some(4.0));
    }

    #[test]
    fn ema_seeds_with_the_sma_then_smooths() {
        let s = ema(&[2.0, 4.0, 6.0, 12.0], 3).unwrap();
        assert_eq!(s.get(1), None);
        assert_eq!(s.get(2), Some(4.0));
        // k = 0.5: 4 + (12 - 4) / 2
        assert_eq!(s.get(3), Some(8.0));
    }

    #[test]
    fn short_input_and_bad_period_do_not_panic() {
        let s = ema(&[1.0, 2.0], 5).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.last(), None);
        assert!(sma(&[], 3).unwrap().is_empty());
        assert!(matches!(
            sma(&[1.0], 0),
            Err(IndicatorError::BadParameter {
                parameter: "period",
                ..
            })
        ));
    }

    #[test]
    fn volume_ratio_is_undefined_on_zero_average_volume() {
        let s = volume_ratio(&[0.0, 0.0, 0.0, 6.0], 2).unwrap();
        assert_eq!(s.get(2), None);
        assert_eq!(s.get(3), Some(2.0));
    }
}
