//! The key set answered by the proxy itself, before routing: no route can shadow its path and
//! no request for it reaches an app, whatever its spelling (the check is on the path as the
//! route table reads it).

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;
use crate::identity::Jwks;

/// Answers the request when `mapped_path` is the key set's path; `Ok(true)` once answered.
pub async fn serve(
    session: &mut Session,
    ctx: &RequestCtx,
    jwks: &Jwks,
    mapped_path: &[u8],
) -> Result<bool> {
    if mapped_path != jwks.path().as_bytes() {
        return Ok(false);
    }
    let req = session.req_header();
    let reply = jwks.answer(
        &req.method,
        req.headers
            .get(http::header::IF_NONE_MATCH)
            .map(|v| v.as_bytes()),
    );
    let mut header = ResponseHeader::build(reply.status, Some(reply.headers.len() + 4))?;
    for (name, value) in reply.headers {
        header.insert_header(name, value)?;
    }
    if reply.status != 304 {
        header.insert_header("content-length", reply.body.len().to_string())?;
    }
    header.insert_header("x-content-type-options", "nosniff")?;
    if let Some(hsts) = ctx.hsts() {
        header.insert_header("strict-transport-security", hsts)?;
    }
    let head_only = req.method == http::Method::HEAD || reply.body.is_empty();
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(true)
}
