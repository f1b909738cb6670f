//! Forged ids cost nothing: a session cookie is the id with a MAC under the cookie key, so a
//! flood of random well-formed cookies is refused before any store is asked, while real
//! sessions keep being served; and a rotation of the cookie key by reload logs nobody out while
//! the old key is listed.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use reqwest::StatusCode;
use sessiongate::cookie::CookieCodec;
use sessiongate::session::SessionId;

/// A random cookie value of the right shape: 48 random bytes in base64url (a guessed id with a
/// guessed MAC).
fn forged() -> String {
    let mut raw = [0u8; 48];
    getrandom::fill(&mut raw).expect("random bytes");
    URL_SAFE_NO_PAD.encode(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_forged_cookies_read_nothing_from_redis() {
    // The real session stays cached for the whole test, so any read is a forged cookie's.
    let h = Harness::new()
        .redis()
        .cache(|c| c.max_staleness("1h"))
        .start()
        .await;
    let alice = h.login("alice").await;
    let settled = async {
        // Two requests in a row without a read: cached (the login's invalidation has come).
        for _ in 0..50 {
            let before = h.redis().command_calls("get");
            assert_eq!(
                h.request("/", Some(&alice), &[]).await.status,
                StatusCode::OK
            );
            assert_eq!(
                h.request("/", Some(&alice), &[]).await.status,
                StatusCode::OK
            );
            if h.redis().command_calls("get") == before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("alice's session never stayed cached");
    };
    settled.await;

    let gets = h.redis().command_calls("get");
    let evalshas = h.redis().command_calls("evalsha");
    let mut refused = 0;
    for _ in 0..100 {
        let h = &h;
        let batch = (0..100).map(|_| {
            let value = forged();
            async move { h.request("/", Some(&value), &[]).await }
        });
        for reply in futures_util::future::join_all(batch).await {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.session_cookie().as_deref(), Some(""), "cleared");
            refused += 1;
        }
        // The real session answers all along.
        let reply = h.request("/", Some(&alice), &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.echo().get("x-auth-user"), Some("alice"));
    }
    assert_eq!(refused, 10_000);
    assert_eq!(
        h.redis().command_calls("get"),
        gets,
        "a forged cookie reached Redis"
    );
    assert_eq!(h.redis().command_calls("evalsha"), evalshas);
    let metrics = h.metrics().await;
    let invalid = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sessiongate_session_lookups_total{result=\"invalid\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(invalid >= 10_000.0, "counted as invalid: {invalid}");
}

const OLD_KEY: &str = "old-cookie-key-0123456789abcdefghijklmn";
const NEW_KEY: &str = "new-cookie-key-0123456789abcdefghijklmn";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_key_rotation_by_reload_logs_nobody_out() {
    let h = Harness::new()
        .redis()
        .session(|s| s.cookie_keys(&[OLD_KEY]))
        .start()
        .await;
    h.wait_for_reload_handler().await;
    let before = h.login("alice").await;
    let old = CookieCodec::new(&[OLD_KEY]);
    let new = CookieCodec::new(&[NEW_KEY]);
    assert!(
        old.decode(before.as_bytes()).is_some(),
        "signed with the old key"
    );
    let original = std::fs::read_to_string(h.proxy.config_path()).unwrap();
    let with_keys = |keys: &[&str]| {
        let tables: String = keys
            .iter()
            .map(|k| format!("[[session.cookie_keys]]\ninsecure_value = \"{k}\"\n"))
            .collect();
        original.replace(
            &format!("[[session.cookie_keys]]\ninsecure_value = \"{OLD_KEY}\"\n"),
            &tables,
        )
    };

    // Step 1: the new key first, the old one still listed.
    std::fs::write(h.proxy.config_path(), with_keys(&[NEW_KEY, OLD_KEY])).unwrap();
    h.reload(true).await;
    let reply = h.request("/", Some(&before), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "the old cookie still works");
    assert_eq!(reply.echo().get("x-auth-user"), Some("alice"));
    let after = h.login("bob").await;
    assert!(new.decode(after.as_bytes()).is_some(), "the new key signs");
    assert!(old.decode(after.as_bytes()).is_none());
    assert_eq!(
        h.request("/", Some(&after), &[]).await.status,
        StatusCode::OK
    );
    // The store key is a hash of the id alone: the same session under either key.
    let id: SessionId = old.decode(before.as_bytes()).unwrap();
    let resigned = new.encode(&id);
    let reply = h.request("/", Some(&resigned), &[]).await;
    assert_eq!(reply.echo().get("x-auth-user"), Some("alice"));

    // Step 2: the old key removed: its cookies are refused without a store read.
    std::fs::write(h.proxy.config_path(), with_keys(&[NEW_KEY])).unwrap();
    h.reload(true).await;
    let gets = h.redis().command_calls("get");
    let reply = h
        .request("/", Some(&before), &[("accept", "application/json")])
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.redis().command_calls("get"), gets);
    assert_eq!(
        h.request("/", Some(&after), &[]).await.status,
        StatusCode::OK
    );
}
