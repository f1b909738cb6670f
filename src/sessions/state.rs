//! What one request knows about its session, in one value: the outcome of reading the cookie
//! and resolving it, with the store key computed once. Whether the response clears the cookie,
//! which lookup result is counted, and what a control header applies to are read from it.

use std::sync::Arc;

use crate::cache::Source;
use crate::metrics::lookup;
use crate::session::{PreparedSession, StoreKey};

/// A session that was found and is valid.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub key: StoreKey,
    pub session: Arc<PreparedSession>,
    /// Where it came from (cache, store, a coalesced read).
    pub source: Source,
}

/// The session of one request.
#[derive(Debug, Clone, Default)]
pub enum SessionState {
    /// No session cookie.
    #[default]
    None,
    /// A session cookie that is malformed or repeated: never looked up.
    Rejected,
    /// A well-formed cookie on a public route, not looked up.
    NotLookedUp(StoreKey),
    /// The store does not know it.
    Unknown(StoreKey),
    /// Known, but past its idle or absolute deadline.
    Expired(StoreKey),
    Active(ActiveSession),
    /// The store could not answer; a recently cached copy is honoured (`serve_stale`).
    Stale(ActiveSession),
    /// The store could not answer, and no cached copy is honoured.
    StoreDown(StoreKey),
}

/// The session a request carried, for a change the app asks for: its key when the cookie was
/// well formed, and its subject when it was resolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Carried<'a> {
    pub key: Option<&'a StoreKey>,
    pub sub: Option<&'a str>,
}

impl SessionState {
    /// The session the request runs as, if any.
    pub fn active(&self) -> Option<&ActiveSession> {
        match self {
            SessionState::Active(a) | SessionState::Stale(a) => Some(a),
            _ => None,
        }
    }

    /// The store key of the cookie, when it was well formed.
    pub fn key(&self) -> Option<&StoreKey> {
        match self {
            SessionState::None | SessionState::Rejected => None,
            SessionState::NotLookedUp(key)
            | SessionState::Unknown(key)
            | SessionState::Expired(key)
            | SessionState::StoreDown(key) => Some(key),
            SessionState::Active(a) | SessionState::Stale(a) => Some(&a.key),
        }
    }

    pub fn carried(&self) -> Carried<'_> {
        Carried {
            key: self.key(),
            sub: self.active().map(|a| &*a.session.sub),
        }
    }

    /// Whether the browser should drop its cookie: it names no usable session.
    pub fn clear_cookie(&self) -> bool {
        matches!(
            self,
            SessionState::Rejected | SessionState::Unknown(_) | SessionState::Expired(_)
        )
    }

    /// The `sessiongate_session_lookups_total` result, or `None` when no lookup was made.
    pub fn lookup_metric(&self) -> Option<&'static str> {
        Some(match self {
            SessionState::None | SessionState::NotLookedUp(_) => return None,
            SessionState::Rejected => lookup::INVALID,
            SessionState::Unknown(_) => lookup::NOT_FOUND,
            SessionState::Expired(_) => lookup::EXPIRED,
            SessionState::Active(a) => match a.source {
                Source::Cache => lookup::CACHE_HIT,
                _ => lookup::STORE_HIT,
            },
            SessionState::Stale(_) => lookup::STALE,
            SessionState::StoreDown(_) => lookup::ERROR,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::lifecycle::new_record;
    use crate::session::SessionId;
    use std::time::Duration;

    fn active(source: Source) -> ActiveSession {
        let record = new_record(
            "alice".into(),
            Default::default(),
            0,
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        ActiveSession {
            key: SessionId::generate().unwrap().store_key(),
            session: Arc::new(PreparedSession::new(&record, &[])),
            source,
        }
    }

    #[test]
    fn each_state_says_what_the_response_does() {
        let key = SessionId::generate().unwrap().store_key();
        let cases = [
            (SessionState::None, None, false),
            (SessionState::Rejected, Some(lookup::INVALID), true),
            (SessionState::NotLookedUp(key.clone()), None, false),
            (
                SessionState::Unknown(key.clone()),
                Some(lookup::NOT_FOUND),
                true,
            ),
            (
                SessionState::Expired(key.clone()),
                Some(lookup::EXPIRED),
                true,
            ),
            (
                SessionState::Active(active(Source::Cache)),
                Some(lookup::CACHE_HIT),
                false,
            ),
            (
                SessionState::Active(active(Source::Store)),
                Some(lookup::STORE_HIT),
                false,
            ),
            (
                SessionState::Active(active(Source::Coalesced)),
                Some(lookup::STORE_HIT),
                false,
            ),
            (
                SessionState::Stale(active(Source::Cache)),
                Some(lookup::STALE),
                false,
            ),
            (
                SessionState::StoreDown(key.clone()),
                Some(lookup::ERROR),
                false,
            ),
        ];
        for (state, metric, clear) in cases {
            assert_eq!(state.lookup_metric(), metric, "{state:?}");
            assert_eq!(state.clear_cookie(), clear, "{state:?}");
        }
    }

    #[test]
    fn what_a_request_carries() {
        let key = SessionId::generate().unwrap().store_key();
        assert!(SessionState::None.carried().key.is_none());
        assert!(SessionState::Rejected.carried().key.is_none());
        let unknown = SessionState::Unknown(key.clone());
        assert_eq!(unknown.carried().key, Some(&key));
        assert_eq!(unknown.carried().sub, None);
        let a = SessionState::Active(active(Source::Store));
        assert_eq!(a.carried().sub, Some("alice"));
        assert!(a.active().is_some());
    }
}
