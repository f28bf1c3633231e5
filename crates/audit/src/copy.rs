//! `stopd copy`: a whole audit log from one database to another (SQLite to PostgreSQL, back,
//! or between two of a kind), chain intact: `verify` on the copy prints the source's head.
//!
//! - The source is read in one snapshot (a read transaction; on PostgreSQL `REPEATABLE READ`),
//!   so a daemon may keep writing to it: the copy is the log as it was at one instant. Its
//!   schema must be this version's (every migration applied, none unknown).
//! - The target is created or migrated as [`Store::open`] does, and refused when any table the
//!   copy writes holds a row (checked before it is migrated, so a refused target is left as it
//!   was, and again inside the copy's transaction).
//! - Every row of every table in [`TABLES`] is copied with its ids, each value as it is stored
//!   (a boolean is 0 or 1 on SQLite, TRUE or FALSE on PostgreSQL: the same canonical bytes), so
//!   every chain record's canonical bytes are the same on the target. A value whose kind is not
//!   its column's (a text in an integer column, which SQLite allows) is refused, naming table,
//!   column and row: it would not verify.
//! - All of it in one transaction on the target, which also resets PostgreSQL's id sequences
//!   (later inserts continue after the copied ids) and recomputes the chain: the transaction
//!   commits only when the copy verifies with the source's head. A failed copy leaves the
//!   target empty.

use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Connection, PgConnection, Row, TypeInfo, ValueRef};

use crate::open::{MIGRATOR, PG_MIGRATOR};
use crate::verify::{Conn, verify_conn};
use crate::{Backend, Location, Store, chain};

/// Every table `copy` copies, parents before the rows that refer to them.
pub const TABLES: &[&str] = &[
    "sweeps",
    "sweep_results",
    "stops",
    "stop_outcomes",
    "exemptions",
    "exemption_revocations",
    "freezes",
    "freeze_lifts",
    "gates",
    "gate_outcomes",
    "lifecycle_events",
    "unwatched_windows",
    "sweep_runs",
    "audit_chain",
    "notify_targets",
    "notify_delivered",
    "policy_loads",
    "sweep_run_open",
    "place_sweeps",
];

/// Tables of the schema `copy` leaves behind: the migrator's own, and the chain's one-off
/// backfill marker (a source that still has it is refused: its schema is not this version's),
/// the leader's lease (state, not a record: a copy's nodes start a lease of their own), and the
/// event consumer's view of its queue (state the next consumer writes again).
#[cfg(test)]
pub(crate) const NOT_COPIED: &[&str] = &[
    "_sqlx_migrations",
    "audit_chain_backfill",
    "leader_lease",
    "event_queue",
];

/// Rows read from the source per statement.
const PAGE: i64 = 1000;

/// Bound values per INSERT (SQLite allows 32,766, PostgreSQL 65,535).
const BINDS_PER_INSERT: usize = 30_000;

/// What a copy wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    /// Rows copied per table, in [`TABLES`] order.
    pub tables: Vec<(&'static str, u64)>,
    /// The chain's head on the copy (the source's): its sequence number (0: empty)...
    pub head_seq: i64,
    /// ...and its hash, hex.
    pub head_hash: String,
}

/// A stored value. Booleans are integers (0, 1), as SQLite stores them.
#[derive(Debug, Clone)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a target column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Bool,
    Text,
    Blob,
}

/// A value ready to bind to its column.
#[derive(Debug, Clone)]
enum Bound {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

/// Copies the audit log at `from` into the empty (or missing) database at `to`.
pub async fn copy(from: &Location, to: &Location) -> Result<Copied> {
    refuse_if_not_empty(to).await?;
    let source = Store::open_read_only(from.clone()).await?;
    let copied = async {
        // Before the target is made: a refused source leaves no trace.
        match source.backend() {
            Backend::Sqlite(pool) => {
                same_schema(&mut Conn::Sqlite(&mut *pool.acquire().await?), from).await?;
            }
            Backend::Postgres(pool) => {
                same_schema(&mut Conn::Postgres(&mut *pool.acquire().await?), from).await?;
            }
        }
        let target = Store::open(to.clone()).await?;
        let copied = copy_between(&source, &target, from, to).await;
        target.close().await;
        copied
    }
    .await;
    source.close().await;
    copied
}

/// Refuses a target that already holds audit rows, before anything (a migration) touches it.
async fn refuse_if_not_empty(to: &Location) -> Result<()> {
    match to {
        Location::Sqlite(path) => {
            if !path.exists() {
                return Ok(());
            }
            let store = Store::open_read_only(to.clone()).await?;
            let found = match store.backend() {
                Backend::Sqlite(pool) => {
                    first_rows(&mut Conn::Sqlite(&mut *pool.acquire().await?)).await
                }
                Backend::Postgres(_) => unreachable!("a path is SQLite"),
            };
            store.close().await;
            refuse(to, found?)
        }
        Location::Postgres(url) => {
            let options = PgConnectOptions::from_str(url)
                .with_context(|| format!("{to} is not a PostgreSQL URL that parses"))?;
            let mut conn = PgConnection::connect_with(&options)
                .await
                .with_context(|| crate::open::unreachable(&options))?;
            let found = first_rows(&mut Conn::Postgres(&mut conn)).await;
            let _ = conn.close().await;
            refuse(to, found?)
        }
    }
}

/// An error naming the first table that holds rows, if any.
fn refuse(to: &Location, found: Option<(&str, i64)>) -> Result<()> {
    match found {
        None => Ok(()),
        Some((table, n)) => bail!(
            "{to} is not empty: its table {table} holds {n} row(s); copy writes only into an empty \
             database (a new SQLite path, or a PostgreSQL database without audit rows)"
        ),
    }
}

/// The first table of [`TABLES`] that exists and holds rows, and how many.
async fn first_rows(conn: &mut Conn<'_>) -> Result<Option<(&'static str, i64)>> {
    for table in TABLES {
        if !conn.has_table(table).await? {
            continue;
        }
        let sql = format!("SELECT COUNT(*) FROM \"{table}\"");
        let n: i64 = match conn {
            Conn::Sqlite(c) => sqlx::query_scalar(&sql).fetch_one(&mut **c).await?,
            Conn::Postgres(c) => sqlx::query_scalar(&sql).fetch_one(&mut **c).await?,
        };
        if n > 0 {
            return Ok(Some((table, n)));
        }
    }
    Ok(None)
}

/// The copy proper: the source's snapshot into the target's transaction, committed only when
/// it verifies with the source's head.
async fn copy_between(
    source: &Store,
    target: &Store,
    from: &Location,
    to: &Location,
) -> Result<Copied> {
    match source.backend() {
        Backend::Sqlite(pool) => {
            // One read transaction: a snapshot from its first read on (WAL).
            let mut tx = pool.begin().await?;
            into_target(&mut Conn::Sqlite(&mut tx), target, from, to).await
        }
        Backend::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            into_target(&mut Conn::Postgres(&mut tx), target, from, to).await
        }
    }
}

/// The target's transaction around [`copy_rows`]: the write lock of [`Store::begin_write`]
/// (or `begin_write_pg`), so no writer (a daemon started on it meanwhile) comes between.
async fn into_target(
    src: &mut Conn<'_>,
    target: &Store,
    from: &Location,
    to: &Location,
) -> Result<Copied> {
    let fail = || format!("cannot copy the audit log from {from} to {to}");
    match target.backend() {
        Backend::Sqlite(_) => {
            let mut tx = target.begin_write().await?;
            let copied = copy_rows(src, &mut Conn::Sqlite(&mut tx), from, to)
                .await
                .with_context(fail)?;
            tx.commit().await.with_context(fail)?;
            Ok(copied)
        }
        Backend::Postgres(pool) => {
            let mut tx = target.begin_write_pg(pool).await?;
            let copied = copy_rows(src, &mut Conn::Postgres(&mut tx), from, to)
                .await
                .with_context(fail)?;
            tx.commit().await.with_context(fail)?;
            Ok(copied)
        }
    }
}

/// Every row of [`TABLES`] from `src` to `dst`, the sequences reset, the copy verified.
async fn copy_rows(
    src: &mut Conn<'_>,
    dst: &mut Conn<'_>,
    from: &Location,
    to: &Location,
) -> Result<Copied> {
    refuse(to, first_rows(dst).await?)?;
    let (head_seq, head_hash) = head(src).await?;
    let mut tables = Vec::new();
    for table in TABLES {
        let columns = dst.kinds(table).await?;
        let mut theirs = src
            .kinds(table)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect::<Vec<_>>();
        theirs.sort();
        let ours: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
        if theirs != ours {
            bail!("{from}: table {table} has the columns {theirs:?}, this version {ours:?}");
        }
        let key = copy_key(table);
        let key_at = key.map(|k| ours.iter().position(|c| c == k).expect("a key column"));
        let list = ours
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut after = i64::MIN;
        let mut n = 0u64;
        loop {
            let rows = src.page(table, &list, key, after).await?;
            let Some(last) = rows.last() else { break };
            if let Some(k) = key_at {
                match last[k] {
                    Value::Int(v) => after = v,
                    _ => bail!("{from}: table {table} has a row without its integer key"),
                }
            }
            let mut bound = Vec::with_capacity(rows.len());
            for row in &rows {
                bound.push(bind_row(table, &columns, key_at, row)?);
            }
            dst.insert(table, &list, &bound).await?;
            n += rows.len() as u64;
            if key.is_none() || (rows.len() as i64) < PAGE {
                break;
            }
        }
        tables.push((*table, n));
    }
    if let Conn::Postgres(c) = dst {
        reset_sequences(c).await?;
    }
    let v = verify_conn(dst).await?;
    if let Some(p) = v.problems.first() {
        bail!(
            "the copy does not verify ({p}); nothing was written (run `stopd verify` on the source)"
        );
    }
    if (v.head_seq, v.head_hash.as_str()) != (head_seq, head_hash.as_str()) {
        bail!(
            "the copy's chain head ({} {}) is not the source's ({head_seq} {head_hash}); nothing was written",
            v.head_seq,
            v.head_hash
        );
    }
    Ok(Copied {
        tables,
        head_seq,
        head_hash,
    })
}

/// The integer key a table is read in order of (`None`: a small table, read whole).
fn copy_key(table: &str) -> Option<&'static str> {
    match table {
        "audit_chain" => Some("seq"),
        "sweep_run_open" => Some("slot"),
        "notify_targets" | "place_sweeps" => None,
        "notify_delivered" | "policy_loads" => Some("id"),
        t => Some(chain::key(t)),
    }
}

/// A source row as its target columns take it; a value of another kind is refused.
fn bind_row(
    table: &str,
    columns: &[(String, Kind)],
    key_at: Option<usize>,
    row: &[Value],
) -> Result<Vec<Bound>> {
    columns
        .iter()
        .zip(row)
        .map(|((name, kind), v)| {
            Ok(match (kind, v) {
                (Kind::Int, Value::Null) => Bound::Int(None),
                (Kind::Int, Value::Int(i)) => Bound::Int(Some(*i)),
                (Kind::Bool, Value::Null) => Bound::Bool(None),
                (Kind::Bool, Value::Int(i @ (0 | 1))) => Bound::Bool(Some(*i == 1)),
                (Kind::Text, Value::Null) => Bound::Text(None),
                (Kind::Text, Value::Text(t)) => Bound::Text(Some(t.clone())),
                (Kind::Blob, Value::Null) => Bound::Blob(None),
                (Kind::Blob, Value::Blob(b)) => Bound::Blob(Some(b.clone())),
                (kind, v) => {
                    let at = key_at.map_or_else(String::new, |k| format!(" (row {:?})", row[k]));
                    bail!(
                        "table {table}{at}, column {name}: {v:?} is not a {kind:?} value, \
                         and copied as one its record would not verify"
                    )
                }
            })
        })
        .collect()
}

/// Refuses a source whose schema is not this version's: a missing migration (an older stopd
/// wrote it) or an unknown one (a newer stopd).
async fn same_schema(src: &mut Conn<'_>, from: &Location) -> Result<()> {
    const SQL: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
    let (applied, migrator): (Vec<i64>, _) = match src {
        Conn::Sqlite(c) => (
            sqlx::query_scalar(SQL).fetch_all(&mut **c).await?,
            &MIGRATOR,
        ),
        Conn::Postgres(c) => (
            sqlx::query_scalar(SQL).fetch_all(&mut **c).await?,
            &PG_MIGRATOR,
        ),
    };
    let known: Vec<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    if let Some(m) = migrator
        .iter()
        .find(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
    {
        bail!(
            "{from} was written by an older stopd: its schema lacks migration {} ({}); start this \
             version's daemon on it once (it migrates the database), then copy",
            m.version,
            m.description
        );
    }
    if let Some(v) = applied.iter().find(|v| !known.contains(v)) {
        bail!(
            "{from} was written by a newer stopd (migration {v} is unknown here): copy with that version"
        );
    }
    Ok(())
}

/// The source's chain head, as stored (hex).
async fn head(src: &mut Conn<'_>) -> Result<(i64, String)> {
    let (seq, hash) = match src {
        Conn::Sqlite(c) => chain::head(c).await?,
        Conn::Postgres(c) => chain::head_pg(c).await?,
    };
    Ok((seq, hex::encode(hash)))
}

/// Sets each identity column's sequence to its table's largest id, so the next insert
/// continues after the copied rows (an empty table's is left as it is: `setval` of NULL).
async fn reset_sequences(c: &mut PgConnection) -> Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND column_name = 'id' AND is_identity = 'YES'",
    )
    .fetch_all(&mut *c)
    .await?;
    for table in tables {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence($1, 'id'), (SELECT MAX(id) FROM \"{table}\"))"
        ))
        .bind(format!("\"{table}\""))
        .execute(&mut *c)
        .await
        .with_context(|| format!("cannot reset the id sequence of {table}"))?;
    }
    Ok(())
}

impl Conn<'_> {
    /// `table`'s columns by name (byte order) and what each holds.
    async fn kinds(&mut self, table: &str) -> Result<Vec<(String, Kind)>> {
        let rows: Vec<(String, String)> = match self {
            Conn::Sqlite(c) => {
                sqlx::query_as("SELECT name, type FROM pragma_table_info($1)")
                    .bind(table)
                    .fetch_all(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                sqlx::query_as(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1",
                )
                .bind(table)
                .fetch_all(&mut **c)
                .await?
            }
        };
        let mut out = rows
            .into_iter()
            .map(|(name, ty)| {
                let kind = match ty.to_ascii_uppercase().as_str() {
                    "INTEGER" | "BIGINT" => Kind::Int,
                    "BOOLEAN" => Kind::Bool,
                    "TEXT" => Kind::Text,
                    "BLOB" | "BYTEA" => Kind::Blob,
                    other => bail!("table {table}, column {name}: a column of type {other}"),
                };
                Ok((name, kind))
            })
            .collect::<Result<Vec<_>>>()?;
        if out.is_empty() {
            bail!("the database has no table {table}");
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Up to [`PAGE`] rows of `table` after `after` in `key` order (`None`: every row).
    async fn page(
        &mut self,
        table: &str,
        list: &str,
        key: Option<&str>,
        after: i64,
    ) -> Result<Vec<Vec<Value>>> {
        // Keyed: `WHERE key > $1 ... LIMIT $2`; whole: the same two values, bound and unused.
        let sql = match key {
            Some(k) => format!(
                "SELECT {list} FROM \"{table}\" WHERE \"{k}\" > $1 ORDER BY \"{k}\" LIMIT $2"
            ),
            None => format!("SELECT {list} FROM \"{table}\" WHERE $1 < $2 OR TRUE"),
        };
        let read = || format!("cannot read the source's table {table}");
        Ok(match self {
            Conn::Sqlite(c) => sqlx::query(&sql)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut **c)
                .await
                .with_context(read)?
                .iter()
                .map(from_sqlite)
                .collect::<Result<_>>()?,
            Conn::Postgres(c) => sqlx::query(&sql)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut **c)
                .await
                .with_context(read)?
                .iter()
                .map(from_pg)
                .collect::<Result<_>>()?,
        })
    }

    /// Inserts `rows` (values in `list` order) into `table`, as few statements as the bind
    /// limits allow.
    async fn insert(&mut self, table: &str, list: &str, rows: &[Vec<Bound>]) -> Result<()> {
        let width = rows.first().map_or(1, Vec::len).max(1);
        let head = format!("INSERT INTO \"{table}\" ({list}) ");
        let write = || format!("cannot write the copy's table {table}");
        for chunk in rows.chunks((BINDS_PER_INSERT / width).max(1)) {
            match self {
                Conn::Sqlite(c) => {
                    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(&head);
                    q.push_values(chunk, |mut b, row| {
                        for v in row {
                            match v.clone() {
                                Bound::Int(i) => b.push_bind(i),
                                Bound::Bool(x) => b.push_bind(x.map(i64::from)),
                                Bound::Text(t) => b.push_bind(t),
                                Bound::Blob(x) => b.push_bind(x),
                            };
                        }
                    });
                    let q = q.build().persistent(false);
                    q.execute(&mut **c).await.with_context(write)?;
                }
                Conn::Postgres(c) => {
                    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(&head);
                    q.push_values(chunk, |mut b, row| {
                        for v in row {
                            match v.clone() {
                                Bound::Int(i) => b.push_bind(i),
                                Bound::Bool(x) => b.push_bind(x),
                                Bound::Text(t) => b.push_bind(t),
                                Bound::Blob(x) => b.push_bind(x),
                            };
                        }
                    });
                    let q = q.build().persistent(false);
                    q.execute(&mut **c).await.with_context(write)?;
                }
            }
        }
        Ok(())
    }
}

/// A SQLite row's values as stored (each value's own storage class, whatever the column says).
fn from_sqlite(row: &SqliteRow) -> Result<Vec<Value>> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let class = raw.type_info().name().to_owned();
            Ok(match class.as_str() {
                "INTEGER" => Value::Int(row.try_get_unchecked(i)?),
                "TEXT" => Value::Text(row.try_get_unchecked(i)?),
                "BLOB" => Value::Blob(row.try_get_unchecked(i)?),
                other => bail!(
                    "column {}: a {other} value, which no audit column holds",
                    row.column(i).name()
                ),
            })
        })
        .collect()
}

/// A PostgreSQL row's values (booleans as 0 and 1).
fn from_pg(row: &PgRow) -> Result<Vec<Value>> {
    (0..row.len())
        .map(|i| {
            if row.try_get_raw(i)?.is_null() {
                return Ok(Value::Null);
            }
            let ty = row.column(i).type_info().name().to_owned();
            Ok(match ty.as_str() {
                "INT8" => Value::Int(row.try_get(i)?),
                "INT4" => Value::Int(row.try_get::<i32, _>(i)?.into()),
                "BOOL" => Value::Int(row.try_get::<bool, _>(i)?.into()),
                "TEXT" | "VARCHAR" => Value::Text(row.try_get(i)?),
                "BYTEA" => Value::Blob(row.try_get(i)?),
                other => bail!(
                    "column {}: a {other} value, which no audit column holds",
                    row.column(i).name()
                ),
            })
        })
        .collect()
}
