//! Freeze windows: when a rule's freeze is in force.
//!
//! A recurring window is `[start, start + duration)` for each cron start (elapsed time, so a
//! window that spans a DST change ends an hour earlier or later on the wall clock). Instances of
//! one rule that overlap or touch merge into one window. A one-off window is `[start, end)`.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::cron::CronExpr;

/// How far a merge follows overlapping instances, each way, before it stops. A rule whose
/// windows never leave a gap (daily, lasting 24 h or more) is in force without end; it is
/// reported as a window reaching this far before and after the instance in question.
pub const MERGE_HORIZON: Duration = Duration::days(366);

/// One window, merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant in force.
    pub start: DateTime<Utc>,
    /// First instant no longer in force.
    pub end: DateTime<Utc>,
}

impl Window {
    /// Whether `t` is inside.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// When a freeze is in force.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Cron starts in a zone, each lasting `duration`.
    Recurring {
        /// Window starts.
        cron: CronExpr,
        /// Length of each window (positive).
        duration: Duration,
        /// Zone the cron is read in.
        tz: Tz,
    },
    /// One window.
    OneOff(Window),
}

const ONE_SECOND: Duration = Duration::seconds(1);

impl Schedule {
    /// The (merged) window in force at `t`, if any.
    pub fn window_at(&self, t: DateTime<Utc>) -> Option<Window> {
        match self {
            Schedule::OneOff(w) => w.contains(t).then_some(*w),
            Schedule::Recurring { cron, duration, tz } => {
                let s = cron.prev_at_or_before(t, *tz)?;
                // Every earlier start ends no later than this one, so only this one can cover t.
                if t >= s + *duration {
                    return None;
                }
                Some(Window {
                    start: self.merged_start(s),
                    end: self.merged_end(s),
                })
            }
        }
    }

    /// Walks back over instances that overlap or touch the one starting at `s`.
    fn merged_start(&self, s: DateTime<Utc>) -> DateTime<Utc> {
        let Schedule::Recurring { cron, duration, tz } = self else {
            return s;
        };
        let mut start = s;
        while s - start < MERGE_HORIZON {
            match cron.prev_at_or_before(start - ONE_SECOND, *tz) {
                Some(p) if p + *duration >= start => start = p,
                _ => break,
            }
        }
        start
    }

    /// Walks forward over instances that overlap or touch the one starting at `s`.
    fn merged_end(&self, s: DateTime<Utc>) -> DateTime<Utc> {
        let Schedule::Recurring { cron, duration, tz } = self else {
            return s;
        };
        let mut last = s;
        let mut end = s + *duration;
        while last - s < MERGE_HORIZON {
            match cron.next_after(last, *tz) {
                Some(n) if n <= end => {
                    last = n;
                    end = end.max(n + *duration);
                }
                _ => break,
            }
        }
        end
    }

    /// The windows that overlap `[from, to)`, merged, in order.
    pub fn windows_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Window> {
        match self {
            Schedule::OneOff(w) => {
                if w.start < to && from < w.end {
                    vec![*w]
                } else {
                    vec![]
                }
            }
            Schedule::Recurring { cron, tz, .. } => {
                let mut out = Vec::new();
                let mut cursor = from;
                if let Some(w) = self.window_at(from) {
                    cursor = w.end;
                    out.push(w);
                }
                // Starts at or after the cursor begin new windows.
                while let Some(s) = cron.next_after(cursor - ONE_SECOND, *tz) {
                    if s >= to {
                        break;
                    }
                    let w = Window {
                        start: s,
                        end: self.merged_end(s),
                    };
                    cursor = w.end.max(s + ONE_SECOND);
                    out.push(w);
                }
                out
            }
        }
    }

    /// The first window that starts strictly after `t`.
    pub fn next_start_after(&self, t: DateTime<Utc>) -> Option<Window> {
        match self {
            Schedule::OneOff(w) => (w.start > t).then_some(*w),
            Schedule::Recurring { cron, tz, .. } => {
                // Starts up to the end of the window in force at t were merged into it.
                let after = self.window_at(t).map_or(t, |w| w.end.max(t));
                let s = cron.next_after(after, *tz)?;
                Some(Window {
                    start: s,
                    end: self.merged_end(s),
                })
            }
        }
    }
}
