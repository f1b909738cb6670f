//! Upstream pools: where a route's requests go.

mod pools;

pub use pools::{Pool, Pools};
