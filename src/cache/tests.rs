use std::sync::atomic::AtomicUsize;

use super::*;
use crate::session::lifecycle::{new_record, now_ms};
use crate::session::SessionId;

fn settings() -> CacheSettings {
    CacheSettings {
        max_entries: 1000,
        max_bytes: 10 << 20,
        max_staleness: Duration::from_secs(60),
        negative_entries: 160,
        negative_ttl: Duration::from_secs(60),
    }
}

fn record(sub: &str) -> PreparedSession {
    let record = new_record(
        sub.into(),
        Default::default(),
        now_ms(),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    PreparedSession::new(&record, &[])
}

fn key() -> StoreKey {
    SessionId::generate().unwrap().store_key()
}

#[tokio::test]
async fn a_miss_loads_once_then_hits() {
    let cache = SessionCache::new(settings());
    let k = key();
    let (r, source) = cache
        .get_or_load(&k, || async { Ok(Some(record("a"))) })
        .await
        .unwrap();
    assert_eq!(source, Source::Store);
    assert_eq!(&*r.unwrap().sub, "a");
    let (r, source) = cache
        .get_or_load(&k, || async {
            panic!("the store must not be read on a hit")
        })
        .await
        .unwrap();
    assert_eq!(source, Source::Cache);
    assert_eq!(&*r.unwrap().sub, "a");
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_store_read() {
    let cache = Arc::new(SessionCache::new(settings()));
    let loads = Arc::new(AtomicUsize::new(0));
    let k = key();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, loads, k) = (cache.clone(), loads.clone(), k.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(&k, || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Some(record("a")))
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(&*t.await.unwrap().0.unwrap().sub, "a");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let s = cache.stats();
    assert_eq!(s.hits + s.coalesced + 1, 200, "{s:?}");
}

#[tokio::test]
async fn store_errors_are_shared_and_not_cached() {
    let cache = SessionCache::new(settings());
    let k = key();
    let err = cache
        .get_or_load(&k, || async { Err(StoreError::Unavailable("down".into())) })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unavailable");
    assert_eq!(cache.get(&k), Cached::Miss);
}

#[tokio::test]
async fn unknown_ids_are_cached_negatively_without_evicting_sessions() {
    let cache = SessionCache::new(settings());
    let real: Vec<StoreKey> = (0..100).map(|_| key()).collect();
    for k in &real {
        cache.put_written(k, record("a"));
    }
    for _ in 0..5000 {
        let k = key();
        let (r, _) = cache.get_or_load(&k, || async { Ok(None) }).await.unwrap();
        assert!(r.is_none());
        assert_eq!(cache.get(&k), Cached::Absent);
    }
    let s = cache.stats();
    assert!(s.negative_entries <= 160 + 16, "negative bound: {s:?}");
    assert_eq!(
        s.entries, 100,
        "a flood of unknown ids evicted real sessions"
    );
    assert!(real.iter().all(|k| matches!(cache.get(k), Cached::Hit(_))));
}

#[tokio::test]
async fn entry_and_byte_bounds_evict_the_least_recently_used() {
    let cache = SessionCache::new(CacheSettings {
        max_entries: 64,
        ..settings()
    });
    for _ in 0..1000 {
        cache.put_written(&key(), record("a"));
    }
    let s = cache.stats();
    assert!(s.entries <= 64, "{s:?}");
    assert!(s.evictions >= 1000 - 64);

    let one = entry_bytes(&key(), &record("a"));
    let cache = SessionCache::new(CacheSettings {
        max_bytes: one * 16 * 4,
        ..settings()
    });
    for _ in 0..1000 {
        cache.put_written(&key(), record("a"));
    }
    let s = cache.stats();
    assert!(s.bytes <= one * 16 * 4, "{s:?}");
    assert!(s.entries <= 16 * 4);
}

#[tokio::test]
async fn entries_older_than_max_staleness_are_misses() {
    let cache = SessionCache::new(CacheSettings {
        max_staleness: Duration::from_millis(30),
        ..settings()
    });
    let k = key();
    cache.put_written(&k, record("a"));
    assert!(matches!(cache.get(&k), Cached::Hit(_)));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(cache.get(&k), Cached::Miss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_began_before_an_invalidation_cannot_reinsert_it() {
    let cache = Arc::new(SessionCache::new(settings()));
    let k = key();
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let (cache, k) = (cache.clone(), k.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&k, || async move {
                    let _ = wait.await;
                    Ok(Some(record("stale")))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    cache.invalidate(&k); // e.g. a logout on another instance, while the read is in flight
                          // A reader that starts after the invalidation does not join the stale read.
    let (fresh, source) = cache.get_or_load(&k, || async { Ok(None) }).await.unwrap();
    assert!(fresh.is_none());
    assert_eq!(source, Source::Store);
    release.send(()).unwrap();
    let (stale, _) = reader.await.unwrap().unwrap();
    assert_eq!(
        &*stale.unwrap().sub,
        "stale",
        "the in-flight read returns what it read"
    );
    assert!(
        !matches!(cache.get(&k), Cached::Hit(_)),
        "the stale record was re-inserted"
    );
}

#[tokio::test]
async fn a_disabled_cache_caches_nothing_until_enabled() {
    let cache = SessionCache::new(settings());
    let k = key();
    cache.put_written(&k, record("a"));
    cache.flush(false);
    assert_eq!(cache.get(&k), Cached::Miss);
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        cache
            .get_or_load(&k, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(Some(record("a")))
            })
            .await
            .unwrap();
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        3,
        "every read went to the store"
    );
    cache.enable();
    cache
        .get_or_load(&k, || async { Ok(Some(record("a"))) })
        .await
        .unwrap();
    assert!(matches!(cache.get(&k), Cached::Hit(_)));
    assert!(cache.stats().enabled);
}

#[tokio::test]
async fn flushed_entries_are_no_hits_but_remain_for_stale_serving() {
    let cache = SessionCache::new(settings());
    let (kept, ended) = (key(), key());
    cache.put_written(&kept, record("a"));
    cache.put_written(&ended, record("b"));
    cache.invalidate(&ended);
    cache.flush(false);
    assert_eq!(cache.get(&kept), Cached::Miss);
    assert!(cache.get_stale(&kept, Duration::from_secs(60)).is_some());
    assert!(
        cache.get_stale(&kept, Duration::ZERO).is_none(),
        "outside the stale window"
    );
    assert!(
        cache.get_stale(&ended, Duration::from_secs(60)).is_none(),
        "an ended session is never served stale"
    );
    cache.enable();
    assert_eq!(
        cache.get(&kept),
        Cached::Miss,
        "trusted again only after a fresh read"
    );
}

#[test]
fn keys_spread_evenly_over_the_shards() {
    let cache = SessionCache::new(settings());
    let mut counts = [0usize; SHARDS];
    for _ in 0..16_000 {
        let k = key();
        let shard = cache.shard(&k);
        let index = cache
            .shards
            .iter()
            .position(|s| std::ptr::eq(s, shard))
            .unwrap();
        counts[index] += 1;
    }
    // 1,000 expected per shard; the standard deviation is about 31.
    assert!(
        counts.iter().all(|&n| (800..1200).contains(&n)),
        "{counts:?}"
    );
}
