//! The master-key ring: parses `id:base64key` entries (newest last) from config or a mounted
//! file, keeps the keys zeroized-on-drop, and picks the key for each seal / open.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::config::VaultConfig;

/// Length of a master key in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Longest key id accepted.
const MAX_KEY_ID_LEN: usize = 64;

/// Why a key ring could not be built. Never carries key material: entries are named by
/// position (1-based) and, once the id is known to be well formed, by id.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(
        "no vault key configured: set TRADEFLEET__VAULT__KEYS or TRADEFLEET__VAULT__KEYS_FILE \
         (generate one with `fleetctl vault gen-key`)"
    )]
    NotConfigured,
    #[error(
        "both vault.keys and vault.keys_file are set: keep one (TRADEFLEET__VAULT__KEYS or \
         TRADEFLEET__VAULT__KEYS_FILE)"
    )]
    BothConfigured,
    #[error("the vault key list is empty: expected `id:base64key` entries, comma-separated")]
    Empty,
    #[error("vault key entry #{entry} has no ':' between key id and key (expected `id:base64key`)")]
    MissingSeparator { entry: usize },
    #[error(
        "vault key entry #{entry} has an invalid key id: use 1-64 characters of A-Z a-z 0-9 . _ -"
    )]
    InvalidKeyId { entry: usize },
    #[error("vault key entry #{entry} (id {key_id:?}): the key is not valid base64")]
    BadBase64 { entry: usize, key_id: String },
    #[error(
        "vault key entry #{entry} (id {key_id:?}): the key decodes to {len} bytes, expected exactly 32"
    )]
    WrongLength {
        entry: usize,
        key_id: String,
        len: usize,
    },
    #[error("vault key id {key_id:?} appears more than once (entries #{first} and #{second})")]
    DuplicateId {
        key_id: String,
        first: usize,
        second: usize,
    },
    #[error("cannot read vault keys file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the operating system random generator failed: {0}")]
    Random(String),
}

/// The id of a master key: 1-64 characters of `A-Z a-z 0-9 . _ -`. Not secret; stored with every
/// ciphertext and bound into its associated data.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// A well-formed id, or `None`.
    pub fn parse(id: &str) -> Option<KeyId> {
        let ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| KeyId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One master key, ready to use. The cipher (expanded key schedule) is zeroized on drop
/// (aes-gcm `zeroize` feature); the raw key bytes only live in a `Zeroizing` buffer while parsing.
pub(super) struct MasterKey {
    pub(super) id: KeyId,
    pub(super) cipher: Aes256Gcm,
}

/// Master keys by id, newest last. New seals use the newest; opening picks the key named by the
/// sealed value. `Debug` shows key ids only.
pub struct KeyRing {
    /// Older keys, oldest first (still used to open what they sealed).
    older: Vec<MasterKey>,
    /// The key new seals use; a separate field so a ring can never be empty.
    newest: MasterKey,
    ephemeral: bool,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl KeyRing {
    /// From the configuration: `vault.keys` (inline) or `vault.keys_file` (e.g. a Kubernetes
    /// secret mount), exactly one of them.
    pub fn from_config(config: &VaultConfig) -> Result<KeyRing, KeyRingError> {
        match (&config.keys, &config.keys_file) {
            (Some(_), Some(_)) => Err(KeyRingError::BothConfigured),
            (Some(keys), None) => KeyRing::parse(keys.expose_secret()),
            (None, Some(path)) => KeyRing::from_file(path),
            (None, None) => Err(KeyRingError::NotConfigured),
        }
    }

    /// Reads `path` (same format as [`KeyRing::parse`]; newlines allowed). Blocking file I/O:
    /// meant for start-up.
    pub fn from_file(path: &Path) -> Result<KeyRing, KeyRingError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            KeyRingError::ReadFile {
                path: path.to_path_buf(),
                source,
            }
        })?);
        KeyRing::parse(&text)
    }

    /// Parses `id:base64key` entries separated by commas and/or whitespace (newlines), newest
    /// last. Keys are standard base64 (padding optional) of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<KeyRing, KeyRingError> {
        let mut keys: Vec<MasterKey> = Vec::new();
        let entries = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty());
        for (index, entry) in entries.enumerate() {
            let number = index + 1;
            let (id, encoded) = entry
                .split_once(':')
                .ok_or(KeyRingError::MissingSeparator { entry: number })?;
            let id = KeyId::parse(id).ok_or(KeyRingError::InvalidKeyId { entry: number })?;
            if let Some(first) = keys.iter().position(|k| k.id == id) {
                return Err(KeyRingError::DuplicateId {
                    key_id: id.0,
                    first: first + 1,
                    second: number,
                });
            }
            let bytes = decode_key(encoded).ok_or_else(|| KeyRingError::BadBase64 {
                entry: number,
                key_id: id.0.clone(),
            })?;
            if bytes.len() != KEY_LEN {
                return Err(KeyRingError::WrongLength {
                    entry: number,
                    key_id: id.0,
                    len: bytes.len(),
                });
            }
            let cipher =
                Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyRingError::WrongLength {
                    entry: number,
                    key_id: id.0.clone(),
                    len: bytes.len(),
                })?;
            keys.push(MasterKey { id, cipher });
        }
        let newest = keys.pop().ok_or(KeyRingError::Empty)?;
        Ok(KeyRing {
            older: keys,
            newest,
            ephemeral: false,
        })
    }

    /// A ring with one random key that exists only in this process: anything sealed with it is
    /// unreadable after exit. For demos (`fleetctl demo` must tell the user so); see
    /// [`KeyRing::is_ephemeral`].
    pub fn ephemeral() -> Result<KeyRing, KeyRingError> {
        let key = random_key()?;
        let suffix: u32 = rand::random();
        let id = KeyId(format!("ephemeral-{suffix:08x}"));
        let cipher = Aes256Gcm::new_from_slice(key.as_ref())
            .map_err(|_| KeyRingError::Random("generated key has the wrong length".to_owned()))?;
        Ok(KeyRing {
            older: Vec::new(),
            newest: MasterKey { id, cipher },
            ephemeral: true,
        })
    }

    /// True for a ring made by [`KeyRing::ephemeral`].
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The key new seals use (the last configured).
    pub fn newest_key_id(&self) -> &KeyId {
        &self.newest().id
    }

    /// All key ids, oldest first.
    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.older
            .iter()
            .chain(std::iter::once(&self.newest))
            .map(|k| &k.id)
    }

    pub(super) fn newest(&self) -> &MasterKey {
        &self.newest
    }

    pub(super) fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.newest)
            .chain(self.older.iter())
            .find(|k| k.id.as_str() == id)
    }
}

fn decode_key(encoded: &str) -> Option<Zeroizing<Vec<u8>>> {
    STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .ok()
        .map(Zeroizing::new)
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, KeyRingError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rngs::OsRng
        .try_fill_bytes(key.as_mut())
        .map_err(|e| KeyRingError::Random(e.to_string()))?;
    Ok(key)
}

/// A fresh `id:base64key` entry for operators (`fleetctl vault gen-key`): append it to the end of
/// `TRADEFLEET__VAULT__KEYS` (comma-separated) to make it the newest key.
pub fn generate_key_string(id: &str) -> Result<SecretString, KeyRingError> {
    let id = KeyId::parse(id).ok_or(KeyRingError::InvalidKeyId { entry: 1 })?;
    let key = random_key()?;
    let encoded = Zeroizing::new(STANDARD.encode(key.as_ref()));
    Ok(SecretString::from(format!("{id}:{}", encoded.as_str())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn key_ids_are_restricted() {
        assert!(KeyId::parse("k-2026.01_a").is_some());
        assert!(KeyId::parse("").is_none());
        assert!(KeyId::parse("has space").is_none());
        assert!(KeyId::parse("a=").is_none());
        assert!(KeyId::parse(&"x".repeat(65)).is_none());
        assert!(KeyId::parse(&"x".repeat(64)).is_some());
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let ring = KeyRing::parse(&format!("k1:{}", K1.trim_end_matches('='))).unwrap();
        assert_eq!(ring.newest_key_id().as_str(), "k1");
    }

    #[test]
    fn ephemeral_rings_differ_and_say_so() {
        let a = KeyRing::ephemeral().unwrap();
        let b = KeyRing::ephemeral().unwrap();
        assert!(a.is_ephemeral());
        assert!(!KeyRing::parse(&format!("k1:{K1}")).unwrap().is_ephemeral());
        assert!(a.newest_key_id().as_str().starts_with("ephemeral-"));
        assert_ne!(a.newest_key_id(), b.newest_key_id());
    }

    #[test]
    fn generated_key_strings_parse() {
        let s = generate_key_string("k7").unwrap();
        let ring = KeyRing::parse(s.expose_secret()).unwrap();
        assert_eq!(ring.newest_key_id().as_str(), "k7");
        assert!(generate_key_string("bad id").is_err());
        assert_ne!(
            generate_key_string("k7").unwrap().expose_secret(),
            s.expose_secret()
        );
    }
}
