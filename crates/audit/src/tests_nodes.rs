//! Lifecycle events per node and leadership ([`Store::set_node`], `record_leader_acquired`,
//! `record_leader_lost`) on every backend, and the migration that added them: a log chained
//! before it verifies after it with the same head.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Connection;

use crate::testdb;
use crate::tests_backends::open;
use crate::{Location, Store, chain};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

/// Two nodes on one database: a start of b never declares a's running process unclean; a's
/// own next start does. Leader events carry node and epoch, and everything chains.
#[tokio::test]
async fn each_node_judges_only_its_own_last_run_and_records_its_leadership() {
    let mut answers = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let a = open(&db).await;
        let b = open(&db).await;
        a.set_node("host-a");
        b.set_node("host-b");
        assert_eq!(a.node().as_deref(), Some("host-a"));
        let none = &|_, _| Vec::new();
        let started = a
            .record_start(at(0), "1.0", Some("aa"), none)
            .await
            .unwrap();
        assert!(started.unclean.is_none(), "{kind}");
        a.record_leader_acquired(at(0), 1).await.unwrap();
        // b starts while a runs: a is not unclean.
        let started = b
            .record_start(at(1), "1.0", Some("aa"), none)
            .await
            .unwrap();
        assert!(started.unclean.is_none(), "{kind}: {started:?}");
        assert!(started.unwatched.is_empty(), "{kind}: a was running");
        a.record_leader_lost(at(2), 1, "lease not renewed in time")
            .await
            .unwrap();
        b.record_leader_acquired(at(3), 2).await.unwrap();
        b.record_reload(at(4), Ok(Some("bb")), None).await.unwrap();
        // a starts again without having stopped: its own run was unclean, not b's.
        let started = a
            .record_start(at(5), "1.0", Some("bb"), none)
            .await
            .unwrap();
        let unclean = started.unclean.expect("a's run was unclean");
        assert_eq!(unclean.last_seen, crate::ts(at(2)), "{kind}");
        b.record_stop(at(6)).await.unwrap();
        // b stopped cleanly: its next start finds nothing.
        let started = b.record_start(at(7), "1.0", None, none).await.unwrap();
        assert!(started.unclean.is_none(), "{kind}");
        let events: Vec<_> = a
            .events(None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.event,
                    e.node,
                    e.epoch,
                    e.detail.filter(|_| e.epoch.is_some()),
                )
            })
            .collect();
        let n = |s: &str| Some(s.to_owned());
        assert_eq!(
            events,
            [
                ("start".into(), n("host-a"), None, None),
                ("leader_acquired".into(), n("host-a"), Some(1), None),
                ("start".into(), n("host-b"), None, None),
                (
                    "leader_lost".into(),
                    n("host-a"),
                    Some(1),
                    n("lease not renewed in time")
                ),
                ("unclean_stop".into(), n("host-a"), None, None),
                ("leader_acquired".into(), n("host-b"), Some(2), None),
                ("reload".into(), n("host-b"), None, None),
                ("start".into(), n("host-a"), None, None),
                ("stop".into(), n("host-b"), None, None),
                ("start".into(), n("host-b"), None, None),
            ],
            "{kind}"
        );
        // Coverage reads the nodes: running throughout; leaderless from a's loss to b's
        // acquisition, and from b's stop (its term ends with it) on.
        let life = a.lifecycle(at(8)).await.unwrap();
        let nl = crate::coverage::leaderless(&life, at(8));
        assert_eq!(nl, [(at(2), at(3)), (at(6), at(8))], "{kind}");
        let v = a.verify().await.unwrap();
        assert!(v.intact(), "{kind}: {:?}", v.problems);
        answers.push((format!("{events:?}"), v.head_hash));
        a.close().await;
        b.close().await;
    }
    if let [sqlite, postgres] = answers.as_slice() {
        assert_eq!(sqlite, postgres);
    }
}

/// A store without a node judges the runs without one; a named node's start also closes a
/// single host's run left open (a log copied from a daemon that was killed), which nothing
/// else would ever close.
#[tokio::test]
async fn a_named_node_closes_a_single_hosts_run_left_open() {
    for db in testdb::backends().await {
        let kind = db.kind();
        let solo = open(&db).await;
        let node = open(&db).await;
        node.set_node("host-a");
        let none = &|_, _| Vec::new();
        solo.record_start(at(0), "1.0", None, none).await.unwrap();
        let first = node.record_start(at(1), "1.0", None, none).await.unwrap();
        assert_eq!(
            first.unclean.map(|u| u.last_seen),
            Some(crate::ts(at(0))),
            "{kind}"
        );
        // host-a's own run, left open, is closed by its own next start.
        let again = node.record_start(at(2), "1.0", None, none).await.unwrap();
        assert_eq!(
            again.unclean.map(|u| u.last_seen),
            Some(crate::ts(at(1))),
            "{kind}"
        );
        // The single host's run was closed already: nothing more to find.
        let solo_again = solo.record_start(at(3), "1.0", None, none).await.unwrap();
        assert!(solo_again.unclean.is_none(), "{kind}");
        let unclean: Vec<Option<String>> = solo
            .events(None, None)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event == "unclean_stop")
            .map(|e| e.node)
            .collect();
        assert_eq!(unclean, [None, Some("host-a".to_owned())], "{kind}");
        assert!(solo.verify().await.unwrap().intact(), "{kind}");
        solo.close().await;
        node.close().await;
    }
}

/// A SQLite database at `path` migrated by the migrations before `version` alone, open.
pub(crate) async fn older_sqlite(path: &std::path::Path, version: &str) -> sqlx::SqliteConnection {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    for f in std::fs::read_dir(&root).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < version {
            std::fs::copy(&f, dir.path().join(name)).unwrap();
        }
    }
    let older = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let opts = Store::write_options(path).unwrap();
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    older.run(&mut c).await.unwrap();
    c
}

/// SQLite rebuilds lifecycle_events to widen its CHECK: a log chained before the migration
/// (lifecycle events and an unwatched window referring to one) verifies after it with the same
/// head, ids and rows kept.
#[tokio::test]
async fn a_log_from_before_the_node_column_verifies_after_the_migration() {
    let db = testdb::sqlite();
    let Location::Sqlite(path) = db.location() else {
        unreachable!()
    };
    let mut c = older_sqlite(&path, "20261205100001").await;
    chain::backfill(&mut c).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    for (t, event) in [("09:00", "start"), ("09:10", "stop"), ("10:00", "start")] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lifecycle_events (at, event, pid, detail) VALUES ($1, $2, 7, 'it''s') \
             RETURNING id",
        )
        .bind(format!("2026-12-01T{t}:00.000Z"))
        .bind(event)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        chain::link(&mut tx, "lifecycle_events", id).await.unwrap();
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO unwatched_windows (found_at, start_event_id, rule, window_start, window_end, \
         gap_from, gap_to) VALUES ('t', 3, 'r', 'a', 'b', 'c', 'd') RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    chain::link(&mut tx, "unwatched_windows", id).await.unwrap();
    tx.commit().await.unwrap();
    c.close().await.unwrap();
    let before = Store::open_read_only(&path).await.unwrap();
    let v0 = before.verify().await.unwrap();
    assert!(v0.intact(), "{:?}", v0.problems);
    before.close().await;

    let store = Store::open(&path).await.unwrap();
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{:?}", v.problems);
    assert_eq!((v.head_seq, v.head_hash), (4, v0.head_hash));
    let events = store.events(None, None).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(
        (events[2].id, events[2].detail.as_deref()),
        (3, Some("it's"))
    );
    // The foreign key still holds, and the new events are accepted.
    store.set_node("host-a");
    store.record_leader_acquired(at(0), 1).await.unwrap();
    let orphan = sqlx::query(
        "INSERT INTO unwatched_windows (found_at, start_event_id, rule, window_start, window_end, \
         gap_from, gap_to) VALUES ('t', 99, 'r', 'x', 'b', 'c', 'd')",
    )
    .execute(store.pool().unwrap())
    .await;
    assert!(orphan.is_err(), "a window of no start was accepted");
    assert!(store.verify().await.unwrap().intact());
    store.close().await;
}

/// A start tried again after a try whose COMMIT went through but whose answer was lost finds
/// this process's own start (same node, same pid) and records nothing: no `unclean_stop` of
/// itself, no second start. A first try that finds a start of the same pid still judges it
/// unclean (pids repeat across hosts' boots and containers), and a retry with nothing of its
/// own on record records the start.
#[tokio::test]
async fn a_start_retried_after_a_lost_commit_answer_is_not_recorded_twice() {
    for db in testdb::backends().await {
        let kind = db.kind();
        let a = open(&db).await;
        a.set_node("host-a");
        let none = &|_, _| Vec::new();
        let started = a
            .record_start_try(at(0), "1.0", None, none, true)
            .await
            .unwrap();
        assert!(!started.already_recorded, "{kind}: nothing on record yet");
        let again = a
            .record_start_try(at(1), "1.0", None, none, true)
            .await
            .unwrap();
        assert!(again.already_recorded, "{kind}: {again:?}");
        assert!(again.unclean.is_none(), "{kind}");
        let kinds = |events: Vec<crate::events::EventRecord>| -> Vec<String> {
            events.into_iter().map(|e| e.event).collect()
        };
        assert_eq!(
            kinds(a.events(None, None).await.unwrap()),
            ["start"],
            "{kind}"
        );
        // A first try finding a start of this pid: another process's (a reused pid), unclean.
        let first = a
            .record_start_try(at(2), "1.0", None, none, false)
            .await
            .unwrap();
        assert!(first.unclean.is_some(), "{kind}: {first:?}");
        assert_eq!(
            kinds(a.events(None, None).await.unwrap()),
            ["start", "unclean_stop", "start"],
            "{kind}"
        );
        a.close().await;
    }
}
