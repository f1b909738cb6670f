//! The plain Pingora baseline of the load harness: a reverse proxy on the same Pingora version
//! and thread count as sessiongate that forwards every request to one upstream and does
//! nothing else. Comparing sessiongate against it isolates what sessions cost on top of
//! Pingora itself.
//!
//! `benches/load/run.sh` starts it as
//! `load_passthrough --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--threads N]
//! [--tls-listen 127.0.0.1:PORT --cert CHAIN.pem --key KEY.pem]`. The TLS listener is built as
//! sessiongate builds its own (src/server/listeners.rs): Pingora's rustls listener with
//! `TlsSettings::intermediate` and ALPN h2 then http/1.1, so that it also serves HTTP/2.
//! Without a listen/upstream pair it exits at once with success, because `cargo test --benches`
//! runs every bench binary with no arguments (and `cargo bench` adds `--bench`).

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

/// The allocator sessiongate runs with (src/main.rs), so that comparing the two measures the
/// session work rather than the allocator. BENCHMARKS.md gives what the allocator alone changes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Forwards every request to `upstream`, over Pingora's keep-alive connection pool.
struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // The same peer sessiongate builds for a plain-HTTP backend.
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// What the command line asked for; `None` when there is nothing to run.
struct Options {
    listen: String,
    upstream: SocketAddr,
    threads: usize,
    /// The HTTPS listener and its certificate chain and key files.
    tls: Option<(String, String, String)>,
}

fn options() -> Result<Option<Options>, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut threads = 2;
    let (mut tls_listen, mut cert, mut key) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value("--listen")?),
            "--upstream" => {
                let v = value("--upstream")?;
                upstream = Some(v.parse().map_err(|e| format!("--upstream {v}: {e}"))?);
            }
            "--threads" => {
                let v = value("--threads")?;
                threads = v.parse().map_err(|e| format!("--threads {v}: {e}"))?;
            }
            "--tls-listen" => tls_listen = Some(value("--tls-listen")?),
            "--cert" => cert = Some(value("--cert")?),
            "--key" => key = Some(value("--key")?),
            // `cargo bench` passes `--bench`; filters and other harness flags mean nothing here.
            _ => {}
        }
    }
    let tls = match (tls_listen, cert, key) {
        (Some(listen), Some(cert), Some(key)) => Some((listen, cert, key)),
        (None, None, None) => None,
        _ => return Err("--tls-listen, --cert and --key go together".to_string()),
    };
    Ok(match (listen, upstream) {
        (Some(listen), Some(upstream)) => Some(Options {
            listen,
            upstream,
            threads,
            tls,
        }),
        _ => None,
    })
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_passthrough: {e}");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads: options.threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: options.upstream,
        },
    );
    proxy.add_tcp(&options.listen);
    if let Some((listen, cert, key)) = &options.tls {
        let mut settings = match TlsSettings::intermediate(cert, key) {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("load_passthrough: {cert}, {key}: {e}");
                return ExitCode::from(2);
            }
        };
        settings.enable_h2();
        proxy.add_tls_with_settings(listen, None, settings);
        eprintln!("load_passthrough: TLS (h2, http/1.1) on {listen}");
    }
    server.add_service(proxy);
    eprintln!(
        "load_passthrough: {} -> {} on {} threads",
        options.listen, options.upstream, options.threads
    );
    server.run_forever()
}
