//! Subscriptions (a principal running a bot on one market) and their cycle runs, one row per
//! (subscription, slot), which is what makes enqueueing and running a slot idempotent.

use sea_orm_migration::prelude::*;

use crate::cols::*;
use crate::m20261121_000001_accounts::{Bots, Principals};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Subscriptions {
    Table,
    Id,
    PrincipalId,
    BotId,
    Exchange,
    Symbol,
    Timeframes,
    IntervalSeconds,
    Leverage,
    StrategyConfig,
    ExecutionConfig,
    RiskConfig,
    Status,
    StatusReason,
    NextRunAt,
    LastRunAt,
    Testnet,
    LastFencingToken,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum CycleRuns {
    Table,
    Id,
    SubscriptionId,
    Slot,
    Trigger,
    Status,
    Attempt,
    WorkerId,
    FencingToken,
    EnqueuedAt,
    StartedAt,
    FinishedAt,
    Signal,
    Confidence,
    Analysis,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Subscriptions as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(id(S::Id))
                    .col(big_int(S::PrincipalId))
                    .col(big_int(S::BotId))
                    .col(string(S::Exchange, 32))
                    .col(string(S::Symbol, 64))
                    .col(string(S::Timeframes, 128))
                    .col(big_int(S::IntervalSeconds))
                    .col(decimal_not_null(manager, S::Leverage))
                    .col(json(S::StrategyConfig))
                    .col(json(S::ExecutionConfig))
                    .col(json(S::RiskConfig))
                    .col(string(S::Status, 16))
                    .col(text_null(S::StatusReason))
                    .col(timestamp(S::NextRunAt))
                    .col(timestamp_null(S::LastRunAt))
                    .col(boolean(S::Testnet))
                    .col(big_int_null(S::LastFencingToken))
                    .col(timestamp(S::CreatedAt))
                    .col(timestamp(S::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_subscriptions_principal")
                            .from(S::Table, S::PrincipalId)
                            .to(Principals::Table, Principals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_subscriptions_bot")
                            .from(S::Table, S::BotId)
                            .to(Bots::Table, Bots::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // The scheduler's due query: status = 'active' AND next_run_at <= now ORDER BY next_run_at.
        manager
            .create_index(
                Index::create()
                    .name("ix_subscriptions_due")
                    .table(S::Table)
                    .col(S::Status)
                    .col(S::NextRunAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_subscriptions_principal")
                    .table(S::Table)
                    .col(S::PrincipalId)
                    .to_owned(),
            )
            .await?;

        use CycleRuns as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .col(id(R::Id))
                    .col(big_int(R::SubscriptionId))
                    .col(timestamp(R::Slot))
                    .col(string(R::Trigger, 16))
                    .col(string(R::Status, 16))
                    .col(int(R::Attempt))
                    .col(string_null(R::WorkerId, 128))
                    .col(big_int_null(R::FencingToken))
                    .col(timestamp(R::EnqueuedAt))
                    .col(timestamp_null(R::StartedAt))
                    .col(timestamp_null(R::FinishedAt))
                    .col(string_null(R::Signal, 16))
                    .col(decimal(manager, R::Confidence).null())
                    .col(json_null(R::Analysis))
                    .col(text_null(R::Error))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_cycle_runs_subscription")
                            .from(R::Table, R::SubscriptionId)
                            .to(S::Table, S::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_cycle_runs_subscription_slot")
                    .table(R::Table)
                    .col(R::SubscriptionId)
                    .col(R::Slot)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_cycle_runs_status")
                    .table(R::Table)
                    .col(R::Status)
                    .col(R::EnqueuedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CycleRuns::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Subscriptions::Table).to_owned())
            .await?;
        Ok(())
    }
}
