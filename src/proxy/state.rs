//! Everything a request needs from one configuration, built once per (re)load. Requests hold
//! an `Arc` to the state they started with, so a reload never changes a request mid-flight.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;

use crate::config::Config;
use crate::cookie::{CookieCodec, CookieWriter};
use crate::identity::{Jwks, ProtectedNamespace, Signer};
use crate::inbound::TrustedProxies;
use crate::routing::RouteTable;
use crate::sessions::{Backend, Sessions};
use crate::upstream::Pools;

/// Cached sessions carry header values rendered for this configuration's `[identity.headers]`:
/// a reload that changes them drops the cache's contents (see `reload`).
pub struct GatewayState {
    pub config: Config,
    pub routes: RouteTable,
    /// Each route's metrics label: its host (when not `*`) and path prefix.
    pub route_labels: Vec<String>,
    /// Each route's request metrics, then those of requests that matched no route.
    pub route_metrics: Vec<crate::metrics::RouteMetrics>,
    pub pools: Arc<Pools>,
    pub namespace: ProtectedNamespace,
    /// Signs with the first of `[[identity.keys]]`.
    pub signer: Signer,
    /// The public keys of `[[identity.keys]]`, served at `[identity] jwks_path`.
    pub jwks: Jwks,
    pub cookies: CookieWriter,
    pub sessions: Sessions,
    /// The assertion header's name as sent upstream, built once instead of per request.
    pub assertion_name: Bytes,
    /// The mapped identity headers' names, in `[identity.headers]` order.
    pub mapped_names: Vec<Bytes>,
    /// The claims behind the mapped identity headers, in the same order.
    pub mapped_claims: Vec<String>,
    /// Whose forwarding headers are believed.
    pub trusted: TrustedProxies,
    /// The identity providers users sign in with at the edge, in configuration order.
    pub providers: crate::oidc::Providers,
}

/// The codec for the configured cookie keys, or, when none is configured (the memory store),
/// a key of this process's own: drawn once, kept across reloads, gone at exit like the
/// sessions it signs.
fn cookie_codec(keys: &[crate::config::model::SecretBytes]) -> CookieCodec {
    static PROCESS_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    if keys.is_empty() {
        let key = PROCESS_KEY.get_or_init(|| {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).expect("the OS random source works");
            key
        });
        return CookieCodec::new(&[key]);
    }
    CookieCodec::new(&keys.iter().map(|k| k.0.as_slice()).collect::<Vec<_>>())
}

impl GatewayState {
    /// The state for `config`; `pools` are built by the caller, which runs their health checks.
    /// On a reload, `running` is the state it replaces (its unchanged identity providers are
    /// kept).
    pub fn new(
        config: Config,
        backend: Arc<Backend>,
        pools: Arc<Pools>,
        running: Option<&GatewayState>,
    ) -> Self {
        let identity = &config.identity;
        let protected: Vec<&HeaderName> = std::iter::once(&identity.assertion_header)
            .chain(identity.headers.iter().map(|(name, _)| name))
            .collect();
        let route_labels: Vec<String> = config
            .routes
            .iter()
            .map(|r| match &r.host {
                crate::config::model::HostPattern::Any => r.path_prefix.clone(),
                host => format!("{host}{}", r.path_prefix),
            })
            .collect();
        let route_metrics = route_labels
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("none"))
            .map(crate::metrics::RouteMetrics::new)
            .collect();
        let name = |n: &HeaderName| Bytes::copy_from_slice(n.as_str().as_bytes());
        let mapped_claims: Vec<String> = identity
            .headers
            .iter()
            .map(|(_, claim)| claim.clone())
            .collect();
        let providers =
            crate::oidc::Providers::new(&config.identity_providers, running.map(|r| &r.providers));
        GatewayState {
            providers,
            trusted: TrustedProxies::new(
                config.server.trusted_proxies.clone(),
                config.server.forwarded_header,
            ),
            assertion_name: name(&identity.assertion_header),
            mapped_names: identity.headers.iter().map(|(n, _)| name(n)).collect(),
            routes: RouteTable::new(config.routes.clone()),
            route_labels,
            route_metrics,
            pools,
            namespace: ProtectedNamespace::new(protected),
            signer: Signer::new(
                &identity.issuer,
                identity.signing_key(),
                identity.assertion_ttl.as_secs(),
            )
            .with_jti(identity.jti),
            jwks: Jwks::new(identity),
            cookies: CookieWriter::new(
                config.session.cookie.clone(),
                cookie_codec(&config.session.cookie_keys),
            ),
            sessions: Sessions::new(backend, config.session.clone(), mapped_claims.clone()),
            mapped_claims,
            config,
        }
    }
}
