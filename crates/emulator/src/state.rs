//! The emulated account: pipelines, their stage templates, and executions that move through
//! those stages as the emulator's clock advances.
//!
//! Executions are resolved lazily: nothing runs in the background. Before any request reads or
//! changes a pipeline, [`Pipeline::resolve`] brings every unfinished execution up to "now" from
//! its start time, its template's action durations and the stops it has received. This makes the
//! manual clock exact (advance an hour and every transition of that hour has happened, at the
//! instant it would have) and keeps the emulator cheap with hundreds of thousands of executions.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Millis;

/// How a pipeline runs executions that overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExecutionMode {
    /// A newer execution supersedes an older one at the older one's next stage boundary.
    Superseded,
    /// Executions run one at a time, in order; later ones wait.
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

/// One action of a stage: how long it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionDef {
    /// Action name (the model's ActionName pattern).
    pub name: String,
    /// ActionCategory: Source, Build, Deploy, Test, Invoke, Approval, Compute.
    pub category: String,
    /// ActionProvider, e.g. CodeBuild.
    pub provider: String,
    /// How long the action runs, in milliseconds.
    pub duration_ms: Millis,
}

/// One stage: its actions run one after another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageDef {
    /// Stage name.
    pub name: String,
    /// Actions in run order.
    pub actions: Vec<ActionDef>,
}

/// The stages of a pipeline, with precomputed offsets so resolution is a binary search.
#[derive(Debug)]
pub struct Template {
    /// The stages, in order.
    pub stages: Vec<StageDef>,
    /// Offset from an execution's run start at which each action (flattened) ends.
    action_ends: Vec<Millis>,
    /// For each flattened action, the index of its stage.
    action_stage: Vec<usize>,
    /// Offset at which each stage ends.
    stage_ends: Vec<Millis>,
}

impl Template {
    /// Builds a template; stages and actions must be non-empty (checked by the caller).
    pub fn new(stages: Vec<StageDef>) -> Template {
        let mut action_ends = Vec::new();
        let mut action_stage = Vec::new();
        let mut stage_ends = Vec::new();
        let mut t = 0;
        for (i, s) in stages.iter().enumerate() {
            for a in &s.actions {
                t += a.duration_ms.max(1);
                action_ends.push(t);
                action_stage.push(i);
            }
            stage_ends.push(t);
        }
        Template {
            stages,
            action_ends,
            action_stage,
            stage_ends,
        }
    }

    /// Total run time of an execution that neither fails nor is stopped.
    pub fn total(&self) -> Millis {
        self.action_ends.last().copied().unwrap_or(1)
    }

    /// Number of actions over all stages.
    pub fn action_count(&self) -> usize {
        self.action_ends.len()
    }

    /// Index of the flattened action running at `offset` from the run start (clamped to the last).
    pub fn action_at(&self, offset: Millis) -> usize {
        self.action_ends
            .partition_point(|end| *end <= offset)
            .min(self.action_ends.len().saturating_sub(1))
    }

    /// Offset at which flattened action `i` ends.
    pub fn action_end(&self, i: usize) -> Millis {
        self.action_ends[i.min(self.action_ends.len() - 1)]
    }

    /// Offset at which flattened action `i` starts.
    pub fn action_start(&self, i: usize) -> Millis {
        if i == 0 { 0 } else { self.action_ends[i - 1] }
    }

    /// Stage index of flattened action `i`.
    pub fn stage_of(&self, i: usize) -> usize {
        self.action_stage[i.min(self.action_stage.len() - 1)]
    }

    /// Offset at which stage `i` ends.
    pub fn stage_end(&self, i: usize) -> Millis {
        self.stage_ends[i]
    }

    /// Flattened index of the first action of stage `i`.
    pub fn first_action_of(&self, stage: usize) -> usize {
        self.action_stage.partition_point(|s| *s < stage)
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
    /// When its first action began; `None` while it waits in a QUEUED pipeline.
    pub run_start: Option<Millis>,
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
    /// When a newer execution asked to supersede it (SUPERSEDED mode).
    pub supersede_from: Option<Millis>,
    /// For ROLLBACK executions, the execution rolled back to.
    pub rollback_target: Option<Uuid>,
}

impl Execution {
    /// A new execution created at `now`, not yet resolved.
    pub fn new(id: Uuid, now: Millis, mode: ExecutionMode) -> Execution {
        Execution {
            id,
            created: now,
            run_start: if mode == ExecutionMode::Queued {
                None
            } else {
                Some(now)
            },
            status: ExecStatus::InProgress,
            ended: None,
            last_update: now,
            kind: ExecutionType::Standard,
            trigger: TriggerType::StartPipelineExecution,
            mode,
            fail_at: None,
            stop: None,
            supersede_from: None,
            rollback_target: None,
        }
    }

    fn finish(&mut self, status: ExecStatus, at: Millis) {
        self.status = status;
        self.ended = Some(at);
        self.last_update = at;
    }

    /// Whether the execution completed stage `stage` successfully by `now` (the
    /// `succeededInStage` filter of ListPipelineExecutions).
    pub fn succeeded_in(&self, template: &Template, stage: usize, now: Millis) -> bool {
        let Some(r) = self.run_start else {
            return false;
        };
        if self.status == ExecStatus::Succeeded {
            return true;
        }
        let stage_end = r + template.stage_end(stage);
        match self.ended {
            None => stage_end <= now,
            Some(end) if self.status == ExecStatus::Failed => stage_end < end,
            Some(end) => stage_end <= end,
        }
    }

    /// The flattened action this execution is running (or last ran) at `t`.
    pub fn action_index_at(&self, template: &Template, t: Millis) -> Option<usize> {
        let r = self.run_start?;
        let t = self.ended.map_or(t, |e| t.min(e.saturating_sub(1)));
        Some(template.action_at((t - r).max(0)))
    }
}

/// What a stop request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopResult {
    /// Accepted.
    Accepted,
    /// `DuplicatedStopRequestException`, with the message.
    Duplicated(String),
    /// `PipelineExecutionNotStoppableException`, with the message.
    NotStoppable(String),
}

/// One pipeline.
#[derive(Debug)]
pub struct Pipeline {
    /// Name (the model's PipelineName).
    pub name: String,
    /// Version, starts at 1.
    pub version: i32,
    /// SUPERSEDED, QUEUED or PARALLEL.
    pub mode: ExecutionMode,
    /// When it was created.
    pub created: Millis,
    /// When it was last updated.
    pub updated: Millis,
    /// Its stages; shared between pipelines of the same shape.
    pub template: Arc<Template>,
    /// Resource tags in order.
    pub tags: Vec<(String, String)>,
    /// Executions, oldest first.
    pub executions: Vec<Execution>,
    /// `clientRequestToken` -> execution id, for idempotent starts.
    pub start_tokens: HashMap<String, Uuid>,
}

/// Knobs of the lifecycle and of listings.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Emulated milliseconds between an abandon and `Stopped` (default 1 s: AWS says the
    /// execution "is in a Stopping state for a very short time while the in-progress actions are
    /// abandoned"). It runs on the emulator's clock, so `--time-scale` shortens it in real time.
    pub abandon_settle_ms: Millis,
    /// The order of ListPipelineExecutions, which AWS does not document.
    pub list_order: ListOrder,
}

/// The order in which ListPipelineExecutions pages through a pipeline's executions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ListOrder {
    /// Newest first (what AWS is seen to do).
    #[default]
    NewestFirst,
    /// Oldest first: a client that relies on the order (undocumented) shows it here.
    OldestFirst,
}

/// The default abandon settle time, in emulated milliseconds.
pub const DEFAULT_ABANDON_SETTLE_MS: Millis = 1_000;

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            abandon_settle_ms: DEFAULT_ABANDON_SETTLE_MS,
            list_order: ListOrder::NewestFirst,
        }
    }
}

impl Pipeline {
    /// Brings every unfinished execution up to `now`.
    pub fn resolve(&mut self, now: Millis, behaviour: Behaviour) {
        let template = Arc::clone(&self.template);
        // For QUEUED pipelines: when the single run slot is free (None: taken by a running one).
        let mut slot_free: Option<Millis> = Some(Millis::MIN);
        for ex in &mut self.executions {
            if ex.status.is_final() {
                if ex.mode == ExecutionMode::Queued
                    && ex.run_start.is_some()
                    && let (Some(free), Some(end)) = (slot_free, ex.ended)
                {
                    slot_free = Some(free.max(end));
                }
                continue;
            }
            if ex.run_start.is_none() {
                match slot_free {
                    Some(free) if free <= now => ex.run_start = Some(ex.created.max(free)),
                    _ => continue, // still waiting for the slot
                }
            }
            resolve_running(ex, &template, now, behaviour);
            if ex.mode == ExecutionMode::Queued {
                slot_free = if ex.status.is_final() { ex.ended } else { None };
            }
        }
    }

    /// Applies a stop request at `now` (after [`Pipeline::resolve`]).
    pub fn stop(
        &mut self,
        now: Millis,
        id: Uuid,
        abandon: bool,
        reason: Option<String>,
        behaviour: Behaviour,
    ) -> StopResult {
        self.resolve(now, behaviour);
        let template = Arc::clone(&self.template);
        let Some(ex) = self.executions.iter_mut().find(|e| e.id == id) else {
            return StopResult::NotStoppable(format!(
                "Unable to stop pipeline execution {id}: it does not exist in pipeline {}",
                self.name
            ));
        };
        match (ex.status, ex.stop.as_deref_mut()) {
            (s, _) if s.is_final() => StopResult::NotStoppable(format!(
                "Unable to stop pipeline execution {id} because it is in {} state",
                s.as_str()
            )),
            (ExecStatus::Stopping, Some(stop)) => {
                if stop.abandon_at.is_some() {
                    StopResult::Duplicated(format!(
                        "Stop request with abandon = true already in progress for pipeline execution {id}"
                    ))
                } else if !abandon {
                    StopResult::Duplicated(format!(
                        "Stop request with abandon = false already in progress for pipeline execution {id}"
                    ))
                } else {
                    stop.abandon_at = Some(now);
                    resolve_running(ex, &template, now, behaviour);
                    StopResult::Accepted
                }
            }
            _ => {
                ex.stop = Some(Box::new(StopInfo {
                    at: now,
                    abandon_at: abandon.then_some(now),
                    reason,
                }));
                ex.last_update = now;
                if ex.run_start.is_none() {
                    // Waiting in a queue: nothing runs, so it stops at once.
                    ex.finish(ExecStatus::Stopped, now);
                } else {
                    ex.status = ExecStatus::Stopping;
                    resolve_running(ex, &template, now, behaviour);
                }
                StopResult::Accepted
            }
        }
    }

    /// Starts a new execution at `now` (after [`Pipeline::resolve`]).
    pub fn start(&mut self, now: Millis, id: Uuid, behaviour: Behaviour) -> &Execution {
        if self.mode == ExecutionMode::Superseded {
            for ex in self.executions.iter_mut().filter(|e| !e.status.is_final()) {
                ex.supersede_from.get_or_insert(now);
            }
        }
        self.executions.push(Execution::new(id, now, self.mode));
        self.resolve(now, behaviour);
        self.executions.last().expect("just pushed")
    }

    /// The execution with that id.
    pub fn execution(&self, id: Uuid) -> Option<&Execution> {
        self.executions.iter().find(|e| e.id == id)
    }

    /// Executions that are InProgress or Stopping.
    pub fn active_count(&self) -> usize {
        self.executions
            .iter()
            .filter(|e| !e.status.is_final())
            .count()
    }
}

/// Moves one running execution (its `run_start` is set) to `now`.
fn resolve_running(ex: &mut Execution, t: &Template, now: Millis, behaviour: Behaviour) {
    let Some(r) = ex.run_start else { return };
    // Every way this execution can end, as (instant, status); the earliest wins.
    let natural = match ex.fail_at {
        Some(k) => (r + t.action_end(k as usize), ExecStatus::Failed),
        None => (r + t.total(), ExecStatus::Succeeded),
    };
    let mut end = natural;
    if let Some(stop) = &ex.stop {
        // A stopped execution ends Stopped whatever its running action does: "After all
        // in-progress actions are completed or abandoned, the pipeline execution is in a Stopped
        // state" (StopPipelineExecution). Stop-and-wait: the action running at the stop ends and
        // nothing after it starts; abandon: it settles.
        let mut at = r + t.action_end(t.action_at((stop.at - r).max(0)));
        if let Some(abandon_at) = stop.abandon_at {
            at = at.min(abandon_at + behaviour.abandon_settle_ms);
        }
        end = (at, ExecStatus::Stopped);
    }
    if let Some(from) = ex.supersede_from {
        let stage = t.stage_of(t.action_at((from - r).max(0)));
        if stage + 1 < t.stages.len() {
            let at = r + t.stage_end(stage);
            if at < end.0 {
                end = (at, ExecStatus::Superseded);
            }
        }
    }
    if end.0 <= now {
        ex.finish(end.1, end.0);
    } else {
        ex.status = if ex.stop.is_some() {
            ExecStatus::Stopping
        } else {
            ExecStatus::InProgress
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Arc<Template> {
        let a = |name: &str, s: i64| ActionDef {
            name: name.into(),
            category: "Build".into(),
            provider: "CodeBuild".into(),
            duration_ms: s * 1000,
        };
        Arc::new(Template::new(vec![
            StageDef {
                name: "Source".into(),
                actions: vec![a("Src", 10)],
            },
            StageDef {
                name: "Build".into(),
                actions: vec![a("Compile", 60), a("Test", 60)],
            },
            StageDef {
                name: "Deploy".into(),
                actions: vec![a("Deploy", 300)],
            },
        ]))
    }

    fn pipeline(mode: ExecutionMode) -> Pipeline {
        Pipeline {
            name: "p".into(),
            version: 1,
            mode,
            created: 0,
            updated: 0,
            template: template(),
            tags: vec![],
            executions: vec![],
            start_tokens: HashMap::new(),
        }
    }

    const B: Behaviour = Behaviour {
        abandon_settle_ms: 0,
        list_order: ListOrder::NewestFirst,
    };

    #[test]
    fn execution_succeeds_after_total_duration() {
        let mut p = pipeline(ExecutionMode::Parallel);
        let id = Uuid::from_u128(1);
        p.start(0, id, B);
        p.resolve(429_999, B);
        assert_eq!(p.execution(id).unwrap().status, ExecStatus::InProgress);
        p.resolve(430_000, B);
        let ex = p.execution(id).unwrap();
        assert_eq!(ex.status, ExecStatus::Succeeded);
        assert_eq!(ex.ended, Some(430_000));
    }

    #[test]
    fn stop_and_wait_ends_when_running_action_ends() {
        let mut p = pipeline(ExecutionMode::Parallel);
        let id = Uuid::from_u128(1);
        p.start(0, id, B);
        // At 20 s the Compile action (10..70 s) runs.
        assert_eq!(
            p.stop(20_000, id, false, Some("r".into()), B),
            StopResult::Accepted
        );
        assert_eq!(p.execution(id).unwrap().status, ExecStatus::Stopping);
        p.resolve(69_999, B);
        assert_eq!(p.execution(id).unwrap().status, ExecStatus::Stopping);
        p.resolve(70_000, B);
        assert_eq!(p.execution(id).unwrap().status, ExecStatus::Stopped);
        assert_eq!(p.execution(id).unwrap().ended, Some(70_000));
    }

    #[test]
    fn queued_execution_waits_for_the_one_before() {
        let mut p = pipeline(ExecutionMode::Queued);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        p.start(0, a, B);
        p.start(5_000, b, B);
        assert_eq!(p.execution(b).unwrap().run_start, None);
        p.resolve(430_000, B);
        assert_eq!(p.execution(a).unwrap().status, ExecStatus::Succeeded);
        assert_eq!(p.execution(b).unwrap().run_start, Some(430_000));
    }

    #[test]
    fn superseded_at_the_next_stage_boundary() {
        let mut p = pipeline(ExecutionMode::Superseded);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        p.start(0, a, B);
        p.start(30_000, b, B); // a is in Build (10..130 s)
        p.resolve(129_999, B);
        assert_eq!(p.execution(a).unwrap().status, ExecStatus::InProgress);
        p.resolve(130_000, B);
        assert_eq!(p.execution(a).unwrap().status, ExecStatus::Superseded);
        assert_eq!(p.execution(b).unwrap().status, ExecStatus::InProgress);
    }
}
