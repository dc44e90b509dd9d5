//! Metric labels are bounded: 10,000 subscriptions make exactly as many series as 10. Every
//! subscription trades on its own PAPER account through the instrumented exchange (balance,
//! positions, a market entry and a stop-loss with its own client order ids, a rejected
//! reduce-only) and goes through the job, lock, lateness and stage metrics the worker records.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use rust_decimal_macros::dec;
use tradefleet::bot::order_ids::{OrderRole, client_order_id};
use tradefleet::clock::SystemClock;
use tradefleet::domain::{OrderRequest, OrderType, Side, Symbol};
use tradefleet::exchange::Exchange;
use tradefleet::exchange::instrumented::Instrumented;
use tradefleet::exchange::paper::{MemoryPaperStore, PaperExchange, PaperSettings, ReplaySource};
use tradefleet::queue::Trigger;
use tradefleet::telemetry::{CycleStage, JobEvent, LockEvent, Metrics};

/// Series per metric family in the rendered registry (process metrics excluded: not ours).
fn series(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() || line.starts_with("process_") {
            continue;
        }
        let name = line
            .split(['{', ' '])
            .next()
            .unwrap()
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        *out.entry(name.to_string()).or_insert(0) += 1;
    }
    out
}

/// The value of the sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn drive(subscriptions: i64) -> String {
    let metrics = Arc::new(Metrics::new().unwrap());
    let clock = Arc::new(SystemClock);
    let source = ReplaySource::bundled().unwrap();
    let store = Arc::new(MemoryPaperStore::default());
    let symbol: Symbol = "XRP/USDT:USDT".parse().unwrap();
    let slot = Utc::now().duration_trunc(TimeDelta::minutes(5)).unwrap();
    for i in 0..subscriptions {
        // Spread over a wide id range, as in a real fleet.
        let sub = 1_000 + i * 7_919;
        let paper = PaperExchange::with_parts(
            PaperSettings {
                account: format!("sub-{sub}"),
                ..PaperSettings::default()
            },
            clock.clone(),
            source.clone(),
            store.clone(),
        )
        .unwrap();
        let ex = Instrumented::new(Arc::new(paper), metrics.clone());
        metrics.job(JobEvent::Started, Trigger::Scheduled);
        metrics.lock(LockEvent::Acquired);
        metrics.schedule_lateness(slot, Utc::now());
        let balance = ex.balance("USDT").await.unwrap();
        assert!(balance.equity > dec!(0));
        ex.positions(Some(&symbol)).await.unwrap();
        let price = ex.ticker(&symbol).await.unwrap().last;
        let order = |role, order_type, side, trigger_price, reduce_only| OrderRequest {
            symbol: symbol.clone(),
            client_order_id: client_order_id(sub, slot, role, 0).unwrap(),
            side,
            order_type,
            quantity: dec!(10),
            price: None,
            trigger_price,
            reduce_only,
        };
        let entry = order(OrderRole::Entry, OrderType::Market, Side::Buy, None, false);
        ex.place_order(&entry).await.unwrap();
        let stop = order(
            OrderRole::StopLoss,
            OrderType::StopMarket,
            Side::Sell,
            Some((price * dec!(0.9)).round_dp(4)),
            true,
        );
        ex.place_order(&stop).await.unwrap();
        // Closing more than is open on the wrong side: refused, counted by error kind.
        let wrong = order(OrderRole::Close, OrderType::Market, Side::Buy, None, true);
        assert!(ex.place_order(&wrong).await.is_err());
        metrics.cycle_stage("paper", CycleStage::Total, Duration::from_millis(3));
        metrics.job(JobEvent::Succeeded, Trigger::Scheduled);
    }
    metrics.render().unwrap()
}

#[tokio::test]
async fn ten_thousand_subscriptions_make_no_more_series_than_ten() {
    let few = drive(10).await;
    let many = drive(10_000).await;

    // The events were all counted...
    for (text, n) in [(&few, 10.0), (&many, 10_000.0)] {
        assert_eq!(
            sample(
                text,
                "tradefleet_orders_total{outcome=\"placed\",role=\"entry\",venue=\"paper\"}"
            ),
            n
        );
        assert_eq!(
            sample(
                text,
                "tradefleet_orders_total{outcome=\"placed\",role=\"stop_loss\",venue=\"paper\"}"
            ),
            n
        );
        assert_eq!(
            sample(
                text,
                "tradefleet_exchange_requests_total{endpoint=\"balance\",outcome=\"ok\",venue=\"paper\"}"
            ),
            n
        );
        assert_eq!(
            sample(
                text,
                "tradefleet_jobs_succeeded_total{trigger=\"scheduled\"}"
            ),
            n
        );
        assert_eq!(sample(text, "tradefleet_lock_acquired_total"), n);
    }
    // ...into exactly the same series.
    let (a, b) = (series(&few), series(&many));
    assert_eq!(
        a, b,
        "series per family differ between 10 and 10,000 subscriptions"
    );
    let total: usize = b.values().sum();
    assert!(total > 100, "pre-initialised series are rendered: {total}");
    assert!(total < 10_000, "{total} series");
    // No account name or subscription id leaks into a label.
    assert!(!many.contains("sub-"));
    assert!(!many.contains(&format!("\"{}\"", 1_000 + 9_999 * 7_919)));
}
