//! Test harness: real processes on ephemeral ports. A `redis-server` the test starts itself,
//! an echo upstream (a real HTTP server that reports the headers it received and answers with
//! headers the test asks for), real legacy web servers (Tomcat, lighttpd CGI, PHP; see
//! `legacy`), and the real `sessiongate` binary. Every child is killed on drop. `harness`
//! composes them into what a test runs; `poll` is how a test waits for a state.
#![allow(dead_code, unused_imports)]

pub mod config;
pub mod echo;
pub mod harness;
pub mod legacy;
pub mod oidc;
pub mod pki;
pub mod poll;
pub mod proc;
pub mod topology;

pub use config::{codec, session_id, signed, COOKIE};
pub use echo::{Echo, EchoUpstream};
pub use harness::{Harness, Identity, RawReply, Reply, Route, Running, Transport};
pub use poll::{eventually, eventually_async, eventually_blocking, within};
pub use proc::{command_calls_on, free_port, unix_socket_listening, Ports, Proxy, RedisServer};

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Verifies an assertion as an upstream would (audience "app", issuer "sessiongate").
pub fn verify(token: &str) -> serde_json::Value {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["app"]);
    v.set_issuer(&["sessiongate"]);
    decode::<serde_json::Value>(token, &DecodingKey::from_secret(config::KEY.as_bytes()), &v)
        .expect("the assertion verifies with the shared key")
        .claims
}

/// An HTTP client that follows no redirects and keeps no cookies: tests see every response.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .expect("client builds")
}

/// An HTTPS client trusting only the CA in `ca` (PEM), with `names` resolved to 127.0.0.1 on
/// their ports (so the name is the SNI and the name checked), offering HTTP/2 by ALPN unless
/// `http2` is false. Like `client`, it follows no redirects and keeps no cookies.
pub fn https_client(ca: &std::path::Path, names: &[(&str, u16)], http2: bool) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("reads the CA");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM CA"))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0);
    for (name, port) in names {
        builder = builder.resolve(name, std::net::SocketAddr::from(([127, 0, 0, 1], *port)));
    }
    if !http2 {
        builder = builder.http1_only();
    }
    builder.build().expect("client builds")
}

/// Declares each named `async fn(Transport)` as two tests, `http1::name` and `http2::name`:
/// the same checks over plain HTTP/1.1 and over HTTP/2 on TLS.
#[macro_export]
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod http1 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Transport::Http1).await
                }
            )*
        }
        mod http2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Transport::Http2).await
                }
            )*
        }
    };
}

/// The session cookie's value in a response's Set-Cookie headers: `Some("")` when cleared.
pub fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?;
            let (n, value) = first.split_once('=')?;
            (n.trim() == name).then(|| value.trim().to_string())
        })
}

/// Every Set-Cookie header of a response, as text.
pub fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect()
}

/// Builds a header map from pairs; names may be any valid token (`_` and `.` included).
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(v).expect("valid header value"),
        );
    }
    map
}

/// Sends raw bytes as one HTTP/1.1 request (with `Connection: close`) and returns the status
/// code and the whole response text. For requests an HTTP client would normalise first
/// (dot segments, odd header names).
pub async fn raw_request(port: u16, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects to the proxy");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
