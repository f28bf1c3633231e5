//! The notification outbox: audit tables whose rows are events, read per `[[notify]]` target
//! from the instant it was first seen, minus what `notify_delivered` says it received.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;

use crate::vocabulary::sql_in;
use crate::{GateAction, GateOutcome, Outcome, Place, Store, on_pool, parse_ts, ts, write_tx};

/// Rows read from one outbox at a time.
pub const BATCH: i64 = 200;

/// An outbox: an audit table whose rows are events (`notify_delivered.source`), and the column
/// that identifies a row there (`notify_delivered.source_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    StopOutcomes,
    GateOutcomes,
    Exemptions,
    ExemptionRevocations,
    SweepResults,
    UnwatchedWindows,
    /// `leader_acquired` lifecycle events (PostgreSQL, `[ha]`): `leader_changed`.
    LeaderChanges,
    /// `events_failed` lifecycle events (`[events]`): `events_failed`.
    EventsFailures,
}

impl Source {
    /// Every outbox.
    pub const ALL: [Source; 8] = [
        Source::StopOutcomes,
        Source::GateOutcomes,
        Source::Exemptions,
        Source::ExemptionRevocations,
        Source::SweepResults,
        Source::UnwatchedWindows,
        Source::LeaderChanges,
        Source::EventsFailures,
    ];

    /// The table (`notify_delivered.source`). Two outboxes may share one (`lifecycle_events`,
    /// filtered by event): a row is one event whichever outbox reads it.
    pub fn table(self) -> &'static str {
        match self {
            Source::StopOutcomes => "stop_outcomes",
            Source::GateOutcomes => "gate_outcomes",
            Source::Exemptions => "exemptions",
            Source::ExemptionRevocations => "exemption_revocations",
            Source::SweepResults => "sweep_results",
            Source::UnwatchedWindows => "unwatched_windows",
            Source::LeaderChanges | Source::EventsFailures => "lifecycle_events",
        }
    }

    /// Its primary key (`notify_delivered.source_id`).
    fn key(self) -> &'static str {
        match self {
            Source::StopOutcomes => "stop_id",
            Source::GateOutcomes => "gate_id",
            Source::ExemptionRevocations => "exemption_id",
            Source::SweepResults => "sweep_id",
            Source::Exemptions
            | Source::UnwatchedWindows
            | Source::LeaderChanges
            | Source::EventsFailures => "id",
        }
    }

    /// The column of a row's time (the event's `at`; the order of delivery).
    fn at(self) -> &'static str {
        match self {
            Source::Exemptions => "created_at",
            Source::SweepResults => "finished_at",
            Source::UnwatchedWindows => "found_at",
            Source::StopOutcomes
            | Source::GateOutcomes
            | Source::ExemptionRevocations
            | Source::LeaderChanges
            | Source::EventsFailures => "at",
        }
    }

    /// The text of [`Source::pending`]'s query.
    ///
    /// One shape for every outbox, built here and nowhere else: the outbox row is always
    /// `src`, and the delivery log `nd`, and every column of the check against the delivery
    /// log names its table. (A bare `id` in that check once meant `notify_delivered.id`, the
    /// delivery's own row id: an exemption never looked delivered and went out hundreds of
    /// times a second, issue 25.) The row's key is `source_id` and its time `at`.
    fn query(self, columns: &str, joins: &str, filter: &str) -> String {
        let (table, key, at) = (self.table(), self.key(), self.at());
        format!(
            "SELECT src.{key} AS source_id, src.{at} AS at, {columns} FROM {table} AS src {joins} \
             WHERE src.{at} >= $2 AND ({filter}) \
               AND NOT EXISTS (SELECT 1 FROM notify_delivered AS nd \
                               WHERE nd.target = $1 AND nd.source = '{table}' AND nd.source_id = src.{key}) \
             ORDER BY src.{at}, src.{key} LIMIT {BATCH}"
        )
    }

    /// Up to [`BATCH`] rows of this outbox dated `since` or later that `target` has not
    /// received, oldest first, read by name into `T`. `columns` are qualified (`src.` for the
    /// outbox row, the aliases of `joins` for the others) and named as `T`'s fields; `filter`
    /// is a condition on them.
    async fn pending<T>(
        self,
        store: &Store,
        target: &str,
        since: DateTime<Utc>,
        columns: &str,
        joins: &str,
        filter: &str,
    ) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        let sql = self.query(columns, joins, filter);
        on_pool!(store, |pool| sqlx::query_as(&sql)
            .bind(target)
            .bind(ts(since))
            .fetch_all(pool)
            .await)
        .with_context(|| format!("cannot read {} to notify", self.table()))
    }
}

/// A stop's outcome to notify.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StopOutcomeEvent {
    pub source_id: i64,
    pub at: String,
    pub pipeline: String,
    pub execution_id: String,
    pub rule: String,
    pub outcome: Outcome,
    pub reason: String,
    pub error: Option<String>,
    pub account: String,
    pub region: Option<String>,
}

/// A gate action's outcome to notify.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GateOutcomeEvent {
    pub source_id: i64,
    pub at: String,
    pub pipeline: String,
    pub stage: String,
    pub rule: String,
    pub action: GateAction,
    pub outcome: GateOutcome,
    pub error: Option<String>,
    pub account: String,
    pub region: Option<String>,
}

/// An exemption added, to notify.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExemptionEvent {
    pub source_id: i64,
    pub at: String,
    pub pipeline_glob: String,
    pub until: String,
    pub reason: String,
    pub created_by: String,
    pub rule: Option<String>,
}

/// An exemption revoked, to notify (`source_id` is the exemption's id).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RevocationEvent {
    pub source_id: i64,
    pub at: String,
    pub pipeline_glob: String,
    pub revoked_by: String,
    pub rule: Option<String>,
}

/// The first failed sweep of an outage, to notify.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SweepFailureEvent {
    pub source_id: i64,
    pub at: String,
    pub error: String,
}

/// A freeze window that began while no daemon ran, to notify (`at` is when it was found).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UnwatchedEvent {
    pub source_id: i64,
    pub at: String,
    pub rule: String,
    pub window_start: String,
    pub window_end: String,
    pub gap_from: String,
    pub gap_to: String,
}

/// A node that took the lead (a `leader_acquired` lifecycle event), to notify.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaderChangeEvent {
    pub source_id: i64,
    pub at: String,
    /// The node that leads now.
    pub node: Option<String>,
    /// Its epoch.
    pub epoch: Option<i64>,
}

/// The event queue found unreadable (an `events_failed` lifecycle event), to notify.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventsFailureEvent {
    pub source_id: i64,
    pub at: String,
    /// `QUEUE cannot be read: ERROR`.
    pub detail: Option<String>,
}

/// One delivery the receiver acknowledged, to record.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// When the receiver accepted it (RFC 3339 UTC).
    pub at: String,
    /// The outbox of its record.
    pub source: Source,
    /// The record's id there.
    pub source_id: i64,
    /// Attempts it took.
    pub attempts: u32,
}

/// Outcomes that mean the stop went through (or needed none), as an SQL list.
fn done() -> String {
    sql_in(
        Outcome::ALL
            .iter()
            .filter(|o| o.stopped_it())
            .map(|o| o.as_str()),
    )
}

impl Store {
    /// Registers `target` (first seen at `now`: from then on) and returns the instant it
    /// starts from.
    pub async fn notify_since(&self, target: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO notify_targets (target, since) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        )
        .bind(target)
        .bind(ts(now))
        .execute(pool)
        .await
        .map(drop))
        .context("cannot register a [[notify]] target")?;
        let at: String = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT since FROM notify_targets WHERE target = $1"
        )
        .bind(target)
        .fetch_one(pool)
        .await)
        .context("cannot read a [[notify]] target")?;
        parse_ts(&at)
    }

    /// Stop outcomes (dry runs never) that went through (`done`) or did not (`failed`).
    /// Only the kinds wanted are read: rows of the other kind, read and skipped, filled the
    /// batch and stalled a target that wants only `stopped` for good.
    pub async fn pending_stop_outcomes(
        &self,
        target: &str,
        since: DateTime<Utc>,
        done: bool,
        failed: bool,
    ) -> Result<Vec<StopOutcomeEvent>> {
        let (dry_run, stopped) = (Outcome::DryRun, self::done());
        let filter = match (done, failed) {
            (true, true) => format!("src.outcome != '{dry_run}'"),
            (true, false) => format!("src.outcome IN {stopped}"),
            (false, true) => {
                format!("src.outcome != '{dry_run}' AND src.outcome NOT IN {stopped}")
            }
            (false, false) => return Ok(Vec::new()),
        };
        Source::StopOutcomes
            .pending(
                self,
                target,
                since,
                &format!(
                    "s.pipeline AS pipeline, s.execution_id AS execution_id, s.rule AS rule, \
                     src.outcome AS outcome, s.reason AS reason, src.error AS error, \
                     {} AS account, s.region AS region",
                    Place::account_sql("s.account")
                ),
                "JOIN stops s ON s.id = src.stop_id",
                &filter,
            )
            .await
    }

    /// Gate outcomes (dry runs never).
    pub async fn pending_gate_outcomes(
        &self,
        target: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<GateOutcomeEvent>> {
        Source::GateOutcomes
            .pending(
                self,
                target,
                since,
                &format!(
                    "g.pipeline AS pipeline, g.stage AS stage, g.rule AS rule, \
                     g.action AS action, src.outcome AS outcome, src.error AS error, \
                     {} AS account, g.region AS region",
                    Place::account_sql("g.account")
                ),
                "JOIN gates g ON g.id = src.gate_id",
                &format!("src.outcome != '{}'", GateOutcome::DryRun),
            )
            .await
    }

    /// Exemptions added.
    pub async fn pending_exemptions(
        &self,
        target: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ExemptionEvent>> {
        Source::Exemptions
            .pending(
                self,
                target,
                since,
                "src.pipeline_glob AS pipeline_glob, src.until AS until, src.reason AS reason, \
                 src.created_by AS created_by, src.rule AS rule",
                "",
                "TRUE",
            )
            .await
    }

    /// Exemptions revoked.
    pub async fn pending_revocations(
        &self,
        target: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<RevocationEvent>> {
        Source::ExemptionRevocations
            .pending(
                self,
                target,
                since,
                "e.pipeline_glob AS pipeline_glob, src.revoked_by AS revoked_by, e.rule AS rule",
                "JOIN exemptions e ON e.id = src.exemption_id",
                "TRUE",
            )
            .await
    }

    /// Failed sweeps, only the first after a good sweep (or the first sweep): an outage is one
    /// message, not one per retry. Good sweeps may be quiet ones folded into a run
    /// (`sweep_runs`): a run that ended after the failure before this one is a recovery too.
    pub async fn pending_sweep_failures(
        &self,
        target: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<SweepFailureEvent>> {
        Source::SweepResults
            .pending(
                self,
                target,
                since,
                "src.error AS error",
                "",
                "src.error IS NOT NULL \
                 AND (COALESCE((SELECT p.error IS NULL FROM sweep_results p WHERE p.sweep_id < src.sweep_id \
                                ORDER BY p.sweep_id DESC LIMIT 1), 1) \
                      OR EXISTS (SELECT 1 FROM sweep_runs r WHERE r.last_sweep_id < src.sweep_id \
                                 AND r.last_sweep_id > (SELECT COALESCE(MAX(p.sweep_id), 0) \
                                     FROM sweep_results p WHERE p.sweep_id < src.sweep_id)))",
            )
            .await
    }

    /// Freeze windows found unwatched.
    pub async fn pending_unwatched(
        &self,
        target: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<UnwatchedEvent>> {
        Source::UnwatchedWindows
            .pending(
                self,
                target,
                since,
                "src.rule AS rule, src.window_start AS window_start, \
                 src.window_end AS window_end, src.gap_from AS gap_from, src.gap_to AS gap_to",
                "",
                "TRUE",
            )
            .await
    }

    /// Nodes that took the lead (`leader_changed`).
    pub async fn pending_leader_changes(
        &self,
        target: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<LeaderChangeEvent>> {
        Source::LeaderChanges
            .pending(
                self,
                target,
                since,
                "src.node AS node, src.epoch AS epoch",
                "",
                "src.event = 'leader_acquired'",
            )
            .await
    }

    /// The event queue found unreadable (`events_failed`): one per outage, since the consumer
    /// records the change, not each failed poll.
    pub async fn pending_events_failures(
        &self,
        target: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<EventsFailureEvent>> {
        Source::EventsFailures
            .pending(
                self,
                target,
                since,
                "src.detail AS detail",
                "",
                &format!("src.event = '{}'", crate::LifecycleEvent::EventsFailed),
            )
            .await
    }

    /// Records deliveries `target` acknowledged, in one transaction.
    pub async fn mark_delivered(&self, target: &str, done: &[Delivered]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        write_tx!(self, |tx| {
            for d in done {
                sqlx::query(
                    "INSERT INTO notify_delivered (at, target, source, source_id, attempts) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&d.at)
                .bind(target)
                .bind(d.source.table())
                .bind(d.source_id)
                .bind(i64::from(d.attempts))
                .execute(&mut *tx)
                .await
                .context("cannot record a notification as delivered")?;
            }
            tx.commit()
                .await
                .context("cannot record notifications as delivered")
        })
    }

    /// Deliveries recorded, to every target.
    pub async fn delivered_count(&self) -> Result<i64> {
        on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM notify_delivered"
        )
        .fetch_one(pool)
        .await)
        .context("cannot read the delivery log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each outbox's key is its table's primary key, and its query is valid on the schema.
    #[tokio::test]
    async fn every_outbox_is_read_by_its_tables_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        for s in Source::ALL {
            let pk: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT name FROM pragma_table_info('{}') WHERE pk > 0",
                s.table()
            ))
            .fetch_all(store.pool().unwrap())
            .await
            .unwrap();
            assert_eq!(pk, [s.key()], "{s:?}");
            let q = s.query("1 AS one", "", "TRUE");
            sqlx::query(&q)
                .bind("chat")
                .bind("2026-01-01T00:00:00.000Z")
                .fetch_all(store.pool().unwrap())
                .await
                .unwrap_or_else(|e| panic!("{s:?}: {e}\n{q}"));
        }
    }
}
