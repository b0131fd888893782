//! A request described by a size-versioned struct, for what newer checks need beyond the
//! `Authorization` header and the TLS certificate (the peer address and the proxy's
//! certificate header for `client_cert_header`, the method, URL and `DPoP` header for
//! DPoP, the `X-Auth-Token` and `X-Service-Token` values for `validation = keystone`), and
//! the metrics in the Prometheus text format.
#![allow(unsafe_code)] // only for #[unsafe(no_mangle)]; unsafe blocks live in ffi.rs

use std::borrow::Cow;

use tokenward::headers::is_identity_header;
use tokenward::{KeystoneRequest, Request};

use crate::authenticator::tokenward_authenticator;
use crate::ffi;
use crate::panic::ffi_panic_boundary;
use crate::result::tokenward_result;
use crate::tokenward_str;
use crate::verdict::{Verdict, tokenward_verdict};

/// One request for `tokenward_authenticate_request`.
///
/// Set `struct_size = sizeof(tokenward_request)` and zero every field you do not use (a
/// `tokenward_str` with `len` 0 is absent; its `data` may then be NULL). Fields are appended
/// in later versions; a program built against an older, smaller struct keeps working, the
/// newer fields reading as absent.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct tokenward_request {
    /// Size in bytes of the caller's struct: `sizeof(tokenward_request)`.
    pub struct_size: usize,
    /// The `Authorization` header's value (`Bearer …` or `DPoP …`).
    pub authorization: tokenward_str,
    /// The client certificate of the TLS connection (PEM or DER), `cert_len` bytes.
    pub cert: *const u8,
    /// Length of `cert`.
    pub cert_len: usize,
    /// The names of the request's headers, for the verdict's strip list.
    pub header_names: *const tokenward_str,
    /// Number of `header_names`.
    pub n_headers: usize,
    /// The peer's IP address as text (checked against `trusted_proxies`).
    pub peer: tokenward_str,
    /// The value of the `client_cert_header` header, if the request has it.
    pub forwarded_cert: tokenward_str,
    /// The HTTP method, for a DPoP proof's `htm`.
    pub method: tokenward_str,
    /// The request URL `scheme://host[:port]/path` (query ignored), for a proof's `htu`.
    pub url: tokenward_str,
    /// The `DPoP` header's value.
    pub dpop_proof: tokenward_str,
    /// `validation = keystone`: the `X-Auth-Token` header's value (or `X-Storage-Token`'s
    /// when the request has no `X-Auth-Token`). `authorization` is not read in that mode.
    pub auth_token: tokenward_str,
    /// `validation = keystone`: the `X-Service-Token` header's value.
    pub service_token: tokenward_str,
}

const ABSENT: tokenward_str = tokenward_str {
    data: std::ptr::null(),
    len: 0,
};

impl tokenward_request {
    fn empty() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            authorization: ABSENT,
            cert: std::ptr::null(),
            cert_len: 0,
            header_names: std::ptr::null(),
            n_headers: 0,
            peer: ABSENT,
            forwarded_cert: ABSENT,
            method: ABSENT,
            url: ABSENT,
            dpop_proof: ABSENT,
            auth_token: ABSENT,
            service_token: ABSENT,
        }
    }
}

/// The path of `scheme://host[:port]/path?query` (or of a bare `/path?query`).
fn url_path(url: &str) -> Option<&str> {
    let rest = match url.split_once("://") {
        Some((_, after)) => &after[after.find('/')?..],
        None if url.starts_with('/') => url,
        None => return None,
    };
    Some(rest.split(['?', '#']).next().unwrap_or(rest))
}

/// The `Authorization` value as text: `None` when absent or empty (both read as "no token"
/// in the core); bytes that are not UTF-8 become a malformed token. `from_utf8` first: the
/// lossy scan is several times slower on a 1 KB JWT, and this runs on every request.
pub(crate) fn authorization_text(bytes: &[u8]) -> Option<Cow<'_, str>> {
    (!bytes.is_empty()).then(|| match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    })
}

/// The indexes of `names` that are identity headers; `None` for a NULL name with a length.
pub(crate) fn strip_list(names: &[tokenward_str]) -> Option<Vec<usize>> {
    let mut strip = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let bytes = ffi::try_bytes(name.data.cast(), name.len)?;
        if std::str::from_utf8(bytes).is_ok_and(is_identity_header) {
            strip.push(i);
        }
    }
    Some(strip)
}

/// Checks one request described by `request` (see `tokenward_request`); otherwise as
/// `tokenward_authenticate`, which it extends: same verdicts, same blocking on a miss.
/// Strings that are not UTF-8 count as absent (the `Authorization` value is read as
/// `tokenward_authenticate` reads it).
///
/// With `validation = keystone` the tokens are `auth_token` and `service_token` (validated
/// by Keystone, keystonemiddleware.auth_token's headers in the verdict), `method` and the
/// path of `url` feed application-credential access rules, and a 401 carries
/// `WWW-Authenticate: Keystone uri="…"`; with `bearer_validation` a request without
/// `auth_token` but with `authorization` is checked as an OAuth bearer request.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticate_request(
    auth: *const tokenward_authenticator,
    request: *const tokenward_request,
    out: *mut *mut tokenward_verdict,
) -> tokenward_result {
    ffi_panic_boundary! {
        let (Some(auth), Some(req)) = (
            ffi::try_ref::<tokenward_authenticator>(auth),
            ffi::read_struct_within(request, tokenward_request::empty()),
        ) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() || req.struct_size < std::mem::size_of::<usize>() {
            return tokenward_result::NullParameter;
        }
        let bytes = |s: tokenward_str| ffi::try_bytes(s.data.cast(), s.len);
        let (Some(authorization), Some(cert), Some(names)) = (
            bytes(req.authorization),
            ffi::try_bytes(req.cert, req.cert_len),
            ffi::try_slice(req.header_names, req.n_headers),
        ) else {
            return tokenward_result::NullParameter;
        };
        let Some(strip) = strip_list(names) else {
            return tokenward_result::NullParameter;
        };
        // Outer None: a NULL pointer with a length; inner None: absent (or not UTF-8).
        let text = |s: tokenward_str| {
            bytes(s).map(|b| std::str::from_utf8(b).ok().filter(|t| !t.is_empty()))
        };
        let (Some(peer), Some(forwarded_cert), Some(method), Some(url), Some(dpop_proof)) = (
            text(req.peer),
            text(req.forwarded_cert),
            text(req.method),
            text(req.url),
            text(req.dpop_proof),
        ) else {
            return tokenward_result::NullParameter;
        };
        let (Some(auth_token_bytes), Some(service_token_bytes)) =
            (bytes(req.auth_token), bytes(req.service_token))
        else {
            return tokenward_result::NullParameter;
        };
        // bearer_validation: a request without X-Auth-Token may be an OAuth bearer request.
        let bearer = auth.inner.accepts_bearer() && auth_token_bytes.is_empty() && !authorization.is_empty();
        if auth.inner.config().keystone.is_some() && !bearer {
            let (auth_token, service_token) = (auth_token_bytes, service_token_bytes);
            // Not UTF-8: read as a malformed token, as the Authorization value is.
            let auth_token = authorization_text(auth_token);
            let service_token = authorization_text(service_token);
            let verdict = auth.inner.check_keystone(&KeystoneRequest {
                auth_token: auth_token.as_ref().map(Cow::as_ref),
                service_token: service_token.as_ref().map(Cow::as_ref),
                method,
                path: url.and_then(url_path),
            });
            let verdict = Verdict::new(&auth.inner, verdict, strip);
            ffi::write_out(out, ffi::box_into_ptr::<tokenward_verdict>(verdict));
            return tokenward_result::Ok;
        }
        let authorization = authorization_text(authorization);
        let request = Request {
            authorization: authorization.as_ref().map(Cow::as_ref),
            client_cert: (!cert.is_empty()).then_some(cert),
            peer,
            forwarded_cert,
            method,
            url,
            dpop_proof,
        };
        let verdict = auth.inner.authenticate(&auth.inner.prepare(&request));
        let verdict = Verdict::new(&auth.inner, verdict, strip);
        ffi::write_out(out, ffi::box_into_ptr::<tokenward_verdict>(verdict));
        tokenward_result::Ok
    }
}

/// Writes the authenticator's metrics in the Prometheus text exposition format (0.0.4),
/// NUL-terminated, into `buf` of `buf_len` bytes, labelled `filter` (`metrics_name`, else
/// `tokenward`) and `pid`; the same families as the Python collector.
///
/// `*needed` (required) receives the size the text needs, NUL included. With `buf` NULL and
/// `buf_len` 0 nothing is written and the result is `TOKENWARD_RESULT_OK` (a size query); a
/// buffer too small gives `TOKENWARD_RESULT_BUFFER_TOO_SMALL` and writes nothing. Counters
/// move between calls, so allocate some slack (say twice `*needed`) or retry.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_authenticator_metrics_text(
    auth: *const tokenward_authenticator,
    buf: *mut std::ffi::c_char,
    buf_len: usize,
    needed: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(auth) = ffi::try_ref::<tokenward_authenticator>(auth) else {
            return tokenward_result::NullParameter;
        };
        if needed.is_null() || (buf.is_null() && buf_len > 0) {
            return tokenward_result::NullParameter;
        }
        let label = auth.inner.metrics_label("tokenward");
        let text = tokenward::prometheus::render(&[(label, auth.inner.samples())], std::process::id());
        ffi::write_out(needed, text.len() + 1);
        if buf.is_null() {
            return tokenward_result::Ok;
        }
        if !ffi::copy_with_nul(buf.cast(), buf_len, text.as_bytes()) {
            return tokenward_result::BufferTooSmall;
        }
        tokenward_result::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::url_path;

    #[test]
    fn paths_of_urls() {
        assert_eq!(
            url_path("https://h:1/v2.1/servers?x=1"),
            Some("/v2.1/servers")
        );
        assert_eq!(url_path("http://h"), None);
        assert_eq!(url_path("/a/b#f"), Some("/a/b"));
        assert_eq!(url_path("h/a"), None);
    }
}
