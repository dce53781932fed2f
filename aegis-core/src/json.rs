//! Strict JSON: duplicate object keys rejected at any depth; RFC 8785 canonical serialization.

use std::fmt;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Parses JSON into `T`, rejecting duplicate object keys anywhere in the document.
///
/// serde_json keeps the last of duplicate keys; a signer and a verifier that disagree on which
/// duplicate wins is a classic token-confusion bug, so Aegis refuses such input outright.
pub fn from_str_strict<T: DeserializeOwned>(json: &str) -> Result<T> {
    let value = parse_value_strict(json)?;
    serde_json::from_value(value).map_err(|e| Error::malformed_request(format!("invalid json: {e}")))
}

/// Parses a JSON value, rejecting duplicate object keys anywhere in the document.
pub fn parse_value_strict(json: &str) -> Result<Value> {
    let StrictValue(value) = serde_json::from_str(json).map_err(|e| Error::malformed_request(format!("invalid json: {e}")))?;
    Ok(value)
}

/// A `serde_json::Value` whose deserialization fails on duplicate keys.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<StrictValue, E> {
        Number::from_f64(v).map(|n| StrictValue(Value::Number(n))).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> std::result::Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_none<E>(self) -> std::result::Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<StrictValue, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let StrictValue(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(StrictValue(Value::Object(map)))
    }
}

/// Serializes a JSON value per RFC 8785 (JCS) with the maintained `serde_jcs`: members sorted
/// by UTF-16 code units, no whitespace, numbers as ECMAScript prints IEEE doubles.
pub(crate) fn canonical_json(value: &Value) -> String {
    // Serializing a `Value` cannot fail; an empty string would still never match a digest.
    serde_jcs::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(parse_value_strict(r#"{"a":1,"a":2}"#).is_err());
        assert!(parse_value_strict(r#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_value_strict(r#"[{"x":[{"y":1,"y":2}]}]"#).is_err());
        assert!(parse_value_strict(r#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn canonical_form_sorts_by_utf16_and_strips_whitespace() {
        let v = parse_value_strict("{ \"b\": [1, 2.0, \"x\\n\"], \"a\": true, \"\u{e000}\": 1, \"\u{1f600}\": 2 }").unwrap();
        // U+1F600 is a surrogate pair (0xD83D...) and sorts before U+E000 in UTF-16.
        assert_eq!(canonical_json(&v), "{\"a\":true,\"b\":[1,2,\"x\\n\"],\"\u{1f600}\":2,\"\u{e000}\":1}");
        assert_eq!(canonical_json(&json!({"z": null, "y": -5})), r#"{"y":-5,"z":null}"#);
    }

    /// RFC 8785's number rules, where the hand-written serializer once deviated: exponents
    /// carry a sign, and integers are printed as the IEEE double they denote.
    #[test]
    fn numbers_follow_ecmascript() {
        let v = parse_value_strict("[1e21, 1e-7, 123456789012345680000, 0.1, -0, 9007199254740993]").unwrap();
        assert_eq!(canonical_json(&v), "[1e+21,1e-7,123456789012345680000,0.1,0,9007199254740992]");
    }
}
