//! RFC 8705 §3.1 certificate thumbprints (`x5t#S256`) and their constant-time comparison.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::cache::{CacheKey, TokenKeys};

/// SHA-256 of a certificate's DER.
pub(crate) type CertDigest = [u8; 32];

const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `base64url(SHA-256(der))` without padding: the `x5t#S256` value.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// Decodes an `x5t#S256` claim strictly: unpadded base64url of exactly 32 bytes. Padded,
/// standard-alphabet or hex forms are not thumbprints and give `None`.
pub(crate) fn decode_x5t(value: &str) -> Option<CertDigest> {
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    bytes.try_into().ok()
}

/// The digest of a client certificate given as DER, PEM (newlines may be spaces, as some
/// proxies send it) or URL-encoded PEM (nginx `$ssl_client_escaped_cert`). `None` when the
/// input is none of these.
pub(crate) fn cert_digest(input: &[u8]) -> Option<CertDigest> {
    let trimmed = input.trim_ascii_start();
    if trimmed.first() == Some(&0x30) {
        return Some(Sha256::digest(trimmed).into());
    }
    let der = pem_der(trimmed)?;
    Some(Sha256::digest(&der).into())
}

/// Digests of the certificates seen lately, by a keyed hash of the text the client sent: a
/// client sends the same certificate with every request, and decoding a PEM certificate costs
/// more than the rest of a cache hit. Bounded; a text not held is decoded as before. The keys
/// are random per process and never leave it, as for the verdict cache.
pub(crate) struct DigestMemo {
    keys: TokenKeys,
    seen: quick_cache::sync::Cache<CacheKey, Option<CertDigest>>,
}

impl DigestMemo {
    /// Distinct certificate texts held.
    pub(crate) const CAPACITY: usize = 4096;

    /// A memo keyed under `seed`; `None` without AES (as [`TokenKeys::new`]).
    pub(crate) fn new(seed: &[u8]) -> Option<Self> {
        Some(Self {
            keys: TokenKeys::new(seed, "client certificate digests")?,
            seen: quick_cache::sync::Cache::new(Self::CAPACITY),
        })
    }

    /// `decode(text)`, or what it gave for the same text before. One memo per decoder.
    pub(crate) fn digest(
        &self,
        text: &[u8],
        decode: impl FnOnce(&[u8]) -> Option<CertDigest>,
    ) -> Option<CertDigest> {
        let key = self.keys.key_of_bytes(text);
        if let Some(digest) = self.seen.get(&key) {
            return digest;
        }
        let digest = decode(text);
        self.seen.insert(key, digest);
        digest
    }
}

/// The DER bytes of a certificate given in any of the forms [`cert_digest`] takes.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn cert_der(input: &[u8]) -> Option<Vec<u8>> {
    let trimmed = input.trim_ascii_start();
    if trimmed.first() == Some(&0x30) {
        return Some(trimmed.to_vec());
    }
    pem_der(trimmed)
}

/// The DER inside PEM or URL-encoded PEM text (the armour's body, whitespace dropped, read
/// as base64; this runs on every request of a PEM-bound client, so bytes, not `char`s).
fn pem_der(text: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(text).ok()?;
    let decoded;
    let text = if text.starts_with("-----BEGIN%20") || text.contains("%0A") {
        decoded = percent_decode(text)?;
        decoded.as_str()
    } else {
        text
    };
    let body = text.strip_prefix(BEGIN)?;
    let body = &body.as_bytes()[..body.find(END)?];
    let mut compact = Vec::with_capacity(body.len());
    compact.extend(body.iter().copied().filter(|b| !b.is_ascii_whitespace()));
    let der = LENIENT_STANDARD.decode(compact).ok()?;
    (der.first() == Some(&0x30)).then_some(der)
}

/// `%XX` escapes decoded; `None` for a bad escape or non-UTF-8 result.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `x5t#S256` text of a digest.
pub(crate) fn x5t_s256_of_digest(digest: &CertDigest) -> String {
    URL_SAFE_NO_PAD.encode(digest)
}

/// Constant-time equality of two digests.
pub(crate) fn digests_match(a: &CertDigest, b: &CertDigest) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("../tests/data/x5t-vector.pem");
    // Computed with `openssl x509 -outform DER | openssl dgst -sha256 -binary | basenc --base64url`.
    const X5T: &str = "HSsRFAvLWZ2Rq53NvkE_8bN9CckyvbrDt2K6U8VoNMc";

    #[test]
    fn the_memo_decodes_a_text_once_and_tells_texts_apart() {
        let memo = DigestMemo::new(&[7; 32]).unwrap();
        let decoded = std::cell::Cell::new(0);
        let digest = |text: &[u8]| {
            memo.digest(text, |t| {
                decoded.set(decoded.get() + 1);
                cert_digest(t)
            })
        };
        let want = decode_x5t(X5T);
        assert_eq!(digest(PEM.as_bytes()), want);
        assert_eq!(digest(PEM.as_bytes()), want);
        assert_eq!(decoded.get(), 1);
        // Another text of the same certificate is decoded (and agrees); garbage stays none.
        let spaced = PEM.replace('\n', " ");
        assert_eq!(digest(spaced.as_bytes()), want);
        assert_eq!(digest(b"-----BEGIN CERTIFICATE-----junk"), None);
        assert_eq!(digest(b"-----BEGIN CERTIFICATE-----junk"), None);
        assert_eq!(decoded.get(), 3);
        // Past its capacity the memo still answers right (by decoding again).
        for i in 0..DigestMemo::CAPACITY * 2 {
            assert_eq!(digest(format!("not a certificate {i}").as_bytes()), None);
        }
        assert_eq!(digest(PEM.as_bytes()), want);
    }

    #[test]
    fn vector_from_pem_der_and_mangled_forms() {
        let der = cert_der(PEM.as_bytes()).unwrap();
        assert_eq!(x5t_s256(&der), X5T);
        let want = decode_x5t(X5T).unwrap();
        assert_eq!(cert_digest(&der), Some(want));
        assert_eq!(cert_digest(PEM.replace('\n', " ").as_bytes()), Some(want));
        let escaped = PEM
            .replace('\n', "%0A")
            .replace(' ', "%20")
            .replace('+', "%2B")
            .replace('/', "%2F");
        assert_eq!(cert_digest(escaped.as_bytes()), Some(want));
        assert_eq!(cert_digest(format!("\n  {PEM}").as_bytes()), Some(want));
    }

    #[test]
    fn openssl_colon_fingerprint_converts() {
        let hex = "1D:2B:11:14:0B:CB:59:9D:91:AB:9D:CD:BE:41:3F:F1:B3:7D:09:C9:32:BD:BA:C3:B7:62:BA:53:C5:68:34:C7";
        let bytes: Vec<u8> = hex
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        assert_eq!(URL_SAFE_NO_PAD.encode(bytes), X5T);
    }

    #[test]
    fn near_misses_are_not_thumbprints() {
        assert!(decode_x5t(&format!("{X5T}=")).is_none());
        assert!(decode_x5t(&X5T.replace('_', "/")).is_none());
        assert!(
            decode_x5t("1d2b11140bcb599d91ab9dcdbe413ff1b37d09c932bdbac3b762ba53c56834c7")
                .is_none()
        );
        assert!(decode_x5t("").is_none());
        assert!(cert_digest(b"not a certificate").is_none());
        assert!(
            cert_digest(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----").is_none()
        );
    }

    #[test]
    fn comparison() {
        let a = decode_x5t(X5T).unwrap();
        let mut b = a;
        assert!(digests_match(&a, &b));
        b[31] ^= 1;
        assert!(!digests_match(&a, &b));
    }
}
