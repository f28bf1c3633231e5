//! Decisions: precedence, exemptions, grace, rollbacks, timeouts, templates, transitions.

use std::collections::BTreeMap;

use chrono::Duration;
use stopd_rules::{ExecutionFacts, Exemption, Mode, RuleKind, Verdict};

use crate::common::{facts, policy, utc};

const POLICY: &str = r#"
[defaults]
timezone = "Europe/Berlin"
reason = "stopd: {rule}"

[[freeze]]
name = "weekend"
cron = "0 18 * * FRI"
duration = "62h"
pipelines = ["prod-*"]
exclude = ["prod-hotfix-*"]
grace = "10m"
reason = "Weekend change freeze until {until} ({kind} {rule} on {pipeline}/{execution})"
escalate_after = "15m"

[[freeze]]
name = "prod-tagged"
cron = "0 18 * * FRI"
duration = "62h"
tags = { env = "prod", tier = "1" }
mode = "abandon"

[[timeout]]
name = "two-hours"
max_duration = "2h"
mode = "abandon"
reason = "ran {elapsed}, limit {max_duration}"

[[exempt]]
name = "hotfix-lane"
pipelines = ["prod-web-hotfix"]
until = "2026-12-31T00:00:00Z"
"#;

fn stop(v: &Verdict) -> &stopd_rules::Decision {
    match v {
        Verdict::Stop(d) => d,
        other => panic!("expected a stop, got {other:?}"),
    }
}

// Friday 2026-11-27 18:00 CET = 17:00Z; the window ends Monday 07:00Z.
const OPENS: &str = "2026-11-27T17:00:00Z";

#[test]
fn freeze_stops_at_its_first_instant_and_not_at_its_end() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let ex = [facts("prod-web", "e1", "2026-11-27T17:00:00Z", &none)];
    assert_eq!(
        p.decide(utc("2026-11-27T16:59:59Z"), &ex, &[])[0],
        Verdict::Allow
    );
    let d = stop(&p.decide(utc(OPENS), &ex, &[])[0]).clone();
    assert_eq!(
        (d.rule.as_str(), d.kind, d.mode),
        ("weekend", RuleKind::Freeze, Mode::Finish)
    );
    assert_eq!(d.escalate_after, Some(Duration::minutes(15)));
    assert_eq!(
        d.reason,
        "Weekend change freeze until 2026-11-30T07:00:00Z (freeze weekend on prod-web/e1)"
    );
    assert!(
        d.explanation()
            .contains("since 2026-11-27T17:00:00Z (Fri 18:00 CET)"),
        "{}",
        d.explanation()
    );
    let ex_late = [facts("prod-web", "e2", "2026-11-30T06:00:00Z", &none)];
    assert!(matches!(
        p.decide(utc("2026-11-30T06:59:59Z"), &ex_late, &[])[0],
        Verdict::Stop(_)
    ));
    assert_eq!(
        p.decide(utc("2026-11-30T07:00:00Z"), &ex_late, &[])[0],
        Verdict::Allow
    );
}

#[test]
fn a_decider_holds_until_the_next_edge_and_decides_past_it_afresh() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let ex = [facts("prod-web", "e1", "2026-11-27T16:00:00Z", &none)];
    let d = p.decider(utc("2026-11-27T16:00:00Z"));
    assert!(d.covers(utc("2026-11-27T16:59:59.999Z")));
    assert!(
        !d.covers(utc(OPENS)),
        "the weekend opens: the state is stale"
    );
    assert!(
        !d.covers(utc("2026-11-27T15:59:59Z")),
        "not before it was made"
    );
    assert_eq!(
        d.decide(utc("2026-11-27T16:59:59Z"), &ex, &[])[0],
        Verdict::Allow
    );
    // Past the edge the decider does not answer from its stale state.
    assert_eq!(
        d.decide(utc(OPENS), &ex, &[]),
        p.decide(utc(OPENS), &ex, &[])
    );
    assert!(matches!(
        d.decide(utc("2026-11-27T17:30:00Z"), &ex, &[])[0],
        Verdict::Grace { .. } | Verdict::Stop(_)
    ));
}

#[test]
fn running_before_the_window_gets_grace_then_stops() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let ex = [facts("prod-web", "e1", "2026-11-27T16:30:00Z", &none)];
    assert_eq!(
        p.decide(utc("2026-11-27T17:09:59Z"), &ex, &[])[0],
        Verdict::Grace {
            rule: "weekend".into(),
            until: utc("2026-11-27T17:10:00Z")
        }
    );
    assert!(matches!(
        p.decide(utc("2026-11-27T17:10:00Z"), &ex, &[])[0],
        Verdict::Stop(_)
    ));
    // Started inside the window: no grace.
    let inside = [facts("prod-web", "e2", "2026-11-27T17:05:00Z", &none)];
    assert!(matches!(
        p.decide(utc("2026-11-27T17:06:00Z"), &inside, &[])[0],
        Verdict::Stop(_)
    ));
}

#[test]
fn abandon_wins_over_finish_then_file_order() {
    let p = policy(POLICY);
    let tags: BTreeMap<String, String> =
        [("env".into(), "prod".into()), ("tier".into(), "1".into())].into();
    let ex = [facts("prod-web", "e1", "2026-11-27T18:00:00Z", &tags)];
    let d = stop(&p.decide(utc("2026-11-27T18:30:00Z"), &ex, &[])[0]).clone();
    assert_eq!((d.rule.as_str(), d.mode), ("prod-tagged", Mode::Abandon));
    // Both abandon: the first in file order (the freeze before the timeout).
    let ex = [facts("prod-web", "e1", "2026-11-27T15:00:00Z", &tags)];
    let d = stop(&p.decide(utc("2026-11-27T18:30:00Z"), &ex, &[])[0]).clone();
    assert_eq!(d.rule, "prod-tagged");
}

#[test]
fn file_order_given_by_the_loader_decides_ties() {
    let mut spec: stopd_rules::PolicySpec = toml::from_str(
        r#"
        [[freeze]]
        name = "a"
        cron = "0 0 * * *"
        duration = "24h"
        [[timeout]]
        name = "b"
        max_duration = "1m"
        "#,
    )
    .unwrap();
    use stopd_rules::{RuleRef, Table};
    spec.file_order = vec![
        RuleRef {
            table: Table::Timeout,
            index: 0,
        },
        RuleRef {
            table: Table::Freeze,
            index: 0,
        },
    ];
    let p = stopd_rules::Policy::compile(&spec).unwrap();
    let none = BTreeMap::new();
    let ex = [facts("x", "e", "2026-11-25T00:00:00Z", &none)];
    assert_eq!(
        stop(&p.decide(utc("2026-11-25T12:00:00Z"), &ex, &[])[0]).rule,
        "b"
    );
}

#[test]
fn exemptions_win_until_they_expire() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let ex = [facts(
        "prod-web-hotfix",
        "e1",
        "2026-11-27T18:00:00Z",
        &none,
    )];
    assert_eq!(
        p.decide(utc("2026-11-27T18:30:00Z"), &ex, &[])[0],
        Verdict::Exempt {
            exemption: "hotfix-lane".into(),
            rule: "weekend".into()
        }
    );
    // Excluded by the rule itself: no rule applies at all.
    let ex = [facts("prod-hotfix-1", "e1", "2026-11-27T18:00:00Z", &none)];
    assert_eq!(
        p.decide(utc("2026-11-27T18:30:00Z"), &ex, &[])[0],
        Verdict::Allow
    );
    // A break-glass exemption from the database, and its expiry.
    let bg = Exemption::break_glass("bg-1", "prod-*", utc("2026-11-27T19:00:00Z"), "incident 42")
        .unwrap();
    let ex = [facts("prod-api", "e1", "2026-11-27T18:00:00Z", &none)];
    assert!(matches!(
        p.decide(utc("2026-11-27T18:59:59Z"), &ex, std::slice::from_ref(&bg))[0],
        Verdict::Exempt { .. }
    ));
    assert!(matches!(
        p.decide(utc("2026-11-27T19:00:00Z"), &ex, &[bg])[0],
        Verdict::Stop(_)
    ));
}

#[test]
fn rollbacks_are_spared_unless_the_rule_says_so() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let ex = [ExecutionFacts {
        rollback: true,
        ..facts("prod-web", "e1", "2026-11-27T18:00:00Z", &none)
    }];
    assert_eq!(
        p.decide(utc("2026-11-27T18:30:00Z"), &ex, &[])[0],
        Verdict::SparedRollback {
            rule: "weekend".into()
        }
    );
    let p = policy(
        r#"
        [[timeout]]
        name = "t"
        max_duration = "1h"
        rollbacks = true
        "#,
    );
    assert!(matches!(
        p.decide(utc("2026-11-27T19:30:00Z"), &ex, &[])[0],
        Verdict::Stop(_)
    ));
}

#[test]
fn timeout_is_strictly_longer_than_max_duration() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let ex = [facts("dev-api", "e1", "2026-11-25T10:00:00Z", &none)];
    assert_eq!(
        p.decide(utc("2026-11-25T12:00:00Z"), &ex, &[])[0],
        Verdict::Allow
    );
    let d = stop(&p.decide(utc("2026-11-25T12:00:01Z"), &ex, &[])[0]).clone();
    assert_eq!((d.rule.as_str(), d.kind), ("two-hours", RuleKind::Timeout));
    assert_eq!(d.reason, "ran 2 h 1 s, limit 2 h");
}

#[test]
fn next_transition_finds_window_edges_grace_and_timeouts() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let ex = [facts("dev-api", "e1", "2026-11-27T16:00:00Z", &none)];
    // Before the window: the timeout of e1 (18:00:00.001Z) comes after the opening (17:00Z).
    assert_eq!(
        p.next_transition(utc("2026-11-27T12:00:00Z"), &ex),
        Some(utc(OPENS))
    );
    assert_eq!(
        p.next_transition(utc(OPENS), &ex),
        Some(utc("2026-11-27T17:10:00Z"))
    );
    let t = p.next_transition(utc("2026-11-27T17:10:00Z"), &ex).unwrap();
    assert_eq!(t, utc("2026-11-27T18:00:00Z") + Duration::milliseconds(1));
    assert_eq!(p.next_transition(t, &[]), Some(utc("2026-11-30T07:00:00Z")));
}

#[test]
fn escalation_due_time_comes_from_the_rule() {
    let p = policy(POLICY);
    assert_eq!(
        p.escalation_due_at("weekend", utc(OPENS)),
        Some(utc("2026-11-27T17:15:00Z"))
    );
    assert_eq!(p.escalation_due_at("two-hours", utc(OPENS)), None);
}

#[test]
fn discovery_scope_and_tag_use() {
    let p = policy(POLICY);
    assert!(p.uses_tags());
    // The timeout selects every pipeline.
    assert!(p.may_apply_to("anything"));
    let p = policy(
        r#"
        [[freeze]]
        name = "w"
        cron = "0 18 * * FRI"
        duration = "1h"
        pipelines = ["prod-*"]
        exclude = ["prod-x"]
        "#,
    );
    assert!(!p.uses_tags());
    assert!(p.may_apply_to("prod-web"));
    assert!(!p.may_apply_to("prod-x"));
    assert!(!p.may_apply_to("dev-web"));
}

/// `startTime` is optional in the model: an execution without one was read as starting in 1970
/// and stopped by every timeout at once ("running 56 years").
#[test]
fn unknown_start_is_never_stopped_by_a_timeout_but_a_freeze_still_applies() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    let mut ex = facts("prod-web", "e1", "2026-11-27T17:00:00Z", &none);
    ex.start = None;
    // Thursday: only the two-hour timeout could apply, and it cannot know the run's length.
    assert_eq!(
        p.decide(utc("2026-11-26T12:00:00Z"), &[ex], &[])[0],
        Verdict::Allow
    );
    assert_eq!(
        p.next_transition(utc("2026-11-26T12:00:00Z"), &[ex]),
        Some(utc(OPENS))
    );
    // In the weekend freeze it counts as running before the window: grace first, then a stop.
    assert!(matches!(
        p.decide(utc("2026-11-27T17:05:00Z"), &[ex], &[])[0],
        Verdict::Grace { .. }
    ));
    let d = stop(&p.decide(utc("2026-11-27T17:10:00Z"), &[ex], &[])[0]).clone();
    assert_eq!(d.rule, "weekend");
    assert_eq!(d.elapsed, None);
    assert!(
        d.explanation().contains("unknown time"),
        "{}",
        d.explanation()
    );
}

#[test]
fn an_exemption_from_one_rule_lets_another_rule_stop() {
    let p = policy(POLICY);
    let none = BTreeMap::new();
    // In the weekend window, and running for 3 hours: weekend (finish) and two-hours (abandon)
    // both apply; two-hours wins (abandon beats finish).
    let ex = [facts("prod-api", "e1", "2026-11-27T16:00:00Z", &none)];
    let at = utc("2026-11-27T19:00:00Z");
    let until = utc("2026-11-28T00:00:00Z");
    let only = |rule: &str| {
        Exemption::break_glass("bg-1", "prod-*", until, "r")
            .unwrap()
            .only_rule(Some(rule.into()))
    };
    // Exempt from the winner: the next rule stops it.
    assert_eq!(
        stop(&p.decide(at, &ex, &[only("two-hours")])[0]).rule,
        "weekend"
    );
    // Exempt from a rule that does not win: nothing changes.
    assert_eq!(
        stop(&p.decide(at, &ex, &[only("weekend")])[0]).rule,
        "two-hours"
    );
    // Exempt from both, by two exemptions: exempt, naming the rule that would have won.
    assert_eq!(
        p.decide(at, &ex, &[only("weekend"), only("two-hours")])[0],
        Verdict::Exempt {
            exemption: "bg-1".into(),
            rule: "two-hours".into()
        }
    );
    // From a rule of another name (renamed since): it exempts from nothing.
    assert_eq!(
        stop(&p.decide(at, &ex, &[only("gone")])[0]).rule,
        "two-hours"
    );
    // The decider agrees with a fresh decision.
    assert_eq!(
        p.decider(at).decide(at, &ex, &[only("two-hours")]),
        p.decide(at, &ex, &[only("two-hours")])
    );
}

#[test]
fn a_gating_freeze_holds_transitions_from_its_first_instant_unless_exempt() {
    let p = policy(
        r#"
[[freeze]]
name = "release"
start = "2026-12-19T00:00:00Z"
end = "2027-01-04T09:00:00Z"
pipelines = ["prod-*"]
grace = "1h"
gate = true
reason = "Release freeze until {until}: {pipeline}"

[[freeze]]
name = "deploys"
start = "2026-12-19T00:00:00Z"
end = "2026-12-20T00:00:00Z"
gate = true
gate_stages = ["Deploy"]

[[freeze]]
name = "no-gate"
start = "2026-12-19T00:00:00Z"
end = "2026-12-20T00:00:00Z"

[[exempt]]
name = "hotfix"
pipelines = ["prod-hotfix"]
"#,
    );
    let none = BTreeMap::new();
    assert!(p.has_gates());
    assert!(
        p.gates(utc("2026-12-18T23:59:59Z"), "prod-web", &none, &[])
            .is_empty()
    );
    // At the window's first instant, whatever the grace.
    let holds = p.gates(utc("2026-12-19T00:00:00Z"), "prod-web", &none, &[]);
    let names: Vec<&str> = holds.iter().map(|h| h.rule.as_str()).collect();
    assert_eq!(names, ["release", "deploys"]);
    assert_eq!(
        holds[0].reason,
        "Release freeze until 2027-01-04T09:00:00Z: prod-web"
    );
    let stages: Vec<String> = ["Source", "Build", "Deploy"].map(String::from).to_vec();
    assert_eq!(holds[0].gate.stages_of(&stages), ["Build", "Deploy"]);
    assert_eq!(holds[1].gate.stages_of(&stages), ["Deploy"]);
    // The end is exclusive; an exemption opens the gates.
    assert!(
        p.gates(utc("2027-01-04T09:00:00Z"), "prod-web", &none, &[])
            .is_empty()
    );
    assert!(
        p.gates(utc("2026-12-19T12:00:00Z"), "prod-hotfix", &none, &[])
            .is_empty(),
        "the exemption opens every gate of its pipelines"
    );
    assert_eq!(
        p.gates(utc("2026-12-19T12:00:00Z"), "dev-web", &none, &[])
            .len(),
        1,
        "deploys (every pipeline) gates dev-web; release does not"
    );
}

#[test]
fn accounts_and_regions_select_where_a_rule_applies() {
    let p = policy(
        r#"
[[freeze]]
name = "payments-eu"
start = "2026-12-24T00:00:00Z"
end = "2026-12-27T00:00:00Z"
accounts = ["payments-*"]
regions = ["eu-*"]

[[timeout]]
name = "everywhere"
max_duration = "1h"

[[exempt]]
name = "search-lane"
accounts = ["search"]
"#,
    );
    assert!(p.selects_places());
    let tags = BTreeMap::new();
    let now = utc("2026-12-25T12:00:00Z");
    let ex = [facts("web", "e1", "2026-12-25T11:30:00Z", &tags)];
    let rule_of = |account: &str, region: &str| match &p
        .for_place(account, region)
        .decider(now)
        .decide(now, &ex, &[])[0]
    {
        Verdict::Stop(d) => Some(d.rule.clone()),
        _ => None,
    };
    assert_eq!(
        rule_of("payments-prod", "eu-west-1").as_deref(),
        Some("payments-eu")
    );
    assert_eq!(
        rule_of("payments-prod", "us-east-1"),
        None,
        "other region: not frozen"
    );
    assert_eq!(
        rule_of("search", "eu-west-1"),
        None,
        "exempt in its account only"
    );
    let r = p.for_place("search", "eu-west-1");
    assert_eq!(
        r.rules().len(),
        1,
        "the freeze is not in force in account 'search'"
    );
    // An empty list is refused like an empty `pipelines`.
    let spec: stopd_rules::PolicySpec =
        toml::from_str("[[timeout]]\nname = \"t\"\nmax_duration = \"1h\"\nregions = []\n").unwrap();
    let e = stopd_rules::Policy::compile(&spec).unwrap_err();
    assert!(e[0].to_string().contains("regions"), "{}", e[0]);
}
