//! Following a sentinel-monitored master: one multiplexed connection to the master the
//! sentinels name. A connection error or a `READONLY` reply (the node was demoted) drops it;
//! the next call asks the sentinels again, and a `+switch-master` announcement drops it at
//! once, so sessiongate follows a failover without a restart. Resolution is single-flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ErrorKind, ProtocolVersion, RedisError, RedisResult,
    TlsMode,
};

use super::connect::certificates;
use crate::config::model::{RedisStoreSettings, RedisTopology};

/// The master connection of a sentinel-monitored group, re-resolved after it fails or when
/// the sentinels announce a new master.
pub struct SentinelLink {
    pub(super) sentinel: tokio::sync::Mutex<SentinelClient>,
    pub(super) current: Arc<ArcSwapOption<(MultiplexedConnection, u64)>>,
    pub(super) resolutions: AtomicU64,
    pub(super) config: AsyncConnectionConfig,
    pub(super) deadline: Duration,
    pub(super) settings: RedisStoreSettings,
    pub(super) watching: std::sync::Once,
}

impl SentinelLink {
    /// The master connection and which resolution made it, resolving it when needed.
    pub(super) async fn master(&self) -> RedisResult<(MultiplexedConnection, u64)> {
        if let Some(current) = self.current.load_full() {
            return Ok((current.0.clone(), current.1));
        }
        // One resolution at a time; callers queued behind it take its result.
        let mut sentinel = match tokio::time::timeout(self.deadline, self.sentinel.lock()).await {
            Ok(guard) => guard,
            Err(_) => return Err(resolution_timeout()),
        };
        if let Some(current) = self.current.load_full() {
            return Ok((current.0.clone(), current.1));
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
        Ok((connection, resolution))
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
    pub(super) fn forget(&self, resolution: u64) {
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

/// A client that asks the sentinels for the master of `master_name`.
pub(super) fn sentinel_client(
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
