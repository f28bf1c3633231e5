//! The CodePipeline protocol on top of the world: one request (target, signature headers, body)
//! in, an [`Answer`] out — signature check, injected faults, model validation, then the
//! operation itself, and a line in the call log. The world ([`crate::world`]) knows nothing of
//! this layer.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::AuthHeaders;
use crate::clock::{Millis, to_epoch_seconds};
pub use crate::error::ApiError;
use crate::faults::Fault;
use crate::model::{Model, validation_message};
use crate::state::{
    ExecStatus, Execution, ExecutionMode, ListOrder, Pipeline, StopResult, Template, Transition,
};
use crate::world::{CallRecord, Emulator, World};

/// The operations the emulator implements, by their model names.
pub const OPERATIONS: [&str; 10] = [
    "ListPipelines",
    "GetPipeline",
    "GetPipelineState",
    "ListPipelineExecutions",
    "GetPipelineExecution",
    "StartPipelineExecution",
    "StopPipelineExecution",
    "ListTagsForResource",
    "DisableStageTransition",
    "EnableStageTransition",
];

/// How many executions may be in progress at once in a QUEUED or PARALLEL pipeline before
/// StartPipelineExecution answers ConcurrentPipelineExecutionsLimitExceededException.
pub const CONCURRENT_EXECUTIONS_LIMIT: usize = 50;

type ApiResult = Result<Value, ApiError>;

/// What an API request comes to before it is answered.
#[derive(Debug)]
pub enum Answer {
    /// HTTP 200 with this JSON body.
    Ok(Value),
    /// An error answer.
    Err(ApiError),
    /// Close the connection without answering.
    Drop,
}

impl Emulator {
    /// Starts an execution as a client would, without going through HTTP; returns its id.
    pub fn start_execution(&self, pipeline: &str) -> Result<String, ApiError> {
        let mut w = self.lock();
        let out = dispatch(
            &mut w,
            "StartPipelineExecution",
            &serde_json::json!({"name": pipeline}),
        )?;
        Ok(out["pipelineExecutionId"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Handles one API request: target operation and body bytes in, answer and extra delay out.
    /// The caller sleeps for the delay before answering (outside the lock).
    pub fn handle(
        &self,
        target: Option<&str>,
        auth: AuthHeaders<'_>,
        body: &[u8],
    ) -> (Answer, Duration) {
        let operation = target
            .and_then(|t| t.strip_prefix("CodePipeline_20150709."))
            .unwrap_or(target.unwrap_or(""))
            .to_string();
        let parsed: Result<Value, _> = if body.iter().all(u8::is_ascii_whitespace) {
            Ok(Value::Object(Default::default()))
        } else {
            serde_json::from_slice(body)
        };
        let mut w = self.lock();
        let field = |name: &str| -> Option<String> {
            parsed
                .as_ref()
                .ok()?
                .get(name)?
                .as_str()
                .map(str::to_string)
        };
        let pipeline = field("pipelineName").or_else(|| field("name"));
        let execution_id = field("pipelineExecutionId");
        let abandon = (operation == "StopPipelineExecution").then(|| {
            parsed
                .as_ref()
                .ok()
                .and_then(|v| v.get("abandon")?.as_bool())
                .unwrap_or(false)
        });
        let signed = if w.require_signature {
            crate::auth::check(auth)
        } else {
            Ok(())
        };
        let World { faults, rng, .. } = &mut *w;
        let mut delay = faults.latency(rng);
        // AWS authenticates before it throttles: an unsigned call is refused, not counted.
        let fault = match &signed {
            Ok(()) => faults.decide(&operation, pipeline.as_deref(), rng),
            Err(_) => None,
        };
        let answer = if let Err(e) = signed {
            Answer::Err(e)
        } else {
            match fault {
                Some(
                    f @ (Fault::AccessDenied | Fault::ExpiredToken | Fault::UnrecognizedClient),
                ) => Answer::Err(identity_fault(f, &operation, pipeline.as_deref(), &w)),
                Some(Fault::Drop) => Answer::Drop,
                Some(Fault::Throttling) => Answer::Err(ApiError::bad_request(
                    "ThrottlingException",
                    "Rate exceeded",
                )),
                Some(Fault::Conflict) => Answer::Err(ApiError {
                    status: 409,
                    code: "ConflictException",
                    message: "Another operation is in progress on this resource (injected)".into(),
                }),
                Some(Fault::Http500) => Answer::Err(ApiError {
                    status: 500,
                    code: "InternalFailure",
                    message: "We encountered an internal error. Please try again. (injected)"
                        .into(),
                }),
                Some(Fault::Http503) => Answer::Err(ApiError {
                    status: 503,
                    code: "ServiceUnavailableException",
                    message: "Service unavailable (injected)".into(),
                }),
                Some(Fault::Delay { delay_ms }) => {
                    delay += Duration::from_millis(delay_ms);
                    serve(&mut w, target, &operation, parsed)
                }
                Some(Fault::RepeatNextToken) => {
                    let sent = parsed
                        .as_ref()
                        .ok()
                        .and_then(|v| v.get("nextToken")?.as_str().map(str::to_string));
                    match serve(&mut w, target, &operation, parsed) {
                        Answer::Ok(mut v) if v.get("nextToken").is_some() => {
                            if let Some(sent) = sent {
                                v["nextToken"] = Value::String(sent);
                            }
                            Answer::Ok(v)
                        }
                        other => other,
                    }
                }
                Some(Fault::DuplicateEntries { copies }) => {
                    match serve(&mut w, target, &operation, parsed) {
                        Answer::Ok(mut v) => {
                            for key in ["pipelines", "pipelineExecutionSummaries", "tags"] {
                                if let Some(Value::Array(items)) = v.get_mut(key) {
                                    let each = std::mem::take(items);
                                    for item in each {
                                        for _ in 0..copies.max(1) {
                                            items.push(item.clone());
                                        }
                                    }
                                }
                            }
                            Answer::Ok(v)
                        }
                        other => other,
                    }
                }
                None => serve(&mut w, target, &operation, parsed),
            }
        };
        let (status, error) = match &answer {
            Answer::Ok(_) => (200, None),
            Answer::Err(e) => (e.status, Some(e.code.to_string())),
            Answer::Drop => (0, None),
        };
        let record = CallRecord {
            seq: w.calls.len() as u64,
            at_ms: w.clock.now(),
            wall_ms: crate::clock::system_now(),
            operation,
            pipeline,
            execution_id,
            status,
            error,
            abandon,
        };
        w.calls.push(record);
        (answer, delay)
    }
}

/// The answer of an injected identity fault, as AWS words it (API Reference, "Common Errors").
fn identity_fault(fault: Fault, operation: &str, pipeline: Option<&str>, w: &World) -> ApiError {
    match fault {
        Fault::AccessDenied => {
            let resource = w.arn(pipeline.unwrap_or("*"));
            ApiError::bad_request(
                "AccessDeniedException",
                format!(
                    "User: arn:aws:iam::{}:user/stopd is not authorized to perform: codepipeline:{operation} on resource: {resource} because no identity-based policy allows the codepipeline:{operation} action",
                    w.account
                ),
            )
        }
        Fault::ExpiredToken => ApiError {
            status: 403,
            code: "ExpiredTokenException",
            message: "The security token included in the request is expired".into(),
        },
        _ => ApiError {
            status: 403,
            code: "UnrecognizedClientException",
            message: "The security token included in the request is invalid.".into(),
        },
    }
}

fn serve(
    w: &mut World,
    target: Option<&str>,
    operation: &str,
    parsed: Result<Value, serde_json::Error>,
) -> Answer {
    let known = target.is_some_and(|t| t.starts_with("CodePipeline_20150709."))
        && OPERATIONS.contains(&operation);
    if !known {
        return Answer::Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Unknown operation {:?}", target.unwrap_or("")),
        ));
    }
    let input = match parsed {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Answer::Err(ApiError::bad_request(
                "SerializationException",
                "Start of structure or map expected",
            ));
        }
        Err(e) => {
            return Answer::Err(ApiError::bad_request(
                "SerializationException",
                e.to_string(),
            ));
        }
    };
    let violations = Model::get().validate_input(operation, &input);
    if !violations.is_empty() {
        return Answer::Err(ApiError::bad_request(
            "ValidationException",
            validation_message(&violations),
        ));
    }
    match dispatch(w, operation, &input) {
        Ok(v) => Answer::Ok(v),
        Err(e) => Answer::Err(e),
    }
}

/// Runs one validated operation against the world.
pub fn dispatch(world: &mut World, operation: &str, input: &Value) -> ApiResult {
    match operation {
        "ListPipelines" => list_pipelines(world, input),
        "GetPipeline" => get_pipeline(world, input),
        "GetPipelineState" => get_pipeline_state(world, input),
        "ListPipelineExecutions" => list_pipeline_executions(world, input),
        "GetPipelineExecution" => get_pipeline_execution(world, input),
        "StartPipelineExecution" => start_pipeline_execution(world, input),
        "StopPipelineExecution" => stop_pipeline_execution(world, input),
        "ListTagsForResource" => list_tags_for_resource(world, input),
        "DisableStageTransition" => set_stage_transition(world, input, true),
        "EnableStageTransition" => set_stage_transition(world, input, false),
        other => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Operation {other} is not supported by this emulator"),
        )),
    }
}

fn str_field<'a>(input: &'a Value, name: &str) -> &'a str {
    input.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn max_results(input: &Value, default: usize) -> usize {
    input
        .get("maxResults")
        .and_then(Value::as_u64)
        .map_or(default, |n| n as usize)
}

/// Pagination tokens are opaque to clients: hex of `kind:cursor`.
fn encode_token(kind: &str, cursor: &str) -> String {
    format!("{kind}:{cursor}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_token(input: &Value, kind: &str) -> Result<Option<String>, ApiError> {
    let Some(token) = input.get("nextToken").and_then(Value::as_str) else {
        return Ok(None);
    };
    let invalid =
        || ApiError::bad_request("InvalidNextTokenException", "The next token is not valid.");
    if token.len() % 2 != 0 {
        return Err(invalid());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = bytes
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let cursor = text
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(invalid)?;
    Ok(Some(cursor.to_string()))
}

fn not_found(name: &str) -> ApiError {
    ApiError::bad_request(
        "PipelineNotFoundException",
        format!(
            "Account '{}' does not have a pipeline with name '{name}'",
            crate::fixture::DEFAULT_ACCOUNT
        ),
    )
}

fn pipeline_mut<'a>(world: &'a mut World, name: &str) -> Result<&'a mut Pipeline, ApiError> {
    let now = world.clock.now();
    let behaviour = world.behaviour;
    let p = world
        .pipelines
        .get_mut(name)
        .ok_or_else(|| not_found(name))?;
    p.resolve(now, behaviour);
    Ok(p)
}

fn list_pipelines(world: &mut World, input: &Value) -> ApiResult {
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

fn get_pipeline(world: &mut World, input: &Value) -> ApiResult {
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

fn get_pipeline_state(world: &mut World, input: &Value) -> ApiResult {
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

fn list_pipeline_executions(world: &mut World, input: &Value) -> ApiResult {
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

fn parse_id(input: &Value) -> Uuid {
    // The model's pattern has already been checked, so this parses.
    Uuid::parse_str(str_field(input, "pipelineExecutionId")).unwrap_or_default()
}

fn get_pipeline_execution(world: &mut World, input: &Value) -> ApiResult {
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

fn start_pipeline_execution(world: &mut World, input: &Value) -> ApiResult {
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

fn stop_pipeline_execution(world: &mut World, input: &Value) -> ApiResult {
    let id = parse_id(input);
    let abandon = input
        .get("abandon")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reason = input
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let now = world.clock.now();
    let behaviour = world.behaviour;
    let p = pipeline_mut(world, str_field(input, "pipelineName"))?;
    match p.stop(now, id, abandon, reason, behaviour) {
        StopResult::Accepted => Ok(json!({ "pipelineExecutionId": id.to_string() })),
        StopResult::Duplicated(m) => {
            Err(ApiError::bad_request("DuplicatedStopRequestException", m))
        }
        StopResult::NotStoppable(m) => Err(ApiError::bad_request(
            "PipelineExecutionNotStoppableException",
            m,
        )),
    }
}

/// DisableStageTransition / EnableStageTransition. The reason's length (1..300) and alphabet
/// (`[a-zA-Z0-9!@ \(\)\.\*\?\-]+`) are the model's DisabledReason, checked before this runs.
fn set_stage_transition(world: &mut World, input: &Value, disable: bool) -> ApiResult {
    let now = world.clock.now();
    let behaviour = world.behaviour;
    let by = format!("arn:aws:iam::{}:user/stopd", world.account);
    let p = pipeline_mut(world, str_field(input, "pipelineName"))?;
    let stage_name = str_field(input, "stageName");
    let stage = p
        .template
        .stages
        .iter()
        .position(|s| s.name == stage_name)
        .ok_or_else(|| {
            ApiError::bad_request(
                "StageNotFoundException",
                format!("Stage {stage_name} does not exist in pipeline {}", p.name),
            )
        })?;
    let inbound = str_field(input, "transitionType") == "Inbound";
    let reason = disable.then(|| str_field(input, "reason").to_string());
    p.set_transition(now, stage, inbound, reason, by, behaviour);
    Ok(json!({}))
}

fn list_tags_for_resource(world: &mut World, input: &Value) -> ApiResult {
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
