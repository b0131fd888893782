//! JSON parsing that refuses duplicate member names.
//!
//! RFC 8259 leaves the meaning of `{"active":false,"active":true}` open; parsers differ (first
//! wins, last wins, error). An answer that the AS and tokenward could read differently is not
//! trusted: a duplicate name at any depth makes the whole document an error.
//!
//! Two trees: [`from_slice`] builds a `serde_json::Value` (owned, kept or re-sent), and
//! [`borrowed`] a [`Json`] whose strings point into the text where they can (a JWT's header
//! and claims, read once on each first sight and then dropped). The claim checks read either
//! through [`JsonTree`] and [`JsonObject`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
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

/// Parses `text` as JSON into a tree that borrows its strings from `text` (those without
/// escapes), refusing any object that repeats a member name. Text, not bytes: UTF-8 is
/// checked once by the caller, not again string by string.
pub(crate) fn borrowed(text: &str) -> Result<Json<'_>, Refusal> {
    serde_json::from_str::<Json<'_>>(text).map_err(|e| {
        if e.is_data() && e.to_string().starts_with(DUPLICATE) {
            Refusal::DuplicateName
        } else {
            Refusal::NotJson
        }
    })
}

/// A JSON value as the claim checks see it, whichever tree holds it.
pub(crate) enum View<'v, V: JsonTree> {
    Null,
    Bool(bool),
    /// As `f64` (serde_json's `as_f64`: `None` only with its `arbitrary_precision`, not enabled).
    Number(Option<f64>),
    Text(&'v str),
    List(&'v [V]),
    Object(&'v V::Object),
}

/// A JSON value of either tree.
pub(crate) trait JsonTree: Sized {
    /// Its object type.
    type Object: JsonObject<Value = Self>;
    /// What the value is.
    fn view(&self) -> View<'_, Self>;
    /// The string, if it is one.
    fn as_text(&self) -> Option<&str> {
        match self.view() {
            View::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// A JSON object of either tree.
pub(crate) trait JsonObject {
    /// Its value type.
    type Value: JsonTree<Object = Self>;
    /// The member called `name`.
    fn member(&self, name: &str) -> Option<&Self::Value>;
}

impl JsonTree for Value {
    type Object = Map<String, Value>;

    fn view(&self) -> View<'_, Self> {
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Number(n.as_f64()),
            Value::String(s) => View::Text(s),
            Value::Array(items) => View::List(items),
            Value::Object(members) => View::Object(members),
        }
    }
}

impl JsonObject for Map<String, Value> {
    type Value = Value;

    fn member(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// A JSON value whose strings borrow from the parsed text where they have no escapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// Every number as `f64`, as the claim checks read numbers.
    Number(f64),
    Text(Cow<'a, str>),
    List(Vec<Json<'a>>),
    Object(Members<'a>),
}

/// An object's members in document order (names unique: the parser refuses repeats).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Members<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Members<'a> {
    /// How many members.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether a member name repeats. Small objects: a name is compared with the earlier ones
    /// only when a 64-bit filter of (length, first and last byte) says it may repeat one;
    /// large objects: sorted.
    fn repeats_a_name(&self) -> bool {
        let names = &self.0;
        if names.len() <= 32 {
            let mut seen = 0u64;
            for (i, (name, _)) in names.iter().enumerate() {
                let b = name.as_bytes();
                let (first, last) = (b.first().copied(), b.last().copied());
                let mix = b.len()
                    ^ usize::from(first.unwrap_or(0))
                    ^ (usize::from(last.unwrap_or(0)) << 1);
                let bit = 1u64 << (mix & 63);
                if seen & bit != 0 && names[..i].iter().any(|(other, _)| other == name) {
                    return true;
                }
                seen |= bit;
            }
            return false;
        }
        let mut sorted: Vec<&str> = names.iter().map(|(n, _)| n.as_ref()).collect();
        sorted.sort_unstable();
        sorted.windows(2).any(|pair| pair[0] == pair[1])
    }
}

impl<'a> JsonTree for Json<'a> {
    type Object = Members<'a>;

    fn view(&self) -> View<'_, Self> {
        match self {
            Json::Null => View::Null,
            Json::Bool(b) => View::Bool(*b),
            Json::Number(n) => View::Number(Some(*n)),
            Json::Text(s) => View::Text(s),
            Json::List(items) => View::List(items),
            Json::Object(members) => View::Object(members),
        }
    }
}

impl<'a> JsonObject for Members<'a> {
    type Value = Json<'a>;

    fn member(&self, name: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            // Integers as integers, as they were read (f64 holds them exactly up to 2^53).
            Json::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
                serializer.serialize_i64(*n as i64)
            }
            Json::Number(n) => serializer.serialize_f64(*n),
            Json::Text(s) => serializer.serialize_str(s),
            Json::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(members) => members.serialize(serializer),
        }
    }
}

impl Serialize for Members<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BorrowingVisitor)
    }
}

/// A member name, borrowed when it has no escapes (serde's own `Cow` never borrows).
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

struct BorrowingVisitor;

impl<'de> Visitor<'de> for BorrowingVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
        if v.is_finite() {
            Ok(Json::Number(v))
        } else {
            Err(E::custom("number is not finite"))
        }
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Members(Vec::with_capacity(8));
        while let Some(Name(name)) = map.next_key()? {
            members.0.push((name, map.next_value()?));
        }
        if members.repeats_a_name() {
            // The name itself is AS text: it is not repeated in the error.
            return Err(de::Error::custom(DUPLICATE));
        }
        Ok(Json::Object(members))
    }
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
    fn the_borrowed_tree_refuses_what_the_owned_one_refuses() {
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let wide_dup = format!("{{{},\"k7\":0}}", many.join(","));
        let wide_ok = format!("{{{}}}", many.join(","));
        for doc in [
            r#"{"active":false,"active":true}"#,
            r#"{"active":true,"project":{"id":"a","id":"b"}}"#,
            r#"{"x":[{"k":1},{"k":2,"k":3}]}"#,
            r#"[{"a":{"b":{"c":1,"c":1}}}]"#,
            r#"{"a":1,"\u0061":2}"#,
            &wide_dup,
        ] {
            assert_eq!(borrowed(doc), Err(Refusal::DuplicateName), "{doc}");
        }
        assert!(matches!(borrowed(&wide_ok), Ok(Json::Object(m)) if m.len() == 40));
        for bad in ["{\"a\":1e400}", "{\"a\":1} x", "{\"a\":1,}", "{", "", "nul"] {
            assert_eq!(borrowed(bad), Err(Refusal::NotJson), "{bad}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(borrowed(&deep), Err(Refusal::NotJson));
    }

    #[test]
    fn the_borrowed_tree_reads_as_serde_json_and_borrows_plain_strings() {
        let doc = r#"{"exp":1796422418,"f":-2.5,"n":-3,"s":"plain","e":"caf\u00e9 \"q\"","a":[1,null,false,{"k":"v"}],"o":{"p":{"q":true}}}"#;
        let tree = borrowed(doc).unwrap();
        let plain: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(serde_json::to_value(&tree).unwrap(), plain);
        let Json::Object(members) = &tree else {
            panic!("an object")
        };
        assert!(matches!(
            members.member("s"),
            Some(Json::Text(Cow::Borrowed("plain")))
        ));
        assert!(
            matches!(members.member("e"), Some(Json::Text(Cow::Owned(t))) if t == "café \"q\"")
        );
        assert_eq!(
            members.member("exp").and_then(|v| match v.view() {
                View::Number(n) => n,
                _ => None,
            }),
            Some(1_796_422_418.0)
        );
        assert!(members.member("missing").is_none());
        // The view reads the owned tree alike.
        let Value::Object(map) = &plain else {
            panic!("an object")
        };
        assert_eq!(map.member("s").and_then(JsonTree::as_text), Some("plain"));
        assert!(matches!(map.member("a").map(JsonTree::view), Some(View::List(l)) if l.len() == 4));
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
