//! Forwarding headers: who the client is, and what it asked for, as the app behind hears it.
//!
//! Apps trust `X-Forwarded-For` for allow-lists, `X-Forwarded-Host` to build password-reset
//! links and `X-Forwarded-Proto` to decide on secure cookies, so a client must not choose them.
//! From a peer outside `[server] trusted_proxies` every forwarding header is removed (the
//! protected namespace does that) and sessiongate sets `X-Forwarded-For`, `-Proto` and `-Host`
//! (and RFC 7239 `Forwarded` when asked) from what it saw. From a trusted peer the headers it
//! sent in their standard spelling are kept, the chains are extended with the peer, and the
//! client is the rightmost address of the chain that is not a trusted proxy.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::header_names::{Forwarding as Kind, FORWARDING};

/// The headers to send upstream and the client they name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address: the peer, or from a trusted peer the rightmost untrusted hop.
    pub client: Option<IpAddr>,
    /// Headers for the upstream request, every inbound spelling of them having been removed.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// What the proxy saw of one request.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The address the connection came from.
    pub peer: Option<IpAddr>,
    /// `http` or `https`, as the client spoke to the listener.
    pub proto: &'static str,
    /// The request's `host[:port]` (empty when it named none).
    pub host: &'a str,
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
    /// Also set RFC 7239 `Forwarded`.
    forwarded_header: bool,
}

impl TrustedProxies {
    pub fn new(nets: Vec<ipnet::IpNet>, forwarded_header: bool) -> Self {
        TrustedProxies {
            nets,
            forwarded_header,
        }
    }

    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// The forwarding headers for a request with `inbound` headers (read before the protected
    /// namespace is stripped).
    pub fn forwarded(&self, seen: Seen<'_>, inbound: &HeaderMap) -> Forwarded {
        let trusted = seen.peer.is_some_and(|p| self.trusts(p));
        let kept = |name: &str| -> Option<String> {
            if !trusted {
                return None;
            }
            let mut joined = String::new();
            for value in inbound.get_all(name) {
                let value = value.to_str().ok()?.trim();
                if value.is_empty() {
                    continue;
                }
                if !joined.is_empty() {
                    joined.push_str(", ");
                }
                joined.push_str(value);
            }
            (!joined.is_empty()).then_some(joined)
        };
        let peer_text = seen
            .peer
            .map_or_else(|| "unknown".to_string(), |p| canonical(p).to_string());

        let chain = kept("x-forwarded-for");
        let client = match (&chain, seen.peer) {
            (Some(chain), Some(peer)) => Some(self.client_in_chain(chain, peer)),
            _ => seen.peer.map(canonical),
        };
        let mut headers = Vec::with_capacity(4);
        let mut push = |name: &'static str, value: HeaderValue| {
            headers.push((HeaderName::from_static(name), value));
        };
        let text = |value: String| HeaderValue::try_from(value).ok();
        let xff = match chain {
            Some(chain) => text(format!("{chain}, {peer_text}")),
            None => text(peer_text.clone()),
        };
        if let Some(xff) = xff {
            push("x-forwarded-for", xff);
        }
        match kept("x-forwarded-proto").and_then(text) {
            Some(proto) => push("x-forwarded-proto", proto),
            None => push("x-forwarded-proto", HeaderValue::from_static(seen.proto)),
        }
        let host = kept("x-forwarded-host").and_then(text).or_else(|| {
            (!seen.host.is_empty())
                .then(|| HeaderValue::from_str(seen.host).ok())
                .flatten()
        });
        if let Some(host) = host {
            push("x-forwarded-host", host);
        }
        let previous = kept("forwarded");
        if previous.is_some() || self.forwarded_header {
            let element = forwarded_element(seen);
            let value = match previous {
                Some(previous) => format!("{previous}, {element}"),
                None => element,
            };
            if let Some(value) = text(value) {
                push("forwarded", value);
            }
        }
        if trusted {
            for (name, kind) in FORWARDING {
                if *kind == Kind::Other {
                    if let Some(value) = kept(name).and_then(text) {
                        push(name, value);
                    }
                }
            }
        }
        Forwarded { client, headers }
    }

    /// The rightmost address of `chain, peer` that is not a trusted proxy (the leftmost when
    /// all are). An entry that is not an address ends the walk: the hop that reported it is
    /// the client as far as anyone can tell.
    fn client_in_chain(&self, chain: &str, peer: IpAddr) -> IpAddr {
        let mut client = canonical(peer);
        for entry in chain.rsplit(',') {
            if !self.trusts(client) {
                break;
            }
            match parse_node(entry.trim()) {
                Some(addr) => client = addr,
                None => break,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses read as IPv4, so `10.0.0.0/8` matches `::ffff:10.1.2.3`.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An address in an `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`.
fn parse_node(entry: &str) -> Option<IpAddr> {
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Some(canonical(addr));
    }
    if let Ok(sock) = entry.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    None
}

/// `for=…;proto=…;host=…` for this hop (RFC 7239 §4, with IPv6 nodes and ports quoted).
fn forwarded_element(seen: Seen<'_>) -> String {
    let mut out = String::with_capacity(64);
    match seen.peer.map(canonical) {
        Some(IpAddr::V4(v4)) => {
            let _ = write!(out, "for={v4}");
        }
        Some(IpAddr::V6(v6)) => {
            let _ = write!(out, "for=\"[{v6}]\"");
        }
        None => out.push_str("for=unknown"),
    }
    let _ = write!(out, ";proto={}", seen.proto);
    if !seen.host.is_empty() {
        if seen
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            let _ = write!(out, ";host={}", seen.host);
        } else {
            let _ = write!(out, ";host=\"{}\"", seen.host);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str], forwarded: bool) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect(), forwarded)
    }

    fn seen(peer: &str) -> Seen<'static> {
        Seen {
            peer: Some(peer.parse().unwrap()),
            proto: "http",
            host: "app.example.com:8080",
        }
    }

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn get<'a>(f: &'a Forwarded, name: &str) -> Option<&'a str> {
        f.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    const SPOOFS: &[(&str, &str)] = &[
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=127.0.0.1;host=evil.example"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-prefix", "/admin"),
    ];

    #[test]
    fn an_untrusted_peer_gets_what_the_proxy_saw() {
        let f = proxies(&["10.0.0.0/8"], false).forwarded(seen("203.0.113.7"), &map(SPOOFS));
        assert_eq!(f.client, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(get(&f, "x-forwarded-for"), Some("203.0.113.7"));
        assert_eq!(get(&f, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&f, "x-forwarded-host"), Some("app.example.com:8080"));
        assert_eq!(get(&f, "forwarded"), None);
        assert_eq!(get(&f, "x-real-ip"), None);
        assert_eq!(get(&f, "x-forwarded-prefix"), None);
        assert_eq!(f.headers.len(), 3);

        let f = proxies(&[], true).forwarded(seen("2001:db8::1"), &map(SPOOFS));
        assert_eq!(
            get(&f, "forwarded"),
            Some("for=\"[2001:db8::1]\";proto=http;host=\"app.example.com:8080\"")
        );
    }

    #[test]
    fn a_trusted_peer_keeps_and_extends_the_chain() {
        let trusted = proxies(&["10.0.0.0/8", "192.168.1.1/32"], false);
        let inbound = map(&[
            ("x-forwarded-for", "198.51.100.9, 203.0.113.7"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "www.example.com"),
            ("x-real-ip", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
        ]);
        let f = trusted.forwarded(seen("10.2.2.2"), &inbound);
        // 10.1.1.1 is trusted, 203.0.113.7 is not: that is the client.
        assert_eq!(f.client, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(
            get(&f, "x-forwarded-for"),
            Some("198.51.100.9, 203.0.113.7, 10.1.1.1, 10.2.2.2")
        );
        assert_eq!(get(&f, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&f, "x-forwarded-host"), Some("www.example.com"));
        assert_eq!(get(&f, "x-real-ip"), Some("203.0.113.7"));
        assert_eq!(
            get(&f, "forwarded"),
            Some("for=203.0.113.7, for=10.2.2.2;proto=http;host=\"app.example.com:8080\"")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusted = proxies(&["10.0.0.0/8"], false);
        let client = |chain: &str| {
            trusted
                .forwarded(seen("10.0.0.1"), &map(&[("x-forwarded-for", chain)]))
                .client
                .map(|c| c.to_string())
        };
        assert_eq!(client("1.1.1.1, 2.2.2.2").as_deref(), Some("2.2.2.2"));
        assert_eq!(client("1.1.1.1, 10.0.0.9").as_deref(), Some("1.1.1.1"));
        assert_eq!(client("10.0.0.8, 10.0.0.9").as_deref(), Some("10.0.0.8"));
        assert_eq!(client("[2001:db8::5]:443").as_deref(), Some("2001:db8::5"));
        assert_eq!(client("1.1.1.1:1234").as_deref(), Some("1.1.1.1"));
        // Garbage stops the walk at the proxy that reported it.
        assert_eq!(client("1.1.1.1, garbage").as_deref(), Some("10.0.0.1"));
        assert_eq!(
            client("::ffff:10.0.0.3, 3.3.3.3").as_deref(),
            Some("3.3.3.3")
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_ranges() {
        let trusted = proxies(&["127.0.0.0/8"], false);
        assert!(trusted.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!trusted.trusts("::1".parse().unwrap()));
    }
}
