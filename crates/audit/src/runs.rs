//! Quiet sweeps compacted into runs (`sweep_runs`; see its migration). Off unless the daemon
//! turns it on ([`Store::compact_quiet_sweeps`]) with the gap that still counts as watched.
//!
//! A scheduled sweep's row is held back (its id reserved) until it is known to matter: a stop
//! it decides writes it at once (before the stop's intent); a sweep that ends with an error or
//! a decided stop is written whole, as before. A quiet one is folded into the open run, which
//! is written when the next sweep would begin more than the allowed gap after it, when it is
//! [`RUN_MAX`] old, before any sweep that is written whole, and at shutdown
//! ([`Store::flush_sweep_run`]).
//!
//! Until then the open run is kept in `sweep_run_open` (one row, replaced at each quiet sweep,
//! deleted with the write of the run), so that `status` and `report --coverage` see a daemon
//! sweeping on schedule as watching ([`Store::last_good_sweep`], [`Store::sweep_spans`]). A
//! daemon killed leaves that row; the next start writes it to `sweep_runs`
//! ([`Store::compact_quiet_sweeps`]), so a kill costs no proof of the quiet sweeps it made.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::chain::Chained;
use super::{Store, SweepResult, SweepTrigger, on_pool, ts, write_tx};

/// A run is written when it is this old (what a kill can cost of proven coverage).
pub const RUN_MAX: chrono::Duration = chrono::Duration::minutes(5);

/// The state of compaction, behind the store's mutex.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    /// Compaction is on: the longest gap between one sweep's end and the next one's start.
    pub(crate) gap: Option<chrono::Duration>,
    /// The last sweep id handed out or seen.
    pub(crate) last_id: i64,
    /// A scheduled sweep begun and not written yet.
    pub(crate) held: Option<Held>,
    /// Quiet sweeps folded and not written yet.
    pub(crate) open: Option<Run>,
}

/// How a sweep begins ([`Store::hold_sweep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// Its row is held back, under this id.
    Held(i64),
    /// Its row is written now, with an id no less than this one.
    Whole(i64),
}

/// A sweep whose row is held back.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) id: i64,
    pub(crate) at: DateTime<Utc>,
    pub(crate) trigger: SweepTrigger,
    pub(crate) dry_run: bool,
}

/// Quiet sweeps folded together.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    first_id: i64,
    last_id: i64,
    dry_run: bool,
    first_started: DateTime<Utc>,
    last_finished: DateTime<Utc>,
    sweeps: i64,
    max_gap_ms: i64,
    max_duration_ms: i64,
    pipelines_seen: i64,
    executions_seen: i64,
    api_calls: i64,
    throttled: i64,
}

fn quiet(r: &SweepResult) -> bool {
    r.stops_decided == 0 && r.errors == 0 && r.error.is_none() && !r.interrupted
}

/// The columns a run of quiet sweeps has in `sweep_runs` and `sweep_run_open`, in the order
/// [`bind_run`] binds them.
const RUN_COLUMNS: &str = "pid, first_sweep_id, last_sweep_id, dry_run, first_started_at, \
    last_finished_at, sweeps, max_gap_ms, max_duration_ms, pipelines_seen, executions_seen, \
    api_calls, throttled";

/// Binds a run's columns, [`RUN_COLUMNS`] in order, to a query of either backend.
macro_rules! bind_run {
    ($q:expr, $o:expr) => {{
        let o: &Run = $o;
        $q.bind(i64::from(std::process::id()))
            .bind(o.first_id)
            .bind(o.last_id)
            .bind(o.dry_run)
            .bind(ts(o.first_started))
            .bind(ts(o.last_finished))
            .bind(o.sweeps)
            .bind(o.max_gap_ms)
            .bind(o.max_duration_ms)
            .bind(o.pipelines_seen)
            .bind(o.executions_seen)
            .bind(o.api_calls)
            .bind(o.throttled)
    }};
}

/// How one account and region's part of a sweep went.
#[derive(Debug, Clone, Default)]
pub struct PlaceResult {
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
    /// Everything was read, decided and recorded without an error.
    pub ok: bool,
    /// Not ok only because a clean shutdown cut it short (`result="interrupted"`).
    pub interrupted: bool,
    /// The first error, in words.
    pub error: Option<String>,
}

impl Store {
    /// Turns compaction on: quiet scheduled sweeps are folded into runs as long as each begins
    /// within `gap` of the one before it finishing (the daemon passes twice its schedule's
    /// interval plus the margin: what coverage counts as watched).
    /// A run left open by another process (killed) is written to `sweep_runs` first.
    pub async fn compact_quiet_sweeps(&self, gap: Duration) -> Result<()> {
        self.close_orphan_run().await?;
        // Ids folded into runs were never rows of `sweeps`: they are taken too.
        let sql = format!(
            "SELECT {}((SELECT COALESCE(MAX(id), 0) FROM sweeps), \
                        (SELECT COALESCE(MAX(last_sweep_id), 0) FROM sweep_runs), \
                        (SELECT COALESCE(MAX(last_sweep_id), 0) FROM sweep_run_open))",
            self.greatest()
        );
        let last: i64 = on_pool!(self, |pool| sqlx::query_scalar(&sql).fetch_one(pool).await)?;
        let mut runs = self.runs.lock().await;
        runs.gap = Some(chrono::Duration::from_std(gap)?);
        runs.last_id = runs.last_id.max(last);
        Ok(())
    }

    /// Writes the open run of a process that is gone (it recorded no stop) to `sweep_runs`,
    /// chained, and deletes it from `sweep_run_open`. One daemon per database: a row of
    /// another pid is one that its process could not flush.
    async fn close_orphan_run(&self) -> Result<()> {
        // With no run of ours open, any row is another process's, even one of our pid (a
        // reused pid: a container's pid 1); with one open, only rows of other pids are.
        let ours_open = self.runs.lock().await.open.is_some();
        let sql = format!(
            "INSERT INTO sweep_runs ({RUN_COLUMNS}) SELECT {RUN_COLUMNS} \
             FROM sweep_run_open WHERE NOT $1 OR pid != $2 RETURNING id"
        );
        write_tx!(self, |tx| {
            let id: Option<i64> = sqlx::query_scalar(&sql)
                .bind(ours_open)
                .bind(i64::from(std::process::id()))
                .fetch_optional(&mut *tx)
                .await
                .context("cannot record the run of quiet sweeps a killed daemon left open")?;
            let Some(id) = id else {
                return Ok(());
            };
            tx.link("sweep_runs", id).await?;
            sqlx::query("DELETE FROM sweep_run_open")
                .execute(&mut *tx)
                .await?;
            tx.commit()
                .await
                .context("cannot record the run of quiet sweeps a killed daemon left open")?;
        });
        Ok(())
    }

    /// When the last good sweep ended, as the audit database knows it: the newest of a sweep
    /// written whole without an error, a run of quiet sweeps, and the run still open. The one
    /// reading of "the last good sweep" for `status` (and what `/healthz` keeps in memory).
    pub async fn last_good_sweep(&self) -> Result<Option<DateTime<Utc>>> {
        const SQL: &str = "SELECT MAX(t) FROM ( \
               SELECT MAX(finished_at) AS t FROM sweep_results \
               WHERE error IS NULL AND errors = 0 AND result IS NULL \
               UNION ALL SELECT MAX(last_finished_at) FROM sweep_runs \
               UNION ALL SELECT MAX(last_finished_at) FROM sweep_run_open) AS q";
        let at: Option<String> =
            on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await)
                .context("cannot read the sweep log")?;
        at.as_deref().map(super::parse_ts).transpose()
    }

    /// Writes the open run, if any (at shutdown).
    pub async fn flush_sweep_run(&self) -> Result<()> {
        let mut runs = self.runs.lock().await;
        self.write_run(&mut runs).await
    }

    /// `begin_sweep` under compaction: `Held(id)` when the sweep's row is held back, else the
    /// least id its row may take (past every id handed out, held or folded into a run).
    pub(crate) async fn hold_sweep(
        &self,
        at: DateTime<Utc>,
        trigger: SweepTrigger,
        dry_run: bool,
    ) -> Result<Begin> {
        let mut runs = self.runs.lock().await;
        if runs.gap.is_none() || trigger != SweepTrigger::Schedule {
            // Written whole: the open run goes first, so that rows stay in time order.
            self.write_run(&mut runs).await?;
            runs.last_id += 1;
            return Ok(Begin::Whole(runs.last_id));
        }
        runs.last_id += 1;
        let id = runs.last_id;
        runs.held = Some(Held {
            id,
            at,
            trigger,
            dry_run,
        });
        Ok(Begin::Held(id))
    }

    /// Notes a sweep id written whole (so held ids never collide with it).
    pub(crate) async fn saw_sweep_id(&self, id: i64) {
        let mut runs = self.runs.lock().await;
        runs.last_id = runs.last_id.max(id);
    }

    /// Writes the held sweep's row now, if `id` is held (a stop of it is about to be recorded,
    /// or it ended in a way that is kept whole). Returns whether it was held.
    pub(crate) async fn write_held(&self, id: i64) -> Result<bool> {
        let mut runs = self.runs.lock().await;
        let Some(h) = runs.held.clone().filter(|h| h.id == id) else {
            return Ok(false);
        };
        self.write_run(&mut runs).await?;
        write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO sweeps (id, started_at, trigger, dry_run, pid) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(h.id)
            .bind(ts(h.at))
            .bind(h.trigger)
            .bind(h.dry_run)
            .bind(i64::from(std::process::id()))
            .execute(&mut *tx)
            .await
            .context("cannot record the sweep start")?;
            tx.link("sweeps", h.id).await?;
            tx.commit().await.context("cannot record the sweep start")?;
        });
        runs.held = None;
        Ok(true)
    }

    /// `finish_sweep` under compaction: folds a quiet held sweep into the open run and returns
    /// true; otherwise writes its held row (if any) and returns false (the caller writes the
    /// result as before).
    pub(crate) async fn fold_sweep(
        &self,
        id: i64,
        at: DateTime<Utc>,
        duration: Duration,
        r: &SweepResult,
    ) -> Result<bool> {
        let held = {
            let runs = self.runs.lock().await;
            runs.held.clone().filter(|h| h.id == id)
        };
        let Some(h) = held else {
            return Ok(false);
        };
        if !quiet(r) {
            self.write_held(id).await?;
            return Ok(false);
        }
        let mut runs = self.runs.lock().await;
        runs.held = None;
        let gap = runs.gap.unwrap_or_default();
        let joins = runs.open.as_ref().is_some_and(|o| {
            o.dry_run == h.dry_run
                && h.at - o.last_finished <= gap
                && at - o.first_started <= RUN_MAX
        });
        if !joins {
            self.write_run(&mut runs).await?;
        }
        let ms = duration.as_millis() as i64;
        match &mut runs.open {
            Some(o) => {
                o.max_gap_ms = o
                    .max_gap_ms
                    .max((h.at - o.last_finished).num_milliseconds().max(0));
                o.last_finished = at;
                o.last_id = h.id;
                o.sweeps += 1;
                o.max_duration_ms = o.max_duration_ms.max(ms);
                o.pipelines_seen = o.pipelines_seen.max(r.pipelines_seen as i64);
                o.executions_seen = o.executions_seen.max(r.executions_seen as i64);
                o.api_calls += r.api_calls as i64;
                o.throttled += r.throttled as i64;
            }
            None => {
                runs.open = Some(Run {
                    first_id: h.id,
                    last_id: h.id,
                    dry_run: h.dry_run,
                    first_started: h.at,
                    last_finished: at,
                    sweeps: 1,
                    max_gap_ms: 0,
                    max_duration_ms: ms,
                    pipelines_seen: r.pipelines_seen as i64,
                    executions_seen: r.executions_seen as i64,
                    api_calls: r.api_calls as i64,
                    throttled: r.throttled as i64,
                });
            }
        }
        if let Some(o) = &runs.open {
            self.save_open(o).await?;
        }
        Ok(true)
    }

    /// Replaces the open run's row in `sweep_run_open`.
    async fn save_open(&self, o: &Run) -> Result<()> {
        // The one row, replaced (ON CONFLICT ... DO UPDATE: both backends).
        let updates: Vec<String> = RUN_COLUMNS
            .split(", ")
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO sweep_run_open (slot, {RUN_COLUMNS}) \
             VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (slot) DO UPDATE SET {}",
            updates.join(", ")
        );
        write_tx!(self, |tx| {
            bind_run!(sqlx::query(&sql), o)
                .execute(&mut *tx)
                .await
                .context("cannot record the open run of quiet sweeps")?;
            tx.commit()
                .await
                .context("cannot record the open run of quiet sweeps")?;
        });
        Ok(())
    }

    /// Writes the open run (chained) and closes it.
    async fn write_run(&self, runs: &mut Runs) -> Result<()> {
        let Some(o) = runs.open.take() else {
            return Ok(());
        };
        let sql = format!(
            "INSERT INTO sweep_runs ({RUN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id"
        );
        write_tx!(self, |tx| {
            let id: i64 = bind_run!(sqlx::query(&sql), &o)
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get("id"))
                .context("cannot record a run of quiet sweeps")?;
            tx.link("sweep_runs", id).await?;
            sqlx::query("DELETE FROM sweep_run_open")
                .execute(&mut *tx)
                .await
                .context("cannot record a run of quiet sweeps")?;
            tx.commit()
                .await
                .context("cannot record a run of quiet sweeps")?;
        });
        Ok(())
    }
}

/// How old a place's row may get before a sweep with the same result rewrites it.
const PLACE_REFRESH: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The columns of [`PlaceSweep`] (`place_sweeps`).
const PLACE_SWEEP_COLUMNS: &str = "account, region, at, ok, error, last_ok_at";

/// The last sweep of one account and region, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct PlaceSweep {
    /// `[[account]] name`.
    pub account: String,
    /// Region.
    pub region: String,
    /// When its last sweep ended (RFC 3339 UTC).
    pub at: String,
    /// Whether it was good.
    pub ok: bool,
    /// Its first error, if not.
    pub error: Option<String>,
    /// When its last good sweep ended.
    pub last_ok_at: Option<String>,
}

impl Store {
    /// Records each place's part of a sweep that ended `at`: only rows whose result changed, or
    /// that are older than five minutes (a quiet fleet costs a write every five minutes, not
    /// one a sweep). A place whose part a clean shutdown cut short is left as it was: that is
    /// neither a good nor a failed sweep.
    pub async fn record_places(&self, at: DateTime<Utc>, places: &[PlaceResult]) -> Result<()> {
        let known = self.place_sweeps().await?;
        let stale = ts(at - PLACE_REFRESH);
        let due: Vec<&PlaceResult> = places
            .iter()
            .filter(|p| !p.interrupted)
            .filter(|p| {
                !known.iter().any(|k| {
                    k.account == p.account
                        && k.region == p.region
                        && k.ok == p.ok
                        && k.error == p.error
                        && k.at > stale
                })
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        write_tx!(self, |tx| {
            for p in &due {
                sqlx::query(
                    "INSERT INTO place_sweeps (account, region, at, ok, error, last_ok_at) \
                 VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 THEN $3 END) \
                 ON CONFLICT (account, region) DO UPDATE SET at = excluded.at, ok = excluded.ok, \
                 error = excluded.error, \
                 last_ok_at = COALESCE(excluded.last_ok_at, place_sweeps.last_ok_at)",
                )
                .bind(&p.account)
                .bind(&p.region)
                .bind(ts(at))
                .bind(p.ok)
                .bind(&p.error)
                .execute(&mut *tx)
                .await
                .context("cannot record an account's last sweep")?;
            }
            tx.commit()
                .await
                .context("cannot record an account's last sweep")?;
        });
        Ok(())
    }

    /// Each account and region's last sweep, by account and region.
    pub async fn place_sweeps(&self) -> Result<Vec<PlaceSweep>> {
        let sql =
            format!("SELECT {PLACE_SWEEP_COLUMNS} FROM place_sweeps ORDER BY account, region");
        on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)
            .context("cannot read each account's last sweep")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Intent, Mode, RuleKind, coverage};

    /// Quiet scheduled sweeps become runs (cut at RUN_MAX and at a late sweep); a sweep that
    /// decides a stop, and one not on the schedule, keep their rows; coverage over the runs is
    /// continuous where they were; the chain holds.
    #[tokio::test]
    async fn quiet_sweeps_fold_into_runs_that_coverage_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        store
            .compact_quiet_sweeps(Duration::from_secs(65))
            .await
            .unwrap();
        let t0: DateTime<Utc> = "2026-12-20T10:00:00Z".parse().unwrap();
        let s = chrono::Duration::seconds;
        let sweep = |at: DateTime<Utc>, trigger: &'static str, stop: bool| {
            let store = store.clone();
            async move {
                let id = store
                    .begin_sweep(at, trigger.parse().unwrap(), false)
                    .await
                    .unwrap();
                let mut r = SweepResult::default();
                if stop {
                    r.stops_decided = 1;
                    store
                        .record_intent(&Intent {
                            at,
                            sweep_id: Some(id),
                            pipeline: "p",
                            execution_id: "e",
                            rule: "r",
                            rule_kind: RuleKind::Freeze,
                            mode: Mode::Finish,
                            reason: "why",
                            explanation: "because",
                            dry_run: false,
                            escalate_at: None,
                            escalation_of: None,
                            account: "default",
                            region: "us-east-1",
                        })
                        .await
                        .unwrap();
                }
                store
                    .finish_sweep(id, at + s(1), Duration::from_secs(1), &r)
                    .await
                    .unwrap();
            }
        };
        sweep(t0, "startup", false).await; // whole
        for k in 1..=20 {
            sweep(t0 + s(30 * k), "schedule", false).await; // 10:00:30 .. 10:10:00: two runs
        }
        sweep(t0 + s(630), "schedule", true).await; // a stop: whole, after the open run
        sweep(t0 + s(660), "schedule", false).await;
        sweep(t0 + s(900), "schedule", false).await; // late: a new run
        store.flush_sweep_run().await.unwrap();

        let whole: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, trigger FROM sweeps ORDER BY id")
                .fetch_all(store.pool().unwrap())
                .await
                .unwrap();
        assert_eq!(whole, [(1, "startup".into()), (22, "schedule".into())]);
        let runs: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT first_started_at, last_finished_at, sweeps, max_gap_ms FROM sweep_runs ORDER BY id",
        )
        .fetch_all(store.pool().unwrap())
        .await
        .unwrap();
        let at = |k: i64| ts(t0 + s(k));
        assert_eq!(
            runs,
            [
                (at(30), at(301), 10, 29_000),
                (at(330), at(601), 10, 29_000),
                (at(660), at(661), 1, 0),
                (at(900), at(901), 1, 0),
            ]
        );
        assert!(store.verify().await.unwrap().intact());
        // `report --sweeps` lists every sweep: whole ones, and runs with their counts.
        let listed: Vec<(i64, i64)> = store
            .sweeps(None, None)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.id, r.sweeps))
            .collect();
        assert_eq!(
            listed,
            [(1, 1), (2, 10), (12, 10), (22, 1), (23, 1), (24, 1)]
        );

        let spans = store
            .sweep_spans(t0 - s(60), t0 + s(1000), chrono::Duration::seconds(65))
            .await
            .unwrap();
        let c = coverage::cover(
            "r",
            (t0, t0 + s(960)),
            &spans,
            None,
            &[],
            chrono::Duration::seconds(30),
            DateTime::<Utc>::MIN_UTC,
        );
        let gaps: Vec<_> = c
            .gaps
            .iter()
            .map(|g| (&g.from[11..19], &g.to[11..19], g.cause))
            .collect();
        // 10:11:01 + 65 s = 10:12:06; the next sweep began 10:15:00 (covers from 10:14:55).
        assert_eq!(gaps, [("10:12:06", "10:14:55", "late")]);
    }

    /// The open run is read as it grows (the last good sweep, coverage), before it is written;
    /// one a killed daemon left open is written (chained) by the next start.
    #[tokio::test]
    async fn the_open_run_is_read_and_a_killed_daemons_is_written_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        store
            .compact_quiet_sweeps(Duration::from_secs(25))
            .await
            .unwrap();
        let t0: DateTime<Utc> = "2026-12-20T10:00:00Z".parse().unwrap();
        let s = chrono::Duration::seconds;
        for k in 0..6 {
            let at = t0 + s(10 * k);
            let id = store
                .begin_sweep(at, SweepTrigger::Schedule, false)
                .await
                .unwrap();
            store
                .finish_sweep(
                    id,
                    at + s(1),
                    Duration::from_secs(1),
                    &SweepResult::default(),
                )
                .await
                .unwrap();
        }
        let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sweep_runs")
            .fetch_one(store.pool().unwrap())
            .await
            .unwrap();
        assert_eq!(runs, 0, "the run is still open");
        assert_eq!(store.last_good_sweep().await.unwrap(), Some(t0 + s(51)));
        assert_eq!(store.first_start().await.unwrap(), Some(t0));
        let spans = store
            .sweep_spans(t0 - s(60), t0 + s(60), s(25))
            .await
            .unwrap();
        let c = coverage::cover(
            "r",
            (t0, t0 + s(60)),
            &spans,
            None,
            &[],
            chrono::Duration::seconds(10),
            t0,
        );
        assert!(c.gaps.is_empty(), "{c:?}");

        // Another process's open run (this one killed): written at the next start, even when
        // the next daemon got the same pid (here it does: the row keeps this process's pid).
        store.runs.lock().await.open = None;
        store
            .compact_quiet_sweeps(Duration::from_secs(25))
            .await
            .unwrap();
        let runs: Vec<(String, i64)> =
            sqlx::query_as("SELECT last_finished_at, sweeps FROM sweep_runs")
                .fetch_all(store.pool().unwrap())
                .await
                .unwrap();
        assert_eq!(runs, [(ts(t0 + s(51)), 6)]);
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sweep_run_open")
            .fetch_one(store.pool().unwrap())
            .await
            .unwrap();
        assert_eq!(open, 0);
        assert_eq!(store.last_good_sweep().await.unwrap(), Some(t0 + s(51)));
    }

    /// One sweep, one id: a sweep written whole after a run of quiet ones (an edge sweep), and
    /// the start-up sweep of the next daemon, took ids the run already held, and
    /// `report --sweeps` showed two rows under one id.
    #[tokio::test]
    async fn sweep_ids_never_repeat_across_runs_edges_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let t0: DateTime<Utc> = "2026-12-20T10:00:00Z".parse().unwrap();
        let s = chrono::Duration::seconds;
        let sweep = |store: Store, at: DateTime<Utc>, trigger: &'static str| async move {
            let id = store
                .begin_sweep(at, trigger.parse().unwrap(), false)
                .await
                .unwrap();
            store
                .finish_sweep(
                    id,
                    at + s(1),
                    Duration::from_secs(1),
                    &SweepResult::default(),
                )
                .await
                .unwrap();
        };
        for daemon in 0..2 {
            let store = Store::open(&db).await.unwrap();
            store
                .compact_quiet_sweeps(Duration::from_secs(65))
                .await
                .unwrap();
            let t = t0 + s(3600 * daemon);
            sweep(store.clone(), t, "startup").await;
            for k in 1..=3 {
                sweep(store.clone(), t + s(30 * k), "schedule").await;
            }
            sweep(store.clone(), t + s(100), "edge").await;
            for k in 4..=5 {
                sweep(store.clone(), t + s(30 * k), "schedule").await;
            }
            store.flush_sweep_run().await.unwrap();
            store.close().await;
        }
        let store = Store::open(&db).await.unwrap();
        let listed: Vec<(i64, String, i64)> = store
            .sweeps(None, None)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.id, r.trigger.clone(), r.sweeps))
            .collect();
        let mut ids: Vec<i64> = listed.iter().map(|r| r.0).collect();
        ids.dedup();
        assert_eq!(ids.len(), listed.len(), "one row per id: {listed:?}");
        assert_eq!(
            listed.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2, 5, 6, 8, 9, 12, 13],
            "{listed:?}"
        );
        assert!(store.verify().await.unwrap().intact());
    }

    /// A place's row is rewritten when its result changes or it is five minutes old, not at
    /// every quiet sweep; `last_ok_at` survives a failure.
    #[tokio::test]
    async fn place_rows_are_written_on_change_or_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        let place = |ok: bool| PlaceResult {
            account: "a".into(),
            region: "r".into(),
            ok,
            interrupted: false,
            error: (!ok).then(|| "denied".to_string()),
        };
        let t0 = crate::testdb::tick();
        store.record_places(t0, &[place(true)]).await.unwrap();
        let at = |s: &Store| {
            let s = s.clone();
            async move { s.place_sweeps().await.unwrap()[0].clone() }
        };
        assert_eq!(at(&store).await.at, ts(t0));
        // The same result a minute later: not rewritten.
        let t1 = t0 + chrono::TimeDelta::minutes(1);
        store.record_places(t1, &[place(true)]).await.unwrap();
        assert_eq!(at(&store).await.at, ts(t0));
        // Six minutes later: rewritten.
        let t2 = t0 + chrono::TimeDelta::minutes(6);
        store.record_places(t2, &[place(true)]).await.unwrap();
        assert_eq!(at(&store).await.at, ts(t2));
        // A failure at once, keeping when it was last ok.
        let t3 = t2 + chrono::TimeDelta::seconds(10);
        store.record_places(t3, &[place(false)]).await.unwrap();
        let row = at(&store).await;
        assert_eq!(
            (row.at, row.ok, row.error.as_deref(), row.last_ok_at),
            (ts(t3), false, Some("denied"), Some(ts(t2)))
        );
    }
}
