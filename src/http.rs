//! The HTTP transport to the authorization server: reqwest over rustls, driven on the calling
//! thread. reqwest's blocking client hands every request to a background thread (four context
//! switches a request); here each request borrows an engine (a current-thread tokio runtime and
//! its client, with its connection pool) from a small pool and runs in place. Engines are made
//! lazily per process, so pre-fork servers (gunicorn `--preload`, uwsgi) get fresh ones in
//! every worker, and the pool grows only to the number of concurrent misses.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::client_config::ClientConfig;
use crate::error::{AsError, ConfigError};
use crate::per_process::PerProcess;
use crate::secret::Secret;
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
    /// Both hold credentials: they stay [`Secret`]s, wiped when the request is done.
    fn post_form(
        &self,
        url: &str,
        authorization: Option<Secret>,
        body: Secret,
    ) -> Result<HttpResponse, AsError>;

    /// [`Transport::post_form`] with a `DPoP` proof header (RFC 9449 §5); returns the answer
    /// and its `DPoP-Nonce`, if any. Transports without DPoP (test doubles) refuse.
    fn post_form_dpop(
        &self,
        url: &str,
        authorization: Option<Secret>,
        body: Secret,
        proof: Secret,
    ) -> Result<(HttpResponse, Option<String>), AsError> {
        let _ = (url, authorization, body, proof);
        Err(AsError::Unreachable(
            "this transport cannot send DPoP proofs".into(),
        ))
    }

    /// GETs a JSON document (AS metadata, a key set). Transports that only post (test
    /// doubles) need not implement it.
    fn get(&self, url: &str) -> Result<Document, AsError> {
        let _ = url;
        Err(AsError::Unreachable(
            "this transport cannot fetch documents".into(),
        ))
    }

    /// A general request (Keystone's identity API): secret header values, an optional JSON
    /// body, one answer header captured. Transports that only post forms (test doubles) need
    /// not implement it.
    fn send_request(&self, request: HttpRequest<'_>) -> Result<HttpReply, AsError> {
        let _ = request;
        Err(AsError::Unreachable(
            "this transport cannot send identity API requests".into(),
        ))
    }
}

/// The method of an [`HttpRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST (with a JSON body).
    Post,
}

/// A request to the identity API. Header values and the body may hold tokens or a password:
/// they stay [`Secret`]s and are sent as sensitive header values.
#[derive(Debug)]
pub struct HttpRequest<'a> {
    /// GET or POST.
    pub method: Method,
    /// The whole URL, query included.
    pub url: &'a str,
    /// Headers to send (name, value).
    pub headers: Vec<(&'static str, Secret)>,
    /// A JSON body (POST).
    pub json: Option<Secret>,
    /// The name of one answer header to hand back (`X-Subject-Token`), if any.
    pub capture: Option<&'static str>,
}

/// The answer to an [`HttpRequest`].
#[derive(Debug, Default)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Body bytes (at most 1 MiB).
    pub body: Vec<u8>,
    /// The value of the captured header, if the answer has it.
    pub captured: Option<Secret>,
}

/// A fetched document: status, body (at most 1 MiB) and the `Cache-Control: max-age` given.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// `max-age` seconds of `Cache-Control`, if the answer has one.
    pub max_age: Option<u64>,
}

/// The `max-age` directive of a `Cache-Control` value (RFC 9111 §5.2.2.1), if well formed.
pub(crate) fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A far-future number is "a long time", not an error.
        Some(value.parse::<u64>().unwrap_or(u64::MAX))
    })
}

/// A secret's buffer lent to the HTTP client as `Bytes` without a copy; wiped on drop.
struct Wiped(Secret);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        self.0.expose().as_bytes()
    }
}

fn wiped_bytes(secret: Secret) -> bytes::Bytes {
    bytes::Bytes::from_owner(Wiped(secret))
}

struct Settings {
    timeout: Duration,
    identity: Option<ClientIdentity>,
    roots: Option<Vec<reqwest::Certificate>>,
    insecure: bool,
}

/// A runtime and the client whose connections live on it.
struct Engine {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// reqwest transport with the configured TLS identity, trust and timeout. Never follows
/// redirects (a redirect would resend the token and credentials elsewhere).
pub(crate) struct ReqwestTransport {
    settings: Settings,
    engines: Mutex<PerProcess<Engine>>,
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
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, ConfigError> {
        let settings = Settings {
            timeout: config.timeout,
            identity: tls::load_identity(&config.tls)?,
            roots: tls::load_ca_bundle(&config.tls)?,
            insecure: config.tls.insecure,
        };
        // Building once proves the key matches the certificate; engines are made on first use.
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
            engines: Mutex::new(PerProcess::new()),
        })
    }

    /// The client certificate's identity, if any.
    pub(crate) fn identity(&self) -> Option<&ClientIdentity> {
        self.settings.identity.as_ref()
    }

    fn take_engine(&self) -> Result<Engine, AsError> {
        let idle = self
            .engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(engine) = idle {
            return Ok(engine);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AsError::Unreachable(format!("cannot start the I/O runtime: {e}")))?;
        let client = build_client(&self.settings).map_err(AsError::Unreachable)?;
        Ok(Engine { runtime, client })
    }

    fn return_engine(&self, engine: Engine) {
        self.engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give(engine, usize::MAX);
    }
}

fn build_client(s: &Settings) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
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

impl ReqwestTransport {
    async fn send(
        &self,
        client: &reqwest::Client,
        url: &str,
        authorization: Option<Secret>,
        body: Secret,
        proof: Option<Secret>,
    ) -> Result<(HttpResponse, Option<String>), AsError> {
        let mut request = client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(wiped_bytes(body));
        if let Some(value) = authorization {
            let value = wiped_bytes(value);
            let mut value =
                reqwest::header::HeaderValue::from_maybe_shared(value).map_err(|_| {
                    AsError::Assertion("credentials are not a valid header value".into())
                })?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(proof) = proof {
            let mut value = reqwest::header::HeaderValue::from_maybe_shared(wiped_bytes(proof))
                .map_err(|_| {
                    AsError::Assertion("the DPoP proof is not a valid header value".into())
                })?;
            value.set_sensitive(true);
            request = request.header("DPoP", value);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let nonce = response
            .headers()
            .get("DPoP-Nonce")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 1024)
            .map(str::to_owned);
        let body = self.read_body(response).await?;
        Ok((HttpResponse { status, body }, nonce))
    }

    fn unreachable(&self, e: reqwest::Error) -> AsError {
        let e = e.without_url();
        if e.is_timeout() {
            AsError::Timeout(format!(
                "timed out after {} s",
                self.settings.timeout.as_secs()
            ))
        } else {
            AsError::Unreachable(error_chain(&e))
        }
    }

    /// The body, cut off with an error past [`MAX_BODY`].
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, AsError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(e))? {
            if (body.len() + chunk.len()) as u64 > MAX_BODY {
                return Err(AsError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn fetch(&self, client: &reqwest::Client, url: &str) -> Result<Document, AsError> {
        let response = client
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let max_age = response
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let body = self.read_body(response).await?;
        Ok(Document {
            status,
            body,
            max_age,
        })
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        request: HttpRequest<'_>,
    ) -> Result<HttpReply, AsError> {
        let HttpRequest {
            method,
            url,
            headers,
            json,
            capture,
        } = request;
        let mut builder = match method {
            Method::Get => client.get(url),
            Method::Post => client.post(url),
        }
        .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in headers {
            let mut value = reqwest::header::HeaderValue::from_maybe_shared(wiped_bytes(value))
                .map_err(|_| AsError::Assertion(format!("{name} is not a valid header value")))?;
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        if let Some(body) = json {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(wiped_bytes(body));
        }
        let response = builder.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let captured = capture.and_then(|name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        });
        let body = self.read_body(response).await?;
        Ok(HttpReply {
            status,
            body,
            captured,
        })
    }

    fn on_engine<T>(
        &self,
        run: impl AsyncFnOnce(&reqwest::Client) -> Result<T, AsError>,
    ) -> Result<T, AsError> {
        let engine = self.take_engine()?;
        let result = engine.runtime.block_on(async {
            settle().await;
            run(&engine.client).await
        });
        self.return_engine(engine);
        result
    }
}

/// Lets a reused engine's connection tasks run before a request. The runtime runs only inside
/// `block_on`, so a pooled connection the AS closed while idle (its keep-alive timeout, a
/// restart) is noticed only here; unnoticed, the request would be sent on the dead socket and
/// fail. Each `yield_now` lets the I/O driver poll once, then the woken tasks run.
async fn settle() {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
}

impl Transport for ReqwestTransport {
    fn post_form(
        &self,
        url: &str,
        authorization: Option<Secret>,
        body: Secret,
    ) -> Result<HttpResponse, AsError> {
        self.on_engine(async |client| self.send(client, url, authorization, body, None).await)
            .map(|(response, _)| response)
    }

    fn post_form_dpop(
        &self,
        url: &str,
        authorization: Option<Secret>,
        body: Secret,
        proof: Secret,
    ) -> Result<(HttpResponse, Option<String>), AsError> {
        self.on_engine(async |client| {
            self.send(client, url, authorization, body, Some(proof))
                .await
        })
    }

    fn get(&self, url: &str) -> Result<Document, AsError> {
        self.on_engine(async |client| self.fetch(client, url).await)
    }

    fn send_request(&self, request: HttpRequest<'_>) -> Result<HttpReply, AsError> {
        self.on_engine(async |client| self.exchange(client, request).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::RawOptions;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Serves `answers` (raw HTTP responses), one per connection, after `delay`.
    fn serve(answers: Vec<String>, delay: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        format!("http://{addr}/introspect")
    }

    fn transport(timeout: &str) -> ReqwestTransport {
        let raw = RawOptions::from_pairs([
            ("client_id", "c"),
            ("client_secret", "s"),
            ("http_connect_timeout", timeout),
        ]);
        ReqwestTransport::new(&ClientConfig::from_raw(&raw).unwrap()).unwrap()
    }

    fn http(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn answers_redirects_and_limits() {
        let url = serve(
            vec![
                http("200 OK", "", r#"{"active":true}"#),
                http(
                    "302 Found",
                    "Location: http://127.0.0.1:1/elsewhere\r\n",
                    "",
                ),
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                    2 << 20,
                    "x".repeat(2 << 20)
                ),
            ],
            Duration::ZERO,
        );
        let t = transport("5");
        let r = t
            .post_form(&url, Some(Secret::new("Basic abc")), Secret::new("token=t"))
            .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, br#"{"active":true}"#.as_slice())
        );
        assert_eq!(
            t.post_form(&url, None, Secret::new("")).unwrap().status,
            302,
            "redirects are not followed"
        );
        assert!(matches!(
            t.post_form(&url, None, Secret::new("")),
            Err(AsError::TooLarge)
        ));
    }

    #[test]
    fn timeout_and_refused_are_unreachable() {
        let url = serve(vec![http("200 OK", "", "{}")], Duration::from_secs(3));
        let started = std::time::Instant::now();
        let e = transport("1")
            .post_form(&url, None, Secret::new(""))
            .unwrap_err();
        assert!(
            matches!(&e, AsError::Timeout(m) if m.contains("timed out")),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = transport("1")
            .post_form(&format!("http://{closed}/x"), None, Secret::new(""))
            .unwrap_err();
        assert!(matches!(e, AsError::Unreachable(_)));
    }

    #[test]
    fn a_pooled_connection_the_server_closed_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            // Keep-alive answers; each connection is closed by the server 100 ms later.
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let t = transport("5");
        assert_eq!(t.get(&url).unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            t.get(&url).unwrap().status,
            200,
            "a fresh connection is dialled"
        );
    }

    #[test]
    fn engines_are_reused() {
        let url = serve(
            vec![http("200 OK", "", "{}"), http("200 OK", "", "{}")],
            Duration::ZERO,
        );
        let t = transport("5");
        t.post_form(&url, None, Secret::new("")).unwrap();
        t.post_form(&url, None, Secret::new("")).unwrap();
        assert_eq!(t.engines.lock().unwrap().len(), 1);
    }
}
