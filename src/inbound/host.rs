//! The host a request is for, read once and strictly: routes are chosen by it, and an app that
//! builds links or picks a tenant from the host must see the host the route was chosen for.
//!
//! An absolute-form target (`GET http://admin.example.com/x HTTP/1.1`) names the host itself;
//! a `Host` header beside it must agree. An HTTP/1.1 request without `Host` is refused (RFC 9112
//! §3.2), and so is a `Host` that is not `host[:port]`.

use std::borrow::Cow;

/// Why the request's host is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an HTTP/1.1 request needs a Host header")]
    Missing,
    #[error("the request has more than one Host header")]
    Repeated,
    #[error("the host is not host[:port]")]
    Invalid,
    #[error("the Host header differs from the request target's authority")]
    Disagrees,
    #[error("the request target's scheme is not http or https")]
    Scheme,
}

/// The host of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost<'a> {
    /// Lower case, without port or trailing dot: what routes match. Empty for an HTTP/1.0
    /// request that named no host.
    pub name: Cow<'a, str>,
    /// `host[:port]` as the client sent it: what the upstream gets as `Host`.
    pub authority: &'a str,
}

/// What the request line and headers say about the host.
#[derive(Debug, Clone, Copy)]
pub struct HostInput<'a> {
    /// HTTP/1.1 (or later HTTP/1) requests must carry `Host`; HTTP/2 carries `:authority`.
    pub requires_host_header: bool,
    /// Every `Host` header value.
    pub hosts: &'a [&'a [u8]],
    /// The authority of an absolute-form target (or HTTP/2's `:authority`).
    pub target_authority: Option<&'a str>,
    /// The scheme of an absolute-form target.
    pub target_scheme: Option<&'a str>,
}

/// Reads and checks the request's host.
pub fn request_host<'a>(input: HostInput<'a>) -> Result<RequestHost<'a>, HostError> {
    let header = match input.hosts {
        [] => None,
        [one] => Some(std::str::from_utf8(one).map_err(|_| HostError::Invalid)?),
        _ => return Err(HostError::Repeated),
    };
    if let Some(scheme) = input.target_scheme {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(HostError::Scheme);
        }
    }
    let authority = match (input.target_authority, header) {
        (Some(target), Some(header)) => {
            if !target.eq_ignore_ascii_case(header) {
                return Err(HostError::Disagrees);
            }
            target
        }
        (Some(target), None) if !input.requires_host_header => target,
        (None, Some(header)) => header,
        (_, None) if input.requires_host_header => return Err(HostError::Missing),
        (_, None) => {
            return Ok(RequestHost {
                name: Cow::Borrowed(""),
                authority: "",
            })
        }
    };
    let name = host_name(authority).ok_or(HostError::Invalid)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    Ok(RequestHost { name, authority })
}

/// The host part of `host[:port]`, or `None` when `authority` is not of that shape: a DNS
/// name or IPv4 address (letters, digits, `-`, `.`, `_`), or a bracketed IPv6 address, and a
/// port of one to five digits.
fn host_name(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            || inside.parse::<std::net::Ipv6Addr>().is_err()
        {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (inside, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    if !authority.starts_with('[')
        && (!host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            // Every label but a final empty one (a fully qualified `name.`) has a character.
            || host.starts_with('.')
            || host.contains(".."))
    {
        return None;
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if port.parse::<u32>().ok()? > 65535 {
            return None;
        }
    }
    Some(host)
}

/// An absolute-form request target (`http://host:port/path?query`), split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsoluteTarget<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    /// `/path?query` (`/` when the target had no path).
    pub origin: Cow<'a, [u8]>,
}

/// Splits an absolute-form target, or `None` when `target` is not one (origin-form starts
/// with `/`). Pingora keeps such a target verbatim as the raw path, with no authority in the
/// URI, so the host has to be read from here.
pub fn absolute_target(target: &[u8]) -> Option<AbsoluteTarget<'_>> {
    if target.first() == Some(&b'/') {
        return None;
    }
    let scheme_end = target.windows(3).position(|w| w == b"://")?;
    let scheme = std::str::from_utf8(&target[..scheme_end]).ok()?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let authority_end = rest
        .iter()
        .position(|b| *b == b'/' || *b == b'?')
        .unwrap_or(rest.len());
    let authority = std::str::from_utf8(&rest[..authority_end]).ok()?;
    let path = &rest[authority_end..];
    let origin = match path.first() {
        Some(b'/') => Cow::Borrowed(path),
        _ => Cow::Owned([b"/".as_slice(), path].concat()),
    };
    Some(AbsoluteTarget {
        scheme,
        authority,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<'a>(
        requires: bool,
        hosts: &'a [&'a [u8]],
        target: Option<&'a str>,
    ) -> Result<RequestHost<'a>, HostError> {
        request_host(HostInput {
            requires_host_header: requires,
            hosts,
            target_authority: target,
            target_scheme: target.map(|_| "http"),
        })
    }

    #[test]
    fn the_host_header_names_the_host() {
        let h = host(true, &[b"App.Example.com:8080"], None).unwrap();
        assert_eq!(h.name, "app.example.com");
        assert_eq!(h.authority, "App.Example.com:8080");
        assert_eq!(host(true, &[b"[::1]:8080"], None).unwrap().name, "::1");
        assert_eq!(
            host(true, &[b"h.example."], None).unwrap().name,
            "h.example"
        );
        assert_eq!(host(true, &[b"10.0.0.1"], None).unwrap().name, "10.0.0.1");
    }

    #[test]
    fn an_absolute_target_names_the_host_and_host_must_agree() {
        let h = host(false, &[], Some("admin.example.com")).unwrap();
        assert_eq!(h.name, "admin.example.com");
        assert_eq!(
            host(true, &[b"Admin.Example.com"], Some("admin.example.com"))
                .unwrap()
                .name,
            "admin.example.com"
        );
        assert_eq!(
            host(true, &[b"www.example.com"], Some("admin.example.com")),
            Err(HostError::Disagrees)
        );
        // HTTP/1.1 needs Host even with an absolute-form target.
        assert_eq!(
            host(true, &[], Some("admin.example.com")),
            Err(HostError::Missing)
        );
        assert_eq!(
            request_host(HostInput {
                requires_host_header: false,
                hosts: &[],
                target_authority: Some("x"),
                target_scheme: Some("ftp"),
            }),
            Err(HostError::Scheme)
        );
    }

    #[test]
    fn missing_repeated_and_malformed_hosts_are_refused() {
        assert_eq!(host(true, &[], None), Err(HostError::Missing));
        assert_eq!(host(false, &[], None).unwrap().name, "");
        assert_eq!(host(true, &[b"a", b"a"], None), Err(HostError::Repeated));
        for bad in [
            &b"www.example.com:admin.example.com"[..],
            b"",
            b":80",
            b"a:",
            b"a:123456",
            b"a:99999",
            b"a b",
            b"a/b",
            b"a@b",
            b"[::1",
            b"[]",
            b"[zz]",
            b"[::1]x",
            b"a,b",
            b"\xff",
            b".",
            b"..",
            b"a..",
            b"a..b",
            b".a",
            b"..:80",
        ] {
            assert_eq!(
                host(true, &[bad], None),
                Err(HostError::Invalid),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn absolute_targets_are_split() {
        let t = absolute_target(b"http://admin.example.com:8080/public/x?y").unwrap();
        assert_eq!(t.scheme, "http");
        assert_eq!(t.authority, "admin.example.com:8080");
        assert_eq!(t.origin.as_ref(), b"/public/x?y");
        assert_eq!(
            absolute_target(b"HTTPS://a.example?x")
                .unwrap()
                .origin
                .as_ref(),
            b"/?x"
        );
        assert_eq!(
            absolute_target(b"http://a.example")
                .unwrap()
                .origin
                .as_ref(),
            b"/"
        );
        assert_eq!(absolute_target(b"/public/x"), None);
        assert_eq!(absolute_target(b"/a://b"), None);
        assert_eq!(absolute_target(b"*"), None);
    }
}
