//! The official Rust SDK drives every operation and gets every modeled error as its typed
//! variant.

use aws_sdk_codepipeline::error::ProvideErrorMetadata;
use aws_sdk_codepipeline::operation::get_pipeline::GetPipelineError;
use aws_sdk_codepipeline::operation::get_pipeline_execution::GetPipelineExecutionError;
use aws_sdk_codepipeline::operation::list_pipeline_executions::ListPipelineExecutionsError;
use aws_sdk_codepipeline::operation::list_pipelines::ListPipelinesError;
use aws_sdk_codepipeline::operation::list_tags_for_resource::ListTagsForResourceError;
use aws_sdk_codepipeline::operation::start_pipeline_execution::StartPipelineExecutionError;
use aws_sdk_codepipeline::operation::stop_pipeline_execution::StopPipelineExecutionError;
use aws_sdk_codepipeline::types::{ExecutionMode, PipelineExecutionStatus};
use stopd_emulator::{Fault, FaultRule, FleetSpec};

use crate::common::{FIXTURE, start};

#[tokio::test]
async fn sdk_paginates_pipelines_and_executions() {
    let env = start(r#"{"pipelines": []}"#).await;
    env.emulator.seed_fleet(FleetSpec {
        pipelines: 250,
        seed: 9,
        history: 3,
    });
    let names: Vec<String> = env
        .client
        .list_pipelines()
        .max_results(100)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name.unwrap())
        .collect();
    assert_eq!(names.len(), 250);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names, "each pipeline once, in name order");
    let pages = env.emulator.call_counts()["ListPipelines"];
    assert_eq!(pages, 3);

    let p = &names[0];
    let all = env
        .client
        .list_pipeline_executions()
        .pipeline_name(p)
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), env.emulator.executions(p).len());
    // Newest first.
    let starts: Vec<_> = all
        .iter()
        .map(|s| s.start_time.unwrap().as_secs_f64())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "{starts:?}");
}

#[tokio::test]
async fn sdk_reads_pipeline_state_and_tags() {
    let env = start(FIXTURE).await;
    let c = &env.client;
    let got = c.get_pipeline().name("prod-web").send().await.unwrap();
    let decl = got.pipeline.unwrap();
    assert_eq!(decl.execution_mode, Some(ExecutionMode::Parallel));
    assert_eq!(decl.stages.len(), 3);
    let arn = got.metadata.unwrap().pipeline_arn.unwrap();
    let tags = c
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = tags
        .tags
        .unwrap()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    assert_eq!(
        tags,
        vec![("env".into(), "prod".into()), ("team".into(), "web".into())]
    );
    let state = c
        .get_pipeline_state()
        .name("prod-web")
        .send()
        .await
        .unwrap();
    // The running execution (started 20 s ago) is in Build.
    let build = &state.stage_states.unwrap()[1];
    assert_eq!(
        build.latest_execution.as_ref().unwrap().status.as_str(),
        "InProgress"
    );
}

#[tokio::test]
async fn sdk_gets_every_modeled_error_as_its_typed_variant() {
    let env = start(FIXTURE).await;
    let c = &env.client;
    let running = env.emulator.executions("prod-web")[1].id.clone();
    let finished = env.emulator.executions("prod-web")[0].id.clone();
    let missing = "00000000-0000-4000-8000-000000000000";

    let e = c
        .get_pipeline()
        .name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, GetPipelineError::PipelineNotFoundException(_)),
        "{e:?}"
    );
    let e = c
        .get_pipeline()
        .name("prod-web")
        .version(9)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, GetPipelineError::PipelineVersionNotFoundException(_)),
        "{e:?}"
    );
    let e = c
        .get_pipeline()
        .name("bad name")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, GetPipelineError::ValidationException(_)),
        "{e:?}"
    );

    let e = c
        .get_pipeline_execution()
        .pipeline_name("prod-web")
        .pipeline_execution_id(missing)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            e,
            GetPipelineExecutionError::PipelineExecutionNotFoundException(_)
        ),
        "{e:?}"
    );

    let e = c
        .list_pipelines()
        .next_token("garbage")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, ListPipelinesError::InvalidNextTokenException(_)),
        "{e:?}"
    );
    let e = c
        .list_pipeline_executions()
        .pipeline_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, ListPipelineExecutionsError::PipelineNotFoundException(_)),
        "{e:?}"
    );
    let e = c
        .list_tags_for_resource()
        .resource_arn("arn:aws:codepipeline:us-east-1:123456789012:nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, ListTagsForResourceError::ResourceNotFoundException(_)),
        "{e:?}"
    );

    let stop = |id: &str, abandon: bool| {
        c.stop_pipeline_execution()
            .pipeline_name("prod-web")
            .pipeline_execution_id(id)
            .abandon(abandon)
            .reason("test")
            .send()
    };
    let e = stop(&finished, false)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::PipelineExecutionNotStoppableException(_)
        ),
        "{e:?}"
    );
    stop(&running, false).await.unwrap();
    let e = stop(&running, false)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            e,
            StopPipelineExecutionError::DuplicatedStopRequestException(_)
        ),
        "{e:?}"
    );
    env.emulator
        .add_fault(FaultRule::new(Some("StopPipelineExecution"), Fault::Conflict).times(1));
    let e = stop(&running, true).await.unwrap_err().into_service_error();
    assert!(
        matches!(e, StopPipelineExecutionError::ConflictException(_)),
        "{e:?}"
    );
    let e = c
        .stop_pipeline_execution()
        .pipeline_name("nope")
        .pipeline_execution_id(missing)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, StopPipelineExecutionError::PipelineNotFoundException(_)),
        "{e:?}"
    );
    let e = stop(&"x".repeat(3), false)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, StopPipelineExecutionError::ValidationException(_)),
        "{e:?}"
    );

    // PARALLEL pipelines take 50 executions at most.
    for _ in 0..49 {
        c.start_pipeline_execution()
            .name("prod-web")
            .send()
            .await
            .unwrap();
    }
    let e = c
        .start_pipeline_execution()
        .name("prod-web")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            e,
            StartPipelineExecutionError::ConcurrentPipelineExecutionsLimitExceededException(_)
        ),
        "{e:?}"
    );

    // Throttling is not in the model: the SDK sees it by its code.
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::Throttling).times(1));
    let e = c
        .list_pipelines()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("ThrottlingException"));
}

#[tokio::test]
async fn start_with_the_same_client_token_is_idempotent() {
    let env = start(FIXTURE).await;
    let c = &env.client;
    let a = c
        .start_pipeline_execution()
        .name("dev-api")
        .client_request_token("tok-1")
        .send()
        .await
        .unwrap();
    let b = c
        .start_pipeline_execution()
        .name("dev-api")
        .client_request_token("tok-1")
        .send()
        .await
        .unwrap();
    assert_eq!(a.pipeline_execution_id, b.pipeline_execution_id);
    let got = c
        .get_pipeline_execution()
        .pipeline_name("dev-api")
        .pipeline_execution_id(a.pipeline_execution_id.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.pipeline_execution.unwrap().status,
        Some(PipelineExecutionStatus::InProgress)
    );
}

#[tokio::test]
async fn dropped_connection_reaches_the_sdk_as_a_dispatch_failure() {
    let env = start(FIXTURE).await;
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::Drop).times(1));
    let err = env.client.list_pipelines().send().await.unwrap_err();
    assert!(
        matches!(
            err,
            aws_sdk_codepipeline::error::SdkError::DispatchFailure(_)
        ),
        "{err:?}"
    );
    env.client.list_pipelines().send().await.unwrap();
}
