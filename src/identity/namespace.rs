//! The protected header namespace: `X-Sessiongate-*`, the assertion header and every mapped
//! identity header. Inbound headers in it are removed before anything else runs, on every
//! route. Names compare case-insensitively with `_` and `.` read as `-`, because some servers
//! and frameworks (CGI, PHP, Rails) fold those forms together and would trust a spoofed one.

use http::HeaderName;

/// The namespace prefix, normalised.
pub const PREFIX: &[u8] = b"x-sessiongate-";

/// The set of protected header names.
#[derive(Debug, Clone)]
pub struct ProtectedNamespace {
    exact: Vec<Vec<u8>>,
}

/// Lower case, with `_` and `.` as `-`.
fn normalize_byte(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

fn normalized_eq(name: &[u8], protected: &[u8]) -> bool {
    name.len() == protected.len()
        && name
            .iter()
            .zip(protected)
            .all(|(a, b)| normalize_byte(*a) == *b)
}

impl ProtectedNamespace {
    /// The namespace for these exact header names (besides the `X-Sessiongate-` prefix).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let exact = names
            .into_iter()
            .map(|n| n.as_str().bytes().map(normalize_byte).collect())
            .collect();
        ProtectedNamespace { exact }
    }

    /// Whether an inbound header with this name must be removed.
    pub fn is_protected(&self, name: &[u8]) -> bool {
        (name.len() >= PREFIX.len() && normalized_eq(&name[..PREFIX.len()], PREFIX))
            || self.exact.iter().any(|p| normalized_eq(name, p))
    }

    /// The names among `names` that are protected (each once).
    pub fn find<'a>(&self, names: impl IntoIterator<Item = &'a HeaderName>) -> Vec<HeaderName> {
        let mut found: Vec<HeaderName> = Vec::new();
        for name in names {
            if self.is_protected(name.as_str().as_bytes()) && !found.contains(name) {
                found.push(name.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> ProtectedNamespace {
        let names = [
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x-auth-roles"),
        ];
        ProtectedNamespace::new(names.iter())
    }

    #[test]
    fn every_spelling_of_a_protected_name_matches() {
        let ns = ns();
        for name in [
            "X-Sessiongate-Assertion",
            "x-sessiongate-login",
            "X_SESSIONGATE_ANYTHING",
            "x.sessiongate.assertion",
            "X-Auth-User",
            "x_auth_user",
            "X.Auth.Roles",
            "x-auth_roles",
        ] {
            assert!(ns.is_protected(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn other_headers_pass() {
        let ns = ns();
        for name in [
            "accept",
            "x-auth-user2",
            "x-auth",
            "x-sessiongate",
            "cookie",
            "x-auth-email",
        ] {
            assert!(!ns.is_protected(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn find_lists_each_name_once() {
        let ns = ns();
        let names = [
            HeaderName::from_static("accept"),
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x_sessiongate_login"),
        ];
        let found = ns.find(names.iter());
        assert_eq!(found.len(), 2);
    }
}
