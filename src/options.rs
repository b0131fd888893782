//! The option table and the raw option map: every option tokenward understands (name, kind,
//! default, origin, help) and the flat name → text map that a paste section, an oslo.config
//! group, the C builder and the tests all give. The typed configs (the filter's config and the
//! modules that own one) read from it; this module imports none of them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::ConfigError;
use crate::proxy_cert::HeaderFormat;
use crate::secret::Secret;

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
    opt("bearer_validation", Choice(&["introspection", "jwt", "jwt_or_introspection"]), None, Tw, "validation = keystone: also accept OAuth bearer tokens (Authorization) on requests without X-Auth-Token, checked as that validation checks them, with its options (introspect_endpoint, client_id, mapping_*, ...); unset: Keystone tokens only"),
    opt("www_authenticate_uri", Str, None, Kat, "the public identity endpoint sent in `WWW-Authenticate: Keystone uri=...` with a 401 (default: auth_url)"),
    opt("auth_url", Str, None, Kat, "the identity API: with v3tokenlessauth the versioned endpoint itself (…/v3); with the other plugins an unversioned one is looked up in Keystone's version document (once, at the first token request)"),
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
pub(crate) const SECONDS_BOUNDS: &[(&str, i64)] = &[
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
pub(crate) fn seconds_bound(name: &str) -> Option<i64> {
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
pub(crate) fn option(name: &str) -> Option<&'static OptionSpec> {
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

    pub(crate) fn text(&self, name: &'static str) -> Option<&str> {
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
