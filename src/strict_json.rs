//! JSON parsing that refuses duplicate member names.
//!
//! RFC 8259 leaves the meaning of `{"active":false,"active":true}` open; parsers differ (first
//! wins, last wins, error). An answer that the AS and tokenward could read differently is not
//! trusted: a duplicate name at any depth makes the whole document an error.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

const DUPLICATE: &str = "duplicate member name in an object";

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An object repeats a member name.
    DuplicateName,
    /// Not JSON (syntax, a number beyond `f64`, nesting deeper than 128, trailing data).
    NotJson,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DuplicateName => DUPLICATE,
            Self::NotJson => "not JSON",
        })
    }
}

/// Parses `bytes` as JSON, refusing any object that repeats a member name.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| {
            if e.is_data() && e.to_string().starts_with(DUPLICATE) {
                Refusal::DuplicateName
            } else {
                Refusal::NotJson
            }
        })
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            // One hash per member: the slot found for the check is the one filled.
            match members.entry(name) {
                // The name itself is AS text: it is not repeated in the error.
                Entry::Occupied(_) => return Err(de::Error::custom(DUPLICATE)),
                Entry::Vacant(slot) => {
                    let Strict(value) = map.next_value()?;
                    slot.insert(value);
                }
            }
        }
        Ok(Strict(Value::Object(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        for doc in [
            r#"{"active":false,"active":true}"#,
            r#"{"active":true,"project":{"id":"a","id":"b"}}"#,
            r#"{"x":[{"k":1},{"k":2,"k":3}]}"#,
            r#"[{"a":{"b":{"c":1,"c":1}}}]"#,
        ] {
            assert_eq!(
                from_slice(doc.as_bytes()),
                Err(Refusal::DuplicateName),
                "{doc}"
            );
        }
    }

    #[test]
    fn everything_else_parses_as_serde_json_does() {
        for doc in [
            r#"{"active":true,"exp":1e20,"n":-3,"u":18446744073709551615,"big":1000000000000000000000000000000,"s":"\u00e9","a":[1,null,false,{"k":"v"}],"o":{}}"#,
            r#"{"a":{"k":1},"b":{"k":1}}"#,
            "[]",
            "null",
            "\"text\"",
        ] {
            let strict = from_slice(doc.as_bytes()).unwrap();
            let plain: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(strict, plain, "{doc}");
        }
        let order = from_slice(br#"{"z":1,"a":2}"#).unwrap();
        assert_eq!(
            order.to_string(),
            r#"{"z":1,"a":2}"#,
            "member order is kept"
        );
        assert_eq!(from_slice(b"{\"a\":1e400}"), Err(Refusal::NotJson));
        assert_eq!(from_slice(b"{\"a\":1} x"), Err(Refusal::NotJson));
        assert_eq!(from_slice(b"{\"a\":1,}"), Err(Refusal::NotJson));
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(
            from_slice(deep.as_bytes()),
            Err(Refusal::NotJson),
            "recursion is bounded"
        );
    }
}
