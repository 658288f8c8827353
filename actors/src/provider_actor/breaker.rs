//! The circuit breaker of one provider: closed, open (fail fast), half-open (one probe). It trips
//! on consecutive failures or on an error rate over recent calls; only failures that say the
//! provider is unwell count (outages: 5xx, timeouts, connections), not refusals of one request.
//! Time is `tokio::time`, so tests run on virtual time.

use std::collections::VecDeque;
use std::time::Duration;

use tgp_events::provider_events::CircuitState;
use tokio::time::Instant;

/// When to trip and for how long.
#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u32,
    /// Error rate over the window that opens it (with at least `min_calls`).
    pub error_rate: f64,
    /// Calls remembered for the error rate.
    pub window: usize,
    /// Calls needed before the error rate counts.
    pub min_calls: usize,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            error_rate: 0.5,
            window: 20,
            min_calls: 10,
            open_for: Duration::from_secs(30),
        }
    }
}

/// The breaker.
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: CircuitState,
    consecutive: u32,
    recent: VecDeque<bool>,
    open_until: Instant,
    probe_in_flight: bool,
}

/// Whether a call may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go.
    Go,
    /// Go as the half-open probe.
    Probe,
    /// Fail fast: open until then.
    Refuse(Duration),
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: CircuitState::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            open_until: Instant::now(),
            probe_in_flight: false,
        }
    }

    /// The state now (an open breaker past its period reads half-open).
    pub fn state(&self) -> CircuitState {
        if self.state == CircuitState::Open && Instant::now() >= self.open_until {
            CircuitState::HalfOpen
        } else {
            self.state
        }
    }

    /// Closed (not merely past an open period): a call may go without asking, and without the
    /// actor that journals state changes.
    pub fn is_closed(&self) -> bool {
        self.state == CircuitState::Closed
    }

    /// Asks to make a call. Returns the admission and, if the state changed, the new state.
    pub fn admit(&mut self) -> (Admission, Option<CircuitState>) {
        match self.state {
            CircuitState::Closed => (Admission::Go, None),
            CircuitState::Open => {
                let now = Instant::now();
                if now < self.open_until {
                    return (Admission::Refuse(self.open_until - now), None);
                }
                self.state = CircuitState::HalfOpen;
                self.probe_in_flight = true;
                (Admission::Probe, Some(CircuitState::HalfOpen))
            }
            CircuitState::HalfOpen if self.probe_in_flight => (Admission::Refuse(Duration::from_millis(100)), None),
            CircuitState::HalfOpen => {
                self.probe_in_flight = true;
                (Admission::Probe, None)
            }
        }
    }

    /// Records a call's outcome (`healthy`: it was not an outage). Returns the new state on change.
    pub fn record(&mut self, healthy: bool) -> Option<CircuitState> {
        self.recent.push_back(healthy);
        while self.recent.len() > self.config.window {
            self.recent.pop_front();
        }
        self.consecutive = if healthy { 0 } else { self.consecutive + 1 };
        match self.state {
            CircuitState::HalfOpen => {
                self.probe_in_flight = false;
                if healthy {
                    self.state = CircuitState::Closed;
                    self.recent.clear();
                    Some(CircuitState::Closed)
                } else {
                    self.trip()
                }
            }
            CircuitState::Closed => {
                let failures = self.recent.iter().filter(|ok| !**ok).count();
                let rate_tripped = self.recent.len() >= self.config.min_calls
                    && failures as f64 / self.recent.len() as f64 >= self.config.error_rate;
                if self.consecutive >= self.config.consecutive_failures || rate_tripped { self.trip() } else { None }
            }
            CircuitState::Open => None,
        }
    }

    /// Records a success when that changes nothing but the counts: the breaker is closed and
    /// stays closed. Returns false, recording nothing, otherwise (the actor then books it, so a
    /// state change is journaled). Callers on the fast path book their successes this way.
    pub fn record_quiet_success(&mut self) -> bool {
        if self.state != CircuitState::Closed {
            return false;
        }
        let full = self.recent.len() >= self.config.window;
        let dropped_failure = full && self.recent.front() == Some(&false);
        let len = if full { self.config.window } else { self.recent.len() + 1 };
        let failures = self.recent.iter().filter(|ok| !**ok).count() - usize::from(dropped_failure);
        if len >= self.config.min_calls && failures as f64 / len as f64 >= self.config.error_rate {
            return false;
        }
        self.record(true).is_none()
    }

    fn trip(&mut self) -> Option<CircuitState> {
        self.state = CircuitState::Open;
        self.open_until = Instant::now() + self.config.open_for;
        Some(CircuitState::Open)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tgp_events::provider_events::CircuitState;

    use super::{Admission, BreakerConfig, CircuitBreaker};

    #[tokio::test(start_paused = true)]
    async fn opens_fails_fast_half_opens_and_closes() {
        let mut b = CircuitBreaker::new(BreakerConfig { consecutive_failures: 3, ..Default::default() });
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), Some(CircuitState::Open));
        assert!(matches!(b.admit().0, Admission::Refuse(_)));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.admit(), (Admission::Probe, Some(CircuitState::HalfOpen)));
        assert!(matches!(b.admit().0, Admission::Refuse(_)), "one probe at a time");
        assert_eq!(b.record(true), Some(CircuitState::Closed));
        assert_eq!(b.admit().0, Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_success_never_hides_a_change() {
        let config = BreakerConfig { consecutive_failures: 100, window: 4, min_calls: 4, ..Default::default() };
        let mut b = CircuitBreaker::new(config);
        assert!(b.record_quiet_success());
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), None);
        assert!(!b.record_quiet_success(), "2 failures in 4 calls trips: the actor must book it");
        assert_eq!(b.record(true), Some(CircuitState::Open));
        assert!(!b.record_quiet_success(), "open: the actor books everything");
        let mut b = CircuitBreaker::new(config);
        for healthy in [false, true, true, true] {
            b.record(healthy);
        }
        assert!(b.record_quiet_success(), "the failure leaves the window: 0 of 4");
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again() {
        let mut b = CircuitBreaker::new(BreakerConfig { consecutive_failures: 1, ..Default::default() });
        b.record(false);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.admit().0, Admission::Probe);
        assert_eq!(b.record(false), Some(CircuitState::Open));
    }
}
