//! Recurrence expansion (RFC 5545 3.3.10, 3.8.5): RRULE, RDATE, EXDATE and RECURRENCE-ID
//! overrides, to windows.
//!
//! An RRULE is expanded on the wall clock of DTSTART's zone, one *period* (a day, week, month
//! or year, every INTERVAL) at a time: the period's candidate dates come from BYMONTH,
//! BYMONTHDAY and BYDAY (ordinals like `-1FR` count within the month, or within the year for a
//! YEARLY rule without BYMONTH), then BYSETPOS picks among them; each date gets DTSTART's time
//! of day. DTSTART is always the first occurrence and counts towards COUNT. Each wall time
//! becomes an instant with RFC 5545's DST rules ([`crate::zone::resolve_calendar`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc, Weekday};

use super::{Event, IcsError, Length, Stamp, err, horizon, weekday};
use crate::window::Window;

/// RRULE frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freq {
    /// Every INTERVAL days.
    Daily,
    /// Every INTERVAL weeks (starting on WKST).
    Weekly,
    /// Every INTERVAL months.
    Monthly,
    /// Every INTERVAL years.
    Yearly,
}

/// RRULE's UNTIL, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// A date: occurrences on or before it (wall clock).
    Date(NaiveDate),
    /// A floating or local date-time: occurrences at or before it on the wall clock.
    Wall(NaiveDateTime),
    /// A UTC date-time: occurrences at or before it.
    Instant(DateTime<Utc>),
}

/// A parsed RRULE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRule {
    /// FREQ.
    pub freq: Freq,
    /// INTERVAL (default 1).
    pub interval: u32,
    /// COUNT.
    pub count: Option<u32>,
    /// UNTIL.
    pub until: Option<Until>,
    /// BYDAY: (ordinal, 0 for every one; weekday).
    pub by_day: Vec<(i32, Weekday)>,
    /// BYMONTHDAY (1..=31 or -31..=-1).
    pub by_month_day: Vec<i32>,
    /// BYMONTH (1..=12).
    pub by_month: Vec<u32>,
    /// BYSETPOS.
    pub by_set_pos: Vec<i32>,
    /// WKST (default Monday).
    pub wkst: Weekday,
}

fn list<T>(
    line: usize,
    key: &str,
    v: &str,
    f: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, IcsError> {
    v.split(',')
        .map(|x| {
            f(x.trim()).ok_or_else(|| IcsError {
                line,
                message: format!("RRULE {key}={v}: {x:?} is not a valid value"),
            })
        })
        .collect()
}

fn ranged(lo: i32, hi: i32) -> impl Fn(&str) -> Option<i32> {
    move |x| {
        x.parse::<i32>()
            .ok()
            .filter(|n| *n != 0 && (lo..=hi).contains(&n.abs()))
    }
}

/// Parses an RRULE value.
pub(crate) fn parse_rrule(line: usize, value: &str) -> Result<RRule, IcsError> {
    let mut r = RRule {
        freq: Freq::Daily,
        interval: 1,
        count: None,
        until: None,
        by_day: Vec::new(),
        by_month_day: Vec::new(),
        by_month: Vec::new(),
        by_set_pos: Vec::new(),
        wkst: Weekday::Mon,
    };
    let mut freq = None;
    for part in value.trim().split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return err(line, format!("RRULE part {part:?} has no value"));
        };
        let k = k.trim().to_ascii_uppercase();
        let v = v.trim().to_ascii_uppercase();
        match k.as_str() {
            "FREQ" => {
                freq = Some(match v.as_str() {
                    "DAILY" => Freq::Daily,
                    "WEEKLY" => Freq::Weekly,
                    "MONTHLY" => Freq::Monthly,
                    "YEARLY" => Freq::Yearly,
                    _ => {
                        return err(
                            line,
                            format!(
                                "RRULE FREQ={v} is not supported (DAILY, WEEKLY, MONTHLY or YEARLY)"
                            ),
                        );
                    }
                })
            }
            "INTERVAL" => {
                r.interval = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| IcsError {
                    line,
                    message: format!("RRULE INTERVAL={v} is not a positive number"),
                })?
            }
            "COUNT" => {
                r.count = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| IcsError {
                    line,
                    message: format!("RRULE COUNT={v} is not a positive number"),
                })?)
            }
            "UNTIL" => {
                let bad = || IcsError {
                    line,
                    message: format!("RRULE UNTIL={v} is not an iCalendar date or date-time"),
                };
                r.until = Some(if v.len() == 8 {
                    Until::Date(NaiveDate::parse_from_str(&v, "%Y%m%d").map_err(|_| bad())?)
                } else if let Some(b) = v.strip_suffix('Z') {
                    let w = NaiveDateTime::parse_from_str(b, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
                    Until::Instant(w.and_utc())
                } else {
                    Until::Wall(
                        NaiveDateTime::parse_from_str(&v, "%Y%m%dT%H%M%S").map_err(|_| bad())?,
                    )
                })
            }
            "BYDAY" => {
                r.by_day = list(line, "BYDAY", &v, |x| {
                    let split = x.len().checked_sub(2)?;
                    let day = weekday(x.get(split..)?)?;
                    let n = match x.get(..split)? {
                        "" => 0,
                        n => ranged(1, 53)(n.strip_prefix('+').unwrap_or(n))?,
                    };
                    Some((n, day))
                })?
            }
            "BYMONTHDAY" => r.by_month_day = list(line, "BYMONTHDAY", &v, ranged(1, 31))?,
            "BYMONTH" => {
                r.by_month = list(line, "BYMONTH", &v, |x| {
                    x.parse().ok().filter(|m| (1..=12).contains(m))
                })?
            }
            "BYSETPOS" => r.by_set_pos = list(line, "BYSETPOS", &v, ranged(1, 366))?,
            "WKST" => {
                r.wkst = weekday(&v).ok_or_else(|| IcsError {
                    line,
                    message: format!("RRULE WKST={v} is not a weekday"),
                })?
            }
            _ => return err(line, format!("RRULE {k} is not supported")),
        }
    }
    r.freq = freq.ok_or_else(|| IcsError {
        line,
        message: "RRULE without FREQ".into(),
    })?;
    if r.count.is_some() && r.until.is_some() {
        return err(line, "RRULE with both COUNT and UNTIL");
    }
    let ordinals = r.by_day.iter().any(|(n, _)| *n != 0);
    if ordinals && matches!(r.freq, Freq::Daily | Freq::Weekly) {
        return err(
            line,
            "RRULE BYDAY ordinals (like -1FR) need FREQ=MONTHLY or YEARLY",
        );
    }
    if r.freq == Freq::Weekly && !r.by_month_day.is_empty() {
        return err(line, "RRULE BYMONTHDAY does not apply to FREQ=WEEKLY");
    }
    Ok(r)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(next.0, next.1, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// The dates of `days` (1-based, negative from the end) in month `m`.
fn month_days(y: i32, m: u32, days: &[i32]) -> Vec<NaiveDate> {
    let len = days_in_month(y, m) as i32;
    days.iter()
        .filter_map(|&d| {
            let d = if d < 0 { len + 1 + d } else { d };
            (1..=len)
                .contains(&d)
                .then(|| NaiveDate::from_ymd_opt(y, m, d as u32))
                .flatten()
        })
        .collect()
}

/// The dates in `[first, last]` matching BYDAY; an ordinal counts within that span.
fn weekdays_in(first: NaiveDate, last: NaiveDate, by_day: &[(i32, Weekday)]) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    for &(n, wd) in by_day {
        let off = (7 + wd.num_days_from_monday() - first.weekday().num_days_from_monday()) % 7;
        let first_wd = first + Duration::days(i64::from(off));
        let all = (0..)
            .map(|k| first_wd + Duration::weeks(k))
            .take_while(|d| *d <= last);
        let all: Vec<NaiveDate> = all.collect();
        match n {
            0 => out.extend(all),
            n if n > 0 => out.extend(all.get(n as usize - 1)),
            n => out.extend(
                all.len()
                    .checked_sub(n.unsigned_abs() as usize)
                    .map(|i| all[i]),
            ),
        }
    }
    out
}

/// Candidate dates of one month of a MONTHLY rule, or of a YEARLY one with BYMONTH.
fn in_month(r: &RRule, y: i32, m: u32, start: NaiveDate) -> Vec<NaiveDate> {
    if !r.by_month.is_empty() && !r.by_month.contains(&m) {
        return Vec::new();
    }
    let first = NaiveDate::from_ymd_opt(y, m, 1);
    let Some(first) = first else {
        return Vec::new();
    };
    let last = first + Duration::days(i64::from(days_in_month(y, m)) - 1);
    match (r.by_month_day.is_empty(), r.by_day.is_empty()) {
        (true, true) => month_days(y, m, &[start.day() as i32]),
        (false, true) => month_days(y, m, &r.by_month_day),
        (true, false) => weekdays_in(first, last, &r.by_day),
        (false, false) => {
            let wd = weekdays_in(first, last, &r.by_day);
            month_days(y, m, &r.by_month_day)
                .into_iter()
                .filter(|d| wd.contains(d))
                .collect()
        }
    }
}

/// The candidate dates of period `n` (sorted, BYSETPOS applied), and the period's first day.
fn period(r: &RRule, start: NaiveDate, n: i64) -> (NaiveDate, Vec<NaiveDate>) {
    let step = n * i64::from(r.interval);
    let month_ok = |d: &NaiveDate| r.by_month.is_empty() || r.by_month.contains(&d.month());
    let (first, mut dates) = match r.freq {
        Freq::Daily => {
            let d = start + Duration::days(step);
            let day_ok = r.by_day.is_empty() || r.by_day.iter().any(|(_, w)| *w == d.weekday());
            let md_ok = r.by_month_day.is_empty()
                || month_days(d.year(), d.month(), &r.by_month_day).contains(&d);
            (
                d,
                if month_ok(&d) && day_ok && md_ok {
                    vec![d]
                } else {
                    vec![]
                },
            )
        }
        Freq::Weekly => {
            let back =
                (7 + start.weekday().num_days_from_monday() - r.wkst.num_days_from_monday()) % 7;
            let ws = start - Duration::days(i64::from(back)) + Duration::weeks(step);
            let want: Vec<Weekday> = if r.by_day.is_empty() {
                vec![start.weekday()]
            } else {
                r.by_day.iter().map(|(_, w)| *w).collect()
            };
            let days = (0..7).map(|k| ws + Duration::days(k));
            (
                ws,
                days.filter(|d| want.contains(&d.weekday()) && month_ok(d))
                    .collect(),
            )
        }
        Freq::Monthly => {
            let total = i64::from(start.year()) * 12 + i64::from(start.month0()) + step;
            let (y, m) = (total.div_euclid(12) as i32, total.rem_euclid(12) as u32 + 1);
            let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX);
            (first, in_month(r, y, m, start))
        }
        Freq::Yearly => {
            let y = start.year() + step as i32;
            let first = NaiveDate::from_ymd_opt(y, 1, 1).unwrap_or(NaiveDate::MAX);
            let dates = if !r.by_month.is_empty() {
                (1..=12).flat_map(|m| in_month(r, y, m, start)).collect()
            } else if r.by_month_day.is_empty() && r.by_day.is_empty() {
                month_days(y, start.month(), &[start.day() as i32])
            } else {
                let last = NaiveDate::from_ymd_opt(y, 12, 31).unwrap_or(NaiveDate::MAX);
                let md: Vec<NaiveDate> = (1..=12)
                    .flat_map(|m| month_days(y, m, &r.by_month_day))
                    .collect();
                let wd = weekdays_in(first, last, &r.by_day);
                match (r.by_month_day.is_empty(), r.by_day.is_empty()) {
                    (true, _) => wd,
                    (_, true) => md,
                    _ => md.into_iter().filter(|d| wd.contains(d)).collect(),
                }
            };
            (first, dates)
        }
    };
    dates.sort();
    dates.dedup();
    if !r.by_set_pos.is_empty() {
        let len = dates.len() as i32;
        let mut picked: Vec<NaiveDate> = r
            .by_set_pos
            .iter()
            .filter_map(|&p| {
                let i = if p > 0 { p - 1 } else { len + p };
                (0..len).contains(&i).then(|| dates[i as usize])
            })
            .collect();
        picked.sort();
        picked.dedup();
        dates = picked;
    }
    (first, dates)
}

/// The wall times of an RRULE's occurrences (DTSTART first), up to [`horizon`].
pub fn occurrences(start: &Stamp, r: &RRule) -> Vec<NaiveDateTime> {
    let end = horizon();
    let mut out = vec![start.wall];
    let done = |out: &Vec<NaiveDateTime>| r.count.is_some_and(|c| out.len() >= c as usize);
    let within = |w: NaiveDateTime| match r.until {
        None => true,
        Some(Until::Date(d)) => w.date() <= d,
        Some(Until::Wall(u)) => w <= u,
        Some(Until::Instant(u)) => super::resolve_calendar(w, start.tz) <= u,
    };
    let d0 = start.wall.date();
    for n in 0.. {
        if done(&out) {
            break;
        }
        let (first, dates) = period(r, d0, n);
        if first.and_time(chrono::NaiveTime::MIN).and_utc() > end + Duration::days(1) {
            break;
        }
        for d in dates {
            let w = d.and_time(start.wall.time());
            if w <= start.wall {
                continue;
            }
            if !within(w) || super::resolve_calendar(w, start.tz) >= end || done(&out) {
                return out;
            }
            out.push(w);
        }
    }
    out
}

/// The window of an occurrence starting at `s`.
fn window(s: &Stamp, length: Length) -> Window {
    let start = s.instant();
    let end = match length {
        Length::Exact(d) => start + d,
        Length::Nominal { days, exact } => {
            super::resolve_calendar(s.wall + Duration::days(days), s.tz) + exact
        }
    };
    Window { start, end }
}

fn excluded(s: &Stamp, ex: &[Stamp]) -> bool {
    ex.iter().any(|e| {
        if e.date && !s.date {
            e.wall.date() == s.wall.date()
        } else {
            e.instant() == s.instant()
        }
    })
}

/// Every event's windows (unmerged, unordered; empty ones left out).
pub fn windows(events: &[Event]) -> Vec<Window> {
    // Overrides by (UID, instant of the occurrence they replace).
    let mut overridden: BTreeSet<(&str, DateTime<Utc>)> = BTreeSet::new();
    let masters: Vec<&str> = events
        .iter()
        .filter(|e| e.recurrence_id.is_none())
        .filter_map(|e| e.uid.as_deref())
        .collect();
    let mut out = Vec::new();
    for e in events {
        if let (Some(id), Some(uid)) = (&e.recurrence_id, e.uid.as_deref())
            && masters.contains(&uid)
        {
            overridden.insert((uid, id.instant()));
        }
    }
    for e in events {
        if e.cancelled {
            continue;
        }
        let starts: Vec<Stamp> = match (&e.rrule, &e.recurrence_id) {
            (Some(r), None) => occurrences(&e.start, r)
                .into_iter()
                .map(|wall| Stamp { wall, ..e.start })
                .collect(),
            _ => vec![e.start],
        };
        let rdates = if e.recurrence_id.is_none() {
            e.rdates.iter().copied()
        } else {
            [].iter().copied()
        };
        for s in starts.into_iter().chain(rdates) {
            if e.recurrence_id.is_none() {
                if excluded(&s, &e.exdates) {
                    continue;
                }
                if let Some(uid) = e.uid.as_deref()
                    && overridden.contains(&(uid, s.instant()))
                {
                    continue;
                }
            }
            let w = window(&s, e.length);
            if w.start < w.end {
                out.push(w);
            }
        }
    }
    out
}
