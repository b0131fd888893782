//! The memcached client (text protocol, one write per request, rendezvous hashing over the
//! servers) and its reply parser.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::pool::{PerProcess, ServerHealth};
use super::{SharedStore, SharedTierConfig};
use crate::clock::Clock;

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
pub(crate) struct MemcachedStore {
    servers: Vec<String>,
    timeout: Duration,
    pool_size: usize,
    idle: Vec<Mutex<PerProcess<BufReader<TcpStream>>>>,
    health: Vec<ServerHealth>,
    dead_retry: Duration,
    clock: Arc<dyn Clock>,
    failovers: AtomicU64,
}

impl MemcachedStore {
    pub(super) fn new(config: &SharedTierConfig, clock: Arc<dyn Clock>) -> Self {
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
            failovers: AtomicU64::new(0),
        }
    }

    /// Every server by falling rendezvous weight for `key`: the order it tries them in.
    fn order(&self, key: &str) -> Vec<usize> {
        let mut order: Vec<(u64, usize)> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, server)| (rendezvous_weight(server, key), i))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        order.into_iter().map(|(_, i)| i).collect()
    }

    /// Runs one exchange for `key` on the first available server in its rendezvous order.
    /// A server that fails is left alone for `memcache_pool_dead_retry`; when it failed fast
    /// (refused, reset, closed) the key's next server is tried at once, so a crashed owner
    /// costs no miss. A timed-out server is not followed by another wait.
    fn exchange<T>(
        &self,
        key: &str,
        request: &[u8],
        read: impl Fn(&mut BufReader<TcpStream>) -> std::io::Result<T>,
    ) -> Result<T, String> {
        let now = self.clock.monotonic();
        let mut failure = None;
        for index in self.order(key) {
            if !self.health[index].is_available(now) {
                continue;
            }
            match self.on_server(index, request, &read) {
                Ok(value) => {
                    if failure.is_some() {
                        self.failovers.fetch_add(1, Relaxed);
                    }
                    return Ok(value);
                }
                Err(e) => {
                    self.idle[index]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clear();
                    self.health[index].mark_failed(self.clock.monotonic(), self.dead_retry);
                    let timed_out = e.timed_out;
                    if failure.replace(e.message).is_some() || timed_out {
                        break;
                    }
                }
            }
        }
        Err(failure
            .unwrap_or_else(|| "every memcached server is left alone after a failure".into()))
    }

    /// One exchange with server `index`: on an idle connection if there is one, else (or
    /// when the idle one turns out closed, as after a server restart) on a new one.
    fn on_server<T>(
        &self,
        index: usize,
        request: &[u8],
        read: &impl Fn(&mut BufReader<TcpStream>) -> std::io::Result<T>,
    ) -> Result<T, Failure> {
        let server = &self.servers[index];
        let pooled = self.idle[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let attempt = |conn: &mut BufReader<TcpStream>| {
            conn.get_mut()
                .write_all(request)
                .and_then(|()| read(conn))
                .map_err(|e| Failure::io(server, &e))
        };
        if let Some(mut conn) = pooled {
            match attempt(&mut conn) {
                Ok(value) => {
                    self.give_back(index, conn);
                    return Ok(value);
                }
                Err(e) if e.timed_out => return Err(e),
                Err(_) => {}
            }
        }
        let mut conn = self.connect(server)?;
        let value = attempt(&mut conn)?;
        self.give_back(index, conn);
        Ok(value)
    }

    fn give_back(&self, index: usize, conn: BufReader<TcpStream>) {
        self.idle[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give(conn, self.pool_size);
    }

    fn connect(&self, server: &str) -> Result<BufReader<TcpStream>, Failure> {
        let fail = |e: std::io::Error| Failure::io(server, &e);
        let addr = server
            .to_socket_addrs()
            .map_err(fail)?
            .next()
            .ok_or_else(|| Failure {
                message: format!("memcached {server}: no address"),
                timed_out: false,
            })?;
        let stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(fail)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(fail)?;
        Ok(BufReader::new(stream))
    }
}

/// Why an exchange with one server failed.
struct Failure {
    message: String,
    /// The server did not answer in time (as opposed to refusing or closing at once).
    timed_out: bool,
}

impl Failure {
    fn io(server: &str, e: &std::io::Error) -> Self {
        Self {
            message: format!("memcached {server}: {e}"),
            timed_out: matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
        }
    }
}

/// The largest value a get may return (entries are introspection answers, far smaller).
pub(crate) const MAX_VALUE_LEN: usize = 4 << 20;

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
pub(crate) fn read_get_reply(
    conn: &mut impl BufRead,
    key: &str,
) -> std::io::Result<Option<Vec<u8>>> {
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

    fn failovers(&self) -> u64 {
        self.failovers.load(Relaxed)
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

    fn add(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, String> {
        let secs = ttl.as_secs().clamp(1, 30 * 24 * 3600);
        let mut request = format!("add {key} 0 {secs} {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        self.exchange(key, &request, |conn| match read_line(conn)?.as_str() {
            "STORED\r\n" => Ok(true),
            "NOT_STORED\r\n" => Ok(false),
            other => Err(protocol_error(other.trim())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::shared_cache::Protection;
    use std::collections::HashMap;

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
        open: Arc<Mutex<Vec<TcpStream>>>,
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
                open: Arc::default(),
            };
            let (connections, failing, entries, open) = (
                server.connections.clone(),
                server.failing.clone(),
                server.entries.clone(),
                server.open.clone(),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    connections.fetch_add(1, Relaxed);
                    open.lock().unwrap().push(stream.try_clone().unwrap());
                    let (failing, entries) = (failing.clone(), entries.clone());
                    std::thread::spawn(move || {
                        let keep = stream.try_clone().unwrap();
                        serve(stream, &failing, &entries);
                        // The clone in `open` would keep the socket open.
                        let _ = keep.shutdown(std::net::Shutdown::Both);
                    });
                }
            });
            server
        }

        /// Closes every connection, as a restart does.
        fn close_connections(&self) {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
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
        let mut cfg = SharedTierConfig {
            memcached_servers: Vec::new(),
            redis_url: None,
            redis_cluster_nodes: Vec::new(),
            redis_tls: Default::default(),
            protection: Protection::None,
            secret: None,
            fallback_secret: None,
            socket_timeout: Duration::from_secs(1),
            dead_retry: Duration::from_secs(60),
            pool_size: 2,
        };
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
        // The first request to b fails at once (closed) and goes on to the key's next server,
        // a: a miss there, not an error. From then on b is left alone: its keys go to a
        // without a connection attempt to b, a's keys keep hitting.
        assert_eq!(store.get(b_keys[0]).unwrap(), None);
        assert_eq!(store.failovers(), 1);
        let b_connections = b.connections.load(Relaxed);
        for key in &a_keys {
            assert_eq!(store.get(key).unwrap(), Some(key.as_bytes().to_vec()));
        }
        for key in &b_keys[1..] {
            assert_eq!(store.get(key).unwrap(), None, "moved to a, not there yet");
        }
        assert_eq!(b.connections.load(Relaxed), b_connections, "b left alone");
        let on_a = a.entries.lock().unwrap().len();
        store
            .set(b_keys[2], b"moved", Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            a.entries.lock().unwrap().len(),
            on_a + 1,
            "b's key stored on a"
        );
        assert_eq!(store.get(b_keys[2]).unwrap(), Some(b"moved".to_vec()));

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
    fn idle_connections_closed_by_a_restart_are_replaced_not_a_failure() {
        let a = ScriptedMemcached::start();
        let clock = Arc::new(ManualClock::starting_now());
        let store = fleet(&[&a], clock);
        store.set("k", b"v", Duration::from_secs(60)).unwrap();
        assert_eq!(a.connections.load(Relaxed), 1);
        a.close_connections();
        assert_eq!(store.get("k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(a.connections.load(Relaxed), 2, "a new connection");
        assert_eq!(
            store.get("k").unwrap(),
            Some(b"v".to_vec()),
            "a not left alone"
        );
        assert_eq!(a.connections.load(Relaxed), 2, "the new one is kept");
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
