//! Clients for Redis nodes with the configured credentials (`username`, `password_file` /
//! `password_env`, which override any in a URL) and TLS material (CA, client certificate),
//! applied to every node of every mode.

use redis::{Client, ConnectionInfo, ProtocolVersion, RedisResult, TlsCertificates};

use crate::config::model::RedisStoreSettings;

/// `address` with the configured credentials applied (they override any in the URL).
pub fn node_info(
    address: &str,
    settings: &RedisStoreSettings,
    protocol: ProtocolVersion,
) -> RedisResult<ConnectionInfo> {
    let info = redis::IntoConnectionInfo::into_connection_info(address)?;
    let mut redis_settings = info.redis_settings().clone().set_protocol(protocol);
    if let Some(username) = &settings.username {
        redis_settings = redis_settings.set_username(username);
    }
    if let Some(password) = &settings.password {
        redis_settings = redis_settings.set_password(String::from_utf8_lossy(&password.0));
    }
    Ok(info.set_redis_settings(redis_settings))
}

/// A client for one node, trusting the configured CA and presenting the client certificate.
pub fn client_for(info: ConnectionInfo, settings: &RedisStoreSettings) -> RedisResult<Client> {
    match certificates(settings) {
        Some(certs) => Client::build_with_tls(info, certs),
        None => Client::open(info),
    }
}

pub(super) fn certificates(settings: &RedisStoreSettings) -> Option<TlsCertificates> {
    let tls = &settings.tls;
    if tls.ca.is_none() && tls.client_cert.is_none() {
        return None;
    }
    Some(TlsCertificates {
        client_tls: match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.0.clone(),
            }),
            _ => None,
        },
        root_cert: tls.ca.clone(),
    })
}
