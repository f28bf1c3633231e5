//! Reads of one execution: its status (GetPipelineExecution), and its status with the stop
//! reason (only ListPipelineExecutions' summaries carry `stopTrigger`).

use aws_sdk_codepipeline::types::{PipelineExecution, PipelineExecutionStatus};

use super::handle::Core;
use super::pages::ExecutionPages;
use crate::error::{ApiError, ErrorKind};
use crate::types::{ActiveStatus, CallCounts};

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

/// What GetPipelineExecution says of one execution ([`Core::read_execution`]). Its answer has
/// no start time: an event's `start-time` (or a listing) gives that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRead {
    /// InProgress or Stopping; `None` once it ended (or in a status stopd never acts on).
    pub active: Option<ActiveStatus>,
    /// `executionType` is ROLLBACK.
    pub rollback: bool,
    /// `trigger.triggerType`.
    pub trigger: Option<String>,
}

impl Core {
    /// GetPipelineExecution of one execution, with retries: its status (an answer without one is
    /// an error) and the execution.
    async fn get_execution(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<(PipelineExecutionStatus, PipelineExecution), ApiError> {
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
        got.pipeline_execution
            .and_then(|e| Some((e.status().cloned()?, e)))
            .ok_or_else(|| ApiError {
                operation: "GetPipelineExecution",
                kind: ErrorKind::BadResponse,
                code: None,
                message: "the answer has no status".into(),
            })
    }

    /// GetPipelineExecution of one execution: status, whether it is a rollback, its trigger
    /// (the event consumer re-reads each execution an event names: events are triggers, not
    /// truth).
    pub async fn read_execution(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<ExecutionRead, ApiError> {
        let (status, e) = self.get_execution(pipeline, id, calls).await?;
        Ok(ExecutionRead {
            active: match status {
                PipelineExecutionStatus::InProgress => Some(ActiveStatus::InProgress),
                PipelineExecutionStatus::Stopping => Some(ActiveStatus::Stopping),
                _ => None,
            },
            rollback: e.execution_type()
                == Some(&aws_sdk_codepipeline::types::ExecutionType::Rollback),
            trigger: e
                .trigger()
                .and_then(|t| t.trigger_type())
                .map(|t| t.as_str().to_string()),
        })
    }

    /// The tags of a pipeline (cached for `CoreConfig::tag_ttl`, as discovery reads them).
    pub async fn pipeline_tags(
        &self,
        pipeline: &str,
        calls: &mut CallCounts,
    ) -> Result<std::sync::Arc<std::collections::BTreeMap<String, String>>, ApiError> {
        self.tags(pipeline, calls).await
    }

    /// GetPipelineExecution's status of one execution (e.g. `Stopped`), with retries. Used to
    /// resolve stops left pending by a crash, and to watch escalations.
    pub async fn get_execution_status(
        &self,
        pipeline: &str,
        id: &str,
        calls: &mut CallCounts,
    ) -> Result<PipelineExecutionStatus, ApiError> {
        Ok(self.get_execution(pipeline, id, calls).await?.0)
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
