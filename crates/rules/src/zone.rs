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
    fn lord_howe_half_hour_gap() {
        // Lord Howe, 2026-10-04: 02:00 +10:30 -> 02:30 +11:00 (15:30Z on the 3rd).
        let t = resolve_local(local(2026, 10, 4, 2, 15), chrono_tz::Australia::Lord_Howe);
        assert_eq!(t.to_rfc3339(), "2026-10-03T15:30:00+00:00");
    }
}
