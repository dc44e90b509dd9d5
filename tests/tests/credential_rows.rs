//! The SQL side of the vault on both backends: credentials sealed for a row open only for that
//! row, and the rotation row source re-seals in place with a compare-and-set that refuses rows
//! changed since they were read (a concurrent credential update is never overwritten).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use tradefleet::clock::{Clock, ManualClock};
use tradefleet::exchange::Credentials;
use tradefleet::store::{CredentialKey, CredentialRowSource, open_credentials, seal_credentials};
use tradefleet::vault::{
    KeyRing, RotationOptions, SealedRowSource, UpdateOutcome, VaultError, rotate_to_newest,
};
use tradefleet_tests::test_both_backends;

const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap()
}

fn creds(key: &str, passphrase: Option<&str>) -> Credentials {
    Credentials {
        api_key: SecretString::from(key.to_string()),
        api_secret: SecretString::from(format!("{key}-secret")),
        passphrase: passphrase.map(|p| SecretString::from(p.to_string())),
    }
}

test_both_backends!(
    async fn rows_open_only_for_their_principal_and_rotate_in_place(db) {
        let store = db.store();
        let old = KeyRing::parse(K1).unwrap();
        let both = KeyRing::parse(&format!("{K1},{K2}")).unwrap();
        let alice = store.create_principal("alice", t0()).await.unwrap();
        let bob = store.create_principal("bob", t0()).await.unwrap();
        let mut ids = Vec::new();
        for (p, exchange, key, pass) in [
            (alice.id, "okx", "AK1", Some("PP1")),
            (alice.id, "binance", "AK2", None),
            (bob.id, "binance", "BK1", None),
        ] {
            let sealed = seal_credentials(&old, p, exchange, &creds(key, pass)).unwrap();
            let row = store
                .insert_credential(
                    &CredentialKey {
                        principal_id: p,
                        exchange: exchange.into(),
                        testnet: false,
                        label: "default".into(),
                    },
                    &sealed,
                    t0(),
                )
                .await
                .unwrap();
            ids.push(row.id);
        }
        let rows = store.list_credentials(alice.id).await.unwrap();
        let opened = open_credentials(&old, &rows[0]).unwrap();
        assert_eq!(opened.api_key.expose_secret(), "AK1");
        assert_eq!(opened.passphrase.unwrap().expose_secret(), "PP1");
        // A row's ciphertext moved to another principal does not open.
        let mut moved = rows[1].clone();
        moved.principal_id = bob.id;
        assert!(matches!(
            open_credentials(&old, &moved),
            Err(VaultError::Decrypt { .. })
        ));

        let clock = Arc::new(ManualClock::new(t0()));
        let source = CredentialRowSource::new(store.clone(), clock.clone());
        let batch = source.next_batch(None, 2).await.unwrap();
        assert_eq!(batch.iter().map(|r| r.id).collect::<Vec<_>>(), ids[..2]);
        assert_eq!(batch[0].principal, alice.id.to_string());
        let after = source.next_batch(Some(&ids[1]), 10).await.unwrap();
        assert_eq!(after.len(), 1);

        // Stale expectations are refused without writing.
        let fresh = seal_credentials(&both, alice.id, "okx", &creds("AK1", Some("PP1"))).unwrap();
        let fresh_fields = fresh.to_vault().unwrap().fields();
        let stale = seal_credentials(&old, alice.id, "okx", &creds("AK1", Some("PP1")))
            .unwrap()
            .to_vault()
            .unwrap()
            .fields();
        assert_eq!(
            source.update(&ids[0], &stale, &fresh_fields).await.unwrap(),
            UpdateOutcome::Conflict
        );
        assert_eq!(
            source
                .update(&ids[0], &batch[0].fields, &fresh_fields)
                .await
                .unwrap(),
            UpdateOutcome::Updated
        );
        let row = store.list_credentials(alice.id).await.unwrap().remove(0);
        assert_eq!(row.api_key_key_id, "k2");
        assert_eq!(row.rotated_at, Some(clock.now()));
        // The same stale read again: the row has moved on.
        assert_eq!(
            source
                .update(&ids[0], &batch[0].fields, &fresh_fields)
                .await
                .unwrap(),
            UpdateOutcome::Conflict
        );

        // The driver finishes the rest; afterwards every row opens with k2 alone.
        let report = rotate_to_newest(&both, &source, RotationOptions::default())
            .await
            .unwrap();
        assert_eq!(
            (report.scanned, report.resealed, report.already_current),
            (3, 2, 1)
        );
        assert!(report.is_complete());
        let new_only = KeyRing::parse(K2).unwrap();
        for p in [alice.id, bob.id] {
            for row in store.list_credentials(p).await.unwrap() {
                let c = open_credentials(&new_only, &row).unwrap();
                assert!(c.api_secret.expose_secret().ends_with("-secret"));
                assert_eq!(row.api_secret_key_id, "k2");
                assert_eq!(row.passphrase_key_id.is_some(), row.exchange == "okx");
            }
        }
    }
);
