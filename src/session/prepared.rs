//! A session prepared for serving requests: what every request of a session needs, computed
//! once per store read (and kept in the cache) instead of once per request. The claims are held
//! as one serialised JSON object, which the assertion splices in as is; the values of the
//! claim-mapped identity headers are rendered ahead. It is also the compact form the cache
//! keeps: a few hundred bytes instead of a tree of JSON values.

use serde_json::Value;

use super::control::RESERVED_CLAIMS;
use super::record::{Claims, SessionRecord};
use crate::identity::claim_header_value;

/// A valid session's data in the form requests use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedSession {
    pub v: u64,
    pub sub: Box<str>,
    pub created_at: u64,
    pub last_seen: u64,
    pub idle_deadline: u64,
    pub absolute_deadline: u64,
    /// The claims (reserved names left out) as a JSON object: `{"email":"a@x",...}`.
    pub claims_json: Box<str>,
    /// The sanitised value of each mapped identity header, in the projection's order.
    pub header_values: Box<[Option<Box<str>>]>,
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
            created_at: record.created_at,
            last_seen: record.last_seen,
            idle_deadline: record.idle_deadline,
            absolute_deadline: record.absolute_deadline,
            claims_json: claims_json.into_boxed_str(),
            header_values: projection
                .iter()
                .map(|claim| claim_header_value(record, claim).map(String::into_boxed_str))
                .collect(),
        }
    }

    /// The full record again (for a renewal write). Reserved claims were never stored, so
    /// nothing is lost.
    pub fn to_record(&self) -> SessionRecord {
        let claims = match serde_json::from_str::<Value>(&self.claims_json) {
            Ok(Value::Object(map)) => map,
            _ => Claims::new(),
        };
        SessionRecord {
            v: self.v,
            sub: self.sub.to_string(),
            claims,
            created_at: self.created_at,
            last_seen: self.last_seen,
            idle_deadline: self.idle_deadline,
            absolute_deadline: self.absolute_deadline,
            bindings: None,
        }
    }

    /// The earlier of the two deadlines.
    pub fn expires_at(&self) -> u64 {
        self.idle_deadline.min(self.absolute_deadline)
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
            created_at: 1,
            last_seen: 2,
            idle_deadline: 10,
            absolute_deadline: 20,
            bindings: None,
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
        assert_eq!(p.expires_at(), 10);
    }

    #[test]
    fn round_trips_to_the_record() {
        let p = PreparedSession::new(&record(), &[]);
        let mut expected = record();
        expected.claims.remove("exp");
        assert_eq!(p.to_record(), expected);
    }
}
