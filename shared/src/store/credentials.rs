//! Encrypted exchange credentials: the store keeps ciphertext, nonce and key id per secret field
//! and never sees plaintext (sealing and opening is the vault's job).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::entities::exchange_credential::{self, Column};
use super::{Store, StoreError, db_err, insert_err};

/// One secret as the vault sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Id of the vault key that sealed it (so keys can rotate).
    pub key_id: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The sealed secrets of one exchange account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCredentials {
    pub api_key: SealedSecret,
    pub api_secret: SealedSecret,
    pub passphrase: Option<SealedSecret>,
}

/// Which account a credential is for; unique per principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialKey {
    pub principal_id: i64,
    /// Venue name from the registry.
    pub exchange: String,
    pub testnet: bool,
    pub label: String,
}

impl std::fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}/{} of principal {}",
            self.exchange,
            if self.testnet { " (testnet)" } else { "" },
            self.label,
            self.principal_id
        )
    }
}

impl SealedCredentials {
    fn apply(&self, am: &mut exchange_credential::ActiveModel) {
        am.api_key_ciphertext = Set(self.api_key.ciphertext.clone());
        am.api_key_nonce = Set(self.api_key.nonce.clone());
        am.api_key_key_id = Set(self.api_key.key_id.clone());
        am.api_secret_ciphertext = Set(self.api_secret.ciphertext.clone());
        am.api_secret_nonce = Set(self.api_secret.nonce.clone());
        am.api_secret_key_id = Set(self.api_secret.key_id.clone());
        am.passphrase_ciphertext = Set(self.passphrase.as_ref().map(|p| p.ciphertext.clone()));
        am.passphrase_nonce = Set(self.passphrase.as_ref().map(|p| p.nonce.clone()));
        am.passphrase_key_id = Set(self.passphrase.as_ref().map(|p| p.key_id.clone()));
    }
}

impl exchange_credential::Model {
    /// The sealed secrets of this row.
    pub fn sealed(&self) -> SealedCredentials {
        let passphrase = match (
            &self.passphrase_ciphertext,
            &self.passphrase_nonce,
            &self.passphrase_key_id,
        ) {
            (Some(ciphertext), Some(nonce), Some(key_id)) => Some(SealedSecret {
                ciphertext: ciphertext.clone(),
                nonce: nonce.clone(),
                key_id: key_id.clone(),
            }),
            _ => None,
        };
        SealedCredentials {
            api_key: SealedSecret {
                ciphertext: self.api_key_ciphertext.clone(),
                nonce: self.api_key_nonce.clone(),
                key_id: self.api_key_key_id.clone(),
            },
            api_secret: SealedSecret {
                ciphertext: self.api_secret_ciphertext.clone(),
                nonce: self.api_secret_nonce.clone(),
                key_id: self.api_secret_key_id.clone(),
            },
            passphrase,
        }
    }
}

impl<C: ConnectionTrait> Store<C> {
    /// Stores sealed credentials for an account; `AlreadyExists` when that account has some.
    pub async fn insert_credential(
        &self,
        key: &CredentialKey,
        sealed: &SealedCredentials,
        now: DateTime<Utc>,
    ) -> Result<exchange_credential::Model, StoreError> {
        let venue =
            crate::exchange::find_venue(&key.exchange).map_err(|e| StoreError::Invalid {
                what: "credential exchange",
                reason: e.to_string(),
            })?;
        if key.label.trim().is_empty() || key.label.len() > 64 {
            return Err(StoreError::Invalid {
                what: "credential label",
                reason: format!("{:?} must be 1 to 64 characters", key.label),
            });
        }
        let mut am = exchange_credential::ActiveModel {
            principal_id: Set(key.principal_id),
            exchange: Set(venue.name.to_string()),
            testnet: Set(key.testnet),
            label: Set(key.label.clone()),
            created_at: Set(now),
            rotated_at: Set(None),
            ..Default::default()
        };
        sealed.apply(&mut am);
        exchange_credential::Entity::insert(am)
            .exec_with_returning(&self.conn)
            .await
            .map_err(insert_err(
                "credential",
                key.to_string(),
                "storing a credential",
            ))
    }

    /// The credential of an account, if stored.
    pub async fn credential(
        &self,
        key: &CredentialKey,
    ) -> Result<Option<exchange_credential::Model>, StoreError> {
        let exchange = crate::exchange::find_venue(&key.exchange)
            .map(|v| v.name.to_string())
            .unwrap_or_else(|_| key.exchange.clone());
        exchange_credential::Entity::find()
            .filter(Column::PrincipalId.eq(key.principal_id))
            .filter(Column::Exchange.eq(exchange))
            .filter(Column::Testnet.eq(key.testnet))
            .filter(Column::Label.eq(key.label.as_str()))
            .one(&self.conn)
            .await
            .map_err(db_err("reading a credential"))
    }

    /// A principal's credentials, oldest first.
    pub async fn list_credentials(
        &self,
        principal_id: i64,
    ) -> Result<Vec<exchange_credential::Model>, StoreError> {
        exchange_credential::Entity::find()
            .filter(Column::PrincipalId.eq(principal_id))
            .order_by_asc(Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err("listing credentials"))
    }

    /// Replaces the sealed secrets of credential `id` (new secrets, or re-sealed under a new key)
    /// and stamps `rotated_at`.
    pub async fn rotate_credential(
        &self,
        id: i64,
        sealed: &SealedCredentials,
        now: DateTime<Utc>,
    ) -> Result<exchange_credential::Model, StoreError> {
        let passphrase = sealed.passphrase.as_ref();
        let res = exchange_credential::Entity::update_many()
            .col_expr(
                Column::ApiKeyCiphertext,
                Expr::value(sealed.api_key.ciphertext.clone()),
            )
            .col_expr(
                Column::ApiKeyNonce,
                Expr::value(sealed.api_key.nonce.clone()),
            )
            .col_expr(
                Column::ApiKeyKeyId,
                Expr::value(sealed.api_key.key_id.clone()),
            )
            .col_expr(
                Column::ApiSecretCiphertext,
                Expr::value(sealed.api_secret.ciphertext.clone()),
            )
            .col_expr(
                Column::ApiSecretNonce,
                Expr::value(sealed.api_secret.nonce.clone()),
            )
            .col_expr(
                Column::ApiSecretKeyId,
                Expr::value(sealed.api_secret.key_id.clone()),
            )
            .col_expr(
                Column::PassphraseCiphertext,
                Expr::value(passphrase.map(|p| p.ciphertext.clone())),
            )
            .col_expr(
                Column::PassphraseNonce,
                Expr::value(passphrase.map(|p| p.nonce.clone())),
            )
            .col_expr(
                Column::PassphraseKeyId,
                Expr::value(passphrase.map(|p| p.key_id.clone())),
            )
            .col_expr(Column::RotatedAt, Expr::value(Some(now)))
            .filter(Column::Id.eq(id))
            .exec(&self.conn)
            .await
            .map_err(db_err("rotating a credential"))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        exchange_credential::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(db_err("reading a credential"))?
            .ok_or_else(|| not_found(id))
    }

    pub async fn delete_credential(&self, id: i64) -> Result<(), StoreError> {
        let res = exchange_credential::Entity::delete_by_id(id)
            .exec(&self.conn)
            .await
            .map_err(db_err("deleting a credential"))?;
        if res.rows_affected == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        entity: "credential",
        key: id.to_string(),
    }
}
