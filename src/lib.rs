//! sessiongate: an edge reverse proxy on Pingora that owns the browser session for the legacy
//! applications behind it. docs/protocol.md is the wire contract; README.md covers operations.
//!
//! The layers, each importing only from those before it: `config::model` (the validated
//! configuration) ← `session` (the pure session model) ← `store` (persistence) ← `cache` (the
//! tiers in front of the store) ← `sessions` (the service the proxy and the admin API call) ←
//! `proxy` (the Pingora phases) ← `server`. Beside them, leaves that import nothing above the
//! model: `header_names`, `metrics`, `access_log`, `routing`, `inbound`, `cookie`, `identity`,
//! `upstream`, `tls`.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod config;
pub mod connection;
pub mod cookie;
pub mod header_names;
pub mod identity;
pub mod inbound;
pub mod metrics;
pub mod oidc;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod session;
pub mod sessions;
pub mod store;
pub mod tls;
pub mod upstream;
