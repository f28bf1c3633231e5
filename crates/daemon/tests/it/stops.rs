//! Stops through the binary: every outcome reaches the audit log; `run --once`; dry runs;
//! reconciliation after a kill; report filters; exemptions; the demo.

use std::time::Duration;

use serde_json::Value;
use stopd_emulator::{Fault, FaultRule};

use crate::common::*;

pub(crate) const FREEZE_PROD_NOW: &str = r#"
[[freeze]]
name = "freeze-now"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
pipelines = ["prod-*"]
tags = { env = "prod" }
reason = "frozen until {until}: {pipeline}"
"#;

fn outcome_of(records: &[Value], execution: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["execution_id"] == execution)
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_outcome_of_a_manual_stop_reaches_the_audit_log() {
    let env = Env::new(&fleet(&[
        ("prod-a", "prod"),
        ("prod-b", "prod"),
        ("prod-c", "prod"),
    ]))
    .await;
    env.write_config("stop_deadline = \"1500ms\"", "");
    let a = active(&env, "prod-a");
    let b = active(&env, "prod-b");
    let c = active(&env, "prod-c");
    let finished = env
        .emulator
        .executions("prod-a")
        .into_iter()
        .find(|e| e.status == "Succeeded")
        .unwrap()
        .id;

    let stop = |p: &'static str, id: String, extra: &'static [&'static str]| {
        let env = &env;
        async move {
            let mut args = vec![
                "stop",
                "--pipeline",
                p,
                "--execution",
                &id,
                "--reason",
                "INC-1 bad deploy",
            ];
            args.extend_from_slice(extra);
            env.stopd(&args).await
        }
    };
    // stopped, then already_stopping for the same stop-and-wait again.
    assert_ok(&stop("prod-a", a.clone(), &[]).await);
    assert_ok(&stop("prod-a", a.clone(), &[]).await);
    // not_stoppable: it finished long ago.
    assert_ok(&stop("prod-a", finished.clone(), &[]).await);
    // pipeline_not_found and rejected are recorded, and exit 1 (DESIGN.md).
    let out = stop("prod-gone", a.clone(), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("pipeline_not_found"));
    // Not an execution id: a usage error (exit 2), recorded nowhere (AWS never answered).
    let out = stop("prod-b", "not-a-uuid".into(), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // rejected: the service refuses it for good (a permission is missing).
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::AccessDenied,
    ));
    let out = stop("prod-b", b.clone(), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("rejected"),
        "{}",
        text(&out.stdout)
    );
    env.emulator.set_faults(Default::default());
    // failed: the service answers 500 until the deadline.
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Http500,
    ));
    let out = stop("prod-b", b.clone(), &["--abandon"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed stop exits 1: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("failed"),
        "{}",
        text(&out.stdout)
    );
    env.emulator.set_faults(Default::default());
    // dry_run: the config says never call.
    env.write_config("dry_run = true", "");
    let calls_before = env.stop_calls();
    assert_ok(&stop("prod-c", c.clone(), &["--abandon"]).await);
    assert_eq!(env.stop_calls(), calls_before, "dry run calls nothing");

    let records = env.report(&[]).await;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "stopped",
            "already_stopping",
            "not_stoppable",
            "pipeline_not_found",
            "rejected",
            "failed",
            "dry_run"
        ]
    );
    for r in &records {
        for key in [
            "at",
            "pipeline",
            "execution_id",
            "rule",
            "rule_kind",
            "mode",
            "reason",
            "outcome",
            "attempts",
            "error",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert_eq!(r["rule"], "manual");
        assert_eq!(r["rule_kind"], "manual");
        assert_eq!(r["reason"], "INC-1 bad deploy");
        assert!(r["at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(records[0]["error"], Value::Null);
    assert_eq!(
        records[4]["attempts"], 1,
        "rejected for good: never retried"
    );
    assert!(
        records[5]["attempts"].as_i64().unwrap() > 1,
        "failed after retries"
    );
    assert!(
        records[5]["error"]
            .as_str()
            .unwrap()
            .contains("InternalFailure")
    );
    assert_eq!(records[5]["mode"], "abandon");
    assert_eq!(
        env.emulator
            .execution("prod-a", &a)
            .unwrap()
            .stop_reason
            .as_deref(),
        Some("INC-1 bad deploy")
    );
}

#[tokio::test]
async fn run_once_stops_what_the_policy_says_and_exits_0() {
    let env = Env::new(&fleet(&[
        ("prod-web", "prod"),
        ("prod-dev-tagged", "dev"),
        ("dev-web", "dev"),
    ]))
    .await;
    env.write_config("", FREEZE_PROD_NOW);
    let out = env.stopd(&["run", "--once"]).await;
    assert_ok(&out);
    let web = active_or_stopping(&env, "prod-web");
    assert_eq!(
        env.emulator.execution("prod-web", &web).unwrap().status,
        "Stopping"
    );
    assert!(
        env.emulator
            .executions("dev-web")
            .iter()
            .any(|e| e.status == "InProgress")
    );
    assert!(
        env.emulator
            .executions("prod-dev-tagged")
            .iter()
            .any(|e| e.status == "InProgress"),
        "tags must match"
    );
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["pipeline"], "prod-web");
    assert_eq!(records[0]["rule"], "freeze-now");
    assert_eq!(records[0]["rule_kind"], "freeze");
    assert_eq!(records[0]["mode"], "finish");
    assert_eq!(
        records[0]["reason"],
        "frozen until 2100-01-01T00:00:00Z: prod-web"
    );

    // A second sweep finds it Stopping and decides nothing more.
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(env.report(&[]).await.len(), 1);
    // Both sweeps are on record.
    let out = env.stopd(&["report", "--sweeps", "--format", "json"]).await;
    assert_ok(&out);
    let sweeps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweeps.len(), 2);
    assert_eq!(sweeps[0]["pipelines_seen"], 3);
    assert_eq!(sweeps[0]["stops_decided"], 1);
    assert_eq!(sweeps[1]["stops_decided"], 0);
    assert!(
        sweeps
            .iter()
            .all(|s| s["finished_at"].is_string() && s["errors"] == 0)
    );
}

/// AWS keeps an abandoned execution Stopping "for a very short time" (StopPipelineExecution); the
/// emulator's settle time is made an hour here so that the second sweep surely finds it Stopping:
/// it must neither stop it again nor record a failure.
#[tokio::test]
async fn a_sweep_during_the_abandon_settle_records_no_second_stop_or_failure() {
    let config = stopd_emulator::EmulatorConfig {
        clock: stopd_emulator::Clock::scaled(1.0),
        behaviour: stopd_emulator::state::Behaviour {
            abandon_settle_ms: 3_600_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let env = Env::with_emulator(&fleet(&[("prod-web", "prod")]), config).await;
    let abandon = FREEZE_PROD_NOW.replace("reason =", "mode = \"abandon\"\nreason =");
    env.write_config("", &abandon);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let web = active_or_stopping(&env, "prod-web");
    assert_eq!(
        env.emulator.execution("prod-web", &web).unwrap().status,
        "Stopping"
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(
        env.emulator.execution("prod-web", &web).unwrap().status,
        "Stopping"
    );
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["mode"], "abandon");
    assert_eq!(outcome_of(&records, &web), vec!["stopped".to_string()]);
    let calls = env.emulator.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.operation == "StopPipelineExecution")
            .count(),
        1
    );
    let out = env.stopd(&["report", "--sweeps", "--format", "json"]).await;
    assert_ok(&out);
    let sweeps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweeps.len(), 2);
    assert_eq!(sweeps[1]["stops_decided"], 0);
    assert!(sweeps.iter().all(|s| s["errors"] == 0), "{sweeps:?}");
}

fn active_or_stopping(env: &Env, pipeline: &str) -> String {
    env.emulator
        .executions(pipeline)
        .into_iter()
        .find(|e| e.status == "InProgress" || e.status == "Stopping")
        .unwrap()
        .id
}

#[tokio::test]
async fn run_once_exits_1_when_a_stop_does_not_reach_a_final_outcome() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("stop_deadline = \"1s\"", FREEZE_PROD_NOW);
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Http503,
    ));
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not final: prod-web"),
        "{}",
        text(&out.stderr)
    );
    let records = env.report(&["--outcome", "failed"]).await;
    assert_eq!(records.len(), 1);
    assert!(
        records[0]["error"]
            .as_str()
            .unwrap()
            .contains("ServiceUnavailable")
    );
}

#[tokio::test]
async fn dry_run_decides_and_records_once_and_calls_nothing() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", FREEZE_PROD_NOW);
    assert_ok(&env.stopd(&["run", "--once", "--dry-run"]).await);
    assert_ok(&env.stopd(&["run", "--once", "--dry-run"]).await);
    assert_eq!(env.stop_calls(), 0);
    let records = env.report(&[]).await;
    assert_eq!(
        records.len(),
        1,
        "recorded once per execution and rule: {records:?}"
    );
    assert_eq!(records[0]["outcome"], "dry_run");
    assert!(
        env.emulator
            .executions("prod-web")
            .iter()
            .any(|e| e.status == "InProgress")
    );
}

#[tokio::test]
async fn a_stop_killed_before_its_outcome_is_reconciled_at_the_next_start() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", FREEZE_PROD_NOW);
    let id = active(&env, "prod-web");
    // The service takes the stop, then answers late: the process dies in between.
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Delay { delay_ms: 30_000 },
    ));
    let mut child = env.spawn(&["run", "--once"]);
    assert!(
        wait_for(Duration::from_secs(20), || env.stop_calls() == 1).await,
        "the stop reached the service"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let records = env.report(&[]).await;
    assert_eq!(
        outcome_of(&records, &id),
        ["pending"],
        "the intent was durable before the call"
    );
    assert_eq!(records[0]["attempts"], 0);

    env.emulator.set_faults(Default::default());
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let records = env.report(&[]).await;
    assert_eq!(outcome_of(&records, &id), ["stopped"], "{records:?}");
    assert!(records[0]["reconciled"].as_bool().unwrap());
    assert!(records[0]["error"].as_str().unwrap().contains("Stopping"));
    assert_eq!(env.stop_calls(), 1, "the execution was not stopped twice");
    assert!(env.report(&["--outcome", "pending"]).await.is_empty());
}

#[tokio::test]
async fn report_filters_summary_and_csv() {
    let env = Env::new(&fleet(&[
        ("prod-a", "prod"),
        ("prod-b", "prod"),
        ("dev-c", "dev"),
    ]))
    .await;
    env.write_config(
        "",
        &format!("{FREEZE_PROD_NOW}\n[[timeout]]\nname = \"one-minute\"\nmax_duration = \"1m\"\npipelines = [\"dev-*\"]\nmode = \"abandon\"\n"),
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(env.report(&[]).await.len(), 3);
    assert_eq!(env.report(&["--pipeline", "prod-*"]).await.len(), 2);
    assert_eq!(env.report(&["--pipeline", "prod-?"]).await.len(), 2);
    assert_eq!(
        env.report(&["--rule", "one-minute"]).await[0]["mode"],
        "abandon"
    );
    assert_eq!(env.report(&["--outcome", "stopped"]).await.len(), 3);
    assert_eq!(env.report(&["--outcome", "failed"]).await.len(), 0);
    assert_eq!(env.report(&["--since", "1h"]).await.len(), 3);
    assert_eq!(env.report(&["--until", "1h"]).await.len(), 0);
    assert_eq!(env.report(&["--since", "2100-01-01"]).await.len(), 0);

    let out = env
        .stopd(&["report", "--summary", "--format", "json"])
        .await;
    assert_ok(&out);
    let summary: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let count = |by: &str, key: &str| {
        summary
            .iter()
            .find(|r| r["by"] == by && r["key"] == key)
            .map(|r| r["count"].as_u64().unwrap())
    };
    assert_eq!(count("rule", "freeze-now"), Some(2));
    assert_eq!(count("rule", "one-minute"), Some(1));
    assert_eq!(count("outcome", "stopped"), Some(3));
    assert_eq!(count("pipeline", "dev-c"), Some(1));
    let per_day: u64 = summary
        .iter()
        .filter(|r| r["by"] == "day")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(per_day, 3, "every stop is counted on its day: {summary:?}");

    let out = env
        .stopd(&["report", "--format", "csv", "--rule", "one-minute"])
        .await;
    assert_ok(&out);
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "at,pipeline,execution_id,rule,rule_kind,mode,outcome,attempts,reason,error,id,\
             completed_at,throttled,reconciled,escalation_of,sweep_id,explanation,account,region"
        )
    );
    let row = lines.next().unwrap();
    assert!(row.contains(",dev-c,"));
    // Where the stop was made: the ambient account, named `default`, in its region.
    assert!(row.ends_with(",default,us-east-1"), "{row}");
    assert_eq!(lines.next(), None);
}

pub(crate) async fn plan_json(env: &Env) -> Vec<Value> {
    let out = env.stopd(&["plan", "--format", "json"]).await;
    assert_ok(&out);
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

#[tokio::test]
async fn break_glass_exemption_wins_until_revoked() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", FREEZE_PROD_NOW);
    let before = plan_json(&env).await;
    assert_eq!(before.len(), 1);
    for key in [
        "pipeline",
        "execution_id",
        "rule",
        "rule_kind",
        "mode",
        "reason",
    ] {
        assert!(before[0].get(key).is_some(), "{key}");
    }
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-*",
            "--for",
            "2h",
            "--reason",
            "INC-7 hotfix",
        ])
        .await;
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("exemption #1"),
        "{}",
        text(&out.stdout)
    );
    assert!(plan_json(&env).await.is_empty(), "exempt");
    let out = env.stopd(&["plan"]).await;
    assert!(
        text(&out.stdout).contains("exempt by break-glass #1"),
        "{}",
        text(&out.stdout)
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(env.stop_calls(), 0, "the daemon honours it too");

    let out = env.stopd(&["exempt", "list", "--format", "json"]).await;
    assert_ok(&out);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["pipeline"], "prod-*");
    assert_eq!(list[0]["revoked_at"], Value::Null);

    assert_ok(&env.stopd(&["exempt", "revoke", "1"]).await);
    let again = env.stopd(&["exempt", "revoke", "1"]).await;
    assert_eq!(again.status.code(), Some(2), "a refusal");
    assert!(text(&again.stderr).contains("already revoked"));
    assert_eq!(plan_json(&env).await.len(), 1);
    // An expiry in the past is refused.
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "x",
            "--until",
            "2020-01-01T00:00:00Z",
            "--reason",
            "r",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn plan_at_a_future_instant_sees_the_window_open() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config(
        "",
        "[[freeze]]\nname = \"year-end\"\nstart = \"2099-12-19T00:00:00Z\"\nend = \"2100-01-04T00:00:00Z\"\n",
    );
    let out = env.stopd(&["plan", "--format", "json"]).await;
    assert_ok(&out);
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&out.stdout)
            .unwrap()
            .len(),
        0
    );
    let out = env
        .stopd(&["plan", "--at", "2099-12-20T00:00:00Z", "--format", "json"])
        .await;
    assert_ok(&out);
    let plan: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0]["rule"], "year-end");
    assert_eq!(env.stop_calls(), 0, "plan never stops");
}

#[tokio::test]
async fn demo_needs_nothing_and_stops_something() {
    let env = Env::new(&fleet(&[])).await;
    let mut c = env.command(&["demo"]);
    c.env_remove("STOPD_CONFIG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_ok(&out);
    let s = text(&out.stdout);
    assert!(s.contains("What it stopped:"), "{s}");
    assert!(s.contains("prod-web") && s.contains("demo-freeze"), "{s}");
    assert!(s.contains("exempt by hotfix-lane"), "{s}");
    assert!(s.contains("two-hours"), "{s}");
    // Two accounts: the freeze holds in payments only; the timeout in both.
    let stopped = s
        .split("What it stopped:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let rows: Vec<&str> = stopped.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(rows[0].starts_with("ACCOUNT "), "{stopped}");
    assert!(
        rows.iter()
            .any(|l| l.starts_with("payments ") && l.contains("demo-freeze")),
        "{stopped}"
    );
    assert!(
        rows.iter()
            .any(|l| l.starts_with("search ") && l.contains("two-hours")),
        "{stopped}"
    );
    assert!(
        !rows
            .iter()
            .any(|l| l.starts_with("search ") && l.contains("demo-freeze")),
        "{stopped}"
    );
}

/// The audit keeps the reason as it was sent (the API takes 200 characters), not a 100,000
/// character rendering the service never saw.
#[tokio::test]
async fn the_audit_keeps_the_reason_as_sent() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let long = "x".repeat(100_000);
    env.write_config(
        "",
        &FREEZE_PROD_NOW.replace(
            "frozen until {until}: {pipeline}",
            &format!("{{pipeline}} {long}"),
        ),
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let records = env.report(&[]).await;
    let reason = records[0]["reason"].as_str().unwrap();
    assert_eq!(reason.chars().count(), 200);
    assert!(reason.starts_with("prod-web xxx"), "{reason}");
    let id = active_or_stopping(&env, "prod-web");
    let sent = env.emulator.execution("prod-web", &id).unwrap().stop_reason;
    assert_eq!(sent.as_deref(), Some(reason));
}

/// `plan` decided without break-glass exemptions when their database could not be read.
#[tokio::test]
async fn plan_refuses_to_guess_when_the_exemptions_cannot_be_read() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", FREEZE_PROD_NOW);
    std::fs::write(env.db(), b"not a database at all, but a file in its place").unwrap();
    let out = env.stopd(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("cannot read break-glass exemptions"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "printed a plan: {}",
        text(&out.stdout)
    );
}

/// Under journald (stderr is `$JOURNAL_STREAM`) every line carries its syslog priority, so
/// `journalctl -p err` finds the errors (seen: every line lost its level). Elsewhere, none.
#[tokio::test]
async fn under_journald_each_line_carries_its_priority() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("stop_deadline = \"1s\"", FREEZE_PROD_NOW);
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Http503,
    ));
    let log = env.db().with_extension("journal");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let mut c = env.command(&["run", "--once"]);
    c.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file);
    let status = tokio::task::spawn_blocking(move || c.status().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let lines = std::fs::read_to_string(&log).unwrap();
    let start = lines
        .lines()
        .find(|l| l.contains("stopd starting"))
        .unwrap();
    assert!(start.starts_with("<6>"), "{start}");
    let failed = lines
        .lines()
        .find(|l| l.contains("stop did not succeed"))
        .unwrap();
    assert!(failed.starts_with("<4>"), "{failed}");
    let sweep = lines.lines().find(|l| l.contains("FAILING")).unwrap();
    assert!(sweep.starts_with("<3>"), "{sweep}");
    // The same run with stderr somewhere else: plain lines.
    let out = env.stopd(&["run", "--once"]).await;
    assert!(!text(&out.stderr).contains("<6>"), "{}", text(&out.stderr));
}

/// Throttles met by stops count in the sweep record (they were always 0).
#[tokio::test]
async fn a_sweep_counts_the_throttles_its_stops_met() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", FREEZE_PROD_NOW);
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::Throttling).times(2));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let out = env.stopd(&["report", "--sweeps", "--format", "json"]).await;
    let sweeps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweeps[0]["throttled"], 2, "{sweeps:?}");
    // ListPipelines, GetPipeline and ListTagsForResource (the rule selects by tag),
    // ListPipelineExecutions, and three stop attempts.
    assert_eq!(sweeps[0]["api_calls"], 1 + 2 + 1 + 3, "{sweeps:?}");
}

/// A missing permission is loud: `run --once` exits 1 and names the operation and the IAM
/// action; the audit row keeps the service's code and message. (Seen: exit 0 when every
/// ListPipelineExecutions failed, and when every stop was denied.)
#[tokio::test]
async fn a_missing_permission_names_the_iam_action_and_fails_the_run() {
    let env = Env::new(&fleet(&[("prod-web", "prod"), ("prod-api", "prod")])).await;
    env.write_config("", FREEZE_PROD_NOW);
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::AccessDenied,
    ));
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("codepipeline:StopPipelineExecution"), "{err}");
    let records = env.report(&["--outcome", "rejected"]).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let e = records[0]["error"].as_str().unwrap();
    assert!(
        e.contains("AccessDeniedException") && e.contains("is not authorized to perform"),
        "{e}"
    );
    // Denied reads: every pipeline unreadable is a failed run too.
    env.emulator.set_faults(Default::default());
    env.emulator.add_fault(FaultRule::new(
        Some("ListPipelineExecutions"),
        Fault::AccessDenied,
    ));
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("codepipeline:ListPipelineExecutions"), "{err}");
    let out = env.stopd(&["report", "--sweeps", "--format", "json"]).await;
    let sweeps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let last = sweeps.last().unwrap();
    assert_eq!(last["errors"], 2, "{last:?}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("codepipeline:ListPipelineExecutions"),
        "{last:?}"
    );
}

/// One ExpiredToken answer is tried once more (the SDK's provider may renew) and the run
/// succeeds.
#[tokio::test]
async fn one_expired_token_answer_is_recovered() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", FREEZE_PROD_NOW);
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::ExpiredToken).times(1));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let records = env.report(&[]).await;
    assert_eq!(records[0]["outcome"], "stopped");
    assert_eq!(records[0]["attempts"], 2);
}
