//! Set-based SQL of the scheduler: one due read, one compare-and-set `UPDATE` and one
//! `INSERT .. ON CONFLICT DO NOTHING` per batch, on PostgreSQL and SQLite alike, so a batch of
//! 1,000 subscriptions costs three round trips instead of three thousand.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, Value,
};

use crate::store::{RunStatus, Store, StoreError, SubscriptionStatus, cycle_run, subscription};

/// Rows per PostgreSQL batch statement. sqlx leaves Nagle's algorithm on, and over TLS a message
/// is written as 16 KB records: a message of two or more records waits for the server's delayed
/// ACK (~40 ms) before its last record leaves. Measured: 1,000-row statements (~100 KB) made
/// 100,000 subscriptions take 5.5 s over TLS and 2.4 s without it. 300 rows stay in one record.
const PG_ROWS_PER_STATEMENT: usize = 300;

/// Rows per statement; keeps every statement far below the bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 1_000;

/// What the due read needs of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DueRow {
    pub id: i64,
    pub next_run_at: DateTime<Utc>,
    pub interval_seconds: i64,
}

/// One schedule advance: `next_run_at` moves from `from` to `to`, running `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    pub id: i64,
    pub from: DateTime<Utc>,
    pub slot: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A run still `enqueued`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaleRun {
    pub id: i64,
    pub subscription_id: i64,
    pub slot: DateTime<Utc>,
    pub trigger: crate::store::RunTrigger,
}

fn db(action: &'static str) -> impl FnOnce(sea_orm::DbErr) -> StoreError {
    move |source| StoreError::Db { action, source }
}

/// Placeholder number `n` (1-based) for `backend`. SQLite gets numbered `?NNN` placeholders:
/// bare `?` are numbered in order of appearance in the text, which is not the order values are
/// pushed in when a statement refers to a shared value before the per-row ones.
fn ph(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// Active subscriptions with `next_run_at <= now`, most overdue first, at most `limit`, after the
/// `(next_run_at, id)` of `after` (the last row of the previous page). The order is the
/// `(status, next_run_at, id)` index's, so a page stops after `limit` index entries instead of
/// sorting every due row, and the keyset never returns a row twice within a tick, even while
/// earlier pages are still being written.
pub(crate) async fn due<C: ConnectionTrait>(
    store: &Store<C>,
    now: DateTime<Utc>,
    limit: u64,
    after: Option<(DateTime<Utc>, i64)>,
) -> Result<Vec<DueRow>, StoreError> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    use subscription::Column;
    let mut query = subscription::Entity::find();
    if let Some((next_run_at, id)) = after {
        // A row value, so the `(status, next_run_at, id)` index bounds the scan.
        query = query.filter(
            Expr::tuple([
                Expr::col((subscription::Entity, Column::NextRunAt)),
                Expr::col((subscription::Entity, Column::Id)),
            ])
            .gt(Expr::tuple([Expr::value(next_run_at), Expr::value(id)])),
        );
    }
    let rows: Vec<(i64, DateTime<Utc>, i64)> = query
        .select_only()
        .column(Column::Id)
        .column(Column::NextRunAt)
        .column(Column::IntervalSeconds)
        .filter(Column::Status.eq(SubscriptionStatus::Active))
        .filter(Column::NextRunAt.lte(now))
        .order_by_asc(Column::NextRunAt)
        .order_by_asc(Column::Id)
        .limit(limit)
        .into_tuple()
        .all(store.connection())
        .await
        .map_err(db("reading due subscriptions"))?;
    Ok(rows
        .into_iter()
        .map(|(id, next_run_at, interval_seconds)| DueRow {
            id,
            next_run_at,
            interval_seconds,
        })
        .collect())
}

/// Compare-and-set of many schedules: each row moves only while it is active and its
/// `next_run_at` is still `from`. Returns the ids that moved (the others were advanced, paused
/// or deleted by someone else meanwhile).
pub(crate) async fn advance_many<C: ConnectionTrait>(
    store: &Store<C>,
    advances: &[Advance],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let backend = store.backend();
    let mut moved = Vec::with_capacity(advances.len());
    for chunk in advances.chunks(ROWS_PER_STATEMENT) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4 + 2);
        let mut rows = Vec::with_capacity(chunk.len());
        for a in chunk {
            let base = values.len();
            rows.push(format!(
                "({}, {}, {}, {})",
                ph(backend, base + 1),
                ph(backend, base + 2),
                ph(backend, base + 3),
                ph(backend, base + 4)
            ));
            values.push(a.id.into());
            values.push(a.from.into());
            values.push(a.slot.into());
            values.push(a.to.into());
        }
        let now_ph = ph(backend, values.len() + 1);
        values.push(now.into());
        let status_ph = ph(backend, values.len() + 1);
        values.push(SubscriptionStatus::Active.to_string().into());
        // The explicit id list lets the planner find the rows by primary key instead of
        // joining the whole table against the VALUES list.
        let mut ids = Vec::with_capacity(chunk.len());
        for a in chunk {
            ids.push(ph(backend, values.len() + 1));
            values.push(a.id.into());
        }
        let sql = format!(
            "WITH v(sid, from_at, slot_at, to_at) AS (VALUES {}) \
             UPDATE subscriptions SET next_run_at = v.to_at, last_run_at = v.slot_at, \
             updated_at = {now_ph} FROM v \
             WHERE subscriptions.id IN ({}) AND subscriptions.id = v.sid \
             AND subscriptions.status = {status_ph} \
             AND subscriptions.next_run_at = v.from_at RETURNING id",
            rows.join(", "),
            ids.join(", ")
        );
        let result = store
            .connection()
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(db("advancing due schedules"))?;
        for row in result {
            moved.push(
                row.try_get_by_index::<i64>(0)
                    .map_err(db("reading advanced schedules"))?,
            );
        }
    }
    Ok(moved)
}

/// PostgreSQL: [`advance_many`] and [`insert_runs`] in one statement. The batch travels as three
/// array parameters (`unnest`: ids, `from`, `slot`; the new `next_run_at` is `slot` plus the
/// row's interval, as [`Advance::to`] is), so the statement text and its plan are the same for
/// every batch and a batch of any size costs one round trip. Each row moves only while it is active and its
/// `next_run_at` is still `from`; exactly the rows that moved get a run. Returns the moved ids.
pub(crate) async fn advance_and_record_pg<C: ConnectionTrait>(
    store: &Store<C>,
    advances: &[Advance],
    trigger: crate::store::RunTrigger,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    // Timestamps travel as epoch microseconds and `next_run_at` is computed from the row's
    // interval (as `plan_slot` does): ~45 bytes a row, so a statement of
    // `PG_ROWS_PER_STATEMENT` rows fits in one 16 KB TLS record.
    const SQL: &str = "WITH v(sid, from_at, slot_at) AS (\
        SELECT sid, 'epoch'::timestamptz + f * interval '1 microsecond', \
        'epoch'::timestamptz + s * interval '1 microsecond' \
        FROM unnest($1::text::bigint[], $2::text::bigint[], $3::text::bigint[]) AS u(sid, f, s)), \
        moved AS (UPDATE subscriptions SET \
        next_run_at = v.slot_at + subscriptions.interval_seconds * interval '1 second', \
        last_run_at = v.slot_at, updated_at = $4 FROM v WHERE subscriptions.id = v.sid \
        AND subscriptions.status = $5 AND subscriptions.next_run_at = v.from_at \
        RETURNING subscriptions.id, v.slot_at), \
        ins AS (INSERT INTO cycle_runs \
        (subscription_id, slot, \"trigger\", status, attempt, enqueued_at) \
        SELECT id, slot_at, $6, $7, 0, $4 FROM moved \
        ON CONFLICT (subscription_id, slot) DO NOTHING) \
        SELECT id FROM moved";
    let mut moved = Vec::with_capacity(advances.len());
    for chunk in advances.chunks(PG_ROWS_PER_STATEMENT) {
        let mut ids = String::with_capacity(chunk.len() * 8 + 2);
        let mut from = String::with_capacity(chunk.len() * 18 + 2);
        let mut slot = String::with_capacity(chunk.len() * 18 + 2);
        for (i, a) in chunk.iter().enumerate() {
            let sep = if i == 0 { "{" } else { "," };
            for (out, n) in [
                (&mut ids, a.id),
                (&mut from, a.from.timestamp_micros()),
                (&mut slot, a.slot.timestamp_micros()),
            ] {
                out.push_str(sep);
                out.push_str(&n.to_string());
            }
        }
        for out in [&mut ids, &mut from, &mut slot] {
            out.push('}');
        }
        let values: Vec<Value> = vec![
            ids.into(),
            from.into(),
            slot.into(),
            now.into(),
            SubscriptionStatus::Active.to_string().into(),
            trigger.to_string().into(),
            RunStatus::Enqueued.to_string().into(),
        ];
        let rows = store
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                SQL,
                values,
            ))
            .await
            .map_err(db("advancing due schedules and recording their runs"))?;
        for row in rows {
            moved.push(
                row.try_get_by_index::<i64>(0)
                    .map_err(db("reading advanced schedules"))?,
            );
        }
    }
    Ok(moved)
}

/// Records an `enqueued` run of trigger `scheduled` for each (subscription, slot); a slot that
/// already has a run keeps it. Returns how many rows were written.
pub(crate) async fn insert_runs<C: ConnectionTrait>(
    store: &Store<C>,
    runs: &[(i64, DateTime<Utc>)],
    trigger: crate::store::RunTrigger,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let backend = store.backend();
    let mut written = 0;
    for chunk in runs.chunks(ROWS_PER_STATEMENT) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 2 + 3);
        values.push(trigger.to_string().into());
        values.push(RunStatus::Enqueued.to_string().into());
        values.push(now.into());
        let (t, s, n) = (ph(backend, 1), ph(backend, 2), ph(backend, 3));
        let mut rows = Vec::with_capacity(chunk.len());
        for (id, slot) in chunk {
            let base = values.len();
            rows.push(match backend {
                DbBackend::Postgres => format!(
                    "({}, {}, {t}, {s}, 0, {n})",
                    ph(backend, base + 1),
                    ph(backend, base + 2)
                ),
                // SQLite numbers `?` in order of appearance: repeat the shared values.
                _ => "(?, ?, ?, ?, 0, ?)".to_string(),
            });
            values.push((*id).into());
            values.push((*slot).into());
        }
        let values = if backend == DbBackend::Postgres {
            values
        } else {
            let shared: Vec<Value> = values[..3].to_vec();
            let mut flat = Vec::with_capacity(chunk.len() * 5);
            for pair in values[3..].chunks(2) {
                flat.extend(pair.iter().cloned());
                flat.extend(shared.iter().cloned());
            }
            flat
        };
        let sql = format!(
            "INSERT INTO cycle_runs (subscription_id, slot, \"trigger\", status, attempt, enqueued_at) \
             VALUES {} ON CONFLICT (subscription_id, slot) DO NOTHING",
            rows.join(", ")
        );
        let result = store
            .connection()
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(db("recording enqueued runs"))?;
        written += result.rows_affected();
    }
    Ok(written)
}

/// Runs still `enqueued` that were enqueued at or before `before`, and runs still `running`
/// that started at or before it, with an id above `after_id`, in id order (a keyset page). A
/// running run is in the list because its job may be gone with Redis while its worker died too;
/// re-enqueueing the job of one that is alive is a no-op (the queue's dedupe, then the lock and
/// the finished run).
pub(crate) async fn stale_runs<C: ConnectionTrait>(
    store: &Store<C>,
    before: DateTime<Utc>,
    after_id: i64,
    limit: u64,
) -> Result<Vec<StaleRun>, StoreError> {
    use cycle_run::Column;
    let rows: Vec<(i64, i64, DateTime<Utc>, crate::store::RunTrigger)> = cycle_run::Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::SubscriptionId)
        .column(Column::Slot)
        .column(Column::Trigger)
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(Column::Status.eq(RunStatus::Enqueued))
                        .add(Column::EnqueuedAt.lte(before)),
                )
                .add(
                    Condition::all()
                        .add(Column::Status.eq(RunStatus::Running))
                        .add(
                            Condition::any().add(Column::StartedAt.lte(before)).add(
                                Condition::all()
                                    .add(Column::StartedAt.is_null())
                                    .add(Column::EnqueuedAt.lte(before)),
                            ),
                        ),
                ),
        )
        .filter(Column::Id.gt(after_id))
        .order_by_asc(Column::Id)
        .limit(limit)
        .into_tuple()
        .all(store.connection())
        .await
        .map_err(db("reading runs still enqueued"))?;
    Ok(rows
        .into_iter()
        .map(|(id, subscription_id, slot, trigger)| StaleRun {
            id,
            subscription_id,
            slot,
            trigger,
        })
        .collect())
}
