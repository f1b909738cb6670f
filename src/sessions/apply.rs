//! Every change to a session goes through `Sessions::apply`: the control headers of an app's
//! response today, a login from an identity provider or an operator tomorrow. Logout, then
//! login, then update, as docs/protocol.md says: a response may end every session and start a
//! new one, and an update applies to the session that results. Writes are write-through: the
//! cookie change is returned only once the store has acknowledged.

use std::time::Duration;

use tracing::{info, warn};

use super::{Carried, Sessions, UpdateOutcome};
use crate::metrics::metrics;
use crate::session::control::{claims_fit, ControlRequest, LogoutScope};
use crate::session::lifecycle::merge_patch;
use crate::session::SessionId;
use crate::store::StoreError;

/// What the response does to the browser's session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieChange {
    /// The session ended: drop the cookie.
    Clear,
    /// A new session: set the cookie to `id`, for `lifetime` when it is persistent.
    Issue { id: SessionId, lifetime: Duration },
}

impl Sessions {
    /// Applies `change` to the session the request carried. `None` when the change does not
    /// touch the cookie (an update, or nothing).
    pub async fn apply(
        &self,
        change: ControlRequest,
        carried: Carried<'_>,
        now: u64,
    ) -> Result<Option<CookieChange>, StoreError> {
        let mut cookie = None;
        let mut current = carried.key.map(|key| (key, carried.sub));

        if let Some(scope) = change.logout {
            if let Some((key, sub)) = current.take() {
                match scope {
                    LogoutScope::Current => {
                        self.logout(key, sub).await?;
                        info!(session = key.log_tag(), "session ended by the application");
                    }
                    LogoutScope::All => {
                        // A public route did not resolve the session: find whose it is.
                        let sub = match sub {
                            Some(sub) => Some(sub.to_string()),
                            None => match self.resolve(key, now).await? {
                                super::Resolution::Active(a) => Some(a.session.sub.to_string()),
                                _ => None,
                            },
                        };
                        match sub {
                            Some(sub) => {
                                let ended = self.logout_all(&sub).await?;
                                info!(
                                    session = key.log_tag(),
                                    ended, "every session of the user ended by the application"
                                );
                            }
                            None => {
                                self.logout(key, None).await?;
                            }
                        }
                    }
                }
            }
            cookie = Some(CookieChange::Clear);
        }

        let mut update = change.update;
        if let Some(mut login) = change.login {
            if let Some(patch) = update.take() {
                merge_patch(&mut login.claims, &patch);
            }
            if !claims_fit(&login.claims, self.max_claims_bytes()) {
                warn!("ignored a login whose claims exceed session.max_claims_bytes");
                metrics().control_rejected.inc();
                return Ok(cookie);
            }
            let previous = current.take();
            let (id, record) = self.login(previous, &login, now).await?;
            let lifetime = Duration::from_millis(record.deadlines.absolute.saturating_sub(now));
            info!(
                session = id.store_key().log_tag(),
                "session created by login"
            );
            cookie = Some(CookieChange::Issue { id, lifetime });
        }

        if let Some(patch) = update {
            match current {
                Some((key, _)) => match self.update(key, &patch, now).await? {
                    UpdateOutcome::Updated(_) => {}
                    UpdateOutcome::NoSession => {
                        warn!(
                            session = key.log_tag(),
                            "ignored an update for a session that no longer exists"
                        );
                    }
                    UpdateOutcome::TooLarge => {
                        metrics().control_rejected.inc();
                        warn!(
                            session = key.log_tag(),
                            "ignored an update whose merged claims exceed session.max_claims_bytes"
                        );
                    }
                },
                None => warn!("ignored an update on a request without a session"),
            }
        }
        Ok(cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{CookieSettings, RecordFormat, SameSite, SessionSettings};
    use crate::session::control::Login;
    use crate::session::record::Claims;
    use crate::sessions::{Backend, SessionState};
    use crate::store::memory::MemoryStore;
    use serde_json::json;
    use std::sync::Arc;

    fn sessions() -> Sessions {
        let settings = SessionSettings {
            cookie: CookieSettings {
                name: "__Host-sid".into(),
                secure: true,
                same_site: SameSite::Lax,
                domain: None,
                persistent: false,
            },
            idle_timeout: Duration::from_secs(1800),
            absolute_timeout: Duration::from_secs(43200),
            renew_below: Duration::from_secs(900),
            format: RecordFormat::MessagePack,
            max_claims_bytes: 4096,
            cookie_keys: Vec::new(),
            tunnel_recheck: Duration::from_secs(10),
        };
        Sessions::new(
            Backend::over(Arc::new(MemoryStore::new(100))),
            settings,
            vec!["sub".into(), "email".into()],
        )
    }

    fn claims(v: serde_json::Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    fn login(sub: &str) -> ControlRequest {
        ControlRequest {
            login: Some(Login {
                sub: sub.into(),
                claims: claims(json!({"email": format!("{sub}@x")})),
                provider: None,
            }),
            ..Default::default()
        }
    }

    /// Logs `sub` in and returns the state a request with the new cookie resolves to.
    async fn logged_in(s: &Sessions, sub: &str, now: u64) -> SessionState {
        let Some(CookieChange::Issue { id, .. }) =
            s.apply(login(sub), Carried::default(), now).await.unwrap()
        else {
            panic!("a login issues a cookie");
        };
        s.lookup(id.store_key(), false, now).await
    }

    #[tokio::test]
    async fn a_login_rotates_the_carried_session_and_issues_a_cookie() {
        let s = sessions();
        let before = logged_in(&s, "alice", 1000).await;
        let Some(CookieChange::Issue { id, lifetime }) = s
            .apply(login("alice"), before.carried(), 2000)
            .await
            .unwrap()
        else {
            panic!("a login issues a cookie");
        };
        assert_eq!(lifetime, Duration::from_millis(43_200_000));
        let old = before.key().unwrap().clone();
        assert!(matches!(
            s.lookup(old.clone(), false, 2000).await,
            SessionState::Unknown(_)
        ));
        let new = s.lookup(id.store_key(), false, 2000).await;
        assert_eq!(&*new.active().unwrap().session.sub, "alice");
        assert_ne!(new.key(), Some(&old));
    }

    #[tokio::test]
    async fn logout_then_login_then_update_in_one_response() {
        let s = sessions();
        let alice = logged_in(&s, "alice", 1000).await;
        let change = ControlRequest {
            logout: Some(LogoutScope::Current),
            login: Some(Login {
                sub: "bob".into(),
                claims: Claims::new(),
                provider: None,
            }),
            update: Some(claims(json!({"theme": "dark"}))),
        };
        let Some(CookieChange::Issue { id, .. }) =
            s.apply(change, alice.carried(), 2000).await.unwrap()
        else {
            panic!("the login wins over the logout's clear");
        };
        let bob = s.lookup(id.store_key(), false, 2000).await;
        let bob = bob.active().unwrap();
        assert_eq!(&*bob.session.sub, "bob");
        assert_eq!(
            &*bob.session.claims_json, r#"{"theme":"dark"}"#,
            "merged into the login"
        );
        assert!(matches!(
            s.lookup(alice.key().unwrap().clone(), false, 2000).await,
            SessionState::Unknown(_)
        ));
    }

    #[tokio::test]
    async fn logout_all_from_a_route_that_did_not_resolve_the_session() {
        let s = sessions();
        let one = logged_in(&s, "alice", 1000).await;
        let two = logged_in(&s, "alice", 1000).await;
        let bob = logged_in(&s, "bob", 1000).await;
        // A public route carries the key only.
        let carried = Carried {
            key: one.key(),
            sub: None,
        };
        let change = ControlRequest {
            logout: Some(LogoutScope::All),
            ..Default::default()
        };
        assert_eq!(
            s.apply(change, carried, 2000).await.unwrap(),
            Some(CookieChange::Clear)
        );
        for ended in [&one, &two] {
            assert!(matches!(
                s.lookup(ended.key().unwrap().clone(), false, 2000).await,
                SessionState::Unknown(_)
            ));
        }
        assert!(s
            .lookup(bob.key().unwrap().clone(), false, 2000)
            .await
            .active()
            .is_some());
    }

    #[tokio::test]
    async fn updates_merge_and_oversized_ones_change_nothing() {
        let s = sessions();
        let alice = logged_in(&s, "alice", 1000).await;
        let update = |v: serde_json::Value| ControlRequest {
            update: Some(claims(v)),
            ..Default::default()
        };
        assert_eq!(
            s.apply(update(json!({"theme": "dark"})), alice.carried(), 1500)
                .await
                .unwrap(),
            None,
            "an update leaves the cookie alone"
        );
        let big = "x".repeat(5000);
        s.apply(update(json!({ "blob": big })), alice.carried(), 1600)
            .await
            .unwrap();
        let now = s.lookup(alice.key().unwrap().clone(), false, 1700).await;
        let claims: serde_json::Value =
            serde_json::from_str(&now.active().unwrap().session.claims_json).unwrap();
        assert_eq!(claims, json!({"email": "alice@x", "theme": "dark"}));
        // Without a session there is nothing to update.
        assert_eq!(
            s.apply(update(json!({"a": 1})), Carried::default(), 1800)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_oversized_login_creates_nothing() {
        let s = sessions();
        let change = ControlRequest {
            login: Some(Login {
                sub: "alice".into(),
                claims: claims(json!({"blob": "y".repeat(5000)})),
                provider: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            s.apply(change, Carried::default(), 1000).await.unwrap(),
            None
        );
    }
}
