//! [`Core`]: discovery of active executions and the stop engine, over one client, one rate
//! limiter and one retry policy.
//!
//! - `handle`: `Core` itself, its caches, and `call`, the one way a request goes out.
//! - `discovery`: the executions of the pipelines in scope, read incrementally.
//! - `calendar`: SSM Change Calendars' state.
//! - `tags`: a pipeline's tags (ARN and tags cached).
//! - `execution`: reads of one execution (status; status and stop reason).
//! - `known`: the executions in progress this engine knows of (the last listing, and events
//!   since), for stopping first at a window edge.
//! - `stop`: stopping one execution and classifying what happened.
//! - `gates`: stages' inbound transitions, read and set.
//! - `pages`: `nextToken` paging with its bounds.
//! - `precheck`: what the model's patterns accept, checked before sending.
//!
//! This module only declares and re-exports: the submodules import each other, never this
//! module, so no import goes in a circle (`handle` and `pages`, `precheck` at the bottom).

mod calendar;
mod discovery;
mod execution;
mod gates;
mod handle;
mod known;
mod pages;
mod precheck;
mod stop;
mod tags;

pub use calendar::CalendarAnswer;
pub use execution::{ExecutionRead, ExecutionState};
pub use gates::{MAX_GATE_REASON_CHARS, StageGate, gate_reason};
pub use handle::{Core, CoreConfig};
pub use pages::MAX_PAGES;
pub use precheck::{cut_chars, valid_execution_id, valid_pipeline_name};
pub use stop::{MAX_REASON_CHARS, Outcome, StopReport, StopRequest};
