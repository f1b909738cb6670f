//! The response phase: open a WebSocket tunnel only for a 101 that completes the handshake,
//! remove any `Set-Cookie` of the app's for the session cookie's name, read and remove the
//! control headers (a login only on routes that accept one), hand them to `Sessions::apply`
//! (write-through: the cookie is set only after the store acknowledged), and set or clear the
//! session cookie.

use http::header::{CACHE_CONTROL, SET_COOKIE, STRICT_TRANSPORT_SECURITY};
use http::HeaderName;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use tracing::warn;

use super::ctx::RequestCtx;
use crate::header_names::PREFIX;
use crate::inbound::websocket;
use crate::session::control::{self, ClaimRules, ControlRequest};
use crate::session::lifecycle::now_ms;
use crate::sessions::apply::CookieChange;
use crate::store::StoreError;

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
    if let Some(hsts) = ctx.hsts() {
        // The proxy's policy, whatever the app says.
        response.insert_header(STRICT_TRANSPORT_SECURITY, hsts)?;
    }
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

    let change = match parsed {
        Err(e) => {
            crate::metrics::metrics().control_rejected.inc();
            warn!(error = %e, "ignored malformed control headers; the session is unchanged");
            None
        }
        Ok(request) if request.is_empty() => None,
        Ok(request) => state
            .sessions
            .apply(request, ctx.session.carried(), now_ms())
            .await
            .map_err(store_failure)?,
    };
    let set_cookie = match change {
        Some(CookieChange::Issue { id, lifetime }) => state.cookies.issue(&id, lifetime),
        Some(CookieChange::Clear) => state.cookies.clear(),
        None if ctx.session.clear_cookie() => state.cookies.clear(),
        None => return Ok(()),
    };
    response.append_header(SET_COOKIE, set_cookie)?;
    response.insert_header(CACHE_CONTROL, "no-store")?;
    Ok(())
}
