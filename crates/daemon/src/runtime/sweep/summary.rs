//! What a sweep did: [`SweepSummary`], and what makes a sweep good, failed or interrupted.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
pub use stopd_audit::PlaceResult;
use stopd_audit::SweepResult;
use stopd_core::{ActiveExecution, CallCounts};
use stopd_rules::Policy;

use super::execute::Done;

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
    /// When the first exemption in force ends, for the scheduler.
    pub next_exemption_end: Option<DateTime<Utc>>,
    /// Change Calendars that could not be read (their rules stopped nothing; the sweep failed).
    pub calendar_failures: usize,
    /// The next transition of a Change Calendar, for the scheduler.
    pub next_calendar_transition: Option<DateTime<Utc>>,
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
            && self.calendar_failures == 0
            && self.blind_places.is_empty()
            && self.gate_failures == 0
            && self.panicked == 0
            && self.audit_error.is_none()
            && self.denied.is_none()
            && !self.done.iter().any(|d| d.outcome.is_rejection())
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
            .find(|d| !d.is_final || d.outcome.is_rejection())
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

/// The summary of a sweep (or one account's) that failed before it could see anything.
pub(super) fn failed_summary(start_at: DateTime<Utc>, e: &anyhow::Error) -> SweepSummary {
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
