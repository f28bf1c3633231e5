//! Every invalid policy is a typed error naming the table, index and key.

use stopd_rules::{Policy, PolicyErrorKind, PolicySpec};

fn errors(toml_text: &str) -> Vec<String> {
    let spec: PolicySpec = toml::from_str(toml_text).expect("parses as TOML");
    Policy::compile(&spec)
        .expect_err("must be refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn one(toml_text: &str) -> String {
    let e = errors(toml_text);
    assert_eq!(e.len(), 1, "{e:?}");
    e[0].clone()
}

#[test]
fn each_validation_error_names_where_and_what() {
    let cases: &[(&str, &str)] = &[
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 25 * * *\"\nduration = \"1h\"",
            "freeze[0].cron: hour field \"25\": 25 is out of range 0-23",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 31 2 *\"\nduration = \"1h\"",
            "freeze[0].cron: never fires: no date matches day-of-month, month and day-of-week together",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * *\"\nduration = \"1h\"",
            "freeze[0].cron: expected 5 fields (min hour dom mon dow) or 6 (sec min hour dom mon dow), found 4",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\ntimezone = \"Europe/Berlinn\"",
            "freeze[0].timezone: unknown time zone \"Europe/Berlinn\": use an IANA name such as \"Europe/Berlin\" or \"UTC\"",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\ntimezone = \"berlin\"",
            "freeze[0].timezone: unknown time zone \"berlin\": did you mean \"Europe/Berlin\"?",
        ),
        (
            "[[freeze]]\nname = \"y\"\nstart = \"2027-01-04T09:00:00\"\nend = \"2026-12-19T00:00:00\"",
            "freeze[0].end: end 2026-12-19T00:00:00+00:00 is not after start 2027-01-04T09:00:00+00:00",
        ),
        (
            "[[freeze]]\nname = \"y\"\nstart = \"next monday\"\nend = \"2026-12-19T00:00:00\"",
            "freeze[0].start: \"next monday\" is not a date-time",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"1h\"\nmode = \"abandon\"\nescalate_after = \"5m\"",
            "timeout[0].escalate_after: escalate_after needs mode \"finish\"",
        ),
        (
            "[[timeout]]\nname = \"\"\nmax_duration = \"1h\"",
            "timeout[0].name: name must not be empty",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"1h\"\n[[freeze]]\nname = \"t\"\ncron = \"0 0 * * *\"\nduration = \"1h\"",
            "timeout[0].name: name \"t\" is already used by freeze[0]",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"1h\"\nreason = \"stopped {reson}\"",
            "timeout[0].reason: unknown placeholder {reson}",
        ),
        (
            "[defaults]\nreason = \"{oops\"",
            "defaults.reason: unbalanced brace at character 0",
        ),
        (
            "[defaults]\ntimezone = \"Mars/Olympus\"",
            "defaults.timezone: unknown time zone \"Mars/Olympus\"",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"",
            "freeze[0].duration: a freeze is either recurring (cron + duration or end_cron) or one-off (start + end); cron needs duration",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\nstart = \"2026-01-01\"\nend = \"2026-01-02\"",
            "freeze[0]: a freeze is either recurring (cron + duration or end_cron) or one-off (start + end); this one mixes both",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\npipelines = [\"prod-[a\"]",
            "freeze[0].pipelines: glob \"prod-[a\"",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\npipelines = []",
            "freeze[0].pipelines: an empty list matches no pipeline",
        ),
        (
            "[[exempt]]\nname = \"x\"\nuntil = \"soon\"",
            "exempt[0].until: \"soon\" is not a date-time",
        ),
    ];
    for (policy, expected) in cases {
        let got = one(policy);
        assert!(
            got.starts_with(expected),
            "policy:\n{policy}\n got: {got}\nwant: {expected}…"
        );
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let e = errors(
        r#"
        [[freeze]]
        name = "a"
        cron = "bad"
        duration = "1h"
        timezone = "Nowhere"
        [[timeout]]
        name = "a"
        max_duration = "1h"
        "#,
    );
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn error_kind_is_typed_for_the_loader() {
    let spec: PolicySpec = toml::from_str(
        "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\ntimezone = \"Nowhere\"",
    )
    .unwrap();
    let e = Policy::compile(&spec).unwrap_err();
    assert_eq!(e[0].kind, PolicyErrorKind::UnknownZone("Nowhere".into()));
    assert_eq!(e[0].at.key, Some("timezone"));
    assert_eq!(e[0].at.rule.index, 0);
}

#[test]
fn unknown_keys_and_bad_spans_are_refused_by_the_parser() {
    let e =
        toml::from_str::<PolicySpec>("[[freeze]]\nname = \"w\"\ncorn = \"0 0 * * *\"").unwrap_err();
    assert!(e.to_string().contains("unknown field `corn`"), "{e}");
    let e = toml::from_str::<PolicySpec>("[[timeout]]\nname = \"t\"\nmax_duration = \"-5m\"")
        .unwrap_err();
    assert!(e.to_string().contains("max_duration"), "{e}");
}

/// Spans are judged while the file is read, so toml's error carries the value's position.
#[test]
fn spans_are_positive_and_at_most_a_century_when_read() {
    for (text, want) in [
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"0s\"",
            "must be longer than zero",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"0s\"",
            "must be longer than zero",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"99999999999h\"",
            "longer than the longest span stopd accepts (100 years)",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\ngrace = \"18446744073709551615s\"",
            "longer than the longest span",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 0 * * *\"\nduration = \"1h\"\nescalate_after = \"99999999999h\"",
            "longer than the longest span",
        ),
    ] {
        let e = toml::from_str::<PolicySpec>(text).expect_err(text);
        assert!(e.message().contains(want), "{text}: {e}");
        assert!(e.span().is_some(), "{text}: no position");
    }
}

#[test]
fn gate_stages_need_a_gate_and_a_stage() {
    assert_eq!(
        one(
            "[[freeze]]\nname = \"f\"\nstart = \"2026-12-19T00:00:00Z\"\nend = \"2026-12-20T00:00:00Z\"\ngate_stages = [\"Deploy\"]"
        ),
        "freeze[0].gate_stages: gate_stages needs gate = true"
    );
    assert!(
        one("[[freeze]]\nname = \"f\"\nstart = \"2026-12-19T00:00:00Z\"\nend = \"2026-12-20T00:00:00Z\"\ngate = true\ngate_stages = []")
            .starts_with("freeze[0].gate_stages: an empty list gates nothing")
    );
}
