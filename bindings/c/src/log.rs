//! Logging through a C callback with userdata (rustls-ffi `log.rs`), via the core `LogSink`.
//! Nothing global: each authenticator has its own callback.

use std::ffi::c_void;

use tokenward::log::{Level, LogSink};

use crate::ffi::UserData;
use crate::{ZString, tokenward_str};

/// Log severity, as in Python's logging (passed to callbacks; in C a `uint32_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum tokenward_log_level {
    /// Detail for debugging.
    Debug = 1,
    /// Normal events (a refused token).
    Info = 2,
    /// Something to look at (an AS failure, a weak setting, an unknown option).
    Warning = 3,
    /// A failure that needs action.
    Error = 4,
}

impl tokenward_log_level {
    /// The level with this number.
    pub fn from_u32(n: u32) -> Option<Self> {
        Some(match n {
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warning,
            4 => Self::Error,
            _ => return None,
        })
    }

    fn from_core(level: Level) -> Self {
        match level {
            Level::Debug => Self::Debug,
            Level::Info => Self::Info,
            Level::Warning => Self::Warning,
            Level::Error => Self::Error,
        }
    }
}

/// One log record, valid only during the callback.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct tokenward_log_params {
    /// Severity (a `tokenward_log_level` value).
    pub level: u32,
    /// The message (NUL-terminated too). It never contains a token or a secret; tokens are
    /// named by a short fingerprint (`fp:...`).
    pub message: tokenward_str,
}

/// A log callback. It is called on the thread that builds the authenticator (start-up
/// warnings) and on every thread that calls `tokenward_authenticate`, possibly concurrently:
/// it and its `userdata` must be thread-safe. It must not call back into tokenward with the
/// same authenticator's builder, and must not unwind (longjmp/C++ exceptions) through Rust.
#[allow(non_camel_case_types)]
pub type tokenward_log_callback =
    Option<extern "C" fn(userdata: *mut c_void, params: *const tokenward_log_params)>;

/// The core sink that forwards to a C callback.
pub(crate) struct CallbackSink {
    pub(crate) callback: extern "C" fn(userdata: *mut c_void, params: *const tokenward_log_params),
    pub(crate) userdata: UserData,
    pub(crate) min_level: tokenward_log_level,
}

impl LogSink for CallbackSink {
    fn enabled(&self, level: Level) -> bool {
        tokenward_log_level::from_core(level) >= self.min_level
    }

    fn log(&self, level: Level, message: &str) {
        let level = tokenward_log_level::from_core(level);
        if level < self.min_level {
            return;
        }
        let message = ZString::new(message);
        let params = tokenward_log_params {
            level: level as u32,
            message: message.view(),
        };
        (self.callback)(self.userdata.0, &params);
    }
}
