//! What a Redis error means for the store: a timeout, a node that cannot be reached (or no
//! longer takes writes), or a command the server refused.

use std::time::Duration;

use redis::RedisError;

use crate::store::StoreError;

/// A `READONLY` reply: the node was demoted in a failover; nothing was written.
pub(super) fn is_readonly(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

pub(super) fn map_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout(Duration::ZERO)
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || is_readonly(&e)
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Command(e.to_string())
    }
}

/// Whether an error means the master connection is gone or no longer the master.
pub(super) fn needs_new_master(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || is_readonly(error)
}
