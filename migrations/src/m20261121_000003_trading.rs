//! What trading leaves behind: orders (unique by client order id), positions, closed trades and
//! equity snapshots. Money columns are exact decimals on both backends.

use sea_orm_migration::prelude::*;

use crate::cols::*;
use crate::m20261121_000002_subscriptions::{CycleRuns, Subscriptions};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    ClientOrderId,
    SubscriptionId,
    RunId,
    Exchange,
    Symbol,
    ExchangeOrderId,
    Role,
    Side,
    OrderType,
    Quantity,
    Price,
    TriggerPrice,
    ReduceOnly,
    Status,
    FilledQuantity,
    AveragePrice,
    Fee,
    Raw,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Positions {
    Table,
    Id,
    SubscriptionId,
    Symbol,
    Side,
    Quantity,
    EntryPrice,
    ExitPrice,
    RealizedPnl,
    Fees,
    Status,
    OpenedAt,
    ClosedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Trades {
    Table,
    Id,
    SubscriptionId,
    RunId,
    Symbol,
    Side,
    Quantity,
    EntryPrice,
    ExitPrice,
    RealizedPnl,
    Fees,
    Status,
    OpenedAt,
    ClosedAt,
}

#[derive(DeriveIden)]
enum EquitySnapshots {
    Table,
    Id,
    SubscriptionId,
    Time,
    Equity,
    UnrealizedPnl,
}

fn subscription_fk(from: impl IntoTableRef, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from_tbl(from)
        .from_col(Alias::new("subscription_id"))
        .to(Subscriptions::Table, Subscriptions::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Orders as O;
        manager
            .create_table(
                Table::create()
                    .table(O::Table)
                    .col(id(O::Id))
                    .col(string(O::ClientOrderId, 64).unique_key())
                    .col(big_int(O::SubscriptionId))
                    .col(big_int_null(O::RunId))
                    .col(string(O::Exchange, 32))
                    .col(string(O::Symbol, 64))
                    .col(string_null(O::ExchangeOrderId, 128))
                    .col(string(O::Role, 16))
                    .col(string(O::Side, 8))
                    .col(string(O::OrderType, 32))
                    .col(decimal_not_null(manager, O::Quantity))
                    .col(decimal(manager, O::Price).null())
                    .col(decimal(manager, O::TriggerPrice).null())
                    .col(boolean(O::ReduceOnly))
                    .col(string(O::Status, 24))
                    .col(decimal_not_null(manager, O::FilledQuantity))
                    .col(decimal(manager, O::AveragePrice).null())
                    .col(decimal(manager, O::Fee).null())
                    .col(json_null(O::Raw))
                    .col(timestamp(O::CreatedAt))
                    .col(timestamp(O::UpdatedAt))
                    .foreign_key(&mut subscription_fk(O::Table, "fk_orders_subscription"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_orders_run")
                            .from(O::Table, O::RunId)
                            .to(CycleRuns::Table, CycleRuns::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "ix_orders_subscription_status",
                vec![O::SubscriptionId, O::Status],
            ),
            ("ix_orders_run", vec![O::RunId]),
            (
                "ix_orders_exchange_order",
                vec![O::Exchange, O::ExchangeOrderId],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(O::Table);
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx.to_owned()).await?;
        }

        use Positions as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .col(id(P::Id))
                    .col(big_int(P::SubscriptionId))
                    .col(string(P::Symbol, 64))
                    .col(string(P::Side, 8))
                    .col(decimal_not_null(manager, P::Quantity))
                    .col(decimal_not_null(manager, P::EntryPrice))
                    .col(decimal(manager, P::ExitPrice).null())
                    .col(decimal_not_null(manager, P::RealizedPnl))
                    .col(decimal_not_null(manager, P::Fees))
                    .col(string(P::Status, 8))
                    .col(timestamp(P::OpenedAt))
                    .col(timestamp_null(P::ClosedAt))
                    .col(timestamp(P::UpdatedAt))
                    .foreign_key(&mut subscription_fk(P::Table, "fk_positions_subscription"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_positions_subscription_status")
                    .table(P::Table)
                    .col(P::SubscriptionId)
                    .col(P::Status)
                    .to_owned(),
            )
            .await?;

        use Trades as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(id(T::Id))
                    .col(big_int(T::SubscriptionId))
                    .col(big_int_null(T::RunId))
                    .col(string(T::Symbol, 64))
                    .col(string(T::Side, 8))
                    .col(decimal_not_null(manager, T::Quantity))
                    .col(decimal_not_null(manager, T::EntryPrice))
                    .col(decimal(manager, T::ExitPrice).null())
                    .col(decimal_not_null(manager, T::RealizedPnl))
                    .col(decimal_not_null(manager, T::Fees))
                    .col(string(T::Status, 8))
                    .col(timestamp(T::OpenedAt))
                    .col(timestamp_null(T::ClosedAt))
                    .foreign_key(&mut subscription_fk(T::Table, "fk_trades_subscription"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_trades_run")
                            .from(T::Table, T::RunId)
                            .to(CycleRuns::Table, CycleRuns::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_trades_subscription_opened")
                    .table(T::Table)
                    .col(T::SubscriptionId)
                    .col(T::OpenedAt)
                    .to_owned(),
            )
            .await?;

        use EquitySnapshots as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .col(id(E::Id))
                    .col(big_int(E::SubscriptionId))
                    .col(timestamp(E::Time))
                    .col(decimal_not_null(manager, E::Equity))
                    .col(decimal_not_null(manager, E::UnrealizedPnl))
                    .foreign_key(&mut subscription_fk(
                        E::Table,
                        "fk_equity_snapshots_subscription",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_equity_snapshots_subscription_time")
                    .table(E::Table)
                    .col(E::SubscriptionId)
                    .col(E::Time)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EquitySnapshots::Table.into_iden(),
            Trades::Table.into_iden(),
            Positions::Table.into_iden(),
            Orders::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
