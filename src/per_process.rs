//! The one fork-aware pool of the crate: what a process keeps idle for reuse (HTTP engines,
//! memcached and Redis connections). After fork() the child sees an empty pool and never
//! touches what it inherited, so pre-fork servers (gunicorn `--preload`, uwsgi) are safe.

/// Idle items of one process (connections, HTTP engines): a fork makes a fresh set.
pub(crate) struct PerProcess<T> {
    pid: u32,
    items: Vec<T>,
}

impl<T> PerProcess<T> {
    pub(crate) fn new() -> Self {
        Self {
            pid: std::process::id(),
            items: Vec::new(),
        }
    }

    pub(crate) fn take(&mut self) -> Option<T> {
        let pid = std::process::id();
        if self.pid != pid {
            // Inherited across fork(): their sockets (and an engine's epoll) are the parent's.
            // Leak them rather than run destructors that would touch the parent's state.
            std::mem::forget(std::mem::take(&mut self.items));
            self.pid = pid;
        }
        self.items.pop()
    }

    /// Drops every idle item (their server failed: they are likely dead too).
    pub(crate) fn clear(&mut self) {
        if self.pid == std::process::id() {
            self.items.clear();
        }
    }

    /// Keeps `item` for reuse, unless `max` are kept already (then it is closed) or it was
    /// made before a fork (then it is left alone).
    pub(crate) fn give(&mut self, item: T, max: usize) {
        if self.pid != std::process::id() {
            std::mem::forget(item);
        } else if self.items.len() < max {
            self.items.push(item);
        }
        // else: dropped here, closing its socket (forgetting it would leak the descriptor).
    }
}

#[cfg(test)]
impl<T> PerProcess<T> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn reuses_within_a_process_and_never_touches_a_parents_items() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut pool = PerProcess::new();
        pool.give(Counted(drops.clone()), 1);
        pool.give(Counted(drops.clone()), 1); // over the bound: closed, not leaked
        assert_eq!((pool.len(), drops.load(Ordering::SeqCst)), (1, 1));
        assert!(pool.take().is_some_and(|c| {
            drop(c);
            true
        }));
        assert_eq!(drops.load(Ordering::SeqCst), 2);

        // As a forked child sees it: the items belong to another pid.
        pool.give(Counted(drops.clone()), 4);
        pool.pid = pool.pid.wrapping_add(1);
        assert!(pool.take().is_none(), "a parent's item is never handed out");
        assert_eq!(drops.load(Ordering::SeqCst), 2, "nor dropped");
        pool.give(Counted(drops.clone()), 4);
        assert_eq!(pool.len(), 1, "the child's own items are kept");
        pool.clear();
        assert_eq!((pool.len(), drops.load(Ordering::SeqCst)), (0, 3));
    }
}
