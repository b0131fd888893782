//! tokenward: an embeddable OAuth 2.0 resource-server core.
//!
//! It validates `Authorization: Bearer` tokens by RFC 7662 introspection, or JWT access tokens
//! (RFC 9068) offline against the AS's keys, with a bounded,
//! single-flight verdict cache; authenticates to the authorization server with any of the five
//! client-authentication methods; checks RFC 8705 certificate binding; and maps claims to the
//! OpenStack identity headers, as keystonemiddleware's `external_oauth2_token` does (minus its
//! known bugs). The Python and C doors live in `bindings/`; this crate has no unsafe code.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tokenward::{Authenticator, Request, Verdict, log::NoLog};
//! let auth = Authenticator::from_options([
//!     ("introspect_endpoint", "https://as.example/introspect"),
//!     ("audience", "https://as.example"),
//!     ("client_id", "rs"), ("client_secret", "secret"),
//!     ("mapping_project_id", "project.id"), ("mapping_project_name", "project.name"),
//!     ("mapping_project_domain_id", "project.domain.id"),
//!     ("mapping_project_domain_name", "project.domain.name"),
//!     ("mapping_user_domain_id", "user_domain.id"), ("mapping_user_domain_name", "user_domain.name"),
//!     ("mapping_roles", "roles"),
//! ], Arc::new(NoLog))?;
//! // Read the request once, try the cache (no I/O), then ask the AS only on a miss.
//! let prepared = auth.prepare(&Request::new(Some("Bearer abc"), None));
//! let verdict = match auth.lookup(&prepared) {
//!     Some(verdict) => verdict,
//!     None => auth.authenticate(&prepared), // blocks: run it off an event loop
//! };
//! match verdict {
//!     Verdict::Allow(grant) => { for (h, v) in grant.headers() { let _ = (h.name, v); } }
//!     Verdict::Deny(d) => { let _ = (d.status(), d.body()); }
//! }
//! # Ok::<(), tokenward::ConfigError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod assertion;
mod authenticator;
mod breaker;
mod cache;
mod claims;
mod client_auth;
mod client_config;
pub mod clock;
mod config;
mod dpop;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod headers;
mod http;
mod introspect;
mod jwks;
mod jwt;
mod keystone;
pub mod log;
pub mod options;
mod per_process;
pub mod prometheus;
mod proxy_cert;
mod secret;
mod shared_cache;
mod single_flight;
mod strict_json;
mod thumbprint;
mod tls;
mod token_client;

// The public face is the re-exports below and the small public namespaces (`log`, `clock`,
// `headers`, `options`, `prometheus`, and the facades `transport`, `jws`,
// `token_client_options`, `keystone_options`); every other module is private. The group
// notes are plain comments: a doc comment on a `pub use` would be prepended to the docs of
// every item it re-exports.

// The authenticator: what it is asked and what it answers.
pub use authenticator::{
    Authenticator, Denial, DenyReason, Grant, Metrics, Prepared, Request, Verdict,
};
// The payloads of a refusal (`DenyReason`).
pub use claims::MappingError;
pub use dpop::ProofFault;
pub use jwt::JwtRefusal;
// Configuration: the raw option map and the filter's typed config built from it.
pub use config::FilterConfig;
pub use options::RawOptions;
// Errors: a start-up (configuration) error and a failed call to the authorization server.
pub use error::{AsError, ConfigError};
// What a Keystone (`validation = keystone`) request carries and why its token is refused.
pub use keystone::{KeystoneRefusal, KeystoneRequest};
// A credential wiped from memory when dropped.
pub use secret::Secret;
// The outbound OAuth client (client credentials grant) and the tokens it gets.
pub use token_client::{AccessToken, TokenClient, TokenClientConfig};

/// The HTTP seam to the authorization server (and Keystone): implement [`Transport`] to
/// script answers in tests ([`Authenticator::with_transport`], [`TokenClient::with_transport`]).
///
/// [`Transport`]: transport::Transport
pub mod transport {
    pub use crate::http::{Document, HttpReply, HttpRequest, HttpResponse, Method, Transport};
}

/// The pieces of a JWT's first sight, one by one (header parse, signature check, claims
/// decode), as `benches/jwt_floor.rs` times them.
pub mod jws {
    pub use crate::jwt::{Algorithm, HeaderPolicy, Jws, parse};
}

/// The options of the token client ([`TokenClient::from_options`]) among
/// [`options::OPTIONS`].
pub mod token_client_options {
    pub use crate::token_client::{OPTION_NAMES, REQUIRED_OPTIONS};
}

/// The options of `validation = keystone` (keystonemiddleware's `auth_token`) among
/// [`options::OPTIONS`].
pub mod keystone_options {
    pub use crate::keystone::{PLUGIN_OPTIONS, uses_option};
}
