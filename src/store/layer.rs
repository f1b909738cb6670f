//! The one layer around a store: every call is measured (its duration in
//! `sessiongate_store_command_duration_seconds` by operation, its failures in
//! `sessiongate_store_errors_total` by kind) and, when the store has a circuit breaker (Redis),
//! admitted by it first. Calls the breaker refuses are measured too.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use prometheus::Histogram;

use super::breaker::{Admission, Breaker, BreakerState, Outcome};
use super::{Aux, CasOutcome, SessionStore, StoreError};
use crate::config::model::BreakerSettings;
use crate::metrics::metrics;
use crate::session::{SessionRecord, StoreKey};

/// A store, metered, and guarded by a circuit breaker when it has one.
pub struct StoreLayer {
    inner: Arc<dyn SessionStore>,
    breaker: Option<Mutex<Breaker>>,
    /// Each operation's duration histogram, resolved once (no label lookup per call).
    durations: Durations,
}

struct Durations {
    load: Histogram,
    create: Histogram,
    cas: Histogram,
    cas_batch: Histogram,
    destroy: Histogram,
    destroy_user: Histogram,
    list: Histogram,
    ping: Histogram,
    count: Histogram,
    aux: Histogram,
}

impl StoreLayer {
    /// `inner` with its calls measured, and refused while `breaker` (if any) is open.
    pub fn new(inner: Arc<dyn SessionStore>, breaker: Option<BreakerSettings>) -> Self {
        let op = |name: &str| metrics().store_duration.with_label_values(&[name]);
        StoreLayer {
            inner,
            breaker: breaker.map(|settings| Mutex::new(Breaker::new(settings))),
            durations: Durations {
                load: op("load"),
                create: op("create"),
                cas: op("cas"),
                cas_batch: op("cas_batch"),
                destroy: op("destroy"),
                destroy_user: op("destroy_user"),
                list: op("list"),
                ping: op("ping"),
                count: op("count"),
                aux: op("aux"),
            },
        }
    }

    fn lock(breaker: &Mutex<Breaker>) -> MutexGuard<'_, Breaker> {
        // Nothing panics while the lock is held; a poisoned lock still holds sound data.
        breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The circuit breaker's state, when the store has one.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        let breaker = self.breaker.as_ref()?;
        Some(Self::lock(breaker).state(Instant::now()))
    }

    async fn call<T>(
        &self,
        duration: &Histogram,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match &self.breaker {
            None => call.await,
            Some(breaker) => {
                let admission = Self::lock(breaker).admit(started);
                match admission {
                    Admission::Reject => Err(StoreError::CircuitOpen),
                    Admission::Call { probe } => {
                        let result = call.await;
                        let outcome = match &result {
                            Err(StoreError::Timeout(_) | StoreError::Unavailable(_)) => {
                                Outcome::TransportFailure
                            }
                            _ => Outcome::Reached,
                        };
                        Self::lock(breaker).record(outcome, probe, Instant::now());
                        result
                    }
                }
            }
        };
        duration.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            // An existing key is the caller's signal to draw another id, not a store failure.
            if !matches!(e, StoreError::Exists) {
                metrics().store_errors.with_label_values(&[e.kind()]).inc();
            }
        }
        result
    }
}

#[async_trait]
impl SessionStore for StoreLayer {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        self.call(&self.durations.load, self.inner.load(key, now))
            .await
    }

    async fn create(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        self.call(&self.durations.create, self.inner.create(key, record, now))
            .await
    }

    async fn compare_and_set(
        &self,
        key: &StoreKey,
        expected: u64,
        record: &SessionRecord,
        now: u64,
    ) -> Result<CasOutcome, StoreError> {
        self.call(
            &self.durations.cas,
            self.inner.compare_and_set(key, expected, record, now),
        )
        .await
    }

    async fn compare_and_set_many(
        &self,
        writes: &[(StoreKey, u64, SessionRecord)],
        now: u64,
    ) -> Result<Vec<CasOutcome>, StoreError> {
        self.call(
            &self.durations.cas_batch,
            self.inner.compare_and_set_many(writes, now),
        )
        .await
    }

    async fn destroy(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError> {
        self.call(&self.durations.destroy, self.inner.destroy(key, sub))
            .await
    }

    async fn destroy_user(&self, sub: &str) -> Result<Vec<StoreKey>, StoreError> {
        self.call(&self.durations.destroy_user, self.inner.destroy_user(sub))
            .await
    }

    async fn user_sessions(&self, sub: &str, now: u64) -> Result<Vec<StoreKey>, StoreError> {
        self.call(&self.durations.list, self.inner.user_sessions(sub, now))
            .await
    }

    async fn put_aux(
        &self,
        kind: Aux,
        id: &str,
        value: &[u8],
        ttl_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        self.call(
            &self.durations.aux,
            self.inner.put_aux(kind, id, value, ttl_ms, only_if_absent),
        )
        .await
    }

    async fn get_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(&self.durations.aux, self.inner.get_aux(kind, id))
            .await
    }

    async fn take_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(&self.durations.aux, self.inner.take_aux(kind, id))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(&self.durations.ping, self.inner.ping()).await
    }

    async fn count(&self, now: u64) -> Result<u64, StoreError> {
        self.call(&self.durations.count, self.inner.count(now))
            .await
    }

    async fn maintain(&self, now: u64) -> usize {
        self.inner.maintain(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    /// A store whose reads time out until the test says it is up; counts the reads that
    /// reach it.
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
        async fn put_aux(
            &self,
            k: Aux,
            id: &str,
            v: &[u8],
            ttl: u64,
            nx: bool,
        ) -> Result<bool, StoreError> {
            self.inner.put_aux(k, id, v, ttl, nx).await
        }
        async fn get_aux(&self, k: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_aux(k, id).await
        }
        async fn take_aux(&self, k: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.take_aux(k, id).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn count(&self, now: u64) -> Result<u64, StoreError> {
            self.inner.count(now).await
        }
    }

    #[tokio::test]
    async fn an_open_breaker_keeps_calls_from_the_store_until_a_probe_succeeds() {
        let flaky = Arc::new(Flaky {
            up: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            inner: MemoryStore::new(10),
        });
        let store = StoreLayer::new(
            flaky.clone(),
            Some(BreakerSettings {
                failures: 3,
                open_for: Duration::from_millis(100),
            }),
        );
        let key = crate::session::SessionId::generate().unwrap().store_key();
        for _ in 0..3 {
            assert!(matches!(
                store.load(&key, 0).await,
                Err(StoreError::Timeout(_))
            ));
        }
        assert_eq!(store.breaker_state(), Some(BreakerState::Open));
        for _ in 0..10 {
            assert!(matches!(
                store.load(&key, 0).await,
                Err(StoreError::CircuitOpen)
            ));
        }
        assert_eq!(
            flaky.calls.load(Ordering::SeqCst),
            3,
            "refused calls never reach it"
        );
        flaky.up.store(true, Ordering::SeqCst);
        // The breaker's open interval is what this waits for.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store.load(&key, 0).await.unwrap().is_none());
        assert_eq!(store.breaker_state(), Some(BreakerState::Closed));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn without_a_breaker_every_call_reaches_the_store() {
        let store = StoreLayer::new(Arc::new(MemoryStore::new(10)), None);
        assert_eq!(store.breaker_state(), None);
        let key = crate::session::SessionId::generate().unwrap().store_key();
        assert!(store.load(&key, 0).await.unwrap().is_none());
    }
}
