//! Typed errors. No variant carries a token, secret, assertion or key: messages are built from
//! option names, HTTP statuses, the AS's `error`/`error_description` and transport summaries.

use std::fmt;

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
    /// Connect, TLS, timeout or I/O failure.
    #[error("authorization server unreachable: {0}")]
    Unreachable(String),
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
}

fn describe(error: &Option<String>, description: &Option<String>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!(" ({e}: {d})"),
        (Some(e), None) => format!(" ({e})"),
        (None, Some(d)) => format!(" ({d})"),
        (None, None) => String::new(),
    }
}

impl AsError {
    /// A short stable code for logs, metrics and the C door.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::CredentialsRejected { .. } => "credentials_rejected",
            Self::Status { .. } => "bad_status",
            Self::Malformed(_) => "malformed",
            Self::Assertion(_) => "assertion",
        }
    }
}
