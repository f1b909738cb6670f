//! The test harness: one builder that says what a test runs (the store, the upstream, the
//! proxy's configuration) and starts it, and the running result with the request helpers the
//! end-to-end tests share.
//!
//! ```ignore
//! let h = Harness::new()
//!     .redis()
//!     .cache(|c| c.max_staleness("60s"))
//!     .route(Route::required("/stale").on_store_error("serve_stale"))
//!     .server(|s| s.trusted_proxies(&["10.0.0.0/8"]))
//!     .start()
//!     .await;
//! let cookie = h.login("alice").await;
//! let reply = h.get("/page").cookie(&cookie).header("x-a", "b").send().await;
//! ```
//!
//! The configuration it renders is the test sample of DESIGN.md with short timeouts and test
//! ports: `[server]` on `{port}` and `{admin_port}` with 2 threads, the session cookie
//! `__Host-sid`, the test signing key and three identity headers, one upstream `app`, the
//! standard routes (`/login` public and accepting logins, `/public` public, `/opt` optional)
//! and a catch-all route `/` that requires a session. Each setter adds one key; `raw` adds a
//! line as written, for a test that deliberately writes an unusual value.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use sessiongate::config::model::RecordFormat;
use sessiongate::session::{SessionId, SessionRecord};

use super::config::{COOKIE, KEY};
use super::pki::{Issued, Pki, Validity};
use super::poll::eventually_async;
use super::{
    client, headers, https_client, raw_request, set_cookie_value, verify, Echo, EchoUpstream,
    Proxy, RedisServer,
};

/// How long `wait_for_status` waits for a state that settles asynchronously.
pub const SETTLE: Duration = Duration::from_secs(5);

fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

fn list(values: &[&str]) -> String {
    let items: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    format!("[{}]", items.join(", "))
}

/// The lines of one table, in the order they were set.
#[derive(Debug, Clone, Default)]
pub struct Lines(Vec<String>);

impl Lines {
    fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.push(format!("{key} = {}", value.into()));
        self
    }

    fn raw(mut self, line: &str) -> Self {
        self.0.push(line.to_string());
        self
    }

    fn text(&self) -> String {
        self.0.join("\n")
    }
}

/// `[tls]`: an HTTPS listener on `{tls_port}` and its certificates.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    lines: Lines,
    certificates: Vec<Issued>,
}

impl Tls {
    /// One more `[[tls.certificate]]` (the first answers clients that send no name).
    pub fn certificate(mut self, issued: &Issued) -> Self {
        self.certificates.push(issued.clone());
        self
    }

    pub fn http2(mut self, on: bool) -> Self {
        self.lines = self.lines.set("http2", on.to_string());
        self
    }

    pub fn redirect_plain(mut self, on: bool) -> Self {
        self.lines = self.lines.set("redirect_plain", on.to_string());
        self
    }

    pub fn hsts(mut self, max_age: &str, include_subdomains: bool) -> Self {
        self.lines = self
            .lines
            .set("hsts_max_age", format!("\"{max_age}\""))
            .set("hsts_include_subdomains", include_subdomains.to_string());
        self
    }

    fn toml(&self) -> String {
        let mut text = format!(
            "\n[tls]\nlisten = [\"127.0.0.1:{{tls_port}}\"]\n{}\n",
            self.lines.text()
        );
        for c in &self.certificates {
            text.push_str(&format!(
                "\n[[tls.certificate]]\nchain_file = \"{}\"\nkey_file = \"{}\"\n",
                c.chain.display(),
                c.key.display()
            ));
        }
        text
    }
}

/// `[server]` keys beyond the listeners and threads.
#[derive(Debug, Clone, Default)]
pub struct Server {
    lines: Lines,
    files: Vec<(String, String)>,
}

impl Server {
    pub fn trusted_proxies(mut self, ranges: &[&str]) -> Self {
        self.lines = self.lines.set("trusted_proxies", list(ranges));
        self
    }

    pub fn forwarded_header(mut self, on: bool) -> Self {
        self.lines = self.lines.set("forwarded_header", on.to_string());
        self
    }

    pub fn allow_trace(mut self, on: bool) -> Self {
        self.lines = self.lines.set("allow_trace", on.to_string());
        self
    }

    /// The admin API's token, in a file `admin.token` beside the configuration.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.lines = self
            .lines
            .set("admin_token_file", quoted("{dir}/admin.token"));
        self.files
            .push(("admin.token".into(), format!("{token}\n")));
        self
    }

    pub fn log_sub(mut self, on: bool) -> Self {
        self.lines = self.lines.set("log_sub", on.to_string());
        self
    }

    /// The upgrade socket, `name` in the proxy's directory.
    pub fn upgrade_sock(mut self, name: &str) -> Self {
        self.lines = self
            .lines
            .set("upgrade_sock", quoted(&format!("{{dir}}/{name}")));
        self
    }

    pub fn shutdown_grace(mut self, grace: &str) -> Self {
        self.lines = self.lines.set("shutdown_grace", quoted(grace));
        self
    }

    pub fn header_timeout(mut self, timeout: &str) -> Self {
        self.lines = self.lines.set("header_timeout", quoted(timeout));
        self
    }

    pub fn keepalive_timeout(mut self, timeout: &str) -> Self {
        self.lines = self.lines.set("keepalive_timeout", quoted(timeout));
        self
    }

    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.lines = self.lines.set("max_header_bytes", bytes.to_string());
        self
    }

    pub fn max_headers(mut self, count: usize) -> Self {
        self.lines = self.lines.set("max_headers", count.to_string());
        self
    }

    pub fn max_connections(mut self, total: usize, per_client: Option<usize>) -> Self {
        self.lines = self.lines.set("max_connections", total.to_string());
        if let Some(per_client) = per_client {
            self.lines = self
                .lines
                .set("max_connections_per_client", per_client.to_string());
        }
        self
    }

    pub fn raw(mut self, line: &str) -> Self {
        self.lines = self.lines.raw(line);
        self
    }
}

/// `[session]` keys beyond the cookie name and the format.
#[derive(Debug, Clone)]
pub struct Session {
    idle: String,
    absolute: String,
    renew_below: Option<String>,
    format: RecordFormat,
    lines: Lines,
    /// The cookie keys, inline, the signing one first (default: the test key).
    cookie_keys: Vec<String>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            idle: "30m".into(),
            absolute: "12h".into(),
            renew_below: None,
            format: RecordFormat::MessagePack,
            lines: Lines::default(),
            cookie_keys: vec![super::config::COOKIE_KEY.to_string()],
        }
    }
}

impl Session {
    /// Signs cookies with the first of `keys`, verifies them with all.
    pub fn cookie_keys(mut self, keys: &[&str]) -> Self {
        self.cookie_keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }

    /// The `[[session.cookie_keys]]` tables.
    fn cookie_keys_toml(&self) -> String {
        self.cookie_keys
            .iter()
            .map(|k| format!("[[session.cookie_keys]]\ninsecure_value = \"{k}\"\n"))
            .collect()
    }

    pub fn timeouts(mut self, idle: &str, absolute: &str) -> Self {
        self.idle = idle.into();
        self.absolute = absolute.into();
        self
    }

    pub fn renew_below(mut self, below: &str) -> Self {
        self.renew_below = Some(below.into());
        self
    }

    pub fn format(mut self, format: RecordFormat) -> Self {
        self.format = format;
        self
    }

    pub fn persistent(mut self, on: bool) -> Self {
        self.lines = self.lines.set("persistent", on.to_string());
        self
    }

    pub fn max_claims_bytes(mut self, bytes: usize) -> Self {
        self.lines = self.lines.set("max_claims_bytes", bytes.to_string());
        self
    }

    pub fn raw(mut self, line: &str) -> Self {
        self.lines = self.lines.raw(line);
        self
    }

    fn format_name(&self) -> &'static str {
        match self.format {
            RecordFormat::MessagePack => "msgpack",
            RecordFormat::Json => "json",
        }
    }
}

/// `[store]` keys of the Redis store beyond where it is.
#[derive(Debug, Clone)]
pub struct Store {
    key_prefix: String,
    command_timeout: String,
    lines: Lines,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            key_prefix: "sg:".into(),
            command_timeout: "200ms".into(),
            lines: Lines::default(),
        }
    }
}

impl Store {
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    pub fn command_timeout(mut self, timeout: &str) -> Self {
        self.command_timeout = timeout.into();
        self
    }

    /// The circuit breaker: open after `failures` failures, for `open`.
    pub fn breaker(mut self, failures: u32, open: &str) -> Self {
        self.lines = self
            .lines
            .set("breaker_failures", failures.to_string())
            .set("breaker_open", quoted(open));
        self
    }

    pub fn renewal_flush_interval(mut self, interval: &str) -> Self {
        self.lines = self.lines.set("renewal_flush_interval", quoted(interval));
        self
    }

    pub fn password_file(mut self, path: &std::path::Path) -> Self {
        self.lines = self
            .lines
            .set("password_file", quoted(&path.display().to_string()));
        self
    }

    pub fn raw(mut self, line: &str) -> Self {
        self.lines = self.lines.raw(line);
        self
    }
}

/// The body of a `[cache]` table.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    lines: Lines,
}

impl Cache {
    pub fn enabled(mut self, on: bool) -> Self {
        self.lines = self.lines.set("enabled", on.to_string());
        self
    }

    pub fn max_staleness(mut self, bound: &str) -> Self {
        self.lines = self.lines.set("max_staleness", quoted(bound));
        self
    }

    pub fn stale_window(mut self, window: &str) -> Self {
        self.lines = self.lines.set("stale_window", quoted(window));
        self
    }

    pub fn raw(mut self, line: &str) -> Self {
        self.lines = self.lines.raw(line);
        self
    }
}

/// `[identity]` keys beyond the issuer, and the signing keys (default: the single HS256 test
/// key of `signing_key_*`).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    lines: Lines,
    /// `[[identity.keys]]` as (id, algorithm, file in tests/data/keys).
    keys: Vec<(String, String, String)>,
}

impl Identity {
    /// Signs with the first of `keys` (id, algorithm, a file of tests/data/keys), publishes all.
    pub fn keys(mut self, keys: &[(&str, &str, &str)]) -> Self {
        self.keys = keys
            .iter()
            .map(|(id, alg, file)| (id.to_string(), alg.to_string(), file.to_string()))
            .collect();
        self
    }

    pub fn raw(mut self, line: &str) -> Self {
        self.lines = self.lines.raw(line);
        self
    }

    /// The `[[identity.keys]]` tables for `keys` (id, algorithm, a file of tests/data/keys), as
    /// the harness renders them: a test rewriting the configuration replaces one with another.
    pub fn keys_toml(keys: &[(&str, &str, &str)]) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys");
        keys.iter()
            .map(|(id, alg, file)| {
                format!(
                    "\n[[identity.keys]]\nid = \"{id}\"\nalgorithm = \"{alg}\"\nfile = \"{dir}/{file}\"\n"
                )
            })
            .collect()
    }

    /// The `[identity]` lines and the key tables to put after `[identity.headers]`.
    fn toml(&self) -> (String, String) {
        if self.keys.is_empty() {
            let single = format!("signing_key_id = \"k1\"\ninsecure_signing_key = \"{KEY}\"\n");
            return (format!("{single}{}", self.lines.text()), String::new());
        }
        let keys: Vec<(&str, &str, &str)> = self
            .keys
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        (self.lines.text(), Self::keys_toml(&keys))
    }
}

/// `[[upstream]]` keys of the `app` upstream beyond its backends.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    lines: Lines,
}

impl Upstream {
    /// `"tcp"`, `"http"` or `"none"`.
    pub fn health_check(mut self, kind: &str) -> Self {
        self.lines = self.lines.set("health_check", quoted(kind));
        self
    }

    pub fn health_path(mut self, path: &str) -> Self {
        self.lines = self.lines.set("health_path", quoted(path));
        self
    }

    pub fn health_interval(mut self, interval: &str) -> Self {
        self.lines = self.lines.set("health_interval", quoted(interval));
        self
    }

    /// `"session"` or `"sub"`.
    pub fn affinity(mut self, affinity: &str) -> Self {
        self.lines = self.lines.set("affinity", quoted(affinity));
        self
    }

    pub fn case_insensitive(mut self, on: bool) -> Self {
        self.lines = self.lines.set("case_insensitive", on.to_string());
        self
    }

    pub fn raw(mut self, line: &str) -> Self {
        self.lines = self.lines.raw(line);
        self
    }
}

/// A `[[route]]` to the `app` upstream.
#[derive(Debug, Clone)]
pub struct Route {
    lines: Lines,
}

impl Route {
    fn with(prefix: &str, auth: &str) -> Self {
        Route {
            lines: Lines::default()
                .set("path_prefix", quoted(prefix))
                .set("auth", quoted(auth)),
        }
    }

    pub fn public(prefix: &str) -> Self {
        Self::with(prefix, "public")
    }

    pub fn optional(prefix: &str) -> Self {
        Self::with(prefix, "optional")
    }

    pub fn required(prefix: &str) -> Self {
        Self::with(prefix, "required")
    }

    pub fn host(mut self, host: &str) -> Self {
        self.lines = self.lines.set("host", quoted(host));
        self
    }

    pub fn accept_login(mut self) -> Self {
        self.lines = self.lines.set("accept_login", "true");
        self
    }

    pub fn login_url(mut self, url: &str) -> Self {
        self.lines = self.lines.set("login_url", quoted(url));
        self
    }

    /// `"fail_closed"`, `"serve_stale"` or `"anonymous"`.
    pub fn on_store_error(mut self, policy: &str) -> Self {
        self.lines = self.lines.set("on_store_error", quoted(policy));
        self
    }

    pub fn websocket(mut self, on: bool) -> Self {
        self.lines = self.lines.set("websocket", on.to_string());
        self
    }

    pub fn case_insensitive(mut self, on: bool) -> Self {
        self.lines = self.lines.set("case_insensitive", on.to_string());
        self
    }

    pub fn audience(mut self, audience: &str) -> Self {
        self.lines = self.lines.set("audience", quoted(audience));
        self
    }

    pub fn raw(mut self, line: &str) -> Self {
        self.lines = self.lines.raw(line);
        self
    }

    fn has(&self, key: &str) -> bool {
        self.lines
            .0
            .iter()
            .any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    }
}

/// Where the sessions are kept.
enum Where {
    Memory,
    /// A redis-server the harness starts.
    StartRedis,
    /// A redis-server the test started (with a password, say).
    Redis(RedisServer),
    /// The `[store]` lines that say where Redis is (`url = ...`, or a topology's keys), for
    /// Redis the test runs itself or that is not there yet.
    At(String),
}

/// What the `app` upstream's backends are.
enum Backends {
    /// Echo upstreams the harness starts, by name.
    Echo(Vec<String>),
    /// Addresses of backends the test runs itself.
    At(Vec<SocketAddr>),
}

/// How the test's requests reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP/1.1 on the plain listener.
    Http1,
    /// HTTP/2 over TLS on an HTTPS listener (ALPN `h2`), with a certificate for `localhost`
    /// from a CA of the test's own; every reply is checked to have come over HTTP/2.
    Http2,
}

/// The builder: what to run. `start` runs it.
pub struct Harness {
    transport: Transport,
    store: Where,
    backends: Backends,
    server: Server,
    session: Session,
    store_settings: Store,
    cache: Option<Cache>,
    upstream: Upstream,
    routes: Vec<Route>,
    catch_all: Route,
    tls: Option<Tls>,
    identity: Identity,
    args: Vec<String>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// The memory store, one echo upstream named `app`, the standard routes.
    pub fn new() -> Self {
        Harness {
            transport: Transport::Http1,
            store: Where::Memory,
            backends: Backends::Echo(vec!["app".into()]),
            server: Server::default(),
            session: Session::default(),
            store_settings: Store::default(),
            cache: None,
            upstream: Upstream::default(),
            routes: vec![
                Route::public("/login").accept_login(),
                Route::public("/public"),
                Route::optional("/opt"),
            ],
            catch_all: Route::required("/"),
            tls: None,
            identity: Identity::default(),
            args: Vec::new(),
        }
    }

    /// On a redis-server of its own, started with the harness.
    pub fn redis(mut self) -> Self {
        self.store = Where::StartRedis;
        self
    }

    /// On this redis-server (the harness owns it from now on).
    pub fn redis_server(mut self, server: RedisServer) -> Self {
        self.store = Where::Redis(server);
        self
    }

    /// On Redis at `url`, which the test runs (or starts later) itself.
    pub fn redis_url(self, url: &str) -> Self {
        self.redis_at(&format!("url = \"{url}\""))
    }

    /// On Redis found through `location`: the `[store]` keys of a topology (a Sentinel
    /// group's or a cluster's `store_keys()`, a URL with TLS files).
    pub fn redis_at(mut self, location: &str) -> Self {
        self.store = Where::At(location.to_string());
        self
    }

    /// The `app` upstream's backends: echo upstreams of these names (`Echo::upstream` tells
    /// which one answered).
    pub fn echo_backends(mut self, names: &[&str]) -> Self {
        self.backends = Backends::Echo(names.iter().map(|n| n.to_string()).collect());
        self
    }

    /// The `app` upstream's backend: a server the test runs itself (no echo upstream).
    pub fn backend(mut self, addr: SocketAddr) -> Self {
        self.backends = Backends::At(vec![addr]);
        self
    }

    pub fn server(mut self, adjust: impl FnOnce(Server) -> Server) -> Self {
        self.server = adjust(self.server);
        self
    }

    pub fn session(mut self, adjust: impl FnOnce(Session) -> Session) -> Self {
        self.session = adjust(self.session);
        self
    }

    /// `[store]` settings (Redis only).
    pub fn store(mut self, adjust: impl FnOnce(Store) -> Store) -> Self {
        self.store_settings = adjust(self.store_settings);
        self
    }

    /// A `[cache]` table.
    pub fn cache(mut self, adjust: impl FnOnce(Cache) -> Cache) -> Self {
        self.cache = Some(adjust(self.cache.unwrap_or_default()));
        self
    }

    pub fn upstream(mut self, adjust: impl FnOnce(Upstream) -> Upstream) -> Self {
        self.upstream = adjust(self.upstream);
        self
    }

    /// One more route, after the standard ones and before the catch-all.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The catch-all route `/` (audience `app` unless it names one).
    pub fn catch_all(mut self, route: Route) -> Self {
        self.catch_all = route;
        self
    }

    /// Requests over `transport` (HTTP/2 adds an HTTPS listener).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// An HTTPS listener too (`Running::proxy.tls_port`).
    pub fn tls(mut self, adjust: impl FnOnce(Tls) -> Tls) -> Self {
        self.tls = Some(adjust(self.tls.unwrap_or_default()));
        self
    }

    /// `[identity]` settings and signing keys.
    pub fn identity(mut self, adjust: impl FnOnce(Identity) -> Identity) -> Self {
        self.identity = adjust(self.identity);
        self
    }

    /// Access log lines as JSON (`--log-json`).
    pub fn log_json(mut self) -> Self {
        self.args.push("--log-json".into());
        self
    }

    /// The configuration text (`{port}`, `{admin_port}` and `{dir}` still to fill in) for
    /// these backends and this store location.
    fn render(&self, backends: &[SocketAddr], location: Option<&str>) -> String {
        let store = match location {
            Some(location) => {
                let s = &self.store_settings;
                format!(
                    "kind = \"redis\"\n{location}\nkey_prefix = \"{}\"\ncommand_timeout = \"{}\"\nconnect_timeout = \"200ms\"\n{}",
                    s.key_prefix,
                    s.command_timeout,
                    s.lines.text()
                )
            }
            None => {
                assert!(
                    self.store_settings.lines.0.is_empty(),
                    "[store] settings apply to Redis only"
                );
                "kind = \"memory\"".to_string()
            }
        };
        let s = &self.session;
        let renew = s
            .renew_below
            .as_ref()
            .map(|r| format!("renew_below = \"{r}\"\n"))
            .unwrap_or_default();
        let backends: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
        let (identity_lines, identity_keys) = self.identity.toml();
        let mut text = format!(
            r#"[server]
listen = ["127.0.0.1:{{port}}"]
threads = 2
admin_listen = "127.0.0.1:{{admin_port}}"
{server}

[session]
cookie_name = "{COOKIE}"
idle_timeout = "{idle}"
absolute_timeout = "{absolute}"
{renew}format = "{format}"
{session}
{cookie_keys}

[store]
{store}

[identity]
issuer = "sessiongate"
{identity}

[identity.headers]
"X-Auth-User" = "sub"
"X-Auth-Email" = "email"
"X-Auth-Roles" = "roles"
{identity_keys}

[[upstream]]
name = "app"
backends = [{backends}]
{upstream}
"#,
            server = self.server.lines.text(),
            idle = s.idle,
            absolute = s.absolute,
            format = s.format_name(),
            session = s.lines.text(),
            cookie_keys = s.cookie_keys_toml(),
            backends = backends.join(", "),
            upstream = self.upstream.lines.text(),
            identity = identity_lines,
            identity_keys = identity_keys,
        );
        if let Some(cache) = &self.cache {
            text.push_str(&format!("\n[cache]\n{}\n", cache.lines.text()));
        }
        if let Some(tls) = &self.tls {
            text.push_str(&tls.toml());
        }
        for route in &self.routes {
            text.push_str(&format!(
                "\n[[route]]\nupstream = \"app\"\n{}\n",
                route.lines.text()
            ));
        }
        let mut catch_all = self.catch_all.clone();
        if !catch_all.has("audience") {
            catch_all = catch_all.audience("app");
        }
        text.push_str(&format!(
            "\n[[route]]\nupstream = \"app\"\n{}\n",
            catch_all.lines.text()
        ));
        text
    }

    /// Starts the backends, the store and the proxy; returns once the proxy listens.
    pub async fn start(mut self) -> Running {
        let mut echoes = Vec::new();
        let addrs = match &self.backends {
            Backends::Echo(names) => {
                for name in names {
                    echoes.push(EchoUpstream::start(name).await);
                }
                echoes.iter().map(|e| e.addr).collect()
            }
            Backends::At(addrs) => addrs.clone(),
        };
        let (redis, location) = match &self.store {
            Where::Memory => (None, None),
            Where::StartRedis => {
                let redis = RedisServer::start();
                let url = format!("url = \"{}\"", redis.url());
                (Some(redis), Some(url))
            }
            Where::Redis(server) => (None, Some(format!("url = \"{}\"", server.url()))),
            Where::At(location) => (None, Some(location.clone())),
        };
        let pki = (self.transport == Transport::Http2).then(|| {
            let pki = Pki::new("sessiongate test CA");
            let cert = pki.issue("proxy", &["localhost", "127.0.0.1"], Validity::Current);
            self.tls = Some(self.tls.take().unwrap_or_default().certificate(&cert));
            pki
        });
        let config = self.render(&addrs, location.as_deref());
        let redis = match self.store {
            Where::Redis(server) => Some(server),
            _ => redis,
        };
        let files = self.server.files.clone();
        let args = self.args.clone();
        let proxy = start_proxy(&config, &files, &args);
        let (http, base) = match &pki {
            Some(pki) => (
                https_client(&pki.ca(), &[("localhost", proxy.tls_port)], true),
                format!("https://localhost:{}", proxy.tls_port),
            ),
            None => (client(), format!("http://127.0.0.1:{}", proxy.port)),
        };
        Running {
            transport: self.transport,
            pki,
            base,
            redis,
            backends: echoes,
            proxy,
            http,
            config,
            files,
            args,
            format: self.session.format,
            key_prefix: self.store_settings.key_prefix.clone(),
        }
    }
}

fn start_proxy(config: &str, files: &[(String, String)], args: &[String]) -> Proxy {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start_with(config, files, &args)
}

/// A running harness: the store (when the harness started or was given one), the echo
/// upstreams, the proxy and an HTTP client that follows no redirects and keeps no cookies.
pub struct Running {
    pub transport: Transport,
    /// The CA of the proxy's HTTPS certificate, over HTTP/2.
    pub pki: Option<Pki>,
    /// Where requests go: the plain listener, or over HTTP/2 the HTTPS one.
    base: String,
    pub redis: Option<RedisServer>,
    /// The echo upstreams, in the order they were named (none with `backend`).
    pub backends: Vec<EchoUpstream>,
    pub proxy: Proxy,
    pub http: reqwest::Client,
    config: String,
    files: Vec<(String, String)>,
    args: Vec<String>,
    format: RecordFormat,
    key_prefix: String,
}

/// One response, with the upstream's echo when the request reached it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub echo: Option<Echo>,
}

impl Reply {
    pub fn echo(&self) -> &Echo {
        self.echo
            .as_ref()
            .expect("the request reached the upstream")
    }

    /// The session cookie this response sets (`Some("")` when it clears it).
    pub fn session_cookie(&self) -> Option<String> {
        set_cookie_value(&self.headers, COOKIE)
    }

    /// The claims of the single assertion the upstream received, verified with the test key.
    pub fn claims(&self) -> serde_json::Value {
        let tokens = self.echo().all("x-sessiongate-assertion");
        assert_eq!(
            tokens.len(),
            1,
            "exactly one assertion upstream: {:?}",
            self.echo().headers
        );
        verify(tokens[0])
    }
}

/// A response read off a raw socket: its status, head and body.
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: String,
    /// The whole response as text.
    pub text: String,
}

impl RawReply {
    pub fn parse(text: &str) -> RawReply {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        RawReply {
            status,
            head: head.to_string(),
            body: body.to_string(),
            text: text.to_string(),
        }
    }

    /// A header of the reply, by name in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// What the echo upstream reported, when the request reached it.
    pub fn echo(&self) -> Echo {
        let json = self
            .body
            .find('{')
            .map(|start| &self.body[start..self.body.rfind('}').unwrap_or(0) + 1])
            .unwrap_or_default();
        serde_json::from_str(json).unwrap_or_else(|e| panic!("no echo ({e}): {}", self.body))
    }
}

/// A request being built: `h.get("/page").cookie(&c).header("x-a", "b").send().await`.
pub struct Request<'a> {
    h: &'a Running,
    method: Method,
    path: String,
    cookie: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    timeout: Duration,
}

impl Request<'_> {
    /// How long the client waits for the answer (10 s unless set); past it the test fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Carries the session cookie with this value.
    pub fn cookie(mut self, value: &str) -> Self {
        self.cookie = Some(value.to_string());
        self
    }

    /// Carries the session cookie when there is one.
    pub fn maybe_cookie(mut self, value: Option<&str>) -> Self {
        self.cookie = value.map(String::from);
        self
    }

    /// One more header, appended (a name may repeat).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn headers(mut self, pairs: &[(&str, &str)]) -> Self {
        for (n, v) in pairs {
            self = self.header(n, v);
        }
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self
    }

    /// Sends it with the HTTP client (header names lower-cased, values checked).
    pub async fn send(self) -> Reply {
        let mut map = headers(
            &self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        if let Some(c) = &self.cookie {
            map.append(
                "cookie",
                format!("{COOKIE}={c}").parse().expect("a cookie header"),
            );
        }
        let mut req = self
            .h
            .http
            .request(self.method, self.h.url(&self.path))
            .headers(map)
            .timeout(self.timeout);
        if let Some(body) = self.body {
            req = req.body(body);
        }
        let resp = req.send().await.expect("the proxy answers");
        if self.h.transport == Transport::Http2 {
            assert_eq!(
                resp.version(),
                reqwest::Version::HTTP_2,
                "answered over HTTP/2"
            );
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Reply {
            status,
            headers,
            echo: serde_json::from_slice(&body).ok(),
        }
    }

    /// Sends it as raw HTTP/1.1 bytes, target and header names exactly as given (`Host:
    /// 127.0.0.1` and `Connection: close` added), for what an HTTP client would normalise.
    pub async fn send_raw(self) -> RawReply {
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(c) = &self.cookie {
            text.push_str(&format!("Cookie: {COOKIE}={c}\r\n"));
        }
        if let Some(body) = &self.body {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("Connection: close\r\n\r\n");
        if let Some(body) = &self.body {
            text.push_str(body);
        }
        self.h.raw(&text).await
    }
}

impl Running {
    /// The URL of `path` where this harness's requests go.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until the proxy listens for SIGHUP (its control service has started).
    pub async fn wait_for_reload_handler(&self) {
        super::eventually(
            std::time::Duration::from_secs(10),
            "the SIGHUP handler never started",
            || {
                !self
                    .proxy
                    .log_lines_with("reloads the configuration on SIGHUP")
                    .is_empty()
            },
        )
        .await;
    }

    /// Sends SIGHUP and waits for the reload's log line: `configuration reloaded` when
    /// `success`, `configuration reload refused` otherwise.
    pub async fn reload(&self, success: bool) {
        let needle = if success {
            "configuration reloaded"
        } else {
            "configuration reload refused"
        };
        let before = self.proxy.log_lines_with(needle).len();
        self.proxy.signal("-HUP");
        super::eventually(
            std::time::Duration::from_secs(10),
            &format!("no `{needle}` logged"),
            || self.proxy.log_lines_with(needle).len() > before,
        )
        .await;
    }

    /// The first echo upstream.
    pub fn upstream(&self) -> &EchoUpstream {
        self.backends
            .first()
            .expect("this harness runs an echo upstream")
    }

    pub fn upstream_mut(&mut self) -> &mut EchoUpstream {
        self.backends
            .first_mut()
            .expect("this harness runs an echo upstream")
    }

    pub fn redis(&self) -> &RedisServer {
        self.redis
            .as_ref()
            .expect("this harness runs its own Redis")
    }

    pub fn redis_mut(&mut self) -> &mut RedisServer {
        self.redis
            .as_mut()
            .expect("this harness runs its own Redis")
    }

    /// The configuration the proxy was started with (placeholders not yet filled in).
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Another proxy on the same configuration: the same store and backends.
    pub fn another_proxy(&self) -> Proxy {
        start_proxy(&self.config, &self.files, &self.args)
    }

    /// A request to the proxy, to build on.
    pub fn request_to(&self, method: Method, path: &str) -> Request<'_> {
        Request {
            h: self,
            method,
            path: path.to_string(),
            cookie: None,
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn get(&self, path: &str) -> Request<'_> {
        self.request_to(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Request<'_> {
        self.request_to(Method::POST, path)
    }

    /// Sends raw bytes as one request (see `common::raw_request`).
    pub async fn raw(&self, request: &str) -> RawReply {
        let (_, text) = raw_request(self.proxy.port, request).await;
        RawReply::parse(&text)
    }

    /// GET `path` with these headers, as given.
    pub async fn send(&self, path: &str, h: HeaderMap) -> Reply {
        let resp = self
            .http
            .get(self.url(path))
            .headers(h)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the proxy answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Reply {
            status,
            headers,
            echo: serde_json::from_slice(&body).ok(),
        }
    }

    /// GET `path` with the session cookie `cookie` (if any) and `extra` headers.
    pub async fn request(&self, path: &str, cookie: Option<&str>, extra: &[(&str, &str)]) -> Reply {
        self.get(path)
            .maybe_cookie(cookie)
            .headers(extra)
            .send()
            .await
    }

    /// Repeats a request until it answers `status` (for state that settles asynchronously,
    /// such as the cache switching off when Redis dies); fails after 5 s.
    pub async fn wait_for_status(
        &self,
        path: &str,
        cookie: Option<&str>,
        status: StatusCode,
    ) -> Reply {
        let what = format!("{path} answers {status}");
        eventually_async(SETTLE, &what, || async move {
            let reply = self.request(path, cookie, &[]).await;
            (reply.status == status).then_some(reply)
        })
        .await
    }

    /// Logs in through the public /login route (the echo app answers with the control
    /// header), carrying `cookie` if given.
    pub async fn login_with(&self, login_json: &str, cookie: Option<&str>) -> Reply {
        self.request(
            "/login",
            cookie,
            &[("x-echo-set-x-sessiongate-login", login_json)],
        )
        .await
    }

    /// A request on `path` whose response (from the echo app) ends the session: `scope` is
    /// "current" or "all".
    pub async fn logout(&self, path: &str, cookie: &str, scope: &str) -> Reply {
        self.request(
            path,
            Some(cookie),
            &[("x-echo-set-x-sessiongate-logout", scope)],
        )
        .await
    }

    /// Logs `sub` in with an email and roles; returns the session cookie's value.
    pub async fn login(&self, sub: &str) -> String {
        let json = format!(r#"{{"sub":"{sub}","email":"{sub}@example.com","roles":["user"]}}"#);
        let reply = self.login_with(&json, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply
            .session_cookie()
            .expect("login sets the session cookie")
    }

    /// The store key of this cookie's session (`sg:s:<hash>`).
    pub fn session_key(&self, cookie: &str) -> String {
        let key = super::config::session_id(cookie).store_key();
        sessiongate::store::KeySchema::new(&self.key_prefix).session(&key)
    }

    /// The record Redis holds for this cookie, in the configured format.
    pub fn stored(&self, cookie: &str) -> Option<SessionRecord> {
        super::config::codec().decode(cookie.as_bytes())?;
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.session_key(cookie))
            .query(&mut self.redis().connection())
            .ok()?;
        raw.map(|r| SessionRecord::decode(&r, self.format).expect("a decodable record"))
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.proxy.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    }
}
