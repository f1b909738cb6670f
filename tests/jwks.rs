//! Assertions apps verify without a secret: EdDSA and ES256 tokens checked through the key set
//! the proxy serves (on the public and the admin listener) by independent libraries — PyJWT's
//! PyJWKClient and Node's jose — and a key rotation through three reloads under a steady
//! stream of requests, with the app's verification never failing.
//!
//! Needs /usr/bin/python3 with PyJWT and cryptography, and `npm ci` run in
//! tests/verifiers/node (`scripts/deps.sh python-jwt node` does both).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, Identity, Route, Running};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::Value;

const JWKS: &str = "/.well-known/sessiongate/jwks.json";

const ED_A: (&str, &str, &str) = ("ed-a", "EdDSA", "ed25519.pem");
const ED_B: (&str, &str, &str) = ("ed-b", "EdDSA", "ed25519-b.pem");
const EC: (&str, &str, &str) = ("ec-a", "ES256", "p256.pem");
const HS: (&str, &str, &str) = ("shared", "HS256", "hs256.key");

fn verifiers() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verifiers"))
}

/// What an independent verifier made of a token: the claims, or why it refused.
fn run_verifier(mut command: Command) -> Result<Value, String> {
    let out = command.output().expect("the verifier runs");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the verifier prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// PyJWT (Debian's python3-jwt) with PyJWKClient on the key set at `jwks_url`.
fn pyjwt(jwks_url: &str, token: &str) -> Result<Value, String> {
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg(verifiers().join("pyjwt_verify.py"))
        .args([jwks_url, token, "app"]);
    run_verifier(command)
}

/// jose (npm, pinned in tests/verifiers/node) with createRemoteJWKSet on `jwks_url`.
fn jose(jwks_url: &str, token: &str) -> Result<Value, String> {
    let dir = verifiers().join("node");
    assert!(
        dir.join("node_modules/jose").is_dir(),
        "jose is not installed: run `scripts/deps.sh node` (npm ci in {})",
        dir.display()
    );
    let mut command = Command::new("node");
    command
        .arg(dir.join("verify.mjs"))
        .args([jwks_url, token, "app"]);
    run_verifier(command)
}

async fn start(keys: &[(&str, &str, &str)]) -> Running {
    let h = Harness::new()
        .identity(|i| i.keys(keys))
        // A route under the key set's path: it must not take the path over.
        .route(Route::public("/.well-known"))
        .start()
        .await;
    h.wait_for_reload_handler().await;
    h
}

/// The assertion the app received for a request of `cookie`'s session.
async fn assertion(h: &Running, cookie: &str) -> String {
    let reply = h.request("/", Some(cookie), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply
        .echo()
        .get("x-sessiongate-assertion")
        .expect("an assertion upstream")
        .to_string()
}

/// Replaces the configured keys `from` with `to` in the running configuration file and reloads.
async fn rotate(h: &Running, from: &[(&str, &str, &str)], to: &[(&str, &str, &str)]) {
    let running = std::fs::read_to_string(h.proxy.config_path()).unwrap();
    let next = running.replace(&Identity::keys_toml(from), &Identity::keys_toml(to));
    assert_ne!(
        next, running,
        "the keys to replace are in the configuration"
    );
    std::fs::write(h.proxy.config_path(), next).unwrap();
    h.reload(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_set_is_served_on_both_listeners_and_never_forwarded() {
    let h = start(&[ED_A, EC, HS]).await;
    let hits = h.upstream().hits();
    let client = common::client();

    let public = client.get(h.url(JWKS)).send().await.unwrap();
    assert_eq!(
        public.status(),
        StatusCode::OK,
        "no session needed, whatever the routes"
    );
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        header(&public, "cache-control").as_deref(),
        Some("public, max-age=60")
    );
    assert_eq!(
        header(&public, "content-type").as_deref(),
        Some("application/jwk-set+json")
    );
    let etag = header(&public, "etag").expect("an ETag");
    let body = public.text().await.unwrap();
    let set: Value = serde_json::from_str(&body).unwrap();
    let kids: Vec<(&str, &str)> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap(), k["alg"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kids,
        [("ed-a", "EdDSA"), ("ec-a", "ES256")],
        "no HS256 secret"
    );
    for key in set["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none());
    }

    // The admin listener serves the same set.
    let admin = client.get(h.proxy.admin_url(JWKS)).send().await.unwrap();
    assert_eq!(header(&admin, "etag"), Some(etag.clone()));
    assert_eq!(admin.text().await.unwrap(), body);

    // Revalidation, HEAD, other methods.
    for url in [h.url(JWKS), h.proxy.admin_url(JWKS)] {
        let revalidated = client
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED, "{url}");
        assert!(revalidated.text().await.unwrap().is_empty());
        let head = client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string())
        );
        let post = client.post(&url).body("{}").send().await.unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&post, "allow").as_deref(), Some("GET, HEAD"));
    }

    // Another spelling of the path is the same path to the route table: the proxy's too.
    let encoded = client
        .get(h.url("/.well-known/sessiongate/jwks%2Ejson?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status(), StatusCode::OK);
    assert_eq!(encoded.text().await.unwrap(), body);
    // Beside it, the route still reaches its app.
    let beside = h.get("/.well-known/other").send().await;
    assert_eq!(beside.status, StatusCode::OK);
    assert_eq!(
        h.upstream().hits(),
        hits + 1,
        "no request for the key set reached the app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_and_jose_verify_eddsa_and_es256_through_the_key_set() {
    for (key, alg) in [(ED_A, "EdDSA"), (EC, "ES256")] {
        let h = start(&[key, HS]).await;
        let cookie = h.login("alice").await;
        let token = assertion(&h, &cookie).await;
        let header = decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.0));
        for (library, verified) in [
            ("PyJWT", pyjwt(&h.url(JWKS), &token)),
            ("jose", jose(&h.url(JWKS), &token)),
            ("PyJWT via admin", pyjwt(&h.proxy.admin_url(JWKS), &token)),
        ] {
            let verified = verified.unwrap_or_else(|e| panic!("{library} refused {alg}: {e}"));
            assert_eq!(verified["header"]["alg"], alg, "{library}");
            assert_eq!(verified["header"]["kid"], key.0, "{library}");
            assert_eq!(verified["claims"]["sub"], "alice", "{library}");
            assert_eq!(
                verified["claims"]["email"], "alice@example.com",
                "{library}"
            );
            assert_eq!(verified["claims"]["aud"], "app", "{library}");
        }
        // A token altered after signing is refused by both.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged =
            base64_url(br#"{"iss":"sessiongate","aud":"app","sub":"mallory","exp":9999999999}"#);
        parts[1] = &forged;
        let forged = parts.join(".");
        assert!(pyjwt(&h.url(JWKS), &forged).is_err(), "{alg}");
        assert!(jose(&h.url(JWKS), &forged).is_err(), "{alg}");
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_refused_once_its_key_leaves_the_set() {
    let h = start(&[ED_A]).await;
    let cookie = h.login("alice").await;
    let old = assertion(&h, &cookie).await;
    assert!(pyjwt(&h.url(JWKS), &old).is_ok());
    rotate(&h, &[ED_A], &[ED_B]).await;
    let new = assertion(&h, &cookie).await;
    assert_eq!(decode_header(&new).unwrap().kid.as_deref(), Some("ed-b"));
    assert!(pyjwt(&h.url(JWKS), &new).is_ok());
    assert!(jose(&h.url(JWKS), &new).is_ok());
    let refused = pyjwt(&h.url(JWKS), &old).expect_err("PyJWT refuses a removed key's token");
    assert!(
        refused.contains("ed-a") || refused.contains("kid"),
        "{refused}"
    );
    jose(&h.url(JWKS), &old).expect_err("jose refuses a removed key's token");
}

/// An app's verifier: keeps the key set it fetched and fetches it again only for a `kid` it
/// does not know, as real apps do (PyJWKClient, jose, go-oidc).
struct AppVerifier {
    url: String,
    set: Mutex<JwkSet>,
    fetches: AtomicUsize,
}

impl AppVerifier {
    async fn new(url: String) -> Self {
        let set = fetch(&url).await;
        AppVerifier {
            url,
            set: Mutex::new(set),
            fetches: AtomicUsize::new(1),
        }
    }

    async fn verify(&self, token: &str) -> Result<Value, String> {
        let header = decode_header(token).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("no kid")?;
        if !matches!(header.alg, Algorithm::EdDSA | Algorithm::ES256) {
            return Err(format!(
                "{:?} is not an algorithm this app accepts",
                header.alg
            ));
        }
        let known = self.set.lock().unwrap().find(&kid).is_some();
        if !known {
            let set = fetch(&self.url).await;
            self.fetches.fetch_add(1, Ordering::SeqCst);
            *self.set.lock().unwrap() = set;
        }
        let key = {
            let set = self.set.lock().unwrap();
            let jwk = set.find(&kid).ok_or(format!("no key {kid} in the set"))?;
            DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?
        };
        let mut v = Validation::new(header.alg);
        v.set_audience(&["app"]);
        v.set_issuer(&["sessiongate"]);
        decode::<Value>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

async fn fetch(url: &str) -> JwkSet {
    common::client()
        .get(url)
        .send()
        .await
        .expect("the key set answers")
        .json()
        .await
        .expect("a JWK set")
}

/// What the stream of requests saw.
#[derive(Default)]
struct Tally {
    verified: AtomicUsize,
    failures: Mutex<Vec<String>>,
    kids: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_through_three_reloads_fails_no_verification() {
    let h = Arc::new(start(&[ED_A]).await);
    let cookie = h.login("alice").await;
    let app = Arc::new(AppVerifier::new(h.url(JWKS)).await);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let first_of_a = assertion(&h, &cookie).await;

    let mut streams = Vec::new();
    for _ in 0..2 {
        let (h, app, tally, stop, cookie) = (
            h.clone(),
            app.clone(),
            tally.clone(),
            stop.clone(),
            cookie.clone(),
        );
        streams.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let reply = h.request("/", Some(&cookie), &[]).await;
                let token = match (reply.status, reply.echo.as_ref()) {
                    (StatusCode::OK, Some(echo)) => {
                        echo.get("x-sessiongate-assertion").map(String::from)
                    }
                    _ => None,
                };
                let Some(token) = token else {
                    tally
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("no assertion ({})", reply.status));
                    continue;
                };
                match app.verify(&token).await {
                    Ok(_) => {
                        tally.verified.fetch_add(1, Ordering::SeqCst);
                        let kid = decode_header(&token).unwrap().kid.unwrap();
                        let mut kids = tally.kids.lock().unwrap();
                        if kids.last() != Some(&kid) {
                            kids.push(kid);
                        }
                    }
                    Err(e) => tally.failures.lock().unwrap().push(e),
                }
            }
        }));
    }
    let settle = |tally: Arc<Tally>| async move {
        let before = tally.verified.load(Ordering::SeqCst);
        common::eventually(Duration::from_secs(10), "the stream goes on", || {
            tally.verified.load(Ordering::SeqCst) >= before + 50
        })
        .await;
    };

    settle(tally.clone()).await;
    // 1. B is published; A still signs.
    rotate(&h, &[ED_A], &[ED_A, ED_B]).await;
    settle(tally.clone()).await;
    // 2. B signs; A is still published for the tokens it signed.
    rotate(&h, &[ED_A, ED_B], &[ED_B, ED_A]).await;
    settle(tally.clone()).await;
    // 3. A is gone.
    rotate(&h, &[ED_B, ED_A], &[ED_B]).await;
    settle(tally.clone()).await;
    stop.store(true, Ordering::SeqCst);
    for s in streams {
        s.await.unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "verification failures: {failures:?}");
    let kids = tally.kids.lock().unwrap().clone();
    assert_eq!(kids.first().map(String::as_str), Some("ed-a"));
    assert_eq!(kids.last().map(String::as_str), Some("ed-b"));
    assert!(
        app.fetches.load(Ordering::SeqCst) >= 2,
        "the app fetched the set again for the new kid"
    );
    println!(
        "{} assertions verified across three reloads, key set fetched {} times",
        tally.verified.load(Ordering::SeqCst),
        app.fetches.load(Ordering::SeqCst)
    );

    // A's token, verified against the set as it is now, is refused.
    let current = AppVerifier::new(h.url(JWKS)).await;
    let refused = current
        .verify(&first_of_a)
        .await
        .expect_err("A is no longer trusted");
    assert!(refused.contains("no key ed-a"), "{refused}");
    assert!(pyjwt(&h.url(JWKS), &first_of_a).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_set_their_lifetime_and_jti_is_there_only_when_asked_for() {
    let h = Harness::new()
        .identity(|i| i.keys(&[ED_A]))
        .route(
            Route::required("/short")
                .raw("assertion_ttl = \"10s\"")
                .audience("app"),
        )
        .start()
        .await;
    let cookie = h.login("alice").await;
    let claims = |token: &str| pyjwt(&h.url(JWKS), token).expect("verifies")["claims"].clone();
    let default = claims(&assertion(&h, &cookie).await);
    assert_eq!(
        default["exp"].as_u64().unwrap() - default["iat"].as_u64().unwrap(),
        60
    );
    assert!(default.get("jti").is_none(), "no jti by default");
    let reply = h.request("/short", Some(&cookie), &[]).await;
    let short = claims(reply.echo().get("x-sessiongate-assertion").unwrap());
    assert_eq!(
        short["exp"].as_u64().unwrap() - short["iat"].as_u64().unwrap(),
        10
    );

    let h = Harness::new()
        .identity(|i| i.keys(&[ED_A]).raw("jti = true"))
        .start()
        .await;
    let cookie = h.login("alice").await;
    let (first, second) = (assertion(&h, &cookie).await, assertion(&h, &cookie).await);
    assert_ne!(first, second, "every request gets its own token");
    let (a, b) = (claims_at(&h, &first), claims_at(&h, &second));
    assert_ne!(a["jti"], b["jti"]);
    assert_eq!(a["jti"].as_str().map(str::len), Some(22));
}

fn claims_at(h: &Running, token: &str) -> Value {
    pyjwt(&h.url(JWKS), token).expect("verifies")["claims"].clone()
}
