//! Execution lifecycle on the manual clock, driven through the SDK.

use std::time::Duration;

use aws_sdk_codepipeline::operation::stop_pipeline_execution::StopPipelineExecutionError;
use aws_sdk_codepipeline::types::{ExecutionType, PipelineExecutionStatus};
use stopd_emulator::state::Behaviour;
use stopd_emulator::{EmulatorConfig, FleetSpec};

use crate::common::{Env, FIXTURE, start, start_with};

async fn stop(
    env: &Env,
    pipeline: &str,
    id: &str,
    abandon: bool,
) -> Result<(), StopPipelineExecutionError> {
    env.client
        .stop_pipeline_execution()
        .pipeline_name(pipeline)
        .pipeline_execution_id(id)
        .abandon(abandon)
        .reason("change freeze")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error())
}

async fn status(env: &Env, pipeline: &str, id: &str) -> PipelineExecutionStatus {
    env.client
        .get_pipeline_execution()
        .pipeline_name(pipeline)
        .pipeline_execution_id(id)
        .send()
        .await
        .unwrap()
        .pipeline_execution
        .unwrap()
        .status
        .unwrap()
}

fn running(env: &Env) -> String {
    env.emulator.executions("prod-web")[1].id.clone()
}

#[tokio::test]
async fn stop_and_wait_stays_stopping_until_the_running_action_ends() {
    let env = start(FIXTURE).await;
    let id = running(&env);
    // 20 s in: Compile (10 s..70 s) is running and has 50 s left.
    stop(&env, "prod-web", &id, false).await.unwrap();
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopping
    );
    env.emulator.advance(Duration::from_millis(49_999));
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopping
    );
    env.emulator.advance(Duration::from_millis(1));
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopped
    );
    let listed = env
        .client
        .list_pipeline_executions()
        .pipeline_name("prod-web")
        .send()
        .await
        .unwrap();
    let summary = &listed.pipeline_execution_summaries.unwrap()[0];
    assert_eq!(
        summary.stop_trigger.as_ref().unwrap().reason.as_deref(),
        Some("change freeze")
    );
}

/// StopPipelineExecution: "While completing or abandoning in-progress actions, the pipeline
/// execution is in a Stopping state"; the user guide ("Stop a pipeline execution", as issue 13
/// quotes it): "in a Stopping state for a very short time while the in-progress actions are
/// abandoned". Default: 1 s.
#[tokio::test]
async fn abandon_stays_stopping_for_the_default_settle_then_stopped() {
    let env = start(FIXTURE).await;
    let id = running(&env);
    stop(&env, "prod-web", &id, true).await.unwrap();
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopping
    );
    env.emulator.advance(Duration::from_millis(999));
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopping
    );
    env.emulator.advance(Duration::from_millis(1));
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopped
    );
    let e = stop(&env, "prod-web", &id, true).await.unwrap_err();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::PipelineExecutionNotStoppableException(_)
        ),
        "{e:?}"
    );
}

/// StopPipelineExecution: "After all in-progress actions are completed or abandoned, the pipeline
/// execution is in a Stopped state" — also when the running action was the last one.
#[tokio::test]
async fn stop_and_wait_during_the_last_action_ends_stopped_not_succeeded() {
    let env = start(FIXTURE).await;
    let id = running(&env);
    env.emulator.advance(Duration::from_secs(200)); // 220 s in: Deploy (130..430 s), the last
    stop(&env, "prod-web", &id, false).await.unwrap();
    env.emulator.advance(Duration::from_secs(210));
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopped
    );
}

/// Same source: a stopped execution whose running action fails still ends Stopped.
#[tokio::test]
async fn stop_and_wait_during_a_failing_action_ends_stopped_not_failed() {
    let fixture = r#"{"pipelines": [{"name": "p", "execution_mode": "PARALLEL",
        "stages": [{"name": "S", "actions": [{"name": "A", "duration": "60s"}, {"name": "B", "duration": "60s"}]}],
        "executions": [{"status": "InProgress", "started_ago": "10s", "fail_at": 0}]}]}"#;
    let env = start(fixture).await;
    let id = env.emulator.executions("p")[0].id.clone();
    stop(&env, "p", &id, false).await.unwrap();
    env.emulator.advance(Duration::from_secs(50));
    assert_eq!(
        status(&env, "p", &id).await,
        PipelineExecutionStatus::Stopped
    );
}

/// The model's DuplicatedStopRequestException: "If you already chose to stop and wait, you cannot
/// make that request again. You can choose to stop and abandon now". The upgrade is accepted and
/// the execution stays Stopping until the abandon settles.
#[tokio::test]
async fn upgrade_from_stop_and_wait_to_abandon_is_allowed_once() {
    let env = start(FIXTURE).await;
    let id = running(&env);
    stop(&env, "prod-web", &id, false).await.unwrap();
    let e = stop(&env, "prod-web", &id, false).await.unwrap_err();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::DuplicatedStopRequestException(_)
        ),
        "{e:?}"
    );
    stop(&env, "prod-web", &id, true).await.unwrap();
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopping
    );
    let e = stop(&env, "prod-web", &id, true).await.unwrap_err();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::DuplicatedStopRequestException(_)
        ),
        "{e:?}"
    );
    env.emulator.advance(Duration::from_secs(1));
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopped
    );
}

/// The model's DuplicatedStopRequestException: "If you already chose to stop and abandon, you
/// cannot make that request again"; a stop-and-wait after an abandon is refused too (the execution
/// "is already in a Stopping state").
#[tokio::test]
async fn second_abandon_is_refused_while_abandon_settles() {
    let config = EmulatorConfig {
        behaviour: Behaviour {
            abandon_settle_ms: 5_000,
            ..Behaviour::default()
        },
        ..EmulatorConfig::default()
    };
    let env = start_with(config, FIXTURE).await;
    let id = running(&env);
    stop(&env, "prod-web", &id, true).await.unwrap();
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopping
    );
    let e = stop(&env, "prod-web", &id, true).await.unwrap_err();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::DuplicatedStopRequestException(_)
        ),
        "{e:?}"
    );
    let e = stop(&env, "prod-web", &id, false).await.unwrap_err();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::DuplicatedStopRequestException(_)
        ),
        "{e:?}"
    );
    env.emulator.advance(Duration::from_secs(5));
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Stopped
    );
}

#[tokio::test]
async fn execution_finishes_on_the_clock_and_is_then_not_stoppable() {
    let env = start(FIXTURE).await;
    let id = running(&env);
    env.emulator.advance(Duration::from_secs(410)); // 20 s + 410 s = 430 s total
    assert_eq!(
        status(&env, "prod-web", &id).await,
        PipelineExecutionStatus::Succeeded
    );
    let e = stop(&env, "prod-web", &id, false).await.unwrap_err();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::PipelineExecutionNotStoppableException(_)
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn queued_pipeline_runs_one_execution_per_stage_and_a_waiting_one_stops_at_once() {
    let env = start(FIXTURE).await;
    let c = &env.client;
    let start = || async {
        c.start_pipeline_execution()
            .name("prod-api")
            .send()
            .await
            .unwrap()
            .pipeline_execution_id
            .unwrap()
    };
    let a = start().await;
    let b = start().await;
    let waiting = start().await;
    // Both wait as InProgress (the model has no Queued status).
    assert_eq!(
        status(&env, "prod-api", &b).await,
        PipelineExecutionStatus::InProgress
    );
    stop(&env, "prod-api", &waiting, false).await.unwrap();
    assert_eq!(
        status(&env, "prod-api", &waiting).await,
        PipelineExecutionStatus::Stopped
    );
    env.emulator.advance(Duration::from_secs(930)); // a's whole run
    assert_eq!(
        status(&env, "prod-api", &a).await,
        PipelineExecutionStatus::Succeeded
    );
    assert_eq!(
        status(&env, "prod-api", &b).await,
        PipelineExecutionStatus::InProgress
    );
    env.emulator.advance(Duration::from_secs(930));
    assert_eq!(
        status(&env, "prod-api", &b).await,
        PipelineExecutionStatus::Succeeded
    );
}

#[tokio::test]
async fn generated_fleet_has_rollbacks_and_parallel_pipelines_with_several_running() {
    let env = start(r#"{"pipelines": []}"#).await;
    env.emulator.seed_fleet(FleetSpec {
        pipelines: 1_000,
        seed: 42,
        history: 2,
    });
    let active = env.emulator.active_executions();
    let running_pipelines: std::collections::HashSet<_> =
        active.iter().map(|(p, _)| p.clone()).collect();
    // "About a third running".
    assert!(
        (250..=450).contains(&running_pipelines.len()),
        "{}",
        running_pipelines.len()
    );
    assert!(
        active.len() > running_pipelines.len() + 100,
        "PARALLEL pipelines run several"
    );
    let (p, rollback) = active
        .iter()
        .find(|(_, e)| e.execution_type == "ROLLBACK")
        .expect("a rollback");
    let listed = env
        .client
        .list_pipeline_executions()
        .pipeline_name(p)
        .send()
        .await
        .unwrap();
    let s = listed
        .pipeline_execution_summaries
        .unwrap()
        .into_iter()
        .find(|s| s.pipeline_execution_id.as_deref() == Some(rollback.id.as_str()))
        .unwrap();
    assert_eq!(s.execution_type, Some(ExecutionType::Rollback));
}

/// AWS's execution ids are UUIDs, unique: StopPipelineExecution's doc calls it "The unique
/// system-generated ID of the pipeline execution". A fleet and the world seeded alike (the binary
/// uses one `--seed` for both) once handed out the same ids.
#[tokio::test]
async fn execution_ids_are_unique_across_pipelines_fleet_and_starts() {
    let env = start_with(
        EmulatorConfig {
            seed: 5,
            ..EmulatorConfig::default()
        },
        r#"{"pipelines": []}"#,
    )
    .await;
    env.emulator.seed_fleet(FleetSpec {
        pipelines: 300,
        seed: 5,
        history: 5,
    });
    let names: Vec<String> = env.emulator.lock().pipelines.keys().cloned().collect();
    for name in names.iter().take(100) {
        let _ = env.emulator.start_execution(name);
    }
    let mut all = Vec::new();
    for name in &names {
        all.extend(env.emulator.executions(name).into_iter().map(|e| e.id));
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert!(all.len() > 1_600, "{}", all.len());
    assert_eq!(unique.len(), all.len());
    // A fixture that gives one id twice is refused.
    let twice = r#"{"pipelines": [
        {"name": "a", "executions": [{"id": "3f2a6c1e-0000-4000-8000-000000000001", "status": "Succeeded", "started_ago": "1h"}]},
        {"name": "b", "executions": [{"id": "3f2a6c1e-0000-4000-8000-000000000001", "status": "Succeeded", "started_ago": "1h"}]}]}"#;
    let err = env
        .emulator
        .seed(&stopd_emulator::Fixture::from_json(twice).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
}
