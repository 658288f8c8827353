//! The adaptive rate limiter of one provider: governor's GCRA at the current rate, a pause after
//! a 429 (the provider's `Retry-After`, or exponential backoff with jitter when it gives none), the
//! rate halved on each 429 and doubled back towards the configured rate after a run of successes.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Successes in a row before the rate is doubled back up.
const RAMP_UP_AFTER: u32 = 20;
/// The slowest tgp ever goes, per minute.
const FLOOR_PER_MINUTE: u32 = 1;

/// The configured budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Requests per minute.
    pub per_minute: u32,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
}

fn limiter(per_minute: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_minute = per_minute.max(FLOOR_PER_MINUTE);
    let period = Duration::from_secs_f64(60.0 / f64::from(per_minute));
    let quota = Quota::with_period(period)
        .expect("a positive period")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
    RateLimiter::direct(quota)
}

/// The limiter.
pub struct AdaptiveLimiter {
    nominal: Budget,
    current_per_minute: u32,
    limiter: DefaultDirectRateLimiter,
    paused_until: Option<Instant>,
    successes: u32,
    consecutive_429: u32,
}

impl AdaptiveLimiter {
    /// A limiter at the configured budget.
    pub fn new(budget: Budget) -> Self {
        AdaptiveLimiter {
            nominal: budget,
            current_per_minute: budget.per_minute,
            limiter: limiter(budget.per_minute, budget.burst),
            paused_until: None,
            successes: 0,
            consecutive_429: 0,
        }
    }

    /// Takes a token now, or says how long to wait for one.
    pub fn try_acquire(&mut self) -> Result<(), Duration> {
        if let Some(until) = self.paused_until {
            let now = Instant::now();
            if now < until {
                return Err(until - now);
            }
            self.paused_until = None;
        }
        self.limiter.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// A call succeeded: after enough in a row, the rate doubles back towards the configured one.
    pub fn on_success(&mut self) {
        self.consecutive_429 = 0;
        self.successes += 1;
        if self.successes >= RAMP_UP_AFTER && self.current_per_minute < self.nominal.per_minute {
            self.successes = 0;
            self.current_per_minute = (self.current_per_minute * 2).min(self.nominal.per_minute);
            self.limiter = limiter(self.current_per_minute, self.nominal.burst);
        }
    }

    /// The provider said 429: pause for its `Retry-After` (or back off exponentially with jitter),
    /// and halve the rate. Returns the new rate per minute.
    pub fn on_rate_limited(&mut self, retry_after: Option<Duration>) -> u32 {
        self.successes = 0;
        self.consecutive_429 += 1;
        let backoff = retry_after.unwrap_or_else(|| {
            let base = Duration::from_millis(500 * 2u64.pow(self.consecutive_429.min(6)));
            let jitter = Duration::from_millis(u64::from(rand_jitter()) % (base.as_millis() as u64 / 2 + 1));
            (base + jitter).min(Duration::from_secs(60))
        });
        self.paused_until = Some(Instant::now() + backoff);
        self.current_per_minute = (self.current_per_minute / 2).max(FLOOR_PER_MINUTE);
        self.limiter = limiter(self.current_per_minute, 1);
        self.current_per_minute
    }

    /// At the configured rate with no 429 to recover from: a success changes nothing, so a
    /// caller on the fast path needs no actor to book it.
    pub fn is_settled(&self) -> bool {
        self.current_per_minute == self.nominal.per_minute && self.consecutive_429 == 0
    }

    /// The rate allowed now, per minute.
    pub fn current_per_minute(&self) -> u32 {
        self.current_per_minute
    }
}

/// Jitter without a random-number dependency: the low bits of the clock.
fn rand_jitter() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = AdaptiveLimiter::new(Budget { per_minute: 600, burst: 3 });
        assert!((0..3).all(|_| l.try_acquire().is_ok()));
        let wait = l.try_acquire().unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
    }

    #[tokio::test]
    async fn a_429_pauses_and_halves_then_successes_ramp_up() {
        let mut l = AdaptiveLimiter::new(Budget { per_minute: 600, burst: 1 });
        assert_eq!(l.on_rate_limited(Some(Duration::from_millis(200))), 300);
        assert!(l.try_acquire().unwrap_err() > Duration::from_millis(150));
        assert!(!l.is_settled());
        for _ in 0..RAMP_UP_AFTER {
            l.on_success();
        }
        assert_eq!(l.current_per_minute(), 600);
        assert!(l.is_settled());
    }
}
