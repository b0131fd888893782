//! DPoP proofs at the resource server (RFC 9449 §4.3, §7): the proof is a JWS signed by a
//! key it carries, for this method and URL, fresh, never replayed, bound to the access token
//! by `ath` and to the token's `cnf.jkt` by the key's RFC 7638 thumbprint.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jwks;
use crate::jwt::{self, Algorithm, HeaderPolicy};
use crate::strict_json::{JsonObject, JsonTree, View};

/// `dpop`: whether the DPoP scheme is accepted, and whether Bearer still is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DpopMode {
    /// The DPoP scheme is not accepted (a key-bound token is refused either way).
    #[default]
    Off,
    /// DPoP and Bearer are both accepted.
    Allowed,
    /// Only DPoP is accepted.
    Required,
}

/// The resource server's DPoP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    /// `dpop`.
    pub mode: DpopMode,
    /// `dpop_algorithms`.
    pub algorithms: Vec<Algorithm>,
    /// `dpop_max_age`.
    pub max_age: Duration,
    /// `dpop_public_url`: the external `scheme://host[:port]`, no trailing slash.
    pub public_url: Option<String>,
}

/// Why a proof is refused (`invalid_dpop_proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofFault {
    /// No `DPoP` header, or more than one proof.
    Missing,
    /// Not a JWS with `typ: dpop+jwt`, an allowed `alg` and a public `jwk`.
    Header,
    /// The signature does not verify with the proof's own key.
    Signature,
    /// A claim is missing or has the wrong type.
    Claims,
    /// `htm` is not the request's method.
    Method,
    /// `htu` is not the request's URL.
    Url,
    /// `iat` is too old or in the future.
    Time,
    /// This `jti` was seen before.
    Replayed,
    /// `ath` is not the hash of the access token.
    TokenHash,
}

impl ProofFault {
    /// A short stable code for logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Header => "header",
            Self::Signature => "signature",
            Self::Claims => "claims",
            Self::Method => "htm",
            Self::Url => "htu",
            Self::Time => "iat",
            Self::Replayed => "jti_replayed",
            Self::TokenHash => "ath",
        }
    }
}

/// The RFC 7638 thumbprint of a public JWK (base64url SHA-256 of its required members in
/// lexicographic order, no whitespace), as `cnf.jkt` holds it.
pub(crate) fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let names: &[&str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = Map::new();
    for name in names {
        canonical.insert((*name).to_owned(), Value::String(member(name)?.to_owned()));
    }
    // serde_json with preserve_order keeps this insertion (lexicographic) order.
    let text = serde_json::to_string(&Value::Object(canonical)).ok()?;
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes())))
}

/// Members only a private or symmetric JWK has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The request's URL as RFC 9449 §4.3 compares it: no query or fragment, scheme and host in
/// lower case, the default port dropped.
pub(crate) fn normalized_url(url: &str) -> Option<String> {
    let mut parsed = reqwest::Url::parse(url).ok()?;
    // A user part has no place in a request URL; refusing it keeps `host` what it says.
    if !matches!(parsed.scheme(), "http" | "https")
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return None;
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Some(parsed.to_string())
}

/// Proof ids with the end of their window, and the same in insertion order.
type Seen = (HashMap<[u8; 32], Instant>, VecDeque<([u8; 32], Instant)>);

/// Proof `jti`s seen within the acceptance window, bounded (the oldest is forgotten first).
#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

impl ReplayCache {
    /// Remembers at most `capacity` proofs.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Records a proof until `until`; false when it was already recorded and still live.
    pub(crate) fn first_use(&self, id: [u8; 32], now: Instant, until: Instant) -> bool {
        let mut guard = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *guard;
        while let Some((old, expiry)) = order.front().copied() {
            if expiry > now && order.len() < self.capacity {
                break;
            }
            order.pop_front();
            if map.get(&old) == Some(&expiry) {
                map.remove(&old);
            }
        }
        if map.get(&id).is_some_and(|expiry| *expiry > now) {
            return false;
        }
        map.insert(id, until);
        order.push_back((id, until));
        true
    }
}

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProofContext<'a> {
    /// The `DPoP` header's value.
    pub proof: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The request URL (scheme://host[:port]/path; a query is ignored).
    pub url: &'a str,
    /// The access token.
    pub token: &'a str,
    /// Wall-clock now, seconds since the epoch.
    pub now: f64,
    /// `token_time_leeway`, seconds.
    pub leeway: f64,
}

/// A proof that passed [`check_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedProof {
    /// The RFC 7638 thumbprint of its key (to compare with `cnf.jkt`).
    pub jkt: String,
    /// Its replay id (key and `jti`), for a replay check across hosts.
    pub id: [u8; 32],
    /// How long it must be remembered against replay.
    pub window: Duration,
}

/// Checks a proof (this process's replay cache included).
pub(crate) fn check_proof(
    config: &DpopConfig,
    replay: &ReplayCache,
    monotonic_now: Instant,
    ctx: &ProofContext<'_>,
) -> Result<CheckedProof, ProofFault> {
    if ctx.proof.is_empty() || ctx.proof.contains(',') {
        return Err(ProofFault::Missing);
    }
    let policy = HeaderPolicy {
        algorithms: config.algorithms.clone(),
        types: vec!["dpop+jwt".into()],
    };
    let (jws, header) =
        jwt::parse_with_header(ctx.proof, &policy).map_err(|_| ProofFault::Header)?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(ProofFault::Header);
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofFault::Header);
    }
    let key = jwks::verifier(jwk, jws.algorithm).ok_or(ProofFault::Header)?;
    if !jws.verified_by(&key) {
        return Err(ProofFault::Signature);
    }
    let thumbprint = jwk_thumbprint(jwk).ok_or(ProofFault::Header)?;
    let claims = jws.claims().map_err(|_| ProofFault::Claims)?;
    let text = |name: &str| {
        claims
            .member(name)
            .and_then(JsonTree::as_text)
            .ok_or(ProofFault::Claims)
    };
    let (htm, htu, jti, ath) = (text("htm")?, text("htu")?, text("jti")?, text("ath")?);
    let Some(View::Number(Some(iat))) = claims.member("iat").map(JsonTree::view) else {
        return Err(ProofFault::Claims);
    };
    if jti.is_empty() || jti.len() > 256 {
        return Err(ProofFault::Claims);
    }
    if htm != ctx.method {
        return Err(ProofFault::Method);
    }
    match (normalized_url(htu), normalized_url(ctx.url)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(ProofFault::Url),
    }
    let max_age = config.max_age.as_secs_f64();
    if !(ctx.now - max_age - ctx.leeway <= iat && iat <= ctx.now + ctx.leeway) {
        return Err(ProofFault::Time);
    }
    let expected_ath = URL_SAFE_NO_PAD.encode(Sha256::digest(ctx.token.as_bytes()));
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        ath.as_bytes(),
        expected_ath.as_bytes(),
    )) {
        return Err(ProofFault::TokenHash);
    }
    // A proof is replayable only within its window: remember it until the window ends.
    let window = Duration::from_secs_f64((max_age + 2.0 * ctx.leeway).max(1.0));
    let mut id = Sha256::new();
    id.update(thumbprint.as_bytes());
    id.update([0]);
    id.update(jti.as_bytes());
    let until = crate::clock::instant_after(monotonic_now, window);
    let id: [u8; 32] = id.finalize().into();
    if !replay.first_use(id, monotonic_now, until) {
        return Err(ProofFault::Replayed);
    }
    Ok(CheckedProof {
        jkt: thumbprint,
        id,
        window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(jwk.as_object().unwrap()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn urls_compare_per_rfc9449() {
        let n = |u: &str| normalized_url(u);
        assert_eq!(
            n("HTTPS://API.Example:443/v1/vnf?x=1#f"),
            n("https://api.example/v1/vnf")
        );
        assert_eq!(n("http://h:80/p"), n("http://h/p"));
        assert_ne!(n("https://h:8443/p"), n("https://h/p"));
        assert_ne!(n("https://h/p"), n("https://h/P"));
        assert_eq!(n("ftp://h/p"), None);
        assert_eq!(n("https://u@evil.example/p"), None);
        assert_eq!(n("https://u:pw@h/p"), None);
    }

    #[test]
    fn replays_are_caught_within_the_window_and_memory_is_bounded() {
        let cache = ReplayCache::new(3);
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(60);
        assert!(cache.first_use([1; 32], t0, until));
        assert!(!cache.first_use([1; 32], t0 + Duration::from_secs(30), until));
        assert!(cache.first_use(
            [1; 32],
            t0 + Duration::from_secs(61),
            until + Duration::from_secs(61)
        ));
        for i in 2..10 {
            assert!(cache.first_use([i; 32], t0, until));
        }
        let seen = cache.seen.lock().unwrap();
        assert!(seen.0.len() <= 3 && seen.1.len() <= 3);
    }
}
