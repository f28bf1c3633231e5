//! One sweep: discover, decide, stop (bounded concurrency), record, in every account and
//! region at once, at the instant the [`Clock`](crate::clock::Clock) it is handed says.
//!
//! - [`execute`](mod@execute): deciding stops ([`plan`]) and making one
//!   ([`execute::execute`]), the one path every stop takes (policy, escalation or `stopd stop`).
//! - [`reconcile`](mod@reconcile): what is recorded against what is running: pending stops
//!   resolved at start-up, stop-and-wait stops escalated to abandon.
//! - [`summary`]: what a sweep did ([`SweepSummary`]), and whether it was good.
//!
//! The imports run one way: `summary` and `reconcile` use `execute`; this module uses all three.

pub mod calendars;
pub mod execute;
pub mod reconcile;
pub mod summary;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use stopd_audit::{Store, SweepResult};
use stopd_core::{ActiveExecution, ActiveStatus, Core, PipelineRead};
use stopd_rules::Policy;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::runtime::gates::PipelineGated;
use execute::InFlight;
pub use execute::{Done, Planned, execute, facts, plan};
pub use reconcile::reconcile;
use summary::failed_summary;
pub use summary::{PlaceResult, SweepSummary};

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
    /// What time it is: a sweep decides, and records, by it.
    pub clock: SharedClock,
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
        trigger: stopd_audit::SweepTrigger,
        dry_run: bool,
    ) -> Result<SweepSummary> {
        let started = Instant::now();
        let start_at = self.clock.now();
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
        let sweep_id = self.store.begin_sweep(start_at, trigger, dry_run).await?;
        let mut exemption_ends = None;
        let mut asked = calendars::Asked::default();
        let (mut summary, done, panicked) = match self.inputs(&policy, start_at).await {
            Ok((effective, extra)) => {
                exemption_ends = next_exemption_end(&effective, &extra, start_at);
                asked = calendars::ask(&effective, &self.cores, start_at).await;
                // At a window edge the executions already known are stopped first, and the
                // fleet is listed to reconcile.
                let known_first = matches!(
                    trigger,
                    stopd_audit::SweepTrigger::Edge | stopd_audit::SweepTrigger::CatchUp
                );
                self.sweep_places(&effective, &extra, sweep_id, start_at, dry_run, known_first)
                    .await
            }
            Err(e) => {
                tracing::error!(sweep = sweep_id, error = %format!("{e:#}"), "sweep failed");
                (failed_summary(start_at, &e), Vec::new(), 0)
            }
        };
        summary.sweep_id = sweep_id;
        summary.panicked = panicked;
        summary.next_exemption_end = exemption_ends;
        summary.next_calendar_transition = asked.next_transition;
        summary.calls.merge(&asked.calls);
        summary.calendar_failures = asked.failures;
        if let Some(e) = asked.error {
            summary.result.errors += asked.failures;
            if summary.result.error.is_none() {
                summary.result.error = Some(e);
            }
        }
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
        // A rule whose calendar cannot be read stopped nothing: the sweep fails, naming it.
        if let Some(e) = unreadable(&policy) {
            tracing::error!(sweep = sweep_id, error = %e, "sweep failed");
            summary.failed = true;
            summary.result.errors += 1;
            summary.result.interrupted = false;
            summary.result.error = Some(match summary.result.error.take() {
                Some(other) => format!("{e}; {other}"),
                None => e,
            });
        }
        if let Some(e) = &summary.audit_error {
            tracing::error!(sweep = sweep_id, error = %e, "the audit log could not be written: stops that could not be recorded first were not made");
        }
        summary.duration = started.elapsed();
        let finished = self.clock.now();
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
        known_first: bool,
    ) -> (SweepSummary, Vec<Done>, usize) {
        // Stops under way at once, per account and region: a stop holds its slot while it
        // waits for its pair's pace, so one bound for every pair let the slowest pair's stops
        // hold the others back (`targets::per_pair`; requests in flight are bounded for all
        // pairs together by the engines' shared bound).
        let slots = crate::runtime::targets::per_pair(self.concurrency.max(1), self.cores.len());
        let many = self.cores.len() > 1;
        // A Change Calendar's answer is per place: each place decides by its own view of it.
        let per_place = effective.selects_places() || !effective.change_calendars().is_empty();
        let mut set = JoinSet::new();
        for core in self.cores.iter() {
            let policy = if per_place {
                Arc::new(effective.for_place(core.account(), core.region()))
            } else {
                Arc::clone(effective)
            };
            let (me, core, extra, semaphore) = (
                self.clone(),
                core.clone(),
                Arc::clone(extra),
                Arc::new(Semaphore::new(slots)),
            );
            set.spawn(async move {
                let mut tasks = InFlight::default();
                let body = me
                    .sweep_body(
                        &core,
                        &policy,
                        &extra,
                        &semaphore,
                        sweep_id,
                        start_at,
                        (dry_run, known_first),
                        &mut tasks,
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
                panicked == 0 && done.iter().all(|d| d.is_final && !d.outcome.is_rejection());
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
        (dry_run, known_first): (bool, bool),
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
        if known_first {
            // At a window edge the executions in progress already known (the last listing,
            // and events since) are stopped first, with every stop slot; the fleet is listed
            // once they are done, to reconcile, and stops nothing twice (`launched`).
            let known: Vec<ActiveExecution> = core
                .known_in_progress()
                .into_iter()
                .filter(|e| scope(&e.pipeline))
                .collect();
            let (planned, _) = plan(&decider, start_at, &known, extra);
            for p in planned {
                // A gating freeze's stops wait for their pipeline's gates: the listing's.
                if gating && policy.rule(&p.rule).is_some_and(|r| r.gate.is_some()) {
                    continue;
                }
                if !self.claim(core, &p, dry_run).await? {
                    continue;
                }
                launched.insert((p.pipeline.clone(), p.execution_id.clone()));
                decided += 1;
                if !self
                    .launch(core, semaphore, tasks, sweep_id, p, dry_run)
                    .await
                {
                    skipped += 1;
                }
            }
            tasks.settle().await;
        }
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
            &self.clock,
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
                        let now = self.clock.now();
                        if !decider.covers(now) {
                            decider = policy.decider(now);
                        }
                        let (planned, _) = plan(&decider, now, &in_progress, extra);
                        for p in planned {
                            if !launched.insert((p.pipeline.clone(), p.execution_id.clone())) {
                                continue;
                            }
                            if !self.claim(core, &p, dry_run).await? {
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
                                core.release_stop(&p.execution_id);
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
            let due =
                reconcile::escalations(&self.store, core, self.clock.now(), &stopping).await?;
            for p in due {
                decided += 1;
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

    /// Whether the planned stop is this sweep's to make: a dry run records a decision once
    /// (not again if the log has it); a real stop is claimed, as the event consumer may be
    /// stopping it already (once, not twice).
    async fn claim(&self, core: &Core, p: &Planned, dry_run: bool) -> Result<bool> {
        Ok(if dry_run {
            !self
                .store
                .dry_run_recorded(&p.execution_id, &p.rule)
                .await?
        } else {
            core.claim_stop(&p.execution_id)
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
        let (store, clock) = (self.store.clone(), SharedClock::clone(&self.clock));
        tasks.tasks.spawn(async move {
            let done = execute(&core, &store, clock.as_ref(), Some(sweep_id), p, dry_run).await;
            drop(permit);
            done
        });
        true
    }
}

/// The first instant after `now` at which an exemption in force (the policy's or a break-glass
/// one) ends: from then on what it held back must be stopped, so the scheduler wakes there as
/// at a window edge instead of waiting for the next tick.
fn next_exemption_end(
    policy: &Policy,
    extra: &[stopd_rules::Exemption],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    policy
        .exemptions()
        .iter()
        .chain(extra)
        .filter_map(|e| e.until)
        .filter(|until| *until > now)
        .min()
}

/// Why the rules whose calendar cannot be read were not enforced, in one sentence naming each
/// rule, calendar file, line and reason; none when every rule could be read.
fn unreadable(policy: &Policy) -> Option<String> {
    let rules: Vec<String> = policy
        .unreadable()
        .iter()
        .map(ToString::to_string)
        .collect();
    (!rules.is_empty()).then(|| rules.join("; "))
}
