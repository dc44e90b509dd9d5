//! Cycle runs: one row per (subscription, slot). Inserting a slot twice is not an error but a
//! typed [`InsertRun::AlreadyExists`], which is what makes enqueueing and running idempotent.

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TryInsertResult,
};

use super::entities::cycle_run::{self, Column};
use super::types::{DbDecimal, RunStatus, RunTrigger};
use super::{Store, StoreError, db_err, insert_err};

/// A run to record as `enqueued`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub subscription_id: i64,
    /// The scheduled instant this run is for (stored to the microsecond).
    pub slot: DateTime<Utc>,
    pub trigger: RunTrigger,
    pub enqueued_at: DateTime<Utc>,
}

/// The outcome of [`Store::insert_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertRun {
    /// A new row was written.
    Inserted(cycle_run::Model),
    /// The (subscription, slot) already had a run; this is it, unchanged.
    AlreadyExists(cycle_run::Model),
}

impl InsertRun {
    pub fn run(&self) -> &cycle_run::Model {
        match self {
            InsertRun::Inserted(r) | InsertRun::AlreadyExists(r) => r,
        }
    }
    pub fn into_run(self) -> cycle_run::Model {
        match self {
            InsertRun::Inserted(r) | InsertRun::AlreadyExists(r) => r,
        }
    }
    pub fn is_inserted(&self) -> bool {
        matches!(self, InsertRun::Inserted(_))
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// A terminal status (`succeeded`, `failed`, `skipped`, `dead_lettered`).
    pub status: RunStatus,
    pub signal: Option<String>,
    pub confidence: Option<Decimal>,
    pub analysis: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// Which runs to list, newest slot first; `None` fields match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    pub subscription_id: Option<i64>,
    pub status: Option<RunStatus>,
    pub limit: u64,
}

impl Default for RunFilter {
    fn default() -> Self {
        Self {
            subscription_id: None,
            status: None,
            limit: 100,
        }
    }
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        entity: "cycle run",
        key: id.to_string(),
    }
}

impl<C: ConnectionTrait> Store<C> {
    /// Records the run of (subscription, slot), or returns the one already recorded. Uses
    /// `ON CONFLICT DO NOTHING`, so it is safe inside a transaction on PostgreSQL too.
    pub async fn insert_run(&self, new: &NewRun) -> Result<InsertRun, StoreError> {
        let slot = new.slot.trunc_subsecs(6);
        let key = format!("({}, {})", new.subscription_id, slot.to_rfc3339());
        let result = cycle_run::Entity::insert(cycle_run::ActiveModel {
            subscription_id: Set(new.subscription_id),
            slot: Set(slot),
            trigger: Set(new.trigger),
            status: Set(RunStatus::Enqueued),
            attempt: Set(0),
            enqueued_at: Set(new.enqueued_at),
            ..Default::default()
        })
        .on_conflict_do_nothing_on([Column::SubscriptionId, Column::Slot])
        .exec_without_returning(&self.conn)
        .await
        .map_err(insert_err(
            "cycle run",
            key.clone(),
            "inserting a cycle run",
        ))?;
        let inserted = matches!(result, TryInsertResult::Inserted(n) if n > 0);
        let run =
            self.run_for_slot(new.subscription_id, slot)
                .await?
                .ok_or(StoreError::NotFound {
                    entity: "cycle run",
                    key,
                })?;
        Ok(if inserted {
            InsertRun::Inserted(run)
        } else {
            InsertRun::AlreadyExists(run)
        })
    }

    pub async fn run(&self, id: i64) -> Result<cycle_run::Model, StoreError> {
        cycle_run::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(db_err("reading a cycle run"))?
            .ok_or_else(|| not_found(id))
    }

    pub async fn run_for_slot(
        &self,
        subscription_id: i64,
        slot: DateTime<Utc>,
    ) -> Result<Option<cycle_run::Model>, StoreError> {
        cycle_run::Entity::find()
            .filter(Column::SubscriptionId.eq(subscription_id))
            .filter(Column::Slot.eq(slot.trunc_subsecs(6)))
            .one(&self.conn)
            .await
            .map_err(db_err("reading the run of a slot"))
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<cycle_run::Model>, StoreError> {
        let mut q = cycle_run::Entity::find();
        if let Some(s) = filter.subscription_id {
            q = q.filter(Column::SubscriptionId.eq(s));
        }
        if let Some(st) = filter.status {
            q = q.filter(Column::Status.eq(st));
        }
        q.order_by_desc(Column::Slot)
            .order_by_desc(Column::Id)
            .limit(filter.limit)
            .all(&self.conn)
            .await
            .map_err(db_err("listing cycle runs"))
    }

    /// Marks the run `running` by `worker_id` under `fencing_token`, as attempt `attempt`.
    pub async fn start_run(
        &self,
        id: i64,
        worker_id: &str,
        fencing_token: i64,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> Result<cycle_run::Model, StoreError> {
        self.mark_running(id, worker_id, fencing_token, attempt, now)
            .await?;
        self.run(id).await
    }

    /// [`Store::start_run`] without reading the row back (one statement).
    pub async fn mark_running(
        &self,
        id: i64,
        worker_id: &str,
        fencing_token: i64,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let res = cycle_run::Entity::update_many()
            .col_expr(Column::Status, Expr::value(RunStatus::Running))
            .col_expr(Column::WorkerId, Expr::value(Some(worker_id.to_string())))
            .col_expr(Column::FencingToken, Expr::value(Some(fencing_token)))
            .col_expr(Column::Attempt, Expr::value(attempt))
            .col_expr(Column::StartedAt, Expr::value(Some(now)))
            .filter(Column::Id.eq(id))
            .exec(&self.conn)
            .await
            .map_err(db_err("starting a cycle run"))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Records how the run ended. `Invalid` unless `outcome.status` is terminal.
    pub async fn finish_run(
        &self,
        id: i64,
        outcome: &RunOutcome,
        now: DateTime<Utc>,
    ) -> Result<cycle_run::Model, StoreError> {
        self.close_run(id, outcome, now).await?;
        self.run(id).await
    }

    /// [`Store::finish_run`] without reading the row back (one statement).
    pub async fn close_run(
        &self,
        id: i64,
        outcome: &RunOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !outcome.status.is_terminal() {
            return Err(StoreError::Invalid {
                what: "run outcome",
                reason: format!("status {} is not terminal", outcome.status),
            });
        }
        let res = cycle_run::Entity::update_many()
            .col_expr(Column::Status, Expr::value(outcome.status))
            .col_expr(Column::Signal, Expr::value(outcome.signal.clone()))
            .col_expr(
                Column::Confidence,
                Expr::value(outcome.confidence.map(DbDecimal)),
            )
            .col_expr(Column::Analysis, Expr::value(outcome.analysis.clone()))
            .col_expr(Column::Error, Expr::value(outcome.error.clone()))
            .col_expr(Column::FinishedAt, Expr::value(Some(now)))
            .filter(Column::Id.eq(id))
            .exec(&self.conn)
            .await
            .map_err(db_err("finishing a cycle run"))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Sets only the status (e.g. back to `enqueued` for a retry).
    pub async fn set_run_status(
        &self,
        id: i64,
        status: RunStatus,
    ) -> Result<cycle_run::Model, StoreError> {
        let res = cycle_run::Entity::update_many()
            .col_expr(Column::Status, Expr::value(status))
            .filter(Column::Id.eq(id))
            .exec(&self.conn)
            .await
            .map_err(db_err("setting a cycle run's status"))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        self.run(id).await
    }

    /// PostgreSQL only: the whole record of a cycle that wrote nothing but its run, its equity
    /// snapshot and its equity marks, as one statement (one round trip, atomic without a
    /// transaction). The fencing check comes first, as in [`Store::check_fencing_token`]: with a
    /// stale `fencing_token` nothing is written and the error says so.
    pub async fn finish_run_fenced(&self, finish: &FencedFinish<'_>) -> Result<(), StoreError> {
        use sea_orm::{DbBackend, Statement, Value};
        const SQL: &str = "WITH fence AS (UPDATE subscriptions SET last_fencing_token = $1, \
            peak_equity = COALESCE($2, peak_equity), \
            day_start_equity = COALESCE($3, day_start_equity), \
            day_start_at = COALESCE($4, day_start_at) \
            WHERE id = $5 AND (last_fencing_token IS NULL OR last_fencing_token <= $1) \
            AND EXISTS (SELECT 1 FROM cycle_runs WHERE id = $14) RETURNING id), \
            snap AS (INSERT INTO equity_snapshots (subscription_id, \"time\", equity, unrealized_pnl) \
            SELECT id, $6, $7, $8 FROM fence WHERE $7 IS NOT NULL), \
            run AS (UPDATE cycle_runs SET status = $9, signal = $10, confidence = $11, \
            analysis = $12, error = $13, finished_at = $6 \
            WHERE id = $14 AND EXISTS (SELECT 1 FROM fence) RETURNING id) \
            SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM run)";
        if self.backend() != DbBackend::Postgres {
            return Err(StoreError::Invalid {
                what: "one-statement record",
                reason: "it is PostgreSQL SQL".into(),
            });
        }
        let outcome = finish.outcome;
        if !outcome.status.is_terminal() {
            return Err(StoreError::Invalid {
                what: "run outcome",
                reason: format!("status {} is not terminal", outcome.status),
            });
        }
        let marks = finish.marks;
        let dec = Value::Decimal;
        let values: Vec<Value> = vec![
            finish.fencing_token.into(),
            dec(marks.map(|m| m.peak)),
            dec(marks.map(|m| m.day_start_equity)),
            marks.map(|m| m.day_start_at).into(),
            finish.subscription_id.into(),
            finish.now.into(),
            dec(finish.snapshot.map(|(equity, _)| equity)),
            dec(finish.snapshot.map(|(_, upnl)| upnl)),
            outcome.status.to_string().into(),
            outcome.signal.clone().into(),
            dec(outcome.confidence),
            Value::Json(outcome.analysis.clone().map(Box::new)),
            outcome.error.clone().into(),
            finish.run_id.into(),
        ];
        let row = self
            .conn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                SQL,
                values,
            ))
            .await
            .map_err(db_err("recording a cycle in one statement"))?
            .ok_or_else(|| StoreError::Invalid {
                what: "one-statement record",
                reason: "returned no row".into(),
            })?;
        let fenced: i64 = row
            .try_get_by_index(0)
            .map_err(db_err("reading the fencing check"))?;
        let finished: i64 = row
            .try_get_by_index(1)
            .map_err(db_err("reading the finished run"))?;
        if fenced == 0 || finished == 0 {
            // Nothing was written. Say why: the run is gone, or the token is stale.
            self.run(finish.run_id).await?;
            let newest = self
                .subscription(finish.subscription_id)
                .await?
                .last_fencing_token
                .unwrap_or_default();
            return Err(StoreError::StaleFencingToken {
                subscription_id: finish.subscription_id,
                token: finish.fencing_token,
                newest,
            });
        }
        Ok(())
    }

    /// What a cycle does once it holds its subscription's lock: marks the run `running` (as
    /// [`Store::mark_running`]) and reads the inputs of its state: the open positions of the
    /// subscription's principal on its exchange (as [`Store::open_positions_of_principal`])
    /// and the PnL of its newest `trade_window` closed trades, newest first (as
    /// [`Store::recent_closed_trade_pnls`]). One statement on PostgreSQL, three on SQLite.
    pub async fn start_cycle(&self, start: &CycleStart<'_>) -> Result<CycleInputs, StoreError> {
        use sea_orm::{DbBackend, FromQueryResult, Statement, Value};

        use super::entities::position;
        let sub = start.subscription;
        if self.backend() != DbBackend::Postgres {
            self.mark_running(
                start.run_id,
                start.worker_id,
                start.fencing_token,
                start.attempt,
                start.now,
            )
            .await?;
            let positions = self
                .open_positions_of_principal(sub.principal_id, &sub.exchange)
                .await?;
            let trade_pnls_newest_first = self
                .recent_closed_trade_pnls(sub.id, start.trade_window)
                .await?;
            return Ok(CycleInputs {
                positions,
                trade_pnls_newest_first,
            });
        }
        // The data-modifying CTE runs to completion whether or not the SELECT reads it. One
        // row at least (the pnl list LEFT JOIN the positions), position columns NULL when the
        // principal has none open. The trade window is a literal, not a parameter: with
        // `LIMIT $n` the generic plan is costed for a tenth of the subscription's trades, so
        // PostgreSQL keeps re-planning the statement for every cycle of a subscription with a
        // long history (one statement text per window size, each prepared once per connection).
        let sql = format!(
            "WITH started AS (UPDATE cycle_runs SET status = 'running', \
             worker_id = $2, fencing_token = $3, attempt = $4, started_at = $5 \
             WHERE id = $1 RETURNING id), \
             pnls AS (SELECT string_agg(t.realized_pnl::text, ',' ORDER BY t.opened_at DESC, \
             t.id DESC) AS list FROM (SELECT realized_pnl, opened_at, id FROM trades \
             WHERE subscription_id = $6 AND status = 'closed' \
             ORDER BY opened_at DESC, id DESC LIMIT {}) t) \
             SELECT (SELECT count(*) FROM started) AS tf_started, pnls.list AS tf_pnls, p.* \
             FROM pnls LEFT JOIN positions p ON p.status = 'open' AND p.subscription_id IN \
             (SELECT id FROM subscriptions WHERE principal_id = $7 AND exchange = $8) \
             ORDER BY p.id",
            start.trade_window
        );
        let values: Vec<Value> = vec![
            start.run_id.into(),
            start.worker_id.into(),
            start.fencing_token.into(),
            start.attempt.into(),
            start.now.into(),
            sub.id.into(),
            sub.principal_id.into(),
            sub.exchange.as_str().into(),
        ];
        const READ: &str = "starting a cycle run and reading its state";
        let rows = self
            .conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(db_err(READ))?;
        let first = rows.first().ok_or_else(|| StoreError::Invalid {
            what: "cycle start",
            reason: "the statement returned no row".into(),
        })?;
        let started: i64 = first.try_get("", "tf_started").map_err(db_err(READ))?;
        if started == 0 {
            return Err(not_found(start.run_id));
        }
        let list: Option<String> = first.try_get("", "tf_pnls").map_err(db_err(READ))?;
        let trade_pnls_newest_first = list
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                Decimal::from_str_exact(p).map_err(|e| StoreError::Invalid {
                    what: "trade pnl",
                    reason: format!("{p:?}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut positions = Vec::new();
        for row in &rows {
            if let Some(p) =
                position::Model::from_query_result_optional(row, "").map_err(db_err(READ))?
            {
                positions.push(p);
            }
        }
        Ok(CycleInputs {
            positions,
            trade_pnls_newest_first,
        })
    }
}

/// What [`Store::start_cycle`] marks and reads.
#[derive(Debug, Clone)]
pub struct CycleStart<'a> {
    pub run_id: i64,
    pub worker_id: &'a str,
    pub fencing_token: i64,
    pub attempt: i32,
    pub now: DateTime<Utc>,
    pub subscription: &'a super::entities::subscription::Model,
    /// How many of the newest closed trades' PnLs to read.
    pub trade_window: u64,
}

/// What [`Store::start_cycle`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleInputs {
    /// The principal's open positions on the subscription's exchange, by id.
    pub positions: Vec<super::entities::position::Model>,
    pub trade_pnls_newest_first: Vec<Decimal>,
}

/// What [`Store::finish_run_fenced`] writes.
#[derive(Debug, Clone)]
pub struct FencedFinish<'a> {
    pub run_id: i64,
    pub subscription_id: i64,
    pub fencing_token: i64,
    pub now: DateTime<Utc>,
    /// Equity and unrealized PnL of the snapshot, if the cycle read a balance.
    pub snapshot: Option<(Decimal, Decimal)>,
    /// The subscription's new equity marks; `None` keeps them.
    pub marks: Option<&'a super::EquityMarks>,
    pub outcome: &'a RunOutcome,
}
