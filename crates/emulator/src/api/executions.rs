//! The execution operations: ListPipelineExecutions, GetPipelineExecution and
//! StartPipelineExecution.

use serde_json::{Value, json};

use super::request::{
    ApiResult, decode_token, encode_token, max_results, parse_id, pipeline_mut, str_field,
};
use crate::clock::to_epoch_seconds;
use crate::error::ApiError;
use crate::state::{ExecStatus, Execution, ExecutionMode, ListOrder};
use crate::world::World;

/// How many executions may be in progress at once in a QUEUED or PARALLEL pipeline before
/// StartPipelineExecution answers ConcurrentPipelineExecutionsLimitExceededException.
pub const CONCURRENT_EXECUTIONS_LIMIT: usize = 50;

fn trigger_json(e: &Execution) -> Value {
    json!({ "triggerType": e.trigger.as_str(), "triggerDetail": "stopd-emulator" })
}

fn summary_json(e: &Execution) -> Value {
    let mut v = json!({
        "pipelineExecutionId": e.id.to_string(),
        "status": e.status.as_str(),
        "startTime": to_epoch_seconds(e.created),
        "lastUpdateTime": to_epoch_seconds(e.last_update),
        "trigger": trigger_json(e),
        "executionMode": e.mode.as_str(),
        "executionType": e.kind.as_str(),
    });
    if let Some(stop) = &e.stop {
        v["stopTrigger"] = match &stop.reason {
            Some(r) => json!({ "reason": r }),
            None => json!({}),
        };
    }
    if let Some(target) = e.rollback_target {
        v["rollbackMetadata"] = json!({ "rollbackTargetPipelineExecutionId": target.to_string() });
    }
    v
}

pub(super) fn list_pipeline_executions(world: &mut World, input: &Value) -> ApiResult {
    let limit = max_results(input, 100);
    let cursor = decode_token(input, "executions")?;
    let order = world.behaviour.list_order;
    let p = pipeline_mut(world, str_field(input, "pipelineName"))?;
    // filter.succeededInStage.stageName: executions that completed that stage successfully; a
    // stage the pipeline does not have matches none (the operation models no StageNotFound).
    let succeeded_in = input
        .pointer("/filter/succeededInStage/stageName")
        .and_then(Value::as_str)
        .map(|name| p.template.stages.iter().position(|s| s.name == name));
    let listed: Vec<&Execution> = match order {
        ListOrder::NewestFirst => p.executions.iter().rev().collect::<Vec<_>>(),
        ListOrder::OldestFirst => p.executions.iter().collect(),
    }
    .into_iter()
    .filter(|e| match succeeded_in {
        None => true,
        Some(None) => false,
        Some(Some(stage)) => e.succeeded_in(stage),
    })
    .collect();
    let start = match cursor {
        None => 0,
        Some(c) => listed
            .iter()
            .position(|e| e.id.to_string() == c)
            .ok_or_else(|| {
                ApiError::bad_request("InvalidNextTokenException", "The next token is not valid.")
            })?,
    };
    let mut iter = listed.into_iter().skip(start);
    let page: Vec<Value> = iter.by_ref().take(limit).map(summary_json).collect();
    let mut out = json!({ "pipelineExecutionSummaries": page });
    if let Some(next) = iter.next() {
        out["nextToken"] = json!(encode_token("executions", &next.id.to_string()));
    }
    Ok(out)
}

pub(super) fn get_pipeline_execution(world: &mut World, input: &Value) -> ApiResult {
    let id = parse_id(input);
    let p = pipeline_mut(world, str_field(input, "pipelineName"))?;
    let e = p.execution(id).ok_or_else(|| {
        ApiError::bad_request(
            "PipelineExecutionNotFoundException",
            format!(
                "Pipeline execution {id} does not exist in pipeline {}",
                p.name
            ),
        )
    })?;
    let mut v = json!({
        "pipelineName": p.name,
        "pipelineVersion": p.version,
        "pipelineExecutionId": e.id.to_string(),
        "status": e.status.as_str(),
        "artifactRevisions": [],
        "trigger": trigger_json(e),
        "executionMode": e.mode.as_str(),
        "executionType": e.kind.as_str(),
    });
    if let Some(summary) = status_summary(e) {
        v["statusSummary"] = json!(summary);
    }
    if let Some(target) = e.rollback_target {
        v["rollbackMetadata"] = json!({ "rollbackTargetPipelineExecutionId": target.to_string() });
    }
    Ok(json!({ "pipelineExecution": v }))
}

fn status_summary(e: &Execution) -> Option<String> {
    match e.status {
        ExecStatus::Stopped | ExecStatus::Stopping => {
            Some(match e.stop.as_ref().and_then(|s| s.reason.as_deref()) {
                Some(r) => format!("Stopped: {r}"),
                None => "Stopped".to_string(),
            })
        }
        ExecStatus::Failed => Some("An action failed".to_string()),
        _ => None,
    }
}

pub(super) fn start_pipeline_execution(world: &mut World, input: &Value) -> ApiResult {
    let name = str_field(input, "name").to_string();
    let token = input
        .get("clientRequestToken")
        .and_then(Value::as_str)
        .map(str::to_string);
    let now = world.clock.now();
    let behaviour = world.behaviour;
    let p = pipeline_mut(world, &name)?;
    if let Some(t) = &token
        && let Some(existing) = p.start_tokens.get(t)
    {
        return Ok(json!({ "pipelineExecutionId": existing.to_string() }));
    }
    if p.mode != ExecutionMode::Superseded && p.active_count() >= CONCURRENT_EXECUTIONS_LIMIT {
        return Err(ApiError::bad_request(
            "ConcurrentPipelineExecutionsLimitExceededException",
            format!(
                "Pipeline {name} already has {CONCURRENT_EXECUTIONS_LIMIT} executions in progress or queued"
            ),
        ));
    }
    let id = world.new_execution_id();
    let p = pipeline_mut(world, &name)?;
    p.start(now, id, behaviour);
    if let Some(t) = token {
        p.start_tokens.insert(t, id);
    }
    Ok(json!({ "pipelineExecutionId": id.to_string() }))
}
