//! Path normalisation for route matching. The upstream still receives the path as sent; this
//! form only decides which route (and so which auth policy) applies.

use std::borrow::Cow;

/// Why a request path is refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    #[error("the path has a backslash or a control character")]
    ForbiddenByte,
    #[error("the path has a malformed percent-encoding")]
    BadEncoding,
}

/// Percent-decodes the path (query removed), collapses repeated slashes, and refuses dot
/// segments, backslashes and control characters, encoded or not: these are the forms that
/// upstreams disagree on, and disagreement is how auth proxies get bypassed.
/// A path that needs no decoding or folding (the common case) is borrowed, not copied.
pub fn normalize_path(path_and_query: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    let path = match path_and_query.iter().position(|b| *b == b'?') {
        Some(q) => &path_and_query[..q],
        None => path_and_query,
    };
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if !path.contains(&b'%') && !path.windows(2).any(|w| w == b"//") {
        if path.iter().any(|&b| forbidden(b)) {
            return Err(PathError::ForbiddenByte);
        }
        return refuse_dot_segments(Cow::Borrowed(path));
    }
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
        out.push(b);
    }
    refuse_dot_segments(Cow::Owned(out))
}

fn forbidden(b: u8) -> bool {
    b == b'\\' || b < 0x20 || b == 0x7f
}

fn refuse_dot_segments(path: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, PathError> {
    if path
        .split(|b| *b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err(PathError::DotSegment);
    }
    Ok(path)
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

    #[test]
    fn plain_paths_pass_through() {
        assert_eq!(normalize_path(b"/app/x?y=1").unwrap().as_ref(), b"/app/x");
        assert_eq!(normalize_path(b"/").unwrap().as_ref(), b"/");
    }

    #[test]
    fn encodings_and_double_slashes_are_folded() {
        assert_eq!(normalize_path(b"/ad%6din").unwrap().as_ref(), b"/admin");
        assert_eq!(normalize_path(b"//admin//x").unwrap().as_ref(), b"/admin/x");
        assert_eq!(normalize_path(b"/a%2Fb").unwrap().as_ref(), b"/a/b");
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
        ] {
            assert_eq!(normalize_path(bad), Err(PathError::DotSegment), "{bad:?}");
        }
        assert_eq!(normalize_path(b"/a\\b"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a%5cb"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a%00"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize_path(b"/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path(b"/a%2"), Err(PathError::BadEncoding));
        assert_eq!(normalize_path(b"*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn dots_inside_names_are_fine() {
        assert_eq!(
            normalize_path(b"/a/.well-known/x..y").unwrap().as_ref(),
            b"/a/.well-known/x..y"
        );
    }
}
