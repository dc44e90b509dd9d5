//! Principals (fleet users) and the bot catalogue.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::entities::{bot, principal};
use super::types::BotKind;
use super::{Store, StoreError, db_err, insert_err};

/// A bot to create or update, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBot {
    pub name: String,
    pub kind: BotKind,
    pub strategy: String,
    pub default_config: serde_json::Value,
}

fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.len() > max {
        return Err(StoreError::Invalid {
            what,
            reason: format!("{name:?} must be 1 to {max} characters"),
        });
    }
    Ok(())
}

impl<C: ConnectionTrait> Store<C> {
    /// Creates a principal; `AlreadyExists` when the name is taken.
    pub async fn create_principal(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<principal::Model, StoreError> {
        check_name("principal name", name, 128)?;
        principal::Entity::insert(principal::ActiveModel {
            name: Set(name.to_string()),
            created_at: Set(now),
            ..Default::default()
        })
        .exec_with_returning(&self.conn)
        .await
        .map_err(insert_err(
            "principal",
            name.to_string(),
            "creating a principal",
        ))
    }

    pub async fn principal(&self, id: i64) -> Result<principal::Model, StoreError> {
        principal::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(db_err("reading a principal"))?
            .ok_or_else(|| StoreError::NotFound {
                entity: "principal",
                key: id.to_string(),
            })
    }

    pub async fn principal_by_name(
        &self,
        name: &str,
    ) -> Result<Option<principal::Model>, StoreError> {
        principal::Entity::find()
            .filter(principal::Column::Name.eq(name))
            .one(&self.conn)
            .await
            .map_err(db_err("reading a principal by name"))
    }

    pub async fn list_principals(&self) -> Result<Vec<principal::Model>, StoreError> {
        principal::Entity::find()
            .order_by_asc(principal::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing principals"))
    }

    /// Creates the bot, or updates kind, strategy and default config of the bot of that name.
    pub async fn upsert_bot(
        &self,
        new: &NewBot,
        now: DateTime<Utc>,
    ) -> Result<bot::Model, StoreError> {
        check_name("bot name", &new.name, 128)?;
        check_name("strategy name", &new.strategy, 64)?;
        bot::Entity::insert(bot::ActiveModel {
            name: Set(new.name.clone()),
            kind: Set(new.kind),
            strategy: Set(new.strategy.clone()),
            default_config: Set(new.default_config.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(bot::Column::Name)
                .update_columns([
                    bot::Column::Kind,
                    bot::Column::Strategy,
                    bot::Column::DefaultConfig,
                    bot::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&self.conn)
        .await
        .map_err(db_err("upserting a bot"))?;
        self.bot_by_name(&new.name)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "bot",
                key: new.name.clone(),
            })
    }

    pub async fn bot(&self, id: i64) -> Result<bot::Model, StoreError> {
        bot::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(db_err("reading a bot"))?
            .ok_or_else(|| StoreError::NotFound {
                entity: "bot",
                key: id.to_string(),
            })
    }

    pub async fn bot_by_name(&self, name: &str) -> Result<Option<bot::Model>, StoreError> {
        bot::Entity::find()
            .filter(bot::Column::Name.eq(name))
            .one(&self.conn)
            .await
            .map_err(db_err("reading a bot by name"))
    }

    pub async fn list_bots(&self) -> Result<Vec<bot::Model>, StoreError> {
        bot::Entity::find()
            .order_by_asc(bot::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing bots"))
    }
}
