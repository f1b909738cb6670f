//! Connections to Redis in each topology, behind one type the store's commands run on.
//!
//! - Standalone: a redis-rs `ConnectionManager`, which reconnects by itself.
//! - Sentinel: one multiplexed connection to the master the sentinels name. A connection error
//!   or a `READONLY` reply (the node was demoted) drops it; the next call asks the sentinels
//!   again, so sessiongate follows a failover without a restart. Resolution is single-flight.
//! - Cluster: redis-rs's async cluster connection, which keeps the slot map and follows
//!   `MOVED` and `ASK`.
//!
//! Credentials (`username`, `password_file` / `password_env`) and TLS material apply to every
//! node of every mode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline,
    ProtocolVersion, RedisError, RedisFuture, RedisResult, TlsCertificates, TlsMode, Value,
};

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

/// The master connection of a sentinel-monitored group, re-resolved after it fails or when
/// the sentinels announce a new master.
pub struct SentinelLink {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Arc<ArcSwapOption<(MultiplexedConnection, u64)>>,
    resolutions: AtomicU64,
    config: AsyncConnectionConfig,
    deadline: Duration,
    settings: RedisStoreSettings,
    watching: std::sync::Once,
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
            Connector::Sentinel(s) => s.link().await,
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

/// Whether an error means the master connection is gone or no longer the master.
pub fn needs_new_master(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || super::is_readonly(error)
}

impl SentinelLink {
    async fn link(&self) -> RedisResult<Link> {
        if let Some(current) = self.current.load_full() {
            return Ok(Link::Master(current.0.clone(), current.1));
        }
        // One resolution at a time; callers queued behind it take its result.
        let mut sentinel = match tokio::time::timeout(self.deadline, self.sentinel.lock()).await {
            Ok(guard) => guard,
            Err(_) => return Err(resolution_timeout()),
        };
        if let Some(current) = self.current.load_full() {
            return Ok(Link::Master(current.0.clone(), current.1));
        }
        let resolve = async {
            let client = sentinel.async_get_client().await?;
            client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
        };
        let connection = match tokio::time::timeout(self.deadline, resolve).await {
            Ok(result) => result?,
            Err(_) => return Err(resolution_timeout()),
        };
        let resolution = self.resolutions.fetch_add(1, Ordering::Relaxed) + 1;
        if resolution > 1 {
            tracing::info!(resolution, "connected to the master the sentinels name");
        }
        self.current
            .store(Some(Arc::new((connection.clone(), resolution))));
        self.watching.call_once(|| self.watch());
        Ok(Link::Master(connection, resolution))
    }

    /// Follows the sentinels' `+switch-master` announcements for as long as the store lives:
    /// on a switch the current connection is dropped at once, before the old master is
    /// demoted, so no write lands on a node that is about to lose it.
    fn watch(&self) {
        let current = Arc::downgrade(&self.current);
        let settings = self.settings.clone();
        tokio::spawn(async move {
            loop {
                let switched = switch_master(&settings).await;
                let Some(current) = current.upgrade() else {
                    return;
                };
                match switched {
                    Ok(()) => {
                        tracing::info!("the sentinels switched the master; reconnecting");
                        current.store(None);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "sentinel subscription lost; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// Drops the connection made by `resolution` (not a newer one another call already made).
    fn forget(&self, resolution: u64) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.1 == resolution) {
            self.current.compare_and_swap(&*current, None);
        }
    }
}

/// Resolves when the sentinels announce a new master for the configured group
/// (`+switch-master`); fails when no sentinel can be subscribed to or the subscription breaks.
pub async fn switch_master(settings: &RedisStoreSettings) -> RedisResult<()> {
    use futures_util::StreamExt;
    let RedisTopology::Sentinel { master_name, .. } = &settings.topology else {
        return std::future::pending().await;
    };
    let mut sentinel = sentinel_client(settings, ProtocolVersion::RESP2)?;
    let client = sentinel.async_get_sentinel_client().await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("+switch-master").await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        // "<master name> <old ip> <old port> <new ip> <new port>"
        let payload: String = message.get_payload()?;
        if payload.split(' ').next() == Some(master_name.as_str()) {
            return Ok(());
        }
    }
    Err(RedisError::from((
        ErrorKind::Io,
        "the sentinel subscription closed",
    )))
}

fn resolution_timeout() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "timed out asking the sentinels for the master",
    ))
}

/// `address` with the configured credentials applied (they override any in the URL).
pub fn node_info(
    address: &str,
    settings: &RedisStoreSettings,
    protocol: ProtocolVersion,
) -> RedisResult<ConnectionInfo> {
    let info = redis::IntoConnectionInfo::into_connection_info(address)?;
    let mut redis_settings = info.redis_settings().clone().set_protocol(protocol);
    if let Some(username) = &settings.username {
        redis_settings = redis_settings.set_username(username);
    }
    if let Some(password) = &settings.password {
        redis_settings = redis_settings.set_password(String::from_utf8_lossy(&password.0));
    }
    Ok(info.set_redis_settings(redis_settings))
}

/// A client for one node, trusting the configured CA and presenting the client certificate.
pub fn client_for(info: ConnectionInfo, settings: &RedisStoreSettings) -> RedisResult<Client> {
    match certificates(settings) {
        Some(certs) => Client::build_with_tls(info, certs),
        None => Client::open(info),
    }
}

fn certificates(settings: &RedisStoreSettings) -> Option<TlsCertificates> {
    let tls = &settings.tls;
    if tls.ca.is_none() && tls.client_cert.is_none() {
        return None;
    }
    Some(TlsCertificates {
        client_tls: match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.0.clone(),
            }),
            _ => None,
        },
        root_cert: tls.ca.clone(),
    })
}

/// A client that asks the sentinels for the master of `master_name`.
fn sentinel_client(
    settings: &RedisStoreSettings,
    protocol: ProtocolVersion,
) -> RedisResult<SentinelClient> {
    let RedisTopology::Sentinel {
        sentinels,
        master_name,
    } = &settings.topology
    else {
        unreachable!("sentinel_client is only called in sentinel mode");
    };
    let mut addrs = Vec::with_capacity(sentinels.len());
    let mut sentinel_auth = None;
    for url in sentinels {
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
        let auth = info.redis_settings();
        if auth.password().is_some() {
            sentinel_auth = Some((
                auth.username().map(str::to_string),
                auth.password().unwrap_or_default().to_string(),
            ));
        }
        addrs.push(info.addr().clone());
    }
    let tls_mode = match addrs.first() {
        Some(ConnectionAddr::TcpTls { insecure: true, .. }) => Some(TlsMode::Insecure),
        Some(ConnectionAddr::TcpTls { .. }) => Some(TlsMode::Secure),
        _ => None,
    };
    let mut builder = SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)?
        .set_client_to_redis_protocol(protocol);
    if let Some(username) = &settings.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &settings.password {
        builder = builder.set_client_to_redis_password(String::from_utf8_lossy(&password.0));
    }
    if let Some((username, password)) = sentinel_auth {
        if let Some(username) = username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        builder = builder.set_client_to_sentinel_password(password);
    }
    if let Some(mode) = tls_mode {
        builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
        if let Some(certs) = certificates(settings) {
            builder = builder
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
    }
    builder.build()
}

/// Clients for every node that holds session keys (the master, or each cluster primary),
/// speaking `protocol`: the invalidation listener tracks each of them.
pub async fn primaries(
    settings: &RedisStoreSettings,
    protocol: ProtocolVersion,
) -> RedisResult<Vec<Client>> {
    match &settings.topology {
        RedisTopology::Standalone { url } => Ok(vec![client_for(
            node_info(url, settings, protocol)?,
            settings,
        )?]),
        RedisTopology::Sentinel { .. } => {
            let mut sentinel = sentinel_client(settings, protocol)?;
            Ok(vec![sentinel.async_get_client().await?])
        }
        RedisTopology::Cluster { nodes } => {
            let mut last_error = None;
            for node in nodes {
                match cluster_primaries(node, settings, protocol).await {
                    Ok(clients) => return Ok(clients),
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error
                .unwrap_or_else(|| RedisError::from((ErrorKind::Client, "no cluster nodes"))))
        }
    }
}

/// The primaries of the cluster `seed` belongs to, from `CLUSTER SLOTS`.
async fn cluster_primaries(
    seed: &str,
    settings: &RedisStoreSettings,
    protocol: ProtocolVersion,
) -> RedisResult<Vec<Client>> {
    let seed_info = node_info(seed, settings, protocol)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.connect_timeout));
    let mut conn = client_for(seed_info.clone(), settings)?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    let mut primaries = std::collections::BTreeSet::new();
    for range in slots {
        // [start, end, [host, port, id, ...], replicas...]
        if let Value::Array(parts) = range {
            if let Some(Value::Array(node)) = parts.get(2) {
                let host = match node.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                let port = match node.get(1) {
                    Some(Value::Int(p)) => *p,
                    _ => continue,
                };
                // An empty host means "the address you reached me on".
                let host = if host.is_empty() {
                    seed_host(&seed_info)
                } else {
                    host
                };
                primaries.insert((host, port));
            }
        }
    }
    let scheme = if settings.topology.uses_tls() {
        "rediss"
    } else {
        "redis"
    };
    primaries
        .into_iter()
        .map(|(host, port)| {
            let info = node_info(&format!("{scheme}://{host}:{port}"), settings, protocol)?;
            client_for(info, settings)
        })
        .collect()
}

fn seed_host(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".to_string(),
    }
}
