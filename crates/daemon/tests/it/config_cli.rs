//! Config loading, `check`, `windows`, usage errors: no AWS calls needed.

use serde_json::Value;

use crate::common::*;

const WEEKEND: &str = r#"
[defaults]
timezone = "Europe/Berlin"

[[freeze]]
name = "weekend"
cron = "0 18 * * FRI"
duration = "62h"
pipelines = ["prod-*"]

[[timeout]]
name = "two-hours"
max_duration = "2h"
"#;

#[tokio::test]
async fn check_summarises_a_good_file_and_exits_0() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", WEEKEND);
    let out = env.stopd(&["check"]).await;
    assert_ok(&out);
    let s = text(&out.stdout);
    assert!(s.contains("OK"), "{s}");
    assert!(s.contains("1 freeze rule(s), 1 timeout rule(s)"), "{s}");
    assert!(s.contains("opens  weekend"), "{s}");
    // Each rule's scope, and spans as people say them.
    assert!(
        s.contains("every \"0 18 * * FRI\" (Europe/Berlin) for 2 d 14 h"),
        "{s}"
    );
    assert!(s.contains("pipelines: prod-*\n"), "{s}");
    assert!(s.contains("runs longer than 2 h"), "{s}");
    assert!(s.contains("pipelines: every pipeline"), "{s}");
    assert!(
        s.contains("Fri"),
        "next transitions in the rule's zone: {s}"
    );
    // Nothing was called: check needs no AWS.
    assert!(env.emulator.calls().is_empty());
}

#[tokio::test]
async fn check_shows_no_closing_edge_for_a_freeze_without_gaps() {
    let env = Env::new(&fleet(&[])).await;
    // Every day at midnight for 25 hours: the windows overlap, the freeze never lifts.
    env.write_config(
        "",
        "[[freeze]]\nname = \"always\"\ncron = \"0 0 * * *\"\nduration = \"25h\"\n\n\
         [[freeze]]\nname = \"weekend\"\ncron = \"0 18 * * FRI\"\nduration = \"62h\"\n",
    );
    let out = env.stopd(&["check"]).await;
    assert_ok(&out);
    let s = text(&out.stdout);
    assert!(
        s.contains("In force now: always (its windows leave no gap in the next 366 days)"),
        "{s}"
    );
    assert!(
        !s.contains("closes always"),
        "a horizon is not an edge: {s}"
    );
    assert!(
        s.contains("closes weekend"),
        "real edges are still shown: {s}"
    );
}

#[tokio::test]
async fn bad_configs_exit_78_naming_file_line_and_column() {
    let env = Env::new(&fleet(&[])).await;
    let cases: &[(&str, &str, &str)] = &[
        // (rules, expected location, expected words)
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 18 * * FRI\"\nduration = \"62h\"\npipelnes = [\"x\"]\n",
            ":13:1:",
            "unknown field `pipelnes`",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 25 * * *\"\nduration = \"1h\"\n",
            ":11:1: freeze[0].cron:",
            "hour",
        ),
        (
            "[[freeze]]\nname = \"w\"\nstart = \"2027-01-02T00:00:00\"\nend = \"2027-01-01T00:00:00\"\n",
            "freeze[0]",
            "not after start",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"soon\"\n",
            ":11:",
            "max_duration",
        ),
        (
            "[defaults]\ntimezone = \"Europe/Berln\"\n",
            ":10:1: defaults.timezone:",
            "unknown time zone",
        ),
        (
            "[[freeze]]\nname = \"w\"\ncron = \"0 18 * * FRI\"\nduration = \"62h\"\nmode = \"abandon\"\nescalate_after = \"5m\"\n",
            "freeze[0].escalate_after",
            "needs mode \"finish\"",
        ),
        (
            "[[timeout]]\nname = \"t\"\nmax_duration = \"2h\"\nreason = \"{nope}\"\n",
            "timeout[0].reason",
            "nope",
        ),
    ];
    for (rules, location, words) in cases {
        env.write_config("", rules);
        for command in [&["check"][..], &["windows"], &["run", "--once"]] {
            let out = env.stopd(command).await;
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{command:?} on {rules}: {err}");
            let path = path_str(&env.config_path()).to_string();
            assert!(
                err.contains(&format!("{path}{location}"))
                    || err.contains(location) && err.contains(&path),
                "{command:?}: expected {location} in:\n{err}"
            );
            assert!(err.contains(words), "expected {words:?} in:\n{err}");
        }
    }
    // Nothing was written: a bad config never opens the database.
    assert!(!env.db().exists());
}

#[tokio::test]
async fn usage_errors_exit_2_and_help_teaches() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", WEEKEND);
    let out = env.stopd(&["frobnicate"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = env.stopd(&["windows", "--from", "next tuesday"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--from \"next tuesday\" is not a time"));
    let out = env.stopd(&["report", "--outcome", "exploded"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = env
        .stopd(&["exempt", "add", "--pipeline", "x", "--reason", "r"])
        .await;
    assert_eq!(out.status.code(), Some(2), "--for or --until is required");
    let out = env.stopd(&["--help"]).await;
    assert_ok(&out);
    let help = text(&out.stdout);
    for word in ["Examples:", "stopd plan --at", "Exit codes", "78"] {
        assert!(help.contains(word), "{word} missing from --help");
    }
}

#[tokio::test]
async fn windows_in_every_format_and_across_a_dst_gap() {
    let env = Env::new(&fleet(&[])).await;
    // 02:30 on Sunday 2027-03-28 does not exist in Berlin: the window starts at 03:00 CEST.
    env.write_config(
        "",
        r#"
[[freeze]]
name = "night"
cron = "30 2 * * SUN"
duration = "1h"
timezone = "Europe/Berlin"

[[freeze]]
name = "year-end"
start = "2026-12-19T00:00:00"
end = "2027-01-04T09:00:00"
timezone = "America/New_York"
"#,
    );
    let out = env
        .stopd(&[
            "windows",
            "--from",
            "2027-03-27T00:00:00Z",
            "--days",
            "2",
            "--format",
            "json",
        ])
        .await;
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "rule": "night",
            "start": "2027-03-28T01:00:00Z",
            "end": "2027-03-28T02:00:00Z",
            "timezone": "Europe/Berlin",
            "start_local": "2027-03-28T03:00:00+02:00",
            "end_local": "2027-03-28T04:00:00+02:00",
            "weekday": "Sun",
            "duration": "1 h",
            "gate": false
        }])
    );
    let out = env
        .stopd(&[
            "windows",
            "--from",
            "2026-12-18T00:00:00Z",
            "--days",
            "3",
            "--format",
            "csv",
        ])
        .await;
    assert_ok(&out);
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("rule,start,end,timezone,start_local,end_local,weekday,duration,gate")
    );
    assert_eq!(
        lines.next(),
        Some(
            "year-end,2026-12-19T05:00:00Z,2027-01-04T14:00:00Z,America/New_York,2026-12-19T00:00:00-05:00,2027-01-04T09:00:00-05:00,Sat-Mon,16 d 9 h,false"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            "night,2026-12-20T01:30:00Z,2026-12-20T02:30:00Z,Europe/Berlin,2026-12-20T02:30:00+01:00,2026-12-20T03:30:00+01:00,Sun,1 h,false"
        )
    );
    let out = env
        .stopd(&["windows", "--from", "2026-12-18T00:00:00Z", "--days", "3"])
        .await;
    assert_ok(&out);
    assert!(
        text(&out.stdout).starts_with("RULE "),
        "{}",
        text(&out.stdout)
    );
}

/// Writes a policy that does not validate over the good one: same `[aws]` and `[daemon]`,
/// then `rules`.
fn botch(env: &Env, rules: &str) {
    env.write_config("", rules);
}

#[track_caller]
fn assert_warned(out: &std::process::Output, place: &str) {
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: the policy file does not validate") && err.contains(place),
        "a warning naming {place}:\n{err}"
    );
}

#[tokio::test]
async fn database_commands_work_when_the_policy_does_not_validate() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", WEEKEND);
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-a",
            "--for",
            "1h",
            "--reason",
            "before",
        ])
        .await;
    assert_ok(&out);
    // A typo during an incident: a cron that does not parse, on line 15 of the file.
    botch(&env, &WEEKEND.replace("0 18 * * FRI", "every friday"));
    let place = format!("{}:15:", env.config_path().display());

    for args in [
        &["status"][..],
        &["report"],
        &["report", "--sweeps"],
        &["verify"],
        &["exempt", "list"],
        &["freeze", "list"],
    ] {
        let out = env.stopd(args).await;
        // status says the daemon is not running (1); the others succeed.
        let expected = if args[0] == "status" { 1 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_warned(&out, &place);
    }
    let out = env.stopd(&["status", "--format", "json"]).await;
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["policy_on_disk_error"]
            .as_str()
            .unwrap()
            .contains("freeze[0].cron"),
        "{status}"
    );

    // Break-glass: exempt and freeze, added, listed and ended, all against the database.
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-b",
            "--for",
            "2h",
            "--reason",
            "INC-1",
            // No [aws] table is read from a file that does not validate: the preview cannot
            // read CodePipeline, so the action asks for --yes.
            "--yes",
        ])
        .await;
    assert_ok(&out);
    assert_warned(&out, &place);
    let out = env.stopd(&["exempt", "revoke", "2"]).await;
    assert_ok(&out);
    assert_warned(&out, &place);
    let out = env
        .stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "prod-*",
            "--for",
            "1h",
            "--reason",
            "INC-1",
            "--yes",
        ])
        .await;
    assert_ok(&out);
    assert_warned(&out, &place);
    let out = env
        .stopd(&["freeze", "lift", "1", "--reason", "INC-1 over"])
        .await;
    assert_ok(&out);
    let out = env.stopd(&["exempt", "list", "--format", "json"]).await;
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 2, "nothing was lost: {list:?}");
    let out = env.stopd(&["verify"]).await;
    assert_ok(&out);

    // A rule name cannot be checked without the rules: refused, with the way round it.
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-b",
            "--for",
            "2h",
            "--rule",
            "weekend",
            "--reason",
            "INC-1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("leave out --rule") && err.contains(&place),
        "{err}"
    );
    // Coverage without freeze windows would find no gap: refused.
    let out = env.stopd(&["report", "--coverage"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));

    // Commands that enforce the policy still refuse it.
    for args in [&["run", "--once"][..], &["check"], &["plan"]] {
        let out = env.stopd(args).await;
        assert_eq!(
            out.status.code(),
            Some(78),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains(&place), "{}", text(&out.stderr));
    }
}

#[tokio::test]
async fn a_policy_that_is_not_toml_still_gives_the_database_its_daemon_table_names() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", WEEKEND);
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-a",
            "--for",
            "1h",
            "--reason",
            "before",
        ])
        .await;
    assert_ok(&out);
    // A quote left open after [daemon]: not TOML at all.
    botch(&env, &WEEKEND.replace("\"weekend\"", "\"weekend"));
    let out = env.stopd(&["exempt", "list", "--format", "json"]).await;
    assert_ok(&out);
    assert_warned(&out, &env.config_path().display().to_string());
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1, "the database the file names: {list:?}");

    // The syntax error inside [daemon]: which database is meant cannot be known.
    let text_ = std::fs::read_to_string(env.config_path()).unwrap();
    let broken = text_.replace("[daemon]\ndatabase = \"", "[daemon]\ndatabase = \"\"");
    std::fs::write(env.config_path(), broken).unwrap();
    let out = env.stopd(&["exempt", "list"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("the syntax error is in the [daemon] table")
            && err.contains("the audit database this file names is not known"),
        "{err}"
    );
}

/// `check` passed database paths `run` could not open (`"\u0000"`, `"/"`, a directory): it now
/// refuses them (78) naming the line and the key, as `run` does.
#[tokio::test]
async fn check_refuses_a_database_path_run_cannot_open() {
    let env = Env::new(&fleet(&[])).await;
    let dir = env.dir.path().join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    for (database, words) in [
        ("\\u0000", "NUL character"),
        ("/", "not a directory"),
        (dir.to_str().unwrap(), "is a directory"),
    ] {
        std::fs::write(
            env.config_path(),
            format!("[daemon]\ndatabase = \"{database}\"\n"),
        )
        .unwrap();
        for command in [&["check"][..], &["run", "--once"]] {
            let out = env.stopd(command).await;
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{command:?} {database}: {err}");
            assert!(err.contains(":2:1: daemon.database:"), "{err}");
            assert!(err.contains(words), "{err}");
        }
    }
}
