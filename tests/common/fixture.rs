//! A running proxy in front of one echo upstream, on the memory store or a real redis-server,
//! with the request helpers the end-to-end tests share.

use std::time::Duration;

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use sessiongate::config::model::RecordFormat;
use sessiongate::session::{SessionId, SessionRecord};

use super::config::{COOKIE, KEY};
use super::{
    client, headers, set_cookie_value, verify, Echo, EchoUpstream, Proxy, RedisServer, TestConfig,
};

/// Which store the proxy runs on.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    Memory,
    Redis(RecordFormat),
}

pub struct Fixture {
    pub redis: Option<RedisServer>,
    pub upstream: EchoUpstream,
    pub proxy: Proxy,
    pub http: reqwest::Client,
}

/// One response, with the upstream's echo when the request reached it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub echo: Option<Echo>,
}

impl Reply {
    pub fn echo(&self) -> &Echo {
        self.echo
            .as_ref()
            .expect("the request reached the upstream")
    }

    /// The session cookie this response sets (`Some("")` when it clears it).
    pub fn session_cookie(&self) -> Option<String> {
        set_cookie_value(&self.headers, COOKIE)
    }

    /// The claims of the single assertion the upstream received, verified with the test key.
    pub fn claims(&self) -> Value {
        let tokens = self.echo().all("x-sessiongate-assertion");
        assert_eq!(
            tokens.len(),
            1,
            "exactly one assertion upstream: {:?}",
            self.echo().headers
        );
        verify(tokens[0])
    }
}


impl Fixture {
    /// Starts the upstream, the store and the proxy with the standard routes, after `adjust`.
    pub async fn start(store: Store, adjust: impl FnOnce(TestConfig) -> TestConfig) -> Self {
        let upstream = EchoUpstream::start("app").await;
        let redis = matches!(store, Store::Redis(_)).then(RedisServer::start);
        let mut config = match &redis {
            Some(r) => TestConfig::redis(upstream.addr, r.url()),
            None => TestConfig::memory(upstream.addr),
        }
        .standard_routes();
        if let Store::Redis(RecordFormat::Json) = store {
            config.format = "json";
        }
        let config = adjust(config);
        let proxy = Proxy::start_with(&config.to_toml(), &config.files, &[]);
        Fixture {
            redis,
            upstream,
            proxy,
            http: client(),
        }
    }

    pub fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("this fixture runs on Redis")
    }

    pub fn redis_mut(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("this fixture runs on Redis")
    }

    pub async fn send(&self, path: &str, h: HeaderMap) -> Reply {
        let resp = self
            .http
            .get(self.proxy.url(path))
            .headers(h)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the proxy answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Reply {
            status,
            headers,
            echo: serde_json::from_slice(&body).ok(),
        }
    }

    /// GET `path` with the session cookie `cookie` (if any) and `extra` headers.
    pub async fn request(&self, path: &str, cookie: Option<&str>, extra: &[(&str, &str)]) -> Reply {
        let mut h = headers(extra);
        if let Some(c) = cookie {
            h.append(
                "cookie",
                format!("{COOKIE}={c}").parse().expect("a cookie header"),
            );
        }
        self.send(path, h).await
    }

    /// Repeats a request until it answers `status` (for state that settles asynchronously,
    /// such as the cache switching off when Redis dies); panics after 5 s.
    pub async fn wait_for_status(
        &self,
        path: &str,
        cookie: Option<&str>,
        status: StatusCode,
    ) -> Reply {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let reply = self.request(path, cookie, &[]).await;
            if reply.status == status {
                return reply;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} still answers {} instead of {status}",
                reply.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Logs in through the public /login route (the echo app answers with the control
    /// header), carrying `cookie` if given.
    pub async fn login_with(&self, login_json: &str, cookie: Option<&str>) -> Reply {
        self.request(
            "/login",
            cookie,
            &[("x-echo-set-x-sessiongate-login", login_json)],
        )
        .await
    }

    /// A request on `path` whose response (from the echo app) ends the session: `scope` is
    /// "current" or "all".
    pub async fn logout(&self, path: &str, cookie: &str, scope: &str) -> Reply {
        self.request(
            path,
            Some(cookie),
            &[("x-echo-set-x-sessiongate-logout", scope)],
        )
        .await
    }

    /// Logs `sub` in with an email and roles; returns the session cookie's value.
    pub async fn login(&self, sub: &str) -> String {
        let json = format!(r#"{{"sub":"{sub}","email":"{sub}@example.com","roles":["user"]}}"#);
        let reply = self.login_with(&json, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply
            .session_cookie()
            .expect("login sets the session cookie")
    }

    /// The record Redis holds for this cookie.
    pub fn stored(&self, cookie: &str, format: RecordFormat) -> Option<SessionRecord> {
        let key = SessionId::parse(cookie.as_bytes())?.store_key();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("sg:s:{}", key.as_str()))
            .query(&mut self.redis().connection())
            .ok()?;
        raw.map(|r| SessionRecord::decode(&r, format).expect("a decodable record"))
    }
}
