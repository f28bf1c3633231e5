//! The hash chain over every audit record (DESIGN.md, "Verifiable audit").
//!
//! Every row of every table in [`AUDITED`] has one row in `audit_chain`, written in the same
//! transaction as the record by [`link`]: `seq` (1, 2, 3, ... without gaps), the record's table
//! and rowid, and `hash = SHA-256(previous hash || canonical bytes)`, the first previous hash
//! being 32 zero bytes. `verify` recomputes it.
//!
//! The canonical bytes of a record are, each line ending in `\n`:
//!
//! ```text
//! stopd-audit-v1
//! seq=<seq>
//! table=<table>
//! rowid=<rowid>
//! <column>=<SQLite's quote(value)>      one line per column that is not NULL, by column name
//! ```
//!
//! SQLite's `quote()` spells every value unambiguously (text in single quotes with quotes
//! doubled, integers in decimal, blobs as `X'..'`), so an auditor can recompute a hash with the
//! `sqlite3` shell and `sha256sum`. NULL columns are left out, so a nullable column added by a
//! later migration leaves every earlier hash as it was.
//!
//! **Adding an audited table**: create it in a new migration with the two append-only triggers
//! (`BEFORE UPDATE`, `BEFORE DELETE` raising), add its name to [`AUDITED`], and call [`link`]
//! after each INSERT, in the same transaction. A unit test fails if a table of the schema is in
//! neither [`AUDITED`] nor `NOT_AUDITED` (a list the tests keep).

use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row, SqliteConnection};

/// Every table whose rows are audit records, in the order the backfill of pre-chain rows
/// takes them.
pub const AUDITED: &[&str] = &[
    "sweeps",
    "sweep_results",
    "stops",
    "stop_outcomes",
    "exemptions",
    "exemption_revocations",
    "lifecycle_events",
    "sweep_runs",
    "freezes",
    "freeze_lifts",
    "gates",
    "gate_outcomes",
    "unwatched_windows",
];

/// Tables of the schema that are not audit records (the chain itself, bookkeeping).
#[cfg(test)]
pub const NOT_AUDITED: &[&str] = &[
    "audit_chain",
    "audit_chain_backfill",
    "_sqlx_migrations",
    // Delivery bookkeeping of notifications: which events each webhook has received.
    "notify_targets",
    "notify_delivered",
    // The policy hash `status` compares with the file; lifecycle_events (chained) holds the
    // auditable record of every start and reload with its hash.
    "policy_loads",
    // The run of quiet sweeps a daemon has open: written to sweep_runs (chained) when closed.
    "sweep_run_open",
    // The last sweep of each account and region, replaced in place (`status`); the chained
    // sweep log has every sweep's error.
    "place_sweeps",
    // The event consumer's view of its queue (`status`); the stops events led to are chained.
    "event_queue",
    // Leadership's lease (PostgreSQL), updated in place at each renewal; what leadership did is
    // chained as lifecycle events.
    "leader_lease",
];

/// The integer key of an audited table: SQLite's rowid (each is its `INTEGER PRIMARY KEY`),
/// and the `row_id` of its chain records on either backend.
pub(crate) fn key(table: &str) -> &'static str {
    match table {
        "sweep_results" => "sweep_id",
        "stop_outcomes" => "stop_id",
        "exemption_revocations" => "exemption_id",
        "freeze_lifts" => "freeze_id",
        "gate_outcomes" => "gate_id",
        _ => "id",
    }
}

/// The columns of `table` on PostgreSQL, by name in byte order (as SQLite's `ORDER BY name`,
/// whatever the database's collation).
pub(crate) async fn columns_pg(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let mut cols: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    cols.sort();
    Ok(cols)
}

/// The chain's head on PostgreSQL (see [`head`]).
pub(crate) async fn head_pg(conn: &mut PgConnection) -> Result<(i64, Hash), sqlx::Error> {
    let row = sqlx::query("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok((0, GENESIS)),
        Some(r) => head_of(r.try_get("seq")?, r.try_get("hash")?),
    }
}

/// The chain's head from its last record's `seq` and `hash` as read (`None`: an empty chain).
pub(crate) fn head_of(seq: Option<i64>, hash: Option<Vec<u8>>) -> Result<(i64, Hash), sqlx::Error> {
    match (seq, hash) {
        (Some(seq), Some(bytes)) => {
            let hash = Hash::try_from(bytes.as_slice())
                .map_err(|_| sqlx::Error::Protocol(format!("chain record {seq}: bad hash")))?;
            Ok((seq, hash))
        }
        _ => Ok((0, GENESIS)),
    }
}

/// The first record's previous hash.
pub const GENESIS: [u8; 32] = [0; 32];

/// A 32-byte SHA-256.
pub type Hash = [u8; 32];

/// The columns of `table`, by name.
pub(crate) async fn columns(
    conn: &mut SqliteConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY name")
        .bind(table)
        .fetch_all(&mut *conn)
        .await
}

/// The statement that reads one record's quoted columns (`table` and `columns` are ours, never
/// user input).
pub(crate) fn select_quoted(table: &str, columns: &[String]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("quote(\"{c}\") AS \"{c}\""))
        .collect();
    format!(
        "SELECT {} FROM \"{table}\" WHERE rowid = ?",
        if cols.is_empty() {
            "1".to_owned()
        } else {
            cols.join(", ")
        }
    )
}

/// The name a `RETURNING` list gives the row's id (every other column keeps its own name).
pub(crate) const ROWID: &str = "chain_rowid";

/// The canonical bytes of a record, from its quoted column values (`None`: no such row).
pub(crate) async fn canonical(
    conn: &mut SqliteConnection,
    seq: i64,
    table: &str,
    rowid: i64,
    columns: &[String],
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let Some(row) = sqlx::query(&select_quoted(table, columns))
        .bind(rowid)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let values = columns
        .iter()
        .map(|c| row.try_get::<String, _>(c.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(canonical_bytes(seq, table, rowid, columns, &values)))
}

/// The canonical bytes of a record from its columns (by name) and their `quote()`d values.
pub(crate) fn canonical_bytes(
    seq: i64,
    table: &str,
    rowid: i64,
    columns: &[String],
    values: &[String],
) -> Vec<u8> {
    let mut out = format!("stopd-audit-v1\nseq={seq}\ntable={table}\nrowid={rowid}\n").into_bytes();
    for (name, v) in columns.iter().zip(values) {
        if v == "NULL" {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    }
    out
}

/// `SHA-256(previous || canonical)`.
pub fn next_hash(previous: &Hash, canonical: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(canonical);
    h.finalize().into()
}

/// The chain's head: its last sequence number and hash (0 and [`GENESIS`] when empty).
pub(crate) async fn head(conn: &mut SqliteConnection) -> Result<(i64, Hash), sqlx::Error> {
    let row = sqlx::query("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok((0, GENESIS)),
        Some(r) => {
            let seq: i64 = r.try_get("seq")?;
            let bytes: Vec<u8> = r.try_get("hash")?;
            let hash = Hash::try_from(bytes.as_slice())
                .map_err(|_| sqlx::Error::Protocol(format!("chain record {seq}: bad hash")))?;
            Ok((seq, hash))
        }
    }
}

/// Chains the record `table`/`rowid` just inserted: call it inside the transaction that
/// inserted it. Any error must fail that transaction (a record without its link would read
/// as inserted behind the log's back).
pub async fn link(
    conn: &mut SqliteConnection,
    table: &'static str,
    rowid: i64,
) -> Result<Hash, sqlx::Error> {
    Linker::default().link(conn, table, rowid).await
}

/// [`link`] on either backend's connection, for a query written once ([`crate::write_tx!`]).
pub(crate) trait Chained {
    /// Chains the record `table`/`rowid` just inserted, in the transaction that inserted it.
    async fn link(&mut self, table: &'static str, rowid: i64) -> Result<Hash, sqlx::Error>;
}

impl Chained for SqliteConnection {
    async fn link(&mut self, table: &'static str, rowid: i64) -> Result<Hash, sqlx::Error> {
        Linker::default().link(self, table, rowid).await
    }
}

impl Chained for PgConnection {
    async fn link(&mut self, table: &'static str, rowid: i64) -> Result<Hash, sqlx::Error> {
        Linker::default().link_pg(self, table, rowid).await
    }
}

/// Chains many records in one transaction: the chain's head and each table's columns are read
/// once, not once a record, and (with [`Linker::returning`] and [`Linker::link_returned`]) a
/// record is chained from the values its INSERT returned, its chain rows written together by
/// [`Linker::flush`]. At a window edge the group-commit writer chains thousands of records:
/// five statements a record, each a round trip to SQLite's thread, were most of its time.
///
/// Use one `Linker` per transaction, in a transaction that holds the write lock (`BEGIN
/// IMMEDIATE`, or after its first write): the head it remembers is only the head while the
/// write lock is held. Call [`Linker::flush`] before committing.
#[derive(Debug, Default)]
pub struct Linker {
    head: Option<(i64, Hash)>,
    columns: std::collections::HashMap<&'static str, (Vec<String>, String)>,
    /// Chain rows not yet written: seq, table, rowid, hash.
    pending: Vec<(i64, &'static str, i64, Hash)>,
}

/// Chain rows written by one INSERT (4 variables each, far below SQLite's 32,766).
const CHAIN_ROWS_PER_INSERT: usize = 256;

impl Linker {
    /// Chains the record `table`/`rowid` just inserted (as [`link`]), at once: its row read
    /// back as an INSERT would have returned it.
    pub async fn link(
        &mut self,
        conn: &mut SqliteConnection,
        table: &'static str,
        rowid: i64,
    ) -> Result<Hash, sqlx::Error> {
        let returning = self.returning(conn, table).await?;
        let row = sqlx::query(&format!(
            "SELECT {returning} FROM \"{table}\" WHERE rowid = ?"
        ))
        .bind(rowid)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| sqlx::Error::Protocol(format!("no {table} row {rowid} to chain")))?;
        self.link_returned(conn, table, &row).await?;
        let (_, hash) = self.head.expect("just linked");
        self.flush(conn).await?;
        Ok(hash)
    }

    /// What an INSERT into `table` returns for [`Linker::link_returned`]: `RETURNING` and this
    /// (the rowid, then every column `quote()`d, by name).
    pub async fn returning(
        &mut self,
        conn: &mut SqliteConnection,
        table: &'static str,
    ) -> Result<String, sqlx::Error> {
        Ok(self.columns_of(conn, table).await?.1.clone())
    }

    /// Chains a record from the row its INSERT returned (see [`Linker::returning`]); its chain
    /// row is written by the next [`Linker::flush`].
    pub async fn link_returned(
        &mut self,
        conn: &mut SqliteConnection,
        table: &'static str,
        row: &sqlx::sqlite::SqliteRow,
    ) -> Result<i64, sqlx::Error> {
        let head = self.head(conn).await?;
        let rowid: i64 = row.try_get(ROWID)?;
        self.link_values(table, head, rowid, |c| row.try_get(c))
    }

    /// Chains the record `table`/`rowid` after `head` (`(seq, hash)`), its values read by column
    /// name with `value` from the row its INSERT returned (either backend's): the chain row is
    /// written by the next flush.
    fn link_values(
        &mut self,
        table: &'static str,
        (seq, previous): (i64, Hash),
        rowid: i64,
        value: impl Fn(&str) -> Result<String, sqlx::Error>,
    ) -> Result<i64, sqlx::Error> {
        debug_assert!(AUDITED.contains(&table), "{table} is not in AUDITED");
        let seq = seq + 1;
        let cols = &self
            .columns
            .get(table)
            .ok_or_else(|| sqlx::Error::Protocol(format!("{table}: inserted without `returning`")))?
            .0;
        let values = cols
            .iter()
            .map(|c| value(c))
            .collect::<Result<Vec<_>, _>>()?;
        let hash = next_hash(
            &previous,
            &canonical_bytes(seq, table, rowid, cols, &values),
        );
        self.pending.push((seq, table, rowid, hash));
        self.head = Some((seq, hash));
        Ok(rowid)
    }

    /// Writes the chain rows not yet written. An error must fail the transaction.
    pub async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        for rows in self.pending.chunks(CHAIN_ROWS_PER_INSERT) {
            let mut sql = String::from("INSERT INTO audit_chain (seq, tbl, row_id, hash) VALUES ");
            for k in 0..rows.len() {
                sql.push_str(if k == 0 {
                    "(?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?)"
                });
            }
            // Not kept prepared: one statement for each batch size would fill the cache.
            let mut q = sqlx::query(&sql).persistent(false);
            for (seq, table, rowid, hash) in rows {
                q = q.bind(*seq).bind(*table).bind(*rowid).bind(hash.as_slice());
            }
            q.execute(&mut *conn).await?;
        }
        self.pending.clear();
        Ok(())
    }

    async fn head(&mut self, conn: &mut SqliteConnection) -> Result<(i64, Hash), sqlx::Error> {
        if let Some(h) = self.head {
            return Ok(h);
        }
        let h = head(conn).await?;
        self.head = Some(h);
        Ok(h)
    }

    /// The table's columns by name, and what its INSERT returns.
    async fn columns_of(
        &mut self,
        conn: &mut SqliteConnection,
        table: &'static str,
    ) -> Result<&(Vec<String>, String), sqlx::Error> {
        if !self.columns.contains_key(table) {
            let cols = columns(conn, table).await?;
            let mut returning = format!("rowid AS {ROWID}");
            for c in &cols {
                returning.push_str(&format!(", quote(\"{c}\") AS \"{c}\""));
            }
            self.columns.insert(table, (cols, returning));
        }
        Ok(&self.columns[table])
    }
}

/// PostgreSQL: the same chain, the same canonical bytes (each column spelled by the migration's
/// `sqlite_quote`, SQLite's `quote()`), written under `LOCK TABLE audit_chain IN EXCLUSIVE
/// MODE` (taken by the caller, first in its transaction) where SQLite holds its write lock.
impl Linker {
    /// Chains a record at once from its key (as [`Linker::link`]).
    pub async fn link_pg(
        &mut self,
        conn: &mut PgConnection,
        table: &'static str,
        rowid: i64,
    ) -> Result<Hash, sqlx::Error> {
        let returning = self.returning_pg(conn, table).await?;
        let row = sqlx::query(&format!(
            "SELECT {returning} FROM \"{table}\" WHERE \"{}\" = $1",
            key(table)
        ))
        .bind(rowid)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| sqlx::Error::Protocol(format!("no {table} row {rowid} to chain")))?;
        self.link_returned_pg(conn, table, &row).await?;
        let (_, hash) = self.head.expect("just linked");
        self.flush_pg(conn).await?;
        Ok(hash)
    }

    /// What an INSERT into `table` returns (see [`Linker::returning`]).
    pub async fn returning_pg(
        &mut self,
        conn: &mut PgConnection,
        table: &'static str,
    ) -> Result<String, sqlx::Error> {
        if !self.columns.contains_key(table) {
            let cols = columns_pg(conn, table).await?;
            let mut returning = format!("\"{}\" AS {ROWID}", key(table));
            for c in &cols {
                returning.push_str(&format!(", sqlite_quote(\"{c}\") AS \"{c}\""));
            }
            self.columns.insert(table, (cols, returning));
        }
        Ok(self.columns[table].1.clone())
    }

    /// Chains a record from the row its INSERT returned (see [`Linker::link_returned`]).
    pub async fn link_returned_pg(
        &mut self,
        conn: &mut PgConnection,
        table: &'static str,
        row: &PgRow,
    ) -> Result<i64, sqlx::Error> {
        let head = match self.head {
            Some(h) => h,
            None => head_pg(conn).await?,
        };
        let rowid: i64 = row.try_get(ROWID)?;
        self.link_values(table, head, rowid, |c| row.try_get(c))
    }

    /// Writes the chain rows not yet written (see [`Linker::flush`]): one statement, whatever
    /// their number (arrays unnested: the same SQL each time, prepared once a connection, one
    /// round trip to the server).
    pub async fn flush_pg(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = self.pending.iter().map(|p| p.0).collect();
        let tables: Vec<&str> = self.pending.iter().map(|p| p.1).collect();
        let rowids: Vec<i64> = self.pending.iter().map(|p| p.2).collect();
        let hashes: Vec<&[u8]> = self.pending.iter().map(|p| p.3.as_slice()).collect();
        sqlx::query(
            "INSERT INTO audit_chain (seq, tbl, row_id, hash) \
             SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::bytea[])",
        )
        .bind(seqs)
        .bind(tables)
        .bind(rowids)
        .bind(hashes)
        .execute(&mut *conn)
        .await?;
        self.pending.clear();
        Ok(())
    }

    /// The chain rows not yet written as one INSERT with their values spelled out (every one
    /// is ours: integers, a table name of [`AUDITED`], a hash in hex), ending in `;`, for a
    /// simple query that also commits (one round trip); they count as written from here on.
    /// Empty when there is none.
    pub(crate) fn take_pending_sql_pg(&mut self) -> String {
        use std::fmt::Write as _;
        if self.pending.is_empty() {
            return String::new();
        }
        let mut sql = String::from("INSERT INTO audit_chain (seq, tbl, row_id, hash) VALUES ");
        for (k, (seq, table, rowid, hash)) in self.pending.drain(..).enumerate() {
            debug_assert!(table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            let sep = if k == 0 { "" } else { ", " };
            let _ = write!(
                sql,
                "{sep}({seq}, '{table}', {rowid}, decode('{}', 'hex'))",
                hex::encode(hash)
            );
        }
        sql.push_str("; ");
        sql
    }

    /// Starts the next transaction of a writer that keeps its `Linker` (and so each table's
    /// columns: the schema does not change under a running writer) from one transaction to the
    /// next: `head` is the chain's head, read under the chain's lock in that transaction.
    pub(crate) fn restart(&mut self, head: (i64, Hash)) {
        self.head = Some(head);
        self.pending.clear();
    }
}

/// Chains the rows written before the chain existed, once, right after the migration that made
/// it (the `audit_chain_backfill` table says it is still to do; it is dropped here, in the same
/// transaction).
pub(crate) async fn backfill(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    use sqlx::Connection as _;
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_chain_backfill'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if pending == 0 {
        return Ok(0);
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut n = 0;
    let mut linker = Linker::default();
    for table in AUDITED {
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT t.rowid FROM \"{table}\" t WHERE NOT EXISTS \
             (SELECT 1 FROM audit_chain c WHERE c.tbl = ?1 AND c.row_id = t.rowid) ORDER BY t.rowid"
        ))
        .bind(*table)
        .fetch_all(&mut *tx)
        .await?;
        for id in ids {
            linker.link(&mut tx, table, id).await?;
            n += 1;
        }
    }
    sqlx::query("DROP TABLE audit_chain_backfill")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

impl super::Store {
    /// The chain's head: its last sequence number and hash (0 and [`GENESIS`] when empty).
    pub async fn chain_head(&self) -> anyhow::Result<(i64, Hash)> {
        match self.backend() {
            crate::Backend::Sqlite(pool) => Ok(head(&mut *pool.acquire().await?).await?),
            crate::Backend::Postgres(pool) => Ok(head_pg(&mut *pool.acquire().await?).await?),
        }
    }

    /// The stored hash of chain record `seq`, if there is one.
    pub async fn chain_hash_at(&self, seq: i64) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(crate::on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT hash FROM audit_chain WHERE seq = $1"
        )
        .bind(seq)
        .fetch_optional(pool)
        .await)?)
    }
}
