//! The shared tier's options, read from the one parser.

use std::path::PathBuf;
use std::time::Duration;

use super::Protection;
use crate::error::ConfigError;
use crate::options::RawOptions;
use crate::secret::Secret;

/// Settings of the shared tier, from the one parser.
#[derive(Debug, Clone)]
pub struct SharedTierConfig {
    /// memcached servers (`host:port`).
    pub memcached_servers: Vec<String>,
    /// Redis URL.
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes, as URLs.
    pub redis_cluster_nodes: Vec<String>,
    /// TLS files for `rediss://`.
    pub redis_tls: RedisTlsFiles,
    /// Entry protection.
    pub protection: Protection,
    /// Current secret.
    pub secret: Option<Secret>,
    /// Previous secret, still read.
    pub fallback_secret: Option<Secret>,
    /// Socket timeout for one operation.
    pub socket_timeout: Duration,
    /// How long a failing server is skipped.
    pub dead_retry: Duration,
    /// Connections kept per server.
    pub pool_size: u32,
}

/// `redis_cafile`, `redis_certfile`, `redis_keyfile`: read and checked when the tier starts.
#[derive(Debug, Clone, Default)]
pub struct RedisTlsFiles {
    /// CA bundle that verifies the server (else the system roots).
    pub cafile: Option<PathBuf>,
    /// Client certificate chain (may also hold the key).
    pub certfile: Option<PathBuf>,
    /// Client key.
    pub keyfile: Option<PathBuf>,
}

impl RedisTlsFiles {
    /// The first option set, if any.
    fn first_set(&self) -> Option<&'static str> {
        [
            ("redis_cafile", &self.cafile),
            ("redis_certfile", &self.certfile),
            ("redis_keyfile", &self.keyfile),
        ]
        .into_iter()
        .find_map(|(name, v)| v.is_some().then_some(name))
    }
}

/// Checks a Redis URL given in `option`; true when it asks for TLS (`rediss://`).
pub(super) fn check_redis_url(option: &'static str, url: &str) -> Result<bool, ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ConfigError::new(option, format!("is not a URL ({e})")))?;
    if parsed.fragment().is_some() {
        // The redis crate reads `#insecure` as "skip certificate checks": never.
        return Err(ConfigError::new(
            option,
            "must not have a #fragment (certificate checks cannot be turned off; set redis_cafile)",
        ));
    }
    match parsed.scheme() {
        "redis" | "redis+unix" | "unix" => Ok(false),
        "rediss" => Ok(true),
        _ => Err(ConfigError::new(
            option,
            "must be a redis:// or rediss:// URL",
        )),
    }
}

/// `redis_cluster_nodes` as URLs (`host:port` is `redis://host:port`), all of one scheme;
/// true when that is `rediss://`.
fn cluster_nodes(raw: &RawOptions) -> Result<(Vec<String>, bool), ConfigError> {
    const OPTION: &str = "redis_cluster_nodes";
    let mut nodes = Vec::new();
    let mut schemes = Vec::new();
    for entry in raw.list(OPTION) {
        let url = if entry.contains("://") {
            entry
        } else {
            let ok = entry
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError::new(
                    OPTION,
                    format!("entry {entry:?} is neither host:port nor a URL"),
                ));
            }
            format!("redis://{entry}")
        };
        let tls = check_redis_url(OPTION, &url)?;
        // A cluster is reached over TCP only: no unix sockets.
        if !tls && !url.to_ascii_lowercase().starts_with("redis://") {
            return Err(ConfigError::new(
                OPTION,
                format!("entry {url:?} is not a redis:// or rediss:// URL"),
            ));
        }
        nodes.push(url);
        schemes.push(tls);
    }
    if schemes.windows(2).any(|w| w[0] != w[1]) {
        return Err(ConfigError::new(
            OPTION,
            "mixes redis:// and rediss:// nodes",
        ));
    }
    Ok((nodes, schemes.first().copied().unwrap_or(false)))
}

impl SharedTierConfig {
    /// Reads the memcache options and `redis_url`; `None` when no shared tier is configured.
    pub fn from_raw(raw: &RawOptions) -> Result<Option<Self>, ConfigError> {
        let mut memcached_servers = raw.list("memcached_servers");
        if memcached_servers.is_empty() {
            memcached_servers = raw.list("memcache_servers");
        }
        for server in &memcached_servers {
            let ok = server
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError::new(
                    "memcached_servers",
                    format!("entry {server:?} is not host:port"),
                ));
            }
        }
        let redis_url = raw.string("redis_url");
        let mut tls = match &redis_url {
            Some(url) => check_redis_url("redis_url", url)?,
            None => false,
        };
        let (redis_cluster_nodes, cluster_tls) = cluster_nodes(raw)?;
        if !redis_cluster_nodes.is_empty() {
            if redis_url.is_some() || !memcached_servers.is_empty() {
                return Err(ConfigError::new(
                    "redis_cluster_nodes",
                    "cannot be set with redis_url or memcached_servers",
                ));
            }
            tls = cluster_tls;
        }
        let redis_tls = RedisTlsFiles {
            cafile: raw.path("redis_cafile"),
            certfile: raw.path("redis_certfile"),
            keyfile: raw.path("redis_keyfile"),
        };
        if redis_tls.keyfile.is_some() && redis_tls.certfile.is_none() {
            return Err(ConfigError::new(
                "redis_certfile",
                "is required when redis_keyfile is set",
            ));
        }
        if let Some(name) = redis_tls.first_set()
            && !tls
        {
            return Err(ConfigError::new(
                name,
                "is only used with a rediss:// redis_url or redis_cluster_nodes",
            ));
        }
        let protection = match raw.choice("memcache_security_strategy")?.unwrap_or("None") {
            "MAC" => Protection::Mac,
            "ENCRYPT" => Protection::Encrypt,
            _ => Protection::None,
        };
        let secret = raw.secret("memcache_secret_key");
        if protection != Protection::None && secret.is_none() {
            return Err(ConfigError::new(
                "memcache_secret_key",
                "is required by memcache_security_strategy = MAC or ENCRYPT",
            ));
        }
        if !memcached_servers.is_empty() && redis_url.is_some() {
            return Err(ConfigError::new(
                "redis_url",
                "and memcached_servers cannot both be set",
            ));
        }
        let secs = |name: &'static str, default: i64| -> Result<Duration, ConfigError> {
            let n = raw.secs(name)?.unwrap_or(default);
            if n < 0 {
                return Err(ConfigError::new(name, "must not be negative"));
            }
            Ok(Duration::from_secs(n.unsigned_abs()))
        };
        let pool_size = raw
            .int("memcache_pool_maxsize")?
            .unwrap_or(10)
            .clamp(1, 1024);
        let config = Self {
            memcached_servers,
            redis_url,
            redis_cluster_nodes,
            redis_tls,
            protection,
            secret,
            fallback_secret: raw.secret("memcache_secret_key_fallback"),
            socket_timeout: secs("memcache_pool_socket_timeout", 3)?.max(Duration::from_millis(50)),
            dead_retry: secs("memcache_pool_dead_retry", 300)?,
            pool_size: u32::try_from(pool_size).unwrap_or(10),
        };
        raw.bool("memcache_use_advanced_pool")?;
        secs("memcache_pool_conn_get_timeout", 10)?;
        secs("memcache_pool_unused_timeout", 60)?;
        // Every value is checked even without a shared tier: a typo fails at start-up.
        let any = !config.memcached_servers.is_empty()
            || config.redis_url.is_some()
            || !config.redis_cluster_nodes.is_empty();
        Ok(any.then_some(config))
    }
}
