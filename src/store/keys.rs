//! The Redis key schema (docs/protocol.md): `{prefix}s:{H(id)}` holds a session's record and
//! `{prefix}u:{sub}` the set of a user's `H(id)`s. One type, used by the store, the
//! invalidation listener (which tracks the session keys by prefix) and the tests.

use crate::session::StoreKey;

/// The keys under one configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    /// `{prefix}s:`, the start of every session key.
    session_prefix: String,
    /// `{prefix}u:`, the start of every user set's key.
    user_prefix: String,
    /// `{prefix}`, before the short-lived values' kinds.
    prefix: String,
}

impl KeySchema {
    pub fn new(prefix: &str) -> Self {
        KeySchema {
            session_prefix: format!("{prefix}s:"),
            user_prefix: format!("{prefix}u:"),
            prefix: prefix.to_string(),
        }
    }

    /// The key of a session's record.
    pub fn session(&self, key: &StoreKey) -> String {
        let mut out = String::with_capacity(self.session_prefix.len() + key.as_str().len());
        out.push_str(&self.session_prefix);
        out.push_str(key.as_str());
        out
    }

    /// The key of a user's set of sessions.
    pub fn user(&self, sub: &str) -> String {
        format!("{}{sub}", self.user_prefix)
    }

    /// The key of a short-lived value: `{prefix}{segment}:{id}` (`f` flows, `j` replay marks,
    /// `p` provider indexes, `l` refresh locks).
    pub fn aux(&self, kind: super::Aux, id: &str) -> String {
        format!("{}{}:{id}", self.prefix, kind.segment())
    }

    /// What every session key starts with (what client-side caching tracks).
    pub fn session_prefix(&self) -> &str {
        &self.session_prefix
    }

    /// The session a Redis key names, when it is a session key of this schema.
    pub fn session_of(&self, redis_key: &str) -> Option<StoreKey> {
        redis_key
            .strip_prefix(&self.session_prefix)
            .map(StoreKey::from_stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_protocol() {
        let k = KeySchema::new("sg:");
        let key = StoreKey::from_stored("abc");
        assert_eq!(k.session(&key), "sg:s:abc");
        assert_eq!(k.user("alice"), "sg:u:alice");
        assert_eq!(k.session_prefix(), "sg:s:");
        assert_eq!(k.session_of("sg:s:abc"), Some(key));
        assert_eq!(k.session_of("sg:u:alice"), None);
        assert_eq!(k.session_of("other:s:abc"), None);
        assert_eq!(k.aux(super::super::Aux::Flow, "xyz"), "sg:f:xyz");
        assert_eq!(k.session_of(&k.aux(super::super::Aux::Flow, "xyz")), None);
    }
}
