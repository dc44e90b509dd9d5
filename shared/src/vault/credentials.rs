//! Exchange credentials as the `exchange_credentials` table holds them: one sealed value per
//! secret field, each bound to `(principal, exchange, field)`.

use super::keyring::KeyRing;
use super::seal::{Binding, Sealed, VaultError};
use crate::exchange::Credentials;

/// Field name (and associated-data field) of the API key.
pub const FIELD_API_KEY: &str = "api_key";
/// Field name of the API secret.
pub const FIELD_API_SECRET: &str = "api_secret";
/// Field name of the optional passphrase (OKX, Bitget).
pub const FIELD_PASSPHRASE: &str = "passphrase";

/// One named sealed field of a row (the unit the rotation driver works on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedField {
    pub name: String,
    pub sealed: Sealed,
}

/// The sealed secret fields of one credentials row. `Debug` shows key ids and sizes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCredentials {
    pub api_key: Sealed,
    pub api_secret: Sealed,
    pub passphrase: Option<Sealed>,
}

impl SealedCredentials {
    /// The fields by name, for a store-agnostic consumer such as rotation.
    pub fn fields(&self) -> Vec<SealedField> {
        let mut out = vec![
            SealedField {
                name: FIELD_API_KEY.to_owned(),
                sealed: self.api_key.clone(),
            },
            SealedField {
                name: FIELD_API_SECRET.to_owned(),
                sealed: self.api_secret.clone(),
            },
        ];
        if let Some(p) = &self.passphrase {
            out.push(SealedField {
                name: FIELD_PASSPHRASE.to_owned(),
                sealed: p.clone(),
            });
        }
        out
    }

    /// Back from named fields; unknown names are ignored, missing required ones are an error.
    pub fn from_fields(fields: &[SealedField]) -> Result<SealedCredentials, VaultError> {
        let find = |name: &str| {
            fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.sealed.clone())
        };
        Ok(SealedCredentials {
            api_key: find(FIELD_API_KEY).ok_or(VaultError::MissingField(FIELD_API_KEY))?,
            api_secret: find(FIELD_API_SECRET).ok_or(VaultError::MissingField(FIELD_API_SECRET))?,
            passphrase: find(FIELD_PASSPHRASE),
        })
    }
}

impl KeyRing {
    /// Seals every secret of `credentials` for `(principal, exchange)` under the newest key.
    pub fn seal_credentials(
        &self,
        principal: &str,
        exchange: &str,
        credentials: &Credentials,
    ) -> Result<SealedCredentials, VaultError> {
        let b = |field| Binding::new(principal, exchange, field);
        Ok(SealedCredentials {
            api_key: self.seal(b(FIELD_API_KEY), &credentials.api_key)?,
            api_secret: self.seal(b(FIELD_API_SECRET), &credentials.api_secret)?,
            passphrase: credentials
                .passphrase
                .as_ref()
                .map(|p| self.seal(b(FIELD_PASSPHRASE), p))
                .transpose()?,
        })
    }

    /// Opens a row's sealed secrets for `(principal, exchange)`.
    pub fn open_credentials(
        &self,
        principal: &str,
        exchange: &str,
        sealed: &SealedCredentials,
    ) -> Result<Credentials, VaultError> {
        let b = |field| Binding::new(principal, exchange, field);
        Ok(Credentials {
            api_key: self.open(b(FIELD_API_KEY), &sealed.api_key)?,
            api_secret: self.open(b(FIELD_API_SECRET), &sealed.api_secret)?,
            passphrase: sealed
                .passphrase
                .as_ref()
                .map(|p| self.open(b(FIELD_PASSPHRASE), p))
                .transpose()?,
        })
    }
}
