//! A full disk under a running daemon, on a real filesystem (a small tmpfs: mounting needs root,
//! as CI has): writes fail loudly, no stop is made without a committed intent, `status` names
//! the disk, and once there is room again the daemon records and makes the remaining stops by
//! itself, without a restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A small tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct SmallFs(PathBuf);

impl SmallFs {
    /// Mounts it, or fails the test saying why: a test that cannot fill a real filesystem
    /// proves nothing, so it is not skipped.
    fn mount(at: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount(8) runs");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs at {} (this test fills a real filesystem and needs \
             root, as CI has): {}",
            at.display(),
            text(&out.stderr).trim()
        );
        SmallFs(at.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Takes every free byte of the filesystem at `dir`; removing the file frees them.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let small = vec![0u8; 512];
    while f.write_all(&small).and_then(|()| f.sync_all()).is_ok() {}
    path
}

/// `count` prod pipelines with no execution running (one finished long ago).
fn idle_fleet(count: usize) -> String {
    let pipelines: Vec<String> = (0..count)
        .map(|n| {
            format!(
                r#"{{"name": "prod-{n:02}", "tags": {{"env": "prod"}},
                    "stages": [{{"name": "A", "actions": [{{"name": "Wait", "category": "Approval", "provider": "Manual", "duration": "24h"}}]}}],
                    "executions": [{{"status": "Succeeded", "started_ago": "30h", "duration": "24h"}}]}}"#
            )
        })
        .collect();
    format!(r#"{{"pipelines": [{}]}}"#, pipelines.join(","))
}

/// Stops the daemon; the end of what it logged, for a failing test's message.
async fn log_of(child: Child) -> String {
    signal(&child, "TERM");
    let out = wait_exit(child, Duration::from_secs(20)).await;
    let log = text(&out.stderr);
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("the daemon's log ends:\n{tail}")
}

/// Records in the audit log with outcome `stopped` (read with `stopd report`).
fn stopped_records(env: &Env) -> usize {
    let out = env
        .command(&["report", "--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .unwrap_or_default()
        .iter()
        .filter(|r| r["outcome"] == "stopped")
        .count()
}

/// `stopd status --format json`, parsed.
fn status_json(env: &Env) -> Value {
    let out = env
        .command(&["status", "--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The whole story of issue 26 item 1, through the binary. Seen before the fix: after the
/// space was freed every write failed with "attempted to call begin_with at non-zero
/// transaction depth" (a sweep's record had failed to commit on the pool's connection, and
/// that connection stayed stuck inside a transaction SQLite had already rolled back), so no
/// stop was recorded or made again and the clean stop was not recorded either, until a
/// restart; and `status` said only "stale".
#[tokio::test]
async fn after_a_full_disk_is_freed_the_daemon_records_and_makes_the_remaining_stops_without_a_restart()
 {
    const HALF: usize = 12;
    let env = Env::new(&idle_fleet(2 * HALF)).await;
    let fs = SmallFs::mount(&env.dir.path().join("small"), "4m");
    let db = fs.0.join("audit.db");
    std::fs::write(
        env.config_path(),
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n\
             [daemon]\ndatabase = \"{}\"\nschedule = \"* * * * * *\"\n\n\
             [[freeze]]\nname = \"freeze-now\"\nstart = \"2020-01-01T00:00:00Z\"\n\
             end = \"2100-01-01T00:00:00Z\"\npipelines = [\"prod-*\"]\nmode = \"abandon\"\n\
             reason = \"frozen: {{pipeline}}\"\n",
            env.server.endpoint_url(),
            db.display()
        ),
    )
    .unwrap();
    let pipeline = |n: usize| format!("prod-{n:02}");
    // The first half runs before the disk fills: stopped and recorded as usual.
    for n in 0..HALF {
        env.emulator.start_execution(&pipeline(n)).unwrap();
    }
    let child = env.spawn(&["run"]);
    let limit = Duration::from_secs(30);
    if !wait_for(limit, || stopped_records(&env) == HALF).await {
        panic!("the first half was not stopped; {}", log_of(child).await);
    }

    // The disk fills; the second half starts running.
    let filler = fill(&fs.0);
    for n in HALF..2 * HALF {
        env.emulator.start_execution(&pipeline(n)).unwrap();
    }
    // The daemon cannot record its sweeps: `status` says why, not only "stale".
    let mut last = Value::Null;
    let named = wait_for(limit, || {
        last = status_json(&env);
        last["problem"]
            .as_str()
            .is_some_and(|p| p.starts_with("disk full: ") && p.contains("bytes free"))
    })
    .await;
    if !named {
        panic!(
            "status did not name the full disk: {last}; {}",
            log_of(child).await
        );
    }
    assert_eq!(last["healthy"], false, "{last}");
    assert!(
        last["database_free_bytes"].as_u64().unwrap() < 1024 * 1024,
        "{last}"
    );
    let out = env.stopd(&["status"]).await;
    assert_eq!(out.status.code(), Some(1), "a full disk is unhealthy");
    assert!(
        text(&out.stdout).contains("FAILING: disk full: "),
        "{}",
        text(&out.stdout)
    );

    // Room again: the daemon records and makes the remaining stops by itself.
    std::fs::remove_file(&filler).unwrap();
    if !wait_for(limit, || stopped_records(&env) == 2 * HALF).await {
        let recorded = stopped_records(&env);
        panic!(
            "after the space was freed, {recorded} of {} stops are recorded; {}",
            2 * HALF,
            log_of(child).await
        );
    }
    for n in 0..2 * HALF {
        let p = pipeline(n);
        assert!(
            env.emulator
                .executions(&p)
                .iter()
                .all(|e| e.status != "InProgress"),
            "{p} still runs"
        );
    }
    signal(&child, "TERM");
    let out = wait_exit(child, limit).await;
    assert_ok(&out);
    let log = text(&out.stderr);
    assert!(
        log.contains("database or disk is full"),
        "the failed writes were not logged:\n{log}"
    );
    assert!(
        !log.contains("non-zero transaction depth"),
        "a connection stayed stuck in a failed transaction:\n{log}"
    );

    // The clean stop is on record, the chain is whole, and every stop call the service saw has
    // its intent in the audit log, decided before the call.
    let events = env.report(&["--events"]).await;
    assert_eq!(
        events.last().map(|e| &e["event"]),
        Some(&Value::from("stop")),
        "{events:#?}"
    );
    assert_ok(&env.stopd(&["verify"]).await);
    let records = env.report(&[]).await;
    let calls: Vec<_> = env
        .emulator
        .calls()
        .into_iter()
        .filter(|c| c.operation == "StopPipelineExecution")
        .collect();
    assert_eq!(calls.len(), 2 * HALF, "one call per execution");
    for c in &calls {
        let execution = c.execution_id.as_deref().unwrap();
        let intent = records
            .iter()
            .find(|r| r["execution_id"] == execution)
            .unwrap_or_else(|| panic!("a stop call for {execution} without an intent"));
        let decided: chrono::DateTime<chrono::Utc> =
            intent["at"].as_str().unwrap().parse().unwrap();
        assert!(
            decided.timestamp_millis() <= c.wall_ms,
            "{execution}: called before it was decided"
        );
    }
    drop(fs);
}
