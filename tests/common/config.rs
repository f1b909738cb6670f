//! Test configurations: the sample configuration of docs/protocol.md with short timeouts and test ports, adjustable
//! per test.

use std::net::SocketAddr;

pub const KEY: &str = "test-signing-key-0123456789abcdefghijklmnop";
pub const COOKIE: &str = "__Host-sid";

#[derive(Debug, Clone)]
pub struct TestConfig {
    /// The `[store]` lines that say where Redis is (`url = ...`, or a mode with its
    /// addresses); `None` runs on the memory store.
    pub redis_location: Option<String>,
    pub key_prefix: String,
    pub upstreams: Vec<SocketAddr>,
    pub idle_timeout: String,
    pub absolute_timeout: String,
    pub renew_below: Option<String>,
    pub format: &'static str,
    pub command_timeout: String,
    /// Extra `[[route]]` tables, placed before the catch-all route.
    pub routes: Vec<String>,
    /// The catch-all route's auth policy and extra lines.
    pub default_route: String,
    /// Extra lines for `[store]` (Redis only).
    pub store_extra: String,
    /// Body of a `[cache]` table, when there is one.
    pub cache: Option<String>,
    /// Extra lines for the `[[upstream]]` table.
    pub upstream_extra: String,
    /// Extra lines for `[server]`.
    pub server_extra: String,
    /// Files (name, contents) the proxy's directory holds before it starts (`{dir}/name`).
    pub files: Vec<(String, String)>,
}

impl TestConfig {
    pub fn memory(upstream: SocketAddr) -> Self {
        TestConfig {
            redis_location: None,
            key_prefix: "sg:".into(),
            upstreams: vec![upstream],
            idle_timeout: "30m".into(),
            absolute_timeout: "12h".into(),
            renew_below: None,
            format: "msgpack",
            command_timeout: "200ms".into(),
            routes: Vec::new(),
            default_route: "auth = \"required\"".into(),
            store_extra: String::new(),
            cache: None,
            upstream_extra: String::new(),
            server_extra: String::new(),
            files: Vec::new(),
        }
    }

    pub fn redis(upstream: SocketAddr, url: String) -> Self {
        Self::redis_at(upstream, format!("url = \"{url}\""))
    }

    /// On Redis found through `location`, the `[store]` keys of a topology (sentinels,
    /// cluster nodes, TLS files).
    pub fn redis_at(upstream: SocketAddr, location: String) -> Self {
        TestConfig {
            redis_location: Some(location),
            ..Self::memory(upstream)
        }
    }

    pub fn timeouts(mut self, idle: &str, absolute: &str, renew_below: Option<&str>) -> Self {
        self.idle_timeout = idle.into();
        self.absolute_timeout = absolute.into();
        self.renew_below = renew_below.map(String::from);
        self
    }

    pub fn route(mut self, table: &str) -> Self {
        self.routes.push(table.to_string());
        self
    }

    /// The standard test routes: `/login` (which accepts logins) and `/public` public, `/opt`
    /// optional, `/` required.
    pub fn standard_routes(self) -> Self {
        self.route("path_prefix = \"/login\"\nauth = \"public\"\naccept_login = true")
            .route("path_prefix = \"/public\"\nauth = \"public\"")
            .route("path_prefix = \"/opt\"\nauth = \"optional\"")
    }

    pub fn to_toml(&self) -> String {
        let store = match &self.redis_location {
            Some(location) => format!(
                "kind = \"redis\"\n{location}\nkey_prefix = \"{}\"\ncommand_timeout = \"{}\"\nconnect_timeout = \"200ms\"\n{}",
                self.key_prefix, self.command_timeout, self.store_extra
            ),
            None => "kind = \"memory\"".to_string(),
        };
        let renew = self
            .renew_below
            .as_ref()
            .map(|r| format!("renew_below = \"{r}\"\n"))
            .unwrap_or_default();
        let backends: Vec<String> = self.upstreams.iter().map(|a| format!("\"{a}\"")).collect();
        let mut text = format!(
            r#"[server]
listen = ["127.0.0.1:{{port}}"]
threads = 2
admin_listen = "127.0.0.1:{{admin_port}}"
{server_extra}

[session]
cookie_name = "{COOKIE}"
idle_timeout = "{idle}"
absolute_timeout = "{absolute}"
{renew}format = "{format}"

[store]
{store}

[identity]
issuer = "sessiongate"
signing_key_id = "k1"
insecure_signing_key = "{KEY}"

[identity.headers]
"X-Auth-User" = "sub"
"X-Auth-Email" = "email"
"X-Auth-Roles" = "roles"

[[upstream]]
name = "app"
backends = [{backends}]
{upstream_extra}
"#,
            idle = self.idle_timeout,
            absolute = self.absolute_timeout,
            format = self.format,
            backends = backends.join(", "),
            upstream_extra = self.upstream_extra,
            server_extra = self.server_extra,
        );
        if let Some(cache) = &self.cache {
            text.push_str(&format!("\n[cache]\n{cache}\n"));
        }
        for route in &self.routes {
            text.push_str(&format!("\n[[route]]\nupstream = \"app\"\n{route}\n"));
        }
        text.push_str(&format!(
            "\n[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\naudience = \"app\"\n{}\n",
            self.default_route
        ));
        text
    }
}
