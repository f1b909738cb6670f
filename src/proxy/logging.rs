//! The end of every request: its metrics, and one access-log line (target `sessiongate::access`;
//! JSON with `--log-json`). Never the cookie or the session id: only the truncated hash of the
//! id, and `sub` only when `[server] log_sub` is on.

use pingora::proxy::Session;
use pingora::Error;
use std::time::SystemTime;

use super::ctx::RequestCtx;
use crate::access_log;
use crate::metrics::{metrics, status_class};

pub fn run(session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
    // The connection waits for its next request from now on.
    crate::connection::guard::request_done();
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let elapsed = ctx.started.elapsed();
    let route = match (&ctx.state, ctx.route) {
        (Some(state), Some(r)) => state.route_labels[r].as_str(),
        _ => "none",
    };
    let lookup = ctx.session.lookup_metric();

    if let Some(state) = &ctx.state {
        let index = ctx.route.unwrap_or(state.route_labels.len());
        state.route_metrics[index].observe(status, elapsed.as_secs_f64());
    } else {
        let m = metrics();
        m.requests
            .with_label_values(&[route, status_class(status)])
            .inc();
        m.request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }
    if let Some(result) = lookup {
        metrics().lookup(result);
    }

    if !access_log::enabled() {
        return;
    }
    let log_sub = ctx.state.as_ref().is_some_and(|s| s.config.server.log_sub);
    // Requests refused before the forwarding chain was read name their peer.
    let client = ctx.forwarded.client.or_else(|| {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    });
    let session = ctx.session.active();
    access_log::global().record(&access_log::Entry {
        timestamp: SystemTime::now(),
        request_id: &ctx.request_id,
        client,
        method: req.method.as_str(),
        protocol: match req.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        },
        scheme: if ctx.https { "https" } else { "http" },
        path: req.uri.path(),
        status,
        route,
        lookup: lookup.unwrap_or("none"),
        session: session.map_or("-", |s| s.key.log_tag()),
        sub: session.filter(|_| log_sub).map(|s| &*s.session.sub),
        stripped: ctx.stripped,
        duration: elapsed,
        error: error.map(|e| e as &dyn std::fmt::Display),
    });
}
