//! Stops: [`Core::stop`] prechecks a [`StopRequest`], sends StopPipelineExecution under the
//! stop retry policy, and says in a [`StopReport`] exactly what happened, checking a lost
//! answer instead of guessing it.

use std::time::Duration;

use super::handle::Core;
use super::precheck::{cut_chars, valid_execution_id, valid_pipeline_name};
use crate::error::{ApiError, ErrorKind};
use crate::types::CallCounts;

/// The longest reason StopPipelineExecution accepts, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// One stop to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// Abandon in-progress actions instead of letting them finish.
    pub abandon: bool,
    /// Reason; cut to 200 characters before sending.
    pub reason: String,
}

/// How a stop ended. Names are the audit log's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The API accepted the stop.
    Stopped,
    /// `DuplicatedStopRequestException`: already stopping. Done, not an error.
    AlreadyStopping,
    /// `PipelineExecutionNotStoppableException`: it finished first. Done, not an error.
    NotStoppable,
    /// The pipeline does not exist (any more).
    PipelineNotFound,
    /// `ValidationException` or another permanent refusal, or a request that could never be
    /// valid (checked before sending).
    Rejected,
    /// Retries, the deadline, or a shutdown ran out first.
    Failed,
}

impl Outcome {
    /// The audit-log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stopped => "stopped",
            Outcome::AlreadyStopping => "already_stopping",
            Outcome::NotStoppable => "not_stoppable",
            Outcome::PipelineNotFound => "pipeline_not_found",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }

    /// Whether the outcome is final: nothing more will happen if nobody asks again.
    pub fn is_final(self) -> bool {
        self != Outcome::Failed
    }
}

/// What happened to one stop.
#[derive(Debug, Clone, PartialEq)]
pub struct StopReport {
    /// The outcome.
    pub outcome: Outcome,
    /// Requests sent (0: refused before sending).
    pub attempts: u32,
    /// Throttling answers met.
    pub throttled: u32,
    /// Time from the first attempt to the outcome.
    pub elapsed: Duration,
    /// The last error, if any (also for `already_stopping` and `not_stoppable`).
    pub error: Option<ApiError>,
    /// The stop was cut short by a shutdown (the outcome is then `failed`).
    pub cancelled: bool,
    /// The reason as sent (at most 200 characters).
    pub reason_sent: String,
    /// Requests made for this stop, by operation (with the read that checks a lost answer).
    pub calls: CallCounts,
    /// How the outcome was established when an attempt's answer was lost, in a sentence.
    pub note: Option<String>,
}

impl Core {
    /// Stops one execution and says exactly what happened.
    pub async fn stop(&self, req: &StopRequest) -> StopReport {
        let reason = cut_chars(&req.reason, MAX_REASON_CHARS).to_string();
        let refuse = |message: String| StopReport {
            outcome: Outcome::Rejected,
            attempts: 0,
            throttled: 0,
            elapsed: Duration::ZERO,
            error: Some(ApiError::precheck("StopPipelineExecution", message)),
            cancelled: false,
            reason_sent: reason.clone(),
            calls: CallCounts::default(),
            note: None,
        };
        if !valid_pipeline_name(&req.pipeline) {
            return refuse(format!(
                "{:?} is not a pipeline name (1-100 of A-Z a-z 0-9 . @ - _)",
                req.pipeline
            ));
        }
        if !valid_execution_id(&req.execution_id) {
            return refuse(format!(
                "{:?} is not an execution id (a lower-case UUID)",
                req.execution_id
            ));
        }
        let client = &self.inner.client;
        let mut calls = CallCounts::default();
        let policy = self.inner.config.stop_retry;
        let r = self
            .call("StopPipelineExecution", &policy, &mut calls, || {
                let call = client
                    .stop_pipeline_execution()
                    .pipeline_name(&req.pipeline)
                    .pipeline_execution_id(&req.execution_id)
                    .abandon(req.abandon)
                    .reason(&reason);
                async move {
                    call.send()
                        .await
                        .map_err(|e| ApiError::from_sdk("StopPipelineExecution", e))
                }
            })
            .await;
        let (mut outcome, mut error) = match r.result {
            Ok(_) => (Outcome::Stopped, None),
            Err(e) => {
                let outcome = match (r.cancelled, e.kind) {
                    (true, _) => Outcome::Failed,
                    (_, ErrorKind::DuplicatedStop) => Outcome::AlreadyStopping,
                    (_, ErrorKind::NotStoppable) => Outcome::NotStoppable,
                    (_, ErrorKind::PipelineNotFound) => Outcome::PipelineNotFound,
                    (_, k) if k.is_retryable() => Outcome::Failed,
                    _ => Outcome::Rejected,
                };
                (outcome, Some(e))
            }
        };
        // An attempt's answer was lost, and a later one heard "already stopping" or "not
        // stoppable" (or nothing): that may be our own first attempt's doing. Ask the execution.
        let mut note = None;
        if r.outcome_unknown
            && !r.cancelled
            && matches!(
                outcome,
                Outcome::AlreadyStopping | Outcome::NotStoppable | Outcome::Failed
            )
            && let Ok(Some(state)) = self
                .find_execution(&req.pipeline, &req.execution_id, &mut calls)
                .await
            && state.stopped_with(&reason)
        {
            note = Some(format!(
                "an earlier attempt's answer was lost; the last answer was {}, and the execution is {} with this stop's reason: the stop was ours",
                error
                    .as_ref()
                    .map_or_else(|| "a success".to_string(), ToString::to_string),
                state.status.as_str()
            ));
            outcome = Outcome::Stopped;
            error = None;
        }
        StopReport {
            outcome,
            attempts: r.attempts,
            throttled: r.throttled,
            elapsed: r.elapsed,
            error,
            cancelled: r.cancelled,
            reason_sent: reason,
            calls,
            note,
        }
    }
}
