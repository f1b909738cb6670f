//! Sessions: ids and store keys, the record, the store interface and its memory and Redis
//! implementations, the pure lifecycle decisions, the control headers apps answer with, and
//! the operations the proxy performs with them.

pub mod breaker;
pub mod cache;
pub mod control;
pub mod id;
pub mod invalidation;
pub mod lifecycle;
pub mod memory;
pub mod metered;
pub mod prepared;
pub mod record;
pub mod redis;
pub mod renewal;
pub mod sessions;
pub mod store;

use std::sync::Arc;

use crate::config::model::{SessionSettings, StoreSettings};
use crate::config::Config;

pub use id::{SessionId, StoreKey};
pub use prepared::PreparedSession;
pub use record::SessionRecord;
pub use sessions::{ActiveSession, Resolution, Sessions, UpdateOutcome};
pub use store::{CasOutcome, SessionStore, StoreError};

/// The store and what sits around it: the cache, the renewal queue, and the two background
/// tasks that serve them (the renewal flusher and the invalidation follower).
pub struct StoreStack {
    pub store: Arc<dyn SessionStore>,
    /// How old a cached session may be and still be served while the store is down.
    pub stale_window: std::time::Duration,
    pub cache: Option<Arc<cache::SessionCache>>,
    pub renewals: Option<Arc<renewal::RenewalQueue>>,
    pub flusher: Option<renewal::RenewalFlusher>,
    pub invalidator: Option<invalidation::Invalidator>,
}

impl StoreStack {
    /// Another handle on the same store, cache and renewal queue (the background tasks stay
    /// with the original).
    pub fn shared(&self) -> StoreStack {
        StoreStack {
            store: self.store.clone(),
            stale_window: self.stale_window,
            cache: self.cache.clone(),
            renewals: self.renewals.clone(),
            flusher: None,
            invalidator: None,
        }
    }

    /// Session operations over this stack with `settings`.
    pub fn sessions(&self, settings: SessionSettings) -> Sessions {
        Sessions::new(self.store.clone(), settings).with_cache(
            self.cache.clone(),
            self.renewals.clone(),
            self.stale_window,
        )
    }
}

/// Builds the store the configuration asks for, with its cache and renewal queue.
pub fn build_stack(config: &Config) -> Result<StoreStack, StoreError> {
    let store = build_store(&config.store, &config.session)?;
    let StoreSettings::Redis(redis) = &config.store else {
        return Ok(StoreStack {
            store: Arc::new(metered::MeteredStore::new(store)),
            stale_window: std::time::Duration::ZERO,
            cache: None,
            renewals: None,
            flusher: None,
            invalidator: None,
        });
    };
    let store: Arc<dyn SessionStore> = Arc::new(metered::MeteredStore::new(Arc::new(
        breaker::GuardedStore::new(store, redis.breaker),
    )));
    let cache = config
        .cache
        .as_ref()
        .map(|c| Arc::new(cache::SessionCache::new(c.settings.clone())));
    let invalidator = match (&cache, &config.cache) {
        (Some(cache), Some(c)) if c.invalidation => {
            // Nothing is cached until the invalidation connection is up.
            cache.flush(false);
            Some(invalidation::Invalidator::new(redis, cache.clone()))
        }
        _ => None,
    };
    let (renewals, flusher) = renewal::RenewalQueue::new(
        store.clone(),
        cache.clone(),
        redis.renewal_flush_interval,
        redis.renewal_batch_size,
    );
    Ok(StoreStack {
        store,
        stale_window: config
            .cache
            .as_ref()
            .map_or(std::time::Duration::ZERO, |c| c.stale_window),
        cache,
        renewals: Some(renewals),
        flusher: Some(flusher),
        invalidator,
    })
}

/// Builds the store the configuration asks for.
pub fn build_store(
    store: &StoreSettings,
    session: &SessionSettings,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match store {
        StoreSettings::Memory(m) => Arc::new(memory::MemoryStore::new(m.max_sessions)),
        StoreSettings::Redis(r) => Arc::new(redis::RedisStore::new(r.clone(), session.format)?),
    })
}
