//! JWT access tokens checked offline (RFC 9068, RFC 7515, RFC 8725): the compact JWS is split
//! and decoded strictly, its header checked before any key is looked at, its signature
//! verified with a key of the AS's key set (see [`crate::jwks`]), and only then its payload
//! read. The claims then take the same path as an introspection answer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::strict_json::{self, Json, JsonObject, JsonTree, Members, Refusal, View};

/// A JWS signature algorithm tokenward verifies (asymmetric only: RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// ECDSA P-521 with SHA-512.
    Es512,
    /// Ed25519.
    EdDsa,
}

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC` on the named curve.
    Ec(&'static str),
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

impl Algorithm {
    /// Every algorithm tokenward verifies, the default of `jwt_algorithms`.
    pub const ALL: [Algorithm; 10] = [
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::Es256,
        Self::Es384,
        Self::Es512,
        Self::EdDsa,
    ];

    /// The registered `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm of an `alg` name (exact spelling, as RFC 7515 requires).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The key family that can verify it.
    pub fn family(self) -> KeyFamily {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => {
                KeyFamily::Rsa
            }
            Self::Es256 => KeyFamily::Ec("P-256"),
            Self::Es384 => KeyFamily::Ec("P-384"),
            Self::Es512 => KeyFamily::Ec("P-521"),
            Self::EdDsa => KeyFamily::Ed25519,
        }
    }

    /// The aws-lc-rs verification parameters (ECDSA in the fixed `r‖s` form JWS uses).
    pub fn verification(self) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
        use aws_lc_rs::signature as s;
        match self {
            Self::Rs256 => &s::RSA_PKCS1_2048_8192_SHA256,
            Self::Rs384 => &s::RSA_PKCS1_2048_8192_SHA384,
            Self::Rs512 => &s::RSA_PKCS1_2048_8192_SHA512,
            Self::Ps256 => &s::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &s::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &s::RSA_PSS_2048_8192_SHA512,
            Self::Es256 => &s::ECDSA_P256_SHA256_FIXED,
            Self::Es384 => &s::ECDSA_P384_SHA384_FIXED,
            Self::Es512 => &s::ECDSA_P521_SHA512_FIXED,
            Self::EdDsa => &s::ED25519,
        }
    }
}

/// Why a JWT is refused before or at its signature (its claims are judged later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRefusal {
    /// Not a compact JWS: segment count, base64url, JSON or a header member's type.
    Malformed(&'static str),
    /// Five segments: an encrypted JWT (JWE), which tokenward does not decrypt.
    Encrypted,
    /// `cty: JWT`: a nested token.
    Nested,
    /// `alg` is not in `jwt_algorithms` (`none` and HS* never are).
    Algorithm,
    /// `typ` is missing or not in `jwt_typ`.
    Type,
    /// `crit` names an extension tokenward does not implement.
    Critical,
    /// No key of the AS has this `kid`, even after refetching the key set.
    UnknownKey,
    /// No key of the key set verifies the signature.
    Signature,
    /// The payload is not a JSON object.
    Payload,
}

impl JwtRefusal {
    /// A short stable code for logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Encrypted => "encrypted",
            Self::Nested => "nested",
            Self::Algorithm => "algorithm",
            Self::Type => "typ",
            Self::Critical => "crit",
            Self::UnknownKey => "unknown_kid",
            Self::Signature => "signature",
            Self::Payload => "payload",
        }
    }
}

impl std::fmt::Display for JwtRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed JWT: {what}"),
            other => write!(f, "JWT refused: {}", other.code()),
        }
    }
}

/// The shape of a token's text, for `jwt_or_introspection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Three dot-separated segments whose first is a base64url JSON object: a JWS.
    Jws,
    /// Five segments: a JWE.
    Jwe,
    /// Anything else (an opaque token).
    Other,
}

/// Whether a token is a JWS, a JWE or opaque, from its text alone.
pub(crate) fn shape(token: &str) -> Shape {
    match token.bytes().filter(|&b| b == b'.').count() {
        2 => {
            let head = token.split('.').next().unwrap_or("");
            let header = decode_segment(head, "header").ok();
            let text = header.as_deref().and_then(|h| std::str::from_utf8(h).ok());
            match text.map(strict_json::borrowed) {
                Some(Ok(Json::Object(_))) => Shape::Jws,
                _ => Shape::Other,
            }
        }
        4 => Shape::Jwe,
        _ => Shape::Other,
    }
}

/// A compact JWS split and its header checked: what key lookup and verification need.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The header's `alg`.
    pub algorithm: Algorithm,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    signing_input: &'a str,
    /// The payload, `None` when it is not UTF-8 (refused as [`JwtRefusal::Payload`] once the
    /// signature has been checked).
    payload: Option<String>,
    signature: Vec<u8>,
}

/// What the header of an acceptable token must satisfy.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    /// Accepted `alg` values.
    pub algorithms: Vec<Algorithm>,
    /// Accepted `typ` values, compared without case and without an `application/` prefix.
    pub types: Vec<String>,
}

/// Whether two media types are the same, without case and without the optional
/// `application/` prefix (RFC 7515 §4.1.9). Allocates nothing (it runs on every first sight).
fn same_media_type(a: &str, b: &str) -> bool {
    fn bare(value: &str) -> &str {
        const PREFIX: &str = "application/";
        match value.get(..PREFIX.len()) {
            Some(head) if head.eq_ignore_ascii_case(PREFIX) => &value[PREFIX.len()..],
            _ => value,
        }
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

impl HeaderPolicy {
    fn accepts_type(&self, typ: &str) -> bool {
        self.types.iter().any(|t| same_media_type(t, typ))
    }
}

/// base64url without padding and with no stray bits (RFC 7515 §2): anything else is malformed.
fn decode_segment(segment: &str, what: &'static str) -> Result<Vec<u8>, JwtRefusal> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtRefusal::Malformed(what))
}

/// Splits a compact JWS and checks its header against `policy` (RFC 8725 §3.1, §3.11,
/// RFC 7515 §4.1.11). Neither `jku`, `x5u`, `jwk` nor `x5c` is ever read: keys come from
/// the configured key set only. The header is read into a borrowed tree and dropped.
pub fn parse<'a>(token: &'a str, policy: &HeaderPolicy) -> Result<Jws<'a>, JwtRefusal> {
    let segments = split(token)?;
    let text = String::from_utf8(decode_segment(segments.0, "header")?)
        .map_err(|_| JwtRefusal::Malformed("header is not JSON"))?;
    let (algorithm, kid) = match strict_json::borrowed(&text) {
        Ok(Json::Object(header)) => check_header(&header, policy)?,
        Ok(_) => return Err(JwtRefusal::Malformed("header is not an object")),
        Err(refusal) => return Err(header_refusal(refusal)),
    };
    finish(token, segments, algorithm, kid)
}

/// [`parse`], keeping the header as an owned object: a DPoP proof carries its key there.
pub(crate) fn parse_with_header<'a>(
    token: &'a str,
    policy: &HeaderPolicy,
) -> Result<(Jws<'a>, Map<String, Value>), JwtRefusal> {
    let segments = split(token)?;
    let header = match strict_json::from_slice(&decode_segment(segments.0, "header")?) {
        Ok(Value::Object(header)) => header,
        Ok(_) => return Err(JwtRefusal::Malformed("header is not an object")),
        Err(refusal) => return Err(header_refusal(refusal)),
    };
    let (algorithm, kid) = check_header(&header, policy)?;
    Ok((finish(token, segments, algorithm, kid)?, header))
}

/// The header, payload and signature segments of a compact JWS.
fn split(token: &str) -> Result<(&str, &str, &str), JwtRefusal> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(head), Some(payload), Some(signature), None) => Ok((head, payload, signature)),
        _ => Err(match token.bytes().filter(|&b| b == b'.').count() {
            4 => JwtRefusal::Encrypted,
            _ => JwtRefusal::Malformed("not three segments"),
        }),
    }
}

fn header_refusal(refusal: Refusal) -> JwtRefusal {
    match refusal {
        Refusal::DuplicateName => JwtRefusal::Malformed("header repeats a member"),
        Refusal::NotJson => JwtRefusal::Malformed("header is not JSON"),
    }
}

/// The header's algorithm and `kid`, if `policy` accepts the header.
fn check_header<O: JsonObject>(
    header: &O,
    policy: &HeaderPolicy,
) -> Result<(Algorithm, Option<String>), JwtRefusal> {
    let text = |name: &'static str| match header.member(name).map(JsonTree::view) {
        None => Ok(None),
        Some(View::Text(s)) => Ok(Some(s)),
        Some(_) => Err(JwtRefusal::Malformed(name)),
    };
    if header.member("enc").is_some() {
        return Err(JwtRefusal::Encrypted);
    }
    let algorithm = text("alg")?
        .and_then(Algorithm::from_name)
        .filter(|a| policy.algorithms.contains(a))
        .ok_or(JwtRefusal::Algorithm)?;
    if !text("typ")?.is_some_and(|t| policy.accepts_type(t)) {
        return Err(JwtRefusal::Type);
    }
    if text("cty")?.is_some_and(|c| same_media_type(c, "jwt")) {
        return Err(JwtRefusal::Nested);
    }
    if let Some(crit) = header.member("crit") {
        // No extension is implemented, so any well-formed `crit` names an unknown one.
        return Err(match crit.view() {
            View::List(names)
                if !names.is_empty() && names.iter().all(|n| n.as_text().is_some()) =>
            {
                JwtRefusal::Critical
            }
            _ => JwtRefusal::Malformed("crit"),
        });
    }
    Ok((algorithm, text("kid")?.map(str::to_owned)))
}

/// The JWS of checked header segments: payload and signature decoded.
fn finish<'a>(
    token: &'a str,
    (head, payload, signature): (&str, &str, &str),
    algorithm: Algorithm,
    kid: Option<String>,
) -> Result<Jws<'a>, JwtRefusal> {
    let payload_bytes = decode_segment(payload, "payload")?;
    let signature = decode_segment(signature, "signature")?;
    if signature.is_empty() {
        return Err(JwtRefusal::Signature);
    }
    Ok(Jws {
        algorithm,
        kid,
        signing_input: &token[..head.len() + 1 + payload.len()],
        payload: String::from_utf8(payload_bytes).ok(),
        signature,
    })
}

impl Jws<'_> {
    /// Whether `key` verifies the signature over `header.payload`.
    pub fn verified_by(&self, key: &aws_lc_rs::signature::ParsedPublicKey) -> bool {
        key.verify_sig(self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }

    /// The payload as a JSON object (its strings borrowed from the payload); read only after
    /// the signature is verified.
    pub(crate) fn claims(&self) -> Result<Members<'_>, JwtRefusal> {
        match self.payload_text().map(strict_json::borrowed) {
            Some(Ok(Json::Object(members))) => Ok(members),
            _ => Err(JwtRefusal::Payload),
        }
    }

    /// The payload's JSON text (what [`Jws::claims`] reads), if it is UTF-8.
    pub(crate) fn payload_text(&self) -> Option<&str> {
        self.payload.as_deref()
    }

    /// The payload decoded as the claims are (a JSON object, strictly), and the number of
    /// claims it holds: the claims decode, timed from outside the crate by
    /// `benches/jwt_floor.rs` (the claims themselves stay inside).
    pub fn claim_count(&self) -> Result<usize, JwtRefusal> {
        self.claims().map(|claims| claims.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn policy() -> HeaderPolicy {
        HeaderPolicy {
            algorithms: Algorithm::ALL.to_vec(),
            types: vec!["at+jwt".into(), "application/at+jwt".into(), "JWT".into()],
        }
    }

    fn token(header: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(r#"{"a":1}"#), b64("sig"))
    }

    #[test]
    fn headers_are_checked_before_any_key() {
        let p = policy();
        let text = token(r#"{"alg":"RS256","typ":"at+jwt","kid":"k"}"#);
        let ok = parse(&text, &p).unwrap();
        assert_eq!(
            (ok.algorithm, ok.kid.as_deref()),
            (Algorithm::Rs256, Some("k"))
        );
        for typ in ["JWT", "jwt", "Application/AT+JWT"] {
            let t = token(&format!(r#"{{"alg":"ES256","typ":"{typ}"}}"#));
            assert!(parse(&t, &p).is_ok(), "{typ}");
        }
        let refused = |header: &str| parse(&token(header), &p).unwrap_err();
        assert_eq!(
            refused(r#"{"alg":"none","typ":"JWT"}"#),
            JwtRefusal::Algorithm
        );
        assert_eq!(
            refused(r#"{"alg":"HS256","typ":"JWT"}"#),
            JwtRefusal::Algorithm
        );
        assert_eq!(
            refused(r#"{"alg":"rs256","typ":"JWT"}"#),
            JwtRefusal::Algorithm
        );
        assert_eq!(refused(r#"{"typ":"JWT"}"#), JwtRefusal::Algorithm);
        assert_eq!(refused(r#"{"alg":"RS256"}"#), JwtRefusal::Type);
        assert_eq!(
            refused(r#"{"alg":"RS256","typ":"dpop+jwt"}"#),
            JwtRefusal::Type
        );
        assert_eq!(
            refused(r#"{"alg":"RS256","typ":"JWT","cty":"JWT"}"#),
            JwtRefusal::Nested
        );
        assert_eq!(
            refused(r#"{"alg":"RS256","typ":"JWT","crit":["exp"]}"#),
            JwtRefusal::Critical
        );
        assert_eq!(
            refused(r#"{"alg":"RS256","typ":"JWT","crit":[]}"#),
            JwtRefusal::Malformed("crit")
        );
        assert_eq!(
            refused(r#"{"alg":"RS256","typ":"JWT","enc":"A256GCM"}"#),
            JwtRefusal::Encrypted
        );
        assert_eq!(
            refused(r#"{"alg":"RS256","alg":"none","typ":"JWT"}"#),
            JwtRefusal::Malformed("header repeats a member")
        );
        assert_eq!(
            refused(r#"{"alg":"RS256","typ":"JWT","kid":7}"#),
            JwtRefusal::Malformed("kid")
        );
        assert_eq!(
            refused("[1]"),
            JwtRefusal::Malformed("header is not an object")
        );
        assert_eq!(refused("{"), JwtRefusal::Malformed("header is not JSON"));
        let narrow = HeaderPolicy {
            algorithms: vec![Algorithm::Es256],
            types: vec!["at+jwt".into()],
        };
        assert_eq!(
            parse(&token(r#"{"alg":"RS256","typ":"at+jwt"}"#), &narrow).unwrap_err(),
            JwtRefusal::Algorithm
        );
        assert_eq!(
            parse(&token(r#"{"alg":"ES256","typ":"JWT"}"#), &narrow).unwrap_err(),
            JwtRefusal::Type
        );
    }

    /// The proof parser (header kept) accepts and refuses exactly what `parse` does.
    #[test]
    fn both_header_readers_agree() {
        let p = policy();
        for header in [
            r#"{"alg":"RS256","typ":"at+jwt","kid":"k","jwk":{"kty":"EC"}}"#,
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"RS256","typ":"JWT","cty":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWT","crit":["exp"]}"#,
            r#"{"alg":"RS256","typ":"JWT","crit":[]}"#,
            r#"{"alg":"RS256","typ":"JWT","enc":"A256GCM"}"#,
            r#"{"alg":"RS256","alg":"none","typ":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWT","kid":7}"#,
            "[1]",
            "{",
        ] {
            let t = token(header);
            let (a, b) = (parse(&t, &p), parse_with_header(&t, &p));
            assert_eq!(
                a.as_ref().map(|j| (j.algorithm, j.kid.clone())),
                b.as_ref().map(|(j, _)| (j.algorithm, j.kid.clone())),
                "{header}"
            );
            if let Ok((_, kept)) = b {
                assert!(kept.get("jwk").is_some_and(Value::is_object), "{header}");
            }
        }
    }

    #[test]
    fn base64url_is_strict() {
        let p = policy();
        let head = b64(r#"{"alg":"RS256","typ":"JWT"}"#);
        let good = format!("{head}.{}.c2ln", b64("{}"));
        assert!(parse(&good, &p).is_ok());
        for bad in [
            format!("{head}=.e30.c2ln"),
            format!("{head}.e30=.c2ln"),
            format!("{head}.e30.c2ln="),
            format!("{head}.e30.c2l+"),
            format!("{head}.e30.c2l/"),
            format!("{head}.e30.c2l*"),
            format!("{head}.e30.c2m"), // stray bits in the last character
            format!("{head}.e30."),
        ] {
            let r = parse(&bad, &p).and_then(|j| j.claims().map(|_| ()));
            assert!(r.is_err(), "{bad}");
        }
        assert_eq!(
            parse(&format!("{head}.e30"), &p).unwrap_err(),
            JwtRefusal::Malformed("not three segments")
        );
        assert_eq!(parse("a.b.c.d.e", &p).unwrap_err(), JwtRefusal::Encrypted);
    }

    #[test]
    fn shapes() {
        assert_eq!(shape(&token(r#"{"alg":"RS256"}"#)), Shape::Jws);
        assert_eq!(shape("a.b.c.d.e"), Shape::Jwe);
        assert_eq!(shape("opaque-token"), Shape::Other);
        assert_eq!(
            shape("a.b.c"),
            Shape::Other,
            "first segment is not a JSON object"
        );
        assert_eq!(shape(&format!("{}.x.y", b64("[1]"))), Shape::Other);
    }

    #[test]
    fn payload_must_be_an_object() {
        let p = policy();
        let head = b64(r#"{"alg":"RS256","typ":"JWT"}"#);
        for (payload, ok) in [
            ("{}", true),
            ("[]", false),
            ("1", false),
            (r#"{"a":1,"a":2}"#, false),
        ] {
            let t = format!("{head}.{}.c2ln", b64(payload));
            assert_eq!(parse(&t, &p).unwrap().claims().is_ok(), ok, "{payload}");
        }
    }
}
