//! iCalendar (RFC 5545) files as freeze windows: `ics = "PATH"`.
//!
//! The daemon reads the file and hands its text here; this module does no I/O. Parsing is a
//! small hand-written reader (line unfolding, properties with parameters, components) so that
//! every error names the file's line. Every VEVENT is a window (or, with RRULE/RDATE, a set of
//! them, see [`expand`]); a cancelled event (`STATUS:CANCELLED`) is none.
//!
//! Times: `TZID=` must be an IANA name (a VTIMEZONE or TZID that is not one is an error with its
//! line, never a guess); a time ending in `Z` is UTC; a floating time and an all-day date
//! (`VALUE=DATE`, midnight to midnight) are read in the rule's `timezone`. Local times follow
//! RFC 5545 ([`crate::zone::resolve_calendar`]): a time in a DST gap is read with the offset
//! before the gap, a repeated time is its first occurrence.
//!
//! Not supported, and refused with the line rather than guessed at: FREQ finer than DAILY,
//! BYHOUR/BYMINUTE/BYSECOND/BYWEEKNO/BYYEARDAY, RDATE periods, RANGE=THISANDFUTURE.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

use super::Window;
use crate::zone::resolve_calendar;

pub mod expand;

pub use expand::{Freq, RRule, Until};

/// Recurrences are expanded up to this instant (2100-01-01T00:00:00Z); later occurrences are
/// not windows.
pub fn horizon() -> DateTime<Utc> {
    DateTime::from_timestamp(4_102_444_800, 0).unwrap_or_default()
}

/// What is wrong with a calendar, and on which line (1-based) of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct IcsError {
    /// 1-based line of the file where the (unfolded) property starts.
    pub line: usize,
    /// What.
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, IcsError> {
    Err(IcsError {
        line,
        message: message.into(),
    })
}

/// A calendar time as written: a wall time in a zone (`TZID`, floating in the rule's zone, or
/// UTC for `Z`), or a date (all-day, in the rule's zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The wall time (midnight for a date).
    pub wall: NaiveDateTime,
    /// The zone it is read in.
    pub tz: Tz,
    /// A `VALUE=DATE`.
    pub date: bool,
}

impl Stamp {
    /// The instant, with RFC 5545's DST rules.
    pub fn instant(&self) -> DateTime<Utc> {
        resolve_calendar(self.wall, self.tz)
    }
}

/// How long each occurrence lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// `DTEND`: the same exact duration for every occurrence (an all-day event: whole days on
    /// the wall clock).
    Exact(Duration),
    /// `DURATION` (or none on an all-day event: one day): days on the wall clock, then exact.
    Nominal {
        /// Wall-clock days.
        days: i64,
        /// Exact rest.
        exact: Duration,
    },
}

/// One VEVENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Line of its `BEGIN:VEVENT`.
    pub line: usize,
    /// `UID`.
    pub uid: Option<String>,
    /// `DTSTART`.
    pub start: Stamp,
    /// How long.
    pub length: Length,
    /// `RRULE`.
    pub rrule: Option<RRule>,
    /// `RDATE`s.
    pub rdates: Vec<Stamp>,
    /// `EXDATE`s.
    pub exdates: Vec<Stamp>,
    /// `RECURRENCE-ID`: this event replaces that occurrence of the event with its UID.
    pub recurrence_id: Option<Stamp>,
    /// `STATUS:CANCELLED`.
    pub cancelled: bool,
}

/// A parsed calendar with its windows, merged, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The path as written in the policy (for display).
    pub path: String,
    /// Number of VEVENTs.
    pub events: usize,
    /// The windows, merged (overlapping or touching occurrences are one), in order.
    pub windows: Arc<[Window]>,
}

impl Calendar {
    /// Parses and expands `text`; floating and all-day times are read in `tz`.
    pub fn parse(path: &str, text: &str, tz: Tz) -> Result<Calendar, IcsError> {
        let events = parse_events(text, tz)?;
        let mut windows = expand::windows(&events);
        windows.sort_by_key(|w| (w.start, w.end));
        let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
        for w in windows {
            match merged.last_mut() {
                Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                _ => merged.push(w),
            }
        }
        Ok(Calendar {
            path: path.to_string(),
            events: events.len(),
            windows: merged.into(),
        })
    }

    /// The window in force at `t`.
    pub fn window_at(&self, t: DateTime<Utc>) -> Option<Window> {
        let i = self.windows.partition_point(|w| w.end <= t);
        self.windows.get(i).filter(|w| w.contains(t)).copied()
    }

    /// The windows that end after `from`, in order.
    pub fn windows_from(&self, from: DateTime<Utc>) -> impl Iterator<Item = Window> + '_ {
        let i = self.windows.partition_point(|w| w.end <= from);
        self.windows[i..].iter().copied()
    }

    /// The end of the last window that ends at or before `t`.
    pub fn last_end_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let i = self.windows.partition_point(|w| w.end <= t);
        i.checked_sub(1).map(|i| self.windows[i].end)
    }
}

/// One unfolded content line: name, parameters (upper-cased names), value, line number.
struct Prop {
    line: usize,
    name: String,
    params: BTreeMap<String, String>,
    value: String,
}

/// Unfolds lines (a line starting with a space or tab continues the one before) and splits each
/// into name, parameters and value.
fn content_lines(text: &str) -> Result<Vec<Prop>, IcsError> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), logical.last_mut()) {
            (Some(rest), Some((_, prev))) => prev.push_str(rest),
            _ if raw.trim().is_empty() => {}
            _ => logical.push((i + 1, raw.to_string())),
        }
    }
    logical
        .into_iter()
        .map(|(n, l)| split_line(n, &l))
        .collect()
}

fn split_line(line: usize, text: &str) -> Result<Prop, IcsError> {
    let mut quoted = false;
    let mut fields: Vec<String> = vec![String::new()];
    let mut value = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => fields.push(String::new()),
            ':' if !quoted => {
                value = Some(text[i + 1..].to_string());
                break;
            }
            c => fields.last_mut().map_or((), |f| f.push(c)),
        }
    }
    let Some(value) = value else {
        return err(line, format!("not a content line (no ':'): {text:?}"));
    };
    let name = fields.remove(0).trim().to_ascii_uppercase();
    let mut params = BTreeMap::new();
    for f in fields {
        let Some((k, v)) = f.split_once('=') else {
            return err(line, format!("parameter without a value: {f:?}"));
        };
        params.insert(k.trim().to_ascii_uppercase(), v.to_string());
    }
    Ok(Prop {
        line,
        name,
        params,
        value,
    })
}

/// The zone of a `TZID` parameter or VTIMEZONE: an IANA name, or an error.
fn zone(line: usize, name: &str) -> Result<Tz, IcsError> {
    name.trim().parse::<Tz>().map_err(|_| IcsError {
        line,
        message: format!(
            "TZID {name:?} is not an IANA time zone name (such as \"Europe/Berlin\"); stopd does not guess what a calendar's own zone names mean"
        ),
    })
}

/// One date or date-time value with the property's parameters.
fn stamp(p: &Prop, text: &str, tz: Tz) -> Result<Stamp, IcsError> {
    let text = text.trim();
    let bad = || IcsError {
        line: p.line,
        message: format!("{}: {text:?} is not an iCalendar date or date-time", p.name),
    };
    let date_only = p.params.get("VALUE").is_some_and(|v| v == "DATE") || text.len() == 8;
    if date_only {
        let d = NaiveDate::parse_from_str(text, "%Y%m%d").map_err(|_| bad())?;
        return Ok(Stamp {
            wall: d.and_time(NaiveTime::MIN),
            tz,
            date: true,
        });
    }
    let (body, utc) = match text.strip_suffix('Z') {
        Some(b) => (b, true),
        None => (text, false),
    };
    let wall = NaiveDateTime::parse_from_str(body, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
    let tz = match (utc, p.params.get("TZID")) {
        (true, _) => chrono_tz::UTC,
        (false, Some(id)) => zone(p.line, id)?,
        (false, None) => tz,
    };
    Ok(Stamp {
        wall,
        tz,
        date: false,
    })
}

fn stamps(p: &Prop, tz: Tz) -> Result<Vec<Stamp>, IcsError> {
    if p.params.get("VALUE").is_some_and(|v| v == "PERIOD") {
        return err(p.line, format!("{} periods are not supported", p.name));
    }
    p.value.split(',').map(|v| stamp(p, v, tz)).collect()
}

/// `DURATION`: `P1W`, `P1DT2H`, `PT30M`.
fn duration(p: &Prop) -> Result<Length, IcsError> {
    let bad = || IcsError {
        line: p.line,
        message: format!(
            "DURATION {:?} is not a positive iCalendar duration (such as PT2H or P1D)",
            p.value
        ),
    };
    let v = p.value.trim();
    let v = v.strip_prefix('+').unwrap_or(v);
    let rest = v.strip_prefix('P').ok_or_else(bad)?;
    let (mut days, mut exact) = (0i64, Duration::zero());
    let mut num = String::new();
    let mut in_time = false;
    let mut any = false;
    for c in rest.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if c == 'T' && num.is_empty() {
            in_time = true;
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        any = true;
        match (c, in_time) {
            ('W', false) => days += 7 * n,
            ('D', false) => days += n,
            ('H', true) => exact += Duration::hours(n),
            ('M', true) => exact += Duration::minutes(n),
            ('S', true) => exact += Duration::seconds(n),
            _ => return Err(bad()),
        }
    }
    if !any || !num.is_empty() || (days == 0 && exact <= Duration::zero()) {
        return Err(bad());
    }
    Ok(Length::Nominal { days, exact })
}

/// Reads every VEVENT (and checks every VTIMEZONE's TZID).
fn parse_events(text: &str, tz: Tz) -> Result<Vec<Event>, IcsError> {
    let lines = content_lines(text)?;
    let mut stack: Vec<String> = Vec::new();
    let mut events = Vec::new();
    let mut current: Vec<Prop> = Vec::new();
    let mut begin_line = 0;
    let mut seen_calendar = false;
    for p in lines {
        match p.name.as_str() {
            "BEGIN" => {
                let what = p.value.trim().to_ascii_uppercase();
                seen_calendar |= what == "VCALENDAR";
                if what == "VEVENT" {
                    begin_line = p.line;
                    current.clear();
                }
                stack.push(what);
            }
            "END" => {
                let what = p.value.trim().to_ascii_uppercase();
                if stack.pop().as_deref() != Some(what.as_str()) {
                    return err(
                        p.line,
                        format!("END:{what} does not close the open component"),
                    );
                }
                if what == "VEVENT" {
                    events.push(event(begin_line, &current, tz)?);
                }
            }
            "TZID" if stack.last().is_some_and(|c| c == "VTIMEZONE") => {
                zone(p.line, &p.value)?;
            }
            _ if stack.last().is_some_and(|c| c == "VEVENT") => current.push(p),
            _ => {}
        }
    }
    if !seen_calendar {
        return err(1, "not an iCalendar file: no BEGIN:VCALENDAR");
    }
    if let Some(open) = stack.last() {
        return err(
            text.lines().count().max(1),
            format!("{open} is never closed (END:{open})"),
        );
    }
    Ok(events)
}

fn event(line: usize, props: &[Prop], tz: Tz) -> Result<Event, IcsError> {
    let mut start = None;
    let mut end = None;
    let mut length = None;
    let mut ev = Event {
        line,
        uid: None,
        start: Stamp {
            wall: NaiveDateTime::MIN,
            tz,
            date: false,
        },
        length: Length::Exact(Duration::zero()),
        rrule: None,
        rdates: Vec::new(),
        exdates: Vec::new(),
        recurrence_id: None,
        cancelled: false,
    };
    for p in props {
        match p.name.as_str() {
            "UID" => ev.uid = Some(p.value.trim().to_string()),
            "DTSTART" => start = Some(stamp(p, &p.value, tz)?),
            "DTEND" => end = Some((p.line, stamp(p, &p.value, tz)?)),
            "DURATION" => length = Some(duration(p)?),
            "RRULE" => ev.rrule = Some(expand::parse_rrule(p.line, &p.value)?),
            "RDATE" => ev.rdates.extend(stamps(p, tz)?),
            "EXDATE" => ev.exdates.extend(stamps(p, tz)?),
            "STATUS" => ev.cancelled = p.value.trim().eq_ignore_ascii_case("CANCELLED"),
            "RECURRENCE-ID" => {
                if p.params.contains_key("RANGE") {
                    return err(p.line, "RECURRENCE-ID with RANGE is not supported");
                }
                ev.recurrence_id = Some(stamp(p, &p.value, tz)?);
            }
            _ => {}
        }
    }
    let Some(start) = start else {
        return err(line, "VEVENT without DTSTART");
    };
    ev.start = start;
    ev.length = match (end, length) {
        (Some(_), Some(_)) => return err(line, "VEVENT with both DTEND and DURATION"),
        (Some((l, e)), None) => {
            let d = if start.date {
                Duration::days((e.wall.date() - start.wall.date()).num_days())
            } else {
                e.instant() - start.instant()
            };
            if d <= Duration::zero() {
                return err(l, "DTEND is not after DTSTART");
            }
            if start.date {
                Length::Nominal {
                    days: d.num_days(),
                    exact: Duration::zero(),
                }
            } else {
                Length::Exact(d)
            }
        }
        (None, Some(l)) => l,
        (None, None) if start.date => Length::Nominal {
            days: 1,
            exact: Duration::zero(),
        },
        // A date-time without an end is an instant: no window.
        (None, None) => Length::Exact(Duration::zero()),
    };
    Ok(ev)
}

/// Weekday from its two-letter iCalendar name.
pub(crate) fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
