//! The scheduler pages through due subscriptions in `(next_run_at, id)` order (a keyset that
//! never returns a row twice while batches are still being written): the due index gains `id`,
//! so a page is an index range scan even when thousands of subscriptions share one slot.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    Id,
    Status,
    NextRunAt,
}

/// The index before this migration, and the one that replaces it.
const OLD: &str = "ix_subscriptions_due";
const NEW: &str = "ix_subscriptions_due_order";

/// Create index `create` (with `id` when `with_id`), then drop index `drop`: two names, so the
/// step never depends on a drop being seen before the create.
async fn swap(
    manager: &SchemaManager<'_>,
    create: &str,
    with_id: bool,
    drop: &str,
) -> Result<(), DbErr> {
    use Subscriptions as S;
    let mut index = Index::create();
    index
        .name(create)
        .table(S::Table)
        .col(S::Status)
        .col(S::NextRunAt);
    if with_id {
        index.col(S::Id);
    }
    manager.create_index(index.to_owned()).await?;
    // Plain SQL: the same statement on PostgreSQL and SQLite.
    manager
        .get_connection()
        .execute_unprepared(&format!("DROP INDEX IF EXISTS {drop}"))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        swap(manager, NEW, true, OLD).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        swap(manager, OLD, false, NEW).await
    }
}
