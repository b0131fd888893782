//! Numbered result codes and their messages.
#![allow(unsafe_code)] // only for #[unsafe(no_mangle)]; unsafe blocks live in ffi.rs

use crate::ffi;
use crate::panic::ffi_panic_boundary;

/// A result code. `TOKENWARD_RESULT_OK` (0) is success; every other value is an error.
///
/// Numbers are stable and never reused; a retired code stays listed as "reserved".
/// Ranges: 1xx misuse of the API; 2xx configuration; 300–449 deny reasons (these are never
/// *returned* by a function: they classify a verdict, see `tokenward_verdict_reason_code`
/// and `tokenward_result_is_denial`); 450–499 failures of the outbound token client
/// (returned by `tokenward_token_client_get`); 5xx internal failures.
///
/// In C this is a `uint32_t`; compare it with the `TOKENWARD_RESULT_*` constants.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum tokenward_result {
    /// Success.
    Ok = 0,
    // 1xx: misuse
    /// A required pointer argument was NULL (or a NULL data pointer came with a length > 0).
    NullParameter = 100,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 101,
    /// `tokenward_config_builder_set` was given a key that is not a tokenward option.
    UnknownOption = 102,
    /// The caller's output buffer is too small (nothing was written).
    BufferTooSmall = 103,
    /// tokenward panicked; the call had no effect on its out-params. Please report it.
    Panic = 104,
    /// An index is not below the matching count.
    IndexOutOfRange = 105,
    /// An argument has a value outside its documented range.
    InvalidArgument = 106,
    // 2xx: configuration
    /// The options do not form a working configuration; the message names the option.
    ConfigInvalid = 200,
    // 3xx: deny reasons (token refused; verdict classification only)
    /// No `Authorization: Bearer` credential (401).
    DenyMissingToken = 300,
    /// Malformed header or token (401).
    DenyMalformedToken = 301,
    /// The AS says the token is not active (401).
    DenyInactive = 302,
    /// The token has expired (401).
    DenyExpired = 303,
    /// `nbf` is in the future (401).
    DenyNotYetValid = 304,
    /// `aud` does not match `token_audience` (401).
    DenyAudienceMismatch = 305,
    /// `iss` does not match `token_issuer` (401).
    DenyIssuerMismatch = 306,
    /// `scope` lacks a `token_required_scope` (403).
    DenyInsufficientScope = 307,
    /// A standard claim has the wrong type (401).
    DenyMalformedClaims = 308,
    /// `thumbprint_verify` is on and no usable client certificate was given (401).
    DenyCertificateRequired = 309,
    /// The token is bound to another certificate, or not bound (401).
    DenyCertificateMismatch = 310,
    /// The identity claims do not map to the identity headers (403).
    DenyUnmappableClaims = 311,
    /// A JWT refused before its claims: header, unknown key or signature (401;
    /// `validation = jwt`, `jwt_or_introspection`).
    DenyInvalidJwt = 312,
    /// The DPoP proof is missing or wrong (401, `WWW-Authenticate: DPoP
    /// error="invalid_dpop_proof"`).
    DenyInvalidDpopProof = 313,
    /// The token does not fit its scheme or the proof's key (401, `error="invalid_token"`).
    DenyDpopBinding = 314,
    /// `validation = keystone`: Keystone does not know the token (invalid, expired or
    /// revoked), or its answer, binding, access rules or the service token refuse it (401,
    /// `WWW-Authenticate: Keystone uri="…"`; the reason string says which).
    DenyKeystoneToken = 315,
    /// A deny reason newer than this library's table (see the reason string).
    DenyOther = 399,
    // 4xx: authorization server
    /// The AS could not answer (503).
    DenyAsUnavailable = 400,
    /// `validation = keystone`: Keystone could not answer, or refused this service's own
    /// credentials (503 with `Retry-After`).
    DenyKeystoneUnavailable = 401,
    // 450-499: outbound token client (returned by tokenward_token_client_get)
    /// The AS rejected the token client's own credentials (wrong secret, unknown client,
    /// certificate not accepted); retrying with the same configuration will not help.
    TokenCredentialsRejected = 450,
    /// The token request got no usable answer: AS unreachable or timed out, TLS failure,
    /// an unexpected status or body, or a client assertion that could not be signed.
    TokenAsUnavailable = 451,
    // 5xx: internal
    /// An internal failure (for example a string with an interior NUL byte from the core).
    Internal = 500,
}

impl tokenward_result {
    /// The fixed message of a code.
    pub fn message(self) -> &'static str {
        use tokenward_result::*;
        match self {
            Ok => "success",
            NullParameter => "a required pointer argument was NULL",
            InvalidUtf8 => "a string argument is not valid UTF-8",
            UnknownOption => "the key is not a tokenward option",
            BufferTooSmall => "the output buffer is too small",
            Panic => "tokenward panicked (a bug; please report it)",
            IndexOutOfRange => "index out of range",
            InvalidArgument => "an argument is out of its range",
            ConfigInvalid => "the configuration is invalid",
            DenyMissingToken => "denied: no bearer token",
            DenyMalformedToken => "denied: malformed token",
            DenyInactive => "denied: token not active",
            DenyExpired => "denied: token expired",
            DenyNotYetValid => "denied: token not yet valid",
            DenyAudienceMismatch => "denied: audience mismatch",
            DenyIssuerMismatch => "denied: issuer mismatch",
            DenyInsufficientScope => "denied: insufficient scope",
            DenyMalformedClaims => "denied: malformed claims",
            DenyCertificateRequired => "denied: client certificate required",
            DenyCertificateMismatch => "denied: certificate mismatch",
            DenyUnmappableClaims => "denied: unmappable claims",
            DenyInvalidJwt => "denied: JWT refused (header, key or signature)",
            DenyInvalidDpopProof => "denied: invalid DPoP proof",
            DenyDpopBinding => "denied: token not usable with this scheme or proof key",
            DenyKeystoneToken => "denied: Keystone token refused",
            DenyOther => "denied",
            DenyAsUnavailable => "denied: authorization server unavailable",
            DenyKeystoneUnavailable => "denied: Keystone unavailable",
            TokenCredentialsRejected => "token request: the client credentials were rejected",
            TokenAsUnavailable => "token request: authorization server unavailable",
            Internal => "internal error",
        }
    }

    /// Every code, for tests and lookups.
    pub(crate) const ALL: &'static [tokenward_result] = {
        use tokenward_result::*;
        &[
            Ok,
            NullParameter,
            InvalidUtf8,
            UnknownOption,
            BufferTooSmall,
            Panic,
            IndexOutOfRange,
            InvalidArgument,
            ConfigInvalid,
            DenyMissingToken,
            DenyMalformedToken,
            DenyInactive,
            DenyExpired,
            DenyNotYetValid,
            DenyAudienceMismatch,
            DenyIssuerMismatch,
            DenyInsufficientScope,
            DenyMalformedClaims,
            DenyCertificateRequired,
            DenyCertificateMismatch,
            DenyUnmappableClaims,
            DenyInvalidJwt,
            DenyInvalidDpopProof,
            DenyDpopBinding,
            DenyKeystoneToken,
            DenyOther,
            DenyAsUnavailable,
            DenyKeystoneUnavailable,
            TokenCredentialsRejected,
            TokenAsUnavailable,
            Internal,
        ]
    };

    /// The code with this number, if any.
    pub fn from_u32(n: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| *r as u32 == n)
    }

    /// The code of a core deny reason (its `code()` string).
    pub fn from_reason_code(code: &str) -> Self {
        use tokenward_result::*;
        match code {
            "missing_token" => DenyMissingToken,
            "malformed_token" => DenyMalformedToken,
            "inactive" => DenyInactive,
            "expired" => DenyExpired,
            "not_yet_valid" => DenyNotYetValid,
            "audience_mismatch" => DenyAudienceMismatch,
            "issuer_mismatch" => DenyIssuerMismatch,
            "insufficient_scope" => DenyInsufficientScope,
            "malformed_claims" => DenyMalformedClaims,
            "certificate_required" => DenyCertificateRequired,
            "certificate_mismatch" => DenyCertificateMismatch,
            "unmappable_claims" => DenyUnmappableClaims,
            "invalid_jwt" => DenyInvalidJwt,
            "invalid_dpop_proof" => DenyInvalidDpopProof,
            "dpop_binding" => DenyDpopBinding,
            "as_unavailable" => DenyAsUnavailable,
            "keystone_unavailable" => DenyKeystoneUnavailable,
            code if code.starts_with("keystone_") => DenyKeystoneToken,
            _ => DenyOther,
        }
    }
}

/// Copies the message of `result` (NUL-terminated) into `buf` of `len` bytes and stores its
/// length without the NUL in `*out_n`.
///
/// Returns `TOKENWARD_RESULT_BUFFER_TOO_SMALL` (writing nothing) when the message and its NUL
/// do not fit, `TOKENWARD_RESULT_NULL_PARAMETER` when `buf` or `out_n` is NULL. Unknown
/// numbers get the message "unknown result code". No global or thread-local state.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_result_message(
    result: u32,
    buf: *mut std::ffi::c_char,
    len: usize,
    out_n: *mut usize,
) -> tokenward_result {
    ffi_panic_boundary! {
        if buf.is_null() || out_n.is_null() {
            return tokenward_result::NullParameter;
        }
        let msg = tokenward_result::from_u32(result).map_or("unknown result code", tokenward_result::message);
        if !ffi::copy_with_nul(buf.cast(), len, msg.as_bytes()) {
            return tokenward_result::BufferTooSmall;
        }
        ffi::write_out(out_n, msg.len());
        tokenward_result::Ok
    }
}

/// Whether `result` classifies a refused token (300–449). The outbound token client's
/// failures (450–499) are not denials.
#[unsafe(no_mangle)]
pub extern "C" fn tokenward_result_is_denial(result: u32) -> bool {
    (300..450).contains(&result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_are_fixed_and_unique() {
        let expected: &[(tokenward_result, u32)] = &[
            (tokenward_result::Ok, 0),
            (tokenward_result::NullParameter, 100),
            (tokenward_result::InvalidUtf8, 101),
            (tokenward_result::UnknownOption, 102),
            (tokenward_result::BufferTooSmall, 103),
            (tokenward_result::Panic, 104),
            (tokenward_result::IndexOutOfRange, 105),
            (tokenward_result::InvalidArgument, 106),
            (tokenward_result::ConfigInvalid, 200),
            (tokenward_result::DenyMissingToken, 300),
            (tokenward_result::DenyUnmappableClaims, 311),
            (tokenward_result::DenyInvalidJwt, 312),
            (tokenward_result::DenyInvalidDpopProof, 313),
            (tokenward_result::DenyDpopBinding, 314),
            (tokenward_result::DenyOther, 399),
            (tokenward_result::DenyAsUnavailable, 400),
            (tokenward_result::TokenCredentialsRejected, 450),
            (tokenward_result::TokenAsUnavailable, 451),
            (tokenward_result::Internal, 500),
        ];
        for (code, n) in expected {
            assert_eq!(*code as u32, *n, "{code:?}");
        }
        let numbers: HashSet<u32> = tokenward_result::ALL.iter().map(|r| *r as u32).collect();
        assert_eq!(numbers.len(), tokenward_result::ALL.len());
        for r in tokenward_result::ALL {
            assert_eq!(tokenward_result::from_u32(*r as u32), Some(*r));
            assert!(!r.message().is_empty());
        }
    }

    #[test]
    fn message_copy() {
        let mut buf = [0 as std::ffi::c_char; 8];
        let mut n = 99usize;
        assert_eq!(
            tokenward_result_message(0, buf.as_mut_ptr(), buf.len(), &mut n),
            tokenward_result::Ok
        );
        assert_eq!((buf.map(|c| c as u8), n), (*b"success\0", 7));
        n = 99;
        assert_eq!(
            tokenward_result_message(100, buf.as_mut_ptr(), buf.len(), &mut n),
            tokenward_result::BufferTooSmall
        );
        assert_eq!(n, 99, "out-param untouched on failure");
        assert!(tokenward_result_is_denial(302));
        assert!(!tokenward_result_is_denial(200));
        assert!(tokenward_result_is_denial(400));
        assert!(!tokenward_result_is_denial(450));
        assert!(!tokenward_result_is_denial(451));
    }
}
