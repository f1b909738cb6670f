//! Drives the demo app over a real socket with raw HTTP/1.1 (`tower` is not a direct
//! dependency, so `oneshot` is not available), plus direct checks of the assertion verifier.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::assertion::{inspect, Verdict};
use super::{serve, DemoSettings};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json_header(&self, name: &str) -> Value {
        let raw = self.header(name).expect("control header present");
        serde_json::from_str(raw).expect("control header is JSON")
    }
}

async fn start(settings: DemoSettings) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(serve(listener, settings));
    addr
}

async fn send(addr: SocketAddr, head: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut request = format!("{head} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("server closed the connection")
        .expect("read");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("end of head");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line")[9..12]
        .parse()
        .expect("status code");
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, &format!("GET {path}"), headers, "").await
}

async fn post(addr: SocketAddr, path: &str, form: &[(&str, &str)]) -> Reply {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect();
    send(addr, &format!("POST {path}"), &[], &body.join("&")).await
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn sign(claims: &Value, key: &[u8]) -> String {
    let header = json!({"alg": "HS256", "kid": "k1", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{signature}")
}

fn claims(exp: u64) -> Value {
    json!({"iss": "sessiongate", "aud": "app", "sub": "alice", "sid": "h", "iat": exp - 60,
           "exp": exp, "display_name": "Alice <A>"})
}

#[tokio::test]
async fn login_redirects_to_safe_next_with_login_claims() {
    let addr = start(DemoSettings::default()).await;
    let reply = post(
        addr,
        "/login",
        &[
            ("username", " alice "),
            ("email", "alice@example.com"),
            ("roles", "admin, dev ,,"),
            ("next", "/reports?q=1"),
        ],
    )
    .await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/reports?q=1"));
    let raw = reply.header("x-sessiongate-login").expect("login header");
    let claims: Value = serde_json::from_str(raw).expect("JSON");
    assert_eq!(
        claims,
        json!({"sub": "alice", "email": "alice@example.com", "roles": ["admin", "dev"]})
    );
    assert_eq!(raw, claims.to_string(), "compact JSON");
}

#[tokio::test]
async fn login_without_email_omits_it_and_keeps_the_header_ascii() {
    let addr = start(DemoSettings::default()).await;
    let reply = post(addr, "/login", &[("username", "Zoë\u{7f}"), ("next", "/")]).await;
    assert_eq!(reply.status, 303);
    assert!(reply
        .header("x-sessiongate-login")
        .is_some_and(|v| v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')));
    assert_eq!(
        reply.json_header("x-sessiongate-login"),
        json!({"sub": "Zoë\u{7f}", "roles": []})
    );
}

#[tokio::test]
async fn unsafe_next_falls_back_to_root() {
    let addr = start(DemoSettings::default()).await;
    for next in [
        "//evil.com",
        "https://evil.com",
        "/\\evil.com",
        "evil.com/x",
        "/ok\r\nSet-Cookie: x=1",
        "",
    ] {
        let reply = post(addr, "/login", &[("username", "bob"), ("next", next)]).await;
        assert_eq!(reply.status, 303, "next={next:?}");
        assert_eq!(reply.header("location"), Some("/"), "next={next:?}");
        assert!(reply.header("set-cookie").is_none());
    }
}

#[tokio::test]
async fn next_with_spaces_and_non_ascii_is_percent_encoded() {
    let addr = start(DemoSettings::default()).await;
    let reply = post(addr, "/login", &[("username", "bob"), ("next", "/a b/é")]).await;
    assert_eq!(reply.header("location"), Some("/a%20b/%C3%A9"));
}

#[tokio::test]
async fn empty_username_is_400_with_the_form_and_no_login_header() {
    let addr = start(DemoSettings::default()).await;
    let reply = post(
        addr,
        "/login",
        &[("username", "  "), ("email", "\"><x"), ("next", "/after")],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.header("x-sessiongate-login").is_none());
    assert!(reply.body.contains("Enter a username."));
    assert!(reply.body.contains("name=\"next\" value=\"/after\""));
    assert!(reply.body.contains("value=\"&quot;&gt;&lt;x\""));
}

#[tokio::test]
async fn login_form_keeps_a_safe_next_only() {
    let addr = start(DemoSettings::default()).await;
    let reply = get(addr, "/login?next=%2Fdocs%3Fa%3D1", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("name=\"next\" value=\"/docs?a=1\""));
    assert!(reply.body.contains("any non-empty username is accepted"));
    let reply = get(addr, "/login?next=%2F%2Fevil.com", &[]).await;
    assert!(reply.body.contains("name=\"next\" value=\"/\""));
}

#[tokio::test]
async fn logout_and_logout_all_send_their_control_header() {
    let addr = start(DemoSettings::default()).await;
    for (path, scope) in [("/logout", "current"), ("/logout-all", "all")] {
        let reply = post(addr, path, &[]).await;
        assert_eq!(reply.status, 303);
        assert_eq!(reply.header("location"), Some("/"));
        assert_eq!(reply.header("x-sessiongate-logout"), Some(scope));
    }
}

#[tokio::test]
async fn profile_update_sets_or_deletes_display_name() {
    let addr = start(DemoSettings::default()).await;
    let reply = post(addr, "/profile", &[("display_name", " Al \"A\" ")]).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/"));
    assert_eq!(
        reply.json_header("x-sessiongate-update"),
        json!({"display_name": "Al \"A\""})
    );
    let reply = post(addr, "/profile", &[("display_name", "")]).await;
    assert_eq!(
        reply.json_header("x-sessiongate-update"),
        json!({"display_name": null})
    );
}

#[tokio::test]
async fn home_escapes_every_header_value() {
    let addr = start(DemoSettings::default()).await;
    let reply = get(
        addr,
        "/",
        &[
            ("X-Auth-User", "<script>alert(1)</script>"),
            ("X-Auth-Roles", "a,b"),
            ("X-Sessiongate-Other", "x&y"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(!reply.body.contains("<script>"));
    assert!(reply
        .body
        .contains("Signed in as <strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong>"));
    assert!(reply
        .body
        .contains("<th>x-sessiongate-other</th><td>x&amp;y</td>"));
    assert!(reply.body.contains("action=\"/logout-all\""));
}

#[tokio::test]
async fn home_without_identity_links_to_login() {
    let addr = start(DemoSettings::default()).await;
    let reply = get(addr, "/", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("not signed in"));
    assert!(reply.body.contains("href=\"/login?next=%2F\""));
    assert!(!reply.body.contains("action=\"/logout\""));
}

#[tokio::test]
async fn home_reports_a_correctly_signed_assertion_as_valid() {
    let settings = DemoSettings {
        verify_key: Some(KEY.to_vec()),
        ..DemoSettings::default()
    };
    let addr = start(settings).await;
    let token = sign(&claims(now() + 60), KEY);
    let reply = get(
        addr,
        "/",
        &[
            ("X-Auth-User", "alice"),
            ("X-Sessiongate-Assertion", &token),
        ],
    )
    .await;
    assert!(reply.body.contains("Signature and expiry verified"));
    assert!(reply.body.contains("&quot;kid&quot;: &quot;k1&quot;"));
    assert!(
        reply.body.contains("value=\"Alice &lt;A&gt;\""),
        "prefilled"
    );

    let (head, rest) = token.split_once('.').expect("jwt");
    let forged = URL_SAFE_NO_PAD.encode(claims(now() + 600).to_string());
    let signature = rest.rsplit_once('.').expect("jwt").1;
    let tampered = format!("{head}.{forged}.{signature}");
    let reply = get(addr, "/", &[("X-Sessiongate-Assertion", &tampered)]).await;
    assert!(reply
        .body
        .contains("Invalid assertion: signature does not match the key"));
}

#[tokio::test]
async fn home_without_key_only_displays_the_assertion() {
    let addr = start(DemoSettings::default()).await;
    let token = sign(&claims(now() + 60), KEY);
    let reply = get(addr, "/", &[("X-Sessiongate-Assertion", &token)]).await;
    assert!(reply.body.contains("not checked (no key given)"));
    let reply = get(addr, "/", &[("X-Sessiongate-Assertion", "a.b")]).await;
    assert!(reply.body.contains("Malformed assertion"));
}

#[test]
fn verifier_rejects_wrong_key_expiry_and_alg_none() {
    let now = now();
    let good = sign(&claims(now + 60), KEY);
    let verdict = |token: &str, key: &[u8]| inspect(token, Some(key), now).map(|a| a.verdict);
    assert_eq!(verdict(&good, KEY), Ok(Verdict::Valid));
    assert!(matches!(
        verdict(&good, b"another key"),
        Ok(Verdict::Invalid(_))
    ));
    let expired = sign(&claims(now - 1), KEY);
    assert!(matches!(verdict(&expired, KEY), Ok(Verdict::Invalid(r)) if r.contains("expired")));
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims(now + 60).to_string())
    );
    assert_eq!(
        verdict(&unsigned, KEY),
        Ok(Verdict::Invalid("alg is not HS256".into()))
    );
    assert!(inspect("x.y.z.w", None, now).is_err());
}

#[tokio::test]
async fn public_page_and_health_answer_without_identity() {
    let addr = start(DemoSettings::default()).await;
    let reply = get(addr, "/public", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("not signed in"));
    let reply = get(addr, "/public", &[("X-Auth-User", "carol")]).await;
    assert!(reply.body.contains("Signed in as <strong>carol</strong>"));
    let reply = get(addr, "/healthz", &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    assert_eq!(get(addr, "/nope", &[]).await.status, 404);
}
