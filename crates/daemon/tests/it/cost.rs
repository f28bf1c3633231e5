//! Issue 26: valid policies whose windows are costly (an every-second cron; 2,000 hourly
//! freezes of 100 years) must not stall `check`, `windows`, `run --once`, a sweep or a reload,
//! nor keep the daemon from honouring SIGTERM. The limits below are hang guards, not latency
//! bounds: before the fix each of these ran for minutes.

use std::process::{Child, Output};
use std::time::Duration;

use crate::common::*;

/// A schedule that never fires during a test: only window edges and signals wake the daemon.
const RARE: &str = "schedule = \"0 0 1 1 *\"";

/// How long a command may run before the test calls it hung.
const HANG: Duration = Duration::from_secs(60);

/// The policies of the report, by name.
fn pathological() -> Vec<(&'static str, String)> {
    let every_second = |d: &str| {
        format!(
            "[[freeze]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nduration = \"{d}\"\npipelines = [\"prod-*\"]\n"
        )
    };
    let century: String = (0..2_000)
        .map(|i| {
            format!(
                "[[freeze]]\nname = \"century-{i}\"\ncron = \"{} * * * *\"\nduration = \"36525days\"\npipelines = [\"prod-*\"]\n",
                i % 60
            )
        })
        .collect();
    vec![
        ("every second for 1h", every_second("1h")),
        ("every second for 1s", every_second("1s")),
        ("2,000 hourly freezes of 100 years", century),
    ]
}

/// Waits for `child` at most [`HANG`]; kills it (and fails) if it is still running.
async fn finish(child: Child, what: &str) -> Output {
    let pid = child.id();
    let waited = tokio::time::timeout(
        HANG,
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await;
    match waited {
        Ok(out) => out.expect("wait task"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} did not finish within {HANG:?}");
        }
    }
}

/// Asserts `ok`, killing `child` first if it is false (a hung daemon must not outlive the test).
fn assert_or_kill(ok: bool, child: &Child, what: &str) {
    if !ok {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status();
    }
    assert!(ok, "{what}");
}

#[tokio::test]
async fn check_and_windows_finish_on_costly_policies() {
    let env = Env::new(&fleet(&[])).await;
    for (name, rules) in pathological() {
        env.write_config("", &rules);
        let out = finish(env.spawn(&["check"]), &format!("check of {name}")).await;
        assert_ok(&out);
        let s = text(&out.stdout);
        assert!(s.contains("OK"), "{name}: {s}");
        // Each of these freezes is in force without a gap.
        assert!(
            s.contains("(its windows leave no gap in the next 366 days)"),
            "{name}: {s}"
        );
        let out = finish(
            env.spawn(&["windows", "--days", "366", "--format", "json"]),
            &format!("windows of {name}"),
        )
        .await;
        assert_ok(&out);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = rows.as_array().unwrap();
        let rules = if name.starts_with("2,000") { 2_000 } else { 1 };
        assert_eq!(rows.len(), rules, "{name}: one merged window per rule");
    }
    assert!(env.emulator.calls().is_empty());
}

#[tokio::test]
async fn windows_lists_at_most_ten_thousand_and_says_so() {
    let env = Env::new(&fleet(&[])).await;
    // A window every minute for a year: 527,040 of them.
    env.write_config(
        "",
        "[[freeze]]\nname = \"blink\"\ncron = \"* * * * *\"\nduration = \"1s\"\n",
    );
    let out = finish(
        env.spawn(&["windows", "--days", "366", "--format", "json"]),
        "windows",
    )
    .await;
    assert_ok(&out);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 10_000);
    let err = text(&out.stderr);
    assert!(err.contains("showing the first 10000 windows"), "{err}");
}

#[tokio::test]
async fn run_once_and_sigterm_are_prompt_under_costly_policies() {
    for (name, rules) in pathological() {
        let env = Env::new(&fleet(&[("prod-web", "prod"), ("dev-web", "dev")])).await;
        env.write_config(RARE, &rules);
        let out = finish(
            env.spawn(&["run", "--once"]),
            &format!("run --once of {name}"),
        )
        .await;
        assert_ok(&out);
        assert_eq!(env.stop_calls(), 1, "{name}: prod-web stopped, dev-web not");

        // The daemon: its start-up sweep, then SIGTERM.
        let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
        env.write_config(RARE, &rules);
        let child = env.spawn(&["run"]);
        let stopped = wait_for(HANG, || env.stop_calls() == 1).await;
        assert_or_kill(
            stopped,
            &child,
            &format!("{name}: the start-up sweep stopped prod-web"),
        );
        signal(&child, "TERM");
        let out = finish(child, &format!("the daemon under {name} after SIGTERM")).await;
        assert_ok(&out);
    }
}

#[tokio::test]
async fn a_reload_to_a_costly_policy_sweeps_and_sigterm_still_ends_the_daemon() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    // Nothing in force until the reload.
    env.write_config(
        RARE,
        "[[freeze]]\nname = \"later\"\nstart = \"2099-01-01T00:00:00Z\"\nend = \"2099-01-02T00:00:00Z\"\n",
    );
    let child = env.spawn(&["run"]);
    let listed = env.wait_for_first_listing().await;
    assert_or_kill(listed, &child, "the start-up sweep ran");
    assert_eq!(env.stop_calls(), 0);
    let (_, rules) = pathological().swap_remove(0);
    env.write_config(RARE, &rules);
    signal(&child, "HUP");
    let stopped = wait_for(HANG, || env.stop_calls() == 1).await;
    assert_or_kill(
        stopped,
        &child,
        "the sweep after the reload enforced the new policy",
    );
    // A second reload, then SIGTERM at once: neither holds the daemon.
    let (_, rules) = pathological().swap_remove(2);
    env.write_config(RARE, &rules);
    signal(&child, "HUP");
    signal(&child, "TERM");
    let out = finish(child, "the daemon after SIGHUP and SIGTERM").await;
    assert_ok(&out);
    let err = text(&out.stderr);
    assert!(err.contains("policy reloaded"), "{err}");
}
