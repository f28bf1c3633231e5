//! `stopd freeze add` and `stopd exempt add` through the binary: guard rails, the preview of
//! what a wide one would stop, and `--yes`.

use serde_json::Value;
use stopd_emulator::{Fault, FaultRule};

use crate::common::*;
use crate::stops::{FREEZE_PROD_NOW, plan_json};

/// Guard rails of `freeze add` (exit 2, nothing recorded) and what it shows afterwards.
#[tokio::test]
async fn freeze_add_guard_rails_and_the_windows_plan_and_check_that_show_it() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", "");
    for (args, want) in [
        (
            &["--pipeline", "*", "--for", "1h"][..],
            "freezes every pipeline",
        ),
        (
            &["--pipeline", "prod-*", "--for", "2d"][..],
            "more than a day",
        ),
        (
            &["--pipeline", "prod-*", "--for", "99999999999h"][..],
            "longer than",
        ),
        (
            &["--pipeline", "prod-*", "--for", "0s"][..],
            "longer than zero",
        ),
        (
            &["--pipeline", "prod-*", "--for", "1h", "--tag", "novalue"][..],
            "KEY=VALUE",
        ),
        (
            &["--pipeline", "prod-[", "--for", "1h"][..],
            "cannot be enforced: glob \"prod-[\"",
        ),
    ] {
        let mut all = vec!["freeze", "add", "--reason", "INC-1"];
        all.extend_from_slice(args);
        let out = env.stopd(&all).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = env.stopd(&["freeze", "lift", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "lift needs a reason");
    assert!(
        !env.db().exists()
            || env
                .stopd(&["freeze", "list", "--format", "json"])
                .await
                .stdout
                == b"[]\n"
    );
    // A good one: shown by windows, plan and check.
    assert_ok(
        &env.stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "prod-*",
            "--for",
            "1h",
            "--reason",
            "INC-2 {rule} braces",
        ])
        .await,
    );
    let out = env
        .stopd(&["windows", "--days", "1", "--format", "json"])
        .await;
    let windows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0]["rule"], "adhoc-1");
    let plan = plan_json(&env).await;
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0]["rule"], "adhoc-1");
    assert!(
        plan[0]["reason"]
            .as_str()
            .unwrap()
            .contains("INC-2 {rule} braces"),
        "{plan:?}"
    );
    let out = env.stopd(&["check"]).await;
    assert!(
        text(&out.stdout).contains("adhoc-1"),
        "{}",
        text(&out.stdout)
    );
}

/// Pipelines with two stages (so `--gate` has a transition to close) and one running execution.
fn two_stage_fleet(names: &[&str]) -> String {
    let pipelines: Vec<String> = names
        .iter()
        .map(|name| {
            format!(
                r#"{{"name": "{name}", "stages": [
                    {{"name": "Source", "actions": [{{"name": "S", "category": "Approval", "provider": "Manual", "duration": "24h"}}]}},
                    {{"name": "Deploy", "actions": [{{"name": "D", "category": "Deploy", "provider": "CodeDeploy", "duration": "10m"}}]}}],
                  "executions": [{{"status": "InProgress", "started_ago": "5m"}}]}}"#
            )
        })
        .collect();
    format!(r#"{{"pipelines": [{}]}}"#, pipelines.join(","))
}

/// `freeze add --pipeline 'dev-*' --gate` once stopped 33 executions and closed 212 transitions
/// at once. Now it shows what it will do, read live, and beyond five pipelines (or five stops)
/// refuses without --yes (exit 2, nothing recorded, nothing stopped or closed); with --yes it
/// freezes. A narrow freeze shows its preview and goes ahead.
#[tokio::test]
async fn a_wide_freeze_shows_its_preview_and_needs_yes() {
    let names: Vec<String> = (1..=7).map(|k| format!("dev-{k}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("prod-web");
    let env = Env::new(&two_stage_fleet(&all)).await;
    env.write_config("", "");
    let wide = [
        "freeze",
        "add",
        "--pipeline",
        "dev-*",
        "--gate",
        "--for",
        "30m",
        "--reason",
        "INC-7",
    ];
    let out = env.stopd(&wide).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let (shown, err) = (text(&out.stdout), text(&out.stderr));
    assert!(shown.contains("7 pipelines frozen"), "{shown}");
    assert!(shown.contains("7 running executions stopped"), "{shown}");
    assert!(
        shown.contains("7 stage transitions closed (--gate)") && shown.contains("dev-3 Deploy"),
        "{shown}"
    );
    assert!(!shown.contains("prod-web"), "{shown}");
    assert!(
        err.contains("7 pipelines, more than 5") && err.contains("--yes"),
        "{err}"
    );
    assert!(
        !env.db().exists()
            || env
                .stopd(&["freeze", "list", "--format", "json"])
                .await
                .stdout
                == b"[]\n",
        "a refusal records nothing"
    );
    let calls = env.emulator.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.operation != "StopPipelineExecution"
                && c.operation != "DisableStageTransition"),
        "the preview changed something"
    );
    let out = env.stopd(&[&wide[..], &["--yes"]].concat()).await;
    assert_ok(&out);
    assert!(text(&out.stdout).contains("freeze #1 (adhoc-1)"));
    // One pipeline: previewed, and frozen without --yes.
    let out = env
        .stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "prod-web",
            "--for",
            "30m",
            "--reason",
            "INC-8",
        ])
        .await;
    assert_ok(&out);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("1 pipelines frozen\n    prod-web\n")
            && shown.contains("1 running executions stopped")
            && shown.contains("freeze #2"),
        "{shown}"
    );
}

/// When CodePipeline cannot be reached the preview says so and the freeze or exemption needs
/// --yes: a wide action never goes ahead unseen.
#[tokio::test]
async fn freeze_and_exempt_without_a_preview_need_yes() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", "");
    // Denied is not retried: the listing fails at once (a closed port is retried for 10 s).
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::AccessDenied));
    for args in [
        &["freeze", "add", "--pipeline", "prod-web", "--for", "1h"][..],
        &["exempt", "add", "--pipeline", "prod-web", "--for", "1h"][..],
    ] {
        let out = env.stopd(&[args, &["--reason", "r"]].concat()).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let (shown, err) = (text(&out.stdout), text(&out.stderr));
        assert!(
            shown.contains("incomplete") && shown.contains("cannot list pipelines"),
            "{shown}"
        );
        assert!(
            err.contains("cannot be shown") && err.contains("--yes"),
            "{err}"
        );
        assert!(!env.db().exists(), "a refusal records nothing");
    }
    for args in [
        &["freeze", "add", "--pipeline", "prod-web", "--for", "1h"][..],
        &["exempt", "add", "--pipeline", "prod-web", "--for", "1h"][..],
    ] {
        let out = env
            .stopd(&[args, &["--reason", "r", "--yes"]].concat())
            .await;
        assert_ok(&out);
        assert!(text(&out.stdout).contains("#1"), "{}", text(&out.stdout));
    }
}

/// `exempt add` of many pipelines shows them, and what it lets through, and needs --yes.
#[tokio::test]
async fn a_wide_exemption_shows_its_preview_and_needs_yes() {
    let names: Vec<String> = (1..=6).map(|k| format!("prod-{k}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "prod")).collect();
    let env = Env::new(&fleet(&pairs)).await;
    env.write_config("", FREEZE_PROD_NOW);
    let args = [
        "exempt",
        "add",
        "--pipeline",
        "prod-*",
        "--for",
        "1h",
        "--reason",
        "INC-9",
    ];
    let out = env.stopd(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("6 pipelines exempted")
            && shown.contains("6 running executions it lets through"),
        "{shown}"
    );
    assert!(text(&out.stderr).contains("6 pipelines, more than 5"));
    assert!(!env.db().exists(), "a refusal records nothing");
    assert_ok(&env.stopd(&[&args[..], &["--yes"]].concat()).await);
    let out = env
        .stopd(&[
            "exempt",
            "add",
            "--pipeline",
            "prod-1",
            "--for",
            "1h",
            "--reason",
            "INC-9",
        ])
        .await;
    assert_ok(&out);
    assert!(text(&out.stdout).contains("1 pipelines exempted"));
}
