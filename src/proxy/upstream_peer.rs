//! Picks the backend for a request from its route's pool: by the pool's affinity key (the
//! session's hashed id, or its subject) so a user stays on one backend, otherwise spread.

use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use crate::config::model::Affinity;
use crate::upstream::Pool;

/// What the pool hashes for a request.
enum AffinityKey<'a> {
    Borrowed(&'a [u8]),
    Rotating([u8; 8]),
}

impl AffinityKey<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            AffinityKey::Borrowed(b) => b,
            AffinityKey::Rotating(b) => b,
        }
    }
}

/// The bytes the pool hashes for this request: its affinity key, or a rotating one.
fn affinity_key<'a>(pool: &Pool, ctx: &'a RequestCtx) -> AffinityKey<'a> {
    let key = match pool.affinity {
        Affinity::None => None,
        // A cookie's key pins the backend even where the session was not resolved (public
        // routes) or not found.
        Affinity::Session => ctx.session.key().map(|k| k.as_str().as_bytes()),
        Affinity::Sub => ctx.session.active().map(|a| a.session.sub.as_bytes()),
    };
    key.map_or_else(
        || AffinityKey::Rotating(pool.rotating_key()),
        AffinityKey::Borrowed,
    )
}

/// A connection-pool group no other attempt shares, so the attempt cannot be handed a pooled
/// connection: each retry after a dropped kept-alive connection gets its own. Its connection
/// is not kept after the request (an idle timeout of zero; Pingora closes it at its idle
/// timer's next tick).
fn fresh_connection_group() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) | 1 << 63
}

pub fn select(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let state = ctx.state();
    let route = ctx
        .route
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
    let pool = state.pools.get(state.routes.get(route).upstream);
    if ctx.tried.is_empty() {
        // The first attempt starts the exchange's total deadline; retries share it.
        ctx.upstream_deadline = pool.timeouts.total.map(|t| std::time::Instant::now() + t);
    }
    let left = ctx
        .upstream_deadline
        .map(|d| d.saturating_duration_since(std::time::Instant::now()));
    if left.is_some_and(|left| left.is_zero()) {
        return Error::e_explain(
            ErrorType::ConnectTimedout,
            "the upstream's total_timeout passed before a backend was reached",
        )
        .map_err(|e| e.into_up());
    }
    if std::mem::take(&mut ctx.retry_fresh) {
        // The backend closed a kept-alive connection as the request went out: that says
        // nothing about the backend, so the same one is asked again, on a new connection.
        if let Some(addr) = ctx.tried.last().copied() {
            let mut peer = pool.peer(addr, left);
            peer.group_key = fresh_connection_group();
            peer.options.idle_timeout = Some(std::time::Duration::ZERO);
            return Ok(Box::new(peer));
        }
    }
    let addr = pool
        .select(affinity_key(pool, ctx).as_bytes(), &ctx.tried)
        .ok_or_else(|| {
            Error::explain(
                ErrorType::ConnectNoRoute,
                format!("no healthy backend left in upstream \"{}\"", pool.name),
            )
        })?;
    ctx.tried.push(addr);
    Ok(Box::new(pool.peer(addr, left)))
}

/// An error while proxying on a connection: Pingora's own policy (only idempotent requests
/// whose body can be replayed, and only when the connection was a reused one) decides whether
/// to retry; a retry goes to the same backend on a fresh connection.
pub fn retry_reused(
    ctx: &mut RequestCtx,
    idempotent_and_replayable: bool,
    client_reused: bool,
    mut e: Box<Error>,
) -> Box<Error> {
    if idempotent_and_replayable {
        e.retry.decide_reuse(client_reused);
    } else {
        e.set_retry(false);
    }
    ctx.retry_fresh = e.retry();
    e
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

/// The upstream's total deadline, checked as response body bytes arrive: past it the
/// exchange is cut (a response that has begun can only be cut short).
pub fn within_total(ctx: &RequestCtx) -> Result<()> {
    match ctx.upstream_deadline {
        Some(deadline) if std::time::Instant::now() > deadline => Error::e_explain(
            ErrorType::ReadTimedout,
            "the upstream's total_timeout passed",
        )
        .map_err(|e| e.into_up()),
        _ => Ok(()),
    }
}
