//! A hostile or broken Keystone (or something impersonating it): every answer ends in a
//! verdict (401 or 503, never a panic, an allow or a leaked secret). Driven through the
//! transport seam with a manual clock; the fake injects the faults.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokenward::clock::ManualClock;
use tokenward::log::{Level, LogSink};
use tokenward::transport::{HttpReply, HttpRequest, Method, Transport};
use tokenward::{
    AsError, Authenticator, FilterConfig, KeystoneRequest, RawOptions, Secret, Verdict,
};

const NOW: f64 = 1_800_000_000.0;
const USER_TOKEN: &str = "gAAAAAattack-user-token-never-logged";
const SERVICE_TOKEN: &str = "gAAAAAattack-service-token-never-logged";
const OWN_TOKEN: &str = "gAAAAAattack-own-token-never-logged";
const PASSWORD: &str = "attack-pa55word-never-logged";

type Answer = Box<dyn Fn(Method, &str) -> Result<HttpReply, AsError> + Send + Sync>;

/// Answers each request by (method, X-Subject-Token) through a closure.
struct Fake(Answer);

impl Transport for Fake {
    fn post_form(
        &self,
        _: &str,
        _: Option<Secret>,
        _: Secret,
    ) -> Result<tokenward::transport::HttpResponse, AsError> {
        Err(AsError::Internal("no forms here".into()))
    }

    fn send_request(&self, request: HttpRequest<'_>) -> Result<HttpReply, AsError> {
        if request.method == Method::Get && !request.url.contains("/auth/tokens") {
            // Version discovery at the unversioned auth_url: Keystone's own document.
            let versions = serde_json::json!({"versions": {"values": [{"id": "v3.14", "status": "stable",
                "links": [{"rel": "self", "href": format!("{}/v3/", request.url)}]}]}});
            return Ok(HttpReply {
                status: 300,
                body: versions.to_string().into_bytes(),
                captured: None,
            });
        }
        let subject = request
            .headers
            .iter()
            .find(|(n, _)| *n == "X-Subject-Token")
            .map(|(_, v)| v.expose().to_owned())
            .unwrap_or_default();
        (self.0)(request.method, &subject)
    }
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl LogSink for Lines {
    fn enabled(&self, _: Level) -> bool {
        true
    }
    fn log(&self, level: Level, message: &str) {
        self.0.lock().unwrap().push(format!("{level:?} {message}"));
    }
}

fn options(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut pairs = vec![
        ("validation", "keystone"),
        ("auth_url", "https://keystone.example:5000"),
        ("auth_type", "password"),
        ("username", "nova"),
        ("password", PASSWORD),
        ("user_domain_name", "Default"),
        ("project_name", "service"),
        ("project_domain_id", "default"),
    ];
    pairs.extend_from_slice(extra);
    pairs
}

fn rig(
    extra: &[(&'static str, &'static str)],
    answer: impl Fn(Method, &str) -> Result<HttpReply, AsError> + Send + Sync + 'static,
) -> (Authenticator, Arc<Lines>) {
    let config = FilterConfig::from_raw(&RawOptions::from_pairs(options(extra))).unwrap();
    let log = Arc::new(Lines::default());
    let auth = Authenticator::with_parts(
        config,
        Arc::new(Fake(Box::new(answer))),
        log.clone(),
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap();
    (auth, log)
}

fn raw(status: u16, body: impl Into<Vec<u8>>) -> Result<HttpReply, AsError> {
    Ok(HttpReply {
        status,
        body: body.into(),
        captured: None,
    })
}

/// This service's own token, as Keystone issues it.
fn issued() -> Result<HttpReply, AsError> {
    Ok(HttpReply {
        status: 201,
        body: json!({"token": {"expires_at": "2027-06-01T00:00:00.000000Z"}})
            .to_string()
            .into_bytes(),
        captured: Some(Secret::new(OWN_TOKEN)),
    })
}

fn good_token() -> Value {
    json!({"token": {
        "methods": ["password"],
        "user": {"id": "u1", "name": "alice", "domain": {"id": "default", "name": "Default"}},
        "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "member"}],
        "expires_at": "2027-06-01T00:00:00.000000Z",
        "issued_at": "2027-01-15T07:00:00.000000Z",
        "audit_ids": ["abc"]
    }})
}

/// `good_token()` with the member at `pointer` set to `value` (added if absent).
fn with(pointer: &str, value: Value) -> Vec<u8> {
    let mut body = good_token();
    let (parent, name) = pointer.rsplit_once('/').unwrap();
    body.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .insert(name.to_owned(), value);
    body.to_string().into_bytes()
}

/// Every hostile validation answer, by name.
fn hostile() -> Vec<(&'static str, Result<HttpReply, AsError>)> {
    let big_catalog: Vec<Value> = (0..20_000)
        .map(|i| json!({"type": format!("t{i}"), "endpoints": [{"interface": "public", "region": i, "url": "u"}]}))
        .collect();
    vec![
        ("garbage", raw(200, "{{{not json")),
        ("empty", raw(200, "")),
        (
            "non-utf8",
            raw(200, b"{\"token\": {\"user\": \"\xff\xfe\"}}".to_vec()),
        ),
        ("html", raw(200, "<html><body>It works!</body></html>")),
        ("array", raw(200, "[]")),
        ("no-token", raw(200, "{}")),
        ("token-null", raw(200, r#"{"token": null}"#)),
        ("token-list", raw(200, r#"{"token": []}"#)),
        (
            "dup-deep",
            raw(
                200,
                r#"{"token": {"user": {"id": "u1", "id": "admin"}, "expires_at": "2027-01-15T08:00:00Z"}}"#,
            ),
        ),
        (
            "dup-top",
            raw(
                200,
                r#"{"token": {"expires_at": "2027-01-15T08:00:00Z"}, "token": {}}"#,
            ),
        ),
        (
            "deep",
            raw(200, format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
        ),
        (
            "roles-string",
            raw(200, with("/token/roles", json!("admin"))),
        ),
        (
            "roles-object",
            raw(200, with("/token/roles", json!({"name": "admin"}))),
        ),
        (
            "roles-of-strings",
            raw(200, with("/token/roles", json!(["admin"]))),
        ),
        (
            "role-name-number",
            raw(200, with("/token/roles", json!([{"name": 1}]))),
        ),
        (
            "role-name-comma",
            raw(200, with("/token/roles", json!([{"name": "a,admin"}]))),
        ),
        (
            "expires-number",
            raw(200, with("/token/expires_at", json!(1_900_000_000))),
        ),
        (
            "expires-99999",
            raw(
                200,
                with("/token/expires_at", json!("99999-01-01T00:00:00Z")),
            ),
        ),
        (
            "expires-0000",
            raw(
                200,
                with("/token/expires_at", json!("0000-01-01T00:00:00Z")),
            ),
        ),
        (
            "expires-negative",
            raw(
                200,
                with("/token/expires_at", json!("-0001-01-01T00:00:00Z")),
            ),
        ),
        (
            "expires-no-tz",
            raw(200, with("/token/expires_at", json!("2020-01-15T08:00:00"))),
        ),
        (
            "expires-leap",
            raw(
                200,
                with("/token/expires_at", json!("2016-12-31T23:59:60Z")),
            ),
        ),
        (
            "expires-bad-offset",
            raw(
                200,
                with("/token/expires_at", json!("2027-01-15T08:00:00+99:99")),
            ),
        ),
        (
            "expires-fraction",
            raw(
                200,
                with(
                    "/token/expires_at",
                    json!(format!("2020-01-15T08:00:00.{}Z", "9".repeat(5000))),
                ),
            ),
        ),
        (
            "expires-null",
            raw(200, with("/token/expires_at", json!(null))),
        ),
        ("user-string", raw(200, with("/token/user", json!("alice")))),
        ("user-id-number", raw(200, with("/token/user/id", json!(7)))),
        (
            "user-id-control",
            raw(200, with("/token/user/id", json!("u1\r\nX-Roles: admin"))),
        ),
        (
            "project-list",
            raw(200, with("/token/project", json!(["p1"]))),
        ),
        (
            "domain-string",
            raw(200, with("/token/project/domain", json!("default"))),
        ),
        (
            "system-list",
            raw(200, with("/token/system", json!(["all"]))),
        ),
        (
            "system-all-string",
            raw(200, with("/token/system", json!({"all": "yes"}))),
        ),
        (
            "is-admin-string",
            raw(200, with("/token/is_admin_project", json!("yes"))),
        ),
        (
            "catalog-string",
            raw(200, {
                let mut b = good_token();
                b["token"]["catalog"] = json!("everything");
                b["token"]["system"] = json!({"all": "yes"});
                b.to_string().into_bytes()
            }),
        ),
        (
            "catalog-entries",
            raw(200, {
                let mut b = good_token();
                b["token"]["catalog"] =
                    json!([1, {"endpoints": 3}, {"type": "x", "endpoints": [{"interface": 5}]}]);
                b.to_string().into_bytes()
            }),
        ),
        (
            "catalog-huge",
            raw(200, {
                let mut b = good_token();
                b["token"]["catalog"] = Value::Array(big_catalog);
                b.to_string().into_bytes()
            }),
        ),
        (
            "access-rules-string",
            raw(200, {
                let mut b = good_token();
                b["token"]["application_credential"] = json!({"id": "a", "access_rules": "all"});
                b.to_string().into_bytes()
            }),
        ),
        (
            "kerberos-bound",
            raw(
                200,
                with("/token/bind", json!({"kerberos": "alice@EXAMPLE"})),
            ),
        ),
        ("too-large", Err(AsError::TooLarge)),
        ("drip", Err(AsError::Timeout("timed out after 3 s".into()))),
        ("201-empty", raw(201, "")),
        ("204", raw(204, "")),
        ("301", raw(301, "<html>Moved</html>")),
        ("302", raw(302, "")),
        ("307", raw(307, "")),
        ("400", raw(400, r#"{"error": {"message": 5, "title": []}}"#)),
        ("401-html", raw(401, "<html>401</html>")),
        ("403", raw(403, "<html>403</html>")),
        ("404-html", raw(404, "<html>404</html>")),
        ("409", raw(409, "")),
        ("500", raw(500, "<html>Internal Server Error</html>")),
        ("502", raw(502, "")),
        ("503", raw(503, "")),
        ("999", raw(999, "")),
    ]
}

fn deny_status(verdict: &Verdict) -> Option<u16> {
    match verdict {
        Verdict::Deny(d) => Some(d.status()),
        Verdict::Allow(_) => None,
    }
}

#[test]
fn every_hostile_answer_ends_in_a_401_or_503_never_a_panic_or_an_allow() {
    for (name, answer) in hostile() {
        let reply = Mutex::new(Some(answer));
        let (auth, log) = rig(
            &[("as_failure_threshold", "1000")],
            move |method, _| match method {
                Method::Post => issued(),
                Method::Get => reply.lock().unwrap().take().unwrap_or_else(|| raw(404, "")),
            },
        );
        let verdict = catch_unwind(AssertUnwindSafe(|| {
            auth.check_keystone(&KeystoneRequest {
                auth_token: Some(USER_TOKEN),
                service_token: None,
                method: Some("GET"),
                path: Some("/v2.1/servers"),
            })
        }))
        .unwrap_or_else(|_| panic!("{name}: panicked"));
        let status = deny_status(&verdict);
        if name == "catalog-huge" {
            // A big but well-formed catalog is a valid token.
            assert_eq!(status, None, "{name}: {verdict:?}");
            continue;
        }
        assert!(
            matches!(status, Some(401 | 503)),
            "{name}: {status:?} {verdict:?}"
        );
        let text = format!("{verdict:?} {}", log.0.lock().unwrap().join("\n"));
        for secret in [USER_TOKEN, OWN_TOKEN, PASSWORD] {
            assert!(!text.contains(secret), "{name}: {secret} in {text}");
        }
    }
}

#[test]
fn in_delay_auth_decision_mode_a_hostile_answer_passes_nothing_but_invalid() {
    for (name, answer) in hostile() {
        let reply = Mutex::new(Some(answer));
        let (auth, _) = rig(
            &[
                ("delay_auth_decision", "true"),
                ("as_failure_threshold", "1000"),
            ],
            move |method, _| match method {
                Method::Post => issued(),
                Method::Get => reply.lock().unwrap().take().unwrap_or_else(|| raw(404, "")),
            },
        );
        let verdict = auth.check_keystone(&KeystoneRequest {
            auth_token: Some(USER_TOKEN),
            service_token: None,
            method: Some("GET"),
            path: Some("/"),
        });
        match &verdict {
            Verdict::Deny(d) => assert_eq!(d.status(), 503, "{name}: {verdict:?}"),
            Verdict::Allow(_) if name == "catalog-huge" => {}
            Verdict::Allow(g) => {
                let names: Vec<_> = g
                    .headers()
                    .iter()
                    .map(|(h, v)| (h.name, v.as_str()))
                    .collect();
                assert_eq!(names, [("X-Identity-Status", "Invalid")], "{name}");
            }
        }
    }
}

#[test]
fn keystone_5xx_texts_echoing_the_tokens_or_the_password_never_reach_logs_or_errors() {
    // Keystone with debug on (or a proxy in front of it) echoes what it was sent.
    let echo = |what: String| {
        raw(
            500,
            json!({"error": {"code": 500, "title": "Internal Server Error", "message": what}})
                .to_string(),
        )
    };
    let (auth, log) = rig(&[], move |method, subject| match method {
        Method::Post if subject.is_empty() => echo(format!("bad password {PASSWORD}")),
        _ => echo(format!(
            "cannot decrypt {subject} for {OWN_TOKEN} ({PASSWORD})"
        )),
    });
    let verdict = auth.check_keystone(&KeystoneRequest {
        auth_token: Some(USER_TOKEN),
        service_token: Some(SERVICE_TOKEN),
        method: None,
        path: None,
    });
    assert_eq!(deny_status(&verdict), Some(503));
    let (auth2, log2) = rig(&[], move |method, subject| match method {
        Method::Post => issued(),
        Method::Get => echo(format!(
            "cannot decrypt {subject} for {OWN_TOKEN} ({PASSWORD})"
        )),
    });
    let verdict2 = auth2.check_keystone(&KeystoneRequest {
        auth_token: Some(USER_TOKEN),
        service_token: Some(SERVICE_TOKEN),
        method: None,
        path: None,
    });
    assert_eq!(deny_status(&verdict2), Some(503));
    let text = format!(
        "{verdict:?} {verdict2:?} {} {}",
        log.0.lock().unwrap().join("\n"),
        log2.0.lock().unwrap().join("\n")
    );
    assert!(text.contains("cannot decrypt"), "{text}");
    for secret in [USER_TOKEN, SERVICE_TOKEN, OWN_TOKEN, PASSWORD] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn every_hostile_answer_to_the_services_own_token_request_is_a_503() {
    let mut answers = hostile();
    answers.push((
        "201-no-subject-token",
        raw(
            201,
            json!({"token": {"expires_at": "2027-06-01T00:00:00Z"}}).to_string(),
        ),
    ));
    answers.push((
        "201-bad-subject-token",
        Ok(HttpReply {
            status: 201,
            body: json!({"token": {"expires_at": "2027-06-01T00:00:00Z"}})
                .to_string()
                .into_bytes(),
            captured: Some(Secret::new("bad token\r\n")),
        }),
    ));
    answers.push((
        "201-expired",
        Ok(HttpReply {
            status: 201,
            body: json!({"token": {"expires_at": "0000-01-01T00:00:00Z", "catalog": 7}})
                .to_string()
                .into_bytes(),
            captured: Some(Secret::new(OWN_TOKEN)),
        }),
    ));
    for (name, answer) in answers {
        let reply = Mutex::new(Some(answer));
        let (auth, log) = rig(
            &[("as_failure_threshold", "1000")],
            move |method, _| match method {
                Method::Post => reply.lock().unwrap().take().unwrap_or_else(|| raw(500, "")),
                Method::Get => raw(200, good_token().to_string()),
            },
        );
        let verdict = catch_unwind(AssertUnwindSafe(|| {
            auth.check_keystone(&KeystoneRequest {
                auth_token: Some(USER_TOKEN),
                service_token: None,
                method: None,
                path: None,
            })
        }))
        .unwrap_or_else(|_| panic!("{name}: panicked"));
        let status = deny_status(&verdict);
        let text = format!("{verdict:?} {}", log.0.lock().unwrap().join("\n"));
        for secret in [USER_TOKEN, OWN_TOKEN, PASSWORD] {
            assert!(!text.contains(secret), "{name}: {secret} in {text}");
        }
        // Keystone issued it: the validation it makes possible decides.
        if name == "201-expired" {
            continue;
        }
        assert_eq!(status, Some(503), "{name}: {verdict:?}");
    }
}

/// A real memcached on a free port, stopped when dropped.
struct Memcached {
    child: std::process::Child,
    port: u16,
}

impl Memcached {
    fn start() -> Memcached {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("memcached")
            .args(["-l", "127.0.0.1", "-U", "0", "-m", "64", "-u", "nobody"])
            .args(["-p", &port.to_string()])
            .spawn()
            .expect("memcached (scripts/env.sh installs it)");
        // Ready when it accepts a connection.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Memcached { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("memcached did not start");
    }

    /// Sends one command, reads until `end` closes the answer.
    fn ask(&self, command: &[u8], end: &[u8]) -> Vec<u8> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.write_all(command).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 65536];
        while !answer.ends_with(end) {
            let n = conn.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "memcached closed: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buf[..n]);
        }
        answer
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_shared_tier_entry_written_back_after_its_cache_time_does_not_serve_a_revoked_token() {
    let memcached = Memcached::start();
    let servers: &'static str = Box::leak(format!("127.0.0.1:{}", memcached.port).into_boxed_str());
    let shared = [
        ("memcached_servers", servers),
        ("memcache_security_strategy", "MAC"),
        ("memcache_secret_key", "attack-shared-secret"),
        ("token_cache_time", "60"),
    ];
    let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answer = |revoked: Arc<std::sync::atomic::AtomicBool>| {
        move |method, _: &str| match method {
            Method::Post => issued(),
            Method::Get if revoked.load(std::sync::atomic::Ordering::SeqCst) => raw(404, ""),
            Method::Get => raw(200, good_token().to_string()),
        }
    };
    let request = KeystoneRequest {
        auth_token: Some(USER_TOKEN),
        service_token: None,
        method: None,
        path: None,
    };
    let (first, _) = rig(&shared, answer(revoked.clone()));
    assert_eq!(deny_status(&first.check_keystone(&request)), None);

    // Someone with access to memcached (not to the secret) captures the sealed entry.
    let dump = memcached.ask(b"lru_crawler metadump all\r\n", b"END\r\n");
    let dump = String::from_utf8_lossy(&dump);
    let keys: Vec<&str> = dump
        .lines()
        .filter_map(|l| l.strip_prefix("key="))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "{dump}");
    // metadump percent-encodes keys; ours hold only '/' beyond letters and digits.
    let key = keys[0].replace("%2F", "/").replace("%2f", "/");
    let key = key.as_str();
    let got = memcached.ask(format!("get {key}\r\n").as_bytes(), b"END\r\n");
    let header_end = got.windows(2).position(|w| w == b"\r\n").unwrap();
    let header = String::from_utf8_lossy(&got[..header_end]).to_string();
    let fields: Vec<&str> = header.split(' ').collect();
    let (flags, len): (&str, usize) = (fields[2], fields[3].parse().unwrap());
    let blob = got[header_end + 2..header_end + 2 + len].to_vec();

    // The token is revoked; an hour later (cache time long past, expires_at not yet), the
    // captured entry is written back.
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    memcached.ask(format!("delete {key}\r\n").as_bytes(), b"\r\n");
    let mut set = format!("set {key} {flags} 600 {len}\r\n").into_bytes();
    set.extend_from_slice(&blob);
    set.extend_from_slice(b"\r\n");
    assert_eq!(memcached.ask(&set, b"\r\n"), b"STORED\r\n");

    let config = FilterConfig::from_raw(&RawOptions::from_pairs(options(&shared))).unwrap();
    let later = Authenticator::with_parts(
        config,
        Arc::new(Fake(Box::new(answer(revoked)))),
        Arc::new(Lines::default()),
        Arc::new(ManualClock::new(NOW + 3600.0)),
    )
    .unwrap();
    assert_eq!(
        deny_status(&later.check_keystone(&request)),
        Some(401),
        "the replayed entry served a revoked token"
    );
}

#[test]
fn an_invalid_service_token_does_not_let_a_bound_user_token_skip_its_bind_check() {
    let bound = with("/token/bind", json!({"kerberos": "alice@EXAMPLE"}));
    let (auth, _) = rig(
        &[("delay_auth_decision", "true")],
        move |method, subject| match (method, subject) {
            (Method::Post, _) => issued(),
            (Method::Get, USER_TOKEN) => raw(200, bound.clone()),
            (Method::Get, _) => raw(404, ""),
        },
    );
    for service in [None, Some("not-a-valid-service-token")] {
        let verdict = auth.check_keystone(&KeystoneRequest {
            auth_token: Some(USER_TOKEN),
            service_token: service,
            method: None,
            path: None,
        });
        let Verdict::Allow(grant) = &verdict else {
            panic!("{verdict:?}")
        };
        let status = grant
            .headers()
            .iter()
            .find(|(h, _)| h.name == "X-Identity-Status")
            .map(|(_, v)| v.as_str());
        assert_eq!(status, Some("Invalid"), "service token {service:?}");
    }
}
