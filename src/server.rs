//! Assembles the Pingora server: the proxy service on the public listeners, the admin service,
//! and the store's housekeeping in the background.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use tracing::info;

use crate::admin::Admin;
use crate::config::model::StoreSettings;
use crate::config::Config;
use crate::proxy::Gateway;
use crate::session::invalidation::Invalidator;
use crate::session::lifecycle::now_ms;
use crate::session::renewal::RenewalFlusher;
use crate::session::{SessionStore, StoreError};
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

/// Builds the server for `config`. Call `run_forever` on the result.
pub fn build(config: Config) -> Result<Server, StoreError> {
    // Pingora counts whole seconds: round the grace up so "500ms" is not "none".
    let grace_secs = config.server.shutdown_grace.as_millis().div_ceil(1000) as u64;
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(grace_secs),
        graceful_shutdown_timeout_seconds: Some(grace_secs.max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = config.server.listen.clone();
    let admin_listen = config.server.admin_listen;
    let interval = match &config.store {
        StoreSettings::Memory(m) => m.sweep_interval,
        StoreSettings::Redis(_) => Duration::from_secs(3600),
    };
    let mut stack = crate::session::build_stack(&config)?;
    let flusher = stack.flusher.take();
    let invalidator = stack.invalidator.take();
    let (pools, health_checks) = Pools::new(&config.upstreams);
    let gateway = Gateway::new(config, &stack, pools);
    let store = stack.store.clone();

    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    for addr in &listen {
        proxy.add_tcp(&addr.to_string());
    }
    let mut admin = Service::new(
        "admin".to_string(),
        HttpServer::new_app(Admin::new(store.clone())),
    );
    admin.add_tcp(&admin_listen.to_string());
    let maintenance = background_service("store maintenance", StoreMaintenance { store, interval });

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(maintenance);
    for service in health_checks {
        server.add_service(service);
    }
    if let Some(flusher) = flusher {
        server.add_service(background_service(
            "session renewals",
            RenewalService(flusher),
        ));
    }
    if let Some(invalidator) = invalidator {
        server.add_service(background_service(
            "cache invalidation",
            InvalidationService(invalidator),
        ));
    }
    info!(listen = ?listen, admin = %admin_listen, "sessiongate starting");
    Ok(server)
}
