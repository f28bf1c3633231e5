//! Wall-clock time to instants, with the policy's rules for the two DST irregularities.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Maps a local wall-clock time in `tz` to one instant:
/// - a time that exists once maps to it;
/// - a time in a repeated hour (clocks go back) maps to its **first** occurrence;
/// - a time in a gap (clocks go forward) maps to the **first instant after the gap**.
///
/// The mapping never decreases: a later wall time never maps to an earlier instant.
pub fn resolve_local(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => gap_end(local, tz),
    }
}

/// Maps a local wall-clock time in `tz` to one instant with the iCalendar rules (RFC 5545,
/// 3.3.5), used for calendar (`ics`) times:
/// - a time that exists once maps to it;
/// - a time in a repeated hour maps to its **first** occurrence;
/// - a time in a gap is read with the UTC offset **before** the gap (so it lands as far after
///   the gap's end as it was after the gap's start: 02:30 in a 02:00-03:00 gap is 03:30).
pub fn resolve_calendar(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => {
            // A day before, read as UTC, is before the gap (offsets are within +-14 h and a gap
            // lasts hours) and after the change before it (changes are months apart).
            let before = tz.offset_from_utc_datetime(&(local - chrono::Duration::days(1)));
            let offset = chrono::Offset::fix(&before).local_minus_utc();
            (local - chrono::Duration::seconds(i64::from(offset))).and_utc()
        }
    }
}

/// The first instant whose wall time in `tz` is at or after `local`, for a `local` inside a gap:
/// the instant the clocks jumped. Binary search on seconds; a gap never spans more than a day
/// or two in the tz database (Samoa skipped one whole day in 2011).
fn gap_end(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let naive_utc = local.and_utc().timestamp();
    let (mut lo, mut hi) = (naive_utc - 3 * 86_400, naive_utc + 3 * 86_400);
    let wall = |s: i64| -> NaiveDateTime {
        tz.timestamp_opt(s, 0)
            .single()
            .map(|t| t.naive_local())
            .unwrap_or(NaiveDateTime::MIN)
    };
    // Invariant: wall(lo) < local <= wall(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if wall(mid) < local {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    #[test]
    fn gap_time_maps_to_the_end_of_the_gap() {
        // New York, 2026-03-08: 02:00 EST -> 03:00 EDT (07:00Z).
        let t = resolve_local(local(2026, 3, 8, 2, 30), chrono_tz::America::New_York);
        assert_eq!(t.to_rfc3339(), "2026-03-08T07:00:00+00:00");
    }

    #[test]
    fn repeated_time_maps_to_first_occurrence() {
        // New York, 2026-11-01: 01:30 happens at 05:30Z (EDT) and 06:30Z (EST).
        let t = resolve_local(local(2026, 11, 1, 1, 30), chrono_tz::America::New_York);
        assert_eq!(t.to_rfc3339(), "2026-11-01T05:30:00+00:00");
    }

    #[test]
    fn calendar_gap_time_is_read_with_the_offset_before_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET -> 03:00 CEST; 02:30 at +01:00 is 01:30Z (03:30 CEST).
        let t = resolve_calendar(local(2026, 3, 29, 2, 30), chrono_tz::Europe::Berlin);
        assert_eq!(t.to_rfc3339(), "2026-03-29T01:30:00+00:00");
        // Lord Howe: 02:15 at +10:30 is 15:45Z (02:45 +11:00).
        let t = resolve_calendar(local(2026, 10, 4, 2, 15), chrono_tz::Australia::Lord_Howe);
        assert_eq!(t.to_rfc3339(), "2026-10-03T15:45:00+00:00");
        // Repeated: Berlin 2026-10-25 02:30 first at CEST (00:30Z).
        let t = resolve_calendar(local(2026, 10, 25, 2, 30), chrono_tz::Europe::Berlin);
        assert_eq!(t.to_rfc3339(), "2026-10-25T00:30:00+00:00");
    }

    #[test]
    fn lord_howe_half_hour_gap() {
        // Lord Howe, 2026-10-04: 02:00 +10:30 -> 02:30 +11:00 (15:30Z on the 3rd).
        let t = resolve_local(local(2026, 10, 4, 2, 15), chrono_tz::Australia::Lord_Howe);
        assert_eq!(t.to_rfc3339(), "2026-10-03T15:30:00+00:00");
    }
}
