//! SeaORM entities, one module per table created by `tradefleet-migrations`. Field types are the
//! typed column values of `types` (exact decimals, enums, symbols), never loose strings or floats.

/// A fleet user: owns credentials and subscriptions.
pub mod principal {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "principals")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub name: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Exchange API credentials, encrypted field by field (ciphertext + nonce + key id); the
/// plaintext is never stored.
pub mod exchange_credential {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "exchange_credentials")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub principal_id: i64,
        pub exchange: String,
        pub testnet: bool,
        pub label: String,
        pub api_key_ciphertext: Vec<u8>,
        pub api_key_nonce: Vec<u8>,
        pub api_key_key_id: String,
        pub api_secret_ciphertext: Vec<u8>,
        pub api_secret_nonce: Vec<u8>,
        pub api_secret_key_id: String,
        pub passphrase_ciphertext: Option<Vec<u8>>,
        pub passphrase_nonce: Option<Vec<u8>>,
        pub passphrase_key_id: Option<String>,
        pub created_at: DateTimeUtc,
        pub rotated_at: Option<DateTimeUtc>,
    }

    /// Shows which account the row is for, never the encrypted material.
    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("exchange_credential::Model")
                .field("id", &self.id)
                .field("principal_id", &self.principal_id)
                .field("exchange", &self.exchange)
                .field("testnet", &self.testnet)
                .field("label", &self.label)
                .field("has_passphrase", &self.passphrase_ciphertext.is_some())
                .field("created_at", &self.created_at)
                .field("rotated_at", &self.rotated_at)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A bot in the catalogue: kind, strategy and default configuration.
pub mod bot {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::store::types::BotKind;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "bots")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub name: String,
        pub kind: BotKind,
        pub strategy: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub default_config: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A principal running a bot on one market of one exchange, on a schedule.
pub mod subscription {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::domain::Symbol;
    use crate::store::types::{DbDecimal, SubscriptionStatus, TimeframeList};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub principal_id: i64,
        pub bot_id: i64,
        pub exchange: String,
        pub symbol: Symbol,
        pub timeframes: TimeframeList,
        pub interval_seconds: i64,
        pub leverage: DbDecimal,
        #[sea_orm(column_type = "JsonBinary")]
        pub strategy_config: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub execution_config: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub risk_config: Json,
        pub status: SubscriptionStatus,
        pub status_reason: Option<String>,
        pub next_run_at: DateTimeUtc,
        pub last_run_at: Option<DateTimeUtc>,
        pub testnet: bool,
        /// The newest fencing token a worker committed results under; older ones are refused.
        pub last_fencing_token: Option<i64>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// Highest equity recorded (the drawdown breaker's peak); `None` until the first one.
        pub peak_equity: Option<DbDecimal>,
        /// First equity recorded on the UTC day of `day_start_at` (the daily-loss breaker's base).
        pub day_start_equity: Option<DbDecimal>,
        pub day_start_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::bot::Entity",
            from = "Column::BotId",
            to = "super::bot::Column::Id"
        )]
        Bot,
    }

    impl Related<super::bot::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Bot.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// One run of the bot cycle for one (subscription, slot).
pub mod cycle_run {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::store::types::{DbDecimal, RunStatus, RunTrigger};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "cycle_runs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub subscription_id: i64,
        pub slot: DateTimeUtc,
        pub trigger: RunTrigger,
        pub status: RunStatus,
        pub attempt: i32,
        pub worker_id: Option<String>,
        pub fencing_token: Option<i64>,
        pub enqueued_at: DateTimeUtc,
        pub started_at: Option<DateTimeUtc>,
        pub finished_at: Option<DateTimeUtc>,
        pub signal: Option<String>,
        pub confidence: Option<DbDecimal>,
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub analysis: Option<Json>,
        pub error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An order the fleet placed (or is about to place), keyed by its client order id.
pub mod order {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::domain::{OrderStatus, OrderType, Side, Symbol};
    use crate::store::types::{DbDecimal, OrderRole};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub client_order_id: String,
        pub subscription_id: i64,
        pub run_id: Option<i64>,
        pub exchange: String,
        pub symbol: Symbol,
        pub exchange_order_id: Option<String>,
        pub role: OrderRole,
        pub side: Side,
        pub order_type: OrderType,
        pub quantity: DbDecimal,
        pub price: Option<DbDecimal>,
        pub trigger_price: Option<DbDecimal>,
        pub reduce_only: bool,
        pub status: OrderStatus,
        pub filled_quantity: DbDecimal,
        pub average_price: Option<DbDecimal>,
        pub fee: Option<DbDecimal>,
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub raw: Option<Json>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A position as the fleet tracks it for one subscription.
pub mod position {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::domain::{PositionSide, Symbol};
    use crate::store::types::{DbDecimal, PositionStatus};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "positions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub subscription_id: i64,
        pub symbol: Symbol,
        pub side: PositionSide,
        pub quantity: DbDecimal,
        pub entry_price: DbDecimal,
        pub exit_price: Option<DbDecimal>,
        pub realized_pnl: DbDecimal,
        pub fees: DbDecimal,
        pub status: PositionStatus,
        pub opened_at: DateTimeUtc,
        pub closed_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A round trip (entry to exit) with its realized PnL and fees.
pub mod trade {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::domain::{PositionSide, Symbol};
    use crate::store::types::{DbDecimal, PositionStatus};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "trades")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub subscription_id: i64,
        pub run_id: Option<i64>,
        pub symbol: Symbol,
        pub side: PositionSide,
        pub quantity: DbDecimal,
        pub entry_price: DbDecimal,
        pub exit_price: Option<DbDecimal>,
        pub realized_pnl: DbDecimal,
        pub fees: DbDecimal,
        pub status: PositionStatus,
        pub opened_at: DateTimeUtc,
        pub closed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Account equity of a subscription at one instant.
pub mod equity_snapshot {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::store::types::DbDecimal;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "equity_snapshots")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub subscription_id: i64,
        pub time: DateTimeUtc,
        pub equity: DbDecimal,
        pub unrealized_pnl: DbDecimal,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A job that ran out of attempts, with its payload and last error.
pub mod dead_letter {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub queue: String,
        pub job_id: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub payload: String,
        #[sea_orm(column_type = "Text")]
        pub error: String,
        pub attempts: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
