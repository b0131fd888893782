//! Offline JWT validation (issue 10), driven through the transport seam with a manual clock.
//! Tokens and key sets are made by an independent implementation (jsonwebtoken), and every
//! token tokenward refuses for its signature is also refused by jsonwebtoken.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};

use tokenward::JwtRefusal;
use tokenward::clock::{Clock, ManualClock};
use tokenward::log::{Level, LogSink};
use tokenward::transport::{Document, HttpResponse, Transport};
use tokenward::{
    AsError, Authenticator, Denial, DenyReason, FilterConfig, RawOptions, Secret, Verdict,
};

const ISSUER: &str = "https://as.example/realms/openstack";
const JWKS: &str = "https://as.example/realms/openstack/certs";
const NOW: f64 = 1_800_000_000.0;

/// A signing key made by jsonwebtoken, and its public JWK as jsonwebtoken derives it.
struct SigningKey {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
}

impl SigningKey {
    fn rsa(kid: &str, alg: Algorithm) -> Self {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/client.key"
        ));
        let key = EncodingKey::from_rsa_pem(&pem.unwrap()).unwrap();
        Self {
            alg,
            kid: kid.into(),
            key,
        }
    }

    fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let key = EncodingKey::from_ec_der(der.as_ref());
        Self {
            alg: Algorithm::ES256,
            kid: kid.into(),
            key,
        }
    }

    fn ed(kid: &str) -> Self {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ed25519.key"
        ));
        let key = EncodingKey::from_ed_pem(&pem.unwrap()).unwrap();
        Self {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            key,
        }
    }

    fn jwk(&self) -> Value {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&self.key, self.alg).unwrap()).unwrap();
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    fn decoding_key(&self) -> DecodingKey {
        let jwk: Jwk = serde_json::from_value(self.jwk()).unwrap();
        DecodingKey::from_jwk(&jwk).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(claims, |_| {})
    }

    fn sign_with(&self, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(self.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn key_set(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// Claims that map with [`options`] and pass every check at [`NOW`].
fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": ["tacker", "account"], "sub": "u1", "client_id": "svc",
        "exp": NOW + 600.0, "iat": NOW - 10.0, "scope": "openid api",
        "username": "alice", "user_domain": {"id": "default", "name": "Default"},
        "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "realm_access": {"roles": ["member", "reader"]},
    })
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = claims();
    edit(&mut c);
    c
}

/// Serves documents by URL; records every GET and every POST (introspection).
#[derive(Default)]
struct Documents {
    docs: Mutex<HashMap<String, Result<Document, AsError>>>,
    /// The introspection answer (inactive when unset).
    introspection: Mutex<Option<String>>,
    gets: Mutex<Vec<String>>,
    posts: AtomicUsize,
}

impl Documents {
    fn serve(&self, url: &str, status: u16, body: &str, max_age: Option<u64>) {
        let doc = Document {
            status,
            body: body.as_bytes().to_vec(),
            max_age,
        };
        self.docs.lock().unwrap().insert(url.into(), Ok(doc));
    }

    fn fail(&self, url: &str) {
        let e = AsError::Unreachable("connection refused".into());
        self.docs.lock().unwrap().insert(url.into(), Err(e));
    }

    fn gets_of(&self, url: &str) -> usize {
        self.gets
            .lock()
            .unwrap()
            .iter()
            .filter(|u| *u == url)
            .count()
    }
}

impl Transport for Documents {
    fn post_form(&self, _: &str, _: Option<Secret>, _: Secret) -> Result<HttpResponse, AsError> {
        self.posts.fetch_add(1, SeqCst);
        let answer = self.introspection.lock().unwrap().clone();
        let body = answer.unwrap_or_else(|| r#"{"active":false}"#.to_owned());
        Ok(HttpResponse {
            status: 200,
            body: body.into_bytes(),
        })
    }

    fn get(&self, url: &str) -> Result<Document, AsError> {
        self.gets.lock().unwrap().push(url.into());
        let docs = self.docs.lock().unwrap();
        docs.get(url).cloned().unwrap_or(Ok(Document {
            status: 404,
            ..Document::default()
        }))
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

fn options<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("validation", "jwt"),
        ("token_issuer", ISSUER),
        ("jwks_uri", JWKS),
        ("mapping_project_id", "project.id"),
        ("mapping_project_name", "project.name"),
        ("mapping_project_domain_id", "project.domain.id"),
        ("mapping_project_domain_name", "project.domain.name"),
        ("mapping_user_domain_id", "user_domain.id"),
        ("mapping_user_domain_name", "user_domain.name"),
        ("mapping_roles", "realm_access.roles"),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    pairs
}

struct Rig {
    auth: Authenticator,
    docs: Arc<Documents>,
    clock: Arc<ManualClock>,
    log: Arc<Lines>,
}

impl Rig {
    fn new(extra: &[(&str, &str)], keys: &[&SigningKey]) -> Self {
        let docs = Arc::new(Documents::default());
        docs.serve(JWKS, 200, &key_set(keys), None);
        let config = FilterConfig::from_raw(&RawOptions::from_pairs(options(extra))).unwrap();
        let clock = Arc::new(ManualClock::new(NOW));
        let log = Arc::new(Lines::default());
        let auth =
            Authenticator::with_parts(config, docs.clone(), log.clone(), clock.clone()).unwrap();
        Self {
            auth,
            docs,
            clock,
            log,
        }
    }

    fn check(&self, token: &str) -> Verdict {
        self.auth.check(&tokenward::Request::new(
            Some(&format!("Bearer {token}")),
            None,
        ))
    }

    fn reason(&self, token: &str) -> DenyReason {
        match self.check(token) {
            Verdict::Deny(d) => d.reason,
            Verdict::Allow(_) => panic!("accepted"),
        }
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow(_))
}

fn jsonwebtoken_accepts(token: &str, key: &SigningKey) -> bool {
    let mut v = jsonwebtoken::Validation::new(key.alg);
    v.set_issuer(&[ISSUER]);
    v.validate_aud = false;
    // jsonwebtoken reads the clock itself; these claims expire at NOW + 600, in 2027.
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &key.decoding_key(), &v).is_ok()
}

#[test]
fn every_algorithm_family_verifies_and_maps() {
    let (rs, ps, es, ed) = (
        SigningKey::rsa("rs", Algorithm::RS256),
        SigningKey::rsa("ps", Algorithm::PS256),
        SigningKey::ec("es"),
        SigningKey::ed("ed"),
    );
    let rig = Rig::new(&[], &[&rs, &ps, &es, &ed]);
    for key in [&rs, &ps, &es, &ed] {
        let token = key.sign(&claims());
        assert!(jsonwebtoken_accepts(&token, key), "{:?}", key.alg);
        let Verdict::Allow(grant) = rig.check(&token) else {
            panic!("{:?} refused: {:?}", key.alg, rig.check(&token))
        };
        let headers: HashMap<_, _> = grant
            .headers()
            .iter()
            .map(|(h, v)| (h.name, v.as_str()))
            .collect();
        assert_eq!(headers["X-Roles"], "member,reader");
        assert_eq!(headers["X-Project-Id"], "p1");
        assert_eq!(headers["X-User-Name"], "alice");
    }
    let m = rig.auth.metrics();
    assert_eq!(
        (m.jwt_verifications, m.jwks_fetches, m.introspections),
        (4, 1, 0)
    );
    assert_eq!(rig.docs.posts.load(SeqCst), 0, "jwt mode never introspects");
}

#[test]
fn a_cache_hit_costs_no_signature_check() {
    let rs = SigningKey::rsa("rs", Algorithm::RS256);
    let rig = Rig::new(&[], &[&rs]);
    let token = rs.sign(&claims());
    assert!(allowed(&rig.check(&token)));
    assert!(allowed(&rig.check(&token)));
    let m = rig.auth.metrics();
    assert_eq!(
        (m.jwt_verifications, m.cache_hits, m.cache_misses),
        (1, 1, 1)
    );
    // Cached until `exp` even past token_cache_time; refused once `exp` (and leeway) passed.
    rig.advance(590);
    assert!(allowed(&rig.check(&token)));
    assert_eq!(rig.auth.metrics().jwt_verifications, 1);
    rig.advance(20);
    assert_eq!(rig.reason(&token), DenyReason::Expired);
}

#[test]
fn claims_are_checked_like_introspection_answers() {
    let rs = SigningKey::rsa("rs", Algorithm::RS256);
    let rig = Rig::new(
        &[
            ("token_audience", "tacker"),
            ("token_required_scope", "api"),
        ],
        &[&rs],
    );
    let cases: Vec<(Value, DenyReason)> = vec![
        (
            with(|c| c["iss"] = json!("https://evil.example")),
            DenyReason::IssuerMismatch,
        ),
        (
            with(|c| c["aud"] = json!("nova")),
            DenyReason::AudienceMismatch,
        ),
        (with(|c| c["exp"] = json!(NOW - 60.0)), DenyReason::Expired),
        (
            with(|c| c["nbf"] = json!(NOW + 60.0)),
            DenyReason::NotYetValid,
        ),
        (
            with(|c| c["iat"] = json!(NOW + 60.0)),
            DenyReason::NotYetValid,
        ),
        (
            with(|c| c.as_object_mut().unwrap().remove("exp").map(drop).unwrap()),
            DenyReason::MalformedClaims("exp"),
        ),
        (
            with(|c| c["exp"] = json!("tomorrow")),
            DenyReason::MalformedClaims("exp"),
        ),
        (
            with(|c| c["scope"] = json!("openid")),
            DenyReason::InsufficientScope,
        ),
    ];
    for (claims, reason) in cases {
        let token = rs.sign(&claims);
        assert_eq!(rig.reason(&token), reason, "{claims}");
        assert_eq!(rig.reason(&token), reason, "cached refusal");
    }
    assert_eq!(
        match rig.check(&rs.sign(&with(|c| c["scope"] = json!("openid")))) {
            Verdict::Deny(d) => d.status(),
            Verdict::Allow(_) => 200,
        },
        403
    );
    // `scp` as an array grants scope too; leeway covers a little skew.
    let scp = with(|c| {
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(["api", "openid"]);
        c["nbf"] = json!(NOW + 3.0);
    });
    assert!(allowed(&rig.check(&rs.sign(&scp))));
    assert!(rig.auth.metrics().jwt_refusals >= 8);
}

#[test]
fn attacks_are_refused_and_jsonwebtoken_agrees() {
    let rs = SigningKey::rsa("rs", Algorithm::RS256);
    let es = SigningKey::ec("es");
    let other = SigningKey::ec("es"); // same kid, another key
    let rig = Rig::new(&[], &[&rs, &es]);
    let payload = B64.encode(claims().to_string());
    let head = |h: Value| B64.encode(h.to_string());

    let none = format!(
        "{}.{payload}.",
        head(json!({"alg": "none", "typ": "at+jwt"}))
    );
    assert_eq!(
        rig.reason(&none),
        DenyReason::InvalidJwt(JwtRefusal::Algorithm)
    );

    // Key confusion: HS256 keyed with the RSA public key's bytes.
    let public = rs.jwk()["n"].as_str().unwrap().to_owned();
    let hs = jsonwebtoken::encode(
        &Header {
            typ: Some("at+jwt".into()),
            kid: Some("rs".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        rig.reason(&hs),
        DenyReason::InvalidJwt(JwtRefusal::Algorithm)
    );

    let forged = other.sign(&claims());
    assert!(!jsonwebtoken_accepts(&forged, &es));
    assert_eq!(
        rig.reason(&forged),
        DenyReason::InvalidJwt(JwtRefusal::Signature)
    );

    // An RS256 token whose kid names the EC key.
    let mislabelled = rs.sign_with(&claims(), |h| h.kid = Some("es".into()));
    assert_eq!(
        rig.reason(&mislabelled),
        DenyReason::InvalidJwt(JwtRefusal::Signature)
    );

    // jku / x5u / jwk are never fetched nor trusted.
    let jku = other.sign_with(&claims(), |h| {
        h.kid = Some("attacker".into());
        h.jku = Some("https://attacker.example/jwks".into());
        h.x5u = Some("https://attacker.example/cert".into());
        h.jwk = Some(serde_json::from_value(other.jwk()).unwrap());
    });
    assert_eq!(
        rig.reason(&jku),
        DenyReason::InvalidJwt(JwtRefusal::UnknownKey)
    );
    assert!(rig.docs.gets.lock().unwrap().iter().all(|u| u == JWKS));

    // A valid signature over a tampered payload.
    let good = rs.sign(&claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = B64.encode(with(|c| c["project"]["id"] = json!("admin")).to_string());
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");
    assert!(!jsonwebtoken_accepts(&tampered, &rs));
    assert_eq!(
        rig.reason(&tampered),
        DenyReason::InvalidJwt(JwtRefusal::Signature)
    );

    let sig = good.rsplit('.').next().unwrap();
    let rs_head = head(json!({"alg": "RS256", "typ": "at+jwt", "kid": "rs"}));
    for (token, refusal) in [
        (
            format!("{rs_head}.{payload}=.{sig}"),
            JwtRefusal::Malformed("payload"),
        ),
        (
            format!("{rs_head}.{payload}.{sig}+"),
            JwtRefusal::Malformed("signature"),
        ),
        (
            format!("{}.{payload}.{sig}", B64.encode("not json")),
            JwtRefusal::Malformed("header is not JSON"),
        ),
        (
            format!("{}.{payload}.{sig}", B64.encode("[]")),
            JwtRefusal::Malformed("header is not an object"),
        ),
        ("a.b.c.d.e".to_owned(), JwtRefusal::Encrypted),
        (
            "opaque".to_owned(),
            JwtRefusal::Malformed("not three segments"),
        ),
    ] {
        assert_eq!(
            rig.reason(&token),
            DenyReason::InvalidJwt(refusal),
            "{token}"
        );
    }
    let long = format!("{rs_head}.{}.{sig}", "A".repeat(16 * 1024));
    assert_eq!(rig.reason(&long), DenyReason::MalformedToken);
}

#[test]
fn an_unknown_kid_refetches_once_per_interval() {
    let old = SigningKey::rsa("old", Algorithm::RS256);
    let new = SigningKey::ec("new");
    let rig = Rig::new(
        &[
            ("jwks_min_refresh_interval", "10"),
            ("jwks_cache_time", "300"),
        ],
        &[&old],
    );
    assert!(allowed(&rig.check(&old.sign(&claims()))));
    assert_eq!(rig.docs.gets_of(JWKS), 1);

    // Rotation: the new key is published; its first token is refused until the interval
    // from the last fetch has passed, then accepted after exactly one more fetch.
    rig.docs.serve(JWKS, 200, &key_set(&[&new, &old]), None);
    let token = new.sign(&claims());
    assert_eq!(
        rig.reason(&token),
        DenyReason::InvalidJwt(JwtRefusal::UnknownKey)
    );
    rig.advance(10);
    assert!(allowed(&rig.check(&token)));
    assert_eq!(rig.docs.gets_of(JWKS), 2);

    // A flood of tokens with random unknown kids: at most one fetch per interval.
    let flood: Vec<String> = (0..1000)
        .map(|i| {
            new.sign_with(&with(|c| c["jti"] = json!(i)), |h| {
                h.kid = Some(format!("rnd{i}"))
            })
        })
        .collect();
    for (i, token) in flood.iter().enumerate() {
        if i % 100 == 0 {
            rig.advance(1);
        }
        assert_eq!(
            rig.reason(token),
            DenyReason::InvalidJwt(JwtRefusal::UnknownKey)
        );
    }
    // 10 s passed during the flood, which began 0 s after the last fetch: one refetch.
    assert_eq!(rig.docs.gets_of(JWKS), 3);
    assert_eq!(rig.auth.metrics().jwks_unknown_kid_refetches, 2);
}

#[test]
fn concurrent_unknown_kids_share_one_fetch() {
    let old = SigningKey::rsa("old", Algorithm::RS256);
    let new = SigningKey::ec("new");
    let rig = Arc::new(Rig::new(&[], &[&old]));
    assert!(allowed(&rig.check(&old.sign(&claims()))));
    rig.docs.serve(JWKS, 200, &key_set(&[&new, &old]), None);
    rig.advance(30);
    let tokens: Vec<String> = (0..16)
        .map(|i| new.sign(&with(|c| c["jti"] = json!(i))))
        .collect();
    std::thread::scope(|s| {
        for t in &tokens {
            let rig = &rig;
            s.spawn(move || assert!(allowed(&rig.check(t))));
        }
    });
    assert_eq!(rig.docs.gets_of(JWKS), 2);
}

#[test]
fn keys_expire_on_schedule_and_max_age_shortens_it() {
    let key = SigningKey::rsa("k", Algorithm::RS256);
    let rig = Rig::new(
        &[
            ("jwks_cache_time", "60"),
            ("jwks_min_refresh_interval", "600"),
        ],
        &[&key],
    );
    rig.docs.serve(JWKS, 200, &key_set(&[&key]), Some(20));
    assert!(allowed(&rig.check(&key.sign(&claims()))));
    rig.advance(19);
    assert!(allowed(
        &rig.check(&key.sign(&with(|c| c["jti"] = json!(1))))
    ));
    assert_eq!(rig.docs.gets_of(JWKS), 1);
    // max-age 20 < 60; the long min refresh interval does not hold the scheduled refresh.
    rig.advance(2);
    assert!(allowed(
        &rig.check(&key.sign(&with(|c| c["jti"] = json!(2))))
    ));
    assert_eq!(rig.docs.gets_of(JWKS), 2);
}

#[test]
fn an_unreachable_key_set_is_a_503_and_start_up_does_not_need_it() {
    let key = SigningKey::rsa("k", Algorithm::RS256);
    let rig = Rig::new(&[("jwks_min_refresh_interval", "5")], &[&key]);
    rig.docs.fail(JWKS);
    assert_eq!(rig.docs.gets_of(JWKS), 0, "nothing is fetched at start-up");
    let token = key.sign(&claims());
    let Verdict::Deny(denial) = rig.check(&token) else {
        panic!()
    };
    assert_eq!(denial.status(), 503);
    assert_eq!(
        rig.auth.denial_headers(&denial),
        vec![("Retry-After", "5".to_owned())]
    );
    // Within the interval no new attempt is made; after it the keys come back.
    assert_eq!(rig.reason(&token).status(), 503);
    assert_eq!(rig.docs.gets_of(JWKS), 1);
    rig.docs.serve(JWKS, 200, &key_set(&[&key]), None);
    rig.advance(5);
    assert!(allowed(&rig.check(&token)));
    let m = rig.auth.metrics();
    assert_eq!((m.jwks_fetches, m.jwks_fetch_errors), (2, 1));

    // Keys held, AS down: known kids still verify; an unknown kid is a 503, not a 401.
    rig.docs.fail(JWKS);
    rig.advance(400);
    assert!(allowed(
        &rig.check(&key.sign(&with(|c| c["jti"] = json!(1))))
    ));
    let stranger = SigningKey::ec("stranger").sign(&claims());
    assert_eq!(rig.reason(&stranger).status(), 503);
}

#[test]
fn discovery_checks_the_issuer() {
    let key = SigningKey::rsa("k", Algorithm::RS256);
    let rig = Rig::new(&[("jwks_uri", "")], &[&key]);
    let oidc = format!("{ISSUER}/.well-known/openid-configuration");
    let rfc8414 = "https://as.example/.well-known/oauth-authorization-server/realms/openstack";
    // OpenID discovery missing (404), RFC 8414 metadata present.
    rig.docs.serve(
        rfc8414,
        200,
        &json!({"issuer": ISSUER, "jwks_uri": JWKS}).to_string(),
        None,
    );
    assert!(allowed(&rig.check(&key.sign(&claims()))));
    assert_eq!(
        (
            rig.docs.gets_of(&oidc),
            rig.docs.gets_of(rfc8414),
            rig.docs.gets_of(JWKS)
        ),
        (1, 1, 1)
    );

    // Metadata naming another issuer: its jwks_uri is never fetched; 503 and an ERROR.
    let rig = Rig::new(&[("jwks_uri", "")], &[&key]);
    let evil = "https://evil.example/jwks";
    rig.docs.serve(
        &oidc,
        200,
        &json!({"issuer": "https://evil.example", "jwks_uri": evil}).to_string(),
        None,
    );
    assert_eq!(rig.reason(&key.sign(&claims())).status(), 503);
    assert_eq!(rig.docs.gets_of(evil) + rig.docs.gets_of(JWKS), 0);
    let log = rig.log.0.lock().unwrap();
    assert!(log.iter().any(|(level, line)| *level == Level::Error
        && line.contains("https://evil.example")
        && line.contains(ISSUER)));
}

#[test]
fn hybrid_mode_introspects_only_what_is_not_a_jws() {
    let key = SigningKey::rsa("k", Algorithm::RS256);
    let rig = Rig::new(
        &[
            ("validation", "jwt_or_introspection"),
            ("introspect_endpoint", "https://as.example/introspect"),
            ("audience", ISSUER),
            ("client_id", "rs"),
            ("client_secret", "s"),
        ],
        &[&key],
    );
    assert_eq!(rig.reason("opaque-token"), DenyReason::Inactive);
    assert_eq!(
        rig.reason("a.b.c.d.e"),
        DenyReason::Inactive,
        "a JWE is introspected"
    );
    assert_eq!(rig.docs.posts.load(SeqCst), 2);
    assert!(allowed(&rig.check(&key.sign(&claims()))));
    let forged = SigningKey::ec("k").sign(&claims());
    assert_eq!(
        rig.reason(&forged),
        DenyReason::InvalidJwt(JwtRefusal::Signature)
    );
    assert_eq!(
        rig.docs.posts.load(SeqCst),
        2,
        "a JWS is never introspected"
    );
}

#[test]
fn options_fail_at_start_up_with_their_name() {
    let err = |extra: &[(&str, &str)]| {
        FilterConfig::from_raw(&RawOptions::from_pairs(options(extra)))
            .unwrap_err()
            .option()
            .to_owned()
    };
    assert_eq!(err(&[("token_issuer", "")]), "token_issuer");
    assert_eq!(
        err(&[("validation", "jwt_or_introspection"), ("token_issuer", "")]),
        "token_issuer"
    );
    for bad in ["none", "HS256", "RS256,hs512", "RS1"] {
        assert_eq!(err(&[("jwt_algorithms", bad)]), "jwt_algorithms", "{bad}");
    }
    assert_eq!(err(&[("jwks_uri", "ftp://x")]), "jwks_uri");
    assert_eq!(err(&[("jwks_cache_time", "0")]), "jwks_cache_time");
    assert_eq!(
        err(&[("jwks_min_refresh_interval", "99999")]),
        "jwks_min_refresh_interval"
    );
    assert_eq!(err(&[("validation", "offline")]), "validation");
    // The hybrid mode still needs what introspection needs.
    assert_eq!(
        err(&[("validation", "jwt_or_introspection")]),
        "introspect_endpoint"
    );
    // jwt mode needs neither the endpoint nor client credentials.
    let ok = FilterConfig::from_raw(&RawOptions::from_pairs(options(&[]))).unwrap();
    assert_eq!(ok.audience, ISSUER);
}

#[test]
fn errors_and_debug_output_hold_no_token() {
    let key = SigningKey::rsa("k", Algorithm::RS256);
    let rig = Rig::new(&[], &[&key]);
    let token = SigningKey::ec("k").sign(&claims());
    let Verdict::Deny(d) = rig.check(&token) else {
        panic!()
    };
    let texts = [
        format!("{d:?}"),
        d.reason.to_string(),
        format!("{:?}", rig.auth),
    ];
    let log = rig
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| l.clone())
        .collect::<Vec<_>>();
    let signature = token.rsplit('.').next().unwrap();
    for text in texts.iter().chain(log.iter()) {
        assert!(
            !text.contains(signature) && !text.contains(&token[..40]),
            "{text}"
        );
    }
    let _ = rig.clock.wall();
}

#[test]
fn introspection_options_in_jwt_mode_are_a_warning() {
    let auth = Authenticator::from_options(
        options(&[
            ("introspect_endpoint", "https://as.example/i"),
            ("client_secret", "s"),
        ]),
        Arc::new(Lines::default()),
    )
    .unwrap();
    let warnings = auth.warnings().join("\n");
    assert!(
        warnings.contains("\"introspect_endpoint\" is not used"),
        "{warnings}"
    );
    assert!(
        warnings.contains("\"client_secret\" is not used"),
        "{warnings}"
    );
    assert!(!warnings.contains("\"s\""));
}

// ------------------------------------------------------------------ DPoP (issue 11)

const URL: &str = "https://api.example:9890/v1/vnflcm";

/// A DPoP key: signs proofs by hand (any header members), with aws-lc-rs directly.
struct ProofKey(EcdsaKeyPair);

impl ProofKey {
    fn new() -> Self {
        Self(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    fn jwk(&self) -> Value {
        use aws_lc_rs::signature::KeyPair as _;
        let point = self.0.public_key().as_ref().to_vec();
        json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
    }

    /// RFC 7638, written out by hand.
    fn jkt(&self) -> String {
        use sha2::Digest as _;
        let jwk = self.jwk();
        let text = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        B64.encode(sha2::Sha256::digest(text.as_bytes()))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self.0.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    fn proof_with(&self, token: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        use sha2::Digest as _;
        let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut claims = json!({
            "htm": "POST", "htu": URL, "iat": NOW, "jti": fresh_jti(),
            "ath": B64.encode(sha2::Sha256::digest(token.as_bytes())),
        });
        edit(&mut header, &mut claims);
        self.sign(&header, &claims)
    }

    fn proof(&self, token: &str) -> String {
        self.proof_with(token, |_, _| {})
    }
}

const DPOP_TOKEN: &str = "opaque-dpop-bound-token";

fn dpop_rig(mode: &str, key: &ProofKey) -> Rig {
    let rig = Rig::new(
        &[
            ("validation", "introspection"),
            ("introspect_endpoint", "https://as.example/introspect"),
            ("audience", ISSUER),
            ("client_id", "rs"),
            ("client_secret", "s"),
            ("token_issuer", ""),
            ("jwks_uri", ""),
            ("mapping_roles", "roles"),
            ("dpop", mode),
        ],
        &[],
    );
    let answer = json!({
        "active": true, "token_type": "DPoP", "cnf": {"jkt": key.jkt()}, "client_id": "svc",
        "username": "alice", "user_domain": {"id": "default", "name": "Default"},
        "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "roles": "member", "exp": NOW + 600.0,
    });
    *rig.docs.introspection.lock().unwrap() = Some(answer.to_string());
    rig
}

impl Rig {
    fn dpop(
        &self,
        scheme: &str,
        token: &str,
        proof: Option<&str>,
        method: &str,
        url: &str,
    ) -> Verdict {
        let authorization = format!("{scheme} {token}");
        self.auth.check(&tokenward::Request {
            authorization: Some(&authorization),
            method: Some(method),
            url: Some(url),
            dpop_proof: proof,
            ..tokenward::Request::default()
        })
    }

    fn dpop_reason(&self, proof: &str) -> DenyReason {
        match self.dpop("DPoP", DPOP_TOKEN, Some(proof), "POST", URL) {
            Verdict::Deny(d) => d.reason,
            Verdict::Allow(_) => panic!("accepted"),
        }
    }
}

#[test]
fn a_dpop_bound_token_needs_a_fresh_proof_by_its_key_on_every_request() {
    use tokenward::ProofFault;
    let key = ProofKey::new();
    let rig = dpop_rig("allowed", &key);
    let first = key.proof(DPOP_TOKEN);
    assert!(allowed(&rig.dpop(
        "DPoP",
        DPOP_TOKEN,
        Some(&first),
        "POST",
        URL
    )));
    // A cache hit still checks the proof: a new one passes, the same one again is a replay.
    let second = key.proof(DPOP_TOKEN);
    assert!(allowed(&rig.dpop(
        "DPoP",
        DPOP_TOKEN,
        Some(&second),
        "POST",
        &format!("{URL}?a=1")
    )));
    assert_eq!(rig.auth.metrics().introspections, 1);
    assert_eq!(
        rig.dpop_reason(&first),
        DenyReason::InvalidDpopProof(ProofFault::Replayed)
    );

    let t = DPOP_TOKEN;
    let cases: Vec<(String, DenyReason)> = vec![
        (
            key.proof_with(t, |_, c| c["htm"] = json!("GET")),
            DenyReason::InvalidDpopProof(ProofFault::Method),
        ),
        (
            key.proof_with(t, |_, c| {
                c["htu"] = json!("https://api.example:9890/v1/other")
            }),
            DenyReason::InvalidDpopProof(ProofFault::Url),
        ),
        (
            key.proof_with(t, |_, c| c["iat"] = json!(NOW - 120.0)),
            DenyReason::InvalidDpopProof(ProofFault::Time),
        ),
        (
            key.proof_with(t, |_, c| c["iat"] = json!(NOW + 60.0)),
            DenyReason::InvalidDpopProof(ProofFault::Time),
        ),
        (
            key.proof_with(t, |_, c| c["ath"] = json!("x")),
            DenyReason::InvalidDpopProof(ProofFault::TokenHash),
        ),
        (
            key.proof_with(t, |_, c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            DenyReason::InvalidDpopProof(ProofFault::Claims),
        ),
        (
            key.proof_with(t, |h, _| h["typ"] = json!("JWT")),
            DenyReason::InvalidDpopProof(ProofFault::Header),
        ),
        (
            key.proof_with(t, |h, _| h["alg"] = json!("none")),
            DenyReason::InvalidDpopProof(ProofFault::Header),
        ),
        (
            key.proof_with(t, |h, _| h["alg"] = json!("HS256")),
            DenyReason::InvalidDpopProof(ProofFault::Header),
        ),
        (
            key.proof_with(t, |h, _| h["jwk"]["d"] = json!("c2VjcmV0")),
            DenyReason::InvalidDpopProof(ProofFault::Header),
        ),
        (
            key.proof_with(t, |h, _| h["jwk"] = ProofKey::new().jwk()),
            DenyReason::InvalidDpopProof(ProofFault::Signature),
        ),
        (
            ProofKey::new().proof(t),
            DenyReason::DpopToken("the proof's key is not the token's cnf.jkt"),
        ),
    ];
    for (proof, reason) in cases {
        assert_eq!(rig.dpop_reason(&proof), reason);
    }
    let Verdict::Deny(d) = rig.dpop("DPoP", t, None, "POST", URL) else {
        panic!()
    };
    assert_eq!(d.reason, DenyReason::InvalidDpopProof(ProofFault::Missing));
    assert_eq!(
        rig.auth.denial_headers(&d),
        vec![(
            "WWW-Authenticate",
            "DPoP error=\"invalid_dpop_proof\", algs=\"ES256 RS256 PS256 EdDSA\"".to_owned()
        )]
    );
    // RFC 9449 §7.2: never as a bearer token.
    let Verdict::Deny(d) = rig.dpop("Bearer", t, Some(&key.proof(t)), "POST", URL) else {
        panic!()
    };
    assert!(matches!(d.reason, DenyReason::DpopToken(_)));
    assert!(
        rig.auth.denial_headers(&d)[0]
            .1
            .starts_with("DPoP error=\"invalid_token\"")
    );
}

#[test]
fn dpop_modes_decide_the_schemes() {
    let key = ProofKey::new();
    // off: the DPoP scheme is unknown, and a key-bound token is still refused as a bearer token.
    let off = dpop_rig("off", &key);
    assert_eq!(
        match off.dpop(
            "DPoP",
            DPOP_TOKEN,
            Some(&key.proof(DPOP_TOKEN)),
            "POST",
            URL
        ) {
            Verdict::Deny(d) => d.reason,
            Verdict::Allow(_) => panic!(),
        },
        DenyReason::MissingToken
    );
    assert!(matches!(
        off.dpop("Bearer", DPOP_TOKEN, None, "POST", URL),
        Verdict::Deny(Denial {
            reason: DenyReason::DpopToken(_)
        })
    ));
    // required: an unbound bearer token is refused; allowed: accepted.
    for (mode, ok) in [("allowed", true), ("required", false)] {
        let rig = dpop_rig(mode, &key);
        let unbound = json!({"active": true, "client_id": "svc", "username": "a",
            "user_domain": {"id": "d", "name": "D"}, "roles": "r",
            "project": {"id": "p", "name": "n", "domain": {"id": "d", "name": "D"}}});
        *rig.docs.introspection.lock().unwrap() = Some(unbound.to_string());
        assert_eq!(
            allowed(&rig.dpop("Bearer", "plain", None, "GET", URL)),
            ok,
            "{mode}"
        );
        // An unbound token with the DPoP scheme has no key to match.
        assert!(matches!(
            rig.dpop("DPoP", "plain", Some(&key.proof("plain")), "POST", URL),
            Verdict::Deny(Denial {
                reason: DenyReason::DpopToken(_)
            })
        ));
    }
    let e = FilterConfig::from_raw(&RawOptions::from_pairs(options(&[(
        "dpop_algorithms",
        "ES256,HS256",
    )])))
    .unwrap_err();
    assert_eq!(e.option(), "dpop_algorithms");
}

/// A `jti` never used before in this test process.
fn fresh_jti() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "jti-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
