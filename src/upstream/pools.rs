//! Upstream pools with round-robin backend selection. A connect failure is retried on the next
//! backend of the pool (each backend at most once per request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::model::UpstreamSettings;

/// One named pool of backends.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(settings: &UpstreamSettings) -> Self {
        Pool {
            name: settings.name.clone(),
            backends: settings.backends.clone(),
            next: AtomicUsize::new(0),
        }
    }

    /// The backend for a request's `attempt`-th try: round robin for the first, then the
    /// following backends in order. `None` once every backend has been tried.
    pub fn select(&self, first: &mut Option<usize>, attempt: usize) -> Option<SocketAddr> {
        if attempt >= self.backends.len() {
            return None;
        }
        let start = *first.get_or_insert_with(|| self.next.fetch_add(1, Ordering::Relaxed));
        Some(self.backends[(start + attempt) % self.backends.len()])
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

/// All pools of one configuration, indexed like `Config::upstreams`.
#[derive(Debug)]
pub struct Pools(Vec<Pool>);

impl Pools {
    pub fn new(settings: &[UpstreamSettings]) -> Self {
        Pools(settings.iter().map(Pool::new).collect())
    }

    pub fn get(&self, index: usize) -> &Pool {
        &self.0[index]
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
        })
    }

    #[test]
    fn round_robin_spreads_first_tries() {
        let p = pool(3);
        let ports: Vec<u16> = (0..6)
            .map(|_| p.select(&mut None, 0).unwrap().port())
            .collect();
        assert_eq!(ports, [8000, 8001, 8002, 8000, 8001, 8002]);
    }

    #[test]
    fn retries_walk_the_other_backends_once() {
        let p = pool(3);
        let mut first = None;
        let tried: Vec<u16> = (0..4)
            .filter_map(|a| p.select(&mut first, a).map(|s| s.port()))
            .collect();
        assert_eq!(tried, [8000, 8001, 8002]);
    }
}
