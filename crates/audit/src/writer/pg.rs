//! The group-commit writer on PostgreSQL: a batch in a few round trips to the server, whatever
//! its size (issue 28: a database 5 ms away must not cost 5 ms per record).
//!
//! A batch is one transaction of, in the normal case:
//!
//! 1. `BEGIN; LOCK TABLE audit_chain IN EXCLUSIVE MODE; SELECT` the chain's head and, when the
//!    store is fenced, the lease row `FOR KEY SHARE` ([`crate::lease::head_and_fence_sql`]): one
//!    simple query, one round trip;
//! 2. one INSERT per table the batch writes to (`stops`, `gates`, `stop_outcomes`,
//!    `gate_outcomes`: usually one), its rows' values bound as arrays and unnested, so the
//!    statement is the same for every batch size and stays prepared;
//! 3. the chain rows ([`chain::Linker::take_pending_sql_pg`]) and `COMMIT`, one simple query;
//!    when writes are already queued, the same query begins the next batch's transaction
//!    (step 1), so a busy writer's batch of one table costs two round trips.
//!
//! Each table's columns are read once per writer, not once per batch. The records are chained in
//! the batch's order from the rows their INSERTs returned, exactly as one INSERT a record would
//! chain them.
//!
//! A statement refused by a constraint aborts a PostgreSQL transaction, and a multi-row INSERT
//! is refused as a whole. So when one fails on a constraint (SQLSTATE class 23: a second outcome
//! for one stop, an unknown stop id), the batch is rolled back and written again the slow way:
//! one INSERT a write, each under a savepoint, so that only the offending write fails (the
//! identity values the first attempt drew are not reused: ids then have a gap, as PostgreSQL's
//! sequences always may). Anything else fails the batch as one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, Executor, PgConnection, Postgres, Row};
use tokio::sync::mpsc;

use super::{MAX_BATCH, Queued, Write};
use crate::chain;
use crate::lease::{self, Fence, FenceCell};

/// A write transaction's start on PostgreSQL: the chain's lock first (SQLite: BEGIN
/// IMMEDIATE), in one round trip (sqlx sends a custom BEGIN as one simple query, which may
/// hold two statements).
pub(crate) const BEGIN_PG: &str = "BEGIN; LOCK TABLE audit_chain IN EXCLUSIVE MODE";

/// How long a batch may take, from its connection to its COMMIT's answer, before the writer
/// gives up on it and closes its connection: each statement is bounded by the server
/// (`statement_timeout`, [`crate::STATEMENT_TIMEOUT`]), and a batch is a few statements;
/// this bounds what the server cannot, a connection gone half-open. Its writers hear "not
/// written", as when a COMMIT's answer is lost (an intent not known to be written is a call
/// not made; it stays pending if it was, and the next leader or start resolves it).
const BATCH_BOUND: std::time::Duration = crate::STATEMENT_TIMEOUT.saturating_mul(2);

/// The tables the writer writes to, in the order a batch inserts them (a record before any
/// outcome that could name it).
const TABLES: [&str; 4] = ["stops", "gates", "stop_outcomes", "gate_outcomes"];

/// The columns a batch binds for `table`, in binding order, with their PostgreSQL types (each
/// bound as an array of that type). The table's key is bound when the write names it (an
/// outcome's stop or gate); else it is drawn from the table's identity sequence.
fn bound_columns(table: &str) -> &'static [(&'static str, &'static str)] {
    match table {
        "stops" => &[
            ("at", "text"),
            ("sweep_id", "int8"),
            ("pipeline", "text"),
            ("execution_id", "text"),
            ("rule", "text"),
            ("rule_kind", "text"),
            ("mode", "text"),
            ("reason", "text"),
            ("explanation", "text"),
            ("dry_run", "bool"),
            ("escalate_at", "text"),
            ("escalation_of", "int8"),
            ("account", "text"),
            ("region", "text"),
        ],
        "stop_outcomes" => &[
            ("stop_id", "int8"),
            ("at", "text"),
            ("outcome", "text"),
            ("attempts", "int8"),
            ("throttled", "int8"),
            ("elapsed_ms", "int8"),
            ("error", "text"),
            ("reconciled", "bool"),
        ],
        "gates" => &[
            ("at", "text"),
            ("sweep_id", "int8"),
            ("pipeline", "text"),
            ("stage", "text"),
            ("rule", "text"),
            ("action", "text"),
            ("reason", "text"),
            ("dry_run", "bool"),
            ("account", "text"),
            ("region", "text"),
        ],
        "gate_outcomes" => &[
            ("gate_id", "int8"),
            ("at", "text"),
            ("outcome", "text"),
            ("error", "text"),
        ],
        _ => &[],
    }
}

/// The name of a row's place in its batch (1, 2, ...), as the INSERT returns it.
const ORD: &str = "batch_ord";

/// The INSERT of a batch's rows of `table` (`returning`: [`chain::Linker::returning_pg`]):
/// the arrays unnested with their ordinality; the rows' keys drawn first (or bound), so that
/// each returned row is matched to its write by its place in the batch, not by the order
/// PostgreSQL happens to return rows in. `table` and the columns are ours, never user input.
fn batch_sql(table: &str, returning: &str) -> String {
    let cols = bound_columns(table);
    let key = chain::key(table);
    let names: Vec<String> = cols.iter().map(|(c, _)| format!("\"{c}\"")).collect();
    let names = names.join(", ");
    let arrays: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(k, (_, ty))| format!("${}::{ty}[]", k + 1))
        .collect();
    let arrays = arrays.join(", ");
    let (drawn, key_col) = if cols.iter().any(|(c, _)| *c == key) {
        (String::new(), String::new())
    } else {
        (
            format!(
                "nextval((SELECT pg_get_serial_sequence('\"{table}\"', '{key}'))) AS \"{key}\", "
            ),
            format!("\"{key}\", "),
        )
    };
    format!(
        "WITH src AS MATERIALIZED (\
            SELECT {drawn}u.* FROM unnest({arrays}) WITH ORDINALITY AS u({names}, {ORD})), \
         ins AS (\
            INSERT INTO \"{table}\" ({key_col}{names}) SELECT {key_col}{names} FROM src \
            RETURNING {returning}) \
         SELECT ins.*, src.{ORD} FROM ins JOIN src ON src.\"{key}\" = ins.{rowid}",
        rowid = chain::ROWID,
    )
}

/// Every value of one column of `writes` (all of one variant), in batch order.
macro_rules! column {
    ($writes:expr, $variant:pat => $value:expr) => {
        $writes
            .iter()
            .filter_map(|w| match w {
                $variant => Some($value),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
}

/// Binds the arrays of [`bound_columns`] for `writes`, all of `table`.
fn bind_rows<'q>(
    q: Query<'q, Postgres, PgArguments>,
    table: &str,
    writes: &[&'q Write],
) -> Query<'q, Postgres, PgArguments> {
    match table {
        "stops" => q
            .bind(column!(writes, Write::Intent(i, _) => i.at.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.sweep_id))
            .bind(column!(writes, Write::Intent(i, _) => i.pipeline.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.execution_id.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.rule.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.rule_kind.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.mode.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.reason.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.explanation.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.dry_run))
            .bind(column!(writes, Write::Intent(i, _) => i.escalate_at.as_deref()))
            .bind(column!(writes, Write::Intent(i, _) => i.escalation_of))
            .bind(column!(writes, Write::Intent(i, _) => i.account.as_str()))
            .bind(column!(writes, Write::Intent(i, _) => i.region.as_str())),
        "stop_outcomes" => q
            .bind(column!(writes, Write::Outcome(id, _, _) => *id))
            .bind(column!(writes, Write::Outcome(_, o, _) => crate::ts(o.at)))
            .bind(column!(writes, Write::Outcome(_, o, _) => o.outcome.as_str()))
            .bind(column!(writes, Write::Outcome(_, o, _) => i64::from(o.attempts)))
            .bind(column!(writes, Write::Outcome(_, o, _) => i64::from(o.throttled)))
            .bind(column!(writes, Write::Outcome(_, o, _) =>
                i64::try_from(o.elapsed.as_millis()).unwrap_or(i64::MAX)))
            .bind(column!(writes, Write::Outcome(_, o, _) => o.error.as_deref()))
            .bind(column!(writes, Write::Outcome(_, o, _) => o.reconciled)),
        "gates" => q
            .bind(column!(writes, Write::GateIntent(g, _) => g.at.as_str()))
            .bind(column!(writes, Write::GateIntent(g, _) => g.sweep_id))
            .bind(column!(writes, Write::GateIntent(g, _) => g.pipeline.as_str()))
            .bind(column!(writes, Write::GateIntent(g, _) => g.stage.as_str()))
            .bind(column!(writes, Write::GateIntent(g, _) => g.rule.as_str()))
            .bind(column!(writes, Write::GateIntent(g, _) => g.action.as_str()))
            .bind(column!(writes, Write::GateIntent(g, _) => g.reason.as_str()))
            .bind(column!(writes, Write::GateIntent(g, _) => g.dry_run))
            .bind(column!(writes, Write::GateIntent(g, _) => g.account.as_str()))
            .bind(column!(writes, Write::GateIntent(g, _) => g.region.as_str())),
        "gate_outcomes" => q
            .bind(column!(writes, Write::GateOutcome(o, _) => o.gate_id))
            .bind(column!(writes, Write::GateOutcome(o, _) => crate::ts(o.at)))
            .bind(column!(writes, Write::GateOutcome(o, _) => o.outcome.as_str()))
            .bind(column!(writes, Write::GateOutcome(o, _) => o.error.as_deref())),
        _ => q,
    }
}

/// What a writer keeps from one batch to the next: its connection, the chain's linker (with
/// each table's columns) and each table's batch INSERT.
///
/// The connection is the writer's own, taken out of the pool (`detach`): the pool tests a
/// connection with a round trip when it lends it and again when it gets it back, and each
/// connection prepares each statement once, so a batch on a pooled connection cost up to four
/// more round trips. The writer's transactions are begun and committed by simple queries it
/// sends itself (BEGIN with the lock and the head, the chain rows with COMMIT), not by sqlx's
/// `Transaction`; so on any failure, and if the writer is dropped mid-batch, the connection
/// is dropped, which closes it: the server rolls back whatever it held.
#[derive(Default)]
struct PgWriter {
    conn: Option<PgConnection>,
    linker: chain::Linker,
    sql: HashMap<&'static str, String>,
    /// Whether the batch's transaction has begun (so something of it may have run).
    began: bool,
    /// The next batch's transaction, begun by the last commit (see [`PgWriter::commit`]).
    next: Option<Begun>,
}

/// A transaction begun ahead, with the node and epoch its fence was checked for and the row
/// [`lease::head_and_fence_sql`] read.
struct Begun {
    leader: Option<(String, i64)>,
    row: PgRow,
}

/// The node and epoch to begin the next batch's transaction for, when writes are queued for
/// it (`Some`; its inner `None`: no fence) and the fence lets them be written.
pub(crate) type Ahead<'a> = &'a (dyn Fn() -> Option<Option<(String, i64)>> + Sync);

/// A batch's result: each write's id, or why it alone was refused.
type Results = Vec<Result<i64, String>>;

impl PgWriter {
    /// Writes a batch and commits it; on failure the connection is gone (nothing of the batch
    /// was committed). A connection kept from an earlier batch that fails before the batch
    /// began (the server restarted, or closed it while idle) is replaced once.
    async fn write(
        &mut self,
        pool: &PgPool,
        batch: &[Write],
        fence: &Fence,
        ahead: Ahead<'_>,
    ) -> anyhow::Result<Results> {
        // A standby refuses without asking the database.
        let leader = if batch.iter().any(|w| lease::fenced(w.table())) {
            match lease::leader(fence) {
                Ok(leader) => leader,
                Err(e) => {
                    // Not a transaction begun ahead held open meanwhile: closed, rolled back.
                    if self.next.take().is_some() {
                        self.conn = None;
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        loop {
            let kept = self.conn.is_some();
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => pool.acquire().await?.detach(),
            };
            self.began = false;
            let written = match self.fast(&mut conn, batch, leader, ahead).await {
                Ok(Some(results)) => Ok(results),
                Ok(None) => self.slow(&mut conn, batch, leader, ahead).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(results) => {
                    self.conn = Some(conn);
                    return Ok(results);
                }
                Err(e) => {
                    // The connection is dropped (closed), and any transaction it held with it.
                    self.next = None;
                    // Once more on a new connection only if the kept one failed before
                    // anything of the batch ran.
                    if !kept || self.began {
                        return Err(e);
                    }
                    tracing::debug!(error = %format!("{e:#}"), "the audit writer's connection failed; reconnecting");
                }
            }
        }
    }

    /// Begins a batch's transaction in one round trip: BEGIN, the chain's lock, its head and
    /// the fence ([`lease::head_and_fence_sql`]). Or takes the one the last commit began, if it
    /// checked the fence for the same node and epoch (else rolls it back).
    async fn begin(
        &mut self,
        conn: &mut PgConnection,
        leader: Option<(&str, i64)>,
    ) -> anyhow::Result<()> {
        let row = match self.next.take() {
            Some(begun) if begun.leader.as_ref().map(|(n, e)| (n.as_str(), *e)) == leader => {
                self.began = true;
                begun.row
            }
            begun => {
                if begun.is_some() {
                    self.began = true;
                    conn.execute("ROLLBACK").await?;
                }
                let sql = format!("{BEGIN_PG}; {}", lease::head_and_fence_sql(leader));
                let rows = conn.fetch_all(sql.as_str()).await?;
                self.began = true;
                rows.into_iter()
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("no chain head read"))?
            }
        };
        self.linker.restart(lease::head_if_leading(&row, leader)?);
        Ok(())
    }

    /// Writes the chain rows and commits, in one round trip. When writes are already queued
    /// for the next batch (`ahead`), the same round trip begins its transaction (BEGIN, the
    /// lock, the head and the fence after the COMMIT): a busy writer's batch then costs one
    /// round trip less. The transaction is held open only while a batch is ready to use it.
    async fn commit(&mut self, conn: &mut PgConnection, ahead: Ahead<'_>) -> anyhow::Result<()> {
        let mut sql = self.linker.take_pending_sql_pg() + "COMMIT";
        let next = ahead();
        if let Some(leader) = &next {
            let leader = leader.as_ref().map(|(n, e)| (n.as_str(), *e));
            sql = format!("{sql}; {BEGIN_PG}; {}", lease::head_and_fence_sql(leader));
        }
        // An error here fails the batch, even one after the COMMIT (the connection lost while
        // the next transaction began): its writers hear "not written", as when a COMMIT's
        // answer is lost, never "written" for a write that was not.
        let rows = conn.fetch_all(sql.as_str()).await?;
        if let Some(leader) = next {
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("no chain head read"))?;
            self.next = Some(Begun { leader, row });
        }
        Ok(())
    }

    /// Inserts `writes` (all of `table`) in one statement; returns their rows in their order.
    async fn insert(
        &mut self,
        conn: &mut PgConnection,
        table: &'static str,
        writes: &[&Write],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        if !self.sql.contains_key(table) {
            let returning = self.linker.returning_pg(conn, table).await?;
            self.sql.insert(table, batch_sql(table, &returning));
        }
        let q = bind_rows(sqlx::query(&self.sql[table]), table, writes);
        let returned = q.fetch_all(&mut *conn).await?;
        let mut rows: Vec<Option<PgRow>> = (0..writes.len()).map(|_| None).collect();
        for row in returned {
            let ord: i64 = row.try_get(ORD)?;
            let slot = usize::try_from(ord - 1)
                .ok()
                .and_then(|k| rows.get_mut(k))
                .filter(|s| s.is_none())
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!("{table}: row {ord} returned twice"))
                })?;
            *slot = Some(row);
        }
        rows.into_iter()
            .enumerate()
            .map(|(k, r)| {
                r.ok_or_else(|| {
                    sqlx::Error::Protocol(format!("{table}: row {} not returned", k + 1))
                })
            })
            .collect()
    }

    /// The batch in one transaction, one INSERT a table. `None`: a write was refused by a
    /// constraint; nothing of the batch is written (the transaction is rolled back).
    async fn fast(
        &mut self,
        conn: &mut PgConnection,
        batch: &[Write],
        leader: Option<(&str, i64)>,
        ahead: Ahead<'_>,
    ) -> anyhow::Result<Option<Results>> {
        self.begin(conn, leader).await?;
        let mut rows: Vec<Option<PgRow>> = (0..batch.len()).map(|_| None).collect();
        for table in TABLES {
            let (places, writes): (Vec<usize>, Vec<&Write>) = batch
                .iter()
                .enumerate()
                .filter(|(_, w)| w.table() == table)
                .unzip();
            if writes.is_empty() {
                continue;
            }
            match self.insert(conn, table, &writes).await {
                Ok(returned) => {
                    for (k, row) in places.into_iter().zip(returned) {
                        rows[k] = Some(row);
                    }
                }
                Err(e) if fails_alone_pg(&e) => {
                    conn.execute("ROLLBACK").await?;
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Chained in the batch's order, as the slow way chains them.
        let mut results = Vec::with_capacity(batch.len());
        for (w, row) in batch.iter().zip(rows) {
            let row = row.ok_or_else(|| anyhow::anyhow!("{}: a write not inserted", w.table()))?;
            let rowid = self.linker.link_returned_pg(conn, w.table(), &row).await?;
            results.push(Ok(rowid));
        }
        self.commit(conn, ahead).await?;
        Ok(Some(results))
    }

    /// The batch in one transaction, one INSERT a write, each under a savepoint: a write
    /// refused by a constraint fails alone.
    async fn slow(
        &mut self,
        conn: &mut PgConnection,
        batch: &[Write],
        leader: Option<(&str, i64)>,
        ahead: Ahead<'_>,
    ) -> anyhow::Result<Results> {
        self.begin(conn, leader).await?;
        let mut results = Vec::with_capacity(batch.len());
        for w in batch {
            conn.execute("SAVEPOINT audit_write").await?;
            match self.insert(conn, w.table(), &[w]).await {
                Ok(mut rows) => {
                    conn.execute("RELEASE SAVEPOINT audit_write").await?;
                    let row = rows
                        .pop()
                        .ok_or_else(|| anyhow::anyhow!("{}: a write not inserted", w.table()))?;
                    let rowid = self.linker.link_returned_pg(conn, w.table(), &row).await?;
                    results.push(Ok(rowid));
                }
                Err(e) if fails_alone_pg(&e) => {
                    conn.execute("ROLLBACK TO SAVEPOINT audit_write").await?;
                    results.push(Err(e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.commit(conn, ahead).await?;
        Ok(results)
    }
}

/// The group-commit writer on PostgreSQL: as [`super::group_commit`], one transaction a batch
/// (see the module's documentation for its statements). The chain's head is serialized by
/// `LOCK TABLE audit_chain IN EXCLUSIVE MODE`, first in the transaction (SQLite: BEGIN
/// IMMEDIATE): a writer elsewhere (`stopd exempt`, another node) waits for the commit, readers
/// do not.
///
/// Fencing ([`crate::lease`]): when the batch holds a stop intent, outcome or gate action and
/// the store is fenced, the lease row is read `FOR KEY SHARE` after the chain's lock and must still
/// name this node and epoch; if not, the whole batch fails ("fenced"), and no caller calls AWS.
/// A standby's store refuses the batch without asking the database.
pub(crate) async fn group_commit_pg(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    commits: Arc<AtomicU64>,
    fence_cell: FenceCell,
) {
    let mut writer = PgWriter::default();
    let mut queued = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // Writes sent in the same instant by tasks that are ready to run join this batch (one
        // yield: no write waits for company, but a burst is not split at its first write).
        tokio::task::yield_now().await;
        while queued.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => queued.push(w),
                Err(_) => break,
            }
        }
        let fence = fence_cell
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // A write of a term that is over (its epoch is not this fence's) is refused alone; the
        // rest are written under this fence, which the transaction checks against the lease
        // row: a write of epoch N commits only while the lease is still at epoch N.
        for q in queued.drain(..) {
            match lease::term_refuses(q.term, &fence) {
                Some(e) => q.write.answer(Err(format!("{e:#}"))),
                None => batch.push(q.write),
            }
        }
        if batch.is_empty() {
            continue;
        }
        let ahead = || {
            if rx.is_empty() {
                return None;
            }
            match &*fence_cell
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                Fence::Off => Some(None),
                Fence::Leader { node, epoch } => Some(Some((node.clone(), *epoch))),
                Fence::Standby => None,
            }
        };
        // A connection that went half-open mid-batch (a database failover, a partition) would
        // otherwise hold every intent forever: sqlx sets no TCP keepalive on its sockets, and
        // the server's statement_timeout cannot answer through a dead connection.
        let written = tokio::time::timeout(BATCH_BOUND, writer.write(&pool, &batch, &fence, &ahead))
            .await
            .unwrap_or_else(|_| {
                // Dropped with the batch's future: the connection (closed), and whatever it held.
                writer.conn = None;
                writer.next = None;
                Err(anyhow::anyhow!(
                    "no answer from the audit database within {} s (the connection is closed; the batch is not written)",
                    BATCH_BOUND.as_secs()
                ))
            });
        match written {
            Ok(results) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (w, r) in batch.drain(..).zip(results) {
                    w.answer(r);
                }
            }
            Err(e) => {
                // Every caller hears "not written", so no call is made on the strength of it;
                // nothing of the batch was committed, and its connection is closed.
                let e = format!("the audit transaction failed: {e:#}");
                tracing::error!(writes = batch.len(), error = %e, "audit log write failed");
                for w in batch.drain(..) {
                    w.answer(Err(e.clone()));
                }
            }
        }
    }
    if let Some(conn) = writer.conn.take() {
        let _ = conn.close().await;
    }
}

/// Whether a PostgreSQL statement failed on its own record: an integrity constraint (SQLSTATE
/// class 23: unique, check, foreign key, not null) or the append-only trigger (23001).
fn fails_alone_pg(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("23"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::writer::IntentRow;
    use crate::{Backend, Mode, RuleKind, Store, testdb};

    /// `n` stop intents (their answers go nowhere: [`PgWriter::write`] returns them).
    fn intents(n: usize) -> Vec<Write> {
        (0..n)
            .map(|k| {
                let row = IntentRow {
                    at: "2026-12-04T09:30:00.000Z".into(),
                    sweep_id: None,
                    pipeline: format!("p{k}"),
                    execution_id: format!("e{k}"),
                    rule: "release-freeze".into(),
                    rule_kind: RuleKind::Freeze,
                    mode: Mode::Finish,
                    reason: "frozen".into(),
                    explanation: "window".into(),
                    dry_run: false,
                    escalate_at: None,
                    escalation_of: None,
                    account: "111122223333".into(),
                    region: "eu-west-1".into(),
                };
                Write::Intent(Box::new(row), oneshot::channel().0)
            })
            .collect()
    }

    fn pool(store: &Store) -> &PgPool {
        match store.backend() {
            Backend::Postgres(pool) => pool,
            Backend::Sqlite(_) => panic!("a SQLite store"),
        }
    }

    fn ids(results: Results) -> Vec<i64> {
        results.into_iter().map(Result::unwrap).collect()
    }

    /// With writes waiting, a commit begins the next batch's transaction in the same round
    /// trip, and the next batch is written in it, chained on from the head it read.
    #[tokio::test]
    async fn a_commit_begins_the_next_batch_when_writes_wait() {
        let Some(db) = testdb::postgres().await else {
            return;
        };
        let store = Store::open(db.location()).await.unwrap();
        let mut w = PgWriter::default();
        let waiting = || Some(None);
        let none = || None;
        let first = w
            .write(pool(&store), &intents(3), &Fence::Off, &waiting)
            .await;
        assert_eq!(ids(first.unwrap()), [1, 2, 3]);
        assert!(w.next.is_some(), "the next transaction is begun");
        let second = w.write(pool(&store), &intents(2), &Fence::Off, &none).await;
        assert_eq!(ids(second.unwrap()), [4, 5]);
        assert!(w.next.is_none());
        assert_eq!(store.chain_head().await.unwrap().0, 5);
        assert!(store.verify().await.unwrap().problems.is_empty());
        store.close().await;
    }

    /// A transaction begun ahead for one node and epoch is not used by a batch fenced for
    /// another: it is rolled back and the fence checked afresh (and refuses). When the store
    /// has become a standby meanwhile, the batch is refused and the transaction begun ahead
    /// is closed, not left holding the chain's lock.
    #[tokio::test]
    async fn a_transaction_begun_ahead_is_not_used_under_another_fence() {
        let Some(db) = testdb::postgres().await else {
            return;
        };
        let store = Store::open(db.location()).await.unwrap();
        let lease = Duration::from_secs(60);
        assert_eq!(store.acquire_lease("a", 1, lease).await.unwrap().0, Some(1));
        let a1 = Fence::Leader {
            node: "a".into(),
            epoch: 1,
        };
        let a2 = Fence::Leader {
            node: "a".into(),
            epoch: 2,
        };
        let waiting = || Some(Some(("a".to_owned(), 1)));
        let none = || None;
        let pool = pool(&store);

        assert_eq!(ids(w_ok(&mut PgWriter::default(), pool, &a1).await), [1]);
        let mut w = PgWriter::default();
        w.write(pool, &intents(1), &a1, &waiting).await.unwrap();
        assert!(w.next.is_some());
        let e = w.write(pool, &intents(1), &a2, &none).await.unwrap_err();
        assert!(format!("{e:#}").contains("fenced"), "{e:#}");
        assert!(w.conn.is_none(), "a failed batch's connection is closed");

        w.write(pool, &intents(1), &a1, &waiting).await.unwrap();
        assert!(w.next.is_some());
        let e = w
            .write(pool, &intents(1), &Fence::Standby, &none)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("fenced"), "{e:#}");
        assert!(w.conn.is_none() && w.next.is_none());
        // The chain's lock is free (within the 5 s after which the server would end an idle
        // transaction itself).
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("LOCK TABLE audit_chain IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        assert_eq!(store.chain_head().await.unwrap().0, 3);
        assert!(store.verify().await.unwrap().problems.is_empty());
        store.close().await;
    }

    /// One intent written by `w` under `fence`, nothing waiting.
    async fn w_ok(w: &mut PgWriter, pool: &PgPool, fence: &Fence) -> Results {
        w.write(pool, &intents(1), fence, &|| None).await.unwrap()
    }
}
