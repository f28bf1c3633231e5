//! `ics = "PATH"` windows through the binary: an execution during a calendar event is stopped,
//! the audit row naming the rule; an occurrence cancelled by EXDATE stops nothing; an all-day
//! event is in force all day in the rule's zone; `check` describes the rule and refuses a
//! calendar it cannot read exactly, with its line; at run time a calendar that cannot be read is
//! never guessed: its rule stops nothing, every sweep fails naming it, the other rules stop.

use chrono::{Datelike, Duration, Timelike, Utc};
use chrono_tz::America::New_York;

use crate::common::*;

fn calendar(events: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n")
}

#[tokio::test]
async fn an_ics_event_stops_and_an_exdated_occurrence_does_not() {
    let env = Env::new(&fleet(&[
        ("prod-a", "prod"),
        ("prod-b", "prod"),
        ("prod-c", "prod"),
        ("dev-d", "dev"),
    ]))
    .await;
    // A weekly event in New York time that began three weeks ago, in force now (from an hour
    // ago to two hours from now on the wall clock, DST or not); the same with today's
    // occurrence cancelled; an all-day event today (UTC).
    let now = Utc::now().with_timezone(&New_York);
    let start = (now - Duration::hours(1))
        .with_second(0)
        .unwrap()
        .naive_local();
    let first = start - Duration::weeks(3);
    let day =
        ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][first.weekday().num_days_from_monday() as usize];
    let fmt = |t: chrono::NaiveDateTime| t.format("%Y%m%dT%H%M%S").to_string();
    let weekly = |uid: &str, extra: &str| {
        format!(
            "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART;TZID=America/New_York:{}\r\n\
             DTEND;TZID=America/New_York:{}\r\nRRULE:FREQ=WEEKLY;BYDAY={day}\r\n{extra}END:VEVENT\r\n",
            fmt(first),
            fmt(first + Duration::hours(3)),
        )
    };
    std::fs::write(
        env.dir.path().join("release.ics"),
        calendar(&weekly("r", "")),
    )
    .unwrap();
    let exdate = format!("EXDATE;TZID=America/New_York:{}\r\n", fmt(start));
    std::fs::write(
        env.dir.path().join("cancelled.ics"),
        calendar(&weekly("c", &exdate)),
    )
    .unwrap();
    let today = Utc::now().date_naive();
    let all_day = format!(
        "BEGIN:VEVENT\r\nUID:h\r\nDTSTART;VALUE=DATE:{}\r\nEND:VEVENT\r\n",
        today.format("%Y%m%d")
    );
    std::fs::write(env.dir.path().join("holiday.ics"), calendar(&all_day)).unwrap();
    env.write_config(
        "",
        r#"
[[freeze]]
name = "release-calendar"
ics = "release.ics"
pipelines = ["prod-a"]

[[freeze]]
name = "cancelled-calendar"
ics = "cancelled.ics"
pipelines = ["prod-b"]

[[freeze]]
name = "holiday"
ics = "holiday.ics"
timezone = "UTC"
pipelines = ["prod-c"]
"#,
    );
    let a = active(&env, "prod-a");
    let b = active(&env, "prod-b");
    let c = active(&env, "prod-c");
    let d = active(&env, "dev-d");

    let out = env.stopd(&["check"]).await;
    assert_ok(&out);
    let check = text(&out.stdout);
    assert!(
        check.contains("ics release.ics: 1 event, in force until"),
        "{check}"
    );

    // windows lists the calendar's windows under the rule's name.
    let out = env.stopd(&["windows"]).await;
    assert_ok(&out);
    let windows = text(&out.stdout);
    assert!(windows.contains("release-calendar"), "{windows}");
    assert!(windows.contains("holiday"), "{windows}");
    // Today's occurrence of the cancelled calendar is not listed; its next week's is.
    let start_of = |rule: &str| -> Vec<String> {
        let rows = windows
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(rule));
        rows.map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    };
    let today = start_of("release-calendar")[0].clone();
    let cancelled = start_of("cancelled-calendar");
    assert!(
        !cancelled.contains(&today) && !cancelled.is_empty(),
        "{windows}"
    );

    assert_ok(&env.stopd(&["run", "--once"]).await);
    let records = env.report(&[]).await;
    let stopped: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["execution_id"].as_str().unwrap(),
                r["rule"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        stopped.contains(&(a.as_str(), "release-calendar")),
        "{records:?}"
    );
    assert!(stopped.contains(&(c.as_str(), "holiday")), "{records:?}");
    assert_eq!(stopped.len(), 2, "{records:?}");
    for (id, p) in [(&b, "prod-b"), (&d, "dev-d")] {
        assert_eq!(env.emulator.execution(p, id).unwrap().status, "InProgress");
    }
}

#[tokio::test]
async fn check_refuses_a_calendar_zone_that_is_not_iana_with_its_line() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    let ics = calendar(
        "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nEND:VTIMEZONE\r\n\
         BEGIN:VEVENT\r\nDTSTART:20270101T000000Z\r\nDURATION:PT1H\r\nEND:VEVENT\r\n",
    );
    std::fs::write(env.dir.path().join("bad.ics"), ics).unwrap();
    env.write_config("", "[[freeze]]\nname = \"cal\"\nics = \"bad.ics\"\n");
    let out = env.stopd(&["check"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stdout));
    let err = text(&out.stderr) + &text(&out.stdout);
    assert!(err.contains("calendar bad.ics:5:"), "{err}");
    assert!(err.contains("W. Europe Standard Time"), "{err}");
    assert!(err.contains("freeze[0].ics"), "{err}");
}

/// One event in force from `start` to `end` (UTC), and, when `broken`, a second event whose
/// zone is not IANA on line 11 (the calendar is invalid).
fn release(start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>, broken: bool) -> String {
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let mut events = format!(
        "BEGIN:VEVENT\r\nUID:e\r\nDTSTART:{}\r\nDTEND:{}\r\nEND:VEVENT\r\n",
        fmt(start),
        fmt(end)
    );
    if broken {
        events.push_str(
            "BEGIN:VEVENT\r\nUID:x\r\nDTSTART;TZID=Nowhere/City:20270101T000000\r\n\
             DURATION:PT1H\r\nEND:VEVENT\r\n",
        );
    }
    calendar(&events)
}

/// The last finished sweep's error, from `report --sweeps` (none yet: `None`).
fn last_sweep(env: &Env) -> Option<serde_json::Value> {
    let out = env
        .command(&["report", "--sweeps", "--format", "json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.into_iter().rev().find(|r| !r["finished_at"].is_null())
}

/// An invalid calendar at start: `check` refuses it with its line; `run --once` enforces the
/// other rules (the cron freeze's execution is stopped and recorded), stops nothing by the
/// calendar's rule (its event is in force), and fails: exit 1, the sweep's error naming the
/// rule, the file and the line.
#[tokio::test]
async fn an_invalid_calendar_fails_the_sweep_and_its_rule_stops_nothing() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("prod-b", "prod")])).await;
    let now = Utc::now();
    std::fs::write(
        env.dir.path().join("broken.ics"),
        release(now - Duration::hours(1), now + Duration::hours(1), true),
    )
    .unwrap();
    env.write_config(
        "",
        r#"
[[freeze]]
name = "release-calendar"
ics = "broken.ics"
pipelines = ["prod-a"]

[[freeze]]
name = "always"
cron = "* * * * *"
duration = "1h"
pipelines = ["prod-b"]
"#,
    );
    let a = active(&env, "prod-a");
    let b = active(&env, "prod-b");

    let out = env.stopd(&["check"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stdout));
    let err = text(&out.stderr) + &text(&out.stdout);
    assert!(err.contains("calendar broken.ics:11:"), "{err}");
    assert!(err.contains("Nowhere/City"), "{err}");

    let out = env.stopd(&["run", "--once"]).await;
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("broken.ics:11"), "{log}");
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["execution_id"], b.as_str(), "{records:?}");
    assert_eq!(records[0]["rule"], "always", "{records:?}");
    assert_eq!(
        env.emulator.execution("prod-a", &a).unwrap().status,
        "InProgress"
    );
    let sweep = last_sweep(&env).expect("the sweep is recorded");
    let error = sweep["error"].as_str().unwrap_or("").to_string();
    assert!(error.contains("release-calendar"), "{sweep}");
    assert!(error.contains("broken.ics:11"), "{sweep}");
    assert!(error.contains("Nowhere/City"), "{sweep}");
}

/// The daemon re-reads a calendar within two seconds of a change: an event added now is
/// enforced; a calendar that then becomes invalid is never guessed from its last good windows:
/// its rule stops nothing while every sweep fails naming it (`report --sweeps`, `status`), and
/// the cron rule still stops; fixed, it is enforced again and sweeps are good again. Each
/// reload is recorded `ok`, the broken one's detail naming the rule set aside.
#[tokio::test]
async fn the_daemon_follows_a_changed_calendar_and_never_guesses_a_broken_one() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("prod-b", "prod")])).await;
    let file = env.dir.path().join("release.ics");
    let later = "2099-01-01T00:00:00Z".parse().unwrap();
    std::fs::write(&file, release(later, later + Duration::hours(1), false)).unwrap();
    env.write_config(
        "schedule = \"*/2 * * * * *\"",
        r#"
[[freeze]]
name = "release-calendar"
ics = "release.ics"
pipelines = ["prod-a"]

[[freeze]]
name = "always"
cron = "* * * * *"
duration = "1h"
pipelines = ["prod-b"]
"#,
    );
    let a0 = active(&env, "prod-a");
    let b0 = active(&env, "prod-b");
    let running = |p: &str, id: &str| env.emulator.execution(p, id).unwrap().status == "InProgress";
    let child = env.spawn(&["run"]);
    let kill = |child: &std::process::Child| {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status();
    };
    // The start-up sweep: the cron rule stops; the calendar's event is not in force yet.
    if !wait_for(std::time::Duration::from_secs(15), || {
        !running("prod-b", &b0)
    })
    .await
    {
        kill(&child);
        panic!("the start-up sweep stopped prod-b");
    }
    assert!(running("prod-a", &a0));

    // An event in force now: enforced without a signal.
    let now = Utc::now();
    let in_force = |broken| release(now - Duration::hours(1), now + Duration::hours(1), broken);
    std::fs::write(&file, in_force(false)).unwrap();
    if !wait_for(std::time::Duration::from_secs(15), || {
        !running("prod-a", &a0)
    })
    .await
    {
        kill(&child);
        panic!("the changed calendar was enforced");
    }

    // Invalid: every sweep fails naming the rule, the file and the line.
    std::fs::write(&file, in_force(true)).unwrap();
    let failing = || {
        last_sweep(&env).is_some_and(|s| {
            s["error"]
                .as_str()
                .is_some_and(|e| e.contains("release-calendar") && e.contains("release.ics:11"))
        })
    };
    if !wait_for(std::time::Duration::from_secs(15), failing).await {
        kill(&child);
        panic!("the sweep failed naming the calendar");
    }
    let status = env.stopd(&["status", "--format", "json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let last = status["last_sweep_error"].as_str().unwrap_or("");
    assert!(last.contains("release.ics:11"), "{status}");

    // The cron rule still stops; the calendar's rule stops nothing, in a sweep after that.
    let a1 = env.emulator.start_execution("prod-a").unwrap();
    let b1 = env.emulator.start_execution("prod-b").unwrap();
    if !wait_for(std::time::Duration::from_secs(15), || {
        !running("prod-b", &b1)
    })
    .await
    {
        kill(&child);
        panic!("the cron rule was enforced");
    }
    let listed = env.listings();
    if !env.wait_for_listing_after(listed).await {
        kill(&child);
        panic!("a later sweep ran");
    }
    assert!(running("prod-a", &a1));
    assert!(failing());

    // Fixed: enforced again, and the sweeps are good again.
    std::fs::write(&file, in_force(false)).unwrap();
    if !wait_for(std::time::Duration::from_secs(15), || {
        !running("prod-a", &a1)
    })
    .await
    {
        kill(&child);
        panic!("the fixed calendar was enforced again");
    }
    let good = || last_sweep(&env).is_some_and(|s| s["error"].is_null());
    if !wait_for(std::time::Duration::from_secs(15), good).await {
        kill(&child);
        panic!("the sweeps were good again");
    }
    signal(&child, "TERM");
    let out = wait_exit(child, std::time::Duration::from_secs(30)).await;
    let err = text(&out.stderr);
    assert!(err.contains("a calendar file changed"), "{err}");
    assert!(err.contains("Nowhere/City"), "{err}");
    // The audit log: the reload that read the broken calendar is `ok` (that file is the policy
    // in force) and its detail names the rule set aside; the one that read it fixed has none.
    let out = env.stopd(&["report", "--events", "--format", "json"]).await;
    assert_ok(&out);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let reloads: Vec<&serde_json::Value> = rows.iter().filter(|r| r["event"] == "reload").collect();
    assert!(reloads.iter().all(|r| r["result"] == "ok"), "{reloads:?}");
    assert!(
        reloads.iter().any(|r| r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"release-calendar\" stops nothing")
                && d.contains("release.ics:11"))),
        "{reloads:?}"
    );
    assert!(
        reloads.last().is_some_and(|r| r["detail"].is_null()),
        "{reloads:?}"
    );
}
