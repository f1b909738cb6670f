//! Sessions an identity provider signed in: the index from the provider's session (`sid`) and
//! subject to the sessions they made, so a back-channel logout finds them on every instance;
//! ending them; and replacing the provider's tokens after a refresh (compare-and-set, so a
//! refresh never undoes another write).

use tracing::info;

use super::Sessions;
use crate::metrics::{destroyed, metrics};
use crate::session::record::{ProviderLink, Validity};
use crate::session::{PreparedSession, StoreKey};
use crate::store::{Aux, CasOutcome, StoreError};

/// The index entry of a provider's session or subject (hashed: the store holds no provider
/// identifiers as keys).
fn index_id(kind: &str, provider: &str, value: &str) -> String {
    crate::oidc::flow::hashed(&format!("{kind}\0{provider}\0{value}"))
}

/// Whom a back-channel logout names.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSubject<'a> {
    pub provider: &'a str,
    pub sid: Option<&'a str>,
    pub sub: Option<&'a str>,
}

/// What replacing the tokens did.
#[derive(Debug, Clone, PartialEq)]
pub enum Replaced {
    Done(std::sync::Arc<PreparedSession>),
    /// The session is gone or expired.
    NoSession,
}

impl Sessions {
    /// Records that the provider's session `sid` and subject `psub` signed in the user `sub`.
    pub async fn index_provider_session(
        &self,
        link: &ProviderLink,
        sub: &str,
    ) -> Result<(), StoreError> {
        let ttl = u64::try_from(self.settings.absolute_timeout.as_millis()).unwrap_or(u64::MAX);
        if let Some(sid) = &link.sid {
            self.store()
                .put_aux(
                    Aux::ProviderIndex,
                    &index_id("sid", &link.name, sid),
                    sub.as_bytes(),
                    ttl,
                    false,
                )
                .await?;
        }
        self.store()
            .put_aux(
                Aux::ProviderIndex,
                &index_id("sub", &link.name, &link.sub),
                sub.as_bytes(),
                ttl,
                false,
            )
            .await?;
        Ok(())
    }

    /// Ends the sessions the provider's logout names: those of its session `sid` when given,
    /// else every session of its subject. Returns how many ended.
    pub async fn end_provider_sessions(
        &self,
        who: ProviderSubject<'_>,
        now: u64,
    ) -> Result<usize, StoreError> {
        let (kind, value) = match (who.sid, who.sub) {
            (Some(sid), _) => ("sid", sid),
            (None, Some(sub)) => ("sub", sub),
            (None, None) => return Ok(0),
        };
        let Some(owner) = self
            .store()
            .get_aux(Aux::ProviderIndex, &index_id(kind, who.provider, value))
            .await?
        else {
            return Ok(0);
        };
        let owner = String::from_utf8_lossy(&owner).into_owned();
        let mut ended = 0;
        for (key, record) in self.list(&owner, now).await? {
            let Some(link) = &record.provider else {
                continue;
            };
            let matches = link.name == who.provider
                && match (who.sid, who.sub) {
                    (Some(sid), sub) => {
                        link.sid.as_deref() == Some(sid) && sub.is_none_or(|s| s == link.sub)
                    }
                    (None, Some(sub)) => link.sub == sub,
                    (None, None) => false,
                };
            if matches && self.end(&key, Some(&owner), destroyed::BACKCHANNEL).await? {
                info!(
                    session = key.log_tag(),
                    provider = who.provider,
                    "session ended by the identity provider's back-channel logout"
                );
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// The session as the store has it now (not the cache), prepared and put in the cache;
    /// `None` when it is gone or expired.
    pub async fn reload(
        &self,
        key: &StoreKey,
        now: u64,
    ) -> Result<Option<std::sync::Arc<PreparedSession>>, StoreError> {
        match self.store().load(key, now).await? {
            Some(record) if record.deadlines.validity(now) == Validity::Active => {
                Ok(Some(self.remember(key, self.prepare(&record))))
            }
            _ => Ok(None),
        }
    }

    /// Ends a session whose provider tokens can no longer be refreshed.
    pub async fn end_unrefreshable(&self, key: &StoreKey, sub: &str) -> Result<bool, StoreError> {
        self.end(key, Some(sub), destroyed::REFRESH_FAILED).await
    }

    /// Replaces the provider's side of the session with `link` (fresh tokens, the next refresh
    /// time); re-reads and retries when another write came first.
    pub async fn replace_provider_link(
        &self,
        key: &StoreKey,
        link: ProviderLink,
        now: u64,
    ) -> Result<Replaced, StoreError> {
        for attempt in 0..super::MAX_CAS_ATTEMPTS {
            let Some(current) = self.store().load(key, now).await? else {
                return Ok(Replaced::NoSession);
            };
            if current.deadlines.validity(now) != Validity::Active {
                return Ok(Replaced::NoSession);
            }
            let mut next = current.clone();
            next.v += 1;
            next.deadlines = current.deadlines.seen(now);
            next.provider = Some(Box::new(link.clone()));
            match self
                .store()
                .compare_and_set(key, current.v, &next, now)
                .await?
            {
                CasOutcome::Written => {
                    metrics().provider_refreshes.inc();
                    return Ok(Replaced::Done(self.remember(key, self.prepare(&next))));
                }
                CasOutcome::Missing => return Ok(Replaced::NoSession),
                CasOutcome::Conflict => tokio::time::sleep(super::backoff(attempt)).await,
            }
        }
        Err(StoreError::Command(format!(
            "a token refresh lost {} compare-and-set races in a row",
            super::MAX_CAS_ATTEMPTS
        )))
    }
}
