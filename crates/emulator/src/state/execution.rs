//! One execution: its wire vocabulary (mode, status, type, trigger), the stop it received, and
//! where it is in its pipeline's template at an instant.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::template::Template;
use crate::clock::Millis;

/// How a pipeline runs executions that overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExecutionMode {
    /// One execution per stage; a newer execution supersedes an older one waiting between
    /// stages.
    Superseded,
    /// One execution per stage; waiting ones enter in order.
    Queued,
    /// Executions run independently of each other.
    Parallel,
}

impl ExecutionMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Superseded => "SUPERSEDED",
            ExecutionMode::Queued => "QUEUED",
            ExecutionMode::Parallel => "PARALLEL",
        }
    }
}

/// `PipelineExecutionStatus` of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecStatus {
    /// Running (or queued).
    InProgress,
    /// A stop was accepted and the running action has not ended yet.
    Stopping,
    /// Stopped by a stop request.
    Stopped,
    /// Every action succeeded.
    Succeeded,
    /// An action failed.
    Failed,
    /// A newer execution took its place.
    Superseded,
    /// Cancelled (only from fixtures).
    Cancelled,
}

impl ExecStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::InProgress => "InProgress",
            ExecStatus::Stopping => "Stopping",
            ExecStatus::Stopped => "Stopped",
            ExecStatus::Succeeded => "Succeeded",
            ExecStatus::Failed => "Failed",
            ExecStatus::Superseded => "Superseded",
            ExecStatus::Cancelled => "Cancelled",
        }
    }

    /// Whether the execution has ended for good.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecStatus::InProgress | ExecStatus::Stopping)
    }
}

/// `ExecutionType` of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExecutionType {
    /// An ordinary execution.
    #[default]
    Standard,
    /// A rollback to an earlier execution.
    Rollback,
}

impl ExecutionType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionType::Standard => "STANDARD",
            ExecutionType::Rollback => "ROLLBACK",
        }
    }
}

/// The stop a stop request put on an execution.
#[derive(Debug, Clone, Serialize)]
pub struct StopInfo {
    /// When the (first) stop was accepted.
    pub at: Millis,
    /// When an abandon was accepted (the first stop, or an upgrade), if any.
    pub abandon_at: Option<Millis>,
    /// The reason given, reported as `stopTrigger.reason`.
    pub reason: Option<String>,
}

/// The trigger recorded on an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TriggerType {
    /// Started through the API.
    #[default]
    StartPipelineExecution,
    /// A source change through a webhook.
    Webhook,
    /// EventBridge.
    CloudWatchEvent,
    /// A V2 webhook.
    WebhookV2,
    /// Created with the pipeline.
    CreatePipeline,
    /// A manual rollback.
    ManualRollback,
    /// An automated rollback.
    AutomatedRollback,
}

impl TriggerType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::StartPipelineExecution => "StartPipelineExecution",
            TriggerType::Webhook => "Webhook",
            TriggerType::CloudWatchEvent => "CloudWatchEvent",
            TriggerType::WebhookV2 => "WebhookV2",
            TriggerType::CreatePipeline => "CreatePipeline",
            TriggerType::ManualRollback => "ManualRollback",
            TriggerType::AutomatedRollback => "AutomatedRollback",
        }
    }
}

/// One pipeline execution.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The execution id (a lower-case UUID on the wire).
    pub id: Uuid,
    /// `startTime`: when the execution was created.
    pub created: Millis,
    /// When it entered each stage it has reached, in stage order (index = stage).
    pub stage_starts: Vec<Millis>,
    /// Since when it has waited, with no action running, to enter stage `stage_starts.len()`
    /// (a queue before the first stage, a locked stage or a disabled transition); `None` while
    /// a stage runs. Kept on a final execution that ended waiting.
    pub waiting_since: Option<Millis>,
    /// Current status (as of the last resolution).
    pub status: ExecStatus,
    /// When it ended, once final.
    pub ended: Option<Millis>,
    /// `lastUpdateTime`.
    pub last_update: Millis,
    /// STANDARD or ROLLBACK.
    pub kind: ExecutionType,
    /// What started it.
    pub trigger: TriggerType,
    /// The pipeline's mode when it started.
    pub mode: ExecutionMode,
    /// Flattened index of the action at which it will fail, if it will.
    pub fail_at: Option<u16>,
    /// The stop it received, if any.
    pub stop: Option<Box<StopInfo>>,
    /// For ROLLBACK executions, the execution rolled back to.
    pub rollback_target: Option<Uuid>,
}

impl Execution {
    /// A new execution created at `now`: it waits to enter the first stage (it enters at once
    /// when the pipeline lets it).
    pub fn new(id: Uuid, now: Millis, mode: ExecutionMode) -> Execution {
        Execution {
            id,
            created: now,
            stage_starts: Vec::new(),
            waiting_since: Some(now),
            status: ExecStatus::InProgress,
            ended: None,
            last_update: now,
            kind: ExecutionType::Standard,
            trigger: TriggerType::StartPipelineExecution,
            mode,
            fail_at: None,
            stop: None,
            rollback_target: None,
        }
    }

    /// A finished execution for seeding: it ran `ran` ms from `created` without waiting and
    /// ended with `status`.
    pub fn finished(
        id: Uuid,
        created: Millis,
        ran: Millis,
        status: ExecStatus,
        mode: ExecutionMode,
        template: &Template,
    ) -> Execution {
        let mut ex = Execution::new(id, created, mode);
        ex.waiting_since = None;
        let last = if status == ExecStatus::Succeeded {
            template.stages.len() - 1
        } else {
            template.stage_of(template.action_at((ran - 1).max(0)))
        };
        ex.stage_starts = (0..=last)
            .map(|s| created + template.stage_offset(s))
            .collect();
        ex.finish(status, created + ran);
        ex
    }

    pub(super) fn finish(&mut self, status: ExecStatus, at: Millis) {
        self.status = status;
        self.ended = Some(at);
        self.last_update = at;
    }

    /// The stage it is running, `None` while it waits (or before it entered one).
    pub fn running_stage(&self) -> Option<usize> {
        match self.waiting_since {
            Some(_) => None,
            None => self.stage_starts.len().checked_sub(1),
        }
    }

    /// Whether it is waiting (not final) with no action running.
    pub fn is_waiting(&self) -> bool {
        !self.status.is_final() && self.waiting_since.is_some()
    }

    /// The stage and flattened action it is running (or last ran) at `t`; `None` if it never
    /// entered a stage.
    pub fn position_at(&self, template: &Template, t: Millis) -> Option<(usize, usize)> {
        let stage = self.stage_starts.len().checked_sub(1)?;
        let t0 = self.stage_starts[stage];
        let t = self.ended.map_or(t, |e| t.min(e.saturating_sub(1)));
        let base = template.stage_offset(stage);
        let flat = template.action_at(base + (t - t0).max(0)).clamp(
            template.first_action_of(stage),
            template.last_action_of(stage),
        );
        Some((stage, flat))
    }

    /// Whether the execution completed stage `stage` successfully (the `succeededInStage`
    /// filter of ListPipelineExecutions).
    pub fn succeeded_in(&self, stage: usize) -> bool {
        let reached = self.stage_starts.len();
        reached > stage + 1
            || (reached == stage + 1
                && (self.waiting_since.is_some() || self.status == ExecStatus::Succeeded))
    }
}
