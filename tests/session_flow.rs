//! End-to-end session behaviour through the real binary, a real upstream and (where named) a
//! real redis-server: login, identity, update, logout, fixation, expiry and renewal.

mod common;

use std::time::Duration;

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;
use sessiongate::config::model::RecordFormat;
use sessiongate::session::SessionId;

async fn full_lifecycle(store: Store) {
    let fx = Fixture::start(store, |c| c).await;

    // Without a session an API client is refused, and the upstream never sees the request.
    let anon = fx
        .request("/", None, &[("accept", "application/json")])
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.upstream.hits(), 0);

    // Login: the app answers with the control header; the client gets a cookie, not the header.
    let reply = fx
        .login_with(
            r#"{"sub":"alice","email":"alice@example.com","roles":["admin","dev"]}"#,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.session_cookie().expect("a session cookie");
    assert!(
        SessionId::parse(cookie.as_bytes()).is_some(),
        "a 43-char id: {cookie}"
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
    let mut h = headers(&[]);
    h.append(
        "cookie",
        format!("theme=dark; {COOKIE}={cookie}; lang=en")
            .parse()
            .unwrap(),
    );
    let resp = fx
        .http
        .get(fx.proxy.url("/app"))
        .headers(h)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo: Echo = resp.json().await.unwrap();
    assert_eq!(echo.get("x-auth-user"), Some("alice"));
    assert_eq!(echo.get("x-auth-email"), Some("alice@example.com"));
    assert_eq!(echo.get("x-auth-roles"), Some("admin,dev"));
    assert_eq!(echo.all("cookie"), vec!["theme=dark; lang=en"]);
    let claims = verify(echo.get("x-sessiongate-assertion").unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    let sid = claims["sid"].as_str().unwrap();
    assert_ne!(sid, cookie, "the assertion must never carry the session id");
    assert_eq!(
        sid,
        SessionId::parse(cookie.as_bytes())
            .unwrap()
            .store_key()
            .as_str()
    );
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
    full_lifecycle(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_redis_msgpack() {
    full_lifecycle(Store::Redis(RecordFormat::MessagePack)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_redis_json() {
    full_lifecycle(Store::Redis(RecordFormat::Json)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotates_the_id_so_a_planted_id_is_useless() {
    for store in [Store::Memory, Store::Redis(RecordFormat::MessagePack)] {
        let fx = Fixture::start(store, |c| c).await;
        // An attacker plants a well-formed id the server never issued.
        let planted = SessionId::generate().unwrap().encode();
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
    for store in [Store::Memory, Store::Redis(RecordFormat::MessagePack)] {
        let fx = Fixture::start(store, |c| c.timeouts("1s", "1m", Some("200ms"))).await;
        let cookie = fx.login("alice").await;
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let reply = fx.request("/", Some(&cookie), &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.session_cookie().as_deref(), Some(""));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_moves_the_idle_deadline_but_never_past_the_absolute_one() {
    let format = RecordFormat::MessagePack;
    let fx = Fixture::start(Store::Redis(format), |c| {
        c.timeouts("2s", "3s", Some("1900ms"))
    })
    .await;
    let cookie = fx.login("alice").await;
    let created = fx.stored(&cookie, format).unwrap();
    assert_eq!(created.deadlines.idle, created.deadlines.created_at + 2000);

    // Used within the idle timeout, the session stays alive past its first idle deadline.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::OK
    );
    // Renewals are written behind, in batches: poll the store until this one lands.
    let mut renewed = fx.stored(&cookie, format).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while renewed.deadlines.idle == created.deadlines.idle && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        renewed = fx.stored(&cookie, format).unwrap();
    }
    assert!(
        renewed.deadlines.idle > created.deadlines.idle,
        "renewal moved the idle deadline"
    );
    assert!(renewed.v > created.v);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            fx.request("/", Some(&cookie), &[]).await.status,
            StatusCode::OK
        );
        let r = fx.stored(&cookie, format).unwrap();
        assert!(
            r.deadlines.idle <= r.deadlines.absolute,
            "renewed past the absolute deadline"
        );
        assert_eq!(r.deadlines.absolute, created.deadlines.absolute);
    }
    // Past the absolute deadline (3 s after login) no amount of activity keeps it alive.
    let now = sessiongate::session::lifecycle::now_ms();
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
    let fx = Fixture::start(Store::Redis(RecordFormat::MessagePack), |c| c).await;
    let cookie = fx.login("alice").await;
    let redis = fx.redis.as_ref().unwrap();
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
    let fx = Fixture::start(Store::Memory, |mut c| {
        c.default_route = "auth = \"required\"\nlogin_url = \"/login\"".into();
        c
    })
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
    assert_eq!(fx.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_cookies_live_until_the_absolute_deadline() {
    let upstream = EchoUpstream::start("app").await;
    let text = TestConfig::memory(upstream.addr)
        .standard_routes()
        .to_toml()
        .replace("[session]\n", "[session]\npersistent = true\n");
    let proxy = Proxy::start(&text);
    let resp = client()
        .get(proxy.url("/login"))
        .header("x-echo-set-x-sessiongate-login", r#"{"sub":"a"}"#)
        .send()
        .await
        .unwrap();
    let set_cookie = set_cookies(resp.headers()).join("\n");
    assert!(
        set_cookie.contains("Max-Age=43199") || set_cookie.contains("Max-Age=43200"),
        "{set_cookie}"
    );
}
