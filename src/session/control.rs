//! The control headers an upstream answers with to change the session: login, update, logout.
//! Parsing is pure; a response with any malformed control header changes nothing.

use http::HeaderMap;
use serde_json::Value;

use super::record::Claims;

pub const LOGIN: &str = "x-sessiongate-login";
pub const UPDATE: &str = "x-sessiongate-update";
pub const LOGOUT: &str = "x-sessiongate-logout";

/// Claim names the assertion sets itself; an app may not set them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss", "aud", "sub", "sid", "iat", "exp", "nbf", "jti", "kid",
];

/// Longest `sub` accepted (it becomes part of a store key).
pub const MAX_SUB_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub sub: String,
    pub claims: Claims,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    Current,
    All,
}

/// The session changes one upstream response asks for. Applied in the order logout, login,
/// update: a response may end every session and start a new one, and an update applies to the
/// session that results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlRequest {
    pub logout: Option<LogoutScope>,
    pub login: Option<Login>,
    pub update: Option<Claims>,
}

impl ControlRequest {
    pub fn is_empty(&self) -> bool {
        self.logout.is_none() && self.login.is_none() && self.update.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("{0} appears more than once")]
    Repeated(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{header} is not a JSON object: {reason}")]
    NotObject {
        header: &'static str,
        reason: String,
    },
    #[error("x-sessiongate-login needs \"sub\" as a non-empty string of at most {MAX_SUB_LEN} bytes without control characters")]
    BadSub,
    #[error("{header} sets the reserved claim \"{claim}\"")]
    ReservedClaim { header: &'static str, claim: String },
    #[error("x-sessiongate-logout must be \"current\" or \"all\", not {0:?}")]
    BadLogoutScope(String),
}

fn single<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ControlError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ControlError::Repeated(name));
    }
    first
        .to_str()
        .map(|s| Some(s.trim()))
        .map_err(|_| ControlError::NotUtf8(name))
}

fn object(header: &'static str, text: &str) -> Result<Claims, ControlError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ControlError::NotObject {
            header,
            reason: "a JSON value that is not an object".into(),
        }),
        Err(e) => Err(ControlError::NotObject {
            header,
            reason: e.to_string(),
        }),
    }
}

fn refuse_reserved(header: &'static str, claims: &Claims) -> Result<(), ControlError> {
    match claims
        .keys()
        .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
    {
        Some(claim) => Err(ControlError::ReservedClaim {
            header,
            claim: claim.clone(),
        }),
        None => Ok(()),
    }
}

/// Reads the control headers of an upstream response.
pub fn parse(headers: &HeaderMap) -> Result<ControlRequest, ControlError> {
    let mut request = ControlRequest::default();
    if let Some(text) = single(headers, LOGOUT)? {
        request.logout = Some(match text.to_ascii_lowercase().as_str() {
            "current" => LogoutScope::Current,
            "all" => LogoutScope::All,
            _ => {
                return Err(ControlError::BadLogoutScope(
                    text.chars().take(32).collect(),
                ))
            }
        });
    }
    if let Some(text) = single(headers, LOGIN)? {
        let mut claims = object(LOGIN, text)?;
        let sub = match claims.remove("sub") {
            Some(Value::String(s))
                if !s.is_empty() && s.len() <= MAX_SUB_LEN && !s.chars().any(char::is_control) =>
            {
                s
            }
            _ => return Err(ControlError::BadSub),
        };
        refuse_reserved(LOGIN, &claims)?;
        request.login = Some(Login { sub, claims });
    }
    if let Some(text) = single(headers, UPDATE)? {
        let patch = object(UPDATE, text)?;
        refuse_reserved(UPDATE, &patch)?;
        request.update = Some(patch);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn login_update_logout_are_read() {
        let r = parse(&headers(&[
            ("X-Sessiongate-Login", r#"{"sub":"alice","email":"a@x"}"#),
            ("x-sessiongate-update", r#"{"theme":"dark","old":null}"#),
            ("X-SESSIONGATE-LOGOUT", "All"),
        ]))
        .unwrap();
        assert_eq!(r.login.as_ref().unwrap().sub, "alice");
        assert_eq!(r.login.unwrap().claims["email"], "a@x");
        assert_eq!(r.update.unwrap()["old"], Value::Null);
        assert_eq!(r.logout, Some(LogoutScope::All));
    }

    #[test]
    fn nothing_is_empty() {
        assert!(parse(&HeaderMap::new()).unwrap().is_empty());
    }

    #[test]
    fn malformed_headers_are_errors() {
        let cases: &[(&[(&'static str, &str)], &str)] = &[
            (&[("x-sessiongate-login", "{not json")], "not a JSON object"),
            (&[("x-sessiongate-login", "[1,2]")], "not a JSON object"),
            (&[("x-sessiongate-login", r#"{"email":"x"}"#)], "\"sub\""),
            (&[("x-sessiongate-login", r#"{"sub":""}"#)], "\"sub\""),
            (&[("x-sessiongate-login", r#"{"sub":42}"#)], "\"sub\""),
            (
                &[("x-sessiongate-login", r#"{"sub":"a\u0000b"}"#)],
                "\"sub\"",
            ),
            (
                &[("x-sessiongate-login", r#"{"sub":"a","exp":1}"#)],
                "reserved claim \"exp\"",
            ),
            (
                &[("x-sessiongate-update", r#"{"sub":"mallory"}"#)],
                "reserved claim \"sub\"",
            ),
            (&[("x-sessiongate-update", "null")], "not a JSON object"),
            (
                &[("x-sessiongate-logout", "everyone")],
                "\"current\" or \"all\"",
            ),
            (
                &[
                    ("x-sessiongate-logout", "current"),
                    ("x-sessiongate-logout", "all"),
                ],
                "more than once",
            ),
        ];
        for (pairs, expected) in cases {
            let err = parse(&headers(pairs)).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }
}
