//! The pipeline reads: ListPipelines, GetPipeline, GetPipelineState (stages, actions and
//! inbound transitions as of now) and ListTagsForResource.

use serde_json::{Value, json};

use super::request::{ApiResult, decode_token, encode_token, max_results, pipeline_mut, str_field};
use crate::clock::{Millis, to_epoch_seconds};
use crate::error::ApiError;
use crate::state::{ExecStatus, Execution, Template, Transition};
use crate::world::World;

pub(super) fn list_pipelines(world: &mut World, input: &Value) -> ApiResult {
    let limit = max_results(input, 100);
    let cursor = decode_token(input, "pipelines")?;
    let mut range = match &cursor {
        Some(c) => world.pipelines.range::<str, _>((
            std::ops::Bound::Included(c.as_str()),
            std::ops::Bound::Unbounded,
        )),
        None => world.pipelines.range::<str, _>(..),
    };
    let page: Vec<Value> = range
        .by_ref()
        .take(limit)
        .map(|(_, p)| {
            json!({
                "name": p.name,
                "version": p.version,
                "pipelineType": "V2",
                "executionMode": p.mode.as_str(),
                "created": to_epoch_seconds(p.created),
                "updated": to_epoch_seconds(p.updated),
            })
        })
        .collect();
    let mut out = json!({ "pipelines": page });
    if let Some((name, _)) = range.next() {
        out["nextToken"] = json!(encode_token("pipelines", name));
    }
    Ok(out)
}

pub(super) fn get_pipeline(world: &mut World, input: &Value) -> ApiResult {
    let name = str_field(input, "name");
    let arn = world.arn(name);
    let p = pipeline_mut(world, name)?;
    if let Some(v) = input.get("version").and_then(Value::as_i64)
        && v != i64::from(p.version)
    {
        return Err(ApiError::bad_request(
            "PipelineVersionNotFoundException",
            format!("Pipeline '{name}' does not have version {v}"),
        ));
    }
    let stages: Vec<Value> = p
        .template
        .stages
        .iter()
        .map(|s| {
            let actions: Vec<Value> = s
                .actions
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    json!({
                        "name": a.name,
                        "actionTypeId": {
                            "category": a.category,
                            "owner": "AWS",
                            "provider": a.provider,
                            "version": "1",
                        },
                        "runOrder": i + 1,
                        "configuration": {},
                        "outputArtifacts": [],
                        "inputArtifacts": [],
                    })
                })
                .collect();
            json!({ "name": s.name, "actions": actions })
        })
        .collect();
    Ok(json!({
        "pipeline": {
            "name": p.name,
            "roleArn": "arn:aws:iam::123456789012:role/stopd-emulator-pipeline",
            "artifactStore": { "type": "S3", "location": "stopd-emulator-artifacts" },
            "stages": stages,
            "version": p.version,
            "executionMode": p.mode.as_str(),
            "pipelineType": "V2",
        },
        "metadata": {
            "pipelineArn": arn,
            "created": to_epoch_seconds(p.created),
            "updated": to_epoch_seconds(p.updated),
        }
    }))
}

pub(super) fn get_pipeline_state(world: &mut World, input: &Value) -> ApiResult {
    let name = str_field(input, "name");
    let now = world.clock.now();
    let p = pipeline_mut(world, name)?;
    let t = &p.template;
    let stage_states: Vec<Value> = t
        .stages
        .iter()
        .enumerate()
        .map(|(si, s)| {
            // The newest execution that has entered this stage.
            let latest = p
                .executions
                .iter()
                .rev()
                .find(|e| e.stage_starts.len() > si);
            let mut state = json!({
                "stageName": s.name,
                "inboundTransitionState": transition_json(&p.inbound[si]),
                "actionStates": action_states(t, si, latest, now),
            });
            if let Some(e) = latest {
                state["latestExecution"] = json!({
                    "pipelineExecutionId": e.id.to_string(),
                    "status": stage_status(e, si),
                    "type": e.kind.as_str(),
                });
            }
            // Executions waiting to enter this stage, newest first.
            let inbound: Vec<Value> = p
                .executions
                .iter()
                .rev()
                .filter(|e| e.is_waiting() && e.stage_starts.len() == si)
                .map(|e| {
                    json!({
                        "pipelineExecutionId": e.id.to_string(),
                        "status": "InProgress",
                        "type": e.kind.as_str(),
                    })
                })
                .collect();
            if let Some(first) = inbound.first() {
                state["inboundExecution"] = first.clone();
                state["inboundExecutions"] = json!(inbound);
            }
            state
        })
        .collect();
    Ok(json!({
        "pipelineName": p.name,
        "pipelineVersion": p.version,
        "stageStates": stage_states,
        "created": to_epoch_seconds(p.created),
        "updated": to_epoch_seconds(p.updated),
    }))
}

fn transition_json(t: &Transition) -> Value {
    let mut v = json!({ "enabled": t.enabled() });
    if let Some(r) = &t.disabled_reason {
        v["disabledReason"] = json!(r);
    }
    if let Some(at) = t.last_changed_at {
        v["lastChangedAt"] = json!(to_epoch_seconds(at));
    }
    if let Some(by) = &t.last_changed_by {
        v["lastChangedBy"] = json!(by);
    }
    v
}

/// The stage's status for an execution that entered it.
fn stage_status(e: &Execution, stage: usize) -> &'static str {
    if e.succeeded_in(stage) {
        return "Succeeded";
    }
    match e.status {
        // Superseded only while waiting, after the stage succeeded (handled above).
        ExecStatus::Superseded | ExecStatus::Succeeded => "Succeeded",
        other => other.as_str(),
    }
}

fn action_states(
    t: &Template,
    stage: usize,
    latest: Option<&Execution>,
    now: Millis,
) -> Vec<Value> {
    let first = t.first_action_of(stage);
    let position = latest.and_then(|e| Some((e, e.position_at(t, now)?)));
    t.stages[stage]
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let flat = first + i;
            let mut v = json!({ "actionName": a.name });
            if let Some((e, (at_stage, at))) = position {
                let t0 = e.stage_starts[stage];
                let start = t0 + t.action_start(flat) - t.stage_offset(stage);
                let end = t0 + t.action_end(flat) - t.stage_offset(stage);
                let done = at_stage > stage || e.succeeded_in(stage) || at > flat;
                let state = if done {
                    Some(("Succeeded", end))
                } else if at == flat {
                    Some(match e.status {
                        ExecStatus::InProgress | ExecStatus::Stopping => ("InProgress", start),
                        ExecStatus::Failed => ("Failed", e.last_update),
                        ExecStatus::Stopped
                            if e.stop.as_ref().is_some_and(|s| s.abandon_at.is_some()) =>
                        {
                            ("Abandoned", e.last_update)
                        }
                        _ => ("Succeeded", e.last_update.min(now)),
                    })
                } else {
                    None
                };
                if let Some((status, changed)) = state {
                    v["latestExecution"] = json!({
                        "actionExecutionId": format!("{}-{flat}", e.id),
                        "status": status,
                        "lastStatusChange": to_epoch_seconds(changed),
                    });
                }
            }
            v
        })
        .collect()
}

pub(super) fn list_tags_for_resource(world: &mut World, input: &Value) -> ApiResult {
    let arn = str_field(input, "resourceArn");
    let not_found = || {
        ApiError::bad_request(
            "ResourceNotFoundException",
            format!("The resource with the ARN {arn} does not exist."),
        )
    };
    // The model's pattern (`arn:aws(-[\w]+)*:codepipeline:.+:[0-9]{12}:.+`) lets through ARNs
    // whose region or resource is not one CodePipeline could have: those are InvalidArnException.
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid_region = |r: &str| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let valid_resource = |r: &str| {
        let name = r.strip_prefix("webhook:").unwrap_or(r);
        !name.is_empty()
            && name.len() <= 100
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".@-_".contains(&b))
    };
    if parts.len() != 6 || !valid_region(parts[3]) || !valid_resource(parts[5]) {
        return Err(ApiError::bad_request(
            "InvalidArnException",
            format!("The ARN {arn} is not a valid CodePipeline resource ARN."),
        ));
    }
    let prefix = world.arn("");
    let name = arn.strip_prefix(&prefix).ok_or_else(not_found)?;
    let p = world.pipelines.get(name).ok_or_else(not_found)?;
    let limit = max_results(input, 50);
    let start: usize = match decode_token(input, "tags")? {
        Some(c) => c
            .parse()
            .ok()
            .filter(|n| *n <= p.tags.len())
            .ok_or_else(|| {
                ApiError::bad_request("InvalidNextTokenException", "The next token is not valid.")
            })?,
        None => 0,
    };
    let page: Vec<Value> = p
        .tags
        .iter()
        .skip(start)
        .take(limit)
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    let mut out = json!({ "tags": page });
    if start + limit < p.tags.len() {
        out["nextToken"] = json!(encode_token("tags", &(start + limit).to_string()));
    }
    Ok(out)
}
