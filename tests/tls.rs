//! HTTPS listeners with real clients (reqwest over rustls, curl, openssl s_client, nghttp):
//! HTTP/1.1 and HTTP/2 through one pipeline, certificates chosen by SNI, an unknown name and
//! an expired certificate refused, a certificate swap by SIGHUP with a request in flight, the
//! plain listener's redirect, HSTS, TLS 1.2 as the floor, and HTTP/2's header limits.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::{Issued, Pki, Validity};
use common::*;
use reqwest::{StatusCode, Version};

/// A proxy with an HTTPS listener serving `certificates` (and the usual plain listener).
async fn https_proxy(certificates: &[&Issued], adjust: impl FnOnce(Harness) -> Harness) -> Running {
    let h = Harness::new().tls(|mut t| {
        for c in certificates {
            t = t.certificate(c);
        }
        t
    });
    adjust(h).start().await
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs")
}

/// `openssl s_client` against the HTTPS listener: its whole output (the handshake's summary).
fn s_client(port: u16, extra: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_over_tls_carry_sessions_like_plain_http() {
    let pki = Pki::new("test CA");
    let cert = pki.issue("site", &["app.test"], Validity::Current);
    let h = https_proxy(&[&cert], |h| h).await;
    let port = h.proxy.tls_port;
    for http2 in [false, true] {
        let client = https_client(&pki.ca(), &[("app.test", port)], http2);
        let url = |path: &str| format!("https://app.test:{port}{path}");
        let login = client
            .get(url("/login"))
            .header(
                "x-echo-set-x-sessiongate-login",
                r#"{"sub":"alice","email":"alice@example.com","roles":["user"]}"#,
            )
            .send()
            .await
            .unwrap();
        let expected = if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        assert_eq!(login.version(), expected);
        assert_eq!(login.status(), StatusCode::OK);
        let set_cookie = set_cookies(login.headers()).join("\n");
        assert!(set_cookie.contains("; Secure"), "{set_cookie}");
        let cookie = set_cookie_value(login.headers(), COOKIE).unwrap();

        // The cookie split over two fields (as HTTP/2 clients send it), a spoofed identity.
        let reply = client
            .get(url("/page?q=1"))
            .header("cookie", format!("theme=dark; {COOKIE}={cookie}"))
            .header("cookie", "lang=en")
            .header("x-auth-user", "mallory")
            .header("x_auth_user", "mallory")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.version(), expected);
        assert_eq!(reply.status(), StatusCode::OK);
        let echo: Echo = reply.json().await.unwrap();
        assert_eq!(echo.all("x-auth-user"), vec!["alice"]);
        assert!(echo.get("x_auth_user").is_none());
        assert_eq!(echo.get("x-forwarded-proto"), Some("https"));
        assert_eq!(echo.get("host"), Some(&*format!("app.test:{port}")));
        assert_eq!(
            echo.all("cookie"),
            vec!["theme=dark; lang=en"],
            "one Cookie field, without the session cookie"
        );
        // Without the session cookie the split fields are still joined into one.
        let reply = client
            .get(url("/public/x"))
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .send()
            .await
            .unwrap();
        let echo: Echo = reply.json().await.unwrap();
        assert_eq!(echo.all("cookie"), vec!["a=1; b=2"]);
        // The access log names the protocol and scheme.
        let id = echo.get("x-request-id").unwrap().to_string();
        let protocol = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        let line = eventually(Duration::from_secs(5), "the access line", || {
            h.proxy
                .log_lines_with(&id)
                .into_iter()
                .find(|l| l.contains("sessiongate::access"))
        })
        .await;
        assert!(
            line.contains(&format!("protocol=\"{protocol}\" scheme=\"https\"")),
            "{line}"
        );
        assert!(line.contains("status=200"), "{line}");
    }

    // curl, over HTTP/2 and over HTTP/1.1.
    let ca = pki.ca().display().to_string();
    let resolve = format!("app.test:{port}:127.0.0.1");
    let target = format!("https://app.test:{port}/public/x");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl(&[
            flag,
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "-H",
            "X-Sessiongate-Assertion: forged",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &target,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("200 {version}"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // h2c stays off: HTTP/2 with prior knowledge on the plain listener gets no answer.
    let out = curl(&[
        "--http2-prior-knowledge",
        &format!("http://127.0.0.1:{}/public/x", h.proxy.port),
    ]);
    assert!(!out.status.success(), "h2c was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_chosen_by_sni_and_unknown_names_are_refused() {
    let pki = Pki::new("test CA");
    let a = pki.issue("a", &["a.test"], Validity::Current);
    let b = pki.issue("b", &["b.test", "*.b.test"], Validity::Current);
    let h = https_proxy(&[&a, &b], |h| h).await;
    let port = h.proxy.tls_port;
    let client = https_client(
        &pki.ca(),
        &[
            ("a.test", port),
            ("b.test", port),
            ("www.b.test", port),
            ("c.test", port),
        ],
        true,
    );
    // Each name verifies only against its own certificate: the right one was chosen.
    for name in ["a.test", "b.test", "www.b.test"] {
        let reply = client
            .get(format!("https://{name}:{port}/public/x"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(reply.status(), StatusCode::OK, "{name}");
    }
    // A name no certificate covers: no handshake, and no other site's certificate shown.
    let err = client
        .get(format!("https://c.test:{port}/public/x"))
        .send()
        .await
        .expect_err("an unknown name is refused");
    assert!(err.is_connect(), "{err:?}");
    let out = s_client(port, &["-servername", "c.test"]);
    assert!(
        !out.contains("CN = a.test") && !out.contains("CN = b.test"),
        "{out}"
    );
    assert!(out.contains("alert"), "{out}");
    // No name at all (a client connecting by address): the first certificate.
    let out = s_client(port, &["-noservername"]);
    assert!(out.contains("CN = a.test"), "{out}");
    // What the handshake offers: TLS 1.2 at least, ALPN h2 then http/1.1.
    // (The client's own floor lowered, so that it does offer TLS 1.1.)
    let old = s_client(
        port,
        &[
            "-servername",
            "a.test",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
    );
    assert!(old.contains("Cipher is (NONE)"), "{old}");
    assert!(old.contains("alert"), "{old}");
    let tls12 = s_client(port, &["-servername", "a.test", "-tls1_2"]);
    assert!(tls12.contains("TLSv1.2"), "{tls12}");
    let alpn = s_client(port, &["-servername", "a.test", "-alpn", "h2,http/1.1"]);
    assert!(alpn.contains("ALPN protocol: h2"), "{alpn}");
    assert_eq!(h.upstream().hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_at_start_and_at_reload() {
    let pki = Pki::new("test CA");
    let expired = pki.issue("old", &["app.test"], Validity::Expired);
    let good = pki.issue("good", &["app.test"], Validity::Current);
    let h = https_proxy(&[&good], |h| h).await;
    h.wait_for_reload_handler().await;

    // The same configuration with the expired certificate does not pass --check.
    let text = std::fs::read_to_string(h.proxy.config_path())
        .unwrap()
        .replace(
            &*good.chain.display().to_string(),
            &expired.chain.display().to_string(),
        )
        .replace(
            &*good.key.display().to_string(),
            &expired.key.display().to_string(),
        );
    let path = h.proxy.dir.path().join("expired.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sessiongate"))
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls.certificate[0]") && stderr.contains("the certificate expired"),
        "{stderr}"
    );

    // A reload to it is refused, and the good certificate keeps being served.
    std::fs::write(h.proxy.config_path(), &text).unwrap();
    h.reload(false).await;
    let client = https_client(&pki.ca(), &[("app.test", h.proxy.tls_port)], true);
    let reply = client
        .get(format!("https://app.test:{}/public/x", h.proxy.tls_port))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("sessiongate_tls_certificate_expiry_timestamp_seconds{name=\"app.test\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_without_dropping_a_request_in_flight() {
    let old_ca = Pki::new("old CA");
    let new_ca = Pki::new("new CA");
    let cert = old_ca.issue("site", &["app.test"], Validity::Current);
    let h = https_proxy(&[&cert], |h| h).await;
    h.wait_for_reload_handler().await;
    let port = h.proxy.tls_port;
    let url = format!("https://app.test:{port}/public/slow");
    let old_client = https_client(&old_ca.ca(), &[("app.test", port)], true);
    let new_client = https_client(&new_ca.ca(), &[("app.test", port)], true);
    assert!(new_client.get(&url).send().await.is_err());

    // A request the app takes two seconds to answer is in flight over the old certificate...
    let in_flight = tokio::spawn({
        let client = old_client.clone();
        let url = url.clone();
        async move {
            client
                .get(url)
                .header("x-echo-delay-ms", "2000")
                .send()
                .await
        }
    });
    eventually(
        Duration::from_secs(5),
        "the request reached the app",
        || h.upstream().hits() >= 1,
    )
    .await;
    // ...when the files are replaced by a certificate from another CA and SIGHUP is sent.
    let renewed = new_ca.issue("renewed", &["app.test"], Validity::Current);
    std::fs::copy(&renewed.chain, &cert.chain).unwrap();
    std::fs::copy(&renewed.key, &cert.key).unwrap();
    h.reload(true).await;

    let reply = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(reply.status(), StatusCode::OK);
    // New handshakes get the new certificate.
    let reply = new_client
        .get(&url)
        .send()
        .await
        .expect("the new CA verifies");
    assert_eq!(reply.status(), StatusCode::OK);
    // A client without a session to resume (which would skip the certificate) is shown the
    // new certificate, which the old CA does not verify.
    let fresh_old = https_client(&old_ca.ca(), &[("app.test", port)], true);
    assert!(fresh_old.get(&url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_only_redirects_and_hsts_is_sent_over_https() {
    let pki = Pki::new("test CA");
    let cert = pki.issue("site", &["app.test"], Validity::Current);
    let h = https_proxy(&[&cert], |h| {
        h.tls(|t| t.redirect_plain(true).hsts("365d", true))
    })
    .await;
    let plain = h
        .raw("GET /opt/x?y=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(plain.status, 308);
    let location = plain.header("location").expect("a Location");
    assert_eq!(
        location,
        format!("https://app.test:{}/opt/x?y=1", h.proxy.tls_port)
    );
    assert!(plain.header("strict-transport-security").is_none());
    // Nothing on the plain listener reaches the app, not even a spoofed login.
    let plain = h
        .raw("POST /login HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(plain.status, 308);
    assert_eq!(h.upstream().hits(), 0);

    let client = https_client(&pki.ca(), &[("app.test", h.proxy.tls_port)], true);
    let reply = client.get(location).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(
        reply.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(h.upstream().hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_held_to_the_header_limits() {
    let pki = Pki::new("test CA");
    let cert = pki.issue("site", &["app.test"], Validity::Current);
    let h = https_proxy(&[&cert], |h| {
        h.server(|s| s.max_headers(20).max_header_bytes(4096))
    })
    .await;
    let client = https_client(&pki.ca(), &[("app.test", h.proxy.tls_port)], true);
    let url = format!("https://app.test:{}/public/x", h.proxy.tls_port);
    let mut many = client.get(&url);
    for i in 0..30 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let reply = many.send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // A header list over the byte limit is refused by the HTTP/2 codec before the proxy.
    let big = client
        .get(&url)
        .header("x-big", "v".repeat(8000))
        .send()
        .await;
    match big {
        Ok(reply) => assert_eq!(reply.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    assert_eq!(h.upstream().hits(), 0);
    let fine = client.get(&url).header("x-fine", "v").send().await.unwrap();
    assert_eq!(fine.status(), StatusCode::OK);
    assert_eq!(fine.version(), Version::HTTP_2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_over_tls_is_cut_off_at_the_header_deadline() {
    let pki = Pki::new("test CA");
    let cert = pki.issue("site", &["app.test"], Validity::Current);
    let h = https_proxy(&[&cert], |h| h.server(|s| s.header_timeout("1s"))).await;
    // An HTTP/1.1 client over TLS that sends half a head and then nothing.
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", h.proxy.tls_port),
            "-servername",
            "app.test",
            "-alpn",
            "http/1.1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::{Read, Write};
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: app.test\r\n")
        .unwrap();
    stdin.flush().unwrap();
    // Keep stdin open: the proxy, not the client, ends the connection.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || reader.join().unwrap()),
    )
    .await
    .expect("the proxy closes the connection")
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    // Meanwhile, and after, other clients are served.
    let client = https_client(&pki.ca(), &[("app.test", h.proxy.tls_port)], true);
    let reply = client
        .get(format!("https://app.test:{}/public/x", h.proxy.tls_port))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(h.upstream().hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nghttp_sees_the_same_boundary_as_http1_clients() {
    let pki = Pki::new("test CA");
    let cert = pki.issue("site", &["localhost"], Validity::Current);
    let h = https_proxy(&[&cert], |h| h).await;
    let cookie = h.login("alice").await;
    let out = Command::new("nghttp")
        .args([
            "--no-verify-peer",
            "-H",
            &format!("cookie: {COOKIE}={cookie}"),
            "-H",
            "x-auth-user: mallory",
            "-H",
            "x-sessiongate-assertion: forged",
            &format!("https://localhost:{}/page", h.proxy.tls_port),
        ])
        .output()
        .expect("nghttp is installed (scripts/deps.sh http installs nghttp2-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let echo: Echo = serde_json::from_slice(&out.stdout).expect("the echo's JSON");
    assert_eq!(echo.all("x-auth-user"), vec!["alice"]);
    let assertion = echo.get("x-sessiongate-assertion").unwrap();
    assert_ne!(assertion, "forged");
    assert_eq!(verify(assertion)["sub"], "alice");
}

/// The proxy's own answers — refusals, the login redirect, and the error pages of a dead app
/// — carry HSTS over HTTPS like the app's responses, and `nosniff` on both listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_responses_carry_hsts_and_nosniff() {
    let pki = Pki::new("test CA");
    let cert = pki.issue("site", &["app.test"], Validity::Current);
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let h = https_proxy(&[&cert], |h| {
        h.backend(dead)
            .upstream(|u| u.health_check("none"))
            .tls(|t| t.hsts("1d", false))
    })
    .await;
    let client = https_client(&pki.ca(), &[("app.test", h.proxy.tls_port)], false);
    let base = format!("https://app.test:{}", h.proxy.tls_port);
    for (method, path, accept, status) in [
        ("GET", "/private", "application/json", 401),
        ("TRACE", "/public/x", "*/*", 405),
        ("GET", "/public/x", "*/*", 502),
        ("HEAD", "/public/x", "*/*", 502),
    ] {
        let reply = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), status, "{method} {path}");
        let headers = reply.headers();
        assert_eq!(
            headers["strict-transport-security"], "max-age=86400",
            "{method} {path}"
        );
        assert_eq!(
            headers["x-content-type-options"], "nosniff",
            "{method} {path}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{method} {path}");
        assert!(
            headers.get("server").is_none(),
            "{method} {path}: {headers:?}"
        );
    }
    // Over plain HTTP: nosniff, and no HSTS (browsers ignore it there).
    let plain = h
        .raw("GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(plain.status, 502);
    assert_eq!(
        plain.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(plain.header("strict-transport-security").is_none());
}
