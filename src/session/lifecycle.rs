//! Pure session decisions, functions of a record, the settings and the clock: what a new,
//! renewed or updated record looks like (whether one is still valid or due for renewal is
//! asked of its `Deadlines`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::record::{Claims, Deadlines, SessionRecord};

/// The current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A brand-new session record (version 1).
pub fn new_record(
    sub: String,
    claims: Claims,
    now: u64,
    idle_timeout: Duration,
    absolute_timeout: Duration,
) -> SessionRecord {
    SessionRecord {
        v: 1,
        sub,
        claims,
        deadlines: Deadlines::starting(now, idle_timeout, absolute_timeout),
        provider: None,
    }
}

/// The record after an idle renewal at `now`: next version, idle deadline pushed out.
pub fn renewed(record: &SessionRecord, now: u64, idle_timeout: Duration) -> SessionRecord {
    SessionRecord {
        v: record.v + 1,
        deadlines: record.deadlines.renewed(now, idle_timeout),
        ..record.clone()
    }
}

/// The record with `patch` merged into its claims (RFC 7386 JSON merge patch).
pub fn updated(record: &SessionRecord, patch: &Claims, now: u64) -> SessionRecord {
    let mut next = record.clone();
    next.v += 1;
    next.deadlines = record.deadlines.seen(now);
    merge_patch(&mut next.claims, patch);
    next
}

/// RFC 7386: `null` deletes, objects merge recursively, anything else replaces.
pub fn merge_patch(target: &mut Claims, patch: &Claims) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner_patch) => {
                let entry = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Claims::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Claims::new());
                }
                if let Value::Object(inner) = entry {
                    merge_patch(inner, inner_patch);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::record::Validity;
    use serde_json::json;

    const MIN: Duration = Duration::from_secs(60);

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn new_records_start_valid_with_both_deadlines() {
        let r = new_record("a".into(), Claims::new(), 1000, 30 * MIN, 720 * MIN);
        assert_eq!(r.v, 1);
        assert_eq!(r.deadlines.idle, 1000 + 30 * 60_000);
        assert_eq!(r.deadlines.absolute, 1000 + 720 * 60_000);
        assert_eq!(r.deadlines.validity(1000), Validity::Active);
    }

    #[test]
    fn renewal_bumps_the_version_and_moves_only_the_idle_deadline() {
        let r = new_record("a".into(), Claims::new(), 0, 10 * MIN, 15 * MIN);
        let r2 = renewed(&r, 6 * 60_000, 10 * MIN);
        assert_eq!(r2.v, 2);
        assert_eq!(
            r2.deadlines.idle,
            15 * 60_000,
            "capped at the absolute deadline"
        );
        assert_eq!(r2.deadlines.absolute, r.deadlines.absolute);
        assert_eq!(r2.deadlines.created_at, 0);
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut target = claims(json!({"a": "b", "c": {"d": "e", "f": "g"}, "keep": 1}));
        let patch = claims(json!({"a": "z", "c": {"f": null, "n": [1]}, "new": true}));
        merge_patch(&mut target, &patch);
        assert_eq!(
            Value::Object(target),
            json!({"a": "z", "c": {"d": "e", "n": [1]}, "keep": 1, "new": true})
        );
        let mut t = claims(json!({"x": 1}));
        merge_patch(&mut t, &claims(json!({"x": null, "y": {"z": 1}})));
        assert_eq!(Value::Object(t), json!({"y": {"z": 1}}));
    }

    #[test]
    fn update_bumps_version_and_keeps_deadlines() {
        let r = new_record("a".into(), Claims::new(), 0, MIN, 2 * MIN);
        let u = updated(&r, &claims(json!({"k": "v"})), 10);
        assert_eq!(u.v, 2);
        assert_eq!(u.deadlines.idle, r.deadlines.idle);
        assert_eq!(u.deadlines.last_seen, 10);
        assert_eq!(u.claims["k"], "v");
    }
}
