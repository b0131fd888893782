//! One computation for concurrent callers of the same key: the verdict cache's misses and
//! the token client's token requests both go through it. The result, success or error, is
//! handed to every caller that waited for it and to no later one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::AsError;

/// Why a waiter got no result from the caller that led its flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightError {
    /// The leader took longer than the wait budget.
    TimedOut,
    /// The leader's computation panicked.
    LeaderPanicked,
}

impl std::fmt::Display for FlightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TimedOut => "timed out waiting for the same request made by another thread",
            Self::LeaderPanicked => "the same request made by another thread failed internally",
        })
    }
}

impl From<FlightError> for AsError {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::TimedOut => AsError::Timeout(e.to_string()),
            FlightError::LeaderPanicked => AsError::Internal(e.to_string()),
        }
    }
}

/// The outcome of [`SingleFlight::run`].
pub(crate) enum Fetched<V, E> {
    /// Computed here (this thread led the flight).
    Computed(Result<V, E>),
    /// Another thread's flight finished while this one waited.
    Shared(Result<V, E>),
}

struct Flight<V, E> {
    result: Mutex<Option<Result<V, E>>>,
    done: Condvar,
}

/// The flights under way, by key.
pub(crate) struct SingleFlight<K, V, E> {
    flights: Mutex<HashMap<K, Arc<Flight<V, E>>>>,
}

impl<K, V, E> Default for SingleFlight<K, V, E> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone, E: Clone + From<FlightError>> SingleFlight<K, V, E> {
    /// Runs `compute` once for all threads that call with `key` at the same time. Threads
    /// that arrive while a flight is under way wait (at most `wait`) and share its result; a
    /// thread that arrives after it ended starts a new one.
    pub(crate) fn run(
        &self,
        key: K,
        wait: Duration,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Fetched<V, E> {
        let (flight, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&key) {
                Some(f) => (Arc::clone(f), false),
                None => {
                    let f = Arc::new(Flight {
                        result: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    flights.insert(key.clone(), Arc::clone(&f));
                    (f, true)
                }
            }
        };
        if leader {
            let guard = Guard {
                flights: self,
                key,
                flight: &flight,
            };
            let result = compute();
            guard.finish(result.clone());
            return Fetched::Computed(result);
        }
        let deadline = crate::clock::instant_after(Instant::now(), wait);
        let mut slot = flight.result.lock().unwrap_or_else(PoisonError::into_inner);
        while slot.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Fetched::Shared(Err(FlightError::TimedOut.into()));
            }
            slot = flight
                .done
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Fetched::Shared(
            slot.clone()
                .unwrap_or(Err(FlightError::LeaderPanicked.into())),
        )
    }

    /// Whether a flight for `key` is under way.
    pub(crate) fn in_flight(&self, key: &K) -> bool {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// Holders of the flight for `key` (the map, the leader, each waiter); 0 when none.
    #[cfg(test)]
    pub(crate) fn holders(&self, key: &K) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map_or(0, Arc::strong_count)
    }
}

/// Ends a flight even when `compute` panics, so waiters never hang.
struct Guard<'a, K: Hash + Eq, V, E: From<FlightError>> {
    flights: &'a SingleFlight<K, V, E>,
    key: K,
    flight: &'a Arc<Flight<V, E>>,
}

impl<K: Hash + Eq, V, E: From<FlightError>> Guard<'_, K, V, E> {
    fn finish(self, result: Result<V, E>) {
        *self
            .flight
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
        // Drop removes the flight and wakes the waiters.
    }
}

impl<K: Hash + Eq, V, E: From<FlightError>> Drop for Guard<'_, K, V, E> {
    fn drop(&mut self) {
        self.flights
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
            *slot = Some(Err(FlightError::LeaderPanicked.into()));
        }
        drop(slot);
        // Out of the map, the flight is held by the leader and by each waiter, and no new
        // waiter can find it: with no other holder there is nobody to wake (a wake is a
        // system call on every miss otherwise). A holder that has not started waiting sees
        // the result under the lock and never waits.
        if Arc::strong_count(self.flight) > 1 {
            self.flight.done.notify_all();
        }
    }
}
