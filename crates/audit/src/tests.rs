use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use sqlx::SqliteConnection;

use crate::testdb::tick;

use super::*;

fn intent(n: usize) -> (String, String) {
    (format!("pipe-{n}"), format!("exec-{n:04}"))
}

fn row(stop_id_outcome: Outcome) -> OutcomeRow {
    OutcomeRow {
        at: tick(),
        outcome: stop_id_outcome,
        attempts: 1,
        throttled: 0,
        elapsed: Duration::from_millis(25),
        error: None,
        reconciled: false,
    }
}

async fn record(store: &Store, names: &(String, String)) -> Result<i64> {
    store
        .record_intent(&Intent {
            at: tick(),
            sweep_id: None,
            pipeline: &names.0,
            execution_id: &names.1,
            rule: "r",
            rule_kind: RuleKind::Freeze,
            mode: Mode::Finish,
            reason: "why",
            explanation: "because",
            dry_run: false,
            escalate_at: None,
            escalation_of: None,
            account: "default",
            region: "us-east-1",
        })
        .await
}

async fn count(path: &Path, table: &str) -> i64 {
    // A separate connection: what it sees is what was committed.
    let other = Store::open_read_only(path).await.unwrap();
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(other.pool().unwrap())
        .await
        .unwrap();
    other.close().await;
    n
}

#[tokio::test]
async fn concurrent_writes_share_transactions_and_each_is_committed_when_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = Store::open(&path).await.unwrap();
    let names: Vec<_> = (0..200).map(intent).collect();
    let ids: Vec<i64> = record_all(&store, &names)
        .await
        .into_iter()
        .collect::<Result<_>>()
        .unwrap();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 200, "every intent gets its own id");
    assert_eq!(count(&path, "stops").await, 200);
    let commits = store.group_commits();
    assert!(
        commits < 20,
        "200 intents queued together took {commits} transactions"
    );
    // Each id names its own row.
    for (id, n) in ids.iter().zip(&names) {
        let got: String = sqlx::query_scalar("SELECT execution_id FROM stops WHERE id = ?")
            .bind(id)
            .fetch_one(store.pool().unwrap())
            .await
            .unwrap();
        assert_eq!(&got, &n.1);
    }
    // One chain through every batch: each transaction's links follow the last one's.
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{:?}", v.problems);
    assert_eq!(v.records, 200);
}

/// Another process (`stopd freeze add`, `stopd exempt`, `stopd stop`) holding the write
/// lock makes the writer wait, not fail. Seen before the fix: the writer's transaction read
/// the schema before its first INSERT, and SQLite refuses at once (no busy wait) to turn a
/// read transaction into a write while another connection writes: the whole batch was
/// answered "not written".
#[tokio::test]
async fn a_write_waits_for_another_process_holding_the_write_lock() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = Store::open(&path).await.unwrap();
    record(&store, &intent(0)).await.unwrap();
    let mut other = SqliteConnection::connect_with(&Store::write_options(&path).unwrap())
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let names: Vec<_> = (1..20).map(intent).collect();
    let writes = tokio::spawn({
        let store = store.clone();
        async move { record_all(&store, &names).await }
    });
    // SQLite's busy wait is real time: hold the lock a moment, then let go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    for r in writes.await.unwrap() {
        r.unwrap();
    }
    assert_eq!(count(&path, "stops").await, 20);
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{:?}", v.problems);
}

#[tokio::test]
async fn a_failing_write_fails_alone_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = Store::open(&path).await.unwrap();
    let first = record(&store, &intent(0)).await.unwrap();
    store
        .record_outcome(first, &row(Outcome::Stopped))
        .await
        .unwrap();
    let names: Vec<_> = (1..50).map(intent).collect();
    let bad_outcome = row(Outcome::Stopped);
    // In one batch: 49 good intents, a second outcome for the same stop (primary key), an
    // outcome for a stop that does not exist and one for a gate that does not (foreign keys).
    // (An outcome name the schema refuses can no longer be written: the type has none.)
    let (intents, dup, orphan, gate) = tokio::join!(
        record_all(&store, &names),
        store.record_outcome(first, &bad_outcome),
        store.record_outcome(999_999, &bad_outcome),
        store.gate_outcome(999_999, bad_outcome.at, GateOutcome::Done, None),
    );
    assert!(intents.iter().all(Result::is_ok), "{intents:?}");
    for (what, r) in [("duplicate", dup), ("orphan", orphan)] {
        let e = format!("{:#}", r.expect_err(what));
        assert!(e.contains("cannot record a stop's outcome"), "{what}: {e}");
    }
    let e = format!("{:#}", gate.expect_err("orphan gate outcome"));
    assert!(e.contains("cannot record a gate action's outcome"), "{e}");
    assert_eq!(count(&path, "stops").await, 50);
    assert_eq!(count(&path, "stop_outcomes").await, 1);
    // Refused on their own, they are not kept to be written again: they would fail at every
    // sweep and hold back the outcomes a full disk refused.
    assert_eq!(store.unrecorded_count(), 0);
    // The writes that failed left no hole in the chain.
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{:?}", v.problems);
    assert_eq!(v.records, 51);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    /// Mounts it, or fails the test saying why (mounting needs root, as CI has): a test
    /// that cannot fill a real filesystem proves nothing, so it is not skipped.
    fn mount(at: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => SmallFs(at.to_path_buf()),
            Ok(o) => panic!(
                "cannot mount a {size} tmpfs at {} (this test fills a real filesystem and \
                 needs root, as CI has): {}",
                at.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount(8) to mount a tmpfs: {e}"),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Takes every free byte of the filesystem at `dir`; removing the file frees them.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
    path
}

/// Disk full: a write answered "committed" is on disk, every other one was answered with
/// an error (so no stop is made on its strength), and the writer works again by itself once
/// there is room. Seen before the fix: after the first failed commit every later write was
/// answered "committed" and lost, even after space was freed. A real filesystem that runs
/// out of space (a 2 MiB tmpfs, since the schema alone, created and vacuumed, nearly fills
/// 1 MiB; mounting needs root, as CI has).
#[tokio::test]
async fn a_really_full_filesystem_loses_no_answered_write_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(&dir.path().join("small"), "2m");
    let path = fs.0.join("audit.db");
    let store = Store::open(&path).await.unwrap();
    let first = record(&store, &intent(0)).await.unwrap();
    let filler = fill(&fs.0);
    let mut answered_ok = 1;
    let mut refused = 0;
    for round in 0..5 {
        let names: Vec<_> = (0..100)
            .map(|n| {
                (
                    format!("p-{round}-{n}-{}", "y".repeat(200)),
                    format!("e-{n:04}"),
                )
            })
            .collect();
        for r in record_all(&store, &names).await {
            match r {
                Ok(_) => answered_ok += 1,
                Err(_) => refused += 1,
            }
        }
    }
    assert!(refused > 0, "a full filesystem refused nothing");
    std::fs::remove_file(&filler).unwrap();
    // Room again: the same store writes again, durably, without a restart.
    let again = record(&store, &intent(900)).await.unwrap();
    store
        .record_outcome(again, &row(Outcome::Stopped))
        .await
        .unwrap();
    store
        .record_outcome(first, &row(Outcome::Stopped))
        .await
        .unwrap();
    store.close().await;
    assert_eq!(
        count(&path, "stops").await,
        answered_ok + 1,
        "answered Ok = on disk"
    );
    assert_eq!(count(&path, "stop_outcomes").await, 2);
    drop(fs);
}

/// Disk full on a write outside the group-commit writer (a sweep's record, a lifecycle
/// event): the failed COMMIT leaves no pooled connection stuck, so every write after it
/// fails for the full disk alone, and writing works again by itself once there is room.
/// Seen before the fix: SQLite rolled the failed transaction back itself, sqlx still counted
/// it open and its ROLLBACK failed, and every later write on that connection failed with
/// "attempted to call begin_with at non-zero transaction depth" until a restart.
#[tokio::test]
async fn a_failed_commit_on_a_full_filesystem_leaves_the_pool_writable_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(&dir.path().join("small"), "2m");
    let path = fs.0.join("audit.db");
    let store = Store::open(&path).await.unwrap();
    let at = tick();
    store
        .begin_sweep(at, SweepTrigger::Schedule, false)
        .await
        .unwrap();
    let filler = fill(&fs.0);
    // Each write fails for the full disk alone (or succeeds: closing a retired connection
    // checkpoints and removes the write-ahead log, which can free room).
    let (mut sweeps, mut events, mut refused) = (1, 0, 0);
    for attempt in 0..3 {
        let results = [
            (
                "sweep",
                store
                    .begin_sweep(at, SweepTrigger::Schedule, false)
                    .await
                    .map(|_| ()),
            ),
            ("event", store.record_stop(at).await),
        ];
        for (what, r) in results {
            match r {
                Ok(()) if what == "sweep" => sweeps += 1,
                Ok(()) => events += 1,
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(e.contains("disk is full"), "attempt {attempt}, {what}: {e}");
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 0, "a full filesystem refused nothing");
    std::fs::remove_file(&filler).unwrap();
    // Room again: the same store writes again on every path, without a restart.
    store
        .begin_sweep(at, SweepTrigger::Schedule, false)
        .await
        .unwrap();
    record(&store, &intent(1)).await.unwrap();
    store.record_stop(at).await.unwrap();
    let v = store.verify().await.unwrap();
    assert!(v.intact(), "{:?}", v.problems);
    store.close().await;
    assert_eq!(count(&path, "sweeps").await, sweeps + 1);
    assert_eq!(count(&path, "stops").await, 1);
    assert_eq!(count(&path, "lifecycle_events").await, events + 1);
    drop(fs);
}

/// The database is private to the daemon's user whatever the umask (seen: 0777 under
/// umask 000), and a reader never sees half a schema (seen: `no such table: stops` while a
/// daemon was creating it, and for a 0-byte file).
#[tokio::test]
async fn a_new_database_is_private_and_whole_and_an_empty_file_is_named_as_such() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/deeper/audit.db");
    let store = Store::open(&path).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("state/deeper")), 0o700);
    // Nothing temporary is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("state/deeper"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("creating"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    record(&store, &intent(1)).await.unwrap();
    assert_eq!(count(&path, "stops").await, 1);
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let e = format!("{:#}", Store::open_read_only(&empty).await.unwrap_err());
    assert!(e.contains("is not a stopd audit database"), "{e}");
}

#[tokio::test]
async fn a_read_only_store_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    Store::open(&path).await.unwrap().close().await;
    let ro = Store::open_read_only(&path).await.unwrap();
    let e = format!("{:#}", record(&ro, &intent(1)).await.unwrap_err());
    assert!(e.contains("read-only"), "{e}");
}

/// Records every intent from its own task, all spawned before any runs (the test runtime
/// has one thread), so their writes are queued together. Results in input order.
async fn record_all(store: &Store, names: &[(String, String)]) -> Vec<Result<i64>> {
    let mut set = tokio::task::JoinSet::new();
    for (k, n) in names.iter().cloned().enumerate() {
        let store = store.clone();
        set.spawn(async move { (k, record(&store, &n).await) });
    }
    let mut out: Vec<_> = set.join_all().await;
    out.sort_by_key(|(k, _)| *k);
    out.into_iter().map(|(_, r)| r).collect()
}
