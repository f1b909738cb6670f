//! Responses the proxy writes itself (no upstream involved): refusals, redirects to login, and
//! store outages. All carry `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`,
//! and over HTTPS the configured `Strict-Transport-Security`, like the app's responses.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;

/// A response decided by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: std::borrow::Cow<'static, str>,
}

impl LocalResponse {
    pub fn text(status: u16, body: &'static str) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: std::borrow::Cow::Borrowed(body),
        }
    }

    /// A response with a body made for this request (a page naming the provider's error, a
    /// JSON answer).
    pub fn owned(status: u16, content_type: &'static str, body: String) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            content_type,
            body: std::borrow::Cow::Owned(body),
        }
    }

    pub fn json(status: u16, body: &'static str) -> Self {
        LocalResponse {
            content_type: "application/json",
            ..Self::text(status, body)
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Writes the whole response to the client of the request `ctx` belongs to.
    pub async fn send(self, session: &mut Session, ctx: &RequestCtx) -> Result<()> {
        let mut header = ResponseHeader::build(self.status, Some(self.headers.len() + 5))?;
        header.insert_header("content-type", self.content_type)?;
        header.insert_header("content-length", self.body.len().to_string())?;
        header.insert_header("cache-control", "no-store")?;
        header.insert_header("x-content-type-options", "nosniff")?;
        if let Some(hsts) = ctx.hsts() {
            header.insert_header("strict-transport-security", hsts)?;
        }
        for (name, value) in self.headers {
            header.append_header(name, value)?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(header), head_only)
            .await?;
        if !head_only {
            let body = match self.body {
                std::borrow::Cow::Borrowed(b) => Bytes::from_static(b.as_bytes()),
                std::borrow::Cow::Owned(b) => Bytes::from(b),
            };
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}

/// The status the client gets when proxying `e` failed, 0 when the client's connection is
/// already gone: the error's own status, 504 when the app did not answer in time, 502 for
/// other failures on the app's side, 408 for a client too slow to send its request, 400 for
/// other faults of the client's, 500 for the proxy's own.
pub fn failure_status(e: &pingora::Error) -> u16 {
    use pingora::{ErrorSource, ErrorType::*};
    match e.etype() {
        HTTPStatus(code) => *code,
        etype => match e.esource() {
            ErrorSource::Upstream => match etype {
                ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => 504,
                _ => 502,
            },
            ErrorSource::Downstream => match etype {
                WriteError | ReadError | ConnectionClosed => 0,
                ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// What the client reads for a failure status.
fn failure_body(status: u16) -> &'static str {
    match status {
        400 => "Bad request.\n",
        408 => "Request timeout.\n",
        413 => "Request body too large.\n",
        502 => "Bad gateway.\n",
        503 => "Service unavailable.\n",
        504 => "Gateway timeout.\n",
        _ if status >= 500 => "Internal error.\n",
        _ => "Request refused.\n",
    }
}

/// Answers a request whose proxying failed, with the headers of every response of ours
/// (Pingora's own error page would lack them), unless a response has already begun.
/// The connection is not kept: what the app or the client left half-sent is unknown.
pub async fn fail(session: &mut Session, e: &pingora::Error, ctx: &RequestCtx) -> u16 {
    let status = failure_status(e);
    if status == 0 {
        return 0;
    }
    session.set_keepalive(None);
    let started = session
        .response_written()
        .is_some_and(|r| !r.status.is_informational() || r.status == 101);
    if !started {
        let response = LocalResponse::text(status, failure_body(status))
            .with_header("connection", "close".into());
        if let Err(e) = response.send(session, ctx).await {
            tracing::debug!(error = %e, "could not send an error response");
        }
    }
    status
}
