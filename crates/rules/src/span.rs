//! [`Span`]: the one type of every user-written length of time (a window's `duration`, `grace`,
//! `max_duration`, `escalate_after`, the daemon's deadlines, the CLI's `--for` and "7d ago").
//!
//! A span is positive and at most [`MAX_SPAN`] (100 years), so any arithmetic between a span
//! and an instant of this millennium stays far inside chrono's range: whatever a user writes is
//! either a span or an error that says why, never an overflow later (a panic in a window
//! computation, a semaphore or a timer).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest span accepted: 100 years of 365.25 days.
pub const MAX_SPAN: Duration = Duration::from_secs(36_525 * 86_400);

/// A positive length of time of at most [`MAX_SPAN`], written in humantime syntax (`90s`,
/// `15m`, `2h`, `3d`, `1h 30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(Duration);

/// Why a text or a duration is not a [`Span`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// Zero.
    #[error("must be longer than zero")]
    Zero,
    /// Longer than 100 years.
    #[error("{0} is longer than the longest span stopd accepts (100 years)")]
    TooLong(String),
    /// Not humantime syntax.
    #[error("{text:?} is not a span ({problem}): write e.g. 90s, 15m, 2h, 3d")]
    Syntax {
        /// What was written.
        text: String,
        /// humantime's complaint.
        problem: String,
    },
}

impl Span {
    /// A span of `d`, if positive and at most [`MAX_SPAN`].
    pub fn new(d: Duration) -> Result<Span, SpanError> {
        if d.is_zero() {
            Err(SpanError::Zero)
        } else if d > MAX_SPAN {
            Err(SpanError::TooLong(format!("{}s", d.as_secs())))
        } else {
            Ok(Span(d))
        }
    }

    /// Parses humantime text (`2h`, `3d 4h`).
    pub fn parse(text: &str) -> Result<Span, SpanError> {
        let d = humantime::parse_duration(text.trim()).map_err(|e| match e {
            // "99999999999999999999h" does not fit a Duration at all.
            humantime::DurationError::NumberOverflow => SpanError::TooLong(text.to_string()),
            e => SpanError::Syntax {
                text: text.to_string(),
                problem: e.to_string(),
            },
        })?;
        Span::new(d).map_err(|e| match e {
            SpanError::TooLong(_) => SpanError::TooLong(text.to_string()),
            e => e,
        })
    }

    /// As a std duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// As a chrono delta (always representable: at most 100 years).
    pub fn delta(self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.0).expect("a span of at most 100 years fits a TimeDelta")
    }
}

impl Default for Span {
    /// One second: only so that spec structs can derive `Default` for code that builds them
    /// (a file always states its spans).
    fn default() -> Span {
        Span(Duration::from_secs(1))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(s: &str) -> Result<Span, SpanError> {
        Span::parse(s)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a span such as \"90s\", \"15m\", \"2h\" or \"3d\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Span, E> {
                Span::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_positive_and_at_most_a_century() {
        assert_eq!(Span::parse("2h").unwrap().get(), Duration::from_secs(7_200));
        assert_eq!(Span::parse("0s"), Err(SpanError::Zero));
        assert!(matches!(
            Span::parse("99999999999h"),
            Err(SpanError::TooLong(t)) if t == "99999999999h"
        ));
        assert!(matches!(
            Span::parse("18446744073709551615s"),
            Err(SpanError::TooLong(_))
        ));
        assert!(matches!(
            Span::parse("99999999999999999999999h"),
            Err(SpanError::TooLong(_))
        ));
        assert!(Span::parse("36525days").is_ok());
        assert!(Span::parse("36526days").is_err());
        assert!(matches!(
            Span::parse("2 fortnights"),
            Err(SpanError::Syntax { .. })
        ));
        assert_eq!(
            Span::parse("100y").map(|s| s.delta().num_days() > 0),
            Ok(true)
        );
    }

    #[test]
    fn serde_round_trip_and_errors_say_why() {
        #[derive(Debug, Deserialize, Serialize)]
        struct T {
            d: Span,
        }
        let t: T = toml::from_str("d = \"90m\"").unwrap();
        assert_eq!(t.d.get(), Duration::from_secs(5_400));
        assert_eq!(toml::to_string(&t).unwrap().trim(), "d = \"1h 30m\"");
        let e = toml::from_str::<T>("d = \"99999999999h\"").unwrap_err();
        assert!(e.message().contains("longer than the longest span"), "{e}");
        assert_eq!(e.span(), Some(4..18), "the quoted value");
    }
}
