//! Default values, from docs/protocol.md (OWASP ASVS L2 and the session-management cheat
//! sheet).

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
/// Where the JWKS is served, beside the other `.well-known` documents.
pub const JWKS_PATH: &str = "/.well-known/sessiongate/jwks.json";
/// How long apps may cache the JWKS: a key added is seen within this.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(60);
/// HMAC keys shorter than this are refused.
pub const MIN_KEY_BYTES: usize = 32;
/// The most bytes a session's claims take as JSON: they travel on every request.
pub const MAX_CLAIMS_BYTES: usize = 4096;
/// An open WebSocket tunnel checks its session this often.
pub const TUNNEL_RECHECK: Duration = Duration::from_secs(10);
/// nginx's `client_header_timeout`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `keepalive_timeout`.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// nginx's `large_client_header_buffers 4 8k`.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Envoy's `max_headers_count`.
pub const MAX_HEADERS: usize = 100;
/// Room for ten thousand clients; at the 32 KiB head limit a full house of half-sent heads is
/// a few hundred MiB, not the machine.
pub const MAX_CONNECTIONS: usize = 10_000;
/// nginx's `proxy_connect_timeout` is 60 s; Envoy's cluster `connect_timeout` is 5 s: an app
/// on the same network that does not accept within 5 s is down.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// nginx's `proxy_read_timeout`.
pub const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `proxy_send_timeout`.
pub const UPSTREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a route may buffer: Pingora's replay buffer holds 64 KiB.
pub const MAX_BUFFER_BODY_BYTES: u64 = 64 * 1024;
/// nginx's `client_body_timeout` is 60 s between two reads; a buffered body has 30 s in all.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the proxy answers the sign-in flow's own paths.
pub const OIDC_PREFIX: &str = "/_sessiongate/oidc";
/// Scopes asked of an identity provider unless told.
pub const OIDC_SCOPES: &[&str] = &["openid", "email", "profile"];
/// ID token algorithms accepted unless told: every asymmetric one the verifier knows.
pub const OIDC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
/// mod_auth_openidc's `OIDCIDTokenIatSlack` is 600 s; oauth2-proxy allows none. A minute
/// covers clocks kept by NTP.
pub const OIDC_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Deadline of each call to a provider.
pub const OIDC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a started sign-in may take (mod_auth_openidc's state timeout is 300 s).
pub const OIDC_FLOW_TIMEOUT: Duration = Duration::from_secs(600);
/// Sign-ins one client address may start per minute: a browser starts one per protected page
/// it loads without a session (a few), an office behind one NAT address a few dozen.
pub const SIGN_INS_PER_CLIENT: u32 = 120;
