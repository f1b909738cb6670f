//! Turns the raw file into the typed model, checking every rule and collecting every problem
//! (with its key path and what would be valid) instead of stopping at the first. One file per
//! table of the file; the problem list and the shared readers in `problems`.

mod cache;
pub mod defaults;
mod identity;
mod oidc;
pub use oidc::secure_url;
mod problems;
mod route;
mod secrets;
mod server;
mod session;
mod store;
mod tls;
mod upstream;

use std::path::Path;

use crate::config::file::RawConfig;
use crate::config::model::*;
use crate::config::problem::ConfigProblem;
use problems::Problems;

/// Validates the raw file; `base` resolves relative secret file paths.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let mut p = Problems::default();
    let server = server::check(&raw.server, raw.tls.is_some(), base, &mut p);
    let plain = server.as_ref().map_or(&[][..], |s| &s.listen[..]);
    let tls = raw
        .tls
        .as_ref()
        .and_then(|t| tls::check(t, plain, base, &mut p));
    let redis = matches!(
        raw.store.kind,
        Some(crate::config::file::RawStoreKind::Redis)
    );
    let session = session::check(&raw.session, redis, base, &mut p);
    let store = store::check(&raw.store, base, &mut p);
    let identity = identity::check(&raw.identity, base, &mut p);
    let cache = cache::check(raw.cache.as_ref(), store.as_ref(), &mut p);
    let upstreams = upstream::check(&raw.upstream, &mut p);
    let identity_providers = oidc::check(&raw.identity_provider, base, &mut p);
    let oidc_prefix = oidc::prefix(raw.oidc.as_ref(), &mut p);
    let routes = route::check(
        &raw.route,
        &upstreams,
        &identity_providers,
        &oidc_prefix,
        &mut p,
    );
    if cache.is_none() && matches!(store, Some(StoreSettings::Redis(_))) {
        for (i, route) in routes.iter().enumerate() {
            if route.on_store_error == OnStoreError::ServeStale {
                p.add(
                    format!("route[{i}].on_store_error"),
                    "serve_stale needs the session cache; enable [cache] or choose fail_closed or anonymous",
                );
            }
        }
    }
    if !p.0.is_empty() {
        return Err(p.0);
    }
    // Every check above pushed a problem whenever it returned None.
    match (server, session, store, identity) {
        (Some(server), Some(session), Some(store), Some(identity)) => Ok(Config {
            server,
            session,
            store,
            identity,
            cache,
            upstreams,
            routes,
            tls,
            identity_providers,
            oidc_prefix,
            sign_ins_per_client: raw
                .oidc
                .as_ref()
                .and_then(|o| o.max_sign_ins_per_client)
                .unwrap_or(defaults::SIGN_INS_PER_CLIENT),
        }),
        _ => Err(vec![ConfigProblem {
            path: String::new(),
            message: "configuration is incomplete".into(),
        }]),
    }
}
