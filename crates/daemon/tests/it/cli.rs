//! The command line as people meet it: tables that fit, escaped text, refusals, pipes. (Help,
//! completions and man pages: `cli_help`.)

use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

/// Compares `actual` with `tests/it/snapshots/NAME`; `UPDATE_SNAPSHOTS=1` rewrites the file.
#[track_caller]
pub(crate) fn snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} changed (UPDATE_SNAPSHOTS=1 rewrites it); now:\n{actual}"
    );
}

/// The widest line of `s`, in characters.
pub(crate) fn max_width(s: &str) -> usize {
    s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

const FREEZES: &str = r#"
[defaults]
timezone = "Europe/Berlin"

[[freeze]]
name = "weekend"
cron = "0 18 * * FRI"
duration = "62h"
pipelines = ["prod-*"]
exclude = ["prod-hotfix-*"]
tags = { env = "prod" }

[[freeze]]
name = "night"
cron = "30 2 * * SUN"
duration = "1h"
"#;

#[tokio::test]
async fn windows_table_has_weekday_and_duration_and_fits() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", FREEZES);
    let args = ["windows", "--from", "2027-03-26T00:00:00Z", "--days", "3"];
    let out = env.stopd(&args).await;
    assert_ok(&out);
    let table = text(&out.stdout);
    assert!(max_width(&table) <= 100, "{table}");
    snapshot("windows.txt", &table);
    let wide = text(&env.stopd(&[&args[..], &["--wide"]].concat()).await.stdout);
    assert!(
        wide.contains("2027-03-26T17:00:00Z"),
        "UTC with --wide: {wide}"
    );
    let csv = text(
        &env.stopd(&[&args[..], &["--format", "csv"]].concat())
            .await
            .stdout,
    );
    assert!(
        csv.starts_with("rule,start,end,timezone,start_local,end_local,weekday,duration,gate\n"),
        "{csv}"
    );
    assert!(csv.contains(",Fri-Mon,2 d 14 h,false\n"), "{csv}");
}

/// A manual stop whose reason carries an ANSI sequence and a line break, and one long reason.
async fn hostile_stops(env: &Env) {
    let a = active(env, "prod-a");
    let b = active(env, "prod-b");
    let out = env
        .stopd(&[
            "stop",
            "--pipeline",
            "prod-a",
            "--execution",
            &a,
            "--reason",
            "\u{1b}[2J\u{1b}[31mINC-1\u{1b}[0m\nforged line",
        ])
        .await;
    assert_ok(&out);
    assert!(!text(&out.stdout).contains('\u{1b}'));
    let long = "INC-2: ".to_string() + &"the deploy broke checkout in every region; ".repeat(4);
    let out = env
        .stopd(&[
            "stop",
            "--pipeline",
            "prod-b",
            "--execution",
            &b,
            "--reason",
            &long,
        ])
        .await;
    assert_ok(&out);
}

#[tokio::test]
async fn report_fits_100_columns_escapes_control_characters_and_wide_shows_all() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("prod-b", "prod")])).await;
    env.write_config("", "");
    hostile_stops(&env).await;

    let table = text(&env.stopd(&["report"]).await.stdout);
    assert!(max_width(&table) <= 100, "{table}");
    assert!(!table.contains('\u{1b}'), "raw ESC in the table: {table:?}");
    assert!(table.contains("\\u{1b}[2J"), "{table}");
    // A long reason wraps, whole: its last words are on screen.
    assert!(table.contains("INC-2"), "{table}");
    assert!(table.contains("checkout in every region;\n"), "{table}");

    let wide = text(&env.stopd(&["report", "--wide"]).await.stdout);
    assert!(
        wide.contains("checkout in every region; the deploy"),
        "{wide}"
    );
    assert!(
        wide.contains("RULE_KIND") && wide.contains("ATTEMPTS"),
        "{wide}"
    );
    assert!(!wide.contains('\u{1b}'));

    let csv = text(&env.stopd(&["report", "--format", "csv"]).await.stdout);
    assert!(!csv.contains('\u{1b}'), "{csv:?}");
    assert!(
        csv.contains("\\u{1b}[31mINC-1\\u{1b}[0m\\nforged line"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // JSON keeps the text itself (escaped by JSON's own rules).
    let records = env.report(&[]).await;
    assert_eq!(
        records[0]["reason"],
        "\u{1b}[2J\u{1b}[31mINC-1\u{1b}[0m\nforged line"
    );
}

#[tokio::test]
async fn report_outcome_takes_every_outcome_and_sweeps_refuse_record_filters() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config(
        "dry_run = true",
        "[[timeout]]\nname = \"t\"\nmax_duration = \"1m\"\n",
    );
    let out = env.stopd(&["run", "--once"]).await;
    assert_ok(&out);
    let dry = env.report(&["--outcome", "dry_run"]).await;
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert!(env.report(&["--outcome", "pending"]).await.is_empty());
    let help = text(&env.stopd(&["report", "--help"]).await.stdout);
    for o in [
        "stopped",
        "already_stopping",
        "not_stoppable",
        "pipeline_not_found",
        "rejected",
        "failed",
        "dry_run",
        "pending",
    ] {
        assert!(help.contains(o), "{o} missing from report --help");
        let out = env.stopd(&["report", "--outcome", o]).await;
        assert_ok(&out);
    }
    for flag in [
        ["--pipeline", "prod-*"],
        ["--rule", "t"],
        ["--outcome", "failed"],
    ] {
        let out = env
            .stopd(&[&["report", "--sweeps"][..], &flag].concat())
            .await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("cannot be used with"));
    }
    let sweeps = text(&env.stopd(&["report", "--sweeps"]).await.stdout);
    assert!(max_width(&sweeps) <= 100, "{sweeps}");
}

#[tokio::test]
async fn exempt_add_asks_for_yes_and_list_shows_who_revoked_and_when() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", "");
    for (args, words) in [
        (&["--pipeline", "*", "--for", "1h"][..], "every pipeline"),
        (
            &["--pipeline", "prod-web", "--for", "8d"][..],
            "more than 7 days",
        ),
    ] {
        let out = env
            .stopd(&[&["exempt", "add", "--reason", "r"], args].concat())
            .await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(words) && err.contains("--yes"), "{err}");
    }
    assert!(!env.db().exists(), "a refusal writes nothing");
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "*",
            "--for",
            "1h",
            "--yes",
            "--reason",
            "r",
        ])
        .await;
    assert_ok(&out);
    assert!(text(&out.stdout).contains("exemption #1"));
    assert_ok(&env.stopd(&["exempt", "revoke", "1"]).await);
    let out = env.stopd(&["exempt", "list", "--format", "json"]).await;
    assert_ok(&out);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list[0]["revoked_at"].is_string(), "{list}");
    assert!(list[0]["revoked_by"].is_string(), "{list}");
    let table = text(&env.stopd(&["exempt", "list"]).await.stdout);
    assert!(
        table.contains("REVOKED_BY") && table.contains("REVOKED_AT"),
        "{table}"
    );
    assert!(table.contains("revoked"), "{table}");
    assert!(max_width(&table) <= 100, "{table}");
    // An exemption of every rule leaves the RULE column out of a fitted table.
    assert!(!table.contains("RULE"), "{table}");
}

#[tokio::test]
async fn plan_at_another_time_is_labelled_hypothetical() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config("", FREEZES);
    let out = env.stopd(&["plan", "--at", "2099-01-01T00:00:00Z"]).await;
    assert_ok(&out);
    let s = text(&out.stdout);
    assert!(s.starts_with("HYPOTHETICAL: "), "{s}");
    assert!(s.contains("Hypothetically, at 2099-01-01T00:00:00Z"), "{s}");
    let now = text(&env.stopd(&["plan"]).await.stdout);
    assert!(!now.contains("HYPOTHETICAL"), "{now}");
    // JSON stays a plain array of records.
    let out = env
        .stopd(&["plan", "--at", "2099-01-01T00:00:00Z", "--format", "json"])
        .await;
    assert!(
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .is_array()
    );
}

/// `stopd check | head -1`: the reader is gone; exit 0 and say nothing, as ripgrep does.
#[tokio::test]
async fn a_closed_output_pipe_exits_quietly() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", FREEZES);
    for args in [
        &["check"][..],
        &["windows", "--days", "365"],
        &["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        // Closed before stopd writes anything: every write fails with EPIPE.
        drop(reader);
        let out = env
            .command(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

#[tokio::test]
async fn check_warns_when_the_database_cannot_be_written() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", "");
    // Nobody, root included, can create a file under /proc.
    let text_cfg = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(path_str(&env.db()), "/proc/stopd-test/audit.db");
    std::fs::write(env.config_path(), text_cfg).unwrap();
    let out = env.stopd(&["check"]).await;
    assert_ok(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: the audit database /proc/stopd-test/audit.db is not writable"),
        "{err}"
    );
    assert!(
        err.contains("[daemon] database = \"./stopd-audit.db\""),
        "{err}"
    );
    // A writable one draws no warning.
    env.write_config("", "");
    let out = env.stopd(&["check"]).await;
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn an_exemption_from_one_rule_leaves_the_others_in_force() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config(
        "",
        "[[freeze]]\nname = \"always\"\nstart = \"2000-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\n\n\
         [[timeout]]\nname = \"t\"\nmax_duration = \"1m\"\nmode = \"abandon\"\n",
    );
    let plan = |env: &Env| {
        let mut c = env.command(&["plan", "--format", "json"]);
        async move {
            let out = tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap();
            assert_ok(&out);
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    assert_eq!(plan(&env).await[0]["rule"], "t", "abandon wins");
    let add = |rule: &'static str| {
        let env = &env;
        async move {
            env.stopd(&[
                "exempt",
                "add",
                "--pipeline",
                "prod-a",
                "--rule",
                rule,
                "--for",
                "1h",
                "--reason",
                "r",
            ])
            .await
        }
    };
    let out = add("nope").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("its rules are always, t"),
        "{}",
        text(&out.stderr)
    );
    let out = add("t").await;
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("exempt from rule t until"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        plan(&env).await[0]["rule"],
        "always",
        "the freeze still stops it"
    );
    assert_ok(&add("always").await);
    assert_eq!(plan(&env).await, serde_json::json!([]));
    // --wide: notes whole, on one line each.
    let table = text(&env.stopd(&["plan", "--wide"]).await.stdout);
    assert!(
        table.contains("exempt by break-glass #1 (rule t applies)"),
        "{table}"
    );
    let list = text(
        &env.stopd(&["exempt", "list", "--format", "csv"])
            .await
            .stdout,
    );
    assert!(list.starts_with("id,pipeline,rule,until,"), "{list}");
    assert!(list.contains(",prod-a,always,"), "{list}");
    let table = text(&env.stopd(&["exempt", "list"]).await.stdout);
    assert!(max_width(&table) <= 100, "{table}");
    assert!(
        table.contains("RULE") && table.contains("always"),
        "{table}"
    );
}

/// `stopd stop --pipeline $'\e[2J..'` put the escape sequence raw into the log's `pipeline=`
/// field (and so into a terminal or the journal); log fields are escaped like table cells.
#[tokio::test]
async fn logs_escape_control_characters_from_a_command_line() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config("", "");
    let a = active(&env, "prod-a");
    let out = env
        .stopd(&[
            "stop",
            "--pipeline",
            "\u{1b}[2Jprod-a",
            "--execution",
            &a,
            "--reason",
            "\u{1b}[31mINC-9\nforged line",
        ])
        .await;
    let err = text(&out.stderr);
    assert!(!err.contains('\u{1b}'), "raw ESC in the log: {err:?}");
    assert!(err.contains("\\u{1b}[2Jprod-a"), "{err}");
    assert!(err.lines().all(|l| !l.starts_with("forged line")), "{err}");
}

/// `stopd` with `COLUMNS=80`, as in an 80-column terminal.
async fn at_80(env: &Env, args: &[&str]) -> String {
    let mut c = env.command(args);
    c.env("COLUMNS", "80");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_ok(&out);
    text(&out.stdout)
}

/// Every line of `s` fits 80 columns.
#[track_caller]
fn fits_80(what: &str, s: &str) {
    for l in s.lines() {
        assert!(
            l.chars().count() <= 80,
            "{what}: {l:?} is wider than 80:\n{s}"
        );
    }
}

/// In an 80-column terminal (`COLUMNS=80`) every table fits, and free text wraps instead of
/// being cut: the incident number at the end of a reason, and the whole of plan's explanation,
/// stay on screen.
#[tokio::test]
async fn tables_fit_80_columns_and_wrap_reasons_and_explanations_whole() {
    let env = Env::new(&fleet(&[
        ("prod-web-frontend", "prod"),
        ("prod-payments-api", "prod"),
    ]))
    .await;
    // In force whatever the day (first in the file, it wins), and the weekly windows.
    let policy = format!(
        "[[freeze]]\nname = \"weekend-and-more\"\nstart = \"2020-01-01T00:00:00Z\"\n\
         end = \"2099-12-31T23:00:00Z\"\npipelines = [\"prod-*\"]\ngate = true\n\
         reason = \"stopd: weekend INC-4712 hotfix\"\n{FREEZES}"
    );
    env.write_config("", &policy);

    let check = at_80(&env, &["check"]).await;
    fits_80("check", &check);
    assert!(check.contains("(29219 d 23 h); gates"), "{check}");

    let windows = at_80(
        &env,
        &["windows", "--from", "2027-03-26T00:00:00Z", "--days", "3"],
    )
    .await;
    fits_80("windows", &windows);

    let plan = at_80(&env, &["plan"]).await;
    fits_80("plan", &plan);
    let out = env.stopd(&["plan", "--format", "json"]).await;
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records.len(), 2, "{plan}");
    let explanation = records[0]["explanation"].as_str().unwrap();
    for word in explanation.split(' ') {
        assert!(
            plan.contains(word),
            "{word:?} of {explanation:?} missing:\n{plan}"
        );
    }

    assert_ok(&env.stopd(&["run", "--once"]).await);
    let report = at_80(&env, &["report"]).await;
    fits_80("report", &report);
    assert!(report.contains("INC-4712"), "{report}");
    let sweeps = at_80(&env, &["report", "--sweeps"]).await;
    fits_80("report --sweeps", &sweeps);
    let gates = at_80(&env, &["report", "--gates"]).await;
    fits_80("report --gates", &gates);

    assert_ok(
        &env.stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "prod-web-*",
            "--for",
            "1h",
            "--reason",
            "INC-4713 checkout is down in every region",
        ])
        .await,
    );
    assert_ok(
        &env.stopd(&["freeze", "lift", "1", "--reason", "INC-4713 resolved"])
            .await,
    );
    let freezes = at_80(&env, &["freeze", "list"]).await;
    fits_80("freeze list", &freezes);
    assert!(freezes.contains("INC-4713"), "{freezes}");
}

/// The demo's tables and its summary line fit 80 columns (the "Next:" commands are to be
/// copied, not read: those may not).
#[tokio::test]
async fn demo_fits_80_columns() {
    let env = Env::new(&fleet(&[])).await;
    let demo = at_80(&env, &["demo"]).await;
    let (story, next) = demo.split_once("\nNext:").unwrap();
    let comments: String = next
        .lines()
        .filter(|l| l.starts_with("  #") || l.starts_with("  ("))
        .map(|l| format!("{l}\n"))
        .collect();
    let ours = format!("{story}{comments}");
    fits_80("demo", &ours);
    assert!(demo.contains("One sweep: "), "{demo}");
}

/// `status` wrapped nothing: after the demo its `gates closed` line ran to ~700 characters. At
/// 80 columns each value wraps under its column (it exits 1 here: no daemon runs).
#[tokio::test]
async fn status_fits_80_columns() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config("", "");
    let db = path_str(&env.db()).to_string();
    at_80(&env, &["demo", "--database", &db]).await;
    let mut c = env.command(&["status"]);
    c.env("COLUMNS", "80");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("gates closed         18: "), "{said}");
    fits_80("status", &said);
}

/// Rule names, tag keys and account names come from the policy: `check` prints their control
/// characters escaped, never raw; a relative file name is printed as it was given.
#[tokio::test]
async fn check_escapes_control_characters_from_the_policy() {
    let env = Env::new(&fleet(&[])).await;
    env.write_config(
        "",
        "[[freeze]]\nname = \"we\\u001b[2Jkend\"\ncron = \"0 18 * * FRI\"\nduration = \"62h\"\n\
         pipelines = [\"prod-\\u001b7*\"]\ntags = { \"k\\u001b]0;x\\u0007\" = \"v\\u009b\" }\n\
         \n[[exempt]]\nname = \"hot\\u001b[1mfix\"\npipelines = [\"prod-hotfix-*\"]\n",
    );
    std::fs::copy(env.config_path(), env.dir.path().join("my300.toml")).unwrap();
    let out = env
        .command(&["--config", "my300.toml", "check"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    let s = text(&out.stdout);
    assert!(
        !s.contains('\u{1b}') && !s.contains('\u{9b}') && !s.contains('\u{7}'),
        "{s:?}"
    );
    assert!(s.starts_with("my300.toml: OK\n"), "{s}");
    for escaped in [
        "we\\u{1b}[2Jkend",
        "prod-\\u{1b}7*",
        "k\\u{1b}]0;x\\u{7}=v\\u{9b}",
        "hot\\u{1b}[1mfix",
    ] {
        assert!(s.contains(escaped), "{escaped} in {s}");
    }
}
