//! Redis topologies the tests build from real processes: a Sentinel group (master, replica,
//! three sentinels), a three-primary Cluster, and TLS for either or for a single server, with
//! certificates generated for the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::{Pki, Validity};
use super::poll::eventually_blocking;
use super::proc::{free_port, wait_for_port, RedisServer};

/// A CA, a server certificate for 127.0.0.1 / localhost and a client certificate, as PEM files.
#[derive(Clone)]
pub struct TlsFiles {
    pki: std::sync::Arc<Pki>,
}

impl TlsFiles {
    pub fn generate() -> Self {
        let pki = Pki::new("sessiongate test CA");
        pki.issue("server", &["127.0.0.1", "localhost"], Validity::Current);
        pki.issue("client", &["sessiongate-client"], Validity::Current);
        TlsFiles {
            pki: std::sync::Arc::new(pki),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.pki.path(name)
    }

    /// `redis-server` arguments serving TLS only on `port`, requiring client certificates.
    fn server_args(&self, port: u16) -> Vec<String> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            p("server.crt"),
            "--tls-key-file".into(),
            p("server.key"),
            "--tls-ca-cert-file".into(),
            p("ca.crt"),
            "--tls-auth-clients".into(),
            "yes".into(),
            "--tls-replication".into(),
            "yes".into(),
            "--tls-cluster".into(),
            "yes".into(),
        ]
    }

    /// A client for the test's own checks, presenting the client certificate.
    pub fn client(&self, url: &str) -> redis::Client {
        let read = |n: &str| std::fs::read(self.path(n)).expect("reads PEM");
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: Some(redis::ClientTlsConfig {
                    client_cert: read("client.crt"),
                    client_key: read("client.key"),
                }),
                root_cert: Some(read("ca.crt")),
            },
        )
        .expect("TLS client")
    }

    /// The `[store]` keys that point sessiongate at these files.
    pub fn store_keys(&self) -> String {
        format!(
            "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            self.path("ca.crt").display(),
            self.path("client.crt").display(),
            self.path("client.key").display()
        )
    }
}

fn scheme(tls: Option<&TlsFiles>) -> &'static str {
    if tls.is_some() {
        "rediss"
    } else {
        "redis"
    }
}

/// Starts a redis-server on `port` (TLS-only when `tls` is given) with `extra` arguments.
fn server(port: u16, tls: Option<&TlsFiles>, extra: &[String]) -> RedisServer {
    let mut args: Vec<String> = tls.map(|t| t.server_args(port)).unwrap_or_default();
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start_with(port, &args)
}

/// `redis-server` arguments requiring `password` of clients and of its own master.
fn auth_args(password: Option<&str>) -> Vec<String> {
    password
        .map(|p| {
            vec![
                "--requirepass".into(),
                p.into(),
                "--masterauth".into(),
                p.into(),
            ]
        })
        .unwrap_or_default()
}

/// The URL of a node on `port`, with `password` when there is one.
fn node_url(tls: Option<&TlsFiles>, password: Option<&str>, port: u16) -> String {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    format!("{}://{auth}127.0.0.1:{port}", scheme(tls))
}

fn connect(url: &str, tls: Option<&TlsFiles>) -> redis::Connection {
    let client = match tls {
        Some(t) => t.client(url),
        None => redis::Client::open(url).expect("client"),
    };
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connects")
}

/// Polls `check` (with the one poller) for up to `limit`; fails with `what` if it never holds.
/// Returns how long it took.
pub fn wait_until(limit: Duration, what: &str, check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    eventually_blocking(limit, what, check);
    start.elapsed()
}

/// One master, one replica and three sentinels (`down-after-milliseconds` 1000) watching them
/// under the name `sessiongate`.
pub struct SentinelGroup {
    pub nodes: Vec<RedisServer>,
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<Child>,
    tls: Option<TlsFiles>,
    password: Option<String>,
    _dir: tempfile::TempDir,
}

pub const MASTER_NAME: &str = "sessiongate";

impl SentinelGroup {
    pub fn start(tls: Option<&TlsFiles>) -> Self {
        Self::start_with(tls, None)
    }

    /// With `password` required by the master and the replica (the sentinels need none).
    pub fn start_with(tls: Option<&TlsFiles>, password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let master = server(free_port(), tls, &auth_args(password));
        let mut replica_args = auth_args(password);
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ]);
        let replica = server(free_port(), tls, &replica_args);
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let mut conf = String::new();
            match tls {
                Some(t) => {
                    let p = |n: &str| t.path(n).display().to_string();
                    conf.push_str(&format!(
                        "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                         tls-ca-cert-file {}\ntls-replication yes\ntls-auth-clients yes\n",
                        p("server.crt"),
                        p("server.key"),
                        p("ca.crt")
                    ));
                }
                None => conf.push_str(&format!("port {port}\n")),
            }
            conf.push_str(&format!(
                "bind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display(),
                master = master.port,
            ));
            if let Some(p) = password {
                conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {p}\n"));
            }
            let path = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(&path, conf).expect("writes sentinel.conf");
            let mut child = Command::new("redis-server")
                .arg(&path)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs as a sentinel");
            wait_for_port(port, &mut child, "redis sentinel", None);
            sentinels.push(child);
            sentinel_ports.push(port);
        }
        let group = SentinelGroup {
            nodes: vec![master, replica],
            sentinel_ports,
            sentinels,
            tls: tls.cloned(),
            password: password.map(String::from),
            _dir: dir,
        };
        // Ready when every sentinel knows the replica and the two other sentinels.
        wait_until(Duration::from_secs(30), "sentinels see each other", || {
            (0..3).all(|i| {
                let info = group.sentinel_master_info(i);
                info.get("num-slaves").map(String::as_str) == Some("1")
                    && info.get("num-other-sentinels").map(String::as_str) == Some("2")
            })
        });
        group
    }

    fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    fn sentinel(&self, i: usize) -> redis::Connection {
        let url = format!(
            "{}://127.0.0.1:{}",
            scheme(self.tls()),
            self.sentinel_ports[i]
        );
        connect(&url, self.tls())
    }

    fn sentinel_master_info(&self, i: usize) -> std::collections::HashMap<String, String> {
        redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(MASTER_NAME)
            .query(&mut self.sentinel(i))
            .unwrap_or_default()
    }

    /// The `[store]` keys for this group.
    pub fn store_keys(&self) -> String {
        let urls: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("\"{}://127.0.0.1:{p}\"", scheme(self.tls())))
            .collect();
        let mut keys = format!(
            "mode = \"sentinel\"\nsentinels = [{}]\nmaster_name = \"{MASTER_NAME}\"\n",
            urls.join(", ")
        );
        if let Some(t) = self.tls() {
            keys.push_str(&t.store_keys());
        }
        keys
    }

    /// The master's port as sentinel 0 reports it.
    pub fn master_port(&self) -> u16 {
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut self.sentinel(0))
            .expect("sentinel names a master");
        port
    }

    /// A connection to the current master.
    pub fn master(&self) -> redis::Connection {
        let url = node_url(self.tls(), self.password.as_deref(), self.master_port());
        connect(&url, self.tls())
    }

    /// Blocks until the replica has every write the master has (offsets equal).
    pub fn wait_for_replication(&self) {
        let mut master = self.master();
        redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query::<i64>(&mut master)
            .expect("WAIT works");
    }

    /// SIGKILLs the current master.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the master is one of ours");
        node.kill();
        port
    }

    /// Asks the sentinels for a failover (the master is demoted to a replica: `READONLY`).
    pub fn failover(&self) {
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query::<String>(&mut self.sentinel(0))
            .expect("SENTINEL FAILOVER accepted");
    }

    /// Waits until the sentinels name a master other than `old` and it answers as a master.
    pub fn wait_for_new_master(&self, old: u16) -> Duration {
        wait_until(Duration::from_secs(30), "a new master", || {
            let port = self.master_port();
            port != old && {
                let role: Vec<redis::Value> = redis::cmd("ROLE")
                    .query(&mut self.master())
                    .unwrap_or_default();
                matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
            }
        })
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// Three primaries made into a cluster with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    tls: Option<TlsFiles>,
    password: Option<String>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start(tls: Option<&TlsFiles>) -> Self {
        Self::start_with(tls, None)
    }

    /// With `password` required by every node.
    pub fn start_with(tls: Option<&TlsFiles>, password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let bus = free_port();
            let mut args = auth_args(password);
            args.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-port".into(),
                bus.to_string(),
                "--cluster-config-file".into(),
                format!("nodes-{port}.conf"),
                "--cluster-node-timeout".into(),
                "2000".into(),
            ]);
            nodes.push(server(port, tls, &args));
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        if let Some(p) = password {
            create.arg("-a").arg(p).arg("--no-auth-warning");
        }
        if let Some(t) = tls {
            create
                .arg("--tls")
                .arg("--cacert")
                .arg(t.path("ca.crt"))
                .arg("--cert")
                .arg(t.path("client.crt"))
                .arg("--key")
                .arg(t.path("client.key"));
        }
        let out = create.output().expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster {
            nodes,
            tls: tls.cloned(),
            password: password.map(String::from),
            _dir: dir,
        };
        wait_until(Duration::from_secs(30), "cluster_state:ok", || {
            cluster.nodes.iter().all(|n| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut cluster.node(n.port))
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            })
        });
        cluster
    }

    /// A plain connection to one node (no redirects followed).
    pub fn node(&self, port: u16) -> redis::Connection {
        let tls = self.tls.as_ref();
        connect(&node_url(tls, self.password.as_deref(), port), tls)
    }

    /// The `[store]` keys for this cluster.
    pub fn store_keys(&self) -> String {
        let tls = self.tls.as_ref();
        let scheme = scheme(tls);
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{scheme}://127.0.0.1:{}\"", n.port))
            .collect();
        let mut keys = format!("mode = \"cluster\"\nnodes = [{}]\n", urls.join(", "));
        if let Some(t) = tls {
            keys.push_str(&t.store_keys());
        }
        keys
    }

    /// Keys held by each node (`DBSIZE`), in node order.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                redis::cmd("DBSIZE")
                    .query(&mut self.node(n.port))
                    .expect("DBSIZE")
            })
            .collect()
    }
}

/// A standalone server serving TLS only, requiring a client certificate.
pub fn tls_server(tls: &TlsFiles) -> RedisServer {
    server(free_port(), Some(tls), &[])
}
