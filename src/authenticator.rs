//! The resource-server check: bearer token in, verdict out.
//!
//! A verdict is never an error: `Allow` carries the identity to hand to the application;
//! `Deny` carries the reason, which fixes the status (401 invalid token, 403 unusable claims
//! or scope, 503 AS unavailable). Every door maps a [`Denial`] to its response the same way.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::hmac;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::breaker::{self, Admission, Breaker};
use crate::cache::{CacheKey, Fetched, TokenKeys, VerdictCache};
use crate::claims::{MappedIdentity, MappingError, map_identity};
use crate::client_auth::ClientAuthenticator;
use crate::clock::{self, Clock};
use crate::config::{Binding, FilterConfig, Validation};
use crate::dpop::{self, DpopMode, ProofContext, ProofFault, ReplayCache};
use crate::error::{AsError, ConfigError};
use crate::headers::IdentityHeader;
use crate::http::{ReqwestTransport, Transport};
use crate::introspect::introspect;
use crate::jwks::{Candidates, KeyCounters, KeyStore, Lookup};
use crate::jwt::{self, JwtRefusal, Shape};
use crate::log::{Level, LogSink, NoLog};
use crate::options::RawOptions;
use crate::prometheus::{AsStats, Sample, Value as PromValue};
use crate::proxy_cert::ProxyCerts;
use crate::secret::Secret;
use crate::shared_cache::{Protection, SharedTier};
use crate::strict_json::{JsonObject, JsonTree, View};
use crate::thumbprint::{self, CertDigest, DigestMemo};
use once_cell::race::OnceBox;

/// Most DPoP proofs remembered against replay (older ones are forgotten first).
pub(crate) const REPLAY_CAPACITY: usize = 100_000;

/// Longest bearer token accepted (longer ones are refused without asking the AS).
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// No `Authorization: Bearer` credential.
    MissingToken,
    /// The header or token is malformed (wrong scheme, bad characters, too long).
    MalformedToken,
    /// The AS says the token is not active.
    Inactive,
    /// `exp` (or `mapping_expires_at`) has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `aud` does not hold a configured `token_audience`.
    AudienceMismatch,
    /// `iss` is not the configured `token_issuer`.
    IssuerMismatch,
    /// `scope` lacks a `token_required_scope`.
    InsufficientScope,
    /// A standard claim has the wrong type (`exp`, `nbf`, `cnf`, ...).
    MalformedClaims(&'static str),
    /// `thumbprint_verify` is on and the request carries no usable client certificate.
    CertificateRequired,
    /// The token is bound to another certificate, or not bound at all.
    CertificateMismatch,
    /// The identity claims do not map (403).
    Unmappable(MappingError),
    /// A JWT refused by the offline checks before its claims (header, key, signature).
    InvalidJwt(JwtRefusal),
    /// The DPoP proof is missing or wrong (`invalid_dpop_proof`).
    InvalidDpopProof(ProofFault),
    /// The token does not fit its scheme or proof key (`invalid_token`, RFC 9449 §7).
    DpopToken(&'static str),
    /// The AS could not answer (503).
    Unavailable(AsError),
    /// A Keystone token (`X-Auth-Token`, `X-Service-Token`) refused (401).
    Keystone(crate::keystone::KeystoneRefusal),
    /// Keystone could not answer, or refused this service's own credentials (503).
    KeystoneUnavailable(AsError),
}

impl DenyReason {
    /// The HTTP status for this reason.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unmappable(_) | Self::InsufficientScope => 403,
            Self::Unavailable(_) | Self::KeystoneUnavailable(_) => 503,
            _ => 401,
        }
    }

    /// A short stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedToken => "malformed_token",
            Self::Inactive => "inactive",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::AudienceMismatch => "audience_mismatch",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::InsufficientScope => "insufficient_scope",
            Self::MalformedClaims(_) => "malformed_claims",
            Self::CertificateRequired => "certificate_required",
            Self::CertificateMismatch => "certificate_mismatch",
            Self::Unmappable(_) => "unmappable_claims",
            Self::InvalidJwt(_) => "invalid_jwt",
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
            Self::DpopToken(_) => "dpop_binding",
            Self::Unavailable(_) => "as_unavailable",
            Self::Keystone(refusal) => refusal.code(),
            Self::KeystoneUnavailable(_) => "keystone_unavailable",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedClaims(what) => write!(f, "malformed claims: {what}"),
            Self::Unmappable(e) => write!(f, "unmappable claims: {e}"),
            Self::InvalidJwt(e) => write!(f, "{e}"),
            Self::InvalidDpopProof(fault) => write!(f, "invalid DPoP proof: {}", fault.code()),
            Self::DpopToken(why) => write!(f, "DPoP: {why}"),
            Self::Unavailable(e) => write!(f, "{e}"),
            Self::Keystone(refusal) => write!(f, "{refusal}"),
            Self::KeystoneUnavailable(e) => {
                f.write_str(&e.to_string().replace("authorization server", "Keystone"))
            }
            other => f.write_str(&other.code().replace('_', " ")),
        }
    }
}

/// An accepted token's identity, shared by every request that presents it while cached.
pub struct Grant {
    identity: MappedIdentity,
    expires: Option<f64>,
    not_before: Option<f64>,
    bound_to: Option<CertDigest>,
    /// `cnf.jkt`: the thumbprint of the key the token is bound to (RFC 9449 §6).
    jkt: Option<String>,
    stale: bool,
    /// What a door derived from this grant (its own objects for the identity); see
    /// [`Grant::door_data`].
    door: OnceBox<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// The identity headers to set, in order.
    pub fn headers(&self) -> &[(IdentityHeader, String)] {
        &self.identity.headers
    }

    /// keystonemiddleware's `token_data` as JSON (`external.token_info`).
    pub fn token_info_json(&self) -> &str {
        &self.identity.token_info_json
    }

    /// Whether the grant was served past its cache lifetime because the AS could not answer
    /// (`stale_if_error`); `external.token_info` then says `"stale": true`.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    fn marked_stale(&self) -> Self {
        let mut copy = self.copy(true);
        let json = &copy.identity.token_info_json;
        copy.identity.token_info_json = match json.strip_prefix('{') {
            Some(rest) if rest.trim_start().starts_with('}') => "{\"stale\": true}".to_owned(),
            Some(rest) => format!("{{\"stale\": true, {rest}"),
            None => json.clone(),
        };
        copy
    }

    /// The same grant with an empty door slot.
    fn copy(&self, stale: bool) -> Self {
        Self {
            identity: self.identity.clone(),
            expires: self.expires,
            not_before: self.not_before,
            bound_to: self.bound_to,
            jkt: self.jkt.clone(),
            stale,
            door: OnceBox::new(),
        }
    }

    /// A grant of prebuilt headers (a Keystone token's), with `token_info_json` as given
    /// (empty when there is none).
    pub(crate) fn keystone(
        headers: Vec<(IdentityHeader, String)>,
        token_info_json: String,
        expires: Option<f64>,
    ) -> Self {
        Self {
            identity: MappedIdentity {
                headers,
                token_info_json,
                expires_at: None,
            },
            expires,
            not_before: None,
            bound_to: None,
            jkt: None,
            stale: false,
            door: OnceBox::new(),
        }
    }

    /// What a door stored for this grant with [`Grant::offer_door_data`], if it is a `T`.
    /// Never blocks.
    pub fn door_data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.door.get()?.downcast_ref()
    }

    /// Stores `value` for this grant unless something is stored already, and returns what
    /// is stored (`value`, or what another thread offered first: then `value` is dropped);
    /// `None` when what is stored is not a `T`. The door builds `value` beforehand with no
    /// lock held, and this never blocks (one compare-and-swap), so a door may call it while
    /// holding a lock of its own (Python's GIL) that the other builders need.
    pub fn offer_door_data<T: Any + Send + Sync>(&self, value: T) -> Option<&T> {
        let _lost_the_race = self.door.set(Box::new(Box::new(value)));
        self.door_data()
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub reason: DenyReason,
}

impl Denial {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The JSON error body, in the reference's shape.
    pub fn body(&self) -> &'static str {
        match self.reason {
            DenyReason::Unmappable(_) => {
                r#"{"error": {"code": 403, "title": "Forbidden", "message": "The request you have made is denied, because the necessary information could not be parsed."}}"#
            }
            DenyReason::InsufficientScope => {
                r#"{"error": {"code": 403, "title": "Forbidden", "message": "The request you have made is denied, because the token does not grant the required scope."}}"#
            }
            DenyReason::Unavailable(_) => {
                r#"{"error": {"code": 503, "title": "Service Unavailable", "message": "The request you have made is denied, because an exception occurred while accessing the external authentication server for token validation."}}"#
            }
            DenyReason::Keystone(_) => {
                r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#
            }
            DenyReason::KeystoneUnavailable(_) => {
                r#"{"error": {"code": 503, "title": "Service Unavailable", "message": "The Keystone service is temporarily unavailable."}}"#
            }
            _ => {
                r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made is denied, because the token is invalid."}}"#
            }
        }
    }

    /// The HTTP status line text, e.g. `401 Unauthorized`.
    pub fn status_line(&self) -> &'static str {
        match self.status() {
            403 => "403 Forbidden",
            503 => "503 Service Unavailable",
            _ => "401 Unauthorized",
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Accepted, with the identity.
    Allow(Arc<Grant>),
    /// Refused.
    Deny(Denial),
}

impl Verdict {
    fn deny(reason: DenyReason) -> Self {
        Self::Deny(Denial { reason })
    }
}

/// Where a token's claims come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// An RFC 7662 answer (must say `active`).
    Introspection,
    /// A verified JWT's payload (must have `exp`).
    Jwt,
}

#[derive(Clone)]
enum Entry {
    Allowed(Arc<Grant>),
    Denied(DenyReason),
}

/// Counters, readable from both doors.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) introspections: AtomicU64,
    pub(crate) as_errors: AtomicU64,
    jwt_verifications: AtomicU64,
    jwt_refusals: AtomicU64,
    pub(crate) breaker_rejections: AtomicU64,
    stale_served: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Cached positive verdicts used.
    pub cache_hits: u64,
    /// Cached negative verdicts used.
    pub cache_negative_hits: u64,
    /// Lookups that found nothing.
    pub cache_misses: u64,
    /// Misses that waited for another thread's introspection.
    pub coalesced_waits: u64,
    /// Introspection requests sent.
    pub introspections: u64,
    /// Introspections that failed (AS unreachable, error status, garbage).
    pub as_errors: u64,
    /// Entries held now.
    pub cache_entries: u64,
    /// Entries evicted to stay within `token_cache_size`.
    pub cache_evictions: u64,
    /// Answers found in the shared tier (memcached/Redis).
    pub shared_hits: u64,
    /// Shared-tier operations that failed (down, slow, forged entries).
    pub shared_errors: u64,
    /// JWTs whose signature verified locally.
    pub jwt_verifications: u64,
    /// JWTs refused locally (header, key, signature or claims).
    pub jwt_refusals: u64,
    /// Key-set fetch attempts (AS metadata and JWK Set).
    pub jwks_fetches: u64,
    /// Key-set fetch attempts that failed.
    pub jwks_fetch_errors: u64,
    /// Key-set fetches caused by a token with an unknown `kid`.
    pub jwks_unknown_kid_refetches: u64,
    /// Misses answered 503 at once while the circuit breaker was open.
    pub breaker_rejections: u64,
    /// Active verdicts served past their lifetime while the AS could not answer.
    pub stale_served: u64,
    /// 1 while the circuit breaker is open or half-open.
    pub breaker_open: u64,
}

impl Metrics {
    /// Name/value pairs, for dicts and C arrays.
    pub fn pairs(&self) -> [(&'static str, u64); 18] {
        [
            ("cache_hits", self.cache_hits),
            ("cache_negative_hits", self.cache_negative_hits),
            ("cache_misses", self.cache_misses),
            ("coalesced_waits", self.coalesced_waits),
            ("introspections", self.introspections),
            ("as_errors", self.as_errors),
            ("cache_entries", self.cache_entries),
            ("cache_evictions", self.cache_evictions),
            ("shared_hits", self.shared_hits),
            ("shared_errors", self.shared_errors),
            ("jwt_verifications", self.jwt_verifications),
            ("jwt_refusals", self.jwt_refusals),
            ("jwks_fetches", self.jwks_fetches),
            ("jwks_fetch_errors", self.jwks_fetch_errors),
            (
                "jwks_unknown_kid_refetches",
                self.jwks_unknown_kid_refetches,
            ),
            ("breaker_rejections", self.breaker_rejections),
            ("stale_served", self.stale_served),
            ("breaker_open", self.breaker_open),
        ]
    }
}

/// Validates bearer tokens. Build once at start-up; share across threads.
pub struct Authenticator {
    pub(crate) config: FilterConfig,
    client: ClientAuthenticator,
    pub(crate) transport: Arc<dyn Transport>,
    cache_keys: TokenKeys,
    /// The digests of the client certificates seen lately (direct or forwarded).
    cert_digests: DigestMemo,
    cache: VerdictCache<Entry, AsError>,
    pub(crate) shared: Option<SharedTier>,
    keys: Option<KeyStore>,
    /// The Keystone backend (`validation = keystone`).
    pub(crate) keystone: Option<crate::keystone::Backend>,
    proxy_certs: Option<ProxyCerts>,
    replays: ReplayCache,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) as_stats: AsStats,
    /// When a 4xx to our own credentials was last logged at ERROR.
    config_error_logged: Mutex<Option<std::time::Instant>>,
    pub(crate) log: Arc<dyn LogSink>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Counters,
    challenge: String,
    dpop_algs: String,
    warnings: Vec<String>,
    flight_wait: Duration,
    fingerprints: hmac::Key,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("introspect_endpoint", &self.config.introspect_endpoint)
            .field("client", &self.client)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authenticator>();
};

/// A request read once: its credentials parsed, its cache key and certificate digest
/// computed. Made by [`Authenticator::prepare`]; then [`Authenticator::lookup`] (the cache
/// only, no I/O) and [`Authenticator::authenticate`] (may ask the AS) read it as it is, so a
/// miss after a lookup parses, hashes and decodes nothing again.
#[derive(Debug, Clone)]
pub struct Prepared<'a>(Stage<'a>);

#[derive(Debug, Clone)]
enum Stage<'a> {
    /// The header or the certificate alone decide (no token, malformed, no certificate).
    Decided(Verdict),
    Check(Check<'a>),
}

/// What the cache and the AS need of a request.
#[derive(Clone)]
struct Check<'a> {
    token: Cow<'a, str>,
    scheme: Scheme,
    key: CacheKey,
    cert: Option<CertDigest>,
    /// The proof's inputs, kept only for the DPoP scheme.
    dpop: Option<DpopInputs<'a>>,
}

impl fmt::Debug for Check<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token, the key or the proof.
        f.debug_struct("Check")
            .field("scheme", &self.scheme)
            .field("cert", &self.cert.is_some())
            .finish_non_exhaustive()
    }
}

/// The parts of a request a DPoP proof is checked against.
#[derive(Clone)]
struct DpopInputs<'a> {
    proof: Option<Cow<'a, str>>,
    method: Option<Cow<'a, str>>,
    url: Option<Cow<'a, str>>,
}

fn owned(text: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    text.map(|t| Cow::Owned(t.into_owned()))
}

impl Prepared<'_> {
    /// The same request, owning its text (to carry it to another thread).
    pub fn into_owned(self) -> Prepared<'static> {
        Prepared(match self.0 {
            Stage::Decided(v) => Stage::Decided(v),
            Stage::Check(c) => Stage::Check(Check {
                token: Cow::Owned(c.token.into_owned()),
                scheme: c.scheme,
                key: c.key,
                cert: c.cert,
                dpop: c.dpop.map(|d| DpopInputs {
                    proof: owned(d.proof),
                    method: owned(d.method),
                    url: owned(d.url),
                }),
            }),
        })
    }

    /// The verdict when the request alone decides it (no cache or AS needed).
    pub fn decided(&self) -> Option<&Verdict> {
        match &self.0 {
            Stage::Decided(v) => Some(v),
            Stage::Check(_) => None,
        }
    }
}

/// What a door knows of a request that the check may need.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
    /// The caller's certificate from the TLS layer (PEM, URL-encoded PEM or DER).
    pub client_cert: Option<&'a [u8]>,
    /// The peer's IP address (WSGI `REMOTE_ADDR`), for `trusted_proxies`.
    pub peer: Option<&'a str>,
    /// The value of `client_cert_header`, if the request has it.
    pub forwarded_cert: Option<&'a str>,
    /// The HTTP method (for a DPoP proof's `htm`).
    pub method: Option<&'a str>,
    /// The request URL, `scheme://host[:port]/path` (for a DPoP proof's `htu`).
    pub url: Option<&'a str>,
    /// The `DPoP` header's value.
    pub dpop_proof: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request with only the header and the TLS certificate.
    pub fn new(authorization: Option<&'a str>, client_cert: Option<&'a [u8]>) -> Self {
        Self {
            authorization,
            client_cert,
            ..Self::default()
        }
    }
}

/// The token of an `Authorization` value: scheme `Bearer` in any case (RFC 7235), one token of
/// visible ASCII. Anything else is malformed.
pub(crate) fn bearer_token(authorization: Option<&str>) -> Result<&str, DenyReason> {
    credentials(authorization, false).map(|(_, token)| token)
}

/// The scheme an access token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` (RFC 9449), with a proof in the `DPoP` header.
    Dpop,
}

/// The scheme and token of an `Authorization` value; `DPoP` counts only when `dpop` is true.
pub(crate) fn credentials(
    authorization: Option<&str>,
    dpop: bool,
) -> Result<(Scheme, &str), DenyReason> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(DenyReason::MissingToken)?;
    let (scheme, token) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(if token.is_empty() {
            DenyReason::MalformedToken
        } else {
            DenyReason::MissingToken
        });
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(DenyReason::MissingToken);
    }
    // The fold has no early exit, so it vectorises (1 KB JWTs pass here on every hit).
    if token.len() > MAX_TOKEN_LEN || !token.bytes().fold(true, |ok, b| ok & b.is_ascii_graphic()) {
        return Err(DenyReason::MalformedToken);
    }
    Ok((scheme, token))
}

impl Authenticator {
    /// Parses options (the one parser) and builds an authenticator. Unknown keys become
    /// warnings (see [`Authenticator::warnings`]).
    pub fn from_options<I, K, V>(pairs: I, log: Arc<dyn LogSink>) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let raw = RawOptions::from_pairs(pairs);
        let mut auth = Self::new(FilterConfig::from_raw(&raw)?, log)?;
        let unknown = raw
            .unknown()
            .iter()
            .map(|k| format!("The option \"{k}\" is not known to tokenward"));
        auth.warnings.splice(0..0, unknown);
        auth.warnings
            .extend(crate::keystone::unused_option_warnings(
                &raw,
                auth.config.keystone.is_some(),
                auth.config.validation != Validation::Keystone,
            ));
        if auth.config.validation == Validation::Jwt {
            for name in [
                "introspect_endpoint",
                "client_secret",
                "jwt_key_file",
                "auth_method",
            ] {
                if raw.is_set(name) {
                    auth.warnings.push(format!(
                        "The option \"{name}\" is not used with validation = jwt (tokens are verified locally)"
                    ));
                }
            }
        }
        Ok(auth)
    }

    /// Builds from a checked config: loads keys and TLS material now.
    pub fn new(config: FilterConfig, log: Arc<dyn LogSink>) -> Result<Self, ConfigError> {
        let transport = Arc::new(ReqwestTransport::new(&config.client)?);
        let breaker = breaker::shared(
            &config.introspect_endpoint,
            &config.client.client_id,
            config.breaker.failure_threshold,
            config.breaker.open_time,
        );
        // Keystone has its own: an AS outage does not stop Keystone validations (nor the reverse).
        let keystone_breaker = config.keystone.as_ref().map(|ks| {
            breaker::shared(
                &ks.auth_url,
                &ks.auth.principal(),
                config.breaker.failure_threshold,
                config.breaker.open_time,
            )
        });
        Self::build(
            config,
            transport,
            log,
            clock::system(),
            breaker,
            keystone_breaker,
        )
    }

    /// Builds with a given transport (fault-injection tests).
    pub fn with_transport(
        config: FilterConfig,
        transport: Arc<dyn Transport>,
        log: Arc<dyn LogSink>,
    ) -> Result<Self, ConfigError> {
        Self::with_parts(config, transport, log, clock::system())
    }

    /// Builds with a given transport and clock (tests drive time with a `ManualClock`). The
    /// circuit breaker is this authenticator's own (filters built with [`Authenticator::new`]
    /// share one per endpoint and client).
    pub fn with_parts(
        config: FilterConfig,
        transport: Arc<dyn Transport>,
        log: Arc<dyn LogSink>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let breaker = Arc::new(Breaker::new(
            config.breaker.failure_threshold,
            config.breaker.open_time,
        ));
        let keystone_breaker = config.keystone.as_ref().map(|_| {
            Arc::new(Breaker::new(
                config.breaker.failure_threshold,
                config.breaker.open_time,
            ))
        });
        Self::build(config, transport, log, clock, breaker, keystone_breaker)
    }

    fn build(
        config: FilterConfig,
        transport: Arc<dyn Transport>,
        log: Arc<dyn LogSink>,
        clock: Arc<dyn Clock>,
        breaker: Arc<Breaker>,
        keystone_breaker: Option<Arc<Breaker>>,
    ) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let client = ClientAuthenticator::new(&config.client, &mut warnings)?;

        if config.client.tls.insecure {
            warnings.push("insecure = true: the AS certificate is not verified".into());
        }
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| {
            ConfigError::new("token_cache_size", "no random source for the cache key")
        })?;
        let policy = policy_string(&config);
        let cache_keys = TokenKeys::new(&seed, &policy)
            .ok_or_else(|| ConfigError::new("token_cache_size", "no AES for the cache key"))?;
        let cert_digests = DigestMemo::new(&seed)
            .ok_or_else(|| ConfigError::new("token_cache_size", "no AES for the cache key"))?;
        let shared = match &config.shared {
            Some(tier) => {
                if tier.protection == Protection::None {
                    warnings.push(
                        "memcache_security_strategy = None: introspection answers are stored in the shared cache as plain JSON"
                            .into(),
                    );
                }
                Some(SharedTier::new(tier, &policy, clock.clone())?)
            }
            None => None,
        };
        let keystone = match (&config.keystone, keystone_breaker) {
            (Some(ks), Some(breaker)) => Some(crate::keystone::Backend::new(
                ks,
                &config,
                &seed,
                &policy,
                &mut warnings,
                breaker,
            )),
            _ => None,
        };
        let challenge = match &keystone {
            Some(ks) if config.validation == Validation::Keystone => ks.challenge().to_owned(),
            _ => format!(
                "Authorization OAuth 2.0 uri=\"{}\"",
                config.audience.replace('"', "%22")
            ),
        };
        let fingerprints = fingerprint_key(&policy, &client, &config);
        Ok(Self {
            fingerprints,
            flight_wait: flight_wait(&config),
            cache: VerdictCache::with_linger(config.cache.capacity, config.stale_if_error),
            breaker,
            proxy_certs: config.proxy_certs.clone().map(ProxyCerts::new),
            replays: ReplayCache::new(REPLAY_CAPACITY),
            as_stats: AsStats::default(),
            config_error_logged: Mutex::new(None),
            cache_keys,
            cert_digests,
            keys: config.jwt.as_ref().map(|jwt| {
                KeyStore::new(
                    jwt.keys.clone(),
                    jwt.header.algorithms.clone(),
                    Arc::clone(&transport),
                    Arc::clone(&clock),
                    Arc::clone(&log),
                )
            }),
            shared,
            keystone,
            client,
            transport,
            log,
            clock,
            counters: Counters::default(),
            challenge,
            dpop_algs: config
                .dpop
                .algorithms
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(" "),
            warnings,
            config,
        })
    }

    /// A quiet authenticator (no log sink).
    pub fn without_log(config: FilterConfig) -> Result<Self, ConfigError> {
        Self::new(config, Arc::new(NoLog))
    }

    /// Start-up warnings (unknown options, weak settings) for the door to log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The configuration in force.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The `WWW-Authenticate` value sent with 401 (the reference's format).
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// Response headers for a denial: `WWW-Authenticate` (401) or `Retry-After` (503).
    pub fn denial_headers(&self, denial: &Denial) -> Vec<(&'static str, String)> {
        match denial.status() {
            401 if matches!(
                denial.reason,
                DenyReason::InvalidDpopProof(_) | DenyReason::DpopToken(_)
            ) || self.config.dpop.mode == DpopMode::Required =>
            {
                let error = match denial.reason {
                    DenyReason::InvalidDpopProof(_) => "invalid_dpop_proof",
                    _ => "invalid_token",
                };
                vec![(
                    "WWW-Authenticate",
                    format!("DPoP error=\"{error}\", algs=\"{}\"", self.dpop_algs),
                )]
            }
            401 => match (&denial.reason, &self.keystone) {
                // validation = keystone with bearer_validation: no token at all, both ways.
                (DenyReason::Keystone(crate::keystone::KeystoneRefusal::Missing), Some(ks))
                    if self.config.validation != Validation::Keystone =>
                {
                    vec![
                        ("WWW-Authenticate", ks.challenge().to_owned()),
                        ("WWW-Authenticate", self.challenge.clone()),
                    ]
                }
                (DenyReason::Keystone(_), Some(ks)) => {
                    vec![("WWW-Authenticate", ks.challenge().to_owned())]
                }
                _ => vec![("WWW-Authenticate", self.challenge.clone())],
            },
            503 => {
                let seconds = match &denial.reason {
                    DenyReason::Unavailable(AsError::CircuitOpen { retry_after, .. })
                    | DenyReason::KeystoneUnavailable(AsError::CircuitOpen {
                        retry_after, ..
                    }) => *retry_after,
                    _ => self.config.retry_after,
                };
                vec![("Retry-After", seconds.to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// Counters and cache size.
    pub fn metrics(&self) -> Metrics {
        let c = &self.counters;
        let key_counter = |pick: fn(&KeyCounters) -> &AtomicU64| {
            self.keys
                .as_ref()
                .map_or(0, |store| pick(&store.counters).load(Relaxed))
        };
        Metrics {
            cache_hits: c.hits.load(Relaxed),
            cache_negative_hits: c.negative_hits.load(Relaxed),
            cache_misses: c.misses.load(Relaxed),
            coalesced_waits: c.coalesced.load(Relaxed),
            introspections: c.introspections.load(Relaxed),
            as_errors: c.as_errors.load(Relaxed),
            cache_entries: (self.cache.len()
                + self
                    .keystone
                    .as_ref()
                    .map_or(0, crate::keystone::Backend::cache_len))
                as u64,
            cache_evictions: self.cache.evictions(),
            shared_hits: self.shared.as_ref().map_or(0, |t| t.hits.load(Relaxed)),
            shared_errors: self.shared.as_ref().map_or(0, SharedTier::error_count),
            jwt_verifications: c.jwt_verifications.load(Relaxed),
            jwt_refusals: c.jwt_refusals.load(Relaxed),
            jwks_fetches: key_counter(|k| &k.fetches),
            jwks_fetch_errors: key_counter(|k| &k.fetch_errors),
            jwks_unknown_kid_refetches: key_counter(|k| &k.unknown_kid_refetches),
            breaker_rejections: c.breaker_rejections.load(Relaxed),
            stale_served: c.stale_served.load(Relaxed),
            breaker_open: u64::from(
                self.breaker.is_open()
                    || self
                        .keystone
                        .as_ref()
                        .is_some_and(crate::keystone::Backend::breaker_open),
            ),
        }
    }

    /// The Prometheus samples of this authenticator (see [`crate::prometheus::FAMILIES`]).
    pub fn samples(&self) -> Vec<Sample> {
        let m = self.metrics();
        let counter = |family, n| Sample {
            family,
            label: None,
            value: PromValue::Counter(n),
        };
        let mut out = vec![
            counter("tokenward_cache_hits_total", m.cache_hits),
            counter("tokenward_cache_negative_hits_total", m.cache_negative_hits),
            counter("tokenward_cache_misses_total", m.cache_misses),
            counter("tokenward_introspections_total", m.introspections),
            counter("tokenward_breaker_rejections_total", m.breaker_rejections),
            counter("tokenward_shared_cache_errors_total", m.shared_errors),
            counter("tokenward_coalesced_waits_total", m.coalesced_waits),
            counter("tokenward_stale_served_total", m.stale_served),
            Sample {
                family: "tokenward_cache_entries",
                label: None,
                value: PromValue::Gauge(m.cache_entries as f64),
            },
            Sample {
                family: "tokenward_breaker_open",
                label: None,
                value: PromValue::Gauge(m.breaker_open as f64),
            },
        ];
        if self.keys.is_some() {
            out.extend([
                counter("tokenward_jwt_verifications_total", m.jwt_verifications),
                counter("tokenward_jwt_refusals_total", m.jwt_refusals),
                counter("tokenward_jwks_fetches_total", m.jwks_fetches),
                counter("tokenward_jwks_fetch_errors_total", m.jwks_fetch_errors),
            ]);
        }
        self.as_stats.samples(&mut out);
        out
    }

    /// The `filter` label of this authenticator's metrics: `metrics_name`, else `default`.
    pub fn metrics_label<'a>(&'a self, default: &'a str) -> &'a str {
        self.config.metrics_name.as_deref().unwrap_or(default)
    }

    /// Reads a request once: the `Authorization` header parsed, the cache key and the
    /// certificate digest computed. No I/O.
    pub fn prepare<'a>(&self, request: &Request<'a>) -> Prepared<'a> {
        if self.config.validation == Validation::Keystone {
            return Prepared(Stage::Decided(keystone_misuse()));
        }
        let dpop = self.config.dpop.mode != DpopMode::Off;
        let (scheme, token) = match credentials(request.authorization, dpop) {
            Ok(t) => t,
            Err(reason) => return Prepared(Stage::Decided(Verdict::deny(reason))),
        };
        let binding = self.config.policy.binding;
        let cert = if binding.reads_certificate() {
            let digest = match &self.proxy_certs {
                // Only the proxy's header counts, and only from a trusted proxy.
                Some(proxy) => proxy.certificate(
                    request.peer,
                    request.forwarded_cert,
                    &*self.log,
                    &self.cert_digests,
                ),
                None => request
                    .client_cert
                    .filter(|c| !c.is_empty())
                    .and_then(|c| self.cert_digests.digest(c, thumbprint::cert_digest)),
            };
            // Checked before any AS round trip: without a certificate the answer is known.
            if digest.is_none() && binding == Binding::Required {
                return Prepared(Stage::Decided(Verdict::deny(
                    DenyReason::CertificateRequired,
                )));
            }
            digest
        } else {
            None
        };
        let dpop = (scheme == Scheme::Dpop).then(|| DpopInputs {
            proof: request.dpop_proof.map(Cow::Borrowed),
            method: request.method.map(Cow::Borrowed),
            url: request.url.map(Cow::Borrowed),
        });
        Prepared(Stage::Check(Check {
            key: self.cache_keys.key(token),
            token: Cow::Borrowed(token),
            scheme,
            cert,
            dpop,
        }))
    }

    /// The check without network I/O: a verdict if the request alone or the cache decides,
    /// `None` when the AS must be asked (call [`Authenticator::authenticate`] off the event
    /// loop then, with the same prepared request).
    pub fn lookup(&self, prepared: &Prepared<'_>) -> Option<Verdict> {
        match &prepared.0 {
            Stage::Decided(v) => Some(v.clone()),
            Stage::Check(c) => self
                .cached(c.key, c.cert.as_ref())
                .map(|v| self.possession(c, v)),
        }
    }

    /// The whole check: the cache, then introspection or the offline JWT checks (blocking,
    /// bounded by `http_connect_timeout`), with concurrent misses on one token coalesced.
    pub fn authenticate(&self, prepared: &Prepared<'_>) -> Verdict {
        let c = match &prepared.0 {
            Stage::Decided(v) => return v.clone(),
            Stage::Check(c) => c,
        };
        let (token, key, cert) = (&*c.token, c.key, c.cert.as_ref());
        if let Some(v) = self.cached(key, cert) {
            return self.possession(c, v);
        }
        self.counters.misses.fetch_add(1, Relaxed);
        let entry = match self
            .cache
            .get_or_compute(key, self.flight_wait, || self.fetch(token, key))
        {
            Fetched::Computed(r) => r,
            Fetched::Shared(r) => {
                self.counters.coalesced.fetch_add(1, Relaxed);
                r
            }
        };
        let verdict = match entry {
            Ok(entry) => self.judge(&entry, cert, self.clock.wall()),
            Err(e) => match self.stale(key, cert, &e) {
                Some(verdict) => verdict,
                None => Verdict::deny(DenyReason::Unavailable(e)),
            },
        };
        let verdict = match verdict {
            // possession() logs its own refusals.
            allowed @ Verdict::Allow(_) => return self.possession(c, allowed),
            denied => denied,
        };
        if let Verdict::Deny(d) = &verdict {
            self.log_denial(token, d);
        }
        verdict
    }

    /// [`Authenticator::prepare`] then [`Authenticator::authenticate`], for a door that can
    /// block on every request.
    pub fn check(&self, request: &Request<'_>) -> Verdict {
        self.authenticate(&self.prepare(request))
    }

    /// RFC 9449 on an accepted token, on every request (hits included): a key-bound token
    /// (`cnf.jkt`) needs the DPoP scheme and a valid proof by that key; an unbound one the
    /// Bearer scheme (and only when `dpop` is not `required`).
    fn possession(&self, c: &Check<'_>, verdict: Verdict) -> Verdict {
        let Verdict::Allow(grant) = &verdict else {
            return verdict;
        };
        let mode = self.config.dpop.mode;
        let refusal = match (grant.jkt.as_deref(), c.scheme) {
            (None, Scheme::Bearer) if mode == DpopMode::Required => {
                Some(DenyReason::DpopToken("DPoP is required"))
            }
            (None, Scheme::Bearer) => None,
            (Some(_), Scheme::Bearer) => Some(DenyReason::DpopToken(
                "the token is bound to a key: use the DPoP scheme",
            )),
            (None, Scheme::Dpop) => Some(DenyReason::DpopToken("the token is not bound to a key")),
            (Some(jkt), Scheme::Dpop) => self.check_proof(c, jkt).err(),
        };
        match refusal {
            None => verdict,
            Some(reason) => {
                let denial = Denial { reason };
                self.log_denial(&c.token, &denial);
                Verdict::Deny(denial)
            }
        }
    }

    fn check_proof(&self, c: &Check<'_>, jkt: &str) -> Result<(), DenyReason> {
        let inputs = c.dpop.as_ref();
        let proof = inputs
            .and_then(|d| d.proof.as_deref())
            .ok_or(DenyReason::InvalidDpopProof(ProofFault::Missing))?;
        let url = inputs
            .and_then(|d| d.url.as_deref())
            .ok_or(DenyReason::InvalidDpopProof(ProofFault::Url))?;
        let ctx = ProofContext {
            proof: proof.trim(),
            method: inputs.and_then(|d| d.method.as_deref()).unwrap_or(""),
            url,
            token: &c.token,
            now: self.clock.wall(),
            leeway: self.config.policy.leeway.as_secs_f64(),
        };
        let checked = dpop::check_proof(
            &self.config.dpop,
            &self.replays,
            self.clock.monotonic(),
            &ctx,
        )
        .map_err(DenyReason::InvalidDpopProof)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            checked.jkt.as_bytes(),
            jkt.as_bytes(),
        )) {
            return Err(DenyReason::DpopToken(
                "the proof's key is not the token's cnf.jkt",
            ));
        }
        // Across hosts, through the shared tier; a tier that cannot answer leaves this
        // process's replay cache as the guard.
        let shared = self.shared.as_ref();
        match shared.and_then(|tier| tier.first_use(&checked.id, checked.window)) {
            Some(false) => Err(DenyReason::InvalidDpopProof(ProofFault::Replayed)),
            _ => Ok(()),
        }
    }

    /// Benchmarks only (the `bench` feature, which no door's build enables): caches `count`
    /// synthetic tokens `{prefix}{i}` with the verdict the given introspection answer maps
    /// to, each with its own grant (as tokens filled through requests), without asking the
    /// AS. `claims_json` is the answer's JSON text (an object); returns entries held, or
    /// the JSON parser's message when the text is not an object.
    #[cfg(feature = "bench")]
    pub fn prefill_for_bench(
        &self,
        prefix: &str,
        count: usize,
        claims_json: &str,
    ) -> Result<usize, String> {
        let claims: Map<String, Value> =
            serde_json::from_str(claims_json).map_err(|e| e.to_string())?;
        let entry = self.evaluate(&claims, Origin::Introspection, None);
        let ttl = self
            .config
            .cache
            .active_ttl
            .unwrap_or(Duration::from_secs(300));
        let now = self.clock.monotonic();
        for i in 0..count {
            let entry = match &entry {
                Entry::Allowed(grant) => Entry::Allowed(Arc::new(grant.copy(grant.stale))),
                denied => denied.clone(),
            };
            self.cache.insert(
                self.cache_keys.key(&format!("{prefix}{i}")),
                entry,
                ttl,
                now,
            );
        }
        Ok(self.cache.len())
    }

    /// Forgets a token's cached verdict.
    pub fn forget(&self, authorization: Option<&str>) {
        if let Ok(token) = bearer_token(authorization) {
            self.cache.remove(self.cache_keys.key(token));
        }
    }

    fn cached(&self, key: CacheKey, cert: Option<&CertDigest>) -> Option<Verdict> {
        let entry = self.cache.get(key, self.clock.monotonic())?;
        let counter = match entry {
            Entry::Allowed(_) => &self.counters.hits,
            Entry::Denied(_) => &self.counters.negative_hits,
        };
        counter.fetch_add(1, Relaxed);
        let verdict = self.judge(&entry, cert, self.clock.wall());
        if matches!(&verdict, Verdict::Deny(d) if d.reason == DenyReason::Expired) {
            self.cache.remove(key);
        }
        Some(verdict)
    }

    fn fetch(&self, token: &str, key: CacheKey) -> Result<Entry, AsError> {
        let local = match self.config.validation {
            Validation::Introspection | Validation::Keystone => false,
            Validation::Jwt => true,
            Validation::JwtOrIntrospection => jwt::shape(token) == Shape::Jws,
        };
        if local {
            return self.verify_locally(token, key);
        }
        let (claims, fresh) = match self.shared.as_ref().and_then(|tier| tier.get(token)) {
            Some(claims) => (claims, false),
            None => (self.ask_as(token)?, true),
        };
        let now = self.clock.wall();
        let entry = self.evaluate(&claims, Origin::Introspection, None);
        let ttl = match &entry {
            Entry::Allowed(grant) => self.config.cache.active_ttl.map(|ttl| match grant.expires {
                Some(exp) => ttl.min(clock::lifetime_until(now, exp)),
                None => ttl,
            }),
            Entry::Denied(_) => self.config.cache.inactive_ttl,
        };
        if let Some(ttl) = ttl {
            self.cache
                .insert(key, entry.clone(), ttl, self.clock.monotonic());
            if fresh && let Some(tier) = &self.shared {
                tier.put(token, &claims, ttl);
            }
        }
        Ok(entry)
    }

    /// A JWT checked offline: header, key, signature, then its claims as an introspection
    /// answer's (without `active`). Only an unavailable key set is an error (503).
    fn verify_locally(&self, token: &str, key: CacheKey) -> Result<Entry, AsError> {
        let store = self
            .keys
            .as_ref()
            .ok_or_else(|| AsError::Internal("no key store in a jwt mode".into()))?;
        let checked = match &self.config.jwt {
            Some(jwt) => jwt::parse(token, &jwt.header),
            None => Err(JwtRefusal::Algorithm),
        };
        let entry = match checked {
            Err(refusal) => Entry::Denied(DenyReason::InvalidJwt(refusal)),
            Ok(jws) => match store.lookup(jws.kid.as_deref()) {
                Lookup::Unavailable(e) => return Err(e),
                Lookup::Keys(keys) => {
                    let verified = match keys.candidates(jws.kid.as_deref(), jws.algorithm) {
                        Candidates::UnknownKid => Err(JwtRefusal::UnknownKey),
                        Candidates::WrongType => Err(JwtRefusal::Signature),
                        Candidates::Keys(list) => {
                            if list.iter().any(|k| jws.verified_by(k)) {
                                self.counters.jwt_verifications.fetch_add(1, Relaxed);
                                jws.claims()
                            } else {
                                Err(JwtRefusal::Signature)
                            }
                        }
                    };
                    match verified {
                        Ok(claims) => self.evaluate(&claims, Origin::Jwt, jws.payload_text()),
                        Err(refusal) => Entry::Denied(DenyReason::InvalidJwt(refusal)),
                    }
                }
            },
        };
        let ttl = match &entry {
            // Offline, the verdict cannot change before `exp` (which a JWT must have).
            Entry::Allowed(grant) => self.config.cache.active_ttl.and(
                grant
                    .expires
                    .map(|exp| clock::lifetime_until(self.clock.wall(), exp)),
            ),
            // An unknown `kid` may become known at the next key fetch: not remembered.
            Entry::Denied(DenyReason::InvalidJwt(JwtRefusal::UnknownKey)) => None,
            Entry::Denied(_) => self.config.cache.inactive_ttl,
        };
        let refused = match &entry {
            Entry::Denied(_) => true,
            Entry::Allowed(grant) => self.out_of_time(grant, self.clock.wall()).is_some(),
        };
        if refused {
            self.counters.jwt_refusals.fetch_add(1, Relaxed);
        }
        if let Some(ttl) = ttl {
            self.cache
                .insert(key, entry.clone(), ttl, self.clock.monotonic());
        }
        Ok(entry)
    }

    /// One introspection through the circuit breaker, counted and timed.
    fn ask_as(&self, token: &str) -> Result<Map<String, Value>, AsError> {
        let attempt = match self.breaker.admit(&*self.clock) {
            Admission::Go(attempt) => attempt,
            Admission::Refused { retry_after } => {
                self.counters.breaker_rejections.fetch_add(1, Relaxed);
                return Err(AsError::CircuitOpen {
                    retry_after,
                    failures: self.config.breaker.failure_threshold,
                });
            }
        };
        self.counters.introspections.fetch_add(1, Relaxed);
        let started = std::time::Instant::now();
        let result = introspect(
            &*self.transport,
            &self.client,
            &self.config.introspect_endpoint,
            token,
        );
        self.as_stats.observe(started.elapsed(), &result);
        let opened = attempt.finish(&result);
        if let Err(e) = &result {
            self.counters.as_errors.fetch_add(1, Relaxed);
            // Once per opening: the requests that were under way when it opened fail too.
            if opened && self.log.enabled(Level::Error) {
                self.log.log(
                    Level::Error,
                    &format!(
                        "the AS failed {} times in a row ({e}): no introspection for {} s, misses get 503",
                        self.config.breaker.failure_threshold,
                        self.config.breaker.open_time.as_secs()
                    ),
                );
            }
        }
        result
    }

    /// Whether a 4xx to our own request may be logged at ERROR now (at most once a minute).
    fn config_error_due(&self) -> bool {
        let now = self.clock.monotonic();
        let mut last = self
            .config_error_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due =
            last.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(60));
        if due {
            *last = Some(now);
        }
        due
    }

    /// An active verdict past its lifetime by less than `stale_if_error`, re-judged (`exp`,
    /// binding) and marked stale, for a request the AS cannot answer now.
    fn stale(&self, key: CacheKey, cert: Option<&CertDigest>, error: &AsError) -> Option<Verdict> {
        let can_not_answer = error.trips_breaker() || matches!(error, AsError::CircuitOpen { .. });
        if self.config.stale_if_error.is_zero() || !can_not_answer {
            return None;
        }
        let Some(Entry::Allowed(grant)) = self.cache.get_stale(key, self.clock.monotonic()) else {
            return None;
        };
        let stale = Entry::Allowed(Arc::new(grant.marked_stale()));
        match self.judge(&stale, cert, self.clock.wall()) {
            verdict @ Verdict::Allow(_) => {
                self.counters.stale_served.fetch_add(1, Relaxed);
                Some(verdict)
            }
            Verdict::Deny(_) => None,
        }
    }

    /// `claims_text`: the JSON text the claims were read from, when it is at hand.
    fn evaluate<O: JsonObject + Serialize>(
        &self,
        claims: &O,
        origin: Origin,
        claims_text: Option<&str>,
    ) -> Entry {
        match self.evaluate_inner(claims, origin, claims_text) {
            Ok(grant) => Entry::Allowed(Arc::new(grant)),
            Err(reason) => Entry::Denied(reason),
        }
    }

    fn evaluate_inner<O: JsonObject + Serialize>(
        &self,
        claims: &O,
        origin: Origin,
        claims_text: Option<&str>,
    ) -> Result<Grant, DenyReason> {
        let claim = |name: &str| claims.member(name).map(JsonTree::view);
        if origin == Origin::Introspection && !matches!(claim("active"), Some(View::Bool(true))) {
            return Err(DenyReason::Inactive);
        }
        let time = |name: &'static str| match claim(name) {
            None | Some(View::Null) => Ok(None),
            Some(View::Number(n)) => Ok(n),
            Some(_) => Err(DenyReason::MalformedClaims(name)),
        };
        let exp = time("exp")?;
        let mut nbf = time("nbf")?;
        if origin == Origin::Jwt {
            // RFC 9068 §2.2: `exp` is required; a token issued in the future is not valid yet.
            if exp.is_none() {
                return Err(DenyReason::MalformedClaims("exp"));
            }
            if let Some(iat) = time("iat")? {
                nbf = Some(nbf.map_or(iat, |n| n.max(iat)));
            }
        }
        let policy = &self.config.policy;
        if let Some(issuer) = &policy.issuer
            && claims.member("iss").and_then(JsonTree::as_text) != Some(issuer.as_str())
        {
            return Err(DenyReason::IssuerMismatch);
        }
        if !policy.audience.is_empty() {
            let matches = |a: &str| policy.audience.iter().any(|want| want == a);
            let ok = match claim("aud") {
                Some(View::Text(a)) => matches(a),
                Some(View::List(list)) => list.iter().filter_map(JsonTree::as_text).any(matches),
                _ => false,
            };
            if !ok {
                return Err(DenyReason::AudienceMismatch);
            }
        }
        if !policy.required_scope.is_empty() {
            // `scope` is a space-separated string (RFC 7662, RFC 9068); `scp` an array.
            let mut granted: Vec<&str> = claims
                .member("scope")
                .and_then(JsonTree::as_text)
                .unwrap_or("")
                .split(' ')
                .collect();
            if let Some(View::List(scp)) = claim("scp") {
                granted.extend(scp.iter().filter_map(JsonTree::as_text));
            }
            if !policy
                .required_scope
                .iter()
                .all(|s| granted.contains(&s.as_str()))
            {
                return Err(DenyReason::InsufficientScope);
            }
        }
        let bound_to = if policy.binding.reads_certificate() {
            match claim("cnf") {
                None | Some(View::Null) => None,
                Some(View::Object(cnf)) => match cnf.member("x5t#S256").map(JsonTree::view) {
                    None => None,
                    Some(View::Text(x5t)) => match thumbprint::decode_x5t(x5t) {
                        Some(digest) => Some(digest),
                        // Unreadable is not "unbound": auto would otherwise let it pass.
                        None if policy.binding == Binding::Auto => {
                            return Err(DenyReason::MalformedClaims("cnf.x5t#S256"));
                        }
                        None => None,
                    },
                    Some(_) => return Err(DenyReason::MalformedClaims("cnf.x5t#S256")),
                },
                Some(_) => return Err(DenyReason::MalformedClaims("cnf")),
            }
        } else {
            None
        };
        // Read in every mode: a key-bound token is never accepted as a bearer token.
        let jkt = match claim("cnf") {
            Some(View::Object(cnf)) => match cnf.member("jkt").map(JsonTree::view) {
                None => None,
                Some(View::Text(jkt)) if !jkt.is_empty() => Some(jkt.to_owned()),
                Some(_) => return Err(DenyReason::MalformedClaims("cnf.jkt")),
            },
            _ => None,
        };
        let identity = map_identity(&self.config.mapping, claims, claims_text)
            .map_err(DenyReason::Unmappable)?;
        let expires = match (exp, identity.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Grant {
            identity,
            expires,
            not_before: nbf,
            bound_to,
            jkt,
            stale: false,
            door: OnceBox::new(),
        })
    }

    fn judge(&self, entry: &Entry, cert: Option<&CertDigest>, now: f64) -> Verdict {
        let grant = match entry {
            Entry::Denied(reason) => return Verdict::deny(reason.clone()),
            Entry::Allowed(grant) => grant,
        };
        if let Some(reason) = self.out_of_time(grant, now) {
            return Verdict::deny(reason);
        }
        let binding = self.config.policy.binding;
        if binding.reads_certificate() {
            match (grant.bound_to.as_ref(), cert) {
                (Some(bound), Some(presented)) if thumbprint::digests_match(bound, presented) => {}
                (None, _) if binding == Binding::Auto => {}
                _ => return Verdict::deny(DenyReason::CertificateMismatch),
            }
        }
        Verdict::Allow(Arc::clone(grant))
    }

    /// Whether `now` lies outside the grant's validity (`exp`, `nbf`, with leeway).
    fn out_of_time(&self, grant: &Grant, now: f64) -> Option<DenyReason> {
        let leeway = self.config.policy.leeway.as_secs_f64();
        if grant.expires.is_some_and(|exp| now > exp + leeway) {
            return Some(DenyReason::Expired);
        }
        if grant.not_before.is_some_and(|nbf| now + leeway < nbf) {
            return Some(DenyReason::NotYetValid);
        }
        None
    }

    fn log_denial(&self, token: &str, denial: &Denial) {
        let level = match &denial.reason {
            // The breaker logged when it opened; its fast 503s would flood the log.
            DenyReason::Unavailable(AsError::CircuitOpen { .. }) => Level::Debug,
            // Our own request refused: a configuration error, logged once a minute.
            DenyReason::Unavailable(
                AsError::CredentialsRejected { .. }
                | AsError::Status {
                    status: 400..=499, ..
                },
            ) => {
                if self.config_error_due() {
                    Level::Error
                } else {
                    Level::Debug
                }
            }
            DenyReason::Unavailable(_) => Level::Error,
            DenyReason::Unmappable(_) | DenyReason::MalformedClaims(_) => Level::Warning,
            _ => Level::Info,
        };
        if self.log.enabled(level) {
            let hint = match &denial.reason {
                DenyReason::Unavailable(AsError::CredentialsRejected { .. }) => {
                    "; check client_id, client_secret, auth_method and the keys"
                }
                _ => "",
            };
            self.log.log(
                level,
                &format!(
                    "{} {}: token {} ({}){hint}",
                    denial.status(),
                    denial.status_line().split_once(' ').map_or("", |(_, t)| t),
                    self.fingerprint(token),
                    denial.reason
                ),
            );
        }
    }
}

/// How long a waiter of a coalesced miss waits for the leader: the leader's worst case (a
/// shared-tier read with the current and the fallback key, the introspection, a shared-tier
/// write; each shared operation a connect and an I/O timeout) and a second to spare.
fn flight_wait(config: &FilterConfig) -> Duration {
    let shared = config
        .shared
        .as_ref()
        .map_or(Duration::ZERO, |tier| tier.socket_timeout.saturating_mul(6));
    config
        .client
        .timeout
        .saturating_add(shared)
        .saturating_add(Duration::from_secs(1))
}

impl Authenticator {
    /// A short, non-reversible label of a token for logs (`fp:` and 12 hex digits): the
    /// first 48 bits of an HMAC-SHA256 of the token under a key derived from this
    /// deployment's configuration, so every worker of one deployment labels a token alike.
    pub fn fingerprint(&self, token: &str) -> String {
        let tag = hmac::sign(&self.fingerprints, token.as_bytes());
        let hex: String = tag.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("fp:{hex}")
    }
}

/// The fingerprint key: the policy inputs and the deployment's secret material (a digest of
/// the client credential, the shared-tier secret), same in every process of a deployment.
fn fingerprint_key(policy: &str, client: &ClientAuthenticator, config: &FilterConfig) -> hmac::Key {
    let mut material = blake3::Hasher::new_derive_key("tokenward 2026 log fingerprint key");
    material.update(&client.credential_digest());
    let shared_secret = config
        .shared
        .as_ref()
        .and_then(|t| t.secret.as_ref())
        .map_or("", Secret::expose);
    for part in [policy, shared_secret] {
        material.update(&(part.len() as u64).to_le_bytes());
        material.update(part.as_bytes());
    }
    hmac::Key::new(hmac::HMAC_SHA256, material.finalize().as_bytes())
}

/// The policy inputs that a cache key and a shared-tier key bind: each field length-prefixed
/// (lists as a count, then each item), so no two configurations give the same string.
fn policy_string(config: &FilterConfig) -> String {
    fn field(out: &mut String, value: &str) {
        out.push_str(&value.len().to_string());
        out.push(':');
        out.push_str(value);
    }
    fn list(out: &mut String, items: &[String]) {
        out.push_str(&items.len().to_string());
        out.push('#');
        for item in items {
            field(out, item);
        }
    }
    let p = &config.policy;
    let mut out = String::with_capacity(256);
    field(&mut out, &config.introspect_endpoint);
    field(&mut out, &config.client.client_id);
    field(&mut out, config.client.auth_method.as_str());
    list(&mut out, &p.audience);
    match &p.issuer {
        Some(issuer) => {
            out.push('+');
            field(&mut out, issuer);
        }
        None => out.push('-'),
    }
    list(&mut out, &p.required_scope);
    if let Some(ks) = &config.keystone {
        out.push('K');
        field(&mut out, &ks.auth_url);
        field(&mut out, &ks.auth.principal());
        field(&mut out, if ks.include_service_catalog { "c" } else { "-" });
    }
    out
}

/// The verdict of a bearer-token check on a `validation = keystone` authenticator.
fn keystone_misuse() -> Verdict {
    Verdict::deny(DenyReason::KeystoneUnavailable(AsError::Internal(
        "validation = keystone checks X-Auth-Token and X-Service-Token (check_keystone, tokenward_authenticate_request), not Authorization".into(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("BEARER  abc ")), Ok("abc"));
        assert_eq!(bearer_token(None), Err(DenyReason::MissingToken));
        assert_eq!(bearer_token(Some("Bearer")), Err(DenyReason::MissingToken));
        assert_eq!(bearer_token(Some("Bearer ")), Err(DenyReason::MissingToken));
        assert_eq!(
            bearer_token(Some("Basic abc")),
            Err(DenyReason::MissingToken)
        );
        assert_eq!(
            bearer_token(Some("Bearer a b")),
            Err(DenyReason::MalformedToken)
        );
        assert_eq!(
            bearer_token(Some("Bearer tök")),
            Err(DenyReason::MalformedToken)
        );
        assert_eq!(bearer_token(Some("abc")), Err(DenyReason::MalformedToken));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(bearer_token(Some(&long)), Err(DenyReason::MalformedToken));
    }

    /// The fewest options a filter starts with.
    fn minimal_options() -> Vec<(&'static str, &'static str)> {
        vec![
            ("introspect_endpoint", "https://as.example/introspect"),
            ("audience", "https://as.example"),
            ("client_id", "rs"),
            ("client_secret", "s"),
            ("mapping_project_id", "project.id"),
            ("mapping_project_name", "project.name"),
            ("mapping_project_domain_id", "project.domain.id"),
            ("mapping_project_domain_name", "project.domain.name"),
            ("mapping_user_domain_id", "user_domain.id"),
            ("mapping_user_domain_name", "user_domain.name"),
            ("mapping_roles", "roles"),
        ]
    }

    #[test]
    fn the_flight_wait_covers_the_shared_tier_and_the_as() {
        let config = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = minimal_options();
            pairs.push(("http_connect_timeout", "10"));
            pairs.extend_from_slice(extra);
            FilterConfig::from_raw(&RawOptions::from_pairs(pairs)).unwrap()
        };
        assert_eq!(flight_wait(&config(&[])), Duration::from_secs(11));
        let shared = config(&[
            ("memcached_servers", "127.0.0.1:1"),
            ("memcache_pool_socket_timeout", "3"),
        ]);
        // Two reads, one write, each a connect and an I/O timeout; then the AS; then 1 s.
        assert_eq!(flight_wait(&shared), Duration::from_secs(3 * 6 + 10 + 1));
        let worst = config(&[
            ("memcached_servers", "127.0.0.1:1"),
            ("memcache_pool_socket_timeout", "600"),
            ("http_connect_timeout", "3600"),
        ]);
        assert_eq!(flight_wait(&worst), Duration::from_secs(600 * 6 + 3600 + 1));
    }

    #[test]
    fn policy_strings_are_unambiguous() {
        let base = FilterConfig::from_raw(&RawOptions::from_pairs(minimal_options())).unwrap();
        let with = |f: &dyn Fn(&mut FilterConfig)| {
            let mut c = base.clone();
            f(&mut c);
            policy_string(&c)
        };
        let strings = [
            with(&|_| {}),
            with(&|c| c.policy.audience = vec!["a".into(), "b".into()]),
            with(&|c| c.policy.audience = vec!["a".into()]),
            with(&|c| {
                c.policy.audience = vec!["a".into()];
                c.policy.required_scope = vec!["b".into()];
            }),
            with(&|c| c.policy.required_scope = vec!["a".into(), "b".into()]),
            with(&|c| c.policy.audience = vec!["a\", \"b".into()]),
            with(&|c| c.policy.issuer = Some(String::new())),
            with(&|c| c.policy.issuer = Some("x".into())),
            with(&|c| c.client.client_id = "rs\nclient_secret_basic".into()),
            with(&|c| c.client.client_id = "rs1".into()),
        ];
        for (i, a) in strings.iter().enumerate() {
            for b in &strings[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(DenyReason::Inactive.status(), 401);
        assert_eq!(DenyReason::InsufficientScope.status(), 403);
        assert_eq!(
            DenyReason::Unavailable(AsError::Unreachable("x".into())).status(),
            503
        );
        let d = Denial {
            reason: DenyReason::Expired,
        };
        assert_eq!(d.body().len(), 130, "the reference's 401 body is 130 bytes");
    }
}
