//! Write-behind idle renewal. Renewals are queued by the request that finds one due and written
//! by a background flusher in pipelined batches: each write is a compare-and-set on the record
//! version, so a renewal never recreates a destroyed session and never undoes an update. A
//! session is queued at most once until its write is done; the queue is drained on shutdown.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::SessionCache;
use crate::session::lifecycle::now_ms;
use crate::session::{SessionRecord, StoreKey};
use crate::store::{CasOutcome, SessionStore};

/// The most renewals waiting at once; beyond it renewals are dropped (and retried by a later
/// request), never allowed to grow memory without bound.
const QUEUE_CAPACITY: usize = 65_536;

struct Renewal {
    key: StoreKey,
    expected: u64,
    record: SessionRecord,
}

/// The producer side, held by request handling.
pub struct RenewalQueue {
    tx: mpsc::Sender<Renewal>,
    pending: Mutex<HashSet<StoreKey>>,
}

/// The consumer side, run as a background task.
pub struct RenewalFlusher {
    rx: tokio::sync::Mutex<mpsc::Receiver<Renewal>>,
    queue: Arc<RenewalQueue>,
    store: Arc<dyn SessionStore>,
    cache: Option<Arc<SessionCache>>,
    interval: Duration,
    batch_size: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RenewalQueue {
    /// A queue and the flusher that drains it into `store`.
    pub fn new(
        store: Arc<dyn SessionStore>,
        cache: Option<Arc<SessionCache>>,
        interval: Duration,
        batch_size: usize,
    ) -> (Arc<RenewalQueue>, RenewalFlusher) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let queue = Arc::new(RenewalQueue {
            tx,
            pending: Mutex::new(HashSet::new()),
        });
        let flusher = RenewalFlusher {
            rx: tokio::sync::Mutex::new(rx),
            queue: queue.clone(),
            store,
            cache,
            interval,
            batch_size,
        };
        (queue, flusher)
    }

    /// Queues a renewal; false when this session already has one queued or the queue is full.
    pub fn enqueue(&self, key: &StoreKey, expected: u64, record: SessionRecord) -> bool {
        if !lock(&self.pending).insert(key.clone()) {
            return false;
        }
        let renewal = Renewal {
            key: key.clone(),
            expected,
            record,
        };
        if self.tx.try_send(renewal).is_err() {
            lock(&self.pending).remove(key);
            return false;
        }
        true
    }
}

impl RenewalFlusher {
    /// Writes one batch; returns how many renewals it handled.
    async fn flush_batch(&self, batch: Vec<Renewal>) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let writes: Vec<(StoreKey, u64, SessionRecord)> = batch
            .into_iter()
            .map(|r| (r.key, r.expected, r.record))
            .collect();
        match self.store.compare_and_set_many(&writes, now_ms()).await {
            Ok(outcomes) => {
                for ((key, _, _), outcome) in writes.iter().zip(outcomes) {
                    if outcome == CasOutcome::Written {
                        crate::metrics::metrics().sessions_renewed.inc();
                    } else {
                        // Gone or changed meanwhile: the cached copy is not what the store has.
                        debug!(session = key.log_tag(), ?outcome, "renewal not written");
                        if let Some(cache) = &self.cache {
                            cache.invalidate(key);
                        }
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, renewals = writes.len(), "renewal batch failed; the sessions keep their current deadlines");
                if let Some(cache) = &self.cache {
                    for (key, _, _) in &writes {
                        cache.invalidate(key);
                    }
                }
            }
        }
        let mut pending = lock(&self.queue.pending);
        for (key, _, _) in &writes {
            pending.remove(key);
        }
        writes.len()
    }

    /// Takes what is queued, up to one batch.
    fn take_batch(&self, rx: &mut mpsc::Receiver<Renewal>) -> Vec<Renewal> {
        let mut batch = Vec::new();
        while batch.len() < self.batch_size {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        batch
    }

    /// Flushes every `interval` (or as soon as a batch is full) until `stop` resolves, then
    /// drains the queue.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let mut rx = self.rx.lock().await;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticker.tick() => {
                    loop {
                        let batch = self.take_batch(&mut rx);
                        let full = batch.len() == self.batch_size;
                        self.flush_batch(batch).await;
                        if !full { break; }
                    }
                }
            }
        }
        self.drain(&mut rx).await;
    }

    /// Writes everything still queued (graceful shutdown).
    async fn drain(&self, rx: &mut mpsc::Receiver<Renewal>) {
        loop {
            let batch = self.take_batch(rx);
            if batch.is_empty() {
                return;
            }
            let n = self.flush_batch(batch).await;
            debug!(renewals = n, "flushed renewals at shutdown");
        }
    }
}
