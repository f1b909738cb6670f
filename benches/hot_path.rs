//! Micro-benchmarks of the per-request steps: cookie scan, id generation, protected-namespace
//! scan over a realistic 20-header request (and removal of spoofed headers), assertion signing
//! per algorithm (HS256, EdDSA, ES256; fresh and memoised),
//! record encode/decode, and a memory-store lookup (the cache hit is in `benches/cache.rs`).
//! Results and the machine they ran on go to BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use sessiongate::config::model::{RecordFormat, SigningAlgorithm, SigningKey};
use sessiongate::cookie;
use sessiongate::identity::{ProtectedNamespace, Signer};
use sessiongate::session::lifecycle::{new_record, now_ms};
use sessiongate::session::{PreparedSession, SessionId, SessionRecord};
use sessiongate::store::memory::MemoryStore;
use sessiongate::store::SessionStore;

fn record_with_claims(bytes: usize) -> SessionRecord {
    let claims = json!({
        "email": "alice@example.com",
        "roles": ["admin", "dev", "ops"],
        "name": "Alice Example",
        "pad": "x".repeat(bytes.saturating_sub(90)),
    });
    new_record(
        "alice".into(),
        claims.as_object().cloned().unwrap_or_default(),
        now_ms(),
        Duration::from_secs(1800),
        Duration::from_secs(43200),
    )
}

fn request_headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let pairs = [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cache-control", "no-cache"),
        ("pragma", "no-cache"),
        ("referer", "https://app.example.com/reports"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-user", "?1"),
        ("sec-ch-ua", "\"Chromium\";v=\"126\""),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", "\"Linux\""),
        ("upgrade-insecure-requests", "1"),
        ("dnt", "1"),
        ("x-forwarded-for", "203.0.113.7"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    for (k, v) in pairs {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h.append(
        "cookie",
        HeaderValue::from_str(&format!("theme=dark; __Host-sid={cookie}; lang=en")).unwrap(),
    );
    h
}

fn benches(c: &mut Criterion) {
    let id = SessionId::generate().unwrap();
    let codec = cookie::CookieCodec::new(&[b"cookie-key-0123456789abcdefghijklmnop"]);
    let cookie_value = codec.encode(&id);
    let headers = request_headers(&cookie_value);

    // The scan includes verifying the cookie's MAC (one HMAC-SHA256 of the id).
    c.bench_function("cookie_scan_3_cookies", |b| {
        b.iter(|| {
            cookie::scan(
                headers.get_all("cookie").iter().map(|v| v.as_bytes()),
                black_box("__Host-sid"),
                &codec,
            )
        })
    });
    c.bench_function("cookie_mac_verify", |b| {
        b.iter(|| codec.decode(black_box(cookie_value.as_bytes())))
    });
    c.bench_function("cookie_mac_sign", |b| {
        b.iter(|| codec.encode(black_box(&id)))
    });
    c.bench_function("session_id_generate", |b| b.iter(SessionId::generate));
    c.bench_function("store_key_sha256", |b| {
        b.iter(|| black_box(&id).store_key())
    });

    let mapped = [
        HeaderName::from_static("x-sessiongate-assertion"),
        HeaderName::from_static("x-auth-user"),
        HeaderName::from_static("x-auth-email"),
        HeaderName::from_static("x-auth-roles"),
    ];
    let namespace = ProtectedNamespace::new(mapped.iter());
    c.bench_function("namespace_find_20_headers", |b| {
        b.iter(|| namespace.find(black_box(&headers).keys()))
    });
    // The removal itself, when a request does spoof the namespace: the same 20 headers plus two
    // forged ones (one under an underscore spelling), found and removed from a fresh copy.
    let mut spoofed = headers.clone();
    spoofed.append(
        HeaderName::from_static("x-sessiongate-assertion"),
        HeaderValue::from_static("forged"),
    );
    spoofed.append(
        HeaderName::from_static("x_auth_user"),
        HeaderValue::from_static("admin"),
    );
    c.bench_function("namespace_strip_22_headers_2_spoofed", |b| {
        b.iter_batched(
            || spoofed.clone(),
            |mut h| {
                for (name, _) in namespace.find(h.keys()) {
                    h.remove(&name);
                }
                h
            },
            BatchSize::SmallInput,
        )
    });

    let record = record_with_claims(200);
    let key = id.store_key();
    let prepared = PreparedSession::new(&record, &["email".to_string(), "roles".to_string()]);
    // Per algorithm: signing afresh, a memo hit (the same session again within the second),
    // and a memo miss (a different second every time: signing plus the memo's bookkeeping).
    // HS256 keeps the names it had before EdDSA and ES256 were added.
    let rng = ring::rand::SystemRandom::new();
    let ed25519 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let p256 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let keys = [
        (
            "",
            SigningKey::hs256("k1", b"0123456789abcdef0123456789abcdef").unwrap(),
        ),
        (
            "_eddsa",
            SigningKey::from_pkcs8("k1", SigningAlgorithm::EdDSA, ed25519.as_ref()).unwrap(),
        ),
        (
            "_es256",
            SigningKey::from_pkcs8("k1", SigningAlgorithm::ES256, p256.as_ref()).unwrap(),
        ),
    ];
    for (suffix, signing_key) in &keys {
        let signer = Signer::new("sessiongate", signing_key, 60);
        c.bench_function(&format!("assertion_sign_200B{suffix}"), |b| {
            b.iter(|| signer.sign(black_box(&prepared), &key, "app", 60, 1_700_000_000))
        });
        c.bench_function(&format!("assertion_memo_hit_200B{suffix}"), |b| {
            b.iter(|| signer.header_value(black_box(&prepared), &key, "app", 60, 1_700_000_000))
        });
        let mut second = 1_700_000_000;
        c.bench_function(&format!("assertion_memo_miss_200B{suffix}"), |b| {
            b.iter(|| {
                second += 1;
                signer.header_value(black_box(&prepared), &key, "app", 60, second)
            })
        });
    }
    c.bench_function("prepare_session_200B", |b| {
        b.iter(|| {
            PreparedSession::new(
                black_box(&record),
                &["email".to_string(), "roles".to_string()],
            )
        })
    });

    for size in [200usize, 2_000, 16_000] {
        let record = record_with_claims(size);
        for format in [RecordFormat::MessagePack, RecordFormat::Json] {
            let encoded = record.encode(format);
            let name = format!("record_{}_{}B", format.as_str(), size);
            c.bench_function(&format!("{name}_encode"), |b| {
                b.iter(|| black_box(&record).encode(format))
            });
            c.bench_function(&format!("{name}_decode"), |b| {
                b.iter(|| SessionRecord::decode(black_box(&encoded), format))
            });
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new(20_000);
    let keys: Vec<_> = (0..10_000)
        .map(|_| SessionId::generate().unwrap().store_key())
        .collect();
    runtime.block_on(async {
        for k in &keys {
            store.create(k, &record, now_ms()).await.unwrap();
        }
    });
    let mut i = 0usize;
    c.bench_function("memory_store_load_10k", |b| {
        b.iter_batched(
            || {
                i = (i + 7919) % keys.len();
                &keys[i]
            },
            |k| runtime.block_on(store.load(k, 0)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(hot_path);
