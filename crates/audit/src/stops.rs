//! Stops: the decision (`stops`, written before the call), how it ended (`stop_outcomes`),
//! the stops left pending by a crash, the escalations due, and `stopd report`'s records.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::writer::{IntentRow, Write, refused_alone};
use crate::{Mode, Outcome, Place, RuleKind, Store, on_pool, parse_ts, ts};

/// Stop-and-wait stops the API accepted (`stopped`, `already_stopping`) that have an
/// escalation deadline and were not escalated yet: the one definition behind "due now" and
/// "next deadline".
pub(crate) const OPEN_ESCALATIONS: &str = "FROM stops s JOIN stop_outcomes o ON o.stop_id = s.id \
     WHERE s.escalate_at IS NOT NULL AND s.dry_run = FALSE \
       AND o.outcome IN ('stopped', 'already_stopping') \
       AND NOT EXISTS (SELECT 1 FROM stops e WHERE e.escalation_of = s.id)";

/// The columns of [`Pending`] (from `stops s` and `stop_outcomes o`).
const PENDING_COLUMNS: &str =
    "s.id, s.pipeline, s.execution_id, s.dry_run, s.reason, s.account, s.region";

/// The columns of [`EscalationDue`] (from `stops s`).
const ESCALATION_COLUMNS: &str = "s.id AS stop_id, s.pipeline, s.execution_id, s.rule, \
     s.rule_kind, s.reason, s.account, s.region";

/// A stop's outcome as `stopd report` names it (a [`ReportOutcome`](crate::ReportOutcome)):
/// its recorded outcome, else `dry_run` for a dry-run decision, else `pending`.
macro_rules! report_outcome {
    () => {
        "COALESCE(o.outcome, CASE WHEN s.dry_run = TRUE THEN 'dry_run' ELSE 'pending' END)"
    };
}
pub(crate) const REPORT_OUTCOME: &str = report_outcome!();

/// A decided stop, written before the API call.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The sweep, if any (`stopd stop` has none).
    pub sweep_id: Option<i64>,
    /// Pipeline.
    pub pipeline: &'a str,
    /// Execution id.
    pub execution_id: &'a str,
    /// Winning rule (`manual` for `stopd stop`).
    pub rule: &'a str,
    /// What kind of rule.
    pub rule_kind: RuleKind,
    /// Finish or abandon.
    pub mode: Mode,
    /// Rendered reason.
    pub reason: &'a str,
    /// Why, in a sentence.
    pub explanation: &'a str,
    /// Decided in dry-run mode.
    pub dry_run: bool,
    /// When a `finish` stop is due for escalation to abandon.
    pub escalate_at: Option<DateTime<Utc>>,
    /// The stop this one escalates.
    pub escalation_of: Option<i64>,
    /// Account name (`default` for the ambient credentials).
    pub account: &'a str,
    /// Region.
    pub region: &'a str,
}

/// How a stop ended, written after the call.
#[derive(Debug, Clone)]
pub struct OutcomeRow {
    /// When.
    pub at: DateTime<Utc>,
    /// The outcome.
    pub outcome: Outcome,
    /// Requests sent.
    pub attempts: u32,
    /// Throttling answers.
    pub throttled: u32,
    /// Time spent.
    pub elapsed: Duration,
    /// Last error text.
    pub error: Option<String>,
    /// Resolved at start-up rather than by the call itself.
    pub reconciled: bool,
}

/// A stop recorded but never completed (the process died between the two writes).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    /// Row id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// Decided in dry-run mode (no call was to be made).
    pub dry_run: bool,
    /// The reason recorded (the reason sent, for stops recorded since reasons are cut first).
    pub reason: String,
    /// Account name (`None`: recorded before accounts were; the ambient one).
    pub account: Option<String>,
    /// Region (`None`: recorded before regions were).
    pub region: Option<String>,
}

/// A stop-and-wait due for escalation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EscalationDue {
    /// The original stop.
    pub stop_id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// Rule.
    pub rule: String,
    /// Rule kind.
    pub rule_kind: RuleKind,
    /// Reason given the first time.
    pub reason: String,
    /// Account name (`None`: recorded before accounts were; the ambient one).
    pub account: Option<String>,
    /// Region (`None`: recorded before regions were).
    pub region: Option<String>,
}

/// The columns of [`AuditRecord`] (from `stops s` and `stop_outcomes o`).
const AUDIT_COLUMNS: &str = concat!(
    "s.id, s.at, s.pipeline, s.execution_id, s.rule, s.rule_kind, s.mode, s.reason, ",
    report_outcome!(),
    " AS outcome, COALESCE(o.attempts, 0) AS attempts, o.error, o.at AS completed_at, \
     COALESCE(o.throttled, 0) AS throttled, COALESCE(o.reconciled, FALSE) AS reconciled, \
     s.escalation_of, s.sweep_id, s.explanation, s.account, s.region"
);

/// One audit record, as `stopd report` prints it. Its names are the report's (JSON, CSV):
/// text, the outcome being a [`ReportOutcome`](crate::ReportOutcome) name.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    /// Row id.
    pub id: i64,
    /// When the stop was decided.
    pub at: String,
    /// Pipeline.
    pub pipeline: String,
    /// Execution id.
    pub execution_id: String,
    /// Winning rule.
    pub rule: String,
    /// freeze | timeout | manual.
    pub rule_kind: String,
    /// finish | abandon.
    pub mode: String,
    /// Reason sent.
    pub reason: String,
    /// Outcome (`pending` if the process died before it was known).
    pub outcome: String,
    /// Requests sent.
    pub attempts: i64,
    /// Last error.
    pub error: Option<String>,
    /// When the outcome was known.
    pub completed_at: Option<String>,
    /// Throttling answers.
    pub throttled: i64,
    /// Whether the outcome was resolved at start-up.
    pub reconciled: bool,
    /// The stop this one escalates.
    pub escalation_of: Option<i64>,
    /// The sweep that decided it.
    pub sweep_id: Option<i64>,
    /// Why, in a sentence.
    pub explanation: String,
    /// Account name (`default`: the ambient credentials; absent on rows recorded before
    /// accounts were).
    pub account: Option<String>,
    /// Region (absent on rows recorded before regions were).
    pub region: Option<String>,
}

/// Filters of `stopd report`.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Pipeline glob (`*`, `?`, `[...]`).
    pub pipeline: Option<String>,
    /// Rule name.
    pub rule: Option<String>,
    /// A [`ReportOutcome`](crate::ReportOutcome) name.
    pub outcome: Option<String>,
    /// Account name glob (rows recorded before accounts were count as `default`).
    pub account: Option<String>,
    /// Region glob.
    pub region: Option<String>,
}

impl Store {
    /// Records a decided stop, durably (committed), before the call. Returns its id.
    pub async fn record_intent(&self, i: &Intent<'_>) -> Result<i64> {
        // The sweep that decided it is on record first.
        if let Some(sweep) = i.sweep_id {
            self.write_held(sweep).await?;
        }
        let row = IntentRow {
            at: ts(i.at),
            sweep_id: i.sweep_id,
            pipeline: i.pipeline.to_owned(),
            execution_id: i.execution_id.to_owned(),
            rule: i.rule.to_owned(),
            rule_kind: i.rule_kind,
            mode: i.mode,
            reason: i.reason.to_owned(),
            explanation: i.explanation.to_owned(),
            dry_run: i.dry_run,
            escalate_at: i.escalate_at.map(ts),
            escalation_of: i.escalation_of,
            account: i.account.to_owned(),
            region: i.region.to_owned(),
        };
        self.write(|tx| Write::Intent(Box::new(row), tx))
            .await
            .context("cannot record the stop before making it")
    }

    /// Records how a stop ended (committed when this returns). An outcome that cannot be
    /// written is kept, and written again by [`Store::record_unrecorded`].
    pub async fn record_outcome(&self, stop_id: i64, o: &OutcomeRow) -> Result<()> {
        let row = o.clone();
        let written = self
            .write(|tx| Write::Outcome(stop_id, row, tx))
            .await
            .context("cannot record a stop's outcome");
        if let Err(e) = &written
            && !refused_alone(e)
        {
            self.unrecorded_outcomes().push((stop_id, o.clone()));
        }
        written
    }

    /// Writes the outcomes [`Store::record_outcome`] could not, oldest first; returns how many
    /// were written. Stops on the first that still fails (kept, with those after it).
    pub async fn record_unrecorded(&self) -> Result<usize> {
        let waiting: Vec<(i64, OutcomeRow)> = std::mem::take(&mut *self.unrecorded_outcomes());
        let mut written = 0;
        let mut left = waiting.into_iter();
        while let Some((stop_id, o)) = left.next() {
            let row = o.clone();
            let r = self
                .write(|tx| Write::Outcome(stop_id, row, tx))
                .await
                .context("cannot record a stop's outcome");
            if let Err(e) = r {
                if refused_alone(&e) {
                    // This row itself is refused (its outcome is already there): drop it, or it
                    // would hold back every outcome queued after it.
                    tracing::warn!(stop_id, error = %format!("{e:#}"), "an outcome kept for rewriting is refused by the log; dropped");
                    continue;
                }
                let mut keep = vec![(stop_id, o)];
                keep.extend(left);
                let mut u = self.unrecorded_outcomes();
                keep.append(&mut u);
                *u = keep;
                return Err(e);
            }
            written += 1;
        }
        Ok(written)
    }

    /// Outcomes waiting to be written again (tests).
    #[cfg(test)]
    pub(crate) fn unrecorded_count(&self) -> usize {
        self.unrecorded_outcomes().len()
    }

    fn unrecorded_outcomes(&self) -> std::sync::MutexGuard<'_, Vec<(i64, OutcomeRow)>> {
        self.unrecorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops recorded without an outcome.
    pub async fn pending(&self) -> Result<Vec<Pending>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(&format!(
            "SELECT {PENDING_COLUMNS} FROM stops s \
             LEFT JOIN stop_outcomes o ON o.stop_id = s.id WHERE o.stop_id IS NULL ORDER BY s.id"
        ))
        .fetch_all(pool)
        .await)?)
    }

    /// Stop-and-wait stops accepted by the API whose escalation time has come and that were
    /// not escalated yet.
    pub async fn escalations_due(&self, now: DateTime<Utc>) -> Result<Vec<EscalationDue>> {
        let sql = format!(
            "SELECT {ESCALATION_COLUMNS} {OPEN_ESCALATIONS} AND s.escalate_at <= $1 \
             ORDER BY s.escalate_at"
        );
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(ts(now))
            .fetch_all(pool)
            .await)?)
    }

    /// The earliest escalation still to come after `now`, for the scheduler.
    pub async fn next_escalation(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let sql = format!("SELECT MIN(s.escalate_at) {OPEN_ESCALATIONS} AND s.escalate_at > $1");
        let at: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(&sql)
            .bind(ts(now))
            .fetch_one(pool)
            .await)?;
        at.map(|s| parse_ts(&s)).transpose()
    }

    /// Whether a dry-run stop of this execution by this rule is already on record (dry runs
    /// are recorded once per execution and rule, not once per sweep).
    pub async fn dry_run_recorded(&self, execution_id: &str, rule: &str) -> Result<bool> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM stops WHERE execution_id = $1 AND rule = $2 AND dry_run = TRUE)",
        )
        .bind(execution_id)
        .bind(rule)
        .fetch_one(pool)
        .await
        })?)
    }

    /// Audit records matching `f`, oldest first.
    pub async fn report(&self, f: &ReportFilter) -> Result<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} \
             FROM stops s LEFT JOIN stop_outcomes o ON o.stop_id = s.id \
             WHERE ($1 IS NULL OR s.at >= $1) AND ($2 IS NULL OR s.at < $2) \
               AND ($3 IS NULL OR glob($3, s.pipeline)) AND ($4 IS NULL OR s.rule = $4) \
               AND ($5 IS NULL OR {REPORT_OUTCOME} = $5) \
               AND ($6 IS NULL OR glob($6, {account})) \
               AND ($7 IS NULL OR glob($7, COALESCE(s.region, ''))) \
             ORDER BY s.at, s.id",
            account = Place::account_sql("s.account"),
        );
        on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(f.since.map(ts))
            .bind(f.until.map(ts))
            .bind(&f.pipeline)
            .bind(&f.rule)
            .bind(&f.outcome)
            .bind(&f.account)
            .bind(&f.region)
            .fetch_all(pool)
            .await)
        .context("cannot read the audit log")
    }

    /// Every rule name the audit log knows: of stops, gates, rule-limited exemptions,
    /// unwatched windows, and the ad-hoc freezes (`adhoc-ID`). A rule since renamed or removed
    /// from the policy is still one `report --rule` can ask for.
    pub async fn rule_names(&self) -> Result<Vec<String>> {
        on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT rule FROM stops UNION SELECT rule FROM gates \
             UNION SELECT rule FROM exemptions WHERE rule IS NOT NULL \
             UNION SELECT rule FROM unwatched_windows UNION SELECT 'adhoc-' || id FROM freezes",
        )
        .fetch_all(pool)
        .await)
        .context("cannot read the rule names of the audit log")
    }
}
