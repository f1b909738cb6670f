//! Per-request state shared by the proxy phases.

use std::sync::Arc;
use std::time::Instant;

use super::state::GatewayState;
use crate::inbound::Forwarded;
use crate::sessions::SessionState;

pub struct RequestCtx {
    pub started: Instant,
    /// The clock read once at the start, for every decision the request phase makes.
    pub now_ms: u64,
    /// UUID v4 of this request: in the access log and, as `X-Request-Id`, upstream.
    pub request_id: uuid::Uuid,
    pub state: Option<Arc<GatewayState>>,
    pub route: Option<usize>,
    /// The session: what the cookie said and what resolving it found.
    pub session: SessionState,
    /// The Cookie header to send upstream instead of the inbound ones, when it must change.
    pub forwarded_cookie: Option<Vec<u8>>,
    /// Inbound headers removed from the protected namespace.
    pub stripped: usize,
    /// Backends this request already tried (a refused connection moves to the next).
    pub tried: smallvec::SmallVec<[std::net::SocketAddr; 2]>,
    /// The last attempt failed on a reused connection that the backend had closed: the next
    /// attempt goes to the same backend on a fresh connection.
    pub retry_fresh: bool,
    /// The forwarding headers for the upstream, and the client address they name.
    pub forwarded: Forwarded,
    /// For a WebSocket handshake, the `Sec-WebSocket-Accept` the app's 101 must carry.
    pub websocket_accept: Option<String>,
    /// The request came over TLS.
    pub https: bool,
    /// When the exchange with the app must be over: the upstream's `total_timeout` from the
    /// choice of the first backend.
    pub upstream_deadline: Option<Instant>,
    /// Request body bytes the route still accepts (its `max_body_bytes`), when it limits them.
    pub body_left: Option<u64>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            now_ms: crate::session::lifecycle::now_ms(),
            request_id: uuid::Uuid::new_v4(),
            state: None,
            route: None,
            session: SessionState::None,
            forwarded_cookie: None,
            stripped: 0,
            tried: smallvec::SmallVec::new(),
            retry_fresh: false,
            forwarded: Forwarded::default(),
            websocket_accept: None,
            https: false,
            upstream_deadline: None,
            body_left: None,
        }
    }

    /// The state this request runs on; set first thing in `request_filter`.
    pub fn state(&self) -> Arc<GatewayState> {
        self.state
            .clone()
            .expect("request_filter sets the state before any other phase")
    }

    /// The `Strict-Transport-Security` value for this request's responses: the configured
    /// one over HTTPS, none over plain HTTP (where browsers ignore it).
    pub fn hsts(&self) -> Option<&str> {
        if !self.https {
            return None;
        }
        self.state.as_ref()?.config.tls.as_ref()?.hsts.as_deref()
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
