//! The validated configuration. Built only by `validate`, never deserialized: holding a
//! `Config` means every rule has been checked.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use serde::Deserialize;

pub use super::keys::{KeyMaterial, SigningAlgorithm, SigningKey};

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerSettings,
    pub session: SessionSettings,
    pub store: StoreSettings,
    pub identity: IdentitySettings,
    /// `None` when there is no cache (memory store, or disabled).
    pub cache: Option<CacheConfig>,
    pub upstreams: Vec<UpstreamSettings>,
    pub routes: Vec<RouteSettings>,
    /// `None` when there are no HTTPS listeners.
    pub tls: Option<TlsListeners>,
    /// The OpenID providers users sign in with at the edge.
    pub identity_providers: Vec<IdentityProviderSettings>,
    /// The prefix of the sign-in flow's own paths (`/_sessiongate/oidc`).
    pub oidc_prefix: String,
    /// Sign-ins one client address may start per minute (0: no bound).
    pub sign_ins_per_client: u32,
}

/// How the client authenticates at the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    SecretBasic,
    SecretPost,
}

/// One `[[identity_provider]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityProviderSettings {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretBytes,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub sub_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
    pub claims: Vec<String>,
    pub userinfo: bool,
    pub redirect_url: Option<String>,
    pub post_logout_redirect_url: Option<String>,
    pub pass_access_token: bool,
    pub algorithms: Vec<String>,
    pub clock_skew: Duration,
    pub timeout: Duration,
    pub refresh_interval: Option<Duration>,
    pub flow_timeout: Duration,
    /// PEM CA certificates read at load.
    pub ca_pem: Option<Vec<u8>>,
}

/// Who a route admits among signed-in users: anyone when every list is empty, else a user
/// with one of the groups, one of the emails, or an email in one of the domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRule {
    pub groups: Vec<String>,
    /// Lower case.
    pub emails: Vec<String>,
    /// Lower case, without `@`.
    pub email_domains: Vec<String>,
}

impl AccessRule {
    pub fn is_open(&self) -> bool {
        self.groups.is_empty() && self.emails.is_empty() && self.email_domains.is_empty()
    }

    /// Whether a user with `email` and `groups` is admitted.
    pub fn admits(&self, email: Option<&str>, groups: &[Box<str>]) -> bool {
        if self.is_open() {
            return true;
        }
        if groups
            .iter()
            .any(|g| self.groups.iter().any(|a| a.as_str() == &**g))
        {
            return true;
        }
        let Some(email) = email.map(str::to_ascii_lowercase) else {
            return false;
        };
        if self.emails.contains(&email) {
            return true;
        }
        match email.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                self.email_domains.iter().any(|d| d == domain)
            }
            _ => false,
        }
    }
}

/// The HTTPS listeners and what HTTPS changes about responses.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsListeners {
    pub listen: Vec<SocketAddr>,
    /// Read from their files at load (and again at each reload).
    pub certificates: crate::tls::Certificates,
    /// ALPN offers `h2` before `http/1.1`.
    pub http2: bool,
    /// Requests on the plain listeners get a 308 to the same URL over HTTPS.
    pub redirect_plain: bool,
    /// The `Strict-Transport-Security` value sent on HTTPS responses, if any.
    pub hsts: Option<String>,
}

impl TlsListeners {
    /// The port a redirect to HTTPS names (none for 443).
    pub fn redirect_port(&self) -> Option<u16> {
        self.listen.first().map(|a| a.port()).filter(|p| *p != 443)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub admin_listen: SocketAddr,
    pub shutdown_grace: Duration,
    /// The admin API's bearer token; without one the API is off (metrics and health stay).
    pub admin_token: Option<SecretBytes>,
    pub log_sub: bool,
    pub upgrade_sock: PathBuf,
    /// Peers whose forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) are kept and
    /// extended; from every other peer they are replaced by what the proxy saw.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Also send the RFC 7239 `Forwarded` header upstream.
    pub forwarded_header: bool,
    /// Forward `TRACE` and `TRACK` requests (refused with 405 otherwise: a backend echoing the
    /// request back would show the assertion to the client).
    pub allow_trace: bool,
    /// What a client connection is held to before its requests are read.
    pub connections: ConnectionLimits,
}

/// Limits on client connections and request heads (defaults from nginx and Envoy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The whole request head must arrive within this (nginx `client_header_timeout`, 60s).
    pub header_timeout: Duration,
    /// A kept-alive connection waits this long for its next request (nginx
    /// `keepalive_timeout`, 75s).
    pub keepalive_timeout: Duration,
    /// The most bytes of a request head (nginx's `large_client_header_buffers`, 4 × 8k).
    pub max_header_bytes: usize,
    /// The most header lines of a request head (Envoy's `max_headers_count`, 100).
    pub max_headers: usize,
    /// The most client connections held at once.
    pub max_connections: usize,
    /// The most client connections from one address, if capped.
    pub max_connections_per_client: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// How a session record is serialized in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RecordFormat {
    #[serde(rename = "msgpack")]
    MessagePack,
    #[serde(rename = "json")]
    Json,
}

impl RecordFormat {
    /// The name the Redis scripts use to pick a decoder.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::MessagePack => "msgpack",
            RecordFormat::Json => "json",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    pub same_site: SameSite,
    pub domain: Option<String>,
    pub persistent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    pub cookie: CookieSettings,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub renew_below: Duration,
    pub format: RecordFormat,
    /// The most bytes a session's claims take serialised as JSON; larger logins and updates
    /// are refused as malformed.
    pub max_claims_bytes: usize,
    /// How often an open WebSocket tunnel checks that its session still stands (it is closed
    /// once the session has ended, expired or been idle past its deadline).
    pub tunnel_recheck: Duration,
    /// The keys that sign (the first) and verify (all) the cookie's value.
    pub cookie_keys: Vec<SecretBytes>,
}

#[derive(Debug, Clone, PartialEq)]
// Built once per (re)load and never moved on a hot path, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum StoreSettings {
    Memory(MemoryStoreSettings),
    Redis(RedisStoreSettings),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryStoreSettings {
    pub max_sessions: usize,
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisStoreSettings {
    pub topology: RedisTopology,
    /// Trust and client identity for `rediss://` addresses.
    pub tls: RedisTls,
    pub key_prefix: String,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub renewal_flush_interval: Duration,
    pub renewal_batch_size: usize,
    pub breaker: BreakerSettings,
    /// Credentials from `username` and `password_file` / `password_env`, if any.
    pub username: Option<String>,
    pub password: Option<SecretBytes>,
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    Standalone {
        url: String,
    },
    /// The master is asked of the sentinels on every (re)connect.
    Sentinel {
        sentinels: Vec<String>,
        master_name: String,
    },
    /// Seed nodes; the slot map is discovered and followed (`MOVED`, `ASK`).
    Cluster {
        nodes: Vec<String>,
    },
}

impl RedisTopology {
    /// Every address named in the configuration.
    pub fn addresses(&self) -> &[String] {
        match self {
            RedisTopology::Standalone { url } => std::slice::from_ref(url),
            RedisTopology::Sentinel { sentinels, .. } => sentinels,
            RedisTopology::Cluster { nodes } => nodes,
        }
    }

    /// Whether the addresses use TLS (`rediss://`); validation makes them agree.
    pub fn uses_tls(&self) -> bool {
        self.addresses()
            .first()
            .is_some_and(|a| a.starts_with("rediss://"))
    }

    pub fn mode(&self) -> &'static str {
        match self {
            RedisTopology::Standalone { .. } => "standalone",
            RedisTopology::Sentinel { .. } => "sentinel",
            RedisTopology::Cluster { .. } => "cluster",
        }
    }
}

/// PEM material for Redis over TLS; empty means the system's roots and no client certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisTls {
    pub ca: Option<Vec<u8>>,
    pub client_cert: Option<Vec<u8>>,
    pub client_key: Option<SecretBytes>,
}

/// When the store's circuit breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive transport failures that open it.
    pub failures: u32,
    /// How long it refuses calls before letting a probe through.
    pub open_for: Duration,
}

/// Cache bounds and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub max_entries: usize,
    pub max_bytes: usize,
    pub max_staleness: Duration,
    pub negative_entries: usize,
    pub negative_ttl: Duration,
}

/// The session cache and whether it follows invalidations from Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub settings: CacheSettings,
    pub invalidation: bool,
    /// How old a cached session may be and still be served while the store is down.
    pub stale_window: Duration,
}

/// Secret key bytes; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdentitySettings {
    pub issuer: String,
    pub assertion_header: HeaderName,
    /// The default lifetime of an assertion (a route may set its own).
    pub assertion_ttl: Duration,
    /// The first signs; every EdDSA and ES256 one is published in the JWKS.
    pub keys: Vec<SigningKey>,
    /// Where the JWKS is served, on the public and the admin listeners.
    pub jwks_path: String,
    /// The JWKS response's `Cache-Control: public, max-age`.
    pub jwks_max_age: Duration,
    /// Every assertion carries a fresh random `jti` (and is signed per request).
    pub jti: bool,
    /// Plain headers mapped from claims, in configuration order.
    pub headers: Vec<(HeaderName, String)>,
}

impl IdentitySettings {
    /// The key that signs: the first listed (validation keeps at least one).
    pub fn signing_key(&self) -> &SigningKey {
        &self.keys[0]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub name: String,
    pub backends: Vec<SocketAddr>,
    pub affinity: Affinity,
    pub health: HealthCheck,
    /// The default of `case_insensitive` for the routes to this upstream.
    pub case_insensitive: bool,
    pub timeouts: UpstreamTimeouts,
    /// TLS towards the backends, if they speak it.
    pub tls: Option<UpstreamTls>,
}

/// Deadlines of an exchange with a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub total: Option<Duration>,
}

/// How backends speaking TLS are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI, and the name the certificate must carry (empty only with `verify = false`).
    pub server_name: String,
    /// DER certificates of the CAs to trust instead of the system's roots.
    pub ca: Option<Vec<Vec<u8>>>,
    pub verify: bool,
}

/// What a pool hashes to keep a user on one backend (Ketama consistent hashing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// The session (its hashed id): every request of a session lands on one backend.
    Session,
    /// The subject: all sessions of a user land on one backend.
    Sub,
    /// No affinity: requests are spread over the backends.
    None,
}

/// Active health checking of a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    None,
    Tcp { interval: Duration },
    Http { path: String, interval: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthPolicy {
    Required,
    Optional,
    Public,
}

/// What a route does when the session store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// 503.
    FailClosed,
    /// Sessions cached within the stale window are honoured; others 503.
    ServeStale,
    /// Continue without identity.
    Anonymous,
}

/// Which hosts a route answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Any,
    /// Exact host name, lower case, without port.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` (stored with the leading dot).
    Suffix(String),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteSettings {
    pub host: HostPattern,
    pub path_prefix: String,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    pub auth: AuthPolicy,
    pub audience: String,
    /// The lifetime of this route's assertions, when it is not `[identity] assertion_ttl`.
    pub assertion_ttl: Option<Duration>,
    pub login_url: Option<String>,
    pub on_store_error: OnStoreError,
    /// Whether a response on this route may log a user in (`X-Sessiongate-Login`); on every
    /// other route the header is refused, so a header-reflection bug in one app cannot log
    /// anyone in.
    pub accept_login: bool,
    /// Whether WebSocket upgrades are forwarded on this route.
    pub websocket: bool,
    /// Match the path prefix ignoring ASCII case (for upstreams that do, such as IIS).
    pub case_insensitive: bool,
    pub body: BodyLimits,
    /// Index into `Config::identity_providers`: browsers without a session sign in there.
    pub login: Option<usize>,
    /// Who among signed-in users may pass (403 for the others).
    pub access: AccessRule,
}

/// What a route accepts as request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bodies beyond this many bytes are refused with 413.
    pub max_bytes: Option<u64>,
    /// Bodies declared (`Content-Length`) up to this many bytes are read whole before the app
    /// is contacted, so that a slow client holds no worker of a legacy app.
    pub buffer_bytes: Option<u64>,
    /// Deadline for a buffered body (408 after it).
    pub timeout: Duration,
}

/// The index of the route among `routes` for `host` (lower case, no port) and a normalised
/// `path` (the rule `routing::RouteTable` routes by; here so that validation can probe the
/// table without the layer above).
///
/// The most specific host pattern wins (exact, then the longest `*.` suffix, then `*`), and
/// among routes of that host the longest matching path prefix; a prefix matches only at a
/// segment boundary (`/`, or the `;` that starts a parameter), so `/app` matches `/app`,
/// `/app/x` and `/app;v=1` but not `/apple`. A `case_insensitive` route compares the path
/// ignoring ASCII case, as IIS does.
pub fn best_route(routes: &[RouteSettings], host: &str, path: &[u8]) -> Option<usize> {
    let mut best: Option<(usize, (usize, usize))> = None;
    for (i, route) in routes.iter().enumerate() {
        let Some(host_rank) = host_rank(&route.host, host) else {
            continue;
        };
        if !prefix_matches(route.path_prefix.as_bytes(), path, route.case_insensitive) {
            continue;
        }
        let rank = (host_rank, route.path_prefix.len());
        if best.is_none_or(|(_, r)| rank > r) {
            best = Some((i, rank));
        }
    }
    best.map(|(i, _)| i)
}

fn host_rank(pattern: &HostPattern, host: &str) -> Option<usize> {
    match pattern {
        HostPattern::Any => Some(0),
        HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()).then_some(1 + suffix.len()),
        HostPattern::Exact(exact) => (exact == host).then_some(usize::MAX),
    }
}

fn prefix_matches(prefix: &[u8], path: &[u8], case_insensitive: bool) -> bool {
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    let equal = if case_insensitive {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    equal
        && (prefix.ends_with(b"/")
            || path.len() == prefix.len()
            || matches!(path[prefix.len()], b'/' | b';'))
}

impl RouteSettings {
    /// A route with the defaults a configuration file gives it besides `host`, `path_prefix`
    /// and `auth` (upstream 0, audience "app").
    pub fn new(host: HostPattern, path_prefix: &str, auth: AuthPolicy) -> Self {
        RouteSettings {
            host,
            path_prefix: path_prefix.to_string(),
            upstream: 0,
            auth,
            audience: "app".to_string(),
            assertion_ttl: None,
            login_url: None,
            on_store_error: match auth {
                AuthPolicy::Required => OnStoreError::FailClosed,
                AuthPolicy::Optional | AuthPolicy::Public => OnStoreError::Anonymous,
            },
            accept_login: false,
            websocket: true,
            case_insensitive: false,
            body: BodyLimits::default(),
            login: None,
            access: AccessRule::default(),
        }
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_bytes: None,
            buffer_bytes: None,
            timeout: crate::config::validate::defaults::BODY_TIMEOUT,
        }
    }
}
