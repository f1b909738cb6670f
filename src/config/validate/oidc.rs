//! `[[identity_provider]]` and `[oidc]`: the OpenID providers users sign in with at the edge,
//! and where the proxy answers the flow's own paths.

use std::collections::HashSet;
use std::path::Path;

use super::defaults;
use super::problems::{positive, Problems};
use super::secrets::{read_secret, Secret, SecretKeys};
use crate::config::file::{RawIdentityProvider, RawOidc};
use crate::config::model::{ClientAuth, IdentityProviderSettings};

/// Whether `url` is `https://…`, or `http://` to a loopback host (a provider on the same
/// machine, as in tests); `None` when it is no http(s) URL at all.
pub fn secure_url(url: &str) -> Option<bool> {
    if let Some(rest) = url.strip_prefix("https://") {
        return (!rest.is_empty()).then_some(true);
    }
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    Some(matches!(host, "localhost" | "127.0.0.1" | "::1"))
}

fn url_problem(url: &str, key: String, p: &mut Problems) -> bool {
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        p.add(key, "must contain no spaces or control characters");
        return true;
    }
    match secure_url(url) {
        None => {
            p.add(key, format!("\"{url}\" is not an http(s) URL"));
            true
        }
        Some(false) => {
            p.add(
                key,
                format!("\"{url}\" must use https (plain http only to localhost)"),
            );
            true
        }
        Some(true) => false,
    }
}

fn name_list(values: Option<&Vec<String>>, key: &str, p: &mut Problems) -> Vec<String> {
    let mut out = Vec::new();
    for (i, v) in values.into_iter().flatten().enumerate() {
        if v.is_empty() || v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            p.add(format!("{key}[{i}]"), "must be a name without spaces");
        } else if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

/// The validated `[oidc] path_prefix`.
pub(super) fn prefix(raw: Option<&RawOidc>, p: &mut Problems) -> String {
    let prefix = raw
        .and_then(|o| o.path_prefix.clone())
        .unwrap_or_else(|| defaults::OIDC_PREFIX.to_string());
    let valid = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && !prefix.split('/').any(|s| s == "." || s == "..");
    if !valid {
        p.add(
            "oidc.path_prefix",
            format!("\"{prefix}\" must be a path like \"/_sessiongate/oidc\" (no trailing '/', no dot segments)"),
        );
    }
    prefix
}

pub(super) fn check(
    raw: &[RawIdentityProvider],
    base: &Path,
    p: &mut Problems,
) -> Vec<IdentityProviderSettings> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("identity_provider[{i}]");
        let name = match r.name.as_deref() {
            Some(n)
                if !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                if !names.insert(n.to_string()) {
                    p.add(
                        format!("{path}.name"),
                        format!("another identity provider is named \"{n}\""),
                    );
                }
                Some(n.to_string())
            }
            Some(n) => {
                p.add(
                    format!("{path}.name"),
                    format!("\"{n}\" must be letters, digits, '-' or '_'"),
                );
                None
            }
            None => {
                p.add(
                    format!("{path}.name"),
                    "every identity provider needs a name",
                );
                None
            }
        };
        let issuer = match r.issuer.as_deref() {
            None => {
                p.add(
                    format!("{path}.issuer"),
                    "needs the provider's issuer URL (its discovery document is read from it)",
                );
                None
            }
            Some(url) => (!url_problem(url, format!("{path}.issuer"), p)).then(|| url.to_string()),
        };
        let client_id = match r.client_id.as_deref() {
            Some(id) if !id.is_empty() && !id.bytes().any(|b| b.is_ascii_control()) => {
                Some(id.to_string())
            }
            _ => {
                p.add(
                    format!("{path}.client_id"),
                    "needs the client id registered at the provider",
                );
                None
            }
        };
        let secret = read_secret(
            Secret {
                file: r.client_secret_file.as_deref(),
                env: r.client_secret_env.as_deref(),
                insecure_inline: None,
                required: true,
            },
            SecretKeys::stem(&path, "client_secret"),
            base,
            p,
        );
        let secret = secret.and_then(|(secret, key)| {
            if secret.0.is_empty() {
                p.add(key, "the client secret is empty");
                None
            } else {
                Some(secret)
            }
        });
        let client_auth = match r.client_auth.as_deref() {
            None | Some("client_secret_basic") => ClientAuth::SecretBasic,
            Some("client_secret_post") => ClientAuth::SecretPost,
            Some(other) => {
                p.add(
                    format!("{path}.client_auth"),
                    format!("\"{other}\" is not one of client_secret_basic, client_secret_post"),
                );
                ClientAuth::SecretBasic
            }
        };
        let mut scopes = match &r.scopes {
            Some(s) => name_list(Some(s), &format!("{path}.scopes"), p),
            None => defaults::OIDC_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let algorithms = match &r.algorithms {
            None => defaults::OIDC_ALGORITHMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(list) => {
                let mut out = Vec::new();
                for (j, alg) in list.iter().enumerate() {
                    if defaults::OIDC_ALGORITHMS.contains(&alg.as_str()) {
                        out.push(alg.clone());
                    } else {
                        p.add(
                            format!("{path}.algorithms[{j}]"),
                            format!(
                                "\"{alg}\" is not accepted; choose among {:?} (never none or a shared-secret HMAC)",
                                defaults::OIDC_ALGORITHMS
                            ),
                        );
                    }
                }
                if list.is_empty() {
                    p.add(format!("{path}.algorithms"), "must name at least one");
                }
                out
            }
        };
        for (key, url) in [
            ("redirect_url", &r.redirect_url),
            ("post_logout_redirect_url", &r.post_logout_redirect_url),
        ] {
            if let Some(url) = url {
                url_problem(url, format!("{path}.{key}"), p);
            }
        }
        let claim = |v: &Option<String>, default: &str, key: &str, p: &mut Problems| {
            let v = v.clone().unwrap_or_else(|| default.to_string());
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_control()) {
                p.add(format!("{path}.{key}"), "must name a claim");
            }
            v
        };
        let sub_claim = claim(&r.sub_claim, "sub", "sub_claim", p);
        let email_claim = claim(&r.email_claim, "email", "email_claim", p);
        let groups_claim = claim(&r.groups_claim, "groups", "groups_claim", p);
        let claims = name_list(r.claims.as_ref(), &format!("{path}.claims"), p);
        for (j, c) in claims.iter().enumerate() {
            if crate::session::control::RESERVED_CLAIMS.contains(&c.as_str()) {
                p.add(
                    format!("{path}.claims[{j}]"),
                    format!("\"{c}\" is set by the assertion itself and cannot be copied"),
                );
            }
        }
        let ca_pem = r.ca_file.as_ref().and_then(|file| {
            let full = base.join(file);
            match std::fs::read(&full) {
                Ok(pem)
                    if reqwest::Certificate::from_pem_bundle(&pem)
                        .is_ok_and(|certs| !certs.is_empty()) =>
                {
                    Some(pem)
                }
                Ok(_) => {
                    p.add(
                        format!("{path}.ca_file"),
                        format!("{} holds no PEM certificate", full.display()),
                    );
                    None
                }
                Err(e) => {
                    p.add(
                        format!("{path}.ca_file"),
                        format!("cannot read {}: {e}", full.display()),
                    );
                    None
                }
            }
        });
        let clock_skew = r.clock_skew.unwrap_or(defaults::OIDC_CLOCK_SKEW);
        if clock_skew > std::time::Duration::from_secs(600) {
            p.add(
                format!("{path}.clock_skew"),
                "at most 10m: a larger skew keeps expired tokens valid",
            );
        }
        let timeout = positive(
            r.timeout,
            defaults::OIDC_TIMEOUT,
            &format!("{path}.timeout"),
            p,
        );
        let flow_timeout = positive(
            r.flow_timeout,
            defaults::OIDC_FLOW_TIMEOUT,
            &format!("{path}.flow_timeout"),
            p,
        );
        if let Some(interval) = r.refresh_interval {
            if interval < std::time::Duration::from_secs(1) {
                p.add(format!("{path}.refresh_interval"), "must be at least 1s");
            }
        }
        if let (Some(name), Some(issuer), Some(client_id), Some(client_secret)) =
            (name, issuer, client_id, secret)
        {
            out.push(IdentityProviderSettings {
                name,
                issuer,
                client_id,
                client_secret,
                client_auth,
                scopes,
                audiences: name_list(r.audiences.as_ref(), &format!("{path}.audiences"), p),
                sub_claim,
                email_claim,
                groups_claim,
                claims,
                userinfo: r.userinfo.unwrap_or(false),
                redirect_url: r.redirect_url.clone(),
                post_logout_redirect_url: r.post_logout_redirect_url.clone(),
                pass_access_token: r.pass_access_token.unwrap_or(false),
                algorithms,
                clock_skew,
                timeout,
                refresh_interval: r.refresh_interval,
                flow_timeout,
                ca_pem,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert_eq!(secure_url("https://login.example.com/realms/a"), Some(true));
        assert_eq!(secure_url("http://localhost:3000"), Some(true));
        assert_eq!(secure_url("http://127.0.0.1:3000/x"), Some(true));
        assert_eq!(secure_url("http://[::1]:3000"), Some(true));
        assert_eq!(secure_url("http://login.example.com"), Some(false));
        assert_eq!(secure_url("http://localhost.evil.example"), Some(false));
        assert_eq!(secure_url("ftp://x"), None);
        assert_eq!(secure_url("https://"), None);
    }
}
