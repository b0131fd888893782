//! Client certificates forwarded by a TLS-terminating proxy (HAProxy, nginx, Apache, Envoy):
//! the header's value is believed only from a peer in `trusted_proxies`, decoded in the
//! configured format, and reduced to the SHA-256 digest RFC 8705 binding compares.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::log::{Level, LogSink};
use crate::thumbprint::{self, CertDigest, DigestMemo};

/// How the proxy writes the certificate into the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// PEM, newlines possibly replaced by spaces or tabs (Apache `%{SSL_CLIENT_CERT}s`).
    Pem,
    /// URL-encoded PEM (nginx `$ssl_client_escaped_cert`).
    UrlEncodedPem,
    /// Base64 of the DER, no armour (HAProxy `%[ssl_c_der,base64]`).
    DerBase64,
    /// Envoy's `x-forwarded-client-cert`: the last element's `Cert=`, else its `Hash=`.
    Xfcc,
    /// RFC 9440 `Client-Cert: :<base64 DER>:`.
    Rfc9440,
}

impl HeaderFormat {
    /// The option's spellings, in order.
    pub const NAMES: &'static [&'static str] =
        &["pem", "url_encoded_pem", "der_base64", "xfcc", "rfc9440"];

    /// The format of a `client_cert_header_format` value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "pem" => Self::Pem,
            "url_encoded_pem" => Self::UrlEncodedPem,
            "der_base64" => Self::DerBase64,
            "xfcc" => Self::Xfcc,
            "rfc9440" => Self::Rfc9440,
            _ => return None,
        })
    }
}

/// An address or network of `trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address = canonical(address.parse().ok()?);
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Self { address, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where forwarded certificates are read and whom they are believed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyCertConfig {
    /// The header's name as configured (e.g. `X-SSL-Client-Cert`).
    pub header: String,
    /// Its format.
    pub format: HeaderFormat,
    trusted: Vec<Network>,
}

impl ProxyCertConfig {
    /// Checks the header name and parses `trusted_proxies` (addresses and CIDRs, v4 and v6).
    pub fn new(
        header: &str,
        format: HeaderFormat,
        trusted: &[String],
    ) -> Result<Self, ConfigError> {
        let valid_name = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(ConfigError::new(
                "client_cert_header",
                "must be a header name (letters, digits, '-')",
            ));
        }
        if trusted.is_empty() {
            return Err(ConfigError::new(
                "trusted_proxies",
                "is required with client_cert_header: the addresses of the proxies whose header is believed",
            ));
        }
        let trusted = trusted
            .iter()
            .map(|t| {
                Network::parse(t).ok_or_else(|| {
                    ConfigError::new(
                        "trusted_proxies",
                        format!("holds {t:?}, which is not an IP address or CIDR network"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            header: header.to_owned(),
            format,
            trusted,
        })
    }

    /// Whether `peer` (an IP address as text) is one of the trusted proxies.
    pub fn trusts(&self, peer: &str) -> bool {
        let Ok(ip) = peer.trim().parse::<IpAddr>() else {
            return false;
        };
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(ip))
    }
}

/// The digest of the certificate in a header value of this format, or `None`.
pub(crate) fn decode(value: &str, format: HeaderFormat) -> Option<CertDigest> {
    let value = value.trim();
    match format {
        HeaderFormat::Pem => pem_digest(value),
        HeaderFormat::UrlEncodedPem => pem_digest(&thumbprint::percent_decode(value)?),
        HeaderFormat::DerBase64 => der_digest(&STANDARD.decode(value).ok()?),
        HeaderFormat::Rfc9440 => {
            let inner = value.strip_prefix(':')?.strip_suffix(':')?;
            der_digest(&STANDARD.decode(inner).ok()?)
        }
        HeaderFormat::Xfcc => {
            let element = split_outside_quotes(value, ',').pop()?;
            let mut cert = None;
            let mut hash = None;
            for pair in split_outside_quotes(&element, ';') {
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = unquote(value.trim());
                match key.trim().to_ascii_lowercase().as_str() {
                    "cert" => cert = Some(value),
                    "hash" => hash = Some(value),
                    _ => {}
                }
            }
            match (cert, hash) {
                (Some(cert), _) => pem_digest(&thumbprint::percent_decode(&cert)?),
                (None, Some(hash)) => hex_digest(&hash),
                (None, None) => None,
            }
        }
    }
}

fn pem_digest(text: &str) -> Option<CertDigest> {
    text.starts_with("-----BEGIN CERTIFICATE-----")
        .then(|| thumbprint::cert_digest(text.as_bytes()))
        .flatten()
}

fn der_digest(der: &[u8]) -> Option<CertDigest> {
    // Only the outer structure is checked: the digest is compared, the certificate not used.
    (der.len() > 2 && der[0] == 0x30).then(|| Sha256::digest(der).into())
}

/// Envoy writes the hash as 64 lowercase hex digits.
fn hex_digest(hex: &str) -> Option<CertDigest> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

/// Splits at `sep` outside double quotes (a backslash escapes inside quotes).
fn split_outside_quotes(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        let current = parts.last_mut().expect("never empty");
        if escaped {
            current.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == '"' {
            current.push(c);
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
        } else {
            current.push(c);
        }
    }
    parts
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_owned(),
    }
}

/// Most untrusted peers remembered for the once-per-peer WARNING.
const WARNED_PEERS: usize = 1024;

/// The forwarded-certificate source of an authenticator.
#[derive(Debug)]
pub(crate) struct ProxyCerts {
    config: ProxyCertConfig,
    warned: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl ProxyCerts {
    /// A source for this configuration.
    pub(crate) fn new(config: ProxyCertConfig) -> Self {
        Self {
            config,
            warned: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// The forwarded certificate's digest: the header's value from a trusted peer, decoded.
    /// From any other peer the header is ignored and logged at WARNING once per peer.
    pub(crate) fn certificate(
        &self,
        peer: Option<&str>,
        value: Option<&str>,
        log: &dyn LogSink,
        memo: &DigestMemo,
    ) -> Option<CertDigest> {
        let value = value.filter(|v| !v.trim().is_empty())?;
        let peer = peer.unwrap_or("");
        if !self.config.trusts(peer) {
            self.warn_once(peer, log);
            return None;
        }
        let format = self.config.format;
        memo.digest(value.as_bytes(), |v| {
            std::str::from_utf8(v).ok().and_then(|v| decode(v, format))
        })
    }

    fn warn_once(&self, peer: &str, log: &dyn LogSink) {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let (seen, order) = &mut *warned;
        if seen.contains(peer) {
            return;
        }
        if order.len() >= WARNED_PEERS
            && let Some(oldest) = order.pop_front()
        {
            seen.remove(&oldest);
        }
        seen.insert(peer.to_owned());
        order.push_back(peer.to_owned());
        drop(warned);
        if log.enabled(Level::Warning) {
            let shown: String = peer.chars().filter(|c| !c.is_control()).take(64).collect();
            log.log(
                Level::Warning,
                &format!(
                    "{} from {:?}, which is not in trusted_proxies: ignored (said once per peer)",
                    self.config.header, shown
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::NoLog;

    const PEM: &str = include_str!("../tests/data/x5t-vector.pem");

    fn digest() -> CertDigest {
        thumbprint::cert_digest(PEM.as_bytes()).unwrap()
    }

    fn der_b64() -> String {
        STANDARD.encode(thumbprint::cert_der(PEM.as_bytes()).unwrap())
    }

    fn url_encoded(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn every_format_decodes_to_the_same_digest() {
        let want = Some(digest());
        assert_eq!(decode(PEM, HeaderFormat::Pem), want);
        assert_eq!(decode(&PEM.replace('\n', " "), HeaderFormat::Pem), want);
        assert_eq!(decode(&PEM.replace('\n', "\t"), HeaderFormat::Pem), want);
        assert_eq!(decode(&url_encoded(PEM), HeaderFormat::UrlEncodedPem), want);
        assert_eq!(decode(&der_b64(), HeaderFormat::DerBase64), want);
        assert_eq!(
            decode(&format!(":{}:", der_b64()), HeaderFormat::Rfc9440),
            want
        );
        let hex: String = digest().iter().map(|b| format!("{b:02x}")).collect();
        let xfcc = format!(
            "By=spiffe://outer;Hash={};Cert=\"{}\",By=spiffe://inner;Hash={hex};Subject=\"CN=a,O=b\";URI=spiffe://client",
            "0".repeat(64),
            url_encoded("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        );
        assert_eq!(
            decode(&xfcc, HeaderFormat::Xfcc),
            want,
            "the last element's Hash"
        );
        let with_cert = format!("Hash={};Cert=\"{}\"", "1".repeat(64), url_encoded(PEM));
        assert_eq!(
            decode(&with_cert, HeaderFormat::Xfcc),
            want,
            "Cert wins over Hash"
        );
    }

    #[test]
    fn wrong_or_mangled_values_give_nothing() {
        for (value, format) in [
            (der_b64(), HeaderFormat::Pem),
            (PEM.to_owned(), HeaderFormat::DerBase64),
            (der_b64(), HeaderFormat::Rfc9440),
            (format!(":{}", der_b64()), HeaderFormat::Rfc9440),
            ("Hash=ABCDEF".to_owned(), HeaderFormat::Xfcc),
            (format!("Hash={}", "A".repeat(64)), HeaderFormat::Xfcc),
            ("By=x".to_owned(), HeaderFormat::Xfcc),
            ("%ZZ".to_owned(), HeaderFormat::UrlEncodedPem),
            (STANDARD.encode("not der"), HeaderFormat::DerBase64),
        ] {
            assert_eq!(decode(&value, format), None, "{format:?} {value:.40}");
        }
    }

    #[test]
    fn trusted_proxies_match_addresses_and_networks() {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let c = ProxyCertConfig::new(
            "X-SSL-Client-Cert",
            HeaderFormat::Pem,
            &list(&["10.0.0.0/8", "192.168.1.5", "fd00::/8", "::1"]),
        )
        .unwrap();
        for peer in [
            "10.1.2.3",
            "192.168.1.5",
            "::ffff:10.9.9.9",
            "fd12::1",
            "::1",
        ] {
            assert!(c.trusts(peer), "{peer}");
        }
        for peer in [
            "11.0.0.1",
            "192.168.1.6",
            "fe80::1",
            "",
            "localhost",
            "10.0.0.1:80",
        ] {
            assert!(!c.trusts(peer), "{peer}");
        }
        let all = ProxyCertConfig::new("H", HeaderFormat::Pem, &list(&["0.0.0.0/0"])).unwrap();
        assert!(all.trusts("8.8.8.8") && !all.trusts("::2"));
        for bad in [
            &["10.0.0.0/33"][..],
            &["10.0.0.0/"],
            &["nonsense"],
            &["::/129"],
            &[],
        ] {
            let e = ProxyCertConfig::new("H", HeaderFormat::Pem, &list(bad)).unwrap_err();
            assert_eq!(e.option(), "trusted_proxies", "{bad:?}");
        }
        let e = ProxyCertConfig::new("X Bad:", HeaderFormat::Pem, &list(&["::1"])).unwrap_err();
        assert_eq!(e.option(), "client_cert_header");
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);
    impl LogSink for Lines {
        fn enabled(&self, _: Level) -> bool {
            true
        }
        fn log(&self, _: Level, m: &str) {
            self.0.lock().unwrap().push(m.to_owned());
        }
    }

    #[test]
    fn untrusted_peers_are_ignored_and_warned_once_with_bounded_memory() {
        let c = ProxyCertConfig::new("X-Cert", HeaderFormat::Pem, &["127.0.0.1".into()]).unwrap();
        let source = ProxyCerts::new(c);
        let memo = DigestMemo::new(&[1; 32]).unwrap();
        let log = Lines::default();
        assert_eq!(
            source.certificate(Some("127.0.0.1"), Some(PEM), &log, &memo),
            Some(digest())
        );
        assert_eq!(
            source.certificate(Some("127.0.0.1"), None, &NoLog, &memo),
            None
        );
        for _ in 0..3 {
            assert_eq!(
                source.certificate(Some("10.0.0.9"), Some(PEM), &log, &memo),
                None
            );
        }
        assert_eq!(log.0.lock().unwrap().len(), 1);
        assert!(log.0.lock().unwrap()[0].contains("10.0.0.9"));
        for i in 0..5000 {
            source.certificate(
                Some(&format!("10.1.{}.{}", i / 256, i % 256)),
                Some(PEM),
                &NoLog,
                &memo,
            );
        }
        let warned = source.warned.lock().unwrap();
        assert!(warned.0.len() <= WARNED_PEERS && warned.1.len() <= WARNED_PEERS);
    }
}
