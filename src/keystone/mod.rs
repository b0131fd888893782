//! Keystone tokens on the same core (`validation = keystone`): `X-Auth-Token` and
//! `X-Service-Token` validated by `GET {identity}/v3/auth/tokens`, mapped to the headers
//! keystonemiddleware.auth_token sets, through the same bounded cache, single flight, shared
//! tier, breaker and metrics as OAuth tokens.
//!
//! This service authenticates its own calls to Keystone with its client certificate and
//! scope headers (`v3tokenlessauth`), or with a token of its own (`password`,
//! `v3applicationcredential`) obtained once per process, shared by every thread, and renewed
//! before it expires. Keystone unreachable, or refusing this service's own credentials, is a
//! 503 with `Retry-After` whatever `delay_auth_decision` says; a token Keystone does not know
//! is a 401 with `WWW-Authenticate: Keystone uri="…"`.
//!
//! Better than the reference: `OpenStack-System-Scope` is stripped like every identity header
//! (so a client never sets it, in `delay_auth_decision` mode too), and a service token never
//! touches the user's system scope (the reference rewrites it from the service token).

pub(crate) mod config;
mod token;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::authenticator::{Authenticator, Denial, DenyReason, Grant, MAX_TOKEN_LEN, Verdict};
use crate::breaker::{Admission, Breaker};
use crate::cache::{CacheKey, Fetched, KeyDeriver, VerdictCache};
use crate::clock;
use crate::config::FilterConfig;
use crate::error::{AsError, sanitize};
use crate::headers::{self as h, IdentityHeader};
use crate::http::{HttpReply, HttpRequest, Method};
use crate::log::Level;
use crate::options::{OPTIONS, Origin, RawOptions};
use crate::secret::Secret;
use crate::strict_json;

use config::{AppCredentialRef, BindMode, DomainRef, ProjectRef, TokenScope, UserRef};
pub(crate) use config::{KeystoneConfig, ServiceAuth};
use token::{Bind, KsToken};

/// Why a Keystone token is refused (401, or `X-Identity-Status: Invalid` with
/// `delay_auth_decision`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeystoneRefusal {
    /// No `X-Auth-Token` (nor `X-Storage-Token`).
    Missing,
    /// Too long, or not visible ASCII.
    Malformed,
    /// Keystone does not know the token (404): invalid, expired or revoked.
    NotFound,
    /// `expires_at` has passed.
    Expired,
    /// Keystone's answer cannot be used (logged).
    Contents(&'static str),
    /// The token is bound (`bind`) to what cannot be verified here.
    Bind,
    /// An application credential's access rules do not allow this request.
    AccessRules,
    /// The `X-Service-Token` is invalid, or lacks a role of `service_token_roles`.
    ServiceToken(Box<KeystoneRefusal>),
    /// The service token holds none of `service_token_roles`.
    ServiceRoles,
}

impl KeystoneRefusal {
    /// A short stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Malformed => "malformed_token",
            Self::NotFound => "keystone_token_not_found",
            Self::Expired => "expired",
            Self::Contents(_) => "keystone_token_malformed",
            Self::Bind => "keystone_token_bind",
            Self::AccessRules => "keystone_access_rules",
            Self::ServiceToken(_) | Self::ServiceRoles => "keystone_service_token",
        }
    }
}

impl fmt::Display for KeystoneRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no X-Auth-Token"),
            Self::Malformed => f.write_str("malformed token"),
            Self::NotFound => {
                f.write_str("Keystone does not know the token (invalid, expired or revoked)")
            }
            Self::Expired => f.write_str("the token has expired"),
            Self::Contents(why) => write!(f, "Keystone's answer is unusable: {why}"),
            Self::Bind => {
                f.write_str("the token is bound to an authentication that cannot be verified here")
            }
            Self::AccessRules => {
                f.write_str("the application credential's access rules do not allow this request")
            }
            Self::ServiceToken(why) => write!(f, "invalid service token: {why}"),
            Self::ServiceRoles => f.write_str("the token holds none of service_token_roles"),
        }
    }
}

/// What a door knows of a request for a Keystone check.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeystoneRequest<'a> {
    /// `X-Auth-Token` (or `X-Storage-Token` when it is absent).
    pub auth_token: Option<&'a str>,
    /// `X-Service-Token`.
    pub service_token: Option<&'a str>,
    /// The HTTP method, for application-credential access rules.
    pub method: Option<&'a str>,
    /// The request path (`SCRIPT_NAME` + `PATH_INFO`), for access rules.
    pub path: Option<&'a str>,
}

#[derive(Clone)]
enum Entry {
    Valid(Arc<KsToken>),
    Invalid(KeystoneRefusal),
}

/// This service's own token and where it validates tokens.
struct OwnToken {
    value: Secret,
    validate_url: String,
}

#[derive(Clone)]
enum Own {
    Token(Arc<OwnToken>),
    /// A failure, kept for a second so a refusing Keystone is not asked by every request.
    Failed(AsError),
}

/// The member a shared-tier entry carries beside Keystone's answer: the wall-clock second
/// after which it no longer serves (Keystone's answers have no member of that name).
const STORED_UNTIL: &str = "tokenward:stored_until";

/// How long a failure to obtain this service's token is remembered.
const OWN_FAILURE_HOLD: Duration = Duration::from_secs(1);
/// keystoneauth renews a token that expires within two minutes.
const OWN_RENEWAL_MARGIN: Duration = Duration::from_secs(120);

/// The Keystone state of an authenticator.
pub(crate) struct Backend {
    config: KeystoneConfig,
    cache: VerdictCache<Entry, AsError>,
    own: VerdictCache<Own, AsError>,
    keys: KeyDeriver,
    /// Cache keys of validations with `allow_expired` (answered differently).
    expired_keys: KeyDeriver,
    invalid: Arc<Grant>,
    flight_wait: Duration,
    inactive_ttl: Option<Duration>,
    active_ttl: Option<Duration>,
    endpoint_warned: AtomicBool,
    /// The v3 endpoint found in Keystone's version document at an unversioned `auth_url`.
    discovered: OnceLock<String>,
    roles_warned: AtomicBool,
    /// The last cause of a 503 logged at ERROR, and when.
    unavailable_logged: Mutex<Option<(String, Instant)>>,
    /// The circuit breaker toward Keystone (apart from the AS's).
    breaker: Arc<Breaker>,
    /// `WWW-Authenticate: Keystone uri="…"`.
    challenge: String,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneBackend")
            .field("auth_url", &self.config.auth_url)
            .field("auth_type", &self.config.auth.name())
            .finish_non_exhaustive()
    }
}

impl Backend {
    pub(crate) fn new(
        config: &KeystoneConfig,
        filter: &FilterConfig,
        seed: &[u8],
        policy: &str,
        warnings: &mut Vec<String>,
        breaker: Arc<Breaker>,
    ) -> Self {
        if !config.service_token_roles_required {
            warnings.push(
                "service_token_roles_required = false: any valid token is accepted as a service token, which bypasses access rules; set it to true"
                    .into(),
            );
        }
        let timeout = filter.client.timeout;
        let shared = filter
            .shared
            .as_ref()
            .map_or(Duration::ZERO, |tier| tier.socket_timeout.saturating_mul(6));
        // Own token, a validation with its retries, and the same again after a 401.
        let tries = 2 * (config.max_retries + 1) + 1;
        let flight_wait = timeout
            .saturating_mul(tries)
            .saturating_add(shared)
            .saturating_add(Duration::from_secs(1));
        Self {
            cache: VerdictCache::new(filter.cache.capacity),
            own: VerdictCache::new(1),
            keys: KeyDeriver::new(seed, policy),
            expired_keys: KeyDeriver::new(seed, &format!("{policy}\0allow_expired")),
            invalid: Arc::new(Grant::keystone(
                vec![(h::IDENTITY_STATUS, "Invalid".to_owned())],
                String::new(),
                None,
            )),
            flight_wait,
            inactive_ttl: filter.cache.inactive_ttl,
            active_ttl: filter.cache.active_ttl,
            endpoint_warned: AtomicBool::new(false),
            discovered: OnceLock::new(),
            roles_warned: AtomicBool::new(false),
            unavailable_logged: Mutex::new(None),
            breaker,
            challenge: format!(
                "Keystone uri=\"{}\"",
                config.www_authenticate_uri.replace('"', "%22")
            ),
            config: config.clone(),
        }
    }

    /// The `WWW-Authenticate` value of a 401 for a Keystone token.
    pub(crate) fn challenge(&self) -> &str {
        &self.challenge
    }

    pub(crate) fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    pub(crate) fn cache_len(&self) -> usize {
        self.cache.len()
    }
}

/// The options of the keystoneauth plugins (`auth_type`'s), which keystonemiddleware reads
/// from the `auth_section` group when one is named.
pub const PLUGIN_OPTIONS: &[&str] = &[
    "auth_url",
    "username",
    "user_id",
    "password",
    "user_domain_id",
    "user_domain_name",
    "project_id",
    "project_name",
    "project_domain_id",
    "project_domain_name",
    "domain_id",
    "domain_name",
    "default_domain_id",
    "default_domain_name",
    "system_scope",
    "trust_id",
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
];

/// Whether `validation = keystone` reads the option `name`.
pub fn uses_option(name: &str) -> bool {
    SHARED.contains(&name)
        || OPTIONS
            .iter()
            .any(|o| o.name == name && o.origin == Origin::KeystoneAuthToken)
}

/// Options of the OAuth table that `validation = keystone` reads too.
const SHARED: &[&str] = &[
    "certfile",
    "keyfile",
    "cafile",
    "insecure",
    "http_connect_timeout",
    "token_cache_time",
    "memcached_servers",
    "memcache_servers",
    "memcache_security_strategy",
    "memcache_secret_key",
    "memcache_secret_key_fallback",
    "memcache_pool_dead_retry",
    "memcache_pool_maxsize",
    "memcache_pool_socket_timeout",
    "memcache_pool_unused_timeout",
    "memcache_pool_conn_get_timeout",
    "memcache_use_advanced_pool",
    "redis_url",
    "redis_cluster_nodes",
    "redis_cafile",
    "redis_certfile",
    "redis_keyfile",
    "auth_type",
    "auth_section",
    "token_cache_size",
    "token_cache_inactive_time",
    "retry_after",
    "validation",
    "as_failure_threshold",
    "as_open_time",
    "metrics_name",
    "bearer_validation",
];

/// Start-up warnings for options that the filter's mode does not use.
pub(crate) fn unused_option_warnings(
    raw: &RawOptions,
    keystone: bool,
    bearer: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for spec in OPTIONS {
        if !raw.is_set(spec.name) {
            continue;
        }
        let keystone_only = spec.origin == Origin::KeystoneAuthToken;
        if keystone && !bearer && !keystone_only && !SHARED.contains(&spec.name) {
            out.push(format!(
                "The option \"{}\" is not used with validation = keystone",
                spec.name
            ));
        } else if !keystone && keystone_only {
            out.push(format!(
                "The option \"{}\" is used only with validation = keystone",
                spec.name
            ));
        }
    }
    if keystone {
        if raw.is_set("cache") {
            out.push(
                "cache (Swift's environ cache) is not supported: tokens are cached in-process and in the shared tier"
                    .into(),
            );
        }
        if let Some(version) = raw.string("auth_version")
            && !version.trim_start_matches('v').starts_with('3')
        {
            out.push(format!(
                "auth_version = {version}: only the v3 identity API is used"
            ));
        }
    }
    out
}

/// The state of the `X-Service-Token` of a request.
enum ServiceState {
    Absent,
    Invalid(KeystoneRefusal),
    /// Valid; `true` when it holds a role of `service_token_roles` (it may then let the
    /// user's token be expired).
    Valid(Arc<KsToken>, bool),
}

/// A token as sent, checked before Keystone is asked.
fn well_formed(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

fn header_token(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|t| !t.is_empty())
}

impl Authenticator {
    /// The whole Keystone check (`validation = keystone`): cache, then Keystone (blocking,
    /// bounded by `http_connect_timeout`), with concurrent misses on one token coalesced.
    pub fn check_keystone(&self, request: &KeystoneRequest<'_>) -> Verdict {
        match self.keystone_verdict(request, true) {
            Some(verdict) => verdict,
            None => Verdict::Deny(Denial {
                reason: DenyReason::KeystoneUnavailable(AsError::Internal(
                    "a check without a verdict".into(),
                )),
            }),
        }
    }

    /// [`Authenticator::check_keystone`] without network I/O: a verdict when the headers and
    /// the cache decide, `None` when Keystone must be asked (call `check_keystone` then, off
    /// the event loop).
    pub fn lookup_keystone(&self, request: &KeystoneRequest<'_>) -> Option<Verdict> {
        self.keystone_verdict(request, false)
    }

    /// Whether a request without `X-Auth-Token` may carry an OAuth bearer token instead
    /// (`validation = keystone` with `bearer_validation`): the door then checks its
    /// `Authorization` with [`Authenticator::prepare`] and [`Authenticator::authenticate`].
    pub fn accepts_bearer(&self) -> bool {
        self.keystone.is_some() && self.config.validation != crate::config::Validation::Keystone
    }

    /// `WWW-Authenticate: Keystone uri="…"` (the value for an application's own 401), when
    /// Keystone tokens are validated.
    pub fn keystone_challenge(&self) -> Option<&str> {
        self.keystone.as_ref().map(Backend::challenge)
    }

    /// This service's own token (`password`, `v3applicationcredential`), for a door to send
    /// as `X-Service-Token` when it calls another service on a user's behalf (what
    /// keystonemiddleware's `keystone.token_auth` does); `None` with `v3tokenlessauth` or
    /// another validation. Cached, shared with the validations; obtained (blocking) if needed.
    pub fn keystone_service_token(&self) -> Result<Option<Secret>, AsError> {
        match &self.keystone {
            Some(ks) if !matches!(ks.config.auth, ServiceAuth::Tokenless { .. }) => {
                self.own_token(ks).map(|t| Some(t.value.clone()))
            }
            _ => Ok(None),
        }
    }

    fn keystone_verdict(&self, request: &KeystoneRequest<'_>, io: bool) -> Option<Verdict> {
        let Some(ks) = &self.keystone else {
            return Some(Verdict::Deny(Denial {
                reason: DenyReason::KeystoneUnavailable(AsError::Internal(
                    "validation is not keystone: use the bearer-token check".into(),
                )),
            }));
        };
        let service_header = header_token(request.service_token);
        let service = match service_header {
            None => ServiceState::Absent,
            Some(token) => match self.keystone_entry(ks, token, false, io)? {
                Err(e) => return Some(self.keystone_unavailable(ks, e)),
                Ok(Entry::Invalid(why)) => ServiceState::Invalid(why),
                Ok(Entry::Valid(t)) => self.service_state(ks, t),
            },
        };
        if let ServiceState::Invalid(why) = &service {
            self.log_refusal(service_header.unwrap_or(""), "service token", why);
        }
        let allow_expired = matches!(service, ServiceState::Valid(_, true));
        let user_header = header_token(request.auth_token);
        let user = match user_header {
            None => Err(KeystoneRefusal::Missing),
            Some(token) => match self.keystone_entry(ks, token, allow_expired, io)? {
                Err(e) => return Some(self.keystone_unavailable(ks, e)),
                Ok(Entry::Invalid(why)) => Err(why),
                Ok(Entry::Valid(t)) => self
                    .user_checks(ks, &t, request, &service, allow_expired)
                    .map(|()| t),
            },
        };
        if let Err(why) = &user
            && !matches!(why, KeystoneRefusal::Missing)
        {
            self.log_refusal(user_header.unwrap_or(""), "token", why);
        }
        let verdict = match (user, service) {
            // The common case: a valid user token alone, the cached grant itself.
            (Ok(t), ServiceState::Absent) => Verdict::Allow(Arc::clone(&t.user)),
            (Ok(t), ServiceState::Valid(s, _)) => Verdict::Allow(combined(&t, &s)),
            (user, service) if ks.config.delay_auth_decision => {
                let base = match &user {
                    Ok(t) => &t.user,
                    Err(_) => &ks.invalid,
                };
                match service {
                    ServiceState::Absent => Verdict::Allow(Arc::clone(base)),
                    ServiceState::Valid(s, _) => {
                        Verdict::Allow(Arc::new(with_service(base, Some(&s))))
                    }
                    ServiceState::Invalid(_) => Verdict::Allow(Arc::new(with_service(base, None))),
                }
            }
            (Err(why), _) => Verdict::Deny(Denial {
                reason: DenyReason::Keystone(why),
            }),
            (Ok(_), ServiceState::Invalid(why)) => Verdict::Deny(Denial {
                reason: DenyReason::Keystone(KeystoneRefusal::ServiceToken(Box::new(why))),
            }),
        };
        Some(verdict)
    }

    fn service_state(&self, ks: &Backend, token: Arc<KsToken>) -> ServiceState {
        if self.clock.wall() >= token.expires {
            return ServiceState::Invalid(KeystoneRefusal::Expired);
        }
        if !bind_ok(ks.config.bind, token.bind) {
            return ServiceState::Invalid(KeystoneRefusal::Bind);
        }
        let roles_ok = token
            .roles
            .iter()
            .any(|r| ks.config.service_token_roles.iter().any(|want| want == r));
        if ks.config.service_token_roles_required && !roles_ok {
            return ServiceState::Invalid(KeystoneRefusal::ServiceRoles);
        }
        if !roles_ok && !ks.roles_warned.swap(true, Relaxed) && self.log.enabled(Level::Warning) {
            self.log.log(
                Level::Warning,
                "A valid token was sent as a service token but holds none of service_token_roles; accepted because service_token_roles_required = false",
            );
        }
        ServiceState::Valid(token, roles_ok)
    }

    fn user_checks(
        &self,
        ks: &Backend,
        token: &KsToken,
        request: &KeystoneRequest<'_>,
        service: &ServiceState,
        allow_expired: bool,
    ) -> Result<(), KeystoneRefusal> {
        if !allow_expired && self.clock.wall() >= token.expires {
            return Err(KeystoneRefusal::Expired);
        }
        if let Some(rules) = &token.access_rules {
            self.access_rules(ks, token, rules, request, service)?;
        }
        // The user's bind is not checked when a valid service token vouches for the request
        // (the reference skips it when the header is merely present: with
        // delay_auth_decision, any X-Service-Token let a bound token through).
        if !matches!(service, ServiceState::Valid(..)) && !bind_ok(ks.config.bind, token.bind) {
            return Err(KeystoneRefusal::Bind);
        }
        Ok(())
    }

    fn access_rules(
        &self,
        ks: &Backend,
        token: &KsToken,
        rules: &[token::AccessRule],
        request: &KeystoneRequest<'_>,
        service: &ServiceState,
    ) -> Result<(), KeystoneRefusal> {
        let warn = |message: &str| {
            if self.log.enabled(Level::Warning) {
                self.log.log(Level::Warning, message);
            }
        };
        let Some(my_type) = ks.config.service_type.as_deref() else {
            warn(
                "A token with application-credential access rules is refused: set service_type to this service's catalog type to enforce them",
            );
            return Err(KeystoneRefusal::AccessRules);
        };
        let method = request.method.unwrap_or("");
        let path = request.path.unwrap_or("");
        if my_type == "identity" && method == "GET" && path.ends_with("/v3/auth/tokens") {
            return Ok(());
        }
        if let Some(types) = &token.catalog_types
            && !types.iter().any(|t| t == my_type)
        {
            warn(
                "A token with application-credential access rules is refused: service_type is not a service type of the catalog",
            );
            return Err(KeystoneRefusal::AccessRules);
        }
        // A valid service token means a chain of service calls (the reference skips the rules
        // when the header is merely present, even with an invalid token).
        if matches!(service, ServiceState::Valid(..)) {
            return Ok(());
        }
        let allowed = rules.iter().any(|rule| {
            rule.method == method
                && rule.service == my_type
                && token::path_matches(path, &rule.path)
        });
        if allowed {
            Ok(())
        } else {
            Err(KeystoneRefusal::AccessRules)
        }
    }

    /// The cached entry of `token`, or Keystone's answer (`io`); `None` when only Keystone
    /// can say and `io` is false.
    fn keystone_entry(
        &self,
        ks: &Backend,
        token: &str,
        allow_expired: bool,
        io: bool,
    ) -> Option<Result<Entry, AsError>> {
        if !well_formed(token) {
            return Some(Ok(Entry::Invalid(KeystoneRefusal::Malformed)));
        }
        let now = self.clock.monotonic();
        if allow_expired
            && let Some(entry @ Entry::Valid(_)) = ks.cache.get(ks.keys.key(token), now)
        {
            // Validated without allow_expired and still cached: the same answer.
            self.counters.hits.fetch_add(1, Relaxed);
            return Some(Ok(entry));
        }
        let key = if allow_expired {
            ks.expired_keys.key(token)
        } else {
            ks.keys.key(token)
        };
        if let Some(entry) = ks.cache.get(key, now) {
            let counter = match &entry {
                Entry::Valid(t) => {
                    if !allow_expired && self.clock.wall() >= t.expires {
                        // It will not become valid again.
                        ks.cache.remove(key);
                    }
                    &self.counters.hits
                }
                Entry::Invalid(_) => &self.counters.negative_hits,
            };
            counter.fetch_add(1, Relaxed);
            return Some(Ok(entry));
        }
        if !io {
            return None;
        }
        self.counters.misses.fetch_add(1, Relaxed);
        let fetched = ks.cache.get_or_compute(key, ks.flight_wait, || {
            self.keystone_fetch(ks, token, allow_expired, key)
        });
        Some(match fetched {
            Fetched::Computed(r) => r,
            Fetched::Shared(r) => {
                self.counters.coalesced.fetch_add(1, Relaxed);
                r
            }
        })
    }

    fn keystone_fetch(
        &self,
        ks: &Backend,
        token: &str,
        allow_expired: bool,
        key: CacheKey,
    ) -> Result<Entry, AsError> {
        let shared_name = if allow_expired {
            format!("keystone-allow-expired:{token}")
        } else {
            format!("keystone:{token}")
        };
        let stored = self
            .shared
            .as_ref()
            .and_then(|tier| tier.get(&shared_name))
            .and_then(|map| self.shared_answer(map));
        let (answer, fresh) = match stored {
            Some(map) => (Some(map), false),
            None => (self.keystone_validate(ks, token, allow_expired)?, true),
        };
        let entry = match &answer {
            None => Entry::Invalid(KeystoneRefusal::NotFound),
            Some(map) => {
                let text = serde_json::to_string(map).unwrap_or_default();
                match token::read(map, text, ks.config.include_service_catalog) {
                    Ok(t) => Entry::Valid(Arc::new(t)),
                    Err(why) => {
                        if self.log.enabled(Level::Warning) {
                            self.log.log(
                                Level::Warning,
                                &format!(
                                    "Keystone's answer for token {} is unusable: {why}",
                                    self.fingerprint(token)
                                ),
                            );
                        }
                        Entry::Invalid(KeystoneRefusal::Contents(why))
                    }
                }
            }
        };
        let ttl = match &entry {
            Entry::Valid(t) => ks
                .active_ttl
                .map(|ttl| ttl.min(clock::lifetime_until(self.clock.wall(), t.expires))),
            Entry::Invalid(_) => ks.inactive_ttl,
        };
        if let Some(ttl) = ttl {
            ks.cache
                .insert(key, entry.clone(), ttl, self.clock.monotonic());
            if fresh
                && matches!(entry, Entry::Valid(_))
                && let (Some(tier), Some(map)) = (&self.shared, &answer)
            {
                // Sealed with the answer: until when it may serve (the store's own expiry is
                // no defence against an entry captured and written back later).
                let mut entry = map.clone();
                entry.insert(
                    STORED_UNTIL.into(),
                    json!(self.clock.wall() + ttl.as_secs_f64()),
                );
                tier.put(&shared_name, &entry, ttl);
            }
        }
        Ok(entry)
    }

    /// A shared-tier entry's answer while its sealed deadline has not passed; `None` (ask
    /// Keystone) for an entry past it or without one (a replayed or foreign entry).
    fn shared_answer(&self, mut map: Map<String, Value>) -> Option<Map<String, Value>> {
        let until = map.remove(STORED_UNTIL)?.as_f64()?;
        (self.clock.wall() < until).then_some(map)
    }

    /// One validation: `Some(answer)`, `None` for a token Keystone does not know (404), or
    /// the error that makes the request a 503.
    fn keystone_validate(
        &self,
        ks: &Backend,
        token: &str,
        allow_expired: bool,
    ) -> Result<Option<Map<String, Value>>, AsError> {
        let mut query = Vec::new();
        if !ks.config.include_service_catalog {
            query.push("nocatalog");
        }
        if allow_expired {
            query.push("allow_expired=1");
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        for attempt in 0..2 {
            let (url, auth, own) = match &ks.config.auth {
                ServiceAuth::Tokenless { scope } => (
                    format!("{}{query}", ks.config.tokenless_validate_url()),
                    scope
                        .headers()
                        .into_iter()
                        .map(|(name, value)| (name, Secret::new(value)))
                        .collect::<Vec<_>>(),
                    None,
                ),
                _ => {
                    let own = self.own_token(ks)?;
                    (
                        format!("{}{query}", own.validate_url),
                        vec![("X-Auth-Token", own.value.clone())],
                        Some(own),
                    )
                }
            };
            // Everything secret this service knows, not only what the request carried.
            let mut secrets = auth_secrets(&ks.config.auth);
            secrets.push(token);
            if let Some(o) = &own {
                secrets.push(o.value.expose());
            }
            let reply = self.keystone_send(ks, &secrets, || HttpRequest {
                method: Method::Get,
                url: &url,
                headers: auth
                    .iter()
                    .map(|(n, v)| (*n, v.clone()))
                    .chain([
                        ("X-Subject-Token", Secret::new(token)),
                        ("OpenStack-Identity-Access-Rules", Secret::new("1")),
                    ])
                    .collect(),
                json: None,
                capture: None,
            })?;
            match reply.status {
                200 => return answer_object(&reply, &secrets).map(Some),
                404 => return Ok(None),
                // Our own token may have been revoked: a fresh one, once.
                401 if own.is_some() && attempt == 0 => {
                    ks.own.remove(0);
                }
                401 => return Err(rejected(&reply, &secrets)),
                status => return Err(status_error(status, &reply, &secrets)),
            }
        }
        Err(AsError::Internal("unreachable validation loop end".into()))
    }

    /// This service's token: cached, or obtained now, one request per process.
    fn own_token(&self, ks: &Backend) -> Result<Arc<OwnToken>, AsError> {
        let unpack = |own: Own| match own {
            Own::Token(t) => Ok(t),
            Own::Failed(e) => Err(e),
        };
        if let Some(own) = ks.own.get(0, self.clock.monotonic()) {
            return unpack(own);
        }
        match ks
            .own
            .get_or_compute(0, ks.flight_wait, || Ok(self.fetch_own_token(ks)))
        {
            Fetched::Computed(r) | Fetched::Shared(r) => r.and_then(unpack),
        }
    }

    fn fetch_own_token(&self, ks: &Backend) -> Own {
        let result = self.request_own_token(ks);
        let now = self.clock.monotonic();
        match result {
            Ok((token, lifetime)) => {
                let margin = OWN_RENEWAL_MARGIN.min(lifetime / 2);
                let own = Own::Token(Arc::new(token));
                ks.own
                    .insert(0, own.clone(), lifetime.saturating_sub(margin), now);
                own
            }
            Err(e) => {
                let own = Own::Failed(e);
                ks.own.insert(0, own.clone(), OWN_FAILURE_HOLD, now);
                own
            }
        }
    }

    fn request_own_token(&self, ks: &Backend) -> Result<(OwnToken, Duration), AsError> {
        let identity = self.identity_base(ks)?;
        let token_url = format!("{identity}/auth/tokens");
        let body = Secret::new(auth_body(&ks.config.auth).to_string());
        let secrets = auth_secrets(&ks.config.auth);
        let reply = self.keystone_send(ks, &secrets, || HttpRequest {
            method: Method::Post,
            url: &token_url,
            headers: Vec::new(),
            json: Some(body.clone()),
            capture: Some("X-Subject-Token"),
        })?;
        match reply.status {
            200 | 201 => {}
            401 => return Err(rejected(&reply, &secrets)),
            status => return Err(status_error(status, &reply, &secrets)),
        }
        let value = reply.captured.clone().ok_or_else(|| {
            AsError::Malformed("Keystone's token answer has no X-Subject-Token".into())
        })?;
        if !well_formed(value.expose()) {
            return Err(AsError::Malformed(
                "Keystone's X-Subject-Token is not a token".into(),
            ));
        }
        let answer = answer_object(&reply, &secrets)?;
        let token = answer.get("token").and_then(Value::as_object);
        let expires = token
            .and_then(|t| t.get("expires_at"))
            .and_then(Value::as_str)
            .and_then(token::parse_time)
            .ok_or_else(|| {
                AsError::Malformed("Keystone's token answer has no usable expires_at".into())
            })?;
        let lifetime = clock::lifetime_until(self.clock.wall(), expires);
        let validate_url =
            self.identity_endpoint(ks, token.and_then(|t| t.get("catalog")), &identity);
        Ok((
            OwnToken {
                value,
                validate_url,
            },
            lifetime,
        ))
    }

    /// The v3 identity endpoint at `auth_url`: `auth_url` itself when it names v3, else the
    /// one Keystone's version document there lists, asked for once per process when the
    /// service first needs its token (never at start-up), as keystoneauth's generic plugins
    /// discover it. A failure is not remembered here: the next token request asks again.
    fn identity_base(&self, ks: &Backend) -> Result<String, AsError> {
        if let Some(url) = config::versioned(&ks.config.auth_url) {
            return Ok(url.to_owned());
        }
        if let Some(url) = ks.discovered.get() {
            return Ok(url.clone());
        }
        let secrets = auth_secrets(&ks.config.auth);
        let reply = self.keystone_send(ks, &secrets, || HttpRequest {
            method: Method::Get,
            url: &ks.config.auth_url,
            headers: vec![("Accept", Secret::new("application/json"))],
            json: None,
            capture: None,
        })?;
        let unusable = |why: &dyn fmt::Display| {
            AsError::Malformed(format!(
                "Keystone's version document at auth_url {}: {why}",
                ks.config.auth_url
            ))
        };
        // Keystone answers its root with 300 Multiple Choices, a versioned URL with 200; a
        // 5xx is an outage, any other status a wrong auth_url.
        match reply.status {
            200 | 300 => {}
            500.. => return Err(status_error(reply.status, &reply, &secrets)),
            status => return Err(unusable(&format_args!("answered HTTP {status}"))),
        }
        let document = answer_object(&reply, &secrets).map_err(|e| unusable(&e))?;
        let found = discovered_v3(&document, &ks.config.auth_url).map_err(|why| unusable(&why))?;
        if self.log.enabled(Level::Info) {
            self.log.log(
                Level::Info,
                &format!(
                    "Keystone identity v3 endpoint discovered at auth_url {}: {found}",
                    ks.config.auth_url
                ),
            );
        }
        Ok(ks.discovered.get_or_init(|| found).clone())
    }

    /// Where tokens are validated: the identity endpoint of `interface` (and `region_name`)
    /// in this service's catalog, as keystonemiddleware's adapter finds it; `fallback` (the
    /// v3 endpoint at `auth_url`) when the catalog has none (warned once).
    fn identity_endpoint(&self, ks: &Backend, catalog: Option<&Value>, fallback: &str) -> String {
        let wanted = |endpoint: &Value| {
            endpoint.get("interface").and_then(Value::as_str) == Some(ks.config.interface.as_str())
                && ks.config.region_name.as_deref().is_none_or(|region| {
                    endpoint.get("region_id").and_then(Value::as_str) == Some(region)
                        || endpoint.get("region").and_then(Value::as_str) == Some(region)
                })
        };
        let found = catalog
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|s| s.get("type").and_then(Value::as_str) == Some("identity"))
            .flat_map(|s| {
                s.get("endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .find(|e| wanted(e))
            .and_then(|e| e.get("url").and_then(Value::as_str))
            .filter(|url| crate::options::check_url("auth_url", url).is_ok());
        let base = match found {
            Some(url) => url.to_owned(),
            None => {
                if !ks.endpoint_warned.swap(true, Relaxed) && self.log.enabled(Level::Warning) {
                    self.log.log(
                        Level::Warning,
                        &format!(
                            "The service's catalog has no {} identity endpoint{}: tokens are validated at auth_url {}",
                            ks.config.interface,
                            ks.config
                                .region_name
                                .as_deref()
                                .map(|r| format!(" in region {r}"))
                                .unwrap_or_default(),
                            ks.config.auth_url
                        ),
                    );
                }
                return format!("{fallback}/auth/tokens");
            }
        };
        format!("{}/auth/tokens", config::v3_endpoint(&base))
    }

    /// One request to Keystone through the breaker, sent again at once (up to
    /// `http_request_max_retries` times) when Keystone cannot be connected to; counted, timed,
    /// and a 5xx is an error (its text scrubbed of `secrets`, what the request carried).
    fn keystone_send<'u>(
        &self,
        ks: &Backend,
        secrets: &[&str],
        make: impl Fn() -> HttpRequest<'u>,
    ) -> Result<HttpReply, AsError> {
        let attempt = match ks.breaker.admit(&*self.clock) {
            Admission::Go(attempt) => attempt,
            Admission::Refused { retry_after } => {
                self.counters.breaker_rejections.fetch_add(1, Relaxed);
                return Err(AsError::CircuitOpen {
                    retry_after,
                    failures: self.config.breaker.failure_threshold,
                });
            }
        };
        let was_open = ks.breaker.is_open();
        self.counters.introspections.fetch_add(1, Relaxed);
        let started = Instant::now();
        let mut result = self.transport.send_request(make());
        for _ in 0..ks.config.max_retries {
            if !matches!(result, Err(AsError::Unreachable(_))) {
                break;
            }
            result = self.transport.send_request(make());
        }
        let result = result.and_then(|reply| {
            if reply.status >= 500 {
                Err(status_error(reply.status, &reply, secrets))
            } else {
                Ok(reply)
            }
        });
        self.as_stats.observe(started.elapsed(), &result);
        attempt.finish(&result);
        if let Err(e) = &result {
            self.counters.as_errors.fetch_add(1, Relaxed);
            if !was_open && ks.breaker.is_open() && self.log.enabled(Level::Error) {
                self.log.log(
                    Level::Error,
                    &format!(
                        "Keystone failed {} times in a row ({e}): not asked for {} s, token checks get 503",
                        self.config.breaker.failure_threshold,
                        self.config.breaker.open_time.as_secs()
                    ),
                );
            }
        }
        result
    }

    /// The 503 for `e`, logged at ERROR when its cause differs from the last one logged or a
    /// minute has passed (else DEBUG), with what to check.
    fn keystone_unavailable(&self, ks: &Backend, e: AsError) -> Verdict {
        let cause = e.to_string().replace("authorization server", "Keystone");
        let now = self.clock.monotonic();
        let level = if matches!(e, AsError::CircuitOpen { .. }) {
            Level::Debug
        } else {
            let mut last = ks
                .unavailable_logged
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = match &*last {
                Some((previous, at)) => {
                    *previous != cause
                        || now.saturating_duration_since(*at) >= Duration::from_secs(60)
                }
                None => true,
            };
            if due {
                *last = Some((cause.clone(), now));
                Level::Error
            } else {
                Level::Debug
            }
        };
        if self.log.enabled(level) {
            let hint = match (&e, &ks.config.auth) {
                (AsError::CredentialsRejected { .. }, ServiceAuth::Tokenless { .. }) => {
                    "; Keystone refused this service's certificate: check that certfile is issued by a CA named in Keystone's [tokenless_auth] trusted_issuer, that an identity provider and x509 mapping exist for it, and that the mapped user has a role on the scope (project_id, project_name, domain_id, domain_name)"
                }
                (AsError::CredentialsRejected { .. }, _) => {
                    "; Keystone refused this service's credentials: check auth_type, username/user_id, password or application_credential_*, their domains and the scope"
                }
                (AsError::Status { status: 403, .. }, _) => {
                    "; Keystone's policy does not let this service validate tokens: give its user the service (or admin) role on the scope"
                }
                (AsError::Status { status: 400, .. }, _) => {
                    "; Keystone refused the request: check the scope options (project_id, project_name with project_domain_*, domain_id, domain_name)"
                }
                (AsError::Unreachable(_) | AsError::Timeout(_), _) => {
                    "; check auth_url, the network and the TLS settings (cafile, certfile, keyfile)"
                }
                _ => "",
            };
            self.log.log(
                level,
                &format!(
                    "503 Service Unavailable: Keystone cannot validate tokens ({cause}){hint}; auth_url {}, auth_type {}",
                    ks.config.auth_url,
                    ks.config.auth.name()
                ),
            );
        }
        Verdict::Deny(Denial {
            reason: DenyReason::KeystoneUnavailable(e),
        })
    }

    fn log_refusal(&self, token: &str, what: &str, why: &KeystoneRefusal) {
        if self.log.enabled(Level::Info) {
            self.log.log(
                Level::Info,
                &format!("Keystone {what} {} refused: {why}", self.fingerprint(token)),
            );
        }
    }
}

/// The grant of a valid user token with a valid service token, remembered on the user's
/// entry for the next request with the same service token.
fn combined(user: &KsToken, service: &Arc<KsToken>) -> Arc<Grant> {
    let mut memo = user
        .with_service
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // The weak reference keeps the allocation, so no other token can take its address.
    if let Some((s, grant)) = &*memo
        && std::ptr::eq(s.as_ptr(), Arc::as_ptr(service))
    {
        return Arc::clone(grant);
    }
    let grant = Arc::new(with_service(&user.user, Some(service)));
    *memo = Some((Arc::downgrade(service), Arc::clone(&grant)));
    grant
}

/// The headers of `base` with the service token's: `X-Service-Identity-Status` and, for a
/// valid one, its `X-Service-*` headers (never the system scope: that is the user's).
fn with_service(base: &Grant, service: Option<&KsToken>) -> Grant {
    let mut headers: Vec<(IdentityHeader, String)> = base.headers().to_vec();
    match service {
        Some(s) => {
            headers.push((h::SERVICE_IDENTITY_STATUS, "Confirmed".to_owned()));
            headers.extend(s.as_service.iter().cloned());
        }
        None => headers.push((h::SERVICE_IDENTITY_STATUS, "Invalid".to_owned())),
    }
    Grant::keystone(headers, base.token_info_json().to_owned(), None)
}

fn bind_ok(mode: BindMode, bind: Bind) -> bool {
    match (mode, bind) {
        (BindMode::Disabled, _) | (_, Bind::None) => true,
        (BindMode::Permissive, Bind::Other) => true,
        (BindMode::Permissive, Bind::Kerberos) | (BindMode::Strict, _) => false,
    }
}

fn domain_json(domain: &DomainRef) -> Value {
    match domain {
        DomainRef::Id(id) => json!({"id": id}),
        DomainRef::Name(name) => json!({"name": name}),
    }
}

fn user_json(user: &UserRef) -> Map<String, Value> {
    let value = match user {
        UserRef::Id(id) => json!({"id": id}),
        UserRef::Name { name, domain } => json!({"name": name, "domain": domain_json(domain)}),
    };
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The body of `POST /v3/auth/tokens` for this service's own token.
fn auth_body(auth: &ServiceAuth) -> Value {
    match auth {
        ServiceAuth::Tokenless { .. } => json!({}),
        ServiceAuth::Password {
            user,
            password,
            scope,
        } => {
            let mut user = user_json(user);
            user.insert(
                "password".into(),
                Value::String(password.expose().to_owned()),
            );
            let mut auth = json!({
                "identity": {"methods": ["password"], "password": {"user": user}}
            });
            let scope = match scope {
                TokenScope::Unscoped => None,
                TokenScope::Project(ProjectRef::Id(id)) => Some(json!({"project": {"id": id}})),
                TokenScope::Project(ProjectRef::Name { name, domain }) => {
                    Some(json!({"project": {"name": name, "domain": domain_json(domain)}}))
                }
                TokenScope::Domain(domain) => Some(json!({"domain": domain_json(domain)})),
                TokenScope::System(_) => Some(json!({"system": {"all": true}})),
                TokenScope::Trust(id) => Some(json!({"OS-TRUST:trust": {"id": id}})),
            };
            if let (Some(scope), Some(object)) = (scope, auth.as_object_mut()) {
                object.insert("scope".into(), scope);
            }
            json!({ "auth": auth })
        }
        ServiceAuth::ApplicationCredential { credential, secret } => {
            let mut cred = match credential {
                AppCredentialRef::Id(id) => {
                    let mut m = Map::new();
                    m.insert("id".into(), Value::String(id.clone()));
                    m
                }
                AppCredentialRef::Name { name, user } => {
                    let mut m = Map::new();
                    m.insert("name".into(), Value::String(name.clone()));
                    m.insert("user".into(), Value::Object(user_json(user)));
                    m
                }
            };
            cred.insert("secret".into(), Value::String(secret.expose().to_owned()));
            json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": cred,
            }}})
        }
    }
}

fn auth_secrets(auth: &ServiceAuth) -> Vec<&str> {
    match auth {
        ServiceAuth::Tokenless { .. } => Vec::new(),
        ServiceAuth::Password { password, .. } => vec![password.expose()],
        ServiceAuth::ApplicationCredential { secret, .. } => vec![secret.expose()],
    }
}

/// Keystone's `{"error": {"title", "message"}}`, sanitized (the tokens sent scrubbed: a
/// 404's message names the token).
fn keystone_error(reply: &HttpReply, secrets: &[&str]) -> (Option<String>, Option<String>) {
    let parsed = strict_json::from_slice(&reply.body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(|t| sanitize(t, secrets))
    };
    (field("title"), field("message"))
}

fn rejected(reply: &HttpReply, secrets: &[&str]) -> AsError {
    let (error, description) = keystone_error(reply, secrets);
    AsError::CredentialsRejected {
        status: reply.status,
        error,
        description,
    }
}

fn status_error(status: u16, reply: &HttpReply, secrets: &[&str]) -> AsError {
    let (error, description) = keystone_error(reply, secrets);
    AsError::Status {
        status,
        error,
        description,
    }
}

/// The v3 endpoint a version document lists (`{"versions": {"values": [...]}}`, a bare list,
/// or one `{"version": {...}}`): the highest `v3`/`v3.N` whose status is stable, current or
/// supported, by its `self` link, which must be a URL `auth_url` could be and keep an https
/// `auth_url`'s scheme (the service's password goes there).
fn discovered_v3(document: &Map<String, Value>, auth_url: &str) -> Result<String, String> {
    let entries: Vec<&Value> = match (document.get("versions"), document.get("version")) {
        (Some(Value::Object(versions)), _) => versions
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default(),
        (Some(Value::Array(versions)), _) => versions.iter().collect(),
        (None, Some(version @ Value::Object(_))) => vec![version],
        _ => return Err("it lists no versions".into()),
    };
    let minor_of_v3 = |id: &str| match id.strip_prefix("v3") {
        Some("") => Some(0),
        Some(rest) => rest.strip_prefix('.').and_then(|m| m.parse::<u32>().ok()),
        None => None,
    };
    let usable = |status: &str| {
        ["stable", "current", "supported"]
            .iter()
            .any(|s| status.eq_ignore_ascii_case(s))
    };
    let best = entries
        .into_iter()
        .filter_map(|entry| {
            let minor = minor_of_v3(entry.get("id")?.as_str()?)?;
            usable(entry.get("status")?.as_str()?).then_some((minor, entry))
        })
        .max_by_key(|(minor, _)| *minor)
        .map(|(_, entry)| entry)
        .ok_or("it lists no stable identity v3")?;
    let href = best
        .get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|link| link.get("rel").and_then(Value::as_str) == Some("self"))
        .and_then(|link| link.get("href").and_then(Value::as_str))
        .ok_or("its v3 entry has no self link")?;
    let href = href.trim_end_matches('/');
    if crate::options::check_url("auth_url", href).is_err() {
        return Err("its v3 self link is not an http(s) URL".into());
    }
    let https = |url: &str| {
        url.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    if https(auth_url) && !https(href) {
        return Err("its v3 self link is not https while auth_url is: not followed".into());
    }
    Ok(href.to_owned())
}

/// The JSON object of a 200/201 answer.
fn answer_object(reply: &HttpReply, _secrets: &[&str]) -> Result<Map<String, Value>, AsError> {
    match strict_json::from_slice(&reply.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AsError::Malformed(
            "Keystone's answer is JSON but not an object".into(),
        )),
        Err(strict_json::Refusal::DuplicateName) => Err(AsError::Malformed(
            "Keystone's answer repeats a member name in an object".into(),
        )),
        Err(strict_json::Refusal::NotJson) => {
            Err(AsError::Malformed("Keystone's answer is not JSON".into()))
        }
    }
}
