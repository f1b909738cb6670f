//! The request phase: refuse echoing methods, read the host and the forwarding chain, strip the
//! protected namespace, pick the route on the path as the app will read it, check upgrades,
//! read the session cookie, resolve the session, and apply the route's auth policy. The
//! decisions are pure functions (here and in `inbound`, `routing`, `cookie`); `run` only moves
//! data between them and the Pingora session.

use std::sync::Arc;

use http::header::{ACCEPT, CONTENT_LENGTH, COOKIE, HOST, UPGRADE};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use pingora::connectors::http::v1::Connector;
use pingora::proxy::Session;
use pingora::Result;
use smallvec::SmallVec;
use tracing::{info, warn};

use super::ctx::RequestCtx;
use super::respond::LocalResponse;
use super::sign_in::{self, Origin};
use super::state::GatewayState;
use crate::config::model::{AuthPolicy, OnStoreError, RouteSettings};
use crate::cookie::{self, SessionCookie};
use crate::inbound::{absolute_target, request_host, websocket, HostInput, Seen, Upgrade};
use crate::routing::{normalize_path, RouteError};
use crate::sessions::SessionState;

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

/// The request's `Accept` header, read only where a refusal depends on it (never on the
/// path of a request that goes through).
fn accept_header(session: &Session) -> Option<&[u8]> {
    session
        .req_header()
        .headers
        .get(ACCEPT)
        .map(|v| v.as_bytes())
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

/// Where a request on a plain listener is sent: the same host (an IPv6 address in brackets)
/// and target over HTTPS, on the HTTPS listener's port. `None` without a host to name.
pub fn https_location(host: &str, port: Option<u16>, path_and_query: &str) -> Option<String> {
    if host.is_empty() {
        return None;
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("https://{host}{port}{path_and_query}"))
}

/// A 400 with `body`, logged with `reason` (never the target's query).
async fn bad_request(
    session: &mut Session,
    ctx: &RequestCtx,
    body: &'static str,
    reason: &(dyn std::fmt::Display + Sync),
) -> Result<bool> {
    warn!(%reason, "refused a request");
    LocalResponse::text(400, body).send(session, ctx).await?;
    Ok(true)
}

pub async fn run(
    state: Arc<GatewayState>,
    tunnels: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    ctx.state = Some(state.clone());
    ctx.https = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    crate::connection::guard::head_received();
    // The connection guard closes an idle connection at the keep-alive timeout; Pingora's own
    // timer (60 s unless told) must not close it earlier.
    let keepalive = state.config.server.connections.keepalive_timeout;
    session.set_keepalive(Some(keepalive.as_secs() + 1));

    // 1. Methods that would echo the request, and with it the assertion, back to the client.
    let method = &session.req_header().method;
    if !state.config.server.allow_trace
        && (method.as_str().eq_ignore_ascii_case("TRACE")
            || method.as_str().eq_ignore_ascii_case("TRACK"))
    {
        LocalResponse::text(405, "Method not allowed.\n")
            .with_header(
                "allow",
                "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".into(),
            )
            .send(session, ctx)
            .await?;
        return Ok(true);
    }

    // HTTP/2 has no head guard (its frames are read by the h2 codec, whose header list size
    // is bounded by max_header_bytes): the header count is checked here.
    let limits = state.config.server.connections;
    if session.req_header().version >= http::Version::HTTP_2
        && session.req_header().headers.len() > limits.max_headers
    {
        LocalResponse::text(431, "Request header fields too large.\n")
            .send(session, ctx)
            .await?;
        return Ok(true);
    }

    // 2. The host, from an absolute-form target (which Host must agree with) or Host.
    let req = session.req_header();
    let http1 = req.version < http::Version::HTTP_2;
    // Pingora keeps an absolute-form target as the raw path, with no authority in the URI.
    let absolute = if http1 {
        absolute_target(req.raw_path()).map(|t| {
            (
                t.scheme.to_string(),
                t.authority.to_string(),
                t.origin.into_owned(),
            )
        })
    } else {
        None
    };
    // Owned: the request header is borrowed mutably below.
    let host = {
        let hosts: SmallVec<[&[u8]; 1]> = req
            .headers
            .get_all(HOST)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        request_host(HostInput {
            requires_host_header: http1 && req.version >= http::Version::HTTP_11,
            hosts: &hosts,
            target_authority: absolute
                .as_ref()
                .map(|(_, authority, _)| authority.as_str())
                .or_else(|| req.uri.authority().map(|a| a.as_str())),
            target_scheme: absolute
                .as_ref()
                .map(|(scheme, _, _)| scheme.as_str())
                .or_else(|| req.uri.scheme_str()),
        })
        .map(|host| (host.name.into_owned(), host.authority.to_string()))
    };
    let (host_name, host_authority) = match host {
        Ok(host) => host,
        Err(e) => return bad_request(session, ctx, "Bad request host.\n", &e).await,
    };

    // 3. Who sent it, as the app will be told (read before the namespace strip removes it).
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let proto = if ctx.https { "https" } else { "http" };
    ctx.forwarded = state.trusted.forwarded(
        Seen {
            peer,
            proto,
            host: &host_authority,
        },
        &session.req_header().headers,
    );
    // The origin as the browser used it, for the sign-in paths and redirects.
    let origin = Origin {
        https: ctx.https,
        authority: &host_authority,
        client: ctx.forwarded.client,
    };

    // 4. Nothing in the protected namespace survives, whatever the route.
    let found = state.namespace.find(session.req_header().headers.keys());
    if !found.is_empty() {
        let req = session.req_header_mut();
        for (name, _) in &found {
            req.remove_header(name);
        }
        let spoofed: Vec<&str> = found
            .iter()
            .filter(|(_, part)| part.is_spoof())
            .map(|(n, _)| n.as_str())
            .collect();
        ctx.stripped = spoofed.len();
        if !spoofed.is_empty() {
            crate::metrics::metrics()
                .spoofed_headers
                .inc_by(spoofed.len() as u64);
            info!(headers = ?spoofed, "removed inbound headers from the protected namespace");
        }
    }

    // 5. Framing and target the app reads unambiguously.
    if let Err(e) = single_content_length(session.req_header_mut()) {
        return bad_request(session, ctx, "Bad request framing.\n", &e).await;
    }
    if let Some((_, _, origin)) = &absolute {
        // The app gets the origin form and the host the route was chosen for.
        let req = session.req_header_mut();
        req.set_raw_path(origin)?;
        req.insert_header(HOST, host_authority.as_str())?;
    }

    // 6. Route, on the path as the app behind will read it.
    let req = session.req_header();
    // A cheap reference-counted copy: the header is borrowed mutably again below.
    let target = req.uri.path_and_query().cloned();
    let path_and_query = target.as_ref().map_or("/", |p| p.as_str());
    let path = match normalize_path(path_and_query.as_bytes()) {
        Ok(path) => path,
        Err(e) => return bad_request(session, ctx, "Bad request path.\n", &e).await,
    };
    // The key set is the proxy's own, whatever route its path would fall under.
    if super::jwks::serve(session, ctx, &state.jwks, &path.mapped).await? {
        return Ok(true);
    }
    // The proxy's own sign-in paths, before any route (a route cannot shadow them).
    if !state.providers.is_empty() {
        let endpoint = std::str::from_utf8(&path.mapped)
            .ok()
            .and_then(|p| crate::oidc::endpoint(&state.config.oidc_prefix, p));
        if let Some(endpoint) = endpoint {
            return sign_in::answer(&state, session, ctx, endpoint, &origin, path_and_query).await;
        }
    }
    let route_index = match state.routes.route(&host_name, &path) {
        Ok(index) => index,
        Err(RouteError::NoRoute) => {
            LocalResponse::text(404, "No route.\n")
                .send(session, ctx)
                .await?;
            return Ok(true);
        }
        Err(RouteError::Ambiguous) => {
            return bad_request(
                session,
                ctx,
                "Bad request path.\n",
                &"its parameters put it under another route than its mapped path",
            )
            .await
        }
    };
    ctx.route = Some(route_index);
    let route = state.routes.get(route_index);
    if let Some(tls) = state
        .config
        .tls
        .as_ref()
        .filter(|t| t.redirect_plain && !ctx.https)
    {
        // A plain listener only sends clients to HTTPS: nothing is read or forwarded here.
        let response = match https_location(&host_name, tls.redirect_port(), path_and_query) {
            Some(location) => {
                LocalResponse::text(308, "Use HTTPS.\n").with_header("location", location)
            }
            None => LocalResponse::text(403, "HTTPS is required.\n"),
        };
        response.send(session, ctx).await?;
        return Ok(true);
    }

    // 7. An upgrade opens a tunnel only for a genuine WebSocket handshake.
    let req = session.req_header();
    match websocket::classify(&req.method, req.version, &req.headers) {
        Ok(Upgrade::None) => {}
        Ok(Upgrade::Other) => {
            session.req_header_mut().remove_header(&UPGRADE);
        }
        Ok(Upgrade::WebSocket { accept }) => {
            if !route.websocket {
                LocalResponse::text(403, "WebSocket is not enabled on this route.\n")
                    .send(session, ctx)
                    .await?;
                return Ok(true);
            }
            ctx.websocket_accept = Some(accept);
        }
        Err(e) => return bad_request(session, ctx, "Bad WebSocket handshake.\n", &e).await,
    }

    // 8. The session cookie: exactly one well-formed id, or no session at all; resolved
    //    unless the route is public.
    let req = session.req_header();
    let scan = cookie::scan(
        req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes()),
        state.cookies.name(),
        state.cookies.codec(),
    );
    ctx.forwarded_cookie = scan.forwarded;
    ctx.session = match scan.session {
        SessionCookie::Absent => SessionState::None,
        SessionCookie::Duplicate | SessionCookie::Malformed => SessionState::Rejected,
        SessionCookie::Valid(id) if route.auth == AuthPolicy::Public => {
            SessionState::NotLookedUp(id.store_key())
        }
        SessionCookie::Valid(id) => {
            let stale_allowed = route.on_store_error == OnStoreError::ServeStale;
            state
                .sessions
                .lookup(id.store_key(), stale_allowed, ctx.now_ms)
                .await
        }
    };

    // 9. The store could not answer: the route's `on_store_error`.
    if matches!(ctx.session, SessionState::StoreDown(_)) {
        if let Some(Admission::Refuse(response)) = store_failed(route) {
            response.send(session, ctx).await?;
            return Ok(true);
        }
    }

    // 10. Provider tokens due for a refresh are refreshed; a refresh the provider refuses
    //     ends the session, and the request goes on as one without.
    if ctx.session.active().is_some() {
        if let sign_in::Refreshed::Ended = sign_in::refresh_if_due(&state, ctx).await {
            if let Some(key) = ctx.session.key().cloned() {
                ctx.session = SessionState::Unknown(key);
            }
        }
    }

    // 11. The route's policy for requests without a session: browsers on a route that signs
    //     in at the edge go to the identity provider, and come back to this target.
    if ctx.session.active().is_none() {
        let accept = accept_header(session);
        let method = &session.req_header().method;
        let navigates = method == http::Method::GET || method == http::Method::HEAD;
        if let (Some(provider), true) = (route.login, navigates && wants_html(accept)) {
            let return_to = crate::oidc::flow::safe_return(path_and_query).unwrap_or("/");
            let mut response =
                sign_in::start(&state, &state.providers.list[provider], &origin, return_to).await;
            if ctx.session.clear_cookie() {
                response = response.with_header("set-cookie", state.cookies.clear());
            }
            response.send(session, ctx).await?;
            return Ok(true);
        }
        if let Admission::Refuse(mut response) = unauthenticated(route, accept, path_and_query) {
            if ctx.session.clear_cookie() {
                response = response.with_header("set-cookie", state.cookies.clear());
            }
            response.send(session, ctx).await?;
            return Ok(true);
        }
    }

    // 12. Who among signed-in users the route admits: the others get 403, never a redirect
    //     to sign in again.
    if let Some(active) = ctx.session.active() {
        if !route
            .access
            .admits(active.session.email.as_deref(), &active.session.groups)
        {
            info!(
                session = active.key.log_tag(),
                "refused a signed-in user the route's allow rules do not admit"
            );
            sign_in::forbidden(wants_html(accept_header(session)))
                .send(session, ctx)
                .await?;
            return Ok(true);
        }
    }

    // 13. The route's body limits (after the policy: no body is read for a refused request).
    ctx.body_left = route.body.max_bytes;
    if let super::body::Verdict::Refuse(response) = super::body::admit(session, route.body).await? {
        response.send(session, ctx).await?;
        return Ok(true);
    }

    // 14. An admitted WebSocket handshake: the gateway runs the tunnel itself.
    if let Some(accept) = ctx.websocket_accept.clone() {
        super::tunnel::run(tunnels, session, ctx, &accept).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Why a request's `Content-Length` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request has Content-Length values that disagree")]
pub struct ContentLengthError;

/// Several `Content-Length` values (header lines or a comma list) that agree become one;
/// disagreeing ones are refused (RFC 9110 §8.6), so the app frames the body as the proxy did.
pub fn single_content_length(
    req: &mut pingora::http::RequestHeader,
) -> std::result::Result<(), ContentLengthError> {
    let mut values = req.headers.get_all(CONTENT_LENGTH).iter();
    let (Some(first), second) = (values.next(), values.next()) else {
        return Ok(());
    };
    if second.is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let mut agreed: Option<u64> = None;
    for value in req.headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let n = std::str::from_utf8(part.trim_ascii())
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or(ContentLengthError)?;
            if agreed.is_some_and(|a| a != n) {
                return Err(ContentLengthError);
            }
            agreed = Some(n);
        }
    }
    let n = agreed.ok_or(ContentLengthError)?;
    req.insert_header(CONTENT_LENGTH, n.to_string())
        .map_err(|_| ContentLengthError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::HostPattern;

    fn route(auth: AuthPolicy, login: Option<&str>, on_error: OnStoreError) -> RouteSettings {
        RouteSettings {
            login_url: login.map(String::from),
            on_store_error: on_error,
            ..RouteSettings::new(HostPattern::Any, "/", auth)
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

    #[test]
    fn https_locations_name_the_host_port_and_target() {
        assert_eq!(
            https_location("app.example", None, "/a?b=1").as_deref(),
            Some("https://app.example/a?b=1")
        );
        assert_eq!(
            https_location("app.example", Some(8443), "/").as_deref(),
            Some("https://app.example:8443/")
        );
        assert_eq!(
            https_location("::1", Some(8443), "/x").as_deref(),
            Some("https://[::1]:8443/x")
        );
        // A path that looks like an authority stays a path of the same host.
        assert_eq!(
            https_location("app.example", None, "//evil.example/").as_deref(),
            Some("https://app.example//evil.example/")
        );
        assert_eq!(https_location("", None, "/"), None);
    }
}
