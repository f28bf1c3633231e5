//! Digest tests: a log cut short or rebuilt, an OpenSSL-made key, digests missing from a run or removed.

use std::time::Duration;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};

use sqlx::Connection;

use crate::SweepTrigger;

use super::*;

/// A key pair as PEM files in `dir`: (private, public).
fn keys(dir: &Path, seed: u8) -> (PathBuf, PathBuf) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let private = dir.join(format!("key-{seed}.pem"));
    let public = dir.join(format!("key-{seed}.pub.pem"));
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        &public,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    (private, public)
}

async fn sweeps(store: &Store, n: usize) {
    for _ in 0..n {
        let id = store
            .begin_sweep(crate::testdb::tick(), SweepTrigger::Schedule, false)
            .await
            .unwrap();
        store
            .finish_sweep(
                id,
                crate::testdb::tick(),
                Duration::ZERO,
                &Default::default(),
            )
            .await
            .unwrap();
    }
}

fn digester(dir: &Path, key: &Path) -> Digester {
    let pem = std::fs::read_to_string(key).unwrap();
    Digester::new(dir.to_path_buf(), parse_key(&pem, key).unwrap())
}

/// Digests written as the log grows agree with it; the log cut short, rebuilt, a digest
/// removed from the middle, or the wrong key: each found.
#[tokio::test]
async fn digests_find_a_log_cut_short_or_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let (private, public) = keys(tmp.path(), 1);
    let digests = tmp.path().join("digests");
    let d = digester(&digests, &private);
    let path = tmp.path().join("audit.db");
    let store = Store::open(&path).await.unwrap();
    let t0 = crate::testdb::tick();
    let mut names = Vec::new();
    for k in 0..3 {
        sweeps(&store, 2).await;
        let at = t0 + chrono::Duration::hours(k);
        names.push(d.write(&store, at).await.unwrap());
    }
    let (head, _) = store.chain_head().await.unwrap();
    assert_eq!(head, 12);
    let Checked {
        read: n, problems, ..
    } = check(
        &store,
        &digests,
        &public,
        head,
        false,
        crate::testdb::tick(),
    )
    .await
    .unwrap();
    assert_eq!((n, problems.len()), (3, 0), "{problems:?}");

    // Another key: every signature is refused.
    let (_, other) = keys(tmp.path(), 2);
    let problems = check(&store, &digests, &other, head, false, crate::testdb::tick())
        .await
        .unwrap()
        .problems;
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].contains("signature does not match"),
        "{problems:?}"
    );

    // Cut short: the last sweep and its chain records gone (the chain that is left is
    // intact, so verify alone passes).
    let cut = tmp.path().join("cut.db");
    store.close().await; // a whole file to copy
    std::fs::copy(&path, &cut).unwrap();
    let store = Store::open_read_only(&path).await.unwrap();
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", cut.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "DROP TRIGGER sweeps_append_only_d; DROP TRIGGER sweep_results_append_only_d; \
         DROP TRIGGER audit_chain_append_only_d; \
         DELETE FROM sweep_results WHERE sweep_id = 6; DELETE FROM sweeps WHERE id = 6; \
         DELETE FROM audit_chain WHERE seq > 10",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let cut = Store::open_read_only(&cut).await.unwrap();
    let v = cut.verify().await.unwrap();
    assert!(
        v.problems.iter().all(|p| p.contains("append-only trigger")),
        "{v:?}"
    );
    let problems = check(
        &cut,
        &digests,
        &public,
        v.head_seq,
        false,
        crate::testdb::tick(),
    )
    .await
    .unwrap()
    .problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("the log was cut short"),
        "{problems:?}"
    );
    assert!(problems[0].contains("signed record 12"), "{problems:?}");

    // Rebuilt: a new log of the same length (its chain intact, its records not those).
    let rebuilt = Store::open(&tmp.path().join("rebuilt.db")).await.unwrap();
    sweeps(&rebuilt, 6).await;
    let problems = check(
        &rebuilt,
        &digests,
        &public,
        12,
        false,
        crate::testdb::tick(),
    )
    .await
    .unwrap()
    .problems;
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with("the log was rebuilt")),
        "{problems:?}"
    );

    // A digest removed from the middle.
    std::fs::remove_file(&names[1]).unwrap();
    let problems = check(
        &store,
        &digests,
        &public,
        head,
        false,
        crate::testdb::tick(),
    )
    .await
    .unwrap()
    .problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("does not follow"), "{problems:?}");
}

/// The documented openssl commands make a key pair stopd takes (where openssl is installed).
#[tokio::test]
async fn a_key_made_with_openssl_signs_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let private = tmp.path().join("digest-key.pem");
    let public = tmp.path().join("digest-key.pub.pem");
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !run(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        private.to_str().unwrap(),
    ]) {
        eprintln!("skipped: no openssl");
        return;
    }
    assert!(run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap()
    ]));
    let store = Store::open(&tmp.path().join("audit.db")).await.unwrap();
    sweeps(&store, 1).await;
    let digests = tmp.path().join("digests");
    digester(&digests, &private)
        .write(&store, crate::testdb::tick())
        .await
        .unwrap();
    let c = check(&store, &digests, &public, 2, false, crate::testdb::tick())
        .await
        .unwrap();
    assert_eq!((c.read, c.problems), (1, Vec::<String>::new()));
}

fn event(at: &str, event: &str, pid: i64) -> crate::events::EventRecord {
    crate::events::EventRecord {
        id: 0,
        at: at.into(),
        event: event.into(),
        node: None,
        epoch: None,
        pid,
        version: None,
        policy_hash: None,
        result: None,
        detail: None,
    }
}

fn at(s: &str) -> (DateTime<Utc>, String) {
    (s.parse().unwrap(), s.to_string())
}

/// A run from 10:00 to 12:30 wrote digests at 10:00, 11:00, 12:00 and 12:30. Removing the
/// oldest digest (with its successor's link checked elsewhere), one in the middle, or the
/// newest while the log was cut after the first: each is reported; all present is clean.
#[test]
fn digests_missing_from_a_run_are_reported() {
    let now: DateTime<Utc> = "2026-12-04T18:00:00Z".parse().unwrap();
    let run = [
        event("2026-12-04T10:00:00.000Z", "start", 7),
        event("2026-12-04T12:30:00.000Z", "stop", 7),
    ];
    let all = [
        at("2026-12-04T10:00:01Z"),
        at("2026-12-04T11:00:01Z"),
        at("2026-12-04T12:00:01Z"),
        at("2026-12-04T12:30:00Z"),
    ];
    assert_eq!(lifecycle_gaps(&run, &all, false, now), Vec::<String>::new());
    // The middle one gone: two hours without a digest.
    let gaps = lifecycle_gaps(
        &run,
        &[all[0].clone(), all[2].clone(), all[3].clone()],
        false,
        now,
    );
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].contains("to 2026-12-04T12:00:01"), "{gaps:?}");
    // The one at the clean stop gone.
    let gaps = lifecycle_gaps(&run, &all[..3], false, now);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].contains("clean stop"), "{gaps:?}");
    // Truncated after the first digest (the stop record gone too) and the newest removed:
    // the log ends inside a run, and no daemon runs.
    let cut = &run[..1];
    let gaps = lifecycle_gaps(cut, &all[..1], false, now);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].starts_with("the log ends inside a run"), "{gaps:?}");
    // The same log while a daemon runs: an open run, and its hourly digests are overdue.
    let gaps = lifecycle_gaps(cut, &all[..1], true, now);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].contains("to 2026-12-04T18:00:00"), "{gaps:?}");
    // ... and none are overdue within the hour.
    let soon: DateTime<Utc> = "2026-12-04T10:30:00Z".parse().unwrap();
    assert_eq!(
        lifecycle_gaps(cut, &all[..1], true, soon),
        Vec::<String>::new()
    );
    // A run before digests were turned on is not held to them.
    let mut earlier = vec![
        event("2026-12-01T10:00:00.000Z", "start", 3),
        event("2026-12-01T11:00:00.000Z", "stop", 3),
    ];
    earlier.extend(run.iter().cloned());
    assert_eq!(
        lifecycle_gaps(&earlier, &all, false, now),
        Vec::<String>::new()
    );
}

/// Deleting the oldest digest file passed `verify --digests`: the one after it names a
/// previous digest that is no longer there.
#[tokio::test]
async fn the_oldest_digest_removed_is_found_and_uncovered_records_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (private, public) = keys(tmp.path(), 3);
    let digests = tmp.path().join("digests");
    let d = digester(&digests, &private);
    let store = Store::open(&tmp.path().join("audit.db")).await.unwrap();
    let t0 = crate::testdb::tick();
    let mut names = Vec::new();
    for k in 0..2 {
        sweeps(&store, 1).await;
        names.push(
            d.write(&store, t0 + chrono::Duration::hours(k))
                .await
                .unwrap(),
        );
    }
    sweeps(&store, 1).await; // two records after the newest digest
    let (head, _) = store.chain_head().await.unwrap();
    let c = check(
        &store,
        &digests,
        &public,
        head,
        false,
        crate::testdb::tick(),
    )
    .await
    .unwrap();
    assert_eq!((c.problems.len(), c.uncovered), (0, 2), "{:?}", c.problems);
    std::fs::remove_file(&names[0]).unwrap();
    let c = check(
        &store,
        &digests,
        &public,
        head,
        false,
        crate::testdb::tick(),
    )
    .await
    .unwrap();
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    assert!(
        c.problems[0].contains("the oldest digest(s) were removed"),
        "{:?}",
        c.problems
    );
}
