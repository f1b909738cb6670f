//! Real legacy servers (Tomcat 10.1, lighttpd with CGI, PHP's built-in server) first on their
//! own, which pins down how each reads header names and request paths, then behind the proxy:
//! for every header-name spelling over the tchar set and every path form that servlet
//! containers, CGI gateways and Windows read differently, the app sees the identity the proxy
//! meant, or the proxy refused the request. Needs `scripts/deps.sh legacy` (scripts/test.sh
//! runs it).

mod common;

use common::config::COOKIE;
use common::legacy::{raw_get, LegacyKind, LegacyReport, LegacyServer};
use common::{raw_request, verify, Harness, Proxy, Route, Running};

/// The spoofing pair every smoke test sends: a header name that only a folding server reads
/// as X-Auth-User, then the plain name.
const SPOOF: &[(&str, &str)] = &[("X~Auth~User", "admin"), ("X-Auth-User", "alice")];

/// Sends `GET path` with `headers` straight to `server` and parses what the app reported.
async fn ask(server: &LegacyServer, path: &str, headers: &[(&str, &str)]) -> LegacyReport {
    let (status, text) = common::raw_request(server.port(), &raw_get(path, headers)).await;
    assert_eq!(status, 200, "{} answered {path}: {text}", server.name());
    let report = LegacyReport::from_response(&text).expect("the server answers with its report");
    assert_eq!(report.server, server.name());
    report
}

#[tokio::test]
async fn tomcat_reads_header_names_as_sent() {
    let tomcat = LegacyServer::tomcat();
    assert_eq!(tomcat.kind(), LegacyKind::Tomcat);
    let report = ask(&tomcat, "/public/x", SPOOF).await;
    assert_eq!(report.request_uri, "/public/x");
    assert_eq!(report.mapped_path.as_deref(), Some("/public/x"));
    // Tomcat 10.1 hands names to the app in lower case and folds nothing: `X~Auth~User` stays
    // a header of its own, and only the real X-Auth-User is read as X-Auth-User.
    assert!(
        report
            .headers
            .contains(&("x~auth~user".to_string(), "admin".to_string())),
        "headers: {:?}",
        report.headers
    );
    assert_eq!(report.identity_values("X-Auth-User"), ["alice"]);
    assert_eq!(report.identity_values("X~Auth~User"), ["admin"]);
}

#[tokio::test]
async fn tomcat_resolves_dot_dot_semicolon_as_a_parent_segment() {
    let tomcat = LegacyServer::tomcat();
    // `..;` is `..` with an (empty) path parameter: Tomcat drops the parameter, then resolves
    // the dot segment, so a prefix-routing proxy sees /public/... while the app serves /admin.
    let report = ask(&tomcat, "/public/..;/admin/secret", &[]).await;
    assert_eq!(report.request_uri, "/public/..;/admin/secret");
    assert_eq!(report.mapped_path.as_deref(), Some("/admin/secret"));
}

#[tokio::test]
async fn tomcat_drops_path_parameters_before_mapping() {
    let tomcat = LegacyServer::tomcat();
    let report = ask(&tomcat, "/legacy/admin;jsessionid=x/y", &[]).await;
    assert_eq!(report.request_uri, "/legacy/admin;jsessionid=x/y");
    assert_eq!(report.mapped_path.as_deref(), Some("/legacy/admin/y"));
}

#[tokio::test]
async fn lighttpd_cgi_folds_header_names_into_one_variable() {
    let lighttpd = LegacyServer::lighttpd_cgi();
    assert_eq!(lighttpd.kind(), LegacyKind::LighttpdCgi);
    let report = ask(&lighttpd, "/public/x", SPOOF).await;
    assert_eq!(report.request_uri, "/public/x");
    assert_eq!(report.mapped_path.as_deref(), Some("/public/x"));
    // lighttpd turns every byte of a name that is not a letter or digit into `_`, so both
    // headers become HTTP_X_AUTH_USER. They are not joined: the CGI's environment holds two
    // entries of that name, in request order, and which one the app reads depends on its
    // runtime: Python (this CGI's `env`), Perl and C getenv() take the first, here the spoofed
    // "admin"; a /bin/sh or bash CGI takes the last. A client that picks the order wins both.
    assert_eq!(report.identity_values("X-Auth-User"), ["admin", "alice"]);
    assert_eq!(report.json["env"]["HTTP_X_AUTH_USER"], "admin");
}

#[tokio::test]
async fn php_builtin_server_folds_only_dash_dot_and_underscore() {
    let php = LegacyServer::php();
    assert_eq!(php.kind(), LegacyKind::Php);
    let report = ask(&php, "/public/x", SPOOF).await;
    assert_eq!(report.request_uri, "/public/x");
    // PHP's built-in server turns only `-` into `_` (and $_SERVER key mangling turns `.` and
    // ` ` into `_`): `X~Auth~User` arrives as HTTP_X~AUTH~USER, so HTTP_X_AUTH_USER holds the
    // real "alice" and no PHP app reads the spoof as X-Auth-User.
    assert_eq!(report.identity_values("X-Auth-User"), ["alice"]);
    assert_eq!(report.json["env"]["HTTP_X~AUTH~USER"], "admin");
    // Names that do collide there (`_` and `.` spellings) leave one value, the one sent last;
    // repeats of one name (any case) are joined with ", " instead.
    let report = ask(
        &php,
        "/public/x",
        &[("X_Auth_User", "admin"), ("X-Auth-User", "alice")],
    )
    .await;
    assert_eq!(report.identity_values("X-Auth-User"), ["alice"]);
    let report = ask(
        &php,
        "/public/x",
        &[("X-Auth-User", "alice"), ("X.Auth.User", "admin")],
    )
    .await;
    assert_eq!(report.identity_values("X-Auth-User"), ["admin"]);
}

/// Every byte RFC 9110 allows in a header name besides letters and digits.
const TCHAR_SEPARATORS: &[u8] = b"!#$%&'*+-.^_`|~";

/// The proxy in front of `server`: `/login` (accepts logins), `/public` and `/legacy` public,
/// `/opt` optional, `/legacy/admin` and everything else required.
async fn proxy_in_front(server: &LegacyServer) -> Running {
    Harness::new()
        .backend(server.addr)
        .route(Route::public("/legacy"))
        .route(Route::required("/legacy/admin"))
        .start()
        .await
}

/// Whether the proxy's configuration above requires a session for a path as the app mapped it.
fn requires_session(mapped: &str) -> bool {
    under(mapped, "/legacy/admin")
        || !["/login", "/public", "/opt", "/legacy"]
            .iter()
            .any(|p| under(mapped, p))
}

/// Whether the app maps `mapped` under a public route (where no identity is sent).
fn public_route(mapped: &str) -> bool {
    under(mapped, "/public") || (under(mapped, "/legacy") && !under(mapped, "/legacy/admin"))
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Signs alice in through the proxy (the app answers X-Test-Login with X-Sessiongate-Login).
async fn login(proxy: &Proxy) -> String {
    let login = r#"{"sub":"alice","email":"alice@example.com","roles":["user"]}"#;
    let (status, text) =
        raw_request(proxy.port, &raw_get("/login", &[("X-Test-Login", login)])).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let value = value.trim();
            (name.eq_ignore_ascii_case("set-cookie") && value.starts_with(COOKIE)).then(|| {
                value[COOKIE.len() + 1..]
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .filter(|c| !c.is_empty())
        .expect("the login sets the session cookie")
}

/// Sends `path` through the proxy with `headers` (and the session cookie, if any).
async fn through(
    proxy: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
    cookie: Option<&str>,
) -> (u16, String) {
    let cookie_header = cookie.map(|c| format!("{COOKIE}={c}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(c) = &cookie_header {
        all.push(("Cookie", c));
    }
    raw_request(proxy.port, &raw_get(path, &all)).await
}

/// The identity the app saw is exactly alice's (or none): no forged value anywhere, the mapped
/// headers as the proxy rendered them, one assertion that verifies.
fn assert_identity(report: &LegacyReport, alice: bool, what: &str) {
    for (name, value) in &report.headers {
        assert!(
            !value.contains("forged"),
            "{}: {what}: the app read a forged {name}: {value}",
            report.server
        );
    }
    let user = report.identity_values("X-Auth-User");
    let assertion = report.identity_values("X-Sessiongate-Assertion");
    if alice {
        assert_eq!(user, ["alice"], "{}: {what}", report.server);
        assert_eq!(
            report.identity_values("X-Auth-Roles"),
            ["user"],
            "{}: {what}",
            report.server
        );
        assert_eq!(assertion.len(), 1, "{}: {what}", report.server);
        assert_eq!(verify(&assertion[0])["sub"], "alice");
    } else {
        assert!(user.is_empty(), "{}: {what}: {user:?}", report.server);
        assert!(assertion.is_empty(), "{}: {what}", report.server);
    }
}

/// Every spelling of the identity headers over the tchar set, on public, optional and
/// required routes, with and without a session.
async fn no_spelling_of_a_protected_name_reaches(server: LegacyServer) {
    let h = proxy_in_front(&server).await;
    let proxy = &h.proxy;
    let cookie = login(proxy).await;
    for &sep in TCHAR_SEPARATORS {
        let sep = sep as char;
        let names = [
            format!("X{sep}Auth{sep}User"),
            format!("x{sep}AUTH{sep}user"),
            format!("X-Auth{sep}User"),
            format!("X{sep}Auth{sep}Roles"),
            format!("X{sep}Sessiongate{sep}Assertion"),
            format!("X{sep}Sessiongate{sep}Login"),
        ];
        // The forged copies first: folding gateways hand the first one to most runtimes.
        let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "forged")).collect();
        headers.push(("Accept", "application/json"));
        for (path, session) in [
            ("/public/x", None),
            ("/legacy/page", None),
            ("/opt/x", None),
            ("/opt/x", Some(cookie.as_str())),
            ("/page", Some(&cookie)),
            ("/legacy/admin/x", Some(&cookie)),
        ] {
            let what = format!(
                "separator {sep:?} on {path}, session: {}",
                session.is_some()
            );
            let (status, text) = through(proxy, path, &headers, session).await;
            assert_eq!(status, 200, "{what}: {text}");
            let report = LegacyReport::from_response(&text).expect("the app's report");
            assert_identity(&report, session.is_some(), &what);
        }
        // Without a session a required route never reaches the app.
        let (status, _) = through(proxy, "/legacy/admin/x", &headers, None).await;
        assert_eq!(status, 401, "separator {sep:?}");
    }
}

#[tokio::test]
async fn tomcat_behind_the_proxy_never_reads_a_forged_identity_header() {
    no_spelling_of_a_protected_name_reaches(LegacyServer::tomcat()).await;
}

#[tokio::test]
async fn lighttpd_cgi_behind_the_proxy_never_reads_a_forged_identity_header() {
    no_spelling_of_a_protected_name_reaches(LegacyServer::lighttpd_cgi()).await;
}

#[tokio::test]
async fn php_behind_the_proxy_never_reads_a_forged_identity_header() {
    no_spelling_of_a_protected_name_reaches(LegacyServer::php()).await;
}

/// Path forms that servlet containers, CGI gateways or Windows read differently from a plain
/// prefix match; `/admin/...` and `/legacy/admin/...` require a session.
const PATH_FORMS: &[&str] = &[
    "/public/..;/admin/secret",
    "/public/%2e%2e;/admin/secret",
    "/public/..;jsessionid=1/admin/secret",
    "/public/.;/..;/admin/secret",
    "/public/.%2e;x/admin/secret",
    "/legacy/admin;jsessionid=x/secret",
    "/legacy/admin;jsessionid=x",
    "/legacy;v=1/admin/secret",
    "/legacy/;x/admin/secret",
    "/public;x/../admin/secret",
    "/public/%2e%2e/admin/secret",
    "/public%2f..%2fadmin/secret",
    "/public/..%2fadmin/secret",
    "/public//..//admin/secret",
    "/public/x%3b/../../admin/secret",
    "/admin./secret",
    "/admin%2e/secret",
    "/admin%20/secret",
    "/admin/secret.jsp::$DATA",
    "/ADMINI~1/secret",
    "/public/%c0%ae%c0%ae/admin/secret",
    "/public/%e0%80%ae%e0%80%ae/admin/secret",
    "/public/%ef%bc%8e%ef%bc%8e/admin/secret",
    "/public/%ef%bc%8e%ef%bc%8e%ef%bc%8fadmin/secret",
    "/public\\..\\admin/secret",
    "/public/%5c..%5cadmin/secret",
    "/public/%252e%252e/admin/secret",
    "/public/%252e%252e%252fadmin/secret",
    "/legacy/admin%3f/secret",
    "/legacy/admin%3fx=1",
];

/// Every path form: without a session the app is reached only for a path it maps under a
/// public route; with one, wherever the app maps it, it sees alice.
async fn no_path_form_crosses_a_route(server: LegacyServer) {
    let h = proxy_in_front(&server).await;
    let proxy = &h.proxy;
    let cookie = login(proxy).await;
    let accept = [("Accept", "application/json")];
    for path in PATH_FORMS {
        for session in [None, Some(cookie.as_str())] {
            let (status, text) = through(proxy, path, &accept, session).await;
            let Ok(report) = LegacyReport::from_response(&text) else {
                // The proxy answered itself: refused (400), or no session for a required route.
                assert!(
                    [400, 401].contains(&status),
                    "{}: {path}: {status} {text}",
                    server.name()
                );
                continue;
            };
            let mapped = report.mapped_path.clone().unwrap_or_default();
            let what = format!("{path} mapped to {mapped:?}");
            if session.is_none() {
                assert!(
                    !requires_session(&mapped),
                    "{}: {what} reached the app without a session",
                    server.name()
                );
            }
            if session.is_some() && public_route(&mapped) {
                // A form the app reads under a public route that the proxy read under a
                // required one carries alice's identity: more than needed, never another's.
                let alice = !report.identity_values("X-Auth-User").is_empty();
                assert_identity(&report, alice, &what);
            } else {
                assert_identity(&report, session.is_some(), &what);
            }
        }
    }
    // The everyday servlet forms still work: a jsessionid on the last segment.
    let (status, text) = through(proxy, "/legacy/page;jsessionid=ABC", &accept, None).await;
    assert_eq!(status, 200, "{text}");
    let (status, _) = through(proxy, "/legacy/admin/page;jsessionid=ABC", &accept, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn tomcat_behind_the_proxy_serves_no_path_form_past_its_route() {
    no_path_form_crosses_a_route(LegacyServer::tomcat()).await;
}

#[tokio::test]
async fn lighttpd_behind_the_proxy_serves_no_path_form_past_its_route() {
    no_path_form_crosses_a_route(LegacyServer::lighttpd_cgi()).await;
}

#[tokio::test]
async fn php_behind_the_proxy_serves_no_path_form_past_its_route() {
    no_path_form_crosses_a_route(LegacyServer::php()).await;
}
