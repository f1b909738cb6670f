//! Follows other instances' writes: a dedicated RESP3 connection with Redis client-side-caching
//! tracking in broadcast mode (`CLIENT TRACKING ON BCAST PREFIX {prefix}s:`) receives an
//! invalidation for every change to a session key (writes, deletes, expiry) made by anyone,
//! and drops the cached copy. While that connection is down the cache is flushed and
//! disabled: without invalidations it could serve a session another instance has ended.
//!
//! Tracking is per node: in Sentinel mode the listener asks the sentinels for the master on
//! every reconnect (a failover drops its connection); in Cluster mode it tracks every primary
//! and starts over, re-reading the slot map, when any of those connections ends.

use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::SessionCache;
use crate::session::StoreKey;
use crate::store::{redis as store_redis, KeySchema};

/// The client name the invalidation connection registers (visible in `CLIENT LIST`).
pub const CLIENT_NAME: &str = "sessiongate-invalidation";

/// How often the connection is pinged to notice a silent break.
const HEARTBEAT: Duration = Duration::from_secs(1);

pub struct Invalidator {
    settings: crate::config::model::RedisStoreSettings,
    keys: KeySchema,
    cache: Arc<SessionCache>,
}

impl Invalidator {
    /// Follows invalidations for the store `settings` describe, into `cache`.
    pub fn new(
        settings: &crate::config::model::RedisStoreSettings,
        cache: Arc<SessionCache>,
    ) -> Self {
        Invalidator {
            settings: settings.clone(),
            keys: KeySchema::new(&settings.key_prefix),
            cache,
        }
    }

    fn key_of(&self, value: &Value) -> Option<StoreKey> {
        let bytes = match value {
            Value::BulkString(b) => b.as_slice(),
            Value::SimpleString(s) => s.as_bytes(),
            _ => return None,
        };
        self.keys.session_of(std::str::from_utf8(bytes).ok()?)
    }

    fn apply(&self, push: PushInfo) {
        for item in push.data {
            match item {
                Value::Array(keys) => {
                    for key in keys.iter().filter_map(|k| self.key_of(k)) {
                        self.cache.invalidate(&key);
                    }
                }
                // A null invalidation means "everything" (FLUSHALL / FLUSHDB).
                Value::Nil => self.cache.enable(),
                other => {
                    if let Some(key) = self.key_of(&other) {
                        self.cache.invalidate(&key);
                    }
                }
            }
        }
    }

    /// One tracking connection to `client`, pushing what it hears into `pushes`.
    async fn track(
        &self,
        client: &redis::Client,
        pushes: &mpsc::UnboundedSender<PushInfo>,
    ) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
        let timeout = self.settings.connect_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_push_sender(pushes.clone());
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(CLIENT_NAME)
            .exec_async(&mut conn)
            .await?;
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(self.keys.session_prefix())
            .exec_async(&mut conn)
            .await?;
        Ok(conn)
    }

    /// One life of the tracking connections: connect to every node that holds sessions, enable
    /// tracking, apply invalidations until any connection breaks.
    async fn session(&self, established: &mut bool) -> Result<(), redis::RedisError> {
        let resolve = store_redis::primaries(&self.settings, redis::ProtocolVersion::RESP3);
        let clients = tokio::time::timeout(self.settings.connect_timeout * 4, resolve)
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "timed out resolving the nodes"))
            })??;
        let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
        let mut connections = Vec::with_capacity(clients.len());
        for client in &clients {
            connections.push(self.track(client, &tx).await?);
        }
        // Only now can the cache trust that it hears about every write.
        self.cache.enable();
        *established = true;
        info!(
            nodes = connections.len(),
            "session cache follows invalidations from Redis"
        );
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // In Sentinel mode, a new master announced by the sentinels ends this life at once.
        let switched = async {
            while store_redis::switch_master(&self.settings).await.is_err() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::pin!(switched);
        loop {
            tokio::select! {
                _ = &mut switched => {
                    info!("the sentinels switched the master; following it");
                    return Ok(());
                }
                push = rx.recv() => match push {
                    Some(p) if p.kind == PushKind::Invalidate => self.apply(p),
                    Some(p) if p.kind == PushKind::Disconnection => return Ok(()),
                    Some(_) => {}
                    None => return Ok(()),
                },
                _ = heartbeat.tick() => {
                    for conn in &mut connections {
                        // ROLE doubles as the ping: a node demoted in a failover no longer
                        // sees every write first-hand, so follow the new master instead.
                        let role: Vec<Value> = redis::cmd("ROLE").query_async(conn).await?;
                        if !matches!(role.first(), Some(Value::BulkString(r)) if r == b"master") {
                            warn!("the tracked Redis node is no longer a master; reconnecting");
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Keeps the invalidation connection up until `stop` resolves.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(50);
        loop {
            self.cache.flush(false);
            let mut established = false;
            tokio::select! {
                _ = &mut stop => return,
                result = self.session(&mut established) => {
                    self.cache.flush(false);
                    match result {
                        Ok(()) => warn!("the invalidation connection closed; the session cache is off until it is back"),
                        Err(e) => warn!(error = %e, "the invalidation connection failed; the session cache is off until it is back"),
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = if established {
                Duration::from_millis(50)
            } else {
                (backoff * 2).min(Duration::from_secs(2))
            };
        }
    }
}
