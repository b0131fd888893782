//! The shared cache tier for many hosts: memcached (keystonemiddleware's options), Redis
//! (`redis_url`) or Redis Cluster (`redis_cluster_nodes`), behind the in-process tier.
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
//! serving. An operation whose server fails at once (refused, reset) goes on to the key's
//! next server; one that timed out does not wait again.

mod config;
pub(crate) mod memcached;
mod pool;
mod redis_cluster;
mod redis_store;
mod redis_tls;
mod sealing;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::error::ConfigError;

pub(crate) use config::SharedTierConfig;
pub(crate) use memcached::MemcachedStore;
pub(crate) use redis_cluster::RedisClusterStore;
pub(crate) use redis_store::RedisStore;
use sealing::Keys;

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
pub(crate) trait SharedStore: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Stores `value` for `ttl`.
    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String>;
    /// Stores `value` for `ttl` only if `key` holds nothing: true when stored, false when
    /// the key was taken (memcached `add`, Redis `SET NX`).
    fn add(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, String> {
        let _ = (key, value, ttl);
        Err("this store cannot add".into())
    }
    /// Server failures that an operation rode out on another server (so never an `Err`).
    fn failovers(&self) -> u64 {
        0
    }
}

/// The shared tier in use.
pub(crate) struct SharedTier {
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
    pub(crate) fn new(
        config: &SharedTierConfig,
        policy: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let store: Box<dyn SharedStore> = match &config.redis_url {
            Some(url) => Box::new(RedisStore::new(url, config, clock)?),
            None if !config.redis_cluster_nodes.is_empty() => {
                Box::new(RedisClusterStore::new(config, clock)?)
            }
            None => Box::new(MemcachedStore::new(config, clock)),
        };
        Ok(Self::with_store(store, config, policy))
    }

    /// With a given store (tests).
    pub(crate) fn with_store(
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

    /// Failed operations, garbage entries, and server failures ridden out on another server.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors
            .load(Relaxed)
            .saturating_add(self.store.failovers())
    }

    /// The introspection answer stored for `token`, if any and intact.
    pub(crate) fn get(&self, token: &str) -> Option<Map<String, Value>> {
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

    /// Records a DPoP proof id for `ttl` across every host of the tier: `Some(true)` when no
    /// host had it, `Some(false)` for a replay, `None` when the tier cannot say (down).
    pub(crate) fn first_use(&self, proof_id: &[u8; 32], ttl: Duration) -> Option<bool> {
        // Keyed like the entries: a proof's key cannot be computed without the secret.
        let key = self
            .current
            .storage_key(&format!("dpop-jti:{}", hex32(proof_id)));
        match self.store.add(&key, b"1", ttl) {
            Ok(first) => Some(first),
            Err(_) => {
                self.failed();
                None
            }
        }
    }

    /// Stores the answer for `token` for `ttl`.
    pub(crate) fn put(&self, token: &str, claims: &Map<String, Value>, ttl: Duration) {
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
}

fn hex32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::collections::HashMap;
    use std::sync::Mutex;

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
            redis_cluster_nodes: Vec::new(),
            redis_tls: Default::default(),
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
}
