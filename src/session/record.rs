//! The session record kept in the store, its deadlines, and its two serialised forms.
//!
//! Times are Unix milliseconds. The deadlines are kept inside the record and checked on every
//! read; the store's key TTL only collects garbage. The stored form is a flat map (`v`, `sub`,
//! `claims`, `created_at`, `last_seen`, `idle_deadline`, `absolute_deadline`; see
//! docs/protocol.md): the Redis compare-and-set script reads `v` from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::model::RecordFormat;

/// Claims carried by a session (everything the app said at login or update, beside `sub`).
pub type Claims = Map<String, Value>;

/// Whether a session may be used at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Active,
    IdleExpired,
    AbsoluteExpired,
}

impl Validity {
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Active => "active",
            Validity::IdleExpired => "idle_expired",
            Validity::AbsoluteExpired => "absolute_expired",
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a session began and was last seen, and when it ends: the one place deadline logic
/// lives, for the stored record and the prepared form alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub created_at: u64,
    pub last_seen: u64,
    /// Ends after this without a renewal (`idle_timeout` after the last one).
    pub idle: u64,
    /// Ends at this whatever the activity (`absolute_timeout` after creation).
    pub absolute: u64,
}

impl Deadlines {
    /// A session created at `now`; the idle deadline never passes the absolute one.
    pub fn starting(now: u64, idle_timeout: Duration, absolute_timeout: Duration) -> Self {
        let absolute = now.saturating_add(ms(absolute_timeout));
        Deadlines {
            created_at: now,
            last_seen: now,
            idle: now.saturating_add(ms(idle_timeout)).min(absolute),
            absolute,
        }
    }

    /// The earlier deadline: when the store may forget the session.
    pub fn expires_at(&self) -> u64 {
        self.idle.min(self.absolute)
    }

    pub fn validity(&self, now: u64) -> Validity {
        if now >= self.absolute {
            Validity::AbsoluteExpired
        } else if now >= self.idle {
            Validity::IdleExpired
        } else {
            Validity::Active
        }
    }

    /// Renew when less than `renew_below` idle time remains and the idle deadline can still
    /// move (it never passes the absolute deadline).
    pub fn renewal_due(&self, now: u64, renew_below: Duration) -> bool {
        self.idle < self.absolute && self.idle.saturating_sub(now) < ms(renew_below)
    }

    /// Seen at `now`, with the idle deadline pushed out to `idle_timeout` from now.
    pub fn renewed(&self, now: u64, idle_timeout: Duration) -> Self {
        Deadlines {
            last_seen: now,
            idle: now.saturating_add(ms(idle_timeout)).min(self.absolute),
            ..*self
        }
    }

    /// Seen at `now`, deadlines unchanged.
    pub fn seen(&self, now: u64) -> Self {
        Deadlines {
            last_seen: now,
            ..*self
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Version, bumped on every write; updates compare-and-set on it.
    pub v: u64,
    pub sub: String,
    pub claims: Claims,
    pub deadlines: Deadlines,
    /// For a session an identity provider signed in: the provider's side of it (its subject
    /// and session, and the tokens, which never leave the store).
    pub provider: Option<Box<ProviderLink>>,
}

/// What a session keeps of the identity provider that signed its user in: the provider's own
/// subject and session id (what back-channel logout names), the ID token (the hint for
/// RP-initiated logout), and the refresh and access tokens. Times are Unix milliseconds; 0 is
/// unknown or never.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLink {
    /// The `[[identity_provider]]` name.
    pub name: String,
    /// The provider's `sub` (the session's `sub` may be mapped from another claim).
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub id_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When the access token expires.
    #[serde(default)]
    pub access_expires_at: u64,
    /// When the tokens are next refreshed.
    #[serde(default)]
    pub refresh_at: u64,
}

/// The stored form, written from a borrowed record.
#[derive(Serialize)]
struct StoredRef<'a> {
    v: u64,
    sub: &'a str,
    claims: &'a Claims,
    created_at: u64,
    last_seen: u64,
    idle_deadline: u64,
    absolute_deadline: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    idp: Option<&'a ProviderLink>,
}

/// The stored form, read.
#[derive(Deserialize)]
struct Stored {
    v: u64,
    sub: String,
    #[serde(default)]
    claims: Claims,
    created_at: u64,
    last_seen: u64,
    idle_deadline: u64,
    absolute_deadline: u64,
    #[serde(default)]
    idp: Option<ProviderLink>,
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
        self.deadlines.expires_at()
    }

    fn stored(&self) -> StoredRef<'_> {
        StoredRef {
            v: self.v,
            sub: &self.sub,
            claims: &self.claims,
            created_at: self.deadlines.created_at,
            last_seen: self.deadlines.last_seen,
            idle_deadline: self.deadlines.idle,
            absolute_deadline: self.deadlines.absolute,
            idp: self.provider.as_deref(),
        }
    }

    pub fn encode(&self, format: RecordFormat) -> Vec<u8> {
        match format {
            // Named fields: the Redis compare-and-set script reads `v` from the map.
            RecordFormat::MessagePack => rmp_serde::to_vec_named(&self.stored())
                .expect("a record always serialises to MessagePack"),
            RecordFormat::Json => {
                serde_json::to_vec(&self.stored()).expect("a record always serialises to JSON")
            }
        }
    }

    pub fn decode(bytes: &[u8], format: RecordFormat) -> Result<Self, RecordDecodeError> {
        let stored: Stored = match format {
            RecordFormat::MessagePack => {
                rmp_serde::from_slice(bytes).map_err(|e| RecordDecodeError {
                    format: "MessagePack",
                    reason: e.to_string(),
                })?
            }
            RecordFormat::Json => serde_json::from_slice(bytes).map_err(|e| RecordDecodeError {
                format: "JSON",
                reason: e.to_string(),
            })?,
        };
        Ok(SessionRecord {
            v: stored.v,
            sub: stored.sub,
            claims: stored.claims,
            deadlines: Deadlines {
                created_at: stored.created_at,
                last_seen: stored.last_seen,
                idle: stored.idle_deadline,
                absolute: stored.absolute_deadline,
            },
            provider: stored.idp.map(Box::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: Duration = Duration::from_secs(60);

    fn sample() -> SessionRecord {
        let Value::Object(claims) = json!({"email": "a@example.com", "roles": ["admin", "dev"], "n": 3, "nested": {"x": null}})
        else {
            unreachable!()
        };
        SessionRecord {
            v: 7,
            sub: "alice".into(),
            claims,
            deadlines: Deadlines {
                created_at: 1_700_000_000_000,
                last_seen: 1_700_000_000_500,
                idle: 1_700_001_800_000,
                absolute: 1_700_043_200_000,
            },
            provider: None,
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
    fn the_stored_form_is_the_flat_map_of_the_protocol() {
        let json: Value = serde_json::from_slice(&sample().encode(RecordFormat::Json)).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "absolute_deadline",
                "claims",
                "created_at",
                "idle_deadline",
                "last_seen",
                "sub",
                "v"
            ]
        );
        // MessagePack carries the same names (the compare-and-set script reads `v`).
        let msgpack: Value =
            rmp_serde::from_slice(&sample().encode(RecordFormat::MessagePack)).unwrap();
        assert_eq!(msgpack, json);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(SessionRecord::decode(b"\xc1\xc1", RecordFormat::MessagePack).is_err());
        assert!(SessionRecord::decode(b"{", RecordFormat::Json).is_err());
    }

    #[test]
    fn expiry_is_the_earlier_deadline() {
        let mut r = sample();
        assert_eq!(r.expires_at(), r.deadlines.idle);
        r.deadlines.idle = r.deadlines.absolute + 1;
        assert_eq!(r.expires_at(), r.deadlines.absolute);
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let d = Deadlines::starting(0, MIN, 2 * MIN);
        assert_eq!(d.validity(59_999), Validity::Active);
        assert_eq!(d.validity(60_000), Validity::IdleExpired);
        let d = d.renewed(59_000, MIN);
        assert_eq!(d.validity(118_999), Validity::Active);
        assert_eq!(d.validity(119_000), Validity::IdleExpired);
        let d = d.renewed(110_000, MIN);
        assert_eq!(d.idle, 120_000, "never past the absolute deadline");
        assert_eq!(d.validity(119_999), Validity::Active);
        assert_eq!(d.validity(120_000), Validity::AbsoluteExpired);
    }

    #[test]
    fn renewal_only_below_threshold_and_never_past_absolute() {
        let d = Deadlines::starting(0, 10 * MIN, 15 * MIN);
        assert!(!d.renewal_due(60_000, 5 * MIN));
        assert!(d.renewal_due(6 * 60_000, 5 * MIN));
        let d2 = d.renewed(6 * 60_000, 10 * MIN);
        assert_eq!(d2.idle, 15 * 60_000, "capped at the absolute deadline");
        assert_eq!(d2.last_seen, 6 * 60_000);
        assert!(
            !d2.renewal_due(14 * 60_000, 5 * MIN),
            "nothing left to extend"
        );
    }
}
