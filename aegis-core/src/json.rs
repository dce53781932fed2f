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
    let StrictValue(value) = serde_json::from_str(json)
        .map_err(|e| Error::malformed_request(format!("invalid json: {e}")))?;
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
        Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
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

/// Serializes a JSON value per RFC 8785 (JCS): object members sorted by their UTF-16 code
/// units, no whitespace, ECMAScript number formatting for the integers and floats Aegis accepts.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        // ECMAScript prints integral doubles below 1e21 without a fraction or exponent.
        if f.fract() == 0.0 && f.abs() < 1e21 {
            out.push_str(&format!("{f:.0}"));
        } else {
            out.push_str(&n.to_string());
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json escapes exactly what JCS requires: `"`, `\`, and control characters, with
    // the short forms for \b \f \n \r \t and lowercase \u00xx otherwise.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // INVARIANT: serializing a `&str` cannot fail; keep a valid encoding anyway.
        Err(_) => out.push_str("\"\""),
    }
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
}
