//! Per-request state shared by the proxy phases.

use std::sync::Arc;
use std::time::Instant;

use super::state::GatewayState;
use crate::cookie::SessionCookie;
use crate::inbound::Forwarded;
use crate::session::ActiveSession;

/// How the session lookup of a request ended, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lookup {
    /// No lookup: public route, or no cookie.
    #[default]
    Skipped,
    Found,
    NotFound,
    Expired,
    /// The store could not answer; a cached copy was honoured (`serve_stale`).
    Stale,
    /// The cookie was malformed or duplicated: no store call.
    Invalid,
    StoreError,
}

impl Lookup {
    /// The `sessiongate_session_lookups_total` result for a lookup that found `source`, or
    /// `None` when no lookup was made.
    pub fn metric(self, source: Option<crate::session::cache::Source>) -> Option<&'static str> {
        use crate::metrics::lookup;
        use crate::session::cache::Source;
        Some(match self {
            Lookup::Skipped => return None,
            Lookup::Found => match source {
                Some(Source::Cache) => lookup::CACHE_HIT,
                _ => lookup::STORE_HIT,
            },
            Lookup::NotFound => lookup::NOT_FOUND,
            Lookup::Expired => lookup::EXPIRED,
            Lookup::Stale => lookup::STALE,
            Lookup::Invalid => lookup::INVALID,
            Lookup::StoreError => lookup::ERROR,
        })
    }
}

pub struct RequestCtx {
    pub started: Instant,
    /// UUID v4 of this request: in the access log and, as `X-Request-Id`, upstream.
    pub request_id: uuid::Uuid,
    pub state: Option<Arc<GatewayState>>,
    pub route: Option<usize>,
    pub cookie: SessionCookie,
    /// The Cookie header to send upstream instead of the inbound ones, when it must change.
    pub forwarded_cookie: Option<Vec<u8>>,
    pub session: Option<ActiveSession>,
    pub lookup: Lookup,
    /// The response should tell the browser to drop its session cookie.
    pub clear_cookie: bool,
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
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: uuid::Uuid::new_v4(),
            state: None,
            route: None,
            cookie: SessionCookie::Absent,
            forwarded_cookie: None,
            session: None,
            lookup: Lookup::Skipped,
            clear_cookie: false,
            stripped: 0,
            tried: smallvec::SmallVec::new(),
            retry_fresh: false,
            forwarded: Forwarded::default(),
            websocket_accept: None,
        }
    }

    /// The state this request runs on; set first thing in `request_filter`.
    pub fn state(&self) -> Arc<GatewayState> {
        self.state
            .clone()
            .expect("request_filter sets the state before any other phase")
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
