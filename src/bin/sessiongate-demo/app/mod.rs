//! The bundled demo upstream: a pretend "legacy" web app that newcomers run behind
//! sessiongate. It is stateless and trusts the proxy: it learns who the user is from the
//! identity headers (`X-Auth-*` and the signed assertion) and changes the session only by
//! answering with control headers (`X-Sessiongate-Login`, `-Update`, `-Logout`). Every page is
//! plain server-rendered HTML that shows what the app received, so it doubles as a debugging
//! aid for a new route.
//!
//! Routes: `GET /` (identity, headers, assertion, profile and sign-out forms), `GET /public`,
//! `GET|POST /login`, `POST /logout`, `POST /logout-all`, `POST /profile`, `GET /healthz`.
//!
//! The forms carry no CSRF token: the demo relies on sessiongate's `SameSite=Lax` cookie, as
//! the legacy apps it stands for usually do.

mod assertion;
mod control;
mod html;
mod pages;
mod signin;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

/// How the demo app reads the identity sessiongate sends.
#[derive(Clone)]
pub struct DemoSettings {
    /// The request header that carries the signed assertion (the proxy's
    /// `identity.assertion_header`).
    pub assertion_header: String,
    /// The HMAC key to verify the HS256 assertion with; `None` only displays it.
    pub verify_key: Option<Vec<u8>>,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            assertion_header: "X-Sessiongate-Assertion".into(),
            verify_key: None,
        }
    }
}

// Hand-written so that a logged `DemoSettings` never shows the key.
impl fmt::Debug for DemoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoSettings")
            .field("assertion_header", &self.assertion_header)
            .field(
                "verify_key",
                &self.verify_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The demo app's routes, ready to serve or to nest in a test harness.
pub fn router(settings: DemoSettings) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/public", get(pages::public))
        .route("/login", get(pages::login).post(control::login))
        .route("/logout", post(control::logout))
        .route("/logout-all", post(control::logout_all))
        .route("/profile", post(control::profile))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(pages::not_found)
        .with_state(Arc::new(settings))
}

/// Serves the demo app on `listener` until the process stops or accepting fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: DemoSettings,
) -> std::io::Result<()> {
    axum::serve(listener, router(settings)).await
}
