//! Header names the gateway reasons about, in one place for the configuration checks and the
//! protected namespace (`identity::namespace`): the folding rule names are compared by, and the
//! names the proxy sets, rebuilds or refuses.
//!
//! CGI, FastCGI and SCGI gateways (lighttpd, Apache 2.2, PHP) turn a header name into an
//! environment variable by folding every byte that is not a letter or digit to `_`, so names
//! compare case-insensitively with every such byte read as `-`.

/// The namespace prefix, folded.
pub const PREFIX: &[u8] = b"x-sessiongate-";

/// Headers sessiongate sets on every upstream request.
pub const SET_BY_PROXY: &[&str] = &["x-request-id"];

/// Headers apps read to pick the path to serve instead of the request line.
pub const REWRITE: &[&str] = &["x-original-url", "x-rewrite-url"];

/// A forwarding header the proxy reads from trusted peers and rebuilds for untrusted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// `X-Forwarded-For`: the chain of client addresses.
    For,
    /// `X-Forwarded-Host`.
    Host,
    /// `X-Forwarded-Proto`.
    Proto,
    /// RFC 7239 `Forwarded`.
    Forwarded,
    /// The others (`X-Real-IP`, `X-Forwarded-Port`, `-Prefix`, ...): kept from trusted peers,
    /// never set.
    Other,
}

/// The forwarding headers, folded, with their kind.
pub const FORWARDING: &[(&str, Forwarding)] = &[
    ("x-forwarded-for", Forwarding::For),
    ("x-forwarded-host", Forwarding::Host),
    ("x-forwarded-proto", Forwarding::Proto),
    ("forwarded", Forwarding::Forwarded),
    ("x-forwarded-port", Forwarding::Other),
    ("x-forwarded-prefix", Forwarding::Other),
    ("x-forwarded-server", Forwarding::Other),
    ("x-forwarded-ssl", Forwarding::Other),
    ("x-forwarded-scheme", Forwarding::Other),
    ("x-forwarded-uri", Forwarding::Other),
    ("x-forwarded-method", Forwarding::Other),
    ("x-original-forwarded-for", Forwarding::Other),
    ("x-original-host", Forwarding::Other),
    ("x-url-scheme", Forwarding::Other),
    ("front-end-https", Forwarding::Other),
    ("x-real-ip", Forwarding::Other),
    ("x-client-ip", Forwarding::Other),
    ("true-client-ip", Forwarding::Other),
    ("x-cluster-client-ip", Forwarding::Other),
];

/// A header-name byte as the namespace compares it: lower-case alphanumerics, everything else
/// `-`.
pub fn fold_byte(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// A whole header name folded (for configuration checks; requests fold without allocating).
pub fn folded(name: &str) -> String {
    name.bytes().map(|b| char::from(fold_byte(b))).collect()
}
