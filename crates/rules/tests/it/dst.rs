//! Table-driven cron and window cases at DST changes, leap days and year ends.

use chrono_tz::Tz;
use stopd_rules::cron::CronExpr;

use crate::common::{policy, utc};

/// (cron, zone, after, the next two fire instants in UTC)
const NEXT_CASES: &[(&str, &str, &str, [&str; 2])] = &[
    // New York spring forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z): 02:30 does not exist.
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
    ),
    // Every quarter hour of the missing hour fires once, at the end of the gap.
    (
        "*/15 2 * * *",
        "America/New_York",
        "2026-03-08T06:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"],
    ),
    // New York fall back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice, fires at the first.
    (
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T00:00:00Z",
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    ),
    // Hourly through the repeated hour: 01:00 once (EDT), then 02:00 EST.
    (
        "0 * * * *",
        "America/New_York",
        "2026-11-01T04:30:00Z",
        ["2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"],
    ),
    // Berlin spring forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z).
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    ),
    // Berlin fall back 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 first at 00:30Z.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    ),
    // Friday 18:00 in Berlin, POSIX day 5 (not the cron crate's Thursday).
    (
        "0 18 * * 5",
        "Europe/Berlin",
        "2026-11-25T00:00:00Z",
        ["2026-11-27T17:00:00Z", "2026-12-04T17:00:00Z"],
    ),
    // Sydney (southern hemisphere) spring forward 2026-10-04 02:00 AEST -> 03:00 AEDT (16:00Z on the 3rd).
    (
        "30 2 * * *",
        "Australia/Sydney",
        "2026-10-03T00:00:00Z",
        ["2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"],
    ),
    // Sydney fall back 2026-04-05 03:00 AEDT -> 02:00 AEST: 02:30 first at 15:30Z on the 4th.
    (
        "30 2 * * *",
        "Australia/Sydney",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"],
    ),
    // Lord Howe: 30-minute shift. Spring forward 2026-10-04 02:00 -> 02:30 (15:30Z on the 3rd).
    (
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T00:00:00Z",
        ["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
    ),
    // Lord Howe fall back 2026-04-05 02:00 -> 01:30: 01:45 happens twice, first at 14:45Z.
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T00:00:00Z",
        ["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
    ),
    // Leap day, and year end.
    (
        "0 12 29 2 *",
        "UTC",
        "2026-01-01T00:00:00Z",
        ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"],
    ),
    (
        "0 0 1 1 *",
        "UTC",
        "2026-12-31T23:59:59Z",
        ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
    ),
    // Seconds field.
    (
        "*/30 0 0 * * *",
        "UTC",
        "2026-11-25T00:00:10Z",
        ["2026-11-25T00:00:30Z", "2026-11-26T00:00:00Z"],
    ),
];

#[test]
fn dst_gap_start_fires_after_gap_and_repeated_hour_fires_once() {
    for (cron, zone, after, expected) in NEXT_CASES {
        let tz: Tz = zone.parse().unwrap();
        let expr = CronExpr::parse(cron).unwrap();
        let first = expr.next_after(utc(after), tz).unwrap();
        let second = expr.next_after(first, tz).unwrap();
        assert_eq!(
            [first, second],
            [utc(expected[0]), utc(expected[1])],
            "{cron} in {zone} after {after}"
        );
        // And backwards: the last fire at or before each is itself.
        assert_eq!(
            expr.prev_at_or_before(first, tz),
            Some(first),
            "{cron} {zone}"
        );
        assert_eq!(
            expr.prev_at_or_before(second, tz),
            Some(second),
            "{cron} {zone}"
        );
        let just_before_second = second - chrono::Duration::seconds(1);
        assert_eq!(
            expr.prev_at_or_before(just_before_second, tz),
            Some(first),
            "{cron} {zone}"
        );
    }
}

#[test]
fn recurring_window_across_fall_back_lasts_its_elapsed_duration() {
    // Friday 18:00 CEST + 62 h across the 2026-10-25 change: ends 06:00Z = Monday 07:00 CET.
    let p = policy(
        r#"
        [[freeze]]
        name = "weekend"
        cron = "0 18 * * FRI"
        duration = "62h"
        timezone = "Europe/Berlin"
        "#,
    );
    let w = p.windows(utc("2026-10-20T00:00:00Z"), utc("2026-10-27T00:00:00Z"));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].window.start, utc("2026-10-23T16:00:00Z"));
    assert_eq!(w[0].window.end, utc("2026-10-26T06:00:00Z"));
}

#[test]
fn one_off_window_across_a_change_uses_local_times_at_both_ends() {
    // 12:00 EDT on Oct 31 to 12:00 EST on Nov 1: 25 hours.
    let p = policy(
        r#"
        [[freeze]]
        name = "halloween"
        start = "2026-10-31T12:00:00"
        end = "2026-11-01T12:00:00"
        timezone = "America/New_York"
        "#,
    );
    let w = p.windows(utc("2026-10-01T00:00:00Z"), utc("2026-12-01T00:00:00Z"));
    assert_eq!(
        (w[0].window.start, w[0].window.end),
        (utc("2026-10-31T16:00:00Z"), utc("2026-11-01T17:00:00Z"))
    );
}

#[test]
fn one_off_start_in_a_gap_opens_at_the_end_of_the_gap() {
    let p = policy(
        r#"
        [[freeze]]
        name = "gap"
        start = "2026-03-08T02:30:00"
        end = "2026-03-08T05:00:00"
        timezone = "America/New_York"
        "#,
    );
    let w = p.windows(utc("2026-03-01T00:00:00Z"), utc("2026-04-01T00:00:00Z"));
    assert_eq!(w[0].window.start, utc("2026-03-08T07:00:00Z"));
}

#[test]
fn windows_longer_than_their_period_merge() {
    // Midnight on the 1st, 2nd and 3rd, 36 h each: one window from the 1st to noon on the 4th.
    let p = policy(
        r#"
        [[freeze]]
        name = "month-start"
        cron = "0 0 1-3 * *"
        duration = "36h"
        "#,
    );
    let w = p.windows(utc("2026-11-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"));
    let spans: Vec<_> = w.iter().map(|w| (w.window.start, w.window.end)).collect();
    assert_eq!(
        spans,
        vec![
            (utc("2026-11-01T00:00:00Z"), utc("2026-11-04T12:00:00Z")),
            (utc("2026-12-01T00:00:00Z"), utc("2026-12-04T12:00:00Z")),
        ]
    );
    // In the middle of the merged window, the window reported is the merged one.
    let tags = Default::default();
    let v = p.decide(
        utc("2026-11-03T05:00:00Z"),
        &[crate::common::facts(
            "p",
            "e",
            "2026-11-02T00:00:00Z",
            &tags,
        )],
        &[],
    );
    match &v[0] {
        stopd_rules::Verdict::Stop(d) => {
            assert_eq!(d.window.unwrap().start, utc("2026-11-01T00:00:00Z"));
            assert_eq!(d.window.unwrap().end, utc("2026-11-04T12:00:00Z"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn windows_are_sorted_across_rules_and_half_open() {
    let p = policy(
        r#"
        [[freeze]]
        name = "nightly"
        cron = "0 22 * * *"
        duration = "8h"

        [[freeze]]
        name = "lunch"
        cron = "0 12 * * *"
        duration = "1h"
        "#,
    );
    let w = p.windows(utc("2026-11-25T00:00:00Z"), utc("2026-11-27T00:00:00Z"));
    let names: Vec<_> = w.iter().map(|w| w.rule.as_str()).collect();
    // The nightly window of the 24th is in force at the start of the span.
    assert_eq!(names, ["nightly", "lunch", "nightly", "lunch", "nightly"]);
    assert!(w.windows(2).all(|p| p[0].window.start <= p[1].window.start));
    // Half-open: a span that starts exactly at a window's end does not include it.
    let w = p.windows(utc("2026-11-25T06:00:00Z"), utc("2026-11-25T12:00:00Z"));
    assert!(w.is_empty(), "{w:?}");
}
