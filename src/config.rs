//! The one configuration parser: a flat map of option names to string values, as a paste
//! section, an oslo.config group, the C builder and the tests all give it.
//!
//! Every option of keystonemiddleware's `[ext_oauth2_auth]` group keeps its name and meaning;
//! [`OPTIONS`] lists them with tokenward's additions. Values are strings; an empty value counts
//! as unset (as in the reference). A value that can never work is an error naming the option.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::claims::ClaimPath;
use crate::dpop::{DpopConfig, DpopMode};
use crate::error::ConfigError;
use crate::jwks::KeySource;
use crate::jwt::{Algorithm, HeaderPolicy};
use crate::proxy_cert::{HeaderFormat, ProxyCertConfig};
use crate::secret::Secret;
use crate::shared_cache::SharedTierConfig;

/// The type of an option's value, for parsing and for registering it with oslo.config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// Free text.
    Str,
    /// Secret text (never logged).
    Secret,
    /// `true/false/yes/no/on/off/1/0`, any case.
    Bool,
    /// A whole number.
    Int,
    /// Comma-separated list.
    List,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
}

/// Where an option comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// keystonemiddleware 13.0.1 `[ext_oauth2_auth]`.
    Reference,
    /// Tacker's outbound client options in the same group.
    Tacker,
    /// Added by tokenward.
    Tokenward,
    /// keystonemiddleware 13.0.1 `[keystone_authtoken]` (auth_token) and the options of the
    /// keystoneauth plugins it loads; used with `validation = keystone`.
    KeystoneAuthToken,
}

/// One configuration option.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The option name, as in the ini file.
    pub name: &'static str,
    /// Value type.
    pub kind: OptionKind,
    /// Default as text, if any.
    pub default: Option<&'static str>,
    /// Who defined it.
    pub origin: Origin,
    /// One-line meaning.
    pub help: &'static str,
}

const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "tls_client_auth",
    "private_key_jwt",
    "client_secret_jwt",
];

const VALIDATIONS: &[&str] = &["introspection", "jwt", "jwt_or_introspection", "keystone"];

const fn opt(
    name: &'static str,
    kind: OptionKind,
    default: Option<&'static str>,
    origin: Origin,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        default,
        origin,
        help,
    }
}

use OptionKind::{Bool, Choice, Int, List, Str};
use Origin::{KeystoneAuthToken as Kat, Reference as Ksm, Tacker, Tokenward as Tw};

/// Every option tokenward understands, in README order.
#[rustfmt::skip]
pub const OPTIONS: &[OptionSpec] = &[
    opt("introspect_endpoint", Str, None, Ksm, "RFC 7662 introspection endpoint URL (required by the filter)"),
    opt("audience", Str, None, Ksm, "`aud` of client assertions (use the AS issuer URL); shown in WWW-Authenticate (required by the filter)"),
    opt("auth_method", Choice(AUTH_METHODS), Some("client_secret_basic"), Ksm, "how tokenward authenticates to the AS"),
    opt("client_id", Str, None, Ksm, "tokenward's client id at the AS (required)"),
    opt("client_secret", OptionKind::Secret, None, Ksm, "client secret (client_secret_basic, client_secret_post, client_secret_jwt)"),
    opt("jwt_key_file", Str, None, Ksm, "PEM private key for private_key_jwt (PKCS#1, PKCS#8 or SEC1); read once at start-up"),
    opt("jwt_algorithm", Str, None, Ksm, "assertion algorithm: HS256/384/512 (client_secret_jwt); RS/PS256-512, ES256/384/512, EdDSA (private_key_jwt)"),
    opt("jwt_bearer_time_out", Int, Some("3600"), Ksm, "client assertion lifetime in seconds, at most 86400"),
    opt("certfile", Str, None, Ksm, "client certificate for TLS to the AS (may also hold the key)"),
    opt("keyfile", Str, None, Ksm, "private key for certfile"),
    opt("cafile", Str, None, Ksm, "CA bundle that verifies the AS; unset means the system roots"),
    opt("insecure", Bool, Some("false"), Ksm, "do not verify the AS certificate (testing only)"),
    opt("http_connect_timeout", Int, Some("10"), Ksm, "seconds for one whole request to the AS (connect and read), at most 3600"),
    opt("thumbprint_verify", Choice(&["false", "true", "auto"]), Some("false"), Ksm, "RFC 8705 binding: true = every token must carry `cnf.x5t#S256` matching the caller's certificate; auto = tokens that carry it must match, unbound tokens pass; false = not checked (yes/no/on/off/1/0 also work)"),
    opt("client_cert_header", Str, None, Tw, "take the caller's certificate from this header set by a TLS-terminating proxy (e.g. X-SSL-Client-Cert), only from trusted_proxies; SSL_CLIENT_CERT and the socket are then ignored"),
    opt("client_cert_header_format", Choice(HeaderFormat::NAMES), Some("pem"), Tw, "how the proxy writes it: pem (Apache, newlines may be spaces), url_encoded_pem (nginx $ssl_client_escaped_cert), der_base64 (HAProxy ssl_c_der,base64), xfcc (Envoy x-forwarded-client-cert), rfc9440 (Client-Cert)"),
    opt("trusted_proxies", List, None, Tw, "IP addresses and CIDR networks (IPv4, IPv6) of the proxies whose client_cert_header is believed (required with it)"),
    opt("mapping_project_id", Str, None, Ksm, "claim path of the project id; a value makes the token project-scoped"),
    opt("mapping_project_name", Str, None, Ksm, "claim path of the project name"),
    opt("mapping_project_domain_id", Str, None, Ksm, "claim path of the project domain id (also the domain id of domain-scoped tokens)"),
    opt("mapping_project_domain_name", Str, None, Ksm, "claim path of the project domain name"),
    opt("mapping_user_id", Str, Some("client_id"), Ksm, "claim path of the user id"),
    opt("mapping_user_name", Str, Some("username"), Ksm, "claim path of the user name"),
    opt("mapping_user_domain_id", Str, None, Ksm, "claim path of the user domain id (required)"),
    opt("mapping_user_domain_name", Str, None, Ksm, "claim path of the user domain name (required)"),
    opt("mapping_roles", Str, None, Ksm, "claim path of the roles: a comma-separated string or a JSON array of strings (required)"),
    opt("mapping_system_scope", Str, None, Ksm, "claim path of a boolean; true makes the token system-scoped"),
    opt("mapping_expires_at", Str, None, Ksm, "claim path of an extra expiry time (NumericDate), checked like `exp`"),
    opt("token_cache_time", Int, Some("300"), Ksm, "seconds an active token is cached, capped by its `exp`, at most 2592000 (30 days); 0 or less disables caching"),
    opt("memcached_servers", List, None, Ksm, "memcached servers (`host:port`) for a shared cache tier behind the in-process one"),
    opt("memcache_servers", List, None, Ksm, "deprecated name of memcached_servers"),
    opt("memcache_security_strategy", Choice(&["None", "MAC", "ENCRYPT"]), Some("None"), Ksm, "protection of shared cache entries (any case)"),
    opt("memcache_secret_key", OptionKind::Secret, None, Ksm, "secret for MAC/ENCRYPT"),
    opt("memcache_pool_dead_retry", Int, Some("300"), Ksm, "seconds a failing memcached or Redis server is left alone, at most 86400"),
    opt("memcache_pool_maxsize", Int, Some("10"), Ksm, "connections kept per memcached server or Redis URL"),
    opt("memcache_pool_socket_timeout", Int, Some("3"), Ksm, "seconds for one memcached or Redis operation, at most 600"),
    opt("memcache_pool_unused_timeout", Int, Some("60"), Ksm, "accepted for compatibility (at most 86400); idle connections are kept up to memcache_pool_maxsize"),
    opt("memcache_pool_conn_get_timeout", Int, Some("10"), Ksm, "accepted for compatibility (at most 600); a request opens a connection when none is idle"),
    opt("memcache_use_advanced_pool", Bool, Some("true"), Ksm, "accepted for compatibility; tokenward has one pool kind"),
    opt("memcache_secret_key_fallback", OptionKind::Secret, None, Tw, "previous memcache_secret_key, still read during a key rollover"),
    opt("redis_url", Str, None, Tw, "Redis (`redis://host:port/db`, or `rediss://` for TLS) for a shared cache tier, instead of memcached"),
    opt("redis_cluster_nodes", List, None, Tw, "Redis Cluster seed nodes (`host:port`, or `redis://` / `rediss://` URLs) for a shared cache tier, instead of redis_url or memcached"),
    opt("redis_cafile", Str, None, Tw, "CA bundle that verifies `rediss://` servers; unset means the system roots"),
    opt("redis_certfile", Str, None, Tw, "client certificate for mutual TLS to `rediss://` servers (may also hold the key)"),
    opt("redis_keyfile", Str, None, Tw, "private key for redis_certfile"),
    opt("auth_type", Str, None, Ksm, "validation = keystone: how this service authenticates to Keystone (v3tokenlessauth, password, v3password, v3applicationcredential); otherwise accepted for compatibility and unused"),
    opt("auth_section", Str, None, Ksm, "validation = keystone: the oslo.config group that holds auth_type and the plugin options (read by the Python door); otherwise accepted for compatibility and unused"),
    opt("token_endpoint", Str, None, Tacker, "token endpoint for the outbound Client Credentials grant"),
    opt("scope", Str, None, Tacker, "scope requested by the outbound client"),
    opt("use_ext_oauth2_auth", Bool, Some("false"), Tacker, "Tacker's switch for the outbound client; read by Tacker"),
    opt("dpop_key_file", Str, None, Tw, "outbound client: PEM private key (EC, Ed25519 or RSA) to obtain DPoP-bound tokens (RFC 9449), with a proof at the token endpoint and on each request of the requests auth class"),
    opt("token_expiry_margin", Int, None, Tw, "outbound client: refresh a token this many seconds before it expires (default min(30, lifetime/2)), at most 86400"),
    opt("token_cache_size", Int, Some("10000"), Tw, "most tokens held in the in-process cache"),
    opt("token_cache_inactive_time", Int, Some("30"), Tw, "seconds an inactive or refused token is cached, at most 86400; 0 disables"),
    opt("token_time_leeway", Int, Some("5"), Tw, "seconds of clock skew allowed when checking `exp` and `nbf`, at most 3600"),
    opt("token_audience", List, None, Tw, "if set, the token's `aud` must contain one of these"),
    opt("token_issuer", Str, None, Tw, "if set, the token's `iss` must equal this (required by jwt validation)"),
    opt("token_required_scope", List, None, Tw, "if set, the token's `scope` (or `scp` array) must contain all of these"),
    opt("retry_after", Int, Some("5"), Tw, "seconds sent in `Retry-After` when the AS cannot answer (503), at most 86400"),
    opt("validation", Choice(VALIDATIONS), Some("introspection"), Tw, "how tokens are checked: introspection (RFC 7662), jwt (JWT access tokens verified locally, RFC 9068), jwt_or_introspection (a JWS locally, any other token by introspection) or keystone (X-Auth-Token and X-Service-Token validated by Keystone, as keystonemiddleware.auth_token)"),
    opt("jwks_uri", Str, None, Tw, "the AS's JWK Set URL for jwt validation; unset means discovery from token_issuer"),
    opt("jwks_cache_time", Int, Some("300"), Tw, "seconds the AS's keys are kept (less when the answer's Cache-Control max-age is shorter), at most 86400"),
    opt("jwks_min_refresh_interval", Int, Some("10"), Tw, "least seconds between two key fetches for unknown `kid`s (and after a failed fetch), at most 3600"),
    opt("jwt_algorithms", List, Some("RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"), Tw, "JWS algorithms accepted for JWT access tokens (asymmetric only)"),
    opt("jwt_typ", List, Some("at+jwt,application/at+jwt,JWT"), Tw, "accepted JWT header `typ` values (JWT is what Keycloak sends)"),
    opt("dpop", Choice(&["off", "allowed", "required"]), Some("off"), Tw, "RFC 9449 DPoP: off refuses the DPoP scheme; allowed accepts DPoP-bound tokens with a proof beside bearer tokens; required refuses bearer tokens (a key-bound token is never accepted as a bearer token)"),
    opt("dpop_algorithms", List, Some("ES256,RS256,PS256,EdDSA"), Tw, "JWS algorithms accepted for DPoP proofs (asymmetric only)"),
    opt("dpop_max_age", Int, Some("60"), Tw, "seconds a DPoP proof's `iat` may lie in the past (plus token_time_leeway), at most 3600"),
    opt("dpop_public_url", Str, None, Tw, "the external scheme://host[:port] of this API when a proxy rewrites them, for a proof's `htu`; unset means wsgi.url_scheme and Host"),
    opt("as_failure_threshold", Int, Some("5"), Tw, "consecutive AS failures (unreachable, timeout, 5xx, garbage, too large; never a 4xx) that open the circuit breaker; 0 disables it"),
    opt("as_open_time", Int, Some("10"), Tw, "seconds the open breaker sends no request to the AS (misses get 503 at once) before one probe, at most 3600"),
    opt("stale_if_error", Int, Some("0"), Tw, "seconds past its cache lifetime an active verdict is still served while the AS cannot answer (never past `exp`), at most 86400; 0 disables"),
    opt("metrics_name", Str, None, Tw, "the `filter` label of the Prometheus metrics (default: log_name, else the logger's name)"),
    opt("basic_auth_encoding", Choice(&["rfc6749", "raw"]), Some("rfc6749"), Tw, "client_secret_basic: form-encode id and secret (RFC 6749 §2.3.1) or send them raw"),
    opt("www_authenticate_uri", Str, None, Kat, "the public identity endpoint sent in `WWW-Authenticate: Keystone uri=...` with a 401 (default: auth_url)"),
    opt("auth_url", Str, None, Kat, "the identity API: with v3tokenlessauth the versioned endpoint itself (…/v3); with the other plugins an unversioned one gets /v3"),
    opt("auth_version", Str, None, Kat, "accepted for compatibility; only the v3 API is used"),
    opt("interface", Choice(&["public", "internal", "admin"]), Some("internal"), Kat, "the catalog interface of the identity endpoint that validates tokens (password, v3applicationcredential)"),
    opt("region_name", Str, None, Kat, "the region of that identity endpoint"),
    opt("delay_auth_decision", Bool, Some("false"), Kat, "pass requests without a valid token on with X-Identity-Status: Invalid instead of a 401 (Keystone unavailable is still a 503)"),
    opt("http_request_max_retries", Int, Some("3"), Kat, "times a validation is sent again at once when Keystone cannot be connected to, 0 to 10"),
    opt("include_service_catalog", Bool, Some("true"), Kat, "ask Keystone for the catalog and set X-Service-Catalog"),
    opt("enforce_token_bind", Str, Some("permissive"), Kat, "disabled, permissive (refuse kerberos-bound tokens, which cannot be verified here; ignore other binds) or strict (refuse every bound token); required and named methods are refused at start-up"),
    opt("service_token_roles", List, Some("service"), Kat, "a service token must hold one of these roles (see service_token_roles_required); it also lets the user token be expired"),
    opt("service_token_roles_required", Bool, Some("true"), Kat, "a service token without a role of service_token_roles is invalid"),
    opt("service_type", Str, None, Kat, "this service's type in the catalog, to enforce application-credential access rules"),
    opt("cache", Str, None, Kat, "Swift's environ cache key: not supported (the in-process and shared tiers are used)"),
    opt("memcache_tls_enabled", Bool, Some("false"), Kat, "TLS to memcached is not supported: true is refused at start-up (use redis_url = rediss://...)"),
    opt("memcache_tls_cafile", Str, None, Kat, "accepted with memcache_tls_enabled = false only"),
    opt("memcache_tls_certfile", Str, None, Kat, "accepted with memcache_tls_enabled = false only"),
    opt("memcache_tls_keyfile", Str, None, Kat, "accepted with memcache_tls_enabled = false only"),
    opt("memcache_tls_allowed_ciphers", Str, None, Kat, "accepted with memcache_tls_enabled = false only"),
    opt("memcache_sasl_enabled", Bool, Some("false"), Kat, "SASL to memcached is not supported: true is refused at start-up"),
    opt("memcache_username", Str, None, Kat, "accepted with memcache_sasl_enabled = false only"),
    opt("memcache_password", OptionKind::Secret, None, Kat, "accepted with memcache_sasl_enabled = false only"),
    opt("username", Str, None, Kat, "password: the service user's name (with user_domain_id or user_domain_name)"),
    opt("user_id", Str, None, Kat, "password: the service user's id; v3applicationcredential: the credential's owner when given by name"),
    opt("password", OptionKind::Secret, None, Kat, "password: the service user's password"),
    opt("user_domain_id", Str, None, Kat, "the domain id of username"),
    opt("user_domain_name", Str, None, Kat, "the domain name of username"),
    opt("project_id", Str, None, Kat, "the service's project scope by id (password; v3tokenlessauth sends X-Project-Id)"),
    opt("project_name", Str, None, Kat, "the service's project scope by name, with project_domain_id or project_domain_name"),
    opt("project_domain_id", Str, None, Kat, "the domain id of project_name"),
    opt("project_domain_name", Str, None, Kat, "the domain name of project_name"),
    opt("domain_id", Str, None, Kat, "the service's domain scope by id"),
    opt("domain_name", Str, None, Kat, "the service's domain scope by name"),
    opt("default_domain_id", Str, None, Kat, "password: the user's and project's domain id when theirs are not given"),
    opt("default_domain_name", Str, None, Kat, "password: the user's and project's domain name when theirs are not given"),
    opt("system_scope", Str, None, Kat, "password: scope the service's token to the system (`all`)"),
    opt("trust_id", Str, None, Kat, "password: scope the service's token to this trust"),
    opt("application_credential_id", Str, None, Kat, "v3applicationcredential: the credential's id"),
    opt("application_credential_name", Str, None, Kat, "v3applicationcredential: the credential's name (with user_id, or username and its domain)"),
    opt("application_credential_secret", OptionKind::Secret, None, Kat, "v3applicationcredential: the credential's secret"),
];

/// The largest value of every option that is a number of seconds (each help text says it).
/// A larger value is a start-up error naming the option: lifetimes and timeouts built from
/// these stay far from the limits of `Instant` and `Duration` arithmetic.
#[rustfmt::skip]
pub const SECONDS_BOUNDS: &[(&str, i64)] = &[
    ("jwt_bearer_time_out", 86_400),
    ("http_connect_timeout", 3_600),
    // memcached's longest relative expiry.
    ("token_cache_time", 2_592_000),
    ("memcache_pool_dead_retry", 86_400),
    ("memcache_pool_socket_timeout", 600),
    ("memcache_pool_unused_timeout", 86_400),
    ("memcache_pool_conn_get_timeout", 600),
    ("token_expiry_margin", 86_400),
    ("token_cache_inactive_time", 86_400),
    ("token_time_leeway", 3_600),
    ("retry_after", 86_400),
    ("jwks_cache_time", 86_400),
    ("as_open_time", 3_600),
    ("dpop_max_age", 3_600),
    ("stale_if_error", 86_400),
    ("jwks_min_refresh_interval", 3_600),
];

/// The upper bound of a seconds option (see [`SECONDS_BOUNDS`]).
pub fn seconds_bound(name: &str) -> Option<i64> {
    SECONDS_BOUNDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bound)| *bound)
}

/// Keys a paste or oslo.config source passes that are not options and are silently skipped.
pub const IGNORED_KEYS: &[&str] = &[
    "here",
    "__file__",
    "configkey",
    "log_name",
    "oslo_config_project",
    "oslo_config_file",
    "oslo_config_config",
];

/// Looks up an option by name.
pub fn option(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Options as given, checked against [`OPTIONS`]; the typed configs read from it.
#[derive(Clone, Default)]
pub struct RawOptions {
    values: BTreeMap<&'static str, String>,
    unknown: Vec<String>,
}

impl std::fmt::Debug for RawOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.values {
            match option(k).map(|o| o.kind) {
                Some(OptionKind::Secret) => m.entry(k, &"***"),
                _ => m.entry(k, v),
            };
        }
        m.finish()
    }
}

impl RawOptions {
    /// Reads a flat map. Unknown keys are collected (see [`RawOptions::unknown`]), not errors;
    /// empty values count as unset. Choice and type errors surface when a typed config reads them.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut raw = RawOptions::default();
        for (k, v) in pairs {
            raw.set(k.as_ref(), v.as_ref());
        }
        raw
    }

    /// Sets one option; returns false (and records it) when the key is not an option.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        match option(key) {
            Some(spec) => {
                let value = value.trim();
                if value.is_empty() {
                    self.values.remove(spec.name);
                } else {
                    self.values.insert(spec.name, value.to_owned());
                }
                true
            }
            None => {
                if !IGNORED_KEYS.contains(&key) && !self.unknown.iter().any(|k| k == key) {
                    self.unknown.push(key.to_owned());
                }
                false
            }
        }
    }

    /// Whether the option was given (a default does not count).
    pub fn is_set(&self, name: &str) -> bool {
        self.values.keys().any(|k| *k == name)
    }

    /// Keys that are not options (for a WARNING naming each).
    pub fn unknown(&self) -> &[String] {
        &self.unknown
    }

    fn text(&self, name: &'static str) -> Option<&str> {
        debug_assert!(option(name).is_some(), "{name} is not in OPTIONS");
        self.values
            .get(name)
            .map(String::as_str)
            .or_else(|| option(name).and_then(|o| o.default))
    }

    pub(crate) fn string(&self, name: &'static str) -> Option<String> {
        self.text(name).map(str::to_owned)
    }

    pub(crate) fn required(&self, name: &'static str, why: &str) -> Result<String, ConfigError> {
        self.string(name)
            .ok_or_else(|| ConfigError::new(name, format!("is required {why}")))
    }

    pub(crate) fn secret(&self, name: &'static str) -> Option<Secret> {
        self.values.get(name).map(|v| Secret::new(v.clone()))
    }

    pub(crate) fn bool(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.text(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "no" | "off" | "0" | "f" | "n") => Ok(false),
            Some("true" | "yes" | "on" | "1" | "t" | "y") => Ok(true),
            Some(other) => Err(ConfigError::new(
                name,
                format!("must be true or false, not {other:?}"),
            )),
        }
    }

    pub(crate) fn int(&self, name: &'static str) -> Result<Option<i64>, ConfigError> {
        self.text(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ConfigError::new(name, format!("must be a whole number, not {v:?}"))
                })
            })
            .transpose()
    }

    /// A seconds option, checked against its bound in [`SECONDS_BOUNDS`] (negative values
    /// are left to the caller, which knows what they mean).
    pub(crate) fn secs(&self, name: &'static str) -> Result<Option<i64>, ConfigError> {
        let bound = seconds_bound(name);
        debug_assert!(bound.is_some(), "{name} is not in SECONDS_BOUNDS");
        match (self.int(name)?, bound) {
            (Some(n), Some(bound)) if n > bound => Err(ConfigError::new(
                name,
                format!("must be at most {bound} seconds, not {n}"),
            )),
            (n, _) => Ok(n),
        }
    }

    pub(crate) fn positive_secs(&self, name: &'static str) -> Result<u64, ConfigError> {
        match self.secs(name)? {
            Some(n) if n > 0 => Ok(n.unsigned_abs()),
            Some(n) => Err(ConfigError::new(
                name,
                format!("must be a positive number of seconds, not {n}"),
            )),
            None => Err(ConfigError::new(name, "is required")),
        }
    }

    pub(crate) fn list(&self, name: &'static str) -> Vec<String> {
        self.text(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of a choice option, matched case-insensitively, as spelled in the choice list.
    pub(crate) fn choice(&self, name: &'static str) -> Result<Option<&'static str>, ConfigError> {
        let Some(OptionKind::Choice(choices)) = option(name).map(|o| o.kind) else {
            return Ok(None);
        };
        let Some(v) = self.text(name) else {
            return Ok(None);
        };
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(v))
            .map(|c| Some(*c))
            .ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!("must be one of {}, not {v:?}", choices.join(", ")),
                )
            })
    }

    pub(crate) fn path(&self, name: &'static str) -> Option<PathBuf> {
        self.text(name).map(PathBuf::from)
    }

    pub(crate) fn claim_path(&self, name: &'static str) -> Result<Option<ClaimPath>, ConfigError> {
        self.text(name)
            .map(|v| ClaimPath::parse(v).map_err(|why| ConfigError::new(name, why)))
            .transpose()
    }
}

/// How the client authenticates to the AS (RFC 6749 §2.3, RFC 7523, RFC 8705).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// HTTP Basic with form-encoded id and secret.
    ClientSecretBasic,
    /// id and secret in the form body.
    ClientSecretPost,
    /// mutual TLS with a CA-issued certificate; the id in the form.
    TlsClientAuth,
    /// RFC 7523 assertion signed with a private key.
    PrivateKeyJwt,
    /// RFC 7523 assertion signed with the secret (HMAC).
    ClientSecretJwt,
}

impl AuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::TlsClientAuth => "tls_client_auth",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::ClientSecretJwt => "client_secret_jwt",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Self::ClientSecretBasic,
            Self::ClientSecretPost,
            Self::TlsClientAuth,
            Self::PrivateKeyJwt,
            Self::ClientSecretJwt,
        ]
        .into_iter()
        .find(|m| m.as_str() == name)
    }

    /// Whether the method needs `client_secret`.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            Self::ClientSecretBasic | Self::ClientSecretPost | Self::ClientSecretJwt
        )
    }
}

/// Encoding of the Basic credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BasicEncoding {
    /// RFC 6749 §2.3.1: form-urlencode id and secret, then base64.
    Rfc6749,
    /// base64 of the raw UTF-8 `id:secret` (what requests does).
    Raw,
}

/// TLS settings toward the AS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// Client certificate PEM (may hold the key too).
    pub certfile: Option<PathBuf>,
    /// Private key PEM for `certfile`.
    pub keyfile: Option<PathBuf>,
    /// CA bundle replacing the system roots.
    pub cafile: Option<PathBuf>,
    /// Skip verification of the AS certificate.
    pub insecure: bool,
}

/// What a client needs to talk to the AS: identity, authentication method, TLS, timeout.
/// Shared by introspection and the Client Credentials grant.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client id.
    pub client_id: String,
    /// Authentication method.
    pub auth_method: AuthMethod,
    /// Secret for the secret-based methods.
    pub client_secret: Option<Secret>,
    /// `aud` of client assertions.
    pub audience: Option<String>,
    /// Key for `private_key_jwt`.
    pub jwt_key_file: Option<PathBuf>,
    /// Algorithm name for the JWT methods.
    pub jwt_algorithm: Option<String>,
    /// Assertion lifetime.
    pub jwt_lifetime: Duration,
    /// TLS identity and trust.
    pub tls: TlsSettings,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Basic credential encoding.
    pub basic_encoding: BasicEncoding,
}

impl ClientConfig {
    /// The TLS and timeout options alone, for a filter that never authenticates to the AS
    /// (`validation = jwt` fetches only public documents).
    pub fn transport_only(raw: &RawOptions) -> Result<Self, ConfigError> {
        let tls = TlsSettings {
            certfile: raw.path("certfile"),
            keyfile: raw.path("keyfile"),
            cafile: raw.path("cafile"),
            insecure: raw.bool("insecure")?,
        };
        if tls.keyfile.is_some() && tls.certfile.is_none() {
            return Err(ConfigError::new(
                "certfile",
                "is required when keyfile is set",
            ));
        }
        Ok(Self {
            client_id: raw.string("client_id").unwrap_or_default(),
            auth_method: AuthMethod::ClientSecretBasic,
            client_secret: None,
            audience: raw.string("audience"),
            jwt_key_file: None,
            jwt_algorithm: None,
            jwt_lifetime: Duration::from_secs(3600),
            tls,
            timeout: Duration::from_secs(raw.positive_secs("http_connect_timeout")?),
            basic_encoding: BasicEncoding::Rfc6749,
        })
    }

    /// Reads the client part of the options.
    pub fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let method_name = raw.choice("auth_method")?.unwrap_or("client_secret_basic");
        let auth_method = AuthMethod::parse(method_name)
            .ok_or_else(|| ConfigError::new("auth_method", "unknown"))?;
        let client_id = raw.required("client_id", "")?;
        let client_secret = raw.secret("client_secret");
        if auth_method.uses_secret() && client_secret.is_none() {
            return Err(ConfigError::new(
                "client_secret",
                format!("is required by auth_method = {method_name}"),
            ));
        }
        let jwt = matches!(
            auth_method,
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt
        );
        let jwt_algorithm = raw.string("jwt_algorithm");
        if jwt && jwt_algorithm.is_none() {
            return Err(ConfigError::new(
                "jwt_algorithm",
                format!("is required by auth_method = {method_name}"),
            ));
        }
        let jwt_key_file = raw.path("jwt_key_file");
        if auth_method == AuthMethod::PrivateKeyJwt && jwt_key_file.is_none() {
            return Err(ConfigError::new(
                "jwt_key_file",
                "is required by auth_method = private_key_jwt",
            ));
        }
        let tls = TlsSettings {
            certfile: raw.path("certfile"),
            keyfile: raw.path("keyfile"),
            cafile: raw.path("cafile"),
            insecure: raw.bool("insecure")?,
        };
        if auth_method == AuthMethod::TlsClientAuth && tls.certfile.is_none() {
            return Err(ConfigError::new(
                "certfile",
                "is required by auth_method = tls_client_auth",
            ));
        }
        if tls.keyfile.is_some() && tls.certfile.is_none() {
            return Err(ConfigError::new(
                "certfile",
                "is required when keyfile is set",
            ));
        }
        let basic_encoding = match raw.choice("basic_auth_encoding")? {
            Some("raw") => BasicEncoding::Raw,
            _ => BasicEncoding::Rfc6749,
        };
        Ok(Self {
            client_id,
            auth_method,
            client_secret,
            audience: raw.string("audience"),
            jwt_key_file,
            jwt_algorithm,
            jwt_lifetime: Duration::from_secs(if jwt {
                raw.positive_secs("jwt_bearer_time_out")?
            } else {
                // Unused by this method, but a value out of bounds is still a typo.
                raw.secs("jwt_bearer_time_out")?;
                3600
            }),
            tls,
            timeout: Duration::from_secs(raw.positive_secs("http_connect_timeout")?),
            basic_encoding,
        })
    }
}

/// The claim mapping (`mapping_*` options), checked for completeness at start-up.
#[derive(Debug, Clone)]
pub struct MappingConfig {
    /// Project id; a value means project scope.
    pub project_id: Option<ClaimPath>,
    /// Project name.
    pub project_name: Option<ClaimPath>,
    /// Project domain id (domain id for domain scope).
    pub project_domain_id: Option<ClaimPath>,
    /// Project domain name (domain name for domain scope).
    pub project_domain_name: Option<ClaimPath>,
    /// User id.
    pub user_id: ClaimPath,
    /// User name.
    pub user_name: ClaimPath,
    /// User domain id.
    pub user_domain_id: ClaimPath,
    /// User domain name.
    pub user_domain_name: ClaimPath,
    /// Roles.
    pub roles: ClaimPath,
    /// System scope flag.
    pub system_scope: Option<ClaimPath>,
    /// Extra expiry claim.
    pub expires_at: Option<ClaimPath>,
}

impl MappingConfig {
    /// The mapping of a filter that maps no claims (`validation = keystone`).
    fn unused() -> Self {
        // A one-segment path always parses.
        let path = || ClaimPath::parse("unused").expect("a one-segment claim path");
        Self {
            project_id: None,
            project_name: None,
            project_domain_id: None,
            project_domain_name: None,
            user_id: path(),
            user_name: path(),
            user_domain_id: path(),
            user_domain_name: path(),
            roles: path(),
            system_scope: None,
            expires_at: None,
        }
    }

    fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let need = |name: &'static str, why: &str| -> Result<ClaimPath, ConfigError> {
            raw.claim_path(name)?
                .ok_or_else(|| ConfigError::new(name, format!("is required {why}")))
        };
        let project_id = raw.claim_path("mapping_project_id")?;
        let system_scope = raw.claim_path("mapping_system_scope")?;
        let scoped_why = if project_id.is_some() {
            "for project-scoped tokens (mapping_project_id is set)"
        } else {
            "for domain-scoped tokens (mapping_system_scope is not set)"
        };
        let (project_domain_id, project_domain_name) =
            if project_id.is_some() || system_scope.is_none() {
                (
                    Some(need("mapping_project_domain_id", scoped_why)?),
                    Some(need("mapping_project_domain_name", scoped_why)?),
                )
            } else {
                (
                    raw.claim_path("mapping_project_domain_id")?,
                    raw.claim_path("mapping_project_domain_name")?,
                )
            };
        let project_name = if project_id.is_some() {
            Some(need("mapping_project_name", scoped_why)?)
        } else {
            raw.claim_path("mapping_project_name")?
        };
        Ok(Self {
            project_id,
            project_name,
            project_domain_id,
            project_domain_name,
            user_id: need("mapping_user_id", "")?,
            user_name: need("mapping_user_name", "")?,
            user_domain_id: need("mapping_user_domain_id", "to map the user's domain")?,
            user_domain_name: need("mapping_user_domain_name", "to map the user's domain")?,
            roles: need("mapping_roles", "to map the roles")?,
            system_scope,
            expires_at: raw.claim_path("mapping_expires_at")?,
        })
    }
}

/// Cache sizing and lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries held.
    pub capacity: usize,
    /// Lifetime of an active token's entry (capped by its `exp`); `None` disables caching.
    pub active_ttl: Option<Duration>,
    /// Lifetime of an inactive or refused token's entry; `None` disables negative caching.
    pub inactive_ttl: Option<Duration>,
}

/// Optional checks of the token beyond `active`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Acceptable audiences (any one).
    pub audience: Vec<String>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Required scopes (all).
    pub required_scope: Vec<String>,
    /// Clock skew allowed for `exp`/`nbf`.
    pub leeway: Duration,
    /// RFC 8705 certificate binding.
    pub binding: Binding,
}

/// How `cnf.x5t#S256` is checked (`thumbprint_verify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Binding {
    /// Not checked.
    #[default]
    Off,
    /// Every token must be bound to the caller's certificate.
    Required,
    /// A bound token must match; an unbound token passes (RFC 8705 §3).
    Auto,
}

impl Binding {
    /// Whether the door must hand over the caller's certificate.
    pub fn reads_certificate(self) -> bool {
        self != Self::Off
    }

    fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let name = "thumbprint_verify";
        if raw
            .text(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("auto"))
        {
            return Ok(Self::Auto);
        }
        match raw.bool(name) {
            Ok(true) => Ok(Self::Required),
            Ok(false) => Ok(Self::Off),
            Err(_) => Err(ConfigError::new(name, "must be true, false or auto")),
        }
    }
}

/// The circuit breaker toward the AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open it; 0 disables it.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub open_time: Duration,
}

impl BreakerConfig {
    /// Reads `as_failure_threshold` and `as_open_time`.
    pub fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let failure_threshold = match raw.int("as_failure_threshold")? {
            Some(n) if (0..=1_000_000).contains(&n) => u32::try_from(n).unwrap_or(5),
            Some(n) => {
                return Err(ConfigError::new(
                    "as_failure_threshold",
                    format!("must be 0 (off) to 1000000, not {n}"),
                ));
            }
            None => 5,
        };
        Ok(Self {
            failure_threshold,
            open_time: Duration::from_secs(raw.positive_secs("as_open_time")?),
        })
    }
}

/// How a token is checked (`validation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// RFC 7662 introspection of every token.
    Introspection,
    /// Every token must be a JWT access token verified locally.
    Jwt,
    /// A JWS is verified locally; any other token is introspected.
    JwtOrIntrospection,
    /// Keystone tokens (`X-Auth-Token`, `X-Service-Token`) validated by Keystone.
    Keystone,
}

/// Offline validation of JWT access tokens: keys and header rules.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Where the keys come from and how long they are kept.
    pub keys: KeySource,
    /// Accepted `alg` and `typ`.
    pub header: HeaderPolicy,
}

impl JwtConfig {
    fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let issuer = raw.required("token_issuer", "by validation = jwt and jwt_or_introspection (the `iss` of the tokens, and where the keys are discovered)")?;
        check_url("token_issuer", &issuer)?;
        let jwks_uri = raw.string("jwks_uri");
        if let Some(uri) = &jwks_uri {
            check_url("jwks_uri", uri)?;
        }
        let algorithms = asymmetric_algorithms(raw, "jwt_algorithms")?;
        let types = raw.list("jwt_typ");
        if types.is_empty() {
            return Err(ConfigError::new("jwt_typ", "must name at least one type"));
        }
        let secs = |name: &'static str| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(raw.positive_secs(name)?))
        };
        Ok(Self {
            keys: KeySource {
                jwks_uri,
                issuer,
                cache_time: secs("jwks_cache_time")?,
                min_refresh_interval: secs("jwks_min_refresh_interval")?,
            },
            header: HeaderPolicy { algorithms, types },
        })
    }
}

/// The whole configuration of the resource-server filter.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// How tokens are checked.
    pub validation: Validation,
    /// Offline JWT validation, in the `jwt` modes.
    pub jwt: Option<JwtConfig>,
    /// Keystone validation (`validation = keystone`).
    pub keystone: Option<crate::keystone::KeystoneConfig>,
    /// Introspection endpoint (empty with `validation = jwt`).
    pub introspect_endpoint: String,
    /// The reference's `audience`: the AS, used in WWW-Authenticate and assertions.
    pub audience: String,
    /// How to reach and authenticate to the AS.
    pub client: ClientConfig,
    /// Claim mapping.
    pub mapping: MappingConfig,
    /// Cache.
    pub cache: CacheConfig,
    /// Token checks.
    pub policy: TokenPolicy,
    /// `Retry-After` seconds on 503.
    pub retry_after: u32,
    /// The shared cache tier (memcached or Redis), if configured.
    pub shared: Option<SharedTierConfig>,
    /// The circuit breaker toward the AS.
    pub breaker: BreakerConfig,
    /// Certificates forwarded by a trusted TLS-terminating proxy, if configured.
    pub proxy_certs: Option<ProxyCertConfig>,
    /// DPoP at the resource server.
    pub dpop: DpopConfig,
    /// How long past its lifetime an active verdict may be served while the AS cannot answer.
    pub stale_if_error: Duration,
    /// The `filter` label of the Prometheus metrics, if set.
    pub metrics_name: Option<String>,
}

impl FilterConfig {
    /// Parses and checks the filter's options.
    pub fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let validation = match raw.choice("validation")? {
            Some("jwt") => Validation::Jwt,
            Some("jwt_or_introspection") => Validation::JwtOrIntrospection,
            Some("keystone") => Validation::Keystone,
            _ => Validation::Introspection,
        };
        let keystone = match validation {
            Validation::Keystone => Some(crate::keystone::KeystoneConfig::from_raw(raw)?),
            _ => None,
        };
        let jwt = match validation {
            Validation::Introspection | Validation::Keystone => {
                // Unused in this mode, but a value out of bounds is still a typo.
                raw.secs("jwks_cache_time")?;
                raw.secs("jwks_min_refresh_interval")?;
                None
            }
            _ => Some(JwtConfig::from_raw(raw)?),
        };
        let (introspect_endpoint, audience, client) = match (&jwt, &keystone) {
            (_, Some(ks)) => (
                String::new(),
                ks.www_authenticate_uri.clone(),
                ClientConfig::transport_only(raw)?,
            ),
            (Some(jwt), None) if validation == Validation::Jwt => (
                String::new(),
                raw.string("audience")
                    .unwrap_or_else(|| jwt.keys.issuer.clone()),
                ClientConfig::transport_only(raw)?,
            ),
            _ => {
                let endpoint = raw.required("introspect_endpoint", "")?;
                check_url("introspect_endpoint", &endpoint)?;
                (
                    endpoint,
                    raw.required("audience", "(the `aud` of client assertions)")?,
                    ClientConfig::from_raw(raw)?,
                )
            }
        };
        let mapping = match keystone {
            Some(_) => MappingConfig::unused(),
            None => MappingConfig::from_raw(raw)?,
        };
        let secs = |name: &'static str| -> Result<Option<Duration>, ConfigError> {
            Ok(raw
                .secs(name)?
                .filter(|n| *n > 0)
                .map(|n| Duration::from_secs(n.unsigned_abs())))
        };
        let capacity = match raw.int("token_cache_size")? {
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                return Err(ConfigError::new(
                    "token_cache_size",
                    format!("must be positive, not {n}"),
                ));
            }
            None => 10_000,
        };
        let cache = CacheConfig {
            capacity,
            active_ttl: secs("token_cache_time")?,
            inactive_ttl: secs("token_cache_inactive_time")?,
        };
        let leeway = raw.secs("token_time_leeway")?.unwrap_or(0);
        if leeway < 0 {
            return Err(ConfigError::new(
                "token_time_leeway",
                "must not be negative",
            ));
        }
        let policy = TokenPolicy {
            audience: raw.list("token_audience"),
            issuer: raw.string("token_issuer"),
            required_scope: raw.list("token_required_scope"),
            leeway: Duration::from_secs(leeway.unsigned_abs()),
            binding: Binding::from_raw(raw)?,
        };
        let retry_after = match raw.secs("retry_after")? {
            Some(n) if (0..=86_400).contains(&n) => u32::try_from(n).unwrap_or(5),
            Some(n) => {
                return Err(ConfigError::new(
                    "retry_after",
                    format!("must be 0 to 86400, not {n}"),
                ));
            }
            None => 5,
        };

        Ok(Self {
            validation,
            jwt,
            keystone,
            introspect_endpoint,
            audience,
            client,
            mapping,
            cache,
            policy,
            retry_after,
            shared: SharedTierConfig::from_raw(raw)?,
            breaker: BreakerConfig::from_raw(raw)?,
            dpop: dpop_config(raw)?,
            proxy_certs: match raw.string("client_cert_header") {
                Some(header) => {
                    let format = raw
                        .choice("client_cert_header_format")?
                        .and_then(HeaderFormat::from_name)
                        .unwrap_or(HeaderFormat::Pem);
                    Some(ProxyCertConfig::new(
                        &header,
                        format,
                        &raw.list("trusted_proxies"),
                    )?)
                }
                None => None,
            },
            stale_if_error: match raw.secs("stale_if_error")? {
                Some(n) if n < 0 => {
                    return Err(ConfigError::new("stale_if_error", "must not be negative"));
                }
                n => Duration::from_secs(n.unwrap_or(0).unsigned_abs()),
            },
            metrics_name: raw.string("metrics_name"),
        })
    }
}

fn dpop_config(raw: &RawOptions) -> Result<DpopConfig, ConfigError> {
    let mode = match raw.choice("dpop")? {
        Some("allowed") => DpopMode::Allowed,
        Some("required") => DpopMode::Required,
        _ => DpopMode::Off,
    };
    let algorithms = asymmetric_algorithms(raw, "dpop_algorithms")?;
    let public_url = match raw.string("dpop_public_url") {
        Some(url) => {
            check_url("dpop_public_url", &url)?;
            Some(url.trim_end_matches('/').to_owned())
        }
        None => None,
    };
    Ok(DpopConfig {
        mode,
        algorithms,
        max_age: Duration::from_secs(raw.positive_secs("dpop_max_age")?),
        public_url,
    })
}

/// A list option of JWS algorithms: known, asymmetric, at least one.
fn asymmetric_algorithms(
    raw: &RawOptions,
    option: &'static str,
) -> Result<Vec<Algorithm>, ConfigError> {
    let mut algorithms = Vec::new();
    for name in raw.list(option) {
        let algorithm = Algorithm::from_name(&name).ok_or_else(|| {
            let why = if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
                format!("must not hold {name:?}: only asymmetric signatures prove who signed (RFC 8725 §3.1)")
            } else {
                format!(
                    "holds {name:?}, which is not one of {}",
                    Algorithm::ALL.map(Algorithm::name).join(", ")
                )
            };
            ConfigError::new(option, why)
        })?;
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err(ConfigError::new(option, "must name at least one algorithm"));
    }
    Ok(algorithms)
}

pub(crate) fn check_url(name: &'static str, url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ConfigError::new(name, format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ConfigError::new(name, "must be an http:// or https:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ConfigError::new(
            name,
            "must not carry credentials in the URL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("introspect_endpoint", "https://as.example/introspect"),
            ("audience", "https://as.example"),
            ("client_id", "rs"),
            ("client_secret", "s3cret"),
            ("mapping_project_id", "project.id"),
            ("mapping_project_name", "project.name"),
            ("mapping_project_domain_id", "project.domain.id"),
            ("mapping_project_domain_name", "project.domain.name"),
            ("mapping_user_domain_id", "user_domain.id"),
            ("mapping_user_domain_name", "user_domain.name"),
            ("mapping_roles", "roles"),
        ]
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<FilterConfig, ConfigError> {
        FilterConfig::from_raw(&RawOptions::from_pairs(pairs.iter().copied()))
    }

    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut v: Vec<(&str, &str)> = base();
        for (k, val) in extra {
            v.retain(|(kk, _)| kk != k);
            v.push((k, val));
        }
        v
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.client.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(c.client.timeout, Duration::from_secs(10));
        assert_eq!(c.cache.active_ttl, Some(Duration::from_secs(300)));
        assert_eq!(c.cache.capacity, 10_000);
        assert_eq!(c.mapping.user_id.to_string(), "client_id");
        assert_eq!(c.policy.binding, Binding::Off);
    }

    #[test]
    fn missing_required_options_name_the_option() {
        for name in [
            "introspect_endpoint",
            "audience",
            "client_id",
            "client_secret",
            "mapping_roles",
            "mapping_user_domain_id",
        ] {
            let pairs: Vec<_> = base().into_iter().filter(|(k, _)| *k != name).collect();
            let err = parse(&pairs).unwrap_err();
            assert_eq!(err.option(), name, "{err}");
        }
    }

    #[test]
    fn method_specific_requirements() {
        let e = parse(&with(&[
            ("auth_method", "private_key_jwt"),
            ("jwt_algorithm", "RS256"),
        ]))
        .unwrap_err();
        assert_eq!(e.option(), "jwt_key_file");
        let e = parse(&with(&[("auth_method", "client_secret_jwt")])).unwrap_err();
        assert_eq!(e.option(), "jwt_algorithm");
        let e = parse(&with(&[("auth_method", "tls_client_auth")])).unwrap_err();
        assert_eq!(e.option(), "certfile");
        let e = parse(&with(&[("auth_method", "magic")])).unwrap_err();
        assert_eq!(e.option(), "auth_method");
        let e = parse(&with(&[
            ("auth_method", "client_secret_jwt"),
            ("jwt_algorithm", "HS256"),
            ("jwt_bearer_time_out", "0"),
        ]))
        .unwrap_err();
        assert_eq!(e.option(), "jwt_bearer_time_out");
    }

    #[test]
    fn bad_values_name_the_option() {
        assert_eq!(
            parse(&with(&[("insecure", "perhaps")]))
                .unwrap_err()
                .option(),
            "insecure"
        );
        assert_eq!(
            parse(&with(&[("token_cache_time", "5m")]))
                .unwrap_err()
                .option(),
            "token_cache_time"
        );
        assert_eq!(
            parse(&with(&[("introspect_endpoint", "ftp://x/y")]))
                .unwrap_err()
                .option(),
            "introspect_endpoint"
        );
        assert_eq!(
            parse(&with(&[("mapping_roles", "a..b")]))
                .unwrap_err()
                .option(),
            "mapping_roles"
        );
        assert_eq!(
            parse(&with(&[("memcache_security_strategy", "encrypt")]))
                .unwrap_err()
                .option(),
            "memcache_secret_key"
        );
        assert_eq!(
            parse(&with(&[("http_connect_timeout", "0")]))
                .unwrap_err()
                .option(),
            "http_connect_timeout"
        );
        for (name, value) in [
            ("memcache_pool_maxsize", "ten"),
            ("memcache_pool_dead_retry", "-1"),
            ("memcached_servers", "localhost"),
            ("redis_url", "http://x"),
            ("redis_url", "rediss://localhost:6380/0#insecure"),
        ] {
            assert_eq!(parse(&with(&[(name, value)])).unwrap_err().option(), name);
        }
        let plain = ("redis_url", "redis://localhost:6379/0");
        let tls = ("redis_url", "rediss://localhost:6380/0");
        assert!(parse(&with(&[tls, ("redis_cafile", "/ca.pem")])).is_ok());
        let cluster = parse(&with(&[
            ("redis_cluster_nodes", "rediss://a:1, REDISS://b:2"),
            ("redis_cafile", "/ca.pem"),
        ]))
        .unwrap();
        assert_eq!(cluster.shared.unwrap().redis_cluster_nodes.len(), 2);
        let plain_nodes = parse(&with(&[("redis_cluster_nodes", "a:1,redis://b:2")])).unwrap();
        assert_eq!(
            plain_nodes.shared.unwrap().redis_cluster_nodes,
            ["redis://a:1", "redis://b:2"]
        );
        for (pairs, option) in [
            (vec![plain, ("redis_cafile", "/ca.pem")], "redis_cafile"),
            (vec![("redis_certfile", "/c.pem")], "redis_certfile"),
            (vec![tls, ("redis_keyfile", "/k.pem")], "redis_certfile"),
            (
                vec![("redis_cluster_nodes", "a:1,b")],
                "redis_cluster_nodes",
            ),
            (
                vec![("redis_cluster_nodes", "unix:///tmp/r.sock")],
                "redis_cluster_nodes",
            ),
            (
                vec![("redis_cluster_nodes", "a:1,rediss://b:2")],
                "redis_cluster_nodes",
            ),
            (
                vec![plain, ("redis_cluster_nodes", "a:1")],
                "redis_cluster_nodes",
            ),
            (
                vec![("memcached_servers", "m:1"), ("redis_cluster_nodes", "a:1")],
                "redis_cluster_nodes",
            ),
            (
                vec![("redis_cluster_nodes", "a:1"), ("redis_cafile", "/ca.pem")],
                "redis_cafile",
            ),
        ] {
            assert_eq!(parse(&with(&pairs)).unwrap_err().option(), option);
        }
    }

    #[test]
    fn project_scope_needs_project_mappings_and_system_scope_relaxes_domain() {
        let pairs: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "mapping_project_name")
            .collect();
        assert_eq!(parse(&pairs).unwrap_err().option(), "mapping_project_name");
        let pairs: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("mapping_project"))
            .chain([("mapping_system_scope", "system")])
            .collect();
        assert!(parse(&pairs).is_ok());
    }

    #[test]
    fn unknown_keys_are_collected_and_paste_keys_ignored() {
        let raw = RawOptions::from_pairs([
            ("here", "/etc"),
            ("__file__", "x.ini"),
            ("debug", "true"),
            ("client_id", "a"),
        ]);
        assert_eq!(raw.unknown(), ["debug".to_owned()]);
    }

    #[test]
    fn empty_value_is_unset_and_choice_is_case_insensitive() {
        let c = parse(&with(&[
            ("token_cache_time", ""),
            ("auth_method", "CLIENT_SECRET_POST"),
        ]))
        .unwrap();
        assert_eq!(c.cache.active_ttl, Some(Duration::from_secs(300)));
        assert_eq!(c.client.auth_method, AuthMethod::ClientSecretPost);
        let c = parse(&with(&[("token_cache_time", "0")])).unwrap();
        assert_eq!(c.cache.active_ttl, None);
    }

    #[test]
    fn every_seconds_option_has_a_stated_bound_and_beyond_it_fails_naming_it() {
        for &(name, bound) in SECONDS_BOUNDS {
            let spec = option(name).unwrap_or_else(|| panic!("{name} is not an option"));
            assert_eq!(spec.kind, OptionKind::Int, "{name}");
            assert!(
                spec.help.contains(&format!("at most {bound}")),
                "the help of {name} must state its bound: {}",
                spec.help
            );
            let at_bound = bound.to_string();
            let beyond = (bound + 1).to_string();
            for (value, ok) in [
                (at_bound.as_str(), true),
                (beyond.as_str(), false),
                ("9223372036854775807", false),
            ] {
                // token_expiry_margin belongs to the outbound client.
                let result = if name == "token_expiry_margin" {
                    let raw = RawOptions::from_pairs(with(&[
                        ("token_endpoint", "https://as.example/token"),
                        (name, value),
                    ]));
                    crate::token_client::TokenClientConfig::from_raw(&raw).map(drop)
                } else {
                    parse(&with(&[
                        ("auth_method", "client_secret_jwt"),
                        ("jwt_algorithm", "HS256"),
                        (name, value),
                    ]))
                    .map(drop)
                };
                match result {
                    Ok(()) => assert!(ok, "{name} = {value} must be refused"),
                    Err(e) => {
                        assert!(!ok, "{name} = {value} must be accepted: {e}");
                        assert_eq!(e.option(), name, "{e}");
                        assert!(e.message().contains(&at_bound), "{e}");
                    }
                }
            }
        }
        // Also when the option is unused by the method in force.
        let e = parse(&with(&[("jwt_bearer_time_out", "9223372036854775807")])).unwrap_err();
        assert_eq!(e.option(), "jwt_bearer_time_out");
    }

    #[test]
    fn debug_hides_secrets() {
        let raw = RawOptions::from_pairs(base());
        assert!(!format!("{raw:?}").contains("s3cret"));
        let c = parse(&base()).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
