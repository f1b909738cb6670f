//! Towards the app: connect, read and total timeouts answered with 504 and a clear body; TLS
//! to backends verified against a private CA (and refused with the wrong CA or name); and a
//! route's body limits: 413 before the app sees a byte, 413 for a chunked body that grows past
//! the limit, and small bodies read whole before the app is contacted (408 when they do not
//! arrive).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::{Issued, Pki, Validity};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a raw backend saw: connections accepted and every byte received.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    bytes: Mutex<Vec<u8>>,
}

impl Seen {
    fn received(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

/// How a raw backend behaves once it has a connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads forever, answers nothing.
    Silent,
    /// Answers a head declaring 1000 bytes, then sends one byte every 200 ms.
    Dribble,
    /// Reads one request (head and `Content-Length` body) and answers 200 with the body's
    /// length.
    Answer,
}

/// A backend on a plain socket the test controls byte by byte.
async fn raw_backend(behaviour: Behaviour) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, behaviour, shared.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, seen: Arc<Seen>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Behaviour::Dribble | Behaviour::Answer = behaviour {
            if let Some(body) = complete_body(&request) {
                let reply = match behaviour {
                    Behaviour::Answer => {
                        let text = format!("received {body} bytes");
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        )
                    }
                    _ => "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_string(),
                };
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                if let Behaviour::Dribble = behaviour {
                    for _ in 0..1000 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if stream.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                }
                request.clear();
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                request.extend_from_slice(&buf[..n]);
                seen.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// The body length of a complete request in `bytes` (head and `Content-Length` body).
fn complete_body(bytes: &[u8]) -> Option<usize> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    (bytes.len() >= end + length).then_some(length)
}

/// A backend speaking TLS with `cert`, answering every request with the SNI it was sent.
async fn tls_backend(cert: &Issued) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&cert.chain)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if complete_body(&request).is_some() {
                        let text = format!("over TLS, SNI {sni}");
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if tls.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        request.clear();
                    }
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    addr
}

const GET_PUBLIC: &str = "GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_does_not_answer_gets_504_at_the_read_timeout() {
    let (addr, seen) = raw_backend(Behaviour::Silent).await;
    let h = Harness::new()
        .backend(addr)
        .upstream(|u| u.health_check("none").raw("read_timeout = \"1s\""))
        .start()
        .await;
    let reply = h.raw(GET_PUBLIC).await;
    assert_eq!(reply.status, 504, "{}", reply.head);
    assert!(reply.body.contains("Gateway timeout."), "{}", reply.body);
    assert_eq!(
        reply.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    // The request did reach the app (the timeout is the app's, not the connection's).
    assert!(String::from_utf8_lossy(&seen.received()).starts_with("GET /public/x"));
    // A GET that timed out is not sent again: the app may still be working on it.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_never_completes_is_a_connect_timeout() {
    // Accepts the TCP connection, never says a word of TLS.
    let (addr, seen) = raw_backend(Behaviour::Silent).await;
    let h = Harness::new()
        .backend(addr)
        .upstream(|u| {
            u.health_check("none")
                .raw("connect_timeout = \"1s\"")
                .raw("tls = true")
                .raw("tls_server_name = \"app.internal\"")
        })
        .start()
        .await;
    let reply = h.raw(GET_PUBLIC).await;
    assert_eq!(reply.status, 504, "{}", reply.head);
    assert!(reply.body.contains("Gateway timeout."), "{}", reply.body);
    // What the backend read was a TLS ClientHello (a handshake record), not the request.
    let hello = seen.received();
    assert_eq!(hello.first(), Some(&0x16), "{hello:?}");
    assert!(!String::from_utf8_lossy(&hello).contains("GET /public"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_timeout_cuts_a_response_that_dribbles() {
    let (addr, _) = raw_backend(Behaviour::Dribble).await;
    let h = Harness::new()
        .backend(addr)
        .upstream(|u| {
            u.health_check("none")
                .raw("read_timeout = \"5s\"")
                .raw("total_timeout = \"2s\"")
        })
        .start()
        .await;
    // Each byte comes well within the read timeout; the whole would take 200 s. The proxy
    // closes the connection long before (the bound here is only the test's patience).
    let mut client = TcpStream::connect(("127.0.0.1", h.proxy.port))
        .await
        .unwrap();
    client.write_all(GET_PUBLIC.as_bytes()).await.unwrap();
    let mut text = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut text)).await;
    assert!(
        closed.is_ok(),
        "the proxy kept the dribbling response going"
    );
    let reply = RawReply::parse(&String::from_utf8_lossy(&text));
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(
        reply.body.len() < 1000,
        "the response was not cut: {} bytes",
        reply.body.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_verified_against_the_configured_ca() {
    let pki = Pki::new("backend CA");
    let cert = pki.issue("app", &["app.internal"], Validity::Current);
    let other_ca = Pki::new("some other CA");
    let addr = tls_backend(&cert).await;
    let ca = pki.ca().display().to_string();
    let wrong_ca = other_ca.ca().display().to_string();
    let cases: [(&str, Vec<String>, u16); 4] = [
        (
            "the right CA and name",
            vec![
                format!("tls_ca_file = \"{ca}\""),
                "tls_server_name = \"app.internal\"".into(),
            ],
            200,
        ),
        (
            "another CA",
            vec![
                format!("tls_ca_file = \"{wrong_ca}\""),
                "tls_server_name = \"app.internal\"".into(),
            ],
            502,
        ),
        (
            "a name the certificate does not carry",
            vec![
                format!("tls_ca_file = \"{ca}\""),
                "tls_server_name = \"other.internal\"".into(),
            ],
            502,
        ),
        (
            "no verification, asked for by name",
            vec![
                "tls_server_name = \"app.internal\"".into(),
                "insecure_skip_verify = true".into(),
            ],
            200,
        ),
    ];
    for (case, lines, status) in cases {
        let h = Harness::new()
            .backend(addr)
            .upstream(|mut u| {
                u = u.health_check("none").raw("tls = true");
                for line in &lines {
                    u = u.raw(line);
                }
                u
            })
            .start()
            .await;
        let reply = h.raw(GET_PUBLIC).await;
        assert_eq!(reply.status, status, "{case}: {}", reply.head);
        if status == 200 {
            assert_eq!(reply.body, "over TLS, SNI app.internal", "{case}");
        } else {
            assert!(
                reply.body.contains("Bad gateway."),
                "{case}: {}",
                reply.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_routes_limit_get_413() {
    let (addr, seen) = raw_backend(Behaviour::Answer).await;
    let h = Harness::new()
        .backend(addr)
        .upstream(|u| u.health_check("none"))
        .route(Route::public("/upload").raw("max_body_bytes = 1000"))
        .start()
        .await;
    // Declared too large: refused before a byte of it is read, and the app never hears of it.
    let reply = h
        .raw("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2000\r\n\r\n")
        .await;
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert!(reply.body.contains("Request body too large."));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0);

    // Within the limit: forwarded.
    let body = "a".repeat(900);
    let reply = h
        .raw(&format!(
            "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 900\r\nConnection: close\r\n\r\n{body}"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, "received 900 bytes");

    // Chunked, growing past the limit: cut, and the client told why.
    let chunk = "b".repeat(600);
    let reply = h
        .raw(&format!(
            "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        ))
        .await;
    assert_eq!(reply.status, 413, "{}", reply.head);
    // Other routes have no limit.
    let big = "c".repeat(5000);
    let reply = h
        .raw(&format!(
            "POST /public/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n{big}"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bodies_are_read_whole_before_the_app_is_contacted() {
    let (addr, seen) = raw_backend(Behaviour::Answer).await;
    let h = Harness::new()
        .backend(addr)
        .upstream(|u| u.health_check("none"))
        .route(
            Route::public("/form")
                .raw("buffer_body_bytes = 4096")
                .raw("body_timeout = \"2s\""),
        )
        .start()
        .await;
    let port = h.proxy.port;

    // Half a body, a pause: nothing has reached the app. The rest: the app gets it all.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client
        .write_all(b"POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0);
    client.write_all(b"world").await.unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).await.unwrap();
    let reply = RawReply::parse(&reply);
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, "received 10 bytes");
    assert!(String::from_utf8_lossy(&seen.received()).ends_with("\r\n\r\nhelloworld"));

    // `Expect: 100-continue`: the proxy gives the go-ahead itself; the app is not asked.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client
        .write_all(b"POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0u8; 64];
    let n = client.read(&mut interim).await.unwrap();
    assert!(
        String::from_utf8_lossy(&interim[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&interim[..n])
    );
    client.write_all(b"data").await.unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).await.unwrap();
    assert!(reply.contains("received 4 bytes"), "{reply}");
    let forwarded = String::from_utf8_lossy(&seen.received()).to_ascii_lowercase();
    assert!(!forwarded.contains("expect:"), "{forwarded}");

    // A body that never arrives: 408 at the body timeout, and still nothing at the app.
    let before = seen.connections.load(Ordering::SeqCst);
    let reply = h
        .raw("POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nonly part")
        .await;
    assert_eq!(reply.status, 408, "{}", reply.head);
    assert!(reply.body.contains("Request timeout."));
    assert_eq!(seen.connections.load(Ordering::SeqCst), before);

    // Bodies larger than the buffer stream as before.
    let big = "d".repeat(10_000);
    let reply = h
        .raw(&format!(
            "POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10000\r\nConnection: close\r\n\r\n{big}"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, "received 10000 bytes");
}
