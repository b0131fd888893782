//! A string that never shows itself in `Debug` or `Display` and is wiped on drop.
//!
//! What tokenward builds from secrets (the client secret, the Basic credential, assertions,
//! request bodies holding the token) lives in [`Secret`]s, sized once so they never
//! reallocate, and is handed to the HTTP client without a plain copy. Copies outside
//! tokenward's reach are not wiped: the caller's own token string, the buffers in which
//! hyper and rustls frame and encrypt a request, and an access token while the token
//! endpoint's answer is read and parsed.

use std::fmt;
use zeroize::Zeroizing;

/// Secret text: client secrets, memcache keys. Debug prints `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself; call only where it is sent or used as key material.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The buffer, to build a secret in place (grow it only within its capacity).
    pub(crate) fn expose_mut(&mut self) -> &mut String {
        &mut self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }
}
