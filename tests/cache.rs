//! The session cache, through the real binary on a real redis-server: coalesced misses,
//! invalidation across instances, the cache switching off while its invalidation connection is
//! down, and write-behind renewal.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::harness::SETTLE;

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;
use sessiongate::cache::invalidation::CLIENT_NAME;

/// What an instance logs right after it enables its cache (its invalidation connections are
/// all tracking).
const FOLLOWS: &str = "session cache follows invalidations from Redis";

/// What an instance logs when its invalidation connection breaks (the cache is flushed and
/// off from then on).
const BLIND: &str = "the session cache is off until it is back";

async fn status(http: &reqwest::Client, proxy: &Proxy, cookie: &str) -> StatusCode {
    http.get(proxy.url("/"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("the proxy answers")
        .status()
}

/// Client ids of the invalidation connections, from `CLIENT LIST`.
fn invalidation_clients(redis: &mut redis::Connection) -> Vec<u64> {
    tracking_clients(redis, false)
}

/// The invalidation connections; with `tracking`, only those whose `CLIENT TRACKING` is on
/// (flag `t`), after which their instance caches.
fn tracking_clients(redis: &mut redis::Connection, tracking: bool) -> Vec<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(redis).unwrap();
    list.lines()
        .filter(|l| l.contains(&format!("name={CLIENT_NAME} ")))
        .filter(|l| {
            !tracking
                || l.split_whitespace()
                    .find_map(|f| f.strip_prefix("flags="))
                    .is_some_and(|flags| flags.contains('t'))
        })
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("id="))?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits until every one of `proxies` caches: as many invalidation connections with tracking
/// on, and each instance has enabled its cache (logged `FOLLOWS`). Returns the connections'
/// ids.
async fn wait_for_invalidation_clients(redis: &RedisServer, proxies: &[&Proxy]) -> Vec<u64> {
    let mut conn = redis.connection();
    let n = proxies.len();
    let what = format!("{n} instances follow invalidations");
    eventually(SETTLE, &what, || {
        let ids = tracking_clients(&mut conn, true);
        let enabled = proxies
            .iter()
            .all(|p| !p.log_lines_with(FOLLOWS).is_empty());
        (ids.len() >= n && enabled).then_some(ids)
    })
    .await
}

/// Session keys an instance has heard invalidated so far (its metric).
async fn invalidations_heard(http: &reqwest::Client, proxy: &Proxy) -> f64 {
    let text = http
        .get(proxy.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("sessiongate_cache_invalidations_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_is_refused_by_another_within_a_second() {
    // A long staleness bound: only invalidation can make the second instance notice quickly.
    let fx = Harness::new()
        .redis()
        .cache(|c| c.max_staleness("60s"))
        .start()
        .await;
    // A second instance on the same configuration: the same Redis and upstream.
    let other = fx.another_proxy();
    wait_for_invalidation_clients(fx.redis(), &[&fx.proxy, &other]).await;
    let cookie = fx.login("alice").await;
    // Instance 2 reads the session, then serves it from its cache. The login's own write
    // reaches instance 2's invalidation stream asynchronously, possibly after that first read
    // (dropping the fresh entry, as any invalidation must): warm up until it has come (the one
    // session key the login wrote).
    assert_eq!(status(&fx.http, &other, &cookie).await, StatusCode::OK);
    eventually_async(SETTLE, "instance 2 hears the login's write", || async {
        invalidations_heard(&fx.http, &other).await >= 1.0
    })
    .await;
    assert_eq!(status(&fx.http, &other, &cookie).await, StatusCode::OK);
    let gets = fx.redis().command_calls("get");
    for _ in 0..10 {
        assert_eq!(status(&fx.http, &other, &cookie).await, StatusCode::OK);
    }
    assert_eq!(
        fx.redis().command_calls("get"),
        gets,
        "instance 2 served from its cache"
    );

    let out = fx.logout("/", &cookie, "current").await;
    assert_eq!(out.status, StatusCode::OK);
    // The bound for invalidation; the staleness bound alone would take 60 s.
    eventually_async(
        Duration::from_secs(1),
        "instance 2 still honours the session",
        || async { status(&fx.http, &other, &cookie).await == StatusCode::UNAUTHORIZED },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_an_uncached_session_read_the_store_once() {
    let fx = Harness::new().redis().start().await;
    let cookie = fx.login("alice").await;
    // A second instance has never seen this session.
    let other = Arc::new(fx.another_proxy());
    // Both invalidation connections up before counting.
    wait_for_invalidation_clients(fx.redis(), &[&fx.proxy, &other]).await;
    let before = fx.redis().command_calls("get");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (http, other, cookie, barrier) =
                (http.clone(), other.clone(), cookie.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                status(&http, &other, &cookie).await
            })
        })
        .collect();
    // Every answer first, then the checks: a failure then finds the second instance's tasks
    // done, so its log is printed with the failure.
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    for status in statuses {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        fx.redis().command_calls("get") - before,
        1,
        "exactly one store read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_invalidation_connection_flushes_and_disables_the_cache() {
    let fx = Harness::new().redis().start().await;
    let redis = fx.redis();
    let ids = wait_for_invalidation_clients(redis, &[&fx.proxy]).await;
    let cookie = fx.login("alice").await;
    let admin = redis.connection();
    // Cached: repeated requests do not read the store. The login's own write reaches the
    // invalidation stream asynchronously and may drop the first cached copy: warm up until a
    // request reads nothing.
    let admin = std::cell::RefCell::new(admin);
    eventually_async(SETTLE, "the session never stayed cached", || async {
        let before = command_calls_on(&mut admin.borrow_mut(), "get");
        fx.request("/", Some(&cookie), &[]).await;
        command_calls_on(&mut admin.borrow_mut(), "get") == before
    })
    .await;
    let mut admin = admin.into_inner();
    let gets = command_calls_on(&mut admin, "get");
    for _ in 0..5 {
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(command_calls_on(&mut admin, "get"), gets);

    // Keep the invalidation connection from coming back: no new clients accepted.
    let clients: String = redis::cmd("INFO").arg("clients").query(&mut admin).unwrap();
    let connected: u64 = clients
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(connected - 1)
        .exec(&mut admin)
        .unwrap();
    let blind_before = fx.proxy.log_lines_with(BLIND).len();
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(ids[0])
        .exec(&mut admin)
        .unwrap();

    // Every request now reads Redis: the cache was flushed and caches nothing.
    eventually(
        SETTLE,
        "the instance notices its invalidation connection is gone",
        || fx.proxy.log_lines_with(BLIND).len() > blind_before,
    )
    .await;
    let gets = command_calls_on(&mut admin, "get");
    for _ in 0..5 {
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        command_calls_on(&mut admin, "get") - gets,
        5,
        "the cache served while blind"
    );
    assert!(!fx
        .proxy
        .log_lines_with("invalidation connection")
        .is_empty());

    // Once the connection is back, caching resumes.
    let follows_before = fx.proxy.log_lines_with(FOLLOWS).len();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(10_000)
        .exec(&mut admin)
        .unwrap();
    // Back once the connection is there and the instance has enabled its cache again.
    eventually(
        SETTLE,
        "the invalidation connection did not come back",
        || {
            !invalidation_clients(&mut admin).is_empty()
                && fx.proxy.log_lines_with(FOLLOWS).len() > follows_before
        },
    )
    .await;
    fx.request("/", Some(&cookie), &[]).await;
    let gets = command_calls_on(&mut admin, "get");
    for _ in 0..5 {
        fx.request("/", Some(&cookie), &[]).await;
    }
    assert_eq!(command_calls_on(&mut admin, "get"), gets, "caching resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_one_renewal_window_write_one_renewal() {
    // A renewal is due once less than 1.5 s of the 3 s idle time remains; after it, the next
    // one is due 1.5 s later: the requests below all fall in one window.
    let fx = Harness::new()
        .redis()
        .session(|s| s.timeouts("3s", "1h").renew_below("1500ms"))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    // Not a wait for a state: the session ages until its renewal is due.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let redis = fx.redis();
    // A renewal write is the SET inside the compare-and-set script (counted by commandstats).
    let writes = || redis.command_calls("set");
    let before = writes();
    let http = client();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (http, url, cookie) = (http.clone(), fx.proxy.url("/"), cookie.clone());
            tokio::spawn(async move {
                http.get(url)
                    .header("cookie", format!("{COOKIE}={cookie}"))
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), StatusCode::OK);
    }
    for _ in 0..50 {
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
    }
    // The renewal is written by the next flush (its batch holds every queued renewal).
    eventually_async(SETTLE, "the renewal is written", || async {
        fx.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("sessiongate_sessions_renewed_total ") && !l.ends_with(" 0"))
    })
    .await;
    // Not a wait for a state: a second write for the window would land within the next flush
    // intervals (100 ms each); that none does over three of them is what is tested.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(writes() - before, 1, "one renewal write for the window");
    let record = fx.stored(&cookie).unwrap();
    assert!(record.v >= 2, "the renewal landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_renewal_never_brings_back_a_destroyed_session() {
    let fx = Harness::new()
        .redis()
        .store(|s| s.renewal_flush_interval("1500ms"))
        .session(|s| s.timeouts("10s", "1h").renew_below("9900ms"))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    // Not a wait for a state: the session ages until its renewal is due.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::OK
    ); // queues it
       // The session is destroyed before the queue is flushed (by an admin, another instance...).
    let key = fx.session_key(&cookie);
    let deleted: i64 = redis::cmd("DEL")
        .arg(&key)
        .query(&mut fx.redis().connection())
        .unwrap();
    assert_eq!(deleted, 1);
    // The flush has run: it found the session gone and wrote nothing.
    eventually(SETTLE, "the queued renewal is flushed", || {
        !fx.proxy.log_lines_with("renewal not written").is_empty()
    })
    .await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query(&mut fx.redis().connection())
        .unwrap();
    assert_eq!(exists, 0, "the renewal recreated a destroyed session");
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_pending_renewals() {
    let mut fx = Harness::new()
        .redis()
        // Never flushed by the timer during this test: only shutdown can write it.
        .store(|s| s.renewal_flush_interval("1h"))
        .server(|s| s.shutdown_grace("1s"))
        .session(|s| s.timeouts("10s", "1h").renew_below("9900ms"))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    let created = fx.stored(&cookie).unwrap();
    // Not a wait for a state: the session ages until its renewal is due.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::OK
    ); // queued
       // Not a wait for a state: the renewal must not be written meanwhile (the timer's
       // interval is 1 h); that it is not, over this while, is what is checked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fx.stored(&cookie).unwrap().v, created.v, "not yet written");

    let status = tokio::task::block_in_place(|| fx.proxy.terminate());
    assert!(status.success() || status.code().is_some(), "{status:?}");
    let after = fx.stored(&cookie).unwrap();
    assert_eq!(
        after.v,
        created.v + 1,
        "the queued renewal was written at shutdown"
    );
    assert!(after.deadlines.idle > created.deadlines.idle);
}
