//! `[identity]`, `[[identity.keys]]` and `[identity.headers]`: the assertion, its signing keys
//! (the single HS256 key of `signing_key_*`, or a list of EdDSA, ES256 and HS256 keys whose
//! first signs), where the key set is served, and the headers mapped from claims (which may not take over a header the proxy or clients need, and may not fold
//! together with another, as the protected namespace compares names).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::defaults;
use super::problems::Problems;
use super::secrets::{read_secret, Secret, SecretKeys};
use crate::config::file::RawIdentity;
use crate::config::model::{IdentitySettings, SigningAlgorithm, SigningKey};

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

/// A `kid` goes into JSON and header values as written.
fn check_key_id(id: &str, path: &str, p: &mut Problems) -> bool {
    let valid = !id.is_empty()
        && !id
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\');
    if !valid {
        p.add(
            path,
            "must be a non-empty name without quotes, backslashes or control characters",
        );
    }
    valid
}

/// An assertion lifetime: more than zero, at most an hour.
pub(super) fn check_ttl(ttl: Duration, path: &str, p: &mut Problems) {
    if ttl.is_zero() {
        p.add(path, "must be greater than zero");
    } else if ttl > Duration::from_secs(3600) {
        p.add(
            path,
            "must be at most 1h: an assertion is a short-lived proof, not a session",
        );
    }
}

/// The single HS256 key of `signing_key_*`: the shorthand for one `[[identity.keys]]` entry.
fn single_key(raw: &RawIdentity, base: &Path, p: &mut Problems) -> Option<SigningKey> {
    let key_id = raw
        .signing_key_id
        .clone()
        .unwrap_or_else(|| defaults::KEY_ID.to_string());
    let id_ok = check_key_id(&key_id, "identity.signing_key_id", p);
    let (secret, path) = read_secret(
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
    match SigningKey::hs256(&key_id, &secret.0) {
        Ok(key) => id_ok.then_some(key),
        Err(message) => {
            p.add(path, message);
            None
        }
    }
}

/// `[[identity.keys]]`: each with an id (unique), an algorithm, and one source holding a key
/// of that algorithm.
fn listed_keys(raw: &RawIdentity, base: &Path, p: &mut Problems) -> Vec<SigningKey> {
    for (set, key) in [
        (raw.signing_key_id.is_some(), "signing_key_id"),
        (raw.signing_key_file.is_some(), "signing_key_file"),
        (raw.signing_key_env.is_some(), "signing_key_env"),
        (raw.insecure_signing_key.is_some(), "insecure_signing_key"),
    ] {
        if set {
            p.add(
                format!("identity.{key}"),
                "cannot be combined with [[identity.keys]]; list that key there instead",
            );
        }
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut keys = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let section = format!("identity.keys[{i}]");
        let id = match k.id.as_deref() {
            None => {
                p.add(format!("{section}.id"), "every key needs an id (its kid)");
                None
            }
            Some(id) if !check_key_id(id, &format!("{section}.id"), p) => None,
            Some(id) if !seen.insert(id) => {
                p.add(
                    format!("{section}.id"),
                    format!("\"{id}\" is the id of an earlier key; every kid must be unique"),
                );
                None
            }
            Some(id) => Some(id),
        };
        let Some(algorithm) = k.algorithm else {
            p.add(
                format!("{section}.algorithm"),
                "set the key's algorithm: \"EdDSA\", \"ES256\" or \"HS256\"",
            );
            continue;
        };
        let asymmetric = algorithm != SigningAlgorithm::HS256;
        if asymmetric && k.insecure_value.is_some() {
            p.add(
                format!("{section}.insecure_value"),
                format!(
                    "{} keys come from a PEM file or an environment variable",
                    algorithm.as_str()
                ),
            );
            continue;
        }
        let Some((bytes, path)) = read_secret(
            Secret {
                file: k.file.as_deref(),
                env: k.env.as_deref(),
                insecure_inline: k.insecure_value.as_deref(),
                required: true,
            },
            SecretKeys::table(section),
            base,
            p,
        ) else {
            continue;
        };
        let Some(id) = id else { continue };
        let parsed = if asymmetric {
            SigningKey::from_pem(id, algorithm, &bytes.0)
        } else if bytes.0.starts_with(b"-----BEGIN") {
            // A key file under the wrong algorithm would otherwise become a shared secret.
            Err("holds a PEM document, not an HS256 secret; set algorithm = \"EdDSA\" or \"ES256\" for a private key".to_string())
        } else {
            SigningKey::hs256(id, &bytes.0)
        };
        match parsed {
            Ok(key) => keys.push(key),
            Err(message) => p.add(path, message),
        }
    }
    keys
}

/// Where the JWKS is served: an absolute path the route table would read as written (no
/// encoding, parameters, empty or dot segments), so no other spelling of it reaches an app.
fn jwks_path(raw: &RawIdentity, p: &mut Problems) -> String {
    let path = raw
        .jwks_path
        .clone()
        .unwrap_or_else(|| defaults::JWKS_PATH.to_string());
    let valid = path.len() > 1
        && path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
        && path[1..].split('/').all(|segment| {
            !segment.is_empty() && segment != "." && segment != ".." && !segment.ends_with('.')
        });
    if !valid {
        p.add(
            "identity.jwks_path",
            format!("\"{path}\" must be an absolute path of letters, digits and -._~ segments, e.g. \"{}\"", defaults::JWKS_PATH),
        );
    }
    path
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
    let assertion_ttl = raw.assertion_ttl.unwrap_or(defaults::ASSERTION_TTL);
    check_ttl(assertion_ttl, "identity.assertion_ttl", p);
    let problems_before = p.0.len();
    let keys = if raw.keys.is_empty() {
        single_key(raw, base, p).into_iter().collect()
    } else {
        listed_keys(raw, base, p)
    };
    let keys_valid = p.0.len() == problems_before && !keys.is_empty();
    let jwks_path = jwks_path(raw, p);
    let jwks_max_age = raw.jwks_max_age.unwrap_or(defaults::JWKS_MAX_AGE);
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
        keys: if keys_valid { keys } else { return None },
        jwks_path,
        jwks_max_age,
        jti: raw.jti.unwrap_or(false),
        headers,
    })
}
