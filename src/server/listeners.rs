//! The public listeners: plain TCP (`[server] listen`) and HTTPS (`[tls] listen`: rustls
//! through Pingora, ALPN `h2` and `http/1.1`, the certificate chosen by SNI from a set a reload
//! replaces), all serving the one proxy behind the connection caps and, for HTTP/1, the head
//! guard. HTTP/2's own limits (header list size, idle timeout) come from the same settings.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpServerOptions, ServerApp};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::http::v2::server::default_h2_options;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;
use tracing::debug;

use crate::connection::{Admission, ConnectionGuard, GuardedStream, HeadLimits, Ticket};
use crate::proxy::{Gateway, SharedState};
use crate::tls::SniResolver;

/// No read buffer in front of a plain socket: Pingora reads request heads into a buffer of
/// its own and bodies in large chunks, so a second buffer would only cost every connection,
/// idle ones included, 64 KiB (Pingora's default). Writes are buffered up to one segment.
const PLAIN_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: Some(1460),
};

/// Under TLS one record (16 KiB) is read ahead, so that rustls's small reads of a large body
/// do not each cost a system call.
const TLS_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(16 * 1024),
    write: Some(1460),
};

/// The proxy service on every public listener, and the certificate resolver of its HTTPS
/// listeners (which reloads give new certificates).
pub(super) fn proxy_service(
    conf: &Arc<ServerConf>,
    state: SharedState,
) -> (Service<GuardedProxy>, Option<Arc<SniResolver>>) {
    let current = state.load_full();
    let config = &current.config;
    let limits = config.server.connections;
    let mut proxy = pingora::proxy::http_proxy(conf, Gateway::new(state.clone()));
    let mut h2 = default_h2_options();
    h2.max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    proxy.h2_options = Some(h2);
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(limits.keepalive_timeout);
    proxy.server_options = Some(options);
    let app = GuardedProxy {
        proxy: Arc::new(proxy),
        state: state.clone(),
        admission: Admission::new(limits.max_connections, limits.max_connections_per_client),
    };
    let mut service = Service::new("sessiongate".to_string(), app);
    for addr in &config.server.listen {
        service.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(PLAIN_BUFFERS));
    }
    let resolver = config.tls.as_ref().map(|tls| {
        let resolver = SniResolver::new(tls.certificates.clone());
        for addr in &tls.listen {
            let mut settings = TlsSettings::intermediate("", "")
                .expect("TLS settings without files are always built");
            settings.set_cert_resolver(resolver.clone());
            if tls.http2 {
                settings.enable_h2();
            } else {
                settings.set_alpn(ALPN::H1);
            }
            service.add_listener(
                ListenerConfig::tcp(addr.to_string())
                    .tls(settings)
                    .l4_buffer(TLS_BUFFERS),
            );
        }
        resolver
    });
    (service, resolver)
}

/// A connection's place under the caps, counted in `sessiongate_client_connections` while
/// it is held.
struct Held(#[allow(dead_code)] Ticket);

impl Held {
    fn new(ticket: Ticket) -> Self {
        crate::metrics::metrics().connections_open.inc();
        Held(ticket)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        crate::metrics::metrics().connections_open.dec();
    }
}

/// The proxy behind the connection limits: each accepted connection takes a place under the
/// connection caps (or is answered 503), and an HTTP/1 connection's stream is wrapped by the
/// head guard with the limits of the configuration current at its accept.
pub(super) struct GuardedProxy {
    proxy: Arc<HttpProxy<Gateway>>,
    state: SharedState,
    admission: Arc<Admission>,
}

#[async_trait]
impl ServerApp for GuardedProxy {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = std::time::Instant::now();
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _held = match self.admission.admit(client) {
            Ok(ticket) => Held::new(ticket),
            Err(refused) => {
                crate::metrics::metrics()
                    .connections_refused
                    .with_label_values(&[refused.as_str()])
                    .inc();
                debug!(
                    reason = refused.as_str(),
                    "refused a connection over the cap"
                );
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(refused.response()).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
                return None;
            }
        };
        let c = self.state.load().config.server.connections;
        let limits = HeadLimits {
            header_timeout: c.header_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            idle_timeout: c.keepalive_timeout,
        };
        if stream.selected_alpn_proto() == Some(pingora::protocols::ALPN::H2) {
            // HTTP/2's frames carry their own limits (the h2 codec's).
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let guard = ConnectionGuard::new(limits, accepted);
        let stream: Stream = Box::new(GuardedStream::new(stream, guard.clone()));
        crate::connection::guard::scope(
            guard,
            ServerApp::process_new(&self.proxy, stream, shutdown),
        )
        .await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await
    }
}
