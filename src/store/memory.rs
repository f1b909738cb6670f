//! The embedded in-memory store, for a single node: no Redis to run, sessions lost on restart.
//!
//! Bounded by `max_sessions` (creates beyond it fail with `StoreError::Full` rather than evict
//! someone's live session); expired entries are dropped on read and swept by `maintain`.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Aux, CasOutcome, SessionStore, StoreError};
use crate::session::{SessionRecord, StoreKey};

pub struct MemoryStore {
    max_sessions: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<StoreKey, SessionRecord>,
    users: HashMap<String, HashSet<StoreKey>>,
    /// Short-lived values and when they expire (Unix ms).
    values: HashMap<(Aux, String), (Vec<u8>, u64)>,
}

impl Inner {
    fn unindex(&mut self, sub: &str, key: &StoreKey) {
        if let Some(set) = self.users.get_mut(sub) {
            set.remove(key);
            if set.is_empty() {
                self.users.remove(sub);
            }
        }
    }

    fn sweep(&mut self, now: u64) -> usize {
        let expired: Vec<(StoreKey, String)> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.expires_at() <= now)
            .map(|(k, r)| (k.clone(), r.sub.clone()))
            .collect();
        for (key, sub) in &expired {
            self.sessions.remove(key);
            self.unindex(sub, key);
        }
        let values = self.values.len();
        self.values.retain(|_, (_, expires)| *expires > now);
        expired.len() + values - self.values.len()
    }
}

impl MemoryStore {
    pub fn new(max_sessions: usize) -> Self {
        MemoryStore {
            max_sessions,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No method panics while holding the lock, so a poisoned lock still holds sound data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions held, expired or not.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        let mut inner = self.lock();
        match inner.sessions.get(key) {
            Some(r) if r.expires_at() > now => Ok(Some(r.clone())),
            Some(r) => {
                let sub = r.sub.clone();
                inner.sessions.remove(key);
                inner.unindex(&sub, key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn create(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.sessions.len() >= self.max_sessions && inner.sweep(now) == 0 {
            return Err(StoreError::Full(self.max_sessions));
        }
        if inner.sessions.contains_key(key) {
            return Err(StoreError::Exists);
        }
        inner.sessions.insert(key.clone(), record.clone());
        inner
            .users
            .entry(record.sub.clone())
            .or_default()
            .insert(key.clone());
        Ok(())
    }

    async fn compare_and_set(
        &self,
        key: &StoreKey,
        expected: u64,
        record: &SessionRecord,
        now: u64,
    ) -> Result<CasOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(current) = inner.sessions.get_mut(key) else {
            return Ok(CasOutcome::Missing);
        };
        if current.expires_at() <= now {
            return Ok(CasOutcome::Missing);
        }
        if current.v != expected {
            return Ok(CasOutcome::Conflict);
        }
        *current = record.clone();
        Ok(CasOutcome::Written)
    }

    async fn destroy(&self, key: &StoreKey, _sub: Option<&str>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.sessions.remove(key) {
            Some(r) => {
                inner.unindex(&r.sub, key);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn destroy_user(&self, sub: &str) -> Result<Vec<StoreKey>, StoreError> {
        let mut inner = self.lock();
        let keys = inner.users.remove(sub).unwrap_or_default();
        let mut removed: Vec<StoreKey> = keys
            .into_iter()
            .filter(|k| inner.sessions.remove(k).is_some())
            .collect();
        removed.sort();
        Ok(removed)
    }

    async fn user_sessions(&self, sub: &str, now: u64) -> Result<Vec<StoreKey>, StoreError> {
        let inner = self.lock();
        let mut keys: Vec<StoreKey> = inner
            .users
            .get(sub)
            .map(|set| {
                set.iter()
                    .filter(|k| inner.sessions.get(*k).is_some_and(|r| r.expires_at() > now))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        Ok(keys)
    }

    async fn put_aux(
        &self,
        kind: Aux,
        id: &str,
        value: &[u8],
        ttl_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let now = crate::session::lifecycle::now_ms();
        let mut inner = self.lock();
        let key = (kind, id.to_string());
        if only_if_absent && inner.values.get(&key).is_some_and(|(_, e)| *e > now) {
            return Ok(false);
        }
        // Values are bounded like sessions: a flood of sign-ins cannot grow the process.
        if !inner.values.contains_key(&key) && inner.values.len() >= self.max_sessions {
            inner.sweep(now);
            if inner.values.len() >= self.max_sessions {
                return Err(StoreError::Full(self.max_sessions));
            }
        }
        inner
            .values
            .insert(key, (value.to_vec(), now.saturating_add(ttl_ms.max(1))));
        Ok(true)
    }

    async fn get_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = crate::session::lifecycle::now_ms();
        let inner = self.lock();
        Ok(inner
            .values
            .get(&(kind, id.to_string()))
            .filter(|(_, e)| *e > now)
            .map(|(v, _)| v.clone()))
    }

    async fn take_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = crate::session::lifecycle::now_ms();
        let mut inner = self.lock();
        Ok(inner
            .values
            .remove(&(kind, id.to_string()))
            .filter(|(_, e)| *e > now)
            .map(|(v, _)| v))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn count(&self, now: u64) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner
            .sessions
            .values()
            .filter(|r| r.expires_at() > now)
            .count() as u64)
    }

    async fn maintain(&self, now: u64) -> usize {
        self.lock().sweep(now)
    }
}
