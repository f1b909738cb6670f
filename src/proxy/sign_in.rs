//! The sign-in paths the proxy answers itself (`oidc`): sending a browser to its identity
//! provider, the callback that turns the provider's answer into a session (through
//! `Sessions::apply`, like a control-header login: the carried session is rotated away), the
//! sign-out that ends the session and then the provider's, and the back-channel logout the
//! provider calls. Also, on the request path: the refresh of a session's provider tokens when
//! due, once per session across requests and instances, and the routes' `allow_*` rules.
//!
//! Every failure gets a page or status of its own and a log line naming the cause, never a
//! 500 and never a session; no log line carries a code, a token or a session id.

use std::sync::Arc;
use std::time::Duration;

use http::header::COOKIE;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::ctx::RequestCtx;
use super::respond::LocalResponse;
use super::state::GatewayState;
use crate::config::model::{IdentityProviderSettings, SameSite};
use crate::cookie::{self, SessionCookie};
use crate::metrics::metrics;
use crate::oidc::exchange::{self, Tokens};
use crate::oidc::flow::{self, Flow};
use crate::oidc::http::HttpError;
use crate::oidc::verify::{self, Expect, TokenError};
use crate::oidc::{callback_path, logout_path, Endpoint, Provider};
use crate::session::control::{ControlRequest, Login, LogoutScope};
use crate::session::record::ProviderLink;
use crate::sessions::apply::CookieChange;
use crate::sessions::provider::{ProviderSubject, Replaced};
use crate::sessions::{Carried, SessionState};
use crate::store::{Aux, SessionStore};

/// The most bytes of a back-channel logout request's body.
const MAX_LOGOUT_BODY: usize = 64 * 1024;
/// How long a refresh lock is held at most (the call has its own deadline within it).
const REFRESH_LOCK_MS: u64 = 30_000;
/// After a refresh that failed for want of the provider, the next try waits this long.
const REFRESH_RETRY: Duration = Duration::from_secs(30);

/// The request's origin as the browser used it: scheme and `host[:port]`; and the client's
/// address, as the forwarding rules read it.
pub struct Origin<'a> {
    pub https: bool,
    pub authority: &'a str,
    pub client: Option<std::net::IpAddr>,
}

fn sign_ins(provider: &str, result: &str) {
    metrics()
        .sign_ins
        .with_label_values(&[provider, result])
        .inc();
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small HTML page saying what happened and offering the way on.
fn page(status: u16, title: &str, message: &str, link: Option<(&str, &str)>) -> LocalResponse {
    let link = link
        .map(|(href, text)| {
            format!(
                "<p><a href=\"{}\">{}</a></p>",
                escape_html(href),
                escape_html(text)
            )
        })
        .unwrap_or_default();
    html_page(
        status,
        title,
        &format!("<p>{}</p>{link}", escape_html(message)),
    )
}

/// An HTML page of `title` with `body` (markup, escaped by the caller) under its heading.
fn html_page(status: u16, title: &str, body: &str) -> LocalResponse {
    LocalResponse::owned(
        status,
        "text/html; charset=utf-8",
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1>{body}</body></html>\n",
            t = escape_html(title),
        ),
    )
}

/// The 403 of a signed-in user a route's `allow_*` rules do not admit: never a redirect to
/// sign in again, which would loop.
pub fn forbidden(html: bool) -> LocalResponse {
    if html {
        page(
            403,
            "Access denied",
            "You are signed in, but your account is not allowed to open this page.",
            None,
        )
    } else {
        LocalResponse::json(
            403,
            "{\"error\":\"forbidden\",\"message\":\"the signed-in user is not allowed here\"}\n",
        )
    }
}

/// The 503 page of a step the session store could not serve: `doing` is what could not
/// complete ("Sign-in cannot start", "Sign-out cannot complete", ...).
fn store_unavailable(title: &str, doing: &str) -> LocalResponse {
    page(
        503,
        title,
        &format!("{doing} right now. Try again in a moment."),
        None,
    )
    .with_header("retry-after", "1".into())
}

fn unavailable(provider: &str, cause: &dyn std::fmt::Display) -> LocalResponse {
    warn!(provider, error = %cause, "sign-in is unavailable");
    sign_ins(provider, "failed");
    page(
        503,
        "Sign-in unavailable",
        "The identity provider cannot be reached right now. Try again in a moment.",
        None,
    )
    .with_header("retry-after", "5".into())
}

/// The redirect URI of `provider` for a request on `origin`.
fn redirect_uri(settings: &IdentityProviderSettings, prefix: &str, origin: &Origin<'_>) -> String {
    settings.redirect_url.clone().unwrap_or_else(|| {
        format!(
            "{}://{}{}",
            if origin.https { "https" } else { "http" },
            origin.authority,
            callback_path(prefix)
        )
    })
}

/// Sends the browser to `provider` to sign in, to come back to `return_to` (a path on this
/// origin, checked by the caller).
pub async fn start(
    state: &GatewayState,
    provider: &Provider,
    origin: &Origin<'_>,
    return_to: &str,
) -> LocalResponse {
    begin(state, provider, origin, return_to, false).await
}

/// [`start`], for a first flow or (`restarted`) the one restart of a flow whose code the
/// provider refused.
async fn begin(
    state: &GatewayState,
    provider: &Provider,
    origin: &Origin<'_>,
    return_to: &str,
    restarted: bool,
) -> LocalResponse {
    let name = provider.name();
    let limiter = crate::oidc::limit::SignInLimiter::global();
    if !limiter.admit(
        origin.client,
        state.config.sign_ins_per_client,
        crate::session::lifecycle::now_ms(),
    ) {
        warn!(
            provider = name,
            client = ?origin.client,
            "refused a sign-in: the client started more than [oidc] max_sign_ins_per_client this minute"
        );
        sign_ins(name, "limited");
        return page(
            429,
            "Too many sign-ins",
            "Too many sign-ins were started from your address. Try again in a minute.",
            None,
        )
        .with_header("retry-after", "60".into());
    }
    let metadata = match provider.metadata().await {
        Ok(m) => m,
        Err(e) => return unavailable(name, &e),
    };
    let (Ok(state_token), Ok(nonce), Ok(verifier), Ok(binding)) = (
        flow::random_token(),
        flow::random_token(),
        flow::random_token(),
        flow::random_token(),
    ) else {
        return unavailable(name, &"the OS random source failed");
    };
    let settings = &provider.settings;
    let prefix = &state.config.oidc_prefix;
    let redirect_uri = redirect_uri(settings, prefix, origin);
    let record = Flow {
        provider: name.to_string(),
        nonce: nonce.clone(),
        verifier: verifier.clone(),
        redirect_uri: redirect_uri.clone(),
        return_to: return_to.to_string(),
        binding: flow::hashed(&binding),
        restarted,
    };
    let ttl_ms = u64::try_from(settings.flow_timeout.as_millis()).unwrap_or(u64::MAX);
    let stored = state
        .sessions
        .backend()
        .store
        .put_aux(
            Aux::Flow,
            &flow::hashed(&state_token),
            &serde_json::to_vec(&record).expect("a flow serialises"),
            ttl_ms,
            false,
        )
        .await;
    if let Err(e) = stored {
        warn!(provider = name, error = %e, kind = e.kind(), "could not store a sign-in flow");
        return store_unavailable("Sign-in unavailable", "Sign-in cannot start");
    }
    sign_ins(name, "started");
    let location = flow::authorize_url(
        &metadata.0.authorization_endpoint,
        &settings.client_id,
        &redirect_uri,
        &settings.scopes,
        &state_token,
        &nonce,
        &verifier,
    );
    let cookie_name = flow::cookie_name(&state_token, origin.https);
    LocalResponse::text(302, "Sign-in required.\n")
        .with_header("location", location)
        .with_header(
            "set-cookie",
            flow::set_cookie(
                &cookie_name,
                &binding,
                &callback_path(prefix),
                origin.https,
                settings.flow_timeout.as_secs(),
            ),
        )
}

/// The query parameters of the request target.
fn query_params(path_and_query: &str) -> Map<String, Value> {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    let mut out = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        // A repeated parameter is ambiguous: the first one counts.
        out.entry(k.into_owned())
            .or_insert_with(|| Value::String(v.into_owned()));
    }
    out
}

fn param<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    params.get(name).and_then(Value::as_str)
}

/// The session key the request's cookie names, when it is well formed and signed.
fn carried_key(state: &GatewayState, session: &Session) -> Option<crate::session::StoreKey> {
    let scan = cookie::scan(
        session
            .req_header()
            .headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes()),
        state.cookies.name(),
        state.cookies.codec(),
    );
    match scan.session {
        SessionCookie::Valid(id) => Some(id.store_key()),
        _ => None,
    }
}

/// Answers one of the sign-in paths. Always answers (returns `true`).
pub async fn answer(
    state: &GatewayState,
    session: &mut Session,
    ctx: &RequestCtx,
    endpoint: Endpoint,
    origin: &Origin<'_>,
    path_and_query: &str,
) -> Result<bool> {
    let method = session.req_header().method.clone();
    let response = match endpoint {
        Endpoint::Callback | Endpoint::Start
            if method != http::Method::GET && method != http::Method::HEAD =>
        {
            LocalResponse::text(405, "Method not allowed.\n")
                .with_header("allow", "GET, HEAD".into())
        }
        Endpoint::Backchannel if method != http::Method::POST => {
            LocalResponse::text(405, "Method not allowed.\n").with_header("allow", "POST".into())
        }
        Endpoint::Callback => callback(state, session, ctx, origin, path_and_query).await,
        Endpoint::Start => {
            let params = query_params(path_and_query);
            let provider = match param(&params, "provider") {
                Some(name) => state.providers.by_name(name),
                None if state.providers.list.len() == 1 => state.providers.list.first(),
                None => None,
            };
            let return_to = param(&params, "next")
                .and_then(flow::safe_return)
                .unwrap_or("/")
                .to_string();
            match provider {
                Some(provider) => start(state, provider, origin, &return_to).await,
                None => page(
                    404,
                    "Unknown identity provider",
                    "No identity provider of that name is configured.",
                    None,
                ),
            }
        }
        Endpoint::Logout => match method {
            http::Method::GET | http::Method::POST
                if sign_out_intended(&session.req_header().headers, origin) =>
            {
                logout(state, session, ctx).await
            }
            // A page of another site (an image, a form, a link) cannot sign the user out:
            // they are asked, and the button posts from this origin.
            http::Method::GET | http::Method::HEAD | http::Method::POST => {
                confirm_sign_out(&logout_path(&state.config.oidc_prefix))
            }
            _ => LocalResponse::text(405, "Method not allowed.\n")
                .with_header("allow", "GET, HEAD, POST".into()),
        },
        Endpoint::Backchannel => backchannel(state, session, ctx).await?,
    };
    response.send(session, ctx).await?;
    Ok(true)
}

/// The flow cookie's value for `state_token`, read from the request.
fn flow_cookie(session: &Session, state_token: &str, https: bool) -> Option<String> {
    let name = flow::cookie_name(state_token, https);
    flow::cookie_value(
        session
            .req_header()
            .headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes()),
        &name,
    )
}

fn refused(
    provider: &str,
    why: &dyn std::fmt::Display,
    title: &str,
    message: &str,
) -> LocalResponse {
    warn!(provider, reason = %why, "refused a sign-in callback");
    sign_ins(provider, "refused");
    page(400, title, message, Some(("/", "Start again")))
}

fn provider_failed(provider: &str, e: &HttpError) -> LocalResponse {
    warn!(provider, error = %e, "the identity provider's token endpoint failed");
    sign_ins(provider, "failed");
    match e {
        HttpError::Timeout => page(
            504,
            "Sign-in timed out",
            "The identity provider did not answer in time. Try again in a moment.",
            Some(("/", "Start again")),
        ),
        _ => page(
            502,
            "Sign-in failed",
            "The identity provider did not complete the sign-in.",
            Some(("/", "Start again")),
        ),
    }
}

/// The session's `sub` and claims from the verified ID token (completed from userinfo), as
/// the provider's settings map them.
fn mapped_claims(
    settings: &IdentityProviderSettings,
    claims: &Map<String, Value>,
) -> Result<(String, crate::session::Claims), &'static str> {
    let sub = match claims.get(&settings.sub_claim) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("the token lacks the claim that names the user (sub_claim)"),
    };
    let mut out = crate::session::Claims::new();
    if let Some(Value::String(email)) = claims.get(&settings.email_claim) {
        // An address the provider says it has not verified is not passed on as one.
        if claims.get("email_verified") != Some(&Value::Bool(false)) {
            out.insert("email".into(), Value::String(email.clone()));
        }
    }
    match claims.get(&settings.groups_claim) {
        Some(Value::Array(items)) => {
            let groups: Vec<Value> = items.iter().filter(|v| v.is_string()).cloned().collect();
            out.insert("groups".into(), Value::Array(groups));
        }
        Some(Value::String(one)) => {
            out.insert(
                "groups".into(),
                Value::Array(vec![Value::String(one.clone())]),
            );
        }
        _ => {}
    }
    for name in &settings.claims {
        if let Some(v) = claims.get(name) {
            out.insert(name.clone(), v.clone());
        }
    }
    Ok((sub, out))
}

/// When the tokens are next refreshed: at the configured interval, else shortly before the
/// access token expires; never without a refresh token.
fn refresh_at(
    settings: &IdentityProviderSettings,
    tokens: &Tokens,
    has_refresh_token: bool,
    now: u64,
) -> (u64, u64) {
    let expires_at = tokens
        .expires_in
        .map_or(0, |s| now.saturating_add(s.saturating_mul(1000)));
    if !has_refresh_token {
        return (expires_at, 0);
    }
    let at = match settings.refresh_interval {
        Some(interval) => {
            now.saturating_add(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX))
        }
        None if expires_at > 0 => {
            let lifetime = expires_at - now;
            expires_at - (lifetime / 2).min(30_000)
        }
        None => 0,
    };
    (expires_at, at)
}

async fn callback(
    state: &GatewayState,
    session: &Session,
    ctx: &RequestCtx,
    origin: &Origin<'_>,
    path_and_query: &str,
) -> LocalResponse {
    let params = query_params(path_and_query);
    let Some(state_token) = param(&params, "state").filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        warn!("refused a sign-in callback without a state");
        return page(
            400,
            "Sign-in failed",
            "This sign-in link is incomplete.",
            Some(("/", "Start again")),
        );
    };
    let prefix = &state.config.oidc_prefix;
    let clear_flow = flow::clear_cookie(
        &flow::cookie_name(state_token, origin.https),
        &callback_path(prefix),
        origin.https,
    );
    let store = &state.sessions.backend().store;
    // Taken, not read: a state is good for one callback, whatever that callback brings.
    let taken = match store.take_aux(Aux::Flow, &flow::hashed(state_token)).await {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, kind = e.kind(), "could not read a sign-in flow");
            return store_unavailable("Sign-in unavailable", "Sign-in cannot complete");
        }
    };
    let Some(flow) = taken.and_then(|bytes| serde_json::from_slice::<Flow>(&bytes).ok()) else {
        warn!("refused a sign-in callback whose state is unknown, expired or already used");
        return page(
            400,
            "Sign-in expired",
            "This sign-in has expired or was already used.",
            Some(("/", "Start again")),
        )
        .with_header("set-cookie", clear_flow);
    };
    let name = flow.provider.as_str();
    let response = |r: LocalResponse| r.with_header("set-cookie", clear_flow.clone());
    // Login CSRF: the callback must come back to the browser that started the flow.
    match flow_cookie(session, state_token, origin.https) {
        Some(value) if flow.bound_to(&value) => {}
        _ => {
            return response(refused(
                name,
                &"the flow cookie is missing or belongs to another sign-in",
                "Sign-in failed",
                "This sign-in was started in another browser or tab that no longer holds it.",
            ))
        }
    }
    let Some(provider) = state.providers.by_name(name) else {
        return response(refused(
            name,
            &"the provider is no longer configured",
            "Sign-in failed",
            "This sign-in cannot complete.",
        ));
    };
    if let Some(error) = param(&params, "error") {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        warn!(provider = name, error = %code, "the identity provider refused the sign-in");
        sign_ins(name, "refused");
        let (status, message) = match code.as_str() {
            "access_denied" => (403, "The identity provider did not allow this sign-in."),
            "login_required"
            | "interaction_required"
            | "consent_required"
            | "account_selection_required" => {
                (401, "The identity provider needs you to sign in again.")
            }
            _ => (502, "The identity provider could not complete the sign-in."),
        };
        return response(page(
            status,
            "Sign-in refused",
            &format!("{message} ({code})"),
            Some(("/", "Start again")),
        ));
    }
    let Some(code) = param(&params, "code").filter(|c| !c.is_empty()) else {
        return response(refused(
            name,
            &"the callback has no code",
            "Sign-in failed",
            "The identity provider's answer is incomplete.",
        ));
    };
    let metadata = match provider.metadata().await {
        Ok(m) => m,
        Err(e) => return response(unavailable(name, &e)),
    };
    let tokens = match exchange::redeem_code(
        provider,
        &metadata.0.token_endpoint,
        code,
        &flow.redirect_uri,
        &flow.verifier,
    )
    .await
    {
        Ok(t) => t,
        // A provider session holds one grant per client: when two tabs of one browser sign in
        // at once, the later sign-in can replace the grant the earlier tab's code was issued
        // under, and the provider then refuses that code (oidc-provider does: its codes are
        // bound to the grant its browser session holds). This browser proved it started
        // the flow, so it is sent once through a new flow, which the provider's session now
        // answers without asking the user again. A second refusal is shown.
        Err(e @ HttpError::Status { status: 400, .. })
            if !flow.restarted && e.oauth_code() == Some("invalid_grant") =>
        {
            info!(
                provider = name,
                error = %e,
                "the identity provider refused the sign-in's code; starting the sign-in once more"
            );
            return response(begin(state, provider, origin, &flow.return_to, true).await);
        }
        Err(e) => return response(provider_failed(name, &e)),
    };
    let now = crate::session::lifecycle::now_ms();
    let Some(id_token) = tokens.id_token.clone() else {
        return response(token_refused(
            name,
            &TokenError::Malformed("the token endpoint answered without an id_token".into()),
        ));
    };
    let mut claims = match verify::id_token(
        provider,
        &id_token,
        Expect {
            now_secs: now / 1000,
            nonce: Some(&flow.nonce),
        },
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return response(token_refused(name, &e)),
    };
    if provider.settings.userinfo {
        if let (Some(endpoint), Some(access)) =
            (&metadata.0.userinfo_endpoint, &tokens.access_token)
        {
            match exchange::userinfo(provider, endpoint, access).await {
                // OpenID Connect Core §5.3.4: the userinfo `sub` must be the token's.
                Ok(info) if info.get("sub") == claims.get("sub") => {
                    for (k, v) in info {
                        claims.entry(k).or_insert(v);
                    }
                }
                Ok(_) => {
                    return response(token_refused(name, &TokenError::Claim("sub (userinfo)")));
                }
                Err(e) => return response(provider_failed(name, &e)),
            }
        }
    }
    let (sub, session_claims) = match mapped_claims(&provider.settings, &claims) {
        Ok(v) => v,
        Err(why) => return response(token_refused(name, &why)),
    };
    let rules = crate::session::control::ClaimRules {
        max_bytes: state.sessions.max_claims_bytes(),
        mapped: &state.mapped_claims,
    };
    if let Err(e) = crate::session::control::check_login(&sub, &session_claims, &rules) {
        return response(token_refused(name, &e));
    }
    let (access_expires_at, refresh_at) = refresh_at(
        &provider.settings,
        &tokens,
        tokens.refresh_token.is_some(),
        now,
    );
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(String::from);
    let link = ProviderLink {
        name: name.to_string(),
        sub: text("sub").unwrap_or_default(),
        sid: text("sid"),
        id_token,
        refresh_token: tokens.refresh_token.clone(),
        access_token: tokens.access_token.clone(),
        access_expires_at,
        refresh_at,
    };
    let key = carried_key(state, session);
    let change = ControlRequest {
        login: Some(Login {
            sub: sub.clone(),
            claims: session_claims,
            provider: Some(link.clone()),
        }),
        ..Default::default()
    };
    let carried = Carried {
        key: key.as_ref(),
        sub: None,
    };
    let issued = match state.sessions.apply(change, carried, now).await {
        Ok(Some(CookieChange::Issue { id, lifetime })) => state.cookies.issue(&id, lifetime),
        Ok(_) => {
            return response(token_refused(
                name,
                &"the provider's claims do not fit session.max_claims_bytes",
            ));
        }
        Err(e) => {
            warn!(provider = name, error = %e, kind = e.kind(), "could not store the signed-in session");
            return response(store_unavailable(
                "Sign-in unavailable",
                "Sign-in cannot complete",
            ));
        }
    };
    if let Err(e) = state.sessions.index_provider_session(&link, &sub).await {
        // The session works; only a back-channel logout could miss it.
        warn!(provider = name, error = %e, kind = e.kind(), "could not index the provider's session for back-channel logout");
    }
    sign_ins(name, "completed");
    info!(provider = name, request_id = %ctx.request_id, "signed a user in at the edge");
    let back = flow::safe_return(&flow.return_to)
        .unwrap_or("/")
        .to_string();
    let done = if state.config.session.cookie.same_site == SameSite::Strict {
        // A strict cookie is not sent on the redirect chain that began at the provider: the
        // browser is sent on by a page of this origin instead.
        let href = escape_html(&back);
        LocalResponse::owned(
            200,
            "text/html; charset=utf-8",
            format!("<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={href}\"><title>Signed in</title></head><body><p><a href=\"{href}\">Continue</a></p></body></html>\n"),
        )
    } else {
        LocalResponse::text(302, "Signed in.\n").with_header("location", back)
    };
    response(done.with_header("set-cookie", issued))
}

fn token_refused(provider: &str, why: &dyn std::fmt::Display) -> LocalResponse {
    warn!(provider, reason = %why, "refused the identity provider's answer");
    sign_ins(provider, "refused");
    page(
        502,
        "Sign-in failed",
        "The identity provider's answer could not be verified.",
        Some(("/", "Start again")),
    )
}

/// Whether `source` (an `Origin` or `Referer` value) is of `origin`.
fn same_origin(source: &str, origin: &Origin<'_>) -> bool {
    let scheme = if origin.https { "https://" } else { "http://" };
    let Some(rest) = source
        .get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .map(|_| &source[scheme.len()..])
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..end].eq_ignore_ascii_case(origin.authority)
}

/// Whether a sign-out request is the user's own: typed or bookmarked, or from a page of this
/// origin; not one another site's page makes the browser send (logout CSRF). Fetch Metadata
/// decides where the browser sends it; an older browser's `Origin` or `Referer` otherwise; a
/// request with neither (a script, a privacy-minded browser) is taken as meant.
fn sign_out_intended(headers: &http::HeaderMap, origin: &Origin<'_>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    match headers
        .get(http::header::ORIGIN)
        .or_else(|| headers.get(http::header::REFERER))
        .map(|v| v.to_str().unwrap_or("null"))
    {
        None => true,
        Some(source) => same_origin(source, origin),
    }
}

/// The page that asks before signing out: its button posts to the sign-out path from this
/// origin.
fn confirm_sign_out(action: &str) -> LocalResponse {
    html_page(
        200,
        "Sign out?",
        &format!(
            "<form method=\"post\" action=\"{}\"><button type=\"submit\" id=\"sign-out\">Sign out</button></form><p><a href=\"/\">Stay signed in</a></p>",
            escape_html(action)
        ),
    )
}

/// Ends the request's session; then, for a session a provider signed in, sends the browser to
/// the provider's `end_session_endpoint` (with `id_token_hint`) to end the provider's too.
async fn logout(state: &GatewayState, session: &Session, ctx: &RequestCtx) -> LocalResponse {
    let now = ctx.now_ms;
    let Some(key) = carried_key(state, session) else {
        return page(
            200,
            "Signed out",
            "You are signed out.",
            Some(("/", "Continue")),
        )
        .with_header("set-cookie", state.cookies.clear());
    };
    let found = state.sessions.lookup(key.clone(), false, now).await;
    let link = found.active().and_then(|a| a.session.provider.clone());
    let change = ControlRequest {
        logout: Some(LogoutScope::Current),
        ..Default::default()
    };
    if let Err(e) = state.sessions.apply(change, found.carried(), now).await {
        warn!(error = %e, kind = e.kind(), "could not end a session at sign-out");
        return store_unavailable("Sign-out failed", "Sign-out cannot complete");
    }
    info!(session = key.log_tag(), "session ended at sign-out");
    let cleared = state.cookies.clear();
    let provider = link
        .as_ref()
        .and_then(|l| state.providers.by_name(&l.name).map(|p| (l, p)));
    if let Some((link, provider)) = provider {
        if let Ok(metadata) = provider.metadata().await {
            if let Some(end) = &metadata.0.end_session_endpoint {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair("id_token_hint", &link.id_token);
                query.append_pair("client_id", &provider.settings.client_id);
                if let Some(after) = &provider.settings.post_logout_redirect_url {
                    query.append_pair("post_logout_redirect_uri", after);
                }
                let separator = if end.contains('?') { '&' } else { '?' };
                return LocalResponse::text(302, "Signed out.\n")
                    .with_header("location", format!("{end}{separator}{}", query.finish()))
                    .with_header("set-cookie", cleared);
            }
        }
        if let Some(after) = &provider.settings.post_logout_redirect_url {
            return LocalResponse::text(302, "Signed out.\n")
                .with_header("location", after.clone())
                .with_header("set-cookie", cleared);
        }
    }
    page(
        200,
        "Signed out",
        "You are signed out.",
        Some(("/", "Continue")),
    )
    .with_header("set-cookie", cleared)
}

fn backchannel_error(result: &str, why: &dyn std::fmt::Display) -> LocalResponse {
    warn!(reason = %why, "refused a back-channel logout");
    metrics()
        .backchannel_logouts
        .with_label_values(&[result])
        .inc();
    LocalResponse::json(
        400,
        "{\"error\":\"invalid_request\",\"error_description\":\"the logout token was refused\"}\n",
    )
}

/// The `iss` of a token, read without verification: only to choose whose keys verify it.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(String::from)
}

/// Back-Channel Logout 1.0 §2.5–2.8: a verified, unreplayed logout token ends the sessions of
/// the provider session (or subject) it names, on every instance (through the store and the
/// cache invalidation); 200 when done, 400 for a refused token.
async fn backchannel(
    state: &GatewayState,
    session: &mut Session,
    ctx: &RequestCtx,
) -> Result<LocalResponse> {
    let form = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.to_str().is_ok_and(|t| {
                t.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
        });
    if !form {
        return Ok(backchannel_error(
            "refused",
            &"the body is not application/x-www-form-urlencoded",
        ));
    }
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > MAX_LOGOUT_BODY {
                return Ok::<bool, Box<pingora::Error>>(false);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(true)
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Ok(backchannel_error("refused", &"the body is too large")),
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Ok(backchannel_error(
                "refused",
                &"the body did not arrive in time",
            ))
        }
    }
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return Ok(backchannel_error("refused", &"no logout_token"));
    };
    let Some(issuer) = unverified_issuer(&token) else {
        return Ok(backchannel_error(
            "refused",
            &"the logout token is not a JWT with an issuer",
        ));
    };
    let now = ctx.now_ms;
    let mut last_error: Option<TokenError> = None;
    let mut verified = None;
    for provider in state.providers.by_issuer(&issuer) {
        match verify::logout_token(provider, &token, now / 1000).await {
            Ok(claims) => {
                verified = Some((provider.clone(), claims));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some((provider, claims)) = verified else {
        return Ok(match last_error {
            Some(e) => backchannel_error("refused", &e),
            None => backchannel_error("refused", &"no identity provider has that issuer"),
        });
    };
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let jti = text("jti").unwrap_or_default();
    let ttl_ms =
        (verify::LOGOUT_TOKEN_MAX_AGE_SECS + provider.settings.clock_skew.as_secs()) * 2000;
    let store = &state.sessions.backend().store;
    match store
        .put_aux(
            Aux::Replay,
            &flow::hashed(&format!("{issuer}\0{jti}")),
            b"1",
            ttl_ms,
            true,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Ok(backchannel_error(
                "replayed",
                &"the logout token's jti was seen before",
            ))
        }
        Err(e) => {
            warn!(error = %e, kind = e.kind(), "could not record a logout token");
            return Ok(
                LocalResponse::json(503, "{\"error\":\"temporarily_unavailable\"}\n")
                    .with_header("retry-after", "1".into()),
            );
        }
    }
    let who = ProviderSubject {
        provider: provider.name(),
        sid: text("sid"),
        sub: text("sub"),
    };
    match state.sessions.end_provider_sessions(who, now).await {
        Ok(ended) => {
            metrics()
                .backchannel_logouts
                .with_label_values(&["accepted"])
                .inc();
            info!(provider = provider.name(), ended, "back-channel logout");
            Ok(LocalResponse::text(200, ""))
        }
        Err(e) => {
            warn!(error = %e, kind = e.kind(), "could not end the sessions a back-channel logout names");
            Ok(
                LocalResponse::json(503, "{\"error\":\"temporarily_unavailable\"}\n")
                    .with_header("retry-after", "1".into()),
            )
        }
    }
}

/// What became of a session whose provider tokens were due for a refresh.
pub enum Refreshed {
    /// Serve the request with this state (refreshed, or still valid while another request
    /// refreshes, or kept while the provider cannot be reached).
    Keep,
    /// The provider refused the refresh: the session ended.
    Ended,
}

/// Refreshes the provider tokens of the request's session if they are due: one request of
/// one instance does it (a lock in the store), the result is written with compare-and-set; a
/// refresh the provider refuses ends the session (the browser signs in again, no loop); one
/// the provider cannot answer leaves the session as it is and is tried again later.
pub async fn refresh_if_due(state: &GatewayState, ctx: &mut RequestCtx) -> Refreshed {
    let now = ctx.now_ms;
    let Some(active) = ctx.session.active() else {
        return Refreshed::Keep;
    };
    let Some(link) = active.session.provider.clone() else {
        return Refreshed::Keep;
    };
    if link.refresh_at == 0 || link.refresh_at > now {
        return Refreshed::Keep;
    }
    let Some(provider) = state.providers.by_name(&link.name) else {
        return Refreshed::Keep;
    };
    let key = active.key.clone();
    let sub = active.session.sub.to_string();
    let store = &state.sessions.backend().store;
    let lock = key.as_str().to_string();
    match store
        .put_aux(Aux::RefreshLock, &lock, b"1", REFRESH_LOCK_MS, true)
        .await
    {
        Ok(true) => {}
        // Another request refreshes (or the store cannot say): the tokens at hand serve.
        Ok(false) | Err(_) => return Refreshed::Keep,
    }
    let result = refresh_locked(state, ctx, provider, &key, &sub, now).await;
    let _ = store.take_aux(Aux::RefreshLock, &lock).await;
    result
}

/// Puts `prepared` in place of the request's session.
fn serve_as(ctx: &mut RequestCtx, prepared: Arc<crate::session::PreparedSession>) {
    if let SessionState::Active(a) | SessionState::Stale(a) = &mut ctx.session {
        a.session = prepared;
    }
}

/// The refresh itself, with the session's refresh lock held.
async fn refresh_locked(
    state: &GatewayState,
    ctx: &mut RequestCtx,
    provider: &Arc<Provider>,
    key: &crate::session::StoreKey,
    sub: &str,
    now: u64,
) -> Refreshed {
    // The copy at hand may be a cached one from before another instance's refresh: the
    // record is read again, and a refresh already done is taken instead of redone (a refresh
    // token used twice makes providers that rotate them revoke the whole grant).
    let Ok(Some(fresh)) = state.sessions.reload(key, now).await else {
        return Refreshed::Keep;
    };
    let link = fresh.provider.clone();
    serve_as(ctx, fresh);
    let Some(link) = link.filter(|l| l.refresh_at != 0 && l.refresh_at <= now) else {
        return Refreshed::Keep;
    };
    let Some(refresh_token) = link.refresh_token.clone() else {
        return Refreshed::Keep;
    };
    match refresh(provider, &link, &refresh_token, now).await {
        Ok(next) => match state.sessions.replace_provider_link(key, next, now).await {
            Ok(Replaced::Done(prepared)) => serve_as(ctx, prepared),
            Ok(Replaced::NoSession) => {}
            Err(e) => {
                warn!(error = %e, kind = e.kind(), "could not store refreshed provider tokens")
            }
        },
        Err(RefreshError::Refused(why)) => {
            warn!(provider = provider.name(), session = key.log_tag(), reason = %why, "the identity provider refused a token refresh; the session ends");
            if let Err(e) = state.sessions.end_unrefreshable(key, sub).await {
                warn!(error = %e, kind = e.kind(), "could not end a session whose refresh was refused");
            }
            return Refreshed::Ended;
        }
        Err(RefreshError::Unavailable(why)) => {
            warn!(provider = provider.name(), reason = %why, "a token refresh failed for want of the identity provider; the session is kept");
            let mut later = (*link).clone();
            later.refresh_at = now + u64::try_from(REFRESH_RETRY.as_millis()).unwrap_or(30_000);
            if let Ok(Replaced::Done(prepared)) =
                state.sessions.replace_provider_link(key, later, now).await
            {
                serve_as(ctx, prepared);
            }
        }
    }
    Refreshed::Keep
}

enum RefreshError {
    /// The provider answered no: the grant is gone.
    Refused(String),
    /// The provider could not be asked.
    Unavailable(String),
}

async fn refresh(
    provider: &Arc<Provider>,
    link: &ProviderLink,
    refresh_token: &str,
    now: u64,
) -> std::result::Result<ProviderLink, RefreshError> {
    let metadata = provider
        .metadata()
        .await
        .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
    let tokens = match exchange::refresh(provider, &metadata.0.token_endpoint, refresh_token).await
    {
        Ok(t) => t,
        Err(
            e @ HttpError::Status {
                status: 400..=499, ..
            },
        ) => return Err(RefreshError::Refused(e.to_string())),
        Err(e) => return Err(RefreshError::Unavailable(e.to_string())),
    };
    let mut next = link.clone();
    if let Some(id_token) = &tokens.id_token {
        // OpenID Connect Core §12.2: a refreshed ID token is for the same user, from the same
        // issuer; it need not carry a nonce.
        let claims = verify_refreshed(provider, id_token, now)
            .await
            .map_err(|e| RefreshError::Refused(e.to_string()))?;
        if claims.get("sub").and_then(Value::as_str) != Some(link.sub.as_str()) {
            return Err(RefreshError::Refused(
                "the refreshed ID token names another subject".into(),
            ));
        }
        next.id_token = id_token.clone();
    }
    // A provider that rotates refresh tokens sends a new one; one that does not keeps the old.
    if tokens.refresh_token.is_some() {
        next.refresh_token = tokens.refresh_token.clone();
    }
    let (expires_at, refresh_at) = refresh_at(
        &provider.settings,
        &tokens,
        next.refresh_token.is_some(),
        now,
    );
    next.access_token = tokens.access_token.or(next.access_token);
    next.access_expires_at = expires_at;
    next.refresh_at = match refresh_at {
        0 => 0,
        // Never sooner than a second from now, so a provider answering with tiny lifetimes
        // cannot make every request refresh.
        at => at.max(now + 1000),
    };
    Ok(next)
}

async fn verify_refreshed(
    provider: &Provider,
    token: &str,
    now: u64,
) -> std::result::Result<Map<String, Value>, TokenError> {
    verify::id_token(
        provider,
        token,
        Expect {
            now_secs: now / 1000,
            nonce: None,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(https: bool) -> Origin<'static> {
        Origin {
            https,
            authority: "app.example:8443",
            client: None,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_this_origin_is_the_same_origin() {
        let o = origin(true);
        for same in [
            "https://app.example:8443",
            "https://app.example:8443/",
            "HTTPS://APP.example:8443/x?y",
            "https://app.example:8443#f",
        ] {
            assert!(same_origin(same, &o), "{same}");
        }
        for other in [
            "http://app.example:8443",
            "https://app.example",
            "https://app.example:8443.evil.example/",
            "https://app.example:84430/",
            "https://evil.example/https://app.example:8443",
            "null",
            "",
            "https:",
        ] {
            assert!(!same_origin(other, &o), "{other}");
        }
    }

    #[test]
    fn a_sign_out_from_another_site_is_not_intended() {
        let o = origin(true);
        for meant in [
            headers(&[]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[("sec-fetch-site", "same-origin")]),
            // Fetch Metadata, where sent, decides over a Referer.
            headers(&[
                ("sec-fetch-site", "same-origin"),
                ("referer", "https://evil.example/"),
            ]),
            headers(&[("origin", "https://app.example:8443")]),
            headers(&[("referer", "https://app.example:8443/account")]),
        ] {
            assert!(sign_out_intended(&meant, &o), "{meant:?}");
        }
        for forged in [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://app.example:8443"),
            ]),
            headers(&[("origin", "null")]),
            headers(&[("origin", "https://evil.example")]),
            headers(&[("referer", "https://evil.example/app.example:8443")]),
        ] {
            assert!(!sign_out_intended(&forged, &o), "{forged:?}");
        }
    }

    #[test]
    fn the_sign_out_question_posts_to_the_escaped_path() {
        let page = confirm_sign_out("/_sg/\"><x>/logout");
        let body = page.body;
        assert!(
            body.contains("action=\"/_sg/&quot;&gt;&lt;x&gt;/logout\""),
            "{body}"
        );
        assert!(!body.contains("<x>"));
    }
}
