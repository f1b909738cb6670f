//! The session cache: hit and miss at 10k and 1M cached sessions, and the memory one cached
//! session costs with a 200-byte claims payload (measured with a counting allocator, printed
//! before the timings). Results go to BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;
use sessiongate::cache::SessionCache;
use sessiongate::config::model::CacheSettings;
use sessiongate::session::lifecycle::{new_record, now_ms};
use sessiongate::session::{PreparedSession, SessionId, SessionRecord, StoreKey};

/// Counts live heap bytes, to measure what the cache holds.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Claims whose JSON form is exactly 200 bytes.
fn claims_200() -> serde_json::Map<String, serde_json::Value> {
    let mut claims = json!({
        "email": "alice.example@example.com",
        "name": "Alice Example",
        "roles": ["admin", "dev", "ops"],
        "tenant": "acme-corporation",
        "pad": "",
    });
    let len = serde_json::to_vec(&claims).unwrap().len();
    claims["pad"] = json!("x".repeat(200 - len));
    assert_eq!(serde_json::to_vec(&claims).unwrap().len(), 200);
    claims.as_object().cloned().unwrap()
}

/// A session as the cache holds it, with the usual three mapped headers.
fn record() -> PreparedSession {
    let record: SessionRecord = new_record(
        "alice".into(),
        claims_200(),
        now_ms(),
        Duration::from_secs(1800),
        Duration::from_secs(43200),
    );
    let projection = ["sub".to_string(), "email".to_string(), "roles".to_string()];
    PreparedSession::new(&record, &projection)
}

fn settings(entries: usize) -> CacheSettings {
    CacheSettings {
        max_entries: entries,
        max_bytes: usize::MAX / 2,
        max_staleness: Duration::from_secs(3600),
        negative_entries: 10_000,
        negative_ttl: Duration::from_secs(2),
    }
}

fn filled(entries: usize) -> (SessionCache, Vec<StoreKey>) {
    let cache = SessionCache::new(settings(entries));
    let keys: Vec<StoreKey> = (0..entries)
        .map(|_| SessionId::generate().unwrap().store_key())
        .collect();
    for k in &keys {
        cache.put_written(k, record());
    }
    (cache, keys)
}

/// Live heap bytes per cached session: fill a cache, compare the allocator before and after.
fn bytes_per_session() {
    const N: usize = 100_000;
    let keys: Vec<StoreKey> = (0..N)
        .map(|_| SessionId::generate().unwrap().store_key())
        .collect();
    let cache = SessionCache::new(settings(N));
    let before = LIVE.load(Ordering::SeqCst);
    for k in &keys {
        cache.put_written(k, record());
    }
    let after = LIVE.load(Ordering::SeqCst);
    let per = (after - before) as f64 / N as f64;
    let estimate = cache.stats().bytes as f64 / N as f64;
    println!(
        "cache memory: {per:.0} bytes per cached session with a 200-byte claims payload \
         (goal <= 600; the cache's own estimate {estimate:.0}; the key itself is held by the caller too)"
    );
    black_box(&cache);
}

fn benches(c: &mut Criterion) {
    bytes_per_session();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("session_cache");
    for entries in [10_000usize, 1_000_000] {
        let (cache, keys) = filled(entries);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("hit", entries), &entries, |b, _| {
            b.iter(|| {
                i = (i + 7919) % keys.len();
                black_box(cache.get(&keys[i]))
            })
        });
        let fresh: Vec<StoreKey> = (0..4096)
            .map(|_| SessionId::generate().unwrap().store_key())
            .collect();
        let template = record();
        let mut j = 0usize;
        group.bench_with_input(
            BenchmarkId::new("miss_load_insert_evict", entries),
            &entries,
            |b, _| {
                b.iter(|| {
                    j = (j + 1) % fresh.len();
                    let key = &fresh[j];
                    cache.invalidate(key);
                    runtime
                        .block_on(cache.get_or_load(key, || async { Ok(Some(template.clone())) }))
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = cache;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(cache);
