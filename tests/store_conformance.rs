//! One conformance suite, run against every store: the embedded memory store and a real
//! `redis-server` (MessagePack and JSON records). Whatever the proxy relies on is asserted here.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::topology::{RedisCluster, SentinelGroup, TlsFiles, MASTER_NAME};
use common::RedisServer;
use serde_json::{json, Value};
use sessiongate::config::model::{
    CookieSettings, RecordFormat, RedisStoreSettings, RedisTls, RedisTopology, SameSite,
    SecretBytes, SessionSettings,
};
use sessiongate::session::control::Login;
use sessiongate::session::lifecycle::{new_record, now_ms};
use sessiongate::session::{ProviderLink, SessionId, SessionRecord};
use sessiongate::sessions::{Backend, Sessions, UpdateOutcome};
use sessiongate::store::memory::MemoryStore;
use sessiongate::store::redis::RedisStore;
use sessiongate::store::{Aux, CasOutcome, KeySchema, SessionStore, StoreError};

/// The session service straight on `store` (no cache), with these settings.
fn service(store: &Arc<dyn SessionStore>, settings: SessionSettings) -> Sessions {
    Sessions::new(Backend::over(store.clone()), settings, Vec::new())
}

fn claims(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

fn record(sub: &str, lifetime: Duration) -> SessionRecord {
    new_record(
        sub.into(),
        claims(json!({"email": format!("{sub}@example.com"), "roles": ["a", "b"]})),
        now_ms(),
        lifetime,
        lifetime * 4,
    )
}

fn settings(format: RecordFormat) -> SessionSettings {
    SessionSettings {
        cookie: CookieSettings {
            name: "__Host-sid".into(),
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            persistent: false,
        },
        idle_timeout: Duration::from_secs(1800),
        absolute_timeout: Duration::from_secs(43200),
        renew_below: Duration::from_secs(900),
        format,
        max_claims_bytes: 4096,
        cookie_keys: Vec::new(),
        tunnel_recheck: Duration::from_secs(10),
    }
}

fn redis_store(server: &RedisServer, format: RecordFormat) -> Arc<dyn SessionStore> {
    store_on(
        RedisTopology::Standalone { url: server.url() },
        RedisTls::default(),
        format,
    )
}

/// The TLS material sessiongate reads from `[store] tls_*` files, taken from the test's files.
fn tls_settings(tls: &TlsFiles) -> RedisTls {
    let read = |n: &str| std::fs::read(tls.path(n)).expect("reads PEM");
    RedisTls {
        ca: Some(read("ca.crt")),
        client_cert: Some(read("client.crt")),
        client_key: Some(SecretBytes(read("client.key"))),
    }
}

fn store_on(topology: RedisTopology, tls: RedisTls, format: RecordFormat) -> Arc<dyn SessionStore> {
    store_as(topology, tls, format, None)
}

/// A store on `topology` that authenticates with `password` (as `password_file` would give).
fn store_as(
    topology: RedisTopology,
    tls: RedisTls,
    format: RecordFormat,
    password: Option<&str>,
) -> Arc<dyn SessionStore> {
    Arc::new(
        RedisStore::new(
            RedisStoreSettings {
                topology,
                tls,
                key_prefix: "sg:".into(),
                command_timeout: Duration::from_millis(500),
                connect_timeout: Duration::from_millis(500),
                renewal_flush_interval: Duration::from_millis(100),
                renewal_batch_size: 64,
                breaker: sessiongate::config::model::BreakerSettings {
                    failures: 5,
                    open_for: Duration::from_secs(1),
                },
                username: None,
                password: password.map(|p| SecretBytes(p.as_bytes().to_vec())),
            },
            format,
        )
        .expect("store builds"),
    )
}

/// The suite itself: every behaviour a store must have.
async fn conformance(store: Arc<dyn SessionStore>, format: RecordFormat) {
    let now = now_ms();
    let minute = Duration::from_secs(60);

    // create / load round trip, and no overwrite of an existing key
    let id = SessionId::generate().unwrap();
    let key = id.store_key();
    let rec = record("alice", minute);
    store.create(&key, &rec, now).await.unwrap();
    assert_eq!(store.load(&key, now).await.unwrap(), Some(rec.clone()));
    assert!(matches!(
        store.create(&key, &rec, now).await,
        Err(StoreError::Exists)
    ));
    let unknown = SessionId::generate().unwrap().store_key();
    assert_eq!(store.load(&unknown, now).await.unwrap(), None);

    // compare-and-set: right version writes, stale version conflicts, missing never recreates
    let mut next = rec.clone();
    next.v = 2;
    next.claims.insert("theme".into(), json!("dark"));
    assert_eq!(
        store.compare_and_set(&key, 1, &next, now).await.unwrap(),
        CasOutcome::Written
    );
    assert_eq!(store.load(&key, now).await.unwrap(), Some(next.clone()));
    assert_eq!(
        store.compare_and_set(&key, 1, &rec, now).await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(store.load(&key, now).await.unwrap(), Some(next.clone()));
    assert_eq!(
        store.compare_and_set(&unknown, 1, &rec, now).await.unwrap(),
        CasOutcome::Missing
    );
    assert_eq!(
        store.load(&unknown, now).await.unwrap(),
        None,
        "CAS recreated a missing key"
    );

    // per-user index, destroy, destroy_user
    let mut alice_keys = vec![key.clone()];
    for _ in 0..2 {
        let k = SessionId::generate().unwrap().store_key();
        store
            .create(&k, &record("alice", minute), now)
            .await
            .unwrap();
        alice_keys.push(k);
    }
    let bob = SessionId::generate().unwrap().store_key();
    store
        .create(&bob, &record("bob", minute), now)
        .await
        .unwrap();
    alice_keys.sort();
    assert_eq!(store.user_sessions("alice", now).await.unwrap(), alice_keys);

    assert!(store.destroy(&alice_keys[0], Some("alice")).await.unwrap());
    assert!(!store.destroy(&alice_keys[0], Some("alice")).await.unwrap());
    assert_eq!(store.load(&alice_keys[0], now).await.unwrap(), None);
    // destroyed without knowing sub: the stale set member is pruned when listing
    assert!(store.destroy(&alice_keys[1], None).await.unwrap());
    assert_eq!(
        store.user_sessions("alice", now).await.unwrap(),
        vec![alice_keys[2].clone()]
    );

    assert_eq!(
        store.destroy_user("alice").await.unwrap(),
        vec![alice_keys[2].clone()]
    );
    assert_eq!(store.load(&alice_keys[2], now).await.unwrap(), None);
    assert!(store.user_sessions("alice", now).await.unwrap().is_empty());
    assert!(
        store.load(&bob, now).await.unwrap().is_some(),
        "logout-all touched another user"
    );
    assert!(store.destroy_user("nobody").await.unwrap().is_empty());

    // expiry: a record whose earlier deadline has passed is gone
    let short = SessionId::generate().unwrap().store_key();
    let brief = new_record(
        "carol".into(),
        Default::default(),
        now_ms(),
        Duration::from_millis(150),
        minute,
    );
    store.create(&short, &brief, now_ms()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.load(&short, now_ms()).await.unwrap(), None);
    assert_eq!(
        store
            .compare_and_set(&short, 1, &brief, now_ms())
            .await
            .unwrap(),
        CasOutcome::Missing,
        "an expired session must not be renewed back to life"
    );
    assert_eq!(store.load(&short, now_ms()).await.unwrap(), None);

    // a batch of compare-and-sets (the renewal flush), keys spread over any cluster slots:
    // each write gets its own outcome, in order
    let now = now_ms();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..12u64 {
        let key = SessionId::generate().unwrap().store_key();
        let rec = record("erin", minute);
        match i % 3 {
            0 => {
                store.create(&key, &rec, now).await.unwrap();
                expected.push(CasOutcome::Written);
                let mut next = rec.clone();
                next.v = 2;
                batch.push((key, 1, next));
            }
            1 => {
                store.create(&key, &rec, now).await.unwrap();
                expected.push(CasOutcome::Conflict);
                batch.push((key, 7, rec));
            }
            _ => {
                expected.push(CasOutcome::Missing);
                batch.push((key, 1, rec));
            }
        }
    }
    assert_eq!(
        store.compare_and_set_many(&batch, now).await.unwrap(),
        expected
    );
    for ((key, _, next), outcome) in batch.iter().zip(&expected) {
        let stored = store.load(key, now).await.unwrap();
        match outcome {
            CasOutcome::Written => assert_eq!(stored.as_ref(), Some(next)),
            CasOutcome::Conflict => assert_eq!(stored.map(|r| r.v), Some(1)),
            CasOutcome::Missing => assert_eq!(stored, None, "a batch write recreated a key"),
        }
    }
    assert!(store
        .compare_and_set_many(&[], now)
        .await
        .unwrap()
        .is_empty());
    store.destroy_user("erin").await.unwrap();

    // concurrent updates of different claims all survive (compare-and-set with retries)
    let sessions = Arc::new(service(&store, settings(format)));
    let (new_id, _) = sessions
        .login(
            None,
            &Login {
                sub: "dave".into(),
                claims: Default::default(),
                provider: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    let new_key = new_id.store_key();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let sessions = sessions.clone();
            let key = new_key.clone();
            tokio::spawn(async move {
                let patch = claims(json!({ format!("c{i}"): i }));
                sessions.update(&key, &patch, now_ms()).await
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap().unwrap(),
            UpdateOutcome::Updated(_)
        ));
    }
    let merged = store.load(&new_key, now_ms()).await.unwrap().unwrap();
    for i in 0..24 {
        assert_eq!(
            merged.claims[&format!("c{i}")],
            json!(i),
            "claim c{i} was lost"
        );
    }
    assert_eq!(merged.v, 25);

    // A session signed in by an identity provider keeps the provider's side, tokens and all.
    let mut linked = record("erin", Duration::from_secs(60));
    linked.provider = Some(Box::new(ProviderLink {
        name: "corp".into(),
        sub: "provider-sub-1".into(),
        sid: Some("op-session".into()),
        id_token: "header.payload.signature".into(),
        refresh_token: Some("refresh".into()),
        access_token: Some("access".into()),
        access_expires_at: 1_700_000_000_000,
        refresh_at: 1_699_999_970_000,
    }));
    let linked_key = SessionId::generate().unwrap().store_key();
    store.create(&linked_key, &linked, now_ms()).await.unwrap();
    let read = store.load(&linked_key, now_ms()).await.unwrap().unwrap();
    assert_eq!(read.provider, linked.provider);
    let mut next = read.clone();
    next.v += 1;
    next.provider.as_mut().unwrap().refresh_token = Some("refresh-2".into());
    assert_eq!(
        store
            .compare_and_set(&linked_key, read.v, &next, now_ms())
            .await
            .unwrap(),
        CasOutcome::Written
    );
    assert_eq!(
        store
            .load(&linked_key, now_ms())
            .await
            .unwrap()
            .unwrap()
            .provider,
        next.provider
    );

    // Short-lived values: stored for their TTL, only-if-absent refuses a second writer, taking
    // is single use (of many racing takers exactly one gets the value).
    assert!(store
        .put_aux(Aux::Replay, "jti-1", b"1", 60_000, true)
        .await
        .unwrap());
    assert!(!store
        .put_aux(Aux::Replay, "jti-1", b"2", 60_000, true)
        .await
        .unwrap());
    assert_eq!(
        store
            .get_aux(Aux::Replay, "jti-1")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        store.get_aux(Aux::Flow, "jti-1").await.unwrap(),
        None,
        "kinds do not mix"
    );
    assert!(store
        .put_aux(Aux::ProviderIndex, "x", b"a", 60_000, false)
        .await
        .unwrap());
    assert!(store
        .put_aux(Aux::ProviderIndex, "x", b"b", 60_000, false)
        .await
        .unwrap());
    assert_eq!(
        store
            .get_aux(Aux::ProviderIndex, "x")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"b"[..])
    );
    store
        .put_aux(Aux::Flow, "state-1", b"flow", 60_000, false)
        .await
        .unwrap();
    let takers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_aux(Aux::Flow, "state-1").await.unwrap() })
        })
        .collect();
    let mut got = 0;
    for t in takers {
        if let Some(v) = t.await.unwrap() {
            assert_eq!(v, b"flow");
            got += 1;
        }
    }
    assert_eq!(got, 1, "a flow is taken once");
    store
        .put_aux(Aux::Flow, "short", b"x", 30, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        store.take_aux(Aux::Flow, "short").await.unwrap(),
        None,
        "expired"
    );
    // Values are not sessions.
    let sessions_now = store.count(now_ms()).await.unwrap();
    store
        .put_aux(Aux::Flow, "uncounted", b"x", 60_000, false)
        .await
        .unwrap();
    assert_eq!(store.count(now_ms()).await.unwrap(), sessions_now);

    assert!(store.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance(Arc::new(MemoryStore::new(1000)), RecordFormat::MessagePack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_with_msgpack() {
    let server = RedisServer::start();
    conformance(
        redis_store(&server, RecordFormat::MessagePack),
        RecordFormat::MessagePack,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_with_json() {
    let server = RedisServer::start();
    conformance(redis_store(&server, RecordFormat::Json), RecordFormat::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_over_tls_with_a_client_certificate() {
    let tls = TlsFiles::generate();
    let server = common::topology::tls_server(&tls);
    let topology = RedisTopology::Standalone {
        url: format!("rediss://127.0.0.1:{}/0", server.port),
    };
    let store = store_on(
        topology.clone(),
        tls_settings(&tls),
        RecordFormat::MessagePack,
    );
    conformance(store, RecordFormat::MessagePack).await;

    // Without the client certificate the server refuses the handshake: a clear store error.
    let without_cert = RedisTls {
        client_cert: None,
        client_key: None,
        ..tls_settings(&tls)
    };
    let store = store_on(topology.clone(), without_cert, RecordFormat::MessagePack);
    assert!(store.ping().await.is_err());
    // Without the CA, the server's certificate is not trusted.
    let store = store_on(topology, RedisTls::default(), RecordFormat::MessagePack);
    assert!(store.ping().await.is_err());
}

fn sentinel_topology(group: &SentinelGroup, scheme: &str) -> RedisTopology {
    RedisTopology::Sentinel {
        sentinels: group
            .sentinel_ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect(),
        master_name: MASTER_NAME.into(),
    }
}

fn cluster_topology(cluster: &RedisCluster, scheme: &str) -> RedisTopology {
    RedisTopology::Cluster {
        nodes: cluster
            .nodes
            .iter()
            .map(|n| format!("{scheme}://127.0.0.1:{}", n.port))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_through_sentinel() {
    let group = SentinelGroup::start(None);
    let store = store_on(
        sentinel_topology(&group, "redis"),
        RedisTls::default(),
        RecordFormat::MessagePack,
    );
    conformance(store, RecordFormat::MessagePack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_through_sentinel_over_tls() {
    let tls = TlsFiles::generate();
    let group = SentinelGroup::start(Some(&tls));
    let store = store_on(
        sentinel_topology(&group, "rediss"),
        tls_settings(&tls),
        RecordFormat::Json,
    );
    conformance(store, RecordFormat::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_on_a_cluster_with_sessions_on_every_node() {
    let cluster = RedisCluster::start(None);
    let store = store_on(
        cluster_topology(&cluster, "redis"),
        RedisTls::default(),
        RecordFormat::MessagePack,
    );
    conformance(store.clone(), RecordFormat::MessagePack).await;

    // Sessions and user sets spread over the three primaries; logout-all finds every one.
    let now = now_ms();
    let mut keys = Vec::new();
    for _ in 0..30 {
        let key = SessionId::generate().unwrap().store_key();
        store
            .create(&key, &record("carol", Duration::from_secs(60)), now)
            .await
            .unwrap();
        keys.push(key);
    }
    let per_node = cluster.keys_per_node();
    assert!(
        per_node.iter().all(|n| *n > 0),
        "keys on every node: {per_node:?}"
    );
    let mut removed = store.destroy_user("carol").await.unwrap();
    removed.sort();
    keys.sort();
    assert_eq!(removed, keys);
    for key in &keys {
        assert_eq!(store.load(key, now).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_cluster_nodes_take_the_configured_password() {
    const PASSWORD: &str = "s3cret-for-every-node";
    let group = SentinelGroup::start_with(None, Some(PASSWORD));
    let topology = sentinel_topology(&group, "redis");
    let store = store_as(
        topology.clone(),
        RedisTls::default(),
        RecordFormat::MessagePack,
        Some(PASSWORD),
    );
    conformance(store, RecordFormat::MessagePack).await;
    let wrong = store_as(
        topology,
        RedisTls::default(),
        RecordFormat::MessagePack,
        Some("wrong"),
    );
    assert!(wrong.ping().await.is_err(), "a wrong password was accepted");

    let cluster = RedisCluster::start_with(None, Some(PASSWORD));
    let topology = cluster_topology(&cluster, "redis");
    let store = store_as(
        topology.clone(),
        RedisTls::default(),
        RecordFormat::MessagePack,
        Some(PASSWORD),
    );
    conformance(store, RecordFormat::MessagePack).await;
    let wrong = store_as(
        topology,
        RedisTls::default(),
        RecordFormat::MessagePack,
        None,
    );
    assert!(wrong.ping().await.is_err(), "no password was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms_on_a_cluster_over_tls() {
    let tls = TlsFiles::generate();
    let cluster = RedisCluster::start(Some(&tls));
    let store = store_on(
        cluster_topology(&cluster, "rediss"),
        tls_settings(&tls),
        RecordFormat::MessagePack,
    );
    conformance(store, RecordFormat::MessagePack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_follow_the_design_and_hold_no_usable_id() {
    let server = RedisServer::start();
    let store = redis_store(&server, RecordFormat::MessagePack);
    let sessions = service(&store, settings(RecordFormat::MessagePack));
    let login = Login {
        sub: "alice".into(),
        claims: claims(json!({"email": "a@x"})),
        provider: None,
    };
    let (id, rec) = sessions.login(None, &login, now_ms()).await.unwrap();

    let mut conn = server.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let session_key = KeySchema::new("sg:").session(&id.store_key());
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, vec![session_key.clone(), "sg:u:alice".to_string()]);

    let raw: Vec<u8> = redis::cmd("GET")
        .arg(&session_key)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        SessionRecord::decode(&raw, RecordFormat::MessagePack).unwrap(),
        rec
    );
    let cookie = id.encode();
    assert!(
        !keys.iter().any(|k| k.contains(&cookie)),
        "a key holds the raw id"
    );
    assert!(
        !String::from_utf8_lossy(&raw).contains(&cookie),
        "the record holds the raw id"
    );

    // TTL runs to the earlier deadline (idle: 30 min), the user set to the absolute one
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&session_key)
        .query(&mut conn)
        .unwrap();
    assert!(ttl > 29 * 60_000 && ttl <= 30 * 60_000, "session TTL {ttl}");
    let set_ttl: i64 = redis::cmd("PTTL")
        .arg(KeySchema::new("sg:").user("alice"))
        .query(&mut conn)
        .unwrap();
    assert!(
        set_ttl > 11 * 3_600_000 && set_ttl <= 12 * 3_600_000,
        "user set TTL {set_ttl}"
    );
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(KeySchema::new("sg:").user("alice"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(members, vec![id.store_key().as_str().to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotates_and_destroys_the_previous_session() {
    for store in [
        Arc::new(MemoryStore::new(100)) as Arc<dyn SessionStore>,
        redis_store(&RedisServer::start(), RecordFormat::MessagePack),
    ] {
        let sessions = service(&store, settings(RecordFormat::MessagePack));
        let login = Login {
            sub: "alice".into(),
            claims: Default::default(),
            provider: None,
        };
        let (first, rec) = sessions.login(None, &login, now_ms()).await.unwrap();
        let first_key = first.store_key();
        let (second, _) = sessions
            .login(Some((&first_key, Some(rec.sub.as_str()))), &login, now_ms())
            .await
            .unwrap();
        assert_ne!(first, second);
        assert_eq!(store.load(&first_key, now_ms()).await.unwrap(), None);
        assert!(store
            .load(&second.store_key(), now_ms())
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            store.user_sessions("alice", now_ms()).await.unwrap(),
            vec![second.store_key()]
        );
    }
}

#[tokio::test]
async fn memory_store_is_bounded_and_sweeps() {
    let store = MemoryStore::new(2);
    let now = now_ms();
    let short = record("a", Duration::from_millis(50));
    store
        .create(&SessionId::generate().unwrap().store_key(), &short, now)
        .await
        .unwrap();
    store
        .create(
            &SessionId::generate().unwrap().store_key(),
            &record("b", Duration::from_secs(60)),
            now,
        )
        .await
        .unwrap();
    let third = SessionId::generate().unwrap().store_key();
    assert!(matches!(
        store
            .create(&third, &record("c", Duration::from_secs(60)), now)
            .await,
        Err(StoreError::Full(2))
    ));
    // once the short session has expired, a create sweeps it and fits
    let later = now + 100;
    store
        .create(&third, &record("c", Duration::from_secs(60)), later)
        .await
        .unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(
        store.maintain(later + 120_000).await,
        2,
        "the sweep removes what has expired"
    );
    assert!(store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_fast_with_a_typed_error() {
    let mut server = RedisServer::start();
    let store = redis_store(&server, RecordFormat::MessagePack);
    store.ping().await.unwrap();
    server.kill();
    let started = std::time::Instant::now();
    let err = store
        .load(&SessionId::generate().unwrap().store_key(), now_ms())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(_) | StoreError::Timeout(_)),
        "{err:?}"
    );
    // A bound on hanging, not a performance figure: the deadline is 1 s in this config.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(store.ping().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counts_sessions_exactly_when_few_and_from_a_sample_when_many() {
    let server = RedisServer::start();
    let store = redis_store(&server, RecordFormat::MessagePack);
    let sessions = service(&store, settings(RecordFormat::MessagePack));
    for sub in ["alice", "bob", "carol"] {
        let login = Login {
            sub: sub.into(),
            claims: claims(json!({})),
            provider: None,
        };
        sessions.login(None, &login, now_ms()).await.unwrap();
    }
    let mut conn = server.connection();
    let mut pipe = redis::pipe();
    for i in 0..5 {
        pipe.set(format!("other:{i}"), "x").ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    // 3 sessions, 3 user sets, 5 other keys: the whole keyspace is scanned, exactly.
    assert_eq!(store.count(now_ms()).await.unwrap(), 3);

    // 60,011 keys, half of them sessions: more than the sample reads.
    let mut pipe = redis::pipe();
    for i in 0..30_000 {
        let filler = sessiongate::session::StoreKey::from_stored(format!("filler{i}"));
        pipe.set(KeySchema::new("sg:").session(&filler), "x")
            .ignore();
        pipe.set(format!("other:filler{i}"), "x").ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    let estimate = store.count(now_ms()).await.unwrap();
    // About 10,000 keys sampled: one standard deviation is about 300 sessions.
    assert!(
        (27_000..33_000).contains(&estimate),
        "estimated {estimate} sessions for 30,003"
    );
}
