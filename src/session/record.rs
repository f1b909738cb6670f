//! The session record kept in the store, and its two serialised forms.
//!
//! Times are Unix milliseconds. The deadlines are kept inside the record and checked on every
//! read; the store's key TTL only collects garbage.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::model::RecordFormat;

/// Claims carried by a session (everything the app said at login or update, beside `sub`).
pub type Claims = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Version, bumped on every write; updates compare-and-set on it.
    pub v: u64,
    pub sub: String,
    #[serde(default)]
    pub claims: Claims,
    pub created_at: u64,
    pub last_seen: u64,
    pub idle_deadline: u64,
    pub absolute_deadline: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings: Option<Bindings>,
}

/// Optional properties a session is bound to (checked when present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Bindings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent_hash: Option<String>,
}

/// A stored record that could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session record is not valid {format}: {reason}")]
pub struct RecordDecodeError {
    format: &'static str,
    reason: String,
}

impl SessionRecord {
    /// The earlier of the two deadlines: when the store may forget the record.
    pub fn expires_at(&self) -> u64 {
        self.idle_deadline.min(self.absolute_deadline)
    }

    pub fn encode(&self, format: RecordFormat) -> Vec<u8> {
        match format {
            // Named fields: the Redis compare-and-set script reads `v` from the map.
            RecordFormat::MessagePack => {
                rmp_serde::to_vec_named(self).expect("a record always serialises to MessagePack")
            }
            RecordFormat::Json => {
                serde_json::to_vec(self).expect("a record always serialises to JSON")
            }
        }
    }

    pub fn decode(bytes: &[u8], format: RecordFormat) -> Result<Self, RecordDecodeError> {
        match format {
            RecordFormat::MessagePack => {
                rmp_serde::from_slice(bytes).map_err(|e| RecordDecodeError {
                    format: "MessagePack",
                    reason: e.to_string(),
                })
            }
            RecordFormat::Json => serde_json::from_slice(bytes).map_err(|e| RecordDecodeError {
                format: "JSON",
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> SessionRecord {
        let Value::Object(claims) = json!({"email": "a@example.com", "roles": ["admin", "dev"], "n": 3, "nested": {"x": null}})
        else {
            unreachable!()
        };
        SessionRecord {
            v: 7,
            sub: "alice".into(),
            claims,
            created_at: 1_700_000_000_000,
            last_seen: 1_700_000_000_500,
            idle_deadline: 1_700_001_800_000,
            absolute_deadline: 1_700_043_200_000,
            bindings: None,
        }
    }

    #[test]
    fn both_formats_round_trip() {
        for format in [RecordFormat::MessagePack, RecordFormat::Json] {
            let r = sample();
            assert_eq!(SessionRecord::decode(&r.encode(format), format).unwrap(), r);
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(SessionRecord::decode(b"\xc1\xc1", RecordFormat::MessagePack).is_err());
        assert!(SessionRecord::decode(b"{", RecordFormat::Json).is_err());
    }

    #[test]
    fn expiry_is_the_earlier_deadline() {
        let mut r = sample();
        assert_eq!(r.expires_at(), r.idle_deadline);
        r.idle_deadline = r.absolute_deadline + 1;
        assert_eq!(r.expires_at(), r.absolute_deadline);
    }
}
