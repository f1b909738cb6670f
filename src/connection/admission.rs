//! How many client connections the proxy holds: at most `max_connections` at once, and at most
//! `max_connections_per_client` from one address. A connection over a cap is answered 503 and
//! closed as soon as it is accepted, before any request is read, so a flood of idle or
//! half-sent connections cannot take the memory or file descriptors real clients need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The connection caps and the current counts.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_client: Option<usize>,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyConnections,
    TooManyFromClient,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::TooManyConnections => "too_many_connections",
            Refused::TooManyFromClient => "too_many_from_client",
        }
    }

    /// The 503 the client is told.
    pub fn response(self) -> &'static [u8] {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\nRetry-After: 1\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nToo many connections.\n"
    }
}

/// A held connection: its place is given back when this is dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    client: Option<IpAddr>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_client: Option<usize>) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_client,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection from `client`, if there is one.
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Ticket, Refused> {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        if total > self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::TooManyConnections);
        }
        let counted = match (self.max_per_client, client) {
            (Some(max), Some(ip)) => {
                let mut per_client = self.lock();
                let count = per_client.entry(ip).or_insert(0);
                if *count >= max {
                    drop(per_client);
                    self.total.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refused::TooManyFromClient);
                }
                *count += 1;
                Some(ip)
            }
            _ => None,
        };
        Ok(Ticket {
            admission: self.clone(),
            client: counted,
        })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            let mut per_client = self.admission.lock();
            if let Some(count) = per_client.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_client.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_hold_and_places_come_back() {
        let a = Admission::new(3, Some(2));
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        let t1 = a.admit(Some(x)).unwrap();
        let t2 = a.admit(Some(x)).unwrap();
        assert_eq!(a.admit(Some(x)).unwrap_err(), Refused::TooManyFromClient);
        let t3 = a.admit(Some(y)).unwrap();
        assert_eq!(a.admit(Some(y)).unwrap_err(), Refused::TooManyConnections);
        assert_eq!(a.open(), 3);
        drop(t1);
        let t4 = a.admit(Some(x)).unwrap();
        drop((t2, t3, t4));
        assert_eq!(a.open(), 0);
        assert!(
            a.lock().is_empty(),
            "no address kept once its connections are gone"
        );
    }
}
