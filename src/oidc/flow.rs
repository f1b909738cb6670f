//! A sign-in in progress: what the proxy remembers between sending the browser to the provider
//! and its return (the flow), where it keeps it (in the store, under the hash of the `state`,
//! single use, for `flow_timeout`), and how the browser that started it is recognised: a
//! cookie of its own per flow (named after the flow, so parallel tabs never overwrite each
//! other's), whose random value the flow holds only as a hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The flow cookies' names start with this (`__Secure-` is put before it over HTTPS).
pub const FLOW_COOKIE: &str = "sg_flow_";
/// How many characters of the state name a flow's cookie.
const COOKIE_STATE_CHARS: usize = 16;
/// The longest return path kept (a longer one returns to `/`).
const MAX_RETURN_BYTES: usize = 2048;

/// 32 random bytes, base64url: a state, a nonce, a PKCE verifier (43 characters of the
/// verifier alphabet, RFC 7636 §4.1) or a browser binding.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// base64url(SHA-256(`value`)): the PKCE S256 challenge of a verifier.
pub fn s256(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Hex SHA-256, for store keys made of values the store must not hold in the clear.
pub fn hashed(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What the proxy keeps of a started sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The `[[identity_provider]]` name.
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    /// The redirect URI sent, which the code exchange must repeat.
    pub redirect_uri: String,
    /// Where the browser goes once signed in: a path on this origin.
    pub return_to: String,
    /// SHA-256 of the flow cookie's value.
    pub binding: String,
    /// Whether this flow restarts one whose code the provider refused (it is not restarted
    /// again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted: bool,
}

impl Flow {
    /// Whether `cookie_value` is the value of this flow's cookie.
    pub fn bound_to(&self, cookie_value: &str) -> bool {
        bool::from(
            hashed(cookie_value)
                .as_bytes()
                .ct_eq(self.binding.as_bytes()),
        )
    }
}

/// The name of the cookie of the flow with `state`, over HTTPS with the `__Secure-` prefix
/// (not `__Host-`, which would need `Path=/` and so reach the apps).
pub fn cookie_name(state: &str, https: bool) -> String {
    let short: String = state.chars().take(COOKIE_STATE_CHARS).collect();
    if https {
        format!("__Secure-{FLOW_COOKIE}{short}")
    } else {
        format!("{FLOW_COOKIE}{short}")
    }
}

fn flow_cookie(
    name: &str,
    value: String,
    callback_path: &str,
    https: bool,
) -> cookie::CookieBuilder<'static> {
    cookie::Cookie::build((name.to_string(), value))
        .path(callback_path.to_string())
        .http_only(true)
        .secure(https)
        .same_site(cookie::SameSite::Lax)
}

/// The `Set-Cookie` of a flow cookie: sent back to the callback only (which the proxy answers
/// itself, so no app ever sees it), `SameSite=Lax` (the provider's redirect is a cross-site
/// top-level navigation), for the flow's lifetime.
pub fn set_cookie(
    name: &str,
    value: &str,
    callback_path: &str,
    https: bool,
    max_age_secs: u64,
) -> String {
    flow_cookie(name, value.to_string(), callback_path, https)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// The `Set-Cookie` that drops a flow cookie.
pub fn clear_cookie(name: &str, callback_path: &str, https: bool) -> String {
    flow_cookie(name, String::new(), callback_path, https)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// `target` if it is a path on this origin the browser may return to, else `None`: it must
/// start with one `/` (not `//` or `/\`, which browsers read as another host), hold no
/// control characters or backslashes, and not be too long.
pub fn safe_return(target: &str) -> Option<&str> {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && target.len() <= MAX_RETURN_BYTES
        && !target
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'\\' || b == b' ' || b >= 0x80);
    ok.then_some(target)
}

/// The authorization request's URL (RFC 6749 §4.1.1, with OpenID's `nonce` and PKCE S256).
pub fn authorize_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
    state: &str,
    nonce: &str,
    verifier: &str,
) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", state)
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", &s256(verifier))
        .append_pair("code_challenge_method", "S256")
        .finish();
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{separator}{query}")
}

/// The value of `name` among the `Cookie` headers.
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<String> {
    for header in headers {
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        for pair in text.split(';') {
            if let Some((n, v)) = pair.trim().split_once('=') {
                if n == name {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn tokens_are_fresh_and_of_the_verifier_alphabet() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn only_paths_on_this_origin_are_returned_to() {
        for ok in ["/", "/app/x?y=1&z=%2F", "/a#frag"] {
            assert_eq!(safe_return(ok), Some(ok));
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/a\\b",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=1",
            "/a b",
            "/é",
            "evil.example",
        ] {
            assert_eq!(safe_return(bad), None, "{bad:?}");
        }
        assert_eq!(safe_return(&format!("/{}", "a".repeat(3000))), None);
    }

    #[test]
    fn a_flow_stored_before_restarts_existed_reads_as_a_first_flow() {
        let old = br#"{"provider":"corp","nonce":"n","verifier":"v","redirect_uri":"https://app/cb","return_to":"/","binding":"b"}"#;
        let flow: Flow = serde_json::from_slice(old).unwrap();
        assert!(!flow.restarted);
        let again = serde_json::to_vec(&flow).unwrap();
        assert_eq!(
            again.as_slice(),
            old.as_slice(),
            "a first flow is stored as before"
        );
        let restarted = Flow {
            restarted: true,
            ..flow
        };
        let bytes = serde_json::to_vec(&restarted).unwrap();
        assert!(serde_json::from_slice::<Flow>(&bytes).unwrap().restarted);
    }

    #[test]
    fn a_flow_is_bound_to_its_cookie_value_only() {
        let flow = Flow {
            provider: "corp".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            redirect_uri: "https://app/cb".into(),
            return_to: "/".into(),
            binding: hashed("secret-value"),
            restarted: false,
        };
        assert!(flow.bound_to("secret-value"));
        assert!(!flow.bound_to("secret-valuE"));
        assert!(!flow.bound_to(""));
    }

    #[test]
    fn the_authorize_url_carries_state_nonce_and_the_s256_challenge() {
        let url = authorize_url(
            "https://op.example/auth?tenant=1",
            "client a",
            "https://app.example/_sessiongate/oidc/callback",
            &["openid".into(), "email".into()],
            "st",
            "no",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        );
        assert!(url.starts_with(
            "https://op.example/auth?tenant=1&response_type=code&client_id=client+a&"
        ));
        assert!(url.contains("&scope=openid+email&state=st&nonce=no&"));
        assert!(url.contains(
            "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
        ));
        assert!(
            url.contains("redirect_uri=https%3A%2F%2Fapp.example%2F_sessiongate%2Foidc%2Fcallback")
        );
    }

    #[test]
    fn parallel_flows_have_cookies_of_their_own() {
        let a = cookie_name(&random_token().unwrap(), true);
        let b = cookie_name(&random_token().unwrap(), true);
        assert_ne!(a, b);
        assert!(a.starts_with("__Secure-sg_flow_"));
        let c = set_cookie(&a, "v", "/_sessiongate/oidc/callback", true, 600);
        assert!(
            c.contains("Path=/_sessiongate/oidc/callback")
                && c.contains("Secure")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
        );
        let plain = set_cookie("sg_flow_x", "v", "/_sessiongate/oidc/callback", false, 600);
        assert!(plain.contains("Path=/_sessiongate/oidc/callback") && !plain.contains("Secure"));
    }
}
