//! Session operations as the proxy uses them: resolve an id from a cookie, log in (with id
//! rotation), update claims with compare-and-set, log out one or all sessions. Decisions come
//! from `lifecycle`; persistence from the `SessionStore`.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::control::Login;
use super::id::{SessionId, StoreKey};
use super::lifecycle::{self, Validity};
use super::record::{Claims, SessionRecord};
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
    pub record: SessionRecord,
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
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, settings: SessionSettings) -> Self {
        Sessions { store, settings }
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Looks the id up and checks its deadlines; renews the idle deadline when it is due. A
    /// failed renewal is logged, not fatal: the session stays valid until its current deadline.
    pub async fn resolve(&self, id: &SessionId, now: u64) -> Result<Resolution, StoreError> {
        let key = id.store_key();
        let Some(record) = self.store.load(&key, now).await? else {
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
        Ok(Resolution::Active(ActiveSession { key, record }))
    }

    /// Extends the idle deadline; only a still-existing, unchanged record is rewritten, so a
    /// renewal can neither resurrect a destroyed session nor undo a concurrent update.
    async fn renew(&self, key: &StoreKey, record: SessionRecord, now: u64) -> SessionRecord {
        let next = lifecycle::renewed(&record, now, self.settings.idle_timeout);
        match self.store.compare_and_set(key, record.v, &next, now).await {
            Ok(CasOutcome::Written) => next,
            Ok(outcome) => {
                debug!(
                    session = key.log_tag(),
                    ?outcome,
                    "renewal skipped: the session changed meanwhile"
                );
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
        self.store.create(&id.store_key(), &record, now).await?;
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
        self.store.destroy(key, sub).await
    }

    /// Ends every session of `sub`.
    pub async fn logout_all(&self, sub: &str) -> Result<usize, StoreError> {
        self.store.destroy_user(sub).await
    }
}
