//! The response phase: open a WebSocket tunnel only for a 101 that completes the handshake,
//! remove any `Set-Cookie` of the app's for the session cookie's name, read and remove the
//! control headers (a login only on routes that accept one), apply them to the store
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
use crate::inbound::websocket;
use crate::session::control::{self, ClaimRules, ControlRequest, LogoutScope};
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

/// Whether a `Set-Cookie` value sets a cookie called `name` (case-insensitively, as browsers
/// compare the `__Host-` prefix), a nameless cookie whose value a browser would send back as
/// `name=…` included.
pub fn sets_cookie_named(set_cookie: &[u8], name: &str) -> bool {
    let pair = set_cookie.split(|b| *b == b';').next().unwrap_or_default();
    let (cookie_name, value) = match pair.iter().position(|b| *b == b'=') {
        Some(eq) => (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()),
        None => (&b""[..], pair.trim_ascii()),
    };
    let named = |n: &[u8]| n.eq_ignore_ascii_case(name.as_bytes());
    if cookie_name.is_empty() {
        // A browser sends a nameless cookie back as its bare value: `name=id` plants `name`.
        let inner = value.split(|b| *b == b'=').next().unwrap_or_default();
        return value.contains(&b'=') && named(inner.trim_ascii());
    }
    named(cookie_name)
}

/// A 101 that does not complete the handshake the proxy checked (or answers a request that
/// was no WebSocket handshake) must not become a tunnel.
fn check_upgrade(response: &ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if response.status != http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(());
    }
    match &ctx.websocket_accept {
        Some(accept) if websocket::accepts(&response.headers, accept) => Ok(()),
        _ => {
            warn!(
                "refused a 101 from the application that does not complete the WebSocket handshake"
            );
            Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "the application's 101 does not complete the WebSocket handshake",
            ))
        }
    }
}

pub async fn run(response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    check_upgrade(response, ctx)?;
    let state = ctx.state();
    let planted = response
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .any(|v| sets_cookie_named(v.as_bytes(), state.cookies.name()));
    if planted {
        let kept: Vec<http::HeaderValue> = response
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter(|v| !sets_cookie_named(v.as_bytes(), state.cookies.name()))
            .cloned()
            .collect();
        response.remove_header(&SET_COOKIE);
        for value in kept {
            response.append_header(SET_COOKIE, value)?;
        }
        crate::metrics::metrics().control_rejected.inc();
        warn!("removed the application's Set-Cookie for the session cookie");
    }

    let internal: Vec<HeaderName> = response
        .headers
        .keys()
        .filter(|n| n.as_str().as_bytes().starts_with(PREFIX))
        .cloned()
        .collect();
    // Most responses carry no header of the namespace, hence no control header to look up.
    let route = ctx.route.map(|r| state.routes.get(r));
    let parsed = if internal.is_empty() {
        Ok(ControlRequest::default())
    } else {
        let rules = ClaimRules {
            max_bytes: state.config.session.max_claims_bytes,
            mapped: &state.mapped_claims,
        };
        control::parse(&response.headers, &rules).and_then(|request| {
            match (&request.login, route) {
                (Some(_), Some(route)) if !route.accept_login => {
                    Err(control::ControlError::LoginNotAccepted)
                }
                _ => Ok(request),
            }
        })
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
        if !control::claims_fit(&login.claims, sessions.max_claims_bytes()) {
            warn!("ignored a login whose claims exceed session.max_claims_bytes");
            crate::metrics::metrics().control_rejected.inc();
            return Ok(change);
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
                UpdateOutcome::TooLarge => {
                    crate::metrics::metrics().control_rejected.inc();
                    warn!(
                        session = key.log_tag(),
                        "ignored an update whose merged claims exceed session.max_claims_bytes"
                    );
                }
            },
            None => warn!("ignored an update on a request without a session"),
        }
    }
    Ok(change)
}
