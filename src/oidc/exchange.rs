//! The token endpoint (RFC 6749 §4.1.3 and §6) and the userinfo endpoint: the code redeemed
//! with the PKCE verifier, refresh tokens redeemed, the client authenticated with
//! `client_secret_basic` (id and secret form-encoded before base64, §2.3.1) or
//! `client_secret_post`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::http::{fetch_json, HttpError};
use super::provider::Provider;
use crate::config::model::ClientAuth;

/// A token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub token_type: Option<String>,
}

fn form_encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn token_request(
    provider: &Provider,
    endpoint: &str,
    mut params: Vec<(&str, &str)>,
) -> Result<Tokens, HttpError> {
    let settings = &provider.settings;
    let secret = String::from_utf8_lossy(&settings.client_secret.0).into_owned();
    let mut request = provider.client.post(endpoint);
    match settings.client_auth {
        ClientAuth::SecretBasic => {
            let credentials = format!(
                "{}:{}",
                form_encoded(&settings.client_id),
                form_encoded(&secret)
            );
            request = request.header(
                "authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        ClientAuth::SecretPost => {
            params.push(("client_id", &settings.client_id));
            params.push(("client_secret", &secret));
            return fetch_json(request.form(&params)).await;
        }
    }
    fetch_json(request.form(&params)).await
}

/// Redeems an authorization code.
pub async fn redeem_code(
    provider: &Provider,
    token_endpoint: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Tokens, HttpError> {
    token_request(
        provider,
        token_endpoint,
        vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Redeems a refresh token.
pub async fn refresh(
    provider: &Provider,
    token_endpoint: &str,
    refresh_token: &str,
) -> Result<Tokens, HttpError> {
    token_request(
        provider,
        token_endpoint,
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// The userinfo endpoint's claims for `access_token` (JSON answers only; a signed userinfo
/// answer is not asked for).
pub async fn userinfo(
    provider: &Provider,
    endpoint: &str,
    access_token: &str,
) -> Result<Map<String, Value>, HttpError> {
    fetch_json(provider.client.get(endpoint).bearer_auth(access_token)).await
}
