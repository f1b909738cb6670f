//! `[server]`: listeners, threads, the admin listener and token, shutdown, the upgrade socket,
//! and the trust boundary settings (trusted proxies, `Forwarded`, TRACE).

use std::net::SocketAddr;
use std::path::Path;

use super::defaults;
use super::problems::{parse_addr, positive, Problems};
use super::secrets::{read_secret, Secret, SecretKeys};
use crate::config::file::RawServer;
use crate::config::model::{ConnectionLimits, ServerSettings};

/// `tls`: whether there are HTTPS listeners (then the plain ones may be none, and are none
/// unless listed).
pub(super) fn check(
    raw: &RawServer,
    tls: bool,
    base: &Path,
    p: &mut Problems,
) -> Option<ServerSettings> {
    let listen_raw = raw.listen.clone().unwrap_or_else(|| {
        if tls {
            Vec::new()
        } else {
            vec![defaults::LISTEN.to_string()]
        }
    });
    if listen_raw.is_empty() && !tls {
        p.add(
            "server.listen",
            "needs at least one address (or HTTPS listeners in [tls])",
        );
    }
    let listen: Vec<SocketAddr> = listen_raw
        .iter()
        .enumerate()
        .filter_map(|(i, a)| parse_addr(a, &format!("server.listen[{i}]"), p))
        .collect();
    for (i, addr) in listen.iter().enumerate() {
        if listen[..i].contains(addr) {
            p.add(
                format!("server.listen[{i}]"),
                format!("{addr} is listed twice"),
            );
        }
    }
    let threads = raw.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 || threads > 1024 {
        p.add("server.threads", "must be between 1 and 1024");
    }
    let admin = parse_addr(
        raw.admin_listen
            .as_deref()
            .unwrap_or(defaults::ADMIN_LISTEN),
        "server.admin_listen",
        p,
    );
    if let Some(admin) = admin.filter(|a| listen.contains(a)) {
        p.add(
            "server.admin_listen",
            format!("{admin} is also a public listener; the admin listener must be separate"),
        );
    }
    let shutdown_grace = raw.shutdown_grace.unwrap_or(defaults::SHUTDOWN_GRACE);
    let admin_token = read_secret(
        Secret {
            file: raw.admin_token_file.as_deref(),
            env: raw.admin_token_env.as_deref(),
            insecure_inline: None,
            required: false,
        },
        SecretKeys::stem("server", "admin_token"),
        base,
        p,
    )
    .map(|(token, _)| token);
    if let Some(token) = &admin_token {
        if token.0.len() < 16 {
            p.add(
                "server.admin_token_file",
                "the admin token must be at least 16 bytes (e.g. `openssl rand -hex 32`)",
            );
        }
    }
    let upgrade_sock = base.join(
        raw.upgrade_sock
            .as_deref()
            .unwrap_or(defaults::UPGRADE_SOCK),
    );
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, net)| parse_net(net, &format!("server.trusted_proxies[{i}]"), p))
        .collect();
    Some(ServerSettings {
        listen,
        threads,
        admin_listen: admin?,
        shutdown_grace,
        admin_token,
        log_sub: raw.log_sub.unwrap_or(false),
        upgrade_sock,
        trusted_proxies,
        forwarded_header: raw.forwarded_header.unwrap_or(false),
        allow_trace: raw.allow_trace.unwrap_or(false),
        connections: connection_limits(raw, p),
    })
}

/// An address (`10.0.0.1`, `::1`) or a CIDR range (`10.0.0.0/8`).
fn parse_net(value: &str, path: &str, p: &mut Problems) -> Option<ipnet::IpNet> {
    if let Ok(net) = value.parse::<ipnet::IpNet>() {
        if net.addr() != net.network() {
            p.add(
                path,
                format!(
                    "\"{value}\" has host bits set; the range is \"{}\"",
                    net.trunc()
                ),
            );
            return None;
        }
        return Some(net);
    }
    match value.parse::<std::net::IpAddr>() {
        Ok(addr) => Some(ipnet::IpNet::from(addr)),
        Err(_) => {
            p.add(
                path,
                format!("\"{value}\" is not an IP address or CIDR range, e.g. \"10.0.0.0/8\""),
            );
            None
        }
    }
}

fn connection_limits(raw: &RawServer, p: &mut Problems) -> ConnectionLimits {
    let header_timeout = positive(
        raw.header_timeout,
        defaults::HEADER_TIMEOUT,
        "server.header_timeout",
        p,
    );
    let keepalive_timeout = positive(
        raw.keepalive_timeout,
        defaults::KEEPALIVE_TIMEOUT,
        "server.keepalive_timeout",
        p,
    );
    let max_header_bytes = raw.max_header_bytes.unwrap_or(defaults::MAX_HEADER_BYTES);
    if !(1024..=1024 * 1024).contains(&max_header_bytes) {
        p.add(
            "server.max_header_bytes",
            "must be between 1024 and 1048576 (Pingora reads at most 1 MiB of head)",
        );
    }
    let max_headers = raw.max_headers.unwrap_or(defaults::MAX_HEADERS);
    if !(8..=256).contains(&max_headers) {
        p.add(
            "server.max_headers",
            "must be between 8 and 256 (Pingora parses at most 256 headers)",
        );
    }
    let max_connections = raw.max_connections.unwrap_or(defaults::MAX_CONNECTIONS);
    if max_connections == 0 {
        p.add("server.max_connections", "must be greater than zero");
    }
    if let Some(per_client) = raw.max_connections_per_client {
        if per_client == 0 || per_client > max_connections {
            p.add(
                "server.max_connections_per_client",
                format!("must be between 1 and server.max_connections ({max_connections})"),
            );
        }
    }
    ConnectionLimits {
        header_timeout,
        keepalive_timeout,
        max_header_bytes,
        max_headers,
        max_connections,
        max_connections_per_client: raw.max_connections_per_client,
    }
}
