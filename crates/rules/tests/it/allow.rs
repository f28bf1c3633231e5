//! `[[allow]]` windows (Argo CD's semantics): a pipeline that any allow rule selects is frozen
//! whenever none of the windows of the allow rules that select it is open; freezes beat allows.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use stopd_rules::{
    Mode, Policy, PolicySpec, RuleKind, RuleRef, Table, Trigger, Verdict, Window, rfc3339,
};

use crate::common::{facts, policy, utc};
use crate::properties::{cron_gen, reference_fires, reference_window, zone_and_anchor};

/// Office hours in Berlin, Monday to Friday 09:00 to 17:00 (CET in December: 08:00Z-16:00Z).
const OFFICE: &str = r#"
[[allow]]
name = "office-hours"
cron = "0 9 * * MON-FRI"
duration = "8h"
timezone = "Europe/Berlin"
pipelines = ["prod-*"]
"#;

fn stop(v: &Verdict) -> &stopd_rules::Decision {
    match v {
        Verdict::Stop(d) => d,
        other => panic!("expected a stop, got {other:?}"),
    }
}

/// The verdict for one execution of `pipeline` started at `start`, decided at `at`.
fn verdict(p: &Policy, pipeline: &str, start: &str, at: &str) -> Verdict {
    let none = BTreeMap::new();
    p.decide(utc(at), &[facts(pipeline, "e1", start, &none)], &[])
        .remove(0)
}

#[test]
fn outside_the_allow_window_stops_and_inside_does_not() {
    let p = policy(OFFICE);
    // Tuesday 2026-12-08 13:00 CET: the window is open.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-08T11:00:00Z",
        "2026-12-08T12:00:00Z",
    );
    assert_eq!(v, Verdict::Allow);
    // Its last instant is open; 17:00 CET is closed.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-08T11:00:00Z",
        "2026-12-08T15:59:59Z",
    );
    assert_eq!(v, Verdict::Allow);
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-08T16:00:00Z",
        "2026-12-08T16:00:00Z",
    );
    let d = stop(&v);
    assert_eq!(d.rule, "office-hours");
    // The audit log knows freezes, timeouts and manual stops: an allow rule's stop is a freeze.
    assert_eq!(d.kind, RuleKind::Freeze);
    assert_eq!(d.mode, Mode::Finish);
    // {until}: when an allow window of the pipeline opens next (Wednesday 09:00 CET).
    assert_eq!(d.reason, "outside office-hours until 2026-12-09T08:00:00Z");
    assert_eq!(
        d.window,
        Some(Window {
            start: utc("2026-12-08T16:00:00Z"),
            end: utc("2026-12-09T08:00:00Z"),
        })
    );
    assert!(
        d.explanation()
            .starts_with("outside allow 'office-hours' since 2026-12-08T16:00:00Z (Tue 17:00 CET)"),
        "{}",
        d.explanation()
    );
    // The weekend: frozen from Friday 17:00 to Monday 09:00.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-12T10:00:00Z",
        "2026-12-12T10:00:00Z",
    );
    assert_eq!(
        stop(&v).reason,
        "outside office-hours until 2026-12-14T08:00:00Z"
    );
}

#[test]
fn a_pipeline_no_allow_rule_selects_is_never_frozen_by_one() {
    let p = policy(OFFICE);
    for at in [
        "2026-12-08T03:00:00Z",
        "2026-12-12T10:00:00Z",
        "2026-12-08T12:00:00Z",
    ] {
        assert_eq!(verdict(&p, "dev-web", at, at), Verdict::Allow, "{at}");
    }
}

#[test]
fn a_freeze_beats_an_allow_window_and_timeouts_stay_independent() {
    let p = policy(&format!(
        "{OFFICE}\n[[freeze]]\nname = \"release\"\nstart = \"2026-12-08T00:00:00Z\"\n\
         end = \"2026-12-09T00:00:00Z\"\n\n[[timeout]]\nname = \"two-hours\"\nmax_duration = \"2h\"\n"
    ));
    // Inside office hours, inside the freeze: the freeze stops it.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-08T11:00:00Z",
        "2026-12-08T12:00:00Z",
    );
    assert_eq!(stop(&v).rule, "release");
    // Inside office hours, after the freeze, running too long: the timeout stops it.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-09T08:00:00Z",
        "2026-12-09T10:00:01Z",
    );
    assert_eq!(stop(&v).rule, "two-hours");
    // Inside office hours, nothing else applies.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-09T09:00:00Z",
        "2026-12-09T10:00:00Z",
    );
    assert_eq!(v, Verdict::Allow);
}

/// Abandon wins over finish, then file order: an allow rule sits in the file's order among all
/// rules (without a loader's order: freezes, then allow rules, then timeouts).
#[test]
fn ties_between_a_freeze_and_an_allow_rule() {
    let freeze = |mode: &str| {
        format!(
            "[[freeze]]\nname = \"nights\"\ncron = \"0 0 * * *\"\nduration = \"24h\"\nmode = \"{mode}\"\n"
        )
    };
    let allow = |mode: &str| format!("{OFFICE}mode = \"{mode}\"\n");
    let at = "2026-12-08T20:00:00Z";
    let winner = |text: &str, order: &[RuleRef]| {
        let mut spec: PolicySpec = toml::from_str(text).unwrap();
        spec.file_order = order.to_vec();
        let p = Policy::compile(&spec).unwrap();
        let v = verdict(&p, "prod-web", at, at);
        let d = stop(&v);
        (d.rule.clone(), d.mode)
    };
    // A freeze in finish, an allow rule in abandon: abandon wins.
    let text = format!("{}\n{}", freeze("finish"), allow("abandon"));
    assert_eq!(
        winner(&text, &[]),
        ("office-hours".to_string(), Mode::Abandon)
    );
    let text = format!("{}\n{}", freeze("abandon"), allow("finish"));
    assert_eq!(winner(&text, &[]), ("nights".to_string(), Mode::Abandon));
    // Both finish: the first in the file.
    let text = format!("{}\n{}", freeze("finish"), allow("finish"));
    let (f, a) = (
        RuleRef {
            table: Table::Freeze,
            index: 0,
        },
        RuleRef {
            table: Table::Allow,
            index: 0,
        },
    );
    assert_eq!(winner(&text, &[]).0, "nights");
    assert_eq!(winner(&text, &[f, a]).0, "nights");
    assert_eq!(winner(&text, &[a, f]).0, "office-hours");
}

/// Argo CD: with several allow rules over a pipeline, it may change while any of them is open.
#[test]
fn several_allow_rules_over_one_pipeline_allow_while_any_is_open() {
    let p = policy(
        r#"
[defaults]
timezone = "Europe/Berlin"

[[allow]]
name = "mornings"
cron = "0 9 * * *"
duration = "3h"
pipelines = ["prod-*"]

[[allow]]
name = "afternoons"
cron = "0 13 * * *"
duration = "4h"
pipelines = ["prod-web"]
mode = "abandon"
"#,
    );
    // 14:00 CET: the afternoons are open for prod-web only.
    let at = "2026-12-08T13:00:00Z";
    assert_eq!(verdict(&p, "prod-web", at, at), Verdict::Allow);
    let v = verdict(&p, "prod-api", at, at);
    assert_eq!(stop(&v).rule, "mornings");
    assert_eq!(
        stop(&v).reason,
        "outside mornings until 2026-12-09T08:00:00Z"
    );
    // 12:30 CET: both are closed; abandon wins; the freeze lasts until the afternoon opens.
    let at = "2026-12-08T11:30:00Z";
    let v = verdict(&p, "prod-web", at, at);
    let d = stop(&v);
    assert_eq!((d.rule.as_str(), d.mode), ("afternoons", Mode::Abandon));
    assert_eq!(d.reason, "outside afternoons until 2026-12-08T12:00:00Z");
    assert_eq!(
        d.window,
        Some(Window {
            start: utc("2026-12-08T11:00:00Z"),
            end: utc("2026-12-08T12:00:00Z"),
        })
    );
    // 10:00 CET: the mornings are open for both.
    let at = "2026-12-08T09:00:00Z";
    assert_eq!(verdict(&p, "prod-web", at, at), Verdict::Allow);
    assert_eq!(verdict(&p, "prod-api", at, at), Verdict::Allow);
    // A decider agrees, and its state lasts until the next edge of any rule.
    let none = BTreeMap::new();
    let ex = [facts("prod-web", "e", "2026-12-08T11:20:00Z", &none)];
    let d = p.decider(utc("2026-12-08T11:10:00Z"));
    assert!(!d.covers(utc("2026-12-08T12:00:00Z")));
    assert_eq!(
        d.decide(utc("2026-12-08T11:30:00Z"), &ex, &[]),
        p.decide(utc("2026-12-08T11:30:00Z"), &ex, &[])
    );
}

#[test]
fn grace_counts_from_when_the_allow_window_closed() {
    let p = policy(&format!("{OFFICE}grace = \"10m\"\n"));
    // Started inside office hours, still running at 17:05 CET.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-08T15:55:00Z",
        "2026-12-08T16:05:00Z",
    );
    assert_eq!(
        v,
        Verdict::Grace {
            rule: "office-hours".into(),
            until: utc("2026-12-08T16:10:00Z")
        }
    );
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-08T15:55:00Z",
        "2026-12-08T16:10:00Z",
    );
    assert_eq!(stop(&v).rule, "office-hours");
    // Started while frozen: no grace.
    let v = verdict(
        &p,
        "prod-web",
        "2026-12-08T16:01:00Z",
        "2026-12-08T16:05:00Z",
    );
    assert_eq!(stop(&v).rule, "office-hours");
}

#[test]
fn a_gating_allow_rule_holds_transitions_while_closed() {
    let p = policy(&format!("{OFFICE}gate = true\n"));
    let none = BTreeMap::new();
    let holds = p.gates(utc("2026-12-08T20:00:00Z"), "prod-web", &none, &[]);
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].rule, "office-hours");
    assert_eq!(holds[0].until, utc("2026-12-09T08:00:00Z"));
    assert_eq!(
        holds[0].reason,
        "outside office-hours until 2026-12-09T08:00:00Z"
    );
    assert!(
        p.gates(utc("2026-12-08T12:00:00Z"), "prod-web", &none, &[])
            .is_empty()
    );
    assert!(
        p.gates(utc("2026-12-08T20:00:00Z"), "dev-web", &none, &[])
            .is_empty()
    );
}

#[test]
fn windows_list_the_time_outside_and_edges_include_allow_edges() {
    let p = policy(OFFICE);
    let listed: Vec<(String, String, String)> = p
        .windows(utc("2026-12-07T00:00:00Z"), utc("2026-12-14T00:00:00Z"))
        .into_iter()
        .map(|w| (w.rule, rfc3339(w.window.start), rfc3339(w.window.end)))
        .collect();
    let want = [
        ("2026-12-04T16:00:00Z", "2026-12-07T08:00:00Z"),
        ("2026-12-07T16:00:00Z", "2026-12-08T08:00:00Z"),
        ("2026-12-08T16:00:00Z", "2026-12-09T08:00:00Z"),
        ("2026-12-09T16:00:00Z", "2026-12-10T08:00:00Z"),
        ("2026-12-10T16:00:00Z", "2026-12-11T08:00:00Z"),
        ("2026-12-11T16:00:00Z", "2026-12-14T08:00:00Z"),
    ]
    .map(|(s, e)| ("office-hours".to_string(), s.to_string(), e.to_string()));
    assert_eq!(listed, want);
    // The scheduler wakes at both edges of the allow window.
    let next = |t: &str| p.next_transition(utc(t), &[]).map(rfc3339);
    assert_eq!(
        next("2026-12-08T12:00:00Z").as_deref(),
        Some("2026-12-08T16:00:00Z")
    );
    assert_eq!(
        next("2026-12-08T16:00:00Z").as_deref(),
        Some("2026-12-09T08:00:00Z")
    );
    assert_eq!(
        next("2026-12-11T16:00:00Z").as_deref(),
        Some("2026-12-14T08:00:00Z")
    );
    assert_eq!(p.open_freezes(utc("2026-12-08T20:00:00Z")), 1);
    assert_eq!(p.open_freezes(utc("2026-12-08T12:00:00Z")), 0);
}

/// A one-off allow window: frozen before and after it, without end.
#[test]
fn a_one_off_allow_window_freezes_before_and_after() {
    let p = policy(
        "[[allow]]\nname = \"change-window\"\nstart = \"2026-12-08T20:00:00Z\"\n\
         end = \"2026-12-08T22:00:00Z\"\n",
    );
    let at = "2026-12-08T19:00:00Z";
    let v = verdict(&p, "any", at, at);
    assert_eq!(
        stop(&v).reason,
        "outside change-window until 2026-12-08T20:00:00Z"
    );
    assert_eq!(
        verdict(&p, "any", "2026-12-08T21:00:00Z", "2026-12-08T21:00:00Z"),
        Verdict::Allow
    );
    let v = verdict(&p, "any", "2026-12-08T22:00:00Z", "2026-12-08T22:00:00Z");
    assert_eq!(stop(&v).rule, "change-window");
    let listed = p.windows(utc("2026-12-08T00:00:00Z"), utc("2026-12-10T00:00:00Z"));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].window.end, utc("2026-12-08T20:00:00Z"));
    assert_eq!(listed[1].window.start, utc("2026-12-08T22:00:00Z"));
    // Without end: shown as reaching past the merge horizon.
    assert!(listed[1].without_gap);
}

/// Office hours every day, on the day the clocks change: the allow windows follow the wall
/// clock, so the frozen night is an hour shorter or longer in UTC.
#[test]
fn office_hours_on_the_dst_change_day() {
    for (zone, day_before, day, night, opens) in [
        // Berlin springs forward on Sunday 2027-03-28: 09:00 CET = 08:00Z, 09:00 CEST = 07:00Z.
        (
            "Europe/Berlin",
            "2027-03-27T08:00:00Z",
            "2027-03-28T07:00:00Z",
            "2027-03-27T16:00:00Z",
            "2027-03-28T07:00:00Z",
        ),
        // Sydney falls back on Sunday 2027-04-04: 09:00 AEDT = 22:00Z, 09:00 AEST = 23:00Z.
        (
            "Australia/Sydney",
            "2027-04-02T22:00:00Z",
            "2027-04-03T23:00:00Z",
            "2027-04-03T06:00:00Z",
            "2027-04-03T23:00:00Z",
        ),
    ] {
        let p = policy(&format!(
            "[[allow]]\nname = \"office-hours\"\ncron = \"0 9 * * *\"\nend_cron = \"0 17 * * *\"\n\
             timezone = \"{zone}\"\n"
        ));
        let frozen_at = |t: DateTime<Utc>| {
            let v = verdict(&p, "prod", &rfc3339(t), &rfc3339(t));
            matches!(v, Verdict::Stop(_))
        };
        let (day_before, day, night, opens) = (utc(day_before), utc(day), utc(night), utc(opens));
        assert!(!frozen_at(day_before), "{zone}: open on the day before");
        assert!(
            frozen_at(day - Duration::seconds(1)),
            "{zone}: closed before 09:00"
        );
        assert!(!frozen_at(day), "{zone}: open at 09:00 local");
        let listed = p.windows(night, night + Duration::seconds(1));
        assert_eq!(
            (listed[0].window.start, listed[0].window.end),
            (night, opens),
            "{zone}"
        );
        let v = verdict(&p, "prod", &rfc3339(night), &rfc3339(night));
        assert_eq!(
            stop(&v).reason,
            format!("outside office-hours until {}", rfc3339(opens))
        );
    }
}

#[test]
fn reasons_follow_the_rule_then_defaults_then_the_allow_default() {
    let at = "2026-12-08T20:00:00Z";
    let p = policy(&format!(
        "[defaults]\nreason = \"no changes: {{rule}}\"\n{OFFICE}"
    ));
    assert_eq!(
        stop(&verdict(&p, "prod-web", at, at)).reason,
        "no changes: office-hours"
    );
    let p = policy(&format!(
        "{OFFICE}reason = \"{{kind}} {{rule}} until {{until}}\"\n"
    ));
    assert_eq!(
        stop(&verdict(&p, "prod-web", at, at)).reason,
        "freeze office-hours until 2026-12-09T08:00:00Z"
    );
}

#[test]
fn allow_rules_are_validated_like_freezes() {
    let errors = |text: &str| {
        let spec: PolicySpec = toml::from_str(text).unwrap();
        let e = Policy::compile(&spec).unwrap_err();
        e.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let e = errors(
        "[[freeze]]\nname = \"x\"\nstart = \"2026-12-08T20:00:00Z\"\nend = \"2026-12-08T22:00:00Z\"\n\
         [[allow]]\nname = \"x\"\nstart = \"2026-12-08T20:00:00Z\"\nend = \"2026-12-08T22:00:00Z\"\n",
    );
    assert_eq!(
        e,
        ["allow[0].name: name \"x\" is already used by freeze[0]"]
    );
    let e = errors("[[allow]]\nname = \"a\"\npipelines = [\"prod-*\"]\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("allow[0]: an allow rule is either recurring"),
        "{e:?}"
    );
    let e = errors("[[allow]]\nname = \"a\"\ncron = \"0 9 * * MON-FRI\"\n");
    assert!(
        e[0].starts_with("allow[0].duration: an allow rule"),
        "{e:?}"
    );
    let e = errors(
        "[[allow]]\nname = \"a\"\ncron = \"0 9 * * MON-FRI\"\nduration = \"8h\"\ntimezone = \"Berlin\"\n",
    );
    assert!(
        e[0].starts_with("allow[0].timezone: unknown time zone"),
        "{e:?}"
    );
    // The keys of a freeze, no others.
    let bad: Result<PolicySpec, _> =
        toml::from_str("[[allow]]\nname = \"a\"\nmax_duration = \"2h\"\n");
    assert!(bad.is_err());
    // An allow rule is a freeze outside its windows.
    let p = policy(OFFICE);
    let rule = &p.rules()[0];
    assert!(rule.is_allow() && p.has_allow_rules());
    assert!(matches!(rule.trigger, Trigger::Freeze { .. }));
    assert!(!policy("[[timeout]]\nname = \"t\"\nmax_duration = \"2h\"\n").has_allow_rules());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Frozen by an allow rule exactly when no allow window is open, against the minute walk of
    /// the cron differential; the frozen interval's edges are the reference's window edges.
    #[test]
    fn frozen_by_allow_agrees_with_a_minute_walk(
        cron in cron_gen(),
        (zone, anchor) in zone_and_anchor(),
        offset_min in prop_oneof![-2_880i64..2_880, -180i64..180],
        offset_sec in 0i64..60,
        duration_min in prop_oneof![1i64..2_000, 1i64..120],
    ) {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        let t = DateTime::parse_from_rfc3339(anchor).unwrap().with_timezone(&Utc)
            + Duration::minutes(offset_min) + Duration::seconds(offset_sec);
        let d = Duration::minutes(duration_min);
        let text = format!(
            "[[allow]]\nname = \"a\"\ncron = \"{}\"\nduration = \"{duration_min}m\"\ntimezone = \"{zone}\"\n",
            cron.text(),
        );
        let spec: PolicySpec = toml::from_str(&text).unwrap();
        let Ok(policy) = Policy::compile(&spec) else { return Ok(()) };
        let walk_from = t - d - Duration::days(4);
        let walk_to = t + Duration::days(4);
        let fires = reference_fires(&cron, tz, walk_from - Duration::seconds(t.timestamp() % 60), walk_to);
        let before: Vec<_> = fires.iter().copied().filter(|f| *f <= t).collect();
        let open = reference_window(&before, d, t);
        if let Some((start, _)) = open {
            prop_assume!(start > walk_from + d);
        }
        let none = BTreeMap::new();
        let ex = [stopd_rules::ExecutionFacts { pipeline: "p", execution_id: "e", start: Some(t), rollback: false, tags: &none }];
        let verdict = &policy.decide(t, &ex, &[])[0];
        prop_assert_eq!(matches!(verdict, Verdict::Stop(_)), open.is_none(), "cron {} in {} at {}: {:?}", cron.text(), zone, t, verdict);
        let Verdict::Stop(decision) = verdict else { return Ok(()) };
        let w = decision.window.unwrap();
        // The gap ends at the first start after t, when the walk saw one.
        if let Some(next) = fires.iter().find(|f| **f > t) {
            prop_assert_eq!(w.end, *next, "end; cron {} in {} at {}", cron.text(), zone, t);
        }
        // It starts where the last window before t ended, when the walk saw all of it.
        if let Some(last) = before.last() {
            let chain = reference_window(&before, d, *last).unwrap();
            if chain.0 > walk_from + d {
                prop_assert_eq!(w.start, chain.1, "start; cron {} in {} at {}", cron.text(), zone, t);
            }
        }
    }
}
