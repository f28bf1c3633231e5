//! One execution event, decided as a sweep decides: routed to its account and region, the
//! execution re-read (events are triggers, never truth), the rules in force asked (the file's,
//! ad-hoc freezes, exemptions, grace, rollbacks spared) through the sweep's own
//! `sweep::plan`, and a stop made through the one path every stop takes (`sweep::execute`):
//! intent recorded, call, outcome recorded.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use stopd_audit::Store;
use stopd_core::{ActiveExecution, ActiveStatus, CallCounts, Core, ErrorKind};
use stopd_rules::Policy;

use super::message::{ExecutionEvent, State};
use crate::clock::Clock;
use crate::config::Config;
use crate::runtime::sweep::{execute, plan};

/// Where events are enforced and by what: rebuilt when the policy or the clients change.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The policy file's rules (ad-hoc freezes and exemptions are read per batch).
    pub policy: Arc<Policy>,
    /// One engine per account and region (the sweep's).
    pub cores: Arc<Vec<Core>>,
    /// Decide and record, never call StopPipelineExecution.
    pub dry_run: bool,
    /// Which engine an event's (account id, region) goes to.
    pub routes: Routes,
}

/// Which engine enforces the events of an (account id, region).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// (12-digit account id, region) -> index into the engines.
    by_place: HashMap<(String, String), usize>,
    /// Region -> the engine of the ambient account, when its id is not known (a queue URL
    /// without one): every account's events of that region go to it.
    any_account: HashMap<String, usize>,
}

/// The account id of a role ARN (`arn:aws:iam::111122223333:role/stopd`).
fn role_account(role_arn: &str) -> Option<&str> {
    role_arn.split(':').nth(4).filter(|a| !a.is_empty())
}

impl Routes {
    /// The routes of `cfg`'s accounts over `cores`: an `[[account]]`'s id is its role's; the
    /// ambient account's (no `[[account]]`) is the queue URL's, when it names one.
    pub fn new(cfg: &Config, cores: &[Core]) -> Routes {
        let mut routes = Routes::default();
        let queue_account = cfg.events.as_ref().and_then(|e| e.account_id.clone());
        for (i, core) in cores.iter().enumerate() {
            let id = if core.account() == stopd_audit::Place::DEFAULT_ACCOUNT {
                queue_account.clone()
            } else {
                cfg.accounts
                    .iter()
                    .find(|a| a.name == core.account())
                    .and_then(|a| role_account(&a.role_arn))
                    .map(str::to_string)
            };
            match id {
                Some(id) => {
                    routes.by_place.insert((id, core.region().to_string()), i);
                }
                None => {
                    routes.any_account.insert(core.region().to_string(), i);
                }
            }
        }
        routes
    }

    /// The engine of an event's account and region.
    pub fn route<'a>(&self, cores: &'a [Core], account: &str, region: &str) -> Option<&'a Core> {
        self.by_place
            .get(&(account.to_string(), region.to_string()))
            .or_else(|| self.any_account.get(region))
            .and_then(|&i| cores.get(i))
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A stop was decided and made (or recorded, in a dry run).
    Acted,
    /// Nothing to do: the reason (ended, out of scope, not running any more, allowed).
    Ignored(&'static str),
    /// Its account and region are not configured.
    UnknownAccount,
}

/// Decides one event at `now` by `effective` (the file's rules with the ad-hoc freezes in
/// force) and `extra` (break-glass exemptions). `Err` leaves the message on the queue (it is
/// received again after its visibility timeout): an execution that could not be read, or a
/// stop whose intent could not be recorded.
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    inputs: &Inputs,
    store: &Store,
    clock: &dyn Clock,
    effective: &Arc<Policy>,
    extra: &[stopd_rules::Exemption],
    event: &ExecutionEvent,
    calls: &mut CallCounts,
) -> Result<Handled, String> {
    let Some(core) = inputs
        .routes
        .route(&inputs.cores, &event.account, &event.region)
    else {
        return Ok(Handled::UnknownAccount);
    };
    if !event.state.may_run() {
        // Stopping or ended: no longer in progress (the edge's first stops skip it).
        core.note_gone(&event.pipeline, &event.execution_id);
        return Ok(Handled::Ignored("ended"));
    }
    let policy = if effective.selects_places() {
        Arc::new(effective.for_place(core.account(), core.region()))
    } else {
        Arc::clone(effective)
    };
    if !policy.may_apply_to(&event.pipeline) {
        return Ok(Handled::Ignored("out of scope"));
    }
    let read = match core
        .read_execution(&event.pipeline, &event.execution_id, calls)
        .await
    {
        Ok(r) => r,
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::PipelineNotFound | ErrorKind::ExecutionNotFound | ErrorKind::Rejected
            ) =>
        {
            // Deleted since, or never ours: stale.
            tracing::debug!(pipeline = %event.pipeline, execution = %event.execution_id, error = %e, "event of an execution that cannot be found");
            return Ok(Handled::Ignored("not found"));
        }
        Err(e) => return Err(e.explain()),
    };
    if read.active != Some(ActiveStatus::InProgress) {
        core.note_gone(&event.pipeline, &event.execution_id);
        return Ok(Handled::Ignored("not running"));
    }
    let tags = if policy.uses_tags() {
        core.pipeline_tags(&event.pipeline, calls)
            .await
            .map_err(|e| e.explain())?
    } else {
        Arc::default()
    };
    let execution = ActiveExecution {
        pipeline: event.pipeline.clone(),
        execution_id: event.execution_id.clone(),
        status: ActiveStatus::InProgress,
        start_time: start_time(event),
        rollback: read.rollback,
        trigger: read.trigger,
        stop_reason: None,
        tags,
    };
    // Known in progress from now on: a window edge stops it first.
    core.note_running(execution.clone());
    let now = clock.now();
    let decider = policy.decider(now);
    let (planned, _) = plan(&decider, now, std::slice::from_ref(&execution), extra);
    let Some(p) = planned.into_iter().next() else {
        return Ok(Handled::Ignored("allowed"));
    };
    // A gating freeze's stop waits for its pipeline's gates, which the sweep reconciles: an
    // execution that just started is in its first stage and held at no gate; any other is
    // left to the sweep.
    if event.state != State::Started && policy.rule(&p.rule).is_some_and(|r| r.gate.is_some()) {
        return Ok(Handled::Ignored("left to the sweep (gating freeze)"));
    }
    if inputs.dry_run
        && store
            .dry_run_recorded(&p.execution_id, &p.rule)
            .await
            .map_err(|e| format!("{e:#}"))?
    {
        return Ok(Handled::Ignored("dry run already recorded"));
    }
    // A sweep that listed it running may be stopping it already: once, not twice.
    if !inputs.dry_run && !core.claim_stop(&p.execution_id) {
        return Ok(Handled::Ignored("being stopped already"));
    }
    let done = execute(core, store, clock, None, p, inputs.dry_run).await;
    calls.merge(&done.calls);
    match (done.stop_id, done.audit_error) {
        (None, Some(e)) => Err(e),
        _ => Ok(Handled::Acted),
    }
}

/// The execution's start: the event's `start-time`, or for a `STARTED` event its `time`
/// (the start itself). A timeout never guesses: a `RESUMED` event without `start-time` has
/// none.
pub fn start_time(event: &ExecutionEvent) -> Option<DateTime<Utc>> {
    event
        .start_time
        .or((event.state == State::Started).then_some(event.time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_names_its_account() {
        assert_eq!(
            role_account("arn:aws:iam::111122223333:role/stopd"),
            Some("111122223333")
        );
        assert_eq!(role_account("nonsense"), None);
    }
}
