//! The one configuration parser: a flat map of option names to string values, as a paste
//! section, an oslo.config group, the C builder and the tests all give it.
//!
//! Every option of keystonemiddleware's `[ext_oauth2_auth]` group keeps its name and meaning;
//! [`crate::options::OPTIONS`] lists them with tokenward's additions. Values are strings; an
//! empty value counts as unset (as in the reference). A value that can never work is an error
//! naming the option.

use std::time::Duration;

use crate::claims::MappingConfig;
use crate::client_config::ClientConfig;
use crate::dpop::{DpopConfig, DpopMode};
use crate::error::ConfigError;
use crate::jwks::KeySource;
use crate::jwt::{Algorithm, HeaderPolicy};
use crate::options::{RawOptions, check_url};
use crate::proxy_cert::{HeaderFormat, ProxyCertConfig};
use crate::shared_cache::SharedTierConfig;

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
        // validation = keystone with bearer_validation: OAuth bearer tokens too, checked as
        // that validation checks them (the options of that mode are then required).
        let bearer = match raw.choice("bearer_validation")? {
            Some("jwt") => Some(Validation::Jwt),
            Some("jwt_or_introspection") => Some(Validation::JwtOrIntrospection),
            Some(_) => Some(Validation::Introspection),
            None => None,
        };
        let validation = match (bearer, &keystone) {
            (Some(bearer), Some(_)) => bearer,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "bearer_validation",
                    "is used only with validation = keystone (OAuth bearer tokens beside Keystone tokens)",
                ));
            }
            (None, _) => validation,
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
            (_, Some(ks)) if validation == Validation::Keystone => (
                String::new(),
                ks.www_authenticate_uri.clone(),
                ClientConfig::transport_only(raw)?,
            ),
            (Some(jwt), _) if validation == Validation::Jwt => (
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
        let mapping = match validation {
            Validation::Keystone => MappingConfig::unused(),
            _ => MappingConfig::from_raw(raw)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_config::AuthMethod;
    use crate::options::{OptionKind, SECONDS_BOUNDS, option};

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
