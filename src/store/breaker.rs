//! The circuit breaker's state machine, pure: a function of the outcomes it is told about and
//! the instants it is asked at. After `failures` consecutive transport failures (timeouts,
//! refused or dropped connections) it opens: calls are refused at once instead of waiting on
//! a dead store. After `open_for` one call is let through as a probe (half-open); its success
//! closes the breaker, its failure opens it again. Answers that prove the store is reachable
//! (refusals such as "exists" included) count as successes. `layer` drives it around a store.

use std::time::Instant;

use tracing::{info, warn};

use crate::config::model::BreakerSettings;

/// The breaker's state, for readiness and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Whether a call may go to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `probe` when this call decides whether the breaker closes.
    Call { probe: bool },
    /// Refused without calling the store.
    Reject,
}

/// How a call the breaker admitted ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The store answered (whatever it answered).
    Reached,
    /// A timeout, or a connection refused or dropped.
    TransportFailure,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: State::Closed { failures: 0 },
        }
    }

    /// The state as seen at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call starting at `now` may go to the store.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Call { probe: false },
            State::Open { until } if now < until => Admission::Reject,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Admission::Call { probe: true }
            }
            State::HalfOpen { probing: true } => Admission::Reject,
        }
    }

    /// Records how an admitted call ended at `now`.
    pub fn record(&mut self, outcome: Outcome, probe: bool, now: Instant) {
        let failed = outcome == Outcome::TransportFailure;
        match (&mut self.state, failed) {
            (State::Closed { failures }, false) => *failures = 0,
            (State::Closed { failures }, true) => {
                *failures += 1;
                if *failures >= self.settings.failures {
                    warn!(failures = *failures, "session store circuit opened");
                    self.state = State::Open {
                        until: now + self.settings.open_for,
                    };
                }
            }
            (_, false) if probe => {
                info!("session store circuit closed");
                self.state = State::Closed { failures: 0 };
            }
            (_, true) if probe => {
                self.state = State::Open {
                    until: now + self.settings.open_for,
                };
            }
            // A call admitted before the breaker opened finished late: it changes nothing.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker(failures: u32, open_ms: u64) -> Breaker {
        Breaker::new(BreakerSettings {
            failures,
            open_for: Duration::from_millis(open_ms),
        })
    }

    /// Admits a call at `at` and records `outcome` for it; whether it was admitted.
    fn call(b: &mut Breaker, at: Instant, outcome: Outcome) -> bool {
        match b.admit(at) {
            Admission::Reject => false,
            Admission::Call { probe } => {
                b.record(outcome, probe, at);
                true
            }
        }
    }

    #[test]
    fn opens_after_consecutive_failures_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = breaker(3, 100);
        for _ in 0..3 {
            assert!(call(&mut b, t0, Outcome::TransportFailure));
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        // Open: refused at once, the store is not called.
        for _ in 0..10 {
            assert_eq!(b.admit(t0 + Duration::from_millis(50)), Admission::Reject);
        }
        // After open_for, one probe; it fails and the breaker opens again.
        let t1 = t0 + Duration::from_millis(120);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert!(call(&mut b, t1, Outcome::TransportFailure));
        assert_eq!(b.state(t1), BreakerState::Open);
        // The store recovers: the next probe closes the breaker.
        let t2 = t1 + Duration::from_millis(120);
        assert!(call(&mut b, t2, Outcome::Reached));
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert_eq!(b.admit(t2), Admission::Call { probe: false });
    }

    #[test]
    fn only_one_probe_at_a_time() {
        let t0 = Instant::now();
        let mut b = breaker(1, 10);
        assert!(call(&mut b, t0, Outcome::TransportFailure));
        let later = t0 + Duration::from_millis(20);
        assert_eq!(b.admit(later), Admission::Call { probe: true });
        assert_eq!(b.admit(later), Admission::Reject, "the probe is still out");
        b.record(Outcome::Reached, true, later);
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn answers_that_reach_the_store_reset_the_count() {
        let t0 = Instant::now();
        let mut b = breaker(3, 60_000);
        for outcome in [
            Outcome::TransportFailure,
            Outcome::TransportFailure,
            Outcome::Reached,
            Outcome::TransportFailure,
            Outcome::TransportFailure,
        ] {
            call(&mut b, t0, outcome);
        }
        assert_eq!(
            b.state(t0),
            BreakerState::Closed,
            "failures were not consecutive"
        );
    }

    #[test]
    fn a_late_answer_from_before_the_opening_changes_nothing() {
        let t0 = Instant::now();
        let mut b = breaker(1, 1000);
        let late = b.admit(t0);
        assert!(call(&mut b, t0, Outcome::TransportFailure));
        assert_eq!(b.state(t0), BreakerState::Open);
        // The call admitted before the breaker opened answers now.
        assert_eq!(late, Admission::Call { probe: false });
        b.record(Outcome::Reached, false, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
    }
}
