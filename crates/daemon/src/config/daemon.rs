//! `[daemon]`: the sweep schedule, the audit database, and the bounds of a sweep; and the
//! schedule's interval, which staleness (`stopd status`, `/healthz`), audit coverage and quiet
//! sweep compaction are all judged by.

use std::path::{Path, PathBuf};

use std::time::Duration;
use stopd_audit::Location;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use stopd_rules::Span;
use stopd_rules::cron::CronExpr;

/// Default sweep cadence: every 30 seconds.
pub const DEFAULT_SCHEDULE: &str = "*/30 * * * * *";
/// Default audit database.
pub const DEFAULT_DATABASE: &str = "/var/lib/stopd/audit.db";
/// Stops in flight at once unless `stop_concurrency` says otherwise: at a window edge the known
/// executions are stopped first with every slot, so this sets the edge's pace when the service
/// does not (647 stops at 25 ms a call: 0.37 s at 64, 0.23 s at 128; BENCHMARKS.md, issue 29).
pub const DEFAULT_STOP_CONCURRENCY: usize = 128;

/// The most stops in flight, or pipelines read, at once: far above what one account's rate
/// limit lets through, far below what a semaphore or a task window can hold.
pub const MAX_CONCURRENCY: usize = 4_096;
/// The interval assumed when the schedule gives none (it fires fewer than twice).
const FALLBACK_INTERVAL: TimeDelta = TimeDelta::seconds(30);

/// `[daemon]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DaemonSpec {
    #[serde(default)]
    pub(super) schedule: Option<String>,
    #[serde(default)]
    pub(super) database: Option<String>,
    #[serde(default)]
    pub(super) dry_run: Option<bool>,
    #[serde(default)]
    pub(super) stop_concurrency: Option<usize>,
    #[serde(default)]
    pub(super) discovery_concurrency: Option<usize>,
    #[serde(default)]
    pub(super) stop_deadline: Option<Span>,
    #[serde(default)]
    pub(super) shutdown_timeout: Option<Span>,
    #[serde(default)]
    pub(super) database_password_file: Option<PathBuf>,
}

/// `[daemon]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Sweep cadence (evaluated in UTC).
    pub schedule: CronExpr,
    /// The audit database: a SQLite file, or a PostgreSQL URL (without its password, which
    /// [`crate::runtime::secrets::database`] adds when the store is opened).
    pub database: Location,
    /// Decide and record, never call StopPipelineExecution.
    pub dry_run: bool,
    /// Stops in flight at once.
    pub stop_concurrency: usize,
    /// Pipelines read at once during discovery.
    pub discovery_concurrency: usize,
    /// How long one stop may take, retries included.
    pub stop_deadline: Duration,
    /// On SIGTERM, how long in-flight stops may still run before they are cut short.
    pub shutdown_timeout: Duration,
    /// The PostgreSQL password's file (DESIGN.md): read through systemd credentials first, as
    /// every secret file; without it, `PGPASSWORD` (or `~/.pgpass`) as libpq reads them.
    pub database_password_file: Option<PathBuf>,
}

impl DaemonSettings {
    /// `spec` with defaults applied, on its parsed `schedule`.
    pub(super) fn new(spec: DaemonSpec, schedule: CronExpr) -> DaemonSettings {
        DaemonSettings {
            schedule,
            database: Location::parse(spec.database.as_deref().unwrap_or(DEFAULT_DATABASE)),
            dry_run: spec.dry_run.unwrap_or(false),
            stop_concurrency: spec.stop_concurrency.unwrap_or(DEFAULT_STOP_CONCURRENCY),
            discovery_concurrency: spec.discovery_concurrency.unwrap_or(64),
            stop_deadline: spec
                .stop_deadline
                .map_or(Duration::from_secs(60), Span::get),
            shutdown_timeout: spec
                .shutdown_timeout
                .map_or(Duration::from_secs(20), Span::get),
            database_password_file: spec.database_password_file,
        }
    }

    /// The gaps between the schedule's ticks after `now` (its next tick to the one after, and
    /// on): the one reading of the schedule that [`interval`](Self::interval) and
    /// [`next_interval`](Self::next_interval) are taken from. Empty if it fires fewer than twice.
    fn gaps(&self, now: DateTime<Utc>) -> impl Iterator<Item = TimeDelta> + '_ {
        let mut at = self.schedule.next_after(now, chrono_tz::UTC);
        std::iter::from_fn(move || {
            let from = at?;
            let next = self.schedule.next_after(from, chrono_tz::UTC)?;
            at = Some(next);
            Some(next - from)
        })
        .filter(|gap| *gap > TimeDelta::zero())
    }

    /// The schedule's interval after `now`: the longest of the next few intervals between its
    /// ticks (30 s if it fires fewer than twice). Staleness, coverage and sweep compaction
    /// judge by it.
    pub fn interval(&self, now: DateTime<Utc>) -> TimeDelta {
        self.gaps(now).take(7).max().unwrap_or(FALLBACK_INTERVAL)
    }

    /// The schedule's next interval after `now`: from its next tick to the one after (30 s if
    /// it fires fewer than twice). The scheduler's backoff after a failed sweep is capped by it,
    /// so a failing sweep is tried again at least as often as the schedule would sweep next.
    pub fn next_interval(&self, now: DateTime<Utc>) -> TimeDelta {
        self.gaps(now).next().unwrap_or(FALLBACK_INTERVAL)
    }

    /// Sweeps are stale after three schedule intervals without a good one (`stopd status`
    /// and `/healthz` alike).
    pub fn stale_after(&self, now: DateTime<Utc>) -> Duration {
        (self.interval(now) * 3)
            .to_std()
            .unwrap_or(Duration::from_secs(90))
    }
}

impl DaemonSpec {
    /// Checks what serde cannot: the schedule (parsed), the concurrency bounds, the database
    /// path and the password file. `(key, why)` for each problem; warnings go to `warnings`.
    pub(super) fn check(
        &self,
        warnings: &mut Vec<String>,
    ) -> (Option<CronExpr>, Vec<(&'static str, String)>) {
        let mut problems = Vec::new();
        let schedule_text = self.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE);
        let schedule = match CronExpr::parse(schedule_text) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(("schedule", e.to_string()));
                None
            }
        };
        for (key, value) in [
            ("stop_concurrency", self.stop_concurrency),
            ("discovery_concurrency", self.discovery_concurrency),
        ] {
            if value.is_some_and(|n| !(1..=MAX_CONCURRENCY).contains(&n)) {
                problems.push((key, format!("must be between 1 and {MAX_CONCURRENCY}")));
            }
        }
        let location = self.database.as_deref().map(Location::parse);
        match &location {
            Some(Location::Sqlite(path)) => {
                if let Some(problem) = database_problem(path) {
                    problems.push(("database", problem));
                }
            }
            Some(url @ Location::Postgres(_)) => match url.postgres_problem() {
                Some(problem) => problems.push(("database", problem)),
                None if url.has_password() => warnings.push(format!(
                    "[daemon] database: the URL of {url} holds a password; keep it out of the policy (database_password_file, PGPASSWORD or a systemd credential)"
                )),
                None => {}
            },
            None => {}
        }
        match &self.database_password_file {
            Some(p) if p.file_name().is_none() => {
                problems.push(("database_password_file", "must name a file".into()));
            }
            Some(_) if !matches!(location, Some(Location::Postgres(_))) => warnings.push(
                "[daemon] database_password_file is unused: the audit database is a SQLite file"
                    .into(),
            ),
            _ => {}
        }
        (schedule, problems)
    }
}

/// Why `[daemon] database` cannot be an audit database `run` could open, if it cannot: `check`
/// once passed `"\u0000"`, `"/"` and a directory, which `run` then failed to open.
fn database_problem(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().is_empty() {
        // SQLite reads "" as a private temporary database that vanishes at exit: an audit
        // log nobody could ever read.
        return Some("must name a file (an empty path would be a temporary database that vanishes with the process)".into());
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Some("must not contain a NUL character".into());
    }
    if path.file_name().is_none() || path.as_os_str().as_bytes().ends_with(b"/") {
        return Some(format!(
            "must name a file, not a directory ({})",
            path.display()
        ));
    }
    if path.is_dir() {
        return Some(format!(
            "{} is a directory: name a file in it, e.g. {}",
            path.display(),
            path.join("audit.db").display()
        ));
    }
    None
}
