//! Follows other instances' writes: a dedicated RESP3 connection with Redis client-side-caching
//! tracking in broadcast mode (`CLIENT TRACKING ON BCAST PREFIX {prefix}s:`) receives an
//! invalidation for every change to a session key (writes, deletes, expiry) made by anyone,
//! and drops the cached copy. While that connection is down the cache is flushed and
//! disabled: without invalidations it could serve a session another instance has ended.

use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::cache::SessionCache;
use super::id::StoreKey;

/// The client name the invalidation connection registers (visible in `CLIENT LIST`).
pub const CLIENT_NAME: &str = "sessiongate-invalidation";

/// How often the connection is pinged to notice a silent break.
const HEARTBEAT: Duration = Duration::from_secs(1);

pub struct Invalidator {
    connection: redis::ConnectionInfo,
    key_prefix: String,
    connect_timeout: Duration,
    cache: Arc<SessionCache>,
}

impl Invalidator {
    /// Follows invalidations for the store `settings` describe, into `cache`.
    pub fn new(
        settings: &crate::config::model::RedisStoreSettings,
        cache: Arc<SessionCache>,
    ) -> Result<Self, redis::RedisError> {
        Ok(Invalidator {
            connection: super::redis::connection_info(settings, redis::ProtocolVersion::RESP3)?,
            key_prefix: format!("{}s:", settings.key_prefix),
            connect_timeout: settings.connect_timeout,
            cache,
        })
    }

    fn key_of(&self, value: &Value) -> Option<StoreKey> {
        let bytes = match value {
            Value::BulkString(b) => b.as_slice(),
            Value::SimpleString(s) => s.as_bytes(),
            _ => return None,
        };
        let text = std::str::from_utf8(bytes).ok()?;
        text.strip_prefix(&self.key_prefix)
            .map(StoreKey::from_stored)
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

    /// One connection's life: connect, enable tracking, apply invalidations until it breaks.
    async fn session(&self, established: &mut bool) -> Result<(), redis::RedisError> {
        let client = redis::Client::open(self.connection.clone())?;
        let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout))
            .set_push_sender(tx);
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
            .arg(&self.key_prefix)
            .exec_async(&mut conn)
            .await?;
        // Only now can the cache trust that it hears about every write.
        self.cache.enable();
        *established = true;
        info!("session cache follows invalidations from Redis");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                push = rx.recv() => match push {
                    Some(p) if p.kind == PushKind::Invalidate => self.apply(p),
                    Some(p) if p.kind == PushKind::Disconnection => return Ok(()),
                    Some(_) => {}
                    None => return Ok(()),
                },
                _ = heartbeat.tick() => {
                    redis::cmd("PING").exec_async(&mut conn).await?;
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
