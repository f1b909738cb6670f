//! The one poller: every test that waits for a state (a log line, a metric, a status code, a
//! process having exited, a socket being there...) asks `eventually` for it, with a deadline
//! and the message to fail with when the state never comes.
//!
//! A check returns `bool` (the state holds) or `Option<T>` (the state holds and this is what
//! was found: a log line, a cookie, ...); `eventually` returns `()` or the `T`. The check runs
//! at once, then every [`INTERVAL`] until it holds; when it still does not hold at the
//! deadline, the test fails with `what`. `eventually_async` takes a check that is itself
//! async (one that sends a request, say); `eventually_blocking` is the same loop for the
//! synchronous building blocks (starting a process, a Redis topology). `within` is the same
//! loop without the failure, for a diagnostic that looks for a state which may not come.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long the poller waits between two checks.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// What a check can answer: whether the state holds, and what it found if it does.
pub trait Outcome {
    type Found;
    fn found(self) -> Option<Self::Found>;
}

impl Outcome for bool {
    type Found = ();
    fn found(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Found = T;
    fn found(self) -> Option<T> {
        self
    }
}

/// Whether to look again: `Some(pause)` until the deadline, then a failure with `what`.
fn again(start: Instant, deadline: Duration, what: &str) -> Duration {
    let elapsed = start.elapsed();
    assert!(elapsed < deadline, "{what} (not within {deadline:?})");
    INTERVAL.min(deadline - elapsed)
}

/// Polls `check` until it holds; fails the test with `what` once `deadline` has passed.
pub async fn eventually<O: Outcome>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> O,
) -> O::Found {
    let start = Instant::now();
    loop {
        if let Some(found) = check().found() {
            return found;
        }
        tokio::time::sleep(again(start, deadline, what)).await;
    }
}

/// Like [`eventually`], for a check that is async (sends a request, reads a socket).
pub async fn eventually_async<O: Outcome, F: Future<Output = O>>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> O::Found {
    let start = Instant::now();
    loop {
        if let Some(found) = check().await.found() {
            return found;
        }
        tokio::time::sleep(again(start, deadline, what)).await;
    }
}

/// Like [`eventually`], but returns `None` instead of failing when the deadline passes: for
/// a failure's diagnostics, which give a state that may never come a moment to show up.
pub async fn within<O: Outcome>(
    deadline: Duration,
    mut check: impl FnMut() -> O,
) -> Option<O::Found> {
    let start = Instant::now();
    loop {
        if let Some(found) = check().found() {
            return Some(found);
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL.min(deadline - elapsed)).await;
    }
}

/// Like [`eventually`], blocking the thread between checks: for the building blocks that start
/// processes outside any runtime (or inside one, as a test's setup always did).
#[track_caller]
pub fn eventually_blocking<O: Outcome>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> O,
) -> O::Found {
    let start = Instant::now();
    loop {
        if let Some(found) = check().found() {
            return found;
        }
        std::thread::sleep(again(start, deadline, what));
    }
}
