//! A pipeline's stages as a template: the actions in run order and how long each runs, with the
//! offsets precomputed so that finding where an execution is at an instant is a binary search.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

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
