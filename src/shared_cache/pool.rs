//! What one process keeps per server: idle connections (a fork makes a fresh set) and
//! whether the server is left alone after a failure.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Connections of one process (a fork makes a fresh set).
pub(super) struct PerProcess<T> {
    pid: u32,
    items: Vec<T>,
}

impl<T> PerProcess<T> {
    pub(super) fn new() -> Self {
        Self {
            pid: std::process::id(),
            items: Vec::new(),
        }
    }

    pub(super) fn take(&mut self) -> Option<T> {
        let pid = std::process::id();
        if self.pid != pid {
            // Sockets inherited across fork() are the parent's: leak, never reuse.
            std::mem::forget(std::mem::take(&mut self.items));
            self.pid = pid;
        }
        self.items.pop()
    }

    /// Drops every idle item (their server failed: they are likely dead too).
    pub(super) fn clear(&mut self) {
        if self.pid == std::process::id() {
            self.items.clear();
        }
    }

    pub(super) fn give(&mut self, item: T, max: usize) {
        if self.pid == std::process::id() && self.items.len() < max {
            self.items.push(item);
        } else {
            std::mem::forget(item);
        }
    }
}

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
