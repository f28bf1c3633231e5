//! Listing: the order of ListPipelineExecutions, its `filter`, ListTagsForResource's ARN checks,
//! and what `POST /_emulator/reset` keeps.

use aws_sdk_codepipeline::error::ProvideErrorMetadata;
use aws_sdk_codepipeline::types::{PipelineExecutionFilter, SucceededInStageFilter};
use stopd_emulator::state::{Behaviour, ListOrder};
use stopd_emulator::{EmulatorConfig, Fault, FaultRule};

use crate::common::{Env, start, start_with};

/// Source 10 s, Build 60 s, Deploy 300 s; executions that ended in each way.
const HISTORY: &str = r#"{"pipelines": [{"name": "p", "execution_mode": "PARALLEL",
  "stages": [
    {"name": "Source", "actions": [{"name": "Src", "duration": "10s"}]},
    {"name": "Build", "actions": [{"name": "Compile", "duration": "60s"}]},
    {"name": "Deploy", "actions": [{"name": "Deploy", "duration": "300s"}]}],
  "executions": [
    {"status": "Succeeded", "started_ago": "5h", "duration": "370s"},
    {"status": "Failed", "started_ago": "4h", "duration": "40s"},
    {"status": "Failed", "started_ago": "3h", "duration": "100s"},
    {"status": "InProgress", "started_ago": "30s"},
    {"status": "InProgress", "started_ago": "5s"}]}]}"#;

async fn listed(env: &Env, filter: Option<&str>, page: i32) -> Vec<String> {
    let filter = filter.map(|stage| {
        PipelineExecutionFilter::builder()
            .succeeded_in_stage(SucceededInStageFilter::builder().stage_name(stage).build())
            .build()
    });
    env.client
        .list_pipeline_executions()
        .pipeline_name("p")
        .set_filter(filter)
        .max_results(page)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.pipeline_execution_id.unwrap())
        .collect()
}

/// The model documents no order for ListPipelineExecutions ("Gets a summary of the most recent
/// executions"); `--list-order oldest-first` exists so that clients can be tested without one.
#[tokio::test]
async fn list_order_is_newest_first_by_default_and_oldest_first_on_request() {
    let env = start(HISTORY).await;
    let oldest_first: Vec<String> = env
        .emulator
        .executions("p")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut newest_first = oldest_first.clone();
    newest_first.reverse();
    assert_eq!(listed(&env, None, 2).await, newest_first);
    let config = EmulatorConfig {
        behaviour: Behaviour {
            list_order: ListOrder::OldestFirst,
            ..Behaviour::default()
        },
        ..EmulatorConfig::default()
    };
    let env = start_with(config, HISTORY).await;
    let ids: Vec<String> = env
        .emulator
        .executions("p")
        .into_iter()
        .map(|e| e.id)
        .collect();
    // Pages of 2 over 5 executions: the cursor works in this order too.
    assert_eq!(listed(&env, None, 2).await, ids);
}

/// The model's SucceededInStageFilter: "Filter for pipeline executions that have successfully
/// completed the stage"; AWS CLI: `list-pipeline-executions --filter
/// succeededInStage={stageName=Build}`.
#[tokio::test]
async fn succeeded_in_stage_filter_keeps_executions_that_completed_the_stage() {
    let env = start(HISTORY).await;
    let ids: Vec<String> = env
        .emulator
        .executions("p")
        .into_iter()
        .map(|e| e.id)
        .collect();
    // Build ends 70 s into a run: the success, the failure at 100 s (in Deploy), not the failure
    // at 40 s (in Build), not the running ones (30 s and 5 s in).
    assert_eq!(
        listed(&env, Some("Build"), 100).await,
        vec![ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(listed(&env, Some("Source"), 100).await.len(), 4);
    assert_eq!(
        listed(&env, Some("Deploy"), 100).await,
        vec![ids[0].clone()]
    );
    assert!(listed(&env, Some("NoSuchStage"), 100).await.is_empty());
}

/// The model lists InvalidArnException for ListTagsForResource ("The specified resource ARN is
/// invalid"), beside ResourceNotFoundException and the pattern's ValidationException.
#[tokio::test]
async fn list_tags_tells_an_invalid_arn_from_a_missing_resource() {
    let env = start(HISTORY).await;
    let code = |arn: &'static str| {
        let c = env.client.clone();
        async move {
            c.list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    e.into_service_error()
                        .code()
                        .unwrap_or_default()
                        .to_string()
                })
        }
    };
    assert_eq!(
        code("arn:aws:codepipeline:us-east-1:123456789012:p").await,
        Ok(())
    );
    assert_eq!(
        code("arn:aws:codepipeline:us-east-1:123456789012:no/such:thing").await,
        Err("InvalidArnException".into())
    );
    assert_eq!(
        code("arn:aws:codepipeline:US_EAST:123456789012:p").await,
        Err("InvalidArnException".into())
    );
    assert_eq!(
        code("arn:aws:codepipeline:us-east-1:123456789012:nope").await,
        Err("ResourceNotFoundException".into())
    );
    assert_eq!(
        code("arn:aws:s3:::bucket").await,
        Err("ValidationException".into())
    );
}

#[tokio::test]
async fn reset_keeps_the_fault_plan_unless_asked() {
    let env = start(HISTORY).await;
    env.emulator
        .add_fault(FaultRule::new(Some("ListPipelines"), Fault::Conflict));
    env.emulator.reset(false);
    assert_eq!(env.emulator.faults().rules.len(), 1);
    assert!(env.emulator.executions("p").is_empty());
    assert!(env.emulator.calls().is_empty());
    env.emulator.reset(true);
    assert!(env.emulator.faults().rules.is_empty());
}
