//! Redis failing under the proxy: a dead store (SIGKILL), a hung one (SIGSTOP), one that is
//! not there yet at start; the circuit breaker, `serve_stale`, and recovery without a restart.

mod common;

use std::time::Duration;

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;

async fn readyz(proxy: &Proxy) -> (StatusCode, String) {
    let resp = client()
        .get(proxy.admin_url("/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the admin listener answers");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

/// Logs alice in through `proxy`'s public /login route; the session cookie, if one was set.
async fn login(proxy: &Proxy) -> (StatusCode, Option<String>) {
    let resp = client()
        .get(proxy.url("/login"))
        .header("x-echo-set-x-sessiongate-login", r#"{"sub":"alice"}"#)
        .send()
        .await
        .expect("the proxy answers");
    (resp.status(), set_cookie_value(resp.headers(), COOKIE))
}

async fn wait_ready(proxy: &Proxy, want: StatusCode, body: &str) {
    let what = format!("/readyz answers {want} with {body:?}");
    eventually_async(Duration::from_secs(10), &what, || async {
        let (status, text) = readyz(proxy).await;
        status == want && text.contains(body)
    })
    .await;
}

/// A proxy with a serve_stale route under /stale, alice's session read (so cached) while Redis
/// was up, then Redis killed and the cache known to be off.
async fn cached_then_dead() -> (Running, String) {
    let mut fx = Harness::new()
        .redis()
        .route(
            Route::required("/stale")
                .on_store_error("serve_stale")
                .accept_login(),
        )
        .start()
        .await;
    let cookie = fx.login("alice").await;
    fx.wait_for_status("/stale", Some(&cookie), StatusCode::OK)
        .await;
    fx.redis_mut().kill();
    fx.wait_for_status("/", Some(&cookie), StatusCode::SERVICE_UNAVAILABLE)
        .await;
    (fx, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_honours_cached_sessions_while_redis_is_dead() {
    let (fx, cached) = cached_then_dead().await;

    // serve_stale: alice's cached session is honoured, with her identity.
    let reply = fx.request("/stale", Some(&cached), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.echo().get("x-auth-user"), Some("alice"));
    assert_eq!(reply.claims()["sub"], "alice");
    // fail_closed on the catch-all route: 503 for the same cookie.
    assert_eq!(
        fx.request("/", Some(&cached), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A cookie whose session was never cached cannot be vouched for.
    let unknown = signed(&sessiongate::session::SessionId::generate().unwrap());
    assert_eq!(
        fx.request("/stale", Some(&unknown), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        !fx.proxy.log_lines_with("lookup=\"stale\"").is_empty(),
        "stale serving is visible in the access log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stale_window_bounds_stale_serving() {
    let mut fx = Harness::new()
        .redis()
        .cache(|c| c.stale_window("1s"))
        .route(Route::required("/stale").on_store_error("serve_stale"))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    fx.wait_for_status("/stale", Some(&cookie), StatusCode::OK)
        .await;
    fx.redis_mut().kill();
    // Not a wait for a state: the stale window (1 s) passing is what is tested.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        fx.request("/stale", Some(&cookie), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_opens_the_breaker_and_service_resumes_after_it_thaws() {
    let fx = Harness::new()
        .redis()
        .store(|s| s.breaker(3, "300ms").command_timeout("100ms"))
        // Every request reads Redis (a cached session would be served for a moment).
        .cache(|c| c.enabled(false))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    wait_ready(&fx.proxy, StatusCode::OK, "circuit closed").await;
    fx.redis().pause();
    // Every request answers (503), none hangs; the breaker opens after 3 failures.
    for _ in 0..10 {
        // Each is answered within 5 s, or the test fails.
        let status = fx
            .get("/")
            .cookie(&cookie)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .status;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let (status, text) = readyz(&fx.proxy).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("circuit"), "{text}");
    assert!(!fx.proxy.log_lines_with("circuit opened").is_empty());

    fx.redis().resume();
    wait_ready(&fx.proxy, StatusCode::OK, "ready").await;
    fx.wait_for_status("/", Some(&cookie), StatusCode::OK).await;
    assert!(!fx.proxy.log_lines_with("circuit closed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_is_survived_and_followed_after_its_restart() {
    let mut fx = Harness::new()
        .redis()
        .store(|s| s.breaker(3, "200ms"))
        .start()
        .await;
    let port = fx.redis().port;
    let before = fx.login("alice").await;
    fx.redis_mut().kill();
    fx.wait_for_status("/", Some(&before), StatusCode::SERVICE_UNAVAILABLE)
        .await;
    // Redis comes back empty (no persistence): old sessions are gone, new logins work.
    fx.redis = Some(RedisServer::start_on(port));
    wait_ready(&fx.proxy, StatusCode::OK, "ready").await;
    fx.wait_for_status("/", Some(&before), StatusCode::UNAUTHORIZED)
        .await;
    let after = fx.login("alice").await;
    assert_eq!(
        fx.request("/", Some(&after), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessiongate_starts_without_redis_and_becomes_ready_when_it_appears() {
    let port = free_port();
    let h = Harness::new()
        .redis_url(&format!("redis://127.0.0.1:{port}/0"))
        .start()
        .await;
    let proxy = &h.proxy;
    let (status, text) = readyz(proxy).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    // Public routes work without a store.
    let public = client().get(proxy.url("/public")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::OK);

    let _redis = RedisServer::start_on(port);
    wait_ready(proxy, StatusCode::OK, "ready").await;
    let cookie = login(proxy).await.1.expect("a cookie once Redis is there");
    let resp = client()
        .get(proxy.url("/"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_credentials_come_from_a_file_and_a_wrong_one_is_refused() {
    let redis = RedisServer::start_with_password("s3cret-pass");
    let url = redis.url();
    let secrets = tempfile::tempdir().unwrap();
    let good = secrets.path().join("redis.pass");
    std::fs::write(&good, "s3cret-pass\n").unwrap();
    let bad = secrets.path().join("wrong.pass");
    std::fs::write(&bad, "guess").unwrap();

    let h = Harness::new()
        .redis_server(redis)
        .store(|s| s.password_file(&good))
        .start()
        .await;
    let proxy = &h.proxy;
    wait_ready(proxy, StatusCode::OK, "ready").await;
    let cookie = login(proxy).await.1.expect("authenticated writes work");
    let resp = client()
        .get(proxy.url("/"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        !proxy.logs().contains("s3cret-pass"),
        "the password reached the log"
    );

    // A second proxy on the same Redis and the same upstream, with the wrong password.
    let wrong = Harness::new()
        .backend(h.upstream().addr)
        .redis_url(&url)
        .store(|s| s.password_file(&bad))
        .start()
        .await;
    let (status, _) = readyz(&wrong.proxy).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, cookie) = login(&wrong.proxy).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(cookie.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_a_serve_stale_route_fail_without_touching_the_cookie() {
    let (fx, cookie) = cached_then_dead().await;

    // The read is honoured from the cache, but the app's writes cannot be stored: each answers
    // 503 and leaves the cookie alone, whatever the app asked for.
    for (header, value) in [
        ("x-echo-set-x-sessiongate-update", r#"{"theme":"dark"}"#),
        ("x-echo-set-x-sessiongate-logout", "current"),
        ("x-echo-set-x-sessiongate-logout", "all"),
        ("x-echo-set-x-sessiongate-login", r#"{"sub":"mallory"}"#),
    ] {
        let reply = fx
            .request("/stale", Some(&cookie), &[(header, value)])
            .await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{header}: {value}"
        );
        assert_eq!(reply.session_cookie(), None, "{header} touched the cookie");
    }
    // The session is still honoured stale, unchanged: no write half-happened in the cache.
    let reply = fx.request("/stale", Some(&cookie), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.claims()["sub"], "alice");
    assert!(reply.claims().get("theme").is_none());
}
