//! Deciding and making stops: the rules' verdicts turned into [`Planned`] stops, and the one
//! path every stop takes (policy, escalation or `stopd stop`): record the intent durably, call,
//! record the outcome ([`execute`]). Also the set of a sweep's stops in flight.

use std::time::Duration;

use chrono::{DateTime, Utc};
use stopd_audit::{Intent, OutcomeRow, Store};
use stopd_core::{
    ActiveExecution, CallCounts, Core, MAX_REASON_CHARS, Outcome, StopRequest, cut_chars,
};
use stopd_rules::{Decider, ExecutionFacts, Mode, Verdict};
use tokio::task::JoinSet;

use crate::clock::Clock;

/// A stop to make, owned (it crosses into a task).
#[derive(Debug, Clone)]
pub struct Planned {
    /// Pipeline.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// Winning rule, or `manual`.
    pub rule: String,
    /// `freeze`, `timeout` or `manual`.
    pub rule_kind: stopd_audit::RuleKind,
    /// Mode.
    pub mode: Mode,
    /// Rendered reason.
    pub reason: String,
    /// Why, in a sentence.
    pub explanation: String,
    /// A `finish` stop still Stopping this long after it was made is escalated to abandon.
    pub escalate_after: Option<chrono::Duration>,
    /// The stop this one escalates.
    pub escalation_of: Option<i64>,
}

/// How one stop ended, as recorded.
#[derive(Debug, Clone)]
pub struct Done {
    /// Audit row id (None if not even the intent could be recorded).
    pub stop_id: Option<i64>,
    /// The plan.
    pub planned: Planned,
    /// The outcome (`dry_run` included).
    pub outcome: stopd_audit::Outcome,
    /// Whether the outcome is final.
    pub is_final: bool,
    /// Requests sent.
    pub attempts: u32,
    /// Error text.
    pub error: Option<String>,
    /// For a permission or credential error: which operation and IAM action, in a sentence.
    pub denied: Option<String>,
    /// Requests made, by operation.
    pub calls: CallCounts,
    /// The audit log could not record the intent (then no call was made) or the outcome (then
    /// it is written again at the next sweep, or the next start resolves the pending intent).
    pub audit_error: Option<String>,
    /// The account (name) it was made in.
    pub account: String,
    /// The region it was made in.
    pub region: String,
}

/// Makes one stop through the audit log: intent (durable) → call → outcome. Never calls the
/// API when the intent could not be written.
pub async fn execute(
    core: &Core,
    store: &Store,
    clock: &dyn Clock,
    sweep_id: Option<i64>,
    p: Planned,
    dry_run: bool,
) -> Done {
    let at = clock.now();
    // The audit keeps the reason as it is sent, not as it was rendered.
    let mut p = p;
    p.reason = cut_chars(&p.reason, MAX_REASON_CHARS).to_string();
    let intent = Intent {
        at,
        sweep_id,
        pipeline: &p.pipeline,
        execution_id: &p.execution_id,
        rule: &p.rule,
        rule_kind: p.rule_kind,
        mode: p.mode.into(),
        reason: &p.reason,
        explanation: &p.explanation,
        dry_run,
        // Counted from the stop as recorded, never from the (earlier) decision.
        escalate_at: if dry_run {
            None
        } else {
            p.escalate_after.map(|d| at + d)
        },
        escalation_of: p.escalation_of,
        account: core.account(),
        region: core.region(),
    };
    let stop_id = match store.record_intent(&intent).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(pipeline = %p.pipeline, execution = %p.execution_id, error = %format!("{e:#}"),
                "not stopping: the stop could not be recorded first");
            core.release_stop(&p.execution_id);
            return Done {
                stop_id: None,
                planned: p,
                outcome: stopd_audit::Outcome::Failed,
                is_final: false,
                attempts: 0,
                error: Some(format!("{e:#}")),
                denied: None,
                calls: CallCounts::default(),
                audit_error: Some(format!("{e:#}")),
                account: core.account().to_string(),
                region: core.region().to_string(),
            };
        }
    };
    let mut denied = None;
    let mut calls = CallCounts::default();
    let (row, is_final) = if dry_run {
        (
            OutcomeRow {
                at: clock.now(),
                outcome: stopd_audit::Outcome::DryRun,
                attempts: 0,
                throttled: 0,
                elapsed: Duration::ZERO,
                error: None,
                reconciled: false,
            },
            true,
        )
    } else if !store.may_call() {
        // Recorded, but this node's lease ran out meanwhile (a pause, a slow database): no
        // call. The intent stays pending; the next leader resolves it from the execution.
        let why = "not called: this node no longer leads (its lease ran out after the intent was recorded); the leader resolves it";
        tracing::warn!(pipeline = %p.pipeline, execution = %p.execution_id, "{why}");
        return Done {
            stop_id: Some(stop_id),
            planned: p,
            outcome: stopd_audit::Outcome::Failed,
            is_final: false,
            attempts: 0,
            error: Some(why.into()),
            denied: None,
            calls: CallCounts::default(),
            audit_error: None,
            account: core.account().to_string(),
            region: core.region().to_string(),
        };
    } else {
        let report = core
            .stop(&StopRequest {
                pipeline: p.pipeline.clone(),
                execution_id: p.execution_id.clone(),
                abandon: p.mode == Mode::Abandon,
                reason: p.reason.clone(),
            })
            .await;
        let mut error = report.error.as_ref().map(ToString::to_string);
        if let Some(e) = report.error.as_ref().filter(|e| e.kind.is_permission()) {
            denied = Some(e.explain());
        }
        if let Some(note) = &report.note {
            error = Some(note.clone());
        }
        calls = report.calls.clone();
        if matches!(
            report.outcome,
            Outcome::Stopped | Outcome::AlreadyStopping | Outcome::NotStoppable
        ) {
            // Stopping or ended: no longer an execution in progress to stop at an edge.
            core.note_gone(&p.pipeline, &p.execution_id);
        } else {
            // Not stopped: the next sweep, or event, may try again.
            core.release_stop(&p.execution_id);
        }
        if report.cancelled {
            error = Some(match error {
                Some(e) => format!("cut short by shutdown; last error: {e}"),
                None => "cut short by shutdown before an answer".into(),
            });
        }
        (
            OutcomeRow {
                at: clock.now(),
                outcome: recorded(report.outcome),
                attempts: report.attempts,
                throttled: report.throttled,
                elapsed: report.elapsed,
                error,
                reconciled: false,
            },
            report.outcome.is_final(),
        )
    };
    match row.outcome.as_str() {
        "stopped" | "already_stopping" | "not_stoppable" | "dry_run" => {
            tracing::info!(pipeline = %p.pipeline, execution = %p.execution_id, rule = %p.rule,
                mode = p.mode.as_str(), outcome = %row.outcome, attempts = row.attempts, "stop");
        }
        _ if denied.is_some() => {
            tracing::error!(pipeline = %p.pipeline, execution = %p.execution_id, rule = %p.rule,
                mode = p.mode.as_str(), outcome = %row.outcome, iam_action = "codepipeline:StopPipelineExecution",
                "stop refused: {}", denied.as_deref().unwrap_or(""));
        }
        _ => {
            tracing::warn!(pipeline = %p.pipeline, execution = %p.execution_id, rule = %p.rule,
                mode = p.mode.as_str(), outcome = %row.outcome, attempts = row.attempts,
                error = row.error.as_deref().unwrap_or(""), "stop did not succeed");
        }
    }
    let mut audit_error = None;
    if let Err(e) = store.record_outcome(stop_id, &row).await {
        // The intent row stays pending; the next start resolves it from the execution's status.
        tracing::error!(stop_id, error = %format!("{e:#}"), "could not record a stop's outcome; the daemon writes it again at its next sweep (after `run --once`, the next start resolves it)");
        audit_error = Some(format!("{e:#}"));
    }
    Done {
        stop_id: Some(stop_id),
        planned: p,
        outcome: row.outcome,
        is_final,
        attempts: row.attempts,
        error: row.error,
        denied,
        calls,
        audit_error,
        account: core.account().to_string(),
        region: core.region().to_string(),
    }
}

/// Borrowed facts of the InProgress executions, for the rules.
pub fn facts(executions: &[ActiveExecution]) -> Vec<ExecutionFacts<'_>> {
    executions
        .iter()
        .map(|e| ExecutionFacts {
            pipeline: &e.pipeline,
            execution_id: &e.execution_id,
            start: e.start_time,
            rollback: e.rollback,
            tags: &e.tags,
        })
        .collect()
}

/// Turns the rules' verdicts at `now` into stops.
pub fn plan(
    decider: &Decider<'_>,
    now: DateTime<Utc>,
    executions: &[ActiveExecution],
    extra: &[stopd_rules::Exemption],
) -> (Vec<Planned>, Vec<(usize, Verdict)>) {
    let facts = facts(executions);
    let verdicts = decider.decide(now, &facts, extra);
    let mut planned = Vec::new();
    let mut others = Vec::new();
    for (i, v) in verdicts.into_iter().enumerate() {
        match v {
            Verdict::Stop(d) => {
                let e = &executions[i];
                planned.push(Planned {
                    pipeline: e.pipeline.clone(),
                    execution_id: e.execution_id.clone(),
                    explanation: d.explanation(),
                    escalate_after: d.escalate_after,
                    rule: d.rule,
                    rule_kind: d.kind.into(),
                    mode: d.mode,
                    reason: d.reason,
                    escalation_of: None,
                });
            }
            Verdict::Allow => {}
            other => others.push((i, other)),
        }
    }
    (planned, others)
}

/// The audit log's name for an engine outcome (every one is an audit outcome; the match breaks
/// the build if either side grows).
pub(super) fn recorded(o: Outcome) -> stopd_audit::Outcome {
    match o {
        Outcome::Stopped => stopd_audit::Outcome::Stopped,
        Outcome::AlreadyStopping => stopd_audit::Outcome::AlreadyStopping,
        Outcome::NotStoppable => stopd_audit::Outcome::NotStoppable,
        Outcome::PipelineNotFound => stopd_audit::Outcome::PipelineNotFound,
        Outcome::Rejected => stopd_audit::Outcome::Rejected,
        Outcome::Failed => stopd_audit::Outcome::Failed,
    }
}

/// The stops of one sweep: running, and done. A finished task is taken out of the set as soon
/// as the next stop is launched, so the set holds about `stop_concurrency` tasks, not every stop
/// of the sweep (a finished task keeps its ~7 KiB allocation until it is joined).
#[derive(Default)]
pub(super) struct InFlight {
    /// Stops running.
    pub(super) tasks: JoinSet<Done>,
    /// Stops done, not yet handed on.
    done: Vec<Done>,
    /// Tasks that panicked.
    panicked: usize,
}

impl InFlight {
    fn collect(&mut self, joined: Result<Done, tokio::task::JoinError>) {
        match joined {
            Ok(d) => self.done.push(d),
            Err(e) => {
                self.panicked += 1;
                tracing::error!(error = %e, "a stop task failed (a bug: please report it); its stop stays pending if its intent was recorded");
            }
        }
    }

    /// Takes out the tasks that have finished.
    pub(super) fn reap(&mut self) {
        while let Some(joined) = self.tasks.try_join_next() {
            self.collect(joined);
        }
    }

    /// Waits for every stop launched so far (their results are kept for [`InFlight::drain`]).
    pub(super) async fn settle(&mut self) {
        while let Some(joined) = self.tasks.join_next().await {
            self.collect(joined);
        }
    }

    /// Waits for every launched stop; returns them all, and how many tasks panicked.
    pub(super) async fn drain(&mut self) -> (Vec<Done>, usize) {
        while let Some(joined) = self.tasks.join_next().await {
            self.collect(joined);
        }
        (
            std::mem::take(&mut self.done),
            std::mem::take(&mut self.panicked),
        )
    }
}
