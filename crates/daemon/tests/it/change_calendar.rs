//! `change_calendar = "NAME"` through the binary, against the emulator's SSM
//! `GetCalendarState`: a CLOSED calendar stops an in-scope execution (the audit row naming the
//! rule), an OPEN one stops nothing, and a calendar that cannot be read fails `run --once`
//! (exit 1) naming the rule and the calendar while a cron freeze beside it is still enforced.

use crate::common::*;

/// Sets the emulator's calendars: each name's CLOSED intervals, as (from, to) seconds relative
/// to the emulator's now.
fn calendars(env: &Env, closed: &[(&str, &[(i64, i64)])]) {
    let mut w = env.emulator.lock();
    let now = w.clock.now();
    w.calendars = closed
        .iter()
        .map(|(name, spans)| {
            let spans = spans
                .iter()
                .map(|(a, b)| (now + a * 1000, now + b * 1000))
                .collect();
            (name.to_string(), spans)
        })
        .collect();
}

fn stopped(records: &[serde_json::Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["execution_id"].as_str().unwrap().to_string(),
                r["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_closed_calendar_stops_and_an_open_one_does_not() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("prod-b", "prod")])).await;
    calendars(
        &env,
        &[
            ("prod-changes", &[(-3600, 7200)]),
            ("later-changes", &[(3600, 7200)]),
        ],
    );
    env.write_config(
        "",
        r#"
[[freeze]]
name = "change-calendar"
change_calendar = "prod-changes"
pipelines = ["prod-a"]

[[freeze]]
name = "open-calendar"
change_calendar = "arn:aws:ssm:us-east-1:123456789012:document/later-changes"
pipelines = ["prod-b"]
"#,
    );
    let a = active(&env, "prod-a");
    let b = active(&env, "prod-b");

    let out = env.stopd(&["check"]).await;
    assert_ok(&out);
    let check = text(&out.stdout);
    assert!(
        check.contains("while the SSM Change Calendar prod-changes is CLOSED"),
        "{check}"
    );

    let out = env.stopd(&["windows"]).await;
    assert_ok(&out);
    let said = text(&out.stderr);
    assert!(
        said.contains(
            "change calendar prod-changes (rule change-calendar): CLOSED, next transition"
        ),
        "{said}"
    );
    assert!(
        said.contains("(rule open-calendar): OPEN, next transition"),
        "{said}"
    );
    assert!(text(&out.stdout).contains("change-calendar"));

    assert_ok(&env.stopd(&["run", "--once"]).await);
    let stopped = stopped(&env.report(&[]).await);
    assert_eq!(
        stopped,
        vec![(a.clone(), "change-calendar".to_string())],
        "only the CLOSED calendar's pipeline"
    );
    assert!(!stopped.iter().any(|(id, _)| *id == b));
    let asked = env
        .emulator
        .calls()
        .into_iter()
        .filter(|c| c.operation == "GetCalendarState")
        .count();
    assert!(asked >= 2, "each calendar asked at the sweep: {asked}");
}

#[tokio::test]
async fn an_unreadable_calendar_fails_the_sweep_and_stops_nothing_but_other_rules_hold() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("prod-b", "prod")])).await;
    // No calendar `missing` in the emulator: SSM answers InvalidDocument.
    calendars(&env, &[]);
    env.write_config(
        "",
        r#"
[[freeze]]
name = "change-calendar"
change_calendar = "missing"
pipelines = ["prod-a"]

[[freeze]]
name = "always"
cron = "* * * * *"
duration = "2m"
pipelines = ["prod-b"]
"#,
    );
    let a = active(&env, "prod-a");
    let b = active(&env, "prod-b");
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("rule change-calendar: change calendar missing cannot be read"),
        "{err}"
    );
    let stopped = stopped(&env.report(&[]).await);
    assert!(
        stopped.contains(&(b.clone(), "always".to_string())),
        "{stopped:?}"
    );
    assert!(!stopped.iter().any(|(id, _)| *id == a), "{stopped:?}");
}

#[tokio::test]
async fn change_calendar_is_exclusive_with_other_window_sources() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config(
        "",
        "[[freeze]]\nname = \"c\"\nchange_calendar = \"prod\"\ncron = \"0 * * * *\"\nduration = \"1h\"\n",
    );
    let out = env.stopd(&["check"]).await;
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("change_calendar is exclusive with cron") && err.contains(":12:"),
        "{err}"
    );
}

#[tokio::test]
async fn change_calendar_in_an_allow_rule_is_a_configuration_error_with_its_line() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config(
        "",
        "[[allow]]\nname = \"office\"\nchange_calendar = \"prod\"\npipelines = [\"prod-*\"]\n",
    );
    let line = std::fs::read_to_string(env.config_path())
        .unwrap()
        .lines()
        .position(|l| l.starts_with("change_calendar"))
        .unwrap()
        + 1;
    for command in [&["check"][..], &["run", "--once"]] {
        let out = env.stopd(command).await;
        assert_eq!(out.status.code(), Some(78), "{command:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(":{line}:"))
                && err.contains("allow[0].change_calendar")
                && err.contains("change_calendar is a [[freeze]] key, not an [[allow]] one")
                && err.contains("write it as a [[freeze]]"),
            "{command:?}: {err}"
        );
    }
    assert_eq!(env.stop_calls(), 0);
}
