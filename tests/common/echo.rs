//! The echo upstream: a real HTTP server (axum) on an ephemeral port. It answers every request
//! with JSON describing what it received, and sets any response header the request asked for
//! with `x-echo-set-<name>: <value>` (so a test can make the "app" log a user in or out).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Response};
use serde::Deserialize;

/// What the upstream received, as it reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Echo {
    pub upstream: String,
    pub method: String,
    pub path: String,
    /// Every header as received, in order, names lower case.
    pub headers: Vec<(String, String)>,
}

impl Echo {
    /// Values of a header (any case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Header names that normalise (lower case, `_`/`.` as `-`) to something starting with
    /// `prefix` or equal to one of `exact`.
    pub fn names_like(&self, prefix: &str, exact: &[&str]) -> Vec<String> {
        self.headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase().replace(['_', '.'], "-"))
            .filter(|n| n.starts_with(prefix) || exact.contains(&n.as_str()))
            .collect()
    }
}

pub struct EchoUpstream {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct EchoState {
    name: String,
    hits: Arc<AtomicUsize>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
}

async fn handle(State(state): State<EchoState>, req: Request) -> Response<Body> {
    if req.uri().path() == "/healthz" {
        let status = if state.healthy.load(Ordering::SeqCst) {
            200
        } else {
            503
        };
        return Response::builder()
            .status(status)
            .body(Body::from("health"))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "application/json");
    for (name, value) in req.headers() {
        if let Some(target) = name.as_str().strip_prefix("x-echo-set-") {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(target.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                builder = builder.header(n, v);
            }
        }
    }
    if let Some(ms) = req
        .headers()
        .get("x-echo-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body = serde_json::json!({
        "upstream": state.name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
    });
    builder
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::from("bad echo response")))
}

impl EchoUpstream {
    /// Starts on 127.0.0.1 on an ephemeral port, inside the current tokio runtime.
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (e.g. the address of a stopped instance, to bring it back).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let hits = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let app = axum::Router::new().fallback(handle).with_state(EchoState {
            name: name.to_string(),
            hits: hits.clone(),
            healthy: healthy.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        EchoUpstream {
            addr,
            name: name.to_string(),
            hits,
            healthy,
            task: Some(task),
            stop: Some(stop),
        }
    }

    /// What `GET /healthz` answers: 200 when healthy, 503 otherwise.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every connection (idle keep-alive ones included), so the
    /// backend is down for the proxy: connections are refused.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
