//! Every configuration rule, one bad file each: parse-level rejections (unknown keys, wrong
//! types, bad durations and enum values) and every check in `src/config/validate.rs`, asserting
//! the key path and the message of the problem reported.
//!
//! Each test starts from `Cfg::base()`, a small valid file, and changes one thing.

use std::path::Path;
use std::time::Duration;

use sessiongate::config::model::{
    AuthPolicy, HostPattern, IdentitySettings, KeyMaterial, OnStoreError, RecordFormat,
    RedisTopology, SameSite, SigningAlgorithm, StoreSettings,
};
use sessiongate::config::{from_toml, Config, ConfigError};

/// The secret of the configuration's HS256 signing key.
fn hmac_secret(identity: &IdentitySettings) -> &[u8] {
    match &identity.signing_key().material {
        KeyMaterial::Hmac(secret) => &secret.0,
        _ => panic!("not an HS256 key"),
    }
}

/// 32 bytes: the shortest key accepted.
const KEY32: &str = "0123456789abcdef0123456789abcdef";

const BASE: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
admin_listen = "127.0.0.1:9091"
threads = 1

[session]
cookie_name = "__Host-sid"

[[session.cookie_keys]]
insecure_value = "cookie-key-0123456789abcdefghijklmnop"

[store]
kind = "memory"

[identity]
insecure_signing_key = "0123456789abcdef0123456789abcdef"

[identity.headers]
"X-Auth-User" = "sub"

[[upstream]]
name = "app"
backends = ["127.0.0.1:8000"]

[[route]]
path_prefix = "/"
upstream = "app"
"#;

/// A configuration file under construction: the lines of `BASE`, edited one key at a time.
#[derive(Clone)]
struct Cfg {
    lines: Vec<String>,
}

impl Cfg {
    fn base() -> Self {
        Self::from_text(BASE)
    }

    fn from_text(text: &str) -> Self {
        Cfg {
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    /// The line range `[header+1, end)` of the first table with this header, e.g. `[store]`
    /// or `[[route]]`.
    fn section(&self, header: &str) -> (usize, usize) {
        let start = self
            .lines
            .iter()
            .position(|l| l.trim() == header)
            .unwrap_or_else(|| panic!("no {header} in the config:\n{}", self.text()));
        let end = self.lines[start + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(self.lines.len(), |i| start + 1 + i);
        (start + 1, end)
    }

    fn key_line(&self, header: &str, key: &str) -> Option<usize> {
        let (start, end) = self.section(header);
        (start..end).find(|&i| {
            self.lines[i]
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == key)
        })
    }

    /// Sets `key = value` (value written as TOML) in the first `header` table, replacing the
    /// key's line if it is there.
    fn set(mut self, header: &str, key: &str, value: &str) -> Self {
        let line = format!("{key} = {value}");
        match self.key_line(header, key) {
            Some(i) => self.lines[i] = line,
            None => {
                let (start, _) = self.section(header);
                self.lines.insert(start, line);
            }
        }
        self
    }

    /// Sets a string value, quoting it as a TOML basic string.
    fn set_str(self, header: &str, key: &str, value: &str) -> Self {
        let quoted = toml_string(value);
        self.set(header, key, &quoted)
    }

    /// Removes `key` from the first `header` table (it must be there).
    fn remove(mut self, header: &str, key: &str) -> Self {
        let i = self
            .key_line(header, key)
            .unwrap_or_else(|| panic!("no {key} in {header}"));
        self.lines.remove(i);
        self
    }

    /// Removes the first `header` table, header and keys.
    fn remove_section(mut self, header: &str) -> Self {
        let (start, end) = self.section(header);
        self.lines.drain(start - 1..end);
        self
    }

    /// Appends raw TOML (more tables, usually).
    fn append(mut self, text: &str) -> Self {
        self.lines.extend(text.lines().map(str::to_string));
        self
    }

    fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    fn load(&self) -> Result<Config, ConfigError> {
        self.load_in(Path::new("/nonexistent-sessiongate-test-dir"))
    }

    fn load_in(&self, dir: &Path) -> Result<Config, ConfigError> {
        from_toml(&self.text(), "test.toml", dir)
    }

    fn ok(&self) -> Config {
        match self.load() {
            Ok(config) => config,
            Err(e) => panic!(
                "expected a valid config, got:\n{e}\n--- config ---\n{}",
                self.text()
            ),
        }
    }

    fn problems(&self) -> Vec<String> {
        problems_of(self.load(), &self.text())
    }
}

fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn problems_of(result: Result<Config, ConfigError>, text: &str) -> Vec<String> {
    match result {
        Ok(_) => panic!("expected problems, but the config is valid:\n{text}"),
        Err(e @ ConfigError::Invalid { .. }) => e.problems(),
        Err(e) => {
            panic!("expected validation problems, got another error:\n{e}\n--- config ---\n{text}")
        }
    }
}

/// Asserts that `problems` holds a line `"{path}: ...{fragment}..."`.
fn assert_has(problems: &[String], path: &str, fragment: &str) {
    let prefix = format!("{path}: ");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&prefix) && p[prefix.len()..].contains(fragment)),
        "expected a problem at `{path}` containing {fragment:?}; got:\n  {}",
        problems.join("\n  ")
    );
}

/// Asserts that the config has exactly one problem, at `path`, whose message contains
/// `fragment`.
#[track_caller]
fn assert_only(cfg: &Cfg, path: &str, fragment: &str) {
    let problems = cfg.problems();
    assert_has(&problems, path, fragment);
    assert_eq!(
        problems.len(),
        1,
        "expected only the problem at `{path}`; got:\n  {}",
        problems.join("\n  ")
    );
}

/// Asserts that parsing fails (before validation) with a message holding every fragment.
#[track_caller]
fn assert_parse_error(cfg: &Cfg, fragments: &[&str]) {
    let text = cfg.text();
    match cfg.load() {
        Err(e @ ConfigError::Parse { .. }) => {
            let problems = e.problems();
            assert_eq!(problems.len(), 1, "{problems:?}");
            let message = &problems[0];
            assert!(
                message.starts_with("test.toml is not a valid sessiongate configuration"),
                "{message}"
            );
            for fragment in fragments {
                assert!(
                    message.contains(fragment),
                    "expected {fragment:?} in the parse error:\n{message}"
                );
            }
        }
        Err(e) => panic!("expected a parse error, got:\n{e}"),
        Ok(_) => panic!("expected a parse error, but the config is valid:\n{text}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The base and the defaults

#[test]
fn boundary_settings_default_to_the_safe_side() {
    let config = Cfg::base().ok();
    assert!(config.server.trusted_proxies.is_empty());
    assert!(!config.server.forwarded_header);
    assert!(!config.server.allow_trace);
    assert_eq!(config.session.max_claims_bytes, 4096);
    assert!(!config.upstreams[0].case_insensitive);
    let r = &config.routes[0];
    assert!(!r.accept_login, "no route accepts logins unless it says so");
    assert!(r.websocket);
    assert!(!r.case_insensitive);
}

#[test]
fn boundary_settings_written_out_are_taken() {
    let config = Cfg::base()
        .set(
            "[server]",
            "trusted_proxies",
            r#"["10.0.0.0/8", "192.168.1.7", "fd00::/8", "::1"]"#,
        )
        .set("[server]", "forwarded_header", "true")
        .set("[server]", "allow_trace", "true")
        .set("[session]", "max_claims_bytes", "8192")
        .set("[[upstream]]", "case_insensitive", "true")
        .set("[[route]]", "accept_login", "true")
        .set("[[route]]", "websocket", "false")
        .ok();
    let nets: Vec<String> = config
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        nets,
        ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "::1/128"]
    );
    assert!(config.server.forwarded_header);
    assert!(config.server.allow_trace);
    assert_eq!(config.session.max_claims_bytes, 8192);
    let r = &config.routes[0];
    assert!(r.accept_login);
    assert!(!r.websocket);
    assert!(
        r.case_insensitive,
        "a route takes its upstream's case_insensitive"
    );
    let config = Cfg::base()
        .set("[[upstream]]", "case_insensitive", "true")
        .set("[[route]]", "case_insensitive", "false")
        .ok();
    assert!(
        !config.routes[0].case_insensitive,
        "the route's own setting wins"
    );
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let text = format!(
        r#"
[identity]
insecure_signing_key = "{KEY32}"

[[upstream]]
name = "app"
backends = ["127.0.0.1:8000"]

[[route]]
upstream = "app"
"#
    );
    let config = Cfg::from_text(&text).ok();

    assert_eq!(config.server.listen, vec!["0.0.0.0:8080".parse().unwrap()]);
    assert_eq!(
        config.server.admin_listen,
        "127.0.0.1:9091".parse().unwrap()
    );
    assert!(config.server.threads >= 1);
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(5));
    let c = config.server.connections;
    assert_eq!(c.header_timeout, Duration::from_secs(60));
    assert_eq!(c.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(c.max_header_bytes, 32 * 1024);
    assert_eq!(c.max_headers, 100);
    assert_eq!(c.max_connections, 10_000);
    assert_eq!(c.max_connections_per_client, None);

    let s = &config.session;
    assert_eq!(s.cookie.name, "__Host-sid");
    assert!(s.cookie.secure);
    assert_eq!(s.cookie.same_site, SameSite::Lax);
    assert_eq!(s.cookie.domain, None);
    assert!(!s.cookie.persistent);
    assert_eq!(s.idle_timeout, Duration::from_secs(30 * 60));
    assert_eq!(s.absolute_timeout, Duration::from_secs(12 * 3600));
    assert_eq!(s.renew_below, Duration::from_secs(15 * 60));
    assert_eq!(s.tunnel_recheck, Duration::from_secs(10));
    assert_eq!(s.format, RecordFormat::MessagePack);

    match &config.store {
        StoreSettings::Memory(m) => {
            assert_eq!(m.max_sessions, 1_000_000);
            assert_eq!(m.sweep_interval, Duration::from_secs(60));
        }
        other => panic!("expected the memory store by default, got {other:?}"),
    }

    let id = &config.identity;
    assert_eq!(id.issuer, "sessiongate");
    assert_eq!(id.assertion_header.as_str(), "x-sessiongate-assertion");
    assert_eq!(id.assertion_ttl, Duration::from_secs(60));
    assert_eq!(id.signing_key().id, "k1");
    assert_eq!(hmac_secret(id), KEY32.as_bytes());
    assert!(id.headers.is_empty());

    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(config.upstreams[0].name, "app");
    assert_eq!(
        config.upstreams[0].backends,
        vec!["127.0.0.1:8000".parse().unwrap()]
    );
    let t = config.upstreams[0].timeouts;
    assert_eq!(t.connect, Duration::from_secs(5));
    assert_eq!(t.read, Duration::from_secs(60));
    assert_eq!(t.write, Duration::from_secs(60));
    assert_eq!(t.total, None);
    assert_eq!(config.upstreams[0].tls, None);

    let r = &config.routes[0];
    assert_eq!(r.body.max_bytes, None);
    assert_eq!(r.body.buffer_bytes, None);
    assert_eq!(r.host, HostPattern::Any);
    assert_eq!(r.path_prefix, "/");
    assert_eq!(r.upstream, 0);
    assert_eq!(r.auth, AuthPolicy::Required);
    assert_eq!(
        r.audience, "app",
        "the audience defaults to the upstream name"
    );
    assert_eq!(r.login_url, None);
    assert_eq!(r.on_store_error, OnStoreError::FailClosed);
}

#[test]
fn redis_store_defaults() {
    let config = Cfg::base().set_str("[store]", "kind", "redis").ok();
    match &config.store {
        StoreSettings::Redis(r) => {
            assert_eq!(
                r.topology,
                sessiongate::config::model::RedisTopology::Standalone {
                    url: "redis://127.0.0.1:6379/0".into()
                }
            );
            assert_eq!(r.key_prefix, "sg:");
            assert_eq!(r.command_timeout, Duration::from_millis(50));
            assert_eq!(r.connect_timeout, Duration::from_millis(200));
        }
        other => panic!("expected the redis store, got {other:?}"),
    }
}

#[test]
fn renew_below_defaults_to_half_the_idle_timeout() {
    let config = Cfg::base().set_str("[session]", "idle_timeout", "10m").ok();
    assert_eq!(config.session.renew_below, Duration::from_secs(5 * 60));
}

#[test]
fn on_store_error_defaults_to_anonymous_for_optional_and_public_routes() {
    let config = Cfg::base()
        .append(
            r#"
[[route]]
path_prefix = "/opt"
upstream = "app"
auth = "optional"

[[route]]
path_prefix = "/pub"
upstream = "app"
auth = "public"
"#,
        )
        .ok();
    assert_eq!(config.routes[1].on_store_error, OnStoreError::Anonymous);
    assert_eq!(config.routes[2].on_store_error, OnStoreError::Anonymous);
}

#[test]
fn every_value_written_out_is_taken() {
    let config = Cfg::base()
        .set("[server]", "listen", r#"["127.0.0.1:8081", "[::1]:8082"]"#)
        .set("[server]", "threads", "3")
        .set_str("[server]", "admin_listen", "127.0.0.1:9999")
        .set_str("[server]", "shutdown_grace", "1s")
        .set_str("[session]", "cookie_name", "sid")
        .set("[session]", "secure", "false")
        .set_str("[session]", "same_site", "strict")
        .set_str("[session]", "domain", "example.com")
        .set("[session]", "persistent", "true")
        .set_str("[session]", "idle_timeout", "1h")
        .set_str("[session]", "absolute_timeout", "1h")
        .set_str("[session]", "renew_below", "10m")
        .set_str("[session]", "format", "json")
        .set_str("[store]", "kind", "redis")
        .set_str("[store]", "url", "redis://10.0.0.1:6380/2")
        .set_str("[store]", "key_prefix", "app1:")
        .set_str("[store]", "command_timeout", "75ms")
        .set_str("[store]", "connect_timeout", "1s")
        .set_str("[identity]", "issuer", "edge")
        .set_str("[identity]", "assertion_header", "X-Edge-Assertion")
        .set_str("[identity]", "assertion_ttl", "1h")
        .set_str("[identity]", "signing_key_id", "2024-01")
        .set_str("[identity.headers]", "X-Auth-Email", "email")
        .set_str("[[route]]", "host", "App.Example.com")
        .set_str("[[route]]", "audience", "web")
        .set_str(
            "[[route]]",
            "login_url",
            "https://login.example.com/?app=web",
        )
        .set_str("[[route]]", "on_store_error", "serve_stale")
        .ok();
    assert_eq!(config.server.listen.len(), 2);
    assert_eq!(config.server.threads, 3);
    assert_eq!(config.server.admin_listen.port(), 9999);
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(1));
    let c = &config.session.cookie;
    assert_eq!(
        (c.name.as_str(), c.secure, c.same_site, c.domain.as_deref()),
        ("sid", false, SameSite::Strict, Some("example.com"))
    );
    assert!(c.persistent);
    assert_eq!(config.session.renew_below, Duration::from_secs(600));
    assert_eq!(config.session.format, RecordFormat::Json);
    let StoreSettings::Redis(r) = &config.store else {
        panic!("expected redis");
    };
    assert_eq!(
        r.topology,
        sessiongate::config::model::RedisTopology::Standalone {
            url: "redis://10.0.0.1:6380/2".into()
        }
    );
    assert_eq!(r.key_prefix, "app1:");
    assert_eq!(r.command_timeout, Duration::from_millis(75));
    assert_eq!(r.connect_timeout, Duration::from_secs(1));
    let id = &config.identity;
    assert_eq!(id.issuer, "edge");
    assert_eq!(id.assertion_header.as_str(), "x-edge-assertion");
    assert_eq!(id.assertion_ttl, Duration::from_secs(3600));
    assert_eq!(id.signing_key().id, "2024-01");
    let headers: Vec<(&str, &str)> = id
        .headers
        .iter()
        .map(|(h, c)| (h.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        headers,
        vec![("x-auth-email", "email"), ("x-auth-user", "sub")]
    );
    let route = &config.routes[0];
    assert_eq!(route.host, HostPattern::Exact("app.example.com".into()));
    assert_eq!(route.audience, "web");
    assert_eq!(
        route.login_url.as_deref(),
        Some("https://login.example.com/?app=web")
    );
    assert_eq!(route.on_store_error, OnStoreError::ServeStale);
}

// ---------------------------------------------------------------------------------------------
// Parse-level rejections: the file does not have the shape of a configuration

#[test]
fn unknown_top_level_key() {
    let cfg = Cfg::from_text(&format!("bogus = 1\n{BASE}"));
    assert_parse_error(&cfg, &["line 1", "unknown field `bogus`", "`server`"]);
}

#[test]
fn unknown_top_level_table() {
    let cfg = Cfg::base().append("[metrics]\nenabled = true\n");
    assert_parse_error(&cfg, &["unknown field `metrics`"]);
}

#[test]
fn unknown_key_in_session() {
    let cfg =
        Cfg::base()
            .remove("[session]", "cookie_name")
            .set_str("[session]", "cookie_nam", "sid");
    assert_parse_error(
        &cfg,
        &[
            "line 8, column 1",
            "cookie_nam = \"sid\"",
            "unknown field `cookie_nam`",
            "expected one of `cookie_name`",
        ],
    );
}

#[test]
fn unknown_key_in_every_table() {
    for header in [
        "[server]",
        "[session]",
        "[store]",
        "[identity]",
        "[[upstream]]",
        "[[route]]",
    ] {
        let cfg = Cfg::base().set(header, "colour", "1");
        assert_parse_error(&cfg, &["unknown field `colour`"]);
    }
}

#[test]
fn unknown_key_in_a_later_route() {
    let cfg = Cfg::base().append("[[route]]\npath_prefix = \"/a\"\nupstrem = \"app\"\n");
    assert_parse_error(&cfg, &["upstrem = \"app\"", "unknown field `upstrem`"]);
}

#[test]
fn bad_duration_strings() {
    for (header, key) in [
        ("[server]", "shutdown_grace"),
        ("[session]", "idle_timeout"),
        ("[session]", "absolute_timeout"),
        ("[session]", "renew_below"),
        ("[session]", "tunnel_recheck"),
        ("[[upstream]]", "read_timeout"),
        ("[[upstream]]", "total_timeout"),
        ("[[route]]", "body_timeout"),
        ("[identity]", "assertion_ttl"),
        ("[store]", "sweep_interval"),
    ] {
        let cfg = Cfg::base().set_str(header, key, "30 minutes-ish");
        assert_parse_error(
            &cfg,
            &[
                &format!("{key} = \"30 minutes-ish\""),
                "invalid value: string \"30 minutes-ish\", expected a duration",
            ],
        );
    }
    for bad in ["30", "-5m", "", "m"] {
        let cfg = Cfg::base().set_str("[session]", "idle_timeout", bad);
        assert_parse_error(&cfg, &["expected a duration"]);
    }
}

#[test]
fn bad_duration_in_redis_timeouts() {
    for key in ["command_timeout", "connect_timeout"] {
        let cfg = Cfg::base()
            .set_str("[store]", "kind", "redis")
            .set_str("[store]", key, "fast");
        assert_parse_error(&cfg, &[key, "expected a duration"]);
    }
}

#[test]
fn duration_must_be_a_string() {
    let cfg = Cfg::base().set("[session]", "idle_timeout", "1800");
    assert_parse_error(&cfg, &["idle_timeout = 1800", "invalid type"]);
}

#[test]
fn bad_enum_values() {
    for (header, key, bad, expected) in [
        (
            "[session]",
            "same_site",
            "sometimes",
            "expected one of `strict`, `lax`, `none`",
        ),
        ("[session]", "format", "xml", "expected `msgpack` or `json`"),
        (
            "[store]",
            "kind",
            "postgres",
            "expected `memory` or `redis`",
        ),
        (
            "[[route]]",
            "auth",
            "maybe",
            "expected one of `required`, `optional`, `public`",
        ),
        (
            "[[route]]",
            "on_store_error",
            "retry",
            "expected one of `fail_closed`, `serve_stale`, `anonymous`",
        ),
    ] {
        let cfg = Cfg::base().set_str(header, key, bad);
        assert_parse_error(
            &cfg,
            &[
                &format!("{key} = \"{bad}\""),
                &format!("unknown variant `{bad}`"),
                expected,
            ],
        );
    }
}

#[test]
fn enum_values_are_case_sensitive() {
    let cfg = Cfg::base().set_str("[session]", "same_site", "Lax");
    assert_parse_error(&cfg, &["unknown variant `Lax`"]);
}

#[test]
fn wrong_value_types() {
    for (header, key, value, expected) in [
        ("[server]", "threads", "\"2\"", "invalid type: string \"2\""),
        ("[server]", "threads", "-1", "invalid value: integer `-1`"),
        ("[server]", "listen", "\"127.0.0.1:8080\"", "invalid type"),
        ("[session]", "secure", "\"yes\"", "invalid type"),
        ("[session]", "persistent", "1", "invalid type"),
        ("[store]", "max_sessions", "-3", "invalid value"),
        ("[identity.headers]", "\"X-Auth-User\"", "1", "invalid type"),
        (
            "[identity.headers]",
            "\"X-Auth-User\"",
            "[\"sub\"]",
            "invalid type",
        ),
        (
            "[[upstream]]",
            "backends",
            "\"127.0.0.1:8000\"",
            "invalid type",
        ),
        ("[[route]]", "upstream", "[\"app\"]", "invalid type"),
    ] {
        let cfg = Cfg::base().set(header, key, value);
        assert_parse_error(&cfg, &[&format!("{key} = {value}"), expected]);
    }
}

#[test]
fn single_tables_where_arrays_of_tables_are_expected() {
    let cfg = Cfg::base()
        .remove_section("[[route]]")
        .append("[route]\nupstream = \"app\"\n");
    assert_parse_error(&cfg, &["invalid type"]);
}

#[test]
fn toml_syntax_error() {
    let cfg = Cfg::base().append("[server\n");
    assert_parse_error(&cfg, &["TOML parse error", "expected `]`"]);
}

#[test]
fn duplicate_key_is_a_toml_error() {
    let cfg = Cfg::base().append("[session]\nsecure = true\n");
    assert_parse_error(&cfg, &["TOML parse error"]);
}

// ---------------------------------------------------------------------------------------------
// [server]

#[test]
fn ipv6_listen_addresses_are_accepted() {
    let config = Cfg::base()
        .set("[server]", "listen", r#"["[::]:8080", "[::1]:8081"]"#)
        .ok();
    assert_eq!(config.server.listen.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// [session]

#[test]
fn plain_cookie_name_without_secure_is_allowed() {
    let config = Cfg::base()
        .set_str("[session]", "cookie_name", "sid")
        .set("[session]", "secure", "false")
        .ok();
    assert!(!config.session.cookie.secure);
}

#[test]
fn same_site_none_with_secure_is_allowed() {
    let config = Cfg::base().set_str("[session]", "same_site", "none").ok();
    assert_eq!(config.session.cookie.same_site, SameSite::None);
}

// ---------------------------------------------------------------------------------------------
// [store]

// ---------------------------------------------------------------------------------------------
// [identity]: the signing key

#[test]
fn two_signing_key_sources() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k1.key"), KEY32).unwrap();
    let cfg = Cfg::base().set_str("[identity]", "signing_key_file", "k1.key");
    let problems = problems_of(cfg.load_in(dir.path()), &cfg.text());
    assert_has(&problems, "identity", "set exactly one of");
    assert_eq!(problems.len(), 1, "{problems:?}");

    let cfg = Cfg::base().set_str("[identity]", "signing_key_env", "PATH");
    assert_only(&cfg, "identity", "set exactly one of");
}

#[test]
fn signing_key_file_relative_to_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let key = "k".repeat(48);
    std::fs::write(dir.path().join("keys/k1.key"), format!("{key}\n")).unwrap();
    let cfg = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_file", "keys/k1.key");
    let config = cfg.load_in(dir.path()).expect("valid");
    assert_eq!(
        hmac_secret(&config.identity),
        key.as_bytes(),
        "the trailing newline is not part of the key"
    );
}

#[test]
fn signing_key_file_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("abs.key");
    std::fs::write(&file, format!("{KEY32}\r\n")).unwrap();
    let cfg = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_file", file.to_str().unwrap());
    let config = cfg
        .load()
        .expect("an absolute path ignores the base directory");
    assert_eq!(hmac_secret(&config.identity), KEY32.as_bytes());
}

#[test]
fn missing_signing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_file", "missing.key");
    let problems = problems_of(cfg.load_in(dir.path()), &cfg.text());
    let expected = format!("cannot read {}", dir.path().join("missing.key").display());
    assert_has(&problems, "identity.signing_key_file", &expected);
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[test]
fn signing_key_file_too_short() {
    let dir = tempfile::tempdir().unwrap();
    // 31 bytes of key: the newline does not count towards the 32.
    std::fs::write(dir.path().join("short.key"), format!("{}\n", &KEY32[..31])).unwrap();
    let cfg = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_file", "short.key");
    let problems = problems_of(cfg.load_in(dir.path()), &cfg.text());
    assert_has(
        &problems,
        "identity.signing_key_file",
        "the signing key has 31 bytes; HS256 keys need at least 32",
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[test]
fn empty_signing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.key"), "\n").unwrap();
    let cfg = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_file", "empty.key");
    let problems = problems_of(cfg.load_in(dir.path()), &cfg.text());
    assert_has(&problems, "identity.signing_key_file", "has 0 bytes");
}

#[test]
fn missing_signing_key_env() {
    let var = "SESSIONGATE_TEST_KEY_THAT_IS_NEVER_SET_5c1e";
    assert!(std::env::var_os(var).is_none());
    let cfg = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_env", var);
    assert_only(
        &cfg,
        "identity.signing_key_env",
        &format!("environment variable {var} is not set"),
    );
}

#[test]
fn signing_key_env() {
    // Names unique to this test: no other test reads or writes them.
    let good = "SESSIONGATE_TEST_KEY_GOOD_9a41";
    let short = "SESSIONGATE_TEST_KEY_SHORT_9a41";
    std::env::set_var(good, KEY32);
    std::env::set_var(short, "too-short");
    let config = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_env", good)
        .ok();
    assert_eq!(hmac_secret(&config.identity), KEY32.as_bytes());

    let cfg = Cfg::base()
        .remove("[identity]", "insecure_signing_key")
        .set_str("[identity]", "signing_key_env", short);
    assert_only(
        &cfg,
        "identity.signing_key_env",
        "the signing key has 9 bytes; HS256 keys need at least 32",
    );
}

#[test]
fn key_length_counts_bytes_not_characters() {
    // 16 two-byte characters: 32 bytes.
    let config = Cfg::base()
        .set_str("[identity]", "insecure_signing_key", &"é".repeat(16))
        .ok();
    assert_eq!(hmac_secret(&config.identity).len(), 32);
}

// ---------------------------------------------------------------------------------------------
// [identity]: the assertion and the mapped headers

#[test]
fn identity_headers_that_fold_together_over_any_separator() {
    for spelling in ["X~Auth~User", "X+Auth+User", "X!Auth.User", "x_auth_user"] {
        let cfg = Cfg::base().set_str("[identity.headers]", &format!("\"{spelling}\""), "email");
        // Whichever of the two sorts second is reported.
        let problems = cfg.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("already mapped")
                && problems[0].contains("with every non-alphanumeric byte as -"),
            "{problems:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// [[upstream]]

#[test]
fn upstream_with_an_empty_name() {
    let cfg = Cfg::base().set_str("[[upstream]]", "name", "");
    let problems = cfg.problems();
    assert_has(&problems, "upstream[0].name", "every upstream needs a name");
    // The route that names "app" now points at nothing.
    assert_has(&problems, "route[0].upstream", "no upstream named \"app\"");
    assert_eq!(problems.len(), 2, "{problems:?}");
}

// ---------------------------------------------------------------------------------------------
// [[route]]

#[test]
fn good_host_patterns() {
    let config = Cfg::base()
        .set_str("[[route]]", "host", "*")
        .append(
            r#"
[[route]]
host = "App.Example.COM"
upstream = "app"

[[route]]
host = "*.Example.com"
upstream = "app"
"#,
        )
        .ok();
    assert_eq!(config.routes[0].host, HostPattern::Any);
    assert_eq!(
        config.routes[1].host,
        HostPattern::Exact("app.example.com".into())
    );
    assert_eq!(
        config.routes[2].host,
        HostPattern::Suffix(".example.com".into())
    );
}

#[test]
fn protocol_relative_login_url_is_refused() {
    // `//evil.example` would send browsers to another site.
    let cfg = Cfg::base().set_str("[[route]]", "login_url", "//evil.example/login");
    let problems = cfg.problems();
    assert_has(
        &problems,
        "route[0].login_url",
        "\"//evil.example/login\" must be a path (\"/login\") or an http(s) URL",
    );
}

// ---------------------------------------------------------------------------------------------
// Every problem at once

#[test]
fn every_problem_is_reported_at_once() {
    let cfg = Cfg::base()
        .set("[server]", "threads", "0")
        .set_str("[server]", "admin_listen", "nowhere")
        .set("[session]", "secure", "false")
        .set_str("[session]", "idle_timeout", "0s")
        .set_str("[store]", "url", "redis://127.0.0.1:6379/0")
        .set_str("[identity]", "assertion_ttl", "2h")
        .set_str("[identity.headers]", "\"Cookie\"", "sub")
        .set("[[upstream]]", "backends", "[]")
        .set_str("[[route]]", "path_prefix", "api")
        .set_str("[[route]]", "host", "bad host")
        .append("[[route]]\nupstream = \"missing\"\naudience = \"\"\n");
    let problems = cfg.problems();
    let expected = [
        ("server.threads", "must be between 1 and 1024"),
        (
            "server.admin_listen",
            "\"nowhere\" is not a host:port address",
        ),
        (
            "session.cookie_name",
            "a __Host- cookie requires secure = true",
        ),
        ("session.idle_timeout", "must be greater than zero"),
        ("store.url", "only applies to kind = \"redis\""),
        ("identity.assertion_ttl", "must be at most 1h"),
        (
            "identity.headers.\"Cookie\"",
            "is a header the proxy or clients need",
        ),
        ("upstream[0].backends", "needs at least one backend"),
        ("route[0].host", "\"bad host\" is not a host pattern"),
        ("route[0].path_prefix", "\"api\" must start with '/'"),
        ("route[1].upstream", "no upstream named \"missing\""),
        ("route[1].audience", "must not be empty"),
    ];
    for (path, fragment) in expected {
        assert_has(&problems, path, fragment);
    }
    assert_eq!(
        problems.len(),
        expected.len(),
        "unexpected extra problems:\n  {}",
        problems.join("\n  ")
    );

    // The error itself says how many there are and lists each on its own line.
    let error = cfg.load().unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("test.toml has {} problem(s):", expected.len())),
        "{error}"
    );
    for problem in &problems {
        assert!(error.contains(&format!("  - {problem}")), "{error}");
    }
}

#[test]
fn problems_are_reported_section_by_section() {
    let cfg = Cfg::base()
        .set_str("[[route]]", "audience", "")
        .set("[server]", "threads", "0")
        .set_str("[identity]", "issuer", "");
    let problems = cfg.problems();
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec!["server.threads", "identity.issuer", "route[0].audience"]
    );
}

// ---------------------------------------------------------------------------------------------
// The shipped examples

#[test]
fn shipped_examples_load() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let quickstart = sessiongate::config::load(&conf.join("quickstart.toml")).expect("quickstart");
    assert_eq!(quickstart.session.cookie.name, "sid");
    assert!(!quickstart.session.cookie.secure);
    assert!(matches!(quickstart.store, StoreSettings::Memory(_)));
    let redis = sessiongate::config::load(&conf.join("redis.toml")).expect("redis");
    assert_eq!(redis.session.cookie.name, "__Host-sid");
    assert!(matches!(redis.store, StoreSettings::Redis(_)));
    assert!(hmac_secret(&redis.identity).len() >= 32);
}

// ---------------------------------------------------------------------------------------------
// [cache] and write-behind renewal

fn redis_base() -> Cfg {
    Cfg::base().set_str("[store]", "kind", "redis")
}

#[test]
fn the_cache_is_on_by_default_with_redis_and_absent_with_memory() {
    let config = redis_base().ok();
    let cache = config.cache.expect("a cache in front of Redis");
    assert_eq!(cache.settings.max_entries, 100_000);
    assert_eq!(cache.settings.max_bytes, 64 << 20);
    assert_eq!(cache.settings.max_staleness, Duration::from_secs(5));
    assert_eq!(cache.settings.negative_ttl, Duration::from_secs(2));
    assert!(cache.invalidation);
    assert!(Cfg::base().ok().cache.is_none());
    let off = redis_base().append("[cache]\nenabled = false\n").ok();
    assert!(off.cache.is_none());
}

#[test]
fn unknown_cache_keys_are_refused() {
    let err = from_toml(
        &redis_base().append("[cache]\nmax_entrys = 10\n").text(),
        "test.toml",
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.to_string().contains("max_entrys"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// [[upstream]] affinity and health checks

#[test]
fn upstreams_default_to_session_affinity_and_tcp_checks() {
    use sessiongate::config::model::{Affinity, HealthCheck};
    let config = Cfg::base().ok();
    let up = &config.upstreams[0];
    assert_eq!(up.affinity, Affinity::Session);
    assert_eq!(
        up.health,
        HealthCheck::Tcp {
            interval: Duration::from_secs(5)
        }
    );
    let config = Cfg::base()
        .set_str("[[upstream]]", "affinity", "sub")
        .set_str("[[upstream]]", "health_check", "http")
        .set_str("[[upstream]]", "health_path", "/healthz")
        .set_str("[[upstream]]", "health_interval", "1s")
        .ok();
    let up = &config.upstreams[0];
    assert_eq!(up.affinity, Affinity::Sub);
    assert_eq!(
        up.health,
        HealthCheck::Http {
            path: "/healthz".into(),
            interval: Duration::from_secs(1)
        }
    );
}

#[test]
fn unknown_affinity_is_refused() {
    let err = from_toml(
        &Cfg::base()
            .set_str("[[upstream]]", "affinity", "cookie")
            .text(),
        "test.toml",
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.to_string().contains("session"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// circuit breaker and stale serving

#[test]
fn breaker_settings_are_checked_and_redis_only() {
    let cfg = redis_base().set("[store]", "breaker_failures", "0");
    assert_only(&cfg, "store.breaker_failures", "must be greater than zero");
    let cfg = redis_base().set_str("[store]", "breaker_open", "0s");
    assert_only(&cfg, "store.breaker_open", "must be greater than zero");
    let cfg = Cfg::base().set("[store]", "breaker_failures", "3");
    assert_only(
        &cfg,
        "store.breaker_failures",
        "only applies to kind = \"redis\"",
    );
    let config = redis_base().ok();
    let StoreSettings::Redis(redis) = &config.store else {
        panic!("redis store expected");
    };
    assert_eq!(redis.breaker.failures, 5);
    assert_eq!(redis.breaker.open_for, Duration::from_secs(1));
}

#[test]
fn stale_window_is_checked() {
    for (value, message) in [("0s", "must be greater than zero"), ("25h", "at most 24h")] {
        let cfg = redis_base().append(&format!("[cache]\nstale_window = \"{value}\"\n"));
        assert_only(&cfg, "cache.stale_window", message);
    }
    assert_eq!(
        redis_base().ok().cache.unwrap().stale_window,
        Duration::from_secs(300)
    );
}

#[test]
fn redis_credentials_come_from_one_secret_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pass"), "hunter2\n").unwrap();
    let text = redis_base()
        .set_str("[store]", "username", "sessiongate")
        .set_str("[store]", "password_file", "pass")
        .text();
    let config = from_toml(&text, "test.toml", dir.path()).unwrap();
    let StoreSettings::Redis(redis) = &config.store else {
        panic!("redis store expected");
    };
    assert_eq!(redis.username.as_deref(), Some("sessiongate"));
    assert_eq!(redis.password.as_ref().unwrap().0, b"hunter2");
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "Debug printed the password"
    );

    let both = redis_base()
        .set_str("[store]", "password_file", "pass")
        .set_str("[store]", "password_env", "SG_TEST_NOT_SET");
    assert_only(&both, "store", "either password_file or password_env");
    let missing = redis_base().set_str("[store]", "password_file", "/nonexistent/pass");
    assert_only(&missing, "store.password_file", "cannot read");
    let unset = redis_base().set_str("[store]", "password_env", "SG_TEST_SURELY_UNSET_VAR");
    assert_only(&unset, "store.password_env", "is not set");
    let memory = Cfg::base().set_str("[store]", "username", "x");
    assert_only(
        &memory,
        "store.username",
        "only applies to kind = \"redis\"",
    );
}

// ---- Redis topologies and TLS ------------------------------------------------------------

fn redis() -> Cfg {
    Cfg::base().set_str("[store]", "kind", "redis")
}

#[test]
fn sentinel_mode() {
    let config = redis()
        .set_str("[store]", "mode", "sentinel")
        .set(
            "[store]",
            "sentinels",
            r#"["redis://10.0.0.11:26379", "redis://10.0.0.12:26379"]"#,
        )
        .set_str("[store]", "master_name", "sessiongate")
        .ok();
    let StoreSettings::Redis(r) = &config.store else {
        panic!("a Redis store");
    };
    assert_eq!(
        r.topology,
        RedisTopology::Sentinel {
            sentinels: vec![
                "redis://10.0.0.11:26379".into(),
                "redis://10.0.0.12:26379".into()
            ],
            master_name: "sessiongate".into(),
        }
    );
}

#[test]
fn sentinel_mode_needs_sentinels_and_a_master_name() {
    let cfg = redis().set_str("[store]", "mode", "sentinel");
    let problems = cfg.problems();
    assert_has(&problems, "store.sentinels", "needs at least one address");
    assert_has(&problems, "store.master_name", "needs the name");
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn sentinel_mode_refuses_url_and_nodes() {
    let cfg = redis()
        .set_str("[store]", "mode", "sentinel")
        .set("[store]", "sentinels", r#"["redis://10.0.0.11:26379"]"#)
        .set_str("[store]", "master_name", "m")
        .set_str("[store]", "url", "redis://10.0.0.1:6379")
        .set("[store]", "nodes", r#"["redis://10.0.0.1:6379"]"#);
    let problems = cfg.problems();
    assert_has(
        &problems,
        "store.url",
        "does not apply to mode = \"sentinel\"",
    );
    assert_has(
        &problems,
        "store.nodes",
        "does not apply to mode = \"sentinel\"",
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn cluster_mode() {
    let config = redis()
        .set_str("[store]", "mode", "cluster")
        .set(
            "[store]",
            "nodes",
            r#"["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]"#,
        )
        .ok();
    let StoreSettings::Redis(r) = &config.store else {
        panic!("a Redis store");
    };
    assert_eq!(r.topology.mode(), "cluster");
    assert_eq!(r.topology.addresses().len(), 2);
}

#[test]
fn standalone_mode_refuses_sentinel_and_cluster_keys() {
    let cfg = redis().set_str("[store]", "master_name", "m").set(
        "[store]",
        "nodes",
        r#"["redis://10.0.0.1:6379"]"#,
    );
    let problems = cfg.problems();
    assert_has(
        &problems,
        "store.master_name",
        "does not apply to mode = \"standalone\"",
    );
    assert_has(
        &problems,
        "store.nodes",
        "does not apply to mode = \"standalone\"",
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn unknown_redis_mode() {
    let err = redis()
        .set_str("[store]", "mode", "replicated")
        .load()
        .expect_err("an unknown mode is refused");
    let text = err.to_string();
    assert!(
        text.contains("unknown variant `replicated`")
            && text.contains("`standalone`, `sentinel`, `cluster`"),
        "{text}"
    );
}

#[test]
fn tls_files_are_read_and_must_be_pem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("junk.crt"), "not a certificate").unwrap();
    let tls = || {
        redis()
            .set_str("[store]", "url", "rediss://redis.internal:6380/0")
            .set_str("[store]", "tls_ca_file", "ca.crt")
    };
    let config = tls().load_in(dir.path()).expect("valid");
    let StoreSettings::Redis(r) = &config.store else {
        panic!("a Redis store");
    };
    assert!(r.topology.uses_tls());
    assert!(r.tls.ca.is_some() && r.tls.client_cert.is_none());

    let cfg = tls().set_str("[store]", "tls_cert_file", "junk.crt");
    let problems = problems_of(cfg.load_in(dir.path()), &cfg.text());
    assert_has(&problems, "store.tls_cert_file", "together");
    assert_has(&problems, "store.tls_cert_file", "is not a PEM file");

    let cfg = tls().set_str("[store]", "tls_key_file", "missing.key");
    let problems = problems_of(cfg.load_in(dir.path()), &cfg.text());
    assert_has(&problems, "store.tls_key_file", "cannot read");
}

#[test]
fn topology_keys_belong_to_the_redis_store() {
    let cfg =
        Cfg::base()
            .set_str("[store]", "mode", "sentinel")
            .set_str("[store]", "master_name", "m");
    let problems = cfg.problems();
    assert_has(&problems, "store.mode", "only applies to kind = \"redis\"");
    assert_has(
        &problems,
        "store.master_name",
        "only applies to kind = \"redis\"",
    );
}

// ---------------------------------------------------------------------------------------------
// The rules, as tables: each row is one change to the base file (`edits`, applied in order)
// and the one problem it must make (`path` and a `fragment` of the message), or a change that
// must load. Each table test runs every row and reports every failing row by name.

/// One change to a configuration file (see the `Cfg` methods of the same names).
#[derive(Debug)]
enum Edit {
    /// `key = value`, the value written as TOML.
    Set(&'static str, &'static str, &'static str),
    /// `key = "value"`, the value quoted as a TOML string.
    Str(&'static str, &'static str, &'static str),
    Remove(&'static str, &'static str),
    RemoveSection(&'static str),
    Append(&'static str),
}

use Edit::{Append, Remove, RemoveSection, Set, Str};

fn edited(edits: &[Edit]) -> Cfg {
    edits.iter().fold(Cfg::base(), |cfg, edit| match *edit {
        Set(header, key, value) => cfg.set(header, key, value),
        Str(header, key, value) => cfg.set_str(header, key, value),
        Remove(header, key) => cfg.remove(header, key),
        RemoveSection(header) => cfg.remove_section(header),
        Append(text) => cfg.append(text),
    })
}

/// A rule: the base file with `edits` has exactly one problem, at `path`, whose message
/// holds `fragment`.
struct Refused {
    name: &'static str,
    edits: &'static [Edit],
    path: &'static str,
    fragment: &'static str,
}

/// The base file with `edits` loads.
struct Accepted {
    name: &'static str,
    edits: &'static [Edit],
}

/// Runs every row; fails listing each row that did not hold, with its name.
fn check_refused(rows: &[Refused]) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let cfg = edited(row.edits);
            let problems = match cfg.load() {
                Ok(_) => return Some(format!("{}: the config is valid", row.name)),
                Err(e @ ConfigError::Invalid { .. }) => e.problems(),
                Err(e) => return Some(format!("{}: not a validation error: {e}", row.name)),
            };
            let prefix = format!("{}: ", row.path);
            let found = problems
                .iter()
                .any(|p| p.starts_with(&prefix) && p[prefix.len()..].contains(row.fragment));
            (!found || problems.len() != 1).then(|| {
                format!(
                    "{}: expected only a problem at `{}` containing {:?}; got:\n      {}",
                    row.name,
                    row.path,
                    row.fragment,
                    problems.join("\n      ")
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n  {}",
        failures.len(),
        rows.len(),
        failures.join("\n  ")
    );
}

#[test]
fn server_rules() {
    check_refused(SERVER);
}

#[test]
fn session_rules() {
    check_refused(SESSION);
}

#[test]
fn store_rules() {
    check_refused(STORE);
}

#[test]
fn identity_rules() {
    check_refused(IDENTITY);
}

#[test]
fn upstream_rules() {
    check_refused(UPSTREAM);
}

#[test]
fn route_rules() {
    check_refused(ROUTE);
}

#[test]
fn cache_rules() {
    check_refused(CACHE);
}

#[test]
fn accepted_changes_load() {
    let failures: Vec<String> = ACCEPTED
        .iter()
        .filter_map(|row| {
            let cfg = edited(row.edits);
            cfg.load()
                .err()
                .map(|e| format!("{}: {e}\n--- config ---\n{}", row.name, cfg.text()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n  {}",
        failures.len(),
        ACCEPTED.len(),
        failures.join("\n  ")
    );
}

#[test]
fn row_names_are_unique() {
    let mut names: Vec<&str> = [
        SERVER, SESSION, STORE, IDENTITY, UPSTREAM, ROUTE, CACHE, SIGN_IN,
    ]
    .iter()
    .flat_map(|t| t.iter().map(|r| r.name))
    .chain(ACCEPTED.iter().map(|r| r.name))
    .collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "two rows share a name");
}

/// Rules of [server]: one change to the base file, the one problem it makes.
const SERVER: &[Refused] = &[
    Refused {
        name: "header_timeout_must_be_positive",
        edits: &[Str("[server]", "header_timeout", "0s")],
        path: "server.header_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "keepalive_timeout_must_be_positive",
        edits: &[Str("[server]", "keepalive_timeout", "0s")],
        path: "server.keepalive_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "max_header_bytes_in_range[0]",
        edits: &[Set("[server]", "max_header_bytes", "512")],
        path: "server.max_header_bytes",
        fragment: "must be between 1024 and 1048576",
    },
    Refused {
        name: "max_header_bytes_in_range[1]",
        edits: &[Set("[server]", "max_header_bytes", "2000000")],
        path: "server.max_header_bytes",
        fragment: "must be between 1024 and 1048576",
    },
    Refused {
        name: "max_headers_in_range[0]",
        edits: &[Set("[server]", "max_headers", "4")],
        path: "server.max_headers",
        fragment: "must be between 8 and 256",
    },
    Refused {
        name: "max_headers_in_range[1]",
        edits: &[Set("[server]", "max_headers", "300")],
        path: "server.max_headers",
        fragment: "must be between 8 and 256",
    },
    Refused {
        name: "max_connections_must_be_positive",
        edits: &[Set("[server]", "max_connections", "0")],
        path: "server.max_connections",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "max_connections_per_client_in_range[0]",
        edits: &[Set("[server]", "max_connections_per_client", "0")],
        path: "server.max_connections_per_client",
        fragment: "must be between 1 and server.max_connections (10000)",
    },
    Refused {
        name: "max_connections_per_client_in_range[1]",
        edits: &[
            Set("[server]", "max_connections", "10"),
            Set("[server]", "max_connections_per_client", "11"),
        ],
        path: "server.max_connections_per_client",
        fragment: "must be between 1 and server.max_connections (10)",
    },
    Refused {
        name: "trusted_proxies_must_be_addresses_or_ranges[0]",
        edits: &[Set(
            "[server]",
            "trusted_proxies",
            "[\"10.0.0.0/8\", \"proxy.internal\"]",
        )],
        path: "server.trusted_proxies[1]",
        fragment: "\"proxy.internal\" is not an IP address or CIDR range",
    },
    Refused {
        name: "trusted_proxies_must_be_addresses_or_ranges[1]",
        edits: &[Set("[server]", "trusted_proxies", "[\"10.1.2.3/8\"]")],
        path: "server.trusted_proxies[0]",
        fragment: "has host bits set; the range is \"10.0.0.0/8\"",
    },
    Refused {
        name: "trusted_proxies_must_be_addresses_or_ranges[2]",
        edits: &[Set("[server]", "trusted_proxies", "[\"10.0.0.0/33\"]")],
        path: "server.trusted_proxies[0]",
        fragment: "is not an IP address or CIDR range",
    },
    Refused {
        name: "bad_listen_address[0]",
        edits: &[Set("[server]", "listen", "[\"8080\"]")],
        path: "server.listen[0]",
        fragment: "\"8080\" is not a host:port address",
    },
    Refused {
        name: "bad_listen_address[1]",
        edits: &[Set("[server]", "listen", "[\"127.0.0.1\"]")],
        path: "server.listen[0]",
        fragment: "\"127.0.0.1\" is not a host:port address",
    },
    Refused {
        name: "bad_listen_address[2]",
        edits: &[Set("[server]", "listen", "[\"127.0.0.1:http\"]")],
        path: "server.listen[0]",
        fragment: "\"127.0.0.1:http\" is not a host:port address",
    },
    Refused {
        name: "bad_listen_address[3]",
        edits: &[Set("[server]", "listen", "[\"127.0.0.1:70000\"]")],
        path: "server.listen[0]",
        fragment: "\"127.0.0.1:70000\" is not a host:port address",
    },
    Refused {
        name: "bad_listen_address[4]",
        edits: &[Set("[server]", "listen", "[\"\"]")],
        path: "server.listen[0]",
        fragment: "\"\" is not a host:port address",
    },
    Refused {
        name: "bad_second_listen_address_has_its_index",
        edits: &[Set("[server]", "listen", "[\"127.0.0.1:8080\", \"nope\"]")],
        path: "server.listen[1]",
        fragment: "\"nope\" is not a host:port address",
    },
    Refused {
        name: "empty_listen_list",
        edits: &[Set("[server]", "listen", "[]")],
        path: "server.listen",
        fragment: "needs at least one address",
    },
    Refused {
        name: "zero_threads",
        edits: &[Set("[server]", "threads", "0")],
        path: "server.threads",
        fragment: "must be between 1 and 1024",
    },
    Refused {
        name: "too_many_threads[0]",
        edits: &[Set("[server]", "threads", "1025")],
        path: "server.threads",
        fragment: "must be between 1 and 1024",
    },
    Refused {
        name: "bad_admin_listen[0]",
        edits: &[Str("[server]", "admin_listen", "9091")],
        path: "server.admin_listen",
        fragment: "\"9091\" is not a host:port address",
    },
    Refused {
        name: "bad_admin_listen[1]",
        edits: &[Str("[server]", "admin_listen", "localhost")],
        path: "server.admin_listen",
        fragment: "\"localhost\" is not a host:port address",
    },
    Refused {
        name: "bad_admin_listen[2]",
        edits: &[Str("[server]", "admin_listen", "127.0.0.1:")],
        path: "server.admin_listen",
        fragment: "\"127.0.0.1:\" is not a host:port address",
    },
    Refused {
        name: "bad_admin_listen[3]",
        edits: &[Str("[server]", "admin_listen", "127.0.0.1:-1")],
        path: "server.admin_listen",
        fragment: "\"127.0.0.1:-1\" is not a host:port address",
    },
    Refused {
        name: "the_same_listen_address_twice",
        edits: &[Set(
            "[server]",
            "listen",
            "[\"127.0.0.1:8080\", \"127.0.0.1:8080\"]",
        )],
        path: "server.listen[1]",
        fragment: "is listed twice",
    },
    Refused {
        name: "admin_listener_on_a_public_address",
        edits: &[Str("[server]", "admin_listen", "127.0.0.1:8080")],
        path: "server.admin_listen",
        fragment: "the admin listener must be separate",
    },
];

/// Rules of [session]: one change to the base file, the one problem it makes.
const SESSION: &[Refused] = &[
    Refused {
        name: "redis_needs_a_cookie_key",
        edits: &[
            RemoveSection("[[session.cookie_keys]]"),
            Str("[store]", "kind", "redis"),
        ],
        path: "session.cookie_keys",
        fragment: "the Redis store needs at least one cookie key",
    },
    Refused {
        name: "cookie_key_too_short",
        edits: &[Str("[[session.cookie_keys]]", "insecure_value", "short")],
        path: "session.cookie_keys[0].insecure_value",
        fragment: "the cookie key has 5 bytes; it needs at least 32",
    },
    Refused {
        name: "cookie_key_with_two_sources",
        edits: &[Str("[[session.cookie_keys]]", "env", "SG_COOKIE_KEY")],
        path: "session.cookie_keys[0]",
        fragment: "set exactly one of file, env or insecure_value",
    },
    Refused {
        name: "cookie_key_without_a_source",
        edits: &[Remove("[[session.cookie_keys]]", "insecure_value")],
        path: "session.cookie_keys[0]",
        fragment: "set exactly one of file, env or insecure_value",
    },
    Refused {
        name: "cookie_key_file_missing",
        edits: &[
            Remove("[[session.cookie_keys]]", "insecure_value"),
            Str("[[session.cookie_keys]]", "file", "/nonexistent/cookie.key"),
        ],
        path: "session.cookie_keys[0].file",
        fragment: "cannot read /nonexistent/cookie.key",
    },
    Refused {
        name: "second_cookie_key_too_short",
        edits: &[Append(
            "[[session.cookie_keys]]\ninsecure_value = \"short\"",
        )],
        path: "session.cookie_keys[1].insecure_value",
        fragment: "the cookie key has 5 bytes",
    },
    Refused {
        name: "max_claims_bytes_is_bounded[0]",
        edits: &[Set("[session]", "max_claims_bytes", "0")],
        path: "session.max_claims_bytes",
        fragment: "must be between 256 and 65536",
    },
    Refused {
        name: "max_claims_bytes_is_bounded[1]",
        edits: &[Set("[session]", "max_claims_bytes", "255")],
        path: "session.max_claims_bytes",
        fragment: "must be between 256 and 65536",
    },
    Refused {
        name: "max_claims_bytes_is_bounded[2]",
        edits: &[Set("[session]", "max_claims_bytes", "65537")],
        path: "session.max_claims_bytes",
        fragment: "must be between 256 and 65536",
    },
    Refused {
        name: "host_prefix_without_secure",
        edits: &[Set("[session]", "secure", "false")],
        path: "session.cookie_name",
        fragment: "a __Host- cookie requires secure = true",
    },
    Refused {
        name: "default_cookie_name_without_secure",
        edits: &[
            Remove("[session]", "cookie_name"),
            Set("[session]", "secure", "false"),
        ],
        path: "session.cookie_name",
        fragment: "a __Host- cookie requires secure = true",
    },
    Refused {
        name: "host_prefix_with_domain",
        edits: &[Str("[session]", "domain", "example.com")],
        path: "session.domain",
        fragment: "a __Host- cookie must not have a Domain",
    },
    Refused {
        name: "secure_prefix_without_secure",
        edits: &[
            Str("[session]", "cookie_name", "__Secure-sid"),
            Set("[session]", "secure", "false"),
        ],
        path: "session.cookie_name",
        fragment: "a __Secure- cookie requires secure = true",
    },
    Refused {
        name: "same_site_none_without_secure",
        edits: &[
            Str("[session]", "cookie_name", "sid"),
            Set("[session]", "secure", "false"),
            Str("[session]", "same_site", "none"),
        ],
        path: "session.same_site",
        fragment: "same_site = \"none\" requires secure = true",
    },
    Refused {
        name: "bad_cookie_name[0]",
        edits: &[Str("[session]", "cookie_name", "s id")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[1]",
        edits: &[Str("[session]", "cookie_name", "sid;")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[2]",
        edits: &[Str("[session]", "cookie_name", "sid=x")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[3]",
        edits: &[Str("[session]", "cookie_name", "")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[4]",
        edits: &[Str("[session]", "cookie_name", "s\"id")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[5]",
        edits: &[Str("[session]", "cookie_name", "sid\t")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[6]",
        edits: &[Str("[session]", "cookie_name", "séance")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[7]",
        edits: &[Str("[session]", "cookie_name", "a,b")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_cookie_name[8]",
        edits: &[Str("[session]", "cookie_name", "(sid)")],
        path: "session.cookie_name",
        fragment: "is not a valid cookie name",
    },
    Refused {
        name: "bad_domain[0]",
        edits: &[
            Str("[session]", "cookie_name", "sid"),
            Str("[session]", "domain", ""),
        ],
        path: "session.domain",
        fragment: "\"\" is not a domain name",
    },
    Refused {
        name: "bad_domain[1]",
        edits: &[
            Str("[session]", "cookie_name", "sid"),
            Str("[session]", "domain", "exa mple.com"),
        ],
        path: "session.domain",
        fragment: "\"exa mple.com\" is not a domain name",
    },
    Refused {
        name: "bad_domain[2]",
        edits: &[
            Str("[session]", "cookie_name", "sid"),
            Str("[session]", "domain", "example.com/"),
        ],
        path: "session.domain",
        fragment: "\"example.com/\" is not a domain name",
    },
    Refused {
        name: "bad_domain[3]",
        edits: &[
            Str("[session]", "cookie_name", "sid"),
            Str("[session]", "domain", "example.com:443"),
        ],
        path: "session.domain",
        fragment: "\"example.com:443\" is not a domain name",
    },
    Refused {
        name: "bad_domain[4]",
        edits: &[
            Str("[session]", "cookie_name", "sid"),
            Str("[session]", "domain", "*.example.com"),
        ],
        path: "session.domain",
        fragment: "\"*.example.com\" is not a domain name",
    },
    Refused {
        name: "idle_timeout_zero",
        edits: &[Str("[session]", "idle_timeout", "0s")],
        path: "session.idle_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "absolute_timeout_below_idle_timeout",
        edits: &[
            Str("[session]", "idle_timeout", "2h"),
            Str("[session]", "absolute_timeout", "1h"),
        ],
        path: "session.absolute_timeout",
        fragment: "must be at least session.idle_timeout (2h)",
    },
    Refused {
        name: "absolute_timeout_below_default_idle_timeout",
        edits: &[Str("[session]", "absolute_timeout", "10m")],
        path: "session.absolute_timeout",
        fragment: "must be at least session.idle_timeout (30m)",
    },
    Refused {
        name: "renew_below_equal_to_idle_timeout",
        edits: &[Str("[session]", "renew_below", "30m")],
        path: "session.renew_below",
        fragment: "must be less than session.idle_timeout (30m)",
    },
    Refused {
        name: "renew_below_above_idle_timeout",
        edits: &[
            Str("[session]", "idle_timeout", "10m"),
            Str("[session]", "renew_below", "1h"),
        ],
        path: "session.renew_below",
        fragment: "must be less than session.idle_timeout (10m)",
    },
    Refused {
        name: "renew_below_zero",
        edits: &[Str("[session]", "renew_below", "0s")],
        path: "session.renew_below",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "tunnel_recheck_below_a_second",
        edits: &[Str("[session]", "tunnel_recheck", "500ms")],
        path: "session.tunnel_recheck",
        fragment: "must be between 1s and session.idle_timeout (30m)",
    },
    Refused {
        name: "tunnel_recheck_above_idle_timeout",
        edits: &[Str("[session]", "tunnel_recheck", "31m")],
        path: "session.tunnel_recheck",
        fragment: "must be between 1s and session.idle_timeout (30m)",
    },
];

/// Rules of [store]: kinds, Redis settings, renewal, breaker, credentials: one change to the base file, the one problem it makes.
const STORE: &[Refused] = &[
    Refused {
        name: "redis_only_keys_with_the_memory_store[0]",
        edits: &[Set("[store]", "url", "\"redis://127.0.0.1:6379/0\"")],
        path: "store.url",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "redis_only_keys_with_the_memory_store[1]",
        edits: &[Set("[store]", "key_prefix", "\"sg:\"")],
        path: "store.key_prefix",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "redis_only_keys_with_the_memory_store[2]",
        edits: &[Set("[store]", "command_timeout", "\"50ms\"")],
        path: "store.command_timeout",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "redis_only_keys_with_the_memory_store[3]",
        edits: &[Set("[store]", "connect_timeout", "\"200ms\"")],
        path: "store.connect_timeout",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "redis_only_keys_when_the_kind_defaults_to_memory",
        edits: &[
            Remove("[store]", "kind"),
            Str("[store]", "url", "redis://127.0.0.1:6379/0"),
        ],
        path: "store.url",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "memory_only_keys_with_the_redis_store[0]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Set("[store]", "max_sessions", "10"),
        ],
        path: "store.max_sessions",
        fragment: "only applies to kind = \"memory\"",
    },
    Refused {
        name: "memory_only_keys_with_the_redis_store[1]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Set("[store]", "sweep_interval", "\"1m\""),
        ],
        path: "store.sweep_interval",
        fragment: "only applies to kind = \"memory\"",
    },
    Refused {
        name: "max_sessions_zero",
        edits: &[Set("[store]", "max_sessions", "0")],
        path: "store.max_sessions",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "sweep_interval_zero",
        edits: &[Str("[store]", "sweep_interval", "0s")],
        path: "store.sweep_interval",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "bad_redis_url[0]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "url", "127.0.0.1:6379"),
        ],
        path: "store.url",
        fragment: "is not a Redis URL",
    },
    Refused {
        name: "bad_redis_url[1]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "url", "http://127.0.0.1:6379"),
        ],
        path: "store.url",
        fragment: "is not a Redis URL",
    },
    Refused {
        name: "bad_redis_url[2]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "url", "not a url"),
        ],
        path: "store.url",
        fragment: "is not a Redis URL",
    },
    Refused {
        name: "bad_redis_url[3]",
        edits: &[Str("[store]", "kind", "redis"), Str("[store]", "url", "")],
        path: "store.url",
        fragment: "is not a Redis URL",
    },
    Refused {
        name: "bad_redis_url[4]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "url", "redis://"),
        ],
        path: "store.url",
        fragment: "is not a Redis URL",
    },
    Refused {
        name: "key_prefix_with_spaces_or_control_characters[0]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "key_prefix", "sg :"),
        ],
        path: "store.key_prefix",
        fragment: "must not contain spaces or control characters",
    },
    Refused {
        name: "key_prefix_with_spaces_or_control_characters[1]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "key_prefix", " sg:"),
        ],
        path: "store.key_prefix",
        fragment: "must not contain spaces or control characters",
    },
    Refused {
        name: "key_prefix_with_spaces_or_control_characters[2]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "key_prefix", "sg:\t"),
        ],
        path: "store.key_prefix",
        fragment: "must not contain spaces or control characters",
    },
    Refused {
        name: "key_prefix_with_spaces_or_control_characters[3]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "key_prefix", "sg:\n"),
        ],
        path: "store.key_prefix",
        fragment: "must not contain spaces or control characters",
    },
    Refused {
        name: "key_prefix_with_spaces_or_control_characters[4]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "key_prefix", "sg\u{7f}"),
        ],
        path: "store.key_prefix",
        fragment: "must not contain spaces or control characters",
    },
    Refused {
        name: "zero_command_timeout",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "command_timeout", "0ms"),
        ],
        path: "store.command_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "zero_connect_timeout",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "connect_timeout", "0s"),
        ],
        path: "store.connect_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "renewal_keys_only_apply_to_redis[0]",
        edits: &[Set("[store]", "renewal_flush_interval", "\"100ms\"")],
        path: "store.renewal_flush_interval",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "renewal_keys_only_apply_to_redis[1]",
        edits: &[Set("[store]", "renewal_batch_size", "64")],
        path: "store.renewal_batch_size",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "renewal_settings_are_checked[0]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "renewal_flush_interval", "0s"),
        ],
        path: "store.renewal_flush_interval",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "renewal_settings_are_checked[1]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Set("[store]", "renewal_batch_size", "0"),
        ],
        path: "store.renewal_batch_size",
        fragment: "between 1 and 10000",
    },
    Refused {
        name: "renewal_settings_are_checked[2]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Set("[store]", "renewal_batch_size", "10001"),
        ],
        path: "store.renewal_batch_size",
        fragment: "between 1 and 10000",
    },
    Refused {
        name: "a_bad_sentinel_address_is_named_by_index",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "mode", "sentinel"),
            Set(
                "[store]",
                "sentinels",
                "[\"redis://10.0.0.11:26379\", \"10.0.0.12:26379\"]",
            ),
            Str("[store]", "master_name", "m"),
        ],
        path: "store.sentinels[1]",
        fragment: "is not a Redis URL",
    },
    Refused {
        name: "cluster_mode_needs_nodes_in_database_zero[0]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "mode", "cluster"),
        ],
        path: "store.nodes",
        fragment: "needs at least one address",
    },
    Refused {
        name: "cluster_mode_needs_nodes_in_database_zero[1]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "mode", "cluster"),
            Set("[store]", "nodes", "[\"redis://10.0.0.1:6379/2\"]"),
        ],
        path: "store.nodes[0]",
        fragment: "only database 0",
    },
    Refused {
        name: "tls_and_plain_addresses_do_not_mix",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "mode", "cluster"),
            Set(
                "[store]",
                "nodes",
                "[\"rediss://10.0.0.1:6379\", \"redis://10.0.0.2:6379\"]",
            ),
        ],
        path: "store.nodes",
        fragment: "mixes redis:// and rediss://",
    },
    Refused {
        name: "tls_files_only_for_tls_addresses",
        edits: &[
            Str("[store]", "kind", "redis"),
            Str("[store]", "tls_ca_file", "ca.crt"),
        ],
        path: "store.tls_ca_file",
        fragment: "only applies to TLS addresses",
    },
];

/// Rules of [identity]: the signing key, the assertion and the mapped headers: one change to the base file, the one problem it makes.
const IDENTITY: &[Refused] = &[
    Refused {
        name: "key_list_and_single_key_together",
        edits: &[Append("[[identity.keys]]\nid = \"a\"\nalgorithm = \"HS256\"\ninsecure_value = \"0123456789abcdef0123456789abcdef\"\n")],
        path: "identity.insecure_signing_key",
        fragment: "cannot be combined with [[identity.keys]]",
    },
    Refused {
        name: "listed_key_ids_are_unique",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nid = \"a\"\nalgorithm = \"HS256\"\ninsecure_value = \"0123456789abcdef0123456789abcdef\"\n[[identity.keys]]\nid = \"a\"\nalgorithm = \"HS256\"\ninsecure_value = \"fedcba9876543210fedcba9876543210\"\n"),
        ],
        path: "identity.keys[1].id",
        fragment: "\"a\" is the id of an earlier key; every kid must be unique",
    },
    Refused {
        name: "listed_key_needs_an_id",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nalgorithm = \"HS256\"\ninsecure_value = \"0123456789abcdef0123456789abcdef\"\n"),
        ],
        path: "identity.keys[0].id",
        fragment: "every key needs an id",
    },
    Refused {
        name: "listed_key_id_with_a_quote",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nid = \"a\\\"\"\nalgorithm = \"HS256\"\ninsecure_value = \"0123456789abcdef0123456789abcdef\"\n"),
        ],
        path: "identity.keys[0].id",
        fragment: "must be a non-empty name",
    },
    Refused {
        name: "listed_key_needs_an_algorithm",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nid = \"a\"\ninsecure_value = \"0123456789abcdef0123456789abcdef\"\n"),
        ],
        path: "identity.keys[0].algorithm",
        fragment: "\"EdDSA\", \"ES256\" or \"HS256\"",
    },
    Refused {
        name: "listed_hs256_key_too_short",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nid = \"a\"\nalgorithm = \"HS256\"\ninsecure_value = \"0123456789abcdef0123456789abcde\"\n"),
        ],
        path: "identity.keys[0].insecure_value",
        fragment: "the signing key has 31 bytes; HS256 keys need at least 32",
    },
    Refused {
        name: "listed_key_needs_one_source",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nid = \"a\"\nalgorithm = \"EdDSA\"\n"),
        ],
        path: "identity.keys[0]",
        fragment: "set exactly one of file, env or insecure_value",
    },
    Refused {
        name: "asymmetric_key_not_inline",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nid = \"a\"\nalgorithm = \"ES256\"\ninsecure_value = \"x\"\n"),
        ],
        path: "identity.keys[0].insecure_value",
        fragment: "ES256 keys come from a PEM file or an environment variable",
    },
    Refused {
        name: "listed_key_file_must_exist",
        edits: &[
            Remove("[identity]", "insecure_signing_key"),
            Append("[[identity.keys]]\nid = \"a\"\nalgorithm = \"EdDSA\"\nfile = \"missing.pem\"\n"),
        ],
        path: "identity.keys[0].file",
        fragment: "cannot read",
    },
    Refused {
        name: "jwks_path_must_be_absolute",
        edits: &[Str("[identity]", "jwks_path", "jwks.json")],
        path: "identity.jwks_path",
        fragment: "must be an absolute path",
    },
    Refused {
        name: "jwks_path_without_encoding_or_dot_segments[0]",
        edits: &[Str("[identity]", "jwks_path", "/keys/%6a")],
        path: "identity.jwks_path",
        fragment: "must be an absolute path",
    },
    Refused {
        name: "jwks_path_without_encoding_or_dot_segments[1]",
        edits: &[Str("[identity]", "jwks_path", "/a/../jwks")],
        path: "identity.jwks_path",
        fragment: "must be an absolute path",
    },
    Refused {
        name: "jwks_path_without_encoding_or_dot_segments[2]",
        edits: &[Str("[identity]", "jwks_path", "/a//jwks")],
        path: "identity.jwks_path",
        fragment: "must be an absolute path",
    },
    Refused {
        name: "no_signing_key_source",
        edits: &[Remove("[identity]", "insecure_signing_key")],
        path: "identity",
        fragment: "set exactly one of signing_key_file, signing_key_env or insecure_signing_key",
    },
    Refused {
        name: "three_signing_key_sources",
        edits: &[
            Str("[identity]", "signing_key_env", "PATH"),
            Str("[identity]", "signing_key_file", "/etc/passwd"),
        ],
        path: "identity",
        fragment: "set exactly one of",
    },
    Refused {
        name: "inline_key_too_short",
        edits: &[Str(
            "[identity]",
            "insecure_signing_key",
            "0123456789abcdef0123456789abcde",
        )],
        path: "identity.insecure_signing_key",
        fragment: "the signing key has 31 bytes; HS256 keys need at least 32",
    },
    Refused {
        name: "empty_inline_key",
        edits: &[Str("[identity]", "insecure_signing_key", "")],
        path: "identity.insecure_signing_key",
        fragment: "has 0 bytes",
    },
    Refused {
        name: "empty_key_id",
        edits: &[Str("[identity]", "signing_key_id", "")],
        path: "identity.signing_key_id",
        fragment: "must be a non-empty name without quotes, backslashes or control characters",
    },
    Refused {
        name: "key_id_with_quotes_backslashes_or_control_characters[0]",
        edits: &[Str("[identity]", "signing_key_id", "k\"1")],
        path: "identity.signing_key_id",
        fragment: "must be a non-empty name",
    },
    Refused {
        name: "key_id_with_quotes_backslashes_or_control_characters[1]",
        edits: &[Str("[identity]", "signing_key_id", "k\\1")],
        path: "identity.signing_key_id",
        fragment: "must be a non-empty name",
    },
    Refused {
        name: "key_id_with_quotes_backslashes_or_control_characters[2]",
        edits: &[Str("[identity]", "signing_key_id", "k\n1")],
        path: "identity.signing_key_id",
        fragment: "must be a non-empty name",
    },
    Refused {
        name: "key_id_with_quotes_backslashes_or_control_characters[3]",
        edits: &[Str("[identity]", "signing_key_id", "k\0")],
        path: "identity.signing_key_id",
        fragment: "must be a non-empty name",
    },
    Refused {
        name: "empty_issuer",
        edits: &[Str("[identity]", "issuer", "")],
        path: "identity.issuer",
        fragment: "must not be empty",
    },
    Refused {
        name: "assertion_ttl_zero",
        edits: &[Str("[identity]", "assertion_ttl", "0s")],
        path: "identity.assertion_ttl",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "assertion_ttl_over_an_hour[0]",
        edits: &[Str("[identity]", "assertion_ttl", "1h 1s")],
        path: "identity.assertion_ttl",
        fragment: "must be at most 1h",
    },
    Refused {
        name: "bad_assertion_header_name[0]",
        edits: &[Str("[identity]", "assertion_header", "X Assertion")],
        path: "identity.assertion_header",
        fragment: "is not a valid HTTP header name",
    },
    Refused {
        name: "bad_assertion_header_name[1]",
        edits: &[Str("[identity]", "assertion_header", "")],
        path: "identity.assertion_header",
        fragment: "is not a valid HTTP header name",
    },
    Refused {
        name: "bad_assertion_header_name[2]",
        edits: &[Str("[identity]", "assertion_header", "X-Assertion:")],
        path: "identity.assertion_header",
        fragment: "is not a valid HTTP header name",
    },
    Refused {
        name: "bad_assertion_header_name[3]",
        edits: &[Str("[identity]", "assertion_header", "X-Assertion\u{1}")],
        path: "identity.assertion_header",
        fragment: "is not a valid HTTP header name",
    },
    Refused {
        name: "bad_assertion_header_name[4]",
        edits: &[Str("[identity]", "assertion_header", "X-Ä")],
        path: "identity.assertion_header",
        fragment: "is not a valid HTTP header name",
    },
    Refused {
        name: "reserved_assertion_header",
        edits: &[Str("[identity]", "assertion_header", "Authorization")],
        path: "identity.assertion_header",
        fragment: "\"Authorization\" is a header the proxy or clients need",
    },
    Refused {
        name: "bad_identity_header_name",
        edits: &[Str("[identity.headers]", "\"X Auth User\"", "sub")],
        path: "identity.headers.\"X Auth User\"",
        fragment: "\"X Auth User\" is not a valid HTTP header name",
    },
    Refused {
        name: "reserved_identity_headers[0]",
        edits: &[Str("[identity.headers]", "\"Cookie\"", "sub")],
        path: "identity.headers.\"Cookie\"",
        fragment: "\"Cookie\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[1]",
        edits: &[Str("[identity.headers]", "\"Authorization\"", "sub")],
        path: "identity.headers.\"Authorization\"",
        fragment: "\"Authorization\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[2]",
        edits: &[Str("[identity.headers]", "\"Host\"", "sub")],
        path: "identity.headers.\"Host\"",
        fragment: "\"Host\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[3]",
        edits: &[Str("[identity.headers]", "\"HOST\"", "sub")],
        path: "identity.headers.\"HOST\"",
        fragment: "\"HOST\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[4]",
        edits: &[Str("[identity.headers]", "\"Set-Cookie\"", "sub")],
        path: "identity.headers.\"Set-Cookie\"",
        fragment: "\"Set-Cookie\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[5]",
        edits: &[Str("[identity.headers]", "\"Proxy-Authorization\"", "sub")],
        path: "identity.headers.\"Proxy-Authorization\"",
        fragment:
            "\"Proxy-Authorization\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[6]",
        edits: &[Str("[identity.headers]", "\"Content-Length\"", "sub")],
        path: "identity.headers.\"Content-Length\"",
        fragment: "\"Content-Length\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[7]",
        edits: &[Str("[identity.headers]", "\"Content-Type\"", "sub")],
        path: "identity.headers.\"Content-Type\"",
        fragment: "\"Content-Type\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[8]",
        edits: &[Str("[identity.headers]", "\"Transfer-Encoding\"", "sub")],
        path: "identity.headers.\"Transfer-Encoding\"",
        fragment: "\"Transfer-Encoding\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[9]",
        edits: &[Str("[identity.headers]", "\"Connection\"", "sub")],
        path: "identity.headers.\"Connection\"",
        fragment: "\"Connection\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[10]",
        edits: &[Str("[identity.headers]", "\"Upgrade\"", "sub")],
        path: "identity.headers.\"Upgrade\"",
        fragment: "\"Upgrade\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[11]",
        edits: &[Str("[identity.headers]", "\"TE\"", "sub")],
        path: "identity.headers.\"TE\"",
        fragment: "\"TE\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[12]",
        edits: &[Str("[identity.headers]", "\"Trailer\"", "sub")],
        path: "identity.headers.\"Trailer\"",
        fragment: "\"Trailer\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[13]",
        edits: &[Str("[identity.headers]", "\"Keep-Alive\"", "sub")],
        path: "identity.headers.\"Keep-Alive\"",
        fragment: "\"Keep-Alive\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[14]",
        edits: &[Str("[identity.headers]", "\"Proxy-Connection\"", "sub")],
        path: "identity.headers.\"Proxy-Connection\"",
        fragment: "\"Proxy-Connection\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[15]",
        edits: &[Str("[identity.headers]", "\"X-Request-Id\"", "sub")],
        path: "identity.headers.\"X-Request-Id\"",
        fragment: "\"X-Request-Id\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[16]",
        edits: &[Str("[identity.headers]", "\"x_request_id\"", "sub")],
        path: "identity.headers.\"x_request_id\"",
        fragment: "\"x_request_id\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[17]",
        edits: &[Str("[identity.headers]", "\"traceparent\"", "sub")],
        path: "identity.headers.\"traceparent\"",
        fragment: "\"traceparent\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[18]",
        edits: &[Str("[identity.headers]", "\"X-Forwarded-For\"", "sub")],
        path: "identity.headers.\"X-Forwarded-For\"",
        fragment: "\"X-Forwarded-For\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[19]",
        edits: &[Str("[identity.headers]", "\"X~Forwarded~For\"", "sub")],
        path: "identity.headers.\"X~Forwarded~For\"",
        fragment: "\"X~Forwarded~For\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[20]",
        edits: &[Str("[identity.headers]", "\"X-Forwarded-Port\"", "sub")],
        path: "identity.headers.\"X-Forwarded-Port\"",
        fragment: "\"X-Forwarded-Port\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[21]",
        edits: &[Str("[identity.headers]", "\"X-Forwarded-Prefix\"", "sub")],
        path: "identity.headers.\"X-Forwarded-Prefix\"",
        fragment: "\"X-Forwarded-Prefix\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[22]",
        edits: &[Str("[identity.headers]", "\"Forwarded\"", "sub")],
        path: "identity.headers.\"Forwarded\"",
        fragment: "\"Forwarded\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[23]",
        edits: &[Str("[identity.headers]", "\"X-Real-IP\"", "sub")],
        path: "identity.headers.\"X-Real-IP\"",
        fragment: "\"X-Real-IP\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[24]",
        edits: &[Str("[identity.headers]", "\"True-Client-IP\"", "sub")],
        path: "identity.headers.\"True-Client-IP\"",
        fragment: "\"True-Client-IP\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[25]",
        edits: &[Str("[identity.headers]", "\"X-Original-URL\"", "sub")],
        path: "identity.headers.\"X-Original-URL\"",
        fragment: "\"X-Original-URL\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "reserved_identity_headers[26]",
        edits: &[Str("[identity.headers]", "\"X-Rewrite-URL\"", "sub")],
        path: "identity.headers.\"X-Rewrite-URL\"",
        fragment: "\"X-Rewrite-URL\" is a header the proxy or clients need; pick another name",
    },
    Refused {
        name: "duplicate_identity_header_differing_only_in_case",
        edits: &[Str("[identity.headers]", "\"x-auth-user\"", "email")],
        path: "identity.headers.\"x-auth-user\"",
        fragment: "names a header that is already mapped (names compare case-insensitively",
    },
    Refused {
        name: "identity_header_that_is_the_assertion_header",
        edits: &[Str(
            "[identity.headers]",
            "\"X-SESSIONGATE-ASSERTION\"",
            "sub",
        )],
        path: "identity.headers.\"X-SESSIONGATE-ASSERTION\"",
        fragment: "already mapped",
    },
    Refused {
        name: "identity_header_with_an_empty_claim",
        edits: &[Str("[identity.headers]", "\"X-Auth-Email\"", "")],
        path: "identity.headers.\"X-Auth-Email\"",
        fragment: "must name a claim",
    },
    Refused {
        name: "header_names_that_fold_together_are_one_header",
        edits: &[Str("[identity.headers]", "\"X_Auth_User\"", "email")],
        path: "identity.headers.\"X_Auth_User\"",
        fragment: "already mapped",
    },
    Refused {
        name: "headers_clients_send_cannot_be_mapped_in_any_spelling[0]",
        edits: &[Str("[identity.headers]", "\"Accept\"", "email")],
        path: "identity.headers.\"Accept\"",
        fragment: "is a header the proxy or clients need",
    },
    Refused {
        name: "headers_clients_send_cannot_be_mapped_in_any_spelling[1]",
        edits: &[Str("[identity.headers]", "\"User-Agent\"", "email")],
        path: "identity.headers.\"User-Agent\"",
        fragment: "is a header the proxy or clients need",
    },
    Refused {
        name: "headers_clients_send_cannot_be_mapped_in_any_spelling[2]",
        edits: &[Str("[identity.headers]", "\"X-Forwarded-For\"", "email")],
        path: "identity.headers.\"X-Forwarded-For\"",
        fragment: "is a header the proxy or clients need",
    },
    Refused {
        name: "headers_clients_send_cannot_be_mapped_in_any_spelling[3]",
        edits: &[Str("[identity.headers]", "\"X_Forwarded_For\"", "email")],
        path: "identity.headers.\"X_Forwarded_For\"",
        fragment: "is a header the proxy or clients need",
    },
    Refused {
        name: "headers_clients_send_cannot_be_mapped_in_any_spelling[4]",
        edits: &[Str("[identity.headers]", "\"x.real.ip\"", "email")],
        path: "identity.headers.\"x.real.ip\"",
        fragment: "is a header the proxy or clients need",
    },
];

/// Rules of [[upstream]]: one change to the base file, the one problem it makes.
const UPSTREAM: &[Refused] = &[
    Refused {
        name: "upstream_without_a_name",
        edits: &[Append("[[upstream]]\nbackends = [\"127.0.0.1:8001\"]\n")],
        path: "upstream[1].name",
        fragment: "every upstream needs a name",
    },
    Refused {
        name: "duplicate_upstream_names",
        edits: &[Append(
            "[[upstream]]\nname = \"app\"\nbackends = [\"127.0.0.1:8001\"]\n",
        )],
        path: "upstream[1].name",
        fragment: "upstream \"app\" is defined twice",
    },
    Refused {
        name: "upstream_without_backends[0]",
        edits: &[Remove("[[upstream]]", "backends")],
        path: "upstream[0].backends",
        fragment: "needs at least one backend",
    },
    Refused {
        name: "upstream_without_backends[1]",
        edits: &[Set("[[upstream]]", "backends", "[]")],
        path: "upstream[0].backends",
        fragment: "needs at least one backend",
    },
    Refused {
        name: "bad_backend_address[0]",
        edits: &[Set(
            "[[upstream]]",
            "backends",
            "[\"127.0.0.1:8000\", \"app:\"]",
        )],
        path: "upstream[0].backends[1]",
        fragment: "\"app:\" is not a host:port address",
    },
    Refused {
        name: "bad_backend_address[1]",
        edits: &[Set("[[upstream]]", "backends", "[\"8000\"]")],
        path: "upstream[0].backends[0]",
        fragment: "\"8000\" is not a host:port address",
    },
    Refused {
        name: "health_check_settings_are_checked[0]",
        edits: &[Str("[[upstream]]", "health_path", "/healthz")],
        path: "upstream[0].health_path",
        fragment: "only applies to health_check = \"http\"",
    },
    Refused {
        name: "health_check_settings_are_checked[1]",
        edits: &[
            Str("[[upstream]]", "health_check", "http"),
            Str("[[upstream]]", "health_path", "healthz"),
        ],
        path: "upstream[0].health_path",
        fragment: "must be a path starting with '/'",
    },
    Refused {
        name: "health_check_settings_are_checked[2]",
        edits: &[Str("[[upstream]]", "health_interval", "0s")],
        path: "upstream[0].health_interval",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "upstream_timeouts_are_positive[0]",
        edits: &[Str("[[upstream]]", "connect_timeout", "0s")],
        path: "upstream[0].connect_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "upstream_timeouts_are_positive[1]",
        edits: &[Str("[[upstream]]", "read_timeout", "0s")],
        path: "upstream[0].read_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "upstream_timeouts_are_positive[2]",
        edits: &[Str("[[upstream]]", "write_timeout", "0s")],
        path: "upstream[0].write_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "upstream_timeouts_are_positive[3]",
        edits: &[Str("[[upstream]]", "total_timeout", "0s")],
        path: "upstream[0].total_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "upstream_tls_needs_a_name_to_verify",
        edits: &[Set("[[upstream]]", "tls", "true")],
        path: "upstream[0].tls_server_name",
        fragment: "is needed with tls = true",
    },
    Refused {
        name: "upstream_tls_name_is_a_name",
        edits: &[
            Set("[[upstream]]", "tls", "true"),
            Str("[[upstream]]", "tls_server_name", "not a name"),
        ],
        path: "upstream[0].tls_server_name",
        fragment: "\"not a name\" is not a DNS name or IP address",
    },
    Refused {
        name: "upstream_tls_settings_need_tls[0]",
        edits: &[Str("[[upstream]]", "tls_server_name", "app.internal")],
        path: "upstream[0].tls_server_name",
        fragment: "only applies with tls = true",
    },
    Refused {
        name: "upstream_tls_settings_need_tls[1]",
        edits: &[Set("[[upstream]]", "insecure_skip_verify", "true")],
        path: "upstream[0].insecure_skip_verify",
        fragment: "only applies with tls = true",
    },
    Refused {
        name: "upstream_tls_ca_file_must_load",
        edits: &[
            Set("[[upstream]]", "tls", "true"),
            Str("[[upstream]]", "tls_server_name", "app.internal"),
            Str("[[upstream]]", "tls_ca_file", "/nonexistent/ca.pem"),
        ],
        path: "upstream[0].tls_ca_file",
        fragment: "cannot read /nonexistent/ca.pem",
    },
    Refused {
        name: "upstream_tls_ca_file_is_pem",
        edits: &[
            Set("[[upstream]]", "tls", "true"),
            Str("[[upstream]]", "tls_server_name", "app.internal"),
            Str("[[upstream]]", "tls_ca_file", "/etc/passwd"),
        ],
        path: "upstream[0].tls_ca_file",
        fragment: "holds no PEM certificate",
    },
    Refused {
        name: "upstream_tls_ca_file_unused_without_verification",
        edits: &[
            Set("[[upstream]]", "tls", "true"),
            Set("[[upstream]]", "insecure_skip_verify", "true"),
            Str("[[upstream]]", "tls_ca_file", "/etc/passwd"),
        ],
        path: "upstream[0].tls_ca_file",
        fragment: "is never used: insecure_skip_verify = true",
    },
];

/// Rules of [[route]]: one change to the base file, the one problem it makes.
const ROUTE: &[Refused] = &[
    Refused {
        name: "route_assertion_ttl_zero",
        edits: &[Str("[[route]]", "assertion_ttl", "0s")],
        path: "route[0].assertion_ttl",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "route_assertion_ttl_over_an_hour",
        edits: &[Str("[[route]]", "assertion_ttl", "2h")],
        path: "route[0].assertion_ttl",
        fragment: "must be at most 1h",
    },
    Refused {
        name: "max_body_bytes_zero",
        edits: &[Set("[[route]]", "max_body_bytes", "0")],
        path: "route[0].max_body_bytes",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "buffer_body_bytes_within_the_replay_buffer[0]",
        edits: &[Set("[[route]]", "buffer_body_bytes", "65537")],
        path: "route[0].buffer_body_bytes",
        fragment: "must be between 1 and 65536",
    },
    Refused {
        name: "buffer_body_bytes_within_the_replay_buffer[1]",
        edits: &[Set("[[route]]", "buffer_body_bytes", "0")],
        path: "route[0].buffer_body_bytes",
        fragment: "must be between 1 and 65536",
    },
    Refused {
        name: "buffer_body_bytes_within_max_body_bytes",
        edits: &[
            Set("[[route]]", "buffer_body_bytes", "4096"),
            Set("[[route]]", "max_body_bytes", "1024"),
        ],
        path: "route[0].buffer_body_bytes",
        fragment: "must not exceed max_body_bytes",
    },
    Refused {
        name: "body_timeout_needs_a_buffer",
        edits: &[Str("[[route]]", "body_timeout", "5s")],
        path: "route[0].body_timeout",
        fragment: "only applies with buffer_body_bytes",
    },
    Refused {
        name: "body_timeout_positive",
        edits: &[
            Set("[[route]]", "buffer_body_bytes", "4096"),
            Str("[[route]]", "body_timeout", "0s"),
        ],
        path: "route[0].body_timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "no_routes",
        edits: &[RemoveSection("[[route]]")],
        path: "route",
        fragment: "needs at least one [[route]]",
    },
    Refused {
        name: "route_without_an_upstream",
        edits: &[Remove("[[route]]", "upstream")],
        path: "route[0].upstream",
        fragment: "every route needs an upstream",
    },
    Refused {
        name: "route_to_an_unknown_upstream_lists_the_known_ones",
        edits: &[Str("[[route]]", "upstream", "nope"), Append("[[upstream]]\nname = \"other\"\nbackends = [\"127.0.0.1:8001\"]\n")],
        path: "route[0].upstream",
        fragment: "no upstream named \"nope\"; defined: [\"app\", \"other\"]",
    },
    Refused {
        name: "upstream_names_are_case_sensitive",
        edits: &[Str("[[route]]", "upstream", "App")],
        path: "route[0].upstream",
        fragment: "no upstream named \"App\"",
    },
    Refused {
        name: "path_prefix_not_starting_with_a_slash[0]",
        edits: &[Str("[[route]]", "path_prefix", "api")],
        path: "route[0].path_prefix",
        fragment: "\"api\" must start with '/'",
    },
    Refused {
        name: "path_prefix_not_starting_with_a_slash[1]",
        edits: &[Str("[[route]]", "path_prefix", "")],
        path: "route[0].path_prefix",
        fragment: "\"\" must start with '/'",
    },
    Refused {
        name: "path_prefix_not_starting_with_a_slash[2]",
        edits: &[Str("[[route]]", "path_prefix", "*")],
        path: "route[0].path_prefix",
        fragment: "\"*\" must start with '/'",
    },
    Refused {
        name: "path_prefix_not_starting_with_a_slash[3]",
        edits: &[Str("[[route]]", "path_prefix", "https://x/")],
        path: "route[0].path_prefix",
        fragment: "\"https://x/\" must start with '/'",
    },
    Refused {
        name: "path_prefix_with_spaces_or_control_characters[0]",
        edits: &[Str("[[route]]", "path_prefix", "/a b")],
        path: "route[0].path_prefix",
        fragment: "contain no spaces or control characters",
    },
    Refused {
        name: "path_prefix_with_spaces_or_control_characters[1]",
        edits: &[Str("[[route]]", "path_prefix", "/a\tb")],
        path: "route[0].path_prefix",
        fragment: "contain no spaces or control characters",
    },
    Refused {
        name: "path_prefix_with_spaces_or_control_characters[2]",
        edits: &[Str("[[route]]", "path_prefix", "/a\u{7f}")],
        path: "route[0].path_prefix",
        fragment: "contain no spaces or control characters",
    },
    Refused {
        name: "bad_host_pattern[0]",
        edits: &[Str("[[route]]", "host", "")],
        path: "route[0].host",
        fragment: "\"\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[1]",
        edits: &[Str("[[route]]", "host", "app example.com")],
        path: "route[0].host",
        fragment: "\"app example.com\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[2]",
        edits: &[Str("[[route]]", "host", "app.example.com:8080")],
        path: "route[0].host",
        fragment: "\"app.example.com:8080\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[3]",
        edits: &[Str("[[route]]", "host", "*.")],
        path: "route[0].host",
        fragment: "\"*.\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[4]",
        edits: &[Str("[[route]]", "host", "*example.com")],
        path: "route[0].host",
        fragment: "\"*example.com\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[5]",
        edits: &[Str("[[route]]", "host", "app.*.com")],
        path: "route[0].host",
        fragment: "\"app.*.com\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[6]",
        edits: &[Str("[[route]]", "host", "**")],
        path: "route[0].host",
        fragment: "\"**\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[7]",
        edits: &[Str("[[route]]", "host", "https://app.example.com")],
        path: "route[0].host",
        fragment: "\"https://app.example.com\" is not a host pattern",
    },
    Refused {
        name: "bad_host_pattern[8]",
        edits: &[Str("[[route]]", "host", "app_1.example.com")],
        path: "route[0].host",
        fragment: "\"app_1.example.com\" is not a host pattern",
    },
    Refused {
        name: "duplicate_host_and_prefix",
        edits: &[Append("[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n")],
        path: "route[1].path_prefix",
        fragment: "another route already has host",
    },
    Refused {
        name: "duplicate_host_and_prefix_ignores_host_case",
        edits: &[Str("[[route]]", "host", "app.example.com"), Append("[[route]]\nhost = \"APP.example.com\"\nupstream = \"app\"\n")],
        path: "route[1].path_prefix",
        fragment: "another route already has host",
    },
    Refused {
        name: "login_url_on_a_route_that_does_not_require_a_session[0]",
        edits: &[Str("[[route]]", "auth", "optional"), Str("[[route]]", "login_url", "/login")],
        path: "route[0].login_url",
        fragment: "only applies to auth = \"required\" routes",
    },
    Refused {
        name: "login_url_on_a_route_that_does_not_require_a_session[1]",
        edits: &[Str("[[route]]", "auth", "public"), Str("[[route]]", "login_url", "/login")],
        path: "route[0].login_url",
        fragment: "only applies to auth = \"required\" routes",
    },
    Refused {
        name: "bad_login_url[0]",
        edits: &[Str("[[route]]", "login_url", "login")],
        path: "route[0].login_url",
        fragment: "\"login\" must be a path (\"/login\") or an http(s) URL",
    },
    Refused {
        name: "bad_login_url[1]",
        edits: &[Str("[[route]]", "login_url", "")],
        path: "route[0].login_url",
        fragment: "\"\" must be a path (\"/login\") or an http(s) URL",
    },
    Refused {
        name: "bad_login_url[2]",
        edits: &[Str("[[route]]", "login_url", "javascript:alert(1)")],
        path: "route[0].login_url",
        fragment: "\"javascript:alert(1)\" must be a path (\"/login\") or an http(s) URL",
    },
    Refused {
        name: "bad_login_url[3]",
        edits: &[Str("[[route]]", "login_url", "ftp://example.com/login")],
        path: "route[0].login_url",
        fragment: "\"ftp://example.com/login\" must be a path (\"/login\") or an http(s) URL",
    },
    Refused {
        name: "bad_login_url[4]",
        edits: &[Str("[[route]]", "login_url", "https://example.com/log in")],
        path: "route[0].login_url",
        fragment: "\"https://example.com/log in\" must be a path (\"/login\") or an http(s) URL",
    },
    Refused {
        name: "login_url_served_by_a_required_route",
        edits: &[Str("[[route]]", "login_url", "/login")],
        path: "route[0].login_url",
        fragment: "\"/login\" is served by route[0], which requires a session: browsers would be redirected forever",
    },
    Refused {
        name: "login_url_served_by_another_required_route",
        edits: &[Str("[[route]]", "login_url", "/auth/login?from=app"), Append("[[route]]\npath_prefix = \"/auth\"\nupstream = \"app\"\n")],
        path: "route[0].login_url",
        fragment: "\"/auth/login?from=app\" is served by route[1], which requires a session",
    },
    Refused {
        name: "login_loop_on_an_exact_host[0]",
        edits: &[Append("[[route]]\nhost = \"app.example.com\"\nupstream = \"app\"\nlogin_url = \"/signin\"\n")],
        path: "route[1].login_url",
        fragment: "\"/signin\" is served by route[1]",
    },
    Refused {
        name: "empty_audience",
        edits: &[Str("[[route]]", "audience", "")],
        path: "route[0].audience",
        fragment: "must not be empty",
    },
    Refused {
        name: "problems_in_a_later_route_carry_its_index",
        edits: &[Append("[[route]]\npath_prefix = \"/a\"\nupstream = \"app\"\n\n[[route]]\npath_prefix = \"b\"\nupstream = \"app\"\n")],
        path: "route[2].path_prefix",
        fragment: "\"b\" must start with '/'",
    },
    Refused {
        name: "login_loop_through_a_more_specific_host_is_found",
        edits: &[Str("[[route]]", "login_url", "/login"), Append("[[route]]\npath_prefix = \"/login\"\nupstream = \"app\"\nauth = \"public\"\n"), Append("[[route]]\nhost = \"app.example.com\"\npath_prefix = \"/login\"\nupstream = \"app\"\n")],
        path: "route[0].login_url",
        fragment: "browsers would be redirected forever on host app.example.com",
    },
    Refused {
        name: "serve_stale_needs_the_cache",
        edits: &[Str("[store]", "kind", "redis"), Append("[cache]\nenabled = false\n"), Str("[[route]]", "on_store_error", "serve_stale")],
        path: "route[0].on_store_error",
        fragment: "serve_stale needs the session cache",
    },
];

/// Rules of [cache]: one change to the base file, the one problem it makes.
const CACHE: &[Refused] = &[
    Refused {
        name: "a_cache_table_with_the_memory_store",
        edits: &[Append("[cache]\nmax_entries = 10\n")],
        path: "cache",
        fragment: "only applies to kind = \"redis\"",
    },
    Refused {
        name: "cache_bounds_are_checked[0]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Append("[cache]\nmax_entries = 0\n"),
        ],
        path: "cache.max_entries",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "cache_bounds_are_checked[1]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Append("[cache]\nmax_bytes = 100\n"),
        ],
        path: "cache.max_bytes",
        fragment: "at least 4096 bytes",
    },
    Refused {
        name: "cache_bounds_are_checked[2]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Append("[cache]\nmax_staleness = \"0s\"\n"),
        ],
        path: "cache.max_staleness",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "cache_bounds_are_checked[3]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Append("[cache]\nmax_staleness = \"2h\"\n"),
        ],
        path: "cache.max_staleness",
        fragment: "at most 1h",
    },
    Refused {
        name: "cache_bounds_are_checked[4]",
        edits: &[
            Str("[store]", "kind", "redis"),
            Append("[cache]\nmax_staleness = \"1s\"\nnegative_ttl = \"5s\"\n"),
        ],
        path: "cache.negative_ttl",
        fragment: "must not exceed cache.max_staleness",
    },
];

/// Files that must load: one change to the base file each (the other side of a rule).
const ACCEPTED: &[Accepted] = &[
    Accepted {
        name: "connection_limits_at_their_bounds",
        edits: &[
            Str("[server]", "header_timeout", "1s"),
            Str("[server]", "keepalive_timeout", "1s"),
            Set("[server]", "max_header_bytes", "1024"),
            Set("[server]", "max_headers", "256"),
            Set("[server]", "max_connections", "1"),
            Set("[server]", "max_connections_per_client", "1"),
        ],
    },
    Accepted {
        name: "memory_store_without_cookie_keys",
        edits: &[RemoveSection("[[session.cookie_keys]]")],
    },
    Accepted {
        name: "cookie_key_rotation",
        edits: &[Append(
            "[[session.cookie_keys]]\ninsecure_value = \"an-older-cookie-key-0123456789abcdef\"",
        )],
    },
    Accepted {
        name: "base_config_is_valid",
        edits: &[],
    },
    Accepted {
        name: "too_many_threads[1]",
        edits: &[Set("[server]", "threads", "1024")],
    },
    Accepted {
        name: "secure_prefix_may_have_a_domain",
        edits: &[Str("[session]", "cookie_name", "__Secure-sid"), Str("[session]", "domain", "example.com")],
    },
    Accepted {
        name: "absolute_timeout_equal_to_idle_timeout_is_allowed",
        edits: &[Str("[session]", "idle_timeout", "1h"), Str("[session]", "absolute_timeout", "1h")],
    },
    Accepted {
        name: "good_redis_urls[0]",
        edits: &[Str("[store]", "kind", "redis"), Str("[store]", "url", "redis://127.0.0.1:6379/0")],
    },
    Accepted {
        name: "good_redis_urls[1]",
        edits: &[Str("[store]", "kind", "redis"), Str("[store]", "url", "redis://127.0.0.1")],
    },
    Accepted {
        name: "good_redis_urls[2]",
        edits: &[Str("[store]", "kind", "redis"), Str("[store]", "url", "redis://user:secret@10.0.0.5:6380/3")],
    },
    Accepted {
        name: "good_redis_urls[3]",
        edits: &[Str("[store]", "kind", "redis"), Str("[store]", "url", "redis://[::1]:6379")],
    },
    Accepted {
        name: "empty_key_prefix_is_allowed",
        edits: &[Str("[store]", "kind", "redis"), Str("[store]", "key_prefix", "")],
    },
    Accepted {
        name: "assertion_ttl_over_an_hour[1]",
        edits: &[Str("[identity]", "assertion_ttl", "1h")],
    },
    Accepted {
        name: "same_prefix_on_different_hosts_is_allowed",
        edits: &[Append("[[route]]\nhost = \"admin.example.com\"\nupstream = \"app\"\n"), Append("[[route]]\nhost = \"*.example.com\"\nupstream = \"app\"\n")],
    },
    Accepted {
        name: "login_url_served_by_a_public_or_optional_route_is_fine[0]",
        edits: &[Str("[[route]]", "login_url", "/login?next=1"), Append("[[route]]\npath_prefix = \"/login\"\nupstream = \"app\"\nauth = \"public\"\n")],
    },
    Accepted {
        name: "login_url_served_by_a_public_or_optional_route_is_fine[1]",
        edits: &[Str("[[route]]", "login_url", "/login?next=1"), Append("[[route]]\npath_prefix = \"/login\"\nupstream = \"app\"\nauth = \"optional\"\n")],
    },
    Accepted {
        name: "absolute_login_url_is_not_checked_against_the_routes",
        edits: &[Str("[[route]]", "login_url", "https://login.example.com/")],
    },
    Accepted {
        name: "login_loop_on_an_exact_host[1]",
        edits: &[Append("[[route]]\nhost = \"app.example.com\"\nupstream = \"app\"\nlogin_url = \"/signin\"\n"), Append("[[route]]\nhost = \"app.example.com\"\npath_prefix = \"/signin\"\nupstream = \"app\"\nauth = \"public\"\n")],
    },
];

// [[identity.keys]] with key files: the published test keys of tests/data/keys.
#[test]
fn signing_key_file_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keys");
    let keys = |tables: &[(&str, &str, &str)]| {
        let text: String = tables
            .iter()
            .map(|(id, alg, file)| {
                format!(
                    "[[identity.keys]]\nid = \"{id}\"\nalgorithm = \"{alg}\"\nfile = \"{file}\"\n"
                )
            })
            .collect();
        Cfg::base()
            .remove("[identity]", "insecure_signing_key")
            .append(&text)
    };
    let rows: &[(&str, Cfg, &str, &str)] = &[
        (
            "rsa_key_pkcs8",
            keys(&[("a", "EdDSA", "rsa-pkcs8.pem")]),
            "identity.keys[0].file",
            "holds an RSA key; sessiongate signs with EdDSA (Ed25519) or ES256 (P-256) keys",
        ),
        (
            "rsa_key_pkcs1",
            keys(&[("a", "ES256", "rsa-pkcs1.pem")]),
            "identity.keys[0].file",
            "holds an RSA key (BEGIN RSA PRIVATE KEY)",
        ),
        (
            "ed25519_key_for_es256",
            keys(&[("a", "EdDSA", "ed25519.pem"), ("b", "ES256", "ed25519.pem")]),
            "identity.keys[1].file",
            "holds an EdDSA (Ed25519) key, not an ES256 (P-256) key as algorithm = \"ES256\" says",
        ),
        (
            "p256_key_for_eddsa",
            keys(&[("a", "EdDSA", "p256.pem")]),
            "identity.keys[0].file",
            "holds an ES256 (P-256) key, not an EdDSA (Ed25519) key",
        ),
        (
            "p384_key_for_es256",
            keys(&[("a", "ES256", "p384.pem")]),
            "identity.keys[0].file",
            "another curve than P-256 (ES256 needs P-256)",
        ),
        (
            "sec1_key",
            keys(&[("a", "ES256", "p256-sec1.pem")]),
            "identity.keys[0].file",
            "convert it to PKCS#8",
        ),
        (
            "not_a_pem_key",
            keys(&[("a", "EdDSA", "README.md")]),
            "identity.keys[0].file",
            "holds no PEM private key",
        ),
        (
            "pem_key_for_hs256",
            keys(&[("a", "HS256", "ed25519.pem")]),
            "identity.keys[0].file",
            "holds a PEM document, not an HS256 secret",
        ),
    ];
    let mut failures = Vec::new();
    for (name, cfg, path, fragment) in rows {
        let problems = match cfg.load_in(&dir) {
            Ok(_) => {
                failures.push(format!("{name}: the config is valid"));
                continue;
            }
            Err(e) => e.problems(),
        };
        let prefix = format!("{path}: ");
        let found = problems
            .iter()
            .any(|p| p.starts_with(&prefix) && p[prefix.len()..].contains(fragment));
        if !found || problems.len() != 1 {
            failures.push(format!(
                "{name}: expected only `{path}` ~ {fragment:?}; got {problems:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every algorithm at once: the first signs, all are kept in order.
    let config = keys(&[
        ("ed", "EdDSA", "ed25519.pem"),
        ("ec", "ES256", "p256.pem"),
        ("hs", "HS256", "../../../conf/keys/demo-k1.key"),
    ])
    .set_str("[identity]", "jwks_path", "/keys.json")
    .set_str("[identity]", "jwks_max_age", "5m")
    .set("[identity]", "jti", "true")
    .load_in(&dir)
    .expect("loads");
    let id = &config.identity;
    let listed: Vec<(&str, SigningAlgorithm)> = id
        .keys
        .iter()
        .map(|k| (k.id.as_str(), k.algorithm()))
        .collect();
    assert_eq!(
        listed,
        [
            ("ed", SigningAlgorithm::EdDSA),
            ("ec", SigningAlgorithm::ES256),
            ("hs", SigningAlgorithm::HS256)
        ]
    );
    assert_eq!(id.signing_key().id, "ed");
    assert_eq!(
        (id.jwks_path.as_str(), id.jwks_max_age),
        ("/keys.json", Duration::from_secs(300))
    );
    assert!(id.jti);
}

/// Writes a self-signed certificate for `name` and its key as `{stem}.crt` / `{stem}.key`.
fn write_certificate(dir: &Path, stem: &str, name: &str, expired: bool) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
}

// [tls]: rows need certificate files, so they load in a directory that has them.
#[test]
fn tls_rules() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "site", "app.example", false);
    write_certificate(dir.path(), "other", "other.example", false);
    write_certificate(dir.path(), "old", "app.example", true);
    std::fs::write(dir.path().join("junk.crt"), "not a certificate\n").unwrap();
    const CERT: &str = "[[tls.certificate]]\nchain_file = \"site.crt\"\nkey_file = \"site.key\"\n";
    let rows: &[(&str, String, &str, &str)] = &[
        (
            "needs_a_listener",
            format!("[tls]\n{CERT}"),
            "tls.listen",
            "needs at least one address",
        ),
        (
            "needs_a_certificate",
            "[tls]\nlisten = [\"127.0.0.1:8443\"]\n".into(),
            "tls.certificate",
            "needs at least one [[tls.certificate]]",
        ),
        (
            "listener_not_twice",
            format!("[tls]\nlisten = [\"127.0.0.1:8080\"]\n{CERT}"),
            "tls.listen[0]",
            "127.0.0.1:8080 is already a listener",
        ),
        (
            "certificate_needs_both_files",
            "[tls]\nlisten = [\"127.0.0.1:8443\"]\n[[tls.certificate]]\nchain_file = \"site.crt\"\n"
                .into(),
            "tls.certificate[0]",
            "needs both chain_file and key_file",
        ),
        (
            "certificate_file_must_exist",
            "[tls]\nlisten = [\"127.0.0.1:8443\"]\n[[tls.certificate]]\nchain_file = \"none.crt\"\nkey_file = \"site.key\"\n".into(),
            "tls.certificate[0]",
            "cannot read",
        ),
        (
            "certificate_must_be_pem",
            "[tls]\nlisten = [\"127.0.0.1:8443\"]\n[[tls.certificate]]\nchain_file = \"junk.crt\"\nkey_file = \"site.key\"\n".into(),
            "tls.certificate[0]",
            "holds no PEM certificate",
        ),
        (
            "key_must_match",
            "[tls]\nlisten = [\"127.0.0.1:8443\"]\n[[tls.certificate]]\nchain_file = \"site.crt\"\nkey_file = \"other.key\"\n".into(),
            "tls.certificate[0]",
            "is not the private key of the certificate",
        ),
        (
            "certificate_must_be_current",
            "[tls]\nlisten = [\"127.0.0.1:8443\"]\n[[tls.certificate]]\nchain_file = \"old.crt\"\nkey_file = \"old.key\"\n".into(),
            "tls.certificate[0]",
            "the certificate expired",
        ),
        (
            "hsts_options_need_a_max_age",
            format!("[tls]\nlisten = [\"127.0.0.1:8443\"]\nhsts_include_subdomains = true\n{CERT}"),
            "tls.hsts_max_age",
            "must be set for hsts_include_subdomains",
        ),
        (
            "hsts_preload_follows_the_list_rules",
            format!("[tls]\nlisten = [\"127.0.0.1:8443\"]\nhsts_max_age = \"30d\"\nhsts_preload = true\nhsts_include_subdomains = true\n{CERT}"),
            "tls.hsts_preload",
            "at least 365d",
        ),
    ];
    let mut failures = Vec::new();
    for (name, tls, path, fragment) in rows {
        let cfg = Cfg::base().append(tls);
        let problems = match cfg.load_in(dir.path()) {
            Ok(_) => {
                failures.push(format!("{name}: the config is valid"));
                continue;
            }
            Err(e) => e.problems(),
        };
        let prefix = format!("{path}: ");
        let found = problems
            .iter()
            .any(|p| p.starts_with(&prefix) && p[prefix.len()..].contains(fragment));
        if !found || problems.len() != 1 {
            failures.push(format!(
                "{name}: expected only `{path}` ~ {fragment:?}; got {problems:?}"
            ));
        }
    }
    // A plain listener to redirect from is needed for redirect_plain.
    let cfg = Cfg::base().set("[server]", "listen", "[]").append(&format!(
        "[tls]\nlisten = [\"127.0.0.1:8443\"]\nredirect_plain = true\n{CERT}"
    ));
    let problems = problems_of(cfg.load_in(dir.path()), &cfg.text());
    if problems != ["tls.redirect_plain: needs a plain listener in server.listen to redirect from"]
    {
        failures.push(format!(
            "redirect_plain_needs_a_plain_listener: {problems:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // HTTPS only (no plain listener at all), two certificates, HSTS: loads, with the names
    // read off the certificates.
    let cfg = Cfg::base().remove("[server]", "listen").append(&format!(
        "[tls]\nlisten = [\"127.0.0.1:8443\"]\nhsts_max_age = \"365d\"\nhsts_include_subdomains = true\nhsts_preload = true\n{CERT}[[tls.certificate]]\nchain_file = \"other.crt\"\nkey_file = \"other.key\"\n"
    ));
    let config = cfg.load_in(dir.path()).expect("loads");
    assert!(config.server.listen.is_empty());
    let tls = config.tls.expect("[tls]");
    assert!(tls.http2);
    assert!(!tls.redirect_plain);
    assert_eq!(
        tls.hsts.as_deref(),
        Some("max-age=31536000; includeSubDomains; preload")
    );
    let names: Vec<_> = tls.certificates.iter().map(|c| c.names.clone()).collect();
    assert_eq!(names, [vec!["app.example"], vec!["other.example"]]);
    // Without [tls], server.listen may not be empty.
    let cfg = Cfg::base().set("[server]", "listen", "[]");
    assert_only(&cfg, "server.listen", "needs at least one address");
}

/// A valid `[[identity_provider]]`, its secret from the environment (set by the tests below).
const IDP: &str = "[[identity_provider]]\nname = \"corp\"\nissuer = \"https://login.example.com/realms/corp\"\nclient_id = \"sessiongate\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\n";

fn with_oidc_secret() {
    std::env::set_var("SG_TEST_OIDC_SECRET", "client-secret-value");
    std::env::set_var("SG_TEST_OIDC_EMPTY", "");
}

/// Rules of [[identity_provider]], [oidc] and the routes' sign-in keys.
const SIGN_IN: &[Refused] = &[
    Refused {
        name: "provider_without_a_name",
        edits: &[Append("[[identity_provider]]\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\n")],
        path: "identity_provider[0].name",
        fragment: "needs a name",
    },
    Refused {
        name: "provider_name_with_spaces",
        edits: &[Append("[[identity_provider]]\nname = \"my corp\"\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\n")],
        path: "identity_provider[0].name",
        fragment: "must be letters, digits",
    },
    Refused {
        name: "two_providers_of_one_name",
        edits: &[Append(IDP), Append(IDP)],
        path: "identity_provider[1].name",
        fragment: "another identity provider is named \"corp\"",
    },
    Refused {
        name: "provider_without_an_issuer",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\n")],
        path: "identity_provider[0].issuer",
        fragment: "needs the provider's issuer URL",
    },
    Refused {
        name: "plain_http_issuer_off_loopback",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nissuer = \"http://login.example.com\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\n")],
        path: "identity_provider[0].issuer",
        fragment: "must use https (plain http only to localhost)",
    },
    Refused {
        name: "issuer_that_is_no_url",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nissuer = \"login.example.com\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\n")],
        path: "identity_provider[0].issuer",
        fragment: "is not an http(s) URL",
    },
    Refused {
        name: "provider_without_a_client_id",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nissuer = \"https://op.example\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\n")],
        path: "identity_provider[0].client_id",
        fragment: "needs the client id",
    },
    Refused {
        name: "provider_without_a_secret",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nissuer = \"https://op.example\"\nclient_id = \"c\"\n")],
        path: "identity_provider[0]",
        fragment: "set exactly one of client_secret_file, client_secret_env",
    },
    Refused {
        name: "provider_secret_from_an_unset_variable",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_UNSET\"\n")],
        path: "identity_provider[0].client_secret_env",
        fragment: "SG_TEST_OIDC_UNSET is not set",
    },
    Refused {
        name: "provider_secret_that_is_empty",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_EMPTY\"\n")],
        path: "identity_provider[0].client_secret_env",
        fragment: "the client secret is empty",
    },
    Refused {
        name: "provider_secret_file_missing",
        edits: &[Append("[[identity_provider]]\nname = \"corp\"\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret_file = \"oidc-secret\"\n")],
        path: "identity_provider[0].client_secret_file",
        fragment: "cannot read",
    },
    Refused {
        name: "unknown_client_auth",
        edits: &[Append(IDP), Str("[[identity_provider]]", "client_auth", "private_key_jwt")],
        path: "identity_provider[0].client_auth",
        fragment: "is not one of client_secret_basic, client_secret_post",
    },
    Refused {
        name: "algorithm_none_is_refused",
        edits: &[Append(IDP), Set("[[identity_provider]]", "algorithms", "[\"RS256\", \"none\"]")],
        path: "identity_provider[0].algorithms[1]",
        fragment: "\"none\" is not accepted",
    },
    Refused {
        name: "shared_secret_algorithms_are_refused",
        edits: &[Append(IDP), Set("[[identity_provider]]", "algorithms", "[\"HS256\"]")],
        path: "identity_provider[0].algorithms[0]",
        fragment: "never none or a shared-secret HMAC",
    },
    Refused {
        name: "empty_algorithm_list",
        edits: &[Append(IDP), Set("[[identity_provider]]", "algorithms", "[]")],
        path: "identity_provider[0].algorithms",
        fragment: "must name at least one",
    },
    Refused {
        name: "plain_http_redirect_url",
        edits: &[Append(IDP), Str("[[identity_provider]]", "redirect_url", "http://app.example.com/_sessiongate/oidc/callback")],
        path: "identity_provider[0].redirect_url",
        fragment: "must use https",
    },
    Refused {
        name: "post_logout_url_that_is_no_url",
        edits: &[Append(IDP), Str("[[identity_provider]]", "post_logout_redirect_url", "/bye")],
        path: "identity_provider[0].post_logout_redirect_url",
        fragment: "is not an http(s) URL",
    },
    Refused {
        name: "copied_claim_that_the_assertion_sets",
        edits: &[Append(IDP), Set("[[identity_provider]]", "claims", "[\"name\", \"exp\"]")],
        path: "identity_provider[0].claims[1]",
        fragment: "\"exp\" is set by the assertion itself",
    },
    Refused {
        name: "clock_skew_beyond_ten_minutes",
        edits: &[Append(IDP), Str("[[identity_provider]]", "clock_skew", "1h")],
        path: "identity_provider[0].clock_skew",
        fragment: "at most 10m",
    },
    Refused {
        name: "provider_timeout_of_zero",
        edits: &[Append(IDP), Str("[[identity_provider]]", "timeout", "0s")],
        path: "identity_provider[0].timeout",
        fragment: "must be greater than zero",
    },
    Refused {
        name: "refresh_interval_below_a_second",
        edits: &[Append(IDP), Str("[[identity_provider]]", "refresh_interval", "10ms")],
        path: "identity_provider[0].refresh_interval",
        fragment: "at least 1s",
    },
    Refused {
        name: "ca_file_missing",
        edits: &[Append(IDP), Str("[[identity_provider]]", "ca_file", "provider-ca.pem")],
        path: "identity_provider[0].ca_file",
        fragment: "cannot read",
    },
    Refused {
        name: "route_login_names_no_provider",
        edits: &[Append(IDP), Str("[[route]]", "login", "other")],
        path: "route[0].login",
        fragment: "no [[identity_provider]] named \"other\"; defined: [\"corp\"]",
    },
    Refused {
        name: "route_login_beside_login_url",
        edits: &[Append(IDP), Str("[[route]]", "login", "corp"), Str("[[route]]", "login_url", "https://login.example.com/")],
        path: "route[0].login",
        fragment: "set either login (an identity provider) or login_url, not both",
    },
    Refused {
        name: "route_login_on_a_public_route",
        edits: &[Append(IDP), Str("[[route]]", "login", "corp"), Str("[[route]]", "auth", "public")],
        path: "route[0].login",
        fragment: "only applies to auth = \"required\" routes",
    },
    Refused {
        name: "allow_groups_on_an_optional_route",
        edits: &[Set("[[route]]", "allow_groups", "[\"staff\"]"), Str("[[route]]", "auth", "optional")],
        path: "route[0].allow_groups",
        fragment: "only applies to auth = \"required\" routes",
    },
    Refused {
        name: "empty_allow_list",
        edits: &[Set("[[route]]", "allow_emails", "[]")],
        path: "route[0].allow_emails",
        fragment: "an empty list admits no one",
    },
    Refused {
        name: "blank_allow_entry",
        edits: &[Set("[[route]]", "allow_email_domains", "[\"example.com\", \" \"]")],
        path: "route[0].allow_email_domains[1]",
        fragment: "must be non-empty text",
    },
    Refused {
        name: "route_under_the_sign_in_paths",
        edits: &[Append(IDP), Append("[[route]]\npath_prefix = \"/_sessiongate/oidc/callback\"\nupstream = \"app\"\n")],
        path: "route[1].path_prefix",
        fragment: "is under the sign-in paths (/_sessiongate/oidc)",
    },
    Refused {
        name: "sign_in_prefix_with_a_trailing_slash",
        edits: &[Append("[oidc]\npath_prefix = \"/auth/\"\n")],
        path: "oidc.path_prefix",
        fragment: "no trailing '/'",
    },
    Refused {
        name: "sign_in_prefix_with_dot_segments",
        edits: &[Append("[oidc]\npath_prefix = \"/a/../oidc\"\n")],
        path: "oidc.path_prefix",
        fragment: "no dot segments",
    },
    Refused {
        name: "unknown_key_in_a_provider",
        edits: &[Append(IDP), Str("[[identity_provider]]", "client_secret", "inline")],
        path: "",
        fragment: "unknown field `client_secret`",
    },
];

#[test]
fn sign_in_rules() {
    with_oidc_secret();
    // The parse-level row is checked on its own: a TOML error has no key path.
    let (parse, rows): (Vec<&Refused>, Vec<&Refused>) =
        SIGN_IN.iter().partition(|r| r.path.is_empty());
    let rows: Vec<Refused> = rows
        .into_iter()
        .map(|r| Refused {
            name: r.name,
            edits: r.edits,
            path: r.path,
            fragment: r.fragment,
        })
        .collect();
    check_refused(&rows);
    for row in parse {
        assert_parse_error(&edited(row.edits), &[row.fragment]);
    }
}

#[test]
fn a_provider_loads_with_its_defaults_and_routes_name_it() {
    with_oidc_secret();
    let config = Cfg::base()
        .append(IDP)
        .set_str("[[route]]", "login", "corp")
        .set("[[route]]", "allow_groups", "[\"staff\"]")
        .set("[[route]]", "allow_email_domains", "[\"@Example.com\"]")
        .ok();
    assert_eq!(config.oidc_prefix, "/_sessiongate/oidc");
    assert_eq!(config.sign_ins_per_client, 120);
    let p = &config.identity_providers[0];
    assert_eq!(p.name, "corp");
    assert_eq!(p.client_secret.0, b"client-secret-value");
    assert_eq!(p.scopes, ["openid", "email", "profile"]);
    assert_eq!(
        p.client_auth,
        sessiongate::config::model::ClientAuth::SecretBasic
    );
    assert_eq!(
        (
            p.sub_claim.as_str(),
            p.email_claim.as_str(),
            p.groups_claim.as_str()
        ),
        ("sub", "email", "groups")
    );
    assert_eq!(p.clock_skew, Duration::from_secs(60));
    assert_eq!(p.timeout, Duration::from_secs(5));
    assert_eq!(p.flow_timeout, Duration::from_secs(600));
    assert!(!p
        .algorithms
        .iter()
        .any(|a| a.starts_with("HS") || a == "none"));
    let route = &config.routes[0];
    assert_eq!(route.login, Some(0));
    assert_eq!(route.access.groups, ["staff"]);
    assert_eq!(route.access.email_domains, ["example.com"]);
    assert!(route.access.admits(Some("Bob@EXAMPLE.com"), &[]));
    assert!(route.access.admits(None, &["staff".into()]));
    assert!(!route.access.admits(Some("bob@example.com.evil"), &[]));
    assert!(!route.access.admits(Some("@example.com"), &[]));
    // Scopes without openid get it; plain http to the machine itself is allowed.
    let config = Cfg::base()
        .append("[[identity_provider]]\nname = \"local\"\nissuer = \"http://127.0.0.1:9000\"\nclient_id = \"c\"\nclient_secret_env = \"SG_TEST_OIDC_SECRET\"\nscopes = [\"email\"]\nclient_auth = \"client_secret_post\"\n[oidc]\npath_prefix = \"/auth\"\nmax_sign_ins_per_client = 0\n")
        .ok();
    assert_eq!(config.identity_providers[0].scopes, ["openid", "email"]);
    assert_eq!(config.oidc_prefix, "/auth");
    assert_eq!(config.sign_ins_per_client, 0);
}
