//! End-to-end session behaviour through the real binary, a real upstream and (where named) a
//! real redis-server: login, identity, update, logout, fixation, expiry and renewal.

mod common;

use std::time::Duration;

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;
use sessiongate::config::model::RecordFormat;
use sessiongate::session::SessionId;

async fn full_lifecycle(harness: Harness) {
    let fx = harness.start().await;

    // Without a session an API client is refused, and the upstream never sees the request.
    let anon = fx
        .request("/", None, &[("accept", "application/json")])
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.upstream().hits(), 0);

    // Login: the app answers with the control header; the client gets a cookie, not the header.
    let reply = fx
        .login_with(
            r#"{"sub":"alice","email":"alice@example.com","roles":["admin","dev"]}"#,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.session_cookie().expect("a session cookie");
    assert_eq!(cookie.len(), 64, "a signed id: {cookie}");
    assert!(
        codec().decode(cookie.as_bytes()).is_some(),
        "the MAC verifies: {cookie}"
    );
    let set_cookie = &set_cookies(&reply.headers)[0];
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie} lacks {attr}");
    }
    assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
    assert!(
        !reply
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("x-sessiongate")),
        "control headers reached the client: {:?}",
        reply.headers
    );

    // With the cookie: identity headers and a valid assertion upstream; the session cookie is
    // taken out of Cookie, other cookies pass.
    let resp = fx
        .get("/app")
        .header("cookie", &format!("theme=dark; {COOKIE}={cookie}; lang=en"))
        .send()
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let echo = resp.echo();
    assert_eq!(echo.get("x-auth-user"), Some("alice"));
    assert_eq!(echo.get("x-auth-email"), Some("alice@example.com"));
    assert_eq!(echo.get("x-auth-roles"), Some("admin,dev"));
    assert_eq!(echo.all("cookie"), vec!["theme=dark; lang=en"]);
    let claims = verify(echo.get("x-sessiongate-assertion").unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    let sid = claims["sid"].as_str().unwrap();
    assert_ne!(sid, cookie, "the assertion must never carry the session id");
    assert_eq!(sid, session_id(&cookie).store_key().as_str());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );

    // Update: merged into the claims the next request carries; null deletes.
    let upd = fx
        .request(
            "/",
            Some(&cookie),
            &[(
                "x-echo-set-x-sessiongate-update",
                r#"{"display_name":"Al","email":null}"#,
            )],
        )
        .await;
    assert_eq!(upd.status, StatusCode::OK);
    assert!(upd.session_cookie().is_none(), "an update keeps the cookie");
    assert!(upd.headers.get("x-sessiongate-update").is_none());
    let after = fx.request("/", Some(&cookie), &[]).await;
    let claims = after.claims();
    assert_eq!(claims["display_name"], "Al");
    assert!(claims.get("email").is_none(), "null deleted the claim");
    assert!(after.echo().get("x-auth-email").is_none());

    // Logout: the cookie is cleared and the old id is refused from now on.
    let out = fx.logout("/", &cookie, "current").await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(
        out.session_cookie().as_deref(),
        Some(""),
        "logout clears the cookie"
    );
    assert!(set_cookies(&out.headers)[0].contains("Max-Age=0"));
    let gone = fx.request("/", Some(&cookie), &[]).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        gone.session_cookie().as_deref(),
        Some(""),
        "a dead cookie is cleared"
    );

    // Never log the id.
    assert!(
        !fx.proxy.logs().contains(&cookie),
        "the session id appeared in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_the_memory_store() {
    full_lifecycle(Harness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_redis_msgpack() {
    full_lifecycle(Harness::new().redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_redis_json() {
    full_lifecycle(
        Harness::new()
            .redis()
            .session(|s| s.format(RecordFormat::Json)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotates_the_id_so_a_planted_id_is_useless() {
    for harness in [Harness::new(), Harness::new().redis()] {
        let fx = harness.start().await;
        // An attacker plants a well-formed, signed id the server never issued (the strongest
        // case: without the cookie key a forged value is refused outright).
        let planted = signed(&SessionId::generate().unwrap());
        let reply = fx.login_with(r#"{"sub":"victim"}"#, Some(&planted)).await;
        let issued = reply.session_cookie().unwrap();
        assert_ne!(issued, planted, "the server adopted a client-chosen id");
        assert_eq!(
            fx.request("/", Some(&planted), &[]).await.status,
            StatusCode::UNAUTHORIZED
        );

        // A real session held before login is destroyed by the login.
        let before = fx.login("victim").await;
        let reply = fx.login_with(r#"{"sub":"victim"}"#, Some(&before)).await;
        let after = reply.session_cookie().unwrap();
        assert_ne!(before, after);
        assert_eq!(
            fx.request("/", Some(&before), &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            fx.request("/", Some(&after), &[]).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_expiry_ends_an_unused_session() {
    for harness in [Harness::new(), Harness::new().redis()] {
        let fx = harness
            .session(|s| s.timeouts("1s", "1m").renew_below("200ms"))
            .start()
            .await;
        let cookie = fx.login("alice").await;
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
        // Not a wait for a state: the idle timeout (1 s) passing is what is tested.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let reply = fx.request("/", Some(&cookie), &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.session_cookie().as_deref(), Some(""));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_moves_the_idle_deadline_but_never_past_the_absolute_one() {
    let fx = Harness::new()
        .redis()
        .session(|s| s.timeouts("2s", "3s").renew_below("1900ms"))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    let created = fx.stored(&cookie).unwrap();
    assert_eq!(created.deadlines.idle, created.deadlines.created_at + 2000);

    // Used within the idle timeout, the session stays alive past its first idle deadline.
    // Not a wait for a state: the session ages past renew_below, so the request renews it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::OK
    );
    // Renewals are written behind, in batches: poll the store until this one lands.
    let renewed = eventually(
        Duration::from_secs(1),
        "the renewal lands in the store",
        || {
            fx.stored(&cookie)
                .filter(|r| r.deadlines.idle != created.deadlines.idle)
        },
    )
    .await;
    assert!(
        renewed.deadlines.idle > created.deadlines.idle,
        "renewal moved the idle deadline"
    );
    assert!(renewed.v > created.v);
    for _ in 0..3 {
        // Not a wait for a state: activity spread over time, past the first idle deadline and
        // up to the absolute one, is what is tested.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
        let r = fx.stored(&cookie).unwrap();
        assert!(
            r.deadlines.idle <= r.deadlines.absolute,
            "renewed past the absolute deadline"
        );
        assert_eq!(r.deadlines.absolute, created.deadlines.absolute);
    }
    // Past the absolute deadline (3 s after login) no amount of activity keeps it alive.
    let now = sessiongate::session::lifecycle::now_ms();
    // Not a wait for a state: the absolute deadline passing is what is tested.
    tokio::time::sleep(Duration::from_millis(
        created.deadlines.absolute.saturating_sub(now) + 200,
    ))
    .await;
    let reply = fx.request("/", Some(&cookie), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.session_cookie().as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_renewal_write_while_enough_idle_time_remains() {
    let fx = Harness::new().redis().start().await;
    let cookie = fx.login("alice").await;
    let redis = fx.redis();
    let before = redis.command_calls("evalsha") + redis.command_calls("eval");
    for _ in 0..20 {
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
    }
    let after = redis.command_calls("evalsha") + redis.command_calls("eval");
    assert_eq!(before, after, "a fresh session was rewritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_are_redirected_to_login_and_api_clients_get_401() {
    let fx = Harness::new()
        .catch_all(Route::required("/").login_url("/login"))
        .start()
        .await;
    let html = fx
        .request(
            "/reports/q1?year=2026",
            None,
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(html.status, StatusCode::FOUND);
    assert_eq!(
        html.headers.get("location").unwrap(),
        "/login?next=%2Freports%2Fq1%3Fyear%3D2026"
    );
    let api = fx
        .request("/reports/q1", None, &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(fx.upstream().hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_cookies_live_until_the_absolute_deadline() {
    let fx = Harness::new().session(|s| s.persistent(true)).start().await;
    let resp = fx.login_with(r#"{"sub":"a"}"#, None).await;
    let set_cookie = set_cookies(&resp.headers).join("\n");
    assert!(
        set_cookie.contains("Max-Age=43199") || set_cookie.contains("Max-Age=43200"),
        "{set_cookie}"
    );
}
