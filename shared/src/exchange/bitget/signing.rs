//! Bitget request signing: base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath +
//! ('?' + query) + body)) with millisecond epoch timestamps.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The text Bitget signs. `path_and_query` is the request path with `?query` when there is one;
/// `body` is the exact JSON sent (empty for GETs).
pub(super) fn prehash(timestamp: &str, method: &str, path_and_query: &str, body: &str) -> String {
    let mut s =
        String::with_capacity(timestamp.len() + method.len() + path_and_query.len() + body.len());
    s.push_str(timestamp);
    s.push_str(&method.to_ascii_uppercase());
    s.push_str(path_and_query);
    s.push_str(body);
    s
}

/// `ACCESS-SIGN` of `prehash` under `secret`.
pub(super) fn sign(secret: &str, prehash: &str) -> String {
    // HMAC accepts keys of any length, so this never fails; the fallback keeps it panic-free.
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(prehash.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the project's signing-vector file (computed; Bitget documents prehash strings
    // but no expected signature).
    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn documented_prehash_known_answer() {
        let p = prehash(
            "16273667805456",
            "GET",
            "/api/mix/v2/market/depth?symbol=BTCUSDT&limit=20",
            "",
        );
        assert_eq!(
            p,
            "16273667805456GET/api/mix/v2/market/depth?symbol=BTCUSDT&limit=20"
        );
        assert_eq!(
            sign(SECRET, &p),
            "DCasx4dnTCz58C7wvevvTEIT1/aRaS2WFJx8rMSzjUY="
        );
    }

    #[test]
    fn place_order_post_known_answer() {
        let body = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.001","side":"buy","orderType":"market","clientOid":"my-oid-0001"}"#;
        let p = prehash(
            "1700000000000",
            "post",
            "/api/v2/mix/order/place-order",
            body,
        );
        assert_eq!(
            sign(SECRET, &p),
            "mlr5M1G6nNl7V8h987YSWes0q9dF3tqdNBownihQ28c="
        );
    }

    #[test]
    fn get_with_query_known_answers() {
        let p = prehash(
            "1700000000000",
            "GET",
            "/api/v2/mix/order/detail?clientOid=my-oid-0001&productType=USDT-FUTURES&symbol=BTCUSDT",
            "",
        );
        assert_eq!(
            sign(SECRET, &p),
            "o6WdoBzm0j15aZnTYajKeit4SXtFukngCy/SpJAwCac="
        );
        let p = prehash(
            "1700000000000",
            "GET",
            "/api/v2/mix/account/accounts?productType=USDT-FUTURES",
            "",
        );
        assert_eq!(
            sign(SECRET, &p),
            "JNPmUpnnbw8y09ZuIk8skinSyJMbGdgymzE50cGZ0B4="
        );
    }
}
