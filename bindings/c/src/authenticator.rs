//! The shared, immutable authenticator handle and the check itself.
#![allow(unsafe_code)] // only for #[unsafe(no_mangle)]; unsafe blocks live in ffi.rs

use std::borrow::Cow;
use std::ffi::c_char;
use std::sync::{Mutex, PoisonError};

use tokenward::{Authenticator, Metrics, Request};

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
    /// NUL-terminated copies of the metric names handed to C (append-only: a view stays
    /// valid while the authenticator lives, as each name's heap storage never moves).
    metric_names: Mutex<Vec<ZString>>,
}

impl CAuthenticator {
    pub(crate) fn new(inner: Authenticator) -> Self {
        let warnings = inner.warnings().iter().map(|w| ZString::new(w)).collect();
        let metrics = inner.metrics();
        let names = metrics
            .pairs()
            .iter()
            .map(|(n, _)| ZString::new(n))
            .collect();
        Self {
            inner,
            warnings,
            metric_names: Mutex::new(names),
        }
    }

    /// A borrowed, NUL-terminated view of the metric `name`, stored on first use.
    fn metric_name(&self, name: &str) -> tokenward_str {
        let mut names = self
            .metric_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = names.iter().find(|z| z.as_str() == name) {
            return known.view();
        }
        let stored = ZString::new(name);
        let view = stored.view();
        names.push(stored);
        view
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
        let Some(strip) = crate::request::strip_list(names) else {
            return tokenward_result::NullParameter;
        };
        let authorization = crate::request::authorization_text(authorization);
        let header = authorization.as_ref().map(Cow::as_ref);
        let cert = (!cert.is_empty()).then_some(cert);
        let prepared = auth.inner.prepare(&Request::new(header, cert));
        let verdict = auth.inner.authenticate(&prepared);
        let verdict = Verdict::new(&auth.inner, verdict, strip);
        ffi::write_out(out, ffi::box_into_ptr::<tokenward_verdict>(verdict));
        tokenward_result::Ok
    }
}

/// Counters of an authenticator (a snapshot), in a struct whose size the caller states.
///
/// Set `struct_size = sizeof(tokenward_metrics)` before calling
/// `tokenward_authenticator_metrics`: the library writes only the counters that fit in
/// `struct_size` bytes and reports how many it wrote. New counters are appended to this
/// struct in later versions, so a program built against an older (smaller) struct keeps
/// working with a newer library, and one built against a newer struct finds the counters an
/// older library does not have left as it initialised them. Every counter, including ones
/// newer than the struct a program was built with, can also be read by name
/// (`tokenward_authenticator_metric`) or listed (`tokenward_authenticator_metrics_list`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct tokenward_metrics {
    /// Size in bytes of the caller's struct: set it to `sizeof(tokenward_metrics)`.
    pub struct_size: usize,
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
    /// JWTs whose signature verified locally (`validation = jwt`, `jwt_or_introspection`).
    pub jwt_verifications: u64,
    /// JWTs refused locally (header, key, signature or claims).
    pub jwt_refusals: u64,
    /// Key-set fetch attempts (AS metadata and JWK Set).
    pub jwks_fetches: u64,
    /// Key-set fetch attempts that failed.
    pub jwks_fetch_errors: u64,
    /// Key-set fetches caused by a token with an unknown `kid`.
    pub jwks_unknown_kid_refetches: u64,
    /// Misses answered 503 at once while the circuit breaker was open.
    pub breaker_rejections: u64,
    /// Active verdicts served past their lifetime while the AS could not answer.
    pub stale_served: u64,
    /// 1 while the circuit breaker toward the AS is open or half-open (a gauge).
    pub breaker_open: u64,
}

impl tokenward_metrics {
    /// Byte offset of the first counter (the counters follow `struct_size`, 8 bytes each).
    const FIRST_COUNTER: usize = std::mem::offset_of!(tokenward_metrics, cache_hits);

    /// The counters of `m` in this struct's field order (append new ones at the end).
    fn counters(m: &Metrics) -> [u64; 18] {
        [
            m.cache_hits,
            m.cache_negative_hits,
            m.cache_misses,
            m.coalesced_waits,
            m.introspections,
            m.as_errors,
            m.cache_entries,
            m.cache_evictions,
            m.shared_hits,
            m.shared_errors,
            m.jwt_verifications,
            m.jwt_refusals,
            m.jwks_fetches,
            m.jwks_fetch_errors,
            m.jwks_unknown_kid_refetches,
            m.breaker_rejections,
            m.stale_served,
            m.breaker_open,
        ]
    }
}

/// Stores a snapshot of the counters in `*out`, within the caller's `out->struct_size`.
///
/// * `out->struct_size` must be set by the caller (normally `sizeof(tokenward_metrics)`);
///   only the counters that lie entirely within `struct_size` bytes are written, nothing
///   past it (`struct_size` itself is not changed). A size smaller than the `struct_size`
///   field gives `TOKENWARD_RESULT_INVALID_ARGUMENT` and writes nothing.
/// * `fields_written` (may be NULL) receives the number of counters written.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_metrics(
    auth: *const tokenward_authenticator,
    out: *mut tokenward_metrics,
    fields_written: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let (Some(auth), Some(struct_size)) = (
            ffi::try_ref::<tokenward_authenticator>(auth),
            ffi::read_struct_size(out),
        ) else {
            return tokenward_result::NullParameter;
        };
        if struct_size < tokenward_metrics::FIRST_COUNTER {
            return tokenward_result::InvalidArgument;
        }
        let counters = tokenward_metrics::counters(&auth.inner.metrics());
        let written =
            ffi::write_u64s_within(out, struct_size, tokenward_metrics::FIRST_COUNTER, &counters);
        if !fields_written.is_null() {
            ffi::write_out(fields_written, written);
        }
        tokenward_result::Ok
    }
}

/// Reads one counter by name into `*out`: any name `tokenward_authenticator_metrics_list`
/// lists (`cache_hits`, `cache_negative_hits`, `cache_misses`, `coalesced_waits`,
/// `introspections`, `as_errors`, `cache_entries`, `cache_evictions`, `shared_hits`,
/// `shared_errors`, `jwt_verifications`, `jwt_refusals`, `jwks_fetches`, `jwks_fetch_errors`,
/// `jwks_unknown_kid_refetches`, `breaker_rejections`, `stale_served`, `breaker_open`, and
/// the counters later versions add). Returns
/// `TOKENWARD_RESULT_INVALID_ARGUMENT` for a name this library does not have.
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
        let metrics = auth.inner.metrics();
        let pairs = metrics.pairs();
        match pairs.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                ffi::write_out(out, *v);
                tokenward_result::Ok
            }
            None => tokenward_result::InvalidArgument,
        }
    }
}

/// One counter of `tokenward_authenticator_metrics_list`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct tokenward_metric {
    /// Its name, e.g. `cache_hits` (borrowed from the authenticator).
    pub name: tokenward_str,
    /// Its value at the time of the call.
    pub value: u64,
}

/// Lists every counter the library has, by name, from one snapshot.
///
/// Writes the first `min(out_len, total)` counters to `out` (which may be NULL when
/// `out_len` is 0) and stores `total`, the number of counters this library has, in
/// `*n_metrics`; call it with `out_len` 0 to size the array. The names are valid until the
/// authenticator is freed. Counters added by later versions appear here without any change
/// to the caller.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_metrics_list(
    auth: *const tokenward_authenticator,
    out: *mut tokenward_metric,
    out_len: usize,
    n_metrics: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(auth) = ffi::try_ref::<tokenward_authenticator>(auth) else {
            return tokenward_result::NullParameter;
        };
        if n_metrics.is_null() || (out.is_null() && out_len > 0) {
            return tokenward_result::NullParameter;
        }
        let metrics = auth.inner.metrics();
        let pairs = metrics.pairs();
        let listed: Vec<tokenward_metric> = pairs
            .iter()
            .take(out_len)
            .map(|(name, value)| tokenward_metric {
                name: auth.metric_name(name),
                value: *value,
            })
            .collect();
        ffi::write_slice(out, &listed);
        ffi::write_out(n_metrics, pairs.len());
        tokenward_result::Ok
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `counters()` lists the values in the struct's field order, 8 bytes apart from
    /// `FIRST_COUNTER`, which is what `tokenward_authenticator_metrics` relies on.
    #[test]
    #[allow(clippy::needless_update)] // the core may add counters this struct lacks
    fn counters_follow_the_field_order() {
        let m = Metrics {
            cache_hits: 1,
            cache_negative_hits: 2,
            cache_misses: 3,
            coalesced_waits: 4,
            introspections: 5,
            as_errors: 6,
            cache_entries: 7,
            cache_evictions: 8,
            shared_hits: 9,
            shared_errors: 10,
            jwt_verifications: 11,
            jwt_refusals: 12,
            jwks_fetches: 13,
            jwks_fetch_errors: 14,
            jwks_unknown_kid_refetches: 15,
            breaker_rejections: 16,
            stale_served: 17,
            breaker_open: 1,
        };
        let size = std::mem::size_of::<tokenward_metrics>();
        let mut out = tokenward_metrics {
            struct_size: size,
            ..tokenward_metrics::default()
        };
        let counters = tokenward_metrics::counters(&m);
        assert_eq!(
            size,
            tokenward_metrics::FIRST_COUNTER + 8 * counters.len(),
            "every field after struct_size is a counter"
        );
        let written =
            ffi::write_u64s_within(&mut out, size, tokenward_metrics::FIRST_COUNTER, &counters);
        assert_eq!(written, counters.len());
        let want = tokenward_metrics {
            struct_size: size,
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
            jwt_verifications: m.jwt_verifications,
            jwt_refusals: m.jwt_refusals,
            jwks_fetches: m.jwks_fetches,
            jwks_fetch_errors: m.jwks_fetch_errors,
            jwks_unknown_kid_refetches: m.jwks_unknown_kid_refetches,
            breaker_rejections: m.breaker_rejections,
            stale_served: m.stale_served,
            breaker_open: m.breaker_open,
        };
        assert_eq!(out, want);
        // The struct's order is the core's `pairs()` order (what the names list shows).
        let pairs = m.pairs();
        for (i, value) in counters.iter().enumerate() {
            assert_eq!(*value, pairs[i].1, "counter {i} is {}", pairs[i].0);
        }
    }
}
