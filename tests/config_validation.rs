//! Every configuration rule, one bad file each: parse-level rejections (unknown keys, wrong
//! types, bad durations and enum values) and every check in `src/config/validate.rs`, asserting
//! the key path and the message of the problem reported.
//!
//! Each test starts from `Cfg::base()`, a small valid file, and changes one thing.

use std::path::Path;
use std::time::Duration;

use sessiongate::config::model::{
    AuthPolicy, HostPattern, OnStoreError, RecordFormat, RedisTopology, SameSite, StoreSettings,
};
use sessiongate::config::{from_toml, Config, ConfigError};

/// 32 bytes: the shortest key accepted.
const KEY32: &str = "0123456789abcdef0123456789abcdef";

const BASE: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
admin_listen = "127.0.0.1:9091"
threads = 1

[session]
cookie_name = "__Host-sid"

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
fn base_config_is_valid() {
    Cfg::base().ok();
}

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
fn trusted_proxies_must_be_addresses_or_ranges() {
    let cfg = Cfg::base().set(
        "[server]",
        "trusted_proxies",
        r#"["10.0.0.0/8", "proxy.internal"]"#,
    );
    assert_only(
        &cfg,
        "server.trusted_proxies[1]",
        "\"proxy.internal\" is not an IP address or CIDR range",
    );
    let cfg = Cfg::base().set("[server]", "trusted_proxies", r#"["10.1.2.3/8"]"#);
    assert_only(
        &cfg,
        "server.trusted_proxies[0]",
        "has host bits set; the range is \"10.0.0.0/8\"",
    );
    let cfg = Cfg::base().set("[server]", "trusted_proxies", r#"["10.0.0.0/33"]"#);
    assert_only(
        &cfg,
        "server.trusted_proxies[0]",
        "is not an IP address or CIDR range",
    );
}

#[test]
fn max_claims_bytes_is_bounded() {
    for bad in ["0", "255", "65537"] {
        let cfg = Cfg::base().set("[session]", "max_claims_bytes", bad);
        assert_only(
            &cfg,
            "session.max_claims_bytes",
            "must be between 256 and 65536",
        );
    }
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

    let s = &config.session;
    assert_eq!(s.cookie.name, "__Host-sid");
    assert!(s.cookie.secure);
    assert_eq!(s.cookie.same_site, SameSite::Lax);
    assert_eq!(s.cookie.domain, None);
    assert!(!s.cookie.persistent);
    assert_eq!(s.idle_timeout, Duration::from_secs(30 * 60));
    assert_eq!(s.absolute_timeout, Duration::from_secs(12 * 3600));
    assert_eq!(s.renew_below, Duration::from_secs(15 * 60));
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
    assert_eq!(id.key_id, "k1");
    assert_eq!(id.signing_key.0, KEY32.as_bytes());
    assert!(id.headers.is_empty());

    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(config.upstreams[0].name, "app");
    assert_eq!(
        config.upstreams[0].backends,
        vec!["127.0.0.1:8000".parse().unwrap()]
    );

    let r = &config.routes[0];
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
    assert_eq!(id.key_id, "2024-01");
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
fn bad_listen_address() {
    for bad in ["8080", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ""] {
        let cfg = Cfg::base().set("[server]", "listen", &format!("[{}]", toml_string(bad)));
        assert_only(
            &cfg,
            "server.listen[0]",
            &format!("\"{bad}\" is not a host:port address"),
        );
    }
}

#[test]
fn bad_second_listen_address_has_its_index() {
    let cfg = Cfg::base().set("[server]", "listen", r#"["127.0.0.1:8080", "nope"]"#);
    assert_only(
        &cfg,
        "server.listen[1]",
        "\"nope\" is not a host:port address",
    );
}

#[test]
fn ipv6_listen_addresses_are_accepted() {
    let config = Cfg::base()
        .set("[server]", "listen", r#"["[::]:8080", "[::1]:8081"]"#)
        .ok();
    assert_eq!(config.server.listen.len(), 2);
}

#[test]
fn empty_listen_list() {
    let cfg = Cfg::base().set("[server]", "listen", "[]");
    assert_only(&cfg, "server.listen", "needs at least one address");
}

#[test]
fn zero_threads() {
    let cfg = Cfg::base().set("[server]", "threads", "0");
    assert_only(&cfg, "server.threads", "must be between 1 and 1024");
}

#[test]
fn too_many_threads() {
    let cfg = Cfg::base().set("[server]", "threads", "1025");
    assert_only(&cfg, "server.threads", "must be between 1 and 1024");
    Cfg::base().set("[server]", "threads", "1024").ok();
}

#[test]
fn bad_admin_listen() {
    for bad in ["9091", "localhost", "127.0.0.1:", "127.0.0.1:-1"] {
        let cfg = Cfg::base().set_str("[server]", "admin_listen", bad);
        assert_only(
            &cfg,
            "server.admin_listen",
            &format!("\"{bad}\" is not a host:port address"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// [session]

#[test]
fn host_prefix_without_secure() {
    let cfg = Cfg::base().set("[session]", "secure", "false");
    assert_only(
        &cfg,
        "session.cookie_name",
        "a __Host- cookie requires secure = true",
    );
}

#[test]
fn default_cookie_name_without_secure() {
    // The default name is `__Host-sid`, so turning Secure off alone is refused too.
    let cfg = Cfg::base()
        .remove("[session]", "cookie_name")
        .set("[session]", "secure", "false");
    assert_only(
        &cfg,
        "session.cookie_name",
        "a __Host- cookie requires secure = true",
    );
}

#[test]
fn host_prefix_with_domain() {
    let cfg = Cfg::base().set_str("[session]", "domain", "example.com");
    assert_only(
        &cfg,
        "session.domain",
        "a __Host- cookie must not have a Domain",
    );
}

#[test]
fn secure_prefix_without_secure() {
    let cfg = Cfg::base()
        .set_str("[session]", "cookie_name", "__Secure-sid")
        .set("[session]", "secure", "false");
    assert_only(
        &cfg,
        "session.cookie_name",
        "a __Secure- cookie requires secure = true",
    );
}

#[test]
fn secure_prefix_may_have_a_domain() {
    Cfg::base()
        .set_str("[session]", "cookie_name", "__Secure-sid")
        .set_str("[session]", "domain", "example.com")
        .ok();
}

#[test]
fn plain_cookie_name_without_secure_is_allowed() {
    let config = Cfg::base()
        .set_str("[session]", "cookie_name", "sid")
        .set("[session]", "secure", "false")
        .ok();
    assert!(!config.session.cookie.secure);
}

#[test]
fn same_site_none_without_secure() {
    let cfg = Cfg::base()
        .set_str("[session]", "cookie_name", "sid")
        .set("[session]", "secure", "false")
        .set_str("[session]", "same_site", "none");
    assert_only(
        &cfg,
        "session.same_site",
        "same_site = \"none\" requires secure = true",
    );
}

#[test]
fn same_site_none_with_secure_is_allowed() {
    let config = Cfg::base().set_str("[session]", "same_site", "none").ok();
    assert_eq!(config.session.cookie.same_site, SameSite::None);
}

#[test]
fn bad_cookie_name() {
    for bad in [
        "s id", "sid;", "sid=x", "", "s\"id", "sid\t", "séance", "a,b", "(sid)",
    ] {
        let cfg = Cfg::base().set_str("[session]", "cookie_name", bad);
        assert_only(&cfg, "session.cookie_name", "is not a valid cookie name");
    }
}

#[test]
fn bad_domain() {
    for bad in [
        "",
        "exa mple.com",
        "example.com/",
        "example.com:443",
        "*.example.com",
    ] {
        let cfg = Cfg::base()
            .set_str("[session]", "cookie_name", "sid")
            .set_str("[session]", "domain", bad);
        assert_only(
            &cfg,
            "session.domain",
            &format!("\"{bad}\" is not a domain name"),
        );
    }
}

#[test]
fn idle_timeout_zero() {
    let cfg = Cfg::base().set_str("[session]", "idle_timeout", "0s");
    assert_only(&cfg, "session.idle_timeout", "must be greater than zero");
}

#[test]
fn absolute_timeout_below_idle_timeout() {
    let cfg = Cfg::base()
        .set_str("[session]", "idle_timeout", "2h")
        .set_str("[session]", "absolute_timeout", "1h");
    assert_only(
        &cfg,
        "session.absolute_timeout",
        "must be at least session.idle_timeout (2h)",
    );
}

#[test]
fn absolute_timeout_equal_to_idle_timeout_is_allowed() {
    Cfg::base()
        .set_str("[session]", "idle_timeout", "1h")
        .set_str("[session]", "absolute_timeout", "1h")
        .ok();
}

#[test]
fn absolute_timeout_below_default_idle_timeout() {
    let cfg = Cfg::base().set_str("[session]", "absolute_timeout", "10m");
    assert_only(
        &cfg,
        "session.absolute_timeout",
        "must be at least session.idle_timeout (30m)",
    );
}

#[test]
fn renew_below_equal_to_idle_timeout() {
    let cfg = Cfg::base().set_str("[session]", "renew_below", "30m");
    assert_only(
        &cfg,
        "session.renew_below",
        "must be less than session.idle_timeout (30m)",
    );
}

#[test]
fn renew_below_above_idle_timeout() {
    let cfg = Cfg::base()
        .set_str("[session]", "idle_timeout", "10m")
        .set_str("[session]", "renew_below", "1h");
    assert_only(
        &cfg,
        "session.renew_below",
        "must be less than session.idle_timeout (10m)",
    );
}

// ---------------------------------------------------------------------------------------------
// [store]

#[test]
fn redis_only_keys_with_the_memory_store() {
    for (key, value) in [
        ("url", "\"redis://127.0.0.1:6379/0\""),
        ("key_prefix", "\"sg:\""),
        ("command_timeout", "\"50ms\""),
        ("connect_timeout", "\"200ms\""),
    ] {
        let cfg = Cfg::base().set("[store]", key, value);
        assert_only(
            &cfg,
            &format!("store.{key}"),
            "only applies to kind = \"redis\"",
        );
    }
}

#[test]
fn redis_only_keys_when_the_kind_defaults_to_memory() {
    let cfg =
        Cfg::base()
            .remove("[store]", "kind")
            .set_str("[store]", "url", "redis://127.0.0.1:6379/0");
    assert_only(&cfg, "store.url", "only applies to kind = \"redis\"");
}

#[test]
fn memory_only_keys_with_the_redis_store() {
    for (key, value) in [("max_sessions", "10"), ("sweep_interval", "\"1m\"")] {
        let cfg = Cfg::base()
            .set_str("[store]", "kind", "redis")
            .set("[store]", key, value);
        assert_only(
            &cfg,
            &format!("store.{key}"),
            "only applies to kind = \"memory\"",
        );
    }
}

#[test]
fn max_sessions_zero() {
    let cfg = Cfg::base().set("[store]", "max_sessions", "0");
    assert_only(&cfg, "store.max_sessions", "must be greater than zero");
}

#[test]
fn sweep_interval_zero() {
    let cfg = Cfg::base().set_str("[store]", "sweep_interval", "0s");
    assert_only(&cfg, "store.sweep_interval", "must be greater than zero");
}

#[test]
fn bad_redis_url() {
    for bad in [
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "not a url",
        "",
        "redis://",
    ] {
        let cfg = Cfg::base()
            .set_str("[store]", "kind", "redis")
            .set_str("[store]", "url", bad);
        assert_only(&cfg, "store.url", "is not a Redis URL");
    }
}

#[test]
fn good_redis_urls() {
    for good in [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1",
        "redis://user:secret@10.0.0.5:6380/3",
        "redis://[::1]:6379",
    ] {
        Cfg::base()
            .set_str("[store]", "kind", "redis")
            .set_str("[store]", "url", good)
            .ok();
    }
}

#[test]
fn key_prefix_with_spaces_or_control_characters() {
    for bad in ["sg :", " sg:", "sg:\t", "sg:\n", "sg\u{7f}"] {
        let cfg =
            Cfg::base()
                .set_str("[store]", "kind", "redis")
                .set_str("[store]", "key_prefix", bad);
        assert_only(
            &cfg,
            "store.key_prefix",
            "must not contain spaces or control characters",
        );
    }
}

#[test]
fn empty_key_prefix_is_allowed() {
    Cfg::base()
        .set_str("[store]", "kind", "redis")
        .set_str("[store]", "key_prefix", "")
        .ok();
}

#[test]
fn zero_command_timeout() {
    let cfg = Cfg::base().set_str("[store]", "kind", "redis").set_str(
        "[store]",
        "command_timeout",
        "0ms",
    );
    assert_only(&cfg, "store.command_timeout", "must be greater than zero");
}

#[test]
fn zero_connect_timeout() {
    let cfg =
        Cfg::base()
            .set_str("[store]", "kind", "redis")
            .set_str("[store]", "connect_timeout", "0s");
    assert_only(&cfg, "store.connect_timeout", "must be greater than zero");
}

// ---------------------------------------------------------------------------------------------
// [identity]: the signing key

#[test]
fn no_signing_key_source() {
    let cfg = Cfg::base().remove("[identity]", "insecure_signing_key");
    assert_only(
        &cfg,
        "identity",
        "set exactly one of signing_key_file, signing_key_env or insecure_signing_key",
    );
}

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
fn three_signing_key_sources() {
    let cfg = Cfg::base()
        .set_str("[identity]", "signing_key_env", "PATH")
        .set_str("[identity]", "signing_key_file", "/etc/hostname");
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
        config.identity.signing_key.0,
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
    assert_eq!(config.identity.signing_key.0, KEY32.as_bytes());
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
    assert_eq!(config.identity.signing_key.0, KEY32.as_bytes());

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
fn inline_key_too_short() {
    let cfg = Cfg::base().set_str("[identity]", "insecure_signing_key", &KEY32[..31]);
    assert_only(
        &cfg,
        "identity.insecure_signing_key",
        "the signing key has 31 bytes; HS256 keys need at least 32",
    );
}

#[test]
fn empty_inline_key() {
    let cfg = Cfg::base().set_str("[identity]", "insecure_signing_key", "");
    assert_only(&cfg, "identity.insecure_signing_key", "has 0 bytes");
}

#[test]
fn key_length_counts_bytes_not_characters() {
    // 16 two-byte characters: 32 bytes.
    let config = Cfg::base()
        .set_str("[identity]", "insecure_signing_key", &"é".repeat(16))
        .ok();
    assert_eq!(config.identity.signing_key.0.len(), 32);
}

#[test]
fn empty_key_id() {
    let cfg = Cfg::base().set_str("[identity]", "signing_key_id", "");
    assert_only(
        &cfg,
        "identity.signing_key_id",
        "must be a non-empty name without quotes, backslashes or control characters",
    );
}

#[test]
fn key_id_with_quotes_backslashes_or_control_characters() {
    for bad in ["k\"1", "k\\1", "k\n1", "k\u{0}"] {
        let cfg = Cfg::base().set_str("[identity]", "signing_key_id", bad);
        assert_only(&cfg, "identity.signing_key_id", "must be a non-empty name");
    }
}

// ---------------------------------------------------------------------------------------------
// [identity]: the assertion and the mapped headers

#[test]
fn empty_issuer() {
    let cfg = Cfg::base().set_str("[identity]", "issuer", "");
    assert_only(&cfg, "identity.issuer", "must not be empty");
}

#[test]
fn assertion_ttl_zero() {
    let cfg = Cfg::base().set_str("[identity]", "assertion_ttl", "0s");
    assert_only(&cfg, "identity.assertion_ttl", "must be greater than zero");
}

#[test]
fn assertion_ttl_over_an_hour() {
    let cfg = Cfg::base().set_str("[identity]", "assertion_ttl", "1h 1s");
    assert_only(&cfg, "identity.assertion_ttl", "must be at most 1h");
    Cfg::base()
        .set_str("[identity]", "assertion_ttl", "1h")
        .ok();
}

#[test]
fn bad_assertion_header_name() {
    for bad in ["X Assertion", "", "X-Assertion:", "X-Assertion\u{1}", "X-Ä"] {
        let cfg = Cfg::base().set_str("[identity]", "assertion_header", bad);
        assert_only(
            &cfg,
            "identity.assertion_header",
            "is not a valid HTTP header name",
        );
    }
}

#[test]
fn reserved_assertion_header() {
    let cfg = Cfg::base().set_str("[identity]", "assertion_header", "Authorization");
    assert_only(
        &cfg,
        "identity.assertion_header",
        "\"Authorization\" is a header the proxy or clients need",
    );
}

#[test]
fn bad_identity_header_name() {
    let cfg = Cfg::base().set_str("[identity.headers]", "\"X Auth User\"", "sub");
    assert_only(
        &cfg,
        "identity.headers.\"X Auth User\"",
        "\"X Auth User\" is not a valid HTTP header name",
    );
}

#[test]
fn reserved_identity_headers() {
    for reserved in [
        "Cookie",
        "Authorization",
        "Host",
        "HOST",
        "Set-Cookie",
        "Proxy-Authorization",
        "Content-Length",
        "Content-Type",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Proxy-Connection",
        "X-Request-Id",
        "x_request_id",
        "traceparent",
        "X-Forwarded-For",
        "X~Forwarded~For",
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "Forwarded",
        "X-Real-IP",
        "True-Client-IP",
        "X-Original-URL",
        "X-Rewrite-URL",
    ] {
        let cfg = Cfg::base().set_str("[identity.headers]", &format!("\"{reserved}\""), "sub");
        assert_only(
            &cfg,
            &format!("identity.headers.\"{reserved}\""),
            &format!("\"{reserved}\" is a header the proxy or clients need; pick another name"),
        );
    }
}

#[test]
fn duplicate_identity_header_differing_only_in_case() {
    let cfg = Cfg::base().set_str("[identity.headers]", "\"x-auth-user\"", "email");
    assert_only(
        &cfg,
        "identity.headers.\"x-auth-user\"",
        "names a header that is already mapped (names compare case-insensitively",
    );
}

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

#[test]
fn identity_header_that_is_the_assertion_header() {
    let cfg = Cfg::base().set_str("[identity.headers]", "\"X-SESSIONGATE-ASSERTION\"", "sub");
    assert_only(
        &cfg,
        "identity.headers.\"X-SESSIONGATE-ASSERTION\"",
        "already mapped",
    );
}

#[test]
fn identity_header_with_an_empty_claim() {
    let cfg = Cfg::base().set_str("[identity.headers]", "\"X-Auth-Email\"", "");
    assert_only(
        &cfg,
        "identity.headers.\"X-Auth-Email\"",
        "must name a claim",
    );
}

// ---------------------------------------------------------------------------------------------
// [[upstream]]

#[test]
fn upstream_without_a_name() {
    let cfg = Cfg::base().append("[[upstream]]\nbackends = [\"127.0.0.1:8001\"]\n");
    assert_only(&cfg, "upstream[1].name", "every upstream needs a name");
}

#[test]
fn upstream_with_an_empty_name() {
    let cfg = Cfg::base().set_str("[[upstream]]", "name", "");
    let problems = cfg.problems();
    assert_has(&problems, "upstream[0].name", "every upstream needs a name");
    // The route that names "app" now points at nothing.
    assert_has(&problems, "route[0].upstream", "no upstream named \"app\"");
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn duplicate_upstream_names() {
    let cfg = Cfg::base().append("[[upstream]]\nname = \"app\"\nbackends = [\"127.0.0.1:8001\"]\n");
    assert_only(
        &cfg,
        "upstream[1].name",
        "upstream \"app\" is defined twice",
    );
}

#[test]
fn upstream_without_backends() {
    let cfg = Cfg::base().remove("[[upstream]]", "backends");
    assert_only(&cfg, "upstream[0].backends", "needs at least one backend");
    let cfg = Cfg::base().set("[[upstream]]", "backends", "[]");
    assert_only(&cfg, "upstream[0].backends", "needs at least one backend");
}

#[test]
fn bad_backend_address() {
    let cfg = Cfg::base().set("[[upstream]]", "backends", r#"["127.0.0.1:8000", "app:"]"#);
    assert_only(
        &cfg,
        "upstream[0].backends[1]",
        "\"app:\" is not a host:port address",
    );
    let cfg = Cfg::base().set("[[upstream]]", "backends", r#"["8000"]"#);
    assert_only(
        &cfg,
        "upstream[0].backends[0]",
        "\"8000\" is not a host:port address",
    );
}

// ---------------------------------------------------------------------------------------------
// [[route]]

#[test]
fn no_routes() {
    let cfg = Cfg::base().remove_section("[[route]]");
    assert_only(&cfg, "route", "needs at least one [[route]]");
}

#[test]
fn route_without_an_upstream() {
    let cfg = Cfg::base().remove("[[route]]", "upstream");
    assert_only(&cfg, "route[0].upstream", "every route needs an upstream");
}

#[test]
fn route_to_an_unknown_upstream_lists_the_known_ones() {
    let cfg = Cfg::base()
        .set_str("[[route]]", "upstream", "nope")
        .append("[[upstream]]\nname = \"other\"\nbackends = [\"127.0.0.1:8001\"]\n");
    assert_only(
        &cfg,
        "route[0].upstream",
        "no upstream named \"nope\"; defined: [\"app\", \"other\"]",
    );
}

#[test]
fn upstream_names_are_case_sensitive() {
    let cfg = Cfg::base().set_str("[[route]]", "upstream", "App");
    assert_only(&cfg, "route[0].upstream", "no upstream named \"App\"");
}

#[test]
fn path_prefix_not_starting_with_a_slash() {
    for bad in ["api", "", "*", "https://x/"] {
        let cfg = Cfg::base().set_str("[[route]]", "path_prefix", bad);
        assert_only(
            &cfg,
            "route[0].path_prefix",
            &format!("\"{bad}\" must start with '/'"),
        );
    }
}

#[test]
fn path_prefix_with_spaces_or_control_characters() {
    for bad in ["/a b", "/a\tb", "/a\u{7f}"] {
        let cfg = Cfg::base().set_str("[[route]]", "path_prefix", bad);
        assert_only(
            &cfg,
            "route[0].path_prefix",
            "contain no spaces or control characters",
        );
    }
}

#[test]
fn bad_host_pattern() {
    for bad in [
        "",
        "app example.com",
        "app.example.com:8080",
        "*.",
        "*example.com",
        "app.*.com",
        "**",
        "https://app.example.com",
        "app_1.example.com",
    ] {
        let cfg = Cfg::base().set_str("[[route]]", "host", bad);
        assert_only(
            &cfg,
            "route[0].host",
            &format!("\"{bad}\" is not a host pattern"),
        );
    }
}

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
fn duplicate_host_and_prefix() {
    let cfg = Cfg::base()
        .append("[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n");
    assert_only(
        &cfg,
        "route[1].path_prefix",
        "another route already has host",
    );
}

#[test]
fn duplicate_host_and_prefix_ignores_host_case() {
    let cfg = Cfg::base()
        .set_str("[[route]]", "host", "app.example.com")
        .append("[[route]]\nhost = \"APP.example.com\"\nupstream = \"app\"\n");
    assert_only(
        &cfg,
        "route[1].path_prefix",
        "another route already has host",
    );
}

#[test]
fn same_prefix_on_different_hosts_is_allowed() {
    Cfg::base()
        .append("[[route]]\nhost = \"admin.example.com\"\nupstream = \"app\"\n")
        .append("[[route]]\nhost = \"*.example.com\"\nupstream = \"app\"\n")
        .ok();
}

#[test]
fn login_url_on_a_route_that_does_not_require_a_session() {
    for auth in ["optional", "public"] {
        let cfg = Cfg::base().set_str("[[route]]", "auth", auth).set_str(
            "[[route]]",
            "login_url",
            "/login",
        );
        assert_only(
            &cfg,
            "route[0].login_url",
            "only applies to auth = \"required\" routes",
        );
    }
}

#[test]
fn bad_login_url() {
    for bad in [
        "login",
        "",
        "javascript:alert(1)",
        "ftp://example.com/login",
        "https://example.com/log in",
    ] {
        let cfg = Cfg::base().set_str("[[route]]", "login_url", bad);
        assert_only(
            &cfg,
            "route[0].login_url",
            &format!("\"{bad}\" must be a path (\"/login\") or an http(s) URL"),
        );
    }
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

#[test]
fn login_url_served_by_a_required_route() {
    let cfg = Cfg::base().set_str("[[route]]", "login_url", "/login");
    assert_only(
        &cfg,
        "route[0].login_url",
        "\"/login\" is served by route[0], which requires a session: browsers would be redirected forever",
    );
}

#[test]
fn login_url_served_by_another_required_route() {
    let cfg = Cfg::base()
        .set_str("[[route]]", "login_url", "/auth/login?from=app")
        .append("[[route]]\npath_prefix = \"/auth\"\nupstream = \"app\"\n");
    assert_only(
        &cfg,
        "route[0].login_url",
        "\"/auth/login?from=app\" is served by route[1], which requires a session",
    );
}

#[test]
fn login_url_served_by_a_public_or_optional_route_is_fine() {
    for auth in ["public", "optional"] {
        Cfg::base()
            .set_str("[[route]]", "login_url", "/login?next=1")
            .append(&format!(
                "[[route]]\npath_prefix = \"/login\"\nupstream = \"app\"\nauth = \"{auth}\"\n"
            ))
            .ok();
    }
}

#[test]
fn absolute_login_url_is_not_checked_against_the_routes() {
    Cfg::base()
        .set_str("[[route]]", "login_url", "https://login.example.com/")
        .ok();
}

#[test]
fn login_loop_on_an_exact_host() {
    let cfg = Cfg::base().append(
        "[[route]]\nhost = \"app.example.com\"\nupstream = \"app\"\nlogin_url = \"/signin\"\n",
    );
    assert_only(
        &cfg,
        "route[1].login_url",
        "\"/signin\" is served by route[1]",
    );
    // A public route for that path on the same host breaks the loop.
    Cfg::base()
        .append("[[route]]\nhost = \"app.example.com\"\nupstream = \"app\"\nlogin_url = \"/signin\"\n")
        .append("[[route]]\nhost = \"app.example.com\"\npath_prefix = \"/signin\"\nupstream = \"app\"\nauth = \"public\"\n")
        .ok();
}

#[test]
fn empty_audience() {
    let cfg = Cfg::base().set_str("[[route]]", "audience", "");
    assert_only(&cfg, "route[0].audience", "must not be empty");
}

#[test]
fn problems_in_a_later_route_carry_its_index() {
    let cfg = Cfg::base().append(
        "[[route]]\npath_prefix = \"/a\"\nupstream = \"app\"\n\n[[route]]\npath_prefix = \"b\"\nupstream = \"app\"\n",
    );
    assert_only(&cfg, "route[2].path_prefix", "\"b\" must start with '/'");
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
    assert!(redis.identity.signing_key.0.len() >= 32);
}

#[test]
fn login_loop_through_a_more_specific_host_is_found() {
    // The catch-all route sends browsers to /login, which is public on most hosts, but on
    // app.example.com a required route serves /login: a loop only there.
    let cfg = Cfg::base()
        .set_str("[[route]]", "login_url", "/login")
        .append("[[route]]\npath_prefix = \"/login\"\nupstream = \"app\"\nauth = \"public\"\n")
        .append(
            "[[route]]\nhost = \"app.example.com\"\npath_prefix = \"/login\"\nupstream = \"app\"\n",
        );
    assert_only(
        &cfg,
        "route[0].login_url",
        "browsers would be redirected forever on host app.example.com",
    );
}

#[test]
fn header_names_that_fold_together_are_one_header() {
    let cfg = Cfg::base().set_str("[identity.headers]", "\"X_Auth_User\"", "email");
    assert_only(&cfg, "identity.headers.\"X_Auth_User\"", "already mapped");
}

#[test]
fn headers_clients_send_cannot_be_mapped_in_any_spelling() {
    for reserved in [
        "Accept",
        "User-Agent",
        "X-Forwarded-For",
        "X_Forwarded_For",
        "x.real.ip",
    ] {
        let cfg = Cfg::base().set_str("[identity.headers]", &toml_string(reserved), "email");
        assert_only(
            &cfg,
            &format!("identity.headers.{}", toml_string(reserved)),
            "is a header the proxy or clients need",
        );
    }
}

#[test]
fn renew_below_zero() {
    let cfg = Cfg::base().set_str("[session]", "renew_below", "0s");
    assert_only(&cfg, "session.renew_below", "must be greater than zero");
}

#[test]
fn the_same_listen_address_twice() {
    let cfg = Cfg::base().set(
        "[server]",
        "listen",
        "[\"127.0.0.1:8080\", \"127.0.0.1:8080\"]",
    );
    assert_only(&cfg, "server.listen[1]", "is listed twice");
}

#[test]
fn admin_listener_on_a_public_address() {
    let cfg = Cfg::base().set_str("[server]", "admin_listen", "127.0.0.1:8080");
    assert_only(
        &cfg,
        "server.admin_listen",
        "the admin listener must be separate",
    );
}

// ---------------------------------------------------------------------------------------------
// [cache] and write-behind renewal

fn redis_base() -> Cfg {
    Cfg::base().set_str("[store]", "kind", "redis")
}

#[test]
fn renewal_keys_only_apply_to_redis() {
    for (key, value) in [
        ("renewal_flush_interval", "\"100ms\""),
        ("renewal_batch_size", "64"),
    ] {
        let cfg = Cfg::base().set("[store]", key, value);
        assert_only(
            &cfg,
            &format!("store.{key}"),
            "only applies to kind = \"redis\"",
        );
    }
}

#[test]
fn renewal_settings_are_checked() {
    let cfg = redis_base().set_str("[store]", "renewal_flush_interval", "0s");
    assert_only(
        &cfg,
        "store.renewal_flush_interval",
        "must be greater than zero",
    );
    for bad in ["0", "10001"] {
        let cfg = redis_base().set("[store]", "renewal_batch_size", bad);
        assert_only(&cfg, "store.renewal_batch_size", "between 1 and 10000");
    }
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
fn a_cache_table_with_the_memory_store() {
    let cfg = Cfg::base().append("[cache]\nmax_entries = 10\n");
    assert_only(&cfg, "cache", "only applies to kind = \"redis\"");
}

#[test]
fn cache_bounds_are_checked() {
    let cases = [
        (
            "max_entries = 0",
            "cache.max_entries",
            "must be greater than zero",
        ),
        ("max_bytes = 100", "cache.max_bytes", "at least 4096 bytes"),
        (
            "max_staleness = \"0s\"",
            "cache.max_staleness",
            "must be greater than zero",
        ),
        (
            "max_staleness = \"2h\"",
            "cache.max_staleness",
            "at most 1h",
        ),
        (
            "max_staleness = \"1s\"\nnegative_ttl = \"5s\"",
            "cache.negative_ttl",
            "must not exceed cache.max_staleness",
        ),
    ];
    for (body, path, message) in cases {
        let cfg = redis_base().append(&format!("[cache]\n{body}\n"));
        assert_only(&cfg, path, message);
    }
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
fn health_check_settings_are_checked() {
    let cfg = Cfg::base().set_str("[[upstream]]", "health_path", "/healthz");
    assert_only(
        &cfg,
        "upstream[0].health_path",
        "only applies to health_check = \"http\"",
    );
    let cfg = Cfg::base()
        .set_str("[[upstream]]", "health_check", "http")
        .set_str("[[upstream]]", "health_path", "healthz");
    assert_only(
        &cfg,
        "upstream[0].health_path",
        "must be a path starting with '/'",
    );
    let cfg = Cfg::base().set_str("[[upstream]]", "health_interval", "0s");
    assert_only(
        &cfg,
        "upstream[0].health_interval",
        "must be greater than zero",
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
fn serve_stale_needs_the_cache() {
    let cfg = redis_base().append("[cache]\nenabled = false\n").set_str(
        "[[route]]",
        "on_store_error",
        "serve_stale",
    );
    assert_only(
        &cfg,
        "route[0].on_store_error",
        "serve_stale needs the session cache",
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
fn a_bad_sentinel_address_is_named_by_index() {
    let cfg = redis()
        .set_str("[store]", "mode", "sentinel")
        .set(
            "[store]",
            "sentinels",
            r#"["redis://10.0.0.11:26379", "10.0.0.12:26379"]"#,
        )
        .set_str("[store]", "master_name", "m");
    assert_only(&cfg, "store.sentinels[1]", "is not a Redis URL");
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
fn cluster_mode_needs_nodes_in_database_zero() {
    assert_only(
        &redis().set_str("[store]", "mode", "cluster"),
        "store.nodes",
        "needs at least one address",
    );
    assert_only(
        &redis().set_str("[store]", "mode", "cluster").set(
            "[store]",
            "nodes",
            r#"["redis://10.0.0.1:6379/2"]"#,
        ),
        "store.nodes[0]",
        "only database 0",
    );
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
fn tls_and_plain_addresses_do_not_mix() {
    let cfg = redis().set_str("[store]", "mode", "cluster").set(
        "[store]",
        "nodes",
        r#"["rediss://10.0.0.1:6379", "redis://10.0.0.2:6379"]"#,
    );
    assert_only(&cfg, "store.nodes", "mixes redis:// and rediss://");
}

#[test]
fn tls_files_only_for_tls_addresses() {
    let cfg = redis().set_str("[store]", "tls_ca_file", "ca.crt");
    assert_only(&cfg, "store.tls_ca_file", "only applies to TLS addresses");
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
