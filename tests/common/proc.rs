//! Child processes: redis-server and sessiongate, on ephemeral ports, killed on drop.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::poll::eventually_blocking;

/// A port that was free a moment ago (bind to port 0, read it, release it),
/// never one this test binary has handed out before: the kernel may offer a
/// just-released port again, and two listeners of one test must not collide.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port");
        if HANDED_OUT.lock().expect("port set").insert(port) {
            return port;
        }
    }
}

pub fn wait_for_port(port: u16, child: &mut Child, what: &str, log: Option<&PathBuf>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let failure = format!("{what} did not listen on port {port}");
    eventually_blocking(Duration::from_secs(20), &failure, || {
        if let Ok(Some(status)) = child.try_wait() {
            let logs = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("{what} exited with {status} before listening on {port}:\n{logs}");
        }
        TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
    });
}

/// Calls of one command so far on the server behind `conn`, from `INFO commandstats`.
pub fn command_calls_on(conn: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO works");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether a Unix socket at `path` is listening (accepts connections), from
/// `/proc/net/unix`: without connecting to it, which would hand the listener a connection.
pub fn unix_socket_listening(path: &std::path::Path) -> bool {
    // Columns: Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON.
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.len() >= 8
                && fields[7] == path
                && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x10000 != 0)
        })
}

pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} failed");
}

/// A real `redis-server` on an ephemeral port, with persistence off.
pub struct RedisServer {
    pub port: u16,
    /// The `requirepass` password, when the server has one.
    pub password: Option<String>,
    child: Child,
    /// The server's own working directory: a replica writes the RDB it receives there, and a
    /// server loads any `dump.rdb` it finds at start, so no two servers may share one.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts on a given port (e.g. one a proxy was configured with before Redis existed).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Starts with a password (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        let mut server = Self::start_with(free_port(), &["--requirepass", password]);
        server.password = Some(password.to_string());
        server
    }

    /// Starts on `port` with extra `redis-server` arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new("redis-server")
            .args([
                "--dir",
                &dir.path().display().to_string(),
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the README's test command installs it)");
        wait_for_port(port, &mut child, "redis-server", None);
        RedisServer {
            port,
            password: None,
            child,
            _dir: dir,
        }
    }

    /// The URL without credentials (what a proxy configured with `password_file` uses).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The URL the test itself connects with (credentials included).
    fn admin_url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        }
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.admin_url())
            .and_then(|c| c.get_connection())
            .expect("connects to the test redis")
    }

    /// Calls of one command so far, from `INFO commandstats` (e.g. "get", "evalsha").
    pub fn command_calls(&self, command: &str) -> u64 {
        command_calls_on(&mut self.connection(), command)
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, a hung store.
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        signal(&self.child, "-CONT");
    }

    /// Stops the server for good (a dead store).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real `sessiongate` binary running a test configuration.
/// The ports a proxy listens on: plain, admin and HTTPS.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub port: u16,
    pub admin_port: u16,
    pub tls_port: u16,
}

impl Ports {
    pub fn free() -> Self {
        Ports {
            port: free_port(),
            admin_port: free_port(),
            tls_port: free_port(),
        }
    }
}

pub struct Proxy {
    pub port: u16,
    pub admin_port: u16,
    /// The HTTPS listener's port, where the configuration has `{tls_port}`.
    pub tls_port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
    child: Child,
}

impl Proxy {
    /// Starts the binary with this configuration text (`{port}`, `{admin_port}` and `{dir}`
    /// are filled in) and waits until it listens.
    pub fn start(config: &str) -> Self {
        Self::start_with_args(config, &[])
    }

    /// Like `start`, with extra command-line arguments (e.g. `--log-json`).
    pub fn start_with_args(config: &str, args: &[&str]) -> Self {
        Self::start_with(config, &[], args)
    }

    /// Like `start`, with `files` (name, contents) written into the proxy's directory first
    /// (the config can name them as `{dir}/name`), and extra command-line arguments.
    pub fn start_with(config: &str, files: &[(String, String)], args: &[&str]) -> Self {
        Self::start_on_ports(config, files, args, Ports::free())
    }

    /// Like `start_with`, on ports the test chose beforehand (to register the proxy's URLs
    /// with a server that starts first, say).
    pub fn start_on_ports(
        config: &str,
        files: &[(String, String)],
        args: &[&str],
        ports: Ports,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("writes a file");
        }
        let Ports {
            port,
            admin_port,
            tls_port,
        } = ports;
        let text = config
            .replace("{port}", &port.to_string())
            .replace("{admin_port}", &admin_port.to_string())
            .replace("{tls_port}", &tls_port.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::File::create(dir.path().join("sessiongate.toml"))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("writes config");
        let log = dir.path().join("sessiongate.log");
        let mut child = Self::spawn(&dir, &log, args);
        // Ready once both listeners are up: the admin listener may come a moment after the
        // public one, and a test that asks /readyz first must not find it refused.
        if text.contains(&format!("127.0.0.1:{port}")) {
            wait_for_port(port, &mut child, "sessiongate", Some(&log));
        }
        if text.contains(&format!("127.0.0.1:{tls_port}")) {
            wait_for_port(
                tls_port,
                &mut child,
                "sessiongate's HTTPS listener",
                Some(&log),
            );
        }
        if text.contains(&format!("127.0.0.1:{admin_port}")) {
            wait_for_port(
                admin_port,
                &mut child,
                "sessiongate's admin listener",
                Some(&log),
            );
        }
        Proxy {
            port,
            admin_port,
            tls_port,
            dir,
            log,
            child,
        }
    }

    fn spawn(dir: &tempfile::TempDir, log: &PathBuf, args: &[&str]) -> Child {
        let log_file = std::fs::File::create(log).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_sessiongate"))
            .arg("--config")
            .arg(dir.path().join("sessiongate.toml"))
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("sessiongate starts")
    }

    /// The configuration file the proxy runs with (rewrite it, then `signal("-HUP")`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sessiongate.toml")
    }

    /// Replaces the configuration file (placeholders filled in as at start).
    pub fn rewrite_config(&self, config: &str) {
        let text = config
            .replace("{port}", &self.port.to_string())
            .replace("{admin_port}", &self.admin_port.to_string())
            .replace("{tls_port}", &self.tls_port.to_string())
            .replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(self.config_path(), text).expect("rewrites config");
    }

    /// Sends a signal ("-HUP", "-QUIT", ...) to the process.
    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Starts a second process on the same configuration with `--upgrade`: it takes over the
    /// listening sockets once this one is sent SIGQUIT. Does not wait; the caller sends the
    /// signal.
    pub fn start_upgrade(&self) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(self.config_path(), dir.path().join("sessiongate.toml"))
            .expect("copies config");
        let log = dir.path().join("sessiongate.log");
        let child = Self::spawn(&dir, &log, &["--upgrade"]);
        Proxy {
            port: self.port,
            admin_port: self.admin_port,
            tls_port: self.tls_port,
            dir,
            log,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to 30 s for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM could not be sent");
        eventually_blocking(
            Duration::from_secs(30),
            "sessiongate did not exit after SIGTERM",
            || self.child.try_wait().expect("waits"),
        )
    }

    /// Everything the proxy has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        std::fs::File::open(&self.log)
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.contains(needle))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sessiongate log ---\n{}", self.logs());
        }
    }
}
