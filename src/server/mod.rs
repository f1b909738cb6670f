//! Assembles the Pingora server: the proxy service on the public listeners, the admin service,
//! and the store's housekeeping in the background. `listeners` sets up the public listeners.

mod listeners;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use tracing::{debug, info};

use crate::admin::Admin;
use crate::cache::invalidation::Invalidator;
use crate::cache::renewal::RenewalFlusher;
use crate::config::model::StoreSettings;
use crate::config::Config;
use crate::proxy::{GatewayState, SharedState};
use crate::reload::{ControlService, Reloader};
use crate::session::lifecycle::now_ms;
use crate::store::{SessionStore, StoreError};
use crate::upstream::Pools;

/// Periodic store housekeeping (the memory store's sweep of expired sessions).
struct StoreMaintenance {
    store: Arc<dyn SessionStore>,
    interval: Duration,
}

#[async_trait]
impl BackgroundService for StoreMaintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {
                    let removed = self.store.maintain(now_ms()).await;
                    if removed > 0 {
                        info!(removed, "swept expired sessions");
                    }
                }
            }
        }
    }
}

/// Writes queued idle renewals in batches; drains the queue on shutdown.
struct RenewalService(RenewalFlusher);

#[async_trait]
impl BackgroundService for RenewalService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.0
            .run(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        info!("flushed pending session renewals");
    }
}

/// Keeps the cache's invalidation connection to Redis up.
struct InvalidationService(Invalidator);

#[async_trait]
impl BackgroundService for InvalidationService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.0
            .run(async move {
                let _ = shutdown.changed().await;
            })
            .await;
    }
}

/// Samples the number of sessions in the store for `sessiongate_sessions_active`: a bounded
/// scan in the background, so requests never pay for it.
struct ActiveSessionsSampler {
    store: Arc<dyn SessionStore>,
    interval: Duration,
}

#[async_trait]
impl BackgroundService for ActiveSessionsSampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(self.interval);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => match self.store.count(now_ms()).await {
                    Ok(n) => crate::metrics::metrics().sessions_active.set(n as i64),
                    Err(e) => debug!(error = %e, "could not count the active sessions"),
                },
            }
        }
    }
}

/// Writes every access line at once from the start of a graceful shutdown, so nothing is left
/// in the buffer when the process exits.
struct AccessLogShutdown;

#[async_trait]
impl BackgroundService for AccessLogShutdown {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        crate::access_log::global().unbuffer();
    }
}

/// How to start: the configuration, the file it came from (re-read on SIGHUP), and whether
/// to take the listening sockets over from a running instance (`--upgrade`).
pub struct Launch {
    pub config: Config,
    pub path: PathBuf,
    pub upgrade: bool,
}

/// Builds the server. Call `run_forever` on the result.
pub fn build(launch: Launch) -> Result<Server, StoreError> {
    let Launch {
        config,
        path,
        upgrade,
    } = launch;
    // Pingora counts whole seconds: round the grace up so "500ms" is not "none".
    let grace_secs = config.server.shutdown_grace.as_millis().div_ceil(1000) as u64;
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(grace_secs),
        graceful_shutdown_timeout_seconds: Some(grace_secs.max(1)),
        upgrade_sock: config.server.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let listen = config.server.listen.clone();
    let admin_listen = config.server.admin_listen;
    let (sweep, sample) = match &config.store {
        StoreSettings::Memory(m) => (m.sweep_interval, Duration::from_secs(15)),
        StoreSettings::Redis(_) => (Duration::from_secs(3600), Duration::from_secs(60)),
    };
    let (backend, tasks) = crate::sessions::backend::build(&config)?;
    let pools = Arc::new(Pools::new(&config.upstreams));
    let state: SharedState = Arc::new(ArcSwap::from_pointee(GatewayState::new(
        config,
        backend.clone(),
        pools,
        None,
    )));
    let store = backend.store();

    let (proxy, certificates) = listeners::proxy_service(&server.configuration, state.clone());
    let mut admin = Service::new(
        "admin".to_string(),
        HttpServer::new_app(Admin::new(state.clone(), backend.clone())),
    );
    admin.add_tcp(&admin_listen.to_string());

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service(
        "store maintenance",
        StoreMaintenance {
            store: store.clone(),
            interval: sweep,
        },
    ));
    server.add_service(background_service(
        "active sessions",
        ActiveSessionsSampler {
            store,
            interval: sample,
        },
    ));
    server.add_service(background_service("access log", AccessLogShutdown));
    server.add_service(background_service(
        "health checks and reloads",
        ControlService(Reloader::new(path, state, backend, certificates)),
    ));
    if let Some(flusher) = tasks.flusher {
        server.add_service(background_service(
            "session renewals",
            RenewalService(flusher),
        ));
    }
    if let Some(invalidator) = tasks.invalidator {
        server.add_service(background_service(
            "cache invalidation",
            InvalidationService(invalidator),
        ));
    }
    info!(listen = ?listen, admin = %admin_listen, upgrade, "sessiongate starting");
    Ok(server)
}
