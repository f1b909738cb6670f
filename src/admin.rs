//! The admin listener (never the public one): `/healthz` answers while the process runs,
//! `/readyz` while the configuration is loaded and the session store answers.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::session::SessionStore;

pub struct Admin {
    store: Arc<dyn SessionStore>,
}

impl Admin {
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Admin { store }
    }
}

fn plain(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body.as_bytes().to_vec())
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            "/readyz" => {
                let breaker = self
                    .store
                    .breaker_state()
                    .map_or(String::new(), |b| format!(" (circuit {})", b.as_str()));
                match self.store.ping().await {
                    Ok(()) => plain(StatusCode::OK, &format!("ready{breaker}\n")),
                    Err(e) => plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("not ready: {e}{breaker}\n"),
                    ),
                }
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
