//! Verifying what a provider signs: ID tokens (OpenID Connect Core 1.0 §3.1.3.7) and logout
//! tokens (Back-Channel Logout 1.0 §2.6). The signature is checked by `jsonwebtoken` against
//! the provider's published key for the token's `kid`, with the algorithm on the configured
//! allow-list (never `none`, never a shared-secret HMAC); then every claim rule below.

use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::provider::{Provider, ProviderError};

/// The event a logout token must carry.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens older than this are refused (their `jti` is remembered this long).
pub const LOGOUT_TOKEN_MAX_AGE_SECS: u64 = 300;

/// Why a token was refused. The messages go to the log, never to the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a signed JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no key of the provider verifies the token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("the provider's keys could not be read: {0}")]
    Keys(#[from] ProviderError),
    #[error("the token failed verification: {0}")]
    Invalid(String),
    #[error("the token's {0} claim is missing or wrong")]
    Claim(&'static str),
}

/// What is checked beside the signature.
pub struct Expect<'a> {
    pub now_secs: u64,
    /// The nonce the sign-in sent; `None` for an ID token from a refresh, which carries the
    /// original one or none (OpenID Connect Core §12.2).
    pub nonce: Option<&'a str>,
}

fn validation(provider: &Provider, alg: Algorithm) -> Validation {
    let settings = &provider.settings;
    let mut v = Validation::new(alg);
    v.leeway = settings.clock_skew.as_secs();
    v.set_issuer(&[&settings.issuer]);
    let mut audiences = vec![settings.client_id.clone()];
    audiences.extend(settings.audiences.iter().cloned());
    v.set_audience(&audiences);
    v
}

/// The verified claims of `token`, signed by `provider` with an accepted algorithm.
async fn verified(
    provider: &Provider,
    token: &str,
    exp_required: bool,
) -> Result<Map<String, Value>, TokenError> {
    let header = decode_header(token).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => {
            TokenError::Algorithm("unknown or none".into())
        }
        _ => TokenError::Malformed(e.to_string()),
    })?;
    if !provider.algorithms.contains(&header.alg) {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let key = provider
        .key(header.kid.as_deref(), header.alg)
        .await?
        .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
    let mut v = validation(provider, header.alg);
    if exp_required {
        v.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    } else {
        // A logout token's exp is optional (checked by the caller when present).
        v.set_required_spec_claims(&["iss", "aud", "iat"]);
        v.validate_exp = false;
    }
    let data = decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        TokenError::Invalid(match e.kind() {
            K::InvalidAudience => "the aud claim is not this client".into(),
            K::InvalidIssuer => "the iss claim is not the provider's issuer".into(),
            K::ExpiredSignature => "the token has expired (exp)".into(),
            K::ImmatureSignature => "the token is not valid yet (nbf)".into(),
            K::InvalidSignature => "the signature does not verify".into(),
            K::MissingRequiredClaim(c) => format!("the {c} claim is missing"),
            _ => e.to_string(),
        })
    })?;
    Ok(data.claims)
}

fn number(claims: &Map<String, Value>, name: &'static str) -> Result<u64, TokenError> {
    claims
        .get(name)
        .and_then(Value::as_u64)
        .ok_or(TokenError::Claim(name))
}

/// `azp`: when present it must be this client; a token for several audiences must have it.
fn check_azp(claims: &Map<String, Value>, client_id: &str) -> Result<(), TokenError> {
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => Ok(()),
        None if !several => Ok(()),
        _ => Err(TokenError::Claim("azp")),
    }
}

/// An ID token from the token endpoint: signature, `iss`, `aud`/`azp`, `exp`, `iat` (not in
/// the future beyond the skew), `nonce` (the one this sign-in sent, compared in constant
/// time), and a `sub`.
pub async fn id_token(
    provider: &Provider,
    token: &str,
    expect: Expect<'_>,
) -> Result<Map<String, Value>, TokenError> {
    let claims = verified(provider, token, true).await?;
    let skew = provider.settings.clock_skew.as_secs();
    if number(&claims, "iat")? > expect.now_secs + skew {
        return Err(TokenError::Claim("iat"));
    }
    check_azp(&claims, &provider.settings.client_id)?;
    if let Some(expected) = expect.nonce {
        match claims.get("nonce") {
            Some(Value::String(n)) if bool::from(n.as_bytes().ct_eq(expected.as_bytes())) => {}
            _ => return Err(TokenError::Claim("nonce")),
        }
    }
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(TokenError::Claim("sub")),
    }
    Ok(claims)
}

/// A logout token: signature, `iss`, `aud`, `iat` within the skew and at most
/// `LOGOUT_TOKEN_MAX_AGE_SECS` old, `exp` if present, a `jti`, the back-channel logout event,
/// no `nonce`, and a `sub` or a `sid`.
pub async fn logout_token(
    provider: &Provider,
    token: &str,
    now_secs: u64,
) -> Result<Map<String, Value>, TokenError> {
    let header = decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    // Explicit typing (§2.4): a token of another type, say an ID token, is no logout token.
    if let Some(typ) = header.typ.as_deref() {
        let typ = typ.to_ascii_lowercase();
        if !matches!(
            typ.as_str(),
            "logout+jwt" | "application/logout+jwt" | "jwt"
        ) {
            return Err(TokenError::Claim("typ"));
        }
    }
    let claims = verified(provider, token, false).await?;
    let skew = provider.settings.clock_skew.as_secs();
    let iat = number(&claims, "iat")?;
    if iat > now_secs + skew || iat + LOGOUT_TOKEN_MAX_AGE_SECS + skew < now_secs {
        return Err(TokenError::Claim("iat"));
    }
    if let Some(exp) = claims.get("exp") {
        if exp.as_u64().is_none_or(|exp| exp + skew < now_secs) {
            return Err(TokenError::Claim("exp"));
        }
    }
    check_azp(&claims, &provider.settings.client_id)?;
    match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => {}
        _ => return Err(TokenError::Claim("jti")),
    }
    match claims.get("events").and_then(|e| e.get(BACKCHANNEL_EVENT)) {
        Some(Value::Object(_)) => {}
        _ => return Err(TokenError::Claim("events")),
    }
    if claims.contains_key("nonce") {
        return Err(TokenError::Claim("nonce"));
    }
    let text = |name| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if text("sub").is_none() && text("sid").is_none() {
        return Err(TokenError::Claim("sub"));
    }
    Ok(claims)
}
