//! The core's decisions, driven through the transport seam with a manual clock: no network,
//! no sleeps. Each test names the behaviour it pins down and fails if that behaviour breaks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenward::clock::{Clock, ManualClock};
use tokenward::log::{Level, LogSink};
use tokenward::transport::{HttpResponse, Transport};
use tokenward::{AsError, Authenticator, DenyReason, FilterConfig, RawOptions, Secret, Verdict};

const NOW: f64 = 1_800_000_000.0;
const TOKEN: &str = "tok-7f3a9c-must-never-be-logged";
const SECRET: &str = "client-s3cret:must/never+be logged";

type Answer = Box<dyn Fn(&str) -> HttpResponse + Send + Sync>;

/// An AS whose answers a closure scripts; counts calls and keeps the request bodies.
struct ScriptedAs {
    answer: Answer,
    /// While set, every request fails as if the AS were down.
    down: AtomicBool,
    calls: AtomicUsize,
    bodies: Mutex<Vec<String>>,
}

impl Transport for ScriptedAs {
    fn post_form(
        &self,
        _url: &str,
        _authorization: Option<Secret>,
        body: Secret,
    ) -> Result<HttpResponse, AsError> {
        self.calls.fetch_add(1, SeqCst);
        if self.down.load(SeqCst) {
            return Err(AsError::Unreachable("connection refused".into()));
        }
        let answer = (self.answer)(body.expose());
        self.bodies.lock().unwrap().push(body.expose().to_owned());
        Ok(answer)
    }
}

/// Keeps every log line.
#[derive(Default)]
struct Lines(Mutex<Vec<(Level, String)>>);

impl LogSink for Lines {
    fn enabled(&self, _: Level) -> bool {
        true
    }
    fn log(&self, level: Level, message: &str) {
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

impl Lines {
    fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Rig {
    auth: Authenticator,
    as_: Arc<ScriptedAs>,
    clock: Arc<ManualClock>,
    log: Arc<Lines>,
}

impl Rig {
    fn check(&self) -> Verdict {
        self.auth.check(&tokenward::Request::new(
            Some(&format!("Bearer {TOKEN}")),
            None,
        ))
    }

    fn check_token(&self, token: &str) -> Verdict {
        self.auth.check(&tokenward::Request::new(
            Some(&format!("Bearer {token}")),
            None,
        ))
    }

    fn set_down(&self, down: bool) {
        self.as_.down.store(down, SeqCst);
    }

    fn calls(&self) -> usize {
        self.as_.calls.load(SeqCst)
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

fn options<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("introspect_endpoint", "https://as.example/introspect"),
        ("audience", "https://as.example"),
        ("client_id", "rs"),
        ("client_secret", SECRET),
        ("mapping_project_id", "project.id"),
        ("mapping_project_name", "project.name"),
        ("mapping_project_domain_id", "project.domain.id"),
        ("mapping_project_domain_name", "project.domain.name"),
        ("mapping_user_domain_id", "user_domain.id"),
        ("mapping_user_domain_name", "user_domain.name"),
        ("mapping_roles", "roles"),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k, v));
    }
    pairs
}

fn rig_with(
    extra: &[(&str, &str)],
    answer: impl Fn(&str) -> HttpResponse + Send + Sync + 'static,
) -> Rig {
    let config = FilterConfig::from_raw(&RawOptions::from_pairs(options(extra))).unwrap();
    let as_ = Arc::new(ScriptedAs {
        answer: Box::new(answer),
        down: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
        bodies: Mutex::new(Vec::new()),
    });
    let clock = Arc::new(ManualClock::new(NOW));
    let log = Arc::new(Lines::default());
    let auth = Authenticator::with_parts(config, as_.clone(), log.clone(), clock.clone()).unwrap();
    Rig {
        auth,
        as_,
        clock,
        log,
    }
}

/// A rig whose AS always answers 200 with `body`.
fn rig(extra: &[(&str, &str)], body: &str) -> Rig {
    let body = body.to_owned();
    rig_with(extra, move |_| json(200, &body))
}

fn json(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        body: body.as_bytes().to_vec(),
    }
}

/// An active answer that maps with [`options`]; `extra` is spliced in as JSON members.
fn active(extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"active":true,"client_id":"svc","username":"alice","user_domain":{{"id":"default","name":"Default"}},"project":{{"id":"p1","name":"demo","domain":{{"id":"default","name":"Default"}}}},"roles":"member"{extra}}}"#
    )
}

fn denied(v: &Verdict) -> Option<&DenyReason> {
    match v {
        Verdict::Deny(d) => Some(&d.reason),
        Verdict::Allow(_) => None,
    }
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow(_))
}

// ------------------------------------------------------------------ far-future times (issue 9.1)

const FAR_FUTURE: &[&str] = &[
    "1e20",
    "1.797e308",
    "1000000000000000000000000000000",
    "18446744073709551616",
];

#[test]
fn a_far_future_exp_is_allowed_and_cached_for_token_cache_time() {
    for exp in FAR_FUTURE {
        let r = rig(&[], &active(&format!(r#""exp":{exp}"#)));
        assert!(allowed(&r.check()), "exp {exp}");
        r.advance(299);
        assert!(allowed(&r.check()), "exp {exp}: a hit");
        assert_eq!(r.calls(), 1, "exp {exp}: cached");
        r.advance(2);
        assert!(allowed(&r.check()), "exp {exp}");
        assert_eq!(
            r.calls(),
            2,
            "exp {exp}: the entry lives token_cache_time, not 'until exp'"
        );
    }
}

#[test]
fn a_far_future_mapping_expires_at_is_allowed() {
    for at in FAR_FUTURE {
        let r = rig(
            &[("mapping_expires_at", "ext.until")],
            &active(&format!(r#""ext":{{"until":{at}}}"#)),
        );
        assert!(allowed(&r.check()), "mapping_expires_at {at}");
        r.advance(301);
        assert!(allowed(&r.check()), "mapping_expires_at {at}");
        assert_eq!(
            r.calls(),
            2,
            "mapping_expires_at {at}: cached token_cache_time"
        );
    }
}

#[test]
fn a_past_or_negative_exp_is_expired_and_not_cached() {
    for exp in ["-1", "-1.797e308", "0", "1799999990"] {
        let r = rig(&[], &active(&format!(r#""exp":{exp}"#)));
        assert_eq!(denied(&r.check()), Some(&DenyReason::Expired), "exp {exp}");
        r.check();
        assert_eq!(r.calls(), 2, "exp {exp}: an expired grant is not cached");
        let log = r.log.text();
        assert!(log.contains("(expired)") && !log.contains(TOKEN), "{log}");
    }
    let r = rig(
        &[("mapping_expires_at", "until")],
        &active(r#""exp":1e300,"until":-1"#),
    );
    assert_eq!(denied(&r.check()), Some(&DenyReason::Expired));
}

#[test]
fn a_number_beyond_f64_is_a_malformed_answer_not_a_crash() {
    let r = rig(&[], &active(r#""exp":1e400"#));
    assert!(matches!(
        denied(&r.check()),
        Some(DenyReason::Unavailable(AsError::Malformed(_)))
    ));
}

// ------------------------------------------------------------------ option bounds (issue 9.2)

#[test]
fn duration_options_at_their_bounds_work_on_requests() {
    let r = rig(
        &[
            ("token_cache_time", "2592000"),
            ("token_cache_inactive_time", "86400"),
            ("http_connect_timeout", "3600"),
            ("token_time_leeway", "3600"),
        ],
        &active(r#""exp":1e20"#),
    );
    assert!(allowed(&r.check()));
    r.advance(2_591_999);
    assert!(allowed(&r.check()));
    assert_eq!(r.calls(), 1);
    r.advance(2);
    assert!(allowed(&r.check()));
    assert_eq!(r.calls(), 2);
    assert_eq!(r.clock.wall(), NOW + 2_592_001.0);
}

#[test]
fn huge_duration_options_are_refused_at_start_up() {
    for name in [
        "token_cache_time",
        "token_cache_inactive_time",
        "http_connect_timeout",
        "token_time_leeway",
        "retry_after",
        "jwt_bearer_time_out",
        "memcache_pool_dead_retry",
        "memcache_pool_socket_timeout",
        "memcache_pool_unused_timeout",
        "memcache_pool_conn_get_timeout",
    ] {
        let e = FilterConfig::from_raw(&RawOptions::from_pairs(options(&[(
            name,
            "9223372036854775807",
        )])))
        .unwrap_err();
        assert_eq!(e.option(), name, "{e}");
    }
}

// ------------------------------------------------------------------ duplicate names (issue 9.6)

#[test]
fn an_answer_with_a_duplicate_name_at_any_depth_is_503_and_logged() {
    for body in [
        r#"{"active":false,"active":true}"#.to_owned(),
        active(r#""active":true"#),
        active(r#""ext":{"deep":[{"k":1,"k":2}]}"#),
        r#"{"active":true,"client_id":"svc","username":"alice","user_domain":{"id":"default","name":"Default"},"project":{"id":"p1","id":"p2","name":"demo","domain":{"id":"default","name":"Default"}},"roles":"member"}"#.to_owned(),
    ] {
        let r = rig(&[], &body);
        let v = r.check();
        assert!(
            matches!(denied(&v), Some(DenyReason::Unavailable(AsError::Malformed(m))) if m.contains("repeats a member name")),
            "{body}: {v:?}"
        );
        assert_eq!(denied(&v).map(DenyReason::status), Some(503));
        let lines = r.log.0.lock().unwrap();
        assert!(
            lines
                .iter()
                .any(|(level, l)| *level == Level::Error && l.contains("repeats a member name")),
            "{lines:?}"
        );
        drop(lines);
        r.check();
        assert_eq!(r.calls(), 2, "a refused answer is not cached");
    }
    // The same members without the repetition are accepted.
    assert!(allowed(
        &rig(&[], &active(r#""ext":{"deep":[{"k":1},{"k":2}]}"#)).check()
    ));
}

// ------------------------------------------------------------------ AS text is scrubbed (issue 9.4)

/// An error body echoing everything the request carried, with control characters.
fn echoing(status: u16, error: &'static str) -> impl Fn(&str) -> HttpResponse + Send + Sync {
    move |body: &str| {
        let values: Vec<String> = form_urlencoded::parse(body.as_bytes())
            .map(|(_, v)| v.into_owned())
            .collect();
        let description = format!(
            "you sent {}\r\n; secret {SECRET}; token {TOKEN}\u{1b}[2J; body {body}; {}",
            values.join(" "),
            "padding ".repeat(40)
        );
        json(
            status,
            &serde_json::json!({"error": error, "error_description": description}).to_string(),
        )
    }
}

#[test]
fn echoed_token_secret_and_assertion_reach_neither_errors_nor_logs() {
    for method in [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
    ] {
        for (status, error) in [
            (400, "invalid_request"),
            (400, "invalid_client"),
            (401, "invalid_client"),
            (500, "server_error"),
        ] {
            let r = rig_with(
                &[("auth_method", method), ("jwt_algorithm", "HS256")],
                echoing(status, error),
            );
            let v = r.check();
            let Some(reason @ DenyReason::Unavailable(_)) = denied(&v) else {
                panic!("{method} {status}: {v:?}");
            };
            let shown = format!("{reason} {reason:?}");
            let logged = r.log.text();
            assert!(
                logged.contains("you sent"),
                "the AS's text is kept: {logged}"
            );
            let bodies = r.as_.bodies.lock().unwrap();
            let mut secrets = vec![TOKEN.to_owned(), SECRET.to_owned()];
            for (k, v) in form_urlencoded::parse(bodies[0].as_bytes()) {
                if k != "client_id" && k != "client_assertion_type" && k != "token_type_hint" {
                    secrets.push(v.into_owned());
                }
            }
            secrets.push(form_urlencoded::byte_serialize(SECRET.as_bytes()).collect());
            secrets.push(form_urlencoded::byte_serialize(TOKEN.as_bytes()).collect());
            for secret in &secrets {
                // A cut secret would still show its start.
                let start: String = secret.chars().take(24).collect();
                assert!(
                    !shown.contains(&start),
                    "{method} {status}: {start} in {shown}"
                );
                assert!(
                    !logged.contains(&start),
                    "{method} {status}: {start} in {logged}"
                );
                assert!(
                    !shown.contains(secret.as_str()),
                    "{method} {status}: {secret} in {shown}"
                );
                assert!(
                    !logged.contains(secret.as_str()),
                    "{method} {status}: {secret} in {logged}"
                );
            }
            let lines = r.log.0.lock().unwrap().clone();
            for text in std::iter::once(&shown).chain(lines.iter().map(|(_, l)| l)) {
                assert!(
                    !text.contains(['\r', '\n', '\u{1b}']),
                    "{method}: control characters: {text:?}"
                );
                assert!(text.len() < 1_000, "{method}: AS text is cut: {text}");
            }
        }
    }
}

// ------------------------------------------------------------------ log fingerprints (issue 9.10)

#[test]
fn fingerprints_are_stable_per_deployment_and_do_not_show_the_token() {
    let body = active(r#""exp":1"#);
    let a = rig(&[], &body);
    let b = rig(&[], &body);
    let fp = a.auth.fingerprint(TOKEN);
    assert_eq!(
        fp,
        b.auth.fingerprint(TOKEN),
        "two workers of one deployment agree"
    );
    assert!(fp.starts_with("fp:") && fp.len() == 15, "{fp}");
    assert!(fp[3..].bytes().all(|c| c.is_ascii_hexdigit()), "{fp}");
    assert!(!fp.contains(&TOKEN[..6]), "{fp}");
    assert_ne!(fp, a.auth.fingerprint("another-token"));
    for other in [
        &[("client_secret", "another secret")][..],
        &[("introspect_endpoint", "https://as2.example/introspect")],
        &[("client_id", "rs2")],
        &[
            ("memcached_servers", "127.0.0.1:1"),
            ("memcache_security_strategy", "MAC"),
            ("memcache_secret_key", "k"),
        ],
    ] {
        assert_ne!(fp, rig(other, &body).auth.fingerprint(TOKEN), "{other:?}");
    }
    // The refusal's log line carries it.
    a.check();
    assert!(
        a.log.text().contains(&format!("token {fp} (expired)")),
        "{}",
        a.log.text()
    );
}

// ------------------------------------------------------------------ token checks (issue 9.15)

fn reason(extra: &[(&str, &str)], body: &str) -> Option<DenyReason> {
    denied(&rig(extra, body).check()).cloned()
}

#[test]
fn token_audience_needs_one_of_the_configured_audiences() {
    let want = [("token_audience", "api-a, api-b")];
    assert_eq!(reason(&want, &active(r#""aud":"api-b""#)), None);
    assert_eq!(reason(&want, &active(r#""aud":["x","api-a"]"#)), None);
    for aud in [
        r#""aud":"api-c""#,
        r#""aud":["x","y"]"#,
        r#""aud":"api-a, api-b""#,
        r#""aud":7"#,
        "",
    ] {
        assert_eq!(
            reason(&want, &active(aud)),
            Some(DenyReason::AudienceMismatch),
            "{aud}"
        );
    }
    assert_eq!(DenyReason::AudienceMismatch.status(), 401);
    // Unset: any audience (or none) passes.
    assert_eq!(reason(&[], &active(r#""aud":"whatever""#)), None);
}

#[test]
fn token_issuer_must_match_exactly() {
    let want = [("token_issuer", "https://as.example")];
    assert_eq!(
        reason(&want, &active(r#""iss":"https://as.example""#)),
        None
    );
    for iss in [
        r#""iss":"https://as.example/""#,
        r#""iss":"https://evil.example""#,
        r#""iss":["https://as.example"]"#,
        "",
    ] {
        assert_eq!(
            reason(&want, &active(iss)),
            Some(DenyReason::IssuerMismatch),
            "{iss}"
        );
    }
    assert_eq!(
        reason(&[], &active(r#""iss":"https://evil.example""#)),
        None
    );
}

#[test]
fn token_required_scope_needs_every_scope_and_is_403() {
    let want = [("token_required_scope", "read,write")];
    assert_eq!(
        reason(&want, &active(r#""scope":"openid write read""#)),
        None
    );
    for scope in [
        r#""scope":"read""#,
        r#""scope":"readwrite""#,
        r#""scope":"read  writer""#,
        r#""scope":["read","write"]"#,
        "",
    ] {
        let r = reason(&want, &active(scope));
        assert_eq!(r, Some(DenyReason::InsufficientScope), "{scope}");
        assert_eq!(r.map(|r| r.status()), Some(403));
    }
    assert_eq!(reason(&[], &active("")), None);
}

#[test]
fn token_time_leeway_bounds_the_skew_allowed_for_exp_and_nbf() {
    let at = |offset: f64| NOW + offset;
    // Default leeway: 5 s.
    assert_eq!(
        reason(&[], &active(&format!(r#""exp":{}"#, at(-4.0)))),
        None
    );
    assert_eq!(
        reason(&[], &active(&format!(r#""exp":{}"#, at(-6.0)))),
        Some(DenyReason::Expired)
    );
    assert_eq!(reason(&[], &active(&format!(r#""nbf":{}"#, at(4.0)))), None);
    assert_eq!(
        reason(&[], &active(&format!(r#""nbf":{}"#, at(6.0)))),
        Some(DenyReason::NotYetValid)
    );
    let none = [("token_time_leeway", "0")];
    assert_eq!(
        reason(&none, &active(&format!(r#""exp":{}"#, at(-1.0)))),
        Some(DenyReason::Expired)
    );
    assert_eq!(
        reason(&none, &active(&format!(r#""nbf":{}"#, at(1.0)))),
        Some(DenyReason::NotYetValid)
    );
    let wide = [("token_time_leeway", "60")];
    assert_eq!(
        reason(&wide, &active(&format!(r#""exp":{}"#, at(-59.0)))),
        None
    );
    assert_eq!(
        reason(&wide, &active(&format!(r#""nbf":{}"#, at(59.0)))),
        None
    );
    assert_eq!(
        reason(&wide, &active(&format!(r#""exp":{}"#, at(-61.0)))),
        Some(DenyReason::Expired)
    );
}

#[test]
fn answers_map_to_the_documented_reasons() {
    for (body, want) in [
        (r#"{"active":false}"#.to_owned(), DenyReason::Inactive),
        (r#"{"active":"true"}"#.to_owned(), DenyReason::Inactive),
        (r#"{}"#.to_owned(), DenyReason::Inactive),
        (
            active(r#""exp":"soon""#),
            DenyReason::MalformedClaims("exp"),
        ),
        (active(r#""nbf":[1]"#), DenyReason::MalformedClaims("nbf")),
    ] {
        let r = reason(&[], &body);
        assert_eq!(r, Some(want.clone()), "{body}");
        assert_eq!(r.map(|r| r.status()), Some(401));
    }
    let unmappable = r#"{"active":true,"user_domain":{"id":"d","name":"D"},"project":{"id":"p","name":"n","domain":{"id":"d","name":"D"}}}"#;
    let r = reason(&[], unmappable);
    assert!(
        matches!(&r, Some(DenyReason::Unmappable(e)) if e.option == "mapping_roles"),
        "{r:?}"
    );
    assert_eq!(r.map(|r| r.status()), Some(403));
    let v = rig(&[], &active("")).check();
    let Verdict::Allow(grant) = v else {
        panic!("{v:?}")
    };
    assert!(
        grant
            .headers()
            .iter()
            .any(|(h, value)| h.name == "X-Project-Id" && value == "p1")
    );
}

#[test]
fn refusals_are_cached_for_token_cache_inactive_time_and_failures_not_at_all() {
    let r = rig(
        &[("token_cache_inactive_time", "30")],
        r#"{"active":false}"#,
    );
    r.check();
    r.advance(29);
    assert_eq!(denied(&r.check()), Some(&DenyReason::Inactive));
    assert_eq!(r.calls(), 1);
    assert_eq!(r.auth.metrics().cache_negative_hits, 1);
    r.advance(2);
    r.check();
    assert_eq!(r.calls(), 2);

    let r = rig_with(&[], |_| json(500, "{}"));
    assert!(matches!(
        denied(&r.check()),
        Some(DenyReason::Unavailable(AsError::Status { status: 500, .. }))
    ));
    r.check();
    assert_eq!(r.calls(), 2, "an AS failure is never cached");
}

#[test]
fn an_entry_lives_until_exp_when_that_comes_before_token_cache_time() {
    let r = rig(
        &[("token_time_leeway", "0")],
        &active(&format!(r#""exp":{}"#, NOW + 10.0)),
    );
    assert!(allowed(&r.check()));
    r.advance(9);
    assert!(allowed(&r.check()));
    assert_eq!(r.calls(), 1);
    r.advance(2);
    assert_eq!(denied(&r.check()), Some(&DenyReason::Expired));
    assert_eq!(
        r.calls(),
        2,
        "the entry ended at exp, so the AS was asked again"
    );
}

/// A clock whose wall reading can jump while the monotonic one stands still (an NTP step).
#[derive(Debug)]
struct SteppedClock {
    wall: Mutex<f64>,
    start: std::time::Instant,
}

impl Clock for SteppedClock {
    fn wall(&self) -> f64 {
        *self.wall.lock().unwrap()
    }
    fn monotonic(&self) -> std::time::Instant {
        self.start
    }
}

#[test]
fn a_cached_grant_past_its_exp_is_refused_on_a_hit_and_dropped() {
    let config = FilterConfig::from_raw(&RawOptions::from_pairs(options(&[]))).unwrap();
    let body = active(&format!(r#""exp":{}"#, NOW + 100.0));
    let as_ = Arc::new(ScriptedAs {
        answer: Box::new(move |_| json(200, &body)),
        down: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
        bodies: Mutex::new(Vec::new()),
    });
    let clock = Arc::new(SteppedClock {
        wall: Mutex::new(NOW),
        start: std::time::Instant::now(),
    });
    let auth = Authenticator::with_parts(
        config,
        as_.clone(),
        Arc::new(Lines::default()),
        clock.clone(),
    )
    .unwrap();
    let check = || {
        auth.check(&tokenward::Request::new(
            Some(&format!("Bearer {TOKEN}")),
            None,
        ))
    };
    assert!(allowed(&check()));
    assert!(allowed(&check()));
    assert_eq!(auth.metrics().cache_hits, 1);
    *clock.wall.lock().unwrap() = NOW + 200.0;
    assert_eq!(denied(&check()), Some(&DenyReason::Expired));
    assert_eq!(auth.metrics().cache_hits, 2, "decided on the hit");
    assert_eq!(as_.calls.load(SeqCst), 1);
    assert_eq!(
        auth.metrics().cache_entries,
        0,
        "the expired entry is dropped"
    );
    *clock.wall.lock().unwrap() = NOW;
    assert!(allowed(&check()));
    assert_eq!(
        as_.calls.load(SeqCst),
        2,
        "so the next request asks the AS again"
    );
}

// ------------------------------------------------------------------ outages (issue 12)

fn retry_after(r: &Rig, v: &Verdict) -> Option<String> {
    match v {
        Verdict::Deny(d) if d.status() == 503 => r
            .auth
            .denial_headers(d)
            .into_iter()
            .find(|(n, _)| *n == "Retry-After")
            .map(|(_, v)| v),
        _ => None,
    }
}

#[test]
fn the_breaker_opens_after_the_threshold_answers_fast_then_probes_once() {
    let r = rig(
        &[("as_failure_threshold", "3"), ("as_open_time", "10")],
        &active(""),
    );
    r.set_down(true);
    for i in 0..3 {
        assert_eq!(
            retry_after(&r, &r.check_token(&format!("t{i}"))).as_deref(),
            Some("5")
        );
    }
    assert_eq!(r.calls(), 3);
    assert_eq!(r.auth.metrics().breaker_open, 1);
    // Open: no AS call, Retry-After = the remaining open time, rounded up.
    for i in 0..50 {
        let v = r.check_token(&format!("open{i}"));
        assert_eq!(retry_after(&r, &v).as_deref(), Some("10"));
    }
    r.clock.advance(Duration::from_millis(7_200));
    assert_eq!(
        retry_after(&r, &r.check_token("later")).as_deref(),
        Some("3")
    );
    assert_eq!(r.calls(), 3, "no AS call while open");
    let m = r.auth.metrics();
    assert_eq!(
        (m.breaker_rejections, m.as_errors, m.introspections),
        (51, 3, 3)
    );
    // Half-open after as_open_time: one probe; it fails, so the breaker opens again.
    r.advance(3);
    assert_eq!(
        denied(&r.check_token("probe1")).map(DenyReason::status),
        Some(503)
    );
    assert_eq!(r.calls(), 4);
    assert_eq!(retry_after(&r, &r.check_token("x")).as_deref(), Some("10"));
    assert_eq!(r.calls(), 4);
    // The AS is back: the next probe succeeds and closes it.
    r.set_down(false);
    r.advance(10);
    assert!(allowed(&r.check_token("probe2")));
    assert!(allowed(&r.check_token("after")));
    assert_eq!(r.calls(), 6);
    assert_eq!(r.auth.metrics().breaker_open, 0);
    let errors = r
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| *l == Level::Error)
        .count();
    assert!(
        errors <= 6,
        "fast 503s are not logged at ERROR ({errors} lines)"
    );
}

#[test]
fn opening_is_logged_once_though_many_requests_were_under_way() {
    // Six misses reach the AS together (it answers none until all six wait), all fail: the
    // second failure opens the breaker; the four that report after it must not log again.
    let together = Arc::new(std::sync::Barrier::new(6));
    let r = rig_with(&[("as_failure_threshold", "2")], move |_| {
        together.wait();
        json(500, r#"{"error":"server_error"}"#)
    });
    std::thread::scope(|s| {
        for i in 0..6 {
            let r = &r;
            s.spawn(move || {
                let v = r.check_token(&format!("t{i}"));
                assert_eq!(denied(&v).map(DenyReason::status), Some(503));
            });
        }
    });
    assert_eq!(r.calls(), 6);
    assert_eq!(r.auth.metrics().breaker_open, 1);
    let openings = r
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == Level::Error && m.contains("times in a row"))
        .count();
    assert_eq!(openings, 1, "{}", r.log.text());
}

#[test]
fn a_4xx_never_opens_the_breaker_and_is_logged_at_error_once_a_minute() {
    let r = rig_with(&[("as_failure_threshold", "2")], |_| {
        json(401, r#"{"error":"invalid_client"}"#)
    });
    for i in 0..10 {
        assert_eq!(
            denied(&r.check_token(&format!("t{i}"))).map(DenyReason::status),
            Some(503)
        );
    }
    assert_eq!(r.calls(), 10, "every miss still asks");
    assert_eq!(r.auth.metrics().breaker_open, 0);
    let errors = |r: &Rig| {
        r.log
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == Level::Error)
            .count()
    };
    assert_eq!(errors(&r), 1);
    r.advance(61);
    let _ = r.check_token("again");
    assert_eq!(errors(&r), 2);
}

#[test]
fn as_failure_threshold_zero_disables_the_breaker() {
    let r = rig(&[("as_failure_threshold", "0")], &active(""));
    r.set_down(true);
    for i in 0..20 {
        let _ = r.check_token(&format!("t{i}"));
    }
    assert_eq!(r.calls(), 20);
}

#[test]
fn stale_verdicts_are_served_only_within_their_bounds() {
    let r = rig(
        &[
            ("stale_if_error", "60"),
            ("token_cache_time", "30"),
            ("as_failure_threshold", "0"),
        ],
        &active(&format!(r#""exp":{}"#, NOW + 100.0)),
    );
    assert!(allowed(&r.check()));
    r.set_down(true);
    r.advance(31);
    let Verdict::Allow(grant) = r.check() else {
        panic!("not served stale")
    };
    assert!(grant.is_stale());
    let info: serde_json::Value = serde_json::from_str(grant.token_info_json()).unwrap();
    assert_eq!(info["stale"], true);
    assert_eq!(r.auth.metrics().stale_served, 1);
    // Past the window (30 s lifetime + 60 s): the ordinary outage 503.
    r.advance(60);
    assert_eq!(denied(&r.check()).map(DenyReason::status), Some(503));

    // Never past the token's own exp (5 s leeway included).
    let r = rig(
        &[("stale_if_error", "600"), ("token_cache_time", "30")],
        &active(&format!(r#""exp":{}"#, NOW + 40.0)),
    );
    assert!(allowed(&r.check()));
    r.set_down(true);
    r.advance(44);
    assert!(allowed(&r.check()), "within exp + leeway");
    r.advance(2);
    assert_eq!(denied(&r.check()).map(DenyReason::status), Some(503));

    // Never for an inactive token, never after forget(), never with stale_if_error = 0.
    let r = rig(&[("stale_if_error", "600")], r#"{"active":false}"#);
    assert_eq!(denied(&r.check()), Some(&DenyReason::Inactive));
    r.set_down(true);
    r.advance(31);
    assert_eq!(denied(&r.check()).map(DenyReason::status), Some(503));
    let r = rig(
        &[("stale_if_error", "600"), ("token_cache_time", "30")],
        &active(""),
    );
    assert!(allowed(&r.check()));
    r.auth.forget(Some(&format!("Bearer {TOKEN}")));
    r.set_down(true);
    assert_eq!(denied(&r.check()).map(DenyReason::status), Some(503));
    let r = rig(&[("token_cache_time", "30")], &active(""));
    assert!(allowed(&r.check()));
    r.set_down(true);
    r.advance(31);
    assert_eq!(denied(&r.check()).map(DenyReason::status), Some(503));
}

#[test]
fn stale_is_served_while_the_breaker_is_open() {
    let r = rig(
        &[
            ("stale_if_error", "600"),
            ("token_cache_time", "30"),
            ("as_failure_threshold", "1"),
            ("as_open_time", "60"),
        ],
        &active(""),
    );
    assert!(allowed(&r.check()));
    r.set_down(true);
    let _ = r.check_token("other");
    assert_eq!(r.auth.metrics().breaker_open, 1);
    r.advance(31);
    let calls = r.calls();
    assert!(allowed(&r.check()));
    assert_eq!(r.calls(), calls, "served without asking the AS");
}

#[test]
fn prometheus_samples_render_every_family_once() {
    let r = rig(&[], &active(""));
    assert!(allowed(&r.check()));
    assert!(allowed(&r.check()));
    r.set_down(true);
    let _ = r.check_token("down");
    let text = tokenward::prometheus::render(&[("api \"one\"", r.auth.samples())], 42);
    assert!(
        text.contains("tokenward_cache_hits_total{filter=\"api \\\"one\\\"\",pid=\"42\"} 1"),
        "{text}"
    );
    assert!(text.contains("tokenward_as_errors_total{filter=\"api \\\"one\\\"\",pid=\"42\",kind=\"unreachable\"} 1"), "{text}");
    assert!(
        text.contains(
            "tokenward_as_request_duration_seconds_count{filter=\"api \\\"one\\\"\",pid=\"42\"} 2"
        ),
        "{text}"
    );
    for (family, kind, _) in tokenward::prometheus::FAMILIES {
        let blocks = text.matches(&format!("# TYPE {family} {kind}\n")).count();
        let expected = usize::from(
            !family.starts_with("tokenward_jw") && *family != "tokenward_token_requests_total",
        );
        assert_eq!(blocks, expected, "{family}");
    }
}

// ------------------------------------------------------------------ binding behind proxies (issue 11)

const CERT: &str = include_str!("data/x5t-vector.pem");
const OTHER_CERT: &str = include_str!("data/client-v3.pem");

/// `x5t#S256` of a PEM certificate: base64url (unpadded) of the SHA-256 of its DER.
fn x5t(pem: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use sha2::Digest as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body.trim()).unwrap();
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

fn bound_to(pem: &str) -> String {
    active(&format!(r#""cnf":{{"x5t#S256":"{}"}}"#, x5t(pem)))
}

#[test]
fn thumbprint_verify_auto_checks_bound_tokens_and_passes_unbound_ones() {
    let check = |body: &str, cert: Option<&str>| {
        let r = rig(&[("thumbprint_verify", "auto")], body);
        r.auth.check(&tokenward::Request::new(
            Some(&format!("Bearer {TOKEN}")),
            cert.map(str::as_bytes),
        ))
    };
    assert!(
        allowed(&check(&active(""), None)),
        "unbound, no certificate"
    );
    assert!(
        allowed(&check(&active(""), Some(OTHER_CERT))),
        "unbound, any certificate"
    );
    assert!(allowed(&check(&bound_to(CERT), Some(CERT))));
    assert_eq!(
        denied(&check(&bound_to(CERT), Some(OTHER_CERT))),
        Some(&DenyReason::CertificateMismatch)
    );
    assert_eq!(
        denied(&check(&bound_to(CERT), None)),
        Some(&DenyReason::CertificateMismatch)
    );
    assert_eq!(
        denied(&check(
            &active(r#""cnf":{"x5t#S256":"not-a-thumbprint"}"#),
            Some(CERT)
        )),
        Some(&DenyReason::MalformedClaims("cnf.x5t#S256"))
    );
    // The bool spellings still mean true/false; anything else names the option.
    for (value, ok) in [("yes", true), ("0", true), ("AUTO", true), ("maybe", false)] {
        let r = FilterConfig::from_raw(&RawOptions::from_pairs(options(&[(
            "thumbprint_verify",
            value,
        )])));
        assert_eq!(r.is_ok(), ok, "{value}");
        if let Err(e) = r {
            assert_eq!(e.option(), "thumbprint_verify");
        }
    }
}

#[test]
fn a_forwarded_certificate_counts_only_from_a_trusted_proxy() {
    let r = rig(
        &[
            ("thumbprint_verify", "true"),
            ("client_cert_header", "X-SSL-Client-Cert"),
            ("client_cert_header_format", "url_encoded_pem"),
            ("trusted_proxies", "10.0.0.0/24, ::1"),
        ],
        &bound_to(CERT),
    );
    let escaped: String = CERT
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let authorization = format!("Bearer {TOKEN}");
    let request = |peer: &'static str, header: Option<&str>, socket: Option<&'static str>| {
        let req = tokenward::Request {
            authorization: Some(&authorization),
            client_cert: socket.map(str::as_bytes),
            peer: Some(peer),
            forwarded_cert: header,
            ..tokenward::Request::default()
        };
        r.auth.check(&req)
    };
    assert!(allowed(&request("10.0.0.7", Some(&escaped), None)));
    assert!(allowed(&request("::1", Some(&escaped), None)));
    for _ in 0..3 {
        assert_eq!(
            denied(&request("192.0.2.1", Some(&escaped), None)),
            Some(&DenyReason::CertificateRequired),
            "an untrusted peer's header is ignored"
        );
    }
    assert_eq!(
        denied(&request("192.0.2.1", Some(&escaped), Some(CERT))),
        Some(&DenyReason::CertificateRequired),
        "with a header configured the socket's certificate does not count"
    );
    let warnings: Vec<_> = r
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| *l == Level::Warning)
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("192.0.2.1"));

    for (extra, option) in [
        (&[("client_cert_header", "X-Cert")][..], "trusted_proxies"),
        (
            &[
                ("client_cert_header", "X-Cert"),
                ("trusted_proxies", "10.0.0.0/40"),
            ][..],
            "trusted_proxies",
        ),
        (
            &[
                ("client_cert_header", "X-Cert"),
                ("trusted_proxies", "::1"),
                ("client_cert_header_format", "der"),
            ][..],
            "client_cert_header_format",
        ),
    ] {
        let e = FilterConfig::from_raw(&RawOptions::from_pairs(options(extra))).unwrap_err();
        assert_eq!(e.option(), option, "{extra:?}");
    }
}

// ------------------------------------------------------------------ the prepared request (issue 13)

#[test]
fn a_prepared_request_serves_the_lookup_and_then_the_miss_from_another_thread() {
    let r = rig(&[("thumbprint_verify", "true")], &bound_to(CERT));
    let authorization = format!("Bearer {TOKEN}");
    let request = tokenward::Request::new(Some(&authorization), Some(CERT.as_bytes()));
    let prepared = r.auth.prepare(&request);
    assert!(
        prepared.decided().is_none(),
        "a token and a certificate: the cache decides"
    );
    assert!(
        r.auth.lookup(&prepared).is_none(),
        "a miss: nothing cached yet"
    );
    assert_eq!(r.calls(), 0, "a lookup never asks the AS");
    // The same prepared request, owning its text, goes to another thread for the round trip.
    let owned = prepared.clone().into_owned();
    let verdict = std::thread::scope(|s| s.spawn(|| r.auth.authenticate(&owned)).join().unwrap());
    assert!(allowed(&verdict), "{verdict:?}");
    assert_eq!(r.calls(), 1);
    assert!(allowed(&r.auth.lookup(&prepared).unwrap()), "now a hit");
    let m = r.auth.metrics();
    assert_eq!((m.cache_misses, m.cache_hits, m.introspections), (1, 1, 1));
    // Another certificate is another prepared request: refused from the cache.
    let other = r.auth.prepare(&tokenward::Request::new(
        Some(&authorization),
        Some(OTHER_CERT.as_bytes()),
    ));
    assert_eq!(
        denied(&r.auth.lookup(&other).unwrap()),
        Some(&DenyReason::CertificateMismatch)
    );
}

#[test]
fn a_request_that_decides_itself_never_reaches_the_cache_or_the_as() {
    let r = rig(&[("thumbprint_verify", "true")], &bound_to(CERT));
    for (authorization, cert, want) in [
        (None, Some(CERT), DenyReason::MissingToken),
        (Some("Basic abc"), Some(CERT), DenyReason::MissingToken),
        (Some("Bearer a b"), Some(CERT), DenyReason::MalformedToken),
        (Some("Bearer abc"), None, DenyReason::CertificateRequired),
    ] {
        let prepared = r.auth.prepare(&tokenward::Request::new(
            authorization,
            cert.map(str::as_bytes),
        ));
        assert_eq!(prepared.decided().and_then(denied), Some(&want));
        assert_eq!(
            r.auth.lookup(&prepared).as_ref().and_then(denied),
            Some(&want)
        );
        assert_eq!(
            denied(&r.auth.authenticate(&prepared.into_owned())),
            Some(&want)
        );
    }
    let m = r.auth.metrics();
    assert_eq!((r.calls(), m.cache_misses, m.cache_hits), (0, 0, 0));
}
