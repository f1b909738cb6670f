//! A store that measures every operation: its duration (`sessiongate_store_command_duration_seconds`
//! by operation) and its failures (`sessiongate_store_errors_total` by kind). It sits outermost,
//! so calls refused by the circuit breaker are counted too.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus::Histogram;

use super::breaker::BreakerState;
use super::id::StoreKey;
use super::record::SessionRecord;
use super::store::{CasOutcome, SessionStore, StoreError};
use crate::metrics::metrics;

pub struct MeteredStore {
    inner: Arc<dyn SessionStore>,
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
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        let op = |name: &str| metrics().store_duration.with_label_values(&[name]);
        MeteredStore {
            inner,
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
            },
        }
    }
}

async fn measured<T>(
    duration: &Histogram,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    duration.observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        // An existing key is the caller's signal to draw another id, not a store failure.
        if !matches!(e, StoreError::Exists) {
            metrics().store_errors.with_label_values(&[e.kind()]).inc();
        }
    }
    result
}

#[async_trait]
impl SessionStore for MeteredStore {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        measured(&self.durations.load, self.inner.load(key, now)).await
    }

    async fn create(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        measured(&self.durations.create, self.inner.create(key, record, now)).await
    }

    async fn compare_and_set(
        &self,
        key: &StoreKey,
        expected: u64,
        record: &SessionRecord,
        now: u64,
    ) -> Result<CasOutcome, StoreError> {
        measured(
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
        measured(
            &self.durations.cas_batch,
            self.inner.compare_and_set_many(writes, now),
        )
        .await
    }

    async fn destroy(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError> {
        measured(&self.durations.destroy, self.inner.destroy(key, sub)).await
    }

    async fn destroy_user(&self, sub: &str) -> Result<Vec<StoreKey>, StoreError> {
        measured(&self.durations.destroy_user, self.inner.destroy_user(sub)).await
    }

    async fn user_sessions(&self, sub: &str, now: u64) -> Result<Vec<StoreKey>, StoreError> {
        measured(&self.durations.list, self.inner.user_sessions(sub, now)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        measured(&self.durations.ping, self.inner.ping()).await
    }

    async fn count(&self, now: u64) -> Result<u64, StoreError> {
        measured(&self.durations.count, self.inner.count(now)).await
    }

    fn breaker_state(&self) -> Option<BreakerState> {
        self.inner.breaker_state()
    }

    async fn maintain(&self, now: u64) -> usize {
        self.inner.maintain(now).await
    }
}
