//! The five client-authentication methods, one implementation for introspection and for the
//! Client Credentials grant (RFC 6749 §2.3, RFC 7523 §2.2, RFC 8705 §2).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::assertion::AssertionSigner;
use crate::client_config::{AuthMethod, BasicEncoding, ClientConfig};
use crate::error::{AsError, ConfigError};
use crate::secret::Secret;
use zeroize::Zeroizing;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Authenticates this client to the AS. Sends exactly one credential per request: never the
/// secret beside an assertion.
pub(crate) struct ClientAuthenticator {
    client_id: String,
    method: AuthMethod,
    basic_header: Option<Secret>,
    secret: Option<Secret>,
    signer: Option<AssertionSigner>,
    audience: String,
    lifetime: Duration,
    /// Forms of the credential an AS could echo: the secret raw and form-encoded, and the
    /// Basic credential's base64.
    echoes: Vec<Secret>,
}

impl std::fmt::Debug for ClientAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthenticator")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// A request ready to send: the `Authorization` value and the form body. Both hold
/// credentials, so neither is ever logged.
pub(crate) struct EncodedRequest {
    /// `Authorization` header value, for client_secret_basic.
    pub authorization: Option<Secret>,
    /// The form body.
    pub body: Secret,
    /// The client assertion in the body, if any.
    pub assertion: Option<Secret>,
}

/// The `Authorization: Basic` value for an id and secret.
pub(crate) fn basic_authorization(
    client_id: &str,
    secret: &str,
    encoding: BasicEncoding,
) -> String {
    // Intermediate forms of the secret are wiped when dropped.
    let pair = Zeroizing::new(match encoding {
        BasicEncoding::Rfc6749 => {
            let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
            let secret = Zeroizing::new(
                form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            );
            format!("{id}:{}", *secret)
        }
        BasicEncoding::Raw => format!("{client_id}:{secret}"),
    });
    let encoded = Zeroizing::new(STANDARD.encode(pair.as_bytes()));
    format!("Basic {}", *encoded)
}

impl ClientAuthenticator {
    /// Loads keys and checks that the method has what it needs. Warnings (weak HMAC secret)
    /// are appended to `warnings`.
    pub(crate) fn new(cfg: &ClientConfig, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let needs_audience = matches!(
            cfg.auth_method,
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt
        );
        let audience = cfg.audience.clone().unwrap_or_default();
        if needs_audience && audience.is_empty() {
            return Err(ConfigError::new(
                "audience",
                format!(
                    "is required by auth_method = {} (use the AS issuer URL)",
                    cfg.auth_method.as_str()
                ),
            ));
        }
        let algorithm = cfg.jwt_algorithm.as_deref().unwrap_or_default();
        let signer = match cfg.auth_method {
            AuthMethod::ClientSecretJwt => {
                let secret = cfg
                    .client_secret
                    .as_ref()
                    .ok_or_else(|| ConfigError::new("client_secret", "is required"))?;
                let (signer, warning) = AssertionSigner::for_secret(algorithm, secret)?;
                warnings.extend(warning);
                Some(signer)
            }
            AuthMethod::PrivateKeyJwt => {
                let path = cfg
                    .jwt_key_file
                    .as_ref()
                    .ok_or_else(|| ConfigError::new("jwt_key_file", "is required"))?;
                Some(AssertionSigner::for_key_file(algorithm, path)?)
            }
            _ => None,
        };
        if needs_audience && cfg.jwt_lifetime > Duration::from_secs(300) {
            warnings.push(format!(
                "jwt_bearer_time_out is {} s; strict servers cap assertion lifetimes (Keycloak: 60 s from iat)",
                cfg.jwt_lifetime.as_secs()
            ));
        }
        let basic_header = match (cfg.auth_method, &cfg.client_secret) {
            (AuthMethod::ClientSecretBasic, Some(secret)) => Some(Secret::new(
                basic_authorization(&cfg.client_id, secret.expose(), cfg.basic_encoding),
            )),
            _ => None,
        };
        let mut echoes = Vec::new();
        if let Some(secret) = &cfg.client_secret {
            echoes.push(secret.clone());
            echoes.push(Secret::new(
                form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect::<String>(),
            ));
        }
        if let Some(credential) = basic_header
            .as_ref()
            .and_then(|h| h.expose().strip_prefix("Basic "))
        {
            echoes.push(Secret::new(credential));
        }
        Ok(Self {
            client_id: cfg.client_id.clone(),
            method: cfg.auth_method,
            echoes,
            basic_header,
            secret: cfg.client_secret.clone(),
            signer,
            audience,
            lifetime: cfg.jwt_lifetime,
        })
    }

    /// A digest of this client's credential (secret or signing key), never the credential.
    pub(crate) fn credential_digest(&self) -> [u8; 32] {
        match (&self.signer, &self.secret) {
            (Some(signer), _) => signer.key_digest(),
            (None, Some(secret)) => *blake3::hash(secret.expose().as_bytes()).as_bytes(),
            (None, None) => [0; 32],
        }
    }

    /// Every secret a request (its `assertion`) and this client's credential consist of, in the forms an AS
    /// could echo back: scrub them from AS text with [`crate::error::sanitize`].
    pub(crate) fn secrets<'a>(&'a self, assertion: Option<&'a Secret>) -> Vec<&'a str> {
        self.echoes
            .iter()
            .chain(assertion)
            .map(Secret::expose)
            .collect()
    }

    /// Encodes a request: this client's credential fields first, then `params`. A JWT method
    /// signs a fresh assertion (new `jti`) for every call.
    pub(crate) fn encode(&self, params: &[(&str, &str)]) -> Result<EncodedRequest, AsError> {
        let signed = match self.method {
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt => {
                let signer = self
                    .signer
                    .as_ref()
                    .ok_or_else(|| AsError::Assertion("no signing key".into()))?;
                Some(signer.assertion(&self.client_id, &self.audience, self.lifetime)?)
            }
            _ => None,
        };
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 3);
        match self.method {
            AuthMethod::ClientSecretBasic => {}
            AuthMethod::ClientSecretPost => {
                pairs.push(("client_id", &self.client_id));
                pairs.push((
                    "client_secret",
                    self.secret.as_ref().map(Secret::expose).unwrap_or_default(),
                ));
            }
            AuthMethod::TlsClientAuth => pairs.push(("client_id", &self.client_id)),
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt => {
                pairs.push(("client_id", &self.client_id));
                pairs.push(("client_assertion_type", ASSERTION_TYPE));
                pairs.push((
                    "client_assertion",
                    signed.as_ref().map(Secret::expose).unwrap_or_default(),
                ));
            }
        }
        pairs.extend_from_slice(params);
        // Room for the worst case (every byte percent-encoded), so the buffer never grows:
        // a reallocation would free a copy of the credentials without wiping it.
        let room = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
        let mut body = Secret::new(String::with_capacity(room));
        {
            let mut form = form_urlencoded::Serializer::new(body.expose_mut());
            form.extend_pairs(pairs);
            form.finish();
        }
        Ok(EncodedRequest {
            authorization: self.basic_header.clone(),
            body,
            assertion: signed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::RawOptions;

    // client-credentials.md §3.1.
    #[test]
    fn basic_vectors() {
        let rfc = |id, s| basic_authorization(id, s, BasicEncoding::Rfc6749);
        let raw = |id, s| basic_authorization(id, s, BasicEncoding::Raw);
        let b1 = "Basic dGFja2VyX3NlcnZpY2U6aUlLNmxBUkx6SmdvUVF5TXlveW1OWXJHVER1UjA3MzNT";
        assert_eq!(
            rfc("tacker_service", "iIK6lARLzJgoQQyMyoymNYrGTDuR0733S"),
            b1
        );
        assert_eq!(
            raw("tacker_service", "iIK6lARLzJgoQQyMyoymNYrGTDuR0733S"),
            b1
        );
        assert_eq!(
            rfc(
                "1PpG/Q 1",
                "z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw="
            ),
            "Basic MVBwRyUyRlErMTp6JTJGdFo5VndGWnFBcG1JUSUyQlpIMUk1cExrJTJGdUI0dWQlM0FYMiUyRjhiTCUyQndmRlR0MXJGdyUzRA=="
        );
        assert_eq!(
            raw(
                "1PpG/Q 1",
                "z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw="
            ),
            "Basic MVBwRy9RIDE6ei90WjlWd0ZacUFwbUlRK1pIMUk1cExrL3VCNHVkOlgyLzhiTCt3ZkZUdDFyRnc9"
        );
        assert_eq!(
            rfc("client:with:colon", "p%40ss w0rd&x=y"),
            "Basic Y2xpZW50JTNBd2l0aCUzQWNvbG9uOnAlMjU0MHNzK3cwcmQlMjZ4JTNEeQ=="
        );
        assert_eq!(
            rfc("svc", "s3cr3t~*-._!'()"),
            "Basic c3ZjOnMzY3IzdCU3RSotLl8lMjElMjclMjglMjk="
        );
        assert_eq!(
            rfc("svc", "pässwörd€"),
            "Basic c3ZjOnAlQzMlQTRzc3clQzMlQjZyZCVFMiU4MiVBQw=="
        );
        assert_eq!(
            rfc("client", " %&+£€"),
            "Basic Y2xpZW50OislMjUlMjYlMkIlQzIlQTMlRTIlODIlQUM="
        );
    }

    fn auth(method: &str, extra: &[(&str, &str)]) -> ClientAuthenticator {
        let mut pairs = vec![
            ("client_id", "ksm"),
            ("client_secret", "s3cr:et"),
            ("auth_method", method),
            ("audience", "https://as"),
        ];
        pairs.extend_from_slice(extra);
        let cfg = ClientConfig::from_raw(&RawOptions::from_pairs(pairs)).unwrap();
        ClientAuthenticator::new(&cfg, &mut Vec::new()).unwrap()
    }

    const PARAMS: &[(&str, &str)] = &[("token", "T"), ("token_type_hint", "access_token")];

    // external_oauth2_token.md §4: the exact bodies.
    #[test]
    fn form_bodies_match_the_reference() {
        let r = auth("client_secret_basic", &[]).encode(PARAMS).unwrap();
        assert_eq!(r.body.expose(), "token=T&token_type_hint=access_token");
        assert_eq!(
            r.authorization.unwrap().expose(),
            "Basic a3NtOnMzY3IlM0FldA=="
        );
        let r = auth("client_secret_post", &[]).encode(PARAMS).unwrap();
        assert_eq!(
            r.body.expose(),
            "client_id=ksm&client_secret=s3cr%3Aet&token=T&token_type_hint=access_token"
        );
        assert!(r.authorization.is_none());
    }

    #[test]
    fn jwt_method_never_sends_the_secret() {
        let a = auth("client_secret_jwt", &[("jwt_algorithm", "HS256")]);
        let r1 = a.encode(PARAMS).unwrap();
        let r2 = a.encode(PARAMS).unwrap();
        let body = r1.body.expose();
        assert!(body.starts_with("client_id=ksm&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=ey"));
        assert!(!body.contains("client_secret="));
        assert!(body.ends_with("&token=T&token_type_hint=access_token"));
        assert_ne!(
            r1.body.expose(),
            r2.body.expose(),
            "assertions are never reused"
        );
        assert!(r1.authorization.is_none());
    }

    #[test]
    fn the_body_buffer_is_sized_once_and_never_reallocated() {
        let token = "t%".repeat(8 * 1024);
        for method in [
            "client_secret_post",
            "client_secret_jwt",
            "client_secret_basic",
        ] {
            let a = auth(method, &[("jwt_algorithm", "HS512")]);
            let mut r = a
                .encode(&[("token", &token), ("token_type_hint", "access_token")])
                .unwrap();
            let assertion = r.assertion.as_ref().map_or(0, |s| s.expose().len());
            let pairs: usize = match method {
                "client_secret_post" => 3 * ("client_id".len() + 3 + "client_secret".len() + 7) + 4,
                "client_secret_jwt" => {
                    3 * ("client_id".len()
                        + 3
                        + "client_assertion_type".len()
                        + ASSERTION_TYPE.len())
                        + 3 * ("client_assertion".len() + assertion)
                        + 6
                }
                _ => 0,
            };
            let room = pairs + 3 * ("token".len() + token.len() + "token_type_hint".len() + 12) + 4;
            assert_eq!(
                r.body.expose_mut().capacity(),
                room,
                "{method}: one allocation, never grown"
            );
            assert!(r.body.expose().ends_with("&token_type_hint=access_token"));
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let a = auth("client_secret_basic", &[]);
        let text = format!("{a:?}");
        assert!(!text.contains("s3cr"), "{text}");
    }
}
