//! One identity provider at run time: its discovery document and its signing keys, fetched
//! when first needed and kept. The keys are fetched again, at most once per
//! `KEYS_MIN_INTERVAL`, when a token names a key the set lacks (a rotation at the provider);
//! the discovery document is read again after `METADATA_TTL`. When the provider cannot be
//! reached, what was fetched before keeps serving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tracing::{info, warn};

use super::http::{fetch_json, HttpError};
use crate::config::model::IdentityProviderSettings;

/// How long a discovery document is trusted before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches of the key set: a token naming a key the set lacks waits
/// for the next allowed fetch (a rotation at the provider is followed after one fetch), and a
/// stream of tokens naming keys that do not exist costs the provider one fetch a second.
pub const KEYS_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What the proxy uses of a provider's discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// Why a provider's metadata or keys are not at hand.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the discovery document names issuer {found:?}, not the configured {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the discovery document's {field} is not an https URL: {value:?}")]
    InsecureEndpoint { field: &'static str, value: String },
}

/// A verification key of the provider's set.
struct Key {
    kid: Option<String>,
    /// The `alg` the key is published for, if named.
    alg: Option<Algorithm>,
    key: DecodingKey,
    family: jsonwebtoken::AlgorithmFamily,
}

struct KeySet {
    keys: Vec<Key>,
}

pub struct Provider {
    pub settings: IdentityProviderSettings,
    pub client: reqwest::Client,
    metadata: ArcSwapOption<(Metadata, Instant)>,
    keys: ArcSwapOption<KeySet>,
    /// One fetch at a time, and when the last key fetch happened.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// The accepted algorithms, parsed.
    pub algorithms: Vec<Algorithm>,
}

fn is_secure(url: &str) -> bool {
    crate::config::secure_url(url) == Some(true)
}

impl Provider {
    /// The provider's run-time state. Its CA certificates were checked at load; a client that
    /// cannot be built with them (never expected) is built without, so calls fail verification
    /// with a clear log line instead of the reload failing.
    pub fn new(settings: IdentityProviderSettings) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sessiongate/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default() {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().unwrap_or_else(|e| {
            warn!(provider = %settings.name, error = %e, "could not build the identity provider's HTTP client with its settings");
            reqwest::Client::new()
        });
        let algorithms = settings
            .algorithms
            .iter()
            .filter_map(|a| a.parse::<Algorithm>().ok())
            .collect();
        Provider {
            settings,
            client,
            metadata: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(None),
            algorithms,
        }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    async fn fetch_metadata(&self) -> Result<Metadata, ProviderError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = fetch_json(self.client.get(&url)).await?;
        // OpenID Connect Discovery 1.0 §4.3: the issuer must be exactly the one configured.
        if metadata.issuer != self.settings.issuer {
            return Err(ProviderError::IssuerMismatch {
                expected: self.settings.issuer.clone(),
                found: metadata.issuer,
            });
        }
        for (field, value) in [
            (
                "authorization_endpoint",
                Some(&metadata.authorization_endpoint),
            ),
            ("token_endpoint", Some(&metadata.token_endpoint)),
            ("jwks_uri", Some(&metadata.jwks_uri)),
            ("userinfo_endpoint", metadata.userinfo_endpoint.as_ref()),
            (
                "end_session_endpoint",
                metadata.end_session_endpoint.as_ref(),
            ),
        ] {
            if let Some(value) = value.filter(|v| !is_secure(v)) {
                return Err(ProviderError::InsecureEndpoint {
                    field,
                    value: value.clone(),
                });
            }
        }
        Ok(metadata)
    }

    /// The provider's discovery document: the one read within `METADATA_TTL`, else read now;
    /// when that fails, the one read before (if any).
    pub async fn metadata(&self) -> Result<Arc<(Metadata, Instant)>, ProviderError> {
        if let Some(m) = self.metadata.load_full() {
            if m.1.elapsed() < METADATA_TTL {
                return Ok(m);
            }
        }
        let _one = self.fetching.lock().await;
        if let Some(m) = self.metadata.load_full() {
            if m.1.elapsed() < METADATA_TTL {
                return Ok(m);
            }
        }
        match self.fetch_metadata().await {
            Ok(m) => {
                let m = Arc::new((m, Instant::now()));
                self.metadata.store(Some(m.clone()));
                Ok(m)
            }
            Err(e) => match self.metadata.load_full() {
                Some(old) => {
                    warn!(provider = self.name(), error = %e, "kept the provider's discovery document: reading it again failed");
                    Ok(old)
                }
                None => Err(e),
            },
        }
    }

    async fn fetch_keys(&self, jwks_uri: &str) -> Result<KeySet, HttpError> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = fetch_json(self.client.get(jwks_uri)).await?;
        let mut keys = Vec::new();
        for value in set.keys {
            // A key of a kind the verifier does not know, or for encryption, is skipped;
            // the others still serve.
            if value
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let family = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => {
                    jsonwebtoken::AlgorithmFamily::Rsa
                }
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                    jsonwebtoken::AlgorithmFamily::Ec
                }
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => {
                    jsonwebtoken::AlgorithmFamily::Ed
                }
                // A shared-secret key has no place in a public key set.
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
                family,
            });
        }
        Ok(KeySet { keys })
    }

    fn find(&self, set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let family = alg.family();
        let fits = |k: &&Key| k.family == family && k.alg.is_none_or(|a| a == alg);
        let mut candidates = set.keys.iter().filter(fits);
        match kid {
            Some(kid) => candidates
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            // No key id: only an unambiguous set can say which key signed.
            None => {
                let first = candidates.next()?;
                candidates.next().is_none().then(|| first.key.clone())
            }
        }
    }

    /// The key that verifies a token signed with `alg` under `kid`: from the keys at hand, or
    /// after fetching the set again (at most once per `KEYS_MIN_INTERVAL`).
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<DecodingKey>, ProviderError> {
        if let Some(set) = self.keys.load_full() {
            if let Some(key) = self.find(&set, kid, alg) {
                return Ok(Some(key));
            }
        }
        let metadata = self.metadata().await?;
        let mut last = self.fetching.lock().await;
        // Another request may have fetched the set while this one waited.
        if let Some(set) = self.keys.load_full() {
            if let Some(key) = self.find(&set, kid, alg) {
                return Ok(Some(key));
            }
        }
        if let Some(wait) = last.and_then(|at| KEYS_MIN_INTERVAL.checked_sub(at.elapsed())) {
            // Holding the lock: requests for other unknown keys wait behind this one and find
            // the set it fetches.
            tokio::time::sleep(wait).await;
        }
        *last = Some(Instant::now());
        // A key the set lacks may come with a changed discovery document (keys moved to a
        // new jwks_uri in a rotation): it is read again first, and kept when it cannot be.
        let mut jwks_uri = metadata.0.jwks_uri.clone();
        if self.keys.load().is_some() {
            match self.fetch_metadata().await {
                Ok(fresh) => {
                    if fresh.jwks_uri != jwks_uri {
                        info!(
                            provider = self.name(),
                            "the provider's discovery document names another key set"
                        );
                    }
                    jwks_uri = fresh.jwks_uri.clone();
                    self.metadata.store(Some(Arc::new((fresh, Instant::now()))));
                }
                Err(e) => {
                    warn!(provider = self.name(), error = %e, "kept the provider's discovery document: reading it again failed");
                }
            }
        }
        match self.fetch_keys(&jwks_uri).await {
            Ok(set) => {
                info!(
                    provider = self.name(),
                    keys = set.keys.len(),
                    "fetched the provider's signing keys"
                );
                let found = self.find(&set, kid, alg);
                self.keys.store(Some(Arc::new(set)));
                Ok(found)
            }
            Err(e) => {
                warn!(provider = self.name(), error = %e, "could not fetch the provider's signing keys; the known keys keep serving");
                if self.keys.load().is_none() {
                    return Err(e.into());
                }
                Ok(None)
            }
        }
    }
}

/// The run-time providers of one configuration, by name.
#[derive(Default)]
pub struct Providers {
    pub list: Vec<Arc<Provider>>,
    by_issuer: HashMap<String, Vec<usize>>,
}

impl Providers {
    /// The providers of `settings`. Each one whose settings are unchanged in `previous` (the
    /// running configuration's providers, on a reload) is taken over from it with what it has
    /// fetched (discovery document, keys) and its connections: a reload neither makes every
    /// provider be asked again nor stops sign-ins while a provider is down. A provider whose
    /// settings changed (its secret, its CA file's contents, anything) starts afresh.
    pub fn new(settings: &[IdentityProviderSettings], previous: Option<&Providers>) -> Self {
        let mut list = Vec::new();
        let mut by_issuer: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in settings.iter().enumerate() {
            let kept = previous
                .and_then(|p| p.list.iter().find(|old| old.settings == *s))
                .cloned();
            list.push(kept.unwrap_or_else(|| Arc::new(Provider::new(s.clone()))));
            by_issuer.entry(s.issuer.clone()).or_default().push(i);
        }
        Providers { list, by_issuer }
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.name() == name)
    }

    /// The providers with this issuer (several clients of one provider may be configured).
    pub fn by_issuer(&self, issuer: &str) -> impl Iterator<Item = &Arc<Provider>> {
        self.by_issuer
            .get(issuer)
            .into_iter()
            .flatten()
            .map(|i| &self.list[*i])
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
