//! Bad and hostile input through the real binary: spoofed identity headers on every kind of
//! route, malformed/oversized/duplicated cookies, malformed control headers, path tricks, a
//! dead Redis, logout-all, and concurrent updates.

mod common;

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;
use sessiongate::session::SessionId;

const SPOOFS: &[(&str, &str)] = &[
    (
        "X-Sessiongate-Assertion",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
    ),
    ("x-sessiongate-assertion", "forged-2"),
    ("X_Sessiongate_Assertion", "forged-underscore"),
    ("X.Sessiongate.Assertion", "forged-dot"),
    ("X-SESSIONGATE-LOGIN", r#"{"sub":"admin"}"#),
    ("x-sessiongate-anything", "x"),
    ("X-Auth-User", "admin"),
    ("x-auth-user", "root"),
    ("X_Auth_User", "admin-underscore"),
    ("X.Auth.User", "admin-dot"),
    ("x_auth.email", "admin@evil"),
    ("X-Auth-Roles", "superuser"),
];

/// The identity-bearing headers the upstream received.
fn identity_headers(echo: &Echo) -> Vec<(String, String)> {
    let protected = ["x-auth-user", "x-auth-email", "x-auth-roles"];
    echo.headers
        .iter()
        .filter(|(n, _)| {
            let norm = n.to_ascii_lowercase().replace(['_', '.'], "-");
            norm.starts_with("x-sessiongate-") || protected.contains(&norm.as_str())
        })
        .cloned()
        .collect()
}

async fn spoofed_identity_never_reaches_the_upstream_on_any_route(transport: Transport) {
    let fx = Harness::new().transport(transport).redis().start().await;
    let cookie = fx.login("alice").await;

    for path in ["/public/x", "/opt/x", "/login"] {
        let reply = fx.request(path, None, SPOOFS).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let echo = reply.echo.as_ref().unwrap();
        assert_eq!(
            identity_headers(echo),
            Vec::<(String, String)>::new(),
            "{path} without a session"
        );
    }
    // A required route without a session never reaches the upstream at all.
    let refused = fx.request("/", None, SPOOFS).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    // With a session: exactly the proxy's own identity, never the forged values.
    for path in ["/", "/opt/x"] {
        let reply = fx.request(path, Some(&cookie), SPOOFS).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let echo = reply.echo.as_ref().unwrap();
        let mut ids = identity_headers(echo);
        ids.sort();
        let names: Vec<&str> = ids.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-auth-email",
                "x-auth-roles",
                "x-auth-user",
                "x-sessiongate-assertion"
            ],
            "{path}"
        );
        assert_eq!(echo.get("x-auth-user"), Some("alice"));
        assert_eq!(echo.get("x-auth-roles"), Some("user"));
        assert_eq!(echo.get("x-auth-email"), Some("alice@example.com"));
        assert_eq!(reply.claims()["sub"], "alice");
    }
    // On a public route a valid session still injects nothing (public means no identity).
    let reply = fx.request("/public/x", Some(&cookie), SPOOFS).await;
    assert!(identity_headers(reply.echo.as_ref().unwrap()).is_empty());
}

async fn bad_cookies_mean_no_session_and_no_store_call(transport: Transport) {
    let fx = Harness::new().transport(transport).redis().start().await;
    let good = fx.login("alice").await;
    let other = signed(&SessionId::generate().unwrap());
    // A well-formed id without its MAC (as an older cookie or a guess would be), and one
    // signed under a key the proxy does not have.
    let bare = SessionId::generate().unwrap().encode();
    let foreign = sessiongate::cookie::CookieCodec::new(&["another-key-0123456789abcdefghijklmn"])
        .encode(&SessionId::generate().unwrap());
    let mut tampered = good.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let gets_before = fx.redis().command_calls("get");

    let long = "A".repeat(6000);
    let cases: Vec<(&str, String)> = vec![
        ("short", format!("{COOKIE}=abc")),
        ("oversized", format!("{COOKIE}={long}")),
        ("one char long", format!("{COOKIE}={good}A")),
        ("quoted", format!("{COOKIE}=\"{good}\"")),
        ("bad alphabet", format!("{COOKIE}={}", "+".repeat(64))),
        ("empty", format!("{COOKIE}=")),
        ("an id without its MAC", format!("{COOKIE}={bare}")),
        ("signed under another key", format!("{COOKIE}={foreign}")),
        ("one character changed", format!("{COOKIE}={tampered}")),
        (
            "duplicated, both well formed",
            format!("{COOKIE}={good}; {COOKIE}={other}"),
        ),
        (
            "duplicated, same value",
            format!("{COOKIE}={good}; {COOKIE}={good}"),
        ),
    ];
    for (what, cookie) in &cases {
        let mut h = headers(&[("accept", "application/json")]);
        h.append("cookie", cookie.parse().unwrap());
        let reply = fx.send("/", h).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            set_cookie_value(&reply.headers, COOKIE).as_deref(),
            Some(""),
            "{what}: cookie cleared"
        );
    }
    // Duplicates split over two Cookie headers (HTTP/2 style) are duplicates too.
    let mut h = headers(&[]);
    h.append("cookie", format!("{COOKIE}={good}").parse().unwrap());
    h.append("cookie", format!("x=1; {COOKIE}={other}").parse().unwrap());
    assert_eq!(fx.send("/", h).await.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        fx.redis().command_calls("get"),
        gets_before,
        "a bad cookie reached the store"
    );

    // On public and optional routes a bad cookie is simply no session (and never a 5xx).
    for path in ["/public", "/opt"] {
        let mut h = headers(&[]);
        h.append(
            "cookie",
            format!("{COOKIE}=junk; theme=dark").parse().unwrap(),
        );
        let reply = fx.send(path, h).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let echo = reply.echo.as_ref().unwrap();
        assert_eq!(
            echo.all("cookie"),
            vec!["theme=dark"],
            "the session cookie never goes upstream"
        );
    }
    // A signed id the store does not know (ended, or expired) costs one lookup and is cleared.
    let unknown = signed(&SessionId::generate().unwrap());
    let reply = fx.request("/", Some(&unknown), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.redis().command_calls("get"), gets_before + 1);
    // And the genuine cookie still works.
    assert_eq!(
        fx.request("/", Some(&good), &[]).await.status,
        StatusCode::OK
    );
}

async fn malformed_control_headers_change_nothing_and_never_reach_the_client(transport: Transport) {
    let fx = Harness::new().transport(transport).redis().start().await;
    let cookie = fx.login("alice").await;
    let cases: &[(&str, &str)] = &[
        ("x-echo-set-x-sessiongate-login", "{not json"),
        ("x-echo-set-x-sessiongate-login", r#"{"email":"no-sub@x"}"#),
        (
            "x-echo-set-x-sessiongate-login",
            r#"{"sub":"mallory","iss":"evil"}"#,
        ),
        ("x-echo-set-x-sessiongate-update", "[1,2,3]"),
        ("x-echo-set-x-sessiongate-update", r#"{"sub":"mallory"}"#),
        ("x-echo-set-x-sessiongate-logout", "everyone"),
    ];
    for (name, value) in cases {
        let reply = fx.request("/", Some(&cookie), &[(name, value)]).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{value}: the response passes through"
        );
        assert!(
            set_cookie_value(&reply.headers, COOKIE).is_none(),
            "{value}: cookie changed"
        );
        assert!(
            !reply
                .headers
                .keys()
                .any(|k| k.as_str().starts_with("x-sessiongate")),
            "{value}: control header reached the client"
        );
    }
    // A valid header next to a malformed one is not applied either.
    let reply = fx
        .request(
            "/",
            Some(&cookie),
            &[
                ("x-echo-set-x-sessiongate-update", r#"{"theme":"dark"}"#),
                ("x-echo-set-x-sessiongate-logout", "bogus"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // The session is unchanged: same subject, no new claims, still valid.
    let after = fx.request("/", Some(&cookie), &[]).await;
    assert_eq!(after.status, StatusCode::OK);
    let claims = after.claims();
    assert_eq!(claims["sub"], "alice");
    assert!(claims.get("theme").is_none());
    assert_eq!(claims["roles"], serde_json::json!(["user"]));
    assert!(
        !fx.proxy
            .log_lines_with("malformed control headers")
            .is_empty(),
        "the problem is logged"
    );
}

async fn logout_all_ends_every_session_of_that_user_and_only_those(transport: Transport) {
    let fx = Harness::new().transport(transport).redis().start().await;
    let alice_1 = fx.login("alice").await;
    let alice_2 = fx.login("alice").await;
    let alice_3 = fx.login("alice").await;
    let bob = fx.login("bob").await;
    let reply = fx.logout("/", &alice_1, "all").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        set_cookie_value(&reply.headers, COOKIE).as_deref(),
        Some("")
    );
    for c in [&alice_1, &alice_2, &alice_3] {
        assert_eq!(
            fx.request("/", Some(c), &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        fx.request("/", Some(&bob), &[]).await.status,
        StatusCode::OK
    );
    // Also from a public route, where the proxy did not resolve the session beforehand.
    let bob_2 = fx.login("bob").await;
    let reply = fx.logout("/public", &bob_2, "all").await;
    assert_eq!(reply.status, StatusCode::OK);
    for c in [&bob, &bob_2] {
        assert_eq!(
            fx.request("/", Some(c), &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

async fn concurrent_updates_of_different_claims_all_survive(transport: Transport) {
    let fx = Harness::new().transport(transport).redis().start().await;
    let cookie = fx.login("alice").await;
    let http = client();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let http = http.clone();
            let url = fx.proxy.url("/");
            let cookie = format!("{COOKIE}={cookie}");
            tokio::spawn(async move {
                http.get(url)
                    .header("cookie", cookie)
                    .header(
                        "x-echo-set-x-sessiongate-update",
                        format!(r#"{{"c{i}":{i}}}"#),
                    )
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), StatusCode::OK);
    }
    let claims = fx.request("/", Some(&cookie), &[]).await.claims();
    for i in 0..16 {
        assert_eq!(
            claims[format!("c{i}")],
            serde_json::json!(i),
            "claim c{i} was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_cannot_reach_a_required_route_through_a_public_prefix() {
    let fx = Harness::new().redis().start().await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
        "/public%2f..%2fadmin",
        "/public/..%5cadmin",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
        let (status, _) = raw_request(fx.proxy.port, &request).await;
        assert_eq!(status, 400, "{path}");
    }
    // Encoded letters are matched decoded: this is the required route, not a public one.
    let reply = fx.request("/%70ublic-not/x", None, &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = fx.request("/%70ublic/x", None, &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "decoded /public/x is the public route"
    );
    assert_eq!(fx.upstream().hits(), 1);
}

async fn a_dead_redis_fails_closed_or_anonymous_per_route_and_never_issues_a_cookie(
    transport: Transport,
) {
    let mut fx = Harness::new().transport(transport).redis().start().await;
    let cookie = fx.login("alice").await;
    assert_eq!(
        fx.request("/", Some(&cookie), &[]).await.status,
        StatusCode::OK
    );
    fx.redis_mut().kill();
    // The session cache switches off as soon as its invalidation connection breaks.
    fx.wait_for_status("/", Some(&cookie), StatusCode::SERVICE_UNAVAILABLE)
        .await;

    // required + fail_closed: 503, upstream not reached
    let hits = fx.upstream().hits();
    let reply = fx.request("/", Some(&cookie), &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fx.upstream().hits(), hits);
    assert!(
        set_cookie_value(&reply.headers, COOKIE).is_none(),
        "a store outage must not clear cookies"
    );

    // optional + anonymous: forwarded without any identity
    let reply = fx.request("/opt", Some(&cookie), SPOOFS).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(identity_headers(reply.echo.as_ref().unwrap()).is_empty());

    // a login whose write fails answers 503 and sets no cookie
    let reply = fx
        .request(
            "/login",
            None,
            &[("x-echo-set-x-sessiongate-login", r#"{"sub":"bob"}"#)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(set_cookie_value(&reply.headers, COOKIE).is_none());

    // readiness reports the store
    let ready = client()
        .get(fx.proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = client()
        .get(fx.proxy.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

async fn anonymous_on_a_required_route_refuses_when_the_store_is_down(transport: Transport) {
    let fx = Harness::new()
        .transport(transport)
        .redis()
        .route(Route::required("/anon").on_store_error("anonymous"))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    let mut fx = fx;
    fx.redis_mut().kill();
    fx.wait_for_status("/", Some(&cookie), StatusCode::SERVICE_UNAVAILABLE)
        .await;
    // No identity could be verified, so a required route treats the request as unauthenticated.
    // (serve_stale is covered in tests/store_outage.rs.)
    assert_eq!(
        fx.request("/anon", Some(&cookie), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_headers_in_raw_mixed_case_are_stripped_too() {
    let fx = Harness::new().redis().start().await;
    let request = "GET /public/raw HTTP/1.1\r\nHost: app\r\nX-SessionGate-Assertion: forged\r\n\
                   X_AUTH_USER: admin\r\nx.Auth.Roles: root\r\nX-Auth-User: a\r\nX-Auth-User: b\r\n\
                   Connection: close\r\n\r\n";
    let (status, text) = raw_request(fx.proxy.port, request).await;
    assert_eq!(status, 200);
    let body = text.split("\r\n\r\n").nth(1).expect("a body");
    let echo: Echo = serde_json::from_str(body).expect("the echo body");
    assert!(identity_headers(&echo).is_empty(), "{:?}", echo.headers);
    assert!(
        !fx.proxy.log_lines_with("protected namespace").is_empty(),
        "stripping is logged"
    );
}

on_both_transports!(
    spoofed_identity_never_reaches_the_upstream_on_any_route,
    bad_cookies_mean_no_session_and_no_store_call,
    malformed_control_headers_change_nothing_and_never_reach_the_client,
    logout_all_ends_every_session_of_that_user_and_only_those,
    concurrent_updates_of_different_claims_all_survive,
    a_dead_redis_fails_closed_or_anonymous_per_route_and_never_issues_a_cookie,
    anonymous_on_a_required_route_refuses_when_the_store_is_down,
);
