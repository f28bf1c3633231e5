//! POSIX/Vixie cron expressions, evaluated on the wall clock of an IANA zone.
//!
//! Why not the `cron` crate: it counts day-of-week from 1 = Sunday, requires a seconds field,
//! intersects day-of-month with day-of-week where Vixie cron unites them, and (0.17) evaluates in
//! instants, so a start in a DST gap is skipped and one in a repeated hour fires twice. Here an
//! expression is a set of wall-clock times; [`crate::zone::resolve_local`] maps each to exactly one
//! instant (a gap time to the end of the gap, a repeated time to its first occurrence). That
//! mapping is monotone, so scanning wall-clock times in order yields instants in order.
//!
//! Syntax: 5 fields `min hour dom mon dow`, or 6 with a leading seconds field. Each field is a
//! comma list of `*`, `N`, `N-M`, with an optional `/step` (`N/step` means `N-max/step`).
//! Months `JAN`-`DEC` and days `SUN`-`SAT` by name, case-insensitive; day-of-week 0 and 7 are
//! Sunday. When both day-of-month and day-of-week are restricted (neither starts with `*`), a day
//! matches if either does, as in Vixie cron.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::zone::resolve_local;

/// How far a search for the next or previous fire time looks before giving up: 28 years hold
/// every combination of weekday and leap year.
const SEARCH_DAYS: i64 = 28 * 366;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    /// The text as written.
    source: String,
    /// Bit i set: second i matches.
    seconds: u64,
    /// Bit i set: minute i matches.
    minutes: u64,
    /// Bit i set: hour i matches.
    hours: u32,
    /// Bit i set: day-of-month i (1..=31) matches.
    days_of_month: u32,
    /// Bit i set: month i (1..=12) matches.
    months: u16,
    /// Bit i set: weekday i (0 = Sunday .. 6) matches.
    days_of_week: u8,
    /// Day-of-month field was `*` (or `*/n`).
    dom_star: bool,
    /// Day-of-week field was `*` (or `*/n`).
    dow_star: bool,
    /// Every matching time of day, ascending (at most 86,400).
    times: Vec<NaiveTime>,
}

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not 5 or 6 fields.
    #[error("expected 5 fields (min hour dom mon dow) or 6 (sec min hour dom mon dow), found {0}")]
    FieldCount(usize),
    /// A field does not parse or is out of range.
    #[error("{field} field {text:?}: {problem}")]
    Field {
        /// Which field.
        field: &'static str,
        /// Its text.
        text: String,
        /// What is wrong.
        problem: String,
    },
    /// Parses, but no date ever matches (e.g. `0 0 30 2 *`).
    #[error("never fires: no date matches day-of-month, month and day-of-week together")]
    NeverFires,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec {
    name: "seconds",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
// 7 is accepted as Sunday and folded onto 0 after parsing.
const DOW: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

fn parse_value(spec: &FieldSpec, s: &str) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        // Month names count from 1 (the field's minimum), day names from 0.
        return Ok(i as u32 + spec.min);
    }
    let n: u32 = s.parse().map_err(|_| {
        if spec.names.is_empty() {
            format!("{s:?} is not a number")
        } else {
            format!(
                "{s:?} is not a number or a name ({}..)",
                spec.names[..3].join(", ")
            )
        }
    })?;
    if n < spec.min || n > spec.max {
        return Err(format!("{n} is out of range {}-{}", spec.min, spec.max));
    }
    Ok(n)
}

/// Parses one field into a bit set (bit i = value i). Returns the set and whether it was `*`.
fn parse_field(spec: &FieldSpec, text: &str) -> Result<(u64, bool), CronError> {
    let err = |problem: String| CronError::Field {
        field: spec.name,
        text: text.to_string(),
        problem,
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| err(format!("step {s:?} is not a number")))?;
                if step == 0 {
                    return Err(err("step must be at least 1".into()));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (
                parse_value(spec, a).map_err(err)?,
                parse_value(spec, b).map_err(err)?,
            );
            if a > b {
                return Err(err(format!("range {a}-{b} runs backwards")));
            }
            (a, b)
        } else if range.is_empty() {
            return Err(err("empty list item".into()));
        } else {
            let a = parse_value(spec, range).map_err(err)?;
            // Vixie: `N/step` runs from N to the maximum.
            (a, if step.is_some() { spec.max } else { a })
        };
        let step = step.unwrap_or(1);
        // Checked: a step such as 4294967295 ends the walk instead of wrapping around.
        let mut v = Some(lo);
        while let Some(n) = v.filter(|n| *n <= hi) {
            bits |= 1 << n;
            v = n.checked_add(step);
        }
    }
    Ok((bits, text.starts_with('*')))
}

impl CronExpr {
    /// Parses a 5- or 6-field expression; refuses one that can never fire.
    pub fn parse(source: &str) -> Result<CronExpr, CronError> {
        let fields: Vec<&str> = source.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(CronError::FieldCount(n)),
        };
        let (seconds, _) = parse_field(&SECOND, sec)?;
        let (minutes, _) = parse_field(&MINUTE, rest[0])?;
        let (hours, _) = parse_field(&HOUR, rest[1])?;
        let (dom, dom_star) = parse_field(&DOM, rest[2])?;
        let (months, _) = parse_field(&MONTH, rest[3])?;
        let (dow, dow_star) = parse_field(&DOW, rest[4])?;
        // Fold 7 (Sunday) onto 0.
        let dow = (dow | (dow >> 7)) & 0x7f;
        let mut expr = CronExpr {
            times: Vec::new(),
            source: source.to_string(),
            seconds,
            minutes,
            hours: hours as u32,
            days_of_month: dom as u32,
            months: months as u16,
            days_of_week: dow as u8,
            dom_star,
            dow_star,
        };
        // Some date must match: look at every day of a 28-year cycle (weekday x leap year).
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date");
        if !(0..SEARCH_DAYS).any(|i| expr.date_matches(start + chrono::Days::new(i as u64))) {
            return Err(CronError::NeverFires);
        }
        expr.times = expr.compute_times();
        Ok(expr)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression fires on this local date (at some time of day).
    pub fn date_matches(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.dom_star, self.dow_star) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// Whether a wall-clock time of day matches the time fields.
    pub fn time_matches(&self, t: NaiveTime) -> bool {
        use chrono::Timelike;
        self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
            && self.seconds & (1 << t.second()) != 0
    }

    fn compute_times(&self) -> Vec<NaiveTime> {
        bits(u64::from(self.hours))
            .flat_map(move |h| {
                bits(self.minutes).flat_map(move |m| {
                    bits(self.seconds).filter_map(move |s| NaiveTime::from_hms_opt(h, m, s))
                })
            })
            .collect()
    }

    /// The first fire instant strictly after `t`, in zone `tz`.
    pub fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.next_slot(t, tz).map(|(d, k)| self.at(d, k, tz))
    }

    /// The last fire instant at or before `t`, in zone `tz`.
    pub fn prev_at_or_before(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.prev_slot(t, tz).map(|(d, k)| self.at(d, k, tz))
    }

    /// Every matching time of day, ascending (never empty).
    pub(crate) fn times(&self) -> &[NaiveTime] {
        &self.times
    }

    /// The instant of the `k`-th matching time of day on local date `day`.
    pub(crate) fn at(&self, day: NaiveDate, k: usize, tz: Tz) -> DateTime<Utc> {
        resolve_local(NaiveDateTime::new(day, self.times[k]), tz)
    }

    /// The first fire strictly after `t` as (local date, index into the times of day).
    pub(crate) fn next_slot(&self, t: DateTime<Utc>, tz: Tz) -> Option<(NaiveDate, usize)> {
        let times = &self.times;
        // Wall time to instant is monotone (see the module docs), so within a day the first time
        // that maps after `t` is found by binary search. Start two days early: around a
        // repeated hour a wall time of "yesterday" can still map after `t`.
        let first_day = t.with_timezone(&tz).date_naive() - chrono::Days::new(2);
        (0..SEARCH_DAYS)
            .map(|i| first_day + chrono::Days::new(i as u64))
            .filter(|d| self.date_matches(*d))
            .find_map(|d| {
                let k = partition(times.len(), |k| self.at(d, k, tz) <= t);
                (k < times.len()).then_some((d, k))
            })
    }

    /// The last fire at or before `t` as (local date, index into the times of day).
    pub(crate) fn prev_slot(&self, t: DateTime<Utc>, tz: Tz) -> Option<(NaiveDate, usize)> {
        let times = &self.times;
        let last_day = t.with_timezone(&tz).date_naive() + chrono::Days::new(2);
        (0..SEARCH_DAYS)
            .map(|i| last_day - chrono::Days::new(i as u64))
            .filter(|d| self.date_matches(*d))
            .find_map(|d| {
                let k = partition(times.len(), |k| self.at(d, k, tz) <= t);
                (k > 0).then(|| (d, k - 1))
            })
    }

    /// The first matching date after `day` (searched as far as [`next_after`](Self::next_after)).
    pub(crate) fn next_day(&self, day: NaiveDate) -> Option<NaiveDate> {
        (1..SEARCH_DAYS)
            .map(|i| day + chrono::Days::new(i as u64))
            .find(|d| self.date_matches(*d))
    }

    /// The last matching date before `day`.
    pub(crate) fn prev_day(&self, day: NaiveDate) -> Option<NaiveDate> {
        (1..SEARCH_DAYS)
            .map(|i| day - chrono::Days::new(i as u64))
            .find(|d| self.date_matches(*d))
    }

    /// Whether every date matches (month, day-of-month and day-of-week fields all let every
    /// day through), so consecutive fires are never further apart than the gaps of one day.
    pub(crate) fn matches_every_day(&self) -> bool {
        const ALL_DOM: u32 = 0xffff_fffe; // bits 1..=31
        const ALL_DOW: u8 = 0x7f;
        const ALL_MONTHS: u16 = 0x1ffe; // bits 1..=12
        let dom = self.days_of_month == ALL_DOM;
        let dow = self.days_of_week == ALL_DOW;
        self.months == ALL_MONTHS
            && match (self.dom_star, self.dow_star) {
                (false, false) => dom || dow,
                _ => dom && dow,
            }
    }
}

/// The first index in `0..len` for which `pred` is false, given `pred` is true then false.
pub(crate) fn partition(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Indices of set bits, ascending.
fn bits(mut v: u64) -> impl Iterator<Item = u32> {
    let mut out = Vec::with_capacity(v.count_ones() as usize);
    while v != 0 {
        out.push(v.trailing_zeros());
        v &= v - 1;
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn day_of_week_five_is_friday_and_seven_is_sunday() {
        let fri = CronExpr::parse("0 18 * * 5").unwrap();
        let named = CronExpr::parse("0 18 * * FRI").unwrap();
        assert_eq!(fri.days_of_week, named.days_of_week);
        // 2026-11-25 is a Wednesday.
        let next = fri
            .next_after(utc("2026-11-25T00:00:00Z"), chrono_tz::UTC)
            .unwrap();
        assert_eq!(next, utc("2026-11-27T18:00:00Z"));
        let sun7 = CronExpr::parse("0 0 * * 7").unwrap();
        let sun0 = CronExpr::parse("0 0 * * 0").unwrap();
        assert_eq!(sun7.days_of_week, sun0.days_of_week);
        assert_eq!(
            CronExpr::parse("0 0 * * 5-7").unwrap().days_of_week,
            0b110_0001
        );
    }

    #[test]
    fn huge_step_fires_once_instead_of_wrapping() {
        // 1 + 4294967295 overflows a u32: it panicked in debug builds and wrapped in release.
        let e = CronExpr::parse("1/4294967295 * * * *").unwrap();
        let next = e
            .next_after(utc("2026-11-25T00:00:30Z"), chrono_tz::UTC)
            .unwrap();
        assert_eq!(next, utc("2026-11-25T00:01:00Z"));
        let after = e.next_after(next, chrono_tz::UTC).unwrap();
        assert_eq!(after, utc("2026-11-25T01:01:00Z"));
    }

    #[test]
    fn dom_and_dow_restricted_means_either() {
        // The 1st of the month or any Monday.
        let e = CronExpr::parse("0 0 1 * MON").unwrap();
        assert!(e.date_matches(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap())); // a Tuesday
        assert!(e.date_matches(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap())); // a Monday
        assert!(!e.date_matches(NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()));
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let e = CronExpr::parse("*/30 * * * * *").unwrap();
        let next = e
            .next_after(utc("2026-11-25T10:00:10Z"), chrono_tz::UTC)
            .unwrap();
        assert_eq!(next, utc("2026-11-25T10:00:30Z"));
    }

    #[test]
    fn bad_expressions_say_which_field() {
        assert_eq!(CronExpr::parse("* * *"), Err(CronError::FieldCount(3)));
        let e = CronExpr::parse("61 * * * *").unwrap_err().to_string();
        assert!(e.contains("minute") && e.contains("out of range"), "{e}");
        let e = CronExpr::parse("0 0 * * FUN").unwrap_err().to_string();
        assert!(e.contains("day-of-week"), "{e}");
        assert_eq!(CronExpr::parse("0 0 30 2 *"), Err(CronError::NeverFires));
        assert!(CronExpr::parse("0 0 29 2 *").is_ok());
        assert!(CronExpr::parse("0 0 5-1 * *").is_err());
        assert!(CronExpr::parse("0 0 */0 * *").is_err());
    }

    #[test]
    fn prev_at_or_before_includes_the_instant_itself() {
        let e = CronExpr::parse("0 18 * * FRI").unwrap();
        let t = utc("2026-11-27T18:00:00Z");
        assert_eq!(e.prev_at_or_before(t, chrono_tz::UTC), Some(t));
        assert_eq!(
            e.prev_at_or_before(t - chrono::Duration::seconds(1), chrono_tz::UTC),
            Some(utc("2026-11-20T18:00:00Z"))
        );
    }
}
