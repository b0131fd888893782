//! Core log lines for a Python `logging.Logger`, handed over on the request's own thread.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;

use tokenward::log::{Level, LogSink};

/// Core log lines for a Python `logging.Logger`. The core may log from a thread that is not
/// Python's (a miss runs with the GIL released, and under eventlet in `tpool`, where touching
/// eventlet's green locks inside `logging` is unsafe), so lines are queued here and handed to
/// the logger by [`PythonLogger::flush`] on the calling thread, with the GIL held.
pub(crate) struct PythonLogger {
    logger: Py<PyAny>,
    /// The logger's effective level, refreshed at each flush.
    threshold: AtomicI32,
    pending: Mutex<Vec<(i32, String)>>,
}

fn python_level(level: Level) -> i32 {
    match level {
        Level::Debug => 10,
        Level::Info => 20,
        Level::Warning => 30,
        Level::Error => 40,
    }
}

impl PythonLogger {
    pub(crate) fn new(py: Python<'_>, logger: Py<PyAny>) -> Self {
        let this = Self {
            logger,
            threshold: AtomicI32::new(0),
            pending: Mutex::new(Vec::new()),
        };
        this.refresh_threshold(py);
        this
    }

    fn refresh_threshold(&self, py: Python<'_>) {
        if let Ok(level) = self
            .logger
            .call_method0(py, "getEffectiveLevel")
            .and_then(|v| v.extract::<i32>(py))
        {
            self.threshold.store(level, Ordering::Relaxed);
        }
    }

    /// Hands the queued lines to the logger (GIL held, caller's thread).
    pub(crate) fn flush(&self, py: Python<'_>) {
        let lines =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (level, message) in lines {
            let _ = self.logger.call_method1(py, "log", (level, "%s", message));
        }
        self.refresh_threshold(py);
    }

    /// [`PythonLogger::flush`] when a line is queued (a lock and a length check otherwise).
    pub(crate) fn flush_pending(&self, py: Python<'_>) {
        let queued = !self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        if queued {
            self.flush(py);
        }
    }
}

impl LogSink for PythonLogger {
    fn enabled(&self, level: Level) -> bool {
        python_level(level) >= self.threshold.load(Ordering::Relaxed)
    }

    fn log(&self, level: Level, message: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() < 1000 {
            pending.push((python_level(level), message.to_owned()));
        }
    }
}
