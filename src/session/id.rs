//! Session ids and the keys they are stored under.
//!
//! A `SessionId` is the bearer secret the browser holds: 32 bytes from the OS CSPRNG, written
//! as 43 characters of unpadded base64url. It never reaches a log or the store; the store and
//! the logs only ever see `StoreKey`, its SHA-256.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Length of an encoded id: 32 bytes in unpadded base64url.
pub const ENCODED_LEN: usize = 43;

/// The secret session id. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(SessionId(bytes))
    }

    /// An id from its 32 bytes (as a verified cookie carries them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionId(bytes)
    }

    /// The id's 32 bytes (for the cookie MAC).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the id's own encoding; anything but exactly 43 canonical base64url characters is
    /// `None`. (The cookie carries the id with a MAC: `cookie::CookieCodec`.)
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() != ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut bytes) {
            Ok(32) => Some(SessionId(bytes)),
            _ => None,
        }
    }

    /// The id in unpadded base64url: what `H(id)` hashes. Never a log line; the cookie value
    /// is this id with a MAC (`cookie::CookieCodec`).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key the store knows this session by.
    pub fn store_key(&self) -> StoreKey {
        let mut encoded = [0u8; ENCODED_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut encoded)
            .expect("32 bytes encode to 43 characters");
        debug_assert_eq!(written, ENCODED_LEN);
        StoreKey(URL_SAFE_NO_PAD.encode(Sha256::digest(encoded)))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// `H(id)`: base64url SHA-256 of the encoded id. Safe to store and, truncated, to log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey(String);

impl StoreKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds a key from its stored form (e.g. a member of a user's session set).
    pub fn from_stored(s: impl Into<String>) -> Self {
        StoreKey(s.into())
    }

    /// A key given by an operator (the admin API): exactly the form `store_key` produces,
    /// 43 base64url characters (SHA-256, unpadded).
    pub fn parse(s: &str) -> Option<Self> {
        let valid = s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| StoreKey(s.to_string()))
    }

    /// Twelve bits from the first two characters, uniform for a real key (base64url of a
    /// SHA-256): for spreading keys over shards and slots without hashing them again.
    pub fn spread(&self) -> u16 {
        fn sextet(c: u8) -> u16 {
            u16::from(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                _ => 63,
            })
        }
        let bytes = self.0.as_bytes();
        let at = |i: usize| sextet(bytes.get(i).copied().unwrap_or(0));
        at(0) << 6 | at(1)
    }

    /// The first 12 characters: enough to correlate log lines, useless to an attacker.
    pub fn log_tag(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_parse_only_in_their_own_form() {
        let key = SessionId::generate().unwrap().store_key();
        assert_eq!(StoreKey::parse(key.as_str()), Some(key.clone()));
        for bad in [
            "",
            "short",
            &format!("{}=", key.as_str()),
            &key.as_str().replace(|c: char| c.is_ascii_alphabetic(), "+"),
        ] {
            assert_eq!(StoreKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_ids_round_trip_and_differ() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        let encoded = a.encode();
        assert_eq!(encoded.len(), ENCODED_LEN);
        assert_eq!(SessionId::parse(encoded.as_bytes()), Some(a));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let good = SessionId::generate().unwrap().encode();
        assert!(SessionId::parse(&good.as_bytes()[..42]).is_none());
        assert!(SessionId::parse(format!("{good}A").as_bytes()).is_none());
        assert!(SessionId::parse(good.replace(|_| true, "+").as_bytes()).is_none());
        assert!(SessionId::parse(format!("{}=", &good[..42]).as_bytes()).is_none());
        // 43 characters carry 258 bits: the last character's two low bits must be zero.
        let mut bytes = good.into_bytes();
        bytes[42] = b'B';
        assert!(SessionId::parse(&bytes).is_none());
        bytes[42] = b'E';
        assert!(SessionId::parse(&bytes).is_some());
        assert!(SessionId::parse(b"").is_none());
    }

    #[test]
    fn debug_never_shows_the_id() {
        let id = SessionId::generate().unwrap();
        assert!(!format!("{id:?}").contains(&id.encode()));
    }

    #[test]
    fn store_key_is_a_hash_not_the_id() {
        let id = SessionId::generate().unwrap();
        let key = id.store_key();
        assert_eq!(key.as_str().len(), 43);
        assert_ne!(key.as_str(), id.encode());
        assert_eq!(key, id.store_key());
        assert_eq!(key.log_tag().len(), 12);
    }
}
