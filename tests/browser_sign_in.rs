//! A real browser signs in at the edge: Debian's headless Chromium, driven by
//! `tests/oidc/browser.mjs` (puppeteer-core over the DevTools protocol), opens a protected page
//! of an app that has no login code, is sent through the real OpenID provider and back, sees
//! the page with the user's name, opens two tabs that sign in at once (both end signed in),
//! follows a sign-out link on another site (asked first, still signed in), signs out with the
//! proxy's button at the edge and at the provider, and is signed out. Screenshots of every open
//! page are written to `target/browser-screenshots/` when a step fails.

mod common;

use std::process::Command;

use common::oidc::{folder, Client, OidcProvider};
use common::{EchoUpstream, Ports, Proxy};
use serde_json::{json, Value};

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_through_the_provider_and_out_again() {
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "Chromium is missing: scripts/deps.sh browser installs it"
    );
    let ports = Ports::free();
    let client = Client::for_proxy("sg", ports.port);
    // The fixture's log (interactions, refused grants) goes to stderr: it explains a failure.
    let provider = OidcProvider::start(std::slice::from_ref(&client), json!({"debug": true}));
    let app = EchoUpstream::start("app").await;
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:{port}"]
threads = 2
admin_listen = "127.0.0.1:{admin}"

[session]
cookie_name = "sid"
secure = false

[store]
kind = "memory"

[identity]
insecure_signing_key = "{key}"

[identity.headers]
"X-Auth-User" = "sub"
"X-Auth-Name" = "name"

[[upstream]]
name = "app"
backends = ["{app}"]

[[identity_provider]]
name = "corp"
issuer = "{issuer}"
client_id = "sg"
client_secret_file = "{{dir}}/oidc-secret"
claims = ["name"]
post_logout_redirect_url = "http://127.0.0.1:{port}/public/bye"

[[route]]
path_prefix = "/public"
upstream = "app"
auth = "public"

[[route]]
path_prefix = "/"
upstream = "app"
login = "corp"
"#,
        port = ports.port,
        admin = ports.admin_port,
        key = common::config::KEY,
        app = app.addr,
        issuer = provider.issuer,
    );
    let proxy = Proxy::start_on_ports(
        &config,
        &[("oidc-secret".into(), client.secret.clone())],
        &[],
        ports,
    );
    let shots = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/browser-screenshots/chromium_signs_in");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let base = format!("http://127.0.0.1:{}", ports.port);
    let run = json!({
        "url": format!("{base}/app/"),
        "expect_text": "Alice Example",
        "logout_url": format!("{base}/_sessiongate/oidc/logout"),
        "screenshots": shots,
        "two_tabs": true,
        // localhost (the provider) is another site than 127.0.0.1 (the proxy).
        "cross_site_from": format!("{}/.well-known/openid-configuration", provider.issuer),
        "chromium": chromium(),
    });
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(folder().join("browser.mjs"))
            .arg(run.to_string())
            .current_dir(folder())
            .output()
            .expect("node runs the browser driver")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == json!(true),
        "the browser run failed: {report}\nstderr: {}\nproxy log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.logs()
    );
    // What the browser went through, as the proxy saw it: two sign-ins completed for the
    // tabs and the first page, one sign-out, and one more sign-in after it.
    let logs = proxy.logs();
    assert!(
        logs.matches("signed a user in at the edge").count() >= 3,
        "{logs}"
    );
    assert!(logs.contains("session ended at sign-out"), "{logs}");
    assert_eq!(
        report["steps"].as_array().map(|s| s
            .iter()
            .filter(|s| s["step"] == "cross_site_logout_asked")
            .count()),
        Some(1),
        "{report}"
    );
    drop(provider);
}
