//! Signing users in at the edge: an OpenID Connect relying party (authorization-code flow with
//! PKCE S256 always, nonce and state, the flow kept server-side), RP-initiated logout and
//! Back-Channel Logout 1.0. This module holds the protocol: the providers' metadata and keys
//! (`provider`), the bounded calls to them (`http`, `exchange`), token verification
//! (`verify`) and the flow's own values (`flow`); `proxy::sign_in` answers the paths below on
//! the proxy's listener and creates sessions through `Sessions::apply`.

pub mod exchange;
pub mod flow;
pub mod http;
pub mod limit;
pub mod provider;
pub mod verify;

pub use provider::{Provider, Providers};

/// The proxy's own sign-in paths under the configured prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `{prefix}/callback`: the provider sends the browser back here with a code.
    Callback,
    /// `{prefix}/start?provider=…&next=…`: a sign-in link for pages to offer.
    Start,
    /// `{prefix}/logout`: ends the session, then the provider's (RP-initiated logout).
    Logout,
    /// `{prefix}/backchannel-logout`: the provider POSTs logout tokens here.
    Backchannel,
}

/// The sign-in endpoint `path` names, if it is one under `prefix`.
pub fn endpoint(prefix: &str, path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
    Some(match rest {
        "callback" => Endpoint::Callback,
        "start" => Endpoint::Start,
        "logout" => Endpoint::Logout,
        "backchannel-logout" => Endpoint::Backchannel,
        _ => return None,
    })
}

/// The callback path under `prefix`.
pub fn callback_path(prefix: &str) -> String {
    format!("{prefix}/callback")
}

/// The sign-out path under `prefix`.
pub fn logout_path(prefix: &str) -> String {
    format!("{prefix}/logout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_exact_paths_under_the_prefix() {
        let p = "/_sessiongate/oidc";
        assert_eq!(
            endpoint(p, "/_sessiongate/oidc/callback"),
            Some(Endpoint::Callback)
        );
        assert_eq!(
            endpoint(p, "/_sessiongate/oidc/logout"),
            Some(Endpoint::Logout)
        );
        assert_eq!(
            endpoint(p, "/_sessiongate/oidc/start"),
            Some(Endpoint::Start)
        );
        assert_eq!(
            endpoint(p, "/_sessiongate/oidc/backchannel-logout"),
            Some(Endpoint::Backchannel)
        );
        assert_eq!(endpoint(p, "/_sessiongate/oidc/callback/x"), None);
        assert_eq!(endpoint(p, "/_sessiongate/oidcx/callback"), None);
        assert_eq!(endpoint(p, "/_sessiongate/oidc"), None);
        assert_eq!(endpoint(p, "/app"), None);
    }
}
