//! Where the lifecycle's time comes from. In production it is the wall clock; in `tgp-dev sim` it is
//! tokio's clock, paused and advanced by the runtime from timer to timer, so an hour of
//! interruptions, backoffs and limits runs in seconds and the same seed gives the same events.

use chrono::{DateTime, Utc};

/// The source of every timestamp the actors journal and every deadline they compute.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// The wall clock.
    #[default]
    System,
    /// Tokio's clock, read as time since `origin`, laid out from `epoch`. With a paused runtime
    /// (`start_paused`) it moves only when every task waits on a timer.
    Virtual {
        /// The date the simulation starts at.
        epoch: DateTime<Utc>,
        /// Tokio's instant at that date.
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// A virtual clock starting now (in tokio's time) at `epoch`.
    pub fn virtual_at(epoch: DateTime<Utc>) -> Self {
        Clock::Virtual { epoch, origin: tokio::time::Instant::now() }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Virtual { epoch, origin } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(*origin);
                *epoch + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// How long from now until `at` (zero when it has passed), for a timer.
    pub fn until(&self, at: DateTime<Utc>) -> std::time::Duration {
        (at - self.now()).to_std().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_virtual_clock_moves_with_tokio_time() {
        let epoch = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let clock = Clock::virtual_at(epoch);
        tokio::time::sleep(std::time::Duration::from_secs(3_600)).await;
        assert_eq!(clock.now(), epoch + chrono::Duration::hours(1));
        assert_eq!(clock.until(epoch + chrono::Duration::hours(2)), std::time::Duration::from_secs(3_600));
    }
}
