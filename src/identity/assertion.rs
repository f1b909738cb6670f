//! The identity assertion: a compact JWS (EdDSA, ES256 or HS256) with `kid`, carrying `iss`,
//! `aud`, `sub`, `sid` (the hash of the session id, never the id), `iat`, `exp`, a `jti` when
//! configured, and the session's claims (docs/protocol.md).
//!
//! The token is assembled by hand and only the signature is computed by a library: `ring` for
//! EdDSA and ES256, `hmac`/`sha2` for HS256 (the keyed HMAC state is cloned per request instead
//! of re-deriving the key pads). The header is fixed per key and encoded once, and the
//! session's claims arrive already serialised (see `PreparedSession`), so the payload is
//! written in one pass with no JSON tree built per request. A per-thread memo hands out the
//! token signed earlier in the same second, which keeps even the asymmetric signatures off
//! most requests.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::HeaderValue;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair};
use sha2::Sha256;

use crate::config::model::{KeyMaterial, SigningKey};
use crate::session::{PreparedSession, StoreKey};

/// Gives every signer its own id, so a memo never serves a token of another configuration.
static SIGNERS: AtomicU64 = AtomicU64::new(1);

/// Slots of the per-thread memo of signed assertions.
const MEMO_SLOTS: usize = 64;

/// A token signed earlier in the same second for the same session version, audience and
/// lifetime, by the same signer: the very bytes signing again would give (for ES256, whose
/// signatures are randomised, a token just as valid).
struct Memo {
    signer: u64,
    second: u64,
    version: u64,
    ttl: u64,
    key: [u8; crate::session::id::ENCODED_LEN],
    audience: String,
    token: HeaderValue,
}

thread_local! {
    static MEMO: RefCell<Vec<Option<Memo>>> = RefCell::new((0..MEMO_SLOTS).map(|_| None).collect());
}

/// The signing half of the key the signer signs with.
#[derive(Clone)]
enum SignatureKey {
    Hmac(Hmac<Sha256>),
    Ed25519(Arc<Ed25519KeyPair>),
    /// ECDSA draws a fresh nonce for every signature.
    EcdsaP256(Arc<EcdsaKeyPair>, SystemRandom),
}

/// A signature: 32 bytes for HS256, 64 for EdDSA and ES256.
struct Signature {
    bytes: [u8; 64],
    len: usize,
}

impl Signature {
    fn of(signature: &[u8]) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..signature.len()].copy_from_slice(signature);
        Signature {
            bytes,
            len: signature.len(),
        }
    }
}

impl SignatureKey {
    /// The signature of the JWS signing input (`header.payload`).
    fn sign(&self, signing_input: &[u8]) -> Signature {
        match self {
            SignatureKey::Hmac(mac) => {
                let mut mac = mac.clone();
                mac.update(signing_input);
                Signature::of(&mac.finalize().into_bytes())
            }
            SignatureKey::Ed25519(key) => Signature::of(key.sign(signing_input).as_ref()),
            SignatureKey::EcdsaP256(key, rng) => Signature::of(
                key.sign(rng, signing_input)
                    .expect("the OS random source works")
                    .as_ref(),
            ),
        }
    }
}

/// Signs assertions with the first key of a configuration.
#[derive(Clone)]
pub struct Signer {
    id: u64,
    /// `{"iss":"<issuer>"`: the payload's fixed start.
    payload_start: Vec<u8>,
    ttl_secs: u64,
    encoded_header: String,
    key: SignatureKey,
    /// Whether every token gets a fresh random `jti` (and so is never memoised).
    jti: bool,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("ttl_secs", &self.ttl_secs)
            .field("jti", &self.jti)
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
    /// Signs with `key` (its `kid` and `alg` in every header); `ttl_secs` is the lifetime of
    /// the assertions of routes that set none of their own.
    pub fn new(issuer: &str, key: &SigningKey, ttl_secs: u64) -> Self {
        let header = serde_json::json!({
            "alg": key.algorithm().as_str(),
            "kid": key.id,
            "typ": "JWT",
        });
        let mut payload_start = b"{\"iss\":".to_vec();
        json_string(&mut payload_start, issuer);
        Signer {
            id: SIGNERS.fetch_add(1, Ordering::Relaxed),
            payload_start,
            ttl_secs,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            key: match &key.material {
                KeyMaterial::Hmac(secret) => SignatureKey::Hmac(
                    Hmac::<Sha256>::new_from_slice(&secret.0)
                        .expect("HMAC accepts keys of any length"),
                ),
                KeyMaterial::Ed25519(pair) => SignatureKey::Ed25519(pair.clone()),
                KeyMaterial::EcdsaP256(pair) => {
                    SignatureKey::EcdsaP256(pair.clone(), SystemRandom::new())
                }
            },
            jti: false,
        }
    }

    /// Every token with a fresh random `jti`: unique per request, so each one is signed anew.
    pub fn with_jti(mut self, on: bool) -> Self {
        self.jti = on;
        self
    }

    /// The lifetime of the assertions of routes that set none of their own.
    pub fn default_ttl(&self) -> u64 {
        self.ttl_secs
    }

    /// The assertion payload (JSON) for this session at `now_secs`, valid for `ttl_secs`.
    pub fn payload(
        &self,
        session: &PreparedSession,
        key: &StoreKey,
        audience: &str,
        ttl_secs: u64,
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
        let _ = write!(out, ",\"iat\":{now_secs},\"exp\":{}", now_secs + ttl_secs);
        if self.jti {
            let mut id = [0u8; 16];
            getrandom::fill(&mut id).expect("the OS random source works");
            out.extend_from_slice(b",\"jti\":\"");
            let mut encoded = [0u8; 22];
            let n = URL_SAFE_NO_PAD
                .encode_slice(id, &mut encoded)
                .expect("16 bytes are 22 base64url characters");
            out.extend_from_slice(&encoded[..n]);
            out.push(b'"');
        }
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

    /// The token for this session at `now_secs`, valid for `ttl_secs`, as a header value.
    /// The tokens of a second are all alike, so each thread keeps the last one signed per
    /// slot and hands it out again for a request of the same session version, audience,
    /// lifetime and second (the requests of one page load, say) instead of signing anew. With
    /// `jti` every token is unique and signed anew.
    pub fn header_value(
        &self,
        session: &PreparedSession,
        key: &StoreKey,
        audience: &str,
        ttl_secs: u64,
        now_secs: u64,
    ) -> HeaderValue {
        let sign = || {
            HeaderValue::from_maybe_shared(Bytes::from(
                self.sign(session, key, audience, ttl_secs, now_secs),
            ))
            .expect("base64url and dots are a valid header value")
        };
        if self.jti {
            return sign();
        }
        let Ok(key_bytes) =
            <[u8; crate::session::id::ENCODED_LEN]>::try_from(key.as_str().as_bytes())
        else {
            return sign();
        };
        let slot = usize::from(key.spread()) % MEMO_SLOTS;
        MEMO.with_borrow_mut(|memo| {
            if let Some(m) = &memo[slot] {
                if m.signer == self.id
                    && m.second == now_secs
                    && m.version == session.v
                    && m.ttl == ttl_secs
                    && m.key == key_bytes
                    && m.audience == audience
                {
                    return m.token.clone();
                }
            }
            let token = sign();
            match &mut memo[slot] {
                Some(m) => {
                    m.signer = self.id;
                    m.second = now_secs;
                    m.version = session.v;
                    m.ttl = ttl_secs;
                    m.key = key_bytes;
                    if m.audience != audience {
                        m.audience.clear();
                        m.audience.push_str(audience);
                    }
                    m.token = token.clone();
                }
                empty => {
                    *empty = Some(Memo {
                        signer: self.id,
                        second: now_secs,
                        version: session.v,
                        ttl: ttl_secs,
                        key: key_bytes,
                        audience: audience.to_string(),
                        token: token.clone(),
                    })
                }
            }
            token
        })
    }

    /// The signed compact token for this session at `now_secs`, valid for `ttl_secs`.
    pub fn sign(
        &self,
        session: &PreparedSession,
        key: &StoreKey,
        audience: &str,
        ttl_secs: u64,
        now_secs: u64,
    ) -> String {
        let payload = self.payload(session, key, audience, ttl_secs, now_secs);
        // Room for the header, the payload and a 64-byte signature in base64url.
        let mut token =
            String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 96);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature.bytes[..signature.len], &mut token);
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

    fn hs256(issuer: &str, kid: &str, key: &[u8]) -> Signer {
        Signer::new(issuer, &SigningKey::hs256(kid, key).unwrap(), 60)
    }

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
            deadlines: crate::session::Deadlines {
                created_at: 0,
                last_seen: 0,
                idle: 0,
                absolute: 0,
            },
            provider: None,
        }
    }

    fn now() -> u64 {
        crate::session::lifecycle::now_ms() / 1000
    }

    #[test]
    fn a_standard_library_verifies_our_token() {
        let signer = hs256("sessiongate", "k1", KEY);
        let key = SessionId::generate().unwrap().store_key();
        let token = signer.sign(&session(), &key, "app", 60, now());
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
        let signer = hs256("iss\"x", "k1", KEY);
        let mut r = record();
        r.sub = "al\"ice\\\n".into();
        r.claims.clear();
        let key = SessionId::generate().unwrap().store_key();
        let payload = signer.payload(&PreparedSession::new(&r, &[]), &key, "a\"pp", 60, 100);
        let v: Value = serde_json::from_slice(&payload).expect("valid JSON");
        assert_eq!(v["sub"], "al\"ice\\\n");
        assert_eq!(v["iss"], "iss\"x");
        assert_eq!(v["aud"], "a\"pp");
        assert_eq!(v.as_object().unwrap().len(), 6);
    }

    fn claims_of(token: &HeaderValue, key: &[u8], audience: &str) -> Value {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[audience]);
        v.validate_exp = false;
        decode::<Value>(token.to_str().unwrap(), &DecodingKey::from_secret(key), &v)
            .unwrap()
            .claims
    }

    #[test]
    fn a_memoised_token_is_the_one_signing_again_would_give() {
        let signer = hs256("sessiongate", "k1", KEY);
        let key = SessionId::generate().unwrap().store_key();
        let first = signer.header_value(&session(), &key, "app", 60, 1_000);
        assert_eq!(
            first,
            signer.header_value(&session(), &key, "app", 60, 1_000)
        );
        assert_eq!(
            first.as_bytes(),
            signer.sign(&session(), &key, "app", 60, 1_000).as_bytes()
        );
        assert_eq!(claims_of(&first, KEY, "app")["sid"], key.as_str());
    }

    #[test]
    fn a_memoised_token_is_never_served_for_anything_else() {
        let signer = hs256("sessiongate", "k1", KEY);
        let key = SessionId::generate().unwrap().store_key();
        let base = signer.header_value(&session(), &key, "app", 60, 1_000);

        // Another second.
        let later = signer.header_value(&session(), &key, "app", 60, 1_001);
        assert_eq!(claims_of(&later, KEY, "app")["iat"], 1_001);
        // Another audience.
        let other = signer.header_value(&session(), &key, "admin", 60, 1_001);
        assert_eq!(claims_of(&other, KEY, "admin")["aud"], "admin");
        // Another version of the session (an update).
        let mut updated = record();
        updated.v = 2;
        updated.claims.insert("email".into(), json!("new@x"));
        let updated = PreparedSession::new(&updated, &[]);
        let token = signer.header_value(&updated, &key, "admin", 60, 1_001);
        assert_eq!(claims_of(&token, KEY, "admin")["email"], "new@x");
        // Another configuration (a reload), even with the same settings.
        let reloaded = hs256("sessiongate", "k2", b"another-key-another-key-another-key");
        let token = reloaded.header_value(&updated, &key, "admin", 60, 1_001);
        assert_eq!(
            decode_header(token.to_str().unwrap())
                .unwrap()
                .kid
                .as_deref(),
            Some("k2")
        );
        assert_ne!(token, base);

        // Many sessions share the slots: each only ever gets its own token.
        let keys: Vec<StoreKey> = (0..500)
            .map(|_| SessionId::generate().unwrap().store_key())
            .collect();
        for round in 0..2 {
            for k in &keys {
                let token = signer.header_value(&session(), k, "app", 60, 2_000);
                assert_eq!(
                    claims_of(&token, KEY, "app")["sid"],
                    k.as_str(),
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_key_or_tampering_fails_verification() {
        let signer = hs256("sessiongate", "k1", KEY);
        let key = SessionId::generate().unwrap().store_key();
        let token = signer.sign(&session(), &key, "app", 60, now());
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

    fn asymmetric(algorithm: crate::config::model::SigningAlgorithm) -> SigningKey {
        use crate::config::model::SigningAlgorithm;
        use ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = SystemRandom::new();
        let der = match algorithm {
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng).unwrap(),
            _ => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap(),
        };
        SigningKey::from_pkcs8("a1", algorithm, der.as_ref()).unwrap()
    }

    /// Verifies `token` with the key's published JWK, as an app holding the JWKS would.
    fn verify_with_jwk(token: &str, key: &SigningKey, algorithm: Algorithm) -> Value {
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(key.public_jwk().unwrap()).unwrap();
        let mut v = Validation::new(algorithm);
        v.set_audience(&["app"]);
        v.set_issuer(&["sessiongate"]);
        decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
            .expect("verifies with the published key")
            .claims
    }

    #[test]
    fn eddsa_and_es256_tokens_verify_with_the_published_key_only() {
        use crate::config::model::SigningAlgorithm;
        for (algorithm, alg) in [
            (SigningAlgorithm::EdDSA, Algorithm::EdDSA),
            (SigningAlgorithm::ES256, Algorithm::ES256),
        ] {
            let signing = asymmetric(algorithm);
            let signer = Signer::new("sessiongate", &signing, 60);
            let key = SessionId::generate().unwrap().store_key();
            let token = signer.sign(&session(), &key, "app", 60, now());
            let header = decode_header(&token).unwrap();
            assert_eq!((header.alg, header.kid.as_deref()), (alg, Some("a1")));
            let claims = verify_with_jwk(&token, &signing, alg);
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["sid"], key.as_str());
            assert!(claims.get("jti").is_none(), "no jti unless configured");

            let other = asymmetric(algorithm);
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(other.public_jwk().unwrap()).unwrap();
            let mut v = Validation::new(alg);
            v.set_audience(&["app"]);
            assert!(decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &v).is_err());
            // The memo serves a token that verifies as well.
            let memoised = signer.header_value(&session(), &key, "app", 60, now());
            verify_with_jwk(memoised.to_str().unwrap(), &signing, alg);
        }
    }

    #[test]
    fn jti_makes_every_token_unique() {
        let signer = hs256("sessiongate", "k1", KEY).with_jti(true);
        let key = SessionId::generate().unwrap().store_key();
        let a = signer.header_value(&session(), &key, "app", 60, 1_000);
        let b = signer.header_value(&session(), &key, "app", 60, 1_000);
        assert_ne!(a, b, "the memo is bypassed");
        let (ja, jb) = (
            &claims_of(&a, KEY, "app")["jti"],
            &claims_of(&b, KEY, "app")["jti"],
        );
        assert_eq!(ja.as_str().unwrap().len(), 22);
        assert_ne!(ja, jb);
    }

    #[test]
    fn a_route_lifetime_is_never_served_from_another_routes_memo() {
        let signer = hs256("sessiongate", "k1", KEY);
        let key = SessionId::generate().unwrap().store_key();
        let short = signer.header_value(&session(), &key, "app", 10, 1_000);
        let long = signer.header_value(&session(), &key, "app", 600, 1_000);
        assert_eq!(claims_of(&short, KEY, "app")["exp"], 1_010);
        assert_eq!(claims_of(&long, KEY, "app")["exp"], 1_600);
    }
}
