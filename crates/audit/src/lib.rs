//! The audit log (sqlx, SQLite today). WAL, `synchronous = FULL` (a committed row survives a
//! power cut), one writer connection, append-only tables (triggers refuse UPDATE and DELETE;
//! see `migrations/`). Timestamps are RFC 3339 UTC strings with milliseconds, so text order is
//! time order. Every SQL statement of the project is in this crate, behind [`Store`] methods.
//!
//! Stop intents and outcomes, the hot path (two per stop), go through a group-commit writer
//! (`writer`): a task that takes every write queued at that moment and commits them in one
//! transaction, one fsync, then answers each caller. A caller hears "written" only after that
//! commit, so the rule "the intent is durable before the call" holds; a lone write is committed
//! at once, never held back to wait for company. At a window edge with hundreds of stops in
//! flight this turns two fsyncs per stop into a few per batch (see BENCHMARKS.md).
//!
//! Backends: [`Store`] holds a `Backend` enum (`Sqlite`, `Postgres`), not a `dyn Backend`
//! trait object: every query stays a plain `async fn` (no boxed futures, no `async_trait`), and
//! callers never see which one runs. A query whose SQL is the same on both is written once,
//! inside `on_pool!`, which type-checks it for each backend (placeholders are `$1`, `$2`, ...,
//! which SQLite reads too); one that differs has a `match` on the backend. A module not yet
//! ported reaches SQLite through `Store::pool`, which answers an error on PostgreSQL
//! ("not available on PostgreSQL yet") instead of a wrong result. SQLite-only spellings are
//! marked `SQLite:` where they need a PostgreSQL one.
//!
//! Modules by record family: [`open`](crate::Store::open) (open, migrate, pragmas, read-only),
//! `writer` (group commit), `stops` (intents, outcomes, escalations, the report), `sweeps`,
//! `exemptions`, `gates`, `freezes`, `runs` (quiet sweeps folded), [`events`] (lifecycle),
//! [`outbox`] (notifications), `status`, [`chain`] and `verify`, [`coverage`], [`digest`];
//! [`vocabulary`] holds every closed set of names, [`Place`] the `default` account.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

pub mod chain;
pub mod copy;
pub mod coverage;
pub mod digest;
mod event_queue;
pub mod events;
mod exemptions;
mod freezes;
mod gates;
pub mod lease;
mod open;
pub mod outbox;
mod place;
mod runs;
#[cfg(test)]
mod size;
mod status;
mod stops;
mod sweeps;
#[cfg(any(test, feature = "testdb"))]
#[doc(hidden)]
pub mod testdb;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_backends;
#[cfg(test)]
mod tests_batch;
#[cfg(test)]
mod tests_copy;
#[cfg(test)]
mod tests_events_queue;
#[cfg(test)]
mod tests_nodes;
#[cfg(test)]
mod tests_records;
mod transient;
mod verify;
pub mod vocabulary;
mod writer;

pub use copy::{Copied, copy};
pub use event_queue::EventQueueState;
pub use exemptions::{ExemptionRecord, Revocation};
pub use freezes::{FreezeRecord, Lift, NewFreeze, rule_name};
pub use gates::{GateRecord, LastGate, NewGate};
pub use open::Location;
pub use place::Place;
pub use runs::{PlaceResult, PlaceSweep};
pub use status::{LastSweep, PolicyLoad};
pub use stops::{AuditRecord, EscalationDue, Intent, OutcomeRow, Pending, ReportFilter};
pub use sweeps::{SweepRecord, SweepResult, sweep_result};
pub use transient::is_transient;
pub use vocabulary::{
    GateAction, GateOutcome, LifecycleEvent, Mode, Outcome, PolicyLoadTrigger, ReloadResult,
    ReportOutcome, RuleKind, SweepEnd, SweepTrigger, SweepVerdict, UnknownName,
};

pub(crate) use stops::OPEN_ESCALATIONS;
use writer::{Queued, Write};

/// How long one statement of ours may run on the server before the server cancels it
/// (`statement_timeout`): a statement stuck behind a lock, or on a server that has stopped
/// making progress, fails instead of holding a sweep, the writer, or a command forever. Ours
/// take milliseconds; the lease's own statements wait at most lease/6 for its row
/// (`lease::bounded`). Set on every session by `open::session_options`; the migrations run
/// without it (one may rebuild a large table, and a node waits for another's migration under
/// the advisory lock).
pub(crate) const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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

/// The audit database.
#[derive(Debug, Clone)]
pub struct Store {
    /// The database, and which kind it is.
    backend: Backend,
    /// The group-commit writer (none for a read-only store).
    writer: Option<mpsc::UnboundedSender<Queued>>,
    /// Transactions the writer committed (for tests and the curious).
    commits: Arc<AtomicU64>,
    /// Quiet sweeps held back and folded into runs ([`runs`]); off unless the daemon asks.
    runs: Arc<tokio::sync::Mutex<runs::Runs>>,
    /// Outcomes of stops that were made but could not be written (a full disk): written again
    /// at each sweep ([`Store::record_unrecorded`]) so that the log heals without a restart.
    unrecorded: Arc<std::sync::Mutex<Vec<(i64, OutcomeRow)>>>,
    /// Who may write stop intents, outcomes and gate actions ([`lease`]); shared with the
    /// writer.
    fence: lease::FenceCell,
    /// While this node leads: no AWS call may start after this instant ([`Store::may_call`]).
    call_deadline: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The epoch of the leader's term this handle works for ([`Store::for_term`]): its fenced
    /// writes and its calls are refused once the fence is another epoch's. Not shared by
    /// clones made with `for_term`; `None` for the daemon's own handle and the commands.
    term: Option<i64>,
    /// The node this store records lifecycle events as ([`Store::set_node`]); `None` on a
    /// single host. Shared by the store's clones.
    node: Arc<std::sync::RwLock<Option<String>>>,
    /// PostgreSQL: the lease's own connection (made at its first use, with the store's
    /// connect options), so that taking and renewing the lease never waits for a connection of
    /// the shared pool that sweeps, commands and a stuck writer may all be holding.
    lease_conn: Arc<std::sync::OnceLock<PgPool>>,
}

/// The database behind a [`Store`]: one variant per kind of database (see the module doc).
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// A SQLite file.
    Sqlite(SqlitePool),
    /// A PostgreSQL database (`postgres://` URL).
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever the backend: a query written
/// once and type-checked for each (a `FromRow` row, a bound value and a decoded column must
/// exist on both).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store.backend() {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Runs `$body` with `$tx` a write transaction on the store's backend ([`Store::begin_write`]
/// or [`Store::begin_write_pg`]): the record's INSERT, [`chain::Chained::link`] and the commit,
/// written once.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match $store.backend() {
            $crate::Backend::Sqlite(_) => {
                let mut $tx = $store.begin_write().await?;
                $body
            }
            $crate::Backend::Postgres(pool) => {
                let mut $tx = $store.begin_write_pg(pool).await?;
                $body
            }
        }
    };
}
pub(crate) use write_tx;

impl Store {
    /// A store over `backend`, its writer (if any) and its counters.
    pub(crate) fn with_backend(
        backend: Backend,
        writer: Option<mpsc::UnboundedSender<Queued>>,
        commits: Arc<AtomicU64>,
    ) -> Store {
        Store {
            backend,
            writer,
            commits,
            runs: Arc::default(),
            unrecorded: Arc::default(),
            fence: Arc::default(),
            call_deadline: Arc::default(),
            term: None,
            node: Arc::default(),
            lease_conn: Arc::default(),
        }
    }

    /// A number that changes when another process (`stopd exempt`, `stopd freeze`) commits
    /// an exemption, a revocation, a freeze or a lift, for the daemon to poll. SQLite: its
    /// `data_version` (any commit of another connection, never this store's own). PostgreSQL:
    /// the number of rows of those four tables, which only the command line writes
    /// (append-only: the count only grows), so the daemon's own writes never move it (a
    /// change makes the daemon re-read them).
    pub async fn data_version(&self) -> Result<i64> {
        match &self.backend {
            Backend::Sqlite(pool) => Ok(sqlx::query_scalar("PRAGMA data_version")
                .fetch_one(pool)
                .await?),
            Backend::Postgres(pool) => Ok(sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM exemptions) \
                      + (SELECT COUNT(*) FROM exemption_revocations) \
                      + (SELECT COUNT(*) FROM freezes) + (SELECT COUNT(*) FROM freeze_lifts)",
            )
            .fetch_one(pool)
            .await?),
        }
    }

    /// Names the node this store (and every clone of it) records lifecycle events as: each
    /// start, reload, stop and leader event carries it, and a start's unclean-stop check looks
    /// only at this node's own last start or stop. Unset (a single host, SQLite), they carry
    /// none and see only the events that carry none.
    pub fn set_node(&self, node: &str) {
        *self
            .node
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(node.to_owned());
    }

    /// The node set with [`Store::set_node`].
    pub fn node(&self) -> Option<String> {
        self.node
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The backend, for [`on_pool!`] and per-backend queries.
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The function that answers the largest of its arguments: SQLite's scalar `MAX`,
    /// PostgreSQL's `GREATEST`.
    pub(crate) fn greatest(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "MAX",
            Backend::Postgres(_) => "GREATEST",
        }
    }

    /// The SQLite pool, for a query not yet written for PostgreSQL: on PostgreSQL, an error
    /// naming what is missing rather than a wrong answer.
    pub(crate) fn pool(&self) -> Result<&SqlitePool> {
        match &self.backend {
            Backend::Sqlite(pool) => Ok(pool),
            Backend::Postgres(_) => {
                bail!("this audit operation is not available on PostgreSQL yet (issue 28)")
            }
        }
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
        // A term that is over writes nothing (the writer checks again against the fence it
        // commits under: PostgreSQL).
        if let Some(e) = lease::term_refuses(self.term, &self.fence()) {
            return Err(e);
        }
        let (tx, rx) = oneshot::channel();
        writer
            .send(Queued {
                term: self.term,
                write: make(tx),
            })
            .map_err(|_| anyhow::anyhow!("the audit writer has stopped"))?;
        match rx.await {
            Ok(r) => r.map_err(|e| anyhow::anyhow!(e)),
            Err(_) => bail!("the audit writer stopped before committing"),
        }
    }

    /// A write transaction for a record written outside the group-commit writer, taken with
    /// `BEGIN IMMEDIATE` so that two processes (the daemon, `stopd exempt`) never read the same
    /// chain head: the record and its chain link are committed together or not at all.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        if self.writer.is_none() {
            bail!("the audit database was opened read-only");
        }
        // SQLite: BEGIN IMMEDIATE takes the write lock at once (PostgreSQL: a plain BEGIN and
        // a lock on the chain head).
        self.pool()?
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("cannot begin an audit transaction")
    }

    /// [`Store::begin_write`] on PostgreSQL: a transaction that first takes `LOCK TABLE
    /// audit_chain IN EXCLUSIVE MODE`, so that two writers (the daemon, `stopd exempt`, another
    /// node) never read the same chain head; readers are not blocked.
    pub(crate) async fn begin_write_pg(
        &self,
        pool: &PgPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        if self.writer.is_none() {
            bail!("the audit database was opened read-only");
        }
        pool.begin_with(writer::BEGIN_PG)
            .await
            .context("cannot begin an audit transaction")
    }

    /// Closes the pool, flushing nothing that is not already durable.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await);
    }
}
