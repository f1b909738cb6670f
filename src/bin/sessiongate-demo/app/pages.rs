//! The demo's server-rendered pages. They read identity only from the request headers that
//! sessiongate injects, so they show a newcomer exactly what an upstream receives: the plain
//! `X-Auth-*` headers, the signed assertion, and whether that assertion checks out.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::assertion::{self, Assertion, Verdict};
use super::html::{escape, page};
use super::signin::{login_page, LoginForm};
use super::DemoSettings;

/// Who sessiongate says the user is, from the convenience headers.
struct Identity {
    user: String,
    email: Option<String>,
    roles: Option<String>,
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?;
    let text = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn identity(headers: &HeaderMap) -> Option<Identity> {
    Some(Identity {
        user: header_text(headers, "x-auth-user")?,
        email: header_text(headers, "x-auth-email"),
        roles: header_text(headers, "x-auth-roles"),
    })
}

/// `GET /`: who is signed in, every identity header received, and the decoded assertion.
pub(super) async fn home(
    State(settings): State<Arc<DemoSettings>>,
    headers: HeaderMap,
) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let assertion = header_text(&headers, &settings.assertion_header)
        .map(|token| assertion::inspect(&token, settings.verify_key.as_deref(), now));
    let mut body = String::from(
        "<p class=\"note\">A pretend legacy app: it keeps no session of its own and trusts the \
         identity headers sessiongate sends.</p>",
    );
    let identity = identity(&headers);
    match &identity {
        Some(id) => body.push_str(&signed_in(id)),
        None => {
            body.push_str("<p>You are not signed in. <a href=\"/login?next=%2F\">Sign in</a></p>")
        }
    }
    body.push_str(&headers_table(&headers, &settings.assertion_header));
    body.push_str(&assertion_section(assertion.as_ref()));
    if identity.is_some() {
        let display_name = assertion
            .as_ref()
            .and_then(|a| a.as_ref().ok())
            .and_then(|a| a.claims.get("display_name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        body.push_str(&account_forms(display_name));
    }
    page(StatusCode::OK, "Demo legacy app", &body)
}

fn signed_in(id: &Identity) -> String {
    let mut html = format!(
        "<p class=\"ok\">Signed in as <strong>{}</strong></p><ul>",
        escape(&id.user)
    );
    let fields = [("Email", &id.email), ("Roles", &id.roles)];
    for (label, value) in fields {
        let value = value.as_deref().unwrap_or("(none)");
        html.push_str(&format!("<li>{label}: {}</li>", escape(value)));
    }
    html.push_str("</ul>");
    html
}

fn headers_table(headers: &HeaderMap, assertion_header: &str) -> String {
    let mut rows: Vec<(&str, String)> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with("x-auth-")
                || name.starts_with("x-sessiongate-")
                || name.eq_ignore_ascii_case(assertion_header)
        })
        .map(|(name, value)| {
            (
                name.as_str(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    if rows.is_empty() {
        return "<h2>Identity headers received</h2><p>None.</p>".into();
    }
    rows.sort();
    let mut html = String::from(
        "<h2>Identity headers received</h2><table><tr><th>Header</th><th>Value</th></tr>",
    );
    for (name, value) in rows {
        html.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(&value)
        ));
    }
    html.push_str("</table>");
    html
}

fn assertion_section(assertion: Option<&Result<Assertion, String>>) -> String {
    let mut html = String::from("<h2>Assertion</h2>");
    match assertion {
        None => html.push_str("<p>No assertion received.</p>"),
        Some(Err(reason)) => html.push_str(&format!(
            "<p class=\"error\">Malformed assertion: {}</p>",
            escape(reason)
        )),
        Some(Ok(a)) => {
            html.push_str(&match &a.verdict {
                Verdict::Valid => {
                    "<p class=\"ok\">Signature and expiry verified with the configured key.</p>"
                        .to_owned()
                }
                Verdict::Invalid(reason) => format!(
                    "<p class=\"error\">Invalid assertion: {}</p>",
                    escape(reason)
                ),
                Verdict::NotChecked => {
                    "<p class=\"note\">Signature not checked (no key given).</p>".to_owned()
                }
            });
            for (label, json) in [("Header", &a.header), ("Claims", &a.claims)] {
                let pretty = serde_json::to_string_pretty(json).unwrap_or_default();
                html.push_str(&format!("<h3>{label}</h3><pre>{}</pre>", escape(&pretty)));
            }
        }
    }
    html
}

fn account_forms(display_name: &str) -> String {
    format!(
        "<h2>Profile</h2><form method=\"post\" action=\"/profile\"><label>Display name \
         <input type=\"text\" name=\"display_name\" maxlength=\"100\" value=\"{}\"></label>\
         <button>Save</button> <span class=\"note\">Empty removes the claim.</span></form>\
         <h2>Sign out</h2>\
         <form class=\"inline\" method=\"post\" action=\"/logout\"><button>Sign out</button></form> \
         <form class=\"inline\" method=\"post\" action=\"/logout-all\">\
         <button>Sign out everywhere</button></form>",
        escape(display_name)
    )
}

/// `GET /public`: reachable without a session; says whether identity came along anyway.
pub(super) async fn public(headers: HeaderMap) -> Response {
    let status = match identity(&headers) {
        Some(id) => format!("Signed in as <strong>{}</strong>.", escape(&id.user)),
        None => "You are not signed in. <a href=\"/login?next=%2Fpublic\">Sign in</a>".into(),
    };
    let body = format!(
        "<p>This page works with or without a session; the quickstart config makes it a \
         public route.</p><p>{status}</p>"
    );
    page(StatusCode::OK, "Public page", &body)
}

/// The query of `GET /login`.
#[derive(Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: String,
}

/// `GET /login?next=/path`: the sign-in form.
pub(super) async fn login(Query(query): Query<NextQuery>) -> Response {
    let form = LoginForm {
        next: query.next,
        ..LoginForm::default()
    };
    login_page(StatusCode::OK, &form, None)
}

/// Any other path.
pub(super) async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<p>No such page. <a href=\"/\">Home</a></p>",
    )
}
