//! The store on every backend ([`testdb::backends`]): SQLite always, PostgreSQL when
//! `STOPD_TEST_POSTGRES` is set (always in CI), and what makes the two the same log: one schema,
//! append-only tables, and SQLite's `quote()` spelled alike for the hash chain.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use sqlx::postgres::PgPool;

use crate::testdb::{self, TestDb};
use crate::{Backend, Store, chain};

/// The PostgreSQL pool of a store opened on PostgreSQL.
fn pg(store: &Store) -> &PgPool {
    match store.backend() {
        Backend::Postgres(pool) => pool,
        Backend::Sqlite(_) => panic!("a SQLite store"),
    }
}

pub(crate) async fn open(db: &TestDb) -> Store {
    Store::open(db.location())
        .await
        .unwrap_or_else(|e| panic!("{}: {e:#}", db.kind()))
}

#[tokio::test]
async fn policy_loads_and_status_reads_round_trip_on_every_backend() {
    for db in testdb::backends().await {
        let store = open(&db).await;
        let kind = db.kind();
        assert!(store.last_policy_load().await.unwrap().is_none(), "{kind}");
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
        store
            .record_policy_load(at, "/etc/stopd/policy.toml", "abc123", "start")
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        store
            .record_policy_load(at, "/etc/stopd/policy.toml", "def456", "reload")
            .await
            .unwrap();
        // A trigger the vocabulary does not know is refused before anything is written.
        assert!(
            store
                .record_policy_load(at, "p", "h", "sideways")
                .await
                .is_err()
        );
        let last = store.last_policy_load().await.unwrap().expect(kind);
        assert_eq!(
            (last.hash.as_str(), last.at.as_str()),
            ("def456", "2026-12-04T09:30:00.000Z"),
            "{kind}"
        );
        assert_eq!(store.pending_escalations().await.unwrap(), 0, "{kind}");
        assert!(store.last_sweep().await.unwrap().is_none(), "{kind}");
        assert!(store.last_quiet_sweep().await.unwrap().is_none(), "{kind}");
        store.close().await;
        // A reader sees what was written.
        let reader = Store::open_read_only(db.location()).await.unwrap();
        assert_eq!(
            reader.last_policy_load().await.unwrap().expect(kind).hash,
            "def456",
            "{kind}"
        );
        reader.close().await;
    }
}

#[tokio::test]
async fn two_nodes_migrate_one_fresh_postgres_database_at_once() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let (a, b) = tokio::join!(
        tokio::spawn(Store::open(db.location())),
        tokio::spawn(Store::open(db.location()))
    );
    let a = a.unwrap().expect("the first node opens");
    let b = b.unwrap().expect("the second node opens");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pg(&a))
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations-postgres"
    ))
    .unwrap()
    .count();
    assert_eq!(usize::try_from(applied).unwrap(), files);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_reader_refuses_a_postgres_database_without_audit_tables() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let e = Store::open_read_only(db.location()).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("not a stopd audit database"),
        "{e:#}"
    );
}

/// Every PostgreSQL session of ours is bounded by the server: a statement by
/// `statement_timeout`, a vanished client by TCP keepalives and `tcp_user_timeout`, an idle
/// transaction by `idle_in_transaction_session_timeout`, for the writer's store and a reader's
/// alike; a setting the URL gives wins (and the server enforces it).
#[tokio::test]
async fn postgres_sessions_are_bounded_and_the_url_may_say_otherwise() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let writer = open(&db).await;
    let reader = Store::open_read_only(db.location()).await.unwrap();
    for store in [&writer, &reader] {
        let row: (String, String, bool, String, String, String, String) = sqlx::query_as(
            "SELECT current_setting('statement_timeout'), \
                    current_setting('idle_in_transaction_session_timeout'), \
                    inet_server_addr() IS NULL, \
                    current_setting('tcp_keepalives_idle'), \
                    current_setting('tcp_keepalives_interval'), \
                    current_setting('tcp_keepalives_count'), \
                    current_setting('tcp_user_timeout')",
        )
        .fetch_one(pg(store))
        .await
        .unwrap();
        assert_eq!((row.0.as_str(), row.1.as_str()), ("30s", "5s"));
        let keepalives = [row.3, row.4, row.5, row.6];
        // In seconds, and milliseconds, without a unit; a Unix socket has none (0).
        let expected = if row.2 {
            ["0", "0", "0", "0"]
        } else {
            ["10", "5", "3", "30000"]
        };
        assert_eq!(keepalives, expected);
    }
    let crate::Location::Postgres(url) = db.location() else {
        unreachable!("a PostgreSQL database")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let shorter = Store::open(format!("{url}{sep}options=-c%20statement_timeout%3D200ms").as_str())
        .await
        .unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(pg(&shorter))
        .await
        .unwrap();
    assert_eq!(timeout, "200ms");
    let e = sqlx::query("SELECT pg_sleep(5)")
        .execute(pg(&shorter))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("statement timeout"), "{e}");
}

#[tokio::test]
async fn an_unreachable_postgres_server_is_named_by_host_and_port() {
    // Port 1 on the loopback: nothing listens there.
    let e = Store::open("postgres://stopd:secret@127.0.0.1:1/stopd")
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[tokio::test]
async fn every_audited_postgres_table_is_append_only() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let store = open(&db).await;
    let pool = pg(&store);
    sqlx::query(
        "INSERT INTO sweeps (started_at, trigger, dry_run, pid) VALUES ('t', 'schedule', FALSE, 1)",
    )
    .execute(pool)
    .await
    .unwrap();
    for sql in [
        "UPDATE sweeps SET pid = 2",
        "DELETE FROM sweeps",
        "TRUNCATE sweeps CASCADE",
    ] {
        let e = sqlx::query(sql).execute(pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    for table in chain::AUDITED.iter().chain(&["audit_chain"]) {
        let triggers: Vec<String> = sqlx::query_scalar(
            "SELECT t.tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE c.relname = $1 AND NOT t.tgisinternal ORDER BY 1",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap();
        let want: Vec<String> = ["u", "d", "t"]
            .iter()
            .map(|s| format!("{table}_append_only_{s}"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(triggers, want, "{table}");
    }
    store.close().await;
}

/// The tables and columns of each backend's schema.
async fn columns_sqlite(store: &Store) -> BTreeSet<(String, String)> {
    sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT IN ('_sqlx_migrations', 'sqlite_sequence', 'audit_chain_backfill')",
    )
    .fetch_all(store.pool().unwrap())
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test]
/// (Besides `leader_lease`, PostgreSQL's alone: leadership needs a shared database.)
async fn the_postgres_schema_has_sqlite_s_tables_and_columns() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let lite = testdb::sqlite();
    let sqlite = open(&lite).await;
    let postgres = open(&db).await;
    let want = columns_sqlite(&sqlite).await;
    let got: BTreeSet<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
           AND table_name <> 'leader_lease'",
    )
    .fetch_all(pg(&postgres))
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(got, want);
    sqlite.close().await;
    postgres.close().await;
}

#[tokio::test]
async fn postgres_spells_each_value_as_sqlite_s_quote_does() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let lite = testdb::sqlite();
    let sqlite = open(&lite).await;
    let postgres = open(&db).await;
    let texts = [
        "",
        "plain",
        "it's",
        "''",
        "back\\slash",
        "new\nline",
        "ünïcödé ✓",
        "2026-12-04T09:30:00.000Z",
    ];
    for t in texts {
        let want: String = sqlx::query_scalar("SELECT quote($1)")
            .bind(t)
            .fetch_one(sqlite.pool().unwrap())
            .await
            .unwrap();
        let got: String = sqlx::query_scalar("SELECT sqlite_quote($1::text)")
            .bind(t)
            .fetch_one(pg(&postgres))
            .await
            .unwrap();
        assert_eq!(got, want, "{t:?}");
    }
    for n in [0_i64, 1, -1, 42, i64::MAX, i64::MIN] {
        let want: String = sqlx::query_scalar("SELECT quote($1)")
            .bind(n)
            .fetch_one(sqlite.pool().unwrap())
            .await
            .unwrap();
        let got: String = sqlx::query_scalar("SELECT sqlite_quote($1::bigint)")
            .bind(n)
            .fetch_one(pg(&postgres))
            .await
            .unwrap();
        assert_eq!(got, want, "{n}");
    }
    for b in [vec![], vec![0_u8, 0xab, 0xff], vec![7; 32]] {
        let want: String = sqlx::query_scalar("SELECT quote($1)")
            .bind(&b)
            .fetch_one(sqlite.pool().unwrap())
            .await
            .unwrap();
        let got: String = sqlx::query_scalar("SELECT sqlite_quote($1::bytea)")
            .bind(&b)
            .fetch_one(pg(&postgres))
            .await
            .unwrap();
        assert_eq!(got, want, "{b:?}");
    }
    let null: String = sqlx::query_scalar("SELECT sqlite_quote(NULL::text)")
        .fetch_one(pg(&postgres))
        .await
        .unwrap();
    assert_eq!(null, "NULL");
    sqlite.close().await;
    postgres.close().await;
}

pub(crate) fn intent<'a>(
    pipeline: &'a str,
    execution_id: &'a str,
    at: chrono::DateTime<Utc>,
) -> crate::Intent<'a> {
    crate::Intent {
        at,
        sweep_id: None,
        pipeline,
        execution_id,
        rule: "release-freeze",
        rule_kind: crate::RuleKind::Freeze,
        mode: crate::Mode::Finish,
        reason: "it's frozen: \"release-freeze\"",
        explanation: "window 09:00-17:00",
        dry_run: false,
        escalate_at: Some(at + chrono::Duration::minutes(10)),
        escalation_of: None,
        account: "111122223333",
        region: "eu-west-1",
    }
}

pub(crate) fn outcome(at: chrono::DateTime<Utc>, outcome: crate::Outcome) -> crate::OutcomeRow {
    crate::OutcomeRow {
        at,
        outcome,
        attempts: 2,
        throttled: 1,
        elapsed: std::time::Duration::from_millis(120),
        error: None,
        reconciled: false,
    }
}

/// The same records, written on each backend: the same ids and the same chain head, hash for
/// hash (the canonical bytes are the same on both).
#[tokio::test]
async fn stops_and_outcomes_chain_to_the_same_head_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let mut heads = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        let names: Vec<(String, String)> = (0..40)
            .map(|n| (format!("pipe-{n}"), format!("exec-{n:04}")))
            .collect();
        // One at a time: ids and chain order are then the same on both.
        for (n, (p, e)) in names.iter().enumerate() {
            let id = store
                .record_intent(&intent(p, e, at))
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(id, i64::try_from(n).unwrap() + 1, "{kind}");
            let o = if n % 2 == 0 {
                crate::Outcome::Stopped
            } else {
                crate::Outcome::AlreadyStopping
            };
            store.record_outcome(id, &outcome(at, o)).await.unwrap();
        }
        // A second outcome for a stop is refused alone.
        let e = store
            .record_outcome(1, &outcome(at, crate::Outcome::Failed))
            .await
            .unwrap_err();
        assert!(crate::writer::refused_alone(&e), "{kind}: {e:#}");
        assert_eq!(store.pending_escalations().await.unwrap(), 40, "{kind}");
        let head = store.chain_head().await.unwrap();
        assert_eq!(head.0, 80, "{kind}");
        assert_eq!(
            store.chain_hash_at(80).await.unwrap().as_deref(),
            Some(head.1.as_slice()),
            "{kind}"
        );
        heads.push((kind, hex::encode(head.1)));
        store.close().await;
    }
    if let [(_, sqlite), (_, postgres)] = heads.as_slice() {
        assert_eq!(sqlite, postgres, "one log, two backends, two heads");
    }
}

/// Writes queued together share a transaction on every backend, and each is committed when
/// answered.
#[tokio::test]
async fn concurrent_writes_are_group_committed_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        let names: Vec<(String, String)> = (0..200)
            .map(|n| (format!("pipe-{n}"), format!("exec-{n:04}")))
            .collect();
        let writes = names.iter().map(|(p, e)| {
            let store = store.clone();
            let (p, e) = (p.clone(), e.clone());
            async move { store.record_intent(&intent(&p, &e, at)).await }
        });
        let ids: Vec<i64> = futures_join_all(writes).await;
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 200, "{kind}");
        let commits = store.group_commits();
        assert!(
            commits < 20,
            "{kind}: 200 intents took {commits} transactions"
        );
        assert_eq!(store.chain_head().await.unwrap().0, 200, "{kind}");
        store.close().await;
    }
}

/// Runs the futures at once (spawned), in order of their results.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<i64>
where
    F: Future<Output = anyhow::Result<i64>> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap());
    }
    out
}

/// Writes `n` stops with their outcomes, one at a time.
async fn stops_with_outcomes(store: &Store, n: usize) {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    for k in 0..n {
        let (p, e) = (format!("pipe-{k}"), format!("exec-{k:04}"));
        let id = store.record_intent(&intent(&p, &e, at)).await.unwrap();
        store
            .record_outcome(id, &outcome(at, crate::Outcome::Stopped))
            .await
            .unwrap();
    }
}

/// SQL run on the store's database from another connection, with its triggers off for that
/// session only (`session_replication_role = replica`, as a superuser could): the way a
/// tamperer gets past the append-only triggers without dropping them.
async fn tamper_postgres(db: &TestDb, sql: &str) {
    use sqlx::Connection as _;
    let crate::Location::Postgres(url) = db.location() else {
        panic!("not PostgreSQL")
    };
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("SET session_replication_role = replica; {sql}"))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn verify_reads_the_same_head_on_every_backend() {
    let mut heads = Vec::new();
    for db in testdb::backends().await {
        let store = open(&db).await;
        stops_with_outcomes(&store, 5).await;
        let v = store.verify().await.unwrap();
        assert!(v.intact(), "{}: {:?}", db.kind(), v.problems);
        assert_eq!((v.records, v.head_seq), (10, 10), "{}", db.kind());
        assert_eq!(
            v.head_hash,
            hex::encode(store.chain_head().await.unwrap().1),
            "{}",
            db.kind()
        );
        heads.push(v.head_hash);
        store.close().await;
    }
    heads.dedup();
    assert_eq!(heads.len(), 1, "{heads:?}");
}

#[tokio::test]
async fn verify_finds_tampering_on_postgres() {
    let cases: &[(&str, &str)] = &[
        (
            "UPDATE stops SET reason = 'nothing to see' WHERE id = 3",
            "record 5 (stops id 3) was altered",
        ),
        (
            "DELETE FROM stop_outcomes WHERE stop_id = 2",
            "record 4 (stop_outcomes id 2) was removed",
        ),
        (
            "DELETE FROM audit_chain WHERE seq = 6",
            "chain records 6..6 were removed",
        ),
        (
            "INSERT INTO stops (at, pipeline, execution_id, rule, rule_kind, mode, reason, \
             explanation, dry_run) VALUES ('t', 'p', 'e', 'r', 'freeze', 'finish', 'x', 'y', FALSE)",
            "stops id 6 was inserted: it is in no chain record",
        ),
        (
            "DROP TRIGGER stops_append_only_u ON stops",
            "table stops has lost its append-only trigger (BEFORE UPDATE)",
        ),
        (
            "ALTER TABLE gates DISABLE TRIGGER gates_append_only_d",
            "table gates has lost its append-only trigger (BEFORE DELETE)",
        ),
    ];
    for (sql, found) in cases {
        let Some(db) = testdb::postgres().await else {
            return;
        };
        let store = open(&db).await;
        stops_with_outcomes(&store, 5).await;
        assert!(store.verify().await.unwrap().intact());
        tamper_postgres(&db, sql).await;
        let v = store.verify().await.unwrap();
        assert!(
            v.problems.iter().any(|p| p.contains(found)),
            "{sql}: {:?}",
            v.problems
        );
        store.close().await;
    }
}

#[tokio::test]
async fn postgres_globs_as_sqlite_does() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let lite = testdb::sqlite();
    let sqlite = open(&lite).await;
    let postgres = open(&db).await;
    let patterns = [
        "*", "prod-*", "prod-?", "*-web", "[ab]*", "[^ab]*", "[a-c]x", "a.b", "a+b", "(x)", "[]]",
        "[", "x[", "^a", "a$", "a\\b", "*.*", "", "PROD-*", "{a,b}", "a|b",
    ];
    let values = [
        "prod-web",
        "prod-1",
        "prod-12",
        "a-web",
        "bx",
        "cx",
        "dx",
        "a.b",
        "axb",
        "a+b",
        "(x)",
        "]",
        "[",
        "x[",
        "^a",
        "a$",
        "a\\b",
        "",
        "PROD-web",
        "{a,b}",
        "a|b",
        "line\nbreak",
    ];
    for p in patterns {
        for v in values {
            let want: bool = sqlx::query_scalar("SELECT glob($1, $2)")
                .bind(p)
                .bind(v)
                .fetch_one(sqlite.pool().unwrap())
                .await
                .unwrap();
            let got: bool = sqlx::query_scalar("SELECT glob($1, $2)")
                .bind(p)
                .bind(v)
                .fetch_one(pg(&postgres))
                .await
                .unwrap_or_else(|e| panic!("{p:?} {v:?}: {e}"));
            assert_eq!(got, want, "glob({p:?}, {v:?})");
        }
    }
    sqlite.close().await;
    postgres.close().await;
}

/// The daemon's poll of other processes' commits: moved by an exemption another process
/// writes, never by the daemon's own records.
#[tokio::test]
async fn data_version_moves_for_another_process_s_exemption_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    for db in testdb::backends().await {
        let kind = db.kind();
        let daemon = open(&db).await;
        let before = daemon.data_version().await.unwrap();
        stops_with_outcomes(&daemon, 3).await;
        assert_eq!(
            daemon.data_version().await.unwrap(),
            before,
            "{kind}: own writes"
        );
        let cli = open(&db).await;
        cli.add_exemption(at, "prod-*", at, "hotfix", "alice", None)
            .await
            .unwrap();
        cli.close().await;
        assert_ne!(
            daemon.data_version().await.unwrap(),
            before,
            "{kind}: another's"
        );
        daemon.close().await;
    }
}
