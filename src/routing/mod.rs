//! Route selection: which route answers a request, by host and longest path prefix, matched
//! on a normalised path so that an upstream that decodes or collapses paths differently cannot
//! be reached past a route's auth policy.

mod path;

pub use path::{normalize_path, PathError, RoutePath};

use crate::config::model::{best_route, RouteSettings};

/// Why a request matches no single route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No route serves this host and path.
    NoRoute,
    /// The path with its `;parameters` selects another route than the path a servlet container
    /// maps it to: apps of different kinds would read it under different policies.
    Ambiguous,
}

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

    /// The route for `host` (lower case, no port) and a request path in its routing forms:
    /// both forms must select the same route.
    pub fn route(&self, host: &str, path: &RoutePath<'_>) -> Result<usize, RouteError> {
        let mapped = self.find(host, &path.mapped);
        if let Some(literal) = &path.with_params {
            if self.find(host, literal) != mapped {
                return Err(RouteError::Ambiguous);
            }
        }
        mapped.ok_or(RouteError::NoRoute)
    }

    /// The index of the route for `host` (lower case, no port) and a normalised `path`.
    ///
    /// The most specific host pattern wins (exact, then the longest `*.` suffix, then `*`), and
    /// among routes of that host the longest matching path prefix; a prefix matches only at a
    /// segment boundary (`/`, or the `;` that starts a parameter), so `/app` matches `/app`,
    /// `/app/x` and `/app;v=1` but not `/apple`. A `case_insensitive` route compares the path
    /// ignoring ASCII case, as IIS does.
    pub fn find(&self, host: &str, path: &[u8]) -> Option<usize> {
        best_route(&self.routes, host, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{AuthPolicy, HostPattern};

    fn route(host: HostPattern, prefix: &str) -> RouteSettings {
        RouteSettings::new(host, prefix, AuthPolicy::Required)
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
    fn a_parameter_ends_a_prefix_like_a_slash() {
        let t = table();
        assert_eq!(t.find("x", b"/app;jsessionid=1"), Some(1));
        assert_eq!(t.find("x", b"/app;x/y"), Some(1));
        assert_eq!(t.find("x", b"/apple;x"), Some(0));
    }

    fn path(p: &[u8]) -> RoutePath<'_> {
        normalize_path(p).unwrap()
    }

    #[test]
    fn both_readings_of_a_path_with_parameters_must_agree() {
        let t = RouteTable::new(vec![
            route(HostPattern::Any, "/"),
            route(HostPattern::Any, "/legacy"),
            route(HostPattern::Any, "/legacy/admin"),
        ]);
        // Jetty served this from /legacy/admin: both readings say so now.
        assert_eq!(t.route("x", &path(b"/legacy/admin;jsessionid=x/y")), Ok(2));
        assert_eq!(t.route("x", &path(b"/legacy;v=1/page")), Ok(1));
        // Mapped: /legacy/admin/y; with parameters: /legacy;v=1/admin/y under /legacy.
        assert_eq!(
            t.route("x", &path(b"/legacy;v=1/admin/y")),
            Err(RouteError::Ambiguous)
        );
        assert_eq!(
            RouteTable::new(vec![route(HostPattern::Exact("a".into()), "/")])
                .route("b", &path(b"/x")),
            Err(RouteError::NoRoute)
        );
    }

    #[test]
    fn case_insensitive_routes_ignore_ascii_case() {
        let mut admin = route(HostPattern::Any, "/admin");
        admin.case_insensitive = true;
        let t = RouteTable::new(vec![route(HostPattern::Any, "/"), admin]);
        assert_eq!(t.find("x", b"/ADMIN/x"), Some(1));
        assert_eq!(t.find("x", b"/Admin"), Some(1));
        assert_eq!(t.find("x", b"/adminx"), Some(0));
        let exact = RouteTable::new(vec![
            route(HostPattern::Any, "/"),
            route(HostPattern::Any, "/admin"),
        ]);
        assert_eq!(exact.find("x", b"/ADMIN/x"), Some(0));
    }
}
