//! The client's request at the trust boundary, read strictly before any route or session logic
//! sees it: the host it is for, the forwarding headers that say who sent it, whether it may
//! open a WebSocket tunnel, and its framing. Pure functions of headers and addresses.

pub mod forwarded;
pub mod host;
pub mod websocket;

pub use forwarded::{Forwarded, Seen, TrustedProxies};
pub use host::{absolute_target, request_host, AbsoluteTarget, HostError, HostInput, RequestHost};
pub use websocket::{HandshakeError, Upgrade};
