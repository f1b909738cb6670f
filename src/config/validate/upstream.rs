//! `[[upstream]]`: backend pools, their affinity and health checks.

use std::collections::HashSet;

use super::defaults;
use super::problems::{parse_addr, positive, Problems};
use crate::config::file::{RawHealthCheck, RawUpstream};
use crate::config::model::{Affinity, HealthCheck, UpstreamSettings};

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
        if !name.is_empty() {
            out.push(UpstreamSettings {
                name,
                backends,
                affinity,
                health,
                case_insensitive: up.case_insensitive.unwrap_or(false),
            });
        }
    }
    out
}
