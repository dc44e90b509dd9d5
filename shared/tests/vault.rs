//! Credential vault behaviour through the public API: known answers (GCM spec + an independent
//! Python vector of our own sealing), tamper and row-swap rejection, key-ring parsing, rotation
//! with a simulated crash, and redaction.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tradefleet::config::VaultConfig;
use tradefleet::exchange::Credentials;
use tradefleet::vault::{
    Binding, FIELD_API_KEY, FIELD_API_SECRET, FIELD_PASSPHRASE, InMemoryRowSource, KeyRing,
    KeyRingError, RotationOptions, Sealed, SealedCredentials, SealedRow, VaultError,
    generate_key_string, rotate_to_newest,
};

const KEY_A: &str = "paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU=";
const KEY_B: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// 32 bytes of 0x5a; must never appear in any Debug or error output.
const KEY_C: &str = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=";

fn kat() -> Value {
    serde_json::from_str(include_str!("fixtures/vault/kat.json")).unwrap()
}

fn ring(spec: &str) -> KeyRing {
    KeyRing::parse(spec).unwrap()
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn creds(key: &str, sec: &str, pass: Option<&str>) -> Credentials {
    Credentials {
        api_key: secret(key),
        api_secret: secret(sec),
        passphrase: pass.map(secret),
    }
}

// ---------- known answers ----------

#[test]
fn aes_256_gcm_matches_the_gcm_spec_vectors() {
    let kat = kat();
    let cases = kat["gcm_spec"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let h = |k: &str| hex::decode(case[k].as_str().unwrap()).unwrap();
        let cipher = Aes256Gcm::new_from_slice(&h("key")).unwrap();
        let iv: [u8; 12] = h("iv").try_into().unwrap();
        let nonce = Nonce::from(iv);
        let aad = h("aad");
        let out = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &h("plaintext"),
                    aad: &aad,
                },
            )
            .unwrap();
        let mut expected = h("ciphertext");
        expected.extend(h("tag"));
        assert_eq!(out, expected, "{}", case["name"]);
        let back = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &out,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(back, h("plaintext"));
    }
}

#[test]
fn opens_the_independently_computed_seal() {
    let kat = kat();
    let s = |k: &str| kat["seal"][k].as_str().unwrap().to_owned();
    let ring = ring(&s("keys"));
    assert_eq!(ring.newest_key_id().as_str(), s("key_id"));
    let (principal, exchange, field) = (s("principal"), s("exchange"), s("field"));
    let binding = Binding::new(&principal, &exchange, &field);
    assert_eq!(
        hex::encode(binding.associated_data(&s("key_id")).unwrap()),
        s("aad_hex")
    );

    let sealed = Sealed::decode(&s("token")).unwrap();
    assert_eq!(sealed.key_id().as_str(), s("key_id"));
    assert_eq!(hex::encode(sealed.nonce()), s("nonce_hex"));
    assert_eq!(
        hex::encode(sealed.ciphertext()),
        s("ciphertext_and_tag_hex")
    );
    assert_eq!(sealed.encode(), s("token"));
    let plain = ring.open(binding, &sealed).unwrap();
    assert_eq!(plain.expose_secret(), s("plaintext"));

    // The same bytes via separate columns.
    let parts = Sealed::from_parts(
        &s("key_id"),
        &hex::decode(s("nonce_hex")).unwrap(),
        hex::decode(s("ciphertext_and_tag_hex")).unwrap(),
    )
    .unwrap();
    assert_eq!(parts, sealed);
}

// ---------- round trips and negatives ----------

#[test]
fn seal_open_round_trip_uses_newest_key() {
    let r = ring(&format!("old:{KEY_A},new:{KEY_B}"));
    let b = Binding::new("u1", "okx", FIELD_API_SECRET);
    let sealed = r.seal(b, &secret("hunter2")).unwrap();
    assert_eq!(sealed.key_id().as_str(), "new");
    assert_eq!(sealed.nonce().len(), 12);
    assert_eq!(sealed.ciphertext().len(), "hunter2".len() + 16);
    assert_eq!(r.open(b, &sealed).unwrap().expose_secret(), "hunter2");
    let again = Sealed::decode(&sealed.encode()).unwrap();
    assert_eq!(r.open(b, &again).unwrap().expose_secret(), "hunter2");
}

fn assert_decrypt_fails(r: &KeyRing, b: Binding<'_>, s: &Sealed) {
    match r.open(b, s) {
        Err(VaultError::Decrypt { key_id }) => assert_eq!(key_id, s.key_id().as_str()),
        other => panic!("expected Decrypt error, got {other:?}"),
    }
}

#[test]
fn tampered_ciphertext_tag_or_nonce_fails() {
    let r = ring(&format!("k1:{KEY_A}"));
    let b = Binding::new("u1", "bybit", FIELD_API_KEY);
    let sealed = r.seal(b, &secret("api-key-123")).unwrap();

    for i in 0..sealed.ciphertext().len() {
        let mut ct = sealed.ciphertext().to_vec();
        ct[i] ^= 0x01;
        let bad = Sealed::from_parts("k1", sealed.nonce(), ct).unwrap();
        assert_decrypt_fails(&r, b, &bad);
    }
    let mut nonce = *sealed.nonce();
    nonce[0] ^= 0x80;
    let bad = Sealed::from_parts("k1", &nonce, sealed.ciphertext().to_vec()).unwrap();
    assert_decrypt_fails(&r, b, &bad);

    // Truncated (tag cut off) is rejected by shape before any decryption.
    let short = Sealed::from_parts("k1", sealed.nonce(), sealed.ciphertext()[..10].to_vec());
    assert!(matches!(short, Err(VaultError::Malformed(_))));
    // The untouched value still opens.
    assert_eq!(r.open(b, &sealed).unwrap().expose_secret(), "api-key-123");
}

#[test]
fn ciphertext_moved_to_another_row_or_field_fails() {
    let r = ring(&format!("k1:{KEY_A}"));
    let home = Binding::new("user-1", "binance", FIELD_API_SECRET);
    let sealed = r.seal(home, &secret("secret-of-user-1")).unwrap();
    assert_decrypt_fails(
        &r,
        Binding::new("user-2", "binance", FIELD_API_SECRET),
        &sealed,
    );
    assert_decrypt_fails(&r, Binding::new("user-1", "okx", FIELD_API_SECRET), &sealed);
    assert_decrypt_fails(
        &r,
        Binding::new("user-1", "binance", FIELD_API_KEY),
        &sealed,
    );
    // Boundary shift between principal and exchange is a different binding too.
    assert_decrypt_fails(
        &r,
        Binding::new("user-1b", "inance", FIELD_API_SECRET),
        &sealed,
    );

    // Whole-row swap: user-2's row holding user-1's sealed credentials.
    let row1 = r
        .seal_credentials("user-1", "okx", &creds("k1", "s1", Some("p1")))
        .unwrap();
    let opened = r.open_credentials("user-1", "okx", &row1).unwrap();
    assert_eq!(opened.api_key.expose_secret(), "k1");
    assert_eq!(opened.api_secret.expose_secret(), "s1");
    assert_eq!(opened.passphrase.unwrap().expose_secret(), "p1");
    assert!(matches!(
        r.open_credentials("user-2", "okx", &row1),
        Err(VaultError::Decrypt { .. })
    ));
    // Field swap inside one row: api_key and api_secret exchanged.
    let swapped = SealedCredentials {
        api_key: row1.api_secret.clone(),
        api_secret: row1.api_key.clone(),
        passphrase: row1.passphrase.clone(),
    };
    assert!(matches!(
        r.open_credentials("user-1", "okx", &swapped),
        Err(VaultError::Decrypt { .. })
    ));
}

#[test]
fn wrong_key_under_the_same_id_and_relabelled_key_id_fail() {
    let b = Binding::new("u1", "htx", FIELD_PASSPHRASE);
    let writer = ring(&format!("k1:{KEY_A},k2:{KEY_B}"));
    let sealed = writer.seal(b, &secret("pass")).unwrap();
    assert_eq!(sealed.key_id().as_str(), "k2");

    // A ring where id k2 names a different key.
    let other = ring(&format!("k1:{KEY_A},k2:{KEY_C}"));
    assert_decrypt_fails(&other, b, &sealed);

    // Relabel the ciphertext with the other key id present in the ring.
    let relabelled =
        Sealed::from_parts("k1", sealed.nonce(), sealed.ciphertext().to_vec()).unwrap();
    assert_decrypt_fails(&writer, b, &relabelled);

    // Even if k1 held the same key bytes, the key id is bound in the AAD.
    let same_bytes = ring(&format!("k1:{KEY_B},k2:{KEY_B}"));
    assert_eq!(same_bytes.open(b, &sealed).unwrap().expose_secret(), "pass");
    assert_decrypt_fails(&same_bytes, b, &relabelled);
}

#[test]
fn unknown_key_id_is_a_typed_error() {
    let b = Binding::new("u1", "kraken", FIELD_API_KEY);
    let sealed = ring(&format!("gone:{KEY_A}"))
        .seal(b, &secret("x"))
        .unwrap();
    match ring(&format!("k1:{KEY_B}")).open(b, &sealed) {
        Err(VaultError::UnknownKeyId { key_id }) => assert_eq!(key_id, "gone"),
        other => panic!("expected UnknownKeyId, got {other:?}"),
    }
}

#[test]
fn malformed_tokens_are_rejected() {
    for bad in [
        "",
        "v1:k1:AAAA",
        "v2:k1:AAECAwQFBgcICQoL:AAAAAAAAAAAAAAAAAAAAAA==",
        "v1:bad id:AAECAwQFBgcICQoL:AAAAAAAAAAAAAAAAAAAAAA==",
        "v1:k1:AAECAwQF:AAAAAAAAAAAAAAAAAAAAAA==",
        "v1:k1:AAECAwQFBgcICQoL:not base64!",
        "v1:k1:AAECAwQFBgcICQoL:AAAA",
        "v1:k1:AAECAwQFBgcICQoL:AAAAAAAAAAAAAAAAAAAAAA==:extra",
    ] {
        assert!(
            matches!(Sealed::decode(bad), Err(VaultError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn reseal_moves_to_newest_and_is_a_no_op_when_current() {
    let b = Binding::new("u9", "bitget", FIELD_API_SECRET);
    let old_ring = ring(&format!("k1:{KEY_A}"));
    let sealed_old = old_ring.seal(b, &secret("rotate-me")).unwrap();

    let r = ring(&format!("k1:{KEY_A},k2:{KEY_B}"));
    assert!(!r.is_current(&sealed_old));
    let resealed = r.reseal(b, &sealed_old).unwrap();
    assert_eq!(resealed.key_id().as_str(), "k2");
    assert!(r.is_current(&resealed));
    assert_eq!(r.open(b, &resealed).unwrap().expose_secret(), "rotate-me");
    // Already newest: unchanged, same nonce.
    assert_eq!(r.reseal(b, &resealed).unwrap(), resealed);
    // Reseal checks the binding before re-encrypting: a moved ciphertext is not laundered.
    assert!(matches!(
        r.reseal(Binding::new("u10", "bitget", FIELD_API_SECRET), &sealed_old),
        Err(VaultError::Decrypt { .. })
    ));
    // The old ciphertext still opens while k1 stays in the ring.
    assert_eq!(r.open(b, &sealed_old).unwrap().expose_secret(), "rotate-me");
}

// ---------- key ring parsing ----------

fn parse_err(spec: &str) -> KeyRingError {
    KeyRing::parse(spec).unwrap_err()
}

#[test]
fn key_ring_parsing_errors_name_the_problem_without_key_material() {
    let short = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="; // 31 bytes
    type Case = (String, fn(&KeyRingError) -> bool, &'static str);
    let cases: Vec<Case> = vec![
        ("".into(), |e| matches!(e, KeyRingError::Empty), "empty"),
        (
            " ,\n, ".into(),
            |e| matches!(e, KeyRingError::Empty),
            "empty",
        ),
        (
            format!("k1{KEY_C}"),
            |e| matches!(e, KeyRingError::MissingSeparator { entry: 1 }),
            "no ':'",
        ),
        (
            format!("k1:{KEY_A},bad/id:{KEY_C}"),
            |e| matches!(e, KeyRingError::InvalidKeyId { entry: 2 }),
            "invalid key id",
        ),
        (
            format!("{KEY_C}:k1"),
            |e| matches!(e, KeyRingError::InvalidKeyId { entry: 1 }),
            "invalid key id",
        ),
        (
            "k1:WlpaWlpa*WlpaWlpa".into(),
            |e| matches!(e, KeyRingError::BadBase64 { entry: 1, .. }),
            "not valid base64",
        ),
        (
            format!("k1:{short}"),
            |e| matches!(e, KeyRingError::WrongLength { len: 31, .. }),
            "31 bytes",
        ),
        (
            format!("k1:{KEY_C}{KEY_C}"),
            |e| {
                matches!(
                    e,
                    KeyRingError::BadBase64 { .. } | KeyRingError::WrongLength { .. }
                )
            },
            "k1",
        ),
        (
            format!("k1:{KEY_A},k2:{KEY_B},k1:{KEY_C}"),
            |e| matches!(e, KeyRingError::DuplicateId { key_id, first: 1, second: 3 } if key_id == "k1"),
            "more than once",
        ),
    ];
    for (spec, is_expected, needle) in cases {
        let e = parse_err(&spec);
        let msg = e.to_string();
        assert!(is_expected(&e), "{spec:?} -> {e:?}");
        assert!(msg.contains(needle), "{msg}");
        assert!(!msg.contains("WlpaWlpa"), "key material in {msg}");
        assert!(
            !format!("{e:?}").contains("WlpaWlpa"),
            "key material in {e:?}"
        );
    }
}

#[test]
fn key_ring_accepts_whitespace_and_newlines_newest_last() {
    let r = ring(&format!("\n  k1:{KEY_A},\n\tk2:{KEY_B}  \r\n k3:{KEY_C}\n"));
    assert_eq!(
        r.key_ids().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["k1", "k2", "k3"]
    );
    assert_eq!(r.newest_key_id().as_str(), "k3");
}

#[test]
fn key_ring_from_config_inline_file_and_missing() {
    let inline = VaultConfig {
        keys: Some(secret(&format!("a:{KEY_A},b:{KEY_B}"))),
        keys_file: None,
    };
    assert_eq!(
        KeyRing::from_config(&inline)
            .unwrap()
            .newest_key_id()
            .as_str(),
        "b"
    );

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "a:{KEY_A}").unwrap();
    writeln!(file, "c:{KEY_C}").unwrap();
    let from_file = VaultConfig {
        keys: None,
        keys_file: Some(file.path().to_path_buf()),
    };
    let r = KeyRing::from_config(&from_file).unwrap();
    assert_eq!(r.newest_key_id().as_str(), "c");

    let none = VaultConfig::default();
    let msg = KeyRing::from_config(&none).unwrap_err().to_string();
    assert!(
        msg.contains("TRADEFLEET__VAULT__KEYS") && msg.contains("TRADEFLEET__VAULT__KEYS_FILE"),
        "{msg}"
    );

    let both = VaultConfig {
        keys: inline.keys.clone(),
        keys_file: from_file.keys_file.clone(),
    };
    assert!(matches!(
        KeyRing::from_config(&both),
        Err(KeyRingError::BothConfigured)
    ));

    let missing = VaultConfig {
        keys: None,
        keys_file: Some("/nonexistent/tradefleet/vault-keys".into()),
    };
    let msg = KeyRing::from_config(&missing).unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/tradefleet/vault-keys"), "{msg}");
}

#[test]
fn generated_keys_and_ephemeral_rings_work() {
    let entry = generate_key_string("k-new").unwrap();
    let r = KeyRing::parse(&format!("old:{KEY_A},{}", entry.expose_secret())).unwrap();
    assert_eq!(r.newest_key_id().as_str(), "k-new");
    assert!(!format!("{entry:?}").contains(entry.expose_secret()));

    let e = KeyRing::ephemeral().unwrap();
    assert!(e.is_ephemeral());
    let b = Binding::new("demo", "paper", FIELD_API_KEY);
    let s = e.seal(b, &secret("demo-key")).unwrap();
    assert_eq!(e.open(b, &s).unwrap().expose_secret(), "demo-key");
    // Another ephemeral ring cannot read it.
    assert!(KeyRing::ephemeral().unwrap().open(b, &s).is_err());
}

// ---------- redaction ----------

#[test]
fn debug_output_holds_no_secrets() {
    let r = ring(&format!("k1:{KEY_A},k2:{KEY_C}"));
    let ring_dbg = format!("{r:?}");
    assert!(
        ring_dbg.contains("k1") && ring_dbg.contains("k2"),
        "{ring_dbg}"
    );
    for needle in ["paWlpa", "WlpaWlpa", "165", "90, 90", "a5a5", "5a5a"] {
        assert!(!ring_dbg.contains(needle), "{ring_dbg}");
    }

    let c = creds("API-KEY-PLAIN", "API-SECRET-PLAIN", Some("PASS-PLAIN"));
    let sealed = r.seal_credentials("u1", "okx", &c).unwrap();
    let opened = r.open_credentials("u1", "okx", &sealed).unwrap();
    let texts = [
        format!("{c:?}"),
        format!("{opened:?}"),
        format!("{sealed:?}"),
        format!("{:?}", sealed.fields()),
        format!("{:?}", opened.api_secret),
    ];
    for text in &texts {
        for plain in ["API-KEY-PLAIN", "API-SECRET-PLAIN", "PASS-PLAIN"] {
            assert!(!text.contains(plain), "{text}");
        }
        assert!(!text.contains("WlpaWlpa"), "{text}");
    }
    // Sealed debug shows key id but not the ciphertext bytes.
    let sdbg = format!("{:?}", sealed.api_key);
    assert!(sdbg.contains("k2"), "{sdbg}");
    assert!(!sdbg.contains(&hex::encode(sealed.api_key.ciphertext())));

    // Errors name key ids, never plaintext.
    let err = r
        .open_credentials("u2", "okx", &sealed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("k2") && !err.contains("PLAIN"), "{err}");
}

// ---------- rotation ----------

fn plaintexts(i: u64) -> (String, String, Option<String>) {
    (
        format!("key-{i}"),
        format!("secret-{i}-\u{00e9}"),
        i.is_multiple_of(3).then(|| format!("pass-{i}")),
    )
}

fn fill(source: &InMemoryRowSource, old: &KeyRing, n: u64) {
    for i in 1..=n {
        let (k, s, p) = plaintexts(i);
        let principal = format!("user-{i}");
        let sealed = old
            .seal_credentials(&principal, "binance", &creds(&k, &s, p.as_deref()))
            .unwrap();
        source.insert(SealedRow {
            id: i * 10,
            principal,
            exchange: "binance".into(),
            fields: sealed.fields(),
        });
    }
}

fn assert_all_current_and_intact(source: &InMemoryRowSource, r: &KeyRing, n: u64) {
    let rows = source.rows();
    assert_eq!(rows.len() as u64, n);
    for row in rows {
        let i = row.id / 10;
        assert!(
            row.fields.iter().all(|f| r.is_current(&f.sealed)),
            "{row:?}"
        );
        let sealed = SealedCredentials::from_fields(&row.fields).unwrap();
        let c = r
            .open_credentials(&row.principal, &row.exchange, &sealed)
            .unwrap();
        let (k, s, p) = plaintexts(i);
        assert_eq!(c.api_key.expose_secret(), k);
        assert_eq!(c.api_secret.expose_secret(), s);
        assert_eq!(
            c.passphrase.as_ref().map(|x| x.expose_secret().to_owned()),
            p
        );
    }
}

#[tokio::test]
async fn rotation_crashes_mid_way_then_resumes_to_completion() {
    let old = ring(&format!("k1:{KEY_A}"));
    let new = ring(&format!("k1:{KEY_A},k2:{KEY_B}"));
    let source = InMemoryRowSource::new();
    fill(&source, &old, 23);

    // Crash after 7 row updates.
    source.fail_after_updates(Some(7));
    let err = rotate_to_newest(
        &new,
        &source,
        RotationOptions {
            batch_size: 5,
            start_after: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.progress.resealed, 7);
    assert_eq!(err.progress.last_id, Some(70));
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let on_new = source
        .rows()
        .iter()
        .filter(|r| r.fields.iter().all(|f| new.is_current(&f.sealed)))
        .count();
    assert_eq!(on_new, 7);
    // Mid-rotation, every row still opens (old and new keys both in the ring).
    for row in source.rows() {
        let sealed = SealedCredentials::from_fields(&row.fields).unwrap();
        assert!(
            new.open_credentials(&row.principal, &row.exchange, &sealed)
                .is_ok()
        );
    }

    // Restart from scratch: already-rotated rows are skipped, not rewritten.
    source.fail_after_updates(None);
    let before = source.update_count();
    let report = rotate_to_newest(
        &new,
        &source,
        RotationOptions {
            batch_size: 4,
            start_after: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.scanned, 23);
    assert_eq!(report.already_current, 7);
    assert_eq!(report.resealed, 16);
    assert!(report.is_complete());
    assert_eq!(source.update_count() - before, 16);
    assert_all_current_and_intact(&source, &new, 23);

    // A third run is a no-op.
    let report = rotate_to_newest(&new, &source, RotationOptions::default())
        .await
        .unwrap();
    assert_eq!((report.scanned, report.resealed), (23, 0));
}

#[tokio::test]
async fn rotation_resumes_from_the_reported_cursor() {
    let old = ring(&format!("k1:{KEY_A}"));
    let new = ring(&format!("k1:{KEY_A},k2:{KEY_B}"));
    let source = InMemoryRowSource::new();
    fill(&source, &old, 12);
    source.fail_after_updates(Some(5));
    let err = rotate_to_newest(
        &new,
        &source,
        RotationOptions {
            batch_size: 3,
            start_after: None,
        },
    )
    .await
    .unwrap_err();
    source.fail_after_updates(None);
    let report = rotate_to_newest(
        &new,
        &source,
        RotationOptions {
            batch_size: 3,
            start_after: err.progress.last_id,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.scanned, 7);
    assert_eq!(report.resealed, 7);
    assert_all_current_and_intact(&source, &new, 12);
}

#[tokio::test]
async fn rotation_reports_undecryptable_rows_and_carries_on() {
    let old = ring(&format!("k1:{KEY_A}"));
    let new = ring(&format!("k1:{KEY_A},k2:{KEY_B}"));
    let source = InMemoryRowSource::new();
    fill(&source, &old, 4);
    // Row 20 holds row 30's fields (a copied row): it must not be laundered into a valid seal.
    let mut bad = source.get(20).unwrap();
    bad.fields = source.get(30).unwrap().fields;
    source.insert(bad.clone());

    let report = rotate_to_newest(&new, &source, RotationOptions::default())
        .await
        .unwrap();
    assert_eq!(report.resealed, 3);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].id, 20);
    assert!(matches!(
        report.failures[0].error,
        VaultError::Decrypt { .. }
    ));
    assert!(!report.is_complete());
    assert_eq!(source.get(20).unwrap(), bad);
}

#[tokio::test]
async fn rotation_does_not_overwrite_a_concurrent_write() {
    use async_trait::async_trait;
    use tradefleet::vault::{RowSourceError, SealedField, SealedRowSource, UpdateOutcome};

    /// Wraps the in-memory source: just before the first update, a "user" replaces row 10.
    struct Racing<'a> {
        inner: &'a InMemoryRowSource,
        ring: &'a KeyRing,
        raced: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl SealedRowSource for Racing<'_> {
        type Id = u64;
        async fn next_batch(
            &self,
            after: Option<&u64>,
            limit: u32,
        ) -> Result<Vec<SealedRow<u64>>, RowSourceError> {
            self.inner.next_batch(after, limit).await
        }
        async fn update(
            &self,
            id: &u64,
            expected: &[SealedField],
            new: &[SealedField],
        ) -> Result<UpdateOutcome, RowSourceError> {
            if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let fresh = self
                    .ring
                    .seal_credentials("user-1", "binance", &creds("NEW", "NEWSECRET", None))
                    .unwrap();
                let mut row = self.inner.get(10).unwrap();
                row.fields = fresh.fields();
                self.inner.insert(row);
            }
            self.inner.update(id, expected, new).await
        }
    }

    let old = ring(&format!("k1:{KEY_A}"));
    let new = ring(&format!("k1:{KEY_A},k2:{KEY_B}"));
    let source = InMemoryRowSource::new();
    fill(&source, &old, 3);
    let racing = Racing {
        inner: &source,
        ring: &new,
        raced: false.into(),
    };
    let report = rotate_to_newest(&new, &racing, RotationOptions::default())
        .await
        .unwrap();
    assert_eq!(report.conflicts, 1);
    assert_eq!(report.resealed, 2);
    let row = source.get(10).unwrap();
    let c = new
        .open_credentials(
            "user-1",
            "binance",
            &SealedCredentials::from_fields(&row.fields).unwrap(),
        )
        .unwrap();
    assert_eq!(c.api_secret.expose_secret(), "NEWSECRET");
}
