//! A route's request-body limits: bodies declared larger than `max_body_bytes` are refused
//! before any byte is read, chunked bodies are counted as they pass, and small declared bodies
//! are read whole (within `body_timeout`) before the app is contacted, so that a client that
//! dribbles its upload holds no worker thread of a legacy app.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, EXPECT};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::info;

use super::ctx::RequestCtx;
use super::respond::LocalResponse;
use crate::config::model::BodyLimits;

/// What the limits make of a request before it goes on.
pub enum Verdict {
    /// Forward it (its body, if buffered, is in Pingora's replay buffer).
    Forward,
    Refuse(LocalResponse),
}

fn too_large() -> LocalResponse {
    LocalResponse::text(413, "Request body too large.\n").with_header("connection", "close".into())
}

/// The body length the request declares (one agreed `Content-Length`, checked earlier).
fn declared(session: &Session) -> Option<u64> {
    let value = session.req_header().headers.get(CONTENT_LENGTH)?;
    value.to_str().ok()?.trim().parse().ok()
}

/// Applies `limits` to the request's body before it is forwarded.
pub async fn admit(session: &mut Session, limits: BodyLimits) -> Result<Verdict> {
    let length = declared(session);
    if let (Some(max), Some(length)) = (limits.max_bytes, length) {
        if length > max {
            session.set_keepalive(None);
            info!(length, max, "refused a request body over the route's limit");
            return Ok(Verdict::Refuse(too_large()));
        }
    }
    let Some(buffer) = limits.buffer_bytes else {
        return Ok(Verdict::Forward);
    };
    // Only a declared length can be known to fit the buffer before it is read.
    let Some(length) = length.filter(|l| (1..=buffer).contains(l)) else {
        return Ok(Verdict::Forward);
    };
    let expects_continue = session
        .req_header()
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        // The client waits for the go-ahead the app would have given; the app, getting the
        // whole body at once, is not asked for it.
        session.as_mut().write_continue_response().await?;
        session.req_header_mut().remove_header(&EXPECT);
    }
    session.as_mut().enable_retry_buffering();
    let read = async {
        let mut got = 0u64;
        while let Some(chunk) = session.as_mut().read_request_body().await? {
            got += chunk.len() as u64;
        }
        Ok::<u64, Box<Error>>(got)
    };
    match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(got)) if got == length => Ok(Verdict::Forward),
        Ok(Ok(got)) => Error::e_explain(
            ErrorType::InvalidHTTPHeader,
            format!("the body ended after {got} of {length} declared bytes"),
        )
        .map_err(|e| e.into_down()),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            session.set_keepalive(None);
            info!(length, timeout = ?limits.timeout, "a buffered request body did not arrive in time");
            Ok(Verdict::Refuse(
                LocalResponse::text(408, "Request timeout.\n")
                    .with_header("connection", "close".into()),
            ))
        }
    }
}

/// Counts body bytes as they pass to the app (chunked bodies, which declare no length):
/// beyond the route's limit the exchange is cut and the client gets 413.
pub fn count(ctx: &mut RequestCtx, chunk: &Option<Bytes>) -> Result<()> {
    let Some(left) = ctx.body_left.as_mut() else {
        return Ok(());
    };
    let len = chunk.as_ref().map_or(0, |c| c.len() as u64);
    match left.checked_sub(len) {
        Some(rest) => {
            *left = rest;
            Ok(())
        }
        None => {
            info!("cut a request body over the route's limit");
            Error::e_explain(
                ErrorType::HTTPStatus(413),
                "request body over max_body_bytes",
            )
        }
    }
}
