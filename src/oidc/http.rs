//! Calls to an identity provider: every answer read under the provider's deadline (set on its
//! client) and bounded in size, so a hostile or broken provider can neither hang a request nor
//! fill the proxy's memory.

use serde::de::DeserializeOwned;

/// The most bytes of an answer read from a provider (discovery documents and key sets are a
/// few KiB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the identity provider did not answer in time")]
    Timeout,
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider answered {status}{}", error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Status { status: u16, error: Option<String> },
    #[error("the identity provider's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("the identity provider's answer is not the expected JSON: {0}")]
    Malformed(String),
}

impl HttpError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            HttpError::Timeout
        } else {
            // Without the URL: a token endpoint's query could hold nothing secret, but keep
            // log lines to the cause.
            HttpError::Unreachable(e.without_url().to_string())
        }
    }
}

/// The OAuth error code of an error answer, if it has one of printable ASCII.
fn oauth_error(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?;
    (code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
    .then(|| code.to_string())
}

/// Sends `request` and reads a JSON answer of a 2xx status.
pub async fn fetch_json<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, HttpError> {
    let mut response = request
        .header("accept", "application/json")
        .send()
        .await
        .map_err(HttpError::from_reqwest)?;
    let status = response.status().as_u16();
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(HttpError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(HttpError::from_reqwest)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&status) {
        return Err(HttpError::Status {
            status,
            error: oauth_error(&body),
        });
    }
    serde_json::from_slice(&body).map_err(|e| HttpError::Malformed(e.to_string()))
}
