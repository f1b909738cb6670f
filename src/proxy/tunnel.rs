//! WebSocket tunnels, run by the gateway itself rather than by Pingora's proxy loop.
//!
//! Two reasons. Pingora 0.9.1 tears an upgraded HTTP/1 connection down right after the 101
//! whenever it reads the app's 101 before it has forwarded the end of the upgrade request's
//! (empty) body: the client gets the 101 and then EOF, on a busy machine for about one
//! WebSocket in six (cloudflare/pingora#946, open). And the tunnel is the one place where an
//! app's answer decides whether the proxy stops reading HTTP, so it is opened only when the
//! 101 carries the `Sec-WebSocket-Accept` of the handshake the proxy checked.
//!
//! The upgrade request goes through the same rewriting as any request (namespace stripped,
//! session cookie removed, identity and forwarding headers added), the 101 through the same
//! response filter (control headers, the app's session cookie), and the request is logged
//! like any other.

use bytes::Bytes;
use http::header;
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::proxy::Session;
use pingora::Result;
use tracing::{debug, info, warn};

use super::ctx::RequestCtx;
use super::respond::LocalResponse;
use super::{response_filter, upstream_peer, upstream_request_filter};
use crate::inbound::websocket;

/// Request headers that belong to one hop and never go upstream with a handshake.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// The upgrade request as the app gets it: hop-by-hop headers (and those the client named in
/// `Connection`) removed, then exactly `Connection: Upgrade` and `Upgrade: websocket`.
pub fn upgrade_request(downstream: &RequestHeader) -> Result<RequestHeader> {
    let mut req = downstream.clone();
    req.set_version(http::Version::HTTP_11);
    let nominated: Vec<String> = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|t| std::str::from_utf8(t.trim_ascii()).ok())
        .map(str::to_ascii_lowercase)
        .filter(|t| !t.is_empty() && t != "upgrade" && t != "host")
        .collect();
    for name in nominated
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP.iter().copied())
    {
        req.remove_header(name);
    }
    req.insert_header(header::CONNECTION, "Upgrade")?;
    req.insert_header(header::UPGRADE, "websocket")?;
    Ok(req)
}

async fn bad_gateway(
    session: &mut Session,
    ctx: &RequestCtx,
    why: &(dyn std::fmt::Display + Sync),
) -> Result<()> {
    warn!(reason = %why, "the WebSocket handshake with the application failed");
    LocalResponse::text(502, "Bad gateway.\n")
        .send(session, ctx)
        .await
}

/// Runs the handshake with the app and, when it completes, the tunnel until either side
/// closes. Always answers the client (101, the app's refusal, or a 502).
pub async fn run(
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
    accept: &str,
) -> Result<()> {
    let peer = upstream_peer::select(ctx)?;
    let mut req = upgrade_request(session.req_header())?;
    upstream_request_filter::run(&mut req, ctx)?;

    let mut upstream: HttpSession = match connector.get_http_session(&*peer).await {
        Ok((upstream, _)) => upstream,
        Err(e) => {
            let e = upstream_peer::retry_connect(ctx, e);
            return bad_gateway(session, ctx, &e).await;
        }
    };
    if let Err(e) = upstream.write_request_header(Box::new(req)).await {
        return bad_gateway(session, ctx, &e).await;
    }
    let mut response = loop {
        if let Err(e) = upstream.read_response().await {
            return bad_gateway(session, ctx, &e).await;
        }
        let Some(head) = upstream.resp_header() else {
            return bad_gateway(session, ctx, &"no response header").await;
        };
        // 100 Continue and other interim answers are skipped; a 101 is the answer.
        if head.status == http::StatusCode::SWITCHING_PROTOCOLS || !head.status.is_informational() {
            break head.clone();
        }
    };
    let switching = response.status == http::StatusCode::SWITCHING_PROTOCOLS;
    if switching && !websocket::accepts(&response.headers, accept) {
        upstream.shutdown().await;
        return bad_gateway(
            session,
            ctx,
            &"the application's 101 does not complete the handshake",
        )
        .await;
    }
    if let Err(e) = response_filter::run(&mut response, ctx).await {
        upstream.shutdown().await;
        return Err(e);
    }
    session
        .write_response_header(Box::new(response.clone()), false)
        .await?;
    if switching {
        upstream.maybe_upgrade_body_writer();
        let watch = SessionWatch::of(ctx);
        relay(session, &mut upstream, watch).await;
    } else {
        // The app refused the upgrade: its answer goes to the client as it is.
        forward_body(session, &mut upstream).await?;
    }
    upstream.shutdown().await;
    Ok(())
}

/// The session a tunnel was opened for, checked again every `every`: the identity the app
/// was given at the handshake must not outlive a logout, an admin revocation or the session's
/// deadlines. The check does not renew the session (bytes in a tunnel are not requests).
struct SessionWatch {
    state: std::sync::Arc<super::GatewayState>,
    key: crate::session::StoreKey,
    every: std::time::Duration,
    /// Whether a store that cannot answer closes the tunnel (the route's `fail_closed`).
    close_on_store_error: bool,
}

impl SessionWatch {
    fn of(ctx: &RequestCtx) -> Option<Self> {
        let active = ctx.session.active()?;
        let state = ctx.state();
        let route = state.routes.get(ctx.route?);
        Some(SessionWatch {
            key: active.key.clone(),
            every: state.config.session.tunnel_recheck,
            close_on_store_error: route.on_store_error
                == crate::config::model::OnStoreError::FailClosed,
            state,
        })
    }

    /// Whether the tunnel may stay open.
    async fn holds(&self) -> bool {
        let now = crate::session::lifecycle::now_ms();
        match self.state.sessions.still_active(&self.key, now).await {
            Ok(active) => active,
            Err(e) => {
                warn!(error = %e, "could not check a WebSocket tunnel's session");
                !self.close_on_store_error
            }
        }
    }
}

/// Copies bytes both ways until either side closes or fails, or the session it was opened
/// for no longer stands.
async fn relay(session: &mut Session, upstream: &mut HttpSession, watch: Option<SessionWatch>) {
    let every = watch.as_ref().map_or(LONG, |w| w.every);
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            from_client = session.read_request_body() => match from_client {
                Ok(Some(bytes)) => {
                    if upstream.write_body(&bytes).await.is_err() {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            },
            from_app = upstream.read_body_bytes() => match from_app {
                Ok(Some(bytes)) => {
                    if session.write_response_body(Some(bytes), false).await.is_err() {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            },
            _ = recheck.tick(), if watch.is_some() => {
                if let Some(watch) = &watch {
                    if !watch.holds().await {
                        info!("closed a WebSocket tunnel whose session has ended");
                        crate::metrics::metrics().tunnels_closed.inc();
                        break;
                    }
                }
            }
        }
    }
    debug!("WebSocket tunnel closed");
    let _ = session.write_response_body(None, true).await;
}

/// A bound on timer periods (a tunnel without a session has no recheck at all).
const LONG: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The body of a refused upgrade, as the app sent it.
async fn forward_body(session: &mut Session, upstream: &mut HttpSession) -> Result<()> {
    loop {
        match upstream.read_body_bytes().await {
            Ok(Some(bytes)) => session.write_response_body(Some(bytes), false).await?,
            Ok(None) => break,
            Err(e) => {
                warn!(error = %e, "reading the application's answer to a refused upgrade failed");
                break;
            }
        }
    }
    session.write_response_body(Some(Bytes::new()), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_gets_exactly_the_handshake_headers() {
        let mut down = RequestHeader::build("GET", b"/ws", None).unwrap();
        down.insert_header("host", "app").unwrap();
        down.insert_header("connection", "keep-alive, Upgrade, X-Secret")
            .unwrap();
        down.insert_header("upgrade", "WebSocket").unwrap();
        down.insert_header("x-secret", "1").unwrap();
        down.insert_header("keep-alive", "timeout=5").unwrap();
        down.insert_header("te", "trailers").unwrap();
        down.insert_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .unwrap();
        down.insert_header("sec-websocket-version", "13").unwrap();
        let up = upgrade_request(&down).unwrap();
        let names: Vec<&str> = up.headers.keys().map(|n| n.as_str()).collect();
        for gone in ["x-secret", "keep-alive", "te"] {
            assert!(!names.contains(&gone), "{gone} in {names:?}");
        }
        assert_eq!(up.headers["connection"], "Upgrade");
        assert_eq!(up.headers["upgrade"], "websocket");
        assert_eq!(up.headers["host"], "app");
        assert_eq!(up.headers["sec-websocket-version"], "13");
    }
}
