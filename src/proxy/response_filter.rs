//! The response phase: read and remove the control headers, apply them to the store
//! (write-through: the cookie is set only after the store acknowledged), and set or clear the
//! session cookie.

use std::time::Duration;

use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::HeaderName;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use tracing::{info, warn};

use super::ctx::RequestCtx;
use crate::cookie::SessionCookie;
use crate::identity::namespace::PREFIX;
use crate::session::control::{self, ControlRequest, LogoutScope};
use crate::session::lifecycle::{merge_patch, now_ms};
use crate::session::{Resolution, StoreError, StoreKey, UpdateOutcome};

/// What the response does to the browser's cookie.
#[derive(Debug, PartialEq, Eq)]
enum CookieChange {
    Keep,
    Clear,
    Issue(String),
}

fn store_failure(e: StoreError) -> Box<Error> {
    warn!(error = %e, kind = e.kind(), "session change failed; answering 503 and keeping the cookie");
    Error::explain(
        ErrorType::HTTPStatus(503),
        "the session store did not accept the change",
    )
}

pub async fn run(response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    let internal: Vec<HeaderName> = response
        .headers
        .keys()
        .filter(|n| n.as_str().as_bytes().starts_with(PREFIX))
        .cloned()
        .collect();
    // Most responses carry no header of the namespace, hence no control header to look up.
    let parsed = if internal.is_empty() {
        Ok(ControlRequest::default())
    } else {
        control::parse(&response.headers)
    };
    for name in &internal {
        response.remove_header(name);
    }

    let mut change = if ctx.clear_cookie {
        CookieChange::Clear
    } else {
        CookieChange::Keep
    };
    match parsed {
        Err(e) => {
            crate::metrics::metrics().control_rejected.inc();
            warn!(error = %e, "ignored malformed control headers; the session is unchanged");
        }
        Ok(request) if request.is_empty() => {}
        Ok(request) => {
            if let Some(applied) = apply(request, ctx).await.map_err(store_failure)? {
                change = applied;
            }
        }
    }

    let state = ctx.state();
    match change {
        CookieChange::Keep => return Ok(()),
        CookieChange::Clear => response.append_header(SET_COOKIE, state.cookies.clear())?,
        CookieChange::Issue(value) => response.append_header(SET_COOKIE, value)?,
    };
    response.insert_header(CACHE_CONTROL, "no-store")?;
    Ok(())
}

/// The key (and `sub`, when known) of the session the request carried, resolved or not.
fn carried(ctx: &RequestCtx) -> Option<(StoreKey, Option<String>)> {
    if let Some(active) = &ctx.session {
        return Some((active.key.clone(), Some(active.session.sub.to_string())));
    }
    match &ctx.cookie {
        SessionCookie::Valid(id) => Some((id.store_key(), None)),
        _ => None,
    }
}

/// Applies logout, then login, then update. Returns the cookie change, if any.
async fn apply(
    request: ControlRequest,
    ctx: &RequestCtx,
) -> Result<Option<CookieChange>, StoreError> {
    let state = ctx.state();
    let sessions = &state.sessions;
    let now = now_ms();
    let mut change = None;
    let mut current = carried(ctx);

    if let Some(scope) = request.logout {
        if let Some((key, sub)) = current.take() {
            match scope {
                LogoutScope::Current => {
                    sessions.logout(&key, sub.as_deref()).await?;
                    info!(session = key.log_tag(), "session ended by the application");
                }
                LogoutScope::All => {
                    // A public route did not resolve the session: find whose it is.
                    let sub = match sub {
                        Some(sub) => Some(sub),
                        None => match &ctx.cookie {
                            SessionCookie::Valid(id) => match sessions.resolve(id, now).await? {
                                Resolution::Active(a) => Some(a.session.sub.to_string()),
                                _ => None,
                            },
                            _ => None,
                        },
                    };
                    match sub {
                        Some(sub) => {
                            let ended = sessions.logout_all(&sub).await?;
                            info!(
                                session = key.log_tag(),
                                ended, "every session of the user ended by the application"
                            );
                        }
                        None => {
                            sessions.logout(&key, None).await?;
                        }
                    }
                }
            }
        }
        change = Some(CookieChange::Clear);
    }

    let mut update = request.update;
    if let Some(mut login) = request.login {
        if let Some(patch) = update.take() {
            merge_patch(&mut login.claims, &patch);
        }
        let previous = current.take();
        let previous = previous.as_ref().map(|(key, sub)| (key, sub.as_deref()));
        let (id, record) = sessions.login(previous, &login, now).await?;
        let lifetime = Duration::from_millis(record.absolute_deadline.saturating_sub(now));
        info!(
            session = id.store_key().log_tag(),
            "session created by login"
        );
        change = Some(CookieChange::Issue(state.cookies.issue(&id, lifetime)));
    }

    if let Some(patch) = update {
        match &current {
            Some((key, _)) => match sessions.update(key, &patch, now).await? {
                UpdateOutcome::Updated(_) => {}
                UpdateOutcome::NoSession => {
                    warn!(
                        session = key.log_tag(),
                        "ignored an update for a session that no longer exists"
                    );
                }
            },
            None => warn!("ignored an update on a request without a session"),
        }
    }
    Ok(change)
}
