//! The outbound side: access tokens by the Client Credentials grant (RFC 6749 §4.4), for a
//! service that calls other services (Tacker's `use_ext_oauth2_auth`).
//!
//! Tokens are cached until `expires_in` minus a margin and refreshed early; one request to the
//! AS however many threads ask at once. The cache is shared by every client in the process
//! with the same endpoint, client, method, scope, certificate and credential, so code that
//! builds a new client per operation (as Tacker does) still reuses the token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use zeroize::Zeroize;

use crate::assertion::DpopSigner;
use crate::client_auth::{ClientAuthenticator, EncodedRequest};
use crate::client_config::ClientConfig;
use crate::clock;
use crate::error::{AsError, ConfigError, sanitize};
use crate::http::{HttpResponse, ReqwestTransport, Transport};
use crate::introspect::json_object;
use crate::options::{RawOptions, check_url};
use crate::prometheus::{AsStats, Sample, Value as PromValue};
use crate::secret::Secret;
use crate::single_flight::{Fetched, SingleFlight};

/// Lifetime assumed when the AS omits `expires_in`.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Every option the token client reads, in the order a door lists them (each is in
/// [`crate::options::OPTIONS`], which gives its kind, default and help).
pub const OPTION_NAMES: &[&str] = &[
    "token_endpoint",
    "scope",
    "client_id",
    "client_secret",
    "auth_method",
    "basic_auth_encoding",
    "audience",
    "jwt_key_file",
    "jwt_algorithm",
    "jwt_bearer_time_out",
    "certfile",
    "keyfile",
    "cafile",
    "insecure",
    "http_connect_timeout",
    "token_expiry_margin",
    "metrics_name",
    "dpop_key_file",
];

/// The options a client cannot be built without.
pub const REQUIRED_OPTIONS: &[&str] = &["token_endpoint", "client_id"];

/// Settings of the token client.
#[derive(Debug, Clone)]
pub struct TokenClientConfig {
    /// The AS token endpoint.
    pub token_endpoint: String,
    /// Requested scope (optional, RFC 6749 §4.4.2).
    pub scope: Option<String>,
    /// Identity, method, TLS and timeout (shared with introspection).
    pub client: ClientConfig,
    /// Refresh this long before expiry; `None` means min(30 s, lifetime / 2).
    pub expiry_margin: Option<Duration>,
    /// `dpop_key_file`: ask for DPoP-bound tokens, with proofs signed by this key.
    pub dpop_key_file: Option<std::path::PathBuf>,
}

impl TokenClientConfig {
    /// Reads Tacker's option names from the one parser.
    pub fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let token_endpoint = raw.required("token_endpoint", "for the Client Credentials grant")?;
        check_url("token_endpoint", &token_endpoint)?;
        let expiry_margin = match raw.secs("token_expiry_margin")? {
            None => None,
            Some(n) if n >= 0 => Some(Duration::from_secs(n.unsigned_abs())),
            Some(n) => {
                return Err(ConfigError::new(
                    "token_expiry_margin",
                    format!("must not be negative, not {n}"),
                ));
            }
        };
        Ok(Self {
            token_endpoint,
            scope: raw.string("scope"),
            client: ClientConfig::from_raw(raw)?,
            expiry_margin,
            dpop_key_file: raw.path("dpop_key_file"),
        })
    }
}

/// An access token. `Debug` shows no token.
#[derive(Clone)]
pub struct AccessToken {
    value: Secret,
    expires_at: Instant,
    refresh_at: Instant,
    scope: Option<String>,
    dpop: bool,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field(
                "expires_in",
                &self.expires_at.saturating_duration_since(Instant::now()),
            )
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// The token to send as `Authorization: Bearer …`.
    pub fn secret(&self) -> &str {
        self.value.expose()
    }

    /// Time left before it expires.
    pub fn expires_in(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }

    /// The scope granted, if the AS said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `Authorization` scheme to send it with: `DPoP` for a DPoP-bound token, else
    /// `Bearer`.
    pub fn scheme(&self) -> &'static str {
        if self.dpop { "DPoP" } else { "Bearer" }
    }
}

#[derive(Default)]
struct State {
    token: Option<AccessToken>,
    requests: u64,
}

/// The token cache shared by equal clients.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// The token request under way, shared by every thread that needs a token meanwhile.
    request: SingleFlight<(), AccessToken, AsError>,
    stats: AsStats,
}

type Registry = Mutex<HashMap<[u8; 32], Weak<Shared>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Obtains and caches access tokens.
pub struct TokenClient {
    config: TokenClientConfig,
    auth: ClientAuthenticator,
    dpop: Option<DpopSigner>,
    transport: Arc<dyn Transport>,
    shared: Arc<Shared>,
    warnings: Vec<String>,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("token_endpoint", &self.config.token_endpoint)
            .field("auth", &self.auth)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TokenClient>();
};

impl TokenClient {
    /// Parses options (the one parser) and builds a client.
    pub fn from_options<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::new(TokenClientConfig::from_raw(&RawOptions::from_pairs(pairs))?)
    }

    /// Builds a client; keys and TLS material are loaded now.
    pub fn new(config: TokenClientConfig) -> Result<Self, ConfigError> {
        let transport = ReqwestTransport::new(&config.client)?;
        let cert = transport.identity().map(|i| i.digest).unwrap_or_default();
        Self::with_transport(config, Arc::new(transport), cert)
    }

    /// Builds with a given transport; `cert` is the client certificate's digest (or zeros).
    pub fn with_transport(
        config: TokenClientConfig,
        transport: Arc<dyn Transport>,
        cert: [u8; 32],
    ) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let auth = ClientAuthenticator::new(&config.client, &mut warnings)?;
        let dpop = match &config.dpop_key_file {
            Some(path) => Some(DpopSigner::from_key_file(path)?),
            None => None,
        };
        // Tokens bound to one DPoP key are not shared with clients holding another.
        let jkt = dpop.as_ref().map_or("", DpopSigner::jkt);
        let key = cache_key(&config, &cert, &auth.credential_digest(), jkt);
        let shared = {
            let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, weak| weak.strong_count() > 0);
            match map.get(&key).and_then(Weak::upgrade) {
                Some(shared) => shared,
                None => {
                    let shared = Arc::new(Shared::default());
                    map.insert(key, Arc::downgrade(&shared));
                    shared
                }
            }
        };
        Ok(Self {
            config,
            auth,
            dpop,
            transport,
            shared,
            warnings,
        })
    }

    /// Start-up warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The configuration in force.
    pub fn config(&self) -> &TokenClientConfig {
        &self.config
    }

    /// Token requests this client's shared cache has sent.
    pub fn requests_sent(&self) -> u64 {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token if it needs no refresh yet (no I/O).
    pub fn cached(&self) -> Option<AccessToken> {
        let now = Instant::now();
        self.lock()
            .token
            .as_ref()
            .filter(|t| now < t.refresh_at)
            .cloned()
    }

    /// A valid token: cached, or fetched now (blocking, bounded by `http_connect_timeout`).
    /// While one thread refreshes a token that is still valid, others keep using it; when
    /// there is none, they wait for that one request and share its result.
    pub fn token(&self) -> Result<AccessToken, AsError> {
        let wait = self
            .config
            .client
            .timeout
            .saturating_add(Duration::from_secs(1));
        {
            let state = self.lock();
            let now = Instant::now();
            if let Some(t) = &state.token
                && (now < t.refresh_at
                    || (now < t.expires_at && self.shared.request.in_flight(&())))
            {
                return Ok(t.clone());
            }
        }
        match self.shared.request.run((), wait, || self.refresh()) {
            Fetched::Computed(result) | Fetched::Shared(result) => result,
        }
    }

    /// The flight's work: a token request, unless the flight that ended just before this one
    /// began left a fresh token.
    fn refresh(&self) -> Result<AccessToken, AsError> {
        {
            let mut state = self.lock();
            if let Some(t) = state
                .token
                .as_ref()
                .filter(|t| Instant::now() < t.refresh_at)
            {
                return Ok(t.clone());
            }
            state.requests += 1;
        }
        let started = Instant::now();
        let result = self.fetch();
        self.shared.stats.observe(started.elapsed(), &result);
        if let Ok(token) = &result {
            self.lock().token = Some(token.clone());
        }
        result
    }

    /// The Prometheus samples of this client's shared cache: token requests, their errors
    /// by kind and their durations.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = vec![Sample {
            family: "tokenward_token_requests_total",
            label: None,
            value: PromValue::Counter(self.requests_sent()),
        }];
        self.shared.stats.samples(&mut out);
        out
    }

    /// Drops the cached token (after a 401 from a resource, say); the next call fetches anew.
    pub fn invalidate(&self) {
        self.lock().token = None;
    }

    fn fetch(&self) -> Result<AccessToken, AsError> {
        let mut params = Vec::with_capacity(2);
        if let Some(scope) = &self.config.scope {
            params.push(("scope", scope.as_str()));
        }
        params.push(("grant_type", "client_credentials"));
        let sent_at = Instant::now();
        let (mut response, assertion) = self.send(&params, None)?;
        let (mut response, assertion) = match (&self.dpop, &response) {
            // RFC 9449 §8: the AS may insist on a nonce of its own; one retry carries it.
            (Some(_), (answer, Some(nonce)))
                if answer.status == 400
                    && json_object(answer, &[]).err().is_some_and(|e| {
                        matches!(&e, AsError::Status { error: Some(code), .. } if code == "use_dpop_nonce")
                    }) =>
            {
                let nonce = nonce.clone();
                response.0.body.zeroize();
                self.send(&params, Some(&nonce))?
            }
            _ => (response, assertion),
        };
        let response = &mut response.0;
        let parsed = json_object(response, &self.auth.secrets(assertion.as_ref()));
        // The answer holds the access token: wipe it once parsed.
        response.body.zeroize();
        let mut body = parsed?;
        let value = match body.remove("access_token") {
            Some(Value::String(t)) => Secret::new(t),
            _ => Secret::new(""),
        };
        let token = value.expose();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AsError::Malformed(
                "no usable access_token in the token response".into(),
            ));
        }
        let dpop = match body.get("token_type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("dpop") && self.dpop.is_some() => true,
            Some(t) if !t.eq_ignore_ascii_case("bearer") => {
                return Err(AsError::Malformed(format!(
                    "token_type {:?} is not Bearer{}",
                    sanitize(t, &self.auth.secrets(assertion.as_ref())),
                    if self.dpop.is_some() { " or DPoP" } else { "" }
                )));
            }
            _ => false,
        };
        let lifetime = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_LIFETIME, clock::saturating_secs);
        let margin = self
            .config
            .expiry_margin
            .unwrap_or_else(|| (lifetime / 2).min(Duration::from_secs(30)));
        let expires_at = clock::instant_after(sent_at, lifetime);
        Ok(AccessToken {
            value,
            expires_at,
            refresh_at: expires_at
                .checked_sub(margin.min(lifetime))
                .unwrap_or(sent_at),
            scope: body.get("scope").and_then(Value::as_str).map(str::to_owned),
            dpop,
        })
    }

    /// One token request: the form (with a fresh assertion) and, with `dpop_key_file`, a
    /// fresh proof for the token endpoint. Returns the answer, its `DPoP-Nonce` and the
    /// assertion sent (to scrub from error texts).
    #[allow(clippy::type_complexity)]
    fn send(
        &self,
        params: &[(&str, &str)],
        nonce: Option<&str>,
    ) -> Result<((HttpResponse, Option<String>), Option<Secret>), AsError> {
        let EncodedRequest {
            authorization,
            body,
            assertion,
        } = self.auth.encode(params)?;
        let endpoint = &self.config.token_endpoint;
        let answer = match &self.dpop {
            Some(signer) => {
                let proof = signer.proof("POST", endpoint, None, nonce)?;
                self.transport
                    .post_form_dpop(endpoint, authorization, body, proof)?
            }
            None => (
                self.transport.post_form(endpoint, authorization, body)?,
                None,
            ),
        };
        Ok((answer, assertion))
    }

    /// A DPoP proof for a request to a resource with `token` (`None` for a Bearer token or
    /// a client without `dpop_key_file`).
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        token: &AccessToken,
    ) -> Result<Option<Secret>, AsError> {
        match (&self.dpop, token.dpop) {
            (Some(signer), true) => signer
                .proof(method, url, Some(token.secret()), None)
                .map(Some),
            _ => Ok(None),
        }
    }
}

/// The sharing key: endpoint, client, method, scope, certificate, and a hash of the credential
/// (so a client with a wrong secret never borrows a token another one obtained).
fn cache_key(
    config: &TokenClientConfig,
    cert: &[u8; 32],
    credential: &[u8; 32],
    dpop_jkt: &str,
) -> [u8; 32] {
    let c = &config.client;
    let mut h = blake3::Hasher::new_derive_key("tokenward 2026 client credentials cache");
    for part in [
        config.token_endpoint.as_str(),
        c.client_id.as_str(),
        c.auth_method.as_str(),
        config.scope.as_deref().unwrap_or(""),
        c.audience.as_deref().unwrap_or(""),
        c.jwt_algorithm.as_deref().unwrap_or(""),
        dpop_jkt,
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(cert);
    h.update(credential);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Answer = Box<dyn Fn(usize, &str) -> HttpResponse + Send + Sync>;

    struct Scripted {
        calls: AtomicUsize,
        delay: Duration,
        answer: Answer,
    }

    impl Transport for Scripted {
        fn post_form(
            &self,
            _: &str,
            _: Option<Secret>,
            body: Secret,
        ) -> Result<HttpResponse, AsError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            Ok((self.answer)(n, body.expose()))
        }
    }

    fn client(
        endpoint: &str,
        answer: impl Fn(usize, &str) -> HttpResponse + Send + Sync + 'static,
    ) -> (TokenClient, Arc<Scripted>) {
        let t = Arc::new(Scripted {
            calls: AtomicUsize::new(0),
            delay: Duration::from_millis(50),
            answer: Box::new(answer),
        });
        let raw = RawOptions::from_pairs([
            ("token_endpoint", endpoint),
            ("client_id", "svc"),
            ("client_secret", "secret"),
            ("scope", "api"),
        ]);
        let cfg = TokenClientConfig::from_raw(&raw).unwrap();
        (
            TokenClient::with_transport(cfg, t.clone(), [0; 32]).unwrap(),
            t,
        )
    }

    fn ok(n: usize, expires_in: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            body: format!(
                r#"{{"access_token":"tok{n}","token_type":"bearer","expires_in":{expires_in}}}"#
            )
            .into_bytes(),
        }
    }

    #[test]
    fn concurrent_callers_share_one_request_and_invalidate_fetches_again() {
        let (c, t) = client("https://as.test/token/a", |n, body| {
            assert_eq!(body, "scope=api&grant_type=client_credentials");
            ok(n, "300")
        });
        let c = Arc::new(c);
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || c.token().unwrap().secret().to_owned())
            })
            .collect();
        for th in threads {
            assert_eq!(th.join().unwrap(), "tok0");
        }
        for _ in 0..10 {
            assert_eq!(c.token().unwrap().secret(), "tok0");
        }
        assert_eq!(t.calls.load(Ordering::SeqCst), 1);
        c.invalidate();
        assert_eq!(c.token().unwrap().secret(), "tok1");
        assert_eq!(t.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_request_is_shared_by_its_waiters_and_never_by_later_callers() {
        let (c, t) = client("https://as.test/token/fails", |n, _| match n {
            0 => HttpResponse {
                status: 503,
                body: br#"{"error":"temporarily_unavailable"}"#.to_vec(),
            },
            n => ok(n, "300"),
        });
        let c = Arc::new(c);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || c.token().map(|t| t.secret().to_owned()))
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Threads that came while the failing request was under way got its error; one that
        // came after it started its own (successful) request.
        let calls = t.calls.load(Ordering::SeqCst);
        let failed = results.iter().filter(|r| r.is_err()).count();
        assert!(failed >= 1, "{results:?}");
        assert!(calls <= 2, "{calls} requests: {results:?}");
        assert!(results.iter().flatten().all(|s| s == "tok1"), "{results:?}");
        assert_eq!(
            c.token().unwrap().secret(),
            "tok1",
            "the failure is not remembered"
        );
        assert_eq!(t.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn equal_clients_share_the_cache() {
        let (a, ta) = client("https://as.test/token/shared", |n, _| ok(n, "300"));
        let (b, tb) = client("https://as.test/token/shared", |n, _| ok(n + 100, "300"));
        assert_eq!(a.token().unwrap().secret(), "tok0");
        assert_eq!(b.token().unwrap().secret(), "tok0");
        assert_eq!(
            ta.calls.load(Ordering::SeqCst) + tb.calls.load(Ordering::SeqCst),
            1
        );
    }

    #[test]
    fn near_expiry_refreshes_once() {
        // expires_in 2 s: margin = 1 s, so a refresh is due after 1 s.
        let (c, t) = client("https://as.test/token/expiry", |n, _| ok(n, "\"2\""));
        assert_eq!(c.token().unwrap().secret(), "tok0");
        assert!(c.cached().is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(c.cached().is_none());
        let c = Arc::new(c);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || c.token().unwrap().secret().to_owned())
            })
            .collect();
        let seen: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(seen.iter().all(|s| s == "tok0" || s == "tok1"));
        assert_eq!(c.token().unwrap().secret(), "tok1");
        assert_eq!(t.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn errors_are_typed_and_not_cached() {
        let (c, t) = client("https://as.test/token/errors", |n, _| match n {
            0 => HttpResponse {
                status: 401,
                body: br#"{"error":"invalid_client"}"#.to_vec(),
            },
            1 => HttpResponse {
                status: 200,
                body: b"<html>".to_vec(),
            },
            2 => HttpResponse {
                status: 200,
                body: br#"{"access_token":"x","token_type":"mac"}"#.to_vec(),
            },
            3 => HttpResponse {
                status: 200,
                body: br#"{"access_token":"a","token_type":"bearer","access_token":"b"}"#.to_vec(),
            },
            _ => ok(n, "60"),
        });
        assert!(matches!(
            c.token(),
            Err(AsError::CredentialsRejected { status: 401, .. })
        ));
        assert!(matches!(c.token(), Err(AsError::Malformed(_))));
        assert!(matches!(c.token(), Err(AsError::Malformed(_))));
        assert!(
            matches!(c.token(), Err(AsError::Malformed(m)) if m.contains("repeats a member name"))
        );
        assert_eq!(c.token().unwrap().secret(), "tok4");
        assert_eq!(t.calls.load(Ordering::SeqCst), 5);
        assert!(!format!("{c:?} {:?}", c.token().unwrap()).contains("tok4"));
    }

    #[test]
    fn any_expires_in_gives_a_token_with_a_sane_lifetime() {
        for (i, (expires_in, far)) in [
            ("1e20", true),
            ("1.797e308", true),
            ("1000000000000000000000000000000", true),
            ("\"1e400\"", false),
            ("\"NaN\"", false),
            ("\"inf\"", false),
            ("-1", false),
            ("\"-5\"", false),
        ]
        .into_iter()
        .enumerate()
        {
            let endpoint = format!("https://as.test/token/far/{i}");
            let (c, _) = client(&endpoint, move |n, _| ok(n, expires_in));
            let t = c.token().unwrap_or_else(|e| panic!("{expires_in}: {e}"));
            let left = t.expires_in();
            if far {
                assert!(
                    left > Duration::from_secs(50 * 365 * 86_400),
                    "{expires_in}"
                );
                assert!(left <= crate::clock::MAX_LIFETIME, "{expires_in}");
            } else {
                assert!(
                    left <= DEFAULT_LIFETIME,
                    "{expires_in}: the default lifetime"
                );
            }
        }
    }

    #[test]
    fn echoed_secrets_are_scrubbed_from_errors() {
        let (c, _) = client("https://as.test/token/echo", |n, _| match n {
            0 => HttpResponse {
                status: 400,
                body: br#"{"error":"invalid_request","error_description":"your secret\nis wrong"}"#
                    .to_vec(),
            },
            _ => HttpResponse {
                status: 200,
                body: br#"{"access_token":"x","token_type":"secret"}"#.to_vec(),
            },
        });
        let e = c.token().unwrap_err().to_string();
        assert!(e.ends_with("(invalid_request: your ***is wrong)"), "{e}");
        let e = c.token().unwrap_err().to_string();
        assert!(e.contains(r#"token_type "***""#), "{e}");
    }

    #[test]
    fn token_endpoint_is_required() {
        let raw = RawOptions::from_pairs([("client_id", "svc"), ("client_secret", "s")]);
        assert_eq!(
            TokenClientConfig::from_raw(&raw).unwrap_err().option(),
            "token_endpoint"
        );
    }

    /// An AS that wants a DPoP nonce first, then issues a DPoP-bound token; keeps the proofs.
    #[derive(Default)]
    struct DpopAs {
        proofs: Mutex<Vec<String>>,
    }

    impl Transport for DpopAs {
        fn post_form(
            &self,
            _: &str,
            _: Option<Secret>,
            _: Secret,
        ) -> Result<HttpResponse, AsError> {
            panic!("a DPoP client sent no proof");
        }

        fn post_form_dpop(
            &self,
            _: &str,
            _: Option<Secret>,
            _: Secret,
            proof: Secret,
        ) -> Result<(HttpResponse, Option<String>), AsError> {
            let mut proofs = self.proofs.lock().unwrap();
            proofs.push(proof.expose().to_owned());
            let (status, body) = if proofs.len() == 1 {
                (400, r#"{"error":"use_dpop_nonce"}"#)
            } else {
                (
                    200,
                    r#"{"access_token":"AT-dpop","token_type":"DPoP","expires_in":300}"#,
                )
            };
            let answer = HttpResponse {
                status,
                body: body.as_bytes().to_vec(),
            };
            Ok((answer, Some("nonce-1".into())))
        }
    }

    fn claims_of(
        proof: &str,
    ) -> (
        serde_json::Map<String, Value>,
        serde_json::Map<String, Value>,
    ) {
        use base64::Engine as _;
        let part = |i: usize| -> serde_json::Map<String, Value> {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(proof.split('.').nth(i).unwrap())
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        (part(0), part(1))
    }

    #[test]
    fn dpop_bound_tokens_with_the_nonce_retry_and_proofs_per_request() {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ec256-sec1.key");
        let raw = RawOptions::from_pairs([
            ("token_endpoint", "https://as.example/token?x=1"),
            ("client_id", "svc"),
            ("client_secret", "secret"),
            ("dpop_key_file", key),
        ]);
        let transport = Arc::new(DpopAs::default());
        let client = TokenClient::with_transport(
            TokenClientConfig::from_raw(&raw).unwrap(),
            transport.clone(),
            [0; 32],
        )
        .unwrap();
        let token = client.token().unwrap();
        assert_eq!((token.secret(), token.scheme()), ("AT-dpop", "DPoP"));
        let proofs = transport.proofs.lock().unwrap().clone();
        assert_eq!(proofs.len(), 2, "one retry with the nonce");
        for (i, proof) in proofs.iter().enumerate() {
            let (header, claims) = claims_of(proof);
            assert_eq!(header["typ"], "dpop+jwt");
            assert_eq!(header["alg"], "ES256");
            assert!(!header["jwk"].as_object().unwrap().contains_key("d"));
            assert_eq!(claims["htm"], "POST");
            assert_eq!(claims["htu"], "https://as.example/token");
            assert_eq!(claims.get("nonce").is_some(), i == 1);
            assert!(!claims.contains_key("ath"));
            // An independent verifier accepts the proof with the key it carries.
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(header["jwk"].clone()).unwrap();
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            jsonwebtoken::decode::<Value>(
                proof,
                &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
                &v,
            )
            .unwrap();
        }
        // A resource request's proof passes tokenward's own resource-server check.
        let proof = client
            .proof("GET", "https://api.example/v1/vnf?page=2", &token)
            .unwrap()
            .unwrap();
        let config = crate::dpop::DpopConfig {
            mode: crate::dpop::DpopMode::Allowed,
            algorithms: vec![crate::jwt::Algorithm::Es256],
            max_age: Duration::from_secs(60),
            public_url: None,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let ctx = crate::dpop::ProofContext {
            proof: proof.expose(),
            method: "GET",
            url: "https://api.example/v1/vnf",
            token: token.secret(),
            now,
            leeway: 5.0,
        };
        let replays = crate::dpop::ReplayCache::new(8);
        let jkt = crate::dpop::check_proof(&config, &replays, Instant::now(), &ctx)
            .unwrap()
            .jkt;
        let (header, _) = claims_of(proof.expose());
        assert_eq!(
            Some(jkt),
            crate::dpop::jwk_thumbprint(header["jwk"].as_object().unwrap())
        );
        assert!(format!("{client:?}").contains("jkt"));
        assert!(!format!("{client:?}").contains("BEGIN"));
    }

    #[test]
    fn a_bad_dpop_key_file_names_the_option() {
        for path in [
            "/nonexistent/key.pem",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ca.pem"),
        ] {
            let raw = RawOptions::from_pairs([
                ("token_endpoint", "https://as.example/token"),
                ("client_id", "svc"),
                ("client_secret", "secret"),
                ("dpop_key_file", path),
            ]);
            let e = TokenClient::with_transport(
                TokenClientConfig::from_raw(&raw).unwrap(),
                Arc::new(DpopAs::default()),
                [0; 32],
            )
            .unwrap_err();
            assert_eq!(e.option(), "dpop_key_file", "{e}");
        }
    }
}
