//! The `sessiongate` command line: run the proxy, or check a configuration file.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr; colours only when a person is watching.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let config = match sessiongate::config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match sessiongate::server::build(config) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("sessiongate: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
