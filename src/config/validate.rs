//! Turns the raw file into the typed model, checking every rule and collecting every problem
//! (with its key path and what would be valid) instead of stopping at the first.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::file::*;
use super::model::*;
use super::ConfigProblem;

/// Default values, from DESIGN.md (OWASP ASVS L2 and the session-management cheat sheet).
pub mod defaults {
    use std::time::Duration;
    pub const LISTEN: &str = "0.0.0.0:8080";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9091";
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    pub const UPGRADE_SOCK: &str = "/tmp/sessiongate-upgrade.sock";
    pub const COOKIE_NAME: &str = "__Host-sid";
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
    pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
    pub const KEY_PREFIX: &str = "sg:";
    pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
    pub const MAX_SESSIONS: usize = 1_000_000;
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
    pub const RENEWAL_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
    pub const RENEWAL_BATCH_SIZE: usize = 256;
    pub const CACHE_ENTRIES: usize = 100_000;
    pub const CACHE_BYTES: usize = 64 << 20;
    pub const CACHE_MAX_STALENESS: Duration = Duration::from_secs(5);
    pub const NEGATIVE_ENTRIES: usize = 10_000;
    pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
    pub const BREAKER_FAILURES: u32 = 5;
    pub const BREAKER_OPEN: Duration = Duration::from_secs(1);
    pub const STALE_WINDOW: Duration = Duration::from_secs(300);
    pub const ISSUER: &str = "sessiongate";
    pub const ASSERTION_HEADER: &str = "X-Sessiongate-Assertion";
    pub const ASSERTION_TTL: Duration = Duration::from_secs(60);
    pub const KEY_ID: &str = "k1";
    /// HMAC keys shorter than this are refused.
    pub const MIN_KEY_BYTES: usize = 32;
    /// The most bytes a session's claims take as JSON: they travel on every request.
    pub const MAX_CLAIMS_BYTES: usize = 4096;
}

/// Request headers a mapped identity header may not take over: the proxy needs them, or
/// stripping them from every request would break clients.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "traceparent",
    "accept",
    "accept-encoding",
    "user-agent",
    "origin",
    "referer",
];

/// Whether a mapped identity header would take over a header the proxy or clients need, or
/// one the proxy sets or rebuilds itself (compared folded, as the namespace compares names).
fn reserved_header(name: &str) -> bool {
    use crate::header_names::{FORWARDING, REWRITE, SET_BY_PROXY};
    let name = normalized(name);
    RESERVED_HEADERS
        .iter()
        .chain(SET_BY_PROXY)
        .chain(REWRITE)
        .chain(FORWARDING.iter().map(|(n, _)| n))
        .any(|r| normalized(r) == name)
}

/// A header name as the protected namespace compares it.
fn normalized(name: &str) -> String {
    crate::header_names::folded(name)
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Validates the raw file; `base` resolves relative secret file paths.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let mut p = Problems::default();
    let server = check_server(&raw.server, base, &mut p);
    let session = check_session(&raw.session, &mut p);
    let store = check_store(&raw.store, base, &mut p);
    let identity = check_identity(&raw.identity, base, &mut p);
    let cache = check_cache(raw.cache.as_ref(), store.as_ref(), &mut p);
    let upstreams = check_upstreams(&raw.upstream, &mut p);
    let routes = check_routes(&raw.route, &upstreams, &mut p);
    if cache.is_none() && matches!(store, Some(StoreSettings::Redis(_))) {
        for (i, route) in routes.iter().enumerate() {
            if route.on_store_error == OnStoreError::ServeStale {
                p.add(
                    format!("route[{i}].on_store_error"),
                    "serve_stale needs the session cache; enable [cache] or choose fail_closed or anonymous",
                );
            }
        }
    }
    if !p.0.is_empty() {
        return Err(p.0);
    }
    // Every check above pushed a problem whenever it returned None.
    match (server, session, store, identity) {
        (Some(server), Some(session), Some(store), Some(identity)) => Ok(Config {
            server,
            session,
            store,
            identity,
            cache,
            upstreams,
            routes,
        }),
        _ => Err(vec![ConfigProblem {
            path: String::new(),
            message: "configuration is incomplete".into(),
        }]),
    }
}

fn parse_addr(value: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    match value.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Some(addr),
            None => {
                p.add(path, format!("\"{value}\" resolves to no address"));
                None
            }
        },
        Err(e) => {
            p.add(
                path,
                format!("\"{value}\" is not a host:port address ({e}); e.g. \"127.0.0.1:8080\""),
            );
            None
        }
    }
}

fn check_server(raw: &RawServer, base: &Path, p: &mut Problems) -> Option<ServerSettings> {
    let listen_raw = raw
        .listen
        .clone()
        .unwrap_or_else(|| vec![defaults::LISTEN.to_string()]);
    if listen_raw.is_empty() {
        p.add("server.listen", "needs at least one address");
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
        raw.admin_token_file.as_deref(),
        raw.admin_token_env.as_deref(),
        ("server", "admin_token"),
        base,
        p,
    );
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

/// RFC 6265 cookie-name: an RFC 7230 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_session(raw: &RawSession, p: &mut Problems) -> Option<SessionSettings> {
    let name = raw
        .cookie_name
        .clone()
        .unwrap_or_else(|| defaults::COOKIE_NAME.to_string());
    let secure = raw.secure.unwrap_or(true);
    let same_site = match raw.same_site.unwrap_or(RawSameSite::Lax) {
        RawSameSite::Strict => SameSite::Strict,
        RawSameSite::Lax => SameSite::Lax,
        RawSameSite::None => SameSite::None,
    };
    if !is_token(&name) {
        p.add(
            "session.cookie_name",
            format!("\"{name}\" is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
        );
    }
    if name.starts_with("__Host-") {
        if !secure {
            p.add(
                "session.cookie_name",
                "a __Host- cookie requires secure = true; use another name for plain-HTTP setups",
            );
        }
        if raw.domain.is_some() {
            p.add(
                "session.domain",
                "a __Host- cookie must not have a Domain; remove session.domain or rename the cookie",
            );
        }
    }
    if name.starts_with("__Secure-") && !secure {
        p.add(
            "session.cookie_name",
            "a __Secure- cookie requires secure = true",
        );
    }
    if same_site == SameSite::None && !secure {
        p.add(
            "session.same_site",
            "same_site = \"none\" requires secure = true (browsers drop such cookies otherwise)",
        );
    }
    if let Some(domain) = &raw.domain {
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            p.add(
                "session.domain",
                format!("\"{domain}\" is not a domain name"),
            );
        }
    }
    let idle = raw.idle_timeout.unwrap_or(defaults::IDLE_TIMEOUT);
    let absolute = raw.absolute_timeout.unwrap_or(defaults::ABSOLUTE_TIMEOUT);
    let renew_below = raw.renew_below.unwrap_or(idle / 2);
    if idle.is_zero() {
        p.add("session.idle_timeout", "must be greater than zero");
    }
    if absolute < idle {
        p.add(
            "session.absolute_timeout",
            format!(
                "must be at least session.idle_timeout ({})",
                humantime::format_duration(idle)
            ),
        );
    }
    if renew_below.is_zero() && !idle.is_zero() {
        p.add(
            "session.renew_below",
            "must be greater than zero, or active sessions would expire after idle_timeout",
        );
    }
    if renew_below >= idle && !idle.is_zero() {
        p.add(
            "session.renew_below",
            format!(
                "must be less than session.idle_timeout ({})",
                humantime::format_duration(idle)
            ),
        );
    }
    let format = match raw.format.unwrap_or(RawFormat::Msgpack) {
        RawFormat::Msgpack => RecordFormat::MessagePack,
        RawFormat::Json => RecordFormat::Json,
    };
    let max_claims_bytes = raw.max_claims_bytes.unwrap_or(defaults::MAX_CLAIMS_BYTES);
    if !(256..=65536).contains(&max_claims_bytes) {
        p.add(
            "session.max_claims_bytes",
            "must be between 256 and 65536: claims travel on every request",
        );
    }
    Some(SessionSettings {
        cookie: CookieSettings {
            name,
            secure,
            same_site,
            domain: raw.domain.clone(),
            persistent: raw.persistent.unwrap_or(false),
        },
        idle_timeout: idle,
        absolute_timeout: absolute,
        renew_below,
        format,
        max_claims_bytes,
    })
}

fn positive(d: Option<Duration>, default: Duration, path: &str, p: &mut Problems) -> Duration {
    let d = d.unwrap_or(default);
    if d.is_zero() {
        p.add(path, "must be greater than zero");
    }
    d
}

/// A secret from `{section}.{stem}_file` (relative to `base`) or `{section}.{stem}_env`; at
/// most one source.
fn read_secret(
    file: Option<&str>,
    env: Option<&str>,
    (section, stem): (&str, &str),
    base: &Path,
    p: &mut Problems,
) -> Option<SecretBytes> {
    match (file, env) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            p.add(
                section,
                format!("set either {stem}_file or {stem}_env, not both"),
            );
            None
        }
        (Some(file), None) => {
            let full = base.join(file);
            match std::fs::read(&full) {
                Ok(mut bytes) => {
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    Some(SecretBytes(bytes))
                }
                Err(e) => {
                    p.add(
                        format!("{section}.{stem}_file"),
                        format!("cannot read {}: {e}", full.display()),
                    );
                    None
                }
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(value) => Some(SecretBytes(value.into_bytes())),
            Err(_) => {
                p.add(
                    format!("{section}.{stem}_env"),
                    format!("environment variable {var} is not set (or not UTF-8)"),
                );
                None
            }
        },
    }
}

fn check_store(raw: &RawStore, base: &Path, p: &mut Problems) -> Option<StoreSettings> {
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
                    raw.password_file.as_deref(),
                    raw.password_env.as_deref(),
                    ("store", "password"),
                    base,
                    p,
                ),
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

fn check_cache(
    raw: Option<&RawCache>,
    store: Option<&StoreSettings>,
    p: &mut Problems,
) -> Option<CacheConfig> {
    match store {
        Some(StoreSettings::Memory(_)) => {
            if raw.is_some() {
                p.add(
                    "cache",
                    "only applies to kind = \"redis\": the memory store is already in the process",
                );
            }
            return None;
        }
        None => return None,
        Some(StoreSettings::Redis(_)) => {}
    }
    let default = RawCache::default();
    let raw = raw.unwrap_or(&default);
    let max_entries = raw.max_entries.unwrap_or(defaults::CACHE_ENTRIES);
    if max_entries == 0 {
        p.add(
            "cache.max_entries",
            "must be greater than zero (set cache.enabled = false to turn the cache off)",
        );
    }
    let max_bytes = raw.max_bytes.unwrap_or(defaults::CACHE_BYTES);
    if max_bytes < 4096 {
        p.add("cache.max_bytes", "must be at least 4096 bytes");
    }
    let max_staleness = positive(
        raw.max_staleness,
        defaults::CACHE_MAX_STALENESS,
        "cache.max_staleness",
        p,
    );
    if max_staleness > Duration::from_secs(3600) {
        p.add(
            "cache.max_staleness",
            "must be at most 1h: it bounds how long a revoked session can still be served",
        );
    }
    let negative_ttl = raw.negative_ttl.unwrap_or(defaults::NEGATIVE_TTL);
    if negative_ttl > max_staleness && !max_staleness.is_zero() {
        p.add("cache.negative_ttl", "must not exceed cache.max_staleness");
    }
    let settings = CacheSettings {
        max_entries,
        max_bytes,
        max_staleness,
        negative_entries: raw.negative_entries.unwrap_or(defaults::NEGATIVE_ENTRIES),
        negative_ttl,
    };
    let stale_window = positive(
        raw.stale_window,
        defaults::STALE_WINDOW,
        "cache.stale_window",
        p,
    );
    if stale_window > Duration::from_secs(24 * 3600) {
        p.add("cache.stale_window", "must be at most 24h");
    }
    raw.enabled.unwrap_or(true).then_some(CacheConfig {
        settings,
        invalidation: raw.invalidation.unwrap_or(true),
        stale_window,
    })
}

fn header_name(value: &str, path: &str, p: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(value.as_bytes()) {
        Ok(name) if reserved_header(name.as_str()) => {
            p.add(
                path,
                format!("\"{value}\" is a header the proxy or clients need; pick another name"),
            );
            None
        }
        Ok(name) => Some(name),
        Err(_) => {
            p.add(path, format!("\"{value}\" is not a valid HTTP header name"));
            None
        }
    }
}

fn read_key(raw: &RawIdentity, base: &Path, p: &mut Problems) -> Option<SecretBytes> {
    let sources = [
        raw.signing_key_file.is_some(),
        raw.signing_key_env.is_some(),
        raw.insecure_signing_key.is_some(),
    ];
    let count = sources.iter().filter(|s| **s).count();
    if count != 1 {
        p.add(
            "identity",
            "set exactly one of signing_key_file, signing_key_env or insecure_signing_key",
        );
        return None;
    }
    let (path, bytes) = if let Some(file) = &raw.signing_key_file {
        let full = base.join(file);
        match std::fs::read(&full) {
            Ok(mut bytes) => {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                ("identity.signing_key_file", bytes)
            }
            Err(e) => {
                p.add(
                    "identity.signing_key_file",
                    format!("cannot read {}: {e}", full.display()),
                );
                return None;
            }
        }
    } else if let Some(var) = &raw.signing_key_env {
        match std::env::var(var) {
            Ok(value) => ("identity.signing_key_env", value.into_bytes()),
            Err(_) => {
                p.add(
                    "identity.signing_key_env",
                    format!("environment variable {var} is not set (or not UTF-8)"),
                );
                return None;
            }
        }
    } else {
        let inline = raw.insecure_signing_key.clone().unwrap_or_default();
        ("identity.insecure_signing_key", inline.into_bytes())
    };
    if bytes.len() < defaults::MIN_KEY_BYTES {
        p.add(
            path,
            format!(
                "the signing key has {} bytes; HS256 keys need at least {}",
                bytes.len(),
                defaults::MIN_KEY_BYTES
            ),
        );
        return None;
    }
    Some(SecretBytes(bytes))
}

fn check_identity(raw: &RawIdentity, base: &Path, p: &mut Problems) -> Option<IdentitySettings> {
    let issuer = raw
        .issuer
        .clone()
        .unwrap_or_else(|| defaults::ISSUER.to_string());
    if issuer.is_empty() {
        p.add("identity.issuer", "must not be empty");
    }
    let assertion_header = header_name(
        raw.assertion_header
            .as_deref()
            .unwrap_or(defaults::ASSERTION_HEADER),
        "identity.assertion_header",
        p,
    );
    let assertion_ttl = positive(
        raw.assertion_ttl,
        defaults::ASSERTION_TTL,
        "identity.assertion_ttl",
        p,
    );
    if assertion_ttl > Duration::from_secs(3600) {
        p.add(
            "identity.assertion_ttl",
            "must be at most 1h: an assertion is a short-lived proof, not a session",
        );
    }
    let key_id = raw
        .signing_key_id
        .clone()
        .unwrap_or_else(|| defaults::KEY_ID.to_string());
    if key_id.is_empty()
        || key_id
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\')
    {
        p.add(
            "identity.signing_key_id",
            "must be a non-empty name without quotes, backslashes or control characters",
        );
    }
    let signing_key = read_key(raw, base, p);
    let mut seen: HashSet<String> = HashSet::new();
    if let Some(h) = &assertion_header {
        seen.insert(normalized(h.as_str()));
    }
    let mut headers = Vec::new();
    for (name, claim) in &raw.headers {
        let path = format!("identity.headers.\"{name}\"");
        let Some(header) = header_name(name, &path, p) else {
            continue;
        };
        if !seen.insert(normalized(header.as_str())) {
            p.add(
                &path,
                "names a header that is already mapped (names compare case-insensitively, with every non-alphanumeric byte as -)",
            );
            continue;
        }
        if claim.is_empty() {
            p.add(&path, "must name a claim, e.g. \"sub\" or \"email\"");
            continue;
        }
        headers.push((header, claim.clone()));
    }
    Some(IdentitySettings {
        issuer,
        assertion_header: assertion_header?,
        assertion_ttl,
        key_id,
        signing_key: signing_key?,
        headers,
    })
}

fn check_upstreams(raw: &[RawUpstream], p: &mut Problems) -> Vec<UpstreamSettings> {
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
        let affinity = match up.affinity.unwrap_or(RawAffinity::Session) {
            RawAffinity::Session => Affinity::Session,
            RawAffinity::Sub => Affinity::Sub,
            RawAffinity::None => Affinity::None,
        };
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

fn host_pattern(value: &str, path: &str, p: &mut Problems) -> Option<HostPattern> {
    let lower = value.to_ascii_lowercase();
    if lower == "*" {
        return Some(HostPattern::Any);
    }
    let (pattern, name) = match lower.strip_prefix("*.") {
        Some(rest) => (HostPattern::Suffix(format!(".{rest}")), rest.to_string()),
        None => (HostPattern::Exact(lower.clone()), lower.clone()),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        p.add(
            path,
            format!("\"{value}\" is not a host pattern; use \"*\", \"app.example.com\" or \"*.example.com\""),
        );
        return None;
    }
    Some(pattern)
}

fn check_routes(
    raw: &[RawRoute],
    upstreams: &[UpstreamSettings],
    p: &mut Problems,
) -> Vec<RouteSettings> {
    if raw.is_empty() {
        p.add("route", "needs at least one [[route]]");
    }
    let mut out: Vec<RouteSettings> = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("route[{i}]");
        let host = host_pattern(r.host.as_deref().unwrap_or("*"), &format!("{path}.host"), p);
        let prefix = r.path_prefix.clone().unwrap_or_else(|| "/".to_string());
        if !prefix.starts_with('/') || prefix.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            p.add(
                format!("{path}.path_prefix"),
                format!(
                    "\"{prefix}\" must start with '/' and contain no spaces or control characters"
                ),
            );
        }
        let upstream = match &r.upstream {
            None => {
                p.add(format!("{path}.upstream"), "every route needs an upstream");
                None
            }
            Some(name) => match upstreams.iter().position(|u| &u.name == name) {
                Some(idx) => Some(idx),
                None => {
                    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                    p.add(
                        format!("{path}.upstream"),
                        format!("no upstream named \"{name}\"; defined: {known:?}"),
                    );
                    None
                }
            },
        };
        let auth = match r.auth.unwrap_or(RawAuth::Required) {
            RawAuth::Required => AuthPolicy::Required,
            RawAuth::Optional => AuthPolicy::Optional,
            RawAuth::Public => AuthPolicy::Public,
        };
        if let Some(url) = &r.login_url {
            if auth != AuthPolicy::Required {
                p.add(
                    format!("{path}.login_url"),
                    "only applies to auth = \"required\" routes",
                );
            }
            let relative = url.starts_with('/') && !url.starts_with("//");
            let absolute = url.starts_with("https://") || url.starts_with("http://");
            if !(relative || absolute) || url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                p.add(
                    format!("{path}.login_url"),
                    format!("\"{url}\" must be a path (\"/login\") or an http(s) URL"),
                );
            }
        }
        let audience = r
            .audience
            .clone()
            .or_else(|| upstream.map(|u| upstreams[u].name.clone()))
            .unwrap_or_default();
        if r.audience.as_deref() == Some("") {
            p.add(format!("{path}.audience"), "must not be empty");
        }
        let on_store_error = r.on_store_error.unwrap_or(match auth {
            AuthPolicy::Required => OnStoreError::FailClosed,
            AuthPolicy::Optional | AuthPolicy::Public => OnStoreError::Anonymous,
        });
        let (Some(host), Some(upstream)) = (host, upstream) else {
            continue;
        };
        if !seen.insert((host.clone(), prefix.clone())) {
            p.add(
                format!("{path}.path_prefix"),
                format!("another route already has host \"{host}\" and path_prefix \"{prefix}\""),
            );
        }
        out.push(RouteSettings {
            host,
            path_prefix: prefix,
            upstream,
            auth,
            audience,
            login_url: r.login_url.clone(),
            on_store_error,
            accept_login: r.accept_login.unwrap_or(false),
            websocket: r.websocket.unwrap_or(true),
            case_insensitive: r
                .case_insensitive
                .unwrap_or(upstreams[upstream].case_insensitive),
        });
    }
    check_login_loops(&out, p);
    out
}

/// A host name that `pattern` matches, to probe the route table with.
fn sample_host(pattern: &HostPattern) -> String {
    match pattern {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Suffix(s) => format!("sample{s}"),
        HostPattern::Any => "sample.invalid".to_string(),
    }
}

/// Whether every host `inner` matches is also matched by `outer`.
fn covers(outer: &HostPattern, inner: &HostPattern) -> bool {
    match (outer, inner) {
        (HostPattern::Any, _) => true,
        (HostPattern::Suffix(o), HostPattern::Suffix(i)) => i.ends_with(o.as_str()),
        (HostPattern::Suffix(o), HostPattern::Exact(i)) => i.ends_with(o.as_str()),
        (HostPattern::Exact(o), HostPattern::Exact(i)) => o == i,
        _ => false,
    }
}

/// A relative `login_url` served by a `required` route would redirect to itself forever. The
/// redirecting route may serve several hosts, and a more specific host's routes may serve the
/// login path there: every such host is probed.
fn check_login_loops(routes: &[RouteSettings], p: &mut Problems) {
    let table = crate::routing::RouteTable::new(routes.to_vec());
    for (i, route) in routes.iter().enumerate() {
        let Some(url) = route
            .login_url
            .as_deref()
            .filter(|u| u.starts_with('/') && !u.starts_with("//"))
        else {
            continue;
        };
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let mut hosts = vec![sample_host(&route.host)];
        hosts.extend(
            routes
                .iter()
                .filter(|r| covers(&route.host, &r.host))
                .map(|r| sample_host(&r.host)),
        );
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            // Only hosts where this route itself would answer can send browsers to its login.
            if table.find(&host, route.path_prefix.as_bytes()) != Some(i) {
                continue;
            }
            if let Some(target) = table.find(&host, path.as_bytes()) {
                if routes[target].auth == AuthPolicy::Required {
                    let on_host = match &routes[target].host {
                        HostPattern::Any => String::new(),
                        _ => format!(" on host {host}"),
                    };
                    p.add(
                        format!("route[{i}].login_url"),
                        format!(
                            "\"{url}\" is served by route[{target}], which requires a session: browsers would be redirected forever{on_host}; add a public route for it"
                        ),
                    );
                    break;
                }
            }
        }
    }
}
