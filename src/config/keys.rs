//! The assertion's signing keys as the model holds them: an HS256 secret, or an EdDSA
//! (Ed25519) or ES256 (P-256) private key read from a PKCS#8 PEM file and parsed by `ring`.
//! A key is parsed once, at load: a file that holds an RSA key, a key of another algorithm or
//! curve, or anything else that is not the key its algorithm names is refused here with a
//! sentence the validation puts under the key's path.

use std::fmt;
use std::sync::Arc;

use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::Deserialize;

use super::model::SecretBytes;

/// HMAC keys shorter than this are refused.
pub const MIN_HMAC_KEY_BYTES: usize = super::validate::defaults::MIN_KEY_BYTES;

/// The JWS `alg` a key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SigningAlgorithm {
    /// HMAC-SHA256 with a shared secret: every app that verifies can also mint.
    HS256,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256, the signature as `r || s` (RFC 7518 §3.4).
    ES256,
}

impl SigningAlgorithm {
    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::HS256 => "HS256",
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
        }
    }

    /// How the algorithm is named to an operator.
    fn described(self) -> &'static str {
        match self {
            SigningAlgorithm::HS256 => "an HS256 secret",
            SigningAlgorithm::EdDSA => "an EdDSA (Ed25519) key",
            SigningAlgorithm::ES256 => "an ES256 (P-256) key",
        }
    }
}

/// The secret half of a signing key.
#[derive(Clone)]
pub enum KeyMaterial {
    Hmac(SecretBytes),
    Ed25519(Arc<Ed25519KeyPair>),
    EcdsaP256(Arc<EcdsaKeyPair>),
}

/// One `[[identity.keys]]` entry, parsed.
#[derive(Clone)]
pub struct SigningKey {
    /// The `kid` of the tokens it signs and of its JWKS entry.
    pub id: String,
    pub material: KeyMaterial,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

/// Two keys are the same when their id, algorithm and key are: for the asymmetric ones the
/// public key determines the private one.
impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && match (&self.material, &other.material) {
                (KeyMaterial::Hmac(a), KeyMaterial::Hmac(b)) => a == b,
                (KeyMaterial::Ed25519(a), KeyMaterial::Ed25519(b)) => {
                    a.public_key().as_ref() == b.public_key().as_ref()
                }
                (KeyMaterial::EcdsaP256(a), KeyMaterial::EcdsaP256(b)) => {
                    a.public_key().as_ref() == b.public_key().as_ref()
                }
                _ => false,
            }
    }
}

/// The DER object identifiers that tell what a PKCS#8 file holds when it is not what its
/// algorithm names (tag, length and value, as they appear in the file).
const RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const RSA_PSS_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
];
const EC_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What a PKCS#8 document that did not parse as the wanted algorithm holds, in words.
fn what_it_holds(der: &[u8]) -> &'static str {
    if contains(der, RSA_OID) || contains(der, RSA_PSS_OID) {
        "an RSA key; sessiongate signs with EdDSA (Ed25519) or ES256 (P-256) keys"
    } else if contains(der, EC_OID) && contains(der, P256_OID) {
        "an ES256 (P-256) key"
    } else if contains(der, EC_OID) {
        "an elliptic-curve key on another curve than P-256 (ES256 needs P-256)"
    } else if contains(der, ED25519_OID) {
        "an EdDSA (Ed25519) key"
    } else {
        "no private key sessiongate can use"
    }
}

impl SigningKey {
    /// An HS256 key; `secret` must be at least `MIN_HMAC_KEY_BYTES` long.
    pub fn hs256(id: &str, secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_HMAC_KEY_BYTES {
            return Err(format!(
                "the signing key has {} bytes; HS256 keys need at least {MIN_HMAC_KEY_BYTES}",
                secret.len()
            ));
        }
        Ok(SigningKey {
            id: id.to_string(),
            material: KeyMaterial::Hmac(SecretBytes(secret.to_vec())),
        })
    }

    /// An EdDSA or ES256 key from a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(id: &str, algorithm: SigningAlgorithm, pem: &[u8]) -> Result<Self, String> {
        let der = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der,
            Ok(PrivateKeyDer::Pkcs1(_)) => {
                return Err(format!(
                    "holds an RSA key (BEGIN RSA PRIVATE KEY); {} needs {}",
                    algorithm.as_str(),
                    algorithm.described()
                ))
            }
            Ok(PrivateKeyDer::Sec1(_)) => {
                return Err(
                    "holds a SEC1 EC key (BEGIN EC PRIVATE KEY); convert it to PKCS#8 with \
                     `openssl pkcs8 -topk8 -nocrypt -in key.pem`"
                        .to_string(),
                )
            }
            Ok(_) => return Err("holds no PKCS#8 private key".to_string()),
            Err(e) => {
                return Err(format!(
                    "holds no PEM private key ({e}); expected -----BEGIN PRIVATE KEY----- (PKCS#8)"
                ))
            }
        };
        Self::from_pkcs8(id, algorithm, der.secret_pkcs8_der())
    }

    /// An EdDSA or ES256 key from a PKCS#8 DER document.
    pub fn from_pkcs8(id: &str, algorithm: SigningAlgorithm, der: &[u8]) -> Result<Self, String> {
        let material = match algorithm {
            SigningAlgorithm::HS256 => {
                return Err("HS256 keys are secrets, not PEM key files".to_string())
            }
            // "maybe unchecked": PKCS#8 v1 files (what OpenSSL writes) carry no public key to
            // check the private one against.
            SigningAlgorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(|k| KeyMaterial::Ed25519(Arc::new(k))),
            SigningAlgorithm::ES256 => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &ring::rand::SystemRandom::new(),
            )
            .map(|k| KeyMaterial::EcdsaP256(Arc::new(k))),
        };
        let material = material.map_err(|e| {
            let holds = what_it_holds(der);
            if holds == algorithm.described() {
                format!("is not a valid {holds}: {e}")
            } else {
                format!(
                    "holds {holds}, not {} as algorithm = \"{}\" says",
                    algorithm.described(),
                    algorithm.as_str()
                )
            }
        })?;
        Ok(SigningKey {
            id: id.to_string(),
            material,
        })
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.material {
            KeyMaterial::Hmac(_) => SigningAlgorithm::HS256,
            KeyMaterial::Ed25519(_) => SigningAlgorithm::EdDSA,
            KeyMaterial::EcdsaP256(_) => SigningAlgorithm::ES256,
        }
    }

    /// The public key as an RFC 7517 JSON Web Key (with `kid`, `alg` and `use`), or `None`
    /// for a shared secret, which is never published.
    pub fn public_jwk(&self) -> Option<serde_json::Value> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let (id, alg) = (self.id.as_str(), self.algorithm().as_str());
        match &self.material {
            KeyMaterial::Hmac(_) => None,
            KeyMaterial::Ed25519(k) => Some(serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(k.public_key().as_ref()),
                "kid": id,
                "alg": alg,
                "use": "sig",
            })),
            KeyMaterial::EcdsaP256(k) => {
                // The uncompressed point: 0x04, then x and y of 32 bytes each.
                let point = k.public_key().as_ref();
                let (x, y) = point.get(1..)?.split_at(32);
                Some(serde_json::json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                    "kid": id,
                    "alg": alg,
                    "use": "sig",
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn pem(der: &[u8], label: &str) -> Vec<u8> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
        .into_bytes()
    }

    fn ed25519_pem() -> Vec<u8> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        pem(doc.as_ref(), "PRIVATE KEY")
    }

    fn p256_pem() -> Vec<u8> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        pem(doc.as_ref(), "PRIVATE KEY")
    }

    #[test]
    fn keys_parse_as_their_algorithm_and_publish_their_public_half() {
        let ed = SigningKey::from_pem("a", SigningAlgorithm::EdDSA, &ed25519_pem()).unwrap();
        let jwk = ed.public_jwk().unwrap();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        let ec = SigningKey::from_pem("b", SigningAlgorithm::ES256, &p256_pem()).unwrap();
        let jwk = ec.public_jwk().unwrap();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert_eq!(jwk["y"].as_str().unwrap().len(), 43);
        assert_eq!(jwk["alg"], "ES256");
        let hs = SigningKey::hs256("c", &[7; 32]).unwrap();
        assert!(
            hs.public_jwk().is_none(),
            "a shared secret is never published"
        );
    }

    #[test]
    fn a_key_of_another_algorithm_is_named_for_what_it_is() {
        let e = SigningKey::from_pem("a", SigningAlgorithm::ES256, &ed25519_pem()).unwrap_err();
        assert!(
            e.contains("holds an EdDSA (Ed25519) key, not an ES256"),
            "{e}"
        );
        let e = SigningKey::from_pem("a", SigningAlgorithm::EdDSA, &p256_pem()).unwrap_err();
        assert!(
            e.contains("holds an ES256 (P-256) key, not an EdDSA"),
            "{e}"
        );
        let e = SigningKey::from_pem("a", SigningAlgorithm::EdDSA, b"not a key").unwrap_err();
        assert!(e.contains("holds no PEM private key"), "{e}");
        let e = SigningKey::hs256("a", &[7; 31]).unwrap_err();
        assert!(e.contains("at least 32"), "{e}");
    }
}
