//! `[cache]`: the session cache in front of Redis.

use std::time::Duration;

use super::defaults;
use super::problems::{positive, Problems};
use crate::config::file::RawCache;
use crate::config::model::{CacheConfig, CacheSettings, StoreSettings};

pub(super) fn check(
    raw: Option<&RawCache>,
    store: Option<&StoreSettings>,
    p: &mut Problems,
) -> Option<CacheConfig> {
    match store {
        Some(StoreSettings::Memory(_)) => {
            if raw.is_some() {
                p.add(
                    "cache",
                    "only applies to kind = \"redis\": the memory store is already in the process",
                );
            }
            return None;
        }
        None => return None,
        Some(StoreSettings::Redis(_)) => {}
    }
    let default = RawCache::default();
    let raw = raw.unwrap_or(&default);
    let max_entries = raw.max_entries.unwrap_or(defaults::CACHE_ENTRIES);
    if max_entries == 0 {
        p.add(
            "cache.max_entries",
            "must be greater than zero (set cache.enabled = false to turn the cache off)",
        );
    }
    let max_bytes = raw.max_bytes.unwrap_or(defaults::CACHE_BYTES);
    if max_bytes < 4096 {
        p.add("cache.max_bytes", "must be at least 4096 bytes");
    }
    let max_staleness = positive(
        raw.max_staleness,
        defaults::CACHE_MAX_STALENESS,
        "cache.max_staleness",
        p,
    );
    if max_staleness > Duration::from_secs(3600) {
        p.add(
            "cache.max_staleness",
            "must be at most 1h: it bounds how long a revoked session can still be served",
        );
    }
    let negative_ttl = raw.negative_ttl.unwrap_or(defaults::NEGATIVE_TTL);
    if negative_ttl > max_staleness && !max_staleness.is_zero() {
        p.add("cache.negative_ttl", "must not exceed cache.max_staleness");
    }
    let settings = CacheSettings {
        max_entries,
        max_bytes,
        max_staleness,
        negative_entries: raw.negative_entries.unwrap_or(defaults::NEGATIVE_ENTRIES),
        negative_ttl,
    };
    let stale_window = positive(
        raw.stale_window,
        defaults::STALE_WINDOW,
        "cache.stale_window",
        p,
    );
    if stale_window > Duration::from_secs(24 * 3600) {
        p.add("cache.stale_window", "must be at most 24h");
    }
    raw.enabled.unwrap_or(true).then_some(CacheConfig {
        settings,
        invalidation: raw.invalidation.unwrap_or(true),
        stale_window,
    })
}
