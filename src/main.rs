//! The `sessiongate` command line: run the proxy, or check a configuration file.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: a proxied request allocates a few dozen small
/// blocks, and glibc's malloc was the largest single cost around the session work in the
/// load harness's profiles (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Edge reverse proxy that owns the browser session for the applications behind it.
#[derive(Debug, Parser)]
#[command(name = "sessiongate", version, about)]
struct Cli {
    /// Configuration file to run with.
    #[arg(short, long, value_name = "FILE", conflicts_with = "check")]
    config: Option<PathBuf>,
    /// Validate a configuration file, print every problem, and exit.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Log lines as JSON objects instead of text.
    #[arg(long)]
    log_json: bool,
    /// Take the listening sockets over from the running instance (zero-downtime upgrade:
    /// start this one, then send SIGQUIT to the old one).
    #[arg(long, requires = "config")]
    upgrade: bool,
    /// Ask the admin listener at ADDR for /healthz and exit 0 if it answers 200, 1 otherwise
    /// (a container health check that needs no curl).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["config", "check"])]
    healthcheck: Option<String>,
}

/// GET http://`addr`/healthz with a short deadline; true on a 200.
fn healthy(addr: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let deadline = std::time::Duration::from_secs(2);
    let Some(target) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        eprintln!("sessiongate: {addr} is not an address");
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&target, deadline) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(deadline));
    let _ = stream.set_write_timeout(Some(deadline));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(addr) = cli.healthcheck {
        return if healthy(&addr) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Some(path) = cli.check {
        return match sessiongate::config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!(
            "sessiongate: give --config FILE to run, or --check FILE to validate (see --help)"
        );
        return ExitCode::from(2);
    };
    // Pingora's own debug lines print whole request and response headers, cookies included:
    // they stay at info whatever RUST_LOG asks, so no log ever holds a session id.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("pingora_proxy=info".parse().expect("a directive"))
        .add_directive("pingora_core=info".parse().expect("a directive"));
    // Logs go to stderr; colours only when a person is watching.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if cli.log_json {
        logs.json().init();
        sessiongate::access_log::init(sessiongate::access_log::Format::Json);
    } else {
        logs.init();
        sessiongate::access_log::init(sessiongate::access_log::Format::Text);
    }
    let config = match sessiongate::config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match sessiongate::server::build(sessiongate::server::Launch {
        config,
        path,
        upgrade: cli.upgrade,
    }) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("sessiongate: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
