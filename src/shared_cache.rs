//! The shared cache tier for many hosts: memcached (keystonemiddleware's options) or Redis
//! (`redis_url`), behind the in-process tier.
//!
//! What is stored is the AS's introspection answer, so every host re-applies its own checks
//! and mapping on a hit. Entries are plain JSON (`None`, as the reference), authenticated with
//! HMAC-SHA256 (`MAC`) or encrypted with AES-256-GCM (`ENCRYPT`, honoured in any case: the
//! reference silently downgrades lower-case `encrypt` to MAC). Lookup, MAC and encryption keys
//! are derived from `memcache_secret_key`; `memcache_secret_key_fallback` is still read during
//! a rollover. Keys live under `tokenward/v1/`, apart from keystonemiddleware's `tokens/`, so a
//! half-migrated fleet can share one memcached. With several memcached servers each key has
//! one owner by rendezvous (highest random weight) hashing: losing a server moves only its
//! share of the keys, to the next server in each key's order. A server that is down or slow
//! is a miss, never an error for the user, and that server alone is left alone for
//! `memcache_pool_dead_retry` seconds (as keystonemiddleware's pool does); the others keep
//! serving.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hmac, rand};
use serde_json::{Map, Value};

use crate::cache::KeyDeriver;
use crate::clock::Clock;
use crate::config::RawOptions;
use crate::error::ConfigError;
use crate::secret::Secret;

const PREFIX: &str = "tokenward/v1/";
const MAC_TAG: &[u8; 4] = b"TWM1";
const ENC_TAG: &[u8; 4] = b"TWE1";
const MAC_LEN: usize = 32;

/// How shared entries are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Plain JSON.
    None,
    /// HMAC-SHA256 over key and value.
    Mac,
    /// AES-256-GCM with the key as associated data.
    Encrypt,
}

/// A key-value store reachable by every host.
pub trait SharedStore: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Stores `value` for `ttl`.
    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String>;
}

/// Settings of the shared tier, from the one parser.
#[derive(Debug, Clone)]
pub struct SharedTierConfig {
    /// memcached servers (`host:port`).
    pub memcached_servers: Vec<String>,
    /// Redis URL.
    pub redis_url: Option<String>,
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
        if let Some(url) = &redis_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| ConfigError::new("redis_url", format!("is not a URL ({e})")))?;
            if !matches!(parsed.scheme(), "redis" | "redis+unix" | "unix") {
                return Err(ConfigError::new("redis_url", "must be a redis:// URL"));
            }
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
        Ok((!config.memcached_servers.is_empty() || config.redis_url.is_some()).then_some(config))
    }
}
/// Keys derived from one secret.
struct Keys {
    lookup: KeyDeriver,
    mac: hmac::Key,
    aead: LessSafeKey,
}

impl Keys {
    fn derive(secret: Option<&Secret>, policy: &str) -> Self {
        let material = secret.map(|s| s.expose().as_bytes()).unwrap_or_default();
        let lookup_seed = blake3::derive_key("tokenward 2026 shared cache lookup", material);
        let mac = blake3::derive_key("tokenward 2026 shared cache mac", material);
        let enc = blake3::derive_key("tokenward 2026 shared cache aead", material);
        let aead = UnboundKey::new(&AES_256_GCM, &enc).map(LessSafeKey::new);
        Self {
            lookup: KeyDeriver::new(&lookup_seed, policy),
            mac: hmac::Key::new(hmac::HMAC_SHA256, &mac),
            // AES-256 with a 32-byte key cannot fail to construct.
            aead: aead.unwrap_or_else(|_| unreachable!("AES-256-GCM key of 32 bytes")),
        }
    }

    fn storage_key(&self, token: &str) -> String {
        format!("{PREFIX}{:032x}", self.lookup.key(token))
    }
}

/// The shared tier in use.
pub struct SharedTier {
    store: Box<dyn SharedStore>,
    protection: Protection,
    current: Keys,
    fallback: Option<Keys>,
    /// Operations that failed (server down, slow, garbage).
    pub errors: AtomicU64,
    /// Answers found in the tier.
    pub hits: AtomicU64,
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier")
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

impl SharedTier {
    /// Connects lazily: nothing is opened until the first lookup. `clock` times how long a
    /// failing server is left alone.
    pub fn new(
        config: &SharedTierConfig,
        policy: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let store: Box<dyn SharedStore> = match &config.redis_url {
            Some(url) => Box::new(RedisStore::new(url, config, clock)?),
            None => Box::new(MemcachedStore::new(config, clock)),
        };
        Ok(Self::with_store(store, config, policy))
    }

    /// With a given store (tests).
    pub fn with_store(
        store: Box<dyn SharedStore>,
        config: &SharedTierConfig,
        policy: &str,
    ) -> Self {
        Self {
            store,
            protection: config.protection,
            current: Keys::derive(config.secret.as_ref(), policy),
            fallback: config
                .fallback_secret
                .as_ref()
                .map(|s| Keys::derive(Some(s), policy)),
            errors: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    fn failed(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// The introspection answer stored for `token`, if any and intact.
    pub fn get(&self, token: &str) -> Option<Map<String, Value>> {
        for keys in std::iter::once(&self.current).chain(self.fallback.as_ref()) {
            let key = keys.storage_key(token);
            match self.store.get(&key) {
                Ok(Some(raw)) => {
                    if let Some(claims) = self.open(keys, &key, raw) {
                        self.hits.fetch_add(1, Relaxed);
                        return Some(claims);
                    }
                    // A forged, corrupt or foreign entry counts as a miss.
                    self.errors.fetch_add(1, Relaxed);
                }
                Ok(None) => {}
                Err(_) => {
                    self.failed();
                    return None;
                }
            }
        }
        None
    }

    /// Stores the answer for `token` for `ttl`.
    pub fn put(&self, token: &str, claims: &Map<String, Value>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let key = self.current.storage_key(token);
        let Some(sealed) = self.seal(&key, &serde_json::to_vec(claims).unwrap_or_default()) else {
            self.errors.fetch_add(1, Relaxed);
            return;
        };
        if self.store.set(&key, &sealed, ttl).is_err() {
            self.failed();
        }
    }

    fn seal(&self, key: &str, json: &[u8]) -> Option<Vec<u8>> {
        match self.protection {
            Protection::None => Some(json.to_vec()),
            Protection::Mac => {
                let tag = hmac::sign(&self.current.mac, &[key.as_bytes(), json].concat());
                Some([MAC_TAG.as_slice(), tag.as_ref(), json].concat())
            }
            Protection::Encrypt => {
                let mut nonce = [0u8; NONCE_LEN];
                rand::fill(&mut nonce).ok()?;
                let mut data = json.to_vec();
                self.current
                    .aead
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(key.as_bytes()),
                        &mut data,
                    )
                    .ok()?;
                Some([ENC_TAG.as_slice(), &nonce, &data].concat())
            }
        }
    }

    fn open(&self, keys: &Keys, key: &str, raw: Vec<u8>) -> Option<Map<String, Value>> {
        let json = match self.protection {
            Protection::None => raw,
            Protection::Mac => {
                let rest = raw.strip_prefix(MAC_TAG.as_slice())?;
                let (tag, json) = rest.split_at_checked(MAC_LEN)?;
                hmac::verify(&keys.mac, &[key.as_bytes(), json].concat(), tag).ok()?;
                json.to_vec()
            }
            Protection::Encrypt => {
                let rest = raw.strip_prefix(ENC_TAG.as_slice())?;
                let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut data = sealed.to_vec();
                let plain = keys
                    .aead
                    .open_in_place(nonce, Aad::from(key.as_bytes()), &mut data)
                    .ok()?;
                plain.to_vec()
            }
        };
        match crate::strict_json::from_slice(&json).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

/// Connections of one process (a fork makes a fresh set).
struct PerProcess<T> {
    pid: u32,
    items: Vec<T>,
}

impl<T> PerProcess<T> {
    fn new() -> Self {
        Self {
            pid: std::process::id(),
            items: Vec::new(),
        }
    }

    fn take(&mut self) -> Option<T> {
        let pid = std::process::id();
        if self.pid != pid {
            // Sockets inherited across fork() are the parent's: leak, never reuse.
            std::mem::forget(std::mem::take(&mut self.items));
            self.pid = pid;
        }
        self.items.pop()
    }

    fn give(&mut self, item: T, max: usize) {
        if self.pid == std::process::id() && self.items.len() < max {
            self.items.push(item);
        } else {
            std::mem::forget(item);
        }
    }
}

/// Whether one server is left alone after a failure, and until when.
struct ServerHealth {
    dead_until: Mutex<Option<Instant>>,
}

impl ServerHealth {
    fn new() -> Self {
        Self {
            dead_until: Mutex::new(None),
        }
    }

    fn is_available(&self, now: Instant) -> bool {
        let mut dead = self
            .dead_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *dead {
            Some(until) if now < until => false,
            Some(_) => {
                *dead = None;
                true
            }
            None => true,
        }
    }

    fn mark_failed(&self, now: Instant, retry: Duration) {
        *self
            .dead_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = now.checked_add(retry).or(Some(now));
    }
}

/// The rendezvous weight of `server` for `key`: each key's servers, by falling weight, are the
/// order it tries them in, so removing one server moves only the keys it owned.
fn rendezvous_weight(server: &str, key: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(server.len() as u64).to_le_bytes());
    hasher.update(server.as_bytes());
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// memcached over its text protocol, a small pool of buffered connections per server and
/// process. Each request leaves in one write: the `memcache` crate sends a get as four
/// writes (one TCP segment each), which cost ~100 µs per get on loopback; this costs ~20 µs.
pub struct MemcachedStore {
    servers: Vec<String>,
    timeout: Duration,
    pool_size: usize,
    idle: Vec<Mutex<PerProcess<BufReader<TcpStream>>>>,
    health: Vec<ServerHealth>,
    dead_retry: Duration,
    clock: Arc<dyn Clock>,
}

impl MemcachedStore {
    fn new(config: &SharedTierConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            servers: config.memcached_servers.clone(),
            timeout: config.socket_timeout,
            pool_size: config.pool_size as usize,
            idle: config
                .memcached_servers
                .iter()
                .map(|_| Mutex::new(PerProcess::new()))
                .collect(),
            health: config
                .memcached_servers
                .iter()
                .map(|_| ServerHealth::new())
                .collect(),
            dead_retry: config.dead_retry,
            clock,
        }
    }

    /// The server that serves `key` now: the first available one in the key's rendezvous
    /// order. `None` while every server is left alone.
    fn owner(&self, key: &str) -> Option<usize> {
        let now = self.clock.monotonic();
        let mut order: Vec<(u64, usize)> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, server)| (rendezvous_weight(server, key), i))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        order
            .into_iter()
            .map(|(_, i)| i)
            .find(|&i| self.health[i].is_available(now))
    }

    /// Runs one exchange on a pooled connection to the server that owns `key`; a failure
    /// leaves that server alone for `memcache_pool_dead_retry`.
    fn exchange<T>(
        &self,
        key: &str,
        request: &[u8],
        read: impl FnOnce(&mut BufReader<TcpStream>) -> std::io::Result<T>,
    ) -> Result<T, String> {
        let Some(index) = self.owner(key) else {
            return Err("every memcached server is left alone after a failure".into());
        };
        let pooled = self.idle[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut conn = match pooled {
            Some(conn) => Ok(conn),
            None => self.connect(&self.servers[index]),
        };
        let result = match &mut conn {
            Ok(conn) => conn
                .get_mut()
                .write_all(request)
                .and_then(|()| read(conn))
                .map_err(|e| format!("memcached {}: {e}", self.servers[index])),
            Err(e) => Err(e.clone()),
        };
        match (result, conn) {
            (Ok(value), Ok(conn)) => {
                self.idle[index]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .give(conn, self.pool_size);
                Ok(value)
            }
            (Ok(_), Err(e)) | (Err(e), _) => {
                self.health[index].mark_failed(self.clock.monotonic(), self.dead_retry);
                Err(e)
            }
        }
    }

    fn connect(&self, server: &str) -> Result<BufReader<TcpStream>, String> {
        let fail = |e: std::io::Error| format!("memcached {server}: {e}");
        let addr = server
            .to_socket_addrs()
            .map_err(fail)?
            .next()
            .ok_or_else(|| format!("memcached {server}: no address"))?;
        let stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(fail)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(fail)?;
        Ok(BufReader::new(stream))
    }
}

/// The largest value a get may return (entries are introspection answers, far smaller).
pub const MAX_VALUE_LEN: usize = 4 << 20;

fn protocol_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// One line of a memcached reply, at most 512 bytes (a header or a status), `\r\n` included.
fn read_line(conn: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    conn.by_ref().take(512).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(protocol_error("connection closed"));
    }
    if !line.ends_with(b"\r\n") {
        return Err(protocol_error("reply line without CRLF or too long"));
    }
    String::from_utf8(line).map_err(|_| protocol_error("reply line is not UTF-8"))
}

/// Reads memcached's reply to `get <key>`: `END` (a miss) or one `VALUE <key> <flags> <bytes>`
/// block followed by `END`. Anything else — another key, a bad or oversized length, a missing
/// terminator, a closed connection — is an error, so the connection is never reused.
pub fn read_get_reply(conn: &mut impl BufRead, key: &str) -> std::io::Result<Option<Vec<u8>>> {
    let header = read_line(conn)?;
    if header == "END\r\n" {
        return Ok(None);
    }
    let length: usize = match header
        .split_ascii_whitespace()
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["VALUE", k, flags, n] if *k == key && flags.parse::<u32>().is_ok() => {
            n.parse().map_err(|_| protocol_error("bad length"))?
        }
        _ => return Err(protocol_error("unexpected answer to get")),
    };
    if length > MAX_VALUE_LEN {
        return Err(protocol_error("value too large"));
    }
    let mut value = vec![0; length + 2];
    conn.read_exact(&mut value)?;
    if !value.ends_with(b"\r\n") {
        return Err(protocol_error("value not followed by CRLF"));
    }
    value.truncate(length);
    if read_line(conn)? != "END\r\n" {
        return Err(protocol_error("missing END"));
    }
    Ok(Some(value))
}

impl SharedStore for MemcachedStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.exchange(key, format!("get {key}\r\n").as_bytes(), |conn| {
            read_get_reply(conn, key)
        })
    }

    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let secs = ttl.as_secs().clamp(1, 30 * 24 * 3600);
        let mut request = format!("set {key} 0 {secs} {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        self.exchange(key, &request, |conn| match read_line(conn)?.as_str() {
            "STORED\r\n" => Ok(()),
            other => Err(protocol_error(other.trim())),
        })
    }
}

/// Redis through the `redis` crate, a small pool of connections per process.
pub struct RedisStore {
    client: redis::Client,
    timeout: Duration,
    pool_size: usize,
    connections: Mutex<PerProcess<redis::Connection>>,
    health: ServerHealth,
    dead_retry: Duration,
    clock: Arc<dyn Clock>,
}

impl RedisStore {
    fn new(
        url: &str,
        config: &SharedTierConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)
            .map_err(|e| ConfigError::new("redis_url", format!("is not usable ({e})")))?;
        Ok(Self {
            client,
            timeout: config.socket_timeout,
            pool_size: config.pool_size as usize,
            connections: Mutex::new(PerProcess::new()),
            health: ServerHealth::new(),
            dead_retry: config.dead_retry,
            clock,
        })
    }

    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        if !self.health.is_available(self.clock.monotonic()) {
            return Err("redis is left alone after a failure".into());
        }
        let result = self.run(f);
        if result.is_err() {
            self.health
                .mark_failed(self.clock.monotonic(), self.dead_retry);
        }
        result
    }

    fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let pooled = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = self
                    .client
                    .get_connection_with_timeout(self.timeout)
                    .map_err(|e| e.to_string())?;
                c.set_read_timeout(Some(self.timeout))
                    .map_err(|e| e.to_string())?;
                c.set_write_timeout(Some(self.timeout))
                    .map_err(|e| e.to_string())?;
                c
            }
        };
        let result = f(&mut conn).map_err(|e| e.to_string());
        if result.is_ok() {
            self.connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .give(conn, self.pool_size);
        }
        result
    }
}

impl SharedStore for RedisStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.with_connection(|c| redis::cmd("GET").arg(key).query(c))
    }

    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let ms = u64::try_from(ttl.as_millis().max(1)).unwrap_or(u64::MAX);
        self.with_connection(|c| {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ms)
                .query(c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::collections::HashMap;

    #[derive(Default, Clone)]
    struct MapStore(
        Arc<Mutex<HashMap<String, Vec<u8>>>>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    impl SharedStore for MapStore {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            if self.1.load(Relaxed) {
                return Err("down".into());
            }
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8], _: Duration) -> Result<(), String> {
            if self.1.load(Relaxed) {
                return Err("down".into());
            }
            self.0
                .lock()
                .unwrap()
                .insert(key.to_owned(), value.to_vec());
            Ok(())
        }
    }

    fn config(
        protection: Protection,
        secret: Option<&str>,
        fallback: Option<&str>,
    ) -> SharedTierConfig {
        SharedTierConfig {
            memcached_servers: vec!["127.0.0.1:1".into()],
            redis_url: None,
            protection,
            secret: secret.map(Secret::new),
            fallback_secret: fallback.map(Secret::new),
            socket_timeout: Duration::from_secs(1),
            dead_retry: Duration::from_secs(60),
            pool_size: 2,
        }
    }

    fn claims() -> Map<String, Value> {
        serde_json::json!({"active": true, "sub": "alice"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn round_trip_each_protection_and_what_is_stored() {
        for p in [Protection::None, Protection::Mac, Protection::Encrypt] {
            let store = MapStore::default();
            let tier = SharedTier::with_store(
                Box::new(store.clone()),
                &config(p, Some("k1"), None),
                "policy",
            );
            tier.put("raw-token-xyz", &claims(), Duration::from_secs(60));
            assert_eq!(tier.get("raw-token-xyz"), Some(claims()), "{p:?}");
            assert_eq!(tier.get("other"), None);
            let map = store.0.lock().unwrap();
            let (key, value) = map.iter().next().unwrap();
            assert!(key.starts_with("tokenward/v1/") && !key.contains("raw-token"));
            let plain = String::from_utf8_lossy(value).contains("alice");
            assert_eq!(plain, p != Protection::Encrypt, "{p:?}");
        }
    }

    #[test]
    fn tampering_and_wrong_secrets_are_misses() {
        for p in [Protection::Mac, Protection::Encrypt] {
            let store = MapStore::default();
            let tier = SharedTier::with_store(
                Box::new(store.clone()),
                &config(p, Some("k1"), None),
                "policy",
            );
            tier.put("tok", &claims(), Duration::from_secs(60));
            for v in store.0.lock().unwrap().values_mut() {
                let last = v.len() - 1;
                v[last] ^= 1;
            }
            assert_eq!(tier.get("tok"), None);
            assert_eq!(tier.errors.load(Relaxed), 1);
            let other = SharedTier::with_store(
                Box::new(store.clone()),
                &config(p, Some("k2"), None),
                "policy",
            );
            assert_eq!(other.get("tok"), None);
        }
    }

    #[test]
    fn rollover_reads_the_fallback_secret() {
        let store = MapStore::default();
        let old = SharedTier::with_store(
            Box::new(store.clone()),
            &config(Protection::Encrypt, Some("old"), None),
            "p",
        );
        old.put("tok", &claims(), Duration::from_secs(60));
        let new = SharedTier::with_store(
            Box::new(store.clone()),
            &config(Protection::Encrypt, Some("new"), Some("old")),
            "p",
        );
        assert_eq!(new.get("tok"), Some(claims()));
        let no_fallback = SharedTier::with_store(
            Box::new(store),
            &config(Protection::Encrypt, Some("new"), None),
            "p",
        );
        assert_eq!(no_fallback.get("tok"), None);
    }

    #[test]
    fn policy_changes_the_key_and_a_down_store_is_a_counted_miss() {
        let store = MapStore::default();
        let a = SharedTier::with_store(
            Box::new(store.clone()),
            &config(Protection::Mac, Some("k"), None),
            "aud=a",
        );
        let b = SharedTier::with_store(
            Box::new(store.clone()),
            &config(Protection::Mac, Some("k"), None),
            "aud=b",
        );
        a.put("tok", &claims(), Duration::from_secs(60));
        assert_eq!(b.get("tok"), None);
        store.1.store(true, Relaxed);
        assert_eq!(a.get("tok"), None);
        assert_eq!(a.errors.load(Relaxed), 1);
        store.1.store(false, Relaxed);
        assert_eq!(a.get("tok"), Some(claims()));
    }

    /// A reader that hands out at most `step` bytes per read, like a socket under load.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn parse(reply: &[u8], step: usize) -> std::io::Result<Option<Vec<u8>>> {
        let mut reader = BufReader::with_capacity(4, Trickle { data: reply, step });
        read_get_reply(&mut reader, "k1")
    }

    #[test]
    fn get_replies_parse_whatever_the_read_sizes() {
        for step in [1, 2, 3, 7, 4096] {
            assert_eq!(parse(b"END\r\n", step).unwrap(), None, "{step}");
            assert_eq!(
                parse(b"VALUE k1 0 5\r\nhello\r\nEND\r\n", step).unwrap(),
                Some(b"hello".to_vec()),
                "{step}"
            );
            // A value may hold CR, LF and "END" itself: only the length counts.
            assert_eq!(
                parse(b"VALUE k1 7 9\r\nEND\r\na\r\nb\r\nEND\r\n", step).unwrap(),
                Some(b"END\r\na\r\nb".to_vec()),
                "{step}"
            );
            assert_eq!(
                parse(b"VALUE k1 0 0\r\n\r\nEND\r\n", step).unwrap(),
                Some(Vec::new())
            );
        }
    }

    #[test]
    fn bad_get_replies_are_errors_never_panics() {
        let huge = format!("VALUE k1 0 {}\r\n", u128::MAX);
        let over = format!("VALUE k1 0 {}\r\n", MAX_VALUE_LEN + 1);
        let long_line = [b"VALUE k1 0 1".as_slice(), &[b' '; 600], b"\r\n"].concat();
        let cases: Vec<&[u8]> = vec![
            b"",
            b"END",
            b"END\n",
            b"ERROR\r\n",
            b"SERVER_ERROR out of memory\r\n",
            b"VALUE other 0 5\r\nhello\r\nEND\r\n",
            b"VALUE k1 0 -5\r\nhello\r\nEND\r\n",
            b"VALUE k1 x 5\r\nhello\r\nEND\r\n",
            b"VALUE k1 0 5 extra\r\nhello\r\nEND\r\n",
            b"VALUE k1 0 18446744073709551616\r\n",
            huge.as_bytes(),
            over.as_bytes(),
            b"VALUE k1 0 5\r\nhel",
            b"VALUE k1 0 5\r\nhelloXYEND\r\n",
            b"VALUE k1 0 5\r\nhello\r\n",
            b"VALUE k1 0 5\r\nhello\r\nVALUE k1 0 5\r\n",
            b"VALUE k1 0 3\r\n\xff\xfe\xfd\r\nEN\xffD\r\n",
            &long_line,
        ];
        for case in cases {
            for step in [1, 5, 4096] {
                assert!(
                    parse(case, step).is_err(),
                    "{:?} at step {step}",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }

    /// A memcached stand-in on loopback: answers `get` and `set` from a map, counts
    /// connections, and can be told to close every connection at once (a failing server).
    struct ScriptedMemcached {
        address: String,
        connections: Arc<AtomicU64>,
        failing: Arc<std::sync::atomic::AtomicBool>,
        entries: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    }

    impl ScriptedMemcached {
        fn start() -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap().to_string();
            let server = Self {
                address,
                connections: Arc::default(),
                failing: Arc::default(),
                entries: Arc::default(),
            };
            let (connections, failing, entries) = (
                server.connections.clone(),
                server.failing.clone(),
                server.entries.clone(),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    connections.fetch_add(1, Relaxed);
                    let (failing, entries) = (failing.clone(), entries.clone());
                    std::thread::spawn(move || serve(stream, &failing, &entries));
                }
            });
            server
        }
    }

    fn serve(
        stream: TcpStream,
        failing: &std::sync::atomic::AtomicBool,
        entries: &Mutex<HashMap<String, Vec<u8>>>,
    ) {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || failing.load(Relaxed) {
                return;
            }
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let reply = match words.as_slice() {
                ["get", key] => match entries.lock().unwrap().get(*key) {
                    Some(v) => [
                        format!("VALUE {key} 0 {}\r\n", v.len()).as_bytes(),
                        v,
                        b"\r\nEND\r\n",
                    ]
                    .concat(),
                    None => b"END\r\n".to_vec(),
                },
                ["set", key, _, _, n] => {
                    let mut value = vec![0; n.parse::<usize>().unwrap() + 2];
                    reader.read_exact(&mut value).unwrap();
                    value.truncate(value.len() - 2);
                    entries.lock().unwrap().insert((*key).to_owned(), value);
                    b"STORED\r\n".to_vec()
                }
                _ => b"ERROR\r\n".to_vec(),
            };
            if writer.write_all(&reply).is_err() {
                return;
            }
        }
    }

    fn fleet(servers: &[&ScriptedMemcached], clock: Arc<ManualClock>) -> MemcachedStore {
        let mut cfg = config(Protection::None, None, None);
        cfg.memcached_servers = servers.iter().map(|s| s.address.clone()).collect();
        cfg.dead_retry = Duration::from_secs(300);
        MemcachedStore::new(&cfg, clock)
    }

    #[test]
    fn one_failing_server_is_left_alone_and_the_others_keep_serving() {
        let (a, b) = (ScriptedMemcached::start(), ScriptedMemcached::start());
        let clock = Arc::new(ManualClock::starting_now());
        let store = fleet(&[&a, &b], clock.clone());
        let keys: Vec<String> = (0..64).map(|i| format!("key-{i}")).collect();
        for key in &keys {
            store
                .set(key, key.as_bytes(), Duration::from_secs(60))
                .unwrap();
        }
        let on_a = a.entries.lock().unwrap().len();
        let on_b = b.entries.lock().unwrap().len();
        assert_eq!(on_a + on_b, keys.len());
        assert!(on_a > 8 && on_b > 8, "both servers own keys: {on_a}/{on_b}");

        b.failing.store(true, Relaxed);
        let (b_keys, a_keys): (Vec<&String>, Vec<&String>) = keys
            .iter()
            .partition(|k| b.entries.lock().unwrap().contains_key(*k));
        // The first request to b fails; from then on b is left alone: its keys miss without
        // a connection attempt, a's keys keep hitting.
        assert!(store.get(b_keys[0]).is_err());
        let b_connections = b.connections.load(Relaxed);
        for key in &a_keys {
            assert_eq!(store.get(key).unwrap(), Some(key.as_bytes().to_vec()));
        }
        for key in &b_keys[1..] {
            assert_eq!(store.get(key).unwrap(), None, "moved to a, not there yet");
        }
        assert_eq!(b.connections.load(Relaxed), b_connections, "b left alone");

        // After memcache_pool_dead_retry b is tried again, and serves once it is back.
        b.failing.store(false, Relaxed);
        clock.advance(Duration::from_secs(299));
        assert_eq!(store.get(b_keys[1]).unwrap(), None);
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            store.get(b_keys[1]).unwrap(),
            Some(b_keys[1].as_bytes().to_vec())
        );
        assert!(b.connections.load(Relaxed) > b_connections);
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let servers = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"];
        let owner = |set: &[&str], key: &str| {
            set.iter()
                .copied()
                .max_by_key(|s| rendezvous_weight(s, key))
                .unwrap()
                .to_owned()
        };
        let mut moved = 0;
        let mut share = [0usize; 3];
        for i in 0..3000 {
            let key = format!("tokenward/v1/{i:032x}");
            let before = owner(&servers, &key);
            let after = owner(&[servers[0], servers[2]], &key);
            share[servers.iter().position(|s| *s == before).unwrap()] += 1;
            if before != servers[1] {
                assert_eq!(before, after, "a key not owned by the removed server moved");
            } else {
                moved += 1;
            }
        }
        assert_eq!(moved, share[1]);
        for n in share {
            assert!((700..1300).contains(&n), "uneven shares {share:?}");
        }
    }
}
