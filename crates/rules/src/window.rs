//! Freeze windows: when a rule's freeze is in force.
//!
//! A recurring window is `[start, start + duration)` for each cron start (elapsed time, so a
//! window that spans a DST change ends an hour earlier or later on the wall clock), or, with
//! `end_cron`, `[start, first end_cron instant strictly after start)` (a wall-clock end, DST or
//! not; see [`EndCron`]). Instances of one rule that overlap or touch merge into one window. A
//! one-off window is `[start, end)`.
//!
//! Cost: nothing here enumerates starts one by one. A merged window ends at the first pair of
//! consecutive starts more than `duration` apart (a *break*). Within a local day the gaps
//! between starts are the gaps between the cron's times of day, known when the rule is
//! compiled; only a day with a UTC offset change has one or two pairs whose gap differs, found
//! by binary search. So a merge walks matching *days* (at most [`MERGE_HORIZON`] of them), each
//! in O(log times), and a rule whose starts can never leave a gap (`duration` at least the
//! largest gap, plus the zone's largest offset change) is answered without a walk.

use std::sync::Arc;

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::cron::{CronExpr, partition};

pub mod change_calendar;
pub mod ics;
mod outside;

use change_calendar::ChangeCalendar;
use ics::Calendar;

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
    /// Cron starts in a zone, each lasting `duration` or ending at `end_cron`. Build it with
    /// [`Schedule::recurring`] or [`Schedule::recurring_until`].
    Recurring {
        /// Window starts.
        cron: CronExpr,
        /// Length of each window (positive). With `end_cron`, only what a window lasts on the
        /// wall clock when no offset change falls in it (the first window after 2001-01-01 in
        /// UTC), for display: each window ends at its `end_cron` instant.
        duration: Duration,
        /// Zone the cron is read in.
        tz: Tz,
        /// What merging needs, computed once from the three above.
        merge: Merge,
        /// `end_cron`: each window ends at the first instant of this cron after its start.
        end_cron: Option<Arc<EndCron>>,
    },
    /// One window.
    OneOff(Window),
    /// An allow rule's freeze: in force in the gaps between the windows of the inner schedule
    /// (an `[[allow]]` rule's freeze). A gap with no window before or after it
    /// is reported reaching [`MERGE_HORIZON`] beyond the instant in question.
    Outside(Arc<Schedule>),
    /// The events of an iCalendar file (`ics`), expanded and merged.
    Calendar(Arc<Calendar>),
    /// An AWS Systems Manager Change Calendar: in force while it is CLOSED, as the daemon last
    /// read it (`change_calendar`).
    ChangeCalendar(Arc<ChangeCalendar>),
}

/// The gaps of a recurring schedule, for merging without enumerating starts.
#[derive(Debug, Clone)]
pub struct Merge {
    /// Indices `i` into the cron's times of day with `times[i + 1] - times[i] > duration`.
    breaks: Arc<[u32]>,
    /// No two consecutive starts are ever more than `duration` apart: in force without end.
    always_open: bool,
}

/// A window end given as a cron (`end_cron`): the window that starts at `s` ends at the first
/// instant of this cron strictly after `s`, in the rule's zone, with the cron's DST rules (a gap
/// time at the first instant after the gap, a repeated time at its first occurrence).
///
/// Ends never decrease with the start, so the latest start at or before `t` is the only one
/// that can cover `t`, and instances merge only where an end instant is also a start instant.
/// A merged window therefore runs from the first start after the last end instant before it
/// that is not also a start, to the first end instant after it that is not also a start (a
/// *break*). Breaks are found a matching day at a time, in O(log times) each: distinct wall
/// times are distinct instants except in a gap (every time of a gap maps to the instant after
/// it, the instant of the wall time that ends the gap), so an end time is a start if it is one
/// of the start cron's times of day on a matching date (`only` lists the others, computed
/// once), and otherwise only if it lies in or just after a gap and the instants say so.
#[derive(Debug, Clone)]
pub struct EndCron {
    /// The end cron.
    cron: CronExpr,
    /// Indices into the end cron's times of day that are not times of day of the start cron.
    only: Arc<[u32]>,
}

impl EndCron {
    /// The end cron as written.
    pub fn cron(&self) -> &CronExpr {
        &self.cron
    }

    /// The first (`forward`) or last index `k` in `lo..hi` whose end time on `day` is not an
    /// instant of `start`.
    fn break_in(
        &self,
        start: &CronExpr,
        day: NaiveDate,
        (mut lo, mut hi): (usize, usize),
        forward: bool,
        tz: Tz,
    ) -> Option<usize> {
        let gap = |w: NaiveDateTime| matches!(tz.from_local_datetime(&w), LocalResult::None);
        while lo < hi {
            // Not a start by wall time: not one of the start's times of day on a start date.
            let k = if !start.date_matches(day) {
                if forward { lo } else { hi - 1 }
            } else {
                let a = self.only.partition_point(|&i| (i as usize) < lo);
                let b = self.only.partition_point(|&i| (i as usize) < hi).max(a);
                let found = if forward {
                    self.only[a..b].first()
                } else {
                    self.only[a..b].last()
                };
                *found? as usize
            };
            let wall = NaiveDateTime::new(day, self.cron.times()[k]);
            if !gap(wall) && !gap(wall - ONE_SECOND) {
                return Some(k);
            }
            // In or just after a gap another wall time may map to the same instant.
            let t = self.cron.at(day, k, tz);
            if start.prev_at_or_before(t, tz) != Some(t) {
                return Some(k);
            }
            if forward {
                lo = k + 1;
            } else {
                hi = k;
            }
        }
        None
    }

    /// The first end instant strictly after `t` that is not a start of `start`, or the first
    /// end instant at or after `limit`, whichever comes first.
    fn break_after(
        &self,
        start: &CronExpr,
        t: DateTime<Utc>,
        limit: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let n = self.cron.times().len();
        let first = t.with_timezone(&tz).date_naive() - chrono::Days::new(2);
        let mut day = Some(first).filter(|d| self.cron.date_matches(*d));
        day = day.or_else(|| self.cron.next_day(first));
        while let Some(d) = day {
            let at = |k: usize| self.cron.at(d, k, tz);
            let k0 = if at(0) > t {
                0
            } else {
                partition(n, |k| at(k) <= t)
            };
            if k0 < n {
                if at(k0) >= limit {
                    return Some(at(k0));
                }
                if let Some(k) = self.break_in(start, d, (k0, n), true, tz) {
                    return Some(at(k));
                }
            }
            day = self.cron.next_day(d);
        }
        None
    }

    /// The last end instant strictly before `t` that is not a start of `start`, or the last
    /// end instant at or before `limit`, whichever comes first.
    fn break_before(
        &self,
        start: &CronExpr,
        t: DateTime<Utc>,
        limit: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let n = self.cron.times().len();
        let last = t.with_timezone(&tz).date_naive() + chrono::Days::new(2);
        let mut day = Some(last).filter(|d| self.cron.date_matches(*d));
        day = day.or_else(|| self.cron.prev_day(last));
        while let Some(d) = day {
            let at = |k: usize| self.cron.at(d, k, tz);
            let hi = if at(n - 1) < t {
                n
            } else {
                partition(n, |k| at(k) < t)
            };
            if hi > 0 {
                if at(hi - 1) <= limit {
                    return Some(at(hi - 1));
                }
                if let Some(k) = self.break_in(start, d, (0, hi), false, tz) {
                    return Some(at(k));
                }
            }
            day = self.cron.prev_day(d);
        }
        None
    }
}

const ONE_SECOND: Duration = Duration::seconds(1);

/// No two consecutive cron dates are further apart than this (Feb 29 across 2100).
const MAX_DATE_GAP: Duration = Duration::days(8 * 366 + 1);

/// Margin for offset changes in a zone that has any: no zone moves its clocks back by more.
const OFFSET_MARGIN: Duration = Duration::hours(3);

/// Whether `tz` changed its UTC offset between 1970 and 2100 (sampled twice a year).
fn has_offset_changes(tz: Tz) -> bool {
    use chrono::Offset;
    let offset = |y: i32, m: u32| {
        let t = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single();
        t.map(|t| tz.offset_from_utc_datetime(&t.naive_utc()).fix())
    };
    let first = offset(1970, 1);
    (1970..=2100).any(|y| offset(y, 1) != first || offset(y, 7) != first)
}

impl Schedule {
    /// A recurring schedule: windows of `duration` from each start of `cron` in `tz`.
    pub fn recurring(cron: CronExpr, duration: Duration, tz: Tz) -> Schedule {
        let secs = |t: &chrono::NaiveTime| i64::from(t.num_seconds_from_midnight());
        let times = cron.times();
        let d = duration.num_seconds();
        let breaks: Arc<[u32]> = times
            .windows(2)
            .enumerate()
            .filter(|(_, w)| secs(&w[1]) - secs(&w[0]) > d)
            .map(|(i, _)| i as u32)
            .collect();
        let margin = if has_offset_changes(tz) {
            OFFSET_MARGIN
        } else {
            Duration::zero()
        };
        let in_day = times
            .windows(2)
            .map(|w| secs(&w[1]) - secs(&w[0]))
            .max()
            .unwrap_or(0);
        let across = 86_400 - secs(&times[times.len() - 1]) + secs(&times[0]);
        let largest_gap = if cron.matches_every_day() {
            Duration::seconds(in_day.max(across))
        } else {
            MAX_DATE_GAP + Duration::days(1)
        };
        let always_open = duration >= largest_gap + margin;
        Schedule::Recurring {
            cron,
            duration,
            tz,
            merge: Merge {
                breaks,
                always_open,
            },
            end_cron: None,
        }
    }

    /// A recurring schedule whose windows start at each start of `cron` and end at the first
    /// instant of `end_cron` strictly after it, both read in `tz` (see [`EndCron`]).
    pub fn recurring_until(cron: CronExpr, end_cron: CronExpr, tz: Tz) -> Schedule {
        let only: Arc<[u32]> = (0..end_cron.times().len())
            .filter(|&k| cron.times().binary_search(&end_cron.times()[k]).is_err())
            .map(|k| k as u32)
            .collect();
        let from = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).single();
        let first = from.and_then(|t| cron.next_after(t, chrono_tz::UTC));
        let end = first.and_then(|s| Some(end_cron.next_after(s, chrono_tz::UTC)? - s));
        Schedule::Recurring {
            cron,
            duration: end.unwrap_or(ONE_SECOND),
            tz,
            merge: Merge {
                breaks: Arc::from([]),
                always_open: false,
            },
            end_cron: Some(Arc::new(EndCron {
                cron: end_cron,
                only,
            })),
        }
    }

    /// With `end_cron`: the merged window of the instance that starts at `s`.
    fn until_window(&self, s: DateTime<Utc>) -> Window {
        let Schedule::Recurring {
            cron,
            tz,
            end_cron: Some(end),
            ..
        } = self
        else {
            return Window { start: s, end: s };
        };
        let from = end.break_before(cron, s, s - MERGE_HORIZON, *tz);
        let start = from.and_then(|b| cron.next_after(b, *tz)).unwrap_or(s);
        let to = end.break_after(cron, s, s + MERGE_HORIZON, *tz);
        let end = to.or_else(|| end.cron.next_after(s, *tz));
        Window {
            start: start.min(s),
            end: end.unwrap_or(s + MERGE_HORIZON),
        }
    }

    /// The (merged) window in force at `t`, if any.
    pub fn window_at(&self, t: DateTime<Utc>) -> Option<Window> {
        match self {
            Schedule::OneOff(w) => w.contains(t).then_some(*w),
            Schedule::Outside(inner) => outside::outside_window_at(inner, t),
            Schedule::Calendar(c) => c.window_at(t),
            Schedule::ChangeCalendar(c) => c.window_at(t),
            Schedule::Recurring {
                cron,
                tz,
                end_cron: Some(end),
                ..
            } => {
                let s = cron.prev_at_or_before(t, *tz)?;
                // Ends never decrease with the start: only the latest start can cover t.
                if t >= end.cron.next_after(s, *tz)? {
                    return None;
                }
                Some(self.until_window(s))
            }
            Schedule::Recurring {
                cron, duration, tz, ..
            } => {
                let (day, k) = cron.prev_slot(t, *tz)?;
                let s = cron.at(day, k, *tz);
                // Every earlier start ends no later than this one, so only this one can cover t.
                if t >= s + *duration {
                    return None;
                }
                Some(Window {
                    start: self.merged_start(day, k, s),
                    end: self.merged_end(day, k, s),
                })
            }
        }
    }

    /// The first (`first`) or last break pair `i` (`at(i + 1) - at(i) > duration`) with `i` in
    /// `lo..hi` on `day`; `hi` at most `times.len() - 1`.
    fn break_in(&self, day: NaiveDate, lo: usize, hi: usize, first: bool) -> Option<usize> {
        let Schedule::Recurring {
            cron,
            duration,
            tz,
            merge,
            ..
        } = self
        else {
            return None;
        };
        if lo >= hi {
            return None;
        }
        let at = |i: usize| cron.at(day, i, *tz);
        let n = cron.times().len();
        // Wall clock minus instant, in seconds: constant unless the offset changes this day.
        let off = |i: usize| {
            NaiveDateTime::new(day, cron.times()[i])
                .and_utc()
                .timestamp()
                - at(i).timestamp()
        };
        // Wall-clock breaks with i in lo..hi.
        let wall = |lo: usize, hi: usize| -> Option<usize> {
            let a = merge.breaks.partition_point(|&b| (b as usize) < lo);
            let b = merge.breaks.partition_point(|&b| (b as usize) < hi);
            let found = &merge.breaks[a..b.max(a)];
            let pick = if first { found.first() } else { found.last() };
            pick.map(|&i| i as usize)
        };
        let (o0, o1) = (off(0), off(n - 1));
        if o0 == o1 {
            return wall(lo, hi);
        }
        // The offset moves monotonically over the day (one change): times before `ka` keep the
        // first offset, times from `kb` have the last; between them lies a spring-forward gap,
        // all mapped to one instant. Only the pairs (ka-1, ka) and (kb-1, kb) can differ from
        // the wall clock.
        let ka = partition(n, |i| off(i) == o0);
        let kb = partition(n, |i| off(i) != o1).max(ka);
        let real = |i: usize| (lo..hi).contains(&i) && at(i + 1) - at(i) > *duration;
        let mut candidates = [
            wall(lo, hi.min(ka.saturating_sub(1))),
            ka.checked_sub(1).filter(|&i| real(i)),
            kb.checked_sub(1)
                .filter(|&i| Some(i) != ka.checked_sub(1) && real(i)),
            wall(lo.max(kb), hi),
        ];
        if !first {
            candidates.reverse();
        }
        candidates.into_iter().flatten().next()
    }

    /// Walks back over instances that overlap or touch the one starting at `s` (the `k`-th time
    /// of `day`), at most [`MERGE_HORIZON`]: the earliest start of the merged window.
    fn merged_start(&self, mut day: NaiveDate, mut k: usize, s: DateTime<Utc>) -> DateTime<Utc> {
        let Schedule::Recurring {
            cron,
            duration,
            tz,
            merge,
            ..
        } = self
        else {
            return s;
        };
        let limit = s - MERGE_HORIZON;
        if merge.always_open {
            return cron.prev_at_or_before(limit, *tz).unwrap_or(s);
        }
        let n = cron.times().len();
        loop {
            let at = |i: usize| cron.at(day, i, *tz);
            // The latest start at or before the horizon ends the walk there.
            let g = partition(n, |i| at(i) <= limit).checked_sub(1);
            if let Some(i) = self.break_in(day, g.unwrap_or(0), k, false) {
                return at(i + 1);
            }
            if let Some(g) = g {
                return at(g);
            }
            let q = at(0);
            let Some(prev) = cron.prev_day(day) else {
                return q;
            };
            let p = cron.at(prev, n - 1, *tz);
            if q - p > *duration {
                return q;
            }
            if p <= limit {
                return p;
            }
            (day, k) = (prev, n - 1);
        }
    }

    /// Walks forward over instances that overlap or touch the one starting at `s` (the `k`-th
    /// time of `day`), at most [`MERGE_HORIZON`]: the end of the merged window.
    fn merged_end(&self, mut day: NaiveDate, mut k: usize, s: DateTime<Utc>) -> DateTime<Utc> {
        let Schedule::Recurring {
            cron,
            duration,
            tz,
            merge,
            ..
        } = self
        else {
            return s;
        };
        let limit = s + MERGE_HORIZON;
        if merge.always_open {
            let last = cron.next_after(limit - ONE_SECOND, *tz).unwrap_or(s);
            return last + *duration;
        }
        let n = cron.times().len();
        loop {
            let at = |i: usize| cron.at(day, i, *tz);
            // The first start at or after the horizon ends the walk there.
            let hi = partition(n, |i| at(i) < limit);
            if let Some(i) = self.break_in(day, k, hi.min(n - 1), true) {
                return at(i) + *duration;
            }
            if hi < n {
                return at(hi) + *duration;
            }
            let p = at(n - 1);
            let Some(next) = cron.next_day(day) else {
                return p + *duration;
            };
            let q = cron.at(next, 0, *tz);
            if q - p > *duration {
                return p + *duration;
            }
            if q >= limit {
                return q + *duration;
            }
            (day, k) = (next, 0);
        }
    }

    /// The window of the first start at or after `t`.
    fn window_from(&self, t: DateTime<Utc>) -> Option<Window> {
        let Schedule::Recurring {
            cron, tz, end_cron, ..
        } = self
        else {
            return None;
        };
        let (day, k) = cron.next_slot(t - ONE_SECOND, *tz)?;
        let s = cron.at(day, k, *tz);
        if end_cron.is_some() {
            // No earlier instance reaches a start at or after the end of the one before it.
            return Some(Window {
                start: s,
                end: self.until_window(s).end,
            });
        }
        Some(Window {
            start: s,
            end: self.merged_end(day, k, s),
        })
    }

    /// The windows that overlap `[from, to)`, merged, in order.
    pub fn windows_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Window> {
        self.windows_from(from)
            .take_while(|w| w.start < to)
            .filter(|w| from < w.end)
            .collect()
    }

    /// The windows that end after `from`, merged, in order: lazily, so a caller pays only for
    /// the windows it takes.
    pub fn windows_from(&self, from: DateTime<Utc>) -> impl Iterator<Item = Window> + '_ {
        let mut cursor: Option<DateTime<Utc>> = None;
        let mut done = false;
        let mut outside: Option<Box<dyn Iterator<Item = Window> + '_>> = match self {
            Schedule::Outside(inner) => Some(Box::new(outside::outside_windows_from(inner, from))),
            _ => None,
        };
        std::iter::from_fn(move || {
            if let Some(gaps) = outside.as_mut() {
                return gaps.next();
            }
            if done {
                return None;
            }
            let next = match (self, cursor) {
                (Schedule::OneOff(w), _) => {
                    done = true;
                    (from < w.end).then_some(*w)
                }
                (Schedule::Calendar(c), None) => c.windows_from(from).next(),
                (Schedule::Calendar(c), Some(at)) => c.windows_from(at).next(),
                (Schedule::ChangeCalendar(c), _) => {
                    done = true;
                    c.window().filter(|w| from < w.end)
                }
                (_, None) => self.window_at(from).or_else(|| self.window_from(from)),
                // Starts up to the end of the last window were merged into it.
                (_, Some(c)) => self.window_from(c),
            };
            match next {
                Some(w) => cursor = Some(w.end.max(w.start + ONE_SECOND)),
                None => done = true,
            }
            next
        })
    }

    /// The first window that starts strictly after `t`.
    pub fn next_start_after(&self, t: DateTime<Utc>) -> Option<Window> {
        match self {
            Schedule::OneOff(w) => (w.start > t).then_some(*w),
            Schedule::Outside(inner) => outside::outside_next_start_after(inner, t),
            Schedule::Calendar(c) => c.windows_from(t).find(|w| w.start > t),
            Schedule::ChangeCalendar(c) => c.window().filter(|w| w.start > t),
            Schedule::Recurring { .. } => {
                // Starts up to the end of the window in force at t were merged into it.
                let after = self.window_at(t).map_or(t, |w| w.end.max(t));
                self.window_from(after + ONE_SECOND)
            }
        }
    }
}
