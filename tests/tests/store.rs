//! Store and schema behaviour on both backends: migrations up/down/up, idempotent run inserts,
//! unique client order ids, the due query, fencing, and exact decimals.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::MigratorTrait;
use serde_json::json;
use tradefleet::domain::{ClientOrderId, OrderStatus, OrderType, PositionSide, Side, Timeframe};
use tradefleet::store::{
    BotKind, InsertRun, NewBot, NewDeadLetter, NewPosition, NewRun, NewSubscription, NewTrade,
    OrderRecord, OrderRole, PositionStatus, RunFilter, RunOutcome, RunStatus, RunTrigger, Store,
    StoreError, SubscriptionFilter, SubscriptionStatus,
};
use tradefleet_migrations::{Migrator, SchemaError, check_current};
use tradefleet_tests::{Backend, TestDb, test_both_backends};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap()
}

/// A subscription of `principal_id` to `bot_id` on `exchange`: BTC/USDT:USDT, 5m and 1h every
/// 5 minutes, leverage 3, first due at `t0()`.
fn new_subscription(principal_id: i64, bot_id: i64, exchange: &str) -> NewSubscription {
    NewSubscription {
        principal_id,
        bot_id,
        exchange: exchange.into(),
        symbol: "BTC/USDT:USDT".parse().unwrap(),
        timeframes: vec![Timeframe::M5, Timeframe::H1],
        interval_seconds: 300,
        leverage: dec!(3),
        strategy_config: json!({}),
        execution_config: json!({}),
        risk_config: json!({"max_risk": "0.01"}),
        testnet: false,
        first_run_at: t0(),
    }
}

/// A principal, a bot and one active PAPER subscription first due at `first_run_at`.
async fn subscription(store: &Store, name: &str, first_run_at: DateTime<Utc>) -> i64 {
    let principal = match store.principal_by_name(name).await.unwrap() {
        Some(p) => p,
        None => store.create_principal(name, t0()).await.unwrap(),
    };
    let bot = store
        .upsert_bot(
            &NewBot {
                name: "trend".into(),
                kind: BotKind::Technical,
                strategy: "ema_cross".into(),
                default_config: json!({"fast": 9, "slow": 21}),
            },
            t0(),
        )
        .await
        .unwrap();
    let new = NewSubscription {
        first_run_at,
        ..new_subscription(principal.id, bot.id, "paper")
    };
    store.create_subscription(&new, t0()).await.unwrap().id
}

/// A run of `subscription_id` for `slot`, enqueued at `t0()`.
async fn new_run(
    store: &Store,
    subscription_id: i64,
    slot: DateTime<Utc>,
    trigger: RunTrigger,
) -> tradefleet::store::cycle_run::Model {
    store
        .insert_run(&NewRun {
            subscription_id,
            slot,
            trigger,
            enqueued_at: t0(),
        })
        .await
        .unwrap()
        .into_run()
}

fn order(subscription_id: i64, coid: &str) -> OrderRecord {
    OrderRecord {
        client_order_id: ClientOrderId::new(coid).unwrap(),
        subscription_id,
        run_id: None,
        exchange: "paper".into(),
        symbol: "BTC/USDT:USDT".parse().unwrap(),
        exchange_order_id: None,
        role: OrderRole::Entry,
        side: Side::Buy,
        order_type: OrderType::Limit,
        quantity: dec!(0.1),
        price: Some(dec!(123456789.123456789)),
        trigger_price: None,
        reduce_only: false,
        status: OrderStatus::Open,
        filled_quantity: Decimal::ZERO,
        average_price: None,
        fee: Some(dec!(0.000000000001)),
        raw: None,
    }
}

async fn migrations_up_down_up(backend: Backend) {
    let db = TestDb::new(backend, false).await.unwrap();
    let total = Migrator::migrations().len();
    match check_current(db.conn()).await {
        Err(SchemaError::Behind { pending, .. }) => assert_eq!(pending, total),
        other => panic!("an empty database must be behind, got {other:?}"),
    }
    Migrator::up(db.conn(), None).await.unwrap();
    check_current(db.conn()).await.unwrap();
    db.store()
        .create_principal("before-down", t0())
        .await
        .unwrap();

    Migrator::down(db.conn(), Some(1)).await.unwrap();
    let err = check_current(db.conn()).await.unwrap_err();
    assert!(
        matches!(err, SchemaError::Behind { pending: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("migrations up"), "{err}");

    Migrator::down(db.conn(), None).await.unwrap();
    assert!(
        db.store().list_principals().await.is_err(),
        "tables must be gone after a full down"
    );
    Migrator::up(db.conn(), None).await.unwrap();
    check_current(db.conn()).await.unwrap();
    assert!(db.store().list_principals().await.unwrap().is_empty());
    let sub = subscription(db.store(), "after-up", t0()).await;
    assert!(sub > 0);

    // A database migrated by a newer build is refused too, naming the unknown migration.
    db.conn()
        .execute_raw(Statement::from_string(
            db.conn().get_database_backend(),
            "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000001_future', 0)",
        ))
        .await
        .unwrap();
    match check_current(db.conn()).await {
        Err(SchemaError::Ahead { unknown }) => {
            assert_eq!(unknown, vec!["m20991231_000001_future".to_string()]);
        }
        other => panic!("expected Ahead, got {other:?}"),
    }
    db.close().await;
}

#[tokio::test]
async fn migrations_up_down_up_postgres() {
    migrations_up_down_up(Backend::Postgres).await;
}

#[tokio::test]
async fn migrations_up_down_up_sqlite() {
    migrations_up_down_up(Backend::Sqlite).await;
}

/// The server-side process id of the connection `store` hands out next.
async fn backend_pid(store: &Store) -> Result<i32, sea_orm::DbErr> {
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no row".into()))?;
    row.try_get::<i32>("", "pid")
}

/// Pooled PostgreSQL connections are pinged before reuse only once they sat idle for
/// `database.ping_idle_after_ms` (`0`: on every checkout). A connection the server dropped
/// while idle for longer is replaced before the caller sees it; one dropped sooner fails its
/// next statement (retryable for a job): the price of not paying a ping round trip per
/// statement.
#[tokio::test]
async fn pooled_connections_are_pinged_only_after_sitting_idle() {
    use tradefleet::config::DatabaseConfig;
    let db = TestDb::postgres().await.unwrap();
    let pool = |ping_idle_after_ms| {
        let config = DatabaseConfig {
            url: db.url().to_string(),
            max_connections: 1,
            ping_idle_after_ms,
            ..DatabaseConfig::default()
        };
        async move { tradefleet::store::connect_config(&config).await }
    };
    let kill = |pid: i32| {
        db.conn().execute_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT pg_terminate_backend({pid})"),
        ))
    };
    let idle = std::time::Duration::from_millis(400);

    for (ping_idle_after_ms, label) in [(100, "idle past the threshold"), (0, "every checkout")] {
        let store = pool(ping_idle_after_ms).await.unwrap();
        let first = backend_pid(&store).await.unwrap();
        kill(first).await.unwrap();
        tokio::time::sleep(idle).await;
        let second = backend_pid(&store)
            .await
            .unwrap_or_else(|e| panic!("pinged ({label}): the dead connection is replaced: {e}"));
        assert_ne!(first, second, "{label}");
        store.close().await.unwrap();
    }

    let store = pool(3_600_000).await.unwrap();
    let first = backend_pid(&store).await.unwrap();
    kill(first).await.unwrap();
    tokio::time::sleep(idle).await;
    let err = store
        .list_subscriptions(&SubscriptionFilter::default())
        .await
        .expect_err("not idle long enough to be pinged: the dropped connection fails");
    assert!(
        err.is_retryable(),
        "a dropped connection is worth a retry: {err}"
    );
    let next = backend_pid(&store).await.unwrap();
    assert_ne!(first, next, "the broken connection left the pool");
    store.close().await.unwrap();
    db.close().await;
}

/// The statement that starts a cycle is planned once per connection, not once per cycle, even
/// for a subscription with a long trade history: PostgreSQL re-plans a prepared statement
/// whose generic plan looks dearer than its custom plans (as `LIMIT $n` over many trades did).
#[tokio::test]
async fn starting_a_cycle_of_a_mature_subscription_uses_the_generic_plan() {
    use tradefleet::config::DatabaseConfig;
    let db = TestDb::postgres().await.unwrap();
    let store = db.store();
    let sub = subscription(store, "ann", t0()).await;
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO trades (subscription_id, symbol, side, quantity, entry_price, \
             exit_price, realized_pnl, fees, status, opened_at, closed_at) \
             SELECT {sub}, 'BTC/USDT:USDT', 'long', 1, 100, 101, g % 7 - 3, 0.1, 'closed', \
             now() - g * interval '1 hour', now() - g * interval '1 hour' + interval '5 minutes' \
             FROM generate_series(1, 5000) AS g; ANALYZE"
        ))
        .await
        .unwrap();
    let one = tradefleet::store::connect_config(&DatabaseConfig {
        url: db.url().to_string(),
        max_connections: 1,
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    let model = one.subscription(sub).await.unwrap();
    let run = new_run(&one, sub, t0(), RunTrigger::Scheduled).await;
    for window in [5, 1_000] {
        for attempt in 1..=12 {
            let inputs = one
                .start_cycle(&tradefleet::store::CycleStart {
                    run_id: run.id,
                    worker_id: "w-1",
                    fencing_token: 1,
                    attempt,
                    now: t0(),
                    subscription: &model,
                    trade_window: window,
                })
                .await
                .unwrap();
            assert_eq!(inputs.trade_pnls_newest_first.len() as u64, window);
        }
    }
    let plans: Vec<(i64, i64)> = one
        .connection()
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
             WHERE statement LIKE 'WITH started AS%' ORDER BY statement",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get::<i64>("", "generic_plans").unwrap(),
                r.try_get::<i64>("", "custom_plans").unwrap(),
            )
        })
        .collect();
    assert_eq!(plans.len(), 2, "one statement per window size: {plans:?}");
    for (generic, custom) in plans {
        assert!(
            custom <= 5 && generic >= 7,
            "re-planned per cycle: {generic} generic, {custom} custom plans"
        );
    }
    one.close().await.unwrap();
    db.close().await;
}

test_both_backends!(
    async fn duplicate_slot_is_a_typed_already_exists(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let new = NewRun {
            subscription_id: sub,
            slot: t0(),
            trigger: RunTrigger::Scheduled,
            enqueued_at: t0(),
        };
        let first = store.insert_run(&new).await.unwrap();
        assert!(first.is_inserted());
        assert_eq!(first.run().status, RunStatus::Enqueued);

        let again = NewRun {
            trigger: RunTrigger::Manual,
            enqueued_at: t0() + Duration::seconds(5),
            ..new.clone()
        };
        match store.insert_run(&again).await.unwrap() {
            InsertRun::AlreadyExists(run) => {
                assert_eq!(run.id, first.run().id);
                assert_eq!(run.trigger, RunTrigger::Scheduled, "the first row is kept");
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        let runs = store
            .list_runs(&RunFilter {
                subscription_id: Some(sub),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);

        // Inside a transaction the duplicate does not abort it (ON CONFLICT DO NOTHING).
        let tx = store.begin().await.unwrap();
        assert!(!tx.insert_run(&again).await.unwrap().is_inserted());
        let next_slot = NewRun {
            slot: t0() + Duration::seconds(300),
            ..new.clone()
        };
        assert!(tx.insert_run(&next_slot).await.unwrap().is_inserted());
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .run_for_slot(sub, t0() + Duration::seconds(300))
                .await
                .unwrap()
                .map(|r| r.subscription_id),
            Some(sub)
        );
    }
);

test_both_backends!(
    async fn the_cycle_context_is_the_subscription_its_bot_and_the_run_of_the_slot(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let other = subscription(store, "bob", t0()).await;
        // No run recorded yet (a manual job): the subscription and its bot only.
        let ctx = store.cycle_context(sub, t0()).await.unwrap();
        assert_eq!(ctx.subscription, store.subscription(sub).await.unwrap());
        assert_eq!(ctx.bot, store.bot(ctx.subscription.bot_id).await.unwrap());
        assert_eq!(ctx.run, None);
        // Runs of other slots and of other subscriptions are not it.
        for (s, slot) in [(sub, t0() + Duration::seconds(300)), (other, t0())] {
            store
                .insert_run(&NewRun {
                    subscription_id: s,
                    slot,
                    trigger: RunTrigger::Scheduled,
                    enqueued_at: t0(),
                })
                .await
                .unwrap();
        }
        assert_eq!(store.cycle_context(sub, t0()).await.unwrap().run, None);
        let run = new_run(store, sub, t0(), RunTrigger::Scheduled).await;
        let ctx = store.cycle_context(sub, t0()).await.unwrap();
        assert_eq!(ctx.run, Some(run));
        assert_eq!(ctx.subscription.id, sub);
        assert!(matches!(
            store.cycle_context(999_999, t0()).await,
            Err(StoreError::NotFound { entity: "subscription", .. })
        ));
    }
);

test_both_backends!(
    async fn starting_a_cycle_marks_its_run_and_reads_the_positions_and_recent_pnls(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let sibling = subscription(store, "ann", t0()).await;
        let stranger = subscription(store, "bob", t0()).await;
        let model = store.subscription(sub).await.unwrap();
        let elsewhere = store
            .create_subscription(
                &new_subscription(model.principal_id, model.bot_id, "bybit"),
                t0(),
            )
            .await
            .unwrap()
            .id;
        let run = new_run(store, sub, t0(), RunTrigger::Scheduled).await;
        let start = |run_id, trade_window| tradefleet::store::CycleStart {
            run_id,
            worker_id: "w-7",
            fencing_token: 12,
            attempt: 2,
            now: t0() + Duration::seconds(3),
            subscription: &model,
            trade_window,
        };

        // Nothing open, nothing traded: the run is marked all the same.
        let empty = store.start_cycle(&start(run.id, 10)).await.unwrap();
        assert!(empty.positions.is_empty());
        assert!(empty.trade_pnls_newest_first.is_empty());
        let marked = store.run(run.id).await.unwrap();
        assert_eq!(marked.status, RunStatus::Running);
        assert_eq!(marked.worker_id.as_deref(), Some("w-7"));
        assert_eq!(marked.fencing_token, Some(12));
        assert_eq!(marked.attempt, 2);
        assert_eq!(marked.started_at, Some(t0() + Duration::seconds(3)));

        // Open positions of the principal on this exchange (its own and a sibling's), not
        // the stranger's, not the other exchange's, not closed ones.
        let open = |subscription_id, quantity| NewPosition {
            subscription_id,
            symbol: "BTC/USDT:USDT".parse().unwrap(),
            side: PositionSide::Long,
            quantity,
            entry_price: dec!(64000.123456789),
            fees: dec!(0.0000001),
            opened_at: t0(),
        };
        let own = store.open_position(&open(sub, dec!(0.01))).await.unwrap();
        let theirs = store.open_position(&open(sibling, dec!(0.5))).await.unwrap();
        store.open_position(&open(stranger, dec!(1))).await.unwrap();
        store.open_position(&open(elsewhere, dec!(2))).await.unwrap();
        let closed = store.open_position(&open(sibling, dec!(3))).await.unwrap();
        store
            .close_position(closed.id, dec!(1), dec!(-5), dec!(0), t0())
            .await
            .unwrap();
        // Closed trades with exact PnLs at distinct times, one still open, one of another
        // subscription.
        let trade = |subscription_id, minutes, realized_pnl, closed: bool| NewTrade {
            subscription_id,
            run_id: None,
            symbol: "BTC/USDT:USDT".parse().unwrap(),
            side: PositionSide::Short,
            quantity: dec!(0.1),
            entry_price: dec!(100),
            exit_price: closed.then_some(dec!(99)),
            realized_pnl,
            fees: dec!(0.01),
            opened_at: t0() + Duration::minutes(minutes),
            closed_at: closed.then_some(t0() + Duration::minutes(minutes + 1)),
        };
        for t in [
            trade(sub, 1, dec!(-1.000000000000000001), true),
            trade(sub, 2, dec!(2.5), true),
            trade(sub, 3, dec!(-0.123456789012345678), true),
            trade(sub, 4, dec!(7), false),
            trade(sibling, 5, dec!(100), true),
        ] {
            store.insert_trade(&t).await.unwrap();
        }

        let inputs = store.start_cycle(&start(run.id, 2)).await.unwrap();
        assert_eq!(
            inputs.positions.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![own.id, theirs.id]
        );
        assert_eq!(inputs.positions[0], own);
        assert_eq!(
            inputs.trade_pnls_newest_first,
            vec![dec!(-0.123456789012345678), dec!(2.5)]
        );
        // The same as the three separate reads.
        assert_eq!(
            inputs.positions,
            store
                .open_positions_of_principal(model.principal_id, "paper")
                .await
                .unwrap()
        );
        assert_eq!(
            store.start_cycle(&start(run.id, 10)).await.unwrap().trade_pnls_newest_first,
            store.recent_closed_trade_pnls(sub, 10).await.unwrap()
        );

        assert!(matches!(
            store.start_cycle(&start(999_999, 10)).await,
            Err(StoreError::NotFound { .. })
        ));
    }
);

test_both_backends!(
    async fn run_lifecycle_is_recorded(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let run = new_run(store, sub, t0(), RunTrigger::Manual).await;
        let started = store
            .start_run(run.id, "w-1", 42, 1, t0() + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(started.status, RunStatus::Running);
        assert_eq!(started.worker_id.as_deref(), Some("w-1"));
        assert_eq!(started.fencing_token, Some(42));

        let not_terminal = RunOutcome {
            status: RunStatus::Running,
            signal: None,
            confidence: None,
            analysis: None,
            error: None,
        };
        assert!(matches!(
            store.finish_run(run.id, &not_terminal, t0()).await,
            Err(StoreError::Invalid { .. })
        ));
        let done = store
            .finish_run(
                run.id,
                &RunOutcome {
                    status: RunStatus::Succeeded,
                    signal: Some("long".into()),
                    confidence: Some(dec!(0.73)),
                    analysis: Some(json!({"ema_fast": "101.5"})),
                    error: None,
                },
                t0() + Duration::seconds(2),
            )
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Succeeded);
        assert_eq!(done.confidence.map(|c| c.get()), Some(dec!(0.73)));
        assert_eq!(done.analysis, Some(json!({"ema_fast": "101.5"})));
        assert!(matches!(
            store.start_run(999_999, "w", 1, 1, t0()).await,
            Err(StoreError::NotFound { .. })
        ));
    }
);

test_both_backends!(
    async fn client_order_ids_are_unique(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let first = store.insert_order(&order(sub, "tfA1"), t0()).await.unwrap();
        let err = store
            .insert_order(&order(sub, "tfA1"), t0())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { entity: "order", ref key } if key == "tfA1"),
            "{err:?}"
        );

        // The upsert updates the venue's view and keeps a known venue id.
        let mut placed = order(sub, "tfA1");
        placed.exchange_order_id = Some("V-1".into());
        store.upsert_order(&placed, t0()).await.unwrap();
        let mut filled = order(sub, "tfA1");
        filled.status = OrderStatus::Filled;
        filled.filled_quantity = dec!(0.1);
        filled.average_price = Some(dec!(100.5));
        let after = store
            .upsert_order(&filled, t0() + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(after.id, first.id);
        assert_eq!(after.status, OrderStatus::Filled);
        assert_eq!(after.filled_quantity.get(), dec!(0.1));
        assert_eq!(after.exchange_order_id.as_deref(), Some("V-1"));
        assert_eq!(after.created_at, first.created_at);
        assert_eq!(store.list_orders(sub, 10).await.unwrap().len(), 1);
        assert!(store.order_by_client_id("nope").await.unwrap().is_none());
    }
);

test_both_backends!(
    async fn due_query_returns_only_due_active_subscriptions(db) {
        let store = db.store();
        let now = t0();
        let due_late = subscription(store, "ann", now - Duration::seconds(600)).await;
        let due_now = subscription(store, "ann", now).await;
        let future = subscription(store, "ann", now + Duration::seconds(1)).await;
        let paused = subscription(store, "bob", now - Duration::seconds(900)).await;
        let stopped = subscription(store, "bob", now - Duration::seconds(900)).await;
        store.pause_subscription(paused, Some("ops"), now).await.unwrap();
        store.stop_subscription(stopped, None, now).await.unwrap();

        let due: Vec<i64> = store
            .due_subscriptions(now, 100)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(due, vec![due_late, due_now], "most overdue first");
        let limited = store.due_subscriptions(now, 1).await.unwrap();
        assert_eq!(limited.len(), 1);
        assert_eq!(limited.first().map(|s| s.id), Some(due_late));
        assert!(!due.contains(&future));

        // Advancing is compare-and-set on next_run_at.
        let from = now - Duration::seconds(600);
        let to = now + Duration::seconds(300);
        assert!(store.advance_schedule(due_late, from, to, now).await.unwrap());
        assert!(!store.advance_schedule(due_late, from, to, now).await.unwrap());
        let advanced = store.subscription(due_late).await.unwrap();
        assert_eq!(advanced.next_run_at, to);
        assert_eq!(advanced.last_run_at, Some(from));

        // A resumed subscription becomes due again.
        let resumed = store.resume_subscription(paused, now, now).await.unwrap();
        assert_eq!(resumed.status, SubscriptionStatus::Active);
        assert_eq!(resumed.status_reason, None);
        let due: Vec<i64> = store
            .due_subscriptions(now, 100)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(due, vec![due_now, paused]);
        let listed = store
            .list_subscriptions(&SubscriptionFilter {
                status: Some(SubscriptionStatus::Stopped),
                ..SubscriptionFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![stopped]);

        // Sub-second instants compare correctly (SQLite compares the stored text).
        let later = now + Duration::hours(1);
        let half = subscription(store, "cat", later + Duration::milliseconds(500)).await;
        let due_at = |at: DateTime<Utc>| async move {
            store
                .due_subscriptions(at, 100)
                .await
                .unwrap()
                .iter()
                .any(|s| s.id == half)
        };
        assert!(!due_at(later).await);
        assert!(!due_at(later + Duration::microseconds(499_999)).await);
        assert!(!due_at(later + Duration::nanoseconds(499_999_999)).await);
        assert!(due_at(later + Duration::milliseconds(500)).await);
        assert!(due_at(later + Duration::nanoseconds(500_000_001)).await);
        assert!(due_at(later + Duration::seconds(1)).await);
    }
);

test_both_backends!(
    async fn stale_fencing_tokens_are_refused(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        store.check_fencing_token(sub, 5).await.unwrap();
        let tx = store.begin().await.unwrap();
        tx.check_fencing_token(sub, 7).await.unwrap();
        tx.commit().await.unwrap();
        store.check_fencing_token(sub, 7).await.unwrap();
        match store.check_fencing_token(sub, 6).await {
            Err(StoreError::StaleFencingToken { token, newest, .. }) => {
                assert_eq!((token, newest), (6, 7));
            }
            other => panic!("expected a stale token, got {other:?}"),
        }
        assert_eq!(
            store.subscription(sub).await.unwrap().last_fencing_token,
            Some(7)
        );
        assert!(matches!(
            store.check_fencing_token(999_999, 1).await,
            Err(StoreError::NotFound { .. })
        ));
    }
);

test_both_backends!(
    async fn decimals_round_trip_exactly(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let values = [
            dec!(0.1),
            dec!(123456789.123456789),
            dec!(0.000000000001),
            dec!(-42.000000000000000001),
        ];
        for (i, v) in values.iter().enumerate() {
            let mut o = order(sub, &format!("dec{i}"));
            o.quantity = *v;
            o.price = Some(*v);
            o.fee = Some(*v);
            store.insert_order(&o, t0()).await.unwrap();
            let back = store
                .order_by_client_id(&format!("dec{i}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back.quantity.get(), *v);
            assert_eq!(back.quantity.get().to_string(), v.to_string());
            assert_eq!(back.price.map(|p| p.get()), Some(*v));
            assert_eq!(back.fee.map(|p| p.get()), Some(*v));

            store
                .insert_equity_snapshot(sub, t0() + Duration::seconds(i as i64), *v, -*v)
                .await
                .unwrap();
        }
        let snaps = store.list_equity_snapshots(sub, 10).await.unwrap();
        let mut equities: Vec<Decimal> = snaps.iter().map(|s| s.equity.get()).collect();
        equities.reverse();
        assert_eq!(equities, values.to_vec());
        assert_eq!(
            store.subscription(sub).await.unwrap().leverage.get(),
            dec!(3)
        );
        if db.backend() == Backend::Sqlite {
            // Stored as text, never as a lossy REAL.
            let row = db
                .conn()
                .query_one_raw(Statement::from_string(
                    db.conn().get_database_backend(),
                    "SELECT typeof(price) AS t FROM orders LIMIT 1",
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.try_get::<String>("", "t").unwrap(), "text");
        }
    }
);

test_both_backends!(
    async fn accounts_and_catalogue(db) {
        let store = db.store();
        let ann = store.create_principal("ann", t0()).await.unwrap();
        assert!(matches!(
            store.create_principal("ann", t0()).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.create_principal("  ", t0()).await,
            Err(StoreError::Invalid { .. })
        ));
        assert_eq!(store.principal(ann.id).await.unwrap().name, "ann");
        assert!(matches!(
            store.principal(ann.id + 1000).await,
            Err(StoreError::NotFound { .. })
        ));
        let v1 = NewBot {
            name: "oracle".into(),
            kind: BotKind::Llm,
            strategy: "llm_hybrid".into(),
            default_config: json!({"model": "a"}),
        };
        let first = store.upsert_bot(&v1, t0()).await.unwrap();
        let v2 = NewBot {
            kind: BotKind::Ml,
            default_config: json!({"model": "b"}),
            ..v1.clone()
        };
        let second = store
            .upsert_bot(&v2, t0() + Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(second.id, first.id);
        assert_eq!(second.kind, BotKind::Ml);
        assert_eq!(second.default_config, json!({"model": "b"}));
        assert_eq!(store.list_bots().await.unwrap().len(), 1);

        // A subscription must name a known venue and existing rows.
        let bad_venue = NewSubscription {
            timeframes: vec![Timeframe::H1],
            interval_seconds: 60,
            ..new_subscription(ann.id, first.id, "mtgox")
        };
        assert!(matches!(
            store.create_subscription(&bad_venue, t0()).await,
            Err(StoreError::Invalid { .. })
        ));
        let missing_bot = NewSubscription {
            exchange: "paper".into(),
            bot_id: first.id + 1000,
            ..bad_venue.clone()
        };
        assert!(matches!(
            store.create_subscription(&missing_bot, t0()).await,
            Err(StoreError::MissingReference { .. })
        ));
        let ok = NewSubscription {
            exchange: "PAPER".into(),
            ..bad_venue
        };
        let sub = store.create_subscription(&ok, t0()).await.unwrap();
        assert_eq!(sub.exchange, "paper");
        assert_eq!(sub.timeframes.0, vec![Timeframe::H1]);
    }
);

test_both_backends!(
    async fn delete_cascades_to_history(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let keep = subscription(store, "ann", t0()).await;
        let run = new_run(store, sub, t0(), RunTrigger::Scheduled).await;
        let mut o = order(sub, "tfDel1");
        o.run_id = Some(run.id);
        store.insert_order(&o, t0()).await.unwrap();
        assert_eq!(store.orders_for_run(run.id).await.unwrap().len(), 1);
        store.delete_subscription(sub).await.unwrap();
        assert!(matches!(
            store.delete_subscription(sub).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(store.order_by_client_id("tfDel1").await.unwrap().is_none());
        assert!(matches!(store.run(run.id).await, Err(StoreError::NotFound { .. })));
        assert_eq!(store.subscription(keep).await.unwrap().id, keep);
    }
);

test_both_backends!(
    async fn trades_positions_and_dead_letters(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let pos = store
            .open_position(&NewPosition {
                subscription_id: sub,
                symbol: "BTC/USDT:USDT".parse().unwrap(),
                side: PositionSide::Long,
                quantity: dec!(0.5),
                entry_price: dec!(100),
                fees: dec!(0.02),
                opened_at: t0(),
            })
            .await
            .unwrap();
        assert_eq!(
            store
                .list_positions(sub, Some(PositionStatus::Open))
                .await
                .unwrap()
                .len(),
            1
        );
        let closed = store
            .close_position(pos.id, dec!(110), dec!(4.96), dec!(0.04), t0())
            .await
            .unwrap();
        assert_eq!(closed.status, PositionStatus::Closed);
        assert_eq!(closed.realized_pnl.get(), dec!(4.96));
        assert!(matches!(
            store
                .close_position(pos.id, dec!(1), dec!(0), dec!(0), t0())
                .await,
            Err(StoreError::Invalid { .. })
        ));

        for (i, pnl) in [dec!(1.5), dec!(-0.25)].into_iter().enumerate() {
            store
                .insert_trade(&NewTrade {
                    subscription_id: sub,
                    run_id: None,
                    symbol: "BTC/USDT:USDT".parse().unwrap(),
                    side: PositionSide::Short,
                    quantity: dec!(1),
                    entry_price: dec!(100),
                    exit_price: Some(dec!(98.5)),
                    realized_pnl: pnl,
                    fees: dec!(0.1),
                    opened_at: t0() + Duration::minutes(i as i64),
                    closed_at: Some(t0() + Duration::minutes(i as i64 + 1)),
                })
                .await
                .unwrap();
        }
        let trades = store.list_trades(sub).await.unwrap();
        let pnls: Vec<Decimal> = trades.iter().map(|t| t.realized_pnl.get()).collect();
        assert_eq!(pnls, vec![dec!(1.5), dec!(-0.25)]);
        assert!(trades.iter().all(|t| t.status == PositionStatus::Closed));
        // The cycle's window: closed trades only, newest first, at most `limit`.
        store
            .insert_trade(&NewTrade {
                subscription_id: sub,
                run_id: None,
                symbol: "BTC/USDT:USDT".parse().unwrap(),
                side: PositionSide::Long,
                quantity: dec!(1),
                entry_price: dec!(100),
                exit_price: None,
                realized_pnl: dec!(0),
                fees: dec!(0.1),
                opened_at: t0() + Duration::minutes(5),
                closed_at: None,
            })
            .await
            .unwrap();
        let recent = |limit| async move {
            store
                .recent_closed_trades(sub, limit)
                .await
                .unwrap()
                .iter()
                .map(|t| t.realized_pnl.get())
                .collect::<Vec<Decimal>>()
        };
        assert_eq!(recent(10).await, vec![dec!(-0.25), dec!(1.5)]);
        assert_eq!(recent(1).await, vec![dec!(-0.25)]);

        let dl = store
            .insert_dead_letter(
                &NewDeadLetter {
                    queue: "tf:cycles".into(),
                    job_id: Some("01J".into()),
                    payload: json!({"subscription_id": sub}).to_string(),
                    error: "exchange rejected: margin".into(),
                    attempts: 5,
                },
                t0(),
            )
            .await
            .unwrap();
        assert_eq!(store.list_dead_letters(Some("tf:cycles"), 10).await.unwrap().len(), 1);
        assert!(store.list_dead_letters(Some("other"), 10).await.unwrap().is_empty());
        assert_eq!(store.dead_letter(dl.id).await.unwrap().attempts, 5);
        store.delete_dead_letter(dl.id).await.unwrap();
        assert!(matches!(
            store.delete_dead_letter(dl.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(store.list_dead_letters(None, 10).await.unwrap().is_empty());
    }
);

fn sealed(tag: u8, with_passphrase: bool) -> tradefleet::store::SealedCredentials {
    use tradefleet::store::{SealedCredentials, SealedSecret};
    let secret = |n: u8| SealedSecret {
        ciphertext: vec![tag, n, 0, 255],
        nonce: vec![n; 12],
        key_id: format!("k{tag}"),
    };
    SealedCredentials {
        api_key: secret(1),
        api_secret: secret(2),
        passphrase: with_passphrase.then(|| secret(3)),
    }
}

test_both_backends!(
    async fn credentials_are_stored_sealed_and_unique_per_account(db) {
        use tradefleet::store::CredentialKey;
        let store = db.store();
        let ann = store.create_principal("ann", t0()).await.unwrap();
        let key = CredentialKey {
            principal_id: ann.id,
            exchange: "OKX".into(),
            testnet: true,
            label: "main".into(),
        };
        let row = store
            .insert_credential(&key, &sealed(1, true), t0())
            .await
            .unwrap();
        assert_eq!(row.exchange, "okx");
        assert_eq!(row.sealed(), sealed(1, true));
        assert!(!format!("{row:?}").contains("255"), "no ciphertext in Debug");
        assert!(matches!(
            store.insert_credential(&key, &sealed(2, false), t0()).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        let live = CredentialKey {
            testnet: false,
            ..key.clone()
        };
        store
            .insert_credential(&live, &sealed(3, false), t0())
            .await
            .unwrap();
        assert_eq!(store.list_credentials(ann.id).await.unwrap().len(), 2);

        let rotated = store
            .rotate_credential(row.id, &sealed(4, false), t0() + Duration::days(1))
            .await
            .unwrap();
        assert_eq!(rotated.sealed(), sealed(4, false));
        assert_eq!(rotated.rotated_at, Some(t0() + Duration::days(1)));
        assert_eq!(
            store.credential(&key).await.unwrap().map(|c| c.id),
            Some(row.id)
        );
        store.delete_credential(row.id).await.unwrap();
        assert!(store.credential(&key).await.unwrap().is_none());
        assert!(matches!(
            store.insert_credential(
                &CredentialKey {
                    exchange: "mtgox".into(),
                    ..key
                },
                &sealed(5, false),
                t0()
            )
            .await,
            Err(StoreError::Invalid { .. })
        ));
    }
);

test_both_backends!(
    async fn a_stale_worker_waiting_on_the_fence_is_refused_after_the_newer_commit(db) {
        let store = db.store();
        let sub = subscription(store, "ann", t0()).await;
        let newer = store.begin().await.unwrap();
        newer.check_fencing_token(sub, 8).await.unwrap();
        // The older worker's commit starts while the newer one holds the row.
        let stale_store = store.clone();
        let stale = tokio::spawn(async move {
            let tx = stale_store.begin().await?;
            let checked = tx.check_fencing_token(sub, 7).await;
            tx.rollback().await?;
            checked
        });
        newer.commit().await.unwrap();
        match stale.await.unwrap() {
            Err(StoreError::StaleFencingToken { token: 7, newest: 8, .. }) => {}
            other => panic!("expected the older token to be refused, got {other:?}"),
        }
    }
);
