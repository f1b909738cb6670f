//! `[identity]` and `[identity.headers]`: the assertion, its signing key, and the headers mapped
//! from claims (which may not take over a header the proxy or clients need, and may not fold
//! together with another, as the protected namespace compares names).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::defaults;
use super::problems::{positive, Problems};
use super::secrets::{read_secret, Secret, SecretKeys};
use crate::config::file::RawIdentity;
use crate::config::model::{IdentitySettings, SecretBytes};

/// Request headers a mapped identity header may not take over: the proxy needs them, or
/// stripping them from every request would break clients.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "traceparent",
    "accept",
    "accept-encoding",
    "user-agent",
    "origin",
    "referer",
];

/// Whether a mapped identity header would take over a header the proxy or clients need, or
/// one the proxy sets or rebuilds itself (compared folded, as the namespace compares names).
fn reserved_header(name: &str) -> bool {
    use crate::header_names::{FORWARDING, REWRITE, SET_BY_PROXY};
    let name = normalized(name);
    RESERVED_HEADERS
        .iter()
        .chain(SET_BY_PROXY)
        .chain(REWRITE)
        .chain(FORWARDING.iter().map(|(n, _)| n))
        .any(|r| normalized(r) == name)
}

/// A header name as the protected namespace compares it.
fn normalized(name: &str) -> String {
    crate::header_names::folded(name)
}

fn header_name(value: &str, path: &str, p: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(value.as_bytes()) {
        Ok(name) if reserved_header(name.as_str()) => {
            p.add(
                path,
                format!("\"{value}\" is a header the proxy or clients need; pick another name"),
            );
            None
        }
        Ok(name) => Some(name),
        Err(_) => {
            p.add(path, format!("\"{value}\" is not a valid HTTP header name"));
            None
        }
    }
}

/// The signing key: exactly one source, at least `MIN_KEY_BYTES`.
fn read_key(raw: &RawIdentity, base: &Path, p: &mut Problems) -> Option<SecretBytes> {
    let (key, path) = read_secret(
        Secret {
            file: raw.signing_key_file.as_deref(),
            env: raw.signing_key_env.as_deref(),
            insecure_inline: raw.insecure_signing_key.as_deref(),
            required: true,
        },
        SecretKeys::stem("identity", "signing_key"),
        base,
        p,
    )?;
    if key.0.len() < defaults::MIN_KEY_BYTES {
        p.add(
            path,
            format!(
                "the signing key has {} bytes; HS256 keys need at least {}",
                key.0.len(),
                defaults::MIN_KEY_BYTES
            ),
        );
        return None;
    }
    Some(key)
}

pub(super) fn check(raw: &RawIdentity, base: &Path, p: &mut Problems) -> Option<IdentitySettings> {
    let issuer = raw
        .issuer
        .clone()
        .unwrap_or_else(|| defaults::ISSUER.to_string());
    if issuer.is_empty() {
        p.add("identity.issuer", "must not be empty");
    }
    let assertion_header = header_name(
        raw.assertion_header
            .as_deref()
            .unwrap_or(defaults::ASSERTION_HEADER),
        "identity.assertion_header",
        p,
    );
    let assertion_ttl = positive(
        raw.assertion_ttl,
        defaults::ASSERTION_TTL,
        "identity.assertion_ttl",
        p,
    );
    if assertion_ttl > Duration::from_secs(3600) {
        p.add(
            "identity.assertion_ttl",
            "must be at most 1h: an assertion is a short-lived proof, not a session",
        );
    }
    let key_id = raw
        .signing_key_id
        .clone()
        .unwrap_or_else(|| defaults::KEY_ID.to_string());
    if key_id.is_empty()
        || key_id
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\')
    {
        p.add(
            "identity.signing_key_id",
            "must be a non-empty name without quotes, backslashes or control characters",
        );
    }
    let signing_key = read_key(raw, base, p);
    let mut seen: HashSet<String> = HashSet::new();
    if let Some(h) = &assertion_header {
        seen.insert(normalized(h.as_str()));
    }
    let mut headers = Vec::new();
    for (name, claim) in &raw.headers {
        let path = format!("identity.headers.\"{name}\"");
        let Some(header) = header_name(name, &path, p) else {
            continue;
        };
        if !seen.insert(normalized(header.as_str())) {
            p.add(
                &path,
                "names a header that is already mapped (names compare case-insensitively, with every non-alphanumeric byte as -)",
            );
            continue;
        }
        if claim.is_empty() {
            p.add(&path, "must name a claim, e.g. \"sub\" or \"email\"");
            continue;
        }
        headers.push((header, claim.clone()));
    }
    Some(IdentitySettings {
        issuer,
        assertion_header: assertion_header?,
        assertion_ttl,
        key_id,
        signing_key: signing_key?,
        headers,
    })
}
