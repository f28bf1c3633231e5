//! `stopd run` as a long-running process, end to end on real time: reload, signals, the instance
//! lock, changes made with the CLI beside it. No test here asserts how fast anything happens;
//! what depends on time (edges, backoff, escalation, expiry) is tested on a manual clock in
//! `clocked.rs`.

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

/// A refused reload (a broken file) leaves the last good policy in force: the next sweep (here
/// woken by an exemption's revocation, the schedule being a year away) still enforces it.
#[tokio::test]
async fn reload_with_a_broken_file_keeps_enforcing_the_last_good_policy() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config(
        RARE,
        &one_off("frozen", Utc::now() - chrono::Duration::hours(1), ""),
    );
    // Exempt at first: the start-up sweep stops nothing.
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
    let before = env.listings();
    let child = env.spawn(&["run"]);
    assert!(
        env.wait_for_listing_after(before).await,
        "the start-up sweep ran"
    );
    assert_eq!(env.stop_calls(), 0, "exempt");
    // Commands read a copy of the good file: the daemon's own is broken from now on.
    let good = env.dir.path().join("good.toml");
    std::fs::copy(env.config_path(), &good).unwrap();
    std::fs::write(
        env.config_path(),
        "[[freeze]]\nname = \"broken\"\ncron = \"every day\"\n",
    )
    .unwrap();
    signal(&child, "HUP");
    let refused = || {
        let out = env
            .command(&[
                "--config",
                path_str(&good),
                "report",
                "--events",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap()
            .iter()
            .any(|e| e["event"] == "reload" && e["result"] == "refused")
    };
    assert!(
        wait_for(Duration::from_secs(20), refused).await,
        "the refused reload was recorded"
    );
    let mut revoke = env.command(&["--config", path_str(&good), "exempt", "revoke", "1"]);
    let out = tokio::task::spawn_blocking(move || revoke.output().unwrap())
        .await
        .unwrap();
    assert_ok(&out);
    assert!(
        wait_for(Duration::from_secs(10), || env.stop_calls() == 1).await,
        "the policy kept after the refused reload was enforced"
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

/// A break-glass exemption revoked with the CLI beside a running daemon wakes it (SQLite's
/// data_version): it is enforced without waiting for the next tick (here: next new year).
#[tokio::test]
async fn an_exemption_revoked_beside_a_running_daemon_is_enforced_without_waiting_for_a_tick() {
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

/// Stop the line: a freeze added with the CLI beside a running daemon wakes it (the schedule
/// would not sweep before next year) and is enforced, audited with the actor and reason; an
/// exemption still wins; it is lifted with a reason.
#[tokio::test]
async fn an_adhoc_freeze_beside_a_running_daemon_is_enforced_without_waiting_for_a_tick() {
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
    // Lifted beside the running daemon (what a lifted freeze no longer stops, on a manual
    // clock: `clocked::an_adhoc_freeze_holds_from_its_start_until_lifted_or_expired`).
    assert_ok(
        &env.stopd(&["freeze", "lift", "1", "--reason", "INC-42 resolved"])
            .await,
    );
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
