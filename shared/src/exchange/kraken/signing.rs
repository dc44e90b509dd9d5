//! Kraken Futures request signing: `Authent` = base64(HMAC-SHA512(base64-decoded secret,
//! SHA-256(postData + nonce + endpointPath))), plus a strictly increasing nonce.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use super::VENUE;
use crate::exchange::ExchangeError;

/// Secrets are standard base64; padding is optional and stray trailing bits are tolerated, as other
/// clients do (Kraken's own documentation example has both quirks).
const SECRET_DECODER: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The path Kraken signs: the request path without the `/derivatives` prefix
/// (`/derivatives/api/v3/sendorder` -> `/api/v3/sendorder`; `/api/history/v2/orders` unchanged).
pub(super) fn endpoint_path(path: &str) -> &str {
    path.strip_prefix("/derivatives").unwrap_or(path)
}

/// The `Authent` value for one request.
pub(super) fn authent(
    secret: &[u8],
    post_data: &str,
    nonce: &str,
    endpoint_path: &str,
) -> Result<String, ExchangeError> {
    let mut sha = Sha256::new();
    sha.update(post_data.as_bytes());
    sha.update(nonce.as_bytes());
    sha.update(endpoint_path.as_bytes());
    let digest = sha.finalize();
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).map_err(|_| ExchangeError::Config {
        venue: VENUE,
        message: "API secret cannot be used as an HMAC key".into(),
    })?;
    mac.update(&digest);
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// The credentials in the form signing needs. `Debug` shows nothing secret.
pub(super) struct Signer {
    api_key: SecretString,
    secret: Zeroizing<Vec<u8>>,
    last_nonce: AtomicI64,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("api_key", &"[REDACTED]")
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Headers of one signed request.
pub(super) struct SignedHeaders {
    pub api_key: String,
    pub nonce: String,
    pub authent: String,
}

impl fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Decode the base64 secret once; a secret that is not base64 is a configuration error.
    pub(super) fn new(api_key: SecretString, secret: &SecretString) -> Result<Self, ExchangeError> {
        if api_key.expose_secret().trim().is_empty() {
            return Err(ExchangeError::Config {
                venue: VENUE,
                message: "API key is empty".into(),
            });
        }
        let decoded = SECRET_DECODER
            .decode(secret.expose_secret().trim())
            .map_err(|_| ExchangeError::Config {
                venue: VENUE,
                // Never echo the secret or the decoder's message (it quotes offending bytes).
                message: "API secret is not valid base64 (Kraken secrets are base64 strings)"
                    .into(),
            })?;
        if decoded.is_empty() {
            return Err(ExchangeError::Config {
                venue: VENUE,
                message: "API secret is empty".into(),
            });
        }
        Ok(Self {
            api_key,
            secret: Zeroizing::new(decoded),
            last_nonce: AtomicI64::new(0),
        })
    }

    /// A nonce above every earlier one of this instance: the clock in milliseconds, bumped by one
    /// when two requests fall in the same millisecond (or the clock steps back).
    pub(super) fn next_nonce(&self, now_ms: i64) -> i64 {
        let mut prev = self.last_nonce.load(Ordering::Relaxed);
        loop {
            let next = now_ms.max(prev.saturating_add(1));
            match self.last_nonce.compare_exchange_weak(
                prev,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }

    /// Sign `post_data` (the URL-encoded query string exactly as sent) for `path`.
    pub(super) fn sign(
        &self,
        post_data: &str,
        path: &str,
        now_ms: i64,
    ) -> Result<SignedHeaders, ExchangeError> {
        let nonce = self.next_nonce(now_ms).to_string();
        let authent = authent(&self.secret, post_data, &nonce, endpoint_path(path))?;
        Ok(SignedHeaders {
            api_key: self.api_key.expose_secret().to_string(),
            nonce,
            authent,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &str =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

    fn key(secret: &str) -> Vec<u8> {
        SECRET_DECODER.decode(secret).unwrap()
    }

    #[test]
    fn known_answer_vectors() {
        // Vectors K1..K6 of the research notes (K2 is python-kraken-sdk's golden value).
        let doc = "rttp4AzwRfYEdQ7R7X8Z/04Y4TZPa97pqCypi3xXxAqftygftnI6H9yGV+OcUOOJeFtZkr8mVwbAndU3Kz4Q+eG";
        assert_eq!(
            authent(
                &key(doc),
                "symbol=fi_xbtusd_180615",
                "1415957147987",
                "/api/v3/orderbook"
            )
            .unwrap(),
            "DqUyz8Wh/72af7dimSXHw91IFxrAriTgVodyg2s67PU2mVStwLDQak+uIoCtfb43XONq0xVAp+vm5dqnhFAB1Q=="
        );
        assert_eq!(
            authent(
                &key("cHl0aG9uLWtyYWtlbi1zZGsgdW5pdC10ZXN0IHNlY3JldCB2YWx1ZQ=="),
                "orderType=lmt&symbol=PI_XBTUSD",
                "1616492376594",
                endpoint_path("/derivatives/api/v3/sendorder"),
            )
            .unwrap(),
            "Txi+gJVXe3EN1brXYQ46FuV6UVtEVSKhc6dYMhPb7a/HXZLGvO6m9UUg+KVKqhLxrbllOPI7qRkHYmPfJZZSGA=="
        );
        let k = key(SECRET);
        assert_eq!(
            authent(&k, "", "1700000000000", "/api/v3/openpositions").unwrap(),
            "2q2yvX9QiSmcwXgvAeGBYLjKoq3iQy/wcAFyfDhCdDt+ntK4q/60gnEijCnI0/X/1HlI3PIM7nq0toC/DC7U0w=="
        );
        let pd = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=0.0001&limitPrice=50000&cliOrdId=my-oid-0001";
        assert_eq!(
            authent(&k, pd, "1700000000000", "/api/v3/sendorder").unwrap(),
            "zP9TXUe9D4AfzUnHhCZexhRl4ZREsiTZX30BOZ4cVFd662YiaU1qCZRWwGztkhj8LfR3zVcjRHlQn3VyEdYzbg=="
        );
        assert_eq!(
            authent(&k, pd, "", "/api/v3/sendorder").unwrap(),
            "yef/EAszbusvx2+NuFsK99xinVuFRjiWHDa2wREVUK2NlpPNpKhxmSm+8eEve+DNKV7aTp8HyfTqgtaleyCKbQ=="
        );
        assert_eq!(
            authent(
                &k,
                "symbol=PF_XBTUSD&maxLeverage=5",
                "1700000000000",
                "/api/v3/leveragepreferences"
            )
            .unwrap(),
            "A4/KCvQIWzcSqZus9fK3gmEjN691rT+yCiLzHGPSWbNZQTlPsOjiGlYSfid8zHA17LX4DjLPvqwl11cDvN4j3w=="
        );
    }

    #[test]
    fn signer_strips_derivatives_prefix_and_keeps_history_paths() {
        assert_eq!(
            endpoint_path("/derivatives/api/v3/accounts"),
            "/api/v3/accounts"
        );
        assert_eq!(
            endpoint_path("/api/history/v2/orders"),
            "/api/history/v2/orders"
        );
        let s = Signer::new(SecretString::from("key"), &SecretString::from(SECRET)).unwrap();
        let h = s
            .sign("", "/derivatives/api/v3/openpositions", 1_700_000_000_000)
            .unwrap();
        assert_eq!(h.nonce, "1700000000000");
        assert_eq!(
            h.authent,
            "2q2yvX9QiSmcwXgvAeGBYLjKoq3iQy/wcAFyfDhCdDt+ntK4q/60gnEijCnI0/X/1HlI3PIM7nq0toC/DC7U0w=="
        );
    }

    #[test]
    fn nonces_strictly_increase_even_when_the_clock_does_not() {
        let s = Signer::new(SecretString::from("key"), &SecretString::from(SECRET)).unwrap();
        assert_eq!(s.next_nonce(1_000), 1_000);
        assert_eq!(s.next_nonce(1_000), 1_001);
        assert_eq!(s.next_nonce(900), 1_002);
        assert_eq!(s.next_nonce(5_000), 5_000);
    }

    #[test]
    fn bad_secrets_are_config_errors_and_never_leak() {
        for bad in ["not base64 at all!", "", "   ", "@@@@"] {
            let err = Signer::new(SecretString::from("key"), &SecretString::from(bad)).unwrap_err();
            assert_eq!(err.kind(), "config", "{bad:?}");
            if !bad.trim().is_empty() {
                assert!(!err.to_string().contains(bad.trim()));
            }
        }
        let s = Signer::new(SecretString::from("pubkey123"), &SecretString::from(SECRET)).unwrap();
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("pubkey123") && !dbg.contains("AAECAw"),
            "{dbg}"
        );
    }
}
