//! The identity boundary as a user sees it, finding by finding of the penetration test: the
//! host of absolute-form targets, logins only on routes that accept them and no planted session
//! cookie, forwarding headers rebuilt or extended, bounded and unambiguous claims, echoing
//! methods, Pingora's own log lines without the query, one Content-Length, and the headers the
//! proxy sets itself. Real binary, real echo upstream, raw sockets where an HTTP client would
//! tidy the request first.

mod common;

use std::time::Duration;

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;

/// Routes for host tests: `admin.example.com` requires a session everywhere, any other host
/// has the standard routes.
fn host_harness() -> Harness {
    Harness::new().route(Route::required("/").host("admin.example.com"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_names_the_host_and_host_must_agree() {
    let fx = host_harness().start().await;
    // The pen-test's request: HTTP/1.1 without Host is refused (RFC 9112 §3.2).
    let reply = fx
        .raw("GET http://admin.example.com/public/x HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(reply.status, 400);
    // HTTP/1.0 may omit Host: the target's authority names the host, so admin's policy applies.
    let reply = fx
        .raw("GET http://admin.example.com/public/x HTTP/1.0\r\nAccept: application/json\r\n\r\n")
        .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    // Host beside an absolute target must agree with it.
    let reply = fx.raw("GET http://admin.example.com/public/x HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 400);
    let reply = fx.raw("GET http://admin.example.com/public/x HTTP/1.1\r\nHost: admin.example.com\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 401);
    // Pingora's own check of the two is byte for byte.
    let reply = fx.raw("GET http://admin.example.com/public/x HTTP/1.1\r\nHost: Admin.Example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 400);
    // Another host's public route: the app gets the origin-form path and the host routed on.
    let reply = fx
        .raw("GET http://www.example.com/public/x?y=1 HTTP/1.0\r\n\r\n")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echo = reply.echo();
    assert_eq!(echo.path, "/public/x?y=1");
    assert_eq!(echo.all("host"), ["www.example.com"]);
    assert_eq!(fx.upstream().hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repeated_and_malformed_hosts_are_refused() {
    let fx = host_harness().start().await;
    for head in [
        "GET /public/x HTTP/1.1\r\n",
        "GET /public/x HTTP/1.1\r\nHost: www.example.com:admin.example.com\r\n",
        "GET /public/x HTTP/1.1\r\nHost: www.example.com\r\nHost: admin.example.com\r\n",
        "GET /public/x HTTP/1.1\r\nHost: admin.example.com:99999\r\n",
        "GET /public/x HTTP/1.1\r\nHost: admin.example.com,www.example.com\r\n",
        "GET /public/x HTTP/1.1\r\nHost: user@admin.example.com\r\n",
    ] {
        let reply = fx.raw(&format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(reply.status, 400, "{head:?}");
    }
    assert_eq!(fx.upstream().hits(), 0, "a refused request reached the app");
    // HTTP/1.0 without any host only matches `*` routes.
    let reply = fx.raw("GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(reply.status, 200);
}

/// The session cookies (name `__Host-sid`, any case, or nameless) among Set-Cookie headers.
fn session_set_cookies(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    set_cookies(headers)
        .into_iter()
        .filter(|c| c.to_ascii_lowercase().contains("__host-sid"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_login_routes_log_users_in_and_apps_cannot_plant_the_session_cookie() {
    let fx = Harness::new().start().await;
    let cookie = fx.login("alice").await;
    let login = r#"{"sub":"mallory","roles":["admin"]}"#;
    // A reflection bug anywhere but on the login route: nobody is logged in.
    for (path, session) in [
        ("/public/x", None),
        ("/opt/x", None),
        ("/opt/x", Some(cookie.as_str())),
        ("/page", Some(&cookie)),
    ] {
        let reply = fx
            .request(path, session, &[("x-echo-set-x-sessiongate-login", login)])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.session_cookie(), None, "{path}: a login was honoured");
        assert!(reply.headers.get("x-sessiongate-login").is_none());
    }
    // Alice is still alice.
    let reply = fx.request("/page", Some(&cookie), &[]).await;
    assert_eq!(reply.echo().get("x-auth-user"), Some("alice"));
    let refused = fx
        .proxy
        .log_lines_with("only accepted on routes with accept_login");
    assert_eq!(refused.len(), 4, "each refused login is logged");

    // No response, on any route, may set the session cookie itself; other cookies pass.
    for planted in [
        "__Host-sid=planted-by-the-app; Path=/; Secure",
        "__HOST-SID=planted-by-the-app; Path=/",
        "=__Host-sid=planted-by-the-app; Path=/",
        " __Host-sid =planted-by-the-app",
    ] {
        for (path, session) in [("/public/x", None), ("/page", Some(cookie.as_str()))] {
            let reply = fx
                .request(
                    path,
                    session,
                    &[
                        ("x-echo-set-set-cookie", planted),
                        ("x-echo-set-x-other", "1"),
                    ],
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(
                session_set_cookies(&reply.headers),
                Vec::<String>::new(),
                "{planted} on {path}"
            );
        }
    }
    let reply = fx
        .request(
            "/public/x",
            None,
            &[("x-echo-set-set-cookie", "theme=dark")],
        )
        .await;
    assert_eq!(set_cookies(&reply.headers), ["theme=dark"]);
    // On the login route the proxy's own cookie is the only session cookie the browser gets.
    let reply = fx
        .request(
            "/login",
            None,
            &[
                ("x-echo-set-x-sessiongate-login", r#"{"sub":"bob"}"#),
                ("x-echo-set-set-cookie", "__Host-sid=planted-by-the-app"),
            ],
        )
        .await;
    let issued = session_set_cookies(&reply.headers);
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert!(!issued[0].contains("planted"));
    let bob = reply.session_cookie().unwrap();
    assert_eq!(
        fx.request("/page", Some(&bob), &[])
            .await
            .echo()
            .get("x-auth-user"),
        Some("bob")
    );
}

/// The forwarding headers the echo upstream received, names lower case.
fn forwarding(echo: &Echo) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = echo
        .headers
        .iter()
        .filter(|(n, _)| {
            let n = n
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            n.starts_with("x-forwarded")
                || n == "forwarded"
                || n == "x-real-ip"
                || n == "x-original-url"
                || n == "x-rewrite-url"
                || n == "x-client-ip"
                || n == "true-client-ip"
        })
        .cloned()
        .collect();
    seen.sort();
    seen
}

const FORWARDING_SPOOFS: &[(&str, &str)] = &[
    ("X-Forwarded-For", "127.0.0.1"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X_Forwarded_For", "10.0.0.1"),
    ("Forwarded", "for=127.0.0.1;host=evil.example"),
    ("X-Real-IP", "127.0.0.1"),
    ("True-Client-IP", "127.0.0.1"),
    ("X-Original-URL", "/admin/secret"),
    ("X-Rewrite-URL", "/admin/secret"),
];

async fn access_client(proxy: &Proxy, request_id: &str) -> String {
    let line = eventually(Duration::from_secs(5), "no access line", || {
        proxy
            .log_lines_with(request_id)
            .into_iter()
            .find(|l| l.contains("sessiongate::access"))
    })
    .await;
    let start = line.find("client=\"").expect("a client field") + 8;
    line[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let fx = Harness::new()
        .server(|s| s.trusted_proxies(&["10.0.0.0/8"]).forwarded_header(true))
        .start()
        .await;
    let cookie = fx.login("alice").await;
    let host = format!("127.0.0.1:{}", fx.proxy.port);
    for (path, session) in [("/public/x", None), ("/page", Some(cookie.as_str()))] {
        let reply = fx.request(path, session, FORWARDING_SPOOFS).await;
        assert_eq!(reply.status, StatusCode::OK);
        let echo = reply.echo();
        assert_eq!(echo.path, path, "X-Original-URL picks nothing");
        assert_eq!(
            forwarding(echo),
            vec![
                (
                    "forwarded".to_string(),
                    format!("for=127.0.0.1;proto=http;host=\"{host}\"")
                ),
                ("x-forwarded-for".to_string(), "127.0.0.1".to_string()),
                ("x-forwarded-host".to_string(), host.clone()),
                ("x-forwarded-proto".to_string(), "http".to_string()),
            ],
            "{path}"
        );
        let id = echo.get("x-request-id").unwrap().to_string();
        assert_eq!(access_client(&fx.proxy, &id).await, "127.0.0.1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_chain_is_kept_and_extended() {
    let fx = Harness::new()
        .server(|s| s.trusted_proxies(&["127.0.0.1", "10.0.0.0/8"]))
        .start()
        .await;
    let reply = fx
        .request(
            "/public/x",
            None,
            &[
                ("X-Forwarded-For", "198.51.100.4, 203.0.113.7, 10.1.2.3"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "www.example.com"),
                ("X-Real-IP", "203.0.113.7"),
                ("X_Forwarded_For", "6.6.6.6"),
                ("X-Original-URL", "/admin/secret"),
            ],
        )
        .await;
    let echo = reply.echo();
    assert_eq!(
        forwarding(echo),
        vec![
            (
                "x-forwarded-for".to_string(),
                "198.51.100.4, 203.0.113.7, 10.1.2.3, 127.0.0.1".to_string()
            ),
            (
                "x-forwarded-host".to_string(),
                "www.example.com".to_string()
            ),
            ("x-forwarded-proto".to_string(), "https".to_string()),
            ("x-real-ip".to_string(), "203.0.113.7".to_string()),
        ]
    );
    // 127.0.0.1 and 10.1.2.3 are trusted proxies: the client is 203.0.113.7.
    let id = echo.get("x-request-id").unwrap().to_string();
    assert_eq!(access_client(&fx.proxy, &id).await, "203.0.113.7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_ambiguous_claims_are_refused() {
    let fx = Harness::new().start().await;
    let big = format!(r#"{{"sub":"bob","blob":"{}"}}"#, "x".repeat(5000));
    for login in [
        big.as_str(),
        "{\"sub\":\"admin\\u202e\"}",
        "{\"sub\":\"admin \"}",
        "{\"sub\":\"ad\\u200bmin\"}",
        r#"{"sub":"bob","roles":["user","admin,root"]}"#,
        "{\"sub\":\"bob\",\"email\":\"bob@example.com\\u2066\"}",
    ] {
        let reply = fx.login_with(login, None).await;
        assert_eq!(reply.status, StatusCode::OK, "the response passes through");
        assert_eq!(
            reply.session_cookie(),
            None,
            "{login}: a session was created"
        );
    }
    // A claim that is not mapped to a header may hold commas and line breaks: the assertion
    // carries it as JSON.
    let reply = fx
        .login_with(r#"{"sub":"bob","note":"a, b\nc"}"#, None)
        .await;
    let bob = reply.session_cookie().expect("a clean login works");
    // An update that would grow the claims past the bound changes nothing.
    let first = format!(r#"{{"blob":"{}"}}"#, "y".repeat(3000));
    let second = format!(r#"{{"blob2":"{}"}}"#, "z".repeat(3000));
    for update in [&first, &second] {
        let reply = fx
            .request(
                "/page",
                Some(&bob),
                &[("x-echo-set-x-sessiongate-update", update)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let claims = fx.request("/page", Some(&bob), &[]).await.claims();
    assert_eq!(claims["note"], "a, b\nc");
    assert_eq!(claims["blob"].as_str().map(str::len), Some(3000));
    assert!(
        claims.get("blob2").is_none(),
        "the oversized update was applied"
    );
    assert!(!fx
        .proxy
        .log_lines_with("merged claims exceed session.max_claims_bytes")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoing_methods_are_refused_unless_allowed() {
    let fx = Harness::new().start().await;
    let cookie = fx.login("alice").await;
    for method in ["TRACE", "TRACK"] {
        let reply = fx.raw(&format!(
                "{method} /page HTTP/1.1\r\nHost: x\r\nCookie: {COOKIE}={cookie}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(reply.status, 405, "{method}");
        assert!(!reply.body.contains("x-sessiongate-assertion"));
    }
    assert_eq!(fx.upstream().hits(), 1, "only the login reached the app");

    let allowed = Harness::new().server(|s| s.allow_trace(true)).start().await;
    let reply = allowed
        .raw("TRACE /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().method, "TRACE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingora_error_lines_never_carry_the_query() {
    let mut fx = Harness::new()
        .upstream(|u| u.health_check("none"))
        .start()
        .await;
    fx.upstream_mut().stop().await;
    let secret = "reset-token-5f2b9c";
    let reply = fx
        .request(&format!("/public/reset?token={secret}"), None, &[])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let lines = eventually(Duration::from_secs(5), "no error line from Pingora", || {
        Some(fx.proxy.log_lines_with("Fail to proxy")).filter(|l| !l.is_empty())
    })
    .await;
    assert!(
        lines.iter().any(|l| l.contains("GET /public/reset")),
        "{lines:?}"
    );
    assert!(!fx.proxy.logs().contains(secret), "the query was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreeing_content_lengths_are_sent_as_one_and_disagreeing_ones_refused() {
    let fx = Harness::new().start().await;
    let reply = fx.raw("POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.echo().all("content-length"), ["5"]);
    for lengths in [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5, 6",
    ] {
        let reply = fx.raw(&format!("POST /public/x HTTP/1.1\r\nHost: x\r\n{lengths}\r\nConnection: close\r\n\r\nhello!"),
        )
        .await;
        assert_eq!(reply.status, 400, "{lengths}");
    }
    assert_eq!(fx.upstream().hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_of_the_headers_the_proxy_sets_are_removed() {
    let fx = Harness::new().start().await;
    let reply = fx
        .request(
            "/public/x",
            None,
            &[
                ("x_request_id", "forged-1"),
                ("X-Request-Id", "forged-2"),
                ("x.request.id", "forged-3"),
                ("X~Request~Id", "forged-4"),
            ],
        )
        .await;
    let echo = reply.echo();
    let ids: Vec<&(String, String)> = echo
        .headers
        .iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
                == "x-request-id"
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(uuid::Uuid::parse_str(&ids[0].1).is_ok(), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folded_spellings_of_identity_headers_never_reach_the_echo_app() {
    let fx = Harness::new().start().await;
    let cookie = fx.login("alice").await;
    for sep in "!#$%&'*+-.^_`|~".chars() {
        let names = [
            format!("X{sep}Auth{sep}User"),
            format!("X{sep}Sessiongate{sep}Assertion"),
            format!("x{sep}sessiongate{sep}login"),
        ];
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "forged")).collect();
        for session in [None, Some(cookie.as_str())] {
            let reply = fx.request("/opt/x", session, &pairs).await;
            let echo = reply.echo();
            assert!(
                !echo.headers.iter().any(|(_, v)| v == "forged"),
                "{sep:?}: {:?}",
                echo.headers
            );
            let expected: Vec<&str> = session.map(|_| "alice").into_iter().collect();
            assert_eq!(echo.all("x-auth-user"), expected);
        }
    }
    let metrics: String = fx
        .http
        .get(fx.proxy.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stripped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sessiongate_spoofed_headers_stripped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(stripped, 15.0 * 3.0 * 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_routes_match_as_iis_reads_paths() {
    // A public site with an admin area, in front of an upstream that ignores case (IIS).
    let fx = Harness::new()
        .catch_all(Route::public("/"))
        .route(Route::required("/admin").case_insensitive(true))
        .start()
        .await;
    for path in [
        "/admin/secret",
        "/ADMIN/secret",
        "/Admin",
        "/aDmIn/x?y",
        "/%41dmin/x",
    ] {
        let reply = fx
            .request(path, None, &[("accept", "application/json")])
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let reply = fx.request("/administrator", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(fx.upstream().hits(), 1);
}
