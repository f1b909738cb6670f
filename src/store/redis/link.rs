//! The connection the store's commands run on, in each topology, behind one type:
//!
//! - Standalone: a redis-rs `ConnectionManager`, which reconnects by itself.
//! - Sentinel: one multiplexed connection to the master the sentinels name (`sentinel`).
//! - Cluster: redis-rs's async cluster connection, which keeps the slot map and follows
//!   `MOVED` and `ASK`.
//!
//! Clients are built with the configured credentials and TLS material (`connect`).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, Pipeline, ProtocolVersion, RedisError, RedisFuture,
    RedisResult, Value,
};

use super::connect::{certificates, client_for, node_info};
use super::errors::needs_new_master;
use super::sentinel::{sentinel_client, SentinelLink};
use crate::config::model::{RedisStoreSettings, RedisTopology};

/// A connection the store's commands run on; cheap to clone.
#[derive(Clone)]
pub enum Link {
    Managed(ConnectionManager),
    /// A connection to the master of a sentinel-monitored group, and which resolution made it.
    Master(MultiplexedConnection, u64),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Managed(c) => c.req_packed_command(cmd),
            Link::Master(c, _) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Master(c, _) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Managed(c) => c.get_db(),
            Link::Master(c, _) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// Makes and keeps the store's connection for the configured topology.
pub enum Connector {
    Standalone {
        client: Client,
        config: ConnectionManagerConfig,
        manager: OnceLock<ConnectionManager>,
    },
    Sentinel(Box<SentinelLink>),
    Cluster {
        client: ClusterClient,
        connection: tokio::sync::OnceCell<ClusterConnection>,
    },
}

impl Connector {
    /// Prepares the connection for `settings`, speaking RESP2; nothing connects yet.
    pub fn new(settings: &RedisStoreSettings) -> RedisResult<Self> {
        let protocol = ProtocolVersion::RESP2;
        Ok(match &settings.topology {
            RedisTopology::Standalone { url } => Connector::Standalone {
                client: client_for(node_info(url, settings, protocol)?, settings)?,
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500)),
                manager: OnceLock::new(),
            },
            RedisTopology::Sentinel { .. } => Connector::Sentinel(Box::new(SentinelLink {
                sentinel: tokio::sync::Mutex::new(sentinel_client(settings, protocol)?),
                current: Arc::new(ArcSwapOption::empty()),
                resolutions: AtomicU64::new(0),
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.command_timeout)),
                deadline: settings.connect_timeout * 4,
                settings: settings.clone(),
                watching: std::sync::Once::new(),
            })),
            RedisTopology::Cluster { nodes } => {
                let infos = nodes
                    .iter()
                    .map(|n| node_info(n, settings, protocol))
                    .collect::<RedisResult<Vec<_>>>()?;
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.command_timeout)
                    .retries(2)
                    .min_retry_wait(5)
                    .max_retry_wait(50);
                if let Some(certs) = certificates(settings) {
                    builder = builder.certs(certs);
                }
                Connector::Cluster {
                    client: builder.build()?,
                    connection: tokio::sync::OnceCell::new(),
                }
            }
        })
    }

    /// The connection to run a command on, connecting (or re-resolving the master) if needed.
    pub async fn link(&self) -> RedisResult<Link> {
        match self {
            Connector::Standalone {
                client,
                config,
                manager,
            } => {
                if let Some(m) = manager.get() {
                    return Ok(Link::Managed(m.clone()));
                }
                let m = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
                // Two first calls may race; the loser's lazy manager never connected.
                Ok(Link::Managed(manager.get_or_init(|| m).clone()))
            }
            Connector::Sentinel(s) => s
                .master()
                .await
                .map(|(connection, resolution)| Link::Master(connection, resolution)),
            Connector::Cluster { client, connection } => connection
                .get_or_try_init(|| client.get_async_connection())
                .await
                .map(|c| Link::Cluster(c.clone())),
        }
    }

    /// Tells the connector how a command on `link` failed: a sentinel master connection that
    /// broke or was demoted is dropped, so the next call resolves the master again.
    pub fn failed(&self, link: &Link, error: &RedisError) {
        if let (Connector::Sentinel(s), Link::Master(_, resolution)) = (self, link) {
            if needs_new_master(error) {
                s.forget(*resolution);
            }
        }
    }
}
