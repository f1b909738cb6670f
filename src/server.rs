//! Assembles the Pingora server: the proxy service on the public listeners, the admin service,
//! and the store's housekeeping in the background.

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

use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;

use crate::admin::Admin;
use crate::cache::invalidation::Invalidator;
use crate::cache::renewal::RenewalFlusher;
use crate::config::model::StoreSettings;
use crate::config::Config;
use crate::connection::{Admission, ConnectionGuard, GuardedStream, HeadLimits, Ticket};
use crate::proxy::{Gateway, GatewayState, SharedState};
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

/// A connection's place under the caps, counted in `sessiongate_client_connections` while
/// it is held.
struct Held(#[allow(dead_code)] Ticket);

impl Held {
    fn new(ticket: Ticket) -> Self {
        crate::metrics::metrics().connections_open.inc();
        Held(ticket)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        crate::metrics::metrics().connections_open.dec();
    }
}

/// The proxy behind the connection limits: each accepted connection takes a place under the
/// connection caps (or is answered 503), and an HTTP/1 connection's stream is wrapped by the
/// head guard with the limits of the configuration current at its accept.
struct GuardedProxy {
    proxy: Arc<HttpProxy<Gateway>>,
    state: SharedState,
    admission: Arc<Admission>,
}

#[async_trait]
impl ServerApp for GuardedProxy {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = std::time::Instant::now();
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _held = match self.admission.admit(client) {
            Ok(ticket) => Held::new(ticket),
            Err(refused) => {
                crate::metrics::metrics()
                    .connections_refused
                    .with_label_values(&[refused.as_str()])
                    .inc();
                debug!(
                    reason = refused.as_str(),
                    "refused a connection over the cap"
                );
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(refused.response()).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
                return None;
            }
        };
        let c = self.state.load().config.server.connections;
        let limits = HeadLimits {
            header_timeout: c.header_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            idle_timeout: c.keepalive_timeout,
        };
        if stream.selected_alpn_proto() == Some(pingora::protocols::ALPN::H2) {
            // HTTP/2's frames carry their own limits (the h2 codec's).
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let guard = ConnectionGuard::new(limits, accepted);
        let stream: Stream = Box::new(GuardedStream::new(stream, guard.clone()));
        crate::connection::guard::scope(
            guard,
            ServerApp::process_new(&self.proxy, stream, shutdown),
        )
        .await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await
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
    )));
    let store = backend.store();

    let connections = state.load().config.server.connections;
    let app = GuardedProxy {
        proxy: Arc::new(pingora::proxy::http_proxy(
            &server.configuration,
            Gateway::new(state.clone()),
        )),
        state: state.clone(),
        admission: Admission::new(
            connections.max_connections,
            connections.max_connections_per_client,
        ),
    };
    let mut proxy = Service::new("sessiongate".to_string(), app);
    for addr in &listen {
        proxy.add_tcp(&addr.to_string());
    }
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
        ControlService(Reloader::new(path, state, backend)),
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
