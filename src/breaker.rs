//! A circuit breaker per (AS endpoint, client): after `as_failure_threshold` consecutive
//! failures no request goes to the AS for `as_open_time`; misses get a 503 at once. Then one
//! request probes (half-open) while the others keep the fast 503; its success closes the
//! breaker, its failure opens it again. Filters of one process with the same endpoint,
//! client and settings share one breaker, so every thread and filter sees the same state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::clock::{self, Clock};
use crate::error::AsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is under way.
    HalfOpen,
}

/// One breaker; see the module documentation.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    open_time: Duration,
    phase: Mutex<Phase>,
    open: AtomicBool,
}

/// What a request may do.
#[derive(Debug)]
pub(crate) enum Admission<'a> {
    /// Ask the AS; report the outcome with [`Attempt::finish`].
    Go(Attempt<'a>),
    /// Do not ask: the breaker is open for this many more seconds (at least 1).
    Refused {
        /// Seconds until a probe may go, rounded up.
        retry_after: u32,
    },
}

/// A request admitted to the AS. Dropped without [`Attempt::finish`] (a panic), it counts as
/// a failure, so a half-open breaker never waits for a probe that will not report.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    breaker: Option<&'a Breaker>,
    clock: &'a dyn Clock,
}

impl Attempt<'_> {
    /// Reports the AS's answer (`Ok`) or error. True when this report opened a closed
    /// breaker: exactly one report per opening says so, however many requests were under way
    /// when the threshold was reached (theirs come late and find it open), and a failed probe
    /// that opens it again does not.
    pub(crate) fn finish<T>(mut self, result: &Result<T, AsError>) -> bool {
        self.breaker.take().is_some_and(|breaker| {
            let failed = result.as_ref().err().is_some_and(AsError::trips_breaker);
            breaker.record(failed, self.clock.monotonic())
        })
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            let _ = breaker.record(true, self.clock.monotonic());
        }
    }
}

impl Breaker {
    /// A breaker on its own (tests); filters get theirs from [`shared`].
    pub(crate) fn new(threshold: u32, open_time: Duration) -> Self {
        Self {
            threshold,
            open_time,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
            open: AtomicBool::new(false),
        }
    }

    /// Whether the breaker is open or half-open now (the metrics gauge).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    /// Admits a request or refuses it while open. A threshold of 0 admits everything.
    pub(crate) fn admit<'a>(&'a self, clock: &'a dyn Clock) -> Admission<'a> {
        if self.threshold == 0 {
            return Admission::Go(Attempt {
                breaker: None,
                clock,
            });
        }
        let now = clock.monotonic();
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match *phase {
            Phase::Closed { .. } => {}
            Phase::Open { until } if now >= until => *phase = Phase::HalfOpen,
            Phase::Open { until } => {
                let left = until.saturating_duration_since(now);
                return Admission::Refused {
                    retry_after: seconds_up(left),
                };
            }
            Phase::HalfOpen => return Admission::Refused { retry_after: 1 },
        }
        Admission::Go(Attempt {
            breaker: Some(self),
            clock,
        })
    }

    /// Records an outcome; true when it opened a closed breaker.
    fn record(&self, failed: bool, now: Instant) -> bool {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        let was_closed = matches!(*phase, Phase::Closed { .. });
        *phase = match (*phase, failed) {
            (_, false) => Phase::Closed { failures: 0 },
            (Phase::HalfOpen, true) => self.opened(now),
            (Phase::Closed { failures }, true) if failures + 1 >= self.threshold => {
                self.opened(now)
            }
            (Phase::Closed { failures }, true) => Phase::Closed {
                failures: failures + 1,
            },
            // A request admitted before the breaker opened reports late: keep it open.
            (open @ Phase::Open { .. }, true) => open,
        };
        let open = !matches!(*phase, Phase::Closed { .. });
        self.open.store(open, Relaxed);
        was_closed && open
    }

    fn opened(&self, now: Instant) -> Phase {
        Phase::Open {
            until: clock::instant_after(now, self.open_time),
        }
    }
}

fn seconds_up(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

type Key = (String, String, u32, Duration);

/// The process's breaker for this endpoint, client and settings, made on first use.
pub(crate) fn shared(
    endpoint: &str,
    client_id: &str,
    threshold: u32,
    open_time: Duration,
) -> Arc<Breaker> {
    static REGISTRY: OnceLock<Mutex<HashMap<Key, Weak<Breaker>>>> = OnceLock::new();
    let mut map = REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, weak| weak.strong_count() > 0);
    let key = (
        endpoint.to_owned(),
        client_id.to_owned(),
        threshold,
        open_time,
    );
    if let Some(breaker) = map.get(&key).and_then(Weak::upgrade) {
        return breaker;
    }
    let breaker = Arc::new(Breaker::new(threshold, open_time));
    map.insert(key, Arc::downgrade(&breaker));
    breaker
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn fail() -> Result<(), AsError> {
        Err(AsError::Unreachable("down".into()))
    }

    fn go<'a>(b: &'a Breaker, clock: &'a ManualClock) -> Attempt<'a> {
        match b.admit(clock) {
            Admission::Go(a) => a,
            Admission::Refused { retry_after } => panic!("refused, retry after {retry_after}"),
        }
    }

    fn refused(b: &Breaker, clock: &ManualClock) -> u32 {
        match b.admit(clock) {
            Admission::Go(_) => panic!("admitted"),
            Admission::Refused { retry_after } => retry_after,
        }
    }

    #[test]
    fn opens_after_the_threshold_probes_once_and_closes_on_success() {
        let clock = ManualClock::starting_now();
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            go(&b, &clock).finish(&fail());
        }
        // A 4xx is an answer: it resets the count.
        go(&b, &clock).finish::<()>(&Err(AsError::Status {
            status: 400,
            error: None,
            description: None,
        }));
        for _ in 0..3 {
            go(&b, &clock).finish(&fail());
        }
        assert!(b.is_open());
        assert_eq!(refused(&b, &clock), 10);
        clock.advance(Duration::from_millis(8_500));
        assert_eq!(refused(&b, &clock), 2, "rounded up");
        clock.advance(Duration::from_millis(1_500));
        let probe = go(&b, &clock);
        assert_eq!(refused(&b, &clock), 1, "others wait for the probe");
        probe.finish(&fail());
        assert_eq!(refused(&b, &clock), 10, "a failed probe re-opens");
        clock.advance(Duration::from_secs(10));
        go(&b, &clock).finish(&Ok::<(), AsError>(()));
        assert!(!b.is_open());
        go(&b, &clock).finish(&Ok::<(), AsError>(()));
    }

    #[test]
    fn only_the_report_that_opens_a_closed_breaker_says_so() {
        let clock = ManualClock::starting_now();
        let b = Breaker::new(2, Duration::from_secs(10));
        let in_flight: Vec<_> = (0..4).map(|_| go(&b, &clock)).collect();
        let opened: Vec<bool> = in_flight.into_iter().map(|a| a.finish(&fail())).collect();
        assert_eq!(
            opened,
            [false, true, false, false],
            "late failures find it open"
        );
        clock.advance(Duration::from_secs(10));
        assert!(
            !go(&b, &clock).finish(&fail()),
            "a failed probe re-opens it quietly"
        );
        clock.advance(Duration::from_secs(10));
        assert!(!go(&b, &clock).finish(&Ok::<(), AsError>(())));
        assert!(!go(&b, &clock).finish(&fail()));
        assert!(
            go(&b, &clock).finish(&fail()),
            "closed again: the next opening says so"
        );
    }

    #[test]
    fn a_probe_that_never_reports_counts_as_failed() {
        let clock = ManualClock::starting_now();
        let b = Breaker::new(1, Duration::from_secs(5));
        go(&b, &clock).finish(&fail());
        clock.advance(Duration::from_secs(5));
        drop(go(&b, &clock));
        assert_eq!(refused(&b, &clock), 5);
    }

    #[test]
    fn zero_disables_and_the_registry_shares() {
        let clock = ManualClock::starting_now();
        let b = Breaker::new(0, Duration::from_secs(5));
        for _ in 0..100 {
            go(&b, &clock).finish(&fail());
        }
        assert!(!b.is_open());
        let one = shared("https://x/i", "c", 5, Duration::from_secs(10));
        let two = shared("https://x/i", "c", 5, Duration::from_secs(10));
        let other = shared("https://x/i", "d", 5, Duration::from_secs(10));
        assert!(Arc::ptr_eq(&one, &two));
        assert!(!Arc::ptr_eq(&one, &other));
    }
}
