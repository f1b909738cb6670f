//! The session cache, through the real binary on a real redis-server: coalesced misses,
//! invalidation across instances, the cache switching off while its invalidation connection is
//! down, and write-behind renewal.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;
use sessiongate::cache::invalidation::CLIENT_NAME;
use sessiongate::config::model::RecordFormat;
use sessiongate::session::SessionId;

const MSGPACK: Store = Store::Redis(RecordFormat::MessagePack);

/// A second proxy on the same Redis and upstream as `fx`.
fn second_instance(fx: &Fixture, adjust: impl FnOnce(TestConfig) -> TestConfig) -> Proxy {
    let config = adjust(TestConfig::redis(fx.upstream.addr, fx.redis().url()).standard_routes());
    Proxy::start(&config.to_toml())
}

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

/// Waits until `n` instances follow invalidations; returns their connections' ids.
async fn wait_for_invalidation_clients(redis: &RedisServer, n: usize) -> Vec<u64> {
    let mut conn = redis.connection();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ids = tracking_clients(&mut conn, true);
        if ids.len() >= n {
            // The instance enables its cache as soon as the TRACKING reply is read.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} invalidation connections appeared",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_is_refused_by_another_within_a_second() {
    // A long staleness bound: only invalidation can make the second instance notice quickly.
    let fx = Fixture::start(MSGPACK, |mut c| {
        c.cache = Some("max_staleness = \"60s\"".into());
        c
    })
    .await;
    let other = second_instance(&fx, |mut c| {
        c.cache = Some("max_staleness = \"60s\"".into());
        c
    });
    wait_for_invalidation_clients(fx.redis(), 2).await;
    let cookie = fx.login("alice").await;
    // Instance 2 reads the session, then serves it from its cache. The login's own write
    // reaches instance 2's invalidation stream asynchronously, possibly after that first read
    // (dropping the fresh entry, as any invalidation must): warm up until it has come.
    assert_eq!(status(&fx.http, &other, &cookie).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    let logged_out = Instant::now();
    loop {
        if status(&fx.http, &other, &cookie).await == StatusCode::UNAUTHORIZED {
            break;
        }
        // The bound for invalidation; the staleness bound alone would take 60 s.
        assert!(
            logged_out.elapsed() < Duration::from_secs(1),
            "instance 2 still honours the session"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_an_uncached_session_read_the_store_once() {
    let fx = Fixture::start(MSGPACK, |c| c).await;
    let cookie = fx.login("alice").await;
    // A second instance has never seen this session.
    let other = Arc::new(second_instance(&fx, |c| c));
    // Both invalidation connections up before counting.
    wait_for_invalidation_clients(fx.redis(), 2).await;
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
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        fx.redis().command_calls("get") - before,
        1,
        "exactly one store read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_invalidation_connection_flushes_and_disables_the_cache() {
    let fx = Fixture::start(MSGPACK, |c| c).await;
    let redis = fx.redis();
    let ids = wait_for_invalidation_clients(redis, 1).await;
    let cookie = fx.login("alice").await;
    let mut admin = redis.connection();
    // Cached: repeated requests do not read the store. The login's own write reaches the
    // invalidation stream asynchronously and may drop the first cached copy: warm up until a
    // request reads nothing.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = command_calls_on(&mut admin, "get");
        fx.request("/", Some(&cookie), &[]).await;
        if command_calls_on(&mut admin, "get") == before {
            break;
        }
        assert!(Instant::now() < deadline, "the session never stayed cached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(ids[0])
        .exec(&mut admin)
        .unwrap();

    // Every request now reads Redis: the cache was flushed and caches nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(10_000)
        .exec(&mut admin)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while invalidation_clients(&mut admin).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the invalidation connection did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
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
    let fx = Fixture::start(MSGPACK, |c| c.timeouts("3s", "1h", Some("1500ms"))).await;
    let cookie = fx.login("alice").await;
    tokio::time::sleep(Duration::from_millis(1600)).await; // renewal now due
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
    tokio::time::sleep(Duration::from_millis(300)).await; // past a flush interval
    assert_eq!(writes() - before, 1, "one renewal write for the window");
    let record = fx.stored(&cookie, RecordFormat::MessagePack).unwrap();
    assert!(record.v >= 2, "the renewal landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_renewal_never_brings_back_a_destroyed_session() {
    let fx = Fixture::start(MSGPACK, |mut c| {
        c.store_extra = "renewal_flush_interval = \"1500ms\"".into();
        c.timeouts("10s", "1h", Some("9900ms"))
    })
    .await;
    let cookie = fx.login("alice").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::OK
    ); // queues it
       // The session is destroyed before the queue is flushed (by an admin, another instance...).
    let key = format!(
        "sg:s:{}",
        SessionId::parse(cookie.as_bytes())
            .unwrap()
            .store_key()
            .as_str()
    );
    let deleted: i64 = redis::cmd("DEL")
        .arg(&key)
        .query(&mut fx.redis().connection())
        .unwrap();
    assert_eq!(deleted, 1);
    tokio::time::sleep(Duration::from_millis(2000)).await; // the flush has run
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
    let mut fx = Fixture::start(MSGPACK, |mut c| {
        // Never flushed by the timer during this test: only shutdown can write it.
        c.store_extra = "renewal_flush_interval = \"1h\"".into();
        c.server_extra = "shutdown_grace = \"1s\"".into();
        c.timeouts("10s", "1h", Some("9900ms"))
    })
    .await;
    let cookie = fx.login("alice").await;
    let created = fx.stored(&cookie, RecordFormat::MessagePack).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::OK
    ); // queued
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fx.stored(&cookie, RecordFormat::MessagePack).unwrap().v,
        created.v,
        "not yet written"
    );

    let status = tokio::task::block_in_place(|| fx.proxy.terminate());
    assert!(status.success() || status.code().is_some(), "{status:?}");
    let after = fx.stored(&cookie, RecordFormat::MessagePack).unwrap();
    assert_eq!(
        after.v,
        created.v + 1,
        "the queued renewal was written at shutdown"
    );
    assert!(after.deadlines.idle > created.deadlines.idle);
}
