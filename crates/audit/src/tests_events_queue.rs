//! The event queue's outages in the lifecycle log ([`Store::record_events_state`]) on every
//! backend, their outbox (`pending_events_failures`), and the migration that added the two
//! events: a log chained before it verifies after it with the same head.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Connection;

use crate::testdb;
use crate::tests_backends::open;
use crate::{LifecycleEvent, Location, Store, chain};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 20, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/111122223333/stopd-events";

/// Only changes are recorded, judged against the log (of any node), not the caller: a failure
/// after a failure (another poll, a restart, another node) records nothing; the queue read
/// again records `events_resumed` once; a readable queue with no outage behind it, nothing.
#[tokio::test]
async fn an_outage_is_one_events_failed_and_one_events_resumed_whoever_sees_it() {
    let mut answers = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let a = open(&db).await;
        let b = open(&db).await;
        a.set_node("host-a");
        b.set_node("host-b");
        a.notify_since("chat", at(0)).await.unwrap();
        let denied = Some("AccessDenied: not authorized to perform sqs:ReceiveMessage");
        let steps = [
            (&a, 1, None, None),
            (&a, 2, denied, Some(LifecycleEvent::EventsFailed)),
            (&a, 3, denied, None),
            // Another node (a new leader) finds the outage recorded.
            (&b, 4, Some("QueueDoesNotExist"), None),
            (&b, 5, None, Some(LifecycleEvent::EventsResumed)),
            (&a, 6, None, None),
            (&a, 7, denied, Some(LifecycleEvent::EventsFailed)),
        ];
        for (store, minute, error, want) in steps {
            let got = store
                .record_events_state(at(minute), QUEUE, error)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(got, want, "{kind}: minute {minute}");
        }
        let events: Vec<(String, Option<String>, Option<String>)> = a
            .events(None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event, e.node, e.detail))
            .collect();
        let s = |t: &str| Some(t.to_owned());
        let failed = s(&format!(
            "{QUEUE} cannot be read: AccessDenied: not authorized to perform sqs:ReceiveMessage"
        ));
        assert_eq!(
            events,
            [
                ("events_failed".into(), s("host-a"), failed.clone()),
                (
                    "events_resumed".into(),
                    s("host-b"),
                    s(&format!("{QUEUE} can be read again"))
                ),
                ("events_failed".into(), s("host-a"), failed.clone()),
            ],
            "{kind}"
        );
        // The outbox: each outage once, and a target that received the first has the second.
        let pending = a.pending_events_failures("chat", at(0)).await.unwrap();
        let got: Vec<(&str, Option<&str>)> = pending
            .iter()
            .map(|p| (p.at.as_str(), p.detail.as_deref()))
            .collect();
        let (t2, t7) = (crate::ts(at(2)), crate::ts(at(7)));
        assert_eq!(
            got,
            [
                (t2.as_str(), failed.as_deref()),
                (t7.as_str(), failed.as_deref())
            ],
            "{kind}"
        );
        a.mark_delivered(
            "chat",
            &[crate::outbox::Delivered {
                at: crate::ts(at(8)),
                source: crate::outbox::Source::EventsFailures,
                source_id: pending[0].source_id,
                attempts: 1,
            }],
        )
        .await
        .unwrap();
        let left = a.pending_events_failures("chat", at(0)).await.unwrap();
        assert_eq!(left.len(), 1, "{kind}");
        assert_eq!(left[0].source_id, pending[1].source_id, "{kind}");
        // No other outbox takes these rows for its own (leader changes read the same table).
        assert!(
            a.pending_leader_changes("chat", at(0))
                .await
                .unwrap()
                .is_empty(),
            "{kind}"
        );
        // Coverage ignores them: running from the log's first event (none here: not known).
        let life = a.lifecycle(at(9)).await.unwrap();
        assert_eq!(crate::coverage::leaderless(&life, at(9)), [], "{kind}");
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

/// The migrations of `dir` before `version` alone, in a temporary directory.
fn migrations_before(dir: &str, version: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    for f in std::fs::read_dir(&root).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < version {
            std::fs::copy(&f, out.path().join(name)).unwrap();
        }
    }
    out
}

const VERSION: &str = "20261205200000";

/// The lifecycle rows of a log from before the migration: a start, leadership of a node, a
/// stop; and an unwatched window that refers to the start.
const OLD_ROWS: [(&str, &str, Option<&str>, Option<i64>); 4] = [
    ("09:00", "start", None, None),
    ("09:01", "leader_acquired", Some("host-a"), Some(1)),
    ("09:10", "stop", Some("host-a"), None),
    ("10:00", "start", Some("host-a"), None),
];

const INSERT_OLD: &str = "INSERT INTO lifecycle_events (at, event, pid, detail, node, epoch) \
     VALUES ($1, $2, 7, 'it''s', $3, $4) RETURNING id";

const INSERT_WINDOW: &str = "INSERT INTO unwatched_windows (found_at, start_event_id, rule, \
     window_start, window_end, gap_from, gap_to) VALUES ('t', 4, 'r', 'a', 'b', 'c', 'd') \
     RETURNING id";

/// After the migration: the old log verifies with the same head, its rows and ids kept, the
/// foreign key still holds, and the new events are accepted and chain.
async fn after_migration(store: &Store, head: String, kind: &str) {
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{kind}: {:?}", v.problems);
    assert_eq!((v.head_seq, v.head_hash), (5, head), "{kind}");
    let events = store.events(None, None).await.unwrap();
    let got: Vec<(i64, &str, Option<&str>, Option<i64>)> = events
        .iter()
        .map(|e| (e.id, e.event.as_str(), e.node.as_deref(), e.epoch))
        .collect();
    assert_eq!(
        got,
        [
            (1, "start", None, None),
            (2, "leader_acquired", Some("host-a"), Some(1)),
            (3, "stop", Some("host-a"), None),
            (4, "start", Some("host-a"), None),
        ],
        "{kind}"
    );
    assert_eq!(events[3].detail.as_deref(), Some("it's"), "{kind}");
    store.set_node("host-a");
    assert_eq!(
        store
            .record_events_state(at(0), QUEUE, Some("AccessDenied"))
            .await
            .unwrap(),
        Some(LifecycleEvent::EventsFailed),
        "{kind}"
    );
    assert_eq!(
        store.record_events_state(at(1), QUEUE, None).await.unwrap(),
        Some(LifecycleEvent::EventsResumed),
        "{kind}"
    );
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{kind}: {:?}", v.problems);
    assert_eq!(v.head_seq, 7, "{kind}");
}

/// SQLite rebuilds lifecycle_events to widen its CHECK: a log chained before the migration
/// (lifecycle events with nodes and epochs, and an unwatched window referring to one)
/// verifies after it with the same head, ids and rows kept.
#[tokio::test]
async fn a_sqlite_log_from_before_the_queue_events_verifies_after_the_migration() {
    let db = testdb::sqlite();
    let Location::Sqlite(path) = db.location() else {
        unreachable!()
    };
    let dir = migrations_before("../../migrations", VERSION);
    let older = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let opts = Store::write_options(&path).unwrap();
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    older.run(&mut c).await.unwrap();
    chain::backfill(&mut c).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    for (t, event, node, epoch) in OLD_ROWS {
        let id: i64 = sqlx::query_scalar(INSERT_OLD)
            .bind(format!("2026-12-01T{t}:00.000Z"))
            .bind(event)
            .bind(node)
            .bind(epoch)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        chain::link(&mut tx, "lifecycle_events", id).await.unwrap();
    }
    let id: i64 = sqlx::query_scalar(INSERT_WINDOW)
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
    after_migration(&store, v0.head_hash, "sqlite").await;
    let orphan = sqlx::query(
        "INSERT INTO unwatched_windows (found_at, start_event_id, rule, window_start, window_end, \
         gap_from, gap_to) VALUES ('t', 99, 'r', 'x', 'b', 'c', 'd')",
    )
    .execute(store.pool().unwrap())
    .await;
    assert!(orphan.is_err(), "a window of no start was accepted");
    store.close().await;
}

/// PostgreSQL drops and adds the CHECK: a log chained before the migration verifies after it
/// with the same head.
#[tokio::test]
async fn a_postgres_log_from_before_the_queue_events_verifies_after_the_migration() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let Location::Postgres(url) = db.location() else {
        unreachable!()
    };
    let dir = migrations_before("../../migrations-postgres", VERSION);
    let older = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    older.run(&mut c).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::query("LOCK TABLE audit_chain IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut linker = chain::Linker::default();
    for (t, event, node, epoch) in OLD_ROWS {
        let id: i64 = sqlx::query_scalar(INSERT_OLD)
            .bind(format!("2026-12-01T{t}:00.000Z"))
            .bind(event)
            .bind(node)
            .bind(epoch)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        linker
            .link_pg(&mut tx, "lifecycle_events", id)
            .await
            .unwrap();
    }
    let id: i64 = sqlx::query_scalar(INSERT_WINDOW)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    linker
        .link_pg(&mut tx, "unwatched_windows", id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    c.close().await.unwrap();
    let before = Store::open_read_only(db.location()).await.unwrap();
    let v0 = before.verify().await.unwrap();
    assert!(v0.intact(), "{:?}", v0.problems);
    before.close().await;

    let store = Store::open(db.location()).await.unwrap();
    after_migration(&store, v0.head_hash, "postgres").await;
    store.close().await;
}

/// The state is per queue: queue A failed (and is still failing), then queue B fails: B
/// records its own `events_failed`; B read again ends B's outage, not A's. A URL with `LIKE`'s
/// wildcards (`_`, `%`) and one that is another's prefix are told apart.
#[tokio::test]
async fn each_queue_has_its_own_outage() {
    for db in testdb::backends().await {
        let kind = db.kind();
        let s = open(&db).await;
        let a = "https://sqs.eu-west-1.amazonaws.com/111122223333/stopd_events";
        let b = "https://sqs.eu-west-1.amazonaws.com/111122223333/stopd%events";
        let prefix = "https://sqs.eu-west-1.amazonaws.com/111122223333/stopd";
        let steps = [
            (
                1,
                a,
                Some("AccessDenied"),
                Some(LifecycleEvent::EventsFailed),
            ),
            (
                2,
                b,
                Some("QueueDoesNotExist"),
                Some(LifecycleEvent::EventsFailed),
            ),
            (
                3,
                prefix,
                Some("AccessDenied"),
                Some(LifecycleEvent::EventsFailed),
            ),
            (4, a, Some("AccessDenied"), None),
            (5, b, None, Some(LifecycleEvent::EventsResumed)),
            (6, a, Some("AccessDenied"), None),
            (7, prefix, None, Some(LifecycleEvent::EventsResumed)),
            (8, a, None, Some(LifecycleEvent::EventsResumed)),
            (9, b, None, None),
        ];
        for (minute, queue, error, want) in steps {
            let got = s
                .record_events_state(at(minute), queue, error)
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(got, want, "{kind}: minute {minute}");
        }
        s.close().await;
    }
}
