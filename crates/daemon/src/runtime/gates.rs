//! Gates: while a gating freeze (`gate = true`, or `stopd freeze add --gate`) is open, the
//! inbound transitions of the gated stages are disabled, so new work waits instead of starting
//! and being stopped; when no gating freeze covers a transition any more, stopd enables it
//! again, but only a transition stopd itself disabled.
//!
//! Level-triggered, like stops: every sweep compares what should be (the policy's
//! [`stopd_rules::Policy::gates`] now) with what is (GetPipelineState) and with what the audit
//! log says stopd did, and acts on the difference. Every action is recorded before it is made
//! (`gates`) and its outcome after (`gate_outcomes`), so a restart (after a freeze ended while
//! stopd was down, say) repairs everything from the log at its first sweep.
//!
//! A person's hold stays theirs: a transition already disabled when the window opens is
//! recorded `already_disabled` and never enabled by stopd; one whose disabled reason someone
//! changed while stopd held it is recorded `left_alone` and is theirs from then on.
//!
//! A transition stopd holds for a rule that cannot be judged now (its `ics` file or Change
//! Calendar cannot be read: [`Policy::cannot_judge`]) stays closed, unrecorded, until the
//! calendar can be read again: releasing it would be a guess as much as closing one would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use stopd_core::{CallCounts, Core, ErrorKind, StageGate, gate_reason};
use stopd_rules::{Exemption, Policy};
use tokio::task::JoinSet;

use stopd_audit::{GateAction, GateOutcome, LastGate, NewGate, Store};

use crate::clock::SharedClock;

/// What the gate phase of a sweep did.
#[derive(Debug, Clone, Default)]
pub struct GateSummary {
    /// Transitions disabled (or, dry run, that would be).
    pub closed: usize,
    /// Transitions enabled again.
    pub opened: usize,
    /// Actions that failed, and pipelines whose state could not be read.
    pub failures: Vec<String>,
    /// Executions waiting at a transition held closed now: the freeze that holds them does not
    /// stop them (they proceed when the gate opens).
    pub held: HashSet<(String, String)>,
    /// Requests made.
    pub calls: CallCounts,
    /// Transitions held closed by stopd after this sweep.
    pub closed_now: usize,
}

impl GateSummary {
    /// Adds what one pipeline's (or one stage's) part of the gate phase did.
    fn absorb(&mut self, one: GateSummary) {
        self.closed += one.closed;
        self.opened += one.opened;
        self.closed_now += one.closed_now;
        self.failures.extend(one.failures);
        self.held.extend(one.held);
        self.calls.merge(&one.calls);
    }
}

/// One pipeline whose gates are reconciled: the executions waiting at a transition held closed
/// now (the freeze that holds them does not stop them).
#[derive(Debug, Clone)]
pub struct PipelineGated {
    /// Pipeline.
    pub pipeline: String,
    /// Execution ids held at a closed gate.
    pub held: HashSet<String>,
}

/// One action to record and, unless it is only an observation, to make.
struct Action<'a> {
    /// The account and region, from the engine that acts.
    core: &'a Core,
    pipeline: &'a str,
    stage: &'a str,
    rule: &'a str,
    disable: bool,
    reason: &'a str,
}

impl Action<'_> {
    /// The row the audit log records for it.
    fn row(&self) -> NewGate<'_> {
        NewGate {
            account: self.core.account(),
            region: self.core.region(),
            pipeline: self.pipeline,
            stage: self.stage,
            rule: self.rule,
            action: GateAction::of(self.disable),
            reason: self.reason,
        }
    }
}

/// Reconciles gates, `concurrency` pipelines at a time: each pipeline in scope as soon as
/// discovery has read it (`pipelines`, a stream that ends with discovery), and, once the
/// stream has ended, every other pipeline stopd holds a transition of (out of scope now, or
/// no longer listed: a rule may have been removed since). A pipeline is acted on if a gating
/// freeze covers it when it arrives, or if stopd holds (or may hold) one of its transitions.
///
/// Each pipeline reconciled is sent to `done`. Once `stop` is cancelled (a shutdown), nothing
/// new is started; what was started finishes and is recorded.
#[allow(clippy::too_many_arguments)]
pub async fn reconcile(
    core: &Core,
    store: &Store,
    clock: &SharedClock,
    policy: &Arc<Policy>,
    extra: &Arc<Vec<Exemption>>,
    mut pipelines: tokio::sync::mpsc::UnboundedReceiver<String>,
    sweep_id: Option<i64>,
    dry_run: bool,
    concurrency: usize,
    done: Option<tokio::sync::mpsc::UnboundedSender<PipelineGated>>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<GateSummary> {
    let last = Arc::new(store.last_gates(core.account(), core.region()).await?);
    // Pipelines with a transition stopd holds, or whose last action's outcome is unknown.
    let held: std::collections::BTreeSet<String> = last
        .iter()
        .filter(|(_, g)| g.ours() || g.pending())
        .map(|((p, _), _)| p.clone())
        .collect();
    let mut seen = HashSet::new();
    let mut queue: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut summary = GateSummary::default();
    let mut tasks = JoinSet::new();
    let mut reading = true;
    let mut stopping = false;
    loop {
        while tasks.len() < concurrency.max(1) && !stopping {
            let Some(p) = queue.pop_front() else { break };
            let (core, store, clock, policy, extra, last) = (
                core.clone(),
                store.clone(),
                SharedClock::clone(clock),
                Arc::clone(policy),
                Arc::clone(extra),
                Arc::clone(&last),
            );
            // Each pipeline is gated by the time it is acted on (a sweep may outlast an edge).
            let now = clock.now();
            tasks.spawn(async move {
                let mut one = GateSummary::default();
                let r = pipeline_gates(
                    &core, &store, &clock, &policy, &extra, &last, &p, now, sweep_id, dry_run,
                    &mut one,
                )
                .await;
                (p, r, one)
            });
        }
        if tasks.is_empty() && (stopping || (!reading && queue.is_empty())) {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let (p, r, one) = joined.context("a gate task failed")?;
                if let Some(tx) = &done {
                    // The caller may now stop this pipeline's executions that no gate holds.
                    let held = one.held.iter().map(|(_, id)| id.clone()).collect();
                    let _ = tx.send(PipelineGated {
                        pipeline: p.clone(),
                        held,
                    });
                }
                summary.absorb(one);
                if let Err(e) = r {
                    summary.failures.push(format!("{p}: {e:#}"));
                }
            }
            got = pipelines.recv(), if reading && !stopping => match got {
                Some(p) => {
                    let wanted = held.contains(&p)
                        || (policy.has_gates()
                            && !policy.gates(clock.now(), &p, &core.tags_of(&p), extra).is_empty());
                    if wanted && seen.insert(p.clone()) {
                        queue.push_back(p);
                    }
                }
                None => {
                    // Discovery is over: what stopd holds elsewhere is reconciled too.
                    reading = false;
                    for p in &held {
                        if seen.insert(p.clone()) {
                            queue.push_back(p.clone());
                        }
                    }
                }
            },
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                queue.clear();
            }
        }
    }
    for f in &summary.failures {
        tracing::warn!("gate: {f}");
    }
    Ok(summary)
}

/// One pipeline: read its transitions, then close, open, or record what a person did.
#[allow(clippy::too_many_arguments)]
async fn pipeline_gates(
    core: &Core,
    store: &Store,
    clock: &SharedClock,
    policy: &Policy,
    extra: &[Exemption],
    last: &HashMap<(String, String), LastGate>,
    pipeline: &str,
    now: DateTime<Utc>,
    sweep_id: Option<i64>,
    dry_run: bool,
    out: &mut GateSummary,
) -> Result<()> {
    let stages = match core.pipeline_state(pipeline, &mut out.calls).await {
        Ok(s) => s,
        Err(e) if e.kind == ErrorKind::PipelineNotFound => {
            // Gone: what stopd held of it is released with it.
            for ((p, stage), g) in last {
                if p == pipeline && g.ours() {
                    let a = Action {
                        core,
                        pipeline,
                        stage,
                        rule: &g.rule,
                        disable: false,
                        reason: &g.reason,
                    };
                    let id = store.gate_intent(now, sweep_id, &a.row(), dry_run).await?;
                    store
                        .gate_outcome(
                            id,
                            clock.now(),
                            GateOutcome::PipelineNotFound,
                            Some(&e.to_string()),
                        )
                        .await?;
                }
            }
            return Ok(());
        }
        Err(e) => {
            out.failures.push(format!("{pipeline}: {}", e.explain()));
            return Ok(());
        }
    };
    let tags = core.tags_of(pipeline);
    let holds = policy.gates(now, pipeline, &tags, extra);
    let names: Vec<String> = stages.iter().map(|s| s.stage.clone()).collect();
    // Each gated stage, by the first gating freeze (file order) that holds it.
    let mut desired: BTreeMap<&str, (&str, String)> = BTreeMap::new();
    for h in &holds {
        for stage in h.gate.stages_of(&names) {
            desired
                .entry(stage)
                .or_insert_with(|| (h.rule.as_str(), gate_reason(&h.reason)));
        }
    }
    // Each stage's transition is its own action: they are made at once (one after the other,
    // a pipeline with three gated stages took three round trips and six commits in a row).
    let mut tasks = JoinSet::new();
    for st in stages {
        let key = (pipeline.to_string(), st.stage.clone());
        let prev = last.get(&key).cloned();
        let want = desired
            .get(st.stage.as_str())
            .map(|(rule, reason)| (rule.to_string(), reason.clone()));
        if want.is_none() && !prev.as_ref().is_some_and(|p| p.ours() || p.pending()) {
            continue;
        }
        // Held by a rule that cannot be judged now (its calendar cannot be read): left closed,
        // never released on a guess, until the calendar can be read again.
        if want.is_none()
            && let Some(p) = prev
                .as_ref()
                .filter(|p| p.ours() && policy.cannot_judge(&p.rule))
        {
            tracing::warn!(pipeline, stage = %st.stage, rule = %p.rule, "gate kept closed: its rule's calendar cannot be read");
            out.closed_now += 1;
            for id in &st.waiting {
                out.held.insert((pipeline.to_string(), id.clone()));
            }
            continue;
        }
        let (core, store, clock, pipeline) = (
            core.clone(),
            store.clone(),
            SharedClock::clone(clock),
            pipeline.to_string(),
        );
        tasks.spawn(async move {
            let mut out = GateSummary::default();
            let r = stage_gate(
                &core, &store, &clock, &st, prev, want, &pipeline, now, sweep_id, dry_run, &mut out,
            )
            .await;
            (r, out)
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (r, one) = joined.context("a gate task failed")?;
        out.absorb(one);
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// One stage's inbound transition: a pending action resolved from its state, then closed if a
/// gating freeze wants it (`want`: rule and reason), or opened if stopd holds it and none does.
#[allow(clippy::too_many_arguments)]
async fn stage_gate(
    core: &Core,
    store: &Store,
    clock: &SharedClock,
    st: &StageGate,
    mut prev: Option<LastGate>,
    want: Option<(String, String)>,
    pipeline: &str,
    now: DateTime<Utc>,
    sweep_id: Option<i64>,
    dry_run: bool,
    out: &mut GateSummary,
) -> Result<()> {
    if let Some(p) = prev.as_mut().filter(|p| p.pending()) {
        // The process died between recording an action and its outcome: the transition says
        // how it ended.
        let found = st.disabled_reason.as_deref().unwrap_or("");
        let done = if p.action == GateAction::Disable {
            !st.enabled && found == p.reason
        } else {
            st.enabled
        };
        let outcome = if done {
            GateOutcome::Done
        } else {
            GateOutcome::Failed
        };
        store
            .gate_outcome(
                p.id,
                clock.now(),
                outcome,
                Some("resolved at start-up from the transition's state"),
            )
            .await?;
        p.outcome = Some(outcome);
    }
    let held_by_us = prev.as_ref().is_some_and(LastGate::ours);
    match want {
        Some((rule, reason)) => {
            let closed = close(
                core,
                store,
                clock,
                st,
                prev.as_ref(),
                pipeline,
                &rule,
                &reason,
                now,
                sweep_id,
                dry_run,
                out,
            )
            .await?;
            if closed {
                out.closed_now += 1;
                for id in &st.waiting {
                    out.held.insert((pipeline.to_string(), id.clone()));
                }
            }
        }
        None if held_by_us => {
            let prev = prev.as_ref().expect("held");
            open(
                core, store, clock, st, prev, pipeline, now, sweep_id, dry_run, out,
            )
            .await?;
        }
        None => {}
    }
    Ok(())
}

/// A gated transition: closed by stopd if it is open; a person's hold recorded once. True when
/// stopd holds it closed afterwards.
#[allow(clippy::too_many_arguments)]
async fn close(
    core: &Core,
    store: &Store,
    clock: &SharedClock,
    st: &StageGate,
    prev: Option<&LastGate>,
    pipeline: &str,
    rule: &str,
    reason: &str,
    now: DateTime<Utc>,
    sweep_id: Option<i64>,
    dry_run: bool,
    out: &mut GateSummary,
) -> Result<bool> {
    let a = Action {
        core,
        pipeline,
        stage: &st.stage,
        rule,
        disable: true,
        reason,
    };
    let found = st.disabled_reason.as_deref().unwrap_or("");
    if !st.enabled {
        return Ok(match prev {
            // Ours, as we left it.
            Some(p) if p.ours() && p.reason == found => true,
            // Ours, but someone changed its reason: theirs from now on.
            Some(p) if p.ours() => {
                let id = store.gate_intent(now, sweep_id, &a.row(), dry_run).await?;
                let note = format!(
                    "its disabled reason was changed to {found:?} by {}: left to them",
                    st.last_changed_by.as_deref().unwrap_or("someone else")
                );
                store
                    .gate_outcome(id, clock.now(), GateOutcome::LeftAlone, Some(&note))
                    .await?;
                false
            }
            // A person's hold, already on record.
            Some(p)
                if p.action == GateAction::Disable
                    && matches!(
                        p.outcome,
                        Some(GateOutcome::AlreadyDisabled | GateOutcome::LeftAlone)
                    ) =>
            {
                false
            }
            _ => {
                let id = store.gate_intent(now, sweep_id, &a.row(), dry_run).await?;
                let note = format!(
                    "already disabled by {} ({found:?}): stopd never enables it",
                    st.last_changed_by.as_deref().unwrap_or("someone else")
                );
                store
                    .gate_outcome(id, clock.now(), GateOutcome::AlreadyDisabled, Some(&note))
                    .await?;
                false
            }
        });
    }
    if dry_run {
        if prev.is_some_and(|p| {
            p.action == GateAction::Disable && p.outcome == Some(GateOutcome::DryRun)
        }) {
            return Ok(false);
        }
        let id = store.gate_intent(now, sweep_id, &a.row(), true).await?;
        store
            .gate_outcome(id, clock.now(), GateOutcome::DryRun, None)
            .await?;
        out.closed += 1;
        return Ok(false);
    }
    let id = store.gate_intent(now, sweep_id, &a.row(), false).await?;
    if !store.may_call() {
        // This node's lease ran out after the intent: no call (the next leader reconciles).
        anyhow::bail!(
            "{pipeline} {}: not closed: this node no longer leads",
            st.stage
        );
    }
    match core
        .set_inbound_transition(pipeline, &st.stage, Some(reason), &mut out.calls)
        .await
    {
        Ok(()) => {
            store
                .gate_outcome(id, clock.now(), GateOutcome::Done, None)
                .await?;
            tracing::info!(pipeline, stage = %st.stage, rule, "gate closed");
            out.closed += 1;
            Ok(true)
        }
        Err(e) => {
            let outcome = if e.kind == ErrorKind::PipelineNotFound {
                GateOutcome::PipelineNotFound
            } else {
                GateOutcome::Failed
            };
            store
                .gate_outcome(id, clock.now(), outcome, Some(&e.to_string()))
                .await?;
            out.failures
                .push(format!("{pipeline} {}: {}", st.stage, e.explain()));
            Ok(false)
        }
    }
}

/// A transition stopd holds that no gating freeze covers any more: enabled again if it is as
/// stopd left it; left alone (and no longer held) if someone changed it.
#[allow(clippy::too_many_arguments)]
async fn open(
    core: &Core,
    store: &Store,
    clock: &SharedClock,
    st: &StageGate,
    prev: &LastGate,
    pipeline: &str,
    now: DateTime<Utc>,
    sweep_id: Option<i64>,
    dry_run: bool,
    out: &mut GateSummary,
) -> Result<()> {
    let found = st.disabled_reason.as_deref().unwrap_or("");
    let a = Action {
        core,
        pipeline,
        stage: &st.stage,
        rule: &prev.rule,
        disable: false,
        reason: &prev.reason,
    };
    if st.enabled || found != prev.reason {
        let id = store.gate_intent(now, sweep_id, &a.row(), dry_run).await?;
        let note = if st.enabled {
            "already enabled by someone else".to_string()
        } else {
            format!("its disabled reason was changed to {found:?}: left to whoever changed it")
        };
        store
            .gate_outcome(id, clock.now(), GateOutcome::LeftAlone, Some(&note))
            .await?;
        return Ok(());
    }
    let id = store.gate_intent(now, sweep_id, &a.row(), dry_run).await?;
    if dry_run {
        store
            .gate_outcome(id, clock.now(), GateOutcome::DryRun, None)
            .await?;
        return Ok(());
    }
    if !store.may_call() {
        anyhow::bail!(
            "{pipeline} {}: not opened: this node no longer leads",
            st.stage
        );
    }
    match core
        .set_inbound_transition(pipeline, &st.stage, None, &mut out.calls)
        .await
    {
        Ok(()) => {
            store
                .gate_outcome(id, clock.now(), GateOutcome::Done, None)
                .await?;
            tracing::info!(pipeline, stage = %st.stage, "gate opened");
            out.opened += 1;
        }
        Err(e) => {
            store
                .gate_outcome(id, clock.now(), GateOutcome::Failed, Some(&e.to_string()))
                .await?;
            out.failures
                .push(format!("{pipeline} {}: {}", st.stage, e.explain()));
        }
    }
    Ok(())
}
