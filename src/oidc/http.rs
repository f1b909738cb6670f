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
    #[error("the identity provider answered {status}{}{}",
        error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(),
        description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        status: u16,
        error: Option<String>,
        /// The answer's `error_description`, kept only when short and of printable ASCII
        /// (it goes into log lines).
        description: Option<String>,
    },
    #[error("the identity provider's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("the identity provider's answer is not the expected JSON: {0}")]
    Malformed(String),
}

impl HttpError {
    /// The OAuth error code of an error answer (`invalid_grant`, ...).
    pub fn oauth_code(&self) -> Option<&str> {
        match self {
            HttpError::Status { error, .. } => error.as_deref(),
            _ => None,
        }
    }

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

/// The longest `error_description` kept for the log.
const MAX_DESCRIPTION: usize = 160;

/// The OAuth error code and description of an error answer (RFC 6749 §5.2), each kept only if
/// it is of the characters the RFC allows and short: they end up in log lines.
fn oauth_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    let code = field("error")
        .filter(|code| {
            code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        })
        .map(str::to_string);
    // RFC 6749 allows %x20-21 / %x23-5B / %x5D-7E: no quote, no backslash, no control.
    let description = field("error_description")
        .filter(|d| {
            d.len() <= MAX_DESCRIPTION
                && d.bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        })
        .map(str::to_string);
    (code, description)
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
        let (error, description) = oauth_error(&body);
        return Err(HttpError::Status {
            status,
            error,
            description,
        });
    }
    serde_json::from_slice(&body).map_err(|e| HttpError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_and_description_are_kept_when_printable_and_short() {
        let (code, description) =
            oauth_error(br#"{"error":"invalid_grant","error_description":"grant not found"}"#);
        assert_eq!(code.as_deref(), Some("invalid_grant"));
        assert_eq!(description.as_deref(), Some("grant not found"));
        let e = HttpError::Status {
            status: 400,
            error: code,
            description,
        };
        assert_eq!(
            e.to_string(),
            "the identity provider answered 400 (invalid_grant): grant not found"
        );
    }

    #[test]
    fn hostile_error_fields_are_dropped_not_logged() {
        let long = "x".repeat(MAX_DESCRIPTION + 1);
        for body in [
            format!(r#"{{"error":"invalid_grant","error_description":"{long}"}}"#),
            r#"{"error":"invalid_grant","error_description":"line\nbreak"}"#.to_string(),
            r#"{"error":"invalid_grant","error_description":"quote\" in it"}"#.to_string(),
            r#"{"error":"invalid_grant","error_description":"caf\u00e9"}"#.to_string(),
            r#"{"error":"invalid_grant","error_description":42}"#.to_string(),
        ] {
            let (code, description) = oauth_error(body.as_bytes());
            assert_eq!(code.as_deref(), Some("invalid_grant"), "{body}");
            assert_eq!(description, None, "{body}");
        }
        assert_eq!(oauth_error(b"<html>"), (None, None));
        assert_eq!(
            oauth_error(br#"{"error":"bad code\u0000"}"#),
            (None, None),
            "a code outside the allowed characters"
        );
        let e = HttpError::Status {
            status: 502,
            error: None,
            description: None,
        };
        assert_eq!(e.to_string(), "the identity provider answered 502");
    }
}
