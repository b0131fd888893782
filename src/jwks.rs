//! The AS's signing keys: a JWK Set (RFC 7517) parsed once into verification keys, found by
//! discovery (OpenID Connect Discovery, then RFC 8414) or a configured `jwks_uri`, cached,
//! refreshed on schedule, and refetched for an unknown `kid` at most once per interval.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::clock::{self, Clock};
use crate::error::{AsError, sanitize};
use crate::http::Transport;
use crate::jwt::{Algorithm, KeyFamily};
use crate::log::{Level, LogSink};
use crate::strict_json;

/// One usable key: its `kid` and a verifier per algorithm it may be used with.
struct Key {
    kid: Option<String>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

/// A parsed key set. Keys that cannot verify (encryption keys, unknown types, algorithms
/// outside `jwt_algorithms`, bad encodings) are left out, not errors: an AS may publish them.
pub(crate) struct KeySet {
    keys: Vec<Key>,
    skipped: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "kids",
                &self
                    .keys
                    .iter()
                    .map(|k| k.kid.as_deref())
                    .collect::<Vec<_>>(),
            )
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// The keys to try for a token.
pub(crate) enum Candidates<'a> {
    /// These keys have the token's `kid` (or the token has none) and fit its algorithm.
    Keys(Vec<&'a ParsedPublicKey>),
    /// A key has this `kid` but cannot verify this algorithm (another type, or its `alg`).
    WrongType,
    /// No key has this `kid`.
    UnknownKid,
}

impl KeySet {
    /// Parses a JWK Set document, keeping keys usable with one of `algorithms`.
    pub(crate) fn parse(body: &[u8], algorithms: &[Algorithm]) -> Result<Self, String> {
        let document = match strict_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("the key set is not a JSON object".into()),
            Err(_) => return Err("the key set is not JSON (or repeats a member name)".into()),
        };
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err("the key set has no \"keys\" array".into());
        };
        let mut keys = Vec::new();
        let mut skipped = 0;
        for entry in entries {
            match entry.as_object().and_then(|jwk| parse_key(jwk, algorithms)) {
                Some(key) => keys.push(key),
                None => skipped += 1,
            }
        }
        Ok(Self { keys, skipped })
    }

    /// Number of usable keys.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may verify a token with this `kid` and algorithm.
    pub(crate) fn candidates(&self, kid: Option<&str>, algorithm: Algorithm) -> Candidates<'_> {
        let mut named = false;
        let mut found = Vec::new();
        for key in &self.keys {
            if let Some(kid) = kid {
                if key.kid.as_deref() != Some(kid) {
                    continue;
                }
                named = true;
            }
            found.extend(
                key.verifiers
                    .iter()
                    .filter(|(a, _)| *a == algorithm)
                    .map(|(_, k)| k),
            );
        }
        match (found.is_empty(), kid.is_some() && !named) {
            (_, true) => Candidates::UnknownKid,
            (true, false) if kid.is_some() => Candidates::WrongType,
            _ => Candidates::Keys(found),
        }
    }
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn bytes(jwk: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(member(jwk, name)?).ok()
}

/// One JWK as a key, or `None` when it cannot verify any of `algorithms`.
fn parse_key(jwk: &Map<String, Value>, algorithms: &[Algorithm]) -> Option<Key> {
    // RFC 7517 §4.2, §4.3: a key for encryption, or whose operations exclude verify, is not ours.
    if jwk.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops")
        && !ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    let pinned = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(Algorithm::from_name(name)?),
        Some(_) => return None,
    };
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return None,
    };
    let family = match (member(jwk, "kty")?, member(jwk, "crv")) {
        ("RSA", _) => KeyFamily::Rsa,
        ("EC", Some("P-256")) => KeyFamily::Ec("P-256"),
        ("EC", Some("P-384")) => KeyFamily::Ec("P-384"),
        ("EC", Some("P-521")) => KeyFamily::Ec("P-521"),
        ("OKP", Some("Ed25519")) => KeyFamily::Ed25519,
        _ => return None,
    };
    let material = match family {
        KeyFamily::Rsa => {
            // Leading zero octets are tolerated here (some AS emit them); aws-lc-rs wants none.
            let strip = |mut v: Vec<u8>| {
                let zeros = v.iter().take_while(|&&b| b == 0).count();
                v.drain(..zeros);
                v
            };
            Material::Rsa(strip(bytes(jwk, "n")?), strip(bytes(jwk, "e")?))
        }
        KeyFamily::Ec(curve) => {
            let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
            let size = match curve {
                "P-256" => 32,
                "P-384" => 48,
                _ => 66,
            };
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::Point(point)
        }
        KeyFamily::Ed25519 => Material::Point(bytes(jwk, "x")?),
    };
    let verifiers: Vec<_> = algorithms
        .iter()
        .copied()
        .filter(|a| a.family() == family && pinned.is_none_or(|p| p == *a))
        .filter_map(|a| Some((a, material.parse(a)?)))
        .collect();
    (!verifiers.is_empty()).then_some(Key { kid, verifiers })
}

/// The verifier of one JWK for one algorithm (a DPoP proof's own key), or `None` when the key
/// cannot serve it.
pub(crate) fn verifier(jwk: &Map<String, Value>, algorithm: Algorithm) -> Option<ParsedPublicKey> {
    let key = parse_key(jwk, &[algorithm])?;
    key.verifiers.into_iter().next().map(|(_, k)| k)
}

enum Material {
    Rsa(Vec<u8>, Vec<u8>),
    Point(Vec<u8>),
}

impl Material {
    fn parse(&self, algorithm: Algorithm) -> Option<ParsedPublicKey> {
        match self {
            Self::Rsa(n, e) => {
                let params = match algorithm {
                    Algorithm::Rs256 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::Rs384 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::Rs512 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::Ps256 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::Ps384 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::Ps512 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA512,
                    _ => return None,
                };
                RsaPublicKeyComponents { n, e }
                    .to_parsed_public_key(params)
                    .ok()
            }
            Self::Point(point) => ParsedPublicKey::new(algorithm.verification(), point).ok(),
        }
    }
}

/// Where the keys come from and how long they are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// The configured `jwks_uri`; `None` means discovery from `issuer`.
    pub jwks_uri: Option<String>,
    /// `token_issuer`: the discovery base and the metadata's required `issuer`.
    pub issuer: String,
    /// `jwks_cache_time`.
    pub cache_time: Duration,
    /// `jwks_min_refresh_interval`.
    pub min_refresh_interval: Duration,
}

impl KeySource {
    /// The metadata URLs to try, in order: OpenID Connect Discovery 1.0 §4, then RFC 8414 §3.1
    /// (the well-known segment between the host and the issuer's path).
    pub fn discovery_urls(&self) -> Vec<String> {
        let issuer = self.issuer.trim_end_matches('/');
        let mut urls = vec![format!("{issuer}/.well-known/openid-configuration")];
        if let Ok(url) = reqwest::Url::parse(&self.issuer) {
            let path = url.path().trim_end_matches('/');
            let mut origin = url.clone();
            origin.set_query(None);
            origin.set_fragment(None);
            origin.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
            let rfc8414 = origin.to_string();
            if !urls.contains(&rfc8414) {
                urls.push(rfc8414);
            }
        }
        urls
    }
}

/// Counters of key-set fetching.
#[derive(Debug, Default)]
pub(crate) struct KeyCounters {
    /// Key-set fetch attempts (discovery included).
    pub fetches: AtomicU64,
    /// Attempts that failed.
    pub fetch_errors: AtomicU64,
    /// Fetches caused by an unknown `kid`.
    pub unknown_kid_refetches: AtomicU64,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    fresh_until: Option<Instant>,
    /// The start of the latest fetch attempt and whether it failed.
    last_attempt: Option<Instant>,
    last_error: Option<AsError>,
    /// Attempts so far: lets a waiter see that another thread fetched meanwhile.
    generation: u64,
    discovered_uri: Option<String>,
}

/// The outcome of looking up keys for a token.
pub(crate) enum Lookup {
    /// The key set to try (possibly past its lifetime, when refreshing it failed).
    Keys(Arc<KeySet>),
    /// No key set could be had, or the `kid` is unknown and the last fetch failed.
    Unavailable(AsError),
}

/// The cached key set of one AS, shared by the threads of an authenticator.
pub(crate) struct KeyStore {
    source: KeySource,
    algorithms: Vec<Algorithm>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn LogSink>,
    state: RwLock<State>,
    fetching: Mutex<()>,
    /// Fetch counters.
    pub counters: KeyCounters,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Largest `Cache-Control: max-age` honoured is `jwks_cache_time`; the smallest is one second,
/// so an AS that sends `max-age=0` cannot turn every token into a fetch.
const MIN_KEY_LIFETIME: Duration = Duration::from_secs(1);

impl KeyStore {
    /// A store that fetches nothing until the first token needs keys.
    pub(crate) fn new(
        source: KeySource,
        algorithms: Vec<Algorithm>,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn LogSink>,
    ) -> Self {
        Self {
            source,
            algorithms,
            transport,
            clock,
            log,
            state: RwLock::new(State::default()),
            fetching: Mutex::new(()),
            counters: KeyCounters::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key set for a token with this `kid`: fresh keys when they know it; otherwise a
    /// fetch when one is due (scheduled, or for an unknown `kid` once per interval), shared
    /// by every thread that needs it at that moment.
    pub(crate) fn lookup(&self, kid: Option<&str>) -> Lookup {
        let now = self.clock.monotonic();
        let (generation, due) = {
            let state = self.read();
            let fresh = state.fresh_until.is_some_and(|until| now < until);
            let known = match (&state.keys, kid) {
                (Some(keys), Some(kid)) => keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if fresh && known {
                return Lookup::Keys(Arc::clone(state.keys.as_ref().expect("known implies keys")));
            }
            let interval_over = state
                .last_attempt
                .is_none_or(|at| now >= clock::instant_after(at, self.source.min_refresh_interval));
            // A scheduled refresh is due whenever the keys are old, unless the last attempt
            // failed within the interval; an unknown `kid` waits for the interval.
            let due = if !fresh {
                state.last_error.is_none() || interval_over
            } else {
                interval_over
            };
            (state.generation, due.then_some(!fresh))
        };
        if let Some(scheduled) = due {
            self.fetch_once(generation, scheduled);
        }
        let state = self.read();
        match (&state.keys, &state.last_error) {
            (Some(keys), None) => Lookup::Keys(Arc::clone(keys)),
            (Some(keys), Some(error)) => {
                let known =
                    kid.is_none_or(|kid| keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
                if known {
                    Lookup::Keys(Arc::clone(keys))
                } else {
                    Lookup::Unavailable(error.clone())
                }
            }
            (None, Some(error)) => Lookup::Unavailable(error.clone()),
            (None, None) => Lookup::Unavailable(AsError::Unreachable(
                "the key set has not been fetched yet".into(),
            )),
        }
    }

    /// Fetches unless another thread fetched since `seen` (then its result is used).
    fn fetch_once(&self, seen: u64, scheduled: bool) {
        let _turn = self.fetching.lock().unwrap_or_else(PoisonError::into_inner);
        if self.read().generation != seen {
            return;
        }
        let started = self.clock.monotonic();
        if !scheduled {
            self.counters.unknown_kid_refetches.fetch_add(1, Relaxed);
        }
        let result = self.fetch();
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.generation += 1;
        state.last_attempt = Some(started);
        match result {
            Ok((keys, max_age, uri)) => {
                let lifetime = max_age
                    .map_or(self.source.cache_time, |age| {
                        age.min(self.source.cache_time)
                    })
                    .max(MIN_KEY_LIFETIME);
                state.fresh_until = Some(clock::instant_after(self.clock.monotonic(), lifetime));
                state.keys = Some(Arc::new(keys));
                state.last_error = None;
                state.discovered_uri = uri;
            }
            Err(error) => {
                self.counters.fetch_errors.fetch_add(1, Relaxed);
                if self.log.enabled(Level::Error) {
                    self.log.log(
                        Level::Error,
                        &format!("cannot fetch the AS's signing keys: {error}"),
                    );
                }
                state.last_error = Some(error);
            }
        }
    }

    /// One fetch: discovery when needed, then the key set.
    fn fetch(&self) -> Result<(KeySet, Option<Duration>, Option<String>), AsError> {
        self.counters.fetches.fetch_add(1, Relaxed);
        let known = self
            .source
            .jwks_uri
            .clone()
            .or_else(|| self.read().discovered_uri.clone());
        let discovered = self.source.jwks_uri.is_none();
        let uri = match known {
            Some(uri) => uri,
            None => self.discover()?,
        };
        let response = self.transport.get(&uri)?;
        if response.status != 200 {
            return Err(AsError::Status {
                status: response.status,
                error: None,
                description: Some("from the jwks_uri".into()),
            });
        }
        let keys = KeySet::parse(&response.body, &self.algorithms)
            .map_err(|why| AsError::Malformed(sanitize(&why, &[])))?;
        if keys.is_empty() {
            return Err(AsError::Malformed(
                "the key set holds no key usable with jwt_algorithms".into(),
            ));
        }
        let max_age = response.max_age.map(Duration::from_secs);
        Ok((keys, max_age, discovered.then_some(uri)))
    }

    /// The `jwks_uri` of the AS's metadata, whose `issuer` must be `token_issuer`.
    fn discover(&self) -> Result<String, AsError> {
        let mut last = None;
        for url in self.source.discovery_urls() {
            let response = match self.transport.get(&url) {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if response.status != 200 {
                last = Some(AsError::Status {
                    status: response.status,
                    error: None,
                    description: Some("from the metadata endpoint".into()),
                });
                continue;
            }
            let metadata = match strict_json::from_slice(&response.body) {
                Ok(Value::Object(map)) => map,
                _ => {
                    last = Some(AsError::Malformed(
                        "the AS metadata is not a JSON object".into(),
                    ));
                    continue;
                }
            };
            let issuer = metadata.get("issuer").and_then(Value::as_str).unwrap_or("");
            if issuer != self.source.issuer {
                return Err(AsError::Malformed(format!(
                    "the AS metadata names issuer \"{}\", not token_issuer \"{}\"; its jwks_uri is not used",
                    sanitize(issuer, &[]),
                    sanitize(&self.source.issuer, &[])
                )));
            }
            return match metadata.get("jwks_uri").and_then(Value::as_str) {
                Some(uri) if crate::options::check_url("jwks_uri", uri).is_ok() => {
                    Ok(uri.to_owned())
                }
                _ => Err(AsError::Malformed(
                    "the AS metadata has no usable jwks_uri".into(),
                )),
            };
        }
        Err(last.unwrap_or_else(|| AsError::Unreachable("no metadata URL".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_follow_both_specs() {
        let source = |issuer: &str| KeySource {
            jwks_uri: None,
            issuer: issuer.into(),
            cache_time: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
        };
        assert_eq!(
            source("https://as.example").discovery_urls(),
            [
                "https://as.example/.well-known/openid-configuration",
                "https://as.example/.well-known/oauth-authorization-server"
            ]
        );
        assert_eq!(
            source("https://kc.example/realms/openstack").discovery_urls(),
            [
                "https://kc.example/realms/openstack/.well-known/openid-configuration",
                "https://kc.example/.well-known/oauth-authorization-server/realms/openstack"
            ]
        );
    }
}
