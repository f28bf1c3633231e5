//! Execution modes and stage transitions, on the manual clock.
//!
//! Source: CodePipeline User Guide, "How pipeline executions work" (concepts-how-it-works):
//! SUPERSEDED, "A more recent execution can overtake an older one" (a stage holds one execution,
//! and executions are overtaken only while they wait between stages); QUEUED, "Executions are
//! processed one by one in the order that they are queued"; PARALLEL, "executions run
//! simultaneously and independently of one another. Executions don't wait for other runs to
//! complete before starting or finishing". Transitions: "Disable or enable transitions between
//! stages", and the model's DisableStageTransition / TransitionState.

use std::time::Duration;

use aws_sdk_codepipeline::types::StageTransitionType;

use crate::common::{Env, start};

/// Source 10 s; Build 60 s + 60 s (10..130 s into a run); Deploy 300 s (130..430 s).
const MODES: &str = r#"{"pipelines": [
  {"name": "sup", "execution_mode": "SUPERSEDED", "stages": [
    {"name": "Source", "actions": [{"name": "Src", "duration": "10s"}]},
    {"name": "Build", "actions": [{"name": "Compile", "duration": "60s"}, {"name": "Test", "duration": "60s"}]},
    {"name": "Deploy", "actions": [{"name": "Deploy", "duration": "300s"}]}]},
  {"name": "que", "execution_mode": "QUEUED", "stages": [
    {"name": "Source", "actions": [{"name": "Src", "duration": "10s"}]},
    {"name": "Build", "actions": [{"name": "Compile", "duration": "60s"}, {"name": "Test", "duration": "60s"}]},
    {"name": "Deploy", "actions": [{"name": "Deploy", "duration": "300s"}]}]},
  {"name": "par", "execution_mode": "PARALLEL", "stages": [
    {"name": "Source", "actions": [{"name": "Src", "duration": "10s"}]},
    {"name": "Build", "actions": [{"name": "Compile", "duration": "60s"}, {"name": "Test", "duration": "60s"}]},
    {"name": "Deploy", "actions": [{"name": "Deploy", "duration": "300s"}]}]}]}"#;

/// Starts an execution `after` seconds after the previous step.
fn start_after(env: &Env, pipeline: &str, after: u64) -> String {
    env.emulator.advance(Duration::from_secs(after));
    env.emulator.start_execution(pipeline).unwrap()
}

fn status(env: &Env, pipeline: &str, id: &str) -> &'static str {
    env.emulator.execution(pipeline, id).unwrap().status
}

/// Moves the clock so that `secs` seconds have passed since `t0`.
fn at(env: &Env, t0: i64, secs: i64) {
    let now = env.emulator.now();
    let to = t0 + secs * 1000;
    assert!(to >= now, "the test goes back in time");
    env.emulator
        .advance(Duration::from_millis((to - now) as u64));
}

async fn stage_state(
    env: &Env,
    pipeline: &str,
    stage: usize,
) -> aws_sdk_codepipeline::types::StageState {
    env.client
        .get_pipeline_state()
        .name(pipeline)
        .send()
        .await
        .unwrap()
        .stage_states
        .unwrap()
        .swap_remove(stage)
}

#[tokio::test]
async fn superseded_one_execution_per_stage_and_only_a_waiting_one_is_overtaken() {
    let env = start(MODES).await;
    let t0 = env.emulator.now();
    let a = start_after(&env, "sup", 0); // Source 0..10 s, Build 10..130 s, Deploy 130..430 s
    let b = start_after(&env, "sup", 20); // Source 20..30 s, then waits: a holds Build
    at(&env, t0, 45);
    assert_eq!(status(&env, "sup", &b), "InProgress");
    let build = stage_state(&env, "sup", 1).await;
    assert_eq!(
        build.inbound_execution.unwrap().pipeline_execution_id,
        b,
        "b waits to enter Build with no action running"
    );
    assert_eq!(build.latest_execution.unwrap().pipeline_execution_id, a);
    let c = start_after(&env, "sup", 0); // Source 45..55 s, then reaches b's waiting point
    at(&env, t0, 54);
    assert_eq!(status(&env, "sup", &b), "InProgress");
    at(&env, t0, 55);
    assert_eq!(status(&env, "sup", &b), "Superseded");
    // a, running, is never superseded; c enters Build when a leaves it at 130 s.
    at(&env, t0, 130);
    assert_eq!(status(&env, "sup", &a), "InProgress");
    let build = stage_state(&env, "sup", 1).await;
    assert_eq!(build.latest_execution.unwrap().pipeline_execution_id, c);
    at(&env, t0, 430);
    assert_eq!(status(&env, "sup", &a), "Succeeded");
    // A waiting execution can be stopped, and is Stopped at once (no action to finish).
    let d = start_after(&env, "sup", 0);
    // c: Build 130..250 s, Deploy 250..550 s; d: Source 430..440 s, Build 440..560 s.
    at(&env, t0, 445);
    assert_eq!(status(&env, "sup", &d), "InProgress");
    let e = start_after(&env, "sup", 0); // Source 445..455 s, waits for Build (d in it)
    at(&env, t0, 460);
    env.client
        .stop_pipeline_execution()
        .pipeline_name("sup")
        .pipeline_execution_id(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(status(&env, "sup", &e), "Stopped");
}

#[tokio::test]
async fn queued_one_execution_per_stage_waiting_ones_enter_in_order() {
    let env = start(MODES).await;
    let t0 = env.emulator.now();
    let a = start_after(&env, "que", 0);
    let b = start_after(&env, "que", 5); // enters Source at 10 s, waits for Build from 20 s
    let c = start_after(&env, "que", 1); // enters Source at 20 s, waits for Build from 30 s
    at(&env, t0, 129);
    assert_eq!(status(&env, "que", &b), "InProgress");
    assert_eq!(status(&env, "que", &c), "InProgress");
    // At 130 s a leaves Build: the oldest waiting (b) enters; c keeps waiting, not superseded.
    at(&env, t0, 130);
    let build = stage_state(&env, "que", 1).await;
    assert_eq!(build.latest_execution.unwrap().pipeline_execution_id, b);
    assert_eq!(build.inbound_execution.unwrap().pipeline_execution_id, c);
    // Deploy is the bottleneck: a 130..430 s, b 430..730 s, c 730..1030 s.
    at(&env, t0, 1029);
    assert_eq!(status(&env, "que", &a), "Succeeded");
    assert_eq!(status(&env, "que", &b), "Succeeded");
    assert_eq!(status(&env, "que", &c), "InProgress");
    at(&env, t0, 1030);
    assert_eq!(status(&env, "que", &c), "Succeeded");
}

#[tokio::test]
async fn parallel_executions_share_stages_and_never_wait() {
    let env = start(MODES).await;
    let t0 = env.emulator.now();
    let a = start_after(&env, "par", 0);
    let b = start_after(&env, "par", 5); // in Source with a
    at(&env, t0, 429);
    assert_eq!(status(&env, "par", &a), "InProgress");
    at(&env, t0, 430);
    assert_eq!(status(&env, "par", &a), "Succeeded");
    assert_eq!(status(&env, "par", &b), "InProgress");
    at(&env, t0, 435);
    assert_eq!(status(&env, "par", &b), "Succeeded");
}

#[tokio::test]
async fn disabled_transition_holds_executions_and_enabling_lets_the_newest_proceed() {
    let env = start(MODES).await;
    let t0 = env.emulator.now();
    env.client
        .disable_stage_transition()
        .pipeline_name("sup")
        .stage_name("Deploy")
        .transition_type(StageTransitionType::Inbound)
        .reason("Change freeze")
        .send()
        .await
        .unwrap();
    let state = stage_state(&env, "sup", 2)
        .await
        .inbound_transition_state
        .unwrap();
    assert!(!state.enabled);
    assert_eq!(state.disabled_reason.as_deref(), Some("Change freeze"));
    assert!(state.last_changed_at.is_some());
    assert!(state.last_changed_by.is_some());
    let a = start_after(&env, "sup", 0); // waits before Deploy from 130 s
    let b = start_after(&env, "sup", 100); // Source 100..110 s, Build 130..250 s
    at(&env, t0, 600);
    assert_eq!(
        status(&env, "sup", &a),
        "Superseded",
        "b reached the same point"
    );
    assert_eq!(status(&env, "sup", &b), "InProgress", "held before Deploy");
    let deploy = stage_state(&env, "sup", 2).await;
    assert_eq!(deploy.inbound_execution.unwrap().pipeline_execution_id, b);
    env.client
        .enable_stage_transition()
        .pipeline_name("sup")
        .stage_name("Deploy")
        .transition_type(StageTransitionType::Inbound)
        .send()
        .await
        .unwrap();
    let state = stage_state(&env, "sup", 2)
        .await
        .inbound_transition_state
        .unwrap();
    assert!(state.enabled);
    assert_eq!(state.disabled_reason, None);
    at(&env, t0, 899);
    assert_eq!(status(&env, "sup", &b), "InProgress");
    at(&env, t0, 900);
    assert_eq!(status(&env, "sup", &b), "Succeeded");
}

#[tokio::test]
async fn a_disabled_transition_holds_every_waiting_execution_in_parallel_mode_until_enabled() {
    let env = start(MODES).await;
    let t0 = env.emulator.now();
    env.client
        .disable_stage_transition()
        .pipeline_name("par")
        .stage_name("Build")
        .transition_type(StageTransitionType::Outbound)
        .reason("hold")
        .send()
        .await
        .unwrap();
    let a = start_after(&env, "par", 0);
    let b = start_after(&env, "par", 1);
    at(&env, t0, 1000);
    assert_eq!(status(&env, "par", &a), "InProgress");
    assert_eq!(status(&env, "par", &b), "InProgress");
    env.client
        .enable_stage_transition()
        .pipeline_name("par")
        .stage_name("Build")
        .transition_type(StageTransitionType::Outbound)
        .send()
        .await
        .unwrap();
    at(&env, t0, 1300);
    assert_eq!(status(&env, "par", &a), "Succeeded");
    assert_eq!(status(&env, "par", &b), "Succeeded");
}
