//! Time as the core sees it: wall-clock seconds for token claims (`exp`, `nbf`, `iat`) and a
//! monotonic instant for cache lifetimes, timeouts and back-off. Production uses
//! [`SystemClock`]; tests drive a [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the UNIX epoch (fractional), for NumericDate claims.
    fn wall(&self) -> f64;
    /// A monotonic instant, for lifetimes and deadlines.
    fn monotonic(&self) -> Instant;
}

/// The operating system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// The longest lifetime tokenward derives from a time it is sent (an AS's `exp` or
/// `expires_in`, a cached answer): 100 years. Anything later counts as this far away.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `secs` seconds as a [`Duration`], saturating: NaN, zero and negative values give zero;
/// `+inf` and anything beyond [`MAX_LIFETIME`] give [`MAX_LIFETIME`]. Never panics.
pub(crate) fn saturating_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    if secs >= MAX_LIFETIME.as_secs_f64() {
        return MAX_LIFETIME;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(MAX_LIFETIME)
}

/// The time left from `now` until `deadline` (both seconds since the epoch, as in `exp`):
/// zero once it has passed (or when either is NaN), at most [`MAX_LIFETIME`].
pub(crate) fn lifetime_until(now: f64, deadline: f64) -> Duration {
    saturating_secs(deadline - now)
}

/// `at + by` without the panic of `Instant + Duration` on overflow: a later instant the
/// platform cannot represent becomes [`MAX_LIFETIME`] from `at`, or `at` itself.
pub(crate) fn instant_after(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(MAX_LIFETIME))
        .unwrap_or(at)
}

/// The process clock, shared.
pub(crate) fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to: both readings advance together.
#[derive(Debug)]
pub struct ManualClock {
    wall_start: f64,
    instant_start: Instant,
    elapsed_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock whose wall reading starts at `wall_start` (seconds since the epoch).
    pub fn new(wall_start: f64) -> Self {
        Self {
            wall_start,
            instant_start: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
        }
    }

    /// A clock starting at the system's present wall time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.wall())
    }

    /// Moves both readings forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .elapsed_nanos
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(nanos)));
    }

    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos.load(Relaxed))
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> f64 {
        self.wall_start + self.elapsed().as_secs_f64()
    }

    fn monotonic(&self) -> Instant {
        self.instant_start
            .checked_add(self.elapsed())
            .unwrap_or(self.instant_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_both_readings_only_when_told() {
        let c = ManualClock::new(1_000.0);
        let t0 = c.monotonic();
        assert_eq!(c.wall(), 1_000.0);
        assert_eq!(c.monotonic(), t0);
        c.advance(Duration::from_millis(1_500));
        assert_eq!(c.wall(), 1_001.5);
        assert_eq!(c.monotonic() - t0, Duration::from_millis(1_500));
    }

    #[test]
    fn conversions_saturate_instead_of_panicking() {
        for far in [1e20, 1.797e308, 1e30, f64::INFINITY, f64::MAX] {
            assert_eq!(saturating_secs(far), MAX_LIFETIME, "{far}");
            assert_eq!(lifetime_until(1_700_000_000.0, far), MAX_LIFETIME, "{far}");
        }
        for none in [0.0, -0.0, -1.0, -1e308, f64::NEG_INFINITY, f64::NAN] {
            assert_eq!(saturating_secs(none), Duration::ZERO, "{none}");
        }
        assert_eq!(lifetime_until(f64::NAN, 5.0), Duration::ZERO);
        assert_eq!(lifetime_until(100.0, 99.0), Duration::ZERO);
        assert_eq!(lifetime_until(100.0, 130.5), Duration::from_millis(30_500));
        let now = Instant::now();
        assert_eq!(
            instant_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(instant_after(now, Duration::MAX) >= now);
    }
}
