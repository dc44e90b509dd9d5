//! Sealing one secret: AES-256-GCM under the ring's newest key with a fresh random 96-bit nonce,
//! the associated data binding the ciphertext to its row, field and key id.
//!
//! # Associated data (format v1)
//!
//! ```text
//! aad = "tradefleet.vault.v1"            (19 ASCII bytes, fixed)
//!    || u32be(len(principal)) || principal
//!    || u32be(len(exchange))  || exchange
//!    || u32be(len(field))     || field
//!    || u32be(len(key_id))    || key_id
//! ```
//!
//! Strings are UTF-8, lengths are their byte lengths. The length prefixes make the encoding
//! unambiguous (`("ab","c")` and `("a","bc")` differ), so a ciphertext copied to another
//! principal, exchange or field - or relabelled with another key id - fails authentication.
//!
//! # Stored form
//!
//! [`Sealed`] holds bytes: the key id, the 12-byte nonce and `ciphertext || 16-byte tag`.
//! [`Sealed::encode`] gives one portable text token per secret field, which is what the
//! `exchange_credentials` table stores (one TEXT column per field, same on PostgreSQL and SQLite):
//!
//! ```text
//! v1:<key_id>:<base64(nonce)>:<base64(ciphertext || tag)>      (standard base64, padded)
//! ```

use std::fmt;

use aes_gcm::Nonce;
use aes_gcm::aead::{Aead, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use super::keyring::{KeyId, KeyRing, KeyRingError, MasterKey};

/// Nonce length of AES-GCM as used here (96 bits).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length appended to every ciphertext.
pub const TAG_LEN: usize = 16;

const AAD_LABEL: &[u8] = b"tradefleet.vault.v1";
const TOKEN_VERSION: &str = "v1";

/// What went wrong sealing or opening a secret. Messages never include key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "secret is sealed with vault key {key_id:?}, which is not in the key ring \
         (was an old key removed before rotation finished?)"
    )]
    UnknownKeyId { key_id: String },
    #[error(
        "secret sealed with vault key {key_id:?} failed authentication: tampered data, a wrong \
         key under that id, or a ciphertext moved from another row or field"
    )]
    Decrypt { key_id: String },
    #[error("cannot seal secret: {0}")]
    Encrypt(&'static str),
    #[error("malformed sealed value: {0}")]
    Malformed(&'static str),
    #[error("decrypted secret is not valid UTF-8")]
    NotUtf8,
    #[error("sealed credentials lack the required field {0:?}")]
    MissingField(&'static str),
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
}

/// Where a secret belongs. All three parts are bound into the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The owner of the secret (user or account id, as the store spells it).
    pub principal: &'a str,
    /// Venue registry name (`binance`, ...).
    pub exchange: &'a str,
    /// Field name (`api_key`, `api_secret`, `passphrase`, ...).
    pub field: &'a str,
}

impl<'a> Binding<'a> {
    pub fn new(principal: &'a str, exchange: &'a str, field: &'a str) -> Self {
        Self {
            principal,
            exchange,
            field,
        }
    }

    /// The canonical associated data (see the module docs) for a seal under `key_id`.
    pub fn associated_data(&self, key_id: &str) -> Result<Vec<u8>, VaultError> {
        let parts = [self.principal, self.exchange, self.field, key_id];
        let mut aad =
            Vec::with_capacity(AAD_LABEL.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
        aad.extend_from_slice(AAD_LABEL);
        for part in parts {
            let len = u32::try_from(part.len())
                .map_err(|_| VaultError::Encrypt("a binding part is longer than 4 GiB"))?;
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        Ok(aad)
    }
}

/// One encrypted secret as stored: key id, nonce, `ciphertext || tag`. Not secret itself, but
/// `Debug` shows only the key id and sizes.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl Sealed {
    /// From stored parts (e.g. separate columns). Checks shapes only; authenticity is checked
    /// when opening.
    pub fn from_parts(
        key_id: &str,
        nonce: &[u8],
        ciphertext: Vec<u8>,
    ) -> Result<Sealed, VaultError> {
        let key_id =
            KeyId::parse(key_id).ok_or(VaultError::Malformed("key id is not well formed"))?;
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| VaultError::Malformed("nonce is not 12 bytes"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(VaultError::Malformed(
                "ciphertext is shorter than the 16-byte tag",
            ));
        }
        Ok(Sealed {
            key_id,
            nonce,
            ciphertext,
        })
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// `ciphertext || tag`.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The text token `v1:<key_id>:<base64 nonce>:<base64 ciphertext||tag>`.
    pub fn encode(&self) -> String {
        format!(
            "{TOKEN_VERSION}:{}:{}:{}",
            self.key_id,
            STANDARD.encode(self.nonce),
            STANDARD.encode(&self.ciphertext)
        )
    }

    /// Parses a token made by [`Sealed::encode`].
    pub fn decode(token: &str) -> Result<Sealed, VaultError> {
        let mut parts = token.trim().split(':');
        let (Some(version), Some(key_id), Some(nonce), Some(ciphertext), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(VaultError::Malformed(
                "expected v1:<key_id>:<nonce>:<ciphertext>",
            ));
        };
        if version != TOKEN_VERSION {
            return Err(VaultError::Malformed("unknown sealed token version"));
        }
        let nonce = STANDARD
            .decode(nonce)
            .map_err(|_| VaultError::Malformed("nonce is not valid base64"))?;
        let ciphertext = STANDARD
            .decode(ciphertext)
            .map_err(|_| VaultError::Malformed("ciphertext is not valid base64"))?;
        Sealed::from_parts(key_id, &nonce, ciphertext)
    }
}

impl KeyRing {
    /// Encrypts `plaintext` for `binding` under the newest key with a fresh random nonce.
    pub fn seal(
        &self,
        binding: Binding<'_>,
        plaintext: &SecretString,
    ) -> Result<Sealed, VaultError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        seal_with(
            self.newest(),
            binding,
            plaintext.expose_secret().as_bytes(),
            nonce,
        )
    }

    /// Decrypts `sealed` for `binding` with the key its id names.
    pub fn open(&self, binding: Binding<'_>, sealed: &Sealed) -> Result<SecretString, VaultError> {
        let key = self
            .get(sealed.key_id.as_str())
            .ok_or_else(|| VaultError::UnknownKeyId {
                key_id: sealed.key_id.to_string(),
            })?;
        let aad = binding.associated_data(sealed.key_id.as_str())?;
        let nonce = Nonce::from(sealed.nonce);
        let plaintext = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Decrypt {
                key_id: sealed.key_id.to_string(),
            })?;
        // The buffer moves into the `SecretString` (zeroized on drop) without a copy; on
        // failure it is wiped here.
        match String::from_utf8(plaintext) {
            Ok(text) => Ok(SecretString::from(text)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(VaultError::NotUtf8)
            }
        }
    }

    /// True when `sealed` is under the newest key (nothing for rotation to do).
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id == self.newest().id
    }

    /// Re-encrypts `sealed` under the newest key (after checking it opens for `binding`).
    /// Already on the newest key: returned unchanged.
    pub fn reseal(&self, binding: Binding<'_>, sealed: &Sealed) -> Result<Sealed, VaultError> {
        if self.is_current(sealed) {
            return Ok(sealed.clone());
        }
        let plaintext = self.open(binding, sealed)?;
        self.seal(binding, &plaintext)
    }
}

fn seal_with(
    key: &MasterKey,
    binding: Binding<'_>,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Sealed, VaultError> {
    let aad = binding.associated_data(key.id.as_str())?;
    let ciphertext = key
        .cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Encrypt("plaintext too long for AES-GCM"))?;
    Ok(Sealed {
        key_id: key.id.clone(),
        nonce,
        ciphertext,
    })
}

/// Sealing with a caller-chosen nonce, for known-answer tests only. Production code always uses
/// [`KeyRing::seal`] (random nonce): reusing a nonce under one key breaks GCM.
#[cfg(test)]
pub(super) fn seal_with_fixed_nonce(
    ring: &KeyRing,
    binding: Binding<'_>,
    plaintext: &str,
    nonce: [u8; NONCE_LEN],
) -> Result<Sealed, VaultError> {
    seal_with(ring.newest(), binding, plaintext.as_bytes(), nonce)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Our own sealing, byte for byte, against the vector computed independently by
    /// `tests/fixtures/vault/kat.py` (Python `cryptography`).
    #[test]
    fn seal_matches_the_python_known_answer() {
        let kat: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/vault/kat.json")).unwrap();
        let seal = &kat["seal"];
        let s = |k: &str| seal[k].as_str().unwrap().to_owned();
        let ring = KeyRing::parse(&s("keys")).unwrap();
        let binding = Binding::new(
            seal["principal"].as_str().unwrap(),
            seal["exchange"].as_str().unwrap(),
            seal["field"].as_str().unwrap(),
        );
        assert_eq!(
            hex::encode(binding.associated_data(&s("key_id")).unwrap()),
            s("aad_hex")
        );
        let nonce: [u8; NONCE_LEN] = hex::decode(s("nonce_hex")).unwrap().try_into().unwrap();
        let sealed = seal_with_fixed_nonce(&ring, binding, &s("plaintext"), nonce).unwrap();
        assert_eq!(sealed.key_id().as_str(), s("key_id"));
        assert_eq!(
            hex::encode(sealed.ciphertext()),
            s("ciphertext_and_tag_hex")
        );
        assert_eq!(sealed.encode(), s("token"));
    }

    #[test]
    fn vault_types_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<KeyRing>();
        send_sync::<Sealed>();
    }

    #[test]
    fn aad_length_prefixes_disambiguate() {
        let a = Binding::new("ab", "c", "f").associated_data("k").unwrap();
        let b = Binding::new("a", "bc", "f").associated_data("k").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn fresh_nonce_per_seal() {
        let ring = KeyRing::ephemeral().unwrap();
        let b = Binding::new("u1", "binance", "api_key");
        let p = SecretString::from("same plaintext");
        let x = ring.seal(b, &p).unwrap();
        let y = ring.seal(b, &p).unwrap();
        assert_ne!(x.nonce(), y.nonce());
        assert_ne!(x.ciphertext(), y.ciphertext());
    }
}
