//! What a client needs to talk to the AS (identity, authentication method, TLS, timeout),
//! read from the option map; shared by introspection, the key-set fetch and the Client
//! Credentials grant.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;
use crate::options::RawOptions;
use crate::secret::Secret;
use crate::tls::TlsSettings;

/// How the client authenticates to the AS (RFC 6749 §2.3, RFC 7523, RFC 8705).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// HTTP Basic with form-encoded id and secret.
    ClientSecretBasic,
    /// id and secret in the form body.
    ClientSecretPost,
    /// mutual TLS with a CA-issued certificate; the id in the form.
    TlsClientAuth,
    /// RFC 7523 assertion signed with a private key.
    PrivateKeyJwt,
    /// RFC 7523 assertion signed with the secret (HMAC).
    ClientSecretJwt,
}

impl AuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::TlsClientAuth => "tls_client_auth",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::ClientSecretJwt => "client_secret_jwt",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Self::ClientSecretBasic,
            Self::ClientSecretPost,
            Self::TlsClientAuth,
            Self::PrivateKeyJwt,
            Self::ClientSecretJwt,
        ]
        .into_iter()
        .find(|m| m.as_str() == name)
    }

    /// Whether the method needs `client_secret`.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            Self::ClientSecretBasic | Self::ClientSecretPost | Self::ClientSecretJwt
        )
    }
}

/// Encoding of the Basic credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BasicEncoding {
    /// RFC 6749 §2.3.1: form-urlencode id and secret, then base64.
    Rfc6749,
    /// base64 of the raw UTF-8 `id:secret` (what requests does).
    Raw,
}

/// What a client needs to talk to the AS: identity, authentication method, TLS, timeout.
/// Shared by introspection and the Client Credentials grant.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client id.
    pub client_id: String,
    /// Authentication method.
    pub auth_method: AuthMethod,
    /// Secret for the secret-based methods.
    pub client_secret: Option<Secret>,
    /// `aud` of client assertions.
    pub audience: Option<String>,
    /// Key for `private_key_jwt`.
    pub jwt_key_file: Option<PathBuf>,
    /// Algorithm name for the JWT methods.
    pub jwt_algorithm: Option<String>,
    /// Assertion lifetime.
    pub jwt_lifetime: Duration,
    /// TLS identity and trust.
    pub tls: TlsSettings,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Basic credential encoding.
    pub basic_encoding: BasicEncoding,
}

impl ClientConfig {
    /// The TLS and timeout options alone, for a filter that never authenticates to the AS
    /// (`validation = jwt` fetches only public documents).
    pub fn transport_only(raw: &RawOptions) -> Result<Self, ConfigError> {
        let tls = TlsSettings {
            certfile: raw.path("certfile"),
            keyfile: raw.path("keyfile"),
            cafile: raw.path("cafile"),
            insecure: raw.bool("insecure")?,
        };
        if tls.keyfile.is_some() && tls.certfile.is_none() {
            return Err(ConfigError::new(
                "certfile",
                "is required when keyfile is set",
            ));
        }
        Ok(Self {
            client_id: raw.string("client_id").unwrap_or_default(),
            auth_method: AuthMethod::ClientSecretBasic,
            client_secret: None,
            audience: raw.string("audience"),
            jwt_key_file: None,
            jwt_algorithm: None,
            jwt_lifetime: Duration::from_secs(3600),
            tls,
            timeout: Duration::from_secs(raw.positive_secs("http_connect_timeout")?),
            basic_encoding: BasicEncoding::Rfc6749,
        })
    }

    /// Reads the client part of the options.
    pub fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let method_name = raw.choice("auth_method")?.unwrap_or("client_secret_basic");
        let auth_method = AuthMethod::parse(method_name)
            .ok_or_else(|| ConfigError::new("auth_method", "unknown"))?;
        let client_id = raw.required("client_id", "")?;
        let client_secret = raw.secret("client_secret");
        if auth_method.uses_secret() && client_secret.is_none() {
            return Err(ConfigError::new(
                "client_secret",
                format!("is required by auth_method = {method_name}"),
            ));
        }
        let jwt = matches!(
            auth_method,
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt
        );
        let jwt_algorithm = raw.string("jwt_algorithm");
        if jwt && jwt_algorithm.is_none() {
            return Err(ConfigError::new(
                "jwt_algorithm",
                format!("is required by auth_method = {method_name}"),
            ));
        }
        let jwt_key_file = raw.path("jwt_key_file");
        if auth_method == AuthMethod::PrivateKeyJwt && jwt_key_file.is_none() {
            return Err(ConfigError::new(
                "jwt_key_file",
                "is required by auth_method = private_key_jwt",
            ));
        }
        let tls = TlsSettings {
            certfile: raw.path("certfile"),
            keyfile: raw.path("keyfile"),
            cafile: raw.path("cafile"),
            insecure: raw.bool("insecure")?,
        };
        if auth_method == AuthMethod::TlsClientAuth && tls.certfile.is_none() {
            return Err(ConfigError::new(
                "certfile",
                "is required by auth_method = tls_client_auth",
            ));
        }
        if tls.keyfile.is_some() && tls.certfile.is_none() {
            return Err(ConfigError::new(
                "certfile",
                "is required when keyfile is set",
            ));
        }
        let basic_encoding = match raw.choice("basic_auth_encoding")? {
            Some("raw") => BasicEncoding::Raw,
            _ => BasicEncoding::Rfc6749,
        };
        Ok(Self {
            client_id,
            auth_method,
            client_secret,
            audience: raw.string("audience"),
            jwt_key_file,
            jwt_algorithm,
            jwt_lifetime: Duration::from_secs(if jwt {
                raw.positive_secs("jwt_bearer_time_out")?
            } else {
                // Unused by this method, but a value out of bounds is still a typo.
                raw.secs("jwt_bearer_time_out")?;
                3600
            }),
            tls,
            timeout: Duration::from_secs(raw.positive_secs("http_connect_timeout")?),
            basic_encoding,
        })
    }
}
