//! How big the audit log grows: a simulated span of sweeps at the default cadence through the
//! real write path (chain included), the file's size reported and scaled to a year. A
//! measurement, run by hand (BENCHMARKS.md), not a test of behaviour:
//!
//! ```sh
//! STOPD_SIM_DAYS=7 cargo test -p stopd-audit --lib --release --locked -- --ignored --nocapture audit_size
//! ```

use std::time::Duration;

use crate::SweepTrigger;

use chrono::{DateTime, Utc};

use super::{Store, SweepResult};

/// Writes `days` of sweeps, 30 s apart, with 1,000 pipelines and nothing to stop; returns
/// (sweeps written, bytes of the database after a checkpoint).
async fn simulate(store: &Store, days: i64) -> (i64, i64) {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let n = days * 24 * 120;
    let result = SweepResult {
        pipelines_seen: 1000,
        pipelines_in_scope: 1000,
        executions_seen: 0,
        stops_decided: 0,
        api_calls: 1001,
        throttled: 0,
        errors: 0,
        error: None,
        interrupted: false,
    };
    for k in 0..n {
        let at = start + chrono::Duration::seconds(30 * k);
        let id = store
            .begin_sweep(at, SweepTrigger::Schedule, false)
            .await
            .unwrap();
        store
            .finish_sweep(
                id,
                at + chrono::Duration::milliseconds(1200),
                Duration::from_millis(1200),
                &result,
            )
            .await
            .unwrap();
    }
    store.flush_sweep_run().await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.pool().unwrap())
        .await
        .unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool().unwrap())
        .await
        .unwrap();
    let size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(store.pool().unwrap())
        .await
        .unwrap();
    (n, pages * size)
}

#[tokio::test]
#[ignore = "a measurement (BENCHMARKS.md): run by hand"]
async fn audit_size() {
    let days: i64 = std::env::var("STOPD_SIM_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    // tmpfs where there is one: the size is the same, the fsyncs cost nothing.
    let base = std::path::Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let store = Store::open(&dir.path().join("audit.db")).await.unwrap();
    // As the daemon does at the default cadence: 2 x 30 s + 5 s.
    if std::env::var_os("STOPD_SIM_UNCOMPACTED").is_none() {
        store
            .compact_quiet_sweeps(Duration::from_secs(65))
            .await
            .unwrap();
    }
    let began = std::time::Instant::now();
    let (n, bytes) = simulate(&store, days).await;
    let per_sweep = bytes as f64 / n as f64;
    let year = per_sweep * 365.0 * 24.0 * 120.0;
    println!(
        "{days} day(s): {n} sweeps, {bytes} bytes, {per_sweep:.1} bytes a sweep; a year: {:.1} MB ({:.1} s)",
        year / 1e6,
        began.elapsed().as_secs_f64()
    );
    assert!(store.verify().await.unwrap().intact());
}
