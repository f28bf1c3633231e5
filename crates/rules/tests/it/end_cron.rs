//! `end_cron`: a recurring window that ends at a wall-clock time (Friday 18:00 to Monday 06:00
//! local, DST or not) instead of after a fixed `duration`.
//!
//! Table cases at the DST weekends of 2027 (expected instants computed independently, with
//! Python's zoneinfo, and our gap rule by hand), then two properties: windows agree with the
//! minute-walk reference of `properties.rs` (which shares no code with the crate), and the
//! day-skipping merge agrees with following instances one by one.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use stopd_rules::window::MERGE_HORIZON;
use stopd_rules::{Policy, PolicySpec, Schedule, Trigger, Verdict, Window};

use crate::common::{facts, policy, utc};
use crate::properties::{CronGen, ZONES, cron_gen, reference_fires};

fn schedule(p: &Policy) -> &Schedule {
    match &p.rules()[0].trigger {
        Trigger::Freeze { schedule, .. } => schedule,
        Trigger::Timeout { .. } => unreachable!("a freeze"),
    }
}

fn weekend(zone: &str) -> Policy {
    policy(&format!(
        "[[freeze]]\nname = \"weekend\"\ncron = \"0 18 * * FRI\"\nend_cron = \"0 6 * * MON\"\n\
         timezone = \"{zone}\"\n"
    ))
}

fn window(start: &str, end: &str) -> Window {
    Window {
        start: utc(start),
        end: utc(end),
    }
}

/// (zone, Friday 18:00 local, Monday 06:00 local), both in UTC, on the weekends the clocks
/// change in 2027.
const WEEKENDS: &[(&str, &str, &str)] = &[
    // Berlin springs forward on Sunday 28 March: Friday CET (+1), Monday CEST (+2).
    (
        "Europe/Berlin",
        "2027-03-26T17:00:00Z",
        "2027-03-29T04:00:00Z",
    ),
    // ... and falls back on Sunday 31 October: Friday CEST, Monday CET.
    (
        "Europe/Berlin",
        "2027-10-29T16:00:00Z",
        "2027-11-01T05:00:00Z",
    ),
    // New York: 14 March (EST -> EDT) and 7 November (EDT -> EST).
    (
        "America/New_York",
        "2027-03-12T23:00:00Z",
        "2027-03-15T10:00:00Z",
    ),
    (
        "America/New_York",
        "2027-11-05T22:00:00Z",
        "2027-11-08T11:00:00Z",
    ),
    // Sydney, southern hemisphere: falls back on 4 April (AEDT +11 -> AEST +10), springs forward
    // on 3 October.
    (
        "Australia/Sydney",
        "2027-04-02T07:00:00Z",
        "2027-04-04T20:00:00Z",
    ),
    (
        "Australia/Sydney",
        "2027-10-01T08:00:00Z",
        "2027-10-03T19:00:00Z",
    ),
    // Lord Howe moves its clocks by half an hour: +11 -> +10:30 on 4 April, back on 3 October.
    (
        "Australia/Lord_Howe",
        "2027-04-02T07:00:00Z",
        "2027-04-04T19:30:00Z",
    ),
    (
        "Australia/Lord_Howe",
        "2027-10-01T07:30:00Z",
        "2027-10-03T19:00:00Z",
    ),
];

#[test]
fn friday_18_to_monday_06_local_on_every_dst_weekend_of_2027() {
    for (zone, start, end) in WEEKENDS {
        let p = weekend(zone);
        let s = schedule(&p);
        let want = window(start, end);
        // In force from its first second to its last, not a second either side.
        for t in [want.start, want.end - Duration::seconds(1)] {
            assert_eq!(s.window_at(t), Some(want), "{zone} at {t}");
        }
        assert_eq!(
            s.window_at(want.start - Duration::seconds(1)),
            None,
            "{zone}"
        );
        assert_eq!(s.window_at(want.end), None, "{zone}");
        // Listed, and the next edges are the window's.
        let from = want.start - Duration::days(3);
        let listed: Vec<Window> = p
            .windows(from, want.end)
            .into_iter()
            .map(|w| w.window)
            .collect();
        assert_eq!(listed, vec![want], "{zone}");
        assert_eq!(p.next_transition(from, &[]), Some(want.start), "{zone}");
        assert_eq!(p.next_transition(want.start, &[]), Some(want.end), "{zone}");
        // 06:00 on the local wall clock.
        let local = want.end.with_timezone(&zone.parse::<Tz>().unwrap());
        assert_eq!(local.format("%a %H:%M").to_string(), "Mon 06:00", "{zone}");
    }
}

#[test]
fn sixty_hours_misses_monday_06_where_end_cron_does_not() {
    // What the issue saw: `duration = "60h"` ends Monday 07:00 CEST after the spring change.
    let by_duration = policy(
        "[[freeze]]\nname = \"w\"\ncron = \"0 18 * * FRI\"\nduration = \"60h\"\n\
         timezone = \"Europe/Berlin\"\n",
    );
    let t = utc("2027-03-28T12:00:00Z");
    let w = schedule(&by_duration).window_at(t).unwrap();
    assert_eq!(w.end, utc("2027-03-29T05:00:00Z"));
    let w = schedule(&weekend("Europe/Berlin")).window_at(t).unwrap();
    assert_eq!(w.end, utc("2027-03-29T04:00:00Z"));
}

/// (start cron, end cron, zone, an instant in the window, the window)
const EDGE_CASES: &[(&str, &str, &str, &str, [&str; 2])] = &[
    // 02:30 does not exist in Berlin on 28 March 2027: the end is the first instant after the
    // gap, 03:00 CEST.
    (
        "0 18 * * FRI",
        "30 2 * * SUN",
        "Europe/Berlin",
        "2027-03-27T12:00:00Z",
        ["2027-03-26T17:00:00Z", "2027-03-28T01:00:00Z"],
    ),
    // 02:30 happens twice on 31 October: the end is the first, 02:30 CEST.
    (
        "0 18 * * FRI",
        "30 2 * * SUN",
        "Europe/Berlin",
        "2027-10-30T12:00:00Z",
        ["2027-10-29T16:00:00Z", "2027-10-31T00:30:00Z"],
    ),
    // Start and end inside the repeated hour: 02:00 CEST to 02:30 CEST, never 02:30 CET.
    (
        "0 2 31 10 *",
        "30 2 * * *",
        "Europe/Berlin",
        "2027-10-31T00:10:00Z",
        ["2027-10-31T00:00:00Z", "2027-10-31T00:30:00Z"],
    ),
    // A start at 02:45 CEST (00:45Z), end 02:15: that day's 02:15 is its first occurrence
    // (00:15Z), before the start; its second occurrence is not an end. Next day's 02:15 CET is.
    (
        "45 2 31 10 *",
        "15 2 * * *",
        "Europe/Berlin",
        "2027-10-31T12:00:00Z",
        ["2027-10-31T00:45:00Z", "2027-11-01T01:15:00Z"],
    ),
    // Lord Howe's half-hour gap: 02:15 on 3 October 2027 ends at 02:30 +11 (15:30Z).
    (
        "0 18 * * FRI",
        "15 2 * * SUN",
        "Australia/Lord_Howe",
        "2027-10-02T12:00:00Z",
        ["2027-10-01T07:30:00Z", "2027-10-02T15:30:00Z"],
    ),
    // Lord Howe's repeated half hour on 4 April 2027: 01:45 first at +11 (14:45Z).
    (
        "0 18 * * FRI",
        "45 1 * * SUN",
        "Australia/Lord_Howe",
        "2027-04-03T12:00:00Z",
        ["2027-04-02T07:00:00Z", "2027-04-03T14:45:00Z"],
    ),
    // A start in a gap: 02:30 on 14 March 2027 in New York starts at 03:00 EDT (07:00Z).
    (
        "30 2 14 3 *",
        "0 6 * * *",
        "America/New_York",
        "2027-03-14T08:00:00Z",
        ["2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z"],
    ),
    // An end at the very instant of a start does not end that window: it is strictly after.
    (
        "0 18 * * FRI",
        "0 18 * * *",
        "UTC",
        "2027-03-06T12:00:00Z",
        ["2027-03-05T18:00:00Z", "2027-03-06T18:00:00Z"],
    ),
    // Instances that touch merge: Fri 18:00 -> Sat 18:00 (an end, and a start) -> Sun 18:00.
    (
        "0 18 * * FRI,SAT",
        "0 18 * * SAT,SUN",
        "UTC",
        "2027-03-06T12:00:00Z",
        ["2027-03-05T18:00:00Z", "2027-03-07T18:00:00Z"],
    ),
    // Saturday 12:00 ends at 18:00, which starts the next instance: one window to 20:00,
    // asked about from either instance.
    (
        "0 12,18 * * SAT",
        "0 18,20 * * SAT",
        "UTC",
        "2027-03-06T13:00:00Z",
        ["2027-03-06T12:00:00Z", "2027-03-06T20:00:00Z"],
    ),
    (
        "0 12,18 * * SAT",
        "0 18,20 * * SAT",
        "UTC",
        "2027-03-06T19:00:00Z",
        ["2027-03-06T12:00:00Z", "2027-03-06T20:00:00Z"],
    ),
    // Asked from a later start (19:00) whose last end before it (18:00) is also a start: the
    // window still reaches back to 12:00.
    (
        "0 12,18,19 * * SAT",
        "0 18,20 * * SAT",
        "UTC",
        "2027-03-06T19:30:00Z",
        ["2027-03-06T12:00:00Z", "2027-03-06T20:00:00Z"],
    ),
    // Sunday 02:30 falls in Berlin's gap on 28 March 2027 and ends at 03:00 CEST, the very
    // instant of Sunday 03:00, a start: that window runs on to the next Sunday 02:30.
    (
        "0 3 * * SUN",
        "30 2 * * SUN",
        "Europe/Berlin",
        "2027-03-25T12:00:00Z",
        ["2027-03-21T02:00:00Z", "2027-04-04T00:30:00Z"],
    ),
    // Starts inside an open window add nothing: every hour of the weekend, one window.
    (
        "0 * * * SAT,SUN",
        "0 6 * * MON",
        "UTC",
        "2027-03-07T12:00:00Z",
        ["2027-03-06T00:00:00Z", "2027-03-08T06:00:00Z"],
    ),
];

#[test]
fn end_cron_in_a_gap_in_a_repeated_hour_and_where_instances_touch() {
    for (start, end, zone, at, [ws, we]) in EDGE_CASES {
        let p = policy(&format!(
            "[[freeze]]\nname = \"f\"\ncron = \"{start}\"\nend_cron = \"{end}\"\ntimezone = \"{zone}\"\n"
        ));
        let got = schedule(&p).window_at(utc(at));
        assert_eq!(
            got,
            Some(window(ws, we)),
            "{start} .. {end} in {zone} at {at}"
        );
    }
}

#[test]
fn ends_that_are_always_starts_never_lift_the_freeze() {
    // Every hour starts a window that lasts to the next hour, which starts the next one.
    let p = policy("[[freeze]]\nname = \"f\"\ncron = \"0 * * * *\"\nend_cron = \"0 * * * *\"\n");
    let t = utc("2027-03-06T12:30:00Z");
    let w = schedule(&p).window_at(t).unwrap();
    assert!(w.end - w.start >= MERGE_HORIZON, "{w:?}");
    let listed = p.windows(t, t + Duration::days(1));
    assert_eq!(listed.len(), 1);
    assert!(listed[0].without_gap);
}

#[test]
fn until_grace_and_gates_use_the_wall_clock_end() {
    let p = policy(
        "[[freeze]]\nname = \"weekend\"\ncron = \"0 18 * * FRI\"\nend_cron = \"0 6 * * MON\"\n\
         timezone = \"Europe/Berlin\"\ngrace = \"1h\"\ngate = true\nreason = \"frozen until {until}\"\n",
    );
    let tags = BTreeMap::new();
    let now = utc("2027-03-28T12:00:00Z");
    let running = [
        facts("p", "before", "2027-03-26T16:30:00Z", &tags),
        facts("p", "during", "2027-03-27T09:00:00Z", &tags),
    ];
    let v = p.decide(now, &running, &[]);
    let Verdict::Stop(d) = &v[0] else {
        panic!("{v:?}")
    };
    assert_eq!(d.reason, "frozen until 2027-03-29T04:00:00Z");
    assert_eq!(
        d.window,
        Some(window("2027-03-26T17:00:00Z", "2027-03-29T04:00:00Z"))
    );
    assert!(
        d.explanation().contains("until 2027-03-29T04:00:00Z"),
        "{}",
        d.explanation()
    );
    // Grace counts from the window's start.
    let v = p.decide(utc("2027-03-26T17:30:00Z"), &running[..1], &[]);
    assert_eq!(
        v[0],
        Verdict::Grace {
            rule: "weekend".into(),
            until: utc("2027-03-26T18:00:00Z")
        }
    );
    let holds = p.gates(now, "p", &tags, &[]);
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].until, utc("2027-03-29T04:00:00Z"));
    assert_eq!(holds[0].reason, "frozen until 2027-03-29T04:00:00Z");
    // A decider made in the window is good until 06:00 local, not a second longer.
    let decider = p.decider(now);
    assert!(decider.covers(utc("2027-03-29T03:59:59Z")));
    assert!(!decider.covers(utc("2027-03-29T04:00:00Z")));
    // And the freeze counts as open exactly then.
    let open = |t: &str| p.windows(utc(t), utc(t) + Duration::seconds(1)).len();
    assert_eq!(
        (open("2027-03-29T03:59:59Z"), open("2027-03-29T04:00:00Z")),
        (1, 0)
    );
}

#[test]
fn duration_and_end_cron_are_exclusive_and_end_cron_needs_cron() {
    let cases: &[(&str, &str)] = &[
        (
            "cron = \"0 18 * * FRI\"\nduration = \"60h\"\nend_cron = \"0 6 * * MON\"",
            "freeze[0].end_cron: a freeze is either recurring (cron + duration or end_cron) or one-off (start + end); use duration or end_cron, not both",
        ),
        (
            "cron = \"0 18 * * FRI\"",
            "freeze[0].duration: a freeze is either recurring (cron + duration or end_cron) or one-off (start + end); cron needs duration or end_cron",
        ),
        (
            "start = \"2027-12-19T00:00:00\"\nend = \"2028-01-04T09:00:00\"\nend_cron = \"0 6 * * MON\"",
            "freeze[0].end_cron: a freeze is either recurring (cron + duration or end_cron) or one-off (start + end); end_cron needs cron: a one-off window ends at `end`",
        ),
        (
            "end_cron = \"0 6 * * MON\"",
            "freeze[0].end_cron: a freeze is either recurring (cron + duration or end_cron) or one-off (start + end); end_cron needs cron: a one-off window ends at `end`",
        ),
        (
            "cron = \"0 18 * * FRI\"\nend_cron = \"0 25 * * MON\"",
            "freeze[0].end_cron: hour field \"25\": 25 is out of range 0-23",
        ),
        (
            "cron = \"0 18 * * FRI\"\nend_cron = \"0 6 30 2 *\"",
            "freeze[0].end_cron: never fires",
        ),
    ];
    for (keys, want) in cases {
        let text = format!("[[freeze]]\nname = \"w\"\n{keys}\n");
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let e = Policy::compile(&spec).expect_err("refused");
        assert_eq!(e.len(), 1, "{keys}: {e:?}");
        let key = want.split(':').next().unwrap().strip_prefix("freeze[0].");
        assert_eq!(e[0].at.key, key, "{keys}");
        let got = e[0].to_string();
        assert!(got.starts_with(want), "{keys}\n got: {got}\nwant: {want}");
    }
    // A bad cron and a bad end_cron are both reported.
    let spec: PolicySpec = toml::from_str(
        "[[freeze]]\nname = \"w\"\ncron = \"0 18 * * FUN\"\nend_cron = \"0 6 * * MUN\"\n",
    )
    .unwrap();
    let e = Policy::compile(&spec).expect_err("refused");
    let keys: Vec<_> = e.iter().map(|e| e.at.to_string()).collect();
    assert_eq!(keys, ["freeze[0].cron", "freeze[0].end_cron"]);
}

#[test]
fn end_cron_at_the_ends_of_the_calendar_does_not_panic() {
    let tags = BTreeMap::new();
    let pairs = [
        ("0 18 * * FRI", "0 6 * * MON"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("1/4294967295 * * * *", "*/59 */23 */31 */12 */7"),
        ("0 * * * *", "0 * * * *"),
    ];
    for (start, end) in pairs {
        for zone in [
            "UTC",
            "Pacific/Kiritimati",
            "Pacific/Apia",
            "Australia/Lord_Howe",
        ] {
            let p = policy(&format!(
                "[[freeze]]\nname = \"f\"\ncron = \"{start}\"\nend_cron = \"{end}\"\n\
                 timezone = \"{zone}\"\ngrace = \"36525days\"\n"
            ));
            for t in [
                "0001-01-01T00:00:00Z",
                "2011-12-29T12:00:00Z",
                "9999-12-31T23:59:59Z",
            ] {
                let t = utc(t);
                let ex = [facts("p", "e", "0001-01-01T00:00:00Z", &tags)];
                let _ = p.windows(t, t + Duration::days(366));
                let _ = p.decider(t).decide(t, &ex, &[]);
                let _ = p.next_transition(t, &ex);
            }
        }
    }
}

/// An end cron for the differential: no month restriction, and day-of-month only together
/// with day-of-week (Vixie's union), so every window ends within the walk. Half the time it
/// shares the start's minutes and some of its hours, so ends fall on starts and instances touch.
fn end_gen(start: &CronGen) -> BoxedStrategy<CronGen> {
    let start = start.clone();
    (cron_gen(), any::<bool>())
        .prop_map(move |(mut end, share)| {
            end.months = None;
            if end.dow.is_none() {
                end.dom = None;
            }
            if share {
                end.minutes = start.minutes.clone();
                end.hours.extend(start.hours.iter().take(1));
                end.hours.sort_unstable();
                end.hours.dedup();
            }
            end
        })
        .boxed()
}

/// Merged windows `[start, first end fire after start)` from fire lists of a walk over
/// `[from, to]`, each with whether it is fully known: its first instance's predecessor is in
/// the walk (or an end fire precedes it there), and every instance's end was seen.
fn reference_windows(
    starts: &[DateTime<Utc>],
    ends: &[DateTime<Utc>],
    from: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, bool)> {
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>, bool)> = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        // An end not seen in the walk: in force to its end at least.
        let end = ends.iter().copied().find(|e| *e > s);
        let e = end.unwrap_or(DateTime::<Utc>::MAX_UTC);
        match out.last_mut() {
            Some(last) if s <= last.1 => {
                last.1 = last.1.max(e);
                last.2 &= end.is_some();
            }
            _ => {
                let head_known = i > 0 || ends.iter().any(|e| (from..s).contains(e));
                out.push((s, e, head_known && end.is_some()));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The window in force and the windows listed over the next three days are those of the
    /// minute walk: each start's window ends at the first minute after it at which the walk
    /// sees the end cron fire (a gap time at the first minute after the gap, a repeated time
    /// once, at its first occurrence).
    #[test]
    fn end_cron_windows_agree_with_minute_walk(
        (start, end) in cron_gen().prop_flat_map(|s| (Just(s.clone()), end_gen(&s))),
        zone in prop::sample::select(ZONES.to_vec()),
        second in any::<bool>(),
        offset_min in prop_oneof![-2_880i64..2_880, -180i64..180],
        offset_sec in 0i64..60,
    ) {
        let (zone, anchors) = zone;
        let tz: Tz = zone.parse().unwrap();
        let anchor = utc(anchors[usize::from(second)]);
        let t = anchor + Duration::minutes(offset_min) + Duration::seconds(offset_sec);
        let text = format!(
            "[[freeze]]\nname = \"f\"\ncron = \"{}\"\nend_cron = \"{}\"\ntimezone = \"{zone}\"\n",
            start.text(),
            end.text(),
        );
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let p = match Policy::compile(&spec) {
            Ok(p) => p,
            Err(e) => {
                prop_assert!(e.iter().all(|e| e.to_string().contains("never fires")), "{e:?}");
                return Ok(());
            }
        };
        // No instance lasts 8 days (ends come at least weekly): a window in force at t starts
        // after `from`, and the next three days' windows are known but for long merges.
        let from = t - Duration::days(9) - Duration::seconds(offset_sec);
        let to = t + Duration::days(6);
        let starts = reference_fires(&start, tz, from, to);
        let ends = reference_fires(&end, tz, from, to);
        let reference = reference_windows(&starts, &ends, from);
        let what = format!("{} .. {} in {zone} at {t}", start.text(), end.text());
        // In force at t.
        let s = schedule(&p);
        let want = reference.iter().find(|(ws, we, _)| *ws <= t && t < *we);
        if want.is_none_or(|w| w.2) {
            prop_assert_eq!(
                s.window_at(t).map(|w| (w.start, w.end)),
                want.map(|w| (w.0, w.1)),
                "in force: {}", what
            );
        }
        // Listed over three days.
        let (lo, hi) = (t, t + Duration::days(3));
        let listed: Vec<_> = reference.iter().filter(|(ws, we, _)| *ws < hi && lo < *we).collect();
        if listed.iter().all(|w| w.2) && reference.last().is_some_and(|w| w.0 >= hi) {
            let got: Vec<_> = s.windows_between(lo, hi).iter().map(|w| (w.start, w.end)).collect();
            let want: Vec<_> = listed.iter().map(|w| (w.0, w.1)).collect();
            prop_assert_eq!(got, want, "listed: {}", what);
        }
    }
}

/// The merged window at `t` the slow way: the latest start at or before `t`, then instances
/// one by one, back and forth, while each overlaps or touches the next, up to the horizon.
fn instance_by_instance(
    start: &stopd_rules::cron::CronExpr,
    end: &stopd_rules::cron::CronExpr,
    tz: Tz,
    t: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let s = start.prev_at_or_before(t, tz)?;
    let e = end.next_after(s, tz)?;
    if t >= e {
        return None;
    }
    let mut first = s;
    while s - first < MERGE_HORIZON {
        match start.prev_at_or_before(first - Duration::seconds(1), tz) {
            Some(p) if end.next_after(p, tz)? >= first => first = p,
            _ => break,
        }
    }
    let (mut last, mut until) = (s, e);
    while last - s < MERGE_HORIZON {
        match start.next_after(last, tz) {
            Some(n) if n <= until => {
                last = n;
                until = until.max(end.next_after(n, tz)?);
            }
            _ => break,
        }
    }
    Some((first, until))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The day-skipping search for the instants that end a merged window (an end that is not
    /// also a start) finds the window that following instances one by one finds, over merges
    /// of days and weeks, across DST changes.
    #[test]
    fn end_cron_merge_agrees_with_instance_by_instance(
        (start, end) in cron_gen().prop_flat_map(|s| (Just(s.clone()), end_gen(&s))),
        zone in prop::sample::select(ZONES.to_vec()),
        second in any::<bool>(),
        offset_s in prop_oneof![-172_800i64..172_800, -10_800i64..10_800],
    ) {
        let (zone, anchors) = zone;
        let text = format!(
            "[[freeze]]\nname = \"f\"\ncron = \"{}\"\nend_cron = \"{}\"\ntimezone = \"{zone}\"\n",
            start.text(),
            end.text(),
        );
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let Ok(p) = Policy::compile(&spec) else { return Ok(()) };
        let Schedule::Recurring { cron, tz, end_cron: Some(until), .. } = schedule(&p) else {
            unreachable!()
        };
        let t = utc(anchors[usize::from(second)]) + Duration::seconds(offset_s);
        // At t, and inside the next window after t.
        let next = schedule(&p).next_start_after(t).map(|w| w.start + (w.end - w.start) / 2);
        for t in std::iter::once(t).chain(next) {
            let fast = schedule(&p).window_at(t).map(|w| (w.start, w.end));
            // Far from the horizon, where the two stop looking at different instances.
            prop_assume!(fast.is_none_or(|(s, e)| e - s < Duration::days(60)));
            let slow = instance_by_instance(cron, until.cron(), *tz, t);
            prop_assert_eq!(fast, slow, "{} .. {} in {} at {}", start.text(), end.text(), zone, t);
        }
    }
}
