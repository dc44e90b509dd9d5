//! Accounts: principals (fleet users), their encrypted exchange credentials, and the bot catalogue.

use sea_orm_migration::prelude::*;

use crate::cols::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Principals {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ExchangeCredentials {
    Table,
    Id,
    PrincipalId,
    Exchange,
    Testnet,
    Label,
    ApiKeyCiphertext,
    ApiKeyNonce,
    ApiKeyKeyId,
    ApiSecretCiphertext,
    ApiSecretNonce,
    ApiSecretKeyId,
    PassphraseCiphertext,
    PassphraseNonce,
    PassphraseKeyId,
    CreatedAt,
    RotatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Bots {
    Table,
    Id,
    Name,
    Kind,
    Strategy,
    DefaultConfig,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Principals::Table)
                    .col(id(Principals::Id))
                    .col(string(Principals::Name, 128).unique_key())
                    .col(timestamp(Principals::CreatedAt))
                    .to_owned(),
            )
            .await?;

        use ExchangeCredentials as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .col(id(C::Id))
                    .col(big_int(C::PrincipalId))
                    .col(string(C::Exchange, 32))
                    .col(boolean(C::Testnet))
                    .col(string(C::Label, 64))
                    .col(blob(C::ApiKeyCiphertext))
                    .col(blob(C::ApiKeyNonce))
                    .col(string(C::ApiKeyKeyId, 64))
                    .col(blob(C::ApiSecretCiphertext))
                    .col(blob(C::ApiSecretNonce))
                    .col(string(C::ApiSecretKeyId, 64))
                    .col(blob_null(C::PassphraseCiphertext))
                    .col(blob_null(C::PassphraseNonce))
                    .col(string_null(C::PassphraseKeyId, 64))
                    .col(timestamp(C::CreatedAt))
                    .col(timestamp_null(C::RotatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_exchange_credentials_principal")
                            .from(C::Table, C::PrincipalId)
                            .to(Principals::Table, Principals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_exchange_credentials_account")
                    .table(C::Table)
                    .col(C::PrincipalId)
                    .col(C::Exchange)
                    .col(C::Testnet)
                    .col(C::Label)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Bots::Table)
                    .col(id(Bots::Id))
                    .col(string(Bots::Name, 128).unique_key())
                    .col(string(Bots::Kind, 16))
                    .col(string(Bots::Strategy, 64))
                    .col(json(Bots::DefaultConfig))
                    .col(timestamp(Bots::CreatedAt))
                    .col(timestamp(Bots::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Bots::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ExchangeCredentials::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Principals::Table).to_owned())
            .await?;
        Ok(())
    }
}
