//! Property tests: for random policies and instants, decisions agree with a brute-force
//! reference that walks time minute by minute; window listings are sorted and merged.
//!
//! The reference shares no code with the crate: it matches cron fields from the generator's
//! own sets, and finds fire instants by walking UTC minutes and watching the local wall clock.
//! With `hwm` the highest wall time seen so far, the cron times in `(hwm, wall(m)]` fire at
//! minute `m`. That one rule gives all three cases: normally exactly `wall(m)`; after a gap, every
//! skipped wall time fires at the first minute after the gap; in a repeated hour `wall(m) <= hwm`
//! and nothing fires again.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use stopd_rules::{ExecutionFacts, Policy, PolicySpec, Verdict};

/// Zones, each with the instants of its 2026 DST changes (UTC has an ordinary day).
pub(crate) const ZONES: [(&str, [&str; 2]); 5] = [
    ("UTC", ["2026-06-15T12:00:00Z", "2026-12-31T23:00:00Z"]),
    (
        "America/New_York",
        ["2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"],
    ),
    (
        "Europe/Berlin",
        ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"],
    ),
    (
        "Australia/Sydney",
        ["2026-04-04T16:00:00Z", "2026-10-03T16:00:00Z"],
    ),
    (
        "Australia/Lord_Howe",
        ["2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z"],
    ),
];

#[derive(Debug, Clone)]
pub(crate) struct CronGen {
    pub(crate) minutes: Vec<u32>,
    pub(crate) hours: Vec<u32>,
    pub(crate) dom: Option<Vec<u32>>,
    pub(crate) months: Option<Vec<u32>>,
    pub(crate) dow: Option<Vec<u32>>,
    pub(crate) dow_names: bool,
    pub(crate) sunday_as_7: bool,
}

impl CronGen {
    pub(crate) fn text(&self) -> String {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let dow = match &self.dow {
            None => "*".to_string(),
            Some(v) => v
                .iter()
                .map(|d| {
                    if self.dow_names {
                        ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"][*d as usize].to_string()
                    } else if *d == 0 && self.sunday_as_7 {
                        "7".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        format!(
            "{} {} {} {} {}",
            list(&self.minutes),
            list(&self.hours),
            self.dom.as_deref().map_or("*".into(), list),
            self.months.as_deref().map_or("*".into(), list),
            dow
        )
    }

    /// Vixie semantics, from the generator's own sets.
    pub(crate) fn matches(&self, t: NaiveDateTime) -> bool {
        let in_set = |s: &Option<Vec<u32>>, v: u32| s.as_ref().is_none_or(|s| s.contains(&v));
        if !self.minutes.contains(&t.minute())
            || !self.hours.contains(&t.hour())
            || !in_set(&self.months, t.month())
        {
            return false;
        }
        let dom = in_set(&self.dom, t.day());
        let dow = in_set(&self.dow, t.weekday().num_days_from_sunday());
        if self.dom.is_some() && self.dow.is_some() {
            dom || dow
        } else {
            dom && dow
        }
    }
}

pub(crate) fn set(range: std::ops::Range<u32>, max_len: usize) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::btree_set(range, 1..=max_len).prop_map(|s| s.into_iter().collect())
}

pub(crate) fn cron_gen() -> impl Strategy<Value = CronGen> {
    (
        set(0..60, 3),
        // Hours 0-3 hold every 2026 DST change of the zones below.
        prop_oneof![
            set(0..24, 3),
            set(0..4, 2),
            Just((0..24).collect::<Vec<_>>())
        ],
        prop::option::weighted(0.2, set(1..32, 4)),
        prop::option::weighted(0.1, set(1..13, 6)),
        prop::option::weighted(0.4, set(0..7, 3)),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(minutes, hours, dom, months, dow, dow_names, sunday_as_7)| CronGen {
                minutes,
                hours,
                dom,
                months,
                dow,
                dow_names,
                sunday_as_7,
            },
        )
}

/// Fire instants (UTC minutes) in `[from, to]` by the wall-clock walk described above.
pub(crate) fn reference_fires(
    cron: &CronGen,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let wall = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    let mut hwm = wall(from - Duration::minutes(1));
    let mut fires = Vec::new();
    let mut m = from;
    while m <= to {
        let w = wall(m);
        if w > hwm {
            let mut c = hwm + Duration::minutes(1);
            while c <= w {
                if cron.matches(c) {
                    fires.push(m);
                    break;
                }
                c += Duration::minutes(1);
            }
            hwm = w;
        }
        m += Duration::minutes(1);
    }
    fires
}

/// The merged window containing `t`, from fires listed from well before `t`.
pub(crate) fn reference_window(
    fires: &[DateTime<Utc>],
    d: Duration,
    t: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut current: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for &s in fires {
        current = match current {
            Some((start, end)) if s <= end => Some((start, end.max(s + d))),
            Some((start, end)) if start <= t && t < end => return Some((start, end)),
            _ => Some((s, s + d)),
        };
    }
    current.filter(|(s, e)| *s <= t && t < *e)
}

/// A zone and one of its DST changes.
/// No grace is written as no `grace` key: a span is never zero.
fn grace_line(minutes: i64) -> String {
    if minutes == 0 {
        String::new()
    } else {
        format!("grace = \"{minutes}m\"\n")
    }
}

pub(crate) fn zone_and_anchor() -> impl Strategy<Value = (&'static str, &'static str)> {
    (prop::sample::select(ZONES.to_vec()), any::<bool>())
        .prop_map(|((zone, anchors), second)| (zone, anchors[usize::from(second)]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decision_agrees_with_minute_walk(
        cron in cron_gen(),
        (zone, anchor) in zone_and_anchor(),
        // Half the cases within three hours of a DST change, where the edges are.
        offset_min in prop_oneof![-2_880i64..2_880, -180i64..180],
        offset_sec in 0i64..60,
        duration_min in prop_oneof![1i64..2_000, 1i64..120],
        grace_min in prop_oneof![Just(0i64), 1i64..120],
        started_before_min in 0i64..3_000,
    ) {
        let tz: Tz = zone.parse().unwrap();
        let t = DateTime::parse_from_rfc3339(anchor).unwrap().with_timezone(&Utc)
            + Duration::minutes(offset_min) + Duration::seconds(offset_sec);
        let d = Duration::minutes(duration_min);
        let text = format!(
            "[[freeze]]\nname = \"f\"\ncron = \"{}\"\nduration = \"{duration_min}m\"\ntimezone = \"{zone}\"\n{}",
            cron.text(),
            grace_line(grace_min),
        );
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let policy = match Policy::compile(&spec) {
            Ok(p) => p,
            Err(e) => {
                // Only "never fires" may be refused (e.g. 31 February).
                prop_assert!(e.iter().all(|e| e.to_string().contains("never fires")), "{e:?}");
                return Ok(());
            }
        };
        // Walk from far enough back that a chain of merged windows is seen from its start.
        let walk_from = t - d - Duration::days(4);
        let fires = reference_fires(&cron, tz, walk_from - Duration::seconds(t.second() as i64), t);
        let expected = reference_window(&fires, d, t);
        if let Some((start, _)) = expected {
            // A chain reaching back to the walk's beginning is not fully known: skip.
            prop_assume!(start > walk_from + d);
        }
        let got = policy.rules()[0].clone();
        let stopd_rules::Trigger::Freeze { schedule, .. } = &got.trigger else { unreachable!() };
        let window = schedule.window_at(t).map(|w| (w.start, w.end));
        match (window, expected) {
            (Some((gs, ge)), Some((es, ee))) => {
                prop_assert_eq!(gs, es, "start; cron {} in {} at {}", cron.text(), zone, t);
                // The reference end only knows fires up to t; the crate's may extend further.
                prop_assert!(ge >= ee, "end; cron {} in {} at {}", cron.text(), zone, t);
            }
            (g, e) => prop_assert_eq!(g.is_some(), e.is_some(), "membership; cron {} in {} at {}: got {:?} want {:?}", cron.text(), zone, t, g, e),
        }
        // The decision for one execution, with grace.
        let tags = BTreeMap::new();
        let start = t - Duration::minutes(started_before_min);
        let ex = [ExecutionFacts { pipeline: "p", execution_id: "e", start: Some(start), rollback: false, tags: &tags }];
        let verdict = &policy.decide(t, &ex, &[])[0];
        let want_stop = expected.is_some_and(|(ws, _)| start >= ws || t >= ws + Duration::minutes(grace_min));
        prop_assert_eq!(matches!(verdict, Verdict::Stop(_)), want_stop, "{:?}", verdict);
    }

    /// A decider made at t0 answers at any later t exactly as a fresh decision at t would:
    /// inside its span from the state it holds, past the next edge by deciding afresh.
    #[test]
    fn a_decider_made_earlier_decides_as_a_fresh_decision(
        cron in cron_gen(),
        (zone, anchor) in zone_and_anchor(),
        offset_min in prop_oneof![-2_880i64..2_880, -180i64..180],
        later_sec in prop_oneof![0i64..600, 0i64..259_200],
        duration_min in prop_oneof![1i64..2_000, 1i64..120],
        grace_min in prop_oneof![Just(0i64), 1i64..120],
        started_before_min in 0i64..3_000,
    ) {
        let text = format!(
            "[[freeze]]\nname = \"f\"\ncron = \"{}\"\nduration = \"{duration_min}m\"\ntimezone = \"{zone}\"\n{}\n\
             [[timeout]]\nname = \"t\"\nmax_duration = \"20h\"\n",
            cron.text(),
            grace_line(grace_min),
        );
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let Ok(policy) = Policy::compile(&spec) else { return Ok(()) };
        let t0 = DateTime::parse_from_rfc3339(anchor).unwrap().with_timezone(&Utc)
            + Duration::minutes(offset_min);
        let t = t0 + Duration::seconds(later_sec);
        // A freeze that never lifts is merged only as far as the horizon, from whichever
        // instance was asked: its window texts differ by instant. Not what this compares.
        let schedule = match &policy.rules()[0].trigger { stopd_rules::Trigger::Freeze { schedule, .. } => schedule, _ => unreachable!() };
        for at in [t0, t] {
            if let Some(w) = schedule.window_at(at) {
                prop_assume!(w.end - w.start < stopd_rules::window::MERGE_HORIZON);
            }
        }
        let tags = BTreeMap::new();
        let ex = [ExecutionFacts { pipeline: "p", execution_id: "e", start: Some(t0 - Duration::minutes(started_before_min)), rollback: false, tags: &tags }];
        let decider = policy.decider(t0);
        prop_assert_eq!(decider.decide(t, &ex, &[]), policy.decide(t, &ex, &[]), "t0 {} t {} covered {}", t0, t, decider.covers(t));
        // Covered means no window edge in between.
        if decider.covers(t) {
            prop_assert_eq!(schedule.window_at(t0), schedule.window_at(t));
        }
    }

    #[test]
    fn window_listing_is_sorted_merged_and_half_open(
        cron in cron_gen(),
        (zone, anchor) in zone_and_anchor(),
        duration_min in 1i64..3_000,
        span_days in 1i64..10,
    ) {
        let text = format!(
            "[[freeze]]\nname = \"f\"\ncron = \"{}\"\nduration = \"{duration_min}m\"\ntimezone = \"{zone}\"\n",
            cron.text()
        );
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let Ok(policy) = Policy::compile(&spec) else { return Ok(()) };
        let from = DateTime::parse_from_rfc3339(anchor).unwrap().with_timezone(&Utc) - Duration::days(2);
        let to = from + Duration::days(span_days);
        let windows = policy.windows(from, to);
        for w in &windows {
            prop_assert!(w.window.start < w.window.end);
            prop_assert!(w.window.start < to && from < w.window.end, "{:?} outside [{}, {})", w, from, to);
        }
        for pair in windows.windows(2) {
            // Sorted, and merged: a gap separates consecutive windows of one rule.
            prop_assert!(pair[0].window.end < pair[1].window.start, "{:?}", pair);
        }
        // Every instant inside a listed window is in force, every instant between is not.
        let schedule = match &policy.rules()[0].trigger { stopd_rules::Trigger::Freeze { schedule, .. } => schedule, _ => unreachable!() };
        for w in windows.iter().filter(|w| w.window.end - w.window.start < stopd_rules::window::MERGE_HORIZON) {
            let inside = w.window.start.max(from);
            prop_assert!(schedule.window_at(inside).is_some(), "{:?} at {}", w, inside);
            prop_assert!(schedule.window_at(w.window.end).is_none(), "half-open: {:?}", w);
        }
    }
}

/// The merged window at `t` the slow way: from the start at or before `t`, follow starts one
/// by one, back and forth, while each overlaps or touches the last, up to the merge horizon
/// (what the crate did before it jumped over days).
fn start_by_start_window(
    cron: &stopd_rules::cron::CronExpr,
    d: Duration,
    tz: Tz,
    t: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let horizon = stopd_rules::window::MERGE_HORIZON;
    let s = cron.prev_at_or_before(t, tz)?;
    if t >= s + d {
        return None;
    }
    let mut start = s;
    while s - start < horizon {
        match cron.prev_at_or_before(start - Duration::seconds(1), tz) {
            Some(p) if p + d >= start => start = p,
            _ => break,
        }
    }
    let mut last = s;
    while last - s < horizon {
        match cron.next_after(last, tz) {
            Some(n) if n <= last + d => last = n,
            _ => break,
        }
    }
    Some((start, last + d))
}

/// A cron with a seconds field: `None` keeps 5 fields.
fn seconds_gen() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.3,
        prop_oneof![
            set(0..60, 3).prop_map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
            Just("*".to_string()),
            Just("*/20".to_string()),
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The day-jumping merge (and its shortcut for rules that never leave a gap) finds the same
    /// window as following starts one by one, across DST changes, for durations shorter and
    /// longer than the gaps between starts.
    #[test]
    fn fast_window_agrees_with_a_start_by_start_merge(
        cron in cron_gen(),
        seconds in seconds_gen(),
        (zone, anchor) in zone_and_anchor(),
        duration_s in prop_oneof![1i64..7_200, 1i64..200_000, Just(3_600), Just(86_400), Just(90_000)],
        offset_s in prop_oneof![-172_800i64..172_800, -10_800i64..10_800],
    ) {
        // Dense seconds with every hour would make the slow reference walk a year of seconds.
        let hours_ok = seconds.as_deref().is_none_or(|s| s.len() < 9 || cron.hours.len() <= 2);
        prop_assume!(hours_ok);
        let text = match &seconds {
            Some(sec) => format!("{sec} {}", cron.text()),
            None => cron.text(),
        };
        let toml = format!(
            "[[freeze]]\nname = \"f\"\ncron = \"{text}\"\nduration = \"{duration_s}s\"\ntimezone = \"{zone}\"\n"
        );
        let spec: PolicySpec = toml::from_str(&toml).unwrap();
        let Ok(policy) = Policy::compile(&spec) else { return Ok(()) };
        let schedule = match &policy.rules()[0].trigger { stopd_rules::Trigger::Freeze { schedule, .. } => schedule, _ => unreachable!() };
        let stopd_rules::Schedule::Recurring { cron: expr, duration, tz, .. } = schedule else { unreachable!() };
        let t = DateTime::parse_from_rfc3339(anchor).unwrap().with_timezone(&Utc) + Duration::seconds(offset_s);
        let fast = schedule.window_at(t).map(|w| (w.start, w.end));
        let slow = start_by_start_window(expr, *duration, *tz, t);
        prop_assert_eq!(fast, slow, "{} for {}s in {} at {}", text, duration_s, zone, t);
    }
}

#[test]
fn reference_walk_sees_a_gap_and_a_repeat() {
    // Guards the reference itself: 02:30 on the New York spring-forward day fires at 07:00Z,
    // 01:30 on the fall-back day fires once, at 05:30Z.
    let c = |h: u32, m: u32| CronGen {
        minutes: vec![m],
        hours: vec![h],
        dom: None,
        months: None,
        dow: None,
        dow_names: false,
        sunday_as_7: false,
    };
    let tz: Tz = "America/New_York".parse().unwrap();
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let f = reference_fires(
        &c(2, 30),
        tz,
        at("2026-03-08T00:00:00Z"),
        at("2026-03-08T12:00:00Z"),
    );
    assert_eq!(f, vec![at("2026-03-08T07:00:00Z")]);
    let f = reference_fires(
        &c(1, 30),
        tz,
        at("2026-11-01T00:00:00Z"),
        at("2026-11-01T12:00:00Z"),
    );
    assert_eq!(f, vec![at("2026-11-01T05:30:00Z")]);
}
