//! The emulated account: pipelines, their stage templates, and executions that move through
//! those stages as the emulator's clock advances.
//!
//! Executions are resolved lazily: nothing runs in the background. Before any request reads or
//! changes a pipeline, [`Pipeline::resolve`] brings it up to "now" event by event (a stage ends,
//! an execution fails or stops, a waiting one enters a stage), from start times, the template's
//! action durations, the stops received and the transitions' states. This makes the manual clock
//! exact (advance an hour and every transition of that hour has happened, at the instant it would
//! have) and keeps the emulator cheap with hundreds of thousands of executions.
//!
//! Execution modes, as the CodePipeline User Guide describes them ("How pipeline executions
//! work"): in SUPERSEDED mode a stage holds one execution, and an execution waiting
//! between stages is superseded by a newer one that reaches the same point (never while an
//! action runs); in QUEUED mode a stage holds one execution and waiting ones enter in the order
//! they came; in PARALLEL mode executions do not wait for each other. A waiting execution is
//! `InProgress` with no action running, and can be stopped.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

    /// Flattened index of the last action of stage `i`.
    pub fn last_action_of(&self, stage: usize) -> usize {
        self.action_stage.partition_point(|s| *s <= stage) - 1
    }

    /// Offset of stage `i`'s start in a run that never waits.
    pub fn stage_offset(&self, stage: usize) -> Millis {
        self.action_start(self.first_action_of(stage))
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

    fn finish(&mut self, status: ExecStatus, at: Millis) {
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

/// The state of one transition (a stage's inbound, or its outbound).
#[derive(Debug, Clone, Default)]
pub struct Transition {
    /// The reason it was disabled; `None` while enabled.
    pub disabled_reason: Option<String>,
    /// When it was last enabled or disabled.
    pub last_changed_at: Option<Millis>,
    /// Who last enabled or disabled it.
    pub last_changed_by: Option<String>,
}

impl Transition {
    /// Whether executions may pass.
    pub fn enabled(&self) -> bool {
        self.disabled_reason.is_none()
    }
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
    /// Each stage's inbound transition.
    pub inbound: Vec<Transition>,
    /// Each stage's outbound transition (shown by no read operation; it holds executions too).
    pub outbound: Vec<Transition>,
    /// The instant up to which executions have been resolved.
    pub resolved_to: Millis,
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

/// How a running execution's current stage ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageEnd {
    /// Every action of the stage succeeded.
    Done,
    /// It ends with this final status.
    Final(ExecStatus),
}

impl Pipeline {
    /// A pipeline with these executions (oldest first), resolved from the oldest unfinished one.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        mode: ExecutionMode,
        template: Arc<Template>,
        created: Millis,
        updated: Millis,
        tags: Vec<(String, String)>,
        executions: Vec<Execution>,
        now: Millis,
    ) -> Pipeline {
        let stages = template.stages.len();
        let resolved_to = executions
            .iter()
            .filter(|e| !e.status.is_final())
            .map(|e| e.created)
            .min()
            .unwrap_or(now)
            .min(now);
        Pipeline {
            name,
            version: 1,
            mode,
            created,
            updated,
            template,
            tags,
            executions,
            start_tokens: HashMap::new(),
            inbound: vec![Transition::default(); stages],
            outbound: vec![Transition::default(); stages],
            resolved_to,
        }
    }

    /// Brings every unfinished execution up to `now`, event by event: a stage ends, an execution
    /// fails or stops, a waiting one enters a stage. Executions interact (a stage holds one
    /// execution in SUPERSEDED and QUEUED mode), so events are applied in time order.
    pub fn resolve(&mut self, now: Millis, behaviour: Behaviour) {
        let template = Arc::clone(&self.template);
        loop {
            let t = self.resolved_to;
            self.admit(t);
            // The next event: a stage end of a running execution, or a later arrival.
            let mut next: Option<Millis> = None;
            for ex in self.executions.iter().filter(|e| !e.status.is_final()) {
                let at = match ex.waiting_since {
                    Some(since) if since > t => since,
                    Some(_) => continue,
                    None => stage_end(ex, &template, behaviour).0,
                };
                next = Some(next.map_or(at, |n: Millis| n.min(at)));
            }
            let Some(at) = next.filter(|at| *at <= now) else {
                break;
            };
            self.resolved_to = at;
            let last_stage = template.stages.len() - 1;
            for ex in self.executions.iter_mut().filter(|e| !e.status.is_final()) {
                if ex.waiting_since.is_some() {
                    continue;
                }
                let (end, how) = stage_end(ex, &template, behaviour);
                if end != at {
                    continue;
                }
                match how {
                    StageEnd::Final(status) => ex.finish(status, at),
                    StageEnd::Done if ex.stage_starts.len() - 1 == last_stage => {
                        ex.finish(ExecStatus::Succeeded, at);
                    }
                    StageEnd::Done => {
                        ex.waiting_since = Some(at);
                        ex.last_update = at;
                    }
                }
            }
        }
        self.resolved_to = self.resolved_to.max(now);
    }

    /// Lets waiting executions into stages at `t`, as the pipeline's mode says.
    ///
    /// SUPERSEDED: a stage holds one execution; of those waiting to enter it, the newest is kept
    /// and the older ones are Superseded (executions are superseded only between stages).
    /// QUEUED: a stage holds one execution; the oldest waiting enters when it is free.
    /// PARALLEL: every waiting execution enters. In every mode a disabled transition (the
    /// stage's inbound, or the previous stage's outbound) holds them all.
    fn admit(&mut self, t: Millis) {
        for stage in 0..self.template.stages.len() {
            let open =
                self.inbound[stage].enabled() && (stage == 0 || self.outbound[stage - 1].enabled());
            let waiting: Vec<usize> = (0..self.executions.len())
                .filter(|&i| {
                    let e = &self.executions[i];
                    e.is_waiting()
                        && e.stage_starts.len() == stage
                        && e.waiting_since.is_some_and(|s| s <= t)
                })
                .collect();
            let Some(&newest) = waiting.last() else {
                continue;
            };
            let free = !self
                .executions
                .iter()
                .any(|e| !e.status.is_final() && e.running_stage() == Some(stage));
            let entering: Vec<usize> = match self.mode {
                ExecutionMode::Superseded => {
                    for &i in &waiting[..waiting.len() - 1] {
                        self.executions[i].finish(ExecStatus::Superseded, t);
                    }
                    if open && free { vec![newest] } else { vec![] }
                }
                ExecutionMode::Queued if open && free => vec![waiting[0]],
                ExecutionMode::Queued => vec![],
                ExecutionMode::Parallel if open => waiting,
                ExecutionMode::Parallel => vec![],
            };
            for i in entering {
                let e = &mut self.executions[i];
                e.stage_starts.push(t);
                e.waiting_since = None;
                e.last_update = t;
            }
        }
    }

    /// Applies a stop request at `now`.
    pub fn stop(
        &mut self,
        now: Millis,
        id: Uuid,
        abandon: bool,
        reason: Option<String>,
        behaviour: Behaviour,
    ) -> StopResult {
        self.resolve(now, behaviour);
        let Some(ex) = self.executions.iter_mut().find(|e| e.id == id) else {
            return StopResult::NotStoppable(format!(
                "Unable to stop pipeline execution {id}: it does not exist in pipeline {}",
                self.name
            ));
        };
        let result = match (ex.status, ex.stop.as_deref_mut()) {
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
                if ex.waiting_since.is_some() {
                    // Waiting with no action running: nothing to complete or abandon.
                    ex.finish(ExecStatus::Stopped, now);
                } else {
                    ex.status = ExecStatus::Stopping;
                }
                StopResult::Accepted
            }
        };
        // A stop can end an execution at once (or free a stage): resolve `now` again.
        self.resolve(now, behaviour);
        result
    }

    /// Starts a new execution at `now`.
    pub fn start(&mut self, now: Millis, id: Uuid, behaviour: Behaviour) -> &Execution {
        self.resolve(now, behaviour);
        self.executions.push(Execution::new(id, now, self.mode));
        self.resolve(now, behaviour);
        self.executions.last().expect("just pushed")
    }

    /// Disables (with a reason) or enables a stage's inbound or outbound transition at `now`.
    pub fn set_transition(
        &mut self,
        now: Millis,
        stage: usize,
        inbound: bool,
        disabled_reason: Option<String>,
        by: String,
        behaviour: Behaviour,
    ) {
        self.resolve(now, behaviour);
        let t = if inbound {
            &mut self.inbound[stage]
        } else {
            &mut self.outbound[stage]
        };
        *t = Transition {
            disabled_reason,
            last_changed_at: Some(now),
            last_changed_by: Some(by),
        };
        self.resolve(now, behaviour);
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

/// When and how a running execution's current stage ends, given its stop and failure.
fn stage_end(ex: &Execution, t: &Template, behaviour: Behaviour) -> (Millis, StageEnd) {
    let stage = ex.stage_starts.len() - 1;
    let t0 = ex.stage_starts[stage];
    let base = t.stage_offset(stage);
    let end_of = |flat: usize| t0 + t.action_end(flat) - base;
    if let Some(stop) = &ex.stop {
        // A stopped execution ends Stopped whatever its running action does: "After all
        // in-progress actions are completed or abandoned, the pipeline execution is in a Stopped
        // state" (StopPipelineExecution). Stop-and-wait: the action running at the stop ends and
        // nothing after it starts; abandon: it settles.
        let running = ex
            .position_at(t, stop.at)
            .map_or(t.first_action_of(stage), |(_, flat)| flat);
        let mut at = end_of(running);
        if let Some(abandon_at) = stop.abandon_at {
            at = at.min(abandon_at + behaviour.abandon_settle_ms);
        }
        return (at, StageEnd::Final(ExecStatus::Stopped));
    }
    if let Some(k) = ex.fail_at.map(usize::from)
        && t.stage_of(k) == stage
    {
        return (end_of(k), StageEnd::Final(ExecStatus::Failed));
    }
    (end_of(t.last_action_of(stage)), StageEnd::Done)
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
        Pipeline::new("p".into(), mode, template(), 0, 0, vec![], vec![], 0)
    }

    const B: Behaviour = Behaviour {
        abandon_settle_ms: 0,
        list_order: ListOrder::NewestFirst,
    };

    fn status(p: &Pipeline, id: Uuid) -> ExecStatus {
        p.execution(id).unwrap().status
    }

    #[test]
    fn execution_succeeds_after_total_duration() {
        let mut p = pipeline(ExecutionMode::Parallel);
        let id = Uuid::from_u128(1);
        p.start(0, id, B);
        p.resolve(429_999, B);
        assert_eq!(status(&p, id), ExecStatus::InProgress);
        p.resolve(430_000, B);
        let ex = p.execution(id).unwrap();
        assert_eq!(ex.status, ExecStatus::Succeeded);
        assert_eq!(ex.ended, Some(430_000));
        assert_eq!(ex.stage_starts, vec![0, 10_000, 130_000]);
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
        assert_eq!(status(&p, id), ExecStatus::Stopping);
        p.resolve(69_999, B);
        assert_eq!(status(&p, id), ExecStatus::Stopping);
        p.resolve(70_000, B);
        assert_eq!(status(&p, id), ExecStatus::Stopped);
        assert_eq!(p.execution(id).unwrap().ended, Some(70_000));
    }

    #[test]
    fn queued_execution_waits_for_the_stage_and_enters_in_order() {
        let mut p = pipeline(ExecutionMode::Queued);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        p.start(0, a, B);
        p.start(5_000, b, B);
        assert!(p.execution(b).unwrap().stage_starts.is_empty());
        // a leaves Source at 10 s: b enters it then.
        p.resolve(10_000, B);
        assert_eq!(p.execution(b).unwrap().stage_starts, vec![10_000]);
    }

    #[test]
    fn superseded_only_between_stages_by_a_newer_waiting_one() {
        let mut p = pipeline(ExecutionMode::Superseded);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        p.start(0, a, B); // a in Build 10..130 s
        p.start(30_000, b, B); // b: Source 30..40 s, then waits for Build
        p.resolve(45_000, B);
        assert!(p.execution(b).unwrap().is_waiting());
        assert_eq!(status(&p, b), ExecStatus::InProgress);
        p.start(50_000, c, B); // c: Source 50..60 s, then b is superseded
        p.resolve(59_999, B);
        assert_eq!(status(&p, b), ExecStatus::InProgress);
        p.resolve(60_000, B);
        assert_eq!(status(&p, b), ExecStatus::Superseded);
        // a is never superseded while it runs; c enters Build when a leaves it.
        p.resolve(130_000, B);
        assert_eq!(status(&p, a), ExecStatus::InProgress);
        assert_eq!(p.execution(a).unwrap().stage_starts.len(), 3);
        assert_eq!(p.execution(c).unwrap().stage_starts, vec![50_000, 130_000]);
    }
}
