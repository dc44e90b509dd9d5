//! Momentum oscillators: RSI (Wilder), MACD and the slow stochastic, as TA-Lib computes them.

use std::collections::VecDeque;

use super::moving_average::{ema_seeded_at, sma_into};
use super::{IndicatorError, Series, check_lengths, check_period};

/// Wilder's relative strength index (TA-Lib `RSI`, default compatibility). Lookback `period`.
///
/// The first value averages the first `period` gains and losses; later values use Wilder's
/// smoothing `avg = (avg * (period - 1) + x) / period`. One deliberate difference: where the
/// average gain and loss are both exactly zero (a perfectly flat window) this returns 50
/// (neutral) while TA-Lib returns 0, and TA-Lib's absolute 1e-8 "is zero" test is not applied
/// (it misreads coins priced in fractions of a cent as flat). A flat market is not oversold.
pub fn rsi(input: &[f64], period: usize) -> Result<Series, IndicatorError> {
    check_period("rsi", "period", period, 2)?;
    let n = input.len();
    if n <= period {
        return Ok(Series::undefined(n));
    }
    let p = period as f64;
    let mut out = vec![f64::NAN; n];
    let mut gain = 0.0;
    let mut loss = 0.0;
    let diffs = input.iter().zip(input.iter().skip(1)).map(|(a, b)| b - a);
    let mut diffs = diffs.enumerate();
    for (_, d) in diffs.by_ref().take(period) {
        if d < 0.0 {
            loss -= d;
        } else {
            gain += d;
        }
    }
    gain /= p;
    loss /= p;
    let value = |gain: f64, loss: f64| {
        let total = gain + loss;
        if total == 0.0 {
            50.0
        } else {
            100.0 * (gain / total)
        }
    };
    if let Some(slot) = out.get_mut(period) {
        *slot = value(gain, loss);
    }
    for (i, d) in diffs {
        gain *= p - 1.0;
        loss *= p - 1.0;
        if d < 0.0 {
            loss -= d;
        } else {
            gain += d;
        }
        gain /= p;
        loss /= p;
        if let Some(slot) = out.get_mut(i + 1) {
            *slot = value(gain, loss);
        }
    }
    Ok(Series::new(out, period))
}

/// MACD line, signal line and histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Macd {
    pub macd: Series,
    pub signal: Series,
    pub hist: Series,
}

/// Moving average convergence/divergence exactly as TA-Lib's `MACD`: the slow EMA is seeded at
/// its own lookback, the fast EMA is seeded *at the same index* with the SMA of the last `fast`
/// values (not at its own, shorter lookback), and the signal EMA runs over the MACD line. All
/// three outputs start at `slow - 1 + signal - 1` (33 for 12/26/9). A fast period longer than
/// the slow one is swapped, as TA-Lib does.
pub fn macd(
    input: &[f64],
    fast: usize,
    slow: usize,
    signal: usize,
) -> Result<Macd, IndicatorError> {
    check_period("macd", "fast period", fast, 2)?;
    check_period("macd", "slow period", slow, 2)?;
    check_period("macd", "signal period", signal, 1)?;
    let (fast, slow) = if fast > slow {
        (slow, fast)
    } else {
        (fast, slow)
    };
    let n = input.len();
    let start = slow - 1;
    let lookback = start + signal - 1;
    if n <= lookback {
        let undefined = Series::undefined(n);
        return Ok(Macd {
            macd: undefined.clone(),
            signal: undefined.clone(),
            hist: undefined,
        });
    }
    let slow_ema = ema_seeded_at(input, slow, start);
    let fast_ema = ema_seeded_at(input, fast, start);
    let mut line = vec![f64::NAN; n];
    for ((slot, f), s) in line
        .iter_mut()
        .zip(fast_ema.raw())
        .zip(slow_ema.raw())
        .skip(start)
    {
        *slot = f - s;
    }
    // The signal EMA over the defined part of the MACD line, seeded with its first `signal`
    // values; then everything before `lookback` is blanked, as TA-Lib reports it.
    let defined = line.get(start..).unwrap_or(&[]);
    let signal_tail = ema_seeded_at(defined, signal, signal - 1);
    let mut signal_line = vec![f64::NAN; n];
    for (slot, v) in signal_line.iter_mut().skip(start).zip(signal_tail.raw()) {
        *slot = *v;
    }
    for v in line.iter_mut().take(lookback) {
        *v = f64::NAN;
    }
    let mut hist = vec![f64::NAN; n];
    for ((slot, m), s) in hist.iter_mut().zip(&line).zip(&signal_line).skip(lookback) {
        *slot = m - s;
    }
    Ok(Macd {
        macd: Series::new(line, lookback),
        signal: Series::new(signal_line, lookback),
        hist: Series::new(hist, lookback),
    })
}

/// Slow stochastic %K and %D.
#[derive(Debug, Clone, PartialEq)]
pub struct Stochastic {
    pub k: Series,
    pub d: Series,
}

/// Slow stochastic as TA-Lib's `STOCH` with SMA smoothing: fast %K over `fast_k` candles,
/// slow %K = SMA(fast %K, `slow_k`), %D = SMA(slow %K, `slow_d`). Both outputs start at
/// `fast_k + slow_k + slow_d - 3` (17 for 14/3/3), as in TA-Lib. The highest high and lowest
/// low are tracked with monotonic deques, so the pass is O(n) for any window.
///
/// Deliberate difference: where the window's high equals its low (a flat window) fast %K is 50
/// (neutral); TA-Lib returns 0.
pub fn stochastic(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    fast_k: usize,
    slow_k: usize,
    slow_d: usize,
) -> Result<Stochastic, IndicatorError> {
    check_period("stochastic", "fast %K period", fast_k, 1)?;
    check_period("stochastic", "slow %K period", slow_k, 1)?;
    check_period("stochastic", "slow %D period", slow_d, 1)?;
    let n = check_lengths("stochastic", &[high, low, close])?;
    let lookback = fast_k + slow_k + slow_d - 3;
    if n <= lookback {
        let undefined = Series::undefined(n);
        return Ok(Stochastic {
            k: undefined.clone(),
            d: undefined,
        });
    }
    let mut fast = vec![f64::NAN; n];
    let mut highs: VecDeque<(usize, f64)> = VecDeque::with_capacity(fast_k);
    let mut lows: VecDeque<(usize, f64)> = VecDeque::with_capacity(fast_k);
    for (i, ((slot, (&h, &l)), &c)) in fast
        .iter_mut()
        .zip(high.iter().zip(low))
        .zip(close)
        .enumerate()
    {
        while highs.back().is_some_and(|&(_, v)| v <= h) {
            highs.pop_back();
        }
        highs.push_back((i, h));
        while lows.back().is_some_and(|&(_, v)| v >= l) {
            lows.pop_back();
        }
        lows.push_back((i, l));
        if i + 1 < fast_k {
            continue;
        }
        let oldest = i + 1 - fast_k;
        while highs.front().is_some_and(|&(j, _)| j < oldest) {
            highs.pop_front();
        }
        while lows.front().is_some_and(|&(j, _)| j < oldest) {
            lows.pop_front();
        }
        if let (Some(&(_, hh)), Some(&(_, ll))) = (highs.front(), lows.front()) {
            let range = hh - ll;
            *slot = if range == 0.0 {
                50.0
            } else {
                (c - ll) / (range / 100.0)
            };
        }
    }
    let k_start = fast_k - 1;
    let mut k = vec![f64::NAN; n];
    if let (Some(src), Some(dst)) = (fast.get(k_start..), k.get_mut(k_start..)) {
        sma_into(src, slow_k, dst);
    }
    let d_start = k_start + slow_k - 1;
    let mut d = vec![f64::NAN; n];
    if let (Some(src), Some(dst)) = (k.get(d_start..), d.get_mut(d_start..)) {
        sma_into(src, slow_d, dst);
    }
    for v in k.iter_mut().take(lookback) {
        *v = f64::NAN;
    }
    Ok(Stochastic {
        k: Series::new(k, lookback),
        d: Series::new(d, lookback),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rsi_of_only_gains_is_100_and_of_only_losses_is_0() {
        let up: Vec<f64> = (0..20).map(f64::from).collect();
        let down: Vec<f64> = up.iter().rev().copied().collect();
        assert_eq!(rsi(&up, 14).unwrap().last(), Some(100.0));
        assert_eq!(rsi(&down, 14).unwrap().last(), Some(0.0));
        assert_eq!(rsi(&up, 14).unwrap().lookback(), 14);
    }

    #[test]
    fn rsi_of_a_flat_series_is_neutral() {
        assert_eq!(rsi(&[1.5; 30], 14).unwrap().last(), Some(50.0));
    }

    #[test]
    fn rsi_hand_computed() {
        // Diffs +2, -1 (period 2): avg gain 1, avg loss 0.5 -> 66.67; then +1:
        // gain (1*1+1)/2 = 1, loss (0.5*1)/2 = 0.25 -> 80.
        let s = rsi(&[10.0, 12.0, 11.0, 12.0], 2).unwrap();
        assert!((s.get(2).unwrap() - 200.0 / 3.0).abs() < 1e-12);
        assert!((s.get(3).unwrap() - 80.0).abs() < 1e-12);
    }

    #[test]
    fn macd_starts_at_33_for_defaults_and_not_before() {
        let input: Vec<f64> = (0..40).map(|i| (f64::from(i) * 0.3).sin() + 10.0).collect();
        let m = macd(&input, 12, 26, 9).unwrap();
        assert_eq!(m.macd.lookback(), 33);
        assert_eq!(m.macd.get(32), None);
        let (line, signal, hist) = (m.macd.get(33), m.signal.get(33), m.hist.get(33));
        assert!((hist.unwrap() - (line.unwrap() - signal.unwrap())).abs() < 1e-15);
        assert_eq!(macd(&input[..33], 12, 26, 9).unwrap().macd.last(), None);
    }

    #[test]
    fn stochastic_at_the_top_of_the_range_is_100() {
        let high: Vec<f64> = (0..30).map(|i| f64::from(i) + 1.0).collect();
        let low: Vec<f64> = (0..30).map(f64::from).collect();
        let close = high.clone();
        let s = stochastic(&high, &low, &close, 14, 3, 3).unwrap();
        assert_eq!(s.k.lookback(), 17);
        assert_eq!(s.k.get(16), None);
        assert!((s.k.last().unwrap() - 100.0).abs() < 1e-12);
        assert!((s.d.last().unwrap() - 100.0).abs() < 1e-12);
    }

    #[test]
    fn stochastic_of_a_flat_window_is_neutral() {
        let flat = [2.0; 25];
        let s = stochastic(&flat, &flat, &flat, 14, 3, 3).unwrap();
        assert_eq!(s.k.last(), Some(50.0));
        assert_eq!(s.d.last(), Some(50.0));
    }

    #[test]
    fn stochastic_rejects_ragged_columns() {
        let r = stochastic(&[1.0, 2.0], &[1.0], &[1.0, 2.0], 14, 3, 3);
        assert!(matches!(r, Err(IndicatorError::LengthMismatch { .. })));
    }
}
