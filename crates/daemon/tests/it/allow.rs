//! `[[allow]]` windows through the binary: an execution outside its allow window is stopped,
//! the audit row naming the allow rule; one inside is not; a freeze in force inside an open
//! allow window still stops (freezes beat allows).

use chrono::{Duration, Timelike, Utc};
use serde_json::Value;

use crate::common::*;

/// A daily cron starting at the minute of `t` (UTC).
fn daily_at(t: chrono::DateTime<Utc>) -> String {
    format!("{} {} * * *", t.minute(), t.hour())
}

#[tokio::test]
async fn outside_the_allow_window_is_stopped_and_inside_is_not() {
    let env = Env::new(&fleet(&[
        ("prod-a", "prod"),
        ("prod-b", "prod"),
        ("dev-c", "dev"),
    ]))
    .await;
    let now = Utc::now();
    // office-hours opens in two hours (closed now, since 14 hours ago); on-call opened an hour
    // ago for four hours. Whole minutes, an hour from any edge.
    let opens = (now + Duration::hours(2)).with_second(0).unwrap();
    let opened = (now - Duration::hours(1)).with_second(0).unwrap();
    env.write_config(
        "",
        &format!(
            r#"
[[allow]]
name = "office-hours"
cron = "{}"
duration = "8h"
pipelines = ["prod-a"]

[[allow]]
name = "on-call"
cron = "{}"
duration = "4h"
pipelines = ["prod-b"]
"#,
            daily_at(opens),
            daily_at(opened),
        ),
    );
    let a = active(&env, "prod-a");
    let b = active(&env, "prod-b");
    let c = active(&env, "dev-c");
    let opens_at = rfc(opens.with_nanosecond(0).unwrap());

    // check lists the allow rules.
    let out = env.stopd(&["check"]).await;
    assert_ok(&out);
    let check = text(&out.stdout);
    assert!(check.contains("2 allow rule(s)"), "{check}");
    assert!(
        check.contains(&format!(
            "allowed every \"{}\" (UTC) for 8 h",
            daily_at(opens)
        )),
        "{check}"
    );

    // plan names the allow rule that would stop prod-a, and nothing else.
    let out = env.stopd(&["plan", "--format", "json"]).await;
    assert_ok(&out);
    let plan: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let planned: Vec<(&str, &str)> = plan
        .iter()
        .map(|p| (p["pipeline"].as_str().unwrap(), p["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(planned, [("prod-a", "office-hours")], "{plan:?}");

    assert_ok(&env.stopd(&["run", "--once"]).await);
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["execution_id"], a.as_str());
    assert_eq!(r["rule"], "office-hours");
    assert_eq!(r["rule_kind"], "freeze");
    assert_eq!(r["outcome"], "stopped");
    assert_eq!(
        r["reason"],
        format!("outside office-hours until {opens_at}").as_str()
    );
    assert_ne!(
        env.emulator.execution("prod-a", &a).unwrap().status,
        "InProgress"
    );
    for (pipeline, id) in [("prod-b", &b), ("dev-c", &c)] {
        assert_eq!(
            env.emulator.execution(pipeline, id).unwrap().status,
            "InProgress",
            "{pipeline}"
        );
    }

    // windows lists the time outside office-hours, marked as such.
    let out = env
        .stopd(&["windows", "--days", "1", "--format", "json"])
        .await;
    assert_ok(&out);
    let windows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let office: Vec<&Value> = windows
        .iter()
        .filter(|w| w["rule"] == "office-hours")
        .collect();
    assert_eq!(office[0]["end"], opens_at.as_str(), "{windows:?}");
    assert!(windows.iter().all(|w| w["allow"] == true), "{windows:?}");
}

#[tokio::test]
async fn a_freeze_in_force_inside_an_open_allow_window_stops_and_names_the_freeze() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("prod-b", "prod")])).await;
    let now = Utc::now();
    // office-hours opened an hour ago for eight hours over both pipelines; a one-off freeze of
    // prod-a is in force now, inside that allow window.
    let opened = (now - Duration::hours(1)).with_second(0).unwrap();
    env.write_config(
        "",
        &format!(
            r#"
[[allow]]
name = "office-hours"
cron = "{}"
duration = "8h"
pipelines = ["prod-*"]

[[freeze]]
name = "incident"
start = "{}"
end = "{}"
pipelines = ["prod-a"]
"#,
            daily_at(opened),
            rfc(now - Duration::minutes(30)),
            rfc(now + Duration::hours(2)),
        ),
    );
    let a = active(&env, "prod-a");
    let b = active(&env, "prod-b");

    let out = env.stopd(&["plan", "--format", "json"]).await;
    assert_ok(&out);
    let plan: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let planned: Vec<(&str, &str)> = plan
        .iter()
        .map(|p| (p["pipeline"].as_str().unwrap(), p["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(planned, [("prod-a", "incident")], "{plan:?}");

    assert_ok(&env.stopd(&["run", "--once"]).await);
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["execution_id"], a.as_str());
    assert_eq!(records[0]["rule"], "incident", "the freeze beats the allow");
    assert_ne!(
        env.emulator.execution("prod-a", &a).unwrap().status,
        "InProgress"
    );
    assert_eq!(
        env.emulator.execution("prod-b", &b).unwrap().status,
        "InProgress",
        "inside its allow window, no freeze: it runs"
    );
}
