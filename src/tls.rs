//! Loading TLS material at start-up: the client identity (certfile/keyfile) and the CA bundle,
//! with errors that name the option and say what to do.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ConfigError;
use crate::thumbprint::{self, CertDigest};

/// TLS settings toward the AS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// Client certificate PEM (may hold the key too).
    pub certfile: Option<PathBuf>,
    /// Private key PEM for `certfile`.
    pub keyfile: Option<PathBuf>,
    /// CA bundle replacing the system roots.
    pub cafile: Option<PathBuf>,
    /// Skip verification of the AS certificate.
    pub insecure: bool,
}

/// Reads a whole file; a missing, unreadable or empty file is an error naming `option`.
pub(crate) fn read_file(option: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::new(option, format!("cannot be read ({}: {e})", path.display()))
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            option,
            format!("is empty ({})", path.display()),
        ));
    }
    Ok(bytes)
}

/// A client certificate and key, checked and ready for the HTTP client.
#[derive(Clone)]
pub(crate) struct ClientIdentity {
    /// Key then certificate chain, PEM, as reqwest's rustls `Identity::from_pem` wants it.
    pub(crate) pem: Vec<u8>,
    /// SHA-256 of the leaf certificate (the `x5t#S256` the AS binds tokens to).
    pub digest: CertDigest,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("x5t#S256", &thumbprint::x5t_s256_of_digest(&self.digest))
            .finish()
    }
}

/// Loads certfile/keyfile (a certfile that also holds the key works). Refuses what rustls
/// cannot use, with the reason: X.509 v1 certificates, encrypted keys, missing blocks.
pub(crate) fn load_identity(tls: &TlsSettings) -> Result<Option<ClientIdentity>, ConfigError> {
    let Some(certfile) = &tls.certfile else {
        return Ok(None);
    };
    let cert_pem = read_file("certfile", certfile)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new("certfile", format!("is not valid PEM ({e})")))?;
    let leaf = certs.first().ok_or_else(|| {
        ConfigError::new(
            "certfile",
            format!("holds no CERTIFICATE block ({})", certfile.display()),
        )
    })?;
    // rustls verifies with webpki, which takes X.509 v3 only: ask it now rather than fail
    // at the first handshake.
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(_) => {}
        Err(webpki::Error::UnsupportedCertVersion) => {
            return Err(ConfigError::new(
                "certfile",
                "is not an X.509 v3 certificate (it is v1 or v2); rustls accepts only v3. \
                 Reissue it as v3, e.g. `openssl x509 -req ... -extfile <(echo \
                 extendedKeyUsage=clientAuth)`",
            ));
        }
        Err(_) => {
            return Err(ConfigError::new(
                "certfile",
                "holds a certificate that cannot be parsed",
            ));
        }
    }
    let (key_option, key_pem) = match &tls.keyfile {
        Some(keyfile) => ("keyfile", read_file("keyfile", keyfile)?),
        None => ("certfile", cert_pem.clone()),
    };
    if key_pem
        .windows(27)
        .any(|w| w == b"BEGIN ENCRYPTED PRIVATE KEY")
    {
        return Err(ConfigError::new(
            key_option,
            "holds an encrypted key, which is not supported; decrypt it with openssl pkey",
        ));
    }
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        ConfigError::new(key_option, "holds no PEM private key (PKCS#1, PKCS#8 or SEC1); set keyfile or append the key to certfile")
    })?;
    let mut pem = key_pem;
    pem.push(b'\n');
    pem.extend_from_slice(&cert_pem);
    Ok(Some(ClientIdentity {
        pem,
        digest: thumbprint::cert_digest(leaf.as_ref()).unwrap_or_default(),
    }))
}

/// Loads the CA bundle (`cafile`).
pub(crate) fn load_ca_bundle(
    tls: &TlsSettings,
) -> Result<Option<Vec<reqwest::Certificate>>, ConfigError> {
    let Some(cafile) = &tls.cafile else {
        return Ok(None);
    };
    let pem = read_file("cafile", cafile)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
        ConfigError::new(
            "cafile",
            format!("is not a PEM certificate bundle ({})", cafile.display()),
        )
    })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            "cafile",
            format!("holds no certificate ({})", cafile.display()),
        ));
    }
    Ok(Some(certs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn data(name: &str) -> Option<PathBuf> {
        Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(name))
    }

    fn tls(cert: &str, key: Option<&str>) -> TlsSettings {
        TlsSettings {
            certfile: data(cert),
            keyfile: key.and_then(data),
            cafile: None,
            insecure: false,
        }
    }

    #[test]
    fn v3_identity_loads_from_two_files_or_one() {
        let a = load_identity(&tls("client-v3.pem", Some("client.key")))
            .unwrap()
            .unwrap();
        let b = load_identity(&tls("client-combined.pem", None))
            .unwrap()
            .unwrap();
        assert_eq!(a.digest, b.digest);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn what_rustls_cannot_use_is_refused_with_the_reason() {
        let e = load_identity(&tls("client-v1.pem", Some("client.key"))).unwrap_err();
        assert_eq!(e.option(), "certfile");
        assert!(e.message().contains("v1"), "{e}");
        let e = load_identity(&tls("client-v3.pem", None)).unwrap_err();
        assert_eq!(e.option(), "certfile");
        assert!(e.message().contains("private key"), "{e}");
        let e = load_identity(&tls("client-v3.pem", Some("client-encrypted.key"))).unwrap_err();
        assert_eq!(e.option(), "keyfile");
        assert!(e.message().contains("encrypted"), "{e}");
        let e = load_identity(&tls("client.key", Some("client.key"))).unwrap_err();
        assert!(e.message().contains("no CERTIFICATE"), "{e}");
        let e = load_identity(&tls("missing.pem", None)).unwrap_err();
        assert!(e.message().contains("cannot be read"), "{e}");
        let garbage = std::env::temp_dir().join(format!("tw-garbage-{}.pem", std::process::id()));
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let settings = TlsSettings {
            certfile: Some(garbage.clone()),
            ..TlsSettings::default()
        };
        let e = load_identity(&settings).unwrap_err();
        std::fs::remove_file(&garbage).ok();
        assert_eq!(e.option(), "certfile");
        assert!(e.message().contains("cannot be parsed"), "{e}");
    }

    #[test]
    fn ca_bundle() {
        let ok = TlsSettings {
            cafile: data("ca.pem"),
            ..TlsSettings::default()
        };
        assert_eq!(load_ca_bundle(&ok).unwrap().unwrap().len(), 1);
        let bad = TlsSettings {
            cafile: data("client.key"),
            ..TlsSettings::default()
        };
        assert_eq!(load_ca_bundle(&bad).unwrap_err().option(), "cafile");
    }
}
