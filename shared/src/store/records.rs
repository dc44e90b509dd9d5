//! What trading leaves behind: orders (keyed by client order id), positions, trades, equity
//! snapshots, and dead letters of jobs that ran out of attempts.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::{dead_letter, equity_snapshot, order, position, trade};
use super::types::{DbDecimal, OrderRole, PositionStatus};
use super::{Store, StoreError, db_err, insert_err};
use crate::domain::{ClientOrderId, OrderStatus, OrderType, PositionSide, Side, Symbol};

/// An order as the fleet records it, before or after the venue saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub client_order_id: ClientOrderId,
    pub subscription_id: i64,
    pub run_id: Option<i64>,
    pub exchange: String,
    pub symbol: Symbol,
    pub exchange_order_id: Option<String>,
    pub role: OrderRole,
    pub side: Side,
    pub order_type: OrderType,
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub trigger_price: Option<Decimal>,
    pub reduce_only: bool,
    pub status: OrderStatus,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    pub fee: Option<Decimal>,
    /// The venue's payload, for audits.
    pub raw: Option<serde_json::Value>,
}

impl OrderRecord {
    fn active_model(&self, now: DateTime<Utc>) -> order::ActiveModel {
        order::ActiveModel {
            client_order_id: Set(self.client_order_id.as_str().to_string()),
            subscription_id: Set(self.subscription_id),
            run_id: Set(self.run_id),
            exchange: Set(self.exchange.clone()),
            symbol: Set(self.symbol.clone()),
            exchange_order_id: Set(self.exchange_order_id.clone()),
            role: Set(self.role),
            side: Set(self.side),
            order_type: Set(self.order_type),
            quantity: Set(DbDecimal(self.quantity)),
            price: Set(self.price.map(DbDecimal)),
            trigger_price: Set(self.trigger_price.map(DbDecimal)),
            reduce_only: Set(self.reduce_only),
            status: Set(self.status),
            filled_quantity: Set(DbDecimal(self.filled_quantity)),
            average_price: Set(self.average_price.map(DbDecimal)),
            fee: Set(self.fee.map(DbDecimal)),
            raw: Set(self.raw.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
    }
}

/// A position opened by a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPosition {
    pub subscription_id: i64,
    pub symbol: Symbol,
    pub side: PositionSide,
    pub quantity: Decimal,
    pub entry_price: Decimal,
    pub fees: Decimal,
    pub opened_at: DateTime<Utc>,
}

/// A trade (round trip) to record; `exit_price`/`closed_at` are `None` while it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrade {
    pub subscription_id: i64,
    pub run_id: Option<i64>,
    pub symbol: Symbol,
    pub side: PositionSide,
    pub quantity: Decimal,
    pub entry_price: Decimal,
    pub exit_price: Option<Decimal>,
    pub realized_pnl: Decimal,
    pub fees: Decimal,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    pub queue: String,
    pub job_id: Option<String>,
    /// The job as it was queued (JSON text).
    pub payload: String,
    pub error: String,
    pub attempts: i32,
}

impl<C: ConnectionTrait> Store<C> {
    /// Records a new order; `AlreadyExists` when the client order id is taken. Inside a
    /// PostgreSQL transaction prefer [`Store::upsert_order`], which never aborts it.
    pub async fn insert_order(
        &self,
        record: &OrderRecord,
        now: DateTime<Utc>,
    ) -> Result<order::Model, StoreError> {
        order::Entity::insert(record.active_model(now))
            .exec_with_returning(&self.conn)
            .await
            .map_err(insert_err(
                "order",
                record.client_order_id.to_string(),
                "inserting an order",
            ))
    }

    /// Inserts the order or, when its client order id is known, updates what the venue may have
    /// changed (status, fills, fee, venue id, payload). A known venue id is never erased.
    pub async fn upsert_order(
        &self,
        record: &OrderRecord,
        now: DateTime<Utc>,
    ) -> Result<order::Model, StoreError> {
        use order::Column as O;
        order::Entity::insert(record.active_model(now))
            .on_conflict(
                OnConflict::column(O::ClientOrderId)
                    .update_columns([
                        O::Status,
                        O::FilledQuantity,
                        O::AveragePrice,
                        O::Fee,
                        O::Raw,
                        O::UpdatedAt,
                    ])
                    .value(
                        O::ExchangeOrderId,
                        Expr::cust(
                            "COALESCE(excluded.exchange_order_id, orders.exchange_order_id)",
                        ),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&self.conn)
            .await
            .map_err(insert_err(
                "order",
                record.client_order_id.to_string(),
                "upserting an order",
            ))?;
        self.order_by_client_id(record.client_order_id.as_str())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "order",
                key: record.client_order_id.to_string(),
            })
    }

    pub async fn order_by_client_id(
        &self,
        client_order_id: &str,
    ) -> Result<Option<order::Model>, StoreError> {
        order::Entity::find()
            .filter(order::Column::ClientOrderId.eq(client_order_id))
            .one(&self.conn)
            .await
            .map_err(db_err("reading an order by client order id"))
    }

    /// The orders a run placed, oldest first.
    pub async fn orders_for_run(&self, run_id: i64) -> Result<Vec<order::Model>, StoreError> {
        order::Entity::find()
            .filter(order::Column::RunId.eq(run_id))
            .order_by_asc(order::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing the orders of a run"))
    }

    /// A subscription's orders, newest first, at most `limit`.
    pub async fn list_orders(
        &self,
        subscription_id: i64,
        limit: u64,
    ) -> Result<Vec<order::Model>, StoreError> {
        order::Entity::find()
            .filter(order::Column::SubscriptionId.eq(subscription_id))
            .order_by_desc(order::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await
            .map_err(db_err("listing orders"))
    }

    pub async fn open_position(&self, new: &NewPosition) -> Result<position::Model, StoreError> {
        position::Entity::insert(position::ActiveModel {
            subscription_id: Set(new.subscription_id),
            symbol: Set(new.symbol.clone()),
            side: Set(new.side),
            quantity: Set(DbDecimal(new.quantity)),
            entry_price: Set(DbDecimal(new.entry_price)),
            exit_price: Set(None),
            realized_pnl: Set(DbDecimal(Decimal::ZERO)),
            fees: Set(DbDecimal(new.fees)),
            status: Set(PositionStatus::Open),
            opened_at: Set(new.opened_at),
            closed_at: Set(None),
            updated_at: Set(new.opened_at),
            ..Default::default()
        })
        .exec_with_returning(&self.conn)
        .await
        .map_err(insert_err(
            "position",
            format!("{} of subscription {}", new.symbol, new.subscription_id),
            "opening a position",
        ))
    }

    /// Closes an open position that left the venue with no known exit (manual close,
    /// liquidation, auto-deleveraging): no exit price and no PnL are invented.
    pub async fn mark_position_gone(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        use position::Column as P;
        position::Entity::update_many()
            .col_expr(P::Status, Expr::value(PositionStatus::Closed))
            .col_expr(P::ClosedAt, Expr::value(Some(now)))
            .col_expr(P::UpdatedAt, Expr::value(now))
            .filter(P::Id.eq(id))
            .filter(P::Status.eq(PositionStatus::Open))
            .exec(&self.conn)
            .await
            .map_err(db_err("closing a position with no known exit"))?;
        Ok(())
    }

    /// Closes an open position at `exit_price` with its realized PnL and total fees.
    pub async fn close_position(
        &self,
        id: i64,
        exit_price: Decimal,
        realized_pnl: Decimal,
        fees: Decimal,
        now: DateTime<Utc>,
    ) -> Result<position::Model, StoreError> {
        use position::Column as P;
        let res = position::Entity::update_many()
            .col_expr(P::ExitPrice, Expr::value(Some(DbDecimal(exit_price))))
            .col_expr(P::RealizedPnl, Expr::value(DbDecimal(realized_pnl)))
            .col_expr(P::Fees, Expr::value(DbDecimal(fees)))
            .col_expr(P::Status, Expr::value(PositionStatus::Closed))
            .col_expr(P::ClosedAt, Expr::value(Some(now)))
            .col_expr(P::UpdatedAt, Expr::value(now))
            .filter(P::Id.eq(id))
            .filter(P::Status.eq(PositionStatus::Open))
            .exec(&self.conn)
            .await
            .map_err(db_err("closing a position"))?;
        let found = position::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(db_err("reading a position"))?;
        match found {
            Some(p) if res.rows_affected == 1 => Ok(p),
            Some(p) => Err(StoreError::Invalid {
                what: "position close",
                reason: format!("position {id} is already {}", p.status),
            }),
            None => Err(StoreError::NotFound {
                entity: "position",
                key: id.to_string(),
            }),
        }
    }

    /// A subscription's positions with `status`, oldest first.
    pub async fn list_positions(
        &self,
        subscription_id: i64,
        status: Option<PositionStatus>,
    ) -> Result<Vec<position::Model>, StoreError> {
        let mut q =
            position::Entity::find().filter(position::Column::SubscriptionId.eq(subscription_id));
        if let Some(s) = status {
            q = q.filter(position::Column::Status.eq(s));
        }
        q.order_by_asc(position::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing positions"))
    }

    /// The open positions of every subscription of `principal_id` on `exchange` (the cycle's own
    /// and its siblings', whose notional caps its exposure), oldest first, in one query.
    pub async fn open_positions_of_principal(
        &self,
        principal_id: i64,
        exchange: &str,
    ) -> Result<Vec<position::Model>, StoreError> {
        use super::entities::subscription;
        use sea_orm::sea_query::Query;
        let subscriptions = Query::select()
            .column(subscription::Column::Id)
            .from(subscription::Entity)
            .and_where(subscription::Column::PrincipalId.eq(principal_id))
            .and_where(subscription::Column::Exchange.eq(exchange))
            .to_owned();
        position::Entity::find()
            .filter(position::Column::Status.eq(PositionStatus::Open))
            .filter(position::Column::SubscriptionId.in_subquery(subscriptions))
            .order_by_asc(position::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing the principal's open positions"))
    }

    pub async fn insert_trade(&self, new: &NewTrade) -> Result<trade::Model, StoreError> {
        let status = if new.closed_at.is_some() {
            PositionStatus::Closed
        } else {
            PositionStatus::Open
        };
        trade::Entity::insert(trade::ActiveModel {
            subscription_id: Set(new.subscription_id),
            run_id: Set(new.run_id),
            symbol: Set(new.symbol.clone()),
            side: Set(new.side),
            quantity: Set(DbDecimal(new.quantity)),
            entry_price: Set(DbDecimal(new.entry_price)),
            exit_price: Set(new.exit_price.map(DbDecimal)),
            realized_pnl: Set(DbDecimal(new.realized_pnl)),
            fees: Set(DbDecimal(new.fees)),
            status: Set(status),
            opened_at: Set(new.opened_at),
            closed_at: Set(new.closed_at),
            ..Default::default()
        })
        .exec_with_returning(&self.conn)
        .await
        .map_err(insert_err(
            "trade",
            format!("{} of subscription {}", new.symbol, new.subscription_id),
            "inserting a trade",
        ))
    }

    /// The subscription's last `limit` closed trades, newest first (by open time, then id).
    pub async fn recent_closed_trades(
        &self,
        subscription_id: i64,
        limit: u64,
    ) -> Result<Vec<trade::Model>, StoreError> {
        recent_closed(subscription_id, limit)
            .all(&self.conn)
            .await
            .map_err(db_err("listing recent closed trades"))
    }

    /// Realized PnL of the subscription's last `limit` closed trades, newest first (the order of
    /// [`Store::recent_closed_trades`]); only the one column is read.
    pub async fn recent_closed_trade_pnls(
        &self,
        subscription_id: i64,
        limit: u64,
    ) -> Result<Vec<Decimal>, StoreError> {
        let pnls: Vec<DbDecimal> = recent_closed(subscription_id, limit)
            .select_only()
            .column(trade::Column::RealizedPnl)
            .into_tuple()
            .all(&self.conn)
            .await
            .map_err(db_err("listing recent closed trades"))?;
        Ok(pnls.into_iter().map(DbDecimal::get).collect())
    }

    pub async fn list_trades(&self, subscription_id: i64) -> Result<Vec<trade::Model>, StoreError> {
        trade::Entity::find()
            .filter(trade::Column::SubscriptionId.eq(subscription_id))
            .order_by_asc(trade::Column::OpenedAt)
            .order_by_asc(trade::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing trades"))
    }

    pub async fn insert_equity_snapshot(
        &self,
        subscription_id: i64,
        time: DateTime<Utc>,
        equity: Decimal,
        unrealized_pnl: Decimal,
    ) -> Result<equity_snapshot::Model, StoreError> {
        equity_snapshot::Entity::insert(equity_snapshot::ActiveModel {
            subscription_id: Set(subscription_id),
            time: Set(time),
            equity: Set(DbDecimal(equity)),
            unrealized_pnl: Set(DbDecimal(unrealized_pnl)),
            ..Default::default()
        })
        .exec_with_returning(&self.conn)
        .await
        .map_err(insert_err(
            "equity snapshot",
            format!("subscription {subscription_id} at {time}"),
            "inserting an equity snapshot",
        ))
    }

    /// A subscription's snapshots, newest first, at most `limit`.
    pub async fn list_equity_snapshots(
        &self,
        subscription_id: i64,
        limit: u64,
    ) -> Result<Vec<equity_snapshot::Model>, StoreError> {
        equity_snapshot::Entity::find()
            .filter(equity_snapshot::Column::SubscriptionId.eq(subscription_id))
            .order_by_desc(equity_snapshot::Column::Time)
            .limit(limit)
            .all(&self.conn)
            .await
            .map_err(db_err("listing equity snapshots"))
    }

    pub async fn insert_dead_letter(
        &self,
        new: &NewDeadLetter,
        now: DateTime<Utc>,
    ) -> Result<dead_letter::Model, StoreError> {
        dead_letter::Entity::insert(dead_letter::ActiveModel {
            queue: Set(new.queue.clone()),
            job_id: Set(new.job_id.clone()),
            payload: Set(new.payload.clone()),
            error: Set(new.error.clone()),
            attempts: Set(new.attempts),
            created_at: Set(now),
            ..Default::default()
        })
        .exec_with_returning(&self.conn)
        .await
        .map_err(db_err("inserting a dead letter"))
    }

    pub async fn dead_letter(&self, id: i64) -> Result<dead_letter::Model, StoreError> {
        dead_letter::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(db_err("reading a dead letter"))?
            .ok_or_else(|| StoreError::NotFound {
                entity: "dead letter",
                key: id.to_string(),
            })
    }

    /// Dead letters (of one queue, or all), newest first, at most `limit`.
    pub async fn list_dead_letters(
        &self,
        queue: Option<&str>,
        limit: u64,
    ) -> Result<Vec<dead_letter::Model>, StoreError> {
        let mut q = dead_letter::Entity::find();
        if let Some(queue) = queue {
            q = q.filter(dead_letter::Column::Queue.eq(queue));
        }
        q.order_by_desc(dead_letter::Column::CreatedAt)
            .order_by_desc(dead_letter::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await
            .map_err(db_err("listing dead letters"))
    }

    pub async fn delete_dead_letter(&self, id: i64) -> Result<(), StoreError> {
        let res = dead_letter::Entity::delete_by_id(id)
            .exec(&self.conn)
            .await
            .map_err(db_err("deleting a dead letter"))?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound {
                entity: "dead letter",
                key: id.to_string(),
            });
        }
        Ok(())
    }
}

/// The subscription's last `limit` closed trades, newest first (by open time, then id).
fn recent_closed(subscription_id: i64, limit: u64) -> sea_orm::Select<trade::Entity> {
    trade::Entity::find()
        .filter(trade::Column::SubscriptionId.eq(subscription_id))
        .filter(trade::Column::Status.eq(PositionStatus::Closed))
        .order_by_desc(trade::Column::OpenedAt)
        .order_by_desc(trade::Column::Id)
        .limit(limit)
}
