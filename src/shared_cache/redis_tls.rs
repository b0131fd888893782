//! TLS material for `rediss://`: read and checked at start-up, each problem an error naming
//! the option (`redis_cafile`, `redis_certfile`, `redis_keyfile`).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::config::RedisTlsFiles;
use crate::error::ConfigError;
use crate::tls::read_file;

fn certificates(
    option: &'static str,
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new(option, format!("is not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            option,
            format!("holds no CERTIFICATE block ({})", path.display()),
        ));
    }
    Ok(certs)
}

/// What the redis crate needs for TLS beyond the URL; `None` when no file is set (the system
/// roots, no client certificate).
pub(super) fn load(files: &RedisTlsFiles) -> Result<Option<redis::TlsCertificates>, ConfigError> {
    if files.cafile.is_none() && files.certfile.is_none() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    let root_cert = match &files.cafile {
        Some(path) => {
            let pem = read_file("redis_cafile", path)?;
            for cert in certificates("redis_cafile", &pem, path)? {
                roots.add(cert).map_err(|e| {
                    ConfigError::new("redis_cafile", format!("holds an unusable CA ({e})"))
                })?;
            }
            Some(pem)
        }
        None => None,
    };
    let client_tls = match &files.certfile {
        Some(certfile) => {
            let cert_pem = read_file("redis_certfile", certfile)?;
            let chain = certificates("redis_certfile", &cert_pem, certfile)?;
            let (key_option, key_pem) = match &files.keyfile {
                Some(keyfile) => ("redis_keyfile", read_file("redis_keyfile", keyfile)?),
                None => ("redis_certfile", cert_pem.clone()),
            };
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                ConfigError::new(
                    key_option,
                    "holds no unencrypted PEM private key (PKCS#1, PKCS#8 or SEC1); set \
                     redis_keyfile or append the key to redis_certfile",
                )
            })?;
            // What the first handshake would find out: the key is the certificate's.
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|b| {
                    b.with_root_certificates(roots)
                        .with_client_auth_cert(chain, key)
                })
                .map_err(|e| {
                    ConfigError::new(
                        key_option,
                        format!("cannot be used with redis_certfile for TLS ({e})"),
                    )
                })?;
            Some(redis::ClientTlsConfig {
                client_cert: cert_pem,
                client_key: key_pem,
            })
        }
        None => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn data(name: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(name)
    }

    fn files(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> RedisTlsFiles {
        RedisTlsFiles {
            cafile: ca.map(data),
            certfile: cert.map(data),
            keyfile: key.map(data),
        }
    }

    #[test]
    fn good_files_load_and_each_problem_names_its_option() {
        assert!(load(&RedisTlsFiles::default()).unwrap().is_none());
        let both = load(&files(
            Some("ca.pem"),
            Some("client-v3.pem"),
            Some("client.key"),
        ))
        .unwrap()
        .unwrap();
        assert!(both.root_cert.is_some() && both.client_tls.is_some());
        assert!(load(&files(None, Some("client-combined.pem"), None)).is_ok());
        for (f, option) in [
            (files(Some("missing.pem"), None, None), "redis_cafile"),
            (files(Some("client.key"), None, None), "redis_cafile"),
            (files(None, Some("client.key"), None), "redis_certfile"),
            (files(None, Some("client-v3.pem"), None), "redis_certfile"),
            (
                files(None, Some("client-v3.pem"), Some("ca.pem")),
                "redis_keyfile",
            ),
            (
                files(None, Some("client-v3.pem"), Some("ec256-sec1.key")),
                "redis_keyfile",
            ),
            (
                files(None, Some("client-v3.pem"), Some("client-encrypted.key")),
                "redis_keyfile",
            ),
        ] {
            assert_eq!(load(&f).unwrap_err().option(), option, "{f:?}");
        }
    }
}
