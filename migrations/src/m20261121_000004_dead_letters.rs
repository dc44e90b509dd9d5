//! Dead letters: jobs that exhausted their attempts, kept with their payload and last error so an
//! operator can inspect, replay or delete them.

use sea_orm_migration::prelude::*;

use crate::cols::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    Queue,
    JobId,
    Payload,
    Error,
    Attempts,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use DeadLetters as D;
        manager
            .create_table(
                Table::create()
                    .table(D::Table)
                    .col(id(D::Id))
                    .col(string(D::Queue, 128))
                    .col(string_null(D::JobId, 128))
                    .col(ColumnDef::new(D::Payload).text().not_null())
                    .col(ColumnDef::new(D::Error).text().not_null())
                    .col(int(D::Attempts))
                    .col(timestamp(D::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_dead_letters_queue_created")
                    .table(D::Table)
                    .col(D::Queue)
                    .col(D::CreatedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeadLetters::Table).to_owned())
            .await?;
        Ok(())
    }
}
