//! `ics` calendars: a differential over random calendars against a deliberately naive reference.
//!
//! The reference shares no code with the crate: it walks every local day from DTSTART for two
//! and a half years and asks whether the day matches the rule (its period by INTERVAL, BYMONTH,
//! BYMONTHDAY, BYDAY with ordinals counted by arithmetic on the day of the month or year,
//! BYSETPOS among the period's matching days), then takes COUNT/UNTIL, RDATE and EXDATE; a
//! wall time becomes an instant by scanning quarter-hour offsets (RFC 5545: in a gap, the offset
//! before it; repeated, the first). The crate's expansion generates each period's dates
//! directly. Zones with DST in both hemispheres, Lord Howe's half hour, floating, UTC, TZID and
//! all-day events; every disagreement over two years of windows fails.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;
use proptest::prelude::*;
use stopd_rules::Window;
use stopd_rules::window::ics::Calendar;

const ZONES: &[Tz] = &[
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Sydney,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::UTC,
];
const DAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

#[derive(Debug, Clone)]
enum Kind {
    AllDay,
    Floating,
    Utc,
    Tzid(Tz),
}

#[derive(Debug, Clone)]
struct Rule {
    freq: usize, // 0 daily, 1 weekly, 2 monthly, 3 yearly
    interval: u32,
    count: Option<u32>,
    until_days: Option<i64>,
    by_day: Vec<(i32, u32)>,
    by_month_day: Vec<i32>,
    by_month: Vec<u32>,
    by_set_pos: Vec<i32>,
}

#[derive(Debug, Clone)]
struct Ev {
    kind: Kind,
    start: NaiveDateTime,
    minutes: i64, // timed: exact length (DTEND); all-day: days * 1440 (DURATION P{n}D)
    rule: Option<Rule>,
    exdates: Vec<i64>,
    rdates: Vec<i64>,
}

fn rule_gen() -> impl Strategy<Value = Rule> {
    (
        0usize..4,
        1u32..4,
        prop::option::weighted(0.3, 1u32..25),
        prop::option::weighted(0.3, 10i64..500),
        prop::collection::vec((-2i32..=2, 0u32..7), 0..3),
        prop::collection::vec(prop_oneof![1i32..=31, -3i32..=-1], 0..2),
        prop::collection::vec(1u32..=12, 0..3),
        prop::collection::vec(prop_oneof![Just(1), Just(-1), Just(2)], 0..2),
    )
        .prop_map(
            |(freq, interval, count, until_days, by_day, md, by_month, sp)| {
                let ordinals = freq >= 2;
                Rule {
                    freq,
                    interval,
                    count: if until_days.is_some() { None } else { count },
                    until_days,
                    by_day: by_day
                        .into_iter()
                        .map(|(n, d)| (if ordinals { n } else { 0 }, d))
                        .collect(),
                    by_month_day: if freq == 1 { vec![] } else { md },
                    by_month,
                    by_set_pos: sp,
                }
            },
        )
}

fn ev_gen() -> impl Strategy<Value = Ev> {
    let kind = prop_oneof![
        Just(Kind::AllDay),
        Just(Kind::Floating),
        Just(Kind::Utc),
        prop::sample::select(ZONES).prop_map(Kind::Tzid),
    ];
    (
        kind,
        0i64..500,
        prop::sample::select(vec![0u32, 1, 2, 2, 2, 3, 9, 23]),
        prop::sample::select(vec![0u32, 15, 30, 45]),
        prop_oneof![15i64..600, 1440i64..4000],
        prop::option::weighted(0.8, rule_gen()),
        prop::collection::vec(0i64..60, 0..3),
        prop::collection::vec(0i64..400, 0..2),
    )
        .prop_map(|(kind, day, h, m, minutes, rule, exdates, rdates)| {
            let date = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap() + Duration::days(day);
            let all_day = matches!(kind, Kind::AllDay);
            Ev {
                start: date
                    .and_hms_opt(if all_day { 0 } else { h }, if all_day { 0 } else { m }, 0)
                    .unwrap(),
                minutes: if all_day {
                    (minutes / 1440).max(1) * 1440
                } else {
                    minutes
                },
                kind,
                rule,
                exdates,
                rdates,
            }
        })
}

// ---- rendering ----

fn fmt_stamp(kind: &Kind, w: NaiveDateTime, name: &str) -> String {
    match kind {
        Kind::AllDay => format!("{name};VALUE=DATE:{}", w.format("%Y%m%d")),
        Kind::Floating => format!("{name}:{}", w.format("%Y%m%dT%H%M%S")),
        Kind::Utc => format!("{name}:{}Z", w.format("%Y%m%dT%H%M%S")),
        Kind::Tzid(tz) => format!("{name};TZID={}:{}", tz.name(), w.format("%Y%m%dT%H%M%S")),
    }
}

fn until_of(e: &Ev, days: i64) -> NaiveDateTime {
    e.start + Duration::days(days)
}

fn render(events: &[Ev]) -> String {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n");
    for (i, e) in events.iter().enumerate() {
        s += &format!(
            "BEGIN:VEVENT\r\nUID:e{i}\r\n{}\r\n",
            fmt_stamp(&e.kind, e.start, "DTSTART")
        );
        if matches!(e.kind, Kind::AllDay) {
            s += &format!("DURATION:P{}D\r\n", e.minutes / 1440);
        } else {
            s += &format!(
                "{}\r\n",
                fmt_stamp(&e.kind, e.start + Duration::minutes(e.minutes), "DTEND")
            );
        }
        if let Some(r) = &e.rule {
            let mut parts = vec![
                format!("FREQ={}", ["DAILY", "WEEKLY", "MONTHLY", "YEARLY"][r.freq]),
                format!("INTERVAL={}", r.interval),
            ];
            if let Some(c) = r.count {
                parts.push(format!("COUNT={c}"));
            }
            if let Some(u) = r.until_days {
                parts.push(format!("UNTIL={}", until_of(e, u).format("%Y%m%d")));
            }
            let list = |v: Vec<String>| v.join(",");
            if !r.by_day.is_empty() {
                let d = r.by_day.iter().map(|(n, d)| {
                    if *n == 0 {
                        DAYS[*d as usize].to_string()
                    } else {
                        format!("{n}{}", DAYS[*d as usize])
                    }
                });
                parts.push(format!("BYDAY={}", list(d.collect())));
            }
            if !r.by_month_day.is_empty() {
                parts.push(format!(
                    "BYMONTHDAY={}",
                    list(r.by_month_day.iter().map(|x| x.to_string()).collect())
                ));
            }
            if !r.by_month.is_empty() {
                parts.push(format!(
                    "BYMONTH={}",
                    list(r.by_month.iter().map(|x| x.to_string()).collect())
                ));
            }
            if !r.by_set_pos.is_empty() {
                parts.push(format!(
                    "BYSETPOS={}",
                    list(r.by_set_pos.iter().map(|x| x.to_string()).collect())
                ));
            }
            s += &format!("RRULE:{}\r\n", parts.join(";"));
        }
        for d in &e.exdates {
            s += &format!(
                "{}\r\n",
                fmt_stamp(&e.kind, e.start + Duration::days(*d), "EXDATE")
            );
        }
        for d in &e.rdates {
            s += &format!(
                "{}\r\n",
                fmt_stamp(&e.kind, e.start + Duration::days(*d), "RDATE")
            );
        }
        s += "END:VEVENT\r\n";
    }
    s + "END:VCALENDAR\r\n"
}

// ---- the reference ----

/// Wall time to instant by scanning quarter-hour offsets.
fn to_utc(l: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let off = |u: NaiveDateTime| i64::from(tz.offset_from_utc_datetime(&u).fix().local_minus_utc());
    let first = (-60..=60)
        .rev()
        .map(|k| (k, l - Duration::minutes(15 * k)))
        .find(|(k, u)| off(*u) == 15 * 60 * k);
    if let Some((_, u)) = first {
        return u.and_utc();
    }
    // In a gap: the offset of the quarter hour before the wall clock first passes l.
    let mut u = l - Duration::hours(15);
    while u + Duration::seconds(off(u)) <= l {
        u += Duration::minutes(15);
    }
    (l - Duration::seconds(off(u - Duration::minutes(15)))).and_utc()
}

fn zone(e: &Ev, rule_tz: Tz) -> Tz {
    match e.kind {
        Kind::AllDay | Kind::Floating => rule_tz,
        Kind::Utc => chrono_tz::UTC,
        Kind::Tzid(tz) => tz,
    }
}

fn period_of(r: &Rule, s: NaiveDate, d: NaiveDate) -> Option<i64> {
    let n = match r.freq {
        0 => (d - s).num_days(),
        1 => {
            let ws =
                |x: NaiveDate| x - Duration::days(i64::from(x.weekday().num_days_from_monday()));
            (ws(d) - ws(s)).num_days() / 7
        }
        2 => i64::from(d.year() - s.year()) * 12 + i64::from(d.month()) - i64::from(s.month()),
        _ => i64::from(d.year() - s.year()),
    };
    (n >= 0 && n % i64::from(r.interval) == 0).then_some(n)
}

fn month_len(d: NaiveDate) -> i32 {
    (28..=31)
        .rev()
        .find(|n| NaiveDate::from_ymd_opt(d.year(), d.month(), *n as u32).is_some())
        .unwrap()
}

fn matches(r: &Rule, s: NaiveDate, d: NaiveDate) -> bool {
    if !r.by_month.is_empty() && !r.by_month.contains(&d.month()) {
        return false;
    }
    let len = month_len(d);
    let day = d.day() as i32;
    if !r.by_month_day.is_empty()
        && !r
            .by_month_day
            .iter()
            .any(|m| *m == day || len + 1 + *m == day)
    {
        return false;
    }
    let wd = d.weekday().num_days_from_monday();
    if !r.by_day.is_empty() {
        let year_len = if NaiveDate::from_ymd_opt(d.year(), 2, 29).is_some() {
            366
        } else {
            365
        };
        let in_month = r.freq == 2 || !r.by_month.is_empty();
        let (pos, total) = if in_month {
            (day, len)
        } else {
            (d.ordinal() as i32, year_len)
        };
        let ok = r.by_day.iter().any(|(n, w)| {
            *w == wd
                && match *n {
                    0 => true,
                    n if n > 0 => (pos - 1) / 7 + 1 == n,
                    n => (total - pos) / 7 + 1 == -n,
                }
        });
        if !ok {
            return false;
        }
    }
    match r.freq {
        1 if r.by_day.is_empty() => wd == s.weekday().num_days_from_monday(),
        2 if r.by_day.is_empty() && r.by_month_day.is_empty() => d.day() == s.day(),
        3 if r.by_day.is_empty() && r.by_month_day.is_empty() => {
            d.day() == s.day() && (!r.by_month.is_empty() || d.month() == s.month())
        }
        _ => true,
    }
}

fn reference(events: &[Ev], rule_tz: Tz, until: NaiveDate) -> Vec<Window> {
    let mut out = Vec::new();
    for e in events {
        let tz = zone(e, rule_tz);
        let mut walls = vec![e.start];
        if let Some(r) = &e.rule {
            let s = e.start.date();
            let mut by_period: Vec<(i64, Vec<NaiveDate>)> = Vec::new();
            let mut d = s - Duration::days(400);
            while d <= until {
                if let Some(n) = period_of(r, s, d).filter(|_| matches(r, s, d)) {
                    match by_period.last_mut() {
                        Some((p, days)) if *p == n => days.push(d),
                        _ => by_period.push((n, vec![d])),
                    }
                }
                d += Duration::days(1);
            }
            let mut all = Vec::new();
            for (_, days) in by_period {
                if r.by_set_pos.is_empty() {
                    all.extend(days);
                } else {
                    let len = days.len() as i32;
                    for (i, d) in days.iter().enumerate() {
                        let i = i as i32;
                        if r.by_set_pos.iter().any(|p| *p == i + 1 || *p == i - len) {
                            all.push(*d);
                        }
                    }
                }
            }
            for d in all {
                let w = d.and_time(e.start.time());
                if w <= e.start {
                    continue;
                }
                if r.until_days
                    .is_some_and(|u| w.date() > until_of(e, u).date())
                {
                    break;
                }
                if r.count.is_some_and(|c| walls.len() >= c as usize) {
                    break;
                }
                walls.push(w);
            }
        }
        walls.extend(e.rdates.iter().map(|d| e.start + Duration::days(*d)));
        for w in walls {
            if e.exdates.iter().any(|d| e.start + Duration::days(*d) == w) {
                continue;
            }
            let start = to_utc(w, tz);
            let end = if matches!(e.kind, Kind::AllDay) {
                to_utc(w + Duration::minutes(e.minutes), tz)
            } else {
                start + (to_utc(e.start + Duration::minutes(e.minutes), tz) - to_utc(e.start, tz))
            };
            if start < end {
                out.push(Window { start, end });
            }
        }
    }
    out.sort_by_key(|w| (w.start, w.end));
    let mut merged: Vec<Window> = Vec::new();
    for w in out {
        match merged.last_mut() {
            Some(l) if w.start <= l.end => l.end = l.end.max(w.end),
            _ => merged.push(w),
        }
    }
    merged
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Two years of windows (every window starting before 2028-06-01) agree with the reference.
    #[test]
    fn windows_agree_with_the_day_walk_reference(
        events in prop::collection::vec(ev_gen(), 1..4),
        tz in prop::sample::select(ZONES),
    ) {
        let text = render(&events);
        let cal = Calendar::parse("random.ics", &text, tz).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let cutoff = NaiveDate::from_ymd_opt(2028, 6, 1).unwrap();
        let cut = cutoff.and_time(NaiveTime::MIN).and_utc();
        // The reference walks a year past the cutoff (a YEARLY BYSETPOS needs the whole year);
        // clipped at the cutoff: an always-open chain goes on past what the reference walks.
        let clip = |w: Window| Window { start: w.start, end: w.end.min(cut) };
        let got: Vec<Window> = cal.windows.iter().copied().filter(|w| w.start < cut).map(clip).collect();
        let want: Vec<Window> = reference(&events, tz, cutoff + Duration::days(400))
            .into_iter().filter(|w| w.start < cut).map(clip).collect();
        prop_assert_eq!(got, want, "{}", text);
    }
}

/// `ics` is a window source of its own: with `cron`, `start` or `end` it is an error naming the
/// rule and the other key; a calendar the loader could not read is one naming `ics`.
#[test]
fn ics_is_exclusive_with_the_other_window_sources() {
    use stopd_rules::{Policy, PolicyErrorKind, PolicySpec};
    let cal = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20270101T000000Z\r\nDURATION:PT1H\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    for (key, extra) in [
        ("cron", "cron = \"0 9 * * *\"\nduration = \"1h\"\n"),
        ("start", "start = \"2027-01-01T00:00:00Z\"\n"),
        ("end", "end = \"2027-01-01T00:00:00Z\"\n"),
    ] {
        let mut spec: PolicySpec = toml::from_str(&format!(
            "[[freeze]]\nname = \"cal\"\nics = \"x.ics\"\n{extra}"
        ))
        .unwrap();
        spec.freeze[0].ics_text = Some(Ok(cal.to_string()));
        let errors = Policy::compile(&spec).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            format!(
                "freeze[0].{key}: ics is exclusive with cron, duration, end_cron, start and end; remove {key}"
            )
        );
    }
    let mut spec: PolicySpec =
        toml::from_str("[[freeze]]\nname = \"cal\"\nics = \"x.ics\"\n").unwrap();
    spec.freeze[0].ics_text = Some(Err("No such file or directory".into()));
    let errors = Policy::compile(&spec).unwrap_err();
    assert!(
        matches!(errors[0].kind, PolicyErrorKind::IcsUnreadable { .. }),
        "{errors:?}"
    );
    assert_eq!(errors[0].at.to_string(), "freeze[0].ics");
    spec.freeze[0].ics_text = Some(Ok(cal.to_string()));
    assert!(Policy::compile(&spec).is_ok());
}

/// An `[[allow]]` rule takes an `ics` source like a freeze: frozen outside the calendar's events.
#[test]
fn an_allow_rule_with_a_calendar_is_frozen_outside_its_events() {
    use stopd_rules::{Policy, PolicySpec, Trigger};
    let cal = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;TZID=Europe/Berlin:20270104T090000\r\n\
               DTEND;TZID=Europe/Berlin:20270104T170000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH\r\n\
               END:VEVENT\r\nEND:VCALENDAR\r\n";
    let mut spec: PolicySpec =
        toml::from_str("[[allow]]\nname = \"office\"\nics = \"office.ics\"\n").unwrap();
    spec.allow[0].ics_text = Some(Ok(cal.to_string()));
    let p = Policy::compile(&spec).unwrap();
    let Trigger::Freeze { schedule, .. } = &p.rules()[0].trigger else {
        unreachable!()
    };
    let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // Monday 10:00 CET: allowed, not frozen; Monday 18:00 to Tuesday 09:00: frozen.
    assert!(schedule.window_at(utc("2027-01-11T09:00:00Z")).is_none());
    let w = schedule.window_at(utc("2027-01-11T20:00:00Z")).unwrap();
    assert_eq!(
        (w.start, w.end),
        (utc("2027-01-11T16:00:00Z"), utc("2027-01-12T08:00:00Z"))
    );
    // Thursday 17:00 CET to Monday 09:00 CET: frozen over the weekend.
    let w = schedule.window_at(utc("2027-01-16T12:00:00Z")).unwrap();
    assert_eq!(
        (w.start, w.end),
        (utc("2027-01-14T16:00:00Z"), utc("2027-01-18T08:00:00Z"))
    );
}
