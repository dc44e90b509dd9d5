//! Serde helpers for venue wire models: decimals that arrive as strings or JSON numbers, empty
//! strings that mean "none", and millisecond timestamps in either form.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Str(String),
    Num(serde_json::Number),
}

fn parse_decimal_text(s: &str) -> Result<Decimal, String> {
    let s = s.trim();
    Decimal::from_str(s)
        .or_else(|_| Decimal::from_scientific(s))
        .map_err(|e| format!("not a decimal: {s:?}: {e}"))
}

/// A decimal given as `"1.23"` or `1.23`. JSON numbers are read from their shortest round-trip
/// text, so `0.1` becomes exactly `0.1`.
pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Str(s) => parse_decimal_text(&s),
        NumOrStr::Num(n) => parse_decimal_text(&n.to_string()),
    }
    .map_err(serde::de::Error::custom)
}

/// Like [`decimal`], but `null`, a missing field (with `#[serde(default)]`) or `""` is `None`.
pub fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(NumOrStr::Str(s)) => parse_decimal_text(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(NumOrStr::Num(n)) => parse_decimal_text(&n.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// An integer given as `"123"` or `123` (ids and millisecond timestamps).
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Str(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|e| format!("not an integer: {s:?}: {e}")),
        NumOrStr::Num(n) => n.as_i64().ok_or_else(|| format!("not an integer: {n}")),
    }
    .map_err(serde::de::Error::custom)
}

/// An id given as a string or a (possibly 19-digit) JSON number, kept as text.
pub fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Str(s) => Ok(s),
        NumOrStr::Num(n) => Ok(n.to_string()),
    }
}

/// Text given as a string or a number; `null`, a missing field (with `#[serde(default)]`) or
/// `""` is `None`.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(NumOrStr::Str(s)) => Ok(Some(s)),
        Some(NumOrStr::Num(n)) => Ok(Some(n.to_string())),
    }
}

/// An integer (ids, millisecond timestamps) given as a string or a number; `null`, missing or
/// `""` is `None`.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match opt_text(d)? {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("not an integer: {s:?}: {e}"))),
    }
}

/// Milliseconds since the epoch as a UTC time.
pub fn millis_to_time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "decimal")]
        a: Decimal,
        #[serde(default, deserialize_with = "opt_decimal")]
        b: Option<Decimal>,
        #[serde(deserialize_with = "int")]
        c: i64,
        #[serde(deserialize_with = "id_string")]
        d: String,
    }

    #[test]
    fn accepts_strings_and_numbers_exactly() {
        let t: T =
            serde_json::from_str(r#"{"a":0.1,"b":"","c":"17","d":1234567890123456789}"#).unwrap();
        assert_eq!(t.a, dec!(0.1));
        assert_eq!(t.b, None);
        assert_eq!(t.c, 17);
        assert_eq!(t.d, "1234567890123456789");
        let t: T = serde_json::from_str(r#"{"a":"1e-3","b":2.50,"c":5,"d":"x"}"#).unwrap();
        assert_eq!(t.a, dec!(0.001));
        assert_eq!(t.b, Some(dec!(2.5)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(serde_json::from_str::<T>(r#"{"a":"abc","c":1,"d":"x"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a":"1","c":"1.5","d":"x"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a":"1","c":1,"d":"#).is_err());
    }
}
