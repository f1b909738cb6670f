//! Route selection: which route answers a request, by host and longest path prefix, matched
//! on a normalised path so that an upstream that decodes or collapses paths differently cannot
//! be reached past a route's auth policy.

mod path;

pub use path::{normalize_path, PathError};

use std::borrow::Cow;

use crate::config::model::{HostPattern, RouteSettings};

/// The routes of one configuration, ready to match requests.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<RouteSettings>,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteSettings>) -> Self {
        RouteTable { routes }
    }

    pub fn get(&self, index: usize) -> &RouteSettings {
        &self.routes[index]
    }

    /// The index of the route for `host` (lower case, no port) and a normalised `path`.
    ///
    /// The most specific host pattern wins (exact, then the longest `*.` suffix, then `*`), and
    /// among routes of that host the longest matching path prefix; a prefix matches only at a
    /// segment boundary, so `/app` matches `/app` and `/app/x` but not `/apple`.
    pub fn find(&self, host: &str, path: &[u8]) -> Option<usize> {
        let mut best: Option<(usize, (usize, usize))> = None;
        for (i, route) in self.routes.iter().enumerate() {
            let Some(host_rank) = host_rank(&route.host, host) else {
                continue;
            };
            if !prefix_matches(route.path_prefix.as_bytes(), path) {
                continue;
            }
            let rank = (host_rank, route.path_prefix.len());
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }
}

fn host_rank(pattern: &HostPattern, host: &str) -> Option<usize> {
    match pattern {
        HostPattern::Any => Some(0),
        HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()).then_some(1 + suffix.len()),
        HostPattern::Exact(exact) => (exact == host).then_some(usize::MAX),
    }
}

fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with(b"/") || path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// The host a request is for: the Host header (or the URI authority), lower case, without port.
pub fn request_host<'a>(host_header: Option<&'a [u8]>, uri_host: Option<&'a str>) -> Cow<'a, str> {
    let raw = host_header
        .and_then(|h| std::str::from_utf8(h).ok())
        .or(uri_host)
        .unwrap_or("");
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let host = without_port.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{AuthPolicy, OnStoreError};

    fn route(host: HostPattern, prefix: &str) -> RouteSettings {
        RouteSettings {
            host,
            path_prefix: prefix.into(),
            upstream: 0,
            auth: AuthPolicy::Required,
            audience: "app".into(),
            login_url: None,
            on_store_error: OnStoreError::FailClosed,
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route(HostPattern::Any, "/"),
            route(HostPattern::Any, "/app"),
            route(HostPattern::Any, "/app/public/"),
            route(HostPattern::Exact("admin.example.com".into()), "/"),
            route(HostPattern::Suffix(".example.com".into()), "/"),
        ])
    }

    #[test]
    fn longest_prefix_wins_at_segment_boundaries() {
        let t = table();
        assert_eq!(t.find("x", b"/"), Some(0));
        assert_eq!(t.find("x", b"/app"), Some(1));
        assert_eq!(t.find("x", b"/app/x"), Some(1));
        assert_eq!(t.find("x", b"/apple"), Some(0));
        assert_eq!(t.find("x", b"/app/public/a"), Some(2));
        assert_eq!(t.find("x", b"/app/public"), Some(1));
    }

    #[test]
    fn most_specific_host_wins() {
        let t = table();
        assert_eq!(t.find("admin.example.com", b"/app"), Some(3));
        assert_eq!(t.find("www.example.com", b"/app"), Some(4));
        assert_eq!(t.find("example.com", b"/app"), Some(1));
    }

    #[test]
    fn no_route_when_nothing_matches() {
        let t = RouteTable::new(vec![route(HostPattern::Exact("a".into()), "/x")]);
        assert_eq!(t.find("b", b"/x"), None);
        assert_eq!(t.find("a", b"/y"), None);
    }

    #[test]
    fn host_is_normalised() {
        assert_eq!(
            request_host(Some(b"App.Example.com:8080"), None),
            "app.example.com"
        );
        assert_eq!(request_host(Some(b"[::1]:8080"), None), "::1");
        assert_eq!(request_host(None, Some("h.example")), "h.example");
        assert_eq!(request_host(Some(b"h.example."), None), "h.example");
    }
}
