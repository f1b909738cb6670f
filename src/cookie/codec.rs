//! The session cookie's value: the session id and a MAC under the cookie key, so that a forged
//! or guessed cookie is "no session" before any store is asked. A flood of random well-formed
//! ids then costs an HMAC each, not a Redis read each (docs/protocol.md).
//!
//! The value is the unpadded base64url of the 32-byte id followed by the first 16 bytes of
//! HMAC-SHA256(key, "sessiongate cookie v1" ‖ id): 64 characters. Several keys may be
//! configured for rotation: the first signs, every one verifies, so a new key can be put first
//! and the old one removed later without logging anyone out. The store key stays a hash of the
//! id alone, so a rotation changes no store key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::session::SessionId;

/// Bytes of the MAC kept in the cookie (128 bits).
const TAG_LEN: usize = 16;
/// Raw bytes of a cookie value: the id and the tag.
const RAW_LEN: usize = 32 + TAG_LEN;
/// Characters of a cookie value: `RAW_LEN` bytes in unpadded base64url.
pub const VALUE_LEN: usize = 64;
/// Keeps cookie MACs apart from anything else the same key might ever sign.
const DOMAIN: &[u8] = b"sessiongate cookie v1";

/// Signs and verifies session cookie values.
#[derive(Clone)]
pub struct CookieCodec {
    /// The keyed HMAC states, the signing key first; cloned per use instead of re-keyed.
    keys: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieCodec")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl CookieCodec {
    /// A codec with these keys, the signing key first. At least one key; the configuration
    /// checks their lengths.
    pub fn new<K: AsRef<[u8]>>(keys: &[K]) -> Self {
        assert!(!keys.is_empty(), "a cookie codec needs a key");
        CookieCodec {
            keys: keys
                .iter()
                .map(|k| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(k.as_ref())
                        .expect("HMAC accepts keys of any length");
                    mac.update(DOMAIN);
                    mac
                })
                .collect(),
        }
    }

    /// The cookie value for `id`, signed with the first key.
    pub fn encode(&self, id: &SessionId) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..32].copy_from_slice(id.as_bytes());
        let mut mac = self.keys[0].clone();
        mac.update(id.as_bytes());
        raw[32..].copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The session id a cookie value carries, when it is exactly the canonical form and its
    /// MAC verifies under one of the keys (compared in constant time); `None` otherwise.
    pub fn decode(&self, value: &[u8]) -> Option<SessionId> {
        if value.len() != VALUE_LEN {
            return None;
        }
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return None,
        }
        let (id, tag) = raw.split_at(32);
        let verified = self.keys.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(id);
            mac.verify_truncated_left(tag).is_ok()
        });
        if !verified {
            return None;
        }
        let id: [u8; 32] = id.try_into().ok()?;
        Some(SessionId::from_bytes(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &[u8] = b"cookie-key-one-0123456789abcdefghij";
    const K2: &[u8] = b"cookie-key-two-0123456789abcdefghij";

    #[test]
    fn a_signed_value_round_trips() {
        let codec = CookieCodec::new(&[K1]);
        let id = SessionId::generate().unwrap();
        let value = codec.encode(&id);
        assert_eq!(value.len(), VALUE_LEN);
        assert_eq!(codec.decode(value.as_bytes()), Some(id));
    }

    #[test]
    fn forged_tampered_and_misshapen_values_are_refused() {
        let codec = CookieCodec::new(&[K1]);
        let id = SessionId::generate().unwrap();
        let value = codec.encode(&id);
        // An id with any tag but the right one.
        let mut forged = [0u8; RAW_LEN];
        forged[..32].copy_from_slice(id.as_bytes());
        assert_eq!(
            codec.decode(URL_SAFE_NO_PAD.encode(forged).as_bytes()),
            None
        );
        // Every single-character change.
        for i in 0..VALUE_LEN {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(codec.decode(&bytes), None, "position {i}");
        }
        // The bare id (the cookie of a previous version), other lengths, other alphabets.
        assert_eq!(codec.decode(id.encode().as_bytes()), None);
        assert_eq!(codec.decode(&value.as_bytes()[..63]), None);
        assert_eq!(codec.decode(format!("{value}A").as_bytes()), None);
        assert_eq!(codec.decode("+".repeat(64).as_bytes()), None);
        assert_eq!(codec.decode(b""), None);
        // Signed under another key.
        assert_eq!(
            CookieCodec::new(&[K2]).decode(value.as_bytes()),
            None,
            "a key that is not listed verifies nothing"
        );
    }

    #[test]
    fn rotation_keeps_old_cookies_while_the_old_key_is_listed() {
        let id = SessionId::generate().unwrap();
        let old = CookieCodec::new(&[K1]).encode(&id);
        let rotated = CookieCodec::new(&[K2, K1]);
        assert_eq!(rotated.decode(old.as_bytes()), Some(id.clone()));
        let new = rotated.encode(&id);
        assert_ne!(new, old, "the first key signs");
        assert_eq!(
            CookieCodec::new(&[K2]).decode(new.as_bytes()),
            Some(id.clone())
        );
        assert_eq!(CookieCodec::new(&[K2]).decode(old.as_bytes()), None);
    }

    #[test]
    fn debug_shows_no_key() {
        let text = format!("{:?}", CookieCodec::new(&[K1]));
        assert!(!text.contains("cookie-key"), "{text}");
    }
}
