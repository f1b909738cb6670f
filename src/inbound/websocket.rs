//! WebSocket upgrades (RFC 6455 §4): a tunnel is only opened for a genuine handshake. Once an
//! app answers 101 the proxy stops reading HTTP, so an `Upgrade` request without a real
//! handshake that a careless app answers with 101 would let whatever follows (`GET /admin`
//! with a forged `X-Auth-User`) reach it unexamined.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, Method, Version};
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 §1.3 appends to the key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a request says about upgrading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// No `Upgrade` header: an ordinary request.
    None,
    /// A valid WebSocket handshake, with the `Sec-WebSocket-Accept` a 101 must carry.
    WebSocket { accept: String },
    /// An upgrade to something else (`h2c`, TLS): the header is dropped and the request goes
    /// on as plain HTTP/1.1.
    Other,
}

/// Why a WebSocket handshake is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("a WebSocket handshake must be a GET over HTTP/1.1")]
    NotGet,
    #[error("a WebSocket handshake needs Connection: upgrade")]
    NoConnectionUpgrade,
    #[error("Sec-WebSocket-Key must be the base64 of 16 bytes, sent once")]
    BadKey,
    #[error("Sec-WebSocket-Version must be 13, sent once")]
    BadVersion,
}

fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then(|| first.as_bytes())
}

fn has_token(headers: &HeaderMap, name: &str, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// Reads the upgrade a request asks for.
pub fn classify(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<Upgrade, HandshakeError> {
    if !headers.contains_key(http::header::UPGRADE) {
        return Ok(Upgrade::None);
    }
    if !has_token(headers, "upgrade", b"websocket") {
        return Ok(Upgrade::Other);
    }
    if method != Method::GET || version != Version::HTTP_11 {
        return Err(HandshakeError::NotGet);
    }
    if !has_token(headers, "connection", b"upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    let key = single(headers, "sec-websocket-key").ok_or(HandshakeError::BadKey)?;
    let key = key.trim_ascii();
    match STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if single(headers, "sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::BadVersion);
    }
    Ok(Upgrade::WebSocket {
        accept: accept_for(key),
    })
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key ‖ GUID)).
pub fn accept_for(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// Whether a 101 response completes the handshake whose expected accept value is `accept`.
pub fn accepts(response: &HeaderMap, accept: &str) -> bool {
    single(response, "sec-websocket-accept").map(<[u8]>::trim_ascii) == Some(accept.as_bytes())
        && has_token(response, "upgrade", b"websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    #[test]
    fn the_rfc_example_handshake_is_accepted() {
        let up = classify(&Method::GET, Version::HTTP_11, &headers(GOOD)).unwrap();
        // RFC 6455 §1.3's example.
        assert_eq!(
            up,
            Upgrade::WebSocket {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }
        );
        let response = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]);
        assert!(accepts(&response, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(!accepts(&headers(&[("upgrade", "websocket")]), "x"));
        assert!(!accepts(
            &headers(&[("upgrade", "websocket"), ("sec-websocket-accept", "AAAA")]),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        ));
    }

    #[test]
    fn broken_handshakes_are_refused() {
        let without = |skip: &str| -> Vec<(&'static str, &str)> {
            GOOD.iter().filter(|(n, _)| *n != skip).copied().collect()
        };
        let cases: Vec<(Vec<(&'static str, &str)>, HandshakeError)> = vec![
            (without("sec-websocket-key"), HandshakeError::BadKey),
            (without("sec-websocket-version"), HandshakeError::BadVersion),
            (without("connection"), HandshakeError::NoConnectionUpgrade),
            (
                [
                    without("sec-websocket-key"),
                    vec![("sec-websocket-key", "c2hvcnQ=")],
                ]
                .concat(),
                HandshakeError::BadKey,
            ),
            (
                [
                    without("sec-websocket-key"),
                    vec![("sec-websocket-key", "!!!")],
                ]
                .concat(),
                HandshakeError::BadKey,
            ),
            (
                [
                    GOOD.to_vec(),
                    vec![("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")],
                ]
                .concat(),
                HandshakeError::BadKey,
            ),
            (
                [
                    without("sec-websocket-version"),
                    vec![("sec-websocket-version", "8")],
                ]
                .concat(),
                HandshakeError::BadVersion,
            ),
        ];
        for (pairs, why) in cases {
            assert_eq!(
                classify(&Method::GET, Version::HTTP_11, &headers(&pairs)),
                Err(why),
                "{pairs:?}"
            );
        }
        assert_eq!(
            classify(&Method::POST, Version::HTTP_11, &headers(GOOD)),
            Err(HandshakeError::NotGet)
        );
    }

    #[test]
    fn other_upgrades_and_plain_requests() {
        assert_eq!(
            classify(&Method::GET, Version::HTTP_11, &headers(&[])),
            Ok(Upgrade::None)
        );
        assert_eq!(
            classify(
                &Method::GET,
                Version::HTTP_11,
                &headers(&[("upgrade", "h2c"), ("connection", "upgrade")])
            ),
            Ok(Upgrade::Other)
        );
    }
}
