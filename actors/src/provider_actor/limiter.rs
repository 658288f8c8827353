//! The adaptive rate limiter of one provider.
//!
//! # Guarantees
//! - **Never above the configured budget.** Every token passes a GCRA at the configured rate and
//!   burst whose memory is never reset, so in any span `t` at most `burst + rate × t` calls go,
//!   whatever the adaptation does.
//! - **Never before a `Retry-After`.** A 429 pauses the provider for its `Retry-After` (or for
//!   exponential backoff with jitter when it gives none); no token is granted before that.
//! - **Back at the configured rate within [`RECOVERY`] of the last 429.** A 429 halves the rate;
//!   from then on the rate climbs back by time, not by successes (a provider that is only called
//!   a few times a minute would otherwise take many minutes to earn its rate back, and a quiet
//!   one never would): geometrically, from the halved rate to the configured one, over
//!   [`RECOVERY`]. While it climbs, calls are spaced at the climbing rate, one at a time (no burst).
//!
//! Time is tokio's clock, so the guarantees are tested on paused time. (governor, used before,
//! reads its own clock and cannot change a quota without forgetting the calls already made.)

use std::time::Duration;

use tokio::time::Instant;

/// After the last 429, the rate is back at the configured one within this span.
pub const RECOVERY: Duration = Duration::from_secs(60);
/// The slowest tgp ever goes, per minute.
const FLOOR_PER_MINUTE: f64 = 1.0;

/// The configured budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Requests per minute.
    pub per_minute: u32,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
}

/// The time between two calls at `per_minute`.
fn interval(per_minute: f64) -> Duration {
    Duration::from_secs_f64(60.0 / per_minute.max(FLOOR_PER_MINUTE))
}

/// One GCRA: the theoretical arrival time of the next call, and how far ahead of it a call may
/// come (the burst).
#[derive(Debug)]
struct Gcra {
    /// When the next call is due at the steady rate; `None` before the first call.
    due: Option<Instant>,
}

impl Gcra {
    /// How long until a call is allowed, with `tolerance` of burst.
    fn wait(&self, now: Instant, tolerance: Duration) -> Duration {
        match self.due {
            Some(due) => {
                due.checked_sub(tolerance).map_or(Duration::ZERO, |allowed| allowed.saturating_duration_since(now))
            }
            None => Duration::ZERO,
        }
    }

    /// Books a call made at `now`, spaced `interval` from the next one.
    fn book(&mut self, now: Instant, interval: Duration) {
        let from = self.due.map_or(now, |due| due.max(now));
        self.due = Some(from.checked_add(interval).unwrap_or(from));
    }
}

/// Where the rate stands after the last 429.
#[derive(Debug)]
struct Reduced {
    /// When the last 429 came.
    at: Instant,
    /// The rate right after it, per minute.
    per_minute: f64,
}

/// The limiter.
pub struct AdaptiveLimiter {
    nominal: Budget,
    /// The configured budget's GCRA: never reset, so the budget holds across every adaptation.
    envelope: Gcra,
    /// The reduced rate's GCRA (burst 1), consulted while the rate climbs back.
    climbing: Gcra,
    /// The last 429's reduction, until the rate is back.
    reduced: Option<Reduced>,
    /// No token before this (the provider's `Retry-After`, or backoff).
    paused_until: Option<Instant>,
    /// 429s since the last success: the exponent of the backoff when there is no `Retry-After`.
    consecutive_429: u32,
    /// Where the backoff's jitter comes from.
    jitter: Jitter,
}

/// Where jitter comes from: the clock's low bits in production, or a seeded sequence, so a
/// simulation on a paused clock gives the same waits, and so the same events, for the same seed.
#[derive(Clone, Debug)]
pub enum Jitter {
    /// The low bits of the wall clock (no random-number dependency).
    Clock,
    /// A splitmix64 sequence from this state.
    Seeded(u64),
}

impl Jitter {
    /// The source a seed asks for: seeded when given, the clock otherwise.
    pub fn from_seed(seed: Option<u64>) -> Self {
        seed.map_or(Jitter::Clock, Jitter::Seeded)
    }

    fn next(&mut self) -> u32 {
        match self {
            Jitter::Clock => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
            }
            Jitter::Seeded(state) => {
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) >> 32) as u32
            }
        }
    }
}

impl AdaptiveLimiter {
    /// A limiter at the configured budget, its jitter from the clock.
    pub fn new(budget: Budget) -> Self {
        Self::with_jitter(budget, Jitter::Clock)
    }

    /// A limiter at the configured budget, its jitter from `jitter`.
    pub fn with_jitter(budget: Budget, jitter: Jitter) -> Self {
        AdaptiveLimiter {
            nominal: budget,
            envelope: Gcra { due: None },
            climbing: Gcra { due: None },
            reduced: None,
            paused_until: None,
            consecutive_429: 0,
            jitter,
        }
    }

    fn nominal_per_minute(&self) -> f64 {
        f64::from(self.nominal.per_minute).max(FLOOR_PER_MINUTE)
    }

    /// The rate allowed at `now` while it climbs back after a 429; `None` once it is back at the
    /// configured one.
    fn climbing_rate(&self, now: Instant) -> Option<f64> {
        let nominal = self.nominal_per_minute();
        let reduced = self.reduced.as_ref()?;
        let elapsed = now.saturating_duration_since(reduced.at);
        if elapsed >= RECOVERY || reduced.per_minute >= nominal {
            return None;
        }
        let progress = elapsed.as_secs_f64() / RECOVERY.as_secs_f64();
        Some((reduced.per_minute * (nominal / reduced.per_minute).powf(progress)).min(nominal))
    }

    /// Takes a token now, or says how long to wait for one.
    pub fn try_acquire(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let paused = self.paused_until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let nominal_interval = interval(self.nominal_per_minute());
        let tolerance = nominal_interval.saturating_mul(self.nominal.burst.max(1) - 1);
        let mut wait = paused.max(self.envelope.wait(now, tolerance));
        let climbing = self.climbing_rate(now);
        match climbing {
            Some(_) => wait = wait.max(self.climbing.wait(now, Duration::ZERO)),
            None => self.reduced = None,
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        self.paused_until = None;
        self.envelope.book(now, nominal_interval);
        if let Some(rate) = climbing {
            self.climbing.book(now, interval(rate));
        }
        Ok(())
    }

    /// A call succeeded: the next 429 without a `Retry-After` backs off from the start again.
    pub fn on_success(&mut self) {
        self.consecutive_429 = 0;
    }

    /// The provider said 429: pause for its `Retry-After` (or back off exponentially with jitter),
    /// and halve the rate, from which it climbs back over [`RECOVERY`]. Returns the new rate per
    /// minute.
    pub fn on_rate_limited(&mut self, retry_after: Option<Duration>) -> u32 {
        let now = Instant::now();
        self.consecutive_429 += 1;
        let backoff = retry_after.unwrap_or_else(|| {
            let base = Duration::from_millis(500 * 2u64.pow(self.consecutive_429.min(6)));
            let jitter = Duration::from_millis(u64::from(self.jitter.next()) % (base.as_millis() as u64 / 2 + 1));
            (base + jitter).min(Duration::from_secs(60))
        });
        let until = now.checked_add(backoff).unwrap_or(now + Duration::from_secs(86_400));
        self.paused_until = Some(self.paused_until.map_or(until, |earlier| earlier.max(until)));
        let rate = self.climbing_rate(now).unwrap_or_else(|| self.nominal_per_minute());
        let halved = (rate / 2.0).max(FLOOR_PER_MINUTE);
        self.reduced = Some(Reduced { at: now, per_minute: halved });
        halved as u32
    }

    /// At the configured rate with no 429 to recover from: a success changes nothing, so a
    /// caller on the fast path needs no actor to book it.
    pub fn is_settled(&self) -> bool {
        self.consecutive_429 == 0 && self.climbing_rate(Instant::now()).is_none()
    }

    /// The rate allowed now, per minute (rounded down).
    pub fn current_per_minute(&self) -> u32 {
        self.climbing_rate(Instant::now()).map_or(self.nominal.per_minute.max(1), |rate| rate as u32)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{AdaptiveLimiter, Budget, Jitter, RECOVERY};

    /// Takes every token as soon as it is allowed until `until`, on paused time; returns the
    /// instants of the grants (at most 100,000: a limiter that never says wait ends the test).
    async fn drain(l: &mut AdaptiveLimiter, until: Instant) -> Vec<Instant> {
        let mut grants = Vec::new();
        while grants.len() < 100_000 {
            match l.try_acquire() {
                Ok(()) => grants.push(Instant::now()),
                Err(wait) => {
                    if Instant::now() + wait > until {
                        return grants;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        grants
    }

    #[tokio::test(start_paused = true)]
    async fn a_seeded_jitter_gives_the_same_backoffs_and_another_seed_others() {
        let backoffs = |seed: u64| {
            let mut l = AdaptiveLimiter::with_jitter(Budget { per_minute: 600, burst: 1 }, Jitter::Seeded(seed));
            (0..4)
                .map(|_| {
                    l.on_rate_limited(None);
                    l.try_acquire().unwrap_err()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(backoffs(7), backoffs(7));
        assert_ne!(backoffs(7), backoffs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let mut l = AdaptiveLimiter::new(Budget { per_minute: 600, burst: 3 });
        assert!((0..3).all(|_| l.try_acquire().is_ok()));
        let wait = l.try_acquire().unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn five_429s_then_quiet_is_back_at_the_configured_rate_within_a_minute() {
        let mut l = AdaptiveLimiter::new(Budget { per_minute: 60, burst: 2 });
        let mut rate = 60;
        for _ in 0..5 {
            rate = l.on_rate_limited(Some(Duration::from_secs(1)));
        }
        assert_eq!(rate, 1, "five halvings of 60/min end at the floor");
        assert!(!l.is_settled());
        tokio::time::advance(RECOVERY / 2).await;
        assert!(l.current_per_minute() < 60, "still climbing half-way: {}", l.current_per_minute());
        tokio::time::advance(RECOVERY / 2).await;
        assert_eq!(l.current_per_minute(), 60);
        // The configured rate in deed, not only in name: a minute after that, 60 calls and the burst.
        l.on_success();
        assert!(l.is_settled());
        let start = Instant::now();
        let grants = drain(&mut l, start + Duration::from_secs(60)).await;
        assert!(grants.len() >= 60, "{} calls in the minute after recovery", grants.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_now_and_then_still_recovers_from_the_last_one() {
        let mut l = AdaptiveLimiter::new(Budget { per_minute: 60, burst: 1 });
        for _ in 0..5 {
            l.on_rate_limited(None);
            tokio::time::advance(Duration::from_secs(20)).await;
        }
        assert!(l.current_per_minute() < 60);
        tokio::time::advance(RECOVERY - Duration::from_secs(20)).await;
        assert_eq!(l.current_per_minute(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn no_token_before_retry_after() {
        let mut l = AdaptiveLimiter::new(Budget { per_minute: 600, burst: 5 });
        l.on_rate_limited(Some(Duration::from_secs(30)));
        let start = Instant::now();
        let grants = drain(&mut l, start + Duration::from_secs(40)).await;
        assert!(!grants.is_empty(), "calls resume after the pause");
        assert!(grants[0] >= start + Duration::from_secs(30), "first token {:?} after the 429", grants[0] - start);
        // A shorter Retry-After later does not cut an earlier, longer pause short.
        let mut l = AdaptiveLimiter::new(Budget { per_minute: 600, burst: 5 });
        l.on_rate_limited(Some(Duration::from_secs(30)));
        l.on_rate_limited(Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(l.try_acquire().unwrap_err() >= Duration::from_secs(27));
    }

    #[tokio::test(start_paused = true)]
    async fn never_above_the_configured_rate() {
        let budget = Budget { per_minute: 120, burst: 4 };
        let mut l = AdaptiveLimiter::new(budget);
        let start = Instant::now();
        let mut grants = drain(&mut l, start + Duration::from_secs(10)).await;
        // 429s in the middle of a run, then recovery: the budget holds over every window.
        l.on_rate_limited(Some(Duration::from_secs(2)));
        grants.extend(drain(&mut l, start + Duration::from_secs(30)).await);
        l.on_rate_limited(None);
        grants.extend(drain(&mut l, start + Duration::from_secs(200)).await);
        let interval = Duration::from_secs_f64(60.0 / f64::from(budget.per_minute));
        for (i, first) in grants.iter().enumerate() {
            for (j, last) in grants.iter().enumerate().skip(i) {
                let span = (*last - *first).as_secs_f64();
                let allowed = f64::from(budget.burst) + span / interval.as_secs_f64();
                assert!(((j - i + 1) as f64) <= allowed + 1e-9, "{} calls in {span} s", j - i + 1);
            }
        }
        // ...and it is reached again: the last minute runs at the configured rate.
        let last_minute = grants.iter().filter(|g| **g > start + Duration::from_secs(140)).count();
        assert!(last_minute >= 119, "{last_minute} calls in the last minute");
    }
}
