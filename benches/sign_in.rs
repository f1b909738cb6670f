//! The cost of signing a user in at the edge that is the proxy's own: verifying the ID token
//! the provider returned (RS256 and ES256, the provider's keys already fetched, as on every
//! sign-in after the first), and the pure steps of starting a flow. The provider is a small
//! HTTP server of the bench's own serving a discovery document and a key set; the keys in
//! `benches/keys/` are published, bench-only keys. Results go to BENCHMARKS.md.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sessiongate::config::model::{ClientAuth, IdentityProviderSettings, SecretBytes};
use sessiongate::oidc::flow;
use sessiongate::oidc::verify::{id_token, Expect};
use sessiongate::oidc::Provider;

const RS256_PEM: &str = include_str!("keys/rs256.pem");
const RS256_JWK: &str = include_str!("keys/rs256.jwk.json");
const ES256_PEM: &str = include_str!("keys/es256.pem");
const ES256_JWK: &str = include_str!("keys/es256.jwk.json");

/// Serves the discovery document and the key set on an ephemeral port; the issuer URL.
async fn provider_server() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("binds");
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
    });
    let jwks: Value = json!({"keys": [
        serde_json::from_str::<Value>(RS256_JWK).unwrap(),
        serde_json::from_str::<Value>(ES256_JWK).unwrap(),
    ]});
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let d = discovery.clone();
                async move { ([("content-type", "application/json")], d.to_string()) }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || {
                let j = jwks.clone();
                async move { ([("content-type", "application/json")], j.to_string()) }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    issuer
}

fn settings(issuer: &str) -> IdentityProviderSettings {
    IdentityProviderSettings {
        name: "corp".into(),
        issuer: issuer.into(),
        client_id: "sessiongate".into(),
        client_secret: SecretBytes(b"secret".to_vec()),
        client_auth: ClientAuth::SecretBasic,
        scopes: vec!["openid".into()],
        audiences: Vec::new(),
        sub_claim: "sub".into(),
        email_claim: "email".into(),
        groups_claim: "groups".into(),
        claims: vec!["name".into()],
        userinfo: false,
        redirect_url: None,
        post_logout_redirect_url: None,
        pass_access_token: false,
        algorithms: vec!["RS256".into(), "ES256".into()],
        clock_skew: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        refresh_interval: None,
        flow_timeout: Duration::from_secs(600),
        ca_pem: None,
    }
}

/// A typical ID token (Keycloak-sized claims) signed with `alg` under `kid`.
fn token(issuer: &str, alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let now = sessiongate::session::lifecycle::now_ms() / 1000;
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = json!({
        "iss": issuer, "aud": "sessiongate", "azp": "sessiongate", "sub": "f3c1a9d2-7a51-4c1e-9b7e-2b1f0c9d8e7a",
        "iat": now, "exp": now + 3600, "auth_time": now, "nonce": "n-0S6_WzA2Mj",
        "sid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789", "email": "alice@example.com",
        "email_verified": true, "name": "Alice Example", "groups": ["staff", "payroll-admins"],
        "preferred_username": "alice", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
    });
    encode(&header, &claims, key).expect("signs")
}

fn sign_in(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let issuer = runtime.block_on(provider_server());
    let provider = Provider::new(settings(&issuer));
    let rs = token(
        &issuer,
        Algorithm::RS256,
        "rs256",
        &EncodingKey::from_rsa_pem(RS256_PEM.as_bytes()).unwrap(),
    );
    let es = token(
        &issuer,
        Algorithm::ES256,
        "es256",
        &EncodingKey::from_ec_pem(ES256_PEM.as_bytes()).unwrap(),
    );
    let verify = |t: &str| {
        runtime
            .block_on(id_token(
                &provider,
                t,
                Expect {
                    now_secs: sessiongate::session::lifecycle::now_ms() / 1000,
                    nonce: Some("n-0S6_WzA2Mj"),
                },
            ))
            .expect("verifies")
    };
    // The first verification fetches the discovery document and the keys; then they are kept.
    verify(&rs);
    verify(&es);
    c.bench_function("id_token_verify_rs256", |b| {
        b.iter(|| verify(black_box(&rs)))
    });
    c.bench_function("id_token_verify_es256", |b| {
        b.iter(|| verify(black_box(&es)))
    });
    c.bench_function("flow_start_values", |b| {
        b.iter(|| {
            let state = flow::random_token().unwrap();
            let verifier = flow::random_token().unwrap();
            let url = flow::authorize_url(
                "https://login.example.com/realms/corp/protocol/openid-connect/auth",
                "sessiongate",
                "https://app.example.com/_sessiongate/oidc/callback",
                &["openid".into(), "email".into(), "profile".into()],
                &state,
                &flow::random_token().unwrap(),
                &verifier,
            );
            black_box((flow::hashed(&state), url))
        })
    });
}

criterion_group! {
    name = sign_in_benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = sign_in
}
criterion_main!(sign_in_benches);
