//! Entry points for the coverage-guided fuzz targets in `tests/fuzz` (cargo feature `fuzzing`,
//! off by default). Each takes arbitrary bytes, drives the real code as a door would, and
//! panics only when a promise of the core is broken: any input must end in a verdict or a
//! typed error, and what comes out must be well formed (header values without control
//! characters, JSON bodies that parse, errors that name an option and hold no secret).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::authenticator::{Authenticator, Verdict};
use crate::claims::{ClaimPath, map_identity};
use crate::clock::ManualClock;
use crate::config::FilterConfig;
use crate::error::AsError;
use crate::http::{HttpResponse, Transport};
use crate::log::{Level, LogSink};
use crate::options::{OPTIONS, RawOptions};
use crate::thumbprint;
use crate::token_client::TokenClientConfig;

/// Wall-clock time every fuzzed check runs at (claims in the seeds are relative to it).
pub const NOW: f64 = 1_750_000_000.0;

/// The client secret of the fuzzed authenticators; it must never reach a log line.
const CLIENT_SECRET: &str = "fuzz-client-secret-0123456789";

/// Answers every introspection with the bytes of the current input.
struct ScriptedAs {
    answer: Mutex<HttpResponse>,
}

impl Transport for ScriptedAs {
    fn post_form(
        &self,
        _: &str,
        _: Option<crate::secret::Secret>,
        body: crate::secret::Secret,
    ) -> Result<HttpResponse, AsError> {
        assert!(
            !body.expose().is_empty(),
            "an introspection request has a body"
        );
        Ok(self
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }
}

/// A sink that formats every message and checks it holds no secret and no token.
struct CheckingLog;

/// The bearer token the fuzzed requests present.
const TOKEN: &str = "fuzz-token-abcdef0123456789";

impl LogSink for CheckingLog {
    fn enabled(&self, _: Level) -> bool {
        true
    }
    fn log(&self, _: Level, message: &str) {
        assert!(
            !message.contains(CLIENT_SECRET),
            "client secret in a log line"
        );
        assert!(!message.contains(TOKEN), "bearer token in a log line");
    }
}

/// A filter configuration shape the introspection target is checked under.
const PROFILES: &[&[(&str, &str)]] = &[
    // Project-scoped, the reference's documented mapping.
    &[
        ("mapping_project_id", "project.id"),
        ("mapping_project_name", "project.name"),
        ("mapping_project_domain_id", "project.domain.id"),
        ("mapping_project_domain_name", "project.domain.name"),
    ],
    // Domain scope with the optional checks on.
    &[
        ("mapping_project_domain_id", "domain.id"),
        ("mapping_project_domain_name", "domain.name"),
        ("token_audience", "https://rs.example, api"),
        ("token_issuer", "https://as.example"),
        ("token_required_scope", "openstack, compute"),
    ],
    // System scope and an extra expiry claim.
    &[
        ("mapping_system_scope", "system"),
        ("mapping_expires_at", "ext.expires_at"),
        ("mapping_user_id", "sub"),
    ],
    // RFC 8705 binding to the certificate in tests/data/x5t-vector.pem.
    &[
        ("mapping_project_id", "project.id"),
        ("mapping_project_name", "project.name"),
        ("mapping_project_domain_id", "project.domain.id"),
        ("mapping_project_domain_name", "project.domain.name"),
        ("thumbprint_verify", "true"),
    ],
];

const BASE: &[(&str, &str)] = &[
    ("introspect_endpoint", "https://as.example/introspect"),
    ("audience", "https://as.example"),
    ("client_id", "rs"),
    ("client_secret", CLIENT_SECRET),
    ("mapping_user_domain_id", "user_domain.id"),
    ("mapping_user_domain_name", "user_domain.name"),
    ("mapping_roles", "roles"),
];

/// The certificate the thumbprint profile's requests present.
const CLIENT_CERT: &str = include_str!("../tests/data/x5t-vector.pem");

struct Harness {
    answer: Arc<ScriptedAs>,
    filters: Vec<Authenticator>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let answer = Arc::new(ScriptedAs {
            answer: Mutex::new(HttpResponse {
                status: 200,
                body: Vec::new(),
            }),
        });
        let filters = PROFILES
            .iter()
            .map(|profile| {
                let raw = RawOptions::from_pairs(BASE.iter().chain(profile.iter()).copied());
                let config = FilterConfig::from_raw(&raw).expect("fuzz profile parses");
                Authenticator::with_parts(
                    config,
                    answer.clone(),
                    Arc::new(CheckingLog),
                    Arc::new(ManualClock::new(NOW)),
                )
                .expect("fuzz profile builds")
            })
            .collect();
        Harness { answer, filters }
    })
}

/// Statuses an AS may answer with, picked by the first input byte.
const STATUSES: &[u16] = &[200, 200, 200, 200, 200, 400, 401, 500];

/// Introspection answer → verdict. Byte 0 picks the filter profile (low two bits) and the
/// HTTP status (next three bits); the rest is the AS's answer body. Checks that the verdict
/// agrees with the answer and that an accepted identity is well formed.
pub fn introspection_answer(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    let profile = usize::from(selector & 3);
    let status = STATUSES[usize::from(selector >> 2) & 7];
    let filter = &h.filters[profile];
    *h.answer
        .answer
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = HttpResponse {
        status,
        body: body.to_vec(),
    };
    let authorization = format!("Bearer {TOKEN}");
    let cert = (profile == 3).then_some(CLIENT_CERT.as_bytes());
    let verdict = filter.check(&crate::Request::new(Some(&authorization), cert));
    filter.forget(Some(&authorization));

    let answer = crate::strict_json::from_slice(body).ok();
    borrowed_tree_agrees(body);
    match verdict {
        Verdict::Allow(grant) => {
            assert_eq!(status, 200, "accepted on an HTTP {status} answer");
            let answer =
                answer.expect("accepted an answer that is not JSON or repeats a member name");
            assert_eq!(
                answer.get("active"),
                Some(&Value::Bool(true)),
                "accepted an inactive token"
            );
            check_headers(grant.headers().iter().map(|(h, v)| (h.name, v.as_str())));
            let info: Value =
                serde_json::from_str(grant.token_info_json()).expect("token_info is JSON");
            assert!(info.is_object(), "token_info is an object");
            if profile == 3 {
                let der = thumbprint::cert_der(CLIENT_CERT.as_bytes()).expect("test cert");
                assert_eq!(
                    answer.pointer("/cnf/x5t#S256").and_then(Value::as_str),
                    Some(thumbprint::x5t_s256(&der).as_str()),
                    "accepted a token not bound to the presented certificate"
                );
            }
        }
        Verdict::Deny(denial) => {
            let code = denial.status();
            assert!(matches!(code, 401 | 403 | 503), "status {code}");
            if status != 200 {
                assert_eq!(code, 503, "an HTTP {status} answer is an outage");
            }
            serde_json::from_str::<Value>(denial.body()).expect("denial body is JSON");
            let headers = filter.denial_headers(&denial);
            let wanted = match code {
                401 => Some("WWW-Authenticate"),
                503 => Some("Retry-After"),
                _ => None,
            };
            assert_eq!(headers.first().map(|(n, _)| *n), wanted);
            check_headers(headers.iter().map(|(n, v)| (*n, v.as_str())));
            let text = denial.reason.to_string();
            assert!(!text.contains(CLIENT_SECRET), "secret in a denial");
        }
    }
}

fn check_headers<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) {
    for (name, value) in headers {
        assert!(
            !value.chars().any(char::is_control),
            "header {name} carries a control character: {value:?}"
        );
    }
}

/// Claim paths and the mapping: the input is `option=path` lines for `mapping_*` options, an
/// empty line, then the claims as JSON. Checks that paths print back to themselves and that
/// a mapped identity is well formed.
pub fn claim_mapping(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (head, claims) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut pairs: Vec<(String, String)> = BASE
        .iter()
        .chain(PROFILES[0].iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for line in head.lines() {
        let Some((name, path)) = line.split_once('=') else {
            continue;
        };
        if let Ok(parsed) = ClaimPath::parse(path) {
            let printed = parsed.to_string();
            assert_eq!(printed, path, "a claim path prints as given");
            assert_eq!(ClaimPath::parse(&printed), Ok(parsed));
        }
        let name = name.trim();
        if name.starts_with("mapping_") {
            pairs.retain(|(k, _)| k != name);
            pairs.push((name.to_owned(), path.to_owned()));
        }
    }
    let Ok(config) = FilterConfig::from_raw(&RawOptions::from_pairs(pairs)) else {
        return;
    };
    let Ok(claims) = serde_json::from_str::<Map<String, Value>>(claims) else {
        return;
    };
    let Ok(identity) = map_identity(&config.mapping, &claims, None) else {
        return;
    };
    check_headers(identity.headers.iter().map(|(h, v)| (h.name, v.as_str())));
    let info: Map<String, Value> =
        serde_json::from_str(&identity.token_info_json).expect("token_info is a JSON object");
    // Keys only: serde_json's default float parsing may differ by one ULP on a round trip.
    let kept = info.get("origin_token_metadata").and_then(Value::as_object);
    assert!(
        kept.is_some_and(|kept| kept.keys().eq(claims.keys())),
        "token_info carries every claim of the answer"
    );
}

/// PEM/DER/URL-encoded certificate decoding and thumbprints. Checks that a decoded
/// certificate's digest is the SHA-256 of its DER, that re-encoding it as PEM (with line
/// breaks, with spaces, URL-encoded) decodes to the same bytes, and that `x5t#S256`
/// decoding is strict (only the canonical text of a digest decodes).
pub fn certificate(data: &[u8]) {
    if let Some(der) = thumbprint::cert_der(data) {
        assert_eq!(der.first(), Some(&0x30), "DER starts with a SEQUENCE");
        let digest: [u8; 32] = Sha256::digest(&der).into();
        assert_eq!(thumbprint::cert_digest(data), Some(digest));
        assert_eq!(
            thumbprint::x5t_s256(&der),
            thumbprint::x5t_s256_of_digest(&digest)
        );
        let pem = pem_of(&der);
        assert_eq!(thumbprint::cert_der(pem.as_bytes()).as_ref(), Some(&der));
        let spaced = pem.replace('\n', " ");
        assert_eq!(thumbprint::cert_der(spaced.as_bytes()).as_ref(), Some(&der));
        let escaped: String = pem
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        assert_eq!(
            thumbprint::cert_der(escaped.as_bytes()).as_ref(),
            Some(&der)
        );
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(digest) = thumbprint::decode_x5t(text)
    {
        assert_eq!(thumbprint::x5t_s256_of_digest(&digest), text);
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Options whose value is a file name: the fuzzer writes their contents instead.
const FILE_OPTIONS: &[&str] = &["certfile", "keyfile", "cafile", "jwt_key_file"];

/// Secret options: the fuzzed value is prefixed with a marker that no error may show.
const SECRET_OPTIONS: &[&str] = &[
    "client_secret",
    "memcache_secret_key",
    "memcache_secret_key_fallback",
];
const SECRET_MARK: &str = "Zq7-secret-";

fn scratch_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tokenward-fuzz-{}-{name}", std::process::id()))
}

/// The config map: `name=value` lines, then (after NUL bytes) the contents of `certfile`,
/// `keyfile`, `cafile` and `jwt_key_file` in that order. Everything a door would do at
/// start-up runs: the filter and token-client parsers, TLS and key loading, building the
/// authenticator. Checks that a refusal names a real option and shows no secret.
pub fn config_map(data: &[u8]) {
    let mut sections = data.split(|b| *b == 0);
    let text = String::from_utf8_lossy(sections.next().unwrap_or_default());
    let files: Vec<&[u8]> = sections.take(FILE_OPTIONS.len()).collect();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let name = name.trim();
        let value = if let Some(i) = FILE_OPTIONS.iter().position(|o| *o == name) {
            // A file option names a scratch file holding the next section, or a missing file.
            match files.get(i) {
                Some(contents) => {
                    let path = scratch_file(name);
                    if std::fs::write(&path, contents).is_err() {
                        return;
                    }
                    path.display().to_string()
                }
                None => "/nonexistent/tokenward-fuzz".to_owned(),
            }
        } else if SECRET_OPTIONS.contains(&name) && !value.trim().is_empty() {
            format!("{SECRET_MARK}{}", value.trim())
        } else {
            if value.contains(SECRET_MARK) {
                return;
            }
            value.to_owned()
        };
        pairs.push((name.to_owned(), value));
    }
    let raw = RawOptions::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let check = |e: &crate::ConfigError| {
        assert!(
            OPTIONS.iter().any(|o| o.name == e.option()),
            "error names an unknown option: {e}"
        );
        assert!(!e.to_string().contains(SECRET_MARK), "secret in error: {e}");
    };
    if let Err(e) = TokenClientConfig::from_raw(&raw) {
        check(&e);
    }
    let config = match FilterConfig::from_raw(&raw) {
        Ok(config) => config,
        Err(e) => return check(&e),
    };
    for result in [
        crate::tls::load_identity(&config.client.tls).map(|_| ()),
        crate::tls::load_ca_bundle(&config.client.tls).map(|_| ()),
    ] {
        if let Err(e) = result {
            check(&e);
        }
    }
    // A shared tier would reach for the network at the first miss: build it, ask nothing.
    let offline = config.shared.is_none();
    let answer = Arc::new(ScriptedAs {
        answer: Mutex::new(HttpResponse {
            status: 200,
            body: b"{\"active\":false}".to_vec(),
        }),
    });
    match Authenticator::with_parts(
        config,
        answer.clone(),
        Arc::new(CheckingLog),
        Arc::new(ManualClock::new(NOW)),
    ) {
        Ok(auth) if !offline => {
            for warning in auth.warnings() {
                assert!(!warning.contains(SECRET_MARK), "secret in a warning");
            }
        }
        Ok(auth) => {
            for warning in auth.warnings() {
                assert!(!warning.contains(SECRET_MARK), "secret in a warning");
            }
            // One check under the fuzzed options (lifetimes, leeway, policy): a verdict.
            let active = format!(
                "{{\"active\":true,\"exp\":{},\"client_id\":\"u\",\"username\":\"u\"}}",
                NOW + 60.0
            );
            *answer.answer.lock().unwrap_or_else(PoisonError::into_inner) = HttpResponse {
                status: 200,
                body: active.into_bytes(),
            };
            let authorization = format!("Bearer {TOKEN}");
            let _ = auth.check(&crate::Request::new(Some(&authorization), None));
            let _ = auth.check(&crate::Request::new(Some(&authorization), None));
        }
        Err(e) => check(&e),
    }
}

/// The issuer of the JWT target's tokens and its key set (the public halves of the keys in
/// tests/data: RSA `rsa`, P-256 `ec`, Ed25519 `ed`).
const JWT_ISSUER: &str = "https://as.example";
const JWKS: &str = include_str!("../tests/data/jwks.json");

/// Serves the key set; refuses to introspect (the JWT target runs in `jwt` mode).
struct KeyServer;

impl Transport for KeyServer {
    fn post_form(
        &self,
        _: &str,
        _: Option<crate::secret::Secret>,
        _: crate::secret::Secret,
    ) -> Result<HttpResponse, AsError> {
        panic!("validation = jwt introspected a token");
    }

    fn get(&self, url: &str) -> Result<crate::http::Document, AsError> {
        assert_eq!(
            url, "https://as.example/jwks",
            "only the configured jwks_uri is fetched"
        );
        Ok(crate::http::Document {
            status: 200,
            body: JWKS.as_bytes().to_vec(),
            max_age: None,
        })
    }
}

fn jwt_filter() -> &'static Authenticator {
    static FILTER: OnceLock<Authenticator> = OnceLock::new();
    FILTER.get_or_init(|| {
        let raw = RawOptions::from_pairs(BASE.iter().chain(PROFILES[0].iter()).copied().chain([
            ("validation", "jwt"),
            ("token_issuer", JWT_ISSUER),
            ("jwks_uri", "https://as.example/jwks"),
            ("token_audience", "api"),
        ]));
        let config = FilterConfig::from_raw(&raw).expect("jwt fuzz profile parses");
        Authenticator::with_parts(
            config,
            Arc::new(KeyServer),
            Arc::new(CheckingLog),
            Arc::new(ManualClock::new(NOW)),
        )
        .expect("jwt fuzz profile builds")
    })
}

/// The borrowed tree (JWT headers and claims) accepts and refuses what the owned tree
/// (introspection answers) does, and reads the same values (numbers as `f64`).
fn borrowed_tree_agrees(body: &[u8]) {
    use crate::strict_json::{self, Json};
    fn same(a: &Value, b: &Json<'_>) -> bool {
        match (a, b) {
            (Value::Null, Json::Null) => true,
            (Value::Bool(x), Json::Bool(y)) => x == y,
            (Value::Number(x), Json::Number(y)) => x.as_f64() == Some(*y),
            (Value::String(x), Json::Text(y)) => x == y,
            (Value::Array(x), Json::List(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            (Value::Object(x), Json::Object(y)) => {
                use crate::strict_json::JsonObject;
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.member(k).is_some_and(|w| same(v, w)))
            }
            _ => false,
        }
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    match (strict_json::from_slice(body), strict_json::borrowed(text)) {
        (Ok(owned), Ok(borrowed)) => assert!(same(&owned, &borrowed), "the trees differ"),
        // Both refuse (a repeat is found at the member by one, at the object's end by the
        // other, so a later syntax error may be what the second reports).
        (Err(_), Err(_)) => {}
        (owned, borrowed) => panic!(
            "one tree refused: owned {:?}, borrowed {:?}",
            owned.is_ok(),
            borrowed.is_ok()
        ),
    }
}

/// JWT access tokens, key sets and DPoP proofs, by byte 0 modulo 3. 0: the rest is a bearer
/// token checked in `validation = jwt` against the fixed key set (an accepted token must
/// carry a signature that one of those keys verifies, the configured issuer and audience, and
/// a well-formed identity). 1: a JWK Set document, parsed as a fetched one is. 2: a DPoP
/// proof, checked for a fixed request (see `dpop_proof` below).
pub fn jwt(data: &[u8]) {
    use crate::jwks::KeySet;
    use crate::jwt::{Algorithm, HeaderPolicy};
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector % 3 == 2 {
        return dpop_proof(rest);
    }
    if selector % 3 == 1 {
        if let Ok(keys) = KeySet::parse(rest, &Algorithm::ALL) {
            let policy = HeaderPolicy {
                algorithms: Algorithm::ALL.to_vec(),
                types: vec!["JWT".into()],
            };
            let _ = keys.len();
            let _ = crate::jwt::parse("e30.e30.e30", &policy);
        }
        return;
    }
    let Ok(token) = std::str::from_utf8(rest) else {
        return;
    };
    let filter = jwt_filter();
    let authorization = format!("Bearer {token}");
    let verdict = filter.check(&crate::Request::new(Some(&authorization), None));
    filter.forget(Some(&authorization));
    match verdict {
        Verdict::Allow(grant) => {
            let payload = token
                .split('.')
                .nth(1)
                .expect("an accepted JWT has a payload");
            let claims: Value =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .expect("an accepted JWT's payload is JSON");
            assert_eq!(claims.get("iss").and_then(Value::as_str), Some(JWT_ISSUER));
            check_headers(grant.headers().iter().map(|(h, v)| (h.name, v.as_str())));
        }
        Verdict::Deny(denial) => {
            assert!(
                matches!(denial.status(), 401 | 403),
                "status {}",
                denial.status()
            );
            // A token may be a piece of a fixed text ("malformed to" of "malformed token"):
            // only a text with a payload from the request could hold it.
            let text = denial.reason.to_string();
            assert!(
                !text.contains(token) || token.len() < 8 || fixed_text(&denial.reason),
                "token in a denial"
            );
        }
    }
}

/// Whether a reason's text is made of fixed strings only (`&'static str` payloads, fieldless
/// enums), so that it cannot carry any of the request's bytes. No wildcard: a new reason
/// must be sorted here.
fn fixed_text(reason: &crate::DenyReason) -> bool {
    use crate::DenyReason as R;
    match reason {
        R::MissingToken
        | R::MalformedToken
        | R::Inactive
        | R::Expired
        | R::NotYetValid
        | R::AudienceMismatch
        | R::IssuerMismatch
        | R::InsufficientScope
        | R::MalformedClaims(_)
        | R::CertificateRequired
        | R::CertificateMismatch
        | R::Unmappable(crate::claims::MappingError { .. })
        | R::InvalidJwt(_)
        | R::InvalidDpopProof(_)
        | R::DpopToken(_) => true,
        R::Unavailable(_) | R::Keystone(_) | R::KeystoneUnavailable(_) => false,
    }
}

/// Serves the current input as memcached's raw reply to `get`; keeps the reply as served
/// (`$KEY` replaced) in the second slot.
struct ReplayedReply(Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<u8>>>);

impl crate::shared_cache::SharedStore for ReplayedReply {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // `$KEY` stands for the storage key (a keyed hash no fuzzer would guess), so the
        // seeds reach the value and unsealing paths.
        let bytes = replace_all(&bytes, b"$KEY", key.as_bytes());
        bytes.clone_into(&mut self.1.lock().unwrap_or_else(PoisonError::into_inner));
        let mut reader = std::io::Cursor::new(bytes);
        let reply = crate::shared_cache::memcached::read_get_reply(&mut reader, key)
            .map_err(|e| e.to_string())?;
        if let Some(value) = &reply {
            assert!(
                value.len() <= crate::shared_cache::memcached::MAX_VALUE_LEN,
                "a value past the cap was read"
            );
        }
        Ok(reply)
    }

    fn set(&self, _: &str, _: &[u8], _: std::time::Duration) -> Result<(), String> {
        Ok(())
    }
}

/// The memcached reply parser and the shared tier's unsealing: byte 0 picks the protection
/// (None, MAC, ENCRYPT), the rest is memcached's whole reply to `get`. Checks that nothing
/// panics, that a MAC or ENCRYPT tier accepts no entry it did not seal (the fuzzer has no
/// key), and that a plain tier accepts only a JSON object that the reply really carried.
pub fn memcached_reply(data: &[u8]) {
    use crate::shared_cache::{SharedTier, SharedTierConfig};
    let Some((&selector, reply)) = data.split_first() else {
        return;
    };
    let strategy = ["None", "MAC", "ENCRYPT"][usize::from(selector % 3)];
    let raw = RawOptions::from_pairs([
        ("memcached_servers", "127.0.0.1:1"),
        ("memcache_security_strategy", strategy),
        ("memcache_secret_key", "fuzz-shared-secret-0123456789"),
    ]);
    let Ok(Some(config)) = SharedTierConfig::from_raw(&raw) else {
        panic!("the fuzz shared-tier options parse");
    };
    let input = Arc::new(Mutex::new(reply.to_vec()));
    let served = Arc::new(Mutex::new(Vec::new()));
    let store = ReplayedReply(input, served.clone());
    let tier = SharedTier::with_store(Box::new(store), &config, "fuzz-policy");
    let found = tier.get(TOKEN);
    if let Some(claims) = found {
        assert_eq!(
            strategy, "None",
            "a {strategy} tier accepted an entry it did not seal"
        );
        // Carried: some `{` of the reply starts a JSON object equal to the claims (found
        // without the framing parser; decoded, so `"a\tb"` is the key a-tab-b).
        let served = served.lock().unwrap_or_else(PoisonError::into_inner);
        let want = Value::Object(claims);
        let carried = served.iter().enumerate().any(|(i, &b)| {
            b == b'{'
                && serde_json::Deserializer::from_slice(&served[i..])
                    .into_iter::<Value>()
                    .next()
                    .is_some_and(|v| v.is_ok_and(|v| v == want))
        });
        assert!(carried, "claims that the reply does not carry");
    }
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// A DPoP proof for `POST https://rs.example/v1` with the access token `TOKEN` at [`NOW`]:
/// checked twice; an accepted proof must name that method, URL and token hash, carry a
/// public key whose thumbprint is returned, and be refused as a replay the second time.
fn dpop_proof(data: &[u8]) {
    use crate::dpop::{DpopConfig, DpopMode, ProofContext, ProofFault, ReplayCache, check_proof};
    use crate::jwt::Algorithm;
    let Ok(proof) = std::str::from_utf8(data) else {
        return;
    };
    let config = DpopConfig {
        mode: DpopMode::Allowed,
        algorithms: vec![
            Algorithm::Es256,
            Algorithm::Rs256,
            Algorithm::Ps256,
            Algorithm::EdDsa,
        ],
        max_age: std::time::Duration::from_secs(60),
        public_url: None,
    };
    let replays = ReplayCache::new(16);
    let ctx = ProofContext {
        proof,
        method: "POST",
        url: "https://rs.example/v1",
        token: TOKEN,
        now: NOW,
        leeway: 5.0,
    };
    let now = std::time::Instant::now();
    if let Ok(checked) = check_proof(&config, &replays, now, &ctx) {
        assert_eq!(checked.jkt.len(), 43, "a thumbprint is base64url SHA-256");
        assert_eq!(
            check_proof(&config, &replays, now, &ctx),
            Err(ProofFault::Replayed),
            "the same proof twice"
        );
    }
}
