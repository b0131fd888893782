//! Typed errors. No variant carries a token, secret, assertion or key: messages are built from
//! option names, HTTP statuses, transport summaries and the AS's `error`/`error_description`
//! passed through [`sanitize`].

use std::fmt;

use zeroize::Zeroizing;

/// A configuration that can never work, reported at start-up with the option's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    option: String,
    message: String,
}

impl ConfigError {
    /// An error about `option`; `message` continues the sentence "option X …".
    pub fn new(option: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            option: option.into(),
            message: message.into(),
        }
    }

    /// The option at fault.
    pub fn option(&self) -> &str {
        &self.option
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "option {} {}", self.option, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Why a call to the authorization server did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AsError {
    /// Connect, TLS or I/O failure.
    #[error("authorization server unreachable: {0}")]
    Unreachable(String),
    /// No whole answer within `http_connect_timeout`.
    #[error("authorization server did not answer in time: {0}")]
    Timeout(String),
    /// The answer is larger than the 1 MiB cap.
    #[error("authorization server sent an answer larger than 1 MiB")]
    TooLarge,
    /// The circuit breaker is open: the AS was not asked.
    #[error(
        "authorization server not asked: {failures} failures in a row; next try in {retry_after} s"
    )]
    CircuitOpen {
        /// Seconds until the breaker lets a probe through.
        retry_after: u32,
        /// `as_failure_threshold`, for the message.
        failures: u32,
    },
    /// The AS refused our own client credentials (`invalid_client`, or 401).
    #[error("authorization server rejected the client credentials: HTTP {status}{}", describe(.error, .description))]
    CredentialsRejected {
        /// HTTP status.
        status: u16,
        /// OAuth `error` code, if given.
        error: Option<String>,
        /// OAuth `error_description`, if given.
        description: Option<String>,
    },
    /// The AS answered with an unexpected status.
    #[error("authorization server answered HTTP {status}{}", describe(.error, .description))]
    Status {
        /// HTTP status.
        status: u16,
        /// OAuth `error` code, if given.
        error: Option<String>,
        /// OAuth `error_description`, if given.
        description: Option<String>,
    },
    /// The body was not the JSON object the protocol requires.
    #[error("authorization server sent a malformed answer: {0}")]
    Malformed(String),
    /// A client assertion could not be signed.
    #[error("client assertion could not be built: {0}")]
    Assertion(String),
    /// tokenward failed internally while asking (a panic, caught and reported here).
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(error: &Option<String>, description: &Option<String>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!(" ({e}: {d})"),
        (Some(e), None) => format!(" ({e})"),
        (None, Some(d)) => format!(" ({d})"),
        (None, None) => String::new(),
    }
}

/// Longest AS-provided text kept in an error or a log line, in characters.
pub(crate) const MAX_AS_TEXT: usize = 200;

/// Makes text an AS sent (`error`, `error_description`, `token_type`) safe to log: control
/// characters removed, every occurrence of each of `secrets` (the request's token, client
/// secret, assertion...) replaced by `***`, then cut to [`MAX_AS_TEXT`] characters. If a
/// secret could still be found, nothing of the text is kept.
pub(crate) fn sanitize(text: &str, secrets: &[&str]) -> String {
    // Copies that may hold a secret are wiped when dropped.
    let printable = |s: &str| Zeroizing::new(s.chars().filter(|c| !c.is_control()).collect());
    let mut clean: Zeroizing<String> = printable(text);
    let secrets: Vec<Zeroizing<String>> = secrets
        .iter()
        .map(|s| printable(s))
        .filter(|s| !s.is_empty())
        .collect();
    for secret in &secrets {
        if clean.contains(secret.as_str()) {
            clean = Zeroizing::new(clean.replace(secret.as_str(), "***"));
        }
    }
    if secrets.iter().any(|s| clean.contains(s.as_str())) {
        return "(withheld: it held a secret)".into();
    }
    let mut clean = std::mem::take(&mut *clean);
    match clean.char_indices().nth(MAX_AS_TEXT) {
        Some((cut, _)) => {
            clean.truncate(cut);
            clean.push('…');
            clean
        }
        None => clean,
    }
}

impl AsError {
    /// A short stable code for logs, metrics and the C door.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::TooLarge => "too_large",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::CredentialsRejected { .. } => "credentials_rejected",
            Self::Status { .. } => "bad_status",
            Self::Malformed(_) => "malformed",
            Self::Assertion(_) => "assertion",
            Self::Internal(_) => "internal",
        }
    }

    /// The `kind` label of `tokenward_as_errors_total`, for errors of an AS request that was
    /// sent; `None` for what never reached the AS (breaker, assertion, internal).
    pub fn kind(&self) -> Option<&'static str> {
        Some(match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::Status { .. } => "status",
            Self::Malformed(_) => "garbage",
            Self::TooLarge => "too_large",
            Self::CredentialsRejected { .. } => "rejected",
            Self::CircuitOpen { .. } | Self::Assertion(_) | Self::Internal(_) => return None,
        })
    }

    /// Whether the error says the AS is failing (down, slow, 5xx, garbage, too large), as
    /// opposed to answering: a 4xx never trips the breaker.
    pub fn trips_breaker(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Timeout(_) | Self::Malformed(_) | Self::TooLarge => true,
            Self::Status { status, .. } => !(400..500).contains(status),
            Self::CredentialsRejected { .. }
            | Self::CircuitOpen { .. }
            | Self::Assertion(_)
            | Self::Internal(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_scrubs_then_cuts() {
        assert_eq!(sanitize("bad\r\nsecret\u{1b}[31m", &[]), "badsecret[31m");
        assert_eq!(
            sanitize(
                "token tok-1 and secret s3c\nret, again tok-1",
                &["tok-1", "s3cret", ""]
            ),
            "token *** and secret ***, again ***"
        );
        // A secret at the cut is removed before cutting, not left half-shown.
        let text = format!("{}SECRETVALUE", "x".repeat(195));
        assert_eq!(
            sanitize(&text, &["SECRETVALUE"]),
            format!("{}***", "x".repeat(195))
        );
        let long = "é".repeat(1000);
        let cut = sanitize(&long, &[]);
        assert_eq!(cut.chars().count(), MAX_AS_TEXT + 1);
        assert!(cut.ends_with('…'));
        // A secret that survives the replacement (it contains the mask) withholds the text.
        assert_eq!(sanitize("a**b", &["*"]), "(withheld: it held a secret)");
    }
}
