//! The identity assertion: a compact JWS (HS256) with `kid`, carrying `iss`, `aud`, `sub`,
//! `sid` (the hash of the session id, never the id), `iat`, `exp` and the session's claims.
//!
//! Signed by hand with `hmac`/`sha2`: the header is fixed per key and encoded once, and the
//! keyed HMAC state is cloned per request instead of re-deriving the key pads.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::session::control::RESERVED_CLAIMS;
use crate::session::{SessionRecord, StoreKey};

/// Signs assertions with one HS256 key.
#[derive(Clone)]
pub struct Signer {
    issuer: String,
    ttl_secs: u64,
    encoded_header: String,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// `key` must be at least 32 bytes (checked by config validation).
    pub fn new(issuer: &str, key_id: &str, key: &[u8], ttl_secs: u64) -> Self {
        let header = serde_json::json!({"alg": "HS256", "kid": key_id, "typ": "JWT"});
        Signer {
            issuer: issuer.to_string(),
            ttl_secs,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length"),
        }
    }

    /// The claims of the assertion for this session at `now_secs`.
    pub fn claims(
        &self,
        record: &SessionRecord,
        key: &StoreKey,
        audience: &str,
        now_secs: u64,
    ) -> Map<String, Value> {
        let mut claims = Map::with_capacity(record.claims.len() + 6);
        for (k, v) in &record.claims {
            if !RESERVED_CLAIMS.contains(&k.as_str()) {
                claims.insert(k.clone(), v.clone());
            }
        }
        claims.insert("iss".into(), Value::from(self.issuer.as_str()));
        claims.insert("aud".into(), Value::from(audience));
        claims.insert("sub".into(), Value::from(record.sub.as_str()));
        claims.insert("sid".into(), Value::from(key.as_str()));
        claims.insert("iat".into(), Value::from(now_secs));
        claims.insert("exp".into(), Value::from(now_secs + self.ttl_secs));
        claims
    }

    /// The signed compact token for `claims`.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let payload = serde_json::to_vec(claims).expect("a JSON map always serialises");
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
    use crate::session::SessionId;
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    use serde_json::json;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

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
        let token = signer.sign(&signer.claims(&record(), &key, "app", now()));
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
    fn a_wrong_key_or_tampering_fails_verification() {
        let signer = Signer::new("sessiongate", "k1", KEY, 60);
        let key = SessionId::generate().unwrap().store_key();
        let token = signer.sign(&signer.claims(&record(), &key, "app", now()));
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
