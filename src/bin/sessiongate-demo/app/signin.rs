//! The sign-in form: its fields, the page that shows it (for `GET /login` and for a refused
//! `POST /login`), and the check that keeps `next` on this site.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::html::{escape, page};

/// The sign-in form's fields; missing fields are empty so a bare POST gets the form back.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LoginForm {
    pub(super) username: String,
    pub(super) email: String,
    pub(super) roles: String,
    pub(super) next: String,
}

/// `next` if it is a path on this site, else `/`.
///
/// Rejects anything a browser could read as another origin (`//host`, `/\host`, `scheme:`)
/// and control characters; spaces and non-ASCII bytes are percent-encoded so the result is a
/// valid `Location` value.
pub(super) fn safe_next(next: &str) -> String {
    let on_site = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if !on_site {
        return "/".into();
    }
    let mut path = String::with_capacity(next.len());
    for byte in next.bytes() {
        if byte.is_ascii_graphic() {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// The sign-in form, refilled from `form`, with an optional error line.
pub(super) fn login_page(status: StatusCode, form: &LoginForm, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<p class=\"note\">This is a demo: any non-empty username is accepted, there is no \
         password.</p>{error}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>Username <input type=\"text\" name=\"username\" maxlength=\"100\" \
         value=\"{username}\" autofocus></label>\
         <label>Email (optional) <input type=\"email\" name=\"email\" maxlength=\"200\" \
         value=\"{email}\"></label>\
         <label>Roles (comma-separated) <input type=\"text\" name=\"roles\" maxlength=\"200\" \
         value=\"{roles}\"></label><button>Sign in</button></form>",
        next = escape(&safe_next(&form.next)),
        username = escape(&form.username),
        email = escape(&form.email),
        roles = escape(&form.roles),
    );
    page(status, "Sign in", &body)
}
