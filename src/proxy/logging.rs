//! One access-log line per request. Never the cookie or the session id: only the truncated
//! hash of the id, and `sub` never.

use pingora::proxy::Session;
use pingora::Error;
use tracing::info;

use super::ctx::RequestCtx;

pub fn run(session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let route = ctx.route.map_or(-1, |r| r as i64);
    let session_tag = ctx.session.as_ref().map(|s| s.key.log_tag().to_string());
    info!(
        target: "sessiongate::access",
        method = %req.method,
        path = req.uri.path(),
        status,
        route,
        lookup = ctx.lookup.as_str(),
        session = session_tag.as_deref().unwrap_or("-"),
        stripped = ctx.stripped,
        duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
        error = error.map(|e| e.to_string()).as_deref().unwrap_or(""),
        "request"
    );
}
