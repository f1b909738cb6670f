//! The configuration file exactly as written: serde structs that mirror the TOML, with unknown
//! keys rejected. Nothing here is trusted; `validate` turns it into the typed model. Plain value
//! enums (`same_site`, `format`, `auth`, ...) are the model's own, deserialised directly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::model::{Affinity, AuthPolicy, OnStoreError, RecordFormat, SameSite, SigningAlgorithm};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub identity: RawIdentity,
    pub cache: Option<RawCache>,
    #[serde(default)]
    pub upstream: Vec<RawUpstream>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub identity_provider: Vec<RawIdentityProvider>,
    pub oidc: Option<RawOidc>,
}

/// `[oidc]`: where the proxy answers the sign-in flow's own paths.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// The prefix of the callback, sign-out, start and back-channel logout paths.
    pub path_prefix: Option<String>,
    /// Sign-ins one client address may start per minute (0: no bound).
    pub max_sign_ins_per_client: Option<u32>,
}

/// `[[identity_provider]]`: an OpenID provider users sign in with at the edge.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityProvider {
    pub name: Option<String>,
    /// The issuer; its discovery document is `{issuer}/.well-known/openid-configuration`.
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub client_secret_env: Option<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub client_auth: Option<String>,
    /// Scopes asked for (`openid` is always among them).
    pub scopes: Option<Vec<String>>,
    /// `aud` values accepted beside the client id.
    pub audiences: Option<Vec<String>>,
    /// The ID token claim that becomes the session's `sub` (default `sub`).
    pub sub_claim: Option<String>,
    /// The claim copied into the session's `email` (default `email`).
    pub email_claim: Option<String>,
    /// The claim copied into the session's `groups` (default `groups`).
    pub groups_claim: Option<String>,
    /// Further claims copied into the session under their own names.
    pub claims: Option<Vec<String>>,
    /// Complete the claims from the userinfo endpoint.
    pub userinfo: Option<bool>,
    /// The redirect URI registered at the provider (default: the request's origin and the
    /// callback path).
    pub redirect_url: Option<String>,
    /// Where the provider sends the browser after sign-out.
    pub post_logout_redirect_url: Option<String>,
    /// Send the access token upstream as `Authorization: Bearer`.
    pub pass_access_token: Option<bool>,
    /// ID token signature algorithms accepted.
    pub algorithms: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub clock_skew: Option<Duration>,
    /// Deadline of every call to the provider.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Refresh the tokens this often (default: shortly before the access token expires).
    #[serde(default, with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
    /// How long a started sign-in may take.
    #[serde(default, with = "humantime_serde")]
    pub flow_timeout: Option<Duration>,
    /// CA certificates (PEM) trusted for the provider beside the public roots.
    pub ca_file: Option<String>,
}

/// `[tls]`: the HTTPS listeners.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Option<Vec<String>>,
    #[serde(default)]
    pub certificate: Vec<RawCertificate>,
    /// Offer HTTP/2 by ALPN (default true).
    pub http2: Option<bool>,
    /// The plain `[server] listen` addresses only redirect to HTTPS (308).
    pub redirect_plain: Option<bool>,
    /// `Strict-Transport-Security: max-age` on HTTPS responses; off unless set.
    #[serde(default, with = "humantime_serde")]
    pub hsts_max_age: Option<Duration>,
    pub hsts_include_subdomains: Option<bool>,
    pub hsts_preload: Option<bool>,
}

/// `[[tls.certificate]]`: a PEM chain (leaf first) and its key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub chain_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Vec<String>>,
    pub threads: Option<usize>,
    pub admin_listen: Option<String>,
    /// Seconds a graceful shutdown waits for in-flight requests.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// File holding the admin API's bearer token (trailing newline ignored).
    pub admin_token_file: Option<String>,
    /// Environment variable holding the admin API's bearer token.
    pub admin_token_env: Option<String>,
    /// Whether access-log lines carry the session's `sub` (off: logs name no user).
    pub log_sub: Option<bool>,
    /// Unix socket for the zero-downtime upgrade (listening sockets handed to `--upgrade`).
    pub upgrade_sock: Option<String>,
    /// Addresses or CIDR ranges of the proxies in front whose forwarding headers are trusted.
    pub trusted_proxies: Option<Vec<String>>,
    /// Also send the RFC 7239 `Forwarded` header upstream.
    pub forwarded_header: Option<bool>,
    /// Forward TRACE and TRACK requests instead of refusing them.
    pub allow_trace: Option<bool>,
    /// The whole request head must arrive within this (slowloris).
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    /// How long a kept-alive connection may wait for its next request.
    #[serde(default, with = "humantime_serde")]
    pub keepalive_timeout: Option<Duration>,
    /// The most bytes of a request head (431 beyond).
    pub max_header_bytes: Option<usize>,
    /// The most header lines of a request head (431 beyond).
    pub max_headers: Option<usize>,
    /// The most client connections held at once (503 beyond).
    pub max_connections: Option<usize>,
    /// The most client connections from one address (503 beyond).
    pub max_connections_per_client: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub cookie_name: Option<String>,
    pub secure: Option<bool>,
    pub same_site: Option<SameSite>,
    pub domain: Option<String>,
    pub persistent: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub absolute_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub renew_below: Option<Duration>,
    pub format: Option<RecordFormat>,
    /// The most bytes a session's claims take as JSON.
    pub max_claims_bytes: Option<usize>,
    /// How often an open WebSocket tunnel checks that its session still stands.
    #[serde(default, with = "humantime_serde")]
    pub tunnel_recheck: Option<Duration>,
    /// The keys of the cookie's MAC: the first signs, every one verifies.
    #[serde(default)]
    pub cookie_keys: Vec<RawSecret>,
}

/// A secret named by one of its sources.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    /// A file holding it (trailing newline ignored), relative to the configuration's directory.
    pub file: Option<String>,
    /// An environment variable holding it.
    pub env: Option<String>,
    /// Inline, for demos only: the name says what it is.
    pub insecure_value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawStoreKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawRedisMode {
    Standalone,
    Sentinel,
    Cluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub kind: Option<RawStoreKind>,
    /// Redis only: standalone (the default), sentinel or cluster.
    pub mode: Option<RawRedisMode>,
    /// Standalone mode: the server's URL.
    pub url: Option<String>,
    /// Sentinel mode: the sentinels' URLs.
    pub sentinels: Option<Vec<String>>,
    /// Sentinel mode: the name the sentinels monitor the master under.
    pub master_name: Option<String>,
    /// Cluster mode: URLs of some of the cluster's nodes (the rest are discovered).
    pub nodes: Option<Vec<String>>,
    /// Redis over TLS (`rediss://`): PEM file of the CA to trust instead of the system roots.
    pub tls_ca_file: Option<String>,
    /// Redis over TLS: PEM client certificate (with `tls_key_file`) for mutual TLS.
    pub tls_cert_file: Option<String>,
    /// Redis over TLS: PEM private key of the client certificate.
    pub tls_key_file: Option<String>,
    pub key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub command_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Memory store only: the most sessions it holds.
    pub max_sessions: Option<usize>,
    /// Memory store only: how often expired sessions are swept.
    #[serde(default, with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
    /// Redis only: how often queued idle renewals are written.
    #[serde(default, with = "humantime_serde")]
    pub renewal_flush_interval: Option<Duration>,
    /// Redis only: the most renewals written in one pipelined batch.
    pub renewal_batch_size: Option<usize>,
    /// Redis only: ACL user name (the password comes from `password_file` or `password_env`).
    pub username: Option<String>,
    /// Redis only: file holding the password (trailing newline ignored).
    pub password_file: Option<String>,
    /// Redis only: environment variable holding the password.
    pub password_env: Option<String>,
    /// Redis only: consecutive failures that open the circuit breaker.
    pub breaker_failures: Option<u32>,
    /// Redis only: how long the open breaker fails calls before probing.
    #[serde(default, with = "humantime_serde")]
    pub breaker_open: Option<Duration>,
}

/// The in-proxy session cache (Redis store only).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub max_entries: Option<usize>,
    pub max_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub max_staleness: Option<Duration>,
    pub negative_entries: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    /// Follow other instances' writes through Redis client-side-caching invalidations.
    pub invalidation: Option<bool>,
    /// How old a cached session may be and still be honoured on `serve_stale` routes while
    /// the store cannot answer.
    #[serde(default, with = "humantime_serde")]
    pub stale_window: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub issuer: Option<String>,
    pub assertion_header: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub assertion_ttl: Option<Duration>,
    pub signing_key_id: Option<String>,
    pub signing_key_file: Option<String>,
    pub signing_key_env: Option<String>,
    /// Inline key, for demos only: the name says what it is.
    pub insecure_signing_key: Option<String>,
    /// The signing keys: the first signs, every EdDSA and ES256 one is published. Instead of
    /// the single HS256 key of `signing_key_*`.
    #[serde(default)]
    pub keys: Vec<RawSigningKey>,
    /// Where the JWKS is served (default `/.well-known/sessiongate/jwks.json`).
    pub jwks_path: Option<String>,
    /// `Cache-Control: public, max-age` of the JWKS (default 60s).
    #[serde(default, with = "humantime_serde")]
    pub jwks_max_age: Option<Duration>,
    /// A fresh random `jti` in every assertion (default false: it defeats the signing memo).
    pub jti: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[[identity.keys]]`: one signing key, from exactly one source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigningKey {
    /// The `kid` of its tokens and of its JWKS entry.
    pub id: Option<String>,
    pub algorithm: Option<SigningAlgorithm>,
    /// HS256: the secret; EdDSA and ES256: a PKCS#8 PEM private key. Relative to the
    /// configuration's directory.
    pub file: Option<String>,
    /// An environment variable holding it.
    pub env: Option<String>,
    /// Inline, for demos only: the name says what it is.
    pub insecure_value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHealthCheck {
    Tcp,
    Http,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: Option<String>,
    #[serde(default)]
    pub backends: Vec<String>,
    /// What keeps a user on one backend: the session (default), the subject, or nothing.
    pub affinity: Option<Affinity>,
    pub health_check: Option<RawHealthCheck>,
    /// Path probed by `health_check = "http"`.
    pub health_path: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub health_interval: Option<Duration>,
    /// The default of `case_insensitive` for the routes to this upstream.
    pub case_insensitive: Option<bool>,
    /// TCP connect, and the TLS handshake with `tls` (default 5s).
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Longest wait for one read from the app: its response head or the next body bytes (60s).
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    /// Longest wait for one write of the request to the app (60s).
    #[serde(default, with = "humantime_serde")]
    pub write_timeout: Option<Duration>,
    /// The whole exchange with the app, from the request to the last response byte (off).
    #[serde(default, with = "humantime_serde")]
    pub total_timeout: Option<Duration>,
    /// Speak TLS to the backends.
    pub tls: Option<bool>,
    /// The name sent as SNI and that the backends' certificate must carry.
    pub tls_server_name: Option<String>,
    /// PEM file of the CAs the backends' certificates are verified against (default: the
    /// system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate from the backends (no verification at all).
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub upstream: Option<String>,
    pub auth: Option<AuthPolicy>,
    pub audience: Option<String>,
    /// The lifetime of this route's assertions (default `[identity] assertion_ttl`).
    #[serde(default, with = "humantime_serde")]
    pub assertion_ttl: Option<Duration>,
    pub login_url: Option<String>,
    pub on_store_error: Option<OnStoreError>,
    /// Responses on this route may log a user in.
    pub accept_login: Option<bool>,
    /// Forward WebSocket upgrades (default true).
    pub websocket: Option<bool>,
    /// Match the path prefix ignoring ASCII case (default: the upstream's setting).
    pub case_insensitive: Option<bool>,
    /// Largest request body accepted (413 beyond it; off by default).
    pub max_body_bytes: Option<u64>,
    /// Request bodies declared up to this size are read whole before the app is contacted
    /// (at most 65536; off by default).
    pub buffer_body_bytes: Option<u64>,
    /// Deadline for a buffered body to arrive (408 after it; default 30s).
    #[serde(default, with = "humantime_serde")]
    pub body_timeout: Option<Duration>,
    /// Browsers without a session sign in with this `[[identity_provider]]`.
    pub login: Option<String>,
    /// A signed-in user needs one of these groups (403 otherwise).
    pub allow_groups: Option<Vec<String>>,
    /// ... or one of these email addresses.
    pub allow_emails: Option<Vec<String>>,
    /// ... or an email address in one of these domains.
    pub allow_email_domains: Option<Vec<String>>,
}
