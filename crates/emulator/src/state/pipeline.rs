//! One pipeline and its lifecycle: its executions and transitions, brought up to "now" event by
//! event ([`Pipeline::resolve`]), and the requests that change them (start, stop, a transition
//! disabled or enabled), with the knobs ([`Behaviour`]) that shape both.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::execution::{ExecStatus, Execution, ExecutionMode, StopInfo};
use super::template::Template;
use crate::clock::Millis;

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
    use crate::state::{ActionDef, StageDef};

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
