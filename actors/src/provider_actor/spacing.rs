//! Launch spacing: a provider whose launch endpoint has its own, tighter limit (Lambda: one call
//! per 12 s and five per minute) gets its launches scheduled here, in the provider actor, rather
//! than slept on inside its client, so the wait shows in the metrics and the limiter's budget
//! still counts every call.
//!
//! Each launch reserves the earliest slot that keeps both limits against the slots already
//! reserved, then waits for it; slots are never given back, so a launch that gives up while
//! waiting only makes the next ones later, never earlier. The provider counts arrivals, and a
//! call sent on time can arrive early next to the one before it (network jitter), so every slot
//! keeps [`ARRIVAL_MARGIN`] beyond the limit.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::provider::LaunchSpacing;

/// The window `per_minute` counts over.
const MINUTE: Duration = Duration::from_secs(60);
/// Kept beyond each limit, for jitter between sending a call and its arrival.
const ARRIVAL_MARGIN: Duration = Duration::from_millis(500);

/// The launch slots reserved so far (the last `per_minute` of them are all that matter).
#[derive(Debug)]
pub(super) struct LaunchSlots {
    spacing: LaunchSpacing,
    reserved: VecDeque<Instant>,
}

impl LaunchSlots {
    pub(super) fn new(spacing: LaunchSpacing) -> Self {
        LaunchSlots { spacing, reserved: VecDeque::new() }
    }

    /// Reserves the earliest slot at or after `now` that keeps the spacing; the caller waits for it.
    pub(super) fn reserve(&mut self, now: Instant) -> Instant {
        let mut slot = now;
        if let Some(last) = self.reserved.back() {
            slot = slot.max(*last + self.spacing.min_interval + ARRIVAL_MARGIN);
        }
        let window = self.spacing.per_minute as usize;
        if window > 0 && self.reserved.len() >= window {
            slot = slot.max(self.reserved[self.reserved.len() - window] + MINUTE + ARRIVAL_MARGIN);
        }
        self.reserved.push_back(slot);
        while self.reserved.len() > window.max(1) {
            self.reserved.pop_front();
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda() -> LaunchSlots {
        LaunchSlots::new(LaunchSpacing { min_interval: Duration::from_secs(12), per_minute: 5 })
    }

    fn millis(slots: &mut LaunchSlots, start: Instant, n: usize) -> Vec<u128> {
        (0..n).map(|_| slots.reserve(start).duration_since(start).as_millis()).collect()
    }

    #[test]
    fn six_launches_at_once_are_twelve_seconds_apart_and_the_sixth_waits_past_a_minute() {
        let at = millis(&mut lambda(), Instant::now(), 6);
        assert_eq!(at, [0, 12_500, 25_000, 37_500, 50_000, 62_500]);
    }

    #[test]
    fn five_per_minute_binds_when_the_interval_is_shorter() {
        let mut slots = LaunchSlots::new(LaunchSpacing { min_interval: Duration::from_secs(1), per_minute: 5 });
        let at = millis(&mut slots, Instant::now(), 7);
        assert_eq!(at, [0, 1_500, 3_000, 4_500, 6_000, 60_500, 62_000]);
    }

    #[test]
    fn a_launch_long_after_the_last_goes_at_once() {
        let mut slots = lambda();
        let start = Instant::now();
        slots.reserve(start);
        let later = start + Duration::from_secs(300);
        assert_eq!(slots.reserve(later), later);
    }
}
