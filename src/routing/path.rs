//! Path normalisation for route matching. The upstream still receives the path as sent; this
//! form only decides which route (and so which auth policy) applies, so it must be the path
//! the app behind will serve, whichever kind of server that is.
//!
//! - Servlet containers (Tomcat, Jetty) cut a `;parameter` from every segment before they
//!   decode and resolve the path: `/public/..;/admin` is `/admin` to them. Routes match on that
//!   mapped form; a segment that is `.` or `..` once its parameters are cut is refused.
//! - Other servers keep the parameters in the name. The path with its parameters must land on
//!   the same route (a `;` ends a route prefix like a `/` does), or the request is refused:
//!   the two kinds of app would disagree about which policy applies.
//! - Windows and IIS strip trailing dots and spaces from names, open alternate data streams
//!   (`name::$DATA`), resolve 8.3 short names (`ADMINI~1`), and some decoders accept overlong
//!   UTF-8 (`%c0%ae` for `.`) or map look-alike characters (`．`, `∕`) onto `.`, `/` and `\`.
//!   Every such form is refused outright: no legitimate link needs one.
//! - Dot segments, backslashes, control characters and malformed percent-encoding are refused
//!   whether encoded or not, and an encoded `;` (`%3B`) is refused because containers disagree
//!   on whether it starts a parameter.

use std::borrow::Cow;

/// Why a request path is refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error(
        "the path has a '.' or '..' segment (parameters cut, as a servlet container reads it)"
    )]
    DotSegment,
    #[error("the path has a backslash, a control character or a '#'")]
    ForbiddenByte,
    #[error("the path has a malformed percent-encoding")]
    BadEncoding,
    #[error("the path has an encoded ';' (%3B)")]
    EncodedParameter,
    #[error("the path is percent-encoded twice (%25 followed by an escape)")]
    DoubleEncoding,
    #[error("the path has a segment ending in '.' or a space, which Windows strips")]
    TrailingDotOrSpace,
    #[error("the path names an NTFS alternate data stream (':$')")]
    AlternateDataStream,
    #[error("the path has an 8.3 short name ('~' and a digit)")]
    ShortName,
    #[error("the path has an overlong UTF-8 sequence")]
    OverlongUtf8,
    #[error("the path has a character Windows maps onto '.', '/' or '\\'")]
    LookalikeCharacter,
}

/// A request path in the forms routes are matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath<'a> {
    /// The path as a servlet container maps it: parameters cut from every segment,
    /// percent-decoded, repeated slashes folded. Borrowed when the path needed none of that.
    pub mapped: Cow<'a, [u8]>,
    /// The same path with the parameters left in, when it had any.
    pub with_params: Option<Vec<u8>>,
}

impl RoutePath<'_> {
    /// The mapped form as text, for logs.
    pub fn display(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.mapped)
    }
}

/// Reads the path of a request target (the query is ignored) in the forms routes match on,
/// or says why it is refused.
pub fn normalize_path(path_and_query: &[u8]) -> Result<RoutePath<'_>, PathError> {
    let path = match path_and_query.iter().position(|b| *b == b'?') {
        Some(q) => &path_and_query[..q],
        None => path_and_query,
    };
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let needs_work = path.contains(&b'%') || path.contains(&b';') || has_double_slash(path);
    if !needs_work {
        if path.iter().any(|&b| forbidden(b)) {
            return Err(PathError::ForbiddenByte);
        }
        check_segments(path)?;
        return Ok(RoutePath {
            mapped: Cow::Borrowed(path),
            with_params: None,
        });
    }
    let has_params = path.contains(&b';');
    let mapped = decode(&cut_parameters(path))?;
    check_segments(&mapped)?;
    let with_params = if has_params {
        let literal = decode(path)?;
        check_segments(&literal)?;
        Some(literal)
    } else {
        None
    };
    Ok(RoutePath {
        mapped: Cow::Owned(mapped),
        with_params,
    })
}

fn has_double_slash(path: &[u8]) -> bool {
    path.windows(2).any(|w| w == b"//")
}

/// The path with every `;parameter` cut from its segment, as servlet containers do before
/// decoding.
fn cut_parameters(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut in_params = false;
    for &b in path {
        match b {
            b'/' => {
                in_params = false;
                out.push(b);
            }
            b';' => in_params = true,
            _ if !in_params => out.push(b),
            _ => {}
        }
    }
    out
}

/// Percent-decodes `path`, folds repeated slashes, and refuses forbidden bytes, encoded or not,
/// and double encodings. A decoded `%` or `?` stays encoded (`%25`, `%3F`).
fn decode(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let mut b = path[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
            b = decode_hex(hex[0])
                .zip(decode_hex(hex[1]))
                .map(|(h, l)| h << 4 | l)
                .ok_or(PathError::BadEncoding)?;
            if b == b';' {
                return Err(PathError::EncodedParameter);
            }
            i += 3;
        } else {
            i += 1;
        }
        if forbidden(b) {
            return Err(PathError::ForbiddenByte);
        }
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        match b {
            // Kept encoded: the decoded form reads the same when normalised again, and never
            // gains a query or an escape of its own.
            b'%' => out.extend_from_slice(b"%25"),
            b'?' => out.extend_from_slice(b"%3F"),
            _ => out.push(b),
        }
    }
    // What decoding left as an escape, a server that decodes once more would read as the
    // character (`%252e` is `%2e`, then `.`).
    let twice = out
        .windows(5)
        .any(|w| w.starts_with(b"%25") && decode_hex(w[3]).is_some() && decode_hex(w[4]).is_some());
    if twice {
        return Err(PathError::DoubleEncoding);
    }
    Ok(out)
}

fn forbidden(b: u8) -> bool {
    b == b'\\' || b == b'#' || b < 0x20 || b == 0x7f
}

/// The checks every decoded segment must pass.
fn check_segments(path: &[u8]) -> Result<(), PathError> {
    for segment in path.split(|b| *b == b'/') {
        check_segment(segment)?;
    }
    if path.iter().any(|b| *b >= 0x80) {
        check_non_ascii(path)?;
    }
    Ok(())
}

fn check_segment(segment: &[u8]) -> Result<(), PathError> {
    if segment == b"." || segment == b".." {
        return Err(PathError::DotSegment);
    }
    if matches!(segment.last(), Some(b'.' | b' ')) {
        return Err(PathError::TrailingDotOrSpace);
    }
    if segment.windows(2).any(|w| w == b":$") {
        return Err(PathError::AlternateDataStream);
    }
    if segment
        .windows(2)
        .any(|w| w[0] == b'~' && w[1].is_ascii_digit())
    {
        return Err(PathError::ShortName);
    }
    Ok(())
}

/// Overlong UTF-8 and the look-alikes that Windows' best-fit mappings turn into `.`, `/`, `\`.
fn check_non_ascii(path: &[u8]) -> Result<(), PathError> {
    /// U+2024 one dot leader, U+2215 division slash, U+2216 set minus, U+FE52 small full stop,
    /// U+FF0E fullwidth full stop, U+FF0F fullwidth solidus, U+FF3C fullwidth reverse solidus.
    const LOOKALIKES: &[&[u8]] = &[
        "\u{2024}".as_bytes(),
        "\u{2215}".as_bytes(),
        "\u{2216}".as_bytes(),
        "\u{FE52}".as_bytes(),
        "\u{FF0E}".as_bytes(),
        "\u{FF0F}".as_bytes(),
        "\u{FF3C}".as_bytes(),
    ];
    for (i, &b) in path.iter().enumerate() {
        let next = path.get(i + 1).copied().unwrap_or(0);
        let overlong = match b {
            // Latin-1 `À`/`Á` followed by anything but a continuation byte is not UTF-8 at all.
            0xC0 | 0xC1 => (0x80..=0xBF).contains(&next),
            0xE0 => (0x80..=0x9F).contains(&next),
            0xF0 => (0x80..=0x8F).contains(&next),
            _ => false,
        };
        if overlong {
            return Err(PathError::OverlongUtf8);
        }
        if (b == 0xE2 || b == 0xEF) && LOOKALIKES.iter().any(|l| path[i..].starts_with(l)) {
            return Err(PathError::LookalikeCharacter);
        }
    }
    Ok(())
}

fn decode_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(path: &[u8]) -> Vec<u8> {
        normalize_path(path).unwrap().mapped.into_owned()
    }

    #[test]
    fn plain_paths_pass_through_borrowed() {
        let p = normalize_path(b"/app/x?y=1").unwrap();
        assert!(matches!(p.mapped, Cow::Borrowed(b"/app/x")));
        assert_eq!(p.with_params, None);
        assert_eq!(mapped(b"/"), b"/");
    }

    #[test]
    fn encodings_and_double_slashes_are_folded() {
        assert_eq!(mapped(b"/ad%6din"), b"/admin");
        assert_eq!(mapped(b"//admin//x"), b"/admin/x");
        assert_eq!(mapped(b"/a%2Fb"), b"/a/b");
    }

    #[test]
    fn decoded_percent_and_question_marks_stay_encoded_and_double_encodings_are_refused() {
        assert_eq!(mapped(b"/100%25"), b"/100%25");
        assert_eq!(mapped(b"/a%25zz"), b"/a%25zz");
        assert_eq!(mapped(b"/legacy/admin%3f"), b"/legacy/admin%3F");
        // Normalising the mapped form again gives it back.
        for raw in [
            &b"/100%25"[..],
            b"/a%25zz",
            b"/legacy/admin%3f",
            b"/x%3F%25",
        ] {
            let once = mapped(raw);
            assert_eq!(mapped(&once), once, "{}", String::from_utf8_lossy(raw));
        }
        for twice in [
            &b"/%252e"[..],
            b"/public/%252e%252e/admin",
            b"/%25%34%31",
            b"/a%252Fb",
        ] {
            assert_eq!(
                normalize_path(twice),
                Err(PathError::DoubleEncoding),
                "{}",
                String::from_utf8_lossy(twice)
            );
        }
    }

    #[test]
    fn servlet_parameters_are_cut_from_every_segment() {
        let p = normalize_path(b"/legacy/admin;jsessionid=x/page;v=1?q").unwrap();
        assert_eq!(p.mapped.as_ref(), b"/legacy/admin/page");
        assert_eq!(
            p.with_params.as_deref(),
            Some(&b"/legacy/admin;jsessionid=x/page;v=1"[..])
        );
        assert_eq!(mapped(b"/shop;jsessionid=ABC"), b"/shop");
        assert_eq!(mapped(b"/a/;x/b"), b"/a/b");
    }

    #[test]
    fn traversal_forms_are_refused() {
        for bad in [
            &b"/public/../admin"[..],
            b"/public/%2e%2e/admin",
            b"/public/.%2E/admin",
            b"/./admin",
            b"/public%2f..%2fadmin",
            b"/..",
            b"/public/..;/admin/secret",
            b"/public/%2e%2e;/admin/secret",
            b"/public/..;jsessionid=1/admin",
            b"/public/.;/..;/admin/secret",
            b"/public/.;x/admin",
        ] {
            assert_eq!(
                normalize_path(bad),
                Err(PathError::DotSegment),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(normalize_path(b"/a\\b"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a%5cb"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a%00"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a;x%00"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a#b"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path(b"/a%2"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path(b"/a%3bx"), Err(PathError::EncodedParameter));
        assert_eq!(normalize_path(b"*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn windows_forms_are_refused() {
        for (bad, why) in [
            (&b"/admin./secret"[..], PathError::TrailingDotOrSpace),
            (b"/admin%2e/secret", PathError::TrailingDotOrSpace),
            (b"/admin%20/secret", PathError::TrailingDotOrSpace),
            (b"/admin/secret.aspx.", PathError::TrailingDotOrSpace),
            (b"/admin/page.aspx::$DATA", PathError::AlternateDataStream),
            (
                b"/admin:$i30:$INDEX_ALLOCATION/x",
                PathError::AlternateDataStream,
            ),
            (b"/ADMINI~1/secret", PathError::ShortName),
            (b"/admini%7e1/secret", PathError::ShortName),
            (b"/public/%c0%ae%c0%ae/admin", PathError::OverlongUtf8),
            (b"/public/%e0%80%ae", PathError::OverlongUtf8),
            (b"/public/%f0%80%80%ae", PathError::OverlongUtf8),
            (
                b"/public/%ef%bc%8e%ef%bc%8e/admin",
                PathError::LookalikeCharacter,
            ),
            (b"/public%ef%bc%8fadmin", PathError::LookalikeCharacter),
            (b"/public%e2%88%95admin", PathError::LookalikeCharacter),
        ] {
            assert_eq!(
                normalize_path(bad),
                Err(why),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ordinary_names_are_fine() {
        for ok in [
            &b"/a/.well-known/x..y"[..],
            b"/~alice/page",
            b"/files/a~b",
            b"/wiki/Talk:Main",
            b"/caf%C3%A9",
            b"/%E4%BD%A0%E5%A5%BD",
            b"/shop;jsessionid=ABC.node1",
        ] {
            assert!(
                normalize_path(ok).is_ok(),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
    }
}
