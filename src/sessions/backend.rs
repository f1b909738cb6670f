//! What the session service runs on, built once per process and shared by every
//! configuration a reload brings: the store behind its layer (meter, circuit breaker), the
//! cache, the renewal queue, and the background tasks that serve them.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::invalidation::Invalidator;
use crate::cache::renewal::{RenewalFlusher, RenewalQueue};
use crate::cache::SessionCache;
use crate::config::model::StoreSettings;
use crate::config::Config;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{SessionStore, StoreError, StoreLayer};

/// The store and the tiers in front of it. One per process: reloads keep it.
pub struct Backend {
    pub store: Arc<StoreLayer>,
    pub cache: Option<Arc<SessionCache>>,
    /// Idle renewals are written behind when there is a queue, inline otherwise.
    pub renewals: Option<Arc<RenewalQueue>>,
    /// How old a cached session may be and still be served while the store is down.
    pub stale_window: Duration,
}

/// The background tasks a backend needs run: the renewal flusher and the invalidation
/// listener, when it has them.
pub struct BackgroundTasks {
    pub flusher: Option<RenewalFlusher>,
    pub invalidator: Option<Invalidator>,
}

impl Backend {
    /// A backend straight on `store` (metered, no breaker): every read is a store read and
    /// renewals are inline.
    pub fn over(store: Arc<dyn SessionStore>) -> Arc<Self> {
        Arc::new(Backend {
            store: Arc::new(StoreLayer::new(store, None)),
            cache: None,
            renewals: None,
            stale_window: Duration::ZERO,
        })
    }

    /// The store, as the trait object the background tasks take.
    pub fn store(&self) -> Arc<dyn SessionStore> {
        self.store.clone()
    }
}

/// Builds the backend the configuration asks for, and its background tasks.
pub fn build(config: &Config) -> Result<(Arc<Backend>, BackgroundTasks), StoreError> {
    let none = BackgroundTasks {
        flusher: None,
        invalidator: None,
    };
    let redis = match &config.store {
        StoreSettings::Memory(m) => {
            return Ok((
                Backend::over(Arc::new(MemoryStore::new(m.max_sessions))),
                none,
            ))
        }
        StoreSettings::Redis(redis) => redis,
    };
    let store = Arc::new(StoreLayer::new(
        Arc::new(RedisStore::new(redis.clone(), config.session.format)?),
        Some(redis.breaker),
    ));
    let cache = config
        .cache
        .as_ref()
        .map(|c| Arc::new(SessionCache::new(c.settings.clone())));
    let invalidator = match (&cache, &config.cache) {
        (Some(cache), Some(c)) if c.invalidation => {
            // Nothing is cached until the invalidation connection is up.
            cache.flush(false);
            Some(Invalidator::new(redis, cache.clone()))
        }
        _ => None,
    };
    let (renewals, flusher) = RenewalQueue::new(
        store.clone(),
        cache.clone(),
        redis.renewal_flush_interval,
        redis.renewal_batch_size,
    );
    let backend = Backend {
        store,
        cache,
        renewals: Some(renewals),
        stale_window: config
            .cache
            .as_ref()
            .map_or(Duration::ZERO, |c| c.stale_window),
    };
    Ok((
        Arc::new(backend),
        BackgroundTasks {
            flusher: Some(flusher),
            invalidator,
        },
    ))
}
