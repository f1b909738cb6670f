//! Sessions: ids and store keys, the record, the store interface and its memory and Redis
//! implementations, the pure lifecycle decisions, the control headers apps answer with, and
//! the operations the proxy performs with them.

pub mod cache;
pub mod control;
pub mod id;
pub mod lifecycle;
pub mod memory;
pub mod record;
pub mod redis;
pub mod sessions;
pub mod store;

use std::sync::Arc;

use crate::config::model::{SessionSettings, StoreSettings};

pub use id::{SessionId, StoreKey};
pub use record::SessionRecord;
pub use sessions::{ActiveSession, Resolution, Sessions, UpdateOutcome};
pub use store::{CasOutcome, SessionStore, StoreError};

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
