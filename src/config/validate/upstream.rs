//! `[[upstream]]`: backend pools, their affinity and health checks.

use std::collections::HashSet;

use super::defaults;
use super::problems::{parse_addr, positive, Problems};
use crate::config::file::{RawHealthCheck, RawUpstream};
use crate::config::model::{
    Affinity, HealthCheck, UpstreamSettings, UpstreamTimeouts, UpstreamTls,
};

pub(super) fn check(raw: &[RawUpstream], p: &mut Problems) -> Vec<UpstreamSettings> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, up) in raw.iter().enumerate() {
        let path = format!("upstream[{i}]");
        let name = match &up.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => {
                p.add(format!("{path}.name"), "every upstream needs a name");
                String::new()
            }
        };
        if !name.is_empty() && !names.insert(name.clone()) {
            p.add(
                format!("{path}.name"),
                format!("upstream \"{name}\" is defined twice"),
            );
        }
        if up.backends.is_empty() {
            p.add(
                format!("{path}.backends"),
                "needs at least one backend, e.g. [\"127.0.0.1:8000\"]",
            );
        }
        let backends = up
            .backends
            .iter()
            .enumerate()
            .filter_map(|(j, b)| parse_addr(b, &format!("{path}.backends[{j}]"), p))
            .collect();
        let interval = positive(
            up.health_interval,
            defaults::HEALTH_INTERVAL,
            &format!("{path}.health_interval"),
            p,
        );
        let health = match up.health_check.unwrap_or(RawHealthCheck::Tcp) {
            RawHealthCheck::None => HealthCheck::None,
            RawHealthCheck::Tcp => HealthCheck::Tcp { interval },
            RawHealthCheck::Http => {
                let probe = up.health_path.clone().unwrap_or_else(|| "/".to_string());
                if !probe.starts_with('/')
                    || probe.bytes().any(|b| b.is_ascii_control() || b == b' ')
                {
                    p.add(
                        format!("{path}.health_path"),
                        format!("\"{probe}\" must be a path starting with '/'"),
                    );
                }
                HealthCheck::Http {
                    path: probe,
                    interval,
                }
            }
        };
        if up.health_path.is_some() && !matches!(health, HealthCheck::Http { .. }) {
            p.add(
                format!("{path}.health_path"),
                "only applies to health_check = \"http\"",
            );
        }
        let affinity = up.affinity.unwrap_or(Affinity::Session);
        let timeouts = UpstreamTimeouts {
            connect: positive(
                up.connect_timeout,
                defaults::UPSTREAM_CONNECT_TIMEOUT,
                &format!("{path}.connect_timeout"),
                p,
            ),
            read: positive(
                up.read_timeout,
                defaults::UPSTREAM_READ_TIMEOUT,
                &format!("{path}.read_timeout"),
                p,
            ),
            write: positive(
                up.write_timeout,
                defaults::UPSTREAM_WRITE_TIMEOUT,
                &format!("{path}.write_timeout"),
                p,
            ),
            total: up.total_timeout,
        };
        if timeouts.total.is_some_and(|t| t.is_zero()) {
            p.add(
                format!("{path}.total_timeout"),
                "must be greater than zero (leave it out for none)",
            );
        }
        let tls = check_tls(up, &path, p);
        if !name.is_empty() {
            out.push(UpstreamSettings {
                name,
                backends,
                affinity,
                health,
                case_insensitive: up.case_insensitive.unwrap_or(false),
                timeouts,
                tls,
            });
        }
    }
    out
}

/// The TLS settings of an upstream: only with `tls = true`, a server name to verify the
/// certificate against unless verification is turned off, and a CA file that loads.
fn check_tls(up: &RawUpstream, path: &str, p: &mut Problems) -> Option<UpstreamTls> {
    let verify = !up.insecure_skip_verify.unwrap_or(false);
    if up.tls != Some(true) {
        for (key, set) in [
            ("tls_server_name", up.tls_server_name.is_some()),
            ("tls_ca_file", up.tls_ca_file.is_some()),
            ("insecure_skip_verify", up.insecure_skip_verify.is_some()),
        ] {
            if set {
                p.add(format!("{path}.{key}"), "only applies with tls = true");
            }
        }
        return None;
    }
    let server_name = up.tls_server_name.clone().unwrap_or_default();
    if verify && server_name.is_empty() {
        p.add(
            format!("{path}.tls_server_name"),
            "is needed with tls = true: the name the backends' certificate must carry \
             (verification cannot be done without one)",
        );
    } else if !server_name.is_empty()
        && rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err()
    {
        p.add(
            format!("{path}.tls_server_name"),
            format!("\"{server_name}\" is not a DNS name or IP address"),
        );
    }
    let ca = match &up.tls_ca_file {
        Some(file) if !verify => {
            p.add(
                format!("{path}.tls_ca_file"),
                format!(
                    "{} is never used: insecure_skip_verify = true accepts any certificate",
                    file.display()
                ),
            );
            None
        }
        Some(file) => match crate::tls::load_ca(file) {
            Ok(certs) => Some(certs),
            Err(e) => {
                p.add(format!("{path}.tls_ca_file"), e);
                None
            }
        },
        None => None,
    };
    Some(UpstreamTls {
        server_name,
        ca,
        verify,
    })
}
