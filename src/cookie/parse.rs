//! Reads the session cookie from every `Cookie` header of a request (HTTP/2 splits cookies into
//! several headers; they are one list). Strict on purpose: a value that is not exactly a signed
//! id whose MAC verifies, or a name that appears twice (cookie tossing), means "no session"
//! without touching the store (docs/protocol.md).

use super::CookieCodec;
use crate::session::SessionId;

/// What the request says about the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCookie {
    Absent,
    Valid(SessionId),
    /// Present, but not a signed id whose MAC verifies (forged, wrong length, alphabet,
    /// quoting...).
    Malformed,
    /// Present more than once: never "take the first".
    Duplicate,
}

/// The session cookie, and the `Cookie` header to send upstream in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieScan {
    pub session: SessionCookie,
    /// `Some` when the session cookie was present, or the cookies came in several `Cookie`
    /// fields (HTTP/2 splits them; an HTTP/1.1 app may read only the first field, RFC 9113
    /// §8.2.3): the other cookies, joined with `"; "` into one field (empty when there are
    /// none). `None` when the one Cookie header can pass unchanged.
    pub forwarded: Option<Vec<u8>>,
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Scans the values of every `Cookie` header for the cookie called `name`, verified by `codec`.
pub fn scan<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
    codec: &CookieCodec,
) -> CookieScan {
    let name = name.as_bytes();
    let mut found: Option<&[u8]> = None;
    let mut count = 0usize;
    // The other cookies, joined; allocated once, only when there is something to put in it.
    let mut others: Vec<u8> = Vec::new();
    let mut fields = 0usize;
    for header in headers {
        fields += 1;
        for pair in header.split(|b| *b == b';') {
            let pair = trim(pair);
            if pair.is_empty() {
                continue;
            }
            let (n, v) = match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (trim(&pair[..eq]), trim(&pair[eq + 1..])),
                None => (pair, &b""[..]),
            };
            if n == name {
                count += 1;
                found = Some(v);
            } else {
                if others.is_empty() {
                    others.reserve(header.len());
                } else {
                    others.extend_from_slice(b"; ");
                }
                others.extend_from_slice(pair);
            }
        }
    }
    let session = match (count, found) {
        (0, _) | (_, None) => SessionCookie::Absent,
        (1, Some(value)) => codec
            .decode(value)
            .map_or(SessionCookie::Malformed, SessionCookie::Valid),
        _ => SessionCookie::Duplicate,
    };
    let forwarded = (count > 0 || fields > 1).then_some(others);
    CookieScan { session, forwarded }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "__Host-sid";

    fn codec() -> CookieCodec {
        CookieCodec::new(&[b"cookie-key-0123456789abcdefghijklmnop"])
    }

    fn id() -> (SessionId, String) {
        let id = SessionId::generate().unwrap();
        let s = codec().encode(&id);
        (id, s)
    }

    fn scan<'a>(headers: impl IntoIterator<Item = &'a [u8]>, name: &str) -> CookieScan {
        super::scan(headers, name, &codec())
    }

    #[test]
    fn no_cookie_header_means_absent_and_untouched() {
        let s = scan(std::iter::empty(), NAME);
        assert_eq!(s.session, SessionCookie::Absent);
        assert_eq!(s.forwarded, None);
        let s = scan([&b"a=1; b=2"[..]], NAME);
        assert_eq!(s.session, SessionCookie::Absent);
        assert_eq!(s.forwarded, None);
    }

    #[test]
    fn finds_the_id_and_keeps_the_other_cookies() {
        let (id, v) = id();
        let header = format!("a=1; {NAME}={v};b=2");
        let s = scan([header.as_bytes()], NAME);
        assert_eq!(s.session, SessionCookie::Valid(id));
        assert_eq!(s.forwarded.as_deref(), Some(&b"a=1; b=2"[..]));
    }

    #[test]
    fn split_http2_cookie_headers_are_joined() {
        let (id, v) = id();
        let c = format!("{NAME}={v}");
        let s = scan([&b"a=1"[..], c.as_bytes(), b"b=2"], NAME);
        assert_eq!(s.session, SessionCookie::Valid(id));
        assert_eq!(s.forwarded.as_deref(), Some(&b"a=1; b=2"[..]));
        // Without the session cookie too: the app gets one Cookie field.
        let s = scan([&b"a=1"[..], b"b=2; c=3"], NAME);
        assert_eq!(s.session, SessionCookie::Absent);
        assert_eq!(s.forwarded.as_deref(), Some(&b"a=1; b=2; c=3"[..]));
    }

    #[test]
    fn only_cookie_leaves_nothing_to_forward() {
        let (_, v) = id();
        let c = format!("{NAME}={v}");
        assert_eq!(
            scan([c.as_bytes()], NAME).forwarded.as_deref(),
            Some(&b""[..])
        );
    }

    #[test]
    fn duplicates_are_never_resolved() {
        let (_, a) = id();
        let (_, b) = id();
        for header in [
            format!("{NAME}={a}; {NAME}={b}"),
            format!("{NAME}={a}; {NAME}={a}"),
        ] {
            assert_eq!(
                scan([header.as_bytes()], NAME).session,
                SessionCookie::Duplicate
            );
        }
        let one = format!("{NAME}={a}");
        let two = format!("x=1; {NAME}={b}");
        assert_eq!(
            scan([one.as_bytes(), two.as_bytes()], NAME).session,
            SessionCookie::Duplicate
        );
    }

    #[test]
    fn malformed_values_are_not_sessions() {
        let (_, v) = id();
        let long = "A".repeat(4096);
        let plus = "+".repeat(64);
        let truncated = &v[..63];
        let extended = format!("{v}x");
        let quoted = format!("\"{v}\"");
        // A well-formed id without its MAC, and one signed under another key.
        let bare = SessionId::generate().unwrap().encode();
        let foreign = CookieCodec::new(&[b"another-key-0123456789abcdefghijklmn"])
            .encode(&SessionId::generate().unwrap());
        for value in [
            "", "short", truncated, &extended, &quoted, &long, &plus, &bare, &foreign,
        ] {
            let header = format!("{NAME}={value}");
            assert_eq!(
                scan([header.as_bytes()], NAME).session,
                SessionCookie::Malformed,
                "{value}"
            );
        }
        assert_eq!(
            scan([&b"__Host-sid"[..]], NAME).session,
            SessionCookie::Malformed
        );
        assert_eq!(
            scan([&b"__Host-sid=\xff\xfe"[..]], NAME).session,
            SessionCookie::Malformed
        );
    }

    #[test]
    fn names_are_case_sensitive_and_exact() {
        let (_, v) = id();
        let header = format!("__host-sid={v}; __Host-sid2={v}");
        let s = scan([header.as_bytes()], NAME);
        assert_eq!(s.session, SessionCookie::Absent);
    }
}
