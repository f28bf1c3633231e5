//! The gaps between a schedule's windows: [`Schedule::Outside`], the freeze of an `[[allow]]`
//! rule (see `crate::policy::allow`).

use chrono::{DateTime, Utc};

use super::{MERGE_HORIZON, Schedule, Window};

/// How far beyond `from` the gaps of a schedule whose windows never leave one are looked for.
const OUTSIDE_LOOKAHEAD: chrono::Duration = chrono::Duration::days(200 * 366);

/// The end of the last window of `inner` that ends at or before `t` (`t` in no window).
fn last_end_at_or_before(inner: &Schedule, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match inner {
        Schedule::OneOff(w) => (w.end <= t).then_some(w.end),
        Schedule::Calendar(c) => c.last_end_at_or_before(t),
        Schedule::Recurring { cron, tz, .. } => {
            // Ends never decrease with the start: the latest start's window ends last.
            let s = cron.prev_at_or_before(t, *tz)?;
            inner.window_at(s).map(|w| w.end).filter(|e| *e <= t)
        }
        Schedule::Outside(_) | Schedule::ChangeCalendar(_) => None,
    }
}

/// The gap of `inner` around `t`, if `t` is in one. A gap with no window before it is reported
/// from [`MERGE_HORIZON`] before `t`, one with no window after it to [`MERGE_HORIZON`] after.
pub(crate) fn outside_window_at(inner: &Schedule, t: DateTime<Utc>) -> Option<Window> {
    if inner.window_at(t).is_some() {
        return None;
    }
    let start = last_end_at_or_before(inner, t).unwrap_or(t - MERGE_HORIZON);
    let end = inner
        .windows_from(t)
        .next()
        .map_or(t + MERGE_HORIZON, |w| w.start);
    Some(Window { start, end })
}

/// The gaps of `inner` that end after `from`, in order, lazily.
pub(crate) fn outside_windows_from(
    inner: &Schedule,
    from: DateTime<Utc>,
) -> impl Iterator<Item = Window> + '_ {
    let mut windows = inner.windows_from(from);
    // Where the next gap starts, once known.
    let mut gap_start = if inner.window_at(from).is_none() {
        Some(last_end_at_or_before(inner, from).unwrap_or(from - MERGE_HORIZON))
    } else {
        None
    };
    let mut done = false;
    let give_up = from + OUTSIDE_LOOKAHEAD;
    std::iter::from_fn(move || {
        while !done {
            let Some(w) = windows.next() else {
                done = true;
                // After the last window: a gap without end.
                let p = gap_start.filter(|p| inner.window_at(*p).is_none())?;
                return Some(Window {
                    start: p,
                    end: p.max(from) + MERGE_HORIZON,
                });
            };
            if w.start > give_up {
                done = true;
                return None;
            }
            // A window cut where its merge stopped looking touches the next: no gap between.
            let prev = gap_start.replace(w.end);
            if let Some(p) = prev.filter(|p| *p < w.start && inner.window_at(*p).is_none()) {
                return Some(Window {
                    start: p,
                    end: w.start,
                });
            }
        }
        None
    })
}

/// The first gap of `inner` that starts strictly after `t`.
pub(crate) fn outside_next_start_after(inner: &Schedule, t: DateTime<Utc>) -> Option<Window> {
    outside_windows_from(inner, t).find(|w| w.start > t)
}
