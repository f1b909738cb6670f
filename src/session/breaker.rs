//! A circuit breaker around the store. After `failures` consecutive transport failures
//! (timeouts, refused or dropped connections) it opens: calls fail at once instead of waiting
//! on a dead store. After `open_for` one call is let through as a probe (half-open); its
//! success closes the breaker, its failure opens it again. Answers that prove the store is
//! reachable (including refusals such as "exists") count as successes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::{info, warn};

use super::id::StoreKey;
use super::record::SessionRecord;
use super::store::{CasOutcome, SessionStore, StoreError};

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures: u32,
    pub open_for: Duration,
}

/// The breaker's state, for readiness and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A store behind a circuit breaker.
pub struct GuardedStore {
    inner: Arc<dyn SessionStore>,
    settings: BreakerSettings,
    state: Mutex<State>,
}

enum Admission {
    Call { probe: bool },
    Reject,
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn SessionStore>, settings: BreakerSettings) -> Self {
        GuardedStore {
            inner,
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn admit(&self) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Call { probe: false },
            State::Open { until } if Instant::now() < until => Admission::Reject,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Admission::Call { probe: true }
            }
            State::HalfOpen { probing: true } => Admission::Reject,
        }
    }

    fn record<T>(&self, result: &Result<T, StoreError>, probe: bool) {
        let transport_failure = matches!(
            result,
            Err(StoreError::Timeout(_) | StoreError::Unavailable(_))
        );
        let mut state = self.lock();
        match (&mut *state, transport_failure) {
            (State::Closed { failures }, false) => *failures = 0,
            (State::Closed { failures }, true) => {
                *failures += 1;
                if *failures >= self.settings.failures {
                    warn!(failures = *failures, "session store circuit opened");
                    *state = State::Open {
                        until: Instant::now() + self.settings.open_for,
                    };
                }
            }
            (_, false) if probe => {
                info!("session store circuit closed");
                *state = State::Closed { failures: 0 };
            }
            (_, true) if probe => {
                *state = State::Open {
                    until: Instant::now() + self.settings.open_for,
                };
            }
            // A call admitted before the breaker opened finished late: it changes nothing.
            _ => {}
        }
    }

    async fn guard<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        match self.admit() {
            Admission::Reject => Err(StoreError::CircuitOpen),
            Admission::Call { probe } => {
                let result = call.await;
                self.record(&result, probe);
                result
            }
        }
    }
}

#[async_trait]
impl SessionStore for GuardedStore {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        self.guard(self.inner.load(key, now)).await
    }

    async fn create(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        self.guard(self.inner.create(key, record, now)).await
    }

    async fn compare_and_set(
        &self,
        key: &StoreKey,
        expected: u64,
        record: &SessionRecord,
        now: u64,
    ) -> Result<CasOutcome, StoreError> {
        self.guard(self.inner.compare_and_set(key, expected, record, now))
            .await
    }

    async fn compare_and_set_many(
        &self,
        writes: &[(StoreKey, u64, SessionRecord)],
        now: u64,
    ) -> Result<Vec<CasOutcome>, StoreError> {
        self.guard(self.inner.compare_and_set_many(writes, now))
            .await
    }

    async fn destroy(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError> {
        self.guard(self.inner.destroy(key, sub)).await
    }

    async fn destroy_user(&self, sub: &str) -> Result<Vec<StoreKey>, StoreError> {
        self.guard(self.inner.destroy_user(sub)).await
    }

    async fn user_sessions(&self, sub: &str, now: u64) -> Result<Vec<StoreKey>, StoreError> {
        self.guard(self.inner.user_sessions(sub, now)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.guard(self.inner.ping()).await
    }

    async fn count(&self, now: u64) -> Result<u64, StoreError> {
        self.guard(self.inner.count(now)).await
    }

    async fn maintain(&self, now: u64) -> usize {
        self.inner.maintain(now).await
    }

    fn breaker_state(&self) -> Option<BreakerState> {
        Some(self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::memory::MemoryStore;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A store whose health the test switches; counts the calls that reach it.
    struct Flaky {
        up: AtomicBool,
        calls: AtomicUsize,
        inner: MemoryStore,
    }

    #[async_trait]
    impl SessionStore for Flaky {
        async fn load(
            &self,
            key: &StoreKey,
            now: u64,
        ) -> Result<Option<SessionRecord>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.up.load(Ordering::SeqCst) {
                self.inner.load(key, now).await
            } else {
                Err(StoreError::Timeout(Duration::from_millis(50)))
            }
        }
        async fn create(&self, k: &StoreKey, r: &SessionRecord, n: u64) -> Result<(), StoreError> {
            self.inner.create(k, r, n).await
        }
        async fn compare_and_set(
            &self,
            k: &StoreKey,
            e: u64,
            r: &SessionRecord,
            n: u64,
        ) -> Result<CasOutcome, StoreError> {
            self.inner.compare_and_set(k, e, r, n).await
        }
        async fn destroy(&self, k: &StoreKey, s: Option<&str>) -> Result<bool, StoreError> {
            self.inner.destroy(k, s).await
        }
        async fn destroy_user(&self, s: &str) -> Result<Vec<StoreKey>, StoreError> {
            self.inner.destroy_user(s).await
        }
        async fn user_sessions(&self, s: &str, n: u64) -> Result<Vec<StoreKey>, StoreError> {
            self.inner.user_sessions(s, n).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }

        async fn count(&self, now: u64) -> Result<u64, StoreError> {
            self.inner.count(now).await
        }
    }

    fn flaky() -> Arc<Flaky> {
        Arc::new(Flaky {
            up: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            inner: MemoryStore::new(10),
        })
    }

    #[tokio::test]
    async fn opens_after_consecutive_failures_probes_and_closes() {
        let flaky = flaky();
        let store = GuardedStore::new(
            flaky.clone(),
            BreakerSettings {
                failures: 3,
                open_for: Duration::from_millis(100),
            },
        );
        let key = crate::session::SessionId::generate().unwrap().store_key();
        for _ in 0..3 {
            assert!(matches!(
                store.load(&key, 0).await,
                Err(StoreError::Timeout(_))
            ));
        }
        assert_eq!(store.state(), BreakerState::Open);
        // Open: rejected at once, the store is not called.
        for _ in 0..10 {
            assert!(matches!(
                store.load(&key, 0).await,
                Err(StoreError::CircuitOpen)
            ));
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        // After open_for, one probe; it fails and the breaker opens again.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(
            store.load(&key, 0).await,
            Err(StoreError::Timeout(_))
        ));
        assert_eq!(store.state(), BreakerState::Open);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        // The store recovers: the next probe closes the breaker.
        flaky.up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.load(&key, 0).await.unwrap().is_none());
        assert_eq!(store.state(), BreakerState::Closed);
        assert!(store.load(&key, 0).await.is_ok());
    }

    #[tokio::test]
    async fn answers_that_reach_the_store_reset_the_count() {
        let flaky = flaky();
        let store = GuardedStore::new(
            flaky.clone(),
            BreakerSettings {
                failures: 3,
                open_for: Duration::from_secs(60),
            },
        );
        let key = crate::session::SessionId::generate().unwrap().store_key();
        for _ in 0..2 {
            let _ = store.load(&key, 0).await;
        }
        flaky.up.store(true, Ordering::SeqCst);
        let _ = store.load(&key, 0).await;
        flaky.up.store(false, Ordering::SeqCst);
        for _ in 0..2 {
            let _ = store.load(&key, 0).await;
        }
        assert_eq!(
            store.state(),
            BreakerState::Closed,
            "failures were not consecutive"
        );
    }
}
