//! The group-commit writer: stop intents and outcomes, gate actions and their outcomes, the
//! hot path at a window edge, each committed with every write queued beside it (one
//! transaction, one fsync) and its chain link, and only then answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::{GateAction, GateOutcome, Mode, OutcomeRow, RuleKind, chain, ts};

mod pg;

pub(crate) use pg::{BEGIN_PG, group_commit_pg};

/// At most this many writes share one transaction.
const MAX_BATCH: usize = 512;

/// A write for the group-commit writer, with where to send its result.
pub(crate) enum Write {
    Intent(Box<IntentRow>, oneshot::Sender<Result<i64, String>>),
    Outcome(i64, OutcomeRow, oneshot::Sender<Result<(), String>>),
    /// A gate action, recorded before it is made (`gates`).
    GateIntent(Box<GateRow>, oneshot::Sender<Result<i64, String>>),
    /// How a gate action ended (`gate_outcomes`).
    GateOutcome(GateOutcomeRow, oneshot::Sender<Result<(), String>>),
}

/// A write as queued for the writer: with the epoch of the leader's term it was made in
/// ([`crate::Store::for_term`]), if any. The writer refuses a write of a term that is over
/// (its epoch is not the fence's): a sweep begun under epoch N never writes under epoch N + 1.
pub(crate) struct Queued {
    /// The term the write belongs to (`None`: whatever the fence is).
    pub term: Option<i64>,
    /// The write.
    pub write: Write,
}

/// A gate action's outcome (`gate_outcomes`).
#[derive(Debug)]
pub(crate) struct GateOutcomeRow {
    pub gate_id: i64,
    pub at: DateTime<Utc>,
    pub outcome: GateOutcome,
    pub error: Option<String>,
}

/// A gate action's row (`gates`), formatted for binding.
#[derive(Debug)]
pub(crate) struct GateRow {
    pub at: String,
    pub sweep_id: Option<i64>,
    pub pipeline: String,
    pub stage: String,
    pub rule: String,
    pub action: GateAction,
    pub reason: String,
    pub dry_run: bool,
    pub account: String,
    pub region: String,
}

/// An [`Intent`](crate::Intent), owned and formatted for binding.
pub(crate) struct IntentRow {
    pub at: String,
    pub sweep_id: Option<i64>,
    pub pipeline: String,
    pub execution_id: String,
    pub rule: String,
    pub rule_kind: RuleKind,
    pub mode: Mode,
    pub reason: String,
    pub explanation: String,
    pub dry_run: bool,
    pub escalate_at: Option<String>,
    pub escalation_of: Option<i64>,
    pub account: String,
    pub region: String,
}

/// The INSERT of each write on SQLite, one row a statement (PostgreSQL inserts a batch's rows of
/// one table in one statement: [`pg`]).
macro_rules! apply {
    ($self:expr, $conn:expr, $returning:expr) => {{
        let returning = $returning;
        let conn = $conn;
        match $self {
            Write::Intent(i, _) => sqlx::query(&format!(
                "INSERT INTO stops (at, sweep_id, pipeline, execution_id, rule, rule_kind, mode, reason, \
                 explanation, dry_run, escalate_at, escalation_of, account, region) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {returning}",
            ))
            .bind(&i.at)
            .bind(i.sweep_id)
            .bind(&i.pipeline)
            .bind(&i.execution_id)
            .bind(&i.rule)
            .bind(i.rule_kind)
            .bind(i.mode)
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {returning}",
            ))
            .bind(stop_id)
            .bind(ts(o.at))
            .bind(o.outcome)
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {returning}",
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
            Write::GateOutcome(o, _) => sqlx::query(&format!(
                "INSERT INTO gate_outcomes (gate_id, at, outcome, error) VALUES ($1, $2, $3, $4) \
                 RETURNING {returning}",
            ))
            .bind(o.gate_id)
            .bind(ts(o.at))
            .bind(o.outcome)
            .bind(&o.error)
            .fetch_one(&mut *conn)
            .await,
        }
    }};
}

impl Write {
    /// The audited table it writes to.
    pub(crate) fn table(&self) -> &'static str {
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
        apply!(self, conn, returning)
    }

    pub(crate) fn answer(self, result: Result<i64, String>) {
        // A caller that went away (its task was cancelled) is not told; the row stands.
        match self {
            Write::Intent(_, tx) => {
                let _ = tx.send(result);
            }
            Write::Outcome(_, _, tx) | Write::GateOutcome(_, tx) => {
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
pub(crate) async fn group_commit(
    pool: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    commits: Arc<AtomicU64>,
) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // SQLite has no fence (one host): a write's term was checked when it was queued
        // ([`crate::Store::write`]).
        batch.extend(queued.drain(..).map(|q| q.write));
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
                // `open::out_of_transaction`, would retire it too; this says so where it happens.)
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

/// Whether a failed statement leaves its transaction intact: SQLITE_CONSTRAINT (a key, a
/// CHECK, or an append-only trigger's RAISE(ABORT)). SQLite: its result code (PostgreSQL
/// names a constraint violation by SQLSTATE class 23).
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
pub(crate) fn refused_alone(e: &anyhow::Error) -> bool {
    // SQLite: "... constraint failed"; PostgreSQL: "... violates ... constraint".
    let text = format!("{e:#}");
    text.contains("constraint failed") || text.contains("violates")
}
