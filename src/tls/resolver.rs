//! The certificate resolver rustls asks at each handshake: it reads the current certificate
//! set, which a reload replaces whole. A handshake under way keeps the set it read; connections
//! already made are not touched.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Certificates;

/// Chooses each handshake's certificate from the set current at that moment.
#[derive(Debug)]
pub struct SniResolver {
    current: ArcSwap<Certificates>,
}

impl SniResolver {
    pub fn new(certificates: Certificates) -> Arc<Self> {
        Arc::new(SniResolver {
            current: ArcSwap::from_pointee(certificates),
        })
    }

    /// New handshakes get `certificates`.
    pub fn replace(&self, certificates: Certificates) {
        self.current.store(Arc::new(certificates));
    }

    /// The set new handshakes choose from.
    pub fn current(&self) -> Arc<Certificates> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = self.current.load().choose(hello.server_name()).cloned();
        if chosen.is_none() {
            tracing::debug!(
                server_name = hello.server_name().unwrap_or_default(),
                "refused a TLS handshake for a name no certificate covers"
            );
        }
        chosen
    }
}
