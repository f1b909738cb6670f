//! Hot reload: SIGHUP re-reads the configuration file. A valid configuration becomes the state
//! of new requests in one atomic swap (routes, pools, identity headers, signing key, session
//! timeouts, cookie attributes, admin token); requests in flight finish on the state they
//! started with. An invalid one is refused and the running one keeps serving. Settings that
//! only take effect at start (listeners, threads, the store and its cache) keep their running
//! values and are reported as needing a restart.
//!
//! The same task runs the health checks of the current pools, and moves them to the new pools
//! on every reload.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::metrics::metrics;
use crate::proxy::{GatewayState, SharedState};
use crate::sessions::Backend;
use crate::tls::SniResolver;
use crate::upstream::Pools;

/// A setting that only takes effect at start: its key path, whether two configurations
/// differ in it, and how a reload keeps the running value.
struct RestartOnly {
    key: &'static str,
    differs: fn(&Config, &Config) -> bool,
    keep: fn(&Config, &mut Config),
}

/// One entry per field path: the list below is the only place a restart-only setting is named.
macro_rules! restart_only {
    ($($key:literal => $($field:ident).+),* $(,)?) => {
        &[$(RestartOnly {
            key: $key,
            differs: |a, b| a.$($field).+ != b.$($field).+,
            keep: |running, next| next.$($field).+ = running.$($field).+.clone(),
        }),*]
    };
}

/// Listeners, threads, the store and its cache, and the record format.
const RESTART_ONLY: &[RestartOnly] = restart_only![
    "server.listen" => server.listen,
    "server.threads" => server.threads,
    "server.admin_listen" => server.admin_listen,
    "server.shutdown_grace" => server.shutdown_grace,
    "server.upgrade_sock" => server.upgrade_sock,
    "server.max_connections" => server.connections.max_connections,
    "server.max_connections_per_client" => server.connections.max_connections_per_client,
    "store" => store,
    "cache" => cache,
    "session.format" => session.format,
];

/// The HTTPS listeners' addresses and ALPN are set when they open; whether there are any at
/// all too. Their certificates, redirect and HSTS are reloaded.
const TLS_RESTART_ONLY: &[RestartOnly] = &[RestartOnly {
    key: "tls.listen, tls.http2",
    differs: |a, b| match (&a.tls, &b.tls) {
        (Some(a), Some(b)) => a.listen != b.listen || a.http2 != b.http2,
        (None, None) => false,
        _ => true,
    },
    keep: |running, next| match (&running.tls, &mut next.tls) {
        (Some(running), Some(next)) => {
            next.listen = running.listen.clone();
            next.http2 = running.http2;
        }
        (running, next) => *next = running.clone(),
    },
}];

fn restart_only() -> impl Iterator<Item = &'static RestartOnly> {
    RESTART_ONLY.iter().chain(TLS_RESTART_ONLY)
}

/// The settings a running process cannot change, by key path, that differ between `running`
/// and `next`.
pub fn restart_needed(running: &Config, next: &Config) -> Vec<&'static str> {
    restart_only()
        .filter(|s| (s.differs)(running, next))
        .map(|s| s.key)
        .collect()
}

/// `next` with the running values of the settings that need a restart.
fn keep_restart_settings(running: &Config, mut next: Config) -> Config {
    for setting in restart_only() {
        (setting.keep)(running, &mut next);
    }
    next
}

/// Reloads the configuration file into the gateway's shared state.
pub struct Reloader {
    path: PathBuf,
    state: SharedState,
    backend: Arc<Backend>,
    /// The HTTPS listeners' certificates, re-read at each reload.
    certificates: Option<Arc<SniResolver>>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        state: SharedState,
        backend: Arc<Backend>,
        certificates: Option<Arc<SniResolver>>,
    ) -> Self {
        if let Some(resolver) = &certificates {
            crate::metrics::certificates_loaded(&resolver.current());
        }
        Reloader {
            path,
            state,
            backend,
            certificates,
        }
    }

    /// Reads the file and swaps in its state; returns the new pools (whose health checks the
    /// caller starts). On error nothing changes.
    pub fn reload(&self) -> Result<Arc<Pools>, ConfigError> {
        let next = crate::config::load(&self.path)?;
        let running = self.state.load_full();
        let restart = restart_needed(&running.config, &next);
        if !restart.is_empty() {
            warn!(
                settings = ?restart,
                "these settings changed but only take effect after a restart; they keep their running values"
            );
        }
        let next = keep_restart_settings(&running.config, next);
        if running.config.identity.headers != next.identity.headers {
            // Cached sessions carry the old headers' values.
            if let Some(cache) = &self.backend.cache {
                cache.drop_all();
            }
        }
        if let (Some(resolver), Some(tls)) = (&self.certificates, &next.tls) {
            // New handshakes get the new certificates; connections made keep theirs.
            resolver.replace(tls.certificates.clone());
            crate::metrics::certificates_loaded(&tls.certificates);
        }
        let pools = Arc::new(Pools::new(&next.upstreams));
        let state = GatewayState::new(next, self.backend.clone(), pools.clone(), Some(&running));
        self.state.store(Arc::new(state));
        Ok(pools)
    }
}

/// Runs `pools`' health checks until the returned sender says stop.
fn run_health_checks(pools: Arc<Pools>) -> watch::Sender<bool> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move { pools.run_health_checks(stopped).await });
    stop
}

/// The background service: health checks of the current pools, and reloads on SIGHUP.
pub struct ControlService(pub Reloader);

#[async_trait]
impl BackgroundService for ControlService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let reloader = &self.0;
        let mut checks = run_health_checks(reloader.state.load().pools.clone());
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => {
                    info!(config = %reloader.path.display(), "reloads the configuration on SIGHUP");
                    Some(signal)
                }
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGHUP; hot reload is off");
                    None
                }
            };
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {
                    let _ = checks.send(true);
                    return;
                }
                Some(()) = hangup => match reloader.reload() {
                    Ok(pools) => {
                        let _ = checks.send(true);
                        checks = run_health_checks(pools);
                        metrics().config_reloads.with_label_values(&["success"]).inc();
                        info!(config = %reloader.path.display(), "configuration reloaded");
                    }
                    Err(e) => {
                        metrics().config_reloads.with_label_values(&["failure"]).inc();
                        warn!(error = %e, "configuration reload refused; the running configuration keeps serving");
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_server: &str, format: &str, prefix: &str) -> Config {
        let text = format!(
            r#"
[server]
listen = ["127.0.0.1:8080"]
{extra_server}
[session]
format = "{format}"
[identity]
insecure_signing_key = "0123456789abcdef0123456789abcdef"
[[upstream]]
name = "app"
backends = ["127.0.0.1:8000"]
[[route]]
path_prefix = "{prefix}"
upstream = "app"
"#
        );
        crate::config::from_toml(&text, "test", std::path::Path::new(".")).expect("valid")
    }

    #[test]
    fn restart_only_settings_are_reported_and_keep_their_running_values() {
        let running = config("threads = 2", "msgpack", "/");
        let next = config("threads = 4\nshutdown_grace = \"9s\"", "json", "/app");
        assert_eq!(
            restart_needed(&running, &next),
            ["server.threads", "server.shutdown_grace", "session.format"]
        );
        let kept = keep_restart_settings(&running, next);
        assert_eq!(kept.server.threads, 2);
        assert_eq!(kept.server.shutdown_grace, running.server.shutdown_grace);
        assert_eq!(kept.session.format, running.session.format);
        assert_eq!(
            kept.routes[0].path_prefix, "/app",
            "the rest is the new file's"
        );
        assert!(restart_needed(&running, &kept).is_empty());
    }
}
