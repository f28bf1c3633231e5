//! The CodePipeline protocol on top of the world: one request (target, signature headers, body)
//! in, an [`Answer`] out — signature check, injected faults, model validation, then the
//! operation itself, and a line in the call log. The world ([`crate::world`]) knows nothing of
//! this layer.
//!
//! The operations come in families, one module each, which share nothing among themselves but
//! `request`'s readers: `pipelines` (ListPipelines, GetPipeline, GetPipelineState,
//! ListTagsForResource), `executions` (ListPipelineExecutions, GetPipelineExecution,
//! StartPipelineExecution), `stop` (StopPipelineExecution) and `transitions`
//! (Disable/EnableStageTransition).

mod calendars;
mod executions;
mod pipelines;
mod request;
pub mod sqs;
mod stop;
mod transitions;

use std::time::Duration;

use serde_json::Value;

use crate::auth::AuthHeaders;
pub use crate::error::ApiError;
use crate::faults::Fault;
use crate::model::{Model, validation_message};
use crate::world::{CallRecord, Emulator, World};
pub use executions::CONCURRENT_EXECUTIONS_LIMIT;
use request::ApiResult;

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

/// What an SQS request comes to: an answer (after a delay), or a long poll that found nothing
/// yet ([`Emulator::receive_again`] until it does or its wait is over).
#[derive(Debug)]
pub enum SqsAnswer {
    /// Answer after this delay.
    Done(Answer, Duration),
    /// A ReceiveMessage waiting for messages.
    Wait(Waiting),
}

/// A long poll under way.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// What was asked.
    request: sqs::ReceiveRequest,
    /// Emulator time at which it answers with no messages.
    until_ms: crate::clock::Millis,
    /// The same wait in real time (a manual clock may never reach `until_ms`).
    pub wait: Duration,
}

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

    /// Handles one SQS request (`X-Amz-Target: AmazonSQS.*`) against the root's queues, after
    /// publishing the execution state changes not yet published. Faults apply only through
    /// rules that name the SQS operation (`ReceiveMessage`, ...).
    pub fn handle_sqs(&self, target: &str, auth: AuthHeaders<'_>, body: &[u8]) -> SqsAnswer {
        let operation = target
            .strip_prefix("AmazonSQS.")
            .unwrap_or(target)
            .to_string();
        if matches!(operation.as_str(), "ReceiveMessage" | "GetQueueAttributes") {
            self.publish_events();
        }
        let parsed: Result<Value, _> = serde_json::from_slice(body);
        let mut w = self.lock();
        let signed = if w.require_signature {
            crate::auth::check_for(auth, "sqs")
        } else {
            Ok(())
        };
        let World { faults, rng, .. } = &mut *w;
        let mut delay = faults.latency(rng);
        let fault = match &signed {
            Ok(()) => faults.decide_named(&operation, rng),
            Err(_) => None,
        };
        let mut waiting = None;
        let answer = match (signed, fault) {
            (Err(e), _) => Answer::Err(e),
            (Ok(()), Some(Fault::Drop)) => Answer::Drop,
            (Ok(()), Some(Fault::Delay { delay_ms })) => {
                delay += Duration::from_millis(delay_ms);
                serve_sqs(&mut w, &operation, parsed, &mut waiting)
            }
            (Ok(()), Some(f)) => Answer::Err(sqs_fault(f, &operation, &w)),
            (Ok(()), None) => serve_sqs(&mut w, &operation, parsed, &mut waiting),
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
            pipeline: None,
            execution_id: None,
            status,
            error,
            abandon: None,
        };
        w.calls.push(record);
        match waiting {
            Some(wait) => SqsAnswer::Wait(wait),
            None => SqsAnswer::Done(answer, delay),
        }
    }

    /// A long poll's next look: the messages now visible, or (with `last`, or once its
    /// emulated wait is over) the empty answer; `None` while it should wait on.
    pub fn receive_again(&self, waiting: &Waiting, last: bool) -> Option<Answer> {
        self.publish_events();
        let mut w = self.lock();
        let got = receive(&mut w, &waiting.request);
        (!got.is_empty() || last || w.clock.now() >= waiting.until_ms)
            .then(|| Answer::Ok(sqs::messages_json(&got)))
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
            .and_then(|t| {
                t.strip_prefix("CodePipeline_20150709.")
                    .or_else(|| t.strip_prefix("AmazonSSM."))
            })
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
        let signed = if w.require_signature && target.is_some_and(|t| t.starts_with("AmazonSSM.")) {
            crate::auth::check_for(auth, "ssm")
        } else if w.require_signature {
            crate::auth::check(auth)
        } else {
            Ok(())
        };
        // The region the request was signed for (a calendar's ARN must name it).
        let signed_region =
            crate::auth::credential_scope(&auth).map(|(_, region)| region.to_string());
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
                    serve(&mut w, target, &operation, parsed, signed_region.as_deref())
                }
                Some(Fault::RepeatNextToken) => {
                    let sent = parsed
                        .as_ref()
                        .ok()
                        .and_then(|v| v.get("nextToken")?.as_str().map(str::to_string));
                    match serve(&mut w, target, &operation, parsed, signed_region.as_deref()) {
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
                    match serve(&mut w, target, &operation, parsed, signed_region.as_deref()) {
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
                None => serve(&mut w, target, &operation, parsed, signed_region.as_deref()),
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

/// Receives for a ReceiveMessage request (in random order if the feed reorders).
fn receive(w: &mut World, r: &sqs::ReceiveRequest) -> Vec<crate::queue::Received> {
    let now = w.clock.now();
    let World {
        queues, rng, feed, ..
    } = w;
    let shuffle = feed.as_ref().is_some_and(|f| f.reorder);
    let Some(q) = queues.get_mut(&r.queue) else {
        return Vec::new();
    };
    let visibility = r.visibility_ms.unwrap_or(q.visibility_ms);
    q.receive(now, r.max, visibility, shuffle.then_some(rng))
}

/// One SQS operation; a ReceiveMessage that finds nothing and may wait sets `waiting`.
fn serve_sqs(
    w: &mut World,
    operation: &str,
    parsed: Result<Value, serde_json::Error>,
    waiting: &mut Option<Waiting>,
) -> Answer {
    let input = match parsed {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Answer::Err(ApiError::bad_request(
                "SerializationException",
                "Start of structure or map expected",
            ));
        }
    };
    if !sqs::OPERATIONS.contains(&operation) {
        return Answer::Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Unknown operation AmazonSQS.{operation}"),
        ));
    }
    if operation == "ReceiveMessage" {
        let request = match sqs::receive_request(w, &input) {
            Ok(r) => r,
            Err(e) => return Answer::Err(e),
        };
        let got = receive(w, &request);
        if got.is_empty() && request.wait_seconds > 0 {
            let wait = Duration::from_secs(request.wait_seconds);
            *waiting = Some(Waiting {
                until_ms: w.clock.now() + wait.as_millis() as crate::clock::Millis,
                request,
                wait,
            });
        }
        return Answer::Ok(sqs::messages_json(&got));
    }
    let id = crate::fixture::random_uuid(&mut w.rng).to_string();
    match sqs::serve(w, operation, &input, id) {
        Ok(v) => Answer::Ok(v),
        Err(e) => Answer::Err(e),
    }
}

/// An injected fault on an SQS call, as SQS words it.
fn sqs_fault(fault: Fault, operation: &str, w: &World) -> ApiError {
    match fault {
        Fault::AccessDenied => ApiError {
            status: 403,
            code: "AccessDeniedException",
            message: format!(
                "User: arn:aws:iam::{}:user/stopd is not authorized to perform: sqs:{} on resource: arn:aws:sqs:{}:{}:* because no identity-based policy allows the sqs:{} action",
                w.account,
                operation.to_lowercase(),
                w.region,
                w.account,
                operation.to_lowercase()
            ),
        },
        Fault::ExpiredToken | Fault::UnrecognizedClient => {
            identity_fault(fault, operation, None, w)
        }
        Fault::Throttling => ApiError::bad_request("RequestThrottled", "Rate exceeded"),
        Fault::Http503 => ApiError {
            status: 503,
            code: "ServiceUnavailable",
            message: "Service unavailable (injected)".into(),
        },
        _ => ApiError {
            status: 500,
            code: "InternalError",
            message: "We encountered an internal error. Please try again. (injected)".into(),
        },
    }
}

fn serve(
    w: &mut World,
    target: Option<&str>,
    operation: &str,
    parsed: Result<Value, serde_json::Error>,
    signed_region: Option<&str>,
) -> Answer {
    if target == Some("AmazonSSM.GetCalendarState") {
        let input = parsed.unwrap_or_default();
        return match calendars::get_calendar_state(w, &input, signed_region) {
            Ok(v) => Answer::Ok(v),
            Err(e) => Answer::Err(e),
        };
    }
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
        "ListPipelines" => pipelines::list_pipelines(world, input),
        "GetPipeline" => pipelines::get_pipeline(world, input),
        "GetPipelineState" => pipelines::get_pipeline_state(world, input),
        "ListPipelineExecutions" => executions::list_pipeline_executions(world, input),
        "GetPipelineExecution" => executions::get_pipeline_execution(world, input),
        "StartPipelineExecution" => executions::start_pipeline_execution(world, input),
        "StopPipelineExecution" => stop::stop_pipeline_execution(world, input),
        "ListTagsForResource" => pipelines::list_tags_for_resource(world, input),
        "DisableStageTransition" => transitions::set_stage_transition(world, input, true),
        "EnableStageTransition" => transitions::set_stage_transition(world, input, false),
        other => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Operation {other} is not supported by this emulator"),
        )),
    }
}
