//! `sessiongate-demo`: runs the bundled demo upstream app (`app`) so a newcomer can put
//! sessiongate in front of something on day one. It is its own program, not part of the
//! proxy's library: it only speaks the wire protocol (docs/protocol.md), as any app would.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

mod app;

use app::{serve, DemoSettings};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The demo "legacy" app that trusts sessiongate's identity headers.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,
    /// File holding the HMAC key that verifies the assertion (trailing whitespace ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "key_env")]
    key_file: Option<PathBuf>,
    /// Environment variable holding the HMAC key that verifies the assertion.
    #[arg(long, value_name = "NAME")]
    key_env: Option<String>,
    /// Request header that carries the signed assertion.
    #[arg(long, value_name = "NAME", default_value = "X-Sessiongate-Assertion")]
    assertion_header: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let verify_key = read_key(&args)?;
    if verify_key.is_none() {
        tracing::warn!("no --key-file or --key-env given: assertions are shown but not verified");
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    tracing::info!("demo app listening on http://{addr}");
    let settings = DemoSettings {
        assertion_header: args.assertion_header,
        verify_key,
    };
    serve(listener, settings)
        .await
        .map_err(|e| format!("demo app stopped: {e}"))
}

fn read_key(args: &Args) -> Result<Option<Vec<u8>>, String> {
    let key = match (&args.key_file, &args.key_env) {
        (Some(path), _) => std::fs::read(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
        (None, Some(name)) => std::env::var(name)
            .map_err(|e| format!("cannot read key from environment variable {name}: {e}"))?
            .into_bytes(),
        (None, None) => return Ok(None),
    };
    // Files written by `echo` or an editor end in a newline that is not part of the key.
    let len = key
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    let key = key[..len].to_vec();
    if key.is_empty() {
        return Err("the verification key is empty".into());
    }
    if key.len() < 32 {
        tracing::warn!(
            bytes = key.len(),
            "verification key is shorter than 32 bytes"
        );
    }
    Ok(Some(key))
}
