//! The Pingora proxy: `Gateway` implements `ProxyHttp` with one short call per phase; the
//! phases live in their own files as functions of headers, clock and context.

mod body;
mod ctx;
mod jwks;
mod logging;
mod request_filter;
mod respond;
mod response_filter;
pub mod sign_in;
mod state;
mod tunnel;
mod upstream_peer;
mod upstream_request_filter;

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, Result};

pub use ctx::RequestCtx;
pub use request_filter::{login_location, unauthenticated, wants_html, Admission};
pub use respond::LocalResponse;
pub use state::GatewayState;

/// The state new requests run on; a reload swaps it, requests in flight keep theirs.
pub type SharedState = Arc<ArcSwap<GatewayState>>;

/// The session gateway: the current configuration's state (which holds the session operations
/// over the store stack, shared across reloads).
pub struct Gateway {
    state: SharedState,
    /// Connections for the WebSocket tunnels the gateway runs itself (see `tunnel`).
    tunnels: pingora::connectors::http::v1::Connector,
}

impl Gateway {
    /// Serves requests on whatever `state` holds when each request arrives; the background
    /// tasks (renewals, invalidations, health checks, reloads) are the caller's to run.
    pub fn new(state: SharedState) -> Self {
        Gateway {
            state,
            tunnels: pingora::connectors::http::v1::Connector::new(None),
        }
    }

    /// The state new requests run on.
    pub fn current(&self) -> Arc<GatewayState> {
        self.state.load_full()
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        request_filter::run(self.current(), &self.tunnels, session, ctx).await
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        upstream_peer::select(ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        upstream_peer::retry_connect(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        upstream_peer::retry_reused(ctx, replayable, client_reused, e)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        FailToProxy {
            error_code: respond::fail(session, e, ctx).await,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream_request_filter::run(upstream_request, ctx)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        body::count(ctx, body)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        upstream_peer::within_total(ctx)?;
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response_filter::run(upstream_response, ctx).await
    }

    /// What Pingora's own log lines say about a request: never the query, where reset tokens
    /// and the like travel.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()))
            .unwrap_or_default();
        format!("{} {}, Host: {host}", req.method, req.uri.path())
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        logging::run(session, error, ctx);
    }
}
