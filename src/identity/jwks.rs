//! The JSON Web Key Set (RFC 7517) of a configuration: the public keys of its EdDSA and ES256
//! signing keys, in configuration order, each with `kid`, `alg` and `use: "sig"`. HS256
//! secrets are never in it. Apps verify assertions with it and need no secret of sessiongate's.
//!
//! The body is built once per configuration (at load and at every reload), its `ETag` is a
//! hash of the body, and the answer to a request is a pure function of the method and
//! `If-None-Match`, so the public and the admin listeners answer alike.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::Method;
use sha2::{Digest, Sha256};

use crate::config::model::IdentitySettings;

/// The key set of one configuration, ready to serve.
#[derive(Debug, Clone)]
pub struct Jwks {
    path: String,
    body: Bytes,
    etag: String,
    cache_control: String,
}

/// What a request for the key set gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksReply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// The key set (200, also for HEAD, whose body the listener leaves out), or nothing.
    pub body: Bytes,
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2).
fn none_match(header: &[u8], etag: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    let strong = etag.as_bytes();
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == strong)
}

impl Jwks {
    pub fn new(identity: &IdentitySettings) -> Self {
        let keys: Vec<serde_json::Value> = identity
            .keys
            .iter()
            .filter_map(|k| k.public_jwk())
            .collect();
        let mut body = serde_json::json!({ "keys": keys }).to_string();
        body.push('\n');
        let digest = Sha256::digest(body.as_bytes());
        Jwks {
            path: identity.jwks_path.clone(),
            etag: format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16])),
            cache_control: format!("public, max-age={}", identity.jwks_max_age.as_secs()),
            body: Bytes::from(body),
        }
    }

    /// Where the key set is served.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The key set as served.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The answer to a `method` request carrying `if_none_match`: 200 with the set, 304 when
    /// the client holds it already, 405 to anything but GET and HEAD.
    pub fn answer(&self, method: &Method, if_none_match: Option<&[u8]>) -> JwksReply {
        if method != Method::GET && method != Method::HEAD {
            return JwksReply {
                status: 405,
                headers: vec![
                    ("allow", "GET, HEAD".into()),
                    ("content-type", "text/plain; charset=utf-8".into()),
                    ("cache-control", "no-store".into()),
                ],
                body: Bytes::from_static(b"Method not allowed.\n"),
            };
        }
        let mut headers = vec![
            ("etag", self.etag.clone()),
            ("cache-control", self.cache_control.clone()),
        ];
        if if_none_match.is_some_and(|h| none_match(h, &self.etag)) {
            return JwksReply {
                status: 304,
                headers,
                body: Bytes::new(),
            };
        }
        headers.push(("content-type", "application/jwk-set+json".into()));
        JwksReply {
            status: 200,
            headers,
            body: self.body.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{SigningAlgorithm, SigningKey};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use std::time::Duration;

    fn identity(keys: Vec<SigningKey>) -> IdentitySettings {
        IdentitySettings {
            issuer: "sessiongate".into(),
            assertion_header: http::HeaderName::from_static("x-sessiongate-assertion"),
            assertion_ttl: Duration::from_secs(60),
            keys,
            jwks_path: "/.well-known/sessiongate/jwks.json".into(),
            jwks_max_age: Duration::from_secs(60),
            jti: false,
            headers: Vec::new(),
        }
    }

    fn keys() -> Vec<SigningKey> {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        vec![
            SigningKey::from_pkcs8("ed", SigningAlgorithm::EdDSA, ed.as_ref()).unwrap(),
            SigningKey::hs256("shared", &[1; 32]).unwrap(),
            SigningKey::from_pkcs8("ec", SigningAlgorithm::ES256, ec.as_ref()).unwrap(),
        ]
    }

    #[test]
    fn the_set_lists_the_public_keys_in_order_and_never_a_secret() {
        let jwks = Jwks::new(&identity(keys()));
        let reply = jwks.answer(&Method::GET, None);
        assert_eq!(reply.status, 200);
        let set: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let keys = set["keys"].as_array().unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["ed", "ec"]);
        for k in keys {
            assert_eq!(k["use"], "sig");
            assert!(k.get("d").is_none(), "no private part");
        }
        assert!(!String::from_utf8_lossy(&reply.body).contains("shared"));
        let header = |name| {
            reply
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(header("cache-control"), "public, max-age=60");
        assert_eq!(header("content-type"), "application/jwk-set+json");
    }

    #[test]
    fn a_client_holding_the_set_gets_304_and_other_methods_405() {
        let jwks = Jwks::new(&identity(keys()));
        let etag = jwks.etag.clone();
        for held in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"x\", {etag}"),
            "*".into(),
        ] {
            let reply = jwks.answer(&Method::GET, Some(held.as_bytes()));
            assert_eq!(reply.status, 304, "{held}");
            assert!(reply.body.is_empty());
        }
        assert_eq!(jwks.answer(&Method::GET, Some(b"\"stale\"")).status, 200);
        assert_eq!(jwks.answer(&Method::HEAD, None).status, 200);
        assert_eq!(jwks.answer(&Method::POST, None).status, 405);
        // Another set, another tag.
        assert_ne!(Jwks::new(&identity(keys())).etag, etag);
    }
}
