//! `[[route]]`: host patterns, path prefixes, policies, and the login URLs that would send
//! browsers around in a loop.

use std::collections::HashSet;

use super::defaults;
use super::problems::{positive, Problems};
use crate::config::file::RawRoute;
use crate::config::model::*;

fn host_pattern(value: &str, path: &str, p: &mut Problems) -> Option<HostPattern> {
    let lower = value.to_ascii_lowercase();
    if lower == "*" {
        return Some(HostPattern::Any);
    }
    let (pattern, name) = match lower.strip_prefix("*.") {
        Some(rest) => (HostPattern::Suffix(format!(".{rest}")), rest.to_string()),
        None => (HostPattern::Exact(lower.clone()), lower.clone()),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        p.add(
            path,
            format!("\"{value}\" is not a host pattern; use \"*\", \"app.example.com\" or \"*.example.com\""),
        );
        return None;
    }
    Some(pattern)
}

/// Lower-cased entries of an `allow_*` list, none empty.
fn allow_list(
    values: Option<&Vec<String>>,
    path: &str,
    lower: bool,
    p: &mut Problems,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, v) in values.into_iter().flatten().enumerate() {
        let v = v.trim();
        if v.is_empty() || v.bytes().any(|b| b.is_ascii_control()) {
            p.add(
                format!("{path}[{i}]"),
                "must be non-empty text without control characters",
            );
            continue;
        }
        out.push(if lower {
            v.to_ascii_lowercase()
        } else {
            v.to_string()
        });
    }
    out
}

pub(super) fn check(
    raw: &[RawRoute],
    upstreams: &[UpstreamSettings],
    providers: &[IdentityProviderSettings],
    oidc_prefix: &str,
    p: &mut Problems,
) -> Vec<RouteSettings> {
    if raw.is_empty() {
        p.add("route", "needs at least one [[route]]");
    }
    let mut out: Vec<RouteSettings> = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("route[{i}]");
        let host = host_pattern(r.host.as_deref().unwrap_or("*"), &format!("{path}.host"), p);
        let prefix = r.path_prefix.clone().unwrap_or_else(|| "/".to_string());
        if !prefix.starts_with('/') || prefix.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            p.add(
                format!("{path}.path_prefix"),
                format!(
                    "\"{prefix}\" must start with '/' and contain no spaces or control characters"
                ),
            );
        }
        let upstream = match &r.upstream {
            None => {
                p.add(format!("{path}.upstream"), "every route needs an upstream");
                None
            }
            Some(name) => match upstreams.iter().position(|u| &u.name == name) {
                Some(idx) => Some(idx),
                None => {
                    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                    p.add(
                        format!("{path}.upstream"),
                        format!("no upstream named \"{name}\"; defined: {known:?}"),
                    );
                    None
                }
            },
        };
        let auth = r.auth.unwrap_or(AuthPolicy::Required);
        if let Some(url) = &r.login_url {
            if auth != AuthPolicy::Required {
                p.add(
                    format!("{path}.login_url"),
                    "only applies to auth = \"required\" routes",
                );
            }
            let relative = url.starts_with('/') && !url.starts_with("//");
            let absolute = url.starts_with("https://") || url.starts_with("http://");
            if !(relative || absolute) || url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                p.add(
                    format!("{path}.login_url"),
                    format!("\"{url}\" must be a path (\"/login\") or an http(s) URL"),
                );
            }
        }
        let audience = r
            .audience
            .clone()
            .or_else(|| upstream.map(|u| upstreams[u].name.clone()))
            .unwrap_or_default();
        if r.audience.as_deref() == Some("") {
            p.add(format!("{path}.audience"), "must not be empty");
        }
        let assertion_ttl = r.assertion_ttl;
        if let Some(ttl) = assertion_ttl {
            super::identity::check_ttl(ttl, &format!("{path}.assertion_ttl"), p);
        }
        let on_store_error = r.on_store_error.unwrap_or(match auth {
            AuthPolicy::Required => OnStoreError::FailClosed,
            AuthPolicy::Optional | AuthPolicy::Public => OnStoreError::Anonymous,
        });
        let body = body_limits(r, &path, p);
        let login = r.login.as_ref().and_then(|name| {
            if auth != AuthPolicy::Required {
                p.add(
                    format!("{path}.login"),
                    "only applies to auth = \"required\" routes",
                );
            }
            if r.login_url.is_some() {
                p.add(
                    format!("{path}.login"),
                    "set either login (an identity provider) or login_url, not both",
                );
            }
            let found = providers.iter().position(|ip| &ip.name == name);
            if found.is_none() {
                let known: Vec<&str> = providers.iter().map(|ip| ip.name.as_str()).collect();
                p.add(
                    format!("{path}.login"),
                    format!("no [[identity_provider]] named \"{name}\"; defined: {known:?}"),
                );
            }
            found
        });
        let access = AccessRule {
            groups: allow_list(
                r.allow_groups.as_ref(),
                &format!("{path}.allow_groups"),
                false,
                p,
            ),
            emails: allow_list(
                r.allow_emails.as_ref(),
                &format!("{path}.allow_emails"),
                true,
                p,
            ),
            email_domains: allow_list(
                r.allow_email_domains.as_ref(),
                &format!("{path}.allow_email_domains"),
                true,
                p,
            )
            .into_iter()
            .map(|d| d.trim_start_matches('@').to_string())
            .collect(),
        };
        for (key, list) in [
            ("allow_groups", &r.allow_groups),
            ("allow_emails", &r.allow_emails),
            ("allow_email_domains", &r.allow_email_domains),
        ] {
            if list.as_ref().is_some_and(|l| l.is_empty()) {
                p.add(
                    format!("{path}.{key}"),
                    "an empty list admits no one; leave it out to admit every signed-in user",
                );
            } else if list.is_some() && auth != AuthPolicy::Required {
                p.add(
                    format!("{path}.{key}"),
                    "only applies to auth = \"required\" routes",
                );
            }
        }
        let trimmed = prefix.trim_end_matches('/');
        if !providers.is_empty()
            && (trimmed == oidc_prefix || trimmed.starts_with(&format!("{oidc_prefix}/")))
        {
            p.add(
                format!("{path}.path_prefix"),
                format!("\"{prefix}\" is under the sign-in paths ({oidc_prefix}), which the proxy answers itself"),
            );
        }
        let (Some(host), Some(upstream)) = (host, upstream) else {
            continue;
        };
        if !seen.insert((host.clone(), prefix.clone())) {
            p.add(
                format!("{path}.path_prefix"),
                format!("another route already has host \"{host}\" and path_prefix \"{prefix}\""),
            );
        }
        out.push(RouteSettings {
            host,
            path_prefix: prefix,
            upstream,
            auth,
            audience,
            assertion_ttl,
            login_url: r.login_url.clone(),
            on_store_error,
            accept_login: r.accept_login.unwrap_or(false),
            websocket: r.websocket.unwrap_or(true),
            case_insensitive: r
                .case_insensitive
                .unwrap_or(upstreams[upstream].case_insensitive),
            body,
            login,
            access,
        });
    }
    check_login_loops(&out, p);
    out
}

/// A host name that `pattern` matches, to probe the route table with.
fn sample_host(pattern: &HostPattern) -> String {
    match pattern {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Suffix(s) => format!("sample{s}"),
        HostPattern::Any => "sample.invalid".to_string(),
    }
}

/// Whether every host `inner` matches is also matched by `outer`.
fn covers(outer: &HostPattern, inner: &HostPattern) -> bool {
    match (outer, inner) {
        (HostPattern::Any, _) => true,
        (HostPattern::Suffix(o), HostPattern::Suffix(i)) => i.ends_with(o.as_str()),
        (HostPattern::Suffix(o), HostPattern::Exact(i)) => i.ends_with(o.as_str()),
        (HostPattern::Exact(o), HostPattern::Exact(i)) => o == i,
        _ => false,
    }
}

/// A relative `login_url` served by a `required` route would redirect to itself forever. The
/// redirecting route may serve several hosts, and a more specific host's routes may serve the
/// login path there: every such host is probed.
fn check_login_loops(routes: &[RouteSettings], p: &mut Problems) {
    for (i, route) in routes.iter().enumerate() {
        let Some(url) = route
            .login_url
            .as_deref()
            .filter(|u| u.starts_with('/') && !u.starts_with("//"))
        else {
            continue;
        };
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let mut hosts = vec![sample_host(&route.host)];
        hosts.extend(
            routes
                .iter()
                .filter(|r| covers(&route.host, &r.host))
                .map(|r| sample_host(&r.host)),
        );
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            // Only hosts where this route itself would answer can send browsers to its login.
            if best_route(routes, &host, route.path_prefix.as_bytes()) != Some(i) {
                continue;
            }
            if let Some(target) = best_route(routes, &host, path.as_bytes()) {
                if routes[target].auth == AuthPolicy::Required {
                    let on_host = match &routes[target].host {
                        HostPattern::Any => String::new(),
                        _ => format!(" on host {host}"),
                    };
                    p.add(
                        format!("route[{i}].login_url"),
                        format!(
                            "\"{url}\" is served by route[{target}], which requires a session: browsers would be redirected forever{on_host}; add a public route for it"
                        ),
                    );
                    break;
                }
            }
        }
    }
}

/// A route's request-body limits: the buffer within Pingora's replay buffer and below the
/// body limit, the deadline only with a buffer.
fn body_limits(r: &RawRoute, path: &str, p: &mut Problems) -> BodyLimits {
    if r.max_body_bytes == Some(0) {
        p.add(
            format!("{path}.max_body_bytes"),
            "must be greater than zero (leave it out for no limit)",
        );
    }
    if let Some(buffer) = r.buffer_body_bytes {
        if buffer == 0 || buffer > defaults::MAX_BUFFER_BODY_BYTES {
            p.add(
                format!("{path}.buffer_body_bytes"),
                format!("must be between 1 and {}", defaults::MAX_BUFFER_BODY_BYTES),
            );
        } else if r.max_body_bytes.is_some_and(|max| buffer > max) {
            p.add(
                format!("{path}.buffer_body_bytes"),
                "must not exceed max_body_bytes",
            );
        }
    } else if r.body_timeout.is_some() {
        p.add(
            format!("{path}.body_timeout"),
            "only applies with buffer_body_bytes",
        );
    }
    BodyLimits {
        max_bytes: r.max_body_bytes,
        buffer_bytes: r.buffer_body_bytes,
        timeout: positive(
            r.body_timeout,
            defaults::BODY_TIMEOUT,
            &format!("{path}.body_timeout"),
            p,
        ),
    }
}
