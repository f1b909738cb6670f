//! The one way a secret is read: from a file (relative to the configuration's directory,
//! trailing newline ignored), from an environment variable, or, where the key allows it and
//! its name says so (`insecure_…`), inline for demos. At most one source.

use std::path::Path;

use super::problems::Problems;
use crate::config::model::SecretBytes;

/// Where a secret may come from.
pub(super) struct Secret<'a> {
    pub file: Option<&'a str>,
    pub env: Option<&'a str>,
    /// `insecure_{stem}`, for the keys that allow an inline value.
    pub insecure_inline: Option<&'a str>,
    /// Whether a source must be set.
    pub required: bool,
}

/// The table a secret's keys are in and their names.
pub(super) struct SecretKeys {
    section: String,
    file: String,
    env: String,
    inline: String,
}

impl SecretKeys {
    /// `{stem}_file`, `{stem}_env` and `insecure_{stem}` in `section`.
    pub fn stem(section: &str, stem: &str) -> Self {
        SecretKeys {
            section: section.to_string(),
            file: format!("{stem}_file"),
            env: format!("{stem}_env"),
            inline: format!("insecure_{stem}"),
        }
    }

    /// `file`, `env` and `insecure_value` in a table of their own (`section`).
    pub fn table(section: String) -> Self {
        SecretKeys {
            section,
            file: "file".into(),
            env: "env".into(),
            inline: "insecure_value".into(),
        }
    }
}

/// The secret one of the keys names, and the key path it came from. `None` when none is set
/// (a problem if `required`), when several are set, or when the source cannot be read.
pub(super) fn read_secret(
    secret: Secret<'_>,
    keys: SecretKeys,
    base: &Path,
    p: &mut Problems,
) -> Option<(SecretBytes, String)> {
    let SecretKeys {
        section,
        file: file_key,
        env: env_key,
        inline: inline_key,
    } = keys;
    let set = [secret.file, secret.env, secret.insecure_inline]
        .iter()
        .filter(|s| s.is_some())
        .count();
    if set > 1 || (set == 0 && secret.required) {
        let message = if secret.required {
            format!("set exactly one of {file_key}, {env_key} or {inline_key}")
        } else {
            format!("set either {file_key} or {env_key}, not both")
        };
        p.add(section, message);
        return None;
    }
    if let Some(file) = secret.file {
        let path = format!("{section}.{file_key}");
        let full = base.join(file);
        return match std::fs::read(&full) {
            Ok(mut bytes) => {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Some((SecretBytes(bytes), path))
            }
            Err(e) => {
                p.add(path, format!("cannot read {}: {e}", full.display()));
                None
            }
        };
    }
    if let Some(var) = secret.env {
        let path = format!("{section}.{env_key}");
        return match std::env::var(var) {
            Ok(value) => Some((SecretBytes(value.into_bytes()), path)),
            Err(_) => {
                p.add(
                    path,
                    format!("environment variable {var} is not set (or not UTF-8)"),
                );
                None
            }
        };
    }
    let inline = secret.insecure_inline?;
    Some((
        SecretBytes(inline.as_bytes().to_vec()),
        format!("{section}.{inline_key}"),
    ))
}
