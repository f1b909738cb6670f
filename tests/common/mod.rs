//! Test harness: real processes on ephemeral ports. A `redis-server` the test starts itself,
//! an echo upstream (a real HTTP server that reports the headers it received and answers with
//! headers the test asks for), real legacy web servers (Tomcat, lighttpd CGI, PHP; see
//! `legacy`), and the real `sessiongate` binary. Every child is killed on drop.
#![allow(dead_code, unused_imports)]

pub mod config;
pub mod echo;
pub mod fixture;
pub mod legacy;
pub mod proc;
pub mod topology;

pub use config::TestConfig;
pub use echo::{Echo, EchoUpstream};
pub use fixture::{verify, Fixture, Reply, Store};
pub use proc::{command_calls_on, free_port, Proxy, RedisServer};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// An HTTP client that follows no redirects and keeps no cookies: tests see every response.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .expect("client builds")
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

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub async fn eventually(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    check()
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
