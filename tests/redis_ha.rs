//! sessiongate on highly available Redis, end to end with real processes: a Sentinel group
//! (one master, one replica, three sentinels) through a `kill -9` of the master under a steady
//! stream of requests and through a manual `SENTINEL FAILOVER`; a three-primary Cluster; and a
//! TLS-only Redis reached with the configured CA and client certificate.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::harness::Store;
use common::topology::{tls_server, RedisCluster, SentinelGroup, TlsFiles};
use common::{eventually, eventually_async, Harness, Route, Running};
use reqwest::StatusCode;

/// How long any wait in these tests may last (a failover takes a few seconds).
const DEADLINE: Duration = Duration::from_secs(30);

/// A proxy in front of one echo upstream, on Redis found through `location`, with a
/// `serve_stale` route under /stale beside the standard routes.
async fn fixture(location: String, adjust: impl FnOnce(Store) -> Store) -> Running {
    Harness::new()
        .redis_at(&location)
        .route(Route::required("/stale").on_store_error("serve_stale"))
        .store(|s| adjust(s.command_timeout("100ms")))
        .start()
        .await
}

/// One request of the steady stream: when it was sent, on which route, what it answered and
/// how long it took.
struct Sample {
    at: Instant,
    stale_route: bool,
    status: Option<StatusCode>,
    took: Duration,
}

/// Sends requests for `cookies` in turn, alternating the fail_closed and the serve_stale
/// route, until `stop` is set, recording each in `samples`; each request gets a 3 s client
/// bound so a hang shows as `None`.
async fn steady_stream(
    fx: &Running,
    cookies: &[String],
    stop: &std::sync::atomic::AtomicBool,
    samples: &Mutex<Vec<Sample>>,
) {
    let mut i = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let cookie = &cookies[i % cookies.len()];
        let stale_route = i % 2 == 1;
        let path = if stale_route { "/stale/page" } else { "/page" };
        let sent = Instant::now();
        let status = fx
            .http
            .get(fx.proxy.url(path))
            .header("cookie", format!("{}={cookie}", common::config::COOKIE))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()
            .map(|r| r.status());
        samples.lock().expect("samples").push(Sample {
            at: sent,
            stale_route,
            status,
            took: sent.elapsed(),
        });
        i += 1;
        // Not a wait for a state: paces the stream of requests the failover runs under.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_followed_through_the_sentinels_under_load() {
    let mut group = SentinelGroup::start(None);
    let fx = fixture(group.store_keys(), |s| s.breaker(5, "250ms")).await;
    let mut cookies = Vec::new();
    for i in 0..10 {
        cookies.push(fx.login(&format!("user{i}")).await);
    }
    for cookie in &cookies {
        for path in ["/page", "/stale/page"] {
            assert_eq!(fx.request(path, Some(cookie), &[]).await.status, 200);
        }
    }
    group.wait_for_replication();

    let stop = std::sync::atomic::AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let stream = steady_stream(&fx, &cookies, &stop, &samples);
    let count = |pred: &dyn Fn(&Sample) -> bool| {
        samples
            .lock()
            .expect("samples")
            .iter()
            .filter(|s| pred(s))
            .count()
    };
    let failover = async {
        // The stream runs healthy before the kill.
        eventually(DEADLINE, "the stream answers 200 before the kill", || {
            count(&|s| s.status == Some(StatusCode::OK)) >= 50
        })
        .await;
        // The kill and the wait block a thread of their own, not the stream's.
        let (group, killed_at, promoted) = tokio::task::spawn_blocking(move || {
            let killed_at = Instant::now();
            let old = group.kill_master();
            let promoted = group.wait_for_new_master(old);
            (group, killed_at, promoted)
        })
        .await
        .expect("the failover thread");
        // Let the stream run on until it has run for a while past the tail checked below
        // (one second after the new master was named).
        let tail_from = killed_at + promoted + Duration::from_secs(1);
        eventually(DEADLINE, "the stream runs on after the failover", || {
            count(&|s| s.at > tail_from) >= 100
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (group, killed_at, promoted)
    };
    let ((), (_group, killed_at, promoted)) = tokio::join!(stream, failover);
    let samples = samples.into_inner().expect("samples");
    let since_kill = |s: &Sample| s.at.saturating_duration_since(killed_at);

    // No request hung: each answered well within its bound (command 100 ms + connect
    // 200 ms per store call, master resolution bounded at 800 ms).
    let slowest = samples.iter().map(|s| s.took).max().unwrap_or_default();
    assert!(
        samples.iter().all(|s| s.status.is_some()),
        "a request got no answer within 3 s"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "slowest request took {slowest:?}"
    );
    // Every answer is 200 or 503: no other failure leaks out.
    for s in &samples {
        let status = s.status.expect("answered");
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "unexpected {status}"
        );
    }
    let failed: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.status == Some(StatusCode::SERVICE_UNAVAILABLE))
        .collect();
    let window = match (failed.first(), failed.last()) {
        (Some(first), Some(last)) => last.at.duration_since(first.at),
        _ => Duration::ZERO,
    };
    let stale_failed = failed.iter().filter(|s| s.stale_route).count();
    let served_stale = fx.proxy.log_lines_with("lookup=\"stale\"").len();
    eprintln!(
        "sentinel failover (kill -9): {} requests, {} answered 503 ({} on the serve_stale route), \
         {} served stale; error window {} ms; new master named {} ms after the kill; \
         slowest request {} ms",
        samples.len(),
        failed.len(),
        stale_failed,
        served_stale,
        window.as_millis(),
        promoted.as_millis(),
        slowest.as_millis()
    );
    // serve_stale: the cached sessions were honoured through the whole failover.
    assert_eq!(
        stale_failed, 0,
        "a cached session was refused on a serve_stale route"
    );
    assert!(
        served_stale > 0,
        "nothing was served stale while the master was gone"
    );
    // The stream ends healthy: the last second after the new master answered all 200.
    let tail = samples
        .iter()
        .filter(|s| since_kill(s) > promoted + Duration::from_secs(1));
    for s in tail {
        assert_eq!(
            s.status,
            Some(StatusCode::OK),
            "still failing {:?} after the failover",
            since_kill(s)
        );
    }
    // Sessions created before the failover (and replicated) still work, with identity; new
    // logins and logouts work on the new master.
    for cookie in &cookies {
        let reply = fx.request("/page", Some(cookie), &[]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.claims()["sub"].as_str().unwrap().starts_with("user"));
    }
    let fresh = fx.login("after").await;
    assert_eq!(fx.request("/page", Some(&fresh), &[]).await.status, 200);
    assert_eq!(fx.logout("/page", &fresh, "current").await.status, 200);
    assert_eq!(fx.request("/page", Some(&fresh), &[]).await.status, 401);
    assert!(
        !fx.proxy
            .log_lines_with("connected to the master the sentinels name")
            .is_empty(),
        "the proxy resolved the new master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_sentinel_failover_is_followed_for_reads_writes_and_invalidations() {
    let group = SentinelGroup::start(None);
    let fx = fixture(group.store_keys(), |s| s).await;
    let cookie = fx.login("alice").await;
    let doomed = fx.login("bob").await;
    assert_eq!(fx.request("/page", Some(&doomed), &[]).await.status, 200);
    group.wait_for_replication();

    let old = group.master_port();
    group.failover();
    let promoted = tokio::task::block_in_place(|| group.wait_for_new_master(old));

    // Writes: the old master is now a replica (READONLY); logins succeed on the new one.
    let started = Instant::now();
    let refused = std::cell::Cell::new(0);
    let fresh = eventually_async(Duration::from_secs(10), "writes never resumed", || async {
        let reply = fx
            .login_with(r#"{"sub":"carol","email":"c@x"}"#, None)
            .await;
        if reply.status == StatusCode::OK {
            return Some(reply.session_cookie().expect("a cookie"));
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.session_cookie(), None, "a failed write set a cookie");
        refused.set(refused.get() + 1);
        None
    })
    .await;
    let refused = refused.get();
    eprintln!(
        "manual SENTINEL FAILOVER: new master after {} ms; {refused} logins refused, writes \
         resumed {} ms after promotion",
        promoted.as_millis(),
        started.elapsed().as_millis()
    );
    // Reads of sessions from before the failover, an update and a logout on the new master.
    let reply = fx.request("/page", Some(&cookie), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.claims()["sub"], "alice");
    let updated = fx
        .request(
            "/page",
            Some(&fresh),
            &[("x-echo-set-x-sessiongate-update", r#"{"theme":"dark"}"#)],
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(
        fx.request("/page", Some(&fresh), &[]).await.claims()["theme"],
        "dark"
    );

    // Invalidations follow the new master too: a session deleted there behind the proxy's
    // back is refused (its cached copy dropped) within a second.
    let mut master = group.master();
    let _: i64 = redis::cmd("DEL")
        .arg(fx.session_key(&doomed))
        .query(&mut master)
        .expect("DEL on the new master");
    let took = {
        let start = Instant::now();
        fx.wait_for_status("/page", Some(&doomed), StatusCode::UNAUTHORIZED)
            .await;
        start.elapsed()
    };
    assert!(took < Duration::from_secs(1), "invalidation took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spreads_sessions_and_every_operation_works() {
    let cluster = RedisCluster::start(None);
    let fx = fixture(cluster.store_keys(), |s| s).await;
    let mut cookies = Vec::new();
    for i in 0..24 {
        cookies.push(fx.login(&format!("user{i}")).await);
    }
    let per_node = cluster.keys_per_node();
    assert!(
        per_node.iter().all(|n| *n > 0),
        "sessions on every primary: {per_node:?}"
    );
    for (i, cookie) in cookies.iter().enumerate() {
        let reply = fx.request("/page", Some(cookie), &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.claims()["sub"], format!("user{i}"));
    }

    // Update, then logout of one session.
    let reply = fx
        .request(
            "/page",
            Some(&cookies[0]),
            &[("x-echo-set-x-sessiongate-update", r#"{"theme":"dark"}"#)],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        fx.request("/page", Some(&cookies[0]), &[]).await.claims()["theme"],
        "dark"
    );
    assert_eq!(fx.logout("/page", &cookies[1], "current").await.status, 200);
    assert_eq!(
        fx.request("/page", Some(&cookies[1]), &[]).await.status,
        401
    );

    // Logout-all across slots: four sessions of one user, on whichever nodes they hashed to.
    let mut dana = Vec::new();
    for _ in 0..4 {
        dana.push(fx.login("dana").await);
    }
    assert_eq!(fx.logout("/page", &dana[0], "all").await.status, 200);
    for cookie in &dana {
        assert_eq!(fx.request("/page", Some(cookie), &[]).await.status, 401);
    }
    assert_eq!(
        fx.request("/page", Some(&cookies[2]), &[]).await.status,
        200
    );

    // Invalidations come from every primary: a session deleted on its node behind the proxy's
    // back is refused within a second.
    for cookie in &cookies[3..9] {
        let key = fx.session_key(cookie);
        let deleted = cluster.nodes.iter().any(|n| {
            let mut conn = cluster.node(n.port);
            // Only the owner accepts the command; the others answer MOVED.
            redis::cmd("DEL")
                .arg(&key)
                .query::<i64>(&mut conn)
                .is_ok_and(|d| d == 1)
        });
        assert!(deleted, "the key was on one of the nodes");
        let start = Instant::now();
        fx.wait_for_status("/page", Some(cookie), StatusCode::UNAUTHORIZED)
            .await;
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_with_a_client_certificate_from_the_configuration() {
    let tls = TlsFiles::generate();
    let server = tls_server(&tls);
    let location = format!(
        "url = \"rediss://127.0.0.1:{}/0\"\n{}",
        server.port,
        tls.store_keys()
    );
    let fx = fixture(location, |s| s).await;
    let cookie = fx.login("alice").await;
    let reply = fx.request("/page", Some(&cookie), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.claims()["sub"], "alice");
    // The cache follows invalidations over TLS as well.
    let mut conn = tls
        .client(&format!("rediss://127.0.0.1:{}/0", server.port))
        .get_connection()
        .expect("TLS connection");
    let _: i64 = redis::cmd("DEL")
        .arg(fx.session_key(&cookie))
        .query(&mut conn)
        .expect("DEL");
    fx.wait_for_status("/page", Some(&cookie), StatusCode::UNAUTHORIZED)
        .await;
    assert!(fx.proxy.logs().contains("follows invalidations"));
}
