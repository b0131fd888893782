//! The HTTP transport to the authorization server: reqwest (blocking) over rustls, built at
//! start-up to check the TLS material, then lazily once per process so that pre-fork servers
//! (gunicorn `--preload`, uwsgi) get a working client in every worker.

use std::io::Read as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::ClientConfig;
use crate::error::{AsError, ConfigError};
use crate::tls::{self, ClientIdentity};

/// Largest AS answer read; more is a malformed answer.
const MAX_BODY: u64 = 1 << 20;

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes (at most 1 MiB).
    pub body: Vec<u8>,
}

/// Sends form POSTs to the AS. A seam for fault-injection tests.
pub trait Transport: Send + Sync {
    /// POSTs `body` (`application/x-www-form-urlencoded`) with an optional `Authorization`.
    fn post_form(
        &self,
        url: &str,
        authorization: Option<&str>,
        body: String,
    ) -> Result<HttpResponse, AsError>;
}

struct Settings {
    timeout: Duration,
    identity: Option<ClientIdentity>,
    roots: Option<Vec<reqwest::Certificate>>,
    insecure: bool,
}

/// reqwest transport with the configured TLS identity, trust and timeout. Never follows
/// redirects (a redirect would resend the token and credentials elsewhere).
pub struct ReqwestTransport {
    settings: Settings,
    client: Mutex<Option<(u32, reqwest::blocking::Client)>>,
}

impl std::fmt::Debug for ReqwestTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqwestTransport")
            .field("timeout", &self.settings.timeout)
            .field("identity", &self.settings.identity)
            .field("insecure", &self.settings.insecure)
            .finish_non_exhaustive()
    }
}

impl ReqwestTransport {
    /// Loads and checks the TLS material now; the client itself is built on first use.
    pub fn new(config: &ClientConfig) -> Result<Self, ConfigError> {
        let settings = Settings {
            timeout: config.timeout,
            identity: tls::load_identity(&config.tls)?,
            roots: tls::load_ca_bundle(&config.tls)?,
            insecure: config.tls.insecure,
        };
        // Building once proves the key matches the certificate; the client is then dropped so
        // that no runtime thread exists before a pre-fork server forks.
        build_client(&settings).map_err(|e| {
            let option = if settings.identity.is_some() {
                "certfile"
            } else {
                "cafile"
            };
            ConfigError::new(option, format!("cannot be used for TLS ({e})"))
        })?;
        Ok(Self {
            settings,
            client: Mutex::new(None),
        })
    }

    /// The client certificate's identity, if any.
    pub fn identity(&self) -> Option<&ClientIdentity> {
        self.settings.identity.as_ref()
    }

    fn client(&self) -> Result<reqwest::blocking::Client, AsError> {
        let pid = std::process::id();
        let mut slot = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((owner, client)) = slot.as_ref()
            && *owner == pid
        {
            return Ok(client.clone());
        }
        if let Some((_, inherited)) = slot.take() {
            // Built in the parent before fork: its runtime thread does not exist here, and
            // dropping it would wait for that thread forever.
            std::mem::forget(inherited);
        }
        let client = build_client(&self.settings).map_err(AsError::Unreachable)?;
        *slot = Some((pid, client.clone()));
        Ok(client)
    }
}

fn build_client(s: &Settings) -> Result<reqwest::blocking::Client, String> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(s.timeout)
        .connect_timeout(s.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tokenward/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60));
    if let Some(roots) = &s.roots {
        builder = builder.tls_certs_only(roots.iter().cloned());
    }
    if s.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(identity) = &s.identity {
        let identity = reqwest::Identity::from_pem(&identity.pem).map_err(|e| error_chain(&e))?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| error_chain(&e))
}

/// The error and its sources, one line, without the URL.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

impl Transport for ReqwestTransport {
    fn post_form(
        &self,
        url: &str,
        authorization: Option<&str>,
        body: String,
    ) -> Result<HttpResponse, AsError> {
        let client = self.client()?;
        let mut request = client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        if let Some(value) = authorization {
            let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                AsError::Assertion("credentials are not a valid header value".into())
            })?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let unreachable = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() {
                AsError::Unreachable(format!(
                    "timed out after {} s",
                    self.settings.timeout.as_secs()
                ))
            } else {
                AsError::Unreachable(error_chain(&e))
            }
        };
        let response = request.send().map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| AsError::Unreachable(format!("reading the answer failed: {e}")))?;
        if body.len() as u64 > MAX_BODY {
            return Err(AsError::Malformed("answer larger than 1 MiB".into()));
        }
        Ok(HttpResponse { status, body })
    }
}
