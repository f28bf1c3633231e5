//! The executions in progress an engine knows of, without a call: those its last listing of
//! each pipeline found InProgress (discovery's memory), plus those an event announced since
//! (and re-read InProgress), less those an event or a stop said ended or are stopping. At a
//! window edge the sweep stops these first, then lists the fleet to reconcile (issue 29).
//!
//! Knowledge of a pipeline is replaced whenever discovery lists it again: the listing is the
//! truth, events only fill the time between two listings. What is known may have ended since
//! (a finished execution's stop is answered `not_stoppable`, which is done, not an error).

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::handle::{Core, lock};
use crate::types::{ActiveExecution, ActiveStatus};

/// How long a claimed stop holds off another path's stop of the same execution: longer than a
/// stop takes, and than a listing that saw it InProgress just before takes to decide.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

impl Core {
    /// Claims the stop of an execution for the caller: `false` if another path (a sweep, the
    /// event consumer) claimed it within `CLAIM_TTL` (a minute), so that it is stopped once, not once
    /// per path that saw it running.
    pub fn claim_stop(&self, execution_id: &str) -> bool {
        let mut claims = lock(&self.inner.claims);
        if claims.len() > 1_024 {
            claims.retain(|_, at| at.elapsed() < CLAIM_TTL);
        }
        match claims.get(execution_id) {
            Some(at) if at.elapsed() < CLAIM_TTL => false,
            _ => {
                claims.insert(execution_id.to_string(), Instant::now());
                true
            }
        }
    }

    /// Gives a claim back (the stop did not happen: another path may try).
    pub fn release_stop(&self, execution_id: &str) {
        lock(&self.inner.claims).remove(execution_id);
    }

    /// The executions in progress this engine knows of now (InProgress only).
    pub fn known_in_progress(&self) -> Vec<ActiveExecution> {
        let heard = lock(&self.inner.heard);
        let memory = lock(&self.inner.memory);
        let mut out: Vec<ActiveExecution> = Vec::new();
        let mut seen = HashSet::new();
        for (pipeline, m) in memory.iter() {
            let h = heard.get(pipeline);
            for e in m
                .active
                .iter()
                .filter(|e| e.status == ActiveStatus::InProgress)
            {
                if h.is_some_and(|h| h.gone.contains(&e.execution_id)) {
                    continue;
                }
                if seen.insert(e.execution_id.clone()) {
                    out.push(e.clone());
                }
            }
        }
        for h in heard.values() {
            for (id, e) in &h.running {
                if !h.gone.contains(id) && seen.insert(id.clone()) {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// An event announced an execution that a read found InProgress.
    pub fn note_running(&self, execution: ActiveExecution) {
        let mut heard = lock(&self.inner.heard);
        let h = heard.entry(execution.pipeline.clone()).or_default();
        if !h.gone.contains(&execution.execution_id) {
            h.running.insert(execution.execution_id.clone(), execution);
        }
    }

    /// An execution ended, is stopping, or was stopped: no longer known in progress.
    pub fn note_gone(&self, pipeline: &str, execution_id: &str) {
        let mut heard = lock(&self.inner.heard);
        let h = heard.entry(pipeline.to_string()).or_default();
        h.running.remove(execution_id);
        h.gone.insert(execution_id.to_string());
    }

    /// Discovery listed `pipeline` again: what events said of it before is superseded.
    pub(super) fn listed(&self, pipeline: &str) {
        lock(&self.inner.heard).remove(pipeline);
    }
}
