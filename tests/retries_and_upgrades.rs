//! Two things the proxy does on the upstream side of a request, through the real binary and
//! hand-written backends on raw sockets (so every byte the app receives is on record):
//!
//! - Retries on a reused upstream connection. A backend answers the first request on each
//!   connection with keep-alive and closes the connection on the second one without answering
//!   (the keep-alive race: the app closed a pooled connection just as a request went out). An
//!   idempotent request is then retried on a fresh connection to the same backend, and every
//!   attempt is the rewritten request (session cookie removed, identity headers added); a POST
//!   is not retried, and the client gets 502.
//! - WebSocket upgrades. A tunnel is opened only for a genuine RFC 6455 handshake that the app
//!   completes with the matching `Sec-WebSocket-Accept`: broken handshakes get 400 and reach no
//!   app (bytes smuggled after them included), a 101 with the wrong accept becomes a 502, other
//!   upgrades (`h2c`) reach the app as plain requests, and routes with `websocket = false`
//!   answer 403.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::config::COOKIE;
use common::*;
use serde_json::Value;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any single wait in these tests may last before it fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// RFC 6455 §1.3's example key and the accept value it must produce.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 on raw bytes, for both sides.

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads from `stream` until `buf` holds a whole message head; returns the head and leaves
/// what follows it in `buf`. `None` at end of stream (or on an error) before a whole head.
/// Every chunk read is also handed to `seen`.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    seen: &mut (dyn FnMut(&[u8]) + Send),
) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => {
                seen(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Reads until `buf` holds at least `len` bytes; false at end of stream.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> bool {
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// The values of header `name` (any case) in a message head, trimmed, in order.
fn header(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn request_line(head: &str) -> &str {
    head.split("\r\n").next().unwrap_or_default()
}

fn content_length(head: &str) -> usize {
    header(head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `Sec-WebSocket-Accept` for a key, computed here independently of the proxy's code.
fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(sha.finalize())
}

/// The `X-Sessiongate-Login` line a test backend adds when the request asks for it with
/// `x-test-login: <json>` (how these backends log a user in).
fn login_line(head: &str) -> String {
    let login = header(head, "x-test-login")
        .first()
        .map(|json| format!("X-Sessiongate-Login: {json}\r\n"))
        .unwrap_or_default();
    let logout = header(head, "x-test-logout")
        .first()
        .map(|scope| format!("X-Sessiongate-Logout: {scope}\r\n"))
        .unwrap_or_default();
    format!("{login}{logout}")
}

/// Logs `sub` in through the public `/login` route (which accepts logins) of a proxy in front
/// of one of these backends; returns the session cookie's value.
async fn login(proxy: &Proxy, sub: &str) -> String {
    let json = format!(r#"{{"sub":"{sub}","email":"{sub}@example.com","roles":["user"]}}"#);
    let resp = client()
        .get(proxy.url("/login"))
        .header("x-test-login", json)
        .timeout(DEADLINE)
        .send()
        .await
        .expect("the proxy answers the login");
    assert_eq!(resp.status(), 200, "the login answers 200");
    set_cookie_value(resp.headers(), COOKIE).expect("the login sets the session cookie")
}

/// A proxy on the memory store in front of `backend` only, health checks off, with the
/// standard routes and `extra_routes`.
async fn proxy_for(backend: SocketAddr, extra_routes: &[Route]) -> Running {
    let mut harness = Harness::new()
        .backend(backend)
        .upstream(|u| u.health_check("none"));
    for route in extra_routes {
        harness = harness.route(route.clone());
    }
    harness.start().await
}

/// A raw HTTP/1.1 client connection to the proxy.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One response as the client read it.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawClient {
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connects to the proxy");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` in one write; false when the proxy has already closed the connection.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// The next response (head, and a `Content-Length` body unless it is a 101); `None` when
    /// the proxy closes the connection first. Fails the test after `DEADLINE`.
    async fn response(&mut self) -> Option<RawResponse> {
        let read = async {
            let head = read_head(&mut self.stream, &mut self.buf, &mut |_| {}).await?;
            let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
            let len = if status == 101 {
                0
            } else {
                content_length(&head)
            };
            fill(&mut self.stream, &mut self.buf, len).await;
            let body: Vec<u8> = self.buf.drain(..len.min(self.buf.len())).collect();
            Some(RawResponse { status, head, body })
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("the proxy answers or closes in time")
    }

    /// Everything the proxy sends until it closes the connection (at most `DEADLINE`), after
    /// what was already buffered.
    async fn rest(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let _ = tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut out)).await;
        out
    }

    /// Reads until the bytes received after the last response contain `needle`.
    async fn read_until(&mut self, needle: &[u8]) -> bool {
        let read = async {
            while find(&self.buf, needle).is_none() {
                let want = self.buf.len() + 1;
                if !fill(&mut self.stream, &mut self.buf, want).await {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(DEADLINE, read).await.unwrap_or(false)
    }
}

// ---------------------------------------------------------------------------------------------
// A. Retries on a reused upstream connection.

/// One request head as the flaky backend received it.
#[derive(Debug, Clone)]
struct Attempt {
    /// Which connection (1, 2, ... in accept order).
    conn: usize,
    /// Which request on that connection (1 = first).
    nth: usize,
    head: String,
    /// Answered (the first request on its connection) or dropped (any later one).
    answered: bool,
}

/// A keep-alive backend that serves exactly one request per connection: it answers the first
/// with 200 and keeps the connection open, then reads the next request head and closes the
/// socket without answering.
struct FlakyBackend {
    addr: SocketAddr,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyBackend {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let log = attempts.clone();
        let task = tokio::spawn(async move {
            let mut conns = 0;
            while let Ok((stream, _)) = listener.accept().await {
                conns += 1;
                tokio::spawn(Self::serve(stream, conns, log.clone()));
            }
        });
        FlakyBackend {
            addr,
            attempts,
            task,
        }
    }

    async fn serve(mut stream: TcpStream, conn: usize, log: Arc<Mutex<Vec<Attempt>>>) {
        let mut buf = Vec::new();
        for nth in 1.. {
            let Some(head) = read_head(&mut stream, &mut buf, &mut |_| {}).await else {
                return;
            };
            let answered = nth == 1;
            log.lock().expect("log").push(Attempt {
                conn,
                nth,
                head: head.clone(),
                answered,
            });
            if !answered {
                // The keep-alive race: closed as the request went out, nothing answered.
                return;
            }
            let len = content_length(&head);
            if !fill(&mut stream, &mut buf, len).await {
                return;
            }
            buf.drain(..len);
            let first = |name: &str| header(&head, name).into_iter().next();
            let body = serde_json::json!({
                "conn": conn,
                "nth": nth,
                "request": request_line(&head),
                "cookie": first("cookie"),
                "x_auth_user": first("x-auth-user"),
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
                body.len(),
                login_line(&head),
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().expect("log").clone()
    }

    /// The attempts whose request line starts with `prefix` (e.g. `"GET /?n=3 "`).
    fn attempts_of(&self, prefix: &str) -> Vec<Attempt> {
        self.attempts()
            .into_iter()
            .filter(|a| request_line(&a.head).starts_with(prefix))
            .collect()
    }
}

impl Drop for FlakyBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// GETs are retried when the backend drops a reused connection: the client always gets 200,
/// the retry reaches the same backend on a fresh connection, and every attempt is the same
/// rewritten request (no session id, the other cookie kept, the session's identity added).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_on_a_fresh_connection_with_the_same_rewrite() {
    let backend = FlakyBackend::start().await;
    let h = proxy_for(backend.addr, &[]).await;
    let proxy = &h.proxy;
    let sid = login(proxy, "alice").await;
    let http = client();

    // Sequential GETs until the backend has dropped a few of them (each backend connection
    // serves one request, so a pooled one is always dropped when the proxy reuses it). Not the
    // poller: the requests go back to back (a pause would let the pool drop the connection
    // before it is reused), each is checked, and the loop is bounded by count and deadline.
    let deadline = Instant::now() + DEADLINE;
    let mut sent = 0;
    while sent < 6 || backend.attempts().iter().filter(|a| !a.answered).count() < 3 {
        assert!(
            Instant::now() < deadline && sent < 60,
            "the backend dropped fewer than 3 requests out of {sent}: {:#?}",
            backend.attempts()
        );
        sent += 1;
        let resp = http
            .get(proxy.url(&format!("/?n={sent}")))
            .header("cookie", format!("{COOKIE}={sid}; theme=dark"))
            .timeout(DEADLINE)
            .send()
            .await
            .expect("the proxy answers");
        assert_eq!(resp.status(), 200, "GET /?n={sent}");
        let body: Value = resp.json().await.expect("the backend's JSON");
        assert_eq!(body["request"], format!("GET /?n={sent} HTTP/1.1"));
        assert_eq!(body["cookie"], "theme=dark", "GET /?n={sent}: {body}");
        assert_eq!(body["x_auth_user"], "alice", "GET /?n={sent}: {body}");
        assert_eq!(body["nth"], 1, "answered as a connection's first request");
    }

    let mut dropped = 0;
    for n in 1..=sent {
        let attempts = backend.attempts_of(&format!("GET /?n={n} "));
        for a in &attempts {
            assert_eq!(
                header(&a.head, "cookie"),
                ["theme=dark"],
                "attempt {a:?}: only the other cookie reaches the app"
            );
            assert!(
                !a.head.contains(&sid),
                "the session id reached the app: {a:?}"
            );
            assert_eq!(header(&a.head, "x-auth-user"), ["alice"], "attempt {a:?}");
            let tokens = header(&a.head, "x-sessiongate-assertion");
            assert_eq!(tokens.len(), 1, "one assertion in {a:?}");
            assert_eq!(verify(&tokens[0])["sub"], "alice");
        }
        // Exactly one attempt was answered, and it was the last; every earlier one was
        // dropped on a reused connection and retried with the same request id. (There can be
        // more than one: a retry may pick up the connection an earlier retry left in the pool,
        // whose zero idle timeout only fires on Pingora's next 10 ms timer tick.)
        let (last, earlier) = attempts.split_last().expect("GET reached the backend");
        assert!(last.answered, "the last attempt of /?n={n} was answered");
        assert_eq!(
            last.nth, 1,
            "the retry came on a fresh connection: {attempts:#?}"
        );
        for e in earlier {
            assert!(!e.answered && e.nth > 1, "{attempts:#?}");
            assert_ne!(e.conn, last.conn);
            assert_eq!(
                header(&e.head, "x-request-id"),
                header(&last.head, "x-request-id"),
                "one request, several attempts"
            );
            dropped += 1;
        }
    }
    assert!(
        dropped >= 3,
        "the race happened: {dropped} dropped attempts"
    );
}

/// A POST is not idempotent: when the backend drops the reused connection it went out on,
/// the proxy does not send it again, and the client gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_a_dropped_reused_connection_is_not_retried() {
    let backend = FlakyBackend::start().await;
    let h = proxy_for(backend.addr, &[]).await;
    let proxy = &h.proxy;
    let sid = login(proxy, "alice").await;
    let http = client();

    // The login left its connection in the pool. A POST that finds one pooled is dropped; one
    // that opens a new connection (the pool was not refilled yet) is answered and leaves its
    // connection pooled for the next POST. Back to back, bounded by count and deadline, as
    // above.
    let deadline = Instant::now() + DEADLINE;
    let mut k = 0;
    let status = loop {
        assert!(
            Instant::now() < deadline && k < 20,
            "no POST went out on a reused connection: {:#?}",
            backend.attempts()
        );
        k += 1;
        let resp = http
            .post(proxy.url(&format!("/?post={k}")))
            .header("cookie", format!("{COOKIE}={sid}; theme=dark"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=1")
            .timeout(DEADLINE)
            .send()
            .await
            .expect("the proxy answers");
        let status = resp.status();
        let attempts = backend.attempts_of(&format!("POST /?post={k} "));
        assert_eq!(attempts.len(), 1, "the POST went out once: {attempts:#?}");
        if attempts[0].answered {
            assert_eq!(status, 200, "an answered POST passes through");
            continue;
        }
        break status;
    };
    assert_eq!(status, 502, "the dropped POST is answered 502, not retried");
    let attempts = backend.attempts_of(&format!("POST /?post={k} "));
    assert_eq!(attempts.len(), 1, "never sent again: {attempts:#?}");
    assert_eq!(header(&attempts[0].head, "cookie"), ["theme=dark"]);
    assert_eq!(header(&attempts[0].head, "x-auth-user"), ["alice"]);
    // A request after it is served normally (a GET, retried if need be).
    let after = http
        .get(proxy.url("/?after"))
        .header("cookie", format!("{COOKIE}={sid}"))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("the proxy answers");
    assert_eq!(after.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// B. WebSocket upgrades.

/// How the WebSocket app answers a request carrying `Upgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WsApp {
    /// 101 with the correct accept to a WebSocket request with a key; anything else is plain.
    Rfc,
    /// 101 with a wrong `Sec-WebSocket-Accept` to any upgrade request.
    WrongAccept,
    /// 101 to any request that carries `Upgrade` (whatever it names, key or no key).
    Careless,
}

/// What the WebSocket app saw on one connection.
#[derive(Debug, Clone, Default)]
struct WsConn {
    /// Every byte received.
    raw: Vec<u8>,
    /// Every request head received as HTTP.
    heads: Vec<String>,
    /// Bytes received after it answered 101.
    tunnel: Vec<u8>,
    upgraded: bool,
    /// The peer closed the connection (or it failed).
    closed: bool,
}

impl WsConn {
    /// What a failure message says about the connection.
    fn summary(&self) -> String {
        let last = self.heads.last().map(|h| request_line(h)).unwrap_or("-");
        format!(
            "last request {last:?}, upgraded {}, closed {}, tunnel {:?}",
            self.upgraded,
            self.closed,
            String::from_utf8_lossy(&self.tunnel)
        )
    }
}

struct WsBackend {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<WsConn>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WsBackend {
    async fn start(app: WsApp) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let conns = Arc::new(Mutex::new(Vec::new()));
        let log = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut conns = log.lock().expect("log");
                    conns.push(WsConn::default());
                    conns.len() - 1
                };
                let log = log.clone();
                tokio::spawn(async move {
                    Self::serve(stream, app, &log, index).await;
                    log.lock().expect("log")[index].closed = true;
                });
            }
        });
        WsBackend { addr, conns, task }
    }

    async fn serve(mut stream: TcpStream, app: WsApp, log: &Mutex<Vec<WsConn>>, index: usize) {
        let record = |f: &mut dyn FnMut(&mut WsConn)| f(&mut log.lock().expect("log")[index]);
        let mut buf = Vec::new();
        loop {
            let mut seen = |bytes: &[u8]| record(&mut |c| c.raw.extend_from_slice(bytes));
            let Some(head) = read_head(&mut stream, &mut buf, &mut seen).await else {
                return;
            };
            record(&mut |c| c.heads.push(head.clone()));
            let upgrade = header(&head, "upgrade").into_iter().next();
            let key = header(&head, "sec-websocket-key").into_iter().next();
            let accept = match (app, &upgrade) {
                (_, None) => None,
                (WsApp::Rfc, Some(u)) => key
                    .as_deref()
                    .filter(|_| u.eq_ignore_ascii_case("websocket"))
                    .map(accept_for),
                (WsApp::WrongAccept, Some(_)) => Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
                (WsApp::Careless, Some(_)) => {
                    Some(key.as_deref().map(accept_for).unwrap_or_default())
                }
            };
            let Some(accept) = accept else {
                let len = content_length(&head);
                let before = buf.len();
                if !fill(&mut stream, &mut buf, len).await {
                    return;
                }
                record(&mut |c| c.raw.extend_from_slice(&buf[before..]));
                buf.drain(..len);
                let body = format!("plain {}", request_line(&head));
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
                    body.len(),
                    login_line(&head),
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            };
            let mut response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {}\r\nConnection: Upgrade\r\n",
                upgrade.unwrap_or_default()
            );
            if !accept.is_empty() {
                response.push_str(&format!("Sec-WebSocket-Accept: {accept}\r\n"));
            }
            response.push_str("\r\n");
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            record(&mut |c| c.upgraded = true);
            // The tunnel: record and echo back whatever comes, until the end.
            let mut pending = std::mem::take(&mut buf);
            loop {
                if !pending.is_empty() {
                    record(&mut |c| c.tunnel.extend_from_slice(&pending));
                    if stream.write_all(&pending).await.is_err() {
                        return;
                    }
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        record(&mut |c| c.raw.extend_from_slice(&chunk[..n]));
                        pending = chunk[..n].to_vec();
                    }
                }
            }
        }
    }

    fn conns(&self) -> Vec<WsConn> {
        self.conns.lock().expect("log").clone()
    }

    fn heads(&self) -> Vec<String> {
        self.conns().into_iter().flat_map(|c| c.heads).collect()
    }

    fn raw_contains(&self, needle: &[u8]) -> bool {
        self.conns().iter().any(|c| find(&c.raw, needle).is_some())
    }

    fn tunneled(&self) -> Vec<u8> {
        self.conns().into_iter().flat_map(|c| c.tunnel).collect()
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A handshake on `path` with `cookie` (if any), and `headers` (each line ending in CRLF).
fn handshake(path: &str, cookie: Option<&str>, headers: &str) -> String {
    let cookie = cookie
        .map(|c| format!("Cookie: {COOKIE}={c}; theme=dark\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}{headers}\r\n")
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
const GOOD_KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const VERSION: &str = "Sec-WebSocket-Version: 13\r\n";

/// A valid handshake on `path`; returns the client connection after the 101 (checked).
async fn open_tunnel(proxy: &Proxy, path: &str, sid: &str) -> RawClient {
    let mut ws = RawClient::connect(proxy.port).await;
    let request = handshake(path, Some(sid), &format!("{UPGRADE}{GOOD_KEY}{VERSION}"));
    assert!(ws.send(request.as_bytes()).await);
    let resp = ws.response().await.expect("a response to the handshake");
    assert_eq!(resp.status, 101, "{path}: {}", resp.head);
    assert_eq!(
        header(&resp.head, "sec-websocket-accept"),
        [RFC_ACCEPT],
        "{path}"
    );
    ws
}

/// A valid handshake opens a tunnel: the client gets the 101 with the accept value, bytes pass
/// both ways, and the upgrade request reached the app rewritten like any other request. Then
/// the way a browser does it, many times over: a page, then its socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_handshake_opens_a_tunnel_with_the_sessions_identity() {
    assert_eq!(
        accept_for(RFC_KEY),
        RFC_ACCEPT,
        "the test's own computation"
    );
    let backend = WsBackend::start(WsApp::Rfc).await;
    let h = proxy_for(backend.addr, &[]).await;
    let proxy = &h.proxy;
    let sid = login(proxy, "alice").await;

    let mut ws = open_tunnel(proxy, "/ws", &sid).await;
    // A masked text frame "Hello" (RFC 6455 §5.7), then more: the proxy passes bytes as they
    // are, both ways.
    let frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58 and-then-some";
    assert!(ws.send(frame).await);
    assert!(
        ws.read_until(frame).await,
        "the app's echo comes back through the tunnel; the app's connection: {:?}",
        backend.conns().last().map(WsConn::summary)
    );
    eventually(DEADLINE, "the frame reaches the app", || {
        find(&backend.tunneled(), frame).is_some()
    })
    .await;

    let heads = backend.heads();
    let upgrades: Vec<&String> = heads
        .iter()
        .filter(|h| request_line(h).starts_with("GET /ws "))
        .collect();
    assert_eq!(upgrades.len(), 1, "{heads:#?}");
    let head = upgrades[0];
    assert_eq!(header(head, "upgrade"), ["websocket"]);
    assert_eq!(header(head, "sec-websocket-key"), [RFC_KEY]);
    assert_eq!(header(head, "x-auth-user"), ["alice"]);
    let tokens = header(head, "x-sessiongate-assertion");
    assert_eq!(tokens.len(), 1, "{head}");
    assert_eq!(verify(&tokens[0])["sub"], "alice");
    assert_eq!(header(head, "cookie"), ["theme=dark"]);
    assert!(
        !head.contains(&sid),
        "the session id reached the app: {head}"
    );
    drop(ws);

    // A page and then its socket, 30 times: every tunnel stays open and carries bytes.
    let http = client();
    let mut closed = Vec::new();
    for i in 1..=30 {
        let page = http
            .get(proxy.url(&format!("/page{i}")))
            .header("cookie", format!("{COOKIE}={sid}"))
            .timeout(DEADLINE)
            .send()
            .await
            .expect("the proxy answers");
        assert_eq!(page.status(), 200);
        let path = format!("/ws{i}");
        let mut ws = open_tunnel(proxy, &path, &sid).await;
        let frame = format!("frame {i}");
        let _ = ws.send(frame.as_bytes()).await;
        if !ws.read_until(frame.as_bytes()).await {
            let client_got = ws.rest().await.len();
            let on_path = |c: &WsConn| {
                c.heads
                    .iter()
                    .any(|h| request_line(h).starts_with(&format!("GET {path} ")))
            };
            // Give the app's side the time to see the close, if one comes.
            within(DEADLINE, || {
                backend.conns().iter().any(|c| on_path(c) && c.closed)
            })
            .await;
            let app = backend
                .conns()
                .iter()
                .find(|c| on_path(c))
                .map(WsConn::summary);
            closed.push((path, client_got, app));
        }
    }
    // Each entry: the path, the bytes the client got after the 101 (until the proxy closed),
    // and what the app saw on that connection.
    assert!(
        closed.is_empty(),
        "tunnels the proxy closed after their 101 without passing the client's bytes: {closed:#?}"
    );
}

/// An open tunnel does not outlive its session: a logout elsewhere closes it within the
/// recheck period, and so does the end of the session's lifetime; a tunnel on a public route
/// (no session) stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_closed_when_its_session_ends() {
    let backend = WsBackend::start(WsApp::Rfc).await;
    let h = Harness::new()
        .backend(backend.addr)
        .upstream(|u| u.health_check("none"))
        .session(|s| {
            s.timeouts("5s", "6s")
                .renew_below("1s")
                .raw("tunnel_recheck = \"1s\"")
        })
        .start()
        .await;
    let proxy = &h.proxy;
    let metrics_closed = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("sessiongate_tunnels_closed_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };

    // Logged out from another request (another tab): the tunnel closes.
    let sid = login(proxy, "alice").await;
    let mut ws = open_tunnel(proxy, "/ws", &sid).await;
    assert!(ws.send(b"before").await);
    assert!(ws.read_until(b"before").await);
    let mut public = open_tunnel(proxy, "/public/ws", &sid).await;
    let out = client()
        .get(proxy.url("/page"))
        .header("cookie", format!("{COOKIE}={sid}"))
        .header("x-test-logout", "current")
        .timeout(DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let closed = within(Duration::from_secs(5), || {
        ws.stream.try_read(&mut [0u8; 64]).ok().filter(|n| *n == 0)
    })
    .await;
    assert!(
        closed.is_some(),
        "the tunnel was still open 5 s after the logout"
    );
    assert_eq!(metrics_closed(&h.metrics().await), 1);
    // The public route's tunnel carried no identity and has no session to lose.
    assert!(public.send(b"still here").await);
    assert!(public.read_until(b"still here").await);

    // A session that reaches its deadline (idle 5 s: bytes in the tunnel do not renew it)
    // while the tunnel is busy.
    let sid = login(proxy, "bob").await;
    let mut ws = open_tunnel(proxy, "/ws", &sid).await;
    let opened = std::time::Instant::now();
    let mut lasted = None;
    for i in 0..40 {
        let frame = format!("frame {i}");
        if !ws.send(frame.as_bytes()).await || !ws.read_until(frame.as_bytes()).await {
            lasted = Some(opened.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lasted = lasted.expect("the tunnel outlived its session");
    assert!(
        lasted >= Duration::from_secs(4),
        "closed early, after {lasted:?}"
    );
    assert_eq!(metrics_closed(&h.metrics().await), 2);
}

/// Upgrade requests that are no valid handshake get 400 from the proxy and reach no app, and
/// a request smuggled behind one in the same write never reaches the app either (here the
/// careless app, which would answer 101 to anything carrying `Upgrade`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_handshakes_are_refused_and_nothing_behind_them_reaches_the_app() {
    let backend = WsBackend::start(WsApp::Careless).await;
    let h = proxy_for(backend.addr, &[]).await;
    let proxy = &h.proxy;
    let sid = login(proxy, "mallory").await;
    let seen_at_login = backend.heads().len();

    let broken = [
        ("no key", format!("{UPGRADE}{VERSION}")),
        (
            "a key of 5 bytes",
            format!("{UPGRADE}Sec-WebSocket-Key: c2hvcnQ=\r\n{VERSION}"),
        ),
        (
            "a key that is no base64",
            format!("{UPGRADE}Sec-WebSocket-Key: !!!\r\n{VERSION}"),
        ),
        ("no version", format!("{UPGRADE}{GOOD_KEY}")),
        (
            "version 8",
            format!("{UPGRADE}{GOOD_KEY}Sec-WebSocket-Version: 8\r\n"),
        ),
    ];
    for (what, headers) in &broken {
        let mut c = RawClient::connect(proxy.port).await;
        assert!(
            c.send(handshake("/ws", Some(&sid), headers).as_bytes())
                .await
        );
        let resp = c.response().await.expect("a response");
        assert_eq!(resp.status, 400, "{what}: {}", resp.head);
        assert_eq!(
            backend.heads().len(),
            seen_at_login,
            "{what} reached the app"
        );
    }

    // The pen-test: a broken handshake and a smuggled request in one write.
    const SMUGGLED: &str = "GET /admin HTTP/1.1\r\nHost: x\r\nX-Auth-User: admin\r\n\r\n";
    let mut c = RawClient::connect(proxy.port).await;
    let attack = format!("{}{SMUGGLED}", handshake("/ws", Some(&sid), &broken[0].1));
    assert!(c.send(attack.as_bytes()).await);
    let first = c
        .response()
        .await
        .expect("a response to the broken handshake");
    assert_eq!(first.status, 400, "{}", first.head);
    // Whatever the proxy makes of the rest (today: nothing, it closes after the 400), no
    // tunnel opens and nothing is forwarded.
    let rest = String::from_utf8_lossy(&c.rest().await).into_owned();
    assert!(!rest.contains(" 101 "), "{rest}");

    assert_eq!(
        backend.heads().len(),
        seen_at_login,
        "the app saw a request: {:#?}",
        backend.heads()
    );
    assert!(
        !backend.raw_contains(b"admin"),
        "smuggled bytes reached the app"
    );
    assert!(
        backend
            .heads()
            .iter()
            .all(|h| header(h, "x-auth-user") != ["admin"]),
        "the forged identity reached the app"
    );
    assert_eq!(backend.tunneled(), b"", "no tunnel was opened");
    assert!(backend.conns().iter().all(|c| !c.upgraded));
}

/// An app whose 101 carries the wrong `Sec-WebSocket-Accept` gets no tunnel: the client gets
/// 502, and what it writes next never reaches the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_with_the_wrong_accept_opens_no_tunnel() {
    let backend = WsBackend::start(WsApp::WrongAccept).await;
    let h = proxy_for(backend.addr, &[]).await;
    let proxy = &h.proxy;
    let sid = login(proxy, "alice").await;

    let mut ws = RawClient::connect(proxy.port).await;
    let request = handshake("/ws", Some(&sid), &format!("{UPGRADE}{GOOD_KEY}{VERSION}"));
    assert!(ws.send(request.as_bytes()).await);
    let resp = ws.response().await.expect("a response to the handshake");
    assert_eq!(resp.status, 502, "{}", resp.head);
    assert!(header(&resp.head, "sec-websocket-accept").is_empty());

    const AFTER: &[u8] = b"\x81\x85\x37\xfa\x21\x3dTUNNEL-AFTER-502";
    let _ = ws.send(AFTER).await;
    let rest = ws.rest().await;
    assert!(find(&rest, AFTER).is_none(), "no echo from a tunnel");

    // The app's connection that answered the 101 is closed by the proxy: nothing more can
    // arrive on it.
    let upgraded =
        |b: &WsBackend| -> Vec<WsConn> { b.conns().into_iter().filter(|c| c.upgraded).collect() };
    assert_eq!(upgraded(&backend).len(), 1, "the app answered 101 once");
    eventually(DEADLINE, "the proxy closes the app's connection", || {
        upgraded(&backend).iter().all(|c| c.closed)
    })
    .await;
    assert_eq!(
        backend.tunneled(),
        b"",
        "bytes went through the refused tunnel"
    );
    assert!(!backend.raw_contains(b"TUNNEL-AFTER-502"));
}

/// An upgrade to something other than WebSocket reaches the app as a plain request, without
/// `Upgrade`: even the careless app answers it normally, and no tunnel opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_upgrades_reach_the_app_as_plain_requests() {
    let backend = WsBackend::start(WsApp::Careless).await;
    let h = proxy_for(backend.addr, &[]).await;
    let proxy = &h.proxy;
    let sid = login(proxy, "alice").await;

    let mut c = RawClient::connect(proxy.port).await;
    let request = handshake(
        "/h2c",
        Some(&sid),
        "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    );
    assert!(c.send(request.as_bytes()).await);
    let resp = c.response().await.expect("a response");
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.body, b"plain GET /h2c HTTP/1.1");

    let heads = backend.heads();
    let h2c: Vec<&String> = heads
        .iter()
        .filter(|h| request_line(h).starts_with("GET /h2c "))
        .collect();
    assert_eq!(h2c.len(), 1, "{heads:#?}");
    assert!(header(h2c[0], "upgrade").is_empty(), "{}", h2c[0]);
    assert_eq!(header(h2c[0], "x-auth-user"), ["alice"]);

    // What an h2c client would send after a 101 is no tunnel data: the proxy reads it as HTTP.
    const AFTER: &[u8] = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00TUNNEL-AFTER-200\r\n\r\n";
    let _ = c.send(AFTER).await;
    // (Today it answers 400 and closes.)
    let rest = String::from_utf8_lossy(&c.rest().await).into_owned();
    assert!(
        !rest.contains("TUNNEL-AFTER-200"),
        "no echo from a tunnel: {rest}"
    );
    assert!(
        backend.conns().iter().all(|c| !c.upgraded),
        "no 101 was asked for"
    );
    assert_eq!(backend.tunneled(), b"");
    assert!(!backend.raw_contains(b"TUNNEL-AFTER-200"));
}

/// A route with `websocket = false` refuses a valid handshake with 403 before any app sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_websocket_refuses_the_handshake() {
    let backend = WsBackend::start(WsApp::Rfc).await;
    let h = proxy_for(backend.addr, &[Route::public("/nows").websocket(false)]).await;
    let proxy = &h.proxy;

    let mut ws = RawClient::connect(proxy.port).await;
    let request = handshake("/nows/chat", None, &format!("{UPGRADE}{GOOD_KEY}{VERSION}"));
    assert!(ws.send(request.as_bytes()).await);
    let resp = ws.response().await.expect("a response");
    assert_eq!(resp.status, 403, "{}", resp.head);
    assert!(header(&resp.head, "sec-websocket-accept").is_empty());
    assert_eq!(
        backend.heads(),
        Vec::<String>::new(),
        "the app saw a request"
    );

    // The same route still serves plain requests.
    let plain = client()
        .get(proxy.url("/nows/page"))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("the proxy answers");
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.text().await.unwrap_or_default(),
        "plain GET /nows/page HTTP/1.1"
    );
}
