//! Keys derived from `memcache_secret_key` and the MAC / AES-256-GCM protection of entries.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hmac, rand};
use serde_json::{Map, Value};

use super::{Protection, SharedTier};
use crate::cache::KeyDeriver;
use crate::secret::Secret;

const PREFIX: &str = "tokenward/v1/";
const MAC_TAG: &[u8; 4] = b"TWM1";
const ENC_TAG: &[u8; 4] = b"TWE1";
const MAC_LEN: usize = 32;

/// Keys derived from one secret.
pub(super) struct Keys {
    lookup: KeyDeriver,
    mac: hmac::Key,
    aead: LessSafeKey,
}

impl Keys {
    pub(super) fn derive(secret: Option<&Secret>, policy: &str) -> Self {
        let material = secret.map(|s| s.expose().as_bytes()).unwrap_or_default();
        let lookup_seed = blake3::derive_key("tokenward 2026 shared cache lookup", material);
        let mac = blake3::derive_key("tokenward 2026 shared cache mac", material);
        let enc = blake3::derive_key("tokenward 2026 shared cache aead", material);
        let aead = UnboundKey::new(&AES_256_GCM, &enc).map(LessSafeKey::new);
        Self {
            lookup: KeyDeriver::new(&lookup_seed, policy),
            mac: hmac::Key::new(hmac::HMAC_SHA256, &mac),
            // AES-256 with a 32-byte key cannot fail to construct.
            aead: aead.unwrap_or_else(|_| unreachable!("AES-256-GCM key of 32 bytes")),
        }
    }

    pub(super) fn storage_key(&self, token: &str) -> String {
        format!("{PREFIX}{:032x}", self.lookup.key(token))
    }
}

impl SharedTier {
    pub(super) fn seal(&self, key: &str, json: &[u8]) -> Option<Vec<u8>> {
        match self.protection {
            Protection::None => Some(json.to_vec()),
            Protection::Mac => {
                let tag = hmac::sign(&self.current.mac, &[key.as_bytes(), json].concat());
                Some([MAC_TAG.as_slice(), tag.as_ref(), json].concat())
            }
            Protection::Encrypt => {
                let mut nonce = [0u8; NONCE_LEN];
                rand::fill(&mut nonce).ok()?;
                let mut data = json.to_vec();
                self.current
                    .aead
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(key.as_bytes()),
                        &mut data,
                    )
                    .ok()?;
                Some([ENC_TAG.as_slice(), &nonce, &data].concat())
            }
        }
    }

    pub(super) fn open(&self, keys: &Keys, key: &str, raw: Vec<u8>) -> Option<Map<String, Value>> {
        let json = match self.protection {
            Protection::None => raw,
            Protection::Mac => {
                let rest = raw.strip_prefix(MAC_TAG.as_slice())?;
                let (tag, json) = rest.split_at_checked(MAC_LEN)?;
                hmac::verify(&keys.mac, &[key.as_bytes(), json].concat(), tag).ok()?;
                json.to_vec()
            }
            Protection::Encrypt => {
                let rest = raw.strip_prefix(ENC_TAG.as_slice())?;
                let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut data = sealed.to_vec();
                let plain = keys
                    .aead
                    .open_in_place(nonce, Aad::from(key.as_bytes()), &mut data)
                    .ok()?;
                plain.to_vec()
            }
        };
        match crate::strict_json::from_slice(&json).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
}
