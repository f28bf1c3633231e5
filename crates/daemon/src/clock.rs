//! The one place that reads the wall clock. Everything else is handed a [`Clock`]: the daemon
//! runs on [`SystemClock`]; tests run on a [`ManualClock`] they move by hand, or on
//! [`PausedClock`], which follows tokio's clock (so `tokio::time::pause()` moves both the
//! timers and the time the daemon decides by, and a test of a window edge or a backoff waits
//! for nothing).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// The wall clock, injectable.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// A shared clock, as the daemon's parts hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is set or advanced.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Standing at `at`.
    pub fn new(at: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(at)))
    }

    /// Moves it to `at` (backwards too: a clock step).
    pub fn set(&self, at: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: chrono::TimeDelta) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Time from tokio's clock, anchored at a wall-clock instant: under `tokio::time::pause()` it
/// moves only as the paused clock is advanced (or auto-advances to the next timer).
#[derive(Debug)]
pub struct PausedClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl PausedClock {
    /// Reads `base` at tokio's now.
    pub fn new(base: DateTime<Utc>) -> Arc<PausedClock> {
        Arc::new(PausedClock {
            base,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for PausedClock {
    fn now(&self) -> DateTime<Utc> {
        self.base
            + chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::TimeDelta::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-19T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(chrono::TimeDelta::seconds(90));
        assert_eq!(c.now(), t0 + chrono::TimeDelta::seconds(90));
        c.set(t0);
        assert_eq!(c.now(), t0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_follows_tokios_time() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-19T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = PausedClock::new(t0);
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        assert_eq!(c.now(), t0 + chrono::TimeDelta::seconds(30));
    }
}
