//! `[tls]`: the HTTPS listeners, their certificates (read and checked here, so a bad file is a
//! problem at load, never at the first handshake), HTTP/2, the plain-listener redirect and HSTS.

use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

use super::problems::{parse_addr, Problems};
use crate::config::file::RawTls;
use crate::config::model::TlsListeners;
use crate::tls::Certificates;

pub(super) fn check(
    raw: &RawTls,
    plain: &[SocketAddr],
    base: &Path,
    p: &mut Problems,
) -> Option<TlsListeners> {
    let listen_raw = raw.listen.clone().unwrap_or_default();
    if listen_raw.is_empty() {
        p.add(
            "tls.listen",
            "needs at least one address, e.g. [\"0.0.0.0:8443\"]",
        );
    }
    let listen: Vec<SocketAddr> = listen_raw
        .iter()
        .enumerate()
        .filter_map(|(i, a)| parse_addr(a, &format!("tls.listen[{i}]"), p))
        .collect();
    for (i, addr) in listen.iter().enumerate() {
        if listen[..i].contains(addr) || plain.contains(addr) {
            p.add(
                format!("tls.listen[{i}]"),
                format!("{addr} is already a listener"),
            );
        }
    }
    if raw.certificate.is_empty() {
        p.add(
            "tls.certificate",
            "needs at least one [[tls.certificate]] with chain_file and key_file",
        );
    }
    let now = SystemTime::now();
    let mut certificates = Vec::new();
    for (i, c) in raw.certificate.iter().enumerate() {
        let at = format!("tls.certificate[{i}]");
        let (Some(chain), Some(key)) = (&c.chain_file, &c.key_file) else {
            p.add(at, "needs both chain_file and key_file (PEM)");
            continue;
        };
        match crate::tls::load(&base.join(chain), &base.join(key), now) {
            Ok(certificate) => certificates.push(certificate),
            Err(e) => p.add(at, e),
        }
    }
    let redirect_plain = raw.redirect_plain.unwrap_or(false);
    if redirect_plain && plain.is_empty() {
        p.add(
            "tls.redirect_plain",
            "needs a plain listener in server.listen to redirect from",
        );
    }
    let hsts = match raw.hsts_max_age {
        None => {
            if raw.hsts_include_subdomains.is_some() || raw.hsts_preload.is_some() {
                p.add(
                    "tls.hsts_max_age",
                    "must be set for hsts_include_subdomains or hsts_preload to apply",
                );
            }
            None
        }
        Some(max_age) => {
            let include = raw.hsts_include_subdomains.unwrap_or(false);
            let preload = raw.hsts_preload.unwrap_or(false);
            // The preload list's own rules (hstspreload.org).
            if preload && (!include || max_age.as_secs() < 31_536_000) {
                p.add(
                    "tls.hsts_preload",
                    "needs hsts_include_subdomains = true and hsts_max_age of at least 365d",
                );
            }
            let mut value = format!("max-age={}", max_age.as_secs());
            if include {
                value.push_str("; includeSubDomains");
            }
            if preload {
                value.push_str("; preload");
            }
            Some(value)
        }
    };
    if certificates.len() != raw.certificate.len() || listen.len() != listen_raw.len() {
        return None;
    }
    Some(TlsListeners {
        listen,
        certificates: Certificates::new(certificates),
        http2: raw.http2.unwrap_or(true),
        redirect_plain,
        hsts,
    })
}
