//! `stopd-core`: the CodePipeline side of stopd.
//!
//! It finds what is running ([`Core::discover`]), stops what it is told to ([`Core::stop`]) and
//! reports exactly what happened ([`StopReport`], with the [`Outcome`] names of the audit log).
//! It knows nothing of policies: which pipelines are in scope arrives as a function, which
//! executions to stop as [`StopRequest`]s.
//!
//! One layer owns retries: the SDK client is built with one attempt per call ([`client`]), and
//! [`retry::retry`] retries what the error itself says is retryable ([`error::ErrorKind`]) with
//! exponential backoff and full jitter under a deadline, pacing each operation with an adaptive
//! [`ratelimit::RateLimiter`].
#![deny(missing_docs)]

pub mod client;
mod engine;
pub mod error;
pub mod queue;
pub mod ratelimit;
pub mod retry;
#[cfg(test)]
mod simulation;
mod types;

pub use client::{
    ClientConfig, IDLE_TIMEOUT, RoleClient, RoleClients, RoleSpec, build_client, build_sqs_client,
    build_ssm_client, http_client,
};
pub use engine::{
    CalendarAnswer, Core, CoreConfig, ExecutionRead, ExecutionState, MAX_GATE_REASON_CHARS,
    MAX_PAGES, MAX_REASON_CHARS, Outcome, StageGate, StopReport, StopRequest, cut_chars,
    gate_reason, valid_execution_id, valid_pipeline_name,
};
pub use error::{ApiError, ErrorKind, MAX_MESSAGE_CHARS, bound_message, iam_action};
pub use ratelimit::{LimiterConfig, RateLimiter, Scope as PaceScope};
pub use retry::RetryPolicy;
pub use types::{
    ActiveExecution, ActiveStatus, CallCounts, Discovered, OPERATIONS, PipelineFailure,
    PipelineRead,
};
