//! `stopd run` as a long-running process: window edges, reload, SIGTERM, escalation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use stopd_emulator::{Fault, FaultRule};

use crate::common::*;

/// A schedule that never fires during a test: only window edges wake the daemon.
const RARE: &str = "schedule = \"0 0 1 1 *\"";

fn one_off(name: &str, start: DateTime<Utc>, extra: &str) -> String {
    format!(
        "[[freeze]]\nname = \"{name}\"\nstart = \"{}\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-*\"]\n{extra}\n",
        rfc(start)
    )
}

fn at_of(record: &serde_json::Value) -> DateTime<Utc> {
    record["at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_freeze_that_opens_while_running_is_enforced_within_a_second() {
    let env = Env::new(&fleet(&[("prod-web", "prod"), ("dev-web", "dev")])).await;
    let start = Utc::now() + chrono::Duration::seconds(3);
    let start = start - chrono::Duration::nanoseconds(i64::from(start.timestamp_subsec_nanos()));
    env.write_config(RARE, &one_off("opens-soon", start, ""));
    let child = env.spawn(&["run"]);
    // The start-up sweep sees the window closed and stops nothing.
    assert!(env.wait_for_first_listing().await, "the start-up sweep ran");
    assert_eq!(env.stop_calls(), 0);
    assert!(
        wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await,
        "stopped at the edge"
    );
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1);
    let lag = at_of(&records[0]) - start;
    assert!(
        lag >= chrono::Duration::zero() && lag < chrono::Duration::seconds(1),
        "decided {lag:?} after the window opened"
    );
    // The sweep log shows a start-up sweep and an edge sweep.
    let out = env.stopd(&["report", "--sweeps", "--format", "json"]).await;
    let sweeps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let triggers: Vec<&str> = sweeps
        .iter()
        .map(|s| s["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers[..2], ["startup", "edge"], "{triggers:?}");
}

#[tokio::test]
async fn reload_with_a_broken_file_keeps_enforcing_the_last_good_policy() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let start = Utc::now() + chrono::Duration::seconds(3);
    env.write_config(RARE, &one_off("opens-soon", start, ""));
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await, "the start-up sweep ran");
    std::fs::write(
        env.config_path(),
        "[[freeze]]\nname = \"broken\"\ncron = \"every day\"\n",
    )
    .unwrap();
    signal(&child, "HUP");
    assert!(
        wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await,
        "the old policy's window was enforced after a refused reload"
    );
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    let err = text(&out.stderr);
    assert!(err.contains("reload refused"), "{err}");
    assert!(
        err.contains("stopd.toml:3:1: freeze[0].cron"),
        "the reason names the place: {err}"
    );
}

#[tokio::test]
async fn sigterm_mid_sweep_records_in_flight_stops_and_exits_0() {
    let env = Env::new(&fleet(&[
        ("prod-a", "prod"),
        ("prod-b", "prod"),
        ("prod-c", "prod"),
    ]))
    .await;
    env.write_config(
        &format!("{RARE}\nstop_concurrency = 1\nshutdown_timeout = \"10s\""),
        &one_off("now", Utc::now() - chrono::Duration::hours(1), ""),
    );
    // Each stop takes effect at once and is answered 1.5 s later.
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Delay { delay_ms: 1_500 },
    ));
    let child = env.spawn(&["run"]);
    assert!(wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await);
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(15)).await;
    assert_ok(&out);
    assert_eq!(env.stop_calls(), 1, "no new stop started after SIGTERM");
    let records = env.report(&[]).await;
    assert_eq!(
        records.len(),
        1,
        "only the in-flight stop was recorded: {records:?}"
    );
    assert_eq!(
        records[0]["outcome"], "stopped",
        "its outcome was awaited and recorded"
    );
    let out = env.stopd(&["report", "--sweeps", "--format", "json"]).await;
    let sweeps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        sweeps[0]["finished_at"].is_string(),
        "the sweep was closed: {sweeps:?}"
    );
}

#[tokio::test]
async fn sigterm_cuts_a_stop_short_after_the_bound_and_records_it_failed() {
    let env = Env::new(&fleet(&[("prod-a", "prod")])).await;
    env.write_config(
        &format!("{RARE}\nshutdown_timeout = \"300ms\""),
        &one_off("now", Utc::now() - chrono::Duration::hours(1), ""),
    );
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Http503,
    ));
    let child = env.spawn(&["run"]);
    assert!(wait_for(Duration::from_secs(10), || env.stop_calls() >= 1).await);
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    let records = env.report(&[]).await;
    assert_eq!(records[0]["outcome"], "failed");
    assert!(
        records[0]["error"]
            .as_str()
            .unwrap()
            .contains("cut short by shutdown"),
        "{:?}",
        records[0]
    );
}

#[tokio::test]
async fn a_stop_and_wait_still_stopping_is_escalated_to_abandon() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config(
        RARE,
        &one_off(
            "now",
            Utc::now() - chrono::Duration::hours(1),
            "escalate_after = \"2s\"",
        ),
    );
    let id = active(&env, "prod-web");
    let child = env.spawn(&["run"]);
    assert!(wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await);
    assert_eq!(
        env.emulator.execution("prod-web", &id).unwrap().status,
        "Stopping"
    );
    assert!(
        wait_for(Duration::from_secs(10), || env.stop_calls() == 2).await,
        "escalated at its deadline"
    );
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);
    let view = env.emulator.execution("prod-web", &id).unwrap();
    assert!(view.abandoned, "{view:?}");
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["mode"], "finish");
    assert_eq!(records[1]["mode"], "abandon");
    assert_eq!(records[1]["escalation_of"], records[0]["id"]);
    let gap = at_of(&records[1]) - at_of(&records[0]);
    assert!(
        // Never early; late only by a wake-up and a sweep (generous for loaded CI machines).
        gap >= chrono::Duration::seconds(2) && gap < chrono::Duration::seconds(5),
        "{gap:?}"
    );
}

#[tokio::test]
async fn sigterm_during_run_once_drains_like_the_daemon() {
    let env = Env::new(&fleet(&[
        ("prod-a", "prod"),
        ("prod-b", "prod"),
        ("prod-c", "prod"),
    ]))
    .await;
    env.write_config(
        "stop_concurrency = 1",
        &one_off("now", Utc::now() - chrono::Duration::hours(1), ""),
    );
    env.emulator.add_fault(FaultRule::new(
        Some("StopPipelineExecution"),
        Fault::Delay { delay_ms: 1_500 },
    ));
    let child = env.spawn(&["run", "--once"]);
    assert!(wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await);
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(15)).await;
    // Two decided stops were never started: not every stop is final, so 1.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(env.stop_calls(), 1, "no new stop started after SIGTERM");
    let records = env.report(&[]).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["outcome"], "stopped",
        "the in-flight stop was awaited and recorded"
    );
}

#[tokio::test]
async fn a_second_run_on_the_same_database_is_refused_while_the_first_sweeps() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let later = Utc::now() + chrono::Duration::days(30);
    env.write_config(RARE, &one_off("later", later, ""));
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await, "the start-up sweep ran");
    let listings = || {
        env.emulator
            .calls()
            .iter()
            .filter(|c| c.operation == "ListPipelines")
            .count()
    };
    let before = listings();
    let second = env.stopd(&["run", "--once"]).await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stderr));
    let err = text(&second.stderr);
    assert!(
        err.contains(&format!("another `stopd run` (pid {})", child.id())),
        "{err}"
    );
    assert_eq!(listings(), before, "the refused run swept nothing");
    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(10)).await);
    // The lock went with the process: the next run starts.
    assert_ok(&env.stopd(&["run", "--once"]).await);
}

/// A break-glass exemption revoked with the CLI beside a running daemon is seen within two
/// seconds (SQLite's data_version), not at the next tick (here: next new year).
#[tokio::test]
async fn an_exemption_revoked_beside_a_running_daemon_is_enforced_within_seconds() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config(
        RARE,
        &one_off("frozen", Utc::now() - chrono::Duration::hours(1), ""),
    );
    assert_ok(
        &env.stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-web",
            "--for",
            "2h",
            "--reason",
            "hotfix",
        ])
        .await,
    );
    // `exempt add` listed the pipelines for its preview: wait for the daemon's own listing.
    let before = env.listings();
    let child = env.spawn(&["run"]);
    assert!(
        env.wait_for_listing_after(before).await,
        "the start-up sweep ran"
    );
    assert_eq!(env.stop_calls(), 0, "exempt");
    assert_ok(&env.stopd(&["exempt", "revoke", "1"]).await);
    // The schedule would not sweep again before next year: only the change can wake it.
    assert!(
        wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await,
        "stopped after the revocation"
    );
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    assert!(
        text(&out.stderr).contains("database changed"),
        "{}",
        text(&out.stderr)
    );
}

/// Stop the line: a freeze added with the CLI beside a running daemon is enforced within
/// seconds (the schedule would not sweep before next year), audited with the actor and reason;
/// an exemption still wins; lifted, it stops nothing more.
#[tokio::test]
async fn an_adhoc_freeze_beside_a_running_daemon_stops_within_seconds() {
    let env = Env::new(&fleet(&[
        ("prod-web", "prod"),
        ("prod-api", "prod"),
        ("dev-web", "dev"),
    ]))
    .await;
    env.write_config(RARE, "");
    assert_ok(
        &env.stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-api",
            "--for",
            "2h",
            "--reason",
            "hotfix lane",
        ])
        .await,
    );
    let before = env.listings();
    let child = env.spawn(&["run"]);
    assert!(
        env.wait_for_listing_after(before).await,
        "the start-up sweep ran"
    );
    assert_eq!(env.stop_calls(), 0);
    let out = env
        .stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "prod-*",
            "--for",
            "2h",
            "--reason",
            "INC-42 failover",
        ])
        .await;
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("freeze #1 (adhoc-1)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await,
        "stopped after the freeze was added"
    );
    let records = env.report(&[]).await;
    assert_eq!(
        records.len(),
        1,
        "the exempt prod-api and dev-web were spared"
    );
    assert_eq!(records[0]["pipeline"], "prod-web");
    assert_eq!(records[0]["rule"], "adhoc-1");
    assert_eq!(records[0]["rule_kind"], "freeze");
    let reason = records[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("stop the line by ")
            && reason.contains("uid ")
            && reason.contains("INC-42 failover"),
        "{reason}"
    );
    // Lifted: a new execution is not stopped.
    assert_ok(
        &env.stopd(&["freeze", "lift", "1", "--reason", "INC-42 resolved"])
            .await,
    );
    let started = env.emulator.start_execution("prod-web").unwrap();
    assert_ok(&env.stopd(&["exempt", "revoke", "1"]).await);
    // The revocation wakes the daemon (a sweep follows); nothing is stopped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.stop_calls(), 1, "{started} was stopped after the lift");
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    let out = env.stopd(&["freeze", "list", "--format", "json"]).await;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["lift_reason"], "INC-42 resolved");
    assert!(list[0]["lifted_at"].is_string());
}

#[tokio::test]
async fn sigterm_during_discovery_records_an_interrupted_sweep_not_a_failure() {
    let env = Env::new(&fleet(&[("prod-a", "prod"), ("dev-a", "dev")])).await;
    // A freeze open since an hour ago, selecting nothing: coverage has a window to judge.
    env.write_config(
        RARE,
        &one_off("watched", Utc::now() - chrono::Duration::hours(1), "")
            .replace("[\"prod-*\"]", "[\"none-*\"]"),
    );
    // The listing hangs, so SIGTERM arrives while the start-up sweep discovers.
    env.emulator.add_fault(FaultRule::new(
        Some("ListPipelines"),
        Fault::Delay { delay_ms: 60_000 },
    ));
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await, "discovery began");
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(20)).await;
    assert_ok(&out);
    let err = text(&out.stderr);
    assert!(!err.contains("ERROR"), "a clean stop logs no error:\n{err}");
    assert!(err.contains("interrupted"), "{err}");

    let out = env.stopd(&["report", "--sweeps", "--format", "json"]).await;
    assert_ok(&out);
    let sweeps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    assert_eq!(sweeps[0]["result"], "interrupted", "{sweeps:?}");
    assert!(sweeps[0]["error"].is_null(), "{sweeps:?}");
    let out = env.stopd(&["report", "--sweeps", "--wide"]).await;
    assert!(
        text(&out.stdout).contains("interrupted"),
        "{}",
        text(&out.stdout)
    );

    let out = env.stopd(&["status", "--format", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "not running: {}",
        text(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["last_sweep_result"], "interrupted", "{status}");
    assert!(status["last_sweep_ok"].is_null(), "{status}");
    let out = env.stopd(&["status"]).await;
    assert!(
        text(&out.stdout).contains("interrupted"),
        "{}",
        text(&out.stdout)
    );

    // Neither watched nor failed: the time after the clean stop is not_running.
    let out = env
        .stopd(&["report", "--coverage", "--since", "2h", "--format", "json"])
        .await;
    assert_ok(&out);
    let coverage: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let causes: Vec<&str> = coverage
        .iter()
        .flat_map(|w| w["gaps"].as_array().unwrap())
        .map(|g| g["cause"].as_str().unwrap())
        .collect();
    assert!(!causes.contains(&"sweep_failed"), "{coverage:?}");

    // The new column keeps the hash chain valid.
    let out = env.stopd(&["verify"]).await;
    assert_ok(&out);
}
