//! A session prepared for serving requests: what every request of a session needs, computed
//! once per store read (and kept in the cache) instead of once per request. The claims are held
//! as one serialised JSON object, which the assertion splices in as is; the values of the
//! claim-mapped identity headers are rendered ahead by the projection below. It is also the
//! compact form the cache keeps: a few hundred bytes instead of a tree of JSON values.

use std::sync::Arc;

use serde_json::Value;

use super::control::RESERVED_CLAIMS;
use super::record::{Claims, Deadlines, ProviderLink, SessionRecord};

/// A valid session's data in the form requests use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedSession {
    pub v: u64,
    pub sub: Box<str>,
    pub deadlines: Deadlines,
    /// The claims (reserved names left out) as a JSON object: `{"email":"a@x",...}`.
    pub claims_json: Box<str>,
    /// The sanitised value of each mapped identity header, in the projection's order.
    pub header_values: Box<[Option<Box<str>>]>,
    /// The `email` claim and the `groups` claim's strings, what routes' `allow_*` rules read.
    pub email: Option<Box<str>>,
    pub groups: Box<[Box<str>]>,
    /// The identity provider's side of the session, when one signed the user in.
    pub provider: Option<Arc<ProviderLink>>,
}

/// Removes every control character (CR, LF, NUL, DEL, ...); header values cannot carry them
/// and upstream parsers disagree on what they mean. Logins and updates with such text in a
/// mapped claim are refused (see `control`); this is the last line for older sessions.
pub fn sanitize(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

fn render(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => Some(value.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// The sanitised header value for `claim` of this session, or `None` when it has no such claim.
/// `sub` is the session's subject; arrays are joined with `,`; objects are written as JSON.
pub fn claim_header_value(sub: &str, claims: &Claims, claim: &str) -> Option<String> {
    let raw = if claim == "sub" {
        Some(sub.to_string())
    } else {
        claims.get(claim).and_then(render)
    };
    raw.map(|v| sanitize(&v))
}

impl PreparedSession {
    /// Prepares `record`; `projection` names the claim behind each mapped identity header.
    pub fn new(record: &SessionRecord, projection: &[String]) -> Self {
        let claims: Claims = record
            .claims
            .iter()
            .filter(|(k, _)| !RESERVED_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let claims_json = serde_json::to_string(&claims).expect("a JSON map always serialises");
        PreparedSession {
            v: record.v,
            sub: record.sub.as_str().into(),
            deadlines: record.deadlines,
            claims_json: claims_json.into_boxed_str(),
            header_values: projection
                .iter()
                .map(|claim| {
                    claim_header_value(&record.sub, &record.claims, claim)
                        .map(String::into_boxed_str)
                })
                .collect(),
            email: record
                .claims
                .get("email")
                .and_then(Value::as_str)
                .map(Into::into),
            groups: match record.claims.get("groups") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(Into::into)
                    .collect(),
                Some(Value::String(one)) => Box::new([one.as_str().into()]),
                _ => Box::default(),
            },
            provider: record.provider.as_deref().cloned().map(Arc::new),
        }
    }

    /// When the provider's tokens are due for a refresh (Unix ms), if ever.
    pub fn refresh_at(&self) -> Option<u64> {
        self.provider
            .as_ref()
            .map(|p| p.refresh_at)
            .filter(|at| *at > 0)
    }

    /// The full record again (for a write). Reserved claims were never stored, so nothing is
    /// lost.
    pub fn to_record(&self) -> SessionRecord {
        let claims = match serde_json::from_str::<Value>(&self.claims_json) {
            Ok(Value::Object(map)) => map,
            _ => Claims::new(),
        };
        SessionRecord {
            v: self.v,
            sub: self.sub.to_string(),
            claims,
            deadlines: self.deadlines,
            provider: self.provider.as_deref().cloned().map(Box::new),
        }
    }

    /// The same session at the next version with other deadlines (an idle renewal): the
    /// claims and header values are shared, not prepared again.
    pub fn with_deadlines(&self, v: u64, deadlines: Deadlines) -> Self {
        PreparedSession {
            v,
            deadlines,
            ..self.clone()
        }
    }

    /// Heap and inline bytes this value holds (for the cache's byte bound).
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.sub.len()
            + self.claims_json.len()
            + self.header_values.len() * std::mem::size_of::<Option<Box<str>>>()
            + self
                .header_values
                .iter()
                .map(|v| v.as_ref().map_or(0, |s| s.len()))
                .sum::<usize>()
            + self.email.as_ref().map_or(0, |e| e.len())
            + self.groups.iter().map(|g| g.len() + 16).sum::<usize>()
            + self.provider.as_ref().map_or(0, |p| {
                std::mem::size_of::<ProviderLink>()
                    + p.name.len()
                    + p.sub.len()
                    + p.sid.as_ref().map_or(0, String::len)
                    + p.id_token.len()
                    + p.refresh_token.as_ref().map_or(0, String::len)
                    + p.access_token.as_ref().map_or(0, String::len)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> SessionRecord {
        SessionRecord {
            v: 3,
            sub: "alice".into(),
            claims: json!({"email": "a@x", "roles": ["admin", "dev"], "exp": 1})
                .as_object()
                .cloned()
                .unwrap(),
            deadlines: Deadlines {
                created_at: 1,
                last_seen: 2,
                idle: 10,
                absolute: 20,
            },
            provider: None,
        }
    }

    #[test]
    fn prepares_claims_and_header_values() {
        let projection = [
            "sub".to_string(),
            "email".into(),
            "roles".into(),
            "missing".into(),
        ];
        let p = PreparedSession::new(&record(), &projection);
        assert_eq!(&*p.sub, "alice");
        let claims: Value = serde_json::from_str(&p.claims_json).unwrap();
        assert_eq!(
            claims,
            json!({"email": "a@x", "roles": ["admin", "dev"]}),
            "reserved claims dropped"
        );
        let values: Vec<Option<&str>> = p.header_values.iter().map(|v| v.as_deref()).collect();
        assert_eq!(
            values,
            [Some("alice"), Some("a@x"), Some("admin,dev"), None]
        );
        assert_eq!(p.deadlines.expires_at(), 10);
    }

    #[test]
    fn round_trips_to_the_record() {
        let p = PreparedSession::new(&record(), &[]);
        let mut expected = record();
        expected.claims.remove("exp");
        assert_eq!(p.to_record(), expected);
    }

    #[test]
    fn a_renewal_keeps_the_prepared_claims() {
        let p = PreparedSession::new(&record(), &["email".to_string()]);
        let renewed = p.with_deadlines(
            4,
            p.deadlines.renewed(5, std::time::Duration::from_millis(10)),
        );
        assert_eq!(renewed.v, 4);
        assert_eq!(renewed.deadlines.idle, 15);
        assert_eq!(renewed.claims_json, p.claims_json);
        assert_eq!(renewed.header_values, p.header_values);
    }

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn values_are_rendered_and_sanitised() {
        let c = claims(json!({
            "email": "a@x\u{0}\n",
            "roles": ["admin", "dev\r\nX-Evil: 1", 3],
            "n": 42,
            "flag": true,
            "nothing": null,
        }));
        let sub = "ali\r\nce";
        assert_eq!(claim_header_value(sub, &c, "sub").unwrap(), "alice");
        assert_eq!(claim_header_value(sub, &c, "email").unwrap(), "a@x");
        assert_eq!(
            claim_header_value(sub, &c, "roles").unwrap(),
            "admin,devX-Evil: 1,3"
        );
        assert_eq!(claim_header_value(sub, &c, "n").unwrap(), "42");
        assert_eq!(claim_header_value(sub, &c, "flag").unwrap(), "true");
        assert_eq!(claim_header_value(sub, &c, "nothing"), None);
        assert_eq!(claim_header_value(sub, &c, "missing"), None);
    }

    #[test]
    fn sanitize_keeps_printable_unicode() {
        assert_eq!(sanitize("Zoë\t\u{7f}\u{1b}[0m"), "Zoë[0m");
    }
}
