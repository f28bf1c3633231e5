//! Reads of one execution: its status (GetPipelineExecution), and its status with the stop
//! reason (only ListPipelineExecutions' summaries carry `stopTrigger`).

use aws_sdk_codepipeline::types::PipelineExecutionStatus;

use super::handle::Core;
use super::pages::ExecutionPages;
use crate::error::{ApiError, ErrorKind};
use crate::types::CallCounts;

/// At most this many executions that were active at the last sweep, and are older than what a
/// sweep paged through, are checked one by one with GetPipelineExecution; more, and paging on
/// is cheaper (100 a page).
pub(super) const MAX_SINGLE_CHECKS: usize = 5;

/// What ListPipelineExecutions says of one execution ([`Core::find_execution`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionState {
    /// `status`.
    pub status: PipelineExecutionStatus,
    /// `stopTrigger.reason`: the reason the stop that is under way, or was made, was given.
    pub stop_reason: Option<String>,
}

impl ExecutionState {
    /// Whether the execution is Stopping or Stopped by a stop whose reason is `reason` (the
    /// reason as it was sent).
    pub fn stopped_with(&self, reason: &str) -> bool {
        matches!(
            self.status,
            PipelineExecutionStatus::Stopping | PipelineExecutionStatus::Stopped
        ) && self.stop_reason.as_deref() == Some(reason)
    }
}

impl Core {
    /// GetPipelineExecution's status of one execution (e.g. `Stopped`), with retries. Used to
    /// resolve stops left pending by a crash, and to watch escalations.
    pub async fn get_execution_status(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<PipelineExecutionStatus, ApiError> {
        let client = &self.inner.client;
        let policy = self.inner.config.discovery_retry;
        let got = self
            .call("GetPipelineExecution", &policy, calls, || {
                let req = client
                    .get_pipeline_execution()
                    .pipeline_name(pipeline)
                    .pipeline_execution_id(id);
                async move {
                    req.send()
                        .await
                        .map_err(|e| ApiError::from_sdk("GetPipelineExecution", e))
                }
            })
            .await
            .result?;
        got.pipeline_execution()
            .and_then(|e| e.status().cloned())
            .ok_or_else(|| ApiError {
                operation: "GetPipelineExecution",
                kind: ErrorKind::BadResponse,
                code: None,
                message: "the answer has no status".into(),
            })
    }

    /// Status and `stopTrigger.reason` of one execution. Only the listing's summaries carry
    /// the stop reason (GetPipelineExecution's answer has none), so this pages through
    /// ListPipelineExecutions, newest first, for at most `MAX_SINGLE_CHECKS` pages; `None`
    /// when the execution is not among them.
    pub async fn find_execution(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<Option<ExecutionState>, ApiError> {
        let mut listing = ExecutionPages::new(self, pipeline);
        for _ in 0..MAX_SINGLE_CHECKS {
            let Some(page) = listing.next(calls).await? else {
                break;
            };
            if let Some(s) = page.iter().find(|s| s.pipeline_execution_id() == Some(id)) {
                return Ok(s.status().map(|status| ExecutionState {
                    status: status.clone(),
                    stop_reason: s
                        .stop_trigger()
                        .and_then(|t| t.reason())
                        .map(str::to_string),
                }));
            }
        }
        // A listing cut short (a repeated token) within those pages is an error.
        listing.into_cut().map_or(Ok(None), Err)
    }
}
