//! Credential vault: AES-256-GCM with a key ring; secrets bound to their row by associated data.
//!
//! - [`KeyRing`]: master keys by id, newest last (`TRADEFLEET__VAULT__KEYS` or a keys file).
//! - [`KeyRing::seal`] / [`KeyRing::open`]: one secret, bound to `(principal, exchange, field,
//!   key id)`; see [`seal`] for the associated-data and storage formats.
//! - [`SealedCredentials`]: the sealed fields of one `exchange_credentials` row.
//! - [`rotate_to_newest`]: re-seal every row under the newest key, resumably.
//!
//! Decrypted secrets only come back as `SecretString`; no `Debug` or error shows key material
//! or plaintext.

mod credentials;
mod keyring;
mod rotate;
pub mod seal;

pub use credentials::{
    FIELD_API_KEY, FIELD_API_SECRET, FIELD_PASSPHRASE, SealedCredentials, SealedField,
};
pub use keyring::{KEY_LEN, KeyId, KeyRing, KeyRingError, generate_key_string};
pub use rotate::{
    InMemoryRowSource, RotationError, RotationOptions, RotationReport, RowFailure, RowSourceError,
    SealedRow, SealedRowSource, UpdateOutcome, rotate_to_newest,
};
pub use seal::{Binding, NONCE_LEN, Sealed, TAG_LEN, VaultError};
