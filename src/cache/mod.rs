//! The tiers in front of the store: this in-proxy session cache, the listener that keeps it
//! coherent with other instances' writes (`invalidation`), and the write-behind queue of idle
//! renewals (`renewal`).
//!
//! Bounded by entry count and by (estimated) bytes, sharded to keep lock hold times short; an
//! entry older than `max_staleness` is a miss, whatever invalidation says. Concurrent misses for
//! one key are coalesced into a single store read. Ids the store does not know are cached
//! negatively in a separate, smaller bound, so a flood of random cookies neither reaches the
//! store at full rate nor evicts real sessions.
//!
//! Invalidation (from this instance's writes, or from the store's invalidation stream) removes
//! the entry and leaves a tombstone stamped with a global epoch: a read that started before the
//! invalidation cannot re-insert what it read. While the invalidation stream is down the cache
//! is flushed and disabled, because nothing would tell it about other instances' writes.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod invalidation;
pub mod renewal;

use lru::LruCache;

use crate::config::model::CacheSettings;
use crate::session::{PreparedSession, StoreKey};
use crate::store::StoreError;

const SHARDS: usize = 16;

/// How long a tombstone is kept: longer than any store read may take.
const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(10);

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Hit(Arc<PreparedSession>),
    /// Known not to exist (negative entry).
    Absent,
    Miss,
}

/// Where a resolved record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    NegativeCache,
    Store,
    /// Another request's store read, joined.
    Coalesced,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub coalesced: AtomicU64,
    pub negative_hits: AtomicU64,
    pub invalidations: AtomicU64,
    pub evictions: AtomicU64,
    pub flushes: AtomicU64,
}

impl CacheSnapshot {
    /// The figures `/metrics` reports.
    pub fn figures(&self) -> crate::metrics::CacheFigures {
        crate::metrics::CacheFigures {
            entries: self.entries,
            bytes: self.bytes,
            evictions: self.evictions,
            invalidations: self.invalidations,
            coalesced: self.coalesced,
            negative_hits: self.negative_hits,
        }
    }
}

/// A point-in-time copy of the counters and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub negative_hits: u64,
    pub invalidations: u64,
    pub evictions: u64,
    pub flushes: u64,
    pub entries: usize,
    pub negative_entries: usize,
    pub bytes: usize,
    pub enabled: bool,
}

struct Entry {
    record: Arc<PreparedSession>,
    fetched_at: Instant,
    bytes: usize,
    /// The trust generation it was stored in: only entries of the current generation are hits.
    generation: u64,
}

struct Shard {
    entries: LruCache<StoreKey, Entry>,
    bytes: usize,
    negative: LruCache<StoreKey, Instant>,
    /// Invalidation epoch and time per recently invalidated key.
    tombstones: HashMap<StoreKey, (u64, Instant)>,
}

type Flight = tokio::sync::OnceCell<Result<Option<Arc<PreparedSession>>, StoreError>>;

pub struct SessionCache {
    settings: CacheSettings,
    per_shard_entries: usize,
    per_shard_bytes: usize,
    per_shard_negative: usize,
    shards: Vec<Mutex<Shard>>,
    inflight: Mutex<HashMap<StoreKey, Arc<Flight>>>,
    enabled: AtomicBool,
    epoch: AtomicU64,
    /// Epoch of the last flush: reads that started before it insert nothing.
    flushed_at: AtomicU64,
    /// Bumped by every flush: older entries are no longer hits, but stay available to
    /// `get_stale` (serving stale sessions while the store is down).
    generation: AtomicU64,
    stats: CacheStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock still holds sound data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Memory held by one cached session, key and bookkeeping included.
pub fn entry_bytes(key: &StoreKey, session: &PreparedSession) -> usize {
    std::mem::size_of::<Entry>()
        + std::mem::size_of::<StoreKey>()
        + key.as_str().len()
        + 2 * std::mem::size_of::<usize>() // Arc counters
        + session.size_bytes()
        + 40 // LRU node links and hash-table slot
}

impl SessionCache {
    pub fn new(settings: CacheSettings) -> Self {
        let per_shard = |n: usize| n.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: LruCache::unbounded(),
                    bytes: 0,
                    negative: LruCache::new(
                        NonZeroUsize::new(per_shard(settings.negative_entries))
                            .unwrap_or(NonZeroUsize::MIN),
                    ),
                    tombstones: HashMap::new(),
                })
            })
            .collect();
        SessionCache {
            per_shard_entries: per_shard(settings.max_entries),
            per_shard_bytes: per_shard(settings.max_bytes),
            per_shard_negative: per_shard(settings.negative_entries),
            settings,
            shards,
            inflight: Mutex::new(HashMap::new()),
            enabled: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            flushed_at: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            stats: CacheStats::default(),
        }
    }

    /// A key is the base64url of a SHA-256: already uniform, so the shard needs no hashing.
    fn shard(&self, key: &StoreKey) -> &Mutex<Shard> {
        &self.shards[usize::from(key.spread()) % SHARDS]
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Looks `key` up without touching the store.
    pub fn get(&self, key: &StoreKey) -> Cached {
        if !self.is_enabled() {
            return Cached::Miss;
        }
        let now = Instant::now();
        let generation = self.generation.load(Ordering::Acquire);
        let mut shard = lock(self.shard(key));
        if let Some(entry) = shard.entries.get(key) {
            if entry.generation == generation
                && now.duration_since(entry.fetched_at) < self.settings.max_staleness
            {
                return Cached::Hit(entry.record.clone());
            }
            // Too old or from before a flush: a miss, but kept for `get_stale` until replaced.
        }
        if let Some(at) = shard.negative.get(key) {
            if now.duration_since(*at) < self.settings.negative_ttl {
                return Cached::Absent;
            }
            shard.negative.pop(key);
        }
        Cached::Miss
    }

    /// The cached copy of `key` if it was read from the store less than `window` ago, whether
    /// or not it is still trusted: for serving sessions while the store cannot answer.
    pub fn get_stale(&self, key: &StoreKey, window: Duration) -> Option<Arc<PreparedSession>> {
        let mut shard = lock(self.shard(key));
        shard
            .entries
            .get(key)
            .filter(|e| e.fetched_at.elapsed() < window)
            .map(|e| e.record.clone())
    }

    /// Resolves `key` through the cache; on a miss runs `load` once for all concurrent callers.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &StoreKey,
        load: F,
    ) -> Result<(Option<Arc<PreparedSession>>, Source), StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<PreparedSession>, StoreError>>,
    {
        match self.get(key) {
            Cached::Hit(record) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((Some(record), Source::Cache));
            }
            Cached::Absent => {
                self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
                return Ok((None, Source::NegativeCache));
            }
            Cached::Miss => {}
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let since = self.epoch.load(Ordering::Acquire);
        let (flight, created) = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::new());
                    inflight.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        let result = flight
            .get_or_init(|| async { load().await.map(|r| r.map(Arc::new)) })
            .await
            .clone();
        {
            let mut inflight = lock(&self.inflight);
            if inflight.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                inflight.remove(key);
            }
        }
        if !created {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        let record = result?;
        self.insert_since(key, record.clone(), since);
        let source = if created {
            Source::Store
        } else {
            Source::Coalesced
        };
        Ok((record, source))
    }

    /// Inserts what a read that began at epoch `since` found, unless the key was invalidated
    /// (or the cache flushed) after the read began.
    fn insert_since(&self, key: &StoreKey, record: Option<Arc<PreparedSession>>, since: u64) {
        if !self.is_enabled() || self.flushed_at.load(Ordering::Acquire) > since {
            return;
        }
        let mut shard = lock(self.shard(key));
        if shard
            .tombstones
            .get(key)
            .is_some_and(|(epoch, _)| *epoch > since)
        {
            return;
        }
        self.insert_locked(&mut shard, key, record);
    }

    fn insert_locked(
        &self,
        shard: &mut Shard,
        key: &StoreKey,
        record: Option<Arc<PreparedSession>>,
    ) {
        let now = Instant::now();
        match record {
            Some(record) => {
                shard.negative.pop(key);
                let bytes = entry_bytes(key, &record);
                let entry = Entry {
                    record,
                    fetched_at: now,
                    bytes,
                    generation: self.generation.load(Ordering::Acquire),
                };
                if let Some(old) = shard.entries.put(key.clone(), entry) {
                    shard.bytes -= old.bytes;
                }
                shard.bytes += bytes;
                while shard.entries.len() > self.per_shard_entries
                    || shard.bytes > self.per_shard_bytes
                {
                    match shard.entries.pop_lru() {
                        Some((_, evicted)) => {
                            shard.bytes -= evicted.bytes;
                            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
            }
            None => {
                if self.per_shard_negative > 0 && !self.settings.negative_ttl.is_zero() {
                    shard.negative.put(key.clone(), now);
                }
            }
        }
    }

    /// Stores the session this instance just wrote (create, update, renewal).
    pub fn put_written(&self, key: &StoreKey, record: PreparedSession) {
        if !self.is_enabled() {
            return;
        }
        let mut shard = lock(self.shard(key));
        self.insert_locked(&mut shard, key, Some(Arc::new(record)));
    }

    /// Forgets `key`: a later reader goes to the store, and reads already under way cannot put
    /// back what they found.
    pub fn invalidate(&self, key: &StoreKey) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        lock(&self.inflight).remove(key);
        let now = Instant::now();
        let mut shard = lock(self.shard(key));
        if let Some(old) = shard.entries.pop(key) {
            shard.bytes -= old.bytes;
        }
        shard.negative.pop(key);
        if shard.tombstones.len() >= 1024 {
            shard
                .tombstones
                .retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_LIFETIME);
        }
        shard.tombstones.insert(key.clone(), (epoch, now));
    }

    /// Stops trusting everything cached so far; with `enabled = false` nothing is cached or
    /// served until `enable`. The old entries stay only for `get_stale`, and are replaced or
    /// evicted as usual.
    pub fn flush(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.flushed_at.store(epoch, Ordering::Release);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        lock(&self.inflight).clear();
        for shard in &self.shards {
            let mut s = lock(shard);
            s.negative.clear();
            s.tombstones.clear();
        }
    }

    /// Stops trusting everything cached so far, leaving caching on or off as it was (a reload
    /// changed how sessions are prepared).
    pub fn drop_all(&self) {
        self.flush(self.is_enabled());
    }

    /// Starts caching again (the invalidation stream is back).
    pub fn enable(&self) {
        self.flush(true);
    }

    pub fn stats(&self) -> CacheSnapshot {
        let (mut entries, mut negative_entries, mut bytes) = (0, 0, 0);
        for shard in &self.shards {
            let s = lock(shard);
            entries += s.entries.len();
            negative_entries += s.negative.len();
            bytes += s.bytes;
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheSnapshot {
            hits: load(&self.stats.hits),
            misses: load(&self.stats.misses),
            coalesced: load(&self.stats.coalesced),
            negative_hits: load(&self.stats.negative_hits),
            invalidations: load(&self.stats.invalidations),
            evictions: load(&self.stats.evictions),
            flushes: load(&self.stats.flushes),
            entries,
            negative_entries,
            bytes,
            enabled: self.is_enabled(),
        }
    }
}

#[cfg(test)]
mod tests;
