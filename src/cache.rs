//! The verdict cache: bounded (quick_cache, S3-FIFO-style eviction, O(1) get/insert), keyed
//! by a keyed hash of the token (never the token, see [`TokenKeys`]), with per-entry
//! lifetimes, plus single-flight so that concurrent misses on one token make one
//! introspection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_256, EncryptingKey, UnboundCipherKey};

use crate::single_flight::SingleFlight;
pub(crate) use crate::single_flight::{Fetched, FlightError};

/// A cache key: 128 bits of a keyed hash of the token.
pub(crate) type CacheKey = u128;

/// Derives cache keys from tokens with a key that also binds the policy inputs.
#[derive(Clone)]
pub(crate) struct KeyDeriver {
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
    pub(crate) fn new(seed: &[u8], policy: &str) -> Self {
        let mut material = Vec::with_capacity(seed.len() + policy.len() + 1);
        material.extend_from_slice(seed);
        material.push(0);
        material.extend_from_slice(policy.as_bytes());
        Self {
            key: blake3::derive_key("tokenward 2026 verdict cache key", &material),
        }
    }

    /// The key for a token.
    pub(crate) fn key(&self, token: &str) -> CacheKey {
        let hash = blake3::keyed_hash(&self.key, token.as_bytes());
        let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().unwrap_or_default();
        u128::from_le_bytes(bytes)
    }
}

/// The verdict cache's keys: a keyed hash of the token under keys derived from a random
/// per-process seed and the policy inputs, computed on every request (hits included).
///
/// A token of up to [`TokenKeys::SHORT`] bytes is hashed with keyed BLAKE3. A longer one (a
/// 1 KB JWT) with AES-256-GMAC, then AES-256 of the tag: GHASH is a universal hash keyed by
/// a secret (two distinct tokens of up to 16 KB collide with probability below 2^-118), and
/// a block cipher applied to a universal hash is a pseudorandom function (up to about 2^64
/// tokens), as keyed BLAKE3 is. BLAKE3 hashes an input of one or two 1 KB chunks block after
/// block (about 1.3 ns a byte here); AES-GMAC with the CPU's AES and carry-less multiply
/// instructions is about 7 times faster on a 1 KB token, and slower than BLAKE3 below about
/// 100 bytes. The keys never leave the process.
pub(crate) struct TokenKeys {
    short: [u8; 32],
    gmac: LessSafeKey,
    prp: EncryptingKey,
    /// For the (never seen) case of AES failing: BLAKE3 under another key.
    fallback: [u8; 32],
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(***)")
    }
}

impl TokenKeys {
    /// Tokens up to this length are hashed with BLAKE3, longer ones with AES.
    pub(crate) const SHORT: usize = 128;

    /// Keys for `seed` (random per process) and `policy` (endpoint, client, required
    /// audience/issuer/scope...). `None` if the AES keys cannot be made (no AES in the
    /// crypto library).
    pub(crate) fn new(seed: &[u8], policy: &str) -> Option<Self> {
        let mut material = Vec::with_capacity(seed.len() + policy.len() + 1);
        material.extend_from_slice(seed);
        material.push(0);
        material.extend_from_slice(policy.as_bytes());
        let derive = |context: &str| blake3::derive_key(context, &material);
        let gmac = UnboundKey::new(
            &AES_256_GCM,
            &derive("tokenward 2026 verdict cache key gmac"),
        )
        .ok()?;
        let prp = UnboundCipherKey::new(&AES_256, &derive("tokenward 2026 verdict cache key prp"))
            .ok()?;
        Some(Self {
            short: derive("tokenward 2026 verdict cache key"),
            gmac: LessSafeKey::new(gmac),
            prp: EncryptingKey::ecb(prp).ok()?,
            fallback: derive("tokenward 2026 verdict cache key fallback"),
        })
    }

    /// The key for a token.
    pub(crate) fn key(&self, token: &str) -> CacheKey {
        self.key_of_bytes(token.as_bytes())
    }

    /// The key for any text (a client certificate as it was sent).
    pub(crate) fn key_of_bytes(&self, token: &[u8]) -> CacheKey {
        if token.len() <= Self::SHORT {
            return blake3_key(&self.short, token);
        }
        // One fixed nonce: the tag is GHASH(token) masked by a constant, never sent anywhere.
        let nonce = Nonce::assume_unique_for_key([0; 12]);
        let block = self
            .gmac
            .seal_in_place_separate_tag(nonce, Aad::from(token), &mut [])
            .ok()
            .and_then(|tag| <[u8; 16]>::try_from(tag.as_ref()).ok());
        let Some(mut block) = block else {
            return blake3_key(&self.fallback, token);
        };
        match self.prp.encrypt(&mut block) {
            Ok(_) => u128::from_le_bytes(block),
            Err(_) => blake3_key(&self.fallback, token),
        }
    }
}

fn blake3_key(key: &[u8; 32], token: &[u8]) -> CacheKey {
    let hash = blake3::keyed_hash(key, token);
    let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().unwrap_or_default();
    u128::from_le_bytes(bytes)
}

/// A stored value and when it stops being usable.
#[derive(Clone)]
struct Slot<V> {
    value: V,
    until: Instant,
    /// Kept (for [`VerdictCache::get_stale`]) until then; `until` plus the linger.
    keep_until: Instant,
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

/// A bounded map of verdicts with per-entry lifetimes; concurrent misses share one
/// computation whose result or error `E` every waiter receives as the leader got it.
pub(crate) struct VerdictCache<V: Clone, E: Clone = FlightError> {
    entries: Store<V>,
    evictions: CountEvictions,
    linger: Duration,
    flights: SingleFlight<CacheKey, V, E>,
}

impl<V: Clone, E: Clone> std::fmt::Debug for VerdictCache<V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("len", &self.entries.len())
            .finish()
    }
}

impl<V: Clone, E: Clone + From<FlightError>> VerdictCache<V, E> {
    /// A cache sized for `capacity` entries. The store is sharded and each shard evicts on
    /// its own, so it gets 10 % slack: `capacity` random tokens then fit without early
    /// evictions, and the bound is about `capacity * 1.1 + 16`.
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_linger(capacity, Duration::ZERO)
    }

    /// A cache whose entries stay readable by [`VerdictCache::get_stale`] for `linger` past
    /// their lifetime (`stale_if_error`).
    pub(crate) fn with_linger(capacity: usize, linger: Duration) -> Self {
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
            linger,
            flights: SingleFlight::default(),
        }
    }

    /// The value for `key` if present and not past its lifetime.
    pub(crate) fn get(&self, key: CacheKey, now: Instant) -> Option<V> {
        let slot = self.entries.get(&key)?;
        if slot.until > now {
            Some(slot.value)
        } else {
            if slot.keep_until <= now {
                self.entries.remove(&key);
            }
            None
        }
    }

    /// The value for `key` if present, fresh or past its lifetime by less than the linger.
    pub(crate) fn get_stale(&self, key: CacheKey, now: Instant) -> Option<V> {
        let slot = self.entries.get(&key)?;
        (slot.keep_until > now).then_some(slot.value)
    }

    /// Stores `value` for `ttl` (nothing when `ttl` is zero).
    pub(crate) fn insert(&self, key: CacheKey, value: V, ttl: Duration, now: Instant) {
        if !ttl.is_zero() {
            let until = crate::clock::instant_after(now, ttl);
            self.entries.insert(
                key,
                Slot {
                    value,
                    until,
                    keep_until: crate::clock::instant_after(until, self.linger),
                },
            );
        }
    }

    /// Drops an entry.
    pub(crate) fn remove(&self, key: CacheKey) {
        self.entries.remove(&key);
    }

    /// Entries evicted to stay within the bound so far.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.0.load(Relaxed)
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Runs `compute` once for all threads that miss `key` at the same time. Threads that
    /// arrive while a flight is under way wait (at most `wait`) and share its result, success
    /// or failure; a thread that arrives after it ended starts a new one, so a failure is never
    /// handed to later requests. `compute` is expected to insert what should be cached.
    pub(crate) fn get_or_compute(
        &self,
        key: CacheKey,
        wait: Duration,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Fetched<V, E> {
        self.flights.run(key, wait, compute)
    }

    /// Holders of the flight for `key` (the map, the leader, each waiter); 0 when none.
    #[cfg(test)]
    fn flight_holders(&self, key: CacheKey) -> usize {
        self.flights.holders(&key)
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
    fn token_keys_depend_on_seed_policy_and_every_byte_of_the_token() {
        let a = TokenKeys::new(b"seed", "policy").unwrap();
        let long = "x".repeat(1200);
        for token in [
            "t",
            "u",
            &long[..TokenKeys::SHORT],
            &long[..TokenKeys::SHORT + 1],
            &long,
        ] {
            assert_eq!(a.key(token), a.key(token));
            let b = TokenKeys::new(b"seed2", "policy").unwrap();
            let c = TokenKeys::new(b"seed", "policy2").unwrap();
            assert_ne!(a.key(token), b.key(token), "{}", token.len());
            assert_ne!(a.key(token), c.key(token), "{}", token.len());
        }
        // Every byte and the length count, on both sides of the threshold.
        let mut seen = std::collections::HashSet::new();
        for len in [
            1,
            2,
            100,
            TokenKeys::SHORT,
            TokenKeys::SHORT + 1,
            1024,
            1200,
            16 * 1024,
        ] {
            let base = "a".repeat(len);
            assert!(seen.insert(a.key(&base)), "length {len}");
            let mut positions = vec![0, len / 2, len - 1];
            positions.dedup();
            for at in positions {
                let mut bytes = base.clone().into_bytes();
                bytes[at] = b'b';
                let changed = String::from_utf8(bytes).unwrap();
                assert!(seen.insert(a.key(&changed)), "length {len}, byte {at}");
            }
        }
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

    /// A typed error, as the authenticator's `AsError`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TestError {
        Refused { status: u16, detail: String },
        Flight(FlightError),
    }

    impl From<FlightError> for TestError {
        fn from(e: FlightError) -> Self {
            Self::Flight(e)
        }
    }

    type Cache = VerdictCache<u32, TestError>;

    fn result(f: Fetched<u32, TestError>) -> (bool, Result<u32, TestError>) {
        match f {
            Fetched::Computed(r) => (true, r),
            Fetched::Shared(r) => (false, r),
        }
    }

    /// Blocks until `n` holders share the flight for `key` (the map, the leader, waiters).
    fn until_holders(c: &Cache, key: CacheKey, n: usize) {
        while c.flight_holders(key) < n {
            std::thread::yield_now();
        }
    }

    /// 16 threads miss one key; the leader finishes only once all 15 others wait on its
    /// flight, so the test needs no timing: exactly one computation, one leader, and every
    /// waiter gets the leader's exact result (here a typed error).
    #[test]
    fn concurrent_misses_make_one_call_and_share_it() {
        for outcome in [
            Ok(42),
            Err(TestError::Refused {
                status: 401,
                detail: "bad client".into(),
            }),
        ] {
            let c: Arc<Cache> = Arc::new(VerdictCache::new(10));
            let calls = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..16)
                .map(|_| {
                    let (c, calls, outcome) = (Arc::clone(&c), Arc::clone(&calls), outcome.clone());
                    std::thread::spawn(move || {
                        result(c.get_or_compute(7, Duration::from_secs(600), || {
                            calls.fetch_add(1, Ordering::SeqCst);
                            until_holders(&c, 7, 17);
                            outcome
                        }))
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(results.iter().filter(|(led, _)| *led).count(), 1);
            for (_, r) in results {
                assert_eq!(r, outcome, "every waiter sees the leader's own result");
            }
            assert_eq!(c.flight_holders(7), 0, "the flight is gone");
        }
    }

    #[test]
    fn a_failure_is_not_handed_to_later_requests() {
        let c: Cache = VerdictCache::new(10);
        let down = TestError::Refused {
            status: 503,
            detail: "down".into(),
        };
        let r = c.get_or_compute(1, Duration::from_secs(1), || Err(down.clone()));
        assert!(matches!(r, Fetched::Computed(Err(ref e)) if *e == down));
        let r = c.get_or_compute(1, Duration::from_secs(1), || Ok(5));
        assert!(matches!(r, Fetched::Computed(Ok(5))));
    }

    /// The waiter joins the flight before the leader panics (no timing), and must get
    /// `LeaderPanicked` at once: a guard that failed to publish would leave it waiting out its
    /// 30 s budget, and then it would see `TimedOut`.
    #[test]
    fn a_panicking_leader_releases_waiters() {
        let c: Arc<Cache> = Arc::new(VerdictCache::new(10));
        let c2 = Arc::clone(&c);
        let leader = std::thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c2.get_or_compute(3, Duration::from_secs(600), || {
                    until_holders(&c2, 3, 3);
                    panic!("boom")
                })
            }))
            .is_err()
        });
        until_holders(&c, 3, 2);
        let r = c.get_or_compute(3, Duration::from_secs(30), || Ok(1));
        assert!(leader.join().unwrap(), "the leader panicked");
        assert!(
            matches!(
                r,
                Fetched::Shared(Err(TestError::Flight(FlightError::LeaderPanicked)))
            ),
            "the waiter must see the leader's panic"
        );
        // The next miss leads a fresh flight.
        assert!(matches!(
            c.get_or_compute(3, Duration::from_secs(1), || Ok(2)),
            Fetched::Computed(Ok(2))
        ));
    }

    #[test]
    fn a_slow_leader_times_the_waiter_out_with_a_typed_error() {
        let c: Arc<Cache> = Arc::new(VerdictCache::new(10));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let c2 = Arc::clone(&c);
        let leader = std::thread::spawn(move || {
            result(c2.get_or_compute(4, Duration::from_secs(600), || {
                released.recv().unwrap();
                Ok(9)
            }))
        });
        until_holders(&c, 4, 2);
        let r = c.get_or_compute(4, Duration::ZERO, || Ok(1));
        assert!(matches!(
            r,
            Fetched::Shared(Err(TestError::Flight(FlightError::TimedOut)))
        ));
        release.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), (true, Ok(9)));
    }
}
