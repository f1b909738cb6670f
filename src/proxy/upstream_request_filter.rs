//! The request as the upstream sees it: the session cookie taken out of `Cookie`, the
//! forwarding headers, the signed assertion and the claim-mapped headers put in.
//!
//! Pingora calls this once per attempt, each time on a fresh copy of the client's request (a
//! retry after a reused connection failed gets a new copy), so it reads the context and never
//! consumes it: every attempt sends the same rewritten request.

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::Result;

use super::ctx::RequestCtx;

pub fn run(upstream_request: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    // Ours, whatever the client sent: the id that joins the access log and the app's logs.
    let mut id = uuid::Uuid::encode_buffer();
    let id = ctx.request_id.hyphenated().encode_lower(&mut id);
    upstream_request.insert_header(
        Bytes::from_static(b"X-Request-Id"),
        HeaderValue::from_str(id).expect("a UUID is a valid header value"),
    )?;
    if let Some(forwarded) = &ctx.forwarded_cookie {
        if forwarded.is_empty() {
            upstream_request.remove_header(&COOKIE);
        } else {
            // Replaces every inbound Cookie header.
            upstream_request.insert_header(COOKIE, forwarded.as_slice())?;
        }
    }
    // Appended: every inbound spelling of these was removed with the protected namespace,
    // and each attempt starts from a fresh copy of that stripped request.
    for (name, value) in &ctx.forwarded.headers {
        upstream_request.append_header(name.clone(), value.clone())?;
    }
    let (Some(active), Some(route)) = (ctx.session.active(), ctx.route) else {
        return Ok(());
    };
    let state = ctx.state();
    let route = state.routes.get(route);
    let ttl = route
        .assertion_ttl
        .map_or(state.signer.default_ttl(), |t| t.as_secs());
    let token = state.signer.header_value(
        &active.session,
        &active.key,
        &route.audience,
        ttl,
        ctx.now_ms / 1000,
    );
    // Appended, not inserted: request_filter removed every inbound header of the protected
    // namespace (the assertion and mapped headers included), so there is nothing to replace.
    upstream_request.append_header(state.assertion_name.clone(), token)?;
    // A session a provider signed in carries its access token to the app when the provider
    // is set to pass it, in place of any the client sent.
    if let Some(link) = &active.session.provider {
        if state
            .providers
            .by_name(&link.name)
            .is_some_and(|p| p.settings.pass_access_token)
        {
            match &link.access_token {
                Some(token) => {
                    upstream_request.insert_header(AUTHORIZATION, format!("Bearer {token}"))?;
                }
                None => {
                    upstream_request.remove_header(&AUTHORIZATION);
                }
            }
        }
    }
    // Values were rendered and sanitised when the session was prepared, in header order.
    for (name, value) in state
        .mapped_names
        .iter()
        .zip(active.session.header_values.iter())
    {
        if let Some(value) = value {
            if let Ok(value) = HeaderValue::from_str(value) {
                upstream_request.append_header(name.clone(), value)?;
            }
        }
    }
    Ok(())
}
