//! Pure session decisions, functions of a record, the settings and the clock: is it still
//! valid, does it need renewing, what does a new, renewed or updated record look like.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::record::{Claims, SessionRecord};

/// The current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a stored session may be used at `now`.
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

pub fn check(record: &SessionRecord, now: u64) -> Validity {
    check_deadlines(record.idle_deadline, record.absolute_deadline, now)
}

/// `check` on the two deadlines alone.
pub fn check_deadlines(idle_deadline: u64, absolute_deadline: u64, now: u64) -> Validity {
    if now >= absolute_deadline {
        Validity::AbsoluteExpired
    } else if now >= idle_deadline {
        Validity::IdleExpired
    } else {
        Validity::Active
    }
}

/// A brand-new session record (version 1).
pub fn new_record(
    sub: String,
    claims: Claims,
    now: u64,
    idle_timeout: Duration,
    absolute_timeout: Duration,
) -> SessionRecord {
    let absolute_deadline = now.saturating_add(ms(absolute_timeout));
    SessionRecord {
        v: 1,
        sub,
        claims,
        created_at: now,
        last_seen: now,
        idle_deadline: now.saturating_add(ms(idle_timeout)).min(absolute_deadline),
        absolute_deadline,
        bindings: None,
    }
}

/// Renew when less than `renew_below` idle time remains and the idle deadline can still move
/// (it never passes the absolute deadline).
pub fn needs_renewal(record: &SessionRecord, now: u64, renew_below: Duration) -> bool {
    idle_renewal_due(
        record.idle_deadline,
        record.absolute_deadline,
        now,
        renew_below,
    )
}

/// `needs_renewal` on the two deadlines alone.
pub fn idle_renewal_due(
    idle_deadline: u64,
    absolute_deadline: u64,
    now: u64,
    renew_below: Duration,
) -> bool {
    idle_deadline < absolute_deadline && idle_deadline.saturating_sub(now) < ms(renew_below)
}

/// The record after an idle renewal at `now`: next version, idle deadline pushed out.
pub fn renewed(record: &SessionRecord, now: u64, idle_timeout: Duration) -> SessionRecord {
    let mut next = record.clone();
    next.v += 1;
    next.last_seen = now;
    next.idle_deadline = now
        .saturating_add(ms(idle_timeout))
        .min(record.absolute_deadline);
    next
}

/// The record with `patch` merged into its claims (RFC 7386 JSON merge patch).
pub fn updated(record: &SessionRecord, patch: &Claims, now: u64) -> SessionRecord {
    let mut next = record.clone();
    next.v += 1;
    next.last_seen = now;
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
        assert_eq!(r.idle_deadline, 1000 + 30 * 60_000);
        assert_eq!(r.absolute_deadline, 1000 + 720 * 60_000);
        assert_eq!(check(&r, 1000), Validity::Active);
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let r = new_record("a".into(), Claims::new(), 0, MIN, 2 * MIN);
        assert_eq!(check(&r, 59_999), Validity::Active);
        assert_eq!(check(&r, 60_000), Validity::IdleExpired);
        let r = renewed(&r, 59_000, MIN);
        assert_eq!(check(&r, 118_999), Validity::Active);
        assert_eq!(check(&r, 119_000), Validity::IdleExpired);
        let r = renewed(&r, 110_000, MIN);
        assert_eq!(r.idle_deadline, 120_000, "never past the absolute deadline");
        assert_eq!(check(&r, 119_999), Validity::Active);
        assert_eq!(check(&r, 120_000), Validity::AbsoluteExpired);
    }

    #[test]
    fn renewal_only_below_threshold_and_never_past_absolute() {
        let r = new_record("a".into(), Claims::new(), 0, 10 * MIN, 15 * MIN);
        assert!(!needs_renewal(&r, MIN.as_millis() as u64, 5 * MIN));
        assert!(needs_renewal(&r, 6 * 60_000, 5 * MIN));
        let r2 = renewed(&r, 6 * 60_000, 10 * MIN);
        assert_eq!(r2.v, 2);
        assert_eq!(
            r2.idle_deadline,
            15 * 60_000,
            "capped at the absolute deadline"
        );
        assert!(
            !needs_renewal(&r2, 14 * 60_000, 5 * MIN),
            "nothing left to extend"
        );
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
        assert_eq!(u.idle_deadline, r.idle_deadline);
        assert_eq!(u.claims["k"], "v");
    }
}
