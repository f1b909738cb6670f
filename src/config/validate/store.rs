//! `[store]`: the memory store, or Redis (standalone, Sentinel, Cluster) with its TLS files,
//! credentials, timeouts, renewal batching and circuit breaker.

use std::path::Path;

use super::defaults;
use super::problems::{positive, Problems};
use super::secrets::{read_secret, Secret, SecretKeys};
use crate::config::file::{RawRedisMode, RawStore, RawStoreKind};
use crate::config::model::*;

pub(super) fn check(raw: &RawStore, base: &Path, p: &mut Problems) -> Option<StoreSettings> {
    match raw.kind.unwrap_or(RawStoreKind::Memory) {
        RawStoreKind::Memory => {
            for (set, key) in [
                (raw.url.is_some(), "url"),
                (raw.key_prefix.is_some(), "key_prefix"),
                (raw.command_timeout.is_some(), "command_timeout"),
                (raw.connect_timeout.is_some(), "connect_timeout"),
                (
                    raw.renewal_flush_interval.is_some(),
                    "renewal_flush_interval",
                ),
                (raw.renewal_batch_size.is_some(), "renewal_batch_size"),
                (raw.breaker_failures.is_some(), "breaker_failures"),
                (raw.breaker_open.is_some(), "breaker_open"),
                (raw.username.is_some(), "username"),
                (raw.password_file.is_some(), "password_file"),
                (raw.password_env.is_some(), "password_env"),
                (raw.mode.is_some(), "mode"),
                (raw.sentinels.is_some(), "sentinels"),
                (raw.master_name.is_some(), "master_name"),
                (raw.nodes.is_some(), "nodes"),
                (raw.tls_ca_file.is_some(), "tls_ca_file"),
                (raw.tls_cert_file.is_some(), "tls_cert_file"),
                (raw.tls_key_file.is_some(), "tls_key_file"),
            ] {
                if set {
                    p.add(
                        format!("store.{key}"),
                        "only applies to kind = \"redis\"; remove it or set store.kind = \"redis\"",
                    );
                }
            }
            let max_sessions = raw.max_sessions.unwrap_or(defaults::MAX_SESSIONS);
            if max_sessions == 0 {
                p.add("store.max_sessions", "must be greater than zero");
            }
            let sweep_interval = positive(
                raw.sweep_interval,
                defaults::SWEEP_INTERVAL,
                "store.sweep_interval",
                p,
            );
            Some(StoreSettings::Memory(MemoryStoreSettings {
                max_sessions,
                sweep_interval,
            }))
        }
        RawStoreKind::Redis => {
            for (set, key) in [
                (raw.max_sessions.is_some(), "max_sessions"),
                (raw.sweep_interval.is_some(), "sweep_interval"),
            ] {
                if set {
                    p.add(
                        format!("store.{key}"),
                        "only applies to kind = \"memory\"; Redis expires keys itself",
                    );
                }
            }
            let topology = check_redis_topology(raw, p);
            let tls = check_redis_tls(raw, &topology, base, p);
            let key_prefix = raw
                .key_prefix
                .clone()
                .unwrap_or_else(|| defaults::KEY_PREFIX.to_string());
            if key_prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                p.add(
                    "store.key_prefix",
                    "must not contain spaces or control characters",
                );
            }
            let command_timeout = positive(
                raw.command_timeout,
                defaults::COMMAND_TIMEOUT,
                "store.command_timeout",
                p,
            );
            let connect_timeout = positive(
                raw.connect_timeout,
                defaults::CONNECT_TIMEOUT,
                "store.connect_timeout",
                p,
            );
            let renewal_flush_interval = positive(
                raw.renewal_flush_interval,
                defaults::RENEWAL_FLUSH_INTERVAL,
                "store.renewal_flush_interval",
                p,
            );
            let renewal_batch_size = raw
                .renewal_batch_size
                .unwrap_or(defaults::RENEWAL_BATCH_SIZE);
            if !(1..=10_000).contains(&renewal_batch_size) {
                p.add("store.renewal_batch_size", "must be between 1 and 10000");
            }
            Some(StoreSettings::Redis(RedisStoreSettings {
                topology,
                tls,
                key_prefix,
                command_timeout,
                connect_timeout,
                renewal_flush_interval,
                renewal_batch_size,
                breaker: BreakerSettings {
                    failures: {
                        let failures = raw.breaker_failures.unwrap_or(defaults::BREAKER_FAILURES);
                        if failures == 0 {
                            p.add("store.breaker_failures", "must be greater than zero");
                        }
                        failures
                    },
                    open_for: positive(
                        raw.breaker_open,
                        defaults::BREAKER_OPEN,
                        "store.breaker_open",
                        p,
                    ),
                },
                username: raw.username.clone(),
                password: read_secret(
                    Secret {
                        file: raw.password_file.as_deref(),
                        env: raw.password_env.as_deref(),
                        insecure_inline: None,
                        required: false,
                    },
                    SecretKeys::stem("store", "password"),
                    base,
                    p,
                )
                .map(|(password, _)| password),
            }))
        }
    }
}

/// Where Redis is: one URL, sentinels and a master name, or cluster nodes; every address must
/// parse and all must agree on TLS.
fn check_redis_topology(raw: &RawStore, p: &mut Problems) -> RedisTopology {
    let mode = raw.mode.unwrap_or(RawRedisMode::Standalone);
    let (mode_name, foreign) = match mode {
        RawRedisMode::Standalone => (
            "standalone",
            [
                (raw.sentinels.is_some(), "sentinels"),
                (raw.master_name.is_some(), "master_name"),
                (raw.nodes.is_some(), "nodes"),
            ],
        ),
        RawRedisMode::Sentinel => (
            "sentinel",
            [
                (raw.url.is_some(), "url"),
                (raw.nodes.is_some(), "nodes"),
                (false, ""),
            ],
        ),
        RawRedisMode::Cluster => (
            "cluster",
            [
                (raw.url.is_some(), "url"),
                (raw.sentinels.is_some(), "sentinels"),
                (raw.master_name.is_some(), "master_name"),
            ],
        ),
    };
    for (set, key) in foreign {
        if set {
            p.add(
                format!("store.{key}"),
                format!("does not apply to mode = \"{mode_name}\""),
            );
        }
    }
    let addresses = |key: &str, list: Option<&Vec<String>>, p: &mut Problems| -> Vec<String> {
        let list = list.cloned().unwrap_or_default();
        if list.is_empty() {
            p.add(
                format!("store.{key}"),
                format!("mode = \"{mode_name}\" needs at least one address, e.g. [\"redis://10.0.0.1:{}\"]",
                    if mode == RawRedisMode::Sentinel { 26379 } else { 6379 }),
            );
        }
        list
    };
    let topology = match mode {
        RawRedisMode::Standalone => RedisTopology::Standalone {
            url: raw
                .url
                .clone()
                .unwrap_or_else(|| defaults::REDIS_URL.to_string()),
        },
        RawRedisMode::Sentinel => {
            let sentinels = addresses("sentinels", raw.sentinels.as_ref(), p);
            let master_name = raw.master_name.clone().unwrap_or_default();
            if master_name.is_empty() {
                p.add(
                    "store.master_name",
                    "mode = \"sentinel\" needs the name the sentinels monitor the master under",
                );
            }
            RedisTopology::Sentinel {
                sentinels,
                master_name,
            }
        }
        RawRedisMode::Cluster => RedisTopology::Cluster {
            nodes: addresses("nodes", raw.nodes.as_ref(), p),
        },
    };
    let key = match mode {
        RawRedisMode::Standalone => "url",
        RawRedisMode::Sentinel => "sentinels",
        RawRedisMode::Cluster => "nodes",
    };
    let mut schemes = std::collections::BTreeSet::new();
    for (i, address) in topology.addresses().iter().enumerate() {
        let at = match mode {
            RawRedisMode::Standalone => format!("store.{key}"),
            _ => format!("store.{key}[{i}]"),
        };
        match redis::IntoConnectionInfo::into_connection_info(address.as_str()) {
            Ok(info) => {
                if matches!(info.addr(), redis::ConnectionAddr::Unix(_))
                    && mode != RawRedisMode::Standalone
                {
                    p.add(at.clone(), "must be a TCP address (redis:// or rediss://)");
                }
                if mode == RawRedisMode::Cluster && info.redis_settings().db() != 0 {
                    p.add(at.clone(), "Redis Cluster has only database 0");
                }
            }
            Err(e) => p.add(
                at.clone(),
                format!("is not a Redis URL ({e}); e.g. \"redis://127.0.0.1:6379/0\""),
            ),
        }
        schemes.insert(address.starts_with("rediss://"));
    }
    if schemes.len() > 1 {
        p.add(
            format!("store.{key}"),
            "mixes redis:// and rediss:// addresses; use TLS for all or none",
        );
    }
    topology
}

/// PEM files for `rediss://`: read now, so a missing file is a configuration error.
fn check_redis_tls(
    raw: &RawStore,
    topology: &RedisTopology,
    base: &Path,
    p: &mut Problems,
) -> RedisTls {
    let files = [
        ("tls_ca_file", raw.tls_ca_file.as_deref()),
        ("tls_cert_file", raw.tls_cert_file.as_deref()),
        ("tls_key_file", raw.tls_key_file.as_deref()),
    ];
    if !topology.uses_tls() {
        for (key, file) in files {
            if file.is_some() {
                p.add(
                    format!("store.{key}"),
                    "only applies to TLS addresses (rediss://)",
                );
            }
        }
        return RedisTls::default();
    }
    if raw.tls_cert_file.is_some() != raw.tls_key_file.is_some() {
        p.add(
            "store.tls_cert_file",
            "set tls_cert_file and tls_key_file together (a client certificate needs its key)",
        );
    }
    let mut read = |key: &str, file: Option<&str>| -> Option<Vec<u8>> {
        let full = base.join(file?);
        match std::fs::read(&full) {
            Ok(bytes) if bytes.windows(11).any(|w| w == b"-----BEGIN ") => Some(bytes),
            Ok(_) => {
                p.add(
                    format!("store.{key}"),
                    format!("{} is not a PEM file", full.display()),
                );
                None
            }
            Err(e) => {
                p.add(
                    format!("store.{key}"),
                    format!("cannot read {}: {e}", full.display()),
                );
                None
            }
        }
    };
    RedisTls {
        ca: read(files[0].0, files[0].1),
        client_cert: read(files[1].0, files[1].1),
        client_key: read(files[2].0, files[2].1).map(SecretBytes),
    }
}
