//! What discovery reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::ApiError;

/// Status of an execution stopd may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActiveStatus {
    /// Running (or queued).
    InProgress,
    /// A stop was accepted; in-progress actions are finishing or being abandoned.
    Stopping,
}

/// An execution that is InProgress or Stopping.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveExecution {
    /// Pipeline name.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// InProgress or Stopping.
    pub status: ActiveStatus,
    /// `startTime` (optional in the model; `None` when the service did not say, never a guess).
    pub start_time: Option<DateTime<Utc>>,
    /// Whether `executionType` is ROLLBACK.
    pub rollback: bool,
    /// `trigger.triggerType`, e.g. `Webhook`.
    pub trigger: Option<String>,
    /// `stopTrigger.reason`, for one already stopping.
    pub stop_reason: Option<String>,
    /// The pipeline's tags (empty unless tags were asked for).
    pub tags: Arc<BTreeMap<String, String>>,
}

/// A pipeline that discovery could not read, with why. It never hides the others.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineFailure {
    /// Pipeline name.
    pub pipeline: String,
    /// The last error.
    pub error: ApiError,
}

/// Every operation the engine calls (CodePipeline's, and SSM's GetCalendarState): the names [`CallCounts`] counts by (the
/// daemon's metrics start each at 0, so that an alert sees the first throttle).
pub const OPERATIONS: [&str; 10] = [
    "DisableStageTransition",
    "EnableStageTransition",
    "GetCalendarState",
    "GetPipeline",
    "GetPipelineExecution",
    "GetPipelineState",
    "ListPipelineExecutions",
    "ListPipelines",
    "ListTagsForResource",
    "StopPipelineExecution",
];

/// API calls made, by operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Requests sent, by operation.
    pub requests: BTreeMap<&'static str, u64>,
    /// Throttling answers met, by operation.
    pub throttled: BTreeMap<&'static str, u64>,
}

impl CallCounts {
    /// Adds one retried call's numbers.
    pub fn add(&mut self, op: &'static str, attempts: u32, throttled: u32) {
        debug_assert!(OPERATIONS.contains(&op), "{op} is missing from OPERATIONS");
        *self.requests.entry(op).or_default() += u64::from(attempts);
        if throttled > 0 {
            *self.throttled.entry(op).or_default() += u64::from(throttled);
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &CallCounts) {
        for (k, v) in &other.requests {
            *self.requests.entry(k).or_default() += v;
        }
        for (k, v) in &other.throttled {
            *self.throttled.entry(k).or_default() += v;
        }
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// All throttling answers.
    pub fn total_throttled(&self) -> u64 {
        self.throttled.values().sum()
    }
}

/// The result of one discovery pass.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The names of the pipelines in scope (listed and kept by the scope predicate).
    pub pipelines: Vec<String>,
    /// Pipelines listed.
    pub pipelines_seen: usize,
    /// Pipelines the scope function kept.
    pub pipelines_in_scope: usize,
    /// InProgress and Stopping executions of in-scope pipelines.
    pub executions: Vec<ActiveExecution>,
    /// Pipelines that could not be read.
    pub failures: Vec<PipelineFailure>,
    /// Whether ListPipelines itself failed (then nothing else was read).
    pub listing_failed: Option<ApiError>,
    /// Requests made.
    pub calls: CallCounts,
}

/// One pipeline discovery has finished reading (its tags, if asked for, are cached by then).
#[derive(Debug, Clone)]
pub struct PipelineRead {
    /// Pipeline.
    pub pipeline: String,
    /// Its InProgress and Stopping executions (none if it could not be read: the failure is
    /// in [`Discovered::failures`]).
    pub executions: Vec<ActiveExecution>,
}
