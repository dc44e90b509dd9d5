//! Subscriptions: create, read, pause/resume/stop/delete, the scheduler's due query and schedule
//! advance, and the fencing check a worker's result transaction runs first.

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::subscription::{self, Column};
use super::types::{DbDecimal, SubscriptionStatus, TimeframeList};
use super::{Store, StoreError, db_err, insert_err};
use crate::domain::{Symbol, Timeframe};

/// A subscription to create. It starts `active`, first due at `first_run_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub principal_id: i64,
    pub bot_id: i64,
    /// Venue name from the registry (`paper`, `binance`, ...).
    pub exchange: String,
    pub symbol: Symbol,
    pub timeframes: Vec<Timeframe>,
    pub interval_seconds: i64,
    pub leverage: Decimal,
    pub strategy_config: serde_json::Value,
    pub execution_config: serde_json::Value,
    pub risk_config: serde_json::Value,
    pub testnet: bool,
    pub first_run_at: DateTime<Utc>,
}

/// Which subscriptions to list; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    pub principal_id: Option<i64>,
    pub status: Option<SubscriptionStatus>,
}

fn invalid(what: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        what,
        reason: reason.into(),
    }
}

impl NewSubscription {
    fn validate(&self) -> Result<String, StoreError> {
        let venue = crate::exchange::find_venue(&self.exchange)
            .map_err(|e| invalid("subscription exchange", e.to_string()))?;
        if self.timeframes.is_empty() {
            return Err(invalid("subscription timeframes", "at least one is needed"));
        }
        if self.interval_seconds <= 0 {
            return Err(invalid(
                "subscription interval_seconds",
                format!("{} is not positive", self.interval_seconds),
            ));
        }
        if self.leverage <= Decimal::ZERO {
            return Err(invalid(
                "subscription leverage",
                format!("{} is not positive", self.leverage),
            ));
        }
        Ok(venue.name.to_string())
    }
}

impl<C: ConnectionTrait> Store<C> {
    /// Creates an active subscription. `MissingReference` when the principal or bot is unknown.
    pub async fn create_subscription(
        &self,
        new: &NewSubscription,
        now: DateTime<Utc>,
    ) -> Result<subscription::Model, StoreError> {
        let exchange = new.validate()?;
        let key = format!(
            "{} {} for principal {}",
            exchange, new.symbol, new.principal_id
        );
        subscription::Entity::insert(subscription::ActiveModel {
            principal_id: Set(new.principal_id),
            bot_id: Set(new.bot_id),
            exchange: Set(exchange),
            symbol: Set(new.symbol.clone()),
            timeframes: Set(TimeframeList(new.timeframes.clone())),
            interval_seconds: Set(new.interval_seconds),
            leverage: Set(DbDecimal(new.leverage)),
            strategy_config: Set(new.strategy_config.clone()),
            execution_config: Set(new.execution_config.clone()),
            risk_config: Set(new.risk_config.clone()),
            status: Set(SubscriptionStatus::Active),
            status_reason: Set(None),
            next_run_at: Set(new.first_run_at.trunc_subsecs(6)),
            last_run_at: Set(None),
            testnet: Set(new.testnet),
            last_fencing_token: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec_with_returning(&self.conn)
        .await
        .map_err(insert_err("subscription", key, "creating a subscription"))
    }

    pub async fn subscription(&self, id: i64) -> Result<subscription::Model, StoreError> {
        subscription::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(db_err("reading a subscription"))?
            .ok_or_else(|| not_found(id))
    }

    /// What a worker reads at the start of a cycle, in one query: the subscription, its bot, and
    /// the run of `slot` if one was recorded (the scheduler records it with the enqueue).
    pub async fn cycle_context(
        &self,
        id: i64,
        slot: DateTime<Utc>,
    ) -> Result<CycleContext, StoreError> {
        use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, JoinType, Query};
        use sea_orm::{FromQueryResult, IdenStatic, Iterable};

        use super::entities::{bot, cycle_run};
        let mut q = Query::select();
        for c in Column::iter() {
            q.expr_as(
                Expr::col((subscription::Entity, c)),
                Alias::new(format!("s_{}", c.as_str())),
            );
        }
        for c in bot::Column::iter() {
            q.expr_as(
                Expr::col((bot::Entity, c)),
                Alias::new(format!("b_{}", c.as_str())),
            );
        }
        for c in cycle_run::Column::iter() {
            q.expr_as(
                Expr::col((cycle_run::Entity, c)),
                Alias::new(format!("r_{}", c.as_str())),
            );
        }
        q.from(subscription::Entity)
            .join(
                JoinType::LeftJoin,
                bot::Entity,
                Expr::col((bot::Entity, bot::Column::Id))
                    .equals((subscription::Entity, Column::BotId)),
            )
            .join(
                JoinType::LeftJoin,
                cycle_run::Entity,
                Condition::all()
                    .add(
                        Expr::col((cycle_run::Entity, cycle_run::Column::SubscriptionId))
                            .equals((subscription::Entity, Column::Id)),
                    )
                    .add(
                        Expr::col((cycle_run::Entity, cycle_run::Column::Slot))
                            .eq(slot.trunc_subsecs(6)),
                    ),
            )
            .and_where(Expr::col((subscription::Entity, Column::Id)).eq(id));
        let row = self
            .conn
            .query_one_raw(self.backend().build(&q))
            .await
            .map_err(db_err("reading a subscription, its bot and its run"))?
            .ok_or_else(|| not_found(id))?;
        const READ: &str = "reading a subscription, its bot and its run";
        let subscription =
            subscription::Model::from_query_result(&row, "s_").map_err(db_err(READ))?;
        let bot = bot::Model::from_query_result_optional(&row, "b_")
            .map_err(db_err(READ))?
            .ok_or_else(|| StoreError::NotFound {
                entity: "bot",
                key: subscription.bot_id.to_string(),
            })?;
        let run = cycle_run::Model::from_query_result_optional(&row, "r_").map_err(db_err(READ))?;
        Ok(CycleContext {
            subscription,
            bot,
            run,
        })
    }

    /// Subscriptions matching `filter`, oldest first.
    pub async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<subscription::Model>, StoreError> {
        let mut q = subscription::Entity::find();
        if let Some(p) = filter.principal_id {
            q = q.filter(Column::PrincipalId.eq(p));
        }
        if let Some(s) = filter.status {
            q = q.filter(Column::Status.eq(s));
        }
        q.order_by_asc(Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing subscriptions"))
    }

    async fn set_status(
        &self,
        id: i64,
        status: SubscriptionStatus,
        reason: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<subscription::Model, StoreError> {
        let mut update = subscription::Entity::update_many()
            .col_expr(Column::Status, Expr::value(status))
            .col_expr(
                Column::StatusReason,
                Expr::value(reason.map(str::to_string)),
            )
            .col_expr(Column::UpdatedAt, Expr::value(now));
        if let Some(next) = next_run_at {
            update = update.col_expr(Column::NextRunAt, Expr::value(next.trunc_subsecs(6)));
        }
        let res = update
            .filter(Column::Id.eq(id))
            .exec(&self.conn)
            .await
            .map_err(db_err("changing a subscription's status"))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        self.subscription(id).await
    }

    /// Stops scheduling the subscription until it is resumed.
    pub async fn pause_subscription(
        &self,
        id: i64,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<subscription::Model, StoreError> {
        self.set_status(id, SubscriptionStatus::Paused, reason, None, now)
            .await
    }

    /// Stops the subscription for good (it is kept, with its history, until deleted).
    pub async fn stop_subscription(
        &self,
        id: i64,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<subscription::Model, StoreError> {
        self.set_status(id, SubscriptionStatus::Stopped, reason, None, now)
            .await
    }

    /// Makes the subscription active again, next due at `next_run_at`.
    pub async fn resume_subscription(
        &self,
        id: i64,
        next_run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<subscription::Model, StoreError> {
        self.set_status(id, SubscriptionStatus::Active, None, Some(next_run_at), now)
            .await
    }

    /// Deletes the subscription with its runs, orders, positions, trades and snapshots.
    pub async fn delete_subscription(&self, id: i64) -> Result<(), StoreError> {
        let res = subscription::Entity::delete_by_id(id)
            .exec(&self.conn)
            .await
            .map_err(db_err("deleting a subscription"))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Active subscriptions with `next_run_at <= now`, most overdue first, at most `limit`.
    pub async fn due_subscriptions(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<subscription::Model>, StoreError> {
        subscription::Entity::find()
            .filter(Column::Status.eq(SubscriptionStatus::Active))
            .filter(Column::NextRunAt.lte(now))
            .order_by_asc(Column::NextRunAt)
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await
            .map_err(db_err("reading due subscriptions"))
    }

    /// Moves an active subscription's schedule from `from` (the slot just enqueued, recorded as
    /// `last_run_at`) to `to`. Compare-and-set: false when `next_run_at` is no longer `from` (or
    /// the subscription is not active), so two schedulers cannot both advance one slot.
    pub async fn advance_schedule(
        &self,
        id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let from = from.trunc_subsecs(6);
        let res = subscription::Entity::update_many()
            .col_expr(Column::NextRunAt, Expr::value(to.trunc_subsecs(6)))
            .col_expr(Column::LastRunAt, Expr::value(Some(from)))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(id))
            .filter(Column::Status.eq(SubscriptionStatus::Active))
            .filter(Column::NextRunAt.eq(from))
            .exec(&self.conn)
            .await
            .map_err(db_err("advancing a subscription's schedule"))?;
        Ok(res.rows_affected == 1)
    }

    /// Records `token` as the newest fencing token of the subscription, or fails with
    /// `StaleFencingToken` when a newer one was already recorded. Run it first in the transaction
    /// that commits a cycle's results: on PostgreSQL the row stays locked until commit, so a
    /// stale worker cannot interleave.
    pub async fn check_fencing_token(
        &self,
        subscription_id: i64,
        token: i64,
    ) -> Result<(), StoreError> {
        self.check_fencing_token_with_marks(subscription_id, token, None)
            .await
    }

    /// [`Store::check_fencing_token`] that also stores the subscription's new equity marks, in
    /// the same statement (the record transaction's first write).
    pub async fn check_fencing_token_with_marks(
        &self,
        subscription_id: i64,
        token: i64,
        marks: Option<&EquityMarks>,
    ) -> Result<(), StoreError> {
        let mut update = subscription::Entity::update_many()
            .col_expr(Column::LastFencingToken, Expr::value(Some(token)));
        if let Some(m) = marks {
            update = update
                .col_expr(Column::PeakEquity, Expr::value(Some(DbDecimal(m.peak))))
                .col_expr(
                    Column::DayStartEquity,
                    Expr::value(Some(DbDecimal(m.day_start_equity))),
                )
                .col_expr(Column::DayStartAt, Expr::value(Some(m.day_start_at)));
        }
        let res = update
            .filter(Column::Id.eq(subscription_id))
            .filter(
                Condition::any()
                    .add(Column::LastFencingToken.is_null())
                    .add(Column::LastFencingToken.lte(token)),
            )
            .exec(&self.conn)
            .await
            .map_err(db_err("checking a fencing token"))?;
        if res.rows_affected > 0 {
            return Ok(());
        }
        let sub = self.subscription(subscription_id).await?;
        Err(StoreError::StaleFencingToken {
            subscription_id,
            token,
            newest: sub.last_fencing_token.unwrap_or_default(),
        })
    }
}

/// What [`Store::cycle_context`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleContext {
    pub subscription: subscription::Model,
    pub bot: super::entities::bot::Model,
    /// The run of the slot, when one was recorded.
    pub run: Option<super::entities::cycle_run::Model>,
}

/// The equity marks the breakers read (see [`subscription::Model::peak_equity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EquityMarks {
    /// Highest equity recorded.
    pub peak: Decimal,
    /// First equity recorded on the UTC day of `day_start_at`.
    pub day_start_equity: Decimal,
    pub day_start_at: DateTime<Utc>,
}

impl EquityMarks {
    /// The marks of `sub` as its last cycle left them, for a cycle at `now`: the peak, and the
    /// day's first equity when it was recorded on `now`'s UTC day. `None` when the subscription
    /// has no marks yet (new, or created before the marks existed).
    pub fn of(sub: &subscription::Model, now: DateTime<Utc>) -> Option<(Decimal, Option<Decimal>)> {
        let peak = sub.peak_equity?.get();
        let day_start = match (sub.day_start_equity, sub.day_start_at) {
            (Some(e), Some(at)) if at.date_naive() == now.date_naive() => Some(e.get()),
            _ => None,
        };
        Some((peak, day_start))
    }

    /// The marks after recording `equity` at `now`, from the marks before (`peak`, and the day
    /// start when it is `now`'s day).
    pub fn after(
        peak: Option<Decimal>,
        day_start: Option<(Decimal, DateTime<Utc>)>,
        equity: Decimal,
        now: DateTime<Utc>,
    ) -> Self {
        let (day_start_equity, day_start_at) = match day_start {
            Some((e, at)) if at.date_naive() == now.date_naive() => (e, at),
            _ => (equity, now),
        };
        Self {
            peak: peak.map_or(equity, |p| p.max(equity)),
            day_start_equity,
            day_start_at,
        }
    }
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        entity: "subscription",
        key: id.to_string(),
    }
}
