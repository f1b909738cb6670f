//! The endpoints that change the session. The demo never stores anything: each one answers
//! `303 See Other` with one sessiongate control header (`X-Sessiongate-Login`, `-Update` or
//! `-Logout`) and leaves the session work to the proxy.

use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::html::see_other;
use super::signin::{login_page, safe_next, LoginForm};

const LOGIN: &str = "x-sessiongate-login";
const UPDATE: &str = "x-sessiongate-update";
const LOGOUT: &str = "x-sessiongate-logout";

/// `POST /login`: accepts any non-empty username and hands its claims to sessiongate.
pub(super) async fn login(Form(form): Form<LoginForm>) -> Response {
    let username = form.username.trim();
    if username.is_empty() {
        return login_page(StatusCode::BAD_REQUEST, &form, Some("Enter a username."));
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), username.into());
    let email = form.email.trim();
    if !email.is_empty() {
        claims.insert("email".into(), email.into());
    }
    let roles: Vec<Value> = form
        .roles
        .split(',')
        .map(str::trim)
        .filter(|role| !role.is_empty())
        .map(Value::from)
        .collect();
    claims.insert("roles".into(), roles.into());
    let claims = header_json(&Value::Object(claims));
    see_other(&safe_next(&form.next), Some((LOGIN, &claims)))
}

/// `POST /logout`: ends this session only.
pub(super) async fn logout() -> Response {
    see_other("/", Some((LOGOUT, "current")))
}

/// `POST /logout-all`: ends every session of the signed-in user.
pub(super) async fn logout_all() -> Response {
    see_other("/", Some((LOGOUT, "all")))
}

/// The profile form's one field.
#[derive(Deserialize)]
pub(super) struct ProfileForm {
    #[serde(default)]
    display_name: String,
}

/// `POST /profile`: sets `display_name`, or deletes it (merge-patch `null`) when empty.
pub(super) async fn profile(Form(form): Form<ProfileForm>) -> Response {
    let name = form.display_name.trim();
    let value = if name.is_empty() {
        Value::Null
    } else {
        name.into()
    };
    let patch = header_json(&json!({ "display_name": value }));
    see_other("/", Some((UPDATE, &patch)))
}

/// Compact JSON that is printable ASCII, as a header value must be: any other character
/// (only ever inside a string) becomes a `\uXXXX` escape.
fn header_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}
