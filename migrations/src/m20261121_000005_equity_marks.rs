//! Equity marks on the subscription: the highest equity recorded and the first equity of the
//! current UTC day, kept up to date by each cycle's record transaction. The drawdown and
//! daily-loss breakers read them with the subscription instead of scanning its equity snapshots
//! every cycle (a 5-minute bot writes ~8,600 snapshots a month).
//!
//! A subscription whose marks are empty (created before this migration) has them seeded from its
//! newest snapshots by its next cycle.

use sea_orm_migration::prelude::*;

use crate::cols::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    PeakEquity,
    DayStartEquity,
    DayStartAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Subscriptions as S;
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for col in [
            decimal(manager, S::PeakEquity).null().to_owned(),
            decimal(manager, S::DayStartEquity).null().to_owned(),
            timestamp_null(S::DayStartAt),
        ] {
            manager
                .alter_table(Table::alter().table(S::Table).add_column(col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Subscriptions as S;
        for col in [S::PeakEquity, S::DayStartEquity, S::DayStartAt] {
            manager
                .alter_table(Table::alter().table(S::Table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
