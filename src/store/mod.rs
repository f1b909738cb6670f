//! Persistence of session records: the interface every backend implements and its errors,
//! the embedded memory store, the Redis store (standalone, Sentinel, Cluster), the key schema,
//! and the one layer around a store that meters every call and guards it with a circuit
//! breaker.
//!
//! The store knows sessions only by `StoreKey` (the hash of the id) and keeps a per-user set of
//! them. Every method is one logical operation with its own deadline; the decisions of *when*
//! to call them live in `session::lifecycle` and `sessions`.

pub mod breaker;
pub mod keys;
pub mod layer;
pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

use crate::session::record::{RecordDecodeError, SessionRecord};
use crate::session::StoreKey;

pub use keys::KeySchema;
pub use layer::StoreLayer;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the session store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the session store is unreachable: {0}")]
    Unavailable(String),
    #[error("the session store refused the command: {0}")]
    Command(String),
    #[error(transparent)]
    Corrupt(#[from] RecordDecodeError),
    #[error("the session store is full ({0} sessions); raise store.max_sessions")]
    Full(usize),
    #[error("a session with this key already exists")]
    Exists,
    #[error("the session store circuit is open after repeated failures")]
    CircuitOpen,
}

impl StoreError {
    /// A short, stable name for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Command(_) => "command",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Full(_) => "full",
            StoreError::Exists => "exists",
            StoreError::CircuitOpen => "circuit_open",
        }
    }
}

/// What a compare-and-set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// The stored version matched; the new record is stored.
    Written,
    /// Someone wrote in between; nothing changed.
    Conflict,
    /// The session no longer exists; nothing was (re)created.
    Missing,
}

/// The short-lived values a store keeps beside sessions, each kind under its own keys
/// (docs/protocol.md): never a session, never counted as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aux {
    /// A sign-in in progress (state, nonce, PKCE verifier), single use.
    Flow,
    /// A logout token's `jti`, kept so a replay is refused.
    Replay,
    /// An identity provider's session or subject, naming the sessions it signed in.
    ProviderIndex,
    /// The right to refresh one session's provider tokens, for one instance at a time.
    RefreshLock,
}

impl Aux {
    /// The key segment of this kind.
    pub fn segment(self) -> &'static str {
        match self {
            Aux::Flow => "f",
            Aux::Replay => "j",
            Aux::ProviderIndex => "p",
            Aux::RefreshLock => "l",
        }
    }

    /// The name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Aux::Flow => "flow",
            Aux::Replay => "replay",
            Aux::ProviderIndex => "provider_index",
            Aux::RefreshLock => "refresh_lock",
        }
    }
}

/// A session store. `now` is Unix milliseconds, used to compute key TTLs (and, for the memory
/// store, expiry).
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The record under `key`, or `None` when there is none (or it has expired).
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<SessionRecord>, StoreError>;

    /// Stores a new session and adds it to its user's set. Never overwrites an existing key.
    async fn create(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError>;

    /// Replaces the record only if the stored one has version `expected`. Never recreates a
    /// key that is gone.
    async fn compare_and_set(
        &self,
        key: &StoreKey,
        expected: u64,
        record: &SessionRecord,
        now: u64,
    ) -> Result<CasOutcome, StoreError>;

    /// Several compare-and-sets at once (the Redis store pipelines them); one outcome per
    /// write, in order.
    async fn compare_and_set_many(
        &self,
        writes: &[(StoreKey, u64, SessionRecord)],
        now: u64,
    ) -> Result<Vec<CasOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(writes.len());
        for (key, expected, record) in writes {
            outcomes.push(self.compare_and_set(key, *expected, record, now).await?);
        }
        Ok(outcomes)
    }

    /// Removes one session (and, when `sub` is known, its entry in the user's set). Returns
    /// whether it existed.
    async fn destroy(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError>;

    /// Removes every session of `sub`; returns the keys of those that existed.
    async fn destroy_user(&self, sub: &str) -> Result<Vec<StoreKey>, StoreError>;

    /// The live sessions of `sub`, pruning stale members of the user's set on the way.
    async fn user_sessions(&self, sub: &str, now: u64) -> Result<Vec<StoreKey>, StoreError>;

    /// Stores `value` under (`kind`, `id`) for `ttl_ms`; with `only_if_absent`, only when
    /// nothing is stored there yet. Returns whether it was stored.
    async fn put_aux(
        &self,
        kind: Aux,
        id: &str,
        value: &[u8],
        ttl_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, StoreError>;

    /// The value under (`kind`, `id`), if any.
    async fn get_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The value under (`kind`, `id`), removed in the same step: of two callers, one gets it.
    async fn take_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How many sessions the store holds (for the active-sessions gauge; sampled in the
    /// background, never on a request).
    async fn count(&self, now: u64) -> Result<u64, StoreError>;

    /// Periodic housekeeping (the memory store sweeps expired sessions). Returns how many
    /// entries it removed.
    async fn maintain(&self, _now: u64) -> usize {
        0
    }
}

/// Milliseconds a key should live: until the record's earlier deadline, at least 1 ms.
pub fn ttl_ms(record: &SessionRecord, now: u64) -> u64 {
    record.expires_at().saturating_sub(now).max(1)
}
