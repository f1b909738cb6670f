//! Reads the identity assertion sessiongate attaches to each request: decodes the compact
//! JWT's header and claims for display and, when the demo was given the key, checks the HS256
//! signature (constant-time) and the `exp` claim — what a real upstream must do before it
//! trusts the plain `X-Auth-*` headers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A decoded assertion and the outcome of checking it.
#[derive(Debug)]
pub struct Assertion {
    /// The JOSE header (`alg`, `kid`, `typ`).
    pub header: Value,
    /// The claims (`iss`, `aud`, `sub`, `sid`, `iat`, `exp`, and the session's own claims).
    pub claims: Value,
    /// Whether the signature and expiry were checked, and how that went.
    pub verdict: Verdict,
}

/// The outcome of checking an assertion.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The demo has no key, so it only displays the token.
    NotChecked,
    /// Signed with the key and not expired.
    Valid,
    /// Why the token must not be trusted.
    Invalid(String),
}

/// Decodes `token` and, with a `key`, verifies it as of `now` (seconds since the Unix epoch).
///
/// A token that is not a three-part JWT with JSON header and claims is an `Err` explaining why.
pub fn inspect(token: &str, key: Option<&[u8]>, now: u64) -> Result<Assertion, String> {
    let mut parts = token.trim().split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWT (expected three dot-separated parts)".into());
    };
    let header = decode_json(header_b64).map_err(|e| format!("header: {e}"))?;
    let claims = decode_json(claims_b64).map_err(|e| format!("claims: {e}"))?;
    let verdict = match key {
        None => Verdict::NotChecked,
        Some(key) => {
            let signing_input = &token.trim()[..header_b64.len() + 1 + claims_b64.len()];
            verify(signing_input, signature_b64, &header, &claims, key, now)
        }
    };
    Ok(Assertion {
        header,
        claims,
        verdict,
    })
}

fn decode_json(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("not base64url ({e})"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON ({e})"))
}

fn verify(
    signing_input: &str,
    signature_b64: &str,
    header: &Value,
    claims: &Value,
    key: &[u8],
    now: u64,
) -> Verdict {
    // The algorithm is fixed by the key we hold, never chosen by the token ("alg": "none").
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Verdict::Invalid("alg is not HS256".into());
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return Verdict::Invalid("signature is not base64url".into());
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Verdict::Invalid("the verification key is unusable".into());
    };
    mac.update(signing_input.as_bytes());
    let expected = mac.finalize().into_bytes();
    if !bool::from(expected[..].ct_eq(&signature)) {
        return Verdict::Invalid("signature does not match the key".into());
    }
    match claims.get("exp").and_then(Value::as_f64) {
        None => Verdict::Invalid("no numeric exp claim".into()),
        Some(exp) if now as f64 >= exp => {
            Verdict::Invalid(format!("expired {} s ago", (now as f64 - exp) as u64))
        }
        Some(_) => Verdict::Valid,
    }
}
