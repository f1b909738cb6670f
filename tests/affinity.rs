//! Session affinity through the real binary and three real upstreams: a session stays on one
//! backend, moves to exactly one other when its backend dies, comes back when it recovers;
//! anonymous requests spread over every backend.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::config::COOKIE;
use common::harness::Upstream;
use common::*;
use reqwest::StatusCode;

/// The proxy in front of three echo upstreams, "a", "b" and "c".
struct Farm {
    h: Running,
}

impl Farm {
    async fn start() -> Self {
        Self::start_with(|u| u.health_check("tcp").health_interval("200ms")).await
    }

    async fn start_with(upstream: impl FnOnce(Upstream) -> Upstream) -> Self {
        let h = Harness::new()
            .echo_backends(&["a", "b", "c"])
            .upstream(upstream)
            .start()
            .await;
        Farm { h }
    }

    /// Which backend answered.
    async fn landed(&self, path: &str, cookie: Option<&str>) -> String {
        let reply = self.h.get(path).maybe_cookie(cookie).send().await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.echo().upstream.clone()
    }

    async fn login(&self, sub: &str) -> String {
        let reply = self
            .h
            .login_with(&format!(r#"{{"sub":"{sub}"}}"#), None)
            .await;
        set_cookie_value(&reply.headers, COOKIE).expect("a session cookie")
    }

    /// The set of backends 100 requests of this session reached.
    async fn spread(&self, cookie: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        for _ in 0..100 {
            seen.insert(self.landed("/", Some(cookie)).await);
        }
        seen
    }

    /// Polls until every one of 10 requests lands on a single backend that `want`s.
    async fn settle(&self, cookie: &str, want: impl Fn(&str) -> bool) -> String {
        let want = &want;
        eventually_async(
            Duration::from_secs(10),
            "requests did not settle",
            || async move {
                let mut seen = HashSet::new();
                for _ in 0..10 {
                    seen.insert(self.landed("/", Some(cookie)).await);
                }
                let only = (seen.len() == 1).then(|| seen.into_iter().next().unwrap());
                only.filter(|b| want(b))
            },
        )
        .await
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
    let index = farm.h.backends.iter().position(|b| b.name == home).unwrap();
    let addr = farm.h.backends[index].addr;
    farm.h.backends[index].stop().await;
    let moved = farm.spread(&cookie).await;
    assert_eq!(moved.len(), 1, "after the failure: {moved:?}");
    assert!(!moved.contains(&home));

    // Bring it back: once the health check sees it, the session returns home.
    farm.h.backends[index] = EchoUpstream::start_on(&home, addr).await;
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
    let farm = Farm::start_with(|u| {
        u.health_check("http")
            .health_path("/healthz")
            .health_interval("200ms")
    })
    .await;
    let cookie = farm.login("alice").await;
    let home = farm.landed("/", Some(&cookie)).await;
    let backend = farm.h.backends.iter().find(|b| b.name == home).unwrap();
    // The port still accepts connections; only the HTTP check says it is unhealthy.
    backend.set_healthy(false);
    let moved = farm.settle(&cookie, |b| b != home).await;
    assert_ne!(moved, home);
    backend.set_healthy(true);
    assert_eq!(farm.settle(&cookie, |b| b == home).await, home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_affinity_keeps_every_session_of_a_user_on_one_backend() {
    let farm = Farm::start_with(|u| u.affinity("sub").health_check("none")).await;
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
