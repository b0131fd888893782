//! The outcome of one check, with borrowed views for the HTTP server.
#![allow(unsafe_code)] // only for #[unsafe(no_mangle)]; unsafe blocks live in ffi.rs

use std::sync::Arc;

use tokenward::{Authenticator, Grant, Verdict as CoreVerdict};

use crate::ffi::{self, Castable, OwnershipBox};
use crate::panic::ffi_panic_boundary;
use crate::result::tokenward_result;
use crate::{ZString, ZStrings, tokenward_str};

/// The answer for one request: allow (identity headers to add) or deny (status, response
/// headers, JSON body), plus the request headers to strip.
///
/// Ownership: made by `tokenward_authenticate`, freed once with `tokenward_verdict_free`;
/// every `tokenward_str` read from it is valid until then. It does not borrow the
/// authenticator. Thread-safety: under the hood a Box that is never mutated after creation;
/// it may be read from any thread, but must not be read while another thread frees it.
pub struct tokenward_verdict {
    _private: [u8; 0],
}

/// Identity headers of a grant, stored NUL-terminated once per cached grant (in the core's
/// shared `Grant`'s door slot, so a cache hit copies nothing): name and value of each header
/// in turn, then `token_info`, in one buffer.
pub(crate) struct Identity(ZStrings);

impl Identity {
    fn of(grant: &Grant) -> Self {
        let (headers, token_info) = (grant.headers(), grant.token_info_json());
        let bytes = headers
            .iter()
            .map(|(h, v)| h.name.len() + v.len())
            .sum::<usize>();
        let mut strings = ZStrings::with_capacity(2 * headers.len() + 1, bytes + token_info.len());
        for (header, value) in headers {
            strings.push(header.name);
            strings.push(value);
        }
        strings.push(token_info);
        Identity(strings.finish())
    }

    fn header_count(&self) -> usize {
        self.0.len() / 2
    }

    fn header(&self, index: usize) -> Option<(tokenward_str, tokenward_str)> {
        if index >= self.header_count() {
            return None;
        }
        Some((self.0.view(2 * index)?, self.0.view(2 * index + 1)?))
    }

    fn token_info(&self) -> tokenward_str {
        self.0
            .view(self.0.len().wrapping_sub(1))
            .unwrap_or(tokenward_str::EMPTY)
    }
}

pub(crate) struct Refusal {
    status: u16,
    code: tokenward_result,
    reason: ZString,
    message: ZString,
    status_line: ZString,
    body: ZString,
    headers: Vec<(ZString, ZString)>,
}

enum Kind {
    /// `own` is set only when the grant's door slot already holds another door's data.
    Allow {
        grant: Arc<Grant>,
        own: Option<Box<Identity>>,
    },
    Deny(Box<Refusal>),
}

/// The Rust side of a verdict.
pub struct Verdict {
    kind: Kind,
    strip: Vec<usize>,
}

impl Castable for tokenward_verdict {
    type Ownership = OwnershipBox;
    type RustType = Verdict;
}

impl Verdict {
    pub(crate) fn new(auth: &Authenticator, verdict: CoreVerdict, strip: Vec<usize>) -> Self {
        let kind = match verdict {
            CoreVerdict::Allow(grant) => {
                // Built once per grant: the first verdict builds and offers it, every later
                // one (from any thread) finds it. A slot holding another door's data is left
                // alone and this verdict keeps its own copy.
                let stored = match grant.door_data::<Identity>() {
                    Some(_) => true,
                    None => grant.offer_door_data(Identity::of(&grant)).is_some(),
                };
                let own = (!stored).then(|| Box::new(Identity::of(&grant)));
                Kind::Allow { grant, own }
            }
            CoreVerdict::Deny(denial) => Kind::Deny(Box::new(Refusal {
                status: denial.status(),
                code: tokenward_result::from_reason_code(denial.reason.code()),
                reason: ZString::new(denial.reason.code()),
                message: ZString::new(&denial.reason.to_string()),
                status_line: ZString::new(denial.status_line()),
                body: ZString::new(denial.body()),
                headers: auth
                    .denial_headers(&denial)
                    .iter()
                    .map(|(n, v)| (ZString::new(n), ZString::new(v)))
                    .collect(),
            })),
        };
        Verdict { kind, strip }
    }

    fn identity(&self) -> Option<&Identity> {
        match &self.kind {
            Kind::Allow { own: Some(own), .. } => Some(own),
            Kind::Allow { grant, own: None } => grant.door_data::<Identity>(),
            Kind::Deny(_) => None,
        }
    }

    fn refusal(&self) -> Option<&Refusal> {
        match &self.kind {
            Kind::Deny(r) => Some(r),
            Kind::Allow { .. } => None,
        }
    }
}

fn verdict<'a>(v: *const tokenward_verdict) -> Option<&'a Verdict> {
    ffi::try_ref::<tokenward_verdict>(v)
}

fn pair_at(
    pair: Option<(tokenward_str, tokenward_str)>,
    name: *mut tokenward_str,
    value: *mut tokenward_str,
) -> tokenward_result {
    if name.is_null() || value.is_null() {
        return tokenward_result::NullParameter;
    }
    let Some((n, v)) = pair else {
        return tokenward_result::IndexOutOfRange;
    };
    ffi::write_out(name, n);
    ffi::write_out(value, v);
    tokenward_result::Ok
}

/// Frees a verdict. NULL does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_free(v: *mut tokenward_verdict) {
    ffi_panic_boundary! { drop(ffi::box_from_ptr::<tokenward_verdict>(v)) }
}

/// Whether the request may proceed. `false` for a refusal (and for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_allowed(v: *const tokenward_verdict) -> bool {
    ffi_panic_boundary! { verdict(v).is_some_and(|v| matches!(v.kind, Kind::Allow { .. })) }
}

/// The HTTP status: 200 when allowed; 401 (bad or missing token), 403 (claims do not map, or
/// scope insufficient) or 503 (authorization server unavailable) when refused; 0 for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_status(v: *const tokenward_verdict) -> u16 {
    ffi_panic_boundary! {
        match verdict(v) {
            None => 0,
            Some(v) => v.refusal().map_or(200, |r| r.status),
        }
    }
}

/// The refusal reason as a number (a `TOKENWARD_RESULT_DENY_*` code, 3xx/4xx, see
/// `tokenward_result_is_denial`); `TOKENWARD_RESULT_OK` when allowed;
/// `TOKENWARD_RESULT_NULL_PARAMETER` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_reason_code(v: *const tokenward_verdict) -> tokenward_result {
    ffi_panic_boundary! {
        match verdict(v) {
            None => tokenward_result::NullParameter,
            Some(v) => v.refusal().map_or(tokenward_result::Ok, |r| r.code),
        }
    }
}

/// The refusal reason as a short stable string (`inactive`, `expired`,
/// `certificate_mismatch`, `as_unavailable`, ...); empty when allowed or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_reason(v: *const tokenward_verdict) -> tokenward_str {
    ffi_panic_boundary! {
        verdict(v).and_then(Verdict::refusal).map_or(tokenward_str::EMPTY, |r| r.reason.view())
    }
}

/// A one-line description of the refusal for logs (never holds the token or a secret);
/// empty when allowed or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_reason_message(v: *const tokenward_verdict) -> tokenward_str {
    ffi_panic_boundary! {
        verdict(v).and_then(Verdict::refusal).map_or(tokenward_str::EMPTY, |r| r.message.view())
    }
}

/// The status line text, e.g. `401 Unauthorized`; `200 OK` when allowed; empty for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_status_line(v: *const tokenward_verdict) -> tokenward_str {
    ffi_panic_boundary! {
        const OK: &str = "200 OK\0";
        match verdict(v) {
            None => tokenward_str::EMPTY,
            Some(v) => match v.refusal() {
                Some(r) => r.status_line.view(),
                None => tokenward_str { data: OK.as_ptr().cast(), len: OK.len() - 1 },
            },
        }
    }
}

/// The JSON body to send with a refusal (`Content-Type: application/json`); empty when
/// allowed or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_body(v: *const tokenward_verdict) -> tokenward_str {
    ffi_panic_boundary! {
        verdict(v).and_then(Verdict::refusal).map_or(tokenward_str::EMPTY, |r| r.body.view())
    }
}

/// Number of response headers to send with a refusal: `WWW-Authenticate` with 401,
/// `Retry-After` with 503, none with 403. 0 when allowed or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_response_header_count(v: *const tokenward_verdict) -> usize {
    ffi_panic_boundary! {
        verdict(v).and_then(Verdict::refusal).map_or(0, |r| r.headers.len())
    }
}

/// Stores response header `index` (name and value, borrowed from the verdict).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_response_header(
    v: *const tokenward_verdict,
    index: usize,
    name: *mut tokenward_str,
    value: *mut tokenward_str,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(v) = verdict(v) else {
            return tokenward_result::NullParameter;
        };
        let pair = v
            .refusal()
            .and_then(|r| r.headers.get(index))
            .map(|(n, v)| (n.view(), v.view()));
        pair_at(pair, name, value)
    }
}

/// Number of identity headers to add to the request when allowed (`X-User-Id`, `X-Roles`,
/// `X-Project-Id`, ..., `X-Identity-Status: Confirmed`); 0 when refused or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_identity_count(v: *const tokenward_verdict) -> usize {
    ffi_panic_boundary! {
        verdict(v).and_then(Verdict::identity).map_or(0, Identity::header_count)
    }
}

/// Stores identity header `index` (name and value, borrowed from the verdict).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_identity(
    v: *const tokenward_verdict,
    index: usize,
    name: *mut tokenward_str,
    value: *mut tokenward_str,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(v) = verdict(v) else {
            return tokenward_result::NullParameter;
        };
        pair_at(v.identity().and_then(|i| i.header(index)), name, value)
    }
}

/// keystonemiddleware's `token_info` (the token data) as JSON when allowed; empty when
/// refused or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_token_info(v: *const tokenward_verdict) -> tokenward_str {
    ffi_panic_boundary! {
        verdict(v).and_then(Verdict::identity).map_or(tokenward_str::EMPTY, Identity::token_info)
    }
}

/// Number of the caller's request header names (as passed to `tokenward_authenticate`) that
/// are identity headers and must be removed from the request before it is forwarded. Names
/// match ignoring case and with `_` read as `-` (`x_roles` matches `X-Roles`). 0 for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_strip_count(v: *const tokenward_verdict) -> usize {
    ffi_panic_boundary! { verdict(v).map_or(0, |v| v.strip.len()) }
}

/// Stores in `*out` the position, in the caller's `header_names` array, of the `index`-th
/// header to strip (positions ascend).
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_verdict_strip_index(
    v: *const tokenward_verdict,
    index: usize,
    out: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        let Some(v) = verdict(v) else {
            return tokenward_result::NullParameter;
        };
        if out.is_null() {
            return tokenward_result::NullParameter;
        }
        let Some(pos) = v.strip.get(index) else {
            return tokenward_result::IndexOutOfRange;
        };
        ffi::write_out(out, *pos);
        tokenward_result::Ok
    }
}
