//! The shared, immutable authenticator handle and the check itself.
#![allow(unsafe_code)] // only for #[unsafe(no_mangle)]; unsafe blocks live in ffi.rs

use std::borrow::Cow;
use std::ffi::c_char;

use tokenward::Authenticator;
use tokenward::headers::is_identity_header;

use crate::ffi::{self, Castable, OwnershipArc};
use crate::panic::ffi_panic_boundary;
use crate::result::tokenward_result;
use crate::verdict::{Verdict, tokenward_verdict};
use crate::{ZString, tokenward_str};

/// A configured token checker with its verdict cache and connection pool.
///
/// Ownership: made by `tokenward_config_builder_build`, freed once with
/// `tokenward_authenticator_free` after every call using it has returned. Thread-safety:
/// under the hood a read-only `Arc`; any number of threads may call `tokenward_authenticate`
/// on one handle at the same time (that is the intended use: build one at start-up, share
/// it). Verdicts stay valid after the authenticator is freed.
pub struct tokenward_authenticator {
    _private: [u8; 0],
}

/// The Rust side of an authenticator handle.
pub struct CAuthenticator {
    pub(crate) inner: Authenticator,
    warnings: Vec<ZString>,
}

impl CAuthenticator {
    pub(crate) fn new(inner: Authenticator) -> Self {
        let warnings = inner.warnings().iter().map(|w| ZString::new(w)).collect();
        Self { inner, warnings }
    }
}

impl Castable for tokenward_authenticator {
    type Ownership = OwnershipArc;
    type RustType = CAuthenticator;
}

/// Frees an authenticator. NULL does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_free(auth: *const tokenward_authenticator) {
    ffi_panic_boundary! { ffi::arc_free::<tokenward_authenticator>(auth) }
}

/// Checks one request.
///
/// * `authorization`: the raw `Authorization` header value, `authorization_len` bytes
///   (e.g. `Bearer abc`); NULL with length 0 when the request has none. Bytes that are not
///   UTF-8 or not a well-formed bearer token give a 401 `malformed_token` verdict, not an
///   error.
/// * `cert`/`cert_len`: the client certificate of the TLS connection, PEM or DER; NULL with
///   length 0 when there is none. Used only when `thumbprint_verify = true`.
/// * `header_names`/`n_headers`: the names of the request's headers (may be NULL with 0).
///   The verdict lists which of them are identity headers that must be removed before the
///   request reaches the application (`tokenward_verdict_strip_index`), whatever the outcome.
/// * `out`: receives a new verdict, to free with `tokenward_verdict_free`.
///
/// Returns `TOKENWARD_RESULT_OK` for every verdict, allow or deny: a refused token, an
/// unreachable authorization server (503) and so on are verdicts. Errors are only
/// `TOKENWARD_RESULT_NULL_PARAMETER` (`auth` or `out` NULL, or a NULL pointer with a length)
/// and `TOKENWARD_RESULT_PANIC`.
///
/// On a cache miss this blocks for one introspection round trip (bounded by
/// `http_connect_timeout`); concurrent misses on one token share one request. Cache hits do
/// no I/O.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticate(
    auth: *const tokenward_authenticator,
    authorization: *const c_char,
    authorization_len: usize,
    cert: *const u8,
    cert_len: usize,
    header_names: *const tokenward_str,
    n_headers: usize,
    out: *mut *mut tokenward_verdict,
) -> tokenward_result {
    ffi_panic_boundary! {
        let (Some(auth), Some(authorization), Some(cert), Some(names)) = (
            ffi::try_ref::<tokenward_authenticator>(auth),
            ffi::try_bytes(authorization.cast(), authorization_len),
            ffi::try_bytes(cert, cert_len),
            ffi::try_slice(header_names, n_headers),
        ) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        let mut strip = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let Some(bytes) = ffi::try_bytes(name.data.cast(), name.len) else {
                return tokenward_result::NullParameter;
            };
            if std::str::from_utf8(bytes).is_ok_and(is_identity_header) {
                strip.push(i);
            }
        }
        // An absent and an empty header both read as "no token" in the core.
        let authorization = (!authorization.is_empty()).then(|| String::from_utf8_lossy(authorization));
        let header = authorization.as_ref().map(Cow::as_ref);
        let cert = (!cert.is_empty()).then_some(cert);
        let verdict = auth.inner.authenticate(header, cert);
        let verdict = Verdict::new(&auth.inner, verdict, strip);
        ffi::write_out(out, ffi::box_into_ptr::<tokenward_verdict>(verdict));
        tokenward_result::Ok
    }
}

/// Counters of an authenticator (a snapshot). New fields are only ever appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(non_camel_case_types)]
pub struct tokenward_metrics {
    /// Cached positive verdicts used.
    pub cache_hits: u64,
    /// Cached negative verdicts used.
    pub cache_negative_hits: u64,
    /// Lookups that found nothing.
    pub cache_misses: u64,
    /// Misses that waited for another thread's introspection.
    pub coalesced_waits: u64,
    /// Introspection requests sent.
    pub introspections: u64,
    /// Introspections that failed (AS unreachable, bad answer).
    pub as_errors: u64,
    /// Entries in the cache now.
    pub cache_entries: u64,
    /// Entries evicted to stay within `token_cache_size`.
    pub cache_evictions: u64,
    /// Answers found in the shared tier (memcached/Redis).
    pub shared_hits: u64,
    /// Shared-tier operations that failed (down, slow, forged entries).
    pub shared_errors: u64,
}

/// Stores a snapshot of the counters in `*out`.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_metrics(
    auth: *const tokenward_authenticator,
    out: *mut tokenward_metrics,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(auth) = ffi::try_ref::<tokenward_authenticator>(auth) else {
            return tokenward_result::NullParameter;
        };
        let m = auth.inner.metrics();
        let snapshot = tokenward_metrics {
            cache_hits: m.cache_hits,
            cache_negative_hits: m.cache_negative_hits,
            cache_misses: m.cache_misses,
            coalesced_waits: m.coalesced_waits,
            introspections: m.introspections,
            as_errors: m.as_errors,
            cache_entries: m.cache_entries,
            cache_evictions: m.cache_evictions,
            shared_hits: m.shared_hits,
            shared_errors: m.shared_errors,
        };
        if !ffi::write_out(out, snapshot) {
            return tokenward_result::NullParameter;
        }
        tokenward_result::Ok
    }
}

/// Reads one counter by name (`cache_hits`, `cache_negative_hits`, `cache_misses`,
/// `coalesced_waits`, `introspections`, `as_errors`, `cache_entries`, `cache_evictions`,
/// `shared_hits`, `shared_errors`) into `*out`. Returns
/// `TOKENWARD_RESULT_INVALID_ARGUMENT` for another name.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_metric(
    auth: *const tokenward_authenticator,
    name: *const c_char,
    name_len: usize,
    out: *mut u64,
) -> tokenward_result {
    ffi_panic_boundary! {
        let (Some(auth), Some(name)) = (
            ffi::try_ref::<tokenward_authenticator>(auth),
            if name.is_null() { None } else { ffi::try_bytes(name.cast(), name_len) },
        ) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            return tokenward_result::InvalidUtf8;
        };
        match auth.inner.metrics().pairs().iter().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                ffi::write_out(out, *v);
                tokenward_result::Ok
            }
            None => tokenward_result::InvalidArgument,
        }
    }
}

/// Number of start-up warnings (unknown options, weak settings such as `insecure = true`).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_warning_count(
    auth: *const tokenward_authenticator,
) -> usize {
    ffi_panic_boundary! {
        ffi::try_ref::<tokenward_authenticator>(auth).map_or(0, |a| a.warnings.len())
    }
}

/// Stores start-up warning `index` in `*out` (borrowed from the authenticator).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_warning(
    auth: *const tokenward_authenticator,
    index: usize,
    out: *mut tokenward_str,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(auth) = ffi::try_ref::<tokenward_authenticator>(auth) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        let Some(w) = auth.warnings.get(index) else {
            return tokenward_result::IndexOutOfRange;
        };
        ffi::write_out(out, w.view());
        tokenward_result::Ok
    }
}
