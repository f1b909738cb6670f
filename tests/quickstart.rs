//! The newcomer's path, automated: `conf/quickstart.toml` in front of the bundled demo app (the
//! real `sessiongate-demo` binary), driven like a browser: redirected to login, logs in with
//! the form, sees its identity with a verified assertion, updates its profile, logs out.

mod common;

use std::process::{Child, Command, Stdio};

use common::{client, free_port, set_cookie_value, Proxy};
use reqwest::StatusCode;

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_logs_in_sees_their_identity_and_logs_out() {
    let root = env!("CARGO_MANIFEST_DIR");
    let key_file = format!("{root}/conf/keys/demo-k1.key");
    let demo_port = free_port();
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_sessiongate-demo"))
            .args([
                "--listen",
                &format!("127.0.0.1:{demo_port}"),
                "--key-file",
                &key_file,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the demo app starts"),
    );
    let text = std::fs::read_to_string(format!("{root}/conf/quickstart.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:{port}")
        .replace("127.0.0.1:9091", "127.0.0.1:{admin_port}")
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{demo_port}"))
        .replace("\"keys/demo-k1.key\"", &format!("\"{key_file}\""))
        .replace(
            "\"keys/demo-cookie.key\"",
            &format!("\"{root}/conf/keys/demo-cookie.key\""),
        );
    let proxy = Proxy::start(&text);
    let http = client();
    // wait for the demo app behind the proxy
    common::eventually(
        std::time::Duration::from_secs(10),
        "the demo app listens",
        || std::net::TcpStream::connect(("127.0.0.1", demo_port)).is_ok(),
    )
    .await;

    let home = http
        .get(proxy.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::FOUND);
    assert_eq!(home.headers()["location"], "/login?next=%2F");

    let form = http.get(proxy.url("/login?next=%2F")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert!(form.text().await.unwrap().contains("<form"));

    let login = http
        .post(proxy.url("/login"))
        .form(&[
            ("username", "newcomer"),
            ("email", "new@example.com"),
            ("roles", "reader"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert!(login.headers().get("x-sessiongate-login").is_none());
    let sid = set_cookie_value(login.headers(), "sid").expect("the login sets the cookie");

    let page = http
        .get(proxy.url("/"))
        .header("cookie", format!("sid={sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Signed in as"), "{html}");
    assert!(html.contains("newcomer"));
    assert!(html.contains("new@example.com"));
    assert!(
        html.contains("verified"),
        "the demo app verified the assertion: {html}"
    );

    let profile = http
        .post(proxy.url("/profile"))
        .header("cookie", format!("sid={sid}"))
        .form(&[("display_name", "New Comer")])
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), StatusCode::SEE_OTHER);
    let page = http
        .get(proxy.url("/"))
        .header("cookie", format!("sid={sid}"))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("New Comer"));

    let logout = http
        .post(proxy.url("/logout"))
        .header("cookie", format!("sid={sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        set_cookie_value(logout.headers(), "sid").as_deref(),
        Some("")
    );
    let after = http
        .get(proxy.url("/"))
        .header("cookie", format!("sid={sid}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::FOUND,
        "logged out: back to the login page"
    );
}
