//! RFC 7523 client assertions (`private_key_jwt`, `client_secret_jwt`).
//!
//! The key is parsed once at start-up and held as an aws-lc-rs key pair, so a cache miss pays
//! only the signature (the reference re-reads and re-parses the PEM file on every miss).
//! Claims are `iss = sub = client_id`, `aud`, a fresh random `jti`, and NumericDate `iat`/`exp`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaEncoding, RsaKeyPair};
use aws_lc_rs::{hmac, signature::EcdsaSigningAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{AsError, ConfigError};
use crate::secret::Secret;
use crate::tls::read_file;

/// The JWS algorithms tokenward signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwsAlgorithm {
    /// HMAC SHA-256/384/512.
    Hs256,
    /// HMAC SHA-384.
    Hs384,
    /// HMAC SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    Rs512,
    /// RSASSA-PSS SHA-256.
    Ps256,
    /// RSASSA-PSS SHA-384.
    Ps384,
    /// RSASSA-PSS SHA-512.
    Ps512,
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
    /// ECDSA P-521 SHA-512.
    Es512,
    /// Ed25519.
    EdDsa,
}

impl JwsAlgorithm {
    const ALL: [Self; 13] = [
        Self::Hs256,
        Self::Hs384,
        Self::Hs512,
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

    /// The JOSE name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
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

    /// Parses a JOSE name (case-sensitive, as JOSE is).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    fn is_hmac(self) -> bool {
        matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512)
    }
}

enum Key {
    Hmac(Box<hmac::Key>),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Signs client assertions with a key loaded once.
pub(crate) struct AssertionSigner {
    algorithm: JwsAlgorithm,
    key: Key,
    key_digest: [u8; 32],
    encoded_header: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("algorithm", &self.algorithm.name())
            .finish_non_exhaustive()
    }
}

const ALG_OPTION: &str = "jwt_algorithm";
const KEY_OPTION: &str = "jwt_key_file";

impl AssertionSigner {
    fn new(algorithm: JwsAlgorithm, key: Key, material: &[u8]) -> Self {
        let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, algorithm.name());
        Self {
            algorithm,
            key,
            key_digest: *blake3::hash(material).as_bytes(),
            encoded_header: URL_SAFE_NO_PAD.encode(header),
            rng: SystemRandom::new(),
        }
    }

    /// A `client_secret_jwt` signer. Returns a warning when the secret is shorter than the
    /// hash (RFC 7518 §3.2).
    pub(crate) fn for_secret(
        algorithm: &str,
        secret: &Secret,
    ) -> Result<(Self, Option<String>), ConfigError> {
        let alg = parse_algorithm(algorithm)?;
        let hmac_alg = match alg {
            JwsAlgorithm::Hs256 => hmac::HMAC_SHA256,
            JwsAlgorithm::Hs384 => hmac::HMAC_SHA384,
            JwsAlgorithm::Hs512 => hmac::HMAC_SHA512,
            _ => {
                return Err(ConfigError::new(
                    ALG_OPTION,
                    format!(
                        "{algorithm} needs a private key: client_secret_jwt signs with HS256, HS384 or HS512"
                    ),
                ));
            }
        };
        let bytes = secret.expose().as_bytes();
        if secret.expose().trim_start().starts_with("-----BEGIN") {
            return Err(ConfigError::new(
                "client_secret",
                "looks like a PEM key, not an HMAC secret",
            ));
        }
        let min = hmac_alg.digest_algorithm().output_len;
        let warning = (bytes.len() < min).then(|| {
            format!(
                "client_secret is {} bytes, shorter than the {min} bytes RFC 7518 asks for {}",
                bytes.len(),
                alg.name()
            )
        });
        Ok((
            Self::new(
                alg,
                Key::Hmac(Box::new(hmac::Key::new(hmac_alg, bytes))),
                bytes,
            ),
            warning,
        ))
    }

    /// A `private_key_jwt` signer from a PEM key file (PKCS#1, PKCS#8 or SEC1).
    pub(crate) fn for_key_file(algorithm: &str, path: &Path) -> Result<Self, ConfigError> {
        let alg = parse_algorithm(algorithm)?;
        if alg.is_hmac() {
            return Err(ConfigError::new(
                ALG_OPTION,
                format!(
                    "{algorithm} is an HMAC algorithm: private_key_jwt needs RS*, PS*, ES* or EdDSA"
                ),
            ));
        }
        let pem = read_file(KEY_OPTION, path)?;
        if pem
            .windows(29)
            .any(|w| w == b"BEGIN ENCRYPTED PRIVATE KEY--")
        {
            return Err(ConfigError::new(
                KEY_OPTION,
                "holds an encrypted key; decrypt it (openssl pkey -in key -out plain.key)",
            ));
        }
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
            ConfigError::new(
                KEY_OPTION,
                format!("holds no PEM private key ({})", path.display()),
            )
        })?;
        let mismatch = |why: String| {
            ConfigError::new(
                ALG_OPTION,
                format!("{algorithm} does not fit the key in jwt_key_file: {why}"),
            )
        };
        let key = match alg {
            JwsAlgorithm::Rs256
            | JwsAlgorithm::Rs384
            | JwsAlgorithm::Rs512
            | JwsAlgorithm::Ps256
            | JwsAlgorithm::Ps384
            | JwsAlgorithm::Ps512 => {
                let pair = match &der {
                    PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
                    PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
                    _ => return Err(mismatch("not an RSA key".into())),
                }
                .map_err(|e| mismatch(format!("not a usable RSA key ({e})")))?;
                let encoding: &'static dyn RsaEncoding = match alg {
                    JwsAlgorithm::Rs256 => &signature::RSA_PKCS1_SHA256,
                    JwsAlgorithm::Rs384 => &signature::RSA_PKCS1_SHA384,
                    JwsAlgorithm::Rs512 => &signature::RSA_PKCS1_SHA512,
                    JwsAlgorithm::Ps256 => &signature::RSA_PSS_SHA256,
                    JwsAlgorithm::Ps384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                if pair.public_modulus_len() < 256 {
                    return Err(mismatch("RSA keys must have at least 2048 bits".into()));
                }
                Key::Rsa(pair, encoding)
            }
            JwsAlgorithm::Es256 | JwsAlgorithm::Es384 | JwsAlgorithm::Es512 => {
                let curve: &'static EcdsaSigningAlgorithm = match alg {
                    JwsAlgorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    JwsAlgorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    _ => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                };
                let bytes = match &der {
                    PrivateKeyDer::Sec1(k) => k.secret_sec1_der(),
                    PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
                    _ => return Err(mismatch("not an EC key".into())),
                };
                Key::Ecdsa(
                    EcdsaKeyPair::from_private_key_der(curve, bytes).map_err(|e| {
                        mismatch(format!("not an EC key on the matching curve ({e})"))
                    })?,
                )
            }
            JwsAlgorithm::EdDsa => match &der {
                PrivateKeyDer::Pkcs8(k) => Key::Ed25519(
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(k.secret_pkcs8_der())
                        .map_err(|e| mismatch(format!("not an Ed25519 key ({e})")))?,
                ),
                _ => return Err(mismatch("EdDSA needs a PKCS#8 Ed25519 key".into())),
            },
            JwsAlgorithm::Hs256 | JwsAlgorithm::Hs384 | JwsAlgorithm::Hs512 => {
                unreachable!("checked above")
            }
        };
        let signer = Self::new(alg, key, &pem);
        // A trial signature proves the key works before the first request needs it.
        signer
            .sign(b"tokenward start-up check")
            .map_err(|_| ConfigError::new(KEY_OPTION, "holds a key that cannot sign"))?;
        Ok(signer)
    }

    /// A digest of the key material (secret or PEM), to tell credentials apart.
    pub(crate) fn key_digest(&self) -> [u8; 32] {
        self.key_digest
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, AsError> {
        let failed = |_| AsError::Assertion(format!("{} signing failed", self.algorithm.name()));
        match &self.key {
            Key::Hmac(key) => Ok(hmac::sign(key, input).as_ref().to_vec()),
            Key::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &self.rng, input, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
            Key::Ecdsa(pair) => Ok(pair
                .sign(&self.rng, input)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            Key::Ed25519(pair) => Ok(pair.sign(input).as_ref().to_vec()),
        }
    }

    /// A fresh assertion: new `jti`, `iat` = now, `exp` = now + lifetime.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        lifetime: Duration,
    ) -> Result<Secret, AsError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.assertion_at(client_id, audience, &new_jti()?, now, lifetime)
    }

    /// The assertion for a given `jti` and time (deterministic for HMAC and RSA PKCS#1).
    pub(crate) fn assertion_at(
        &self,
        client_id: &str,
        audience: &str,
        jti: &str,
        iat: u64,
        lifetime: Duration,
    ) -> Result<Secret, AsError> {
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": jti,
            "iat": iat,
            "exp": iat.saturating_add(lifetime.as_secs()),
        });
        let mut jws = String::with_capacity(512);
        jws.push_str(&self.encoded_header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut jws);
        let signature = self.sign(jws.as_bytes())?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(Secret::new(jws))
    }
}

impl AssertionSigner {
    /// The public half of an asymmetric key as a JWK (`None` for HMAC).
    fn public_jwk(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        use aws_lc_rs::signature::KeyPair as _;
        let b64 = |bytes: &[u8]| serde_json::Value::String(URL_SAFE_NO_PAD.encode(bytes));
        let mut jwk = serde_json::Map::new();
        match &self.key {
            Key::Hmac(_) => return None,
            Key::Rsa(pair, _) => {
                let (n, e) = rsa_public_components(pair.public_key().as_ref())?;
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), b64(n));
                jwk.insert("e".into(), b64(e));
            }
            Key::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                let size = (point.len().checked_sub(1)?) / 2;
                let crv = match size {
                    32 => "P-256",
                    48 => "P-384",
                    66 => "P-521",
                    _ => return None,
                };
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), crv.into());
                jwk.insert("x".into(), b64(&point[1..=size]));
                jwk.insert("y".into(), b64(&point[1 + size..]));
            }
            Key::Ed25519(pair) => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64(pair.public_key().as_ref()));
            }
        }
        Some(jwk)
    }
}

/// `n` and `e` of a DER `RSAPublicKey` (RFC 8017 A.1.1), without leading zero octets.
fn rsa_public_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&first, rest) = input.split_first()?;
        if first != tag {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let (len, rest) = match len {
            0..=0x7f => (usize::from(len), rest),
            0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
            0x82 => (
                usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
                rest.get(2..)?,
            ),
            _ => return None,
        };
        Some((rest.get(..len)?, rest.get(len..)?))
    }
    let strip = |v: &'_ [u8]| -> usize { v.iter().take_while(|&&b| b == 0).count() };
    let (body, _) = element(der, 0x30)?;
    let (n, rest) = element(body, 0x02)?;
    let (e, _) = element(rest, 0x02)?;
    Some((&n[strip(n)..], &e[strip(e)..]))
}

/// Signs DPoP proofs (RFC 9449 §4) with a key of its own, loaded once.
pub(crate) struct DpopSigner {
    signer: AssertionSigner,
    encoded_header: String,
    jkt: String,
}

impl std::fmt::Debug for DpopSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopSigner")
            .field("algorithm", &self.signer.algorithm.name())
            .field("jkt", &self.jkt)
            .finish()
    }
}

impl DpopSigner {
    /// Loads `dpop_key_file`; the algorithm follows the key: ES256/384/512 for EC keys,
    /// EdDSA for Ed25519, RS256 for RSA.
    pub(crate) fn from_key_file(path: &Path) -> Result<Self, ConfigError> {
        const OPTION: &str = "dpop_key_file";
        for algorithm in ["ES256", "ES384", "ES512", "EdDSA", "RS256"] {
            match AssertionSigner::for_key_file(algorithm, path) {
                Ok(signer) => {
                    let jwk = signer
                        .public_jwk()
                        .ok_or_else(|| ConfigError::new(OPTION, "holds no public key part"))?;
                    let jkt = crate::dpop::jwk_thumbprint(&jwk)
                        .ok_or_else(|| ConfigError::new(OPTION, "holds an unusable key"))?;
                    let header = serde_json::json!({
                        "typ": "dpop+jwt",
                        "alg": signer.algorithm.name(),
                        "jwk": jwk,
                    });
                    return Ok(Self {
                        encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
                        signer,
                        jkt,
                    });
                }
                Err(e) if e.option() == KEY_OPTION => {
                    return Err(ConfigError::new(OPTION, e.message()));
                }
                Err(_) => {}
            }
        }
        Err(ConfigError::new(
            OPTION,
            "holds no EC (P-256, P-384, P-521), Ed25519 or RSA (2048 bits or more) private key",
        ))
    }

    /// The RFC 7638 thumbprint of the proof key (the `cnf.jkt` of tokens bound to it).
    pub(crate) fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A fresh proof for `method` and `url` (query and fragment dropped), with `ath` when
    /// it accompanies an access token and `nonce` when the server asked for one.
    pub(crate) fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<Secret, AsError> {
        use sha2::Digest as _;
        let htu = crate::dpop::normalized_url(url)
            .ok_or_else(|| AsError::Assertion("the request URL is not an http(s) URL".into()))?;
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut claims = serde_json::json!({
            "htm": method,
            "htu": htu,
            "iat": iat,
            "jti": new_jti()?,
        });
        if let Some(token) = access_token {
            claims["ath"] = URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(token.as_bytes()))
                .into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let mut jws = String::with_capacity(1024);
        jws.push_str(&self.encoded_header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut jws);
        let signature = self.signer.sign(jws.as_bytes())?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(Secret::new(jws))
    }
}

fn parse_algorithm(name: &str) -> Result<JwsAlgorithm, ConfigError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(ConfigError::new(
            ALG_OPTION,
            "must not be none: an unsigned assertion authenticates nobody",
        ));
    }
    JwsAlgorithm::parse(name).ok_or_else(|| {
        let all: Vec<_> = JwsAlgorithm::ALL.iter().map(|a| a.name()).collect();
        ConfigError::new(
            ALG_OPTION,
            format!("{name:?} is not supported; use one of {}", all.join(", ")),
        )
    })
}

/// A fresh `jti`: a random (version 4) UUID from aws-lc's generator, the one RNG of the
/// crate.
fn new_jti() -> Result<String, AsError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| AsError::Assertion("the system random generator failed".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = |range: std::ops::Range<usize>| -> String {
        b[range].iter().map(|x| format!("{x:02x}")).collect()
    };
    Ok(format!(
        "{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // client-credentials.md §3.4 vector A: HS256, integer times, exp = iat + 60.
    const SECRET: &str = "iIK6lARLzJgoQQyMyoymNYrGTDuR0733S";
    const AUD: &str = "http://keycloak.example:8080/realms/testrealm";
    const JTI: &str = "8c9cf64f-f0f3-4d74-8b15-a6bda7036f07";
    const VECTOR_A: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ0YWNrZXJfc2VydmljZSIsInN1YiI6InRhY2tlcl9zZXJ2aWNlIiwiYXVkIjoiaHR0cDovL2tleWNsb2FrLmV4YW1wbGU6ODA4MC9yZWFsbXMvdGVzdHJlYWxtIiwianRpIjoiOGM5Y2Y2NGYtZjBmMy00ZDc0LThiMTUtYTZiZGE3MDM2ZjA3IiwiaWF0IjoxNzMzNDc2MzcwLCJleHAiOjE3MzM0NzY0MzB9.tQ9fXNdyYY8C6wErq6CMJY_vsknf-gSfXqzQLoqyXtI";

    #[test]
    fn hs256_matches_vector_a() {
        let (signer, warning) = AssertionSigner::for_secret("HS256", &Secret::new(SECRET)).unwrap();
        assert!(warning.is_none());
        let jwt = signer
            .assertion_at(
                "tacker_service",
                AUD,
                JTI,
                1_733_476_370,
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(jwt.expose(), VECTOR_A);
    }

    #[test]
    fn hs512_with_short_secret_warns_and_matches_vector_a512() {
        let (signer, warning) = AssertionSigner::for_secret("HS512", &Secret::new(SECRET)).unwrap();
        assert!(warning.unwrap().contains("shorter"));
        let jwt = signer
            .assertion_at(
                "tacker_service",
                AUD,
                JTI,
                1_733_476_370,
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(jwt.expose().ends_with(".iTy7H5aFMXpYNv_xOOfdNtTL1ypwNAl3XO-vMcnviPK_4uSwikZ6f2CVpZIt-pGYwLodiqE8M7iXVxG_ubdv1w"));
    }

    #[test]
    fn fresh_jti_and_numeric_dates() {
        let (signer, _) = AssertionSigner::for_secret("HS256", &Secret::new(SECRET)).unwrap();
        let a = signer
            .assertion("c", "aud", Duration::from_secs(60))
            .unwrap();
        let b = signer
            .assertion("c", "aud", Duration::from_secs(60))
            .unwrap();
        assert_ne!(a.expose(), b.expose());
        let payload = a.expose().split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(claims["iat"].is_u64());
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        assert_eq!(claims["iss"], "c");
        assert_eq!(claims["sub"], "c");
    }

    #[test]
    fn bad_algorithms_name_the_option() {
        let s = Secret::new(SECRET);
        for alg in ["none", "RS256", "hs256", "XS1"] {
            assert_eq!(
                AssertionSigner::for_secret(alg, &s).unwrap_err().option(),
                "jwt_algorithm",
                "{alg}"
            );
        }
        let e = AssertionSigner::for_secret("HS256", &Secret::new("-----BEGIN PRIVATE KEY-----"))
            .unwrap_err();
        assert_eq!(e.option(), "client_secret");
    }

    #[test]
    fn missing_or_empty_key_file_names_the_option() {
        let e =
            AssertionSigner::for_key_file("RS256", Path::new("/nonexistent/key.pem")).unwrap_err();
        assert_eq!(e.option(), "jwt_key_file");
        let dir = std::env::temp_dir().join(format!("tw-empty-{}", std::process::id()));
        std::fs::write(&dir, b"").unwrap();
        let e = AssertionSigner::for_key_file("RS256", &dir).unwrap_err();
        assert_eq!(e.option(), "jwt_key_file");
        assert!(e.message().contains("empty"));
        let e = AssertionSigner::for_key_file("HS256", &dir).unwrap_err();
        assert_eq!(e.option(), "jwt_algorithm");
        std::fs::remove_file(dir).ok();
    }
}

#[cfg(test)]
mod cross_check {
    //! Assertions signed here verify with an independent implementation (jsonwebtoken).
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

    fn data(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(name)
    }

    fn verify(alg: &str, key: &str, public: &str, jws_alg: Algorithm) {
        let signer = AssertionSigner::for_key_file(alg, &data(key)).unwrap();
        let jwt = signer
            .assertion("svc", "https://as.example", Duration::from_secs(60))
            .unwrap();
        let pem = std::fs::read(data(public)).unwrap();
        let key = match jws_alg {
            Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            _ => DecodingKey::from_rsa_pem(&pem),
        }
        .unwrap();
        let mut validation = Validation::new(jws_alg);
        validation.set_audience(&["https://as.example"]);
        validation.set_issuer(&["svc"]);
        let claims = decode::<serde_json::Value>(jwt.expose(), &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "svc", "{alg}");
    }

    #[test]
    fn rsa_ec_and_ed25519_assertions_verify_with_jsonwebtoken() {
        verify("RS256", "client.key", "client.pub.pem", Algorithm::RS256);
        verify("RS512", "client.key", "client.pub.pem", Algorithm::RS512);
        verify("PS256", "client.key", "client.pub.pem", Algorithm::PS256);
        verify("ES256", "ec256-sec1.key", "ec256.pub.pem", Algorithm::ES256);
        verify("EdDSA", "ed25519.key", "ed25519.pub.pem", Algorithm::EdDSA);
    }

    #[test]
    fn key_and_algorithm_mismatches_name_jwt_algorithm() {
        for (alg, key) in [
            ("ES256", "client.key"),
            ("ES384", "ec256-sec1.key"),
            ("RS256", "ed25519.key"),
            ("EdDSA", "client.key"),
        ] {
            let e = AssertionSigner::for_key_file(alg, &data(key)).unwrap_err();
            assert_eq!(e.option(), "jwt_algorithm", "{alg} {key}: {e}");
        }
        let e = AssertionSigner::for_key_file("RS256", &data("client-encrypted.key")).unwrap_err();
        assert_eq!(e.option(), "jwt_key_file");
    }
}
