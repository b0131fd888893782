//! Per-authenticator logging: the embedding door supplies a sink (Python `logging`, a C
//! callback); the core installs no global logger. Messages never hold tokens or secrets.

/// Severity, as Python's logging levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail for debugging.
    Debug,
    /// Normal events (a refused token).
    Info,
    /// Something to look at (an AS failure, a weak setting).
    Warning,
    /// A failure that needs action.
    Error,
}

/// Receives log lines.
pub trait LogSink: Send + Sync {
    /// Whether `level` is wanted (so the message is not formatted for nothing).
    fn enabled(&self, level: Level) -> bool;
    /// Takes one message.
    fn log(&self, level: Level, message: &str);
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct NoLog;

impl LogSink for NoLog {
    fn enabled(&self, _: Level) -> bool {
        false
    }
    fn log(&self, _: Level, _: &str) {}
}
