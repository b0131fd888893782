//! The Redis store through the `redis` crate.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::pool::{PerProcess, ServerHealth};
use super::{SharedStore, SharedTierConfig};
use crate::clock::Clock;
use crate::error::ConfigError;

/// Redis through the `redis` crate, a small pool of connections per process.
pub(crate) struct RedisStore {
    client: redis::Client,
    timeout: Duration,
    pool_size: usize,
    connections: Mutex<PerProcess<redis::Connection>>,
    health: ServerHealth,
    dead_retry: Duration,
    clock: Arc<dyn Clock>,
}

impl RedisStore {
    pub(super) fn new(
        url: &str,
        config: &SharedTierConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let client = match super::redis_tls::load(&config.redis_tls)? {
            Some(certificates) => redis::Client::build_with_tls(url, certificates),
            None => redis::Client::open(url),
        }
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

    /// Runs `f` on an idle connection, or on a new one when there is none or the idle one
    /// turns out closed (a server restart); a failure leaves Redis alone for
    /// `memcache_pool_dead_retry` and drops the idle connections.
    fn with_connection<T>(
        &self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        if !self.health.is_available(self.clock.monotonic()) {
            return Err("redis is left alone after a failure".into());
        }
        let pooled = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut conn) = pooled {
            match f(&mut conn) {
                Ok(value) => return Ok(self.give_back(conn, value)),
                Err(e) if e.is_timeout() => return Err(self.failed(&e)),
                Err(_) => {}
            }
        }
        let mut conn = self.connect().map_err(|e| self.failed(&e))?;
        match f(&mut conn) {
            Ok(value) => Ok(self.give_back(conn, value)),
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(self.timeout)?;
        conn.set_read_timeout(Some(self.timeout))?;
        conn.set_write_timeout(Some(self.timeout))?;
        Ok(conn)
    }

    fn give_back<T>(&self, conn: redis::Connection, value: T) -> T {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give(conn, self.pool_size);
        value
    }

    fn failed(&self, e: &redis::RedisError) -> String {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.health
            .mark_failed(self.clock.monotonic(), self.dead_retry);
        e.to_string()
    }
}

impl SharedStore for RedisStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.with_connection(|c| redis::cmd("GET").arg(key).query(c))
    }

    fn add(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, String> {
        let ms = u64::try_from(ttl.as_millis().max(1)).unwrap_or(u64::MAX);
        let stored: Option<String> = self.with_connection(|c| {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query(c)
        })?;
        Ok(stored.is_some())
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
