//! The Rust rows of scripts/bench-jwt.sh: the floor (a bare aws-lc-rs `ParsedPublicKey`
//! verify of each token's signature, the key parsed once, as the core does), jsonwebtoken 11's
//! `decode` with a key made once (it re-parses the key on every call), the core's
//! `Authenticator::authenticate` without any door, the hit of the same token cached through
//! introspection instead, and the pieces of the core's first sight.
//!
//!   cargo bench --bench jwt_floor -- DIR [HITS]
//!
//! DIR is written by benches/bench_jwt.py: `jwks.json`, `meta.json` (issuer, audience, algs,
//! options) and `tokens-ALG.txt` (a warm-up token, then the measured ones, one per line).
//! Prints `RESULT row alg first|hit median_ns p99_ns samples` lines.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use tokenward::jws::{self, Algorithm, HeaderPolicy};
use tokenward::log::{Level, LogSink};
use tokenward::transport::{Document, HttpResponse, Transport};
use tokenward::{AsError, Authenticator, FilterConfig, RawOptions, Secret, Verdict};

/// Serves the key set for any URL; never introspects.
struct KeySetOnly(Vec<u8>);

/// Answers every introspection with one active token's claims: the same JWT cached through
/// `validation = introspection`, for a hit beside the offline one.
struct Introspects(Vec<u8>);

impl Transport for Introspects {
    fn post_form(&self, _: &str, _: Option<Secret>, _: Secret) -> Result<HttpResponse, AsError> {
        Ok(HttpResponse {
            status: 200,
            body: self.0.clone(),
        })
    }

    fn get(&self, _: &str) -> Result<Document, AsError> {
        Err(AsError::Unreachable(
            "no key set in introspection mode".into(),
        ))
    }
}

impl Transport for KeySetOnly {
    fn post_form(&self, _: &str, _: Option<Secret>, _: Secret) -> Result<HttpResponse, AsError> {
        Err(AsError::Unreachable(
            "no introspection in this bench".into(),
        ))
    }

    fn get(&self, _: &str) -> Result<Document, AsError> {
        Ok(Document {
            status: 200,
            body: self.0.clone(),
            max_age: None,
        })
    }
}

struct Quiet;

impl LogSink for Quiet {
    fn enabled(&self, _: Level) -> bool {
        false
    }
    fn log(&self, _: Level, _: &str) {}
}

#[allow(clippy::print_stdout)] // a bench's output
fn report(row: &str, alg: &str, kind: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let n = ns.len();
    println!(
        "RESULT {row} {alg} {kind} {} {} {n}",
        ns[n / 2],
        ns[(n * 99 / 100).min(n - 1)]
    );
}

/// Times `f` once per item.
fn each<T>(items: &[T], mut f: impl FnMut(&T)) -> Vec<u64> {
    items
        .iter()
        .map(|item| {
            let t0 = Instant::now();
            f(item);
            t0.elapsed().as_nanos() as u64
        })
        .collect()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// The verification key of `alg` in the key set, parsed once.
fn parsed_key(jwks: &Value, alg: &str) -> ParsedPublicKey {
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["alg"] == alg))
        .unwrap_or_else(|| panic!("no {alg} key"));
    let text = |name: &str| b64(jwk[name].as_str().expect("key member"));
    match alg {
        "RS256" => RsaPublicKeyComponents {
            n: text("n"),
            e: text("e"),
        }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .expect("RSA key"),
        "ES256" => {
            let mut point = vec![4];
            point.extend(text("x"));
            point.extend(text("y"));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).expect("EC key")
        }
        _ => panic!("unsupported {alg}"),
    }
}

fn jsonwebtoken_key(jwks: &Value, alg: &str) -> jsonwebtoken::DecodingKey {
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["alg"] == alg))
        .expect("key");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("JWK");
    jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key")
}

/// The options of `meta` whose names pass `keep`, as pairs.
fn meta_options(meta: &Value, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    meta["options"]
        .as_object()
        .expect("options")
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.as_str().expect("option text").to_owned()))
        .collect()
}

/// An authenticator of `options` over `transport`, logging nothing.
fn built(options: Vec<(String, String)>, transport: impl Transport + 'static) -> Authenticator {
    let config = FilterConfig::from_raw(&RawOptions::from_pairs(options)).expect("options");
    Authenticator::with_transport(config, Arc::new(transport), Arc::new(Quiet))
        .expect("authenticator")
}

fn authenticator(meta: &Value, jwks: &str) -> Authenticator {
    built(
        meta_options(meta, |_| true),
        KeySetOnly(jwks.as_bytes().to_vec()),
    )
}

/// `validation = introspection` with the mapping of `meta`, whose AS answers `token`'s own
/// claims (and `active: true`) for any token.
fn introspection_authenticator(meta: &Value, token: &str) -> Authenticator {
    let payload = token.split('.').nth(1).expect("a JWS payload");
    let mut claims: Value = serde_json::from_slice(&b64(payload)).expect("JSON claims");
    claims["active"] = Value::Bool(true);
    let mut options = meta_options(meta, |k| k.starts_with("mapping_"));
    for (name, value) in [
        ("introspect_endpoint", "https://as.invalid/introspect"),
        ("audience", "https://as.invalid"),
        ("client_id", "bench"),
        ("client_secret", "bench-secret"),
    ] {
        options.push((name.into(), value.into()));
    }
    built(options, Introspects(claims.to_string().into_bytes()))
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow(_))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--")) // cargo bench adds --bench
        .collect();
    let dir = PathBuf::from(args.first().expect("usage: jwt_floor DIR [HITS]"));
    let hits: usize = args.get(1).map_or(20_000, |h| h.parse().expect("HITS"));
    let jwks_text = read(&dir, "jwks.json");
    let jwks: Value = serde_json::from_str(&jwks_text).expect("jwks.json");
    let meta: Value = serde_json::from_str(&read(&dir, "meta.json")).expect("meta.json");
    let (issuer, audience) = (
        meta["issuer"].as_str().expect("issuer"),
        meta["audience"].as_str().expect("audience"),
    );
    for alg in meta["algs"].as_array().expect("algs") {
        let alg = alg.as_str().expect("alg");
        let text = read(&dir, &format!("tokens-{alg}.txt"));
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let (warm, tokens) = (lines[0], &lines[1..]);

        // The floor: the signature alone, over a pre-split input with the key parsed once.
        let key = parsed_key(&jwks, alg);
        let split: Vec<(&[u8], Vec<u8>)> = tokens
            .iter()
            .map(|t| {
                let (input, sig) = t.rsplit_once('.').expect("JWS");
                (input.as_bytes(), b64(sig))
            })
            .collect();
        let floor = each(&split, |(input, sig)| {
            assert!(key.verify_sig(black_box(input), black_box(sig)).is_ok());
        });
        report("floor", alg, "first", floor);

        // jsonwebtoken 11: the key made once; decode re-parses it on each call.
        let jkey = jsonwebtoken_key(&jwks, alg);
        let mut validation = jsonwebtoken::Validation::new(match alg {
            "RS256" => jsonwebtoken::Algorithm::RS256,
            _ => jsonwebtoken::Algorithm::ES256,
        });
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        let decode = each(tokens, |t| {
            assert!(jsonwebtoken::decode::<Value>(black_box(t), &jkey, &validation).is_ok());
        });
        report("jsonwebtoken", alg, "first", decode);

        // The core: first sight of each token on a fresh authenticator, then hits on one.
        let auth = authenticator(&meta, &jwks_text);
        assert!(allowed(&auth.check(&tokenward::Request::new(
            Some(&format!("Bearer {warm}")),
            None
        ))));
        let headers: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
        let first = each(&headers, |h| {
            assert!(allowed(
                &auth.check(&tokenward::Request::new(Some(black_box(h)), None))
            ));
        });
        report("core", alg, "first", first);
        let hit_header = vec![headers[0].as_str(); hits];
        let hit = each(&hit_header, |h| {
            assert!(allowed(
                &auth.check(&tokenward::Request::new(Some(black_box(h)), None))
            ));
        });
        report("core", alg, "hit", hit);

        // The same token's hit when it was introspected instead (what a hit costs depends on
        // the token's length, which the cache key hashes, not on how it was validated).
        let introspected = introspection_authenticator(&meta, tokens[0]);
        assert!(allowed(
            &introspected.check(&tokenward::Request::new(Some(&headers[0]), None))
        ));
        let hit = each(&hit_header, |h| {
            assert!(allowed(
                &introspected.check(&tokenward::Request::new(Some(black_box(h)), None))
            ));
        });
        report("core-introspected", alg, "hit", hit);

        // The pieces of a first sight that are not the signature.
        let policy = HeaderPolicy {
            algorithms: vec![Algorithm::from_name(alg).expect("alg")],
            types: vec!["at+jwt".into(), "application/at+jwt".into(), "JWT".into()],
        };
        let parse = each(tokens, |t| {
            assert!(jws::parse(black_box(t), &policy).is_ok());
        });
        report("piece:parse", alg, "first", parse);
        let parsed: Vec<_> = tokens
            .iter()
            .map(|t| jws::parse(t, &policy).expect("parse"))
            .collect();
        let verify = each(&parsed, |jws| assert!(jws.verified_by(&key)));
        report("piece:verify", alg, "first", verify);
        let claims = each(&parsed, |jws| {
            black_box(jws.claim_count().expect("claims"));
        });
        report("piece:claims", alg, "first", claims);
    }
}
