//! The verdict cache: bounded (quick_cache, S3-FIFO-style eviction, O(1) get/insert), keyed
//! by a keyed BLAKE3 hash of the token (never the token), with per-entry lifetimes, plus
//! single-flight so that concurrent misses on one token make one introspection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A cache key: 128 bits of a keyed hash of the token.
pub type CacheKey = u128;

/// Derives cache keys from tokens with a key that also binds the policy inputs.
#[derive(Clone)]
pub struct KeyDeriver {
    key: [u8; 32],
}

impl std::fmt::Debug for KeyDeriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDeriver(***)")
    }
}

impl KeyDeriver {
    /// A deriver whose key mixes `seed` (random per process, or a shared secret for a shared
    /// tier) with `policy` (endpoint, client, required audience/issuer/scope...).
    pub fn new(seed: &[u8], policy: &str) -> Self {
        let mut material = Vec::with_capacity(seed.len() + policy.len() + 1);
        material.extend_from_slice(seed);
        material.push(0);
        material.extend_from_slice(policy.as_bytes());
        Self {
            key: blake3::derive_key("tokenward 2026 verdict cache key", &material),
        }
    }

    /// The key for a token.
    pub fn key(&self, token: &str) -> CacheKey {
        let hash = blake3::keyed_hash(&self.key, token.as_bytes());
        let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().unwrap_or_default();
        u128::from_le_bytes(bytes)
    }
}

/// A stored value and when it stops being usable.
#[derive(Clone)]
struct Slot<V> {
    value: V,
    until: Instant,
}

/// Counts evictions (entries dropped to stay within the bound).
#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl<K, V> quick_cache::Lifecycle<K, V> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: K, _: V) {
        self.0.fetch_add(1, Relaxed);
    }
}

type Store<V> = quick_cache::sync::Cache<
    CacheKey,
    Slot<V>,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    CountEvictions,
>;

/// A bounded map of verdicts with per-entry lifetimes.
pub struct VerdictCache<V: Clone> {
    entries: Store<V>,
    evictions: CountEvictions,
    flights: Mutex<HashMap<CacheKey, Arc<Flight<V>>>>,
}

impl<V: Clone> std::fmt::Debug for VerdictCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("len", &self.entries.len())
            .finish()
    }
}

/// The outcome of [`VerdictCache::get_or_compute`].
pub enum Fetched<V, E> {
    /// Computed here (this thread led the flight).
    Computed(Result<V, E>),
    /// Another thread's flight finished while this one waited.
    Shared(Result<V, E>),
}

struct Flight<V> {
    result: Mutex<Option<Result<V, String>>>,
    done: Condvar,
}

impl<V: Clone> VerdictCache<V> {
    /// A cache sized for `capacity` entries. The store is sharded and each shard evicts on
    /// its own, so it gets 10 % slack: `capacity` random tokens then fit without early
    /// evictions, and the bound is about `capacity * 1.1 + 16`.
    pub fn new(capacity: usize) -> Self {
        let sized = capacity
            .max(1)
            .saturating_add(capacity / 10)
            .saturating_add(16);
        let evictions = CountEvictions::default();
        Self {
            entries: quick_cache::sync::Cache::with(
                sized,
                sized as u64,
                quick_cache::UnitWeighter,
                quick_cache::DefaultHashBuilder::default(),
                evictions.clone(),
            ),
            evictions,
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key` if present and not past its lifetime.
    pub fn get(&self, key: CacheKey, now: Instant) -> Option<V> {
        let slot = self.entries.get(&key)?;
        if slot.until > now {
            Some(slot.value)
        } else {
            self.entries.remove(&key);
            None
        }
    }

    /// Stores `value` for `ttl` (nothing when `ttl` is zero).
    pub fn insert(&self, key: CacheKey, value: V, ttl: Duration, now: Instant) {
        if !ttl.is_zero() {
            self.entries.insert(
                key,
                Slot {
                    value,
                    until: crate::clock::instant_after(now, ttl),
                },
            );
        }
    }

    /// Drops an entry.
    pub fn remove(&self, key: CacheKey) {
        self.entries.remove(&key);
    }

    /// Entries evicted to stay within the bound so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.0.load(Relaxed)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs `compute` once for all threads that miss `key` at the same time. Threads that
    /// arrive while a flight is under way wait (at most `wait`) and share its result, success
    /// or failure; a thread that arrives after it ended starts a new one, so a failure is never
    /// handed to later requests. `compute` is expected to insert what should be cached.
    pub fn get_or_compute<E>(
        &self,
        key: CacheKey,
        wait: Duration,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Fetched<V, E>
    where
        E: Clone + From<String> + std::fmt::Display,
    {
        let (flight, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&key) {
                Some(f) => (Arc::clone(f), false),
                None => {
                    let f = Arc::new(Flight {
                        result: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    flights.insert(key, Arc::clone(&f));
                    (f, true)
                }
            }
        };
        if leader {
            let guard = FlightGuard {
                cache: self,
                key,
                flight: &flight,
            };
            let result = compute();
            guard.finish(result.clone().map_err(|e| e.to_string()));
            return Fetched::Computed(result);
        }
        let deadline = crate::clock::instant_after(Instant::now(), wait);
        let mut slot = flight.result.lock().unwrap_or_else(PoisonError::into_inner);
        while slot.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Fetched::Shared(Err(E::from(
                    "timed out waiting for a concurrent introspection".into(),
                )));
            }
            slot = flight
                .done
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let shared = slot.as_ref().map(|r| r.clone().map_err(E::from));
        Fetched::Shared(
            shared.unwrap_or_else(|| Err(E::from("flight ended without a result".into()))),
        )
    }
}

/// Ends a flight even when `compute` panics, so waiters never hang.
struct FlightGuard<'a, V: Clone> {
    cache: &'a VerdictCache<V>,
    key: CacheKey,
    flight: &'a Arc<Flight<V>>,
}

impl<V: Clone> FlightGuard<'_, V> {
    fn finish(self, result: Result<V, String>) {
        *self
            .flight
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
        // Drop removes the flight and wakes the waiters.
    }
}

impl<V: Clone> Drop for FlightGuard<'_, V> {
    fn drop(&mut self) {
        self.cache
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        let mut slot = self
            .flight
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Err("introspection failed internally".into()));
        }
        self.flight.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn keys_depend_on_seed_policy_and_token() {
        let a = KeyDeriver::new(b"seed", "policy");
        assert_eq!(a.key("t"), a.key("t"));
        assert_ne!(a.key("t"), a.key("u"));
        assert_ne!(a.key("t"), KeyDeriver::new(b"seed2", "policy").key("t"));
        assert_ne!(a.key("t"), KeyDeriver::new(b"seed", "policy2").key("t"));
        assert!(!format!("{a:?}").contains("seed"));
    }

    #[test]
    fn lifetimes_and_bound() {
        let c: VerdictCache<u32> = VerdictCache::new(100);
        let now = Instant::now();
        c.insert(1, 10, Duration::from_secs(5), now);
        c.insert(2, 20, Duration::ZERO, now);
        assert_eq!(c.get(1, now), Some(10));
        assert_eq!(c.get(2, now), None);
        assert_eq!(c.get(1, now + Duration::from_secs(6)), None);
        for k in 0..10_000u128 {
            c.insert(k, 0, Duration::from_secs(60), now);
        }
        assert!(c.len() <= 140, "bounded: {}", c.len());
        assert!(
            c.evictions() >= 10_000 - 140,
            "evictions counted: {}",
            c.evictions()
        );
    }

    #[test]
    fn capacity_random_tokens_all_fit() {
        let c: VerdictCache<u32> = VerdictCache::new(10_000);
        let keys = KeyDeriver::new(b"seed", "p");
        let now = Instant::now();
        for i in 0..10_000 {
            c.insert(
                keys.key(&format!("token-{i}")),
                1,
                Duration::from_secs(60),
                now,
            );
        }
        let held = (0..10_000)
            .filter(|i| c.get(keys.key(&format!("token-{i}")), now).is_some())
            .count();
        assert_eq!(held, 10_000);
    }

    #[test]
    fn concurrent_misses_make_one_call_and_share_it() {
        let c: Arc<VerdictCache<u32>> = Arc::new(VerdictCache::new(10));
        let calls = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (c, calls) = (Arc::clone(&c), Arc::clone(&calls));
                std::thread::spawn(move || {
                    match c.get_or_compute::<String>(7, Duration::from_secs(5), || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(42)
                    }) {
                        Fetched::Computed(r) | Fetched::Shared(r) => r.unwrap(),
                    }
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 42);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failure_is_not_handed_to_later_requests() {
        let c: VerdictCache<u32> = VerdictCache::new(10);
        let r = c.get_or_compute::<String>(1, Duration::from_secs(1), || Err("down".into()));
        assert!(matches!(r, Fetched::Computed(Err(_))));
        let r = c.get_or_compute::<String>(1, Duration::from_secs(1), || Ok(5));
        assert!(matches!(r, Fetched::Computed(Ok(5))));
    }

    #[test]
    fn a_panicking_leader_releases_waiters() {
        let c: Arc<VerdictCache<u32>> = Arc::new(VerdictCache::new(10));
        let c2 = Arc::clone(&c);
        let leader = std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c2.get_or_compute::<String>(3, Duration::from_secs(5), || {
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("boom")
                })
            }));
        });
        std::thread::sleep(Duration::from_millis(20));
        let r = c.get_or_compute::<String>(3, Duration::from_secs(5), || Ok(1));
        leader.join().unwrap();
        match r {
            Fetched::Shared(Err(_)) | Fetched::Computed(Ok(1)) => {}
            _ => panic!("waiter must be released with an error or lead a new flight"),
        }
    }
}
