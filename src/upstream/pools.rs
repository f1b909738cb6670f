//! Upstream pools. Each pool picks a backend by Ketama consistent hashing on the request's
//! affinity key (the session, or its subject), so a user keeps landing on the same backend;
//! requests without one are spread by a rotating key. Backends that fail their active health
//! check, or refused a connection within the last health interval, are skipped: their sessions
//! move to the next backend on the ring and come back when the backend recovers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::{Backend, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::services::background::BackgroundService;

use pingora::prelude::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};

use crate::config::model::{Affinity, HealthCheck, UpstreamSettings, UpstreamTimeouts};

/// How far along the ring a selection looks for an acceptable backend.
const MAX_ITERATIONS: usize = 256;

/// How long a refused connection keeps a backend out when there is no health check.
const DEFAULT_FAILURE_HOLD: Duration = Duration::from_secs(5);

/// One named pool of backends.
pub struct Pool {
    pub name: String,
    pub affinity: Affinity,
    balancer: Arc<LoadBalancer<KetamaHashing>>,
    health_checked: bool,
    size: usize,
    rotation: AtomicU64,
    failure_hold: Duration,
    failures: Mutex<HashMap<SocketAddr, Instant>>,
    /// Whether `failures` ever held anything: until then a selection takes no lock.
    any_failure: AtomicBool,
    /// The backend of a one-backend pool: nothing to hash or walk.
    single: Option<Backend>,
    pub timeouts: UpstreamTimeouts,
    tls: Option<PeerTls>,
}

/// TLS towards a pool's backends, ready for every peer.
struct PeerTls {
    server_name: String,
    ca: Option<Arc<[WrappedX509]>>,
    verify: bool,
}

impl PeerTls {
    fn new(settings: &crate::config::model::UpstreamTls) -> Self {
        PeerTls {
            server_name: settings.server_name.clone(),
            ca: settings.ca.as_ref().map(|certs| {
                certs
                    .iter()
                    .map(|der| WrappedX509::new(der.clone(), parse_x509))
                    .collect::<Vec<_>>()
                    .into()
            }),
            verify: settings.verify,
        }
    }

    fn apply(&self, peer: &mut HttpPeer) {
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
    }
}

fn inet(backend: &Backend) -> Option<SocketAddr> {
    match &backend.addr {
        PingoraAddr::Inet(addr) => Some(*addr),
        _ => None,
    }
}

impl Pool {
    /// The pool; its health checks run while `Pools::run_health_checks` runs.
    pub fn new(settings: &UpstreamSettings) -> Pool {
        let mut balancer =
            LoadBalancer::<KetamaHashing>::try_from_iter(settings.backends.iter().copied())
                .expect("socket addresses need no lookup");
        let tls = settings.tls.as_ref().map(PeerTls::new);
        let interval = match &settings.health {
            HealthCheck::None => None,
            HealthCheck::Tcp { interval } => {
                balancer.set_health_check(TcpHealthCheck::new());
                Some(*interval)
            }
            HealthCheck::Http { path, interval } => {
                let mut check = match &tls {
                    Some(tls) => {
                        let mut check = HttpHealthCheck::new(&tls.server_name, true);
                        tls.apply(&mut check.peer_template);
                        check
                    }
                    None => HttpHealthCheck::new("localhost", false),
                };
                check.req.set_uri(path.parse().unwrap_or_default());
                balancer.set_health_check(Box::new(check));
                Some(*interval)
            }
        };
        balancer.health_check_frequency = interval;
        let single = (settings.backends.len() == 1)
            .then(|| balancer.backends().get_backend().first().cloned())
            .flatten();
        balancer.parallel_health_check = true;
        Pool {
            name: settings.name.clone(),
            affinity: settings.affinity,
            balancer: Arc::new(balancer),
            health_checked: interval.is_some(),
            size: settings.backends.len(),
            rotation: AtomicU64::new(0),
            failure_hold: interval.unwrap_or(DEFAULT_FAILURE_HOLD),
            failures: Mutex::new(HashMap::new()),
            any_failure: AtomicBool::new(false),
            single,
            timeouts: settings.timeouts,
            tls,
        }
    }

    /// The peer a request to `addr` connects to: TLS as configured, and the pool's timeouts,
    /// each cut to `left` (what remains of the exchange's total deadline) when there is one.
    pub fn peer(&self, addr: SocketAddr, left: Option<Duration>) -> HttpPeer {
        let mut peer = match &self.tls {
            Some(tls) => {
                let mut peer = HttpPeer::new(addr, true, tls.server_name.clone());
                tls.apply(&mut peer);
                peer
            }
            None => HttpPeer::new(addr, false, String::new()),
        };
        let cut = |d: Duration| left.map_or(d, |left| d.min(left.max(Duration::from_millis(1))));
        let t = self.timeouts;
        peer.options.connection_timeout = Some(cut(t.connect));
        peer.options.total_connection_timeout = Some(cut(t.connect));
        peer.options.read_timeout = Some(cut(t.read));
        peer.options.write_timeout = Some(cut(t.write));
        peer
    }

    /// Each backend and whether it passes its health check (always, when there is none).
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| inet(b).map(|a| (a, backends.ready(b))))
            .collect()
    }

    fn recently_failed(&self, addr: &SocketAddr) -> bool {
        if !self.any_failure.load(Ordering::Acquire) {
            return false;
        }
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(addr)
            .is_some_and(|at| at.elapsed() < self.failure_hold)
    }

    /// Notes a refused connection: the backend is skipped until the next health interval.
    pub fn mark_failed(&self, addr: SocketAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.insert(addr, Instant::now());
        self.any_failure.store(true, Ordering::Release);
    }

    /// A key for a request without affinity: rotating, so such requests spread over the ring.
    pub fn rotating_key(&self) -> [u8; 8] {
        self.rotation.fetch_add(1, Ordering::Relaxed).to_le_bytes()
    }

    /// The backend for `key`, skipping unhealthy ones and those in `tried`; backends that
    /// recently refused a connection are used only when nothing else is left.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<SocketAddr> {
        if let Some(backend) = &self.single {
            // A refused connection only ranks a backend last; alone, it is still the one.
            let addr = inet(backend)?;
            let ready = self.balancer.backends().ready(backend);
            return (ready && !tried.contains(&addr)).then_some(addr);
        }
        let untried = |b: &Backend| inet(b).is_some_and(|a| !tried.contains(&a));
        self.balancer
            .select_with(key, MAX_ITERATIONS, |b, healthy| {
                healthy && untried(b) && inet(b).is_some_and(|a| !self.recently_failed(&a))
            })
            .or_else(|| {
                self.balancer
                    .select_with(key, MAX_ITERATIONS, |b, healthy| healthy && untried(b))
            })
            .and_then(|b| inet(&b))
    }

    pub fn len(&self) -> usize {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

/// All pools of one configuration, indexed like `Config::upstreams`.
pub struct Pools(Vec<Pool>);

impl Pools {
    pub fn new(settings: &[UpstreamSettings]) -> Pools {
        Pools(settings.iter().map(Pool::new).collect())
    }

    pub fn get(&self, index: usize) -> &Pool {
        &self.0[index]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.0.iter()
    }

    /// Runs the health checks of every health-checked pool until `stop` turns true (a reload
    /// replaced these pools, or the server shuts down).
    pub async fn run_health_checks(&self, stop: tokio::sync::watch::Receiver<bool>) {
        let checks = self
            .0
            .iter()
            .filter(|p| p.health_checked)
            .map(|p| p.balancer.start(stop.clone()));
        futures_util::future::join_all(checks).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        Pool::new(&UpstreamSettings {
            name: "p".into(),
            backends: (0..n)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], 8000 + i as u16)))
                .collect(),
            affinity: Affinity::Session,
            health: HealthCheck::None,
            case_insensitive: false,
            timeouts: UpstreamTimeouts {
                connect: Duration::from_secs(5),
                read: Duration::from_secs(60),
                write: Duration::from_secs(60),
                total: None,
            },
            tls: None,
        })
    }

    #[test]
    fn a_single_backend_is_chosen_without_hashing_until_tried() {
        let p = pool(1);
        let only = SocketAddr::from(([127, 0, 0, 1], 8000));
        assert!(p.single.is_some());
        assert_eq!(p.select(b"any", &[]), Some(only));
        assert_eq!(p.select(&p.rotating_key(), &[]), Some(only));
        p.mark_failed(only);
        assert_eq!(p.select(b"any", &[]), Some(only), "the last resort");
        assert_eq!(p.select(b"any", &[only]), None, "already tried");
        assert!(pool(2).single.is_none());
    }

    #[test]
    fn one_key_always_lands_on_one_backend() {
        let p = pool(3);
        let first = p.select(b"session-a", &[]).unwrap();
        for _ in 0..100 {
            assert_eq!(p.select(b"session-a", &[]), Some(first));
        }
    }

    #[test]
    fn keys_spread_over_the_backends() {
        let p = pool(3);
        let mut seen = std::collections::HashSet::new();
        for i in 0..300u32 {
            seen.insert(p.select(&i.to_le_bytes(), &[]).unwrap());
        }
        assert_eq!(seen.len(), 3);
        let mut rotated = std::collections::HashSet::new();
        for _ in 0..300 {
            rotated.insert(p.select(&p.rotating_key(), &[]).unwrap());
        }
        assert_eq!(rotated.len(), 3);
    }

    #[test]
    fn a_failed_backend_is_skipped_then_used_again_as_a_last_resort() {
        let p = pool(3);
        let home = p.select(b"s", &[]).unwrap();
        p.mark_failed(home);
        let moved = p.select(b"s", &[]).unwrap();
        assert_ne!(moved, home);
        // Retries walk the ring without repeating a backend.
        let third = p.select(b"s", &[moved]).unwrap();
        assert!(third != moved && third != home);
        assert_eq!(p.select(b"s", &[moved, third]), Some(home), "last resort");
        assert_eq!(p.select(b"s", &[moved, third, home]), None);
    }
}
