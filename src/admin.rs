//! The admin listener (never the public one):
//! - the key set apps verify assertions with, at `[identity] jwks_path` as on the public
//!   listener;
//! - `/healthz` answers while the process runs; `/readyz` while the configuration is loaded and
//!   the session store answers; `/metrics` is the Prometheus text exposition;
//! - the admin API, behind `Authorization: Bearer <[server] admin_token>` (compared in
//!   constant time; off when no token is configured), JSON out:
//!   `GET /admin/users/{sub}/sessions` lists a user's sessions (hashed ids and times),
//!   `DELETE /admin/users/{sub}/sessions` revokes all of them,
//!   `DELETE /admin/sessions/{hashed id}` revokes one.

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use percent_encoding::percent_decode_str;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use std::sync::Arc;

use crate::metrics::metrics;
use crate::proxy::SharedState;
use crate::session::lifecycle::now_ms;
use crate::session::StoreKey;
use crate::sessions::Backend;
use crate::store::breaker::BreakerState;
use crate::store::{SessionStore, StoreError};

pub struct Admin {
    state: SharedState,
    backend: Arc<Backend>,
}

impl Admin {
    /// Serves the admin endpoints over the gateway's `state` and the session `backend`.
    pub fn new(state: SharedState, backend: Arc<Backend>) -> Self {
        Admin { state, backend }
    }

    async fn readyz(&self) -> Response<Vec<u8>> {
        let store = &self.backend.store;
        let breaker = store
            .breaker_state()
            .map_or(String::new(), |b| format!(" (circuit {})", b.as_str()));
        match store.ping().await {
            Ok(()) => plain(StatusCode::OK, &format!("ready{breaker}\n")),
            Err(e) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {e}{breaker}\n"),
            ),
        }
    }

    fn metrics(&self) -> Response<Vec<u8>> {
        let m = metrics();
        if let Some(cache) = &self.backend.cache {
            m.observe_cache(&cache.stats().figures());
        }
        if let Some(state) = self.backend.store.breaker_state() {
            m.observe_breaker(state.as_str(), &BreakerState::ALL.map(BreakerState::as_str));
        }
        let current = self.state.load();
        m.backend_healthy.reset();
        for pool in current.pools.iter() {
            for (backend, healthy) in pool.health() {
                m.backend_healthy
                    .with_label_values(&[pool.name.as_str(), &backend.to_string()])
                    .set(i64::from(healthy));
            }
        }
        let body = m.encode();
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .header("x-content-type-options", "nosniff")
            .body(body.into_bytes())
            .unwrap_or_default()
    }

    /// The key set of the running configuration.
    fn jwks(&self, session: &ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let reply = self.state.load().jwks.answer(
            &req.method,
            req.headers
                .get(http::header::IF_NONE_MATCH)
                .map(|v| v.as_bytes()),
        );
        let mut response = Response::builder().status(reply.status);
        for (name, value) in &reply.headers {
            response = response.header(*name, value);
        }
        if reply.status != 304 {
            response = response.header("content-length", reply.body.len());
        }
        response
            .header("x-content-type-options", "nosniff")
            .body(reply.body.to_vec())
            .unwrap_or_default()
    }

    /// `None` when the request carries the configured token; otherwise the refusal.
    fn refuse_unauthorized(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let current = self.state.load();
        let Some(token) = &current.config.server.admin_token else {
            return Some(json_response(
                StatusCode::FORBIDDEN,
                &json!({"error": "admin_api_disabled",
                        "message": "set server.admin_token_file or server.admin_token_env"}),
            ));
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        let accepted = presented.is_some_and(|p| bool::from(p.ct_eq(&token.0)));
        if accepted {
            return None;
        }
        warn!(
            presented = presented.is_some(),
            "refused an admin API request without the right token"
        );
        let mut response = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthorized", "message": "a valid bearer token is required"}),
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        Some(response)
    }

    async fn api(&self, method: &Method, path: &str) -> Response<Vec<u8>> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let current = self.state.load_full();
        let sessions = &current.sessions;
        let now = now_ms();
        match (method, segments.as_slice()) {
            (&Method::GET, ["admin", "users", sub, "sessions"]) => {
                let Some(sub) = decode(sub) else {
                    return bad_request("the user is not valid UTF-8");
                };
                match sessions.list(&sub, now).await {
                    Ok(list) => {
                        let items: Vec<_> = list
                            .iter()
                            .map(|(key, r)| {
                                json!({
                                    "id_hash": key.as_str(),
                                    "created_at": r.deadlines.created_at,
                                    "last_seen": r.deadlines.last_seen,
                                    "idle_deadline": r.deadlines.idle,
                                    "absolute_deadline": r.deadlines.absolute,
                                    "identity_provider": r.provider.as_ref().map(|p| &p.name),
                                })
                            })
                            .collect();
                        json_response(StatusCode::OK, &json!({"sub": sub, "sessions": items}))
                    }
                    Err(e) => store_failed(e),
                }
            }
            (&Method::DELETE, ["admin", "users", sub, "sessions"]) => {
                let Some(sub) = decode(sub) else {
                    return bad_request("the user is not valid UTF-8");
                };
                match sessions.revoke_user(&sub).await {
                    Ok(n) => {
                        info!(revoked = n, "an operator revoked every session of a user");
                        json_response(StatusCode::OK, &json!({"revoked": n}))
                    }
                    Err(e) => store_failed(e),
                }
            }
            (&Method::DELETE, ["admin", "sessions", hash]) => {
                let Some(key) = StoreKey::parse(hash) else {
                    return bad_request("not a hashed session id (43 base64url characters)");
                };
                match sessions.revoke(&key, now).await {
                    Ok(true) => {
                        info!(session = key.log_tag(), "an operator revoked a session");
                        json_response(StatusCode::OK, &json!({"revoked": 1}))
                    }
                    Ok(false) => json_response(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "not_found", "message": "no such session"}),
                    ),
                    Err(e) => store_failed(e),
                }
            }
            (_, ["admin", ..]) => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "not_found", "message": "no such admin endpoint"}),
            ),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn decode(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn plain(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(body.as_bytes().to_vec())
        .unwrap_or_default()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    let mut text = body.to_string();
    text.push('\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", text.len())
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(text.into_bytes())
        .unwrap_or_default()
}

fn bad_request(message: &str) -> Response<Vec<u8>> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": "bad_request", "message": message}),
    )
}

fn store_failed(e: StoreError) -> Response<Vec<u8>> {
    warn!(error = %e, kind = e.kind(), "admin API: the session store failed");
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "session_store_unavailable", "message": e.to_string()}),
    )
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            "/readyz" => self.readyz().await,
            "/metrics" => self.metrics(),
            p if p == self.state.load().jwks.path() => self.jwks(session),
            p if p.starts_with("/admin/") => match self.refuse_unauthorized(session) {
                Some(refusal) => refusal,
                None => self.api(&method, p).await,
            },
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
