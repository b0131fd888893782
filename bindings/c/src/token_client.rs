//! The outbound side: a Client Credentials token client handle and the tokens it hands out.
#![allow(unsafe_code)] // only for #[unsafe(no_mangle)]; unsafe blocks live in ffi.rs

use std::ffi::c_char;
use std::sync::Arc;

use tokenward::log::{Level, LogSink};
use tokenward::{AccessToken, AsError, Secret, TokenClient};

use crate::ffi::{self, Castable, OwnershipArc, OwnershipBox};
use crate::panic::ffi_panic_boundary;
use crate::result::tokenward_result;
use crate::{ZString, tokenward_str};

/// An outbound OAuth 2.0 client: obtains access tokens from the authorization server's token
/// endpoint by the Client Credentials grant (RFC 6749 §4.4), for a service that calls other
/// services with `Authorization: Bearer <token>`.
///
/// # The outbound client
///
/// * **Building.** Feed a `tokenward_config_builder` with `tokenward_config_builder_set`
///   (Tacker's option names: `token_endpoint` (required), `scope`, `client_id`,
///   `client_secret`, `auth_method` (`client_secret_basic`, `client_secret_post`,
///   `client_secret_jwt`, `private_key_jwt`, `tls_client_auth`), `audience`, `jwt_key_file`,
///   `jwt_algorithm`, `jwt_bearer_time_out`, `certfile`, `keyfile`, `cafile`, `insecure`,
///   `http_connect_timeout`, `token_expiry_margin`) and call
///   `tokenward_config_builder_build_token_client`. Options only the authenticator reads
///   (`introspect_endpoint`, `mapping_*`, ...) are allowed and ignored, so one builder's
///   options can describe both directions.
/// * **Getting a token.** `tokenward_token_client_get` returns the cached token while it is
///   fresh (no I/O) and otherwise blocks for one token request, bounded by
///   `http_connect_timeout`. Tokens are refreshed `token_expiry_margin` seconds before they
///   expire (default min(30 s, lifetime / 2)). However many threads ask at once, one request
///   is sent and its answer (token or error) is shared.
/// * **Sharing.** The token cache is shared by every client in the process with the same
///   endpoint, client id, method, scope, audience, certificate and credential, so building a
///   new client per operation still reuses the token; `tokenward_token_client_requests_sent`
///   counts the requests of that shared cache. A client with another credential never sees
///   a token obtained with a different one.
/// * **Failures.** `TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED` when the AS refuses the
///   client's own credentials (a configuration problem: retrying will not help);
///   `TOKENWARD_RESULT_TOKEN_AS_UNAVAILABLE` for everything else (unreachable, timeout, TLS,
///   an unexpected status or answer, a client assertion that cannot be signed). The
///   message is copied into the optional error buffer of `tokenward_token_client_get` and
///   sent to the builder's log callback at WARNING level. Failures are not cached: the next
///   call tries again. Messages never contain a token, secret, assertion or key.
/// * **After a 401 from the resource server**, call `tokenward_token_client_invalidate`; the
///   next `_get` fetches a new token.
///
/// Ownership: made by `tokenward_config_builder_build_token_client`, freed once with
/// `tokenward_token_client_free` after every call using it has returned; tokens stay valid
/// after their client is freed. Thread-safety: under the hood a read-only `Arc`; any number
/// of threads may call the `tokenward_token_client_*` functions on one handle at once (build
/// one at start-up and share it).
pub struct tokenward_token_client {
    _private: [u8; 0],
}

/// The Rust side of a token client handle.
pub struct CTokenClient {
    inner: TokenClient,
    sink: Arc<dyn LogSink>,
    warnings: Vec<ZString>,
}

impl CTokenClient {
    pub(crate) fn new(inner: TokenClient, sink: Arc<dyn LogSink>) -> Self {
        let warnings = inner.warnings().iter().map(|w| ZString::new(w)).collect();
        Self {
            inner,
            sink,
            warnings,
        }
    }
}

impl Castable for tokenward_token_client {
    type Ownership = OwnershipArc;
    type RustType = CTokenClient;
}

/// An access token obtained by a `tokenward_token_client`.
///
/// Ownership: made by `tokenward_token_client_get`, freed once with `tokenward_token_free`,
/// which also overwrites the token's bytes with zeros; every `tokenward_str` read from it is
/// valid until then. It does not borrow its client. Thread-safety: under the hood a Box that
/// is never mutated after creation; it may be read from any thread, but must not be read
/// while another thread frees it.
pub struct tokenward_token {
    _private: [u8; 0],
}

/// The Rust side of a token.
pub struct CToken {
    token: AccessToken,
    /// The token with a trailing NUL, wiped on drop.
    value: Secret,
    scope: Option<ZString>,
}

impl CToken {
    fn new(token: AccessToken) -> Self {
        let mut value = String::with_capacity(token.secret().len() + 1);
        value.push_str(token.secret());
        value.push('\0');
        let scope = token.scope().map(ZString::new);
        Self {
            value: Secret::new(value),
            token,
            scope,
        }
    }
}

impl Castable for tokenward_token {
    type Ownership = OwnershipBox;
    type RustType = CToken;
}

/// The result code of a failed token request.
pub(crate) fn result_of(e: &AsError) -> tokenward_result {
    match e {
        AsError::CredentialsRejected { .. } => tokenward_result::TokenCredentialsRejected,
        _ => tokenward_result::TokenAsUnavailable,
    }
}

/// Frees a token client. NULL does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_client_free(client: *const tokenward_token_client) {
    ffi_panic_boundary! { ffi::arc_free::<tokenward_token_client>(client) }
}

/// Stores in `*out` a valid access token (free it with `tokenward_token_free`): the cached
/// one while it is fresh, otherwise a new one from the token endpoint. On a miss this blocks
/// for one token request (bounded by `http_connect_timeout`); concurrent callers share it.
///
/// On failure returns `TOKENWARD_RESULT_TOKEN_CREDENTIALS_REJECTED` (the AS refused this
/// client's credentials) or `TOKENWARD_RESULT_TOKEN_AS_UNAVAILABLE` (no usable answer: the
/// AS is unreachable or timed out, answered with an unexpected status or body, or a client
/// assertion could not be signed), leaves `*out` untouched, and, if `err_buf` is not NULL,
/// copies a one-line message (never containing a token or secret) into it like `snprintf`:
/// truncated to `err_len - 1` bytes and NUL-terminated when `err_len > 0`; `*err_n` (if
/// `err_n` is not NULL) receives the full message length, so `*err_n >= err_len` means it
/// was truncated. `err_buf` and `err_n` may be NULL. The same message goes to the log
/// callback (WARNING). Failures are not cached.
///
/// Returns `TOKENWARD_RESULT_NULL_PARAMETER` when `client` or `out` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_client_get(
    client: *const tokenward_token_client,
    out: *mut *mut tokenward_token,
    err_buf: *mut c_char,
    err_len: usize,
    err_n: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(client) = ffi::try_ref::<tokenward_token_client>(client) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        match client.inner.token() {
            Ok(token) => {
                ffi::write_out(out, ffi::box_into_ptr::<tokenward_token>(CToken::new(token)));
                tokenward_result::Ok
            }
            Err(e) => {
                let msg = format!("token request failed ({}): {e}", e.code());
                if client.sink.enabled(Level::Warning) {
                    client.sink.log(Level::Warning, &msg);
                }
                ffi::copy_truncated(err_buf.cast(), err_len, msg.as_bytes());
                ffi::write_out(err_n, msg.len());
                result_of(&e)
            }
        }
    }
}

/// Drops the cached token (for example after the resource server answered 401), for every
/// client sharing the cache; the next `tokenward_token_client_get` fetches a new one. Tokens
/// already handed out stay valid objects.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_client_invalidate(
    client: *const tokenward_token_client,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(client) = ffi::try_ref::<tokenward_token_client>(client) else {
            return tokenward_result::NullParameter;
        };
        client.inner.invalidate();
        tokenward_result::Ok
    }
}

/// Stores in `*out` the number of token requests sent by this client's shared cache (see
/// "Sharing" at `tokenward_token_client`), failed ones included.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_client_requests_sent(
    client: *const tokenward_token_client,
    out: *mut u64,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(client) = ffi::try_ref::<tokenward_token_client>(client) else {
            return tokenward_result::NullParameter;
        };
        if !ffi::write_out(out, client.inner.requests_sent()) {
            return tokenward_result::NullParameter;
        }
        tokenward_result::Ok
    }
}

/// Number of start-up warnings of a token client (weak settings such as `insecure = true`);
/// 0 for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_client_warning_count(
    client: *const tokenward_token_client,
) -> usize {
    ffi_panic_boundary! {
        ffi::try_ref::<tokenward_token_client>(client).map_or(0, |c| c.warnings.len())
    }
}

/// Stores start-up warning `index` in `*out` (borrowed from the client).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_client_warning(
    client: *const tokenward_token_client,
    index: usize,
    out: *mut tokenward_str,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(client) = ffi::try_ref::<tokenward_token_client>(client) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        let Some(w) = client.warnings.get(index) else {
            return tokenward_result::IndexOutOfRange;
        };
        ffi::write_out(out, w.view());
        tokenward_result::Ok
    }
}

/// Frees a token and wipes its bytes. NULL does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_free(token: *mut tokenward_token) {
    ffi_panic_boundary! { drop(ffi::box_from_ptr::<tokenward_token>(token)) }
}

/// The access token to send as `Authorization: Bearer <value>` (borrowed from `token`,
/// NUL-terminated, printable ASCII). Empty for NULL. It is a credential: do not log it.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_value(token: *const tokenward_token) -> tokenward_str {
    ffi_panic_boundary! {
        ffi::try_ref::<tokenward_token>(token)
            .map_or(tokenward_str::EMPTY, |t| tokenward_str::from_nul_terminated(t.value.expose()))
    }
}

/// Milliseconds until the token expires, counted now (0 once expired, and for NULL). The
/// client hands out a cached token only while it is at least `token_expiry_margin` away
/// from expiry.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_expires_in_ms(token: *const tokenward_token) -> u64 {
    ffi_panic_boundary! {
        ffi::try_ref::<tokenward_token>(token).map_or(0, |t| {
            u64::try_from(t.token.expires_in().as_millis()).unwrap_or(u64::MAX)
        })
    }
}

/// The scope the AS granted, if its answer said (borrowed from `token`); empty otherwise and
/// for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_token_scope(token: *const tokenward_token) -> tokenward_str {
    ffi_panic_boundary! {
        ffi::try_ref::<tokenward_token>(token)
            .and_then(|t| t.scope.as_ref())
            .map_or(tokenward_str::EMPTY, ZString::view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes() {
        let rejected = AsError::CredentialsRejected {
            status: 401,
            error: Some("invalid_client".into()),
            description: None,
        };
        assert_eq!(
            result_of(&rejected),
            tokenward_result::TokenCredentialsRejected
        );
        for e in [
            AsError::Unreachable("x".into()),
            AsError::Malformed("x".into()),
            AsError::Assertion("x".into()),
            AsError::Status {
                status: 500,
                error: None,
                description: None,
            },
        ] {
            assert_eq!(result_of(&e), tokenward_result::TokenAsUnavailable);
        }
    }

    #[test]
    fn null_handles() {
        let mut out = std::ptr::null_mut();
        let mut n = 0u64;
        assert_eq!(
            tokenward_token_client_get(
                std::ptr::null(),
                &mut out,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut()
            ),
            tokenward_result::NullParameter
        );
        assert_eq!(
            tokenward_token_client_invalidate(std::ptr::null()),
            tokenward_result::NullParameter
        );
        assert_eq!(
            tokenward_token_client_requests_sent(std::ptr::null(), &mut n),
            tokenward_result::NullParameter
        );
        assert_eq!(tokenward_token_value(std::ptr::null()).len, 0);
        assert_eq!(tokenward_token_expires_in_ms(std::ptr::null()), 0);
        tokenward_token_free(std::ptr::null_mut());
        tokenward_token_client_free(std::ptr::null());
    }
}
