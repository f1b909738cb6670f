//! A real OpenID provider for the sign-in tests: panva's `oidc-provider` (pinned in
//! `tests/oidc/package-lock.json`) started by `tests/oidc/provider.mjs` on an ephemeral port,
//! with test controls under `/test/` (which user the next interaction signs in, one-shot
//! tampering with the next token answer, key rotation, minted logout tokens, the provider's
//! own back-channel logout). See `tests/oidc/README.md`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use serde_json::{json, Value};

/// The fixture's folder.
pub fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Installs the fixture's npm packages from the lockfile when they are missing (the test
/// command does this first; here for a test run on its own).
pub fn ensure_installed() {
    static ONCE: Mutex<bool> = Mutex::new(false);
    let mut done = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if *done || folder().join("node_modules").is_dir() {
        *done = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(folder())
        .status()
        .expect("npm runs");
    assert!(status.success(), "npm ci in tests/oidc failed");
    *done = true;
}

/// One client registered at the provider.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// `client_secret_basic` or `client_secret_post`.
    pub auth_method: String,
}

impl Client {
    /// The client of a proxy on 127.0.0.1:`port` with the default sign-in paths.
    pub fn for_proxy(id: &str, port: u16) -> Self {
        let base = format!("http://127.0.0.1:{port}");
        Client {
            id: id.to_string(),
            secret: format!("{id}-secret-0123456789abcdef"),
            redirect_uris: vec![format!("{base}/_sessiongate/oidc/callback")],
            post_logout_redirect_uris: vec![format!("{base}/"), format!("{base}/public/bye")],
            backchannel_logout_uri: Some(format!("{base}/_sessiongate/oidc/backchannel-logout")),
            auth_method: "client_secret_basic".into(),
        }
    }

    fn to_json(&self) -> Value {
        let mut c = json!({
            "client_id": self.id,
            "client_secret": self.secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "token_endpoint_auth_method": self.auth_method,
        });
        if let Some(uri) = &self.backchannel_logout_uri {
            c["backchannel_logout_uri"] = json!(uri);
        }
        c
    }
}

/// The running provider; killed on drop (and it exits when its stdin closes).
pub struct OidcProvider {
    pub issuer: String,
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts the provider with these clients; `options` adds settings (`access_token_ttl`,
    /// `id_token_ttl`, in seconds).
    pub fn start(clients: &[Client], options: Value) -> Self {
        ensure_installed();
        let mut config =
            json!({ "clients": clients.iter().map(Client::to_json).collect::<Vec<_>>() });
        if let Value::Object(extra) = options {
            for (k, v) in extra {
                config[k] = v;
            }
        }
        let mut child = Command::new("node")
            .arg(folder().join("provider.mjs"))
            .arg(config.to_string())
            .current_dir(folder())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs the provider");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reads the provider's ready line");
        let ready: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("the provider's ready line {line:?}: {e}"));
        OidcProvider {
            issuer: ready["issuer"].as_str().expect("issuer").to_string(),
            port: ready["port"].as_u64().expect("port") as u16,
            child,
            _stdin: stdin,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    /// A test control: POST `body` to `/test/{path}`, the JSON answer.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("http://127.0.0.1:{}/test/{path}", self.port);
        let reply = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert!(
            reply.status().is_success(),
            "POST {url}: {}",
            reply.status()
        );
        reply.json().await.unwrap_or(Value::Null)
    }

    /// A test read: GET `/test/{path}`.
    pub async fn read(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:{}/test/{path}", self.port);
        self.http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .expect("JSON")
    }

    /// The next interactions sign this user in.
    pub async fn user(&self, sub: &str, email: &str, name: &str, groups: &[&str]) {
        self.control(
            "user",
            json!({"sub": sub, "email": email, "name": name, "groups": groups}),
        )
        .await;
    }

    /// One-shot change to the next token answer (see the fixture's README for the modes);
    /// `none` changes nothing.
    pub async fn tamper(&self, mode: &str) {
        if mode == "none" {
            return;
        }
        self.control("tamper", json!({ "mode": mode })).await;
    }

    /// How many token requests of each grant the provider answered.
    pub async fn token_requests(&self, grant: &str) -> u64 {
        self.read("stats").await["token_requests"][grant]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
