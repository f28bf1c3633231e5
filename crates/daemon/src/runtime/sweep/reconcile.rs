//! What is recorded against what is running: stops a crash left pending, resolved at start-up
//! from each execution's status ([`reconcile`]), and stop-and-wait stops still Stopping past
//! their deadline, escalated to abandon ([`escalations`]).

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use stopd_audit::{OutcomeRow, Store};
use stopd_core::{ActiveExecution, CallCounts, Core, ErrorKind, Outcome};
use stopd_rules::Mode;
use tokio::task::JoinSet;

use super::execute::{Planned, recorded};
use crate::clock::SharedClock;

/// The escalations due at `now` in `core`'s account and region: each stop-and-wait past its
/// `escalate_after` whose execution is still among `stopping`, to be stopped again with abandon.
pub async fn escalations(
    store: &Store,
    core: &Core,
    now: DateTime<Utc>,
    stopping: &[ActiveExecution],
) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for due in store.escalations_due(now).await? {
        if !crate::runtime::targets::owns(core, due.account.as_deref(), due.region.as_deref()) {
            continue;
        }
        let still_stopping = stopping
            .iter()
            .any(|e| e.execution_id == due.execution_id && e.pipeline == due.pipeline);
        if !still_stopping {
            continue;
        }
        out.push(Planned {
            explanation: format!(
                "stop #{} (stop and wait) by rule '{}' is still Stopping past its escalate_after",
                due.stop_id, due.rule
            ),
            pipeline: due.pipeline,
            execution_id: due.execution_id,
            rule: due.rule,
            rule_kind: due.rule_kind,
            mode: Mode::Abandon,
            reason: due.reason,
            escalate_after: None,
            escalation_of: Some(due.stop_id),
        });
    }
    Ok(out)
}

/// Pending stops resolved at once at start-up.
const RECONCILE_CONCURRENCY: usize = 16;

/// Resolves stops a crash left without an outcome, from each execution's status now, several
/// at a time (one by one, 60 pending stops at 300 ms a call held the first sweep back 18 s).
/// Returns how many were resolved and how many are still pending (status unreadable).
pub async fn reconcile(
    cores: &[Core],
    store: &Store,
    clock: &SharedClock,
) -> Result<(usize, usize)> {
    let pending = store.pending().await?;
    let (mut resolved, mut left) = (0, 0);
    let mut tasks = JoinSet::new();
    let mut pending = pending.into_iter();
    loop {
        while tasks.len() < RECONCILE_CONCURRENCY {
            let Some(p) = pending.next() else { break };
            let Some(core) = cores.iter().find(|c| {
                crate::runtime::targets::owns(c, p.account.as_deref(), p.region.as_deref())
            }) else {
                tracing::warn!(stop_id = p.id, pipeline = %p.pipeline, account = p.account.as_deref().unwrap_or(stopd_audit::Place::DEFAULT_ACCOUNT),
                    region = p.region.as_deref().unwrap_or(""), "a pending stop's account and region are no longer configured: it stays pending");
                left += 1;
                continue;
            };
            let (core, store, clock) = (core.clone(), store.clone(), SharedClock::clone(clock));
            tasks.spawn(async move { resolve_one(&core, &store, &clock, p).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok(Ok(true)) => resolved += 1,
            Ok(Ok(false)) => left += 1,
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "could not record a resolved stop");
                left += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, "a reconciliation task failed");
                left += 1;
            }
        }
    }
    Ok((resolved, left))
}

/// Resolves one pending stop; false when its execution cannot be read now.
async fn resolve_one(
    core: &Core,
    store: &Store,
    clock: &SharedClock,
    p: stopd_audit::Pending,
) -> Result<bool> {
    let mut calls = CallCounts::default();
    let record = |outcome: stopd_audit::Outcome, note: String| OutcomeRow {
        at: clock.now(),
        outcome,
        attempts: 0,
        throttled: 0,
        elapsed: Duration::ZERO,
        error: Some(note),
        reconciled: true,
    };
    if p.dry_run {
        store
            .record_outcome(
                p.id,
                &record(
                    stopd_audit::Outcome::DryRun,
                    "resolved at start-up: a dry-run decision".into(),
                ),
            )
            .await?;
        return Ok(true);
    }
    // The listing's summary carries the stop's reason: ours, or someone else's.
    let (outcome, note) = match core
        .find_execution(&p.pipeline, &p.execution_id, &mut calls)
        .await
    {
        Ok(Some(state)) if state.stopped_with(&p.reason) => (
            Outcome::Stopped,
            format!(
                "resolved at start-up: the execution is {} with this stop's reason",
                state.status.as_str()
            ),
        ),
        Ok(Some(state)) => by_status(
            state.status.as_str(),
            Outcome::AlreadyStopping,
            &format!(
                " by another stop (reason {:?})",
                state.stop_reason.as_deref().unwrap_or("")
            ),
        ),
        // Too old for the first pages of the listing: its status alone.
        Ok(None) => match core
            .get_execution_status(&p.pipeline, &p.execution_id, &mut calls)
            .await
        {
            Ok(status) => by_status(status.as_str(), Outcome::Stopped, ""),
            Err(e) => match unresolved(&p, e) {
                Some(r) => r,
                None => return Ok(false),
            },
        },
        Err(e) => match unresolved(&p, e) {
            Some(r) => r,
            None => return Ok(false),
        },
    };
    tracing::info!(stop_id = p.id, pipeline = %p.pipeline, execution = %p.execution_id,
        outcome = outcome.as_str(), "resolved a stop left pending by an earlier run");
    store
        .record_outcome(p.id, &record(recorded(outcome), note))
        .await?;
    Ok(true)
}

/// The outcome of a pending stop from its execution's status: `stopping` (with `how` added to
/// the note) when it is Stopping or Stopped, `failed` when still InProgress, `not_stoppable`
/// when it ended otherwise.
fn by_status(status: &str, stopping: Outcome, how: &str) -> (Outcome, String) {
    match status {
        "Stopping" | "Stopped" => (
            stopping,
            format!("resolved at start-up: the execution is {status}{how}"),
        ),
        "InProgress" => (
            Outcome::Failed,
            "resolved at start-up: the stop was interrupted and the execution is still InProgress; the next sweep decides again".to_string(),
        ),
        other => (
            Outcome::NotStoppable,
            format!("resolved at start-up: the execution is {other}"),
        ),
    }
}

/// The outcome of a pending stop whose execution could not be read: final when the pipeline
/// or execution is gone; otherwise `None` (it stays pending for the next start).
fn unresolved(p: &stopd_audit::Pending, e: stopd_core::ApiError) -> Option<(Outcome, String)> {
    match e.kind {
        ErrorKind::PipelineNotFound => Some((
            Outcome::PipelineNotFound,
            format!("resolved at start-up: {e}"),
        )),
        ErrorKind::ExecutionNotFound => {
            Some((Outcome::NotStoppable, format!("resolved at start-up: {e}")))
        }
        _ => {
            tracing::warn!(stop_id = p.id, error = %e.explain(), "pending stop could not be resolved; trying again at the next start");
            None
        }
    }
}
