//! Picks the backend for a request from its route's pool.

use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;

pub fn select(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let state = ctx.state();
    let route = ctx
        .route
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
    let pool = state.pools.get(state.routes.get(route).upstream);
    let attempt = ctx.attempts;
    ctx.attempts += 1;
    let addr = pool
        .select(&mut ctx.first_backend, attempt)
        .ok_or_else(|| {
            Error::explain(
                ErrorType::ConnectNoRoute,
                format!("every backend of upstream \"{}\" refused", pool.name),
            )
        })?;
    Ok(Box::new(HttpPeer::new(addr, false, String::new())))
}

/// A connect failure is retried on the next backend while the pool has untried ones.
pub fn retry_connect(ctx: &RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let (Some(state), Some(route)) = (&ctx.state, ctx.route) {
        let pool = state.pools.get(state.routes.get(route).upstream);
        if ctx.attempts < pool.len() {
            e.set_retry(true);
        }
    }
    e
}
