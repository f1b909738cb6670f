//! Session affinity through the real binary and three real upstreams: a session stays on one
//! backend, moves to exactly one other when its backend dies, comes back when it recovers;
//! anonymous requests spread over every backend.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::config::COOKIE;
use common::*;
use reqwest::StatusCode;

struct Farm {
    backends: Vec<EchoUpstream>,
    proxy: Proxy,
    http: reqwest::Client,
}

impl Farm {
    async fn start() -> Self {
        Self::start_with("health_check = \"tcp\"\nhealth_interval = \"200ms\"").await
    }

    async fn start_with(upstream_extra: &str) -> Self {
        let mut backends = Vec::new();
        for name in ["a", "b", "c"] {
            backends.push(EchoUpstream::start(name).await);
        }
        let mut config = TestConfig::memory(backends[0].addr).standard_routes();
        config.upstreams = backends.iter().map(|b| b.addr).collect();
        config.upstream_extra = upstream_extra.into();
        let proxy = Proxy::start(&config.to_toml());
        Farm {
            backends,
            proxy,
            http: client(),
        }
    }

    /// Which backend answered.
    async fn landed(&self, path: &str, cookie: Option<&str>) -> String {
        let mut req = self
            .http
            .get(self.proxy.url(path))
            .timeout(Duration::from_secs(10));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("{COOKIE}={c}"));
        }
        let resp = req.send().await.expect("the proxy answers");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Echo>().await.expect("an echo").upstream
    }

    async fn login(&self, sub: &str) -> String {
        let resp = self
            .http
            .get(self.proxy.url("/login"))
            .header(
                "x-echo-set-x-sessiongate-login",
                format!(r#"{{"sub":"{sub}"}}"#),
            )
            .send()
            .await
            .unwrap();
        set_cookie_value(resp.headers(), COOKIE).expect("a session cookie")
    }

    /// The set of backends 100 requests of this session reached.
    async fn spread(&self, cookie: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        for _ in 0..100 {
            seen.insert(self.landed("/", Some(cookie)).await);
        }
        seen
    }

    /// Polls until every one of 10 requests lands on a single backend other than `not`.
    async fn settle(&self, cookie: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut seen = HashSet::new();
            for _ in 0..10 {
                seen.insert(self.landed("/", Some(cookie)).await);
            }
            if seen.len() == 1 {
                let only = seen.into_iter().next().unwrap();
                if want(&only) {
                    return only;
                }
            }
            assert!(Instant::now() < deadline, "requests did not settle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sticks_to_one_backend_moves_once_and_comes_back() {
    let mut farm = Farm::start().await;
    let cookie = farm.login("alice").await;
    let home = farm.spread(&cookie).await;
    assert_eq!(
        home.len(),
        1,
        "100 requests of one session on one backend: {home:?}"
    );
    let home = home.into_iter().next().unwrap();

    // Kill the home backend: the session moves, to exactly one other backend.
    let index = farm.backends.iter().position(|b| b.name == home).unwrap();
    let addr = farm.backends[index].addr;
    farm.backends[index].stop().await;
    let moved = farm.spread(&cookie).await;
    assert_eq!(moved.len(), 1, "after the failure: {moved:?}");
    assert!(!moved.contains(&home));

    // Bring it back: once the health check sees it, the session returns home.
    farm.backends[index] = EchoUpstream::start_on(&home, addr).await;
    let back = farm.settle(&cookie, |b| b == home).await;
    assert_eq!(back, home);
    assert_eq!(farm.spread(&cookie).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_sessions_and_anonymous_requests_spread_over_every_backend() {
    let farm = Farm::start().await;
    let mut anonymous: HashMap<String, usize> = HashMap::new();
    for _ in 0..60 {
        *anonymous
            .entry(farm.landed("/public", None).await)
            .or_default() += 1;
    }
    assert_eq!(anonymous.len(), 3, "anonymous requests: {anonymous:?}");
    let mut homes = HashSet::new();
    for i in 0..30 {
        let cookie = farm.login(&format!("user{i}")).await;
        homes.insert(farm.landed("/", Some(&cookie)).await);
    }
    assert_eq!(
        homes.len(),
        3,
        "30 sessions should use every backend: {homes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_health_check_moves_sessions_off_a_failing_backend_and_back() {
    let farm = Farm::start_with(
        "health_check = \"http\"\nhealth_path = \"/healthz\"\nhealth_interval = \"200ms\"",
    )
    .await;
    let cookie = farm.login("alice").await;
    let home = farm.landed("/", Some(&cookie)).await;
    let backend = farm.backends.iter().find(|b| b.name == home).unwrap();
    // The port still accepts connections; only the HTTP check says it is unhealthy.
    backend.set_healthy(false);
    let moved = farm.settle(&cookie, |b| b != home).await;
    assert_ne!(moved, home);
    backend.set_healthy(true);
    assert_eq!(farm.settle(&cookie, |b| b == home).await, home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_affinity_keeps_every_session_of_a_user_on_one_backend() {
    let farm = Farm::start_with("affinity = \"sub\"\nhealth_check = \"none\"").await;
    let mut backends = HashSet::new();
    for _ in 0..8 {
        let cookie = farm.login("alice").await;
        backends.insert(farm.landed("/", Some(&cookie)).await);
    }
    assert_eq!(
        backends.len(),
        1,
        "alice's sessions were spread: {backends:?}"
    );
}
