//! Capital management: how big a position the cycle may open, and why.
//!
//! Sizing is in two steps. A method (`fixed_pct`, `volatility`, `kelly`, `llm_hybrid`) proposes the
//! margin to commit as a percentage of equity; caps then apply in a fixed order (per-position cap,
//! drawdown reduction, portfolio exposure, available margin) and the quantity is rounded DOWN to
//! the instrument's step. Every adjustment is written into `reasons`, so a run record says why a
//! size was what it was.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::Instrument;
use crate::exchange::precision::{Round, round_to_increment};

/// How the base size is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizingMethod {
    /// `base_position_size_pct` of equity as margin.
    #[default]
    FixedPct,
    /// Risk `risk_per_trade_pct` of equity over the stop distance.
    Volatility,
    /// Fractional Kelly from the subscription's own closed trades.
    Kelly,
    /// Blend an LLM recommendation with `fixed_pct`; falls back to `fixed_pct` without one.
    LlmHybrid,
}

/// The capital section of a subscription's risk config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapitalConfig {
    pub sizing_method: SizingMethod,
    /// Margin of a normal position, % of equity.
    pub base_position_size_pct: Decimal,
    /// Margin of any one position, % of equity, whatever the method says.
    pub max_position_size_pct: Decimal,
    /// Total notional of the principal's open positions on the exchange, as a multiple of equity.
    pub max_portfolio_exposure: Decimal,
    /// `volatility`: % of equity lost if the stop-loss is hit.
    pub risk_per_trade_pct: Decimal,
    /// `kelly`: fraction of the full Kelly bet (0.25 = quarter Kelly).
    pub kelly_fraction: Decimal,
    /// `kelly`: closed trades needed before Kelly is trusted; fewer -> `fixed_pct`.
    pub kelly_min_trades: u32,
    /// `llm_hybrid`: weight of the LLM's recommendation at full confidence (0..1).
    pub llm_weight: Decimal,
    /// Drawdown from peak equity (%) at which sizes are reduced.
    pub drawdown_reduce_at_pct: Decimal,
    /// Multiplier applied to sizes in drawdown (0.5 = half size).
    pub drawdown_size_factor: Decimal,
    /// Scale the size by the signal's confidence.
    pub scale_by_confidence: bool,
}

impl Default for CapitalConfig {
    fn default() -> Self {
        Self {
            sizing_method: SizingMethod::FixedPct,
            base_position_size_pct: Decimal::from(2),
            max_position_size_pct: Decimal::from(10),
            max_portfolio_exposure: Decimal::from(3),
            risk_per_trade_pct: Decimal::ONE,
            kelly_fraction: Decimal::new(25, 2),
            kelly_min_trades: 20,
            llm_weight: Decimal::new(5, 1),
            drawdown_reduce_at_pct: Decimal::from(10),
            drawdown_size_factor: Decimal::new(5, 1),
            scale_by_confidence: false,
        }
    }
}

/// A configuration value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("risk.capital.{field}: {reason}")]
pub struct CapitalConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl CapitalConfig {
    pub fn validate(&self) -> Result<(), CapitalConfigError> {
        let hundred = Decimal::ONE_HUNDRED;
        let pct = |field: &'static str, v: Decimal, allow_zero: bool| {
            if v < Decimal::ZERO || v > hundred || (!allow_zero && v.is_zero()) {
                Err(CapitalConfigError {
                    field,
                    reason: format!(
                        "{v} is outside {}..=100",
                        if allow_zero { "0" } else { "(0" }
                    ),
                })
            } else {
                Ok(())
            }
        };
        let unit = |field: &'static str, v: Decimal| {
            if v < Decimal::ZERO || v > Decimal::ONE {
                Err(CapitalConfigError {
                    field,
                    reason: format!("{v} is outside 0..=1"),
                })
            } else {
                Ok(())
            }
        };
        pct("base_position_size_pct", self.base_position_size_pct, false)?;
        pct("max_position_size_pct", self.max_position_size_pct, false)?;
        pct("risk_per_trade_pct", self.risk_per_trade_pct, false)?;
        pct("drawdown_reduce_at_pct", self.drawdown_reduce_at_pct, true)?;
        unit("kelly_fraction", self.kelly_fraction)?;
        unit("llm_weight", self.llm_weight)?;
        unit("drawdown_size_factor", self.drawdown_size_factor)?;
        if self.base_position_size_pct > self.max_position_size_pct {
            return Err(CapitalConfigError {
                field: "base_position_size_pct",
                reason: format!(
                    "{} is above max_position_size_pct {}",
                    self.base_position_size_pct, self.max_position_size_pct
                ),
            });
        }
        if self.max_portfolio_exposure <= Decimal::ZERO {
            return Err(CapitalConfigError {
                field: "max_portfolio_exposure",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}

/// An LLM's sizing advice for this cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRecommendation {
    /// Suggested margin, % of equity.
    pub position_size_pct: Decimal,
    /// 0..1.
    pub confidence: Decimal,
}

/// Win/loss statistics of the subscription's closed trades (for Kelly).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TradeStats {
    pub wins: u32,
    pub losses: u32,
    /// Sum of positive realized PnL (after fees).
    pub gross_win: Decimal,
    /// Sum of |negative realized PnL| (after fees).
    pub gross_loss: Decimal,
}

impl TradeStats {
    /// Stats from realized PnLs; zero-PnL trades count as neither.
    pub fn from_pnls(pnls: impl IntoIterator<Item = Decimal>) -> Self {
        let mut s = TradeStats::default();
        for p in pnls {
            if p > Decimal::ZERO {
                s.wins += 1;
                s.gross_win += p;
            } else if p < Decimal::ZERO {
                s.losses += 1;
                s.gross_loss += -p;
            }
        }
        s
    }

    pub fn trades(&self) -> u32 {
        self.wins + self.losses
    }

    /// The full Kelly fraction `W - (1 - W) / R`, where `R` is average win over average loss.
    /// `None` without both wins and losses.
    pub fn kelly(&self) -> Option<Decimal> {
        if self.wins == 0 || self.losses == 0 || self.gross_loss.is_zero() {
            return None;
        }
        let n = Decimal::from(self.trades());
        let w = Decimal::from(self.wins) / n;
        let avg_win = self.gross_win / Decimal::from(self.wins);
        let avg_loss = self.gross_loss / Decimal::from(self.losses);
        let r = avg_win / avg_loss;
        Some(w - (Decimal::ONE - w) / r)
    }
}

/// Everything sizing looks at.
#[derive(Debug, Clone)]
pub struct SizingInput<'a> {
    pub config: &'a CapitalConfig,
    pub instrument: &'a Instrument,
    /// Current equity of the account (settle asset).
    pub equity: Decimal,
    /// Margin free to open new positions.
    pub available: Decimal,
    /// Highest equity seen (for drawdown); `equity` when unknown.
    pub peak_equity: Decimal,
    /// Expected entry price.
    pub entry_price: Decimal,
    /// Stop-loss price of the signal.
    pub stop_loss: Option<Decimal>,
    /// Leverage wanted by the subscription.
    pub leverage: u32,
    /// Notional of the principal's other open positions on this exchange.
    pub open_exposure: Decimal,
    pub trade_stats: &'a TradeStats,
    pub llm: Option<&'a LlmRecommendation>,
    /// The signal's confidence, 0..1.
    pub confidence: Decimal,
}

/// The outcome of sizing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum SizingDecision {
    Open {
        /// Base-coin quantity, on the step grid.
        quantity: Decimal,
        notional: Decimal,
        margin: Decimal,
        leverage: u32,
        method: SizingMethod,
        reasons: Vec<String>,
    },
    Skip {
        reason: String,
        reasons: Vec<String>,
    },
}

/// Size a new position.
pub fn size_position(input: &SizingInput<'_>) -> SizingDecision {
    let cfg = input.config;
    let mut reasons = Vec::new();
    let skip = |reason: String, reasons: Vec<String>| SizingDecision::Skip { reason, reasons };
    if input.equity <= Decimal::ZERO {
        return skip(format!("equity is {}", input.equity), reasons);
    }
    if input.entry_price <= Decimal::ZERO {
        return skip(format!("entry price is {}", input.entry_price), reasons);
    }
    let max_leverage = input
        .instrument
        .max_leverage
        .floor()
        .to_string()
        .parse::<u32>()
        .unwrap_or(1)
        .max(1);
    let leverage = input.leverage.clamp(1, max_leverage);
    if leverage != input.leverage {
        reasons.push(format!(
            "leverage {} capped to {} (instrument maximum {})",
            input.leverage, leverage, input.instrument.max_leverage
        ));
    }
    let lev = Decimal::from(leverage);
    let hundred = Decimal::ONE_HUNDRED;

    // 1. The method's proposal, as margin % of equity.
    let (mut margin_pct, method) = match cfg.sizing_method {
        SizingMethod::FixedPct => {
            reasons.push(format!(
                "fixed_pct: {}% of equity as margin",
                cfg.base_position_size_pct
            ));
            (cfg.base_position_size_pct, SizingMethod::FixedPct)
        }
        SizingMethod::Volatility => match input.stop_loss {
            Some(sl) if sl != input.entry_price && sl > Decimal::ZERO => {
                let distance = (input.entry_price - sl).abs();
                // Risk amount / distance = quantity; margin = quantity * price / leverage.
                let risk_amount = input.equity * cfg.risk_per_trade_pct / hundred;
                let quantity = risk_amount / distance;
                let margin = quantity * input.entry_price / lev;
                let pct = margin / input.equity * hundred;
                reasons.push(format!(
                    "volatility: risk {}% of equity ({}) over stop distance {} -> {}% margin",
                    cfg.risk_per_trade_pct,
                    risk_amount.round_dp(8).normalize(),
                    distance.normalize(),
                    pct.round_dp(4).normalize()
                ));
                (pct, SizingMethod::Volatility)
            }
            _ => {
                reasons.push(
                    "volatility: no usable stop-loss distance, fell back to fixed_pct".into(),
                );
                (cfg.base_position_size_pct, SizingMethod::FixedPct)
            }
        },
        SizingMethod::Kelly => {
            let stats = input.trade_stats;
            match stats.kelly() {
                Some(k) if stats.trades() >= cfg.kelly_min_trades => {
                    if k <= Decimal::ZERO {
                        return skip(
                            format!(
                                "kelly: edge {} is not positive over {} trades",
                                k.round_dp(4),
                                stats.trades()
                            ),
                            reasons,
                        );
                    }
                    let pct = k * cfg.kelly_fraction * hundred;
                    reasons.push(format!(
                        "kelly: full {} x fraction {} over {} trades -> {}% margin",
                        k.round_dp(4).normalize(),
                        cfg.kelly_fraction,
                        stats.trades(),
                        pct.round_dp(4).normalize()
                    ));
                    (pct, SizingMethod::Kelly)
                }
                _ => {
                    reasons.push(format!(
                        "kelly: {} closed trades (< {} or no wins and losses), fell back to fixed_pct",
                        stats.trades(),
                        cfg.kelly_min_trades
                    ));
                    (cfg.base_position_size_pct, SizingMethod::FixedPct)
                }
            }
        }
        SizingMethod::LlmHybrid => match input.llm {
            Some(rec) if rec.position_size_pct > Decimal::ZERO => {
                let conf = rec.confidence.clamp(Decimal::ZERO, Decimal::ONE);
                let w = cfg.llm_weight * conf;
                let pct =
                    w * rec.position_size_pct + (Decimal::ONE - w) * cfg.base_position_size_pct;
                reasons.push(format!(
                    "llm_hybrid: LLM {}% at confidence {} (weight {}) blended with {}% -> {}%",
                    rec.position_size_pct,
                    conf,
                    w.normalize(),
                    cfg.base_position_size_pct,
                    pct.round_dp(4).normalize()
                ));
                (pct, SizingMethod::LlmHybrid)
            }
            _ => {
                reasons.push("llm_hybrid: no LLM recommendation, fell back to fixed_pct".into());
                (cfg.base_position_size_pct, SizingMethod::FixedPct)
            }
        },
    };

    // 2. Confidence scaling.
    if cfg.scale_by_confidence {
        let c = input.confidence.clamp(Decimal::ZERO, Decimal::ONE);
        margin_pct *= c;
        reasons.push(format!("scaled by signal confidence {c}"));
    }
    // 3. Per-position cap.
    if margin_pct > cfg.max_position_size_pct {
        reasons.push(format!(
            "capped at max_position_size_pct {}%",
            cfg.max_position_size_pct
        ));
        margin_pct = cfg.max_position_size_pct;
    }
    // 4. Drawdown reduction.
    if input.peak_equity > Decimal::ZERO && input.peak_equity > input.equity {
        let dd_pct = (input.peak_equity - input.equity) / input.peak_equity * hundred;
        if cfg.drawdown_reduce_at_pct > Decimal::ZERO && dd_pct >= cfg.drawdown_reduce_at_pct {
            margin_pct *= cfg.drawdown_size_factor;
            reasons.push(format!(
                "drawdown {}% >= {}%: size x {}",
                dd_pct.round_dp(2).normalize(),
                cfg.drawdown_reduce_at_pct,
                cfg.drawdown_size_factor
            ));
        }
    }
    let mut margin = input.equity * margin_pct / hundred;
    let mut notional = margin * lev;

    // 5. Portfolio exposure.
    let exposure_cap = input.equity * cfg.max_portfolio_exposure;
    let room = exposure_cap - input.open_exposure;
    if room <= Decimal::ZERO {
        return skip(
            format!(
                "portfolio exposure {} already at the cap {} ({}x equity)",
                input.open_exposure.normalize(),
                exposure_cap.normalize(),
                cfg.max_portfolio_exposure
            ),
            reasons,
        );
    }
    if notional > room {
        reasons.push(format!(
            "notional {} cut to {} to stay within {}x equity portfolio exposure",
            notional.round_dp(8).normalize(),
            room.round_dp(8).normalize(),
            cfg.max_portfolio_exposure
        ));
        notional = room;
        margin = notional / lev;
    }
    // 6. Available margin.
    if margin > input.available {
        if input.available <= Decimal::ZERO {
            return skip(
                format!("no available margin ({})", input.available),
                reasons,
            );
        }
        reasons.push(format!(
            "margin {} cut to available {}",
            margin.round_dp(8).normalize(),
            input.available.normalize()
        ));
        margin = input.available;
        notional = margin * lev;
    }

    // 7. Quantity on the step grid, then minimums.
    let raw_qty = notional / input.entry_price;
    let quantity = round_to_increment(raw_qty, input.instrument.step_size, Round::Down);
    if quantity <= Decimal::ZERO || quantity < input.instrument.min_quantity {
        return skip(
            format!(
                "quantity {} is below the minimum {}",
                quantity.normalize(),
                input.instrument.min_quantity
            ),
            reasons,
        );
    }
    let notional = quantity * input.entry_price;
    if input.instrument.min_notional > Decimal::ZERO && notional < input.instrument.min_notional {
        return skip(
            format!(
                "notional {} is below the minimum {}",
                notional.normalize(),
                input.instrument.min_notional
            ),
            reasons,
        );
    }
    SizingDecision::Open {
        quantity: quantity.normalize(),
        notional: notional.normalize(),
        margin: (notional / lev).normalize(),
        leverage,
        method,
        reasons,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn instrument() -> Instrument {
        Instrument {
            symbol: "XRP/USDT:USDT".parse().unwrap(),
            venue_symbol: "XRPUSDT".into(),
            tick_size: dec!(0.0001),
            step_size: dec!(0.1),
            min_quantity: dec!(0.1),
            min_notional: dec!(5),
            contract_size: dec!(1),
            max_leverage: dec!(20),
        }
    }

    fn input<'a>(
        cfg: &'a CapitalConfig,
        inst: &'a Instrument,
        stats: &'a TradeStats,
    ) -> SizingInput<'a> {
        SizingInput {
            config: cfg,
            instrument: inst,
            equity: dec!(10000),
            available: dec!(10000),
            peak_equity: dec!(10000),
            entry_price: dec!(1.25),
            stop_loss: Some(dec!(1.20)),
            leverage: 5,
            open_exposure: dec!(0),
            trade_stats: stats,
            llm: None,
            confidence: dec!(0.8),
        }
    }

    fn open_qty(d: &SizingDecision) -> Decimal {
        match d {
            SizingDecision::Open { quantity, .. } => *quantity,
            SizingDecision::Skip { reason, .. } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn fixed_pct_sizes_from_equity_and_leverage() {
        let cfg = CapitalConfig::default();
        let (inst, stats) = (instrument(), TradeStats::default());
        // 2% of 10000 = 200 margin; x5 = 1000 notional; / 1.25 = 800 XRP.
        assert_eq!(
            open_qty(&size_position(&input(&cfg, &inst, &stats))),
            dec!(800)
        );
    }

    #[test]
    fn volatility_risks_a_fixed_fraction_over_the_stop() {
        let cfg = CapitalConfig {
            sizing_method: SizingMethod::Volatility,
            risk_per_trade_pct: dec!(1),
            ..CapitalConfig::default()
        };
        let (inst, stats) = (instrument(), TradeStats::default());
        // Risk 100 over a 0.05 stop distance = 2000 XRP (margin 500 = 5% < 10% cap).
        let d = size_position(&input(&cfg, &inst, &stats));
        assert_eq!(open_qty(&d), dec!(2000));
        // A wider stop means a smaller position.
        let mut i = input(&cfg, &inst, &stats);
        i.stop_loss = Some(dec!(1.15));
        assert_eq!(open_qty(&size_position(&i)), dec!(1000));
        // Without a stop it falls back to fixed_pct and says so.
        i.stop_loss = None;
        let d = size_position(&i);
        assert_eq!(open_qty(&d), dec!(800));
        if let SizingDecision::Open {
            method, reasons, ..
        } = d
        {
            assert_eq!(method, SizingMethod::FixedPct);
            assert!(reasons.iter().any(|r| r.contains("fell back")));
        }
    }

    #[test]
    fn kelly_uses_own_trades_fractionally_and_falls_back_when_few() {
        let cfg = CapitalConfig {
            sizing_method: SizingMethod::Kelly,
            kelly_min_trades: 10,
            kelly_fraction: dec!(0.25),
            ..CapitalConfig::default()
        };
        let inst = instrument();
        // 6 wins of 20, 4 losses of 10: W = 0.6, R = 2 -> f* = 0.6 - 0.4/2 = 0.4;
        // quarter Kelly = 10% margin (exactly the cap) -> 1000 x 5 / 1.25 = 4000 XRP.
        let pnls = [20, 20, 20, 20, 20, 20, -10, -10, -10, -10].map(Decimal::from);
        let stats = TradeStats::from_pnls(pnls);
        assert_eq!(stats.kelly(), Some(dec!(0.4)));
        assert_eq!(
            open_qty(&size_position(&input(&cfg, &inst, &stats))),
            dec!(4000)
        );
        // A losing record means no trade at all.
        let losing =
            TradeStats::from_pnls([5, -10, -10, -10, 5, -10, -10, -10, 5, -10].map(Decimal::from));
        assert!(matches!(
            size_position(&input(&cfg, &inst, &losing)),
            SizingDecision::Skip { .. }
        ));
        // Too few trades -> fixed_pct.
        let few = TradeStats::from_pnls([dec!(20), dec!(-10)]);
        assert_eq!(
            open_qty(&size_position(&input(&cfg, &inst, &few))),
            dec!(800)
        );
    }

    #[test]
    fn llm_hybrid_blends_and_falls_back() {
        let cfg = CapitalConfig {
            sizing_method: SizingMethod::LlmHybrid,
            llm_weight: dec!(0.5),
            ..CapitalConfig::default()
        };
        let (inst, stats) = (instrument(), TradeStats::default());
        let rec = LlmRecommendation {
            position_size_pct: dec!(6),
            confidence: dec!(1),
        };
        let mut i = input(&cfg, &inst, &stats);
        i.llm = Some(&rec);
        // 0.5 x 6 + 0.5 x 2 = 4% -> 400 margin x 5 / 1.25 = 1600.
        assert_eq!(open_qty(&size_position(&i)), dec!(1600));
        i.llm = None;
        assert_eq!(open_qty(&size_position(&i)), dec!(800));
    }

    #[test]
    fn caps_apply_in_order() {
        let cfg = CapitalConfig {
            base_position_size_pct: dec!(10),
            max_portfolio_exposure: dec!(1),
            ..CapitalConfig::default()
        };
        let (inst, stats) = (instrument(), TradeStats::default());
        let mut i = input(&cfg, &inst, &stats);
        // Without exposure: 10% = 1000 margin x5 = 5000 notional = 4000 XRP.
        assert_eq!(open_qty(&size_position(&i)), dec!(4000));
        // 8000 of 10000 exposure used: room 2000 notional = 1600 XRP.
        i.open_exposure = dec!(8000);
        assert_eq!(open_qty(&size_position(&i)), dec!(1600));
        // Full: skip.
        i.open_exposure = dec!(10000);
        assert!(matches!(size_position(&i), SizingDecision::Skip { .. }));
        // Available margin limits too: 100 margin x 5 = 500 notional = 400 XRP.
        i.open_exposure = dec!(0);
        i.available = dec!(100);
        assert_eq!(open_qty(&size_position(&i)), dec!(400));
    }

    #[test]
    fn drawdown_reduces_size_and_leverage_is_capped() {
        let cfg = CapitalConfig::default();
        let (inst, stats) = (instrument(), TradeStats::default());
        let mut i = input(&cfg, &inst, &stats);
        i.peak_equity = dec!(12000); // 16.7% drawdown >= 10% -> half size
        // 2% of 10000 = 200 x 0.5 = 100 margin x 5 = 500 / 1.25 = 400.
        assert_eq!(open_qty(&size_position(&i)), dec!(400));
        i.peak_equity = dec!(10000);
        i.leverage = 50;
        match size_position(&i) {
            SizingDecision::Open {
                leverage, quantity, ..
            } => {
                assert_eq!(leverage, 20);
                assert_eq!(quantity, dec!(3200));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn minimums_skip_with_reason() {
        let cfg = CapitalConfig::default();
        let (inst, stats) = (instrument(), TradeStats::default());
        let mut i = input(&cfg, &inst, &stats);
        i.equity = dec!(2);
        i.available = dec!(2);
        i.peak_equity = dec!(2);
        match size_position(&i) {
            SizingDecision::Skip { reason, .. } => assert!(reason.contains("minimum"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_validation_names_the_field() {
        let cfg = CapitalConfig {
            base_position_size_pct: dec!(20),
            ..CapitalConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "base_position_size_pct");
        let cfg = CapitalConfig {
            kelly_fraction: dec!(1.5),
            ..CapitalConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "kelly_fraction");
        assert!(CapitalConfig::default().validate().is_ok());
    }
}
