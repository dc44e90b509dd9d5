//! Glue between the vault and the `exchange_credentials` table: how a row's secrets are sealed
//! and opened (the binding convention), and the SQL [`SealedRowSource`] key rotation runs on.
//!
//! Binding convention: the vault's `principal` is the principal's numeric id as decimal text
//! (stable, unlike a name), `exchange` is the venue's registry name as stored in the row, and the
//! field names are the vault's `api_key` / `api_secret` / `passphrase`.

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::credentials::{SealedCredentials, SealedSecret};
use super::entities::exchange_credential::{self, Column};
use super::{Store, StoreError, db_err};
use crate::clock::Clock;
use crate::exchange::Credentials;
use crate::vault::{self, KeyRing, RowSourceError, SealedField, SealedRow, SealedRowSource};
use crate::vault::{UpdateOutcome, VaultError};

/// The vault binding's principal for a principal id.
pub fn vault_principal(principal_id: i64) -> String {
    principal_id.to_string()
}

impl From<&vault::Sealed> for SealedSecret {
    fn from(s: &vault::Sealed) -> Self {
        SealedSecret {
            ciphertext: s.ciphertext().to_vec(),
            nonce: s.nonce().to_vec(),
            key_id: s.key_id().to_string(),
        }
    }
}

impl SealedSecret {
    /// As the vault's type; `Malformed` when the stored parts have the wrong shape.
    pub fn to_vault(&self) -> Result<vault::Sealed, VaultError> {
        vault::Sealed::from_parts(&self.key_id, &self.nonce, self.ciphertext.clone())
    }
}

impl From<&vault::SealedCredentials> for SealedCredentials {
    fn from(s: &vault::SealedCredentials) -> Self {
        SealedCredentials {
            api_key: (&s.api_key).into(),
            api_secret: (&s.api_secret).into(),
            passphrase: s.passphrase.as_ref().map(Into::into),
        }
    }
}

impl SealedCredentials {
    /// As the vault's type; `Malformed` when a stored part has the wrong shape.
    pub fn to_vault(&self) -> Result<vault::SealedCredentials, VaultError> {
        Ok(vault::SealedCredentials {
            api_key: self.api_key.to_vault()?,
            api_secret: self.api_secret.to_vault()?,
            passphrase: self.passphrase.as_ref().map(|p| p.to_vault()).transpose()?,
        })
    }
}

/// Seals `credentials` for a row of `principal_id` on venue `exchange` (registry name) under the
/// ring's newest key, ready for [`Store::insert_credential`] or [`Store::rotate_credential`].
pub fn seal_credentials(
    ring: &KeyRing,
    principal_id: i64,
    exchange: &str,
    credentials: &Credentials,
) -> Result<SealedCredentials, VaultError> {
    let sealed = ring.seal_credentials(&vault_principal(principal_id), exchange, credentials)?;
    Ok((&sealed).into())
}

/// Opens the secrets of a stored credential row.
pub fn open_credentials(
    ring: &KeyRing,
    row: &exchange_credential::Model,
) -> Result<Credentials, VaultError> {
    let sealed = row.sealed().to_vault()?;
    ring.open_credentials(&vault_principal(row.principal_id), &row.exchange, &sealed)
}

/// The `exchange_credentials` table as a [`SealedRowSource`] for
/// [`vault::rotate_to_newest`]: rows in id order, each update a compare-and-set on the nonces
/// it read (one `UPDATE ... WHERE` statement), stamping `rotated_at` from `clock`.
#[derive(Debug, Clone)]
pub struct CredentialRowSource {
    store: Store<DatabaseConnection>,
    clock: Arc<dyn Clock>,
}

impl CredentialRowSource {
    pub fn new(store: Store<DatabaseConnection>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

fn source_err(e: impl std::error::Error + Send + Sync + 'static) -> RowSourceError {
    RowSourceError(Box::new(e))
}

fn row_of(m: &exchange_credential::Model) -> Result<SealedRow<i64>, RowSourceError> {
    let sealed = m.sealed().to_vault().map_err(|e| {
        RowSourceError::msg(format!(
            "credential {} has a malformed sealed value: {e}",
            m.id
        ))
    })?;
    Ok(SealedRow {
        id: m.id,
        principal: vault_principal(m.principal_id),
        exchange: m.exchange.clone(),
        fields: sealed.fields(),
    })
}

#[async_trait]
impl SealedRowSource for CredentialRowSource {
    type Id = i64;

    async fn next_batch(
        &self,
        after: Option<&i64>,
        limit: u32,
    ) -> Result<Vec<SealedRow<i64>>, RowSourceError> {
        let mut q = exchange_credential::Entity::find();
        if let Some(after) = after {
            q = q.filter(Column::Id.gt(*after));
        }
        let rows = q
            .order_by_asc(Column::Id)
            .limit(u64::from(limit))
            .all(self.store.connection())
            .await
            .map_err(|e| source_err(db_err("reading credentials to rotate")(e)))?;
        rows.iter().map(row_of).collect()
    }

    async fn update(
        &self,
        id: &i64,
        expected: &[SealedField],
        new: &[SealedField],
    ) -> Result<UpdateOutcome, RowSourceError> {
        let expected = vault::SealedCredentials::from_fields(expected).map_err(source_err)?;
        let new: SealedCredentials =
            (&vault::SealedCredentials::from_fields(new).map_err(source_err)?).into();
        let affected = compare_and_set(&self.store, *id, &expected, &new, self.clock.now())
            .await
            .map_err(source_err)?;
        Ok(if affected == 1 {
            UpdateOutcome::Updated
        } else {
            UpdateOutcome::Conflict
        })
    }
}

/// Replaces the sealed fields of row `id` only while it still holds `expected` (same nonces, same
/// passphrase presence). Returns the number of rows changed (0 or 1).
async fn compare_and_set<C: ConnectionTrait>(
    store: &Store<C>,
    id: i64,
    expected: &vault::SealedCredentials,
    new: &SealedCredentials,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, StoreError> {
    let passphrase = new.passphrase.as_ref();
    let mut update = exchange_credential::Entity::update_many()
        .col_expr(
            Column::ApiKeyCiphertext,
            Expr::value(new.api_key.ciphertext.clone()),
        )
        .col_expr(Column::ApiKeyNonce, Expr::value(new.api_key.nonce.clone()))
        .col_expr(Column::ApiKeyKeyId, Expr::value(new.api_key.key_id.clone()))
        .col_expr(
            Column::ApiSecretCiphertext,
            Expr::value(new.api_secret.ciphertext.clone()),
        )
        .col_expr(
            Column::ApiSecretNonce,
            Expr::value(new.api_secret.nonce.clone()),
        )
        .col_expr(
            Column::ApiSecretKeyId,
            Expr::value(new.api_secret.key_id.clone()),
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
        .filter(Column::ApiKeyNonce.eq(expected.api_key.nonce().to_vec()))
        .filter(Column::ApiKeyKeyId.eq(expected.api_key.key_id().as_str()))
        .filter(Column::ApiSecretNonce.eq(expected.api_secret.nonce().to_vec()))
        .filter(Column::ApiSecretKeyId.eq(expected.api_secret.key_id().as_str()));
    update = match &expected.passphrase {
        Some(p) => update.filter(Column::PassphraseNonce.eq(p.nonce().to_vec())),
        None => update.filter(Column::PassphraseNonce.is_null()),
    };
    let res = update
        .exec(store.connection())
        .await
        .map_err(db_err("re-sealing a credential"))?;
    Ok(res.rows_affected)
}
