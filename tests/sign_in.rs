//! Sign-in at the edge against a real OpenID provider (panva's `oidc-provider`, see
//! `tests/common/oidc.rs`): the authorization-code flow with PKCE end to end over real
//! sockets, the identity the app then receives, token refresh once per session across
//! instances, RP-initiated and back-channel logout, and every way a callback, a token or a
//! logout token can be wrong.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::oidc::{Client, OidcProvider};
use common::{eventually_async, Echo, EchoUpstream, Ports, Proxy, RedisServer};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{ACCEPT, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

const SESSION_COOKIE: &str = "sid";

/// A browser: a cookie jar, redirects followed by hand so each hop can be seen.
struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
}

/// One response and the hops that led to it.
struct Visit {
    status: StatusCode,
    url: Url,
    body: String,
    /// (URL, status) of every response on the way, the last included.
    hops: Vec<(Url, StatusCode)>,
}

impl Visit {
    fn echo(&self) -> Echo {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not the echo app's answer ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.echo().get(name).map(String::from)
    }

    /// How many times the browser came back to the callback on the way.
    fn callbacks(&self) -> usize {
        self.hops
            .iter()
            .filter(|(u, _)| u.path().ends_with("/callback"))
            .count()
    }

    fn went_through(&self, needle: &str) -> bool {
        self.hops.iter().any(|(u, _)| u.as_str().contains(needle))
    }
}

impl Browser {
    fn new() -> Self {
        let jar = Arc::new(Jar::default());
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_provider(jar.clone())
                .build()
                .expect("client"),
            jar,
        }
    }

    /// GET `url` as a page load (Accept: text/html), following up to 20 redirects.
    async fn open(&self, url: &str) -> Visit {
        self.follow(
            self.http.get(url).header(ACCEPT, "text/html,*/*;q=0.8"),
            url,
        )
        .await
    }

    async fn follow(&self, first: reqwest::RequestBuilder, url: &str) -> Visit {
        let mut url = Url::parse(url).expect("a URL");
        let mut request = first;
        let mut hops = Vec::new();
        for _ in 0..20 {
            let reply = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let status = reply.status();
            hops.push((url.clone(), status));
            let location = reply
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(String::from);
            match location {
                Some(next) if status.is_redirection() => {
                    url = url.join(&next).expect("a location");
                    request = self
                        .http
                        .get(url.clone())
                        .header(ACCEPT, "text/html,*/*;q=0.8");
                }
                _ => {
                    let body = reply.text().await.unwrap_or_default();
                    return Visit {
                        status,
                        url,
                        body,
                        hops,
                    };
                }
            }
        }
        panic!("more than 20 redirects: {hops:?}");
    }

    /// The session cookie the jar holds for the proxy at `base`.
    fn session_cookie(&self, base: &str) -> Option<String> {
        let url = Url::parse(base).expect("a URL");
        let header = self.jar.cookies(&url)?;
        header.to_str().ok()?.split("; ").find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_string())
        })
    }
}

/// One proxy instance with its echo app, signing in at `provider`.
struct Edge {
    proxy: Proxy,
    _app: EchoUpstream,
    base: String,
}

/// The proxy's configuration: the echo app behind `/`, a public route, a staff-only route,
/// every page signing in with `corp`.
fn config(
    ports: Ports,
    app: std::net::SocketAddr,
    issuer: &str,
    client: &Client,
    store: &str,
    extra_provider: &str,
) -> (String, Vec<(String, String)>) {
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:{port}"]
threads = 2
admin_listen = "127.0.0.1:{admin}"

[session]
cookie_name = "{SESSION_COOKIE}"
secure = false
idle_timeout = "10m"
absolute_timeout = "1h"

[[session.cookie_keys]]
insecure_value = "sign-in-test-cookie-key-0123456789"

[store]
{store}

[identity]
issuer = "sessiongate"
signing_key_id = "k1"
insecure_signing_key = "{key}"

[identity.headers]
"X-Auth-User" = "sub"
"X-Auth-Email" = "email"
"X-Auth-Name" = "name"
"X-Auth-Groups" = "groups"

[[upstream]]
name = "app"
backends = ["{app}"]

[[identity_provider]]
name = "corp"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret_file = "{{dir}}/oidc-secret"
scopes = ["openid", "email", "profile", "groups"]
claims = ["name"]
timeout = "2s"
{extra_provider}

[[route]]
path_prefix = "/public"
upstream = "app"
auth = "public"

[[route]]
path_prefix = "/staff"
upstream = "app"
login = "corp"
allow_groups = ["staff"]

[[route]]
path_prefix = "/"
upstream = "app"
login = "corp"
"#,
        port = ports.port,
        admin = ports.admin_port,
        key = common::config::KEY,
        client_id = client.id,
    );
    (
        text,
        vec![("oidc-secret".to_string(), client.secret.clone())],
    )
}

async fn edge(
    ports: Ports,
    provider: &OidcProvider,
    client: &Client,
    store: &str,
    extra: &str,
) -> Edge {
    edge_at(ports, &provider.issuer, client, store, extra, |text| text).await
}

/// Like `edge`, for a provider at `issuer` (one that may not run), with the configuration
/// text changed by `adjust` before the proxy starts.
async fn edge_at(
    ports: Ports,
    issuer: &str,
    client: &Client,
    store: &str,
    extra: &str,
    adjust: impl FnOnce(String) -> String,
) -> Edge {
    let app = EchoUpstream::start("app").await;
    let (text, files) = config(ports, app.addr, issuer, client, store, extra);
    let proxy = Proxy::start_on_ports(&adjust(text), &files, &[], ports);
    Edge {
        base: format!("http://127.0.0.1:{}", ports.port),
        proxy,
        _app: app,
    }
}

/// A provider with one client for a proxy on `ports`, and that proxy on the memory store.
async fn one_edge(extra: &str, options: Value) -> (OidcProvider, Edge) {
    one_edge_with(|_| extra.to_string(), options).await
}

/// Like `one_edge`, with provider settings that name the proxy's ports.
async fn one_edge_with(
    extra: impl FnOnce(Ports) -> String,
    options: Value,
) -> (OidcProvider, Edge) {
    let ports = Ports::free();
    let client = Client::for_proxy("sg", ports.port);
    let provider = OidcProvider::start(std::slice::from_ref(&client), options);
    let edge = edge(
        ports,
        &provider,
        &client,
        "kind = \"memory\"",
        &extra(ports),
    )
    .await;
    (provider, edge)
}

fn assertion_claims(visit: &Visit) -> Value {
    common::verify(
        &visit
            .header("x-sessiongate-assertion")
            .expect("an assertion upstream"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_at_the_edge_and_the_app_reads_the_providers_identity() {
    let (provider, edge) = one_edge("", json!({})).await;
    let browser = Browser::new();

    let visit = browser
        .open(&format!("{}/reports/q3?year=2026&x=a%20b", edge.base))
        .await;
    assert_eq!(
        visit.status,
        StatusCode::OK,
        "hops: {:?}\n{}",
        visit.hops,
        visit.body
    );
    // Through the provider and back to the very page asked for.
    assert!(
        visit.went_through(&format!("{}/auth", provider.issuer)),
        "{:?}",
        visit.hops
    );
    assert!(
        visit.went_through("/_sessiongate/oidc/callback"),
        "{:?}",
        visit.hops
    );
    assert_eq!(
        visit.url.as_str(),
        format!("{}/reports/q3?year=2026&x=a%20b", edge.base)
    );
    assert_eq!(visit.echo().path, "/reports/q3?year=2026&x=a%20b");
    assert_eq!(visit.header("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(
        visit.header("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        visit.header("x-auth-name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(visit.header("x-auth-groups").as_deref(), Some("staff"));
    let claims = assertion_claims(&visit);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], json!(["staff"]));
    // The provider's tokens never reach the browser or the app.
    let cookie = browser
        .session_cookie(&edge.base)
        .expect("a session cookie");
    assert!(
        cookie.len() < 120,
        "the cookie is an id, not a token: {cookie}"
    );
    for header in ["authorization", "x-auth-token"] {
        assert_eq!(visit.header(header), None);
    }

    // Signed in: the next page needs no trip to the provider.
    let again = browser.open(&format!("{}/other", edge.base)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.hops.len(), 1);
    assert_eq!(again.header("x-auth-user").as_deref(), Some("alice"));
    // The staff route admits alice (group staff).
    let staff = browser.open(&format!("{}/staff/board", edge.base)).await;
    assert_eq!(staff.status, StatusCode::OK);

    // An API client without a session gets 401, not a redirect; a POST is never redirected.
    let api = reqwest::Client::new()
        .get(format!("{}/reports", edge.base))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let post = common::client()
        .post(format!("{}/reports", edge.base))
        .header(ACCEPT, "text/html")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);

    // Signing in again in the same browser rotates the session id (fixation protection):
    // the old cookie stops working.
    let old = cookie.clone();
    let start = browser
        .open(&format!(
            "{}/_sessiongate/oidc/start?next=/again",
            edge.base
        ))
        .await;
    assert_eq!(start.status, StatusCode::OK);
    assert_eq!(start.url.path(), "/again");
    let new = browser.session_cookie(&edge.base).expect("a new cookie");
    assert_ne!(new, old);
    let stale = with_cookie(format!("{}/x", edge.base), &old)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    // No line of the log holds the session id, the code or a token.
    let logs = edge.proxy.logs();
    assert!(!logs.contains(&new) && !logs.contains(&old));
    assert!(!logs.contains("code="), "a code in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_the_route_does_not_admit_gets_403_and_no_loop() {
    let (provider, edge) = one_edge("", json!({})).await;
    provider
        .user(
            "bob",
            "bob@contractor.example",
            "Bob Contractor",
            &["contractors"],
        )
        .await;
    let browser = Browser::new();
    let visit = browser.open(&format!("{}/staff/board", edge.base)).await;
    assert_eq!(visit.status, StatusCode::FORBIDDEN, "{:?}", visit.hops);
    assert!(visit.body.contains("not allowed"), "{}", visit.body);
    // Signed in (elsewhere he may go), and asking again is a 403 at once, not a new sign-in.
    let other = browser.open(&format!("{}/home", edge.base)).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("x-auth-user").as_deref(), Some("bob"));
    let again = browser.open(&format!("{}/staff/board", edge.base)).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert_eq!(again.hops.len(), 1, "no redirect: {:?}", again.hops);
}

/// The authorization request the proxy sends a browser to, without following it.
async fn authorization_request(browser: &Browser, url: &str) -> Url {
    let reply = browser
        .http
        .get(url)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FOUND);
    Url::parse(reply.headers()[LOCATION].to_str().unwrap()).unwrap()
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Follows the provider's side of a started sign-in up to (not into) the callback: the
/// callback URL with its code and state.
async fn callback_url(browser: &Browser, authorize: &Url) -> Url {
    let mut url = authorize.clone();
    for _ in 0..10 {
        if url.path().ends_with("/_sessiongate/oidc/callback") {
            return url;
        }
        let reply = browser.http.get(url.clone()).send().await.unwrap();
        let location = reply.headers()[LOCATION].to_str().unwrap().to_string();
        url = url.join(&location).unwrap();
    }
    panic!("the provider never sent the browser back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_sends_pkce_state_and_nonce_and_refuses_forged_replayed_and_foreign_callbacks() {
    let (provider, edge) = one_edge("", json!({})).await;
    let browser = Browser::new();
    let authorize = authorization_request(&browser, &format!("{}/page", edge.base)).await;
    assert_eq!(query(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&authorize, "code_challenge").map(|c| c.len()),
        Some(43)
    );
    assert!(query(&authorize, "nonce").is_some_and(|n| n.len() >= 43));
    let state = query(&authorize, "state").expect("a state");
    assert!(state.len() >= 43);
    assert_eq!(
        query(&authorize, "scope").as_deref(),
        Some("openid email profile groups")
    );

    // A callback from another browser (login CSRF): refused, and it burns the flow.
    let callback = callback_url(&browser, &authorize).await;
    let stranger = Browser::new();
    let foreign = stranger.open(callback.as_str()).await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST, "{}", foreign.body);
    assert!(stranger.session_cookie(&edge.base).is_none());
    let late = browser.open(callback.as_str()).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "the flow was used up");
    assert!(browser.session_cookie(&edge.base).is_none());

    // A forged state: refused.
    let forged = browser
        .open(&format!(
            "{}/_sessiongate/oidc/callback?code=abc&state=forged-state-value",
            edge.base
        ))
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    let no_state = browser
        .open(&format!(
            "{}/_sessiongate/oidc/callback?code=abc",
            edge.base
        ))
        .await;
    assert_eq!(no_state.status, StatusCode::BAD_REQUEST);

    // A genuine callback works once; replayed, it is refused and changes nothing.
    let authorize = authorization_request(&browser, &format!("{}/page", edge.base)).await;
    let callback = callback_url(&browser, &authorize).await;
    let done = browser.open(callback.as_str()).await;
    assert_eq!(done.status, StatusCode::OK, "{:?} {}", done.hops, done.body);
    let cookie = browser.session_cookie(&edge.base).expect("signed in");
    let replay = browser.open(callback.as_str()).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(browser.session_cookie(&edge.base), Some(cookie));

    // Alice's used code put into another browser's flow (code injection): the provider refuses
    // it, and the browser goes round the provider once more and is signed in as whoever signs
    // in there (mallory), never as the code's user.
    provider
        .user("mallory", "mallory@example.com", "Mallory", &[])
        .await;
    let fresh = Browser::new();
    let authorize = authorization_request(&fresh, &format!("{}/page", edge.base)).await;
    let new_state = query(&authorize, "state").unwrap();
    let code = query(&callback, "code").unwrap();
    let reused = fresh
        .open(&format!(
            "{}/_sessiongate/oidc/callback?code={code}&state={new_state}",
            edge.base
        ))
        .await;
    assert_eq!(
        reused.status,
        StatusCode::OK,
        "{:?} {}",
        reused.hops,
        reused.body
    );
    assert!(reused.went_through("/interaction/"), "{:?}", reused.hops);
    assert_eq!(reused.header("x-auth-user").as_deref(), Some("mallory"));

    // Another origin as the place to return to: the browser lands on `/` instead.
    let evil = Browser::new();
    for next in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let visit = evil
            .open(&format!(
                "{}/_sessiongate/oidc/start?next={}",
                edge.base,
                form_urlencoded(next)
            ))
            .await;
        assert_eq!(visit.status, StatusCode::OK);
        assert_eq!(visit.url.as_str(), format!("{}/", edge.base), "{next}");
    }
}

fn form_urlencoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_signing_in_at_once_both_end_signed_in() {
    let (_provider, edge) = one_edge("", json!({})).await;
    let browser = Browser::new();
    let (one, two) = (
        format!("{}/tab/1", edge.base),
        format!("{}/tab/2", edge.base),
    );
    let (a, b) = tokio::join!(browser.open(&one), browser.open(&two));
    for (visit, path) in [(&a, "/tab/1"), (&b, "/tab/2")] {
        assert_eq!(
            visit.status,
            StatusCode::OK,
            "{:?} {}",
            visit.hops,
            visit.body
        );
        assert_eq!(visit.url.path(), path);
        assert_eq!(visit.header("x-auth-user").as_deref(), Some("alice"));
    }
    let after = browser.open(&format!("{}/tab/3", edge.base)).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.hops.len(), 1);
}

/// One GET without following: where it sends the browser.
async fn next_hop(browser: &Browser, url: &Url) -> Url {
    let reply = browser.http.get(url.clone()).send().await.unwrap();
    assert!(reply.status().is_redirection(), "{url}: {}", reply.status());
    url.join(reply.headers()[LOCATION].to_str().unwrap())
        .unwrap()
}

/// Two tabs whose sign-ins interleave at the provider, step by step: both are at the provider's
/// sign-in before either comes back, so the second one replaces the grant the provider session
/// issued the first tab's code under, and the provider refuses that code. The first tab is sent
/// once more through the provider (now without a prompt) and ends signed in, like the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_whose_code_a_parallel_sign_in_voided_is_sent_round_once_more() {
    let (provider, edge) = one_edge("", json!({})).await;
    let browser = Browser::new();
    let one = authorization_request(&browser, &format!("{}/tab/1", edge.base)).await;
    let two = authorization_request(&browser, &format!("{}/tab/2", edge.base)).await;
    // Both tabs reach the provider's sign-in, then both finish it, the first one first.
    let (one, two) = (
        next_hop(&browser, &one).await,
        next_hop(&browser, &two).await,
    );
    assert!(one.path().starts_with("/interaction/"), "{one}");
    assert!(two.path().starts_with("/interaction/"), "{two}");
    let (one, two) = (
        next_hop(&browser, &one).await,
        next_hop(&browser, &two).await,
    );
    let (one, two) = (
        callback_url(&browser, &one).await,
        callback_url(&browser, &two).await,
    );
    let first = browser.open(one.as_str()).await;
    assert_eq!(
        first.status,
        StatusCode::OK,
        "{:?} {}",
        first.hops,
        first.body
    );
    assert_eq!(first.url.path(), "/tab/1");
    assert_eq!(first.header("x-auth-user").as_deref(), Some("alice"));
    // The code was refused once and the tab went round once more, without a prompt.
    assert_eq!(first.callbacks(), 2, "{:?}", first.hops);
    assert!(!first.went_through("/interaction/"), "{:?}", first.hops);
    let second = browser.open(two.as_str()).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.hops);
    assert_eq!(second.url.path(), "/tab/2");
    assert_eq!(provider.token_requests("authorization_code").await, 3);
    let logs = edge.proxy.logs();
    assert!(
        logs.contains("refused the sign-in's code; starting the sign-in once more"),
        "{logs}"
    );
    assert!(logs.contains("answered 400 (invalid_grant)"), "{logs}");
}

/// Signs a fresh browser in; the visit's status when the provider's answer was tampered with.
async fn sign_in_with(provider: &OidcProvider, edge: &Edge, mode: &str) -> (Browser, Visit) {
    provider.tamper(mode).await;
    let browser = Browser::new();
    let visit = browser.open(&format!("{}/page", edge.base)).await;
    (browser, visit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_id_token_is_refused_with_a_page_and_no_session() {
    let (provider, edge) = one_edge("", json!({})).await;
    for mode in [
        "wrong_aud",
        "wrong_iss",
        "expired",
        "future_iat",
        "wrong_nonce",
        "no_nonce",
        "alg_none",
        "unknown_key",
        "hs256",
    ] {
        let (browser, visit) = sign_in_with(&provider, &edge, mode).await;
        assert_eq!(
            visit.status,
            StatusCode::BAD_GATEWAY,
            "{mode}: {}",
            visit.body
        );
        assert!(
            visit.body.contains("could not be verified"),
            "{mode}: {}",
            visit.body
        );
        assert!(
            browser.session_cookie(&edge.base).is_none(),
            "{mode}: a session"
        );
    }
    // The provider refusing the code (invalid_grant): the browser goes round once more; the
    // provider refusing that code too gets a page and no session, never a loop.
    provider
        .control("tamper", json!({"mode": "error", "times": 2}))
        .await;
    let browser = Browser::new();
    let visit = browser.open(&format!("{}/page", edge.base)).await;
    assert_eq!(visit.status, StatusCode::BAD_GATEWAY, "{:?}", visit.hops);
    assert!(visit.body.contains("Sign-in failed"), "{}", visit.body);
    assert_eq!(visit.callbacks(), 2, "{:?}", visit.hops);
    assert!(browser.session_cookie(&edge.base).is_none());
    // Refused once only: the second round signs in.
    let (browser, visit) = sign_in_with(&provider, &edge, "error").await;
    assert_eq!(
        visit.status,
        StatusCode::OK,
        "{:?} {}",
        visit.hops,
        visit.body
    );
    assert_eq!(visit.callbacks(), 2, "{:?}", visit.hops);
    assert!(browser.session_cookie(&edge.base).is_some());
    // A provider clock 30 s fast is within the 60 s skew: accepted.
    let (browser, visit) = sign_in_with(&provider, &edge, "iat_ahead_30s").await;
    assert_eq!(visit.status, StatusCode::OK, "clock skew: {}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_some());
    // After all that, an honest answer still signs in.
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(visit.status, StatusCode::OK, "{}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_some());
    let logs = edge.proxy.logs();
    for reason in [
        "aud",
        "nonce",
        "iat",
        "algorithm",
        "no key of the provider verifies",
    ] {
        assert!(logs.contains(reason), "no log line names {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_at_the_provider_is_followed_after_one_fetch_of_its_keys() {
    let (provider, edge) = one_edge("", json!({})).await;
    let (_, first) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(first.status, StatusCode::OK);
    provider.control("rotate", json!({})).await;
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(visit.status, StatusCode::OK, "{}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_some());
    let fetches = edge
        .proxy
        .log_lines_with("fetched the provider's signing keys");
    assert_eq!(
        fetches.len(),
        2,
        "one fetch at first, one for the new key: {fetches:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_hangs_or_refuses_gets_a_clear_page_within_the_deadline() {
    let (provider, edge) = one_edge("", json!({})).await;
    let started = std::time::Instant::now();
    let (browser, visit) = sign_in_with(&provider, &edge, "hang").await;
    assert_eq!(visit.status, StatusCode::GATEWAY_TIMEOUT, "{}", visit.body);
    assert!(visit.body.contains("did not answer in time"));
    assert!(browser.session_cookie(&edge.base).is_none());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the 2s deadline"
    );

    // The provider refusing the sign-in (error=access_denied on the callback).
    let browser = Browser::new();
    let authorize = authorization_request(&browser, &format!("{}/page", edge.base)).await;
    let state = query(&authorize, "state").unwrap();
    let denied = browser
        .open(&format!(
            "{}/_sessiongate/oidc/callback?error=access_denied&state={state}",
            edge.base
        ))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body.contains("access_denied"));
    assert!(browser.session_cookie(&edge.base).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_is_a_503_page_not_a_500() {
    let ports = Ports::free();
    let client = Client::for_proxy("sg", ports.port);
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let edge = edge_at(ports, &dead, &client, "kind = \"memory\"", "", |t| t).await;
    let browser = Browser::new();
    let visit = browser
        .open(&format!("http://127.0.0.1:{}/page", ports.port))
        .await;
    assert_eq!(
        visit.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        visit.body
    );
    assert!(visit.body.contains("cannot be reached"));
    assert!(edge.proxy.logs().contains("sign-in is unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rp_initiated_logout_ends_the_session_and_then_the_providers() {
    let (provider, edge) = one_edge_with(
        |ports| {
            format!(
                "post_logout_redirect_url = \"http://127.0.0.1:{}/public/bye\"",
                ports.port
            )
        },
        json!({}),
    )
    .await;
    let browser = Browser::new();
    assert_eq!(
        browser.open(&format!("{}/page", edge.base)).await.status,
        StatusCode::OK
    );
    let cookie = browser.session_cookie(&edge.base).unwrap();

    // Another site's page making the browser sign out (an image, a form, a link): asked, not
    // signed out.
    let logout_url = format!("{}/_sessiongate/oidc/logout", edge.base);
    for (method, header, value) in [
        (reqwest::Method::GET, "sec-fetch-site", "cross-site"),
        (reqwest::Method::GET, "sec-fetch-site", "same-site"),
        (reqwest::Method::POST, "origin", "https://evil.example"),
        (reqwest::Method::POST, "origin", "null"),
        (reqwest::Method::GET, "referer", "https://evil.example/page"),
        (
            reqwest::Method::GET,
            "referer",
            &format!("{}.evil.example/", edge.base),
        ),
    ] {
        let asked = browser
            .http
            .request(method.clone(), &logout_url)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(asked.status(), StatusCode::OK, "{method} {header}: {value}");
        assert!(asked.headers().get(SET_COOKIE).is_none());
        let html = asked.text().await.unwrap();
        assert!(
            html.contains("<form method=\"post\" action=\"/_sessiongate/oidc/logout\">"),
            "{html}"
        );
        let still = with_cookie(format!("{}/page", edge.base), &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(still.status(), StatusCode::OK, "{method} {header}: {value}");
    }
    let wrong = browser.http.delete(&logout_url).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    // HEAD is safe: it never signs out.
    let head = browser.http.head(&logout_url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let still = with_cookie(format!("{}/page", edge.base), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), StatusCode::OK, "after HEAD");

    // The page's button: a POST from this origin signs out.
    let out = browser
        .http
        .post(&logout_url)
        .header("origin", edge.base.as_str())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::FOUND);
    let cleared: Vec<_> = out
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with(&format!("{SESSION_COOKIE}=;"))),
        "{cleared:?}"
    );
    let end = Url::parse(out.headers()[LOCATION].to_str().unwrap()).unwrap();
    assert!(
        end.as_str()
            .starts_with(&format!("{}/session/end", provider.issuer)),
        "{end}"
    );
    assert!(query(&end, "id_token_hint").is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(query(&end, "client_id").as_deref(), Some("sg"));
    assert_eq!(
        query(&end, "post_logout_redirect_uri"),
        Some(format!("{}/public/bye", edge.base))
    );
    // The old cookie names no session any more.
    let stale = with_cookie(format!("{}/page", edge.base), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);

    // At the provider: the confirmation page, confirmed; the browser comes back to the
    // post-logout page.
    let page = browser.http.get(end.clone()).send().await.unwrap();
    let html = page.text().await.unwrap();
    let xsrf = html
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no xsrf in the provider's page: {html}"))
        .to_string();
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("/session/end/confirm")
        .replace("&amp;", "&");
    let confirm = browser
        .http
        .post(end.join(&action).unwrap())
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert!(confirm.status().is_redirection(), "{}", confirm.status());
    let back = confirm.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        back.starts_with(&format!("{}/public/bye", edge.base)),
        "{back}"
    );
    // Signed out at the provider too: the next sign-in goes through an interaction again.
    let again = browser.open(&format!("{}/page", edge.base)).await;
    assert!(again.went_through("/interaction/"), "{:?}", again.hops);
}

/// Two proxies on one Redis, each with the session cache, each a client of the provider.
async fn two_edges(extra: &str, options: Value) -> (OidcProvider, RedisServer, Edge, Edge) {
    let redis = RedisServer::start();
    let (pa, pb) = (Ports::free(), Ports::free());
    let (ca, cb) = (
        Client::for_proxy("sg", pa.port),
        Client::for_proxy("sg", pb.port),
    );
    // One client registered for both instances (as one app behind two proxies).
    let mut client = ca.clone();
    client.redirect_uris.extend(cb.redirect_uris.clone());
    client
        .post_logout_redirect_uris
        .extend(cb.post_logout_redirect_uris);
    let provider = OidcProvider::start(std::slice::from_ref(&client), options);
    let store = format!(
        "kind = \"redis\"\nurl = \"{}\"\n\n[cache]\nmax_staleness = \"60s\"",
        redis.url()
    );
    let a = edge(pa, &provider, &client, &store, extra).await;
    let b = edge(pb, &provider, &client, &store, extra).await;
    (provider, redis, a, b)
}

/// A request to `url` carrying the session cookie `cookie`, as an API client sends it.
fn with_cookie(url: String, cookie: &str) -> reqwest::RequestBuilder {
    common::client()
        .get(url)
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
}

async fn status_with_cookie(base: &str, cookie: &str) -> StatusCode {
    with_cookie(format!("{base}/page"), cookie)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_channel_logout_from_the_provider_ends_the_session_on_every_instance() {
    let (provider, _redis, a, b) = two_edges("", json!({})).await;
    let browser = Browser::new();
    assert_eq!(
        browser.open(&format!("{}/page", a.base)).await.status,
        StatusCode::OK
    );
    let cookie = browser.session_cookie(&a.base).unwrap();
    // The session serves on both instances (and each has it cached now).
    assert_eq!(status_with_cookie(&a.base, &cookie).await, StatusCode::OK);
    assert_eq!(status_with_cookie(&b.base, &cookie).await, StatusCode::OK);

    // The provider ends alice's session and tells the proxy, as Back-Channel Logout says.
    let sent = provider
        .control("backchannel", json!({"sub": "alice"}))
        .await;
    assert!(sent["sent"].as_u64().unwrap_or(0) >= 1, "{sent}");
    assert!(
        sent.to_string().contains("200"),
        "the proxy answered 200: {sent}"
    );
    for base in [&a.base, &b.base] {
        eventually_async(
            Duration::from_secs(5),
            "the session ends on every instance",
            || async { status_with_cookie(base, &cookie).await == StatusCode::UNAUTHORIZED },
        )
        .await;
    }
    assert!(a.proxy.logs().contains("back-channel logout"));
}

/// POSTs a logout token to the proxy; the status.
async fn post_logout_token(base: &str, token: &str) -> StatusCode {
    common::client()
        .post(format!("{base}/_sessiongate/oidc/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_logout_token_is_refused_and_a_replay_is_refused_once_used() {
    let (provider, edge) = one_edge("", json!({})).await;
    let browser = Browser::new();
    assert_eq!(
        browser.open(&format!("{}/page", edge.base)).await.status,
        StatusCode::OK
    );
    let cookie = browser.session_cookie(&edge.base).unwrap();
    let sid = provider.read("sid?sub=alice").await["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let token = |body: Value| {
        let provider = &provider;
        async move {
            let mut body = body;
            body["client_id"] = json!("sg");
            provider.control("logout-token", body).await["token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    for (what, body) in [
        (
            "signed by an unknown key",
            json!({"sid": sid, "key": "rogue"}),
        ),
        ("alg none", json!({"sid": sid, "alg": "none"})),
        (
            "for another client",
            json!({"sid": sid, "overrides": {"aud": "someone-else"}}),
        ),
        (
            "from another issuer",
            json!({"sid": sid, "overrides": {"iss": "http://localhost:1"}}),
        ),
        (
            "without the event",
            json!({"sid": sid, "remove": ["events"]}),
        ),
        (
            "with a wrong event",
            json!({"sid": sid, "overrides": {"events": {"http://example/other": {}}}}),
        ),
        (
            "with a nonce",
            json!({"sid": sid, "overrides": {"nonce": "n"}}),
        ),
        ("without jti", json!({"sid": sid, "remove": ["jti"]})),
        ("without sub or sid", json!({})),
        (
            "issued long ago",
            json!({"sid": sid, "overrides": {"iat": 1_000_000_000}}),
        ),
        (
            "issued in the future",
            json!({"sid": sid, "overrides": {"iat": 4_000_000_000u64}}),
        ),
        (
            "expired",
            json!({"sid": sid, "overrides": {"exp": 1_000_000_000}}),
        ),
        (
            "typed as something else",
            json!({"sid": sid, "typ": "at+jwt"}),
        ),
    ] {
        let t = token(body).await;
        assert_eq!(
            post_logout_token(&edge.base, &t).await,
            StatusCode::BAD_REQUEST,
            "{what}"
        );
        assert_eq!(
            status_with_cookie(&edge.base, &cookie).await,
            StatusCode::OK,
            "{what} ended the session"
        );
    }
    assert_eq!(
        post_logout_token(&edge.base, "not.a.token").await,
        StatusCode::BAD_REQUEST
    );
    let no_form = common::client()
        .post(format!(
            "{}/_sessiongate/oidc/backchannel-logout",
            edge.base
        ))
        .json(&json!({"logout_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_form.status(), StatusCode::BAD_REQUEST);
    let get = common::client()
        .get(format!(
            "{}/_sessiongate/oidc/backchannel-logout",
            edge.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);

    // A good one by sid ends the session; the same token again is a replay.
    let good = token(json!({"sid": sid, "sub": "alice"})).await;
    assert_eq!(post_logout_token(&edge.base, &good).await, StatusCode::OK);
    assert_eq!(
        status_with_cookie(&edge.base, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_logout_token(&edge.base, &good).await,
        StatusCode::BAD_REQUEST
    );

    // By subject alone: every session of the user from this provider ends.
    let one = Browser::new();
    let two = Browser::new();
    assert_eq!(
        one.open(&format!("{}/page", edge.base)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        two.open(&format!("{}/page", edge.base)).await.status,
        StatusCode::OK
    );
    let by_sub = token(json!({"sub": "alice"})).await;
    assert_eq!(post_logout_token(&edge.base, &by_sub).await, StatusCode::OK);
    for b in [&one, &two] {
        let c = b.session_cookie(&edge.base).unwrap();
        assert_eq!(
            status_with_cookie(&edge.base, &c).await,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_once_per_session_across_concurrent_requests_and_instances() {
    let (provider, _redis, a, b) = two_edges(
        "refresh_interval = \"3s\"\npass_access_token = true",
        json!({"access_token_ttl": 600}),
    )
    .await;
    let browser = Browser::new();
    let first = browser.open(&format!("{}/page", a.base)).await;
    assert_eq!(first.status, StatusCode::OK);
    let before = first
        .header("authorization")
        .expect("the access token upstream");
    assert!(before.starts_with("Bearer "));
    let cookie = browser.session_cookie(&a.base).unwrap();
    assert_eq!(provider.token_requests("refresh_token").await, 0);

    tokio::time::sleep(Duration::from_millis(3300)).await;
    let requests = (0..16).map(|i| {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let cookie = cookie.clone();
        async move {
            let reply = with_cookie(format!("{base}/page"), &cookie)
                .send()
                .await
                .unwrap();
            reply.status()
        }
    });
    for status in futures_util::future::join_all(requests).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        provider.token_requests("refresh_token").await,
        1,
        "one refresh for all"
    );
    // The new access token reaches the app, from either instance.
    let after = eventually_value(&a.base, &cookie, &before).await;
    assert_ne!(after, before);
    let via_b = with_cookie(format!("{}/page", b.base), &cookie)
        .send()
        .await
        .unwrap();
    let echo: Echo = via_b.json().await.unwrap();
    assert_eq!(echo.get("authorization"), Some(after.as_str()));
    // A client's own Authorization never passes on a session that carries a token.
    let spoof = with_cookie(format!("{}/page", a.base), &cookie)
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    let echo: Echo = spoof.json().await.unwrap();
    assert_eq!(echo.get("authorization"), Some(after.as_str()));

    // The provider refusing the next refresh ends the session cleanly: the browser is sent
    // to sign in again (once), an API client gets 401 with the cookie cleared.
    provider
        .control(
            "tamper",
            json!({"mode": "refresh_invalid_grant", "grant": "refresh_token"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let api = with_cookie(format!("{}/page", a.base), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let cleared = api
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    assert!(cleared.is_some_and(|c| c.starts_with(&format!("{SESSION_COOKIE}=;"))));
    assert_eq!(
        status_with_cookie(&b.base, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    let again = browser.open(&format!("{}/page", a.base)).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.hops);
    assert!(
        a.proxy.logs().contains("refused a token refresh")
            || b.proxy.logs().contains("refused a token refresh")
    );
}

/// The access token the app gets, once it differs from `before`.
async fn eventually_value(base: &str, cookie: &str, before: &str) -> String {
    for _ in 0..50 {
        let reply = with_cookie(format!("{base}/page"), cookie)
            .send()
            .await
            .unwrap();
        let echo: Echo = reply.json().await.unwrap();
        if let Some(token) = echo.get("authorization") {
            if token != before {
                return token.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the refreshed access token never reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_userinfo_another_prefix_and_control_header_logins_side_by_side() {
    let ports = Ports::free();
    let base = format!("http://127.0.0.1:{}", ports.port);
    let mut client = Client::for_proxy("sg-post", ports.port);
    client.redirect_uris = vec![format!("{base}/sso/callback")];
    client.backchannel_logout_uri = Some(format!("{base}/sso/backchannel-logout"));
    client.auth_method = "client_secret_post".into();
    let provider = OidcProvider::start(std::slice::from_ref(&client), json!({}));
    let edge = edge_at(
        ports,
        &provider.issuer,
        &client,
        "kind = \"memory\"",
        "client_auth = \"client_secret_post\"\nuserinfo = true",
        |text| {
            text.replace(
                "[[route]]\npath_prefix = \"/public\"",
                "[oidc]\npath_prefix = \"/sso\"\n\n[[route]]\npath_prefix = \"/login\"\nupstream = \"app\"\nauth = \"public\"\naccept_login = true\n\n[[route]]\npath_prefix = \"/public\"",
            )
        },
    )
    .await;

    let browser = Browser::new();
    let visit = browser.open(&format!("{base}/page")).await;
    assert_eq!(
        visit.status,
        StatusCode::OK,
        "{:?} {}",
        visit.hops,
        visit.body
    );
    assert!(visit.went_through("/sso/callback"));
    assert_eq!(
        visit.header("x-auth-name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(provider.read("stats").await["userinfo_requests"], json!(1));
    // The default prefix is an ordinary path now (the catch-all route signs it in).
    let old = common::client()
        .get(format!("{base}/_sessiongate/oidc/callback?state=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);

    // An app's control-header login works beside the provider's.
    let login = common::client()
        .get(format!("{base}/login"))
        .header(
            "x-echo-set-x-sessiongate-login",
            r#"{"sub":"carol","name":"Carol App"}"#,
        )
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .find_map(|v| {
            let v = v.to_str().ok()?;
            v.strip_prefix(&format!("{SESSION_COOKIE}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
        .expect("a control-header login sets the cookie");
    let page = with_cookie(format!("{base}/page"), &cookie)
        .send()
        .await
        .unwrap();
    let echo: Echo = page.json().await.unwrap();
    assert_eq!(echo.get("x-auth-user"), Some("carol"));
    assert_eq!(echo.get("x-auth-name"), Some("Carol App"));
    drop(edge);
}

/// Rewrites the proxy's configuration to `config`, sends SIGHUP and waits until the proxy says
/// it reloaded.
async fn reload_with(proxy: &Proxy, config: &str) {
    common::eventually(Duration::from_secs(10), "no SIGHUP handler", || {
        !proxy
            .log_lines_with("reloads the configuration on SIGHUP")
            .is_empty()
    })
    .await;
    let before = proxy.log_lines_with("configuration reloaded").len();
    proxy.rewrite_config(config);
    proxy.signal("-HUP");
    common::eventually(Duration::from_secs(10), "no reload logged", || {
        proxy.log_lines_with("configuration reloaded").len() > before
    })
    .await;
}

/// The provider stops giving its discovery document and keys: what was fetched keeps serving,
/// across a reload too, as long as the provider's settings stay the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_keys_and_metadata_keep_serving_while_the_provider_cannot_give_them() {
    let (provider, edge) = one_edge("", json!({})).await;
    let (_, first) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(first.status, StatusCode::OK);
    provider.control("hang-jwks", json!({"on": true})).await;
    provider
        .control("hang-discovery", json!({"on": true}))
        .await;
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(visit.status, StatusCode::OK, "{}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_some());
    // A token naming a key the proxy does not know, while the key set cannot be fetched:
    // refused within the deadline, and the known keys still serve afterwards.
    let (browser, visit) = sign_in_with(&provider, &edge, "unknown_key").await;
    assert_eq!(visit.status, StatusCode::BAD_GATEWAY, "{}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_none());
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(visit.status, StatusCode::OK, "{}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_some());

    // A reload that leaves the provider's settings as they are keeps what was fetched: sign-ins
    // go on while the provider still cannot give its discovery document or keys.
    let text = std::fs::read_to_string(edge.proxy.config_path()).unwrap();
    let routes_changed = text.replace("path_prefix = \"/public\"", "path_prefix = \"/pub\"");
    reload_with(&edge.proxy, &routes_changed).await;
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(
        visit.status,
        StatusCode::OK,
        "after a reload: {}",
        visit.body
    );
    assert!(browser.session_cookie(&edge.base).is_some());
    // A provider whose settings changed starts afresh: with discovery hanging, its sign-ins
    // wait for the provider again (a 503 page within the deadline), and work once it answers.
    reload_with(
        &edge.proxy,
        &text.replace("timeout = \"2s\"", "timeout = \"3s\""),
    )
    .await;
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(
        visit.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        visit.body
    );
    assert!(browser.session_cookie(&edge.base).is_none());
    provider
        .control("hang-discovery", json!({"on": false}))
        .await;
    provider.control("hang-jwks", json!({"on": false})).await;
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(visit.status, StatusCode::OK, "{}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_flow_and_session_cookies_are_secure_and_the_flow_cookie_stays_at_the_callback(
) {
    use common::pki::{Pki, Validity};
    let pki = Pki::new("sign-in test CA");
    let cert = pki.issue("proxy", &["localhost", "127.0.0.1"], Validity::Current);
    let ports = Ports::free();
    let base = format!("https://127.0.0.1:{}", ports.tls_port);
    let mut client = Client::for_proxy("sg-tls", ports.port);
    client.redirect_uris = vec![format!("{base}/_sessiongate/oidc/callback")];
    client.post_logout_redirect_uris = vec![format!("{base}/")];
    client.backchannel_logout_uri = None;
    let provider = OidcProvider::start(std::slice::from_ref(&client), json!({}));
    let _edge = edge_at(ports, &provider.issuer, &client, "kind = \"memory\"", "", |text| {
        text.replace(
            &format!("cookie_name = \"{SESSION_COOKIE}\"\nsecure = false\n"),
            "cookie_name = \"__Host-sid\"\n",
        )
        .replace(
            "[store]",
            &format!(
                "[tls]\nlisten = [\"127.0.0.1:{}\"]\n\n[[tls.certificate]]\nchain_file = \"{}\"\nkey_file = \"{}\"\n\n[store]",
                ports.tls_port,
                cert.chain.display(),
                cert.key.display()
            ),
        )
    })
    .await;
    let jar = Arc::new(Jar::default());
    let pem = std::fs::read(pki.ca()).unwrap();
    let browser = Browser {
        http: reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .build()
            .unwrap(),
        jar,
    };
    let start = browser
        .http
        .get(format!("{base}/page"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let flow_cookie = start.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        flow_cookie.starts_with("__Secure-sg_flow_"),
        "{flow_cookie}"
    );
    for attribute in [
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/_sessiongate/oidc/callback",
    ] {
        assert!(
            flow_cookie.contains(attribute),
            "{attribute} in {flow_cookie}"
        );
    }
    let location = start.headers()[LOCATION].to_str().unwrap().to_string();
    let visit = browser
        .follow(
            browser.http.get(&location).header(ACCEPT, "text/html"),
            &location,
        )
        .await;
    assert_eq!(
        visit.status,
        StatusCode::OK,
        "{:?} {}",
        visit.hops,
        visit.body
    );
    assert_eq!(visit.url.as_str(), format!("{base}/page"));
    assert_eq!(visit.header("x-auth-user").as_deref(), Some("alice"));
    // The app never sees a flow cookie, nor the session cookie.
    let cookies = visit.header("cookie").unwrap_or_default();
    assert!(
        !cookies.contains("sg_flow_") && !cookies.contains("__Host-sid"),
        "{cookies}"
    );
    let header = browser.jar.cookies(&Url::parse(&base).unwrap()).unwrap();
    assert!(header.to_str().unwrap().contains("__Host-sid="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_document_that_changes_is_followed_and_one_naming_another_issuer_refused() {
    let (provider, edge) = one_edge("", json!({})).await;
    let (_, first) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(first.status, StatusCode::OK);
    // The provider moves its key set and rotates; the old location no longer answers.
    provider
        .control(
            "discovery",
            json!({"overrides": {"jwks_uri": format!("{}/jwks-moved", provider.issuer)}}),
        )
        .await;
    provider.control("hang-jwks", json!({"on": true})).await;
    provider.control("rotate", json!({})).await;
    let (browser, visit) = sign_in_with(&provider, &edge, "none").await;
    assert_eq!(visit.status, StatusCode::OK, "{}", visit.body);
    assert!(browser.session_cookie(&edge.base).is_some());
    assert!(edge
        .proxy
        .logs()
        .contains("the provider's discovery document names another key set"));

    // A proxy whose first look at the provider finds a document for another issuer (a
    // mix-up): a 503 page naming no detail, a log line naming the cause, no session.
    provider
        .control(
            "discovery",
            json!({"overrides": {"issuer": "https://evil.example"}}),
        )
        .await;
    let ports = Ports::free();
    let client = Client::for_proxy("sg", ports.port);
    let other = edge_at(
        ports,
        &provider.issuer,
        &client,
        "kind = \"memory\"",
        "",
        |t| t,
    )
    .await;
    let browser = Browser::new();
    let visit = browser
        .open(&format!("http://127.0.0.1:{}/page", ports.port))
        .await;
    assert_eq!(
        visit.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        visit.body
    );
    assert!(!visit.body.contains("evil"));
    assert!(other
        .proxy
        .logs()
        .contains("the discovery document names issuer"));
    assert!(browser
        .session_cookie(&format!("http://127.0.0.1:{}", ports.port))
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_starting_too_many_sign_ins_gets_429() {
    let ports = Ports::free();
    let client = Client::for_proxy("sg", ports.port);
    let provider = OidcProvider::start(std::slice::from_ref(&client), json!({}));
    let edge = edge_at(
        ports,
        &provider.issuer,
        &client,
        "kind = \"memory\"",
        "",
        |text| format!("{text}\n[oidc]\nmax_sign_ins_per_client = 3\n"),
    )
    .await;
    let base = format!("http://127.0.0.1:{}", ports.port);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let reply = common::client()
            .get(format!("{base}/page"))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        statuses.push(reply.status().as_u16());
        if reply.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(reply.headers()["retry-after"], "60");
        }
    }
    // Three in the minute; a test that straddles a minute boundary gets one more.
    let started = statuses.iter().filter(|s| **s == 302).count();
    assert!((3..=4).contains(&started), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(edge.proxy.logs().contains("max_sign_ins_per_client"));
}
