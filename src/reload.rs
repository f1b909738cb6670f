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
use crate::upstream::Pools;

/// The settings a running process cannot change, by key path, that differ between `running`
/// and `next`.
pub fn restart_needed(running: &Config, next: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.server, &next.server);
    [
        ("server.listen", a.listen != b.listen),
        ("server.threads", a.threads != b.threads),
        ("server.admin_listen", a.admin_listen != b.admin_listen),
        (
            "server.shutdown_grace",
            a.shutdown_grace != b.shutdown_grace,
        ),
        ("server.upgrade_sock", a.upgrade_sock != b.upgrade_sock),
        ("store", running.store != next.store),
        ("cache", running.cache != next.cache),
        (
            "session.format",
            running.session.format != next.session.format,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// `next` with the running values of the settings that need a restart.
fn keep_restart_settings(running: &Config, mut next: Config) -> Config {
    let server = &running.server;
    next.server.listen = server.listen.clone();
    next.server.threads = server.threads;
    next.server.admin_listen = server.admin_listen;
    next.server.shutdown_grace = server.shutdown_grace;
    next.server.upgrade_sock = server.upgrade_sock.clone();
    next.store = running.store.clone();
    next.cache = running.cache.clone();
    next.session.format = running.session.format;
    next
}

/// Reloads the configuration file into the gateway's shared state.
pub struct Reloader {
    path: PathBuf,
    state: SharedState,
    backend: Arc<Backend>,
}

impl Reloader {
    pub fn new(path: PathBuf, state: SharedState, backend: Arc<Backend>) -> Self {
        Reloader {
            path,
            state,
            backend,
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
        let pools = Arc::new(Pools::new(&next.upstreams));
        let state = GatewayState::new(next, self.backend.clone(), pools.clone());
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
