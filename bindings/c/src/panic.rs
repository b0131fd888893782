//! The panic boundary around every exported function (rustls-ffi's `ffi_panic_boundary!`).
//!
//! No panic hook is installed: the host's (or Rust's default) hook still runs, and the call
//! returns `TOKENWARD_RESULT_PANIC`, or NULL/0/false/an empty string when it has no result code.

use crate::result::tokenward_result;
use crate::tokenward_str;

/// The value a function returns when its body panicked.
pub(crate) trait PanicDefault {
    /// That value.
    fn panic_default() -> Self;
}

impl PanicDefault for tokenward_result {
    fn panic_default() -> Self {
        tokenward_result::Panic
    }
}

impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

impl PanicDefault for usize {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for u64 {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for u16 {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

impl PanicDefault for tokenward_str {
    fn panic_default() -> Self {
        tokenward_str::EMPTY
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

/// Runs the body under `catch_unwind`; a panic becomes the return type's [`PanicDefault`].
/// `return` inside the body returns from the exported function.
macro_rules! ffi_panic_boundary {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(move || { $($body)* })) {
            Ok(value) => value,
            Err(_) => $crate::panic::PanicDefault::panic_default(),
        }
    };
}

pub(crate) use ffi_panic_boundary;
