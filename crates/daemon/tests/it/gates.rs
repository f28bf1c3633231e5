//! Gates (`gate = true`): transitions closed while a gating freeze is open and released after,
//! a person's hold left alone, a restart after the freeze releasing what stopd closed and
//! nothing else, a waiting execution spared and proceeding, dry runs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// One pipeline, three stages; one execution in Build (a day-long approval).
fn staged(names: &[&str]) -> String {
    let pipelines: Vec<String> = names
        .iter()
        .map(|name| {
            format!(
                r#"{{"name": "{name}", "tags": {{"env": "prod"}}, "stages": [
                    {{"name": "Source", "actions": [{{"name": "S", "category": "Source", "provider": "CodeStarSourceConnection", "duration": "1s"}}]}},
                    {{"name": "Build", "actions": [{{"name": "B", "category": "Approval", "provider": "Manual", "duration": "24h"}}]}},
                    {{"name": "Deploy", "actions": [{{"name": "D", "category": "Deploy", "provider": "CodeDeploy", "duration": "10m"}}]}}],
                  "executions": [{{"status": "InProgress", "started_ago": "5m"}}]}}"#
            )
        })
        .collect();
    format!(r#"{{"pipelines": [{}]}}"#, pipelines.join(","))
}

fn gated_freeze(end: &str, extra: &str) -> String {
    format!(
        "[[freeze]]\nname = \"release\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"{end}\"\npipelines = [\"prod-*\"]\ngate = true\nreason = \"Release freeze until {{until}}\"\n{extra}\n"
    )
}

/// Inbound transitions of a pipeline: stage -> (enabled, disabledReason).
fn transitions(env: &Env, pipeline: &str) -> Vec<(String, bool, Option<String>)> {
    let mut w = env.emulator.lock();
    let state =
        stopd_emulator::api::dispatch(&mut w, "GetPipelineState", &json!({"name": pipeline}))
            .unwrap_or_else(|e| panic!("{}", e.message));
    state["stageStates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let t = &s["inboundTransitionState"];
            (
                s["stageName"].as_str().unwrap().to_string(),
                t["enabled"].as_bool().unwrap_or(true),
                t["disabledReason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn person_disables(env: &Env, pipeline: &str, stage: &str, reason: &str) {
    let mut w = env.emulator.lock();
    stopd_emulator::api::dispatch(
        &mut w,
        "DisableStageTransition",
        &json!({"pipelineName": pipeline, "stageName": stage, "transitionType": "Inbound", "reason": reason}),
    )
    .unwrap_or_else(|e| panic!("{}", e.message));
}

async fn gate_log(env: &Env) -> Vec<Value> {
    let out = env.stopd(&["report", "--gates", "--format", "json"]).await;
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn summary(log: &[Value]) -> Vec<(String, String, String)> {
    log.iter()
        .map(|g| {
            (
                g["stage"].as_str().unwrap().to_string(),
                g["action"].as_str().unwrap().to_string(),
                g["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `plan` says what it would do, in the future tense, and names the transitions it would close;
/// a one-stage pipeline has no inbound transition to gate, and plan says so.
#[tokio::test]
async fn plan_says_which_gates_would_close_and_that_a_one_stage_pipeline_has_none() {
    let one = r#"{"name": "prod-solo", "tags": {"env": "prod"}, "stages": [
        {"name": "Source", "actions": [{"name": "S", "category": "Source", "provider": "CodeStarSourceConnection", "duration": "1s"}]}],
        "executions": []}"#;
    let fleet = staged(&["prod-web"]).replacen("[", &format!("[{one},"), 1);
    let env = Env::new(&fleet).await;
    env.write_config("", &gated_freeze("2100-01-01T00:00:00Z", ""));
    let plan = env.stopd(&["plan"]).await;
    assert_ok(&plan);
    let s = text(&plan.stdout);
    assert!(
        s.contains("gate would close: prod-web Build, Deploy (by release)"),
        "{s}"
    );
    assert!(
        s.contains("no gate to close: prod-solo has one stage, so no inbound transition to gate"),
        "{s}"
    );
    assert!(
        !s.contains("gate closed") && !s.contains("every stage after the first"),
        "{s}"
    );
}

#[tokio::test]
async fn gates_close_in_the_freeze_keep_a_persons_hold_and_a_restart_after_releases_only_its_own() {
    let env = Env::new(&staged(&["prod-web"])).await;
    person_disables(&env, "prod-web", "Deploy", "ops hold for INC-7");
    env.write_config("", &gated_freeze("2100-01-01T00:00:00Z", ""));
    let plan = env.stopd(&["plan"]).await;
    assert!(
        text(&plan.stdout).contains("gate would close: prod-web Build, Deploy (by release)"),
        "{}",
        text(&plan.stdout)
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let t = transitions(&env, "prod-web");
    assert_eq!(t[1].0, "Build");
    assert!(!t[1].1, "Build closed: {t:?}");
    assert_eq!(
        t[1].2.as_deref(),
        Some("Release freeze until 2100-01-01T00 00 00Z")
    );
    assert_eq!(t[2].2.as_deref(), Some("ops hold for INC-7"), "{t:?}");
    assert!(t[0].1, "the first stage is never gated");
    let log = gate_log(&env).await;
    assert_eq!(
        summary(&log),
        [
            ("Build".into(), "disable".into(), "done".into()),
            ("Deploy".into(), "disable".into(), "already_disabled".into()),
        ]
    );
    assert_eq!(log[0]["rule"], "release");
    assert!(log[0]["error"].is_null());
    // Level-triggered: a person opens Build during the freeze; the next sweep closes it again,
    // and records nothing new for the person's own hold.
    {
        let mut w = env.emulator.lock();
        stopd_emulator::api::dispatch(
            &mut w,
            "EnableStageTransition",
            &json!({"pipelineName": "prod-web", "stageName": "Build", "transitionType": "Inbound"}),
        )
        .unwrap();
    }
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(!transitions(&env, "prod-web")[1].1, "closed again");
    assert_eq!(gate_log(&env).await.len(), 3);
    // The freeze ended while stopd was down: the next start releases Build, not Deploy.
    env.write_config("", &gated_freeze("2021-01-01T00:00:00Z", ""));
    let plan = env.stopd(&["plan"]).await;
    assert!(
        text(&plan.stdout).contains("gate would open: prod-web Build (held for release"),
        "{}",
        text(&plan.stdout)
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let t = transitions(&env, "prod-web");
    assert!(t[1].1, "Build released: {t:?}");
    assert_eq!(
        t[2].2.as_deref(),
        Some("ops hold for INC-7"),
        "the person's hold stays"
    );
    let log = gate_log(&env).await;
    assert_eq!(
        summary(&log[3..]),
        [("Build".into(), "enable".into(), "done".into())]
    );
    // Nothing more to do.
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(gate_log(&env).await.len(), 4);
    // Every gate action and outcome is chained (the writer chains them from what its INSERTs
    // returned, several to a transaction).
    let out = env.stopd(&["verify"]).await;
    assert_ok(&out);
    assert!(
        text(&out.stdout).starts_with("audit log intact: "),
        "{}",
        text(&out.stdout)
    );
}

/// A gate action recorded whose outcome never was (the process died between the two) is
/// resolved from the transition: closed with our reason, it is done and ours (released at the
/// end); still open, it failed, and the sweep closes it.
#[tokio::test]
async fn a_gate_action_without_an_outcome_is_resolved_from_the_transition() {
    let env = Env::new(&staged(&["prod-web"])).await;
    env.write_config("", &gated_freeze("2100-01-01T00:00:00Z", ""));
    let reason = "Release freeze until 2100-01-01T00 00 00Z";
    {
        let store = stopd_audit::Store::open(env.db()).await.unwrap();
        for stage in ["Build", "Deploy"] {
            let intent = stopd_audit::NewGate {
                account: stopd_audit::Place::DEFAULT_ACCOUNT,
                region: "us-east-1",
                pipeline: "prod-web",
                stage,
                rule: "release",
                action: stopd_audit::GateAction::Disable,
                reason,
            };
            let at = chrono::Utc::now() - chrono::Duration::minutes(1);
            store.gate_intent(at, None, &intent, false).await.unwrap();
        }
        store.close().await;
    }
    // Build's call went through before the crash; Deploy's never did.
    person_disables(&env, "prod-web", "Build", reason);
    let log = gate_log(&env).await;
    assert_eq!(
        summary(&log),
        [
            ("Build".into(), "disable".into(), "pending".into()),
            ("Deploy".into(), "disable".into(), "pending".into()),
        ]
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let log = gate_log(&env).await;
    assert_eq!(
        summary(&log),
        [
            ("Build".into(), "disable".into(), "done".into()),
            ("Deploy".into(), "disable".into(), "failed".into()),
            ("Deploy".into(), "disable".into(), "done".into()),
        ]
    );
    for g in &log[..2] {
        assert_eq!(
            g["error"], "resolved at start-up from the transition's state",
            "{g}"
        );
    }
    let t = transitions(&env, "prod-web");
    assert!(!t[1].1 && !t[2].1, "both closed: {t:?}");
    // Both are stopd's: the end of the freeze releases both.
    env.write_config("", &gated_freeze("2021-01-01T00:00:00Z", ""));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let t = transitions(&env, "prod-web");
    assert!(t[1].1 && t[2].1, "both released: {t:?}");
    assert_eq!(
        summary(&gate_log(&env).await[3..]),
        [
            ("Build".into(), "enable".into(), "done".into()),
            ("Deploy".into(), "enable".into(), "done".into()),
        ]
    );
}

/// A hold whose reason someone changed while stopd held it is theirs: left alone at the end.
#[tokio::test]
async fn a_gate_whose_reason_was_changed_is_left_alone() {
    let env = Env::new(&staged(&["prod-web"])).await;
    env.write_config(
        "",
        &gated_freeze("2100-01-01T00:00:00Z", "gate_stages = [\"Deploy\"]"),
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let t = transitions(&env, "prod-web");
    assert!(t[1].1 && !t[2].1, "only Deploy gated: {t:?}");
    person_disables(&env, "prod-web", "Deploy", "now mine");
    env.write_config(
        "",
        &gated_freeze("2021-01-01T00:00:00Z", "gate_stages = [\"Deploy\"]"),
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(
        transitions(&env, "prod-web")[2].2.as_deref(),
        Some("now mine")
    );
    let log = gate_log(&env).await;
    assert_eq!(
        summary(&log),
        [
            ("Deploy".into(), "disable".into(), "done".into()),
            ("Deploy".into(), "enable".into(), "left_alone".into()),
        ]
    );
}

#[tokio::test]
async fn a_dry_run_records_gates_once_and_touches_nothing() {
    let env = Env::new(&staged(&["prod-web"])).await;
    env.write_config("dry_run = true", &gated_freeze("2100-01-01T00:00:00Z", ""));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(
        transitions(&env, "prod-web").iter().all(|t| t.1),
        "nothing closed"
    );
    let log = gate_log(&env).await;
    assert_eq!(
        summary(&log),
        [
            ("Build".into(), "disable".into(), "dry_run".into()),
            ("Deploy".into(), "disable".into(), "dry_run".into()),
        ]
    );
}

/// An execution waiting at a gate its freeze closed is not stopped by that freeze; it proceeds
/// when the gate opens.
#[tokio::test]
async fn an_execution_held_at_the_gate_is_spared_and_proceeds_after_the_freeze() {
    let env = Env::new(&staged(&["prod-web"])).await;
    env.write_config("", &gated_freeze("2100-01-01T00:00:00Z", ""));
    // The running one is stopped, and the gates close.
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(env.stop_calls(), 1);
    // A new execution passes Source and waits at Build's closed transition.
    let waiting = env.emulator.start_execution("prod-web").unwrap();
    env.emulator.advance(Duration::from_secs(5));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(env.stop_calls(), 1, "the waiting execution was stopped");
    assert_eq!(
        env.emulator.execution("prod-web", &waiting).unwrap().status,
        "InProgress"
    );
    // The freeze ends: the gate opens and the execution goes on into Build.
    env.write_config("", &gated_freeze("2021-01-01T00:00:00Z", ""));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    env.emulator.advance(Duration::from_secs(5));
    let view = env.emulator.execution("prod-web", &waiting).unwrap();
    assert_eq!(view.status, "InProgress", "{view:?}");
    assert_eq!(env.stop_calls(), 1);
    let t = transitions(&env, "prod-web");
    assert!(t.iter().all(|t| t.1), "{t:?}");
}

/// `stopd freeze add --gate` holds new work as a policy gate does; lifting it early releases
/// its gates at the next sweep.
#[tokio::test]
async fn an_adhoc_freeze_with_gate_closes_and_lifting_it_releases() {
    let env = Env::new(&staged(&["prod-web"])).await;
    env.write_config("", "");
    assert_ok(
        &env.stopd(&[
            "freeze",
            "add",
            "--pipeline",
            "prod-web",
            "--for",
            "2h",
            "--gate",
            "--reason",
            "INC-9",
        ])
        .await,
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let t = transitions(&env, "prod-web");
    assert!(!t[1].1 && !t[2].1, "{t:?}");
    assert!(t[1].2.as_deref().unwrap().contains("INC-9"), "{t:?}");
    assert_ok(
        &env.stopd(&["freeze", "lift", "1", "--reason", "resolved"])
            .await,
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(transitions(&env, "prod-web").iter().all(|t| t.1));
    let log = gate_log(&env).await;
    assert!(
        log.iter()
            .all(|g| g["rule"] == "adhoc-1" && g["outcome"] == "done"),
        "{log:?}"
    );
    assert_eq!(log.len(), 4);
    // The freeze, its lift and the gate actions are chained records like every other.
    assert_ok(&env.stopd(&["verify"]).await);
}

/// Overlapping gating freezes keep a gate closed until the last one ends.
#[tokio::test]
async fn overlapping_gating_freezes_hold_until_the_last_ends() {
    let env = Env::new(&staged(&["prod-web"])).await;
    let two = |first_end: &str, second_end: &str| {
        format!(
            "{}\n[[freeze]]\nname = \"second\"\nstart = \"2020-06-01T00:00:00Z\"\nend = \"{second_end}\"\npipelines = [\"prod-*\"]\ngate = true\n",
            gated_freeze(first_end, "")
        )
    };
    env.write_config("", &two("2100-01-01T00:00:00Z", "2100-01-01T00:00:00Z"));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(!transitions(&env, "prod-web")[1].1);
    // The first ends; the second still holds.
    env.write_config("", &two("2021-01-01T00:00:00Z", "2100-01-01T00:00:00Z"));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(
        !transitions(&env, "prod-web")[1].1,
        "still held by the second"
    );
    assert_eq!(
        gate_log(&env).await.len(),
        2,
        "no action while one still holds"
    );
    // Both ended: released.
    env.write_config("", &two("2021-01-01T00:00:00Z", "2021-01-01T00:00:00Z"));
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(transitions(&env, "prod-web").iter().all(|t| t.1));
}

/// A pipeline's gates close as soon as discovery has read it, while the rest of the fleet is
/// still being listed (they used to wait for the whole fleet's listing: seconds at a window
/// edge at 1,000 pipelines).
#[tokio::test]
async fn gates_close_while_the_fleet_is_still_being_listed() {
    let names: Vec<String> = (0..12).map(|k| format!("prod-{k:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let env = Env::new(&staged(&names)).await;
    // One pipeline read at a time, 5 ms a call: the listing takes 12 round trips.
    env.emulator
        .set_faults(stopd_emulator::FaultPlan::latency(Duration::from_millis(5)));
    env.write_config(
        "discovery_concurrency = 1",
        &gated_freeze("2100-01-01T00:00:00Z", ""),
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    let calls = env.emulator.calls();
    let seq_of = |op: &str| -> Vec<u64> {
        calls
            .iter()
            .filter(|c| c.operation == op)
            .map(|c| c.seq)
            .collect()
    };
    let (listed, gated) = (
        seq_of("ListPipelineExecutions"),
        seq_of("DisableStageTransition"),
    );
    assert_eq!((listed.len(), gated.len()), (12, 24));
    let first_gate = gated.iter().min().unwrap();
    let last_listing = listed.iter().max().unwrap();
    assert!(
        first_gate < last_listing,
        "the first gate (call {first_gate}) waited for the last listing (call {last_listing})"
    );
    // And every one of them is closed.
    for n in &names {
        assert!(!transitions(&env, n)[1].1, "{n}");
    }
}

/// Transitions disabled now, by stage.
fn closed(env: &Env) -> Vec<String> {
    transitions(env, "prod-web")
        .into_iter()
        .filter(|(_, enabled, _)| !enabled)
        .map(|(stage, ..)| stage)
        .collect()
}

/// A gate held closed by a rule whose calendar then cannot be read (an `ics` file that became
/// invalid, a Change Calendar that answers an error) stays closed: releasing it would be a
/// guess. Readable again and no longer in force, it is released.
#[tokio::test]
async fn a_gate_held_by_a_rule_whose_calendar_cannot_be_read_is_not_released_on_a_guess() {
    let env = Env::new(&staged(&["prod-web"])).await;
    let file = env.dir.path().join("release.ics");
    let now = chrono::Utc::now();
    let ics = |from: chrono::DateTime<chrono::Utc>, zone: &str| {
        let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
        let dtstart = if zone.is_empty() {
            format!("DTSTART:{}", at(from))
        } else {
            format!("DTSTART;TZID={zone}:{}", from.format("%Y%m%dT%H%M%S"))
        };
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:r\r\n{dtstart}\r\nDTEND:{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            at(from + chrono::Duration::hours(3))
        )
    };
    std::fs::write(&file, ics(now - chrono::Duration::hours(1), "")).unwrap();
    env.write_config(
        "",
        "[[freeze]]\nname = \"release\"\nics = \"release.ics\"\npipelines = [\"prod-*\"]\ngate = true\n",
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(closed(&env), ["Build", "Deploy"]);
    let log = gate_log(&env).await.len();

    // The file becomes invalid: the sweep fails naming it, and the gates stay closed.
    std::fs::write(&file, ics(now - chrono::Duration::hours(1), "Nowhere/City")).unwrap();
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("release.ics"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(closed(&env), ["Build", "Deploy"], "not released on a guess");
    assert_eq!(
        gate_log(&env).await.len(),
        log,
        "nothing done, nothing recorded"
    );

    // Readable again, its event over: released.
    std::fs::write(&file, ics(now - chrono::Duration::hours(5), "")).unwrap();
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(closed(&env).is_empty(), "{:?}", closed(&env));
}

#[tokio::test]
async fn a_gate_held_by_a_change_calendar_that_cannot_be_read_is_not_released_on_a_guess() {
    let env = Env::new(&staged(&["prod-web"])).await;
    let set = |closed_now: bool| {
        let mut w = env.emulator.lock();
        let now = w.clock.now();
        let span = if closed_now {
            (now - 3_600_000, now + 3_600_000)
        } else {
            (now + 3_600_000, now + 7_200_000)
        };
        w.calendars = [("prod-changes".to_string(), vec![span])].into();
    };
    set(true);
    env.write_config(
        "",
        "[[freeze]]\nname = \"cc\"\nchange_calendar = \"prod-changes\"\npipelines = [\"prod-*\"]\ngate = true\n",
    );
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert_eq!(closed(&env), ["Build", "Deploy"]);
    let log = gate_log(&env).await.len();

    // The calendar answers an error (deleted): the sweep fails, the gates stay closed, and
    // plan says they stay closed.
    env.emulator.lock().calendars.clear();
    let plan = env.stopd(&["plan"]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan.stderr));
    let said = text(&plan.stdout);
    assert!(
        said.contains("change calendar prod-changes cannot be read")
            && said.contains("gate stays closed: prod-web Build (held for cc"),
        "{said}"
    );
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(closed(&env), ["Build", "Deploy"], "not released on a guess");
    assert_eq!(gate_log(&env).await.len(), log);

    // OPEN: released.
    set(false);
    assert_ok(&env.stopd(&["run", "--once"]).await);
    assert!(closed(&env).is_empty(), "{:?}", closed(&env));
}
