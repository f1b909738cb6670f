//! The request phase: strip the protected namespace, pick the route, read the session cookie,
//! resolve the session, and apply the route's auth policy. The decisions are pure functions
//! below; `run` only moves data between them and the Pingora session.

use http::header::{ACCEPT, COOKIE, HOST};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use pingora::proxy::Session;
use pingora::Result;
use tracing::{info, warn};

use super::ctx::{Lookup, RequestCtx};
use super::respond::LocalResponse;
use super::Gateway;
use crate::config::model::{AuthPolicy, OnStoreError, RouteSettings};
use crate::cookie::{self, SessionCookie};
use crate::routing::{normalize_path, request_host};
use crate::session::lifecycle::now_ms;
use crate::session::Resolution;

/// What to do with a request after its session was (or could not be) resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Forward,
    Refuse(LocalResponse),
}

/// Whether the client is a browser that should be sent to a login page rather than told 401.
pub fn wants_html(accept: Option<&[u8]>) -> bool {
    accept.is_some_and(|a| a.windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html")))
}

/// The login redirect target: `login_url` with the original path and query as `next`.
pub fn login_location(login_url: &str, path_and_query: &str) -> String {
    let separator = if login_url.contains('?') { '&' } else { '?' };
    format!(
        "{login_url}{separator}next={}",
        utf8_percent_encode(path_and_query, NON_ALPHANUMERIC)
    )
}

/// The route's auth policy applied to a request without a usable session.
pub fn unauthenticated(
    route: &RouteSettings,
    accept: Option<&[u8]>,
    path_and_query: &str,
) -> Admission {
    if route.auth != AuthPolicy::Required {
        return Admission::Forward;
    }
    match &route.login_url {
        Some(login) if wants_html(accept) => Admission::Refuse(
            LocalResponse::text(302, "Sign-in required.\n")
                .with_header("location", login_location(login, path_and_query)),
        ),
        _ => Admission::Refuse(LocalResponse::json(
            401,
            "{\"error\":\"unauthenticated\",\"message\":\"a valid session is required\"}\n",
        )),
    }
}

/// The route's `on_store_error` policy, when the store could not answer (and, for
/// `serve_stale`, no cached copy could be honoured).
pub fn store_failed(route: &RouteSettings) -> Option<Admission> {
    match route.on_store_error {
        OnStoreError::FailClosed | OnStoreError::ServeStale => Some(Admission::Refuse(
            LocalResponse::json(
                503,
                "{\"error\":\"session_store_unavailable\",\"message\":\"try again shortly\"}\n",
            )
            .with_header("retry-after", "1".into()),
        )),
        OnStoreError::Anonymous => None,
    }
}

pub async fn run(gateway: &Gateway, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let state = gateway.current();
    ctx.state = Some(state.clone());

    // 1. Nothing in the protected namespace survives, whatever the route.
    let spoofed = state.namespace.find(session.req_header().headers.keys());
    if !spoofed.is_empty() {
        let req = session.req_header_mut();
        for name in &spoofed {
            req.remove_header(name);
        }
        ctx.stripped = spoofed.len();
        crate::metrics::metrics()
            .spoofed_headers
            .inc_by(spoofed.len() as u64);
        info!(headers = ?spoofed.iter().map(|n| n.as_str()).collect::<Vec<_>>(), "removed inbound headers from the protected namespace");
    }

    // 2. Route, on a path normalised the way the strictest upstream would read it.
    let req = session.req_header();
    // A cheap reference-counted copy: the header is borrowed mutably again below.
    let target = req.uri.path_and_query().cloned();
    let path_and_query = target.as_ref().map_or("/", |p| p.as_str());
    let path = match normalize_path(path_and_query.as_bytes()) {
        Ok(path) => path,
        Err(e) => {
            warn!(reason = %e, "refused a request path");
            LocalResponse::text(400, "Bad request path.\n")
                .send(session)
                .await?;
            return Ok(true);
        }
    };
    let host = request_host(req.headers.get(HOST).map(|v| v.as_bytes()), req.uri.host());
    let Some(route_index) = state.routes.find(&host, &path) else {
        LocalResponse::text(404, "No route.\n")
            .send(session)
            .await?;
        return Ok(true);
    };
    ctx.route = Some(route_index);
    let route = state.routes.get(route_index);

    // 3. The session cookie: exactly one well-formed id, or no session at all.
    let scan = cookie::scan(
        req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes()),
        state.cookies.name(),
    );
    ctx.forwarded_cookie = scan.forwarded;
    ctx.cookie = scan.session;
    if matches!(
        ctx.cookie,
        SessionCookie::Duplicate | SessionCookie::Malformed
    ) {
        ctx.lookup = Lookup::Invalid;
        ctx.clear_cookie = true;
    }

    // 4. Resolve it, unless the route is public.
    if route.auth != AuthPolicy::Public {
        if let SessionCookie::Valid(id) = &ctx.cookie {
            match state.sessions.resolve(id, now_ms()).await {
                Ok(Resolution::Active(active)) => {
                    ctx.lookup = Lookup::Found;
                    ctx.session = Some(active);
                }
                Ok(Resolution::NotFound) => {
                    ctx.lookup = Lookup::NotFound;
                    ctx.clear_cookie = true;
                }
                Ok(Resolution::Expired(_)) => {
                    ctx.lookup = Lookup::Expired;
                    ctx.clear_cookie = true;
                }
                Err(e) => {
                    ctx.lookup = Lookup::StoreError;
                    warn!(error = %e, kind = e.kind(), "session lookup failed");
                    let stale = (route.on_store_error == OnStoreError::ServeStale)
                        .then(|| state.sessions.resolve_stale(id, now_ms()))
                        .flatten();
                    if let Some(active) = stale {
                        ctx.lookup = Lookup::Stale;
                        ctx.session = Some(active);
                    } else if let Some(Admission::Refuse(response)) = store_failed(route) {
                        response.send(session).await?;
                        return Ok(true);
                    }
                }
            }
        }
    }

    // 5. The route's policy for requests without a session.
    if ctx.session.is_none() {
        let accept = session
            .req_header()
            .headers
            .get(ACCEPT)
            .map(|v| v.as_bytes());
        if let Admission::Refuse(mut response) = unauthenticated(route, accept, path_and_query) {
            if ctx.clear_cookie {
                response = response.with_header("set-cookie", state.cookies.clear());
            }
            response.send(session).await?;
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::HostPattern;

    fn route(auth: AuthPolicy, login: Option<&str>, on_error: OnStoreError) -> RouteSettings {
        RouteSettings {
            host: HostPattern::Any,
            path_prefix: "/".into(),
            upstream: 0,
            auth,
            audience: "app".into(),
            login_url: login.map(String::from),
            on_store_error: on_error,
        }
    }

    #[test]
    fn browsers_are_sent_to_login_with_the_original_path() {
        let r = route(
            AuthPolicy::Required,
            Some("/login"),
            OnStoreError::FailClosed,
        );
        let Admission::Refuse(resp) = unauthenticated(&r, Some(b"text/html,*/*"), "/a b?x=1&y=2")
        else {
            panic!("forwarded");
        };
        assert_eq!(resp.status, 302);
        assert_eq!(resp.headers[0].1, "/login?next=%2Fa%20b%3Fx%3D1%26y%3D2");
        assert_eq!(login_location("/login?app=1", "/"), "/login?app=1&next=%2F");
    }

    #[test]
    fn api_clients_get_401() {
        let r = route(
            AuthPolicy::Required,
            Some("/login"),
            OnStoreError::FailClosed,
        );
        for accept in [None, Some(&b"application/json"[..]), Some(b"*/*")] {
            let Admission::Refuse(resp) = unauthenticated(&r, accept, "/") else {
                panic!("forwarded");
            };
            assert_eq!(resp.status, 401);
        }
        let no_login = route(AuthPolicy::Required, None, OnStoreError::FailClosed);
        let Admission::Refuse(resp) = unauthenticated(&no_login, Some(b"text/html"), "/") else {
            panic!("forwarded");
        };
        assert_eq!(resp.status, 401);
    }

    #[test]
    fn optional_and_public_routes_forward() {
        for auth in [AuthPolicy::Optional, AuthPolicy::Public] {
            let r = route(auth, None, OnStoreError::Anonymous);
            assert_eq!(unauthenticated(&r, None, "/"), Admission::Forward);
        }
    }

    #[test]
    fn store_failure_policies() {
        for policy in [OnStoreError::FailClosed, OnStoreError::ServeStale] {
            let r = route(AuthPolicy::Required, None, policy);
            assert!(
                matches!(store_failed(&r), Some(Admission::Refuse(resp)) if resp.status == 503)
            );
        }
        let r = route(AuthPolicy::Optional, None, OnStoreError::Anonymous);
        assert_eq!(store_failed(&r), None);
    }
}
