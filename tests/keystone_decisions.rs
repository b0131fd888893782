//! The Keystone backend's decisions (`validation = keystone`), driven through the transport
//! seam with a manual clock: no network, no sleeps. Each test names the behaviour it pins
//! down and fails if that behaviour breaks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokenward::clock::ManualClock;
use tokenward::log::{Level, LogSink};
use tokenward::transport::{HttpReply, HttpRequest, Method, Transport};
use tokenward::{
    AsError, Authenticator, DenyReason, FilterConfig, KeystoneRefusal, KeystoneRequest, RawOptions,
    Secret, Verdict,
};

const NOW: f64 = 1_800_000_000.0;
const USER_TOKEN: &str = "gAAAAAuser-token-must-never-be-logged";
const SERVICE_TOKEN: &str = "gAAAAAservice-token-must-never-be-logged";
const OWN_TOKEN: &str = "gAAAAAown-token-of-the-service-never-logged";
const PASSWORD: &str = "svc-pa55word/never logged";
const APP_SECRET: &str = "app-cred-s3cret/never logged";

/// One request as Keystone saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    url: String,
    headers: HashMap<String, String>,
    json: Option<Value>,
}

type Answer = Box<dyn Fn(&Seen) -> Result<HttpReply, AsError> + Send + Sync>;

/// A Keystone whose answers a closure scripts; keeps every request.
struct ScriptedKeystone {
    answer: Answer,
    seen: Mutex<Vec<Seen>>,
    /// While set, every request fails as if Keystone were down.
    down: AtomicBool,
    /// When set, each validation waits here (to hold concurrent misses together).
    gate: Mutex<Option<Arc<Barrier>>>,
    /// Answers a GET of anything but `/auth/tokens` (version discovery); `None`: Keystone's
    /// own 300 document listing `{url}/v3/` as stable v3.14.
    discovery: Option<Answer>,
}

impl ScriptedKeystone {
    fn new(answer: impl Fn(&Seen) -> Result<HttpReply, AsError> + Send + Sync + 'static) -> Self {
        Self {
            answer: Box::new(answer),
            seen: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            gate: Mutex::new(None),
            discovery: None,
        }
    }
}

/// Keystone's answer at its root: every version it serves, 300 Multiple Choices.
fn version_document(seen: &Seen) -> Result<HttpReply, AsError> {
    reply(
        300,
        &json!({"versions": {"values": [
            {"id": "v2.0", "status": "deprecated", "updated": "2016-08-04T00:00:00Z",
             "links": [{"rel": "self", "href": format!("{}/v2.0/", seen.url)}]},
            {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
             "links": [{"rel": "self", "href": format!("{}/v3/", seen.url)}],
             "media-types": [{"base": "application/json",
                              "type": "application/vnd.openstack.identity-v3+json"}]}
        ]}}),
    )
}

impl Transport for ScriptedKeystone {
    fn post_form(
        &self,
        _: &str,
        _: Option<Secret>,
        _: Secret,
    ) -> Result<tokenward::transport::HttpResponse, AsError> {
        panic!("the Keystone backend posted a form");
    }

    fn send_request(&self, request: HttpRequest<'_>) -> Result<HttpReply, AsError> {
        let seen = Seen {
            method: request.method,
            url: request.url.to_owned(),
            headers: request
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.expose().to_owned()))
                .collect(),
            json: request
                .json
                .as_ref()
                .map(|j| serde_json::from_str(j.expose()).unwrap()),
        };
        self.seen.lock().unwrap().push(seen.clone());
        if self.down.load(SeqCst) {
            return Err(AsError::Unreachable("connection refused".into()));
        }
        if seen.method == Method::Get && !seen.url.contains("/auth/tokens") {
            return match &self.discovery {
                Some(answer) => answer(&seen),
                None => version_document(&seen),
            };
        }
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate
            && seen.method == Method::Get
        {
            gate.wait();
        }
        (self.answer)(&seen)
    }
}

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
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(l, m)| format!("{l:?} {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn at(&self, level: Level) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

struct Rig {
    auth: Arc<Authenticator>,
    ks: Arc<ScriptedKeystone>,
    clock: Arc<ManualClock>,
    log: Arc<Lines>,
}

impl Rig {
    fn check(&self, user: Option<&str>, service: Option<&str>) -> Verdict {
        self.auth.check_keystone(&KeystoneRequest {
            auth_token: user,
            service_token: service,
            method: Some("GET"),
            path: Some("/v2.1/servers"),
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.ks.seen.lock().unwrap().clone()
    }

    fn validations(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::Get && s.url.contains("/auth/tokens"))
            .collect()
    }

    fn posts(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::Post)
            .collect()
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

fn tokenless_options() -> Vec<(&'static str, &'static str)> {
    vec![
        ("validation", "keystone"),
        ("auth_url", "https://keystone.example:5000/v3"),
        ("auth_type", "v3tokenlessauth"),
        (
            "certfile",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-v3.pem"),
        ),
        (
            "keyfile",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client.key"),
        ),
        ("project_name", "service"),
        ("project_domain_name", "Default"),
        ("www_authenticate_uri", "https://keystone.example:5000/"),
    ]
}

fn password_options() -> Vec<(&'static str, &'static str)> {
    vec![
        ("validation", "keystone"),
        ("auth_url", "https://keystone.example:5000"),
        ("auth_type", "password"),
        ("username", "nova"),
        ("password", PASSWORD),
        ("user_domain_name", "Default"),
        ("project_name", "service"),
        ("project_domain_id", "default"),
    ]
}

fn merge<'a>(
    base: Vec<(&'a str, &'a str)>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut pairs = base;
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    pairs
}

fn rig_with(
    pairs: Vec<(&str, &str)>,
    answer: impl Fn(&Seen) -> Result<HttpReply, AsError> + Send + Sync + 'static,
) -> Rig {
    rig_discovering(pairs, None, answer)
}

/// [`rig_with`] whose Keystone answers version discovery with `discovery` (`None`: Keystone's
/// own document).
fn rig_discovering(
    pairs: Vec<(&str, &str)>,
    discovery: Option<Answer>,
    answer: impl Fn(&Seen) -> Result<HttpReply, AsError> + Send + Sync + 'static,
) -> Rig {
    let config = FilterConfig::from_raw(&RawOptions::from_pairs(pairs)).unwrap();
    let ks = Arc::new(ScriptedKeystone {
        discovery,
        ..ScriptedKeystone::new(answer)
    });
    let clock = Arc::new(ManualClock::new(NOW));
    let log = Arc::new(Lines::default());
    let auth = Authenticator::with_parts(config, ks.clone(), log.clone(), clock.clone()).unwrap();
    Rig {
        auth: Arc::new(auth),
        ks,
        clock,
        log,
    }
}

/// `secs` since the epoch in Keystone's format.
fn iso(secs: f64) -> String {
    let whole = secs.floor() as i64;
    let days = whole.div_euclid(86_400);
    let rem = whole.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn catalog() -> Value {
    json!([
        {"type": "identity", "name": "keystone", "id": "c1", "endpoints": [
            {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "https://keystone.example:5000/v3/", "id": "e1"},
            {"interface": "internal", "region": "RegionOne", "region_id": "RegionOne", "url": "https://keystone-internal.example:5000", "id": "e2"}
        ]},
        {"type": "compute", "name": "nova", "id": "c2", "endpoints": [
            {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "https://nova.example/v2.1", "id": "e3"}
        ]}
    ])
}

/// A validation answer; `scope` holds the scope members (`project`, `domain`, `system`).
fn token_body(user: &str, roles: &[&str], scope: Value, expires_in: f64) -> Value {
    let mut token = json!({
        "methods": ["password"],
        "user": {"id": format!("{user}-id"), "name": user, "domain": {"id": "default", "name": "Default"}, "password_expires_at": null},
        "audit_ids": ["ZGVmZ2hpamtsbW5vcHFycw"],
        "expires_at": iso(NOW + expires_in),
        "issued_at": iso(NOW),
    });
    let t = token.as_object_mut().unwrap();
    if !roles.is_empty() {
        t.insert(
            "roles".into(),
            Value::Array(
                roles
                    .iter()
                    .map(|r| json!({"id": format!("{r}-id"), "name": r}))
                    .collect(),
            ),
        );
        t.insert("catalog".into(), catalog());
    }
    for (k, v) in scope.as_object().unwrap() {
        t.insert(k.clone(), v.clone());
    }
    json!({ "token": token })
}

fn project_scope() -> Value {
    json!({"project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}}, "is_domain": false})
}

fn reply(status: u16, body: &Value) -> Result<HttpReply, AsError> {
    Ok(HttpReply {
        status,
        body: body.to_string().into_bytes(),
        captured: None,
    })
}

fn not_found(token: &str) -> Result<HttpReply, AsError> {
    reply(
        404,
        &json!({"error": {"code": 404, "message": format!("Could not find token: {token}."), "title": "Not Found"}}),
    )
}

/// Answers validations from a table of token → answer body (absent: 404).
fn keystone(
    tokens: Vec<(&'static str, Value)>,
) -> impl Fn(&Seen) -> Result<HttpReply, AsError> + Send + Sync {
    let table: HashMap<&'static str, Value> = tokens.into_iter().collect();
    move |seen: &Seen| {
        assert_eq!(seen.method, Method::Get, "{seen:?}");
        let subject = seen
            .headers
            .get("X-Subject-Token")
            .cloned()
            .unwrap_or_default();
        match table.get(subject.as_str()) {
            Some(body) => reply(200, body),
            None => not_found(&subject),
        }
    }
}

fn headers(v: &Verdict) -> Vec<(&'static str, String)> {
    match v {
        Verdict::Allow(g) => g
            .headers()
            .iter()
            .map(|(h, v)| (h.name, v.clone()))
            .collect(),
        Verdict::Deny(d) => panic!("denied: {:?}", d.reason),
    }
}

fn header(v: &Verdict, name: &str) -> Option<String> {
    headers(v)
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn refusal(v: &Verdict) -> DenyReason {
    match v {
        Verdict::Deny(d) => d.reason.clone(),
        Verdict::Allow(g) => panic!("allowed: {:?}", g.headers()),
    }
}

// ------------------------------------------------------------------ mapping

#[test]
fn a_project_token_maps_to_auth_tokens_headers_in_its_order_with_tokenless_scope_headers() {
    let r = rig_with(
        tokenless_options(),
        keystone(vec![(
            USER_TOKEN,
            token_body("alice", &["member", "reader"], project_scope(), 3600.0),
        )]),
    );
    let v = r.check(Some(USER_TOKEN), None);
    let got = headers(&v);
    let names: Vec<&str> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "X-Identity-Status",
            "X-Roles",
            "X-Project-Id",
            "X-Project-Name",
            "X-Project-Domain-Id",
            "X-Project-Domain-Name",
            "X-User-Id",
            "X-User-Name",
            "X-User-Domain-Id",
            "X-User-Domain-Name",
            "X-Is-Admin-Project",
            "X-Role",
            "X-User",
            "X-Tenant-Id",
            "X-Tenant-Name",
            "X-Tenant",
            "X-Service-Catalog",
        ]
    );
    let want = [
        ("X-Identity-Status", "Confirmed"),
        ("X-Roles", "member,reader"),
        ("X-Project-Id", "p1"),
        ("X-Project-Name", "demo"),
        ("X-Project-Domain-Id", "default"),
        ("X-Project-Domain-Name", "Default"),
        ("X-User-Id", "alice-id"),
        ("X-User-Name", "alice"),
        ("X-User-Domain-Id", "default"),
        ("X-User-Domain-Name", "Default"),
        ("X-Is-Admin-Project", "True"),
        ("X-Role", "member,reader"),
        ("X-User", "alice"),
        ("X-Tenant-Id", "p1"),
        ("X-Tenant-Name", "demo"),
        ("X-Tenant", "demo"),
    ];
    for (name, value) in want {
        assert_eq!(header(&v, name).as_deref(), Some(value), "{name}");
    }
    let catalog: Value = serde_json::from_str(&header(&v, "X-Service-Catalog").unwrap()).unwrap();
    assert_eq!(
        catalog[0],
        json!({"type": "identity", "name": "keystone", "endpoints": [{"region": "RegionOne",
            "publicURL": "https://keystone.example:5000/v3/", "internalURL": "https://keystone-internal.example:5000"}]})
    );
    // keystone.token_info is Keystone's answer.
    let Verdict::Allow(grant) = &v else {
        unreachable!()
    };
    let info: Value = serde_json::from_str(grant.token_info_json()).unwrap();
    assert_eq!(info["token"]["user"]["name"], "alice");

    let [seen] = r.validations().try_into().unwrap();
    assert_eq!(seen.url, "https://keystone.example:5000/v3/auth/tokens");
    assert_eq!(seen.headers["X-Subject-Token"], USER_TOKEN);
    assert_eq!(seen.headers["X-Project-Name"], "service");
    assert_eq!(seen.headers["X-Project-Domain-Name"], "Default");
    assert_eq!(seen.headers["OpenStack-Identity-Access-Rules"], "1");
    assert!(
        !seen.headers.contains_key("X-Auth-Token"),
        "tokenless sends no token of its own"
    );
    assert!(r.posts().is_empty());
}

#[test]
fn each_scope_maps_and_an_unscoped_token_has_identity_only() {
    let r = rig_with(
        tokenless_options(),
        keystone(vec![
            (
                "tok-system",
                token_body(
                    "admin",
                    &["admin"],
                    json!({"system": {"all": true}}),
                    3600.0,
                ),
            ),
            (
                "tok-domain",
                token_body(
                    "dadmin",
                    &["admin"],
                    json!({"domain": {"id": "d1", "name": "Dom"}}),
                    3600.0,
                ),
            ),
            ("tok-unscoped", token_body("bob", &[], json!({}), 3600.0)),
            (
                "tok-not-admin-project",
                token_body(
                    "carol",
                    &["member"],
                    json!({"project": {"id": "p2", "name": "x", "domain": {"id": "d", "name": "D"}}, "is_admin_project": false}),
                    3600.0,
                ),
            ),
        ]),
    );
    let system = r.check(Some("tok-system"), None);
    assert_eq!(
        header(&system, "OpenStack-System-Scope").as_deref(),
        Some("all")
    );
    assert_eq!(header(&system, "X-Project-Id"), None);
    assert_eq!(header(&system, "X-Roles").as_deref(), Some("admin"));

    let domain = r.check(Some("tok-domain"), None);
    assert_eq!(header(&domain, "X-Domain-Id").as_deref(), Some("d1"));
    assert_eq!(header(&domain, "X-Domain-Name").as_deref(), Some("Dom"));
    assert_eq!(header(&domain, "X-Project-Id"), None);
    assert_eq!(header(&domain, "X-Tenant"), None);
    assert_eq!(header(&domain, "OpenStack-System-Scope"), None);

    let unscoped = r.check(Some("tok-unscoped"), None);
    assert_eq!(
        header(&unscoped, "X-Identity-Status").as_deref(),
        Some("Confirmed")
    );
    assert_eq!(header(&unscoped, "X-User-Name").as_deref(), Some("bob"));
    assert_eq!(header(&unscoped, "X-Roles").as_deref(), Some(""));
    for absent in [
        "X-Project-Id",
        "X-Domain-Id",
        "OpenStack-System-Scope",
        "X-Service-Catalog",
    ] {
        assert_eq!(header(&unscoped, absent), None, "{absent}");
    }
    let carol = r.check(Some("tok-not-admin-project"), None);
    assert_eq!(
        header(&carol, "X-Is-Admin-Project").as_deref(),
        Some("False")
    );
}

#[test]
fn include_service_catalog_false_asks_for_nocatalog_and_sets_no_catalog() {
    let r = rig_with(
        merge(tokenless_options(), &[("include_service_catalog", "false")]),
        keystone(vec![(
            USER_TOKEN,
            token_body("alice", &["member"], project_scope(), 3600.0),
        )]),
    );
    let v = r.check(Some(USER_TOKEN), None);
    assert_eq!(header(&v, "X-Service-Catalog"), None);
    assert_eq!(
        r.validations()[0].url,
        "https://keystone.example:5000/v3/auth/tokens?nocatalog"
    );
}

// ------------------------------------------------------------------ cache

#[test]
fn a_valid_token_is_cached_until_token_cache_time_capped_by_expires_at() {
    let r = rig_with(
        tokenless_options(),
        keystone(vec![
            (
                USER_TOKEN,
                token_body("alice", &["member"], project_scope(), 3600.0),
            ),
            (
                "short",
                token_body("bob", &["member"], project_scope(), 100.0),
            ),
        ]),
    );
    assert!(matches!(r.check(Some("short"), None), Verdict::Allow(_)));
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    r.advance(99);
    assert!(matches!(r.check(Some("short"), None), Verdict::Allow(_)));
    assert_eq!(r.validations().len(), 2, "hits");
    r.advance(2);
    assert_eq!(
        refusal(&r.check(Some("short"), None)),
        DenyReason::Keystone(KeystoneRefusal::Expired),
        "past expires_at: asked again (the entry's lifetime ended with it), refused, not cached"
    );
    assert_eq!(r.validations().len(), 3);
    r.advance(198);
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    assert_eq!(r.validations().len(), 3, "a hit at 299 s");
    r.advance(2);
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    assert_eq!(r.validations().len(), 4, "token_cache_time passed");
    let m = r.auth.metrics();
    assert!(m.cache_hits >= 2 && m.cache_misses >= 3, "{m:?}");
}

#[test]
fn an_unknown_token_is_401_with_the_keystone_challenge_negatively_cached_and_never_logged() {
    let r = rig_with(tokenless_options(), keystone(vec![]));
    let v = r.check(Some(USER_TOKEN), None);
    assert_eq!(refusal(&v), DenyReason::Keystone(KeystoneRefusal::NotFound));
    let Verdict::Deny(d) = &v else { unreachable!() };
    assert_eq!(d.status(), 401);
    assert_eq!(
        r.auth.denial_headers(d),
        [(
            "WWW-Authenticate",
            "Keystone uri=\"https://keystone.example:5000/\"".to_owned()
        )]
    );
    assert!(d.body().contains("requires authentication"));
    r.advance(29);
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Deny(_)));
    assert_eq!(
        r.validations().len(),
        1,
        "negatively cached for token_cache_inactive_time"
    );
    assert_eq!(r.auth.metrics().cache_negative_hits, 1);
    r.advance(2);
    r.check(Some(USER_TOKEN), None);
    assert_eq!(r.validations().len(), 2);
    let log = r.log.text();
    assert!(log.contains("fp:"), "{log}");
    assert!(!log.contains(USER_TOKEN), "{log}");
    // No token at all: 401 without asking.
    assert_eq!(
        refusal(&r.check(None, None)),
        DenyReason::Keystone(KeystoneRefusal::Missing)
    );
    assert_eq!(
        refusal(&r.check(Some("bad token"), None)),
        DenyReason::Keystone(KeystoneRefusal::Malformed)
    );
    assert_eq!(r.validations().len(), 2);
}

#[test]
fn a_revoked_token_stops_working_within_token_cache_time() {
    let revoked = Arc::new(AtomicBool::new(false));
    let flag = revoked.clone();
    let body = token_body("alice", &["member"], project_scope(), 7200.0);
    let r = rig_with(
        merge(tokenless_options(), &[("token_cache_time", "60")]),
        move |seen| {
            if flag.load(SeqCst) {
                not_found(&seen.headers["X-Subject-Token"])
            } else {
                reply(200, &body)
            }
        },
    );
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    revoked.store(true, SeqCst);
    r.advance(59);
    assert!(
        matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)),
        "still cached"
    );
    r.advance(2);
    assert_eq!(
        refusal(&r.check(Some(USER_TOKEN), None)),
        DenyReason::Keystone(KeystoneRefusal::NotFound)
    );
}

#[test]
fn concurrent_requests_with_one_uncached_token_make_one_validation() {
    let r = rig_with(
        tokenless_options(),
        keystone(vec![(
            USER_TOKEN,
            token_body("alice", &["member"], project_scope(), 3600.0),
        )]),
    );
    // The leader's validation waits until every thread has missed.
    let threads = 8;
    let gate = Arc::new(Barrier::new(2));
    *r.ks.gate.lock().unwrap() = Some(gate.clone());
    let started = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let auth = Arc::clone(&r.auth);
            let started = Arc::clone(&started);
            std::thread::spawn(move || {
                started.wait();
                matches!(
                    auth.check_keystone(&KeystoneRequest {
                        auth_token: Some(USER_TOKEN),
                        ..Default::default()
                    }),
                    Verdict::Allow(_)
                )
            })
        })
        .collect();
    started.wait();
    // Let the waiters reach the flight before the leader's answer comes.
    while r.auth.metrics().cache_misses < threads as u64 {
        std::thread::yield_now();
    }
    gate.wait();
    for h in handles {
        assert!(h.join().unwrap());
    }
    assert_eq!(r.validations().len(), 1);
    assert_eq!(r.auth.metrics().coalesced_waits, threads as u64 - 1);
}

// ------------------------------------------------------------------ service tokens

#[test]
fn a_valid_service_token_adds_service_headers_and_never_touches_the_users_system_scope() {
    let r = rig_with(
        tokenless_options(),
        keystone(vec![
            (
                "user-project",
                token_body("alice", &["member"], project_scope(), 3600.0),
            ),
            (
                "user-system",
                token_body("root", &["admin"], json!({"system": {"all": true}}), 3600.0),
            ),
            (
                "svc-system",
                token_body(
                    "nova",
                    &["service", "admin"],
                    json!({"system": {"all": true}}),
                    3600.0,
                ),
            ),
            (
                "svc-project",
                token_body(
                    "neutron",
                    &["service"],
                    json!({"project": {"id": "sp", "name": "service", "domain": {"id": "default", "name": "Default"}}}),
                    3600.0,
                ),
            ),
        ]),
    );
    // A system-scoped service token does not make a project user system-scoped.
    let v = r.check(Some("user-project"), Some("svc-system"));
    assert_eq!(header(&v, "OpenStack-System-Scope"), None);
    assert_eq!(header(&v, "X-Project-Id").as_deref(), Some("p1"));
    assert_eq!(header(&v, "X-Roles").as_deref(), Some("member"));
    assert_eq!(
        header(&v, "X-Service-Identity-Status").as_deref(),
        Some("Confirmed")
    );
    assert_eq!(
        header(&v, "X-Service-Roles").as_deref(),
        Some("service,admin")
    );
    assert_eq!(header(&v, "X-Service-User-Name").as_deref(), Some("nova"));
    assert_eq!(header(&v, "X-Service-User-Id").as_deref(), Some("nova-id"));
    assert_eq!(header(&v, "X-Service-Project-Id"), None);
    // A project-scoped service token does not erase a system user's scope.
    let v = r.check(Some("user-system"), Some("svc-project"));
    assert_eq!(header(&v, "OpenStack-System-Scope").as_deref(), Some("all"));
    assert_eq!(header(&v, "X-Service-Project-Id").as_deref(), Some("sp"));
    assert_eq!(
        header(&v, "X-Service-Project-Domain-Name").as_deref(),
        Some("Default")
    );
    assert_eq!(
        header(&v, "X-Project-Id"),
        None,
        "the service's project is not the user's"
    );
    let service_headers = headers(&v)
        .into_iter()
        .filter(|(n, _)| n.starts_with("X-Service-") && *n != "X-Service-Catalog")
        .count();
    assert_eq!(
        service_headers,
        1 + 1 + 4 + 4,
        "status, roles, project x4, user x4 (and the catalog is the user's)"
    );
}

#[test]
fn service_token_roles_required_refuses_a_service_token_without_a_service_role() {
    let answers = vec![
        (
            USER_TOKEN,
            token_body("alice", &["member"], project_scope(), 3600.0),
        ),
        (
            "svc-no-role",
            token_body("mallory", &["member"], project_scope(), 3600.0),
        ),
    ];
    let r = rig_with(tokenless_options(), keystone(answers.clone()));
    let v = r.check(Some(USER_TOKEN), Some("svc-no-role"));
    let DenyReason::Keystone(KeystoneRefusal::ServiceToken(why)) = refusal(&v) else {
        panic!("{:?}", refusal(&v))
    };
    assert_eq!(*why, KeystoneRefusal::ServiceRoles);
    // An invalid (unknown) service token refuses the request too.
    assert!(matches!(
        refusal(&r.check(Some(USER_TOKEN), Some("svc-unknown"))),
        DenyReason::Keystone(KeystoneRefusal::ServiceToken(_))
    ));

    let lax = rig_with(
        merge(
            tokenless_options(),
            &[("service_token_roles_required", "false")],
        ),
        keystone(answers),
    );
    assert!(
        lax.auth
            .warnings()
            .iter()
            .any(|w| w.contains("service_token_roles_required"))
    );
    let v = lax.check(Some(USER_TOKEN), Some("svc-no-role"));
    assert_eq!(
        header(&v, "X-Service-Identity-Status").as_deref(),
        Some("Confirmed")
    );
    lax.check(Some(USER_TOKEN), Some("svc-no-role"));
    let warned = lax.log.at(Level::Warning);
    assert_eq!(
        warned
            .iter()
            .filter(|w| w.contains("service_token_roles"))
            .count(),
        1,
        "{warned:?}"
    );
}

#[test]
fn a_service_token_with_a_service_role_lets_an_expired_user_token_through() {
    let expired = token_body("alice", &["member"], project_scope(), -60.0);
    let answers = move |seen: &Seen| {
        let subject = seen.headers["X-Subject-Token"].as_str();
        match subject {
            "svc" => reply(
                200,
                &token_body("nova", &["service"], project_scope(), 3600.0),
            ),
            USER_TOKEN if seen.url.ends_with("allow_expired=1") => reply(200, &expired),
            other => not_found(other),
        }
    };
    let r = rig_with(tokenless_options(), answers);
    assert_eq!(
        refusal(&r.check(Some(USER_TOKEN), None)),
        DenyReason::Keystone(KeystoneRefusal::NotFound)
    );
    let v = r.check(Some(USER_TOKEN), Some("svc"));
    assert_eq!(header(&v, "X-User-Name").as_deref(), Some("alice"));
    assert!(
        r.validations()
            .iter()
            .any(|s| s.url.ends_with("?allow_expired=1"))
    );
    // The refusal cached without allow_expired does not shadow the answer with it.
    assert!(matches!(
        r.check(Some(USER_TOKEN), Some("svc")),
        Verdict::Allow(_)
    ));
}

#[test]
fn a_user_token_cached_without_allow_expired_serves_requests_with_a_service_token() {
    let r = rig_with(
        tokenless_options(),
        keystone(vec![
            (
                USER_TOKEN,
                token_body("alice", &["member"], project_scope(), 3600.0),
            ),
            (
                "svc",
                token_body("nova", &["service"], project_scope(), 3600.0),
            ),
        ]),
    );
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    assert!(matches!(
        r.check(Some(USER_TOKEN), Some("svc")),
        Verdict::Allow(_)
    ));
    let subjects: Vec<String> = r
        .validations()
        .iter()
        .map(|s| s.headers["X-Subject-Token"].clone())
        .collect();
    assert_eq!(
        subjects,
        [USER_TOKEN, "svc"],
        "the user's token is not validated again"
    );
}

#[test]
fn a_user_and_service_token_pair_reuses_its_grant_and_another_service_token_gets_its_own() {
    let r = rig_with(
        tokenless_options(),
        keystone(vec![
            (
                USER_TOKEN,
                token_body("alice", &["member"], project_scope(), 3600.0),
            ),
            (
                "svc-a",
                token_body("nova", &["service"], project_scope(), 3600.0),
            ),
            (
                "svc-b",
                token_body("cinder", &["service"], project_scope(), 3600.0),
            ),
        ]),
    );
    let grant = |service: &str| match r.check(Some(USER_TOKEN), Some(service)) {
        Verdict::Allow(g) => g,
        Verdict::Deny(d) => panic!("{:?}", d.reason),
    };
    let (a1, a2) = (grant("svc-a"), grant("svc-a"));
    assert!(Arc::ptr_eq(&a1, &a2), "the same pair: the same grant");
    let b = grant("svc-b");
    let name = |g: &tokenward::Grant| {
        g.headers()
            .iter()
            .find(|(h, _)| h.name == "X-Service-User-Name")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        (name(&a1).as_deref(), name(&b).as_deref()),
        (Some("nova"), Some("cinder"))
    );
    assert_eq!(name(&grant("svc-a")).as_deref(), Some("nova"));
}

// ------------------------------------------------------------------ delay_auth_decision

#[test]
fn delay_auth_decision_passes_invalid_requests_marked_invalid_but_keystone_down_is_503() {
    let r = rig_with(
        merge(tokenless_options(), &[("delay_auth_decision", "true")]),
        keystone(vec![
            (
                USER_TOKEN,
                token_body("alice", &["member"], project_scope(), 3600.0),
            ),
            (
                "svc",
                token_body("nova", &["service"], project_scope(), 3600.0),
            ),
        ]),
    );
    for v in [r.check(None, None), r.check(Some("unknown"), None)] {
        assert_eq!(headers(&v), [("X-Identity-Status", "Invalid".to_owned())]);
        let Verdict::Allow(g) = &v else {
            unreachable!()
        };
        assert_eq!(
            g.token_info_json(),
            "",
            "no keystone.token_info for an invalid token"
        );
    }
    let v = r.check(Some("unknown"), Some("svc"));
    assert_eq!(header(&v, "X-Identity-Status").as_deref(), Some("Invalid"));
    assert_eq!(
        header(&v, "X-Service-Identity-Status").as_deref(),
        Some("Confirmed")
    );
    let v = r.check(Some(USER_TOKEN), Some("unknown-svc"));
    assert_eq!(
        header(&v, "X-Identity-Status").as_deref(),
        Some("Confirmed")
    );
    assert_eq!(
        header(&v, "X-Service-Identity-Status").as_deref(),
        Some("Invalid")
    );
    assert_eq!(header(&v, "X-Service-Roles"), None);

    r.ks.down.store(true, SeqCst);
    let v = r.check(Some("never-seen"), None);
    let Verdict::Deny(d) = &v else {
        panic!("delay_auth_decision must not hide an outage")
    };
    assert_eq!(d.status(), 503);
    assert_eq!(r.auth.denial_headers(d), [("Retry-After", "5".to_owned())]);
}

// ------------------------------------------------------------------ outages

#[test]
fn keystone_unreachable_is_503_with_retry_after_retried_at_once_and_logged_once() {
    let r = rig_with(tokenless_options(), keystone(vec![]));
    r.ks.down.store(true, SeqCst);
    for token in ["a", "b", "c"] {
        let v = r.check(Some(token), None);
        let Verdict::Deny(d) = &v else { panic!() };
        assert!(
            matches!(
                d.reason,
                DenyReason::KeystoneUnavailable(AsError::Unreachable(_))
            ),
            "{:?}",
            d.reason
        );
        assert_eq!(d.status(), 503);
        assert_eq!(r.auth.denial_headers(d), [("Retry-After", "5".to_owned())]);
        assert!(
            d.body()
                .contains("Keystone service is temporarily unavailable")
        );
    }
    assert_eq!(
        r.validations().len(),
        3 * 4,
        "the first try and http_request_max_retries = 3"
    );
    let errors = r.log.at(Level::Error);
    assert_eq!(errors.len(), 1, "logged once: {errors:?}");
    assert!(
        errors[0].contains("connection refused") && errors[0].contains("auth_url"),
        "{}",
        errors[0]
    );
    // After a minute, the same cause is logged again.
    r.advance(61);
    r.check(Some("d"), None);
    assert_eq!(r.log.at(Level::Error).len(), 2);
}

#[test]
fn an_untrusted_certificate_refused_by_keystone_is_503_with_a_clear_log_not_401() {
    let r = rig_with(tokenless_options(), |_: &Seen| {
        reply(
            401,
            &json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}),
        )
    });
    for _ in 0..3 {
        let v = r.check(Some(USER_TOKEN), None);
        let Verdict::Deny(d) = &v else { panic!() };
        assert_eq!(d.status(), 503, "{:?}", d.reason);
        assert!(matches!(
            d.reason,
            DenyReason::KeystoneUnavailable(AsError::CredentialsRejected { status: 401, .. })
        ));
    }
    assert_eq!(
        r.validations().len(),
        3,
        "tokenless has no token of its own to renew"
    );
    let errors = r.log.at(Level::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("trusted_issuer"), "{}", errors[0]);
    assert_eq!(
        r.auth.metrics().breaker_open,
        0,
        "a 4xx does not open the breaker"
    );
}

#[test]
fn keystone_5xx_opens_the_breaker_then_misses_get_503_at_once() {
    let r = rig_with(
        merge(tokenless_options(), &[("as_failure_threshold", "2")]),
        |_: &Seen| {
            reply(
                500,
                &json!({"error": {"code": 500, "message": "oops", "title": "Internal Server Error"}}),
            )
        },
    );
    r.check(Some("a"), None);
    r.check(Some("b"), None);
    let sent = r.validations().len();
    let v = r.check(Some("c"), None);
    assert!(matches!(
        refusal(&v),
        DenyReason::KeystoneUnavailable(AsError::CircuitOpen { .. })
    ));
    assert_eq!(r.validations().len(), sent, "not asked while open");
    assert_eq!(r.auth.metrics().breaker_open, 1);
}

// ------------------------------------------------------------------ password / application credential

/// A Keystone that issues `OWN_TOKEN` (lifetime `own_life` s) to POSTs and validates
/// `USER_TOKEN` for a caller presenting the current own token.
fn issuing(
    own_life: f64,
    clock_start: f64,
) -> impl Fn(&Seen) -> Result<HttpReply, AsError> + Send + Sync {
    let issued = Arc::new(AtomicUsize::new(0));
    move |seen: &Seen| match seen.method {
        Method::Post => {
            let n = issued.fetch_add(1, SeqCst);
            let body = json!({"token": {"expires_at": iso(clock_start + own_life * (n as f64 + 1.0)), "catalog": catalog(),
                "user": {"id": "nova-id", "name": "nova", "domain": {"id": "default", "name": "Default"}}}});
            Ok(HttpReply {
                status: 201,
                body: body.to_string().into_bytes(),
                captured: Some(Secret::new(format!("{OWN_TOKEN}-{n}"))),
            })
        }
        Method::Get => {
            assert!(
                seen.headers["X-Auth-Token"].starts_with(OWN_TOKEN),
                "{seen:?}"
            );
            match seen.headers["X-Subject-Token"].as_str() {
                USER_TOKEN => reply(
                    200,
                    &token_body("alice", &["member"], project_scope(), 3600.0),
                ),
                other => not_found(other),
            }
        }
    }
}

#[test]
fn password_gets_one_service_token_for_all_threads_validates_at_the_internal_endpoint_and_renews_early()
 {
    let r = rig_with(password_options(), issuing(3600.0, NOW));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let auth = Arc::clone(&r.auth);
            std::thread::spawn(move || {
                let token = if i % 2 == 0 {
                    USER_TOKEN.to_owned()
                } else {
                    format!("unknown-{i}")
                };
                auth.check_keystone(&KeystoneRequest {
                    auth_token: Some(&token),
                    ..Default::default()
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let posts = r.posts();
    assert_eq!(posts.len(), 1, "one token request however many threads");
    assert_eq!(posts[0].url, "https://keystone.example:5000/v3/auth/tokens");
    assert_eq!(
        posts[0].json.as_ref().unwrap(),
        &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "nova", "domain": {"name": "Default"}, "password": PASSWORD}}},
                "scope": {"project": {"name": "service", "domain": {"id": "default"}}}}})
    );
    let validation = &r.validations()[0];
    assert_eq!(
        validation.url, "https://keystone-internal.example:5000/v3/auth/tokens",
        "the catalog's internal identity endpoint"
    );
    assert_eq!(validation.headers["X-Auth-Token"], format!("{OWN_TOKEN}-0"));

    // Renewed two minutes before it expires, once.
    r.advance(3600 - 121);
    r.check(Some("fresh-1"), None);
    assert_eq!(r.posts().len(), 1);
    r.advance(2);
    r.check(Some("fresh-2"), None);
    r.check(Some("fresh-3"), None);
    assert_eq!(r.posts().len(), 2);
    assert_eq!(
        r.validations().last().unwrap().headers["X-Auth-Token"],
        format!("{OWN_TOKEN}-1")
    );
}

#[test]
fn a_rejected_service_token_is_renewed_once_then_the_request_is_503() {
    let posts = Arc::new(AtomicUsize::new(0));
    let counter = posts.clone();
    let r = rig_with(password_options(), move |seen: &Seen| match seen.method {
        Method::Post => {
            let n = counter.fetch_add(1, SeqCst);
            Ok(HttpReply {
                status: 201,
                body: json!({"token": {"expires_at": iso(NOW + 3600.0)}})
                    .to_string()
                    .into_bytes(),
                captured: Some(Secret::new(format!("{OWN_TOKEN}-{n}"))),
            })
        }
        Method::Get if seen.headers["X-Auth-Token"] == format!("{OWN_TOKEN}-0") => reply(
            401,
            &json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}),
        ),
        Method::Get => reply(
            200,
            &token_body("alice", &["member"], project_scope(), 3600.0),
        ),
    });
    assert!(
        matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)),
        "revoked own token renewed"
    );
    assert_eq!(posts.load(SeqCst), 2);
    assert!(
        r.log.text().contains("validated at auth_url"),
        "no catalog: auth_url, warned"
    );
    assert_eq!(
        r.validations()[0].url,
        "https://keystone.example:5000/v3/auth/tokens"
    );

    let refusing = rig_with(password_options(), |seen: &Seen| match seen.method {
        Method::Post => reply(
            401,
            &json!({"error": {"code": 401, "message": format!("bad password {PASSWORD}"), "title": "Unauthorized"}}),
        ),
        Method::Get => panic!("validated without a token"),
    });
    let v = refusing.check(Some(USER_TOKEN), None);
    assert!(matches!(
        refusal(&v),
        DenyReason::KeystoneUnavailable(AsError::CredentialsRejected { .. })
    ));
    refusing.check(Some(USER_TOKEN), None);
    assert_eq!(refusing.posts().len(), 1, "a failure is held for a second");
    refusing.advance(2);
    refusing.check(Some(USER_TOKEN), None);
    assert_eq!(refusing.posts().len(), 2);
    let log = refusing.log.text();
    assert!(log.contains("check auth_type, username"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
    assert!(!format!("{v:?}").contains(PASSWORD));
}

#[test]
fn application_credentials_by_id_and_by_name_send_keystones_bodies() {
    let by_id = rig_with(
        vec![
            ("validation", "keystone"),
            ("auth_url", "https://keystone.example:5000/v3"),
            ("auth_type", "v3applicationcredential"),
            ("application_credential_id", "ac-1"),
            ("application_credential_secret", APP_SECRET),
        ],
        issuing(3600.0, NOW),
    );
    assert!(matches!(
        by_id.check(Some(USER_TOKEN), None),
        Verdict::Allow(_)
    ));
    assert_eq!(
        by_id.posts()[0].json.as_ref().unwrap(),
        &json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": "ac-1", "secret": APP_SECRET}}}})
    );
    let by_name = rig_with(
        vec![
            ("validation", "keystone"),
            ("auth_url", "https://keystone.example:5000/v3"),
            ("auth_type", "v3applicationcredential"),
            ("application_credential_name", "svc-cred"),
            ("username", "nova"),
            ("user_domain_id", "default"),
            ("application_credential_secret", APP_SECRET),
        ],
        issuing(3600.0, NOW),
    );
    assert!(matches!(
        by_name.check(Some(USER_TOKEN), None),
        Verdict::Allow(_)
    ));
    assert_eq!(
        by_name.posts()[0].json.as_ref().unwrap(),
        &json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential":
            {"name": "svc-cred", "user": {"name": "nova", "domain": {"id": "default"}}, "secret": APP_SECRET}}}})
    );
    for rig in [&by_id, &by_name] {
        let text = format!("{:?} {}", rig.auth, rig.log.text());
        assert!(
            !text.contains(APP_SECRET) && !text.contains(OWN_TOKEN),
            "{text}"
        );
    }
}

// ------------------------------------------------------------------ access rules and binds

#[test]
fn application_credential_access_rules_are_enforced_per_request() {
    let mut restricted = token_body("alice", &["member"], project_scope(), 3600.0);
    restricted["token"]["application_credential"] = json!({"id": "ac", "name": "x", "restricted": true,
        "access_rules": [{"id": "r1", "method": "GET", "path": "/v2.1/servers/*", "service": "compute"}]});
    let answers = vec![
        (USER_TOKEN, restricted),
        (
            "svc",
            token_body("nova", &["service"], project_scope(), 3600.0),
        ),
    ];
    let unset = rig_with(tokenless_options(), keystone(answers.clone()));
    assert_eq!(
        refusal(&unset.check(Some(USER_TOKEN), None)),
        DenyReason::Keystone(KeystoneRefusal::AccessRules)
    );
    assert!(unset.log.text().contains("set service_type"));

    let r = rig_with(
        merge(tokenless_options(), &[("service_type", "compute")]),
        keystone(answers),
    );
    let ask = |method: &str, path: &str, service: Option<&str>| {
        r.auth.check_keystone(&KeystoneRequest {
            auth_token: Some(USER_TOKEN),
            service_token: service,
            method: Some(method),
            path: Some(path),
        })
    };
    assert!(matches!(
        ask("GET", "/v2.1/servers/abc", None),
        Verdict::Allow(_)
    ));
    assert!(matches!(
        ask("DELETE", "/v2.1/servers/abc", None),
        Verdict::Deny(_)
    ));
    assert!(matches!(
        ask("GET", "/v2.1/servers/abc/action", None),
        Verdict::Deny(_)
    ));
    // A valid service token means a chain of service calls; an invalid one does not.
    assert!(matches!(
        ask("DELETE", "/v2.1/servers/abc", Some("svc")),
        Verdict::Allow(_)
    ));
    assert!(matches!(
        ask("DELETE", "/v2.1/servers/abc", Some("garbage")),
        Verdict::Deny(_)
    ));
    let user_validations = r
        .validations()
        .into_iter()
        .filter(|s| s.headers["X-Subject-Token"] == USER_TOKEN && !s.url.contains("allow_expired"))
        .count();
    assert_eq!(user_validations, 1, "rules checked per request on a hit");
}

#[test]
fn kerberos_bound_tokens_are_refused_when_binds_are_enforced() {
    let mut bound = token_body("alice", &["member"], project_scope(), 3600.0);
    bound["token"]["bind"] = json!({"kerberos": "alice@EXAMPLE"});
    let mut other = token_body("bob", &["member"], project_scope(), 3600.0);
    other["token"]["bind"] = json!({"x509": "CN=bob"});
    let answers = vec![("kerberos", bound), ("other", other)];
    let permissive = rig_with(tokenless_options(), keystone(answers.clone()));
    assert_eq!(
        refusal(&permissive.check(Some("kerberos"), None)),
        DenyReason::Keystone(KeystoneRefusal::Bind)
    );
    assert!(matches!(
        permissive.check(Some("other"), None),
        Verdict::Allow(_)
    ));
    let strict = rig_with(
        merge(tokenless_options(), &[("enforce_token_bind", "strict")]),
        keystone(answers.clone()),
    );
    assert!(matches!(
        strict.check(Some("other"), None),
        Verdict::Deny(_)
    ));
    let disabled = rig_with(
        merge(tokenless_options(), &[("enforce_token_bind", "disabled")]),
        keystone(answers),
    );
    assert!(matches!(
        disabled.check(Some("kerberos"), None),
        Verdict::Allow(_)
    ));
}

// ------------------------------------------------------------------ answers, secrets, options

#[test]
fn unusable_answers_refuse_the_token_and_are_logged_without_it() {
    let r = rig_with(tokenless_options(), |seen: &Seen| {
        let mut body = token_body("alice", &["member"], project_scope(), 3600.0);
        match seen.headers["X-Subject-Token"].as_str() {
            "inject" => body["token"]["user"]["name"] = json!("evil\r\nX-Roles: admin"),
            "comma" => body["token"]["roles"] = json!([{"id": "r", "name": "member,admin"}]),
            "no-expiry" => body["token"]["expires_at"] = json!("soon"),
            "no-user" => body["token"]["user"] = json!(null),
            "dup" => {
                return Ok(HttpReply {
                    status: 200,
                    body: br#"{"token": {"expires_at": "x", "expires_at": "y"}}"#.to_vec(),
                    captured: None,
                });
            }
            _ => {}
        }
        reply(200, &body)
    });
    for token in ["inject", "comma", "no-expiry", "no-user"] {
        assert!(
            matches!(
                refusal(&r.check(Some(token), None)),
                DenyReason::Keystone(KeystoneRefusal::Contents(_))
            ),
            "{token}"
        );
    }
    assert!(matches!(
        refusal(&r.check(Some("dup"), None)),
        DenyReason::KeystoneUnavailable(AsError::Malformed(_))
    ));
    assert_eq!(r.log.at(Level::Warning).len(), 4);
}

#[test]
fn secrets_and_tokens_never_reach_debug_errors_or_logs() {
    let r = rig_with(password_options(), |seen: &Seen| match seen.method {
        Method::Post => Ok(HttpReply {
            status: 201,
            body: json!({"token": {"expires_at": iso(NOW + 3600.0), "catalog": catalog()}})
                .to_string()
                .into_bytes(),
            captured: Some(Secret::new(OWN_TOKEN)),
        }),
        // Keystone echoing what it was sent in an error message.
        Method::Get => reply(
            403,
            &json!({"error": {"code": 403, "title": "Forbidden", "message": format!("{} may not validate {}", seen.headers["X-Auth-Token"], seen.headers["X-Subject-Token"])}}),
        ),
    });
    let v = r.check(Some(USER_TOKEN), Some(SERVICE_TOKEN));
    let Verdict::Deny(d) = &v else { panic!() };
    assert_eq!(d.status(), 503);
    let everything = format!(
        "{v:?} {} {:?} {:?} {}",
        d.reason,
        r.auth,
        r.auth.config(),
        r.log.text()
    );
    for secret in [PASSWORD, OWN_TOKEN, USER_TOKEN, SERVICE_TOKEN] {
        assert!(!everything.contains(secret), "{secret} in {everything}");
    }
    assert!(r.log.text().contains("policy"), "{}", r.log.text());
}

#[test]
fn keystone_options_are_known_and_oauth_ones_are_flagged_unused() {
    let auth = Authenticator::from_options(
        merge(
            tokenless_options(),
            &[
                ("delay_auth_decision", "true"),
                ("mapping_roles", "roles"),
                ("cache", "swift.cache"),
                ("service_type", "compute"),
            ],
        ),
        Arc::new(tokenward::log::NoLog),
    )
    .unwrap();
    let warnings = auth.warnings().join("\n");
    assert!(
        warnings.contains("\"mapping_roles\" is not used with validation = keystone"),
        "{warnings}"
    );
    assert!(warnings.contains("Swift"), "{warnings}");
    assert!(
        !warnings.contains("delay_auth_decision") && !warnings.contains("service_type"),
        "{warnings}"
    );
    assert!(!warnings.contains("not known"), "{warnings}");
    for (name, value) in [
        ("enforce_token_bind", "required"),
        ("enforce_token_bind", "kerberos"),
        ("memcache_tls_enabled", "true"),
    ] {
        let e = Authenticator::from_options(
            merge(tokenless_options(), &[(name, value)]),
            Arc::new(tokenward::log::NoLog),
        )
        .unwrap_err();
        assert_eq!(e.option(), name, "{e}");
    }
}

// ------------------------------------------------------------------ bearer_validation

/// An AS (introspection) and a Keystone behind one transport, each countable and each able
/// to fail on its own.
struct Both {
    keystone: ScriptedKeystone,
    as_calls: AtomicUsize,
    as_down: AtomicBool,
}

impl Transport for Both {
    fn post_form(
        &self,
        _url: &str,
        _authorization: Option<Secret>,
        body: Secret,
    ) -> Result<tokenward::transport::HttpResponse, AsError> {
        self.as_calls.fetch_add(1, SeqCst);
        if self.as_down.load(SeqCst) {
            return Err(AsError::Unreachable("connection refused".into()));
        }
        let active = body.expose().contains("token=oauth-good");
        let answer = if active {
            r#"{"active":true,"client_id":"svc","username":"oauth-user","user_domain":{"id":"default","name":"Default"},"project":{"id":"op","name":"oproj","domain":{"id":"default","name":"Default"}},"roles":"member"}"#
        } else {
            r#"{"active":false}"#
        };
        Ok(tokenward::transport::HttpResponse {
            status: 200,
            body: answer.as_bytes().to_vec(),
        })
    }

    fn send_request(&self, request: HttpRequest<'_>) -> Result<HttpReply, AsError> {
        self.keystone.send_request(request)
    }
}

fn combined_options() -> Vec<(&'static str, &'static str)> {
    merge(
        tokenless_options(),
        &[
            ("bearer_validation", "introspection"),
            ("introspect_endpoint", "https://as.example/introspect"),
            ("audience", "https://as.example"),
            ("client_id", "rs"),
            ("client_secret", "as-s3cret"),
            ("mapping_project_id", "project.id"),
            ("mapping_project_name", "project.name"),
            ("mapping_project_domain_id", "project.domain.id"),
            ("mapping_project_domain_name", "project.domain.name"),
            ("mapping_user_domain_id", "user_domain.id"),
            ("mapping_user_domain_name", "user_domain.name"),
            ("mapping_roles", "roles"),
            ("as_failure_threshold", "1"),
        ],
    )
}

#[test]
fn bearer_validation_accepts_oauth_tokens_beside_keystone_tokens_with_separate_breakers() {
    let config = FilterConfig::from_raw(&RawOptions::from_pairs(combined_options())).unwrap();
    let both = Arc::new(Both {
        keystone: ScriptedKeystone::new(keystone(vec![(
            USER_TOKEN,
            token_body("alice", &["member"], project_scope(), 3600.0),
        )])),
        as_calls: AtomicUsize::new(0),
        as_down: AtomicBool::new(false),
    });
    let clock = Arc::new(ManualClock::new(NOW));
    let auth =
        Authenticator::with_parts(config, both.clone(), Arc::new(Lines::default()), clock).unwrap();
    assert!(auth.accepts_bearer());
    assert!(
        !auth.warnings().iter().any(|w| w.contains("not used")),
        "{:?}",
        auth.warnings()
    );
    let bearer = |token: &str| {
        auth.check(&tokenward::Request::new(
            Some(&format!("Bearer {token}")),
            None,
        ))
    };
    let v = bearer("oauth-good");
    assert_eq!(header(&v, "X-User-Name").as_deref(), Some("oauth-user"));
    assert_eq!(
        header(&v, "X-Tenant").as_deref(),
        Some("op"),
        "the OAuth filter's mapping"
    );
    let Verdict::Deny(d) = bearer("oauth-bad") else {
        panic!()
    };
    assert_eq!(
        auth.denial_headers(&d),
        [(
            "WWW-Authenticate",
            "Authorization OAuth 2.0 uri=\"https://as.example\"".to_owned()
        )]
    );

    let ks = |token: Option<&str>| {
        auth.check_keystone(&KeystoneRequest {
            auth_token: token,
            ..Default::default()
        })
    };
    assert_eq!(
        header(&ks(Some(USER_TOKEN)), "X-User-Name").as_deref(),
        Some("alice")
    );
    let Verdict::Deny(d) = ks(Some("unknown")) else {
        panic!()
    };
    assert_eq!(
        auth.denial_headers(&d),
        [(
            "WWW-Authenticate",
            "Keystone uri=\"https://keystone.example:5000/\"".to_owned()
        )]
    );
    let Verdict::Deny(d) = ks(None) else { panic!() };
    assert_eq!(
        auth.denial_headers(&d).len(),
        2,
        "no token at all: both challenges"
    );

    // The AS down opens its breaker; Keystone validations go on.
    both.as_down.store(true, SeqCst);
    assert!(matches!(
        refusal(&bearer("oauth-other")),
        DenyReason::Unavailable(_)
    ));
    assert_eq!(auth.metrics().breaker_open, 1);
    let calls = both.as_calls.load(SeqCst);
    assert!(matches!(
        refusal(&bearer("oauth-third")),
        DenyReason::Unavailable(AsError::CircuitOpen { .. })
    ));
    assert_eq!(both.as_calls.load(SeqCst), calls);
    assert!(
        matches!(ks(Some("another-keystone-token")), Verdict::Deny(d) if d.status() == 401),
        "Keystone still asked"
    );
}

#[test]
fn bearer_validation_needs_validation_keystone_and_the_modes_options() {
    let e = FilterConfig::from_raw(&RawOptions::from_pairs(merge(
        tokenless_options(),
        &[("validation", ""), ("bearer_validation", "jwt")],
    )))
    .unwrap_err();
    assert_eq!(e.option(), "bearer_validation");
    let e = FilterConfig::from_raw(&RawOptions::from_pairs(merge(
        tokenless_options(),
        &[("bearer_validation", "introspection")],
    )))
    .unwrap_err();
    assert_eq!(e.option(), "introspect_endpoint");
    // Keystone alone: the Authorization check is not the way in.
    let pure = FilterConfig::from_raw(&RawOptions::from_pairs(tokenless_options())).unwrap();
    let auth = Authenticator::with_parts(
        pure,
        Arc::new(ScriptedKeystone::new(keystone(vec![]))),
        Arc::new(Lines::default()),
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap();
    assert!(!auth.accepts_bearer());
    assert!(matches!(
        auth.check(&tokenward::Request::new(Some("Bearer x"), None)),
        Verdict::Deny(_)
    ));
}

// ------------------------------------------------------------------ version discovery

impl Rig {
    /// The version-discovery GETs Keystone saw.
    fn discoveries(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::Get && !s.url.contains("/auth/tokens"))
            .collect()
    }
}

#[test]
fn an_unversioned_auth_url_is_discovered_once_when_the_service_first_needs_its_token() {
    let r = rig_with(password_options(), issuing(3600.0, NOW));
    assert!(r.seen().is_empty(), "nothing is asked at start-up");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let auth = Arc::clone(&r.auth);
            std::thread::spawn(move || {
                auth.check_keystone(&KeystoneRequest {
                    auth_token: Some(USER_TOKEN),
                    ..Default::default()
                })
            })
        })
        .collect();
    for h in handles {
        assert!(matches!(h.join().unwrap(), Verdict::Allow(_)));
    }
    let [discovery] = r.discoveries().try_into().unwrap();
    assert_eq!(discovery.url, "https://keystone.example:5000");
    assert_eq!(discovery.headers["Accept"], "application/json");
    assert!(
        !discovery.headers.contains_key("X-Auth-Token"),
        "nothing secret goes with discovery"
    );
    assert_eq!(
        r.posts()[0].url,
        "https://keystone.example:5000/v3/auth/tokens",
        "the stable v3 entry, not the deprecated v2.0"
    );
    let info = r.log.at(Level::Info).join("\n");
    assert!(info.contains("https://keystone.example:5000/v3"), "{info}");
    // A renewed service token does not discover again.
    r.advance(3500);
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    assert_eq!(r.posts().len(), 2);
    assert_eq!(r.discoveries().len(), 1);
}

#[test]
fn a_versioned_auth_url_is_used_as_is_without_discovery() {
    let r = rig_with(
        merge(
            password_options(),
            &[("auth_url", "https://keystone.example:5000/identity/v3/")],
        ),
        issuing(3600.0, NOW),
    );
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    assert!(r.discoveries().is_empty());
    assert_eq!(
        r.posts()[0].url,
        "https://keystone.example:5000/identity/v3/auth/tokens"
    );
}

/// The URL a rig posted its token request to after discovering with `document` (status, body).
fn posted_after(document: (u16, Value)) -> Result<String, String> {
    let document = Arc::new(document);
    let r = rig_discovering(
        merge(
            password_options(),
            &[("auth_url", "https://keystone.example:5000/identity")],
        ),
        Some(Box::new(move |_: &Seen| reply(document.0, &document.1))),
        issuing(3600.0, NOW),
    );
    match r.check(Some(USER_TOKEN), None) {
        Verdict::Allow(_) => Ok(r.posts()[0].url.clone()),
        Verdict::Deny(d) => {
            assert!(r.posts().is_empty(), "no token asked for: {:?}", r.posts());
            assert!(
                matches!(d.reason, DenyReason::KeystoneUnavailable(_)),
                "{:?}",
                d.reason
            );
            assert_eq!(r.auth.denial_headers(&d)[0].0, "Retry-After");
            let log = r.log.at(Level::Error).join("\n");
            assert!(
                log.contains("version document") || log.contains("500"),
                "{log}"
            );
            assert!(!log.contains(PASSWORD), "{log}");
            // The failure is not remembered past the hold: the next request asks again.
            r.advance(2);
            r.check(Some(USER_TOKEN), None);
            assert_eq!(r.discoveries().len(), 2);
            Err(log)
        }
    }
}

fn entry(id: &str, status: &str, href: &str) -> Value {
    json!({"id": id, "status": status, "links": [{"rel": "describedby", "href": "https://docs.example/"}, {"rel": "self", "href": href}]})
}

#[test]
fn discovery_takes_the_highest_usable_v3_in_every_document_shape() {
    let k = "https://keystone.example:5000/identity";
    let values = |entries: Vec<Value>| (300, json!({"versions": {"values": entries}}));
    assert_eq!(
        posted_after(values(vec![
            entry("v2.0", "deprecated", &format!("{k}/v2.0/")),
            entry("v3.10", "supported", &format!("{k}/v3.10/")),
            entry("v3.14", "CURRENT", &format!("{k}/v3/")),
            entry("v3.99", "experimental", &format!("{k}/v3.99/")),
            entry("v4.0", "stable", &format!("{k}/v4/")),
        ])),
        Ok(format!("{k}/v3/auth/tokens"))
    );
    assert_eq!(
        posted_after((
            200,
            json!({"version": entry("v3.14", "stable", &format!("{k}/v3"))})
        )),
        Ok(format!("{k}/v3/auth/tokens")),
        "a versioned endpoint's single version"
    );
    assert_eq!(
        posted_after((
            300,
            json!({"versions": [entry("v3", "stable", "https://elsewhere.example/v3/")]})
        )),
        Ok("https://elsewhere.example/v3/auth/tokens".to_owned()),
        "a bare list; a v3 with no minor"
    );
}

#[test]
fn a_version_document_without_a_usable_v3_is_a_503_logged_and_retried() {
    let k = "https://keystone.example:5000/identity";
    let values = |entries: Vec<Value>| (300, json!({"versions": {"values": entries}}));
    let cases = [
        values(vec![entry("v2.0", "stable", &format!("{k}/v2.0/"))]),
        values(vec![entry("v3.14", "deprecated", &format!("{k}/v3/"))]),
        values(vec![entry("v3.x", "stable", &format!("{k}/v3/"))]),
        values(vec![
            json!({"id": "v3.14", "status": "stable", "links": []}),
        ]),
        values(vec![json!({"id": 3, "status": "stable"})]),
        values(vec![entry(
            "v3.14",
            "stable",
            "http://keystone.example:5000/v3/",
        )]),
        values(vec![entry("v3.14", "stable", "javascript:alert(1)")]),
        values(vec![entry("v3.14", "stable", "/v3/")]),
        values(vec![]),
        (300, json!({"versions": "v3"})),
        (300, json!({"links": []})),
        (300, json!([1, 2])),
        (
            404,
            json!({"error": {"code": 404, "message": "no such page"}}),
        ),
        (
            500,
            json!({"error": {"message": format!("oops {PASSWORD}")}}),
        ),
        (200, json!(null)),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let shown = case.1.to_string();
        assert!(posted_after(case).is_err(), "case {i}: {shown}");
    }
}

#[test]
fn hostile_version_document_bytes_are_a_503_never_a_panic() {
    for body in [
        &b"<html>Keystone</html>"[..],
        b"",
        b"\xff\xfe{",
        br#"{"versions": {"values": []}, "versions": {"values": []}}"#,
        br#"{"versions": {"values": [{"id": "v3.99999999999999999999999", "status": "stable", "links": [{"rel": "self", "href": "https://k/v3"}]}]}}"#,
    ] {
        let body = body.to_vec();
        let r = rig_discovering(
            password_options(),
            Some(Box::new(move |_: &Seen| {
                Ok(HttpReply {
                    status: 300,
                    body: body.clone(),
                    captured: None,
                })
            })),
            issuing(3600.0, NOW),
        );
        let v = r.check(Some(USER_TOKEN), None);
        assert!(
            matches!(refusal(&v), DenyReason::KeystoneUnavailable(_)),
            "{v:?}"
        );
        assert!(r.posts().is_empty());
    }
    // Keystone down while discovering: a 503, and the token is asked for once it is back.
    let r = rig_with(password_options(), issuing(3600.0, NOW));
    r.ks.down.store(true, SeqCst);
    assert!(matches!(
        refusal(&r.check(Some(USER_TOKEN), None)),
        DenyReason::KeystoneUnavailable(AsError::Unreachable(_))
    ));
    r.ks.down.store(false, SeqCst);
    r.advance(2);
    assert!(matches!(r.check(Some(USER_TOKEN), None), Verdict::Allow(_)));
    assert_eq!(r.posts().len(), 1);
}
