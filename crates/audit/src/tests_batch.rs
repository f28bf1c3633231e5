//! The group-commit writer's batches on every backend: a batch mixing every kind of write, a
//! batch in which one write is refused by a constraint (on PostgreSQL the batch is then written
//! again one write at a time, `writer::pg`), and the fence refusing a whole batch.
//!
//! Each batch is queued with `tokio::join!` on the test's single-threaded runtime: every write
//! is sent before the writer task runs, so they share one transaction, in the order written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{TimeZone, Utc};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::lease::Fence;
use crate::testdb::{self, tick};
use crate::tests_backends::{intent, open, outcome};
use crate::{GateAction, GateOutcome, NewGate, Outcome, ReportFilter, Store};

/// A gate action on `pipeline`'s stage `Deploy`.
fn gate(pipeline: &str) -> NewGate<'_> {
    NewGate {
        account: "111122223333",
        region: "eu-west-1",
        pipeline,
        stage: "Deploy",
        rule: "release-freeze",
        action: GateAction::Disable,
        reason: "it's frozen: \"release-freeze\"",
    }
}

/// Whether the chain verifies with no problem.
async fn intact(store: &Store) -> bool {
    store.verify().await.unwrap().problems.is_empty()
}

/// Stop intents, stop outcomes, gate actions and gate outcomes queued together: one
/// transaction, each answered with its id, chained in the order written, the chain intact and
/// hash for hash the same on both backends.
#[tokio::test]
async fn a_batch_mixing_intents_outcomes_and_gates_is_one_transaction_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let mut heads = Vec::new();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        // Two stops and two gate actions on record, one at a time.
        for p in ["p0", "p1"] {
            store.record_intent(&intent(p, p, at)).await.unwrap();
            store.gate_intent(at, None, &gate(p), false).await.unwrap();
        }
        let before = store.group_commits();
        let (s2, o1, g2, go1, o2, s3, go2) = tokio::join!(
            async { store.record_intent(&intent("p2", "e2", at)).await },
            async {
                store
                    .record_outcome(1, &outcome(at, Outcome::Stopped))
                    .await
            },
            async { store.gate_intent(at, None, &gate("p2"), false).await },
            async { store.gate_outcome(1, at, GateOutcome::Done, None).await },
            async {
                store
                    .record_outcome(2, &outcome(at, Outcome::AlreadyStopping))
                    .await
            },
            async { store.record_intent(&intent("p3", "e3", at)).await },
            async {
                store
                    .gate_outcome(2, at, GateOutcome::Failed, Some("AccessDenied"))
                    .await
            },
        );
        let ids = (s2.unwrap(), g2.unwrap(), s3.unwrap());
        o1.unwrap();
        go1.unwrap();
        o2.unwrap();
        go2.unwrap();
        assert_eq!(ids, (3, 3, 4), "{kind}");
        assert_eq!(store.group_commits(), before + 1, "{kind}: one transaction");
        let head = store.chain_head().await.unwrap();
        assert_eq!(head.0, 4 + 7, "{kind}");
        assert!(intact(&store).await, "{kind}");
        // Each outcome is its stop's or gate's.
        let stops = store.report(&ReportFilter::default()).await.unwrap();
        let mut got: Vec<(i64, &str, &str)> = stops
            .iter()
            .map(|r| (r.id, r.execution_id.as_str(), r.outcome.as_str()))
            .collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                (1, "p0", "stopped"),
                (2, "p1", "already_stopping"),
                (3, "e2", "pending"),
                (4, "e3", "pending"),
            ],
            "{kind}"
        );
        let gates = store
            .gate_records(None, None, None, None, (None, None))
            .await
            .unwrap();
        let mut got: Vec<(i64, &str, &str, Option<&str>)> = gates
            .iter()
            .map(|g| {
                let error = g.error.as_deref();
                (g.id, g.pipeline.as_str(), g.outcome.as_str(), error)
            })
            .collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                (1, "p0", "done", None),
                (2, "p1", "failed", Some("AccessDenied")),
                (3, "p2", "pending", None),
            ],
            "{kind}"
        );
        heads.push(hex::encode(head.1));
        store.close().await;
    }
    if let [sqlite, postgres] = heads.as_slice() {
        assert_eq!(sqlite, postgres, "one batch, two backends, two heads");
    }
}

/// A batch in which two writes break a constraint (a second outcome for one stop, an outcome
/// for a stop that does not exist): those two fail alone, as refused; every other write of the
/// batch is written, chained and answered with its id; the chain is intact.
#[tokio::test]
async fn a_write_refused_by_a_constraint_fails_alone_in_its_batch_on_every_backend() {
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    for db in testdb::backends().await {
        let kind = db.kind();
        let store = open(&db).await;
        let first = store.record_intent(&intent("p0", "e0", at)).await.unwrap();
        store
            .record_outcome(first, &outcome(at, Outcome::Stopped))
            .await
            .unwrap();
        let before = store.group_commits();
        let (s1, again, g1, unknown, s2, go) = tokio::join!(
            async { store.record_intent(&intent("p1", "e1", at)).await },
            async {
                store
                    .record_outcome(first, &outcome(at, Outcome::Failed))
                    .await
            },
            async { store.gate_intent(at, None, &gate("p1"), false).await },
            async {
                store
                    .record_outcome(999, &outcome(at, Outcome::Stopped))
                    .await
            },
            async { store.record_intent(&intent("p2", "e2", at)).await },
            async { store.gate_outcome(998, at, GateOutcome::Done, None).await },
        );
        for (what, e) in [
            ("a second outcome", again.unwrap_err()),
            ("an unknown stop", unknown.unwrap_err()),
        ] {
            assert!(crate::writer::refused_alone(&e), "{kind}: {what}: {e:#}");
        }
        let e = go.unwrap_err();
        assert!(
            crate::writer::refused_alone(&e),
            "{kind}: unknown gate: {e:#}"
        );
        let (s1, g1, s2) = (s1.unwrap(), g1.unwrap(), s2.unwrap());
        assert!(s1 > first && s2 > s1, "{kind}: {first} {s1} {s2}");
        assert_eq!(store.group_commits(), before + 1, "{kind}: one transaction");
        // Two records before, three in the batch.
        assert_eq!(store.chain_head().await.unwrap().0, 2 + 3, "{kind}");
        assert!(intact(&store).await, "{kind}");
        let stops = store.report(&ReportFilter::default()).await.unwrap();
        let mut got: Vec<(i64, &str, &str)> = stops
            .iter()
            .map(|r| (r.id, r.execution_id.as_str(), r.outcome.as_str()))
            .collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                (first, "e0", "stopped"),
                (s1, "e1", "pending"),
                (s2, "e2", "pending")
            ],
            "{kind}"
        );
        let gates = store
            .gate_records(None, None, None, None, (None, None))
            .await
            .unwrap();
        assert_eq!(
            gates.iter().map(|g| g.id).collect::<Vec<_>>(),
            [g1],
            "{kind}"
        );
        // The writer goes on: the next batch takes the quick way again.
        let s3 = store.record_intent(&intent("p3", "e3", at)).await.unwrap();
        assert!(s3 > s2, "{kind}");
        assert!(intact(&store).await, "{kind}");
        store.close().await;
    }
}

/// On PostgreSQL, a store whose fence no longer matches the lease (another node or epoch) has a
/// whole batch refused, "fenced": nothing of it is written, no caller hears "written"; a
/// standby's store likewise; the leader's store writes the same batch.
#[tokio::test]
async fn the_fence_refuses_a_whole_batch() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let store = open(&db).await;
    let stop = store.record_intent(&intent("p0", "e0", at)).await.unwrap();
    let lease = std::time::Duration::from_secs(60);
    assert_eq!(store.acquire_lease("a", 1, lease).await.unwrap().0, Some(1));
    let head = store.chain_head().await.unwrap();
    let stale = [
        Fence::Leader {
            node: "a".into(),
            epoch: 2,
        },
        Fence::Leader {
            node: "b".into(),
            epoch: 1,
        },
        Fence::Standby,
    ];
    for fence in stale {
        store.set_fence(fence.clone());
        let before = store.group_commits();
        let (s1, o, g1) = tokio::join!(
            async { store.record_intent(&intent("p1", "e1", at)).await },
            async {
                store
                    .record_outcome(stop, &outcome(at, Outcome::Stopped))
                    .await
            },
            async { store.gate_intent(at, None, &gate("p1"), false).await },
        );
        for (what, r) in [
            ("intent", s1.map(|_| ())),
            ("outcome", o),
            ("gate", g1.map(|_| ())),
        ] {
            let e = format!("{:#}", r.unwrap_err());
            assert!(e.contains("fenced"), "{fence:?}: {what}: {e}");
        }
        assert_eq!(store.group_commits(), before, "{fence:?}");
        assert_eq!(store.chain_head().await.unwrap(), head, "{fence:?}");
    }
    // The same batch from the leader of the lease's epoch.
    store.set_fence(Fence::Leader {
        node: "a".into(),
        epoch: 1,
    });
    let (s1, o, g1) = tokio::join!(
        async { store.record_intent(&intent("p1", "e1", at)).await },
        async {
            store
                .record_outcome(stop, &outcome(at, Outcome::Stopped))
                .await
        },
        async { store.gate_intent(at, None, &gate("p1"), false).await },
    );
    s1.unwrap();
    o.unwrap();
    g1.unwrap();
    assert_eq!(store.chain_head().await.unwrap().0, head.0 + 3);
    assert!(intact(&store).await);
    store.close().await;
}

/// On PostgreSQL the writer keeps its connection from one batch to the next: when the server
/// has closed it meanwhile (a restart, an administrator), the next batch is written on a new
/// one, not failed (nothing of it had been sent).
#[tokio::test]
async fn the_writer_reconnects_when_its_idle_connection_was_closed() {
    use sqlx::Connection as _;
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let store = open(&db).await;
    let first = store.record_intent(&intent("p0", "e0", at)).await.unwrap();
    let crate::Location::Postgres(url) = db.location() else {
        unreachable!()
    };
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        !killed.is_empty() && killed.iter().all(|k| *k),
        "{killed:?}"
    );
    admin.close().await.unwrap();
    let (second, o) = tokio::join!(
        async { store.record_intent(&intent("p1", "e1", at)).await },
        async {
            store
                .record_outcome(first, &outcome(at, Outcome::Stopped))
                .await
        },
    );
    assert!(second.unwrap() > first);
    o.unwrap();
    assert_eq!(store.chain_head().await.unwrap().0, 3);
    assert!(intact(&store).await);
    store.close().await;
}

/// A TCP proxy to `server` whose connections go silent, both ways, once `silent` is set: a
/// connection gone half-open (a database failover, a partition), with nothing to reset it.
async fn proxy(server: (String, u16), silent: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(server.clone()).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            tokio::spawn(pump(cr, uw, Arc::clone(&silent)));
            tokio::spawn(pump(ur, cw, Arc::clone(&silent)));
        }
    });
    addr
}

/// Copies `from` to `to`, dropping what comes while `silent` is set.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, silent: Arc<AtomicBool>) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if !silent.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A connection that goes half-open under the PostgreSQL writer mid-write does not hold the
/// write forever: the batch is given up (its writer hears "not written", so no call is made),
/// the connection closed, and the next write goes through on a fresh one. (sqlx sets no TCP
/// keepalive, and the server's statement_timeout cannot answer through a dead connection.)
#[tokio::test]
async fn a_half_open_connection_does_not_hold_a_write_forever() {
    let Some(db) = testdb::postgres().await else {
        return;
    };
    let crate::Location::Postgres(url) = db.location() else {
        unreachable!("a PostgreSQL database")
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let server = (options.get_host().to_owned(), options.get_port());
    let silent = Arc::default();
    let through = proxy(server.clone(), Arc::clone(&silent)).await;
    let url = url.replacen(
        &format!("{}:{}", server.0, server.1),
        &through.to_string(),
        1,
    );
    assert!(url.contains(&through.to_string()), "{url}");
    let store = Store::open(url.as_str()).await.unwrap();
    store
        .record_intent(&intent("p", "e1", tick()))
        .await
        .unwrap();

    // From here the clock is tokio's, paused: it moves on only when every task waits.
    tokio::time::pause();
    silent.store(true, Ordering::SeqCst);
    let written = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        store.record_intent(&intent("p", "e2", tick())),
    )
    .await
    .expect("the write is given up, not held forever");
    let e = format!("{:#}", written.unwrap_err());
    assert!(e.contains("no answer from the audit database"), "{e}");
    silent.store(false, Ordering::SeqCst);
    tokio::time::resume();
    store
        .record_intent(&intent("p", "e3", tick()))
        .await
        .unwrap();
    let ids: Vec<String> = store
        .report(&ReportFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.execution_id)
        .collect();
    assert_eq!(ids, ["e1", "e3"]);
}
