//! HTML output for the demo app: escaping, the shared page frame, and the 303 redirects
//! that carry sessiongate control headers. Every string that reaches a page passes through
//! [`escape`]; nothing else in the demo writes markup from outside input.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:52rem;margin:2rem auto;\
padding:0 1rem;color:#222}nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}\
td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}\
td{word-break:break-all;font-family:monospace}pre{background:#f4f4f4;padding:.6rem;overflow:auto}\
.note{color:#666;font-size:.9em}.error{color:#a00}.ok{color:#070}form.inline{display:inline}\
label{display:block;margin:.4rem 0}input[type=text],input[type=email]{width:18rem}";

/// Escapes text for use in HTML element content and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A full HTML page around `body`, which must already be escaped markup.
///
/// Pages show per-user identity, so no cache may keep them (`Cache-Control: no-store`).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · sessiongate demo</title><style>{STYLE}</style></head><body>\
         <nav><a href=\"/\">Home</a><a href=\"/public\">Public page</a></nav>\
         <h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// `303 See Other` to `location`, with an optional sessiongate control header.
///
/// Callers pass header-safe text (a checked path, ASCII-only JSON); should a value still be
/// rejected, the answer is a 500 page rather than a panic.
pub fn see_other(location: &str, control: Option<(&str, &str)>) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, location)
        .header(CACHE_CONTROL, "no-store");
    if let Some((name, value)) = control {
        builder = builder.header(name, value);
    }
    builder.body(axum::body::Body::empty()).unwrap_or_else(|_| {
        page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "<p class=\"error\">The redirect could not be built.</p>",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
