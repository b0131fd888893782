//! The configuration builder: option names and string values in, an authenticator out.
#![allow(unsafe_code)] // only for #[unsafe(no_mangle)]; unsafe blocks live in ffi.rs

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use tokenward::log::{LogSink, NoLog};
use tokenward::options::IGNORED_KEYS;
use tokenward::{Authenticator, FilterConfig, RawOptions, TokenClient, TokenClientConfig};

use crate::authenticator::{CAuthenticator, tokenward_authenticator};
use crate::ffi::{self, Castable, OwnershipBox, UserData};
use crate::log::{CallbackSink, tokenward_log_callback, tokenward_log_level};
use crate::panic::ffi_panic_boundary;
use crate::result::tokenward_result;
use crate::token_client::{CTokenClient, tokenward_token_client};

/// Collects options for an authenticator or an outbound token client.
///
/// Ownership: created by `tokenward_config_builder_new`, then either consumed by
/// `tokenward_config_builder_build` or `tokenward_config_builder_build_token_client`
/// (always, even when it fails) or freed with `tokenward_config_builder_free`. Thread-safety: under the hood a Box; it may move between
/// threads but must not be used by two threads at once.
pub struct tokenward_config_builder {
    _private: [u8; 0],
}

/// The Rust side of a builder.
pub struct Builder {
    raw: RawOptions,
    log: Option<(
        extern "C" fn(*mut c_void, *const crate::log::tokenward_log_params),
        UserData,
    )>,
    min_level: tokenward_log_level,
}

impl Builder {
    /// The log sink the built object reports to.
    fn sink(&self) -> Arc<dyn LogSink> {
        match self.log {
            Some((callback, userdata)) => Arc::new(CallbackSink {
                callback,
                userdata,
                min_level: self.min_level,
            }),
            None => Arc::new(NoLog),
        }
    }
}

/// Sends start-up warnings to the log callback.
fn log_warnings(sink: &dyn LogSink, warnings: &[String]) {
    if sink.enabled(tokenward::log::Level::Warning) {
        for w in warnings {
            sink.log(tokenward::log::Level::Warning, w);
        }
    }
}

/// Reports a configuration error through the optional error buffer.
fn config_invalid(
    msg: &str,
    err_buf: *mut c_char,
    err_len: usize,
    err_n: *mut usize,
) -> tokenward_result {
    ffi::copy_truncated(err_buf.cast(), err_len, msg.as_bytes());
    ffi::write_out(err_n, msg.len());
    tokenward_result::ConfigInvalid
}

impl Castable for tokenward_config_builder {
    type Ownership = OwnershipBox;
    type RustType = Builder;
}

/// Makes an empty builder. Returns NULL only if tokenward panicked.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_config_builder_new() -> *mut tokenward_config_builder {
    ffi_panic_boundary! {
        ffi::box_into_ptr::<tokenward_config_builder>(Builder {
            raw: RawOptions::default(),
            log: None,
            min_level: tokenward_log_level::Info,
        })
    }
}

/// Sets option `key` to `value`, exactly as in the paste-deploy `[filter:...]` section or the
/// README's option table: values are text (`"true"`, `"300"`, a path, a URL), surrounding
/// blanks are trimmed, and an empty value unsets the option. Setting a key twice keeps the
/// last value. Values are checked by `tokenward_config_builder_build` (one parser, shared
/// with the Python door), not here.
///
/// `key`/`value` are `key_len`/`value_len` bytes of UTF-8 (no NUL needed; `value` may be NULL
/// when `value_len` is 0).
///
/// Returns `TOKENWARD_RESULT_UNKNOWN_OPTION` for a key that is not an option (nothing is set;
/// the paste keys `here`, `__file__`, `configkey`, `log_name` and the `oslo_config_*` keys are
/// accepted and ignored), `TOKENWARD_RESULT_INVALID_UTF8`, or
/// `TOKENWARD_RESULT_NULL_PARAMETER`.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_config_builder_set(
    builder: *mut tokenward_config_builder,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let (Some(builder), Some(key), Some(value)) = (
            ffi::box_mut::<tokenward_config_builder>(builder),
            if key.is_null() { None } else { ffi::try_bytes(key.cast(), key_len) },
            ffi::try_bytes(value.cast(), value_len),
        ) else {
            return tokenward_result::NullParameter;
        };
        let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value)) else {
            return tokenward_result::InvalidUtf8;
        };
        if builder.raw.set(key, value) || IGNORED_KEYS.contains(&key) {
            tokenward_result::Ok
        } else {
            tokenward_result::UnknownOption
        }
    }
}

/// Sets (or, with `callback` NULL, removes) the log callback of the authenticator to be
/// built. `userdata` is passed back as the callback's first argument; tokenward never reads
/// it. See `tokenward_log_callback` for the threading rules. Without a callback nothing is
/// logged.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_config_builder_set_log_callback(
    builder: *mut tokenward_config_builder,
    callback: tokenward_log_callback,
    userdata: *mut c_void,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(builder) = ffi::box_mut::<tokenward_config_builder>(builder) else {
            return tokenward_result::NullParameter;
        };
        builder.log = callback.map(|cb| (cb, UserData(userdata)));
        tokenward_result::Ok
    }
}

/// Sets the least severe level passed to the log callback (a `tokenward_log_level` value,
/// 1..4; default `TOKENWARD_LOG_LEVEL_INFO`). Returns `TOKENWARD_RESULT_INVALID_ARGUMENT` for
/// another number.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_config_builder_set_log_level(
    builder: *mut tokenward_config_builder,
    level: u32,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(builder) = ffi::box_mut::<tokenward_config_builder>(builder) else {
            return tokenward_result::NullParameter;
        };
        let Some(level) = tokenward_log_level::from_u32(level) else {
            return tokenward_result::InvalidArgument;
        };
        builder.min_level = level;
        tokenward_result::Ok
    }
}

/// Checks the options, loads keys and TLS material, and makes an authenticator.
///
/// **Consumes `builder` in every case** (success or failure, except when `builder` is NULL):
/// do not use or free it afterwards.
///
/// On success stores a new handle in `*out` (free it with `tokenward_authenticator_free`);
/// start-up warnings (see `tokenward_authenticator_warning`) are also sent to the log
/// callback at WARNING level.
///
/// On a configuration error returns `TOKENWARD_RESULT_CONFIG_INVALID` and leaves `*out`
/// untouched. If `err_buf` is not NULL, the message, which names the option (e.g.
/// `option client_id is required`), is copied into it like `snprintf`: truncated to
/// `err_len - 1` bytes and always NUL-terminated when `err_len > 0`; and if `err_n` is not
/// NULL it receives the full message length (without NUL), so `*err_n >= err_len` means it
/// was truncated. `err_buf` and `err_n` may be NULL. (This error buffer is the one out-param
/// written on failure.)
///
/// Returns `TOKENWARD_RESULT_NULL_PARAMETER` when `builder` or `out` is NULL (a non-NULL
/// builder is still consumed).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_config_builder_build(
    builder: *mut tokenward_config_builder,
    out: *mut *const tokenward_authenticator,
    err_buf: *mut c_char,
    err_len: usize,
    err_n: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(builder) = ffi::box_from_ptr::<tokenward_config_builder>(builder) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        let sink = builder.sink();
        let built = FilterConfig::from_raw(&builder.raw).and_then(|config| Authenticator::new(config, Arc::clone(&sink)));
        match built {
            Ok(inner) => {
                log_warnings(sink.as_ref(), inner.warnings());
                let handle = ffi::arc_into_ptr::<tokenward_authenticator>(Arc::new(CAuthenticator::new(inner)));
                ffi::write_out(out, handle);
                tokenward_result::Ok
            }
            Err(e) => config_invalid(&e.to_string(), err_buf, err_len, err_n),
        }
    }
}

/// Checks the options for the outbound Client Credentials client (see
/// `tokenward_token_client`), loads keys and TLS material, and makes a token client. No
/// request is sent yet.
///
/// **Consumes `builder` in every case** (success or failure, except when `builder` is NULL):
/// do not use or free it afterwards.
///
/// On success stores a new handle in `*out` (free it with `tokenward_token_client_free`);
/// start-up warnings (see `tokenward_token_client_warning`) are also sent to the log
/// callback at WARNING level, and so are later token request failures.
///
/// On a configuration error returns `TOKENWARD_RESULT_CONFIG_INVALID`, leaves `*out`
/// untouched, and fills the optional `err_buf`/`err_n` exactly as
/// `tokenward_config_builder_build` does (e.g. `option token_endpoint is required for the
/// Client Credentials grant`).
///
/// Returns `TOKENWARD_RESULT_NULL_PARAMETER` when `builder` or `out` is NULL (a non-NULL
/// builder is still consumed).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_config_builder_build_token_client(
    builder: *mut tokenward_config_builder,
    out: *mut *const tokenward_token_client,
    err_buf: *mut c_char,
    err_len: usize,
    err_n: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(builder) = ffi::box_from_ptr::<tokenward_config_builder>(builder) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        let sink = builder.sink();
        match TokenClientConfig::from_raw(&builder.raw).and_then(TokenClient::new) {
            Ok(inner) => {
                log_warnings(sink.as_ref(), inner.warnings());
                let handle = ffi::arc_into_ptr::<tokenward_token_client>(Arc::new(CTokenClient::new(inner, sink)));
                ffi::write_out(out, handle);
                tokenward_result::Ok
            }
            Err(e) => config_invalid(&e.to_string(), err_buf, err_len, err_n),
        }
    }
}

/// Frees a builder that was not built. NULL does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_config_builder_free(builder: *mut tokenward_config_builder) {
    ffi_panic_boundary! {
        drop(ffi::box_from_ptr::<tokenward_config_builder>(builder));
    }
}
