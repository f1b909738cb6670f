//! Operating sessiongate, end to end with the real binary: the Prometheus metrics after real
//! traffic, the admin API and its token, hot reload on SIGHUP, the JSON access log and request
//! ids, and the zero-downtime upgrade.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "operator-token-0123456789abcdef";

/// How long any wait in these tests may last.
const DEADLINE: Duration = Duration::from_secs(10);

async fn scrape(fx: &Running) -> String {
    let resp = fx
        .http
        .get(fx.proxy.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    resp.text().await.unwrap()
}

/// Every sample of the exposition: "name{labels}" → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &HashMap<String, f64>, key: &str) -> f64 {
    all.get(key).copied().unwrap_or(0.0)
}

/// promtool from PATH, or where `scripts/deps.sh promtool` unpacks it.
fn promtool() -> Option<std::path::PathBuf> {
    let local =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/usr/bin/promtool");
    if local.exists() {
        return Some(local);
    }
    std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "promtool".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_traffic_and_pass_promtool() {
    let fx = Harness::new().redis().start().await;
    // The cache serves only once the invalidation connection tracks (a loaded machine may
    // take a moment after the listeners are up).
    eventually(DEADLINE, "the session cache follows invalidations", || {
        !fx.proxy
            .log_lines_with("session cache follows invalidations from Redis")
            .is_empty()
    })
    .await;
    let before = samples(&scrape(&fx).await);

    let cookie = fx.login("alice").await;
    // The first read after login is served from the cache (login wrote it there).
    assert_eq!(fx.request("/page", Some(&cookie), &[]).await.status, 200);
    // A spoofed identity header is stripped and counted.
    fx.request("/page", Some(&cookie), &[("x-auth-user", "mallory")])
        .await;
    // Unknown and malformed cookies.
    let unknown = signed(&sessiongate::session::SessionId::generate().unwrap());
    assert_eq!(fx.request("/page", Some(&unknown), &[]).await.status, 401);
    assert_eq!(fx.request("/page", Some("%%bad"), &[]).await.status, 401);
    // A malformed control header is ignored and counted.
    fx.request(
        "/page",
        Some(&cookie),
        &[("x-echo-set-x-sessiongate-update", "not json")],
    )
    .await;
    // Rotation: a login carrying the old session ends it.
    let rotated = fx
        .login_with(r#"{"sub":"alice"}"#, Some(&cookie))
        .await
        .session_cookie()
        .unwrap();
    assert_eq!(fx.logout("/page", &rotated, "current").await.status, 200);

    let text = scrape(&fx).await;
    let after = samples(&text);
    let delta = |key: &str| sample(&after, key) - sample(&before, key);
    assert_eq!(delta("sessiongate_sessions_created_total"), 2.0);
    assert_eq!(delta("sessiongate_sessions_rotated_total"), 1.0);
    assert_eq!(
        delta("sessiongate_sessions_destroyed_total{reason=\"rotated\"}"),
        1.0
    );
    assert_eq!(
        delta("sessiongate_sessions_destroyed_total{reason=\"logout\"}"),
        1.0
    );
    assert!(delta("sessiongate_session_lookups_total{result=\"cache_hit\"}") >= 2.0);
    assert_eq!(
        delta("sessiongate_session_lookups_total{result=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        delta("sessiongate_session_lookups_total{result=\"invalid\"}"),
        1.0
    );
    assert_eq!(delta("sessiongate_spoofed_headers_stripped_total"), 1.0);
    assert_eq!(delta("sessiongate_control_headers_rejected_total"), 1.0);
    assert!(delta("sessiongate_requests_total{route=\"/\",status_class=\"2xx\"}") >= 4.0);
    assert_eq!(
        delta("sessiongate_requests_total{route=\"/\",status_class=\"4xx\"}"),
        2.0
    );
    assert!(delta("sessiongate_requests_total{route=\"/login\",status_class=\"2xx\"}") >= 2.0);
    assert!(delta("sessiongate_request_duration_seconds_count{route=\"/\"}") >= 6.0);
    assert!(delta("sessiongate_store_command_duration_seconds_count{operation=\"create\"}") >= 2.0);
    assert!(text.contains("sessiongate_store_circuit_state{state=\"closed\"} 1"));
    assert!(text.contains("sessiongate_cache_entries "));
    assert!(text.contains("sessiongate_cache_bytes "));
    assert!(text.contains("sessiongate_build_info{version=\""));
    assert!(text.contains(&format!(
        "sessiongate_backend_healthy{{backend=\"{}\",upstream=\"app\"}} 1",
        fx.upstream().addr
    )));
    assert!(text.contains("sessiongate_config_reloads_total{result=\"failure\"} 0"));
    // deploy/metrics.txt (which the dashboard and the alerts are checked against) lists
    // exactly the families exported.
    let listing = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/metrics.txt"),
    )
    .unwrap();
    let families = |optional: bool| -> std::collections::BTreeSet<String> {
        listing
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter(|l| optional || !l.contains("# only with"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    // This configuration has no [tls]: every family but those is exported.
    assert_eq!(
        exported,
        families(false),
        "deploy/metrics.txt and /metrics disagree"
    );
    assert!(families(true).is_superset(&exported));
    // No label value is a session id, a cookie or a user.
    assert!(!text.contains(&cookie) && !text.contains("alice"));

    match promtool() {
        Some(promtool) => {
            let mut child = std::process::Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("promtool runs");
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => panic!("promtool is missing: run scripts/deps.sh promtool (scripts/test.sh does)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_sessions_are_sampled_in_the_background() {
    let fx = Harness::new().start().await;
    for user in ["a", "b", "c"] {
        fx.login(user).await;
    }
    // The memory store is sampled every 15 s; the first sample is taken at start, so poll.
    eventually_async(
        Duration::from_secs(20),
        "sessions_active never reached 3",
        || async { sample(&samples(&scrape(&fx).await), "sessiongate_sessions_active") == 3.0 },
    )
    .await;
}

async fn admin(
    fx: &Running,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = fx.http.request(method, fx.proxy.admin_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin answers");
    let status = resp.status();
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_token_and_revokes_sessions() {
    // The admin API takes `TOKEN`, read from a file beside the configuration.
    let fx = Harness::new()
        .redis()
        .server(|s| s.admin_token(TOKEN))
        .start()
        .await;
    let first = fx.login("alice").await;
    let second = fx.login("alice").await;
    let bob = fx.login("bob").await;
    let list = "/admin/users/alice/sessions";

    for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
        let (status, body) = admin(&fx, reqwest::Method::GET, list, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["error"], "unauthorized");
    }

    let (status, body) = admin(&fx, reqwest::Method::GET, list, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let hashes: Vec<&str> = sessions
        .iter()
        .map(|s| s["id_hash"].as_str().unwrap())
        .collect();
    for s in sessions {
        assert!(s["created_at"].as_u64().unwrap() <= s["last_seen"].as_u64().unwrap());
        assert!(s["idle_deadline"].as_u64().unwrap() <= s["absolute_deadline"].as_u64().unwrap());
    }
    // Hashed ids only: neither cookie appears.
    assert!(!body.to_string().contains(&first) && !body.to_string().contains(&second));

    // Revoke one: its cookie is refused on the next request, the other still works.
    let first_hash = session_id(&first).store_key();
    assert!(hashes.contains(&first_hash.as_str()));
    let path = format!("/admin/sessions/{}", first_hash.as_str());
    let (status, body) = admin(&fx, reqwest::Method::DELETE, &path, Some(TOKEN)).await;
    assert_eq!(
        (status, body["revoked"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    assert_eq!(fx.request("/page", Some(&first), &[]).await.status, 401);
    assert_eq!(fx.request("/page", Some(&second), &[]).await.status, 200);
    let (status, _) = admin(&fx, reqwest::Method::DELETE, &path, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin(
        &fx,
        reqwest::Method::DELETE,
        "/admin/sessions/nope",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Revoke every session of alice; bob is untouched.
    let (status, body) = admin(&fx, reqwest::Method::DELETE, list, Some(TOKEN)).await;
    assert_eq!(
        (status, body["revoked"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    assert_eq!(fx.request("/page", Some(&second), &[]).await.status, 401);
    assert_eq!(fx.request("/page", Some(&bob), &[]).await.status, 200);
    let (_, body) = admin(&fx, reqwest::Method::GET, list, Some(TOKEN)).await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 0);

    let all = samples(&scrape(&fx).await);
    assert_eq!(
        sample(
            &all,
            "sessiongate_sessions_destroyed_total{reason=\"admin\"}"
        ),
        2.0
    );
    // The admin API is never on the public listener.
    let public = fx
        .http
        .get(fx.proxy.url(list))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_ne!(public.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_is_off() {
    let fx = Harness::new().start().await;
    let (status, body) = admin(
        &fx,
        reqwest::Method::GET,
        "/admin/users/alice/sessions",
        Some("anything"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "admin_api_disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_valid_config_and_refuses_a_broken_one() {
    let upstream_b = EchoUpstream::start("b").await;
    let fx = Harness::new().start().await;
    fx.wait_for_reload_handler().await;
    let cookie = fx.login("alice").await;
    let original = std::fs::read_to_string(fx.proxy.config_path()).unwrap();
    assert_eq!(fx.request("/docs", None, &[]).await.status, 401);

    // A slow request in flight when the configuration changes finishes normally.
    let hits = fx.upstream().hits();
    let slow = fx.request("/page", Some(&cookie), &[("x-echo-delay-ms", "700")]);

    // New: /docs is public and goes to pool "b"; the user header is renamed; threads changed.
    let changed = original
        .replace("\"X-Auth-User\" = \"sub\"", "\"X-Auth-Subject\" = \"sub\"")
        .replace("threads = 2", "threads = 3")
        + &format!(
            "\n[[upstream]]\nname = \"b\"\nbackends = [\"{}\"]\n\n[[route]]\npath_prefix = \"/docs\"\nupstream = \"b\"\nauth = \"public\"\n",
            upstream_b.addr
        );
    let reloading = async {
        // In flight: the app has the request (and holds it for 700 ms).
        eventually(DEADLINE, "the slow request reaches the app", || {
            fx.upstream().hits() > hits
        })
        .await;
        std::fs::write(fx.proxy.config_path(), &changed).unwrap();
        fx.reload(true).await;
    };
    let (slow, ()) = tokio::join!(slow, reloading);
    assert_eq!(slow.status, 200, "the in-flight request was dropped");

    let docs = fx.request("/docs", None, &[]).await;
    assert_eq!(docs.status, 200);
    assert_eq!(docs.echo().get("x-request-id").map(str::len), Some(36));
    let page = fx.request("/page", Some(&cookie), &[]).await;
    assert_eq!(page.status, 200, "sessions survive a reload");
    assert_eq!(page.echo().get("x-auth-subject"), Some("alice"));
    assert_eq!(page.echo().get("x-auth-user"), None);
    // A client cannot spoof the new header either.
    let spoofed = fx
        .request("/docs", None, &[("x-auth-subject", "mallory")])
        .await;
    assert_eq!(spoofed.echo().get("x-auth-subject"), None);
    assert!(!fx
        .proxy
        .log_lines_with("only take effect after a restart")
        .iter()
        .filter(|l| l.contains("server.threads"))
        .collect::<Vec<_>>()
        .is_empty());

    // A broken file is refused: the running configuration keeps serving, the counter moves.
    std::fs::write(
        fx.proxy.config_path(),
        changed.replace("[[route]]", "[[rout]]"),
    )
    .unwrap();
    fx.reload(false).await;
    assert_eq!(fx.request("/docs", None, &[]).await.status, 200);
    assert_eq!(fx.request("/page", Some(&cookie), &[]).await.status, 200);
    let all = samples(&scrape(&fx).await);
    assert_eq!(
        sample(&all, "sessiongate_config_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        sample(&all, "sessiongate_config_reloads_total{result=\"failure\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_is_json_with_a_request_id_and_no_secrets() {
    let fx = Harness::new()
        .server(|s| s.log_sub(true))
        .log_json()
        .start()
        .await;
    let cookie = fx.login("alice").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = fx
        .request(
            "/page",
            Some(&cookie),
            &[
                ("traceparent", traceparent),
                ("x-request-id", "client-chosen"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().get("traceparent"), Some(traceparent));
    let request_id = reply.echo().get("x-request-id").unwrap().to_string();
    let parsed = uuid::Uuid::parse_str(&request_id).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 4);

    // The access line of that request, as JSON.
    let what = format!("no access line for {request_id}");
    let line = eventually(Duration::from_secs(5), &what, || {
        fx.proxy
            .log_lines_with(&request_id)
            .into_iter()
            .find(|l| l.contains("sessiongate::access"))
    })
    .await;
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    let fields = &entry["fields"];
    assert_eq!(entry["target"], "sessiongate::access");
    assert_eq!(fields["request_id"], request_id);
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["route"], "/");
    // The memory store has no cache in front of it.
    assert_eq!(fields["lookup"], "store_hit");
    assert_eq!(fields["sub"], "alice");
    let tag = fields["session"].as_str().unwrap();
    let hash = session_id(&cookie).store_key();
    assert_eq!(tag.len(), 12);
    assert!(hash.as_str().starts_with(tag));
    assert!(fields["duration_ms"].as_f64().unwrap() > 0.0);
    // Every line is JSON, and none holds the cookie or the full hashed id.
    let logs = fx.proxy.logs();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    assert!(!logs.contains(&cookie), "the cookie was logged");
    assert!(
        !logs.contains(hash.as_str()),
        "the full hashed id was logged"
    );
    assert!(!logs.contains(&format!("{COOKIE}=")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_still_buffered_at_shutdown_are_written() {
    let mut fx = Harness::new().start().await;
    let cookie = fx.login("alice").await;
    // Lines wait up to 100 ms in the buffer; SIGTERM follows the last reply at once.
    let mut ids = Vec::new();
    for _ in 0..20 {
        let reply = fx.request("/page", Some(&cookie), &[]).await;
        assert_eq!(reply.status, 200);
        ids.push(reply.echo().get("x-request-id").unwrap().to_string());
    }
    let status = tokio::task::block_in_place(|| fx.proxy.terminate());
    assert!(status.success(), "{status}");
    let logs = fx.proxy.logs();
    for id in &ids {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(id.as_str())).collect();
        assert_eq!(lines.len(), 1, "access line of {id}:\n{logs}");
        assert!(lines[0].contains("INFO sessiongate::access: request"));
        assert!(lines[0].contains(" status=200 "), "{}", lines[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_is_not_logged_unless_configured() {
    let fx = Harness::new().start().await;
    let cookie = fx.login("zelda-the-user").await;
    fx.request("/page", Some(&cookie), &[]).await;
    fx.request("/page", Some(&cookie), &[]).await;
    eventually(Duration::from_secs(5), "no access lines", || {
        fx.proxy.log_lines_with("path=\"/page\"").len() >= 2
    })
    .await;
    // The proxy runs with RUST_LOG=debug: even so, no line names the user or holds the cookie.
    let logs = fx.proxy.logs();
    assert!(!logs.contains("zelda-the-user"), "the user was logged");
    assert!(!logs.contains(&cookie), "the cookie was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_hands_over_the_sockets_without_dropping_requests() {
    let mut h = Harness::new()
        .server(|s| s.upgrade_sock("upgrade.sock").shutdown_grace("1s"))
        .start()
        .await;
    let upstream = &h.backends[0];
    let old = &mut h.proxy;
    let sock = old.dir.path().join("upgrade.sock");
    let http = client();
    let url = old.url("/public/x");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stream = async {
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match http.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                _ => failed += 1,
            }
            // Not a wait for a state: paces the stream of requests the upgrade must not drop.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed)
    };
    let upgrade = async {
        // The stream runs through the old process first.
        eventually(DEADLINE, "the old process answers the stream", || {
            upstream.hits() >= 30
        })
        .await;
        let mut new = old.start_upgrade();
        // The new process is ready for the hand-over once it listens on its upgrade socket.
        eventually(
            Duration::from_secs(20),
            "the new process listens on its upgrade socket",
            || unix_socket_listening(&sock),
        )
        .await;
        old.signal("-QUIT");
        // The old process has handed over once it has exited.
        eventually(
            Duration::from_secs(20),
            "the old process never exited",
            || old.exited(),
        )
        .await;
        // From here only the new process answers: let it answer a stretch of the stream.
        let handed_over = upstream.hits();
        eventually(DEADLINE, "the new process answers the stream", || {
            upstream.hits() >= handed_over + 30
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(!new.exited(), "the new process died:\n{}", new.logs());
        new
    };
    let ((ok, failed), new) = tokio::join!(stream, upgrade);
    eprintln!("binary upgrade: {ok} requests answered, {failed} failed");
    assert_eq!(failed, 0, "requests failed during the upgrade");
    assert!(ok > 50);
    // The new process serves on the same port.
    let reply = http.get(new.url("/public/y")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish() {
    let mut fx = Harness::new()
        .server(|s| s.shutdown_grace("2s"))
        .start()
        .await;
    let slow = fx.request("/public/slow", None, &[("x-echo-delay-ms", "800")]);
    let terminate = async {
        // In flight: the app has the request (and holds it for 800 ms).
        eventually(DEADLINE, "the slow request reaches the app", || {
            fx.upstream().hits() == 1
        })
        .await;
        fx.proxy.signal("-TERM");
    };
    let (reply, ()) = tokio::join!(slow, terminate);
    assert_eq!(reply.status, 200, "the request in flight was cut off");
    eventually(DEADLINE, "no exit after the grace period", || {
        fx.proxy.exited()
    })
    .await;
}
