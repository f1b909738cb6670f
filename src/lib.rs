//! sessiongate: an edge reverse proxy on Pingora that owns the browser session for the legacy
//! applications behind it. See DESIGN.md for the contract and README.md for operations.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod config;
pub mod cookie;
pub mod demo;
pub mod identity;
pub mod inbound;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod session;
pub mod upstream;
