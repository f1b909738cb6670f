//! A bound on the sign-ins one client address may start per minute. Every sign-in writes a flow
//! record to the store, and starting one needs no credential, so without a bound a single
//! client could fill the store with flows. Counted per process in fixed one-minute windows
//! (several instances each allow the bound); kept across reloads, like the connection counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

/// Addresses tracked before the table is pruned to the current minute's.
const MAX_TRACKED: usize = 65_536;

#[derive(Default)]
pub struct SignInLimiter {
    /// Per address: the minute counted and the sign-ins started in it.
    counts: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl SignInLimiter {
    /// The process's limiter.
    pub fn global() -> &'static SignInLimiter {
        static LIMITER: OnceLock<SignInLimiter> = OnceLock::new();
        LIMITER.get_or_init(SignInLimiter::default)
    }

    /// Whether `client` may start one more sign-in in the minute of `now_ms`, with at most
    /// `per_minute` (0: no bound). A request without an address is not bounded.
    pub fn admit(&self, client: Option<IpAddr>, per_minute: u32, now_ms: u64) -> bool {
        let (Some(client), true) = (client, per_minute > 0) else {
            return true;
        };
        let minute = now_ms / 60_000;
        // Nothing panics while the lock is held; a poisoned lock still holds sound counts.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_TRACKED && !counts.contains_key(&client) {
            counts.retain(|_, (m, _)| *m == minute);
            if counts.len() >= MAX_TRACKED {
                // A flood of distinct addresses: forget them rather than grow.
                counts.clear();
            }
        }
        let entry = counts.entry(client).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= per_minute {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_bound_per_minute() {
        let l = SignInLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.admit(Some(a), 3, 60_000));
        }
        assert!(!l.admit(Some(a), 3, 60_001), "the fourth in the minute");
        assert!(l.admit(Some(b), 3, 60_002), "another address has its own");
        assert!(
            l.admit(Some(a), 3, 120_000),
            "the next minute starts afresh"
        );
        assert!(l.admit(Some(a), 0, 120_000), "0 is no bound");
        assert!(l.admit(None, 1, 120_000));
        assert!(l.admit(None, 1, 120_000), "no address, no bound");
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = SignInLimiter::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let ip = IpAddr::from(i.to_be_bytes());
            l.admit(Some(ip), 5, 60_000);
        }
        assert!(l.counts.lock().unwrap().len() <= MAX_TRACKED);
    }
}
