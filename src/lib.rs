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

pub mod assertion;
pub mod authenticator;
pub mod breaker;
pub mod cache;
pub mod claims;
pub mod client_auth;
pub mod client_config;
pub mod clock;
pub mod config;
pub mod dpop;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod headers;
pub mod http;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod keystone;
pub mod log;
pub mod options;
mod per_process;
pub mod prometheus;
pub mod proxy_cert;
pub mod secret;
pub mod shared_cache;
mod single_flight;
pub mod strict_json;
pub mod thumbprint;
pub mod tls;
pub mod token_client;

pub use authenticator::{
    Authenticator, Denial, DenyReason, Grant, Metrics, Prepared, Request, Verdict,
};
pub use config::{FilterConfig, RawOptions};
pub use error::{AsError, ConfigError};
pub use keystone::{KeystoneRefusal, KeystoneRequest};
pub use secret::Secret;
pub use token_client::{AccessToken, TokenClient, TokenClientConfig};
