//! Turns the raw file into the typed model, checking every rule and collecting every problem
//! (with its key path and what would be valid) instead of stopping at the first. One file per
//! table of the file; the helpers every table uses are here.

mod cache;
mod identity;
mod route;
mod secrets;
mod server;
mod session;
mod store;
mod upstream;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::file::RawConfig;
use super::model::*;
use super::ConfigProblem;

/// Default values, from docs/protocol.md (OWASP ASVS L2 and the session-management cheat sheet).
pub mod defaults {
    use std::time::Duration;
    pub const LISTEN: &str = "0.0.0.0:8080";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9091";
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    pub const UPGRADE_SOCK: &str = "/tmp/sessiongate-upgrade.sock";
    pub const COOKIE_NAME: &str = "__Host-sid";
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
    pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
    pub const KEY_PREFIX: &str = "sg:";
    pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
    pub const MAX_SESSIONS: usize = 1_000_000;
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
    pub const RENEWAL_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
    pub const RENEWAL_BATCH_SIZE: usize = 256;
    pub const CACHE_ENTRIES: usize = 100_000;
    pub const CACHE_BYTES: usize = 64 << 20;
    pub const CACHE_MAX_STALENESS: Duration = Duration::from_secs(5);
    pub const NEGATIVE_ENTRIES: usize = 10_000;
    pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
    pub const BREAKER_FAILURES: u32 = 5;
    pub const BREAKER_OPEN: Duration = Duration::from_secs(1);
    pub const STALE_WINDOW: Duration = Duration::from_secs(300);
    pub const ISSUER: &str = "sessiongate";
    pub const ASSERTION_HEADER: &str = "X-Sessiongate-Assertion";
    pub const ASSERTION_TTL: Duration = Duration::from_secs(60);
    pub const KEY_ID: &str = "k1";
    /// HMAC keys shorter than this are refused.
    pub const MIN_KEY_BYTES: usize = 32;
    /// The most bytes a session's claims take as JSON: they travel on every request.
    pub const MAX_CLAIMS_BYTES: usize = 4096;
}

#[derive(Default)]
pub(super) struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Validates the raw file; `base` resolves relative secret file paths.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let mut p = Problems::default();
    let server = server::check(&raw.server, base, &mut p);
    let session = session::check(&raw.session, &mut p);
    let store = store::check(&raw.store, base, &mut p);
    let identity = identity::check(&raw.identity, base, &mut p);
    let cache = cache::check(raw.cache.as_ref(), store.as_ref(), &mut p);
    let upstreams = upstream::check(&raw.upstream, &mut p);
    let routes = route::check(&raw.route, &upstreams, &mut p);
    if cache.is_none() && matches!(store, Some(StoreSettings::Redis(_))) {
        for (i, route) in routes.iter().enumerate() {
            if route.on_store_error == OnStoreError::ServeStale {
                p.add(
                    format!("route[{i}].on_store_error"),
                    "serve_stale needs the session cache; enable [cache] or choose fail_closed or anonymous",
                );
            }
        }
    }
    if !p.0.is_empty() {
        return Err(p.0);
    }
    // Every check above pushed a problem whenever it returned None.
    match (server, session, store, identity) {
        (Some(server), Some(session), Some(store), Some(identity)) => Ok(Config {
            server,
            session,
            store,
            identity,
            cache,
            upstreams,
            routes,
        }),
        _ => Err(vec![ConfigProblem {
            path: String::new(),
            message: "configuration is incomplete".into(),
        }]),
    }
}

pub(super) fn parse_addr(value: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    match value.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Some(addr),
            None => {
                p.add(path, format!("\"{value}\" resolves to no address"));
                None
            }
        },
        Err(e) => {
            p.add(
                path,
                format!("\"{value}\" is not a host:port address ({e}); e.g. \"127.0.0.1:8080\""),
            );
            None
        }
    }
}

pub(super) fn positive(
    d: Option<Duration>,
    default: Duration,
    path: &str,
    p: &mut Problems,
) -> Duration {
    let d = d.unwrap_or(default);
    if d.is_zero() {
        p.add(path, "must be greater than zero");
    }
    d
}
