//! Which nodes hold session keys: the master (standalone or the one the sentinels name), or
//! every primary of a cluster, read from `CLUSTER SLOTS`. The invalidation listener tracks each
//! of them, and the active-sessions count scans each.

use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, ProtocolVersion,
    RedisError, RedisResult, Value,
};

use super::connect::{client_for, node_info};
use super::sentinel::sentinel_client;
use crate::config::model::{RedisStoreSettings, RedisTopology};

/// Clients for every node that holds session keys (the master, or each cluster primary),
/// speaking `protocol`: the invalidation listener tracks each of them.
pub async fn primaries(
    settings: &RedisStoreSettings,
    protocol: ProtocolVersion,
) -> RedisResult<Vec<Client>> {
    match &settings.topology {
        RedisTopology::Standalone { url } => Ok(vec![client_for(
            node_info(url, settings, protocol)?,
            settings,
        )?]),
        RedisTopology::Sentinel { .. } => {
            let mut sentinel = sentinel_client(settings, protocol)?;
            Ok(vec![sentinel.async_get_client().await?])
        }
        RedisTopology::Cluster { nodes } => {
            let mut last_error = None;
            for node in nodes {
                match cluster_primaries(node, settings, protocol).await {
                    Ok(clients) => return Ok(clients),
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error
                .unwrap_or_else(|| RedisError::from((ErrorKind::Client, "no cluster nodes"))))
        }
    }
}

/// The primaries of the cluster `seed` belongs to, from `CLUSTER SLOTS`.
async fn cluster_primaries(
    seed: &str,
    settings: &RedisStoreSettings,
    protocol: ProtocolVersion,
) -> RedisResult<Vec<Client>> {
    let seed_info = node_info(seed, settings, protocol)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.connect_timeout));
    let mut conn = client_for(seed_info.clone(), settings)?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    let mut primaries = std::collections::BTreeSet::new();
    for range in slots {
        // [start, end, [host, port, id, ...], replicas...]
        if let Value::Array(parts) = range {
            if let Some(Value::Array(node)) = parts.get(2) {
                let host = match node.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                let port = match node.get(1) {
                    Some(Value::Int(p)) => *p,
                    _ => continue,
                };
                // An empty host means "the address you reached me on".
                let host = if host.is_empty() {
                    seed_host(&seed_info)
                } else {
                    host
                };
                primaries.insert((host, port));
            }
        }
    }
    let scheme = if settings.topology.uses_tls() {
        "rediss"
    } else {
        "redis"
    };
    primaries
        .into_iter()
        .map(|(host, port)| {
            let info = node_info(&format!("{scheme}://{host}:{port}"), settings, protocol)?;
            client_for(info, settings)
        })
        .collect()
}

fn seed_host(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".to_string(),
    }
}
