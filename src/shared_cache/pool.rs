//! What one process keeps per server besides its idle connections ([`PerProcess`]): whether
//! the server is left alone after a failure.

pub(super) use crate::per_process::PerProcess;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Whether one server is left alone after a failure, and until when.
pub(super) struct ServerHealth {
    dead_until: Mutex<Option<Instant>>,
}

impl ServerHealth {
    pub(super) fn new() -> Self {
        Self {
            dead_until: Mutex::new(None),
        }
    }

    pub(super) fn is_available(&self, now: Instant) -> bool {
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

    pub(super) fn mark_failed(&self, now: Instant, retry: Duration) {
        *self
            .dead_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = now.checked_add(retry).or(Some(now));
    }
}
