//! `stopd verify`: recomputes the hash chain ([`super::chain`]) and names the first record
//! that was altered, removed or inserted, and any audited table that lost its append-only
//! triggers.

use std::collections::HashSet;

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::{PgConnection, Row, SqliteConnection};

use super::Store;
use super::chain::{self, AUDITED, GENESIS, Hash};

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Chain records read.
    pub records: i64,
    /// The head's sequence number (0: empty).
    pub head_seq: i64,
    /// The head's hash, hex (the recomputed one, which equals the stored one when intact).
    pub head_hash: String,
    /// Every problem found, the first bad record first; empty: intact.
    pub problems: Vec<String>,
}

impl Verification {
    /// Nothing wrong.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Recomputes the chain over the whole log.
    pub async fn verify(&self) -> Result<Verification> {
        let verified = match self.backend() {
            crate::Backend::Sqlite(pool) => {
                verify_conn(&mut Conn::Sqlite(&mut *pool.acquire().await?)).await
            }
            crate::Backend::Postgres(pool) => {
                // One snapshot for the whole walk: a record committed meanwhile is either in
                // both the chain and its table, or in neither.
                let mut tx = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                let v = verify_conn(&mut Conn::Postgres(&mut tx)).await;
                tx.rollback().await?;
                v
            }
        };
        verified.context("cannot read the audit log to verify it")
    }
}

/// The connection `verify` reads, and the few reads that are spelled per backend (`copy`
/// reads and writes through it too).
pub(crate) enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl Conn<'_> {
    /// Whether the schema has `table`.
    pub(crate) async fn has_table(&mut self, table: &str) -> Result<bool> {
        let n: i64 = match self {
            Conn::Sqlite(c) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                )
                .bind(table)
                .fetch_one(&mut **c)
                .await?
            }
            Conn::Postgres(c) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1",
                )
                .bind(table)
                .fetch_one(&mut **c)
                .await?
            }
        };
        Ok(n > 0)
    }

    /// Whether `table` refuses `op` (UPDATE or DELETE) with an append-only trigger.
    async fn guarded(&mut self, table: &str, op: &str) -> Result<bool> {
        match self {
            Conn::Sqlite(c) => {
                let sqls: Vec<String> = sqlx::query_scalar(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1",
                )
                .bind(table)
                .fetch_all(&mut **c)
                .await?;
                Ok(sqls.iter().any(|s| {
                    let s = s.to_ascii_uppercase();
                    s.contains(&format!("BEFORE {op} ON")) && s.contains("RAISE(ABORT")
                }))
            }
            Conn::Postgres(c) => {
                // An enabled row trigger, BEFORE `op`, calling audit_append_only() (tgtype bits:
                // 1 row, 2 before, 8 delete, 16 update).
                let bit: i32 = if op == "DELETE" { 8 } else { 16 };
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                     JOIN pg_proc p ON p.oid = t.tgfoid \
                     WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace \
                       AND p.proname = 'audit_append_only' AND t.tgenabled <> 'D' \
                       AND (t.tgtype::int & 3) = 3 AND (t.tgtype::int & $2) <> 0",
                )
                .bind(table)
                .bind(bit)
                .fetch_one(&mut **c)
                .await?;
                Ok(n > 0)
            }
        }
    }

    /// The columns of `table`, by name.
    async fn columns(&mut self, table: &str) -> Result<Vec<String>> {
        Ok(match self {
            Conn::Sqlite(c) => chain::columns(c, table).await?,
            Conn::Postgres(c) => chain::columns_pg(c, table).await?,
        })
    }

    /// The chain records in order: seq, table, row id, stored hash.
    async fn chain(&mut self) -> Result<Vec<(i64, String, i64, Vec<u8>)>> {
        const SQL: &str = "SELECT seq, tbl, row_id, hash FROM audit_chain ORDER BY seq";
        fn read<R: Row>(r: &R) -> Result<(i64, String, i64, Vec<u8>), sqlx::Error>
        where
            for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> &'r str: sqlx::ColumnIndex<R>,
        {
            Ok((
                r.try_get("seq")?,
                r.try_get("tbl")?,
                r.try_get("row_id")?,
                r.try_get("hash")?,
            ))
        }
        Ok(match self {
            Conn::Sqlite(c) => sqlx::query(SQL)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(read)
                .collect::<Result<_, _>>()?,
            Conn::Postgres(c) => sqlx::query(SQL)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(read)
                .collect::<Result<_, _>>()?,
        })
    }

    /// A record's canonical bytes (`None`: no such row).
    async fn canonical(
        &mut self,
        seq: i64,
        table: &str,
        rowid: i64,
        columns: &[String],
    ) -> Result<Option<Vec<u8>>> {
        match self {
            Conn::Sqlite(c) => Ok(chain::canonical(c, seq, table, rowid, columns).await?),
            Conn::Postgres(c) => {
                let cols: Vec<String> = columns
                    .iter()
                    .map(|c| format!("sqlite_quote(\"{c}\") AS \"{c}\""))
                    .collect();
                let sql = format!(
                    "SELECT {} FROM \"{table}\" WHERE \"{}\" = $1",
                    if cols.is_empty() {
                        "1".to_owned()
                    } else {
                        cols.join(", ")
                    },
                    chain::key(table)
                );
                let Some(row) = sqlx::query(&sql)
                    .bind(rowid)
                    .fetch_optional(&mut **c)
                    .await?
                else {
                    return Ok(None);
                };
                let values = columns
                    .iter()
                    .map(|c| row.try_get::<String, _>(c.as_str()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(chain::canonical_bytes(
                    seq, table, rowid, columns, &values,
                )))
            }
        }
    }

    /// The ids of `table`'s rows, in order.
    async fn ids(&mut self, table: &str) -> Result<Vec<i64>> {
        Ok(match self {
            Conn::Sqlite(c) => {
                sqlx::query_scalar(&format!("SELECT rowid FROM \"{table}\" ORDER BY rowid"))
                    .fetch_all(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                let key = chain::key(table);
                sqlx::query_scalar(&format!("SELECT \"{key}\" FROM \"{table}\" ORDER BY 1"))
                    .fetch_all(&mut **c)
                    .await?
            }
        })
    }
}

/// Recomputes the chain on `conn` (in the caller's transaction, if it holds one).
pub(crate) async fn verify_conn(conn: &mut Conn<'_>) -> Result<Verification> {
    let has_chain = i64::from(conn.has_table("audit_chain").await?);
    let mut v = Verification {
        records: 0,
        head_seq: 0,
        head_hash: hex::encode(GENESIS),
        problems: Vec::new(),
    };
    if has_chain == 0 {
        v.problems.push(
            "the audit log has no hash chain (it predates it): start the daemon once to migrate it"
                .into(),
        );
        return Ok(v);
    }
    if conn.has_table("audit_chain_backfill").await? {
        v.problems.push(
            "the records written before the chain are not chained yet: start the daemon once"
                .into(),
        );
    }

    // Append-only triggers: a table that lost one can be rewritten in place (said after the
    // records, which come first).
    let mut unguarded = Vec::new();
    for table in AUDITED.iter().chain(&["audit_chain"]) {
        for op in ["UPDATE", "DELETE"] {
            if !conn.guarded(table, op).await? {
                unguarded.push(format!(
                    "table {table} has lost its append-only trigger (BEFORE {op}): its rows may have been rewritten"
                ));
            }
        }
    }

    // The chain, in order.
    let mut columns = Vec::new();
    for table in AUDITED {
        columns.push(conn.columns(table).await?);
    }
    let rows = conn.chain().await?;
    let mut previous: Hash = GENESIS;
    let mut expected_seq = 1;
    let mut seen = HashSet::new();
    let mut broken = None;
    for (seq, table, rowid, stored) in rows {
        let what = format!("record {seq} ({table} id {rowid})");
        v.records += 1;
        if broken.is_some() {
            seen.insert((table, rowid));
            continue;
        }
        if seq != expected_seq {
            broken = Some(if seq > expected_seq {
                format!(
                    "chain records {expected_seq}..{} were removed (the next one is {what})",
                    seq - 1
                )
            } else {
                format!("{what} is out of order")
            });
            seen.insert((table, rowid));
            continue;
        }
        expected_seq += 1;
        let Some(k) = AUDITED.iter().position(|t| *t == table) else {
            broken = Some(format!("{what} names a table that is not audited"));
            continue;
        };
        if !seen.insert((table.clone(), rowid)) {
            broken = Some(format!("{what} was chained twice"));
            continue;
        }
        let Some(bytes) = conn.canonical(seq, &table, rowid, &columns[k]).await? else {
            broken = Some(format!("{what} was removed"));
            continue;
        };
        let hash = chain::next_hash(&previous, &bytes);
        if stored.as_slice() != hash.as_slice() {
            broken = Some(format!(
                "{what} was altered (or records before it reordered): its hash does not match"
            ));
            continue;
        }
        previous = hash;
        v.head_seq = seq;
        v.head_hash = hex::encode(hash);
    }
    v.problems.extend(broken);

    // Rows that are in no chain record were inserted behind the log's back.
    for table in AUDITED {
        let ids = conn.ids(table).await?;
        if let Some(id) = ids
            .into_iter()
            .find(|id| !seen.contains(&((*table).to_owned(), *id)))
        {
            v.problems.push(format!(
                "{table} id {id} was inserted: it is in no chain record"
            ));
        }
    }
    v.problems.extend(unguarded);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::{Mode, Outcome, RuleKind, SweepTrigger};

    use sqlx::Connection;

    use super::super::{Intent, OutcomeRow, SweepResult};
    use super::*;

    /// A log with a record of every audited kind: two sweeps and their results, a stop and its
    /// outcome, an exemption and its revocation.
    async fn log(path: &Path) -> Store {
        let store = Store::open(path).await.unwrap();
        let now = crate::testdb::tick();
        for k in 0..2 {
            let at = now + chrono::Duration::seconds(30 * k);
            let id = store
                .begin_sweep(at, SweepTrigger::Schedule, false)
                .await
                .unwrap();
            store
                .finish_sweep(id, at, Duration::from_millis(5), &SweepResult::default())
                .await
                .unwrap();
        }
        let stop = store
            .record_intent(&Intent {
                at: now,
                sweep_id: Some(1),
                pipeline: "p",
                execution_id: "e",
                rule: "r",
                rule_kind: RuleKind::Freeze,
                mode: Mode::Finish,
                reason: "it's 'quoted'\nand two lines",
                explanation: "because",
                dry_run: false,
                escalate_at: None,
                escalation_of: None,
                account: "default",
                region: "us-east-1",
            })
            .await
            .unwrap();
        store
            .record_outcome(
                stop,
                &OutcomeRow {
                    at: now,
                    outcome: Outcome::Stopped,
                    attempts: 1,
                    throttled: 0,
                    elapsed: Duration::from_millis(3),
                    error: None,
                    reconciled: false,
                },
            )
            .await
            .unwrap();
        let ex = store
            .add_exemption(now, "p*", now, "hotfix", "alice", None)
            .await
            .unwrap();
        store.revoke_exemption(ex, now, "bob", None).await.unwrap();
        store
    }

    /// Runs `sql` on the database file as an intruder would (with the sqlite3 shell).
    async fn tamper(path: &Path, sql: &str) {
        // As the sqlite3 shell does: foreign keys not enforced.
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(false);
        let mut c = SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }

    async fn verified(path: &Path) -> Verification {
        let ro = Store::open_read_only(path).await.unwrap();
        let v = ro.verify().await.unwrap();
        ro.close().await;
        v
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_and_the_head_is_the_last_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = log(&path).await;
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{:?}", v.problems);
        assert_eq!((v.records, v.head_seq), (8, 8));
        let mut conn = store.pool().unwrap().acquire().await.unwrap();
        let (seq, hash) = chain::head(&mut conn).await.unwrap();
        assert_eq!((seq, hex::encode(hash)), (8, v.head_hash));
    }

    /// Each way an intruder with write access to the file could change the record is found,
    /// and named.
    #[tokio::test]
    async fn tampering_is_found_and_the_first_bad_record_named() {
        let drop_triggers = "DROP TRIGGER stops_append_only_u; DROP TRIGGER stops_append_only_d; \
                             DROP TRIGGER sweeps_append_only_u; DROP TRIGGER sweeps_append_only_d; \
                             DROP TRIGGER audit_chain_append_only_d; \
                             DROP TRIGGER audit_chain_append_only_u;";
        let cases: &[(&str, &str, &str)] = &[
            (
                "update",
                "UPDATE stops SET reason = 'nothing to see' WHERE id = 1",
                "record 5 (stops id 1) was altered",
            ),
            (
                "delete",
                "DELETE FROM stops WHERE id = 1",
                "record 5 (stops id 1) was removed",
            ),
            (
                "delete with its chain record",
                "DELETE FROM stops WHERE id = 1; DELETE FROM audit_chain WHERE seq = 5",
                "chain records 5..5 were removed",
            ),
            (
                "insert",
                "INSERT INTO sweeps (started_at, trigger, dry_run, pid) \
                 VALUES ('2026-12-24T10:00:00.000Z', 'schedule', 0, 1)",
                "sweeps id 3 was inserted",
            ),
            (
                "reorder",
                "UPDATE sweeps SET id = 99 WHERE id = 1; UPDATE sweeps SET id = 1 WHERE id = 2; \
                 UPDATE sweeps SET id = 2 WHERE id = 99",
                "record 1 (sweeps id 1) was altered",
            ),
            (
                "chain reordered",
                "UPDATE audit_chain SET seq = 99 WHERE seq = 1; \
                 UPDATE audit_chain SET seq = 1 WHERE seq = 2; \
                 UPDATE audit_chain SET seq = 2 WHERE seq = 99",
                "record 1 (sweep_results id 1) was altered",
            ),
            (
                "trigger dropped",
                "",
                "table stops has lost its append-only trigger",
            ),
        ];
        for (name, sql, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.db");
            log(&path).await.close().await;
            assert!(verified(&path).await.intact(), "{name}: before");
            tamper(&path, &format!("{drop_triggers} {sql}")).await;
            let v = verified(&path).await;
            assert!(
                v.problems.iter().any(|p| p.contains(expected)),
                "{name}: {:?}",
                v.problems
            );
            if !sql.is_empty() {
                assert!(
                    v.problems[0].contains(expected),
                    "{name}: first: {:?}",
                    v.problems
                );
            }
        }
    }

    /// The rows written before the chain existed are chained once, at the first open after
    /// the migration, and verify; the backfill is not done again.
    #[tokio::test]
    async fn rows_from_before_the_chain_are_chained_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        log(&path).await.close().await;
        // The database as the migration leaves a pre-chain log: rows, no chain, work to do.
        tamper(
            &path,
            "DROP TRIGGER audit_chain_append_only_d; DELETE FROM audit_chain; \
             CREATE TRIGGER audit_chain_append_only_d BEFORE DELETE ON audit_chain \
               BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END; \
             CREATE TABLE audit_chain_backfill (pending INTEGER NOT NULL); \
             INSERT INTO audit_chain_backfill VALUES (1);",
        )
        .await;
        let v = verified(&path).await;
        assert!(!v.intact(), "an unchained log passed");
        let store = Store::open(&path).await.unwrap();
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{:?}", v.problems);
        assert_eq!(v.records, 8);
        store.close().await;
        // Opening again chains nothing more.
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.verify().await.unwrap().records, 8);
    }

    /// Every table of the schema is either an audit record (chained) or named as not one: a
    /// table added by a migration without a decision fails here.
    #[tokio::test]
    async fn every_table_is_chained_or_named_as_not_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(store.pool().unwrap())
        .await
        .unwrap();
        for t in tables {
            assert!(
                AUDITED.contains(&t.as_str()) || chain::NOT_AUDITED.contains(&t.as_str()),
                "table {t}: add it to chain::AUDITED (and link its rows) or to NOT_AUDITED"
            );
        }
    }
}
