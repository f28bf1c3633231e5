//! One sweep: discover, decide, stop (bounded concurrency), record. Also the one path every
//! stop takes (policy, escalation or `stopd stop`): record the intent durably, call, record the
//! outcome. And start-up reconciliation of stops a crash left pending.

use std::sync::Arc;
use std::time::{Duration, Instant};
pub use stopd_audit::PlaceResult;

use anyhow::Result;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

use stopd_core::{
    ActiveExecution, ActiveStatus, CallCounts, Core, ErrorKind, MAX_REASON_CHARS, Outcome,
    PipelineRead, StopRequest, cut_chars,
};
use stopd_rules::{Decider, ExecutionFacts, Mode, Policy, Verdict};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime::gates::PipelineGated;
use stopd_audit::{Intent, OutcomeRow, Store, SweepResult};

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
    /// Outcome name (`dry_run` included).
    pub outcome: String,
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
    sweep_id: Option<i64>,
    p: Planned,
    dry_run: bool,
) -> Done {
    let at = Utc::now();
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
            return Done {
                stop_id: None,
                planned: p,
                outcome: "failed".into(),
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
                at: Utc::now(),
                outcome: stopd_audit::Outcome::DryRun,
                attempts: 0,
                throttled: 0,
                elapsed: Duration::ZERO,
                error: None,
                reconciled: false,
            },
            true,
        )
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
        if report.cancelled {
            error = Some(match error {
                Some(e) => format!("cut short by shutdown; last error: {e}"),
                None => "cut short by shutdown before an answer".into(),
            });
        }
        (
            OutcomeRow {
                at: Utc::now(),
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
        outcome: row.outcome.to_string(),
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

/// What one sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepSummary {
    /// Sweep row id.
    pub sweep_id: i64,
    /// Counters, as recorded.
    pub result: SweepResult,
    /// Every stop made.
    pub done: Vec<Done>,
    /// Stops not made because a shutdown began.
    pub skipped_for_shutdown: usize,
    /// A shutdown cut the sweep short: during discovery, or before every stop had started.
    pub cut_short: bool,
    /// InProgress executions seen (the scheduler's input for timeout deadlines).
    pub in_progress: Vec<ActiveExecution>,
    /// Whether the listing itself failed (nothing was seen).
    pub blind: bool,
    /// The sweep itself failed (the audit log or the rules' inputs could not be read).
    pub failed: bool,
    /// Pipelines that could not be read.
    pub discovery_failures: usize,
    /// Accounts and regions whose sweep saw nothing (role not assumed, listing refused), by
    /// "account NAME in REGION: why"; the others were enforced all the same.
    pub blind_places: Vec<String>,
    /// How the sweep went in each account and region.
    pub places: Vec<PlaceResult>,
    /// Stop tasks that panicked (a bug: counted, never silently dropped).
    pub panicked: usize,
    /// The first permission or credential failure: operation and IAM action, in a sentence.
    pub denied: Option<String>,
    /// The first audit-log write that failed.
    pub audit_error: Option<String>,
    /// Requests made, by operation (discovery and stops).
    pub calls: CallCounts,
    /// The instant the policy was asked.
    pub decided_at: DateTime<Utc>,
    /// The next escalation deadline after this sweep, for the scheduler.
    pub next_escalation: Option<DateTime<Utc>>,
    /// Transitions stopd holds closed after this sweep.
    pub gates_closed: usize,
    /// Gate actions that failed, and pipelines whose transitions could not be read.
    pub gate_failures: usize,
    /// The policy the sweep decided by: the file's rules and the ad-hoc freezes then in force
    /// (the scheduler takes its window edges from it).
    pub policy: Option<Arc<Policy>>,
    /// How long the sweep took (`stopd_sweep_duration_seconds`).
    pub duration: Duration,
}

impl SweepSummary {
    /// Every decided stop reached a final outcome and the fleet was seen.
    pub fn all_final(&self) -> bool {
        !self.blind && self.skipped_for_shutdown == 0 && self.done.iter().all(|d| d.is_final)
    }

    /// A good sweep: every in-scope pipeline was read, everything was recorded, and every
    /// decided stop ended done (`rejected` and `failed` are not). `run --once` exits 1
    /// otherwise, and the daemon logs an ERROR and says so in systemd's STATUS, unless the
    /// sweep was only [interrupted](SweepSummary::interrupted).
    pub fn ok(&self) -> bool {
        !self.cut_short && self.sound()
    }

    /// A clean shutdown cut the sweep short and nothing else went wrong: neither good nor
    /// failed (`result="interrupted"`, logged at INFO).
    pub fn interrupted(&self) -> bool {
        self.cut_short && self.sound()
    }

    /// Nothing went wrong but, perhaps, a shutdown that cut the sweep short (which leaves it
    /// blind, or leaves stops unstarted).
    fn sound(&self) -> bool {
        // A shutdown leaves a sweep blind (during discovery) or with stops unstarted.
        (self.cut_short || (!self.blind && self.skipped_for_shutdown == 0))
            && self.done.iter().all(|d| d.is_final)
            && !self.failed
            && self.discovery_failures == 0
            && self.blind_places.is_empty()
            && self.gate_failures == 0
            && self.panicked == 0
            && self.audit_error.is_none()
            && self.denied.is_none()
            && !self.done.iter().any(|d| d.outcome == "rejected")
    }

    /// The first thing that made this sweep not [`SweepSummary::ok`], in words.
    pub fn problem(&self) -> Option<String> {
        if let Some(e) = &self.audit_error {
            return Some(format!("the audit log could not be written: {e}"));
        }
        if let Some(d) = &self.denied {
            return Some(d.clone());
        }
        if let Some(e) = &self.result.error {
            return Some(e.clone());
        }
        if self.panicked > 0 {
            return Some(format!(
                "{} stop task(s) panicked (a bug; please report it)",
                self.panicked
            ));
        }
        if let Some(d) = self
            .done
            .iter()
            .find(|d| !d.is_final || d.outcome == "rejected")
        {
            return Some(format!(
                "stop of {} {} ended {}: {}",
                d.planned.pipeline,
                d.planned.execution_id,
                d.outcome,
                d.error.as_deref().unwrap_or("")
            ));
        }
        (self.skipped_for_shutdown > 0).then(|| {
            format!(
                "{} stop(s) not started: shutdown began",
                self.skipped_for_shutdown
            )
        })
    }

    /// One line for logs and systemd's STATUS; a failed sweep says first what failed.
    pub fn status_line(&self) -> String {
        let stopped = self.done.iter().filter(|d| d.is_final).count();
        let mut line = format!(
            "last sweep: {} pipelines, {} in scope, {} executions active, {} stops decided ({} final), {} errors",
            self.result.pipelines_seen,
            self.result.pipelines_in_scope,
            self.result.executions_seen,
            self.result.stops_decided,
            stopped,
            self.result.errors
        );
        if self.gates_closed > 0 {
            line.push_str(&format!(", {} transitions held closed", self.gates_closed));
        }
        if self.interrupted() {
            return format!("interrupted: a shutdown began before the sweep ended; {line}");
        }
        match self.problem() {
            Some(p) if !self.ok() => format!("FAILING: {p}; {line}"),
            _ => line,
        }
    }
}

/// Everything a sweep needs.
#[derive(Debug, Clone)]
pub struct Sweeper {
    /// CodePipeline: one engine per account and region (see [`crate::runtime::targets`]).
    pub cores: Arc<Vec<Core>>,
    /// Audit log.
    pub store: Store,
    /// Stops in flight at once.
    pub concurrency: usize,
    /// Fires when a shutdown begins: no new stop starts.
    pub draining: CancellationToken,
}

/// The summary of a sweep (or one account's) that failed before it could see anything.
fn failed_summary(start_at: DateTime<Utc>, e: &anyhow::Error) -> SweepSummary {
    SweepSummary {
        result: SweepResult {
            errors: 1,
            error: Some(format!("{e:#}")),
            ..SweepResult::default()
        },
        blind: true,
        failed: true,
        decided_at: start_at,
        ..SweepSummary::default()
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

impl Sweeper {
    /// One sweep at the current time.
    ///
    /// Whatever fails along the way (the audit log, a listing), every stop already launched
    /// finishes and is recorded before this returns: each account and region's stops run in
    /// its own `InFlight`, owned by its task and drained on every path after its body, never
    /// dropped by a `?`.
    pub async fn sweep(
        &self,
        policy: Arc<Policy>,
        trigger: &str,
        dry_run: bool,
    ) -> Result<SweepSummary> {
        let started = Instant::now();
        let start_at = Utc::now();
        // Outcomes of stops made while the log could not be written (a full disk, since freed).
        match self.store.record_unrecorded().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                written = n,
                "outcomes the audit log could not take earlier are recorded"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "outcomes of earlier stops still cannot be recorded");
            }
        }
        let sweep_id = self
            .store
            .begin_sweep(start_at, trigger.parse()?, dry_run)
            .await?;
        let (mut summary, done, panicked) = match self.inputs(&policy, start_at).await {
            Ok((effective, extra)) => {
                self.sweep_places(&effective, &extra, sweep_id, start_at, dry_run)
                    .await
            }
            Err(e) => {
                tracing::error!(sweep = sweep_id, error = %format!("{e:#}"), "sweep failed");
                (failed_summary(start_at, &e), Vec::new(), 0)
            }
        };
        summary.sweep_id = sweep_id;
        summary.panicked = panicked;
        for d in &done {
            summary.calls.merge(&d.calls);
            if summary.audit_error.is_none()
                && let Some(e) = &d.audit_error
            {
                summary.audit_error = Some(e.clone());
            }
            if summary.denied.is_none() {
                summary.denied.clone_from(&d.denied);
            }
        }
        summary.done = done;
        summary.result.api_calls = summary.calls.total();
        summary.result.throttled = summary.calls.total_throttled();
        summary.result.errors += panicked
            + summary
                .done
                .iter()
                .filter(|d| d.audit_error.is_some() || !d.is_final)
                .count();
        summary.result.interrupted = summary.interrupted();
        if summary.result.error.is_none() && !summary.result.interrupted {
            summary.result.error = summary.problem();
        }
        if let Some(e) = &summary.audit_error {
            tracing::error!(sweep = sweep_id, error = %e, "the audit log could not be written: stops that could not be recorded first were not made");
        }
        summary.duration = started.elapsed();
        let finished = Utc::now();
        self.store
            .finish_sweep(sweep_id, finished, summary.duration, &summary.result)
            .await?;
        // With [[account]]s (even one, in one region) `status` shows each place's last sweep.
        let accounts = self
            .cores
            .iter()
            .any(|c| c.account() != stopd_audit::Place::DEFAULT_ACCOUNT);
        if accounts && let Err(e) = self.store.record_places(finished, &summary.places).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot record each account's last sweep for `status`");
        }
        summary.next_escalation = self
            .store
            .next_escalation(summary.decided_at)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "cannot read escalation deadlines");
                None
            });
        Ok(summary)
    }

    /// What every account's sweep decides by: the file's rules with the ad-hoc freezes in force
    /// (`stopd freeze add`), and the break-glass exemptions.
    async fn inputs(
        &self,
        policy: &Arc<Policy>,
        start_at: DateTime<Utc>,
    ) -> Result<(Arc<Policy>, Arc<Vec<stopd_rules::Exemption>>)> {
        let effective =
            crate::runtime::freezes::effective_policy(&self.store, policy, start_at).await?;
        let extra = Arc::new(self.store.active_exemptions(start_at).await?);
        Ok((effective, extra))
    }

    /// Every account and region at once, each by the rules that select it; one summary.
    /// Stops in flight always finish and are recorded, whatever else failed; an account that
    /// fails (its role cannot be assumed, its listing is refused) is reported and never holds
    /// the others back.
    async fn sweep_places(
        &self,
        effective: &Arc<Policy>,
        extra: &Arc<Vec<stopd_rules::Exemption>>,
        sweep_id: i64,
        start_at: DateTime<Utc>,
        dry_run: bool,
    ) -> (SweepSummary, Vec<Done>, usize) {
        // One bound on stops in flight for the whole sweep, every account's.
        let semaphore = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let many = self.cores.len() > 1;
        let mut set = JoinSet::new();
        for core in self.cores.iter() {
            let policy = if effective.selects_places() {
                Arc::new(effective.for_place(core.account(), core.region()))
            } else {
                Arc::clone(effective)
            };
            let (me, core, extra, semaphore) = (
                self.clone(),
                core.clone(),
                Arc::clone(extra),
                Arc::clone(&semaphore),
            );
            set.spawn(async move {
                let mut tasks = InFlight::default();
                let body = me
                    .sweep_body(
                        &core, &policy, &extra, &semaphore, sweep_id, start_at, dry_run, &mut tasks,
                    )
                    .await;
                // Stops in flight always finish and are recorded, whatever else failed.
                let (done, panicked) = tasks.drain().await;
                (core, body, done, panicked)
            });
        }
        let mut summary = SweepSummary {
            decided_at: start_at,
            policy: Some(Arc::clone(effective)),
            ..SweepSummary::default()
        };
        let (mut all_done, mut all_panicked, mut blind) = (Vec::new(), 0, 0);
        let places = set.len();
        while let Some(joined) = set.join_next().await {
            let (core, body, done, panicked) = match joined {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "an account's sweep task failed (a bug: please report it)");
                    all_panicked += 1;
                    continue;
                }
            };
            let place = core.place();
            let sound = |s: &SweepSummary| {
                s.result.error.is_none() && s.denied.is_none() && s.gate_failures == 0
            };
            let rest_ok =
                panicked == 0 && done.iter().all(|d| d.is_final && d.outcome != "rejected");
            let place_ok = body
                .as_ref()
                .is_ok_and(|s| !s.blind && !s.cut_short && sound(s))
                && rest_ok;
            let place_interrupted = body.as_ref().is_ok_and(|s| s.cut_short && sound(s)) && rest_ok;
            all_done.extend(done);
            all_panicked += panicked;
            let named = |text: &str| {
                if many {
                    format!("{place}: {text}")
                } else {
                    text.to_string()
                }
            };
            let s = match body {
                Ok(s) => s,
                Err(e) => {
                    let text = format!("{e:#}");
                    tracing::error!(sweep = sweep_id, place = %place, error = %text, "sweep failed");
                    summary.failed = true;
                    failed_summary(start_at, &e)
                }
            };
            summary.places.push(PlaceResult {
                account: core.account().to_string(),
                region: core.region().to_string(),
                ok: place_ok,
                interrupted: place_interrupted,
                error: s.result.error.clone().or_else(|| s.denied.clone()),
            });
            let r = &mut summary.result;
            r.pipelines_seen += s.result.pipelines_seen;
            r.pipelines_in_scope += s.result.pipelines_in_scope;
            r.executions_seen += s.result.executions_seen;
            r.stops_decided += s.result.stops_decided;
            r.errors += s.result.errors;
            if r.error.is_none() {
                r.error = s.result.error.as_deref().map(named);
            }
            if s.blind {
                blind += 1;
                // Blind because a shutdown came during discovery is no failure.
                if many && !s.cut_short {
                    summary.blind_places.push(named(
                        s.result
                            .error
                            .as_deref()
                            .unwrap_or("nothing could be listed"),
                    ));
                }
            }
            if summary.denied.is_none() {
                summary.denied = s.denied.as_deref().map(named);
            }
            summary.skipped_for_shutdown += s.skipped_for_shutdown;
            summary.cut_short |= s.cut_short;
            summary.in_progress.extend(s.in_progress);
            summary.discovery_failures += s.discovery_failures;
            summary.calls.merge(&s.calls);
            summary.gates_closed += s.gates_closed;
            summary.gate_failures += s.gate_failures;
        }
        if many {
            for p in summary.places.iter().filter(|p| !p.ok && !p.interrupted) {
                tracing::error!(account = %p.account, region = %p.region,
                    error = p.error.as_deref().unwrap_or("a stop did not succeed"),
                    "this account and region were not fully enforced this sweep; the others were");
            }
        }
        summary.blind = places > 0 && blind == places;
        summary
            .places
            .sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        (summary, all_done, all_panicked)
    }

    /// Discovery, decisions and escalations in one account and region; stops are launched into
    /// `tasks`.
    #[allow(clippy::too_many_arguments)]
    async fn sweep_body(
        &self,
        core: &Core,
        policy: &Arc<Policy>,
        extra: &Arc<Vec<stopd_rules::Exemption>>,
        semaphore: &Arc<Semaphore>,
        sweep_id: i64,
        start_at: DateTime<Utc>,
        dry_run: bool,
        tasks: &mut InFlight,
    ) -> Result<SweepSummary> {
        let commits_before = self.store.group_commits();
        let scope = |p: &str| policy.may_apply_to(p);
        // Stops decided by a gating freeze wait for their pipeline's gates: an execution held
        // at a gate that freeze closed is not stopped by it (it proceeds when the gate opens).
        let gating = policy.has_gates();
        let mut deferred_by: HashMap<String, Vec<Planned>> = HashMap::new();
        let mut skipped = 0;
        let mut decided = 0;
        // One stop per execution per sweep, however often a listing repeats it.
        let mut launched: HashSet<(String, String)> = HashSet::new();
        // Each pipeline is decided, stopped and gated as soon as it has been read, while
        // discovery goes on: listing, stopping and gating overlap. Stops run in `tasks`,
        // outside the futures below, so a shutdown that drops discovery never drops a stop in
        // flight.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PipelineRead>();
        let (names_tx, names_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (gtx, mut grx) = tokio::sync::mpsc::unbounded_channel::<PipelineGated>();
        // The rules' state, made once and remade only when a window edge passes mid-sweep
        // (remaking it for each pipeline cost 50 µs a pipeline at 50 rules).
        let mut decider = policy.decider(start_at);
        // A shutdown drops discovery (a throttled listing may take minutes); the gates
        // started finish and are recorded, and no new one starts.
        let discovery = async {
            tokio::select! {
                found = core.discover_streaming(&scope, policy.uses_tags(), Some(tx)) => Some(found),
                () = self.draining.cancelled() => None,
            }
        };
        let gates = crate::runtime::gates::reconcile(
            core,
            &self.store,
            policy,
            extra,
            names_rx,
            Some(sweep_id),
            dry_run,
            // Pipelines at once: twice what discovery reads at once (a pipeline's gates wait
            // mostly on the audit log and on round trips; every call shares the in-flight
            // bound anyway).
            2 * core.concurrency(),
            Some(gtx),
            self.draining.clone(),
        );
        // Stops are launched by a launcher of their own: launching waits for a free stop slot,
        // and the consumer waiting there held back every later pipeline's reading and gates
        // (at an edge with 647 stops, 64 at a time, most of the time).
        let (ltx, mut lrx) = tokio::sync::mpsc::unbounded_channel::<Planned>();
        let launcher = async {
            let mut skipped = 0;
            while let Some(p) = lrx.recv().await {
                if !self
                    .launch(core, semaphore, tasks, sweep_id, p, dry_run)
                    .await
                {
                    skipped += 1;
                }
            }
            skipped
        };
        let consume = async {
            // Moved in, so that the launcher ends when the consumer does.
            let ltx = ltx;
            let mut names_tx = Some(names_tx);
            let (mut reading, mut gating_open) = (true, true);
            while reading || gating_open {
                tokio::select! {
                    read = rx.recv(), if reading => {
                        let Some(read) = read else {
                            // Discovery is over: so is the stream of pipelines to gate.
                            reading = false;
                            names_tx = None;
                            continue;
                        };
                        let in_progress: Vec<ActiveExecution> = read
                            .executions
                            .into_iter()
                            .filter(|e| e.status == ActiveStatus::InProgress)
                            .collect();
                        let now = Utc::now();
                        if !decider.covers(now) {
                            decider = policy.decider(now);
                        }
                        let (planned, _) = plan(&decider, now, &in_progress, extra);
                        for p in planned {
                            if !launched.insert((p.pipeline.clone(), p.execution_id.clone())) {
                                continue;
                            }
                            if dry_run
                                && self
                                    .store
                                    .dry_run_recorded(&p.execution_id, &p.rule)
                                    .await?
                            {
                                continue;
                            }
                            if gating && policy.rule(&p.rule).is_some_and(|r| r.gate.is_some()) {
                                deferred_by.entry(p.pipeline.clone()).or_default().push(p);
                                continue;
                            }
                            decided += 1;
                            let _ = ltx.send(p);
                        }
                        // Its gates next (after its stops are deferred, so that the gates'
                        // answer always finds them).
                        if let Some(names) = &names_tx {
                            let _ = names.send(read.pipeline);
                        }
                    }
                    gated = grx.recv(), if gating_open => {
                        let Some(g) = gated else {
                            gating_open = false;
                            continue;
                        };
                        // A gating freeze's stops in this pipeline: those its gates do not
                        // hold go ahead.
                        for p in deferred_by.remove(&g.pipeline).unwrap_or_default() {
                            if g.held.contains(&p.execution_id) {
                                tracing::info!(pipeline = %p.pipeline, execution = %p.execution_id, rule = %p.rule,
                                    "held at a closed gate: not stopped; it proceeds when the gate opens");
                                continue;
                            }
                            decided += 1;
                            let _ = ltx.send(p);
                        }
                    }
                }
            }
            anyhow::Ok(())
        };
        let (found, gate, consumed, not_launched) =
            tokio::join!(discovery, gates, consume, launcher);
        skipped += not_launched;
        consumed?;
        let gate = gate?;
        // Pipelines whose gates could not be reconciled: their stops go ahead.
        for (_, plans) in deferred_by.drain() {
            for p in plans {
                decided += 1;
                if !self
                    .launch(core, semaphore, tasks, sweep_id, p, dry_run)
                    .await
                {
                    skipped += 1;
                }
            }
        }
        let Some(found) = found else {
            // Shutdown during discovery: what was launched finishes and is recorded, and so
            // were the gates already begun. Interrupted, not failed (unless a gate failed).
            tracing::info!(
                sweep = sweep_id,
                "shutdown began during discovery: the sweep is interrupted"
            );
            return Ok(SweepSummary {
                result: SweepResult {
                    stops_decided: decided,
                    errors: gate.failures.len(),
                    error: gate.failures.first().map(|f| format!("gate: {f}")),
                    ..SweepResult::default()
                },
                skipped_for_shutdown: skipped,
                cut_short: true,
                blind: true,
                decided_at: start_at,
                calls: gate.calls,
                gates_closed: gate.closed_now,
                gate_failures: gate.failures.len(),
                ..SweepSummary::default()
            });
        };
        let mut result = SweepResult {
            pipelines_seen: found.pipelines_seen,
            pipelines_in_scope: found.pipelines_in_scope,
            executions_seen: found.executions.len(),
            errors: found.failures.len() + usize::from(found.listing_failed.is_some()),
            ..SweepResult::default()
        };
        let mut calls = found.calls.clone();
        let mut denied = None;
        if let Some(e) = &found.listing_failed {
            result.error = Some(format!("could not list pipelines: {}", e.explain()));
            denied = e.kind.is_permission().then(|| e.explain());
        } else if let Some(f) = found.failures.first() {
            result.error = Some(format!(
                "could not read {} of {} pipelines; first, {}: {}",
                found.failures.len(),
                found.pipelines_in_scope,
                f.pipeline,
                f.error.explain()
            ));
        }
        for f in &found.failures {
            if f.error.kind.is_permission() {
                denied.get_or_insert_with(|| f.error.explain());
                tracing::error!(pipeline = %f.pipeline, iam_action = %f.error.iam_action(), "pipeline could not be read: {}", f.error.explain());
            } else {
                tracing::warn!(pipeline = %f.pipeline, error = %f.error, "pipeline could not be read this sweep");
            }
        }
        let blind = found.listing_failed.is_some();
        if blind {
            tracing::error!(
                error = result.error.as_deref().unwrap_or(""),
                "sweep is blind: nothing was decided"
            );
        }
        // Gates were closed where a gating freeze covers a pipeline now, and opened where
        // stopd held one and none does (even blind: what stopd holds is known from the log).
        calls.merge(&gate.calls);
        if let Some(f) = gate.failures.first() {
            result.errors += gate.failures.len();
            result.error.get_or_insert_with(|| format!("gate: {f}"));
        }
        let (in_progress, stopping): (Vec<_>, Vec<_>) = found
            .executions
            .into_iter()
            .partition(|e| e.status == ActiveStatus::InProgress);
        if !dry_run {
            // Escalations: a stop-and-wait past its escalate_after whose execution is still
            // Stopping is stopped again, with abandon.
            for due in self.store.escalations_due(Utc::now()).await? {
                if !core.owns(due.account.as_deref(), due.region.as_deref()) {
                    continue;
                }
                let still_stopping = stopping
                    .iter()
                    .any(|e| e.execution_id == due.execution_id && e.pipeline == due.pipeline);
                if !still_stopping {
                    continue;
                }
                decided += 1;
                let p = Planned {
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
                };
                if !self
                    .launch(core, semaphore, tasks, sweep_id, p, dry_run)
                    .await
                {
                    skipped += 1;
                }
            }
        }
        result.stops_decided = decided;
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "shutdown began: stops not yet started were left for the next run"
            );
        }
        tracing::debug!(
            audit_transactions = self.store.group_commits() - commits_before,
            "stop intents and outcomes, group-committed"
        );
        Ok(SweepSummary {
            result,
            skipped_for_shutdown: skipped,
            cut_short: skipped > 0,
            in_progress,
            blind,
            discovery_failures: found.failures.len(),
            denied,
            calls,
            decided_at: start_at,
            policy: Some(Arc::clone(policy)),
            gates_closed: gate.closed_now,
            gate_failures: gate.failures.len(),
            ..SweepSummary::default()
        })
    }

    /// Starts one stop when a slot is free; false (and nothing recorded) if a shutdown began.
    async fn launch(
        &self,
        core: &Core,
        semaphore: &Arc<Semaphore>,
        tasks: &mut InFlight,
        sweep_id: i64,
        p: Planned,
        dry_run: bool,
    ) -> bool {
        let permit = tokio::select! {
            biased;
            () = self.draining.cancelled() => None,
            permit = Arc::clone(semaphore).acquire_owned() => permit.ok(),
        };
        let Some(permit) = permit else {
            return false;
        };
        tasks.reap();
        let core = core.clone();
        let store = self.store.clone();
        tasks.tasks.spawn(async move {
            let done = execute(&core, &store, Some(sweep_id), p, dry_run).await;
            drop(permit);
            done
        });
        true
    }
}

/// The stops of one sweep: running, and done. A finished task is taken out of the set as soon
/// as the next stop is launched, so the set holds about `stop_concurrency` tasks, not every stop
/// of the sweep (a finished task keeps its ~7 KiB allocation until it is joined).
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Done>,
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
    fn reap(&mut self) {
        while let Some(joined) = self.tasks.try_join_next() {
            self.collect(joined);
        }
    }

    /// Waits for every launched stop; returns them all, and how many tasks panicked.
    async fn drain(&mut self) -> (Vec<Done>, usize) {
        while let Some(joined) = self.tasks.join_next().await {
            self.collect(joined);
        }
        (
            std::mem::take(&mut self.done),
            std::mem::take(&mut self.panicked),
        )
    }
}

/// Pending stops resolved at once at start-up.
const RECONCILE_CONCURRENCY: usize = 16;

/// Resolves stops a crash left without an outcome, from each execution's status now, several
/// at a time (one by one, 60 pending stops at 300 ms a call held the first sweep back 18 s).
/// Returns how many were resolved and how many are still pending (status unreadable).
pub async fn reconcile(cores: &[Core], store: &Store) -> Result<(usize, usize)> {
    let pending = store.pending().await?;
    let (mut resolved, mut left) = (0, 0);
    let mut tasks = JoinSet::new();
    let mut pending = pending.into_iter();
    loop {
        while tasks.len() < RECONCILE_CONCURRENCY {
            let Some(p) = pending.next() else { break };
            let Some(core) = cores
                .iter()
                .find(|c| c.owns(p.account.as_deref(), p.region.as_deref()))
            else {
                tracing::warn!(stop_id = p.id, pipeline = %p.pipeline, account = p.account.as_deref().unwrap_or(stopd_audit::Place::DEFAULT_ACCOUNT),
                    region = p.region.as_deref().unwrap_or(""), "a pending stop's account and region are no longer configured: it stays pending");
                left += 1;
                continue;
            };
            let (core, store) = (core.clone(), store.clone());
            tasks.spawn(async move { resolve_one(&core, &store, p).await });
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
async fn resolve_one(core: &Core, store: &Store, p: stopd_audit::Pending) -> Result<bool> {
    let mut calls = CallCounts::default();
    let record = |outcome: stopd_audit::Outcome, note: String| OutcomeRow {
        at: Utc::now(),
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

/// The audit log's name for an engine outcome (every one is an audit outcome; the match breaks
/// the build if either side grows).
fn recorded(o: Outcome) -> stopd_audit::Outcome {
    match o {
        Outcome::Stopped => stopd_audit::Outcome::Stopped,
        Outcome::AlreadyStopping => stopd_audit::Outcome::AlreadyStopping,
        Outcome::NotStoppable => stopd_audit::Outcome::NotStoppable,
        Outcome::PipelineNotFound => stopd_audit::Outcome::PipelineNotFound,
        Outcome::Rejected => stopd_audit::Outcome::Rejected,
        Outcome::Failed => stopd_audit::Outcome::Failed,
    }
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
