//! The commands as habits expect them (issue 25): dry runs counted apart from stops, empty
//! results that say so, unknown rules and zones refused with a suggestion, `-o/--output` and
//! `--tz` wherever they make sense, refusals that exit 2, ids checked before anything is
//! recorded, and hints that keep the `--config` the user gave.

use serde_json::Value;

use crate::common::*;

const TIMEOUT: &str = "[[timeout]]\nname = \"one-minute\"\nmax_duration = \"1m\"\n";

fn json(out: &std::process::Output) -> Value {
    assert_ok(out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[track_caller]
fn assert_refused(out: &std::process::Output, words: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains(words), "{}", text(&out.stderr));
}

#[tokio::test]
async fn report_summary_counts_dry_runs_apart_from_stops_and_html_totals_them() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("prod-b", "prod")])).await;
    env.write_config("", TIMEOUT);
    assert_ok(&env.stopd(&["run", "--once", "--dry-run"]).await);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(env.report(&[]).await.len(), 4);

    let summary = json(
        &env.stopd(&["report", "--summary", "--format", "json"])
            .await,
    );
    let row = |by: &str, key: &str| -> (u64, u64) {
        let r = summary
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["by"] == by && r["key"] == key)
            .unwrap_or_else(|| panic!("{by} {key} in {summary}"));
        (
            r["stops"].as_u64().unwrap(),
            r["dry_runs"].as_u64().unwrap(),
        )
    };
    assert_eq!(row("rule", "one-minute"), (2, 2), "{summary}");
    assert_eq!(row("pipeline", "prod-a"), (1, 1), "{summary}");
    assert_eq!(row("outcome", "stopped"), (2, 0), "{summary}");
    assert_eq!(row("outcome", "dry_run"), (0, 2), "{summary}");

    // CSV: the new columns after the old ones, which scripts read by position.
    let csv = env.stopd(&["report", "--summary", "--format", "csv"]).await;
    let csv = text(&csv.stdout);
    assert!(csv.starts_with("by,key,count,stops,dry_runs\n"), "{csv}");
    assert!(csv.contains("\nrule,one-minute,4,2,2\n"), "{csv}");

    let table = text(&env.stopd(&["report", "--summary"]).await.stdout);
    assert!(
        table.contains("STOPS") && table.contains("DRY_RUNS"),
        "{table}"
    );
    assert!(
        table.contains("2 stop(s) and 2 dry run(s) in total"),
        "{table}"
    );

    let html = text(&env.stopd(&["report", "--format", "html"]).await.stdout);
    assert!(html.contains("2 stop(s), 2 dry run(s)."), "{html}");
    // Outcome columns in order: dry_run, stopped.
    assert!(
        html.contains("<tr class=\"total\"><th>total</th><th>2</th><th>2</th></tr></table>"),
        "{html}"
    );
}

#[tokio::test]
async fn empty_results_say_no_records_and_an_unknown_rule_is_refused_with_a_suggestion() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    // A stop by a rule the policy later drops: still a rule `report --rule` asks for.
    env.write_config("", TIMEOUT);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    env.write_config(
        "",
        "[[freeze]]\nname = \"weekend\"\ncron = \"0 18 * * FRI\"\nduration = \"62h\"\n",
    );

    for args in [
        &["report", "--gates"][..],
        &["report", "--rule", "weekend"],
        &["report", "--rule", "manual", "--summary"],
        &["report", "--sweeps", "--since", "2100-01-01"],
        &["report", "--events", "--since", "2100-01-01"],
        &["exempt", "list"],
        &["freeze", "list"],
    ] {
        let out = env.stopd(args).await;
        assert_ok(&out);
        assert_eq!(text(&out.stdout), "no records\n", "{args:?}");
    }
    assert_eq!(
        json(&env.stopd(&["report", "--gates", "--format", "json"]).await),
        Value::Array(vec![])
    );
    let csv = env
        .stopd(&["report", "--rule", "weekend", "--format", "csv"])
        .await;
    assert_ok(&csv);
    assert_eq!(text(&csv.stdout).lines().count(), 1, "the header only");

    let out = env.stopd(&["report", "--rule", "weekendd"]).await;
    assert_refused(&out, "did you mean \"weekend\"?");
    assert!(text(&out.stdout).is_empty());
    assert_refused(
        &env.stopd(&["report", "--gates", "--rule", "nope"]).await,
        "one-minute, weekend",
    );
    // The removed rule is still asked for, and found.
    let old = env.report(&["--rule", "one-minute"]).await;
    assert_eq!(old.len(), 1, "{old:?}");
    // exempt add refuses the same way (rules of the policy only).
    assert_refused(
        &env.stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-a",
            "--for",
            "1h",
            "--rule",
            "Weekend",
            "--reason",
            "r",
        ])
        .await,
        "did you mean \"weekend\"?",
    );
}

#[tokio::test]
async fn output_is_an_alias_of_format_and_tz_is_taken_where_times_are_shown() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config("", "");
    assert_ok(
        &env.stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-a",
            "--for",
            "1h",
            "--reason",
            "r",
        ])
        .await,
    );
    for args in [
        &["report", "-o", "json"][..],
        &["report", "--output", "json", "--summary"],
        &["exempt", "list", "-o", "json"],
        &["freeze", "list", "--output", "json"],
        &["plan", "-o", "json"],
        &["windows", "-o", "json"],
    ] {
        let v = json(&env.stopd(args).await);
        assert!(v.is_array(), "{args:?}: {v}");
    }
    // status exits 1 (no daemon) but prints its JSON.
    let out = env.stopd(&["status", "-o", "json"]).await;
    let status: Value = serde_json::from_slice(&out.stdout).expect("status -o json");
    assert_eq!(status["running"], false);

    // Times shown in the zone asked for (+05:30: no test machine's zone by accident).
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let freeze = [
        "freeze",
        "add",
        "--pipeline",
        "dev-*",
        "--for",
        "1h",
        "--reason",
        "r",
    ];
    assert_ok(&env.stopd(&freeze).await);
    for args in [
        &["status"][..],
        &["plan", "--at", "2099-01-01T00:00:00Z"],
        &["exempt", "list", "--wide"],
        &["freeze", "list", "--wide"],
    ] {
        let utc = text(&env.stopd(args).await.stdout);
        let kolkata = env.stopd(&[args, &["--tz", "Asia/Kolkata"]].concat()).await;
        assert_ne!(kolkata.status.code(), Some(2), "{}", text(&kolkata.stderr));
        let kolkata = text(&kolkata.stdout);
        assert!(!utc.contains("+05:30"), "{args:?}: {utc}");
        assert!(kolkata.contains("+05:30"), "{args:?}: {kolkata}");
    }

    for args in [
        &["report", "--tz", "Berlin"][..],
        &["status", "--tz", "berlin"],
        &["exempt", "list", "--tz", "europe/berlin"],
    ] {
        assert_refused(&env.stopd(args).await, "did you mean \"Europe/Berlin\"?");
    }
}

#[tokio::test]
async fn exempt_revoke_keeps_its_reason() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", "");
    assert_ok(&env.stopd(&ADD).await);
    assert_ok(&env.stopd(&ADD).await);
    assert_ok(
        &env.stopd(&["exempt", "revoke", "1", "--reason", "INC-4711 resolved"])
            .await,
    );
    assert_ok(&env.stopd(&["exempt", "revoke", "2"]).await);
    let list = json(&env.stopd(&["exempt", "list", "--format", "json"]).await);
    assert_eq!(list[1]["id"], 1);
    assert_eq!(list[1]["revoke_reason"], "INC-4711 resolved", "{list}");
    assert_eq!(list[0]["revoke_reason"], Value::Null, "{list}");
    let table = text(&env.stopd(&["exempt", "list", "--wide"]).await.stdout);
    assert!(
        table.contains("REVOKE_REASON") && table.contains("INC-4711 resolved"),
        "{table}"
    );
    // The reason is part of the chained record.
    assert_ok(&env.stopd(&["verify"]).await);
    assert_refused(
        &env.stopd(&["exempt", "revoke", "2", "--reason", " "]).await,
        "--reason",
    );
}

const ADD: [&str; 8] = [
    "exempt",
    "add",
    "--pipeline",
    "prod-a",
    "--for",
    "1h",
    "--reason",
    "r",
];

#[tokio::test]
async fn revoking_or_lifting_an_unknown_or_finished_id_is_a_refusal_exit_2() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", "");
    assert_ok(&env.stopd(&ADD).await);
    assert_ok(&env.stopd(&["exempt", "revoke", "1"]).await);
    assert_refused(
        &env.stopd(&["exempt", "revoke", "1"]).await,
        "already revoked",
    );
    assert_refused(
        &env.stopd(&["exempt", "revoke", "99"]).await,
        "no exemption with id 99",
    );
    assert_refused(
        &env.stopd(&["freeze", "lift", "99", "--reason", "x"]).await,
        "no freeze with id 99",
    );
    assert_ok(
        &env.stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "prod-*",
            "--for",
            "1h",
            "--reason",
            "INC",
        ])
        .await,
    );
    assert_ok(
        &env.stopd(&["freeze", "lift", "1", "--reason", "done"])
            .await,
    );
    assert_refused(
        &env.stopd(&["freeze", "lift", "1", "--reason", "again"])
            .await,
        "already lifted",
    );
}

#[tokio::test]
async fn stop_refuses_a_malformed_execution_id_or_pipeline_name_before_recording() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config("", "");
    let a = active(&env, "prod-a");
    for (pipeline, execution, words) in [
        ("prod-a", "not-a-uuid", "lower-case UUID"),
        ("prod-a", &a.to_uppercase(), "lower-case UUID"),
        ("prod a!", a.as_str(), "not a pipeline name"),
    ] {
        let out = env
            .stopd(&[
                "stop",
                "--pipeline",
                pipeline,
                "--execution",
                execution,
                "--reason",
                "r",
            ])
            .await;
        assert_refused(&out, words);
    }
    assert_eq!(env.stop_calls(), 0);
    assert!(!env.db().exists(), "a refusal records nothing");
    assert_ok(
        &env.stopd(&[
            "stop",
            "--pipeline",
            "prod-a",
            "--execution",
            &a,
            "--reason",
            "r",
        ])
        .await,
    );
}

#[tokio::test]
async fn printed_hints_keep_the_config_the_user_gave() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", "");
    let config = path_str(&env.config_path()).to_string();
    // Off the runtime's thread: `exempt add` previews through the in-process emulator.
    let run = |args: &[&str]| {
        let mut c = env.command(args);
        c.env_remove("STOPD_CONFIG");
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let out = run(&[
        "--config",
        &config,
        "exempt",
        "add",
        "--pipeline",
        "prod-a",
        "--for",
        "1h",
        "--reason",
        "r",
    ])
    .await
    .unwrap();
    assert_ok(&out);
    let said = text(&out.stdout);
    let hint = said
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("a hint in {said}"));
    assert_eq!(hint, format!("stopd --config {config} exempt revoke 1"));
    // As printed, it works.
    let words: Vec<&str> = hint.split_whitespace().skip(1).collect();
    assert_ok(&run(&words).await.unwrap());

    let out = run(&["--config", &config, "exempt", "revoke", "7"])
        .await
        .unwrap();
    assert_refused(&out, &format!("`stopd --config {config} exempt list`"));
    let out = run(&["--config", &config, "freeze", "lift", "7", "--reason", "x"])
        .await
        .unwrap();
    assert_refused(&out, &format!("`stopd --config {config} freeze list`"));
}
