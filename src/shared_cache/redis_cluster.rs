//! Redis Cluster (`redis_cluster_nodes`) through the `redis` crate's cluster client: each key
//! goes to the master of its hash slot, the slot map read from any seed node.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection, Connect};
use redis::{ConnectionLike, IntoConnectionInfo, RedisResult, Value};

use super::pool::{PerProcess, ServerHealth};
use super::{SharedStore, SharedTierConfig};
use crate::clock::Clock;
use crate::error::ConfigError;

/// A node connection whose reads and writes are all bounded by the socket timeout. The
/// cluster client sends a PING on each new node connection before it applies its own
/// timeouts, and clears the write timeout; with `redis::Connection` a node that accepts and
/// never answers would hold the request forever.
pub(super) struct Bounded {
    conn: redis::Connection,
    timeout: Duration,
}

impl ConnectionLike for Bounded {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.conn.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.conn.check_connection()
    }

    fn is_open(&self) -> bool {
        self.conn.is_open()
    }
}

impl Connect for Bounded {
    fn connect<T: IntoConnectionInfo>(info: T, timeout: Option<Duration>) -> RedisResult<Self> {
        // The cluster client always passes its connection timeout, set to the socket timeout.
        let timeout = timeout.unwrap_or(Duration::from_secs(3));
        let conn = <redis::Connection as Connect>::connect(info, Some(timeout))?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(Self { conn, timeout })
    }

    fn send_packed_command(&mut self, cmd: &[u8]) -> RedisResult<()> {
        self.conn.send_packed_command(cmd)
    }

    fn set_write_timeout(&self, dur: Option<Duration>) -> RedisResult<()> {
        self.conn.set_write_timeout(dur.or(Some(self.timeout)))
    }

    fn set_read_timeout(&self, dur: Option<Duration>) -> RedisResult<()> {
        self.conn.set_read_timeout(dur.or(Some(self.timeout)))
    }

    fn recv_response(&mut self) -> RedisResult<Value> {
        self.conn.recv_response()
    }
}

/// Redis Cluster, a small pool of cluster connections (one per node each) per process. Each
/// operation makes one attempt: no retry loop, no reconnect storm, every I/O bounded by the
/// socket timeout. A failure leaves the whole cluster alone for `memcache_pool_dead_retry`
/// (a master lost without a replica stops the cluster anyway: CLUSTERDOWN); a MOVED or ASK
/// redirect (resharding) is a miss that makes the next operation read the slot map again.
pub(crate) struct RedisClusterStore {
    client: ClusterClient,
    pool_size: usize,
    connections: Mutex<PerProcess<ClusterConnection<Bounded>>>,
    health: ServerHealth,
    dead_retry: Duration,
    clock: Arc<dyn Clock>,
}

impl RedisClusterStore {
    pub(super) fn new(
        config: &SharedTierConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let mut builder =
            ClusterClientBuilder::new(config.redis_cluster_nodes.iter().map(String::as_str))
                .connection_timeout(config.socket_timeout)
                .response_timeout(config.socket_timeout)
                .retries(0);
        if let Some(certificates) = super::redis_tls::load(&config.redis_tls)? {
            builder = builder.certs(certificates);
        }
        let client = builder
            .build()
            .map_err(|e| ConfigError::new("redis_cluster_nodes", format!("is not usable ({e})")))?;
        Ok(Self {
            client,
            pool_size: config.pool_size as usize,
            connections: Mutex::new(PerProcess::new()),
            health: ServerHealth::new(),
            dead_retry: config.dead_retry,
            clock,
        })
    }

    /// Runs `f` on an idle cluster connection, or on a new one when there is none or the idle
    /// one turns out closed (a node restart).
    fn with_connection<T>(
        &self,
        f: impl Fn(&mut ClusterConnection<Bounded>) -> RedisResult<T>,
    ) -> Result<T, String> {
        if !self.health.is_available(self.clock.monotonic()) {
            return Err("the Redis Cluster is left alone after a failure".into());
        }
        let pooled = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut conn) = pooled {
            match f(&mut conn) {
                Ok(value) => return Ok(self.give_back(conn, value)),
                Err(e) if e.redirect_node().is_some() => return Err(e.to_string()),
                Err(e) if e.is_timeout() => return Err(self.failed(&e)),
                Err(_) => {}
            }
        }
        let mut conn = self.connect().map_err(|e| self.failed(&e))?;
        match f(&mut conn) {
            Ok(value) => Ok(self.give_back(conn, value)),
            Err(e) if e.redirect_node().is_some() => Err(e.to_string()),
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn give_back<T>(&self, conn: ClusterConnection<Bounded>, value: T) -> T {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give(conn, self.pool_size);
        value
    }

    fn connect(&self) -> RedisResult<ClusterConnection<Bounded>> {
        let conn = self.client.get_generic_connection::<Bounded>()?;
        conn.set_auto_reconnect(false);
        Ok(conn)
    }

    /// Leaves the cluster alone and drops the idle connections (one of their nodes failed).
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

impl SharedStore for RedisClusterStore {
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
    use crate::shared_cache::Protection;

    /// A seed that answers the connection set-up (`+OK` to each command) and then never
    /// answers the cluster client's PING: the wait a plain `redis::Connection` would not bound.
    fn seed_that_hangs_on_ping() -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        let chunk = &buf[..n];
                        if chunk.windows(4).any(|w| w == b"PING") {
                            std::thread::sleep(Duration::from_secs(30));
                            return;
                        }
                        let commands = chunk
                            .iter()
                            .enumerate()
                            .filter(|&(i, &c)| c == b'*' && (i == 0 || chunk[i - 1] == b'\n'))
                            .count();
                        if stream.write_all(&b"+OK\r\n".repeat(commands)).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    #[test]
    fn a_seed_that_stops_answering_costs_one_bounded_wait() {
        let seed = seed_that_hangs_on_ping();
        let config = SharedTierConfig {
            memcached_servers: Vec::new(),
            redis_url: None,
            redis_cluster_nodes: vec![format!("redis://{seed}")],
            redis_tls: Default::default(),
            protection: Protection::None,
            secret: None,
            fallback_secret: None,
            socket_timeout: Duration::from_millis(300),
            dead_retry: Duration::from_secs(60),
            pool_size: 2,
        };
        let clock = Arc::new(ManualClock::starting_now());
        let store = RedisClusterStore::new(&config, clock).unwrap();
        let started = std::time::Instant::now();
        assert!(store.get("k").is_err());
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        let started = std::time::Instant::now();
        assert!(store.set("k", b"v", Duration::from_secs(1)).is_err());
        assert!(started.elapsed() < Duration::from_millis(50), "left alone");
    }
}
