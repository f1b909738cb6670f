//! The session service the proxy and the admin API call: resolve a request's session (through
//! the cache, with write-behind idle renewal and stale serving), apply the changes an app or an
//! identity provider asks for (`apply`: login with id rotation, compare-and-set updates, logout
//! of one or all sessions), list and revoke. Decisions come from `session::lifecycle` and the
//! deadlines; persistence from the `store`; the hot reads from the `cache`.

pub mod apply;
pub mod backend;
pub mod provider;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::cache::Source;
use crate::config::model::SessionSettings;
use crate::metrics::{destroyed, metrics};
use crate::session::control::Login;
use crate::session::lifecycle;
use crate::session::record::{Claims, SessionRecord, Validity};
use crate::session::{PreparedSession, SessionId, StoreKey};
use crate::store::{CasOutcome, SessionStore, StoreError};

pub use backend::{Backend, BackgroundTasks};
pub use state::{ActiveSession, Carried, SessionState};

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
    /// The merged claims would exceed `session.max_claims_bytes`; nothing was written.
    TooLarge,
}

/// Session operations over the process's backend, with one configuration's session settings
/// and identity-header projection.
pub struct Sessions {
    backend: Arc<Backend>,
    settings: SessionSettings,
    /// The claim behind each mapped identity header, in header order.
    projection: Vec<String>,
}

impl Sessions {
    pub fn new(backend: Arc<Backend>, settings: SessionSettings, projection: Vec<String>) -> Self {
        Sessions {
            backend,
            settings,
            projection,
        }
    }

    /// The backend these operations run on.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    fn store(&self) -> &dyn SessionStore {
        &*self.backend.store
    }

    /// The most bytes a session's claims may take as JSON.
    pub fn max_claims_bytes(&self) -> usize {
        self.settings.max_claims_bytes
    }

    fn prepare(&self, record: &SessionRecord) -> PreparedSession {
        PreparedSession::new(record, &self.projection)
    }

    /// The session from the cache as last read, if that was within the stale window and its
    /// deadlines still hold: for `serve_stale` routes while the store cannot answer.
    pub fn resolve_stale(&self, key: &StoreKey, now: u64) -> Option<ActiveSession> {
        let cache = self.backend.cache.as_ref()?;
        let session = cache.get_stale(key, self.backend.stale_window)?;
        (session.deadlines.validity(now) == Validity::Active).then(|| ActiveSession {
            key: key.clone(),
            session,
            source: Source::Cache,
        })
    }

    fn forget(&self, key: &StoreKey) {
        if let Some(cache) = &self.backend.cache {
            cache.invalidate(key);
        }
    }

    fn remember(&self, key: &StoreKey, session: PreparedSession) -> Arc<PreparedSession> {
        if let Some(cache) = &self.backend.cache {
            cache.put_written(key, session.clone());
        }
        Arc::new(session)
    }

    /// The session state of a request carrying a well-formed cookie for `key`: looked up, and
    /// when the store cannot answer, a recently cached copy if `stale_allowed`.
    pub async fn lookup(&self, key: StoreKey, stale_allowed: bool, now: u64) -> SessionState {
        match self.resolve(&key, now).await {
            Ok(Resolution::Active(active)) => SessionState::Active(active),
            Ok(Resolution::NotFound) => SessionState::Unknown(key),
            Ok(Resolution::Expired(_)) => SessionState::Expired(key),
            Err(e) => {
                warn!(error = %e, kind = e.kind(), "session lookup failed");
                match stale_allowed
                    .then(|| self.resolve_stale(&key, now))
                    .flatten()
                {
                    Some(active) => SessionState::Stale(active),
                    None => SessionState::StoreDown(key),
                }
            }
        }
    }

    /// Looks `key` up (through the cache when there is one) and checks its deadlines; renews
    /// the idle deadline when it is due. A failed renewal is logged, not fatal: the session
    /// stays valid until its current deadline.
    pub async fn resolve(&self, key: &StoreKey, now: u64) -> Result<Resolution, StoreError> {
        let (session, source) = match self.current(key, now).await? {
            Ok(found) => found,
            Err(other) => return Ok(other),
        };
        let session = if session
            .deadlines
            .renewal_due(now, self.settings.renew_below)
        {
            self.renew(key, session, now).await
        } else {
            session
        };
        Ok(Resolution::Active(ActiveSession {
            key: key.clone(),
            session,
            source,
        }))
    }

    /// Whether the session of `key` still stands (known, not ended, within its deadlines),
    /// without renewing it: for connections that outlive their request (WebSocket tunnels).
    pub async fn still_active(&self, key: &StoreKey, now: u64) -> Result<bool, StoreError> {
        Ok(self.current(key, now).await?.is_ok())
    }

    /// The session of `key` when it is active, or the resolution that says why not.
    async fn current(
        &self,
        key: &StoreKey,
        now: u64,
    ) -> Result<Result<(Arc<PreparedSession>, Source), Resolution>, StoreError> {
        let load = || async {
            let record = self.store().load(key, now).await?;
            Ok(record.map(|r| self.prepare(&r)))
        };
        let (session, source) = match &self.backend.cache {
            Some(cache) => cache.get_or_load(key, load).await?,
            None => (load().await?.map(Arc::new), Source::Store),
        };
        let Some(session) = session else {
            return Ok(Err(Resolution::NotFound));
        };
        match session.deadlines.validity(now) {
            Validity::Active => Ok(Ok((session, source))),
            expired => Ok(Err(Resolution::Expired(expired))),
        }
    }

    /// Extends the idle deadline. Write-behind when there is a renewal queue, inline otherwise;
    /// either way the write is a compare-and-set, so a renewal can neither resurrect a
    /// destroyed session nor undo a concurrent update.
    async fn renew(
        &self,
        key: &StoreKey,
        session: Arc<PreparedSession>,
        now: u64,
    ) -> Arc<PreparedSession> {
        let next = session.with_deadlines(
            session.v + 1,
            session.deadlines.renewed(now, self.settings.idle_timeout),
        );
        let record = next.to_record();
        if let Some(queue) = &self.backend.renewals {
            if !queue.enqueue(key, session.v, record) {
                return session;
            }
            // Later requests see the renewed deadline and do not queue it again.
            return self.remember(key, next);
        }
        match self
            .store()
            .compare_and_set(key, session.v, &record, now)
            .await
        {
            Ok(CasOutcome::Written) => {
                metrics().sessions_renewed.inc();
                self.remember(key, next)
            }
            Ok(outcome) => {
                debug!(
                    session = key.log_tag(),
                    ?outcome,
                    "renewal skipped: the session changed meanwhile"
                );
                self.forget(key);
                session
            }
            Err(e) => {
                warn!(session = key.log_tag(), error = %e, "idle renewal failed");
                session
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
            if self.store().destroy(key, sub).await? {
                metrics().sessions_rotated.inc();
                metrics()
                    .sessions_destroyed
                    .with_label_values(&[destroyed::ROTATED])
                    .inc();
            }
            self.forget(key);
        }
        let mut record = lifecycle::new_record(
            login.sub.clone(),
            login.claims.clone(),
            now,
            self.settings.idle_timeout,
            self.settings.absolute_timeout,
        );
        record.provider = login.provider.clone().map(Box::new);
        let id = SessionId::generate()
            .map_err(|e| StoreError::Command(format!("the OS random source failed: {e}")))?;
        let key = id.store_key();
        self.store().create(&key, &record, now).await?;
        self.remember(&key, self.prepare(&record));
        metrics().sessions_created.inc();
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
            let Some(current) = self.store().load(key, now).await? else {
                return Ok(UpdateOutcome::NoSession);
            };
            if current.deadlines.validity(now) != Validity::Active {
                return Ok(UpdateOutcome::NoSession);
            }
            let next = lifecycle::updated(&current, patch, now);
            if !crate::session::control::claims_fit(&next.claims, self.settings.max_claims_bytes) {
                return Ok(UpdateOutcome::TooLarge);
            }
            match self
                .store()
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

    /// Ends one session (the application logged the user out).
    pub async fn logout(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError> {
        self.end(key, sub, destroyed::LOGOUT).await
    }

    /// Ends every session of `sub` (the application logged the user out everywhere); returns
    /// how many there were.
    pub async fn logout_all(&self, sub: &str) -> Result<usize, StoreError> {
        self.end_all(sub, destroyed::LOGOUT_ALL).await
    }

    /// Ends one session by its key, on an operator's request; `false` if there was none.
    pub async fn revoke(&self, key: &StoreKey, now: u64) -> Result<bool, StoreError> {
        // The owner is read first so the user's set loses the member too.
        let sub = self.store().load(key, now).await?.map(|r| r.sub);
        self.end(key, sub.as_deref(), destroyed::ADMIN).await
    }

    /// Ends every session of `sub`, on an operator's request.
    pub async fn revoke_user(&self, sub: &str) -> Result<usize, StoreError> {
        self.end_all(sub, destroyed::ADMIN).await
    }

    /// The sessions of `sub` that still exist, with their records.
    pub async fn list(
        &self,
        sub: &str,
        now: u64,
    ) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let mut sessions = Vec::new();
        for key in self.store().user_sessions(sub, now).await? {
            if let Some(record) = self.store().load(&key, now).await? {
                if record.deadlines.validity(now) == Validity::Active {
                    sessions.push((key, record));
                }
            }
        }
        Ok(sessions)
    }

    async fn end(
        &self,
        key: &StoreKey,
        sub: Option<&str>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let existed = self.store().destroy(key, sub).await?;
        self.forget(key);
        if existed {
            metrics()
                .sessions_destroyed
                .with_label_values(&[reason])
                .inc();
        }
        Ok(existed)
    }

    async fn end_all(&self, sub: &str, reason: &str) -> Result<usize, StoreError> {
        let keys = self.store().destroy_user(sub).await?;
        for key in &keys {
            self.forget(key);
        }
        metrics()
            .sessions_destroyed
            .with_label_values(&[reason])
            .inc_by(keys.len() as u64);
        Ok(keys.len())
    }
}
