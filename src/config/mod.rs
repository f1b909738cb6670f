//! Configuration: the TOML file as written (`file`), the checks that turn it into a typed,
//! validated model (`validate`), and the model the rest of the proxy reads (`model`).
//!
//! Loading never stops at the first problem: every error is collected with the key path it
//! concerns, so an operator fixes a broken file in one pass.

pub mod file;
pub mod keys;
pub mod model;
mod problem;
pub mod validate;

use std::path::Path;

pub use model::Config;
pub use problem::ConfigProblem;
pub use validate::secure_url;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid sessiongate configuration:\n{message}")]
    Parse { path: String, message: String },
    #[error("{path} has {} problem(s):\n{}", problems.len(), render(problems))]
    Invalid {
        path: String,
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// Every problem as one line each, for `--check` and for tests.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } | ConfigError::Parse { .. } => vec![self.to_string()],
            ConfigError::Invalid { problems, .. } => {
                problems.iter().map(ToString::to_string).collect()
            }
        }
    }
}

fn render(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    from_toml(&text, &shown, base)
}

/// Parses and validates configuration text; relative secret file paths resolve against `base`.
pub fn from_toml(text: &str, shown: &str, base: &Path) -> Result<Config, ConfigError> {
    let raw: file::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: shown.to_string(),
        message: e.to_string(),
    })?;
    validate::validate(raw, base).map_err(|problems| ConfigError::Invalid {
        path: shown.to_string(),
        problems,
    })
}
