//! Picks the backend for a request from its route's pool: by the pool's affinity key (the
//! session's hashed id, or its subject) so a user stays on one backend, otherwise spread.

use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use crate::config::model::Affinity;
use crate::cookie::SessionCookie;
use crate::upstream::Pool;

/// The bytes the pool hashes for this request, if it has any.
fn affinity_key(pool: &Pool, ctx: &RequestCtx) -> Option<Vec<u8>> {
    match pool.affinity {
        Affinity::None => None,
        Affinity::Session => match (&ctx.session, &ctx.cookie) {
            (Some(active), _) => Some(active.key.as_str().as_bytes().to_vec()),
            // Public routes do not resolve the session; its id still pins the backend.
            (None, SessionCookie::Valid(id)) => Some(id.store_key().as_str().as_bytes().to_vec()),
            _ => None,
        },
        Affinity::Sub => ctx
            .session
            .as_ref()
            .map(|active| active.session.sub.as_bytes().to_vec()),
    }
}

pub fn select(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let state = ctx.state();
    let route = ctx
        .route
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
    let pool = state.pools.get(state.routes.get(route).upstream);
    let key = affinity_key(pool, ctx).unwrap_or_else(|| pool.rotating_key().to_vec());
    let addr = pool.select(&key, &ctx.tried).ok_or_else(|| {
        Error::explain(
            ErrorType::ConnectNoRoute,
            format!("no healthy backend left in upstream \"{}\"", pool.name),
        )
    })?;
    ctx.tried.push(addr);
    Ok(Box::new(HttpPeer::new(addr, false, String::new())))
}

/// A refused connection takes the backend out for a while, and the request is retried on the
/// next backend of the ring while the pool has untried ones.
pub fn retry_connect(ctx: &RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let (Some(state), Some(route), Some(addr)) = (&ctx.state, ctx.route, ctx.tried.last()) {
        let pool = state.pools.get(state.routes.get(route).upstream);
        pool.mark_failed(*addr);
        if ctx.tried.len() < pool.len() {
            e.set_retry(true);
        }
    }
    e
}
