//! Sweeps: each one's start (`sweeps`) and end (`sweep_results`), and `report --sweeps`,
//! which reads them beside the runs of quiet sweeps (`sweep_runs`, see `runs`).

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::chain::Chained;
use crate::{Store, SweepEnd, SweepTrigger, SweepVerdict, on_pool, runs, ts, write_tx};

/// What a sweep saw and did.
#[derive(Debug, Clone, Default)]
pub struct SweepResult {
    /// Pipelines listed.
    pub pipelines_seen: usize,
    /// Pipelines any rule may apply to.
    pub pipelines_in_scope: usize,
    /// Active executions found.
    pub executions_seen: usize,
    /// Stops decided (including dry-run and escalations).
    pub stops_decided: usize,
    /// API requests sent.
    pub api_calls: u64,
    /// Throttling answers.
    pub throttled: u64,
    /// Pipelines that could not be read, plus a failed listing.
    pub errors: usize,
    /// The first error, in words.
    pub error: Option<String>,
    /// A clean shutdown cut the sweep short (and nothing else went wrong): recorded as
    /// `result = 'interrupted'`, neither a good sweep nor a failed one.
    pub interrupted: bool,
}

/// A sweep's result from its row: finished, its `result` column, `errors`, and whether it has
/// an `error`.
pub fn sweep_result(
    finished: bool,
    column: Option<&str>,
    errors: i64,
    error: bool,
) -> Option<&'static str> {
    let end = column.and_then(|c| c.parse::<SweepEnd>().ok());
    SweepVerdict::of(finished, end, errors, error).map(SweepVerdict::as_str)
}

impl SweepVerdict {
    /// A sweep's verdict from its row: finished, its `result` column, `errors`, and whether
    /// it has an `error` (`None` while it is unfinished).
    pub fn of(finished: bool, end: Option<SweepEnd>, errors: i64, error: bool) -> Option<Self> {
        match (finished, end) {
            (false, _) => None,
            (true, Some(SweepEnd::Interrupted)) => Some(SweepVerdict::Interrupted),
            (true, None) if errors == 0 && !error => Some(SweepVerdict::Ok),
            (true, None) => Some(SweepVerdict::Failed),
        }
    }
}

/// The columns of a [`SweepRow`]: a sweep and its result (`sweeps w`, `sweep_results r`), or
/// a run of quiet sweeps (`sweep_runs`), under the same names.
const SWEEP_COLUMNS: &str = "id, started_at, finished_at, trigger, dry_run, duration_ms, \
     pipelines_seen, executions_seen, stops_decided, api_calls, errors, error, throttled, sweeps, \
     result";

/// One row of `report --sweeps`' query, by name.
#[derive(sqlx::FromRow)]
struct SweepRow {
    id: i64,
    started_at: String,
    finished_at: Option<String>,
    trigger: String,
    dry_run: bool,
    duration_ms: Option<i64>,
    pipelines_seen: Option<i64>,
    executions_seen: Option<i64>,
    stops_decided: Option<i64>,
    api_calls: Option<i64>,
    errors: Option<i64>,
    error: Option<String>,
    throttled: Option<i64>,
    sweeps: i64,
    result: Option<SweepEnd>,
}

impl From<SweepRow> for SweepRecord {
    fn from(r: SweepRow) -> SweepRecord {
        let verdict = SweepVerdict::of(
            r.finished_at.is_some(),
            r.result,
            r.errors.unwrap_or(0),
            r.error.is_some(),
        );
        SweepRecord {
            id: r.id,
            sweeps: r.sweeps,
            started_at: r.started_at,
            finished_at: r.finished_at,
            trigger: r.trigger,
            dry_run: r.dry_run,
            duration_ms: r.duration_ms,
            pipelines_seen: r.pipelines_seen,
            executions_seen: r.executions_seen,
            stops_decided: r.stops_decided,
            api_calls: r.api_calls,
            throttled: r.throttled,
            errors: r.errors,
            error: r.error,
            result: verdict.map(SweepVerdict::as_str),
        }
    }
}

/// One sweep, for `stopd report --sweeps`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRecord {
    /// Row id (for a run of quiet sweeps: its first sweep's id).
    pub id: i64,
    /// How many sweeps the record stands for: 1, or a run's count (quiet scheduled sweeps are
    /// kept as runs; then `started_at` is the first one's start, `finished_at` the last one's
    /// end, `duration_ms` the longest, and the counts the most any saw or, for API calls and
    /// throttles, their sum).
    pub sweeps: i64,
    /// Start.
    pub started_at: String,
    /// End (null: the process died during it).
    pub finished_at: Option<String>,
    /// What woke the scheduler.
    pub trigger: String,
    /// Dry run.
    pub dry_run: bool,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Pipelines listed.
    pub pipelines_seen: Option<i64>,
    /// Active executions found.
    pub executions_seen: Option<i64>,
    /// Stops decided.
    pub stops_decided: Option<i64>,
    /// API calls.
    pub api_calls: Option<i64>,
    /// Throttling answers met (discovery and stops).
    pub throttled: Option<i64>,
    /// Errors.
    pub errors: Option<i64>,
    /// First error.
    pub error: Option<String>,
    /// `ok`, `failed`, or `interrupted` (a clean shutdown cut it short: neither good nor
    /// failed); null while unfinished (or when the process died during it).
    pub result: Option<&'static str>,
}

impl Store {
    /// Records the start of a sweep; returns its id.
    pub async fn begin_sweep(
        &self,
        at: DateTime<Utc>,
        trigger: SweepTrigger,
        dry_run: bool,
    ) -> Result<i64> {
        // A quiet scheduled sweep may never need its row (see `runs`).
        let least = match self.hold_sweep(at, trigger, dry_run).await? {
            runs::Begin::Held(id) => return Ok(id),
            runs::Begin::Whole(least) => least,
        };
        // Never an id a run of quiet sweeps holds (one sweep, one id: `report --sweeps` showed
        // a sweep and a run under one id when SQLite picked MAX(id) + 1 of `sweeps` alone).
        // SQLite's scalar MAX is PostgreSQL's GREATEST.
        let sql = format!(
            "INSERT INTO sweeps (id, started_at, trigger, dry_run, pid) VALUES ({}($1, \
               (SELECT COALESCE(MAX(id), 0) + 1 FROM sweeps), \
               (SELECT COALESCE(MAX(last_sweep_id), 0) + 1 FROM sweep_runs), \
               (SELECT COALESCE(MAX(last_sweep_id), 0) + 1 FROM sweep_run_open)), $2, $3, $4, $5) \
             RETURNING id",
            self.greatest()
        );
        let id: i64 = write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(&sql)
                .bind(least)
                .bind(ts(at))
                .bind(trigger)
                .bind(dry_run)
                .bind(i64::from(std::process::id()))
                .fetch_one(&mut *tx)
                .await
                .context("cannot record the sweep start")?;
            tx.link("sweeps", id).await?;
            tx.commit().await.context("cannot record the sweep start")?;
            id
        });
        self.saw_sweep_id(id).await;
        Ok(id)
    }

    /// Records the end of a sweep.
    pub async fn finish_sweep(
        &self,
        id: i64,
        at: DateTime<Utc>,
        duration: Duration,
        r: &SweepResult,
    ) -> Result<()> {
        if self.fold_sweep(id, at, duration, r).await? {
            return Ok(());
        }
        write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO sweep_results (sweep_id, finished_at, duration_ms, pipelines_seen, \
                 pipelines_in_scope, executions_seen, stops_decided, api_calls, throttled, errors, \
                 error, result) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(id)
            .bind(ts(at))
            .bind(duration.as_millis() as i64)
            .bind(r.pipelines_seen as i64)
            .bind(r.pipelines_in_scope as i64)
            .bind(r.executions_seen as i64)
            .bind(r.stops_decided as i64)
            .bind(r.api_calls as i64)
            .bind(r.throttled as i64)
            .bind(r.errors as i64)
            .bind(&r.error)
            .bind(r.interrupted.then_some(SweepEnd::Interrupted))
            .execute(&mut *tx)
            .await
            .context("cannot record the sweep result")?;
            tx.link("sweep_results", id).await?;
            tx.commit()
                .await
                .context("cannot record the sweep result")?;
        });
        Ok(())
    }

    /// Sweeps started in `[since, until)`, oldest first.
    pub async fn sweeps(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<SweepRecord>> {
        let sql = format!(
            "SELECT {SWEEP_COLUMNS} FROM ( \
               SELECT w.id, w.started_at, r.finished_at, w.trigger, w.dry_run, r.duration_ms, \
                    r.pipelines_seen, r.executions_seen, r.stops_decided, r.api_calls, r.errors, \
                    r.error, r.throttled, 1 AS sweeps, r.result \
               FROM sweeps w LEFT JOIN sweep_results r ON r.sweep_id = w.id \
               WHERE ($1 IS NULL OR w.started_at >= $1) AND ($2 IS NULL OR w.started_at < $2) \
             UNION ALL \
               SELECT first_sweep_id, first_started_at, last_finished_at, '{schedule}', dry_run, \
                    max_duration_ms, pipelines_seen, executions_seen, 0, api_calls, 0, NULL, \
                    throttled, sweeps, NULL \
               FROM sweep_runs \
               WHERE ($1 IS NULL OR first_started_at >= $1) AND ($2 IS NULL OR first_started_at < $2)) \
               AS q \
             ORDER BY started_at, id",
            schedule = SweepTrigger::Schedule,
        );
        let rows: Vec<SweepRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(since.map(ts))
            .bind(until.map(ts))
            .fetch_all(pool)
            .await)
        .context("cannot read the sweep log")?;
        Ok(rows.into_iter().map(SweepRecord::from).collect())
    }
}
