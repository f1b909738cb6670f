//! The protected header namespace: every inbound header name that an app behind the gateway
//! could read as one sessiongate vouches for. Inbound headers in it are removed before anything
//! else runs, on every route (docs/protocol.md, "The protected namespace").
//!
//! Names compare case-insensitively with **every** non-alphanumeric byte read as `-`: CGI,
//! FastCGI and SCGI gateways (lighttpd, Apache 2.2, PHP) turn a header name into an environment
//! variable by folding each of those bytes to `_`, so `X~Auth~User`, `X+Auth+User` and
//! `X_Auth_User` all reach the app as `HTTP_X_AUTH_USER`, the variable it reads for
//! `X-Auth-User`. A name matches a protected one when their folded forms are equal.
//!
//! The namespace has four parts, because they are handled differently once removed:
//! - identity: `X-Sessiongate-*`, the assertion header and every mapped identity header;
//! - set by the proxy: `X-Request-Id`, which sessiongate sends itself;
//! - forwarding: `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the client-address headers apps
//!   honour; rebuilt from what the proxy saw (see `inbound::forwarded`), or, from a trusted
//!   proxy, kept in their canonical spelling and extended;
//! - rewrite: `X-Original-URL` and `X-Rewrite-URL`, which IIS and some frameworks use to pick
//!   the path to serve: always removed.

use http::HeaderName;

use crate::header_names::{
    fold_byte, folded, Forwarding, FORWARDING, PREFIX, REWRITE, SET_BY_PROXY,
};

/// Which part of the namespace a header name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    Identity,
    SetByProxy,
    /// A forwarding header; `canonical` when the name is spelled exactly as the standard one
    /// (lower case with `-`), the only spelling kept from a trusted proxy.
    Forwarding {
        kind: Forwarding,
        canonical: bool,
    },
    Rewrite,
}

impl Protected {
    /// Whether a client sending this header is trying to speak for the proxy: everything but a
    /// forwarding header in its standard spelling, which ordinary proxies in front send.
    pub fn is_spoof(self) -> bool {
        !matches!(
            self,
            Protected::Forwarding {
                canonical: true,
                ..
            }
        )
    }
}

fn folded_eq(name: &[u8], folded: &[u8]) -> bool {
    name.len() == folded.len() && name.iter().zip(folded).all(|(a, b)| fold_byte(*a) == *b)
}

/// The protected header names of one configuration.
#[derive(Debug, Clone)]
pub struct ProtectedNamespace {
    /// Folded names and their part, besides the `X-Sessiongate-` prefix.
    exact: Vec<(Vec<u8>, Protected)>,
    /// Which folded first bytes and which lengths protected names have: most inbound names
    /// (`host`, `accept`, `cookie`, ...) are ruled out by these two bit tests alone.
    first_bytes: [u64; 4],
    lengths: u128,
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn has_bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

impl ProtectedNamespace {
    /// The namespace for these identity header names (the assertion and the mapped headers),
    /// the headers the proxy sets, the forwarding and the rewrite headers.
    pub fn new<'a>(identity: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let mut exact: Vec<(Vec<u8>, Protected)> = identity
            .into_iter()
            .map(|n| (folded(n.as_str()).into_bytes(), Protected::Identity))
            .collect();
        exact.extend(
            SET_BY_PROXY
                .iter()
                .map(|n| (n.as_bytes().to_vec(), Protected::SetByProxy)),
        );
        exact.extend(
            REWRITE
                .iter()
                .map(|n| (n.as_bytes().to_vec(), Protected::Rewrite)),
        );
        exact.extend(FORWARDING.iter().map(|(n, kind)| {
            (
                n.as_bytes().to_vec(),
                Protected::Forwarding {
                    kind: *kind,
                    canonical: false,
                },
            )
        }));
        let mut first_bytes = [0u64; 4];
        let mut lengths = 0u128;
        set_bit(&mut first_bytes, usize::from(PREFIX[0]));
        for (name, _) in &exact {
            if let Some(first) = name.first() {
                set_bit(&mut first_bytes, usize::from(*first));
            }
            // Names of 128 bytes or more are rare enough to always take the slow path.
            lengths |= 1u128 << name.len().min(127);
        }
        lengths |= 1u128 << 127;
        ProtectedNamespace {
            exact,
            first_bytes,
            lengths,
        }
    }

    /// The part of the namespace an inbound header with this name is in, if any.
    pub fn classify(&self, name: &[u8]) -> Option<Protected> {
        let first = usize::from(fold_byte(*name.first()?));
        if !has_bit(&self.first_bytes, first) {
            return None;
        }
        if name.len() >= PREFIX.len() && folded_eq(&name[..PREFIX.len()], PREFIX) {
            return Some(Protected::Identity);
        }
        if self.lengths & (1u128 << name.len().min(127)) == 0 {
            return None;
        }
        let (folded, part) = self.exact.iter().find(|(p, _)| folded_eq(name, p))?;
        Some(match *part {
            Protected::Forwarding { kind, .. } => Protected::Forwarding {
                kind,
                // `http` lower-cases names, so the standard spelling is byte-equal.
                canonical: name == folded.as_slice(),
            },
            other => other,
        })
    }

    /// Whether an inbound header with this name must be removed.
    pub fn is_protected(&self, name: &[u8]) -> bool {
        self.classify(name).is_some()
    }

    /// The names among `names` that are protected (each once), with their part.
    pub fn find<'a>(
        &self,
        names: impl IntoIterator<Item = &'a HeaderName>,
    ) -> Vec<(HeaderName, Protected)> {
        let mut found: Vec<(HeaderName, Protected)> = Vec::new();
        for name in names {
            if let Some(part) = self.classify(name.as_str().as_bytes()) {
                if !found.iter().any(|(n, _)| n == name) {
                    found.push((name.clone(), part));
                }
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

    /// Every byte RFC 9110 allows in a header name besides letters and digits.
    const TCHAR_SEPARATORS: &[u8] = b"!#$%&'*+-.^_`|~";

    #[test]
    fn every_spelling_of_a_protected_name_matches() {
        let ns = ns();
        for name in [
            "X-Sessiongate-Assertion",
            "x-sessiongate-login",
            "X_SESSIONGATE_ANYTHING",
            "x.sessiongate.assertion",
            "X~Sessiongate~Login",
            "X-Auth-User",
            "x_auth_user",
            "X.Auth.Roles",
            "x-auth_roles",
            "X~Auth~User",
            "X+Auth+User",
            "X!Auth!User",
            "x|auth`user",
        ] {
            assert!(ns.is_protected(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn every_separator_of_the_tchar_set_folds() {
        let ns = ns();
        for &a in TCHAR_SEPARATORS {
            for &b in TCHAR_SEPARATORS {
                let name = [b"X".as_slice(), &[a], b"Auth", &[b], b"User"].concat();
                assert_eq!(
                    ns.classify(&name),
                    Some(Protected::Identity),
                    "{}",
                    String::from_utf8_lossy(&name)
                );
                let prefixed = [b"x".as_slice(), &[a], b"sessiongate", &[b], b"x"].concat();
                assert!(ns.is_protected(&prefixed));
            }
        }
    }

    #[test]
    fn other_headers_pass() {
        let ns = ns();
        for name in [
            "accept",
            "x-auth-user2",
            "x-auth",
            "xauth-user",
            "x--auth-user",
            "x-sessiongate",
            "cookie",
            "x-auth-email",
            "x-forwarded",
        ] {
            assert!(!ns.is_protected(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn forwarding_rewrite_and_proxy_headers_are_in_the_namespace() {
        let ns = ns();
        assert_eq!(
            ns.classify(b"x-forwarded-for"),
            Some(Protected::Forwarding {
                kind: Forwarding::For,
                canonical: true
            })
        );
        assert_eq!(
            ns.classify(b"x_forwarded_for"),
            Some(Protected::Forwarding {
                kind: Forwarding::For,
                canonical: false
            })
        );
        assert_eq!(ns.classify(b"x-original-url"), Some(Protected::Rewrite));
        assert_eq!(ns.classify(b"x~rewrite~url"), Some(Protected::Rewrite));
        assert_eq!(ns.classify(b"x_request_id"), Some(Protected::SetByProxy));
        assert_eq!(
            ns.classify(b"forwarded"),
            Some(Protected::Forwarding {
                kind: Forwarding::Forwarded,
                canonical: true
            })
        );
        assert!(!ns.classify(b"x-real-ip").unwrap().is_spoof());
        assert!(ns.classify(b"x_real_ip").unwrap().is_spoof());
        assert!(ns.classify(b"x-auth-user").unwrap().is_spoof());
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
