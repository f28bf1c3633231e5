//! The SQLite audit log (sqlx). WAL, `synchronous = FULL` (a committed row survives a power
//! cut), one writer connection, append-only tables (triggers refuse UPDATE and DELETE; see
//! `migrations/`). Timestamps are RFC 3339 UTC strings with milliseconds, so text order is time
//! order.
//!
//! Stop intents and outcomes, the hot path (two per stop), go through a group-commit writer: a
//! task that takes every write queued at that moment and commits them in one transaction, one
//! fsync, then answers each caller. A caller hears "written" only after that commit, so the
//! rule "the intent is durable before the call" holds; a lone write is committed at once, never
//! held back to wait for company. At a window edge with hundreds of stops in flight this turns
//! two fsyncs per stop into a few per batch (see BENCHMARKS.md).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection, migrate::Migrator};
use tokio::sync::{mpsc, oneshot};

pub mod chain;
pub mod coverage;
pub mod digest;
pub mod events;
mod freezes;
mod place;
pub use place::Place;
pub mod outbox;
mod status;
pub use freezes::{FreezeRecord, Lift, NewFreeze, rule_name};
pub use status::{LastSweep, PolicyLoad};
mod gates;
pub use gates::{GateRecord, LastGate, NewGate};
mod runs;
pub use runs::{PlaceResult, PlaceSweep};
#[cfg(test)]
mod size;
mod verify;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Stop-and-wait stops the API accepted that have an escalation deadline and were not escalated
/// yet: the one definition behind "due now" and "next deadline".
pub(crate) const OPEN_ESCALATIONS: &str = "FROM stops s JOIN stop_outcomes o ON o.stop_id = s.id \
     WHERE s.escalate_at IS NOT NULL AND s.dry_run = 0 \
       AND o.outcome IN ('stopped', 'already_stopping') \
       AND NOT EXISTS (SELECT 1 FROM stops e WHERE e.escalation_of = s.id)";

/// RFC 3339 UTC with milliseconds: the audit log's time format.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses what [`ts`] wrote.
pub fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("bad timestamp {s:?} in the audit log"))?
        .with_timezone(&Utc))
}

/// What [`Store::revoke_exemption`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Recorded now.
    Revoked,
    /// No exemption has that id.
    NoSuchExemption,
    /// It was revoked before (the first revocation stands).
    AlreadyRevoked,
}

/// The audit database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The group-commit writer (none for a read-only store).
    writer: Option<mpsc::UnboundedSender<Write>>,
    /// Transactions the writer committed (for tests and the curious).
    commits: Arc<AtomicU64>,
    /// Quiet sweeps held back and folded into runs ([`runs`]); off unless the daemon asks.
    runs: Arc<tokio::sync::Mutex<runs::Runs>>,
    /// Outcomes of stops that were made but could not be written (a full disk): written again
    /// at each sweep ([`Store::record_unrecorded`]) so that the log heals without a restart.
    unrecorded: Arc<std::sync::Mutex<Vec<(i64, OutcomeRow)>>>,
}

/// At most this many writes share one transaction.
const MAX_BATCH: usize = 512;

/// A write for the group-commit writer, with where to send its result.
pub(crate) enum Write {
    Intent(Box<IntentRow>, oneshot::Sender<Result<i64, String>>),
    Outcome(i64, OutcomeRow, oneshot::Sender<Result<(), String>>),
    /// A gate action, recorded before it is made (`gates`).
    GateIntent(Box<GateRow>, oneshot::Sender<Result<i64, String>>),
    /// How a gate action ended (`gate_outcomes`): gate id, outcome, error.
    GateOutcome(
        i64,
        String,
        Option<String>,
        oneshot::Sender<Result<(), String>>,
    ),
}

/// A gate action's row (`gates`), formatted for binding.
#[derive(Debug)]
pub(crate) struct GateRow {
    pub at: String,
    pub sweep_id: Option<i64>,
    pub pipeline: String,
    pub stage: String,
    pub rule: String,
    pub action: &'static str,
    pub reason: String,
    pub dry_run: bool,
    pub account: String,
    pub region: String,
}

/// An [`Intent`], owned and formatted for binding.
pub(crate) struct IntentRow {
    at: String,
    sweep_id: Option<i64>,
    pipeline: String,
    execution_id: String,
    rule: String,
    rule_kind: String,
    mode: String,
    reason: String,
    explanation: String,
    dry_run: bool,
    escalate_at: Option<String>,
    escalation_of: Option<i64>,
    account: String,
    region: String,
}

impl Write {
    /// The audited table it writes to.
    fn table(&self) -> &'static str {
        match self {
            Write::Intent(..) => "stops",
            Write::Outcome(..) => "stop_outcomes",
            Write::GateIntent(..) => "gates",
            Write::GateOutcome(..) => "gate_outcomes",
        }
    }

    /// Runs the statement inside the batch's transaction; returns the row as written:
    /// `returning` is what [`chain::Linker::returning`] said for the table.
    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        returning: &str,
    ) -> Result<sqlx::sqlite::SqliteRow, sqlx::Error> {
        match self {
            Write::Intent(i, _) => sqlx::query(&format!(
                "INSERT INTO stops (at, sweep_id, pipeline, execution_id, rule, rule_kind, mode, reason, \
                 explanation, dry_run, escalate_at, escalation_of, account, region) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {returning}",
            ))
            .bind(&i.at)
            .bind(i.sweep_id)
            .bind(&i.pipeline)
            .bind(&i.execution_id)
            .bind(&i.rule)
            .bind(&i.rule_kind)
            .bind(&i.mode)
            .bind(&i.reason)
            .bind(&i.explanation)
            .bind(i.dry_run)
            .bind(&i.escalate_at)
            .bind(i.escalation_of)
            .bind(&i.account)
            .bind(&i.region)
            .fetch_one(&mut *conn)
            .await,
            Write::Outcome(stop_id, o, _) => sqlx::query(&format!(
                "INSERT INTO stop_outcomes (stop_id, at, outcome, attempts, throttled, elapsed_ms, error, reconciled) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {returning}",
            ))
            .bind(stop_id)
            .bind(ts(o.at))
            .bind(&o.outcome)
            .bind(i64::from(o.attempts))
            .bind(i64::from(o.throttled))
            .bind(o.elapsed.as_millis() as i64)
            .bind(&o.error)
            .bind(o.reconciled)
            .fetch_one(&mut *conn)
            .await,
            Write::GateIntent(g, _) => sqlx::query(&format!(
                "INSERT INTO gates (at, sweep_id, pipeline, stage, rule, action, reason, dry_run, \
                                    account, region) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {returning}",
            ))
            .bind(&g.at)
            .bind(g.sweep_id)
            .bind(&g.pipeline)
            .bind(&g.stage)
            .bind(&g.rule)
            .bind(g.action)
            .bind(&g.reason)
            .bind(g.dry_run)
            .bind(&g.account)
            .bind(&g.region)
            .fetch_one(&mut *conn)
            .await,
            Write::GateOutcome(gate_id, outcome, error, _) => sqlx::query(&format!(
                "INSERT INTO gate_outcomes (gate_id, at, outcome, error) VALUES (?, ?, ?, ?) \
                 RETURNING {returning}",
            ))
            .bind(gate_id)
            .bind(ts(Utc::now()))
            .bind(outcome)
            .bind(error)
            .fetch_one(&mut *conn)
            .await,
        }
    }

    /// Answers the caller.
    fn answer(self, result: Result<i64, String>) {
        // A caller that went away (its task was cancelled) is not told; the row stands.
        match self {
            Write::Intent(_, tx) => {
                let _ = tx.send(result);
            }
            Write::Outcome(_, _, tx) | Write::GateOutcome(_, _, _, tx) => {
                let _ = tx.send(result.map(|_| ()));
            }
            Write::GateIntent(_, tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// The group-commit loop: waits for a write, takes every write queued behind it, commits them
/// in one transaction, answers each. Ends when every [`Store`] handle is gone.
async fn group_commit(
    pool: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<Write>,
    commits: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut results = Vec::with_capacity(batch.len());
        let mut conn = None;
        let committed = async {
            let conn = conn.insert(pool.acquire().await?);
            // The write lock from the start (waiting `busy_timeout` for another process's
            // write): the batch reads the schema before its first INSERT, and SQLite refuses
            // at once, without waiting, to turn a read transaction into a write while another
            // connection writes or has written since.
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            // Each record is chained from the values its INSERT returned, in the same
            // transaction; a failed link fails the batch (a row without its link would read as
            // inserted behind the log's back).
            let mut linker = chain::Linker::default();
            for w in &batch {
                let returning = linker.returning(&mut tx, w.table()).await?;
                match w.apply(&mut tx, &returning).await {
                    Ok(row) => {
                        let rowid = linker.link_returned(&mut tx, w.table(), &row).await?;
                        results.push(Ok(rowid));
                    }
                    // A constraint or a trigger fails its statement alone: SQLite rolls back
                    // that statement, not the transaction.
                    Err(e) if fails_alone(&e) => results.push(Err(e.to_string())),
                    // Anything else (a full disk, an I/O error) may have rolled back the whole
                    // transaction, and a statement after it would run in autocommit: stop here,
                    // and the batch fails as one.
                    Err(e) => return Err(e),
                }
            }
            linker.flush(&mut tx).await?;
            tx.commit().await
        }
        .await;
        match committed {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (w, r) in batch.drain(..).zip(results) {
                    w.answer(r);
                }
            }
            Err(e) => {
                // Every caller hears "not written", so no call is made on the strength of it.
                // The transaction was rolled back (by SQLite, or by dropping it), so nothing of
                // the batch is on disk; the next batch begins afresh on the same connection,
                // and writing works again as soon as the disk has room.
                let e = format!("the audit transaction failed: {e}");
                tracing::error!(writes = batch.len(), error = %e, "audit log write failed");
                // The connection is not used again. After a failed COMMIT (a full disk) SQLite
                // may leave the transaction open while sqlx believes it is in one no more, or
                // the reverse: every later "commit" then only released a savepoint inside a
                // transaction that was never committed, and writes were answered "committed"
                // and lost, even after space was freed. A new connection starts clean; closing
                // this one rolls back whatever it held. (The pool's check on release,
                // [`out_of_transaction`], would retire it too; this says so where it happens.)
                if let Some(c) = conn.as_mut() {
                    c.close_on_drop();
                }
                for w in batch.drain(..) {
                    w.answer(Err(e.clone()));
                }
            }
        }
    }
}

/// Whether a connection going back to the pool is out of every transaction, by SQLite's own
/// account and by sqlx's; if not, the pool closes it (closing rolls back whatever it held) and
/// opens a fresh one for the next user.
///
/// Why both: after a COMMIT that failed for a full disk, SQLite has already rolled the
/// transaction back, but sqlx still counts it open; the ROLLBACK that dropping the transaction
/// queues then fails ("no transaction is active"), and every later BEGIN on that connection
/// failed with "attempted to call begin_with at non-zero transaction depth", for as long as the
/// process ran. The reverse (SQLite still in a transaction that sqlx counts closed) would
/// turn every later commit into a no-op.
async fn out_of_transaction(conn: &mut SqliteConnection) -> bool {
    // The ping runs on the connection's worker after anything queued before it (the rollback a
    // dropped transaction queued), so the count read next is settled.
    let clean = conn.ping().await.is_ok()
        && !conn.is_in_transaction()
        // sqlx counts none open, and SQLite must agree: its BEGIN fails inside a transaction (a
        // deferred BEGIN and its ROLLBACK take no lock).
        && match conn.begin().await {
            Ok(tx) => tx.rollback().await.is_ok(),
            Err(_) => false,
        }
        && !conn.is_in_transaction();
    if !clean {
        tracing::warn!(
            "closing an audit database connection left inside a failed transaction; the next write opens a fresh one"
        );
    }
    clean
}

/// Whether a failed statement leaves its transaction intact: SQLITE_CONSTRAINT (a key, a
/// CHECK, or an append-only trigger's RAISE(ABORT)).
fn fails_alone(e: &sqlx::Error) -> bool {
    const SQLITE_CONSTRAINT: i64 = 19;
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| c & 0xff == SQLITE_CONSTRAINT)
}

/// Whether a write failed on its own (a constraint of the row: a second outcome for one stop,
/// an unknown stop), as the writer reports it, rather than with its transaction (a full disk).
/// Such a write fails again however often it is tried.
fn refused_alone(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("constraint failed")
}

/// Creates a migrated database at `path`: under a temporary name first, then linked into
/// place (if another process made one meanwhile, that one is kept).
async fn create(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the audit directory {}", dir.display()))?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "audit.db".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.creating-{}", std::process::id()));
    let cleanup = |tmp: &Path| {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = tmp.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    };
    cleanup(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create the audit database in {}", dir.display()))?;
    // The mode asked for above is cut by the umask; say it once more, exactly.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    let made = async {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(Store::write_options(&tmp)?)
            .await?;
        MIGRATOR.run(&pool).await?;
        // Back to a single file before it is linked into place.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&pool)
            .await?;
        pool.close().await;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = made {
        cleanup(&tmp);
        return Err(e.context(format!(
            "cannot create the audit database {}",
            path.display()
        )));
    }
    let linked = std::fs::hard_link(&tmp, path);
    cleanup(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("cannot create the audit database {}", path.display()))
        }
    }
}

/// A reader's failure to open the database, in words an operator can act on.
fn read_error(path: &Path, e: sqlx::Error) -> anyhow::Error {
    let text = e.to_string();
    if text.contains("readonly database") || text.contains("unable to open") {
        anyhow::anyhow!(
            "cannot read the audit database {}: this user may not read it, or may not write its directory (a reader of a WAL database needs its -shm file); run as the daemon's user, or with sudo ({text})",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot open the audit database {}", path.display()))
    }
}

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
    /// `freeze`, `timeout` or `manual`.
    pub rule_kind: &'a str,
    /// `finish` or `abandon`.
    pub mode: &'a str,
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
    /// The outcome name.
    pub outcome: String,
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

/// A stop recorded but never completed (the process died between the two writes).
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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
    pub rule_kind: String,
    /// Reason given the first time.
    pub reason: String,
    /// Account name (`None`: recorded before accounts were; the ambient one).
    pub account: Option<String>,
    /// Region (`None`: recorded before regions were).
    pub region: Option<String>,
}

/// One audit record, as `stopd report` prints it.
#[derive(Debug, Clone, Serialize)]
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
    /// Outcome name.
    pub outcome: Option<String>,
    /// Account name glob (rows recorded before accounts were count as `default`).
    pub account: Option<String>,
    /// Region glob.
    pub region: Option<String>,
}

/// A sweep's result from its row: finished, its `result` column, `errors`, and whether it has
/// an `error`.
pub fn sweep_result(
    finished: bool,
    column: Option<&str>,
    errors: i64,
    error: bool,
) -> Option<&'static str> {
    match (finished, column) {
        (false, _) => None,
        (true, Some("interrupted")) => Some("interrupted"),
        (true, _) if errors == 0 && !error => Some("ok"),
        (true, _) => Some("failed"),
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

/// A break-glass exemption.
#[derive(Debug, Clone, Serialize)]
pub struct ExemptionRecord {
    /// Id (for `exempt revoke`).
    pub id: i64,
    /// When it was added.
    pub created_at: String,
    /// Pipeline glob.
    pub pipeline: String,
    /// Expiry (exclusive).
    pub until: String,
    /// Why.
    pub reason: String,
    /// Who added it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// Who revoked it, if someone did.
    pub revoked_by: Option<String>,
    /// The one rule it exempts from; `None`: every rule.
    pub rule: Option<String>,
    /// Why it was revoked (`exempt revoke --reason`), if it was and someone said.
    pub revoke_reason: Option<String>,
}

impl Store {
    /// Opens (creating it and its directory if missing) and migrates the database for writing.
    ///
    /// A new database is made whole before it appears: created (mode 0600, in a directory
    /// created 0700) and migrated under a temporary name, then linked into place, so a reader
    /// never sees half a schema and the audit log is never readable by the whole machine,
    /// whatever the process umask.
    pub async fn open(path: &Path) -> Result<Store> {
        if !path.exists() {
            create(path).await?;
        }
        let options = Self::write_options(path)?;
        // One connection: one writer, and statements from concurrent stops queue on it. A
        // connection goes back to the pool only out of every transaction, else it is closed
        // and the next user gets a fresh one ([`out_of_transaction`]): every write path, the
        // group-commit writer's and [`Store::begin_write`]'s alike, recovers from a failed
        // BEGIN or COMMIT (a full disk) by itself.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(async move { Ok(out_of_transaction(conn).await) }))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the audit database {}", path.display()))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("cannot migrate the audit database {}", path.display()))?;
        let chained = chain::backfill(&mut *pool.acquire().await?)
            .await
            .context("cannot chain the audit records written before the chain")?;
        if chained > 0 {
            tracing::info!(
                records = chained,
                "chained the audit records written before the hash chain"
            );
        }
        let (writer, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(group_commit(pool.clone(), rx, commits.clone()));
        Ok(Store {
            pool,
            writer: Some(writer),
            commits,
            runs: Arc::default(),
            unrecorded: Arc::default(),
        })
    }

    fn write_options(path: &Path) -> Result<SqliteConnectOptions> {
        Ok(SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10)))
    }

    /// SQLite's `data_version`: changes when another connection (another process: `stopd
    /// exempt`, `stopd freeze`) commits to the database, never for this store's own writes.
    pub async fn data_version(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The pool, for the store's other modules (`freezes.rs`).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Transactions the group-commit writer has committed.
    pub fn group_commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues a write for the group-commit writer and waits until it is committed.
    pub(crate) async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Write,
    ) -> Result<T> {
        let Some(writer) = &self.writer else {
            bail!("the audit database was opened read-only");
        };
        let (tx, rx) = oneshot::channel();
        writer
            .send(make(tx))
            .map_err(|_| anyhow::anyhow!("the audit writer has stopped"))?;
        match rx.await {
            Ok(r) => r.map_err(|e| anyhow::anyhow!(e)),
            Err(_) => bail!("the audit writer stopped before committing"),
        }
    }

    /// Opens an existing database for reading; works while the daemon writes.
    pub async fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            bail!(
                "no audit database at {} (it is created when the daemon first runs; see [daemon] database)",
                path.display()
            );
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| read_error(path, e))?;
        let tables: Result<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'stops'",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| read_error(path, e));
        let tables = match tables {
            Ok(n) => n,
            Err(e) => {
                pool.close().await;
                return Err(e);
            }
        };
        if tables == 0 {
            pool.close().await;
            bail!(
                "{} is not a stopd audit database (it has no audit tables: an empty or foreign file)",
                path.display()
            );
        }
        Ok(Store {
            pool,
            writer: None,
            commits: Arc::default(),
            runs: Arc::default(),
            unrecorded: Arc::default(),
        })
    }

    /// A write transaction for a record written outside the group-commit writer, taken with
    /// `BEGIN IMMEDIATE` so that two processes (the daemon, `stopd exempt`) never read the same
    /// chain head: the record and its chain link are committed together or not at all.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        if self.writer.is_none() {
            bail!("the audit database was opened read-only");
        }
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("cannot begin an audit transaction")
    }

    /// Closes the pool, flushing nothing that is not already durable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records the start of a sweep; returns its id.
    pub async fn begin_sweep(
        &self,
        at: DateTime<Utc>,
        trigger: &str,
        dry_run: bool,
    ) -> Result<i64> {
        // A quiet scheduled sweep may never need its row (see `runs`).
        let least = match self.hold_sweep(at, trigger, dry_run).await? {
            runs::Begin::Held(id) => return Ok(id),
            runs::Begin::Whole(least) => least,
        };
        // Never an id a run of quiet sweeps holds (one sweep, one id: `report --sweeps` showed
        // a sweep and a run under one id when SQLite picked MAX(id) + 1 of `sweeps` alone).
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sweeps (id, started_at, trigger, dry_run, pid) VALUES (MAX(?, \
               (SELECT COALESCE(MAX(id), 0) + 1 FROM sweeps), \
               (SELECT COALESCE(MAX(last_sweep_id), 0) + 1 FROM sweep_runs), \
               (SELECT COALESCE(MAX(last_sweep_id), 0) + 1 FROM sweep_run_open)), ?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(least)
        .bind(ts(at))
        .bind(trigger)
        .bind(dry_run)
        .bind(i64::from(std::process::id()))
        .fetch_one(&mut *tx)
        .await
        .context("cannot record the sweep start")?;
        chain::link(&mut tx, "sweeps", id).await?;
        tx.commit().await.context("cannot record the sweep start")?;
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
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sweep_results (sweep_id, finished_at, duration_ms, pipelines_seen, \
             pipelines_in_scope, executions_seen, stops_decided, api_calls, throttled, errors, error, \
             result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(r.interrupted.then_some("interrupted"))
        .execute(&mut *tx)
        .await
        .context("cannot record the sweep result")?;
        chain::link(&mut tx, "sweep_results", id).await?;
        tx.commit()
            .await
            .context("cannot record the sweep result")?;
        Ok(())
    }

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
            rule_kind: i.rule_kind.to_owned(),
            mode: i.mode.to_owned(),
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
        let rows = sqlx::query(
            "SELECT s.id, s.pipeline, s.execution_id, s.dry_run, s.reason, s.account, s.region FROM stops s \
             LEFT JOIN stop_outcomes o ON o.stop_id = s.id WHERE o.stop_id IS NULL ORDER BY s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Pending {
                id: r.get(0),
                pipeline: r.get(1),
                execution_id: r.get(2),
                dry_run: r.get(3),
                reason: r.get(4),
                account: r.get(5),
                region: r.get(6),
            })
            .collect())
    }

    /// Stop-and-wait stops accepted by the API whose escalation time has come and that were
    /// not escalated yet.
    pub async fn escalations_due(&self, now: DateTime<Utc>) -> Result<Vec<EscalationDue>> {
        let sql = format!(
            "SELECT s.id, s.pipeline, s.execution_id, s.rule, s.rule_kind, s.reason, s.account, s.region \
             {OPEN_ESCALATIONS} AND s.escalate_at <= ? ORDER BY s.escalate_at"
        );
        let rows = sqlx::query(&sql)
            .bind(ts(now))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| EscalationDue {
                stop_id: r.get(0),
                pipeline: r.get(1),
                execution_id: r.get(2),
                rule: r.get(3),
                rule_kind: r.get(4),
                reason: r.get(5),
                account: r.get(6),
                region: r.get(7),
            })
            .collect())
    }

    /// The earliest escalation still to come after `now`, for the scheduler.
    pub async fn next_escalation(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let sql = format!("SELECT MIN(s.escalate_at) {OPEN_ESCALATIONS} AND s.escalate_at > ?");
        let row = sqlx::query(&sql)
            .bind(ts(now))
            .fetch_one(&self.pool)
            .await?;
        let at: Option<String> = row.get(0);
        at.map(|s| parse_ts(&s)).transpose()
    }

    /// Whether a dry-run stop of this execution by this rule is already on record (dry runs
    /// are recorded once per execution and rule, not once per sweep).
    pub async fn dry_run_recorded(&self, execution_id: &str, rule: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM stops WHERE execution_id = ? AND rule = ? AND dry_run = 1)",
        )
        .bind(execution_id)
        .bind(rule)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<bool, _>(0))
    }

    /// Audit records matching `f`, oldest first.
    pub async fn report(&self, f: &ReportFilter) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT s.id, s.at, s.pipeline, s.execution_id, s.rule, s.rule_kind, s.mode, s.reason, \
                    COALESCE(o.outcome, CASE WHEN s.dry_run = 1 THEN 'dry_run' ELSE 'pending' END), \
                    COALESCE(o.attempts, 0), o.error, o.at, COALESCE(o.throttled, 0), \
                    COALESCE(o.reconciled, 0), s.escalation_of, s.sweep_id, s.explanation, \
                    s.account, s.region \
             FROM stops s LEFT JOIN stop_outcomes o ON o.stop_id = s.id \
             WHERE (?1 IS NULL OR s.at >= ?1) AND (?2 IS NULL OR s.at < ?2) \
               AND (?3 IS NULL OR s.pipeline GLOB ?3) AND (?4 IS NULL OR s.rule = ?4) \
               AND (?5 IS NULL OR COALESCE(o.outcome, \
                        CASE WHEN s.dry_run = 1 THEN 'dry_run' ELSE 'pending' END) = ?5) \
               AND (?6 IS NULL OR COALESCE(s.account, 'default') GLOB ?6) \
               AND (?7 IS NULL OR COALESCE(s.region, '') GLOB ?7) \
             ORDER BY s.at, s.id",
        )
        .bind(f.since.map(ts))
        .bind(f.until.map(ts))
        .bind(&f.pipeline)
        .bind(&f.rule)
        .bind(&f.outcome)
        .bind(&f.account)
        .bind(&f.region)
        .fetch_all(&self.pool)
        .await
        .context("cannot read the audit log")?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                id: r.get(0),
                at: r.get(1),
                pipeline: r.get(2),
                execution_id: r.get(3),
                rule: r.get(4),
                rule_kind: r.get(5),
                mode: r.get(6),
                reason: r.get(7),
                outcome: r.get(8),
                attempts: r.get(9),
                error: r.get(10),
                completed_at: r.get(11),
                throttled: r.get(12),
                reconciled: r.get(13),
                escalation_of: r.get(14),
                sweep_id: r.get(15),
                explanation: r.get(16),
                account: r.get(17),
                region: r.get(18),
            })
            .collect())
    }

    /// Sweeps started in `[since, until)`, oldest first.
    pub async fn sweeps(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<SweepRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM ( \
               SELECT w.id, w.started_at, r.finished_at, w.trigger, w.dry_run, r.duration_ms, \
                    r.pipelines_seen, r.executions_seen, r.stops_decided, r.api_calls, r.errors, r.error, \
                    r.throttled, 1, r.result \
               FROM sweeps w LEFT JOIN sweep_results r ON r.sweep_id = w.id \
               WHERE (?1 IS NULL OR w.started_at >= ?1) AND (?2 IS NULL OR w.started_at < ?2) \
             UNION ALL \
               SELECT first_sweep_id, first_started_at, last_finished_at, 'schedule', dry_run, \
                    max_duration_ms, pipelines_seen, executions_seen, 0, api_calls, 0, NULL, \
                    throttled, sweeps, NULL \
               FROM sweep_runs \
               WHERE (?1 IS NULL OR first_started_at >= ?1) AND (?2 IS NULL OR first_started_at < ?2)) \
             ORDER BY 2, 1",
        )
        .bind(since.map(ts))
        .bind(until.map(ts))
        .fetch_all(&self.pool)
        .await
        .context("cannot read the sweep log")?;
        Ok(rows
            .iter()
            .map(|r| SweepRecord {
                id: r.get(0),
                started_at: r.get(1),
                finished_at: r.get(2),
                trigger: r.get(3),
                dry_run: r.get(4),
                duration_ms: r.get(5),
                pipelines_seen: r.get(6),
                executions_seen: r.get(7),
                stops_decided: r.get(8),
                api_calls: r.get(9),
                errors: r.get(10),
                error: r.get(11),
                throttled: r.get(12),
                sweeps: r.get(13),
                result: sweep_result(
                    r.get::<Option<String>, _>(2).is_some(),
                    r.get::<Option<String>, _>(14).as_deref(),
                    r.get::<Option<i64>, _>(10).unwrap_or(0),
                    r.get::<Option<String>, _>(11).is_some(),
                ),
            })
            .collect())
    }

    /// Adds a break-glass exemption; returns its id.
    pub async fn add_exemption(
        &self,
        at: DateTime<Utc>,
        glob: &str,
        until: DateTime<Utc>,
        reason: &str,
        by: &str,
        rule: Option<&str>,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO exemptions (created_at, pipeline_glob, until, reason, created_by, rule) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ts(at))
        .bind(glob)
        .bind(ts(until))
        .bind(reason)
        .bind(by)
        .bind(rule)
        .fetch_one(&mut *tx)
        .await
        .context("cannot record the exemption")?;
        chain::link(&mut tx, "exemptions", id).await?;
        tx.commit().await.context("cannot record the exemption")?;
        Ok(id)
    }

    /// Revokes an exemption, with why if given; says so when it does not exist or is already
    /// revoked (a refusal the CLI turns into a usage error).
    pub async fn revoke_exemption(
        &self,
        id: i64,
        at: DateTime<Utc>,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Revocation> {
        let exists: bool = sqlx::query("SELECT EXISTS (SELECT 1 FROM exemptions WHERE id = ?)")
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            .get(0);
        if !exists {
            return Ok(Revocation::NoSuchExemption);
        }
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO exemption_revocations (exemption_id, at, revoked_by, reason) \
             VALUES (?, ?, ?, ?) ON CONFLICT (exemption_id) DO NOTHING",
        )
        .bind(id)
        .bind(ts(at))
        .bind(by)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .context("cannot record the revocation")?;
        if done.rows_affected() == 0 {
            return Ok(Revocation::AlreadyRevoked);
        }
        chain::link(&mut tx, "exemption_revocations", id).await?;
        tx.commit().await.context("cannot record the revocation")?;
        Ok(Revocation::Revoked)
    }

    /// Every rule name the audit log knows: of stops, gates, rule-limited exemptions,
    /// unwatched windows, and the ad-hoc freezes (`adhoc-ID`). A rule since renamed or removed
    /// from the policy is still one `report --rule` can ask for.
    pub async fn rule_names(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT rule FROM stops UNION SELECT rule FROM gates \
             UNION SELECT rule FROM exemptions WHERE rule IS NOT NULL \
             UNION SELECT rule FROM unwatched_windows UNION SELECT 'adhoc-' || id FROM freezes",
        )
        .fetch_all(&self.pool)
        .await
        .context("cannot read the rule names of the audit log")
    }

    /// Every exemption, newest first.
    pub async fn exemptions(&self) -> Result<Vec<ExemptionRecord>> {
        let rows = sqlx::query(
            "SELECT e.id, e.created_at, e.pipeline_glob, e.until, e.reason, e.created_by, r.at, \
                    r.revoked_by, e.rule, r.reason \
             FROM exemptions e LEFT JOIN exemption_revocations r ON r.exemption_id = e.id \
             ORDER BY e.id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .context("cannot read exemptions")?;
        Ok(rows
            .iter()
            .map(|r| ExemptionRecord {
                id: r.get(0),
                created_at: r.get(1),
                pipeline: r.get(2),
                until: r.get(3),
                reason: r.get(4),
                created_by: r.get(5),
                revoked_at: r.get(6),
                revoked_by: r.get(7),
                rule: r.get(8),
                revoke_reason: r.get(9),
            })
            .collect())
    }

    /// Exemptions not revoked and not expired at `now`, as the policy's type.
    pub async fn active_exemptions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<stopd_rules::Exemption>> {
        let mut out = Vec::new();
        for e in self.exemptions().await? {
            if e.revoked_at.is_some() {
                continue;
            }
            let until = parse_ts(&e.until)?;
            if now >= until {
                continue;
            }
            match stopd_rules::Exemption::break_glass(
                format!("break-glass #{}", e.id),
                &e.pipeline,
                until,
                e.reason.clone(),
            ) {
                Ok(x) => out.push(x.only_rule(e.rule.clone())),
                Err(err) => {
                    tracing::warn!(id = e.id, error = %err, "skipping an exemption whose glob does not compile")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(n: usize) -> (String, String) {
        (format!("pipe-{n}"), format!("exec-{n:04}"))
    }

    fn row(stop_id_outcome: &str) -> OutcomeRow {
        OutcomeRow {
            at: Utc::now(),
            outcome: stop_id_outcome.into(),
            attempts: 1,
            throttled: 0,
            elapsed: Duration::from_millis(25),
            error: None,
            reconciled: false,
        }
    }

    async fn record(store: &Store, names: &(String, String)) -> Result<i64> {
        store
            .record_intent(&Intent {
                at: Utc::now(),
                sweep_id: None,
                pipeline: &names.0,
                execution_id: &names.1,
                rule: "r",
                rule_kind: "freeze",
                mode: "finish",
                reason: "why",
                explanation: "because",
                dry_run: false,
                escalate_at: None,
                escalation_of: None,
                account: "default",
                region: "us-east-1",
            })
            .await
    }

    async fn count(path: &Path, table: &str) -> i64 {
        // A separate connection: what it sees is what was committed.
        let other = Store::open_read_only(path).await.unwrap();
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&other.pool)
            .await
            .unwrap();
        other.close().await;
        n
    }

    #[tokio::test]
    async fn concurrent_writes_share_transactions_and_each_is_committed_when_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = Store::open(&path).await.unwrap();
        let names: Vec<_> = (0..200).map(intent).collect();
        let ids: Vec<i64> = record_all(&store, &names)
            .await
            .into_iter()
            .collect::<Result<_>>()
            .unwrap();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 200, "every intent gets its own id");
        assert_eq!(count(&path, "stops").await, 200);
        let commits = store.group_commits();
        assert!(
            commits < 20,
            "200 intents queued together took {commits} transactions"
        );
        // Each id names its own row.
        for (id, n) in ids.iter().zip(&names) {
            let got: String = sqlx::query_scalar("SELECT execution_id FROM stops WHERE id = ?")
                .bind(id)
                .fetch_one(&store.pool)
                .await
                .unwrap();
            assert_eq!(&got, &n.1);
        }
        // One chain through every batch: each transaction's links follow the last one's.
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{:?}", v.problems);
        assert_eq!(v.records, 200);
    }

    /// Another process (`stopd freeze add`, `stopd exempt`, `stopd stop`) holding the write
    /// lock makes the writer wait, not fail. Seen before the fix: the writer's transaction read
    /// the schema before its first INSERT, and SQLite refuses at once (no busy wait) to turn a
    /// read transaction into a write while another connection writes: the whole batch was
    /// answered "not written".
    #[tokio::test]
    async fn a_write_waits_for_another_process_holding_the_write_lock() {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = Store::open(&path).await.unwrap();
        record(&store, &intent(0)).await.unwrap();
        let mut other = SqliteConnection::connect_with(&Store::write_options(&path).unwrap())
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let names: Vec<_> = (1..20).map(intent).collect();
        let writes = tokio::spawn({
            let store = store.clone();
            async move { record_all(&store, &names).await }
        });
        // SQLite's busy wait is real time: hold the lock a moment, then let go.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        other.close().await.unwrap();
        for r in writes.await.unwrap() {
            r.unwrap();
        }
        assert_eq!(count(&path, "stops").await, 20);
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{:?}", v.problems);
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = Store::open(&path).await.unwrap();
        let first = record(&store, &intent(0)).await.unwrap();
        store.record_outcome(first, &row("stopped")).await.unwrap();
        let names: Vec<_> = (1..50).map(intent).collect();
        let bad_outcome = row("stopped");
        let unknown_outcome = row("exploded");
        // In one batch: 49 good intents, a second outcome for the same stop (primary key), an
        // outcome for a stop that does not exist (foreign key) and an outcome name the schema
        // refuses (check).
        let (intents, dup, orphan, unknown) = tokio::join!(
            record_all(&store, &names),
            store.record_outcome(first, &bad_outcome),
            store.record_outcome(999_999, &bad_outcome),
            store.record_outcome(first + 1, &unknown_outcome),
        );
        assert!(intents.iter().all(Result::is_ok), "{intents:?}");
        for (what, r) in [
            ("duplicate", dup),
            ("orphan", orphan),
            ("unknown outcome", unknown),
        ] {
            let e = format!("{:#}", r.expect_err(what));
            assert!(e.contains("cannot record a stop's outcome"), "{what}: {e}");
        }
        assert_eq!(count(&path, "stops").await, 50);
        assert_eq!(count(&path, "stop_outcomes").await, 1);
        // Refused on their own, they are not kept to be written again: they would fail at every
        // sweep and hold back the outcomes a full disk refused.
        assert_eq!(store.unrecorded_count(), 0);
        // The writes that failed left no hole in the chain.
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{:?}", v.problems);
        assert_eq!(v.records, 51);
    }

    /// A small tmpfs mounted for one test, unmounted when dropped.
    struct SmallFs(std::path::PathBuf);

    impl SmallFs {
        /// Mounts it, or fails the test saying why (mounting needs root, as CI has): a test
        /// that cannot fill a real filesystem proves nothing, so it is not skipped.
        fn mount(at: &Path, size: &str) -> SmallFs {
            std::fs::create_dir_all(at).unwrap();
            let out = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(at)
                .output();
            match out {
                Ok(o) if o.status.success() => SmallFs(at.to_path_buf()),
                Ok(o) => panic!(
                    "cannot mount a {size} tmpfs at {} (this test fills a real filesystem and \
                     needs root, as CI has): {}",
                    at.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => panic!("cannot run mount(8) to mount a tmpfs: {e}"),
            }
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }

    /// Takes every free byte of the filesystem at `dir`; removing the file frees them.
    fn fill(dir: &Path) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
        path
    }

    /// Disk full: a write answered "committed" is on disk, every other one was answered with
    /// an error (so no stop is made on its strength), and the writer works again by itself once
    /// there is room. Seen before the fix: after the first failed commit every later write was
    /// answered "committed" and lost, even after space was freed. A real filesystem that runs
    /// out of space (a 1 MiB tmpfs: mounting needs root, as CI has).
    #[tokio::test]
    async fn a_really_full_filesystem_loses_no_answered_write_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let fs = SmallFs::mount(&dir.path().join("small"), "1m");
        let path = fs.0.join("audit.db");
        let store = Store::open(&path).await.unwrap();
        let first = record(&store, &intent(0)).await.unwrap();
        let filler = fill(&fs.0);
        let mut answered_ok = 1;
        let mut refused = 0;
        for round in 0..5 {
            let names: Vec<_> = (0..100)
                .map(|n| {
                    (
                        format!("p-{round}-{n}-{}", "y".repeat(200)),
                        format!("e-{n:04}"),
                    )
                })
                .collect();
            for r in record_all(&store, &names).await {
                match r {
                    Ok(_) => answered_ok += 1,
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(refused > 0, "a full filesystem refused nothing");
        std::fs::remove_file(&filler).unwrap();
        // Room again: the same store writes again, durably, without a restart.
        let again = record(&store, &intent(900)).await.unwrap();
        store.record_outcome(again, &row("stopped")).await.unwrap();
        store.record_outcome(first, &row("stopped")).await.unwrap();
        store.close().await;
        assert_eq!(
            count(&path, "stops").await,
            answered_ok + 1,
            "answered Ok = on disk"
        );
        assert_eq!(count(&path, "stop_outcomes").await, 2);
        drop(fs);
    }

    /// Disk full on a write outside the group-commit writer (a sweep's record, a lifecycle
    /// event): the failed COMMIT leaves no pooled connection stuck, so every write after it
    /// fails for the full disk alone, and writing works again by itself once there is room.
    /// Seen before the fix: SQLite rolled the failed transaction back itself, sqlx still counted
    /// it open and its ROLLBACK failed, and every later write on that connection failed with
    /// "attempted to call begin_with at non-zero transaction depth" until a restart.
    #[tokio::test]
    async fn a_failed_commit_on_a_full_filesystem_leaves_the_pool_writable_once_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let fs = SmallFs::mount(&dir.path().join("small"), "1m");
        let path = fs.0.join("audit.db");
        let store = Store::open(&path).await.unwrap();
        let at = Utc::now();
        store.begin_sweep(at, "schedule", false).await.unwrap();
        let filler = fill(&fs.0);
        // Each write fails for the full disk alone (or succeeds: closing a retired connection
        // checkpoints and removes the write-ahead log, which can free room).
        let (mut sweeps, mut events, mut refused) = (1, 0, 0);
        for attempt in 0..3 {
            let results = [
                (
                    "sweep",
                    store.begin_sweep(at, "schedule", false).await.map(|_| ()),
                ),
                ("event", store.record_stop(at).await),
            ];
            for (what, r) in results {
                match r {
                    Ok(()) if what == "sweep" => sweeps += 1,
                    Ok(()) => events += 1,
                    Err(e) => {
                        let e = format!("{e:#}");
                        assert!(e.contains("disk is full"), "attempt {attempt}, {what}: {e}");
                        refused += 1;
                    }
                }
            }
        }
        assert!(refused > 0, "a full filesystem refused nothing");
        std::fs::remove_file(&filler).unwrap();
        // Room again: the same store writes again on every path, without a restart.
        store.begin_sweep(at, "schedule", false).await.unwrap();
        record(&store, &intent(1)).await.unwrap();
        store.record_stop(at).await.unwrap();
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{:?}", v.problems);
        store.close().await;
        assert_eq!(count(&path, "sweeps").await, sweeps + 1);
        assert_eq!(count(&path, "stops").await, 1);
        assert_eq!(count(&path, "lifecycle_events").await, events + 1);
        drop(fs);
    }

    /// The database is private to the daemon's user whatever the umask (seen: 0777 under
    /// umask 000), and a reader never sees half a schema (seen: `no such table: stops` while a
    /// daemon was creating it, and for a 0-byte file).
    #[tokio::test]
    async fn a_new_database_is_private_and_whole_and_an_empty_file_is_named_as_such() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/deeper/audit.db");
        let store = Store::open(&path).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("state/deeper")), 0o700);
        // Nothing temporary is left beside it.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("state/deeper"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("creating"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        record(&store, &intent(1)).await.unwrap();
        assert_eq!(count(&path, "stops").await, 1);
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let e = format!("{:#}", Store::open_read_only(&empty).await.unwrap_err());
        assert!(e.contains("is not a stopd audit database"), "{e}");
    }

    #[tokio::test]
    async fn a_read_only_store_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        Store::open(&path).await.unwrap().close().await;
        let ro = Store::open_read_only(&path).await.unwrap();
        let e = format!("{:#}", record(&ro, &intent(1)).await.unwrap_err());
        assert!(e.contains("read-only"), "{e}");
    }

    /// Records every intent from its own task, all spawned before any runs (the test runtime
    /// has one thread), so their writes are queued together. Results in input order.
    async fn record_all(store: &Store, names: &[(String, String)]) -> Vec<Result<i64>> {
        let mut set = tokio::task::JoinSet::new();
        for (k, n) in names.iter().cloned().enumerate() {
            let store = store.clone();
            set.spawn(async move { (k, record(&store, &n).await) });
        }
        let mut out: Vec<_> = set.join_all().await;
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, r)| r).collect()
    }
}
