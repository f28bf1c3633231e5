//! The emulator's clock: real time with a speed factor, or a manual clock that only tests move.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, in the emulator's own time.
pub type Millis = i64;

/// The latest time the emulator can show: 9999-12-31T23:59:59.999Z. RFC 3339 has four-digit
/// years, and every timestamp the emulator answers with must be writable as one.
pub const MAX_MILLIS: Millis = 253_402_300_799_999;

/// Whether `ms` is a time the emulator can be set to (the epoch up to [`MAX_MILLIS`]).
pub fn in_range(ms: Millis) -> bool {
    (0..=MAX_MILLIS).contains(&ms)
}

/// How the emulator tells time.
#[derive(Debug, Clone)]
pub enum Clock {
    /// Follows the machine's clock, `scale` times faster, from `origin`.
    Scaled {
        /// The real instant the clock was (re)anchored at.
        anchor: Instant,
        /// Emulator time at `anchor`.
        origin: Millis,
        /// Emulated seconds per real second.
        scale: f64,
    },
    /// Stands still until advanced or set.
    Manual {
        /// The current emulator time.
        now: Millis,
    },
}

impl Clock {
    /// Real time, `scale` times faster, starting at the machine's current time.
    pub fn scaled(scale: f64) -> Clock {
        Clock::Scaled {
            anchor: Instant::now(),
            origin: system_now(),
            scale,
        }
    }

    /// A manual clock standing at `now`.
    pub fn manual(now: Millis) -> Clock {
        Clock::Manual { now }
    }

    /// The current emulator time.
    pub fn now(&self) -> Millis {
        match self {
            Clock::Scaled {
                anchor,
                origin,
                scale,
            } => origin + (anchor.elapsed().as_secs_f64() * scale * 1000.0) as Millis,
            Clock::Manual { now } => *now,
        }
    }

    /// Moves the clock forward (both kinds; a scaled clock is re-anchored).
    pub fn advance(&mut self, by: Duration) {
        let target = self.now() + by.as_millis() as Millis;
        self.set(target);
    }

    /// Sets the current time. Time may not run backwards: an earlier value is ignored and the
    /// current time is returned unchanged, because executions already resolved cannot un-happen.
    pub fn set(&mut self, to: Millis) -> Millis {
        let now = self.now();
        let to = to.max(now);
        match self {
            Clock::Scaled { anchor, origin, .. } => {
                *anchor = Instant::now();
                *origin = to;
            }
            Clock::Manual { now } => *now = to,
        }
        to
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual { .. })
    }
}

/// The machine's wall clock in milliseconds since the epoch.
pub fn system_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default()
}

/// Converts emulator milliseconds to the wire's epoch seconds (a JSON number with a fraction).
pub fn to_epoch_seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// RFC 3339 (UTC, milliseconds) of an emulator time.
pub fn rfc3339(ms: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_representable_instant_is_written_as_rfc3339() {
        assert_eq!(rfc3339(MAX_MILLIS), "9999-12-31T23:59:59.999Z");
        assert!(in_range(MAX_MILLIS) && !in_range(MAX_MILLIS + 1) && !in_range(-1));
    }

    #[test]
    fn manual_clock_moves_only_forward() {
        let mut c = Clock::manual(1_000);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now(), 3_000);
        assert_eq!(c.set(500), 3_000);
        assert_eq!(c.now(), 3_000);
    }
}
