//! The control headers an upstream answers with to change the session: login, update, logout.
//! Parsing is pure; a response with any malformed control header changes nothing. The
//! headers and the rules they are held to are in docs/protocol.md.

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

/// The separator arrays are joined with in a mapped identity header.
pub const JOIN_SEPARATOR: char = ',';

/// What a control header may carry, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRules<'a> {
    /// The most bytes of a control header's value (and so of a session's claims as JSON).
    pub max_bytes: usize,
    /// The claims behind the mapped identity headers: their text values reach apps as header
    /// values, so they are held to `clean_text`.
    pub mapped: &'a [String],
}

impl Default for ClaimRules<'_> {
    fn default() -> Self {
        ClaimRules {
            max_bytes: 4096,
            mapped: &[],
        }
    }
}

/// Whether `claims` serialise to at most `max_bytes` of JSON.
pub fn claims_fit(claims: &Claims, max_bytes: usize) -> bool {
    serde_json::to_vec(claims).is_ok_and(|json| json.len() <= max_bytes)
}

/// Whether `s` is text an app can compare as it reads it: no control or Unicode format
/// characters (bidi overrides, zero-width joiners, soft hyphens), no line or paragraph
/// separators, and no leading or trailing whitespace.
pub fn clean_text(s: &str) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    s.trim() == s
        && !s.chars().any(|c| {
            matches!(
                c.general_category(),
                G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator
            )
        })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub sub: String,
    pub claims: Claims,
    /// The identity provider's side, for a sign-in at the edge (none for a control header).
    pub provider: Option<crate::session::record::ProviderLink>,
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
    #[error("x-sessiongate-login needs \"sub\" as a non-empty string of at most {MAX_SUB_LEN} bytes, without control or format characters or surrounding whitespace")]
    BadSub,
    #[error("{header} is {len} bytes, more than the {max} session.max_claims_bytes allows")]
    TooLarge {
        header: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{header} sets the mapped claim \"{claim}\" to text with control or format characters, surrounding whitespace, or (in an array) a '{JOIN_SEPARATOR}'")]
    BadMappedClaim { header: &'static str, claim: String },
    #[error("{header} sets the reserved claim \"{claim}\"")]
    ReservedClaim { header: &'static str, claim: String },
    #[error("x-sessiongate-logout must be \"current\" or \"all\", not {0:?}")]
    BadLogoutScope(String),
    #[error("x-sessiongate-login is only accepted on routes with accept_login = true")]
    LoginNotAccepted,
}

fn single<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
    max: usize,
) -> Result<Option<&'a str>, ControlError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ControlError::Repeated(name));
    }
    if first.len() > max {
        return Err(ControlError::TooLarge {
            header: name,
            len: first.len(),
            max,
        });
    }
    std::str::from_utf8(first.as_bytes())
        .map(|s| Some(s.trim()))
        .map_err(|_| ControlError::NotUtf8(name))
}

/// The mapped claims of `claims` must read as one header value: a scalar (clean text, a
/// number, a boolean, null) or an array of scalars whose strings do not hold the separator
/// they are joined with. Nested arrays and objects are refused: rendered as JSON they would
/// carry separators and characters no check saw.
fn check_mapped(
    header: &'static str,
    claims: &Claims,
    rules: &ClaimRules<'_>,
) -> Result<(), ControlError> {
    fn scalar(value: &Value, in_array: bool) -> bool {
        match value {
            Value::String(s) => clean_text(s) && !(in_array && s.contains(JOIN_SEPARATOR)),
            Value::Number(_) | Value::Bool(_) | Value::Null => true,
            Value::Array(_) | Value::Object(_) => false,
        }
    }
    for claim in rules.mapped {
        let Some(value) = claims.get(claim) else {
            continue;
        };
        let clean = match value {
            Value::Array(items) => items.iter().all(|item| scalar(item, true)),
            other => scalar(other, false),
        };
        if !clean {
            return Err(ControlError::BadMappedClaim {
                header,
                claim: claim.clone(),
            });
        }
    }
    Ok(())
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

/// The rules every login's subject and claims are held to, from a control header or an
/// identity provider: a clean `sub`, no reserved claims, clean mapped claims, and the size
/// bound.
pub fn check_login(sub: &str, claims: &Claims, rules: &ClaimRules<'_>) -> Result<(), ControlError> {
    if sub.is_empty() || sub.len() > MAX_SUB_LEN || !clean_text(sub) {
        return Err(ControlError::BadSub);
    }
    refuse_reserved(LOGIN, claims)?;
    check_mapped(LOGIN, claims, rules)?;
    let len = serde_json::to_vec(claims).map_or(usize::MAX, |j| j.len());
    if len > rules.max_bytes {
        return Err(ControlError::TooLarge {
            header: LOGIN,
            len,
            max: rules.max_bytes,
        });
    }
    Ok(())
}

/// Reads the control headers of an upstream response.
pub fn parse(headers: &HeaderMap, rules: &ClaimRules<'_>) -> Result<ControlRequest, ControlError> {
    let mut request = ControlRequest::default();
    let max = rules.max_bytes;
    if let Some(text) = single(headers, LOGOUT, max)? {
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
    if let Some(text) = single(headers, LOGIN, max)? {
        let mut claims = object(LOGIN, text)?;
        let sub = match claims.remove("sub") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUB_LEN && clean_text(&s) => {
                s
            }
            _ => return Err(ControlError::BadSub),
        };
        refuse_reserved(LOGIN, &claims)?;
        check_mapped(LOGIN, &claims, rules)?;
        request.login = Some(Login {
            sub,
            claims,
            provider: None,
        });
    }
    if let Some(text) = single(headers, UPDATE, max)? {
        let patch = object(UPDATE, text)?;
        refuse_reserved(UPDATE, &patch)?;
        check_mapped(UPDATE, &patch, rules)?;
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

    fn parse(h: &HeaderMap) -> Result<ControlRequest, ControlError> {
        let mapped = ["email".to_string(), "roles".to_string()];
        super::parse(
            h,
            &ClaimRules {
                max_bytes: 4096,
                mapped: &mapped,
            },
        )
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

    #[test]
    fn ambiguous_text_in_sub_and_mapped_claims_is_refused() {
        for login in [
            r#"{"sub":"admin\u202e"}"#,
            r#"{"sub":"ad\u200bmin"}"#,
            r#"{"sub":" admin"}"#,
            r#"{"sub":"admin "}"#,
            r#"{"sub":"admin\u2028"}"#,
            r#"{"sub":"a\u00adb"}"#,
            r#"{"sub":"\ufeffadmin"}"#,
        ] {
            let err = parse(&headers(&[("x-sessiongate-login", login)])).unwrap_err();
            assert_eq!(err, ControlError::BadSub, "{login}");
        }
        for (header, body) in [
            ("x-sessiongate-login", r#"{"sub":"a","email":"a@x\u202e"}"#),
            (
                "x-sessiongate-login",
                r#"{"sub":"a","roles":["user","admin,root"]}"#,
            ),
            ("x-sessiongate-update", r#"{"roles":[" admin"]}"#),
            ("x-sessiongate-update", r#"{"email":"a@x\t"}"#),
            // Nested values, rendered as JSON, would carry separators and unchecked text.
            ("x-sessiongate-update", r#"{"email":[[null,null]]}"#),
            ("x-sessiongate-login", r#"{"sub":"a","roles":[[0,0]]}"#),
            (
                "x-sessiongate-login",
                r#"{"sub":"a","roles":[{"a":1,"b":2}]}"#,
            ),
            (
                "x-sessiongate-login",
                r#"{"sub":"a","email":{"":"\u00ad"}}"#,
            ),
            ("x-sessiongate-login", r#"{"sub":"a","email":[["\u202e"]]}"#),
        ] {
            let err = parse(&headers(&[(header, body)])).unwrap_err();
            assert!(
                matches!(err, ControlError::BadMappedClaim { .. }),
                "{body}: {err}"
            );
        }
        // Claims that are not mapped to headers may hold any JSON text; the assertion escapes it.
        let ok = parse(&headers(&[(
            "x-sessiongate-login",
            r#"{"sub":"Zoë Ünal","bio":"line\nbreak, with a comma","roles":["a","b"]}"#,
        )]))
        .unwrap();
        assert_eq!(ok.login.unwrap().sub, "Zoë Ünal");
    }

    #[test]
    fn oversized_control_headers_are_refused() {
        let big = format!(r#"{{"sub":"a","blob":"{}"}}"#, "x".repeat(5000));
        let err = parse(&headers(&[("x-sessiongate-login", &big)])).unwrap_err();
        assert!(
            matches!(err, ControlError::TooLarge { max: 4096, .. }),
            "{err}"
        );
        let err = parse(&headers(&[("x-sessiongate-update", &big)])).unwrap_err();
        assert!(matches!(err, ControlError::TooLarge { .. }), "{err}");
    }
}
