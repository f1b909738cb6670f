//! Session operations as the proxy uses them: resolve an id from a cookie, log in (with id
//! rotation), update claims with compare-and-set, log out one or all sessions. Decisions come
//! from `lifecycle`; persistence from the `SessionStore`.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::cache::{SessionCache, Source};
use super::control::Login;
use super::id::{SessionId, StoreKey};
use super::lifecycle::{self, Validity};
use super::record::{Claims, SessionRecord};
use super::renewal::RenewalQueue;
use super::store::{CasOutcome, SessionStore, StoreError};
use crate::config::model::SessionSettings;

/// How many times an update re-reads and retries after losing a compare-and-set race.
const MAX_CAS_ATTEMPTS: u32 = 32;

/// The pause after losing the `attempt`-th race: random, up to 0.2 ms doubled per attempt
/// (capped at 12.8 ms), so that writers contending for one session spread out instead of
/// colliding again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling_us = 200u32 << attempt.min(6);
    Duration::from_micros(u64::from(
        getrandom::u32().unwrap_or(ceiling_us / 2) % ceiling_us,
    ))
}

/// A session that was found and is valid.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub key: StoreKey,
    pub record: Arc<SessionRecord>,
    /// Where the record came from (cache, store, a coalesced read).
    pub source: Source,
}

/// The result of looking up a session id.
#[derive(Debug)]
pub enum Resolution {
    Active(ActiveSession),
    NotFound,
    Expired(Validity),
}

/// What an update did.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    Updated(SessionRecord),
    /// The session is gone or expired; nothing was written.
    NoSession,
}

/// Session operations over one store and one set of session settings.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    settings: SessionSettings,
    cache: Option<Arc<SessionCache>>,
    renewals: Option<Arc<RenewalQueue>>,
}

impl Sessions {
    /// Operations straight on the store: every read is a store read, renewals are inline.
    pub fn new(store: Arc<dyn SessionStore>, settings: SessionSettings) -> Self {
        Sessions {
            store,
            settings,
            cache: None,
            renewals: None,
        }
    }

    /// Reads through `cache`; idle renewals go to `renewals` (write-behind) when given.
    pub fn with_cache(
        mut self,
        cache: Option<Arc<SessionCache>>,
        renewals: Option<Arc<RenewalQueue>>,
    ) -> Self {
        self.cache = cache;
        self.renewals = renewals;
        self
    }

    pub fn cache(&self) -> Option<&Arc<SessionCache>> {
        self.cache.as_ref()
    }

    fn forget(&self, key: &StoreKey) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key);
        }
    }

    fn remember(&self, key: &StoreKey, record: &SessionRecord) {
        if let Some(cache) = &self.cache {
            cache.put_written(key, record.clone());
        }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Looks the id up (through the cache when there is one) and checks its deadlines; renews
    /// the idle deadline when it is due. A failed renewal is logged, not fatal: the session
    /// stays valid until its current deadline.
    pub async fn resolve(&self, id: &SessionId, now: u64) -> Result<Resolution, StoreError> {
        let key = id.store_key();
        let (record, source) = match &self.cache {
            Some(cache) => {
                cache
                    .get_or_load(&key, || self.store.load(&key, now))
                    .await?
            }
            None => (
                self.store.load(&key, now).await?.map(Arc::new),
                Source::Store,
            ),
        };
        let Some(record) = record else {
            return Ok(Resolution::NotFound);
        };
        match lifecycle::check(&record, now) {
            Validity::Active => {}
            expired => return Ok(Resolution::Expired(expired)),
        }
        let record = if lifecycle::needs_renewal(&record, now, self.settings.renew_below) {
            self.renew(&key, record, now).await
        } else {
            record
        };
        Ok(Resolution::Active(ActiveSession {
            key,
            record,
            source,
        }))
    }

    /// Extends the idle deadline. Write-behind when there is a renewal queue, inline otherwise;
    /// either way the write is a compare-and-set, so a renewal can neither resurrect a
    /// destroyed session nor undo a concurrent update.
    async fn renew(
        &self,
        key: &StoreKey,
        record: Arc<SessionRecord>,
        now: u64,
    ) -> Arc<SessionRecord> {
        let next = lifecycle::renewed(&record, now, self.settings.idle_timeout);
        if let Some(queue) = &self.renewals {
            if !queue.enqueue(key, record.v, next.clone()) {
                return record;
            }
            // Later requests see the renewed deadline and do not queue it again.
            self.remember(key, &next);
            return Arc::new(next);
        }
        match self.store.compare_and_set(key, record.v, &next, now).await {
            Ok(CasOutcome::Written) => {
                self.remember(key, &next);
                Arc::new(next)
            }
            Ok(outcome) => {
                debug!(
                    session = key.log_tag(),
                    ?outcome,
                    "renewal skipped: the session changed meanwhile"
                );
                self.forget(key);
                record
            }
            Err(e) => {
                warn!(session = key.log_tag(), error = %e, "idle renewal failed");
                record
            }
        }
    }

    /// Creates a session for `login` under a fresh id, after destroying `previous` (the
    /// session the request carried, if any): an id known before login is useless after it.
    pub async fn login(
        &self,
        previous: Option<(&StoreKey, Option<&str>)>,
        login: &Login,
        now: u64,
    ) -> Result<(SessionId, SessionRecord), StoreError> {
        if let Some((key, sub)) = previous {
            self.store.destroy(key, sub).await?;
            self.forget(key);
        }
        let record = lifecycle::new_record(
            login.sub.clone(),
            login.claims.clone(),
            now,
            self.settings.idle_timeout,
            self.settings.absolute_timeout,
        );
        let id = SessionId::generate()
            .map_err(|e| StoreError::Command(format!("the OS random source failed: {e}")))?;
        let key = id.store_key();
        self.store.create(&key, &record, now).await?;
        self.remember(&key, &record);
        Ok((id, record))
    }

    /// Merges `patch` into the session's claims; on a version conflict re-reads and retries,
    /// so concurrent updates of different claims all survive.
    pub async fn update(
        &self,
        key: &StoreKey,
        patch: &Claims,
        now: u64,
    ) -> Result<UpdateOutcome, StoreError> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some(current) = self.store.load(key, now).await? else {
                return Ok(UpdateOutcome::NoSession);
            };
            if lifecycle::check(&current, now) != Validity::Active {
                return Ok(UpdateOutcome::NoSession);
            }
            let next = lifecycle::updated(&current, patch, now);
            match self
                .store
                .compare_and_set(key, current.v, &next, now)
                .await?
            {
                CasOutcome::Written => return Ok(UpdateOutcome::Updated(next)),
                CasOutcome::Missing => return Ok(UpdateOutcome::NoSession),
                CasOutcome::Conflict => tokio::time::sleep(backoff(attempt)).await,
            }
        }
        Err(StoreError::Command(format!(
            "update lost {MAX_CAS_ATTEMPTS} compare-and-set races in a row"
        )))
    }

    /// Ends one session.
    pub async fn logout(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError> {
        let existed = self.store.destroy(key, sub).await?;
        self.forget(key);
        Ok(existed)
    }

    /// Ends every session of `sub`; returns how many there were.
    pub async fn logout_all(&self, sub: &str) -> Result<usize, StoreError> {
        let keys = self.store.destroy_user(sub).await?;
        for key in &keys {
            self.forget(key);
        }
        Ok(keys.len())
    }
}
