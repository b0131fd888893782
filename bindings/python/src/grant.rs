//! The Python objects of an accepted token, made once per grant and kept in the grant's door
//! slot, so that a cache hit builds only what each request must own.
//!
//! They are built with no lock held and then offered to the slot (one compare-and-swap, see
//! `tokenward::Grant::offer_door_data`): a thread holding the GIL never waits for another
//! thread's build, which may itself need the GIL. Two threads may build for one new grant at
//! once; the first to store wins and the other's objects are dropped. A failed build stores
//! nothing, so the next request with the token tries again.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// What a request with this grant gets: the identity keys for the environ, and a template of
/// `external.token_info` to copy.
pub(crate) struct PyGrant {
    /// environ key → value, in the order of the core's headers.
    pub(crate) identity: Py<PyDict>,
    /// The stripped environ keys `identity` does not overwrite: those a request with this
    /// grant must delete before the application sees the environ.
    pub(crate) unwritten: Box<[Py<PyString>]>,
    /// keystonemiddleware's `token_data`.
    pub(crate) token_info: Template,
}

/// A JSON object made of Python objects, with the path to each dict or list inside it, so
/// that a copy that shares no dict or list with it costs one shallow copy per container.
pub(crate) struct Template {
    root: Py<PyDict>,
    containers: Box<[(Py<PyAny>, Node)]>,
}

/// A dict or list inside a template, reached from its parent by a key or an index.
enum Node {
    Dict(Template),
    List {
        template: Py<PyList>,
        containers: Box<[(usize, Node)]>,
    },
}

impl Template {
    /// A new dict with the template's contents, sharing no dict or list with it (or with any
    /// earlier copy); the strings and numbers, immutable, are shared.
    pub(crate) fn fresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let copy = self.root.bind(py).copy()?;
        for (key, node) in &self.containers {
            copy.set_item(key.bind(py), node.fresh(py)?)?;
        }
        Ok(copy)
    }
}

impl Node {
    fn fresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Node::Dict(template) => Ok(template.fresh(py)?.into_any()),
            Node::List {
                template,
                containers,
            } => {
                let template = template.bind(py);
                let copy = template.get_slice(0, template.len());
                for (index, node) in containers {
                    copy.set_item(*index, node.fresh(py)?)?;
                }
                Ok(copy.into_any())
            }
        }
    }
}

/// One object for equal short strings of different grants (a member name, a user id, a
/// role): a cache hit reads its grant's values, and when many grants are in use, values they
/// share stay in the CPU's cache where copies of their own would not (`benches/bench_scale.py`
/// part 6); and a grant's objects are built from text without asking Python to intern or
/// allocate a string already held. Bounded: a pool is emptied when full.
pub(crate) struct SharedStrings {
    /// Member names, interned (as a name in the application's code is).
    names: Pool,
    values: Pool,
}

/// Text → str. Every use holds the GIL, so the lock is never contended (it makes the pool
/// `Sync`); it is never held across a call that could run Python code (making a str runs
/// none). One hash per lookup (foldhash, seeded per process; a pool is bounded, so colliding
/// names cost at most a full pool's probe), and a key is allocated only when inserted.
struct Pool {
    held: Mutex<HashMap<Box<str>, Py<PyString>>>,
    interned: bool,
}

impl Pool {
    fn new(interned: bool) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            interned,
        }
    }

    fn get<'py>(&self, py: Python<'py>, text: &str) -> Bound<'py, PyString> {
        let make = |text: &str| match self.interned {
            true => PyString::intern(py, text),
            false => PyString::new(py, text),
        };
        if text.len() > SharedStrings::LONGEST {
            return make(text);
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.len() >= SharedStrings::CAPACITY && !held.contains_key(text) {
            let emptied = std::mem::take(&mut *held);
            drop(held);
            drop(emptied); // the references are released with the lock free
            held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        }
        match held.entry_ref(text) {
            EntryRef::Occupied(found) => found.get().bind(py).clone(),
            EntryRef::Vacant(slot) => {
                let string = make(text);
                slot.insert_with_key(text.into(), string.clone().unbind());
                string
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

impl SharedStrings {
    /// Strings held at most, per pool.
    pub(crate) const CAPACITY: usize = 4096;
    /// Longer strings are not shared (unique ones, such as a JWT, would only churn a pool).
    pub(crate) const LONGEST: usize = 256;

    pub(crate) fn new() -> Self {
        Self {
            names: Pool::new(true),
            values: Pool::new(false),
        }
    }

    /// A str equal to `text`, for a value.
    pub(crate) fn value<'py>(&self, py: Python<'py>, text: &str) -> Bound<'py, PyString> {
        self.values.get(py, text)
    }

    /// An interned str equal to `text`, for a member name.
    fn name<'py>(&self, py: Python<'py>, text: &str) -> Bound<'py, PyString> {
        self.names.get(py, text)
    }
}

impl PyGrant {
    /// Builds the objects of `grant`: environ keys from the door's table, values and the
    /// `token_info` template from the grant (its JSON read straight into Python objects).
    pub(crate) fn build<'py>(
        py: Python<'py>,
        grant: &tokenward::Grant,
        environ_key: impl Fn(&'static str) -> Bound<'py, PyString>,
        stripped: &[(&'static str, Py<PyString>)],
        strings: &SharedStrings,
    ) -> PyResult<Self> {
        let identity = PyDict::new(py);
        for (header, value) in grant.headers() {
            identity.set_item(environ_key(header.name), strings.value(py, value))?;
        }
        let written = |name: &str| {
            grant
                .headers()
                .iter()
                .any(|(header, _)| header.name.eq_ignore_ascii_case(name))
        };
        let unwritten = stripped
            .iter()
            .filter(|(name, _)| !written(name))
            .map(|(_, key)| key.clone_ref(py))
            .collect();
        Ok(Self {
            identity: identity.unbind(),
            unwritten,
            token_info: template_of_json(py, grant.token_info_json(), strings)?,
        })
    }
}

/// A JSON object's template, its text read by serde straight into Python objects (no
/// `json.loads`); numbers as `json.loads` makes them (an integer an `int`, anything else a
/// `float`), object members in their order.
pub(crate) fn template_of_json(
    py: Python<'_>,
    json: &str,
    strings: &SharedStrings,
) -> PyResult<Template> {
    let failure = RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_str(json);
    // token_info holds the claims one level down: as deep as the core's parser allows, plus
    // one (the reader is this crate's own, on text the core wrote).
    reader.disable_recursion_limit();
    let built = Build {
        py,
        failure: &failure,
        strings,
    }
    .deserialize(&mut reader)
    .and_then(|built| reader.end().map(|()| built));
    if let Some(err) = failure.into_inner() {
        return Err(err);
    }
    match built {
        Ok((value, Some(Node::Dict(template)))) if value.is_instance_of::<PyDict>() => Ok(template),
        Ok(_) => Err(pyo3::exceptions::PyValueError::new_err(
            "token_info is not a JSON object",
        )),
        Err(e) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "token_info is not JSON: {e}"
        ))),
    }
}

/// Builds one JSON value as Python objects, and its [`Node`] when it is a dict or a list. A
/// Python error (say a `MemoryError`) is kept in `failure` and ends the read.
struct Build<'a, 'py> {
    py: Python<'py>,
    failure: &'a RefCell<Option<PyErr>>,
    strings: &'a SharedStrings,
}

type Built<'py> = (Bound<'py, PyAny>, Option<Node>);

impl<'a, 'py> Build<'a, 'py> {
    fn again(&self) -> Self {
        Build {
            py: self.py,
            failure: self.failure,
            strings: self.strings,
        }
    }

    fn fail<E: de::Error>(&self, err: PyErr) -> E {
        *self.failure.borrow_mut() = Some(err);
        E::custom("a Python error")
    }
}

impl<'de, 'py> DeserializeSeed<'de> for Build<'_, 'py> {
    type Value = Built<'py>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for Build<'_, 'py> {
    type Value = Built<'py>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok((PyBool::new(self.py, v).to_owned().into_any(), None))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok((PyInt::new(self.py, v).into_any(), None))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok((PyInt::new(self.py, v).into_any(), None))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok((PyFloat::new(self.py, v).into_any(), None))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((self.strings.value(self.py, v).into_any(), None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((self.py.None().into_bound(self.py), None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        let mut containers = Vec::new();
        while let Some((value, node)) = seq.next_element_seed(self.again())? {
            if let Some(node) = node {
                containers.push((items.len(), node));
            }
            items.push(value);
        }
        let list = match PyList::new(self.py, items) {
            Ok(list) => list,
            Err(e) => return Err(self.fail(e)),
        };
        let node = Node::List {
            template: list.clone().unbind(),
            containers: containers.into_boxed_slice(),
        };
        Ok((list.into_any(), Some(node)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.py);
        let mut containers = Vec::new();
        while let Some(key) = map.next_key_seed(Key(self.py, self.strings))? {
            let (value, node) = map.next_value_seed(self.again())?;
            if let Err(e) = dict.set_item(&key, &value) {
                return Err(self.fail(e));
            }
            if let Some(node) = node {
                containers.push((key.unbind(), node));
            }
        }
        let template = Template {
            root: dict.clone().unbind(),
            containers: containers.into_boxed_slice(),
        };
        Ok((dict.into_any(), Some(Node::Dict(template))))
    }
}

/// A member name, as an interned str: names repeat across grants (`exp`, `roles`, ...), so
/// every template shares one object for each.
struct Key<'a, 'py>(Python<'py>, &'a SharedStrings);

impl<'de, 'py> DeserializeSeed<'de> for Key<'_, 'py> {
    type Value = Bound<'py, PyAny>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'py> Visitor<'de> for Key<'_, 'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.1.name(self.0, v).into_any())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each document, read by `template_of_json` and copied, equals `json.loads` of it, with
    /// the same types at every level (an int stays an int, a float a float) and the same
    /// member order; two copies share no dict or list.
    #[test]
    fn templates_read_json_as_json_loads_does() {
        Python::initialize();
        Python::attach(|py| {
            let loads = py.import("json").unwrap().getattr("loads").unwrap();
            let mutate = PyModule::from_code(
                py,
                c"def mutate(v):\n    if isinstance(v, dict):\n        for x in list(v.values()):\n            mutate(x)\n        v.clear()\n        v['x'] = 1\n    elif isinstance(v, list):\n        for x in v:\n            mutate(x)\n        v.clear()\n        v.append(1)\n",
                c"mutate.py",
                c"mutate",
            )
            .unwrap()
            .getattr("mutate")
            .unwrap();
            let deep = format!("{{\"d\":{}1{}}}", "[".repeat(140), "]".repeat(140));
            let docs = [
                r#"{}"#,
                r#"{"b":1,"a":2,"c":{"z":[],"y":{}}}"#,
                r#"{"n":[0,-1,18446744073709551615,-9223372036854775808,1.5,-0.0,1e30,1.0e-7,2.0]}"#,
                r#"{"s":"caf\u00e9 \ud83d\ude00 \"q\" \\ \n","t":true,"f":false,"z":null}"#,
                r#"{"roles":["a",["b",{"c":[1,{"d":2}]}]],"project":{"domain":{"id":"x"}}}"#,
                deep.as_str(),
            ];
            for doc in docs {
                let template = template_of_json(py, doc, &SharedStrings::new()).unwrap();
                let (a, b) = (template.fresh(py).unwrap(), template.fresh(py).unwrap());
                let want = loads.call1((doc,)).unwrap();
                let repr = |v: &Bound<'_, PyAny>| -> String {
                    // repr shows order and int/float (`1` vs `1.0`), which `==` does not.
                    v.repr().unwrap().to_string()
                };
                assert!(a.eq(&want).unwrap(), "{doc}");
                assert_eq!(repr(a.as_any()), repr(&want), "{doc}");
                assert!(!a.is(&b));
                // Mutating one copy, all the way down, leaves the other (and the template).
                mutate.call1((&a,)).unwrap();
                assert!(b.eq(&want).unwrap(), "{doc}: a copy shares a container");
                assert!(
                    template.fresh(py).unwrap().eq(&want).unwrap(),
                    "{doc}: the template changed"
                );
            }
            let strings = SharedStrings::new();
            assert!(template_of_json(py, "[]", &strings).is_err());
            assert!(template_of_json(py, "{", &strings).is_err());
        });
    }

    /// Equal short strings of two templates are one object, long ones are not shared, and
    /// the pool never holds more than its capacity.
    #[test]
    fn templates_share_short_strings_and_the_pool_is_bounded() {
        Python::initialize();
        Python::attach(|py| {
            let strings = SharedStrings::new();
            let long = "x".repeat(SharedStrings::LONGEST + 1);
            let doc = format!(r#"{{"role":"admin","roles":["admin"],"long":"{long}"}}"#);
            let (a, b) = (
                template_of_json(py, &doc, &strings)
                    .unwrap()
                    .fresh(py)
                    .unwrap(),
                template_of_json(py, &doc, &strings)
                    .unwrap()
                    .fresh(py)
                    .unwrap(),
            );
            fn item<'py>(d: &Bound<'py, PyDict>, k: &str) -> Bound<'py, PyAny> {
                d.get_item(k).unwrap().unwrap()
            }
            assert!(item(&a, "role").is(item(&b, "role")));
            let first = item(&a, "roles").get_item(0).unwrap();
            assert!(first.is(item(&a, "role")));
            assert!(!item(&a, "long").is(item(&b, "long")));
            assert_eq!(item(&a, "long").to_string(), long);
            for i in 0..SharedStrings::CAPACITY * 2 + 7 {
                let text = format!("value {i}");
                assert_eq!(strings.value(py, &text).to_string(), text);
                assert_eq!(strings.name(py, &text).to_string(), text);
                assert!(strings.values.len() <= SharedStrings::CAPACITY);
                assert!(strings.names.len() <= SharedStrings::CAPACITY);
            }
        });
    }
}
