//! `stopd status` and `[metrics]` against a running daemon, and without one.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A sweep every 5 s: stale after 15 s without a good one.
const EVERY_5S: &str = "schedule = \"*/5 * * * * *\"";

fn status_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status is JSON ({e}):\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

#[tokio::test]
async fn status_says_not_running_and_exits_1_without_a_daemon() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config(EVERY_5S, "");
    let out = env.stopd(&["status", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = status_json(&out);
    assert_eq!(s["running"], false);
    assert_eq!(s["pid"], Value::Null);
    assert_eq!(s["last_sweep_at"], Value::Null);
    assert_eq!(s["policy_hash"], Value::Null);
    assert_eq!(s["policy_on_disk_hash"].as_str().unwrap().len(), 64);
    // After a run --once there is a last sweep and a policy, but still no daemon.
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let out = env.stopd(&["status", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let s = status_json(&out);
    assert_eq!(s["running"], false);
    assert_eq!(s["last_sweep_ok"], true);
    assert_eq!(s["policy_hash"], s["policy_on_disk_hash"]);
    let table = env.stopd(&["status"]).await;
    assert!(
        text(&table.stdout).contains("NOT RUNNING"),
        "{}",
        text(&table.stdout)
    );
}

#[tokio::test]
async fn status_of_a_running_daemon_names_its_pid_and_sees_a_pending_reload() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config(
        &format!("{EVERY_5S}\n\n[metrics]\nlisten = \"127.0.0.1:0\""),
        "[[timeout]]\nname = \"two-hours\"\nmax_duration = \"2h\"\n",
    );
    let child = env.spawn(&["run"]);
    assert!(env.wait_for_first_listing().await, "the start-up sweep ran");
    // The first sweep may still be recording: poll until status says healthy (exit 0).
    let started = std::time::Instant::now();
    let s = loop {
        let out = env.stopd(&["status", "--format", "json"]).await;
        let s = status_json(&out);
        if out.status.code() == Some(0) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never healthy: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(s["running"], true);
    assert_eq!(s["pid"], child.id());
    assert_eq!(s["last_sweep_ok"], true);
    assert_eq!(s["reload_pending"], false);
    assert_eq!(s["rules_in_force"][0]["rule"], "two-hours");
    // Edit the file without reloading: the hash on disk differs from the one in force.
    let mut text_now = std::fs::read_to_string(env.config_path()).unwrap();
    text_now.push_str("\n# edited\n");
    std::fs::write(env.config_path(), text_now).unwrap();
    let out = env.stopd(&["status", "--format", "json"]).await;
    let s = status_json(&out);
    assert_eq!(s["reload_pending"], true, "{s:#}");
    assert_ne!(s["policy_hash"], s["policy_on_disk_hash"]);
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(10)).await;
    assert_ok(&out);
    assert!(
        text(&out.stderr).contains("metrics listening on http://127.0.0.1:"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 25, item 2: a daemon sweeping every 2 s on schedule, its quiet sweeps grouped into a
/// run still open (written every 5 minutes), is healthy for `status` and watching for
/// `report --coverage --fail-on-gap` once its last sweep written whole (the start-up one) is
/// older than three intervals (6 s) and than what one sweep covers (2 x 2 s + 5 s); the two
/// agree with `/healthz`.
#[tokio::test]
async fn a_daemon_whose_quiet_sweeps_are_grouped_into_an_open_run_is_healthy_and_watching() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config(
        "schedule = \"*/2 * * * * *\"",
        "[[freeze]]\nname = \"freeze-now\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\npipelines = [\"dev-*\"]\n",
    );
    let since = rfc(chrono::Utc::now() - chrono::Duration::seconds(1));
    let child = env.spawn(&["run"]);
    let listings = || {
        env.emulator
            .calls()
            .iter()
            .filter(|c| c.operation == "ListPipelines")
            .count()
    };
    // The start-up sweep and six scheduled ones: at least 12 s of quiet sweeps in one run.
    assert!(
        wait_for(Duration::from_secs(40), || listings() >= 7).await,
        "the daemon did not sweep on schedule"
    );
    let whole = env.report(&["--sweeps"]).await;
    assert_eq!(
        whole.len(),
        1,
        "only the start-up sweep is written whole: {whole:#?}"
    );

    let out = env.stopd(&["status", "--format", "json"]).await;
    let s = status_json(&out);
    assert_eq!(out.status.code(), Some(0), "{s:#}");
    assert_eq!(s["healthy"], true, "{s:#}");
    assert_eq!(s["last_sweep_ok"], true, "{s:#}");
    assert!(s["last_sweep_age_seconds"].as_i64().unwrap() <= 6, "{s:#}");
    assert!(
        s["last_success_at"].as_str() > whole[0]["finished_at"].as_str(),
        "{s:#}"
    );

    let out = env
        .stopd(&["report", "--coverage", "--since", &since, "--fail-on-gap"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let coverage = env.report(&["--coverage", "--since", &since]).await;
    assert_eq!(coverage.len(), 1, "{coverage:#?}");
    assert_eq!(coverage[0]["gaps"], serde_json::json!([]), "{coverage:#?}");
    assert!(coverage[0]["watched_seconds"].as_f64().unwrap() >= 10.0);

    signal(&child, "TERM");
    assert_ok(&wait_exit(child, Duration::from_secs(20)).await);
    // At shutdown the run is written (chained) and nothing is left open.
    assert!(env.report(&["--sweeps"]).await.len() >= 2);
    assert_ok(&env.stopd(&["verify"]).await);
}
