//! `[session]`: the cookie and its keys, the timeouts, the record format and the claims bound.

use std::path::Path;

use super::defaults;
use super::problems::Problems;
use super::secrets::{read_secret, Secret, SecretKeys};
use crate::config::file::RawSession;
use crate::config::model::{CookieSettings, RecordFormat, SameSite, SecretBytes, SessionSettings};

/// RFC 6265 cookie-name: an RFC 7230 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The cookie keys: each from one source, at least `MIN_KEY_BYTES`. None is a key of the
/// process's own (`cookie::CookieCodec` for the memory store); the Redis store needs them, as
/// every instance must verify the others' cookies.
fn cookie_keys(raw: &RawSession, redis: bool, base: &Path, p: &mut Problems) -> Vec<SecretBytes> {
    if raw.cookie_keys.is_empty() && redis {
        p.add(
            "session.cookie_keys",
            "the Redis store needs at least one cookie key (every instance verifies the others' cookies): add [[session.cookie_keys]] with file = \"...\" (e.g. `head -c 32 /dev/urandom | base64 > cookie.key`)",
        );
    }
    raw.cookie_keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| {
            let at = format!("session.cookie_keys[{i}]");
            let (bytes, path) = read_secret(
                Secret {
                    file: key.file.as_deref(),
                    env: key.env.as_deref(),
                    insecure_inline: key.insecure_value.as_deref(),
                    required: true,
                },
                SecretKeys::table(at),
                base,
                p,
            )?;
            if bytes.0.len() < defaults::MIN_KEY_BYTES {
                p.add(
                    path,
                    format!(
                        "the cookie key has {} bytes; it needs at least {}",
                        bytes.0.len(),
                        defaults::MIN_KEY_BYTES
                    ),
                );
                return None;
            }
            Some(bytes)
        })
        .collect()
}

pub(super) fn check(
    raw: &RawSession,
    redis: bool,
    base: &Path,
    p: &mut Problems,
) -> Option<SessionSettings> {
    let name = raw
        .cookie_name
        .clone()
        .unwrap_or_else(|| defaults::COOKIE_NAME.to_string());
    let secure = raw.secure.unwrap_or(true);
    let same_site = raw.same_site.unwrap_or(SameSite::Lax);
    if !is_token(&name) {
        p.add(
            "session.cookie_name",
            format!("\"{name}\" is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
        );
    }
    if name.starts_with("__Host-") {
        if !secure {
            p.add(
                "session.cookie_name",
                "a __Host- cookie requires secure = true; use another name for plain-HTTP setups",
            );
        }
        if raw.domain.is_some() {
            p.add(
                "session.domain",
                "a __Host- cookie must not have a Domain; remove session.domain or rename the cookie",
            );
        }
    }
    if name.starts_with("__Secure-") && !secure {
        p.add(
            "session.cookie_name",
            "a __Secure- cookie requires secure = true",
        );
    }
    if same_site == SameSite::None && !secure {
        p.add(
            "session.same_site",
            "same_site = \"none\" requires secure = true (browsers drop such cookies otherwise)",
        );
    }
    if let Some(domain) = &raw.domain {
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            p.add(
                "session.domain",
                format!("\"{domain}\" is not a domain name"),
            );
        }
    }
    let idle = raw.idle_timeout.unwrap_or(defaults::IDLE_TIMEOUT);
    let absolute = raw.absolute_timeout.unwrap_or(defaults::ABSOLUTE_TIMEOUT);
    let renew_below = raw.renew_below.unwrap_or(idle / 2);
    if idle.is_zero() {
        p.add("session.idle_timeout", "must be greater than zero");
    }
    if absolute < idle {
        p.add(
            "session.absolute_timeout",
            format!(
                "must be at least session.idle_timeout ({})",
                humantime::format_duration(idle)
            ),
        );
    }
    if renew_below.is_zero() && !idle.is_zero() {
        p.add(
            "session.renew_below",
            "must be greater than zero, or active sessions would expire after idle_timeout",
        );
    }
    if renew_below >= idle && !idle.is_zero() {
        p.add(
            "session.renew_below",
            format!(
                "must be less than session.idle_timeout ({})",
                humantime::format_duration(idle)
            ),
        );
    }
    let format = raw.format.unwrap_or(RecordFormat::MessagePack);
    let max_claims_bytes = raw.max_claims_bytes.unwrap_or(defaults::MAX_CLAIMS_BYTES);
    if !(256..=65536).contains(&max_claims_bytes) {
        p.add(
            "session.max_claims_bytes",
            "must be between 256 and 65536: claims travel on every request",
        );
    }
    // The default never exceeds a short idle timeout (a test's, say).
    let tunnel_recheck = raw
        .tunnel_recheck
        .unwrap_or(defaults::TUNNEL_RECHECK.min(idle));
    if raw.tunnel_recheck.is_some()
        && !idle.is_zero()
        && (tunnel_recheck < std::time::Duration::from_secs(1) || tunnel_recheck > idle)
    {
        p.add(
            "session.tunnel_recheck",
            format!(
                "must be between 1s and session.idle_timeout ({})",
                humantime::format_duration(idle)
            ),
        );
    }
    Some(SessionSettings {
        cookie: CookieSettings {
            name,
            secure,
            same_site,
            domain: raw.domain.clone(),
            persistent: raw.persistent.unwrap_or(false),
        },
        idle_timeout: idle,
        absolute_timeout: absolute,
        renew_below,
        format,
        max_claims_bytes,
        tunnel_recheck,
        cookie_keys: cookie_keys(raw, redis, base, p),
    })
}
