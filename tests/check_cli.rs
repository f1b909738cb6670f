//! The `sessiongate` binary's command line: `--check` on every shipped example and on broken
//! files, `--version`, and what happens without arguments. Nothing here starts the proxy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sessiongate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessiongate"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run sessiongate")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every `conf/*.toml`, as paths relative to the package root (the way the docs spell them).
fn shipped_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("conf"))
        .expect("read conf/")
        .map(|entry| entry.expect("conf/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.strip_prefix(root).expect("under the root").to_path_buf())
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_checks_ok() {
    let files = shipped_configs();
    assert!(
        files.len() >= 2,
        "expected conf/quickstart.toml and conf/redis.toml at least, found {files:?}"
    );
    for file in &files {
        let shown = file.to_str().expect("UTF-8 path");
        let out = sessiongate(&["--check", shown]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{shown} does not check ok:\n{}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), format!("{shown}: ok\n"));
        assert_eq!(stderr(&out), "", "{shown}");
    }
}

#[test]
fn shipped_configs_check_ok_from_another_directory() {
    // Relative secret paths resolve against the file's directory, not the working directory.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let elsewhere = tempfile::tempdir().unwrap();
    for file in shipped_configs() {
        let absolute = root.join(&file);
        let out = Command::new(env!("CARGO_BIN_EXE_sessiongate"))
            .arg("--check")
            .arg(&absolute)
            .current_dir(elsewhere.path())
            .output()
            .expect("run sessiongate");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{}",
            absolute.display(),
            stderr(&out)
        );
        assert!(stdout(&out).ends_with(": ok\n"), "{}", stdout(&out));
    }
}

const BROKEN: &str = r#"
[server]
listen = []
threads = 0

[session]
cookie_name = "__Host-sid"
secure = false
idle_timeout = "1h"
renew_below = "2h"

[store]
kind = "redis"
url = "http://127.0.0.1:6379"
command_timeout = "0ms"

[identity]
insecure_signing_key = "short"

[identity.headers]
"Authorization" = "sub"

[[upstream]]
name = "app"
backends = ["127.0.0.1"]

[[route]]
path_prefix = "api"
upstream = "web"
"#;

#[test]
fn broken_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let shown = path.to_str().unwrap();
    let out = sessiongate(&["--check", shown]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "nothing on stdout for a broken file");
    let err = stderr(&out);
    let expected = [
        "server.listen: needs at least one address",
        "server.threads: must be between 1 and 1024",
        "session.cookie_name: a __Host- cookie requires secure = true",
        "session.renew_below: must be less than session.idle_timeout (1h)",
        "session.cookie_keys: the Redis store needs at least one cookie key",
        "store.url: is not a Redis URL",
        "store.command_timeout: must be greater than zero",
        "identity.insecure_signing_key: the signing key has 5 bytes; HS256 keys need at least 32",
        "identity.headers.\"Authorization\": \"Authorization\" is a header the proxy or clients need",
        "upstream[0].backends[0]: \"127.0.0.1\" is not a host:port address",
        "route[0].path_prefix: \"api\" must start with '/'",
        "route[0].upstream: no upstream named \"web\"; defined: [\"app\"]",
    ];
    assert!(
        err.starts_with(&format!("{shown} has {} problem(s):\n", expected.len())),
        "{err}"
    );
    for line in expected {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("  - {line}"))),
            "missing `{line}` in:\n{err}"
        );
    }
    let listed = err.lines().filter(|l| l.starts_with("  - ")).count();
    assert_eq!(listed, expected.len(), "{err}");
}

#[test]
fn unparsable_config_exits_2_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[session]\ncookie_nam = \"sid\"\n").unwrap();
    let shown = path.to_str().unwrap();
    let out = sessiongate(&["--check", shown]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "{shown} is not a valid sessiongate configuration:"
        )),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("unknown field `cookie_nam`"), "{err}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = sessiongate(&["--check", "conf/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("cannot read conf/does-not-exist.toml:"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn version_prints_the_package_version() {
    let out = sessiongate(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("sessiongate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_mentions_config_and_check() {
    let out = sessiongate(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = stdout(&out);
    assert!(help.contains("--config <FILE>"), "{help}");
    assert!(help.contains("--check <FILE>"), "{help}");
}

#[test]
fn no_arguments_explains_what_to_give() {
    let out = sessiongate(&[]);
    assert!(!out.status.success(), "must not start without a config");
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("--config FILE"), "{err}");
    assert!(err.contains("--check FILE"), "{err}");
}

#[test]
fn config_and_check_together_are_refused() {
    let out = sessiongate(&[
        "--config",
        "conf/quickstart.toml",
        "--check",
        "conf/quickstart.toml",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_flag_is_refused() {
    let out = sessiongate(&["--chek", "conf/quickstart.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--chek"), "{}", stderr(&out));
}

#[test]
fn broken_signing_keys_are_named_by_their_path() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys");
    let text = format!(
        r#"
[identity]
[[identity.keys]]
id = "a"
algorithm = "EdDSA"
file = "{keys}/ed25519.pem"
[[identity.keys]]
id = "b"
algorithm = "EdDSA"
file = "{keys}/rsa-pkcs8.pem"
[[identity.keys]]
id = "a"
algorithm = "ES256"
file = "{keys}/ed25519.pem"

[[upstream]]
name = "app"
backends = ["127.0.0.1:8000"]

[[route]]
upstream = "app"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, text).unwrap();
    let out = sessiongate(&["--check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for line in [
        "identity.keys[1].file: holds an RSA key",
        "identity.keys[2].id: \"a\" is the id of an earlier key",
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("  - {line}"))),
            "missing `{line}` in:\n{err}"
        );
    }
}
