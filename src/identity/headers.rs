//! Plain identity headers mapped from claims (`X-Auth-Email = "email"`): the value rendering
//! and the sanitising that keeps control characters away from the upstream.

use serde_json::Value;

use crate::session::SessionRecord;

/// Removes every control character (CR, LF, NUL, DEL, ...); header values cannot carry them
/// and upstream parsers disagree on what they mean.
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
pub fn claim_header_value(record: &SessionRecord, claim: &str) -> Option<String> {
    let raw = if claim == "sub" {
        Some(record.sub.clone())
    } else {
        record.claims.get(claim).and_then(render)
    };
    raw.map(|v| sanitize(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(claims: Value) -> SessionRecord {
        SessionRecord {
            v: 1,
            sub: "ali\r\nce".into(),
            claims: claims.as_object().unwrap().clone(),
            created_at: 0,
            last_seen: 0,
            idle_deadline: 1,
            absolute_deadline: 1,
            bindings: None,
        }
    }

    #[test]
    fn values_are_rendered_and_sanitised() {
        let r = record(json!({
            "email": "a@x\u{0}\n",
            "roles": ["admin", "dev\r\nX-Evil: 1", 3],
            "n": 42,
            "flag": true,
            "nothing": null,
        }));
        assert_eq!(claim_header_value(&r, "sub").unwrap(), "alice");
        assert_eq!(claim_header_value(&r, "email").unwrap(), "a@x");
        assert_eq!(
            claim_header_value(&r, "roles").unwrap(),
            "admin,devX-Evil: 1,3"
        );
        assert_eq!(claim_header_value(&r, "n").unwrap(), "42");
        assert_eq!(claim_header_value(&r, "flag").unwrap(), "true");
        assert_eq!(claim_header_value(&r, "nothing"), None);
        assert_eq!(claim_header_value(&r, "missing"), None);
    }

    #[test]
    fn sanitize_keeps_printable_unicode() {
        assert_eq!(sanitize("Zoë\t\u{7f}\u{1b}[0m"), "Zoë[0m");
    }
}
