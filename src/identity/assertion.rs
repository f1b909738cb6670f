//! The identity assertion: a compact JWS (HS256) with `kid`, carrying `iss`, `aud`, `sub`,
//! `sid` (the hash of the session id, never the id), `iat`, `exp` and the session's claims.
//!
//! Signed by hand with `hmac`/`sha2`: the header is fixed per key and encoded once, the keyed
//! HMAC state is cloned per request instead of re-deriving the key pads, and the session's
//! claims arrive already serialised (see `PreparedSession`), so the payload is written in one
//! pass with no JSON tree built per request.

use std::io::Write;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::session::{PreparedSession, StoreKey};

/// Signs assertions with one HS256 key.
#[derive(Clone)]
pub struct Signer {
    /// `{"iss":"<issuer>"`: the payload's fixed start.
    payload_start: Vec<u8>,
    ttl_secs: u64,
    encoded_header: String,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// `s` as a JSON string. Most values (ids, names, audiences) need no escaping and are copied.
fn json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        serde_json::to_writer(out, s).expect("writing a JSON string to memory cannot fail");
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

impl Signer {
    /// `key` must be at least 32 bytes (checked by config validation).
    pub fn new(issuer: &str, key_id: &str, key: &[u8], ttl_secs: u64) -> Self {
        let header = serde_json::json!({"alg": "HS256", "kid": key_id, "typ": "JWT"});
        let mut payload_start = b"{\"iss\":".to_vec();
        json_string(&mut payload_start, issuer);
        Signer {
            payload_start,
            ttl_secs,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length"),
        }
    }

    /// The assertion payload (JSON) for this session at `now_secs`.
    pub fn payload(
        &self,
        session: &PreparedSession,
        key: &StoreKey,
        audience: &str,
        now_secs: u64,
    ) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.payload_start.len() + session.claims_json.len() + 160);
        out.extend_from_slice(&self.payload_start);
        out.extend_from_slice(b",\"aud\":");
        json_string(&mut out, audience);
        out.extend_from_slice(b",\"sub\":");
        json_string(&mut out, &session.sub);
        out.extend_from_slice(b",\"sid\":");
        json_string(&mut out, key.as_str());
        let _ = write!(
            out,
            ",\"iat\":{now_secs},\"exp\":{}",
            now_secs + self.ttl_secs
        );
        // The claims object without its opening brace; reserved names were left out of it.
        match session.claims_json.strip_prefix('{') {
            Some(rest) if rest != "}" => {
                out.push(b',');
                out.extend_from_slice(rest.as_bytes());
            }
            _ => out.push(b'}'),
        }
        out
    }

    /// The signed compact token for this session at `now_secs`.
    pub fn sign(
        &self,
        session: &PreparedSession,
        key: &StoreKey,
        audience: &str,
        now_secs: u64,
    ) -> String {
        let payload = self.payload(session, key, audience, now_secs);
        let mut token =
            String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 48);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionId, SessionRecord};
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    use serde_json::{json, Value};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn session() -> PreparedSession {
        PreparedSession::new(&record(), &[])
    }

    fn record() -> SessionRecord {
        SessionRecord {
            v: 1,
            sub: "alice".into(),
            claims: json!({"email": "a@x", "roles": ["admin"], "exp": 1, "sub": "mallory"})
                .as_object()
                .unwrap()
                .clone(),
            created_at: 0,
            last_seen: 0,
            idle_deadline: 0,
            absolute_deadline: 0,
            bindings: None,
        }
    }

    fn now() -> u64 {
        crate::session::lifecycle::now_ms() / 1000
    }

    #[test]
    fn a_standard_library_verifies_our_token() {
        let signer = Signer::new("sessiongate", "k1", KEY, 60);
        let key = SessionId::generate().unwrap().store_key();
        let token = signer.sign(&session(), &key, "app", now());
        let header = decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.alg, Algorithm::HS256);
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["app"]);
        v.set_issuer(&["sessiongate"]);
        let data = decode::<Value>(&token, &DecodingKey::from_secret(KEY), &v).unwrap();
        let c = data.claims;
        assert_eq!(c["sub"], "alice", "a stored claim cannot override sub");
        assert_eq!(c["sid"], key.as_str());
        assert_eq!(c["email"], "a@x");
        assert_eq!(c["roles"], json!(["admin"]));
        assert_eq!(c["exp"].as_u64().unwrap(), c["iat"].as_u64().unwrap() + 60);
    }

    #[test]
    fn names_and_values_are_escaped_and_empty_claims_close_the_object() {
        let signer = Signer::new("iss\"x", "k1", KEY, 60);
        let mut r = record();
        r.sub = "al\"ice\\\n".into();
        r.claims.clear();
        let key = SessionId::generate().unwrap().store_key();
        let payload = signer.payload(&PreparedSession::new(&r, &[]), &key, "a\"pp", 100);
        let v: Value = serde_json::from_slice(&payload).expect("valid JSON");
        assert_eq!(v["sub"], "al\"ice\\\n");
        assert_eq!(v["iss"], "iss\"x");
        assert_eq!(v["aud"], "a\"pp");
        assert_eq!(v.as_object().unwrap().len(), 6);
    }

    #[test]
    fn a_wrong_key_or_tampering_fails_verification() {
        let signer = Signer::new("sessiongate", "k1", KEY, 60);
        let key = SessionId::generate().unwrap().store_key();
        let token = signer.sign(&session(), &key, "app", now());
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["app"]);
        let other = DecodingKey::from_secret(b"another-key-another-key-another-key");
        assert!(decode::<Value>(&token, &other, &v).is_err());
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let forged =
            serde_json::to_vec(&json!({"sub": "mallory", "aud": "app", "exp": now() + 60}))
                .unwrap();
        parts[1] = URL_SAFE_NO_PAD.encode(forged);
        assert!(decode::<Value>(&parts.join("."), &DecodingKey::from_secret(KEY), &v).is_err());
    }
}
