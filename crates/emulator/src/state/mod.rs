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
//!
//! The records build up one way: `template` (stages and actions), `execution` (one run
//! through them), `pipeline` (the executions and transitions of one pipeline, and the
//! lifecycle that moves them). Their items are re-exported here.

mod execution;
mod pipeline;
mod template;

pub use execution::{ExecStatus, Execution, ExecutionMode, ExecutionType, StopInfo, TriggerType};
pub use pipeline::{
    Behaviour, DEFAULT_ABANDON_SETTLE_MS, ListOrder, Pipeline, StopResult, Transition,
};
pub use template::{ActionDef, StageDef, Template};
