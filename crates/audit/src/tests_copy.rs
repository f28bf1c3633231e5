//! `copy` ([`crate::copy`]): a log holding every record family copied SQLite -> PostgreSQL ->
//! SQLite verifies with the same head on all three, reads back alike and goes on (ids continue
//! after the copied ones); a target that is not empty is refused and left as it was; a copy
//! that fails leaves the target empty.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::Connection;

use crate::copy::{NOT_COPIED, TABLES};
use crate::testdb::{self, TestDb};
use crate::tests_backends::{intent, open, outcome};
use crate::{Location, Store, SweepTrigger, chain, copy};

/// Writes a record of every family: sweeps (whole, folded into a run, one left open), stops
/// with outcomes (and an escalation), gates, exemptions and a revocation, ad-hoc freezes and
/// a lift, lifecycle events (starts, a reload, a stop, an unclean stop, a window that began
/// unwatched), policy loads, places, and the outbox's receipts.
pub(crate) async fn fill(store: &Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap();
    let h = |n: i64| t0 + chrono::Duration::hours(n);
    let windows = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
        let start = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        if from <= start && start < to {
            vec![crate::events::StartedWindow {
                rule: "release-freeze".into(),
                start,
                end: start + chrono::Duration::hours(8),
            }]
        } else {
            Vec::new()
        }
    };
    store
        .record_start(t0, "1.0.0", Some("abc"), &windows)
        .await
        .unwrap();
    store
        .record_policy_load(t0, "/etc/stopd/stopd.toml", "abc", "start")
        .await
        .unwrap();
    store
        .compact_quiet_sweeps(Duration::from_secs(65))
        .await
        .unwrap();
    let d = Duration::from_millis(800);
    let quiet = crate::SweepResult {
        pipelines_seen: 10,
        ..Default::default()
    };
    let s = store
        .begin_sweep(t0, SweepTrigger::Startup, false)
        .await
        .unwrap();
    store.finish_sweep(s, t0, d, &quiet).await.unwrap();
    for k in 1..=3 {
        let at = t0 + chrono::Duration::seconds(30 * k);
        let id = store
            .begin_sweep(at, SweepTrigger::Schedule, false)
            .await
            .unwrap();
        store.finish_sweep(id, at, d, &quiet).await.unwrap();
    }
    let at = t0 + chrono::Duration::seconds(120);
    let sweep = store
        .begin_sweep(at, SweepTrigger::Schedule, false)
        .await
        .unwrap();
    let mut i = intent("prod-web", "e1", at);
    i.sweep_id = Some(sweep);
    let stop = store.record_intent(&i).await.unwrap();
    store
        .record_outcome(stop, &outcome(at, crate::Outcome::Stopped))
        .await
        .unwrap();
    let mut again = intent("prod-web", "e1", at);
    again.escalation_of = Some(stop);
    again.mode = crate::Mode::Abandon;
    again.escalate_at = None;
    let esc = store.record_intent(&again).await.unwrap();
    let failed = crate::OutcomeRow {
        error: Some("it's 'quoted'\nand two lines".into()),
        ..outcome(at, crate::Outcome::Failed)
    };
    store.record_outcome(esc, &failed).await.unwrap();
    let busy = crate::SweepResult {
        stops_decided: 2,
        errors: 1,
        ..quiet.clone()
    };
    store.finish_sweep(sweep, at, d, &busy).await.unwrap();
    // Another quiet one, left open (sweep_run_open).
    let id = store
        .begin_sweep(
            at + chrono::Duration::seconds(30),
            SweepTrigger::Schedule,
            false,
        )
        .await
        .unwrap();
    store
        .finish_sweep(id, at + chrono::Duration::seconds(30), d, &quiet)
        .await
        .unwrap();
    let gate = |action| crate::NewGate {
        account: "111122223333",
        region: "eu-west-1",
        pipeline: "prod-web",
        stage: "Deploy",
        rule: "release-freeze",
        action,
        reason: "frozen",
    };
    let g = store
        .gate_intent(at, Some(sweep), &gate(crate::GateAction::Disable), false)
        .await
        .unwrap();
    store
        .gate_outcome(g, at, crate::GateOutcome::Done, None)
        .await
        .unwrap();
    store
        .gate_intent(at, None, &gate(crate::GateAction::Enable), true)
        .await
        .unwrap();
    let ex = store
        .add_exemption(
            h(1),
            "prod-*",
            h(2),
            "hotfix",
            "alice",
            Some("release-freeze"),
        )
        .await
        .unwrap();
    store
        .revoke_exemption(ex, h(1), "bob", Some("done"))
        .await
        .unwrap();
    let tags = [("team".to_owned(), "payments".to_owned())].into();
    let freeze = |gate| crate::NewFreeze {
        at: h(1),
        until: h(3),
        pipeline: "prod-*",
        exclude: Some("prod-docs"),
        tags: &tags,
        mode: stopd_rules::Mode::Abandon,
        gate,
        account: Some("1111*"),
        region: None,
        reason: "incident 42",
        by: "alice",
    };
    let f = store.add_freeze(&freeze(true)).await.unwrap();
    store.add_freeze(&freeze(false)).await.unwrap();
    store.lift_freeze(f, h(2), "resolved", "bob").await.unwrap();
    let place = |account: &str, ok| crate::PlaceResult {
        account: account.into(),
        region: "eu-west-1".into(),
        ok,
        interrupted: false,
        error: (!ok).then(|| "AccessDenied".to_owned()),
    };
    store
        .record_places(h(1), &[place("a", true), place("b", false)])
        .await
        .unwrap();
    store
        .record_reload(h(1), Ok(Some("def")), None)
        .await
        .unwrap();
    store
        .record_reload(h(1), Err("line 3: bad"), None)
        .await
        .unwrap();
    store.record_stop(h(1)).await.unwrap();
    // Down 09:00 to 11:00 (the 10:00 window began unwatched), then killed (no stop).
    store
        .record_start(h(3), "1.0.1", Some("def"), &windows)
        .await
        .unwrap();
    store
        .record_start(h(5), "1.0.1", None, &windows)
        .await
        .unwrap();
    let since = store.notify_since("ops", t0).await.unwrap();
    let exemptions = store.pending_exemptions("ops", since).await.unwrap();
    let done = crate::outbox::Delivered {
        at: crate::ts(h(5)),
        source: crate::outbox::Source::Exemptions,
        source_id: exemptions[0].source_id,
        attempts: 1,
    };
    store.mark_delivered("ops", &[done]).await.unwrap();
}

/// What the log answers, as text: equal logs answer alike.
async fn answers(store: &Store) -> String {
    let since = Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap();
    format!(
        "{}\n{}\n{}\n{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}",
        serde_json::to_string(&store.report(&Default::default()).await.unwrap()).unwrap(),
        serde_json::to_string(&store.sweeps(None, None).await.unwrap()).unwrap(),
        serde_json::to_string(
            &store
                .gate_records(None, None, None, None, (None, None))
                .await
                .unwrap()
        )
        .unwrap(),
        serde_json::to_string(&store.exemptions().await.unwrap()).unwrap(),
        store.freezes().await.unwrap(),
        store.events(None, None).await.unwrap(),
        store.last_policy_load().await.unwrap(),
        store.place_sweeps().await.unwrap(),
        store.last_quiet_sweep().await.unwrap(),
        store.pending_exemptions("ops", since).await.unwrap(),
        store.delivered_count().await.unwrap(),
    )
}

/// Rows per table, as `copy` counts them.
async fn counts(store: &Store) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT COUNT(*) FROM \"{table}\"");
        let n: i64 =
            crate::on_pool!(store, |pool| sqlx::query_scalar(&sql).fetch_one(pool).await).unwrap();
        out.push((*table, n as u64));
    }
    out
}

async fn copied(from: &TestDb, to: &TestDb) -> crate::Copied {
    copy(&from.location(), &to.location())
        .await
        .unwrap_or_else(|e| panic!("{} -> {}: {e:#}", from.kind(), to.kind()))
}

#[tokio::test]
async fn a_log_copies_sqlite_to_postgres_to_sqlite_with_the_same_head() {
    let first = testdb::sqlite();
    let store = open(&first).await;
    fill(&store).await;
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{:?}", v.problems);
    let want = answers(&store).await;
    let rows = counts(&store).await;
    assert!(
        rows.iter().all(|(_, n)| *n > 0),
        "a family is missing: {rows:?}"
    );
    store.close().await;

    // Through PostgreSQL when there is one (always in CI), else SQLite to SQLite.
    let middle = testdb::postgres().await.unwrap_or_else(testdb::sqlite);
    let last = testdb::sqlite();
    for (from, to) in [(&first, &middle), (&middle, &last)] {
        let c = copied(from, to).await;
        assert_eq!(
            (c.head_seq, &c.head_hash),
            (v.head_seq, &v.head_hash),
            "{}",
            to.kind()
        );
        assert_eq!(c.tables, rows, "{}", to.kind());
        let store = Store::open_read_only(to.location()).await.unwrap();
        let again = store.verify().await.unwrap();
        assert!(again.intact(), "{}: {:?}", to.kind(), again.problems);
        assert_eq!(
            (again.head_seq, again.head_hash),
            (v.head_seq, v.head_hash.clone())
        );
        assert_eq!(answers(&store).await, want, "{}", to.kind());
        store.close().await;
    }

    // The copy goes on: new records take the ids after the copied ones, and chain on.
    let store = open(&middle).await;
    let at = Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).unwrap();
    let next = store
        .add_exemption(at, "web", at, "later", "carol", None)
        .await
        .unwrap();
    let stop = store.record_intent(&intent("web", "e9", at)).await.unwrap();
    assert_eq!((next, stop), (2, 3), "{}", middle.kind());
    store
        .record_start(at, "1.0.2", None, &|_, _| Vec::new())
        .await
        .unwrap();
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{:?}", v.problems);
    store.close().await;
}

#[tokio::test]
async fn a_target_that_is_not_empty_is_refused_and_left_as_it_was() {
    let source = testdb::sqlite();
    let store = open(&source).await;
    fill(&store).await;
    store.close().await;
    for target in testdb::backends().await {
        let kind = target.kind();
        let store = open(&target).await;
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap();
        store
            .add_exemption(at, "web", at, "mine", "dave", None)
            .await
            .unwrap();
        let before = (
            store.verify().await.unwrap().head_hash,
            counts(&store).await,
        );
        store.close().await;
        let e = copy(&source.location(), &target.location())
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("is not empty") && e.contains("table exemptions holds 1 row"),
            "{kind}: {e}"
        );
        let store = open(&target).await;
        let after = (
            store.verify().await.unwrap().head_hash,
            counts(&store).await,
        );
        assert_eq!(after, before, "{kind}");
        store.close().await;
    }
    // A file that is not an audit log is refused too, and left alone.
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "not a database, keep me").unwrap();
    assert!(
        copy(&source.location(), &Location::Sqlite(foreign.clone()))
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "not a database, keep me"
    );
}

/// A source value of a kind its column does not hold (SQLite keeps a text in an INTEGER
/// column) fails the copy, naming table and column, and the target keeps no row of it.
#[tokio::test]
async fn a_failed_copy_leaves_the_target_empty() {
    let source = testdb::sqlite();
    let store = open(&source).await;
    fill(&store).await;
    store.close().await;
    let Location::Sqlite(path) = source.location() else {
        unreachable!()
    };
    let mut c = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    sqlx::query("INSERT INTO policy_loads (at, pid, path, hash, trigger) VALUES ('x', 'a pid', 'p', 'h', 'start')")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    for target in testdb::backends().await {
        let kind = target.kind();
        let e = format!(
            "{:#}",
            copy(&source.location(), &target.location())
                .await
                .unwrap_err()
        );
        assert!(
            e.contains("table policy_loads") && e.contains("column pid"),
            "{kind}: {e}"
        );
        let store = Store::open_read_only(target.location()).await.unwrap();
        assert!(counts(&store).await.iter().all(|(_, n)| *n == 0), "{kind}");
        store.close().await;
    }
}

/// A copy is one snapshot of its source: records written while it runs (a daemon still
/// writing) are either wholly in it, chain rows and all, or not at all, and it verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_written_to_during_the_copy_is_copied_as_one_snapshot() {
    for source in testdb::backends().await {
        let kind = source.kind();
        let store = open(&source).await;
        fill(&store).await;
        let writer = store.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let busy = tokio::spawn(async move {
            let at = Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).unwrap();
            let mut n = 0;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let e = format!("e{n}");
                let id = writer
                    .record_intent(&intent("prod-api", &e, at))
                    .await
                    .unwrap();
                writer
                    .record_outcome(id, &outcome(at, crate::Outcome::Stopped))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        });
        let target = testdb::sqlite();
        let c = copied(&source, &target).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = busy.await.unwrap();
        assert!(written > 0, "{kind}: nothing was written during the copy");
        let copy = Store::open_read_only(target.location()).await.unwrap();
        let v = copy.verify().await.unwrap();
        assert!(v.intact(), "{kind}: {:?}", v.problems);
        assert_eq!(
            (v.head_seq, &v.head_hash),
            (c.head_seq, &c.head_hash),
            "{kind}"
        );
        // The source went on past the snapshot, and the copy is a prefix of it.
        let (seq, _) = store.chain_head().await.unwrap();
        assert!(seq >= c.head_seq, "{kind}");
        let at_snapshot = store.chain_hash_at(c.head_seq).await.unwrap().unwrap();
        assert_eq!(hex::encode(at_snapshot), c.head_hash, "{kind}");
        copy.close().await;
        store.close().await;
    }
}

/// A source an older stopd wrote (a migration missing) is refused, naming the migration,
/// before the target is made.
#[tokio::test]
async fn a_source_with_an_older_schema_is_refused() {
    let source = testdb::sqlite();
    let Location::Sqlite(path) = source.location() else {
        unreachable!()
    };
    let mut c = crate::tests_nodes::older_sqlite(&path, "20261205100001").await;
    chain::backfill(&mut c).await.unwrap();
    c.close().await.unwrap();
    let target = testdb::sqlite();
    let e = format!(
        "{:#}",
        copy(&source.location(), &target.location())
            .await
            .unwrap_err()
    );
    assert!(
        e.contains("written by an older stopd") && e.contains("20261205100001"),
        "{e}"
    );
    let Location::Sqlite(made) = target.location() else {
        unreachable!()
    };
    assert!(!made.exists(), "a refused source made the target");
}

/// Every table of either schema is copied or named as left behind, and every audited table
/// is copied: a table added by a migration without a decision fails here.
#[tokio::test]
async fn every_table_is_copied_or_named_as_left_behind() {
    for table in chain::AUDITED {
        assert!(TABLES.contains(table), "{table} is audited but not copied");
    }
    for db in testdb::backends().await {
        let store = open(&db).await;
        let tables: Vec<String> = match store.backend() {
            crate::Backend::Sqlite(pool) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            crate::Backend::Postgres(pool) => sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
        };
        for t in tables {
            assert!(
                TABLES.contains(&t.as_str()) || NOT_COPIED.contains(&t.as_str()),
                "{}: table {t}: add it to copy::TABLES (parents first) or NOT_COPIED",
                db.kind()
            );
        }
        store.close().await;
    }
}
